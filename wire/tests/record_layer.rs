//! Property and adversarial tests of the record layer (`blackpony_wire::record`)
//! under the RSA-BLOWFISH protection (Blowfish-CTR, then HMAC-SHA1 over
//! seq || header || ciphertext).
//!
//! Every test uses fixed traffic secrets and a seeded PRNG, so a failure
//! reproduces exactly. One test re-derives the record format with the
//! RustCrypto crates directly, independently of `blackpony_crypto`, so the
//! wire format (labels, counter, what the tag covers, sequence numbers across
//! rekeys) is pinned down, not only self-consistency.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use blackpony_crypto::Secret;
use blackpony_wire::blowfish::protection;
use blackpony_wire::limits::{MAX_RECORD_PAYLOAD, REKEY_BYTES, REKEY_SLACK};
use blackpony_wire::record::{
    record_error, Opened, Opener, Protection, RecordReader, RecordType, RecordWriter, Sealer,
    Truncated, HEADER_LEN, MAX_BODY,
};
use blackpony_wire::schedule::{next_traffic, TrafficSecret};

/// HMAC-SHA1 tag length of the RSA-BLOWFISH protection.
const TAG_LEN: usize = 20;

// ------------------------------------------------------------------ helpers

/// SplitMix64: a tiny seeded PRNG, so every "random" test is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn ts(b: u8) -> TrafficSecret {
    Secret::from_bytes([b; 20])
}

fn sealer(b: u8) -> Sealer {
    Sealer::new(protection, ts(b))
}

fn opener(b: u8) -> Opener {
    Opener::new(protection, ts(b))
}

fn seal(s: &mut Sealer, kind: RecordType, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.seal(kind, payload, &mut out).expect("seal");
    out
}

/// Split a stream of sealed records into (header, body || tag) pairs.
fn parse_records(mut stream: &[u8]) -> Vec<([u8; HEADER_LEN], Vec<u8>)> {
    let mut v = Vec::new();
    while !stream.is_empty() {
        let header: [u8; HEADER_LEN] = stream[..HEADER_LEN].try_into().unwrap();
        let total = u32::from_be_bytes(header) as usize + TAG_LEN;
        v.push((header, stream[HEADER_LEN..HEADER_LEN + total].to_vec()));
        stream = &stream[HEADER_LEN + total..];
    }
    v
}

fn body_len(header: &[u8; HEADER_LEN]) -> usize {
    u32::from_be_bytes(*header) as usize
}

/// Open one complete sealed record (header included) with `Opener::open`.
fn open_one(o: &mut Opener, record: &[u8]) -> io::Result<Option<(Opened, Vec<u8>)>> {
    let header: [u8; HEADER_LEN] = record[..HEADER_LEN].try_into().unwrap();
    let mut rest = record[HEADER_LEN..].to_vec();
    Ok(o.open(&header, &mut rest)?.map(|opened| {
        let payload = match opened {
            Opened::Data(n) => rest[1..n].to_vec(),
            Opened::Close => Vec::new(),
        };
        (opened, payload)
    }))
}

/// A reader over a byte slice that returns short reads: it never crosses one
/// of the `cuts` offsets in one read, returns at most `max_chunk` bytes
/// (randomly fewer when it has a PRNG), and can inject `Interrupted` errors.
/// `pos` tells how much the consumer took.
struct Splits<'a> {
    data: &'a [u8],
    pos: usize,
    cuts: Vec<usize>,
    rng: Option<Rng>,
    max_chunk: usize,
    interrupt: bool,
}

impl<'a> Splits<'a> {
    fn whole(data: &'a [u8]) -> Self {
        Splits {
            data,
            pos: 0,
            cuts: Vec::new(),
            rng: None,
            max_chunk: usize::MAX,
            interrupt: false,
        }
    }

    fn cut_at(data: &'a [u8], cuts: &[usize]) -> Self {
        Splits {
            cuts: cuts.to_vec(),
            ..Self::whole(data)
        }
    }

    fn random(data: &'a [u8], seed: u64, max_chunk: usize) -> Self {
        Splits {
            rng: Some(Rng(seed)),
            max_chunk,
            ..Self::whole(data)
        }
    }
}

impl Read for Splits<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.pos == self.data.len() {
            return Ok(0);
        }
        let mut n = out
            .len()
            .min(self.data.len() - self.pos)
            .min(self.max_chunk);
        if let Some(&c) = self.cuts.iter().find(|&&c| c > self.pos) {
            n = n.min(c - self.pos);
        }
        if let Some(rng) = self.rng.as_mut() {
            if self.interrupt && rng.below(4) == 0 {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "signal"));
            }
            n = n.min(1 + rng.below(self.max_chunk));
        }
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Read a RecordReader to its end with output buffers of random sizes;
/// returns what was read and how it ended.
fn drain<R: Read>(r: &mut R, rng: &mut Rng, max_buf: usize) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    loop {
        let mut buf = vec![0u8; 1 + rng.below(max_buf)];
        match r.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (got, Err(e)),
        }
    }
}

fn assert_record_error(e: &io::Error, what: &str) {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
    assert_eq!(
        e.to_string(),
        record_error().to_string(),
        "{what}: every record failure reads the same"
    );
}

/// Read `stream` to its end through a RecordReader in one piece (key 7):
/// what it yielded, and how it ended.
fn read_all(stream: &[u8]) -> (Vec<u8>, io::Result<usize>) {
    let mut got = Vec::new();
    let end = RecordReader::new(Splits::whole(stream), opener(7)).read_to_end(&mut got);
    (got, end)
}

/// A stream of Data records with the given payloads, then Close.
fn sealed_stream(s: &mut Sealer, payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        s.seal(RecordType::Data, p, &mut out).unwrap();
    }
    s.seal(RecordType::Close, &[], &mut out).unwrap();
    out
}

