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
