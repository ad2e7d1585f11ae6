//! Shared test parts. Here: paths, scratch directories, host keys made once
//! per test binary, the one way to start `blackpony` (listening, or on a
//! socket as inetd starts it) and a line-oriented SMTP client. Beside it:
//! the one scripted SMTP server (smtpd.rs), the one driver of
//! blackpony-mailer (mailer.rs) and the one recording and tampering relay
//! (relay.rs), and a dnsmasq (dnsmasq.rs).
#![allow(dead_code)]

mod dnsmasq;
mod mailer;
mod relay;
mod smtpd;

// Each test binary uses only some of them.
#[allow(unused_imports)]
pub use dnsmasq::*;
#[allow(unused_imports)]
pub use mailer::*;
#[allow(unused_imports)]
pub use relay::*;
#[allow(unused_imports)]
pub use smtpd::*;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Path of one of the package's binaries.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "blackpony" => PathBuf::from(env!("CARGO_BIN_EXE_blackpony")),
        "blackpony-mailer" => PathBuf::from(env!("CARGO_BIN_EXE_blackpony-mailer")),
        other => panic!("unknown binary {other}"),
    }
}

/// A scratch directory under the target dir, unique per test.
pub fn scratch(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two host keys generated once per test binary (RSA generation is slow),
/// written with mode 0600 into a shared directory.
pub fn test_keys() -> &'static (PathBuf, PathBuf) {
    static KEYS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let d = scratch("keys");
        let a = d.join("a.key");
        let b = d.join("b.key");
        for k in [&a, &b] {
            let out = Command::new(bin("blackpony"))
                .arg("--generate-key")
                .arg("--key")
                .arg(k)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "generate-key: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (a, b)
    })
}

/// A free TCP port on 127.0.0.1 (bind, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (and reaped) when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `blackpony --listen` in front of `backend`, with extra args, at
/// RUST_LOG=debug; waits until it accepts connections.
pub fn start_inbound(backend: SocketAddr, extra: &[&str], log: &Path) -> (Daemon, SocketAddr) {
    start_inbound_at(backend, extra, log, "debug")
}

/// [`start_inbound`] at a given RUST_LOG level. Session records go next to
/// the log (`<log>.jsonl`) unless `extra` names its own `--record`.
pub fn start_inbound_at(
    backend: SocketAddr,
    extra: &[&str],
    log: &Path,
    rust_log: &str,
) -> (Daemon, SocketAddr) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(bin("blackpony"))
        .args(["--listen", &listen])
        .args(inbound_args(backend, extra, Some(log)))
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

fn inbound_args(backend: SocketAddr, extra: &[&str], log: Option<&Path>) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec!["--backend".into(), backend.to_string().into()];
    if let Some(log) = log {
        v.extend(["--log".into(), log.into()]);
        if !extra.contains(&"--record") {
            v.extend(["--record".into(), log.with_extension("jsonl").into()]);
        }
    }
    v.extend(extra.iter().map(OsString::from));
    v
}

/// `blackpony` as inetd starts it: the test accepts a connection and hands
/// the accepted socket to the program as its stdin and stdout, at
/// RUST_LOG=trace, stderr piped. With `peak_rss`, the program runs under
/// GNU time (/usr/bin/time), which writes its peak RSS in kB to that file.
/// Without `log`, no --log and no --record. Returns the test's end of the
/// connection and the child.
pub fn launch_on_socket(
    backend: SocketAddr,
    extra: &[&str],
    log: Option<&Path>,
    peak_rss: Option<&Path>,
) -> (TcpStream, Child) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (s, _) = l.accept().unwrap();
    let mut cmd = match peak_rss {
        Some(f) => {
            let time = Path::new("/usr/bin/time");
            assert!(
                time.exists(),
                "GNU time is needed to measure peak RSS: scripts/install-test-deps.sh installs it"
            );
            let mut c = Command::new(time);
            c.arg("-f").arg("%M").arg("-o").arg(f).arg(bin("blackpony"));
            c
        }
        None => Command::new(bin("blackpony")),
    };
    let child = cmd
        .args(inbound_args(backend, extra, log))
        .env("RUST_LOG", "trace")
        .stdin(Stdio::from(OwnedFd::from(s.try_clone().unwrap())))
        .stdout(Stdio::from(OwnedFd::from(s)))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The Command (and with it our copies of the socket) is gone here.
    (c, child)
}

/// ROT13 of ASCII letters, written here independently of the library, so
/// tests check the wire format itself: every other byte unchanged.
pub fn rot13(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' => (b - b'a' + 13) % 26 + b'a',
            b'A'..=b'Z' => (b - b'A' + 13) % 26 + b'A',
            _ => b,
        })
        .collect()
}

/// A line-oriented SMTP client for tests.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self::on(s)
    }

    /// On a connected socket (its read timeout as it is).
    pub fn on(s: TcpStream) -> Client {
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Read one full reply; returns (code, all lines joined).
    pub fn reply(&mut self) -> (u16, String) {
        let mut all = String::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).unwrap();
            assert!(
                n > 0,
                "connection closed while waiting for a reply (so far: {all:?})"
            );
            all.push_str(&l);
            if l.as_bytes().get(3) != Some(&b'-') {
                return (l[..3].parse().unwrap(), all);
            }
        }
    }

    pub fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }

    pub fn cmd(&mut self, s: &str) -> (u16, String) {
        self.send(s);
        self.send("\r\n");
        self.reply()
    }

    /// True if the server closes the connection (EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        matches!(self.r.read(&mut buf), Ok(0) | Err(_))
    }
}

/// Wait until the log file contains `needle` (the session line is written
/// when the server side finishes, a moment after the client has gone).
pub fn wait_log(path: &Path, needle: &str) -> String {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{} never contained {needle:?}:\n{text}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}
