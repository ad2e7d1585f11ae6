//! One session's facts, typed: what both programs fill in as a session runs,
//! and the only source of the log line an administrator greps and of the
//! JSON record `blackpony-report` reads. It imports no session, so the
//! sessions, the log and the record writer all depend on it, not on each other.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use crate::policy::Policy;
use crate::suite::SuiteId;

/// Which side of blackpony ran the session.
#[derive(Clone, Debug)]
pub enum Side {
    /// `blackpony`: a client connected; `None` for a session replayed from stdin.
    Inbound { client: Option<SocketAddr> },
    /// `blackpony-mailer`: a delivery to `dest` through `mx`, if one answered.
    Outbound {
        dest: String,
        mx: Option<Mx>,
        policy: Policy,
        verdict: Verdict,
        /// The remote's reply to the message (or our own 4xx), for the log.
        last_reply: String,
    },
}

/// The mail exchanger a delivery reached.
#[derive(Clone, Debug)]
pub struct Mx {
    /// The MX host name as DNS gave it, or the address literal.
    pub host: String,
    pub addr: SocketAddr,
}

/// The outbound policy check's result; `Unchecked` if the session ended before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Unchecked,
    Ok,
    Warn,
    Defer,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unchecked => "-",
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Defer => "defer",
        }
    }
}

/// How the session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client side said QUIT and got its reply: a normal end.
    Quit,
    /// The mailer refused to deliver under its policy (4xx to sendmail).
    DeferredByPolicy,
    /// Anything else; the text is the error's.
    Error(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Quit => f.write_str("quit"),
            Outcome::DeferredByPolicy => f.write_str("deferred by policy"),
            Outcome::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// One session.
#[derive(Clone, Debug)]
pub struct Summary {
    pub side: Side,
    /// `None` while (or if) the session stayed plain.
    pub suite: Option<SuiteId>,
    /// The peer's host key fingerprint, for keyed suites.
    pub peer_fingerprint: Option<String>,
    /// Outbound: the key the pins moved from, by the peer's continuity statement.
    pub pin_moved_from: Option<String>,
    /// Our own configured key was missing or unreadable, so the session ran
    /// without what it would have offered (said in the log and the record).
    pub key_problem: Option<String>,
    /// Bytes received from and sent to the peer (client or remote MX).
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub started: Instant,
    pub outcome: Outcome,
}

impl Summary {
    pub fn new(side: Side) -> Self {
        Summary {
            side,
            suite: None,
            peer_fingerprint: None,
            pin_moved_from: None,
            key_problem: None,
            bytes_in: 0,
            bytes_out: 0,
            started: Instant::now(),
            outcome: Outcome::Quit,
        }
    }

    pub fn suite_name(&self) -> String {
        self.suite.map_or_else(|| "plain".into(), |s| s.to_string())
    }

    pub fn fingerprint(&self) -> &str {
        self.peer_fingerprint.as_deref().unwrap_or("-")
    }

    /// The one human log line of the session.
    pub fn log_line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let (suite, peer) = (self.suite_name(), self.fingerprint());
        let (inn, out, end) = (self.bytes_in, self.bytes_out, &self.outcome);
        match &self.side {
            Side::Inbound { client } => {
                let client = client.map_or_else(|| "local".into(), |c| c.to_string());
                format!(
                    "session client={client} suite={suite} peer={peer} in={inn} out={out} duration={secs:.3}s end={end}"
                )
            }
            Side::Outbound {
                dest,
                mx,
                policy,
                verdict,
                last_reply,
            } => {
                let mx = mx
                    .as_ref()
                    .map_or_else(|| "-".into(), |m| format!("{}[{}]", m.host, m.addr));
                let verdict = verdict.as_str();
                let moved = self
                    .pin_moved_from
                    .as_ref()
                    .map_or_else(String::new, |old| format!(" pin_moved_from={old}"));
                format!(
                    "delivery dest={dest} mx={mx} suite={suite} peer={peer}{moved} policy={policy} verdict={verdict} out={out} in={inn} duration={secs:.3}s reply=\"{last_reply}\" end={end}"
                )
            }
        }
    }
}
