//! Adversarial tests of the real binaries over real sockets (issue 6):
//! injection across the switch, bytes split at every offset, resource
//! limits (4 GiB length prefix, endless line, slowloris, 200 connections),
//! record-layer attacks on a live session through a tampering relay, SMTP
//! smuggling through the proxy, and key safety.
//!
//! Measured numbers (peak RSS, memory per connection, timings) are printed
//! with `eprintln!`: run with `--nocapture` to see them.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use blackpony::keys::HostKey;
use blackpony::suite::noise_suite::{self, ClientXx};
use blackpony::suite::rsa_blowfish::ClientStart;
use blackpony::suite::SuiteId;

use support::*;

/// Peak RSS allowed for one blackpony process under attack.
const MAX_RSS_KB: u64 = 16 * 1024;

/// Both keyed suites, by wire name; each attack runs against each.
const KEYED: [(&str, SuiteId); 2] = [
    ("RSA-BLOWFISH", SuiteId::RsaBlowfish),
    ("NOISE-25519-CHACHAPOLY-SHA256", SuiteId::Noise),
];

/// What the servers of the keyed-suite tests offer: v2 (the default) and
/// RSA-BLOWFISH (offered only when told).
const BOTH: &str = "NOISE-25519-CHACHAPOLY-SHA256,RSA-BLOWFISH";

