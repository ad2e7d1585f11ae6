//! The inbound program, `blackpony`, as a mail administrator runs it: the
//! real binary over real sockets, in `--listen` mode, with the client's
//! socket on stdin (the test is the launcher, as inetd would be), piped from
//! a recorded session, and under a real openbsd-inetd. Behind it, the test
//! sink from `support` (or a tiny custom server) plays the MTA.

mod support;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use blackpony::channel::{BoxRead, BoxSink};
use blackpony::keys::HostKey;
use blackpony::peer::Peer;
use blackpony::smtp::{ehlo, Reply};
use blackpony::suite::SuiteId;

use support::*;

/// Every read in these tests gives up long before the 10 s budget.
const READ_TIMEOUT: Duration = Duration::from_secs(8);

// ------------------------------------------------------------------ helpers

fn rot13s(s: &str) -> String {
    String::from_utf8(rot13(s.as_bytes())).unwrap()
}

fn connect(addr: SocketAddr) -> Client {
    let c = Client::connect(addr);
    c.w.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    c
}

/// The sink's own EHLO reply, asked directly (no proxy in between).
fn sink_ehlo(addr: SocketAddr) -> String {
    let mut c = connect(addr);
    assert_eq!(c.reply().0, 220);
    let (code, text) = c.cmd("EHLO probe.test");
    assert_eq!(code, 250);
    c.cmd("QUIT");
    text
}

/// The EHLO reply with `XBLACKPONY <offer>` appended as blackpony must do it.
fn with_keyword(reply: &str, offer: &str) -> String {
    let mut lines: Vec<String> = reply.split_inclusive("\r\n").map(String::from).collect();
    let last = lines.last_mut().unwrap();
    assert_eq!(&last[3..4], " ");
    last.replace_range(3..4, "-");
    lines.push(format!("250 XBLACKPONY {offer}\r\n"));
    lines.concat()
}

/// Everything the peer still sends until it ends its side, which it must do
/// within 3 s (a reset counts as an end; a read timeout does not).
fn drain(c: &mut Client) -> Vec<u8> {
    c.w.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut rest = Vec::new();
    match c.r.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the connection did not end ({e}); got {:?}",
            String::from_utf8_lossy(&rest)
        ),
    }
    rest
}

/// The peer ends its side (EOF) within 3 s; a read timeout is not an end.
fn assert_closed_soon(c: &mut Client) {
    c.w.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 256];
    let t = Instant::now();
    match c.r.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "expected the end of the connection, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no end of the connection after {:?}: {e}", t.elapsed()),
    }
}

/// Send a full plain transaction on a greeted (EHLO done) session and QUIT.
fn deliver(c: &mut Client, tag: &str) {
    assert_eq!(c.cmd(&format!("MAIL FROM:<{tag}@sender.test>")).0, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@receiver.test>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    let (code, text) = c.cmd(&format!("Subject: {tag}\r\n\r\nbody of {tag}\r\n."));
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").0, 221);
}

fn body_of(tag: &str) -> Vec<u8> {
    format!("Subject: {tag}\r\n\r\nbody of {tag}\r\n").into_bytes()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The `session client=...` summary line(s) of a log file, waiting for `n` of them.
/// Sessions that received nothing (start_inbound's readiness probe) are left out.
fn session_lines(log: &Path, n: usize) -> Vec<String> {
    let mut lines = Vec::new();
    wait_until("the session log line", Duration::from_secs(5), || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        lines = text
            .lines()
            .filter(|l| l.contains(" session client=") && !l.contains(" in=0 "))
            .map(String::from)
            .collect();
        lines.len() >= n
    });
    lines
}

/// A key path that does not exist: RSA-BLOWFISH is then not offered.
fn no_key(dir: &Path) -> String {
    dir.join("absent.key").to_str().unwrap().to_string()
}

fn key_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `blackpony --listen` without a host key (no RSA-BLOWFISH), plus `extra`.
fn keyless_inbound(backend: SocketAddr, dir: &Path, extra: &[&str]) -> (Daemon, SocketAddr) {
    let key = no_key(dir);
    start_inbound(
        backend,
        &[&["--key", key.as_str()], extra].concat(),
        &dir.join("log"),
    )
}

/// `blackpony --listen` offering RSA-BLOWFISH with key B, plus `extra`.
fn rsa_inbound(backend: SocketAddr, extra: &[&str], log: &Path) -> (Daemon, SocketAddr) {
    let kb = key_arg(&test_keys().1);
    start_inbound(
        backend,
        &[&["--suites", "RSA-BLOWFISH", "--key", kb], extra].concat(),
        log,
    )
}

/// Check that `bytes` is nothing but well-formed SMTP reply lines.
fn assert_only_smtp_replies(bytes: &[u8]) {
    assert!(
        bytes.ends_with(b"\r\n"),
        "not CRLF-terminated: {:?}",
        String::from_utf8_lossy(bytes)
    );
    for line in bytes[..bytes.len() - 2].split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let ok = line.len() >= 4
            && (b'2'..=b'5').contains(&line[0])
            && line[1].is_ascii_digit()
            && line[2].is_ascii_digit()
            && (line[3] == b' ' || line[3] == b'-');
        assert!(
            ok,
            "not an SMTP reply line: {:?} in {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(bytes)
        );
    }
}

/// inetd's part played by the test (support's launch_on_socket), with
/// this file's read timeout on the client's side.
fn on_socket(backend: SocketAddr, extra: &[&str], log: Option<&Path>) -> (Client, Child) {
    let (c, child) = launch_on_socket(backend, extra, log, None);
    c.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    (Client::on(c), child)
}

