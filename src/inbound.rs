//! The inbound session: one client connection relayed to the real MTA, with
//! the XBLACKPONY keyword added to the EHLO reply and the negotiation handled
//! here. The explicit [`Phase`] decides what is allowed next.

use std::io::Write;
use std::io::{Cursor, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::{BoxRead, BoxSink};
use crate::keys::HostKey;
use crate::relay::{self, Counted, Counter, Peer, RelayOptions, Step};
use crate::smtp::command::arguments;
use crate::smtp::{ehlo, LineReader, Reply, Verb};
use crate::suite::keyed::ServerAwaitKey;
use crate::suite::message::{self, CLIENT_KEY};
use crate::suite::rot::{RotReader, RotWriter};
use crate::suite::{SuiteId, SuitePolicy};
use crate::wire::base64;
use crate::wire::record::{RecordReader, RecordWriter};
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
    pub suites: SuitePolicy,
    pub relay: RelayOptions,
    /// None when no key could be loaded: RSA-BLOWFISH is then not offered.
    pub key: Option<Arc<HostKey>>,
}

/// The client connection as the launcher handed it to us.
pub struct ClientConn {
    pub reader: BoxRead,
    pub writer: BoxSink,
    /// The client's and our address; None for a local debugging session.
    pub addrs: Option<(SocketAddr, SocketAddr)>,
}

impl ClientConn {
    /// A live socket: bytes after a switch command are an injection attempt.
    fn is_socket(&self) -> bool {
        self.addrs.is_some()
    }
}

/// Where the session is; named after what may come next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Plain SMTP; the keyword is offered, negotiation allowed after EHLO and before MAIL.
    Plain { ehlo_seen: bool, mail_seen: bool },
    /// Encrypted; the client must say EHLO again before anything else.
    ExpectInnerEhlo,
    /// Encrypted and greeted: everything is relayed.
    Encrypted,
}

/// What the per-connection log line reports.
pub struct Summary {
    pub client: String,
    pub suite: String,
    pub peer_fingerprint: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub started: Instant,
    pub outcome: String,
}

impl Summary {
    pub fn log_line(&self) -> String {
        format!(
            "session client={} suite={} peer={} in={} out={} duration={:.3}s end={}",
            self.client,
            self.suite,
            self.peer_fingerprint,
            self.bytes_in,
            self.bytes_out,
            self.started.elapsed().as_secs_f64(),
            self.outcome
        )
    }
}

struct Session<'c> {
    cfg: &'c InboundConfig,
    client: Peer,
    backend: Peer,
    phase: Phase,
    is_socket: bool,
    offer: String,
    suite: Option<SuiteId>,
    peer_fingerprint: Option<String>,
}

/// Serve one connection to its end. Never panics on peer input; every
/// failure ends in a reply to the client where one is still possible.
pub fn serve(conn: ClientConn, cfg: &InboundConfig) -> Summary {
    let started = Instant::now();
    let addrs = conn.addrs;
    let is_socket = conn.is_socket();
    let (count_in, count_out) = (Counter::default(), Counter::default());
    let mut client = Peer::new(
        Box::new(Counted::new(conn.reader, &count_in)),
        Box::new(Counted::new(conn.writer, &count_out)),
        "client",
    );
    let mut summary = Summary {
        client: addrs
            .map(|(p, _)| p.to_string())
            .unwrap_or_else(|| "local".into()),
        suite: "plain".into(),
        peer_fingerprint: "-".into(),
        bytes_in: 0,
        bytes_out: 0,
        started,
        outcome: "quit".into(),
    };
    match connect_backend(cfg, addrs) {
        Err(e) => {
            let _ = client.send_reply(&e.smtp_reply());
            client.close();
            summary.outcome = format!("error: {e}");
        }
        Ok(backend) => {
            let offer = cfg.suites.server_offer(cfg.key.is_some());
            let mut s = Session {
                cfg,
                client,
                backend,
                phase: Phase::Plain {
                    ehlo_seen: false,
                    mail_seen: false,
                },
                is_socket,
                offer,
                suite: None,
                peer_fingerprint: None,
            };
            if let Err(e) = s.run(addrs) {
                s.fail(&e);
                summary.outcome = format!("error: {e}");
            }
            if let Some(suite) = s.suite {
                summary.suite = suite.to_string();
            }
            if let Some(fp) = s.peer_fingerprint {
                summary.peer_fingerprint = fp;
            }
        }
    }
    summary.bytes_in = count_in.get();
    summary.bytes_out = count_out.get();
    summary
}

