//! systemd socket activation with `Accept=no` (the sd_listen_fds protocol):
//! systemd, or `systemd-socket-activate`, listens on port 25 and starts us
//! with the listening sockets as fds 3, 4, ... and LISTEN_FDS / LISTEN_PID in
//! the environment. Taking an fd number needs `unsafe`, so the `listenfd`
//! crate does that one step; the checks around it are ours.

use std::net::TcpListener;

/// More listening sockets than any sensible .socket unit has (one per
/// ListenStream= line); each gets an accept thread, so the count is bounded.
const MAX_LISTEN_FDS: usize = 64;

/// The listening sockets systemd passed to this process, or `None` when we
/// were not socket-activated (inetd, a terminal, or --listen). LISTEN_PID must
/// be our pid: the variables may have been meant for a parent and inherited.
/// Call this while the process has one thread: it changes the environment.
pub fn take_listeners() -> Result<Option<Vec<TcpListener>>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let ours =
        pid.as_deref().and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id());
    if !ours {
        unset();
        return Ok(None);
    }
    let count = match fds.as_deref().map(|n| n.trim().parse::<usize>()) {
        Some(Ok(n)) if (1..=MAX_LISTEN_FDS).contains(&n) => n,
        _ => {
            unset();
            return Err(format!(
                "socket activation: LISTEN_FDS={} (want 1 to {MAX_LISTEN_FDS} listening sockets)",
                fds.unwrap_or_default()
            ));
        }
    };
    // listenfd reads the same variables again and removes LISTEN_PID and LISTEN_FDS.
    let mut passed = listenfd::ListenFd::from_env();
    unset();
    let mut listeners = Vec::with_capacity(count);
    for i in 0..count.min(passed.len()) {
        let fd = 3 + i;
        let listener = passed
            .take_tcp_listener(i)
            .map_err(|e| format!("socket activation: fd {fd} is not a TCP socket: {e}"))?
            .ok_or_else(|| format!("socket activation: fd {fd} is missing"))?;
        // Accept=yes passes a connection, not a listener: accept() on it would
        // fail forever. Say which unit form to use instead.
        if socket2::SockRef::from(&listener).peer_addr().is_ok() {
            return Err(format!(
                "socket activation: fd {fd} is a connection, not a listening socket \
                 (Accept=yes: use blackpony@.service with StandardInput=socket, \
                 or Accept=no with blackpony-threaded.service)"
            ));
        }
        listeners.push(listener);
    }
    if listeners.is_empty() {
        return Err("socket activation: no listening socket was passed".into());
    }
    Ok(Some(listeners))
}

/// Removes the protocol's variables once read, so nothing we start later
/// could take them for its own (sd_listen_fds(unset_environment=1)).
fn unset() {
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
}
