//! Thin wrappers over vetted primitives. Nothing here invents cryptography;
//! each file adapts one RustCrypto crate to the shapes the wire layer needs
//! and keeps key material in zeroizing types with no `Debug`.
#![forbid(unsafe_code)]

pub mod blowfish_ctr;
pub mod hash;
pub mod kdf;
pub mod mac;
pub mod oaep;
pub mod rot;
mod secret;

pub use secret::Secret;

/// Fill `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .expect("the operating system random number generator failed");
}

/// A fresh random secret.
pub fn random_secret<const N: usize>() -> Secret<N> {
    let mut s = Secret::zero();
    random_bytes(s.expose_mut());
    s
}
