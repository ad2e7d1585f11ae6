//! Suite RSA-BLOWFISH: the seed's design. Both ends send their RSA public
//! keys; each sends the other a fresh 32-byte secret under RSA-OAEP; session
//! keys come from both secrets, both nonces and the transcript hash; records
//! are Blowfish-CTR with HMAC-SHA1 (encrypt-then-MAC).
//!
//! Pure step functions, no I/O: the inbound and outbound sessions move the
//! bytes. The messages (docs/PROTOCOL.md, "RSA-BLOWFISH"):
//!
//! ```text
//! ClientHello     = version(1) || nonce_c(32) || vec16(client SPKI DER)     base64 in the command
//! ServerHello     = nonce_s(32) || vec16(server SPKI DER) || vec16(OAEP_c(secret_s))
//! ClientKey       = vec16(OAEP_s(secret_c)) || finished_c(20)
//! ServerFinished  = finished_s(20)
//! ```

use base64ct::{Base64, Encoding};
use rsa::PublicKey;

use super::common::{ikm, keys_for, start_transcript};
pub use super::common::{ClientAwaitFinished, Keys, NONCE_LEN};
use super::message::{self, CLIENT_KEY, SERVER_FINISHED, SERVER_HELLO};
use super::SuiteId;
use crate::crypto::hash::Transcript;
use crate::crypto::mac::MAC_LEN;
use crate::crypto::oaep::{self, SECRET_LEN};
use crate::crypto::{random_bytes, random_secret, Secret};
use crate::keys::{fingerprint, parse_peer_key, HostKey};
/// The suite's record protection, Blowfish-CTR then HMAC-SHA1: the record layer's crate has it.
pub use crate::wire::blowfish::protection;
use crate::wire::codec::{Reader, Writer};
use crate::wire::schedule::{Role, Schedule};
use crate::Error;

pub const VERSION: u8 = 1;
const SUITE: SuiteId = SuiteId::RsaBlowfish;

// ---------------------------------------------------------------- client

/// Client, before sending the command: holds its nonce and the transcript so far.
pub struct ClientStart<'k> {
    key: &'k HostKey,
    nonce_c: [u8; NONCE_LEN],
    hello: Vec<u8>,
    transcript: Transcript,
}

impl<'k> ClientStart<'k> {
    /// `offered` is the server's suite list exactly as its EHLO reply gave it.
    pub fn new(key: &'k HostKey, offered: &str) -> Self {
        let mut nonce_c = [0u8; NONCE_LEN];
        random_bytes(&mut nonce_c);
        let mut w = Writer::new();
        w.u8(VERSION).bytes(&nonce_c).vec16(key.public_der());
        let hello = w.buf;
        let mut transcript = start_transcript(offered, SUITE);
        transcript.add(&hello);
        ClientStart {
            key,
            nonce_c,
            hello,
            transcript,
        }
    }

    /// The command argument: base64 of the ClientHello.
    pub fn hello_base64(&self) -> String {
        Base64::encode_string(&self.hello)
    }

    /// Process the framed ServerHello; returns the framed ClientKey to send,
    /// the session keys and the state that checks the server's Finished.
    pub fn on_server_hello(
        mut self,
        msg: &[u8],
    ) -> Result<(Vec<u8>, Keys, ClientAwaitFinished), Error> {
        let mut r = Reader::new(message::body(msg, SERVER_HELLO).ok_or(Error::Crypto)?);
        let nonce_s = r.take(NONCE_LEN).ok_or(Error::Crypto)?;
        let spki_s = r.vec16().ok_or(Error::Crypto)?;
        let wrapped_s = r.vec16().ok_or(Error::Crypto)?;
        r.finish().ok_or(Error::Crypto)?;
        let server_key: PublicKey = parse_peer_key(spki_s).ok_or(Error::Crypto)?;

        let secret_s = oaep::unwrap(self.key.private(), wrapped_s);
        let secret_c = random_secret::<SECRET_LEN>();
        let wrapped_c = oaep::wrap(&server_key, &secret_c);

        self.transcript.add(msg);
        self.transcript.add(&wrapped_c);
        let th1 = self.transcript.current();
        let ikm = ikm(secret_c.expose(), secret_s.expose());
        let schedule = Schedule::new(&self.nonce_c, nonce_s, ikm.expose(), th1);
        let finished_c = schedule.finished(Role::Client, &th1);
        self.transcript.add(&finished_c);
        let th2 = self.transcript.current();

        let mut w = Writer::new();
        w.vec16(&wrapped_c).bytes(&finished_c);
        let keys = keys_for(Role::Client, &schedule, protection, fingerprint(spki_s));
        let awaiting = ClientAwaitFinished { schedule, th2 };
        Ok((message::frame(CLIENT_KEY, &w.buf), keys, awaiting))
    }
}

