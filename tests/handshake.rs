//! The RSA-BLOWFISH handshake between its two roles: a full run over a real
//! TCP connection on 127.0.0.1 with data both ways and an orderly close, then
//! the ways it must fail: transcript (offered list) mismatch, bit flips in
//! every message, a man in the middle, malformed ClientHellos and handshake
//! frames, and freshness of session keys.
//!
//! RSA key generation is slow, so the client's and the server's 2048-bit
//! keys are made once per test binary (in parallel), and the MITM's third
//! key once on first use.

use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use base64ct::{Base64, Encoding};
use blackpony::keys::{fingerprint, HostKey};
use blackpony::limits::{MAX_HANDSHAKE_MESSAGE, MAX_LINE};
use blackpony::suite::message::{self, CLIENT_KEY, SERVER_FINISHED, SERVER_HELLO};
use blackpony::suite::rsa_blowfish::{
    parse_client_hello, ClientStart, Keys, ServerAwaitKey, NONCE_LEN, VERSION,
};
use blackpony::wire::record::{Opened, RecordReader, RecordType, RecordWriter, HEADER_LEN};
use blackpony::Error;
use rsa::pkcs8::EncodePublicKey;
use rsa::{BoxedUint, PrivateKey, PublicKey};

const OFFER: &str = "RSA-BLOWFISH ROT13";
/// Type, 16-bit length.
const FRAME_HEADER: usize = 3;

// ------------------------------------------------------------------ keys

struct TestKeys {
    client: HostKey,
    server: HostKey,
}

fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let c = thread::spawn(|| HostKey::generate(2048).expect("client key"));
        let server = HostKey::generate(2048).expect("server key");
        TestKeys {
            client: c.join().unwrap(),
            server,
        }
    })
}

fn mitm_key() -> &'static HostKey {
    static KEY: OnceLock<HostKey> = OnceLock::new();
    KEY.get_or_init(|| HostKey::generate(2048).expect("mitm key"))
}

/// SplitMix64, for reproducible "random" choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// The ClientHello bytes as the server gets them: base64-decoded from the
/// command argument.
fn hello_bytes(start: &ClientStart) -> Vec<u8> {
    Base64::decode_vec(&start.hello_base64()).expect("canonical base64")
}

fn flip(buf: &mut [u8], bit: usize) {
    buf[bit / 8] ^= 1 << (bit % 8);
}

// -------------------------------------------------- in-memory handshake driver

/// Where a handshake stopped.
#[derive(Debug)]
enum Failed {
    ServerRejectedHello,
    ClientRejectedServerHello(Error),
    ServerRejectedClientKey(Error),
    ClientRejectedFinished(Error),
}

struct Session {
    client: Keys,
    server: Keys,
}

/// Edits one message on its way to the peer.
type Hook<'a> = Option<&'a dyn Fn(&mut Vec<u8>)>;

/// Tampering hooks, one per message on the wire.
#[derive(Default)]
struct Tamper<'a> {
    client_hello: Hook<'a>,
    server_hello: Hook<'a>,
    client_key: Hook<'a>,
    server_finished: Hook<'a>,
}

fn apply(hook: Hook, msg: &mut Vec<u8>) {
    if let Some(f) = hook {
        f(msg)
    }
}

/// Run the step functions end to end, with the messages passing through
/// `message::read` as they do on a socket, and the tamper hooks in between.
fn handshake(
    client_key: &HostKey,
    client_offer: &str,
    server_key: &HostKey,
    server_offer: &str,
    t: &Tamper,
) -> Result<Session, Failed> {
    let start = ClientStart::new(client_key, client_offer);
    let mut hello = hello_bytes(&start);
    apply(t.client_hello, &mut hello);
    let (mut sh, server) =
        ServerAwaitKey::new(server_key, server_offer, &hello).ok_or(Failed::ServerRejectedHello)?;
    apply(t.server_hello, &mut sh);
    let sh = wire(&sh, SERVER_HELLO).map_err(Failed::ClientRejectedServerHello)?;
    let (mut ck, client, awaiting) = start
        .on_server_hello(&sh)
        .map_err(Failed::ClientRejectedServerHello)?;
    apply(t.client_key, &mut ck);
    let ck = wire(&ck, CLIENT_KEY).map_err(Failed::ServerRejectedClientKey)?;
    let (mut sf, server) = server
        .on_client_key(&ck)
        .map_err(Failed::ServerRejectedClientKey)?;
    apply(t.server_finished, &mut sf);
    let sf = wire(&sf, SERVER_FINISHED).map_err(Failed::ClientRejectedFinished)?;
    awaiting
        .on_server_finished(&sf)
        .map_err(Failed::ClientRejectedFinished)?;
    Ok(Session { client, server })
}