/// Wait (bounded) for a launched child; returns its exit code and stderr.
fn finish(mut child: Child) -> (Option<i32>, String) {
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > READ_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("blackpony did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

/// A library-built client connection: a `Peer` over a socket.
fn library_peer(addr: SocketAddr) -> Peer {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let reader: BoxRead = Box::new(s.try_clone().unwrap());
    let writer: BoxSink = Box::new(s);
    Peer::new(reader, writer, "server")
}

/// Greeting, outer EHLO, RSA-BLOWFISH handshake and inner EHLO, all by the
/// library's client side. Returns the inner EHLO reply and the server's fingerprint.
fn rsa_handshake(peer: &mut Peer, key: &Path) -> (Reply, Option<String>) {
    keyed_handshake(peer, key, SuiteId::RsaBlowfish)
}

/// The inner EHLO line the library client sends for `suite`: v2 binds the
/// outer EHLO line into its prologue and the client resends that line byte
/// for byte (PROTOCOL.md 1.3), so it differs only under RSA-BLOWFISH.
fn inner_ehlo_for(suite: SuiteId) -> &'static [u8] {
    match suite {
        SuiteId::Noise => b"EHLO outer.test\r\n",
        _ => b"EHLO inner.test\r\n",
    }
}

/// The same with `suite`: the RSA key for RSA-BLOWFISH, the static key and
/// certificate beside it (made by --generate-key) for v2.
fn keyed_handshake(peer: &mut Peer, key_path: &Path, suite: SuiteId) -> (Reply, Option<String>) {
    let key = load_key(key_path);
    let identity = blackpony::static_key::load(key_path).unwrap();
    assert_eq!(peer.read_reply().unwrap().code, 220);
    peer.send(b"EHLO outer.test\r\n").unwrap();
    let reply = peer.read_reply().unwrap();
    let offered = ehlo::offered_suites(&reply).expect("XBLACKPONY offered");
    let side = blackpony::switch::ClientSide {
        key: Some(&key),
        identity: Some(&identity),
        cached: None,
    };
    let inner = inner_ehlo_for(suite);
    let (reply, on) =
        blackpony::switch::request(peer, &side, suite, &offered, inner, &mut |_, _| Ok(()))
            .unwrap();
    (reply, on.peer_fingerprint)
}

fn peer_cmd(peer: &mut Peer, line: &str) -> Reply {
    peer.send(format!("{line}\r\n").as_bytes()).unwrap();
    peer.read_reply().unwrap()
}

fn load_key(p: &Path) -> HostKey {
    HostKey::load(p).unwrap()
}

// ------------------------------------------------------- 1. plain sessions

const SMTPLIB_CLIENT: &str = r#"
import smtplib, sys
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg = open(path, "rb").read()
s = smtplib.SMTP(host, port, timeout=8)
code, resp = s.ehlo("python.test")
print(code)
print(resp.hex())
refused = s.sendmail("alice@sender.test", ["bob@receiver.test"], msg,
                     mail_options=["BODY=8BITMIME"])
print(len(refused))
print(s.quit()[0])
"#;

#[test]
fn smtplib_message_arrives_byte_for_byte() {
    let dir = scratch("inb-smtplib");
    let sink = Sink::start();
    let (_d, addr) = rsa_inbound(sink.addr, &[], &dir.join("log"));
    let long: String = (0..2000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let msg = format!(
        "From: alice@sender.test\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\n\
         .a line starting with a dot\r\n.\r\n..two dots\r\n\
         8-bit: Grüße, naïve café, 日本語\r\n{long}\r\nlast line\r\n"
    );
    // What smtplib sends: the same bytes, dot-stuffed.
    let stuffed = format!(
        "From: alice@sender.test\r\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\n\
         ..a line starting with a dot\r\n..\r\n...two dots\r\n\
         8-bit: Grüße, naïve café, 日本語\r\n{long}\r\nlast line\r\n"
    );
    let path = dir.join("msg.eml");
    std::fs::write(&path, &msg).unwrap();
    let out = Command::new("python3")
        .args(["-c", SMTPLIB_CLIENT, "127.0.0.1", &addr.port().to_string()])
        .arg(&path)
        .output()
        .expect("python3 (scripts/install-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "250");
    let resp = String::from_utf8(
        (0..lines[1].len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&lines[1][i..i + 2], 16).unwrap())
            .collect(),
    )
    .unwrap();
    assert_eq!(
        resp,
        "sink.test hello\nPIPELINING\n8BITMIME\nSIZE 200000000\nCHUNKING\nXBLACKPONY RSA-BLOWFISH"
    );
    assert_eq!(&lines[2..], ["0", "221"]);
    let m = sink.wait_for(1);
    assert_eq!(m.len(), 1);
    assert_eq!(
        m[0].data,
        stuffed.as_bytes(),
        "message data changed on the way"
    );
    assert!(
        m[0].mail_from.starts_with("<alice@sender.test> ")
            && m[0].mail_from.ends_with(" BODY=8BITMIME"),
        "{}",
        m[0].mail_from
    );
    assert_eq!(m[0].rcpt_to, ["<bob@receiver.test>"]);
    assert_eq!(m[0].helo, "python.test");
}

#[test]
fn ehlo_gets_one_keyword_line_helo_and_errors_none() {
    let (_, kb) = test_keys();
    let dir = scratch("inb-ehlo");
    let sink = Sink::start();
    let (_d, addr) = rsa_inbound(sink.addr, &[], &dir.join("log"));
    let direct = sink_ehlo(sink.addr);

    let mut c = connect(addr);
    assert_eq!(
        c.reply(),
        (220, "220 sink.test ESMTP test sink\r\n".into()),
        "the greeting passes unchanged"
    );
    let (code, text) = c.cmd("EHLO client.test");
    assert_eq!(code, 250);
    assert_eq!(text, with_keyword(&direct, "RSA-BLOWFISH"));
    assert_eq!(text.matches("XBLACKPONY").count(), 1);
    // HELO: the MTA's reply exactly, no keyword.
    assert_eq!(c.cmd("HELO client.test"), (250, "250 sink.test\r\n".into()));
    c.cmd("QUIT");

    // Without --suites: still exactly one keyword line, last, listing handshake
    // v2 only (RSA-BLOWFISH is offered only when --suites names it).
    let (_d3, addr3) = start_inbound(sink.addr, &["--key", key_arg(kb)], &dir.join("log3"));
    let mut c = greeted(addr3, false);
    let (_, text) = c.cmd("EHLO client.test");
    assert_eq!(text.matches("XBLACKPONY").count(), 1, "{text}");
    let last = text.lines().last().unwrap();
    let offer = last.strip_prefix("250 XBLACKPONY ").expect(last);
    assert_eq!(offer, "NOISE-25519-CHACHAPOLY-SHA256", "{offer}");
    assert!(
        offer.split(' ').all(|s| SuiteId::parse(s).is_some()),
        "{offer}"
    );
    let head = &text[..text.len() - last.len() - 2];
    assert_eq!(head, &with_keyword(&direct, "X")[..head.len()]);

    // An EHLO error passes unchanged, without the keyword.
    let old = Sink::with(Script {
        ehlo: None,
        ..Script::default()
    });
    let (_d2, addr2) = rsa_inbound(old.addr, &[], &dir.join("log2"));
    let mut c = connect(addr2);
    c.reply();
    assert_eq!(
        c.cmd("EHLO client.test"),
        (502, "502 5.5.1 EHLO not implemented\r\n".into())
    );
    assert_eq!(c.cmd("HELO client.test"), (250, "250 sink.test\r\n".into()));
    // No negotiation after a failed EHLO, and the session goes on.
    let (code, text) = c.cmd("XBLACKPONY RSA-BLOWFISH AAAA");
    assert_eq!(code, 503, "{text}");
    deliver(&mut c, "afterhelo");
    assert_eq!(old.wait_for(1)[0].data, body_of("afterhelo"));
}

#[test]
fn mta_offered_keyword_never_reaches_the_client() {
    // The MTA itself offers XBLACKPONY (say, another blackpony behind this one).
    let dir = scratch("inb-mtakw");
    let mut lines = vec!["XBLACKPONY ROT7".to_string()];
    lines.extend(EHLO_LINES.iter().map(|s| s.to_string()));
    let sink = Sink::with(Script {
        ehlo: Some(lines),
        ..Script::default()
    });
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &["--allow-rot"]);
    let mut c = connect(addr);
    c.reply();
    let (_, text) = c.cmd("EHLO client.test");
    assert_eq!(text.matches("XBLACKPONY").count(), 1, "{text}");
    assert!(text.ends_with("250 XBLACKPONY ROT13\r\n"), "{text}");
    assert_eq!(c.cmd("XBLACKPONY ROT13").0, 220);
    c.send(&rot13s("EHLO inner.test\r\n"));
    let (code, text) = c.reply();
    assert_eq!(code, 250);
    let text = rot13s(&text);
    assert!(
        !text.contains("XBLACKPONY"),
        "the inner EHLO reply must not carry the keyword: {text:?}"
    );
}

// --------------------------------------------------------------- 2. ROT13

/// A client speaking ROT13 on a raw socket after the switch.
fn rot_cmd(c: &mut Client, line: &str) -> (u16, String, String) {
    c.w.write_all(&rot13(format!("{line}\r\n").as_bytes()))
        .unwrap();
    let (code, raw) = c.reply();
    let plain = rot13s(&raw);
    (code, raw, plain)
}

#[test]
fn rot13_session_on_a_raw_socket() {
    let dir = scratch("inb-rot");
    let sink = Sink::start();
    let log = dir.join("log");
    let (_d, addr) = rsa_inbound(sink.addr, &["--allow-rot"], &log);
    let direct = sink_ehlo(sink.addr);
    let mut c = connect(addr);
    c.reply();
    let (_, text) = c.cmd("EHLO outer.test");
    assert_eq!(text, with_keyword(&direct, "RSA-BLOWFISH ROT13"));
    assert_eq!(
        c.cmd("XBLACKPONY ROT13"),
        (220, "220 2.0.0 Go ahead with ROT13\r\n".into())
    );
    // What actually crosses the wire now.
    assert_eq!(rot13(b"EHLO inner.test\r\n"), b"RUYB vaare.grfg\r\n");
    c.w.write_all(b"RUYB vaare.grfg\r\n").unwrap();
    let (code, raw) = c.reply();
    assert_eq!(code, 250);
    assert!(raw.starts_with("250-fvax.grfg uryyb\r\n"), "{raw:?}");
    assert_eq!(
        rot13s(&raw),
        direct,
        "inner EHLO reply: the MTA's, no keyword"
    );
    let (code, raw, _) = rot_cmd(&mut c, "MAIL FROM:<alice@sender.test>");
    assert_eq!((code, raw.as_str()), (250, "250 2.1.0 bx\r\n"));
    assert_eq!(rot_cmd(&mut c, "RCPT TO:<bob@receiver.test>").0, 250);
    let (code, raw, plain) = rot_cmd(&mut c, "DATA");
    assert_eq!((code, plain.as_str()), (354, "354 go ahead\r\n"));
    assert_eq!(raw, "354 tb nurnq\r\n");
    let body = "Subject: rot\r\n\r\n..stuffed\r\nHello, World 123!\r\n";
    let (code, _, plain) = rot_cmd(&mut c, &format!("{body}."));
    assert_eq!((code, plain.as_str()), (250, "250 2.0.0 accepted\r\n"));
    let (code, raw, _) = rot_cmd(&mut c, "QUIT");
    assert_eq!((code, raw.as_str()), (221, "221 2.0.0 olr\r\n"));
    drop(c); // the end after QUIT is checked in rot13_quit_ends_the_connection
    let m = sink.wait_for(1);
    assert_eq!(m[0].data, body.as_bytes(), "the MTA gets it unrotated");
    assert_eq!(m[0].helo, "inner.test");
    assert_eq!(m[0].mail_from, "<alice@sender.test>");
    assert!(
        sink.commands().iter().all(|l| !l.contains("XBLACKPONY")),
        "XBLACKPONY is never forwarded"
    );
    let lines = session_lines(&log, 1);
    assert!(lines[0].contains(" suite=ROT13 "), "{}", lines[0]);
}

#[test]
fn rot13_quit_ends_the_connection() {
    let dir = scratch("inb-rot-quit");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &["--allow-rot"]);
    let mut c = greeted(addr, true);
    assert_eq!(c.cmd("XBLACKPONY ROT13").0, 220);
    assert_eq!(rot_cmd(&mut c, "EHLO inner.test").0, 250);
    assert_eq!(rot_cmd(&mut c, "QUIT").0, 221);
    // As in plain SMTP (and in the plain phase here): after 221 the server
    // closes its side, and a client waiting for that end gets it.
    assert_closed_soon(&mut c);
}

