//! From records to the report's numbers: totals, days, peers, warnings.
//!
//! Peers are told apart by direction and host: an inbound peer is a client
//! address, an outbound peer an MX host name. Warnings look at each peer's
//! whole history up to the end of the period (so a peer that was encrypted
//! before `--since` and is plain inside the period is flagged), but only
//! warnings dated inside the period are reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::calendar::format_date;
use crate::read::{Loaded, Skipped};
use crate::record::{Direction, Record};

/// The chosen period in days since the epoch, both ends inclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Period {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Period {
    pub fn contains(&self, day: i64) -> bool {
        self.since.is_none_or(|s| day >= s) && self.until.is_none_or(|u| day <= u)
    }
}

/// Session counts for one direction, day or peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub sessions: u64,
    pub encrypted: u64,
    /// Sessions whose outcome is `error: ...`.
    pub errors: u64,
    /// Outbound policy verdicts `warn` and `defer`.
    pub verdict_warn: u64,
    pub verdict_defer: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counts {
    fn add(&mut self, r: &Record) {
        self.sessions += 1;
        self.encrypted += u64::from(r.is_encrypted());
        self.errors += u64::from(r.is_error());
        self.verdict_warn += u64::from(r.verdict == "warn");
        self.verdict_defer += u64::from(r.verdict == "defer");
        self.bytes_in = self.bytes_in.saturating_add(r.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(r.bytes_out);
    }

    /// Encrypted sessions / sessions, `None` without sessions.
    pub fn share(&self) -> Option<f64> {
        (self.sessions > 0).then(|| self.encrypted as f64 / self.sessions as f64)
    }

    /// The share as `75.0%`, or `-`.
    pub fn share_text(&self) -> String {
        match self.share() {
            Some(s) => format!("{:.1}%", s * 100.0),
            None => "-".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WarningKind {
    /// Encrypted before, a completed plain session now.
    WentPlain,
    /// A fingerprint other than the one seen last.
    KeyChanged,
    /// A new fingerprint the old key vouched for (a signed rotation): the
    /// pins moved, nothing to worry about, but worth knowing.
    KeyRotated,
    /// Our own configured key was missing or unreadable for this session.
    OwnKeyProblem,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    /// Day of the first such session that day (days since the epoch).
    pub day: i64,
    /// Time of that session, as recorded.
    pub time: String,
    /// For a key change: the fingerprints before and after.
    pub detail: Option<(String, String)>,
}

impl Warning {
    pub fn kind_str(&self) -> &'static str {
        match self.kind {
            WarningKind::WentPlain => "went-plain",
            WarningKind::KeyChanged => "key-changed",
            WarningKind::KeyRotated => "key-rotated",
            WarningKind::OwnKeyProblem => "own-key-problem",
        }
    }

    /// `went plain on 2026-11-28`, `key changed on 2026-11-28`.
    pub fn text(&self) -> String {
        let what = match self.kind {
            WarningKind::WentPlain => "went plain",
            WarningKind::KeyChanged => "key changed",
            WarningKind::KeyRotated => "key rotated (signed by the old key)",
            WarningKind::OwnKeyProblem => "served without our key (see the log)",
        };
        format!("{what} on {}", format_date(self.day))
    }
}

/// One peer's line in the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRow {
    pub direction: Direction,
    pub host: String,
    pub counts: Counts,
    /// Every suite seen in the period, `plain` included, sorted.
    pub suites: Vec<String>,
    pub first_encrypted: Option<String>,
    pub last_encrypted: Option<String>,
    pub warnings: Vec<Warning>,
}

impl PeerRow {
    /// The warnings column: dated warnings, then verdict counts.
    pub fn warning_texts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.warnings.iter().map(Warning::text).collect();
        if self.counts.verdict_warn > 0 {
            v.push(format!("verdict warn x{}", self.counts.verdict_warn));
        }
        if self.counts.verdict_defer > 0 {
            v.push(format!("verdict defer x{}", self.counts.verdict_defer));
        }
        v
    }
}

/// One day with sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayRow {
    pub day: i64,
    pub inbound: Counts,
    pub outbound: Counts,
}

impl DayRow {
    pub fn counts(&self, d: Direction) -> &Counts {
        match d {
            Direction::In => &self.inbound,
            Direction::Out => &self.outbound,
        }
    }
}

/// The whole report.
#[derive(Clone, Debug)]
pub struct Report {
    pub period: Period,
    pub files: Vec<String>,
    /// Records read from all files, and those inside the period.
    pub records_read: u64,
    pub records_in_period: u64,
    pub skipped_count: u64,
    pub skipped: Vec<Skipped>,
    /// Time of the first and last record inside the period.
    pub first: Option<String>,
    pub last: Option<String>,
    pub inbound: Counts,
    pub outbound: Counts,
    /// Days with at least one session, in order.
    pub days: Vec<DayRow>,
    /// Peers with at least one session in the period: inbound first, then
    /// outbound; within each, most sessions first, then by host.
    pub peers: Vec<PeerRow>,
}

impl Report {
    pub fn totals(&self, d: Direction) -> &Counts {
        match d {
            Direction::In => &self.inbound,
            Direction::Out => &self.outbound,
        }
    }

