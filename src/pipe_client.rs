//! Pipe mode for Postfix's pipe(8) transport, which cannot speak SMTP to a
//! program: the envelope comes as arguments and the message on stdin, and
//! the exit code (sysexits) decides the message's fate. We play the SMTP
//! client that sendmail would be, over an in-process pipe, against the same
//! outbound session, so encryption, pins, policy and logging are identical.

use std::io::{self, BufRead, Read, Write};

use crate::error::exit;
use crate::limits::MAX_LINE;
use crate::smtp::reply::read_reply;
use crate::smtp::{LineReader, Reply};

/// The envelope pipe(8) passes on the command line.
pub struct Envelope {
    pub helo: String,
    pub sender: String,
    pub recipients: Vec<String>,
}

/// The outcome of a pipe-mode delivery: a sysexits code and a line for
/// Postfix to put into the delivery status notice.
pub struct PipeOutcome {
    pub code: i32,
    pub text: String,
}

impl PipeOutcome {
    fn from_reply(what: &str, r: &Reply) -> Self {
        let code = match r.code / 100 {
            2 | 3 => exit::OK,
            5 => exit::UNAVAILABLE,
            _ => exit::TEMPFAIL,
        };
        PipeOutcome {
            code,
            text: format!("{what}: {}", r.summary()),
        }
    }
}

/// Drive an SMTP session on the mailer side (`to_mailer`/`from_mailer` are
/// the pipes the outbound session reads and writes) and stream `message`.
pub fn run_client(
    env: &Envelope,
    message: &mut dyn BufRead,
    to_mailer: impl Write,
    from_mailer: impl Read,
) -> PipeOutcome {
    let mut w = io::BufWriter::new(to_mailer);
    let mut r = LineReader::new(from_mailer);
    session(env, message, &mut w, &mut r).unwrap_or_else(|e| PipeOutcome {
        code: exit::TEMPFAIL,
        text: format!("delivery interrupted: {e}"),
    })
}

fn session<W: Write, R: Read>(
    env: &Envelope,
    message: &mut dyn BufRead,
    w: &mut W,
    r: &mut LineReader<R>,
) -> Result<PipeOutcome, crate::Error> {
    let cmd = |w: &mut W, r: &mut LineReader<R>, line: &str| -> Result<Reply, crate::Error> {
        let sent = write!(w, "{line}\r\n").and_then(|_| w.flush());
        sent.map_err(crate::Error::io("mailer"))?;
        read_reply(r, "mailer")
    };
    let greeting = read_reply(r, "mailer")?;
    if greeting.code != 220 {
        return Ok(PipeOutcome::from_reply("greeting", &greeting));
    }
    let mut hello = cmd(w, r, &format!("EHLO {}", env.helo))?;
    if hello.code / 100 == 5 {
        hello = cmd(w, r, &format!("HELO {}", env.helo))?;
    }
    if hello.code != 250 {
        return quit(w, r, PipeOutcome::from_reply("EHLO", &hello));
    }
    let mail = cmd(w, r, &format!("MAIL FROM:<{}>", env.sender))?;
    if mail.code != 250 {
        return quit(w, r, PipeOutcome::from_reply("MAIL", &mail));
    }
    // pipe(8) gets one status for all recipients: any refusal fails the whole
    // delivery (temporary wins over permanent, so nothing is bounced wrongly).
    // master.cf should set a recipient limit of 1 for exact per-recipient status.
    let mut worst: Option<PipeOutcome> = None;
    for rcpt in &env.recipients {
        let rep = cmd(w, r, &format!("RCPT TO:<{rcpt}>"))?;
        if rep.code / 100 != 2 {
            let o = PipeOutcome::from_reply(&format!("RCPT {rcpt}"), &rep);
            let worse = |w: &PipeOutcome| o.code == exit::TEMPFAIL && w.code != exit::TEMPFAIL;
            if worst.as_ref().is_none_or(worse) {
                worst = Some(o);
            }
        }
    }
    if let Some(o) = worst {
        return quit(w, r, o);
    }
    crate::fault::point("after-rcpt");
    let data = cmd(w, r, "DATA")?;
    if data.code != 354 {
        return quit(w, r, PipeOutcome::from_reply("DATA", &data));
    }
    send_message(message, w).map_err(crate::Error::io("message"))?;
    let done = cmd(w, r, ".")?;
    quit(w, r, PipeOutcome::from_reply("end of data", &done))
}

fn quit<W: Write, R: Read>(
    w: &mut W,
    r: &mut LineReader<R>,
    o: PipeOutcome,
) -> Result<PipeOutcome, crate::Error> {
    if w.write_all(b"QUIT\r\n").and_then(|_| w.flush()).is_ok() {
        let _ = read_reply(r, "mailer");
    }
    Ok(o)
}

/// Copy the message with CRLF line endings and dot-stuffing (pipe(8) hands
/// it over with bare LF endings and no stuffing).
fn send_message(message: &mut dyn BufRead, w: &mut dyn Write) -> io::Result<()> {
    let mut line = Vec::with_capacity(MAX_LINE);
    loop {
        line.clear();
        if message.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let body = crate::reply::trim_eol(&line);
        if body.first() == Some(&b'.') {
            w.write_all(b".")?;
        }
        w.write_all(body)?;
        w.write_all(b"\r\n")?;
    }
}
