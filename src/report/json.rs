//! The report as one JSON document (`--json`), written by hand.
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
//!              "warnings": [{"kind": "went-plain"|"key-changed", "date", "time", "text",
//!                            "from"?, "to"?}]}] }
//! COUNTS = {"sessions", "encrypted", "share": 0..1 or null, "errors", "verdict_warn",
//!           "verdict_defer", "bytes_in", "bytes_out"}
//! ```

use super::aggregate::{Counts, Report};
use crate::session_record::{format_date, json_string};

/// A JSON value to be written.
#[derive(Clone, Debug)]
pub enum J {
    Null,
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    fn n(v: u64) -> J {
        J::Num(v.to_string())
    }
    fn s(v: &str) -> J {
        J::Str(v.to_string())
    }
    fn opt_s(v: Option<&str>) -> J {
        v.map_or(J::Null, J::s)
    }

    /// Pretty-printed with two-space indents; scalars and empty
    /// containers on one line.
    pub fn write(&self, o: &mut String, indent: usize) {
        match self {
            J::Null => o.push_str("null"),
            J::Num(n) => o.push_str(n),
            J::Str(s) => o.push_str(&json_string(s)),
            J::Arr(v) if v.is_empty() => o.push_str("[]"),
            J::Obj(v) if v.is_empty() => o.push_str("{}"),
            J::Arr(v) => {
                o.push_str("[\n");
                for (i, x) in v.iter().enumerate() {
                    o.push_str(&"  ".repeat(indent + 1));
                    x.write(o, indent + 1);
                    o.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                o.push_str(&"  ".repeat(indent));
                o.push(']');
            }
            J::Obj(v) => {
                o.push_str("{\n");
                for (i, (k, x)) in v.iter().enumerate() {
                    o.push_str(&"  ".repeat(indent + 1));
                    o.push_str(&json_string(k));
                    o.push_str(": ");
                    x.write(o, indent + 1);
                    o.push_str(if i + 1 < v.len() { ",\n" } else { "\n" });
                }
                o.push_str(&"  ".repeat(indent));
                o.push('}');
            }
        }
    }
}

/// A share as a JSON number with four decimals, or null.
fn share(c: &Counts) -> J {
    c.share().map_or(J::Null, |s| J::Num(format!("{s:.4}")))
}

fn counts_fields(c: &Counts) -> Vec<(&'static str, J)> {
    vec![
        ("sessions", J::n(c.sessions)),
        ("encrypted", J::n(c.encrypted)),
        ("share", share(c)),
        ("errors", J::n(c.errors)),
        ("verdict_warn", J::n(c.verdict_warn)),
        ("verdict_defer", J::n(c.verdict_defer)),
        ("bytes_in", J::n(c.bytes_in)),
        ("bytes_out", J::n(c.bytes_out)),
    ]
}

/// The report as a [`J`] tree.
pub fn to_value(r: &Report) -> J {
    let days = r
        .days
        .iter()
        .map(|d| {
            J::Obj(vec![
                ("date", J::Str(format_date(d.day))),
                ("in", J::Obj(counts_fields(&d.inbound))),
                ("out", J::Obj(counts_fields(&d.outbound))),
            ])
        })
        .collect();
    let peers = r
        .peers
        .iter()
        .map(|p| {
            let mut f = vec![
                ("direction", J::s(p.direction.as_str())),
                ("host", J::s(&p.host)),
            ];
            f.extend(counts_fields(&p.counts));
            f.push(("suites", J::Arr(p.suites.iter().map(|s| J::s(s)).collect())));
            f.push(("first_encrypted", J::opt_s(p.first_encrypted.as_deref())));
            f.push(("last_encrypted", J::opt_s(p.last_encrypted.as_deref())));
            let warnings = p
                .warnings
                .iter()
                .map(|w| {
                    let mut wf = vec![
                        ("kind", J::s(w.kind_str())),
                        ("date", J::Str(format_date(w.day))),
                        ("time", J::s(&w.time)),
                        ("text", J::Str(w.text())),
                    ];
                    if let Some((a, b)) = &w.detail {
                        wf.push(("from", J::s(a)));
                        wf.push(("to", J::s(b)));
                    }
                    J::Obj(wf)
                })
                .collect();
            f.push(("warnings", J::Arr(warnings)));
            J::Obj(f)
        })
        .collect();
    let skipped = r
        .skipped
        .iter()
        .map(|s| {
            J::Obj(vec![
                ("file", J::s(&s.file)),
                ("line", J::n(s.line)),
                ("reason", J::s(&s.reason)),
            ])
        })
        .collect();
    J::Obj(vec![
        ("report", J::s("blackpony-encryption")),
        ("version", J::n(1)),
        (
            "period",
            J::Obj(vec![
                (
                    "since",
                    J::opt_s(r.period.since.map(format_date).as_deref()),
                ),
                (
                    "until",
                    J::opt_s(r.period.until.map(format_date).as_deref()),
                ),
                ("first", J::opt_s(r.first.as_deref())),
                ("last", J::opt_s(r.last.as_deref())),
            ]),
        ),
        ("files", J::Arr(r.files.iter().map(|f| J::s(f)).collect())),
        ("records_read", J::n(r.records_read)),
        ("records_in_period", J::n(r.records_in_period)),
        ("skipped_lines", J::n(r.skipped_count)),
        ("skipped", J::Arr(skipped)),
        (
            "totals",
            J::Obj(vec![
                ("in", J::Obj(counts_fields(&r.inbound))),
                ("out", J::Obj(counts_fields(&r.outbound))),
            ]),
        ),
        ("days", J::Arr(days)),
        ("peers", J::Arr(peers)),
    ])
}

/// The report as one JSON document, newline-terminated.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    to_value(r).write(&mut o, 0);
    o.push('\n');
    o
}
