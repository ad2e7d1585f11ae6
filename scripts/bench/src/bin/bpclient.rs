//! The connection benchmark's client: N sequential connections, one message
//! each, in one of three modes that share everything but the switch to
//! encryption, so the client's own cost is comparable across them:
//!
//! * `plain`: connect, 220, EHLO, MAIL, RCPT, DATA, message, QUIT;
//! * `starttls`: the same with STARTTLS + a TLS 1.3 handshake (rustls, ring
//!   provider, no resumption, certificate not checked as in opportunistic
//!   SMTP, CertificateVerify signature checked) + EHLO;
//! * `bp`: the same with blackpony's switch, run by the library the mailer
//!   uses: `blackpony::switch::request` over a `peer::Peer` (XBLACKPONY
//!   command with the ClientHello, key flight + inner EHLO).
//!
//! `--quickack` sets TCP_QUICKACK before every read. Without it, Postfix's
//! smtpd (no TCP_NODELAY) holds its 250 reply to the EHLO after the TLS
//! handshake behind the unacknowledged NewSessionTicket segment (Nagle) until
//! the client's delayed ACK fires, 40 ms later, on most connections; the
//! bench passes it in every mode alike.
//!
//! Every mode reads replies with blackpony's `LineReader` / `read_reply` and
//! sends through the same `Peer`. The message is the anchor's: 5 headers and
//! a 5120-byte body (5291 bytes), not pipelined (like smtplib).
//!
//! Round trips ("turns") are counted on the socket: a read that follows a
//! write is one turn. Reported: all turns after the greeting, and the turns
//! between the first EHLO's reply and sending MAIL (the cost of the switch:
//! 0 plain, 2 blackpony, 3 STARTTLS + TLS 1.3 + second EHLO).
//!
//! Output: one JSON line (n, seconds, msgs/s, client CPU from getrusage,
//! latency percentiles, turns, bytes, suite or TLS parameters).
//!
//! usage: bpclient --connect ADDR:PORT --mode plain|starttls|bp [-n N]
//!                 [--key FILE] [--suites LIST] [--body BYTES] [--timeout SECS]
#![deny(unsafe_op_in_unsafe_fn)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blackpony::cert::VerifiedCert;
use blackpony::channel::{BoxRead, BoxSink, Sink};
use blackpony::keys::HostKey;
use blackpony::peer::Peer;
use blackpony::smtp::{ehlo, LineReader};
use blackpony::static_key::StaticIdentity;
use blackpony::suite::{SuitePolicy, CLIENT_DEFAULT};

const HELO: &[u8] = b"EHLO client.e2e.test\r\n";

/// --quickack: TCP_QUICKACK before every read (see `quickack`).
static QUICKACK: AtomicBool = AtomicBool::new(false);

#[derive(Default)]
struct Tap {
    wrote: AtomicBool,
    turns: AtomicU64,
    out: AtomicU64,
    inn: AtomicU64,
}

/// One half of the socket, counting turns and bytes.
struct Half {
    s: TcpStream,
    tap: Arc<Tap>,
}

/// Ask the kernel to acknowledge what arrives next at once (Linux drops back
/// to delayed ACKs by itself, so this is set before every read).
fn quickack(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, a pointer to an int and its size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl Read for Half {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        if QUICKACK.load(Ordering::Relaxed) {
            quickack(&self.s);
        }
        let n = self.s.read(b)?;
        if n > 0 && self.tap.wrote.swap(false, Ordering::Relaxed) {
            self.tap.turns.fetch_add(1, Ordering::Relaxed);
        }
        self.tap.inn.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Half {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.s.write(b)?;
        if n > 0 {
            self.tap.wrote.store(true, Ordering::Relaxed);
        }
        self.tap.out.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    /// rustls hands its queued records over as one vectored write: one
    /// segment for ChangeCipherSpec + Finished, as OpenSSL sends them.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.s.write_vectored(bufs)?;
        if n > 0 {
            self.tap.wrote.store(true, Ordering::Relaxed);
        }
        self.tap.out.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for Half {
    fn close(&mut self) -> io::Result<()> {
        self.s.shutdown(std::net::Shutdown::Write)
    }
}

/// The TLS stream, shared by the reading and the writing half (one thread).
type Tls = Arc<Mutex<rustls::StreamOwned<rustls::ClientConnection, Half>>>;
struct TlsHalf(Tls);

impl Read for TlsHalf {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0.lock().expect("one thread");
        match s.read(b) {
            // The server may close the TCP stream right after its close_notify.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            r => r,
        }
    }
}

impl Write for TlsHalf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("one thread").write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().expect("one thread").flush()
    }
}

impl Sink for TlsHalf {
    fn close(&mut self) -> io::Result<()> {
        let mut s = self.0.lock().expect("one thread");
        s.conn.send_close_notify();
        s.flush()?;
        s.sock.s.shutdown(std::net::Shutdown::Write)
    }
}