/// Push `data` through a RecordWriter (random write sizes up to `max_write`,
/// a flush after one write in `flush_one_in`) and return the sealed stream.
fn write_stream(
    s: Sealer,
    data: &[u8],
    rng: &mut Rng,
    max_write: usize,
    flush_one_in: usize,
) -> Vec<u8> {
    let mut w = RecordWriter::new(Vec::new(), s);
    let mut at = 0;
    while at < data.len() {
        let n = (1 + rng.below(max_write)).min(data.len() - at);
        w.write_all(&data[at..at + n]).unwrap();
        if rng.below(flush_one_in) == 0 {
            w.flush().unwrap();
        }
        at += n;
    }
    w.close().unwrap();
    std::mem::take(w.get_mut())
}

// --------------------------------------------------------------- round trip

/// Payload sizes to try. Not 0: an empty Data record is not a legal record
/// (see the empty_data_record tests).
const SIZES: &[usize] = &[
    1, 2, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 256, 1000, 1500, 4095, 4096, 4097, 8191, 8192,
    16382, 16383, 16384,
];

#[test]
fn round_trip_every_size_through_open() {
    let mut rng = Rng(1);
    let mut s = sealer(7);
    let mut o = opener(7);
    let mut sizes = SIZES.to_vec();
    sizes.extend((0..64).map(|_| 1 + rng.below(MAX_RECORD_PAYLOAD)));
    for &n in &sizes {
        let payload = rng.bytes(n);
        let rec = seal(&mut s, RecordType::Data, &payload);
        assert_eq!(
            rec.len(),
            HEADER_LEN + 1 + n + TAG_LEN,
            "size {n}: header + type + payload + tag"
        );
        assert_eq!(body_len(rec[..4].try_into().unwrap()), n + 1);
        let (opened, got) = open_one(&mut o, &rec).unwrap().expect("a data record");
        assert_eq!(opened, Opened::Data(n + 1));
        assert_eq!(got, payload, "size {n}");
    }
    let close = seal(&mut s, RecordType::Close, &[]);
    assert_eq!(close.len(), HEADER_LEN + 1 + TAG_LEN);
    assert_eq!(open_one(&mut o, &close).unwrap().unwrap().0, Opened::Close);
}

#[test]
fn round_trip_every_size_through_opener_read_with_random_splits() {
    let mut rng = Rng(2);
    let payloads: Vec<Vec<u8>> = SIZES.iter().map(|&n| rng.bytes(n)).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    let stream = sealed_stream(&mut sealer(7), &refs);
    for seed in 0..8 {
        let mut src = Splits::random(&stream, seed, 1 + seed as usize * 97);
        let mut o = opener(7);
        let mut buf = Vec::new();
        for p in &payloads {
            match o.read(&mut src, &mut buf).unwrap() {
                Opened::Data(n) => assert_eq!(&buf[1..n], &p[..]),
                Opened::Close => panic!("early close"),
            }
            assert!(buf.len() <= MAX_BODY + TAG_LEN);
        }
        assert_eq!(o.read(&mut src, &mut buf).unwrap(), Opened::Close);
        assert_eq!(src.pos, stream.len());
    }
}

#[test]
fn record_reader_round_trip_every_size_random_splits() {
    let mut rng = Rng(3);
    let payloads: Vec<Vec<u8>> = SIZES.iter().map(|&n| rng.bytes(n)).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    let expect = payloads.concat();
    let stream = sealed_stream(&mut sealer(7), &refs);
    for seed in 0..16 {
        let mut src = Splits::random(&stream, seed, 1 + (seed as usize % 4) * 300);
        src.interrupt = seed % 2 == 1;
        let mut r = RecordReader::new(&mut src, opener(7));
        let (got, end) = drain(&mut r, &mut Rng(seed + 100), 3000);
        end.unwrap();
        assert_eq!(got, expect, "seed {seed}");
    }
}

/// An empty Data record must never read as end of stream (`Ok(0)` from
/// RecordReader), which would end the stream without the authenticated Close
/// and drop everything after it. Either the reader skips it (and delivers
/// everything) or the opener rejects it; never a short clean end.
#[test]
fn empty_data_record_is_never_a_clean_end_of_stream() {
    // Sealer refuses empty Data, so the records are made by hand.
    let d = RecordType::Data as u8;
    let stream = hand_stream(
        7,
        &[
            (d, b""),
            (d, b"abc"),
            (d, b""),
            (d, b"def"),
            (RecordType::Close as u8, b""),
        ],
    );
    let mut src = Splits::whole(&stream);
    let mut r = RecordReader::new(&mut src, opener(7));
    let mut got = Vec::new();
    match r.read_to_end(&mut got) {
        Ok(_) => {
            assert_eq!(got, b"abcdef");
            drop(r);
            assert_eq!(src.pos, stream.len(), "read through the Close record");
        }
        Err(e) => {
            assert_record_error(&e, "empty Data record");
            assert!(got.is_empty());
        }
    }
    // Same at the end of a stream: an empty Data record where Close should be.
    let stream = hand_stream(7, &[(d, b"250 OK\r\n"), (d, b"")]);
    let (got, end) = read_all(&stream);
    let e = end.expect_err("no Close: never a clean end");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        ),
        "{e}"
    );
    assert_eq!(got, b"250 OK\r\n");
}

/// The current rule (wire/src/record.rs): the sealer refuses an empty Data
/// record (so it never seals one its peer rejects), and `Opener::open`
/// rejects a hand-made one like any other bad record.
#[test]
fn empty_data_record_is_rejected_by_open() {
    assert!(sealer(7)
        .seal(RecordType::Data, b"", &mut Vec::new())
        .is_err());
    let (h, mut r) = raw_record(&mut *protection(&ts(7)), 0, RecordType::Data as u8, b"");
    assert_record_error(
        &opener(7).open(&h, &mut r).unwrap_err(),
        "hand-made empty Data",
    );
}

