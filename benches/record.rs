//! Record layer throughput (MB/s of payload, 16 KiB records) for both suites
//! (RSA-BLOWFISH; handshake v2, whose records are ChaCha20-Poly1305),
//! against the raw primitives the layer is built from, in the same process.
//!
//! ```text
//! cargo bench --bench record                      # needs [[bench]] name = "record", harness = false
//! record [--rounds 7] [--secs 0.3] [--tsv FILE]   # the same, built by scripts/bench/Cargo.toml
//! record --ir CASE [--mib 4]                      # one case only, inside `ir_region`, for
//!                                                 # valgrind --tool=callgrind --toggle-collect='*ir_region*'
//! record --list                                   # the case names
//! ```
//!
//! Every case processes 16384-byte payloads (records carry 16385 body bytes:
//! the type byte and the payload). The raw cases do exactly the cryptographic
//! work of one record and nothing else:
//!
//! * `bf-ctr`: Blowfish-CTR (64-bit BE counter) over 16385 bytes;
//! * `hmac-sha1`: HMAC-SHA1 over seq(8) || length(4) || body(16385);
//! * `ctr+hmac`: both, back to back on the same buffer (the floor of an RSA-BLOWFISH record);
//! * `chacha20poly1305`: one AEAD seal of 16385 bytes with the 4-byte header as AAD.
//!
//! The record layer cases use the crate's public API as the relay does:
//! `Sealer::seal` into a reused `Vec`, `Opener::read` from an in-memory stream
//! of sealed records (one copy per record, as from a socket), and the
//! `RecordWriter` / `RecordReader` adapters (16 KiB writes into `io::sink()`,
//! 64 KiB reads). Rekeying happens as in a real session (every 8 MiB for
//! RSA-BLOWFISH, every 1 GiB for ChaCha20-Poly1305).
//!
//! Rounds interleave the cases (round r runs every case once), so slow phases
//! of a noisy machine hit all cases alike; each case reports the median, min
//! and max over rounds.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::io::{self, Cursor, Read, Write};
use std::time::Instant;

use blowfish::Blowfish;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ctr::cipher::{InnerIvInit, KeyInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use blackpony::crypto::Secret;
use blackpony::suite::rsa_blowfish;
use blackpony::wire::record::{
    Opened, Opener, ProtectionFactory, RecordReader, RecordType, RecordWriter, Sealer,
};

const PAYLOAD: usize = 16 * 1024;
const BODY: usize = PAYLOAD + 1;
/// Bytes of payload per pass of a case (32 MiB; `--mib` sets it in `--ir` mode).
const PASS_BYTES: usize = 32 << 20;

type Ctr = ctr::Ctr64BE<Blowfish>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    BfCtr,
    HmacSha1,
    CtrHmac,
    Chacha,
    Seal(Suite),
    Open(Suite),
    Writer(Suite),
    Reader(Suite),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Suite {
    RsaBlowfish,
    Noise,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::RsaBlowfish => "rsa-blowfish",
            Suite::Noise => "noise-chachapoly",
        }
    }

    fn factory(self) -> ProtectionFactory {
        match self {
            Suite::RsaBlowfish => rsa_blowfish::protection,
            Suite::Noise => blackpony::wire::aead::protection,
        }
    }
}

const CASES: [Case; 12] = [
    Case::BfCtr,
    Case::HmacSha1,
    Case::CtrHmac,
    Case::Seal(Suite::RsaBlowfish),
    Case::Open(Suite::RsaBlowfish),
    Case::Writer(Suite::RsaBlowfish),
    Case::Reader(Suite::RsaBlowfish),
    Case::Chacha,
    Case::Seal(Suite::Noise),
    Case::Open(Suite::Noise),
    Case::Writer(Suite::Noise),
    Case::Reader(Suite::Noise),
];

impl Case {
    fn name(self) -> String {
        match self {
            Case::BfCtr => "raw bf-ctr".into(),
            Case::HmacSha1 => "raw hmac-sha1".into(),
            Case::CtrHmac => "raw ctr+hmac".into(),
            Case::Chacha => "raw chacha20poly1305".into(),
            Case::Seal(s) => format!("{} seal", s.name()),
            Case::Open(s) => format!("{} open", s.name()),
            Case::Writer(s) => format!("{} writer", s.name()),
            Case::Reader(s) => format!("{} reader", s.name()),
        }
    }

    fn parse(name: &str) -> Option<Case> {
        CASES.iter().copied().find(|c| c.name() == name)
    }
}

fn traffic_secret(tag: u8) -> Secret<20> {
    Secret::from_bytes([tag; 20])
}

