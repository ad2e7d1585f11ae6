//! `blackpony` started by systemd socket activation with Accept=no, as a
//! .socket unit without Accept=yes starts it: the real binary run by
//! `systemd-socket-activate` (Debian's systemd package, whose default is
//! Accept=no), which listens, passes the listening socket as fd 3 with
//! LISTEN_FDS/LISTEN_PID and execs blackpony on the first connection.
//! Behind it the test sink from `support` plays the MTA.
//!
//! What is checked: mail is delivered; connections are served at once, each
//! on its own thread of one process; --max-connections answers 421; SIGTERM
//! stops accepting but lets the session in flight deliver its message, and
//! the process exits 0 within --shutdown-grace; a session still running at
//! the end of the grace is cut before its 250, so its message was never
//! accepted (the sender retries); nothing ever appears on stdout or stderr.

mod support;

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// blackpony under systemd-socket-activate, with its stdout and stderr kept
/// in files to show they stay empty.
struct Activated {
    daemon: Daemon,
    addr: SocketAddr,
    log: PathBuf,
    record: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

impl Activated {
    fn start(name: &str, backend: SocketAddr, extra: &[&str]) -> Activated {
        assert!(
            Path::new(ACTIVATE).exists(),
            "{ACTIVATE} is missing: install the systemd package (scripts/install-test-deps.sh)"
        );
        let dir = scratch(name);
        let log = dir.join("blackpony.log");
        let record = dir.join("sessions.jsonl");
        let out = dir.join("stdout");
        let err = dir.join("stderr");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(ACTIVATE)
            .arg("--listen")
            .arg(addr.to_string())
            // systemd-socket-activate passes only the variables it is told to.
            .args(["-E", "RUST_LOG=debug", "--"])
            .arg(bin("blackpony"))
            .args(["--backend", &backend.to_string(), "--log"])
            .arg(&log)
            .arg("--record")
            .arg(&record)
            .args(extra)
            // Its own "Listening on ..." notice, not ours: silence it so the
            // files hold only what blackpony writes.
            .env("SYSTEMD_LOG_LEVEL", "warning")
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let daemon = Daemon(child);
        // Wait for the socket without connecting: a connection would start blackpony.
        wait_until("systemd-socket-activate to listen", || tcp_listening(port));
        Activated {
            daemon,
            addr,
            log,
            record,
            out,
            err,
        }
    }

    fn pid(&self) -> u32 {
        self.daemon.0.id()
    }

