//! A small synchronous DNS client: MX and A/AAAA lookups for the mailer.
//!
//! The mailer needs MX records, which std's resolver (getaddrinfo) cannot
//! give, and the little it needs (one question, UDP with TCP fallback, MX,
//! A, AAAA, CNAME) is small enough to own rather than pull in a resolver
//! crate. One file per job, imports running down this list:
//!
//! * `mx`: [`resolve_targets`] turns sendmail's `$h` into the ordered list
//!   of addresses the mailer will try (RFC 5321 section 5.1: MX order,
//!   equal preferences shuffled, null MX, implicit MX, address literals);
//! * `resolver`: [`Resolver`] sends a query to each nameserver in turn over
//!   UDP, again over TCP when the answer was truncated;
//! * `wire`: the wire format (RFC 1035), pure functions over `&[u8]` that
//!   never panic, whatever the bytes (the `dns` fuzz target runs them);
//! * `error`: [`DnsError`], the one error type, permanent or temporary.
#![forbid(unsafe_code)]

mod error;
mod mx;
mod resolver;
mod wire;

pub use error::DnsError;
pub use mx::{
    mx_answer, parse_destination, resolve_targets, Destination, MxAnswer, MxHost, Target,
};
pub use resolver::Resolver;
pub use wire::{
    addresses, build_query, parse_response, read_name, Message, RData, Record, TYPE_A, TYPE_AAAA,
    TYPE_CNAME, TYPE_MX,
};
