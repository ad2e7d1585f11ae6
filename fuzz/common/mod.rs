//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (cargo
//! fuzz, libFuzzer) and `tests/fuzz_regressions.rs` (ordinary `cargo test`,
//! which replays every saved crash and every seed through the same code).
//!
//! Only `blackpony`, `rsa` (a dependency of blackpony, so integration tests
//! may use it) and `std` are used here, so the file compiles in both crates.
//! Each function takes the raw fuzz input, never panics on its own account,
//! and asserts a property where the parser has one. A panic is a finding.
#![allow(dead_code)]

use std::io::{self, Cursor, Read, Write};
use std::sync::OnceLock;

use base64ct::{Base64, Encoding};
use blackpony::cert::{self, CertError, VerifiedCert};
use blackpony::limits::{MAX_LINE, MAX_RECORD_PAYLOAD, MAX_REPLY_LINES};
use blackpony::smtp::command::{self, Verb};
use blackpony::smtp::ehlo;
use blackpony::smtp::line::{has_bare_newline, LineReader};
use blackpony::smtp::reply::{self, Reply};
use blackpony::static_key::StaticIdentity;
use blackpony::suite::message::{self, CLIENT_KEY, SERVER_FINISHED, SERVER_HELLO};
use blackpony::suite::noise_suite::{self, ClientIk, ClientXx, ServerIk, ServerXx};
use blackpony::suite::rsa_blowfish::{self, ClientStart, ServerAwaitKey};
use blackpony::suite::{SuiteId, NOISE};
use blackpony::wire::record::{
    Opened, Opener, ProtectionFactory, RecordReader, RecordType, RecordWriter, Sealer, MAX_BODY,
};
use blackpony::wire::schedule::TrafficSecret;
use blackpony::Error;

/// A target's body: one fuzz input in, a panic for a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("smtp_line", smtp_line),
    ("smtp_reply", smtp_reply),
    ("smtp_command", smtp_command),
    ("ehlo", ehlo_keyword),
    ("handshake", handshake),
    ("noise_handshake", noise_handshake),
    ("record_open", record_open),
    ("dns", dns),
    ("known_peers", known_peers),
    ("policy", policy),
];

// ------------------------------------------------------------------ helpers

/// Structured choices taken from the front of the fuzz input; an exhausted
/// input reads as zeros, so every input is valid.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// A reader that hands out `data` in chunks of the given sizes (cycled), a
/// size of 0 meaning one `Interrupted` error, so the same bytes arrive split
/// at arbitrary points, as they do from a socket. No sizes: all at once.
pub struct Chunked<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
    interrupted: bool,
}

