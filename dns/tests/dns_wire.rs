//! The DNS client without a DNS server: replies built byte by byte and fed
//! to the public parser, MX ordering, address literals and resolv.conf.
//! tests/dns_dnsmasq.rs runs the same client against a real server.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use blackpony_dns::{
    addresses, build_query, mx_answer, parse_destination, parse_response, read_name,
    resolve_targets, Destination, DnsError, MxAnswer, Resolver, TYPE_A, TYPE_CNAME, TYPE_MX,
};

const ID: u16 = 0x1234;
const CLASS_IN: u16 = 1;
/// A pointer to the question name, at offset 12.
const QPTR: [u8; 2] = [0xc0, 0x0c];

/// `name` in wire form, uncompressed.
fn wire(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A resource record of class IN, TTL 300, with raw owner and RDATA.
fn rr(owner: &[u8], rtype: u16, rdata: &[u8]) -> Vec<u8> {
    let mut r = owner.to_vec();
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&CLASS_IN.to_be_bytes());
    r.extend_from_slice(&300u32.to_be_bytes());
    r.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    r.extend_from_slice(rdata);
    r
}

fn mx_rdata(pref: u16, exchange: &[u8]) -> Vec<u8> {
    [&pref.to_be_bytes()[..], exchange].concat()
}

/// A reply with id [`ID`], the question, and the given answer records.
fn reply(flags: u16, qname: &str, qtype: u16, answers: &[Vec<u8>]) -> Vec<u8> {
    let mut b = ID.to_be_bytes().to_vec();
    b.extend_from_slice(&flags.to_be_bytes());
    b.extend_from_slice(&[0, 1]);
    b.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&wire(qname));
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&CLASS_IN.to_be_bytes());
    b.extend(answers.concat());
    b
}

/// QR, RD, RA, NOERROR.
const OK: u16 = 0x8180;

/// example.com MX: three hosts, all names compressed against the
/// question, written out byte by byte.
fn three_mx() -> Vec<u8> {
    let mut p = vec![
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0, // header
        7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0, // @12
        0, 15, 0, 1, // QTYPE MX, QCLASS IN
    ];
    for (pref, label) in [(20u16, b"mxc"), (5, b"mxa"), (10, b"mxb")] {
        p.extend_from_slice(&[0xc0, 0x0c, 0, 15, 0, 1, 0, 0, 0x0e, 0x10, 0, 8]);
        p.extend_from_slice(&pref.to_be_bytes());
        p.push(3);
        p.extend_from_slice(label);
        p.extend_from_slice(&[0xc0, 0x0c]);
    }
    p
}

fn hosts(answer: MxAnswer) -> Vec<(u16, String)> {
    match answer {
        MxAnswer::Hosts(h) => h.into_iter().map(|h| (h.preference, h.host)).collect(),
        other => panic!("expected hosts, got {other:?}"),
    }
}

/// The whole parser on any bytes, with the packet's own id and question so
/// that it gets past the reply checks (what the `dns` fuzz target does).
fn parse_any(buf: &[u8]) {
    let Some(id) = buf.get(..2) else { return };
    let id = u16::from_be_bytes([id[0], id[1]]);
    let (qname, qtype) = match read_name(buf, 12) {
        Ok((name, pos)) => match buf.get(pos..pos + 2) {
            Some(t) => (name, u16::from_be_bytes([t[0], t[1]])),
            None => (name, TYPE_MX),
        },
        Err(_) => ("example.com".to_string(), TYPE_MX),
    };
    if let Ok(msg) = parse_response(buf, id, &qname, qtype) {
        let _ = msg.check_rcode();
        let _ = mx_answer(&msg);
        let _ = addresses(&msg, qtype);
    }
}

#[test]
fn mx_sorted_by_preference_with_compression() {
    let msg = parse_response(&three_mx(), ID, "example.com", TYPE_MX).unwrap();
    assert_eq!(msg.answers.len(), 3);
    assert_eq!(
        hosts(mx_answer(&msg).unwrap()),
        [
            (5, "mxa.example.com".to_string()),
            (10, "mxb.example.com".to_string()),
            (20, "mxc.example.com".to_string()),
        ]
    );
    // The question echo is case-insensitive, its trailing dot optional.
    assert!(parse_response(&three_mx(), ID, "EXAMPLE.Com.", TYPE_MX).is_ok());
}

#[test]
fn equal_preferences_are_shuffled() {
    let reply = reply(
        OK,
        "example.com",
        TYPE_MX,
        &[
            rr(&QPTR, TYPE_MX, &mx_rdata(10, &wire("b.example"))),
            rr(&QPTR, TYPE_MX, &mx_rdata(10, &wire("a.example"))),
            rr(&QPTR, TYPE_MX, &mx_rdata(1, &wire("first.example"))),
        ],
    );
    let msg = parse_response(&reply, ID, "example.com", TYPE_MX).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let h = hosts(mx_answer(&msg).unwrap());
        assert_eq!(h[0].1, "first.example");
        seen.insert(h[1].1.clone());
    }
    assert_eq!(seen.len(), 2, "both orders of the equal pair should appear");
}

