//! Handshake CPU per connection, in process: handshake v2
//! (NOISE-25519-CHACHAPOLY-SHA256: XX on first contact, IK to a known peer,
//! each side's every step from its first message to its record keys and the
//! peer's certificate checked) and RSA-BLOWFISH (every step from building
//! the hello to checking the peer's Finished), and the public-key
//! operations they are made of.
//!
//! ```text
//! cargo bench --bench handshake -- [--keys A.pem B.pem]   # needs [[bench]] name = "handshake", harness = false
//! handshake [--keys A.pem B.pem] [--rounds 5] [--secs 0.2] [--tsv FILE]
//! handshake --ir CASE [--n 20] --keys A.pem B.pem          # CASE inside `ir_region`, n + 1 times, for
//!                                                          # valgrind --tool=callgrind --toggle-collect='*ir_region*'
//! handshake --list
//! ```
//!
//! Without `--keys` two fresh 2048-bit host keys are generated (slow).
//! The client/server cases time only that side's steps; the other side's
//! messages are produced outside the timed region.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use rsa::{Pss, PublicKey};
use sha2::{Digest, Sha256};
use x25519_dalek::{EphemeralSecret, PublicKey as DhPublic};

use base64ct::{Base64, Encoding};
use blackpony::cert;
use blackpony::crypto::{oaep, random_secret};
use blackpony::keys::{parse_peer_key, HostKey};
use blackpony::static_key::StaticIdentity;
use blackpony::suite::noise_suite::{self, ClientIk, ClientXx, ServerIk, ServerXx};
use blackpony::suite::rsa_blowfish::{ClientStart, ServerAwaitKey};
use blackpony::suite::{SuiteId, NOISE};

/// Handshake v2's two patterns.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pattern {
    /// First contact: msg1, msg2 (server certificate), msg3 (client's).
    Xx,
    /// Known peer: msg1 with the inner EHLO, msg2 with its reply, then the
    /// client's certificate (first in its records) checked.
    Ik,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    /// The client's steps of one handshake of a suite (RSA-BLOWFISH).
    Client(SuiteId),
    /// The server's steps of one handshake of a suite (RSA-BLOWFISH).
    Server(SuiteId),
    /// The client's steps of one v2 handshake.
    V2Client(Pattern),
    /// The server's steps of one v2 handshake.
    V2Server(Pattern),
    RsaSignPss,
    RsaVerifyPss,
    RsaOaepEncrypt,
    RsaOaepDecrypt,
    /// One ephemeral key pair and one shared secret (one side's X25519 work).
    X25519,
    /// Read and parse a PKCS#8 PEM host key from disk.
    KeyLoad,
    /// Parse a peer's SPKI DER (what each side does with the other's hello).
    SpkiParse,
}

const CASES: [Case; 13] = [
    Case::V2Client(Pattern::Xx),
    Case::V2Server(Pattern::Xx),
    Case::V2Client(Pattern::Ik),
    Case::V2Server(Pattern::Ik),
    Case::Client(SuiteId::RsaBlowfish),
    Case::Server(SuiteId::RsaBlowfish),
    Case::RsaSignPss,
    Case::RsaVerifyPss,
    Case::RsaOaepEncrypt,
    Case::RsaOaepDecrypt,
    Case::X25519,
    Case::KeyLoad,
    Case::SpkiParse,
];

impl Case {
    fn name(self) -> String {
        match self {
            Case::Client(s) => format!("{s} client"),
            Case::Server(s) => format!("{s} server"),
            Case::V2Client(p) => format!("{NOISE} {p:?} client").to_ascii_lowercase(),
            Case::V2Server(p) => format!("{NOISE} {p:?} server").to_ascii_lowercase(),
            Case::RsaSignPss => "rsa-2048 sign pss-sha256".into(),
            Case::RsaVerifyPss => "rsa-2048 verify pss-sha256".into(),
            Case::RsaOaepEncrypt => "rsa-2048 oaep encrypt".into(),
            Case::RsaOaepDecrypt => "rsa-2048 oaep decrypt".into(),
            Case::X25519 => "x25519 keygen+dh".into(),
            Case::KeyLoad => "host key load (pkcs8 pem)".into(),
            Case::SpkiParse => "peer spki parse".into(),
        }
    }