/// Opportunistic TLS: any certificate, but the handshake signature is checked.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    StartTls,
    Bp,
}

struct Cfg {
    addr: String,
    mode: Mode,
    key: Option<HostKey>,
    identity: Option<StaticIdentity>,
    /// With --ik: the server's certificate from the first connection, so
    /// every later one is a known-peer (IK) handshake, as for the mailer.
    cached: Option<std::sync::Mutex<Option<VerifiedCert>>>,
    suites: SuitePolicy,
    tls: Arc<rustls::ClientConfig>,
    message: Vec<u8>,
    timeout: Duration,
}

/// What one connection saw.
struct One {
    turns: u64,
    switch_turns: u64,
    out: u64,
    inn: u64,
    what: String,
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn expect(peer: &mut Peer, code: u16, what: &str) -> io::Result<blackpony::smtp::Reply> {
    let r = peer.read_reply().map_err(err)?;
    if r.code != code {
        return Err(err(format!("{what}: {}", r.summary())));
    }
    Ok(r)
}

fn command(peer: &mut Peer, line: &[u8], code: u16) -> io::Result<blackpony::smtp::Reply> {
    peer.send(line).map_err(err)?;
    expect(peer, code, &String::from_utf8_lossy(line))
}

fn one(cfg: &Cfg) -> io::Result<One> {
    let s = TcpStream::connect(&cfg.addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(cfg.timeout))?;
    s.set_write_timeout(Some(cfg.timeout))?;
    // STARTTLS needs the socket back after the plain part.
    let for_tls = if cfg.mode == Mode::StartTls {
        Some(s.try_clone()?)
    } else {
        None
    };
    let tap = Arc::new(Tap::default());
    let r = Half {
        s: s.try_clone()?,
        tap: tap.clone(),
    };
    let w = Half {
        s,
        tap: tap.clone(),
    };
    let mut peer = Peer::new(Box::new(r), Box::new(w), "remote");
    expect(&mut peer, 220, "greeting")?;
    let reply = command(&mut peer, HELO, 250)?;
    let before = tap.turns.load(Ordering::Relaxed);
    let what = match cfg.mode {
        Mode::Plain => "plain".to_string(),
        Mode::StartTls => {
            command(&mut peer, b"STARTTLS\r\n", 220)?;
            let (old_r, _old_w) = peer.replace(
                LineReader::new(Box::new(io::empty())),
                Box::new(Vec::<u8>::new()),
            );
            if !old_r.buffered().is_empty() {
                return Err(err("bytes after the STARTTLS reply"));
            }
            let half = Half {
                s: for_tls.expect("kept for STARTTLS"),
                tap: tap.clone(),
            };
            let name = rustls::pki_types::ServerName::try_from("pfx.e2e.test").expect("name");
            let conn = rustls::ClientConnection::new(cfg.tls.clone(), name).map_err(err)?;
            let tls: Tls = Arc::new(Mutex::new(rustls::StreamOwned::new(conn, half)));
            let reader: BoxRead = Box::new(TlsHalf(tls.clone()));
            let writer: BoxSink = Box::new(TlsHalf(tls.clone()));
            peer.replace(LineReader::new(reader), writer);
            command(&mut peer, HELO, 250)?;
            let s = tls.lock().expect("one thread");
            format!(
                "{:?} {:?} {:?}",
                s.conn.protocol_version().expect("handshake done"),
                s.conn.negotiated_cipher_suite().expect("suite").suite(),
                s.conn.negotiated_key_exchange_group().map(|g| g.name())
            )
        }
        Mode::Bp => {
            let offered = ehlo::offered_suites(&reply)
                .ok_or_else(|| err("the server offers no XBLACKPONY"))?;
            let suite = cfg
                .suites
                .choose(&offered)
                .ok_or_else(|| err(format!("no allowed suite in {offered:?}")))?;
            let cached = cfg.cached.as_ref().and_then(|c| c.lock().unwrap().clone());
            let side = blackpony::switch::ClientSide {
                key: cfg.key.as_ref(),
                identity: cfg.identity.as_ref(),
                cached: cached.as_ref(),
            };
            let (inner, on) =
                blackpony::switch::request(&mut peer, &side, suite, &offered, HELO, &mut |_, _| {
                    Ok(())
                })
                .map_err(err)?;
            if let (Some(c), Some(cert)) = (&cfg.cached, &on.server_cert) {
                let now = blackpony::clock::now_unix();
                *c.lock().unwrap() = blackpony::cert::parse_and_verify(cert, now).ok();
            }
            if inner.code != 250 {
                return Err(err(format!("inner EHLO: {}", inner.summary())));
            }
            suite.to_string()
        }
    };
    let switch_turns = tap.turns.load(Ordering::Relaxed) - before;
    command(&mut peer, b"MAIL FROM:<bench@client.e2e.test>\r\n", 250)?;
    command(&mut peer, b"RCPT TO:<sink@remote.test>\r\n", 250)?;
    command(&mut peer, b"DATA\r\n", 354)?;
    peer.writer.write_all(&cfg.message)?;
    command(&mut peer, b".\r\n", 250)?;
    command(&mut peer, b"QUIT\r\n", 221)?;
    // Counted up to the reply to QUIT: the orderly close after it is not awaited.
    let turns = tap.turns.load(Ordering::Relaxed);
    peer.finish();
    Ok(One {
        turns,
        switch_turns,
        out: tap.out.load(Ordering::Relaxed),
        inn: tap.inn.load(Ordering::Relaxed),
        what,
    })
}

fn message(body: usize) -> Vec<u8> {
    let mut line: Vec<u8> = (0..78).map(|i| b'A' + (i % 26) as u8).collect();
    line.extend_from_slice(b"\r\n");
    let mut b = line.repeat(body / 80 + 1);
    b.truncate(body - 2);
    b.extend_from_slice(b"\r\n");
    let mut m = b"From: bench <bench@client.e2e.test>\r\nTo: sink <sink@remote.test>\r\nSubject: starttls anchor\r\nMessage-ID: <anchor@client.e2e.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n".to_vec();
    m.extend_from_slice(&b);
    m
}

/// User and system CPU seconds of this process so far.
fn cpu() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given,
    // which points to one; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let usage = || -> ! {
        eprintln!("usage: bpclient --connect ADDR:PORT --mode plain|starttls|bp [-n N] [--key FILE] [--suites LIST] [--ik] [--body BYTES] [--timeout SECS]");
        std::process::exit(2)
    };
    let addr = get("--connect").unwrap_or_else(|| usage());
    let mode = match get("--mode").as_deref() {
        Some("plain") => Mode::Plain,
        Some("starttls") => Mode::StartTls,
        Some("bp") => Mode::Bp,
        _ => usage(),
    };
    QUICKACK.store(args.iter().any(|a| a == "--quickack"), Ordering::Relaxed);
    let n: usize = get("-n").and_then(|v| v.parse().ok()).unwrap_or(300);
    let body: usize = get("--body").and_then(|v| v.parse().ok()).unwrap_or(5120);
    let suites = match get("--suites") {
        Some(l) => SuitePolicy::from_list(&l, false).unwrap_or_else(|e| {
            eprintln!("bpclient: {e}");
            std::process::exit(2)
        }),
        None => SuitePolicy::new(&CLIENT_DEFAULT, false),
    };
    // As the mailer: the static identity for v2; the RSA key only for RSA-BLOWFISH.
    let identity =
        get("--key").and_then(|p| blackpony::static_key::load(std::path::Path::new(&p)).ok());
    let rsa_only = !suites.uses_noise() || identity.is_none();
    let key = get("--key").filter(|_| rsa_only).map(|p| {
        HostKey::load(std::path::Path::new(&p)).unwrap_or_else(|e| {
            eprintln!("bpclient: {e}");
            std::process::exit(1)
        })
    });
    if mode == Mode::Bp && key.is_none() && identity.is_none() {
        eprintln!("bpclient: --mode bp needs --key");
        std::process::exit(2);
    }
    let cfg = Cfg {
        addr,
        mode,
        key,
        identity,
        cached: args
            .iter()
            .any(|a| a == "--ik")
            .then(|| std::sync::Mutex::new(None)),
        suites,
        tls: tls_config(),
        message: message(body),
        timeout: Duration::from_secs(get("--timeout").and_then(|v| v.parse().ok()).unwrap_or(30)),
    };
    let mut lat = Vec::with_capacity(n);
    let mut last: Option<One> = None;
    let (u0, s0) = cpu();
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        match one(&cfg) {
            // The last connection's shape: with --ik the first one is XX.
            Ok(o) => last = Some(o),
            Err(e) => {
                eprintln!("bpclient: connection {i}: {e}");
                std::process::exit(1);
            }
        }
        lat.push(t.elapsed().as_secs_f64());
    }
    let secs = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu();
    lat.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize] * 1e3;
    let f = last.expect("n >= 1");
    println!(
        "{{\"n\":{n},\"secs\":{secs:.4},\"msgs_per_s\":{:.1},\"cpu_user\":{:.4},\"cpu_sys\":{:.4},\"cpu_ms_per_conn\":{:.4},\"lat_ms_p50\":{:.3},\"lat_ms_p99\":{:.3},\"turns\":{},\"switch_turns\":{},\"bytes_out\":{},\"bytes_in\":{},\"what\":\"{}\",\"msg_bytes\":{}}}",
        n as f64 / secs,
        u1 - u0,
        s1 - s0,
        (u1 - u0 + s1 - s0) * 1e3 / n as f64,
        q(0.5),
        q(0.99),
        f.turns,
        f.switch_turns,
        f.out,
        f.inn,
        f.what,
        cfg.message.len()
    );
}
