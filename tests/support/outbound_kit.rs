//! Test parts for tests/outbound.rs: a sendmail-like driver for
//! blackpony-mailer, an SMTP server that binds a given address and follows a
//! script (sinks for MX tests, broken servers), a TCP relay that records and
//! tampers with the wire, a dnsmasq serving the test domains, and port
//! reservation across 127.0.0.x.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{bin, scratch, Daemon, Received};

/// How long the driver waits for any one reply of the mailer.
const REPLY_WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Driving blackpony-mailer the way sendmail does
// ---------------------------------------------------------------------------

/// How the driver plays sendmail.
#[derive(Clone)]
pub struct Drive {
    pub rcpts: Vec<String>,
    /// Send MAIL, RCPT and DATA in one write (sendmail does when PIPELINING is offered).
    pub pipelining: bool,
    /// Die (close both pipes) after writing this many bytes of the message.
    pub die_mid_data: Option<usize>,
    /// Messages sent in the one session (sendmail reuses a connection).
    pub messages: usize,
    /// Send STARTTLS when the EHLO reply offers it; after a 220 go on as if
    /// TLS were up (EHLO again), for servers that pretend the same.
    pub starttls: bool,
}

impl Default for Drive {
    fn default() -> Self {
        Drive {
            rcpts: vec!["<bob@receiver.test>".into()],
            pipelining: false,
            die_mid_data: None,
            messages: 1,
            starttls: false,
        }
    }
}

/// What sendmail saw of one delivery.
#[derive(Debug)]
pub struct Run {
    /// The greeting, every line, CRLFs included.
    pub greeting: String,
    /// (command, full reply) in order; the final dot is ".", the message is not shown.
    pub replies: Vec<(String, String)>,
    /// Anything the mailer wrote after the reply to QUIT (or after it died).
    pub trailing: String,
    pub status: ExitStatus,
}

impl Run {
    /// The full reply to the first command starting with `cmd`.
    pub fn reply(&self, cmd: &str) -> Option<&str> {
        self.replies
            .iter()
            .find(|(c, _)| c.starts_with(cmd))
            .map(|(_, r)| r.as_str())
    }

    /// The full replies to every command starting with `cmd`.
    pub fn replies_to(&self, cmd: &str) -> Vec<&str> {
        self.replies
            .iter()
            .filter(|(c, _)| c.starts_with(cmd))
            .map(|(_, r)| r.as_str())
            .collect()
    }

    /// The reply to the (first) final dot was 250.
    pub fn delivered(&self) -> bool {
        self.reply(".").is_some_and(|r| r.starts_with("250"))
    }

    /// Nothing told sendmail the message was taken: no 2xx to the final
    /// dot, and no stray 250 in anything the mailer wrote after it.
    #[track_caller]
    pub fn assert_not_accepted(&self) {
        assert!(
            !self.reply(".").is_some_and(|r| r.starts_with('2')),
            "{self:#?}"
        );
        assert!(
            !self.trailing.lines().any(|l| l.starts_with("25")),
            "{self:#?}"
        );
    }
}

/// The mailer's stdout, read like sendmail reads it: only when a reply is
/// expected (never drained in the background, so a mailer that writes more
/// than it should fills the pipe and blocks, as it would under sendmail).
/// The reading itself happens on a thread so every wait has a deadline.
struct Lines {
    req: Sender<()>,
    rx: Receiver<Option<String>>,
    eof: bool,
}