fn connect_backend(
    cfg: &InboundConfig,
    addrs: Option<(SocketAddr, SocketAddr)>,
) -> Result<Peer, Error> {
    let stream = crate::netio::connect(
        &cfg.backend,
        cfg.source,
        limits::CONNECT_TIMEOUT,
        cfg.timeout,
    )
    .map_err(|e| Error::Backend(format!("cannot connect to {}: {e}", cfg.backend)))?;
    let header = match cfg.passing {
        ClientAddressPassing::ProxyV1 => Some(proxy_v1(addrs)),
        ClientAddressPassing::ProxyV2 => Some(proxy_v2(addrs)),
        _ => None,
    };
    let reader = stream
        .try_clone()
        .map_err(|e| Error::Backend(e.to_string()))?;
    let mut peer = Peer::new(Box::new(reader), Box::new(stream), "backend");
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
        self.client.send_reply(&greeting)?;
        loop {
            let line = relay::read_command(&mut self.client, self.cfg.relay)?;
            let v = crate::smtp::command::verb(&line);
            match (self.phase, v) {
                (_, Verb::XBlackpony) => self.negotiate(&line)?,
                (Phase::Plain { .. }, Verb::Ehlo) => {
                    self.backend.send(&line)?;
                    let mut reply = self.backend.read_reply()?;
                    // The MTA must not offer the keyword itself; only we do.
                    ehlo::strip_keyword(&mut reply);
                    if !self.offer.is_empty() {
                        ehlo::add_keyword(&mut reply, &self.offer);
                    }
                    self.phase = Phase::Plain {
                        ehlo_seen: reply.code == 250,
                        mail_seen: false,
                    };
                    self.client.send_reply(&reply)?;
                }
                (Phase::Plain { .. }, Verb::Helo) => {
                    self.phase = Phase::Plain {
                        ehlo_seen: false,
                        mail_seen: false,
                    };
                    self.relay(&line)?;
                }
                (Phase::Plain { ehlo_seen, .. }, Verb::Mail) => {
                    self.phase = Phase::Plain {
                        ehlo_seen,
                        mail_seen: true,
                    };
                    self.relay(&line)?;
                }
                (Phase::ExpectInnerEhlo | Phase::Encrypted, Verb::Ehlo | Verb::Helo) => {
                    self.backend.send(&line)?;
                    let mut reply = self.backend.read_reply()?;
                    // Inside the channel the keyword is never offered.
                    ehlo::strip_keyword(&mut reply);
                    if reply.code == 250 {
                        self.phase = Phase::Encrypted;
                    }
                    self.client.send_reply(&reply)?;
                }
                (Phase::ExpectInnerEhlo, v)
                    if !matches!(v, Verb::Quit | Verb::Noop | Verb::Rset) =>
                {
                    self.refuse(503, "5.5.1 Encryption is on: send EHLO again first")?;
                }
                _ => match self.relay(&line)? {
                    Step::Continue => {}
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
        let (cr, cw) = relay::detached();
        let (br, bw) = relay::detached();
        let (cr, cw) = self.client.replace(cr, cw);
        let (br, bw) = self.backend.replace(br, bw);
        relay::pipe(
            Peer {
                reader: cr,
                writer: cw,
                name: "client",
            },
            Peer {
                reader: br,
                writer: bw,
                name: "backend",
            },
        )
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
        let args = arguments(line);
        let Some(first) = args.first() else {
            return self.refuse(501, "5.5.4 Syntax: XBLACKPONY <suite> [arguments]");
        };
        let suite = match SuiteId::parse(first) {
            Some(s) if self.cfg.suites.accepts(s) && (s.is_rot() || self.cfg.key.is_some()) => s,
            _ => return self.refuse(504, "5.5.4 Suite not supported"),
        };
        if let SuiteId::Rot(n) = suite {
            if args.len() != 1 {
                return self.refuse(501, "5.5.4 ROTn takes no arguments");
            }
            self.check_injection()?;
            self.client
                .send_reply(&Reply::new(220, &format!("2.0.0 Go ahead with ROT{n}")))?;
            let (raw, rest, writer) = self.client.take_streams();
            let src: BoxRead = Box::new(Cursor::new(rest).chain(raw));
            self.client.replace(
                LineReader::new(Box::new(RotReader::new(src, n))),
                Box::new(RotWriter::new(writer, n)),
            );
        } else {
            let key = self
                .cfg
                .key
                .clone()
                .expect("keyed suites are offered only with a key");
            let Some(hello) = args
                .get(1)
                .filter(|_| args.len() == 2)
                .and_then(|a| base64::decode(a))
            else {
                return self.refuse(
                    501,
                    &format!("5.5.4 Syntax: XBLACKPONY {suite} <base64 ClientHello>"),
                );
            };
            let Some((server_hello, state)) = ServerAwaitKey::new(suite, &key, &self.offer, &hello)
            else {
                return self.refuse(501, "5.5.4 Malformed ClientHello");
            };
            self.check_injection()?;
            // The go-ahead and our hello in one write: one flight.
            let mut flight = format!("220 2.0.0 Go ahead with {suite}\r\n").into_bytes();
            flight.extend_from_slice(&server_hello);
            self.client.send(&flight)?;
            let (raw, rest, mut writer) = self.client.take_streams();
            // Buffered: unbuffered, every record costs two reads (header, body).
            let mut src: BoxRead = Box::new(std::io::BufReader::with_capacity(
                limits::COPY_BUFFER,
                Cursor::new(rest).chain(raw),
            ));
            let client_key = message::read(&mut src, CLIENT_KEY).map_err(|_| Error::Crypto)?;
            let (finished, keys) = state.on_client_key(&client_key)?;
            writer
                .write_all(&finished)
                .and_then(|_| writer.flush())
                .map_err(Error::io("client"))?;
            self.peer_fingerprint = Some(keys.peer_fingerprint);
            self.client.replace(
                LineReader::new(Box::new(RecordReader::new(src, keys.opener))),
                Box::new(RecordWriter::new(writer, keys.sealer)),
            );
        }
        log::info!("encryption on: suite={suite}");
        self.suite = Some(suite);
        self.phase = Phase::ExpectInnerEhlo;
        Ok(())
    }

    /// On a live socket, anything the client sent after the switch command
    /// and before our answer was sent before it could know the answer: an
    /// injection attempt (the CVE-2011-0411 bug class). In a piped debugging
    /// session those bytes are simply the rest of the recording.
    fn check_injection(&self) -> Result<(), Error> {
        if self.is_socket && !self.client.reader.buffered().is_empty() {
            return Err(Error::Injection);
        }
        Ok(())
    }
}
