//! blackpony: opportunistic encryption of SMTP between mail servers.
//!
//! Two thin binaries sit on this library: `blackpony` (inbound, in front of
//! the MTA, started by inetd per connection) and `blackpony-mailer` (outbound,
//! a sendmail prog mailer). docs/ARCHITECTURE.md lists the layers and which
//! way imports run.
#![forbid(unsafe_code)]

pub mod cert;
pub mod cert_cache;
pub mod channel;
pub mod cli;
pub mod clock;
pub mod error;
pub mod fault;
pub mod inbound;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod netio;
pub mod outbound;
pub mod peer;
pub mod peers;
pub mod pipe_client;
pub mod policy;
pub mod process;
pub mod relay;
pub mod reply;
pub mod session_record;
pub mod smtp;
pub mod static_key;
pub mod suite;
pub mod summary;
pub mod switch;

/// Thin wrappers over RustCrypto and the zeroizing `Secret`: its own crate (crypto/).
pub use blackpony_crypto as crypto;
/// The DNS stub resolver and MX selection: its own crate (dns/).
pub use blackpony_dns as dns;
/// Noise XX/IK/NX by hand: its own crate (noise/), which knows nothing of blackpony.
pub use blackpony_noise as noise;
/// The record layer (codec, key schedule, records, both record protections): its own crate (wire/).
pub use blackpony_wire as wire;
pub use error::{Error, Result};

/// The EHLO keyword and command verb, fixed by the wire contract.
pub const KEYWORD: &str = "XBLACKPONY";
