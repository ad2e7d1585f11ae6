//! The lock-step SMTP relay both programs run: one command from the client
//! side, forwarded; one reply from the server side, returned. DATA is streamed
//! up to its dot, BDAT chunks by count, and after an accepted STARTTLS the
//! relay becomes a plain byte pipe with a thread per direction.
//!
//! "Client side" is whoever sends commands (the remote client for inbound,
//! sendmail for outbound); "server side" is whoever answers them.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::channel::{BoxRead, BoxSink};
use crate::limits::MAX_LINE;
use crate::smtp::command::{bdat_args, verb};
use crate::smtp::reply::read_reply;
use crate::smtp::{LineReader, Reply, Verb};
use crate::Error;

/// One end of the relay.
pub struct Peer {
    pub reader: LineReader<BoxRead>,
    pub writer: BoxSink,
    pub name: &'static str,
}

impl Peer {
    pub fn new(reader: BoxRead, writer: BoxSink, name: &'static str) -> Self {
        Peer {
            reader: LineReader::new(reader),
            writer,
            name,
        }
    }

    /// Write and flush at once: the peer is waiting for it.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer.write_all(bytes).map_err(Error::io(self.name))?;
        self.writer.flush().map_err(Error::io(self.name))
    }

    pub fn send_reply(&mut self, reply: &Reply) -> Result<(), Error> {
        self.send(&reply.to_bytes())
    }

    pub fn read_line(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        self.reader.read_line(max, self.name)
    }

    pub fn read_reply(&mut self) -> Result<Reply, Error> {
        read_reply(&mut self.reader, self.name)
    }

    /// End our sending half in the way the channel defines (Close record, FIN).
    pub fn close(&mut self) {
        let _ = self.writer.close();
    }

    /// The orderly end after QUIT: close our half, then read what the peer
    /// still sends until its own end (its Close record or FIN), so no byte is
    /// left unread and the connection ends without a reset. Bounded in bytes;
    /// the stream's deadline bounds the time.
    pub fn finish(&mut self) {
        self.close();
        let (r, _) = detached();
        let (reader, _) = std::mem::replace(&mut self.reader, r).into_parts();
        let _ = io::copy(&mut reader.take(1 << 20), &mut io::sink());
    }

    /// Take the raw streams out (at the switch to encryption), with the bytes
    /// the reader had buffered, leaving placeholders until `replace`.
    pub fn take_streams(&mut self) -> (BoxRead, Vec<u8>, BoxSink) {
        let (r, w) = detached();
        let (reader, writer) = self.replace(r, w);
        let (raw, rest) = reader.into_parts();
        (raw, rest, writer)
    }

    /// Swap the streams under this peer (at the switch to encryption).
    pub fn replace(
        &mut self,
        reader: LineReader<BoxRead>,
        writer: BoxSink,
    ) -> (LineReader<BoxRead>, BoxSink) {
        let old_r = std::mem::replace(&mut self.reader, reader);
        let old_w = std::mem::replace(&mut self.writer, writer);
        (old_r, old_w)
    }
}

/// A placeholder pair used while a peer's streams are being rebuilt.
pub fn detached() -> (LineReader<BoxRead>, BoxSink) {
    (LineReader::new(Box::new(io::empty())), Box::new(Vec::new()))
}

/// What the relay does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// QUIT was answered: the session is over.
    Quit,
    /// STARTTLS was accepted: relay raw bytes from now on.
    Pipe,
}

/// Relay options shared by both programs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RelayOptions {
    /// Refuse a bare CR or LF in commands and message data (smuggling defence).
    pub forbid_bare_newline: bool,
}