impl Lines {
    fn spawn<R: Read + Send + 'static>(r: R) -> Lines {
        let (req, req_rx) = channel::<()>();
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut r = BufReader::new(r);
            for () in req_rx {
                let mut l = Vec::new();
                let line = match r.read_until(b'\n', &mut l) {
                    Ok(0) | Err(_) => None,
                    Ok(_) => Some(String::from_utf8_lossy(&l).into_owned()),
                };
                let end = line.is_none();
                if tx.send(line).is_err() || end {
                    return;
                }
            }
        });
        Lines {
            req,
            rx,
            eof: false,
        }
    }

    fn line(&mut self) -> Option<String> {
        if self.eof || self.req.send(()).is_err() {
            self.eof = true;
            return None;
        }
        match self.rx.recv_timeout(REPLY_WAIT) {
            Ok(Some(l)) => Some(l),
            Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                None
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("the mailer wrote no reply within {REPLY_WAIT:?}")
            }
        }
    }

    /// One full reply ("" at end of file).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        while let Some(l) = self.line() {
            let last = l.as_bytes().get(3) != Some(&b'-');
            all.push_str(&l);
            if last {
                break;
            }
        }
        all
    }

    /// Everything up to end of file.
    fn rest_of(mut self) -> String {
        let mut all = String::new();
        while let Some(l) = self.line() {
            all.push_str(&l);
        }
        all
    }
}

/// How long one write to the mailer's stdin may block. sendmail writes the
/// whole message before it reads the reply: a mailer that stops reading
/// meanwhile deadlocks with it.
const WRITE_WAIT: Duration = Duration::from_secs(5);

/// The mailer's stdin, written on a thread so a write that blocks (the
/// mailer stopped reading) is detected instead of hanging the test.
struct Input {
    tx: Option<Sender<Vec<u8>>>,
    done: Receiver<()>,
}

impl Input {
    fn spawn(mut w: std::process::ChildStdin) -> Input {
        let (tx, rx) = channel::<Vec<u8>>();
        let (done_tx, done) = channel();
        thread::spawn(move || {
            for chunk in rx {
                // A failed write (the mailer has gone) is what sendmail
                // would see as a deferral too: not an error here.
                let _ = w.write_all(&chunk).and_then(|()| w.flush());
                if done_tx.send(()).is_err() {
                    return;
                }
            }
        });
        Input { tx: Some(tx), done }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Stuck> {
        let Some(tx) = &self.tx else { return Ok(()) };
        if tx.send(bytes.to_vec()).is_err() {
            return Ok(());
        }
        match self.done.recv_timeout(WRITE_WAIT) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => Ok(()),
            Err(RecvTimeoutError::Timeout) => Err(Stuck),
        }
    }

    /// Close the pipe (once pending writes are done).
    fn close(&mut self) {
        self.tx = None;
    }
}

/// A write to the mailer blocked for [`WRITE_WAIT`].
#[derive(Debug)]
struct Stuck;

