//! The record layer: length-prefixed, encrypted and authenticated records with
//! implicit per-direction sequence numbers, in-band rekeying and an
//! authenticated close.
//!
//! ```text
//! record    = length(u32 BE) || body(length bytes) || tag(suite's tag length)
//! body      = seal(type(u8) || payload)
//! 1 <= length <= MAX_RECORD_PAYLOAD + 1, checked before any allocation
//! ```
//! The suite's [`Protection`] decides how `seal` works and what the tag covers
//! (for RSA-BLOWFISH: Blowfish-CTR, then HMAC-SHA1 over seq || length || body).

use std::fmt;
use std::io::{self, Read, Write};

use crate::limits::{MAX_RECORD_PAYLOAD, MAX_SEQUENCE, REKEY_SLACK};
use crate::schedule::{next_traffic, TrafficSecret};

pub const HEADER_LEN: usize = 4;
pub const MAX_BODY: usize = MAX_RECORD_PAYLOAD + 1;
/// Payload sealed into one write to the stream when the caller hands over that much.
const WRITE_BATCH: usize = 4 * MAX_RECORD_PAYLOAD;

/// The record types inside the encrypted body.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum RecordType {
    /// Application bytes (SMTP).
    Data = 1,
    /// Empty. The sender's next record is under the next key epoch.
    Rekey = 2,
    /// Empty. The sender will send nothing more: an orderly end.
    Close = 3,
}

/// How one suite protects one direction under one key epoch.
pub trait Protection: Send {
    fn tag_len(&self) -> usize;
    /// Bytes this key may protect before the sender must rekey.
    fn rekey_limit(&self) -> u64;
    /// Encrypt `body` in place and write the tag.
    fn seal(&mut self, seq: u64, header: &[u8; HEADER_LEN], body: &mut [u8], tag: &mut [u8]);
    /// Verify the tag (in constant time), then decrypt `body` in place.
    /// On `false` the body is unspecified and must not be used.
    fn open(&mut self, seq: u64, header: &[u8; HEADER_LEN], body: &mut [u8], tag: &[u8]) -> bool;
}

/// Makes a direction's protection for a key epoch from its traffic secret.
pub type ProtectionFactory = fn(&TrafficSecret) -> Box<dyn Protection>;

/// The one error every record failure turns into: the peer learns nothing
/// about which check failed.
pub fn record_error() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "record authentication failed")
}

/// One direction's key state, shared by the sealing and opening ends.
struct Direction {
    factory: ProtectionFactory,
    traffic: TrafficSecret,
    prot: Box<dyn Protection>,
    seq: u64,
    under_key: u64,
    /// A lower rekey threshold than the suite's (tests push data across many rekeys).
    limit: Option<u64>,
}

impl Direction {
    fn new(factory: ProtectionFactory, traffic: TrafficSecret) -> Self {
        let prot = factory(&traffic);
        Direction {
            factory,
            traffic,
            prot,
            seq: 0,
            under_key: 0,
            limit: None,
        }
    }

    fn next_seq(&mut self) -> io::Result<u64> {
        if self.seq >= MAX_SEQUENCE {
            return Err(record_error());
        }
        let s = self.seq;
        self.seq += 1;
        Ok(s)
    }

    fn rekey_limit(&self) -> u64 {
        self.limit.unwrap_or_else(|| self.prot.rekey_limit())
    }

    /// Rekey after `bytes` instead of the suite's limit (never above it).
    fn set_limit(&mut self, bytes: u64) {
        self.limit = Some(bytes.min(self.prot.rekey_limit()));
    }

    fn rekey(&mut self) {
        self.traffic = next_traffic(&self.traffic);
        self.prot = (self.factory)(&self.traffic);
        self.under_key = 0;
    }
}

/// The sending end of one direction.
pub struct Sealer(Direction);

impl Sealer {
    pub fn new(factory: ProtectionFactory, traffic: TrafficSecret) -> Self {
        Sealer(Direction::new(factory, traffic))
    }

