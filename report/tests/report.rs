//! blackpony-report on record files: the reader against damaged lines,
//! the numbers on the fixtures in tests/report_data (exactly, as a table
//! and as JSON), periods, usage errors, a rotated set of files, and the
//! HTML page rendered in a real headless chromium with a screenshot.
//!
//! The fixtures are in the format blackpony and blackpony-mailer write;
//! that they write it is the blackpony crate's tests/session_records.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use blackpony_report::{build, Loaded, Period, Record};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Runs blackpony-report in the crate directory (so the fixture names in
/// its output are the relative ones).
fn run_report(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blackpony-report"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn stdout_of(o: &Output) -> String {
    assert!(
        o.status.success(),
        "blackpony-report failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A scratch directory under the target dir, unique per test.
fn scratch(name: &str) -> PathBuf {
    let d =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const FIXTURES: [&str; 2] = [
    "tests/report_data/sessions.jsonl",
    "tests/report_data/sessions.jsonl.1",
];

/// A record line exactly as the writer makes one (keys in its order).
fn sample_line(i: usize) -> String {
    format!(
        "{{\"v\":1,\"time\":\"2026-11-28T10:00:00Z\",\"direction\":\"{}\",\"peer_host\":\"host{i}.example\",\
         \"peer_addr\":\"192.0.2.{}:25\",\"suite\":\"RSA-BLOWFISH\",\
         \"peer_fingerprint\":\"SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\",\"policy\":\"may\",\
         \"verdict\":\"ok\",\"bytes_in\":912,\"bytes_out\":1843,\"duration_ms\":210,\"outcome\":\"quit\"}}\n",
        if i.is_multiple_of(2) { "in" } else { "out" },
        i % 250
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}\n{s}"))
}

/// Strict accessors: a missing key or a wrong type fails the test.
trait J {
    fn at(&self, path: &str) -> &Value;
    fn arr(&self) -> &Vec<Value>;
    fn num(&self) -> f64;
    fn u(&self) -> u64;
    fn s(&self) -> &str;
}

impl J for Value {
    /// `a.b.0.c`: keys and array indexes.
    fn at(&self, path: &str) -> &Value {
        path.split('.').fold(self, |j, k| {
            let next = match k.parse::<usize>() {
                Ok(i) => j.as_array().and_then(|a| a.get(i)),
                Err(_) => j.as_object().and_then(|o| o.get(k)),
            };
            next.unwrap_or_else(|| panic!("no {k} (of {path}) in {j}"))
        })
    }
    fn arr(&self) -> &Vec<Value> {
        self.as_array()
            .unwrap_or_else(|| panic!("not an array: {self}"))
    }
    fn num(&self) -> f64 {
        self.as_f64()
            .unwrap_or_else(|| panic!("not a number: {self}"))
    }
    fn u(&self) -> u64 {
        self.as_u64()
            .unwrap_or_else(|| panic!("not an unsigned integer: {self}"))
    }
    fn s(&self) -> &str {
        self.as_str()
            .unwrap_or_else(|| panic!("not a string: {self}"))
    }
}

// ---------------------------------------------------------------------------
// Reading one line
// ---------------------------------------------------------------------------

#[test]
fn writer_lines_are_read_and_damaged_lines_are_errors_not_panics() {
    let line = sample_line(1);
    let (r, at) = Record::parse(&line).unwrap();
    assert_eq!(at, 1_795_860_000);
    assert_eq!(
        (
            r.direction.as_str(),
            r.peer_host.as_str(),
            r.peer_addr.as_str()
        ),
        ("out", "host1.example", "192.0.2.1:25")
    );
    assert_eq!((r.bytes_in, r.bytes_out, r.duration_ms), (912, 1843, 210));
    assert!(r.is_encrypted());
    // Unknown keys (a later version's additions) are ignored; order does not
    // matter; "v" may be absent; CR LF is fine.
    let extra = line.replacen(
        "{\"v\":1,",
        "{\"dest\":\"example.org\",\"v\":1,\"last_reply\":{\"code\":[250]},",
        1,
    );
    assert_eq!(Record::parse(&extra).unwrap().0, r);
    assert!(Record::parse(&line.replacen("\"v\":1,", "", 1)).is_ok());
    let body = line.trim_end();
    assert_eq!(Record::parse(&format!("{body}\r\n")).unwrap().0, r);
    // The writer's escapes come back as the text: quotes, backslashes,
    // control characters, U+2028 and non-ASCII.
    let esc = line.replace(
        "\"outcome\":\"quit\"",
        "\"outcome\":\"error: \\\"x\\\\y\\n\\u0000\\u001f\\u007f\\u2028é日本🐎</script>\"",
    );
    assert_eq!(
        Record::parse(&esc).unwrap().0.outcome,
        "error: \"x\\y\n\u{0}\u{1f}\u{7f}\u{2028}é日本🐎</script>"
    );
    // ROTn is a test suite, not encryption; "-" and "plain" are not either.
    for s in ["ROT13", "ROT1", "plain", "-", ""] {
        let l = line.replace("RSA-BLOWFISH", s);
        assert!(!Record::parse(&l).unwrap().0.is_encrypted(), "{s}");
    }

    // Every truncation of a record is rejected.
    for cut in 0..body.len() {
        assert!(
            Record::parse(&body[..cut]).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
    let bad = [
        "",
        "null",
        "[]",
        "{}",
        "{\"v\":1}",
        &line.replace("\"out\"", "\"sideways\""),
        &line.replace("2026-11-28T10:00:00Z", "2026-11-31T10:00:00Z"),
        &line.replace("2026-11-28T10:00:00Z", "yesterday"),
        &line.replace("\"bytes_in\":912", "\"bytes_in\":-912"),
        &line.replace("\"bytes_in\":912", "\"bytes_in\":9.12"),
        &line.replace("\"bytes_in\":912", "\"bytes_in\":99999999999999999999999"),
        &line.replace("\"bytes_in\":912", "\"bytes_in\":\"912\""),
        &line.replace("\"bytes_in\":912", "\"bytes_in\":0912"),
        &line.replace("\"suite\":\"RSA-BLOWFISH\"", "\"suite\":{\"a\":1}"),
        &line.replace("\"suite\":\"RSA-BLOWFISH\"", "\"suite\":\"RSA\\qBLOWFISH\""),
        &line.replace("\"suite\":\"RSA-BLOWFISH\"", "\"suite\":\"RSA\\ud800\""),
        &line.replace("\"v\":1", "\"v\":2"),
        &line.replace("\"v\":1", "\"v\":1,\"v\":1"),
        &line.replace("\"peer_host\"", "\"suite\":\"plain\",\"peer_host\""),
        &format!("{body}{body}"),
        &format!("{body} trailing"),
        &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        &format!("{{\"a\":{}", "{\"a\":".repeat(100_000)),
    ];
    for b in bad {
        assert!(
            Record::parse(b).is_err(),
            "accepted {:?}",
            &b[..b.len().min(120)]
        );
    }
}

// ---------------------------------------------------------------------------
// The report on the fixtures
// ---------------------------------------------------------------------------

const FIXTURE_TABLE: &str = "\
blackpony encryption report: 2026-03-01 to 2026-03-06
20 records in the period, 20 read from 2 files; 6 corrupt or truncated lines skipped

Totals
direction  sessions  encrypted  share  errors  verdict warn  verdict defer
in               11          5  45.5%       1             -              -
out               9          3  33.3%       1             1              1

Share encrypted by day (UTC)
day         in  encrypted   share  out  encrypted   share
2026-03-01   4          2   50.0%    1          1  100.0%
2026-03-02   3          1   33.3%    3          2   66.7%
2026-03-03   1          0    0.0%    1          0    0.0%
2026-03-04   2          1   50.0%    3          0    0.0%
2026-03-06   1          1  100.0%    1          0    0.0%

Peers
dir  peer            sessions  encrypted  share  suites              first encrypted       last encrypted        warnings
in   192.0.2.7              6          5  83.3%  RSA-BLOWFISH,plain  2026-03-01T08:00:00Z  2026-03-06T09:00:00Z  went plain on 2026-03-03; key changed on 2026-03-04
in   198.51.100.20          4          0   0.0%  plain               -                     -                     -
in   2001:db8::25           1          0   0.0%  ROT13               -                     -                     -
out  mx.example.org         5          3  60.0%  RSA-BLOWFISH,plain  2026-03-01T12:00:00Z  2026-03-02T12:00:00Z  went plain on 2026-03-03; verdict warn x1; verdict defer x1
out  mx.plain.test          3          0   0.0%  plain               -                     -                     -
out  [192.0.2.99]           1          0   0.0%  plain               -                     -                     -

Warnings
in 192.0.2.7: went plain on 2026-03-03 at 2026-03-03T08:00:00Z
in 192.0.2.7: key changed on 2026-03-04 at 2026-03-04T08:00:00Z (SHA256:AAAAfixtureKeyOfSite192x0x2x7xxxxxxxxxxxxx -> SHA256:CCCCfixtureNewKeyOfSite192x0x2x7xxxxxxxxxx)
out mx.example.org: went plain on 2026-03-03 at 2026-03-03T09:00:00Z

Skipped lines (6 in all)
tests/report_data/sessions.jsonl.1:6: not JSON: expected ident at line 1 column 2
tests/report_data/sessions.jsonl.1:9: truncated: EOF while parsing a string at line 1 column 61
tests/report_data/sessions.jsonl:3: not a record: unknown variant `sideways`, expected `in` or `out` at line 1 column 59
tests/report_data/sessions.jsonl:7: not UTF-8
tests/report_data/sessions.jsonl:12: bad time \"2026-02-30T12:00:00Z\"
tests/report_data/sessions.jsonl:16: truncated line (no newline at end of file): truncated: EOF while parsing a string at line 1 column 57
";

#[test]
fn table_on_fixtures_is_exact() {
    // Files given newest first (as a shell glob gives them) are read oldest first.
    let out = stdout_of(&run_report(&FIXTURES));
    assert_eq!(out, FIXTURE_TABLE, "got:\n{out}");
    // The same files in the other order, and one given twice, change nothing.
    let out = stdout_of(&run_report(&[FIXTURES[1], FIXTURES[0], FIXTURES[0]]));
    assert_eq!(out, FIXTURE_TABLE);
}

#[test]
fn json_on_fixtures_is_exact() {
    let out = stdout_of(&run_report(&["--json", FIXTURES[0], FIXTURES[1]]));
    let j = json(&out);
    assert_eq!(j.at("report").s(), "blackpony-encryption");
    assert_eq!(j.at("period.since"), &Value::Null);
    assert_eq!(j.at("period.first").s(), "2026-03-01T08:00:00Z");
    assert_eq!(j.at("period.last").s(), "2026-03-06T09:00:00Z");
    assert_eq!(j.at("records_read").u(), 20);
    assert_eq!(j.at("records_in_period").u(), 20);
    assert_eq!(j.at("skipped_lines").u(), 6);
    assert_eq!(j.at("skipped").arr().len(), 6);
    assert_eq!(j.at("skipped.2.line").u(), 3);
    assert!(j.at("skipped.2.reason").s().contains("sideways"));
    assert_eq!(
        j.at("files").arr().iter().map(J::s).collect::<Vec<_>>(),
        vec![FIXTURES[1], FIXTURES[0]]
    );
    let c = |p: &str| -> (u64, u64, Option<f64>, u64, u64, u64) {
        let x = j.at(p);
        let share = match x.at("share") {
            Value::Null => None,
            s => Some(s.num()),
        };
        (
            x.at("sessions").u(),
            x.at("encrypted").u(),
            share,
            x.at("errors").u(),
            x.at("verdict_warn").u(),
            x.at("verdict_defer").u(),
        )
    };
    assert_eq!(c("totals.in"), (11, 5, Some(0.4545), 1, 0, 0));
    assert_eq!(c("totals.out"), (9, 3, Some(0.3333), 1, 1, 1));
    assert_eq!(
        j.at("totals.in.bytes_in").u(),
        2000 + 2100 + 900 + 300 + 2200 + 950 + 120 + 1000 + 2300 + 980 + 2400
    );
    let days: Vec<(String, u64, u64, u64, u64)> = j
        .at("days")
        .arr()
        .iter()
        .map(|d| {
            (
                d.at("date").s().to_string(),
                d.at("in.sessions").u(),
                d.at("in.encrypted").u(),
                d.at("out.sessions").u(),
                d.at("out.encrypted").u(),
            )
        })
        .collect();
    let want = [
        ("2026-03-01", 4, 2, 1, 1),
        ("2026-03-02", 3, 1, 3, 2),
        ("2026-03-03", 1, 0, 1, 0),
        ("2026-03-04", 2, 1, 3, 0),
        ("2026-03-06", 1, 1, 1, 0),
    ];
    assert_eq!(
        days,
        want.iter()
            .map(|(d, a, b, c, e)| (d.to_string(), *a, *b, *c, *e))
            .collect::<Vec<_>>()
    );
    assert_eq!(j.at("days.2.in.share").num(), 0.0);
    assert_eq!(j.at("days.0.out.share").num(), 1.0);
    let peers = j.at("peers").arr();
    let summary: Vec<(String, String, u64, u64, Vec<String>)> = peers
        .iter()
        .map(|p| {
            (
                p.at("direction").s().to_string(),
                p.at("host").s().to_string(),
                p.at("sessions").u(),
                p.at("encrypted").u(),
                p.at("warnings")
                    .arr()
                    .iter()
                    .map(|w| w.at("text").s().to_string())
                    .collect(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        vec![
            (
                "in".into(),
                "192.0.2.7".into(),
                6,
                5,
                s(&["went plain on 2026-03-03", "key changed on 2026-03-04"])
            ),
            ("in".into(), "198.51.100.20".into(), 4, 0, s(&[])),
            ("in".into(), "2001:db8::25".into(), 1, 0, s(&[])),
            (
                "out".into(),
                "mx.example.org".into(),
                5,
                3,
                s(&["went plain on 2026-03-03"])
            ),
            ("out".into(), "mx.plain.test".into(), 3, 0, s(&[])),
            ("out".into(), "[192.0.2.99]".into(), 1, 0, s(&[])),
        ]
    );
    let p0 = &peers[0];
    assert_eq!(p0.at("share").num(), 0.8333);
    assert_eq!(
        p0.at("suites").arr().iter().map(J::s).collect::<Vec<_>>(),
        ["RSA-BLOWFISH", "plain"]
    );
    assert_eq!(p0.at("first_encrypted").s(), "2026-03-01T08:00:00Z");
    assert_eq!(p0.at("last_encrypted").s(), "2026-03-06T09:00:00Z");
    assert_eq!(p0.at("warnings.1.kind").s(), "key-changed");
    assert_eq!(
        p0.at("warnings.1.from").s(),
        "SHA256:AAAAfixtureKeyOfSite192x0x2x7xxxxxxxxxxxxx"
    );
    assert_eq!(
        p0.at("warnings.1.to").s(),
        "SHA256:CCCCfixtureNewKeyOfSite192x0x2x7xxxxxxxxxx"
    );
    assert_eq!(p0.at("warnings.0.time").s(), "2026-03-03T08:00:00Z");
    let mx = &peers[3];
    assert_eq!(
        (mx.at("verdict_warn").u(), mx.at("verdict_defer").u()),
        (1, 1)
    );
    assert_eq!(mx.at("last_encrypted").s(), "2026-03-02T12:00:00Z");
    assert_eq!(peers[5].at("errors").u(), 1);
    assert_eq!(peers[5].at("first_encrypted"), &Value::Null);
}

#[test]
fn period_limits_counts_but_not_the_history_behind_warnings() {
    let out = stdout_of(&run_report(&[
        "--json",
        "--since",
        "2026-03-03",
        "--until",
        "2026-03-04",
        FIXTURES[0],
        FIXTURES[1],
    ]));
    let j = json(&out);
    assert_eq!(j.at("period.since").s(), "2026-03-03");
    assert_eq!(j.at("period.until").s(), "2026-03-04");
    assert_eq!(j.at("records_in_period").u(), 7);
    assert_eq!(
        (
            j.at("totals.in.sessions").u(),
            j.at("totals.in.encrypted").u()
        ),
        (3, 1)
    );
    assert_eq!(
        (
            j.at("totals.out.sessions").u(),
            j.at("totals.out.encrypted").u()
        ),
        (4, 0)
    );
    assert_eq!(j.at("days").arr().len(), 2);
    let peer = |host: &str| {
        j.at("peers")
            .arr()
            .iter()
            .find(|p| p.at("host").s() == host)
            .unwrap_or_else(|| panic!("no peer {host}"))
            .clone()
    };
    let p = peer("192.0.2.7");
    assert_eq!((p.at("sessions").u(), p.at("encrypted").u()), (2, 1));
    // Encrypted on 03-01 and 03-02, before the period: still "went plain".
    let w: Vec<&str> = p
        .at("warnings")
        .arr()
        .iter()
        .map(|w| w.at("text").s())
        .collect();
    assert_eq!(w, ["went plain on 2026-03-03", "key changed on 2026-03-04"]);
    let mx = peer("mx.example.org");
    assert_eq!(mx.at("first_encrypted"), &Value::Null);
    assert_eq!(mx.at("warnings").arr().len(), 1);
    // The 00:30+01:00 record belongs to 2026-03-04 UTC.
    assert_eq!(peer("mx.plain.test").at("sessions").u(), 1);

    // From 03-04 on, the 03-03 warning is outside the period.
    let out = stdout_of(&run_report(&[
        "--json",
        "--since",
        "2026-03-04",
        FIXTURES[0],
        FIXTURES[1],
    ]));
    let j = json(&out);
    let p = &j.at("peers").arr()[0];
    assert_eq!(p.at("host").s(), "192.0.2.7");
    let w: Vec<&str> = p
        .at("warnings")
        .arr()
        .iter()
        .map(|w| w.at("text").s())
        .collect();
    assert_eq!(w, ["key changed on 2026-03-04"]);

    // A period with nothing in it is a report of zeros, not an error.
    let out = stdout_of(&run_report(&["--since", "2030-01-01", FIXTURES[0]]));
    assert!(out.contains("0 records in the period"), "{out}");
    assert!(
        out.contains("in                0          0      -"),
        "{out}"
    );
}

/// A signed rotation (the record names the pinned key the pins moved
/// from) is not a key change; a session served without our own key is.
#[test]
fn a_signed_rotation_is_no_alarm_and_a_missing_own_key_is_reported() {
    let dir = scratch("rotation");
    let rec = |time: &str, dir: &str, host: &str, fp: &str, extra: &str| {
        format!(
            "{{\"v\":1,\"time\":\"{time}\",\"direction\":\"{dir}\",\"peer_host\":\"{host}\",\
             \"peer_addr\":\"192.0.2.9:25\",\"suite\":\"NOISE-25519-CHACHAPOLY-SHA256\",\
             \"peer_fingerprint\":\"{fp}\",\"policy\":\"tofu\",\"verdict\":\"ok\",\"bytes_in\":1,\
             \"bytes_out\":1,\"duration_ms\":1,\"outcome\":\"quit\"{extra}}}\n"
        )
    };
    let lines = [
        rec("2026-12-01T10:00:00Z", "out", "mx.a.test", "SHA256:old", ""),
        rec(
            "2026-12-02T10:00:00Z",
            "out",
            "mx.a.test",
            "SHA256:new",
            ",\"pin_moved_from\":\"SHA256:old\"",
        ),
        rec("2026-12-01T10:00:00Z", "out", "mx.b.test", "SHA256:one", ""),
        // Moved from a key that was not the one seen: still a key change.
        rec(
            "2026-12-02T10:00:00Z",
            "out",
            "mx.b.test",
            "SHA256:two",
            ",\"pin_moved_from\":\"SHA256:zzz\"",
        ),
        rec(
            "2026-12-03T10:00:00Z",
            "in",
            "192.0.2.9",
            "-",
            ",\"key_problem\":\"no static key beside /etc/blackpony/host.key\"",
        ),
    ];
    let file = dir.join("sessions.jsonl");
    std::fs::write(&file, lines.concat()).unwrap();
    let j = json(&stdout_of(&run_report(&["--json", file.to_str().unwrap()])));
    let kinds = |host: &str| -> Vec<String> {
        let p = j
            .at("peers")
            .arr()
            .iter()
            .find(|p| p.at("host").s() == host)
            .unwrap()
            .clone();
        p.at("warnings")
            .arr()
            .iter()
            .map(|w| w.at("kind").s().to_string())
            .collect()
    };
    assert_eq!(kinds("mx.a.test"), ["key-rotated"]);
    assert_eq!(kinds("mx.b.test"), ["key-changed"]);
    assert_eq!(kinds("192.0.2.9"), ["own-key-problem"]);
    let text = stdout_of(&run_report(&[file.to_str().unwrap()]));
    assert!(
        text.contains("key rotated (signed by the old key) on 2026-12-02"),
        "{text}"
    );
    assert!(
        text.contains("served without our key (see the log) on 2026-12-03"),
        "{text}"
    );
}

#[test]
fn usage_and_input_errors() {
    for args in [
        &["--since", "2026-13-01", FIXTURES[0]][..],
        &["--until", "yesterday", FIXTURES[0]],
        &[
            "--since",
            "2026-03-05",
            "--until",
            "2026-03-04",
            FIXTURES[0],
        ],
        &["--bogus"],
    ] {
        let o = run_report(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}");
        assert!(o.stdout.is_empty());
        assert!(String::from_utf8_lossy(&o.stderr).contains("blackpony-report:"));
    }
    let o = run_report(&["tests/report_data/does-not-exist.jsonl"]);
    assert_eq!(o.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does-not-exist.jsonl"));
    let o = run_report(&["tests/report_data"]);
    assert_eq!(o.status.code(), Some(66));
    let o = run_report(&["--help"]);
    assert!(stdout_of(&o).contains("--since YYYY-MM-DD"));
}

#[test]
fn a_rotated_set_is_read_oldest_first_and_the_lock_file_passed_over() {
    // What `blackpony-report s.jsonl*` gets from the shell after rotations.
    let dir = scratch("report-rotated");
    let mut args = Vec::new();
    for (n, name) in [
        "s.jsonl.5",
        "s.jsonl.4",
        "s.jsonl.3",
        "s.jsonl.2",
        "s.jsonl.1",
        "s.jsonl",
    ]
    .iter()
    .enumerate()
    {
        let line = sample_line(n).replace("10:00:00Z", &format!("10:00:0{n}Z"));
        std::fs::write(dir.join(name), line).unwrap();
        args.push(dir.join(name).display().to_string());
    }
    std::fs::write(dir.join("s.jsonl.lock"), b"").unwrap();
    args.push(dir.join("s.jsonl.lock").display().to_string());
    args.sort();
    args.insert(0, "--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let j = json(&stdout_of(&run_report(&args)));
    let files: Vec<&str> = j.at("files").arr().iter().map(J::s).collect();
    let names: Vec<&str> = files
        .iter()
        .map(|f| f.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "s.jsonl.5",
            "s.jsonl.4",
            "s.jsonl.3",
            "s.jsonl.2",
            "s.jsonl.1",
            "s.jsonl"
        ]
    );
    assert_eq!(
        (j.at("records_read").u(), j.at("skipped_lines").u()),
        (6, 0)
    );
    assert_eq!(j.at("period.first").s(), "2026-11-28T10:00:00Z");
    assert_eq!(j.at("period.last").s(), "2026-11-28T10:00:05Z");
}

// ---------------------------------------------------------------------------
// Corrupt input: skipped and counted, never a crash
// ---------------------------------------------------------------------------

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn corrupt_and_truncated_lines_are_counted_never_fatal() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut data = Vec::new();
    let (mut good, mut bad) = (0u64, 0u64);
    for i in 0..3000 {
        let line = sample_line(i).into_bytes();
        match rng.below(10) {
            0..=4 => {
                data.extend_from_slice(&line);
                good += 1;
            }
            5 => {
                // Truncated anywhere before the closing brace.
                let cut = rng.below(line.len() - 2);
                data.extend_from_slice(&line[..cut]);
                data.push(b'\n');
                if line[..cut].iter().any(|b| !b.is_ascii_whitespace()) {
                    bad += 1;
                }
            }
            6 => {
                // Random bytes (without newlines).
                let n = 1 + rng.below(300);
                let junk: Vec<u8> = (0..n)
                    .map(|_| (rng.next() as u8).max(1))
                    .map(|b| if b == b'\n' { b'?' } else { b })
                    .collect();
                data.extend_from_slice(&junk);
                data.push(b'\n');
                if junk.iter().any(|b| !b.is_ascii_whitespace()) {
                    bad += 1;
                }
            }
            7 => {
                // One byte flipped inside a string value: may still parse.
                let mut l = line.clone();
                let at = 10 + rng.below(l.len() - 20);
                let bytes = b"{}[]\":,\\\x00\xff";
                l[at] = bytes[rng.below(bytes.len())];
                let ok = std::str::from_utf8(&l)
                    .ok()
                    .and_then(|s| Record::parse(s).ok())
                    .is_some();
                data.extend_from_slice(&l);
                if ok {
                    good += 1;
                } else {
                    bad += 1;
                }
            }
            8 => {
                // Two writers' lines glued together (a torn write).
                data.extend_from_slice(&line[..line.len() / 2]);
                data.extend_from_slice(&line);
                bad += 1;
            }
            _ => {
                // Deep nesting and a huge line.
                if rng.below(2) == 0 {
                    data.extend_from_slice(&b"[".repeat(200_000));
                } else {
                    data.extend_from_slice(&b"{\"a\":".repeat(20_000));
                }
                data.push(b'\n');
                bad += 1;
            }
        }
    }
    // The file ends inside a record.
    let last = sample_line(1);
    data.extend_from_slice(&last.as_bytes()[..40]);
    bad += 1;

    let mut loaded = Loaded::default();
    loaded.add_reader("fuzz", &data[..]).unwrap();
    assert_eq!(loaded.entries.len() as u64, good);
    assert_eq!(loaded.skipped_count, bad);
    assert_eq!(loaded.skipped.len(), blackpony_report::read::MAX_LISTED);
    let last_skip = build(&loaded, Period::default());
    assert_eq!(last_skip.records_read, good);

    // The binary says so too, in every output.
    let dir = scratch("report-fuzz");
    let f = dir.join("fuzz.jsonl");
    std::fs::write(&f, &data).unwrap();
    let fs = f.to_str().unwrap();
    let html = dir.join("fuzz.html");
    let out = stdout_of(&run_report(&[
        "--json",
        "--html",
        html.to_str().unwrap(),
        fs,
    ]));
    let j = json(&out);
    assert_eq!(j.at("skipped_lines").u(), bad);
    assert_eq!(j.at("records_read").u(), good);
    let table = stdout_of(&run_report(&[fs]));
    assert!(
        table.contains(&format!("; {bad} corrupt or truncated lines skipped")),
        "{table:.400}"
    );
    assert!(table.contains(&format!("Skipped lines ({bad} in all, first 20 listed)")));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&format!("{bad} corrupt or truncated line(s) skipped")));
    // Nothing from the corrupt bytes reaches the terminal raw.
    assert!(!table.contains('\u{1b}'));
    // An empty file is a report of nothing.
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, b"").unwrap();
    let out = stdout_of(&run_report(&[empty.to_str().unwrap()]));
    assert!(
        out.starts_with("blackpony encryption report: no records\n"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// The HTML page in a real browser
// ---------------------------------------------------------------------------

fn chromium() -> PathBuf {
    for p in ["/usr/bin/chromium", "/usr/lib/chromium/chromium"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for d in path.split(':') {
            let p = Path::new(d).join("chromium");
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "Debian's chromium is not installed; it checks the HTML report. \
         Run scripts/install-test-deps.sh (as root or with sudo), which installs it."
    );
}

/// Runs headless chromium on `page` with `extra` arguments and a fresh
/// profile; kills it after a minute.
fn run_chromium(page: &Path, profile: &Path, extra: &[String]) -> Output {
    let _ = std::fs::remove_dir_all(profile);
    std::fs::create_dir_all(profile).unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .env("HOME", profile)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run chromium: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("chromium did not finish within 90 s");
        }
    }
}

fn count_tags_with_class(dom: &str, tag: &str, class: &str) -> usize {
    dom.split(&format!("<{tag}"))
        .skip(1)
        .filter(|t| {
            let head = &t[..t.find('>').unwrap_or(t.len())];
            head.split("class=\"")
                .nth(1)
                .and_then(|c| c.split('"').next())
                .is_some_and(|c| c.split_whitespace().any(|x| x == class))
        })
        .count()
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let dir = scratch("report-html");
    let page = dir.join("report.html");
    let o = run_report(&["--html", page.to_str().unwrap(), FIXTURES[0], FIXTURES[1]]);
    assert_eq!(
        stdout_of(&o),
        FIXTURE_TABLE,
        "--html does not change the table"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no scripts, nothing to fetch.
    for bad in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(bad), "the page contains {bad}");
    }
    assert!(html.contains("Content-Security-Policy"));

    let dom_run = run_chromium(&page, &dir.join("profile-dom"), &["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&dom_run.stdout).into_owned();
    assert!(
        dom.contains("<svg") && dom.contains("id=\"share-plot\""),
        "no plot in the rendered DOM; chromium said: {}",
        String::from_utf8_lossy(&dom_run.stderr)
    );
    // One point per day with sessions: five days in, five out (2026-03-05 has none).
    assert_eq!(count_tags_with_class(&dom, "circle", "pt-in"), 5);
    assert_eq!(count_tags_with_class(&dom, "circle", "pt-out"), 5);
    assert_eq!(count_tags_with_class(&dom, "path", "line-in"), 1);
    assert_eq!(count_tags_with_class(&dom, "path", "line-out"), 1);
    // Axes, labels and legend are there.
    assert!(dom.contains("share of sessions encrypted"));
    assert!(dom.contains("day (UTC)"));
    assert!(dom.contains("100%") && dom.contains(">0%<"));
    assert!(dom.contains("2026-03-01") && dom.contains("2026-03-06"));
    assert!(dom.contains("inbound (received by blackpony)"));
    assert!(dom.contains("outbound (sent by blackpony-mailer)"));
    assert!(dom.contains("went plain on 2026-03-03"));
    assert!(dom.contains("key changed on 2026-03-04"));
    assert!(dom.contains("2026-03-01 in: 2 of 4 encrypted (50.0%)"));
    // The 2026-03-05 gap breaks both lines into two pieces.
    let d_in = html.split("class=\"line line-in\" d=\"").nth(1).unwrap();
    assert_eq!(d_in[..d_in.find('"').unwrap()].matches('M').count(), 2);

    let shot = dir.join("report.png");
    let shot_run = run_chromium(
        &page,
        &dir.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1200,900".to_string(),
        ],
    );
    assert!(
        shot.exists(),
        "no screenshot; chromium said: {}",
        String::from_utf8_lossy(&shot_run.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(&png[12..16], b"IHDR");
    assert_eq!((be(&png[16..20]), be(&png[20..24])), (1200, 900));
    // A blank page compresses to a few kilobytes; the plot and tables do not.
    assert!(png.len() > 20_000, "screenshot only {} bytes", png.len());
    println!("screenshot of the HTML report: {}", shot.display());
}
