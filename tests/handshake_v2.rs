//! Handshake v2 (NOISE-25519-CHACHAPOLY-SHA256) through both real binaries
//! over real sockets: XX on first contact, IK (inner EHLO in the first
//! flight) once the mailer has the server's certificate cached, a stale
//! cached key starting over with XX, and no RSA private key on the path.

mod support;

use std::fs;

use support::*;

const V2: &str = "NOISE-25519-CHACHAPOLY-SHA256";

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A key pair of our own (RSA + static + certificate) in `dir`.
fn new_key(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let k = dir.join(name);
    let _ = fs::remove_file(&k);
    let out = std::process::Command::new(bin("blackpony"))
        .args(["--generate-key", "--key", k.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(dir.join(format!("{name}.x25519")).exists());
    assert!(dir.join(format!("{name}.cert")).exists());
    k
}

#[test]
fn xx_then_ik_then_stale_key_falls_back_to_xx_without_rsa_keys() {
    let dir = scratch("v2-e2e");
    let (ka, kb) = (new_key(&dir, "a.key"), new_key(&dir, "b.key"));
    let sink = Sink::start();
    let ilog = dir.join("inbound.log");
    let (inbound, addr) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap(), "--suites", V2],
        &ilog,
    );
    // The RSA private keys go away: v2 must not need them per connection.
    fs::rename(&ka, dir.join("a.key.away")).unwrap();
    fs::rename(&kb, dir.join("b.key.away")).unwrap();
    let known = dir.join("known_peers");
    let mlog = dir.join("mailer.log");
    let port = addr.port().to_string();
    let args = s(&[
        "--port",
        &port,
        "--key",
        ka.to_str().unwrap(),
        "--suites",
        V2,
        "--known-peers",
        known.to_str().unwrap(),
        "--log",
        mlog.to_str().unwrap(),
    ]);
    let deliver = |body: &str| run_mailer(&args, "[127.0.0.1]", body.as_bytes(), &Drive::default());

    // First contact: XX.
    let run = deliver("Subject: one\r\n\r\nfirst\r\n");
    assert!(run.delivered(), "{run:#?}");
    let log = fs::read_to_string(&mlog).unwrap();
    assert!(log.contains(&format!("suite={V2}")), "{log}");
    let certs = fs::read_to_string(dir.join("known_peers.certs")).unwrap();
    assert!(
        certs.starts_with("[127.0.0.1] "),
        "the server's certificate is cached: {certs}"
    );

    // Known peer: IK, the inner EHLO answered inside the handshake.
    let run = deliver("Subject: two\r\n\r\nsecond\r\n");
    assert!(run.delivered(), "{run:#?}");
    assert!(run.reply("EHLO").unwrap().starts_with("250"), "{run:#?}");
    let log = fs::read_to_string(&mlog).unwrap();
    assert!(!log.contains("starting over with XX"), "{log}");
    let msgs = sink.wait_for(2);
    assert_eq!(msgs[1].data, b"Subject: two\r\n\r\nsecond\r\n");

    // The server renews its static key: the cached one is stale. The next
    // delivery starts over with XX on the same connection, still encrypted.
    drop(inbound);
    fs::rename(dir.join("b.key.away"), &kb).unwrap();
    fs::remove_file(dir.join("b.key.x25519")).unwrap();
    let out = std::process::Command::new(bin("blackpony"))
        .args(["--renew-cert", "--key", kb.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (_inbound2, addr2) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap(), "--suites", V2],
        &dir.join("inbound2.log"),
    );
    let port2 = addr2.port().to_string();
    let args2: Vec<String> = args
        .iter()
        .map(|a| if *a == port { port2.clone() } else { a.clone() })
        .collect();
    let run = run_mailer(
        &args2,
        "[127.0.0.1]",
        b"Subject: three\r\n\r\nthird\r\n",
        &Drive::default(),
    );
    assert!(run.delivered(), "{run:#?}");
    let log = fs::read_to_string(&mlog).unwrap();
    assert!(log.contains("starting over with XX"), "{log}");
    assert_eq!(log.matches(&format!("suite={V2}")).count(), 3, "{log}");
    assert_eq!(sink.wait_for(3).len(), 3);
}