    /// Rekey after `bytes` instead of the suite's limit (never raise it above).
    pub fn set_rekey_limit(&mut self, bytes: u64) {
        self.0.set_limit(bytes)
    }

    /// Append one sealed record to `out`, preceded by a Rekey record (and a key
    /// change) when this record would take the key past its limit.
    pub fn seal(&mut self, kind: RecordType, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        assert!(
            payload.len() <= MAX_RECORD_PAYLOAD,
            "caller splits payloads"
        );
        if kind == RecordType::Data && payload.is_empty() {
            // It would read as end of stream at the peer, which rejects it.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty Data record",
            ));
        }
        let body_len = payload.len() + 1;
        if self.0.under_key + body_len as u64 > self.0.rekey_limit() {
            self.seal_one(RecordType::Rekey, &[], out)?;
            self.0.rekey();
        }
        self.seal_one(kind, payload, out)
    }

    fn seal_one(&mut self, kind: RecordType, payload: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let seq = self.0.next_seq()?;
        let body_len = payload.len() + 1;
        let header = (body_len as u32).to_be_bytes();
        let tag_len = self.0.prot.tag_len();
        let start = out.len();
        out.extend_from_slice(&header);
        out.push(kind as u8);
        out.extend_from_slice(payload);
        out.resize(start + HEADER_LEN + body_len + tag_len, 0);
        let (body, tag) = out[start + HEADER_LEN..].split_at_mut(body_len);
        self.0.prot.seal(seq, &header, body, tag);
        self.0.under_key += body_len as u64;
        Ok(())
    }
}

/// What opening one record gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Application bytes, at `buf[1..len]` of the caller's buffer.
    Data(usize),
    /// The peer closed the stream in an orderly way.
    Close,
}

/// The receiving end of one direction.
pub struct Opener(Direction);

impl Opener {
    pub fn new(factory: ProtectionFactory, traffic: TrafficSecret) -> Self {
        Opener(Direction::new(factory, traffic))
    }

    /// Expect rekeys after `bytes` (must match the peer's sealer).
    pub fn set_rekey_limit(&mut self, bytes: u64) {
        self.0.set_limit(bytes)
    }

    /// Check a record header; returns the body length. Called before any allocation.
    pub fn body_len(header: &[u8; HEADER_LEN]) -> io::Result<usize> {
        let len = u32::from_be_bytes(*header) as usize;
        if len == 0 || len > MAX_BODY {
            return Err(record_error());
        }
        Ok(len)
    }

    /// Read records from `r` until one carries data or closes the stream.
    /// Rekey records are handled here. `buf` is reused across calls; on
    /// `Data(n)` the payload is `buf[1..n]`. A raw EOF is an error: only an
    /// authenticated Close ends a stream.
    pub fn read<R: Read>(&mut self, r: &mut R, buf: &mut Vec<u8>) -> io::Result<Opened> {
        loop {
            let mut header = [0u8; HEADER_LEN];
            r.read_exact(&mut header).map_err(truncation)?;
            let body_len = Self::body_len(&header)?;
            let total = body_len + self.0.prot.tag_len();
            buf.resize(total, 0);
            r.read_exact(&mut buf[..total]).map_err(truncation)?;
            if let Some(opened) = self.open(&header, &mut buf[..total])? {
                return Ok(opened);
            }
        }
    }

    /// Open one complete record (header already split off). `Ok(None)` means
    /// a Rekey record was processed. Pure: usable from a fuzz target.
    pub fn open(
        &mut self,
        header: &[u8; HEADER_LEN],
        record: &mut [u8],
    ) -> io::Result<Option<Opened>> {
        let body_len = Self::body_len(header)?;
        if record.len() != body_len + self.0.prot.tag_len() {
            return Err(record_error());
        }
        let seq = self.0.next_seq()?;
        let (body, tag) = record.split_at_mut(body_len);
        if !self.0.prot.open(seq, header, body, tag) {
            return Err(record_error());
        }
        self.0.under_key += body_len as u64;
        if self.0.under_key > self.0.rekey_limit() + REKEY_SLACK {
            return Err(record_error());
        }
        match body[0] {
            // An empty Data record would read as end of stream: only Close may end it.
            t if t == RecordType::Data as u8 && body_len > 1 => Ok(Some(Opened::Data(body_len))),
            t if t == RecordType::Rekey as u8 && body_len == 1 => {
                self.0.rekey();
                Ok(None)
            }
            t if t == RecordType::Close as u8 && body_len == 1 => Ok(Some(Opened::Close)),
            _ => Err(record_error()),
        }
    }
}