    /// The period as printed: the requested bounds, else the data's.
    pub fn period_text(&self) -> String {
        let first_day = self.days.first().map(|d| d.day);
        let last_day = self.days.last().map(|d| d.day);
        let from = self.period.since.or(first_day).map(format_date);
        let to = self.period.until.or(last_day).map(format_date);
        match (from, to) {
            (Some(a), Some(b)) => format!("{a} to {b}"),
            (Some(a), None) => format!("from {a}"),
            (None, Some(b)) => format!("until {b}"),
            (None, None) => "no records".into(),
        }
    }
}

#[derive(Default)]
struct PeerState {
    in_period: bool,
    row_counts: Counts,
    suites: BTreeSet<String>,
    first_encrypted: Option<String>,
    last_encrypted: Option<String>,
    warnings: Vec<Warning>,
    /// Whether the last completed contact was encrypted.
    last_encrypted_contact: Option<bool>,
    last_fingerprint: Option<String>,
}

impl PeerState {
    fn warn(&mut self, kind: WarningKind, day: i64, time: &str, detail: Option<(String, String)>) {
        if self.warnings.iter().any(|w| w.kind == kind && w.day == day) {
            return;
        }
        self.warnings.push(Warning {
            kind,
            day,
            time: time.to_string(),
            detail,
        });
    }
}

/// Computes the report over `loaded` (sorted by time) for `period`.
pub fn build(loaded: &Loaded, period: Period) -> Report {
    let mut peers: HashMap<(Direction, String), PeerState> = HashMap::new();
    let mut days: BTreeMap<i64, DayRow> = BTreeMap::new();
    let (mut inbound, mut outbound) = (Counts::default(), Counts::default());
    let (mut first, mut last) = (None, None);
    let mut in_period_n = 0;
    for e in &loaded.entries {
        let r = &e.rec;
        let day = e.at.div_euclid(86_400);
        if period.until.is_some_and(|u| day > u) {
            // Sorted by time: nothing later matters.
            break;
        }
        let inside = period.contains(day);
        let st = peers.entry((r.direction, r.peer_host.clone())).or_default();
        let enc = r.is_encrypted();
        // A completed plain contact after an encrypted one: went plain.
        // Sessions that failed ("error: ...") say nothing about the peer.
        let plain_contact = !enc && !r.is_error() && r.peer_addr != "-";
        if plain_contact && st.last_encrypted_contact == Some(true) && inside {
            st.warn(WarningKind::WentPlain, day, &r.time, None);
        }
        if enc {
            st.last_encrypted_contact = Some(true);
        } else if plain_contact {
            st.last_encrypted_contact = Some(false);
        }
        if r.peer_fingerprint != "-" && !r.peer_fingerprint.is_empty() {
            if let Some(prev) = &st.last_fingerprint {
                if *prev != r.peer_fingerprint && inside {
                    let detail = Some((prev.clone(), r.peer_fingerprint.clone()));
                    let kind = match r.pin_moved_from.as_deref() == Some(prev.as_str()) {
                        true => WarningKind::KeyRotated,
                        false => WarningKind::KeyChanged,
                    };
                    st.warn(kind, day, &r.time, detail);
                }
            }
            st.last_fingerprint = Some(r.peer_fingerprint.clone());
        }
        if !inside {
            continue;
        }
        if r.key_problem.is_some() {
            st.warn(WarningKind::OwnKeyProblem, day, &r.time, None);
        }
        in_period_n += 1;
        st.in_period = true;
        st.row_counts.add(r);
        st.suites.insert(r.suite.clone());
        if enc {
            if st.first_encrypted.is_none() {
                st.first_encrypted = Some(r.time.clone());
            }
            st.last_encrypted = Some(r.time.clone());
        }
        let d = days.entry(day).or_insert_with(|| DayRow {
            day,
            ..Default::default()
        });
        match r.direction {
            Direction::In => {
                d.inbound.add(r);
                inbound.add(r);
            }
            Direction::Out => {
                d.outbound.add(r);
                outbound.add(r);
            }
        }
        if first.is_none() {
            first = Some(r.time.clone());
        }
        last = Some(r.time.clone());
    }
    let mut rows: Vec<PeerRow> = peers
        .into_iter()
        .filter(|(_, s)| s.in_period)
        .map(|((direction, host), s)| PeerRow {
            direction,
            host,
            counts: s.row_counts,
            suites: s.suites.into_iter().collect(),
            first_encrypted: s.first_encrypted,
            last_encrypted: s.last_encrypted,
            warnings: s.warnings,
        })
        .collect();
    rows.sort_by(|a, b| {
        a.direction
            .cmp(&b.direction)
            .then(b.counts.sessions.cmp(&a.counts.sessions))
            .then(a.host.cmp(&b.host))
    });
    Report {
        period,
        files: loaded.files.clone(),
        records_read: loaded.entries.len() as u64,
        records_in_period: in_period_n,
        skipped_count: loaded.skipped_count,
        skipped: loaded.skipped.clone(),
        first,
        last,
        inbound,
        outbound,
        days: days.into_values().collect(),
        peers: rows,
    }
}