#[test]
fn rot13_refused_without_allow_rot_and_plain_still_works() {
    let dir = scratch("inb-norot");
    let sink = Sink::start();
    let (_d, addr) = rsa_inbound(sink.addr, &[], &dir.join("log"));
    let mut c = connect(addr);
    c.reply();
    let (_, text) = c.cmd("EHLO outer.test");
    assert!(text.ends_with("250 XBLACKPONY RSA-BLOWFISH\r\n"), "{text}");
    let (code, text) = c.cmd("XBLACKPONY ROT13");
    assert_eq!(code, 504);
    assert!(text.starts_with("504 5.5.4 "), "{text}");
    deliver(&mut c, "plainafterrot");
    assert_eq!(sink.wait_for(1)[0].data, body_of("plainafterrot"));
}

// --------------------------------------------------------- 3. RSA-BLOWFISH

#[test]
fn rsa_blowfish_session_shows_nothing_in_clear() {
    keyed_session_shows_nothing_in_clear(SuiteId::RsaBlowfish, "inb-rsa");
}

#[test]
fn noise_session_shows_nothing_in_clear() {
    keyed_session_shows_nothing_in_clear(SuiteId::Noise, "inb-noise");
}

/// A keyed session from a library client through a capturing relay.
fn keyed_session_shows_nothing_in_clear(suite: SuiteId, name: &str) {
    let (ka, kb) = test_keys();
    let dir = scratch(name);
    let sink = Sink::start();
    let log = dir.join("log");
    let (_d, addr) = start_inbound(
        sink.addr,
        &["--suites", &suite.to_string(), "--key", key_arg(kb)],
        &log,
    );
    let cap = Relay::start(addr);
    let mut peer = library_peer(cap.addr);
    let (inner, server_fp) = keyed_handshake(&mut peer, ka, suite);
    assert_eq!(inner.code, 250);
    assert_eq!(server_fp, Some(load_key(kb).fingerprint()));
    assert_eq!(
        ehlo::offered_suites(&inner),
        None,
        "no keyword inside the channel"
    );
    assert_eq!(inner.summary(), "250-sink.test hello");
    assert_eq!(
        peer_cmd(&mut peer, "MAIL FROM:<alice@secret-sender.test>").code,
        250
    );
    assert_eq!(
        peer_cmd(&mut peer, "RCPT TO:<bob@secret-rcpt.test>").code,
        250
    );
    assert_eq!(peer_cmd(&mut peer, "DATA").code, 354);
    let body = b"Subject: confidential\r\n\r\n..TOP-SECRET-PAYLOAD\r\nraw \xff\x00 bytes\r\n";
    peer.send(body).unwrap();
    assert_eq!(peer_cmd(&mut peer, ".").code, 250);
    assert_eq!(peer_cmd(&mut peer, "QUIT").code, 221);
    peer.close();
    let m = sink.wait_for(1);
    assert_eq!(m[0].data, body, "message arrives byte for byte");
    let helo = String::from_utf8_lossy(inner_ehlo_for(suite));
    assert_eq!(m[0].helo, helo.trim_end().trim_start_matches("EHLO "));
    assert_eq!(m[0].mail_from, "<alice@secret-sender.test>");

    let Capture { up, down } = cap.captures().pop().unwrap();
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    // The capture is real: the plain part is readable.
    assert!(find(&up, b"EHLO outer.test\r\n").is_some());
    let switch =
        find(&up, format!("XBLACKPONY {suite} ").as_bytes()).expect("switch command on the wire");
    let up_after = &up[switch + find(&up[switch..], b"\r\n").unwrap() + 2..];
    let go = format!("220 2.0.0 Go ahead with {suite}\r\n").into_bytes();
    let go = &go[..];
    let down_after = &down[find(&down, go).expect("220 answer on the wire") + go.len()..];
    assert!(
        up_after.len() > body.len(),
        "the encrypted part was captured"
    );
    for secret in [
        &b"inner.test"[..],
        b"secret-sender",
        b"secret-rcpt",
        b"TOP-SECRET-PAYLOAD",
        b"confidential",
        b"MAIL FROM",
        b"RCPT TO",
        b"QUIT",
    ] {
        assert!(
            find(up_after, secret).is_none(),
            "{:?} crossed the wire in clear",
            String::from_utf8_lossy(secret)
        );
    }
    for secret in [
        &b"sink.test"[..],
        b"PIPELINING",
        b"2.1.0 ok",
        b"go ahead",
        b"accepted",
        b"bye",
    ] {
        assert!(
            find(down_after, secret).is_none(),
            "reply text {:?} crossed the wire in clear",
            String::from_utf8_lossy(secret)
        );
    }
    let lines = session_lines(&log, 1);
    assert!(
        lines[0].contains(&format!(" suite={suite} ")),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(&format!(" peer={} ", load_key(ka).fingerprint())),
        "{}",
        lines[0]
    );
}

