//! Known-answer tests for the primitives of the forward-secret suite
//! NOISE-25519-CHACHAPOLY-SHA256 (handshake v2), through the same crates the
//! library uses in `noise/src/lib.rs` (X25519, ChaCha20-Poly1305),
//! `src/cert.rs` (RSA-PSS) and `wire/src/aead.rs` (records):
//!
//! - X25519 (x25519-dalek): `EphemeralSecret::diffie_hellman` and
//!   `SharedSecret::was_contributory`, plus the bare RFC 7748 `x25519`.
//! - ChaCha20-Poly1305 (chacha20poly1305): `AeadInOut::encrypt_inout_detached`
//!   and `decrypt_inout_detached` with 12-byte nonces.
//! - RSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt (rsa): `PublicKey::verify`
//!   with `Pss::<Sha256>::new()` over a SHA-256 digest, and `sign_with_rng`
//!   with `Pss::<Sha256>::new_blinded()`.
//! - The record nonce `iv XOR (0^4 || seq_be)`, anchored on RFC 9001's
//!   ChaCha20-Poly1305 example, and the library's records (sealed by
//!   `blackpony::wire::record::Sealer` with the suite's `protection`) opened
//!   by a ChaCha20Poly1305 keyed independently of the library's Protection.
//!
//! Wycheproof vectors are converted by `tests/vectors/convert.py` into the
//! line format `crypto/tests/primitive_vectors.rs` also reads (see the README in
//! `tests/vectors/`). Every test counts what it checked and asserts the
//! count, so a parse that silently finds nothing fails.
//!
//! The vectors' scalars reach an `EphemeralSecret` through
//! `EphemeralSecret::random_from_rng` with an RNG that hands out exactly that
//! scalar once ([`OneScalar`]); x25519-dalek computes the same function for
//! its `StaticSecret`, which the Noise handshake uses.

use std::collections::HashMap;
use std::convert::Infallible;

use blackpony::crypto::Secret;
use blackpony::keys::{parse_peer_key, HostKey};
use blackpony::wire::aead::protection;
use blackpony::wire::record::{Opened, Opener, RecordType, Sealer, HEADER_LEN};
use blackpony::wire::schedule::{next_traffic, traffic_key, TrafficSecret};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use rsa::traits::PublicKeyParts;
use rsa::{Pss, PublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x25519_dalek::rand_core::{TryCryptoRng, TryRng};
use x25519_dalek::{x25519, EphemeralSecret, PublicKey as DhPublic, X25519_BASEPOINT_BYTES};

// ---------------------------------------------------------------------------
// Helpers (the parser is the one of crypto/tests/primitive_vectors.rs, plus the
// `acceptable` result and flags)
// ---------------------------------------------------------------------------

/// Decodes hex (either case). Panics on malformed input.
fn hex(s: &str) -> Vec<u8> {
    let ok = s.len().is_multiple_of(2) && s.bytes().all(|c| c.is_ascii_hexdigit());
    assert!(ok, "bad hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex32(s: &str) -> [u8; 32] {
    hex(s).try_into().expect("expected 32 bytes of hex")
}

fn hex12(s: &str) -> [u8; 12] {
    hex(s).try_into().expect("expected 12 bytes of hex")
}

/// Wycheproof's verdict on one vector.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Valid,
    /// Legal input that a library may refuse (X25519: low-order and twist
    /// points, non-canonical encodings).
    Acceptable,
    Invalid,
}

/// One `group`/`test` record of a converted vector file.
#[path = "support/converted.rs"]
mod converted;
use converted::{parse_converted, Record};

impl<'a> Record<'a> {
    fn bytes(&self, key: &str) -> Vec<u8> {
        hex(self.get(key))
    }
    fn arr32(&self, key: &str) -> [u8; 32] {
        hex32(self.get(key))
    }
    fn verdict(&self) -> Verdict {
        match self.get("result") {
            "valid" => Verdict::Valid,
            "acceptable" => Verdict::Acceptable,
            "invalid" => Verdict::Invalid,
            other => panic!("unexpected result {other}"),
        }
    }
    fn has_flag(&self, flag: &str) -> bool {
        self.get("flags").split(',').any(|f| f == flag)
    }
}

// ---------------------------------------------------------------------------
// X25519: Wycheproof and RFC 7748
// ---------------------------------------------------------------------------

/// An "RNG" that yields one given 32-byte scalar, once, and nothing else.
/// It lets a known scalar into an `EphemeralSecret` (whose only constructors
/// take randomness), so the vectors exercise the library's own type and
/// `diffie_hellman`. Test-only: it is of course not random.
struct OneScalar(Option<[u8; 32]>);

impl TryRng for OneScalar {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        panic!("EphemeralSecret asked for a u32")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        panic!("EphemeralSecret asked for a u64")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let scalar = self.0.take().expect("the scalar is handed out once");
        assert_eq!(dst.len(), 32, "EphemeralSecret takes 32 bytes");
        dst.copy_from_slice(&scalar);
        Ok(())
    }
}

