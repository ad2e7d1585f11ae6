//! Host-key rotation without alarms (`blackpony --rotate-key`), through both
//! real binaries over real sockets: a running `--listen` server takes the
//! new identity at its next connection, presents the old key's continuity
//! statement, and the mailer moves its pins (host and domain) with an info
//! line and no deferral. Everything else stays a key change: no statement,
//! a statement by a key that is not pinned, an expired one, one for another
//! key. And sendmail's AUTH never reaches a refused peer.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use blackpony::cert;
use blackpony::keys::HostKey;
use support::*;

const V2: &str = "NOISE-25519-CHACHAPOLY-SHA256";
const BODY: &[u8] = b"Subject: rot\r\n\r\nrotation test\r\n";
const DEST: &str = "[127.0.0.1]";

/// A fresh key (RSA + static key + certificate) named `name` in `dir`.
fn new_key(dir: &Path, name: &str) -> PathBuf {
    let k = dir.join(name);
    let out = Command::new(bin("blackpony"))
        .args(["--generate-key", "--key", k.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    k
}

fn blackpony(args: &[&str]) -> std::process::Output {
    Command::new(bin("blackpony")).args(args).output().unwrap()
}

/// The pins (kind, name, fingerprint) in a known-peers file.
fn pins(known: &Path) -> Vec<(String, String, String)> {
    fs::read_to_string(known)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].into(), f[1].into(), f[2].into())
        })
        .collect()
}

fn log_of(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(format!("{name}.mailer.log"))).unwrap_or_default()
}

/// Lines of a log at `level` ("warn", "error", "info").
fn at(log: &str, level: &str) -> Vec<String> {
    let tag = format!(": {level}: ");
    log.lines()
        .filter(|l| l.contains(&tag))
        .map(String::from)
        .collect()
}

/// Mailer A (its own key `ka`, files `<name>.*` in `dir`) delivers to `port`.
fn deliver(ka: &Path, port: u16, dir: &Path, name: &str, extra: &[&str]) -> Run {
    let args = mailer_args(port, ka, dir, name, extra);
    run_mailer(&args, DEST, BODY, &Drive::default())
}

#[track_caller]
fn assert_deferred(run: &Run) {
    assert_eq!(run.status.code(), Some(75), "{run:#?}");
    assert!(
        run.reply("EHLO").unwrap_or("").starts_with("421 4.7.5"),
        "{run:#?}"
    );
    run.assert_not_accepted();
}

