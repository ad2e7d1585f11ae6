//! What blackpony in front of the MTA refuses on the client's behalf, over
//! real sockets against the test MTA: XCLIENT and XFORWARD (only the MTA's
//! trusted proxy may send them), XBLACKPONY anywhere but right after EHLO,
//! and a client that talks out of turn (RFC 2920), which the lock-step relay
//! would otherwise hide from the MTA.

mod support;

use support::*;

/// A backend that offers XCLIENT and XFORWARD, as a Postfix that trusts
/// blackpony's address does.
fn backend() -> Smtpd {
    let mut ehlo: Vec<String> = EHLO_LINES.iter().map(|s| s.to_string()).collect();
    ehlo.push("XCLIENT NAME ADDR PROTO HELO".into());
    ehlo.push("XFORWARD NAME ADDR PROTO HELO".into());
    Smtpd::with(Script {
        ehlo: Some(ehlo),
        xclient: Some("220 sink.test ESMTP spoofed".into()),
        ..Script::default()
    })
}

#[test]
fn xclient_and_xforward_are_neither_offered_nor_relayed() {
    let sink = backend();
    let dir = scratch("front-xclient");
    let (_d, addr) = start_inbound(sink.addr, &[], &dir.join("inbound.log"));
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    let (code, text) = c.cmd("EHLO client.test");
    assert_eq!(code, 250);
    assert!(text.contains("PIPELINING"), "{text}");
    assert!(!text.to_ascii_uppercase().contains("XCLIENT"), "{text}");
    assert!(!text.to_ascii_uppercase().contains("XFORWARD"), "{text}");
    for cmd in [
        "XCLIENT ADDR=192.0.2.1",
        "xforward ADDR=192.0.2.1",
        "XClient NAME=x",
    ] {
        assert_eq!(c.cmd(cmd).0, 502, "{cmd}");
    }
    assert_eq!(c.cmd("QUIT").0, 221);
    let seen = sink.commands();
    assert!(
        seen.iter()
            .all(|l| !l.to_ascii_uppercase().starts_with("XCLIENT")
                && !l.to_ascii_uppercase().starts_with("XFORWARD")),
        "the MTA saw {seen:?}"
    );
    assert!(seen.iter().any(|l| l.starts_with("EHLO")), "{seen:?}");
}

#[test]
fn xblackpony_only_right_after_ehlo() {
    let sink = Smtpd::start();
    let dir = scratch("front-order");
    let (_d, addr) = start_inbound(sink.addr, &["--allow-rot"], &dir.join("inbound.log"));
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    assert_eq!(c.cmd("NOOP").0, 250);
    let (code, text) = c.cmd("XBLACKPONY ROT13");
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("must follow EHLO directly"), "{text}");
    // A refused switch keeps the place right after EHLO (a client may try
    // another suite); a new EHLO makes a place again.
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    assert_eq!(c.cmd("XBLACKPONY AES").0, 504);
    assert_eq!(c.cmd("XBLACKPONY ROT13").0, 220);
}

const OUT_OF_TURN: &str = "554 5.5.0 SMTP protocol error";

/// A session up to the point where `early` is sent in one write: `before`
/// is answered command by command first. Returns the client.
fn session(addr: std::net::SocketAddr, before: &[&str]) -> Client {
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    for cmd in before {
        assert!(c.cmd(cmd).0 < 400, "{cmd}");
    }
    c
}

/// After each command that ends a group, bytes the client sends before the
/// reply get the reply (the MTA acted on the command), then 554 and the end
/// of the session: the MTA never sees them, as it would not have taken them.
#[test]
fn talking_before_a_group_ending_reply_is_refused_and_not_relayed() {
    let sink = Smtpd::start();
    let dir = scratch("front-sync");
    let log = dir.join("inbound.log");
    let (_d, addr) = start_inbound(sink.addr, &[], &log);
    let mail = [
        "EHLO client.test",
        "MAIL FROM:<a@x.test>",
        "RCPT TO:<b@y.test>",
    ];
    let tail = "\r\nMAIL FROM:<early@x.test>\r\n";
    let body = "\r\nSubject: early\r\n\r\nbody\r\n.\r\n";
    let chunk = "\r\nbody\r\nMAIL FROM:<early@x.test>\r\n";
    // (answered first, the command, what follows it at once, its reply, the log's name)
    let cases: [(&[&str], &str, &str, u16, &str); 8] = [
        (&[], "EHLO client.test", tail, 250, "EHLO"),
        (&[], "HELO client.test", tail, 250, "HELO"),
        (&mail[..1], "NOOP", tail, 250, "NOOP"),
        (&mail[..1], "VRFY b", tail, 500, "VRFY"),
        (&mail[..1], "EXPN b", tail, 500, "EXPN"),
        // The CVE-2011-0411 shape: plaintext behind STARTTLS.
        (&mail[..1], "STARTTLS", tail, 500, "STARTTLS"),
        (&mail, "DATA", body, 354, "DATA"),
        (&mail, "BDAT 6 LAST", chunk, 250, "BDAT LAST"),
    ];
    for (before, cmd, early, first, after) in cases {
        let mut c = session(addr, before);
        c.send(&format!("{cmd}{early}"));
        assert_eq!(c.reply().0, first, "{after}");
        let (code, text) = c.reply();
        assert_eq!((code, text.trim_end()), (554, OUT_OF_TURN), "{after}");
        assert!(c.closed(), "{after}: still open");
        wait_log(&log, &format!("improper command pipelining after {after}"));
    }
    let seen = sink.commands();
    assert!(
        !seen.iter().any(|l| l.contains("early")),
        "the MTA saw {seen:?}"
    );
    // Only the BDAT LAST chunk, complete before the early bytes, was accepted.
    let got = sink.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].data, b"body\r\n");
}

