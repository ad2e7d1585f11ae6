//! The negotiated suites. Each is data (its name) plus one module that turns
//! the connection into a [`crate::channel::Channel`]. Adding a suite means
//! adding a variant here and a module beside this file.

pub mod message;
pub mod rot;
pub mod rsa_blowfish;

use std::fmt;

pub const RSA_BLOWFISH: &str = "RSA-BLOWFISH";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SuiteId {
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
        let n = upper.strip_prefix("ROT")?;
        if n.is_empty()
            || n.len() > 2
            || !n.bytes().all(|b| b.is_ascii_digit())
            || n.starts_with('0')
        {
            return None;
        }
        let n: u8 = n.parse().ok()?;
        (1..=25).contains(&n).then_some(SuiteId::Rot(n))
    }

    pub fn is_rot(&self) -> bool {
        matches!(self, SuiteId::Rot(_))
    }
}

impl fmt::Display for SuiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuiteId::RsaBlowfish => f.write_str(RSA_BLOWFISH),
            SuiteId::Rot(n) => write!(f, "ROT{n}"),
        }
    }
}

/// Which suites one end will use, in its order of preference.
#[derive(Clone, Debug)]
pub struct SuitePolicy {
    pub allow_rot: bool,
}

impl SuitePolicy {
    /// The EHLO keyword's parameters the server advertises.
    pub fn server_offer(&self) -> String {
        let mut s = String::from(RSA_BLOWFISH);
        if self.allow_rot {
            s.push_str(" ROT13");
        }
        s
    }

    pub fn accepts(&self, suite: SuiteId) -> bool {
        match suite {
            SuiteId::RsaBlowfish => true,
            SuiteId::Rot(_) => self.allow_rot,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names() {
        assert_eq!(SuiteId::parse("rsa-blowfish"), Some(SuiteId::RsaBlowfish));
        assert_eq!(SuiteId::parse("ROT13"), Some(SuiteId::Rot(13)));
        assert_eq!(SuiteId::parse("rot1"), Some(SuiteId::Rot(1)));
        for bad in ["ROT0", "ROT26", "ROT013", "ROT", "ROT-1", "ROT1x", "AES"] {
            assert_eq!(SuiteId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn choose_follows_server_order_and_policy() {
        let strict = SuitePolicy { allow_rot: false };
        let rot = SuitePolicy { allow_rot: true };
        assert_eq!(
            strict.choose("ROT13 RSA-BLOWFISH"),
            Some(SuiteId::RsaBlowfish)
        );
        assert_eq!(rot.choose("ROT13 RSA-BLOWFISH"), Some(SuiteId::Rot(13)));
        assert_eq!(strict.choose("ROT13 FOO"), None);
        assert_eq!(rot.server_offer(), "RSA-BLOWFISH ROT13");
    }
}