// ---------------------------------------------------------------- server

/// Server, after sending ServerHello: waiting for the client's key and Finished.
pub struct ServerAwaitKey<'k> {
    key: &'k HostKey,
    nonce_c: [u8; NONCE_LEN],
    nonce_s: [u8; NONCE_LEN],
    spki_c: Vec<u8>,
    secret_s: Secret<SECRET_LEN>,
    transcript: Transcript,
}

/// Parse the base64-decoded ClientHello. `None` means malformed: answered
/// with a 501 while the connection is still plain.
pub fn parse_client_hello(hello: &[u8]) -> Option<([u8; NONCE_LEN], &[u8], PublicKey)> {
    let mut r = Reader::new(hello);
    if r.u8()? != VERSION {
        return None;
    }
    let nonce_c = r.array::<NONCE_LEN>()?;
    let spki = r.vec16()?;
    r.finish()?;
    let key = parse_peer_key(spki)?;
    Some((nonce_c, spki, key))
}

impl<'k> ServerAwaitKey<'k> {
    /// Answer a well-formed ClientHello; returns the framed ServerHello to send.
    pub fn new(key: &'k HostKey, offered: &str, hello: &[u8]) -> Option<(Vec<u8>, Self)> {
        let (nonce_c, spki_c, client_key) = parse_client_hello(hello)?;
        let mut nonce_s = [0u8; NONCE_LEN];
        random_bytes(&mut nonce_s);
        let secret_s = random_secret::<SECRET_LEN>();
        let mut w = Writer::new();
        w.bytes(&nonce_s)
            .vec16(key.public_der())
            .vec16(&oaep::wrap(&client_key, &secret_s));
        let msg = message::frame(SERVER_HELLO, &w.buf);
        let mut transcript = start_transcript(offered, SUITE);
        transcript.add(hello);
        transcript.add(&msg);
        let state = ServerAwaitKey {
            key,
            nonce_c,
            nonce_s,
            spki_c: spki_c.to_vec(),
            secret_s,
            transcript,
        };
        Some((msg, state))
    }

    /// Process the framed ClientKey; on success returns the framed
    /// ServerFinished to send and the session keys.
    pub fn on_client_key(mut self, msg: &[u8]) -> Result<(Vec<u8>, Keys), Error> {
        let mut r = Reader::new(message::body(msg, CLIENT_KEY).ok_or(Error::Crypto)?);
        let wrapped_c = r.vec16().ok_or(Error::Crypto)?;
        let finished_c = r.take(MAC_LEN).ok_or(Error::Crypto)?;
        r.finish().ok_or(Error::Crypto)?;
        // A bad OAEP block gives a random secret and fails at the Finished check below.
        let secret_c = oaep::unwrap(self.key.private(), wrapped_c);

        self.transcript.add(wrapped_c);
        let th1 = self.transcript.current();
        let ikm = ikm(secret_c.expose(), self.secret_s.expose());
        let schedule = Schedule::new(&self.nonce_c, &self.nonce_s, ikm.expose(), th1);
        if !schedule.verify_finished(Role::Client, &th1, finished_c) {
            return Err(Error::Crypto);
        }
        self.transcript.add(finished_c);
        let th2 = self.transcript.current();
        let finished_s = schedule.finished(Role::Server, &th2);
        let keys = keys_for(
            Role::Server,
            &schedule,
            protection,
            fingerprint(&self.spki_c),
        );
        Ok((message::frame(SERVER_FINISHED, &finished_s), keys))
    }
}