/// State kept across passes, so key setup is outside the timed loop (as in a
/// session, where it happens once per connection and per rekey).
struct Bench {
    buf: Vec<u8>,
    bf: Ctr,
    mac: Hmac<Sha1>,
    aead: ChaCha20Poly1305,
    sealers: [Sealer; 2],
    out: Vec<u8>,
    /// Records per pass.
    records: usize,
    /// A sealed stream of `records` records per suite (made when first needed), for the open cases.
    streams: [Vec<u8>; 2],
    writers: [RecordWriter<io::Sink>; 2],
    read_buf: Vec<u8>,
    seq: u64,
}

fn suite_index(s: Suite) -> usize {
    match s {
        Suite::RsaBlowfish => 0,
        Suite::Noise => 1,
    }
}

impl Bench {
    fn new(pass_bytes: usize) -> Bench {
        let bf_cipher = Blowfish::new_from_slice(&[7u8; 16]).expect("16-byte Blowfish key");
        let bf = Ctr::from_core(ctr::CtrCore::inner_iv_init(bf_cipher, &[1u8; 8].into()));
        let mac = <Hmac<Sha1> as KeyInit>::new_from_slice(&[9u8; 20]).expect("any HMAC key");
        let aead = <ChaCha20Poly1305 as KeyInit>::new_from_slice(&[3u8; 32]).expect("32-byte key");
        let sealer = |s: Suite| Sealer::new(s.factory(), traffic_secret(1));
        Bench {
            records: (pass_bytes / PAYLOAD).max(1),
            buf: vec![0x5a; BODY],
            bf,
            mac,
            aead,
            sealers: [sealer(Suite::RsaBlowfish), sealer(Suite::Noise)],
            out: Vec::with_capacity(BODY + 64),
            streams: [Vec::new(), Vec::new()],
            writers: [
                RecordWriter::new(io::sink(), sealer(Suite::RsaBlowfish)),
                RecordWriter::new(io::sink(), sealer(Suite::Noise)),
            ],
            read_buf: vec![0u8; 64 * 1024],
            seq: 0,
        }
    }

    fn pass_bytes(&self) -> usize {
        self.records * PAYLOAD
    }

    /// Make the sealed stream the open cases of `case` read (outside any timing).
    fn prepare(&mut self, case: Case) {
        if let Case::Open(s) | Case::Reader(s) = case {
            let i = suite_index(s);
            if self.streams[i].is_empty() {
                self.streams[i] = sealed_stream(s, self.records);
            }
        }
    }

    /// One pass of `case`: `records` records of payload.
    fn pass(&mut self, case: Case) {
        let records = self.records;
        match case {
            Case::BfCtr => {
                for _ in 0..records {
                    self.bf.apply_keystream(&mut self.buf);
                }
            }
            Case::HmacSha1 => {
                for _ in 0..records {
                    black_box(self.mac_record());
                }
            }
            Case::CtrHmac => {
                for _ in 0..records {
                    self.bf.apply_keystream(&mut self.buf);
                    black_box(self.mac_record());
                }
            }
            Case::Chacha => {
                for _ in 0..records {
                    let mut n = [0u8; 12];
                    n[4..].copy_from_slice(&self.seq.to_be_bytes());
                    self.seq += 1;
                    let header = (BODY as u32).to_be_bytes();
                    let tag = self
                        .aead
                        .encrypt_inout_detached(
                            &Nonce::from(n),
                            &header,
                            self.buf.as_mut_slice().into(),
                        )
                        .expect("a record is far below the AEAD's limit");
                    black_box(tag);
                }
            }
            Case::Seal(s) => {
                let sealer = &mut self.sealers[suite_index(s)];
                let payload = &self.buf[..PAYLOAD];
                for _ in 0..records {
                    self.out.clear();
                    sealer
                        .seal(RecordType::Data, payload, &mut self.out)
                        .expect("seal");
                    black_box(&self.out);
                }
            }
            Case::Open(s) => {
                let mut opener = Opener::new(s.factory(), traffic_secret(1));
                let mut src = Cursor::new(&self.streams[suite_index(s)][..]);
                let mut buf = Vec::new();
                for _ in 0..records {
                    match opener.read(&mut src, &mut buf).expect("open") {
                        Opened::Data(n) => assert_eq!(n, BODY),
                        Opened::Close => unreachable!("no Close in the stream"),
                    }
                }
            }
            Case::Writer(s) => {
                let w = &mut self.writers[suite_index(s)];
                let payload = &self.buf[..PAYLOAD];
                for _ in 0..records {
                    w.write_all(payload).expect("write");
                }
            }
            Case::Reader(s) => {
                let opener = Opener::new(s.factory(), traffic_secret(1));
                let mut r =
                    RecordReader::new(Cursor::new(&self.streams[suite_index(s)][..]), opener);
                let mut left = records * PAYLOAD;
                while left > 0 {
                    let n = r.read(&mut self.read_buf).expect("read");
                    assert!(n > 0);
                    left -= n;
                }
            }
        }
    }

