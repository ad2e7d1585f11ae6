//! The DNS wire format (RFC 1035): building a query, and parsing the reply
//! to it. Pure functions over bytes that never panic, whatever the bytes:
//! every slice goes through `bytes_at`, every name is bounded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::{malformed, DnsError};

/// Record types we ask for or follow.
pub const TYPE_A: u16 = 1;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_MX: u16 = 15;
pub const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

const HEADER_LEN: usize = 12;
/// RFC 1035 2.3.4: a name is at most 255 octets on the wire.
const MAX_NAME: usize = 255;
const MAX_LABEL: usize = 63;
/// Backward-only pointers already guarantee termination; this bounds the
/// work on a hostile packet further.
const MAX_POINTER_JUMPS: usize = 128;
const MAX_CNAME_HOPS: usize = 8;

const FLAG_QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const RCODE_MASK: u16 = 0x000f;

const RCODE_NOERROR: u8 = 0;
const RCODE_NXDOMAIN: u8 = 3;

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
}

pub(super) struct Header {
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
pub(super) fn check_reply(
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
    };
    if msg.truncated {
        return Ok(msg);
    }
    let (answers, pos) = read_records(buf, pos, h.ancount)?;
    // The other sections are of no use to us (the resolver is recursive),
    // but they are read all the same: a reply must parse to its end.
    let (_authority, pos) = read_records(buf, pos, h.nscount)?;
    let (_additional, _) = read_records(buf, pos, h.arcount)?;
    msg.answers = answers;
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
    pub(super) fn answers_for(&self, qtype: u16) -> Result<Vec<&RData>, DnsError> {
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
