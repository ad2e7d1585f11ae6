//! The daily share encrypted as an inline SVG line plot: one line and one
//! point per day for inbound and for outbound sessions, a 0-100 % axis,
//! dated x axis, axis titles and a legend. No scripts, no external fonts.
//! The HTML page embeds it (html imports svg, never the other way).

use crate::aggregate::DayRow;
use crate::calendar::format_date;
use crate::record::Direction;

/// Escapes text for XML and HTML content and attribute values; the page
/// uses it too. Control characters other than newline and tab (not allowed
/// in XML) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

pub const WIDTH: f64 = 960.0;
pub const HEIGHT: f64 = 400.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 56.0;
const BOTTOM: f64 = 96.0;

/// Colours (colour-blind safe pair) and dash patterns: the two series also
/// differ in line style, so they are told apart in greyscale too.
pub const IN_COLOUR: &str = "#0072b2";
pub const OUT_COLOUR: &str = "#d55e00";

fn series_style(d: Direction) -> (&'static str, &'static str, &'static str) {
    match d {
        Direction::In => (IN_COLOUR, "", "inbound (received by blackpony)"),
        Direction::Out => (OUT_COLOUR, "7 4", "outbound (sent by blackpony-mailer)"),
    }
}

/// The number of points each series will have: days with sessions.
pub fn point_count(days: &[DayRow], d: Direction) -> usize {
    days.iter().filter(|r| r.counts(d).sessions > 0).count()
}

/// The plot. `days` are the report's days (sorted, only days with sessions).
pub fn share_plot(days: &[DayRow]) -> String {
    let mut o = String::new();
    let (n_in, n_out) = (
        point_count(days, Direction::In),
        point_count(days, Direction::Out),
    );
    o.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"share-plot\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-labelledby=\"plot-title plot-desc\" \
         data-points-in=\"{n_in}\" data-points-out=\"{n_out}\" font-family=\"sans-serif\" font-size=\"13\">\n"
    ));
    o.push_str("<title id=\"plot-title\">Daily share of sessions encrypted</title>\n");
    o.push_str(&format!(
        "<desc id=\"plot-desc\">Share of sessions encrypted per day (UTC), inbound ({n_in} days) and outbound ({n_out} days).</desc>\n"
    ));
    o.push_str(&format!(
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>\n"
    ));
    o.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"24\" font-size=\"16\" font-weight=\"bold\" fill=\"#222\">Daily share of sessions encrypted</text>\n"
    ));
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let y_of = |share: f64| y1 - share * (y1 - y0);

    // Y axis: grid and labels every 25 %.
    for i in 0..=4 {
        let y = y_of(f64::from(i) / 4.0);
        o.push_str(&format!(
            "<line class=\"grid\" x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{x1}\" y2=\"{y:.1}\" stroke=\"#dddddd\" stroke-width=\"1\"/>\n\
             <text class=\"ylabel\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{}%</text>\n",
            x0 - 8.0,
            y + 4.5,
            i * 25
        ));
    }
    o.push_str(&format!(
        "<text class=\"axis-title\" transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"#222\">share of sessions encrypted</text>\n",
        (y0 + y1) / 2.0
    ));
    o.push_str(&format!(
        "<text class=\"axis-title\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#222\">day (UTC)</text>\n",
        (x0 + x1) / 2.0,
        HEIGHT - 10.0
    ));

    let (Some(first), Some(last)) = (days.first(), days.last()) else {
        o.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#666\">no sessions in this period</text>\n",
            (x0 + x1) / 2.0,
            (y0 + y1) / 2.0
        ));
        axes(&mut o, x0, x1, y0, y1);
        legend(&mut o, x1);
        o.push_str("</svg>\n");
        return o;
    };
    let (first, last) = (first.day, last.day);
    let span = (last - first) as f64;
    let x_of = |day: i64| {
        if span == 0.0 {
            (x0 + x1) / 2.0
        } else {
            x0 + 12.0 + (day - first) as f64 / span * (x1 - x0 - 24.0)
        }
    };

    // X axis ticks: at most about 12 labelled days.
    let step = ((last - first) / 12 + 1).max(1);
    let mut d = first;
    while d <= last {
        let x = x_of(d);
        o.push_str(&format!(
            "<line class=\"tick\" x1=\"{x:.1}\" y1=\"{y1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\n\
             <text class=\"xlabel\" transform=\"translate({x:.1} {:.1}) rotate(-40)\" text-anchor=\"end\" fill=\"#333\">{}</text>\n",
            y1 + 5.0,
            y1 + 18.0,
            format_date(d)
        ));
        d += step;
    }
    axes(&mut o, x0, x1, y0, y1);

    for dir in [Direction::In, Direction::Out] {
        let (colour, dash, _) = series_style(dir);
        let mut path = String::new();
        let mut prev: Option<i64> = None;
        let mut points = String::new();
        for r in days {
            let c = r.counts(dir);
            let Some(share) = c.share() else {
                continue;
            };
            let (x, y) = (x_of(r.day), y_of(share));
            // A day without sessions breaks the line: no invented trend.
            let cmd = if prev == Some(r.day - 1) { 'L' } else { 'M' };
            path.push_str(&format!("{cmd}{x:.1},{y:.1} "));
            prev = Some(r.day);
            points.push_str(&format!(
                "<circle class=\"pt pt-{dir}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4.5\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1.5\">\
                 <title>{} {dir}: {} of {} encrypted ({})</title></circle>\n",
                format_date(r.day),
                c.encrypted,
                c.sessions,
                escape(&c.share_text())
            ));
        }
        if !path.is_empty() {
            let dash_attr = if dash.is_empty() {
                String::new()
            } else {
                format!(" stroke-dasharray=\"{dash}\"")
            };
            o.push_str(&format!(
                "<path class=\"line line-{dir}\" d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\"{dash_attr}/>\n",
                path.trim_end()
            ));
        }
        o.push_str(&points);
    }
    legend(&mut o, x1);
    o.push_str("</svg>\n");
    o
}

fn axes(o: &mut String, x0: f64, x1: f64, y0: f64, y1: f64) {
    o.push_str(&format!(
        "<line class=\"axis\" x1=\"{x0}\" y1=\"{y1}\" x2=\"{x1}\" y2=\"{y1}\" stroke=\"#222\" stroke-width=\"1.5\"/>\n\
         <line class=\"axis\" x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#222\" stroke-width=\"1.5\"/>\n"
    ));
}

fn legend(o: &mut String, x1: f64) {
    o.push_str("<g class=\"legend\">\n");
    let x = x1 - 290.0;
    for (i, dir) in [Direction::In, Direction::Out].into_iter().enumerate() {
        let (colour, dash, label) = series_style(dir);
        let y = 16.0 + 18.0 * i as f64;
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        o.push_str(&format!(
            "<line x1=\"{x}\" y1=\"{y}\" x2=\"{:.1}\" y2=\"{y}\" stroke=\"{colour}\" stroke-width=\"2.5\"{dash_attr}/>\
             <circle cx=\"{:.1}\" cy=\"{y}\" r=\"4\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#222\">{}</text>\n",
            x + 30.0,
            x + 15.0,
            x + 38.0,
            y + 4.5,
            escape(label)
        ));
    }
    o.push_str("</g>\n");
}
