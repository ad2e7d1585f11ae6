//! Where a message goes: sendmail's `$h` turned into the ordered list of
//! addresses to try (RFC 5321 5.1): MX hosts by preference with equal
//! preferences shuffled, a null MX refusing mail (RFC 7505), the domain
//! itself when it has no MX (implicit MX), and address literals, which need
//! no DNS at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rand::seq::SliceRandom;

use crate::error::{invalid, DnsError};
use crate::resolver::Resolver;
use crate::wire::{Message, RData, TYPE_MX};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Sorted by preference, equal preferences in random order (RFC 5321 5.1).
    Hosts(Vec<MxHost>),
    /// RFC 7505: the domain says it accepts no mail.
    NullMx,
    /// NOERROR and no MX: deliver to the domain itself (implicit MX).
    NoMx,
}

/// Sorts by preference and shuffles each run of equal preference, which
/// spreads load over equal MX hosts as RFC 5321 5.1 asks.
fn order_mx(hosts: &mut [MxHost]) {
    hosts.sort_by_key(|h| h.preference);
    let mut rng = rand::rng();
    for run in hosts.chunk_by_mut(|a, b| a.preference == b.preference) {
        run.shuffle(&mut rng);
    }
}

impl Resolver {
    pub fn lookup_mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        mx_answer(&self.query(domain, TYPE_MX)?)
    }
}

/// The MX answer in a NOERROR reply to an MX query.
pub fn mx_answer(msg: &Message) -> Result<MxAnswer, DnsError> {
    let mut hosts = Vec::new();
    let mut null = false;
    for data in msg.answers_for(TYPE_MX)? {
        if let RData::Mx {
            preference,
            exchange,
        } = data
        {
            if exchange.is_empty() {
                null = true;
            } else {
                hosts.push(MxHost {
                    preference: *preference,
                    host: exchange.clone(),
                });
            }
        }
    }
    if hosts.is_empty() {
        return Ok(if null {
            MxAnswer::NullMx
        } else {
            MxAnswer::NoMx
        });
    }
    if null {
        // RFC 7505 3: a null MX must be the only one; with real hosts
        // beside it, the real hosts are all we can use.
        log::warn!(
            "{}: null MX mixed with other MX records, ignoring it",
            msg.qname
        );
    }
    order_mx(&mut hosts);
    Ok(MxAnswer::Hosts(hosts))
}

/// One address to try, with the MX host name it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The MX host, the domain itself for an implicit MX, the bracketed
    /// host, or for an address literal the literal as written in `$h`.
    pub mx_host: String,
    pub addr: SocketAddr,
}

/// What sendmail's `$h` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `[192.0.2.1]`, `[IPv6:2001:db8::1]`: no DNS at all.
    Literal(IpAddr),
    /// `[mail.example.com]`: that host's addresses, no MX lookup.
    Host(String),
    /// A mail domain: MX lookup.
    Domain(String),
}

/// Classifies `$h`. Inside brackets, RFC 5321 4.1.3: `IPv6:` then an IPv6
/// address, or dotted digits that must be an IPv4 address; anything else
/// is a host name (sendmail's convention for "no MX").
pub fn parse_destination(dest: &str) -> Result<Destination, DnsError> {
    let dest = dest.trim();
    let Some(rest) = dest.strip_prefix('[') else {
        if dest.is_empty() {
            return Err(invalid(dest, "empty destination"));
        }
        return Ok(Destination::Domain(dest.to_string()));
    };
    let Some(inner) = rest.strip_suffix(']') else {
        return Err(invalid(dest, "unbalanced bracket"));
    };
    if let Some((tag, addr)) = inner.split_once(':') {
        if !tag.eq_ignore_ascii_case("IPv6") {
            return Err(invalid(dest, "unsupported address literal"));
        }
        return addr
            .parse::<Ipv6Addr>()
            .map(|ip| Destination::Literal(ip.into()))
            .map_err(|_| invalid(dest, "bad IPv6 address"));
    }
    if !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return inner
            .parse::<Ipv4Addr>()
            .map(|ip| Destination::Literal(ip.into()))
            .map_err(|_| invalid(dest, "bad IPv4 address"));
    }
    if inner.is_empty() {
        return Err(invalid(dest, "empty brackets"));
    }
    Ok(Destination::Host(inner.to_string()))
}

/// Appends `host`'s addresses to `targets`, skipping ones already there
/// (two MX names for one machine would otherwise be tried twice).
fn push_targets(targets: &mut Vec<Target>, host: &str, addrs: &[IpAddr], port: u16) {
    for &ip in addrs {
        let addr = SocketAddr::new(ip, port);
        if !targets.iter().any(|t| t.addr == addr) {
            targets.push(Target {
                mx_host: host.to_string(),
                addr,
            });
        }
    }
}

/// The addresses of one host, an empty answer being an error.
fn host_addrs(resolver: &Resolver, host: &str) -> Result<Vec<IpAddr>, DnsError> {
    let addrs = resolver.lookup_addrs(host)?;
    if addrs.is_empty() {
        return Err(DnsError::Temporary(format!(
            "{host} has no A or AAAA record"
        )));
    }
    Ok(addrs)
}

/// The whole delivery target list for sendmail's `$h`, in the order the
/// mailer will try it.
pub fn resolve_targets(
    resolver: &Resolver,
    dest: &str,
    port: u16,
) -> Result<Vec<Target>, DnsError> {
    let mut targets = Vec::new();
    match parse_destination(dest)? {
        Destination::Literal(ip) => push_targets(&mut targets, dest.trim(), &[ip], port),
        Destination::Host(host) => {
            push_targets(&mut targets, &host, &host_addrs(resolver, &host)?, port)
        }
        Destination::Domain(domain) => match resolver.lookup_mx(&domain)? {
            MxAnswer::NullMx => return Err(DnsError::NullMx),
            MxAnswer::NoMx => {
                push_targets(&mut targets, &domain, &host_addrs(resolver, &domain)?, port)
            }
            MxAnswer::Hosts(hosts) => {
                let mut last = None;
                for mx in &hosts {
                    match host_addrs(resolver, &mx.host) {
                        Ok(addrs) => push_targets(&mut targets, &mx.host, &addrs, port),
                        Err(e) => {
                            log::warn!(
                                "{domain}: skipping MX {} ({}): {e}",
                                mx.host,
                                mx.preference
                            );
                            last = Some(e);
                        }
                    }
                }
                if targets.is_empty() {
                    // Even NXDOMAIN for every host is temporary: it is the
                    // domain's DNS that is broken, and it may be fixed.
                    let why = last.map_or_else(String::new, |e| e.to_string());
                    return Err(DnsError::Temporary(format!(
                        "no MX host of {domain} has an address (last: {why})"
                    )));
                }
            }
        },
    }
    Ok(targets)
}
