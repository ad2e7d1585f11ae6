//! The one relay of the tests: a TCP relay in front of a server that records
//! both directions of every connection and, when told, tampers with them:
//! strips the XBLACKPONY offer, trickles every byte in its own segment, or
//! attacks one record of an encrypted session (it knows the wire format:
//! plain SMTP up to the switch, the framed handshake messages, then records
//! of a u32 length, the body and the suite's tag), or one handshake message
//! of v2 (NOISE-25519-CHACHAPOLY-SHA256): msg1 in the command line, msg2
//! as frame(4) after the `220 2.0.0 Go ahead`, msg3 as frame(4) before the
//! client's records.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the relay does to the connections it accepts from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    Nothing,
    /// Remove the XBLACKPONY line from the first EHLO reply.
    StripKeyword,
    /// Forward every byte in its own write (TCP_NODELAY, this pause after
    /// each), both ways, so each reader sees the stream split at every offset.
    Trickle(Duration),
    /// Attack record `at` (from 0, counted after the handshake) of the
    /// direction the [`Attack`] names.
    Record(Attack, usize),
    /// Attack one handshake message of v2 (NOISE-25519-CHACHAPOLY-SHA256).
    Handshake(Msg, HsAttack),
}

/// A handshake message of v2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// msg1, base64 in the client's `XBLACKPONY <suite> XX|IK` line.
    One,
    /// msg2, frame(4) after the server's `220 2.0.0 Go ahead`.
    Two,
    /// msg3 (XX only), frame(4) before the client's records.
    Three,
}

/// What the relay does to that message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HsAttack {
    /// Flip one bit in the middle of the message.
    Flip,
    /// Drop its last byte (the frame length follows, so only the
    /// handshake itself can notice).
    Truncate,
    /// Put the same message of the previous connection in its place (a
    /// message out of its session's order); the first connection passes.
    Stale,
}

/// One attack on the records of an encrypted session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// Flip one bit in the body of client record `at`.
    FlipBit,
    /// Leave client record `at` out.
    Drop,
    /// Send client record `at` twice.
    Replay,
    /// Send client record `at + 1` before record `at`.
    Reorder,
    /// Cut the stream (FIN to the server) instead of client record `at`.
    Truncate,
    /// Send the server its own last record before client record `at`.
    ReflectToServer,
    /// Instead of server record `at`, send the client its own last record.
    ReflectToClient,
    /// Flip one bit in the body of server record `at`.
    FlipToClient,
}

/// Both directions of one relayed connection, as received (before any
/// tampering).
#[derive(Clone, Default, Debug)]
pub struct Capture {
    /// Client to server.
    pub up: Vec<u8>,
    /// Server to client.
    pub down: Vec<u8>,
}

/// What the record attacks saw, over every connection.
#[derive(Clone, Default, Debug)]
pub struct RecordLog {
    /// The suite the client asked for, from its XBLACKPONY line.
    pub suite: String,
    pub c2s_records: usize,
    pub s2c_records: usize,
    /// The attack was carried out.
    pub tampered: bool,
    /// The v2 pattern of the last XBLACKPONY line seen (`XX` or `IK`).
    pub pattern: String,
    /// The last msg1, msg2, msg3 seen (before tampering).
    msgs: [Option<Vec<u8>>; 3],
    last_c2s: Option<Vec<u8>>,
    last_s2c: Option<Vec<u8>>,
}

pub struct Relay {
    pub addr: SocketAddr,
    backend: Arc<Mutex<SocketAddr>>,
    tamper: Arc<Mutex<Tamper>>,
    captures: Arc<Mutex<Vec<Arc<Mutex<Capture>>>>>,
    records: Arc<Mutex<RecordLog>>,
}

impl Relay {
    pub fn start(backend: SocketAddr) -> Relay {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), backend)
    }

    /// A relay doing `t` from the first connection on.
    pub fn with(backend: SocketAddr, t: Tamper) -> Relay {
        let r = Self::start(backend);
        r.set_tamper(t);
        r
    }

    pub fn on(listener: TcpListener, backend: SocketAddr) -> Relay {
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            backend: Arc::new(Mutex::new(backend)),
            tamper: Arc::new(Mutex::new(Tamper::Nothing)),
            captures: Arc::default(),
            records: Arc::default(),
        };
        let (backend, tamper, captures, records) = (
            Arc::clone(&relay.backend),
            Arc::clone(&relay.tamper),
            Arc::clone(&relay.captures),
            Arc::clone(&relay.records),
        );
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let to = *backend.lock().unwrap();
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                for s in [&client, &server] {
                    s.set_nodelay(true).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                }
                let cap = Arc::new(Mutex::new(Capture::default()));
                captures.lock().unwrap().push(Arc::clone(&cap));
                let t = *tamper.lock().unwrap();
                let records = Arc::clone(&records);
                thread::spawn(move || relay_one(client, server, t, cap, records));
            }
        });
        relay
    }

    pub fn set_backend(&self, to: SocketAddr) {
        *self.backend.lock().unwrap() = to;
    }

    pub fn set_tamper(&self, t: Tamper) {
        *self.tamper.lock().unwrap() = t;
    }

    pub fn captures(&self) -> Vec<Capture> {
        self.captures
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .collect()
    }

    pub fn records(&self) -> RecordLog {
        self.records.lock().unwrap().clone()
    }
}

