//! Helpers for tests/hardening.rs on top of tests/support/mod.rs: the
//! binaries started the way inetd starts them (socket on stdin/stdout)
//! under /usr/bin/time for their peak RSS, a sendmail stand-in driving
//! blackpony-mailer, a library-driven encrypted client, and relays that
//! trickle or tamper with the bytes between the two binaries.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use blackpony::channel::{BoxRead, BoxSink, Sink};
use blackpony::keys::HostKey;
use blackpony::peer::Peer;
use blackpony::smtp::ehlo;
use blackpony::suite::SuiteId;

use super::support::{bin, free_port, Daemon};

/// Where a test's session records go (the binaries' --record option), so
/// nothing is written outside the scratch directory.
pub fn record_args(dir: &Path, name: &str) -> Vec<String> {
    vec![
        "--record".into(),
        dir.join(format!("{name}.jsonl"))
            .to_string_lossy()
            .into_owned(),
    ]
}

// ------------------------------------------------------------ memory

/// A field of /proc/<pid>/status in kB (VmRSS, VmHWM).
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `blackpony` as inetd runs it: one accepted socket as stdin and stdout.
/// Wrapped in /usr/bin/time (when present) to learn its peak RSS.
pub struct Inetd {
    /// Our end of the connection (the "remote client").
    pub client: TcpStream,
    pub child: Daemon,
    rss_file: Option<PathBuf>,
}

impl Inetd {
    pub fn start(backend: SocketAddr, extra: &[&str], dir: &Path, name: &str) -> Inetd {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        client.set_nodelay(true).unwrap();
        let rss_file = dir.join(format!("{name}.maxrss"));
        let time = Path::new("/usr/bin/time");
        let mut cmd = if time.exists() {
            let mut c = Command::new(time);
            c.arg("-f")
                .arg("%M")
                .arg("-o")
                .arg(&rss_file)
                .arg(bin("blackpony"));
            c
        } else {
            Command::new(bin("blackpony"))
        };
        let stdout = OwnedFd::from(server_side.try_clone().unwrap());
        let child = cmd
            .arg("--backend")
            .arg(backend.to_string())
            .arg("--log")
            .arg(dir.join(format!("{name}.log")))
            .args(record_args(dir, name))
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::from(OwnedFd::from(server_side)))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Inetd {
            client,
            child: Daemon(child),
            rss_file: time.exists().then_some(rss_file),
        }
    }

    /// Wait (at most `limit`) for the process to exit; how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if self.child.0.try_wait().unwrap().is_some() {
                return Some(t.elapsed());
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Peak RSS of the finished process in kB (GNU time's %M), if measured.
    pub fn peak_rss_kb(&mut self) -> Option<u64> {
        self.wait_exit(Duration::from_secs(20))?;
        let f = self.rss_file.as_ref()?;
        let text = std::fs::read_to_string(f).ok()?;
        text.lines().last()?.trim().parse().ok()
    }
}

// ------------------------------------------------------------ daemons

/// `blackpony --listen` with our own environment and record file.
pub fn start_listen(
    backend: SocketAddr,
    extra: &[&str],
    dir: &Path,
    name: &str,
    rust_log: &str,
) -> (Daemon, SocketAddr) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(bin("blackpony"))
        .args([
            "--listen",
            &listen,
            "--backend",
            &backend.to_string(),
            "--log",
        ])
        .arg(dir.join(format!("{name}.log")))
        .args(record_args(dir, name))
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = listen.parse().unwrap();
    let t = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "blackpony --listen did not come up"
        );
        thread::sleep(Duration::from_millis(20));
    }
    (Daemon(child), addr)
}

// ------------------------------------------------------------ sendmail

/// blackpony-mailer driven the way sendmail drives a prog mailer.
pub struct Mailer {
    pub child: Daemon,
    w: Option<ChildStdin>,
    r: BufReader<ChildStdout>,
}

impl Mailer {
    pub fn start(args: &[&str], dest: &str, rust_log: &str) -> Mailer {
        let mut child = Command::new(bin("blackpony-mailer"))
            .args(args)
            .arg(dest)
            .env_clear()
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = child.stdin.take();
        let r = BufReader::new(child.stdout.take().unwrap());
        Mailer {
            child: Daemon(child),
            w,
            r,
        }
    }