    fn mac_record(&mut self) -> [u8; 20] {
        let mut m = self.mac.clone();
        m.update(&self.seq.to_be_bytes());
        m.update(&(BODY as u32).to_be_bytes());
        m.update(&self.buf);
        self.seq += 1;
        m.finalize().into_bytes().into()
    }
}

fn sealed_stream(s: Suite, records: usize) -> Vec<u8> {
    let mut sealer = Sealer::new(s.factory(), traffic_secret(1));
    let mut out = Vec::with_capacity(records * (PAYLOAD + 64) + 4096);
    let payload = vec![0x5au8; PAYLOAD];
    for _ in 0..records {
        sealer
            .seal(RecordType::Data, &payload, &mut out)
            .expect("seal");
    }
    out
}

/// Run `case` for at least `secs` (whole passes); MB/s of payload (10^6 bytes).
fn sample(bench: &mut Bench, case: Case, secs: f64) -> f64 {
    let t = Instant::now();
    let mut passes = 0u64;
    loop {
        bench.pass(case);
        passes += 1;
        let el = t.elapsed().as_secs_f64();
        if el >= secs {
            return passes as f64 * bench.pass_bytes() as f64 / el / 1e6;
        }
    }
}

#[inline(never)]
fn ir_region(bench: &mut Bench, case: Case, passes: usize) {
    for _ in 0..passes {
        bench.pass(case);
    }
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

struct Args {
    rounds: usize,
    secs: f64,
    tsv: Option<String>,
    ir: Option<Case>,
    mib: usize,
    only: Vec<Case>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rounds: 7,
        secs: 0.3,
        tsv: None,
        ir: None,
        mib: 4,
        only: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |what: &str| it.next().ok_or(format!("{what} needs a value"));
        match arg.as_str() {
            "--rounds" => a.rounds = val("--rounds")?.parse().map_err(|e| format!("{e}"))?,
            "--secs" => a.secs = val("--secs")?.parse().map_err(|e| format!("{e}"))?,
            "--tsv" => a.tsv = Some(val("--tsv")?),
            "--mib" => a.mib = val("--mib")?.parse().map_err(|e| format!("{e}"))?,
            "--ir" => {
                let n = val("--ir")?;
                a.ir = Some(Case::parse(&n).ok_or(format!("unknown case {n:?} (see --list)"))?);
            }
            "--case" => {
                let n = val("--case")?;
                a.only
                    .push(Case::parse(&n).ok_or(format!("unknown case {n:?} (see --list)"))?);
            }
            "--list" => {
                for c in CASES {
                    println!("{}", c.name());
                }
                std::process::exit(0);
            }
            // `cargo bench` passes --bench; libtest-style filters are ignored.
            _ => {}
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("record: {e}");
            std::process::exit(2);
        }
    };
    if let Some(case) = args.ir {
        let mut bench = Bench::new(args.mib << 20);
        bench.prepare(case);
        // Warm up (first-touch page faults, lazy CPU feature detection) outside the region.
        bench.pass(case);
        ir_region(&mut bench, case, 1);
        println!("{}\t{}", case.name(), bench.pass_bytes());
        return;
    }
    let mut bench = Bench::new(PASS_BYTES);
    let cases: Vec<Case> = if args.only.is_empty() {
        CASES.to_vec()
    } else {
        args.only.clone()
    };
    for &c in &cases {
        bench.prepare(c);
        bench.pass(c); // warm-up
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..args.rounds {
        for (i, &c) in cases.iter().enumerate() {
            results[i].push(sample(&mut bench, c, args.secs));
        }
    }
    let mut tsv = String::new();
    println!(
        "record layer, 16 KiB payloads, MB/s (10^6 B/s), {} rounds of >= {} s per case",
        args.rounds, args.secs
    );
    println!("{:<24} {:>9} {:>9} {:>9}", "case", "median", "min", "max");
    for (i, c) in cases.iter().enumerate() {
        let v = &mut results[i];
        let (min, max) = v
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        let med = median(v);
        println!("{:<24} {med:>9.1} {min:>9.1} {max:>9.1}", c.name());
        let all: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
        tsv.push_str(&format!(
            "{}\t{med:.1}\t{min:.1}\t{max:.1}\t{}\n",
            c.name(),
            all.join(",")
        ));
    }
    if let Some(path) = args.tsv {
        std::fs::write(&path, tsv).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}
