//! SMTP replies: relayed byte for byte, parsed only enough to know the code,
//! where a multi-line reply ends, and (for EHLO) which keywords it lists.

use std::io::Read;

use super::line::LineReader;
use crate::limits::{MAX_LINE, MAX_REPLY_LINES};
pub use crate::reply::{trim_eol, Reply};
use crate::Error;

/// Parse the code and continuation flag of one reply line.
pub fn parse_line(line: &[u8]) -> Option<(u16, bool)> {
    let body = trim_eol(line);
    if body.len() < 3
        || !body[..3].iter().all(|b| b.is_ascii_digit())
        || !(b'2'..=b'5').contains(&body[0])
    {
        return None;
    }
    let code =
        (body[0] - b'0') as u16 * 100 + (body[1] - b'0') as u16 * 10 + (body[2] - b'0') as u16;
    match body.get(3) {
        None | Some(b' ') => Some((code, false)),
        Some(b'-') => Some((code, true)),
        Some(_) => None,
    }
}

/// Read one complete (possibly multi-line) reply.
pub fn read_reply<R: Read>(r: &mut LineReader<R>, what: &'static str) -> Result<Reply, Error> {
    let mut lines = Vec::new();
    let mut code = None;
    let bad = |why: String| Error::Protocol(format!("{what}: {why}"));
    loop {
        // An overlong reply is the server's fault, not the client's: a protocol
        // error (421), never the 500 an overlong command gets.
        let line = r.read_line(MAX_LINE, what).map_err(|e| match e {
            Error::LineTooLong => bad(format!("reply line longer than {MAX_LINE} bytes")),
            e => e,
        })?;
        let malformed = || format!("malformed reply line {:?}", String::from_utf8_lossy(&line));
        let (c, more) = parse_line(&line).ok_or_else(|| bad(malformed()))?;
        if *code.get_or_insert(c) != c {
            return Err(bad("reply codes differ within one reply".into()));
        }
        lines.push(line);
        if !more {
            return Ok(Reply { code: c, lines });
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(bad("reply has too many lines".into()));
        }
    }
}
