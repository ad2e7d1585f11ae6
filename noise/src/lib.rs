//! The Noise Protocol Framework (revision 34), only as much as handshake v2
//! needs: DH 25519, cipher ChaChaPoly, hash SHA256, and the interactive
//! patterns NX, XX and IK, for both roles. Written on the crates already in
//! the tree (x25519-dalek, chacha20poly1305, hkdf/sha2) instead of `snow`,
//! which would bring a second copy of each; the Cacophony vectors in
//! tests/noise_vectors.rs (in this crate) pin every byte.
//!
//! Names follow the specification's sections 5.1-5.3 so the two can be read
//! side by side. One deliberate addition: a DH result of all zeros (the peer
//! sent a low-order point) fails the handshake, as the existing X25519 suite
//! does; the spec allows either, and no honest peer produces one.
#![forbid(unsafe_code)]

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

use blackpony_crypto::Secret;

/// Largest Noise message, handshake or transport (spec section 3).
pub const MAX_MESSAGE: usize = 65535;
pub const DH_LEN: usize = 32;
pub const HASH_LEN: usize = 32;
pub const TAG_LEN: usize = 16;

/// Any failure: bad tag, bad length, wrong turn, low-order key, nonce
/// exhausted. Deliberately one opaque value: the peer must not learn which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoiseError;

impl std::fmt::Display for NoiseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Noise handshake or transport failure")
    }
}

impl std::error::Error for NoiseError {}

type Result<T> = std::result::Result<T, NoiseError>;

/// Spec 5.1: a key (or none yet) and a 64-bit nonce that never wraps.
pub struct CipherState {
    k: Option<Secret<32>>,
    n: u64,
}

impl CipherState {
    /// A transport CipherState from a key that split() returned.
    pub fn new(key: &Secret<32>) -> Self {
        CipherState {
            k: Some(Secret::from_bytes(*key.expose())),
            n: 0,
        }
    }

    /// The AEAD and this message's nonce (4 zero bytes || n, little-endian),
    /// advancing n. 2^64-1 is reserved by the spec: reaching it is an error.
    fn next(&mut self) -> Result<Option<(ChaCha20Poly1305, Nonce)>> {
        let Some(k) = &self.k else { return Ok(None) };
        if self.n == u64::MAX {
            return Err(NoiseError);
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.n.to_le_bytes());
        self.n += 1;
        let aead = ChaCha20Poly1305::new_from_slice(k.expose()).expect("32-byte key");
        Ok(Some((aead, Nonce::from(nonce))))
    }

    /// EncryptWithAd: without a key the plaintext passes through unchanged.
    pub fn encrypt(&mut self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        if plaintext.len() + TAG_LEN > MAX_MESSAGE {
            return Err(NoiseError);
        }
        let mut out = plaintext.to_vec();
        if let Some((aead, nonce)) = self.next()? {
            let tag = aead
                .encrypt_inout_detached(&nonce, ad, out.as_mut_slice().into())
                .map_err(|_| NoiseError)?;
            out.extend_from_slice(&tag);
        }
        Ok(out)
    }

    /// DecryptWithAd. The nonce advances only on success (spec 5.1).
    pub fn decrypt(&mut self, ad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>> {
        if ciphertext.len() > MAX_MESSAGE {
            return Err(NoiseError);
        }
        if self.k.is_none() {
            return Ok(ciphertext.to_vec());
        }
        let body_len = ciphertext.len().checked_sub(TAG_LEN).ok_or(NoiseError)?;
        let (body, tag) = ciphertext.split_at(body_len);
        let tag = Tag::try_from(tag).map_err(|_| NoiseError)?;
        let n = self.n;
        let (aead, nonce) = self.next()?.ok_or(NoiseError)?;
        let mut out = body.to_vec();
        if aead
            .decrypt_inout_detached(&nonce, ad, out.as_mut_slice().into(), &tag)
            .is_err()
        {
            self.n = n;
            return Err(NoiseError);
        }
        Ok(out)
    }
}

/// HKDF (spec 4.3) with two outputs: RFC 5869 with salt = ck, empty info,
/// 64 bytes of output.
fn hkdf2(ck: &Secret<32>, ikm: &[u8]) -> (Secret<32>, Secret<32>) {
    let mut okm = Secret::<64>::zero();
    Hkdf::<Sha256>::new(Some(ck.expose()), ikm)
        .expand(&[], okm.expose_mut())
        .expect("64 bytes is within HKDF-SHA256's output limit");
    let (a, b) = okm.expose().split_at(32);
    (
        Secret::from_slice(a).expect("32"),
        Secret::from_slice(b).expect("32"),
    )
}

/// Spec 5.2: the chaining key, the handshake hash and the current cipher.
struct SymmetricState {
    ck: Secret<32>,
    h: [u8; HASH_LEN],
    cipher: CipherState,
}

impl SymmetricState {
    /// InitializeSymmetric. A name of at most HASH_LEN bytes is used as h
    /// itself, zero-padded; all three of ours are exactly 32 bytes.
    fn new(pattern: Pattern) -> Self {
        let name = format!("Noise_{pattern:?}_25519_ChaChaPoly_SHA256");
        let h: [u8; HASH_LEN] = name.as_bytes().try_into().expect("a 32-byte name");
        let cipher = CipherState { k: None, n: 0 };
        SymmetricState {
            ck: Secret::from_bytes(h),
            h,
            cipher,
        }
    }

