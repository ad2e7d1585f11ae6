//! The record layer's numeric bounds, each with the reason it has the value
//! it has. The core's `limits` re-exports them beside its own.

/// Largest record plaintext (payload). 16 KiB like TLS: big enough that the
/// 25-byte per-record overhead (4 length, 1 type, 20 MAC) is under 0.2 %, small enough to buffer.
pub const MAX_RECORD_PAYLOAD: usize = 16 * 1024;

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
