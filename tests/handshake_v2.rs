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
