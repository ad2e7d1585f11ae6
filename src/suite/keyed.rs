//! What every keyed suite shares once it has a shared secret: the transcript
//! start, the session keys, the Finished exchange, and one front door
//! ([`ClientStart`], [`ServerAwaitKey`]) that dispatches on the suite, so the
//! inbound and outbound sessions run any keyed suite the same way.

use super::message::{self, SERVER_FINISHED};
use super::{rsa_blowfish, x25519_chacha, SuiteId};
use crate::crypto::hash::{Transcript, HASH_LEN};
use crate::crypto::mac::MAC_LEN;
use crate::keys::{fingerprint, HostKey};
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

/// The record keys `role` uses, and the peer's name.
pub fn keys_for(
    role: Role,
    schedule: &Schedule,
    factory: ProtectionFactory,
    peer_spki: &[u8],
) -> Keys {
    let other = match role {
        Role::Client => Role::Server,
        Role::Server => Role::Client,
    };
    Keys {
        sealer: Sealer::new(factory, schedule.traffic(role)),
        opener: Opener::new(factory, schedule.traffic(other)),
        peer_fingerprint: fingerprint(peer_spki),
    }
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

/// Client side of any keyed suite, before the server's hello.
pub enum ClientStart<'k> {
    RsaBlowfish(rsa_blowfish::ClientStart<'k>),
    X25519(x25519_chacha::ClientStart<'k>),
}

impl<'k> ClientStart<'k> {
    /// `None` for a suite without keys (ROTn).
    pub fn new(suite: SuiteId, key: &'k HostKey, offered: &str) -> Option<Self> {
        match suite {
            SuiteId::RsaBlowfish => Some(ClientStart::RsaBlowfish(rsa_blowfish::ClientStart::new(
                key, offered,
            ))),
            SuiteId::X25519Chacha => Some(ClientStart::X25519(x25519_chacha::ClientStart::new(
                key, offered,
            ))),
            SuiteId::Rot(_) => None,
        }
    }

    /// The command's argument.
    pub fn hello_base64(&self) -> String {
        match self {
            ClientStart::RsaBlowfish(c) => c.hello_base64(),
            ClientStart::X25519(c) => c.hello_base64(),
        }
    }

    /// The framed ServerHello in; the framed ClientKey out, with the keys.
    pub fn on_server_hello(
        self,
        msg: &[u8],
    ) -> Result<(Vec<u8>, Keys, ClientAwaitFinished), Error> {
        match self {
            ClientStart::RsaBlowfish(c) => c.on_server_hello(msg),
            ClientStart::X25519(c) => c.on_server_hello(msg),
        }
    }
}

/// Server side of any keyed suite, after its hello.
pub enum ServerAwaitKey<'k> {
    RsaBlowfish(rsa_blowfish::ServerAwaitKey<'k>),
    X25519(x25519_chacha::ServerAwaitKey),
}

impl<'k> ServerAwaitKey<'k> {
    /// Answer a ClientHello; `None` if it is malformed (a 501 in plain).
    pub fn new(
        suite: SuiteId,
        key: &'k HostKey,
        offered: &str,
        hello: &[u8],
    ) -> Option<(Vec<u8>, Self)> {
        match suite {
            SuiteId::RsaBlowfish => rsa_blowfish::ServerAwaitKey::new(key, offered, hello)
                .map(|(m, s)| (m, ServerAwaitKey::RsaBlowfish(s))),
            SuiteId::X25519Chacha => x25519_chacha::ServerAwaitKey::new(key, offered, hello)
                .map(|(m, s)| (m, ServerAwaitKey::X25519(s))),
            SuiteId::Rot(_) => None,
        }
    }

    /// The framed ClientKey in; the framed ServerFinished out, with the keys.
    pub fn on_client_key(self, msg: &[u8]) -> Result<(Vec<u8>, Keys), Error> {
        match self {
            ServerAwaitKey::RsaBlowfish(s) => s.on_client_key(msg),
            ServerAwaitKey::X25519(s) => s.on_client_key(msg),
        }
    }
}
