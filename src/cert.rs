//! The static-key certificate: the RSA host key vouches, for a limited time,
//! for the host's static X25519 key. Issuing it is the only RSA private-key
//! operation handshake v2 needs, and it happens offline (at key generation
//! and at renewal), never per connection. Verifying it is an RSA public-key
//! operation, cheap next to a private one.
//!
//! Byte layout (all integers big-endian; `vec16(x)` = u16 length || x):
//!
//! ```text
//! offset  size  field
//!      0    24  label       "blackpony static key v2" followed by one 0x00 byte
//!     24    32  x25519      the static X25519 public key (RFC 7748 u-coordinate)
//!     56     8  not_before  u64, Unix seconds: valid from this second ...
//!     64     8  not_after   u64, Unix seconds: ... through this second, inclusive
//!     72  2+n   vec16(spki) the RSA host key, SubjectPublicKeyInfo DER
//!                           (2048 to 4096 bits, limits::MIN/MAX_RSA_BITS)
//!   74+n  2+m   vec16(sig)  RSASSA-PSS (RFC 8017 section 8.1) by that key,
//!                           SHA-256, MGF1-SHA-256, 32-byte salt, over every
//!                           byte before this field (offsets 0 .. 72+n)
//! ```
//!
//! Nothing may follow the signature. With a 2048-bit key n = 294, m = 256 and
//! the certificate is 626 bytes; with 4096 bits, 1138 (limits::MAX_STATIC_CERT).
//! The label keeps this signature from ever being taken for any other message
//! the host key signs (the continuity statement has its own).
//!
//! A **continuity statement** (`blackpony --rotate-key`) has the same layout
//! under the label "blackpony continuity v1" 0x00: the 32-byte field is the
//! SHA-256 of the NEW host key's SPKI, the window is the transition period,
//! and spki and sig are the OLD key's. It says "the old key hands over to
//! this new key until not_after"; a client that pinned the old key follows
//! it (src/policy.rs).

use rsa::Pss;
use sha2::Sha256;

use crate::crypto::hash::sha256;
use crate::keys::{fingerprint, parse_peer_key, HostKey};
use crate::limits::MAX_STATIC_CERT;
use crate::wire::codec::{Reader, Writer};

pub const LABEL: &[u8; 24] = b"blackpony static key v2\0";
pub const CONTINUITY_LABEL: &[u8; 24] = b"blackpony continuity v1\0";

/// Why a certificate was refused. For our logs only: a peer is told nothing
/// more than that the handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// Wrong length, label, layout, window order, or an RSA key we do not accept.
    Malformed,
    BadSignature,
    NotYetValid,
    Expired,
    /// A valid certificate, but for another static key than the one the
    /// handshake authenticated (or than the one on disk beside it).
    OtherKey,
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertError::Malformed => "static-key certificate is malformed",
            CertError::BadSignature => "static-key certificate signature does not verify",
            CertError::NotYetValid => "static-key certificate is not valid yet",
            CertError::Expired => "static-key certificate has expired",
            CertError::OtherKey => "static-key certificate is for another static key",
        })
    }
}

impl std::error::Error for CertError {}

/// What a certificate whose signature verified says (or a continuity
/// statement: then `static_public` is the SHA-256 of the new key's SPKI and
/// `spki_der`, `fingerprint` are the signer's, the old key's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCert {
    pub static_public: [u8; 32],
    pub spki_der: Vec<u8>,
    /// `crate::keys::fingerprint` of the SPKI: what pins compare.
    pub fingerprint: String,
    pub not_before: u64,
    pub not_after: u64,
}

impl VerifiedCert {
    /// Is `now` (Unix seconds) inside the window?
    pub fn check_time(&self, now: u64) -> Result<(), CertError> {
        if now < self.not_before {
            Err(CertError::NotYetValid)
        } else if now > self.not_after {
            Err(CertError::Expired)
        } else {
            Ok(())
        }
    }

    /// True from `renew_before` seconds before expiry on.
    pub fn needs_renewal(&self, now: u64, renew_before: u64) -> bool {
        now.saturating_add(renew_before) >= self.not_after
    }
}

/// A certificate for `static_public`, signed by `key`, valid from
/// `not_before` through `not_after` (Unix seconds). Panics only if the
/// window is reversed, a caller bug.
pub fn issue(key: &HostKey, static_public: &[u8; 32], not_before: u64, not_after: u64) -> Vec<u8> {
    issue_labelled(LABEL, key, static_public, not_before, not_after)
}

/// A continuity statement: `old` vouches for the host key whose SPKI is
/// `new_spki` from `not_before` through `not_after` (the transition).
pub fn issue_continuity(
    old: &HostKey,
    new_spki: &[u8],
    not_before: u64,
    not_after: u64,
) -> Vec<u8> {
    let digest = sha256(new_spki);
    issue_labelled(CONTINUITY_LABEL, old, &digest, not_before, not_after)
}

