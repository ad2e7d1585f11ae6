//! blackpony-mailer, the real binary, driven over its pipes exactly as
//! sendmail drives it, against real sockets: plain SMTP servers, the real
//! `blackpony --listen`, relays that record or tamper with the wire, and a
//! real dnsmasq serving MX records that point at 127.0.0.x.

mod support;

#[path = "support/outbound_kit.rs"]
mod kit;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kit::*;
use support::*;

/// The EHLO reply of tests/support's Sink.
const SINK_EHLO: &str = "250-sink.test hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
                         250-SIZE 200000000\r\n250 CHUNKING\r\n";
const SINK_GREETING: &str = "220 sink.test ESMTP test sink\r\n";

const SHORT_BODY: &[u8] = b"Subject: short\r\n\r\nsecret text of a short message\r\n";

/// Mailer options for one test: key A, the test's own known-peers file and
/// log, a short timeout so a hang fails fast.
fn args(dir: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    let (ka, _) = test_keys();
    let mut v: Vec<String> = vec![
        "--port".into(),
        port.to_string(),
        "--key".into(),
        ka.to_str().unwrap().into(),
        "--known-peers".into(),
        known_peers(dir).to_str().unwrap().into(),
        "--log".into(),
        dir.join("mailer.log").to_str().unwrap().into(),
    ];
    if !extra.contains(&"--timeout") {
        v.extend(["--timeout".into(), "5".into()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn known_peers(dir: &Path) -> PathBuf {
    dir.join("known_peers")
}

/// The host pins in the known-peers file: host, fingerprint, suite, first, last.
fn pins(dir: &Path) -> Vec<Vec<String>> {
    pins_of(dir, "host")
}

/// The domain pins, one per key: domain, fingerprint, suite, first, last.
fn domain_pins(dir: &Path) -> Vec<Vec<String>> {
    pins_of(dir, "domain")
}

fn pins_of(dir: &Path, kind: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(known_peers(dir)).unwrap_or_default();
    let lines: Vec<Vec<String>> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    // Every line the mailer writes names its kind.
    assert!(
        lines
            .iter()
            .all(|l| l.len() == 6 && (l[0] == "host" || l[0] == "domain")),
        "{text}"
    );
    lines
        .into_iter()
        .filter(|l| l[0] == kind)
        .map(|l| l[1..].to_vec())
        .collect()
}

fn mailer_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("mailer.log")).unwrap_or_default()
}

/// Log lines at level `level` ("warn", "error", ...).
fn log_lines(dir: &Path, level: &str) -> Vec<String> {
    let tag = format!(": {level}: ");
    mailer_log(dir)
        .lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_string)
        .collect()
}

fn drive() -> Drive {
    Drive::default()
}

/// The usual delivery: SHORT_BODY to the address literal, driven as sendmail does.
fn send(dir: &Path, port: u16, extra: &[&str]) -> Run {
    send_as(dir, port, extra, SHORT_BODY, &drive())
}

/// `body` to the address literal, driven as `d` says.
fn send_as(dir: &Path, port: u16, extra: &[&str], body: &[u8], d: &Drive) -> Run {
    run_mailer(&args(dir, port, extra), "[127.0.0.1]", body, d)
}

fn first_line(reply: Option<&str>) -> &str {
    reply.unwrap_or("").lines().next().unwrap_or("")
}

/// A message that exercises transparency: dot-stuffed lines, 8-bit bytes,
/// a 998-octet line, a much longer one, many lines (several records when
/// encrypted). Already dot-stuffed, as sendmail sends it.
fn hard_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"From: Alice <alice@sender.test>\r\nTo: bob@receiver.test\r\n");
    b.extend_from_slice(b"Subject: transparency\r\nContent-Type: text/plain; charset=latin1\r\n");
    b.extend_from_slice(b"Content-Transfer-Encoding: 8bit\r\n\r\n");
    b.extend_from_slice(b"..\r\n");
    b.extend_from_slice(b"...a line that began with two dots\r\n");
    b.extend_from_slice(b".. \r\n");
    b.extend_from_slice(b"secret text: caf\xe9 na\xefve \xff\xfe\x80\x00 \x1b[0m\r\n");
    let eight: Vec<u8> = (0x80..=0xffu8).collect();
    b.extend_from_slice(&eight);
    b.extend_from_slice(b"\r\n");
    b.extend_from_slice(&[b'x'; 998]);
    b.extend_from_slice(b"\r\n");
    b.extend_from_slice(&[b'y'; 20_000]);
    b.extend_from_slice(b"\r\n");
    for i in 0..6000 {
        b.extend_from_slice(format!("line {i:05} of the bulk, secret text\r\n").as_bytes());
    }
    b.extend_from_slice(b"..\r\n");
    b.extend_from_slice(b"the end without a final dot line\r\n");
    b
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// 1. Plain delivery
// ---------------------------------------------------------------------------

#[test]
fn plain_delivery_is_byte_for_byte_and_sendmail_sees_the_remote_replies() {
    let dir = scratch("outb-plain");
    let sink = Sink::start();
    let a = args(&dir, sink.addr.port(), &[]);
    let body = hard_body();
    let d = Drive {
        rcpts: vec!["<bob@receiver.test>".into(), "<carol@receiver.test>".into()],
        ..drive()
    };
    let run = run_mailer(&a, "[127.0.0.1]", &body, &d);
    assert!(run.delivered(), "{run:#?}");
    assert!(run.status.success(), "{run:#?}");
    assert_eq!(run.greeting, SINK_GREETING);
    assert_eq!(run.reply("EHLO"), Some(SINK_EHLO));
    assert_eq!(run.reply("."), Some("250 2.0.0 accepted\r\n"));
    assert_eq!(run.reply("QUIT"), Some("221 2.0.0 bye\r\n"));
    assert_eq!(run.trailing, "");
    let msgs = sink.wait_for(1);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].data == body, "the message changed on the way");
    assert_eq!(msgs[0].helo, "sender.test");
    assert_eq!(msgs[0].mail_from, "<alice@sender.test>");
    assert_eq!(
        msgs[0].rcpt_to,
        ["<bob@receiver.test>", "<carol@receiver.test>"]
    );
    // Pipelined, as sendmail sends when PIPELINING is offered.
    let d = Drive {
        pipelining: true,
        ..drive()
    };
    let run = run_mailer(&a, "[127.0.0.1]", &body, &d);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(first_line(run.reply("MAIL")), "250 2.1.0 ok");
    assert_eq!(first_line(run.reply("RCPT")), "250 2.1.5 ok");
    assert_eq!(first_line(run.reply("DATA")), "354 go ahead");
    let msgs = sink.wait_for(2);
    assert!(msgs[1].data == body);
    assert!(pins(&dir).is_empty(), "a plain peer was pinned");
    let log = mailer_log(&dir);
    assert!(
        log.lines()
            .any(|l| l.contains("delivery dest=[127.0.0.1]") && l.contains("suite=plain")),
        "{log}"
    );
}

