//! The outbound session: sendmail speaks SMTP to us on a pipe; we find the
//! remote mail exchanger, relay the dialogue, and encrypt when the remote
//! offers a suite we allow. Every reply sendmail sees is the remote's real
//! reply or a 4xx of our own, so a failure leaves the message queued.

use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::BoxRead;
use crate::dns::{self, Resolver};
use crate::keys::HostKey;
use crate::peers::KnownPeers;
use crate::policy::{self, Observation, Policy, PolicyMap, Verdict};
use crate::relay::{self, Counted, Counter, Peer, RelayOptions, Step};
use crate::smtp::{ehlo, LineReader, Reply, Verb};
use crate::suite::keyed::ClientStart;
use crate::suite::message::{self, SERVER_FINISHED, SERVER_HELLO};
use crate::suite::rot::{RotReader, RotWriter};
use crate::suite::{SuiteId, SuitePolicy};
use crate::wire::record::{RecordReader, RecordWriter};
use crate::{limits, Error};

pub struct OutboundConfig {
    pub port: u16,
    pub key: Option<Arc<HostKey>>,
    pub known_peers: KnownPeers,
    pub default_policy: Policy,
    pub policy_map: PolicyMap,
    pub resolver: Resolver,
    pub suites: SuitePolicy,
    pub timeout: Duration,
    pub relay: RelayOptions,
}

/// Where the dialogue with sendmail is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Greeted; sendmail's first EHLO decides plain or encrypted.
    ExpectEhlo,
    /// EHLO done; the policy is checked at the first MAIL.
    Greeted,
    /// Policy passed: relaying transactions.
    Relaying,
}

/// What the per-delivery log line reports.
pub struct Summary {
    pub dest: String,
    pub mx: String,
    pub suite: String,
    pub peer_fingerprint: String,
    pub policy: String,
    pub verdict: String,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub started: Instant,
    pub last_reply: String,
    pub outcome: String,
}

impl Summary {
    pub fn log_line(&self) -> String {
        format!(
            "delivery dest={} mx={} suite={} peer={} policy={} verdict={} out={} in={} duration={:.3}s reply=\"{}\" end={}",
            self.dest,
            self.mx,
            self.suite,
            self.peer_fingerprint,
            self.policy,
            self.verdict,
            self.bytes_out,
            self.bytes_in,
            self.started.elapsed().as_secs_f64(),
            self.last_reply,
            self.outcome
        )
    }
}

struct Session<'c> {
    cfg: &'c OutboundConfig,
    sendmail: Peer,
    remote: Peer,
    /// "name[address]" for logs.
    mx_host: String,
    /// The MX host name as DNS gave it (or the literal): the known-peers key.
    mx_name: String,
    policy: Policy,
    phase: Phase,
    suite: Option<SuiteId>,
    peer_fingerprint: Option<String>,
    summary: Summary,
}

/// Run one delivery to `dest` (sendmail's $h) for the sendmail on `sendmail`.
pub fn deliver(dest: &str, mut sendmail: Peer, cfg: &OutboundConfig) -> Summary {
    let policy = cfg.policy_map.lookup(dest, cfg.default_policy);
    let mut summary = Summary {
        dest: dest.to_string(),
        mx: "-".into(),
        suite: "plain".into(),
        peer_fingerprint: "-".into(),
        policy: policy.to_string(),
        verdict: "-".into(),
        bytes_out: 0,
        bytes_in: 0,
        started: Instant::now(),
        last_reply: String::new(),
        outcome: "quit".into(),
    };
    let (count_out, count_in) = (Counter::default(), Counter::default());
    let (remote, mx_name, mx_host, greeting) = match connect(dest, cfg, &count_out, &count_in) {
        Ok(x) => x,
        Err(e) => {
            // No remote: greet sendmail with the error so it defers (4xx) or bounces (5xx).
            let reply = e.smtp_reply();
            summary.last_reply = reply.summary();
            summary.outcome = format!("error: {e}");
            let _ = sendmail.send_reply(&reply);
            finish_with_sendmail(&mut sendmail);
            return summary;
        }
    };
    summary.mx = mx_host.clone();
    let mut s = Session {
        cfg,
        sendmail,
        remote,
        mx_host,
        mx_name,
        policy,
        phase: Phase::ExpectEhlo,
        suite: None,
        peer_fingerprint: None,
        summary,
    };
    if let Err(e) = s.run(greeting) {
        s.fail(&e);
        s.summary.outcome = format!("error: {e}");
    }
    let mut summary = s.summary;
    summary.suite = s
        .suite
        .map(|x| x.to_string())
        .unwrap_or_else(|| "plain".into());
    summary.peer_fingerprint = s.peer_fingerprint.unwrap_or_else(|| "-".into());
    summary.bytes_out = count_out.get();
    summary.bytes_in = count_in.get();
    summary
}

