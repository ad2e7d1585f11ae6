//! blackpony: opportunistic encryption of SMTP between mail servers.
//!
//! Two thin binaries sit on this library: `blackpony` (inbound, in front of
//! the MTA, started by inetd per connection) and `blackpony-mailer` (outbound,
//! a sendmail prog mailer). The layers, from the bottom:
//!
//! * [`limits`], [`error`]: every bound and every failure, with the SMTP reply
//!   and exit code each failure turns into.
//! * [`crypto`]: thin wrappers over RustCrypto primitives (Blowfish-CTR,
//!   HMAC-SHA1, HKDF-SHA1, RSA-OAEP, SHA-256) and the ROTn toy cipher.
//! * [`wire`]: the byte layout of handshake messages and records, the record
//!   layer (seal/open, rekey, close), the key schedule and transcript.
//! * [`suite`]: one module per negotiated suite, each turning a socket into a
//!   [`channel::Channel`].
//! * [`smtp`]: SMTP lines, replies, commands and the EHLO keyword.
//! * [`relay`]: the lock-step SMTP relay both binaries run.
//! * [`inbound`], [`outbound`]: the two programs' sessions.
#![forbid(unsafe_code)]

pub mod cert;
pub mod cert_cache;
pub mod channel;
pub mod cli;
pub mod clock;
pub mod crypto;
pub mod dns;
pub mod error;
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
pub mod wire;

/// Noise XX/IK/NX by hand: its own crate (noise/), which knows nothing of blackpony.
pub use blackpony_noise as noise;
pub use error::{Error, Result};

/// The EHLO keyword and command verb, fixed by the wire contract.
pub const KEYWORD: &str = "XBLACKPONY";
