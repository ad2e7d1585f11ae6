//! The negotiated suites. Each is data (its name) plus one module with its
//! handshake, which [`crate::switch`] runs. Adding a suite means adding a
//! variant here, a module beside this file and its arm in the switch.

pub mod common;
pub mod message;
pub mod noise_suite;
pub mod rot;
pub mod rsa_blowfish;

use std::fmt;

pub const NOISE: &str = "NOISE-25519-CHACHAPOLY-SHA256";
pub const RSA_BLOWFISH: &str = "RSA-BLOWFISH";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SuiteId {
    /// Handshake v2: Noise XX / IK with certified static keys; forward
    /// secrecy and no RSA private-key operation per connection.
    Noise,
    /// The seed's suite: RSA-OAEP key transport, Blowfish-CTR + HMAC-SHA1.
    RsaBlowfish,
    /// ROTn, n in 1..=25: never offered or accepted without --allow-rot.
    Rot(u8),
}

impl SuiteId {
    /// Parse a suite name as it appears on the wire (case-insensitive, like SMTP keywords).
    pub fn parse(name: &str) -> Option<SuiteId> {
        let upper = name.to_ascii_uppercase();
        if upper == RSA_BLOWFISH {
            return Some(SuiteId::RsaBlowfish);
        }
        if upper == NOISE {
            return Some(SuiteId::Noise);
        }
        // Digits only, no leading zero: one spelling per suite.
        let n = upper.strip_prefix("ROT")?;
        let canonical = !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit());
        let n: u8 = n.parse().ok().filter(|_| canonical)?;
        (1..=25).contains(&n).then_some(SuiteId::Rot(n))
    }

    pub fn is_rot(&self) -> bool {
        matches!(self, SuiteId::Rot(_))
    }
}

impl fmt::Display for SuiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuiteId::Noise => f.write_str(NOISE),
            SuiteId::RsaBlowfish => f.write_str(RSA_BLOWFISH),
            SuiteId::Rot(n) => write!(f, "ROT{n}"),
        }
    }
}

/// Which suites one end will use, in its order of preference.
#[derive(Clone, Debug)]
pub struct SuitePolicy {
    /// Keyed suites, most preferred first (`--suites`).
    pub keyed: Vec<SuiteId>,
    pub allow_rot: bool,
}

/// What a server offers by default: handshake v2 only. RSA-BLOWFISH has no
/// forward secrecy and its OAEP decryption per connection keeps the host
/// key online as an oracle, so a server offers it only when told to.
pub const SERVER_DEFAULT: [SuiteId; 1] = [SuiteId::Noise];
/// What a client accepts by default: v2 first, and RSA-BLOWFISH from a
/// server that offers nothing better (an older blackpony).
pub const CLIENT_DEFAULT: [SuiteId; 2] = [SuiteId::Noise, SuiteId::RsaBlowfish];

impl SuitePolicy {
    pub fn new(defaults: &[SuiteId], allow_rot: bool) -> Self {
        SuitePolicy {
            keyed: defaults.to_vec(),
            allow_rot,
        }
    }

    /// Whether handshake v2 is among the keyed suites (it needs the static key).
    pub fn uses_noise(&self) -> bool {
        self.keyed.contains(&SuiteId::Noise)
    }

    /// Whether a suite that needs the RSA private key is among them.
    pub fn uses_rsa(&self) -> bool {
        self.keyed.contains(&SuiteId::RsaBlowfish)
    }

    /// From `--suites LIST` (comma or space separated names, most preferred
    /// first). ROTn in the list is the same as --allow-rot.
    pub fn from_list(list: &str, allow_rot: bool) -> Result<Self, String> {
        let mut p = SuitePolicy::new(&[], allow_rot);
        for name in list.split([',', ' ']).filter(|n| !n.is_empty()) {
            match SuiteId::parse(name) {
                Some(SuiteId::Rot(_)) => p.allow_rot = true,
                Some(s) if !p.keyed.contains(&s) => p.keyed.push(s),
                Some(_) => {}
                None => {
                    return Err(format!(
                        "unknown suite {name:?}; known: {NOISE}, {RSA_BLOWFISH}, ROT1..ROT25"
                    ))
                }
            }
        }
        if p.keyed.is_empty() && !p.allow_rot {
            return Err("--suites names no suite".into());
        }
        Ok(p)
    }

    /// The EHLO keyword's parameters the server advertises: each keyed
    /// suite only when the key it needs is loaded (`have_rsa` the RSA host
    /// key, `have_static` the static key and certificate of handshake v2).
    pub fn server_offer(&self, have_rsa: bool, have_static: bool) -> String {
        let have_key = |s: &&SuiteId| match s {
            SuiteId::Noise => have_static,
            _ => have_rsa,
        };
        let mut names: Vec<String> = self
            .keyed
            .iter()
            .filter(have_key)
            .map(|s| s.to_string())
            .collect();
        if self.allow_rot {
            names.push("ROT13".into());
        }
        names.join(" ")
    }

    pub fn accepts(&self, suite: SuiteId) -> bool {
        match suite {
            SuiteId::Rot(_) => self.allow_rot,
            s => self.keyed.contains(&s),
        }
    }

    /// The client's choice: the first suite in the server's list it allows.
    pub fn choose(&self, offered: &str) -> Option<SuiteId> {
        offered
            .split_ascii_whitespace()
            .filter_map(SuiteId::parse)
            .find(|s| self.accepts(*s))
    }
}
