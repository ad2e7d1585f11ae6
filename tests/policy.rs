//! The destination policy map and the deliver-or-defer decision, through
//! the public API: `PolicyMap::parse`/`load`/`lookup` and `policy::decide`.

use blackpony::peers::{Known, PeerRecord, PinKind};
use blackpony::policy::{decide, Observation, Policy, PolicyError, PolicyMap, Verdict};

const MAP: &str = "\
# comment
example.org        require
.example.org       tofu     # subdomains
.mail.example.org  may
[mx.example.net]   may
EXAMPLE.NET.       tofu
.sub.org           require
";

#[test]
fn policy_words() {
    for p in [Policy::May, Policy::Tofu, Policy::Require] {
        assert_eq!(p.to_string().parse::<Policy>().unwrap(), p);
    }
    assert_eq!("REQUIRE".parse::<Policy>().unwrap(), Policy::Require);
    assert!("encrypt".parse::<Policy>().is_err());
    assert!("".parse::<Policy>().is_err());
}

#[test]
fn lookups() {
    let map = PolicyMap::parse(MAP).unwrap();
    let d = Policy::May;
    let cases = [
        ("example.org", Policy::Require),
        ("Example.ORG.", Policy::Require),
        ("a.example.org", Policy::Tofu),
        ("a.b.example.org", Policy::Tofu),
        ("mail.example.org", Policy::Tofu),
        ("x.mail.example.org", Policy::May),
        ("badexample.org", d),
        ("org", d),
        ("[mx.example.net]", Policy::May),
        ("[MX.example.net.]", Policy::May),
        ("mx.example.net", d),
        ("example.net", Policy::Tofu),
        ("a.example.net", d),
        ("[a.example.org]", d),
        ("sub.org", d),
        ("x.sub.org", Policy::Require),
        ("", d),
    ];
    for (domain, want) in cases {
        assert_eq!(map.lookup(domain, d), want, "{domain}");
    }
    assert_eq!(map.lookup("nowhere.test", Policy::Require), Policy::Require);
}

#[test]
fn exact_wins_over_suffix_in_any_order() {
    let map = PolicyMap::parse(".a.b may\nx.a.b require\n.x.a.b tofu\n").unwrap();
    assert_eq!(map.lookup("x.a.b", Policy::Tofu), Policy::Require);
    assert_eq!(map.lookup("y.x.a.b", Policy::May), Policy::Tofu);
    let map = PolicyMap::parse(".x.a.b tofu\n.a.b require\n").unwrap();
    assert_eq!(map.lookup("y.x.a.b", Policy::May), Policy::Tofu);
}

