//! Every numeric bound in one place, each with the reason it has the value it has.

use std::time::Duration;

/// Longest SMTP command or reply line we accept in the plain phase, CRLF included.
/// RFC 5321 4.5.3.1.4/5 sets 512 octets for commands and replies; extensions and
/// real servers go beyond (AUTH, long EHLO replies), so we allow 4 KiB, far below
/// anything that could cost memory, and refuse longer lines with a 500.
pub const MAX_LINE: usize = 4096;

/// Longest `XBLACKPONY` command line. It carries a base64 ClientHello holding an
/// RSA public key: 4096-bit SPKI DER is 550 bytes, 2 + 32 + 2 + 550 = 586 bytes,
/// 784 in base64. 2 KiB leaves room and still bounds the allocation.
pub const MAX_NEGOTIATION_LINE: usize = 2048;

/// Most lines in one multi-line reply (an EHLO reply lists a dozen keywords).
pub const MAX_REPLY_LINES: usize = 100;

/// Longest line inside DATA that we copy. RFC 5321 says 1000; real mail has
/// longer lines, and the MTA decides what to do with them, so the relay only
/// needs a bound that keeps its buffer small.
pub const MAX_DATA_LINE: usize = 1 << 20;

/// Largest record plaintext (payload). 16 KiB like TLS: big enough that the
/// 29-byte per-record overhead is under 0.2 %, small enough to buffer.
pub const MAX_RECORD_PAYLOAD: usize = 16 * 1024;

/// Largest handshake message body. RSA keys up to 4096 bits: SPKI 550 bytes,
/// OAEP ciphertext 512 bytes, signature 512 bytes, plus nonces and lengths.
pub const MAX_HANDSHAKE_MESSAGE: usize = 4096;

/// Bytes one direction may seal under one Blowfish key before it must rekey.
/// Blowfish has 64-bit blocks: after 2^(64/2) blocks collisions appear
/// (Sweet32). 8 MiB = 2^20 blocks gives a collision chance near 2^-25 per key.
pub const REKEY_BYTES: u64 = 8 * 1024 * 1024;

/// The receiver tolerates this much beyond REKEY_BYTES before calling the
/// peer broken: a sender checks the limit before sealing a record, so it can
/// overshoot by at most one record.
pub const REKEY_SLACK: u64 = MAX_RECORD_PAYLOAD as u64 + 64;

/// Sequence numbers are u64 and never wrap: the connection ends before.
pub const MAX_SEQUENCE: u64 = u64::MAX - 1;

/// Smallest and largest RSA host key we accept from a peer, in bits.
pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 4096;

/// Default size of a new host key; see docs/SECURITY.md for the trade-off.
pub const DEFAULT_RSA_BITS: usize = 2048;

/// RFC 5321 4.5.3.2: initial 220 greeting 5 min, MAIL/RCPT 5 min, DATA
/// initiation 2 min, data block 3 min, final dot 10 min, server waiting for
/// the next command 5 min. We use one value for every wait, the longest of
/// those that apply to an idle peer, changeable with --timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Time allowed for a TCP connect to the backend or a remote MX.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Buffer used when copying bytes between streams.
pub const COPY_BUFFER: usize = 64 * 1024;
