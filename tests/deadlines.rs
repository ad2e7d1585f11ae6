//! Deadlines per command and per session (RFC 5321 4.5.3.2, issue 16): a
//! peer that trickles one byte every 0.3 s, well inside each read's
//! --timeout, is still cut when its line is due (--timeout) or when the
//! session limit (--session-timeout) passes, with a 421 (the mailer: a 4xx
//! to sendmail and exit 75), and a message whose data was being trickled is
//! never delivered. Both programs, real binaries over real sockets and pipes.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// The pause between trickled bytes: far inside every --timeout below.
const DRIP: Duration = Duration::from_millis(300);

/// Writes `bytes` one at a time, DRIP apart, on its own thread, until they
/// run out, a write fails (the other end has gone) or it is stopped.
struct Trickle {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<usize>>,
}

impl Trickle {
    fn start<W: Write + Send + 'static>(mut w: W, bytes: Vec<u8>) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut sent = 0;
            for b in bytes {
                if flag.load(Ordering::Relaxed) || w.write_all(&[b]).and(w.flush()).is_err() {
                    break;
                }
                sent += 1;
                thread::sleep(DRIP);
            }
            sent
        });
        Trickle {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop and return how many bytes went out.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// An endless-looking run of bytes without CR or LF: a command line or
/// message data that never ends within the test.
fn endless(prefix: &str) -> Vec<u8> {
    let mut v = prefix.as_bytes().to_vec();
    v.resize(prefix.len() + 200, b'x');
    v
}

/// `took`, the time until the cut, lies between `min_ms` and `max_s`: the
/// deadline, not an earlier error nor a later one, did it.
fn assert_cut_after(took: Duration, min_ms: u64, max_s: u64) {
    assert!(
        took >= Duration::from_millis(min_ms) && took < Duration::from_secs(max_s),
        "cut after {took:?}"
    );
}

/// Message data with a line break now and then: plausible, not one long line.
fn slow_message() -> Vec<u8> {
    [
        &b"Subject: slow\r\n\r\n"[..],
        &b"line\r\n".repeat(20),
        b".\r\n",
    ]
    .concat()
}

/// The connection to the MTA was dropped mid-DATA: no final dot, no message.
fn assert_cut_mid_data(sink: &Sink) {
    let t = Instant::now();
    while sink.partial() == 0 && t.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sink.partial(), 1);
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
}

/// A server that trickles an endless greeting to its one client until the
/// client closes; the handle gives how many bytes went out.
fn trickling_server() -> (SocketAddr, thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        Trickle::start(s.try_clone().unwrap(), endless("220 ")).stop_when_closed(&s)
    });
    (addr, server)
}

// ---- blackpony (inbound) ----

fn inbound(backend: SocketAddr, name: &str, timeout: &str, session: &str) -> (Daemon, SocketAddr) {
    let dir = scratch(name);
    start_inbound(
        backend,
        &["--timeout", timeout, "--session-timeout", session],
        &dir.join("blackpony.log"),
    )
}

/// A command line trickled a byte at a time is cut when the whole line is
/// due (--timeout 2), although every byte arrives well inside 2 s.
#[test]
fn inbound_cuts_a_trickled_command_line() {
    let sink = Sink::start();
    let (_d, addr) = inbound(sink.addr, "deadline-in-line", "2", "60");
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    let t = Instant::now();
    let trickle = Trickle::start(c.w.try_clone().unwrap(), endless("EHLO "));
    let (code, text) = c.reply();
    let took = t.elapsed();
    let sent = trickle.stop();
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4.4.2"), "{text}");
    assert_cut_after(took, 1800, 5);
    // The trickle was still going: only the line deadline can have cut it.
    assert!(sent >= 5, "{sent} bytes trickled");
    assert!(c.closed());
    assert!(
        !sink.commands().iter().any(|l| l.starts_with("EHLO")),
        "{:?}",
        sink.commands()
    );
}