impl TryCryptoRng for OneScalar {}

/// An `EphemeralSecret` holding exactly `scalar` (unclamped, as x25519-dalek
/// stores it; clamping happens in `diffie_hellman` and `PublicKey::from`).
fn ephemeral(scalar: [u8; 32]) -> EphemeralSecret {
    let mut rng = OneScalar(Some(scalar));
    let secret = EphemeralSecret::random_from_rng(&mut rng);
    assert!(rng.0.is_none(), "scalar not consumed");
    secret
}

/// The DH computation through x25519-dalek's `diffie_hellman`: the
/// shared secret, or `None` when it is not contributory (all zero).
fn library_dh(private: [u8; 32], public: [u8; 32]) -> (Option<[u8; 32]>, [u8; 32]) {
    let s = ephemeral(private).diffie_hellman(&DhPublic::from(public));
    (s.was_contributory().then(|| *s.as_bytes()), *s.as_bytes())
}

#[test]
fn x25519_wycheproof() {
    let (count, records) = parse_converted(include_str!("vectors/x25519.txt"));
    assert_eq!(count, 518, "numberOfTests in x25519_test.json");
    let (mut valid, mut acceptable, mut refused) = (0, 0, 0);
    // Acceptable cases by flag, for the ones the library goes on with.
    let mut acceptable_used: HashMap<&str, usize> = HashMap::new();
    for t in &records {
        assert_eq!(t.kind, "test");
        let (private, public, shared) = (t.arr32("private"), t.arr32("public"), t.arr32("shared"));
        let tc = t.tc();

        // The bare RFC 7748 function: the exact shared secret, every case
        // (for the low-order ones that is all zeros).
        assert_eq!(x25519(private, public), shared, "x25519() tc {tc}");

        // The library's path: same bytes; contributory exactly when the
        // shared secret is not all zero, which is exactly the low-order cases.
        let (used, raw) = library_dh(private, public);
        assert_eq!(raw, shared, "diffie_hellman tc {tc}");
        let low_order = t.has_flag("ZeroSharedSecret") || t.has_flag("LowOrderPublic");
        assert_eq!(
            t.has_flag("ZeroSharedSecret"),
            t.has_flag("LowOrderPublic"),
            "tc {tc}: the two flags go together in this file"
        );
        assert_eq!(low_order, shared == [0u8; 32], "tc {tc}");
        if low_order {
            assert_eq!(used, None, "low-order tc {tc} must not be contributory");
            assert_eq!(t.verdict(), Verdict::Acceptable, "tc {tc}");
            refused += 1;
        } else {
            assert_eq!(used, Some(shared), "tc {tc} must be contributory");
        }

        match t.verdict() {
            Verdict::Valid => valid += 1,
            Verdict::Acceptable => {
                acceptable += 1;
                if !low_order {
                    for f in t.get("flags").split(',') {
                        *acceptable_used.entry(f).or_default() += 1;
                    }
                }
            }
            Verdict::Invalid => panic!("no invalid X25519 vectors expected (tc {tc})"),
        }
    }
    assert_eq!(valid + acceptable, count);
    assert_eq!((valid, acceptable, refused), (264, 254, 31));
    // What x25519-dalek (and so the library) does with the 223 `acceptable`
    // inputs that are not low order: it computes RFC 7748's answer (checked
    // above) and the handshake goes on. Twist points, non-canonical u
    // (>= p, or the top bit set) and the other special public keys are all
    // accepted; only an all-zero result is refused (all 8 SmallPublicKey
    // cases are among those 31).
    assert_eq!(acceptable - refused, 223);
    let mut flags: Vec<(&str, usize)> = acceptable_used.into_iter().collect();
    flags.sort_unstable();
    assert_eq!(
        flags,
        [
            ("EdgeCaseMultiplication", 170),
            ("EdgeCaseShared", 8),
            ("Ktv", 1),
            ("NonCanonicalPublic", 13),
            ("SpecialPublicKey", 38),
            ("Twist", 216),
        ]
    );
}