/// blackpony's options for both keyed suites with key B, then `extra`.
fn both_suites(extra: &[&'static str]) -> Vec<&'static str> {
    [
        &["--key", test_keys().1.to_str().unwrap(), "--suites", BOTH][..],
        extra,
    ]
    .concat()
}

/// The switch command a client of `key` (its static key beside it) sends
/// for `suite` to a server that offered `offered` after `EHLO <ehlo>`.
fn switch_command(suite: SuiteId, key: &Path, offered: &str, ehlo: &str) -> String {
    match suite {
        SuiteId::Noise => {
            let id = blackpony::static_key::load(key).unwrap();
            let prologue = noise_suite::prologue(
                offered,
                &suite.to_string(),
                format!("{ehlo}\r\n").as_bytes(),
            );
            let (_, msg1) = ClientXx::start(&id, &prologue).unwrap();
            format!("XBLACKPONY {suite} XX {}", Base64::encode_string(&msg1))
        }
        _ => {
            let hello = ClientStart::new(&host_key(key), offered).hello_base64();
            format!("XBLACKPONY {suite} {hello}")
        }
    }
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    cond()
}

fn host_key(path: &Path) -> HostKey {
    HostKey::load(path).unwrap()
}

/// A field of /proc/<pid>/status in kB (VmRSS, VmHWM).
fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `blackpony` as inetd runs it, under GNU time: the test's end of the
/// connection, the child, and the file its peak RSS will be written to.
fn inetd(backend: SocketAddr, extra: &[&str], dir: &Path) -> (TcpStream, Daemon, PathBuf) {
    let rss = dir.join("inbound.maxrss");
    let (c, child) = launch_on_socket(backend, extra, Some(&dir.join("inbound.log")), Some(&rss));
    c.set_nodelay(true).unwrap();
    (c, Daemon(child), rss)
}

/// The peak RSS in kB of a process started by [`inetd`], once it exits
/// (at most 20 s); a missing measurement fails the test.
fn peak_rss_kb(child: &mut Child, rss: &Path) -> u64 {
    assert!(
        wait_until(Duration::from_secs(20), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "blackpony did not exit"
    );
    let text = std::fs::read_to_string(rss).unwrap();
    text.lines().last().unwrap().trim().parse().unwrap()
}

/// Deliver `body` with blackpony-mailer at `level`; the mailer's files are
/// `dir/m.*`.
fn mail(port: u16, dir: &Path, extra: &[&str], body: &[u8], level: &str) -> Run {
    let (ka, _) = test_keys();
    let drive = Drive {
        rust_log: Some(level.into()),
        ..Drive::default()
    };
    run_mailer(
        &mailer_args(port, ka, dir, "m", extra),
        "[127.0.0.1]",
        body,
        &drive,
    )
}

/// Read until EOF or error (or `limit`); returns what arrived.
fn read_to_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

// ======================================================= injection

/// Commands pipelined behind `XBLACKPONY ROT13` in the same segment were
/// sent before the client could know the answer (CVE-2011-0411 class): the
/// connection is dropped without a 220 and the MTA never sees them.
#[test]
fn commands_pipelined_behind_xblackpony_rot13_are_dropped() {
    let dir = scratch("hard-inj-rot");
    let sink = Sink::start();
    let (_d, addr) = start_inbound(sink.addr, &["--allow-rot"], &dir.join("inbound.log"));
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    let (code, ehlo) = c.cmd("EHLO attacker.test");
    assert_eq!(code, 250);
    assert!(ehlo.contains("XBLACKPONY"), "{ehlo}");
    c.send("XBLACKPONY ROT13\r\nMAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@sink.test>\r\n");
    let (got, closed) = read_to_close(&mut c.w, Duration::from_secs(10));
    assert!(closed, "the connection stays open after an injection");
    assert!(
        got.is_empty(),
        "replied to an injection: {:?}",
        String::from_utf8_lossy(&got)
    );
    thread::sleep(Duration::from_millis(200));
    let cmds = sink.commands();
    assert!(
        !cmds
            .iter()
            .any(|c| c.contains("evil") || c.contains("victim") || c.contains("ZNVY")),
        "{cmds:?}"
    );
    assert!(sink.messages().is_empty());
}

/// The same behind `XBLACKPONY <suite> <hello>`, for each keyed suite.
#[test]
fn commands_pipelined_behind_xblackpony_keyed_suites_are_dropped() {
    let (ka, _) = test_keys();
    for (name, suite) in KEYED {
        let dir = scratch(&format!("hard-inj-{name}"));
        let sink = Sink::start();
        let (_d, addr) = start_inbound(sink.addr, &both_suites(&[]), &dir.join("inbound.log"));
        let mut c = Client::connect(addr);
        assert_eq!(c.reply().0, 220);
        let (code, ehlo) = c.cmd("EHLO attacker.test");
        assert_eq!(code, 250);
        assert!(ehlo.contains("XBLACKPONY") && ehlo.contains(name), "{ehlo}");
        let offered = ehlo
            .lines()
            .find_map(|l| l.get(4..)?.strip_prefix("XBLACKPONY "))
            .unwrap()
            .trim_end();
        let command = switch_command(suite, ka, offered, "EHLO attacker.test");
        c.send(&format!("{command}\r\nMAIL FROM:<evil@attacker.test>\r\n"));
        let (got, closed) = read_to_close(&mut c.w, Duration::from_secs(20));
        assert!(
            closed,
            "{name}: the connection stays open after an injection"
        );
        assert!(
            got.is_empty(),
            "{name}: replied to an injection: {:?}",
            String::from_utf8_lossy(&got)
        );
        thread::sleep(Duration::from_millis(200));
        let cmds = sink.commands();
        assert!(!cmds.iter().any(|c| c.contains("evil")), "{name}: {cmds:?}");
    }
}

/// A server that queues a reply behind its `220` to XBLACKPONY (sent before
/// the switch, so not protected): the mailer gives sendmail a 4xx, never
/// continues, and the server sees no MAIL, plain or rotated.
#[test]
fn replies_pipelined_behind_the_go_ahead_are_refused_by_the_mailer() {
    for (suite, offer) in [
        ("ROT13", "ROT13"),
        ("RSA-BLOWFISH", "RSA-BLOWFISH"),
        ("NOISE", "NOISE-25519-CHACHAPOLY-SHA256"),
    ] {
        let dir = scratch(&format!("hard-inj-reply-{suite}"));
        let server = Smtpd::with(Script {
            ehlo: Some(vec![format!("XBLACKPONY {offer}")]),
            xblackpony: Some(b"220 go\r\n250 fake\r\n".to_vec()),
            ..Script::default()
        });
        let run = mail(
            server.addr.port(),
            &dir,
            &["--allow-rot"],
            b"Subject: x\r\n\r\nhello\r\n",
            "debug",
        );
        assert!(run.greeting.starts_with("220"), "{run:#?}");
        assert!(
            run.replies.len() == 2 && run.replies[0].1.starts_with('4'),
            "{suite}: sendmail must get a 4xx for EHLO (then QUIT): {run:#?}"
        );
        thread::sleep(Duration::from_millis(200));
        // The server saw the switch command and nothing after it.
        let cmds = server.commands();
        assert!(cmds.last().unwrap().starts_with("XBLACKPONY"), "{cmds:?}");
        let seen = server.log.lock().unwrap().after_switch.clone();
        let plain = String::from_utf8_lossy(&seen).to_string();
        let rotated = String::from_utf8_lossy(&rot13(&seen)).to_string();
        assert!(
            !plain.contains("MAIL") && !rotated.contains("MAIL"),
            "{suite}: the server got a MAIL: {plain:?}"
        );
    }
}

/// A whole encrypted delivery, mailer → relay → blackpony → sink, where the
/// relay forwards every byte in its own TCP segment in both directions, so
/// each program's reads see the stream split at every offset. Each suite.
#[test]
fn encrypted_session_with_every_byte_in_its_own_segment() {
    for (name, _) in KEYED {
        let dir = scratch(&format!("hard-trickle-{name}"));
        let sink = Sink::start();
        let (_d, inbound) = start_inbound(sink.addr, &both_suites(&[]), &dir.join("inbound.log"));
        let relay = Relay::with(inbound, Tamper::Trickle(Duration::from_micros(500)));
        let body = b"Subject: trickle\r\n\r\n..dot\r\nline two\r\n";
        let run = mail(relay.addr.port(), &dir, &["--suites", name], body, "debug");
        assert!(run.delivered(), "{name}: {run:#?}");
        assert!(run.status.success(), "{name}: {run:#?}");
        let msgs = sink.wait_for(1);
        assert_eq!(msgs[0].data, body);
        let log = std::fs::read_to_string(dir.join("m.mailer.log")).unwrap();
        assert!(log.contains(&format!("suite={name}")), "{log}");
        let cap = relay.captures().pop().unwrap();
        eprintln!(
            "trickle {name}: {} bytes, one per segment",
            cap.up.len() + cap.down.len()
        );
    }
}

// ======================================================= resource limits

/// After the handshake, a record header announcing 4 GiB: the connection is
/// closed at once (the length is checked before any allocation) and the
/// process's peak RSS stays small.
#[test]
fn four_gib_length_prefix_closes_at_once_in_small_memory() {
    let (ka, _) = test_keys();
    let key = host_key(ka);
    let identity = blackpony::static_key::load(ka).unwrap();
    for (name, suite) in KEYED {
        let dir = scratch(&format!("hard-4gib-{name}"));
        let sink = Sink::start();
        let (client, mut child, rss) = inetd(sink.addr, &both_suites(&["--timeout", "20"]), &dir);
        // Drive the inetd socket with the library client.
        let s = client.try_clone().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (peer, mut raw) = {
            let r: blackpony::channel::BoxRead = Box::new(s.try_clone().unwrap());
            let w: blackpony::channel::BoxSink = Box::new(s.try_clone().unwrap());
            let mut peer = blackpony::peer::Peer::new(r, w, "server");
            assert_eq!(peer.read_reply().unwrap().code, 220);
            peer.send(b"EHLO client.test\r\n").unwrap();
            let rep = peer.read_reply().unwrap();
            let offered = blackpony::smtp::ehlo::offered_suites(&rep).unwrap();
            let side = blackpony::switch::ClientSide {
                key: Some(&key),
                identity: Some(&identity),
                cached: None,
            };
            let (inner, _) = blackpony::switch::request(
                &mut peer,
                &side,
                suite,
                &offered,
                b"EHLO client.test\r\n",
                &mut |_, _| Ok(()),
            )
            .unwrap();
            assert_eq!(inner.code, 250);
            (peer, s)
        };
        let t = Instant::now();
        let mut attack = vec![0xff, 0xff, 0xff, 0xff];
        attack.extend_from_slice(&[0x41; 1000]);
        raw.write_all(&attack).unwrap();
        let (_, closed) = read_to_close(&mut raw, Duration::from_secs(10));
        let took = t.elapsed();
        assert!(closed, "still open after a 4 GiB length prefix");
        assert!(took < Duration::from_secs(3), "closing took {took:?}");
        drop(peer.writer);
        let kb = peak_rss_kb(&mut child.0, &rss);
        eprintln!("4 GiB prefix ({name}): closed after {took:?}, blackpony peak RSS {kb} kB");
        assert!(kb < MAX_RSS_KB, "peak RSS {kb} kB");
        assert!(sink.messages().is_empty());
    }
}

/// An endless line in the plain phase: 500 5.5.2, closed, and the peak RSS
/// stays small however much is sent.
#[test]
fn endless_line_is_refused_in_bounded_memory() {
    let dir = scratch("hard-endless");
    let sink = Sink::start();
    let (mut c, mut child, rss) = inetd(sink.addr, &["--timeout", "20"], &dir);
    let mut greeting = [0u8; 64];
    let n = c.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"220"));
    let mut w = c.try_clone().unwrap();
    let sent = Arc::new(Mutex::new(0u64));
    let sent2 = Arc::clone(&sent);
    let writer = thread::spawn(move || {
        let chunk = [b'A'; 16 * 1024];
        // Up to 64 MiB, or until the server hangs up.
        for _ in 0..4096 {
            if w.write_all(&chunk).is_err() {
                break;
            }
            *sent2.lock().unwrap() += chunk.len() as u64;
        }
    });
    let (got, closed) = read_to_close(&mut c, Duration::from_secs(20));
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&got);
    assert!(closed);
    assert!(text.contains("500 5.5.2"), "{text:?}");
    let kb = peak_rss_kb(&mut child.0, &rss);
    eprintln!(
        "endless line: {} bytes sent before the close, blackpony peak RSS {kb} kB",
        sent.lock().unwrap()
    );
    assert!(kb < MAX_RSS_KB, "peak RSS {kb} kB");
}

