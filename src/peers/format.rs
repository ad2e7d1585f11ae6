//! The text of a known-peers file: one pin per line, comments kept, every
//! line checked; and the errors of the store.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest file we read. A pin line is under 400 bytes, so 16 MiB is some
/// 40 000 peers, far more than one mail server talks to; a bigger file is a
/// mistake or an attack, and reading it would cost memory in every mailer.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Longest line we accept, newline excluded. The kind, three tokens of at
/// most [`MAX_TOKEN`] bytes, two dates and separators fit.
pub const MAX_LINE_BYTES: usize = 1024;

/// Longest host, fingerprint or suite token. A DNS name is at most 253
/// bytes, 255 with brackets; a SHA-512 fingerprint in base64 is under 100.
pub const MAX_TOKEN: usize = 255;

/// First line of a file we create, naming the columns for a human reader.
pub(super) const HEADER: &str =
    "# blackpony known peers: host|domain name fingerprint suite first-seen last-seen";

/// The header of the first format (host pins only, no kind column): replaced
/// by [`HEADER`] when such a file is rewritten, since its columns changed.
pub(super) const OLD_HEADER: &str =
    "# blackpony known peers: host fingerprint suite first-seen last-seen";

/// What a pin is attached to (the module comment of `peers` says how each is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// An MX host, or the literal `[address]` connected to: one key.
    Host,
    /// A destination domain as sendmail names it: one line per key.
    Domain,
}

impl PinKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PinKind::Host => "host",
            PinKind::Domain => "domain",
        }
    }
}

/// One pin: a key seen for a host or a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub kind: PinKind,
    /// The host or domain, normalized (lower case, no trailing dot).
    pub name: String,
    pub fingerprint: String,
    pub suite: String,
    /// UTC day (`YYYY-MM-DD`) the current fingerprint was first seen.
    pub first_seen: String,
    /// UTC day (`YYYY-MM-DD`) the peer was last recorded.
    pub last_seen: String,
}

/// A failure of the store. Every variant tells the operator what to fix.
#[derive(Debug)]
pub enum PeersError {
    /// An I/O error on the named file (the store, its lock, temp or directory).
    Io(io::Error, PathBuf),
    /// Line `line` (1-based, comments counted) of `path` is malformed.
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    TooBig { path: PathBuf, size: u64 },
    /// A host, fingerprint or suite given by the caller cannot be stored.
    Invalid { what: &'static str, value: String },
}

impl fmt::Display for PeersError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeersError::Io(e, path) => write!(f, "known peers: {}: {e}", path.display()),
            PeersError::Corrupt { path, line, reason } => write!(
                f,
                "known peers: {p} line {line}: {reason}; fix or remove line {line} of {p}",
                p = path.display()
            ),
            PeersError::TooBig { path, size } => write!(
                f,
                "known peers: {} is {size} bytes, more than the {MAX_FILE_BYTES} allowed; \
                 remove stale entries from it",
                path.display()
            ),
            PeersError::Invalid { what, value } => write!(
                f,
                "known peers: invalid {what} {value:?}: expected 1 to {MAX_TOKEN} printable \
                 ASCII characters without spaces"
            ),
        }
    }
}

impl std::error::Error for PeersError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PeersError::Io(e, _) => Some(e),
            _ => None,
        }
    }
}

/// One line of the file: a pin, or a comment/blank line kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Peer(PeerRecord),
    Other(String),
}

/// Reads and parses the file; a missing file is empty.
pub(super) fn read_lines(path: &Path) -> Result<Vec<Line>, PeersError> {
    let io_err = |e| PeersError::Io(e, path.to_path_buf());
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let too_big = |size| PeersError::TooBig {
        path: path.to_path_buf(),
        size,
    };
    let size = file.metadata().map_err(io_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_big(size));
    }
    // `take` bounds the read even if the size check was fooled (a special
    // file, or a file replaced by another program that does not lock).
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(io_err)?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(data.len() as u64));
    }
    parse(&data, path)
}