fn relay_one(
    client: TcpStream,
    server: TcpStream,
    t: Tamper,
    cap: Arc<Mutex<Capture>>,
    records: Arc<Mutex<RecordLog>>,
) {
    let (c2, s2, cap2) = (
        client.try_clone().unwrap(),
        server.try_clone().unwrap(),
        Arc::clone(&cap),
    );
    let (up, down): (Transform, Transform) = match t {
        Tamper::Nothing => (Box::new(|b| b.to_vec()), Box::new(|b| b.to_vec())),
        Tamper::StripKeyword => {
            let mut s = Stripper::default();
            (Box::new(|b| b.to_vec()), Box::new(move |b| s.feed(b)))
        }
        Tamper::Trickle(pause) => {
            let up =
                thread::spawn(move || trickle(c2, s2, pause, |b| cap2.lock().unwrap().up.push(b)));
            trickle(server, client, pause, |b| cap.lock().unwrap().down.push(b));
            let _ = up.join();
            return;
        }
        Tamper::Handshake(msg, attack) => {
            let rec2 = Arc::clone(&records);
            let up =
                thread::spawn(move || hs_up(BufReader::new(c2), s2, msg, attack, &cap2, &rec2));
            hs_down(BufReader::new(server), client, msg, attack, &cap, &records);
            let _ = up.join();
            return;
        }
        Tamper::Record(attack, at) => {
            let rec2 = Arc::clone(&records);
            let up =
                thread::spawn(move || attack_up(BufReader::new(c2), s2, attack, at, &cap2, &rec2));
            attack_down(BufReader::new(server), client, attack, at, &cap, &records);
            let _ = up.join();
            return;
        }
    };
    let up = thread::spawn(move || pump(c2, s2, up, |b| cap2.lock().unwrap().up.extend(b)));
    pump(server, client, down, |b| cap.lock().unwrap().down.extend(b));
    let _ = up.join();
}

type Transform = Box<dyn FnMut(&[u8]) -> Vec<u8> + Send>;

