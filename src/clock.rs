//! The one calendar: Unix time to UTC dates and timestamps, for log lines,
//! session records, known-peers dates and certificate windows. No time zones,
//! no leap seconds: everything blackpony writes is UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since 1970-01-01 UTC; a clock before 1970 reads as 0.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn timestamp(secs: u64) -> String {
    let t = secs % 86_400;
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    format!("{}T{h:02}:{m:02}:{s:02}Z", date(secs))
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp() -> String {
    timestamp(now_unix())
}

/// `secs` as `YYYY-MM-DD`.
pub fn date(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today's UTC date as `YYYY-MM-DD`.
pub fn today() -> String {
    date(now_unix())
}

/// Howard Hinnant's days-to-civil: days since 1970-01-01 to (year, month,
/// day) in the proleptic Gregorian calendar. Eras are 400-year cycles
/// (146 097 days) starting on 0000-03-01, so the leap day ends each year.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
