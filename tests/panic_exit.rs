//! A panic in blackpony-mailer defers the message, in both of its modes: it
//! exits 75 (EX_TEMPFAIL), writes only the line its caller understands (an
//! enhanced status code for Postfix pipe(8), an SMTP 421 for sendmail),
//! nothing to stderr, and the panic to its log. The panics are forced with
//! BLACKPONY_FAULT, which only a build with the `fault-injection` feature
//! obeys, so this file runs only with that feature:
//!
//!     cargo test --release --features fault-injection --target-dir target/fault --test panic_exit
//!
//! (A second build of the crate, in its own target directory so that
//! target/release keeps the default binaries; scripts/e2e-postfix.sh builds
//! the same there and shows Postfix deferring the message, group [F].)

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::*;

const PIPE_LINE: &str = "4.3.0 blackpony-mailer: internal error\n";
const SENDMAIL_LINE: &str = "421 4.3.0 Internal error, try again later\r\n";

/// The mailer for `[127.0.0.1]` on `port` with BLACKPONY_FAULT=`fault`
/// (none if empty), `input` on stdin.
fn mailer(port: u16, dir: &Path, fault: &str, pipe: bool, input: &[u8]) -> Output {
    let (key, _) = test_keys();
    let mut cmd = Command::new(bin("blackpony-mailer"));
    if pipe {
        cmd.arg("--pipe");
    }
    cmd.args(mailer_args(port, key, dir, "m", &[]))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !fault.is_empty() {
        cmd.env("BLACKPONY_FAULT", fault);
    }
    if pipe {
        cmd.args(["-f", "alice@a.test", "--", "[127.0.0.1]", "bob@b.test"]);
    } else {
        cmd.arg("[127.0.0.1]");
    }
    let mut child = cmd.spawn().unwrap();
    // The mailer may die before it reads all of it: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("m.mailer.log")).unwrap_or_default()
}

const MESSAGE: &[u8] = b"Subject: panic test\n\nbody\n";

#[test]
fn pipe_mode_panic_after_rcpt_exits_75_and_delivers_nothing() {
    let sink = Sink::start();
    let dir = scratch("panic-pipe-rcpt");
    let out = mailer(sink.addr.port(), &dir, "panic-after-rcpt", true, MESSAGE);
    assert_eq!(out.status.code(), Some(75), "{out:?}\nlog: {}", log(&dir));
    assert_eq!(String::from_utf8_lossy(&out.stdout), PIPE_LINE);
    assert!(out.stderr.is_empty(), "stderr: {:?}", out.stderr);
    let l = log(&dir);
    assert!(
        l.contains("internal error (panic)") && l.contains("fault injected at after-rcpt"),
        "log: {l}"
    );
    // The panic came after the remote accepted the recipient, before DATA.
    assert!(
        sink.commands()
            .iter()
            .any(|c| c.starts_with("RCPT TO:<bob@b.test>")),
        "commands: {:?}",
        sink.commands()
    );
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
}

#[test]
fn pipe_mode_panic_at_start_exits_75() {
    let sink = Sink::start();
    let dir = scratch("panic-pipe-start");
    let out = mailer(sink.addr.port(), &dir, "panic-at-start", true, MESSAGE);
    assert_eq!(out.status.code(), Some(75), "{out:?}\nlog: {}", log(&dir));
    assert_eq!(String::from_utf8_lossy(&out.stdout), PIPE_LINE);
    assert!(out.stderr.is_empty(), "stderr: {:?}", out.stderr);
    assert!(
        log(&dir).contains("fault injected at at-start"),
        "{}",
        log(&dir)
    );
    assert_eq!(sink.connections(), 0);
}

#[test]
fn sendmail_mode_panic_at_start_exits_75_with_a_421() {
    let sink = Sink::start();
    let dir = scratch("panic-sendmail-start");
    let out = mailer(sink.addr.port(), &dir, "panic-at-start", false, b"");
    assert_eq!(out.status.code(), Some(75), "{out:?}\nlog: {}", log(&dir));
    assert_eq!(String::from_utf8_lossy(&out.stdout), SENDMAIL_LINE);
    assert!(out.stderr.is_empty(), "stderr: {:?}", out.stderr);
    assert!(
        log(&dir).contains("fault injected at at-start"),
        "{}",
        log(&dir)
    );
}

/// Before the log is set up (a panic there used to exit 101 in sendmail
/// mode): still 75 and only the caller's line, in both modes.
#[test]
fn panic_before_the_log_exits_75_in_both_modes() {
    let sink = Sink::start();
    for (pipe, line) in [(false, SENDMAIL_LINE), (true, PIPE_LINE)] {
        let dir = scratch(&format!("panic-before-log-{pipe}"));
        let out = mailer(sink.addr.port(), &dir, "panic-before-log", pipe, MESSAGE);
        assert_eq!(out.status.code(), Some(75), "pipe {pipe}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), line, "pipe {pipe}");
        assert!(
            out.stderr.is_empty(),
            "pipe {pipe}: stderr {:?}",
            out.stderr
        );
        assert_eq!(log(&dir), "", "pipe {pipe}: no log yet");
    }
    assert_eq!(sink.connections(), 0);
}

/// The control: the same build and run without BLACKPONY_FAULT delivers,
/// so the exits above are the forced panics' doing.
#[test]
fn without_a_fault_the_same_run_delivers() {
    let sink = Sink::start();
    let dir = scratch("panic-none");
    let out = mailer(sink.addr.port(), &dir, "", true, MESSAGE);
    assert_eq!(out.status.code(), Some(0), "{out:?}\nlog: {}", log(&dir));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let m = sink.wait_for(1);
    assert_eq!(m[0].rcpt_to, vec!["<bob@b.test>".to_string()]);
}
