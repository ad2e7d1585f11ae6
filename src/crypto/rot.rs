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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rot13_is_its_own_inverse_and_keeps_case() {
        let mut b = b"Hello, World! 123 zZ".to_vec();
        rotate(&mut b, 13);
        assert_eq!(&b, b"Uryyb, Jbeyq! 123 mM");
        rotate(&mut b, 13);
        assert_eq!(&b, b"Hello, World! 123 zZ");
    }

    #[test]
    fn rot1_and_back() {
        let mut b = b"EHLO az".to_vec();
        rotate(&mut b, 1);
        assert_eq!(&b, b"FIMP ba");
        unrotate(&mut b, 1);
        assert_eq!(&b, b"EHLO az");
    }
}
