//! blackpony-mailer: the outbound side, a sendmail prog mailer
//! (`A=blackpony-mailer $h`). sendmail speaks SMTP to it on stdin/stdout; it
//! finds the remote MX, relays, and encrypts when the remote runs blackpony.
//! Only wiring lives here.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use blackpony::cli;
use blackpony::dns::Resolver;
use blackpony::error::exit;
use blackpony::keys::LazyHostKey;
use blackpony::outbound::{self, OutboundConfig};
use blackpony::peer::Peer;
use blackpony::peers::KnownPeers;
use blackpony::policy::{Policy, PolicyMap};
use blackpony::relay::RelayOptions;
use blackpony::session_record;
use blackpony::suite::{SuiteId, CLIENT_DEFAULT};
use blackpony::summary::Outcome;
use blackpony::{logging, netio, Error};

const DEFAULT_KNOWN_PEERS: &str = "/var/lib/blackpony/known_peers";

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt("", "port", "remote SMTP port (default 25)", "N");
    o.optopt(
        "",
        "known-peers",
        &format!("file of remembered peer keys (default {DEFAULT_KNOWN_PEERS})"),
        "FILE",
    );
    o.optopt("", "policy", "tofu (default): defer (4xx) when a host or domain seen encrypted is now plain or shows a key not pinned for it, deliver in plain on first contact; may: deliver anyway with a warning, never re-pin; require: also defer anything not encrypted", "may|tofu|require");
    o.optopt(
        "",
        "policy-file",
        "per-destination policies, one `domain policy` per line (.domain for subdomains)",
        "FILE",
    );
    o.optopt(
        "",
        "dns",
        "ask this nameserver instead of those in /etc/resolv.conf",
        "ADDR:PORT",
    );
    o.optflag(
        "",
        "list-peers",
        "print the pins and exit, one per line: NAME FINGERPRINT SUITE FIRST-SEEN LAST-SEEN host|domain",
    );
    o.optopt(
        "",
        "forget",
        "forget the pins named NAME and exit: a domain (--forget example.org, all its keys) or an MX host (--forget mx1.example.org); a name that is both loses both",
        "NAME",
    );
    o.optflag(
        "",
        "pipe",
        "Postfix pipe(8) mode: HOST RECIPIENT... as arguments, the message on stdin, the result as a sysexits code",
    );
    o.optopt(
        "f",
        "sender",
        "envelope sender in --pipe mode (Postfix ${sender}; empty for bounces)",
        "ADDR",
    );
    o.optopt(
        "",
        "helo",
        "name to send in EHLO in --pipe mode (default: /etc/mailname or the host name)",
        "NAME",
    );
    cli::common_options(&mut o);
    o
}

fn usage(o: &getopts::Options) -> String {
    o.usage(
        "Usage: blackpony-mailer [--port N] [--key FILE] [--known-peers FILE] [--policy may|tofu|require]\n\
         \x20                       [--policy-file FILE] [--dns ADDR:PORT] [--allow-rot] [--log FILE]\n\
         \x20                       [--timeout SECS] [--session-timeout SECS] HOST\n\
         \x20      blackpony-mailer --pipe -f SENDER [options] HOST RECIPIENT...   (Postfix pipe(8))\n\
         \x20      blackpony-mailer --list-peers | --forget NAME | --fingerprint\n\n\
         The outbound side of blackpony, run by sendmail as a prog mailer with A=blackpony-mailer $h:\n\
         sendmail speaks SMTP to it on stdin/stdout. It looks up the MX hosts of HOST (or uses an\n\
         address literal [192.0.2.1] as is), connects to port 25, relays the dialogue, and encrypts\n\
         when the remote offers XBLACKPONY. Any failure the sender can retry ends in a 4xx reply,\n\
         so the message stays queued. Logs go to syslog (mail facility) or --log, never to\n\
         stdout or stderr, which are sendmail's pipe.\n\n\
         Pins are kept per MX host and per destination domain: once a domain was seen encrypted,\n\
         every MX of it must show one of the domain's keys (policies tofu and require), so an\n\
         attacker who blocks the pinned MX gains nothing at the next one. After an expected key\n\
         change, --forget the host (its one key) or the domain (all its keys).",
    )
}

