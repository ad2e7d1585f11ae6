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
//! the host key signs (the old suite's transcript signatures start with
//! "blackpony server/client signature"; the rotation statement will have its
//! own label).

use rsa::Pss;
use sha2::Sha256;

use crate::crypto::hash::sha256;
use crate::keys::{fingerprint, parse_peer_key, HostKey};
use crate::limits::MAX_STATIC_CERT;
use crate::wire::codec::{Reader, Writer};

pub const LABEL: &[u8; 24] = b"blackpony static key v2\0";

/// Why a certificate was refused. For our logs only: a peer is told nothing
/// more than that the handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// Wrong length, label, layout, window order, or an RSA key we do not accept.
    Malformed,
    /// The signature does not verify under the SPKI in the certificate.
    BadSignature,
    /// `now` is before not_before.
    NotYetValid,
    /// `now` is after not_after.
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

/// What a certificate whose signature verified says.
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

fn signed_part(static_public: &[u8; 32], not_before: u64, not_after: u64, spki: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(LABEL)
        .bytes(static_public)
        .bytes(&not_before.to_be_bytes())
        .bytes(&not_after.to_be_bytes())
        .vec16(spki);
    w.buf
}

/// A certificate for `static_public`, signed by `key`, valid from
/// `not_before` through `not_after` (Unix seconds). Panics only if the
/// window is reversed, a caller bug.
pub fn issue(key: &HostKey, static_public: &[u8; 32], not_before: u64, not_after: u64) -> Vec<u8> {
    assert!(not_before <= not_after, "certificate window reversed");
    let mut w = Writer {
        buf: signed_part(static_public, not_before, not_after, key.public_der()),
    };
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
fn parse_layout(bytes: &[u8]) -> Result<(VerifiedCert, usize, &[u8]), CertError> {
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
    if label != LABEL || not_before > not_after {
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
    let (cert, signed_len, sig) = parse_layout(bytes)?;
    let key = parse_peer_key(&cert.spki_der).ok_or(CertError::Malformed)?;
    key.verify(Pss::<Sha256>::new(), &sha256(&bytes[..signed_len]), sig)
        .map_err(|_| CertError::BadSignature)?;
    Ok(cert)
}

/// Parse a host's own certificate as loaded per connection: layout only,
/// neither signature nor window. The signature was checked when the
/// certificate was issued (static_key::issue_for) and every peer checks it
/// again; checking it here too would cost an RSA public-key operation and an
/// SPKI parse per connection (about 1 M instructions, measured). What an
/// expired certificate means (renew, log) is the caller's decision.
pub fn parse_own(bytes: &[u8]) -> Result<VerifiedCert, CertError> {
    parse_layout(bytes).map(|(cert, _, _)| cert)
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
