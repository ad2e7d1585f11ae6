//! The outbound session: sendmail speaks SMTP to us on a pipe; we find the
//! remote mail exchanger, relay the dialogue, and encrypt when the remote
//! offers a suite we allow. Every reply sendmail sees is the remote's real
//! reply or a 4xx of our own, so a failure leaves the message queued.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dns::{self, Resolver};
use crate::keys::LazyHostKey;
use crate::peer::{Peer, Traffic};
use crate::peers::{KnownPeers, Pinned};
use crate::policy::{self, Observation, Policy, PolicyMap, Verdict};
use crate::relay::{self, RelayOptions, Step};
use crate::smtp::{ehlo, Reply, Verb};
use crate::static_key::StaticIdentity;
use crate::suite::{SuiteId, SuitePolicy};
use crate::summary::{self, Mx, Outcome, Side, Summary};
use crate::switch::ClientSide;
use crate::{cert_cache, limits, switch, Error};

pub struct OutboundConfig {
    pub port: u16,
    /// The RSA host key, read only if a server offers nothing but RSA-BLOWFISH.
    pub key: LazyHostKey,
    /// The static key and certificate of handshake v2.
    pub identity: Option<Arc<StaticIdentity>>,
    pub known_peers: KnownPeers,
    pub default_policy: Policy,
    pub policy_map: PolicyMap,
    pub resolver: Resolver,
    pub suites: SuitePolicy,
    pub timeout: Duration,
    /// The whole delivery's limit (--session-timeout).
    pub session_timeout: Duration,
    pub relay: RelayOptions,
}

/// Where the dialogue with sendmail is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Greeted; sendmail's first EHLO decides plain or encrypted.
    ExpectEhlo,
    /// Greeted after HELO (or a failed EHLO): the policy is checked at the first MAIL.
    Greeted,
    /// Policy passed: relaying transactions.
    Relaying,
}

struct Session<'c> {
    cfg: &'c OutboundConfig,
    sendmail: Peer,
    remote: Peer,
    /// "name[address]" for logs.
    mx_host: String,
    /// The MX host name as DNS gave it (or the literal), lower-cased: the known-peers key.
    mx_name: String,
    dest: String,
    policy: Policy,
    phase: Phase,
    summary: Summary,
    /// The server's v2 certificate from an XX handshake: cached for IK once a message is delivered.
    server_cert: Option<Vec<u8>>,
}

/// Run one delivery to `dest` (sendmail's $h) for the sendmail on `sendmail`.
pub fn deliver(dest: &str, mut sendmail: Peer, cfg: &OutboundConfig) -> Summary {
    let session_end = Instant::now() + cfg.session_timeout;
    sendmail.set_session_end(session_end);
    let policy = cfg.policy_map.lookup(dest, cfg.default_policy);
    let mut summary = Summary::new(Side::Outbound {
        dest: dest.to_string(),
        mx: None,
        policy,
        verdict: summary::Verdict::Unchecked,
        last_reply: String::new(),
    });
    let traffic = Traffic::default();
    let (remote, mx, greeting) = match connect(dest, cfg, &traffic, session_end) {
        Ok(x) => x,
        Err(e) => {
            // No remote: greet sendmail with the error so it defers (4xx) or bounces (5xx).
            let reply = e.smtp_reply();
            set_last_reply(&mut summary, &reply);
            summary.outcome = Outcome::Error(e.to_string());
            let _ = sendmail.send_reply(&reply);
            finish_with_sendmail(&mut sendmail);
            return summary;
        }
    };
    let mx_host = format!("{}[{}]", mx.host, mx.addr);
    let mx_name = mx.host.to_ascii_lowercase();
    if let Side::Outbound { mx: m, .. } = &mut summary.side {
        *m = Some(mx);
    }
    let mut s = Session {
        cfg,
        sendmail,
        remote,
        mx_host,
        mx_name,
        dest: dest.to_string(),
        policy,
        phase: Phase::ExpectEhlo,
        summary,
        server_cert: None,
    };
    if let Err(e) = s.run(greeting) {
        s.fail(&e);
        s.summary.outcome = Outcome::Error(e.to_string());
    }
    let mut summary = s.summary;
    summary.bytes_out = traffic.sent.get();
    summary.bytes_in = traffic.received.get();
    summary
}

