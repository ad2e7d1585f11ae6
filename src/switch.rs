//! Where SMTP switches to encryption, for both sides: the `XBLACKPONY`
//! command and its `220` answer, then the suite's handshake, then the
//! peer's streams replaced by the negotiated channel. The sessions decide
//! *when* a switch is allowed (their phases); this module does the switch.
//!
//! No plaintext crosses the switch: the server refuses bytes that arrived
//! behind the command on a live socket (an injection attempt), and the
//! client refuses replies queued behind the `220`.

use std::io::{BufReader, Cursor, Read, Write};

use base64ct::{Base64, Encoding};

use crate::cert::VerifiedCert;
use crate::channel::{BoxRead, BoxSink};
use crate::keys::HostKey;
use crate::limits::{COPY_BUFFER, MAX_LINE};
use crate::peer::{detached, Peer};
use crate::reply::Reply;
use crate::smtp::command::arguments;
use crate::smtp::LineReader;
use crate::static_key::StaticIdentity;
use crate::suite::common::Keys;
use crate::suite::message::{self, CLIENT_KEY, SERVER_FINISHED, SERVER_HELLO};
use crate::suite::noise_suite::{
    self, ClientIk, ClientXx, ServerIk, ServerXx, IDENTITY, NOISE_MESSAGE,
};
use crate::suite::rot::{RotReader, RotWriter};
use crate::suite::rsa_blowfish::{ClientStart, ServerAwaitKey};
use crate::suite::{SuiteId, SuitePolicy, NOISE};
use crate::wire::record::{RecordReader, RecordWriter, Sealer};
use crate::{Error, KEYWORD};

/// A finished switch: the suite and, for keyed suites, who the peer is.
#[derive(Default)]
pub struct Switched {
    pub suite: Option<SuiteId>,
    pub peer_fingerprint: Option<String>,
    /// The server's certificate (v2, XX), for the client to cache for IK.
    pub server_cert: Option<Vec<u8>>,
    /// The inner EHLO was already answered inside the handshake (v2, IK).
    pub greeted: bool,
}

impl Switched {
    fn to(suite: SuiteId, peer_fingerprint: Option<String>) -> Self {
        Switched {
            suite: Some(suite),
            peer_fingerprint,
            ..Switched::default()
        }
    }
}

/// What the server needs to answer a switch command.
pub struct ServerSide<'a> {
    /// The suite list the EHLO reply advertised, as sent.
    pub offer: &'a str,
    pub suites: &'a SuitePolicy,
    /// The RSA host key: only for RSA-BLOWFISH (and the old X25519 suite).
    pub key: Option<&'a HostKey>,
    /// The static key and certificate: for handshake v2.
    pub identity: Option<&'a StaticIdentity>,
    /// The client's EHLO line that the offer answered (v2 binds it).
    pub outer_ehlo: &'a [u8],
    /// A live socket (not a replayed session): early bytes are an attack.
    pub live: bool,
}

/// What the client needs for handshake v2.
pub struct ClientSide<'a> {
    pub key: Option<&'a HostKey>,
    pub identity: Option<&'a StaticIdentity>,
    /// The server's certificate cached beside its pin: IK instead of XX.
    pub cached: Option<&'a VerifiedCert>,
}