/// Parses a known-peers file; `path` only names it in errors. Every pin
/// line must be valid; a host may appear once (two pins would make the
/// choice arbitrary), a domain once per key. What [`serialize`] writes
/// parses back to the same pins.
pub fn parse(data: &[u8], path: &Path) -> Result<Vec<Line>, PeersError> {
    let corrupt = |line: usize, reason: String| PeersError::Corrupt {
        path: path.to_path_buf(),
        line,
        reason,
    };
    if data.is_empty() {
        return Ok(Vec::new());
    }
    // A final newline ends the last line rather than starting an empty one.
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let mut lines = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (index, raw) in data.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        // Tolerate a file saved by a CRLF editor.
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > MAX_LINE_BYTES {
            let reason = format!("line longer than {MAX_LINE_BYTES} bytes");
            return Err(corrupt(number, reason));
        }
        let text = std::str::from_utf8(raw).map_err(|_| corrupt(number, "not UTF-8".to_owned()))?;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            lines.push(Line::Other(text.to_owned()));
            continue;
        }
        let record = parse_record(trimmed).map_err(|reason| corrupt(number, reason))?;
        // A host has one pin; a domain one line per key.
        let key_part = match record.kind {
            PinKind::Host => String::new(),
            PinKind::Domain => record.fingerprint.clone(),
        };
        let id = (record.kind, record.name.clone(), key_part);
        if let Some(first) = seen.insert(id, number) {
            let (kind, name) = (record.kind.as_str(), &record.name);
            let reason = format!("{kind} {name} is already pinned on line {first}");
            return Err(corrupt(number, reason));
        }
        lines.push(Line::Peer(record));
    }
    Ok(lines)
}

/// Parses `host|domain name fingerprint suite first-seen last-seen`, or a
/// host pin of the first format, `host fingerprint suite first-seen
/// last-seen` (read forever, so an old file keeps its pins; written never).
fn parse_record(text: &str) -> Result<PeerRecord, String> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let (kind, name, rest) = match fields[..] {
        [name, ref rest @ ..] if rest.len() == 4 => (PinKind::Host, name, rest),
        ["host", name, ref rest @ ..] if rest.len() == 4 => (PinKind::Host, name, rest),
        ["domain", name, ref rest @ ..] if rest.len() == 4 => (PinKind::Domain, name, rest),
        _ => {
            let n = fields.len();
            return Err(format!(
                "expected host|domain name fingerprint suite first-seen last-seen, found {n} fields"
            ));
        }
    };
    let [fingerprint, suite, first_seen, last_seen] = rest[..] else {
        unreachable!("four fields matched above");
    };
    let name = normalize_host(name).map_err(|e| e.to_string())?;
    check_token("fingerprint", fingerprint).map_err(|e| e.to_string())?;
    check_token("suite", suite).map_err(|e| e.to_string())?;
    for (what, date) in [("first-seen", first_seen), ("last-seen", last_seen)] {
        if !valid_date(date) {
            return Err(format!("{what} {date:?} is not a YYYY-MM-DD date"));
        }
    }
    Ok(PeerRecord {
        kind,
        name,
        fingerprint: fingerprint.to_owned(),
        suite: suite.to_owned(),
        first_seen: first_seen.to_owned(),
        last_seen: last_seen.to_owned(),
    })
}

/// The file content for `lines`, one per line, each ending in `\n`, in the
/// current format (this is how a file of the first format is migrated).
pub fn serialize(lines: &[Line]) -> Vec<u8> {
    let mut out = String::new();
    for line in lines {
        match line {
            Line::Other(text) if text == OLD_HEADER => out.push_str(HEADER),
            Line::Other(text) => out.push_str(text),
            Line::Peer(r) => {
                let fields = [
                    r.kind.as_str(),
                    r.name.as_str(),
                    r.fingerprint.as_str(),
                    r.suite.as_str(),
                    r.first_seen.as_str(),
                    r.last_seen.as_str(),
                ];
                out.push_str(&fields.join(" "));
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Lowercases and drops one trailing dot, so `MX.Example.ORG.` and
/// `mx.example.org` share a pin; then checks it is a storable token.
pub(super) fn normalize_host(host: &str) -> Result<String, PeersError> {
    let lower = host.to_ascii_lowercase();
    let host = match lower.strip_suffix('.') {
        Some(h) if !h.is_empty() => h.to_owned(),
        _ => lower,
    };
    check_token("host", &host)?;
    // A host starting with '#' would be read back as a comment; one still
    // ending in '.' would change at every read (a DNS name never does).
    if host.starts_with('#') || host.ends_with('.') {
        return Err(PeersError::Invalid {
            what: "host",
            value: host,
        });
    }
    Ok(host)
}

/// A token is 1 to [`MAX_TOKEN`] printable ASCII bytes: no space, no control
/// character, so it can never split or end a line.
pub(super) fn check_token(what: &'static str, value: &str) -> Result<(), PeersError> {
    if value.is_empty() || value.len() > MAX_TOKEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PeersError::Invalid {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// `YYYY-MM-DD` with a plausible month and day (no calendar check: the
/// dates are informational).
fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let shape = b.len() == 10 && b[4] == b'-' && b[7] == b'-';
    if !shape || !digits(0..4) || !digits(5..7) || !digits(8..10) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}