/// The main story: a server running all along, mail before, across and
/// after a rotation.
#[test]
fn rotation_moves_the_pins_silently_and_the_running_server_takes_the_new_key() {
    let dir = scratch("rot-main");
    let (ka, kb) = (new_key(&dir, "a.key"), new_key(&dir, "b.key"));
    let sink = Sink::start();
    let ilog = dir.join("inbound.log");
    let (_server, addr) = start_inbound(sink.addr, &["--key", kb.to_str().unwrap()], &ilog);
    let known = dir.join("m.known_peers");
    let old = fingerprint(&kb);

    // Before: first contact pins B's key for the host and the domain; the
    // second delivery uses IK with the cached certificate.
    for _ in 0..2 {
        let run = deliver(&ka, addr.port(), &dir, "m", &[]);
        assert!(run.delivered(), "{run:#?}");
    }
    assert!(pins(&known).iter().all(|(_, _, fp)| *fp == old));
    assert_eq!(pins(&known).len(), 2, "{:?}", pins(&known));

    // The rotation, while the server runs.
    let out = blackpony(&["--rotate-key", "--key", kb.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let new = fingerprint(&kb);
    assert_ne!(old, new);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&old) && said.contains(&new), "{said}");
    let mode = |ext: &str| {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(format!("b.key{ext}"));
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(
        [
            mode(""),
            mode(".x25519"),
            mode(".cert"),
            mode(".continuity")
        ],
        [0o600, 0o600, 0o644, 0o644]
    );
    assert!(!dir.join("b.key.old").exists(), "the old key is not kept");
    // A second rotation during the transition would strand peers still on
    // the first key: refused without --force.
    let again = blackpony(&["--rotate-key", "--key", kb.to_str().unwrap()]);
    assert!(!again.status.success(), "{again:?}");
    assert_eq!(fingerprint(&kb), new);

    // During: the new static key makes the cached one stale (IK, then XX on
    // the same connection); the statement moves both pins; delivered, no
    // warning, nothing deferred.
    let run = deliver(&ka, addr.port(), &dir, "m", &[]);
    assert!(run.delivered(), "{run:#?}");
    let log = log_of(&dir, "m");
    let moved: Vec<String> = at(&log, "info")
        .into_iter()
        .filter(|l| l.contains("pin moved"))
        .collect();
    assert_eq!(moved.len(), 1, "{log}");
    assert!(
        moved[0].contains(&format!("old={old}")) && moved[0].contains(&format!("new={new}")),
        "{log}"
    );
    assert!(
        at(&log, "warn").is_empty() && at(&log, "error").is_empty(),
        "{log}"
    );
    // The delivery's one log line says so too.
    let delivery = log
        .lines()
        .rfind(|l| l.contains("delivery dest="))
        .unwrap_or("");
    assert!(
        delivery.contains(&format!("peer={new} pin_moved_from={old} "))
            && delivery.contains("verdict=ok"),
        "{log}"
    );
    assert!(log.contains("starting over with XX"), "{log}");
    // And the session record, for blackpony-report (a rotation, not a key change).
    let rec = fs::read_to_string(dir.join("m.mailer.jsonl")).unwrap();
    let last = rec.lines().last().unwrap_or("");
    assert!(
        last.contains(&format!("\"peer_fingerprint\":\"{new}\""))
            && last.ends_with(&format!(",\"pin_moved_from\":\"{old}\"}}")),
        "{rec}"
    );
    let p = pins(&known);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p.iter().all(|(_, _, fp)| *fp == new), "{p:?}");
    let ilog_text = fs::read_to_string(&ilog).unwrap();
    assert!(ilog_text.contains("reloaded"), "{ilog_text}");

    // After: IK again with the new certificate cached, no further move.
    let run = deliver(&ka, addr.port(), &dir, "m", &[]);
    assert!(run.delivered(), "{run:#?}");
    assert_eq!(log_of(&dir, "m").matches("pin moved").count(), 1);
    assert_eq!(sink.wait_for(4).len(), 4);
}

/// Write `<key>.continuity` as --rotate-key does, from `statement`.
fn write_statement(key: &Path, statement: &[u8]) {
    use base64ct::{Base64, Encoding};
    let line = format!(
        "blackpony-continuity {}\n",
        Base64::encode_string(statement)
    );
    fs::write(format!("{}.continuity", key.display()), line).unwrap();
}

fn spki(key: &Path) -> Vec<u8> {
    HostKey::load(key).unwrap().public_der().to_vec()
}

/// A statement by `signer` for the key `for_key`, valid through `not_after`.
fn statement(signer: &Path, for_key: &Path, not_after: u64) -> Vec<u8> {
    let signer = HostKey::load(signer).unwrap();
    cert::issue_continuity(&signer, &spki(for_key), 0, not_after)
}