/// Server side: answer one `XBLACKPONY` command line from `client`. A
/// command we cannot honour gets its 5xx and `Ok(None)`: the session stays
/// plain. `Ok(Some(_))` means `client` now speaks the suite.
/// `inner_ehlo` answers an inner EHLO that rides in the handshake (v2, IK).
pub fn serve(
    client: &mut Peer,
    line: &[u8],
    side: &ServerSide,
    inner_ehlo: &mut dyn FnMut(&[u8]) -> Result<Reply, Error>,
) -> Result<Option<Switched>, Error> {
    let args = arguments(line);
    let Some(first) = args.first() else {
        return refuse(client, 501, "5.5.4 Syntax: XBLACKPONY <suite> [arguments]");
    };
    let have_keys = |s: SuiteId| match s {
        SuiteId::Rot(_) => true,
        SuiteId::Noise => side.identity.is_some(),
        _ => side.key.is_some(),
    };
    let suite = match SuiteId::parse(first) {
        Some(s) if side.suites.accepts(s) && have_keys(s) => s,
        _ => return refuse(client, 504, "5.5.4 Suite not supported"),
    };
    if let (SuiteId::Noise, Some(id)) = (suite, side.identity) {
        return serve_v2(client, &args, side, id, inner_ehlo);
    }
    let go_ahead = format!("220 2.0.0 Go ahead with {suite}\r\n");
    let (Some(key), false) = (side.key, suite.is_rot()) else {
        if args.len() != 1 {
            return refuse(client, 501, "5.5.4 ROTn takes no arguments");
        }
        check_injection(client, side.live)?;
        client.send(go_ahead.as_bytes())?;
        install_rot(client, suite)?;
        return Ok(Some(Switched::to(suite, None)));
    };
    let hello = args
        .get(1)
        .filter(|_| args.len() == 2)
        .and_then(|a| Base64::decode_vec(a).ok());
    let Some(hello) = hello else {
        let text = format!("5.5.4 Syntax: XBLACKPONY {suite} <base64 ClientHello>");
        return refuse(client, 501, &text);
    };
    let Some((server_hello, state)) = ServerAwaitKey::new(key, side.offer, &hello) else {
        return refuse(client, 501, "5.5.4 Malformed ClientHello");
    };
    check_injection(client, side.live)?;
    // The go-ahead and our hello in one write: one flight.
    let mut flight = go_ahead.into_bytes();
    flight.extend_from_slice(&server_hello);
    client.send(&flight)?;
    let mut src = buffered_rest(client);
    let client_key = message::read(&mut src, CLIENT_KEY).map_err(|_| Error::Crypto)?;
    let (finished, keys) = state.on_client_key(&client_key)?;
    // Finished goes out as it is; everything after it in records.
    let mut w = sealed_writer(client, keys.sealer);
    w.get_mut()
        .write_all(&finished)
        .and_then(|_| w.get_mut().flush())
        .map_err(Error::io(client.name))?;
    install(client, RecordReader::new(src, keys.opener), w);
    Ok(Some(Switched::to(suite, Some(keys.peer_fingerprint))))
}