/// RFC 7748 section 5.2: (scalar, u-coordinate, output).
const RFC7748_5_2: [(&str, &str, &str); 2] = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
];

/// RFC 7748 section 5.2, iterated: k = u = 9, then k, u = x25519(k, u), k.
const RFC7748_ITER_1: &str = "422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079";
const RFC7748_ITER_1000: &str = "684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51";

/// RFC 7748 section 6.1 (Curve25519 Diffie-Hellman).
const RFC7748_ALICE_PRIVATE: &str =
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
const RFC7748_ALICE_PUBLIC: &str =
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
const RFC7748_BOB_PRIVATE: &str =
    "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb";
const RFC7748_BOB_PUBLIC: &str = "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f";
const RFC7748_SHARED: &str = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";

#[test]
fn x25519_rfc7748() {
    let mut n = 0;
    // 5.2: the second u-coordinate has its top bit set, which X25519 masks.
    for (scalar, u, out) in RFC7748_5_2 {
        let (scalar, u, out) = (hex32(scalar), hex32(u), hex32(out));
        assert_eq!(x25519(scalar, u), out);
        assert_eq!(library_dh(scalar, u), (Some(out), out));
        n += 1;
    }

    // 5.2 iterated, 1 and 1000 times. (The 1,000,000-iteration value is left
    // out to keep the test fast.)
    let (mut k, mut u) = (X25519_BASEPOINT_BYTES, X25519_BASEPOINT_BYTES);
    for i in 1..=1000 {
        let r = x25519(k, u);
        u = k;
        k = r;
        if i == 1 {
            assert_eq!(k, hex32(RFC7748_ITER_1), "after 1 iteration");
            n += 1;
        }
    }
    assert_eq!(k, hex32(RFC7748_ITER_1000), "after 1000 iterations");
    n += 1;

    // 6.1: public keys from private keys, both through the basepoint and
    // through the library's `PublicKey::from(&EphemeralSecret)`, and the
    // shared secret both ways.
    let (a, b) = (hex32(RFC7748_ALICE_PRIVATE), hex32(RFC7748_BOB_PRIVATE));
    let (a_pub, b_pub) = (hex32(RFC7748_ALICE_PUBLIC), hex32(RFC7748_BOB_PUBLIC));
    let shared = hex32(RFC7748_SHARED);
    assert_eq!(x25519(a, X25519_BASEPOINT_BYTES), a_pub);
    assert_eq!(x25519(b, X25519_BASEPOINT_BYTES), b_pub);
    assert_eq!(DhPublic::from(&ephemeral(a)).to_bytes(), a_pub);
    assert_eq!(DhPublic::from(&ephemeral(b)).to_bytes(), b_pub);
    assert_eq!(library_dh(a, b_pub), (Some(shared), shared));
    assert_eq!(library_dh(b, a_pub), (Some(shared), shared));
    n += 1;

    // 6.1 also says to check for the all-zero output: the all-zero public
    // key (u = 0, a point of order 2) gives it and is refused.
    assert_eq!(library_dh(a, [0u8; 32]), (None, [0u8; 32]));
    n += 1;
    assert_eq!(n, 6);
}

// ---------------------------------------------------------------------------
// ChaCha20-Poly1305: Wycheproof and RFC 8439
// ---------------------------------------------------------------------------

fn chacha(key: &[u8]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new_from_slice(key).expect("32-byte key")
}

/// Encrypt as `ChachaPoly::seal` does: in place, detached tag.
fn seal(aead: &ChaCha20Poly1305, nonce: &Nonce, aad: &[u8], msg: &[u8]) -> (Vec<u8>, Tag) {
    let mut buf = msg.to_vec();
    let tag = aead
        .encrypt_inout_detached(nonce, aad, buf.as_mut_slice().into())
        .expect("small message");
    (buf, tag)
}

/// Decrypt as `ChachaPoly::open` does: the tag from a slice, then in place.
fn open(
    aead: &ChaCha20Poly1305,
    nonce: &Nonce,
    aad: &[u8],
    ct: &[u8],
    tag: &[u8],
) -> Option<Vec<u8>> {
    let tag = Tag::try_from(tag).ok()?;
    let mut buf = ct.to_vec();
    aead.decrypt_inout_detached(nonce, aad, buf.as_mut_slice().into(), &tag)
        .ok()
        .map(|()| buf)
}

