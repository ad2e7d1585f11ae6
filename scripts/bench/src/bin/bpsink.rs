//! A fast SMTP sink for the benchmarks: a thread per connection, every
//! command answered at once, message data discarded after the scan for the
//! CRLF.CRLF that ends it (SIMD memmem over a 256 KiB buffer, so the sink is
//! never the bottleneck of a relay measurement). The final reply carries the
//! data size, so a run can check that every byte arrived:
//! `250 2.0.0 Ok: queued as SINK size=N` (N = bytes before the final ".\r\n").
//!
//! The EHLO reply is the one of the STARTTLS anchor's Python sink (Postfix's
//! keywords minus STARTTLS).
//!
//! usage: bpsink --listen 127.0.0.1:PORT
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};

const EHLO: &[u8] = b"250-sink.e2e.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n";
const BUF: usize = 256 * 1024;
const MAX_LINE: usize = 4096;

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    /// Read more; false at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.s.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n > 0)
    }

    fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.start..self.end];
            if let Some(i) = memchr::memchr(b'\n', &avail[scanned..]) {
                let len = scanned + i + 1;
                let line = avail[..len].to_vec();
                self.start += len;
                return Ok(Some(line));
            }
            scanned = avail.len();
            if scanned > MAX_LINE {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Discard message data up to and including CRLF.CRLF; returns the data
    /// size (without the final ".\r\n"). The CRLF of the DATA line counts as
    /// the start of the first line, so an empty message is ".\r\n".
    fn data(&mut self) -> io::Result<Option<u64>> {
        const END: &[u8] = b"\r\n.\r\n";
        let finder = memchr::memmem::Finder::new(END);
        let mut tail: Vec<u8> = b"\r\n".to_vec();
        let mut total: u64 = 0;
        loop {
            if self.start == self.end && !self.fill()? {
                return Ok(None);
            }
            let chunk = &self.buf[self.start..self.end];
            // A terminator across the previous chunk and this one.
            let head = &chunk[..chunk.len().min(4)];
            let mut join = tail.clone();
            join.extend_from_slice(head);
            let found = finder
                .find_iter(&join)
                .find(|&p| p + END.len() > tail.len())
                .map(|p| p + END.len() - tail.len())
                .or_else(|| finder.find(chunk).map(|p| p + END.len()));
            match found {
                Some(n) => {
                    self.start += n;
                    total += n as u64;
                    // Data bytes before ".\r\n", counting the leading CRLF of the DATA line out.
                    return Ok(Some(total.saturating_sub(3)));
                }
                None => {
                    let n = chunk.len();
                    join.clear();
                    join.extend_from_slice(&tail);
                    join.extend_from_slice(&chunk[n.saturating_sub(4)..]);
                    tail = join[join.len().saturating_sub(4)..].to_vec();
                    self.start += n;
                    total += n as u64;
                }
            }
        }
    }
}

fn serve(s: TcpStream) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut c = Conn {
        s,
        buf: vec![0u8; BUF],
        start: 0,
        end: 0,
    };
    w.write_all(b"220 sink.e2e.test ESMTP\r\n")?;
    while let Some(line) = c.line()? {
        let verb: Vec<u8> = line
            .iter()
            .take(4)
            .map(|b| b.to_ascii_uppercase())
            .collect();
        match &verb[..] {
            b"EHLO" => w.write_all(EHLO)?,
            b"DATA" => {
                w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                match c.data()? {
                    Some(n) => w.write_all(
                        format!("250 2.0.0 Ok: queued as SINK size={n}\r\n").as_bytes(),
                    )?,
                    None => return Ok(()),
                }
            }
            b"QUIT" => {
                w.write_all(b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" | b"HELO" => w.write_all(b"250 2.0.0 Ok\r\n")?,
            _ => w.write_all(b"502 5.5.2 Error: command not recognized\r\n")?,
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = match args.iter().position(|a| a == "--listen") {
        Some(i) if i + 1 < args.len() => args[i + 1].clone(),
        _ => {
            eprintln!("usage: bpsink --listen ADDR:PORT");
            std::process::exit(2);
        }
    };
    let l = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("bpsink: {addr}: {e}");
        std::process::exit(1);
    });
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(s);
        });
    }
}