/// Kills the mailer if the driver gives up (a panic) on the way.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(Some(_))) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Run blackpony-mailer with `args` and `dest` (sendmail's $h) and deliver
/// `body` (already dot-stuffed, CRLF lines) the way sendmail does (an empty
/// `dest` gives no HOST argument at all): wait for
/// the greeting, EHLO (HELO if EHLO is refused with 5xx), MAIL, RCPT, DATA,
/// the message, ".", QUIT. Panics if the mailer writes to stderr.
pub fn run_mailer(args: &[String], dest: &str, body: &[u8], drive: &Drive) -> Run {
    let queue = queue_dir();
    let mut child = Guard(
        Command::new(bin("blackpony-mailer"))
            .args(args)
            .args((!dest.is_empty()).then_some(dest))
            .env_clear()
            .env("AGENT", "sendmail")
            .current_dir(&queue)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut w = Input::spawn(child.0.stdin.take().unwrap());
    let mut lines = Lines::spawn(child.0.stdout.take().unwrap());
    let mut stderr = child.0.stderr.take().unwrap();
    let err_thread = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let mut replies: Vec<(String, String)> = Vec::new();
    let greeting = lines.reply();
    let outcome = session(&mut w, &mut lines, &mut replies, &greeting, body, drive);
    let Ok(outcome) = outcome else {
        drop(child);
        panic!(
            "the mailer stopped reading its stdin for {WRITE_WAIT:?} while sendmail was \
             writing (sendmail only reads after its final dot: a deadlock). So far: \
             {greeting:?} {replies:#?}"
        );
    };
    let trailing = if outcome == Tx::Died {
        // sendmail is gone: both pipes close.
        w.close();
        drop(lines);
        String::new()
    } else {
        let _ = w.send(b"QUIT\r\n");
        let r = lines.reply();
        replies.push(("QUIT".into(), r));
        w.close();
        lines.rest_of()
    };
    let status = wait_with_deadline(&mut child.0);
    let err = err_thread.join().unwrap();
    assert!(err.is_empty(), "the mailer wrote to stderr: {err:?}");
    Run {
        greeting,
        replies,
        trailing,
        status,
    }
}

/// Everything after the greeting up to QUIT.
fn session(
    w: &mut Input,
    lines: &mut Lines,
    replies: &mut Vec<(String, String)>,
    greeting: &str,
    body: &[u8],
    drive: &Drive,
) -> Result<Tx, Stuck> {
    if !greeting.starts_with("220") {
        return Ok(Tx::Stopped);
    }
    w.send(b"EHLO sender.test\r\n")?;
    let ehlo = lines.reply();
    replies.push(("EHLO sender.test".into(), ehlo.clone()));
    if ehlo.starts_with('5') {
        w.send(b"HELO sender.test\r\n")?;
        let helo = lines.reply();
        replies.push(("HELO sender.test".into(), helo.clone()));
        if !helo.starts_with('2') {
            return Ok(Tx::Stopped);
        }
    } else if !ehlo.starts_with('2') {
        return Ok(Tx::Stopped);
    }
    if drive.starttls && ehlo.contains("STARTTLS") {
        w.send(b"STARTTLS\r\n")?;
        let r = lines.reply();
        let go = r.starts_with("220");
        replies.push(("STARTTLS".into(), r));
        if go {
            w.send(b"EHLO sender.test\r\n")?;
            let r = lines.reply();
            replies.push(("EHLO sender.test (after STARTTLS)".into(), r));
        }
    }
    for _ in 0..drive.messages {
        match transaction(w, lines, replies, body, drive)? {
            Tx::Done => {}
            other => return Ok(other),
        }
    }
    Ok(Tx::Done)
}

#[derive(Debug, PartialEq, Eq)]
enum Tx {
    Done,
    /// A refusal ended it.
    Stopped,
    /// sendmail died mid-DATA.
    Died,
}

/// One MAIL..dot transaction.
fn transaction(
    w: &mut Input,
    lines: &mut Lines,
    replies: &mut Vec<(String, String)>,
    body: &[u8],
    drive: &Drive,
) -> Result<Tx, Stuck> {
    let mut cmds = vec!["MAIL FROM:<alice@sender.test>".to_string()];
    cmds.extend(drive.rcpts.iter().map(|r| format!("RCPT TO:{r}")));
    cmds.push("DATA".into());
    if drive.pipelining {
        let all: String = cmds.iter().map(|c| format!("{c}\r\n")).collect();
        w.send(all.as_bytes())?;
        for c in &cmds {
            let r = lines.reply();
            replies.push((c.clone(), r));
        }
    } else {
        let mut rcpt_ok = false;
        for c in &cmds {
            // DATA only after an accepted RCPT, as sendmail does.
            if c == "DATA" && !rcpt_ok {
                return Ok(Tx::Stopped);
            }
            w.send(format!("{c}\r\n").as_bytes())?;
            let r = lines.reply();
            let good = r.starts_with('2') || r.starts_with('3');
            replies.push((c.clone(), r));
            if c.starts_with("RCPT") {
                rcpt_ok |= good;
            } else if !good {
                return Ok(Tx::Stopped);
            }
        }
    }
    if !replies.last().is_some_and(|(_, r)| r.starts_with("354")) {
        return Ok(Tx::Stopped);
    }
    if let Some(n) = drive.die_mid_data {
        w.send(&body[..n.min(body.len())])?;
        return Ok(Tx::Died);
    }
    w.send(body)?;
    w.send(b".\r\n")?;
    let r = lines.reply();
    let ok = r.starts_with('2');
    replies.push((".".into(), r));
    Ok(if ok { Tx::Done } else { Tx::Stopped })
}

/// sendmail runs its mailers in the queue directory.
fn queue_dir() -> PathBuf {
    static Q: OnceLock<PathBuf> = OnceLock::new();
    Q.get_or_init(|| scratch("outbound-queue")).clone()
}

fn wait_with_deadline(child: &mut Child) -> ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if t.elapsed() > REPLY_WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the mailer did not exit after its pipes closed");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Run blackpony-mailer for one of its terminal commands (--list-peers,
/// --forget): (status, stdout, stderr).
pub fn run_command(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(bin("blackpony-mailer"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A third host key (test_keys gives two), made once per test binary.
pub fn key_c() -> &'static PathBuf {
    static KEY: OnceLock<PathBuf> = OnceLock::new();
    KEY.get_or_init(|| {
        let k = scratch("outbound-key-c").join("c.key");
        let out = Command::new(bin("blackpony"))
            .arg("--generate-key")
            .arg("--key")
            .arg(&k)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        k
    })
}

/// `blackpony --fingerprint --key <key>`: the fingerprint token.
pub fn fingerprint(key: &Path) -> String {
    let out = Command::new(bin("blackpony"))
        .arg("--fingerprint")
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8(out.stdout).unwrap();
    s.split_whitespace().next().unwrap().to_string()
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

/// One port, bound on several loopback addresses at once: listeners on the
/// `live` addresses, and on the `dead` ones a socket that is bound but not
/// listening (a connection there is refused, and nobody else can take it).
pub struct Ports {
    pub port: u16,
    pub listeners: Vec<TcpListener>,
    _held: Vec<socket2::Socket>,
    _reservation: TcpListener,
}

pub fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

pub fn reserve(live: &[Ipv4Addr], dead: &[Ipv4Addr]) -> Ports {
    'again: for _ in 0..50 {
        let reservation = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = reservation.local_addr().unwrap().port();
        let mut listeners = Vec::new();
        for ip in live {
            match TcpListener::bind((*ip, port)) {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'again,
            }
        }
        let mut held = Vec::new();
        for ip in dead {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            if s.bind(&SocketAddr::from((*ip, port)).into()).is_err() {
                continue 'again;
            }
            held.push(s);
        }
        return Ports {
            port,
            listeners,
            _held: held,
            _reservation: reservation,
        };
    }
    panic!("no port free on all of {live:?} {dead:?}");
}

impl Ports {
    /// The listener bound on `ip`.
    pub fn take(&mut self, ip: Ipv4Addr) -> TcpListener {
        let i = self
            .listeners
            .iter()
            .position(|l| l.local_addr().unwrap().ip() == ip)
            .unwrap();
        self.listeners.remove(i)
    }
}

// ---------------------------------------------------------------------------
// A scripted SMTP server
// ---------------------------------------------------------------------------

/// What the server does. The default is an ordinary ESMTP server that
/// accepts everything.
#[derive(Clone)]
pub struct Script {
    pub greeting: String,
    /// EHLO reply lines after the first; `None`: EHLO is answered 502.
    pub ehlo: Option<Vec<String>>,
    pub rcpt_reply: Option<String>,
    /// Reply to the DATA command instead of 354.
    pub data_reply: Option<String>,
    /// Reply to the final dot instead of 250.
    pub dot_reply: Option<String>,
    /// Close the connection after reading this many bytes of message data.
    pub cut_data_after: Option<usize>,
    /// Raw bytes answering an XBLACKPONY command; the server then closes.
    pub xblackpony: Option<Vec<u8>>,
    /// Read the whole message, then say nothing for this long and close.
    pub stall_at_dot: Option<Duration>,
    /// Answer STARTTLS with 220 and go on in clear (a stand-in for TLS:
    /// what matters is who decides to send the envelope after it).
    pub fake_starttls: bool,
}

pub const EHLO_LINES: [&str; 3] = ["PIPELINING", "8BITMIME", "SIZE 10000000"];

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 mx.test ESMTP scripted".into(),
            ehlo: Some(EHLO_LINES.iter().map(|s| s.to_string()).collect()),
            rcpt_reply: None,
            data_reply: None,
            dot_reply: None,
            cut_data_after: None,
            xblackpony: None,
            stall_at_dot: None,
            fake_starttls: false,
        }
    }
}