/// Every change that is not a rotation signed by the pinned key stays a key
/// change: deferred under tofu and require, warned about (and delivered)
/// under may, and the pin never moves.
#[test]
fn anything_but_a_valid_statement_by_the_pinned_key_stays_a_key_change() {
    let dir = scratch("rot-bad");
    let ka = new_key(&dir, "a.key");
    let kb = new_key(&dir, "b.key");
    let other = new_key(&dir, "x.key");
    let now = blackpony::clock::now_unix();
    let future = now + 86_400;
    let kc: Vec<PathBuf> = (1..=4)
        .map(|i| new_key(&dir, &format!("c{i}.key")))
        .collect();
    // (case, server key, statement beside it)
    let cases = [
        ("no statement", &kc[0], None),
        (
            "signed by a key that is not pinned",
            &kc[1],
            Some(statement(&other, &kc[1], future)),
        ),
        (
            "expired: no longer presented",
            &kc[2],
            Some(statement(&kb, &kc[2], now - 60)),
        ),
        (
            "for another key",
            &kc[3],
            Some(statement(&kb, &other, future)),
        ),
    ];
    let sink = Sink::start();
    for (i, (what, kc, stmt)) in cases.into_iter().enumerate() {
        if let Some(s) = &stmt {
            write_statement(kc, s);
        }
        let (_d, addr) = start_inbound(
            sink.addr,
            &["--key", kc.to_str().unwrap()],
            &dir.join(format!("in{i}.log")),
        );
        let name = format!("m{i}");
        let known = dir.join(format!("{name}.known_peers"));
        let pinned = fingerprint(&kb);
        fs::write(
            &known,
            format!(
                "host {DEST} {pinned} {V2} 2026-01-01 2026-01-01\n\
                 domain {DEST} {pinned} {V2} 2026-01-01 2026-01-01\n"
            ),
        )
        .unwrap();
        let before = fs::read_to_string(&known).unwrap();
        for policy in ["tofu", "require"] {
            let run = deliver(&ka, addr.port(), &dir, &name, &["--policy", policy]);
            assert_deferred(&run);
            assert_eq!(fs::read_to_string(&known).unwrap(), before, "{what}");
        }
        let run = deliver(&ka, addr.port(), &dir, &name, &["--policy", "may"]);
        assert!(run.delivered(), "{what}: {run:#?}");
        let log = log_of(&dir, &name);
        assert!(
            at(&log, "warn").iter().any(|l| l.contains("key changed")),
            "{what}: {log}"
        );
        assert!(!log.contains("pin moved"), "{what}: {log}");
        assert_eq!(fs::read_to_string(&known).unwrap(), before, "{what}");
        // A statement that fails its checks is logged (one by an unpinned
        // key passes them and is just not followed); an expired one is not
        // presented at all.
        let ignored = log.contains("continuity statement ignored");
        assert_eq!(ignored, what == "for another key", "{what}: {log}");
    }
}

