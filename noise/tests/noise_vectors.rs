//! src/lib.rs against the Cacophony vectors (tests/vectors/; the core's
//! tests/vectors/README.md says where they come from): every handshake and
//! transport ciphertext byte for byte, in both directions, and the final handshake hash, for NX, XX and IK. Then the
//! negative cases: a flipped bit anywhere in any handshake message, a wrong
//! prologue, a truncated message, a replayed or out-of-turn message and a
//! low-order ephemeral key all make the handshake fail.

use blackpony_noise::{CipherState, HandshakeState, NoiseError, Pattern, Split};
use x25519_dalek::{PublicKey, StaticSecret};

const VECTORS: &str = include_str!("vectors/cacophony-25519-chachapoly-sha256.json");

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn key(v: &serde_json::Value, field: &str) -> Option<[u8; 32]> {
    v.get(field).map(|s| {
        hex(s.as_str().expect("string"))
            .try_into()
            .expect("32 bytes")
    })
}

struct Vector {
    pattern: Pattern,
    json: serde_json::Value,
}

impl Vector {
    fn field(&self, name: &str) -> Vec<u8> {
        hex(self.json[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing")))
    }

    fn messages(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let msgs = self.json["messages"].as_array().expect("messages");
        msgs.iter()
            .map(|m| {
                (
                    hex(m["payload"].as_str().unwrap()),
                    hex(m["ciphertext"].as_str().unwrap()),
                )
            })
            .collect()
    }

    fn handshake_len(&self) -> usize {
        if self.pattern == Pattern::XX {
            3
        } else {
            2
        }
    }

    /// Both sides, keyed as the vector says; `resp_prologue` may be overridden.
    fn sides(&self, resp_prologue: Option<&[u8]>) -> (HandshakeState, HandshakeState) {
        let j = &self.json;
        let secret = |f: &str| key(j, f).map(StaticSecret::from);
        let init = HandshakeState::with_ephemeral(
            self.pattern,
            true,
            &self.field("init_prologue"),
            secret("init_static"),
            key(j, "init_remote_static"),
            secret("init_ephemeral").expect("init_ephemeral"),
        )
        .expect("initiator");
        let resp = HandshakeState::with_ephemeral(
            self.pattern,
            false,
            resp_prologue.unwrap_or(&self.field("resp_prologue")),
            secret("resp_static"),
            None,
            secret("resp_ephemeral").expect("resp_ephemeral"),
        )
        .expect("responder");
        (init, resp)
    }
}

fn vectors() -> Vec<Vector> {
    let all: serde_json::Value = serde_json::from_str(VECTORS).expect("JSON");
    let vs: Vec<Vector> = all["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .map(|v| {
            let pattern = match v["protocol_name"].as_str().unwrap() {
                "Noise_NX_25519_ChaChaPoly_SHA256" => Pattern::NX,
                "Noise_XX_25519_ChaChaPoly_SHA256" => Pattern::XX,
                "Noise_IK_25519_ChaChaPoly_SHA256" => Pattern::IK,
                other => panic!("unexpected protocol {other}"),
            };
            Vector {
                pattern,
                json: v.clone(),
            }
        })
        .collect();
    let mut patterns: Vec<_> = vs.iter().map(|v| format!("{:?}", v.pattern)).collect();
    patterns.sort();
    assert_eq!(patterns, ["IK", "NX", "XX"], "one vector per pattern");
    vs
}

// Message i goes initiator -> responder when i is even, for the handshake
// and (as Cacophony lays them out) for the transport messages after it.

#[test]
fn cacophony_vectors_byte_for_byte() {
    let mut checked = 0;
    for v in vectors() {
        let (mut init, mut resp) = v.sides(None);
        let msgs = v.messages();
        let hs = v.handshake_len();
        assert!(
            msgs.len() > hs + 2,
            "vector has transport messages both ways"
        );
        for (i, (payload, ciphertext)) in msgs[..hs].iter().enumerate() {
            let (sender, receiver) = if i % 2 == 0 {
                (&mut init, &mut resp)
            } else {
                (&mut resp, &mut init)
            };
            assert_eq!(
                &sender.write_message(payload).unwrap(),
                ciphertext,
                "{:?} message {i}",
                v.pattern
            );
            assert_eq!(
                &receiver.read_message(ciphertext).unwrap(),
                payload,
                "{:?} message {i}",
                v.pattern
            );
            checked += 1;
        }
        assert!(init.is_finished() && resp.is_finished());
        let want_hash: [u8; 32] = v.field("handshake_hash").try_into().unwrap();
        assert_eq!(
            init.handshake_hash(),
            want_hash,
            "{:?} initiator hash",
            v.pattern
        );
        assert_eq!(
            resp.handshake_hash(),
            want_hash,
            "{:?} responder hash",
            v.pattern
        );

        // Each side learned the other's static key (the NX initiator has none).
        let resp_static =
            PublicKey::from(&StaticSecret::from(key(&v.json, "resp_static").unwrap()));
        assert_eq!(init.remote_static(), Some(resp_static.to_bytes()));
        let init_static =
            key(&v.json, "init_static").map(|k| PublicKey::from(&StaticSecret::from(k)).to_bytes());
        assert_eq!(resp.remote_static(), init_static);

        let (si, sr): (Split, Split) = (init.split().unwrap(), resp.split().unwrap());
        assert_eq!(si.handshake_hash, want_hash);
        assert_eq!(sr.handshake_hash, want_hash);
        assert_eq!(
            si.initiator_to_responder.expose(),
            sr.initiator_to_responder.expose()
        );
        assert_eq!(
            si.responder_to_initiator.expose(),
            sr.responder_to_initiator.expose()
        );
        assert_ne!(
            si.initiator_to_responder.expose(),
            si.responder_to_initiator.expose()
        );

        // Transport: the initiator's and the responder's copy of each direction.
        let mut i_send = CipherState::new(&si.initiator_to_responder);
        let mut r_recv = CipherState::new(&sr.initiator_to_responder);
        let mut r_send = CipherState::new(&sr.responder_to_initiator);
        let mut i_recv = CipherState::new(&si.responder_to_initiator);
        let mut directions = [0usize; 2];
        for (i, (payload, ciphertext)) in msgs.iter().enumerate().skip(hs) {
            let (send, recv) = if i % 2 == 0 {
                (&mut i_send, &mut r_recv)
            } else {
                (&mut r_send, &mut i_recv)
            };
            assert_eq!(
                &send.encrypt(&[], payload).unwrap(),
                ciphertext,
                "{:?} transport {i}",
                v.pattern
            );
            assert_eq!(
                &recv.decrypt(&[], ciphertext).unwrap(),
                payload,
                "{:?} transport {i}",
                v.pattern
            );
            directions[i % 2] += 1;
            checked += 1;
        }
        // 3 + 1 or 2 + 2 messages: each direction used, one nonce past 0 at least.
        assert!(directions.iter().all(|&d| d >= 1) && directions.iter().any(|&d| d >= 2));
    }
    assert_eq!(checked, 18, "3 vectors x 6 messages");
}

/// Runs the vector's handshake, passing message `tamper_at` through `tamper`.
/// Ok if the handshake completed with matching hashes, Err if any read failed.
fn run_tampered(
    v: &Vector,
    resp_prologue: Option<&[u8]>,
    tamper_at: usize,
    tamper: &dyn Fn(&mut Vec<u8>),
) -> Result<(), NoiseError> {
    let (mut init, mut resp) = v.sides(resp_prologue);
    for (i, (payload, _)) in v.messages()[..v.handshake_len()].iter().enumerate() {
        let (sender, receiver) = if i % 2 == 0 {
            (&mut init, &mut resp)
        } else {
            (&mut resp, &mut init)
        };
        let mut msg = sender.write_message(payload)?;
        if i == tamper_at {
            tamper(&mut msg);
        }
        receiver.read_message(&msg)?;
    }
    assert!(init.is_finished() && resp.is_finished());
    assert_eq!(
        init.handshake_hash(),
        resp.handshake_hash(),
        "completed with diverging hashes"
    );
    Ok(())
}

#[test]
fn untampered_run_completes() {
    for v in vectors() {
        run_tampered(&v, None, usize::MAX, &|_| {}).expect("clean handshake");
    }
}

#[test]
fn any_flipped_bit_in_any_handshake_message_fails() {
    let mut cases = 0;
    for v in vectors() {
        let msgs = v.messages();
        for (m, (_, ciphertext)) in msgs.iter().enumerate().take(v.handshake_len()) {
            for byte in 0..ciphertext.len() {
                for bit in [byte % 8, 7 - byte % 8] {
                    let r = run_tampered(&v, None, m, &|msg| msg[byte] ^= 1 << bit);
                    assert!(
                        r.is_err(),
                        "{:?} message {m} byte {byte} bit {bit} went through",
                        v.pattern
                    );
                    cases += 1;
                }
            }
        }
    }
    assert!(cases > 1000, "only {cases} cases");
}

#[test]
fn wrong_prologue_fails() {
    for v in vectors() {
        let mut p = v.field("resp_prologue");
        p[0] ^= 1;
        assert!(
            run_tampered(&v, Some(&p), usize::MAX, &|_| {}).is_err(),
            "{:?}",
            v.pattern
        );
        assert!(
            run_tampered(&v, Some(b""), usize::MAX, &|_| {}).is_err(),
            "{:?}",
            v.pattern
        );
    }
}

#[test]
fn truncated_or_extended_messages_fail() {
    for v in vectors() {
        let msgs = v.messages();
        for (m, (_, ciphertext)) in msgs.iter().enumerate().take(v.handshake_len()) {
            for len in 0..ciphertext.len() {
                let r = run_tampered(&v, None, m, &|msg| msg.truncate(len));
                assert!(
                    r.is_err(),
                    "{:?} message {m} cut to {len} went through",
                    v.pattern
                );
            }
            let r = run_tampered(&v, None, m, &|msg| msg.push(0));
            assert!(
                r.is_err(),
                "{:?} message {m} with a trailing byte went through",
                v.pattern
            );
        }
    }
}

#[test]
fn replayed_out_of_turn_and_oversized_messages_fail() {
    for v in vectors() {
        let msgs = v.messages();
        let (mut init, mut resp) = v.sides(None);
        // The responder cannot speak first; the initiator cannot read first.
        assert!(resp.write_message(b"").is_err());
        assert!(init.read_message(&msgs[0].1).is_err());
        let (mut init, mut resp) = v.sides(None);
        let m1 = init.write_message(&msgs[0].0).unwrap();
        assert!(
            init.write_message(&msgs[1].0).is_err(),
            "two messages in a row"
        );
        assert!(
            resp.read_message(&vec![0u8; 65536]).is_err(),
            "over 65535 bytes"
        );
        let (_, mut resp) = v.sides(None);
        resp.read_message(&m1).unwrap();
        assert!(
            resp.read_message(&m1).is_err(),
            "{:?} replayed message 1",
            v.pattern
        );
        assert!(resp.split().is_err(), "split before the end");
        // A failed read kills the handshake: the right message no longer helps.
        let (mut init, mut resp) = v.sides(None);
        let m1 = init.write_message(&msgs[0].0).unwrap();
        resp.read_message(&m1).unwrap();
        let m2 = resp.write_message(&msgs[1].0).unwrap();
        let mut bad = m2.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(init.read_message(&bad).is_err());
        assert!(
            init.read_message(&m2).is_err(),
            "{:?} retry after failure",
            v.pattern
        );
    }
}

#[test]
fn low_order_ephemeral_is_refused() {
    // The all-zero u-coordinate is a point of order 1: DH with it is all zeros.
    for v in vectors() {
        let (mut init, mut resp) = v.sides(None);
        let mut m1 = init.write_message(b"").unwrap();
        m1[..32].fill(0);
        let refused = match resp.read_message(&m1) {
            Err(_) => true, // IK: es is computed while reading message 1
            Ok(_) => resp.write_message(b"").is_err(), // NX, XX: ee when writing message 2
        };
        assert!(refused, "{:?}", v.pattern);
    }
}

#[test]
fn fresh_keys_from_the_os_agree() {
    for pattern in [Pattern::NX, Pattern::XX, Pattern::IK] {
        let s_i = StaticSecret::random();
        let s_r = StaticSecret::random();
        let r_pub = PublicKey::from(&s_r).to_bytes();
        let i_static = (pattern != Pattern::NX).then(|| StaticSecret::from(s_i.to_bytes()));
        let rs = (pattern == Pattern::IK).then_some(r_pub);
        let mut init = HandshakeState::new(pattern, true, b"p", i_static, rs).unwrap();
        let mut resp = HandshakeState::new(pattern, false, b"p", Some(s_r), None).unwrap();
        let mut i = 0;
        while !init.is_finished() {
            let (a, b) = if i % 2 == 0 {
                (&mut init, &mut resp)
            } else {
                (&mut resp, &mut init)
            };
            assert_eq!(
                b.read_message(&a.write_message(b"hi").unwrap()).unwrap(),
                b"hi"
            );
            i += 1;
        }
        assert_eq!(init.remote_static(), Some(r_pub));
        let (a, b) = (init.split().unwrap(), resp.split().unwrap());
        assert_eq!(
            a.initiator_to_responder.expose(),
            b.initiator_to_responder.expose()
        );
        let mut tx = CipherState::new(&b.responder_to_initiator);
        let mut rx = CipherState::new(&a.responder_to_initiator);
        let c = tx.encrypt(b"ad", b"payload").unwrap();
        assert!(rx.decrypt(b"other ad", &c).is_err(), "ad is authenticated");
        assert_eq!(
            rx.decrypt(b"ad", &c).unwrap(),
            b"payload",
            "failed decrypt kept the nonce"
        );
        assert!(rx.decrypt(b"ad", &c).is_err(), "replayed transport message");
    }
    // Missing or extra keys for the pattern are refused up front.
    assert!(
        HandshakeState::new(Pattern::IK, true, b"", Some(StaticSecret::random()), None).is_err()
    );
    assert!(HandshakeState::new(Pattern::XX, false, b"", None, None).is_err());
    assert!(
        HandshakeState::new(Pattern::NX, true, b"", Some(StaticSecret::random()), None).is_err()
    );
}
