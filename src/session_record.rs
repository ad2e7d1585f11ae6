//! The machine-readable session record: one JSON object per line, appended
//! by both programs at the end of every session, read by `blackpony-report`.
//!
//! The format is deliberately flat: every value is a JSON string or a
//! non-negative integer, keys in a fixed order, for example
//!
//! ```text
//! {"v":1,"time":"2026-11-28T10:00:00Z","direction":"out","peer_host":"mx.example.org","peer_addr":"192.0.2.25:25","suite":"RSA-BLOWFISH","peer_fingerprint":"SHA256:x1u...","policy":"may","verdict":"ok","bytes_in":912,"bytes_out":1843,"duration_ms":210,"outcome":"quit"}
//! ```
//!
//! Readers ignore keys they do not know, so fields can be added later;
//! `v` changes only if the meaning of an existing field does.
//!
//! [`RecordFile::append`] is safe with any number of concurrent writers
//! (inetd starts one `blackpony` per connection, sendmail one mailer per
//! delivery): each line is written with one `write(2)` on an `O_APPEND`
//! descriptor, and every string field is capped so that a line stays far
//! below 4 KiB. The file is bounded: past `max_bytes` it is rotated to
//! `.1` … `.5` under an exclusive lock on a sidecar `<path>.lock`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the programs keep the record unless told otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/blackpony/sessions.jsonl";
/// A suggested bound for one record file (16 MiB: about 50,000 sessions).
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// How many rotated files are kept (`path.1` … `path.5`).
pub const KEEP: u32 = 5;
/// The longest escaped string value written, in bytes (without the quotes).
pub const MAX_FIELD: usize = 255;
/// The record format version written in `"v"`.
pub const VERSION: u64 = 1;

/// Which way the session went, seen from this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// A client connected to `blackpony` (inbound).
    In,
    /// `blackpony-mailer` delivered to a remote MX (outbound).
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One session, the same facts as the human log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// End of the session, `YYYY-MM-DDTHH:MM:SSZ` (UTC).
    pub time: String,
    pub direction: Direction,
    /// Outbound: the MX host name. Inbound: the client's IP address (no
    /// reverse lookup is made), or `local` for a piped debugging session.
    pub peer_host: String,
    /// The peer's `address:port`, or `-` if there was no connection.
    pub peer_addr: String,
    /// `plain` or the suite name (`RSA-BLOWFISH`, `ROT13`, ...).
    pub suite: String,
    /// `SHA256:...` or `-`.
    pub peer_fingerprint: String,
    /// Outbound policy (`may`, `tofu`, `require`); `-` inbound.
    pub policy: String,
    /// Outbound verdict (`ok`, `warn`, `defer`, `-` if never checked); `-` inbound.
    pub verdict: String,
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Bytes sent to the peer.
    pub bytes_out: u64,
    pub duration_ms: u64,
    /// `quit`, `deferred by policy`, or `error: ...`.
    pub outcome: String,
}

impl SessionRecord {
    /// The record as one line, newline included. Every string value is
    /// capped at [`MAX_FIELD`] bytes after escaping (cut at a character
    /// boundary), so a line is at most about 2.7 KiB.
    pub fn to_json_line(&self) -> String {
        let mut o = String::with_capacity(512);
        o.push_str("{\"v\":");
        o.push_str(&VERSION.to_string());
        for (k, v) in [
            ("time", self.time.as_str()),
            ("direction", self.direction.as_str()),
            ("peer_host", &self.peer_host),
            ("peer_addr", &self.peer_addr),
            ("suite", &self.suite),
            ("peer_fingerprint", &self.peer_fingerprint),
            ("policy", &self.policy),
            ("verdict", &self.verdict),
        ] {
            push_key(&mut o, k);
            push_json_string(&mut o, v, MAX_FIELD);
        }
        for (k, v) in [
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("duration_ms", self.duration_ms),
        ] {
            push_key(&mut o, k);
            o.push_str(&v.to_string());
        }
        push_key(&mut o, "outcome");
        push_json_string(&mut o, &self.outcome, MAX_FIELD);
        o.push_str("}\n");
        o
    }