#[test]
fn v2_command_lines_fit_rfc_5321() {
    use blackpony::suite::noise_suite::IK_MAX_EHLO;
    // XX: the suite name and 44 base64 characters of msg1 (e).
    let xx = format!("XBLACKPONY {V2} XX {}\r\n", "A".repeat(44));
    assert!(xx.len() <= 512, "{}", xx.len());
    // IK: e (32) + encrypted s (48) + the EHLO line + tag (16); longer EHLO
    // lines than IK_MAX_EHLO go through XX.
    let line = |ehlo: usize| {
        let msg1: usize = 32 + 48 + ehlo + 16;
        format!(
            "XBLACKPONY {V2} IK {}\r\n",
            "A".repeat(msg1.div_ceil(3) * 4)
        )
        .len()
    };
    assert!(line(IK_MAX_EHLO) <= 512, "{}", line(IK_MAX_EHLO));
    assert!(
        line(IK_MAX_EHLO + 3) > 512,
        "the limit is not needlessly low"
    );
}

// ------------------------------------------------------------ attacks on v2

/// The mailer's arguments for a delivery to `port`, with its files named
/// `<name>.*` in `dir` (a fresh name: fresh known_peers, so XX).
fn v2_args(port: u16, dir: &std::path::Path, name: &str, extra: &[&str]) -> Vec<String> {
    let (ka, _) = test_keys();
    mailer_args(port, ka, dir, name, extra)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A delivery that must have been deferred: exit 75 and a 4xx to sendmail,
/// nothing accepted, the MTA behind the server got no MAIL, and no
/// connection the relay saw carried the envelope or the message in clear.
#[track_caller]
fn assert_deferred_never_plain(what: &str, run: &Run, sink: &Sink, relay: &Relay) {
    assert_eq!(run.status.code(), Some(75), "{what}: {run:#?}");
    assert!(
        run.replies.iter().any(|(_, r)| r.starts_with('4')),
        "{what}: sendmail must get a 4xx: {run:#?}"
    );
    run.assert_not_accepted();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(sink.messages().is_empty(), "{what}: delivered");
    let cmds = sink.commands();
    assert!(
        !cmds
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("MAIL")),
        "{what}: the MTA got a MAIL: {cmds:?}"
    );
    for cap in relay.captures() {
        for secret in [&b"MAIL FROM"[..], b"RCPT TO", b"Subject: hs"] {
            assert!(!contains(&cap.up, secret), "{what}: {secret:?} in clear");
        }
    }
}

const HS_BODY: &[u8] = b"Subject: hs\r\n\r\nhandshake attack\r\n";

/// Every v2 handshake message (msg1 in the command, msg2, msg3) with one bit
/// flipped or its last byte cut, on first contact (XX): the mailer defers,
/// nothing reaches the MTA, never a plain retry.
#[test]
fn tampered_or_truncated_xx_messages_defer_and_never_go_plain() {
    let (_, kb) = test_keys();
    let dir = scratch("v2-hs-tamper");
    let sink = Sink::start();
    let (_d, inbound) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap()],
        &dir.join("in.log"),
    );
    for msg in [Msg::One, Msg::Two, Msg::Three] {
        for attack in [HsAttack::Flip, HsAttack::Truncate] {
            let what = format!("{msg:?}/{attack:?}");
            let relay = Relay::with(inbound, Tamper::Handshake(msg, attack));
            let name = format!("{msg:?}-{attack:?}");
            let args = v2_args(relay.addr.port(), &dir, &name, &[]);
            let run = run_mailer(&args, "[127.0.0.1]", HS_BODY, &Drive::default());
            let log = relay.records();
            assert!(log.tampered, "{what}: the relay never saw the message");
            assert_eq!(
                (log.suite.as_str(), log.pattern.as_str()),
                (V2, "XX"),
                "{what}"
            );
            assert_deferred_never_plain(&what, &run, &sink, &relay);
        }
    }
}

