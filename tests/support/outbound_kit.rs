//! Test parts for tests/outbound.rs only: the test domains dnsmasq serves,
//! and port reservation across 127.0.0.x (the SMTP server, the
//! mailer driver and the relay are the shared ones in tests/support).

use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::support::{Daemon, Dnsmasq};

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

/// One port, bound on several loopback addresses at once: listeners on the
/// `live` addresses, and on the `dead` ones a socket that is bound but not
/// listening (a connection there is refused, and nobody else can take it).
pub struct Ports {
    pub port: u16,
    pub listeners: Vec<TcpListener>,
    _held: Vec<socket2::Socket>,
    _reservation: TcpListener,
}

pub fn lo(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

pub fn reserve(live: &[Ipv4Addr], dead: &[Ipv4Addr]) -> Ports {
    'again: for _ in 0..50 {
        let reservation = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = reservation.local_addr().unwrap().port();
        let mut listeners = Vec::new();
        for ip in live {
            match TcpListener::bind((*ip, port)) {
                Ok(l) => listeners.push(l),
                Err(_) => continue 'again,
            }
        }
        let mut held = Vec::new();
        for ip in dead {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            if s.bind(&SocketAddr::from((*ip, port)).into()).is_err() {
                continue 'again;
            }
            held.push(s);
        }
        return Ports {
            port,
            listeners,
            _held: held,
            _reservation: reservation,
        };
    }
    panic!("no port free on all of {live:?} {dead:?}");
}

impl Ports {
    /// The listener bound on `ip`.
    pub fn take(&mut self, ip: Ipv4Addr) -> TcpListener {
        let i = self
            .listeners
            .iter()
            .position(|l| l.local_addr().unwrap().ip() == ip)
            .unwrap();
        self.listeners.remove(i)
    }
}

// ---------------------------------------------------------------------------
// An MX that can be taken down
// ---------------------------------------------------------------------------

/// Forwards every connection on `listener` to a backend, until [`Gate::close`]
/// drops the listener: from then on a connection to its address is refused
/// by the kernel (the attacker who blocks the pinned MX).
pub struct Gate {
    open: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Gate {
    pub fn on(listener: TcpListener, backend: SocketAddr) -> Gate {
        listener.set_nonblocking(true).unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&open);
        let thread = thread::spawn(move || {
            while flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        thread::spawn(move || forward(client, backend));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            // `listener` drops here: the port stops listening.
        });
        Gate {
            open,
            thread: Some(thread),
        }
    }

    /// Stop listening; returns once connections are refused.
    pub fn close(&mut self) {
        self.open.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.close();
    }
}

fn forward(client: TcpStream, backend: SocketAddr) {
    let Ok(server) = TcpStream::connect(backend) else {
        return;
    };
    let pump = |mut from: TcpStream, mut to: TcpStream| {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = thread::spawn(move || pump(c2, s2));
    pump(server, client);
    let _ = up.join();
}

// ---------------------------------------------------------------------------
// blackpony --listen on a given listener's address
// ---------------------------------------------------------------------------

/// The suite these tests negotiate.
pub const SUITE: &str = "RSA-BLOWFISH";

/// `blackpony --listen` with `key`, offering [`SUITE`] only, on a free port
/// in front of `backend`.
pub fn inbound(backend: SocketAddr, key: &Path, log: &Path) -> (Daemon, SocketAddr) {
    crate::support::start_inbound(
        backend,
        &["--key", key.to_str().unwrap(), "--suites", SUITE],
        log,
    )
}

// ---------------------------------------------------------------------------
// dnsmasq
// ---------------------------------------------------------------------------

/// The test domains. Everything else under .test is NXDOMAIN (`--local`).
/// Mail goes to 127.0.0.x; 127.0.0.2 is where nothing listens.
pub const DOWN: u8 = 2;
const RECORDS: &[&str] = &[
    "--local=/test/",
    "--host-record=ready.test,127.0.0.1",
    // Preference order, given out of order: mx10 gets the mail.
    "--mx-host=pref.test,mx30.pref.test,30",
    "--mx-host=pref.test,mx10.pref.test,10",
    "--mx-host=pref.test,mx20.pref.test,20",
    "--host-record=mx10.pref.test,127.0.0.4",
    "--host-record=mx20.pref.test,127.0.0.3",
    "--host-record=mx30.pref.test,127.0.0.5",
    // The best MX is down.
    "--mx-host=down.test,mx1.down.test,10",
    "--mx-host=down.test,mx2.down.test,20",
    "--host-record=mx1.down.test,127.0.0.2",
    "--host-record=mx2.down.test,127.0.0.3",
    // The best MX greets with 421.
    "--mx-host=busy.test,mx1.busy.test,10",
    "--mx-host=busy.test,mx2.busy.test,20",
    "--host-record=mx1.busy.test,127.0.0.4",
    "--host-record=mx2.busy.test,127.0.0.5",
    // No MX, an address: implicit MX.
    "--host-record=implicit.test,127.0.0.6",
    // RFC 7505 null MX.
    "--mx-host=null.test,.,0",
    // Every MX down or busy.
    "--mx-host=dead.test,mx1.dead.test,10",
    "--mx-host=dead.test,mx2.dead.test,20",
    "--host-record=mx1.dead.test,127.0.0.2",
    "--host-record=mx2.dead.test,127.0.0.4",
    // An MX host without an address.
    "--mx-host=allgone.test,gone.allgone.test,10",
    // Two domains, one MX host: the policy file names one of them.
    "--mx-host=example.test,mx.example.test,10",
    "--mx-host=other.test,mx.example.test,10",
    "--host-record=mx.example.test,127.0.0.7",
    // Two MX hosts of equal preference: both get mail.
    "--mx-host=equal.test,e1.equal.test,10",
    "--mx-host=equal.test,e2.equal.test,10",
    "--host-record=e1.equal.test,127.0.0.3",
    "--host-record=e2.equal.test,127.0.0.5",
    // The best MX accepts the connection and never greets.
    "--mx-host=hang.test,mx1.hang.test,10",
    "--mx-host=hang.test,mx2.hang.test,20",
    "--host-record=mx1.hang.test,127.0.0.6",
    "--host-record=mx2.hang.test,127.0.0.3",
    // An MX that runs blackpony.
    "--mx-host=secure.test,mx.secure.test,10",
    "--host-record=mx.secure.test,127.0.0.8",
    // Two MX for one domain, for pins per destination: mx1 gets the mail
    // (and the pin) while it is up; then it is blocked and mx2 is tried.
    "--mx-host=pinned.test,mx1.pinned.test,10",
    "--mx-host=pinned.test,mx2.pinned.test,20",
    "--host-record=mx1.pinned.test,127.0.0.9",
    "--host-record=mx2.pinned.test,127.0.0.10",
];

/// dnsmasq serving [`RECORDS`].
pub fn test_dns() -> Dnsmasq {
    Dnsmasq::start(RECORDS)
}
