//! The known-peers store on real files, with real threads and processes.
//!
//! Child processes are this test binary run again with
//! `--ignored --exact child_role --nocapture` and an environment variable
//! naming the role; `child_role` is ignored in a normal run (it is no test
//! of its own) and fails if run without a role.

use std::collections::HashSet;
use std::env;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use blackpony::peers::{
    parse, serialize, KnownPeers, Line, PeersError, PinKind, Pinned, RecordOutcome, MAX_FILE_BYTES,
    MAX_LINE_BYTES, MAX_TOKEN,
};

/// Role of a child process: `writer` or `looper`.
const ROLE: &str = "BLACKPONY_PEERS_TEST_ROLE";
const FILE: &str = "BLACKPONY_PEERS_TEST_FILE";
/// writer: prefix of the hosts it records. looper: first counter value.
const ARG: &str = "BLACKPONY_PEERS_TEST_ARG";

/// Hosts each concurrent writer (thread or process) records.
const HOSTS_PER_WRITER: usize = 25;
/// Hosts the crash looper cycles through.
const LOOP_HOSTS: u64 = 20;

/// A fresh directory under cargo's per-target temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("peers-store-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `<file>.tmp.<digits>` files in the directory of `file`.
fn temp_files(file: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.tmp.", file.file_name().unwrap().to_string_lossy());
    fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)
                .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect()
}

