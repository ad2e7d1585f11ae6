//! Suite X25519-CHACHA20POLY1305: forward secrecy. Each side makes a fresh
//! X25519 key pair per connection; the shared secret goes through the same
//! key schedule and transcript as RSA-BLOWFISH. Identity stays the RSA host
//! key: each side signs the transcript with RSA-PSS (SHA-256), so pins and
//! fingerprints are the same as for RSA-BLOWFISH. Records are
//! ChaCha20-Poly1305 with per-direction keys and nonces from sequence numbers.
//!
//! ```text
//! ClientHello    = version(1) || nonce_c(32) || x25519_c(32) || vec16(client SPKI DER)   base64 in the command
//! ServerHello    = nonce_s(32) || x25519_s(32) || vec16(server SPKI DER) || vec16(sig_s)
//! ClientKey      = vec16(sig_c) || finished_c(20)
//! ServerFinished = finished_s(20)
//! sig_s = RSA-PSS-SHA256(SHA-256("blackpony server signature" || th_s)), th_s = transcript
//!         through ClientHello and the ServerHello body before vec16(sig_s)
//! sig_c = RSA-PSS-SHA256(SHA-256("blackpony client signature" || th_c)), th_c = transcript
//!         through the framed ServerHello
//! ```

use base64ct::{Base64, Encoding};
use rsa::{Pss, PublicKey};
use sha2::Sha256;
use x25519_dalek::{EphemeralSecret, PublicKey as DhPublic};

use super::common::{keys_for, start_transcript};
pub use super::common::{ClientAwaitFinished, Keys, NONCE_LEN};
use super::message::{self, CLIENT_KEY, SERVER_FINISHED, SERVER_HELLO};
use super::SuiteId;
use crate::crypto::hash::{sha256, Transcript, HASH_LEN};
use crate::crypto::mac::MAC_LEN;
use crate::crypto::{random_bytes, Secret};
use crate::keys::{fingerprint, parse_peer_key, HostKey};
use crate::wire::codec::{Reader, Writer};
use crate::wire::schedule::{Role, Schedule};
use crate::Error;

pub const VERSION: u8 = 1;
const SUITE: SuiteId = SuiteId::X25519Chacha;
const DH_LEN: usize = 32;

pub use crate::wire::aead::protection;

fn signed_message(label: &[u8], th: &[u8; HASH_LEN]) -> [u8; HASH_LEN] {
    let mut m = Vec::with_capacity(label.len() + HASH_LEN);
    m.extend_from_slice(label);
    m.extend_from_slice(th);
    sha256(&m)
}

fn sign(key: &HostKey, label: &[u8], th: &[u8; HASH_LEN]) -> Vec<u8> {
    let mut rng = rand::rngs::SysRng;
    key.private()
        .sign_with_rng(
            &mut rng,
            Pss::<Sha256>::new_blinded(),
            &signed_message(label, th),
        )
        .expect("RSA-PSS signing with a valid key")
}

fn verify(peer: &PublicKey, label: &[u8], th: &[u8; HASH_LEN], sig: &[u8]) -> bool {
    peer.verify(Pss::<Sha256>::new(), &signed_message(label, th), sig)
        .is_ok()
}

/// The X25519 shared secret, refusing a low-order peer key (all-zero result).
fn shared(ours: EphemeralSecret, theirs: [u8; DH_LEN]) -> Option<Secret<32>> {
    let s = ours.diffie_hellman(&DhPublic::from(theirs));
    s.was_contributory()
        .then(|| Secret::from_bytes(*s.as_bytes()))
}

// ---------------------------------------------------------------- client

pub struct ClientStart<'k> {
    key: &'k HostKey,
    nonce_c: [u8; NONCE_LEN],
    dh: EphemeralSecret,
    hello: Vec<u8>,
    transcript: Transcript,
}

impl<'k> ClientStart<'k> {
    pub fn new(key: &'k HostKey, offered: &str) -> Self {
        let mut nonce_c = [0u8; NONCE_LEN];
        random_bytes(&mut nonce_c);
        let dh = EphemeralSecret::random();
        let mut w = Writer::new();
        w.u8(VERSION)
            .bytes(&nonce_c)
            .bytes(DhPublic::from(&dh).as_bytes())
            .vec16(key.public_der());
        let hello = w.buf;
        let mut transcript = start_transcript(offered, SUITE);
        transcript.add(&hello);
        ClientStart {
            key,
            nonce_c,
            dh,
            hello,
            transcript,
        }
    }

    pub fn hello_base64(&self) -> String {
        Base64::encode_string(&self.hello)
    }