/// What the receiving end gets through `message::read`, mapped like the
/// sessions map it (any framing failure is Error::Crypto).
fn wire(msg: &[u8], kind: u8) -> Result<Vec<u8>, Error> {
    message::read(&mut Cursor::new(msg), kind).map_err(|_| Error::Crypto)
}

fn plain(t: &Tamper) -> Result<Session, Failed> {
    let k = keys();
    handshake(&k.client, OFFER, &k.server, OFFER, t)
}

fn seal_one(keys: &mut Keys, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    keys.sealer
        .seal(RecordType::Data, payload, &mut out)
        .unwrap();
    out
}

fn open_one(keys: &mut Keys, record: &[u8]) -> std::io::Result<Vec<u8>> {
    let header: [u8; HEADER_LEN] = record[..HEADER_LEN].try_into().unwrap();
    let mut rest = record[HEADER_LEN..].to_vec();
    match keys.opener.open(&header, &mut rest)? {
        Some(Opened::Data(n)) => Ok(rest[1..n].to_vec()),
        other => panic!("unexpected {other:?}"),
    }
}

/// Both directions work: each side opens what the other sealed.
fn assert_talks(s: &mut Session) {
    let r = seal_one(&mut s.client, b"EHLO client.example\r\n");
    assert_eq!(
        open_one(&mut s.server, &r).unwrap(),
        b"EHLO client.example\r\n"
    );
    let r = seal_one(&mut s.server, b"250 server.example\r\n");
    assert_eq!(
        open_one(&mut s.client, &r).unwrap(),
        b"250 server.example\r\n"
    );
}

// ------------------------------------------------------------- TCP, end to end

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// One side's data phase: send `data` then Close from a second thread while
/// reading the peer's stream to its Close on this one.
fn exchange<R: Read + Send, W: Write + Send>(
    reader: RecordReader<R>,
    mut writer: RecordWriter<W>,
    data: Vec<u8>,
) -> Result<Vec<u8>, String> {
    thread::scope(|scope| {
        let sender = scope.spawn(move || -> Result<(), String> {
            for chunk in data.chunks(7_001) {
                writer.write_all(chunk).map_err(io_err("write"))?;
            }
            writer.close().map_err(io_err("close"))
        });
        let mut reader = reader;
        let mut got = Vec::new();
        reader.read_to_end(&mut got).map_err(io_err("read"))?;
        let mut after = [0u8; 8];
        assert_eq!(reader.read(&mut after).map_err(io_err("after close"))?, 0);
        sender.join().unwrap()?;
        Ok(got)
    })
}

