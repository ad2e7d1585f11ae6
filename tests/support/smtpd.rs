//! The one SMTP server of the tests: a real ESMTP server on loopback that
//! records everything it is told and accepts every message, unless its
//! [`Script`] makes it the broken or unusual MTA a test needs (a refusal,
//! no EHLO, a cut connection, a silent or dying server, STARTTLS, XCLIENT,
//! a PROXY header, a crafted XBLACKPONY answer).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One message as the server received it.
#[derive(Clone, Debug, Default)]
pub struct Received {
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The data exactly as sent, dot-stuffing included, up to (not including) the final ".\r\n".
    pub data: Vec<u8>,
}

/// What happens after STARTTLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Starttls {
    /// Not a command this server knows (500).
    Unknown,
    /// 220, then go on in clear (a stand-in for TLS: what matters is who
    /// decides to send the envelope after it).
    Fake,
    /// 220, then echo every byte until the client ends its side (the
    /// client cannot tell a TLS handshake from bytes that come back).
    Echo,
}

/// What the server does. The default is an ordinary ESMTP server that
/// accepts everything.
#[derive(Clone)]
pub struct Script {
    /// The greeting without its final CRLF (may hold several lines).
    pub greeting: String,
    /// Accept the connection and never greet (nor read).
    pub silent: bool,
    /// Wait this long before the greeting (sendmail's greet_pause).
    pub greet_pause: Duration,
    /// The name in the EHLO and HELO replies.
    pub host: String,
    /// EHLO reply lines after the first; `None`: EHLO is answered 502.
    pub ehlo: Option<Vec<String>>,
    pub rcpt_reply: Option<String>,
    /// Reply to the DATA command instead of 354.
    pub data_reply: Option<String>,
    /// Reply to the final dot instead of 250.
    pub dot_reply: Option<String>,
    /// Close the connection after reading this many bytes of message data.
    pub cut_data_after: Option<usize>,
    /// Read the whole message, then say nothing for this long and close.
    pub stall_at_dot: Option<Duration>,
    /// Raw bytes answering an XBLACKPONY command; the server then keeps
    /// what the client still sends (until it pauses) and closes.
    pub xblackpony: Option<Vec<u8>>,
    pub starttls: Starttls,
    /// The reply to XCLIENT (Postfix answers with a new greeting).
    pub xclient: Option<String>,
    /// Close without a reply when command number n (from 1) arrives.
    pub die_at_command: Option<usize>,
    /// Read a PROXY protocol header (v1 or v2) if the client sends one first.
    pub proxy_header: bool,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 sink.test ESMTP test sink".into(),
            silent: false,
            greet_pause: Duration::ZERO,
            host: "sink.test".into(),
            ehlo: Some(EHLO_LINES.iter().map(|s| s.to_string()).collect()),
            rcpt_reply: None,
            data_reply: None,
            dot_reply: None,
            cut_data_after: None,
            stall_at_dot: None,
            xblackpony: None,
            starttls: Starttls::Unknown,
            xclient: None,
            die_at_command: None,
            proxy_header: false,
        }
    }
}

pub const EHLO_LINES: [&str; 4] = ["PIPELINING", "8BITMIME", "SIZE 200000000", "CHUNKING"];

impl Script {
    /// The EHLO reply this script gives, as the client reads it. An empty
    /// last line is the bare code (`250\r\n`).
    pub fn ehlo_reply(&self) -> String {
        let mut lines = vec![format!("{} hello", self.host)];
        lines.extend(self.ehlo.clone().unwrap_or_default());
        let n = lines.len();
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| match (i + 1 == n, l.is_empty()) {
                (true, true) => "250\r\n".to_string(),
                (last, _) => format!("250{}{l}\r\n", if last { ' ' } else { '-' }),
            })
            .collect()
    }
}

/// One connection, as the server saw it.
#[derive(Clone, Debug, Default)]
pub struct Conn {
    pub peer: Option<SocketAddr>,
    /// The PROXY header, raw (with `Script::proxy_header`).
    pub header: Vec<u8>,
    pub commands: Vec<String>,
}

/// Everything the server saw.
#[derive(Default)]
pub struct SmtpdLog {
    pub conns: Vec<Conn>,
    /// Every command line of every connection, raw.
    pub commands: Vec<String>,
    pub messages: Vec<Received>,
    /// DATA (or BDAT) phases that ended without the final dot.
    pub partial: usize,
    /// What clients sent after an `xblackpony` answer.
    pub after_switch: Vec<u8>,
}

pub struct Smtpd {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<SmtpdLog>>,
}

/// The name most tests know the accepting default by.
pub type Sink = Smtpd;

