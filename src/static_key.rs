//! The host's static X25519 key and its certificate, on disk beside the RSA
//! host key. Loading them (every connection) reads two small files and never
//! the RSA private key; issuing (key generation, renewal) is the only step
//! that reads it.
//!
//! Files, for an RSA key at `<key>` (e.g. /etc/blackpony/host.key):
//!
//! ```text
//! <key>.x25519  private, mode 0600 (refused if group or others can read it):
//!               one line, "blackpony-x25519-private" SP base64(32-byte X25519
//!               private key, RFC 7748 scalar as generated, canonical padded
//!               base64: 44 characters) LF.  70 bytes in all.
//! <key>.cert    public, mode 0644: one line, "blackpony-static-cert" SP
//!               base64(certificate, src/cert.rs) LF.
//! <key>.continuity  public, mode 0644, only after `--rotate-key`: one line,
//!               "blackpony-continuity" SP base64(continuity statement,
//!               src/cert.rs) LF. Presented in the handshake until it expires.
//! ```
//!
//! One text line each so an admin can tell them apart with `head -c 30`, and
//! so the certificate can be pasted into a mail or a peer's configuration.
//! The private key file is created once and replaced only by a rotation
//! ([`rotate`]); the certificate is replaced atomically at each renewal.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::cert::{self, CertError, VerifiedCert};
pub use crate::keys::beside;
use crate::keys::{key_error, HostKey};
use crate::limits::{MAX_STATIC_CERT, STATIC_CERT_BACKDATE, STATIC_CERT_VALIDITY};
use crate::Error;
use base64ct::{Base64, Encoding};

pub const PRIVATE_HEADER: &str = "blackpony-x25519-private";
pub const CERT_HEADER: &str = "blackpony-static-cert";
pub const CONTINUITY_HEADER: &str = "blackpony-continuity";

/// Our static key pair and the certificate that vouches for it. No Debug:
/// it holds the secret (which zeroizes itself on drop).
pub struct StaticIdentity {
    pub secret: StaticSecret,
    pub public: [u8; 32],
    /// The certificate as sent in the handshake.
    pub cert_bytes: Vec<u8>,
    /// Its contents. [`load`] checks the layout and that it certifies
    /// `public`; [`issue_for`] also checks the signature.
    pub verified: VerifiedCert,
    /// The continuity statement of the last rotation and its end, if
    /// `<key>.continuity` holds one (expired or not).
    pub continuity: Option<(Vec<u8>, u64)>,
}

impl StaticIdentity {
    /// The continuity statement to present at `now`: none after its end.
    pub fn continuity_at(&self, now: u64) -> Option<&[u8]> {
        let (bytes, not_after) = self.continuity.as_ref()?;
        (now <= *not_after).then_some(bytes.as_slice())
    }
}

/// `<key>.x25519` and `<key>.cert` for the RSA key at `rsa_key`.
pub fn paths_for(rsa_key: &Path) -> (PathBuf, PathBuf) {
    (beside(rsa_key, ".x25519"), beside(rsa_key, ".cert"))
}

/// A key file's `HEADER SP base64 LF` line.
fn line_of(header: &str, bytes: &[u8]) -> String {
    format!("{header} {}\n", Base64::encode_string(bytes))
}

/// Read a one-line `HEADER SP base64 LF` file of at most `max` bytes.
/// `private`: refuse it if group or others may read it.
fn read_line_file(
    path: &Path,
    header: &str,
    max: usize,
    private: bool,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let file = if private {
        crate::keys::open_private(path).map_err(|e| key_error(path, e))?
    } else {
        fs::File::open(path).map_err(|e| key_error(path, e))?
    };
    let limit = header.len() + 2 + max.div_ceil(3) * 4;
    let mut text = Zeroizing::new(String::new());
    file.take(limit as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| key_error(path, e))?;
    let decoded = (text.len() <= limit)
        .then(|| {
            text.strip_suffix('\n')?
                .strip_prefix(header)?
                .strip_prefix(' ')
        })
        .flatten()
        .and_then(|t| Base64::decode_vec(t).ok())
        .ok_or_else(|| key_error(path, format_args!("not a \"{header}\" line")))?;
    Ok(Zeroizing::new(decoded))
}

fn load_secret(path: &Path) -> Result<StaticSecret, Error> {
    let bytes = read_line_file(path, PRIVATE_HEADER, 32, true)?;
    let arr: Zeroizing<[u8; 32]> = Zeroizing::new(
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| key_error(path, "not a 32-byte X25519 key"))?,
    );
    Ok(StaticSecret::from(*arr))
}

