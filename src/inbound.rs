//! The inbound session: one client connection relayed to the real MTA, with
//! the XBLACKPONY keyword added to the EHLO reply and the negotiation handled
//! here. The explicit [`Phase`] decides what is allowed next.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{BoxRead, BoxSink};
use crate::keys::HostKey;
use crate::netio::Deadline;
use crate::peer::{tcp_halves, Counted, Peer, Traffic};
use crate::relay::{self, RelayOptions, Step};
use crate::smtp::{ehlo, Reply, Verb};
use crate::static_key::{LiveIdentity, StaticIdentity};
use crate::suite::SuitePolicy;
use crate::summary::{Outcome, Side, Summary};
use crate::switch::{self, ServerSide};
use crate::{limits, Error};

/// How the backend learns the real client's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAddressPassing {
    /// None: connect (perhaps from --source) and say nothing.
    None,
    ProxyV1,
    ProxyV2,
    Xclient,
}

pub struct InboundConfig {
    pub backend: String,
    pub source: Option<IpAddr>,
    pub passing: ClientAddressPassing,
    pub timeout: Duration,
    /// The whole connection's limit (--session-timeout).
    pub session_timeout: Duration,
    pub suites: SuitePolicy,
    pub relay: RelayOptions,
    /// The RSA host key, loaded only when a suite that needs it is offered.
    pub key: Option<Arc<HostKey>>,
    /// The static key and certificate of handshake v2; None: v2 not offered.
    pub identity: Option<LiveIdentity>,
    /// A configured key that is missing or unreadable: every session's record says so.
    pub key_problem: Option<String>,
}

/// The client connection as the launcher handed it to us.
pub struct ClientConn {
    pub reader: BoxRead,
    pub writer: BoxSink,
    /// The client's and our address; None for a local debugging session.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
    /// The line and session deadlines the bottom of `reader` applies.
    pub deadline: Deadline,
    /// The socket, to see whether the client talks out of turn (RFC 2920).
    pub probe: Option<TcpStream>,
}

impl ClientConn {
    /// A client socket (from inetd, a listener or systemd), with deadlines.
    pub fn from_tcp(stream: TcpStream, timeout: Duration) -> std::io::Result<ClientConn> {
        let addrs = (stream.peer_addr()?, stream.local_addr()?);
        let deadline = Deadline::new(timeout);
        let probe = stream.try_clone()?;
        let (reader, writer) = tcp_halves(stream, timeout, deadline.clone())?;
        Ok(ClientConn {
            reader: Box::new(reader),
            writer: Box::new(writer),
            addrs: Some(addrs),
            deadline,
            probe: Some(probe),
        })
    }

    /// A live socket: bytes after a switch command are an injection attempt.
    fn is_socket(&self) -> bool {
        self.addrs.is_some()
    }
}

/// Where the session is; named after what may come next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Plain SMTP; the keyword is offered. `ehlo_seen`: a 250 to EHLO;
    /// `mail_seen`: MAIL since; `switch_next`: nothing but refused
    /// switches since that EHLO, so XBLACKPONY may come now.
    Plain {
        ehlo_seen: bool,
        mail_seen: bool,
        switch_next: bool,
    },
    /// Encrypted; the client must say EHLO again before anything else.
    ExpectInnerEhlo,
    /// Encrypted and greeted: everything is relayed.
    Encrypted,
}

struct Session<'c> {
    cfg: &'c InboundConfig,
    client: Peer,
    backend: Peer,
    phase: Phase,
    is_socket: bool,
    offer: String,
    /// This connection's v2 identity (a renewal reaches the next connection).
    identity: Option<Arc<StaticIdentity>>,
    /// The client's EHLO line that our offer answered (handshake v2 binds it).
    outer_ehlo: Vec<u8>,
    summary: Summary,
}

/// Serve one connection to its end. Never panics on peer input; every
/// failure ends in a reply to the client where one is still possible.
pub fn serve(conn: ClientConn, cfg: &InboundConfig) -> Summary {
    let addrs = conn.addrs;
    let is_socket = conn.is_socket();
    let traffic = Traffic::default();
    // The session limit counts from the connection, the backend's connect included.
    let session_end = Instant::now() + cfg.session_timeout;
    let mut client = Peer::with_deadline(
        Box::new(Counted::new(conn.reader, &traffic.received)),
        Box::new(Counted::new(conn.writer, &traffic.sent)),
        "client",
        conn.deadline,
    );
    client.sync_probe = conn.probe;
    client.set_session_end(session_end);
    let mut summary = Summary::new(Side::Inbound {
        client: addrs.map(|(p, _)| p),
    });
    summary.key_problem = cfg.key_problem.clone();
    match connect_backend(cfg, addrs) {
        Err(e) => {
            let _ = client.send_reply(&e.smtp_reply());
            client.close();
            summary.outcome = Outcome::Error(e.to_string());
        }
        Ok(backend) => {
            backend.set_session_end(session_end);
            let mut s = Session {
                cfg,
                client,
                backend,
                phase: Phase::Plain {
                    ehlo_seen: false,
                    mail_seen: false,
                    switch_next: false,
                },
                is_socket,
                offer: cfg
                    .suites
                    .server_offer(cfg.key.is_some(), cfg.identity.is_some()),
                identity: cfg.identity.as_ref().map(LiveIdentity::current),
                outer_ehlo: Vec::new(),
                summary,
            };
            if let Err(e) = s.run(addrs) {
                s.fail(&e);
                s.summary.outcome = Outcome::Error(e.to_string());
            }
            summary = s.summary;
        }
    }
    summary.bytes_in = traffic.received.get();
    summary.bytes_out = traffic.sent.get();
    summary
}

