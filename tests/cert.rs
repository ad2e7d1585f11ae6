//! The static-key certificate (src/cert.rs) and the static key files
//! (src/static_key.rs): round trip, every byte of a certificate tampered,
//! windows, foreign signers, a certificate for another static key, file
//! permissions, renewal, and loading without the RSA private key.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use blackpony::cert::{self, CertError, LABEL};
use blackpony::keys::HostKey;
use blackpony::limits::{STATIC_CERT_BACKDATE, STATIC_CERT_VALIDITY};
use blackpony::static_key::{self, CERT_HEADER, PRIVATE_HEADER};
use blackpony::Error;

const NOW: u64 = 1_750_000_000;
const DAY: u64 = 86_400;

/// Two RSA host keys, generated once per test binary (generation is slow).
fn keys() -> &'static (HostKey, HostKey) {
    static KEYS: OnceLock<(HostKey, HostKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let b = std::thread::spawn(|| HostKey::generate(2048).unwrap());
        (HostKey::generate(2048).unwrap(), b.join().unwrap())
    })
}

fn scratch(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cert-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

const X: [u8; 32] = [7; 32];
const Y: [u8; 32] = [9; 32];

#[test]
fn issue_and_verify_round_trip() {
    let (a, _) = keys();
    let c = cert::issue(a, &X, NOW, NOW + 90 * DAY);
    assert_eq!(c.len(), 24 + 32 + 16 + 2 + a.public_der().len() + 2 + 256);
    assert_eq!(c.len(), 626, "2048-bit keys: 294-byte SPKI");
    assert_eq!(&c[..24], LABEL);
    assert_eq!(&c[24..56], &X);
    assert_eq!(c[56..64], NOW.to_be_bytes());
    assert_eq!(c[64..72], (NOW + 90 * DAY).to_be_bytes());

    let v = cert::verify_for(&c, NOW + DAY, &X).unwrap();
    assert_eq!(v.static_public, X);
    assert_eq!(v.spki_der, a.public_der());
    assert_eq!(v.fingerprint, a.fingerprint());
    assert_eq!((v.not_before, v.not_after), (NOW, NOW + 90 * DAY));
    // Both ends of the window are inside it.
    assert!(cert::parse_and_verify(&c, NOW).is_ok());
    assert!(cert::parse_and_verify(&c, NOW + 90 * DAY).is_ok());
    assert!(!v.needs_renewal(NOW + 59 * DAY, 30 * DAY));
    assert!(v.needs_renewal(NOW + 60 * DAY, 30 * DAY));
    // PSS is randomised: two certificates for the same key differ, both verify.
    let c2 = cert::issue(a, &X, NOW, NOW + 90 * DAY);
    assert_ne!(c, c2);
    assert_eq!(cert::parse_and_verify(&c2, NOW).unwrap(), v);
}

#[test]
fn window_is_enforced() {
    let (a, _) = keys();
    let c = cert::issue(a, &X, NOW, NOW + 90 * DAY);
    assert_eq!(
        cert::parse_and_verify(&c, NOW - 1),
        Err(CertError::NotYetValid)
    );
    assert_eq!(cert::parse_and_verify(&c, 0), Err(CertError::NotYetValid));
    assert_eq!(
        cert::parse_and_verify(&c, NOW + 90 * DAY + 1),
        Err(CertError::Expired)
    );
    assert_eq!(
        cert::parse_and_verify(&c, u64::MAX),
        Err(CertError::Expired)
    );
    // parse_signed leaves the window to the caller (a host reading its own).
    assert!(cert::parse_signed(&c).is_ok());
}

#[test]
fn every_flipped_byte_fails() {
    let (a, _) = keys();
    let c = cert::issue(a, &X, NOW, NOW + 90 * DAY);
    for i in 0..c.len() {
        for mask in [0x01u8, 0x80] {
            let mut t = c.clone();
            t[i] ^= mask;
            let r = cert::verify_for(&t, NOW + DAY, &X);
            assert!(
                matches!(r, Err(CertError::Malformed | CertError::BadSignature)),
                "byte {i} ^ {mask:#x}: {r:?}"
            );
        }
    }
}

#[test]
fn truncated_extended_and_oversized_fail() {
    let (a, _) = keys();
    let c = cert::issue(a, &X, NOW, NOW + 90 * DAY);
    for len in 0..c.len() {
        assert_eq!(
            cert::parse_and_verify(&c[..len], NOW),
            Err(CertError::Malformed),
            "cut to {len}"
        );
    }
    let mut long = c.clone();
    long.push(0);
    assert_eq!(
        cert::parse_and_verify(&long, NOW),
        Err(CertError::Malformed)
    );
    assert_eq!(
        cert::parse_and_verify(&vec![0; 100_000], NOW),
        Err(CertError::Malformed)
    );
}

#[test]
fn foreign_signer_fails() {
    let (a, b) = keys();
    // Signed by B: verifies, but names B, not A (the pin check sees B's fingerprint).
    let by_b = cert::issue(b, &X, NOW, NOW + 90 * DAY);
    assert_eq!(
        cert::parse_and_verify(&by_b, NOW).unwrap().fingerprint,
        b.fingerprint()
    );
    // Signed by B, claiming A: A's SPKI spliced in place of B's (same length).
    assert_eq!(a.public_der().len(), b.public_der().len());
    let mut claims_a = by_b.clone();
    claims_a[74..74 + a.public_der().len()].copy_from_slice(a.public_der());
    assert_eq!(
        cert::parse_and_verify(&claims_a, NOW),
        Err(CertError::BadSignature)
    );
    // A's certificate with B's signature in place of A's.
    let by_a = cert::issue(a, &X, NOW, NOW + 90 * DAY);
    let mut sig_b = by_a.clone();
    let sig_at = by_a.len() - 256;
    sig_b[sig_at..].copy_from_slice(&by_b[sig_at..]);
    assert_eq!(
        cert::parse_and_verify(&sig_b, NOW),
        Err(CertError::BadSignature)
    );
}

#[test]
fn certificate_for_another_static_key_fails() {
    let (a, _) = keys();
    let c = cert::issue(a, &X, NOW, NOW + 90 * DAY);
    assert_eq!(cert::verify_for(&c, NOW, &Y), Err(CertError::OtherKey));
    // Pasting Y over X breaks the signature instead.
    let mut t = c.clone();
    t[24..56].copy_from_slice(&Y);
    assert_eq!(cert::verify_for(&t, NOW, &Y), Err(CertError::BadSignature));
}

// ---------------------------------------------------------------- files

fn host_key_in(dir: &Path, which: &HostKey) -> PathBuf {
    let path = dir.join("host.key");
    which.save_new(&path).unwrap();
    path
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn is_key_error(r: Result<static_key::StaticIdentity, Error>, what: &str) -> String {
    match r {
        Err(Error::Key(m)) => m,
        Err(e) => panic!("{what}: wrong error {e}"),
        Ok(_) => panic!("{what}: accepted"),
    }
}

#[test]
fn issue_for_writes_both_files_and_load_reads_them() {
    let (a, _) = keys();
    let dir = scratch("files");
    let key = host_key_in(&dir, a);
    let (secret_path, cert_path) = static_key::paths_for(&key);
    assert_eq!(secret_path, dir.join("host.key.x25519"));
    assert_eq!(cert_path, dir.join("host.key.cert"));

    let id = static_key::issue_for(&key, NOW).unwrap();
    assert_eq!(mode(&secret_path), 0o600);
    let line = fs::read_to_string(&secret_path).unwrap();
    assert_eq!(line.len(), PRIVATE_HEADER.len() + 1 + 44 + 1);
    assert!(line.starts_with("blackpony-x25519-private ") && line.ends_with('\n'));
    let cert_line = fs::read_to_string(&cert_path).unwrap();
    assert!(cert_line.starts_with(&format!("{CERT_HEADER} ")) && cert_line.ends_with('\n'));
    assert_eq!(cert_line.lines().count(), 1);

    assert_eq!(id.verified.fingerprint, a.fingerprint());
    assert_eq!(id.verified.static_public, id.public);
    assert_eq!(
        id.public,
        x25519_dalek::PublicKey::from(&id.secret).to_bytes()
    );
    assert_eq!(id.verified.not_before, NOW - STATIC_CERT_BACKDATE.as_secs());
    assert_eq!(id.verified.not_after, NOW + STATIC_CERT_VALIDITY.as_secs());
    assert_eq!(id.verified.not_after - NOW, 90 * DAY);
    assert!(cert::verify_for(&id.cert_bytes, NOW, &id.public).is_ok());

    let loaded = static_key::load(&key).unwrap();
    assert_eq!(loaded.public, id.public);
    assert_eq!(loaded.secret.to_bytes(), id.secret.to_bytes());
    assert_eq!(loaded.cert_bytes, id.cert_bytes);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn group_or_other_readable_private_key_is_refused() {
    let (a, _) = keys();
    let dir = scratch("mode");
    let key = host_key_in(&dir, a);
    static_key::issue_for(&key, NOW).unwrap();
    let (secret_path, _) = static_key::paths_for(&key);
    for m in [0o644, 0o640, 0o604] {
        fs::set_permissions(&secret_path, fs::Permissions::from_mode(m)).unwrap();
        let msg = is_key_error(static_key::load(&key), "load");
        assert!(msg.contains("chmod 600"), "{msg}");
        is_key_error(static_key::issue_for(&key, NOW), "issue_for");
    }
    fs::set_permissions(&secret_path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(static_key::load(&key).is_ok());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn issue_for_twice_keeps_the_key_and_renews_the_certificate() {
    let (a, _) = keys();
    let dir = scratch("renew");
    let key = host_key_in(&dir, a);
    let (secret_path, cert_path) = static_key::paths_for(&key);
    let first = static_key::issue_for(&key, NOW).unwrap();
    let secret_file = fs::read(&secret_path).unwrap();
    let inode = fs::metadata(&secret_path).unwrap();

    let later = NOW + 61 * DAY;
    let second = static_key::issue_for(&key, later).unwrap();
    assert_eq!(
        fs::read(&secret_path).unwrap(),
        secret_file,
        "private key untouched"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&secret_path).unwrap().ino(), inode.ino());
    assert_eq!(second.public, first.public);
    assert_ne!(second.cert_bytes, first.cert_bytes);
    assert_eq!(second.verified.not_after, later + 90 * DAY);
    assert_eq!(
        static_key::load(&key).unwrap().cert_bytes,
        second.cert_bytes
    );
    assert_eq!(mode(&cert_path), 0o644);
    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_never_touches_the_rsa_key() {
    let (a, _) = keys();
    let dir = scratch("norsa");
    let key = host_key_in(&dir, a);
    let issued = static_key::issue_for(&key, NOW).unwrap();
    // chmod 000 does not stop root, so take the RSA key away entirely.
    fs::set_permissions(&key, fs::Permissions::from_mode(0o000)).unwrap();
    fs::rename(&key, dir.join("elsewhere")).unwrap();
    assert!(!key.exists());
    let loaded = static_key::load(&key).unwrap();
    assert_eq!(loaded.public, issued.public);
    assert_eq!(loaded.verified.fingerprint, a.fingerprint());
    // Issuing does need it, and says so.
    is_key_error(
        static_key::issue_for(&key, NOW),
        "issue without the RSA key",
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn certificate_of_another_static_key_or_garbage_is_refused_at_load() {
    let (a, b) = keys();
    let (d1, d2) = (scratch("swap1"), scratch("swap2"));
    let (k1, k2) = (host_key_in(&d1, a), host_key_in(&d2, b));
    static_key::issue_for(&k1, NOW).unwrap();
    static_key::issue_for(&k2, NOW).unwrap();
    let (_, c1) = static_key::paths_for(&k1);
    let (s2, c2) = static_key::paths_for(&k2);
    // host 2's certificate beside host 1's static key: certifies another key.
    fs::copy(&c2, &c1).unwrap();
    let msg = is_key_error(static_key::load(&k1), "swapped certificate");
    assert!(msg.contains("another static key"), "{msg}");

    // A bad signature is left for the peers to find: load does no RSA
    // operation per connection (issue_for checked what it signed).
    // One base64 character inside the signature, clear of the padding, so
    // the file still decodes canonically: the signature bytes change.
    let mut forged = fs::read(&c2).unwrap();
    let at = forged.len() - 1 - 8;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    fs::write(&c1, &forged).unwrap();
    fs::copy(&s2, static_key::paths_for(&k1).0).unwrap();
    let id = static_key::load(&k1).unwrap();
    assert_eq!(
        cert::parse_signed(&id.cert_bytes),
        Err(CertError::BadSignature)
    );
    let genuine = static_key::load(&k2).unwrap();
    assert_eq!(
        cert::parse_signed(&genuine.cert_bytes).unwrap(),
        genuine.verified
    );
    assert_eq!(genuine.verified.static_public, id.verified.static_public);
    assert_ne!(genuine.cert_bytes, id.cert_bytes);

    // Tampered, truncated, or mislabelled files.
    let good = fs::read_to_string(&c2).unwrap();
    let bad = [
        good.replace(CERT_HEADER, "blackpony-static-key"),
        good.trim_end().to_string(),
        format!("{}\n", &good[..good.len() - 6]),
        good.replacen(" ", "  ", 1),
        format!("{good}{good}"),
        String::new(),
    ];
    for b in &bad {
        fs::write(&c1, b).unwrap();
        is_key_error(static_key::load(&k1), "bad certificate file");
    }
    let secret = fs::read_to_string(&s2).unwrap();
    for b in [
        secret.replace(PRIVATE_HEADER, "x"),
        secret.replacen("=", "", 1),
        format!("{secret}x"),
    ] {
        fs::write(&s2, b).unwrap();
        is_key_error(static_key::load(&k2), "bad private key file");
    }
    fs::remove_file(&s2).unwrap();
    is_key_error(static_key::load(&k2), "missing private key file");
    fs::remove_dir_all(&d1).unwrap();
    fs::remove_dir_all(&d2).unwrap();
}