/// Load `<key>.x25519` and `<key>.cert` for the RSA key at `rsa_key`: per
/// connection, so no RSA operation. Fails if either file is unreadable or
/// malformed, the private key is open to group or others, or the certificate
/// is for another static key; its signature ([`issue_for`] and every peer
/// check it) and its window are not checked here.
pub fn load(rsa_key: &Path) -> Result<StaticIdentity, Error> {
    // [`rotate`] renames the static key, then the certificate: a load
    // between the two renames sees a mismatch. Try again shortly (the
    // rotating process may lose the CPU between them); only a broken
    // install pays the 140 ms.
    for wait in [20, 40, 80] {
        if let Ok(id) = load_once(rsa_key) {
            return Ok(id);
        }
        std::thread::sleep(std::time::Duration::from_millis(wait));
    }
    load_once(rsa_key)
}

fn load_once(rsa_key: &Path) -> Result<StaticIdentity, Error> {
    let (secret_path, cert_path) = paths_for(rsa_key);
    let secret = load_secret(&secret_path)?;
    let cert_bytes = read_line_file(&cert_path, CERT_HEADER, MAX_STATIC_CERT, false)?.to_vec();
    let public = PublicKey::from(&secret).to_bytes();
    let verified = cert::parse_own(&cert_bytes)
        .and_then(|c| {
            (c.static_public == public)
                .then_some(c)
                .ok_or(CertError::OtherKey)
        })
        .map_err(|e| {
            key_error(
                &cert_path,
                format_args!("{e}; issue a new one with blackpony --renew-cert --force"),
            )
        })?;
    Ok(StaticIdentity {
        secret,
        public,
        cert_bytes,
        verified,
        continuity: load_continuity(rsa_key),
    })
}

/// `<key>.continuity`, if there is one. A file that does not load is logged
/// and ignored: without it peers see an unsigned key change, which they
/// defer; refusing the connection would help no one.
fn load_continuity(rsa_key: &Path) -> Option<(Vec<u8>, u64)> {
    let path = beside(rsa_key, ".continuity");
    if !path.exists() {
        return None;
    }
    let bytes = read_line_file(&path, CONTINUITY_HEADER, MAX_STATIC_CERT, false).and_then(|b| {
        let c = cert::parse_own_continuity(&b).map_err(|e| key_error(&path, e))?;
        Ok((b.to_vec(), c.not_after))
    });
    bytes.map_err(|e| log::error!("{e}; not presented")).ok()
}

/// Make sure a static key exists (an existing one is kept) and issue it a
/// certificate valid for 90 days from `now`, less a day of clock skew: at
/// `--generate-key`, on an RSA-only install, and at each renewal. The file
/// is replaced atomically: a concurrent [`load`] sees the old or the new one.
pub fn issue_for(rsa_key: &Path, now: u64) -> Result<StaticIdentity, Error> {
    let host = HostKey::load(rsa_key)?;
    let (secret_path, cert_path) = paths_for(rsa_key);
    if !secret_path.exists() {
        let secret = StaticSecret::random();
        let line = Zeroizing::new(line_of(PRIVATE_HEADER, secret.as_bytes()));
        // Hard link fails if the name exists: a key made meanwhile by a
        // concurrent run wins, and is the one loaded below.
        match crate::keys::write_via_temp(&secret_path, line.as_bytes(), 0o600, |t, p| {
            fs::hard_link(t, p)
        }) {
            Err(_) if secret_path.exists() => {}
            other => other?,
        }
    }
    let public = PublicKey::from(&load_secret(&secret_path)?).to_bytes();
    let line = cert_line(&host, &public, now, &cert_path)?;
    crate::keys::write_via_temp(&cert_path, line.as_bytes(), 0o644, |t, p| fs::rename(t, p))?;
    load(rsa_key)
}

/// What [`rotate`] did.
pub struct Rotated {
    pub old_fingerprint: String,
    pub new_fingerprint: String,
    /// The end of the transition: the statement is presented until then.
    pub not_after: u64,
}

