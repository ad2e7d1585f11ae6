//! The machine-readable session record: one JSON object per line, appended
//! by both programs at the end of every session, read by `blackpony-report`
//! (its own crate, report/). Only the writer lives here.
//!
//! The format is deliberately flat: every value is a JSON string or a
//! non-negative integer, keys in a fixed order, for example
//!
//! ```text
//! {"v":1,"time":"2026-11-28T10:00:00Z","direction":"out","peer_host":"mx.example.org","peer_addr":"192.0.2.25:25","suite":"RSA-BLOWFISH","peer_fingerprint":"SHA256:x1u...","policy":"may","verdict":"ok","bytes_in":912,"bytes_out":1843,"duration_ms":210,"outcome":"quit"}
//! ```
//!
//! Two keys appear only when they apply: `pin_moved_from` (outbound: the
//! pinned key a continuity statement moved the pins from) and `key_problem`
//! (our own configured key missing or unreadable).
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

use crate::summary::{Side, Summary};

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

/// The record of one session as one line, newline included, with `time`
/// the session's end. Every string value is capped at [`MAX_FIELD`] bytes
/// after escaping (cut at a character boundary), so a line is at most about
/// 2.7 KiB. Inbound, the peer is the client (`local` for a replayed session);
/// outbound, the MX host name lower-cased as the known-peers file keys it
/// (the destination if no MX answered).
fn json_line(s: &Summary, time: &str) -> String {
    let (direction, peer_host, peer_addr, policy, verdict) = match &s.side {
        Side::Inbound { client: Some(c) } => ("in", c.ip().to_string(), c.to_string(), "-", "-"),
        Side::Inbound { client: None } => ("in", "local".into(), "-".into(), "-", "-"),
        Side::Outbound {
            dest,
            mx,
            policy,
            verdict,
            ..
        } => {
            let (host, addr) = match mx {
                Some(m) => (m.host.to_ascii_lowercase(), m.addr.to_string()),
                None => (dest.clone(), "-".into()),
            };
            ("out", host, addr, policy.as_str(), verdict.as_str())
        }
    };
    let duration_ms = u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut o = String::with_capacity(512);
    o.push_str("{\"v\":");
    o.push_str(&VERSION.to_string());
    for (k, v) in [
        ("time", time),
        ("direction", direction),
        ("peer_host", &peer_host),
        ("peer_addr", &peer_addr),
        ("suite", &s.suite_name()),
        ("peer_fingerprint", s.fingerprint()),
        ("policy", policy),
        ("verdict", verdict),
    ] {
        push_key(&mut o, k);
        push_json_string(&mut o, v, MAX_FIELD);
    }
    for (k, v) in [
        ("bytes_in", s.bytes_in),
        ("bytes_out", s.bytes_out),
        ("duration_ms", duration_ms),
    ] {
        push_key(&mut o, k);
        o.push_str(&v.to_string());
    }
    push_key(&mut o, "outcome");
    push_json_string(&mut o, &s.outcome.to_string(), MAX_FIELD);
    // Only when there is something to say: older readers ignore them.
    for (k, v) in [
        ("pin_moved_from", &s.pin_moved_from),
        ("key_problem", &s.key_problem),
    ] {
        if let Some(v) = v {
            push_key(&mut o, k);
            push_json_string(&mut o, v, MAX_FIELD);
        }
    }
    o.push_str("}\n");
    o
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
    pub fn append(&self, summary: &Summary) -> io::Result<()> {
        let line = json_line(summary, &crate::clock::utc_timestamp());
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
fn push_json_string(o: &mut String, s: &str, max: usize) {
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

/// The process's record file (`--record`), set once at start.
static FILE: std::sync::OnceLock<Option<RecordFile>> = std::sync::OnceLock::new();

/// Set the record file for [`finish`]; only the first call counts.
pub fn init(file: Option<RecordFile>) {
    let _ = FILE.set(file);
}

/// End a session: its log line, and its record in the file [`init`] set.
pub fn finish(summary: &Summary) {
    log_and_append(summary, FILE.get().and_then(Option::as_ref));
}

/// Log a session's human line and append its record: both programs end a
/// session here, so the log and the record never disagree.
fn log_and_append(summary: &Summary, file: Option<&RecordFile>) {
    log::info!("{}", summary.log_line());
    if let Some(f) = file {
        if let Err(e) = f.append(summary) {
            log::warn!(
                "cannot append the session record to {}: {e}",
                f.path().display()
            );
        }
    }
}