impl<'a> Chunked<'a> {
    pub fn new(data: &'a [u8], sizes: Vec<usize>) -> Self {
        Chunked {
            data,
            sizes,
            next: 0,
            interrupted: false,
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut limit = usize::MAX;
        if !self.sizes.is_empty() {
            limit = self.sizes[self.next % self.sizes.len()];
            self.next += 1;
            // Never two interruptions in a row: a caller that retries gets on.
            if limit == 0 && !self.interrupted && !self.data.is_empty() && !out.is_empty() {
                self.interrupted = true;
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.interrupted = false;
        }
        let n = self.data.len().min(out.len()).min(limit.max(1));
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn error_kind(e: &Error) -> String {
    // The variant name only: messages may carry data-dependent text.
    format!("{e:?}")
        .split(['(', ' '])
        .next()
        .unwrap_or("")
        .to_string()
}

fn ends_with_crlf(line: &[u8]) -> bool {
    line.ends_with(b"\r\n")
}

/// Parse `bytes` as exactly one reply, nothing left over.
fn reparse(bytes: &[u8]) -> Result<Reply, String> {
    let mut r = LineReader::new(bytes);
    let rep = reply::read_reply(&mut r, "reparse").map_err(|e| format!("{e}"))?;
    let (_, rest) = r.into_parts();
    if !rest.is_empty() {
        return Err(format!("{} bytes left over", rest.len()));
    }
    Ok(rep)
}

// ---------------------------------------------------------------- smtp_line

#[derive(Debug, PartialEq, Eq)]
enum LineOutcome {
    Line(Vec<u8>),
    Data(Vec<u8>),
    Exact(Vec<u8>),
    Err(String),
}

/// Run `ops` over a reader; stops at the first error (the callers end the
/// session there). Returns the outcomes and the reader (for `into_parts`).
fn run_line_ops<R: Read>(
    mut r: LineReader<R>,
    ops: &[(u8, u16)],
) -> (Vec<LineOutcome>, LineReader<R>) {
    let mut out = Vec::new();
    for &(op, arg) in ops {
        let res = match op % 4 {
            0 | 1 => {
                let max = arg as usize;
                r.read_line(max, "fuzz").map(|line| {
                    assert!(line.len() <= max, "line of {} > max {max}", line.len());
                    assert!(line.ends_with(b"\n"), "a line ends with LF");
                    assert_eq!(
                        line.iter().filter(|&&b| b == b'\n').count(),
                        1,
                        "exactly one LF in a line"
                    );
                    LineOutcome::Line(line)
                })
            }
            2 => {
                let forbid = arg & 1 == 1;
                let mut data = Vec::new();
                match r.copy_data(&mut data, forbid, "fuzz") {
                    Ok(n) => {
                        assert_eq!(n as usize, data.len(), "copy_data counts what it wrote");
                        check_data(&data, forbid);
                        Ok(LineOutcome::Data(data))
                    }
                    Err(e) => {
                        if forbid {
                            assert!(
                                !data_has_bare(&data),
                                "bytes written before a refusal contain no bare CR/LF"
                            );
                        }
                        Err(e)
                    }
                }
            }
            _ => {
                let n = (arg % 2048) as u64;
                let mut data = Vec::new();
                r.copy_exact(n, &mut data, "fuzz").map(|()| {
                    assert_eq!(data.len() as u64, n, "copy_exact copies exactly n");
                    LineOutcome::Exact(data)
                })
            }
        };
        match res {
            Ok(o) => out.push(o),
            Err(e) => {
                out.push(LineOutcome::Err(error_kind(&e)));
                break;
            }
        }
    }
    (out, r)
}

fn data_has_bare(d: &[u8]) -> bool {
    d.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && d.get(i + 1).is_some_and(|&n| n != b'\n'))
            || (b == b'\n' && (i == 0 || d[i - 1] != b'\r'))
    })
}

/// Message data as copy_data returns it: ends at the first CRLF.CRLF
/// (counting the CRLF before the data), unchanged.
fn check_data(data: &[u8], forbid: bool) {
    let mut s = b"\r\n".to_vec();
    s.extend_from_slice(data);
    let end = s
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .expect("data ends with CRLF.CRLF");
    assert_eq!(end + 5, s.len(), "data stops at the first CRLF.CRLF");
    if forbid {
        assert!(!data_has_bare(data), "forbid_bare let a bare CR/LF through");
    }
}

/// LineReader over arbitrary bytes split at arbitrary points: never panics,
/// lines respect the limit, the result does not depend on how the bytes
/// were split, with_prefix/into_parts lose no byte, and every byte handed
/// out is the input, unchanged and in order.
pub fn smtp_line(data: &[u8]) {
    let mut inp = Input::new(data);
    let sizes: Vec<usize> = (0..inp.u8() % 16).map(|_| inp.u8() as usize).collect();
    let ops: Vec<(u8, u16)> = (0..inp.u8() % 16 + 1)
        .map(|_| (inp.u8(), inp.u16()))
        .collect();
    let prefix_len = inp.u16() as usize;
    let stream = inp.rest();

    let (whole, r) = run_line_ops(LineReader::new(Chunked::new(stream, vec![])), &ops);
    let consumed = check_consumed(stream, &whole, r);

    let (split, r) = run_line_ops(LineReader::new(Chunked::new(stream, sizes.clone())), &ops);
    assert_eq!(
        whole, split,
        "the outcome depends on how the bytes were split"
    );
    assert_eq!(consumed, check_consumed(stream, &split, r));

    // A reader rebuilt from another's buffered bytes (the switch to encryption).
    let k = prefix_len.min(stream.len());
    let r = LineReader::with_prefix(Chunked::new(&stream[k..], sizes), &stream[..k]);
    let (prefixed, r) = run_line_ops(r, &ops);
    assert_eq!(whole, prefixed, "with_prefix changed the outcome");
    check_consumed(stream, &prefixed, r);
}

/// Outputs concatenated are a prefix of the stream, and into_parts returns
/// the rest: nothing lost, nothing invented. Returns the consumed length.
fn check_consumed<R: Read>(stream: &[u8], outcomes: &[LineOutcome], r: LineReader<R>) -> usize {
    let failed = matches!(outcomes.last(), Some(LineOutcome::Err(_)));
    let mut got = Vec::new();
    for o in outcomes {
        match o {
            LineOutcome::Line(b) | LineOutcome::Data(b) | LineOutcome::Exact(b) => {
                got.extend_from_slice(b)
            }
            LineOutcome::Err(_) => {}
        }
    }
    assert!(
        stream.starts_with(&got),
        "bytes handed out are not the input"
    );
    if !failed {
        let (mut inner, mut rest) = r.into_parts();
        inner.read_to_end(&mut rest).unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got, stream, "into_parts lost or invented bytes");
    }
    got.len()
}

