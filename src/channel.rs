//! A connection after negotiation: a byte reader and a byte writer that
//! hide whether the bytes travel plain, rotated or in records.

use std::io::{self, Read, Write};

use crate::wire::record::RecordWriter;

/// The writing half of a channel. `close` ends the stream in the way the
/// suite defines (an authenticated Close record for encrypted suites).
pub trait Sink: Write + Send {
    fn close(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// The authenticated Close record, then the transport's own end (FIN).
impl<W: Sink> Sink for RecordWriter<W> {
    fn close(&mut self) -> io::Result<()> {
        RecordWriter::close(self)?;
        self.get_mut().close()
    }
}

impl<W: Sink> Sink for crate::suite::rot::RotWriter<W> {
    fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        self.get_mut().close()
    }
}
/// Closing a socket's sending half sends FIN, so the peer sees the end of
/// our stream while its replies can still arrive (half-close).
impl Sink for std::net::TcpStream {
    fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        self.shutdown(std::net::Shutdown::Write)
    }
}
impl Sink for Box<dyn Sink> {
    fn close(&mut self) -> io::Result<()> {
        (**self).close()
    }
}
impl Sink for io::Stdout {}
impl Sink for Vec<u8> {}
impl Sink for io::PipeWriter {}

pub type BoxRead = Box<dyn Read + Send>;
pub type BoxSink = Box<dyn Sink>;
