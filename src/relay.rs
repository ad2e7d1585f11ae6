//! The lock-step SMTP relay both programs run: one command from the client
//! side, forwarded; one reply from the server side, returned. DATA is streamed
//! up to its dot, BDAT chunks by count, and after an accepted STARTTLS the
//! relay becomes a plain byte pipe with a thread per direction.
//!
//! "Client side" is whoever sends commands (the remote client for inbound,
//! sendmail for outbound); "server side" is whoever answers them.

use std::io::{self, Read, Write};

use crate::channel::{BoxRead, BoxSink};
use crate::limits::MAX_LINE;
use crate::peer::Peer;
use crate::smtp::command::{bdat_args, ends_group, verb};
use crate::smtp::{LineReader, Reply, Verb};
use crate::Error;

/// What the relay does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// QUIT was answered: the session is over.
    Quit,
    /// STARTTLS was accepted: relay raw bytes from now on.
    Pipe,
}

/// Relay options shared by both programs. `Default` is the mailer's: there
/// sendmail is the client and its bytes pass unchanged. The inbound side
/// sets `forbid_bare_newline` unless `--allow-bare-newline` is given.
#[derive(Clone, Copy, Debug, Default)]
pub struct RelayOptions {
    /// Refuse a bare CR or LF in commands and message data (SMTP smuggling
    /// defence): an old MTA behind blackpony (Postfix 3.7 at its defaults)
    /// takes `<LF>.<LF>` and friends for the end of data and runs what follows.
    pub forbid_bare_newline: bool,
}

impl RelayOptions {
    /// The inbound side's options: bare CR and LF refused unless `allow_bare_newline`.
    pub fn inbound(allow_bare_newline: bool) -> Self {
        RelayOptions {
            forbid_bare_newline: !allow_bare_newline,
        }
    }
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
            let Some((size, last)) = bdat_args(line) else {
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
            if last {
                client.send_group_end(&reply, "BDAT LAST")?;
            } else {
                client.send_reply(&reply)?;
            }
            Ok((Step::Continue, reply))
        }
        Verb::Data => {
            server.send(line)?;
            let reply = server.read_reply()?;
            client.send_group_end(&reply, "DATA")?;
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
            client.send_group_end(&reply, "end of data")?;
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
    match ends_group(line) {
        Some(after) => client.send_group_end(&reply, after)?,
        None => client.send_reply(&reply)?,
    }
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
