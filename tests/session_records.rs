//! Both programs write session records: real runs of `blackpony` and
//! `blackpony-mailer` with `--record`, the lines they append read back with
//! serde_json (not the programs' own code). The format is the contract with
//! blackpony-report (report/ in this workspace), so its shape is checked
//! exactly; then many sessions of both programs ending at once (no line torn,
//! none lost), writers queued on the rotation lock (one rotation), and the
//! rotation itself (five files kept, the oldest dropped).
//!
//! These tests use only the binaries and the files, never the library.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// The keys of a record line, in the order the writer puts them.
const KEYS: [&str; 13] = [
    "v",
    "time",
    "direction",
    "peer_host",
    "peer_addr",
    "suite",
    "peer_fingerprint",
    "policy",
    "verdict",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "outcome",
];
const NUMBERS: [&str; 4] = ["v", "bytes_in", "bytes_out", "duration_ms"];
/// Keys written after those only when they apply, in this order.
const OPTIONAL: [&str; 2] = ["pin_moved_from", "key_problem"];
/// The record file's rotation bound (16 MiB; no option changes it).
const MAX_BYTES: u64 = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------
// Reading the file
// ---------------------------------------------------------------------------

/// Checks one line against the format blackpony-report reads: one flat
/// object, the 13 keys in the writer's order (then the optional ones), strings and unsigned
/// integers, `v` 1, a `YYYY-MM-DDTHH:MM:SSZ` time, `in` or `out`.
fn check_shape(line: &str) -> Value {
    let j: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:.300}"));
    let o = j
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"));
    let present = OPTIONAL.iter().filter(|k| o.contains_key(**k));
    let keys: Vec<&str> = KEYS.iter().copied().chain(present.copied()).collect();
    assert_eq!(o.len(), keys.len(), "{line}");
    let mut at = 0;
    for k in keys {
        let pos = line[at..]
            .find(&format!("\"{k}\":"))
            .unwrap_or_else(|| panic!("{k} missing or out of order: {line}"));
        at += pos;
        let v = &o[k];
        if NUMBERS.contains(&k) {
            assert!(v.is_u64(), "{k} is not an unsigned integer: {line}");
        } else {
            assert!(v.is_string(), "{k} is not a string: {line}");
        }
    }
    assert_eq!(j["v"], 1);
    let t = j["time"].as_str().unwrap().as_bytes();
    assert!(
        t.len() == 20
            && t.iter().enumerate().all(|(i, &c)| match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'Z',
                _ => c.is_ascii_digit(),
            }),
        "time {line}"
    );
    assert!(
        matches!(j["direction"].as_str(), Some("in" | "out")),
        "{line}"
    );
    j
}

/// Every line of `path`: whole (ends in a newline, no line torn) and of the
/// documented shape.
fn records(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} ends mid-line",
        path.display()
    );
    let text = String::from_utf8(bytes).expect("UTF-8");
    text.lines()
        .map(|l| {
            assert!(l.len() < 4096, "a line of {} bytes", l.len());
            check_shape(l)
        })
        .collect()
}

fn s<'a>(r: &'a Value, k: &str) -> &'a str {
    r[k].as_str().unwrap()
}