impl Script {
    /// The EHLO reply this script gives, as the client reads it.
    pub fn ehlo_reply(&self) -> String {
        let mut lines = vec!["smtpd.test hello".to_string()];
        lines.extend(self.ehlo.clone().unwrap_or_default());
        let n = lines.len();
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}\r\n", if i + 1 == n { ' ' } else { '-' }))
            .collect()
    }
}

#[derive(Default)]
pub struct SmtpdLog {
    pub connections: usize,
    pub commands: Vec<String>,
    pub messages: Vec<Received>,
    /// DATA phases that ended without the final dot.
    pub partial: usize,
}

pub struct Smtpd {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<SmtpdLog>>,
}

impl Smtpd {
    /// On 127.0.0.1, any port.
    pub fn start(script: Script) -> Smtpd {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    pub fn on(listener: TcpListener, script: Script) -> Smtpd {
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(SmtpdLog::default()));
        let log2 = Arc::clone(&log);
        thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let log = Arc::clone(&log2);
                let script = script.clone();
                thread::spawn(move || {
                    let _ = serve(s, &log, &script);
                });
            }
        });
        Smtpd { addr, log }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.log.lock().unwrap().messages.clone()
    }

    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().commands.clone()
    }

    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().connections
    }
}

fn serve(s: TcpStream, log: &Mutex<SmtpdLog>, sc: &Script) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    log.lock().unwrap().connections += 1;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    w.write_all(format!("{}\r\n", sc.greeting).as_bytes())?;
    let mut cur = Received::default();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        log.lock().unwrap().commands.push(text.clone());
        let upper = text.to_ascii_uppercase();
        let reply = |w: &mut TcpStream, s: &str| w.write_all(format!("{s}\r\n").as_bytes());
        if upper.starts_with("EHLO") {
            match &sc.ehlo {
                None => reply(&mut w, "502 5.5.1 EHLO not implemented")?,
                Some(_) => {
                    cur = Received {
                        helo: text[4..].trim().to_string(),
                        ..Default::default()
                    };
                    w.write_all(sc.ehlo_reply().as_bytes())?;
                }
            }
        } else if upper.starts_with("HELO") {
            cur = Received {
                helo: text[4..].trim().to_string(),
                ..Default::default()
            };
            reply(&mut w, "250 smtpd.test")?;
        } else if upper.starts_with("XBLACKPONY") {
            match &sc.xblackpony {
                Some(bytes) => {
                    w.write_all(bytes)?;
                    // Let the client read it before the connection goes.
                    thread::sleep(Duration::from_millis(300));
                    return Ok(());
                }
                None => reply(&mut w, "500 5.5.1 unrecognized command")?,
            }
        } else if upper.starts_with("MAIL FROM:") {
            cur.mail_from = text[10..].to_string();
            cur.rcpt_to.clear();
            reply(&mut w, "250 2.1.0 ok")?;
        } else if upper.starts_with("RCPT TO:") {
            match &sc.rcpt_reply {
                Some(rep) => reply(&mut w, rep)?,
                None => {
                    cur.rcpt_to.push(text[8..].to_string());
                    reply(&mut w, "250 2.1.5 ok")?;
                }
            }
        } else if upper == "DATA" {
            if let Some(rep) = &sc.data_reply {
                reply(&mut w, rep)?;
                continue;
            }
            reply(&mut w, "354 go ahead")?;
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
                if sc.cut_data_after.is_some_and(|n| data.len() >= n) {
                    log.lock().unwrap().partial += 1;
                    // Close with unread data: the client sees a reset.
                    let _ = w.shutdown(Shutdown::Both);
                    return Ok(());
                }
            }
            if let Some(t) = sc.stall_at_dot {
                thread::sleep(t);
                return Ok(());
            }
            match &sc.dot_reply {
                Some(rep) => reply(&mut w, rep)?,
                None => {
                    let mut m = cur.clone();
                    m.data = data;
                    log.lock().unwrap().messages.push(m);
                    reply(&mut w, "250 2.0.0 accepted")?;
                }
            }
        } else if upper == "QUIT" {
            reply(&mut w, "221 2.0.0 bye")?;
            return Ok(());
        } else if upper == "STARTTLS" && sc.fake_starttls {
            reply(&mut w, "220 2.0.0 Ready to start TLS")?;
        } else if upper == "RSET" || upper == "NOOP" {
            reply(&mut w, "250 2.0.0 ok")?;
        } else {
            reply(&mut w, "500 5.5.1 unrecognized command")?;
        }
    }
}

