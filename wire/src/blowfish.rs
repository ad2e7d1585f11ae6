//! Blowfish-CTR then HMAC-SHA1 record protection, for suite RSA-BLOWFISH
//! (encrypt-then-MAC): the tag covers seq || header || ciphertext; key, IV
//! and MAC key from the direction's traffic secret.

use blackpony_crypto::blowfish_ctr::{BlowfishCtr, IV_LEN, KEY_LEN};
use blackpony_crypto::mac::{MacKey, MAC_KEY_LEN, MAC_LEN};
use blackpony_crypto::Secret;

use crate::limits::REKEY_BYTES;
use crate::record::{Protection, HEADER_LEN};
use crate::schedule::{traffic_key, TrafficSecret};

/// Blowfish-CTR then HMAC-SHA1 over seq || header || ciphertext.
struct BlowfishHmac {
    cipher: BlowfishCtr,
    mac: MacKey,
}

impl Protection for BlowfishHmac {
    fn tag_len(&self) -> usize {
        MAC_LEN
    }

    fn rekey_limit(&self) -> u64 {
        REKEY_BYTES
    }

    fn seal(&mut self, seq: u64, header: &[u8; HEADER_LEN], body: &mut [u8], tag: &mut [u8]) {
        self.cipher.apply(body);
        tag.copy_from_slice(&self.mac.compute(&[&seq.to_be_bytes(), header, body]));
    }

    fn open(&mut self, seq: u64, header: &[u8; HEADER_LEN], body: &mut [u8], tag: &[u8]) -> bool {
        if !self.mac.verify(&[&seq.to_be_bytes(), header, body], tag) {
            return false;
        }
        self.cipher.apply(body);
        true
    }
}

/// The record protection of one key epoch, from its traffic secret.
pub fn protection(ts: &TrafficSecret) -> Box<dyn Protection> {
    let key: Secret<KEY_LEN> = traffic_key(ts, b"blackpony blowfish key");
    let iv: Secret<IV_LEN> = traffic_key(ts, b"blackpony blowfish iv");
    let mac: Secret<MAC_KEY_LEN> = traffic_key(ts, b"blackpony hmac-sha1 key");
    Box::new(BlowfishHmac {
        cipher: BlowfishCtr::new(&key, iv.expose()),
        mac: MacKey::new(&mac),
    })
}