#[test]
fn null_and_implicit_mx() {
    let null = reply(
        OK,
        "null.test",
        TYPE_MX,
        &[rr(&QPTR, TYPE_MX, &mx_rdata(0, &[0]))],
    );
    let msg = parse_response(&null, ID, "null.test", TYPE_MX).unwrap();
    assert_eq!(mx_answer(&msg).unwrap(), MxAnswer::NullMx);
    let none = reply(OK, "plain.test", TYPE_MX, &[]);
    let msg = parse_response(&none, ID, "plain.test", TYPE_MX).unwrap();
    assert_eq!(mx_answer(&msg).unwrap(), MxAnswer::NoMx);
}

#[test]
fn every_prefix_of_a_valid_reply_is_an_error() {
    let full = three_mx();
    for len in 0..full.len() {
        assert!(
            parse_response(&full[..len], ID, "example.com", TYPE_MX).is_err(),
            "prefix of {len} bytes was accepted"
        );
    }
}

#[test]
fn mutated_replies_never_panic() {
    let full = three_mx();
    for i in 0..full.len() {
        for v in [0x00, 0x01, 0x3f, 0x40, 0x80, 0xc0, 0xc1, 0xff] {
            let mut p = full.clone();
            p[i] = v;
            parse_any(&p);
            let _ = parse_response(&p, ID, "example.com", TYPE_MX);
        }
    }
    parse_any(&[]);
    parse_any(&[0xff; 600]);
}

#[test]
fn replies_to_another_query_rejected() {
    let good = three_mx();
    let mut query_not_reply = good.clone();
    query_not_reply[2] &= 0x7f; // clear QR
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let cases: [(&[u8], u16, &str, u16); 5] = [
        (&good, ID ^ 1, "example.com", TYPE_MX),
        (&good, ID, "example.org", TYPE_MX),
        (&good, ID, "example.com", TYPE_A),
        (&query_not_reply, ID, "example.com", TYPE_MX),
        (&two_questions, ID, "example.com", TYPE_MX),
    ];
    for (i, (buf, id, qname, qtype)) in cases.into_iter().enumerate() {
        assert!(parse_response(buf, id, qname, qtype).is_err(), "case {i}");
    }
}

#[test]
fn pointer_loops_forward_pointers_and_reserved_labels_rejected() {
    let at12 = |tail: &[u8]| [&[0u8; 12][..], tail].concat();
    let at14 = |tail: &[u8]| [&[0u8; 14][..], tail].concat();
    let cases: [(Vec<u8>, usize); 6] = [
        // A pointer to itself.
        (at12(&[0xc0, 12]), 12),
        // Two names pointing at each other: 12 -> 16 is forward.
        (at12(&[1, b'a', 0xc0, 16, 1, b'b', 0xc0, 12]), 12),
        (at12(&[1, b'a', 0xc0, 16, 1, b'b', 0xc0, 12]), 16),
        // A backward pointer (20 -> 14) whose labels run into a pointer
        // back to 14 itself: backward from where it sits, but a loop.
        (at14(&[1, b'x', 0xc0, 14, 0, 0, 0xc0, 14]), 20),
        // Reserved label types.
        (vec![0x40, 0], 0),
        (vec![0x80, 0], 0),
    ];
    for (buf, pos) in cases {
        assert!(read_name(&buf, pos).is_err(), "{buf:?} at {pos}");
    }
}

#[test]
fn pointer_chains_and_name_length() {
    // "a" + pointer to "b" + pointer to "example.com" at 12.
    let mut buf = vec![0u8; 12];
    buf.extend_from_slice(&wire("example.com")); // 12..25
    buf.extend_from_slice(&[1, b'b', 0xc0, 12]); // 25
    buf.extend_from_slice(&[1, b'a', 0xc0, 25]); // 29
    assert_eq!(read_name(&buf, 29).unwrap(), ("a.b.example.com".into(), 33));
    // 5 x 63-octet labels = 320 octets: too long.
    let long = wire(&vec!["x".repeat(63); 5].join("."));
    assert!(read_name(&long, 0).is_err());
    for bad in [&vec!["x".repeat(63); 5].join("."), &"x".repeat(64), "a..b"] {
        assert!(build_query(1, bad, TYPE_A).is_err(), "{bad}");
    }
}

#[test]
fn odd_bytes_in_labels_are_escaped() {
    let buf = [3, b'a', b'.', 0, 0];
    assert_eq!(read_name(&buf, 0).unwrap().0, "a\\046\\000");
}

#[test]
fn rcodes() {
    let gone = reply(0x8183, "gone.test", TYPE_A, &[]);
    let msg = parse_response(&gone, ID, "gone.test", TYPE_A).unwrap();
    assert_eq!(msg.check_rcode(), Err(DnsError::NxDomain));
    assert!(DnsError::NxDomain.is_permanent());
    let servfail = reply(0x8182, "gone.test", TYPE_A, &[]);
    let msg = parse_response(&servfail, ID, "gone.test", TYPE_A).unwrap();
    assert!(matches!(msg.check_rcode(), Err(DnsError::Temporary(_))));
}

