//! blackpony: the inbound side. inetd starts it per connection with the
//! client's socket on stdin/stdout; it relays SMTP to the real MTA and
//! encrypts when the client asks for it. Only wiring lives here.
#![forbid(unsafe_code)]

mod activation;
mod server;

use std::io::Write;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;

use blackpony::channel::BoxRead;
use blackpony::cli;
use blackpony::error::exit;
use blackpony::inbound::{self, ClientAddressPassing, ClientConn, InboundConfig};
use blackpony::netio;
use blackpony::relay::RelayOptions;
use blackpony::session_record;
use blackpony::static_key::LiveIdentity;
use blackpony::suite::{NOISE, SERVER_DEFAULT};
use blackpony::Error;

const DEFAULT_BACKEND: &str = "127.0.0.1:2525";

fn options() -> getopts::Options {
    let mut o = getopts::Options::new();
    o.optopt(
        "",
        "backend",
        &format!("the real MTA (default {DEFAULT_BACKEND})"),
        "HOST:PORT",
    );
    o.optopt(
        "",
        "listen",
        "accept connections here instead of serving stdin (no inetd)",
        "ADDR:PORT",
    );
    o.optopt("", "source", "connect to the backend from this local address (e.g. 127.0.0.2, so the MTA does not treat clients as local)", "ADDR");
    o.optopt(
        "",
        "proxy-protocol",
        "send the client address to the backend in a HAProxy PROXY header",
        "v1|v2",
    );
    o.optflag(
        "",
        "xclient",
        "send the client address to the backend with Postfix XCLIENT",
    );
    o.optflag(
        "",
        "allow-bare-newline",
        "pass a bare CR or LF in commands and message data to the MTA unchanged (by default they end the session with 421)",
    );
    o.optflag(
        "",
        "forbid-bare-newline",
        "refuse a bare CR or LF in commands and message data: the default, this is its explicit form (like Postfix smtpd_forbid_bare_newline)",
    );
    o.optflag(
        "",
        "generate-key",
        "write a new host key to --key (mode 0600, never overwrites) and print its fingerprint",
    );
    o.optflag(
        "",
        "renew-cert",
        "make the static key if missing and renew its certificate when it is due (for a daily timer; --force: always)",
    );
    o.optflag(
        "",
        "rotate-key",
        "replace the host key at --key with a new one; the old key signs a continuity statement that peers pinned to it follow (see --transition-days)",
    );
    o.optopt(
        "",
        "transition-days",
        "with --rotate-key: how long the statement is presented (default 90)",
        "N",
    );
    o.optflag(
        "",
        "force",
        "with --renew-cert: renew even if not due; with --rotate-key: rotate during the transition of the last rotation",
    );
    o.optopt(
        "",
        "key-bits",
        "size of a generated key: 2048 (default), 3072 or 4096",
        "BITS",
    );
    server::add_options(&mut o);
    cli::common_options(&mut o);
    o
}

fn usage(o: &getopts::Options) -> String {
    o.usage(
        "Usage: blackpony [--backend HOST:PORT] [--listen ADDR:PORT] [--key FILE] [--allow-rot]\n\
         \x20                [--log FILE] [--timeout SECS] [--session-timeout SECS] [--source ADDR] [--proxy-protocol v1|v2] [--xclient]\n\
         \x20                [--max-connections N] [--shutdown-grace SECS] [--allow-bare-newline]\n\
         \x20      blackpony --generate-key [--key FILE]   |   blackpony --fingerprint [--key FILE]\n\
         \x20      blackpony --renew-cert [--force] [--key FILE]   |   blackpony --rotate-key [--transition-days N] [--key FILE]\n\n\
         The inbound side of blackpony. Run it from inetd, xinetd or systemd (Accept=yes) on\n\
         port 25 with the client's socket on stdin/stdout; it relays SMTP to the real MTA at\n\
         --backend, adds `XBLACKPONY <suites>` to the EHLO reply and encrypts when the client\n\
         asks. Started by systemd socket activation (Accept=no: LISTEN_FDS) or with --listen\n\
         it accepts the connections itself, a thread each, up to --max-connections, and stops\n\
         cleanly on SIGTERM. Piped from a file (blackpony < session.txt) it replays a recorded session and\n\
         writes the replies to stdout. Logs go to syslog (mail facility) or --log; RUST_LOG\n\
         sets the level. Nothing but SMTP is ever written to stdout or stderr.",
    )
}