    /// Parses one line (with or without its newline). Anything that is not
    /// exactly one flat object with all the fields is an error: the reader
    /// skips and counts such lines. Unknown keys are ignored.
    pub fn parse_json_line(line: &str) -> Result<SessionRecord, String> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let fields = parse_flat_object(line)?;
        let get = |k: &str| -> Option<Value> {
            let i = fields.iter().position(|(key, _)| key == k)?;
            Some(fields[i].1.clone())
        };
        let s = |k: &str, v: Option<Value>| -> Result<String, String> {
            match v {
                Some(Value::Str(s)) => Ok(s),
                Some(Value::Num(_)) => Err(format!("{k}: a number where a string belongs")),
                None => Err(format!("missing {k}")),
            }
        };
        let n = |k: &str, v: Option<Value>| -> Result<u64, String> {
            match v {
                Some(Value::Num(n)) => Ok(n),
                Some(Value::Str(_)) => Err(format!("{k}: a string where a number belongs")),
                None => Err(format!("missing {k}")),
            }
        };
        match get("v") {
            None | Some(Value::Num(VERSION)) => {}
            Some(_) => return Err("unsupported record version".into()),
        }
        let time = s("time", get("time"))?;
        if parse_time(&time).is_none() {
            return Err(format!("bad time {time:?}"));
        }
        let direction = match s("direction", get("direction"))?.as_str() {
            "in" => Direction::In,
            "out" => Direction::Out,
            d => return Err(format!("bad direction {d:?}")),
        };
        Ok(SessionRecord {
            time,
            direction,
            peer_host: s("peer_host", get("peer_host"))?,
            peer_addr: s("peer_addr", get("peer_addr"))?,
            suite: s("suite", get("suite"))?,
            peer_fingerprint: s("peer_fingerprint", get("peer_fingerprint"))?,
            policy: s("policy", get("policy"))?,
            verdict: s("verdict", get("verdict"))?,
            bytes_in: n("bytes_in", get("bytes_in"))?,
            bytes_out: n("bytes_out", get("bytes_out"))?,
            duration_ms: n("duration_ms", get("duration_ms"))?,
            outcome: s("outcome", get("outcome"))?,
        })
    }

    /// True when the session was really encrypted: a suite was negotiated
    /// and it is not one of the ROTn test suites (which hide nothing).
    pub fn is_encrypted(&self) -> bool {
        is_encrypted_suite(&self.suite)
    }

    /// Seconds since 1970-01-01T00:00:00Z of `time` (validated by the parser).
    pub fn epoch_seconds(&self) -> Option<i64> {
        parse_time(&self.time)
    }
}

/// Whether a `suite` value means encryption: not `plain`, not empty, not `ROTn`.
pub fn is_encrypted_suite(suite: &str) -> bool {
    let rot = suite
        .strip_prefix("ROT")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    !(suite.is_empty() || suite == "plain" || suite == "-" || rot)
}

/// The record for one inbound session (`blackpony`), from the same summary
/// that makes its log line. The duration is measured now, as the log line's.
pub fn from_inbound(s: &crate::inbound::Summary) -> SessionRecord {
    let (peer_host, peer_addr) = match s.client.parse::<std::net::SocketAddr>() {
        Ok(a) => (a.ip().to_string(), s.client.clone()),
        Err(_) => (s.client.clone(), "-".to_string()),
    };
    SessionRecord {
        time: crate::logging::utc_timestamp(),
        direction: Direction::In,
        peer_host,
        peer_addr,
        suite: s.suite.clone(),
        peer_fingerprint: s.peer_fingerprint.clone(),
        policy: "-".into(),
        verdict: "-".into(),
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        duration_ms: millis(s.started.elapsed()),
        outcome: s.outcome.clone(),
    }
}

