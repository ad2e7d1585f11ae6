//! Suite NOISE-25519-CHACHAPOLY-SHA256 (handshake v2): Noise `XX` on first
//! contact, Noise `IK` to a peer whose static key the client has cached.
//! Each host's identity is its static X25519 key, vouched for by a
//! certificate its RSA host key signed once ([`crate::cert`]), so no
//! connection needs an RSA private-key operation. Pins stay RSA fingerprints.
//! docs/PROTOCOL.md section 3B is the specification.
//!
//! ```text
//! prologue = vec16("blackpony/2") || vec16(offered list) || vec16(suite) || vec16(outer EHLO line)
//! XX:  C: XBLACKPONY <suite> XX base64(msg1: e, payload = flags)
//!      S: 220 ... CRLF || frame(4, msg2: e, ee, s, es, payload = certificate_s [|| continuity])
//!      C: frame(4, msg3: s, se, payload = certificate_c) || records...
//! IK:  C: XBLACKPONY <suite> IK base64(msg1: e, es, s, ss, payload = inner EHLO line)
//!      S: 220 ... CRLF || frame(4, msg2: e, ee, se, payload = reply to the inner EHLO)
//!      C: records: frame(5, certificate_c) || MAIL FROM ...
//! ```
//! Record keys: the Noise split (k_i2r || k_r2i) is the input keying
//! material of the existing schedule, with the handshake hash as its
//! transcript hash; records are ChaCha20-Poly1305 ([`crate::wire::aead`]).

use x25519_dalek::StaticSecret;

use super::common::{ikm, keys_for, Keys};
use crate::cert::{self, VerifiedCert};
use crate::noise::{HandshakeState, Pattern};
use crate::static_key::StaticIdentity;
use crate::wire::aead::protection;
use crate::wire::codec::Writer;
use crate::wire::schedule::{Role, Schedule};
use crate::Error;

/// Longest inner EHLO line (CRLF included) that rides in an IK msg1: the
/// command `XBLACKPONY <suite> IK <base64(96 + this)>` CRLF then stays
/// within RFC 5321's 512 octets. A longer one (a 255-octet domain) uses XX.
pub const IK_MAX_EHLO: usize = 252;

/// The frame type of msg2 and msg3 after the `220` (see suite::message).
pub const NOISE_MESSAGE: u8 = 4;
/// The frame type of the client's certificate, first thing in its records (IK).
pub const IDENTITY: u8 = 5;

/// XX msg1 payload, bit 0 of its first byte: "send me your continuity
/// statement". A server that predates it ignores msg1's payload; a client
/// that does not set it gets the certificate alone.
pub const WANT_CONTINUITY: u8 = 0x01;

/// The prologue both sides hash first: any edit of the offered list, the
/// suite or the EHLO line by an attacker makes msg2 fail to decrypt.
pub fn prologue(offered: &str, suite: &str, outer_ehlo: &[u8]) -> Vec<u8> {
    let ehlo = crate::reply::trim_eol(outer_ehlo);
    let mut w = Writer::new();
    w.vec16(b"blackpony/2")
        .vec16(offered.as_bytes())
        .vec16(suite.as_bytes())
        .vec16(ehlo);
    w.buf
}

fn fail<E>(_: E) -> Error {
    Error::Crypto
}

/// The record keys of a finished handshake, through the existing schedule.
fn keys(hs: HandshakeState, role: Role, peer_fingerprint: String) -> Result<Keys, Error> {
    let split = hs.split().map_err(fail)?;
    let ikm = ikm(
        split.initiator_to_responder.expose(),
        split.responder_to_initiator.expose(),
    );
    let schedule = Schedule::new(b"", b"", ikm.expose(), split.handshake_hash);
    Ok(keys_for(role, &schedule, protection, peer_fingerprint))
}