/// Slowloris. A peer that sends one byte every 0.5 s with --timeout 2 keeps
/// every single read inside the deadline, but a whole command line must
/// arrive within --timeout: it is cut about 2 s after the line began, with
/// 421 4.4.2, however it trickles. A client that says nothing after the
/// greeting is cut after the timeout too.
#[test]
fn slowloris_is_cut_at_the_line_deadline() {
    let dir = scratch("hard-slowloris");
    let sink = Sink::start();
    let (_d, addr) = start_inbound(sink.addr, &["--timeout", "2"], &dir.join("inbound.log"));

    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    let t = Instant::now();
    let mut sent = 0;
    for b in b"EHLO slow.example.with.a.long.name\r\n" {
        if c.w.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(500));
        if t.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let (got, closed) = read_to_close(&mut c.w, Duration::from_secs(10));
    let cut = t.elapsed();
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "not closed: {text:?}");
    assert!(text.contains("421 4.4.2"), "{text:?}");
    assert!(sent < 12, "{sent} bytes trickled before the cut");
    assert!(
        cut < Duration::from_secs(5),
        "cut after {cut:?} with --timeout 2"
    );
    assert!(
        !sink.commands().iter().any(|l| l.starts_with("EHLO")),
        "the trickled line reached the MTA"
    );
    eprintln!("slowloris: cut {cut:?} after the line began, {sent} bytes in, --timeout 2");

    // A client that says nothing after the greeting is cut after the timeout.
    let mut c = Client::connect(addr);
    let t = Instant::now();
    assert_eq!(c.reply().0, 220);
    let (got, closed) = read_to_close(&mut c.w, Duration::from_secs(10));
    assert!(closed && String::from_utf8_lossy(&got).contains("421 4.4.2"));
    let idle = t.elapsed();
    assert!(idle < Duration::from_millis(3500), "{idle:?}");
}