/// Relay one command line whose verb needs no special handling by the caller,
/// and return the server's reply after sending it on. For DATA the message is
/// streamed in between; for BDAT the chunk follows the command.
pub fn relay_command(
    line: &[u8],
    client: &mut Peer,
    server: &mut Peer,
    opts: RelayOptions,
) -> Result<(Step, Reply), Error> {
    let v = verb(line);
    match v {
        Verb::Bdat => {
            let Some((size, _last)) = bdat_args(line) else {
                // Let the server answer the syntax error; there is no chunk to copy.
                return simple(line, client, server, Step::Continue);
            };
            server
                .writer
                .write_all(line)
                .map_err(Error::io(server.name))?;
            let mut latch = Latch::new(&mut server.writer);
            client.reader.copy_exact(size, &mut latch, client.name)?;
            latch.finish().map_err(Error::io(server.name))?;
            let reply = server.read_reply()?;
            client.send_reply(&reply)?;
            Ok((Step::Continue, reply))
        }
        Verb::Data => {
            server.send(line)?;
            let reply = server.read_reply()?;
            client.send_reply(&reply)?;
            if reply.code != 354 {
                return Ok((Step::Continue, reply));
            }
            // The client writes its whole message before it reads a reply: if the
            // server side fails midway, keep reading to the dot so the client
            // gets its 4xx instead of both ends blocking on full pipes.
            let mut latch = Latch::new(&mut server.writer);
            client
                .reader
                .copy_data(&mut latch, opts.forbid_bare_newline, client.name)?;
            latch.finish().map_err(Error::io(server.name))?;
            let reply = server.read_reply()?;
            client.send_reply(&reply)?;
            Ok((Step::Continue, reply))
        }
        Verb::Quit => simple(line, client, server, Step::Quit),
        Verb::StartTls => {
            let (_, reply) = simple(line, client, server, Step::Continue)?;
            let step = if reply.code == 220 {
                Step::Pipe
            } else {
                Step::Continue
            };
            Ok((step, reply))
        }
        _ => simple(line, client, server, Step::Continue),
    }
}

fn simple(
    line: &[u8],
    client: &mut Peer,
    server: &mut Peer,
    step: Step,
) -> Result<(Step, Reply), Error> {
    server.send(line)?;
    let reply = server.read_reply()?;
    client.send_reply(&reply)?;
    Ok((step, reply))
}

/// Read the next command line from the client side, applying the line limit
/// and the bare-newline rule.
pub fn read_command(client: &mut Peer, opts: RelayOptions) -> Result<Vec<u8>, Error> {
    let line = client.read_line(MAX_LINE)?;
    if opts.forbid_bare_newline && crate::smtp::line::has_bare_newline(&line) {
        return Err(Error::BareNewline);
    }
    Ok(line)
}

/// Copy raw bytes both ways until both directions end (after STARTTLS).
pub fn pipe(client: Peer, server: Peer) -> Result<(), Error> {
    let (c_reader, mut c_writer) = (client.reader, client.writer);
    let (s_reader, mut s_writer) = (server.reader, server.writer);
    std::thread::scope(|scope| {
        // Only a clean end is passed on as a clean end (FIN or Close record);
        // after an error the other side's stream is dropped as it is.
        let up = scope.spawn(move || {
            let r = copy_out(c_reader, &mut s_writer);
            if r.is_ok() {
                let _ = s_writer.close();
            }
            r
        });
        let down = copy_out(s_reader, &mut c_writer);
        if down.is_ok() {
            let _ = c_writer.close();
        }
        let up = up.join().unwrap_or(Ok(()));
        down.and(up)
    })
    .map_err(Error::io("pipe"))
}

fn copy_out(reader: LineReader<BoxRead>, w: &mut BoxSink) -> io::Result<()> {
    let (mut r, rest) = reader.into_parts();
    w.write_all(&rest)?;
    w.flush()?;
    let mut buf = vec![0u8; crate::limits::COPY_BUFFER];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        w.flush()?;
    }
}

/// A writer that remembers its first error and swallows what follows, so a
/// copy can run to the end of its input after the output has failed.
struct Latch<'w> {
    inner: &'w mut dyn Write,
    err: Option<io::Error>,
}

impl<'w> Latch<'w> {
    fn new(inner: &'w mut dyn Write) -> Self {
        Latch { inner, err: None }
    }

    /// Flush, then report the first error, if any.
    fn finish(self) -> io::Result<()> {
        match self.err {
            Some(e) => Err(e),
            None => self.inner.flush(),
        }
    }
}

impl Write for Latch<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.err.is_none() {
            if let Err(e) = self.inner.write_all(buf) {
                self.err = Some(e);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts bytes through a reader or writer (for the per-session log line).
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Counted<T> {
    inner: T,
    count: Counter,
}

impl<T> Counted<T> {
    pub fn new(inner: T, count: &Counter) -> Self {
        Counted {
            inner,
            count: count.clone(),
        }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: crate::channel::Sink> crate::channel::Sink for Counted<W> {
    fn close(&mut self) -> io::Result<()> {
        self.inner.close()
    }
}