#[test]
fn largest_payload_fills_max_body() {
    let payload = Rng(4).bytes(MAX_RECORD_PAYLOAD);
    let rec = seal(&mut sealer(7), RecordType::Data, &payload);
    assert_eq!(body_len(rec[..4].try_into().unwrap()), MAX_BODY);
    assert_eq!(open_one(&mut opener(7), &rec).unwrap().unwrap().1, payload);
}

#[test]
#[should_panic(expected = "caller splits payloads")]
fn sealer_refuses_payload_above_max() {
    let mut out = Vec::new();
    let _ = sealer(7).seal(
        RecordType::Data,
        &vec![0u8; MAX_RECORD_PAYLOAD + 1],
        &mut out,
    );
}

#[test]
fn one_mib_random_stream_through_writer_and_reader() {
    let mut rng = Rng(5);
    let data = rng.bytes(1 << 20);
    let stream = write_stream(sealer(7), &data, &mut rng, 40_000, 4);

    // Every record the writer produced is well formed: Data records are never
    // empty and never above the limit, and exactly one Close ends the stream.
    let records = parse_records(&stream);
    let (last, data_records) = records.split_last().unwrap();
    assert_eq!(body_len(&last.0), 1, "Close is the last record");
    for (h, _) in data_records {
        assert!(
            (2..=MAX_BODY).contains(&body_len(h)),
            "data record body {}",
            body_len(h)
        );
    }
    assert!(data_records.len() >= (1 << 20) / MAX_RECORD_PAYLOAD);

    for seed in 0..3 {
        let mut src = Splits::random(&stream, seed, 1 + 4000 * seed as usize);
        src.interrupt = seed == 1;
        let mut r = RecordReader::new(&mut src, opener(7));
        let (got, end) = drain(&mut r, &mut Rng(seed + 50), 70_000);
        end.unwrap();
        assert!(got == data, "seed {seed}: 1 MiB differs");
        assert_eq!(src.pos, stream.len());
    }
}

#[test]
fn short_stream_split_at_every_offset_and_every_pair() {
    let stream = sealed_stream(&mut sealer(7), &[b"EHLO a\r\n", b"x", b"QUIT\r\n"]);
    let expect = b"EHLO a\r\nxQUIT\r\n";
    let check = |cuts: &[usize]| {
        let mut src = Splits::cut_at(&stream, cuts);
        let mut r = RecordReader::new(&mut src, opener(7));
        let mut got = Vec::new();
        r.read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("cuts {cuts:?}: {e}"));
        assert_eq!(got, expect, "cuts {cuts:?}");
        drop(r);
        assert_eq!(src.pos, stream.len(), "cuts {cuts:?}");
    };
    for a in 1..stream.len() {
        check(&[a]);
        for b in a + 1..stream.len() {
            check(&[a, b]);
        }
    }
    // One byte per read.
    let all: Vec<usize> = (1..stream.len()).collect();
    check(&all);
}

/// RecordWriter's record boundaries: nothing sealed for empty writes or
/// empty flushes, full records for large writes, and `send_with_prefix`
/// puts its prefix before the records in one write to the socket.
#[test]
fn record_writer_boundaries_and_prefix() {
    let mut w = RecordWriter::new(Vec::new(), sealer(7));
    assert_eq!(w.write(b"").unwrap(), 0);
    w.flush().unwrap();
    assert!(
        w.get_mut().is_empty(),
        "no record for an empty write or flush"
    );

    let big = Rng(13).bytes(MAX_RECORD_PAYLOAD + 1);
    w.write_all(&big).unwrap();
    // The full record went out at once; one byte is pending.
    assert_eq!(w.get_mut().len(), HEADER_LEN + MAX_BODY + TAG_LEN);
    w.flush().unwrap();
    let records = parse_records(w.get_mut());
    assert_eq!(records.len(), 2);
    assert_eq!(body_len(&records[1].0), 2);

    // A fresh writer: prefix, then exactly one record, in one write.
    struct Writes(Vec<Vec<u8>>);
    impl Write for Writes {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut w = RecordWriter::new(Writes(Vec::new()), sealer(7));
    w.send_with_prefix(b"\x02\x00\x01X", b"EHLO a\r\n").unwrap();
    let writes = std::mem::take(&mut w.get_mut().0);
    assert_eq!(
        writes.len(),
        1,
        "one write: prefix and record share a segment"
    );
    let (prefix, record) = writes[0].split_at(4);
    assert_eq!(prefix, b"\x02\x00\x01X");
    assert_eq!(
        open_one(&mut opener(7), record).unwrap().unwrap().1,
        b"EHLO a\r\n"
    );
    // With no data: the prefix alone, no empty record.
    let mut w = RecordWriter::new(Vec::new(), sealer(7));
    w.send_with_prefix(b"PFX", b"").unwrap();
    assert_eq!(w.get_mut().as_slice(), b"PFX");
}

// ------------------------------------------------------------------- tamper

/// Flip every bit of a sealed record (header, type, payload, tag): opening it
/// fails, always with the same InvalidData error, and yields no data.
#[test]
fn every_bit_flip_is_rejected_by_open() {
    let payload = b"MAIL FROM:<a@example.org>\r\n";
    let rec = seal(&mut sealer(7), RecordType::Data, payload);
    let mut flips = 0;
    for bit in 0..rec.len() * 8 {
        let mut bad = rec.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let mut o = opener(7);
        match open_one(&mut o, &bad) {
            Ok(r) => panic!("bit {bit}: tampered record accepted: {r:?}"),
            Err(e) => assert_record_error(&e, &format!("bit {bit}")),
        }
        flips += 1;
    }
    assert_eq!(flips, (HEADER_LEN + 1 + payload.len() + TAG_LEN) * 8);
    // The untampered record still opens with a fresh opener.
    assert_eq!(open_one(&mut opener(7), &rec).unwrap().unwrap().1, payload);
}

/// The same through the stream readers: with the tampered record first, no
/// byte of data comes out. Body and tag flips give InvalidData; header flips
/// (length changes) give InvalidData or, when the new length runs past the
/// end of the stream, UnexpectedEof.
#[test]
fn every_bit_flip_is_rejected_by_the_stream_readers() {
    let mut s = sealer(7);
    let first = seal(&mut s, RecordType::Data, b"RCPT TO:<b@example.org>\r\n");
    let rest = sealed_stream(&mut s, &[b"DATA\r\n"]);
    for trailing in [false, true] {
        for bit in 0..first.len() * 8 {
            let mut stream = first.clone();
            stream[bit / 8] ^= 1 << (bit % 8);
            if trailing {
                stream.extend_from_slice(&rest);
            }
            let in_header = bit / 8 < HEADER_LEN;

            let mut buf = Vec::new();
            let e = opener(7)
                .read(&mut Splits::whole(&stream), &mut buf)
                .unwrap_err();
            let (got, end) = read_all(&stream);
            let e2 = end.unwrap_err();
            assert!(
                got.is_empty(),
                "bit {bit}: data yielded from a tampered record"
            );
            for e in [&e, &e2] {
                if in_header && e.kind() == io::ErrorKind::UnexpectedEof {
                    continue;
                }
                assert_record_error(e, &format!("bit {bit} trailing {trailing}"));
            }
            if !in_header {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "bit {bit}");
            }
        }
    }
}

