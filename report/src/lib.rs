//! blackpony-report: what share of a blackpony server's sessions, in and
//! out, were encrypted, per day and per peer, from the session records that
//! `blackpony` and `blackpony-mailer` append (one JSON object per line).
//!
//! This crate does not depend on blackpony: the record format is the whole
//! contract ([`record`]). Modules, bottom to top:
//!
//! * [`calendar`]: RFC 3339 times and `YYYY-MM-DD` days;
//! * [`record`]: one line to one [`Record`];
//! * [`read`]: record files (rotated ones too), damaged lines skipped and counted;
//! * [`aggregate`]: totals, days, peers and warnings for a period;
//! * [`table`], [`json`], [`html`] (which embeds [`svg`]): the three outputs;
//! * [`run`]: what the program does with its [`Options`].
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod calendar;
pub mod html;
pub mod json;
pub mod read;
pub mod record;
pub mod svg;
pub mod table;

use std::io::{self, Write};
use std::path::PathBuf;

pub use aggregate::{build, Counts, DayRow, PeerRow, Period, Report, Warning, WarningKind};
pub use read::{read_files, Entry, Loaded, Skipped};
pub use record::{Direction, Record};

/// Where the programs keep the record unless told otherwise.
pub const DEFAULT_PATH: &str = "/var/lib/blackpony/sessions.jsonl";

/// What to report on and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub period: Period,
    /// One JSON document on stdout instead of the tables.
    pub json: bool,
    /// Also write the HTML page here.
    pub html: Option<PathBuf>,
    /// The record files; none means [`DEFAULT_PATH`].
    pub files: Vec<PathBuf>,
}

/// Why the program failed; each kind is one exit code (sysexits).
#[derive(Debug)]
pub enum Error {
    /// Bad options: EX_USAGE.
    Usage(String),
    /// A record file cannot be opened or read: EX_NOINPUT.
    Input(PathBuf, io::Error),
    /// The HTML page cannot be written: EX_CANTCREAT.
    Html(PathBuf, io::Error),
    /// Standard output failed (a closed pipe): EX_IOERR, without a message.
    Stdout(io::Error),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 64,
            Error::Input(..) => 66,
            Error::Html(..) => 73,
            Error::Stdout(_) => 74,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m} (see blackpony-report --help)"),
            Error::Input(p, e) => write!(f, "{}: {e}", p.display()),
            Error::Html(p, e) => write!(f, "cannot write {}: {e}", p.display()),
            Error::Stdout(e) => write!(f, "standard output: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// `--since`/`--until` as a period; the days are `YYYY-MM-DD` (UTC).
pub fn period(since: Option<&str>, until: Option<&str>) -> Result<Period, Error> {
    let day = |name: &str, v: Option<&str>| -> Result<Option<i64>, Error> {
        v.map(|s| {
            calendar::parse_date(s)
                .ok_or_else(|| Error::Usage(format!("--{name} {s}: give a date as YYYY-MM-DD")))
        })
        .transpose()
    };
    let p = Period {
        since: day("since", since)?,
        until: day("until", until)?,
    };
    if let (Some(s), Some(u)) = (p.since, p.until) {
        if s > u {
            return Err(Error::Usage("--since is after --until".into()));
        }
    }
    Ok(p)
}

/// Reads the files, writes the HTML page if asked, and the tables or the
/// JSON document to `out`.
pub fn run(o: &Options, out: &mut impl Write) -> Result<(), Error> {
    let files = if o.files.is_empty() {
        vec![PathBuf::from(DEFAULT_PATH)]
    } else {
        o.files.clone()
    };
    let loaded = read_files(&files).map_err(|(p, e)| Error::Input(p, e))?;
    let r = build(&loaded, o.period);
    if let Some(page) = &o.html {
        std::fs::write(page, html::render(&r)).map_err(|e| Error::Html(page.clone(), e))?;
    }
    let text = if o.json {
        json::render(&r)
    } else {
        table::render(&r)
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Error::Stdout)
}
