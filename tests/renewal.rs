//! A long-running blackpony (--listen, socket activation) picks up a renewed
//! static key and certificate at the next connection, without a restart.

mod support;

use std::fs;

use support::*;

const V2: &str = "NOISE-25519-CHACHAPOLY-SHA256";

#[test]
fn a_running_server_uses_a_new_static_key_from_the_next_connection() {
    let dir = scratch("renewal-live");
    let key = |name: &str| {
        let k = dir.join(name);
        let out = std::process::Command::new(bin("blackpony"))
            .args(["--generate-key", "--key", k.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        k
    };
    let (ka, kb) = (key("a.key"), key("b.key"));
    let sink = Smtpd::start();
    let ilog = dir.join("inbound.log");
    let (_d, addr) = start_inbound(sink.addr, &["--key", kb.to_str().unwrap()], &ilog);
    let mlog = dir.join("mailer.log");
    let args: Vec<String> = [
        "--port",
        &addr.port().to_string(),
        "--key",
        ka.to_str().unwrap(),
        "--suites",
        V2,
        "--known-peers",
        dir.join("known_peers").to_str().unwrap(),
        "--log",
        mlog.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let deliver = || {
        run_mailer(
            &args,
            "[127.0.0.1]",
            b"Subject: x\r\n\r\nx\r\n",
            &Drive::default(),
        )
    };
    // XX, then IK from the cached certificate.
    assert!(deliver().delivered());
    assert!(deliver().delivered());
    assert!(!fs::read_to_string(&mlog)
        .unwrap()
        .contains("starting over with XX"));

    // B gets a new static key while it runs: the mailer's cached one is now
    // stale, so its IK fails and it starts over with XX on the same
    // connection, which works only if the running server uses the new key.
    fs::remove_file(dir.join("b.key.x25519")).unwrap();
    let out = std::process::Command::new(bin("blackpony"))
        .args(["--renew-cert", "--key", kb.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let run = deliver();
    assert!(run.delivered(), "{run:#?}");
    let log = fs::read_to_string(&mlog).unwrap();
    assert!(log.contains("starting over with XX"), "{log}");
    assert_eq!(log.matches(&format!("suite={V2}")).count(), 3, "{log}");
    let ilog = fs::read_to_string(&ilog).unwrap();
    assert!(
        ilog.contains("static key and certificate reloaded"),
        "{ilog}"
    );
}
