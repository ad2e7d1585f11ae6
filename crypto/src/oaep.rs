//! RSA-OAEP (SHA-1, MGF1-SHA1) key transport of one 32-byte secret.
//!
//! Decryption never reports failure. A ciphertext that does not decrypt to
//! exactly 32 bytes yields a fresh random secret instead, so the handshake
//! carries on and fails later at the Finished MAC, exactly like any other
//! forgery. The peer sees one kind of failure at one point in time, which is
//! the defence against Bleichenbacher/Manger-style oracles and the Marvin
//! timing attack (RUSTSEC-2023-0071) on the padding check.

use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha1::Sha1;

use crate::{random_secret, Secret};

pub const SECRET_LEN: usize = 32;

/// Encrypt `secret` to `peer`. Fails only if the RNG fails or the key is unusable.
pub fn wrap(peer: &PublicKey, secret: &Secret<SECRET_LEN>) -> Vec<u8> {
    let mut rng = rand::rngs::SysRng;
    peer.oaep_encrypt_with_rng::<Sha1, _>(&mut rng, secret.expose())
        .expect("OAEP encryption of 32 bytes to a 2048+ bit key cannot fail")
}

/// Decrypt with blinding; any failure gives a random secret (see module docs).
pub fn unwrap(key: &PrivateKey, ciphertext: &[u8]) -> Secret<SECRET_LEN> {
    let fallback = random_secret::<SECRET_LEN>();
    if ciphertext.len() != key.size() {
        return fallback;
    }
    let mut rng = rand::rngs::SysRng;
    match key.oaep_decrypt_with_rng::<Sha1, _>(&mut rng, ciphertext) {
        Ok(mut plain) => {
            let out = Secret::from_slice(&plain).unwrap_or(fallback);
            zeroize::Zeroize::zeroize(&mut plain);
            out
        }
        Err(_) => fallback,
    }
}