/// After an error greeting: answer sendmail's QUIT (or anything) until it goes.
fn finish_with_sendmail(sendmail: &mut Peer) {
    while let Ok(line) = sendmail.read_line(limits::MAX_LINE) {
        if crate::smtp::command::verb(&line) == Verb::Quit {
            let _ = sendmail.send_reply(&Reply::new(221, "2.0.0 Bye"));
            break;
        }
        let _ = sendmail.send_reply(&Reply::new(
            421,
            "4.4.1 No connection to the remote host, try again later",
        ));
    }
    sendmail.close();
}

/// Resolve and connect to the first mail exchanger that greets us. A host
/// that refuses, times out or greets with 4xx is skipped for the next.
fn connect(
    dest: &str,
    cfg: &OutboundConfig,
    out: &Counter,
    inn: &Counter,
) -> Result<(Peer, String, String, Reply), Error> {
    let targets = dns::resolve_targets(&cfg.resolver, dest, cfg.port).map_err(|e| {
        if e.is_permanent() {
            Error::Permanent(format!("{dest}: {e}"))
        } else {
            Error::Unreachable(format!("{dest}: DNS: {e}"))
        }
    })?;
    let mut tried = Vec::new();
    for t in &targets {
        let label = format!("{}[{}]", t.mx_host, t.addr);
        match try_target(t.addr, cfg, out, inn) {
            // Like Postfix (smtp_skip_5xx_greeting), a host that will not talk to
            // us is skipped for the next; if none will, the message stays queued.
            Ok((peer, greeting)) if greeting.code == 220 => {
                return Ok((peer, t.mx_host.to_ascii_lowercase(), label, greeting))
            }
            Ok((mut peer, greeting)) => {
                log::warn!(
                    "{label}: greeting {}; trying the next MX",
                    greeting.summary()
                );
                let _ = peer.send(b"QUIT\r\n");
                tried.push(format!("{label}: {}", greeting.summary()));
            }
            Err(e) => {
                log::warn!("{label}: {e}; trying the next MX");
                tried.push(format!("{label}: {e}"));
            }
        }
    }
    Err(Error::Unreachable(format!(
        "{dest}: no MX answered ({})",
        tried.join("; ")
    )))
}

fn try_target(
    addr: SocketAddr,
    cfg: &OutboundConfig,
    out: &Counter,
    inn: &Counter,
) -> Result<(Peer, Reply), Error> {
    let s = crate::netio::connect_one(addr, None, limits::CONNECT_TIMEOUT)
        .map_err(Error::io("remote"))?;
    crate::netio::set_timeouts(&s, cfg.timeout).map_err(Error::io("remote"))?;
    let _ = s.set_nodelay(true);
    let r = s.try_clone().map_err(Error::io("remote"))?;
    let mut peer = Peer::new(
        Box::new(Counted::new(r, inn)),
        Box::new(Counted::new(s, out)),
        "remote",
    );
    let greeting = peer.read_reply()?;
    Ok((peer, greeting))
}