/// The issue: "One line per delivery: ... final reply". The line must say
/// what became of the message, not that QUIT was answered.
#[test]
fn log_line_reports_what_became_of_the_message() {
    let dir = scratch("outb-logline");
    for (dot, want) in [
        (None, "250 2.0.0 accepted"),
        (
            Some("554 5.6.0 content rejected"),
            "554 5.6.0 content rejected",
        ),
    ] {
        let smtpd = Smtpd::with(Script {
            dot_reply: dot.map(str::to_string),
            ..Script::default()
        });
        let run = send(&dir, smtpd.addr.port(), &[]);
        assert_eq!(first_line(run.reply(".")), want);
        let log = mailer_log(&dir);
        let line = log
            .lines()
            .rfind(|l| l.contains("delivery dest="))
            .unwrap_or_default();
        assert!(line.contains(want), "{line}");
    }
}

#[test]
fn unknown_suite_gets_its_mail_in_plain_and_sendmail_never_sees_the_keyword() {
    let dir = scratch("outb-unknown-suite");
    let script = Script {
        ehlo: Some(
            [&["XBLACKPONY FOO"][..], &EHLO_LINES]
                .concat()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        ..Script::default()
    };
    let sink = Sink::with(script);
    let run = send(&dir, sink.addr.port(), &[]);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(run.reply("EHLO"), Some(SINK_EHLO));
    assert_eq!(sink.wait_for(1)[0].data, SHORT_BODY);
    let cmds = sink.commands();
    assert!(!cmds.iter().any(|c| c.contains("XBLACKPONY")), "{cmds:?}");
    assert!(mailer_log(&dir).contains("XBLACKPONY FOO"));

    // The keyword as the last line, with a suite this mailer does not allow
    // (ROT13 without --allow-rot): the reply must stay well formed.
    // A multi-line greeting too, relayed as it is.
    let script = Script {
        greeting: "220-mx.test first line\r\n220 mx.test ESMTP scripted".into(),
        ehlo: Some(vec!["PIPELINING".into(), "XBLACKPONY ROT13".into()]),
        ..Script::default()
    };
    let smtpd = Smtpd::with(script);
    let run = send(&dir, smtpd.addr.port(), &[]);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(
        run.greeting,
        "220-mx.test first line\r\n220 mx.test ESMTP scripted\r\n"
    );
    assert_eq!(
        run.reply("EHLO"),
        Some("250-sink.test hello\r\n250 PIPELINING\r\n")
    );
    assert_eq!(smtpd.messages().len(), 1);
    assert!(!smtpd.commands().iter().any(|c| c.contains("XBLACKPONY")));
}

#[test]
fn helo_only_server_gets_its_mail() {
    let dir = scratch("outb-helo");
    let sink = Sink::with(Script {
        ehlo: None,
        ..Script::default()
    });
    let run = send(&dir, sink.addr.port(), &[]);
    assert_eq!(
        run.reply("EHLO"),
        Some("502 5.5.1 EHLO not implemented\r\n")
    );
    assert_eq!(run.reply("HELO"), Some("250 sink.test\r\n"));
    assert!(run.delivered(), "{run:#?}");
    let m = sink.wait_for(1);
    assert_eq!(m[0].data, SHORT_BODY);
    assert_eq!(m[0].helo, "sender.test");
}

// ---------------------------------------------------------------------------
// 2. Encrypted delivery and pins
// ---------------------------------------------------------------------------

#[test]
fn encrypted_delivery_hides_the_message_and_pins_the_peer() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-enc");
    let sink = Sink::start();
    let (_inbound, addr) = inbound(sink.addr, kb, &dir.join("inbound.log"));
    let relay = Relay::start(addr);
    let a = args(&dir, relay.addr.port(), &[]);
    let body = hard_body();
    let d = Drive {
        pipelining: true,
        ..drive()
    };
    let run = run_mailer(&a, "[127.0.0.1]", &body, &d);
    assert!(run.delivered(), "{run:#?}");
    assert!(run.status.success(), "{run:#?}");
    let ehlo = run.reply("EHLO").unwrap();
    assert!(ehlo.starts_with("250"), "{ehlo}");
    assert!(!ehlo.to_ascii_uppercase().contains("XBLACKPONY"), "{ehlo}");
    let msgs = sink.wait_for(1);
    assert!(msgs[0].data == body, "the message changed on the way");
    assert_eq!(msgs[0].rcpt_to, ["<bob@receiver.test>"]);

    // The wire: only the EHLO and the switch command in clear from the
    // mailer; after the 220 nothing readable either way.
    let caps = relay.captures();
    assert_eq!(caps.len(), 1);
    let cap = &caps[0];
    let switch = b"\r\nXBLACKPONY RSA-BLOWFISH ";
    assert!(
        cap.up.starts_with(b"EHLO sender.test"),
        "{:?}",
        &cap.up[..40]
    );
    assert!(contains(&cap.up, switch));
    let go = b"220 2.0.0 Go ahead with RSA-BLOWFISH\r\n";
    let after_down = &cap.down[find(&cap.down, go).expect("no 220 to the switch") + go.len()..];
    // After the switch command's own line (it starts with the CRLF before it).
    let up_at = find(&cap.up, switch).unwrap() + 2;
    let after_up = &cap.up[up_at + find(&cap.up[up_at..], b"\n").unwrap() + 1..];
    assert!(
        after_up.len() > body.len(),
        "the message did not go this way"
    );
    for secret in [
        &b"secret text"[..],
        b"alice@sender.test",
        b"bob@receiver.test",
        b"MAIL FROM",
        b"RCPT TO",
        b"DATA",
        b"Subject",
        b"line 00042",
        b"QUIT",
        b"xxxxxxxxxxxxxxxx",
    ] {
        assert!(!contains(&cap.up, secret), "{:?} on the wire", secret);
        assert!(!contains(after_up, secret));
        assert!(!contains(&cap.down, secret), "{:?} on the wire", secret);
    }
    for reply in [&b"accepted"[..], b"go ahead", b"2.1.0", b"2.1.5", b"bye"] {
        assert!(!contains(after_down, reply), "{:?} in clear", reply);
    }

    // The pin: host, the fingerprint blackpony --fingerprint prints, the suite.
    let fp = fingerprint(kb);
    let p = pins(&dir);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0][..3], ["[127.0.0.1]", fp.as_str(), "RSA-BLOWFISH"]);
    assert_eq!(p[0].len(), 5, "{p:?}");
    // And the destination (a literal is its own domain), seen encrypted.
    let d = domain_pins(&dir);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0][..3], ["[127.0.0.1]", fp.as_str(), "RSA-BLOWFISH"]);
    let log = mailer_log(&dir);
    assert!(
        log.lines().any(|l| l.contains("delivery dest=[127.0.0.1]")
            && l.contains("suite=RSA-BLOWFISH")
            && l.contains(&format!("peer={fp}"))),
        "{log}"
    );

    // Same key again under tofu: delivered, still one pin.
    let tofu = args(&dir, relay.addr.port(), &["--policy", "tofu"]);
    let run = run_mailer(&tofu, "[127.0.0.1]", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(pins(&dir).len(), 1);

    // --list-peers and --forget.
    let kp = known_peers(&dir);
    let kp = kp.to_str().unwrap();
    let (st, out, err) = run_command(&["--known-peers", kp, "--list-peers"]);
    assert!(st.success() && err.is_empty(), "{st} {err}");
    let listed: Vec<&str> = out.lines().collect();
    assert_eq!(listed.len(), 2, "{out}");
    assert!(
        listed[0].starts_with(&format!("[127.0.0.1] {fp} RSA-BLOWFISH "))
            && listed[0].ends_with(" domain"),
        "{out}"
    );
    assert!(
        listed[1].starts_with(&format!("[127.0.0.1] {fp} RSA-BLOWFISH "))
            && listed[1].ends_with(" host"),
        "{out}"
    );
    // A name that is a host and a domain loses both.
    let (st, out, err) = run_command(&["--known-peers", kp, "--forget", "[127.0.0.1]"]);
    assert!(st.success() && err.is_empty(), "{st} {out} {err}");
    assert_eq!(
        out,
        "forgot host [127.0.0.1]\nforgot domain [127.0.0.1] (1 keys)\n"
    );
    assert!(pins(&dir).is_empty(), "{:?}", pins(&dir));
    assert!(domain_pins(&dir).is_empty(), "{:?}", domain_pins(&dir));
    let (st, out, _) = run_command(&["--known-peers", kp, "--list-peers"]);
    assert!(st.success());
    assert_eq!(out, "");
    let (st, _, _) = run_command(&["--known-peers", kp, "--forget", "[127.0.0.1]"]);
    assert!(!st.success(), "forgetting an unknown host succeeded");
}