/// A peer's certificate, checked against the static key the handshake
/// authenticated (and the clock).
fn check_peer(hs: &HandshakeState, cert_bytes: &[u8]) -> Result<VerifiedCert, Error> {
    check_identity(&hs.remote_static().ok_or(Error::Crypto)?, cert_bytes)
}

fn secret(id: &StaticIdentity) -> Option<StaticSecret> {
    Some(id.secret.clone())
}

// ---------------------------------------------------------------- client

/// Client, XX: msg1 sent, waiting for msg2.
pub struct ClientXx(HandshakeState);

impl ClientXx {
    /// Start XX; returns msg1 (the command's argument).
    pub fn start(id: &StaticIdentity, prologue: &[u8]) -> Result<(Self, Vec<u8>), Error> {
        let mut hs =
            HandshakeState::new(Pattern::XX, true, prologue, secret(id), None).map_err(fail)?;
        let msg1 = hs.write_message(&[WANT_CONTINUITY]).map_err(fail)?;
        Ok((ClientXx(hs), msg1))
    }

    /// msg2 in: the server's certificate, checked, and the fingerprint of the
    /// old key that vouches for it by a valid continuity statement (one that
    /// does not verify is logged and ignored). The caller decides on the pin
    /// before [`ClientXxVerified::finish`]: nothing of ours leaves before.
    pub fn on_msg2(
        mut self,
        msg2: &[u8],
    ) -> Result<(ClientXxVerified, VerifiedCert, Option<String>), Error> {
        let payload = self.0.read_message(msg2).map_err(fail)?;
        let (cert_s, statement) = cert::split_payload(&payload).ok_or(Error::Crypto)?;
        let peer = check_peer(&self.0, cert_s)?;
        let now = crate::clock::now_unix();
        let vouch = (!statement.is_empty())
            .then(|| cert::verify_continuity(statement, now, &peer.spki_der))
            .and_then(|r| {
                r.map_err(|e| log::warn!("continuity statement ignored: {e}"))
                    .ok()
            })
            .map(|s| s.fingerprint);
        let verified = ClientXxVerified {
            hs: self.0,
            peer: peer.clone(),
            cert_s: cert_s.to_vec(),
        };
        Ok((verified, peer, vouch))
    }
}

/// Client, XX: the server's certificate verified, msg3 not yet sent.
pub struct ClientXxVerified {
    hs: HandshakeState,
    peer: VerifiedCert,
    /// The server's certificate as it came: the client caches it for IK.
    pub cert_s: Vec<u8>,
}

impl ClientXxVerified {
    /// msg3 (carrying our certificate) and the record keys.
    pub fn finish(mut self, id: &StaticIdentity) -> Result<(Vec<u8>, Keys), Error> {
        let msg3 = self.hs.write_message(&id.cert_bytes).map_err(fail)?;
        let keys = keys(self.hs, Role::Client, self.peer.fingerprint)?;
        Ok((msg3, keys))
    }
}

/// Client, IK: msg1 (with the inner EHLO) sent to a server whose
/// certificate was cached beside its pin.
pub struct ClientIk {
    hs: HandshakeState,
    peer: VerifiedCert,
}

impl ClientIk {
    /// Only the inner EHLO may ride in msg1: anyone who recorded it can
    /// replay it, so never an envelope or message data.
    pub fn start(
        id: &StaticIdentity,
        prologue: &[u8],
        server: &VerifiedCert,
        inner_ehlo: &[u8],
    ) -> Result<(Self, Vec<u8>), Error> {
        let rs = Some(server.static_public);
        let mut hs =
            HandshakeState::new(Pattern::IK, true, prologue, secret(id), rs).map_err(fail)?;
        let msg1 = hs.write_message(inner_ehlo).map_err(fail)?;
        let peer = server.clone();
        Ok((ClientIk { hs, peer }, msg1))
    }