/// 200 concurrent sessions against `blackpony --listen`: every one is
/// served and delivered; memory per connection is measured and reported.
#[test]
fn two_hundred_concurrent_connections_are_all_served() {
    const N: usize = 200;
    let dir = scratch("hard-200");
    let sink = Sink::start();
    // Above the default --max-connections (100), which would answer 421.
    let (d, addr) = start_inbound_at(
        sink.addr,
        &["--timeout", "60", "--max-connections", "250"],
        &dir.join("inbound.log"),
        "info",
    );
    let pid = d.0.id();
    thread::sleep(Duration::from_millis(200));
    let idle = proc_status_kb(pid, "VmRSS").unwrap();
    let mut clients: Vec<Client> = (0..N).map(|_| Client::connect(addr)).collect();
    for c in clients.iter_mut() {
        assert_eq!(c.reply().0, 220);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.cmd(&format!("EHLO c{i}.test")).0, 250);
        assert_eq!(c.cmd(&format!("MAIL FROM:<c{i}@test>")).0, 250);
        assert_eq!(c.cmd("RCPT TO:<bob@sink.test>").0, 250);
        assert_eq!(c.cmd("DATA").0, 354);
    }
    // All N sessions are open, each mid-message.
    let busy = proc_status_kb(pid, "VmRSS").unwrap();
    let threads = proc_status_kb(pid, "Threads").unwrap_or(0);
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&format!(
            "Subject: {i}\r\n\r\n{}\r\n.\r\n",
            "x".repeat(1000)
        ));
        assert_eq!(c.reply().0, 250);
        assert_eq!(c.cmd("QUIT").0, 221);
    }
    let msgs = sink.wait_for(N);
    assert_eq!(msgs.len(), N);
    let peak = proc_status_kb(pid, "VmHWM").unwrap();
    let per_conn = busy.saturating_sub(idle) as f64 / N as f64;
    eprintln!(
        "{N} connections: VmRSS idle {idle} kB, with {N} open {busy} kB ({threads} threads), \
         {per_conn:.1} kB per connection, VmHWM {peak} kB"
    );
    assert!(per_conn < 1024.0, "{per_conn} kB per connection");
}