/// Message data trickled a byte at a time (each read well inside
/// --timeout, as the RFC's per-read data block timeout allows) is cut by
/// the session limit, with a 421, and the MTA never gets the message.
#[test]
fn inbound_session_limit_cuts_trickled_data_and_delivers_nothing() {
    let sink = Sink::start();
    let (_d, addr) = inbound(sink.addr, "deadline-in-data", "2", "3");
    let t = Instant::now();
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO sender.test").0, 250);
    assert_eq!(c.cmd("MAIL FROM:<alice@sender.test>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@receiver.test>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    let trickle = Trickle::start(c.w.try_clone().unwrap(), slow_message());
    let (code, text) = c.reply();
    let took = t.elapsed();
    let sent = trickle.stop();
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4.4.2"), "{text}");
    assert_cut_after(took, 2800, 6);
    // Still trickling when cut: the session limit did it, not the end of data.
    assert!(sent >= 5, "{sent} bytes trickled");
    assert!(c.closed());
    assert_cut_mid_data(&sink);
}

/// Whole commands, each quick, for ever (NOOP every 0.3 s): only the
/// session limit ends it, with a 421.
#[test]
fn inbound_session_limit_ends_an_endless_command_stream() {
    let sink = Sink::start();
    let (_d, addr) = inbound(sink.addr, "deadline-in-noop", "2", "3");
    let t = Instant::now();
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    let last = loop {
        // The limit may pass while blackpony waits for this NOOP: then its
        // 421 is already on the way and the write may find the socket closed.
        let _ = c.w.write_all(b"NOOP\r\n");
        let (code, text) = c.reply();
        if code != 250 {
            break text;
        }
        assert!(t.elapsed() < Duration::from_secs(6), "never cut");
        thread::sleep(DRIP);
    };
    let took = t.elapsed();
    assert!(last.starts_with("421 4.4.2"), "{last}");
    assert_cut_after(took, 2800, 6);
    assert!(c.closed());
}

/// An MTA that trickles its greeting is cut when the whole reply is due,
/// and the client gets a 421, not a greeting that never ends.
#[test]
fn inbound_cuts_a_backend_trickling_its_reply() {
    let (baddr, server) = trickling_server();
    let (_d, addr) = inbound(baddr, "deadline-in-reply", "2", "60");
    let t = Instant::now();
    let mut c = Client::connect(addr);
    let (code, text) = c.reply();
    let took = t.elapsed();
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4.4.2"), "{text}");
    assert_cut_after(took, 1800, 5);
    let sent = server.join().unwrap();
    assert!(sent >= 5, "{sent} bytes trickled");
}

impl Trickle {
    /// Keep trickling until the other end closes `s` (its read sees EOF or
    /// an error), then stop; how many bytes went out.
    fn stop_when_closed(self, s: &std::net::TcpStream) -> usize {
        let mut r = s.try_clone().unwrap();
        r.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 256];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        self.stop()
    }
}

// ---- blackpony-mailer (outbound) ----

/// blackpony-mailer for `[127.0.0.1]` on `port`, its stdin and stdout
/// piped as sendmail's.
struct Mailer {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Mailer {
    fn start(port: u16, name: &str, timeout: &str, session: &str) -> Mailer {
        let dir = scratch(name);
        let (key, _) = test_keys();
        let mut child = Command::new(bin("blackpony-mailer"))
            .args(["--port", &port.to_string(), "--key"])
            .arg(key)
            .arg("--known-peers")
            .arg(dir.join("known_peers"))
            .arg("--log")
            .arg(dir.join("mailer.log"))
            .arg("--record")
            .arg(dir.join("mailer.jsonl"))
            .args(["--timeout", timeout, "--session-timeout", session])
            .arg("[127.0.0.1]")
            .env_clear()
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        Mailer { child, stdin, out }
    }

    /// One whole reply as sendmail reads it (the mailer's own deadlines
    /// bound every wait here; the test's is the exit wait below).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            let n = self.out.read_line(&mut l).unwrap();
            assert!(n > 0, "the mailer closed its stdout (so far: {all:?})");
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    fn cmd(&mut self, c: &str) -> String {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        w.flush().unwrap();
        self.reply()
    }

    /// The exit status, within 10 s.
    fn exit_code(&mut self) -> Option<i32> {
        self.stdin = None;
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "the mailer did not exit"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mailer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sendmail (here: a trickler) sends its EHLO a byte at a time: the mailer
/// cuts it when the whole line is due, with a 4xx, and exits 75.
#[test]
fn mailer_cuts_a_trickled_command_line() {
    let sink = Sink::start();
    let mut m = Mailer::start(sink.addr.port(), "deadline-out-line", "2", "60");
    assert!(m.reply().starts_with("220"));
    let t = Instant::now();
    let trickle = Trickle::start(m.stdin.take().unwrap(), endless("EHLO "));
    let r = m.reply();
    let took = t.elapsed();
    let sent = trickle.stop();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert_cut_after(took, 1800, 5);
    assert!(sent >= 5, "{sent} bytes trickled");
    assert_eq!(m.exit_code(), Some(75));
    assert!(
        !sink.commands().iter().any(|l| l.starts_with("EHLO")),
        "{:?}",
        sink.commands()
    );
}

/// sendmail trickles the message data: the session limit cuts it, sendmail
/// gets a 4xx (the message stays queued), the mailer exits 75, and the
/// remote never gets the message (the connection is dropped before the dot).
#[test]
fn mailer_session_limit_cuts_trickled_data_and_delivers_nothing() {
    let sink = Sink::start();
    let t = Instant::now();
    let mut m = Mailer::start(sink.addr.port(), "deadline-out-data", "2", "3");
    assert!(m.reply().starts_with("220"));
    assert!(m.cmd("EHLO sender.test").starts_with("250"));
    assert!(m.cmd("MAIL FROM:<alice@sender.test>").starts_with("250"));
    assert!(m.cmd("RCPT TO:<bob@receiver.test>").starts_with("250"));
    assert!(m.cmd("DATA").starts_with("354"));
    let trickle = Trickle::start(m.stdin.take().unwrap(), slow_message());
    let r = m.reply();
    let took = t.elapsed();
    let sent = trickle.stop();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert_cut_after(took, 2800, 6);
    assert!(sent >= 5, "{sent} bytes trickled");
    assert_eq!(m.exit_code(), Some(75));
    assert_cut_mid_data(&sink);
}

/// A remote MX that trickles its greeting is cut when the whole reply is
/// due: sendmail gets a 4xx greeting and the mailer exits 75.
#[test]
fn mailer_cuts_a_remote_trickling_its_greeting() {
    let (remote, server) = trickling_server();
    let t = Instant::now();
    let mut m = Mailer::start(remote.port(), "deadline-out-reply", "2", "60");
    let r = m.reply();
    let took = t.elapsed();
    assert!(r.starts_with("421 4.4.1"), "{r}");
    assert_cut_after(took, 1800, 5);
    assert!(m.cmd("QUIT").starts_with("221"));
    assert_eq!(m.exit_code(), Some(75));
    let sent = server.join().unwrap();
    assert!(sent >= 5, "{sent} bytes trickled");
}