#[test]
fn errors_name_the_line() {
    let cases = [
        ("a.org may\nb.org\n", 2),
        ("a.org may extra\n", 1),
        ("# c\n\na.org maybe\n", 3),
        ("a.org may\n. may\n", 2),
        ("a..org may\n", 1),
        ("[a.org may\n", 1),
        ("[] may\n", 1),
        ("a.org may\nA.ORG. tofu\n", 2),
        ("é.org may\n", 1),
        ("a/b may\n", 1),
    ];
    for (text, line) in cases {
        match PolicyMap::parse(text) {
            Err(PolicyError::Syntax { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn load_names_the_file() {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("bp-policy-unit-{}", std::process::id()));
    std::fs::write(&path, b"a.org may\n\xff\n").unwrap();
    let err = PolicyMap::load(&path).unwrap_err();
    assert!(
        matches!(err, PolicyError::Syntax { line: 2, .. }),
        "{err:?}"
    );
    std::fs::write(&path, "a.org may\nb.org nope\n").unwrap();
    let err = PolicyMap::load(&path).unwrap_err().to_string();
    assert!(
        err.contains(&*path.to_string_lossy()) && err.contains("line 2"),
        "{err}"
    );
    std::fs::write(&path, "a.org require\r\n").unwrap();
    let map = PolicyMap::load(&path).unwrap();
    assert_eq!(map.lookup("a.org", Policy::May), Policy::Require);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(PolicyMap::load(&path), Err(PolicyError::Io(..))));
}

fn pin(kind: PinKind, name: &str, fp: &str) -> PeerRecord {
    PeerRecord {
        kind,
        name: name.into(),
        fingerprint: fp.into(),
        suite: "S".into(),
        first_seen: "2026-01-01".into(),
        last_seen: "2026-01-02".into(),
    }
}

/// What the store could hold for one delivery: nothing, the MX host pinned
/// to A, the domain seen with keys A and C, or both.
fn known(host: Option<&str>, domain: &[&str]) -> Known {
    Known {
        host: host.map(|fp| pin(PinKind::Host, "mx.example.org", fp)),
        domain: domain
            .iter()
            .map(|fp| pin(PinKind::Domain, "example.org", fp))
            .collect(),
    }
}

/// The whole table of `decide`, case by case: the host's pin and the
/// domain's keys each hold on their own, and together.
#[test]
fn decision_table() {
    use Policy::*;
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum V {
        Ok,
        Warn,
        Defer,
    }
    let enc = |fp: &str| Observation::Encrypted {
        fingerprint: fp.into(),
    };
    let none = known(None, &[]);
    let host = known(Some("A"), &[]);
    let dom = known(None, &["A", "C"]);
    let both = known(Some("A"), &["A", "C"]);
    let plain = Observation::Plain;
    let mut table: Vec<(Policy, &Known, Observation, V)> = vec![
        (May, &none, plain.clone(), V::Ok),
        (May, &none, enc("A"), V::Ok),
        (Tofu, &none, plain.clone(), V::Ok),
        (Tofu, &none, enc("A"), V::Ok),
        (Require, &none, plain.clone(), V::Defer),
        (Require, &none, enc("A"), V::Ok),
        // Fingerprints compare exactly: no case folding of opaque tokens.
        (Tofu, &host, enc("a"), V::Defer),
        (May, &host, enc(""), V::Warn),
        (Require, &host, enc("A "), V::Defer),
        // A domain's other key is fine at an MX not pinned itself (another
        // MX of the domain)...
        (Tofu, &dom, enc("C"), V::Ok),
        (Require, &dom, enc("C"), V::Ok),
        // ...but not at an MX pinned to A: the host pin holds on its own.
        (Tofu, &both, enc("C"), V::Defer),
        (May, &both, enc("C"), V::Warn),
    ];
    // For every kind of "known": the pinned key passes, another key and a
    // plain session are refused by tofu and require, warned about by may.
    for k in [&host, &dom, &both] {
        for (policy, bad) in [(May, V::Warn), (Tofu, V::Defer), (Require, V::Defer)] {
            table.push((policy, k, enc("A"), V::Ok));
            table.push((policy, k, enc("B"), bad));
            table.push((policy, k, plain.clone(), bad));
        }
    }
    assert_eq!(table.len(), 13 + 27);
    for (policy, known, seen, want) in table {
        let got = match decide(policy, known, &seen) {
            Verdict::Proceed => V::Ok,
            Verdict::ProceedWithWarning(r) => {
                assert!(!r.is_empty() && !r.contains('\n'));
                V::Warn
            }
            Verdict::Defer(r) => {
                assert!(!r.is_empty() && !r.contains('\n'));
                V::Defer
            }
        };
        assert_eq!(got, want, "{policy} {known:?} {seen:?}");
    }
    let Verdict::Defer(r) = decide(Tofu, &host, &enc("B")) else {
        unreachable!()
    };
    assert!(
        r.contains("key changed") && r.contains("--forget mx.example.org"),
        "{r}"
    );
    let Verdict::Defer(r) = decide(Tofu, &dom, &enc("B")) else {
        unreachable!()
    };
    assert!(r.contains("--forget example.org"), "{r}");
    let Verdict::ProceedWithWarning(r) = decide(May, &host, &plain) else {
        unreachable!()
    };
    assert!(r.contains("possible stripping"), "{r}");
    let Verdict::Defer(r) = decide(Tofu, &dom, &plain) else {
        unreachable!()
    };
    assert!(r.contains("domain example.org previously encrypted"), "{r}");
}

/// Every entry of a map that parses finds itself: an exact match beats
/// everything. The `policy` fuzz target checks the same on any input.
#[test]
fn every_entry_finds_itself() {
    let samples = [
        "",
        "a may",
        "[ may",
        "] may",
        ".[a] may",
        "[.] may\n. tofu",
        "a.b may #",
        "[mx.example.net..] require\n",
        MAP,
    ];
    let mut entries = 0;
    for text in samples {
        let Ok(map) = PolicyMap::parse(text) else {
            continue;
        };
        for (key, policy) in map.entries() {
            assert_eq!(map.lookup(key, Policy::May), *policy, "{key}");
            entries += 1;
        }
    }
    assert_eq!(entries, 8, "a may, a.b may and the 6 entries of MAP");
}
