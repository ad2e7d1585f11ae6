//! The one driver of blackpony-mailer: it plays sendmail driving a prog
//! mailer over its pipes (greeting, EHLO, MAIL, RCPT, DATA, the message, the
//! dot, QUIT; reads only when a reply is due, every wait with a deadline),
//! and runs the mailer's terminal commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::{bin, scratch};

/// How long the driver waits for any one reply of the mailer.
const REPLY_WAIT: Duration = Duration::from_secs(15);

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
    /// RUST_LOG for the mailer (its log goes to --log, never to sendmail).
    pub rust_log: Option<String>,
}

impl Default for Drive {
    fn default() -> Self {
        Drive {
            rcpts: vec!["<bob@receiver.test>".into()],
            pipelining: false,
            die_mid_data: None,
            messages: 1,
            starttls: false,
            rust_log: None,
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
            .envs(drive.rust_log.as_ref().map(|l| ("RUST_LOG", l)))
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

/// The mailer's usual arguments for a delivery to 127.0.0.1:`port`, with
/// every file it writes named `<name>.*` in `dir`.
pub fn mailer_args(port: u16, key: &Path, dir: &Path, name: &str, extra: &[&str]) -> Vec<String> {
    let file = |ext: &str| {
        dir.join(format!("{name}.{ext}"))
            .to_string_lossy()
            .into_owned()
    };
    let mut v: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--key".into(),
        key.to_string_lossy().into_owned(),
        "--known-peers".into(),
        file("known_peers"),
        "--log".into(),
        file("mailer.log"),
        "--record".into(),
        file("mailer.jsonl"),
        "--timeout".into(),
        "20".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}
