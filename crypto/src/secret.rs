//! Fixed-size key material: zeroized on drop, never printed.

use zeroize::Zeroize;

/// N bytes of key material. Deliberately no `Debug`, `Display` or `Clone`:
/// a secret can only leave this type through `expose`.
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    pub fn zero() -> Self {
        Secret([0u8; N])
    }

    pub fn from_bytes(bytes: [u8; N]) -> Self {
        Secret(bytes)
    }

    /// Copy from a slice of exactly N bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; N] = bytes.try_into().ok()?;
        Some(Secret(arr))
    }

    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }

    pub fn expose_mut(&mut self) -> &mut [u8; N] {
        &mut self.0
    }
}

impl<const N: usize> Drop for Secret<N> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}
