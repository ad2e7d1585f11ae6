//! One front door for the keyed suites ([`ClientStart`], [`ServerAwaitKey`])
//! that dispatches on the suite, so [`crate::switch`] runs any keyed suite
//! the same way. This module imports the suites; they never import it.

pub use super::common::{ClientAwaitFinished, Keys};
use super::{rsa_blowfish, x25519_chacha, SuiteId};
use crate::keys::HostKey;
use crate::Error;

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
            SuiteId::Rot(_) | SuiteId::Noise => None,
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
            SuiteId::Rot(_) | SuiteId::Noise => None,
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
