//! Writes one whole SMTP session to stdout, for blackpony-mailer's stdin (the
//! side sendmail would speak): EHLO, MAIL, RCPT, DATA, an N-byte message, the
//! dot, QUIT. The mailer reads its commands one at a time, so a pipelined
//! session is the same dialogue sendmail has with it, minus sendmail.
//!
//! The message: the anchor's headers, then 80-byte lines (78 letters + CRLF),
//! cut to exactly N bytes and ending in CRLF. No line starts with a dot, so
//! no stuffing: the sink's `size=` equals N.
//!
//! usage: bpfeed --size N[k|K|M|G] [--messages M]   (K = 1024, M = 2^20, G = 2^30)
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

const HEADERS: &[u8] = b"From: bench <bench@client.e2e.test>\r\nTo: sink <sink@remote.test>\r\nSubject: blackpony bench\r\nMessage-ID: <bench@client.e2e.test>\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\n\r\n";

pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn line() -> Vec<u8> {
    let mut l: Vec<u8> = (0..78).map(|i| b'A' + (i % 26) as u8).collect();
    l.extend_from_slice(b"\r\n");
    l
}

/// The message body: `size - HEADERS.len()` bytes of lines, ending in CRLF.
fn write_message(out: &mut impl Write, size: u64) -> io::Result<()> {
    out.write_all(HEADERS)?;
    let mut left = size.saturating_sub(HEADERS.len() as u64);
    let l = line();
    let block: Vec<u8> = l.repeat(13107); // 1048560 bytes, whole lines
    while left >= block.len() as u64 + 2 {
        out.write_all(&block)?;
        left -= block.len() as u64;
    }
    while left >= 80 + 2 {
        out.write_all(&l)?;
        left -= 80;
    }
    // The rest: a short last line (at least the CRLF).
    if left >= 2 {
        let n = (left - 2) as usize;
        out.write_all(&l[..n])?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(size) = get("--size").and_then(|s| parse_size(&s)) else {
        eprintln!("usage: bpfeed --size N[K|M|G] [--messages M]");
        std::process::exit(2);
    };
    let messages: u64 = get("--messages").and_then(|m| m.parse().ok()).unwrap_or(1);
    // Raw fd 1, not std's line-buffered stdout (one syscall per line).
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .expect("stdout fd");
    let mut out = io::BufWriter::with_capacity(1 << 20, File::from(fd));
    let r = (|| -> io::Result<()> {
        out.write_all(b"EHLO client.e2e.test\r\n")?;
        for _ in 0..messages {
            out.write_all(
                b"MAIL FROM:<bench@client.e2e.test>\r\nRCPT TO:<sink@remote.test>\r\nDATA\r\n",
            )?;
            write_message(&mut out, size)?;
            out.write_all(b".\r\n")?;
        }
        out.write_all(b"QUIT\r\n")?;
        out.flush()
    })();
    if let Err(e) = r {
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("bpfeed: {e}");
            std::process::exit(1);
        }
    }
}