#[test]
fn chacha20_poly1305_wycheproof() {
    let (count, records) = parse_converted(include_str!("vectors/chacha20_poly1305.txt"));
    assert_eq!(count, 325, "numberOfTests in chacha20_poly1305_test.json");
    let mut iv_bits = None;
    let (mut valid, mut invalid, mut skipped) = (0, 0, 0);
    for t in &records {
        if t.kind == "group" {
            assert_eq!((t.num("keybits"), t.num("tagbits")), (256, 128));
            iv_bits = Some(t.num("ivbits"));
            continue;
        }
        let tc = t.tc();
        let (key, iv, aad) = (t.bytes("key"), t.bytes("iv"), t.bytes("aad"));
        let (msg, ct, tag) = (t.bytes("msg"), t.bytes("ct"), t.bytes("tag"));
        assert_eq!(Some(iv.len() * 8), iv_bits, "tc {tc}");
        let Ok(nonce) = Nonce::try_from(iv.as_slice()) else {
            // Not a 12-byte nonce: the type cannot even hold it. Skipped.
            assert_ne!(iv.len(), 12);
            assert_eq!(t.verdict(), Verdict::Invalid, "tc {tc}");
            assert!(t.has_flag("InvalidNonceSize"), "tc {tc}");
            skipped += 1;
            continue;
        };
        let aead = chacha(&key);
        let (got_ct, got_tag) = seal(&aead, &nonce, &aad, &msg);
        match t.verdict() {
            Verdict::Valid => {
                assert_eq!(got_ct, ct, "ciphertext tc {tc}");
                assert_eq!(got_tag[..], tag[..], "tag tc {tc}");
                assert_eq!(open(&aead, &nonce, &aad, &ct, &tag), Some(msg), "tc {tc}");
                valid += 1;
            }
            Verdict::Invalid => {
                assert!(t.has_flag("ModifiedTag"), "tc {tc}");
                assert_eq!(got_ct, ct, "tc {tc}: only the tag was modified");
                assert_ne!(got_tag[..], tag[..], "tc {tc}");
                assert_eq!(
                    open(&aead, &nonce, &aad, &ct, &tag),
                    None,
                    "invalid tc {tc} accepted"
                );
                invalid += 1;
            }
            Verdict::Acceptable => panic!("no acceptable AEAD vectors expected (tc {tc})"),
        }
    }
    assert_eq!(valid + invalid + skipped, count);
    assert_eq!((valid, invalid, skipped), (256, 60, 9));
}

/// RFC 8439 section 2.8.2: AEAD_CHACHA20_POLY1305 example.
const RFC8439_PLAINTEXT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";
const RFC8439_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
const RFC8439_KEY: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
/// The 32-bit constant 07000000 followed by the 64-bit IV 4041424344454647.
const RFC8439_NONCE: &str = "070000004041424344454647";
const RFC8439_CIPHERTEXT: &str = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36\
92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc\
3ff4def08e4b7a9de576d26586cec64b6116";
const RFC8439_TAG: &str = "1ae10b594f09e26a7e902ecbd0600691";

#[test]
fn chacha20_poly1305_rfc8439() {
    let aead = chacha(&hex(RFC8439_KEY));
    let nonce = Nonce::from(hex12(RFC8439_NONCE));
    let aad = hex(RFC8439_AAD);
    let (ct, tag) = (hex(RFC8439_CIPHERTEXT), hex(RFC8439_TAG));
    assert_eq!(RFC8439_PLAINTEXT.len(), 114);

    let (got_ct, got_tag) = seal(&aead, &nonce, &aad, RFC8439_PLAINTEXT);
    assert_eq!(got_ct, ct);
    assert_eq!(got_tag[..], tag[..]);
    assert_eq!(
        open(&aead, &nonce, &aad, &ct, &tag).as_deref(),
        Some(RFC8439_PLAINTEXT)
    );

    // Any change to ciphertext, tag, associated data or nonce fails, and a
    // tag of the wrong length is refused before decryption.
    let mut n = 0;
    for i in [0usize, 57, 113] {
        let mut bad = ct.clone();
        bad[i] ^= 0x01;
        assert_eq!(open(&aead, &nonce, &aad, &bad, &tag), None, "ct byte {i}");
        n += 1;
    }
    for i in [0usize, 15] {
        let mut bad = tag.clone();
        bad[i] ^= 0x80;
        assert_eq!(open(&aead, &nonce, &aad, &ct, &bad), None, "tag byte {i}");
        n += 1;
    }
    let mut bad_aad = aad.clone();
    bad_aad[11] ^= 0x01;
    assert_eq!(open(&aead, &nonce, &bad_aad, &ct, &tag), None);
    assert_eq!(open(&aead, &nonce, &[], &ct, &tag), None);
    let mut bad_nonce = hex12(RFC8439_NONCE);
    bad_nonce[11] ^= 0x01;
    assert_eq!(open(&aead, &Nonce::from(bad_nonce), &aad, &ct, &tag), None);
    assert_eq!(open(&aead, &nonce, &aad, &ct, &tag[..15]), None);
    n += 4;
    assert_eq!(n, 9);
}

