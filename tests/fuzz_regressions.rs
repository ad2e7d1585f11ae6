//! Every input the fuzzers ever crashed on, replayed through the same code
//! the fuzz targets run (fuzz/common/mod.rs), plus the committed seed
//! corpora (fuzz/seeds/<target>/), so `cargo test` keeps them all fixed.
//!
//! Layout: tests/fuzz_regressions/<target>/<file>, one raw fuzz input per
//! file, every one replayed and required to pass. The four bugs found so far
//! are fixed; their inputs are named `fixed-*` and each also has a test
//! below naming the bug.
//!
//! To add a crash: fix the bug, then copy fuzz/artifacts/<target>/crash-*
//! here under <target>/, named `fixed-<what it did>`. An input whose bug is
//! still open does not belong here (the replay would fail); keep it with
//! the issue until the fix lands.
//!
//! `BLACKPONY_WRITE_SEEDS=1 cargo test --test fuzz_regressions write_seeds`
//! rewrites fuzz/seeds/ (well-formed inputs the fuzzers start from).

#[path = "../fuzz/common/mod.rs"]
mod common;

use base64ct::{Base64, Encoding};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_fn(name: &str) -> common::Target {
    common::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target named {name}"))
        .1
}

/// (target, file) for every file under `dir/<target>/`. A missing `dir` is
/// an error, not an empty list: a replay of nothing would pass.
fn inputs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let targets = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for t in targets.flatten() {
        if !t.path().is_dir() {
            continue;
        }
        let name = t.file_name().to_string_lossy().into_owned();
        for f in fs::read_dir(t.path()).unwrap().flatten() {
            if f.path().is_file() {
                out.push((name.clone(), f.path()));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, file: &Path) {
    let data = fs::read(file).unwrap();
    let f = target_fn(target);
    if let Err(e) = std::panic::catch_unwind(|| f(&data)) {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{target} on {}: {msg}", file.display());
    }
}

#[test]
fn saved_crashes_stay_fixed() {
    let all = inputs(&root().join("tests/fuzz_regressions"));
    // The six committed inputs of the four fixed bugs, at least.
    assert!(all.len() >= 6, "inputs lost: {all:?}");
    for (target, file) in &all {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with("fixed-"),
            "{}: name a saved crash fixed-<what it did> (and fix it first)",
            file.display()
        );
        replay(target, file);
    }
}

#[test]
fn seed_corpora_pass() {
    let all = inputs(&root().join("fuzz/seeds"));
    assert!(all.len() >= 10, "fuzz/seeds/ is missing (see write_seeds)");
    for name in common::TARGETS.iter().map(|(n, _)| n) {
        assert!(
            all.iter().any(|(t, _)| t == name),
            "no seed for fuzz target {name}"
        );
    }
    for (target, file) in &all {
        replay(target, file);
    }
}

#[test]
fn every_target_survives_trivial_inputs() {
    for (name, f) in common::TARGETS {
        for data in [&b""[..], b"\0", b"\xff\xff\xff\xff", b"\r\n", b"250 ok\r\n"] {
            if let Err(e) = std::panic::catch_unwind(|| f(data)) {
                panic!("{name} on {data:?}: {e:?}");
            }
        }
    }
}

/// Fixed: src/smtp/ehlo.rs `strip_keyword` rewrote byte 3 of every kept line
/// to ' ' or '-'. On a line with no text after the code (`250\r\n`, which
/// `read_reply` accepts) byte 3 is the CR, or for `250\n` the LF: the reply
/// reaching the client (inbound) or sendmail (outbound, from an untrusted
/// remote MX) got a bare LF, or an unterminated last line that swallowed the
/// next reply. It now only overwrites byte 3 when it is ' ' or '-'.
#[test]
fn strip_keyword_keeps_line_endings_of_bare_code_lines() {
    let dir = root().join("tests/fuzz_regressions/ehlo");
    for name in ["fixed-strip-bare-code-lf", "fixed-strip-bare-code-crlf"] {
        let data = fs::read(dir.join(name)).unwrap();
        common::ehlo_keyword(&data);
    }
}

/// Fixed: src/smtp/ehlo.rs `add_keyword` (called by inbound on every plain
/// EHLO reply) appended a line even when the MTA's reply already had
/// MAX_REPLY_LINES (100) lines; `read_reply` refuses a 101-line reply, so
/// blackpony-mailer failed every session with that server. A reply at the
/// limit is now left alone.
#[test]
fn add_keyword_respects_the_reply_line_limit() {
    let dir = root().join("tests/fuzz_regressions/ehlo");
    for name in [
        "fixed-add-keyword-101-lines",
        "fixed-add-keyword-101-lines-fuzzed",
    ] {
        let data = fs::read(dir.join(name)).unwrap();
        common::ehlo_keyword(&data);
    }
}

/// Fixed: src/peers/format.rs `normalize_host` stripped one trailing dot per parse, so a
/// hand-written pin for `mx.example.org..` is rewritten as
/// `mx.example.org.` and read back as `mx.example.org` (the `known_peers`
/// target asserts the round trip). DNS names never end in `..` (the DNS parser escapes
/// a dot inside a label), so only an edited file hits it. Fix: in
/// `normalize_host`, refuse a host that still ends with '.' after the one
/// trailing dot is stripped (or that contains an empty label).
#[test]
fn known_peers_host_with_trailing_dots_round_trips() {
    let data = fs::read(root().join("tests/fuzz_regressions/known_peers/fixed-host-trailing-dots"))
        .unwrap();
    common::known_peers(&data);
}

/// Fixed: src/policy.rs `parse_key` accepted a bracketed host ending in two dots
/// (`[mx.example.net..]`); `normalize` strips one, so the entry is stored as
/// `[mx.example.net.]`, and every lookup strips that dot as well: the entry
/// never matches, and a `require` written that way silently becomes the
/// default policy. The `policy` target asserts that every entry finds itself.
/// Fix: in `parse_key`, refuse a bracketed host whose inner part still ends
/// with '.' after normalization (or has an empty label), like plain names.
#[test]
fn policy_entry_with_trailing_dots_in_brackets_matches_itself() {
    let data =
        fs::read(root().join("tests/fuzz_regressions/policy/fixed-bracket-trailing-dots")).unwrap();
    common::policy(&data);
    common::policy(b"[mx.example.net..] require\n");
}

// ------------------------------------------------------------------- seeds

fn dns_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// A DNS reply: header, the question, and answers given as (type, rdata).
fn dns_reply(id: u16, qname: &str, qtype: u16, answers: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&0x8180u16.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    dns_name(&mut m, qname);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    for (t, rdata) in answers {
        m.extend_from_slice(&[0xc0, 12]); // the question's name
        m.extend_from_slice(&t.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m.extend_from_slice(&300u32.to_be_bytes());
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(rdata);
    }
    m
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use blackpony::suite::noise_suite::{ClientIk, ClientXx, ServerIk, ServerXx};
    use blackpony::suite::rsa_blowfish::{ClientStart, ServerAwaitKey};
    const OFFER: &str = "NOISE-25519-CHACHAPOLY-SHA256 RSA-BLOWFISH ROT13";
    let mut s: Vec<(&str, &str, Vec<u8>)> = Vec::new();

    // smtp_line: sizes, ops (op, u16 arg), prefix length, then the stream.
    let session = b"EHLO a.example\r\nMAIL FROM:<a@b>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\nbare\nlf\r\n.\r\nBDAT 5 LAST\r\n12345QUIT\r\n";
    let mut line = vec![3, 1, 0, 7, 6];
    for (op, arg) in [
        (0u8, 4096u16),
        (0, 4096),
        (0, 4096),
        (2, 0),
        (0, 100),
        (3, 5),
        (0, 10),
    ] {
        line.push(op);
        line.extend_from_slice(&arg.to_be_bytes());
    }
    line.extend_from_slice(&17u16.to_be_bytes());
    line.extend_from_slice(session);
    s.push(("smtp_line", "session", line));

    let ehlo = b"250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-XBLACKPONY RSA-BLOWFISH ROT13\r\n250 8BITMIME\r\n";
    let mut reply = vec![2, 3, 0];
    reply.extend_from_slice(ehlo);
    s.push(("smtp_reply", "ehlo-reply", reply));
    s.push((
        "smtp_reply",
        "multi",
        b"\x00421-4.3.0 a\r\n421 4.3.0 b\r\n".to_vec(),
    ));
    s.push(("ehlo", "keyword", ehlo.to_vec()));
    s.push(("ehlo", "single", b"250 mx.example\r\n".to_vec()));
    s.push(("smtp_command", "bdat", b"BDAT 1000 LAST\r\n".to_vec()));
    s.push((
        "smtp_command",
        "xblackpony",
        b"XBLACKPONY ROT13\r\n".to_vec(),
    ));

    // handshake (RSA-BLOWFISH): selector byte (mod 5: step), then the message.
    let key = common::test_key();
    let client = ClientStart::new(key, OFFER);
    let hello = Base64::decode_vec(&client.hello_base64()).unwrap();
    let (server_hello, _) = ServerAwaitKey::new(key, OFFER, &hello).unwrap();
    let (client_key, _, _) = client.on_server_hello(&server_hello).unwrap();
    for (name, step, body) in [
        ("rsa-client-hello", 0u8, hello.clone()),
        (
            "rsa-server-hello-framed",
            1,
            [&[1u8][..], &server_hello].concat(),
        ),
        ("rsa-server-hello", 2, server_hello.clone()),
        ("rsa-client-key", 3, client_key),
        ("rsa-server-side-hello", 4, hello),
    ] {
        s.push(("handshake", name, [&[step][..], &body].concat()));
    }

    // noise_handshake: selector byte (mod 6: step), then one real message
    // of a handshake between the two fixed identities.
    let (server, peer) = (common::test_identity(0), common::test_identity(1));
    let prologue = common::noise_prologue();
    let (c, xx1) = ClientXx::start(peer, &prologue).unwrap();
    let (srv, xx2) = ServerXx::start(server, &prologue, &xx1).unwrap();
    let (verified, _, _) = c.on_msg2(&xx2).unwrap();
    let (xx3, _) = verified.finish(peer).unwrap();
    srv.on_msg3(&xx3).unwrap();
    let ehlo = b"EHLO fuzz.example\r\n";
    let (ik, ik1) = ClientIk::start(peer, &prologue, &server.verified, ehlo).unwrap();
    let (sik, got) = ServerIk::start(server, &prologue, &ik1).unwrap();
    assert_eq!(got, ehlo);
    let (ik2, _) = sik.answer(b"250 fuzz.example\r\n").unwrap();
    ik.on_msg2(&ik2).unwrap();
    for (name, step, body) in [
        ("xx-msg1", 0u8, xx1),
        ("ik-msg1", 1, ik1),
        ("xx-msg2", 2, xx2),
        ("xx-msg3", 3, xx3),
        ("certificate", 4, server.cert_bytes.clone()),
        ("ik-msg2", 5, ik2),
    ] {
        s.push(("noise_handshake", name, [&[step][..], &body].concat()));
    }

    // record_open: a valid stream per suite (also read as chunk size, flip position).
    for (si, suite) in common::SUITES.into_iter().enumerate() {
        let tag = ["rsa", "noise"][si];
        let payloads: [&[u8]; 4] = [b"EHLO a\r\n", &[b'x'; 1300], b"QUIT\r\n", &[0u8; 90]];
        let name: &'static str = Box::leak(format!("{tag}-stream").into_boxed_str());
        s.push(("record_open", name, common::sealed_stream(suite, &payloads)));
    }
    s.push((
        "record_open",
        "payload",
        b"\x07\x00\x10MAIL FROM:<a@b>\r\n".to_vec(),
    ));
    s.push((
        "record_open",
        "noise-payload",
        b"\x87\x00\x10MAIL FROM:<a@b>\r\n".to_vec(),
    ));

    let mx = {
        let mut r = 10u16.to_be_bytes().to_vec();
        dns_name(&mut r, "mx.example.com");
        r
    };
    s.push((
        "dns",
        "mx",
        dns_reply(0x1234, "example.com", 15, &[(15, mx)]),
    ));
    s.push((
        "dns",
        "a",
        dns_reply(
            7,
            "mx.example.com",
            1,
            &[(1, vec![192, 0, 2, 1]), (1, vec![192, 0, 2, 2])],
        ),
    ));
    s.push((
        "known_peers",
        "file",
        b"# blackpony known peers: host fingerprint suite first-seen last-seen\nmx.example.org SHA256:3q2+7w RSA-BLOWFISH 2026-11-28 2026-11-28\n[192.0.2.1] SHA256:abc RSA-BLOWFISH 2026-01-02 2026-03-04\n".to_vec(),
    ));
    s.push((
        "policy",
        "map",
        b"# comment\nexample.org require\n.example.org tofu # subdomains\n[mx.example.net] may\n"
            .to_vec(),
    ));
    s
}

#[test]
fn write_seeds() {
    let dir = root().join("fuzz/seeds");
    let write = std::env::var_os("BLACKPONY_WRITE_SEEDS").is_some();
    for (target, name, data) in seeds() {
        // Every seed passes its target.
        target_fn(target)(&data);
        if write {
            fs::create_dir_all(dir.join(target)).unwrap();
            fs::write(dir.join(target).join(name), &data).unwrap();
        }
    }
}
