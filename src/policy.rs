//! Per-destination policy of the outbound mailer, and the decision it drives.
//!
//! The policy file reads like Postfix's `smtp_tls_policy_maps`, one
//! `destination policy` pair per line:
//!
//! ```text
//! # destination        policy
//! example.org          require   # exactly example.org
//! .example.org         tofu      # any subdomain of example.org, not example.org itself
//! [mx.example.net]     may       # the bracketed host sendmail passes as $h
//! ```
//!
//! Matching is case-insensitive and ignores a trailing dot. An exact entry
//! wins over suffix entries, the longest suffix wins among those, and the
//! caller's default applies when nothing matches. A bracketed destination
//! (`[host]`, "this host, no MX lookup") only matches a bracketed entry,
//! exactly, as in Postfix: `.example.org` does not cover `[mx.example.org]`.
//!
//! `#` starts a comment anywhere on a line (no valid destination contains
//! one). Any other malformed line, and a destination listed twice, is an
//! error naming the line: a typo must not silently weaken a `require`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::peers::Known;

/// Largest policy file we read: some 20 000 lines, far beyond any real map.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// How much protection one destination gets. See [`decide`] for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Encrypt when offered; never defer, only warn.
    May,
    /// Trust on first use: once a peer has been seen encrypted with a key,
    /// defer when it shows up plain or with another key.
    Tofu,
    /// Always encrypted: defer plain sessions and key changes.
    Require,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::May => "may",
            Policy::Tofu => "tofu",
            Policy::Require => "require",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    /// Why the word is not `may`, `tofu` or `require`.
    type Err = String;

    /// Case-insensitive, like the rest of the file.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "may" => Ok(Policy::May),
            "tofu" => Ok(Policy::Tofu),
            "require" => Ok(Policy::Require),
            _ => Err(format!(
                "unknown policy {s:?}: expected may, tofu or require"
            )),
        }
    }
}

/// A policy file that cannot be used.
#[derive(Debug)]
pub enum PolicyError {
    Io(io::Error, PathBuf),
    /// Line `line` (1-based) is malformed. `path` is `None` for [`PolicyMap::parse`].
    Syntax {
        path: Option<PathBuf>,
        line: usize,
        reason: String,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    TooBig {
        path: PathBuf,
        size: u64,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Io(e, path) => write!(f, "policy map {}: {e}", path.display()),
            PolicyError::Syntax { path, line, reason } => {
                let path = path.as_ref().map(|p| format!("{} ", p.display()));
                let path = path.unwrap_or_default();
                write!(f, "policy map {path}line {line}: {reason}")
            }
            PolicyError::TooBig { path, size } => write!(
                f,
                "policy map {} is {size} bytes, more than the {MAX_FILE_BYTES} allowed",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PolicyError::Io(e, _) => Some(e),
            _ => None,
        }
    }
}

/// Destination to policy, in file order. Keys are normalized: lowercase, no
/// trailing dot, with their leading `.` or brackets kept to tell the three
/// kinds of entry apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyMap {
    entries: Vec<(String, Policy)>,
}

