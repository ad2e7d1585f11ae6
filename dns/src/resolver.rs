//! The resolver: one question to each nameserver in turn, over UDP, again
//! over TCP when the answer was truncated (RFC 1035 4.2), nameservers taken
//! from resolv.conf or given explicitly.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{invalid, malformed, DnsError};
use crate::wire::{addresses, build_query, check_reply, parse_response, Message};
use crate::wire::{TYPE_A, TYPE_AAAA};

/// Without EDNS0 a server sends at most 512 bytes over UDP; the bigger
/// buffer costs nothing and tolerates servers that send more anyway.
const UDP_BUFFER: usize = 4096;
/// Rounds over the nameserver list, like resolv.conf's `attempts:2`.
const DEFAULT_ATTEMPTS: u32 = 2;
const DNS_PORT: u16 = 53;

#[derive(Debug, Clone)]
pub struct Resolver {
    nameservers: Vec<SocketAddr>,
    /// How long to wait for one server's answer, per try.
    timeout: Duration,
    attempts: u32,
}

/// The `nameserver` addresses of a resolv.conf, port 53.
fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        match words.next().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) => servers.push(SocketAddr::new(ip, DNS_PORT)),
            // e.g. fe80::1%eth0: a scope we cannot express by name here.
            _ => log::warn!("resolv.conf: ignoring unusable line {line:?}"),
        }
    }
    servers
}

impl Resolver {
    /// Nameservers from a resolv.conf; with none (or no file), 127.0.0.1:53
    /// as glibc does. `timeout` is per try of one server.
    pub fn from_resolv_conf(path: &Path, timeout: Duration) -> Result<Resolver, DnsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(DnsError::Temporary(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        let mut servers = parse_resolv_conf(&text);
        if servers.is_empty() {
            servers.push(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DNS_PORT));
        }
        Ok(Resolver::with_servers(servers, timeout))
    }

    /// Explicit nameservers (`--dns ADDR:PORT`). `timeout` is per try of one
    /// server: a lookup takes at most servers x attempts x timeout, twice
    /// that if it falls back to TCP.
    pub fn with_servers(servers: Vec<SocketAddr>, timeout: Duration) -> Resolver {
        Resolver {
            nameservers: servers,
            timeout,
            attempts: DEFAULT_ATTEMPTS,
        }
    }

    /// Rounds over the nameserver list (default 2, at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Resolver {
        self.attempts = attempts.max(1);
        self
    }

    /// The nameservers asked, in order.
    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.nameservers
    }

    /// A then AAAA, both asked; IPv4 addresses first. One family failing
    /// is fine as long as the other gave addresses. Empty if the name
    /// exists but has neither.
    pub fn lookup_addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let v4 = self.query(host, TYPE_A).and_then(|m| addresses(&m, TYPE_A));
        if v4 == Err(DnsError::NxDomain) {
            return Err(DnsError::NxDomain); // the name is gone for AAAA too
        }
        let v6 = self
            .query(host, TYPE_AAAA)
            .and_then(|m| addresses(&m, TYPE_AAAA));
        match (v4, v6) {
            (Ok(mut a), Ok(b)) => {
                a.extend(b);
                Ok(a)
            }
            (Ok(a), Err(e)) | (Err(e), Ok(a)) => {
                if a.is_empty() {
                    return Err(e);
                }
                log::warn!("{host}: using the addresses we got; other family failed: {e}");
                Ok(a)
            }
            (Err(e4), Err(e6)) => Err(if e6.is_permanent() { e6 } else { e4 }),
        }
    }

    /// Asks each nameserver in order, `attempts` rounds, until one gives a
    /// NOERROR or NXDOMAIN answer.
    pub(super) fn query(&self, qname: &str, qtype: u16) -> Result<Message, DnsError> {
        let mut query = build_query(0, qname, qtype).map_err(|why| invalid(qname, &why))?;
        let mut last = DnsError::Temporary("no nameservers configured".into());
        for _ in 0..self.attempts {
            for &server in &self.nameservers {
                // A fresh id per try, so a late reply to an earlier try
                // cannot be taken for this one.
                let id = rand::random::<u16>();
                query[..2].copy_from_slice(&id.to_be_bytes());
                let q = Question {
                    query: &query,
                    id,
                    qname,
                    qtype,
                };
                let result = self
                    .exchange(server, &q)
                    .and_then(|msg| msg.check_rcode().map(|()| msg));
                match result {
                    Ok(msg) => return Ok(msg),
                    Err(DnsError::NxDomain) => return Err(DnsError::NxDomain),
                    Err(e) => {
                        log::debug!("{server}: {qname} type {qtype}: {e}");
                        last = e;
                    }
                }
            }
        }
        Err(last)
    }

    /// One try against one server: UDP, then TCP if the answer was truncated.
    fn exchange(&self, server: SocketAddr, q: &Question) -> Result<Message, DnsError> {
        let msg = self.exchange_udp(server, q)?;
        if !msg.truncated {
            return Ok(msg);
        }
        log::debug!(
            "{server}: truncated UDP answer for {}, asking over TCP",
            q.qname
        );
        let msg = self.exchange_tcp(server, q)?;
        if msg.truncated {
            return Err(malformed("truncated answer over TCP"));
        }
        Ok(msg)
    }

    fn exchange_udp(&self, server: SocketAddr, q: &Question) -> Result<Message, DnsError> {
        let net = |e: io::Error| DnsError::Temporary(format!("{server} (udp): {e}"));
        let local = match server {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let socket = UdpSocket::bind(local).map_err(net)?;
        // A connected socket only receives datagrams from the server.
        socket.connect(server).map_err(net)?;
        socket.send(q.query).map_err(net)?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; UDP_BUFFER];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DnsError::Temporary(format!(
                    "{server}: no answer within {:?}",
                    self.timeout
                )));
            }
            socket.set_read_timeout(Some(left)).map_err(net)?;
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(net(e)),
            };
            let reply = &buf[..n];
            // Not our answer (stale, spoofed, garbage): keep waiting for
            // the real one rather than give up on this server.
            if let Err(e) = check_reply(reply, q.id, q.qname, q.qtype) {
                log::debug!("{server}: ignoring a datagram: {e}");
                continue;
            }
            return q.parse(reply);
        }
    }

    fn exchange_tcp(&self, server: SocketAddr, q: &Question) -> Result<Message, DnsError> {
        let net = |e: io::Error| DnsError::Temporary(format!("{server} (tcp): {e}"));
        let mut stream = TcpStream::connect_timeout(&server, self.timeout).map_err(net)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(net)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(net)?;
        // RFC 1035 4.2.2: each message is preceded by its 2-byte length.
        // A query is at most 12 + 255 + 4 bytes, so the length fits.
        let mut framed = (q.query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(q.query);
        stream.write_all(&framed).map_err(net)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).map_err(net)?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).map_err(net)?;
        q.parse(&reply)
    }
}

/// One try's question: the query as sent (with this try's id) and what the
/// answer must echo.
struct Question<'a> {
    query: &'a [u8],
    id: u16,
    qname: &'a str,
    qtype: u16,
}

impl Question<'_> {
    fn parse(&self, reply: &[u8]) -> Result<Message, DnsError> {
        parse_response(reply, self.id, self.qname, self.qtype)
    }
}
