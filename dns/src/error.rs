//! The one error type of the DNS client, and whether it is permanent.

use std::fmt;

/// Why a lookup failed. Permanent errors bounce the message, the others
/// leave it queued for a later try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist (RCODE 3), or cannot exist (an invalid name
    /// or address literal). Permanent.
    NxDomain,
    /// The domain publishes a null MX (RFC 7505): it accepts no mail. Permanent.
    NullMx,
    /// SERVFAIL, refusal, timeout, network error, no usable address.
    Temporary(String),
    /// A reply we could not parse. Treated as temporary: the next try may
    /// reach a server that answers properly.
    Malformed(String),
}

impl DnsError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, DnsError::NxDomain | DnsError::NullMx)
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NxDomain => f.write_str("no such domain"),
            DnsError::NullMx => f.write_str("domain accepts no mail (null MX)"),
            DnsError::Temporary(why) => write!(f, "temporary DNS failure: {why}"),
            DnsError::Malformed(why) => write!(f, "malformed DNS reply: {why}"),
        }
    }
}

impl std::error::Error for DnsError {}

pub(crate) fn malformed(why: &str) -> DnsError {
    DnsError::Malformed(why.to_string())
}

/// A name or address literal that can never resolve: permanent, and the
/// reason goes to the log since `NxDomain` carries none.
pub(crate) fn invalid(what: &str, why: &str) -> DnsError {
    log::warn!("invalid destination {what:?}: {why}");
    DnsError::NxDomain
}
