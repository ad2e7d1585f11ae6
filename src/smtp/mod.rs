//! The SMTP vocabulary both programs share: bounded line reading, replies,
//! command verbs and the EHLO keyword. Pure parsing plus one buffered reader;
//! nothing here knows about cryptography.

pub mod command;
pub mod ehlo;
pub mod line;
pub mod reply;

pub use command::Verb;
pub use line::LineReader;
pub use reply::Reply;