// ---------------------------------------------------------------------------
// A relay that records and tampers
// ---------------------------------------------------------------------------

/// What the relay does to the server→client bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    Nothing,
    /// Remove the XBLACKPONY line from the first EHLO reply.
    StripKeyword,
    /// Flip one bit in the body of the n-th encrypted record (0: the first after the handshake).
    FlipRecord(usize),
}

/// Both directions of one relayed connection, as received.
#[derive(Clone, Default, Debug)]
pub struct Capture {
    /// Client (mailer) to server.
    pub up: Vec<u8>,
    /// Server to client, before any tampering.
    pub down: Vec<u8>,
}

pub struct Relay {
    pub addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
    tamper: Arc<Mutex<Tamper>>,
    captures: Arc<Mutex<Vec<Arc<Mutex<Capture>>>>>,
}

impl Relay {
    pub fn start(backend: SocketAddr) -> Relay {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), backend)
    }

    pub fn on(listener: TcpListener, backend: SocketAddr) -> Relay {
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            backend: Arc::new(Mutex::new(backend)),
            tamper: Arc::new(Mutex::new(Tamper::Nothing)),
            captures: Arc::default(),
        };
        let (backend, tamper, captures) = (
            Arc::clone(&relay.backend),
            Arc::clone(&relay.tamper),
            Arc::clone(&relay.captures),
        );
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let to = *backend.lock().unwrap();
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                let cap = Arc::new(Mutex::new(Capture::default()));
                captures.lock().unwrap().push(Arc::clone(&cap));
                let mut transform = transformer(*tamper.lock().unwrap());
                let (c2, s2, cap2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&cap),
                );
                thread::spawn(move || {
                    pump(c2, s2, |b| {
                        cap2.lock().unwrap().up.extend_from_slice(b);
                        b.to_vec()
                    })
                });
                thread::spawn(move || {
                    pump(server, client, |b| {
                        cap.lock().unwrap().down.extend_from_slice(b);
                        transform(b)
                    })
                });
            }
        });
        relay
    }

    pub fn set_backend(&self, to: SocketAddr) {
        *self.backend.lock().unwrap() = to;
    }

    pub fn set_tamper(&self, t: Tamper) {
        *self.tamper.lock().unwrap() = t;
    }

    pub fn captures(&self) -> Vec<Capture> {
        self.captures
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, mut f: impl FnMut(&[u8]) -> Vec<u8>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let out = f(&buf[..n]);
                if to.write_all(&out).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

type Transform = Box<dyn FnMut(&[u8]) -> Vec<u8> + Send>;

fn transformer(t: Tamper) -> Transform {
    match t {
        Tamper::Nothing => Box::new(|b: &[u8]| b.to_vec()),
        Tamper::StripKeyword => {
            let mut s = Stripper::default();
            Box::new(move |b: &[u8]| s.feed(b))
        }
        Tamper::FlipRecord(n) => {
            let mut seen = Vec::new();
            let mut flipped = false;
            Box::new(move |b: &[u8]| {
                let start = seen.len();
                seen.extend_from_slice(b);
                let mut out = b.to_vec();
                if let Some(at) = record_body_offset(&seen, n) {
                    if !flipped && at >= start && at < seen.len() {
                        out[at - start] ^= 0x01;
                        flipped = true;
                    }
                }
                out
            })
        }
    }
}

/// Removes the XBLACKPONY line from the first EHLO reply and fixes the
/// continuation marks; everything else passes untouched.
#[derive(Default)]
struct Stripper {
    pending: Vec<u8>,
    /// 0: in the greeting, 1: in the EHLO reply, 2: done.
    phase: u8,
    reply: Vec<Vec<u8>>,
}

impl Stripper {
    fn feed(&mut self, b: &[u8]) -> Vec<u8> {
        if self.phase == 2 {
            return b.to_vec();
        }
        self.pending.extend_from_slice(b);
        let mut out = Vec::new();
        while self.phase < 2 {
            let Some(i) = self.pending.iter().position(|&c| c == b'\n') else {
                break;
            };
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let last = line.get(3) != Some(&b'-');
            if self.phase == 0 {
                out.extend_from_slice(&line);
                if last {
                    self.phase = 1;
                }
                continue;
            }
            self.reply.push(line);
            if last {
                let mut kept: Vec<Vec<u8>> = self
                    .reply
                    .drain(..)
                    .filter(|l| {
                        !String::from_utf8_lossy(l.get(4..).unwrap_or(&[]))
                            .to_ascii_uppercase()
                            .starts_with("XBLACKPONY")
                    })
                    .collect();
                let n = kept.len();
                for (i, l) in kept.iter_mut().enumerate() {
                    if l.len() > 3 {
                        l[3] = if i + 1 == n { b' ' } else { b'-' };
                    }
                    out.extend_from_slice(l);
                }
                self.phase = 2;
            }
        }
        if self.phase == 2 {
            out.append(&mut self.pending);
        }
        out
    }
}

/// Where the body of the n-th record after the RSA-BLOWFISH handshake
/// starts in the server→client stream, once enough of it is known:
/// `220 ... Go ahead with RSA-BLOWFISH\r\n`, ServerHello and ServerFinished
/// (type u8, length u16), then records (length u32, body, 20-byte HMAC).
fn record_body_offset(s: &[u8], n: usize) -> Option<usize> {
    const GO: &[u8] = b"Go ahead with RSA-BLOWFISH\r\n";
    const MAC: usize = 20;
    let mut p = s.windows(GO.len()).position(|w| w == GO)? + GO.len();
    for _ in 0..2 {
        let h = s.get(p..p + 3)?;
        p += 3 + usize::from(u16::from_be_bytes([h[1], h[2]]));
    }
    for _ in 0..n {
        let h = s.get(p..p + 4)?;
        p += 4 + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize + MAC;
    }
    Some(p + 4)
}

// ---------------------------------------------------------------------------
// blackpony --listen on a given listener's address
// ---------------------------------------------------------------------------

/// The suite these tests negotiate (the wire parser of [`Tamper::FlipRecord`]
/// knows its handshake).
pub const SUITE: &str = "RSA-BLOWFISH";

/// `blackpony --listen` with `key`, offering [`SUITE`] only, on a free port
/// in front of `backend`.
pub fn inbound(backend: SocketAddr, key: &Path, log: &Path) -> (Daemon, SocketAddr) {
    crate::support::start_inbound(
        backend,
        &["--key", key.to_str().unwrap(), "--suites", SUITE],
        log,
    )
}

// ---------------------------------------------------------------------------
// dnsmasq
// ---------------------------------------------------------------------------

fn dnsmasq_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("dnsmasq"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq not found in PATH or /usr/sbin: run scripts/install-test-deps.sh \
                 (it installs Debian's dnsmasq-base)"
            )
        })
}