// ---------------------------------------------------------------------------
// 3. MX handling against dnsmasq
// ---------------------------------------------------------------------------

fn dns_args(dir: &Path, port: u16, dns: &Dnsmasq, extra: &[&str]) -> Vec<String> {
    let server = dns.addr.to_string();
    let mut all = vec!["--dns", server.as_str()];
    all.extend_from_slice(extra);
    args(dir, port, &all)
}

#[test]
fn mail_goes_to_the_lowest_preference() {
    let dns = test_dns();
    let dir = scratch("outb-mx-pref");
    let mut ports = reserve(&[lo(3), lo(4), lo(5)], &[]);
    let mx20 = Smtpd::on(ports.take(lo(3)), Script::default());
    let mx10 = Smtpd::on(ports.take(lo(4)), Script::default());
    let mx30 = Smtpd::on(ports.take(lo(5)), Script::default());
    let a = dns_args(&dir, ports.port, &dns, &[]);
    for _ in 0..3 {
        let run = run_mailer(&a, "pref.test", SHORT_BODY, &drive());
        assert!(run.delivered(), "{run:#?}");
    }
    assert_eq!(mx10.messages().len(), 3);
    assert_eq!(mx20.connections() + mx30.connections(), 0);
    assert!(mailer_log(&dir).contains("mx=mx10.pref.test[127.0.0.4:"));

    // equal.test: two MX hosts of preference 10 (on .3 and .5): shuffled,
    // so both get mail.
    for _ in 0..16 {
        let run = run_mailer(&a, "equal.test", SHORT_BODY, &drive());
        assert!(run.delivered(), "{run:#?}");
    }
    let (e1, e2) = (mx20.messages().len(), mx30.messages().len());
    assert_eq!(e1 + e2, 16);
    assert!(e1 > 0 && e2 > 0, "always the same MX: {e1} {e2}");
}

