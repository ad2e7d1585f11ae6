//! Logging that never touches stdout or stderr: under inetd both are the
//! client's socket, under sendmail both are the SMTP pipe. Logs go to syslog
//! (/dev/log) or to a file; if neither works they are dropped, never written
//! to the socket. RUST_LOG sets the level (default: info).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Sends each log line as one syslog datagram (facility mail). The format
/// function has already put the `<PRI>tag[pid]: ` header in front, because
/// only it knows the record's level.
struct Syslog {
    sock: UnixDatagram,
    line: Vec<u8>,
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(i) = self.line.iter().position(|&b| b == b'\n') {
            let msg: Vec<u8> = self.line.drain(..=i).collect();
            let _ = self.sock.send(&msg[..msg.len() - 1]);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The syslog priority of a record: facility mail (2) * 8 + the severity
/// its level maps to, so `mail.err` filters see errors.
fn syslog_priority(level: log::Level) -> u8 {
    16 + match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
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
                line: Vec::new(),
            }),
            Err(_) => Box::new(io::sink()),
        },
    };
    let to_syslog = file.is_none();
    let tag_owned = tag.to_string();
    let pid = std::process::id();
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .parse_env("RUST_LOG")
        .format(move |buf, record| {
            if to_syslog {
                let pri = syslog_priority(record.level());
                write!(buf, "<{pri}>{tag_owned}[{pid}]: ")?;
            } else {
                let now = crate::clock::utc_timestamp();
                write!(buf, "{now} {tag_owned}[{pid}]: ")?;
            }
            let level = record.level().as_str().to_ascii_lowercase();
            writeln!(buf, "{level}: {}", record.args())
        })
        .target(env_logger::Target::Pipe(target))
        .try_init()
        .map_err(|e| e.to_string())?;
    std::panic::set_hook(Box::new(|info| {
        log::error!("internal error (panic): {info}");
    }));
    Ok(())
}

/// From now on a panic is logged, `line` (if any) is written to stdout, and
/// the process exits with `code`: the mailer's bug then defers the message
/// (75), where sendmail and pipe(8) would take 101 as a permanent failure.
/// Call it after [`init`], which installs the log-only hook.
pub fn exit_on_panic(line: Option<&'static str>, code: i32) {
    std::panic::set_hook(Box::new(move |info| {
        log::error!("internal error (panic): {info}");
        if let Some(l) = line {
            let mut out = io::stdout();
            let _ = out.write_all(l.as_bytes());
            let _ = out.flush();
        }
        std::process::exit(code);
    }));
}