#[test]
fn large_encrypted_message_crosses_the_rekey_limit_intact() {
    // More than REKEY_BYTES (8 MiB) each way would need a huge reply; one way
    // is enough to make the client rekey and the server follow.
    let (ka, _) = test_keys();
    let dir = scratch("inb-rekey");
    let sink = Sink::start();
    let (_d, addr) = rsa_inbound(sink.addr, &[], &dir.join("log"));
    let mut peer = library_peer(addr);
    rsa_handshake(&mut peer, ka);
    assert_eq!(peer_cmd(&mut peer, "MAIL FROM:<big@sender.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "RCPT TO:<b@receiver.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "DATA").code, 354);
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    let mut x: u32 = 7;
    let mut i = 0u32;
    while body.len() < 9 * 1024 * 1024 + 12345 {
        if i.is_multiple_of(7) {
            body.extend_from_slice(b"..");
        }
        for _ in 0..(200 + i % 1500) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let b = (x >> 16) as u8;
            body.push(if b == b'\r' || b == b'\n' { b'x' } else { b });
        }
        body.extend_from_slice(b"\r\n");
        i += 1;
    }
    peer.send(&body).unwrap();
    let reply = peer_cmd(&mut peer, ".");
    assert_eq!(reply.code, 250, "{}", reply.summary());
    assert_eq!(peer_cmd(&mut peer, "QUIT").code, 221);
    peer.close();
    let m = sink.wait_for(1);
    assert_eq!(m[0].data.len(), body.len());
    assert!(m[0].data == body, "the large message changed on the way");
}

// ------------------------------------------------------ 4. contract errors

/// Start a fresh connection on `addr` and EHLO unless told not to.
fn greeted(addr: SocketAddr, ehlo: bool) -> Client {
    let mut c = connect(addr);
    assert_eq!(c.reply().0, 220);
    if ehlo {
        assert_eq!(c.cmd("EHLO client.test").0, 250);
    }
    c
}

fn assert_refused(reply: (u16, String), code: u16, enhanced: &str) {
    assert_eq!(reply.0, code, "{}", reply.1);
    assert!(
        reply.1.starts_with(&format!("{code} {enhanced} ")),
        "{}",
        reply.1
    );
}

#[test]
fn contract_errors_leave_the_plain_session_usable() {
    let dir = scratch("inb-contract");
    let sink = Sink::start();
    let (_d, addr) = rsa_inbound(sink.addr, &["--allow-rot"], &dir.join("log"));
    let mut delivered = 0;
    let check = |c: &mut Client, tag: &str, delivered: &mut usize| {
        deliver(c, tag);
        *delivered += 1;
        let m = sink.wait_for(*delivered);
        assert_eq!(m[*delivered - 1].data, body_of(tag));
    };

    let mut c = greeted(addr, true);
    assert_refused(c.cmd("XBLACKPONY AES256-GCM"), 504, "5.5.4");
    check(&mut c, "unknownsuite", &mut delivered);

    let mut c = greeted(addr, true);
    assert_refused(c.cmd("XBLACKPONY"), 501, "5.5.4");
    check(&mut c, "noargs", &mut delivered);

    let mut c = greeted(addr, true);
    assert_refused(c.cmd("XBLACKPONY ROT13 extra"), 501, "5.5.4");
    check(&mut c, "rotargs", &mut delivered);

    let mut c = greeted(addr, false);
    assert_refused(c.cmd("XBLACKPONY ROT13"), 503, "5.5.1");
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    check(&mut c, "beforeehlo", &mut delivered);

    let mut c = greeted(addr, true);
    assert_eq!(c.cmd("MAIL FROM:<aftermail@sender.test>").0, 250);
    assert_refused(c.cmd("XBLACKPONY ROT13"), 503, "5.5.1");
    assert_eq!(c.cmd("RCPT TO:<bob@receiver.test>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    assert_eq!(
        c.cmd("Subject: aftermail\r\n\r\nbody of aftermail\r\n.").0,
        250
    );
    assert_eq!(c.cmd("QUIT").0, 221);
    delivered += 1;
    assert_eq!(
        sink.wait_for(delivered)[delivered - 1].data,
        body_of("aftermail")
    );

    let mut c = greeted(addr, true);
    assert_refused(
        c.cmd("XBLACKPONY RSA-BLOWFISH !!not*base64!!"),
        501,
        "5.5.4",
    );
    assert_refused(c.cmd("XBLACKPONY RSA-BLOWFISH"), 501, "5.5.4");
    // Valid base64, but not a ClientHello.
    assert_refused(c.cmd("XBLACKPONY RSA-BLOWFISH AAAAAAAA"), 501, "5.5.4");
    assert_refused(
        c.cmd("XBLACKPONY RSA-BLOWFISH AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAAAA=="),
        501,
        "5.5.4",
    );
    check(&mut c, "badhello", &mut delivered);

    assert!(
        sink.commands().iter().all(|l| !l.contains("XBLACKPONY")),
        "XBLACKPONY is answered by blackpony, never forwarded"
    );
}

#[test]
fn contract_errors_inside_the_channel() {
    let dir = scratch("inb-contract-rot");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &["--allow-rot"]);
    let mut c = greeted(addr, true);
    assert_eq!(c.cmd("XBLACKPONY ROT13").0, 220);
    // Before the inner EHLO: neither MAIL nor another negotiation.
    let (code, raw, plain) = rot_cmd(&mut c, "MAIL FROM:<early@sender.test>");
    assert_eq!(code, 503, "{plain}");
    assert!(plain.starts_with("503 5.5.1 "), "{plain}");
    assert_ne!(raw, plain, "the refusal is sent inside the channel");
    let (code, _, plain) = rot_cmd(&mut c, "XBLACKPONY ROT13");
    assert_eq!(code, 503, "{plain}");
    assert!(plain.starts_with("503 5.5.1 "), "{plain}");
    assert_eq!(rot_cmd(&mut c, "EHLO inner.test").0, 250);
    // After it: still no second negotiation.
    let (code, _, plain) = rot_cmd(&mut c, "XBLACKPONY ROT13");
    assert_eq!(code, 503, "{plain}");
    assert!(plain.starts_with("503 5.5.1 "), "{plain}");
    assert_eq!(rot_cmd(&mut c, "MAIL FROM:<inner@sender.test>").0, 250);
    assert_eq!(rot_cmd(&mut c, "RCPT TO:<bob@receiver.test>").0, 250);
    assert_eq!(rot_cmd(&mut c, "DATA").0, 354);
    assert_eq!(
        rot_cmd(&mut c, "Subject: in\r\n\r\nstill usable\r\n.").0,
        250
    );
    assert_eq!(rot_cmd(&mut c, "QUIT").0, 221);
    let m = sink.wait_for(1);
    assert_eq!(m[0].data, b"Subject: in\r\n\r\nstill usable\r\n");
    let cmds = sink.commands();
    assert!(
        !cmds.iter().any(|l| l.contains("early@")),
        "a refused MAIL is not forwarded: {cmds:?}"
    );
}

// ------------------------------------------------------------- 5. failures

#[test]
fn backend_down_gets_421_and_close() {
    let dir = scratch("inb-down");
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (_d, addr) = keyless_inbound(closed, &dir, &[]);
    let mut c = connect(addr);
    let (code, text) = c.reply();
    assert_eq!(code, 421);
    assert!(text.starts_with("421 4."), "{text}");
    let rest = drain(&mut c);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn backend_dying_mid_session_gets_421_and_close() {
    // An MTA that greets, answers EHLO, then dies at the next command.
    let backend = Smtpd::with(Script {
        die_at_command: Some(2),
        ..Script::default()
    })
    .addr;
    let dir = scratch("inb-dies");
    let (_d, addr) = keyless_inbound(backend, &dir, &[]);
    let mut c = greeted(addr, true);
    let (code, text) = c.cmd("MAIL FROM:<a@b.test>");
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4."), "{text}");
    assert_closed_soon(&mut c);
}

#[test]
fn client_cut_mid_data_delivers_nothing() {
    let dir = scratch("inb-cut");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &[]);
    let mut c = greeted(addr, true);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@receiver.test>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send("Subject: cut\r\n\r\nhalf of a message\r\n.");
    c.w.shutdown(Shutdown::Both).unwrap();
    drop(c);
    wait_until("the sink to see the cut", Duration::from_secs(5), || {
        sink.log.lock().unwrap().partial == 1
    });
    thread::sleep(Duration::from_millis(100));
    let log = sink.log.lock().unwrap();
    assert_eq!(log.partial, 1);
    assert!(log.messages.is_empty());
}