    fn mix_key(&mut self, ikm: &[u8]) {
        let (ck, k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        self.cipher = CipherState { k: Some(k), n: 0 };
    }

    fn mix_hash(&mut self, data: &[u8]) {
        self.h = Sha256::new()
            .chain_update(self.h)
            .chain_update(data)
            .finalize()
            .into();
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let c = self.cipher.encrypt(&self.h, plaintext)?;
        self.mix_hash(&c);
        Ok(c)
    }

    fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>> {
        let p = self.cipher.decrypt(&self.h, ciphertext)?;
        self.mix_hash(ciphertext);
        Ok(p)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `-> e; <- e, ee, s, es`: only the responder is authenticated.
    NX,
    /// `-> e; <- e, ee, s, es; -> s, se`: first contact, both authenticated.
    XX,
    /// `<- s; ...; -> e, es, s, ss; <- e, ee, se`: the initiator knows the
    /// responder's static key beforehand and sends a payload in message 1.
    IK,
}

#[derive(Clone, Copy, PartialEq)]
enum Token {
    E,
    S,
    EE,
    ES,
    SE,
    SS,
}

use Token::*;

impl Pattern {
    fn messages(self) -> &'static [&'static [Token]] {
        match self {
            Pattern::NX => &[&[E], &[E, EE, S, ES]],
            Pattern::XX => &[&[E], &[E, EE, S, ES], &[S, SE]],
            Pattern::IK => &[&[E, ES, S, SS], &[E, EE, SE]],
        }
    }
}

/// The two transport keys and the final handshake hash (spec 5.2 Split).
pub struct Split {
    pub initiator_to_responder: Secret<32>,
    pub responder_to_initiator: Secret<32>,
    pub handshake_hash: [u8; HASH_LEN],
}

/// Spec 5.3: one side of one handshake, driven by the pattern's token lists.
pub struct HandshakeState {
    sym: SymmetricState,
    pattern: Pattern,
    initiator: bool,
    s: Option<StaticSecret>,
    e: Option<StaticSecret>,
    rs: Option<[u8; DH_LEN]>,
    re: Option<[u8; DH_LEN]>,
    /// Index of the next message of the pattern; `DEAD` after a failure.
    next: usize,
}

/// A failed message leaves h and ck half-updated: no later call may succeed.
const DEAD: usize = usize::MAX;

impl HandshakeState {
    /// A handshake with a fresh ephemeral key from the OS RNG. `s` is our
    /// static key (required by every pattern here except the NX initiator);
    /// `rs` the responder's static public key, required by the IK initiator.
    pub fn new(
        pattern: Pattern,
        initiator: bool,
        prologue: &[u8],
        s: Option<StaticSecret>,
        rs: Option<[u8; DH_LEN]>,
    ) -> Result<Self> {
        Self::with_ephemeral(pattern, initiator, prologue, s, rs, StaticSecret::random())
    }

    /// As [`HandshakeState::new`] with a given ephemeral key: for test vectors.
    pub fn with_ephemeral(
        pattern: Pattern,
        initiator: bool,
        prologue: &[u8],
        s: Option<StaticSecret>,
        rs: Option<[u8; DH_LEN]>,
        e: StaticSecret,
    ) -> Result<Self> {
        let needs_s = !(initiator && pattern == Pattern::NX);
        let ik_initiator = initiator && pattern == Pattern::IK;
        if s.is_some() != needs_s || rs.is_some() != ik_initiator {
            return Err(NoiseError);
        }
        let mut sym = SymmetricState::new(pattern);
        sym.mix_hash(prologue);
        if pattern == Pattern::IK {
            // Pre-message `<- s`: both sides hash the responder's static key.
            let pre = match (&rs, &s) {
                (Some(rs), _) if initiator => *rs,
                (_, Some(s)) => PublicKey::from(s).to_bytes(),
                _ => return Err(NoiseError),
            };
            sym.mix_hash(&pre);
        }
        Ok(HandshakeState {
            sym,
            pattern,
            initiator,
            s,
            e: Some(e),
            rs,
            re: None,
            next: 0,
        })
    }