// ======================================================= record layer

/// A delivery through a relay that attacks the client→server records.
/// Records 0..=3 carry the inner EHLO, MAIL, RCPT and DATA; the 100 KiB
/// message fills records 4..=10, so `at = 5` is in the middle of the data.
fn tampered_delivery(attack: Attack, at: usize) {
    for (name, _) in KEYED {
        tampered_delivery_with(attack, at, name);
    }
}

fn tampered_delivery_with(attack: Attack, at: usize, suite: &str) {
    let dir = scratch(&format!("hard-tamper-{attack:?}-{suite}"));
    let sink = Sink::start();
    let (_d, inbound) = start_inbound(
        sink.addr,
        &both_suites(&["--timeout", "20"]),
        &dir.join("inbound.log"),
    );
    let relay = Relay::with(inbound, Tamper::Record(attack, at));
    let mut body = b"Subject: tampered\r\n\r\n".to_vec();
    while body.len() < 100 * 1024 {
        body.extend_from_slice(b"0123456789 the quick brown fox jumps over the lazy dog\r\n");
    }
    let run = mail(
        relay.addr.port(),
        &dir,
        &["--suites", suite],
        &body,
        "debug",
    );
    let log = relay.records();
    assert!(
        log.tampered,
        "{attack:?}/{suite}: the relay never got to record {at}"
    );
    assert_eq!(log.suite, suite);
    // The last reply before QUIT is the failure sendmail acts on.
    let (cmd, last) = run.replies.iter().rev().find(|(c, _)| c != "QUIT").unwrap();
    assert!(
        last.starts_with('4'),
        "{attack:?}/{suite}: sendmail must get a 4xx: {run:#?}"
    );
    run.assert_not_accepted();
    if attack != Attack::ReflectToClient {
        assert_eq!(
            cmd, ".",
            "{attack:?}/{suite}: failed before the data: {run:#?}"
        );
        // The backend saw DATA begin and the connection drop: nothing accepted.
        assert!(
            wait_until(Duration::from_secs(10), || sink.partial() == 1),
            "{attack:?}/{suite}: partial = {}",
            sink.partial()
        );
    }
    thread::sleep(Duration::from_millis(300));
    assert!(
        sink.messages().is_empty(),
        "{attack:?}/{suite}: a message was delivered"
    );
    let inbound_log = std::fs::read_to_string(dir.join("inbound.log")).unwrap();
    assert!(
        inbound_log.contains("end=error"),
        "{attack:?}/{suite}: {inbound_log}"
    );
}

#[test]
fn tamper_flipped_bit_ends_the_session() {
    tampered_delivery(Attack::FlipBit, 5);
}

#[test]
fn tamper_dropped_record_ends_the_session() {
    tampered_delivery(Attack::Drop, 5);
}

#[test]
fn tamper_replayed_record_ends_the_session() {
    tampered_delivery(Attack::Replay, 5);
}

#[test]
fn tamper_reordered_records_end_the_session() {
    tampered_delivery(Attack::Reorder, 5);
}

#[test]
fn tamper_truncation_before_close_ends_the_session() {
    tampered_delivery(Attack::Truncate, 5);
}

#[test]
fn tamper_record_reflected_to_the_server_ends_the_session() {
    tampered_delivery(Attack::ReflectToServer, 5);
}

/// The mailer's own MAIL record sent back to it in place of the reply.
#[test]
fn tamper_record_reflected_to_the_mailer_ends_the_session() {
    tampered_delivery(Attack::ReflectToClient, 1);
}

// ======================================================= smuggling