/// The marker inside the `io::Error` an encrypted reader returns when the
/// stream ends without its authenticated Close record. The core's
/// `Error::io` turns it into `Error::Truncated`, which is not an orderly end.
#[derive(Debug)]
pub struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("encrypted stream cut before its close record")
    }
}

impl std::error::Error for Truncated {}

fn truncation(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::UnexpectedEof, Truncated)
    } else {
        e
    }
}

/// Decrypting `Read` over a record stream.
pub struct RecordReader<R> {
    inner: R,
    opener: Opener,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    closed: bool,
}

impl<R: Read> RecordReader<R> {
    pub fn new(inner: R, opener: Opener) -> Self {
        RecordReader {
            inner,
            opener,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            closed: false,
        }
    }
}

impl<R: Read> Read for RecordReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end {
            if self.closed || out.is_empty() {
                return Ok(0);
            }
            match self.opener.read(&mut self.inner, &mut self.buf)? {
                Opened::Data(n) => {
                    self.pos = 1;
                    self.end = n;
                }
                Opened::Close => {
                    self.closed = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Encrypting `Write` over a record stream. Bytes are collected into records
/// of up to MAX_RECORD_PAYLOAD; `flush` seals what is pending.
pub struct RecordWriter<W> {
    inner: W,
    sealer: Sealer,
    pending: Vec<u8>,
    out: Vec<u8>,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(inner: W, sealer: Sealer) -> Self {
        RecordWriter {
            inner,
            sealer,
            pending: Vec::with_capacity(MAX_RECORD_PAYLOAD),
            out: Vec::with_capacity(MAX_RECORD_PAYLOAD + 128),
        }
    }

    fn seal_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.sealer
                .seal(RecordType::Data, &self.pending, &mut self.out)?;
            self.pending.clear();
        }
        Ok(())
    }

    fn write_out(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// Seal what is pending, send the authenticated Close record, flush.
    pub fn close(&mut self) -> io::Result<()> {
        self.seal_pending()?;
        self.sealer.seal(RecordType::Close, &[], &mut self.out)?;
        self.write_out()?;
        self.inner.flush()
    }

    /// Seal and send bytes as records right away, with `prefix` (e.g. a
    /// handshake message) in the same write, so they share one TCP segment.
    pub fn send_with_prefix(&mut self, prefix: &[u8], data: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(prefix);
        self.write_all(data)?;
        self.flush()
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for RecordWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.pending.is_empty() && data.len() >= MAX_RECORD_PAYLOAD {
            // Full records straight from the caller's buffer (no copy into
            // pending), up to WRITE_BATCH of them in one write to the stream.
            let mut used = 0;
            while data.len() - used >= MAX_RECORD_PAYLOAD && used < WRITE_BATCH {
                self.sealer.seal(
                    RecordType::Data,
                    &data[used..used + MAX_RECORD_PAYLOAD],
                    &mut self.out,
                )?;
                used += MAX_RECORD_PAYLOAD;
            }
            self.write_out()?;
            return Ok(used);
        }
        let n = data.len().min(MAX_RECORD_PAYLOAD - self.pending.len());
        self.pending.extend_from_slice(&data[..n]);
        if self.pending.len() == MAX_RECORD_PAYLOAD {
            self.seal_pending()?;
            self.write_out()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.seal_pending()?;
        self.write_out()?;
        self.inner.flush()
    }
}