#[test]
fn truncated_reply_flagged_without_records() {
    let mut reply = three_mx();
    reply[2] |= 0x02; // TC
    reply.truncate(reply.len() - 5); // and really cut off
    let msg = parse_response(&reply, ID, "example.com", TYPE_MX).unwrap();
    assert!(msg.truncated);
    assert!(msg.answers.is_empty());
}

#[test]
fn cname_chain_followed_and_loop_rejected() {
    // www.test CNAME a.test, a.test CNAME b.test, b.test A 192.0.2.7,
    // plus an unrelated A record that must not be picked up.
    let chain = reply(
        OK,
        "www.test",
        TYPE_A,
        &[
            rr(&QPTR, TYPE_CNAME, &wire("a.test")),
            rr(&wire("other.test"), TYPE_A, &[198, 51, 100, 1]),
            rr(&wire("A.TEST"), TYPE_CNAME, &wire("b.test")),
            rr(&wire("b.test"), TYPE_A, &[192, 0, 2, 7]),
        ],
    );
    let msg = parse_response(&chain, ID, "www.test", TYPE_A).unwrap();
    assert_eq!(
        addresses(&msg, TYPE_A).unwrap(),
        [IpAddr::from([192, 0, 2, 7])]
    );
    let looped = reply(
        OK,
        "a.test",
        TYPE_A,
        &[
            rr(&QPTR, TYPE_CNAME, &wire("b.test")),
            rr(&wire("b.test"), TYPE_CNAME, &wire("a.test")),
        ],
    );
    let msg = parse_response(&looped, ID, "a.test", TYPE_A).unwrap();
    assert!(addresses(&msg, TYPE_A).is_err());
}

#[test]
fn bad_rdata_rejected() {
    let short_a = reply(OK, "a.test", TYPE_A, &[rr(&QPTR, TYPE_A, &[1, 2, 3])]);
    assert!(parse_response(&short_a, ID, "a.test", TYPE_A).is_err());
    // MX whose exchange name runs beyond its RDLENGTH.
    let mut mx = rr(&QPTR, TYPE_MX, &mx_rdata(1, &wire("mx.test")));
    let rdlen_at = mx.len() - 12; // low byte of RDLENGTH, before 11 bytes of RDATA
    mx[rdlen_at] -= 1;
    let reply = reply(OK, "a.test", TYPE_MX, &[mx]);
    assert!(parse_response(&reply, ID, "a.test", TYPE_MX).is_err());
}

#[test]
fn address_literals() {
    let good = [
        (
            "[192.0.2.1]",
            Destination::Literal(IpAddr::from([192, 0, 2, 1])),
        ),
        (
            "[IPv6:::1]",
            Destination::Literal(Ipv6Addr::LOCALHOST.into()),
        ),
        (
            "[ipv6:2001:db8::1]",
            Destination::Literal("2001:db8::1".parse().unwrap()),
        ),
        (
            "[mail.example.com]",
            Destination::Host("mail.example.com".into()),
        ),
        ("example.com", Destination::Domain("example.com".into())),
    ];
    for (dest, want) in good {
        assert_eq!(parse_destination(dest).unwrap(), want, "{dest}");
    }
    let bad = [
        "[300.1.1.1]",
        "[1.2.3]",
        "[IPv6:zz::1]",
        "[foo:bar]",
        "[]",
        "[1.2.3.4",
        "",
    ];
    for dest in bad {
        assert_eq!(parse_destination(dest), Err(DnsError::NxDomain), "{dest}");
    }
}

#[test]
fn literal_targets_need_no_dns() {
    // No nameserver at all: any DNS query would fail.
    let resolver = Resolver::with_servers(Vec::new(), Duration::from_millis(10));
    let t = resolve_targets(&resolver, "[IPv6:2001:db8::1]", 25).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].addr, "[2001:db8::1]:25".parse().unwrap());
    assert!(resolve_targets(&resolver, "[300.1.1.1]", 25)
        .unwrap_err()
        .is_permanent());
    assert!(!resolve_targets(&resolver, "example.com", 25)
        .unwrap_err()
        .is_permanent());
}

#[test]
fn resolv_conf_parsing() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("resolv.conf.{}", std::process::id()));
    let text = "# comment\nsearch example.com\nnameserver 192.0.2.53\n\
                nameserver 2001:db8::53\nnameserver fe80::1%eth0\nnameserver\n";
    std::fs::write(&path, text).unwrap();
    let resolver = Resolver::from_resolv_conf(&path, Duration::from_secs(1)).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        resolver.nameservers(),
        [
            "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        ]
    );
    // No file (the same as no nameserver line): 127.0.0.1, as glibc does.
    let none = Resolver::from_resolv_conf(&path, Duration::from_secs(1)).unwrap();
    assert_eq!(
        none.nameservers(),
        ["127.0.0.1:53".parse::<SocketAddr>().unwrap()]
    );
}
