//! The known-peers store of the outbound mailer: trust on first use, like
//! ssh's `known_hosts`.
//!
//! One human-readable line per remote host:
//!
//! ```text
//! # blackpony known peers: host fingerprint suite first-seen last-seen
//! mx.example.org SHA256:3q2+7w... RSA-BLOWFISH 2026-11-28 2026-11-28
//! ```
//!
//! * `host` is lowercased, without a trailing dot (`[1.2.3.4]` stays as is).
//! * `fingerprint` and `suite` are opaque tokens: printable ASCII, no spaces.
//! * `first-seen` is the UTC day this fingerprint was first seen (it restarts
//!   when the key changes), `last-seen` the last day it was used.
//! * `#` lines and blank lines are comments; they are kept when the file is
//!   rewritten, so an administrator can annotate pins.
//!
//! Many mailer processes run at once and any of them can die at any moment,
//! so every update follows one protocol:
//!
//! 1. take an exclusive `flock` on `<path>.lock` (created 0600, never
//!    deleted: deleting it would let two processes lock two different files);
//! 2. re-read the file under the lock, so no concurrent update is lost;
//! 3. write the new content to `<path>.tmp.<pid>` (0600), fsync it;
//! 4. rename it over `<path>`, fsync the directory;
//! 5. unlock (by closing the lock file).
//!
//! Readers take a shared lock. The file is therefore always entirely the old
//! or entirely the new version, whatever happens. A temp file left by a
//! killed writer is removed by the next writer: every writer creates its temp
//! file only while holding the exclusive lock, so under the lock any temp
//! file is a leftover.
//!
//! A malformed line is an error naming the line, never skipped: dropping a
//! pin would silently downgrade that peer to "unknown".
//!
//! Unix only (file modes, `flock` semantics, directory fsync).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest file we read. A pin line is under 400 bytes, so 16 MiB is some
/// 40 000 peers, far more than one mail server talks to; a bigger file is a
/// mistake or an attack, and reading it would cost memory in every mailer.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Longest line we accept, newline excluded. Five tokens of at most
/// [`MAX_TOKEN`] bytes plus separators fit.
pub const MAX_LINE_BYTES: usize = 1024;

/// Longest host, fingerprint or suite token. A DNS name is at most 253
/// bytes, 255 with brackets; a SHA-512 fingerprint in base64 is under 100.
pub const MAX_TOKEN: usize = 255;

/// First line of a file we create, naming the columns for a human reader.
const HEADER: &str = "# blackpony known peers: host fingerprint suite first-seen last-seen";

/// Mode of every file we create: pins are not secret, but who we talk to is.
const FILE_MODE: u32 = 0o600;

/// One pinned peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    pub host: String,
    pub fingerprint: String,
    pub suite: String,
    /// UTC day (`YYYY-MM-DD`) the current fingerprint was first seen.
    pub first_seen: String,
    /// UTC day (`YYYY-MM-DD`) the peer was last recorded.
    pub last_seen: String,
}

/// What [`KnownPeers::record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The host was not known; it is now pinned.
    New,
    /// Same fingerprint as pinned; `last_seen` (and `suite`) updated.
    Unchanged,
    /// The pinned fingerprint was `old`; it has been replaced.
    KeyChanged { old: String },
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
enum Line {
    Peer(PeerRecord),
    Other(String),
}

/// The known-peers file at one path. Holds no state: every call reads the
/// file afresh, so many processes can share it.
#[derive(Debug, Clone)]
pub struct KnownPeers {
    path: PathBuf,
}

impl KnownPeers {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownPeers { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin for `host` (any case, trailing dot ignored). A missing file
    /// is an empty store.
    pub fn lookup(&self, host: &str) -> Result<Option<PeerRecord>, PeersError> {
        let host = normalize_host(host)?;
        Ok(self.list()?.into_iter().find(|r| r.host == host))
    }

