//! What both command lines share: the key tool, option parsing helpers and
//! the way a usage error is reported without writing to a socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::keys::{key_error, HostKey, DEFAULT_KEY_PATH};
use crate::limits::DEFAULT_RSA_BITS;
use crate::static_key::StaticIdentity;
use crate::Error;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Options every program takes.
pub fn common_options(opts: &mut getopts::Options) {
    opts.optopt(
        "",
        "key",
        &format!("host key file (PKCS#8 PEM; default {DEFAULT_KEY_PATH})"),
        "FILE",
    );
    opts.optflag(
        "",
        "allow-rot",
        "offer and accept the ROTn toy cipher (testing by hand only)",
    );
    opts.optopt(
        "",
        "suites",
        "suites to use, most preferred first (server default NOISE-25519-CHACHAPOLY-SHA256; client default NOISE-25519-CHACHAPOLY-SHA256,RSA-BLOWFISH)",
        "LIST",
    );
    opts.optopt(
        "",
        "log",
        "log to FILE instead of syslog (never to stdout or stderr)",
        "FILE",
    );
    opts.optopt(
        "",
        "timeout",
        "seconds to wait for any read or write, and for a whole command line or reply (default 300, RFC 5321 4.5.3.2)",
        "SECS",
    );
    opts.optopt(
        "",
        "session-timeout",
        "seconds a whole session may last; then it ends with 421 4.4.2 (default 3600)",
        "SECS",
    );
    opts.optopt(
        "",
        "record",
        &format!(
            "append one JSON line per session to FILE for blackpony-report (default {}; none: do not)",
            crate::session_record::DEFAULT_PATH
        ),
        "FILE",
    );
    opts.optflag(
        "",
        "fingerprint",
        "print the host key's fingerprint and exit",
    );
    opts.optflag("h", "help", "print this help and exit");
    opts.optflag("V", "version", "print the version and exit");
}

pub fn key_path(m: &getopts::Matches) -> PathBuf {
    PathBuf::from(m.opt_str("key").as_deref().unwrap_or(DEFAULT_KEY_PATH))
}

/// Option `--name` as a `T` that `ok` accepts, `None` when absent; a value
/// that does not parse or is refused is a config error that ends in `hint`.
pub fn opt_value<T: std::str::FromStr>(
    m: &getopts::Matches,
    name: &str,
    ok: impl Fn(&T) -> bool,
    hint: &str,
) -> Result<Option<T>, Error> {
    let Some(s) = m.opt_str(name) else {
        return Ok(None);
    };
    match s.parse::<T>() {
        Ok(v) if ok(&v) => Ok(Some(v)),
        _ => Err(Error::Config(format!("--{name} {s}: {hint}"))),
    }
}

fn opt_seconds(m: &getopts::Matches, name: &str, max: u64) -> Result<Option<Duration>, Error> {
    let hint = format!("give a number of seconds from 1 to {max}");
    let secs = opt_value(m, name, |n| (1..=max).contains(n), &hint)?;
    Ok(secs.map(Duration::from_secs))
}

pub fn timeout(m: &getopts::Matches) -> Result<Duration, Error> {
    Ok(opt_seconds(m, "timeout", 86_400)?.unwrap_or(crate::limits::DEFAULT_TIMEOUT))
}

pub fn session_timeout(m: &getopts::Matches) -> Result<Duration, Error> {
    let secs = opt_seconds(m, "session-timeout", 7 * 86_400)?;
    Ok(secs.unwrap_or(crate::limits::DEFAULT_SESSION_TIMEOUT))
}

/// `--suites` and `--allow-rot`; `defaults` without `--suites`.
pub fn suites(
    m: &getopts::Matches,
    defaults: &[crate::suite::SuiteId],
) -> Result<crate::suite::SuitePolicy, Error> {
    let allow_rot = m.opt_present("allow-rot");
    match m.opt_str("suites") {
        None => Ok(crate::suite::SuitePolicy::new(defaults, allow_rot)),
        Some(list) => crate::suite::SuitePolicy::from_list(&list, allow_rot)
            .map_err(|e| Error::Config(format!("--suites {list}: {e}"))),
    }
}

/// Load the host key if the file exists. A missing key is `Ok(None)` (the
/// caller decides whether that is fatal); an unsafe or broken one is an error.
pub fn load_key_if_present(path: &Path) -> Result<Option<Arc<HostKey>>, Error> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => HostKey::load(path).map(|k| Some(Arc::new(k))),
    }
}