fn n(r: &Value, k: &str) -> u64 {
    r[k].as_u64().unwrap()
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`, from date(1).
fn utc_now() -> String {
    let o = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------
// Driving the programs over pipes (as inetd and sendmail do)
// ---------------------------------------------------------------------------

/// One program speaking SMTP on its stdin and stdout.
struct Piped {
    child: Child,
    w: ChildStdin,
    r: BufReader<ChildStdout>,
}

impl Piped {
    fn start(program: &str, args: &[String]) -> Piped {
        let mut child = Command::new(bin(program))
            .args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = child.stdin.take().unwrap();
        let r = BufReader::new(child.stdout.take().unwrap());
        Piped { child, w, r }
    }

    /// The first line of the next (possibly multi-line) reply.
    fn reply(&mut self) -> String {
        let mut first = String::new();
        loop {
            let mut l = String::new();
            if self.r.read_line(&mut l).unwrap_or(0) == 0 {
                return first;
            }
            if first.is_empty() {
                first = l.trim_end().to_string();
            }
            if l.as_bytes().get(3) != Some(&b'-') {
                return first;
            }
        }
    }

    fn cmd(&mut self, c: &str) -> String {
        let _ = self.w.write_all(format!("{c}\r\n").as_bytes());
        self.reply()
    }

    fn expect(&mut self, c: &str, code: &str) {
        let rep = self.cmd(c);
        assert!(rep.starts_with(code), "{c}: {rep}");
    }

    /// QUIT: the session ends and the program appends its record.
    fn quit(&mut self) {
        self.expect("QUIT", "221");
    }

    fn wait(mut self) -> std::process::ExitStatus {
        drop(self.w);
        self.child.wait().unwrap()
    }
}

/// `blackpony` as inetd runs it, for one session, in front of `backend`.
fn inbound(backend: std::net::SocketAddr, record: &Path, log: &Path) -> Piped {
    let args: Vec<String> = [
        "--backend",
        &backend.to_string(),
        "--key",
        test_keys().1.to_str().unwrap(),
        "--timeout",
        "60",
        "--log",
        log.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let mut p = Piped::start("blackpony", &args);
    let greeting = p.reply();
    assert!(greeting.starts_with("220"), "{greeting}");
    p
}

fn mailer_args(port: u16, policy: &str, known: &Path, log: &Path, record: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--key",
        test_keys().0.to_str().unwrap(),
        "--known-peers",
        known.to_str().unwrap(),
        "--policy",
        policy,
        "--timeout",
        "60",
        "--log",
        log.to_str().unwrap(),
        "--record",
        record.to_str().unwrap(),
        "[127.0.0.1]",
    ]
    .map(String::from)
    .to_vec()
}

/// `blackpony-mailer` as sendmail runs it, up to the end of one message of
/// `body`, or up to the first reply that is not 2xx or 3xx; the caller sends
/// QUIT. Returns the last reply.
fn mailer_send(args: &[String], body: &str) -> (Piped, String) {
    let mut p = Piped::start("blackpony-mailer", args);
    let greeting = p.reply();
    assert!(greeting.starts_with("220"), "{greeting}");
    for c in [
        "EHLO sender.test",
        "MAIL FROM:<alice@sender.test>",
        "RCPT TO:<bob@receiver.test>",
        "DATA",
    ] {
        let rep = p.cmd(c);
        if !(rep.starts_with('2') || rep.starts_with('3')) {
            return (p, rep);
        }
    }
    let _ = write!(p.w, "Subject: records\r\n\r\n{body}\r\n.\r\n");
    let rep = p.reply();
    (p, rep)
}

// ---------------------------------------------------------------------------
// The log lines the records must agree with
// ---------------------------------------------------------------------------

/// `key=value` fields of a log line; `reply="..."` quoted; `end=` takes the rest.
fn log_fields(line: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(' ').map_or(0, |i| i + 1);
        let key = rest[key_start..eq].to_string();
        let after = &rest[eq + 1..];
        if key == "end" {
            m.insert(key, after.trim_end().to_string());
            break;
        }
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let close = q.find("\" ").unwrap_or(q.len().saturating_sub(1));
            (&q[..close], &q[(close + 1).min(q.len())..])
        } else {
            let sp = after.find(' ').unwrap_or(after.len());
            (&after[..sp], &after[sp..])
        };
        m.insert(key, val.to_string());
        rest = next;
    }
    m
}

/// The session (or delivery) lines of a --log file, as fields.
fn summary_lines(log: &Path, word: &str) -> Vec<BTreeMap<String, String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(&format!("info: {word} "))
                .map(|(_, x)| log_fields(x))
        })
        .collect()
}

fn wait_for_lines(log: &Path, word: &str, n: usize) {
    let t = Instant::now();
    while summary_lines(log, word).len() < n {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} has fewer than {n} {word} lines",
            log.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Each record says what its log line says, one record per line.
fn check_records_match_logs(recs: &[Value], inbound_log: &Path, mailer_log: &Path) {
    let ins: Vec<_> = recs.iter().filter(|r| r["direction"] == "in").collect();
    let outs: Vec<_> = recs.iter().filter(|r| r["direction"] == "out").collect();
    let il = summary_lines(inbound_log, "session");
    let ol = summary_lines(mailer_log, "delivery");
    assert_eq!(ins.len(), il.len(), "one inbound record per session line");
    assert_eq!(
        outs.len(),
        ol.len(),
        "one outbound record per delivery line"
    );
    for (r, f) in ins.iter().zip(&il) {
        assert_eq!(s(r, "peer_addr"), f["client"]);
        assert_eq!(s(r, "suite"), f["suite"]);
        assert_eq!(s(r, "peer_fingerprint"), f["peer"]);
        assert_eq!((s(r, "policy"), s(r, "verdict")), ("-", "-"));
        assert_eq!(n(r, "bytes_in").to_string(), f["in"]);
        assert_eq!(n(r, "bytes_out").to_string(), f["out"]);
        assert_eq!(s(r, "outcome"), f["end"]);
    }
    for (r, f) in outs.iter().zip(&ol) {
        assert_eq!(
            format!("{}[{}]", s(r, "peer_host"), s(r, "peer_addr")).to_ascii_lowercase(),
            f["mx"].to_ascii_lowercase()
        );
        assert_eq!(s(r, "suite"), f["suite"]);
        assert_eq!(s(r, "peer_fingerprint"), f["peer"]);
        assert_eq!(s(r, "policy"), f["policy"]);
        assert_eq!(s(r, "verdict"), f["verdict"]);
        assert_eq!(n(r, "bytes_in").to_string(), f["in"]);
        assert_eq!(n(r, "bytes_out").to_string(), f["out"]);
        assert_eq!(s(r, "outcome"), f["end"]);
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Encrypted, plain, warned and deferred sessions of both programs, one
/// record file: each session one line, saying what its log line says.
/// A configured key that is missing is an error in the log and a
/// `key_problem` in every record, not a silent plain session.
#[test]
fn a_missing_own_key_is_in_the_log_and_the_record() {
    let sink = Smtpd::start();
    let dir = scratch("rec-keyless");
    let (rec, log) = (dir.join("sessions.jsonl"), dir.join("inbound.log"));
    let missing = dir.join("no-such.key");
    let args: Vec<String> = [
        "--backend",
        &sink.addr.to_string(),
        "--key",
        missing.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--record",
        rec.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let mut p = Piped::start("blackpony", &args);
    assert!(p.reply().starts_with("220"));
    p.expect("EHLO client.test", "250");
    p.quit();
    assert!(p.wait().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("error: no static key beside"), "{text}");
    let recs = records(&rec);
    assert_eq!(recs.len(), 1);
    assert_eq!(s(&recs[0], "suite"), "plain");
    assert!(
        s(&recs[0], "key_problem").starts_with("no static key beside"),
        "{:?}",
        recs[0]
    );
}

#[test]
fn both_programs_write_a_record_per_session_matching_the_log() {
    let kb = &test_keys().1;
    let start = utc_now();
    let dir = scratch("records-real");
    let record = dir.join("sessions.jsonl");
    let rec_arg = record.to_str().unwrap();
    let sink = Sink::start();
    let ilog = dir.join("inbound.log");
    let (_inbound, addr) = start_inbound(
        sink.addr,
        &["--key", kb.to_str().unwrap(), "--record", rec_arg],
        &ilog,
    );
    // start_inbound's readiness probe is a session too: connected and gone.
    wait_for_lines(&ilog, "session", 1);
    let known = dir.join("known_peers");
    let mlog = dir.join("mailer.log");

    // 1. Encrypted: mailer -> blackpony -> sink.
    let (mut m, rep) = mailer_send(
        &mailer_args(addr.port(), "may", &known, &mlog, &record),
        "one",
    );
    assert!(rep.starts_with("250"), "{rep}");
    m.quit();
    assert!(m.wait().success());
    wait_for_lines(&ilog, "session", 2);
    // 2. A plain client of blackpony.
    let mut c = Client::connect(addr);
    assert_eq!(c.reply().0, 220);
    assert_eq!(c.cmd("EHLO plain.test").0, 250);
    assert_eq!(c.cmd("QUIT").0, 221);
    drop(c);
    wait_for_lines(&ilog, "session", 3);
    // 3. The known MX answers plain (policy may): delivered with a warning.
    let (mut m, rep) = mailer_send(
        &mailer_args(sink.addr.port(), "may", &known, &mlog, &record),
        "two",
    );
    assert!(rep.starts_with("250"), "{rep}");
    m.quit();
    assert!(m.wait().success());
    // 4. Again under tofu: deferred by policy.
    let (mut m, rep) = mailer_send(
        &mailer_args(sink.addr.port(), "tofu", &known, &mlog, &record),
        "three",
    );
    assert!(rep.starts_with('4'), "{rep}");
    let _ = m.cmd("QUIT");
    assert_eq!(m.wait().code(), Some(75));
    assert_eq!(sink.messages().len(), 2);

    // Nothing else writes this file: every line is the programs' own.
    let recs = records(&record);
    assert_eq!(recs.len(), 6, "3 inbound sessions, 3 deliveries");
    check_records_match_logs(&recs, &ilog, &mlog);
    // Times are when each session ended, in UTC: between the start and
    // the end of the test (the format compares as text).
    let end = utc_now();
    for r in &recs {
        assert!(
            (start.as_str()..=end.as_str()).contains(&s(r, "time")),
            "{start} {end} {r}"
        );
        assert!(n(r, "duration_ms") < 60_000, "{r}");
    }
    let ins: Vec<_> = recs.iter().filter(|r| r["direction"] == "in").collect();
    let outs: Vec<_> = recs.iter().filter(|r| r["direction"] == "out").collect();
    // Inbound: the client's address as host, the encrypted session with
    // the mailer's fingerprint, the plain one plain.
    assert!(ins.iter().all(|r| s(r, "peer_host") == "127.0.0.1"));
    assert!(
        s(ins[0], "outcome").starts_with("error"),
        "the probe: {}",
        ins[0]
    );
    assert_ne!(s(ins[1], "suite"), "plain");
    assert!(s(ins[1], "peer_fingerprint").starts_with("SHA256:"));
    assert_eq!(s(ins[1], "outcome"), "quit");
    assert_eq!(
        (s(ins[2], "suite"), s(ins[2], "outcome")),
        ("plain", "quit")
    );
    // Outbound: the MX, the policies and verdicts, the deferral.
    let o: Vec<(&str, &str, &str, &str)> = outs
        .iter()
        .map(|r| {
            (
                s(r, "peer_host"),
                s(r, "policy"),
                s(r, "verdict"),
                s(r, "outcome"),
            )
        })
        .collect();
    assert_eq!(
        o,
        [
            ("[127.0.0.1]", "may", "ok", "quit"),
            ("[127.0.0.1]", "may", "warn", "quit"),
            ("[127.0.0.1]", "tofu", "defer", "deferred by policy"),
        ]
    );
    assert_eq!(s(outs[0], "suite"), s(ins[1], "suite"));
    assert_eq!(s(outs[1], "suite"), "plain");
    assert_eq!(
        s(outs[0], "peer_addr"),
        format!("127.0.0.1:{}", addr.port())
    );
    // Created 0640 at most (the umask may take more away).
    assert_eq!(mode(&record) & !0o640, 0, "mode {:o}", mode(&record));
}

/// Many sessions of both programs end at the same moment, each in its own
/// process as under inetd and sendmail: every session leaves exactly one
/// whole line. Each session sends a different number of bytes, so a lost,
/// doubled or torn record shows as a missing, repeated or unreadable count.
#[test]
fn sessions_ending_at_once_in_many_processes_append_whole_lines_none_lost() {
    const INBOUND: usize = 24;
    const MAILERS: usize = 8;
    let dir = scratch("records-concurrent");
    let record = dir.join("sessions.jsonl");
    let sink = Sink::start();
    let barrier = Arc::new(Barrier::new(INBOUND + MAILERS));
    let mut handles = Vec::new();
    for i in 0..INBOUND {
        let (backend, record, log, b) = (
            sink.addr,
            record.clone(),
            dir.join("in.log"),
            barrier.clone(),
        );
        handles.push(thread::spawn(move || {
            let mut p = inbound(backend, &record, &log);
            // EHLO names of 1..=INBOUND extra bytes: bytes_in tells them apart.
            p.expect(&format!("EHLO c{}", "x".repeat(i + 1)), "250");
            b.wait();
            p.quit();
            assert!(p.wait().success());
        }));
    }
    for i in 0..MAILERS {
        let args = mailer_args(
            sink.addr.port(),
            "may",
            &dir.join(format!("known{i}")),
            &dir.join("out.log"),
            &record,
        );
        let b = barrier.clone();
        handles.push(thread::spawn(move || {
            // Bodies of 1..=MAILERS bytes: bytes_out tells them apart.
            let (mut p, rep) = mailer_send(&args, &"y".repeat(i + 1));
            assert!(rep.starts_with("250"), "{rep}");
            b.wait();
            p.quit();
            assert!(p.wait().success());
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let recs = records(&record);
    assert_eq!(recs.len(), INBOUND + MAILERS, "one line per session");
    let consecutive = |dir: &str, key: &str, count: usize| {
        let v: BTreeSet<u64> = recs
            .iter()
            .filter(|r| r["direction"] == dir)
            .map(|r| n(r, key))
            .collect();
        assert_eq!(v.len(), count, "{dir}: {key} {v:?}");
        let (lo, hi) = (*v.first().unwrap(), *v.last().unwrap());
        assert_eq!(hi - lo + 1, count as u64, "{dir}: {key} {v:?}");
    };
    consecutive("in", "bytes_in", INBOUND);
    consecutive("out", "bytes_out", MAILERS);
    assert!(!dir.join("sessions.jsonl.1").exists(), "no rotation");
}

/// A record file just below its bound, whose rotation lock the test holds:
/// sessions that end meanwhile wait on the lock without writing; released,
/// the first rotates and the others, finding the file fresh, only append.
#[test]
fn writers_queued_on_the_rotation_lock_rotate_once() {
    const WRITERS: usize = 8;
    let dir = scratch("records-lockq");
    let record = dir.join("s.jsonl");
    let full = MAX_BYTES - 10;
    // A sparse file: big to the writer, nothing on the disk.
    std::fs::File::create(&record)
        .unwrap()
        .set_len(full)
        .unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("s.jsonl.lock"))
        .unwrap();
    lock.lock().unwrap();
    let sink = Sink::start();
    let mut sessions: Vec<Piped> = (0..WRITERS)
        .map(|_| {
            let mut p = inbound(sink.addr, &record, &dir.join("in.log"));
            p.expect("EHLO q.test", "250");
            p
        })
        .collect();
    for p in &mut sessions {
        p.quit();
    }
    thread::sleep(Duration::from_millis(500));
    for p in &mut sessions {
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "a writer did not wait for the lock"
        );
    }
    assert_eq!(
        std::fs::metadata(&record).unwrap().len(),
        full,
        "written past the lock"
    );
    assert!(!dir.join("s.jsonl.1").exists());
    lock.unlock().unwrap();
    for p in sessions {
        assert!(p.wait().success());
    }
    assert_eq!(
        std::fs::metadata(dir.join("s.jsonl.1")).unwrap().len(),
        full
    );
    assert!(!dir.join("s.jsonl.2").exists(), "rotated more than once");
    assert_eq!(records(&record).len(), WRITERS);
}

/// Past the bound the file moves to `.1`, `.1` to `.2` and so on; five are
/// kept and the oldest is dropped. Both programs rotate.
#[test]
fn rotation_keeps_five_files_and_drops_the_oldest() {
    let dir = scratch("records-keep");
    let record = dir.join("s.jsonl");
    let sidecar = |i: u32| dir.join(format!("s.jsonl.{i}"));
    let sink = Sink::start();
    for (round, program) in ["blackpony", "blackpony-mailer"].into_iter().enumerate() {
        for i in 1..=5 {
            std::fs::write(sidecar(i), format!("{round}-old-{i}\n")).unwrap();
        }
        let full = MAX_BYTES - 10 - round as u64;
        std::fs::File::create(&record)
            .unwrap()
            .set_len(full)
            .unwrap();
        if program == "blackpony" {
            let mut p = inbound(sink.addr, &record, &dir.join("in.log"));
            p.quit();
            assert!(p.wait().success());
        } else {
            let args = mailer_args(
                sink.addr.port(),
                "may",
                &dir.join("known"),
                &dir.join("out.log"),
                &record,
            );
            let (mut p, rep) = mailer_send(&args, "rotate");
            assert!(rep.starts_with("250"), "{rep}");
            p.quit();
            assert!(p.wait().success());
        }
        for i in 2..=5 {
            assert_eq!(
                std::fs::read_to_string(sidecar(i)).unwrap(),
                format!("{round}-old-{}\n", i - 1),
                "{program}: s.jsonl.{i}"
            );
        }
        assert_eq!(
            std::fs::metadata(sidecar(1)).unwrap().len(),
            full,
            "{program}"
        );
        assert!(!sidecar(6).exists(), "{program}");
        let recs = records(&record);
        assert_eq!(recs.len(), 1, "{program}");
        assert_eq!(recs[0]["direction"], if round == 0 { "in" } else { "out" });
    }
    assert_eq!(mode(&dir.join("s.jsonl.lock")) & !0o640, 0);
}
