//! Host keys: generate, load (refusing files others can read), name by fingerprint.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64ct::{Base64Unpadded, Encoding};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};

use crate::crypto::hash::sha256;
use crate::limits::{MAX_RSA_BITS, MIN_RSA_BITS};
use crate::Error;

/// An error about the key file at `path`.
pub(crate) fn key_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Key(format!("{}: {what}", path.display()))
}

/// Why a private key file was refused.
#[derive(Debug)]
pub enum PrivateFileError {
    Open(std::io::Error),
    /// Group or others may read it: its mode and path.
    Readable(u32, PathBuf),
    /// Its directory lets group or others replace it: the directory's mode and path.
    Directory(u32, PathBuf),
}

impl std::fmt::Display for PrivateFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrivateFileError::Open(e) => write!(f, "{e}"),
            PrivateFileError::Readable(mode, path) => write!(
                f,
                "readable by group or others (mode {mode:o}); run: chmod 600 {}",
                path.display()
            ),
            PrivateFileError::Directory(mode, dir) => write!(
                f,
                "its directory {} is writable by group or others (mode {mode:o}); run: chmod go-w {}",
                dir.display(),
                dir.display()
            ),
        }
    }
}

/// Open a private key file for reading, checking the open file (so the file
/// checked is the file read): no group or other access (so only its owner
/// and root can read it), in a directory that group and others cannot
/// change unless it is sticky (else they could replace the file).
pub fn open_private(path: &Path) -> Result<fs::File, PrivateFileError> {
    let file = fs::File::open(path).map_err(PrivateFileError::Open)?;
    let meta = file.metadata().map_err(PrivateFileError::Open)?;
    check_private(path, &meta)?;
    Ok(file)
}

/// The checks of [`open_private`] on a file's metadata, without reading it:
/// for a key a process may never need to read.
pub fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), PrivateFileError> {
    if meta.mode() & 0o077 != 0 {
        let mode = meta.mode() & 0o777;
        return Err(PrivateFileError::Readable(mode, path.to_path_buf()));
    }
    let dir = parent_dir(path);
    if let Ok(d) = fs::metadata(dir) {
        let writable = d.mode() & 0o022 != 0 && d.mode() & 0o1000 == 0;
        if writable {
            let mode = d.mode() & 0o7777;
            return Err(PrivateFileError::Directory(mode, dir.to_path_buf()));
        }
    }
    Ok(())
}

/// The RSA host key, read from its file the first time a session needs it:
/// with handshake v2 most processes never do.
pub struct LazyHostKey {
    path: PathBuf,
    cell: OnceLock<Result<Arc<HostKey>, String>>,
}

impl LazyHostKey {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LazyHostKey {
            path: path.into(),
            cell: OnceLock::new(),
        }
    }

    pub fn get(&self) -> Result<Arc<HostKey>, Error> {
        let load = || {
            HostKey::load(&self.path)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        };
        self.cell.get_or_init(load).clone().map_err(Error::Key)
    }
}

/// Where both programs look for the host key unless told otherwise.
pub const DEFAULT_KEY_PATH: &str = "/etc/blackpony/host.key";

/// Our own RSA key pair, with the public half pre-encoded for the handshake.
pub struct HostKey {
    private: PrivateKey,
    public_der: Vec<u8>,
}