impl Session<'_> {
    fn run(&mut self, greeting: Reply) -> Result<(), Error> {
        self.sendmail.send_reply(&greeting)?;
        loop {
            let line = relay::read_command(&mut self.sendmail, self.cfg.relay)?;
            let v = crate::smtp::command::verb(&line);
            match (self.phase, v) {
                (Phase::ExpectEhlo, Verb::Ehlo) => self.ehlo(&line)?,
                (Phase::ExpectEhlo, Verb::Helo) => {
                    self.phase = Phase::Greeted;
                    self.relay(&line)?;
                }
                // The policy is decided before the first MAIL, and before a
                // STARTTLS, after which we could only pipe bytes we cannot see.
                (Phase::Greeted | Phase::ExpectEhlo, Verb::Mail | Verb::StartTls) => {
                    if let Some(reason) = self.check_policy()? {
                        return self.defer_by_policy(&reason);
                    }
                    self.phase = Phase::Relaying;
                    if v == Verb::Mail {
                        self.relay(&line)?;
                    } else if let Some(done) = self.relay_other(&line)? {
                        return done;
                    }
                }
                _ => {
                    if let Some(done) = self.relay_other(&line)? {
                        return done;
                    }
                }
            }
        }
    }

    /// Relay any other command; `Some(result)` when the session is over.
    fn relay_other(&mut self, line: &[u8]) -> Result<Option<Result<(), Error>>, Error> {
        let (step, reply) =
            relay::relay_command(line, &mut self.sendmail, &mut self.remote, self.cfg.relay)?;
        // The log line reports what became of the message, not the 221 to QUIT.
        if crate::smtp::command::verb(line) != Verb::Quit {
            self.summary.last_reply = reply.summary();
        }
        if reply.code == 250 && ends_message(line) {
            self.delivered();
        }
        Ok(match step {
            Step::Continue => None,
            Step::Quit => {
                self.sendmail.close();
                self.remote.finish();
                Some(Ok(()))
            }
            Step::Pipe => Some(self.pipe()),
        })
    }

    /// Answer sendmail's command with a 4xx (the message stays queued) and end.
    fn defer_by_policy(&mut self, reason: &str) -> Result<(), Error> {
        let reply = Reply::new(421, &format!("4.7.5 {reason}"));
        self.summary.last_reply = reply.summary();
        self.sendmail.send_reply(&reply)?;
        let _ = self.remote.send(b"QUIT\r\n");
        self.remote.close();
        finish_with_sendmail(&mut self.sendmail);
        self.summary.outcome = "deferred by policy".into();
        Ok(())
    }

    fn relay(&mut self, line: &[u8]) -> Result<(), Error> {
        let (_, reply) =
            relay::relay_command(line, &mut self.sendmail, &mut self.remote, self.cfg.relay)?;
        self.summary.last_reply = reply.summary();
        Ok(())
    }

    fn pipe(&mut self) -> Result<(), Error> {
        let (a, b) = relay::detached();
        let (c, d) = relay::detached();
        let (sr, sw) = self.sendmail.replace(a, b);
        let (rr, rw) = self.remote.replace(c, d);
        relay::pipe(
            Peer {
                reader: sr,
                writer: sw,
                name: "sendmail",
            },
            Peer {
                reader: rr,
                writer: rw,
                name: "remote",
            },
        )
    }

    /// sendmail's first EHLO: send it on; if the remote offers a suite we
    /// allow, negotiate and give sendmail the reply to the EHLO repeated
    /// inside the encrypted channel.
    fn ehlo(&mut self, line: &[u8]) -> Result<(), Error> {
        self.phase = Phase::Greeted;
        self.remote.send(line)?;
        let mut reply = self.remote.read_reply()?;
        let offered = ehlo::offered_suites(&reply);
        let choice = offered.as_deref().and_then(|o| self.cfg.suites.choose(o));
        if let (Some(offered), Some(suite)) = (&offered, choice) {
            let (mut inner, fp) = negotiate(
                &mut self.remote,
                self.cfg.key.as_deref(),
                suite,
                offered,
                line,
            )
            .map_err(|e| {
                Error::Policy(format!(
                    "{} offered {offered} but the {suite} handshake failed: {e}",
                    self.mx_host
                ))
            })?;
            log::info!(
                "{}: encrypted with {suite}, peer {}",
                self.mx_host,
                fp.as_deref().unwrap_or("-")
            );
            self.suite = Some(suite);
            self.peer_fingerprint = fp;
            ehlo::strip_keyword(&mut inner);
            // TLS inside our channel would add nothing and would hide the
            // dialogue from us (no pin after delivery): not offered to sendmail.
            ehlo::strip_capability(&mut inner, "STARTTLS");
            self.summary.last_reply = inner.summary();
            return self.sendmail.send_reply(&inner);
        }
        if let Some(o) = offered {
            log::info!(
                "{}: offers XBLACKPONY {o}, none of which we allow; staying plain",
                self.mx_host
            );
        }
        ehlo::strip_keyword(&mut reply);
        self.summary.last_reply = reply.summary();
        self.sendmail.send_reply(&reply)
    }

    /// The policy verdict for this session; `Some(reason)` means defer.
    fn check_policy(&mut self) -> Result<Option<String>, Error> {
        let known = self
            .cfg
            .known_peers
            .lookup(&self.mx_name)
            .map_err(|e| Error::Config(e.to_string()))?;
        let seen = match &self.peer_fingerprint {
            Some(fp) => Observation::Encrypted {
                fingerprint: fp.clone(),
            },
            None => Observation::Plain,
        };
        let verdict = policy::decide(self.policy, known.as_ref(), &seen);
        Ok(match verdict {
            Verdict::Proceed => {
                self.summary.verdict = "ok".into();
                None
            }
            Verdict::ProceedWithWarning(w) => {
                log::warn!("{} ({}): {w}", self.mx_host, self.summary.dest);
                self.summary.verdict = "warn".into();
                None
            }
            Verdict::Defer(reason) => {
                log::error!(
                    "{} ({}): deferring: {reason}",
                    self.mx_host,
                    self.summary.dest
                );
                self.summary.verdict = "defer".into();
                Some(reason)
            }
        })
    }

    /// A message was accepted: remember the peer's key.
    fn delivered(&mut self) {
        let (Some(fp), Some(suite)) = (&self.peer_fingerprint, self.suite) else {
            return;
        };
        if suite.is_rot() {
            return;
        }
        if let Err(e) = self
            .cfg
            .known_peers
            .record(&self.mx_name, fp, &suite.to_string())
        {
            log::error!("cannot record the key of {}: {e}", self.mx_host);
        }
    }

    /// After an error: sendmail gets a 4xx (the message stays queued), the
    /// remote connection is dropped mid-transaction so nothing half-done is delivered.
    fn fail(&mut self, e: &Error) {
        log::warn!("{}: {e}", self.mx_host);
        let reply = e.smtp_reply();
        self.summary.last_reply = reply.summary();
        if !matches!(e, Error::Closed("sendmail")) {
            let _ = self.sendmail.send_reply(&reply);
            finish_with_sendmail(&mut self.sendmail);
        }
    }
}