fn main() -> ExitCode {
    // First, while there is one thread: this reads and unsets LISTEN_*.
    let activated = activation::take_listeners();
    blackpony::process::no_core_dumps();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = options();
    let m = match o.parse(&args) {
        Ok(m) => m,
        Err(e) => return config_error(&Error::Config(format!("{e} (see blackpony --help)"))),
    };
    if m.opt_present("help") {
        println!("{}", usage(&o));
        return ExitCode::SUCCESS;
    }
    if m.opt_present("version") {
        println!("blackpony {}", cli::VERSION);
        return ExitCode::SUCCESS;
    }
    let key_path = cli::key_path(&m);
    if m.opt_present("generate-key") {
        return match cli::key_bits(&m).and_then(|bits| cli::generate_key(&key_path, bits)) {
            Ok(fp) => {
                println!("{fp} {}", key_path.display());
                ExitCode::SUCCESS
            }
            Err(e) => terminal_error(&e),
        };
    }
    if m.opt_present("renew-cert") {
        return match cli::renew_cert(&key_path, m.opt_present("force")) {
            Ok(msg) => {
                println!("{msg}: {}", key_path.display());
                ExitCode::SUCCESS
            }
            Err(e) => terminal_error(&e),
        };
    }
    if m.opt_present("rotate-key") {
        return match cli::rotate_key(&key_path, &m) {
            Ok(msg) => {
                println!("{msg}: {}", key_path.display());
                ExitCode::SUCCESS
            }
            Err(e) => terminal_error(&e),
        };
    }
    if m.opt_present("fingerprint") {
        return match blackpony::keys::HostKey::load(&key_path) {
            Ok(k) => {
                println!("{} {}", k.fingerprint(), key_path.display());
                ExitCode::SUCCESS
            }
            Err(e) => terminal_error(&e),
        };
    }
    let log_file = m.opt_str("log").map(PathBuf::from);
    if let Err(e) = blackpony::logging::init("blackpony", log_file.as_deref()) {
        return config_error(&Error::Config(e));
    }
    session_record::init(cli::record_file(&m));
    let cfg = match config(&m, &key_path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("{e}");
            return config_error(&e);
        }
    };
    let limits = match server::limits(&m) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return config_error(&e);
        }
    };
    match (activated, m.opt_str("listen")) {
        (Err(e), _) => {
            let e = Error::Config(e);
            log::error!("{e}");
            config_error(&e)
        }
        (Ok(Some(_)), Some(_)) => {
            let e = Error::Config("--listen: systemd passed the listening socket already".into());
            log::error!("{e}");
            config_error(&e)
        }
        (Ok(Some(listeners)), None) => {
            let addrs: Vec<String> = listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| a.to_string())
                .collect();
            log::info!(
                "started by systemd socket activation (Accept=no) on {}, backend {}, up to {} sessions",
                addrs.join(" "),
                cfg.backend,
                limits.max_connections
            );
            serve_threaded(listeners, limits, cfg)
        }
        (Ok(None), Some(addr)) => listen(&addr, limits, cfg),
        (Ok(None), None) => {
            // Debug only: under inetd every session is a process, and this
            // line would double what syslog gets per connection.
            log::debug!("started by inetd (one session on stdin/stdout)");
            serve_stdin(&cfg)
        }
    }
}

