//! ROTn: the cipher a person can do in their head, for testing by hand.
//! Letters A-Z and a-z rotate by n with case kept; every other byte is unchanged.

/// Rotate letters forward by `n` (1..=25) in place.
pub fn rotate(buf: &mut [u8], n: u8) {
    for b in buf {
        *b = match *b {
            b'a'..=b'z' => b'a' + (*b - b'a' + n) % 26,
            b'A'..=b'Z' => b'A' + (*b - b'A' + n) % 26,
            other => other,
        };
    }
}

/// Undo `rotate(buf, n)`.
pub fn unrotate(buf: &mut [u8], n: u8) {
    rotate(buf, 26 - n % 26);
}
