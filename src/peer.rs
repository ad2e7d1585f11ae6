//! One end of an SMTP conversation: a line reader and a writer over
//! whatever carries the bytes (a socket, a pipe, a ROTn or record stream),
//! with the name its errors carry. [`Peer::from_tcp`] is the one place where
//! a socket becomes a peer.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{BoxRead, BoxSink};
use crate::netio::{Deadline, TimedSocket};
use crate::smtp::reply::read_reply;
use crate::smtp::{LineReader, Reply};
use crate::Error;

/// One end of the relay.
pub struct Peer {
    pub reader: LineReader<BoxRead>,
    pub writer: BoxSink,
    pub name: &'static str,
    /// The line and session deadlines the bottom of `reader` applies.
    pub deadline: Deadline,
    /// The socket under `reader`, for a peer that must keep RFC 2920's
    /// synchronization (the inbound's client): see [`Peer::sent_early`].
    pub sync_probe: Option<TcpStream>,
}

impl Peer {
    /// A peer whose reads have no deadline beyond what `reader` has itself.
    pub fn new(reader: BoxRead, writer: BoxSink, name: &'static str) -> Self {
        Peer::with_deadline(reader, writer, name, Deadline::default())
    }

    /// A peer over a reader whose bottom (a [`TimedSocket`] or a
    /// [`crate::netio::DeadlineReader`]) applies `deadline`.
    pub fn with_deadline(
        reader: BoxRead,
        writer: BoxSink,
        name: &'static str,
        deadline: Deadline,
    ) -> Self {
        Peer {
            reader: LineReader::new(reader),
            writer,
            name,
            deadline,
            sync_probe: None,
        }
    }

    /// A connected socket as a peer: every read and write gets `timeout`,
    /// every whole line or reply too (RFC 5321 4.5.3.2), Nagle is off (our
    /// writes are whole commands or replies the other end waits for), and
    /// the bytes are counted into `traffic` if given.
    pub fn from_tcp(
        stream: TcpStream,
        name: &'static str,
        timeout: Duration,
        traffic: Option<&Traffic>,
    ) -> Result<Peer, Error> {
        let deadline = Deadline::new(timeout);
        let (reader, writer) =
            tcp_halves(stream, timeout, deadline.clone()).map_err(Error::io(name))?;
        Ok(match traffic {
            Some(t) => Peer::with_deadline(
                Box::new(Counted::new(reader, &t.received)),
                Box::new(Counted::new(writer, &t.sent)),
                name,
                deadline,
            ),
            None => Peer::with_deadline(Box::new(reader), Box::new(writer), name, deadline),
        })
    }

    /// End the session at `end` (--session-timeout): reads after it fail
    /// with a timeout, which ends the session with a 421 where one is possible.
    pub fn set_session_end(&self, end: Instant) {
        self.deadline.set_session_end(end);
    }

    /// Write and flush at once: the peer is waiting for it.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.writer.write_all(bytes).map_err(Error::io(self.name))?;
        self.writer.flush().map_err(Error::io(self.name))
    }

    pub fn send_reply(&mut self, reply: &Reply) -> Result<(), Error> {
        self.send(&reply.to_bytes())
    }

    /// Up to 16 bytes this peer sent that we have not read: buffered by the
    /// reader or waiting in its socket. Empty without a probe (the mailer's
    /// sendmail, a recorded session on a pipe, where everything is early).
    pub fn sent_early(&self) -> Vec<u8> {
        let Some(sock) = &self.sync_probe else {
            return Vec::new();
        };
        let buffered = self.reader.buffered();
        if !buffered.is_empty() {
            return buffered[..buffered.len().min(16)].to_vec();
        }
        // A zero-wait peek. O_NONBLOCK is shared with the reading half, which
        // is idle now: the relay is lock-step while these checks run.
        let mut buf = [0u8; 16];
        let n = match sock.set_nonblocking(true) {
            Ok(()) => sock.peek(&mut buf).unwrap_or(0),
            Err(_) => 0,
        };
        let _ = sock.set_nonblocking(false);
        buf[..n].to_vec()
    }

    /// Send a reply the peer must wait for before it talks again (RFC 2920:
    /// the end of a command group). If it already talked, the reply still
    /// goes out (the MTA acted on the command) and the session ends with
    /// [`Error::Unsynchronized`]: the early bytes never reach the MTA.
    /// `after` names the command; after the end of data only QUIT may follow.
    pub fn send_group_end(&mut self, reply: &Reply, after: &'static str) -> Result<(), Error> {
        let early = self.sent_early();
        self.send_reply(reply)?;
        let quit = b"QUIT\r\n";
        let only_quit = after == "end of data"
            && early.len() <= quit.len()
            && early.eq_ignore_ascii_case(&quit[..early.len()]);
        if early.is_empty() || only_quit {
            Ok(())
        } else {
            Err(Error::Unsynchronized(after))
        }
    }

    /// One command line, which must arrive whole before the line deadline
    /// however it is trickled (the server's 5-minute wait for a command).
    pub fn read_line(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let _clock = self.deadline.line();
        self.reader.read_line(max, self.name)
    }

    /// One reply, all its lines within the line deadline (the client's
    /// waits for the greeting and for each reply).
    pub fn read_reply(&mut self) -> Result<Reply, Error> {
        let _clock = self.deadline.line();
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

    /// Move the whole peer out (to hand it to [`crate::relay::pipe`]),
    /// leaving a detached placeholder.
    pub fn take(&mut self) -> Peer {
        let (r, w) = detached();
        let (reader, writer) = self.replace(r, w);
        Peer {
            reader,
            writer,
            name: self.name,
            deadline: self.deadline.clone(),
            sync_probe: self.sync_probe.take(),
        }
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

/// A socket's reading and writing halves, without Nagle: each write gets
/// `timeout`, each read `timeout` or what is left before `deadline`.
/// Writes are bounded per write only: the lock-step relay writes nothing the
/// reads (which the session limit bounds) did not ask for.
pub fn tcp_halves(
    stream: TcpStream,
    timeout: Duration,
    deadline: Deadline,
) -> io::Result<(TimedSocket, TcpStream)> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok((
        TimedSocket::new(stream.try_clone()?, timeout, deadline),
        stream,
    ))
}

/// The bytes one session received from and sent to its peer.
#[derive(Clone, Default)]
pub struct Traffic {
    pub received: Counter,
    pub sent: Counter,
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
