//! Small pure pieces through the public API: suite names and policy
//! (`suite`) and the ROTn cipher (`crypto::rot`).

use blackpony::crypto::rot::{rotate, unrotate};
use blackpony::suite::{SuiteId, SuitePolicy, CLIENT_DEFAULT};

// ---- suite ----

#[test]
fn suite_names_parse() {
    for (name, want) in [
        ("rsa-blowfish", Some(SuiteId::RsaBlowfish)),
        ("ROT13", Some(SuiteId::Rot(13))),
        ("rot1", Some(SuiteId::Rot(1))),
        ("X25519-CHACHA20POLY1305", None),
        ("ROT0", None),
        ("ROT26", None),
        ("ROT013", None),
        ("ROT", None),
        ("ROT-1", None),
        ("ROT1x", None),
        ("AES", None),
    ] {
        assert_eq!(SuiteId::parse(name), want, "{name}");
    }
}

#[test]
fn choose_follows_server_order_and_policy() {
    let v2 = [SuiteId::Noise, SuiteId::RsaBlowfish];
    let strict = SuitePolicy::new(&v2, false);
    let rot = SuitePolicy::new(&v2, true);
    let client = SuitePolicy::new(&CLIENT_DEFAULT, false);
    let old = SuitePolicy::from_list("RSA-BLOWFISH", false).unwrap();
    for (policy, offered, want) in [
        (&strict, "ROT13 RSA-BLOWFISH", Some(SuiteId::RsaBlowfish)),
        (&rot, "ROT13 RSA-BLOWFISH", Some(SuiteId::Rot(13))),
        (&strict, "ROT13 FOO", None),
        (
            &client,
            "NOISE-25519-CHACHAPOLY-SHA256 RSA-BLOWFISH",
            Some(SuiteId::Noise),
        ),
        // An older server's list: the client takes RSA-BLOWFISH.
        (
            &client,
            "X25519-CHACHA20POLY1305 RSA-BLOWFISH",
            Some(SuiteId::RsaBlowfish),
        ),
        (
            &old,
            "NOISE-25519-CHACHAPOLY-SHA256 RSA-BLOWFISH",
            Some(SuiteId::RsaBlowfish),
        ),
    ] {
        assert_eq!(policy.choose(offered), want, "{policy:?} offered {offered}");
    }
    assert_eq!(
        rot.server_offer(true, true),
        "NOISE-25519-CHACHAPOLY-SHA256 RSA-BLOWFISH ROT13"
    );
    assert_eq!(rot.server_offer(false, false), "ROT13");
    assert_eq!(old.server_offer(true, false), "RSA-BLOWFISH");
    assert!(SuitePolicy::from_list("AES", false).is_err());
    assert!(SuitePolicy::from_list("", false).is_err());
}

// ---- crypto::rot ----

#[test]
fn rot_keeps_case_and_non_letters_and_undoes() {
    for (plain, n, cipher) in [
        (
            &b"Hello, World! 123 zZ"[..],
            13,
            &b"Uryyb, Jbeyq! 123 mM"[..],
        ),
        (b"EHLO az", 1, b"FIMP ba"),
    ] {
        let mut b = plain.to_vec();
        rotate(&mut b, n);
        assert_eq!(b, cipher, "ROT{n}");
        unrotate(&mut b, n);
        assert_eq!(b, plain, "ROT{n} undone");
    }
    // ROT13 is its own inverse.
    let mut b = b"Hello, World! 123 zZ".to_vec();
    rotate(&mut b, 13);
    rotate(&mut b, 13);
    assert_eq!(&b, b"Hello, World! 123 zZ");
}