fn set_last_reply(summary: &mut Summary, reply: &Reply) {
    if let Side::Outbound { last_reply, .. } = &mut summary.side {
        *last_reply = reply.summary();
    }
}

fn set_verdict(summary: &mut Summary, v: summary::Verdict) {
    if let Side::Outbound { verdict, .. } = &mut summary.side {
        *verdict = v;
    }
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
    traffic: &Traffic,
    session_end: Instant,
) -> Result<(Peer, Mx, Reply), Error> {
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
        match try_target(t.addr, cfg, traffic, session_end) {
            // Like Postfix (smtp_skip_5xx_greeting), a host that will not talk to
            // us is skipped for the next; if none will, the message stays queued.
            Ok((peer, greeting)) if greeting.code == 220 => {
                let host = t.mx_host.clone();
                return Ok((peer, Mx { host, addr: t.addr }, greeting));
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
    traffic: &Traffic,
    session_end: Instant,
) -> Result<(Peer, Reply), Error> {
    let s = crate::netio::connect_one(addr, None, limits::CONNECT_TIMEOUT)
        .map_err(Error::io("remote"))?;
    let mut peer = Peer::from_tcp(s, "remote", cfg.timeout, Some(traffic))?;
    peer.set_session_end(session_end);
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
                (Phase::ExpectEhlo, Verb::Ehlo) => {
                    if let Some(reason) = self.ehlo(&line)? {
                        return self.defer_by_policy(&reason);
                    }
                    continue;
                }
                (Phase::ExpectEhlo, Verb::Helo) => self.phase = Phase::Greeted,
                // The policy is decided before the first MAIL, and before a
                // STARTTLS, after which we could only pipe bytes we cannot see.
                (Phase::Greeted | Phase::ExpectEhlo, Verb::Mail | Verb::StartTls) => {
                    if let Some(reason) = self.check_policy()? {
                        return self.defer_by_policy(&reason);
                    }
                    self.phase = Phase::Relaying;
                }
                _ => {}
            }
            if let Some(done) = self.relay(&line)? {
                return done;
            }
        }
    }

    /// Relay one command; `Some(result)` when the session is over.
    fn relay(&mut self, line: &[u8]) -> Result<Option<Result<(), Error>>, Error> {
        let (step, reply) =
            relay::relay_command(line, &mut self.sendmail, &mut self.remote, self.cfg.relay)?;
        // The log line reports what became of the message, not the 221 to QUIT.
        if crate::smtp::command::verb(line) != Verb::Quit {
            set_last_reply(&mut self.summary, &reply);
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
            Step::Pipe => Some(relay::pipe(self.sendmail.take(), self.remote.take())),
        })
    }

    /// Answer sendmail's command with a 4xx (the message stays queued) and end.
    fn defer_by_policy(&mut self, reason: &str) -> Result<(), Error> {
        let reply = Reply::new(421, &format!("4.7.5 {reason}"));
        set_last_reply(&mut self.summary, &reply);
        self.sendmail.send_reply(&reply)?;
        let _ = self.remote.send(b"QUIT\r\n");
        self.remote.close();
        finish_with_sendmail(&mut self.sendmail);
        self.summary.outcome = Outcome::DeferredByPolicy;
        Ok(())
    }

    /// sendmail's first EHLO: send it on; if the remote offers a suite we
    /// allow, negotiate and give sendmail the reply to the EHLO repeated
    /// inside the encrypted channel. `Some(reason)`: the pin check refused
    /// the server during the handshake, before anything of sendmail's but
    /// this EHLO reached it.
    fn ehlo(&mut self, line: &[u8]) -> Result<Option<String>, Error> {
        self.phase = Phase::Greeted;
        self.remote.send(line)?;
        let mut reply = self.remote.read_reply()?;
        let offered = ehlo::offered_suites(&reply);
        let choice = offered.as_deref().and_then(|o| self.cfg.suites.choose(o));
        let mut encrypted = false;
        if let (Some(offered), Some(suite)) = (&offered, choice) {
            let key = match suite {
                SuiteId::RsaBlowfish => Some(self.cfg.key.get()?),
                _ => None,
            };
            let known = self.cfg.known_peers.lookup(&self.mx_name).ok().flatten();
            let cached = known.as_ref().and_then(|k| {
                cert_cache::lookup(self.cfg.known_peers.path(), &self.mx_name, &k.fingerprint)
            });
            let side = ClientSide {
                key: key.as_deref(),
                identity: self.cfg.identity.as_deref(),
                cached: cached.as_ref(),
            };
            let (mut refused, mut moved) = (None, None);
            let (cfg, dest, mx_name, policy) = (self.cfg, &self.dest, &self.mx_name, self.policy);
            let mut pin_check = |fp: &str, vouch: Option<&str>| {
                let (verdict, from) = verdict_for(cfg, dest, mx_name, policy, Some((fp, vouch)))?;
                moved = moved.take().or(from);
                match verdict {
                    Verdict::Defer(reason) => {
                        refused = Some(reason.clone());
                        Err(Error::Policy(reason))
                    }
                    _ => Ok(()),
                }
            };
            let result = switch::request(
                &mut self.remote,
                &side,
                suite,
                offered,
                line,
                &mut pin_check,
            );
            self.summary.pin_moved_from = moved;
            if let Some(reason) = refused {
                self.summary.peer_fingerprint = None;
                return Ok(Some(self.deferring(reason)));
            }
            let (mut inner, on) = result.map_err(|e| {
                Error::Policy(format!(
                    "{} offered {offered} but the {suite} handshake failed: {e}",
                    self.mx_host
                ))
            })?;
            log::info!(
                "{}: encrypted with {suite}, peer {}",
                self.mx_host,
                on.peer_fingerprint.as_deref().unwrap_or("-")
            );
            self.summary.suite = on.suite;
            self.summary.peer_fingerprint = on.peer_fingerprint;
            self.server_cert = on.server_cert;
            // TLS inside our channel would add nothing and would hide the
            // dialogue from us (no pin after delivery): not offered to sendmail.
            ehlo::strip_capability(&mut inner, "STARTTLS");
            (reply, encrypted) = (inner, true);
        } else if let Some(o) = offered {
            log::info!(
                "{}: offers XBLACKPONY {o}, none of which we allow; staying plain",
                self.mx_host
            );
        }
        // Decided now, before sendmail says anything more (AUTH, MAIL): also
        // for a peer that offers nothing we use, which may be a server whose
        // keyword was stripped.
        if encrypted || reply.code == 250 {
            if let Some(reason) = self.check_policy()? {
                return Ok(Some(reason));
            }
            self.phase = Phase::Relaying;
        }
        ehlo::strip_keyword(&mut reply);
        set_last_reply(&mut self.summary, &reply);
        self.sendmail.send_reply(&reply)?;
        Ok(None)
    }

    /// The policy verdict for this session; `Some(reason)` means defer.
    fn check_policy(&mut self) -> Result<Option<String>, Error> {
        let fp = self.summary.peer_fingerprint.as_deref().map(|f| (f, None));
        let (verdict, _) = verdict_for(self.cfg, &self.dest, &self.mx_name, self.policy, fp)?;
        match verdict {
            Verdict::Proceed => set_verdict(&mut self.summary, summary::Verdict::Ok),
            Verdict::ProceedWithWarning(w) => {
                log::warn!("{} ({}): {w}", self.mx_host, self.dest);
                set_verdict(&mut self.summary, summary::Verdict::Warn);
            }
            Verdict::Defer(reason) => return Ok(Some(self.deferring(reason))),
        }
        Ok(None)
    }

    /// The policy defers this delivery for `reason`: logged and summarized.
    fn deferring(&mut self, reason: String) -> String {
        log::error!("{} ({}): deferring: {reason}", self.mx_host, self.dest);
        set_verdict(&mut self.summary, summary::Verdict::Defer);
        reason
    }

    /// A message was accepted: pin its key where it is new
    /// ([`KnownPeers::record_delivery`], which never replaces a pinned key).
    fn delivered(&mut self) {
        let (Some(fp), Some(suite)) = (&self.summary.peer_fingerprint, self.summary.suite) else {
            return;
        };
        if suite.is_rot() {
            return;
        }
        let recorded =
            self.cfg
                .known_peers
                .record_delivery(&self.dest, &self.mx_name, fp, &suite.to_string());
        let host_pinned = match recorded {
            Ok((domain, host)) => {
                let refused = |p: Pinned| matches!(p, Pinned::Kept | Pinned::Untrusted);
                if refused(domain) || refused(host) {
                    log::warn!(
                        "{} ({}): key {fp} not pinned; the pinned keys stay until \
                         blackpony-mailer --forget",
                        self.mx_host,
                        self.dest
                    );
                }
                matches!(host, Pinned::New | Pinned::Unchanged)
            }
            Err(e) => {
                log::error!("cannot record the key of {}: {e}", self.mx_host);
                false
            }
        };
        // The cached certificate goes with the host's pinned key only.
        if let Some(cert) = self.server_cert.as_ref().filter(|_| host_pinned) {
            let path = self.cfg.known_peers.path();
            if let Err(e) = cert_cache::store(path, &self.mx_name, cert) {
                log::warn!("cannot cache the static key of {}: {e}", self.mx_host);
            }
        }
    }

    /// After an error: sendmail gets a 4xx (the message stays queued), the
    /// remote connection is dropped mid-transaction so nothing half-done is delivered.
    fn fail(&mut self, e: &Error) {
        log::warn!("{}: {e}", self.mx_host);
        let reply = e.smtp_reply();
        set_last_reply(&mut self.summary, &reply);
        if !matches!(e, Error::Closed("sendmail")) {
            let _ = self.sendmail.send_reply(&reply);
            finish_with_sendmail(&mut self.sendmail);
        }
    }
}