impl PolicyMap {
    /// Reads and parses a policy file. Errors name the file and the line.
    pub fn load(path: &Path) -> Result<PolicyMap, PolicyError> {
        let mut data = Vec::new();
        File::open(path)
            .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut data))
            .map_err(|e| PolicyError::Io(e, path.to_path_buf()))?;
        if data.len() as u64 > MAX_FILE_BYTES {
            let size = std::fs::metadata(path).map_or(data.len() as u64, |m| m.len());
            let path = path.to_path_buf();
            return Err(PolicyError::TooBig { path, size });
        }
        let text = String::from_utf8(data).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            syntax(
                1 + valid.iter().filter(|&&b| b == b'\n').count(),
                "not UTF-8",
            )
        });
        text.and_then(|t| PolicyMap::parse(&t))
            .map_err(|e| match e {
                PolicyError::Syntax { line, reason, .. } => PolicyError::Syntax {
                    path: Some(path.to_path_buf()),
                    line,
                    reason,
                },
                other => other,
            })
    }

    /// Parses the text of a policy file. Errors name the line.
    pub fn parse(text: &str) -> Result<PolicyMap, PolicyError> {
        let mut entries = Vec::new();
        let mut first_line = std::collections::HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let content = line.split_once('#').map_or(line, |(before, _)| before);
            let fields: Vec<&str> = content.split_ascii_whitespace().collect();
            let (key, policy) = match fields[..] {
                [] => continue,
                [key, policy] => (key, policy),
                _ => {
                    return Err(syntax(
                        number,
                        &format!(
                            "expected \"destination policy\", found {} fields",
                            fields.len()
                        ),
                    ))
                }
            };
            let key = parse_key(key).map_err(|reason| syntax(number, &reason))?;
            let policy: Policy = policy.parse().map_err(|e: String| syntax(number, &e))?;
            if let Some(first) = first_line.insert(key.clone(), number) {
                let reason = format!("{key} is already listed on line {first}");
                return Err(syntax(number, &reason));
            }
            entries.push((key, policy));
        }
        Ok(PolicyMap { entries })
    }

    /// The policy for `domain` (a domain, or a bracketed `[host]`): the
    /// exact entry, else the longest matching `.suffix` entry, else `default`.
    pub fn lookup(&self, domain: &str, default: Policy) -> Policy {
        let domain = normalize(domain);
        let mut best: Option<(usize, Policy)> = None;
        for (key, policy) in &self.entries {
            if *key == domain {
                return *policy;
            }
            // Suffix entries apply to plain domains only; the leading dot of
            // the key makes `.example.org` match `a.example.org` but neither
            // `example.org` nor `badexample.org`.
            let suffix_match = key.starts_with('.')
                && !domain.starts_with('[')
                && domain.len() > key.len()
                && domain.ends_with(key.as_str());
            if suffix_match && best.is_none_or(|(len, _)| key.len() > len) {
                best = Some((key.len(), *policy));
            }
        }
        best.map_or(default, |(_, policy)| policy)
    }

    /// The entries, normalized, in file order.
    pub fn entries(&self) -> &[(String, Policy)] {
        &self.entries
    }
}

fn syntax(line: usize, reason: &str) -> PolicyError {
    PolicyError::Syntax {
        path: None,
        line,
        reason: reason.to_owned(),
    }
}

/// Lowercase, and drop one trailing dot (inside the brackets too).
fn normalize(domain: &str) -> String {
    let d = domain.to_ascii_lowercase();
    if let Some(inner) = d.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        let inner = inner.strip_suffix('.').unwrap_or(inner);
        return format!("[{inner}]");
    }
    d.strip_suffix('.').map(str::to_owned).unwrap_or(d)
}

/// Validates and normalizes a destination key: `name`, `.name` or `[host]`,
/// where a name is dot-separated labels of letters, digits, `-` and `_`
/// (A-labels: sendmail passes IDNs in ASCII), and a bracketed host may also
/// be an address literal (`[192.0.2.1]`, `[ipv6:2001:db8::1]`).
fn parse_key(raw: &str) -> Result<String, String> {
    let key = normalize(raw);
    let bad = |why: &str| Err(format!("invalid destination {raw:?}: {why}"));
    if let Some(inner) = key.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return bad("missing closing bracket");
        };
        let literal_byte = |b: u8| b.is_ascii_alphanumeric() || b":.-_".contains(&b);
        if inner.is_empty() || !inner.bytes().all(literal_byte) || inner.ends_with('.') {
            return bad("expected a host name or address between the brackets");
        }
        return Ok(key);
    }
    let name = key.strip_prefix('.').unwrap_or(&key);
    if name.is_empty() {
        return bad("empty domain (use the default policy for \"everything\")");
    }
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b"-_".contains(&b);
    if !name
        .split('.')
        .all(|l| !l.is_empty() && l.bytes().all(name_byte))
    {
        return bad("expected dot-separated labels of letters, digits, '-' and '_'");
    }
    Ok(key)
}

/// What the mailer saw of the remote end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The session is encrypted; the peer's host key has this fingerprint.
    Encrypted { fingerprint: String },
    /// The remote did not offer the extension: the session would be plain.
    Plain,
}

/// What the mailer does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// Deliver, and log the reason as a warning.
    ProceedWithWarning(String),
    /// Answer sendmail with a 4xx (try again later); the reason goes to the
    /// log and into the reply text.
    Defer(String),
}

