//! The report as one JSON document (`--json`), pretty-printed by serde_json.
//!
//! ```text
//! { "report": "blackpony-encryption", "version": 1,
//!   "period": {"since": "2026-11-01"|null, "until": ...|null, "first": time|null, "last": time|null},
//!   "files": [...], "records_read": N, "records_in_period": N,
//!   "skipped_lines": N, "skipped": [{"file", "line", "reason"}],      (first 20 listed)
//!   "totals": {"in": COUNTS, "out": COUNTS},
//!   "days": [{"date": "2026-11-28", "in": COUNTS, "out": COUNTS}],
//!   "peers": [{"direction", "host", "sessions", "encrypted", "share", "errors",
//!              "verdict_warn", "verdict_defer", "bytes_in", "bytes_out", "suites": [...],
//!              "first_encrypted", "last_encrypted",
//!              "warnings": [{"kind": "went-plain"|"key-changed"|"key-rotated"|"own-key-problem",
//!                            "date", "time", "text",
//!                            "from"?, "to"?}]}] }
//! COUNTS = {"sessions", "encrypted", "share": 0..1 (4 decimals) or null, "errors",
//!           "verdict_warn", "verdict_defer", "bytes_in", "bytes_out"}
//! ```
//!
//! The structs below are that shape, field for field and in that order.

use serde::Serialize;

use crate::aggregate::{Counts, DayRow, PeerRow, Report, Warning};
use crate::calendar::format_date;
use crate::read::Skipped;
use crate::record::Direction;

#[derive(Serialize)]
struct Document<'a> {
    report: &'static str,
    version: u32,
    period: PeriodJson<'a>,
    files: &'a [String],
    records_read: u64,
    records_in_period: u64,
    skipped_lines: u64,
    skipped: Vec<SkippedJson<'a>>,
    totals: InOut,
    days: Vec<DayJson>,
    peers: Vec<PeerJson<'a>>,
}

#[derive(Serialize)]
struct PeriodJson<'a> {
    since: Option<String>,
    until: Option<String>,
    first: Option<&'a str>,
    last: Option<&'a str>,
}

#[derive(Serialize)]
struct SkippedJson<'a> {
    file: &'a str,
    line: u64,
    reason: &'a str,
}

#[derive(Serialize)]
struct CountsJson {
    sessions: u64,
    encrypted: u64,
    /// Rounded to four decimals, null without sessions.
    share: Option<f64>,
    errors: u64,
    verdict_warn: u64,
    verdict_defer: u64,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Serialize)]
struct InOut {
    #[serde(rename = "in")]
    inbound: CountsJson,
    #[serde(rename = "out")]
    outbound: CountsJson,
}

#[derive(Serialize)]
struct DayJson {
    date: String,
    #[serde(flatten)]
    counts: InOut,
}

#[derive(Serialize)]
struct PeerJson<'a> {
    direction: Direction,
    host: &'a str,
    #[serde(flatten)]
    counts: CountsJson,
    suites: &'a [String],
    first_encrypted: Option<&'a str>,
    last_encrypted: Option<&'a str>,
    warnings: Vec<WarningJson<'a>>,
}

#[derive(Serialize)]
struct WarningJson<'a> {
    kind: &'static str,
    date: String,
    time: &'a str,
    text: String,
    /// A key change: the fingerprints before and after.
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
}

impl From<&Counts> for CountsJson {
    fn from(c: &Counts) -> Self {
        CountsJson {
            sessions: c.sessions,
            encrypted: c.encrypted,
            share: c.share().map(|s| (s * 10_000.0).round() / 10_000.0),
            errors: c.errors,
            verdict_warn: c.verdict_warn,
            verdict_defer: c.verdict_defer,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
        }
    }
}

fn in_out(inbound: &Counts, outbound: &Counts) -> InOut {
    InOut {
        inbound: inbound.into(),
        outbound: outbound.into(),
    }
}

fn day(d: &DayRow) -> DayJson {
    DayJson {
        date: format_date(d.day),
        counts: in_out(&d.inbound, &d.outbound),
    }
}

fn warning(w: &Warning) -> WarningJson<'_> {
    let (from, to) = match &w.detail {
        Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
        None => (None, None),
    };
    WarningJson {
        kind: w.kind_str(),
        date: format_date(w.day),
        time: &w.time,
        text: w.text(),
        from,
        to,
    }
}

fn peer(p: &PeerRow) -> PeerJson<'_> {
    PeerJson {
        direction: p.direction,
        host: &p.host,
        counts: (&p.counts).into(),
        suites: &p.suites,
        first_encrypted: p.first_encrypted.as_deref(),
        last_encrypted: p.last_encrypted.as_deref(),
        warnings: p.warnings.iter().map(warning).collect(),
    }
}

fn skipped(s: &Skipped) -> SkippedJson<'_> {
    SkippedJson {
        file: &s.file,
        line: s.line,
        reason: &s.reason,
    }
}

/// The report as one JSON document, newline-terminated.
pub fn render(r: &Report) -> String {
    let doc = Document {
        report: "blackpony-encryption",
        version: 1,
        period: PeriodJson {
            since: r.period.since.map(format_date),
            until: r.period.until.map(format_date),
            first: r.first.as_deref(),
            last: r.last.as_deref(),
        },
        files: &r.files,
        records_read: r.records_read,
        records_in_period: r.records_in_period,
        skipped_lines: r.skipped_count,
        skipped: r.skipped.iter().map(skipped).collect(),
        totals: in_out(&r.inbound, &r.outbound),
        days: r.days.iter().map(day).collect(),
        peers: r.peers.iter().map(peer).collect(),
    };
    // Serializing these structs cannot fail: no maps with non-string keys,
    // no floats that are not finite (a share is 0..=1).
    let mut o = serde_json::to_string_pretty(&doc).expect("the report serializes");
    o.push('\n');
    o
}