#[test]
fn next_mx_when_the_first_is_down_or_busy() {
    let dns = test_dns();
    let dir = scratch("outb-mx-fallback");
    let mut ports = reserve(&[lo(3), lo(4), lo(5)], &[lo(DOWN)]);
    let second_down = Smtpd::on(ports.take(lo(3)), Script::default());
    let busy = Smtpd::on(
        ports.take(lo(4)),
        Script {
            greeting: "421 4.3.2 too busy, try later".into(),
            ..Script::default()
        },
    );
    let second_busy = Smtpd::on(ports.take(lo(5)), Script::default());
    let a = dns_args(&dir, ports.port, &dns, &[]);

    let run = run_mailer(&a, "down.test", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(second_down.messages()[0].data, SHORT_BODY);

    let run = run_mailer(&a, "busy.test", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(run.greeting, SINK_GREETING);
    assert_eq!(second_busy.messages().len(), 1);
    assert_eq!(busy.connections(), 1);
    assert!(
        !busy.commands().iter().any(|c| c.starts_with("MAIL")),
        "{:?}",
        busy.commands()
    );
}

#[test]
fn next_mx_when_the_first_never_greets() {
    let dns = test_dns();
    let dir = scratch("outb-mx-hang");
    let mut ports = reserve(&[lo(3), lo(6)], &[]);
    // Bound and listening, never accepted: the connection opens, no greeting comes.
    let _silent = ports.take(lo(6));
    let second = Smtpd::on(ports.take(lo(3)), Script::default());
    let a = dns_args(&dir, ports.port, &dns, &["--timeout", "1"]);
    let t = Instant::now();
    let run = run_mailer(&a, "hang.test", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(second.messages().len(), 1);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn domain_without_mx_gets_mail_at_its_address() {
    let dns = test_dns();
    let dir = scratch("outb-mx-implicit");
    let mut ports = reserve(&[lo(6)], &[]);
    let host = Smtpd::on(ports.take(lo(6)), Script::default());
    let run = run_mailer(
        &dns_args(&dir, ports.port, &dns, &[]),
        "implicit.test",
        SHORT_BODY,
        &drive(),
    );
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(host.messages()[0].data, SHORT_BODY);
}

#[test]
fn null_mx_and_nxdomain_bounce() {
    let dns = test_dns();
    let dir = scratch("outb-mx-null");
    let ports = reserve(&[], &[]);
    let a = dns_args(&dir, ports.port, &dns, &[]);
    for dest in ["null.test", "no-such-domain.test"] {
        let run = run_mailer(&a, dest, SHORT_BODY, &drive());
        assert!(run.greeting.starts_with("5"), "{dest}: {run:#?}");
        assert!(
            run.greeting.lines().count() == 1 && run.greeting.ends_with("\r\n"),
            "{run:#?}"
        );
        assert!(run.replies.iter().all(|(c, _)| c == "QUIT"), "{run:#?}");
    }
}

#[test]
fn no_mx_answering_keeps_the_message_queued() {
    let dns = test_dns();
    let dir = scratch("outb-mx-dead");
    let mut ports = reserve(&[lo(4)], &[lo(DOWN)]);
    let busy = Smtpd::on(
        ports.take(lo(4)),
        Script {
            greeting: "421 4.3.2 too busy".into(),
            ..Script::default()
        },
    );
    let a = dns_args(&dir, ports.port, &dns, &[]);
    // One MX down, the other busy; an MX host without an address.
    for dest in ["dead.test", "allgone.test"] {
        let run = run_mailer(&a, dest, SHORT_BODY, &drive());
        assert!(run.greeting.starts_with("421 4.4.1"), "{dest}: {run:#?}");
        assert_eq!(run.reply("QUIT"), Some("221 2.0.0 Bye\r\n"), "{run:#?}");
        assert!(!run.status.success(), "{dest}: {run:#?}");
    }
    assert_eq!(busy.connections(), 1);
}

#[test]
fn encrypted_delivery_through_mx_pins_the_mx_host() {
    let (_, kb) = test_keys();
    let dns = test_dns();
    let dir = scratch("outb-mx-secure");
    let sink = Sink::start();
    let (_inbound, addr) = inbound(sink.addr, kb, &dir.join("inbound.log"));
    let mut ports = reserve(&[lo(8)], &[]);
    let _relay = Relay::on(ports.take(lo(8)), addr);
    let a = dns_args(&dir, ports.port, &dns, &["--policy", "require"]);
    let run = run_mailer(&a, "secure.test", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(sink.wait_for(1)[0].data, SHORT_BODY);
    let p = pins(&dir);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0][..3],
        ["mx.secure.test", &fingerprint(kb), "RSA-BLOWFISH"]
    );
}

/// Pins per destination: once pinned.test was seen encrypted through mx1,
/// an attacker who blocks mx1 gets nothing at mx2, whether mx2 is plain or
/// shows another key: tofu and require defer with nothing of sendmail's but
/// the EHLO reaching mx2; may delivers with a warning and pins nothing.
#[test]
fn mx_fallback_cannot_get_around_a_domain_pin() {
    let (_, kb) = test_keys();
    let kc = key_c();
    let dns = test_dns();
    let dir = scratch("outb-mx-pinned");
    let sink_b = Sink::start();
    let (_b, addr_b) = inbound(sink_b.addr, kb, &dir.join("inbound-b.log"));
    let sink_c = Sink::start();
    let (_c, addr_c) = inbound(sink_c.addr, kc, &dir.join("inbound-c.log"));
    let plain = Sink::start();
    let mut ports = reserve(&[lo(9), lo(10)], &[]);
    let mut mx1 = Gate::on(ports.take(lo(9)), addr_b);
    let mx2 = Relay::on(ports.take(lo(10)), plain.addr);
    let port = ports.port;
    let with = |policy: &str| dns_args(&dir, port, &dns, &["--policy", policy]);
    let fp_b = fingerprint(kb);

    // 1. The default policy (tofu), mx1 up: encrypted, domain and host pinned.
    let run = run_mailer(
        &dns_args(&dir, port, &dns, &[]),
        "pinned.test",
        SHORT_BODY,
        &drive(),
    );
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(sink_b.wait_for(1)[0].data, SHORT_BODY);
    let d = domain_pins(&dir);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0][..3], ["pinned.test", fp_b.as_str(), "RSA-BLOWFISH"]);
    let h = pins(&dir);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0][..2], ["mx1.pinned.test", fp_b.as_str()]);
    assert_eq!(plain.connections(), 0);
    let file_before = std::fs::read_to_string(known_peers(&dir)).unwrap();

    // 2. mx1 is blocked: connections to it are refused.
    mx1.close();
    let refused = std::net::TcpStream::connect((lo(9), port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let mut deferred = 0;
    for (what, backend) in [("plain", plain.addr), ("another key", addr_c)] {
        mx2.set_backend(backend);
        for policy in ["tofu", "require"] {
            let run = run_mailer(&with(policy), "pinned.test", SHORT_BODY, &drive());
            assert!(
                first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
                "{what} {policy}: {run:#?}"
            );
            assert!(
                run.replies.iter().all(|(c, _)| !c.starts_with("MAIL")),
                "{run:#?}"
            );
            run.assert_not_accepted();
            deferred += 1;
        }
    }
    let errors = log_lines(&dir, "error");
    let at_mx2 = |needle: &str| {
        errors
            .iter()
            .filter(|l| l.contains("mx2.pinned.test") && l.contains(needle))
            .count()
    };
    assert_eq!(
        at_mx2("domain pinned.test previously encrypted"),
        2,
        "{errors:#?}"
    );
    assert_eq!(
        at_mx2("not one of the 1 pinned for domain pinned.test"),
        2,
        "{errors:#?}"
    );
    assert_eq!(deferred, 4);
    // The plain mx2 saw two EHLOs and the mailer's QUIT, nothing else.
    let cmds = plain.commands();
    assert_eq!(
        cmds.iter().filter(|c| c.starts_with("EHLO")).count(),
        2,
        "{cmds:?}"
    );
    assert!(
        cmds.iter().all(|c| c.starts_with("EHLO") || c == "QUIT"),
        "{cmds:?}"
    );
    // Behind the other key, the handshake was refused before msg3: the
    // backend got no command of sendmail's at all.
    assert!(
        sink_c
            .commands()
            .iter()
            .all(|c| !c.starts_with("MAIL") && !c.starts_with("RCPT")),
        "{:?}",
        sink_c.commands()
    );
    assert!(plain.messages().is_empty() && sink_c.messages().is_empty());
    assert_eq!(
        std::fs::read_to_string(known_peers(&dir)).unwrap(),
        file_before
    );

    // 3. may: delivered with a warning, and the pins unchanged (mx2's key
    // is pinned neither to the domain nor to mx2).
    for backend in [plain.addr, addr_c] {
        mx2.set_backend(backend);
        let run = run_mailer(&with("may"), "pinned.test", SHORT_BODY, &drive());
        assert!(run.delivered(), "{run:#?}");
    }
    assert_eq!(plain.wait_for(1).len(), 1);
    assert_eq!(sink_c.wait_for(1).len(), 1);
    let warned = log_lines(&dir, "info")
        .iter()
        .filter(|l| l.contains("delivery dest=pinned.test") && l.contains("verdict=warn"))
        .count();
    assert_eq!(warned, 2, "{}", mailer_log(&dir));
    assert_eq!(
        std::fs::read_to_string(known_peers(&dir)).unwrap(),
        file_before
    );

    // 4. --list-peers and --forget, per host and per domain.
    let kp = known_peers(&dir);
    let kp = kp.to_str().unwrap();
    let (st, out, _) = run_command(&["--known-peers", kp, "--list-peers"]);
    assert!(st.success());
    let kinds: Vec<(&str, &str)> = out
        .lines()
        .map(|l| (l.split(' ').next().unwrap(), l.rsplit(' ').next().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("pinned.test", "domain"), ("mx1.pinned.test", "host")]
    );
    let (st, out, _) = run_command(&["--known-peers", kp, "--forget", "mx1.pinned.test"]);
    assert!(
        st.success() && out == "forgot host mx1.pinned.test\n",
        "{out}"
    );
    assert!(pins(&dir).is_empty() && domain_pins(&dir).len() == 1);
    // The domain pin alone still holds mx2 (key C) to key B.
    let run = run_mailer(&with("tofu"), "pinned.test", SHORT_BODY, &drive());
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    let (st, out, _) = run_command(&["--known-peers", kp, "--forget", "pinned.test"]);
    assert!(
        st.success() && out == "forgot domain pinned.test (1 keys)\n",
        "{out}"
    );
    // Forgotten: mx2 is first contact, delivered and pinned, for both.
    let run = run_mailer(&with("tofu"), "pinned.test", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    let fp_c = fingerprint(kc);
    assert_eq!(domain_pins(&dir)[0][..2], ["pinned.test", fp_c.as_str()]);
    assert_eq!(pins(&dir)[0][..2], ["mx2.pinned.test", fp_c.as_str()]);
}

// ---------------------------------------------------------------------------
// 4. Stripping
// ---------------------------------------------------------------------------

#[test]
fn stripped_keyword_under_each_policy() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-strip");
    let sink = Sink::start();
    let (_inbound, addr) = inbound(sink.addr, kb, &dir.join("inbound.log"));
    let relay = Relay::start(addr);
    let port = relay.addr.port();
    let run = send(&dir, port, &[]);
    assert!(run.delivered(), "{run:#?}");
    let pinned = pins(&dir);
    assert_eq!(pinned.len(), 1);
    relay.set_tamper(Tamper::StripKeyword);

    // may: delivered in plain, with a warning naming the peer.
    let run = send(&dir, port, &["--policy", "may"]);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(sink.wait_for(2).len(), 2);
    let cap = relay.captures().pop().unwrap();
    assert!(
        contains(&cap.up, b"MAIL FROM:<alice@sender.test>"),
        "not stripped?"
    );
    let warns = log_lines(&dir, "warn");
    assert!(
        warns
            .iter()
            .any(|l| l.contains("[127.0.0.1]") && l.contains("stripping")),
        "{warns:?}"
    );
    assert_eq!(pins(&dir), pinned, "a plain session changed the pin");

    // tofu: sendmail's EHLO gets 421 4.7.5 (decided before anything more of
    // sendmail's is relayed), the sink nothing.
    let mails_before = mail_commands(&sink);
    let run = send(&dir, port, &["--policy", "tofu"]);
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    run.assert_not_accepted();
    // Pipelined, as sendmail sends: RCPT and DATA get 4xx too.
    let run = run_mailer(
        &args(&dir, port, &["--policy", "tofu"]),
        "[127.0.0.1]",
        SHORT_BODY,
        &Drive {
            pipelining: true,
            ..drive()
        },
    );
    // The driver, pipelining like sendmail, sends nothing after the 421 to
    // its EHLO; what it did send got a 4xx.
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    for (cmd, reply) in &run.replies {
        assert!(cmd == "QUIT" || reply.starts_with('4'), "{cmd}: {run:#?}");
    }
    run.assert_not_accepted();
    // require, with the pin: the same.
    let run = send(&dir, port, &["--policy", "require"]);
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    assert_eq!(pins(&dir), pinned);

    // require, an unknown peer that is plain: 4xx.
    let fresh = scratch("outb-strip-fresh");
    let run = send_as(&fresh, port, &["--policy", "require"], SHORT_BODY, &drive());
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    assert!(pins(&fresh).is_empty());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(
        mail_commands(&sink),
        mails_before,
        "a deferred MAIL reached the sink"
    );
}

fn mail_commands(sink: &Sink) -> usize {
    sink.log
        .lock()
        .unwrap()
        .commands
        .iter()
        .filter(|c| c.to_ascii_uppercase().starts_with("MAIL"))
        .count()
}

#[test]
fn policy_file_applies_to_its_destination_only() {
    let dns = test_dns();
    let dir = scratch("outb-policy-file");
    let mut ports = reserve(&[lo(7)], &[]);
    let mx = Smtpd::on(ports.take(lo(7)), Script::default());
    let file = dir.join("policy");
    std::fs::write(&file, "# test map\nexample.test require\n").unwrap();
    let a = dns_args(
        &dir,
        ports.port,
        &dns,
        &["--policy-file", file.to_str().unwrap()],
    );
    let run = run_mailer(&a, "example.test", SHORT_BODY, &drive());
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    assert!(!mx.commands().iter().any(|c| c.starts_with("MAIL")));
    let run = run_mailer(&a, "other.test", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(mx.messages().len(), 1);

    // And the other way round: a file entry loosens the default.
    std::fs::write(&file, "other.test may\n").unwrap();
    let a = dns_args(
        &dir,
        ports.port,
        &dns,
        &[
            "--policy",
            "require",
            "--policy-file",
            file.to_str().unwrap(),
        ],
    );
    let run = run_mailer(&a, "other.test", SHORT_BODY, &drive());
    assert!(run.delivered(), "{run:#?}");
    let run = run_mailer(&a, "example.test", SHORT_BODY, &drive());
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    assert_eq!(mx.messages().len(), 2);
}

/// sendmail starts TLS whenever the remote offers STARTTLS. A stripping
/// attacker who removes XBLACKPONY but offers STARTTLS (with a certificate
/// of its own: sendmail does not verify by default) must not get the
/// envelope under tofu or require. The mailer checks the policy at MAIL, but
/// relays STARTTLS before that and then only pipes bytes, so the check never
/// runs.
#[test]
fn starttls_does_not_bypass_the_policy() {
    let dir = scratch("outb-starttls");
    let smtpd = Smtpd::with(Script {
        ehlo: Some(vec!["PIPELINING".into(), "STARTTLS".into()]),
        starttls: Starttls::Fake,
        ..Script::default()
    });
    let d = Drive {
        starttls: true,
        ..drive()
    };
    // require: an unknown plain peer.
    let run = send_as(
        &dir,
        smtpd.addr.port(),
        &["--policy", "require"],
        SHORT_BODY,
        &d,
    );
    run.assert_not_accepted();
    // tofu: a pinned peer seen plain (a pin written as the mailer writes them).
    std::fs::write(
        known_peers(&dir),
        "# blackpony known peers: host fingerprint suite first-seen last-seen\n\
         [127.0.0.1] SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA RSA-BLOWFISH 2026-01-01 2026-01-01\n",
    )
    .unwrap();
    let run = send_as(
        &dir,
        smtpd.addr.port(),
        &["--policy", "tofu"],
        SHORT_BODY,
        &d,
    );
    run.assert_not_accepted();
    let cmds = smtpd.commands();
    assert!(
        !cmds.iter().any(|c| c.starts_with("MAIL")),
        "the envelope went to a plain peer under require/tofu: {cmds:?}"
    );
    assert!(smtpd.messages().is_empty());
}

/// Most receiving MTAs offer STARTTLS, and blackpony relays their EHLO
/// reply inside the channel, so sendmail starts TLS inside it. The mailer
/// then only pipes bytes: it never sees the 250 to the message, never pins
/// the peer, and so tofu never engages for such a site.
#[test]
fn starttls_inside_the_encrypted_channel_still_pins_the_peer() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-starttls-enc");
    let smtpd = Smtpd::with(Script {
        ehlo: Some(vec!["PIPELINING".into(), "STARTTLS".into()]),
        starttls: Starttls::Fake,
        ..Script::default()
    });
    let (_inbound, addr) = inbound(smtpd.addr, kb, &dir.join("inbound.log"));
    let d = Drive {
        starttls: true,
        ..drive()
    };
    let run = send_as(&dir, addr.port(), &[], SHORT_BODY, &d);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(smtpd.messages().len(), 1);
    let p = pins(&dir);
    assert_eq!(p.len(), 1, "no pin after an encrypted delivery: {run:#?}");
    assert_eq!(p[0][1], fingerprint(kb));
}

#[test]
fn corrupt_known_peers_file_defers_with_the_reason_in_the_log() {
    let dir = scratch("outb-corrupt-pins");
    std::fs::write(known_peers(&dir), "[127.0.0.1] only-two-fields\n").unwrap();
    let smtpd = Smtpd::with(Script::default());
    let run = send(&dir, smtpd.addr.port(), &[]);
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4."),
        "{run:#?}"
    );
    run.assert_not_accepted();
    assert!(smtpd.messages().is_empty());
    assert!(mailer_log(&dir).contains("line 1"), "{}", mailer_log(&dir));
}