    /// Every pin, in file order. A missing file is an empty store.
    pub fn list(&self) -> Result<Vec<PeerRecord>, PeersError> {
        let Some(_lock) = self.lock(false)? else {
            // No directory to hold the lock file: there is no store either.
            return Ok(Vec::new());
        };
        let lines = read_lines(&self.path)?;
        Ok(lines
            .into_iter()
            .filter_map(|l| match l {
                Line::Peer(r) => Some(r),
                Line::Other(_) => None,
            })
            .collect())
    }

    /// Pins `host` to `fingerprint`, or refreshes its `last_seen`. A
    /// different fingerprint replaces the old one (and restarts
    /// `first_seen`): whether that is acceptable is the caller's policy
    /// decision, taken before calling this.
    pub fn record(
        &self,
        host: &str,
        fingerprint: &str,
        suite: &str,
    ) -> Result<RecordOutcome, PeersError> {
        let host = normalize_host(host)?;
        check_token("fingerprint", fingerprint)?;
        check_token("suite", suite)?;
        let today = today();
        self.update(|lines| {
            let existing = lines.iter_mut().find_map(|l| match l {
                Line::Peer(r) if r.host == host => Some(r),
                _ => None,
            });
            match existing {
                None => {
                    lines.push(Line::Peer(PeerRecord {
                        host: host.clone(),
                        fingerprint: fingerprint.to_owned(),
                        suite: suite.to_owned(),
                        first_seen: today.clone(),
                        last_seen: today.clone(),
                    }));
                    (RecordOutcome::New, true)
                }
                Some(r) if r.fingerprint == fingerprint => {
                    // Most deliveries land here; skip the rewrite (and its
                    // two fsyncs) when nothing would change.
                    let dirty = r.suite != suite || r.last_seen != today;
                    r.suite = suite.to_owned();
                    r.last_seen = today.clone();
                    (RecordOutcome::Unchanged, dirty)
                }
                Some(r) => {
                    let old = std::mem::replace(&mut r.fingerprint, fingerprint.to_owned());
                    r.suite = suite.to_owned();
                    r.first_seen = today.clone();
                    r.last_seen = today.clone();
                    (RecordOutcome::KeyChanged { old }, true)
                }
            }
        })
    }

    /// Removes the pin for `host`. Returns whether there was one.
    pub fn forget(&self, host: &str) -> Result<bool, PeersError> {
        let host = normalize_host(host)?;
        self.update(|lines| {
            let before = lines.len();
            lines.retain(|l| !matches!(l, Line::Peer(r) if r.host == host));
            let removed = lines.len() != before;
            (removed, removed)
        })
    }

    /// Runs `change` on the current content under the exclusive lock; it
    /// returns its result and whether the file must be rewritten.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<Line>) -> (T, bool)) -> Result<T, PeersError> {
        let Some(_lock) = self.lock(true)? else {
            let dir = parent_dir(&self.path);
            let e = io::Error::new(io::ErrorKind::NotFound, "directory does not exist");
            return Err(PeersError::Io(e, dir.to_path_buf()));
        };
        self.remove_stale_temps()?;
        let mut lines = read_lines(&self.path)?;
        let was_empty = lines.is_empty();
        let (result, dirty) = change(&mut lines);
        if dirty {
            if was_empty {
                lines.insert(0, Line::Other(HEADER.to_owned()));
            }
            self.replace(&serialize(&lines))?;
        }
        Ok(result)
        // `_lock` drops here, after the rename and directory fsync.
    }