/// Each message of the previous connection's handshake put in place of this
/// connection's (msgs out of their session's order): the first delivery goes
/// through, the second is deferred, never plain.
#[test]
fn stale_xx_messages_from_another_session_defer() {
    let (_, kb) = test_keys();
    let dir = scratch("v2-hs-stale");
    for msg in [Msg::One, Msg::Two, Msg::Three] {
        let sink = Sink::start();
        let (_d, inbound) = start_inbound(
            sink.addr,
            &["--key", kb.to_str().unwrap()],
            &dir.join(format!("in-{msg:?}.log")),
        );
        let relay = Relay::with(inbound, Tamper::Handshake(msg, HsAttack::Stale));
        let first = v2_args(relay.addr.port(), &dir, &format!("{msg:?}-1"), &[]);
        let run = run_mailer(
            &first,
            "[127.0.0.1]",
            b"Subject: one\r\n\r\nok\r\n",
            &Drive::default(),
        );
        assert!(run.delivered(), "{msg:?}: {run:#?}");
        assert!(!relay.records().tampered);
        assert_eq!(sink.wait_for(1).len(), 1);
        let second = v2_args(relay.addr.port(), &dir, &format!("{msg:?}-2"), &[]);
        let run = run_mailer(&second, "[127.0.0.1]", HS_BODY, &Drive::default());
        assert!(relay.records().tampered, "{msg:?}");
        assert_eq!(run.status.code(), Some(75), "{msg:?}: {run:#?}");
        run.assert_not_accepted();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(
            sink.messages().len(),
            1,
            "{msg:?}: the second was delivered"
        );
        let mails = sink
            .commands()
            .iter()
            .filter(|c| c.starts_with("MAIL"))
            .count();
        assert_eq!(mails, 1, "{msg:?}: {:?}", sink.commands());
        let caps = relay.captures();
        assert!(
            !contains(&caps[1].up, b"MAIL FROM"),
            "{msg:?}: MAIL in clear"
        );
    }
}

/// To a known peer (IK): msg2 tampered or truncated defers, never plain; a
/// tampered IK msg1 is what a stale cached key looks like to the server
/// (454), so the mailer starts over with XX on the same connection and
/// delivers encrypted, never plain.
#[test]
fn ik_messages_tampered() {
    let (_, kb) = test_keys();
    let dir = scratch("v2-hs-ik");
    let sink = Sink::start();
    let (_d, inbound) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap()],
        &dir.join("in.log"),
    );
    let relay = Relay::start(inbound);
    let mut n = 0;
    for attack in [HsAttack::Flip, HsAttack::Truncate] {
        let what = format!("IK msg2 {attack:?}");
        let name = format!("ik2-{attack:?}");
        let args = v2_args(relay.addr.port(), &dir, &name, &[]);
        relay.set_tamper(Tamper::Nothing);
        // First contact (XX) caches the server's certificate.
        let run = run_mailer(
            &args,
            "[127.0.0.1]",
            b"Subject: prime\r\n\r\nx\r\n",
            &Drive::default(),
        );
        assert!(run.delivered(), "{what}: {run:#?}");
        n += 1;
        assert_eq!(sink.wait_for(n).len(), n);
        relay.set_tamper(Tamper::Handshake(Msg::Two, attack));
        let before = relay.captures().len();
        let run = run_mailer(&args, "[127.0.0.1]", HS_BODY, &Drive::default());
        let log = relay.records();
        assert!(log.tampered && log.pattern == "IK", "{what}: {log:?}");
        assert_eq!(run.status.code(), Some(75), "{what}: {run:#?}");
        run.assert_not_accepted();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(sink.messages().len(), n, "{what}: delivered");
        for cap in &relay.captures()[before..] {
            assert!(!contains(&cap.up, b"MAIL FROM"), "{what}: MAIL in clear");
        }
    }
    // IK msg1 tampered: 454, XX on the same connection, delivered encrypted.
    let args = v2_args(relay.addr.port(), &dir, "ik1", &[]);
    relay.set_tamper(Tamper::Nothing);
    assert!(run_mailer(
        &args,
        "[127.0.0.1]",
        b"Subject: prime\r\n\r\nx\r\n",
        &Drive::default()
    )
    .delivered());
    n += 1;
    assert_eq!(sink.wait_for(n).len(), n);
    relay.set_tamper(Tamper::Handshake(Msg::One, HsAttack::Flip));
    let before = relay.captures().len();
    let run = run_mailer(&args, "[127.0.0.1]", HS_BODY, &Drive::default());
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(sink.wait_for(n + 1)[n].data, HS_BODY);
    let caps = relay.captures();
    assert_eq!(caps.len(), before + 1, "one connection");
    let up = &caps[before].up;
    assert!(contains(up, format!("XBLACKPONY {V2} IK ").as_bytes()));
    assert!(
        contains(up, format!("XBLACKPONY {V2} XX ").as_bytes()),
        "XX on the same connection"
    );
    assert!(contains(&caps[before].down, b"454 4.7.0"));
    assert!(!contains(up, b"MAIL FROM") && !contains(up, b"Subject: hs"));
}
