//! The two real binaries against each other and a real SMTP server on
//! loopback: blackpony-mailer (driven over its pipes as sendmail drives it)
//! -> blackpony --listen -> test sink.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::*;

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Deliver `body` with blackpony-mailer driven as sendmail drives it.
fn deliver(args: &[&str], body: &str) -> Run {
    run_mailer(
        &strings(args),
        "[127.0.0.1]",
        body.as_bytes(),
        &Drive::default(),
    )
}

#[test]
fn encrypted_delivery_through_both_binaries() {
    let (ka, kb) = test_keys();
    let dir = scratch("e2e-enc");
    let sink = Sink::start();
    let (_inbound, addr) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap()],
        &dir.join("inbound.log"),
    );
    let body = "Subject: hello\r\n\r\n..a stuffed line\r\nsecret text\r\n";
    let known = dir.join("known_peers");
    let port = addr.port().to_string();
    let mlog = dir.join("mailer.log");
    let args = [
        "--port",
        &port,
        "--key",
        ka.to_str().unwrap(),
        "--known-peers",
        known.to_str().unwrap(),
        "--log",
        mlog.to_str().unwrap(),
    ];
    let run = deliver(&args, body);
    assert!(run.status.success(), "{run:#?}");
    assert_eq!(run.reply("."), Some("250 2.0.0 accepted\r\n"), "{run:#?}");
    let msgs = sink.wait_for(1);
    assert_eq!(msgs[0].data, body.as_bytes());
    assert_eq!(msgs[0].rcpt_to, vec!["<bob@receiver.test>".to_string()]);
    let pins = std::fs::read_to_string(&known).unwrap();
    assert!(pins.contains("NOISE-25519-CHACHAPOLY-SHA256"), "{pins}");
    wait_log(
        &dir.join("inbound.log"),
        "suite=NOISE-25519-CHACHAPOLY-SHA256",
    );
}

#[test]
fn plain_delivery_to_an_ordinary_server() {
    let (ka, _) = test_keys();
    let dir = scratch("e2e-plain");
    let sink = Sink::start();
    let port = sink.addr.port().to_string();
    let known = dir.join("known_peers");
    let mlog = dir.join("mailer.log");
    let args = [
        "--port",
        &port,
        "--key",
        ka.to_str().unwrap(),
        "--known-peers",
        known.to_str().unwrap(),
        "--log",
        mlog.to_str().unwrap(),
    ];
    let body = "Subject: plain\r\n\r\nhello\r\n";
    let run = deliver(&args, body);
    assert!(run.status.success() && run.delivered(), "{run:#?}");
    assert_eq!(sink.wait_for(1)[0].data, body.as_bytes());
    assert!(
        !known.exists()
            || std::fs::read_to_string(&known)
                .unwrap()
                .lines()
                .all(|l| l.starts_with('#'))
    );
}

/// Postfix pipe(8) mode: envelope as arguments, message on stdin with LF
/// endings, result as a sysexits code.
fn run_pipe(args: &[&str], message: &str) -> (i32, String) {
    let mut child = Command::new(bin("blackpony-mailer"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn pipe_mode_delivers_encrypted_and_maps_replies_to_exit_codes() {
    let (ka, kb) = test_keys();
    let dir = scratch("e2e-pipe");
    let sink = Sink::start();
    let (_inbound, addr) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap()],
        &dir.join("inbound.log"),
    );
    let port = addr.port().to_string();
    let known = dir.join("known_peers");
    let mlog = dir.join("mailer.log");
    let common = [
        "--pipe",
        "--port",
        &port,
        "--key",
        ka.to_str().unwrap(),
        "--known-peers",
        known.to_str().unwrap(),
        "--log",
        mlog.to_str().unwrap(),
        "--helo",
        "a.test",
        "-f",
        "alice@a.test",
    ];
    let msg = "Subject: via pipe\n\n.leading dot\nline two\n";
    let mut args = common.to_vec();
    args.extend(["[127.0.0.1]", "bob@b.test", "carol@b.test"]);
    let (code, out) = run_pipe(&args, msg);
    assert_eq!(code, 0, "{out}");
    let got = sink.wait_for(1);
    assert_eq!(
        got[0].data,
        b"Subject: via pipe\r\n\r\n..leading dot\r\nline two\r\n"
    );
    assert_eq!(got[0].rcpt_to, vec!["<bob@b.test>", "<carol@b.test>"]);
    assert_eq!(got[0].mail_from, "<alice@a.test>");
    assert!(std::fs::read_to_string(&mlog)
        .unwrap()
        .contains("suite=NOISE-25519-CHACHAPOLY-SHA256"));

    // A permanent refusal is EX_UNAVAILABLE (bounce), a temporary one EX_TEMPFAIL.
    let perm = Sink::with(Script {
        rcpt_reply: Some("550 5.1.1 no such user".into()),
        ..Script::default()
    });
    let temp = Sink::with(Script {
        rcpt_reply: Some("451 4.3.0 try later".into()),
        ..Script::default()
    });
    // [127.0.0.1] is pinned now: under the default policy (tofu) a plain
    // server there is stripping, deferred before the envelope.
    let port = perm.addr.port().to_string();
    let mut args = common.to_vec();
    args[2] = &port;
    args.extend(["[127.0.0.1]", "bob@b.test"]);
    let (code, out) = run_pipe(&args, msg);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("possible stripping"), "{out}");
    assert!(perm.commands().iter().all(|c| !c.starts_with("MAIL")));
    // The exit codes of plain refusals, with no pin (a fresh known-peers file).
    let fresh = dir.join("known_peers.fresh");
    for (sink, want) in [(&perm, 69), (&temp, 75)] {
        let port = sink.addr.port().to_string();
        let mut args = common.to_vec();
        args[2] = &port;
        args[6] = fresh.to_str().unwrap();
        args.extend(["[127.0.0.1]", "bob@b.test"]);
        let (code, out) = run_pipe(&args, msg);
        assert_eq!(code, want, "{out}");
        assert!(out.contains("RCPT bob@b.test"), "{out}");
        assert!(sink.messages().is_empty());
    }
    // Nobody listening: deferred.
    let closed = free_port().to_string();
    let mut args = common.to_vec();
    args[2] = &closed;
    args.extend(["[127.0.0.1]", "bob@b.test"]);
    assert_eq!(run_pipe(&args, msg).0, 75);
}