    /// Opens `<path>.lock` and locks it, shared or exclusive. `None` when
    /// the directory does not exist. The lock is released when the returned
    /// file is closed (flock locks belong to the open file, so two threads of
    /// one process exclude each other too).
    // File::lock and File::lock_shared are stable since Rust 1.89: the
    // crate's rust-version (1.85 when this was written) must be raised.
    #[allow(clippy::incompatible_msrv)]
    fn lock(&self, exclusive: bool) -> Result<Option<File>, PeersError> {
        let path = suffixed(&self.path, ".lock");
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PeersError::Io(e, path)),
        };
        give_to_dir_owner(&file, &path)?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| PeersError::Io(e, path))?;
        Ok(Some(file))
    }

    /// `<path>.tmp.<pid>`: unique among processes, and the exclusive lock
    /// makes it unique among the threads of one process.
    fn temp_path(&self) -> PathBuf {
        suffixed(&self.path, &format!(".tmp.{}", std::process::id()))
    }

    /// Removes `<name>.tmp.<digits>` files. Only called under the exclusive
    /// lock, when no writer can be using one.
    fn remove_stale_temps(&self) -> Result<(), PeersError> {
        let Some(name) = self.path.file_name() else {
            return Ok(());
        };
        let prefix = format!("{}.tmp.", name.to_string_lossy());
        let dir = parent_dir(&self.path);
        let entries = fs::read_dir(dir).map_err(|e| PeersError::Io(e, dir.to_path_buf()))?;
        for entry in entries {
            let entry = entry.map_err(|e| PeersError::Io(e, dir.to_path_buf()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_temp = name
                .strip_prefix(&prefix)
                .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
            if is_temp {
                let path = entry.path();
                log::warn!("removing {} left by an interrupted update", path.display());
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(PeersError::Io(e, path)),
                }
            }
        }
        Ok(())
    }

    /// Atomically replaces the file with `content` (steps 3 and 4 above).
    fn replace(&self, content: &[u8]) -> Result<(), PeersError> {
        let tmp = self.temp_path();
        let written = write_temp(&tmp, content).and_then(|()| {
            fs::rename(&tmp, &self.path).map_err(|e| PeersError::Io(e, self.path.clone()))
        });
        if written.is_err() {
            // Best effort: the next writer removes it anyway.
            let _ = fs::remove_file(&tmp);
        }
        written?;
        // The rename is durable only once the directory entry is on disk.
        let dir = parent_dir(&self.path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PeersError::Io(e, dir.to_path_buf()))
    }
}

/// Creates `tmp` with mode 0600 (never reusing an existing file, whose mode
/// could be wider), writes `content` and fsyncs it.
fn write_temp(tmp: &Path, content: &[u8]) -> Result<(), PeersError> {
    let io_err = |e| PeersError::Io(e, tmp.to_path_buf());
    match fs::remove_file(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(tmp)
        .map_err(io_err)?;
    give_to_dir_owner(&file, tmp)?;
    file.write_all(content).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// Files of the store belong to the owner of its directory (the mailer's
/// user): when root runs `--forget` or `--list-peers`, a lock or store file
/// it creates must stay usable by the mailer, which does not run as root.
/// Only root can give a file away; anyone else creates it as the owner.
fn give_to_dir_owner(file: &File, path: &Path) -> Result<(), PeersError> {
    use std::os::unix::fs::MetadataExt;
    let io_err = |e| PeersError::Io(e, path.to_path_buf());
    let dir = fs::metadata(parent_dir(path)).map_err(io_err)?;
    let mine = file.metadata().map_err(io_err)?;
    if (mine.uid(), mine.gid()) != (dir.uid(), dir.gid()) && mine.uid() == 0 {
        std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid())).map_err(io_err)?;
    }
    Ok(())
}

/// Reads and parses the file; a missing file is empty.
fn read_lines(path: &Path) -> Result<Vec<Line>, PeersError> {
    let io_err = |e| PeersError::Io(e, path.to_path_buf());
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(e)),
    };
    let size = file.metadata().map_err(io_err)?.len();
    if size > MAX_FILE_BYTES {
        return Err(PeersError::TooBig {
            path: path.to_path_buf(),
            size,
        });
    }
    // `take` bounds the read even if the size check was fooled (a special
    // file, or a file replaced by another program that does not lock).
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(io_err)?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(PeersError::TooBig {
            path: path.to_path_buf(),
            size: data.len() as u64,
        });
    }
    parse(&data, path)
}

