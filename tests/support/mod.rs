//! Shared test parts: a small real SMTP server (a sink) on loopback that
//! records every message it accepts, helpers to run the real binaries, and a
//! host key made once per test run.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// One message as the sink received it.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The data exactly as sent, dot-stuffing included, up to (not including) the final ".\r\n".
    pub data: Vec<u8>,
}

/// Everything the sink saw.
#[derive(Default)]
pub struct SinkLog {
    pub messages: Vec<Received>,
    /// Every command line, raw.
    pub commands: Vec<String>,
    /// Transactions whose DATA was cut before the final dot (never accepted).
    pub partial: usize,
    pub peers: Vec<SocketAddr>,
}

/// A minimal ESMTP server: answers EHLO with PIPELINING, 8BITMIME, SIZE,
/// CHUNKING; accepts every message; can be told to answer RCPT/DATA with errors.
pub struct Sink {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<SinkLog>>,
}

#[derive(Clone, Default)]
pub struct SinkBehaviour {
    /// Reply to use for the final dot instead of 250.
    pub data_reply: Option<String>,
    /// Reply to use for RCPT instead of 250.
    pub rcpt_reply: Option<String>,
    /// Greeting instead of 220.
    pub greeting: Option<String>,
    /// Extra EHLO keywords (e.g. "XBLACKPONY RSA-BLOWFISH" to pretend).
    pub extra_ehlo: Vec<String>,
    /// Answer EHLO with 502 (an old HELO-only server).
    pub no_ehlo: bool,
}

impl Sink {
    pub fn start() -> Sink {
        Self::start_with(SinkBehaviour::default())
    }

    pub fn start_with(b: SinkBehaviour) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(SinkLog::default()));
        let log2 = Arc::clone(&log);
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let log = Arc::clone(&log2);
                let b = b.clone();
                thread::spawn(move || {
                    let _ = serve_sink(s, &log, &b);
                });
            }
        });
        Sink { addr, log }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }

    /// Wait until `n` messages arrived (or panic after 20 s).
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        let t = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "sink got {} of {n} messages",
                m.len()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_sink(s: TcpStream, log: &Mutex<SinkLog>, b: &SinkBehaviour) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    log.lock().unwrap().peers.push(s.peer_addr()?);
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    w.write_all(
        b.greeting
            .as_deref()
            .unwrap_or("220 sink.test ESMTP test sink")
            .as_bytes(),
    )?;
    w.write_all(b"\r\n")?;
    let mut cur = Received::default();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        log.lock().unwrap().commands.push(text.clone());
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            if b.no_ehlo {
                w.write_all(b"502 5.5.1 EHLO not implemented\r\n")?;
                continue;
            }
            cur = Received {
                helo: text[4..].trim().to_string(),
                ..Default::default()
            };
            let mut rep = String::from("250-sink.test hello\r\n");
            for k in &b.extra_ehlo {
                rep.push_str(&format!("250-{k}\r\n"));
            }
            rep.push_str(
                "250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 200000000\r\n250 CHUNKING\r\n",
            );
            w.write_all(rep.as_bytes())?;
        } else if upper.starts_with("HELO") {
            cur = Received {
                helo: text[4..].trim().to_string(),
                ..Default::default()
            };
            w.write_all(b"250 sink.test\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            cur.mail_from = text[10..].to_string();
            cur.rcpt_to.clear();
            w.write_all(b"250 2.1.0 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            match &b.rcpt_reply {
                Some(rep) => w.write_all(format!("{rep}\r\n").as_bytes())?,
                None => {
                    cur.rcpt_to.push(text[8..].to_string());
                    w.write_all(b"250 2.1.5 ok\r\n")?;
                }
            }
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n")?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    log.lock().unwrap().partial += 1;
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&l);
            }
            match &b.data_reply {
                Some(rep) => w.write_all(format!("{rep}\r\n").as_bytes())?,
                None => {
                    let mut m = cur.clone();
                    m.data = data;
                    log.lock().unwrap().messages.push(m);
                    w.write_all(b"250 2.0.0 accepted\r\n")?;
                }
            }
        } else if upper.starts_with("BDAT ") {
            let parts: Vec<&str> = text.split(' ').collect();
            let n: usize = parts[1].parse().unwrap();
            let mut chunk = vec![0u8; n];
            r.read_exact(&mut chunk)?;
            cur.data.extend_from_slice(&chunk);
            if parts.len() > 2 {
                log.lock().unwrap().messages.push(cur.clone());
                cur.data.clear();
            }
            w.write_all(format!("250 2.0.0 {n} octets\r\n").as_bytes())?;
        } else if upper == "QUIT" {
            w.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            w.write_all(b"250 2.0.0 ok\r\n")?;
        } else {
            w.write_all(b"500 5.5.1 unrecognized command\r\n")?;
        }
    }
}

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

/// Start `blackpony --listen` in front of `backend`, with extra args; waits
/// until it accepts connections.
pub fn start_inbound(backend: SocketAddr, extra: &[&str], log: &Path) -> (Daemon, SocketAddr) {
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
        .arg(log)
        // Session records next to the log, unless the test names its own file.
        .args(if extra.contains(&"--record") {
            vec![]
        } else {
            vec!["--record".into(), log.with_extension("jsonl")]
        })
        .args(extra)
        .env("RUST_LOG", "debug")
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

/// A line-oriented SMTP client for tests.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
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