    /// msg2 in: the reply to the inner EHLO, and the record keys.
    pub fn on_msg2(mut self, msg2: &[u8]) -> Result<(Vec<u8>, Keys), Error> {
        let reply = self.hs.read_message(msg2).map_err(fail)?;
        let keys = keys(self.hs, Role::Client, self.peer.fingerprint)?;
        Ok((reply, keys))
    }
}

// ---------------------------------------------------------------- server

/// Server, XX: msg2 sent, waiting for msg3.
pub struct ServerXx(HandshakeState);

impl ServerXx {
    /// msg1 in; msg2 (carrying our certificate, and our continuity
    /// statement during a transition if the client asks) out. `None` if msg1 is not
    /// a well-formed first message (a 501 while still plain).
    pub fn start(id: &StaticIdentity, prologue: &[u8], msg1: &[u8]) -> Option<(Self, Vec<u8>)> {
        let mut hs = HandshakeState::new(Pattern::XX, false, prologue, secret(id), None).ok()?;
        let flags = hs.read_message(msg1).ok()?;
        let mut payload = id.cert_bytes.clone();
        if flags.first().is_some_and(|f| f & WANT_CONTINUITY != 0) {
            let now = crate::clock::now_unix();
            payload.extend_from_slice(id.continuity_at(now).unwrap_or_default());
        }
        let msg2 = hs.write_message(&payload).ok()?;
        Some((ServerXx(hs), msg2))
    }

    /// msg3 in: the client's certificate checked, and the record keys.
    pub fn on_msg3(mut self, msg3: &[u8]) -> Result<Keys, Error> {
        let cert_c = self.0.read_message(msg3).map_err(fail)?;
        let peer = check_peer(&self.0, &cert_c)?;
        keys(self.0, Role::Server, peer.fingerprint)
    }
}

/// Server, IK: msg1 read; the inner EHLO must be answered in msg2.
pub struct ServerIk(HandshakeState);

impl ServerIk {
    /// msg1 in: the inner EHLO line it carries. `None` if it does not
    /// decrypt: a malformed message, or one for a static key we no longer
    /// have (the client's cache is stale; it starts over with XX).
    pub fn start(id: &StaticIdentity, prologue: &[u8], msg1: &[u8]) -> Option<(Self, Vec<u8>)> {
        let mut hs = HandshakeState::new(Pattern::IK, false, prologue, secret(id), None).ok()?;
        let ehlo = hs.read_message(msg1).ok()?;
        Some((ServerIk(hs), ehlo))
    }

    /// msg2 carrying `reply` (to the inner EHLO), and a state that checks the
    /// client's certificate, which comes first in its records.
    pub fn answer(mut self, reply: &[u8]) -> Result<(Vec<u8>, ServerIkAwaitIdentity), Error> {
        let msg2 = self.0.write_message(reply).map_err(fail)?;
        let client_static = self.0.remote_static().ok_or(Error::Crypto)?;
        let hs = self.0;
        Ok((msg2, ServerIkAwaitIdentity { hs, client_static }))
    }
}

/// Server, IK: msg2 sent; the client's certificate not yet seen.
pub struct ServerIkAwaitIdentity {
    hs: HandshakeState,
    client_static: [u8; 32],
}

impl ServerIkAwaitIdentity {
    /// The record keys; the client's certificate, read from the records
    /// these keys open, goes to [`check_identity`] before anything else.
    pub fn keys(self) -> Result<(Keys, [u8; 32]), Error> {
        let keys = keys(self.hs, Role::Server, String::new())?;
        Ok((keys, self.client_static))
    }
}

/// A peer's certificate (the client's comes in its first record under IK):
/// it must certify the static key the handshake authenticated.
pub fn check_identity(peer_static: &[u8; 32], cert_bytes: &[u8]) -> Result<VerifiedCert, Error> {
    cert::verify_for(cert_bytes, crate::clock::now_unix(), peer_static).map_err(|e| {
        log::warn!("peer certificate refused: {e}");
        Error::Crypto
    })
}