/// Parses a whole file. Every pin line must be valid, and a host may appear
/// only once (two pins for one host would make the choice arbitrary).
fn parse(data: &[u8], path: &Path) -> Result<Vec<Line>, PeersError> {
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
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (index, raw) in data.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        // Tolerate a file saved by a CRLF editor.
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > MAX_LINE_BYTES {
            return Err(corrupt(
                number,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        let text = std::str::from_utf8(raw).map_err(|_| corrupt(number, "not UTF-8".to_owned()))?;
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            lines.push(Line::Other(text.to_owned()));
            continue;
        }
        let record = parse_record(trimmed).map_err(|reason| corrupt(number, reason))?;
        if let Some(first) = seen.insert(record.host.clone(), number) {
            return Err(corrupt(
                number,
                format!("{} is already pinned on line {first}", record.host),
            ));
        }
        lines.push(Line::Peer(record));
    }
    Ok(lines)
}

/// Parses `host fingerprint suite first-seen last-seen`.
fn parse_record(text: &str) -> Result<PeerRecord, String> {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let [host, fingerprint, suite, first_seen, last_seen] = fields[..] else {
        return Err(format!(
            "expected 5 fields (host fingerprint suite first-seen last-seen), found {}",
            fields.len()
        ));
    };
    let host = normalize_host(host).map_err(|e| e.to_string())?;
    check_token("fingerprint", fingerprint).map_err(|e| e.to_string())?;
    check_token("suite", suite).map_err(|e| e.to_string())?;
    for (what, date) in [("first-seen", first_seen), ("last-seen", last_seen)] {
        if !valid_date(date) {
            return Err(format!("{what} {date:?} is not a YYYY-MM-DD date"));
        }
    }
    Ok(PeerRecord {
        host,
        fingerprint: fingerprint.to_owned(),
        suite: suite.to_owned(),
        first_seen: first_seen.to_owned(),
        last_seen: last_seen.to_owned(),
    })
}

fn serialize(lines: &[Line]) -> Vec<u8> {
    let mut out = String::new();
    for line in lines {
        match line {
            Line::Other(text) => out.push_str(text),
            Line::Peer(r) => {
                let fields = [
                    &r.host,
                    &r.fingerprint,
                    &r.suite,
                    &r.first_seen,
                    &r.last_seen,
                ];
                out.push_str(&fields.map(String::as_str).join(" "));
            }
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Lowercases and drops one trailing dot, so `MX.Example.ORG.` and
/// `mx.example.org` share a pin; then checks it is a storable token.
fn normalize_host(host: &str) -> Result<String, PeersError> {
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
fn check_token(what: &'static str, value: &str) -> Result<(), PeersError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_TOKEN
        && value.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(PeersError::Invalid {
            what,
            value: value.to_owned(),
        })
    }
}

/// `YYYY-MM-DD` with a plausible month and day (no calendar check: the
/// dates are informational).
fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) {
        return false;
    }
    if !digits(8..10) {
        return false;
    }
    let month = (b[5] - b'0') * 10 + (b[6] - b'0');
    let day = (b[8] - b'0') * 10 + (b[9] - b'0');
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Today's UTC date as `YYYY-MM-DD`. A clock before 1970 gives 1970-01-01.
fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(secs / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days`, restricted to days >= 0.
/// Eras are 400-year cycles (146 097 days) starting on 0000-03-01, so the
/// leap day is the last day of each computed year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year
    let mp = (5 * doy + 2) / 153; // month, March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its last component.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Fuzz entry point: parses arbitrary bytes as a known-peers file. Must
/// never panic; when the input parses, writing it back and parsing again
/// must give the same content (the asserts catch a writer/reader mismatch).
pub fn fuzz_parse(data: &[u8]) {
    let path = Path::new("<fuzz>");
    if let Ok(lines) = parse(data, path) {
        let again = parse(&serialize(&lines), path).expect("serialized file must parse");
        assert_eq!(lines.len(), again.len());
        for (a, b) in lines.iter().zip(&again) {
            match (a, b) {
                (Line::Peer(a), Line::Peer(b)) => assert_eq!(a, b),
                // Comment lines may lose a trailing '\r'; both stay comments.
                (Line::Other(_), Line::Other(_)) => {}
                _ => panic!("line kind changed on round trip"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(19_716), (2023, 12, 25));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        // 2100 is not a leap year: 2100-02-28 is followed by 2100-03-01.
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        assert!(valid_date(&today()));
    }

    #[test]
    fn civil_dates_are_consecutive() {
        // Every day of 1970..2400 follows the previous one by exactly one day.
        let mut prev = civil_from_days(0);
        for days in 1..(430 * 366) {
            let next = civil_from_days(days);
            let (y, m, d) = prev;
            let ok = next == (y, m, d + 1) || next == (y, m + 1, 1) || next == (y + 1, 1, 1);
            assert!(ok, "{prev:?} -> {next:?}");
            assert!(next.2 <= 31 && (1..=12).contains(&next.1));
            prev = next;
        }
    }

    #[test]
    fn parse_rules() {
        let p = Path::new("f");
        let ok = b"# c\n\nMX.Example.org. fp S 2026-01-02 2026-01-03\r\n";
        let lines = parse(ok, p).unwrap();
        assert_eq!(lines.len(), 3);
        assert!(matches!(&lines[2], Line::Peer(r) if r.host == "mx.example.org"));
        assert_eq!(parse(b"", p).unwrap(), Vec::new());
        assert_eq!(parse(b"\n", p).unwrap().len(), 1);
        let bad: &[&[u8]] = &[
            b"h fp s 2026-01-02",
            b"h fp s 2026-01-02 2026-01-02 extra",
            b"h fp s 2026-13-02 2026-01-02",
            b"h fp s 2026-01-02 26-01-02",
            b"h\xff fp s 2026-01-02 2026-01-02",
            b"h fp s 2026-01-02 2026-01-02\nH fp2 s 2026-01-02 2026-01-02",
        ];
        for data in bad {
            assert!(
                matches!(parse(data, p), Err(PeersError::Corrupt { .. })),
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        let long = format!("h {} s 2026-01-02 2026-01-02", "f".repeat(MAX_LINE_BYTES));
        assert!(parse(long.as_bytes(), p).is_err());
    }

    #[test]
    fn tokens() {
        assert_eq!(normalize_host("A.B.").unwrap(), "a.b");
        assert_eq!(normalize_host("[1.2.3.4]").unwrap(), "[1.2.3.4]");
        for bad in ["", "a b", "a\nb", "#a", "é.org", &"a".repeat(256)] {
            assert!(normalize_host(bad).is_err(), "{bad:?}");
        }
        // The longest tokens still make a line we can read back.
        let t = "x".repeat(MAX_TOKEN);
        let line = format!("{t} {t} {t} 2026-01-02 2026-01-02");
        assert!(parse(line.as_bytes(), Path::new("f")).is_ok());
    }

    #[test]
    fn temp_file_mode_is_0600_even_over_a_wider_leftover() {
        let dir = std::env::temp_dir().join(format!("bp-peers-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join("x.tmp.1");
        fs::write(&tmp, b"old").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        write_temp(&tmp, b"new").unwrap();
        let mode = fs::metadata(&tmp).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read(&tmp).unwrap(), b"new");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fuzz_smoke() {
        let samples: &[&[u8]] = &[
            b"",
            b"\n\n\r\n",
            b"#\xff\r",
            b"a b c 2026-01-01 2026-01-01",
            b"a b c 2026-01-01 2026-01-01\r",
            b"a b c 2026-01-01 2026-01-01\n#x\r\n  \t\n",
            b"a\tb  c 2026-01-01\t2026-01-01 ",
            b"\xff\xfe",
            b"\r",
        ];
        for s in samples {
            fuzz_parse(s);
        }
    }
}
