//! Command verbs, recognised case-insensitively from the first word of a line.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    StartTls,
    XBlackpony,
    /// Postfix's XCLIENT and XFORWARD: only a trusted proxy may send them.
    ProxyOnly,
    /// Anything else (VRFY, AUTH, extensions): relayed as is.
    Other,
}

/// The first word of a command line.
fn first_word(line: &[u8]) -> &[u8] {
    let mut words = line.split(|&b| b == b' ' || b == b'\r' || b == b'\n');
    words.next().unwrap_or(&[])
}

/// The verb of a command line (with or without its CRLF).
pub fn verb(line: &[u8]) -> Verb {
    let word = first_word(line);
    [
        ("EHLO", Verb::Ehlo),
        ("HELO", Verb::Helo),
        ("MAIL", Verb::Mail),
        ("RCPT", Verb::Rcpt),
        ("DATA", Verb::Data),
        ("BDAT", Verb::Bdat),
        ("RSET", Verb::Rset),
        ("NOOP", Verb::Noop),
        ("QUIT", Verb::Quit),
        ("STARTTLS", Verb::StartTls),
        (crate::KEYWORD, Verb::XBlackpony),
        ("XCLIENT", Verb::ProxyOnly),
        ("XFORWARD", Verb::ProxyOnly),
    ]
    .into_iter()
    .find(|(w, _)| word.eq_ignore_ascii_case(w.as_bytes()))
    .map_or(Verb::Other, |(_, v)| v)
}

/// The name of a command after which the client must wait for the reply
/// before it sends more (RFC 2920 3.1: EHLO, DATA, VRFY, EXPN, TURN, QUIT,
/// NOOP end a group; RFC 3207: STARTTLS; HELO like EHLO). DATA, BDAT and
/// QUIT are the relay's own cases.
pub fn ends_group(line: &[u8]) -> Option<&'static str> {
    let word = first_word(line);
    ["EHLO", "HELO", "NOOP", "VRFY", "EXPN", "TURN", "STARTTLS"]
        .into_iter()
        .find(|w| word.eq_ignore_ascii_case(w.as_bytes()))
}

/// The words after the verb, without the line terminator.
pub fn arguments(line: &[u8]) -> Vec<&str> {
    let text = std::str::from_utf8(trim_eol(line)).unwrap_or("");
    text.split(' ').skip(1).filter(|w| !w.is_empty()).collect()
}

pub use crate::reply::trim_eol;

/// The chunk size and LAST flag of `BDAT <size> [LAST]` (RFC 3030).
pub fn bdat_args(line: &[u8]) -> Option<(u64, bool)> {
    let args = arguments(line);
    let size = args.first()?;
    if size.is_empty() || size.len() > 19 || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let last = match args.get(1) {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") && args.len() == 2 => true,
        Some(_) => return None,
    };
    Some((size.parse().ok()?, last))
}