fn main() -> ExitCode {
    blackpony::process::no_core_dumps();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Postfix pipe(8) bounces the message on any exit status but 75 and 71:
    // in --pipe mode a failure before the delivery is ours, never the
    // message's, so it must defer. A panic is a bug, never the message's
    // fault, in either mode: from the first line on it exits 75, not 101.
    let pipe = args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--pipe");
    defer_on_panic(pipe);
    blackpony::fault::point("before-log");
    let o = options();
    let m = match o.parse(&args) {
        Ok(m) => m,
        Err(e) if pipe => return pipe_setup_error(&format!("{e} (see blackpony-mailer --help)")),
        Err(e) => return greet_error(&Error::Config(format!("{e} (see blackpony-mailer --help)"))),
    };
    if m.opt_present("help") {
        println!("{}", usage(&o));
        return ExitCode::SUCCESS;
    }
    if m.opt_present("version") {
        println!("blackpony-mailer {}", cli::VERSION);
        return ExitCode::SUCCESS;
    }
    let key_path = cli::key_path(&m);
    let peers = m
        .opt_str("known-peers")
        .unwrap_or_else(|| DEFAULT_KNOWN_PEERS.into());
    let peers = KnownPeers::new(peers);
    if m.opt_present("fingerprint") {
        return match blackpony::keys::HostKey::load(&key_path) {
            Ok(k) => {
                println!("{} {}", k.fingerprint(), key_path.display());
                ExitCode::SUCCESS
            }
            Err(e) => terminal_error(&e.to_string(), e.exit_code()),
        };
    }
    if m.opt_present("list-peers") {
        return match peers.list() {
            Ok(list) => {
                for p in list {
                    // The kind last: the first five columns are those of
                    // earlier versions, which scripts may parse.
                    let (name, fp, suite) = (&p.name, &p.fingerprint, &p.suite);
                    let (first, last, kind) = (&p.first_seen, &p.last_seen, p.kind.as_str());
                    println!("{name} {fp} {suite} {first} {last} {kind}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => terminal_error(&e.to_string(), exit::IOERR),
        };
    }
    if let Some(name) = m.opt_str("forget") {
        return match peers.forget(&name) {
            Ok(gone) if gone.any() => {
                if gone.host {
                    println!("forgot host {name}");
                }
                if gone.domain_keys > 0 {
                    println!("forgot domain {name} ({} keys)", gone.domain_keys);
                }
                ExitCode::SUCCESS
            }
            Ok(_) => terminal_error(
                &format!("{name} is neither a known host nor a known domain"),
                exit::DATAERR,
            ),
            Err(e) => terminal_error(&e.to_string(), exit::IOERR),
        };
    }
    let log_file = m.opt_str("log").map(PathBuf::from);
    if let Err(e) = logging::init("blackpony-mailer", log_file.as_deref()) {
        if pipe {
            return pipe_setup_error(&e);
        }
        return greet_error(&Error::Config(e));
    }
    // logging::init installed a log-only panic hook: a bug must still defer.
    defer_on_panic(pipe);
    session_record::init(cli::record_file(&m));
    blackpony::fault::point("at-start");
    if m.opt_present("pipe") {
        return pipe_mode(&m, &key_path, peers);
    }
    let dest = match m.free.as_slice() {
        [h] => h.clone(),
        _ => {
            return greet_error(&Error::Config(
                "give exactly one HOST (sendmail's $h)".into(),
            ))
        }
    };
    let cfg = match config(&m, &key_path, peers) {
        Ok(c) => c,
        Err(e) => return greet_error(&e),
    };
    let deadline = netio::Deadline::new(cfg.timeout);
    let reader = netio::DeadlineReader::spawn(std::io::stdin(), cfg.timeout, deadline.clone());
    let sendmail = Peer::with_deadline(
        Box::new(reader),
        Box::new(std::io::stdout()),
        "sendmail",
        deadline,
    );
    let summary = outbound::deliver(&dest, sendmail, &cfg);
    session_record::finish(&summary);
    if summary.outcome == Outcome::Quit {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::TEMPFAIL as u8)
    }
}

/// Postfix pipe(8): play sendmail's part ourselves over an in-process pipe,
/// so the delivery is the same session, and report through the exit code.
/// pipe(8) puts what we print on stdout into the delivery status notice.
fn pipe_mode(m: &getopts::Matches, key_path: &std::path::Path, peers: KnownPeers) -> ExitCode {
    let report = |code: i32, text: &str| {
        println!("{text}");
        ExitCode::from(code as u8)
    };
    let (dest, recipients) = match m.free.split_first() {
        Some((d, r)) if !r.is_empty() => (d.clone(), r.to_vec()),
        _ => return pipe_setup_error("--pipe: give HOST and at least one RECIPIENT"),
    };
    let cfg = match config(m, key_path, peers) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return report(exit::TEMPFAIL, &format!("blackpony-mailer: {e}"));
        }
    };
    let helo = m.opt_str("helo").unwrap_or_else(local_host_name);
    let env = blackpony::pipe_client::Envelope {
        helo,
        sender: m.opt_str("sender").unwrap_or_default(),
        recipients,
    };
    let pipes = std::io::pipe().and_then(|a| std::io::pipe().map(|b| (a, b)));
    let Ok(((cmd_r, cmd_w), (rep_r, rep_w))) = pipes else {
        return report(exit::OSERR, "blackpony-mailer: cannot create pipes");
    };
    let outcome = std::thread::scope(|s| {
        let session = s.spawn(|| {
            let sendmail = Peer::new(Box::new(cmd_r), Box::new(rep_w), "sendmail");
            outbound::deliver(&dest, sendmail, &cfg)
        });
        let stdin = std::io::stdin();
        let outcome = blackpony::pipe_client::run_client(&env, &mut stdin.lock(), cmd_w, rep_r);
        if let Ok(summary) = session.join() {
            session_record::finish(&summary);
        }
        outcome
    });
    if outcome.code == exit::OK {
        ExitCode::SUCCESS
    } else {
        report(outcome.code, &outcome.text)
    }
}