// ---------------------------------------------------------------------------
// RSA-PSS (SHA-256, MGF1-SHA-256, salt 32): Wycheproof 2048 and 3072 bits,
// and a sign/verify round trip
// ---------------------------------------------------------------------------

/// Wycheproof `acceptable` RSA-PSS vectors, with what rsa 0.10 does on each:
/// (key bits, tc, verifies). The two current files have none; a new file
/// that has some must list rsa's verdicts here.
const PSS_ACCEPTABLE: &[(usize, &str, bool)] = &[];

/// Verify as the library does (`parse_signed()` in src/cert.rs):
/// PSS over the SHA-256 digest, salt length = digest length.
fn pss_verify(key: &PublicKey, msg: &[u8], sig: &[u8]) -> rsa::Result<()> {
    key.verify(Pss::<Sha256>::new(), &Sha256::digest(msg), sig)
}

/// Checks one converted Wycheproof PSS file; returns (valid, invalid,
/// acceptable) counts and rsa's verdicts on the acceptable ones.
fn pss_file(text: &str, bits: usize) -> (usize, usize, usize, Vec<(usize, String, bool)>) {
    let (count, records) = parse_converted(text);
    let mut key: Option<PublicKey> = None;
    let (mut valid, mut invalid) = (0, 0);
    let mut acceptable = Vec::new();
    for t in &records {
        if t.kind == "group" {
            assert_eq!(
                (
                    t.get("sha"),
                    t.get("mgf"),
                    t.get("mgfsha"),
                    t.num("slen"),
                    t.num("bits")
                ),
                ("SHA-256", "MGF1", "SHA-256", 32, bits)
            );
            // Through the library's own SPKI parser, as a peer's key arrives.
            let k = parse_peer_key(&t.bytes("spki")).expect("SPKI within the key-size limits");
            assert_eq!(&*k.n_bytes(), &t.bytes("n")[..], "modulus");
            assert_eq!(&*k.e_bytes(), &t.bytes("e")[..], "public exponent");
            assert_eq!(k.size() * 8, bits);
            key = Some(k);
            continue;
        }
        let key = key.as_ref().expect("a group precedes its tests");
        let tc = t.tc();
        let (msg, sig) = (t.bytes("msg"), t.bytes("sig"));
        let res = pss_verify(key, &msg, &sig);
        match t.verdict() {
            Verdict::Valid => {
                assert_eq!(res, Ok(()), "valid {bits}-bit tc {tc} rejected");
                // The salt length is fixed, not recovered from the signature:
                // the same signature under another salt length fails.
                for salt in [0usize, 20, 64] {
                    let other = key.verify(
                        Pss::<Sha256>::new_with_salt(salt),
                        &Sha256::digest(&msg),
                        &sig,
                    );
                    assert_eq!(other, Err(rsa::Error::Verification), "tc {tc} salt {salt}");
                }
                valid += 1;
            }
            Verdict::Invalid => {
                // One error for every kind of failure.
                assert_eq!(
                    res,
                    Err(rsa::Error::Verification),
                    "invalid {bits}-bit tc {tc}"
                );
                invalid += 1;
            }
            Verdict::Acceptable => acceptable.push((bits, tc.to_owned(), res.is_ok())),
        }
    }
    assert_eq!(valid + invalid + acceptable.len(), count);
    (count, valid, invalid, acceptable)
}