#[test]
fn encrypted_client_cut_mid_data_delivers_nothing() {
    let (ka, _) = test_keys();
    let dir = scratch("inb-cut-enc");
    let sink = Sink::start();
    let (_d, addr) = rsa_inbound(sink.addr, &[], &dir.join("log"));
    let mut peer = library_peer(addr);
    rsa_handshake(&mut peer, ka);
    assert_eq!(peer_cmd(&mut peer, "MAIL FROM:<a@sender.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "RCPT TO:<b@receiver.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "DATA").code, 354);
    peer.send(b"Subject: cut\r\n\r\nhalf\r\n").unwrap();
    drop(peer); // TCP close without the authenticated Close record
    wait_until("the sink to see the cut", Duration::from_secs(5), || {
        sink.log.lock().unwrap().partial == 1
    });
    assert!(sink.messages().is_empty());
}

#[test]
fn forged_record_closes_without_delivery() {
    let (ka, _) = test_keys();
    let dir = scratch("inb-forged");
    let sink = Sink::start();
    let log = dir.join("log");
    let (_d, addr) = rsa_inbound(sink.addr, &[], &log);
    // Client records after the handshake: 0 the inner EHLO, 1 MAIL, 2 RCPT,
    // 3 DATA, 4 the message: that one is altered on the way.
    let relay = Relay::with(addr, Tamper::Record(Attack::FlipBit, 4));
    let mut peer = library_peer(relay.addr);
    rsa_handshake(&mut peer, ka);
    assert_eq!(peer_cmd(&mut peer, "MAIL FROM:<a@sender.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "RCPT TO:<b@receiver.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "DATA").code, 354);
    peer.send(b"Subject: forged\r\n\r\nthis record is altered on the way\r\n.\r\n")
        .unwrap();
    // The record is in flight; the relay flips it before the server reads it.
    let t = Instant::now();
    match peer.read_reply() {
        Ok(r) => panic!("a reply to a forged record: {}", r.summary()),
        Err(e) => assert!(
            t.elapsed() < Duration::from_secs(3) && !e.to_string().contains("timed out"),
            "no reply to a forged record, only the end of the connection: {e} after {:?}",
            t.elapsed()
        ),
    }
    assert!(relay.records().tampered, "no record was tampered with");
    wait_until("the sink to see the cut", Duration::from_secs(5), || {
        sink.log.lock().unwrap().partial == 1
    });
    assert!(sink.messages().is_empty());
    let lines = session_lines(&log, 1);
    assert!(lines[0].contains("end=error"), "{}", lines[0]);
}

/// The injection attempt: a command pipelined behind the switch command.
fn injection_attempt(c: &mut Client, sink: &Sink, switch: &str) {
    c.send(&format!("{switch}\r\nMAIL FROM:<x@y>\r\n"));
    let rest = drain(c);
    assert!(
        rest.is_empty(),
        "no answer at all to an injection attempt, got {:?}",
        String::from_utf8_lossy(&rest)
    );
    thread::sleep(Duration::from_millis(200));
    let cmds = sink.commands();
    assert!(
        !cmds
            .iter()
            .any(|l| l.contains("MAIL") || l.contains("ZNVY")),
        "the injected command reached the MTA: {cmds:?}"
    );
}

#[test]
fn injection_behind_the_switch_command_drops_the_connection() {
    let (ka, _) = test_keys();
    let dir = scratch("inb-inject");
    let sink = Sink::start();
    let log = dir.join("log");
    let (_d, addr) = rsa_inbound(sink.addr, &["--allow-rot"], &log);
    let mut c = greeted(addr, true);
    injection_attempt(&mut c, &sink, "XBLACKPONY ROT13");

    // The same with RSA-BLOWFISH and a valid ClientHello.
    let mut c = connect(addr);
    c.reply();
    let (_, text) = c.cmd("EHLO client.test");
    let offered = text.lines().last().unwrap()["250 XBLACKPONY ".len()..].to_string();
    let key = load_key(ka);
    let start = blackpony::suite::rsa_blowfish::ClientStart::new(&key, &offered);
    injection_attempt(
        &mut c,
        &sink,
        &format!("XBLACKPONY RSA-BLOWFISH {}", start.hello_base64()),
    );
    let lines = session_lines(&log, 2);
    assert!(lines.iter().all(|l| l.contains("end=error")), "{lines:?}");
}

#[test]
fn injection_on_a_socket_from_the_launcher() {
    let dir = scratch("inb-inject-inetd");
    let sink = Sink::start();
    let log = dir.join("log");
    let (mut c, child) = on_socket(
        sink.addr,
        &["--key", &no_key(&dir), "--allow-rot"],
        Some(&log),
    );
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    injection_attempt(&mut c, &sink, "XBLACKPONY ROT13");
    let (_, err) = finish(child);
    assert_eq!(err, "", "nothing on stderr");
}

#[test]
fn overlong_line_gets_500_and_close() {
    let dir = scratch("inb-long");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &[]);
    let mut c = greeted(addr, true);
    c.send(&"A".repeat(5000));
    let (code, text) = c.reply();
    assert_eq!(code, 500);
    assert!(text.starts_with("500 5.5.2 "), "{text}");
    assert_closed_soon(&mut c);
    assert!(
        !sink.commands().iter().any(|l| l.starts_with("AAAA")),
        "the overlong line was forwarded"
    );
}

#[test]
fn silent_client_times_out_with_421() {
    let dir = scratch("inb-silent");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &["--timeout", "2"]);
    let mut c = connect(addr);
    assert_eq!(c.reply().0, 220);
    let t = Instant::now();
    let (code, text) = c.reply();
    let waited = t.elapsed();
    assert_eq!(code, 421);
    assert!(text.starts_with("421 4.4.2 "), "{text}");
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(3500),
        "timed out after {waited:?}"
    );
    assert_closed_soon(&mut c);
}

#[test]
fn silent_backend_gets_421() {
    // An MTA that accepts the connection and never greets.
    let backend = Smtpd::with(Script {
        silent: true,
        ..Script::default()
    })
    .addr;
    let dir = scratch("inb-silent-backend");
    let (_d, addr) = keyless_inbound(backend, &dir, &["--timeout", "2"]);
    let mut c = connect(addr);
    let t = Instant::now();
    let (code, text) = c.reply();
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4."), "{text}");
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t.elapsed()
    );
    assert_closed_soon(&mut c);
}

#[test]
fn client_silent_mid_data_times_out_without_delivery() {
    let dir = scratch("inb-silent-data");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &["--timeout", "2"]);
    let mut c = greeted(addr, true);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@receiver.test>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send("Subject: slow\r\n\r\nand then nothing");
    let (code, text) = c.reply();
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4.4.2 "), "{text}");
    assert_closed_soon(&mut c);
    wait_until("the sink to see the cut", Duration::from_secs(5), || {
        sink.log.lock().unwrap().partial == 1
    });
    assert!(sink.messages().is_empty());
}

#[test]
fn client_cut_mid_bdat_chunk_delivers_nothing() {
    let dir = scratch("inb-cut-bdat");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &[]);
    let mut c = greeted(addr, true);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@receiver.test>").0, 250);
    c.send("BDAT 100 LAST\r\nonly ten b");
    thread::sleep(Duration::from_millis(100));
    drop(c);
    wait_until("the sink to see the BDAT", Duration::from_secs(5), || {
        sink.commands().iter().any(|l| l.starts_with("BDAT"))
    });
    thread::sleep(Duration::from_millis(300));
    assert!(sink.messages().is_empty());
}

