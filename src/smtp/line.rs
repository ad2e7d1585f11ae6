//! A bounded, buffered reader for SMTP: lines with a hard length limit, exact
//! byte counts (BDAT), and DATA streamed up to its terminating dot. The buffer
//! never grows: memory stays the same whatever the peer sends.

use std::io::{self, Read, Write};

use crate::limits::COPY_BUFFER;
use crate::Error;

pub struct LineReader<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Where the DATA scanner is within the current line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DataState {
    LineStart,
    Middle,
    /// A CR inside a line; an LF next ends the line.
    MiddleCr,
    /// A dot at the start of a line.
    Dot,
    /// ".\r" at the start of a line; an LF next ends the message.
    DotCr,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: vec![0u8; COPY_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Build a reader that first returns `prefix` (bytes an earlier reader
    /// had buffered), then reads from `inner`.
    pub fn with_prefix(inner: R, prefix: &[u8]) -> Self {
        let mut r = Self::new(inner);
        assert!(
            prefix.len() <= r.buf.len(),
            "prefix fits: it came from a reader of the same size"
        );
        r.buf[..prefix.len()].copy_from_slice(prefix);
        r.end = prefix.len();
        r
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Give up the reader, returning the stream and whatever was buffered.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        let rest = self.buffered().to_vec();
        (self.inner, rest)
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Read more bytes into the buffer; returns how many (0 at EOF).
    fn fill(&mut self, what: &'static str) -> Result<usize, Error> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(what)(e)),
            }
        }
    }

    /// One line, up to and including its LF, at most `max` bytes. EOF before
    /// a full line is `Closed`. A bare CR is left for the caller to judge.
    pub fn read_line(&mut self, max: usize, what: &'static str) -> Result<Vec<u8>, Error> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = avail[scanned..].iter().position(|&b| b == b'\n') {
                let len = scanned + i + 1;
                if len > max {
                    return Err(Error::LineTooLong);
                }
                let line = avail[..len].to_vec();
                self.start += len;
                return Ok(line);
            }
            scanned = avail.len();
            if scanned >= max {
                return Err(Error::LineTooLong);
            }
            if self.fill(what)? == 0 {
                return Err(Error::Closed(what));
            }
        }
    }

    /// Copy exactly `n` bytes to `out` (a BDAT chunk).
    pub fn copy_exact(
        &mut self,
        mut n: u64,
        out: &mut dyn Write,
        what: &'static str,
    ) -> Result<(), Error> {
        while n > 0 {
            if self.start == self.end && self.fill(what)? == 0 {
                return Err(Error::Closed(what));
            }
            let take = (self.end - self.start).min(n.min(usize::MAX as u64) as usize);
            out.write_all(&self.buf[self.start..self.start + take])
                .map_err(Error::io("write"))?;
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Copy message data after a 354 up to and including the CRLF.CRLF that
    /// ends it, unchanged. With `forbid_bare`, a CR or LF that is not part of
    /// a CRLF pair is refused (SMTP smuggling defence) before it is passed on:
    /// the bytes before it have been written, the message is never finished.
    /// Returns the number of bytes copied.
    pub fn copy_data(
        &mut self,
        out: &mut dyn Write,
        forbid_bare: bool,
        what: &'static str,
    ) -> Result<u64, Error> {
        let mut state = DataState::LineStart;
        let mut total = 0u64;
        loop {
            if self.start == self.end && self.fill(what)? == 0 {
                return Err(Error::Closed(what));
            }
            let chunk = &self.buf[self.start..self.end];
            let mut done = None;
            let mut i = 0;
            while i < chunk.len() {
                if state == DataState::Middle {
                    // Inside a line only CR and LF change the state: skip to the next one.
                    match find_cr_or_lf(&chunk[i..]) {
                        Some(k) => i += k,
                        None => break,
                    }
                }
                let b = chunk[i];
                i += 1;
                let prev = state;
                state = match (state, b) {
                    (DataState::LineStart, b'.') => DataState::Dot,
                    (DataState::Dot, b'\r') => DataState::DotCr,
                    (DataState::DotCr, b'\n') => {
                        done = Some(i);
                        break;
                    }
                    (_, b'\r') => DataState::MiddleCr,
                    (DataState::MiddleCr, b'\n') => DataState::LineStart,
                    (_, _) => DataState::Middle,
                };
                // Bare: an LF not after a CR, or a CR not followed by an LF.
                let after_cr = matches!(prev, DataState::MiddleCr | DataState::DotCr);
                if forbid_bare && (b == b'\n') != after_cr {
                    out.write_all(&chunk[..i - 1]).map_err(Error::io("write"))?;
                    self.start += i - 1;
                    return Err(Error::BareNewline);
                }
            }
            let n = done.unwrap_or(chunk.len());
            out.write_all(&chunk[..n]).map_err(Error::io("write"))?;
            self.start += n;
            total += n as u64;
            if done.is_some() {
                return Ok(total);
            }
        }
    }
}

/// The index of the first CR or LF in `s`, eight bytes at a time (SWAR: a
/// byte equal to CR or LF becomes a zero byte after the XOR, and the classic
/// has-zero-byte test flags it; the lowest flag is always exact). No unsafe
/// code, no dependency; DATA is mostly long runs of bytes that are neither.
fn find_cr_or_lf(s: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const CR: u64 = LO * b'\r' as u64;
    const LF: u64 = LO * b'\n' as u64;
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        let (a, b) = (w ^ CR, w ^ LF);
        let m = (a.wrapping_sub(LO) & !a | b.wrapping_sub(LO) & !b) & HI;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|k| i + k)
}

/// True if the line has a CR or LF anywhere but in its final CRLF.
pub fn has_bare_newline(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    body.iter().any(|&b| b == b'\r' || b == b'\n') || !line.ends_with(b"\r\n")
}
