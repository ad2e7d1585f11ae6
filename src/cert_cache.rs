//! The client's cache of servers' v2 certificates, beside the known-peers
//! file (`<known_peers>.certs`, one `host base64(certificate)` line each), so
//! the next delivery can use Noise IK (one round trip). A cache: a missing,
//! damaged or stale entry only costs the XX round trip. An entry is used only
//! while its certificate is within its window and names the host's pinned
//! RSA key; only certificates verified in a handshake are written here.

use std::fs;
use std::io::Write;
use std::path::Path;

use base64ct::{Base64, Encoding};

use crate::cert::{self, VerifiedCert};
use crate::keys::beside;
use crate::limits::MAX_STATIC_CERT;

fn entries(known_peers: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(beside(known_peers, ".certs")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, c)| (h.to_string(), c.to_string()))
        .collect()
}

/// The cached certificate of `host`, if it is valid now and for `pinned`.
pub fn lookup(known_peers: &Path, host: &str, pinned: &str) -> Option<VerifiedCert> {
    let (_, b64) = entries(known_peers).into_iter().find(|(h, _)| h == host)?;
    let bytes = Base64::decode_vec(&b64).ok()?;
    // Its signature was verified in the handshake that cached it, and this
    // file is as trusted as the pins beside it: layout, window and pin only,
    // so an IK delivery makes no RSA operation (0.8 M instructions saved).
    let c = cert::parse_own(&bytes).ok()?;
    c.check_time(crate::clock::now_unix()).ok()?;
    (c.fingerprint == pinned).then_some(c)
}

/// Remember `host`'s certificate (replacing an older one), atomically.
pub fn store(known_peers: &Path, host: &str, cert_bytes: &[u8]) -> std::io::Result<()> {
    if cert_bytes.len() > MAX_STATIC_CERT || host.contains(char::is_whitespace) {
        return Ok(());
    }
    let mut lines = entries(known_peers);
    lines.retain(|(h, _)| h != host);
    lines.push((host.to_string(), Base64::encode_string(cert_bytes)));
    let path = beside(known_peers, ".certs");
    let tmp = beside(&path, &format!(".tmp.{}", std::process::id()));
    let mut f = fs::File::create(&tmp)?;
    for (h, c) in &lines {
        writeln!(f, "{h} {c}")?;
    }
    f.sync_all()?;
    fs::rename(&tmp, &path)
}