    pub fn on_server_hello(
        mut self,
        msg: &[u8],
    ) -> Result<(Vec<u8>, Keys, ClientAwaitFinished), Error> {
        let body = message::body(msg, SERVER_HELLO).ok_or(Error::Crypto)?;
        let mut r = Reader::new(body);
        let nonce_s = r.array::<NONCE_LEN>().ok_or(Error::Crypto)?;
        let dh_s = r.array::<DH_LEN>().ok_or(Error::Crypto)?;
        let spki_s = r.vec16().ok_or(Error::Crypto)?;
        let signed_len = body.len() - r.remaining();
        let sig_s = r.vec16().ok_or(Error::Crypto)?;
        r.finish().ok_or(Error::Crypto)?;
        let server_key = parse_peer_key(spki_s).ok_or(Error::Crypto)?;

        let mut th_s = self.transcript.clone();
        th_s.add(&body[..signed_len]);
        if !verify(
            &server_key,
            b"blackpony server signature",
            &th_s.current(),
            sig_s,
        ) {
            return Err(Error::Crypto);
        }
        let ikm = shared(self.dh, dh_s).ok_or(Error::Crypto)?;

        self.transcript.add(msg);
        let sig_c = sign(
            self.key,
            b"blackpony client signature",
            &self.transcript.current(),
        );
        self.transcript.add(&sig_c);
        let th1 = self.transcript.current();
        let schedule = Schedule::new(&self.nonce_c, &nonce_s, ikm.expose(), th1);
        let finished_c = schedule.finished(Role::Client, &th1);
        self.transcript.add(&finished_c);
        let th2 = self.transcript.current();

        let mut w = Writer::new();
        w.vec16(&sig_c).bytes(&finished_c);
        let keys = keys_for(Role::Client, &schedule, protection, fingerprint(spki_s));
        Ok((
            message::frame(CLIENT_KEY, &w.buf),
            keys,
            ClientAwaitFinished { schedule, th2 },
        ))
    }
}

// ---------------------------------------------------------------- server

pub struct ServerAwaitKey {
    nonce_c: [u8; NONCE_LEN],
    nonce_s: [u8; NONCE_LEN],
    client_key: PublicKey,
    spki_c: Vec<u8>,
    ikm: Secret<32>,
    transcript: Transcript,
}

/// A parsed ClientHello: nonce, X25519 share, SPKI DER and the parsed key.
pub type ClientHelloParts<'a> = ([u8; NONCE_LEN], [u8; DH_LEN], &'a [u8], PublicKey);

/// Parse the ClientHello: nonce, X25519 share, SPKI and the parsed key.
pub fn parse_client_hello(hello: &[u8]) -> Option<ClientHelloParts<'_>> {
    let mut r = Reader::new(hello);
    if r.u8()? != VERSION {
        return None;
    }
    let nonce_c = r.array::<NONCE_LEN>()?;
    let dh_c = r.array::<DH_LEN>()?;
    let spki = r.vec16()?;
    r.finish()?;
    let key = parse_peer_key(spki)?;
    Some((nonce_c, dh_c, spki, key))
}

impl ServerAwaitKey {
    pub fn new(key: &HostKey, offered: &str, hello: &[u8]) -> Option<(Vec<u8>, Self)> {
        let (nonce_c, dh_c, spki_c, client_key) = parse_client_hello(hello)?;
        let mut nonce_s = [0u8; NONCE_LEN];
        random_bytes(&mut nonce_s);
        let dh = EphemeralSecret::random();
        let dh_s = DhPublic::from(&dh);
        let ikm = shared(dh, dh_c)?;

        let mut transcript = start_transcript(offered, SUITE);
        transcript.add(hello);
        let mut w = Writer::new();
        w.bytes(&nonce_s)
            .bytes(dh_s.as_bytes())
            .vec16(key.public_der());
        let mut th_s = transcript.clone();
        th_s.add(&w.buf);
        let sig_s = sign(key, b"blackpony server signature", &th_s.current());
        w.vec16(&sig_s);
        let msg = message::frame(SERVER_HELLO, &w.buf);
        transcript.add(&msg);
        let spki_c = spki_c.to_vec();
        Some((
            msg,
            ServerAwaitKey {
                nonce_c,
                nonce_s,
                client_key,
                spki_c,
                ikm,
                transcript,
            },
        ))
    }

    pub fn on_client_key(mut self, msg: &[u8]) -> Result<(Vec<u8>, Keys), Error> {
        let mut r = Reader::new(message::body(msg, CLIENT_KEY).ok_or(Error::Crypto)?);
        let sig_c = r.vec16().ok_or(Error::Crypto)?;
        let finished_c = r.take(MAC_LEN).ok_or(Error::Crypto)?;
        r.finish().ok_or(Error::Crypto)?;
        if !verify(
            &self.client_key,
            b"blackpony client signature",
            &self.transcript.current(),
            sig_c,
        ) {
            return Err(Error::Crypto);
        }
        self.transcript.add(sig_c);
        let th1 = self.transcript.current();
        let schedule = Schedule::new(&self.nonce_c, &self.nonce_s, self.ikm.expose(), th1);
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
