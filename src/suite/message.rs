//! Handshake message framing after the switch: type(u8) || length(u16 BE) || body.

use std::io::{self, Read};

use crate::limits::MAX_HANDSHAKE_MESSAGE;
use crate::wire::record::record_error;

pub const SERVER_HELLO: u8 = 1;
pub const CLIENT_KEY: u8 = 2;
pub const SERVER_FINISHED: u8 = 3;

pub fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    assert!(body.len() <= MAX_HANDSHAKE_MESSAGE);
    let mut m = Vec::with_capacity(3 + body.len());
    m.push(kind);
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The body of a framed message, if its header names `kind` and its length
/// matches: every step checks the frame it is given, not only the reader.
pub fn body(msg: &[u8], kind: u8) -> Option<&[u8]> {
    let (head, body) = (msg.get(..3)?, msg.get(3..)?);
    (head[0] == kind && u16::from_be_bytes([head[1], head[2]]) as usize == body.len())
        .then_some(body)
}

/// Read one message of the expected type; returns the whole framed message
/// (for the transcript). Length is checked before allocating; any mismatch is
/// the same opaque error as a record failure.
pub fn read<R: Read>(r: &mut R, kind: u8) -> io::Result<Vec<u8>> {
    let mut head = [0u8; 3];
    r.read_exact(&mut head)?;
    let len = u16::from_be_bytes([head[1], head[2]]) as usize;
    if head[0] != kind || len > MAX_HANDSHAKE_MESSAGE {
        return Err(record_error());
    }
    let mut m = vec![0u8; 3 + len];
    m[..3].copy_from_slice(&head);
    r.read_exact(&mut m[3..])?;
    Ok(m)
}
