//! Opening streams with deadlines: the client socket inetd hands us on stdin,
//! the backend and remote connections, and pipes that get a deadline from a
//! reader thread (std has no timeouts on pipes).

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

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
/// has a deadline even on a pipe. The thread ends when the source does.
pub struct DeadlineReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    pending: Vec<u8>,
    pos: usize,
    timeout: Duration,
    done: bool,
}

impl DeadlineReader {
    pub fn spawn<R: Read + Send + 'static>(mut source: R, timeout: Duration) -> Self {
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
            pending: Vec::new(),
            pos: 0,
            timeout,
            done: false,
        }
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.pending.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv_timeout(self.timeout) {
                Ok(Ok(chunk)) => {
                    self.done = chunk.is_empty();
                    self.pending = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => return Err(io::ErrorKind::TimedOut.into()),
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
            }
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
