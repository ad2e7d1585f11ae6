//! Everything that can go wrong, and what each failure turns into: the SMTP
//! reply the peer (or sendmail) sees and the sysexits code a program exits with.
//!
//! When in doubt a failure is temporary: a 4xx keeps the message queued and
//! the sender retries, which never loses mail.

use std::fmt;
use std::io;

use crate::reply::Reply;
use crate::wire::record::Truncated;

/// The sysexits.h codes the programs use; sendmail and Postfix's pipe(8) understand them.
pub mod exit {
    pub const OK: i32 = 0;
    pub const DATAERR: i32 = 65;
    pub const NOHOST: i32 = 68;
    pub const UNAVAILABLE: i32 = 69;
    pub const OSERR: i32 = 71;
    pub const IOERR: i32 = 74;
    pub const TEMPFAIL: i32 = 75;
    pub const CONFIG: i32 = 78;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What happened. Crypto failures are deliberately one variant: the peer
/// must not be able to tell a bad MAC from a bad length or a bad OAEP block.
#[non_exhaustive]
pub enum Error {
    /// An I/O error on one of the streams; the string says which.
    Io(&'static str, io::Error),
    /// A peer stayed silent past the deadline.
    Timeout(&'static str),
    /// The peer closed the connection (plain, or after an authenticated close).
    Closed(&'static str),
    /// An encrypted stream ended without its authenticated Close record.
    Truncated(&'static str),
    /// A line longer than the named limit.
    LineTooLong,
    /// A bare CR or LF where only CRLF is allowed.
    BareNewline,
    /// The peer broke the SMTP or blackpony protocol in a way we cannot recover from.
    Protocol(String),
    /// Any cryptographic failure: bad MAC, bad length, bad padding, OAEP, Finished.
    Crypto,
    /// Bytes arrived after the switch command and before its answer.
    Injection,
    /// The client talked before the reply that ends a command group (RFC
    /// 2920: EHLO, DATA, end of data, NOOP...) or before the greeting.
    Unsynchronized(&'static str),
    /// The real MTA could not be reached or went away.
    Backend(String),
    /// No remote mail exchanger could be reached (outbound).
    Unreachable(String),
    /// The destination can never be reached (null MX, NXDOMAIN).
    Permanent(String),
    /// The policy demands encryption (or a known key) and the peer did not provide it.
    Policy(String),
    /// A host key problem: missing, unreadable, wrong permissions, malformed.
    Key(String),
    /// Bad command-line options or configuration.
    Config(String),
}

impl Error {
    pub fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |e| match e.kind() {
            _ if e.get_ref().is_some_and(|inner| inner.is::<Truncated>()) => Error::Truncated(what),
            io::ErrorKind::InvalidData => Error::Crypto,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(what),
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted => Error::Closed(what),
            _ => Error::Io(what, e),
        }
    }

    /// The reply a peer or sendmail sees when this error ends the session.
    pub fn smtp_reply(&self) -> Reply {
        match self {
            Error::LineTooLong => Reply::new(500, "5.5.2 Line too long"),
            // sendmail's reply to the same violation; Postfix says "554 5.5.0
            // Error: SMTP protocol synchronization".
            Error::Unsynchronized(_) => Reply::new(554, "5.5.0 SMTP protocol error"),
            // sendmail's code (Debian 12's 8.17.1.9-2+deb12u2, which carries the
            // 8.18.1 fix: 421 4.5.0 "Bare linefeed (LF) not allowed", "Bare carriage
            // return (CR) not allowed"); one text for both, the variant has no field.
            // 421 and not 550: the session closes mid-stream (RFC 5321 3.8).
            Error::BareNewline => Reply::new(
                421,
                "4.5.0 Bare linefeed (LF) or carriage return (CR) not allowed",
            ),
            Error::Timeout(_) => Reply::new(421, "4.4.2 Timeout, closing connection"),
            Error::Backend(_) => Reply::new(
                421,
                "4.3.0 Mail system temporarily unavailable, try again later",
            ),
            Error::Unreachable(_) => Reply::new(421, "4.4.1 No remote mail exchanger answered"),
            Error::Permanent(m) => Reply::new(554, &format!("5.1.2 {m}")),
            Error::Policy(m) => Reply::new(421, &format!("4.7.5 {m}")),
            Error::Key(_) | Error::Config(_) => Reply::new(
                421,
                "4.3.5 Mail system configuration error, try again later",
            ),
            Error::Crypto | Error::Injection => {
                Reply::new(421, "4.7.0 Encrypted session failed, closing")
            }
            Error::Protocol(_) => Reply::new(421, "4.5.0 Protocol error, closing"),
            Error::Io(..) | Error::Closed(_) | Error::Truncated(_) => {
                Reply::new(421, "4.4.2 Connection lost, try again later")
            }
        }
    }

    /// The sysexits code a program exits with after this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Key(_) => exit::CONFIG,
            Error::Permanent(_) => exit::NOHOST,
            _ => exit::TEMPFAIL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Timeout(what) => write!(f, "{what}: timed out"),
            Error::Closed(what) => write!(f, "{what}: connection closed"),
            Error::Truncated(what) => {
                write!(f, "{what}: encrypted stream cut before its close record")
            }
            Error::LineTooLong => f.write_str("line too long"),
            Error::BareNewline => f.write_str("bare CR or LF in SMTP line"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::Crypto => f.write_str("decryption or authentication failed"),
            Error::Unsynchronized(after) => write!(
                f,
                "improper command pipelining after {after}: client talked before the reply (RFC 2920), not relayed"
            ),
            Error::Injection => {
                f.write_str("bytes pipelined behind the switch command (injection attempt)")
            }
            Error::Backend(m) => write!(f, "backend MTA: {m}"),
            Error::Unreachable(m) => write!(f, "unreachable: {m}"),
            Error::Permanent(m) => write!(f, "permanent failure: {m}"),
            Error::Policy(m) => write!(f, "policy: {m}"),
            Error::Key(m) => write!(f, "host key: {m}"),
            Error::Config(m) => write!(f, "configuration: {m}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}