/// A valid record followed by a tampered one: exactly the first payload comes
/// out. A tampered Close after two good records: both payloads, then an error.
#[test]
fn tampered_later_record_yields_only_what_precedes_it() {
    let mut s = sealer(7);
    let mut stream = seal(&mut s, RecordType::Data, b"first");
    let second_at = stream.len();
    stream.extend(seal(&mut s, RecordType::Data, b"second"));
    let close_at = stream.len();
    stream.extend(seal(&mut s, RecordType::Close, &[]));
    for bit in second_at * 8..stream.len() * 8 {
        let mut bad = stream.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let (got, end) = read_all(&bad);
        assert!(end.is_err(), "bit {bit}");
        let expect: &[u8] = if bit / 8 < close_at {
            b"first"
        } else {
            b"firstsecond"
        };
        assert_eq!(got, expect, "bit {bit}");
    }
}

// ------------------------------------------- replay, reorder, drop, reflection

fn three_records() -> Vec<Vec<u8>> {
    let mut s = sealer(7);
    vec![
        seal(&mut s, RecordType::Data, b"one"),
        seal(&mut s, RecordType::Data, b"two"),
        seal(&mut s, RecordType::Data, b"three"),
    ]
}

#[test]
fn replayed_record_is_rejected() {
    let r = three_records();
    let mut o = opener(7);
    assert_eq!(open_one(&mut o, &r[0]).unwrap().unwrap().1, b"one");
    assert_record_error(&open_one(&mut o, &r[0]).unwrap_err(), "replay of record 0");
    // Also through the stream reader: one, one.
    let stream = [r[0].clone(), r[0].clone()].concat();
    let (got, end) = read_all(&stream);
    assert_record_error(&end.unwrap_err(), "replay in stream");
    assert_eq!(got, b"one");
}

#[test]
fn reordered_records_are_rejected() {
    let r = three_records();
    let mut o = opener(7);
    assert_record_error(&open_one(&mut o, &r[1]).unwrap_err(), "record 1 before 0");
    let mut o = opener(7);
    open_one(&mut o, &r[0]).unwrap();
    assert_record_error(&open_one(&mut o, &r[2]).unwrap_err(), "record 2 before 1");
}

#[test]
fn dropped_record_is_detected() {
    let r = three_records();
    let mut o = opener(7);
    open_one(&mut o, &r[0]).unwrap();
    assert_record_error(&open_one(&mut o, &r[2]).unwrap_err(), "record 1 dropped");
    // Dropping the first.
    assert_record_error(
        &open_one(&mut opener(7), &r[1]).unwrap_err(),
        "record 0 dropped",
    );
}

#[test]
fn dropped_close_is_detected_as_truncation() {
    let mut s = sealer(7);
    let data = seal(&mut s, RecordType::Data, b"250 OK\r\n");
    let (got, end) = read_all(&data);
    assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(got, b"250 OK\r\n");
}

/// A record sealed for the other direction (other traffic secret) fed back
/// to the sender's own peer-opener is rejected, at every sequence position.
#[test]
fn reflected_record_is_rejected() {
    let (c2s, s2c) = (7u8, 8u8);
    let mut client = sealer(c2s);
    let mut server = sealer(s2c);
    let from_client: Vec<Vec<u8>> = (0..4)
        .map(|_| seal(&mut client, RecordType::Data, b"hello"))
        .collect();
    let from_server: Vec<Vec<u8>> = (0..4)
        .map(|_| seal(&mut server, RecordType::Data, b"hello"))
        .collect();
    for i in 0..4 {
        // The client's opener expects s2c: feed it the client's own records.
        let mut client_opener = opener(s2c);
        for own in &from_server[..i] {
            open_one(&mut client_opener, own).unwrap();
        }
        assert_record_error(
            &open_one(&mut client_opener, &from_client[i]).unwrap_err(),
            "reflected c2s",
        );
        let mut server_opener = opener(c2s);
        for own in &from_client[..i] {
            open_one(&mut server_opener, own).unwrap();
        }
        assert_record_error(
            &open_one(&mut server_opener, &from_server[i]).unwrap_err(),
            "reflected s2c",
        );
    }
    // Reflected Close is rejected too.
    let close = seal(&mut sealer(c2s), RecordType::Close, &[]);
    assert_record_error(
        &open_one(&mut opener(s2c), &close).unwrap_err(),
        "reflected close",
    );
}

// --------------------------------------------------------------- truncation