#[test]
fn full_handshake_and_data_over_tcp() {
    let k = keys();
    let mut rng = Rng(1);
    let c2s = rng.bytes(300_000);
    let s2c = rng.bytes(200_000);
    let inner_ehlo = b"EHLO client.example\r\n";

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let s2c_server = s2c.clone();
    let server = thread::spawn(move || -> Result<(Vec<u8>, String), String> {
        let (sock, _) = listener.accept().map_err(io_err("accept"))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut rd = BufReader::new(sock.try_clone().unwrap());
        let mut wr = sock;
        let mut line = String::new();
        rd.read_line(&mut line).map_err(io_err("command"))?;
        let arg = line
            .strip_prefix("XBLACKPONY RSA-BLOWFISH ")
            .and_then(|l| l.strip_suffix("\r\n"))
            .ok_or("bad command line")?;
        let hello = Base64::decode_vec(arg).map_err(|_| "bad base64")?;
        let (sh, state) =
            ServerAwaitKey::new(&keys().server, OFFER, &hello).ok_or("malformed ClientHello")?;
        let mut flight = b"220 2.0.0 Go ahead with RSA-BLOWFISH\r\n".to_vec();
        flight.extend_from_slice(&sh);
        wr.write_all(&flight).map_err(io_err("server hello"))?;
        let ck = message::read(&mut rd, CLIENT_KEY).map_err(io_err("client key"))?;
        let (fin, keys) = state
            .on_client_key(&ck)
            .map_err(|e| format!("on_client_key: {e}"))?;
        wr.write_all(&fin).map_err(io_err("finished"))?;
        let reader = RecordReader::new(rd, keys.opener);
        let writer = RecordWriter::new(wr, keys.sealer);
        Ok((exchange(reader, writer, s2c_server)?, keys.peer_fingerprint))
    });

    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rd = BufReader::new(sock.try_clone().unwrap());
    let mut wr = sock.try_clone().unwrap();
    let start = ClientStart::new(&k.client, OFFER);
    wr.write_all(format!("XBLACKPONY RSA-BLOWFISH {}\r\n", start.hello_base64()).as_bytes())
        .unwrap();
    let mut line = String::new();
    rd.read_line(&mut line).unwrap();
    assert_eq!(line, "220 2.0.0 Go ahead with RSA-BLOWFISH\r\n");
    let sh = message::read(&mut rd, SERVER_HELLO).unwrap();
    let (flight, keys, awaiting) = start.on_server_hello(&sh).unwrap();
    let mut writer = RecordWriter::new(wr, keys.sealer);
    // Like the mailer: ClientKey, Finished and the inner EHLO in one write.
    writer.send_with_prefix(&flight, inner_ehlo).unwrap();
    let fin = message::read(&mut rd, SERVER_FINISHED).unwrap();
    awaiting.on_server_finished(&fin).unwrap();
    assert_eq!(
        keys.peer_fingerprint,
        k.server.fingerprint(),
        "the client sees the server's key"
    );

    let got_s2c = exchange(RecordReader::new(rd, keys.opener), writer, c2s.clone()).unwrap();
    let (got_c2s, client_fp) = server.join().unwrap().unwrap();
    assert_eq!(
        client_fp,
        k.client.fingerprint(),
        "the server sees the client's key"
    );
    assert!(got_s2c == s2c, "server-to-client data differs");
    assert_eq!(&got_c2s[..inner_ehlo.len()], inner_ehlo);
    assert!(
        got_c2s[inner_ehlo.len()..] == c2s[..],
        "client-to-server data differs"
    );
    drop(sock);
}