/// Decides whether to deliver, given the destination's policy, what the
/// known-peers store holds for the MX host and for the destination domain,
/// and what the session shows. This is the only place the decision is made:
/// the mailer asks it during the handshake (before the server's key is
/// accepted) and right after the EHLO reply of a plain peer.
///
/// "Known" means the MX host is pinned or the domain was seen encrypted. A
/// known peer must show a key that matches the host's pin (if any) and is
/// one of the domain's keys (if any); a plain session is stripping. So an
/// attacker who blocks the pinned MX gains nothing at the next MX: that one
/// is held to the domain's keys.
///
/// | policy    | known | session                 | verdict                      |
/// |-----------|-------|-------------------------|------------------------------|
/// | `may`     | no    | plain or encrypted      | proceed                      |
/// | `may`     | yes   | encrypted, pinned key   | proceed                      |
/// | `may`     | yes   | encrypted, other key    | proceed, warn "key changed"  |
/// | `may`     | yes   | plain                   | proceed, warn "stripping"    |
/// | `tofu`    | no    | plain or encrypted      | proceed                      |
/// | `tofu`    | yes   | encrypted, pinned key   | proceed                      |
/// | `tofu`    | yes   | encrypted, other key    | defer                        |
/// | `tofu`    | yes   | plain                   | defer                        |
/// | `require` | no    | plain                   | defer                        |
/// | `require` | no    | encrypted               | proceed                      |
/// | `require` | yes   | encrypted, pinned key   | proceed                      |
/// | `require` | yes   | encrypted, other key    | defer                        |
/// | `require` | yes   | plain                   | defer                        |
///
/// Deliveries pin only new hosts and domains
/// ([`crate::peers::KnownPeers::record_delivery`]): under `may` a changed key
/// is warned about at every delivery until an operator runs `--forget`.
pub fn decide(policy: Policy, known: &Known, seen: &Observation) -> Verdict {
    let problem = problem(known, seen).or_else(|| match seen {
        Observation::Plain if policy == Policy::Require => {
            Some("policy requires encryption, but the peer does not offer it".to_owned())
        }
        _ => None,
    });
    match (problem, policy) {
        (None, _) => Verdict::Proceed,
        (Some(reason), Policy::May) => Verdict::ProceedWithWarning(reason),
        (Some(reason), Policy::Tofu | Policy::Require) => Verdict::Defer(reason),
    }
}

/// Whether a verified continuity statement by `signer` for `fingerprint`
/// (the key the peer just proved it holds) lets the pins move to it: the
/// signer must be pinned, for the host or among the domain's keys, and
/// neither pin may hold anything but the signer or the new key. The caller
/// then moves them ([`crate::peers::KnownPeers::move_pin`]) before
/// [`decide`], under every policy: a rotation the pinned key signed is no
/// key change; a statement by any other key changes nothing.
pub fn follows_rotation(known: &Known, fingerprint: &str, signer: &str) -> bool {
    let ours = |fp: &str| fp == signer || fp == fingerprint;
    let host_ok = known.host.as_ref().is_none_or(|p| ours(&p.fingerprint));
    let domain_ok = known.domain.is_empty() || known.domain.iter().any(|d| ours(&d.fingerprint));
    let signer_pinned = known.host.as_ref().is_some_and(|p| p.fingerprint == signer)
        || known.domain.iter().any(|d| d.fingerprint == signer);
    signer != fingerprint && host_ok && domain_ok && signer_pinned
}

/// What is wrong with `seen` given the pins, whatever the policy.
fn problem(known: &Known, seen: &Observation) -> Option<String> {
    let domain = known.domain.first().map(|d| d.name.as_str());
    match seen {
        Observation::Plain => match (&known.host, domain) {
            (Some(pin), _) => Some(format!(
                "peer {} previously encrypted, now plain: possible stripping",
                pin.name
            )),
            (None, Some(domain)) => Some(format!(
                "domain {domain} previously encrypted, now plain at this MX: possible \
                 stripping (or an MX without blackpony)"
            )),
            (None, None) => None,
        },
        Observation::Encrypted { fingerprint } => {
            let changed = known
                .host
                .as_ref()
                .filter(|p| p.fingerprint != *fingerprint);
            if let Some(pin) = changed {
                return Some(format!(
                    "key changed for peer {}: pinned {} since {}, now {}; if expected, \
                     run blackpony-mailer --forget {}",
                    pin.name, pin.fingerprint, pin.first_seen, fingerprint, pin.name
                ));
            }
            let matches_domain = known.domain.iter().any(|d| d.fingerprint == *fingerprint);
            match domain {
                Some(domain) if !matches_domain => Some(format!(
                    "key {fingerprint} is not one of the {} pinned for domain {domain}; \
                     if expected, run blackpony-mailer --forget {domain}",
                    known.domain.len()
                )),
                _ => None,
            }
        }
    }
}
