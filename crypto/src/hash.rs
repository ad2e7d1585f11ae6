//! SHA-256, for the handshake transcript and key fingerprints, where
//! collision resistance matters.

use sha2::{Digest, Sha256};

pub const HASH_LEN: usize = 32;

/// A running hash of everything both sides said in the handshake.
#[derive(Clone, Default)]
pub struct Transcript(Sha256);

impl Transcript {
    pub fn new() -> Self {
        Transcript(Sha256::new())
    }

    /// Add one length-prefixed item, so item boundaries are part of the hash.
    pub fn add(&mut self, item: &[u8]) {
        self.0.update((item.len() as u32).to_be_bytes());
        self.0.update(item);
    }

    /// The hash of what was added so far; the transcript keeps running.
    pub fn current(&self) -> [u8; HASH_LEN] {
        self.0.clone().finalize().into()
    }
}

pub fn sha256(data: &[u8]) -> [u8; HASH_LEN] {
    Sha256::digest(data).into()
}