/// An MTA that reads a PROXY header if one comes, answers XCLIENT like
/// Postfix, and records what it got.
fn address_backend() -> Smtpd {
    Smtpd::with(Script {
        greeting: "220 addr.test ESMTP".into(),
        ehlo: Some(vec!["XCLIENT ADDR PORT".into()]),
        xclient: Some("220 addr.test ESMTP after XCLIENT".into()),
        proxy_header: true,
        ..Script::default()
    })
}

#[test]
fn client_address_reaches_the_backend() {
    let dir = scratch("inb-addr");
    let nokey = no_key(&dir);
    let session = |extra: &[&str], name: &str| {
        let backend = address_backend();
        let mut args = vec!["--key", nokey.as_str()];
        args.extend_from_slice(extra);
        let (d, addr) = start_inbound(backend.addr, &args, &dir.join(name));
        let mut c = connect(addr);
        let client = c.w.local_addr().unwrap();
        let greeting = c.reply().1;
        assert_eq!(c.cmd("NOOP").0, 250);
        assert_eq!(c.cmd("QUIT").0, 221);
        drop(c);
        // Our connection is the one that said NOOP (start_inbound's readiness
        // probe made one too), once it has ended.
        let mut ours = None;
        wait_until("the backend's record", Duration::from_secs(5), || {
            ours = backend
                .conns()
                .into_iter()
                // Complete: the conversation ended with QUIT.
                .find(|l| {
                    l.commands.iter().any(|c| c == "NOOP")
                        && l.commands.last().is_some_and(|c| c == "QUIT")
                });
            ours.is_some()
        });
        drop(d);
        (client, addr, greeting, ours.unwrap())
    };

    // --source: the MTA sees the connection come from 127.0.0.2.
    let (_, _, _, log) = session(&["--source", "127.0.0.2"], "source.log");
    assert_eq!(log.peer.unwrap().ip().to_string(), "127.0.0.2");

    // PROXY v1: the text header with the client's address and port.
    let (client, addr, greeting, log) = session(&["--proxy-protocol", "v1"], "v1.log");
    assert_eq!(greeting, "220 addr.test ESMTP\r\n");
    assert_eq!(
        String::from_utf8_lossy(&log.header),
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            client.port(),
            addr.port()
        )
    );
    assert_eq!(log.commands, ["NOOP", "QUIT"]);

    // PROXY v2: the binary header, PROXY command, TCP over IPv4.
    let (client, addr, _, log) = session(&["--proxy-protocol", "v2"], "v2.log");
    let mut want = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\x7f\0\0\x01\x7f\0\0\x01".to_vec();
    want.extend_from_slice(&client.port().to_be_bytes());
    want.extend_from_slice(&addr.port().to_be_bytes());
    assert_eq!(log.header, want);
    assert_eq!(log.commands, ["NOOP", "QUIT"]);

    // XCLIENT: told before the client's first command; the client sees the new greeting.
    let (client, _, greeting, log) = session(&["--xclient"], "xclient.log");
    assert_eq!(greeting, "220 addr.test ESMTP after XCLIENT\r\n");
    assert!(log.header.is_empty());
    assert_eq!(
        log.commands,
        [
            "EHLO blackpony.invalid".to_string(),
            format!(
                "XCLIENT ADDR=127.0.0.1 PORT={} NAME=[UNAVAILABLE]",
                client.port()
            ),
            "NOOP".into(),
            "QUIT".into()
        ]
    );

    // Under inetd (the socket on stdin): the address comes from that socket.
    let backend = address_backend();
    let (mut c, child) = on_socket(
        backend.addr,
        &["--key", &nokey, "--proxy-protocol", "v1"],
        Some(&dir.join("inetd.log")),
    );
    let client = c.w.local_addr().unwrap();
    let server = c.w.peer_addr().unwrap();
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("QUIT").0, 221);
    drop(c);
    assert_eq!(finish(child).1, "");
    wait_until("the backend's record", Duration::from_secs(5), || {
        backend.connections() > 0
    });
    assert_eq!(
        String::from_utf8_lossy(&backend.conns()[0].header),
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            client.port(),
            server.port()
        )
    );
}

#[test]
fn backend_overlong_reply_line_gets_421() {
    // A broken MTA: one EHLO capability line of 5000 bytes.
    let backend = Smtpd::with(Script {
        ehlo: Some(vec![format!("X{}", "Y".repeat(5000)), "OK".into()]),
        ..Script::default()
    })
    .addr;
    let dir = scratch("inb-backend-long");
    let (_d, addr) = keyless_inbound(backend, &dir, &[]);
    let mut c = greeted(addr, false);
    let (code, text) = c.cmd("EHLO client.test");
    // The MTA is at fault: the sender must retry later, not bounce the mail.
    assert_eq!(code, 421, "{text}");
    assert!(text.starts_with("421 4."), "{text}");
    assert_closed_soon(&mut c);
}

/// One message with `body` through blackpony started with `opts`: the
/// client and the sink that stands for the MTA.
fn data_session(dir: &Path, log: &str, opts: &[&str]) -> (Sink, Daemon, Client) {
    let sink = Sink::start();
    let key = no_key(dir);
    let mut args = vec!["--key", key.as_str()];
    args.extend_from_slice(opts);
    let (d, addr) = start_inbound(sink.addr, &args, &dir.join(log));
    let mut c = greeted(addr, true);
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@receiver.test>").0, 250);
    assert_eq!(c.cmd("DATA").0, 354);
    (sink, d, c)
}

#[test]
fn bare_lf_smuggling_in_data() {
    let dir = scratch("inb-smuggle");
    let smuggle =
        "Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<v@receiver.test>\r\n";
    // The default, and its explicit form: refused with sendmail's 421 4.5.0,
    // no 250, the MTA's DATA cut before any dot (it discards the partial
    // message), nothing delivered and no command split off.
    for (i, opts) in [&[][..], &["--forbid-bare-newline"][..]].iter().enumerate() {
        let (sink, _d, mut c) = data_session(&dir, &format!("log{i}"), opts);
        c.send(&format!("{smuggle}.\r\n"));
        let (code, text) = c.reply();
        assert_eq!(code, 421, "{opts:?}: {text}");
        assert!(
            text.starts_with("421 4.5.0 Bare linefeed (LF)"),
            "{opts:?}: {text}"
        );
        assert_closed_soon(&mut c);
        wait_until("the sink to see the cut", Duration::from_secs(5), || {
            sink.log.lock().unwrap().partial == 1
        });
        assert!(sink.messages().is_empty(), "{opts:?}");
        assert!(
            !sink.commands().iter().any(|l| l.contains("evil")),
            "{opts:?}"
        );
    }

    // --allow-bare-newline: the bytes are message data, passed unchanged; no
    // command is split off.
    let (sink, _d, mut c) = data_session(&dir, "log-allow", &["--allow-bare-newline"]);
    assert_eq!(c.cmd(&format!("{smuggle}.")).0, 250);
    assert_eq!(c.cmd("QUIT").0, 221);
    assert_eq!(sink.wait_for(1)[0].data, smuggle.as_bytes());
    assert!(!sink.commands().iter().any(|l| l.contains("evil")));
}