    /// One reply, all lines; empty if the mailer closed its output.
    pub fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        if let Some(w) = self.w.as_mut() {
            let _ = w.write_all(bytes);
            let _ = w.flush();
        }
    }

    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// EHLO, MAIL, RCPT, DATA, `body`, the final dot; stops at the first
    /// reply that is not 2xx/3xx. Returns every reply's first line, the
    /// greeting first.
    pub fn deliver(&mut self, body: &[u8]) -> Vec<String> {
        let first = |s: String| s.lines().next().unwrap_or("").to_string();
        let mut replies = vec![first(self.reply())];
        if !replies[0].starts_with("220") {
            return replies;
        }
        for c in [
            "EHLO sender.test",
            "MAIL FROM:<alice@sender.test>",
            "RCPT TO:<bob@receiver.test>",
            "DATA",
        ] {
            let rep = first(self.cmd(c));
            let go_on = rep.starts_with('2') || rep.starts_with('3');
            replies.push(rep);
            if !go_on {
                return replies;
            }
        }
        self.send(body);
        self.send(b".\r\n");
        replies.push(first(self.reply()));
        replies
    }

    /// QUIT, close stdin, wait for the exit.
    pub fn quit(&mut self) -> Option<std::process::ExitStatus> {
        self.send(b"QUIT\r\n");
        let _ = self.reply();
        self.w = None;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// The mailer's usual arguments for a delivery to 127.0.0.1:`port`.
pub fn mailer_args(port: u16, key: &Path, dir: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--key".into(),
        key.to_string_lossy().into_owned(),
        "--known-peers".into(),
        dir.join(format!("{name}.known_peers"))
            .to_string_lossy()
            .into_owned(),
        "--log".into(),
        dir.join(format!("{name}.mailer.log"))
            .to_string_lossy()
            .into_owned(),
        "--timeout".into(),
        "20".into(),
    ];
    v.extend(record_args(dir, &format!("{name}.mailer")));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

// ------------------------------------------------------------ a library client

/// A TcpStream as the writing half of a relay Peer.
struct SockSink(TcpStream);

impl Write for SockSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Sink for SockSink {}

pub fn host_key(path: &Path) -> HostKey {
    HostKey::load(path).unwrap()
}

/// Connect, read the greeting, EHLO; returns the peer, the EHLO reply's
/// offered suites, and a raw clone of the socket.
pub fn plain_client(addr: SocketAddr) -> (Peer, Option<String>, TcpStream) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    let raw = s.try_clone().unwrap();
    let r: BoxRead = Box::new(s.try_clone().unwrap());
    let w: BoxSink = Box::new(SockSink(s));
    let mut p = Peer::new(r, w, "test-server");
    let greeting = p.read_reply().unwrap();
    assert_eq!(greeting.code, 220);
    p.send(b"EHLO client.test\r\n").unwrap();
    let reply = p.read_reply().unwrap();
    assert_eq!(reply.code, 250);
    (p, ehlo::offered_suites(&reply), raw)
}

/// A full RSA-BLOWFISH switch by the library's own client code: returns the
/// peer (now encrypted, greeted again) and a raw clone of the socket.
pub fn encrypted_client(addr: SocketAddr, key: &HostKey) -> (Peer, TcpStream) {
    let (mut p, offered, raw) = plain_client(addr);
    let offered = offered.expect("the server offers XBLACKPONY");
    let (inner, fp) = blackpony::switch::request(
        &mut p,
        Some(key),
        SuiteId::RsaBlowfish,
        &offered,
        b"EHLO client.test\r\n",
    )
    .unwrap();
    assert_eq!(inner.code, 250);
    assert!(fp.peer_fingerprint.is_some());
    (p, raw)
}

// ------------------------------------------------------------ relays