// ---------------------------------------------------------------------------
// 5. Key change
// ---------------------------------------------------------------------------

#[test]
fn key_change_under_each_policy() {
    let (_, kb) = test_keys();
    let kc = key_c();
    let dir = scratch("outb-keychange");
    let sink = Sink::start();
    let (_b, addr_b) = inbound(sink.addr, kb, &dir.join("inbound-b.log"));
    let (_c, addr_c) = inbound(sink.addr, kc, &dir.join("inbound-c.log"));
    let relay = Relay::start(addr_b);
    let port = relay.addr.port();
    let (fp_b, fp_c) = (fingerprint(kb), fingerprint(kc));
    assert_ne!(fp_b, fp_c);
    // The default policy (tofu) pins on first contact.
    let run = send(&dir, port, &[]);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(pins(&dir)[0][1], fp_b);
    relay.set_backend(addr_c);
    let file_before = std::fs::read_to_string(known_peers(&dir)).unwrap();

    for policy in ["tofu", "require"] {
        let run = send(&dir, port, &["--policy", policy]);
        // Refused during the handshake, at sendmail's EHLO: nothing of
        // sendmail's but that EHLO reached the server with the new key.
        assert!(
            first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
            "{policy}: {run:#?}"
        );
        assert!(
            run.replies.iter().all(|(c, _)| !c.starts_with("MAIL")),
            "{run:#?}"
        );
        run.assert_not_accepted();
        assert_eq!(pins(&dir).len(), 1);
        assert_eq!(pins(&dir)[0][1], fp_b, "{policy} changed the pin");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(sink.messages().len(), 1);

    let run = send(&dir, port, &["--policy", "may"]);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(sink.wait_for(2).len(), 2);
    let warns = log_lines(&dir, "warn");
    assert!(
        warns
            .iter()
            .any(|l| l.contains("key changed") && l.contains(&fp_c) && l.contains(&fp_b)),
        "{warns:?}"
    );
    assert!(
        log_lines(&dir, "info")
            .iter()
            .any(|l| l.contains("delivery dest=[127.0.0.1]") && l.contains("verdict=warn")),
        "{}",
        mailer_log(&dir)
    );
    // may never re-pins: the file is as it was (same day, same last-seen).
    assert_eq!(
        std::fs::read_to_string(known_peers(&dir)).unwrap(),
        file_before
    );
    assert_eq!(pins(&dir)[0][1], fp_b);

    // So tofu still defers the new key...
    let run = send(&dir, port, &["--policy", "tofu"]);
    assert!(
        first_line(run.reply("EHLO")).starts_with("421 4.7.5"),
        "{run:#?}"
    );
    // ...until the operator forgets the old one; then it is pinned.
    let kp = known_peers(&dir);
    let (st, out, err) = run_command(&[
        "--known-peers",
        kp.to_str().unwrap(),
        "--forget",
        "[127.0.0.1]",
    ]);
    assert!(st.success(), "{st} {out} {err}");
    let run = send(&dir, port, &["--policy", "tofu"]);
    assert!(run.delivered(), "{run:#?}");
    let p = pins(&dir);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0][..3], ["[127.0.0.1]", fp_c.as_str(), "RSA-BLOWFISH"]);
}

