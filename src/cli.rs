//! What both command lines share: the key tool, option parsing helpers and
//! the way a usage error is reported without writing to a socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::keys::{HostKey, DEFAULT_KEY_PATH};
use crate::limits::DEFAULT_RSA_BITS;
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
        "suites to use, most preferred first (default X25519-CHACHA20POLY1305,RSA-BLOWFISH)",
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
        "seconds to wait for any read or write (default 300, RFC 5321 4.5.3.2)",
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
    m.opt_str("key")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_PATH))
}

pub fn timeout(m: &getopts::Matches) -> Result<Duration, Error> {
    match m.opt_str("timeout") {
        None => Ok(crate::limits::DEFAULT_TIMEOUT),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n)),
            _ => Err(Error::Config(format!(
                "--timeout {s}: give a number of seconds from 1 to 86400"
            ))),
        },
    }
}

/// `--suites` and `--allow-rot`.
pub fn suites(m: &getopts::Matches) -> Result<crate::suite::SuitePolicy, Error> {
    let allow_rot = m.opt_present("allow-rot");
    match m.opt_str("suites") {
        None => Ok(crate::suite::SuitePolicy::new(allow_rot)),
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

/// `--generate-key`: write a new key (never overwriting) and print its fingerprint.
pub fn generate_key(path: &Path, bits: usize) -> Result<String, Error> {
    if path.exists() {
        return Err(Error::Key(format!(
            "{} exists; refusing to overwrite a host key",
            path.display()
        )));
    }
    let key = HostKey::generate(bits)?;
    key.save_new(path)?;
    Ok(key.fingerprint())
}

/// `--key-bits`: the size of a generated key.
pub fn key_bits(m: &getopts::Matches) -> Result<usize, Error> {
    match m.opt_str("key-bits") {
        None => Ok(DEFAULT_RSA_BITS),
        Some(s) => match s.parse::<usize>() {
            Ok(n @ (2048 | 3072 | 4096)) => Ok(n),
            _ => Err(Error::Config(format!(
                "--key-bits {s}: use 2048, 3072 or 4096"
            ))),
        },
    }
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