/// Bodies with every non-CRLF end-of-data look-alike; each is followed by
/// the real ".\r\n" and QUIT. Variant 3 (`<LF>.<CRLF>`) does end the test
/// sink's data (it compares whole lines read up to LF), so the sink alone
/// can be smuggled with it.
const SMUGGLING: &[(&str, &[u8])] = &[
    ("lf-dot-lf", b"Subject: s\r\n\r\nx\n.\nMAIL FROM:<evil@smuggler.test>\r\n"),
    ("cr-dot-cr", b"Subject: s\r\n\r\nx\r.\rMAIL FROM:<evil@smuggler.test>\r\n"),
    ("crlf-dot-lf", b"Subject: s\r\n\r\nx\r\n.\nMAIL FROM:<evil@smuggler.test>\r\n"),
    (
        "lf-dot-crlf",
        b"Subject: s\r\n\r\nx\n.\r\nMAIL FROM:<evil@smuggler.test>\r\nRCPT TO:<victim@sink.test>\r\nDATA\r\nsmuggled\r\n",
    ),
    ("crlf-dot-cr", b"Subject: s\r\n\r\nx\r\n.\rMAIL FROM:<evil@smuggler.test>\r\n"),
];

/// One SMTP session to `addr`: commands in lock-step, then the body, the
/// final dot and QUIT in one write; returns everything the server said.
fn smuggle(addr: std::net::SocketAddr, body: &[u8]) -> String {
    let mut c = Client::connect(addr);
    let mut all = String::new();
    let (code, t) = c.reply();
    all.push_str(&t);
    assert_eq!(code, 220);
    for cmd in [
        "EHLO s.test",
        "MAIL FROM:<s@s.test>",
        "RCPT TO:<bob@sink.test>",
        "DATA",
    ] {
        let (code, t) = c.cmd(cmd);
        all.push_str(&t);
        if code >= 400 {
            return all;
        }
    }
    let mut rest = body.to_vec();
    rest.extend_from_slice(b".\r\nQUIT\r\n");
    let _ = c.w.write_all(&rest);
    let (got, _) = read_to_close(&mut c.w, Duration::from_secs(10));
    all.push_str(&String::from_utf8_lossy(&got));
    all
}

type SinkView = (Vec<String>, Vec<(String, Vec<String>, Vec<u8>)>);

fn sink_view(sink: &Sink) -> SinkView {
    let log = sink.log.lock().unwrap();
    let msgs = log
        .messages
        .iter()
        .map(|m| (m.mail_from.clone(), m.rcpt_to.clone(), m.data.clone()))
        .collect();
    (log.commands.clone(), msgs)
}

/// With --allow-bare-newline the bytes reach the backend unchanged, so the
/// backend does exactly what it does when the same client talks to it
/// directly: blackpony adds no smuggling path of its own.
#[test]
fn smuggling_inputs_reach_the_backend_unchanged() {
    let dir = scratch("hard-smuggle");
    for (name, body) in SMUGGLING {
        let direct = Sink::start();
        smuggle(direct.addr, body);
        assert!(wait_until(Duration::from_secs(10), || direct
            .commands()
            .contains(&"QUIT".to_string())));

        let proxied = Sink::start();
        let (_d, addr) = start_inbound(
            proxied.addr,
            &["--allow-bare-newline"],
            &dir.join(format!("{name}.log")),
        );
        smuggle(addr, body);
        assert!(wait_until(Duration::from_secs(10), || proxied
            .commands()
            .contains(&"QUIT".to_string())));
        thread::sleep(Duration::from_millis(100));

        let (a, b) = (sink_view(&direct), sink_view(&proxied));
        assert_eq!(
            a, b,
            "{name}: the backend behaved differently behind blackpony"
        );
        let joined: Vec<u8> = b.1.iter().flat_map(|m| m.2.clone()).collect();
        if *name != "lf-dot-crlf" {
            // One message, the body exactly as sent.
            assert_eq!(b.1.len(), 1, "{name}");
            assert_eq!(b.1[0].2, *body, "{name}");
        } else {
            // The sink itself is smuggled: two messages, in both cases.
            assert_eq!(b.1.len(), 2, "{name}: {joined:?}");
        }
    }
}