#[test]
fn rsa_pss_sha256_wycheproof() {
    let mut all_acceptable = Vec::new();
    let mut n = 0;
    for (text, bits) in [
        (include_str!("vectors/rsa_pss_2048_sha256.txt"), 2048),
        (include_str!("vectors/rsa_pss_3072_sha256.txt"), 3072),
    ] {
        let (count, valid, invalid, acceptable) = pss_file(text, bits);
        // Both files: 61 valid signatures plus 2 with an all-0 / all-1 salt
        // (valid), 44 modified paddings and 1 PKCS#1 v1.5 signature (invalid).
        assert_eq!(
            (count, valid, invalid, acceptable.len()),
            (108, 63, 45, 0),
            "{bits} bits"
        );
        n += count;
        all_acceptable.extend(acceptable);
    }
    assert_eq!(n, 216);
    let expected: Vec<(usize, String, bool)> = PSS_ACCEPTABLE
        .iter()
        .map(|&(bits, tc, ok)| (bits, tc.to_owned(), ok))
        .collect();
    assert_eq!(all_acceptable, expected);
}

#[test]
fn rsa_pss_sha256_round_trip() {
    // A fresh host key, as the library makes and publishes it (SPKI DER).
    let host = HostKey::generate(2048).expect("2048-bit key");
    let public = parse_peer_key(host.public_der()).expect("own SPKI parses");
    assert_eq!(public.size(), 256);
    let mut rng = rand::rngs::SysRng;
    let mut n = 0;
    for msg in [&b""[..], b"blackpony server signature", &[0xa5; 1000]] {
        let digest = Sha256::digest(msg);
        let sig = host
            .private()
            .sign_with_rng(&mut rng, Pss::<Sha256>::new_blinded(), &digest)
            .expect("sign");
        assert_eq!(sig.len(), 256);
        assert_eq!(pss_verify(&public, msg, &sig), Ok(()));
        // Randomised by the salt: a second signature differs and verifies.
        let again = host
            .private()
            .sign_with_rng(&mut rng, Pss::<Sha256>::new_blinded(), &digest)
            .expect("sign");
        assert_ne!(again, sig);
        assert_eq!(pss_verify(&public, msg, &again), Ok(()));
        // A flipped bit anywhere in the signature fails.
        for (i, bit) in [(0usize, 0x01u8), (1, 0x80), (128, 0x10), (255, 0x01)] {
            let mut bad = sig.clone();
            bad[i] ^= bit;
            assert_eq!(
                pss_verify(&public, msg, &bad),
                Err(rsa::Error::Verification),
                "sig byte {i}"
            );
        }
        // So does a flipped bit in the digest, or a truncated signature.
        let mut bad_digest = digest;
        bad_digest[31] ^= 0x01;
        assert!(public
            .verify(Pss::<Sha256>::new(), &bad_digest, &sig)
            .is_err());
        assert!(pss_verify(&public, msg, &sig[..255]).is_err());
        n += 1;
    }
    // Another key (Wycheproof's 2048-bit one) does not accept it.
    let (_, records) = parse_converted(include_str!("vectors/rsa_pss_2048_sha256.txt"));
    let other = parse_peer_key(&records[0].bytes("spki")).unwrap();
    let digest = Sha256::digest(b"x");
    let sig = host
        .private()
        .sign_with_rng(&mut rng, Pss::<Sha256>::new_blinded(), &digest)
        .unwrap();
    assert_eq!(pss_verify(&public, b"x", &sig), Ok(()));
    assert_eq!(
        pss_verify(&other, b"x", &sig),
        Err(rsa::Error::Verification)
    );
    assert_eq!(n, 3);
}

// ---------------------------------------------------------------------------
// The record nonce and the suite's records
// ---------------------------------------------------------------------------

/// The TLS 1.3 per-record nonce (RFC 8446 section 5.3), which the suite uses:
/// the 64-bit sequence number, big-endian, left-padded with zeros to the IV
/// length, XORed into the IV. Anchored below on fixed values and RFC 9001.
fn record_nonce(iv: [u8; 12], seq: u64) -> [u8; 12] {
    let mut padded = [0u8; 12];
    padded[4..].copy_from_slice(&seq.to_be_bytes());
    let mut n = iv;
    for (b, p) in n.iter_mut().zip(padded) {
        *b ^= p;
    }
    n
}