fn config(m: &getopts::Matches, key_path: &std::path::Path) -> Result<InboundConfig, Error> {
    let source = match m.opt_str("source") {
        None => None,
        Some(s) => Some(
            s.parse::<IpAddr>()
                .map_err(|_| Error::Config(format!("--source {s}: not an IP address")))?,
        ),
    };
    let passing = match (
        m.opt_str("proxy-protocol").as_deref(),
        m.opt_present("xclient"),
    ) {
        (Some(_), true) => {
            return Err(Error::Config(
                "use either --proxy-protocol or --xclient, not both".into(),
            ))
        }
        (Some("v1"), _) => ClientAddressPassing::ProxyV1,
        (Some("v2"), _) => ClientAddressPassing::ProxyV2,
        (Some(v), _) => return Err(Error::Config(format!("--proxy-protocol {v}: use v1 or v2"))),
        (None, true) => ClientAddressPassing::Xclient,
        (None, false) => ClientAddressPassing::None,
    };
    let allow_bare_newline = match (
        m.opt_present("allow-bare-newline"),
        m.opt_present("forbid-bare-newline"),
    ) {
        (true, true) => {
            return Err(Error::Config(
                "use either --allow-bare-newline or --forbid-bare-newline, not both".into(),
            ))
        }
        (allow, _) => allow,
    };
    let suites = cli::suites(m, &SERVER_DEFAULT)?;
    // Only what the offered suites need: handshake v2 never reads the RSA key.
    let key = match suites.uses_rsa() {
        true => cli::load_key_if_present(key_path)?,
        false => {
            cli::check_key_file(key_path)?;
            None
        }
    };
    let identity = match suites.uses_noise() {
        true => cli::load_identity(key_path)?,
        false => None,
    };
    let mut problems = Vec::new();
    if suites.uses_noise() && identity.is_none() {
        problems.push(format!(
            "no static key beside {}: {NOISE} is not offered (run blackpony --renew-cert, or --generate-key for a new install)",
            key_path.display()
        ));
    }
    if suites.uses_rsa() && key.is_none() {
        problems.push(format!(
            "no host key at {}: RSA-BLOWFISH is not offered (create one with blackpony --generate-key)",
            key_path.display()
        ));
    }
    for p in &problems {
        log::error!("{p}");
    }
    Ok(InboundConfig {
        backend: m
            .opt_str("backend")
            .unwrap_or_else(|| DEFAULT_BACKEND.into()),
        source,
        passing,
        timeout: cli::timeout(m)?,
        session_timeout: cli::session_timeout(m)?,
        suites,
        relay: RelayOptions::inbound(allow_bare_newline),
        key,
        identity: identity.map(|id| LiveIdentity::new(key_path, id)),
        key_problem: (!problems.is_empty()).then(|| problems.join("; ")),
    })
}

/// Serve the connection inetd gave us on stdin/stdout.
fn serve_stdin(cfg: &InboundConfig) -> ExitCode {
    let conn = match netio::stdin_socket() {
        Some((stream, _)) => match ClientConn::from_tcp(stream, cfg.timeout) {
            Ok(conn) => conn,
            Err(e) => {
                log::error!("cannot use the client socket: {e}");
                return ExitCode::from(exit::OSERR as u8);
            }
        },
        None => {
            let deadline = netio::Deadline::new(cfg.timeout);
            let reader: BoxRead = Box::new(netio::DeadlineReader::spawn(
                std::io::stdin(),
                cfg.timeout,
                deadline.clone(),
            ));
            ClientConn {
                reader,
                writer: Box::new(std::io::stdout()),
                addrs: None,
                deadline,
                probe: None,
            }
        }
    };
    let summary = inbound::serve(conn, cfg);
    session_record::finish(&summary);
    ExitCode::SUCCESS
}

/// Standalone mode: accept connections and serve each on its own thread.
fn listen(addr: &str, limits: server::Limits, cfg: InboundConfig) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on {addr}: {e}");
            eprintln!("blackpony: cannot listen on {addr}: {e}");
            return ExitCode::from(exit::OSERR as u8);
        }
    };
    log::info!(
        "started with --listen on {addr}, backend {}, up to {} sessions",
        cfg.backend,
        limits.max_connections
    );
    serve_threaded(vec![listener], limits, cfg)
}

/// --listen and socket activation: a thread per connection (server.rs).
fn serve_threaded(
    listeners: Vec<TcpListener>,
    limits: server::Limits,
    cfg: InboundConfig,
) -> ExitCode {
    server::run(listeners, limits, move |stream| serve_stream(stream, &cfg))
}

fn serve_stream(stream: TcpStream, cfg: &InboundConfig) {
    let Ok(conn) = ClientConn::from_tcp(stream, cfg.timeout) else {
        return;
    };
    let summary = inbound::serve(conn, cfg);
    session_record::finish(&summary);
}

/// A configuration error. Under inetd stdout is the client: it gets a 421
/// so the sender retries later; on a terminal the reply explains itself too.
fn config_error(e: &Error) -> ExitCode {
    if netio::stdin_socket().is_none() {
        eprintln!("blackpony: {e}");
    }
    let reply = e.smtp_reply();
    let mut out = std::io::stdout();
    let _ = out.write_all(&reply.to_bytes());
    let _ = out.flush();
    ExitCode::from(e.exit_code() as u8)
}

/// An error of the key tool, run by an administrator at a terminal.
fn terminal_error(e: &Error) -> ExitCode {
    eprintln!("blackpony: {e}");
    ExitCode::from(e.exit_code() as u8)
}
