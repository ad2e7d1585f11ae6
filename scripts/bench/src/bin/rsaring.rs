//! What a faster RSA implementation would save per connection: RSA-2048
//! PSS-SHA256 signing of the same digest with the same host key, by the `rsa`
//! crate blackpony uses and by `ring` (BoringSSL's assembly). An RSA-BLOWFISH
//! handshake makes one private-key operation (an OAEP decryption); handshake
//! v2 makes none per connection, only one PSS signature per certificate
//! renewal.
//!
//! usage: rsaring --key FILE [--secs 0.5] [--rounds 5]     wall clock, µs per signature
//!        rsaring --key FILE --ir rsa|ring [--n 3]         inside `ir_region` (n + 1 times), for callgrind
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

use rsa::pkcs8::DecodePrivateKey;
use rsa::Pss;
use sha2::{Digest, Sha256};

#[inline(never)]
fn ir_region<T>(f: impl FnOnce() -> T) -> T {
    black_box(f())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |n: &str| {
        args.iter()
            .position(|a| a == n)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let path = get("--key").expect("--key FILE");
    let pem = std::fs::read_to_string(&path).expect("read key");
    let rsa_key = rsa::PrivateKey::from_pkcs8_pem(&pem).expect("PKCS#8 RSA key");
    let der = rsa::pkcs8::SecretDocument::from_pkcs8_pem(&pem).expect("PEM");
    let ring_key = ring::rsa::KeyPair::from_pkcs8(der.as_bytes()).expect("ring parses the key");
    let rng = ring::rand::SystemRandom::new();
    let msg = b"blackpony bench transcript";
    let digest = Sha256::digest(msg);
    let mut sig = vec![0u8; ring_key.public().modulus_len()];
    let sign_rsa = || {
        let mut r = rand::rngs::SysRng;
        black_box(
            rsa_key
                .sign_with_rng(&mut r, Pss::<Sha256>::new_blinded(), &digest[..])
                .expect("sign"),
        );
    };
    let sign_ring = |sig: &mut Vec<u8>| {
        ring_key
            .sign(&ring::signature::RSA_PSS_SHA256, &rng, msg, sig)
            .expect("sign");
        black_box(&sig);
    };
    if let Some(which) = get("--ir") {
        let n: usize = get("--n").and_then(|v| v.parse().ok()).unwrap_or(3);
        for _ in 0..=n {
            match which.as_str() {
                "rsa" => ir_region(sign_rsa),
                _ => ir_region(|| sign_ring(&mut sig)),
            }
        }
        println!("{which}\t{}", n + 1);
        return;
    }
    let secs: f64 = get("--secs").and_then(|v| v.parse().ok()).unwrap_or(0.5);
    let rounds: usize = get("--rounds").and_then(|v| v.parse().ok()).unwrap_or(5);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (t, mut n) = (Instant::now(), 0);
        while t.elapsed().as_secs_f64() < secs {
            sign_rsa();
            n += 1;
        }
        a.push(t.elapsed().as_secs_f64() / n as f64 * 1e6);
        let (t, mut n) = (Instant::now(), 0);
        while t.elapsed().as_secs_f64() < secs {
            sign_ring(&mut sig);
            n += 1;
        }
        b.push(t.elapsed().as_secs_f64() / n as f64 * 1e6);
    }
    a.sort_by(|x, y| x.partial_cmp(y).unwrap());
    b.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "{{\"rsa_crate_us\":{:.1},\"ring_us\":{:.1},\"rsa_crate_all\":{:?},\"ring_all\":{:?}}}",
        a[a.len() / 2],
        b[b.len() / 2],
        a,
        b
    );
}