// --------------------------------------------------------------- smtp_reply

/// parse_line and read_reply: codes in range, every line well framed, the
/// reply re-parses to itself, and the split of the stream does not matter.
pub fn smtp_reply(data: &[u8]) {
    let mut inp = Input::new(data);
    let sizes: Vec<usize> = (0..inp.u8() % 8).map(|_| inp.u8() as usize).collect();
    let stream = inp.rest();

    let first = stream
        .split_inclusive(|&b| b == b'\n')
        .next()
        .unwrap_or(b"");
    if let Some((code, more)) = reply::parse_line(first) {
        assert!((200..=599).contains(&code), "code {code}");
        let body = command::trim_eol(first);
        assert_eq!(more, body.get(3) == Some(&b'-'));
    }

    let read = |sizes: Vec<usize>| {
        let mut r = LineReader::new(Chunked::new(stream, sizes));
        let res = reply::read_reply(&mut r, "fuzz");
        res.map_err(|e| error_kind(&e))
    };
    let whole = read(vec![]);
    assert_eq!(
        whole,
        read(sizes),
        "the reply depends on how the bytes were split"
    );
    let Ok(rep) = whole else { return };
    let n = rep.lines.len();
    assert!((1..=MAX_REPLY_LINES).contains(&n), "{n} lines");
    for (i, line) in rep.lines.iter().enumerate() {
        assert!(line.len() <= MAX_LINE);
        assert!(line.ends_with(b"\n"));
        assert_eq!(reply::parse_line(line), Some((rep.code, i + 1 < n)));
    }
    let bytes = rep.to_bytes();
    assert!(
        stream.starts_with(&bytes),
        "a reply is the bytes it was read from"
    );
    assert_eq!(reparse(&bytes).as_ref(), Ok(&rep));
    let _ = (rep.texts().count(), rep.summary(), rep.is_positive());
}

// ------------------------------------------------------------- smtp_command

/// verb, arguments, bdat_args, trim_eol and has_bare_newline on any line.
pub fn smtp_command(line: &[u8]) {
    let v = command::verb(line);
    let args = command::arguments(line);
    let trimmed = command::trim_eol(line);
    assert!(line.starts_with(trimmed));
    if let Some((size, _last)) = command::bdat_args(line) {
        assert_eq!(args.first().and_then(|a| a.parse::<u64>().ok()), Some(size));
    }
    if v == Verb::XBlackpony {
        assert!(line.len() >= blackpony::KEYWORD.len());
    }
    let bare = has_bare_newline(line);
    let clean = line.ends_with(b"\r\n")
        && !line[..line.len() - 2]
            .iter()
            .any(|&b| b == b'\r' || b == b'\n');
    assert_eq!(bare, !clean, "has_bare_newline");
}

