//! The XBLACKPONY keyword in EHLO replies: add it (inbound), find and strip
//! it (outbound).

use super::reply::Reply;
use crate::KEYWORD;

fn keyword_of(text: &[u8]) -> &[u8] {
    text.split(|&b| b == b' ').next().unwrap_or(&[])
}

/// Add `XBLACKPONY <suites>` as one more capability line, keeping the
/// multi-line reply well formed. Only for a positive EHLO reply.
pub fn add_keyword(reply: &mut Reply, suites: &str) {
    // A reply already at the line limit stays as it is: one more line would
    // make it a reply our own mailer (and others with a limit) refuse.
    if reply.code != 250 || reply.lines.len() >= crate::limits::MAX_REPLY_LINES {
        return;
    }
    if let Some(last) = reply.lines.last_mut() {
        match last.get(3) {
            Some(b' ') => last[3] = b'-',
            Some(b'-') => {}
            _ => last.insert(3, b'-'), // a bare "250\r\n"
        }
    }
    reply
        .lines
        .push(format!("250 {KEYWORD} {suites}\r\n").into_bytes());
}

/// The suite list of the XBLACKPONY keyword, if the reply offers it.
pub fn offered_suites(reply: &Reply) -> Option<String> {
    if reply.code != 250 {
        return None;
    }
    // The first line is the greeting domain, not a keyword.
    let is_ours = |text: &&[u8]| keyword_of(text).eq_ignore_ascii_case(KEYWORD.as_bytes());
    let text = reply.texts().skip(1).find(is_ours)?;
    let suites = String::from_utf8_lossy(&text[KEYWORD.len()..]);
    Some(suites.trim().to_string())
}

/// Remove every XBLACKPONY line (sendmail must not see the keyword) and keep
/// the reply well formed.
pub fn strip_keyword(reply: &mut Reply) {
    strip_capability(reply, KEYWORD);
}

/// Remove every line advertising capability `kw` (case-insensitive), keeping
/// the reply well formed. The first line is the greeting, never a capability.
pub fn strip_capability(reply: &mut Reply, kw: &str) {
    let mut first = true;
    reply.lines.retain(|line| {
        let keep = first || {
            let text = super::command::trim_eol(line).get(4..).unwrap_or(&[]);
            !keyword_of(text).eq_ignore_ascii_case(kw.as_bytes())
        };
        first = false;
        keep
    });
    let n = reply.lines.len();
    for (i, line) in reply.lines.iter_mut().enumerate() {
        let last = i + 1 == n;
        // Byte 3 is the separator only if there is one: a text-less "250\r\n"
        // has its line end there, which must never be overwritten.
        match line.get(3) {
            Some(b' ' | b'-') => line[3] = if last { b' ' } else { b'-' },
            _ if !last => line.insert(3, b'-'),
            _ => {}
        }
    }
}