// ---------------------------------------------------------------------------
// 6. Failures
// ---------------------------------------------------------------------------

#[test]
fn remote_down_keeps_the_message_queued() {
    let dir = scratch("outb-down");
    let ports = reserve(&[], &[lo(DOWN)]);
    let run = run_mailer(
        &args(&dir, ports.port, &[]),
        "[127.0.0.2]",
        SHORT_BODY,
        &drive(),
    );
    assert!(run.greeting.starts_with("421 4.4.1"), "{run:#?}");
    assert_eq!(run.reply("QUIT"), Some("221 2.0.0 Bye\r\n"));
    assert!(log_lines(&dir, "warn")
        .iter()
        .any(|l| l.contains("127.0.0.2")));
}

/// A message of `lines` short lines, as sendmail sends it.
fn body_of(lines: usize) -> Vec<u8> {
    let mut b = b"Subject: lines\r\n\r\n".to_vec();
    for i in 0..lines {
        b.extend_from_slice(format!("line {i:05} of the message\r\n").as_bytes());
    }
    b
}

#[test]
fn remote_cut_mid_data_keeps_the_message_queued() {
    let dir = scratch("outb-cut");
    // A cut early (the mailer is still copying; a message of a few hundred
    // lines: see the ignored test below for a big one), and a cut after the
    // last data line, before the final dot's reply.
    let small = body_of(400);
    let big = hard_body();
    for (body, cut) in [(&small, 1000), (&big, big.len())] {
        let smtpd = Smtpd::with(Script {
            cut_data_after: Some(cut),
            ..Script::default()
        });
        let run = send_as(&dir, smtpd.addr.port(), &[], body, &drive());
        assert_eq!(first_line(run.reply("DATA")), "354 go ahead");
        let dot = first_line(run.reply("."));
        assert!(
            dot.is_empty() || dot.starts_with("4"),
            "cut {cut}: {run:#?}"
        );
        run.assert_not_accepted();
        assert!(smtpd.messages().is_empty());
        assert_eq!(smtpd.log.lock().unwrap().partial, 1);
    }
}

