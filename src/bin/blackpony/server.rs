//! The threaded server behind --listen and systemd socket activation
//! (Accept=no): one accept loop per listening socket, one thread per
//! connection up to --max-connections, and a clean stop on SIGTERM or SIGINT.
//!
//! The stop: accepting ends and the listening sockets close (under systemd
//! its own copy keeps queueing connections for the next start), sessions in
//! flight get --shutdown-grace seconds to finish, then the process exits. A
//! session cut after that never got its 250 for a message in progress, so the
//! sender still holds the message and retries: nothing is lost.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use blackpony::cli;
use blackpony::error::exit;
use blackpony::smtp::reply::Reply;
use blackpony::Error;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Concurrent sessions by default: what xinetd.d/blackpony's `instances` and
/// blackpony.socket's MaxConnections allow under the process-per-connection
/// launchers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
/// Each session is a thread and, while relaying, two more; far above any
/// sensible limit, far below the kernel's thread limits.
const MAX_MAX_CONNECTIONS: usize = 10_000;
/// Seconds sessions in flight get to finish after SIGTERM. Below systemd's
/// default TimeoutStopSec (90 s), so systemd never has to SIGKILL us.
pub const DEFAULT_SHUTDOWN_GRACE: u64 = 60;
/// After an accept error other than a connection the client gave up on
/// (out of file descriptors, memory): wait before the next try, not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How long the stop waits for the connection that wakes a blocked accept.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// The limits of the threaded modes.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub grace: Duration,
}

pub fn add_options(o: &mut getopts::Options) {
    o.optopt(
        "",
        "max-connections",
        &format!(
            "with --listen or socket activation: sessions at once (default {DEFAULT_MAX_CONNECTIONS}, \
             like xinetd's instances); one more gets 421 and is closed"
        ),
        "N",
    );
    o.optopt(
        "",
        "shutdown-grace",
        &format!(
            "with --listen or socket activation: on SIGTERM or SIGINT stop accepting and let \
             sessions finish for up to SECS seconds (default {DEFAULT_SHUTDOWN_GRACE})"
        ),
        "SECS",
    );
}

pub fn limits(m: &getopts::Matches) -> Result<Limits, Error> {
    let hint = format!("give a number from 1 to {MAX_MAX_CONNECTIONS}");
    let ok = |n: &usize| (1..=MAX_MAX_CONNECTIONS).contains(n);
    let max_connections = cli::opt_value(m, "max-connections", ok, &hint)?;
    let hint = "give a number of seconds from 0 to 86400";
    let grace = cli::opt_value(m, "shutdown-grace", |n| *n <= 86_400, hint)?;
    Ok(Limits {
        max_connections: max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        grace: Duration::from_secs(grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE)),
    })
}

/// What the accept loops, the sessions and the signal thread tell the main
/// thread, under one lock so that "draining" and the session count never
/// disagree: a connection is either counted before the stop or refused.
#[derive(Default)]
struct State {
    active: usize,
    draining: bool,
    /// SIGTERM or SIGINT received so far (a second one ends the wait).
    signals: u32,
    last_signal: i32,
    /// An accept loop that can no longer accept (the socket is unusable).
    failed: Option<String>,
    served: u64,
    refused: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// Counts a session out when its thread ends, however it ends.
struct SessionSlot(Arc<Shared>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.update(|s| s.active -= 1);
    }
}