#[test]
fn in_memory_handshake_agrees_on_keys_and_fingerprints() {
    let k = keys();
    let mut s = plain(&Tamper::default()).unwrap();
    assert_talks(&mut s);
    assert_eq!(s.client.peer_fingerprint, k.server.fingerprint());
    assert_eq!(s.server.peer_fingerprint, k.client.fingerprint());
    assert_ne!(k.client.fingerprint(), k.server.fingerprint());
    for fp in [&s.client.peer_fingerprint, &s.server.peer_fingerprint] {
        let b64 = fp.strip_prefix("SHA256:").expect("SHA256: prefix");
        assert_eq!(b64.len(), 43, "unpadded base64 of 32 bytes");
        assert!(b64
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
    }
    assert_eq!(fingerprint(k.server.public_der()), k.server.fingerprint());
}

// ------------------------------------------------------------ transcript

/// The offered list is in the transcript: a client that saw a different list
/// than the server sent (a downgrade by editing the EHLO reply) fails the
/// Finished check at the server.
#[test]
fn offered_list_mismatch_is_detected() {
    let k = keys();
    for (client_saw, server_sent) in [
        ("RSA-BLOWFISH", "RSA-BLOWFISH ROT13"),
        ("ROT13 RSA-BLOWFISH", "RSA-BLOWFISH ROT13"),
        ("RSA-BLOWFISH ROT13", "RSA-BLOWFISH ROT13 "),
        ("rsa-blowfish ROT13", "RSA-BLOWFISH ROT13"),
        ("RSA-BLOWFISH ROT13", ""),
    ] {
        match handshake(
            &k.client,
            client_saw,
            &k.server,
            server_sent,
            &Tamper::default(),
        ) {
            Err(Failed::ServerRejectedClientKey(Error::Crypto)) => {}
            other => panic!(
                "{client_saw:?} vs {server_sent:?}: {:?}",
                other.map(|_| "completed")
            ),
        }
    }
}

// ------------------------------------------------------------- bit flips

/// ServerHello = header(3) || nonce_s(32) || vec16(spki) || vec16(ciphertext).
fn server_hello_layout() -> (usize, usize) {
    let spki_len = keys().server.public_der().len();
    let ct_at = FRAME_HEADER + NONCE_LEN + 2 + spki_len + 2;
    (spki_len, ct_at)
}

#[test]
fn server_hello_oaep_bit_flip_fails_at_the_server() {
    let (_, ct_at) = server_hello_layout();
    let mut rng = Rng(2);
    let mut bits: Vec<usize> = vec![0, 7, 8, 2047, 2040, 1024];
    bits.extend((0..18).map(|_| rng.below(2048)));
    for bit in bits {
        let hook = |m: &mut Vec<u8>| {
            assert_eq!(m.len(), ct_at + 256);
            flip(&mut m[ct_at..], bit)
        };
        match plain(&Tamper {
            server_hello: Some(&hook),
            ..Tamper::default()
        }) {
            // OAEP failures are silent at the client: the Finished fails instead.
            Err(Failed::ServerRejectedClientKey(Error::Crypto)) => {}
            other => panic!("ciphertext bit {bit}: {:?}", other.map(|_| "completed")),
        }
    }
}

#[test]
fn server_hello_any_bit_flip_fails_the_handshake() {
    let (spki_len, ct_at) = server_hello_layout();
    let mut bits: Vec<usize> = (0..(FRAME_HEADER + NONCE_LEN + 2) * 8).step_by(3).collect();
    bits.extend(((FRAME_HEADER + NONCE_LEN + 2) * 8..(ct_at - 2) * 8).step_by(61)); // SPKI
    bits.extend((ct_at - 2) * 8..ct_at * 8); // ciphertext length
    assert!(spki_len > 200);
    for bit in bits {
        let hook = |m: &mut Vec<u8>| flip(m, bit);
        match plain(&Tamper {
            server_hello: Some(&hook),
            ..Tamper::default()
        }) {
            Err(Failed::ClientRejectedServerHello(Error::Crypto))
            | Err(Failed::ServerRejectedClientKey(Error::Crypto)) => {}
            other => panic!("bit {bit}: {:?}", other.map(|_| "completed")),
        }
    }
}

/// ClientKey = header(3) || vec16(ciphertext) || finished_c(20).
#[test]
fn client_key_ciphertext_or_finished_bit_flip_is_rejected_by_the_server() {
    let ct_at = FRAME_HEADER + 2;
    let fin_at = ct_at + 256;
    let mut rng = Rng(3);
    let mut bits: Vec<usize> = (FRAME_HEADER * 8..ct_at * 8).collect(); // ciphertext length
    bits.extend([ct_at * 8, ct_at * 8 + 7, fin_at * 8 - 1]);
    bits.extend((0..16).map(|_| ct_at * 8 + rng.below(256 * 8)));
    bits.extend((fin_at * 8..(fin_at + 20) * 8).step_by(5)); // finished
    bits.push((fin_at + 20) * 8 - 1);
    for bit in bits {
        let hook = |m: &mut Vec<u8>| {
            assert_eq!(m.len(), fin_at + 20);
            flip(m, bit)
        };
        match plain(&Tamper {
            client_key: Some(&hook),
            ..Tamper::default()
        }) {
            Err(Failed::ServerRejectedClientKey(Error::Crypto)) => {}
            other => panic!("bit {bit}: {:?}", other.map(|_| "completed")),
        }
    }
}

/// Bits of the ClientKey frame header: through `message::read` (as on the
/// socket) a wrong type or length never gets a session.
#[test]
fn client_key_frame_header_flip_fails_through_message_read() {
    for bit in 0..FRAME_HEADER * 8 {
        let hook = |m: &mut Vec<u8>| flip(m, bit);
        match plain(&Tamper {
            client_key: Some(&hook),
            ..Tamper::default()
        }) {
            Err(Failed::ServerRejectedClientKey(Error::Crypto)) => {}
            other => panic!("bit {bit}: {:?}", other.map(|_| "completed")),
        }
    }
}

/// `on_client_key` is handed "the framed ClientKey", but it skips the frame
/// header without looking: a message of the wrong type, or whose length field
/// lies, is accepted when given to it directly. On a socket `message::read`
/// stands in front of it (see the test above), and the ServerHello header is
/// covered by the transcript, but the ClientKey header is not.
#[test]
fn on_client_key_checks_its_frame_header() {
    let k = keys();
    for (i, edit) in [(0usize, SERVER_FINISHED), (0, 0xFF), (1, 0xFF), (2, 0)]
        .into_iter()
        .enumerate()
    {
        let start = ClientStart::new(&k.client, OFFER);
        let (sh, server) = ServerAwaitKey::new(&k.server, OFFER, &hello_bytes(&start)).unwrap();
        let (mut ck, _, _) = start.on_server_hello(&sh).unwrap();
        ck[edit.0] = edit.1;
        assert!(
            matches!(server.on_client_key(&ck), Err(Error::Crypto)),
            "edit {i}: {edit:?}"
        );
    }
}

#[test]
fn server_finished_bit_flip_is_rejected_by_the_client() {
    let mut bits: Vec<usize> = (0..FRAME_HEADER * 8).step_by(2).collect();
    bits.extend((FRAME_HEADER * 8..(FRAME_HEADER + 20) * 8).step_by(7));
    bits.push((FRAME_HEADER + 20) * 8 - 1);
    for bit in bits {
        let hook = |m: &mut Vec<u8>| {
            assert_eq!(m.len(), FRAME_HEADER + 20);
            flip(m, bit)
        };
        match plain(&Tamper {
            server_finished: Some(&hook),
            ..Tamper::default()
        }) {
            Err(Failed::ClientRejectedFinished(Error::Crypto)) => {}
            other => panic!("bit {bit}: {:?}", other.map(|_| "completed")),
        }
    }
}

/// The step functions refuse (with Error::Crypto, never a panic) every
/// truncation of their message, and a trailing byte.
#[test]
fn truncated_or_extended_messages_are_rejected() {
    let k = keys();
    // ServerHello: every prefix (parsing fails before any RSA operation).
    let start = ClientStart::new(&k.client, OFFER);
    let (sh, _) = ServerAwaitKey::new(&k.server, OFFER, &hello_bytes(&start)).unwrap();
    for cut in 0..sh.len() {
        let start = ClientStart::new(&k.client, OFFER);
        assert!(
            matches!(start.on_server_hello(&sh[..cut]), Err(Error::Crypto)),
            "ServerHello cut at {cut}"
        );
    }
    let mut long = sh.clone();
    long.push(0);
    assert!(matches!(
        ClientStart::new(&k.client, OFFER).on_server_hello(&long),
        Err(Error::Crypto)
    ));

    // ClientKey: every prefix and a trailing byte.
    let start = ClientStart::new(&k.client, OFFER);
    let hello = hello_bytes(&start);
    let (sh, _) = ServerAwaitKey::new(&k.server, OFFER, &hello).unwrap();
    let (ck, _, _) = start.on_server_hello(&sh).unwrap();
    let mut cases: Vec<Vec<u8>> = (0..ck.len()).map(|cut| ck[..cut].to_vec()).collect();
    cases.push([&ck[..], &[0]].concat());
    for (i, bad) in cases.iter().enumerate() {
        let (_, server) = ServerAwaitKey::new(&k.server, OFFER, &hello).unwrap();
        assert!(
            matches!(server.on_client_key(bad), Err(Error::Crypto)),
            "ClientKey case {i}"
        );
    }

    // ServerFinished: a trailing byte given to the step function directly
    // (message::read would leave it on the stream for the record layer) ...
    let start = ClientStart::new(&k.client, OFFER);
    let (sh, server) = ServerAwaitKey::new(&k.server, OFFER, &hello_bytes(&start)).unwrap();
    let (ck, _, awaiting) = start.on_server_hello(&sh).unwrap();
    let (sf, _) = server.on_client_key(&ck).unwrap();
    assert!(matches!(
        awaiting.on_server_finished(&[&sf[..], &[0]].concat()),
        Err(Error::Crypto)
    ));
    // ... and truncations, through message::read as on the socket.
    for edit in [0usize, 1, 3, 4, 22] {
        let hook = |m: &mut Vec<u8>| m.resize(edit, 0);
        match plain(&Tamper {
            server_finished: Some(&hook),
            ..Tamper::default()
        }) {
            Err(Failed::ClientRejectedFinished(Error::Crypto)) => {}
            other => panic!(
                "ServerFinished of {edit} bytes: {:?}",
                other.map(|_| "completed")
            ),
        }
    }
}

// ----------------------------------------------------------------- MITM

/// A man in the middle with his own key plays server to the client and
/// client to the server. Both handshakes complete, and he reads everything;
/// what gives him away is the fingerprints each end sees (the TOFU premise).
#[test]
fn mitm_with_own_key_completes_but_fingerprints_differ() {
    let k = keys();
    let m = mitm_key();
    let mut to_client = handshake(&k.client, OFFER, m, OFFER, &Tamper::default()).unwrap();
    let mut to_server = handshake(m, OFFER, &k.server, OFFER, &Tamper::default()).unwrap();
    assert_talks(&mut to_client);
    assert_talks(&mut to_server);

    assert_eq!(to_client.client.peer_fingerprint, m.fingerprint());
    assert_ne!(
        to_client.client.peer_fingerprint,
        k.server.fingerprint(),
        "the client can tell"
    );
    assert_eq!(to_server.server.peer_fingerprint, m.fingerprint());
    assert_ne!(
        to_server.server.peer_fingerprint,
        k.client.fingerprint(),
        "the server can tell"
    );

    // The MITM reads the client's data and re-seals it for the server.
    let r = seal_one(&mut to_client.client, b"MAIL FROM:<secret@example.org>\r\n");
    let plain_text = open_one(&mut to_client.server, &r).unwrap();
    let r2 = seal_one(&mut to_server.client, &plain_text);
    assert_eq!(
        open_one(&mut to_server.server, &r2).unwrap(),
        b"MAIL FROM:<secret@example.org>\r\n"
    );
}

/// Substituting only the key in the real server's ServerHello gets the MITM
/// the client's secret but not the server's (wrapped to the client's key):
/// the real server rejects the client's Finished.
#[test]
fn mitm_swapping_the_key_in_a_real_server_hello_fails() {
    let k = keys();
    let m = mitm_key();
    let spki_at = FRAME_HEADER + NONCE_LEN + 2;
    assert_eq!(m.public_der().len(), k.server.public_der().len());
    let hook = |msg: &mut Vec<u8>| {
        let spki = &mut msg[spki_at..spki_at + m.public_der().len()];
        assert_eq!(spki, k.server.public_der());
        spki.copy_from_slice(m.public_der());
    };
    match plain(&Tamper {
        server_hello: Some(&hook),
        ..Tamper::default()
    }) {
        Err(Failed::ServerRejectedClientKey(Error::Crypto)) => {}
        other => panic!("{:?}", other.map(|_| "completed")),
    }
}

/// Swapping the client's key in its ClientHello: the server's secret goes to
/// the MITM's key, which the real client cannot unwrap.
#[test]
fn mitm_swapping_the_key_in_a_client_hello_fails() {
    let k = keys();
    let m = mitm_key();
    let spki_at = 1 + NONCE_LEN + 2;
    let hook = |hello: &mut Vec<u8>| {
        assert_eq!(&hello[spki_at..], k.client.public_der());
        hello.truncate(spki_at);
        hello.extend_from_slice(m.public_der());
    };
    match plain(&Tamper {
        client_hello: Some(&hook),
        ..Tamper::default()
    }) {
        Err(Failed::ServerRejectedClientKey(Error::Crypto)) => {}
        other => panic!("{:?}", other.map(|_| "completed")),
    }
}

// ---------------------------------------------------------- ClientHello

/// An RSA public key of exactly `bits` bits (top bit set, odd), no primes
/// needed: enough to test the size checks of parsing.
fn fake_public_key_der(bits: usize) -> Vec<u8> {
    let mut n = Rng(bits as u64).bytes(bits.div_ceil(8));
    let top = (bits - 1) % 8;
    n[0] &= (1u16 << (top + 1)).wrapping_sub(1) as u8;
    n[0] |= 1 << top;
    *n.last_mut().unwrap() |= 1;
    let n = BoxedUint::from_be_slice(&n, bits as u32).unwrap();
    let key = PublicKey::new(n, BoxedUint::from(65537u64)).expect("rsa accepts the modulus");
    key.to_public_key_der().unwrap().into_vec()
}

fn hello_with(version: u8, spki: &[u8]) -> Vec<u8> {
    let mut h = vec![version];
    h.extend_from_slice(&[0x42; NONCE_LEN]);
    h.extend_from_slice(&(spki.len() as u16).to_be_bytes());
    h.extend_from_slice(spki);
    h
}

#[test]
fn well_formed_client_hello_parses() {
    let k = keys();
    let start = ClientStart::new(&k.client, OFFER);
    let hello = hello_bytes(&start);
    assert_eq!(hello[0], VERSION);
    let (nonce, spki, _key) = parse_client_hello(&hello).expect("our own ClientHello");
    assert_eq!(&nonce[..], &hello[1..1 + NONCE_LEN]);
    assert_eq!(spki, k.client.public_der());
    // A fresh nonce every time.
    let again = hello_bytes(&ClientStart::new(&k.client, OFFER));
    assert_ne!(&again[1..1 + NONCE_LEN], &hello[1..1 + NONCE_LEN]);
    assert_eq!(&again[1 + NONCE_LEN..], &hello[1 + NONCE_LEN..]);
}

#[test]
fn malformed_client_hello_is_rejected() {
    let k = keys();
    let good = hello_bytes(&ClientStart::new(&k.client, OFFER));
    let mut bad: Vec<(String, Vec<u8>)> = Vec::new();
    for v in [0u8, 2, 0x80, 0xFF] {
        let mut h = good.clone();
        h[0] = v;
        bad.push((format!("version {v}"), h));
    }
    for extra in [&[0u8][..], b"\x00\x00", &[0xAA; 40]] {
        bad.push((
            format!("{} trailing bytes", extra.len()),
            [&good[..], extra].concat(),
        ));
    }
    for cut in 0..good.len() {
        bad.push((format!("cut at {cut}"), good[..cut].to_vec()));
    }
    let len_at = 1 + NONCE_LEN;
    for delta in [1i32, -1, 0x100, -0x100] {
        let mut h = good.clone();
        let n = u16::from_be_bytes([h[len_at], h[len_at + 1]]) as i32 + delta;
        h[len_at..len_at + 2].copy_from_slice(&(n as u16).to_be_bytes());
        bad.push((format!("SPKI length {delta:+}"), h));
    }
    let garbage = Rng(4).bytes(294);
    bad.push(("random SPKI".into(), hello_with(VERSION, &garbage)));
    bad.push(("empty SPKI".into(), hello_with(VERSION, &[])));

    // Key sizes: 1024 bits generated for real, the others built from a modulus.
    let small = PrivateKey::new(&mut rand::rngs::SysRng, 1024).unwrap();
    let small_der = small
        .to_public_key()
        .to_public_key_der()
        .unwrap()
        .into_vec();
    bad.push(("1024-bit key".into(), hello_with(VERSION, &small_der)));
    for bits in [1024usize, 2040, 4104, 4200, 8192] {
        bad.push((
            format!("{bits}-bit key"),
            hello_with(VERSION, &fake_public_key_der(bits)),
        ));
    }
    // The 8192-bit key is valid to the rsa crate: our own size check refuses it.
    assert!(
        <PublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&fake_public_key_der(8192))
            .is_ok()
    );

    for (what, h) in &bad {
        assert!(parse_client_hello(h).is_none(), "{what} accepted");
        assert!(
            ServerAwaitKey::new(&k.server, OFFER, h).is_none(),
            "{what}: server answered"
        );
    }
    // The boundaries that are accepted.
    for bits in [2048usize, 3072, 4096] {
        let h = hello_with(VERSION, &fake_public_key_der(bits));
        assert!(parse_client_hello(&h).is_some(), "{bits}-bit key refused");
    }
    // A 1024-bit key cannot be our host key either.
    assert!(matches!(HostKey::from_private(small), Err(Error::Key(_))));
}