/// The test domains. Everything else under .test is NXDOMAIN (`--local`).
/// Mail goes to 127.0.0.x; 127.0.0.2 is where nothing listens.
pub const DOWN: u8 = 2;
const RECORDS: &[&str] = &[
    "--local=/test/",
    "--host-record=ready.test,127.0.0.1",
    // Preference order, given out of order: mx10 gets the mail.
    "--mx-host=pref.test,mx30.pref.test,30",
    "--mx-host=pref.test,mx10.pref.test,10",
    "--mx-host=pref.test,mx20.pref.test,20",
    "--host-record=mx10.pref.test,127.0.0.4",
    "--host-record=mx20.pref.test,127.0.0.3",
    "--host-record=mx30.pref.test,127.0.0.5",
    // The best MX is down.
    "--mx-host=down.test,mx1.down.test,10",
    "--mx-host=down.test,mx2.down.test,20",
    "--host-record=mx1.down.test,127.0.0.2",
    "--host-record=mx2.down.test,127.0.0.3",
    // The best MX greets with 421.
    "--mx-host=busy.test,mx1.busy.test,10",
    "--mx-host=busy.test,mx2.busy.test,20",
    "--host-record=mx1.busy.test,127.0.0.4",
    "--host-record=mx2.busy.test,127.0.0.5",
    // No MX, an address: implicit MX.
    "--host-record=implicit.test,127.0.0.6",
    // RFC 7505 null MX.
    "--mx-host=null.test,.,0",
    // Every MX down or busy.
    "--mx-host=dead.test,mx1.dead.test,10",
    "--mx-host=dead.test,mx2.dead.test,20",
    "--host-record=mx1.dead.test,127.0.0.2",
    "--host-record=mx2.dead.test,127.0.0.4",
    // An MX host without an address.
    "--mx-host=allgone.test,gone.allgone.test,10",
    // Two domains, one MX host: the policy file names one of them.
    "--mx-host=example.test,mx.example.test,10",
    "--mx-host=other.test,mx.example.test,10",
    "--host-record=mx.example.test,127.0.0.7",
    // Two MX hosts of equal preference: both get mail.
    "--mx-host=equal.test,e1.equal.test,10",
    "--mx-host=equal.test,e2.equal.test,10",
    "--host-record=e1.equal.test,127.0.0.3",
    "--host-record=e2.equal.test,127.0.0.5",
    // The best MX accepts the connection and never greets.
    "--mx-host=hang.test,mx1.hang.test,10",
    "--mx-host=hang.test,mx2.hang.test,20",
    "--host-record=mx1.hang.test,127.0.0.6",
    "--host-record=mx2.hang.test,127.0.0.3",
    // An MX that runs blackpony.
    "--mx-host=secure.test,mx.secure.test,10",
    "--host-record=mx.secure.test,127.0.0.8",
];

pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dnsmasq {
    pub fn start() -> Dnsmasq {
        let binary = dnsmasq_binary();
        let mut why = String::new();
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .unwrap()
                .port();
            let mut child = Command::new(&binary)
                .args([
                    "--no-daemon",
                    "--no-resolv",
                    "--no-hosts",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--conf-file=/dev/null",
                    "--log-facility=-",
                ])
                .arg(format!("--port={port}"))
                .args(RECORDS)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_dns(&mut child, addr) {
                Ok(()) => return Dnsmasq { child, addr },
                Err(e) => why = e,
            }
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            why = format!("{why}; dnsmasq said: {stderr}");
        }
        panic!("dnsmasq did not start: {why}");
    }
}

fn wait_dns(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    use blackpony::dns::Resolver;
    let resolver = Resolver::with_servers(vec![addr], Duration::from_millis(100)).with_attempts(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if resolver.lookup_addrs("ready.test").is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err("no answer within 10 s".into())
}
