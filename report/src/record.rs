//! One session record as the reader sees it.
//!
//! The format is the contract with the blackpony crate, whose programs
//! write it (src/session_record.rs there): one flat JSON object per line,
//! every value a string or a non-negative integer, for example
//!
//! ```text
//! {"v":1,"time":"2026-11-28T10:00:00Z","direction":"out","peer_host":"mx.example.org","peer_addr":"192.0.2.25:25","suite":"RSA-BLOWFISH","peer_fingerprint":"SHA256:x1u...","policy":"may","verdict":"ok","bytes_in":912,"bytes_out":1843,"duration_ms":210,"outcome":"quit"}
//! ```
//!
//! Unknown keys are ignored (fields may be added later); `v`, if present,
//! must be 1; `pin_moved_from` and `key_problem` appear only when they
//! apply; every other field must be there. A duplicated key, a number
//! that is negative, fractional or beyond u64, or an impossible time makes
//! the line not a record.

use serde::{Deserialize, Serialize};

use crate::calendar;

/// The record format version this reader understands.
pub const VERSION: u64 = 1;

/// Which way the session went, seen from this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
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

/// One session.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Record {
    /// The format version; absent in no record written so far, but a
    /// reader of version 1 need not insist on it.
    #[serde(rename = "v")]
    version: Option<u64>,
    /// End of the session, RFC 3339 (the writer uses `YYYY-MM-DDTHH:MM:SSZ`).
    pub time: String,
    pub direction: Direction,
    /// Outbound: the MX host name. Inbound: the client's address, or `local`.
    pub peer_host: String,
    /// `address:port`, or `-` if there was no connection.
    pub peer_addr: String,
    /// `plain` or the suite name.
    pub suite: String,
    /// `SHA256:...` or `-`.
    pub peer_fingerprint: String,
    /// Outbound policy (`may`, `tofu`, `require`); `-` inbound.
    pub policy: String,
    /// Outbound verdict (`ok`, `warn`, `defer`, `-`); `-` inbound.
    pub verdict: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
    /// `quit`, `deferred by policy`, or `error: ...`.
    pub outcome: String,
    /// Outbound: the pinned key a continuity statement moved the pins from
    /// (written only then).
    #[serde(default)]
    pub pin_moved_from: Option<String>,
    /// Our own configured key was missing or unreadable (written only then).
    #[serde(default)]
    pub key_problem: Option<String>,
}

impl Record {
    /// Parses one line (a trailing newline or CR LF is fine) and returns the
    /// record with its time in seconds since the epoch; the error says why
    /// the line is not a record.
    pub fn parse(line: &str) -> Result<(Record, i64), String> {
        let rec: Record = serde_json::from_str(line).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Eof => format!("truncated: {e}"),
                Category::Data => format!("not a record: {e}"),
                Category::Syntax | Category::Io => format!("not JSON: {e}"),
            }
        })?;
        if rec.version.is_some_and(|v| v != VERSION) {
            return Err("unsupported record version".into());
        }
        let at =
            calendar::parse_time(&rec.time).ok_or_else(|| format!("bad time {:?}", rec.time))?;
        Ok((rec, at))
    }

    /// True when the session was really encrypted: a suite was negotiated
    /// and it is not one of the ROTn test suites (which hide nothing).
    pub fn is_encrypted(&self) -> bool {
        is_encrypted_suite(&self.suite)
    }

    /// A session that failed (`error: ...`) says nothing about the peer.
    pub fn is_error(&self) -> bool {
        self.outcome.starts_with("error")
    }
}

/// Whether a `suite` value means encryption: not `plain`, `-` or empty, not `ROTn`.
pub fn is_encrypted_suite(suite: &str) -> bool {
    let rot = suite
        .strip_prefix("ROT")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    !(suite.is_empty() || suite == "plain" || suite == "-" || rot)
}
