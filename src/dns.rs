//! A small synchronous DNS client: MX and A/AAAA lookups for the mailer.
//!
//! The mailer needs MX records, which std's resolver (getaddrinfo) cannot
//! give, and the little it needs (one question, UDP with TCP fallback, MX,
//! A, AAAA, CNAME) is small enough to own rather than pull in a resolver
//! crate. Layout:
//!
//! * the wire format (RFC 1035): pure functions over `&[u8]` that never
//!   panic, whatever the bytes; [`fuzz_parse`] runs them for a fuzz target;
//! * [`Resolver`]: sends a query to each nameserver in turn over UDP, again
//!   over TCP when the answer was truncated;
//! * [`resolve_targets`]: turns sendmail's `$h` into the ordered list of
//!   addresses the mailer will try (RFC 5321 section 5.1).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;

/// Record types we ask for or follow.
pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const HEADER_LEN: usize = 12;
/// Without EDNS0 a server sends at most 512 bytes over UDP; the bigger
/// buffer costs nothing and tolerates servers that send more anyway.
const UDP_BUFFER: usize = 4096;
/// RFC 1035 2.3.4: a name is at most 255 octets on the wire.
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Backward-only pointers already guarantee termination; this bounds the
/// work on a hostile packet further.
const MAX_POINTER_JUMPS: usize = 128;
const MAX_CNAME_HOPS: usize = 8;
/// Rounds over the nameserver list, like resolv.conf's `attempts:2`.
const DEFAULT_ATTEMPTS: u32 = 2;
const DNS_PORT: u16 = 53;

const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const RCODE_MASK: u16 = 0x000f;

const RCODE_NOERROR: u8 = 0;
const RCODE_NXDOMAIN: u8 = 3;

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

fn malformed(why: &str) -> DnsError {
    DnsError::Malformed(why.to_string())
}

/// A name or address literal that can never resolve: permanent, and the
/// reason goes to the log since `NxDomain` carries none.
fn invalid(what: &str, why: &str) -> DnsError {
    log::warn!("invalid destination {what:?}: {why}");
    DnsError::NxDomain
}

// ---------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------

/// One resource record. Names are dotted, without the trailing dot, with
/// `.`, `\` and non-printable bytes inside a label escaped as `\DDD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    /// An exchange of `""` is the root, as in a null MX.
    Mx {
        preference: u16,
        exchange: String,
    },
    /// A type (or class) we have no use for; its data is skipped.
    Other,
}

/// A reply that matched our query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub rcode: u8,
    /// TC=1: the records were cut off and are not parsed; ask over TCP.
    pub truncated: bool,
    /// The name we asked for, without a trailing dot.
    pub qname: String,
    pub answers: Vec<Record>,
    pub additional: Vec<Record>,
}

struct Header {
    id: u16,
    flags: u16,
    qdcount: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
}

/// `len` bytes at `pos`, or an error: the one place the parser slices.
fn bytes_at(buf: &[u8], pos: usize, len: usize) -> Result<&[u8], DnsError> {
    pos.checked_add(len)
        .and_then(|end| buf.get(pos..end))
        .ok_or_else(|| malformed("packet ends too early"))
}

fn u16_at(buf: &[u8], pos: usize) -> Result<u16, DnsError> {
    let b = bytes_at(buf, pos, 2)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(buf: &[u8], pos: usize) -> Result<u32, DnsError> {
    let b = bytes_at(buf, pos, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_header(buf: &[u8]) -> Result<Header, DnsError> {
    Ok(Header {
        id: u16_at(buf, 0)?,
        flags: u16_at(buf, 2)?,
        qdcount: u16_at(buf, 4)?,
        ancount: u16_at(buf, 6)?,
        nscount: u16_at(buf, 8)?,
        arcount: u16_at(buf, 10)?,
    })
}

/// Appends a label in presentation form. Escaping only what would be
/// ambiguous keeps every name [`encode_name`] accepts identical to its
/// decoded form, so question echoes compare as plain strings.
fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("\\{b:03}"));
        }
    }
}

