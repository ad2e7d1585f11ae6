//! The one calendar of the report: RFC 3339 times and `YYYY-MM-DD` days,
//! as days and seconds since 1970-01-01 (UTC, proleptic Gregorian).

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to seconds since the
/// epoch (UTC). `None` for anything else, including impossible dates.
pub fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[10] != b'T' && b[10] != b't' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let days = parse_date(t.get(..10)?)?;
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut rest = t.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !(rb[0] == b'+' || rb[0] == b'-') || rb[3] != b':' {
                return None;
            }
            let (oh, om) = (num_in(rest, 1..3)?, num_in(rest, 4..6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if rb[0] == b'-' {
                -o
            } else {
                o
            }
        }
    };
    Some(days * 86_400 + h * 3600 + m * 60 + s - offset)
}

/// The digits of `s[r]` as a number; `None` unless all are ASCII digits.
fn num_in(s: &str, r: std::ops::Range<usize>) -> Option<i64> {
    let d = s.get(r)?;
    if d.is_empty() || !d.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    d.parse().ok()
}

/// `YYYY-MM-DD` to days since 1970-01-01; `None` unless a real date.
pub fn parse_date(d: &str) -> Option<i64> {
    let b = d.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = num_in(d, 0..4)?;
    let m = u32::try_from(num_in(d, 5..7)?).ok()?;
    let dd = u32::try_from(num_in(d, 8..10)?).ok()?;
    if !(1..=12).contains(&m) || dd == 0 || dd > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, dd))
}

/// Days since the epoch as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Howard Hinnant's days-from-civil: (year, month, day) to days since the epoch.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Its inverse, civil-from-days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for d in [-700_000i64, -1, 0, 1, 11_016, 20_785, 2_932_896] {
            let s = format_date(d);
            assert_eq!(parse_date(&s), Some(d), "{s}");
        }
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(parse_date("2026-03-01"), Some(20_513));
        assert_eq!(parse_date("2026-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("+026-01-01"), None);
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Some(1));
        assert_eq!(parse_time("1970-01-01T00:00:00"), None);
        assert_eq!(parse_time("1970-01-01T24:00:00Z"), None);
        assert_eq!(parse_time("1970-01-01T00:00:00+1:000"), None);
        assert_eq!(parse_time("1970-01-01T00:00:00é"), None);
    }
}