fn spawn_child(role: &str, file: &Path, arg: &str) -> Child {
    Command::new(env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(FILE, file)
        .env(ARG, arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Records `<prefix>-<i>` hosts, checking each one reads back, plus the
/// host every writer shares. Returns whether this writer created the shared pin.
/// Starts when the file `go` appears next to the store, so that threads and
/// processes (slower to start) really run at the same time.
fn write_hosts(path: &Path, prefix: &str) -> bool {
    let peers = KnownPeers::new(path);
    let go = path.with_file_name("go");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no go");
        thread::sleep(Duration::from_millis(1));
    }
    let mut created_shared = false;
    for i in 0..HOSTS_PER_WRITER {
        let host = format!("{prefix}-{i}.example");
        let fp = format!("SHA256:{prefix}-{i}");
        assert_eq!(
            peers.record(&host, &fp, "RSA-BLOWFISH").unwrap(),
            RecordOutcome::New
        );
        assert_eq!(peers.lookup(&host).unwrap().unwrap().fingerprint, fp);
        if i == HOSTS_PER_WRITER / 2 {
            let outcome = peers.record("shared.example", "SHA256:same", "S").unwrap();
            created_shared = outcome == RecordOutcome::New;
            assert!(created_shared || outcome == RecordOutcome::Unchanged);
        }
    }
    created_shared
}

/// The child side. `writer`: [`write_hosts`], printing `SHARED-NEW` if it
/// created the shared pin. `looper`: records `crash-<n % 20>` with
/// fingerprint `fp-<n>` for n = start, start+1, ... until killed, printing
/// `READY` after the first record; it gives up after a minute, so a failed
/// parent leaves no process behind. (The harness prints `test child_role ...`
/// before the test's output on the same line, so the parent matches line ends.)
#[test]
#[ignore = "a child process of the store tests, not a test of its own"]
fn child_role() {
    let role = env::var(ROLE).expect("child_role runs only as a child of the tests here");
    let file = PathBuf::from(env::var_os(FILE).unwrap());
    let peers = KnownPeers::new(&file);
    let arg = env::var(ARG).unwrap();
    match role.as_str() {
        "writer" => {
            if write_hosts(&file, &arg) {
                println!("SHARED-NEW");
            }
        }
        "looper" => {
            let start: u64 = arg.parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            for n in start.. {
                if Instant::now() > deadline {
                    panic!("looper was not killed");
                }
                let host = format!("crash-{}", n % LOOP_HOSTS);
                peers.record(&host, &format!("fp-{n}"), "S").unwrap();
                if n == start {
                    println!("READY");
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn round_trip_forget_list() {
    let dir = scratch("roundtrip");
    let peers = KnownPeers::new(dir.join("known_peers"));

    // A missing file, or even a missing directory, is an empty store.
    assert_eq!(peers.lookup("mx.example.org").unwrap(), None);
    assert!(peers.list().unwrap().is_empty());
    let nowhere = KnownPeers::new(dir.join("no/such/dir/known_peers"));
    assert!(nowhere.list().unwrap().is_empty());
    assert!(matches!(
        nowhere.record("a", "b", "c"),
        Err(PeersError::Io(..))
    ));
    assert!(!peers.forget("mx.example.org").unwrap().any());
    assert!(!dir.join("known_peers").exists(), "forget created the file");

    let r = peers.record("MX.Example.org.", "SHA256:one", "RSA-BLOWFISH");
    assert_eq!(r.unwrap(), RecordOutcome::New);
    let rec = peers.lookup("mx.example.ORG").unwrap().unwrap();
    assert_eq!(rec.name, "mx.example.org");
    assert_eq!(rec.fingerprint, "SHA256:one");
    assert_eq!(rec.suite, "RSA-BLOWFISH");
    assert_eq!(rec.first_seen, rec.last_seen);
    assert_eq!(rec.first_seen.len(), 10);

    let text = fs::read_to_string(dir.join("known_peers")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("# blackpony known peers"));
    let want = format!(
        "host mx.example.org SHA256:one RSA-BLOWFISH {} {}",
        rec.first_seen, rec.last_seen
    );
    assert_eq!(lines[1], want);
    assert!(text.ends_with('\n'));

    let r = peers.record("mx.example.org", "SHA256:one", "ROT13");
    assert_eq!(r.unwrap(), RecordOutcome::Unchanged);
    assert_eq!(
        peers.lookup("mx.example.org").unwrap().unwrap().suite,
        "ROT13"
    );
    let r = peers.record("mx.example.org", "SHA256:two", "RSA-BLOWFISH");
    assert_eq!(
        r.unwrap(),
        RecordOutcome::KeyChanged {
            old: "SHA256:one".into()
        }
    );
    assert_eq!(
        peers.lookup("mx.example.org").unwrap().unwrap().fingerprint,
        "SHA256:two"
    );

    peers.record("[192.0.2.7]", "SHA256:three", "S").unwrap();
    peers.record("b.example", "SHA256:four", "S").unwrap();
    let hosts: Vec<String> = peers.list().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(hosts, ["mx.example.org", "[192.0.2.7]", "b.example"]);

    assert!(peers.forget("[192.0.2.7]").unwrap().any());
    assert!(!peers.forget("[192.0.2.7]").unwrap().any());
    assert_eq!(peers.lookup("[192.0.2.7]").unwrap(), None);
    let hosts: Vec<String> = peers.list().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(hosts, ["mx.example.org", "b.example"]);

    // Tokens that would break the line format are refused, not written.
    for (h, f, s) in [
        ("a b", "f", "s"),
        ("a", "f\n", "s"),
        ("a", "f", ""),
        ("#a", "f", "s"),
    ] {
        assert!(matches!(
            peers.record(h, f, s),
            Err(PeersError::Invalid { .. })
        ));
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn comments_are_kept() {
    let dir = scratch("comments");
    let path = dir.join("known_peers");
    let original = "# pinned by hand, ask bob\n\nold.example fp S 2025-01-01 2025-02-03\n";
    fs::write(&path, original).unwrap();
    let peers = KnownPeers::new(&path);
    peers.record("new.example", "fp2", "S").unwrap();
    assert!(peers.forget("old.example").unwrap().any());
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# pinned by hand, ask bob\n\nhost new.example fp2 S "));
    assert_eq!(text.lines().count(), 3);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_line_is_reported_with_its_number() {
    let dir = scratch("corrupt");
    let path = dir.join("known_peers");
    let peers = KnownPeers::new(&path);
    let cases: &[(&[u8], usize)] = &[
        (
            b"# header\ngood fp S 2026-01-01 2026-01-02\nbad fp S 2026-01-01\n",
            3,
        ),
        (b"good fp S 2026-01-01 2026-01-02 extra\n", 1),
        (b"\n\n\ngood fp S 2026-1-01 2026-01-02\n", 4),
        (
            b"a fp S 2026-01-01 2026-01-02\nA. fp S 2026-01-01 2026-01-02\n",
            2,
        ),
        (b"# ok\n\xff fp S 2026-01-01 2026-01-02\n", 2),
    ];
    for &(content, line) in cases {
        fs::write(&path, content).unwrap();
        let err = peers.list().unwrap_err();
        match &err {
            PeersError::Corrupt {
                line: l, path: p, ..
            } => {
                assert_eq!((*l, p.as_path()), (line, path.as_path()))
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        let want = format!("fix or remove line {line} of {}", path.display());
        assert!(msg.contains(&want), "{msg}");
        assert!(peers.lookup("good").is_err());
        // An update must not rewrite (and so drop) what it cannot read.
        assert!(matches!(
            peers.record("other", "fp", "S"),
            Err(PeersError::Corrupt { .. })
        ));
        assert!(peers.forget("good").is_err());
        assert_eq!(fs::read(&path).unwrap(), content);
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oversized_file_is_refused() {
    let dir = scratch("big");
    let path = dir.join("known_peers");
    let file = fs::File::create(&path).unwrap();
    file.set_len(MAX_FILE_BYTES + 1).unwrap(); // sparse: no 16 MiB written
    drop(file);
    let err = KnownPeers::new(&path).list().unwrap_err();
    assert!(matches!(err, PeersError::TooBig { .. }), "{err:?}");
    assert!(err.to_string().contains(&*path.to_string_lossy()));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_are_created_0600() {
    let dir = scratch("modes");
    let path = dir.join("known_peers");
    let peers = KnownPeers::new(&path);
    peers.record("a.example", "fp", "S").unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.join("known_peers.lock")), 0o600);

    // A world-readable file (edited by hand, restored from a backup) is
    // replaced by a 0600 one at the next update.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    peers.record("b.example", "fp", "S").unwrap();
    assert_eq!(mode(&path), 0o600);

    // A wider leftover at this process's own temp path is not reused: the
    // file renamed into place is created 0600 all the same.
    let ours = dir.join(format!("known_peers.tmp.{}", std::process::id()));
    fs::write(&ours, b"old").unwrap();
    fs::set_permissions(&ours, fs::Permissions::from_mode(0o644)).unwrap();
    peers.record("c.example", "fp", "S").unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(!ours.exists());
    assert!(fs::read_to_string(&path)
        .unwrap()
        .contains("c.example fp S"));
    // The temp files of killed writers are checked in
    // `kill_9_never_leaves_a_torn_file`.
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn leftover_temp_files_do_not_break_writes() {
    let dir = scratch("leftovers");
    let path = dir.join("known_peers");
    let peers = KnownPeers::new(&path);
    peers.record("a.example", "fp", "S").unwrap();
    // Leftovers of killed writers, one with our own pid (pid reuse), both
    // read-only and half written; and an unrelated file that must survive.
    let ours = dir.join(format!("known_peers.tmp.{}", std::process::id()));
    let other = dir.join("known_peers.tmp.999999");
    let unrelated = dir.join("known_peers.tmp.keep");
    for p in [&ours, &other, &unrelated] {
        fs::write(p, "half a li").unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o400)).unwrap();
    }
    assert_eq!(
        peers.record("b.example", "fp", "S").unwrap(),
        RecordOutcome::New
    );
    assert_eq!(peers.list().unwrap().len(), 2);
    assert!(temp_files(&path).is_empty());
    assert!(unrelated.exists());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_threads_and_processes() {
    const THREADS: usize = 8;
    const PROCESSES: usize = 4;
    let dir = scratch("concurrent");
    let path = dir.join("known_peers");

    let children: Vec<Child> = (0..PROCESSES)
        .map(|p| spawn_child("writer", &path, &format!("proc{p}")))
        .collect();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let path = path.clone();
            thread::spawn(move || write_hosts(&path, &format!("thread{t}")))
        })
        .collect();
    // Give the processes time to start, then release everyone at once.
    thread::sleep(Duration::from_millis(200));
    fs::write(dir.join("go"), "").unwrap();

    let mut shared_new = 0;
    for t in threads {
        shared_new += usize::from(t.join().unwrap());
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child writer failed: {:?}",
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        shared_new += stdout.lines().filter(|l| l.ends_with("SHARED-NEW")).count();
    }
    // Exactly one writer saw the shared host as new: every update re-read
    // the file under the lock.
    assert_eq!(shared_new, 1);

    let peers = KnownPeers::new(&path);
    let records = peers.list().unwrap();
    let hosts: HashSet<String> = records.iter().map(|r| r.name.clone()).collect();
    assert_eq!(hosts.len(), records.len(), "duplicate host");
    let mut want: HashSet<String> = HashSet::from(["shared.example".to_owned()]);
    for prefix in (0..THREADS)
        .map(|t| format!("thread{t}"))
        .chain((0..PROCESSES).map(|p| format!("proc{p}")))
    {
        for i in 0..HOSTS_PER_WRITER {
            want.insert(format!("{prefix}-{i}.example"));
        }
    }
    assert_eq!(hosts, want);
    for r in &records {
        if r.name != "shared.example" {
            let expected = format!("SHA256:{}", r.name.trim_end_matches(".example"));
            assert_eq!(r.fingerprint, expected);
        }
    }
    assert!(temp_files(&path).is_empty());
    fs::remove_dir_all(&dir).unwrap();
}

/// The looper's counters in the file. A complete version written after
/// counter k holds, for each host crash-j, the largest n <= k with
/// n % 20 == j: exactly the numbers max(0, k-19)..=k. Anything else (a torn
/// file, a mix of two versions) breaks that.
fn check_complete_version(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.starts_with("# blackpony known peers"), "{text:?}");
    assert!(text.ends_with('\n'), "{text:?}");
    let records = KnownPeers::new(path).list().unwrap();
    let mut numbers: Vec<u64> = Vec::new();
    for r in records.iter().filter(|r| r.name.starts_with("crash-")) {
        let n: u64 = r.fingerprint.strip_prefix("fp-").unwrap().parse().unwrap();
        assert_eq!(r.name, format!("crash-{}", n % LOOP_HOSTS), "{text}");
        numbers.push(n);
    }
    numbers.sort_unstable();
    let k = *numbers.last()?;
    let want: Vec<u64> = (k.saturating_sub(LOOP_HOSTS - 1)..=k).collect();
    assert_eq!(numbers, want, "not one complete version:\n{text}");
    Some(k)
}

#[test]
fn kill_9_never_leaves_a_torn_file() {
    const ITERATIONS: usize = 200;
    // Stop early on a slow machine; still require a meaningful run.
    const BUDGET: Duration = Duration::from_secs(15);
    let dir = scratch("crash");
    let path = dir.join("known_peers");
    let peers = KnownPeers::new(&path);
    let started = Instant::now();
    let mut next = 0;
    let mut leftovers_seen = 0;
    let mut iterations = 0;
    while iterations < ITERATIONS && started.elapsed() < BUDGET {
        iterations += 1;
        let mut child = spawn_child("looper", &path, &next.to_string());
        // Wait until the child has written once, so the kill lands while it
        // is busy writing.
        let stdout = child.stdout.take().unwrap();
        let ready = BufReader::new(stdout)
            .lines()
            .any(|l| l.is_ok_and(|l| l.ends_with("READY")));
        assert!(ready, "looper died before writing: {:?}", child.wait());
        thread::sleep(Duration::from_micros(rand::random_range(0..5_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let k = check_complete_version(&path).expect("looper wrote at least once");
        assert!(k >= next);
        next = k + 1;
        for tmp in temp_files(&path) {
            leftovers_seen += 1;
            assert_eq!(mode(&tmp), 0o600, "{}", tmp.display());
        }
        // A later writer is not disturbed by what the killed one left, and
        // cleans it up.
        peers
            .record("parent.example", &format!("fp-{iterations}"), "S")
            .unwrap();
        assert!(temp_files(&path).is_empty());
        check_complete_version(&path);
    }
    eprintln!(
        "{iterations} kills in {:?}, {next} records, {leftovers_seen} temp files left behind",
        started.elapsed()
    );
    assert!(iterations >= 20, "only {iterations} iterations");
    fs::remove_dir_all(&dir).unwrap();
}

/// The file format without a file: what `parse` accepts and refuses.
#[test]
fn parse_rules() {
    let p = Path::new("f");
    let ok = b"# c\n\nMX.Example.org. fp S 2026-01-02 2026-01-03\r\n";
    let lines = parse(ok, p).unwrap();
    assert_eq!(lines.len(), 3);
    assert!(matches!(&lines[2], Line::Peer(r) if r.name == "mx.example.org"));
    assert_eq!(parse(b"", p).unwrap(), Vec::new());
    assert_eq!(parse(b"\n", p).unwrap().len(), 1);
    let bad: &[&[u8]] = &[
        b"h fp s 2026-01-02",
        b"h fp s 2026-01-02 2026-01-02 extra",
        b"h fp s 2026-13-02 2026-01-02",
        b"h fp s 2026-01-02 26-01-02",
        b"h\xff fp s 2026-01-02 2026-01-02",
        b"h fp s 2026-01-02 2026-01-02\nH fp2 s 2026-01-02 2026-01-02",
    ];
    for data in bad {
        assert!(
            matches!(parse(data, p), Err(PeersError::Corrupt { .. })),
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    let long = format!("h {} s 2026-01-02 2026-01-02", "f".repeat(MAX_LINE_BYTES));
    assert!(parse(long.as_bytes(), p).is_err());
}

#[test]
fn hosts_are_normalized_and_checked() {
    let host_of = |line: &str| match &parse(line.as_bytes(), Path::new("f")).unwrap()[0] {
        Line::Peer(r) => r.name.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(host_of("A.B. fp s 2026-01-02 2026-01-02"), "a.b");
    assert_eq!(host_of("[1.2.3.4] fp s 2026-01-02 2026-01-02"), "[1.2.3.4]");
    // Refused before the file is touched: there is none.
    let peers = KnownPeers::new("/nonexistent/known_peers");
    for bad in ["", "a b", "a\nb", "#a", "é.org", &"a".repeat(256)] {
        assert!(
            matches!(peers.lookup(bad), Err(PeersError::Invalid { .. })),
            "{bad:?}"
        );
    }
    // The longest tokens still make a line we can read back.
    let t = "x".repeat(MAX_TOKEN);
    let line = format!("{t} {t} {t} 2026-01-02 2026-01-02");
    assert!(parse(line.as_bytes(), Path::new("f")).is_ok());
}

/// What `serialize` writes parses back to the same pins, and comments stay
/// comments (they may lose a trailing CR). The `known_peers` fuzz target
/// checks the same on any input.
#[test]
fn serialize_round_trips() {
    let samples: &[&[u8]] = &[
        b"",
        b"\n\n\r\n",
        b"#\xff\r",
        b"a b c 2026-01-01 2026-01-01",
        b"a b c 2026-01-01 2026-01-01\r",
        b"a b c 2026-01-01 2026-01-01\n#x\r\n  \t\n",
        b"a\tb  c 2026-01-01\t2026-01-01 ",
        b"\xff\xfe",
        b"\r",
    ];
    let p = Path::new("f");
    let mut parsed = 0;
    for data in samples {
        let Ok(lines) = parse(data, p) else { continue };
        parsed += 1;
        let again = parse(&serialize(&lines), p).expect("serialized file must parse");
        assert_eq!(lines.len(), again.len(), "{data:?}");
        for (a, b) in lines.iter().zip(&again) {
            match (a, b) {
                (Line::Peer(a), Line::Peer(b)) => assert_eq!(a, b),
                (Line::Other(_), Line::Other(_)) => {}
                _ => panic!("line kind changed on round trip: {data:?}"),
            }
        }
    }
    assert_eq!(parsed, 7, "all but the two non-UTF-8 samples parse");
}

/// A file of the first format (host pins, five fields) keeps its pins as
/// host pins; the first update rewrites all of it in the current format,
/// comments kept, the old column header replaced.
#[test]
fn old_format_is_read_and_migrated() {
    let dir = scratch("migrate");
    let path = dir.join("known_peers");
    let original = "# blackpony known peers: host fingerprint suite first-seen last-seen\n\
                    # ask bob\n\
                    mx1.example.org SHA256:one RSA-BLOWFISH 2025-01-01 2025-02-03\n\
                    [192.0.2.7] SHA256:two NOISE 2025-01-02 2025-01-02\n";
    fs::write(&path, original).unwrap();
    let peers = KnownPeers::new(&path);
    let known = peers.known("example.org", "MX1.example.org.").unwrap();
    let host = known.host.expect("the old line is a host pin");
    assert_eq!(
        (
            host.kind,
            host.fingerprint.as_str(),
            host.first_seen.as_str()
        ),
        (PinKind::Host, "SHA256:one", "2025-01-01")
    );
    assert!(known.domain.is_empty(), "no domain was seen encrypted yet");
    // Reading does not rewrite.
    assert_eq!(fs::read_to_string(&path).unwrap(), original);

    let r = peers.record_delivery(
        "Example.ORG",
        "mx1.example.org",
        "SHA256:one",
        "RSA-BLOWFISH",
    );
    assert_eq!(r.unwrap(), (Pinned::New, Pinned::Unchanged));
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        "# blackpony known peers: host|domain name fingerprint suite first-seen last-seen"
    );
    assert_eq!(lines[1], "# ask bob");
    assert!(lines[2].starts_with("host mx1.example.org SHA256:one RSA-BLOWFISH 2025-01-01 "));
    assert_eq!(
        lines[3],
        "host [192.0.2.7] SHA256:two NOISE 2025-01-02 2025-01-02"
    );
    assert!(lines[4].starts_with("domain example.org SHA256:one RSA-BLOWFISH "));
    // Written through the temp file and rename, nothing left behind.
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");
    fs::remove_dir_all(&dir).unwrap();
}

/// What a delivery records: the domain and the host on first contact, a
/// refresh of the same key, and never a replacement of a pinned key (the
/// `may` policy delivers to a changed key, and must not re-pin it).
#[test]
fn deliveries_pin_domain_and_host_and_never_replace() {
    let dir = scratch("delivery");
    let peers = KnownPeers::new(dir.join("known_peers"));
    let rd = |d: &str, h: &str, fp: &str| peers.record_delivery(d, h, fp, "S").unwrap();
    assert_eq!(
        rd("example.org", "mx1.example.org", "K1"),
        (Pinned::New, Pinned::New)
    );
    assert_eq!(
        rd("example.org", "mx1.example.org", "K1"),
        (Pinned::Unchanged, Pinned::Unchanged)
    );
    // Another MX with a key not of the domain: pinned neither to the domain
    // nor to that MX (its real key would look changed later).
    let before = fs::read(dir.join("known_peers")).unwrap();
    assert_eq!(
        rd("example.org", "mx2.example.org", "K2"),
        (Pinned::Kept, Pinned::Untrusted)
    );
    assert_eq!(
        rd("example.org", "mx1.example.org", "K2"),
        (Pinned::Kept, Pinned::Kept)
    );
    // A host pinned to K1 serving a new domain with K2: the domain is not pinned.
    assert_eq!(
        rd("new.org", "mx1.example.org", "K2"),
        (Pinned::Untrusted, Pinned::Kept)
    );
    assert_eq!(
        fs::read(dir.join("known_peers")).unwrap(),
        before,
        "nothing written"
    );
    assert_eq!(
        peers.known("example.org", "mx2.example.org").unwrap().host,
        None
    );
    // The domain's key at its other MX (same key on both): that MX is pinned.
    assert_eq!(
        rd("example.org", "mx2.example.org", "K1"),
        (Pinned::Unchanged, Pinned::New)
    );
    let known = peers.known("example.org", "mx1.example.org").unwrap();
    assert_eq!(known.host.unwrap().fingerprint, "K1");
    let keys: Vec<&str> = known
        .domain
        .iter()
        .map(|d| d.fingerprint.as_str())
        .collect();
    assert_eq!(keys, ["K1"]);
    // A second domain on the same MX host gets its own domain pin.
    assert_eq!(
        rd("other.org", "mx1.example.org", "K1"),
        (Pinned::New, Pinned::Unchanged)
    );
    // A literal is its own domain and host.
    assert_eq!(
        rd("[192.0.2.7]", "[192.0.2.7]", "K3"),
        (Pinned::New, Pinned::New)
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// `forget` per domain (all its keys) and per host; a name that is both.
#[test]
fn forget_per_domain_and_per_host() {
    let dir = scratch("forget");
    let path = dir.join("known_peers");
    fs::write(
        &path,
        "domain example.org K1 S 2025-01-01 2025-01-01\n\
         domain example.org K2 S 2025-01-01 2025-01-01\n\
         host mx1.example.org K1 S 2025-01-01 2025-01-01\n\
         host example.org K2 S 2025-01-01 2025-01-01\n\
         domain b.test K3 S 2025-01-01 2025-01-01\n",
    )
    .unwrap();
    let peers = KnownPeers::new(&path);
    let gone = peers.forget("mx1.example.org").unwrap();
    assert_eq!((gone.host, gone.domain_keys), (true, 0));
    let gone = peers.forget("EXAMPLE.org.").unwrap();
    assert_eq!((gone.host, gone.domain_keys), (true, 2));
    assert!(!peers.forget("example.org").unwrap().any());
    let left: Vec<(PinKind, String)> = peers
        .list()
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.name))
        .collect();
    assert_eq!(left, [(PinKind::Domain, "b.test".to_owned())]);
    fs::remove_dir_all(&dir).unwrap();
}

/// Domain lines: one per key; the same key twice, or a host twice, is an
/// error naming the line; an unknown kind is an error.
#[test]
fn domain_lines_parse() {
    let p = Path::new("f");
    let ok = b"domain a.org K1 S 2026-01-02 2026-01-03\ndomain A.org. K2 S 2026-01-02 2026-01-03\n\
               host a.org K1 S 2026-01-02 2026-01-03\n";
    let lines = parse(ok, p).unwrap();
    assert!(matches!(&lines[1], Line::Peer(r) if r.kind == PinKind::Domain && r.name == "a.org"));
    assert!(matches!(&lines[2], Line::Peer(r) if r.kind == PinKind::Host));
    let bad: &[&[u8]] = &[
        b"domain a.org K1 S 2026-01-02 2026-01-03\ndomain a.org K1 T 2026-01-02 2026-01-03",
        b"host a K1 S 2026-01-02 2026-01-03\na K2 S 2026-01-02 2026-01-03",
        b"mx a.org K1 S 2026-01-02 2026-01-03",
        b"domain a.org K1 S 2026-01-02",
    ];
    for data in bad {
        let err = parse(data, p).unwrap_err();
        assert!(matches!(err, PeersError::Corrupt { .. }), "{err}");
    }
}