fn issue_labelled(
    label: &[u8; 24],
    key: &HostKey,
    static_public: &[u8; 32],
    not_before: u64,
    not_after: u64,
) -> Vec<u8> {
    assert!(not_before <= not_after, "certificate window reversed");
    let mut w = Writer::new();
    w.bytes(label)
        .bytes(static_public)
        .bytes(&not_before.to_be_bytes())
        .bytes(&not_after.to_be_bytes())
        .vec16(key.public_der());
    let sig = key
        .private()
        .sign_with_rng(
            &mut rand::rngs::SysRng,
            Pss::<Sha256>::new_blinded(),
            &sha256(&w.buf),
        )
        .expect("RSA-PSS signing with a valid key");
    w.vec16(&sig);
    w.buf
}

/// The fields, and the length of the signed part and the signature:
/// layout checked, signature not.
fn parse_layout<'a>(
    bytes: &'a [u8],
    want: &[u8; 24],
) -> Result<(VerifiedCert, usize, &'a [u8]), CertError> {
    if bytes.len() > MAX_STATIC_CERT {
        return Err(CertError::Malformed);
    }
    let mut r = Reader::new(bytes);
    let fields = (|| {
        let label = r.take(LABEL.len())?;
        let static_public = r.array::<32>()?;
        let not_before = u64::from_be_bytes(r.array()?);
        let not_after = u64::from_be_bytes(r.array()?);
        let spki = r.vec16()?;
        Some((label, static_public, not_before, not_after, spki))
    })();
    let (label, static_public, not_before, not_after, spki) = fields.ok_or(CertError::Malformed)?;
    let signed_len = bytes.len() - r.remaining();
    let sig = r.vec16().ok_or(CertError::Malformed)?;
    r.finish().ok_or(CertError::Malformed)?;
    if label != want || not_before > not_after {
        return Err(CertError::Malformed);
    }
    let cert = VerifiedCert {
        static_public,
        spki_der: spki.to_vec(),
        fingerprint: fingerprint(spki),
        not_before,
        not_after,
    };
    Ok((cert, signed_len, sig))
}

/// Parse the certificate and check its signature, but not its window.
pub fn parse_signed(bytes: &[u8]) -> Result<VerifiedCert, CertError> {
    parse_signed_labelled(bytes, LABEL)
}

fn parse_signed_labelled(bytes: &[u8], label: &[u8; 24]) -> Result<VerifiedCert, CertError> {
    let (cert, signed_len, sig) = parse_layout(bytes, label)?;
    let key = parse_peer_key(&cert.spki_der).ok_or(CertError::Malformed)?;
    key.verify(Pss::<Sha256>::new(), &sha256(&bytes[..signed_len]), sig)
        .map_err(|_| CertError::BadSignature)?;
    Ok(cert)
}

/// Parse a host's own certificate as loaded per connection: layout only.
/// The signature was checked at issue (static_key::issue_for) and every peer
/// checks it; here it would cost an RSA operation per connection (about 1 M
/// instructions, measured). The window is the caller's to judge.
pub fn parse_own(bytes: &[u8]) -> Result<VerifiedCert, CertError> {
    parse_layout(bytes, LABEL).map(|(cert, _, _)| cert)
}

/// A host's own continuity statement, layout only (as [`parse_own`]).
pub fn parse_own_continuity(bytes: &[u8]) -> Result<VerifiedCert, CertError> {
    parse_layout(bytes, CONTINUITY_LABEL).map(|(cert, _, _)| cert)
}

/// A peer's continuity statement: signature, window, and it must vouch for
/// `new_spki`, the key of the certificate it came with. What it returns
/// names the signer: `fingerprint` is the old key's.
pub fn verify_continuity(
    bytes: &[u8],
    now: u64,
    new_spki: &[u8],
) -> Result<VerifiedCert, CertError> {
    let statement = parse_signed_labelled(bytes, CONTINUITY_LABEL)?;
    statement.check_time(now)?;
    if statement.static_public != sha256(new_spki) {
        return Err(CertError::OtherKey);
    }
    Ok(statement)
}

/// Split a v2 server payload into the certificate and what follows it (a
/// continuity statement, or nothing). The certificate's own length fields
/// delimit it; `None` if they run past the end.
pub fn split_payload(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader::new(bytes);
    r.take(72)?;
    r.vec16()?;
    r.vec16()?;
    Some(bytes.split_at(bytes.len() - r.remaining()))
}

/// Parse, verify the signature, and check that `now` (Unix seconds) is
/// inside the window: for a peer's certificate.
pub fn parse_and_verify(bytes: &[u8], now: u64) -> Result<VerifiedCert, CertError> {
    let cert = parse_signed(bytes)?;
    cert.check_time(now)?;
    Ok(cert)
}

/// [`parse_and_verify`], and the certificate must be for `static_public`,
/// the key the Noise handshake authenticated (`remote_static()`).
pub fn verify_for(
    bytes: &[u8],
    now: u64,
    static_public: &[u8; 32],
) -> Result<VerifiedCert, CertError> {
    let cert = parse_and_verify(bytes, now)?;
    if &cert.static_public != static_public {
        return Err(CertError::OtherKey);
    }
    Ok(cert)
}