/// The default refuses only bare CR and LF: mail that keeps to CRLF passes
/// byte for byte, whatever else it holds: every 8-bit and control byte, a
/// line of 998 octets (RFC 5321 4.5.3.1.6), dot-stuffed lines, 3 MB.
#[test]
fn crlf_clean_mail_passes_byte_for_byte_at_the_default() {
    let dir = scratch("inb-clean");
    let mut body: Vec<u8> = b"Subject: clean \xc3\xa9t\xc3\xa9\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\r\n"
        .to_vec();
    body.extend((0u8..=255).filter(|&b| b != b'\r' && b != b'\n'));
    body.extend_from_slice(b"\r\n");
    body.extend(std::iter::repeat_n(b'x', 998));
    body.extend_from_slice(b"\r\n");
    // The lines ".", "..", ".stuffed" and ". " as a client dot-stuffs them.
    body.extend_from_slice(b"..\r\n...\r\n..stuffed\r\n.. \r\n");
    let mut i = 0usize;
    while body.len() < 3 << 20 {
        let text = format!(
            "line {i} \u{e9}\u{20ac} {}\r\n",
            "0123456789".repeat(i % 99)
        );
        body.extend_from_slice(text.as_bytes());
        if i.is_multiple_of(1000) {
            body.extend_from_slice(b"..dot-stuffed\r\n\r\n");
        }
        i += 1;
    }
    let (sink, _d, mut c) = data_session(&dir, "log", &[]);
    c.w.write_all(&body).unwrap();
    let (code, text) = c.cmd(".");
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("QUIT").0, 221);
    let got = sink.wait_for(1);
    assert_eq!(got[0].data.len(), body.len());
    assert!(got[0].data == body, "the message changed on its way");
    assert_eq!(sink.log.lock().unwrap().partial, 0);
}

#[test]
fn no_keyword_without_a_suite_and_no_log_output_on_the_socket() {
    // No key and no --allow-rot: nothing to offer, the EHLO reply is the MTA's.
    // No --log either: logs go to syslog or nowhere, never to the socket.
    let dir = scratch("inb-nooffer");
    let sink = Sink::start();
    let direct = sink_ehlo(sink.addr);
    let (mut c, child) = on_socket(sink.addr, &["--key", &no_key(&dir)], None);
    let mut seen = c.reply().1;
    let (code, text) = c.cmd("EHLO client.test");
    assert_eq!((code, text.as_str()), (250, direct.as_str()));
    seen.push_str(&text);
    let (code, text) = c.cmd("XBLACKPONY RSA-BLOWFISH AAAA");
    assert_eq!(code, 504, "{text}");
    seen.push_str(&text);
    seen.push_str(&c.cmd("QUIT").1);
    let rest = drain(&mut c);
    drop(c);
    seen.push_str(&String::from_utf8_lossy(&rest));
    assert_only_smtp_replies(seen.as_bytes());
    let (code, err) = finish(child);
    assert_eq!(err, "");
    assert_eq!(code, Some(0));
}

// ------------------------------------------ 6. pass-through: STARTTLS, BDAT

/// An MTA that offers STARTTLS, answers it with 220 and then echoes bytes.
fn starttls_echo_server() -> SocketAddr {
    Smtpd::with(Script {
        ehlo: Some(vec!["STARTTLS".into()]),
        starttls: Starttls::Echo,
        ..Script::default()
    })
    .addr
}

#[test]
fn starttls_turns_the_proxy_into_a_byte_pipe() {
    let dir = scratch("inb-starttls");
    let backend = starttls_echo_server();
    let (_d, addr) = rsa_inbound(backend, &[], &dir.join("log"));
    let mut c = connect(addr);
    c.reply();
    let (_, text) = c.cmd("EHLO client.test");
    assert_eq!(
        text,
        "250-sink.test hello\r\n250-STARTTLS\r\n250 XBLACKPONY RSA-BLOWFISH\r\n"
    );
    assert_eq!(
        c.cmd("STARTTLS"),
        (220, "220 2.0.0 Ready to start TLS\r\n".into())
    );
    // Binary garbage, SMTP look-alikes and a large block, both ways unchanged.
    let mut garbage: Vec<u8> = (0..=255u8).collect();
    garbage.extend_from_slice(b"\r\n.\r\nXBLACKPONY ROT13\r\nQUIT\r\n\x16\x03\x01\x02\x00");
    let mut x: u32 = 12345;
    garbage.extend((0..200_000).map(|_| {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (x >> 16) as u8
    }));
    let mut w = c.w.try_clone().unwrap();
    let sent = garbage.clone();
    let writer = thread::spawn(move || {
        w.write_all(&sent).unwrap();
        // Half-close: the echo server sees the end, ends its side, the proxy follows.
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    c.r.read_to_end(&mut echoed).unwrap();
    writer.join().unwrap();
    assert_eq!(echoed.len(), garbage.len());
    assert!(echoed == garbage, "bytes changed in the pipe");
}

#[test]
fn pipelining_and_bdat_pass_through() {
    let dir = scratch("inb-bdat");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &[]);
    let mut c = greeted(addr, true);
    // PIPELINING: three commands in one write, three replies in order.
    c.send(
        "MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@receiver.test>\r\nRCPT TO:<c@receiver.test>\r\n",
    );
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 250);
    c.send("BDAT 5\r\nhello");
    assert_eq!(c.reply(), (250, "250 2.0.0 5 octets\r\n".into()));
    c.send("BDAT 6 LAST\r\n world");
    assert_eq!(c.reply(), (250, "250 2.0.0 6 octets\r\n".into()));
    let m = sink.wait_for(1);
    assert_eq!(m[0].data, b"hello world");
    assert_eq!(m[0].rcpt_to.len(), 2);
    // A chunk that looks like the end of DATA and a command: it is data.
    assert_eq!(c.cmd("MAIL FROM:<a@sender.test>").0, 250);
    assert_eq!(c.cmd("RCPT TO:<b@receiver.test>").0, 250);
    c.send("BDAT 13 LAST\r\na\r\n.\r\nRSET\r\nb");
    assert_eq!(c.reply().0, 250);
    assert_eq!(sink.wait_for(2)[1].data, b"a\r\n.\r\nRSET\r\nb");
    assert!(!sink.commands().contains(&"RSET".to_string()));
    assert_eq!(c.cmd("QUIT").0, 221);
}

#[test]
fn half_close_after_pipelined_quit_loses_nothing() {
    let dir = scratch("inb-halfclose");
    let sink = Sink::start();
    let (_d, addr) = keyless_inbound(sink.addr, &dir, &[]);
    let mut c = greeted(addr, true);
    c.send("MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@receiver.test>\r\nDATA\r\n");
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 354);
    c.send("Subject: hc\r\n\r\nbye now\r\n.\r\nQUIT\r\n");
    c.w.shutdown(Shutdown::Write).unwrap();
    assert_eq!(c.reply(), (250, "250 2.0.0 accepted\r\n".into()));
    assert_eq!(c.reply(), (221, "221 2.0.0 bye\r\n".into()));
    assert_closed_soon(&mut c);
    assert_eq!(sink.wait_for(1)[0].data, b"Subject: hc\r\n\r\nbye now\r\n");
}

// ---------------------------------------------- 7. replay from a recording

#[test]
fn replay_of_a_recorded_rot13_session_from_stdin() {
    let dir = scratch("inb-replay");
    let sink = Sink::start();
    let direct = sink_ehlo(sink.addr);
    let inner = "EHLO replay.test\r\nMAIL FROM:<alice@sender.test>\r\nRCPT TO:<bob@receiver.test>\r\n\
                 DATA\r\nSubject: replay\r\n\r\n..dotted\r\nHello from a recording.\r\n.\r\nQUIT\r\n";
    let mut recording = b"EHLO a\r\nXBLACKPONY ROT13\r\n".to_vec();
    recording.extend(rot13(inner.as_bytes()));
    assert!(recording.windows(4).any(|w| w == b"RUYB"));
    let file = dir.join("session.txt");
    std::fs::write(&file, &recording).unwrap();
    let log = dir.join("log");
    let out = Command::new(bin("blackpony"))
        .args(["--backend", &sink.addr.to_string(), "--allow-rot"])
        .args(["--key", &no_key(&dir), "--log"])
        .arg(&log)
        .env("RUST_LOG", "debug")
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "stderr is empty");
    assert!(out.status.success());
    let mut expected = format!(
        "220 sink.test ESMTP test sink\r\n{}220 2.0.0 Go ahead with ROT13\r\n",
        with_keyword(&direct, "ROT13")
    )
    .into_bytes();
    expected.extend(rot13(
        format!(
            "{direct}250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n250 2.0.0 accepted\r\n221 2.0.0 bye\r\n"
        )
        .as_bytes(),
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&expected)
    );
    let m = sink.wait_for(1);
    assert_eq!(
        m[0].data,
        b"Subject: replay\r\n\r\n..dotted\r\nHello from a recording.\r\n"
    );
    assert_eq!(m[0].helo, "replay.test");
    let lines = session_lines(&log, 1);
    assert!(lines[0].contains("client=local "), "{}", lines[0]);
    assert!(lines[0].contains(" suite=ROT13 "), "{}", lines[0]);
}

