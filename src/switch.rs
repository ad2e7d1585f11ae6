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

use crate::channel::BoxRead;
use crate::keys::HostKey;
use crate::limits::COPY_BUFFER;
use crate::peer::Peer;
use crate::reply::Reply;
use crate::smtp::command::arguments;
use crate::smtp::LineReader;
use crate::suite::keyed::{ClientStart, Keys, ServerAwaitKey};
use crate::suite::message::{self, CLIENT_KEY, SERVER_FINISHED, SERVER_HELLO};
use crate::suite::rot::{RotReader, RotWriter};
use crate::suite::{SuiteId, SuitePolicy};
use crate::wire::record::{RecordReader, RecordWriter};
use crate::{Error, KEYWORD};

/// A finished switch: the suite and, for keyed suites, who the peer is.
pub struct Switched {
    pub suite: SuiteId,
    pub peer_fingerprint: Option<String>,
}

/// What the server needs to answer a switch command.
pub struct ServerSide<'a> {
    /// The suite list the EHLO reply advertised, as sent.
    pub offer: &'a str,
    pub suites: &'a SuitePolicy,
    pub key: Option<&'a HostKey>,
    /// A live socket (not a replayed session): early bytes are an attack.
    pub live: bool,
}

/// Server side: answer one `XBLACKPONY` command line from `client`. A
/// command we cannot honour gets its 5xx and `Ok(None)`: the session stays
/// plain. `Ok(Some(_))` means `client` now speaks the suite.
pub fn serve(client: &mut Peer, line: &[u8], side: &ServerSide) -> Result<Option<Switched>, Error> {
    let args = arguments(line);
    let refuse = |client: &mut Peer, code, text: &str| {
        client.send_reply(&Reply::new(code, text)).map(|_| None)
    };
    let Some(first) = args.first() else {
        return refuse(client, 501, "5.5.4 Syntax: XBLACKPONY <suite> [arguments]");
    };
    let suite = match SuiteId::parse(first) {
        Some(s) if side.suites.accepts(s) && (s.is_rot() || side.key.is_some()) => s,
        _ => return refuse(client, 504, "5.5.4 Suite not supported"),
    };
    let go_ahead = format!("220 2.0.0 Go ahead with {suite}\r\n");
    let (Some(key), true) = (side.key, suite.is_keyed()) else {
        if args.len() != 1 {
            return refuse(client, 501, "5.5.4 ROTn takes no arguments");
        }
        check_injection(client, side.live)?;
        client.send(go_ahead.as_bytes())?;
        install_rot(client, suite)?;
        return Ok(Some(Switched {
            suite,
            peer_fingerprint: None,
        }));
    };
    let hello = args
        .get(1)
        .filter(|_| args.len() == 2)
        .and_then(|a| Base64::decode_vec(a).ok());
    let Some(hello) = hello else {
        let text = format!("5.5.4 Syntax: XBLACKPONY {suite} <base64 ClientHello>");
        return refuse(client, 501, &text);
    };
    let Some((server_hello, state)) = ServerAwaitKey::new(suite, key, side.offer, &hello) else {
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
    let (_, _, mut raw_writer) = client.take_streams();
    raw_writer
        .write_all(&finished)
        .and_then(|_| raw_writer.flush())
        .map_err(Error::io(client.name))?;
    client.replace(
        LineReader::new(Box::new(RecordReader::new(src, keys.opener))),
        Box::new(RecordWriter::new(raw_writer, keys.sealer)),
    );
    Ok(Some(Switched {
        suite,
        peer_fingerprint: Some(keys.peer_fingerprint),
    }))
}

/// Client side: ask `remote` for `suite` (from the list it `offered`), run
/// the handshake, and send `inner_ehlo` inside the new channel. Returns the
/// reply to the inner EHLO and what was switched to.
pub fn request(
    remote: &mut Peer,
    key: Option<&HostKey>,
    suite: SuiteId,
    offered: &str,
    inner_ehlo: &[u8],
) -> Result<(Reply, Switched), Error> {
    let Some(key) = key.filter(|_| suite.is_keyed()) else {
        if suite.is_keyed() {
            return Err(Error::Key(format!("no host key: cannot use {suite}")));
        }
        remote.send(format!("{KEYWORD} {suite}\r\n").as_bytes())?;
        expect_go_ahead(remote)?;
        // A server only speaks after our next command: replies queued
        // behind its 220 were sent before the switch (injection).
        if !remote.reader.buffered().is_empty() {
            return Err(Error::Injection);
        }
        install_rot(remote, suite)?;
        remote.send(inner_ehlo)?;
        let switched = Switched {
            suite,
            peer_fingerprint: None,
        };
        return Ok((remote.read_reply()?, switched));
    };
    let start = ClientStart::new(suite, key, offered).expect("a keyed suite");
    remote.send(format!("{KEYWORD} {suite} {}\r\n", start.hello_base64()).as_bytes())?;
    expect_go_ahead(remote)?;
    let mut src = buffered_rest(remote);
    let hello = message::read(&mut src, SERVER_HELLO).map_err(|_| Error::Crypto)?;
    let (flight, keys, awaiting) = start.on_server_hello(&hello)?;
    let Keys {
        sealer,
        opener,
        peer_fingerprint,
    } = keys;
    let (_, _, raw_writer) = remote.take_streams();
    let mut w = RecordWriter::new(raw_writer, sealer);
    // Our key, our Finished and the inner EHLO in one flight.
    w.send_with_prefix(&flight, inner_ehlo)
        .map_err(Error::io(remote.name))?;
    let finished = message::read(&mut src, SERVER_FINISHED).map_err(|_| Error::Crypto)?;
    awaiting.on_server_finished(&finished)?;
    remote.replace(
        LineReader::new(Box::new(RecordReader::new(src, opener))),
        Box::new(w),
    );
    let switched = Switched {
        suite,
        peer_fingerprint: Some(peer_fingerprint),
    };
    Ok((remote.read_reply()?, switched))
}

fn expect_go_ahead(remote: &mut Peer) -> Result<(), Error> {
    let reply = remote.read_reply()?;
    if reply.code != 220 {
        return Err(Error::Protocol(format!(
            "{KEYWORD} refused: {}",
            reply.summary()
        )));
    }
    Ok(())
}

/// On a live socket, anything the client sent after the switch command and
/// before our answer was sent before it could know the answer: an injection
/// attempt (the CVE-2011-0411 bug class). In a replayed session those bytes
/// are simply the rest of the recording.
fn check_injection(client: &Peer, live: bool) -> Result<(), Error> {
    if live && !client.reader.buffered().is_empty() {
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
    let (raw, rest) = std::mem::replace(
        &mut peer.reader,
        LineReader::new(Box::new(std::io::empty())),
    )
    .into_parts();
    Box::new(BufReader::with_capacity(
        COPY_BUFFER,
        Cursor::new(rest).chain(raw),
    ))
}
