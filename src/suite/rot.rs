//! ROTn channel: every byte after the switch has its ASCII letters rotated,
//! with no other framing, so a person can read and replay a session.

use std::io::{self, Read, Write};

use crate::crypto::rot::{rotate, unrotate};

pub struct RotReader<R> {
    inner: R,
    n: u8,
}

impl<R> RotReader<R> {
    pub fn new(inner: R, n: u8) -> Self {
        RotReader { inner, n }
    }
}

impl<R: Read> Read for RotReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let got = self.inner.read(buf)?;
        unrotate(&mut buf[..got], self.n);
        Ok(got)
    }
}

pub struct RotWriter<W> {
    inner: W,
    n: u8,
    scratch: Vec<u8>,
}

impl<W> RotWriter<W> {
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    pub fn new(inner: W, n: u8) -> Self {
        RotWriter {
            inner,
            n,
            scratch: Vec::new(),
        }
    }
}

impl<W: Write> Write for RotWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.scratch.clear();
        self.scratch.extend_from_slice(buf);
        rotate(&mut self.scratch, self.n);
        self.inner.write_all(&self.scratch)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
