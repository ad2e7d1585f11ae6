//! The handshake field codec (`blackpony_wire::codec`): what the writer
//! writes the reader reads back, and no read runs past the end.

use blackpony_wire::codec::{Reader, Writer};

#[test]
fn codec_round_trip_and_bounds() {
    let mut w = Writer::new();
    w.u8(7).u16(513).vec16(b"abc").bytes(b"xy");
    let mut r = Reader::new(&w.buf);
    assert_eq!(r.u8(), Some(7));
    assert_eq!(r.u16(), Some(513));
    assert_eq!(r.vec16(), Some(&b"abc"[..]));
    assert_eq!(r.take(3), None);
    assert_eq!(r.take(2), Some(&b"xy"[..]));
    assert!(r.finish().is_some());

    let mut r = Reader::new(&[0xff, 0xff, 1]);
    assert_eq!(r.vec16(), None);
}