fn pump(mut from: TcpStream, mut to: TcpStream, mut f: Transform, mut seen: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        // Recorded before it is forwarded: whatever the receiver saw is here.
        seen(&buf[..n]);
        if to.write_all(&f(&buf[..n])).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn trickle(mut from: TcpStream, mut to: TcpStream, pause: Duration, mut seen: impl FnMut(u8)) {
    let mut b = [0u8; 1];
    while let Ok(1) = from.read(&mut b) {
        seen(b[0]);
        if to.write_all(&b).is_err() {
            break;
        }
        thread::sleep(pause);
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Removes the XBLACKPONY line from the first EHLO reply and fixes the
/// continuation marks; everything else passes untouched.
#[derive(Default)]
struct Stripper {
    pending: Vec<u8>,
    /// 0: in the greeting, 1: in the EHLO reply, 2: done.
    phase: u8,
    reply: Vec<Vec<u8>>,
}

impl Stripper {
    fn feed(&mut self, b: &[u8]) -> Vec<u8> {
        if self.phase == 2 {
            return b.to_vec();
        }
        self.pending.extend_from_slice(b);
        let mut out = Vec::new();
        while self.phase < 2 {
            let Some(i) = self.pending.iter().position(|&c| c == b'\n') else {
                break;
            };
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let last = line.get(3) != Some(&b'-');
            if self.phase == 0 {
                out.extend_from_slice(&line);
                if last {
                    self.phase = 1;
                }
                continue;
            }
            self.reply.push(line);
            if last {
                let mut kept: Vec<Vec<u8>> = self
                    .reply
                    .drain(..)
                    .filter(|l| {
                        !String::from_utf8_lossy(l.get(4..).unwrap_or(&[]))
                            .to_ascii_uppercase()
                            .starts_with("XBLACKPONY")
                    })
                    .collect();
                let n = kept.len();
                for (i, l) in kept.iter_mut().enumerate() {
                    if l.len() > 3 {
                        l[3] = if i + 1 == n { b' ' } else { b'-' };
                    }
                    out.extend_from_slice(l);
                }
                self.phase = 2;
            }
        }
        if self.phase == 2 {
            out.append(&mut self.pending);
        }
        out
    }
}

// ------------------------------------------------------------ record attacks

/// Read plain SMTP lines and forward them until one starts with `until`;
/// returns that line.
fn forward_lines(
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    until: &[u8],
    seen: &mut Vec<u8>,
) -> Option<String> {
    loop {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        seen.extend_from_slice(&line);
        if w.write_all(&line).is_err() {
            return None;
        }
        if line.starts_with(until) {
            return Some(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

/// Handshake v2's suite: records sealed with ChaCha20-Poly1305.
pub const NOISE: &str = "NOISE-25519-CHACHAPOLY-SHA256";

/// The record tag length of a suite (Poly1305 for v2, HMAC-SHA1 for RSA-BLOWFISH).
fn tag_len(suite: &str) -> usize {
    if suite.eq_ignore_ascii_case(NOISE) {
        16
    } else {
        20
    }
}

/// How many framed handshake messages the client sends after its
/// XBLACKPONY line, before its records: RSA-BLOWFISH its ClientKey, v2 XX
/// msg3, v2 IK none (msg1 rode in the command line; its certificate is in
/// its first record).
fn client_messages(xblackpony: &str) -> usize {
    let mut w = xblackpony.split_whitespace().skip(1);
    match (w.next(), w.next()) {
        (Some(s), Some(p)) if s.eq_ignore_ascii_case(NOISE) && p.eq_ignore_ascii_case("IK") => 0,
        _ => 1,
    }
}

/// How many framed handshake messages the server sends after its go-ahead
/// line (`220 2.0.0 Go ahead with <suite>`): v2 msg2 (XX and IK), or
/// RSA-BLOWFISH's ServerHello and ServerFinished.
fn server_messages(go_ahead: &str) -> usize {
    if go_ahead.to_ascii_uppercase().contains(NOISE) {
        1
    } else {
        2
    }
}

/// Forward one framed handshake message (type, u16 length, body).
fn forward_message(r: &mut BufReader<TcpStream>, w: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    let mut head = [0u8; 3];
    if r.read_exact(&mut head).is_err() {
        return false;
    }
    let mut body = vec![0u8; u16::from_be_bytes([head[1], head[2]]).into()];
    if r.read_exact(&mut body).is_err() {
        return false;
    }
    seen.extend_from_slice(&head);
    seen.extend_from_slice(&body);
    w.write_all(&head).is_ok() && w.write_all(&body).is_ok()
}

/// One whole record: length(u32), body, the suite's tag.
fn read_record(r: &mut BufReader<TcpStream>, tag: usize) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes(head) as usize;
    if len > 1 << 20 {
        return None;
    }
    let mut rec = head.to_vec();
    rec.resize(4 + len + tag, 0);
    r.read_exact(&mut rec[4..]).ok()?;
    Some(rec)
}

/// Flip one bit in the middle of a record's body.
fn flip(rec: &mut [u8], tag: usize) {
    let mid = 4 + (rec.len() - 4 - tag) / 2;
    rec[mid] ^= 0x10;
}

fn end(mut r: BufReader<TcpStream>, w: &TcpStream) {
    let _ = w.shutdown(Shutdown::Write);
    let _ = std::io::copy(&mut r, &mut std::io::sink());
}

/// Client to server: the plain phase up to XBLACKPONY, the client's
/// handshake message (RSA-BLOWFISH's ClientKey, v2 XX's msg3; none for
/// v2 IK), then records, attacked by the client-side attacks.
fn attack_up(
    mut r: BufReader<TcpStream>,
    mut w: TcpStream,
    attack: Attack,
    at: usize,
    cap: &Mutex<Capture>,
    log: &Mutex<RecordLog>,
) {
    let mut seen = Vec::new();
    let Some(line) = forward_lines(&mut r, &mut w, b"XBLACKPONY", &mut seen) else {
        cap.lock().unwrap().up.append(&mut seen);
        return end(r, &w);
    };
    let suite = line.split_whitespace().nth(1).unwrap_or("").to_string();
    log.lock().unwrap().suite = suite.clone();
    let tag = tag_len(&suite);
    let ok = (0..client_messages(&line)).all(|_| forward_message(&mut r, &mut w, &mut seen));
    cap.lock().unwrap().up.append(&mut seen);
    if !ok {
        return end(r, &w);
    }
    let mut held: Option<Vec<u8>> = None;
    let mut idx = 0;
    while let Some(mut rec) = read_record(&mut r, tag) {
        cap.lock().unwrap().up.extend_from_slice(&rec);
        let mut out: Vec<Vec<u8>> = Vec::new();
        {
            let mut l = log.lock().unwrap();
            l.c2s_records += 1;
            l.last_c2s = Some(rec.clone());
            let here = idx == at;
            match attack {
                Attack::FlipBit if here => {
                    flip(&mut rec, tag);
                    l.tampered = true;
                    out.push(rec);
                }
                Attack::Drop if here => l.tampered = true,
                Attack::Replay if here => {
                    l.tampered = true;
                    out.push(rec.clone());
                    out.push(rec);
                }
                Attack::Reorder if here => held = Some(rec),
                Attack::Reorder if idx == at + 1 => {
                    l.tampered = true;
                    out.push(rec);
                    out.extend(held.take());
                }
                Attack::Truncate if here => {
                    l.tampered = true;
                    drop(l);
                    return end(r, &w);
                }
                Attack::ReflectToServer if here => {
                    let own = l.last_s2c.clone().expect("a server record to reflect");
                    l.tampered = true;
                    out.push(own);
                    out.push(rec);
                }
                _ => out.push(rec),
            }
        }
        idx += 1;
        for o in out {
            if w.write_all(&o).is_err() {
                return end(r, &w);
            }
        }
    }
    let _ = w.shutdown(Shutdown::Write);
}

/// Server to client: the plain phase up to the go-ahead, the server's
/// handshake messages (one for v2, two for RSA-BLOWFISH), then records, attacked by the server-side attacks.
fn attack_down(
    mut r: BufReader<TcpStream>,
    mut w: TcpStream,
    attack: Attack,
    at: usize,
    cap: &Mutex<Capture>,
    log: &Mutex<RecordLog>,
) {
    let mut seen = Vec::new();
    let go_ahead = forward_lines(&mut r, &mut w, b"220 2.0.0 Go ahead", &mut seen);
    let switched = go_ahead.as_deref().is_some_and(|line| {
        (0..server_messages(line)).all(|_| forward_message(&mut r, &mut w, &mut seen))
    });
    cap.lock().unwrap().down.append(&mut seen);
    if switched {
        let noise = go_ahead.is_some_and(|l| l.to_ascii_uppercase().contains(NOISE));
        let tag = if noise { tag_len(NOISE) } else { tag_len("") };
        let mut idx = 0;
        while let Some(mut rec) = read_record(&mut r, tag) {
            cap.lock().unwrap().down.extend_from_slice(&rec);
            let send = {
                let mut l = log.lock().unwrap();
                l.s2c_records += 1;
                l.last_s2c = Some(rec.clone());
                match attack {
                    Attack::ReflectToClient if idx == at => {
                        l.tampered = true;
                        l.last_c2s.clone().expect("a client record to reflect")
                    }
                    Attack::FlipToClient if idx == at => {
                        l.tampered = true;
                        flip(&mut rec, tag);
                        rec
                    }
                    _ => rec,
                }
            };
            idx += 1;
            if w.write_all(&send).is_err() {
                break;
            }
        }
    }
    end(r, &w);
}

// --------------------------------------------------------- handshake attacks

/// Remember `m` as the latest message `idx`, and return what to send in
/// its place: `m` itself unless `hit`, else `m` attacked.
fn attack_message(
    log: &Mutex<RecordLog>,
    idx: usize,
    mut m: Vec<u8>,
    hit: bool,
    a: HsAttack,
) -> Vec<u8> {
    let mut l = log.lock().unwrap();
    let prev = l.msgs[idx].replace(m.clone());
    if !hit || m.is_empty() {
        return m;
    }
    match a {
        HsAttack::Flip => {
            let mid = m.len() / 2;
            m[mid] ^= 0x10;
        }
        HsAttack::Truncate => {
            m.pop();
        }
        HsAttack::Stale => match prev {
            Some(p) => m = p,
            None => return m,
        },
    }
    l.tampered = true;
    m
}

/// Read one frame (type, u16 length, body); `None` at EOF.
fn read_frame(r: &mut BufReader<TcpStream>) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head).ok()?;
    let mut body = vec![0u8; u16::from_be_bytes([head[1], head[2]]).into()];
    r.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&(body.len() as u16).to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Everything left, forwarded as it comes and recorded by `seen`.
fn copy_rest(mut r: BufReader<TcpStream>, mut w: TcpStream, mut seen: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n @ 1..) = r.read(&mut buf) {
        seen(&buf[..n]);
        if w.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = w.shutdown(Shutdown::Write);
    let _ = std::io::copy(&mut r, &mut std::io::sink());
}

/// Client to server: plain lines up to a v2 XBLACKPONY line, whose msg1 may
/// be attacked; then, for XX, msg3 (the next frame of type 4), which may be
/// attacked; then the rest as it is.
fn hs_up(
    mut r: BufReader<TcpStream>,
    mut w: TcpStream,
    msg: Msg,
    attack: HsAttack,
    cap: &Mutex<Capture>,
    log: &Mutex<RecordLog>,
) {
    use base64ct::{Base64, Encoding};
    // Only the first msg1 of the connection is attacked (an XX after a
    // refused IK is the client starting over).
    let mut first = true;
    loop {
        let mut line = Vec::new();
        if matches!(r.read_until(b'\n', &mut line), Ok(0) | Err(_)) {
            return end(r, &w);
        }
        cap.lock().unwrap().up.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).into_owned();
        let words: Vec<&str> = text.split_whitespace().collect();
        let v2 = words.len() == 4
            && words[0].eq_ignore_ascii_case("XBLACKPONY")
            && words[1].eq_ignore_ascii_case(NOISE);
        if !v2 {
            if w.write_all(&line).is_err() {
                return end(r, &w);
            }
            continue;
        }
        {
            let mut l = log.lock().unwrap();
            l.suite = words[1].to_string();
            l.pattern = words[2].to_ascii_uppercase();
        }
        let m1 = Base64::decode_vec(words[3]).unwrap_or_default();
        let m1 = attack_message(log, 0, m1, first && msg == Msg::One, attack);
        first = false;
        let out = format!(
            "{} {} {} {}\r\n",
            words[0],
            words[1],
            words[2],
            Base64::encode_string(&m1)
        );
        if w.write_all(out.as_bytes()).is_err() {
            return end(r, &w);
        }
        if !words[2].eq_ignore_ascii_case("XX") {
            // IK, or a server that refused: more lines may follow (XX
            // after a 454); go on reading lines.
            if words[2].eq_ignore_ascii_case("IK") {
                let next = r.fill_buf().ok().and_then(|b| b.first().copied());
                if next.is_some_and(|b| b.is_ascii_uppercase()) {
                    continue;
                }
            }
            break;
        }
        // XX: msg3 comes next unless the server refused (then a command line).
        if r.fill_buf().ok().and_then(|b| b.first().copied()) != Some(4) {
            continue;
        }
        let Some((kind, m3)) = read_frame(&mut r) else {
            return end(r, &w);
        };
        cap.lock().unwrap().up.extend_from_slice(&frame(kind, &m3));
        let m3 = attack_message(log, 2, m3, msg == Msg::Three, attack);
        if w.write_all(&frame(kind, &m3)).is_err() {
            return end(r, &w);
        }
        break;
    }
    copy_rest(r, w, |b| cap.lock().unwrap().up.extend_from_slice(b));
}

/// Server to client: plain lines up to a v2 go-ahead, then msg2, which may
/// be attacked; then the rest as it is. A refusal (454 to an IK msg1) is
/// forwarded and the next go-ahead awaited.
fn hs_down(
    mut r: BufReader<TcpStream>,
    mut w: TcpStream,
    msg: Msg,
    attack: HsAttack,
    cap: &Mutex<Capture>,
    log: &Mutex<RecordLog>,
) {
    let mut seen = Vec::new();
    let go = forward_lines(&mut r, &mut w, b"220 2.0.0 Go ahead", &mut seen);
    cap.lock().unwrap().down.append(&mut seen);
    let Some(go) = go else {
        return end(r, &w);
    };
    if go.to_ascii_uppercase().contains(NOISE) {
        let Some((kind, m2)) = read_frame(&mut r) else {
            return end(r, &w);
        };
        cap.lock()
            .unwrap()
            .down
            .extend_from_slice(&frame(kind, &m2));
        let m2 = attack_message(log, 1, m2, msg == Msg::Two, attack);
        if w.write_all(&frame(kind, &m2)).is_err() {
            return end(r, &w);
        }
    }
    copy_rest(r, w, |b| cap.lock().unwrap().down.extend_from_slice(b));
}