// ------------------------------------------------------- 8. inetd modes

#[test]
fn socket_on_stdin_like_inetd() {
    let (_, kb) = test_keys();
    let dir = scratch("inb-stdin-sock");
    let sink = Sink::start();
    let log = dir.join("log");
    let (mut c, child) = on_socket(
        sink.addr,
        &["--suites", "RSA-BLOWFISH", "--key", key_arg(kb)],
        Some(&log),
    );
    let client_port = c.w.local_addr().unwrap().port();
    let mut seen = c.reply().1.into_bytes();
    let mut step = |c: &mut Client, cmd: &str| {
        let r = c.cmd(cmd);
        seen.extend_from_slice(r.1.as_bytes());
        r
    };
    let (_, text) = step(&mut c, "EHLO client.test");
    assert!(text.ends_with("250 XBLACKPONY RSA-BLOWFISH\r\n"), "{text}");
    assert_eq!(step(&mut c, "MAIL FROM:<a@sender.test>").0, 250);
    assert_eq!(step(&mut c, "RCPT TO:<b@receiver.test>").0, 250);
    assert_eq!(step(&mut c, "DATA").0, 354);
    assert_eq!(step(&mut c, "Subject: inetd\r\n\r\nvia stdin\r\n.").0, 250);
    assert_eq!(step(&mut c, "QUIT").0, 221);
    let rest = drain(&mut c); // blackpony closes its side after QUIT
    drop(c);
    seen.extend_from_slice(&rest);
    assert_only_smtp_replies(&seen);
    let (code, err) = finish(child);
    assert_eq!(err, "", "nothing on stderr");
    assert_eq!(code, Some(0));
    assert_eq!(
        sink.wait_for(1)[0].data,
        b"Subject: inetd\r\n\r\nvia stdin\r\n"
    );
    let lines = session_lines(&log, 1);
    assert!(
        lines[0].contains(&format!("client=127.0.0.1:{client_port} ")),
        "the client address comes from the socket on stdin: {}",
        lines[0]
    );
}

fn tcp_listening(port: u16) -> bool {
    let want = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && format!("{} ", f[1]).ends_with(&want) && f[3] == "0A"
        })
}

/// openbsd-inetd started by the test; the Daemon guard kills it when dropped.
fn start_inetd(conf: &Path, ports: &[u16]) -> Daemon {
    let inetd = PathBuf::from("/usr/sbin/inetd");
    assert!(
        inetd.exists(),
        "openbsd-inetd is not installed: run scripts/install-test-deps.sh"
    );
    let child = Command::new(&inetd)
        .args(["-E", "-i", "-R", "100000"])
        .arg(conf)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = Daemon(child);
    wait_until("inetd to listen", Duration::from_secs(5), || {
        ports.iter().all(|&p| tcp_listening(p))
    });
    d
}

#[test]
fn under_openbsd_inetd_at_trace_level_only_smtp_reaches_the_client() {
    let (ka, kb) = test_keys();
    let dir = scratch("inb-inetd");
    let sink = Sink::start();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    // A key others can read: blackpony must refuse it, and say so only in SMTP.
    let bad_key = dir.join("readable.key");
    std::fs::copy(kb, &bad_key).unwrap();
    std::fs::set_permissions(
        &bad_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let closed = free_port();
    let (p_ok, p_down, p_badkey) = (free_port(), free_port(), free_port());
    let exe = bin("blackpony");
    let line = |port: u16, backend: u16, key: &Path, log: &str| {
        format!(
            "127.0.0.1:{port} stream tcp4 nowait {user} {} blackpony --backend 127.0.0.1:{backend} --suites NOISE-25519-CHACHAPOLY-SHA256,RSA-BLOWFISH --key {} --log {}\n",
            exe.display(),
            key.display(),
            dir.join(log).display()
        )
    };
    let conf = dir.join("inetd.conf");
    std::fs::write(
        &conf,
        [
            line(p_ok, sink.addr.port(), kb, "ok.log"),
            line(p_down, closed, kb, "down.log"),
            line(p_badkey, sink.addr.port(), &bad_key, "badkey.log"),
        ]
        .concat(),
    )
    .unwrap();
    let _inetd = start_inetd(&conf, &[p_ok, p_down, p_badkey]);
    let at = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };

    // A full plain session with a few errors along the way.
    let mut c = connect(at(p_ok));
    let client_port = c.w.local_addr().unwrap().port();
    let mut seen = Vec::new();
    let (code, g) = c.reply();
    seen.extend_from_slice(g.as_bytes());
    assert_eq!(code, 220, "{g}");
    for (cmd, want) in [
        ("EHLO client.test", 250),
        ("XBLACKPONY NOSUCH", 504),
        ("XBLACKPONY RSA-BLOWFISH ====", 501),
        ("VRFY root", 500),
        ("MAIL FROM:<a@sender.test>", 250),
        ("RCPT TO:<b@receiver.test>", 250),
        ("DATA", 354),
        ("Subject: inetd\r\n\r\n..trace\r\n.", 250),
        ("QUIT", 221),
    ] {
        let (code, text) = c.cmd(cmd);
        seen.extend_from_slice(text.as_bytes());
        assert_eq!(code, want, "{cmd}: {text}");
    }
    let rest = drain(&mut c); // blackpony closes its side after QUIT
    drop(c); // a real client closes after 221; blackpony reads to that end
    seen.extend_from_slice(&rest);
    assert_only_smtp_replies(&seen);
    assert_eq!(
        sink.wait_for(1)[0].data,
        b"Subject: inetd\r\n\r\n..trace\r\n"
    );

    // An RSA-BLOWFISH session: a stray byte on the socket would break a record.
    let mut peer = library_peer(at(p_ok));
    let (inner, _) = rsa_handshake(&mut peer, ka);
    assert_eq!(inner.code, 250);
    assert_eq!(peer_cmd(&mut peer, "MAIL FROM:<enc@sender.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "RCPT TO:<b@receiver.test>").code, 250);
    assert_eq!(peer_cmd(&mut peer, "DATA").code, 354);
    assert_eq!(peer_cmd(&mut peer, "encrypted\r\n.").code, 250);
    assert_eq!(peer_cmd(&mut peer, "QUIT").code, 221);
    peer.close();
    assert_eq!(sink.wait_for(2)[1].data, b"encrypted\r\n");

    // Backend down and a refused key: a 421 and nothing else.
    for p in [p_down, p_badkey] {
        let mut c = connect(at(p));
        let everything = drain(&mut c);
        assert_only_smtp_replies(&everything);
        let text = String::from_utf8_lossy(&everything);
        assert!(text.starts_with("421 4."), "port {p}: {text:?}");
        assert_eq!(text.lines().count(), 1, "port {p}: {text:?}");
    }

    let lines = session_lines(&dir.join("ok.log"), 2);
    assert!(
        lines[0].contains(&format!("client=127.0.0.1:{client_port} ")),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains(" suite=RSA-BLOWFISH "), "{}", lines[1]);
}
