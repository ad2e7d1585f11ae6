//! Everything between raw bytes and authenticated plaintext: the codec for
//! handshake messages, the key schedule, and the record layer.
//! docs/PROTOCOL.md is the specification; this code follows it section by section.

pub mod aead;
pub mod codec;
pub mod record;
pub mod schedule;