fn connect_backend(
    cfg: &InboundConfig,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> Result<Peer, Error> {
    let stream = crate::netio::connect(&cfg.backend, cfg.source, limits::CONNECT_TIMEOUT)
        .map_err(|e| Error::Backend(format!("cannot connect to {}: {e}", cfg.backend)))?;
    let header = match cfg.passing {
        ClientAddressPassing::ProxyV1 => Some(proxy_v1(addrs)),
        ClientAddressPassing::ProxyV2 => Some(proxy_v2(addrs)),
        _ => None,
    };
    let mut peer = Peer::from_tcp(stream, "backend", cfg.timeout, None)
        .map_err(|e| Error::Backend(e.to_string()))?;
    if let Some(h) = header {
        peer.send(&h)?;
    }
    Ok(peer)
}

/// HAProxy PROXY protocol version 1 header (text).
pub fn proxy_v1(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    match addrs {
        Some((src, dst)) if src.is_ipv4() == dst.is_ipv4() => {
            let fam = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {fam} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        _ => b"PROXY UNKNOWN\r\n".to_vec(),
    }
}

/// HAProxy PROXY protocol version 2 header (binary).
pub fn proxy_v2(addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match addrs {
        Some((SocketAddr::V4(s), SocketAddr::V4(d))) => {
            h.extend_from_slice(&[0x21, 0x11, 0, 12]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        Some((SocketAddr::V6(s), SocketAddr::V6(d))) => {
            h.extend_from_slice(&[0x21, 0x21, 0, 36]);
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        // LOCAL: the backend uses the connection's own addresses.
        _ => h.extend_from_slice(&[0x20, 0x00, 0, 0]),
    }
    h
}

impl Session<'_> {
    fn run(&mut self, addrs: Option<(SocketAddr, SocketAddr)>) -> Result<(), Error> {
        let mut greeting = self.backend.read_reply()?;
        if self.cfg.passing == ClientAddressPassing::Xclient && greeting.code == 220 {
            if let Some((client, _)) = addrs {
                greeting = self.xclient(client)?;
            }
        }
        // Talking before the greeting (sendmail's greet_pause, postscreen's
        // pregreet test) is refused here: the MTA cannot see it through us.
        if !self.client.sent_early().is_empty() {
            return Err(Error::Unsynchronized("greeting"));
        }
        self.client.send_reply(&greeting)?;
        loop {
            let line = relay::read_command(&mut self.client, self.cfg.relay)?;
            let v = crate::smtp::command::verb(&line);
            match (self.phase, v) {
                (_, Verb::XBlackpony) => self.negotiate(&line)?,
                // Only blackpony itself, as the MTA's trusted proxy, may tell
                // the MTA who the client is (--xclient): a client never can.
                (_, Verb::ProxyOnly) => {
                    self.refuse(502, "5.5.1 Command not available")?;
                }
                (Phase::Plain { .. }, Verb::Ehlo) => {
                    self.backend.send(&line)?;
                    let mut reply = self.backend.read_reply()?;
                    // The MTA must not offer the keyword itself; only we do.
                    ehlo::strip_keyword(&mut reply);
                    strip_proxy_only(&mut reply);
                    if !self.offer.is_empty() {
                        ehlo::add_keyword(&mut reply, &self.offer);
                    }
                    self.phase = Phase::Plain {
                        ehlo_seen: reply.code == 250,
                        mail_seen: false,
                        switch_next: reply.code == 250,
                    };
                    self.outer_ehlo = line;
                    self.client.send_group_end(&reply, "EHLO")?;
                }
                (Phase::Plain { .. }, Verb::Helo) => {
                    self.phase = Phase::Plain {
                        ehlo_seen: false,
                        mail_seen: false,
                        switch_next: false,
                    };
                    self.relay(&line)?;
                }
                (Phase::Plain { ehlo_seen, .. }, Verb::Mail) => {
                    self.phase = Phase::Plain {
                        ehlo_seen,
                        mail_seen: true,
                        switch_next: false,
                    };
                    self.relay(&line)?;
                }
                (Phase::ExpectInnerEhlo | Phase::Encrypted, Verb::Ehlo | Verb::Helo) => {
                    let reply = inner_ehlo(&mut self.backend, &line)?;
                    if reply.code == 250 {
                        self.phase = Phase::Encrypted;
                    }
                    self.client.send_group_end(&reply, "EHLO")?;
                }
                (Phase::ExpectInnerEhlo, v)
                    if !matches!(v, Verb::Quit | Verb::Noop | Verb::Rset) =>
                {
                    self.refuse(503, "5.5.1 Encryption is on: send EHLO again first")?;
                }
                _ => match self.relay(&line)? {
                    Step::Continue => {
                        if let Phase::Plain { switch_next, .. } = &mut self.phase {
                            *switch_next = false;
                        }
                    }
                    Step::Quit => {
                        self.backend.close();
                        self.client.finish();
                        return Ok(());
                    }
                    Step::Pipe => return self.pipe(),
                },
            }
        }
    }

    fn relay(&mut self, line: &[u8]) -> Result<Step, Error> {
        Ok(relay::relay_command(line, &mut self.client, &mut self.backend, self.cfg.relay)?.0)
    }

    fn pipe(&mut self) -> Result<(), Error> {
        relay::pipe(self.client.take(), self.backend.take())
    }

    /// Tell Postfix who the real client is (XCLIENT), returning the new greeting.
    fn xclient(&mut self, client: SocketAddr) -> Result<Reply, Error> {
        self.backend.send(b"EHLO blackpony.invalid\r\n")?;
        let ehlo = self.backend.read_reply()?;
        let offers = ehlo
            .texts()
            .any(|t| t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"XCLIENT"));
        if !offers {
            return Err(Error::Backend(
                "the MTA does not offer XCLIENT to this proxy (Postfix: smtpd_authorized_xclient_hosts)".into(),
            ));
        }
        let addr = match client.ip() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("IPV6:{a}"),
        };
        // NAME as well: without it Postfix keeps the name it found for our
        // own address (e.g. "localhost") and gives it to the client.
        // [UNAVAILABLE] makes the client "unknown", as after a failed lookup.
        self.backend.send(
            format!(
                "XCLIENT ADDR={addr} PORT={} NAME=[UNAVAILABLE]\r\n",
                client.port()
            )
            .as_bytes(),
        )?;
        let reply = self.backend.read_reply()?;
        if reply.code != 220 {
            return Err(Error::Backend(format!(
                "XCLIENT refused: {}",
                reply.summary()
            )));
        }
        Ok(reply)
    }

    /// End a session after an error. Crypto and injection failures get no
    /// reply (all failures look the same to the peer); others get the error's
    /// reply. The backend connection is dropped without another byte, so an
    /// unfinished message is discarded by the MTA.
    fn fail(&mut self, e: &Error) {
        log::warn!("{e}");
        if matches!(e, Error::Crypto | Error::Injection | Error::Truncated(_)) {
            // No reply and no authenticated Close: the streams are dropped as they are.
            return;
        }
        if !matches!(e, Error::Closed("client")) {
            let _ = self.client.send_reply(&e.smtp_reply());
        }
        self.client.close();
    }

    fn refuse(&mut self, code: u16, text: &str) -> Result<(), Error> {
        self.client.send_reply(&Reply::new(code, text))
    }

    fn negotiate(&mut self, line: &[u8]) -> Result<(), Error> {
        let Phase::Plain {
            ehlo_seen,
            mail_seen,
            switch_next,
        } = self.phase
        else {
            return self.refuse(503, "5.5.1 Encryption is already on");
        };
        if !ehlo_seen {
            return self.refuse(503, "5.5.1 Send EHLO first");
        }
        if mail_seen {
            return self.refuse(503, "5.5.1 XBLACKPONY must come before MAIL");
        }
        // Right after EHLO: nothing the client said in plain (AUTH, VRFY,
        // ...) precedes the switch, and its EHLO is the one the switch binds.
        if !switch_next {
            return self.refuse(503, "5.5.1 XBLACKPONY must follow EHLO directly");
        }
        let side = ServerSide {
            offer: &self.offer,
            suites: &self.cfg.suites,
            key: self.cfg.key.as_deref(),
            identity: self.identity.as_deref(),
            outer_ehlo: &self.outer_ehlo,
            live: self.is_socket,
        };
        let backend = &mut self.backend;
        let mut answer = |ehlo: &[u8]| inner_ehlo(backend, ehlo);
        if let Some(on) = switch::serve(&mut self.client, line, &side, &mut answer)? {
            self.summary.suite = on.suite;
            self.summary.peer_fingerprint = on.peer_fingerprint;
            log::info!("encryption on: suite={}", self.summary.suite_name());
            self.phase = if on.greeted {
                Phase::Encrypted
            } else {
                Phase::ExpectInnerEhlo
            };
        }
        Ok(())
    }
}

/// An EHLO inside the encrypted channel: relayed, and the keyword, which is
/// never offered inside the channel, removed from the reply.
fn inner_ehlo(backend: &mut Peer, line: &[u8]) -> Result<Reply, Error> {
    backend.send(line)?;
    let mut reply = backend.read_reply()?;
    ehlo::strip_keyword(&mut reply);
    strip_proxy_only(&mut reply);
    Ok(reply)
}

/// XCLIENT and XFORWARD are for the MTA's trusted proxy (us), never for a
/// client: they are not offered to it, and refused (502) if sent.
fn strip_proxy_only(reply: &mut Reply) {
    ehlo::strip_capability(reply, "XCLIENT");
    ehlo::strip_capability(reply, "XFORWARD");
}