/// The policy's verdict on what was seen of `mx_name`, an MX of `dest`:
/// `fp` its key fingerprint if encrypted (with the old key that vouches for
/// it by a continuity statement, if any), None if plain. A rotation signed
/// by the pinned key moves the pins first; the key they moved from comes
/// back with the verdict.
fn verdict_for(
    cfg: &OutboundConfig,
    dest: &str,
    mx_name: &str,
    policy: Policy,
    fp: Option<(&str, Option<&str>)>,
) -> Result<(Verdict, Option<String>), Error> {
    let store = |e: crate::peers::PeersError| Error::Config(e.to_string());
    let mut known = cfg.known_peers.known(dest, mx_name).map_err(store)?;
    let mut moved = None;
    if let Some((new, Some(old))) = fp {
        if policy::follows_rotation(&known, new, old) {
            if cfg
                .known_peers
                .move_pin(dest, mx_name, old, new)
                .map_err(store)?
            {
                moved = Some(old.to_owned());
                log::info!("{mx_name} ({dest}): pin moved (continuity statement by the old key): old={old} new={new}");
            }
            known = cfg.known_peers.known(dest, mx_name).map_err(store)?;
        }
    }
    let seen = match fp.map(|(fp, _)| fp) {
        Some(fp) => Observation::Encrypted {
            fingerprint: fp.to_string(),
        },
        None => Observation::Plain,
    };
    Ok((policy::decide(policy, &known, &seen), moved))
}

/// Whether a command, once answered 250, completes a message.
fn ends_message(line: &[u8]) -> bool {
    match crate::smtp::command::verb(line) {
        Verb::Data => true,
        Verb::Bdat => crate::smtp::command::bdat_args(line).is_some_and(|(_, last)| last),
        _ => false,
    }
}
