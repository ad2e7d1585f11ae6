//! Every numeric bound in one place, each with the reason it has the value it has.
//! The record layer's own (record size, rekey volumes, sequence numbers) live
//! in its crate, wire/src/limits.rs, and are re-exported here.

use std::time::Duration;

pub use crate::wire::limits::{
    MAX_RECORD_PAYLOAD, MAX_SEQUENCE, REKEY_BYTES, REKEY_BYTES_AEAD, REKEY_SLACK,
};

/// Longest SMTP command or reply line we accept in the plain phase, CRLF included.
/// RFC 5321 4.5.3.1.4/5 sets 512 octets for commands and replies; extensions and
/// real servers go beyond (AUTH, long EHLO replies; the XBLACKPONY command carries a
/// base64 ClientHello, 806 bytes with a 4096-bit key), so we allow 4 KiB, far below
/// anything that could cost memory, and refuse longer lines with a 500.
pub const MAX_LINE: usize = 4096;

/// Most lines in one multi-line reply (an EHLO reply lists a dozen keywords).
pub const MAX_REPLY_LINES: usize = 100;

/// Largest handshake message body. With RSA keys up to 4096 bits the largest,
/// ServerHello, is 32 + 2 + 550 (SPKI) + 2 + 512 (OAEP) = 1098 bytes; a later
/// suite adds a 512-byte signature.
pub const MAX_HANDSHAKE_MESSAGE: usize = 4096;

/// Smallest and largest RSA host key we accept from a peer, in bits.
pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 4096;

/// Default size of a new host key; see docs/SECURITY.md for the trade-off.
pub const DEFAULT_RSA_BITS: usize = 2048;

/// How long a static-key certificate (src/cert.rs) is valid. Short enough
/// that a leaked static key stops working within a season without any
/// revocation machinery; long enough that a missed renewal is noticed first.
pub const STATIC_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// Renew a certificate this long before it expires: a daily job then has
/// 30 tries before peers would see an expired certificate.
pub const STATIC_CERT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// From this long before expiry each start logs an error: the renewal job
/// has been failing for two weeks.
pub const STATIC_CERT_WARN_BEFORE: Duration = Duration::from_secs(14 * 24 * 3600);

/// A new certificate's window starts this long before the moment it is
/// issued, so a peer whose clock is behind ours still accepts it at once.
pub const STATIC_CERT_BACKDATE: Duration = Duration::from_secs(24 * 3600);

/// How long `blackpony --rotate-key` has the old key vouch for the new one
/// by default (`--transition-days`): a peer that sends only once a season
/// still finds the statement and follows. A longer window costs nothing in
/// security: whoever holds the old key can impersonate it to peers still
/// pinned to it, statement or not.
pub const ROTATION_TRANSITION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Largest static-key certificate: 24 label + 32 + 16 + 2 + 550 (SPKI of a
/// 4096-bit key) + 2 + 512 (signature) = 1138 bytes, rounded up.
pub const MAX_STATIC_CERT: usize = 2048;

/// RFC 5321 4.5.3.2: initial 220 greeting 5 min, MAIL/RCPT 5 min, DATA
/// initiation 2 min, data block 3 min, final dot 10 min, server waiting for
/// the next command 5 min. We use one value for every wait, the longest of
/// those that apply to an idle peer, changeable with --timeout. It bounds:
/// - each read and each write;
/// - each whole command line (the server's 5-minute wait for the next
///   command): the RFC words it as a wait; we bound the whole line, however
///   slowly it is trickled, so a byte sent just inside each read's timeout
///   does not hold the session;
/// - each whole reply, all its lines (the client's waits). One value errs
///   long for the greeting, MAIL/RCPT and DATA initiation and short for the
///   final dot (10 min): a backend whose content filter takes longer needs
///   a larger --timeout, as before.
///
/// Message data (DATA, BDAT chunks) is bounded per read, as the RFC's data
/// block timeout is, and as a whole by [`DEFAULT_SESSION_TIMEOUT`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The whole connection (inbound) or delivery (outbound) must end within
/// this, changeable with --session-timeout. The RFC has no session limit;
/// its DATA block timeout (3 min) is per read, so without one a peer that
/// trickles message data, or sends commands for ever, holds a process (a
/// thread under --listen) for ever. One hour carries a message of Postfix's
/// default size limit (10 MB) over a link as slow as 3 KB/s, or a long run
/// of messages over one cached connection; a sender cut at the limit gets
/// 421 4.4.2 and retries, and a message in progress is never half delivered.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(3600);

/// Time allowed for a TCP connect to the backend or a remote MX.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Buffer used when copying bytes between streams.
pub const COPY_BUFFER: usize = 64 * 1024;