/// The record for one outbound delivery (`blackpony-mailer`). The summary
/// has the MX only as the log's `name[address]` label (`-` if no MX
/// answered), so it is split here; without an MX the destination stands in
/// for the host and the address is `-`.
pub fn from_outbound(s: &crate::outbound::Summary) -> SessionRecord {
    let (host, addr) = split_mx_label(&s.mx).unwrap_or_else(|| (s.dest.clone(), "-".to_string()));
    SessionRecord {
        time: crate::logging::utc_timestamp(),
        direction: Direction::Out,
        // The known-peers key is the lower-cased MX name: use the same.
        peer_host: host.to_ascii_lowercase(),
        peer_addr: addr,
        suite: s.suite.clone(),
        peer_fingerprint: s.peer_fingerprint.clone(),
        policy: s.policy.clone(),
        verdict: s.verdict.clone(),
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        duration_ms: millis(s.started.elapsed()),
        outcome: s.outcome.clone(),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Splits the outbound log label `host[address]` into its parts. The host
/// may itself be bracketed (`[127.0.0.1][127.0.0.1:25]`) and an IPv6 socket
/// address is (`mx[[2001:db8::1]:25]`), so the address is the last
/// balanced bracket group.
pub fn split_mx_label(label: &str) -> Option<(String, String)> {
    let inner = label.strip_suffix(']')?;
    let mut depth = 0usize;
    for (i, c) in inner.char_indices().rev() {
        match c {
            ']' => depth += 1,
            '[' if depth == 0 => {
                let (host, addr) = (&inner[..i], &inner[i + 1..]);
                if host.is_empty() || addr.is_empty() {
                    return None;
                }
                return Some((host.to_string(), addr.to_string()));
            }
            '[' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The append-only, size-bounded record file.
#[derive(Clone, Debug)]
pub struct RecordFile {
    path: PathBuf,
    max_bytes: u64,
}

impl RecordFile {
    /// `max_bytes` 0 means never rotate.
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64) -> Self {
        RecordFile {
            path: path.into(),
            max_bytes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line with a single `write(2)` on an
    /// `O_APPEND` descriptor (mode 0640 if created), rotating first if the
    /// line would take the file past `max_bytes`. Concurrent writers never
    /// interleave; a short write (disk full) is an error, not a retry. A
    /// failed rotation is logged (warn) and the line appended all the same.
    pub fn append(&self, rec: &SessionRecord) -> io::Result<()> {
        let line = rec.to_json_line();
        let len = line.len() as u64;
        if self.needs_rotation(len) {
            // A failed rotation must not lose the session: say so and append.
            if let Err(e) = self.rotate(len) {
                log::warn!("cannot rotate {}: {e}", self.path.display());
            }
        }
        let mut f = open_append(&self.path)?;
        let n = f.write(line.as_bytes())?;
        if n != line.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "{}: short write ({n} of {} bytes)",
                    self.path.display(),
                    line.len()
                ),
            ));
        }
        Ok(())
    }

    fn needs_rotation(&self, adding: u64) -> bool {
        if self.max_bytes == 0 {
            return false;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) => m.len() > 0 && m.len().saturating_add(adding) > self.max_bytes,
            Err(_) => false,
        }
    }

    /// Rotates under the sidecar lock; the size is checked again once the
    /// lock is held, so of several writers that saw a full file only the
    /// first rotates and the others append to the fresh one.
    fn rotate(&self, adding: u64) -> io::Result<()> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(self.sidecar("lock"))?;
        lock.lock()?;
        let result = if self.needs_rotation(adding) {
            self.shift()
        } else {
            Ok(())
        };
        let _ = lock.unlock();
        result
    }

    fn shift(&self) -> io::Result<()> {
        for i in (1..KEEP).rev() {
            match std::fs::rename(
                self.sidecar(&i.to_string()),
                self.sidecar(&(i + 1).to_string()),
            ) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        match std::fs::rename(&self.path, self.sidecar("1")) {
            // Removed behind our back (by hand, logrotate): nothing to rotate.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// `<path>.<suffix>`
    fn sidecar(&self, suffix: &str) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(".");
        s.push(suffix);
        PathBuf::from(s)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn push_key(o: &mut String, k: &str) {
    o.push_str(",\"");
    o.push_str(k);
    o.push_str("\":");
}

/// Appends `s` as a JSON string literal whose content (between the quotes)
/// is at most `max` bytes; the cut falls between characters, never inside
/// an escape. Control characters, `"` and `\` are escaped; the rest of
/// UTF-8 is written as is.
pub fn push_json_string(o: &mut String, s: &str, max: usize) {
    o.push('"');
    let mut used = 0;
    let mut buf = [0u8; 4];
    for c in s.chars() {
        let esc: std::borrow::Cow<'_, str> = match c {
            '"' => "\\\"".into(),
            '\\' => "\\\\".into(),
            '\n' => "\\n".into(),
            '\r' => "\\r".into(),
            '\t' => "\\t".into(),
            c if (c as u32) < 0x20 || c == '\u{7f}' => format!("\\u{:04x}", c as u32).into(),
            // Line and paragraph separators break naive line splitters.
            '\u{2028}' | '\u{2029}' => format!("\\u{:04x}", c as u32).into(),
            c => c.encode_utf8(&mut buf).to_owned().into(),
        };
        if used + esc.len() > max {
            break;
        }
        used += esc.len();
        o.push_str(&esc);
    }
    o.push('"');
}

/// `s` as a JSON string literal, uncapped.
pub fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    push_json_string(&mut o, s, usize::MAX);
    o
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Num(u64),
}

/// Parses `{"k":"v","n":1}`: strings and unsigned integers only, no
/// nesting (so no recursion on hostile input), no duplicate keys.
fn parse_flat_object(s: &str) -> Result<Vec<(String, Value)>, String> {
    let mut p = Cursor {
        b: s.as_bytes(),
        i: 0,
    };
    p.ws();
    p.expect(b'{')?;
    let mut out: Vec<(String, Value)> = Vec::new();
    p.ws();
    if p.peek() == Some(b'}') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            let k = p.string()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            let v = match p.peek() {
                Some(b'"') => Value::Str(p.string()?),
                Some(b'0'..=b'9') => Value::Num(p.number()?),
                Some(c) => return Err(format!("unexpected {:?} at byte {}", c as char, p.i)),
                None => return Err("truncated".into()),
            };
            if out.iter().any(|(key, _)| *key == k) {
                return Err(format!("duplicate key {k:?}"));
            }
            out.push((k, v));
            p.ws();
            match p.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                Some(c) => return Err(format!("unexpected {:?} at byte {}", c as char, p.i - 1)),
                None => return Err("truncated".into()),
            }
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return Err(format!("trailing data at byte {}", p.i));
    }
    Ok(out)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        match self.next() {
            Some(x) if x == c => Ok(()),
            Some(x) => Err(format!(
                "expected {:?}, found {:?} at byte {}",
                c as char,
                x as char,
                self.i - 1
            )),
            None => Err("truncated".into()),
        }
    }

    fn number(&mut self) -> Result<u64, String> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.len() > 1 && digits[0] == b'0' {
            return Err("number with a leading zero".into());
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err("not an unsigned integer".into());
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| "number out of range".to_string())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.b.get(self.i..self.i + 4).ok_or("truncated escape")?;
        let h = std::str::from_utf8(h).map_err(|_| "bad \\u escape")?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("bad \\u escape".into());
        }
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| "bad \\u escape".into())
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            // Copy a run of plain characters at once (the input is a &str,
            // so a run between ASCII delimiters is valid UTF-8).
            let start = self.i;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?);
            match self.next() {
                Some(b'"') => return Ok(out),
                Some(b'\\') => {
                    let c = match self.next().ok_or("truncated escape")? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xd800..0xdc00).contains(&hi) {
                                if self.b.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return Err("lone surrogate".into());
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Err("lone surrogate".into());
                                }
                                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or("lone surrogate")?
                        }
                        c => return Err(format!("bad escape \\{}", c as char)),
                    };
                    out.push(c);
                }
                Some(_) => return Err("control character in a string".into()),
                None => return Err("truncated string".into()),
            }
        }
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to seconds since the
/// epoch (UTC). `None` for anything else, including impossible dates.
pub fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[10] != b'T' && b[10] != b't' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let days = parse_date(&t[..10])?;
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !(rb[0] == b'+' || rb[0] == b'-') || rb[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            if oh > 23 || om > 59 || !rest[1..3].bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if rb[0] == b'-' {
                -o
            } else {
                o
            }
        }
    };
    Some(days * 86_400 + h * 3600 + m * 60 + s - offset)
}

