//! The SMTP vocabulary through the public API: the bounded line reader
//! (`smtp::line`), reply parsing (`smtp::reply`), command verbs and BDAT
//! arguments (`smtp::command`) and the EHLO keyword (`smtp::ehlo`).

use std::io::{self, Read};

use blackpony::smtp::command::{arguments, bdat_args, verb, Verb};
use blackpony::smtp::ehlo::{add_keyword, offered_suites, strip_keyword};
use blackpony::smtp::line::{has_bare_newline, LineReader};
use blackpony::smtp::reply::{parse_line, read_reply, Reply};
use blackpony::Error;

/// A reader that returns at most `step` bytes per read.
struct Trickle<'a>(&'a [u8], usize);

impl Read for Trickle<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(self.1).min(b.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn reply(s: &str) -> Reply {
    read_reply(&mut LineReader::new(s.as_bytes()), "t").unwrap()
}

// ---- smtp::line ----

#[test]
fn lines_and_limits() {
    let mut r = LineReader::new(&b"EHLO a\r\nNOOP\r\n"[..]);
    assert_eq!(r.read_line(100, "t").unwrap(), b"EHLO a\r\n");
    assert_eq!(r.buffered(), b"NOOP\r\n");
    assert_eq!(r.read_line(100, "t").unwrap(), b"NOOP\r\n");
    assert!(matches!(r.read_line(100, "t"), Err(Error::Closed(_))));

    let long = vec![b'a'; 5000];
    let mut r = LineReader::new(&long[..]);
    assert!(matches!(r.read_line(4096, "t"), Err(Error::LineTooLong)));
    let mut r = LineReader::new(&b"abcdef\r\n"[..]);
    assert!(matches!(r.read_line(4, "t"), Err(Error::LineTooLong)));
}

#[test]
fn data_ends_at_crlf_dot_crlf_at_every_split() {
    let msg = b"Subject: x\r\n\r\n..stuffed\r\nbare\nlf\r\n.\r\nQUIT\r\n";
    let end = msg.len() - 6;
    for step in 1..msg.len() {
        let mut r = LineReader::new(Trickle(msg, step));
        let mut out = Vec::new();
        let n = r.copy_data(&mut out, false, "t").unwrap();
        assert_eq!(n as usize, end);
        assert_eq!(&out[..], &msg[..end]);
        assert_eq!(r.read_line(100, "t").unwrap(), b"QUIT\r\n");
    }
}

#[test]
fn smuggling_terminators_do_not_end_data() {
    for fake in [
        &b"x\n.\nMAIL\r\n.\r\n"[..],
        b"x\r.\rMAIL\r\n.\r\n",
        b"x\r\n.\nMAIL\r\n.\r\n",
        b"x\n.\r\nMAIL\r\n.\r\n",
    ] {
        let mut r = LineReader::new(fake);
        let mut out = Vec::new();
        r.copy_data(&mut out, false, "t").unwrap();
        assert_eq!(out, fake, "only CRLF.CRLF ends the data");
        let mut r = LineReader::new(fake);
        assert!(matches!(
            r.copy_data(&mut Vec::new(), true, "t"),
            Err(Error::BareNewline)
        ));
    }
}

/// The DATA scanner skips to the next CR or LF eight bytes at a time (a
/// private SWAR search). Its result must match a plain scan: with
/// `forbid_bare`, `copy_data` stops at the first bare CR/LF, so the bytes
/// it passed on say where the search landed. Every position and neighbour
/// byte, including bytes >= 0x80 and the ones one off CR/LF, which the
/// has-zero-byte test must not flag. Both line-start offsets put the run at
/// different alignments within the 8-byte words.
#[test]
fn data_scan_finds_every_bare_cr_or_lf() {
    let fill = [b'a', 0x80, 0x8d, 0x8a, 0xff, 0x0c, 0x0e, 0x0b, 0x09, 0x00];
    for lead in [&b"a"[..], b"abc"] {
        for len in 0..40 {
            for &f in &fill {
                for pos in 0..=len {
                    for hit in [b'\r', b'\n'] {
                        let mut v = vec![f; len];
                        if pos < len {
                            v[pos] = hit;
                        }
                        let msg = [lead, &v, b"\r\n.\r\n"].concat();
                        let mut out = Vec::new();
                        let got = LineReader::new(&msg[..]).copy_data(&mut out, true, "t");
                        let at = format!("lead {lead:?} len {len} fill {f:#x} pos {pos}");
                        match v.iter().position(|&b| b == b'\r' || b == b'\n') {
                            None => {
                                assert_eq!(got.unwrap() as usize, msg.len(), "{at}");
                                assert_eq!(out, msg, "{at}");
                            }
                            // A bare LF is refused at the LF, a bare CR at
                            // the byte after it (the CR is passed on).
                            Some(i) => {
                                assert!(matches!(got, Err(Error::BareNewline)), "{at}");
                                let stop = lead.len() + i + usize::from(v[i] == b'\r');
                                assert_eq!(out, &msg[..stop], "{at}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn bdat_exact() {
    let mut r = LineReader::with_prefix(&b"6789QUIT\r\n"[..], b"12345");
    let mut out = Vec::new();
    r.copy_exact(9, &mut out, "t").unwrap();
    assert_eq!(out, b"123456789");
    assert_eq!(r.read_line(100, "t").unwrap(), b"QUIT\r\n");
}

#[test]
fn bare_newline_detection() {
    for (line, bare) in [
        (&b"MAIL FROM:<a>\r\n"[..], false),
        (b"MAIL FROM:<a>\n", true),
        (b"MAIL\rFROM:<a>\r\n", true),
    ] {
        assert_eq!(has_bare_newline(line), bare, "{line:?}");
    }
}

// ---- smtp::reply ----

#[test]
fn reply_parses_multiline() {
    let mut r = LineReader::new(&b"250-a\r\n250-b\r\n250 c\r\n220 x\r\n"[..]);
    let rep = read_reply(&mut r, "t").unwrap();
    assert_eq!(rep.code, 250);
    assert_eq!(rep.lines.len(), 3);
    assert_eq!(rep.texts().collect::<Vec<_>>(), vec![&b"a"[..], b"b", b"c"]);
    assert_eq!(read_reply(&mut r, "t").unwrap().code, 220);
}

#[test]
fn reply_rejects_garbage() {
    for bad in [
        &b"25 x\r\n"[..],
        b"abc\r\n",
        b"250x\r\n",
        b"250-a\r\n251 b\r\n",
        b"650 x\r\n",
    ] {
        let mut r = LineReader::new(bad);
        assert!(
            read_reply(&mut r, "t").is_err(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(parse_line(b"354\r\n"), Some((354, false)));
}

// ---- smtp::command ----

#[test]
fn verbs() {
    for (line, want) in [
        (&b"ehlo x\r\n"[..], Verb::Ehlo),
        (b"MAIL FROM:<a@b>\r\n", Verb::Mail),
        (b"xblackpony ROT13\r\n", Verb::XBlackpony),
        (b"DATA\r\n", Verb::Data),
        (b"DATAX\r\n", Verb::Other),
        (b"STARTTLS\r\n", Verb::StartTls),
        (b"", Verb::Other),
    ] {
        assert_eq!(verb(line), want, "{line:?}");
    }
}

#[test]
fn bdat() {
    for (line, want) in [
        (&b"BDAT 100 LAST\r\n"[..], Some((100, true))),
        (b"BDAT 7\r\n", Some((7, false))),
        (b"BDAT x\r\n", None),
        (b"BDAT 1 LAST x\r\n", None),
        (b"BDAT 99999999999999999999\r\n", None),
    ] {
        assert_eq!(bdat_args(line), want, "{line:?}");
    }
}

#[test]
fn args() {
    assert_eq!(arguments(b"XBLACKPONY ROT13\r\n"), vec!["ROT13"]);
    assert_eq!(arguments(b"XBLACKPONY  A B\r\n"), vec!["A", "B"]);
}

// ---- smtp::ehlo ----

#[test]
fn keyword_added_to_multiline_and_single_line() {
    let mut r = reply("250-mx.example Hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    add_keyword(&mut r, "RSA-BLOWFISH");
    assert_eq!(
        r.to_bytes(),
        b"250-mx.example Hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 XBLACKPONY RSA-BLOWFISH\r\n"
    );
    let mut r = reply("250 mx.example\r\n");
    add_keyword(&mut r, "RSA-BLOWFISH ROT13");
    assert_eq!(
        r.to_bytes(),
        b"250-mx.example\r\n250 XBLACKPONY RSA-BLOWFISH ROT13\r\n"
    );
    assert_eq!(offered_suites(&r).as_deref(), Some("RSA-BLOWFISH ROT13"));
    // re-parse: still well formed
    assert_eq!(reply(std::str::from_utf8(&r.to_bytes()).unwrap()), r);
}

#[test]
fn keyword_not_added_to_errors() {
    let mut r = reply("502 5.5.1 no EHLO\r\n");
    add_keyword(&mut r, "RSA-BLOWFISH");
    assert_eq!(r.lines.len(), 1);
    assert_eq!(offered_suites(&r), None);
}

#[test]
fn keyword_stripped() {
    let mut r =
        reply("250-mx\r\n250-XBLACKPONY RSA-BLOWFISH\r\n250-SIZE 10\r\n250 xblackpony ROT13\r\n");
    strip_keyword(&mut r);
    assert_eq!(r.to_bytes(), b"250-mx\r\n250 SIZE 10\r\n");
    let mut r = reply("250 XBLACKPONY\r\n");
    strip_keyword(&mut r);
    assert_eq!(
        r.to_bytes(),
        b"250 XBLACKPONY\r\n",
        "the greeting line is never a keyword"
    );
}