/// Whether a command, once answered 250, completes a message.
fn ends_message(line: &[u8]) -> bool {
    match crate::smtp::command::verb(line) {
        Verb::Data => true,
        Verb::Bdat => crate::smtp::command::bdat_args(line).is_some_and(|(_, last)| last),
        _ => false,
    }
}

/// Run the client side of the negotiation on `remote` and send `inner_ehlo`
/// inside the new channel. Returns the reply to the inner EHLO and the peer's
/// key fingerprint (for suites with keys).
pub fn negotiate(
    remote: &mut Peer,
    key: Option<&HostKey>,
    suite: SuiteId,
    offered: &str,
    inner_ehlo: &[u8],
) -> Result<(Reply, Option<String>), Error> {
    match suite {
        SuiteId::Rot(n) => {
            remote.send(format!("XBLACKPONY ROT{n}\r\n").as_bytes())?;
            expect_go_ahead(remote)?;
            // A server only speaks after our next command: replies queued
            // behind its 220 were sent before the switch (injection).
            if !remote.reader.buffered().is_empty() {
                return Err(Error::Injection);
            }
            let (raw, _rest, writer) = remote.take_streams();
            remote.replace(
                LineReader::new(Box::new(RotReader::new(raw, n))),
                Box::new(RotWriter::new(writer, n)),
            );
            remote.send(inner_ehlo)?;
            Ok((remote.read_reply()?, None))
        }
        keyed => {
            let key = key.ok_or_else(|| Error::Key(format!("no host key: cannot use {keyed}")))?;
            let start = ClientStart::new(keyed, key, offered).expect("a keyed suite");
            remote.send(format!("XBLACKPONY {keyed} {}\r\n", start.hello_base64()).as_bytes())?;
            expect_go_ahead(remote)?;
            let (raw, rest, writer) = remote.take_streams();
            // Buffered: unbuffered, every record costs two reads (header, body).
            let mut src: BoxRead = Box::new(std::io::BufReader::with_capacity(
                limits::COPY_BUFFER,
                Cursor::new(rest).chain(raw),
            ));
            let hello = message::read(&mut src, SERVER_HELLO).map_err(|_| Error::Crypto)?;
            let (flight, keys, awaiting) = start.on_server_hello(&hello)?;
            let mut w = RecordWriter::new(writer, keys.sealer);
            // Our key, our Finished and the inner EHLO in one flight.
            w.send_with_prefix(&flight, inner_ehlo)
                .map_err(Error::io("remote"))?;
            let finished = message::read(&mut src, SERVER_FINISHED).map_err(|_| Error::Crypto)?;
            awaiting.on_server_finished(&finished)?;
            remote.replace(
                LineReader::new(Box::new(RecordReader::new(src, keys.opener))),
                Box::new(w),
            );
            Ok((remote.read_reply()?, Some(keys.peer_fingerprint)))
        }
    }
}

fn expect_go_ahead(remote: &mut Peer) -> Result<(), Error> {
    let reply = remote.read_reply()?;
    if reply.code != 220 {
        return Err(Error::Protocol(format!(
            "XBLACKPONY refused: {}",
            reply.summary()
        )));
    }
    Ok(())
}