// --------------------------------------------------------------------- ehlo

const OFFER: &str = "NOISE-25519-CHACHAPOLY-SHA256 RSA-BLOWFISH ROT13";

fn is_keyword_line(line: &[u8]) -> bool {
    let text = command::trim_eol(line).get(4..).unwrap_or(&[]);
    let word = text.split(|&b| b == b' ').next().unwrap_or(&[]);
    word.eq_ignore_ascii_case(blackpony::KEYWORD.as_bytes())
}

/// Lines that end in a bare LF (no CR before it).
fn bare_lf_lines(r: &Reply) -> usize {
    r.lines.iter().filter(|l| !ends_with_crlf(l)).count()
}

/// offered_suites / strip_keyword / add_keyword keep the reply well formed:
/// it re-parses to itself with the same code, strip leaves no keyword line
/// after the greeting line, add leaves exactly one, and neither turns a
/// CRLF line into a bare-LF (or unterminated) one.
pub fn ehlo_keyword(data: &[u8]) {
    let mut r = LineReader::new(data);
    let Ok(original) = reply::read_reply(&mut r, "fuzz") else {
        return;
    };
    if let Some(s) = ehlo::offered_suites(&original) {
        assert_eq!(original.code, 250);
        assert_eq!(s.trim(), s);
    }

    let mut stripped = original.clone();
    ehlo::strip_keyword(&mut stripped);
    let bytes = stripped.to_bytes();
    let again = reparse(&bytes).unwrap_or_else(|e| {
        panic!(
            "strip_keyword made a reply that does not parse ({e}): {:?} -> {:?}",
            String::from_utf8_lossy(&original.to_bytes()),
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(again.code, original.code);
    assert_eq!(again, stripped, "strip_keyword: re-parse differs");
    assert!(
        !stripped.lines.iter().skip(1).any(|l| is_keyword_line(l)),
        "a keyword line survived strip_keyword"
    );
    assert_eq!(ehlo::offered_suites(&stripped), None);
    assert!(
        bare_lf_lines(&stripped) <= bare_lf_lines(&original),
        "strip_keyword broke a CRLF line ending: {:?} -> {:?}",
        String::from_utf8_lossy(&original.to_bytes()),
        String::from_utf8_lossy(&bytes)
    );

    // What inbound does: strip, then add our own keyword.
    let mut added = stripped.clone();
    ehlo::add_keyword(&mut added, OFFER);
    let bytes = added.to_bytes();
    let again = reparse(&bytes).unwrap_or_else(|e| {
        panic!(
            "add_keyword made a reply that does not parse ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(again, added, "add_keyword: re-parse differs");
    assert!(bare_lf_lines(&added) <= bare_lf_lines(&stripped));
    // A reply already at the line limit is left as it is (no room for the keyword).
    if original.code == 250 && stripped.lines.len() < blackpony::limits::MAX_REPLY_LINES {
        assert_eq!(ehlo::offered_suites(&added).as_deref(), Some(OFFER));
        assert_eq!(
            added
                .lines
                .iter()
                .skip(1)
                .filter(|l| is_keyword_line(l))
                .count(),
            1
        );
    } else {
        assert_eq!(added, stripped, "add_keyword changed a non-250 reply");
    }
}

// ---------------------------------------------------------------- handshake

/// Both keyed suites, as record_open picks them (bit 7 of its first byte).
pub const SUITES: [SuiteId; 2] = [SuiteId::RsaBlowfish, SuiteId::Noise];

/// A fixed 2048-bit RSA test key (fuzz/common/test-key.pem; it protects
/// nothing), so the targets need no key generation.
pub fn test_key() -> &'static blackpony::keys::HostKey {
    static KEY: OnceLock<blackpony::keys::HostKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::DecodePrivateKey;
        let pem = include_str!("test-key.pem");
        let private = rsa::PrivateKey::from_pkcs8_pem(pem).expect("test key parses");
        blackpony::keys::HostKey::from_private(private).expect("test key is usable")
    })
}

/// A well-formed RSA-BLOWFISH ClientHello of the test key.
pub fn test_client_hello() -> &'static [u8] {
    static HELLO: OnceLock<Vec<u8>> = OnceLock::new();
    HELLO.get_or_init(|| {
        let start = ClientStart::new(test_key(), OFFER);
        Base64::decode_vec(&start.hello_base64()).expect("our own base64")
    })
}

/// RSA-BLOWFISH's ClientHello parser; on success the canonical re-encoding.
fn reencode_client_hello(hello: &[u8]) -> Option<Vec<u8>> {
    let mut again = vec![rsa_blowfish::VERSION];
    let (nonce, spki, _) = rsa_blowfish::parse_client_hello(hello)?;
    again.extend_from_slice(&nonce);
    again.extend_from_slice(&(spki.len() as u16).to_be_bytes());
    again.extend_from_slice(spki);
    Some(again)
}

/// RSA-BLOWFISH's handshake parsers: parse_client_hello (strict: one
/// encoding per value), message::read (type and length checked before
/// allocating), and both sides' steps on arbitrary peer messages (never
/// panic, never accept a Finished they did not compute).
/// First byte mod 5: the step.
pub fn handshake(data: &[u8]) {
    let mut inp = Input::new(data);
    let which = inp.u8();
    let rest = inp.rest();
    match which % 5 {
        0 => {
            if let Some(again) = reencode_client_hello(rest) {
                assert_eq!(again, rest, "a ClientHello has exactly one encoding");
            }
        }
        1 => {
            let (kind, stream) = rest.split_first().unwrap_or((&0, &[]));
            for k in [*kind, SERVER_HELLO, CLIENT_KEY, SERVER_FINISHED] {
                if let Ok(m) = message::read(&mut Cursor::new(stream), k) {
                    assert_eq!(m[0], k);
                    let len = u16::from_be_bytes([m[1], m[2]]) as usize;
                    assert!(len <= blackpony::limits::MAX_HANDSHAKE_MESSAGE);
                    assert_eq!(m.len(), 3 + len);
                    assert_eq!(&stream[..m.len()], &m[..]);
                }
            }
        }
        2 => {
            // The client's view of an arbitrary ServerHello.
            let start = ClientStart::new(test_key(), OFFER);
            if let Ok((flight, _keys, awaiting)) = start.on_server_hello(rest) {
                let m = message::read(&mut Cursor::new(&flight), CLIENT_KEY).unwrap();
                assert_eq!(m, flight);
                // Our Finished check needs our fresh secret: no input passes it.
                let mut fin = vec![SERVER_FINISHED, 0, 20];
                fin.extend_from_slice(rest.get(..20).unwrap_or(&[0u8; 20][..]));
                assert!(awaiting.on_server_finished(&fin).is_err());
            }
        }
        3 => {
            // The server's view of an arbitrary ClientKey after a good hello.
            let (sh, state) =
                ServerAwaitKey::new(test_key(), OFFER, test_client_hello()).expect("good hello");
            assert_eq!(sh[0], SERVER_HELLO);
            assert!(
                state.on_client_key(rest).is_err(),
                "a ClientKey passed the checks without the secret"
            );
        }
        _ => {
            // The server's view of an arbitrary ClientHello.
            let ok = reencode_client_hello(rest).is_some();
            match ServerAwaitKey::new(test_key(), OFFER, rest) {
                Some((sh, _)) => {
                    assert!(ok);
                    let m = message::read(&mut Cursor::new(&sh), SERVER_HELLO).unwrap();
                    assert_eq!(m, sh);
                }
                None => assert!(!ok),
            }
        }
    }
}

// ---------------------------------------------------------- noise_handshake

/// The prologue of every noise_handshake run (both sides agree on it).
pub fn noise_prologue() -> Vec<u8> {
    noise_suite::prologue(OFFER, NOISE, b"EHLO fuzz.example\r\n")
}

/// A fixed static identity `n` (0: the "server", 1: the "client"): a fixed
/// X25519 secret and a certificate the test key signed once, valid from 0
/// through u64::MAX, so checks against the clock pass.
pub fn test_identity(n: usize) -> &'static StaticIdentity {
    static IDS: OnceLock<[StaticIdentity; 2]> = OnceLock::new();
    &IDS.get_or_init(|| {
        [0x11u8, 0x22].map(|b| {
            let secret = x25519_dalek::StaticSecret::from([b; 32]);
            let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
            let cert_bytes = cert::issue(test_key(), &public, 0, u64::MAX);
            let verified = cert::parse_signed(&cert_bytes).expect("our own certificate");
            StaticIdentity {
                secret,
                public,
                cert_bytes,
                verified,
                continuity: None,
            }
        })
    })[n]
}

/// Handshake v2's parsers on arbitrary peer bytes: ServerXx::start and
/// ServerIk::start (msg1), ClientXx::on_msg2 and ClientIk::on_msg2 (msg2),
/// ServerXx::on_msg3 (msg3), and cert::parse_signed (the certificates they
/// carry). Never a panic; no msg2 or msg3 is accepted that was not made with
/// the receiver's fresh ephemeral key (the fuzzer cannot know it); a
/// certificate that parses re-parses the same way under every check.
/// First byte mod 6: the step.
pub fn noise_handshake(data: &[u8]) {
    let mut inp = Input::new(data);
    let which = inp.u8();
    let rest = inp.rest();
    let (server, client) = (test_identity(0), test_identity(1));
    let prologue = noise_prologue();
    match which % 6 {
        0 => {
            // XX msg1 is the client's ephemeral key and a cleartext payload.
            let got = ServerXx::start(server, &prologue, rest);
            if rest.len() < 32 {
                assert!(got.is_none(), "an XX msg1 shorter than a key was taken");
            }
            if let Some((state, msg2)) = got {
                assert!(
                    msg2.len() > server.cert_bytes.len(),
                    "msg2 carries our certificate"
                );
                assert!(state.on_msg3(rest).is_err(), "msg1 taken as msg3");
            }
        }
        1 => {
            // IK msg1: anyone who knows our static key can make a valid one,
            // so the property is only that whatever decrypts is answered
            // and the client's certificate is checked against its key.
            if let Some((state, ehlo)) = ServerIk::start(server, &prologue, rest) {
                assert!(ehlo.len() + 96 <= rest.len(), "IK payload longer than msg1");
                let (msg2, await_id) = state.answer(b"250 fuzz.example\r\n").unwrap();
                assert!(msg2.len() >= 32 + 16);
                let (_keys, client_static) = await_id.keys().unwrap();
                // A certificate counts only for the key msg1 authenticated.
                let ours = noise_suite::check_identity(&client_static, &client.cert_bytes);
                assert_eq!(ours.is_ok(), client_static == client.public);
            }
        }
        2 => {
            let (state, _msg1) = ClientXx::start(client, &prologue).unwrap();
            assert!(
                state.on_msg2(rest).is_err(),
                "an XX msg2 passed without our ephemeral key"
            );
        }
        3 => {
            let (_c, msg1) = ClientXx::start(client, &prologue).unwrap();
            let (state, _msg2) = ServerXx::start(server, &prologue, &msg1).expect("our msg1");
            assert!(
                state.on_msg3(rest).is_err(),
                "an XX msg3 passed without our ephemeral key"
            );
        }
        4 => {
            if let Ok(c) = cert::parse_signed(rest) {
                assert!(rest.len() <= blackpony::limits::MAX_STATIC_CERT);
                assert_eq!(cert::parse_own(rest).as_ref(), Ok(&c));
                assert_eq!(
                    cert::verify_for(rest, c.not_before, &c.static_public).as_ref(),
                    Ok(&c)
                );
                let other = [c.static_public[0] ^ 1; 32];
                assert!(cert::verify_for(rest, c.not_before, &other).is_err());
                if let Some(before) = c.not_before.checked_sub(1) {
                    assert_eq!(
                        cert::parse_and_verify(rest, before),
                        Err(CertError::NotYetValid)
                    );
                }
                if let Some(after) = c.not_after.checked_add(1) {
                    assert_eq!(cert::parse_and_verify(rest, after), Err(CertError::Expired));
                }
            } else {
                // Layout-only parsing may accept it; the signature never.
                let _ = cert::parse_own(rest);
            }
        }
        _ => {
            let server_cert: &VerifiedCert = &server.verified;
            let (state, _msg1) =
                ClientIk::start(client, &prologue, server_cert, b"EHLO fuzz.example\r\n").unwrap();
            assert!(
                state.on_msg2(rest).is_err(),
                "an IK msg2 passed without our ephemeral key"
            );
        }
    }
}

// -------------------------------------------------------------- record_open

/// Rekey often, so short inputs cross key epochs.
const TEST_REKEY: u64 = 1024;

pub fn test_traffic() -> TrafficSecret {
    TrafficSecret::from_bytes([0x5a; 20])
}

/// The record protection of each keyed suite.
pub fn protection_of(suite: SuiteId) -> ProtectionFactory {
    match suite {
        SuiteId::Noise => blackpony::wire::aead::protection,
        _ => rsa_blowfish::protection,
    }
}

pub fn test_sealer(suite: SuiteId) -> Sealer {
    let mut s = Sealer::new(protection_of(suite), test_traffic());
    s.set_rekey_limit(TEST_REKEY);
    s
}

pub fn test_opener(suite: SuiteId) -> Opener {
    let mut o = Opener::new(protection_of(suite), test_traffic());
    o.set_rekey_limit(TEST_REKEY);
    o
}

/// A record stream the test sealer makes from `payloads`, then Close.
pub fn sealed_stream(suite: SuiteId, payloads: &[&[u8]]) -> Vec<u8> {
    let mut s = test_sealer(suite);
    let mut out = Vec::new();
    for p in payloads {
        s.seal(RecordType::Data, p, &mut out).unwrap();
    }
    s.seal(RecordType::Close, &[], &mut out).unwrap();
    out
}

/// An Opener with a fixed traffic secret fed an arbitrary record stream:
/// never panics, and every record it accepts is byte for byte what the
/// matching Sealer makes at that point (so it returns no data the Sealer did
/// not seal). Then the fuzz input as payload: seal → open is the identity,
/// and any single bit flip in the sealed stream ends it with an error and
/// only a prefix of the data. Both keyed suites' protections (ChaCha20-Poly1305
/// for handshake v2, Blowfish-CTR + HMAC-SHA1 for RSA-BLOWFISH).
pub fn record_open(data: &[u8]) {
    for suite in SUITES {
        open_arbitrary(suite, data);
    }
    let mut inp = Input::new(data);
    let first = inp.u8();
    let suite = SUITES[(first >> 7) as usize];
    let chunk = 1 + (first & 0x7f) as usize * 3;
    let flip = inp.u16() as usize;
    round_trip(suite, inp.rest(), chunk, flip);
}

fn open_arbitrary(suite: SuiteId, data: &[u8]) {
    let mut opener = test_opener(suite);
    let mut mirror = test_sealer(suite);
    let mut cur = Cursor::new(data);
    let mut buf = Vec::new();
    loop {
        let before = cur.position() as usize;
        let res = opener.read(&mut cur, &mut buf);
        let after = cur.position() as usize;
        let mut expect = Vec::new();
        match res {
            Ok(Opened::Data(n)) => {
                assert!((2..=MAX_BODY).contains(&n), "Data({n})");
                mirror
                    .seal(RecordType::Data, &buf[1..n], &mut expect)
                    .unwrap();
                assert_eq!(
                    &data[before..after],
                    &expect[..],
                    "accepted a forged record"
                );
            }
            Ok(Opened::Close) => {
                mirror.seal(RecordType::Close, &[], &mut expect).unwrap();
                assert_eq!(&data[before..after], &expect[..], "accepted a forged close");
                break;
            }
            Err(_) => break,
        }
    }
}

fn round_trip(suite: SuiteId, payload: &[u8], chunk: usize, flip: usize) {
    let mut buf = Vec::new();
    let pieces: Vec<&[u8]> = payload.chunks(chunk.min(MAX_RECORD_PAYLOAD)).collect();
    let stream = sealed_stream(suite, &pieces);
    let mut o = test_opener(suite);
    let mut cur = Cursor::new(&stream[..]);
    for p in &pieces {
        match o.read(&mut cur, &mut buf).unwrap() {
            Opened::Data(n) => assert_eq!(&buf[1..n], *p),
            Opened::Close => panic!("close before the data"),
        }
    }
    assert_eq!(o.read(&mut cur, &mut buf).unwrap(), Opened::Close);
    assert_eq!(cur.position() as usize, stream.len());

    let mut w = RecordWriter::new(Vec::new(), test_sealer(suite));
    for p in &pieces {
        w.write_all(p).unwrap();
        if p.len() % 3 == 0 {
            w.flush().unwrap();
        }
    }
    w.close().unwrap();
    let wire = std::mem::take(w.get_mut());
    let mut back = Vec::new();
    RecordReader::new(Cursor::new(&wire), test_opener(suite))
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, payload);

    // One flipped bit anywhere: an error, never the clean end.
    let mut bad = stream.clone();
    let bit = flip % (bad.len() * 8);
    bad[bit / 8] ^= 1 << (bit % 8);
    let mut got = Vec::new();
    let res = RecordReader::new(Cursor::new(&bad), test_opener(suite)).read_to_end(&mut got);
    assert!(res.is_err(), "a flipped bit at {bit} went unnoticed");
    assert!(payload.starts_with(&got), "tampering produced data");
}

