//! A real DNS server for the tests: dnsmasq from Debian's packages, run as a
//! child on a free loopback port, answering from records given on its
//! command line. A missing dnsmasq fails the tests rather than skipping
//! them, so CI cannot pass without having run them.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn dnsmasq_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("dnsmasq"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "dnsmasq not found in PATH or /usr/sbin: run scripts/install-test-deps.sh \
                 (it installs Debian's dnsmasq-base)"
            )
        })
}

/// A running dnsmasq, killed and reaped when dropped.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dnsmasq {
    /// Serve `records` (dnsmasq options such as `--mx-host=...`); they must
    /// give `ready.test` an address, which is how readiness is probed.
    pub fn start<S: AsRef<str>>(records: &[S]) -> Dnsmasq {
        let binary = dnsmasq_binary();
        // The port is free when we look and could be taken before dnsmasq
        // binds it (by a parallel test, say): then dnsmasq exits, and we
        // try another.
        let mut why = String::new();
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .expect("bind a UDP socket")
                .port();
            let mut child = Command::new(&binary)
                .args([
                    "--no-daemon",
                    "--no-resolv",
                    "--no-hosts",
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--conf-file=/dev/null",
                    "--log-facility=-",
                ])
                .arg(format!("--port={port}"))
                .args(records.iter().map(|r| r.as_ref()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_ready(&mut child, addr) {
                Ok(()) => return Dnsmasq { child, addr },
                Err(e) => why = e,
            }
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            why = format!("{why}; dnsmasq said: {stderr}");
        }
        panic!("dnsmasq did not start: {why}");
    }
}

/// True if `addr` answers an A query for ready.test with an address. The
/// query is built here, not by the library under test.
fn answers(addr: SocketAddr) -> bool {
    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    // id 0x5e1f, RD, one question: ready.test IN A.
    let q =
        b"\x5e\x1f\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ready\x04test\x00\x00\x01\x00\x01";
    if s.send_to(q, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    match s.recv(&mut buf) {
        // Our id, a response, RCODE 0, at least one answer.
        Ok(n) => {
            n >= 12 && buf[..2] == q[..2] && buf[2] & 0x80 != 0 && buf[3] & 0x0f == 0 && buf[7] > 0
        }
        Err(_) => false,
    }
}

/// Waits until dnsmasq answers; fails if it exits (port taken) or is slow.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if answers(addr) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err("no answer within 10 s".into())
}
