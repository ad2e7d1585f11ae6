//! The key schedule shared by every suite. A suite supplies the input keying
//! material (however it made it) and the transcript hash; everything after
//! that (Finished keys, per-direction traffic secrets, rekeying) is here.
//!
//! ```text
//! prk          = HKDF-Extract(salt = nonce_c || nonce_s, ikm)
//! finished_c   = HKDF-Expand(prk, "blackpony client finished" || th, 20)
//! finished_s   = HKDF-Expand(prk, "blackpony server finished" || th, 20)
//! traffic_c2s  = HKDF-Expand(prk, "blackpony c2s traffic" || th, 20)
//! traffic_s2c  = HKDF-Expand(prk, "blackpony s2c traffic" || th, 20)
//! next traffic = HKDF-Expand(traffic, "blackpony rekey", 20)
//! ```

use blackpony_crypto::hash::HASH_LEN;
use blackpony_crypto::kdf::{Prk, PRK_LEN};
use blackpony_crypto::mac::{MacKey, MAC_LEN};
use blackpony_crypto::Secret;

/// A traffic secret: one direction's keys for one key epoch come from it.
pub type TrafficSecret = Secret<PRK_LEN>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

pub struct Schedule {
    prk: Prk,
    th: [u8; HASH_LEN],
}

impl Schedule {
    pub fn new(nonce_c: &[u8], nonce_s: &[u8], ikm: &[u8], th: [u8; HASH_LEN]) -> Self {
        let mut salt = Vec::with_capacity(nonce_c.len() + nonce_s.len());
        salt.extend_from_slice(nonce_c);
        salt.extend_from_slice(nonce_s);
        Schedule {
            prk: Prk::extract(&salt, ikm),
            th,
        }
    }

    fn finished_key(&self, role: Role) -> MacKey {
        let label: &[u8] = match role {
            Role::Client => b"blackpony client finished",
            Role::Server => b"blackpony server finished",
        };
        MacKey::new(&self.prk.expand::<MAC_LEN>(label, &self.th))
    }

    /// The Finished value `role` sends: an HMAC over the transcript hash
    /// `th_now` (which for the server also covers the client's Finished).
    pub fn finished(&self, role: Role, th_now: &[u8; HASH_LEN]) -> [u8; MAC_LEN] {
        self.finished_key(role).compute(&[th_now])
    }

    /// Constant-time check of the peer's Finished.
    pub fn verify_finished(&self, role: Role, th_now: &[u8; HASH_LEN], tag: &[u8]) -> bool {
        self.finished_key(role).verify(&[th_now], tag)
    }

    /// The first traffic secret of the direction `sender` writes.
    pub fn traffic(&self, sender: Role) -> TrafficSecret {
        let label: &[u8] = match sender {
            Role::Client => b"blackpony c2s traffic",
            Role::Server => b"blackpony s2c traffic",
        };
        self.prk.expand(label, &self.th)
    }
}

/// The traffic secret of the next key epoch.
pub fn next_traffic(ts: &TrafficSecret) -> TrafficSecret {
    Prk::from_prk(ts).expand(b"blackpony rekey", b"")
}

/// Expand one named key from a traffic secret.
pub fn traffic_key<const N: usize>(ts: &TrafficSecret, label: &[u8]) -> Secret<N> {
    Prk::from_prk(ts).expand(label, b"")
}
