//! HMAC-SHA1 with a constant-time verify.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use crate::Secret;

pub const MAC_LEN: usize = 20;
pub const MAC_KEY_LEN: usize = 20;

type HmacSha1 = Hmac<Sha1>;

/// An HMAC-SHA1 key, with the key schedule done once.
pub struct MacKey(HmacSha1);

impl MacKey {
    pub fn new(key: &Secret<MAC_KEY_LEN>) -> Self {
        MacKey(HmacSha1::new_from_slice(key.expose()).expect("HMAC takes any key length"))
    }

    pub fn from_slice(key: &[u8]) -> Self {
        MacKey(HmacSha1::new_from_slice(key).expect("HMAC takes any key length"))
    }

    /// MAC over the concatenation of `parts`.
    pub fn compute(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut m = self.0.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// Constant-time comparison of a received tag against the expected one.
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = self.compute(parts);
        tag.len() == MAC_LEN && bool::from(expected.ct_eq(tag))
    }
}
