//! Logging that never touches stdout or stderr: under inetd both are the
//! client's socket, under sendmail both are the SMTP pipe. Logs go to syslog
//! (/dev/log) or to a file; if neither works they are dropped, never written
//! to the socket. RUST_LOG sets the level (default: info).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Sends each log line as one syslog datagram (facility mail).
struct Syslog {
    sock: UnixDatagram,
    tag: String,
    line: Vec<u8>,
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(i) = self.line.iter().position(|&b| b == b'\n') {
            let msg: Vec<u8> = self.line.drain(..=i).collect();
            // <22> = facility mail (2) * 8 + severity info (6). The level is in the text.
            let mut dgram = format!("<22>{}[{}]: ", self.tag, std::process::id()).into_bytes();
            dgram.extend_from_slice(&msg[..msg.len() - 1]);
            let _ = self.sock.send(&dgram);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Set up logging for program `tag`: to `file` if given, else to syslog.
/// Also routes panics into the log instead of stderr.
pub fn init(tag: &str, file: Option<&Path>) -> Result<(), String> {
    let target: Box<dyn Write + Send> = match file {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?,
        ),
        None => match UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|_| s)) {
            Ok(sock) => Box::new(Syslog {
                sock,
                tag: tag.to_string(),
                line: Vec::new(),
            }),
            Err(_) => Box::new(io::sink()),
        },
    };
    let with_time = file.is_some();
    let tag_owned = tag.to_string();
    let pid = std::process::id();
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .parse_env("RUST_LOG")
        .format(move |buf, record| {
            if with_time {
                write!(buf, "{} {}[{}]: ", utc_timestamp(), tag_owned, pid)?;
            }
            writeln!(
                buf,
                "{}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            )
        })
        .target(env_logger::Target::Pipe(target))
        .try_init()
        .map_err(|e| e.to_string())?;
    std::panic::set_hook(Box::new(|info| {
        log::error!("internal error (panic): {info}");
    }));
    Ok(())
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Howard Hinnant's days-to-civil: days since 1970-01-01 to (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
