//! Everything between raw bytes and authenticated plaintext: the codec for
//! handshake messages, the key schedule, the record layer and the two record
//! protections (Blowfish-CTR + HMAC-SHA1, ChaCha20-Poly1305). Knows nothing
//! of SMTP or the sessions; the core re-exports it as `blackpony::wire`.
//! docs/PROTOCOL.md is the specification; this code follows it section by section.
#![forbid(unsafe_code)]

pub mod aead;
pub mod blowfish;
pub mod codec;
pub mod limits;
pub mod record;
pub mod schedule;