/// `YYYY-MM-DD` to days since 1970-01-01; `None` unless a real date.
pub fn parse_date(d: &str) -> Option<i64> {
    let b = d.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    let (ys, ms, ds) = (&d[..4], &d[5..7], &d[8..10]);
    if !(digits(ys) && digits(ms) && digits(ds)) {
        return None;
    }
    let (y, m, dd): (i64, u32, u32) = (ys.parse().ok()?, ms.parse().ok()?, ds.parse().ok()?);
    if !(1..=12).contains(&m) || dd == 0 || dd > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, dd))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil, the inverse of
/// [`crate::logging::civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since the epoch as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = crate::logging::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for d in [-700_000i64, -1, 0, 1, 11_016, 20_785, 2_932_896] {
            let s = format_date(d);
            assert_eq!(parse_date(&s), Some(d), "{s}");
        }
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1));
        assert_eq!(parse_time("1970-01-01T00:00:00"), None);
        assert_eq!(parse_time("1970-01-01T24:00:00Z"), None);
    }

    #[test]
    fn mx_labels() {
        let s = |a: &str, b: &str| Some((a.to_string(), b.to_string()));
        assert_eq!(
            split_mx_label("mx.example.org[192.0.2.25:25]"),
            s("mx.example.org", "192.0.2.25:25")
        );
        assert_eq!(
            split_mx_label("[127.0.0.1][127.0.0.1:25]"),
            s("[127.0.0.1]", "127.0.0.1:25")
        );
        assert_eq!(
            split_mx_label("mx[[2001:db8::1]:25]"),
            s("mx", "[2001:db8::1]:25")
        );
        assert_eq!(split_mx_label("-"), None);
        assert_eq!(split_mx_label("[x]"), None);
    }
}

/// Log a session's human line and append its record: both programs end a
/// session here, so the log and the record never disagree.
pub fn log_and_append(log_line: &str, rec: &SessionRecord, file: Option<&RecordFile>) {
    log::info!("{log_line}");
    if let Some(f) = file {
        if let Err(e) = f.append(rec) {
            log::warn!(
                "cannot append the session record to {}: {e}",
                f.path().display()
            );
        }
    }
}