    /// Our tokens for the next message, if it is our turn to `write`.
    fn turn(&self, write: bool) -> Result<&'static [Token]> {
        let msgs = self.pattern.messages();
        let ours = self.next.is_multiple_of(2) == self.initiator;
        match msgs.get(self.next) {
            Some(t) if ours == write => Ok(t),
            _ => Err(NoiseError),
        }
    }

    /// DH for token `t`, from our point of view (spec 5.3: es means
    /// DH(e, rs) for the initiator and DH(s, re) for the responder).
    fn dh(&mut self, t: Token) -> Result<()> {
        let (local_e, remote_e) = match (t, self.initiator) {
            (EE, _) => (true, true),
            (SS, _) => (false, false),
            (ES, true) | (SE, false) => (true, false),
            (ES, false) | (SE, true) => (false, true),
            _ => return Err(NoiseError),
        };
        let ours = if local_e { &self.e } else { &self.s };
        let theirs = if remote_e { self.re } else { self.rs };
        let (Some(ours), Some(theirs)) = (ours, theirs) else {
            return Err(NoiseError);
        };
        let shared = ours.diffie_hellman(&PublicKey::from(theirs));
        if !shared.was_contributory() {
            return Err(NoiseError);
        }
        self.sym.mix_key(shared.as_bytes());
        Ok(())
    }

    /// WriteMessage: the next handshake message, carrying `payload`.
    pub fn write_message(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        let tokens = self.turn(true)?;
        // Worst case: each token adds a key and a tag, the payload a tag.
        if payload.len() + tokens.len() * (DH_LEN + TAG_LEN) + TAG_LEN > MAX_MESSAGE {
            return Err(NoiseError);
        }
        let index = std::mem::replace(&mut self.next, DEAD);
        let mut out = Vec::new();
        for &t in tokens {
            match t {
                E => {
                    let e = self.e.as_ref().ok_or(NoiseError)?;
                    let pk = PublicKey::from(e).to_bytes();
                    self.sym.mix_hash(&pk);
                    out.extend_from_slice(&pk);
                }
                S => {
                    let s = self.s.as_ref().ok_or(NoiseError)?;
                    let pk = PublicKey::from(s).to_bytes();
                    out.extend(self.sym.encrypt_and_hash(&pk)?);
                }
                _ => self.dh(t)?,
            }
        }
        out.extend(self.sym.encrypt_and_hash(payload)?);
        self.next = index + 1;
        Ok(out)
    }

    /// ReadMessage: checks and absorbs the peer's next message, returns its payload.
    /// On failure this handshake is dead: start a new one.
    pub fn read_message(&mut self, message: &[u8]) -> Result<Vec<u8>> {
        let tokens = self.turn(false)?;
        if message.len() > MAX_MESSAGE {
            return Err(NoiseError);
        }
        let index = std::mem::replace(&mut self.next, DEAD);
        let mut rest = message;
        for &t in tokens {
            match t {
                E => {
                    let re = take(&mut rest, DH_LEN)?;
                    self.sym.mix_hash(re);
                    self.re = Some(re.try_into().map_err(|_| NoiseError)?);
                }
                S => {
                    let tag = if self.sym.cipher.k.is_some() {
                        TAG_LEN
                    } else {
                        0
                    };
                    let rs = self.sym.decrypt_and_hash(take(&mut rest, DH_LEN + tag)?)?;
                    self.rs = Some(rs.try_into().map_err(|_| NoiseError)?);
                }
                _ => self.dh(t)?,
            }
        }
        let payload = self.sym.decrypt_and_hash(rest)?;
        self.next = index + 1;
        Ok(payload)
    }

    /// True once every message of the pattern has been written or read.
    pub fn is_finished(&self) -> bool {
        self.next == self.pattern.messages().len()
    }

    /// The peer's static public key, once a message that carried it has
    /// verified (or as the IK initiator's caller supplied it); None once dead.
    pub fn remote_static(&self) -> Option<[u8; DH_LEN]> {
        self.rs.filter(|_| self.next != DEAD)
    }

    /// The running handshake hash h: binds everything said so far.
    pub fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.sym.h
    }

    /// Split: the raw transport keys and the final hash; only after the last message.
    pub fn split(self) -> Result<Split> {
        if !self.is_finished() {
            return Err(NoiseError);
        }
        let (k1, k2) = hkdf2(&self.sym.ck, &[]);
        Ok(Split {
            initiator_to_responder: k1,
            responder_to_initiator: k2,
            handshake_hash: self.sym.h,
        })
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if rest.len() < n {
        return Err(NoiseError);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_never_wraps() {
        let mut c = CipherState::new(&Secret::zero());
        c.n = u64::MAX - 1;
        assert!(c.encrypt(&[], b"x").is_ok());
        assert!(c.encrypt(&[], b"x").is_err(), "2^64-1 is reserved");
        assert!(c.decrypt(&[], &[0u8; 17]).is_err());
        assert_eq!(c.n, u64::MAX);
    }
}