// RFC 8448's TLS 1.3 traces all negotiate TLS_AES_128_GCM_SHA256, so there is
// no ChaCha20 record there. RFC 9001 appendix A.5 is a published
// ChaCha20-Poly1305 example of the same construction (RFC 9001 section 5.3:
// packet number left-padded to the IV size, XORed with the IV):
const RFC9001_KEY: &str = "c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8";
const RFC9001_IV: &str = "e0459b3474bdd0e44a41c144";
const RFC9001_PN: u64 = 654_360_564;
const RFC9001_NONCE: &str = "e0459b3474bdd0e46d417eb0";
const RFC9001_HEADER: &str = "4200bff4";
const RFC9001_PAYLOAD: &str = "01";
/// Ciphertext (1 byte) followed by the tag.
const RFC9001_PROTECTED: &str = "655e5cd55c41f69080575d7999c25a5bfb";

#[test]
fn record_nonce_construction() {
    // By hand, for IV = 00 01 .. 0b: only bytes 4..12 ever change.
    let iv = hex12("000102030405060708090a0b");
    let cases: [(u64, &str); 6] = [
        (0, "000102030405060708090a0b"),
        (1, "000102030405060708090a0a"),
        (0xff, "000102030405060708090af4"),
        (0x100, "000102030405060708090b0b"),
        (0x0102_0304_0506_0708, "00010203050705030d0f0d03"),
        (u64::MAX, "00010203fbfaf9f8f7f6f5f4"),
    ];
    for (seq, want) in cases {
        assert_eq!(record_nonce(iv, seq), hex12(want), "seq {seq:#x}");
    }

    // RFC 9001 A.5: the nonce, and the AEAD under it.
    let nonce = record_nonce(hex12(RFC9001_IV), RFC9001_PN);
    assert_eq!(nonce, hex12(RFC9001_NONCE));
    let aead = chacha(&hex(RFC9001_KEY));
    let (ct, tag) = seal(
        &aead,
        &Nonce::from(nonce),
        &hex(RFC9001_HEADER),
        &hex(RFC9001_PAYLOAD),
    );
    let mut protected = ct;
    protected.extend_from_slice(&tag);
    assert_eq!(protected, hex(RFC9001_PROTECTED));
}

/// A traffic secret (no `Clone` on `Secret`: build one per use).
fn ts(bytes: [u8; 20]) -> TrafficSecret {
    Secret::from_bytes(bytes)
}

/// The suite's key and IV for one epoch, derived exactly as `protection()`
/// does, and cross-checked against HKDF-Expand (RFC 5869) called directly.
fn epoch_key_iv(secret: &TrafficSecret) -> ([u8; 32], [u8; 12]) {
    let key: Secret<32> = traffic_key(secret, b"blackpony chacha20poly1305 key");
    let iv: Secret<12> = traffic_key(secret, b"blackpony chacha20poly1305 iv");
    let hk = Hkdf::<Sha1>::from_prk(secret.expose()).expect("20-byte PRK");
    let (mut k, mut i) = ([0u8; 32], [0u8; 12]);
    hk.expand(b"blackpony chacha20poly1305 key", &mut k)
        .unwrap();
    hk.expand(b"blackpony chacha20poly1305 iv", &mut i).unwrap();
    assert_eq!((&k, &i), (key.expose(), iv.expose()));
    (k, i)
}

/// Splits a stream of sealed records into (header, body, tag).
fn split_records(mut out: &[u8]) -> Vec<([u8; HEADER_LEN], Vec<u8>, Vec<u8>)> {
    let mut records = Vec::new();
    while !out.is_empty() {
        let header: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        let len = u32::from_be_bytes(header) as usize;
        let body = out[HEADER_LEN..HEADER_LEN + len].to_vec();
        let tag = out[HEADER_LEN + len..HEADER_LEN + len + 16].to_vec();
        out = &out[HEADER_LEN + len + 16..];
        records.push((header, body, tag));
    }
    records
}

