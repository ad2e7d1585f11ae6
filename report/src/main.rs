//! blackpony-report: the share of sessions encrypted, in and out, per day
//! and per peer, from the session records both programs append. Only the
//! options and the exit code live here; the work is in the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use blackpony_report::{period, run, Error, Options, DEFAULT_PATH};

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

/// Parses the options and runs the report (or prints help or the version).
fn main_inner(args: &[String]) -> Result<(), Error> {
    let o = options();
    let m = o.parse(args).map_err(|e| Error::Usage(e.to_string()))?;
    if m.opt_present("help") {
        println!("{}", usage(&o));
        return Ok(());
    }
    if m.opt_present("version") {
        println!("blackpony-report {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let opts = Options {
        period: period(m.opt_str("since").as_deref(), m.opt_str("until").as_deref())?,
        json: m.opt_present("json"),
        html: m.opt_str("html").map(PathBuf::from),
        files: m.free.iter().map(PathBuf::from).collect(),
    };
    run(&opts, &mut std::io::stdout().lock())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match main_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (| head) is not worth a message.
            if !matches!(e, Error::Stdout(_)) {
                eprintln!("blackpony-report: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