    fn parse(name: &str) -> Option<Case> {
        CASES
            .iter()
            .copied()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

struct Ctx {
    client_key: HostKey,
    server_key: HostKey,
    server_key_path: Option<String>,
    /// Static keys and certificates (v2), issued once by the host keys.
    client_id: StaticIdentity,
    server_id: StaticIdentity,
    server_pub: PublicKey,
    signature: Vec<u8>,
    wrapped: Vec<u8>,
}

const OFFER: &str = "NOISE-25519-CHACHAPOLY-SHA256 RSA-BLOWFISH";
const EHLO: &[u8] = b"EHLO client.example.org\r\n";
const EHLO_REPLY: &[u8] = b"250-mx.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n";

/// A fresh static key pair with a certificate `host` issued for it.
fn identity(host: &HostKey) -> StaticIdentity {
    let secret = x25519_dalek::StaticSecret::random();
    let public = DhPublic::from(&secret).to_bytes();
    let now = blackpony::clock::now_unix();
    let cert_bytes = cert::issue(host, &public, now - 86_400, now + 90 * 86_400);
    let verified = cert::parse_signed(&cert_bytes).expect("own certificate");
    StaticIdentity {
        secret,
        public,
        cert_bytes,
        verified,
        continuity: None,
    }
}

fn digest() -> Vec<u8> {
    Sha256::digest(b"blackpony bench transcript").to_vec()
}

impl Ctx {
    fn new(keys: Option<(String, String)>) -> Ctx {
        let (client_key, server_key, server_key_path) = match keys {
            Some((a, b)) => (load(&a), load(&b), Some(b)),
            None => {
                eprintln!("handshake: generating two 2048-bit keys (use --keys to skip)");
                (
                    HostKey::generate(2048).expect("keygen"),
                    HostKey::generate(2048).expect("keygen"),
                    None,
                )
            }
        };
        let server_pub = parse_peer_key(server_key.public_der()).expect("own key parses");
        let mut rng = rand::rngs::SysRng;
        let signature = server_key
            .private()
            .sign_with_rng(&mut rng, Pss::<Sha256>::new_blinded(), &digest())
            .expect("sign");
        let wrapped = oaep::wrap(&server_pub, &random_secret::<32>());
        let (client_id, server_id) = (identity(&client_key), identity(&server_key));
        Ctx {
            client_key,
            server_key,
            server_key_path,
            client_id,
            server_id,
            server_pub,
            signature,
            wrapped,
        }
    }

    /// One operation of `case`; the timed part only.
    fn run(&self, case: Case) {
        match case {
            Case::Client(s) => self.handshake(s, true),
            Case::Server(s) => self.handshake(s, false),
            Case::V2Client(Pattern::Xx) => self.xx(true),
            Case::V2Server(Pattern::Xx) => self.xx(false),
            Case::V2Client(Pattern::Ik) => self.ik(true),
            Case::V2Server(Pattern::Ik) => self.ik(false),
            Case::RsaSignPss => ir_step(|| {
                let mut rng = rand::rngs::SysRng;
                black_box(
                    self.server_key
                        .private()
                        .sign_with_rng(&mut rng, Pss::<Sha256>::new_blinded(), &digest())
                        .expect("sign"),
                );
            }),
            Case::RsaVerifyPss => ir_step(|| {
                self.server_pub
                    .verify(Pss::<Sha256>::new(), &digest(), &self.signature)
                    .expect("verify");
            }),
            Case::RsaOaepEncrypt => ir_step(|| {
                black_box(oaep::wrap(&self.server_pub, &random_secret::<32>()));
            }),
            Case::RsaOaepDecrypt => ir_step(|| {
                black_box(oaep::unwrap(self.server_key.private(), &self.wrapped));
            }),
            Case::X25519 => ir_step(|| {
                let ours = EphemeralSecret::random();
                let public = DhPublic::from(&ours);
                let peer = DhPublic::from([9u8; 32]);
                black_box(public);
                black_box(ours.diffie_hellman(&peer));
            }),
            Case::KeyLoad => {
                let path = self
                    .server_key_path
                    .as_deref()
                    .expect("the key-load case needs --keys");
                ir_step(|| {
                    black_box(load(path));
                });
            }
            Case::SpkiParse => ir_step(|| {
                black_box(parse_peer_key(self.client_key.public_der()).expect("parse"));
            }),
        }
    }

    /// One whole v2 XX handshake; only the chosen side's steps are timed.
    fn xx(&self, client_side: bool) {
        let (c, s) = (client_side, !client_side);
        let prologue = noise_suite::prologue(OFFER, NOISE, EHLO);
        let (start, arg) = step(c, || {
            let (start, msg1) = ClientXx::start(&self.client_id, &prologue).expect("start");
            (start, Base64::encode_string(&msg1))
        });
        let (state, msg2) = step(s, || {
            let msg1 = Base64::decode_vec(&arg).expect("base64");
            ServerXx::start(&self.server_id, &prologue, &msg1).expect("msg1")
        });
        let (msg3, _keys) = step(c, || {
            let (verified, peer, _) = start.on_msg2(&msg2).expect("msg2");
            black_box(peer);
            verified.finish(&self.client_id).expect("msg3")
        });
        step(s, || black_box(state.on_msg3(&msg3).expect("msg3")));
    }

    /// One whole v2 IK handshake (the client has the server's certificate
    /// cached); only the chosen side's steps are timed.
    fn ik(&self, client_side: bool) {
        let (c, s) = (client_side, !client_side);
        let prologue = noise_suite::prologue(OFFER, NOISE, EHLO);
        let (start, arg) = step(c, || {
            let (start, msg1) =
                ClientIk::start(&self.client_id, &prologue, &self.server_id.verified, EHLO)
                    .expect("start");
            (start, Base64::encode_string(&msg1))
        });
        let (msg2, client_static) = step(s, || {
            let msg1 = Base64::decode_vec(&arg).expect("base64");
            let (state, ehlo) = ServerIk::start(&self.server_id, &prologue, &msg1).expect("msg1");
            black_box(ehlo);
            let (msg2, awaiting) = state.answer(EHLO_REPLY).expect("msg2");
            let (keys, client_static) = awaiting.keys().expect("keys");
            black_box(keys);
            (msg2, client_static)
        });
        step(c, || black_box(start.on_msg2(&msg2).expect("msg2")));
        // The server checks the client's certificate from its first record.
        step(s, || {
            black_box(
                noise_suite::check_identity(&client_static, &self.client_id.cert_bytes)
                    .expect("client certificate"),
            )
        });
    }

    /// One whole RSA-BLOWFISH handshake; only the steps of the chosen side
    /// are inside the region.
    fn handshake(&self, suite: SuiteId, client_side: bool) {
        assert_eq!(suite, SuiteId::RsaBlowfish);
        let (c, s) = (client_side, !client_side);
        let start = step(c, || {
            let start = ClientStart::new(&self.client_key, OFFER);
            let arg = start.hello_base64();
            (start, arg)
        });
        let (start, arg) = start;
        let (server_hello, state) = step(s, || {
            let hello = Base64::decode_vec(&arg).expect("base64");
            ServerAwaitKey::new(&self.server_key, OFFER, &hello).expect("hello parses")
        });
        let (flight, _keys, awaiting) = step(c, || {
            start.on_server_hello(&server_hello).expect("server hello")
        });
        let (finished, _server_keys) =
            step(s, || state.on_client_key(&flight).expect("client key"));
        step(c, || {
            awaiting.on_server_finished(&finished).expect("finished")
        });
    }
}

fn load(path: &str) -> HostKey {
    HostKey::load(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A step of the measured side goes through the region function, the other side's does not.
fn step<T>(measured: bool, f: impl FnOnce() -> T) -> T {
    if measured {
        timed_step(f)
    } else {
        f()
    }
}

fn ir_step(f: impl FnOnce()) {
    ir_region(f)
}

/// Everything callgrind counts (`--toggle-collect='*ir_region*'`) runs inside this.
#[inline(never)]
fn ir_region<T>(f: impl FnOnce() -> T) -> T {
    black_box(f())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Microseconds per operation: whole operations for at least `secs`. For the
/// handshake cases the other side's steps run too but are not timed.
fn sample(ctx: &Ctx, case: Case, secs: f64) -> f64 {
    let mut timed = 0f64;
    let mut n = 0u64;
    let wall = Instant::now();
    while wall.elapsed().as_secs_f64() < secs || n == 0 {
        timed += time_one(ctx, case);
        n += 1;
    }
    timed / n as f64 * 1e6
}

fn time_one(ctx: &Ctx, case: Case) -> f64 {
    match case {
        Case::Client(_) | Case::Server(_) | Case::V2Client(_) | Case::V2Server(_) => {
            // Time each measured step separately: the other side's work is excluded.
            TIMED.with(|t| t.set(0.0));
            TIMING.with(|t| t.set(true));
            ctx.run(case);
            TIMING.with(|t| t.set(false));
            TIMED.with(|t| t.get())
        }
        _ => {
            let t = Instant::now();
            ctx.run(case);
            t.elapsed().as_secs_f64()
        }
    }
}

thread_local! {
    static TIMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static TIMED: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

/// `step` with timing when a handshake case is being timed.
fn timed_step<T>(f: impl FnOnce() -> T) -> T {
    if TIMING.with(|t| t.get()) {
        let t = Instant::now();
        let r = ir_region(f);
        let el = t.elapsed().as_secs_f64();
        TIMED.with(|c| c.set(c.get() + el));
        r
    } else {
        ir_region(f)
    }
}

struct Args {
    keys: Option<(String, String)>,
    rounds: usize,
    secs: f64,
    tsv: Option<String>,
    ir: Option<Case>,
    n: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        keys: None,
        rounds: 5,
        secs: 0.2,
        tsv: None,
        ir: None,
        n: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |what: &str| it.next().ok_or(format!("{what} needs a value"));
        match arg.as_str() {
            "--keys" => {
                let k1 = val("--keys")?;
                let k2 = val("--keys")?;
                a.keys = Some((k1, k2));
            }
            "--rounds" => a.rounds = val("--rounds")?.parse().map_err(|e| format!("{e}"))?,
            "--secs" => a.secs = val("--secs")?.parse().map_err(|e| format!("{e}"))?,
            "--tsv" => a.tsv = Some(val("--tsv")?),
            "--n" => a.n = val("--n")?.parse().map_err(|e| format!("{e}"))?,
            "--ir" => {
                let n = val("--ir")?;
                a.ir = Some(Case::parse(&n).ok_or(format!("unknown case {n:?} (see --list)"))?);
            }
            "--list" => {
                for c in CASES {
                    println!("{}", c.name());
                }
                std::process::exit(0);
            }
            _ => {} // `cargo bench` passes --bench
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("handshake: {e}");
            std::process::exit(2);
        }
    };
    let ctx = Ctx::new(args.keys.clone());
    if let Some(case) = args.ir {
        // One warm-up run (lazy init, first page faults), then n: the region
        // runs n + 1 times, which is the count printed.
        for _ in 0..=args.n {
            ctx.run(case);
        }
        println!("{}\t{}", case.name(), args.n + 1);
        return;
    }
    let cases: Vec<Case> = CASES
        .iter()
        .copied()
        .filter(|c| *c != Case::KeyLoad || ctx.server_key_path.is_some())
        .collect();
    for &c in &cases {
        ctx.run(c);
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..args.rounds {
        for (i, &c) in cases.iter().enumerate() {
            results[i].push(sample(&ctx, c, args.secs));
        }
    }
    println!(
        "handshake CPU, microseconds per operation (wall clock, 1 thread), {} rounds of >= {} s",
        args.rounds, args.secs
    );
    println!("{:<36} {:>9} {:>9} {:>9}", "case", "median", "min", "max");
    let mut tsv = String::new();
    for (i, c) in cases.iter().enumerate() {
        let v = &mut results[i];
        let (min, max) = v
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let med = median(v);
        println!("{:<36} {med:>9.1} {min:>9.1} {max:>9.1}", c.name());
        tsv.push_str(&format!("{}\t{med:.1}\t{min:.1}\t{max:.1}\n", c.name()));
    }
    if let Some(path) = args.tsv {
        std::fs::write(&path, tsv).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}