/// Payload of record `i` in the test streams: varying lengths, including a
/// 64-byte block boundary and a multi-block one.
fn payload(i: usize) -> Vec<u8> {
    let len = [1usize, 63, 64, 65, 200][i % 5];
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

#[test]
fn chacha_records_match_the_aead() {
    let mut checked = 0;
    for secret in [[0u8; 20], [0x5a; 20], core::array::from_fn(|i| i as u8)] {
        let (key, iv) = epoch_key_iv(&ts(secret));
        let aead = chacha(&key);

        // 300 records, so the sequence number carries into its second byte
        // (seq 256 changes nonce byte 10), then a Close.
        const RECORDS: usize = 300;
        let mut sealer = Sealer::new(protection, ts(secret));
        let mut out = Vec::new();
        for i in 0..RECORDS {
            sealer
                .seal(RecordType::Data, &payload(i), &mut out)
                .unwrap();
        }
        sealer.seal(RecordType::Close, &[], &mut out).unwrap();

        let records = split_records(&out);
        assert_eq!(records.len(), RECORDS + 1);
        let mut opener = Opener::new(protection, ts(secret));
        for (seq, (header, body, tag)) in records.iter().enumerate() {
            let seq = seq as u64;
            let plain: Vec<u8> = if (seq as usize) < RECORDS {
                [&[RecordType::Data as u8][..], &payload(seq as usize)].concat()
            } else {
                vec![RecordType::Close as u8]
            };
            // Header = body length (type byte + payload), big-endian.
            assert_eq!(u32::from_be_bytes(*header) as usize, plain.len());
            // The record is exactly ChaCha20-Poly1305(key, iv ^ seq,
            // aad = header, type || payload), with the tag after the body.
            let nonce = Nonce::from(record_nonce(iv, seq));
            let (want_body, want_tag) = seal(&aead, &nonce, header, &plain);
            assert_eq!(body, &want_body, "body seq {seq}");
            assert_eq!(tag[..], want_tag[..], "tag seq {seq}");
            assert_eq!(open(&aead, &nonce, header, body, tag), Some(plain.clone()));
            // Not under a neighbouring sequence number, nor another header.
            let wrong = Nonce::from(record_nonce(iv, seq ^ 1));
            assert_eq!(open(&aead, &wrong, header, body, tag), None, "seq {seq}");
            let mut other_header = *header;
            other_header[0] ^= 0x80;
            assert_eq!(open(&aead, &nonce, &other_header, body, tag), None);

            // And the library's Opener agrees.
            let mut record = [&body[..], &tag[..]].concat();
            let opened = opener.open(header, &mut record).unwrap();
            if (seq as usize) < RECORDS {
                assert_eq!(opened, Some(Opened::Data(plain.len())));
                assert_eq!(record[1..plain.len()], plain[1..]);
            } else {
                assert_eq!(opened, Some(Opened::Close));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * 301);
}

#[test]
fn chacha_records_across_a_rekey() {
    // With a small rekey limit the sealer emits a Rekey record under the old
    // epoch, then continues under next_traffic(ts) -- with the sequence
    // number running on, not restarting.
    let secret = [0x33u8; 20];
    let epochs = [ts(secret), next_traffic(&ts(secret))];
    let keys: Vec<([u8; 32], [u8; 12])> = epochs.iter().map(epoch_key_iv).collect();
    assert_ne!(keys[0], keys[1]);

    let mut sealer = Sealer::new(protection, ts(secret));
    sealer.set_rekey_limit(200);
    let mut out = Vec::new();
    for i in 0..3 {
        sealer
            .seal(RecordType::Data, &[i as u8; 99], &mut out)
            .unwrap();
    }
    // Body bytes: 100 + 100 fit under 200; the third record forces a Rekey
    // (seq 2, old epoch) and is then seq 3 under the new epoch.
    let records = split_records(&out);
    assert_eq!(records.len(), 4);
    let expect: [(usize, Vec<u8>); 4] = [
        (0, [&[1u8][..], &[0u8; 99]].concat()),
        (0, [&[1u8][..], &[1u8; 99]].concat()),
        (0, vec![RecordType::Rekey as u8]),
        (1, [&[1u8][..], &[2u8; 99]].concat()),
    ];
    let mut opener = Opener::new(protection, ts(secret));
    opener.set_rekey_limit(200);
    for (seq, ((header, body, tag), (epoch, plain))) in records.iter().zip(expect).enumerate() {
        let (key, iv) = keys[epoch];
        let nonce = Nonce::from(record_nonce(iv, seq as u64));
        assert_eq!(
            open(&chacha(&key), &nonce, header, body, tag),
            Some(plain.clone()),
            "seq {seq}"
        );
        let (other_key, other_iv) = keys[1 - epoch];
        let other_nonce = Nonce::from(record_nonce(other_iv, seq as u64));
        assert_eq!(
            open(&chacha(&other_key), &other_nonce, header, body, tag),
            None
        );
        let mut record = [&body[..], &tag[..]].concat();
        let opened = opener.open(header, &mut record).unwrap();
        if plain[0] == RecordType::Rekey as u8 {
            assert_eq!(opened, None);
        } else {
            assert_eq!(opened, Some(Opened::Data(100)));
        }
    }
}
