//! ChaCha20-Poly1305 record protection, for the forward-secret suites: the
//! TLS 1.3 nonce construction (IV XOR sequence number), the record header as
//! associated data, keys and IV from the direction's traffic secret.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};

use crate::limits::REKEY_BYTES_AEAD;
use crate::record::{Protection, HEADER_LEN};
use crate::schedule::{traffic_key, TrafficSecret};
use blackpony_crypto::Secret;

/// ChaCha20-Poly1305 with the TLS 1.3 nonce: the IV XOR the sequence number.
/// The record header is the associated data.
struct ChachaPoly {
    aead: ChaCha20Poly1305,
    iv: Secret<12>,
}

impl ChachaPoly {
    fn nonce(&self, seq: u64) -> Nonce {
        let mut n = *self.iv.expose();
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        Nonce::from(n)
    }
}

impl Protection for ChachaPoly {
    fn tag_len(&self) -> usize {
        16
    }

    fn rekey_limit(&self) -> u64 {
        REKEY_BYTES_AEAD
    }

    fn seal(&mut self, seq: u64, header: &[u8; HEADER_LEN], body: &mut [u8], tag: &mut [u8]) {
        let t = self
            .aead
            .encrypt_inout_detached(&self.nonce(seq), header, body.into())
            .expect("a record is far below ChaCha20-Poly1305's message limit");
        tag.copy_from_slice(&t);
    }

    fn open(&mut self, seq: u64, header: &[u8; HEADER_LEN], body: &mut [u8], tag: &[u8]) -> bool {
        let Ok(tag) = Tag::try_from(tag) else {
            return false;
        };
        self.aead
            .decrypt_inout_detached(&self.nonce(seq), header, body.into(), &tag)
            .is_ok()
    }
}

/// The record protection of one key epoch, from its traffic secret.
pub fn protection(ts: &TrafficSecret) -> Box<dyn Protection> {
    let key: Secret<32> = traffic_key(ts, b"blackpony chacha20poly1305 key");
    let iv: Secret<12> = traffic_key(ts, b"blackpony chacha20poly1305 iv");
    let aead = ChaCha20Poly1305::new_from_slice(key.expose()).expect("32-byte key");
    Box::new(ChachaPoly { aead, iv })
}