/// Reads a possibly compressed name at `pos`. Returns it (`""` for the root)
/// and the offset just past it where it started, which is past the first
/// pointer if there was one.
pub fn read_name(buf: &[u8], pos: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut wire_len = 1; // the final zero octet
    let mut cur = pos;
    // Each pointer must go below the start of the run of labels it ends, so
    // the offsets strictly decrease and a loop is impossible.
    let mut run_start = pos;
    let mut jumps = 0;
    let mut end = None;
    loop {
        let len = *buf
            .get(cur)
            .ok_or_else(|| malformed("name runs past the end"))?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok((name, end.unwrap_or(cur + 1))),
            0x00 => {
                let len = usize::from(len);
                let label = bytes_at(buf, cur + 1, len)?;
                wire_len += len + 1;
                if wire_len > MAX_NAME {
                    return Err(malformed("name longer than 255 octets"));
                }
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                cur += 1 + len;
            }
            0xc0 => {
                let low = *buf
                    .get(cur + 1)
                    .ok_or_else(|| malformed("name runs past the end"))?;
                let target = (usize::from(len & 0x3f) << 8) | usize::from(low);
                if target >= run_start {
                    return Err(malformed("compression pointer does not point backwards"));
                }
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS {
                    return Err(malformed("too many compression pointers"));
                }
                end.get_or_insert(cur + 2);
                cur = target;
                run_start = target;
            }
            _ => return Err(malformed("unknown label type")),
        }
    }
}

/// Appends `name` (dotted, optional trailing dot) in wire form. Accepts
/// printable ASCII labels only: what reaches us is a mail domain, already
/// in A-label form if internationalised.
fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty name".into());
    }
    let start = out.len();
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label".into());
        }
        if label.len() > MAX_LABEL {
            return Err("label longer than 63 octets".into());
        }
        if !label.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') {
            return Err("unexpected character in name".into());
        }
        out.push(label.len() as u8); // <= 63, checked above
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > MAX_NAME {
        return Err("name longer than 255 octets".into());
    }
    Ok(())
}