/// The smuggling shape: a second transaction right behind the end of the
/// first message's data. sendmail 8.17 and Postfix 3.7 alone take both
/// messages (docs/SECURITY.md 2.5b); through blackpony the first is taken,
/// the rest gets 554 and never reaches the MTA. QUIT alone may follow the dot.
#[test]
fn a_transaction_behind_the_end_of_data_is_refused_but_quit_is_not() {
    let sink = Smtpd::start();
    let dir = scratch("front-sync-dot");
    let (_d, addr) = start_inbound(sink.addr, &[], &dir.join("inbound.log"));
    let mail = [
        "EHLO client.test",
        "MAIL FROM:<a@x.test>",
        "RCPT TO:<b@y.test>",
    ];
    let mut c = session(addr, &mail);
    assert_eq!(c.cmd("DATA").0, 354);
    c.send(
        "first\r\n.\r\nMAIL FROM:<second@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nsecond\r\n.\r\n",
    );
    assert_eq!(c.reply().0, 250);
    let (code, text) = c.reply();
    assert_eq!((code, text.trim_end()), (554, OUT_OF_TURN));
    assert!(c.closed());
    // Legitimate RFC 2920 pipelining passes: a group ending in DATA, the
    // message, and QUIT right behind its dot.
    let mut c = session(addr, &mail[..1]);
    c.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n");
    for want in [250, 250, 250, 354] {
        assert_eq!(c.reply().0, want);
    }
    c.send("third\r\n.\r\nQUIT\r\n");
    assert_eq!(c.reply().0, 250);
    assert_eq!(c.reply().0, 221);
    let got = sink.wait_for(2);
    let bodies: Vec<&[u8]> = got.iter().map(|m| &m.data[..]).collect();
    assert_eq!(bodies, [&b"first\r\n"[..], &b"third\r\n"[..]]);
    assert_eq!(got[1].rcpt_to.len(), 2);
    assert!(!sink.commands().iter().any(|l| l.contains("second")));
}

/// Talking before the greeting (what sendmail's greet_pause refuses) gets
/// 554 instead of the greeting, and the MTA sees no command.
#[test]
fn talking_before_the_greeting_is_refused() {
    let sink = Smtpd::with(Script {
        greet_pause: std::time::Duration::from_millis(300),
        ..Script::default()
    });
    let dir = scratch("front-sync-greet");
    let log = dir.join("inbound.log");
    let (_d, addr) = start_inbound(sink.addr, &[], &log);
    let mut c = Client::connect(addr);
    c.send("EHLO early.test\r\nMAIL FROM:<early@x.test>\r\n");
    let (code, text) = c.reply();
    assert_eq!((code, text.trim_end()), (554, OUT_OF_TURN));
    assert!(c.closed());
    wait_log(&log, "improper command pipelining after greeting");
    assert!(sink.commands().is_empty(), "{:?}", sink.commands());
    // A client that waits is served as before.
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO client.test").0, 250);
    assert_eq!(c.cmd("QUIT").0, 221);
}

/// Core dumps are off in both programs: a dump would hold their keys.
#[test]
fn core_dumps_are_off() {
    let sink = Smtpd::start();
    let dir = scratch("front-core");
    let (d, _addr) = start_inbound(sink.addr, &[], &dir.join("inbound.log"));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.0.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
    // The mailer, held at sendmail's first command.
    let mut child = std::process::Command::new(bin("blackpony-mailer"))
        .args([
            "--port",
            "1",
            "--record",
            "none",
            "--log",
            dir.join("m.log").to_str().unwrap(),
            "[127.0.0.1]",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

/// A private key in a directory others can write is refused with an error
/// that says what to do (they could replace the file); a sticky one is fine.
#[test]
fn key_directory_is_checked() {
    use std::os::unix::fs::PermissionsExt;
    let (ka, _) = test_keys();
    let dir = scratch("front-keyperm");
    let open = dir.join("open");
    std::fs::create_dir_all(&open).unwrap();
    let key = open.join("host.key");
    std::fs::copy(ka, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = std::process::Command::new(bin("blackpony"))
        .args(["--fingerprint", "--key", key.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a key in a 0777 directory was accepted"
    );
    assert!(err.contains("chmod go-w"), "{err}");
    // Sticky, like /tmp: others cannot replace our file.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = std::process::Command::new(bin("blackpony"))
        .args(["--fingerprint", "--key", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
}