/// MIN_RSA_BITS is 2048, but the check counts the modulus in whole bytes
/// (`size() * 8`), so a 2041- to 2047-bit modulus passes as 2048 bits.
#[test]
fn peer_key_just_below_2048_bits_is_refused() {
    for bits in [2041usize, 2047] {
        let h = hello_with(VERSION, &fake_public_key_der(bits));
        assert!(parse_client_hello(&h).is_none(), "{bits}-bit key accepted");
    }
}

/// The largest ClientHello (a 4096-bit key) fits the plain-phase line limit.
#[test]
fn largest_client_hello_fits_the_command_line() {
    let spki = fake_public_key_der(4096);
    let hello = hello_with(VERSION, &spki);
    assert!(parse_client_hello(&hello).is_some());
    let line = format!(
        "XBLACKPONY RSA-BLOWFISH {}\r\n",
        Base64::encode_string(&hello)
    );
    assert!(line.len() <= MAX_LINE, "{} > {MAX_LINE}", line.len());
    // And a ServerHello with a 4096-bit key and ciphertext fits a handshake message.
    assert!(NONCE_LEN + 2 + spki.len() + 2 + 512 <= MAX_HANDSHAKE_MESSAGE);
}

// ------------------------------------------------------- message framing

#[test]
fn message_frame_and_read_round_trip() {
    for (kind, len) in [
        (SERVER_HELLO, 0usize),
        (CLIENT_KEY, 1),
        (SERVER_FINISHED, 20),
        (SERVER_HELLO, MAX_HANDSHAKE_MESSAGE),
    ] {
        let body = Rng(len as u64).bytes(len);
        let framed = message::frame(kind, &body);
        assert_eq!(framed.len(), FRAME_HEADER + len);
        assert_eq!(framed[0], kind);
        assert_eq!(u16::from_be_bytes([framed[1], framed[2]]) as usize, len);
        let mut stream = framed.clone();
        stream.extend_from_slice(b"next");
        let mut c = Cursor::new(&stream);
        assert_eq!(message::read(&mut c, kind).unwrap(), framed);
        assert_eq!(
            c.position() as usize,
            framed.len(),
            "reads exactly one message"
        );
    }
}