/// A standard query with RD=1 and one question, class IN.
pub fn build_query(id: u16, qname: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(HEADER_LEN + MAX_NAME + 4);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&FLAG_RD.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    encode_name(qname, &mut q)?;
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn same_name(a: &str, b: &str) -> bool {
    a.strip_suffix('.')
        .unwrap_or(a)
        .eq_ignore_ascii_case(b.strip_suffix('.').unwrap_or(b))
}

/// Checks that `buf` is a reply to our query (id, QR, opcode, question
/// echo) and returns its header and the offset of the answer section.
/// Anything that fails here is not ours, and the UDP loop keeps waiting.
fn check_reply(
    buf: &[u8],
    expect_id: u16,
    qname: &str,
    qtype: u16,
) -> Result<(Header, usize), DnsError> {
    let h = read_header(buf)?;
    if h.id != expect_id {
        return Err(malformed("reply id does not match the query"));
    }
    if h.flags & FLAG_QR == 0 || h.flags & OPCODE_MASK != 0 {
        return Err(malformed("not a reply to a standard query"));
    }
    let rcode = (h.flags & RCODE_MASK) as u8;
    // Some servers echo no question in an error reply. Accept that only for
    // errors that merely make us try elsewhere, never for NOERROR or
    // NXDOMAIN, which would be trusted.
    if h.qdcount == 0 && rcode != RCODE_NOERROR && rcode != RCODE_NXDOMAIN {
        return Ok((h, HEADER_LEN));
    }
    if h.qdcount != 1 {
        return Err(malformed("reply does not carry exactly one question"));
    }
    let (name, pos) = read_name(buf, HEADER_LEN)?;
    let rtype = u16_at(buf, pos)?;
    let class = u16_at(buf, pos + 2)?;
    if rtype != qtype || class != CLASS_IN || !same_name(&name, qname) {
        return Err(malformed("reply question does not match the query"));
    }
    Ok((h, pos + 4))
}

fn read_record(buf: &[u8], pos: usize) -> Result<(Record, usize), DnsError> {
    let (name, pos) = read_name(buf, pos)?;
    let rtype = u16_at(buf, pos)?;
    let class = u16_at(buf, pos + 2)?;
    let ttl = u32_at(buf, pos + 4)?;
    let rdlen = usize::from(u16_at(buf, pos + 8)?);
    let start = pos + 10;
    let rdata = bytes_at(buf, start, rdlen)?;
    let end = start + rdlen;
    // A name inside RDATA may be compressed, so it is read from the whole
    // packet, and must end exactly where RDATA ends.
    let name_filling = |at: usize| -> Result<String, DnsError> {
        match read_name(buf, at)? {
            (n, e) if e == end => Ok(n),
            _ => Err(malformed("name does not fill the record data")),
        }
    };
    let data = match (class, rtype) {
        (CLASS_IN, TYPE_A) => {
            let b: [u8; 4] = rdata
                .try_into()
                .map_err(|_| malformed("A record not 4 bytes"))?;
            RData::A(Ipv4Addr::from(b))
        }
        (CLASS_IN, TYPE_AAAA) => {
            let b: [u8; 16] = rdata
                .try_into()
                .map_err(|_| malformed("AAAA record not 16 bytes"))?;
            RData::Aaaa(Ipv6Addr::from(b))
        }
        (CLASS_IN, TYPE_CNAME) => RData::Cname(name_filling(start)?),
        (CLASS_IN, TYPE_MX) => RData::Mx {
            preference: u16_at(rdata, 0)?,
            exchange: name_filling(start + 2)?,
        },
        _ => RData::Other,
    };
    let record = Record {
        name,
        rtype,
        class,
        ttl,
        data,
    };
    Ok((record, end))
}

fn read_records(buf: &[u8], mut pos: usize, count: u16) -> Result<(Vec<Record>, usize), DnsError> {
    let mut records = Vec::new();
    for _ in 0..count {
        let (record, next) = read_record(buf, pos)?;
        records.push(record);
        pos = next;
    }
    Ok((records, pos))
}

/// Parses a reply to the query `expect_id`/`qname`/`qtype`. Checks that it
/// is one (id, QR bit, question echo) before reading any record. A
/// truncated reply (TC=1) comes back with no records: they may be cut off.
/// The RCODE is returned, not judged: see [`Message::check_rcode`].
pub fn parse_response(
    buf: &[u8],
    expect_id: u16,
    qname: &str,
    qtype: u16,
) -> Result<Message, DnsError> {
    let (h, pos) = check_reply(buf, expect_id, qname, qtype)?;
    let mut msg = Message {
        id: h.id,
        rcode: (h.flags & RCODE_MASK) as u8,
        truncated: h.flags & FLAG_TC != 0,
        qname: qname.strip_suffix('.').unwrap_or(qname).to_string(),
        answers: Vec::new(),
        additional: Vec::new(),
    };
    if msg.truncated {
        return Ok(msg);
    }
    let (answers, pos) = read_records(buf, pos, h.ancount)?;
    let (_authority, pos) = read_records(buf, pos, h.nscount)?;
    let (additional, _) = read_records(buf, pos, h.arcount)?;
    msg.answers = answers;
    msg.additional = additional;
    Ok(msg)
}

impl Message {
    /// NOERROR passes; NXDOMAIN is permanent; anything else (SERVFAIL,
    /// REFUSED, ...) is this server's trouble.
    pub fn check_rcode(&self) -> Result<(), DnsError> {
        match self.rcode {
            RCODE_NOERROR => Ok(()),
            RCODE_NXDOMAIN => Err(DnsError::NxDomain),
            rcode => {
                let name = match rcode {
                    1 => "FORMERR".to_string(),
                    2 => "SERVFAIL".to_string(),
                    4 => "NOTIMP".to_string(),
                    5 => "REFUSED".to_string(),
                    other => format!("RCODE {other}"),
                };
                Err(DnsError::Temporary(format!("{name} for {}", self.qname)))
            }
        }
    }

    /// The answers of type `qtype` for our name, following a CNAME chain
    /// inside the answer section (recursive servers put the whole chain
    /// there). Empty when the chain ends without such records (NODATA).
    pub fn answers_for(&self, qtype: u16) -> Result<Vec<&RData>, DnsError> {
        let mut name = self.qname.as_str();
        for _ in 0..=MAX_CNAME_HOPS {
            let owned_by = |r: &&Record| r.class == CLASS_IN && same_name(&r.name, name);
            let found: Vec<&RData> = self
                .answers
                .iter()
                .filter(owned_by)
                .filter(|r| r.rtype == qtype)
                .map(|r| &r.data)
                .collect();
            if !found.is_empty() {
                return Ok(found);
            }
            let next = self
                .answers
                .iter()
                .filter(owned_by)
                .find_map(|r| match &r.data {
                    RData::Cname(target) => Some(target.as_str()),
                    _ => None,
                });
            match next {
                Some(target) => name = target,
                None => return Ok(found),
            }
        }
        Err(malformed("CNAME chain longer than 8"))
    }
}

// ---------------------------------------------------------------------------
// Answers
// ---------------------------------------------------------------------------

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
pub fn order_mx(hosts: &mut [MxHost]) {
    hosts.sort_by_key(|h| h.preference);
    let mut rng = rand::rng();
    for run in hosts.chunk_by_mut(|a, b| a.preference == b.preference) {
        run.shuffle(&mut rng);
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

/// The addresses in a NOERROR reply to an A or AAAA query.
pub fn addresses(msg: &Message, qtype: u16) -> Result<Vec<IpAddr>, DnsError> {
    Ok(msg
        .answers_for(qtype)?
        .into_iter()
        .filter_map(|data| match data {
            RData::A(a) => Some(IpAddr::V4(*a)),
            RData::Aaaa(a) => Some(IpAddr::V6(*a)),
            _ => None,
        })
        .collect())
}

/// Runs the whole parser on arbitrary bytes for a fuzz target. Uses the
/// packet's own id and question so the parse gets past the reply checks.
pub fn fuzz_parse(buf: &[u8]) {
    let Ok(h) = read_header(buf) else { return };
    let (qname, qtype) = match read_name(buf, HEADER_LEN) {
        Ok((name, pos)) => (name, u16_at(buf, pos).unwrap_or(TYPE_MX)),
        Err(_) => ("example.com".to_string(), TYPE_MX),
    };
    if let Ok(msg) = parse_response(buf, h.id, &qname, qtype) {
        let _ = msg.check_rcode();
        let _ = mx_answer(&msg);
        let _ = addresses(&msg, qtype);
    }
}

// ---------------------------------------------------------------------------
// Resolver
// ---------------------------------------------------------------------------

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

    pub fn lookup_mx(&self, domain: &str) -> Result<MxAnswer, DnsError> {
        mx_answer(&self.query(domain, TYPE_MX)?)
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
    fn query(&self, qname: &str, qtype: u16) -> Result<Message, DnsError> {
        let mut query = build_query(0, qname, qtype).map_err(|why| invalid(qname, &why))?;
        let mut last = DnsError::Temporary("no nameservers configured".into());
        for _ in 0..self.attempts {
            for &server in &self.nameservers {
                // A fresh id per try, so a late reply to an earlier try
                // cannot be taken for this one.
                let id = rand::random::<u16>();
                query[..2].copy_from_slice(&id.to_be_bytes());
                let result = self
                    .exchange(server, &query, id, qname, qtype)
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
    fn exchange(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        qname: &str,
        qtype: u16,
    ) -> Result<Message, DnsError> {
        let msg = self.exchange_udp(server, query, id, qname, qtype)?;
        if !msg.truncated {
            return Ok(msg);
        }
        log::debug!("{server}: truncated UDP answer for {qname}, asking over TCP");
        let msg = self.exchange_tcp(server, query, id, qname, qtype)?;
        if msg.truncated {
            return Err(malformed("truncated answer over TCP"));
        }
        Ok(msg)
    }

    fn exchange_udp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        qname: &str,
        qtype: u16,
    ) -> Result<Message, DnsError> {
        let net = |e: io::Error| DnsError::Temporary(format!("{server} (udp): {e}"));
        let local = match server {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let socket = UdpSocket::bind(local).map_err(net)?;
        // A connected socket only receives datagrams from the server.
        socket.connect(server).map_err(net)?;
        socket.send(query).map_err(net)?;
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
            if let Err(e) = check_reply(reply, id, qname, qtype) {
                log::debug!("{server}: ignoring a datagram: {e}");
                continue;
            }
            return parse_response(reply, id, qname, qtype);
        }
    }

    fn exchange_tcp(
        &self,
        server: SocketAddr,
        query: &[u8],
        id: u16,
        qname: &str,
        qtype: u16,
    ) -> Result<Message, DnsError> {
        let net = |e: io::Error| DnsError::Temporary(format!("{server} (tcp): {e}"));
        let mut stream = TcpStream::connect_timeout(&server, self.timeout).map_err(net)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(net)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(net)?;
        // RFC 1035 4.2.2: each message is preceded by its 2-byte length.
        // A query is at most 12 + 255 + 4 bytes, so the length fits.
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream.write_all(&framed).map_err(net)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).map_err(net)?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut reply).map_err(net)?;
        parse_response(&reply, id, qname, qtype)
    }
}

// ---------------------------------------------------------------------------
// Delivery targets
// ---------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u16 = 0x1234;

    /// Builds a reply by hand: header, the question, then records whose
    /// names and RDATA are given as raw wire bytes.
    struct Reply {
        flags: u16,
        qname: Vec<u8>,
        qtype: u16,
        answers: Vec<Vec<u8>>,
    }

    fn wire(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        encode_name(name, &mut out).unwrap();
        out
    }

    fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
        let mut r = owner.to_vec();
        r.extend_from_slice(&rtype.to_be_bytes());
        r.extend_from_slice(&CLASS_IN.to_be_bytes());
        r.extend_from_slice(&300u32.to_be_bytes());
        r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        r.extend_from_slice(rdata);
        r
    }

    fn mx_rdata(pref: u16, exchange: &[u8]) -> Vec<u8> {
        [&pref.to_be_bytes()[..], exchange].concat()
    }

    /// A pointer to the question name, at offset 12.
    const QPTR: [u8; 2] = [0xc0, 0x0c];

    impl Reply {
        fn new(qname: &str, qtype: u16) -> Reply {
            Reply {
                flags: 0x8180, // QR, RD, RA, NOERROR
                qname: wire(qname),
                qtype,
                answers: Vec::new(),
            }
        }
        fn answer(mut self, record: Vec<u8>) -> Reply {
            self.answers.push(record);
            self
        }
        fn bytes(&self) -> Vec<u8> {
            let mut b = ID.to_be_bytes().to_vec();
            b.extend_from_slice(&self.flags.to_be_bytes());
            b.extend_from_slice(&[0, 1]);
            b.extend_from_slice(&(self.answers.len() as u16).to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 0]);
            b.extend_from_slice(&self.qname);
            b.extend_from_slice(&self.qtype.to_be_bytes());
            b.extend_from_slice(&CLASS_IN.to_be_bytes());
            for a in &self.answers {
                b.extend_from_slice(a);
            }
            b
        }
    }

    /// example.com MX: three hosts, all names compressed against the
    /// question, written out byte by byte.
    fn three_mx() -> Vec<u8> {
        let mut p = vec![
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0, // header
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // @12
            0, 15, 0, 1, // QTYPE MX, QCLASS IN
        ];
        for (pref, label) in [(20u16, b"mxc"), (5, b"mxa"), (10, b"mxb")] {
            p.extend_from_slice(&[0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0x0e, 0x10, 0, 8]);
            p.extend_from_slice(&pref.to_be_bytes());
            p.push(3);
            p.extend_from_slice(label);
            p.extend_from_slice(&[0xc0, 0x0c]);
        }
        p
    }

    fn hosts(answer: MxAnswer) -> Vec<(u16, String)> {
        match answer {
            MxAnswer::Hosts(h) => h.into_iter().map(|h| (h.preference, h.host)).collect(),
            other => panic!("expected hosts, got {other:?}"),
        }
    }

    #[test]
    fn mx_sorted_by_preference_with_compression() {
        let msg = parse_response(&three_mx(), ID, "example.com", TYPE_MX).unwrap();
        assert_eq!(msg.answers.len(), 3);
        assert_eq!(
            hosts(mx_answer(&msg).unwrap()),
            [
                (5, "mxa.example.com".to_string()),
                (10, "mxb.example.com".to_string()),
                (20, "mxc.example.com".to_string()),
            ]
        );
    }

    #[test]
    fn question_echo_is_case_insensitive_and_trailing_dot_optional() {
        assert!(parse_response(&three_mx(), ID, "EXAMPLE.Com.", TYPE_MX).is_ok());
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let reply = Reply::new("example.com", TYPE_MX)
            .answer(rr(&QPTR, TYPE_MX, &mx_rdata(10, &wire("b.example"))))
            .answer(rr(&QPTR, TYPE_MX, &mx_rdata(10, &wire("a.example"))))
            .answer(rr(&QPTR, TYPE_MX, &mx_rdata(1, &wire("first.example"))))
            .bytes();
        let msg = parse_response(&reply, ID, "example.com", TYPE_MX).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let h = hosts(mx_answer(&msg).unwrap());
            assert_eq!(h[0].1, "first.example");
            seen.insert(h[1].1.clone());
        }
        assert_eq!(seen.len(), 2, "both orders of the equal pair should appear");
    }

    #[test]
    fn every_prefix_of_a_valid_reply_is_an_error() {
        let full = three_mx();
        for len in 0..full.len() {
            assert!(
                parse_response(&full[..len], ID, "example.com", TYPE_MX).is_err(),
                "prefix of {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn mutated_replies_never_panic() {
        let full = three_mx();
        for i in 0..full.len() {
            for v in [0x00, 0x01, 0x3f, 0x40, 0x80, 0xc0, 0xc1, 0xff] {
                let mut p = full.clone();
                p[i] = v;
                fuzz_parse(&p);
                let _ = parse_response(&p, ID, "example.com", TYPE_MX);
            }
        }
        fuzz_parse(&[]);
        fuzz_parse(&[0xff; 600]);
    }

    #[test]
    fn wrong_id_qr_or_question_rejected() {
        let good = three_mx();
        assert!(parse_response(&good, ID ^ 1, "example.com", TYPE_MX).is_err());
        assert!(parse_response(&good, ID, "example.org", TYPE_MX).is_err());
        assert!(parse_response(&good, ID, "example.com", TYPE_A).is_err());
        let mut query_not_reply = good.clone();
        query_not_reply[2] &= 0x7f; // clear QR
        assert!(parse_response(&query_not_reply, ID, "example.com", TYPE_MX).is_err());
        let mut two_questions = good;
        two_questions[5] = 2;
        assert!(parse_response(&two_questions, ID, "example.com", TYPE_MX).is_err());
    }

    #[test]
    fn pointer_loops_and_forward_pointers_rejected() {
        // A pointer to itself.
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[0xc0, 12]);
        assert!(read_name(&buf, 12).is_err());
        // Two names pointing at each other: 12 -> 16 is forward.
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&[1, b'a', 0xc0, 16, 1, b'b', 0xc0, 12]);
        assert!(read_name(&buf, 12).is_err());
        assert!(read_name(&buf, 16).is_err());
        // A backward pointer (20 -> 14) whose labels run into a pointer
        // back to 14 itself: backward from where it sits, but a loop.
        let mut buf = vec![0u8; 14];
        buf.extend_from_slice(&[1, b'x', 0xc0, 14, 0, 0, 0xc0, 14]);
        assert!(read_name(&buf, 20).is_err());
        // Reserved label types.
        assert!(read_name(&[0x40, 0], 0).is_err());
        assert!(read_name(&[0x80, 0], 0).is_err());
    }

    #[test]
    fn pointer_chains_and_name_length() {
        // "a" + pointer to "b" + pointer to "example.com" at 12.
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&wire("example.com")); // 12..25
        buf.extend_from_slice(&[1, b'b', 0xc0, 12]); // 25
        buf.extend_from_slice(&[1, b'a', 0xc0, 25]); // 29
        assert_eq!(read_name(&buf, 29).unwrap(), ("a.b.example.com".into(), 33));
        // 5 x 63-octet labels = 320 octets: too long.
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.push(0);
        assert!(read_name(&long, 0).is_err());
        assert!(build_query(1, &vec!["x".repeat(63); 5].join("."), TYPE_A).is_err());
        assert!(build_query(1, &"x".repeat(64), TYPE_A).is_err());
        assert!(build_query(1, "a..b", TYPE_A).is_err());
    }

    #[test]
    fn odd_bytes_in_labels_are_escaped() {
        let buf = [3, b'a', b'.', 0, 0];
        assert_eq!(read_name(&buf, 0).unwrap().0, "a\\046\\000");
    }

    #[test]
    fn null_mx_detected() {
        let reply = Reply::new("null.test", TYPE_MX)
            .answer(rr(&QPTR, TYPE_MX, &mx_rdata(0, &[0])))
            .bytes();
        let msg = parse_response(&reply, ID, "null.test", TYPE_MX).unwrap();
        assert_eq!(mx_answer(&msg).unwrap(), MxAnswer::NullMx);
    }

    #[test]
    fn no_mx_is_implicit() {
        let reply = Reply::new("plain.test", TYPE_MX).bytes();
        let msg = parse_response(&reply, ID, "plain.test", TYPE_MX).unwrap();
        assert_eq!(mx_answer(&msg).unwrap(), MxAnswer::NoMx);
    }

    #[test]
    fn rcodes() {
        let mut reply = Reply::new("gone.test", TYPE_A);
        reply.flags = 0x8183;
        let msg = parse_response(&reply.bytes(), ID, "gone.test", TYPE_A).unwrap();
        assert_eq!(msg.check_rcode(), Err(DnsError::NxDomain));
        assert!(DnsError::NxDomain.is_permanent());
        reply.flags = 0x8182;
        let msg = parse_response(&reply.bytes(), ID, "gone.test", TYPE_A).unwrap();
        assert!(matches!(msg.check_rcode(), Err(DnsError::Temporary(_))));
    }

    #[test]
    fn truncated_reply_flagged_without_records() {
        let mut reply = three_mx();
        reply[2] |= 0x02; // TC
        reply.truncate(reply.len() - 5); // and really cut off
        let msg = parse_response(&reply, ID, "example.com", TYPE_MX).unwrap();
        assert!(msg.truncated);
        assert!(msg.answers.is_empty());
    }

    #[test]
    fn cname_chain_followed() {
        // www.test CNAME a.test, a.test CNAME b.test, b.test A 192.0.2.7,
        // plus an unrelated A record that must not be picked up.
        let reply = Reply::new("www.test", TYPE_A)
            .answer(rr(&QPTR, TYPE_CNAME, &wire("a.test")))
            .answer(rr(&wire("other.test"), TYPE_A, &[198, 51, 100, 1]))
            .answer(rr(&wire("A.TEST"), TYPE_CNAME, &wire("b.test")))
            .answer(rr(&wire("b.test"), TYPE_A, &[192, 0, 2, 7]))
            .bytes();
        let msg = parse_response(&reply, ID, "www.test", TYPE_A).unwrap();
        assert_eq!(
            addresses(&msg, TYPE_A).unwrap(),
            [IpAddr::from([192, 0, 2, 7])]
        );
    }

    #[test]
    fn cname_loop_rejected() {
        let reply = Reply::new("a.test", TYPE_A)
            .answer(rr(&QPTR, TYPE_CNAME, &wire("b.test")))
            .answer(rr(&wire("b.test"), TYPE_CNAME, &wire("a.test")))
            .bytes();
        let msg = parse_response(&reply, ID, "a.test", TYPE_A).unwrap();
        assert!(addresses(&msg, TYPE_A).is_err());
    }

    #[test]
    fn bad_rdata_rejected() {
        let short_a = Reply::new("a.test", TYPE_A)
            .answer(rr(&QPTR, TYPE_A, &[1, 2, 3]))
            .bytes();
        assert!(parse_response(&short_a, ID, "a.test", TYPE_A).is_err());
        // MX whose exchange name runs beyond its RDLENGTH.
        let mut mx = rr(&QPTR, TYPE_MX, &mx_rdata(1, &wire("mx.test")));
        let rdlen_at = mx.len() - 12; // low byte of RDLENGTH, before 11 bytes of RDATA
        mx[rdlen_at] -= 1;
        let reply = Reply::new("a.test", TYPE_MX).answer(mx).bytes();
        assert!(parse_response(&reply, ID, "a.test", TYPE_MX).is_err());
    }

    #[test]
    fn address_literals() {
        assert_eq!(
            parse_destination("[192.0.2.1]").unwrap(),
            Destination::Literal(IpAddr::from([192, 0, 2, 1]))
        );
        assert_eq!(
            parse_destination("[IPv6:::1]").unwrap(),
            Destination::Literal(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(
            parse_destination("[ipv6:2001:db8::1]").unwrap(),
            Destination::Literal("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_destination("[mail.example.com]").unwrap(),
            Destination::Host("mail.example.com".into())
        );
        assert_eq!(
            parse_destination("example.com").unwrap(),
            Destination::Domain("example.com".into())
        );
        for bad in [
            "[300.1.1.1]",
            "[1.2.3]",
            "[IPv6:zz::1]",
            "[foo:bar]",
            "[]",
            "[1.2.3.4",
            "",
        ] {
            assert_eq!(parse_destination(bad), Err(DnsError::NxDomain), "{bad}");
        }
    }

    #[test]
    fn literal_targets_need_no_dns() {
        // No nameserver at all: any DNS query would fail.
        let resolver = Resolver::with_servers(Vec::new(), Duration::from_millis(10));
        let t = resolve_targets(&resolver, "[IPv6:2001:db8::1]", 25).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].addr, "[2001:db8::1]:25".parse().unwrap());
        assert!(resolve_targets(&resolver, "[300.1.1.1]", 25)
            .unwrap_err()
            .is_permanent());
        assert!(!resolve_targets(&resolver, "example.com", 25)
            .unwrap_err()
            .is_permanent());
    }

    #[test]
    fn resolv_conf_parsing() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.53\n\
                    nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver\n";
        assert_eq!(
            parse_resolv_conf(text),
            [
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap()
            ]
        );
        let none = Resolver::from_resolv_conf(
            Path::new("/nonexistent/resolv.conf"),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            none.nameservers,
            ["127.0.0.1:53".parse::<SocketAddr>().unwrap()]
        );
    }
}