/// Server side of handshake v2: `XBLACKPONY <suite> XX|IK <base64 msg1>`.
fn serve_v2(
    client: &mut Peer,
    args: &[&str],
    side: &ServerSide,
    id: &StaticIdentity,
    inner_ehlo: &mut dyn FnMut(&[u8]) -> Result<Reply, Error>,
) -> Result<Option<Switched>, Error> {
    let msg1 = args.get(2).filter(|_| args.len() == 3);
    let msg1 = msg1.and_then(|a| Base64::decode_vec(a).ok());
    let (Some(pattern), Some(msg1)) = (args.get(1), msg1) else {
        return refuse(client, 501, V2_SYNTAX);
    };
    let go_ahead = format!("220 2.0.0 Go ahead with {NOISE}\r\n").into_bytes();
    let prologue = noise_suite::prologue(side.offer, NOISE, side.outer_ehlo);
    if pattern.eq_ignore_ascii_case("XX") {
        let Some((state, msg2)) = ServerXx::start(id, &prologue, &msg1) else {
            return refuse(client, 501, "5.5.4 Malformed handshake message");
        };
        check_injection(client, side.live)?;
        client.send(&[go_ahead, message::frame(NOISE_MESSAGE, &msg2)].concat())?;
        let mut src = buffered_rest(client);
        let keys = state.on_msg3(&read_body(&mut src, NOISE_MESSAGE)?)?;
        let w = sealed_writer(client, keys.sealer);
        install(client, RecordReader::new(src, keys.opener), w);
        let fingerprint = keys.peer_fingerprint;
        return Ok(Some(Switched::to(SuiteId::Noise, Some(fingerprint))));
    }
    if !pattern.eq_ignore_ascii_case("IK") {
        return refuse(client, 501, V2_SYNTAX);
    }
    let Some((state, ehlo)) = ServerIk::start(id, &prologue, &msg1) else {
        // Most likely a client whose cached copy of our static key is stale.
        return refuse(client, 454, "4.7.0 Cannot decrypt: start over with XX");
    };
    check_injection(client, side.live)?;
    if crate::smtp::command::verb(&ehlo) != crate::smtp::Verb::Ehlo || ehlo.len() > MAX_LINE {
        let why = "IK first flight is not one EHLO line";
        return Err(Error::Protocol(why.into()));
    }
    let reply = inner_ehlo(&ehlo)?;
    let (msg2, state) = state.answer(&reply.to_bytes())?;
    client.send(&[go_ahead, message::frame(NOISE_MESSAGE, &msg2)].concat())?;
    let (keys, client_static) = state.keys()?;
    let src = buffered_rest(client);
    let mut records = RecordReader::new(src, keys.opener);
    // The client's certificate comes first; nothing it sends is relayed before.
    let cert = read_body(&mut records, IDENTITY)?;
    let peer = noise_suite::check_identity(&client_static, &cert)?;
    let w = sealed_writer(client, keys.sealer);
    install(client, records, w);
    let mut on = Switched::to(SuiteId::Noise, Some(peer.fingerprint));
    on.greeted = true;
    Ok(Some(on))
}

/// The client's pin decision on a server's key fingerprint and, with it,
/// the fingerprint of an old key whose continuity statement vouches for it.
pub type PinCheck<'a> = dyn FnMut(&str, Option<&str>) -> Result<(), Error> + 'a;

/// Client side: ask `remote` for `suite` (from the list it `offered`), run
/// the handshake, send `inner_ehlo` inside the new channel and return its
/// reply. `inner_ehlo` must be the outer EHLO line resent byte for byte
/// (PROTOCOL 1.3): v2's prologue binds it, and the server binds the outer
/// one. For keyed suites `pin_check` runs before anything of ours but the
/// handshake leaves: an `Err` from it ends the session there.
pub fn request(
    remote: &mut Peer,
    side: &ClientSide,
    suite: SuiteId,
    offered: &str,
    inner_ehlo: &[u8],
    pin_check: &mut PinCheck,
) -> Result<(Reply, Switched), Error> {
    if suite == SuiteId::Noise {
        let id = side
            .identity
            .ok_or_else(|| Error::Key(format!("no static key: cannot use {suite}")))?;
        let fits = inner_ehlo.len() <= noise_suite::IK_MAX_EHLO;
        if let Some(cached) = side.cached.filter(|_| fits) {
            pin_check(&cached.fingerprint, None)?;
            match request_ik(remote, id, cached, offered, inner_ehlo)? {
                Some(done) => return Ok(done),
                None => log::info!("stale cached static key; starting over with XX"),
            }
        }
        return request_xx(remote, id, offered, inner_ehlo, pin_check);
    }
    if suite.is_rot() {
        remote.send(format!("{KEYWORD} {suite}\r\n").as_bytes())?;
        expect_go_ahead(remote)?;
        // A server only speaks after our next command: replies queued
        // behind its 220 were sent before the switch (injection).
        if !remote.reader.buffered().is_empty() {
            return Err(Error::Injection);
        }
        install_rot(remote, suite)?;
        remote.send(inner_ehlo)?;
        return Ok((remote.read_reply()?, Switched::to(suite, None)));
    }
    let key = side
        .key
        .ok_or_else(|| Error::Key(format!("no host key: cannot use {suite}")))?;
    let start = ClientStart::new(key, offered);
    remote.send(format!("{KEYWORD} {suite} {}\r\n", start.hello_base64()).as_bytes())?;
    expect_go_ahead(remote)?;
    let mut src = buffered_rest(remote);
    let hello = message::read(&mut src, SERVER_HELLO).map_err(|_| Error::Crypto)?;
    let (flight, keys, awaiting) = start.on_server_hello(&hello)?;
    pin_check(&keys.peer_fingerprint, None)?;
    let Keys {
        sealer,
        opener,
        peer_fingerprint,
    } = keys;
    let mut w = sealed_writer(remote, sealer);
    // Our key, our Finished and the inner EHLO in one flight.
    w.send_with_prefix(&flight, inner_ehlo)
        .map_err(Error::io(remote.name))?;
    let finished = message::read(&mut src, SERVER_FINISHED).map_err(|_| Error::Crypto)?;
    awaiting.on_server_finished(&finished)?;
    install(remote, RecordReader::new(src, opener), w);
    let on = Switched::to(suite, Some(peer_fingerprint));
    Ok((remote.read_reply()?, on))
}

