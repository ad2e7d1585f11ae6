//! What the keyed suites share once they have a shared secret: the session
//! keys (both suites), and the transcript start and Finished check of the
//! Finished-exchange handshake (RSA-BLOWFISH). The suites import this;
//! nothing here imports a suite.

use super::message::{self, SERVER_FINISHED};
use super::SuiteId;
use crate::crypto::hash::{Transcript, HASH_LEN};
use crate::crypto::mac::MAC_LEN;
use crate::crypto::Secret;
use crate::wire::record::{Opener, ProtectionFactory, Sealer};
use crate::wire::schedule::{Role, Schedule};
use crate::Error;

/// Fresh random bytes sent by each side in its hello.
pub const NONCE_LEN: usize = 32;

/// The session's record keys and who the peer is.
pub struct Keys {
    pub sealer: Sealer,
    pub opener: Opener,
    pub peer_fingerprint: String,
}

/// The record keys `role` uses, and the peer's name (its key fingerprint).
pub fn keys_for(
    role: Role,
    schedule: &Schedule,
    factory: ProtectionFactory,
    peer_fingerprint: String,
) -> Keys {
    Keys {
        sealer: Sealer::new(factory, schedule.traffic(role)),
        opener: Opener::new(factory, schedule.traffic(role.peer())),
        peer_fingerprint,
    }
}

/// The schedule's input keying material: two 32-byte secrets, in order.
pub fn ikm(first: &[u8], second: &[u8]) -> Secret<64> {
    let mut k = Secret::<64>::zero();
    k.expose_mut()[..32].copy_from_slice(first);
    k.expose_mut()[32..].copy_from_slice(second);
    k
}

/// The transcript's first items: the protocol, the suite list the server
/// offered (as its EHLO reply gave it) and the suite chosen. An attacker who
/// edits the offered list makes the two transcripts differ.
pub fn start_transcript(offered: &str, suite: SuiteId) -> Transcript {
    let mut t = Transcript::new();
    t.add(b"blackpony/1");
    t.add(offered.as_bytes());
    t.add(suite.to_string().as_bytes());
    t
}

/// Client, after sending its key and Finished: waiting for the server's Finished.
pub struct ClientAwaitFinished {
    pub(crate) schedule: Schedule,
    pub(crate) th2: [u8; HASH_LEN],
}

impl ClientAwaitFinished {
    /// Check the framed ServerFinished.
    pub fn on_server_finished(self, msg: &[u8]) -> Result<(), Error> {
        let tag = message::body(msg, SERVER_FINISHED).ok_or(Error::Crypto)?;
        if tag.len() != MAC_LEN || !self.schedule.verify_finished(Role::Server, &self.th2, tag) {
            return Err(Error::Crypto);
        }
        Ok(())
    }
}