/// The statement format and the client's checks, without sockets: what
/// the server presents depends on the client's flag (an older client gets
/// the bare certificate it parses strictly), and the checks refuse an
/// expired statement, another key's, and a tampered one.
#[test]
fn statement_checks_and_the_payload_an_older_client_gets() {
    use blackpony::noise::{HandshakeState, Pattern};
    use blackpony::suite::noise_suite::{prologue, ServerXx};
    let dir = scratch("rot-unit");
    let kb = new_key(&dir, "b.key");
    let old_spki = spki(&kb);
    let out = blackpony(&[
        "--rotate-key",
        "--key",
        kb.to_str().unwrap(),
        "--transition-days",
        "3",
    ]);
    assert!(out.status.success(), "{out:?}");
    let id = blackpony::static_key::load(&kb).unwrap();
    let (bytes, not_after) = id.continuity.clone().expect("a statement beside the key");
    let now = blackpony::clock::now_unix();
    assert!(not_after > now + 3 * 86_400 - 60 && not_after <= now + 3 * 86_400);
    let new_spki = &id.verified.spki_der;
    let s = cert::verify_continuity(&bytes, now, new_spki).unwrap();
    assert_eq!(s.fingerprint, blackpony::keys::fingerprint(&old_spki));
    assert_eq!(
        cert::verify_continuity(&bytes, not_after + 1, new_spki),
        Err(cert::CertError::Expired)
    );
    assert_eq!(
        cert::verify_continuity(&bytes, now, &old_spki),
        Err(cert::CertError::OtherKey)
    );
    let mut bad = bytes.clone();
    bad[30] ^= 1;
    assert_eq!(
        cert::verify_continuity(&bad, now, new_spki),
        Err(cert::CertError::BadSignature)
    );
    // A certificate is not a statement, nor the reverse (the labels differ).
    assert!(cert::verify_continuity(&id.cert_bytes, now, new_spki).is_err());
    assert!(cert::parse_signed(&bytes).is_err());
    assert_eq!(id.continuity_at(not_after), Some(&bytes[..]));
    assert_eq!(id.continuity_at(not_after + 1), None);

    let pro = prologue(V2, V2, b"EHLO a.test");
    for (flags, want_statement) in [(&[][..], false), (&[1u8][..], true), (&[2u8][..], false)] {
        let client = x25519_dalek::StaticSecret::random();
        let mut hs = HandshakeState::new(Pattern::XX, true, &pro, Some(client), None).unwrap();
        let msg1 = hs.write_message(flags).unwrap();
        let (_srv, msg2) = ServerXx::start(&id, &pro, &msg1).unwrap();
        let payload = hs.read_message(&msg2).unwrap();
        let want = match want_statement {
            true => [id.cert_bytes.clone(), bytes.clone()].concat(),
            false => id.cert_bytes.clone(),
        };
        assert_eq!(payload, want, "flags {flags:?}");
        let (c, rest) = cert::split_payload(&payload).unwrap();
        assert_eq!((c, rest.is_empty()), (&id.cert_bytes[..], !want_statement));
    }
}

