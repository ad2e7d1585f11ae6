//! `blackpony-report`: what share of this server's sessions, in and out,
//! were encrypted, per day and per peer, read from the session records
//! (see [`crate::session_record`]).
//!
//! * [`parse`]: read record files (rotated ones too), skipping and counting
//!   corrupt or truncated lines;
//! * [`aggregate`]: totals, days, peers and warnings for a period;
//! * [`table`], [`json`], [`html`] (with [`svg`]): the three outputs.

pub mod aggregate;
pub mod html;
pub mod json;
pub mod parse;
pub mod svg;
pub mod table;

pub use aggregate::{build, Counts, DayRow, PeerRow, Period, Report, Warning, WarningKind};
pub use parse::{read_files, Entry, Loaded, Skipped};
