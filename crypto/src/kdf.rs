//! HKDF-SHA1 (RFC 5869): extract once from the shared secrets, expand a
//! labelled key for each use.

use hkdf::Hkdf;
use sha1::Sha1;

use crate::Secret;

pub const PRK_LEN: usize = 20;

/// A pseudorandom key from HKDF-Extract, from which every session key is expanded.
pub struct Prk(Hkdf<Sha1>);

impl Prk {
    pub fn extract(salt: &[u8], ikm: &[u8]) -> Self {
        Prk(Hkdf::<Sha1>::new(Some(salt), ikm))
    }

    /// Use an existing PRK-sized secret directly (for rekeying).
    pub fn from_prk(prk: &Secret<PRK_LEN>) -> Self {
        Prk(Hkdf::<Sha1>::from_prk(prk.expose()).expect("20 bytes is a valid SHA-1 PRK"))
    }

    /// HKDF-Expand with info = label || context.
    pub fn expand<const N: usize>(&self, label: &[u8], context: &[u8]) -> Secret<N> {
        let mut out = Secret::<N>::zero();
        self.0
            .expand_multi_info(&[label, context], out.expose_mut())
            .expect("output length is far below 255 * 20");
        out
    }
}