/// At the default, and with its explicit form --forbid-bare-newline, every
/// variant ends the session with sendmail's `421 4.5.0` and the backend
/// accepts nothing: its DATA is cut before the final dot (partial), no 250
/// reaches the client, and no smuggled command reaches the backend. A
/// command line with a bare LF is refused before it reaches the backend.
#[test]
fn smuggling_inputs_are_refused_with_forbid_bare_newline() {
    let dir = scratch("hard-smuggle-forbid");
    for (mode, opts) in [
        ("default", &[][..]),
        ("forbid", &["--forbid-bare-newline"][..]),
    ] {
        for (name, body) in SMUGGLING {
            let sink = Sink::start();
            let (_d, addr) =
                start_inbound(sink.addr, opts, &dir.join(format!("{mode}-{name}.log")));
            let said = smuggle(addr, body);
            assert!(said.contains("421 4.5.0 Bare"), "{mode} {name}: {said:?}");
            let after_body = said.rsplit("354").next().unwrap_or("");
            assert!(
                !after_body.contains("250"),
                "{mode} {name}: the message was accepted: {said:?}"
            );
            assert!(
                !said.contains("221"),
                "{mode} {name}: the session went on: {said:?}"
            );
            assert!(
                wait_until(Duration::from_secs(10), || sink.partial() == 1),
                "{mode} {name}"
            );
            assert!(sink.messages().is_empty(), "{mode} {name}: delivered");
            let cmds = sink.commands();
            assert!(
                !cmds.iter().any(|c| c.contains("evil")),
                "{mode} {name}: {cmds:?}"
            );
        }
        let sink = Sink::start();
        let (_d, addr) = start_inbound(sink.addr, opts, &dir.join(format!("{mode}-cmd.log")));
        let mut c = Client::connect(addr);
        assert_eq!(c.reply().0, 220);
        c.send("NOOP\nMAIL FROM:<evil@smuggler.test>\r\n");
        let (got, closed) = read_to_close(&mut c.w, Duration::from_secs(10));
        let text = String::from_utf8_lossy(&got);
        assert!(
            closed && text.contains("421 4.5.0 Bare"),
            "{mode}: {text:?}"
        );
        thread::sleep(Duration::from_millis(200));
        let cmds = sink.commands();
        assert!(
            !cmds
                .iter()
                .any(|c| c.contains("NOOP") || c.contains("evil")),
            "{mode}: {cmds:?}"
        );
    }
}