impl HostKey {
    /// Load a PKCS#8 PEM private key. Refuses a file that group or others can read.
    pub fn load(path: &Path) -> Result<HostKey, Error> {
        let file = open_private(path).map_err(|e| match e {
            PrivateFileError::Open(e) => Error::Key(format!(
                "cannot read {}: {e} (create one with: blackpony --generate-key --key {})",
                path.display(),
                path.display()
            )),
            e => key_error(path, e),
        })?;
        const MAX_KEY_FILE: u64 = 64 * 1024;
        let mut pem = zeroize::Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE + 1)
            .read_to_string(&mut pem)
            .map_err(|e| key_error(path, e))?;
        if pem.len() as u64 > MAX_KEY_FILE {
            return Err(key_error(path, "too large to be a key"));
        }
        let private = PrivateKey::from_pkcs8_pem(&pem)
            .map_err(|_| key_error(path, "not a PKCS#8 PEM RSA private key"))?;
        Self::from_private(private)
    }

    pub fn from_private(private: PrivateKey) -> Result<HostKey, Error> {
        let bits = private.n().bit_width() as usize;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(Error::Key(format!(
                "RSA key of {bits} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} are accepted"
            )));
        }
        let public_der = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| Error::Key(format!("cannot encode public key: {e}")))?
            .into_vec();
        Ok(HostKey {
            private,
            public_der,
        })
    }

    /// A fresh key of `bits` bits (slow: seconds for 2048 bits in a debug build).
    pub fn generate(bits: usize) -> Result<HostKey, Error> {
        let mut rng = rand::rngs::SysRng;
        let private = PrivateKey::new(&mut rng, bits)
            .map_err(|e| Error::Key(format!("key generation failed: {e}")))?;
        Self::from_private(private)
    }

    /// [`HostKey::save`] to a new file: refuses, with advice, if `path` exists.
    pub fn save_new(&self, path: &Path) -> Result<(), Error> {
        if path.exists() {
            return Err(Error::Key(format!(
                "{} exists; refusing to overwrite a host key (remove it first if you mean it)",
                path.display()
            )));
        }
        self.save(path, false)
    }

    /// Write the key as PKCS#8 PEM, mode 0600, through a temporary file:
    /// hard-linked into place (fails if `path` exists), or with `replace`
    /// renamed over it (a reader sees the old key or the new, never half).
    pub fn save(&self, path: &Path, replace: bool) -> Result<(), Error> {
        let pem = self
            .private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::Key(format!("cannot encode key: {e}")))?;
        let place: fn(&Path, &Path) -> std::io::Result<()> = match replace {
            true => |t: &Path, p: &Path| fs::rename(t, p),
            false => |t: &Path, p: &Path| fs::hard_link(t, p),
        };
        write_via_temp(path, pem.as_bytes(), 0o600, place)
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.private.n().bit_width() as usize
    }

    pub fn private(&self) -> &PrivateKey {
        &self.private
    }

    /// SubjectPublicKeyInfo DER, as sent in the handshake.
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public_der)
    }
}

/// The directory of `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `<path><ext>`: a file that goes with the one at `path`.
pub fn beside(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(ext);
    PathBuf::from(name)
}

/// Write `contents` to a fresh temporary file beside `path`, then `place` it.
/// A file it replaces keeps its owner (root rotating a key that the
/// blackpony user reads must not take it away from that user).
pub(crate) fn write_via_temp(
    path: &Path,
    contents: &[u8],
    mode: u32,
    place: impl FnOnce(&Path, &Path) -> std::io::Result<()>,
) -> Result<(), Error> {
    let tmp = beside(path, &format!(".tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        if let Ok(old) = fs::metadata(path) {
            if (old.uid(), old.gid()) != (f.metadata()?.uid(), f.metadata()?.gid()) {
                std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()))?;
            }
        }
        f.write_all(contents)?;
        f.sync_all()?;
        place(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    result.map_err(|e| key_error(path, format_args!("cannot write: {e}")))
}

/// `SHA256:` and the unpadded base64 SHA-256 of the SubjectPublicKeyInfo DER,
/// the same shape as OpenSSH's key fingerprints.
pub fn fingerprint(spki_der: &[u8]) -> String {
    format!(
        "SHA256:{}",
        Base64Unpadded::encode_string(&sha256(spki_der))
    )
}

/// Parse a peer's SubjectPublicKeyInfo DER, refusing key sizes outside our limits.
pub fn parse_peer_key(spki_der: &[u8]) -> Option<PublicKey> {
    let key = PublicKey::from_public_key_der(spki_der).ok()?;
    let bits = key.n().bit_width() as usize;
    (MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits).then_some(key)
}
