//! Blowfish in CTR mode with a 64-bit big-endian counter: a stream cipher, so
//! records need no padding and there is no padding oracle.

use blowfish::Blowfish;
use ctr::cipher::{InnerIvInit, KeyInit, StreamCipher};

use crate::Secret;

pub const KEY_LEN: usize = 16;
pub const IV_LEN: usize = 8;

type Ctr = ctr::Ctr64BE<Blowfish>;

/// One direction's keystream. The counter runs on across records, so no two
/// records ever share keystream; a fresh key and IV come with every rekey.
pub struct BlowfishCtr(Ctr);

impl BlowfishCtr {
    pub fn new(key: &Secret<KEY_LEN>, iv: &[u8; IV_LEN]) -> Self {
        // Key Blowfish first, then wrap it: the CTR wrapper's own constructor
        // would demand Blowfish's maximum 56-byte key.
        let cipher =
            Blowfish::new_from_slice(key.expose()).expect("16 bytes is a valid Blowfish key");
        BlowfishCtr(Ctr::from_core(ctr::CtrCore::inner_iv_init(
            cipher,
            iv.into(),
        )))
    }

    /// Encrypt or decrypt in place.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}