/// Make a panic exit 75 (EX_TEMPFAIL) with a line the caller understands:
/// pipe(8) reads an enhanced status code on stdout, sendmail an SMTP reply.
fn defer_on_panic(pipe: bool) {
    let line = if pipe {
        "4.3.0 blackpony-mailer: internal error\n"
    } else {
        "421 4.3.0 Internal error, try again later\r\n"
    };
    logging::exit_on_panic(Some(line), exit::TEMPFAIL);
}

/// A failure before a --pipe delivery starts: defer the message. The text
/// starts with an enhanced status code, which pipe(8) prefers to the exit
/// status, so the message is deferred even by a pipe(8) that saw another code.
fn pipe_setup_error(msg: &str) -> ExitCode {
    log::error!("{msg}");
    println!("4.3.5 blackpony-mailer: {msg}");
    ExitCode::from(exit::TEMPFAIL as u8)
}

/// This machine's name for EHLO: /etc/mailname (Debian), else the kernel's host name.
fn local_host_name() -> String {
    ["/etc/mailname", "/proc/sys/kernel/hostname"]
        .iter()
        .find_map(|p| {
            let s = std::fs::read_to_string(p).ok()?;
            let s = s.trim();
            (!s.is_empty() && !s.contains(char::is_whitespace)).then(|| s.to_string())
        })
        .unwrap_or_else(|| "localhost".into())
}

fn config(
    m: &getopts::Matches,
    key_path: &std::path::Path,
    known_peers: KnownPeers,
) -> Result<OutboundConfig, Error> {
    let timeout = cli::timeout(m)?;
    let session_timeout = cli::session_timeout(m)?;
    let port = cli::opt_value(m, "port", |&p: &u16| p > 0, "not a port number")?;
    let policy = cli::opt_value(m, "policy", |_| true, "use may, tofu or require")?;
    let policy_map = match m.opt_str("policy-file") {
        None => PolicyMap::default(),
        Some(f) => PolicyMap::load(std::path::Path::new(&f))
            .map_err(|e| Error::Config(format!("{f}: {e}")))?,
    };
    let dns = cli::opt_value(m, "dns", |_| true, "use ADDR:PORT, e.g. 127.0.0.1:53")?;
    let wait = std::time::Duration::from_secs(5);
    let resolver = match dns {
        Some(server) => Resolver::with_servers(vec![server], wait),
        None => Resolver::from_resolv_conf(std::path::Path::new("/etc/resolv.conf"), wait)
            .map_err(|e| Error::Config(format!("/etc/resolv.conf: {e}")))?,
    };
    let mut suites = cli::suites(m, &CLIENT_DEFAULT)?;
    // v2 is optional for a client: an unreadable static key is an error in
    // the log, and delivery goes on with the other suites.
    let identity = cli::load_identity(key_path).unwrap_or_else(|e| {
        log::error!("{e}");
        None
    });
    let key = LazyHostKey::new(key_path);
    // Refuse an unsafe RSA key at start, not mid-delivery. With v2 the key
    // is read only if a server offers nothing but RSA-BLOWFISH, so here only
    // its file is checked; without v2 it is read now.
    if suites.uses_rsa() && identity.is_some() {
        cli::check_key_file(key_path)?;
    } else if suites.uses_rsa() {
        key.get()?;
    }
    if suites.uses_noise() && identity.is_none() {
        // An RSA-only install (from before handshake v2): deliver with the
        // other suites, and say how to get v2.
        let (key, noise) = (key_path.display(), blackpony::suite::NOISE);
        log::warn!(
            "no static key beside {key}: {noise} not used (run blackpony --renew-cert --key {key})"
        );
        suites.keyed.retain(|s| *s != SuiteId::Noise);
    }
    Ok(OutboundConfig {
        port: port.unwrap_or(25),
        key,
        identity: identity.map(std::sync::Arc::new),
        known_peers,
        default_policy: policy.unwrap_or(Policy::Tofu),
        policy_map,
        resolver,
        suites,
        timeout,
        session_timeout,
        relay: RelayOptions::default(),
    })
}

/// A setup failure: sendmail is waiting for a greeting, so give it a 4xx
/// greeting (the message stays queued), log why, and leave.
fn greet_error(e: &Error) -> ExitCode {
    log::error!("{e}");
    let mut out = std::io::stdout();
    let _ = out.write_all(&e.smtp_reply().to_bytes());
    let _ = out.flush();
    ExitCode::from(e.exit_code() as u8)
}

fn terminal_error(msg: &str, code: i32) -> ExitCode {
    eprintln!("blackpony-mailer: {msg}");
    ExitCode::from(code as u8)
}
