//! Opening streams with deadlines: the client socket inetd hands us on stdin,
//! the backend and remote connections, and pipes that get a deadline from a
//! reader thread (std has no timeouts on pipes). Besides the per-read
//! timeout, every read obeys a [`Deadline`]: the end of the line or reply
//! being read and the end of the session, so bytes trickled just inside
//! each read's timeout cannot hold a session for ever.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The deadlines one stream's reads obey beyond the per-read timeout,
/// shared between the [`crate::peer::Peer`] that sets them and the reader
/// at the bottom of its stack that applies them (a [`TimedSocket`] or a
/// [`DeadlineReader`]), whatever layers (ROTn, records) sit in between.
/// A default `Deadline` is attached to nothing and bounds nothing.
#[derive(Clone, Default)]
pub struct Deadline(Arc<Mutex<Ends>>);

#[derive(Default)]
struct Ends {
    /// How long one whole line or reply may take to arrive (None: unbounded).
    line_timeout: Option<Duration>,
    /// The end of the line or reply being read now.
    line: Option<Instant>,
    /// The end of the session.
    session: Option<Instant>,
}

impl Deadline {
    /// A deadline whose lines and replies must each arrive within `line_timeout`.
    pub fn new(line_timeout: Duration) -> Self {
        Deadline(Arc::new(Mutex::new(Ends {
            line_timeout: Some(line_timeout),
            ..Ends::default()
        })))
    }

    fn ends(&self) -> std::sync::MutexGuard<'_, Ends> {
        // A panic while holding this lock cannot leave the Ends half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// End the session at `end`: every later read fails with TimedOut.
    pub fn set_session_end(&self, end: Instant) {
        self.ends().session = Some(end);
    }

    /// Start the clock for one whole line or reply; it stops when the
    /// returned guard is dropped.
    pub fn line(&self) -> LineClock<'_> {
        let mut e = self.ends();
        e.line = e.line_timeout.map(|t| Instant::now() + t);
        LineClock(self)
    }

    /// How long the next read may wait, at most `per_read`: TimedOut when
    /// the line or the session is already over.
    pub fn wait(&self, per_read: Duration) -> io::Result<Duration> {
        let e = self.ends();
        let now = Instant::now();
        let mut wait = per_read;
        for end in [e.line, e.session].into_iter().flatten() {
            // Below a millisecond counts as over: a zero socket timeout means "none".
            let left = end.saturating_duration_since(now);
            if left < Duration::from_millis(1) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "line or session deadline passed",
                ));
            }
            wait = wait.min(left);
        }
        Ok(wait)
    }
}

/// A running line clock (see [`Deadline::line`]).
pub struct LineClock<'d>(&'d Deadline);

impl Drop for LineClock<'_> {
    fn drop(&mut self) {
        self.0.ends().line = None;
    }
}

/// The reading half of a socket under a [`Deadline`]: before each read the
/// socket's read timeout is set to the per-read timeout or the time left,
/// whichever is shorter, so a trickler is cut when the deadline passes.
pub struct TimedSocket {
    stream: TcpStream,
    deadline: Deadline,
    per_read: Duration,
    /// The read timeout the socket has now (a setsockopt only on a change).
    set: Option<Duration>,
}

impl TimedSocket {
    pub fn new(stream: TcpStream, per_read: Duration, deadline: Deadline) -> Self {
        TimedSocket {
            stream,
            deadline,
            per_read,
            set: None,
        }
    }
}

impl Read for TimedSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = self.deadline.wait(self.per_read)?;
        if self.set != Some(wait) {
            self.stream.set_read_timeout(Some(wait))?;
            self.set = Some(wait);
        }
        self.stream.read(buf)
    }
}

use socket2::{Domain, Socket, Type};

/// If stdin is a TCP socket (inetd, xinetd, systemd Accept=yes), a duplicate
/// of it as a TcpStream with its peer address; `None` when stdin is a file or
/// a pipe (a local debugging session).
pub fn stdin_socket() -> Option<(TcpStream, SocketAddr)> {
    let fd = io::stdin().as_fd().try_clone_to_owned().ok()?;
    let stream = TcpStream::from(fd);
    let peer = stream.peer_addr().ok()?;
    Some((stream, peer))
}

/// Connect to `addr` within `timeout`, optionally from `source`. Tries
/// each address `addr` resolves to. [`crate::peer::Peer::from_tcp`] sets the
/// deadlines of the connection.
pub fn connect(addr: &str, source: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for sa in addr.to_socket_addrs()? {
        match connect_one(sa, source, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

pub fn connect_one(
    sa: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let Some(src) = source else {
        return TcpStream::connect_timeout(&sa, timeout);
    };
    let sock = Socket::new(Domain::for_address(sa), Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    sock.connect_timeout(&sa.into(), timeout)?;
    Ok(sock.into())
}

/// A `Read` over another reader that runs in its own thread, so every read
/// has a deadline even on a pipe: `timeout` per read, and `deadline` for
/// the line and the session. The thread ends when the source does.
pub struct DeadlineReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    pending: io::Cursor<Vec<u8>>,
    timeout: Duration,
    deadline: Deadline,
    done: bool,
}

impl DeadlineReader {
    pub fn spawn<R: Read + Send + 'static>(
        mut source: R,
        timeout: Duration,
        deadline: Deadline,
    ) -> Self {
        let (tx, rx) = sync_channel(2);
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; crate::limits::COPY_BUFFER];
            let r = source.read(&mut buf).map(|n| {
                buf.truncate(n);
                buf
            });
            let end = !matches!(&r, Ok(b) if !b.is_empty());
            if tx.send(r).is_err() || end {
                return;
            }
        });
        DeadlineReader {
            rx,
            pending: io::Cursor::default(),
            timeout,
            deadline,
            done: false,
        }
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pending.position() == self.pending.get_ref().len() as u64 {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv_timeout(self.deadline.wait(self.timeout)?) {
                Ok(Ok(chunk)) => {
                    self.done = chunk.is_empty();
                    self.pending = io::Cursor::new(chunk);
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        self.pending.read(out)
    }
}