#[test]
fn message_read_rejects_wrong_type_and_oversize_before_allocation() {
    let cases: &[([u8; 3], u8, &str)] = &[
        ([SERVER_HELLO, 0, 20], CLIENT_KEY, "wrong type"),
        ([CLIENT_KEY, 0, 20], SERVER_FINISHED, "wrong type"),
        ([0, 0, 0], SERVER_HELLO, "type 0"),
        ([0xFF, 0, 1], SERVER_HELLO, "type 255"),
        ([SERVER_HELLO, 0x10, 0x01], SERVER_HELLO, "MAX + 1"),
        ([SERVER_HELLO, 0xFF, 0xFF], SERVER_HELLO, "65535"),
        ([CLIENT_KEY, 0x80, 0x00], CLIENT_KEY, "32768"),
    ];
    assert_eq!(MAX_HANDSHAKE_MESSAGE + 1, 0x1001);
    for (head, kind, what) in cases {
        let mut stream = head.to_vec();
        stream.resize(3 + 70_000, 0);
        let mut c = Cursor::new(&stream);
        let e = message::read(&mut c, *kind).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{what}");
        assert_eq!(
            c.position(),
            3,
            "{what}: nothing read past the frame header"
        );
    }
}

#[test]
fn message_read_of_truncated_message_is_an_error() {
    let framed = message::frame(SERVER_FINISHED, &[9u8; 20]);
    for cut in 0..framed.len() {
        let e = message::read(&mut Cursor::new(&framed[..cut]), SERVER_FINISHED).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "cut {cut}");
    }
}