impl Smtpd {
    /// The default script on 127.0.0.1, any port.
    pub fn start() -> Smtpd {
        Self::with(Script::default())
    }

    /// `script` on 127.0.0.1, any port.
    pub fn with(script: Script) -> Smtpd {
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

    pub fn partial(&self) -> usize {
        self.log.lock().unwrap().partial
    }

    pub fn connections(&self) -> usize {
        self.log.lock().unwrap().conns.len()
    }

    pub fn conns(&self) -> Vec<Conn> {
        self.log.lock().unwrap().conns.clone()
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
                "the server got {} of {n} messages",
                m.len()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A PROXY v1 line or v2 binary header, if one comes at once.
fn read_proxy_header(s: &TcpStream, r: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    // The header comes before our greeting; without one the client waits.
    s.set_read_timeout(Some(Duration::from_millis(300)))?;
    let mut first = [0u8; 16];
    let n = s.peek(&mut first).unwrap_or(0);
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut header = Vec::new();
    if n >= 6 && &first[..6] == b"PROXY " {
        r.read_until(b'\n', &mut header)?;
    } else if n >= 4 && &first[..4] == b"\r\n\r\n" {
        let mut fixed = [0u8; 16];
        r.read_exact(&mut fixed)?;
        let mut rest = vec![0u8; u16::from_be_bytes([fixed[14], fixed[15]]).into()];
        r.read_exact(&mut rest)?;
        header.extend_from_slice(&fixed);
        header.extend_from_slice(&rest);
    }
    Ok(header)
}

fn serve(s: TcpStream, log: &Mutex<SmtpdLog>, sc: &Script) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let conn = {
        let mut l = log.lock().unwrap();
        l.conns.push(Conn {
            peer: s.peer_addr().ok(),
            ..Conn::default()
        });
        l.conns.len() - 1
    };
    if sc.silent {
        // Hold the connection open, say nothing, until the client goes.
        let _ = (&s).read_to_end(&mut Vec::new());
        return Ok(());
    }
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s.try_clone()?);
    if sc.proxy_header {
        let header = read_proxy_header(&s, &mut r)?;
        log.lock().unwrap().conns[conn].header = header;
    }
    thread::sleep(sc.greet_pause);
    w.write_all(format!("{}\r\n", sc.greeting).as_bytes())?;
    let mut cur = Received::default();
    let mut n = 0;
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        n += 1;
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        {
            let mut l = log.lock().unwrap();
            l.commands.push(text.clone());
            l.conns[conn].commands.push(text.clone());
        }
        if sc.die_at_command == Some(n) {
            return Ok(());
        }
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
            reply(&mut w, &format!("250 {}", sc.host))?;
        } else if upper.starts_with("XBLACKPONY") && sc.xblackpony.is_some() {
            w.write_all(sc.xblackpony.as_deref().unwrap())?;
            // Keep whatever the client sends on (it must send nothing).
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
            let mut rest = r.buffer().to_vec();
            let mut buf = [0u8; 4096];
            while let Ok(k @ 1..) = r.get_mut().read(&mut buf) {
                rest.extend_from_slice(&buf[..k]);
            }
            log.lock().unwrap().after_switch.extend_from_slice(&rest);
            return Ok(());
        } else if upper.starts_with("XCLIENT") && sc.xclient.is_some() {
            reply(&mut w, sc.xclient.as_deref().unwrap())?;
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
        } else if upper.starts_with("BDAT ") {
            let parts: Vec<&str> = text.split(' ').collect();
            let size: usize = parts[1].parse().unwrap();
            let mut chunk = vec![0u8; size];
            if r.read_exact(&mut chunk).is_err() {
                log.lock().unwrap().partial += 1;
                return Ok(());
            }
            cur.data.extend_from_slice(&chunk);
            if parts.len() > 2 {
                log.lock().unwrap().messages.push(cur.clone());
                cur.data.clear();
            }
            reply(&mut w, &format!("250 2.0.0 {size} octets"))?;
        } else if upper == "QUIT" {
            reply(&mut w, "221 2.0.0 bye")?;
            return Ok(());
        } else if upper == "STARTTLS" && sc.starttls != Starttls::Unknown {
            reply(&mut w, "220 2.0.0 Ready to start TLS")?;
            if sc.starttls == Starttls::Echo {
                // Byte pipe: echo until the client ends its side.
                let mut buf = [0u8; 8192];
                while let Ok(k @ 1..) = r.read(&mut buf) {
                    if w.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
                let _ = w.shutdown(Shutdown::Write);
                return Ok(());
            }
        } else if upper == "RSET" || upper == "NOOP" {
            reply(&mut w, "250 2.0.0 ok")?;
        } else {
            reply(&mut w, "500 5.5.1 unrecognized command")?;
        }
    }
}
