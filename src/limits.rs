//! Every numeric bound in one place, each with the reason it has the value it has.

use std::time::Duration;

/// Longest SMTP command or reply line we accept in the plain phase, CRLF included.
/// RFC 5321 4.5.3.1.4/5 sets 512 octets for commands and replies; extensions and
/// real servers go beyond (AUTH, long EHLO replies; the XBLACKPONY command carries a
/// base64 ClientHello, 806 bytes with a 4096-bit key), so we allow 4 KiB, far below
/// anything that could cost memory, and refuse longer lines with a 500.
pub const MAX_LINE: usize = 4096;

/// Most lines in one multi-line reply (an EHLO reply lists a dozen keywords).
pub const MAX_REPLY_LINES: usize = 100;

/// Largest record plaintext (payload). 16 KiB like TLS: big enough that the
/// 25-byte per-record overhead (4 length, 1 type, 20 MAC) is under 0.2 %, small enough to buffer.
pub const MAX_RECORD_PAYLOAD: usize = 16 * 1024;

/// Largest handshake message body. With RSA keys up to 4096 bits the largest,
/// ServerHello, is 32 + 2 + 550 (SPKI) + 2 + 512 (OAEP) = 1098 bytes; a later
/// suite adds a 512-byte signature.
pub const MAX_HANDSHAKE_MESSAGE: usize = 4096;

/// Bytes one direction may seal under one Blowfish key before it must rekey.
/// Blowfish has 64-bit blocks: after 2^(64/2) blocks collisions appear
/// (Sweet32). 8 MiB = 2^20 blocks gives a collision chance near 2^-25 per key.
pub const REKEY_BYTES: u64 = 8 * 1024 * 1024;

/// Bytes under one ChaCha20-Poly1305 key before rekeying. The AEAD has no
/// 64-bit-block bound: its limits are 2^64 records per key (our nonces come
/// from the sequence number, which never wraps) and 256 GiB per record. We
/// still rekey every 1 GiB so a key that leaks from memory exposes at most
/// that much of a long session; it costs one HKDF per GiB.
pub const REKEY_BYTES_AEAD: u64 = 1 << 30;

/// The receiver tolerates this much beyond the rekey limit before calling the
/// peer broken. Our sender rekeys before it would cross the limit; the slack
/// (one record) keeps a peer that checks after sealing interoperable.
pub const REKEY_SLACK: u64 = MAX_RECORD_PAYLOAD as u64 + 64;

/// Sequence numbers are u64 and never wrap: the connection ends before.
pub const MAX_SEQUENCE: u64 = u64::MAX - 1;

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