/// Every pairing of a current copy (handshake v2 by default) with an old one
/// that only knows RSA-BLOWFISH (`--suites RSA-BLOWFISH`): each delivers
/// encrypted, with the best suite both ends know (in the server's order),
/// and the same key fingerprints.
#[test]
fn suite_pairings_new_and_old() {
    let (ka, kb) = test_keys();
    const V2: &str = "NOISE-25519-CHACHAPOLY-SHA256";
    const V2_AND_RSA: &str = "NOISE-25519-CHACHAPOLY-SHA256,RSA-BLOWFISH";
    let cases: [(&[&str], &[&str], &str); 4] = [
        // new/new: both defaults.
        (&[], &[], V2),
        // A server that offers only RSA-BLOWFISH: the default client takes it.
        (&[], &["--suites", "RSA-BLOWFISH"], "RSA-BLOWFISH"),
        // A client whose list lacks v2, to a server offering v2 and RSA-BLOWFISH.
        (
            &["--suites", "RSA-BLOWFISH"],
            &["--suites", V2_AND_RSA],
            "RSA-BLOWFISH",
        ),
        // The server's order decides: v2 even if the client lists it second.
        (
            &["--suites", "RSA-BLOWFISH,NOISE-25519-CHACHAPOLY-SHA256"],
            &["--suites", V2_AND_RSA],
            V2,
        ),
    ];
    for (i, (mailer_extra, inbound_extra, want)) in cases.iter().enumerate() {
        let dir = scratch(&format!("e2e-pair{i}"));
        let sink = Sink::start();
        let mut inbound_args = vec!["--key", kb.to_str().unwrap()];
        inbound_args.extend_from_slice(inbound_extra);
        let (_inbound, addr) = start_inbound(sink.addr, &inbound_args, &dir.join("inbound.log"));
        let port = addr.port().to_string();
        let known = dir.join("known_peers");
        let mlog = dir.join("mailer.log");
        let mut args = vec![
            "--port",
            &port,
            "--key",
            ka.to_str().unwrap(),
            "--known-peers",
            known.to_str().unwrap(),
            "--log",
            mlog.to_str().unwrap(),
        ];
        args.extend_from_slice(mailer_extra);
        let body = format!("Subject: pairing {i}\r\n\r\nsecret {i}\r\n");
        let run = deliver(&args, &body);
        assert!(
            run.status.success() && run.delivered(),
            "case {i}: {run:#?}"
        );
        assert_eq!(sink.wait_for(1)[0].data, body.as_bytes(), "case {i}");
        let mailer_log = std::fs::read_to_string(&mlog).unwrap();
        assert!(
            mailer_log.contains(&format!("suite={want} ")),
            "case {i}: {mailer_log}"
        );
        wait_log(
            &dir.join("inbound.log"),
            &format!("suite={want} peer=SHA256"),
        );
        // The pin is the RSA host key whatever the suite.
        let fp = Command::new(bin("blackpony"))
            .args(["--fingerprint", "--key", kb.to_str().unwrap()])
            .output()
            .unwrap();
        let fp = String::from_utf8(fp.stdout).unwrap();
        let fp = fp.split_whitespace().next().unwrap();
        assert!(
            std::fs::read_to_string(&known).unwrap().contains(fp),
            "case {i}"
        );
    }
}
