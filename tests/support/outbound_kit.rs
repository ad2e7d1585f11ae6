//! Test parts for tests/outbound.rs only: the test domains dnsmasq serves,
//! and port reservation across 127.0.0.x (the SMTP server, the
//! mailer driver and the relay are the shared ones in tests/support).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

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
];

/// dnsmasq serving [`RECORDS`].
pub fn test_dns() -> Dnsmasq {
    Dnsmasq::start(RECORDS)
}
