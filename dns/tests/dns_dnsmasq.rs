//! The DNS client against a real DNS server: dnsmasq (the core's tests/support/dnsmasq.rs),
//! answering from the records below.

/// The dnsmasq starter the core's tests use too.
#[path = "../../tests/support/dnsmasq.rs"]
mod dnsmasq;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use dnsmasq::Dnsmasq;

use blackpony_dns::{
    build_query, parse_response, resolve_targets, DnsError, MxAnswer, Resolver, TYPE_MX,
};

const TIMEOUT: Duration = Duration::from_millis(500);
/// MX hosts of big.test: enough that the answer exceeds 512 bytes.
const BIG_MX_COUNT: usize = 40;

/// The records every test server serves. Everything under .test that is
/// not listed here is NXDOMAIN (`--local`).
fn records() -> Vec<String> {
    let mut args: Vec<String> = [
        "--local=/test/",
        "--host-record=ready.test,127.0.0.1",
        // Three MX hosts with distinct preferences, given out of order.
        "--mx-host=order.test,mx20.order.test,20",
        "--mx-host=order.test,mx10.order.test,10",
        "--mx-host=order.test,mx30.order.test,30",
        "--host-record=mx10.order.test,192.0.2.10,2001:db8::10",
        "--host-record=mx20.order.test,192.0.2.20",
        "--host-record=mx30.order.test,192.0.2.30",
        // Two MX hosts of equal preference.
        "--mx-host=equal.test,e1.equal.test,10",
        "--mx-host=equal.test,e2.equal.test,10",
        "--host-record=e1.equal.test,192.0.2.41",
        "--host-record=e2.equal.test,192.0.2.42",
        // No MX, only an address: implicit MX.
        "--host-record=implicit.test,192.0.2.50",
        "--cname=alias.test,implicit.test",
        // RFC 7505 null MX.
        "--mx-host=null.test,.,0",
        // One MX host that does not exist, one that does.
        "--mx-host=partial.test,gone.partial.test,5",
        "--mx-host=partial.test,ok.partial.test,10",
        "--host-record=ok.partial.test,192.0.2.60",
        // Only MX hosts that do not exist.
        "--mx-host=allgone.test,gone.allgone.test,10",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..BIG_MX_COUNT {
        args.push(format!(
            "--mx-host=big.test,mail-exchanger-number-{i:02}.example-of-a-long-name.big.test,{i}"
        ));
    }
    args
}

fn start() -> Dnsmasq {
    Dnsmasq::start(&records())
}

fn resolver(dns: &Dnsmasq) -> Resolver {
    Resolver::with_servers(vec![dns.addr], TIMEOUT)
}

fn addrs(targets: &[blackpony_dns::Target]) -> Vec<(String, SocketAddr)> {
    targets
        .iter()
        .map(|t| (t.mx_host.clone(), t.addr))
        .collect()
}

fn target(host: &str, addr: &str) -> (String, SocketAddr) {
    (host.to_string(), addr.parse().unwrap())
}

#[test]
fn mx_hosts_in_preference_order_each_with_a_then_aaaa() {
    let dns = start();
    let targets = resolve_targets(&resolver(&dns), "order.test", 25).unwrap();
    assert_eq!(
        addrs(&targets),
        [
            target("mx10.order.test", "192.0.2.10:25"),
            target("mx10.order.test", "[2001:db8::10]:25"),
            target("mx20.order.test", "192.0.2.20:25"),
            target("mx30.order.test", "192.0.2.30:25"),
        ]
    );
}

#[test]
fn equal_preferences_come_in_both_orders() {
    let dns = start();
    let resolver = resolver(&dns);
    let mut orders = HashSet::new();
    for _ in 0..40 {
        let MxAnswer::Hosts(hosts) = resolver.lookup_mx("equal.test").unwrap() else {
            panic!("equal.test has MX hosts");
        };
        let names: Vec<String> = hosts.into_iter().map(|h| h.host).collect();
        assert_eq!(names.len(), 2);
        orders.insert(names);
    }
    assert_eq!(orders.len(), 2, "saw only {orders:?}");
}

#[test]
fn domain_without_mx_is_its_own_mx() {
    let dns = start();
    let resolver = resolver(&dns);
    assert_eq!(resolver.lookup_mx("implicit.test").unwrap(), MxAnswer::NoMx);
    let targets = resolve_targets(&resolver, "implicit.test", 2525).unwrap();
    assert_eq!(
        addrs(&targets),
        [target("implicit.test", "192.0.2.50:2525")]
    );
}

#[test]
fn cname_is_followed() {
    let dns = start();
    assert_eq!(
        resolver(&dns).lookup_addrs("alias.test").unwrap(),
        ["192.0.2.50".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn bracketed_host_skips_mx() {
    let dns = start();
    // order.test has MX records but no address of its own: with brackets
    // the MX must not be used.
    let resolver = resolver(&dns);
    let err = resolve_targets(&resolver, "[order.test]", 25).unwrap_err();
    assert!(matches!(err, DnsError::Temporary(_)), "{err:?}");
    let targets = resolve_targets(&resolver, "[mx20.order.test]", 25).unwrap();
    assert_eq!(
        addrs(&targets),
        [target("mx20.order.test", "192.0.2.20:25")]
    );
}

#[test]
fn null_mx_is_permanent() {
    let dns = start();
    let resolver = resolver(&dns);
    assert_eq!(resolver.lookup_mx("null.test").unwrap(), MxAnswer::NullMx);
    let err = resolve_targets(&resolver, "null.test", 25).unwrap_err();
    assert_eq!(err, DnsError::NullMx);
    assert!(err.is_permanent());
}

#[test]
fn nxdomain_is_permanent() {
    let dns = start();
    let err = resolve_targets(&resolver(&dns), "no-such-domain.test", 25).unwrap_err();
    assert_eq!(err, DnsError::NxDomain);
    assert!(err.is_permanent());
}

#[test]
fn unresolvable_mx_host_is_skipped() {
    let dns = start();
    let resolver = resolver(&dns);
    let targets = resolve_targets(&resolver, "partial.test", 25).unwrap();
    assert_eq!(
        addrs(&targets),
        [target("ok.partial.test", "192.0.2.60:25")]
    );
    // With no MX host left the failure is temporary: the domain's DNS may
    // be repaired before the message expires.
    let err = resolve_targets(&resolver, "allgone.test", 25).unwrap_err();
    assert!(matches!(err, DnsError::Temporary(_)), "{err:?}");
}

#[test]
fn truncated_udp_answer_is_asked_again_over_tcp() {
    let dns = start();
    // First show that dnsmasq really truncates this answer over UDP...
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket
        .send_to(&build_query(7, "big.test", TYPE_MX).unwrap(), dns.addr)
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).unwrap();
    let udp = parse_response(&buf[..n], 7, "big.test", TYPE_MX).unwrap();
    assert!(udp.truncated, "dnsmasq did not set TC ({n} bytes)");
    // ...then that the resolver still gets every MX host, over TCP.
    let MxAnswer::Hosts(hosts) = resolver(&dns).lookup_mx("big.test").unwrap() else {
        panic!("big.test has MX hosts");
    };
    assert_eq!(hosts.len(), BIG_MX_COUNT);
    let prefs: Vec<u16> = hosts.iter().map(|h| h.preference).collect();
    assert!(prefs.windows(2).all(|w| w[0] < w[1]), "{prefs:?}");
}

#[test]
fn silent_nameserver_times_out_as_temporary() {
    // Bound, so no ICMP error comes back, and never answering.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = Resolver::with_servers(vec![silent.local_addr().unwrap()], TIMEOUT);
    let started = Instant::now();
    let err = resolver.lookup_mx("order.test").unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, DnsError::Temporary(_)), "{err:?}");
    assert!(!err.is_permanent());
    // Two attempts of TIMEOUT each, and not much more.
    assert!(took >= TIMEOUT * 2, "gave up after {took:?}");
    assert!(took < TIMEOUT * 2 + Duration::from_secs(2), "took {took:?}");
}

#[test]
fn silent_nameserver_is_passed_over_for_the_next() {
    let dns = start();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = Resolver::with_servers(vec![silent.local_addr().unwrap(), dns.addr], TIMEOUT);
    let targets = resolve_targets(&resolver, "implicit.test", 25).unwrap();
    assert_eq!(addrs(&targets), [target("implicit.test", "192.0.2.50:25")]);
}