    /// SIGTERM, by the shell's builtin `kill` (no procps needed).
    fn sigterm(&self) {
        let st = Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Wait for the process to exit; panics if it has not within `limit`.
    fn wait_exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let t = Instant::now();
        loop {
            if let Some(st) = self.daemon.0.try_wait().unwrap() {
                return (st, t.elapsed());
            }
            assert!(
                t.elapsed() < limit,
                "blackpony did not exit within {limit:?}; log:\n{}",
                read(&self.log)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// blackpony wrote nothing to stdout or stderr.
    fn assert_silent(&self) {
        assert_eq!(read(&self.out), "", "stdout must stay empty");
        assert_eq!(read(&self.err), "", "stderr must stay empty");
    }

    /// The session lines in the log.
    fn sessions(&self) -> Vec<String> {
        read(&self.log)
            .lines()
            .filter(|l| l.contains(": session "))
            .map(String::from)
            .collect()
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Is something listening on 127.0.0.1:`port`? Read from /proc, so no
/// connection is made.
fn tcp_listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        })
}

/// A client through the greeting and the envelope, ready for message lines.
fn open_transaction(addr: SocketAddr, n: usize) -> Client {
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd(&format!("EHLO client{n}.test")).0, 250);
    assert_eq!(c.cmd(&format!("MAIL FROM:<a{n}@client.test>")).0, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<b{n}@sink.test>")).0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c
}

/// One whole message: returns the final reply's code.
fn send_message(addr: SocketAddr, n: usize) -> u16 {
    let mut c = open_transaction(addr, n);
    let (code, _) = c.cmd(&format!("Subject: m{n}\r\n\r\nbody {n}\r\n."));
    assert_eq!(c.cmd("QUIT").0, 221);
    code
}

#[test]
fn mail_is_delivered_through_socket_activation() {
    let sink = Sink::start();
    let mut a = Activated::start("sa-deliver", sink.addr, &[]);
    assert_eq!(send_message(a.addr, 1), 250);
    let got = sink.wait_for(1);
    assert_eq!(got[0].mail_from, "<a1@client.test>");
    assert_eq!(got[0].rcpt_to, vec!["<b1@sink.test>".to_string()]);
    assert_eq!(got[0].data, b"Subject: m1\r\n\r\nbody 1\r\n");
    let log = wait_log(&a.log, ": session ");
    assert!(
        log.contains("started by systemd socket activation (Accept=no)"),
        "the mode is logged once:\n{log}"
    );
    assert_eq!(
        log.matches("started by").count(),
        1,
        "one mode line:\n{log}"
    );
    // The log line is written just before the record is appended: wait for it.
    let t = std::time::Instant::now();
    let mut records = read(&a.record);
    while records.lines().count() == 0 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
        records = read(&a.record);
    }
    assert_eq!(records.lines().count(), 1, "one session record: {records}");
    assert!(records.contains("127.0.0.1"), "{records}");
    a.sigterm();
    let (st, _) = a.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    a.assert_silent();
}

#[test]
fn concurrent_connections_are_served_by_one_process() {
    const N: usize = 8;
    let sink = Sink::start();
    let mut a = Activated::start("sa-concurrent", sink.addr, &[]);
    // All N transactions are open at once before any message ends: a server
    // that served one connection at a time would never greet the second.
    let mut clients: Vec<Client> = (0..N).map(|n| open_transaction(a.addr, n)).collect();
    for (n, c) in clients.iter_mut().enumerate() {
        let (code, _) = c.cmd(&format!("Subject: m{n}\r\n\r\nbody {n}\r\n."));
        assert_eq!(code, 250);
        assert_eq!(c.cmd("QUIT").0, 221);
    }
    // A session ends when its client closes after QUIT.
    drop(clients);
    let mut got: Vec<String> = sink.wait_for(N).into_iter().map(|m| m.mail_from).collect();
    got.sort();
    let mut want: Vec<String> = (0..N).map(|n| format!("<a{n}@client.test>")).collect();
    want.sort();
    assert_eq!(got, want);
    wait_until("N session lines", || a.sessions().len() == N);
    let pid = format!("blackpony[{}]", a.pid());
    assert!(
        a.sessions().iter().all(|l| l.contains(&pid)),
        "every session is served by the one process {pid}:\n{}",
        read(&a.log)
    );
    a.sigterm();
    assert_eq!(a.wait_exit(Duration::from_secs(10)).0.code(), Some(0));
    a.assert_silent();
}

#[test]
fn a_connection_over_the_limit_gets_421() {
    let sink = Sink::start();
    let mut a = Activated::start("sa-limit", sink.addr, &["--max-connections", "2"]);
    let mut first = Client::connect(a.addr);
    assert_eq!(first.reply().0, 220);
    let mut second = Client::connect(a.addr);
    assert_eq!(second.reply().0, 220);

    let mut third = Client::connect(a.addr);
    let (code, text) = third.reply();
    assert_eq!(code, 421);
    assert_eq!(text, "421 4.3.2 Too many connections, try again later\r\n");
    assert!(third.closed(), "the refused connection is closed");
    assert!(
        wait_log(&a.log, "refused").contains("2 sessions in progress (--max-connections)"),
        "the refusal is logged"
    );

    // A session that ends frees its slot: the next connection is served.
    assert_eq!(first.cmd("QUIT").0, 221);
    drop(first);
    wait_until("the first session to end", || a.sessions().len() == 1);
    let mut fourth = Client::connect(a.addr);
    assert_eq!(fourth.reply().0, 220);
    assert_eq!(fourth.cmd("QUIT").0, 221);
    assert_eq!(second.cmd("QUIT").0, 221);
    drop((second, fourth, third));
    a.sigterm();
    assert_eq!(a.wait_exit(Duration::from_secs(10)).0.code(), Some(0));
    let log = read(&a.log);
    assert!(
        log.contains("3 session(s) served, 1 refused"),
        "the counts are logged:\n{log}"
    );
    a.assert_silent();
}

#[test]
fn sigterm_lets_the_session_in_flight_deliver_and_refuses_new_ones() {
    let sink = Sink::start();
    let mut a = Activated::start("sa-sigterm", sink.addr, &["--shutdown-grace", "20"]);
    let mut c = open_transaction(a.addr, 1);
    c.send("Subject: in flight\r\n\r\nfirst half\r\n");

    a.sigterm();
    let stop = Instant::now();
    wait_log(&a.log, "no longer accepting");
    // The listening socket is closed: a new client is refused (it retries later).
    wait_until("new connections to be refused", || {
        TcpStream::connect_timeout(&a.addr, Duration::from_secs(1)).is_err()
    });
    assert!(
        a.daemon.0.try_wait().unwrap().is_none(),
        "blackpony waits for the session in flight"
    );

    let (code, _) = c.cmd("second half\r\n.");
    assert_eq!(code, 250, "the session in flight completes");
    assert_eq!(c.cmd("QUIT").0, 221);
    drop(c);
    let got = sink.wait_for(1);
    assert_eq!(
        got[0].data,
        b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"
    );

    let (st, _) = a.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    assert!(
        stop.elapsed() < Duration::from_secs(20),
        "exit within the grace bound"
    );
    let log = read(&a.log);
    assert!(
        log.contains("SIGTERM: no longer accepting; waiting up to 20 s for 1 session(s) in flight"),
        "{log}"
    );
    assert!(
        log.contains("of 1 in flight at the stop, 1 finished and 0 cut"),
        "{log}"
    );
    assert_eq!(
        a.sessions().len(),
        1,
        "the session's line is written:\n{log}"
    );
    a.assert_silent();
}

#[test]
fn the_grace_bound_cuts_a_stuck_session_before_its_250() {
    let sink = Sink::start();
    let mut a = Activated::start("sa-grace", sink.addr, &["--shutdown-grace", "1"]);
    let mut c = open_transaction(a.addr, 1);
    c.send("Subject: never finished\r\n\r\nhalf\r\n");
    wait_until("the message to start at the sink", || {
        sink.log
            .lock()
            .unwrap()
            .commands
            .iter()
            .any(|l| l == "DATA")
    });
    a.sigterm();
    let (st, waited) = a.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    assert!(
        waited >= Duration::from_millis(900),
        "the session had its grace: {waited:?}"
    );
    // The client never got a 250: the connection ends without one.
    let mut rest = String::new();
    let _ = c.r.read_to_string(&mut rest);
    assert!(!rest.contains("250"), "no 250 for a cut message: {rest:?}");
    // The sink saw the message cut, never accepted.
    wait_until("the sink to see the cut", || {
        sink.log.lock().unwrap().partial == 1
    });
    assert!(sink.messages().is_empty());
    let log = read(&a.log);
    assert!(
        log.contains("0 finished and 1 cut after the grace period"),
        "{log}"
    );
    a.assert_silent();
}

/// LISTEN_PID names another process (the variables were inherited): they
/// are not ours, and blackpony serves stdin as under inetd.
#[test]
fn listen_variables_for_another_process_are_ignored() {
    let sink = Sink::start();
    let dir = scratch("sa-foreign");
    let out = Command::new(bin("blackpony"))
        .args([
            "--backend",
            &sink.addr.to_string(),
            "--record",
            "none",
            "--log",
        ])
        .arg(dir.join("log"))
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut ch| {
            use std::io::Write;
            ch.stdin.take().unwrap().write_all(b"QUIT\r\n")?;
            ch.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("220 "), "served stdin: {text:?}");
    assert!(text.contains("221 "), "{text:?}");
    assert!(out.stderr.is_empty());
}