#[test]
fn stream_cut_anywhere_before_close_end_is_unexpected_eof() {
    let mut rng = Rng(6);
    let payloads: Vec<Vec<u8>> = [5, 1, 300, 2000, 2].iter().map(|&n| rng.bytes(n)).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_slice()).collect();
    let expect = payloads.concat();
    let stream = sealed_stream(&mut sealer(7), &refs);
    for cut in 0..stream.len() {
        check_cut(&stream, &expect, cut);
    }
    // A stream with a full-size record: cuts around every record boundary and
    // a stride through the large body.
    let big = rng.bytes(MAX_RECORD_PAYLOAD);
    let stream = sealed_stream(&mut sealer(7), &[b"x", &big, b"y"]);
    let expect = [&b"x"[..], &big, b"y"].concat();
    let mut cuts: Vec<usize> = (0..stream.len()).step_by(211).collect();
    let mut at = 0usize;
    for (h, rec) in parse_records(&stream) {
        cuts.extend(at.saturating_sub(2)..at + HEADER_LEN + 2);
        at += HEADER_LEN + rec.len();
        cuts.extend(at - TAG_LEN - 2..at);
        assert!(body_len(&h) >= 1);
    }
    for cut in cuts {
        check_cut(&stream, &expect, cut);
    }
}