/// v2 first contact: XX. Two round trips after the outer EHLO.
fn request_xx(
    remote: &mut Peer,
    id: &StaticIdentity,
    offered: &str,
    inner_ehlo: &[u8],
    pin_check: &mut PinCheck,
) -> Result<(Reply, Switched), Error> {
    let prologue = noise_suite::prologue(offered, NOISE, inner_ehlo);
    let (state, msg1) = ClientXx::start(id, &prologue)?;
    let msg1 = Base64::encode_string(&msg1);
    remote.send(format!("{KEYWORD} {NOISE} XX {msg1}\r\n").as_bytes())?;
    expect_go_ahead(remote)?;
    let mut src = buffered_rest(remote);
    let (verified, peer, vouch) = state.on_msg2(&read_body(&mut src, NOISE_MESSAGE)?)?;
    // The pin decision before msg3: a refused server learns nothing more.
    pin_check(&peer.fingerprint, vouch.as_deref())?;
    let server_cert = verified.cert_s.clone();
    let (msg3, keys) = verified.finish(id)?;
    let mut w = sealed_writer(remote, keys.sealer);
    w.send_with_prefix(&message::frame(NOISE_MESSAGE, &msg3), inner_ehlo)
        .map_err(Error::io(remote.name))?;
    install(remote, RecordReader::new(src, keys.opener), w);
    let mut on = Switched::to(SuiteId::Noise, Some(keys.peer_fingerprint));
    on.server_cert = Some(server_cert);
    Ok((remote.read_reply()?, on))
}

/// v2 to a known peer: IK, with the inner EHLO in the first flight. One
/// round trip after the outer EHLO. `Ok(None)` if the server could not
/// decrypt it (its static key changed): the caller starts over with XX.
fn request_ik(
    remote: &mut Peer,
    id: &StaticIdentity,
    cached: &VerifiedCert,
    offered: &str,
    inner_ehlo: &[u8],
) -> Result<Option<(Reply, Switched)>, Error> {
    let prologue = noise_suite::prologue(offered, NOISE, inner_ehlo);
    let (state, msg1) = ClientIk::start(id, &prologue, cached, inner_ehlo)?;
    let msg1 = Base64::encode_string(&msg1);
    remote.send(format!("{KEYWORD} {NOISE} IK {msg1}\r\n").as_bytes())?;
    let reply = remote.read_reply()?;
    if reply.code != 220 {
        return Ok(None);
    }
    let mut src = buffered_rest(remote);
    let (inner, keys) = state.on_msg2(&read_body(&mut src, NOISE_MESSAGE)?)?;
    let mut inner_reader = LineReader::new(std::io::Cursor::new(inner));
    let inner = crate::smtp::reply::read_reply(&mut inner_reader, remote.name)?;
    let mut w = sealed_writer(remote, keys.sealer);
    // Our certificate first, in the records: MAIL may follow at once.
    w.write_all(&message::frame(IDENTITY, &id.cert_bytes))
        .and_then(|_| w.flush())
        .map_err(Error::io(remote.name))?;
    install(remote, RecordReader::new(src, keys.opener), w);
    let mut on = Switched::to(SuiteId::Noise, Some(keys.peer_fingerprint));
    on.greeted = true;
    Ok(Some((inner, on)))
}