/// The two forms contradict each other: a configuration error, no session.
#[test]
fn allow_and_forbid_bare_newline_together_are_refused() {
    let out = std::process::Command::new(bin("blackpony"))
        .args(["--allow-bare-newline", "--forbid-bare-newline"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(78), "{stdout:?} {stderr:?}");
    assert!(stderr.contains("not both"), "{stderr:?}");
    assert!(stdout.starts_with("421 4.3.5"), "{stdout:?}");
}

// ======================================================= keys

/// A host key readable by group or others is refused by both programs, and
/// the message says how to fix it.
#[test]
fn world_readable_key_is_refused_by_both_binaries() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    let (ka, _) = test_keys();
    let dir = scratch("hard-key-mode");
    let key = dir.join("open.key");
    std::fs::copy(ka, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Its static key and certificate beside it, the static key as open:
    // the default configuration (handshake v2) reads that one.
    let (ka_static, ka_cert) = blackpony::static_key::paths_for(ka);
    let (static_key, cert) = blackpony::static_key::paths_for(&key);
    std::fs::copy(ka_static, &static_key).unwrap();
    std::fs::copy(ka_cert, cert).unwrap();
    std::fs::set_permissions(&static_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let k = key.to_str().unwrap();

    for prog in ["blackpony", "blackpony-mailer"] {
        let out = Command::new(bin(prog))
            .args(["--fingerprint", "--key", k])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{prog} accepted a 0644 key");
        assert!(err.contains("chmod 600"), "{prog}: {err}");
        assert!(out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("SHA256:"));
    }

    // Serving: blackpony on a pipe (no socket) says it on stderr and tells
    // the client 421; the mailer greets sendmail with a 4xx and logs it.
    let log = dir.join("inbound.log");
    let out = Command::new(bin("blackpony"))
        .args(["--key", k, "--backend", "127.0.0.1:1", "--log"])
        .arg(&log)
        .args(["--record".as_ref(), dir.join("inbound.jsonl").as_os_str()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("421"));
    assert!(std::fs::read_to_string(&log).unwrap().contains("chmod 600"));

    let mlog = dir.join("mailer.log");
    let out = Command::new(bin("blackpony-mailer"))
        .args(["--key", k, "--port", "1", "--log"])
        .arg(&mlog)
        .args(["--record".as_ref(), dir.join("mailer.jsonl").as_os_str()])
        .arg("[127.0.0.1]")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("4"),
        "{out:?}"
    );
    assert!(std::fs::read_to_string(&mlog)
        .unwrap()
        .contains("chmod 600"));
}

/// At RUST_LOG=trace, a whole encrypted delivery logs neither key: no PEM
/// armour and no run of the keys' base64 text in either program's log.
#[test]
fn keys_never_appear_in_trace_logs() {
    let (ka, kb) = test_keys();
    let dir = scratch("hard-key-log");
    let sink = Sink::start();
    let (_d, inbound) = start_inbound_at(
        sink.addr,
        &["--key", kb.to_str().unwrap()],
        &dir.join("inbound.log"),
        "trace",
    );
    let run = mail(
        inbound.port(),
        &dir,
        &[],
        b"Subject: keys\r\n\r\nhello\r\n",
        "trace",
    );
    assert!(run.delivered(), "{run:#?}");
    sink.wait_for(1);
    thread::sleep(Duration::from_millis(200));
    let logs = [
        std::fs::read_to_string(dir.join("inbound.log")).unwrap(),
        std::fs::read_to_string(dir.join("m.mailer.log")).unwrap(),
    ];
    for log in &logs {
        // (The code has few debug/trace statements; trace enables them all.)
        assert!(
            log.contains("session") || log.contains("delivery"),
            "log without a session line: {log}"
        );
        assert!(!log.contains("PRIVATE KEY"), "PEM armour in a log");
    }
    for key in [ka, kb] {
        let pem = std::fs::read_to_string(key).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        // Every 24-character window of the key's base64, at 12-character steps.
        let windows: Vec<&str> = (0..body.len().saturating_sub(24))
            .step_by(12)
            .map(|i| &body[i..i + 24])
            .collect();
        for log in &logs {
            for w in &windows {
                assert!(!log.contains(w), "key material {w} in a log");
            }
        }
    }
    eprintln!(
        "trace logs: {} and {} bytes, no key material",
        logs[0].len(),
        logs[1].len()
    );
}

// ======================================================= fixed bugs

/// Fixed (found by fuzzing, tests/fuzz_regressions.rs): src/smtp/ehlo.rs
/// `add_keyword` gave an MTA whose EHLO reply has 100 lines
/// (MAX_REPLY_LINES) a 101st, the keyword; the mailer's `read_reply`
/// refuses more than 100 lines, so every delivery from a blackpony-mailer
/// to that server failed with a protocol error.
#[test]
fn a_server_with_a_100_line_ehlo_reply_still_gets_mail() {
    let (_, kb) = test_keys();
    let dir = scratch("hard-100-lines");
    // The first line and the default's four, plus 95.
    let mut lines: Vec<String> = (0..95).map(|i| format!("X-KEYWORD-{i}")).collect();
    lines.extend(EHLO_LINES.iter().map(|s| s.to_string()));
    let sink = Sink::with(Script {
        ehlo: Some(lines),
        ..Script::default()
    });
    let (_d, inbound) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap()],
        &dir.join("inbound.log"),
    );
    let run = mail(
        inbound.port(),
        &dir,
        &[],
        b"Subject: long ehlo\r\n\r\nhello\r\n",
        "debug",
    );
    assert!(run.delivered(), "{run:#?}");
    // Delivered in plain: the keyword did not fit.
    assert_eq!(run.reply("EHLO").unwrap().lines().count(), 100, "{run:#?}");
    assert_eq!(sink.wait_for(1).len(), 1);
}

/// Fixed (found by fuzzing): src/smtp/ehlo.rs `strip_keyword` handed
/// sendmail a remote MX's text-less EHLO line (`250\r\n`) with its CR
/// overwritten (`250 \n`); a bare-LF `250\n` lost its LF and swallowed the
/// next reply.
#[test]
fn mailer_keeps_crlf_on_a_text_less_ehlo_line() {
    let dir = scratch("hard-strip-bare");
    let script = Script {
        ehlo: Some(vec![String::new()]),
        ..Script::default()
    };
    let want = script.ehlo_reply();
    assert_eq!(want, "250-sink.test hello\r\n250\r\n");
    let server = Smtpd::with(script);
    let run = mail(
        server.addr.port(),
        &dir,
        &[],
        b"Subject: bare\r\n\r\nhello\r\n",
        "debug",
    );
    assert_eq!(run.reply("EHLO"), Some(want.as_str()), "{run:#?}");
    assert!(run.delivered(), "{run:#?}");
}
