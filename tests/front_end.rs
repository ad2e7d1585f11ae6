//! What blackpony in front of the MTA refuses on the client's behalf, over
//! real sockets against the test MTA: XCLIENT and XFORWARD (only the MTA's
//! trusted proxy may send them) and XBLACKPONY anywhere but right after EHLO.

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