/// `--rotate-key`: a new RSA host key of `bits` bits (default: the old
/// key's size), a continuity statement by the old key over it for
/// `transition` seconds, a new static key and its certificate. Every file is
/// replaced by rename, the certificate last, so a running server
/// (LiveIdentity watches it) takes the new identity whole. The old RSA key
/// is not kept: on disk it would stay a key that opens every peer still
/// pinned to it. Refuses while an earlier rotation's statement is still
/// presented (peers pinned to the key before it would see an unsigned
/// change), unless `force`.
pub fn rotate(
    rsa_key: &Path,
    bits: Option<usize>,
    transition: u64,
    now: u64,
    force: bool,
) -> Result<Rotated, Error> {
    let old = HostKey::load(rsa_key)?;
    if let Some(end) = load_continuity(rsa_key)
        .map(|(_, end)| end)
        .filter(|&e| now <= e && !force)
    {
        return Err(Error::Key(format!(
            "the transition of the last rotation runs until {}; peers that have not \
             followed it yet would see an unsigned change (--force to rotate anyway)",
            crate::clock::timestamp(end)
        )));
    }
    let new = HostKey::generate(bits.unwrap_or_else(|| old.bits()))?;
    let not_before = now.saturating_sub(STATIC_CERT_BACKDATE.as_secs());
    let not_after = now.saturating_add(transition);
    let statement = cert::issue_continuity(&old, new.public_der(), not_before, not_after);
    let line = line_of(CONTINUITY_HEADER, &statement);
    let path = beside(rsa_key, ".continuity");
    crate::keys::write_via_temp(&path, line.as_bytes(), 0o644, |t, p| fs::rename(t, p))?;
    new.save(rsa_key, true)?;
    let secret = StaticSecret::random();
    let (secret_path, cert_path) = paths_for(rsa_key);
    let cert = cert_line(&new, &PublicKey::from(&secret).to_bytes(), now, &cert_path)?;
    let secret_line = Zeroizing::new(line_of(PRIVATE_HEADER, secret.as_bytes()));
    // Both files written and synced first, then renamed one right after the
    // other: a loader between the renames sees a mismatch for microseconds,
    // and its retry ([`load`]) the new pair.
    crate::keys::write_via_temp(&secret_path, secret_line.as_bytes(), 0o600, |t, p| {
        crate::keys::write_via_temp(&cert_path, cert.as_bytes(), 0o644, |t2, p2| {
            fs::rename(t, p).and_then(|_| fs::rename(t2, p2))
        })
        .map_err(|e| std::io::Error::other(e.to_string()))
    })?;
    load(rsa_key)?;
    Ok(Rotated {
        old_fingerprint: old.fingerprint(),
        new_fingerprint: new.fingerprint(),
        not_after,
    })
}

/// The certificate file's line: a certificate by `host` for `public`, valid
/// from `now` (less a day of clock skew) for 90 days, checked before it
/// replaces a working one.
fn cert_line(host: &HostKey, public: &[u8; 32], now: u64, path: &Path) -> Result<String, Error> {
    let not_before = now.saturating_sub(STATIC_CERT_BACKDATE.as_secs());
    let not_after = now.saturating_add(STATIC_CERT_VALIDITY.as_secs());
    let cert = cert::issue(host, public, not_before, not_after);
    cert::parse_signed(&cert).map_err(|e| key_error(path, e))?;
    Ok(line_of(CERT_HEADER, &cert))
}

/// The static identity of a long-running server (`--listen`, socket
/// activation): each connection takes [`LiveIdentity::current`], which
/// loads the files again when the certificate file changed (a renewal by the
/// daily job), so the process needs no restart. One `stat` per connection.
pub struct LiveIdentity {
    rsa_key: PathBuf,
    state: Mutex<(Option<SystemTime>, Arc<StaticIdentity>)>,
}

impl LiveIdentity {
    pub fn new(rsa_key: &Path, first: StaticIdentity) -> Self {
        let stamp = Self::stamp(rsa_key);
        LiveIdentity {
            rsa_key: rsa_key.to_path_buf(),
            state: Mutex::new((stamp, Arc::new(first))),
        }
    }

    fn stamp(rsa_key: &Path) -> Option<SystemTime> {
        fs::metadata(paths_for(rsa_key).1)
            .and_then(|m| m.modified())
            .ok()
    }

    /// The identity to use for a new connection. A file that does not load
    /// keeps the one in use (and says why in the log).
    pub fn current(&self) -> Arc<StaticIdentity> {
        let now = Self::stamp(&self.rsa_key);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && now != state.0 {
            state.0 = now;
            match load(&self.rsa_key) {
                Ok(id) => {
                    log::info!(
                        "{}: static key and certificate reloaded (valid until {})",
                        self.rsa_key.display(),
                        crate::clock::timestamp(id.verified.not_after)
                    );
                    state.1 = Arc::new(id);
                }
                Err(e) => log::error!("{e}; keeping the certificate in use"),
            }
        }
        Arc::clone(&state.1)
    }
}