/// A one-connection TCP relay in front of `target`: `handle` gets the
/// accepted client and a fresh connection to the target.
pub fn start_relay<F>(target: SocketAddr, handle: F) -> SocketAddr
where
    F: FnOnce(TcpStream, TcpStream) + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        if let Ok((c, _)) = l.accept() {
            let s = TcpStream::connect(target).unwrap();
            for x in [&c, &s] {
                x.set_nodelay(true).unwrap();
                x.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            }
            handle(c, s);
        }
    });
    addr
}

/// Forward every byte in its own write (TCP_NODELAY, a pause after each),
/// so the reader sees the stream split at every offset.
pub fn trickle(mut from: TcpStream, mut to: TcpStream, pause: Duration, count: Arc<Mutex<u64>>) {
    let mut b = [0u8; 1];
    while let Ok(1) = from.read(&mut b) {
        if to.write_all(&b).is_err() {
            break;
        }
        *count.lock().unwrap() += 1;
        thread::sleep(pause);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// What the tampering relay does to the client→server record stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Flip one bit in the body of record `at`.
    FlipBit,
    /// Leave record `at` out.
    Drop,
    /// Send record `at` twice.
    Replay,
    /// Send record `at + 1` before record `at`.
    Reorder,
    /// Cut the stream (FIN to the server) instead of record `at`.
    Truncate,
    /// Send the server its own last record before client record `at`.
    ReflectToServer,
    /// Instead of server record `at`, send the client its own last record.
    ReflectToClient,
}

#[derive(Default)]
pub struct TamperLog {
    /// The suite the client asked for, from its XBLACKPONY line.
    pub suite: String,
    pub c2s_records: usize,
    pub s2c_records: usize,
    pub tampered: bool,
    last_c2s: Option<Vec<u8>>,
    last_s2c: Option<Vec<u8>>,
}

/// Read plain SMTP lines and forward them until one starts with `until`;
/// returns that line.
fn forward_lines(r: &mut BufReader<TcpStream>, w: &mut TcpStream, until: &[u8]) -> Option<String> {
    loop {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if w.write_all(&line).is_err() {
            return None;
        }
        if line.starts_with(until) {
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

/// The record tag length of a suite (HMAC-SHA1 or Poly1305).
pub fn tag_len(suite: &str) -> usize {
    if suite.eq_ignore_ascii_case("X25519-CHACHA20POLY1305") {
        16
    } else {
        20
    }
}

/// Forward one framed handshake message (type, u16 length, body).
fn forward_message(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> bool {
    let mut head = [0u8; 3];
    if r.read_exact(&mut head).is_err() {
        return false;
    }
    let mut body = vec![0u8; u16::from_be_bytes([head[1], head[2]]) as usize];
    r.read_exact(&mut body).is_ok() && w.write_all(&head).is_ok() && w.write_all(&body).is_ok()
}

/// One whole record: length(u32), body, the suite's tag.
fn read_record(r: &mut BufReader<TcpStream>, tag: usize) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes(head) as usize;
    if len > 1 << 20 {
        return None;
    }
    let mut rec = head.to_vec();
    rec.resize(4 + len + tag, 0);
    r.read_exact(&mut rec[4..]).ok()?;
    Some(rec)
}

fn drain(mut r: BufReader<TcpStream>) {
    let _ = std::io::copy(&mut r, &mut std::io::sink());
}

/// A relay that understands the RSA-BLOWFISH wire format (plain prefix,
/// handshake messages, records) and attacks record `at` of one direction.
pub fn start_tamper_relay(
    target: SocketAddr,
    mode: Tamper,
    at: usize,
) -> (SocketAddr, Arc<Mutex<TamperLog>>) {
    let log = Arc::new(Mutex::new(TamperLog::default()));
    let log2 = Arc::clone(&log);
    let addr = start_relay(target, move |client, server| {
        let log_up = Arc::clone(&log2);
        let (c_r, mut c_w) = (BufReader::new(client.try_clone().unwrap()), client);
        let (s_r, mut s_w) = (BufReader::new(server.try_clone().unwrap()), server);
        let up = thread::spawn(move || {
            let log = log_up;
            let mut r = c_r;
            let suite = match forward_lines(&mut r, &mut s_w, b"XBLACKPONY") {
                Some(line) => line.split_whitespace().nth(1).unwrap_or("").to_string(),
                None => {
                    let _ = s_w.shutdown(Shutdown::Write);
                    return drain(r);
                }
            };
            log.lock().unwrap().suite = suite.clone();
            let tag = tag_len(&suite);
            if !forward_message(&mut r, &mut s_w) {
                let _ = s_w.shutdown(Shutdown::Write);
                return drain(r);
            }
            let mut idx = 0;
            let mut held: Option<Vec<u8>> = None;
            while let Some(mut rec) = read_record(&mut r, tag) {
                let mut out: Vec<Vec<u8>> = Vec::new();
                {
                    let mut l = log.lock().unwrap();
                    l.c2s_records += 1;
                    l.last_c2s = Some(rec.clone());
                    match mode {
                        Tamper::FlipBit if idx == at => {
                            let mid = 4 + (rec.len() - 4 - tag) / 2;
                            rec[mid] ^= 0x10;
                            l.tampered = true;
                            out.push(rec);
                        }
                        Tamper::Drop if idx == at => l.tampered = true,
                        Tamper::Replay if idx == at => {
                            l.tampered = true;
                            out.push(rec.clone());
                            out.push(rec);
                        }
                        Tamper::Reorder if idx == at => held = Some(rec),
                        Tamper::Reorder if idx == at + 1 => {
                            l.tampered = true;
                            out.push(rec);
                            out.extend(held.take());
                        }
                        Tamper::Truncate if idx == at => {
                            l.tampered = true;
                            drop(l);
                            let _ = s_w.shutdown(Shutdown::Write);
                            return drain(r);
                        }
                        Tamper::ReflectToServer if idx == at => {
                            let own = l.last_s2c.clone().expect("a server record to reflect");
                            l.tampered = true;
                            out.push(own);
                            out.push(rec);
                        }
                        _ => out.push(rec),
                    }
                }
                idx += 1;
                for o in out {
                    if s_w.write_all(&o).is_err() {
                        return drain(r);
                    }
                }
            }
            let _ = s_w.shutdown(Shutdown::Write);
        });
        // Server to client.
        let mut r = s_r;
        if forward_lines(&mut r, &mut c_w, b"220 2.0.0 Go ahead").is_some()
            && forward_message(&mut r, &mut c_w)
            && forward_message(&mut r, &mut c_w)
        {
            let tag = tag_len(&log2.lock().unwrap().suite);
            let mut idx = 0;
            while let Some(rec) = read_record(&mut r, tag) {
                let send = {
                    let mut l = log2.lock().unwrap();
                    l.s2c_records += 1;
                    l.last_s2c = Some(rec.clone());
                    if mode == Tamper::ReflectToClient && idx == at {
                        l.tampered = true;
                        l.last_c2s.clone().expect("a client record to reflect")
                    } else {
                        rec
                    }
                };
                idx += 1;
                if c_w.write_all(&send).is_err() {
                    break;
                }
            }
        }
        let _ = c_w.shutdown(Shutdown::Write);
        drain(r);
        let _ = up.join();
    });
    (addr, log)
}

// ------------------------------------------------------------ a fake MX

/// A one-connection SMTP server that answers the first commands from a
/// script: for each line it reads it writes the next answer (in one write).
/// Everything it receives afterwards is kept, raw.
pub fn fake_server(answers: Vec<Vec<u8>>) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = Arc::clone(&seen);
    thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        let mut answers = answers.into_iter();
        if let Some(greeting) = answers.next() {
            let _ = w.write_all(&greeting);
        }
        for a in answers {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                return;
            }
            seen2.lock().unwrap().extend_from_slice(&line);
            let _ = w.write_all(&a);
        }
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        seen2.lock().unwrap().extend_from_slice(&rest);
    });
    (addr, seen)
}

/// ROT13 of ASCII letters (for reading what a ROT13 client sent).
pub fn rot13(b: &[u8]) -> Vec<u8> {
    b.iter()
        .map(|&c| match c {
            b'a'..=b'z' => (c - b'a' + 13) % 26 + b'a',
            b'A'..=b'Z' => (c - b'A' + 13) % 26 + b'A',
            _ => c,
        })
        .collect()
}