/// A switch command we cannot honour: its 5xx (or 4xx), and the session stays plain.
fn refuse(client: &mut Peer, code: u16, text: &str) -> Result<Option<Switched>, Error> {
    client.send_reply(&Reply::new(code, text)).map(|_| None)
}

/// The refusal of a malformed v2 command.
const V2_SYNTAX: &str = "5.5.4 Syntax: XBLACKPONY <suite> XX|IK <base64 message>";

/// One handshake message of type `kind`, its body only. Any failure is the
/// one opaque crypto error: the peer learns nothing about which check failed.
fn read_body(src: &mut impl Read, kind: u8) -> Result<Vec<u8>, Error> {
    let mut m = message::read(src, kind).map_err(|_| Error::Crypto)?;
    m.drain(..3);
    Ok(m)
}

/// The writing half of `peer` under `sealer` (its reading half was taken
/// by [`buffered_rest`]).
fn sealed_writer(peer: &mut Peer, sealer: Sealer) -> RecordWriter<BoxSink> {
    let (_, _, raw) = peer.take_streams();
    RecordWriter::new(raw, sealer)
}

/// `peer` reads and writes records from here on.
fn install(peer: &mut Peer, reader: RecordReader<BoxRead>, writer: RecordWriter<BoxSink>) {
    peer.replace(LineReader::new(Box::new(reader)), Box::new(writer));
}

fn expect_go_ahead(remote: &mut Peer) -> Result<(), Error> {
    let reply = remote.read_reply()?;
    if reply.code != 220 {
        let why = reply.summary();
        return Err(Error::Protocol(format!("{KEYWORD} refused: {why}")));
    }
    Ok(())
}

/// On a live socket, anything the client sent after the switch command and
/// before our answer was sent before it could know the answer: an injection
/// attempt (the CVE-2011-0411 bug class). In a replayed session those bytes
/// are simply the rest of the recording. Bytes still in the socket count
/// too ([`Peer::sent_early`]), not only those the reader happened to buffer.
fn check_injection(client: &Peer, live: bool) -> Result<(), Error> {
    if live && (!client.reader.buffered().is_empty() || !client.sent_early().is_empty()) {
        return Err(Error::Injection);
    }
    Ok(())
}

/// Both directions of `peer` rotated by ROTn from here on. Buffered bytes
/// (only possible in a replayed session) are read as rotated.
fn install_rot(peer: &mut Peer, suite: SuiteId) -> Result<(), Error> {
    let SuiteId::Rot(n) = suite else {
        return Err(Error::Protocol(format!("{suite} is not ROTn")));
    };
    let (raw, rest, writer) = peer.take_streams();
    let src: BoxRead = Box::new(Cursor::new(rest).chain(raw));
    peer.replace(
        LineReader::new(Box::new(RotReader::new(src, n))),
        Box::new(RotWriter::new(writer, n)),
    );
    Ok(())
}

/// The peer's reading side from here on, buffered: unbuffered, every record
/// costs two reads (header, body). The bytes the line reader had buffered
/// come first.
fn buffered_rest(peer: &mut Peer) -> BoxRead {
    let (raw, rest) = std::mem::replace(&mut peer.reader, detached().0).into_parts();
    let rest_first = Cursor::new(rest).chain(raw);
    Box::new(BufReader::with_capacity(COPY_BUFFER, rest_first))
}