/// Serve every connection on `listeners` with `serve` (one thread each)
/// until SIGTERM or SIGINT, then stop as the module comment says.
pub fn run<F>(listeners: Vec<TcpListener>, limits: Limits, serve: F) -> ExitCode
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    // Before the first accept: from here on SIGTERM no longer kills us mid-session.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot handle SIGTERM: {e}");
            return ExitCode::from(exit::OSERR as u8);
        }
    };
    let shared = Arc::new(Shared::default());
    let serve = Arc::new(serve);
    let sh = Arc::clone(&shared);
    thread::spawn(move || {
        for sig in signals.forever() {
            sh.update(|s| {
                s.signals += 1;
                s.last_signal = sig;
            });
        }
    });
    let mut wake_addrs = Vec::new();
    for listener in listeners {
        if let Ok(a) = listener.local_addr() {
            wake_addrs.push(a);
        }
        let shared = Arc::clone(&shared);
        let serve = Arc::clone(&serve);
        let max = limits.max_connections;
        thread::spawn(move || accept_loop(listener, &shared, max, serve));
    }

    let running = |s: &mut State| s.signals == 0 && s.failed.is_none();
    let s = shared.changed.wait_while(shared.lock(), running);
    let mut s = s.unwrap_or_else(PoisonError::into_inner);
    s.draining = true;
    let in_flight = s.active;
    let first_signals = s.signals;
    match &s.failed {
        Some(e) => log::error!("stopping: {e}"),
        None => log::info!(
            "{}: no longer accepting; waiting up to {} s for {in_flight} session(s) in flight",
            signal_name(s.last_signal),
            limits.grace.as_secs()
        ),
    }
    drop(s);
    for a in wake_addrs {
        wake(a);
    }

    let in_flight_left = |s: &mut State| s.active > 0 && s.signals == first_signals;
    let s = shared
        .changed
        .wait_timeout_while(shared.lock(), limits.grace, in_flight_left);
    let s = s.unwrap_or_else(PoisonError::into_inner).0;
    let cut = s.active;
    let summary = format!(
        "stopped: {} session(s) served, {} refused over --max-connections; \
         of {in_flight} in flight at the stop, {} finished and {cut} cut{}",
        s.served,
        s.refused,
        in_flight.saturating_sub(cut),
        if s.signals > first_signals {
            " by a second signal"
        } else if cut > 0 {
            " after the grace period (no 250 was given for their messages in progress)"
        } else {
            ""
        }
    );
    let failed = s.failed.is_some();
    drop(s);
    if cut > 0 {
        log::warn!("{summary}");
    } else {
        log::info!("{summary}");
    }
    if failed {
        ExitCode::from(exit::OSERR as u8)
    } else {
        ExitCode::SUCCESS
    }
}

/// Accept until the stop: each connection is served on its own thread, or
/// refused with 421 when the limit is reached.
fn accept_loop<F>(listener: TcpListener, shared: &Arc<Shared>, max: usize, serve: Arc<F>)
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let mut failures = 0u64;
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => {
                if failures > 0 {
                    log::info!("accept works again after {failures} failure(s)");
                    failures = 0;
                }
                stream
            }
            Err(e) => match e.kind() {
                // The client gave up before we got to it, or a signal arrived.
                std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted => continue,
                // EINVAL: the socket is not listening (any more); it never will.
                std::io::ErrorKind::InvalidInput => {
                    shared.update(|s| s.failed = Some(format!("accept: {e}")));
                    return;
                }
                // Out of file descriptors or memory: wait for sessions to end.
                _ => {
                    if failures == 0 {
                        log::warn!("accept: {e} (retrying every {ACCEPT_RETRY:?})");
                    }
                    failures += 1;
                    thread::sleep(ACCEPT_RETRY);
                    continue;
                }
            },
        };
        let admitted = {
            let mut s = shared.lock();
            if s.draining {
                // The stop's wake-up connection, or a client that came at
                // the same moment: close, it retries (under systemd, with
                // the next start).
                return;
            }
            if s.active >= max {
                s.refused += 1;
                false
            } else {
                s.active += 1;
                s.served += 1;
                true
            }
        };
        if !admitted {
            refuse(stream, max);
            continue;
        }
        let slot = SessionSlot(Arc::clone(shared));
        let serve = Arc::clone(&serve);
        let spawned = thread::Builder::new().spawn(move || {
            let _slot = slot;
            serve(stream);
        });
        if let Err(e) = spawned {
            // The closure, with the stream and the slot, is dropped: the
            // client sees the connection close before a greeting and retries.
            log::error!("cannot start a session thread: {e}");
        }
    }
}

/// Tell a client over the limit to come back later. The socket is fresh, so
/// the reply fits its send buffer; nonblocking so the accept loop never waits
/// on a client.
fn refuse(stream: TcpStream, max: usize) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown".into(), |a| a.to_string());
    log::warn!("refused {peer}: {max} sessions in progress (--max-connections)");
    let _ = stream.set_nonblocking(true);
    // Temporary, so the sender retries later (RFC 3463 4.3.2: system not
    // accepting messages).
    let reply = Reply::new(421, "4.3.2 Too many connections, try again later");
    let _ = (&stream).write_all(&reply.to_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Wake an accept loop blocked on the socket at `addr` by connecting to it.
/// A socket on all addresses is reached through loopback. If this fails the
/// loop stays blocked, which is harmless: the process exits after the wait.
fn wake(addr: SocketAddr) {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let target = SocketAddr::new(ip, addr.port());
    if let Err(e) = TcpStream::connect_timeout(&target, WAKE_TIMEOUT) {
        log::debug!("waking the accept loop on {addr} through {target}: {e}");
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}
