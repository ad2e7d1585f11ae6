//! Handshake v2 (NOISE-25519-CHACHAPOLY-SHA256) through both real binaries
//! over real sockets: XX on first contact, IK (inner EHLO in the first
//! flight) once the mailer has the server's certificate cached, a stale
//! cached key starting over with XX, and no RSA private key on the path;
//! then the attacks: every handshake message tampered, truncated or taken
//! from another session, bad certificates either way, a wrong pin, and a
//! replayed IK first flight.

mod support;

use std::fs;

use support::*;

const V2: &str = "NOISE-25519-CHACHAPOLY-SHA256";

fn s(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A blackpony offering the default (v2) with `key`, in front of a fresh
/// test MTA; its log at `log`.
fn v2_server(key: &std::path::Path, log: &std::path::Path) -> (Sink, Daemon, std::net::SocketAddr) {
    let sink = Sink::start();
    let (d, addr) = start_inbound(sink.addr, &["--key", key.to_str().unwrap()], log);
    (sink, d, addr)
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
    let (sink, _d, inbound) = v2_server(kb, &dir.join("in.log"));
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
        let (sink, _d, inbound) = v2_server(kb, &dir.join(format!("in-{msg:?}.log")));
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
    let (sink, _d, inbound) = v2_server(kb, &dir.join("in.log"));
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

/// Under --policy tofu, a server whose RSA fingerprint is not the pinned
/// one: deferred at EHLO (4xx, exit 75), and after its XBLACKPONY line the
/// mailer sent nothing (no msg3: the refused server learns nothing more).
#[test]
fn wrong_pin_under_tofu_defers_at_ehlo_with_nothing_sent() {
    let (ka, kb) = test_keys();
    let dir = scratch("v2-wrong-pin");
    let (sink, _d, inbound) = v2_server(kb, &dir.join("in.log"));
    let relay = Relay::start(inbound);
    // The pin names another key (a's) for this host.
    let known = dir.join("p.known_peers");
    fs::write(
        &known,
        format!(
            "[127.0.0.1] {} {V2} 2026-01-01 2026-01-01\n",
            fingerprint(ka)
        ),
    )
    .unwrap();
    let args = v2_args(relay.addr.port(), &dir, "p", &["--policy", "tofu"]);
    let run = run_mailer(&args, "[127.0.0.1]", HS_BODY, &Drive::default());
    assert_eq!(run.status.code(), Some(75), "{run:#?}");
    assert!(run.reply("EHLO").unwrap().starts_with('4'), "{run:#?}");
    run.assert_not_accepted();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(sink.messages().is_empty());
    assert!(!sink.commands().iter().any(|c| c.starts_with("MAIL")));
    let cap = relay.captures().pop().unwrap();
    let at = cap
        .up
        .windows(11)
        .position(|w| w == b"XBLACKPONY ")
        .expect("the switch was asked for");
    let after = &cap.up[at..];
    let rest = &after[after.iter().position(|&b| b == b'\n').unwrap() + 1..];
    assert!(
        rest.is_empty() || rest == b"QUIT\r\n",
        "sent after the refused server's msg2: {:?}",
        String::from_utf8_lossy(rest)
    );
    // The pin is unchanged.
    assert!(fs::read_to_string(&known)
        .unwrap()
        .contains(&fingerprint(ka)));
}

/// A recorded IK first flight (outer EHLO, then the IK command line) and
/// the records after it, replayed on a new connection to the server: it
/// answers the inner EHLO inside msg2 and relays nothing else to the MTA
/// (the replayed records do not open under the new session's keys).
#[test]
fn replayed_ik_first_flight_gets_only_the_ehlo_answered() {
    use std::io::{BufRead, BufReader, Read, Write};
    let (_, kb) = test_keys();
    let dir = scratch("v2-ik-replay");
    let (sink, _d, inbound) = v2_server(kb, &dir.join("in.log"));
    let relay = Relay::start(inbound);
    let args = v2_args(relay.addr.port(), &dir, "r", &[]);
    for i in 0..2 {
        let run = run_mailer(&args, "[127.0.0.1]", HS_BODY, &Drive::default());
        assert!(run.delivered(), "{i}: {run:#?}");
    }
    assert_eq!(sink.wait_for(2).len(), 2);
    let cap = relay.captures().pop().unwrap();
    let ik = format!("XBLACKPONY {V2} IK ");
    let at = cap
        .up
        .windows(ik.len())
        .position(|w| w == ik.as_bytes())
        .expect("IK used");
    let end = at + cap.up[at..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let (plain, records) = (&cap.up[..end], &cap.up[end..]);
    let before = sink.commands().len();

    let s = std::net::TcpStream::connect(inbound).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("220"), "{line}");
    // The recorded lines one by one, each answered before the next.
    for l in plain.split_inclusive(|&b| b == b'\n') {
        w.write_all(l).unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
    }
    assert!(
        line.starts_with("220 2.0.0 Go ahead"),
        "the replayed IK msg1 was taken: {line}"
    );
    let mut head = [0u8; 3];
    r.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 4, "msg2 follows");
    let mut msg2 = vec![0u8; u16::from_be_bytes([head[1], head[2]]).into()];
    r.read_exact(&mut msg2).unwrap();
    // The recorded records (certificate, MAIL, RCPT, DATA, ...): the server
    // cannot open them under this session's keys and closes.
    let _ = w.write_all(records);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The MTA saw the outer EHLO and the inner one (answered in msg2), and
    // nothing after them: no MAIL, no RCPT, no DATA.
    let cmds = sink.commands();
    assert_eq!(
        cmds[before..],
        ["EHLO sender.test", "EHLO sender.test"],
        "the replay reached the MTA: {cmds:?}"
    );
    assert_eq!(sink.messages().len(), 2);
}

/// `dir/<name>` a copy of the RSA key `key` with its static key, and a
/// certificate file holding `cert` (the format of src/static_key.rs).
fn key_with_cert(
    dir: &std::path::Path,
    key: &std::path::Path,
    name: &str,
    cert: &[u8],
) -> std::path::PathBuf {
    use base64ct::{Base64, Encoding};
    use blackpony::static_key::{paths_for, CERT_HEADER};
    let k = dir.join(name);
    fs::copy(key, &k).unwrap();
    let (static_key, cert_file) = paths_for(&k);
    fs::copy(paths_for(key).0, static_key).unwrap();
    fs::write(
        cert_file,
        format!("{CERT_HEADER} {}\n", Base64::encode_string(cert)),
    )
    .unwrap();
    k
}

/// Certificates a peer must refuse, for the static key beside `key`:
/// expired, not yet valid, and one whose signature is another RSA key's
/// (issued by `other` over `key`'s SPKI and static key).
fn bad_certs(key: &std::path::Path, other: &std::path::Path) -> Vec<(&'static str, Vec<u8>)> {
    use blackpony::keys::HostKey;
    const DAY: u64 = 86_400;
    let now = blackpony::clock::now_unix();
    let host = HostKey::load(key).unwrap();
    let static_public = blackpony::static_key::load(key).unwrap().public;
    let issue = |nb, na| blackpony::cert::issue(&host, &static_public, nb, na);
    // Signed by `other` over its own SPKI; then `key`'s SPKI put in its place.
    let mut foreign = blackpony::cert::issue(
        &HostKey::load(other).unwrap(),
        &static_public,
        now - DAY,
        now + 90 * DAY,
    );
    let spki = host.public_der();
    assert_eq!(
        u16::from_be_bytes([foreign[72], foreign[73]]) as usize,
        spki.len()
    );
    foreign[74..74 + spki.len()].copy_from_slice(spki);
    vec![
        ("expired", issue(now - 100 * DAY, now - 10 * DAY)),
        ("not-yet-valid", issue(now + 10 * DAY, now + 100 * DAY)),
        ("foreign", foreign),
    ]
}

/// A server presenting an expired, a not-yet-valid or a foreign certificate
/// (in msg2): the mailer refuses it and defers; nothing reaches the MTA.
#[test]
fn server_certificate_expired_not_yet_valid_or_foreign_is_refused() {
    let (ka, kb) = test_keys();
    let dir = scratch("v2-bad-server-cert");
    for (what, cert) in bad_certs(kb, ka) {
        let k = key_with_cert(&dir, kb, &format!("{what}.key"), &cert);
        let (sink, _d, inbound) = v2_server(&k, &dir.join(format!("{what}.log")));
        let relay = Relay::start(inbound);
        let run = run_mailer(
            &v2_args(relay.addr.port(), &dir, what, &[]),
            "[127.0.0.1]",
            HS_BODY,
            &Drive::default(),
        );
        assert_deferred_never_plain(what, &run, &sink, &relay);
        let log = fs::read_to_string(dir.join(format!("{what}.mailer.log"))).unwrap();
        let why = match what {
            "expired" => "has expired",
            "not-yet-valid" => "not valid yet",
            _ => "signature does not verify",
        };
        assert!(
            log.contains("peer certificate refused") && log.contains(why),
            "{what}: {log}"
        );
    }
}

/// A mailer presenting such a certificate (in msg3): the server refuses
/// it; nothing reaches the MTA and the mailer defers.
#[test]
fn client_certificate_expired_not_yet_valid_or_foreign_is_refused() {
    let (ka, kb) = test_keys();
    let dir = scratch("v2-bad-client-cert");
    let (sink, _d, inbound) = v2_server(kb, &dir.join("in.log"));
    let relay = Relay::start(inbound);
    for (what, cert) in bad_certs(ka, kb) {
        let k = key_with_cert(&dir, ka, &format!("{what}.key"), &cert);
        let args = mailer_args(relay.addr.port(), &k, &dir, what, &[]);
        let run = run_mailer(&args, "[127.0.0.1]", HS_BODY, &Drive::default());
        assert_deferred_never_plain(what, &run, &sink, &relay);
    }
    // The server's log says why (written as each session ends).
    for why in [
        "has expired",
        "is not valid yet",
        "signature does not verify",
    ] {
        wait_log(
            &dir.join("in.log"),
            &format!("peer certificate refused: static-key certificate {why}"),
        );
    }
}