/// sendmail-style AUTH on the mailer's stdin, facing a peer the policy
/// refuses (a pinned host that now strips the keyword; one that shows
/// another key): sendmail's EHLO gets the 4xx, and AUTH with its
/// credentials, written anyway, never reaches the peer.
#[test]
fn auth_never_reaches_a_refused_peer() {
    let dir = scratch("rot-auth");
    let ka = new_key(&dir, "a.key");
    let kb = new_key(&dir, "b.key");
    let kc = new_key(&dir, "c.key");
    let mut lines: Vec<String> = EHLO_LINES.iter().map(|s| s.to_string()).collect();
    lines.push("AUTH PLAIN LOGIN".into());
    let script = Script {
        ehlo: Some(lines),
        ..Script::default()
    };
    let stripped = Smtpd::with(script.clone());
    let behind_c = Smtpd::with(script);
    let (_c, addr_c) = start_inbound(
        behind_c.addr,
        &["--key", kc.to_str().unwrap()],
        &dir.join("in.log"),
    );
    const CREDENTIALS: &str = "AGFsaWNlAGh1bnRlcjI=";
    for (what, port, mta) in [
        ("stripped", stripped.addr.port(), &stripped),
        ("other key", addr_c.port(), &behind_c),
    ] {
        let name = what.replace(' ', "-");
        let known = dir.join(format!("{name}.known_peers"));
        let pinned = fingerprint(&kb);
        fs::write(
            &known,
            format!("host {DEST} {pinned} {V2} 2026-01-01 2026-01-01\n"),
        )
        .unwrap();
        let args = mailer_args(port, &ka, &dir, &name, &["--policy", "tofu"]);
        let mut child = Command::new(bin("blackpony-mailer"))
            .args(&args)
            .arg(DEST)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut to = child.stdin.take().unwrap();
        let mut from = BufReader::new(child.stdout.take().unwrap());
        let mut reply = || {
            let mut all = String::new();
            loop {
                let mut l = String::new();
                if from.read_line(&mut l).unwrap() == 0 {
                    return all;
                }
                all.push_str(&l);
                if l.as_bytes().get(3) == Some(&b' ') {
                    return all;
                }
            }
        };
        assert!(reply().starts_with("220"), "{what}");
        to.write_all(b"EHLO sender.test\r\n").unwrap();
        let ehlo = reply();
        assert!(ehlo.starts_with("421 4.7.5"), "{what}: {ehlo}");
        // sendmail would stop here; a careless one goes on.
        let _ = to.write_all(format!("AUTH PLAIN {CREDENTIALS}\r\n").as_bytes());
        drop(to);
        let mut rest = String::new();
        let _ = from.get_mut().read_to_string(&mut rest);
        assert!(!rest.contains("235"), "{what}: {rest}");
        assert_eq!(child.wait().unwrap().code(), Some(75), "{what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
        let cmds = mta.commands();
        assert!(
            cmds.iter().any(|c| c.starts_with("EHLO")),
            "{what}: the peer saw the outer EHLO: {cmds:?}"
        );
        assert!(
            !cmds
                .iter()
                .any(|c| c.to_ascii_uppercase().starts_with("AUTH") || c.contains(CREDENTIALS)),
            "{what}: {cmds:?}"
        );
    }
}

/// The rule that decides whether a statement moves the pins, on every
/// shape the store can hold: the signer must be pinned (host or domain),
/// and neither pin may name a third key.
#[test]
fn follows_rotation_only_from_what_is_pinned() {
    use blackpony::peers::{Known, PeerRecord, PinKind};
    use blackpony::policy::follows_rotation;
    let pin = |kind, fp: &str| PeerRecord {
        kind,
        name: "x".into(),
        fingerprint: fp.into(),
        suite: V2.into(),
        first_seen: "2026-01-01".into(),
        last_seen: "2026-01-01".into(),
    };
    let known = |host: Option<&str>, domain: &[&str]| Known {
        host: host.map(|h| pin(PinKind::Host, h)),
        domain: domain.iter().map(|d| pin(PinKind::Domain, d)).collect(),
    };
    // (host pin, domain keys, follows a statement by OLD for NEW)
    let cases = [
        (Some("OLD"), &[][..], true),
        (None, &["OLD"][..], true),
        (Some("OLD"), &["OLD", "THIRD"][..], true),
        (Some("NEW"), &["OLD"][..], true),
        (Some("OLD"), &["NEW"][..], true),
        (None, &[][..], false),
        (Some("THIRD"), &["OLD"][..], false),
        (Some("OLD"), &["THIRD"][..], false),
        (Some("NEW"), &["NEW"][..], false),
    ];
    for (host, domain, want) in cases {
        let k = known(host, domain);
        assert_eq!(
            follows_rotation(&k, "NEW", "OLD"),
            want,
            "{host:?} {domain:?}"
        );
    }
    assert!(!follows_rotation(&known(Some("OLD"), &[]), "OLD", "OLD"));
}

/// A server started per connection (inetd) loads the static key and the
/// certificate afresh each time: while `--rotate-key` runs, every load
/// succeeds and gives a matching pair, old or new, never a mix.
#[test]
fn loads_during_a_rotation_never_see_a_mixed_identity() {
    let dir = scratch("rot-race");
    let kb = new_key(&dir, "b.key");
    let (mut loads, mut failures) = (0u32, Vec::new());
    for round in 0..3 {
        let mut child = Command::new(bin("blackpony"))
            .args(["--rotate-key", "--force", "--key", kb.to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        loop {
            let done = child.try_wait().unwrap().is_some();
            match blackpony::static_key::load(&kb) {
                Ok(_) => loads += 1,
                Err(e) => failures.push(format!("round {round}: {e}")),
            }
            if done {
                break;
            }
        }
        assert!(child.wait().unwrap().success());
    }
    assert!(
        failures.is_empty(),
        "{} of {loads}: {failures:?}",
        failures.len()
    );
    let id = blackpony::static_key::load(&kb).unwrap();
    assert_eq!(
        blackpony::keys::fingerprint(&id.verified.spki_der),
        fingerprint(&kb)
    );
    assert!(loads > 100, "only {loads} loads during three rotations");
}
