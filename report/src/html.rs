//! The report as one self-contained HTML page (`--html FILE`): inline CSS,
//! the inline SVG plot, the tables. No scripts and nothing fetched: a
//! Content-Security-Policy of `default-src 'none'` says so to the browser.

use crate::aggregate::{Counts, Report};
use crate::calendar::format_date;
use crate::svg::{self, escape};

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 6px 0; }
h2 { font-size: 17px; margin: 28px 0 8px 0; }
p.meta { color: #555; margin: 0 0 16px 0; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; display: inline-block; padding: 8px; }
table { border-collapse: collapse; background: #fff; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.warn { color: #a00; font-weight: 600; }
tr.warned td.host { color: #a00; }
.good { color: #070; }
code { font-size: 13px; }
";

fn td(o: &mut String, s: &str) {
    o.push_str("<td>");
    o.push_str(&escape(s));
    o.push_str("</td>");
}

fn td_num(o: &mut String, s: &str) {
    o.push_str("<td class=\"num\">");
    o.push_str(&escape(s));
    o.push_str("</td>");
}

fn head_row(o: &mut String, cols: &[&str]) {
    o.push_str("<thead><tr>");
    for c in cols {
        o.push_str("<th>");
        o.push_str(&escape(c));
        o.push_str("</th>");
    }
    o.push_str("</tr></thead>\n");
}

fn counts_cells(o: &mut String, c: &Counts) {
    td_num(o, &c.sessions.to_string());
    td_num(o, &c.encrypted.to_string());
    td_num(o, &c.share_text());
}

/// The page.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    o.push_str(&format!(
        "<title>blackpony encryption report: {}</title>\n",
        escape(&r.period_text())
    ));
    o.push_str("<style>");
    o.push_str(STYLE);
    o.push_str("</style>\n</head>\n<body>\n");
    o.push_str(&format!(
        "<h1>blackpony encryption report</h1>\n<p class=\"meta\" id=\"summary\">{}: {} sessions in, {} encrypted ({}); {} sessions out, {} encrypted ({}). \
         {} records in the period, {} read from {} file(s); {} corrupt or truncated line(s) skipped.</p>\n",
        escape(&r.period_text()),
        r.inbound.sessions,
        r.inbound.encrypted,
        escape(&r.inbound.share_text()),
        r.outbound.sessions,
        r.outbound.encrypted,
        escape(&r.outbound.share_text()),
        r.records_in_period,
        r.records_read,
        r.files.len(),
        r.skipped_count
    ));

    o.push_str("<figure>\n");
    o.push_str(&svg::share_plot(&r.days));
    o.push_str("</figure>\n");

    o.push_str("<h2>Totals</h2>\n<table id=\"totals\">\n");
    head_row(
        &mut o,
        &[
            "direction",
            "sessions",
            "encrypted",
            "share",
            "errors",
            "verdict warn",
            "verdict defer",
        ],
    );
    o.push_str("<tbody>\n");
    for (name, c, out) in [("in", &r.inbound, false), ("out", &r.outbound, true)] {
        o.push_str("<tr>");
        td(&mut o, name);
        counts_cells(&mut o, c);
        td_num(&mut o, &c.errors.to_string());
        td_num(
            &mut o,
            &if out {
                c.verdict_warn.to_string()
            } else {
                "-".into()
            },
        );
        td_num(
            &mut o,
            &if out {
                c.verdict_defer.to_string()
            } else {
                "-".into()
            },
        );
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n");

    o.push_str("<h2>Share encrypted by day (UTC)</h2>\n<table id=\"days\">\n");
    head_row(
        &mut o,
        &[
            "day",
            "in",
            "encrypted",
            "share",
            "out",
            "encrypted",
            "share",
        ],
    );
    o.push_str("<tbody>\n");
    for d in &r.days {
        o.push_str("<tr>");
        td(&mut o, &format_date(d.day));
        counts_cells(&mut o, &d.inbound);
        counts_cells(&mut o, &d.outbound);
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n");

    o.push_str("<h2>Peers</h2>\n<table id=\"peers\">\n");
    head_row(
        &mut o,
        &[
            "dir",
            "peer",
            "sessions",
            "encrypted",
            "share",
            "suites",
            "first encrypted",
            "last encrypted",
            "warnings",
        ],
    );
    o.push_str("<tbody>\n");
    for p in &r.peers {
        let w = p.warning_texts();
        o.push_str(if p.warnings.is_empty() {
            "<tr>"
        } else {
            "<tr class=\"warned\">"
        });
        td(&mut o, p.direction.as_str());
        o.push_str("<td class=\"host\">");
        o.push_str(&escape(&p.host));
        o.push_str("</td>");
        counts_cells(&mut o, &p.counts);
        td(&mut o, &p.suites.join(", "));
        td(&mut o, p.first_encrypted.as_deref().unwrap_or("-"));
        td(&mut o, p.last_encrypted.as_deref().unwrap_or("-"));
        if w.is_empty() {
            td(&mut o, "-");
        } else {
            o.push_str("<td class=\"warn\">");
            o.push_str(&escape(&w.join("; ")));
            o.push_str("</td>");
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody></table>\n");

    if r.skipped_count > 0 {
        o.push_str(&format!(
            "<h2>Skipped lines</h2>\n<p>{} corrupt or truncated line(s) were skipped{}.</p>\n<table id=\"skipped\">\n",
            r.skipped_count,
            if r.skipped_count as usize > r.skipped.len() {
                format!("; the first {} are listed", r.skipped.len())
            } else {
                String::new()
            }
        ));
        head_row(&mut o, &["file", "line", "reason"]);
        o.push_str("<tbody>\n");
        for s in &r.skipped {
            o.push_str("<tr>");
            td(&mut o, &s.file);
            td_num(&mut o, &s.line.to_string());
            td(&mut o, &s.reason);
            o.push_str("</tr>\n");
        }
        o.push_str("</tbody></table>\n");
    }
    o.push_str("</body>\n</html>\n");
    o
}