/// Refuse an unsafe RSA key file at start without reading it (a process
/// that never needs the key still must not run beside one others can read).
/// A missing file is fine here: whoever needs the key says so.
pub fn check_key_file(path: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(meta) => crate::keys::check_private(path, &meta).map_err(|e| key_error(path, e)),
        Err(_) => Ok(()),
    }
}

/// `--generate-key`: write a new key (never overwriting), its static key and
/// certificate (handshake v2), and return the key's fingerprint.
pub fn generate_key(path: &Path, bits: usize) -> Result<String, Error> {
    if path.exists() {
        return Err(Error::Key(format!(
            "{} exists; refusing to overwrite a host key",
            path.display()
        )));
    }
    let key = HostKey::generate(bits)?;
    key.save_new(path)?;
    crate::static_key::issue_for(path, crate::clock::now_unix())?;
    Ok(key.fingerprint())
}

/// `--renew-cert`: make the static key if missing and issue a fresh
/// certificate when none is valid for more than the renewal margin (or
/// always, with `force`). Returns a line for the administrator.
pub fn renew_cert(path: &Path, force: bool) -> Result<String, Error> {
    let now = crate::clock::now_unix();
    let margin = crate::limits::STATIC_CERT_RENEW_BEFORE.as_secs();
    if let Ok(id) = crate::static_key::load(path) {
        let c = &id.verified;
        if !force && c.check_time(now).is_ok() && !c.needs_renewal(now, margin) {
            return Ok(format!(
                "certificate valid until {}; not renewed (renewal starts {} days before)",
                crate::clock::timestamp(c.not_after),
                margin / 86_400
            ));
        }
    }
    let id = crate::static_key::issue_for(path, now)?;
    Ok(format!(
        "certificate issued, valid until {}",
        crate::clock::timestamp(id.verified.not_after)
    ))
}

/// `--rotate-key`: a new host key that the old one vouches for during
/// `--transition-days` (src/static_key.rs, [`crate::static_key::rotate`]).
/// Returns a line for the administrator.
pub fn rotate_key(path: &Path, m: &getopts::Matches) -> Result<String, Error> {
    let default = crate::limits::ROTATION_TRANSITION.as_secs() / 86_400;
    let hint = format!("use 1 to 730 (default {default})");
    let days = opt_value(m, "transition-days", |n| (1..=730).contains(n), &hint)?;
    let days = days.unwrap_or(default);
    let bits = m.opt_present("key-bits").then(|| key_bits(m)).transpose()?;
    let now = crate::clock::now_unix();
    let r = crate::static_key::rotate(path, bits, days * 86_400, now, m.opt_present("force"))?;
    Ok(format!(
        "rotated: old={} new={}; the old key vouches for the new one until {}",
        r.old_fingerprint,
        r.new_fingerprint,
        crate::clock::timestamp(r.not_after)
    ))
}

/// The static key and certificate of handshake v2 beside `path`, if they
/// exist. Expiry is logged, loudly: clients refuse an expired certificate
/// (and defer rather than go plain), so it must be renewed.
pub fn load_identity(path: &Path) -> Result<Option<StaticIdentity>, Error> {
    let (secret, _) = crate::static_key::paths_for(path);
    if !secret.exists() {
        return Ok(None);
    }
    let id = crate::static_key::load(path)?;
    let now = crate::clock::now_unix();
    let c = &id.verified;
    if let Err(e) = c.check_time(now) {
        log::error!("{}: {e}; run blackpony --renew-cert", path.display());
    } else if c.needs_renewal(now, crate::limits::STATIC_CERT_WARN_BEFORE.as_secs()) {
        log::error!(
            "{}: static-key certificate expires {}; run blackpony --renew-cert",
            path.display(),
            crate::clock::timestamp(c.not_after)
        );
    }
    Ok(Some(id))
}

/// `--key-bits`: the size of a generated key.
pub fn key_bits(m: &getopts::Matches) -> Result<usize, Error> {
    let hint = "use 2048, 3072 or 4096";
    let bits = opt_value(m, "key-bits", |n| [2048, 3072, 4096].contains(n), hint)?;
    Ok(bits.unwrap_or(DEFAULT_RSA_BITS))
}

/// `--record FILE|none`: where the session records go.
pub fn record_file(m: &getopts::Matches) -> Option<crate::session_record::RecordFile> {
    use crate::session_record::{RecordFile, DEFAULT_MAX_BYTES, DEFAULT_PATH};
    match m.opt_str("record").as_deref() {
        Some("none") => None,
        p => Some(RecordFile::new(
            p.unwrap_or(DEFAULT_PATH),
            DEFAULT_MAX_BYTES,
        )),
    }
}
