//! The one calendar (src/clock.rs) against known dates, and day by day.

use blackpony::clock::{civil_from_days, date, timestamp};

#[test]
fn civil_dates() {
    let known = [
        (0, (1970, 1, 1)),
        (11_016, (2000, 2, 29)),
        (11_017, (2000, 3, 1)),
        (19_716, (2023, 12, 25)),
        (20_000, (2024, 10, 4)),
        (20_785, (2026, 11, 28)),
        // 2100 is not a leap year: 2100-02-28 is followed by 2100-03-01.
        (47_540, (2100, 2, 28)),
        (47_541, (2100, 3, 1)),
    ];
    for (days, d) in known {
        assert_eq!(civil_from_days(days), d, "{days}");
    }
    // Every day of 1970..2400 follows the previous one by exactly one day.
    let mut prev = civil_from_days(0);
    for days in 1..(430 * 366) {
        let next = civil_from_days(days);
        let (y, m, d) = prev;
        let ok = next == (y, m, d + 1) || next == (y, m + 1, 1) || next == (y + 1, 1, 1);
        assert!(ok, "{prev:?} -> {next:?}");
        assert!(next.2 <= 31 && (1..=12).contains(&next.1));
        prev = next;
    }
}

#[test]
fn timestamps() {
    assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(timestamp(951_782_399), "2000-02-28T23:59:59Z");
    assert_eq!(date(951_868_800), "2000-03-01");
}