#[test]
#[should_panic(expected = "MAX_HANDSHAKE_MESSAGE")]
fn message_frame_refuses_oversize_body() {
    let _ = message::frame(CLIENT_KEY, &vec![0u8; MAX_HANDSHAKE_MESSAGE + 1]);
}

// --------------------------------------------------------- session keys

/// Two handshakes between the same two keys give unrelated session keys:
/// the same plaintext seals differently, and one session cannot open the
/// other's records.
#[test]
fn two_handshakes_give_different_session_keys() {
    let mut a = plain(&Tamper::default()).unwrap();
    let mut b = plain(&Tamper::default()).unwrap();
    let ra = seal_one(&mut a.client, b"same plaintext");
    let rb = seal_one(&mut b.client, b"same plaintext");
    assert_eq!(ra.len(), rb.len());
    assert_ne!(ra, rb);
    let sa = seal_one(&mut a.server, b"same plaintext");
    let sb = seal_one(&mut b.server, b"same plaintext");
    assert_ne!(sa, sb);
    assert!(
        open_one(&mut b.server, &ra).is_err(),
        "session b opened session a's record"
    );
    assert!(
        open_one(&mut a.client, &sb).is_err(),
        "session a opened session b's record"
    );
    // Directions differ within one session too.
    let mut c = plain(&Tamper::default()).unwrap();
    let c2s = seal_one(&mut c.client, b"same plaintext");
    let s2c = seal_one(&mut c.server, b"same plaintext");
    assert_ne!(c2s, s2c);
}

/// A record fed back to its sender (reflection) is rejected in both directions.
#[test]
fn reflected_records_are_rejected() {
    let mut s = plain(&Tamper::default()).unwrap();
    let from_client = seal_one(&mut s.client, b"QUIT\r\n");
    assert!(open_one(&mut s.client, &from_client).is_err());
    let mut s = plain(&Tamper::default()).unwrap();
    let from_server = seal_one(&mut s.server, b"221 bye\r\n");
    assert!(open_one(&mut s.server, &from_server).is_err());
}

// ---------------------------------------------------------------- host keys

#[test]
fn host_key_save_and_load_round_trip() {
    use std::os::unix::fs::PermissionsExt;
    let k = keys();
    let dir = std::env::temp_dir().join(format!("blackpony-handshake-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("host.key");
    let _ = std::fs::remove_file(&path);
    k.server.save_new(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = HostKey::load(&path).unwrap();
    assert_eq!(loaded.fingerprint(), k.server.fingerprint());
    assert_eq!(loaded.public_der(), k.server.public_der());
    assert!(
        matches!(k.client.save_new(&path), Err(Error::Key(_))),
        "never overwrites"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(
        matches!(HostKey::load(&path), Err(Error::Key(_))),
        "group-readable key refused"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