/// After the remote fails mid-DATA the mailer answers every remaining line
/// of the message with its own `421 4.4.1` (finish_with_sendmail reads the
/// data as commands). sendmail writes the whole message before it reads a
/// reply, so once those replies fill the stdout pipe the mailer blocks
/// writing them, stops reading, and sendmail blocks writing: both hang
/// until sendmail's data timeout (an hour by default).
#[test]
fn remote_failure_mid_data_does_not_deadlock_sendmail() {
    let dir = scratch("outb-cut-big");
    let smtpd = Smtpd::with(Script {
        cut_data_after: Some(1000),
        ..Script::default()
    });
    // 2 MB: more than the pipes and the mailer's read-ahead hold.
    let run = send_as(&dir, smtpd.addr.port(), &[], &body_of(70_000), &drive());
    assert!(first_line(run.reply(".")).starts_with("421 4."), "{run:#?}");
    // Exactly one reply to the message, then the one to QUIT.
    assert_eq!(run.reply("QUIT"), Some("221 2.0.0 Bye\r\n"), "{run:#?}");
    assert_eq!(run.trailing, "");
    assert!(smtpd.messages().is_empty());
}

#[test]
fn remote_silent_after_the_message_keeps_it_queued() {
    let dir = scratch("outb-stall");
    let smtpd = Smtpd::with(Script {
        stall_at_dot: Some(Duration::from_secs(4)),
        ..Script::default()
    });
    let t = Instant::now();
    let run = send(&dir, smtpd.addr.port(), &["--timeout", "1"]);
    assert!(first_line(run.reply(".")).starts_with("421 4."), "{run:#?}");
    run.assert_not_accepted();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

#[test]
fn remote_cut_mid_data_behind_blackpony_keeps_the_message_queued() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-cut-enc");
    let body = hard_body();
    for cut in [1000, body.len()] {
        let smtpd = Smtpd::with(Script {
            cut_data_after: Some(cut),
            ..Script::default()
        });
        let (_inbound, addr) = inbound(smtpd.addr, kb, &dir.join("inbound.log"));
        let run = send_as(&dir, addr.port(), &[], &body, &drive());
        assert_eq!(first_line(run.reply("DATA")), "354 go ahead", "{run:#?}");
        let dot = first_line(run.reply("."));
        assert!(
            dot.is_empty() || dot.starts_with("4"),
            "cut {cut}: {run:#?}"
        );
        run.assert_not_accepted();
        assert!(smtpd.messages().is_empty());
    }
}

#[test]
fn two_messages_in_one_encrypted_session() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-two");
    let sink = Sink::start();
    let (_inbound, addr) = inbound(sink.addr, kb, &dir.join("inbound.log"));
    let body = hard_body();
    let d = Drive {
        messages: 2,
        pipelining: true,
        ..drive()
    };
    let run = send_as(&dir, addr.port(), &["--policy", "require"], &body, &d);
    assert_eq!(
        run.replies_to("."),
        ["250 2.0.0 accepted\r\n", "250 2.0.0 accepted\r\n"],
        "{run:#?}"
    );
    let msgs = sink.wait_for(2);
    assert_eq!(msgs.len(), 2);
    assert!(msgs.iter().all(|m| m.data == body));
    assert_eq!(pins(&dir).len(), 1);
}

#[test]
fn ipv6_address_literal() {
    let dir = scratch("outb-ipv6");
    let smtpd = Smtpd::on(
        std::net::TcpListener::bind("[::1]:0").unwrap(),
        Script::default(),
    );
    let run = run_mailer(
        &args(&dir, smtpd.addr.port(), &[]),
        "[IPv6:::1]",
        SHORT_BODY,
        &drive(),
    );
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(smtpd.messages()[0].data, SHORT_BODY);
}

#[test]
fn sendmail_dying_mid_data_delivers_nothing() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-sendmail-dies");
    let body = hard_body();
    let d = Drive {
        die_mid_data: Some(50_000),
        ..drive()
    };
    // Plain.
    let sink = Sink::start();
    let run = send_as(&dir, sink.addr.port(), &[], &body, &d);
    assert_eq!(first_line(run.reply("DATA")), "354 go ahead", "{run:#?}");
    wait_until("the sink sees the cut", || {
        sink.log.lock().unwrap().partial == 1
    });
    assert!(sink.messages().is_empty());
    // Encrypted.
    let sink = Sink::start();
    let (_inbound, addr) = inbound(sink.addr, kb, &dir.join("inbound.log"));
    let run = send_as(&dir, addr.port(), &[], &body, &d);
    assert_eq!(first_line(run.reply("DATA")), "354 go ahead", "{run:#?}");
    wait_until("the sink sees the cut", || {
        sink.log.lock().unwrap().partial == 1
    });
    assert!(sink.messages().is_empty());
}

