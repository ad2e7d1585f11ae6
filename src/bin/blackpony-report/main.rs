//! blackpony-report: the share of sessions encrypted, in and out, per day
//! and per peer, from the session records both programs append. Only
//! wiring lives here; the work is in `blackpony::report`.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use blackpony::error::exit;
use blackpony::report::{self, Period};
use blackpony::session_record::{parse_date, DEFAULT_PATH};

/// sysexits EX_NOINPUT: an input file could not be read.
const NOINPUT: i32 = 66;

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        "",
        "since",
        "first day of the period (UTC, inclusive)",
        "YYYY-MM-DD",
    );
    o.optopt(
        "",
        "until",
        "last day of the period (UTC, inclusive)",
        "YYYY-MM-DD",
    );
    o.optflag("", "json", "print one JSON document instead of the tables");
    o.optopt(
        "",
        "html",
        "also write a self-contained HTML page with a plot of the daily share encrypted",
        "FILE",
    );
    o.optflag("h", "help", "print this help and exit");
    o.optflag("V", "version", "print the version and exit");
    o
}

fn usage(o: &getopts::Options) -> String {
    o.usage(&format!(
        "Usage: blackpony-report [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--json] [--html FILE] [FILE...]\n\n\
         Reports what share of this server's SMTP sessions were encrypted, in (blackpony) and\n\
         out (blackpony-mailer): totals, share by day, and per peer the sessions, share, suites,\n\
         first and last encrypted contact and warnings (a peer that went plain, a changed key,\n\
         policy verdicts warn and defer). FILE is the session record, {DEFAULT_PATH}\n\
         by default; give rotated files too ({DEFAULT_PATH}*). Corrupt or truncated\n\
         lines are skipped and counted."
    ))
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("blackpony-report: {msg} (see blackpony-report --help)");
    ExitCode::from(exit::USAGE as u8)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = options();
    let m = match o.parse(&args) {
        Ok(m) => m,
        Err(e) => return usage_error(&e.to_string()),
    };
    if m.opt_present("help") {
        println!("{}", usage(&o));
        return ExitCode::SUCCESS;
    }
    if m.opt_present("version") {
        println!("blackpony-report {}", blackpony::cli::VERSION);
        return ExitCode::SUCCESS;
    }
    let day = |name: &str| -> Result<Option<i64>, String> {
        match m.opt_str(name) {
            None => Ok(None),
            Some(s) => parse_date(&s)
                .map(Some)
                .ok_or_else(|| format!("--{name} {s}: give a date as YYYY-MM-DD")),
        }
    };
    let period = match (day("since"), day("until")) {
        (Ok(since), Ok(until)) => Period { since, until },
        (Err(e), _) | (_, Err(e)) => return usage_error(&e),
    };
    if let (Some(s), Some(u)) = (period.since, period.until) {
        if s > u {
            return usage_error("--since is after --until");
        }
    }
    let files: Vec<PathBuf> = if m.free.is_empty() {
        vec![PathBuf::from(DEFAULT_PATH)]
    } else {
        m.free.iter().map(PathBuf::from).collect()
    };
    let loaded = match report::read_files(&files) {
        Ok(l) => l,
        Err((path, e)) => {
            eprintln!("blackpony-report: {}: {e}", path.display());
            return ExitCode::from(NOINPUT as u8);
        }
    };
    let r = report::build(&loaded, period);
    if let Some(html) = m.opt_str("html") {
        if let Err(e) = std::fs::write(&html, report::html::render(&r)) {
            eprintln!("blackpony-report: cannot write {html}: {e}");
            return ExitCode::from(exit::CANTCREAT as u8);
        }
    }
    let text = if m.opt_present("json") {
        report::json::render(&r)
    } else {
        report::table::render(&r)
    };
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        // A closed pipe (| head) is not worth a message.
        return ExitCode::from(exit::IOERR as u8);
    }
    ExitCode::SUCCESS
}
