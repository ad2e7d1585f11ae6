//! The report as aligned text tables for a terminal.

use crate::aggregate::{Counts, Report};
use crate::calendar::format_date;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}
use Align::{Left, Right};

/// Control characters from the records (peer names come from the network
/// and DNS) never reach the terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Renders rows under headers, each column as wide as its widest cell,
/// two spaces apart; trailing spaces are trimmed.
fn table(out: &mut String, cols: &[(&str, Align)], rows: &[Vec<String>]) {
    let width = |s: &str| s.chars().count();
    let mut w: Vec<usize> = cols.iter().map(|(h, _)| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = w[i] - width(c);
            if cols[i].1 == Right {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(cols.iter().map(|(h, _)| *h).collect());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn opt(n: u64) -> String {
    if n == 0 {
        "-".into()
    } else {
        n.to_string()
    }
}

/// Encrypted sessions, `-` only when there were no sessions at all.
fn opt_enc(c: &Counts) -> String {
    if c.sessions == 0 {
        "-".into()
    } else {
        c.encrypted.to_string()
    }
}

fn total_row(name: &str, c: &Counts, out_dir: bool) -> Vec<String> {
    vec![
        name.to_string(),
        c.sessions.to_string(),
        c.encrypted.to_string(),
        c.share_text(),
        c.errors.to_string(),
        if out_dir {
            c.verdict_warn.to_string()
        } else {
            "-".into()
        },
        if out_dir {
            c.verdict_defer.to_string()
        } else {
            "-".into()
        },
    ]
}

/// The whole report as text.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    o.push_str(&format!(
        "blackpony encryption report: {}\n",
        printable(&r.period_text())
    ));
    o.push_str(&format!(
        "{} records in the period, {} read from {} file{}",
        r.records_in_period,
        r.records_read,
        r.files.len(),
        if r.files.len() == 1 { "" } else { "s" }
    ));
    o.push_str(&format!(
        "; {} corrupt or truncated line{} skipped\n",
        r.skipped_count,
        if r.skipped_count == 1 { "" } else { "s" }
    ));

    o.push_str("\nTotals\n");
    table(
        &mut o,
        &[
            ("direction", Left),
            ("sessions", Right),
            ("encrypted", Right),
            ("share", Right),
            ("errors", Right),
            ("verdict warn", Right),
            ("verdict defer", Right),
        ],
        &[
            total_row("in", &r.inbound, false),
            total_row("out", &r.outbound, true),
        ],
    );

    o.push_str("\nShare encrypted by day (UTC)\n");
    let days: Vec<Vec<String>> = r
        .days
        .iter()
        .map(|d| {
            vec![
                format_date(d.day),
                opt(d.inbound.sessions),
                opt_enc(&d.inbound),
                d.inbound.share_text(),
                opt(d.outbound.sessions),
                opt_enc(&d.outbound),
                d.outbound.share_text(),
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            ("day", Left),
            ("in", Right),
            ("encrypted", Right),
            ("share", Right),
            ("out", Right),
            ("encrypted", Right),
            ("share", Right),
        ],
        &days,
    );

    o.push_str("\nPeers\n");
    let peers: Vec<Vec<String>> = r
        .peers
        .iter()
        .map(|p| {
            let w = p.warning_texts();
            vec![
                p.direction.to_string(),
                printable(&p.host),
                p.counts.sessions.to_string(),
                p.counts.encrypted.to_string(),
                p.counts.share_text(),
                printable(&p.suites.join(",")),
                printable(p.first_encrypted.as_deref().unwrap_or("-")),
                printable(p.last_encrypted.as_deref().unwrap_or("-")),
                if w.is_empty() {
                    "-".into()
                } else {
                    w.join("; ")
                },
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            ("dir", Left),
            ("peer", Left),
            ("sessions", Right),
            ("encrypted", Right),
            ("share", Right),
            ("suites", Left),
            ("first encrypted", Left),
            ("last encrypted", Left),
            ("warnings", Left),
        ],
        &peers,
    );

    let warned: Vec<_> = r.peers.iter().filter(|p| !p.warnings.is_empty()).collect();
    if !warned.is_empty() {
        o.push_str("\nWarnings\n");
        for p in warned {
            for w in &p.warnings {
                let extra = match &w.detail {
                    Some((a, b)) => format!(" ({} -> {})", printable(a), printable(b)),
                    None => String::new(),
                };
                o.push_str(&format!(
                    "{} {}: {} at {}{extra}\n",
                    p.direction,
                    printable(&p.host),
                    w.text(),
                    printable(&w.time)
                ));
            }
        }
    }

    if r.skipped_count > 0 {
        o.push_str(&format!(
            "\nSkipped lines ({} in all{})\n",
            r.skipped_count,
            if r.skipped_count as usize > r.skipped.len() {
                format!(", first {} listed", r.skipped.len())
            } else {
                String::new()
            }
        ));
        for s in &r.skipped {
            o.push_str(&format!(
                "{}:{}: {}\n",
                printable(&s.file),
                s.line,
                printable(&s.reason)
            ));
        }
    }
    o
}