/// A server that answers `cmd` ("RCPT", "DATA" or the final ".") with `reply`.
fn refusing(cmd: &str, reply: &str) -> Script {
    let r = Some(reply.to_string());
    match cmd {
        "RCPT" => Script {
            rcpt_reply: r,
            ..Script::default()
        },
        "DATA" => Script {
            data_reply: r,
            ..Script::default()
        },
        _ => Script {
            dot_reply: r,
            ..Script::default()
        },
    }
}

#[test]
fn remote_refusals_reach_sendmail_exactly() {
    let dir = scratch("outb-refusals");
    let cases = [
        (
            "RCPT",
            "550-5.1.1 no such user here\r\n550 5.1.1 try elsewhere",
        ),
        ("RCPT", "450 4.2.1 mailbox busy"),
        ("RCPT", "550 5.1.1 no such user"),
        ("DATA", "451 4.3.0 not now"),
        ("DATA", "554 5.5.0 no valid recipients"),
        (".", "452 4.3.1 insufficient storage"),
        (".", "554 5.6.0 content rejected"),
    ];
    for (cmd, reply) in cases {
        let smtpd = Smtpd::with(refusing(cmd, reply));
        let run = send(&dir, smtpd.addr.port(), &[]);
        assert_eq!(run.reply(cmd), Some(&*format!("{reply}\r\n")), "{run:#?}");
        run.assert_not_accepted();
        assert!(smtpd.messages().is_empty());
    }
}

#[test]
fn remote_refusals_reach_sendmail_exactly_when_encrypted() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-refusals-enc");
    for (cmd, reply) in [
        ("RCPT", "550 5.1.1 no such user"),
        (".", "451 4.3.0 try again later"),
    ] {
        let sink = Sink::with(refusing(cmd, reply));
        let (_inbound, addr) = inbound(sink.addr, kb, &dir.join("inbound.log"));
        let run = send(&dir, addr.port(), &[]);
        assert_eq!(run.reply(cmd), Some(&*format!("{reply}\r\n")), "{run:#?}");
        run.assert_not_accepted();
        assert!(sink.messages().is_empty());
        assert!(mailer_log(&dir).contains("suite=RSA-BLOWFISH"));
    }
}

#[test]
fn forged_record_is_a_4xx_and_delivers_nothing() {
    let (_, kb) = test_keys();
    let dir = scratch("outb-forged");
    let sink = Sink::start();
    let (_inbound, addr) = inbound(sink.addr, kb, &dir.join("inbound.log"));
    let relay = Relay::start(addr);
    // Records after the handshake: 0 answers the inner EHLO, 1 MAIL, 2 RCPT, 3 DATA.
    for (n, cmd) in [(0, "EHLO"), (1, "MAIL"), (3, "DATA")] {
        relay.set_tamper(Tamper::Record(Attack::FlipToClient, n));
        let run = send(&dir, relay.addr.port(), &[]);
        assert!(
            first_line(run.reply(cmd)).starts_with("421 4."),
            "record {n}: {run:#?}"
        );
        run.assert_not_accepted();
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.messages().is_empty());
    assert!(pins(&dir).is_empty(), "a forged session pinned the peer");
}

#[test]
fn failed_handshake_is_not_retried_in_plain() {
    let dir = scratch("outb-bad-handshake");
    let go = b"220 2.0.0 Go ahead with RSA-BLOWFISH\r\n".to_vec();
    let garbage: [Vec<u8>; 3] = [
        [&go[..], b"this is no ServerHello at all\r\n"].concat(),
        // The right message type and a plausible length, nonsense inside.
        [&go[..], b"\x01\x00\x40", &[0x5a; 64]].concat(),
        b"454 4.7.0 encryption not available right now\r\n".to_vec(),
    ];
    for reply in garbage {
        let smtpd = Smtpd::with(Script {
            ehlo: Some(vec!["PIPELINING".into(), "XBLACKPONY RSA-BLOWFISH".into()]),
            xblackpony: Some(reply),
            ..Script::default()
        });
        for policy in ["may", "tofu"] {
            let run = send(&dir, smtpd.addr.port(), &["--policy", policy]);
            let ehlo = first_line(run.reply("EHLO"));
            assert!(ehlo.starts_with("421 4."), "{policy}: {run:#?}");
            assert!(run.reply("MAIL").is_none_or(|r| r.starts_with('4')));
            run.assert_not_accepted();
        }
        assert_eq!(smtpd.connections(), 2, "the mailer came back (in plain?)");
        let cmds = smtpd.commands();
        assert!(
            !cmds
                .iter()
                .any(|c| c.starts_with("MAIL") || c.starts_with("RCPT") || c == "DATA"),
            "{cmds:?}"
        );
        assert!(smtpd.messages().is_empty());
    }
    assert!(
        mailer_log(&dir).contains("handshake failed"),
        "{}",
        mailer_log(&dir)
    );
}

// ---------------------------------------------------------------------------
// 7. Configuration errors
// ---------------------------------------------------------------------------

#[test]
fn configuration_errors_greet_421_and_exit_78() {
    let (ka, _) = test_keys();
    let dir = scratch("outb-config");
    let open_key = dir.join("open.key");
    std::fs::copy(ka, &open_key).unwrap();
    std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let missing = dir.join("missing.key");
    let base = |key: &Path| -> Vec<String> {
        vec![
            "--key".into(),
            key.to_str().unwrap().into(),
            "--known-peers".into(),
            known_peers(&dir).to_str().unwrap().into(),
            "--log".into(),
            dir.join("mailer.log").to_str().unwrap().into(),
        ]
    };
    let with = |key: &Path, extra: &[&str]| -> Vec<String> {
        let mut v = base(key);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("missing key", base(&missing), "[127.0.0.1]"),
        ("key mode 0644", base(&open_key), "[127.0.0.1]"),
        ("no HOST", base(ka), ""),
        (
            "bad policy",
            with(ka, &["--policy", "sometimes"]),
            "[127.0.0.1]",
        ),
        (
            "missing policy file",
            with(ka, &["--policy-file", dir.join("nope").to_str().unwrap()]),
            "[127.0.0.1]",
        ),
        (
            "bad --dns",
            with(ka, &["--dns", "localhost"]),
            "example.test",
        ),
        ("bad --port", with(ka, &["--port", "0"]), "[127.0.0.1]"),
    ];
    for (what, a, dest) in cases {
        let run = run_mailer(&a, dest, SHORT_BODY, &drive());
        assert!(run.greeting.starts_with("421 4.3.5"), "{what}: {run:#?}");
        assert_eq!(run.status.code(), Some(78), "{what}: {run:#?}");
    }
    let errors = log_lines(&dir, "error");
    assert!(
        errors.iter().any(|l| l.contains("missing.key")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("open.key") && l.contains("chmod 600")),
        "{errors:?}"
    );
}