fn check_cut(stream: &[u8], expect: &[u8], cut: usize) {
    let (got, end) = read_all(&stream[..cut]);
    let e = end.expect_err("a cut stream must not end cleanly");
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}: {e}");
    assert!(
        e.get_ref().is_some_and(|i| i.is::<Truncated>()),
        "cut {cut}: the error says the stream was cut: {e:?}"
    );
    assert!(
        expect.starts_with(&got),
        "cut {cut}: only authentic data comes out"
    );
    // The Opener alone agrees.
    let mut o = opener(7);
    let mut buf = Vec::new();
    let mut src = Splits::whole(&stream[..cut]);
    let e = loop {
        match o.read(&mut src, &mut buf) {
            Ok(Opened::Data(_)) => continue,
            Ok(Opened::Close) => panic!("cut {cut}: Close from a cut stream"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut {cut}");
}

#[test]
fn close_ends_cleanly_and_nothing_after_it_is_read() {
    let stream = sealed_stream(&mut sealer(7), &[b"221 bye\r\n"]);
    let mut with_junk = stream.clone();
    with_junk.extend_from_slice(b"junk after close that must never be read");
    let mut src = Splits::random(&with_junk, 9, 3);
    let mut r = RecordReader::new(&mut src, opener(7));
    let mut got = Vec::new();
    assert_eq!(r.read_to_end(&mut got).unwrap(), 9);
    assert_eq!(got, b"221 bye\r\n");
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        assert_eq!(r.read(&mut buf).unwrap(), 0, "EOF is sticky after Close");
    }
    drop(r);
    assert_eq!(
        src.pos,
        stream.len(),
        "no byte after the Close record was consumed"
    );
}

#[test]
fn raw_eof_at_start_is_unexpected_eof_not_clean() {
    let mut src = Splits::whole(&[]);
    let mut r = RecordReader::new(&mut src, opener(7));
    let mut buf = [0u8; 16];
    assert_eq!(
        r.read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::UnexpectedEof
    );
}

// ----------------------------------------------------------------- oversize

#[test]
fn oversize_and_zero_headers_are_rejected_before_allocation() {
    for announced in [
        0u32,
        MAX_BODY as u32 + 1,
        0x0001_0000,
        0x7FFF_FFFF,
        0xFFFF_FFFF,
    ] {
        let header = announced.to_be_bytes();
        assert_record_error(
            &Opener::body_len(&header).unwrap_err(),
            &format!("body_len {announced:#x}"),
        );

        // Opener::read: a header, then (bounded) endless zeros.
        let mut stream = header.to_vec();
        stream.resize(HEADER_LEN + 2 * (MAX_BODY + TAG_LEN), 0);
        for mut buf in [Vec::new(), Vec::with_capacity(100)] {
            let cap = buf.capacity();
            let mut src = Splits::whole(&stream);
            let t = Instant::now();
            let e = opener(7).read(&mut src, &mut buf).unwrap_err();
            assert!(t.elapsed() < Duration::from_millis(100));
            assert_record_error(&e, &format!("read {announced:#x}"));
            assert_eq!(
                buf.capacity(),
                cap,
                "{announced:#x}: the buffer did not grow"
            );
            assert!(buf.is_empty());
            assert_eq!(
                src.pos, HEADER_LEN,
                "{announced:#x}: nothing read past the header"
            );
        }

        // Opener::open with a record of any size.
        let mut record = vec![0u8; 64];
        assert_record_error(&opener(7).open(&header, &mut record).unwrap_err(), "open");

        // RecordReader.
        let mut src = Splits::whole(&stream);
        let mut r = RecordReader::new(&mut src, opener(7));
        assert_record_error(&r.read(&mut [0u8; 8]).unwrap_err(), "RecordReader");
    }
}

/// The largest legal header is accepted by the length check; the buffer grows
/// to exactly MAX_BODY + tag and the forged body fails authentication.
#[test]
fn max_body_header_bounds_the_buffer() {
    let header = (MAX_BODY as u32).to_be_bytes();
    assert_eq!(Opener::body_len(&header).unwrap(), MAX_BODY);
    let mut stream = header.to_vec();
    stream.extend(Rng(7).bytes(MAX_BODY + TAG_LEN + 100));
    let mut buf = Vec::new();
    let mut src = Splits::whole(&stream);
    assert_record_error(
        &opener(7).read(&mut src, &mut buf).unwrap_err(),
        "forged max record",
    );
    assert_eq!(buf.len(), MAX_BODY + TAG_LEN);
    assert_eq!(src.pos, HEADER_LEN + MAX_BODY + TAG_LEN);
}

/// `open` insists that the record it is given is exactly body + tag long.
#[test]
fn open_rejects_record_of_wrong_length() {
    let rec = seal(&mut sealer(7), RecordType::Data, b"hello");
    let header: [u8; HEADER_LEN] = rec[..4].try_into().unwrap();
    for len in [0, 1, rec.len() - HEADER_LEN - 1, rec.len() - HEADER_LEN + 1] {
        let mut r = rec[HEADER_LEN..].to_vec();
        r.resize(len, 0);
        assert_record_error(
            &opener(7).open(&header, &mut r).unwrap_err(),
            &format!("len {len}"),
        );
    }
}

// -------------------------------------------------------------------- rekey

#[test]
fn rekey_every_4096_bytes_over_4_mib() {
    const LIMIT: u64 = 4096;
    let mut rng = Rng(8);
    let data = rng.bytes(4 << 20);
    let mut s = sealer(7);
    s.set_rekey_limit(LIMIT);
    let stream = write_stream(s, &data, &mut rng, 20_000, 2);

    let mut o = opener(7);
    o.set_rekey_limit(LIMIT);
    let mut src = Splits::random(&stream, 8, 70_000);
    let mut r = RecordReader::new(&mut src, o);
    let (got, end) = drain(&mut r, &mut Rng(80), 100_000);
    end.unwrap();
    assert!(got == data, "4 MiB differ after rekeying");

    // Count the Rekey records two ways: by header (a one-byte body that is not
    // the final Close) and by opening with a second Opener (`Ok(None)`).
    let records = parse_records(&stream);
    let by_len = records[..records.len() - 1]
        .iter()
        .filter(|(h, _)| body_len(h) == 1)
        .count();
    let mut o2 = opener(7);
    o2.set_rekey_limit(LIMIT);
    let mut rekeys = 0;
    let mut epoch_bytes = 0u64;
    let mut epoch_records = 0;
    for (h, rec) in &records {
        let mut rec = rec.clone();
        match o2.open(h, &mut rec).unwrap() {
            None => {
                // Everything under the old key stayed within the limit,
                // unless one record alone is larger than it.
                assert!(
                    epoch_bytes <= LIMIT || epoch_records == 1,
                    "epoch of {epoch_bytes} bytes"
                );
                rekeys += 1;
                epoch_bytes = 0;
                epoch_records = 0;
            }
            Some(Opened::Data(n)) => {
                epoch_bytes += n as u64;
                epoch_records += 1;
            }
            Some(Opened::Close) => {}
        }
    }
    assert_eq!(rekeys, by_len);
    let lower = data.len() as u64 / (LIMIT + MAX_BODY as u64);
    assert!(
        rekeys as u64 >= lower,
        "{rekeys} rekeys for 4 MiB at a 4096-byte limit"
    );
    assert!(records.len() > rekeys + 1);
}

#[test]
fn sender_with_lower_limit_works_with_default_opener() {
    let mut rng = Rng(9);
    let data = rng.bytes(256 * 1024);
    let mut s = sealer(7);
    s.set_rekey_limit(1000);
    let stream = write_stream(s, &data, &mut rng, 3000, 2);
    let records = parse_records(&stream);
    assert!(
        records[..records.len() - 1]
            .iter()
            .any(|(h, _)| body_len(h) == 1),
        "rekeys happened"
    );
    let (got, end) = read_all(&stream);
    end.unwrap();
    assert!(got == data);

    // And with an opener whose (lower than default) limit is still above the sender's.
    let mut o = opener(7);
    o.set_rekey_limit(5000);
    let mut src = Splits::whole(&stream);
    let mut got = Vec::new();
    RecordReader::new(&mut src, o)
        .read_to_end(&mut got)
        .unwrap();
    assert!(got == data);
}

#[test]
fn opener_with_lower_limit_than_sender_rejects() {
    let data = Rng(10).bytes(4 * MAX_RECORD_PAYLOAD);
    let stream = write_stream(sealer(7), &data, &mut Rng(10), 100_000, 2);
    let mut o = opener(7);
    o.set_rekey_limit(4096);
    let mut src = Splits::whole(&stream);
    let mut r = RecordReader::new(&mut src, o);
    let mut got = Vec::new();
    assert_record_error(
        &r.read_to_end(&mut got).unwrap_err(),
        "sender exceeded the opener's limit",
    );
    // Allowed: limit + slack. Records are up to MAX_BODY each, so exactly the
    // whole records that fit in 4096 + REKEY_SLACK came out.
    assert!(got.len() as u64 <= 4096 + REKEY_SLACK);
    assert_eq!(&data[..got.len()], &got[..]);
    assert!(!got.is_empty());
}

/// `set_rekey_limit` can only lower the limit: a sealer told u64::MAX still
/// rekeys when the next record would take the key past REKEY_BYTES.
#[test]
fn rekey_limit_cannot_be_raised_on_the_sealer() {
    let payload = vec![0x55u8; MAX_RECORD_PAYLOAD];
    let fit = (REKEY_BYTES / MAX_BODY as u64) as usize;
    for raise in [false, true] {
        let mut s = sealer(7);
        if raise {
            s.set_rekey_limit(u64::MAX);
        }
        let mut first_rekey = None;
        for i in 0..fit + 2 {
            let rec = seal(&mut s, RecordType::Data, &payload);
            if rec.len() > HEADER_LEN + MAX_BODY + TAG_LEN {
                assert_eq!(
                    body_len(rec[..4].try_into().unwrap()),
                    1,
                    "a Rekey record first"
                );
                first_rekey.get_or_insert(i);
            }
        }
        assert_eq!(first_rekey, Some(fit), "raise {raise}");
    }
}

/// Hand-seal Data records under one key without ever rekeying; a default
/// opener, and one told u64::MAX, reject the record that takes the key past
/// REKEY_BYTES + REKEY_SLACK.
#[test]
fn opener_enforces_rekey_bytes_plus_slack() {
    let accepted = ((REKEY_BYTES + REKEY_SLACK) / MAX_BODY as u64) as usize;
    let mut p = protection(&ts(7));
    let mut records = Vec::new();
    for seq in 0..=accepted as u64 {
        records.push(raw_record(
            &mut *p,
            seq,
            RecordType::Data as u8,
            &[0xAA; MAX_RECORD_PAYLOAD],
        ));
    }
    for raise in [false, true] {
        let mut o = opener(7);
        if raise {
            o.set_rekey_limit(u64::MAX);
        }
        for (i, (h, rec)) in records.iter().enumerate() {
            let mut rec = rec.clone();
            let r = o.open(h, &mut rec);
            if i < accepted {
                assert_eq!(r.unwrap(), Some(Opened::Data(MAX_BODY)), "record {i}");
            } else {
                assert_record_error(&r.unwrap_err(), &format!("record {i} past the limit"));
            }
        }
    }
}

// --------------------------------------------------- determinism, keystream

#[test]
fn same_key_same_input_gives_identical_records() {
    let mut rng = Rng(11);
    let inputs: Vec<Vec<u8>> = (0..50)
        .map(|_| {
            let n = rng.below(3000);
            rng.bytes(n)
        })
        .collect();
    let (mut a, mut b) = (sealer(7), sealer(7));
    a.set_rekey_limit(10_000);
    b.set_rekey_limit(10_000);
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    for p in &inputs {
        a.seal(RecordType::Data, p, &mut out_a).unwrap();
        b.seal(RecordType::Data, p, &mut out_b).unwrap();
    }
    assert_eq!(out_a, out_b, "sealing has no hidden randomness");
    // A different secret gives different records.
    let mut c = sealer(8);
    let mut out_c = Vec::new();
    c.set_rekey_limit(10_000);
    for p in &inputs {
        c.seal(RecordType::Data, p, &mut out_c).unwrap();
    }
    assert_eq!(out_c.len(), out_a.len());
    assert_ne!(out_c, out_a);
}

#[test]
fn equal_plaintexts_never_share_keystream() {
    let plain = [0u8; 512];
    let mut s = sealer(7);
    s.set_rekey_limit(3 * 513);
    let recs: Vec<Vec<u8>> = (0..10)
        .map(|_| seal(&mut s, RecordType::Data, &plain))
        .collect();
    // Strip a leading Rekey record where there is one; keep the Data record.
    let data: Vec<&[u8]> = recs
        .iter()
        .map(|r| &r[r.len() - (HEADER_LEN + 513 + TAG_LEN)..])
        .collect();
    assert!(
        recs.iter().any(|r| r.len() > HEADER_LEN + 513 + TAG_LEN),
        "the limit forced rekeys"
    );
    for i in 0..data.len() {
        for j in i + 1..data.len() {
            let (a, b) = (&data[i][HEADER_LEN..], &data[j][HEADER_LEN..]);
            let xor: Vec<u8> = a.iter().zip(b.iter()).map(|(x, y)| x ^ y).collect();
            let body_xor = &xor[..513];
            assert!(
                body_xor.iter().any(|&x| x != 0),
                "records {i} and {j} share keystream"
            );
            // Not just one differing byte: the keystreams are unrelated
            // (about 1/256 of the bytes collide by chance).
            let same = body_xor.iter().filter(|&&x| x == 0).count();
            assert!(
                same < 20,
                "records {i} and {j}: {same} equal ciphertext bytes"
            );
            assert_ne!(
                &xor[513..],
                &[0u8; TAG_LEN][..],
                "records {i} and {j}: equal tags"
            );
        }
    }
}

// ------------------------------------------------ hand-made records, types

/// Seal one record by hand with a suite Protection: any type byte, any payload.
fn raw_record(
    p: &mut dyn Protection,
    seq: u64,
    ty: u8,
    payload: &[u8],
) -> ([u8; HEADER_LEN], Vec<u8>) {
    let header = ((payload.len() + 1) as u32).to_be_bytes();
    let mut body = vec![ty];
    body.extend_from_slice(payload);
    let mut tag = vec![0u8; p.tag_len()];
    p.seal(seq, &header, &mut body, &mut tag);
    body.extend_from_slice(&tag);
    (header, body)
}

#[test]
fn hand_sealed_records_match_the_sealer() {
    let mut s = sealer(7);
    s.set_rekey_limit(10);
    let mut out = Vec::new();
    s.seal(RecordType::Data, b"abcdefgh", &mut out).unwrap(); // 9 bytes: fits
    s.seal(RecordType::Data, b"ij", &mut out).unwrap(); // 9 + 3 > 10: Rekey first
    s.seal(RecordType::Close, &[], &mut out).unwrap();

    let mut p = protection(&ts(7));
    let mut hand = Vec::new();
    let mut push = |(h, b): ([u8; HEADER_LEN], Vec<u8>)| {
        hand.extend_from_slice(&h);
        hand.extend_from_slice(&b);
    };
    push(raw_record(&mut *p, 0, RecordType::Data as u8, b"abcdefgh"));
    push(raw_record(&mut *p, 1, RecordType::Rekey as u8, b""));
    // The sequence number runs on across the rekey; the key does not.
    let mut p = protection(&next_traffic(&ts(7)));
    push(raw_record(&mut *p, 2, RecordType::Data as u8, b"ij"));
    push(raw_record(&mut *p, 3, RecordType::Close as u8, b""));
    assert_eq!(hand, out);
}

#[test]
fn unknown_types_and_control_records_with_payload_are_rejected() {
    let cases: &[(u8, &[u8], &str)] = &[
        (0, b"", "type 0"),
        (4, b"", "type 4"),
        (9, b"", "type 9"),
        (9, b"payload", "type 9 with payload"),
        (0x81, b"x", "type 0x81"),
        (255, b"", "type 255"),
        (RecordType::Rekey as u8, b"x", "Rekey with payload"),
        (RecordType::Close as u8, b"x", "Close with payload"),
        (RecordType::Close as u8, &[0u8; 100], "Close with 100 bytes"),
    ];
    for &(ty, payload, what) in cases {
        let (h, mut rec) = raw_record(&mut *protection(&ts(7)), 0, ty, payload);
        assert_record_error(&opener(7).open(&h, &mut rec).unwrap_err(), what);
    }
    // The same hand-made path with legal types opens fine.
    let (h, mut rec) = raw_record(&mut *protection(&ts(7)), 0, RecordType::Data as u8, b"ok");
    assert_eq!(opener(7).open(&h, &mut rec).unwrap(), Some(Opened::Data(3)));
    let (h, mut rec) = raw_record(&mut *protection(&ts(7)), 0, RecordType::Rekey as u8, b"");
    assert_eq!(opener(7).open(&h, &mut rec).unwrap(), None);
    let (h, mut rec) = raw_record(&mut *protection(&ts(7)), 0, RecordType::Close as u8, b"");
    assert_eq!(opener(7).open(&h, &mut rec).unwrap(), Some(Opened::Close));
}

/// After a Rekey record the old key no longer opens anything.
#[test]
fn records_under_the_old_key_are_rejected_after_rekey() {
    let mut p = protection(&ts(7));
    let mut o = opener(7);
    let (h, mut r) = raw_record(&mut *p, 0, RecordType::Rekey as u8, b"");
    assert_eq!(o.open(&h, &mut r).unwrap(), None);
    let (h, mut r) = raw_record(&mut *p, 1, RecordType::Data as u8, b"old key");
    assert_record_error(&o.open(&h, &mut r).unwrap_err(), "old key after rekey");
}

// ------------------------------------------ independent reimplementation

mod reference {
    //! The RSA-BLOWFISH record format written again from its description,
    //! with the RustCrypto crates and nothing from blackpony.
    use blowfish::Blowfish;
    use ctr::cipher::{InnerIvInit, KeyInit, StreamCipher};
    use hkdf::Hkdf;
    use hmac::{Hmac, Mac};
    use sha1::Sha1;

    type Ctr = ctr::Ctr64BE<Blowfish>;

    fn expand(prk: &[u8; 20], label: &[u8], out: &mut [u8]) {
        Hkdf::<Sha1>::from_prk(prk)
            .unwrap()
            .expand(label, out)
            .unwrap();
    }

    pub struct Direction {
        traffic: [u8; 20],
        ctr: Ctr,
        mac_key: [u8; 20],
        seq: u64,
        under_key: u64,
        limit: u64,
    }

    impl Direction {
        pub fn new(traffic: [u8; 20], limit: u64) -> Self {
            let (ctr, mac_key) = Self::keys(&traffic);
            Direction {
                traffic,
                ctr,
                mac_key,
                seq: 0,
                under_key: 0,
                limit,
            }
        }

        fn keys(traffic: &[u8; 20]) -> (Ctr, [u8; 20]) {
            let mut key = [0u8; 16];
            let mut iv = [0u8; 8];
            let mut mac_key = [0u8; 20];
            expand(traffic, b"blackpony blowfish key", &mut key);
            expand(traffic, b"blackpony blowfish iv", &mut iv);
            expand(traffic, b"blackpony hmac-sha1 key", &mut mac_key);
            let bf = <Blowfish>::new_from_slice(&key).unwrap();
            let core =
                ctr::CtrCore::<Blowfish, ctr::flavors::Ctr64BE>::inner_iv_init(bf, &iv.into());
            (Ctr::from_core(core), mac_key)
        }

        fn one(&mut self, ty: u8, payload: &[u8], out: &mut Vec<u8>) {
            let header = ((payload.len() + 1) as u32).to_be_bytes();
            let mut body = vec![ty];
            body.extend_from_slice(payload);
            self.ctr.apply_keystream(&mut body);
            let mut mac = <Hmac<Sha1> as hmac::KeyInit>::new_from_slice(&self.mac_key).unwrap();
            mac.update(&self.seq.to_be_bytes());
            mac.update(&header);
            mac.update(&body);
            out.extend_from_slice(&header);
            out.extend_from_slice(&body);
            out.extend_from_slice(&mac.finalize().into_bytes());
            self.seq += 1;
            self.under_key += body.len() as u64;
        }

        pub fn seal(&mut self, ty: u8, payload: &[u8], out: &mut Vec<u8>) {
            if self.under_key + payload.len() as u64 + 1 > self.limit {
                self.one(2, &[], out);
                let mut next = [0u8; 20];
                expand(&self.traffic, b"blackpony rekey", &mut next);
                self.traffic = next;
                (self.ctr, self.mac_key) = Self::keys(&next);
                self.under_key = 0;
            }
            self.one(ty, payload, out);
        }
    }
}

#[test]
fn sealer_matches_an_independent_implementation() {
    let mut rng = Rng(12);
    for (secret, limit) in [(7u8, 5000u64), (0xA5, REKEY_BYTES), (1, 1)] {
        let mut ours = sealer(secret);
        ours.set_rekey_limit(limit);
        let mut theirs = reference::Direction::new([secret; 20], limit.min(REKEY_BYTES));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..60 {
            let n = if i % 7 == 0 {
                1
            } else {
                1 + rng.below(MAX_RECORD_PAYLOAD)
            };
            let payload = rng.bytes(n);
            ours.seal(RecordType::Data, &payload, &mut a).unwrap();
            theirs.seal(1, &payload, &mut b);
        }
        ours.seal(RecordType::Close, &[], &mut a).unwrap();
        theirs.seal(3, &[], &mut b);
        assert!(
            a == b,
            "secret {secret:#x} limit {limit}: record format differs from the reference"
        );
    }
}

#[test]
fn record_error_is_invalid_data() {
    let e = record_error();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

/// Records made by hand with one protection instance, sequence numbers from 0.
fn hand_stream(b: u8, recs: &[(u8, &[u8])]) -> Vec<u8> {
    let mut p = protection(&ts(b));
    let mut out = Vec::new();
    for (i, (ty, payload)) in recs.iter().enumerate() {
        let (h, r) = raw_record(&mut *p, i as u64, *ty, payload);
        out.extend_from_slice(&h);
        out.extend_from_slice(&r);
    }
    out
}