// ------------------------------------------------------- file and DNS parsers

/// The whole DNS reply parser (`dns::parse_response`, then the MX and
/// address readers) on any bytes. The packet's own id and question are
/// taken as the query's, so the parse gets past the reply checks.
pub fn dns(data: &[u8]) {
    use blackpony::dns::{addresses, mx_answer, parse_response, read_name, TYPE_MX};
    let Some(&[hi, lo]) = data.get(..2) else {
        return;
    };
    let (qname, qtype) = match read_name(data, 12) {
        Ok((name, pos)) => match data.get(pos..pos + 2) {
            Some(&[a, b]) => (name, u16::from_be_bytes([a, b])),
            _ => (name, TYPE_MX),
        },
        Err(_) => ("example.com".to_string(), TYPE_MX),
    };
    if let Ok(msg) = parse_response(data, u16::from_be_bytes([hi, lo]), &qname, qtype) {
        let _ = msg.check_rcode();
        let _ = mx_answer(&msg);
        let _ = addresses(&msg, qtype);
    }
}

/// `peers::parse` on any bytes; whatever parses must survive
/// `peers::serialize` and a second parse with the same pins (comment lines
/// stay comments, though they may lose a trailing CR).
pub fn known_peers(data: &[u8]) {
    use blackpony::peers::{parse, serialize, Line};
    let path = std::path::Path::new("<fuzz>");
    let Ok(lines) = parse(data, path) else {
        return;
    };
    let again = parse(&serialize(&lines), path).expect("serialized file must parse");
    assert_eq!(lines.len(), again.len());
    for (a, b) in lines.iter().zip(&again) {
        match (a, b) {
            (Line::Peer(a), Line::Peer(b)) => assert_eq!(a, b),
            (Line::Other(_), Line::Other(_)) => {}
            _ => panic!("line kind changed on round trip"),
        }
    }
}

/// `PolicyMap::parse` on any text: every entry of a map that parses finds
/// itself (an exact match beats everything), and lookups never panic.
pub fn policy(data: &[u8]) {
    use blackpony::policy::{Policy, PolicyMap};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(map) = PolicyMap::parse(text) else {
        return;
    };
    for (key, policy) in map.entries() {
        assert_eq!(map.lookup(key, Policy::May), *policy);
    }
    for word in text.split_ascii_whitespace().take(64) {
        map.lookup(word, Policy::Tofu);
    }
}
