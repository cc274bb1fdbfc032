//! TLS on an upgraded connection: the rustls session that served the
//! handshake and the HTTP upgrade, driven on the raw socket with the same
//! non-blocking reads and writes as plain TCP, so the connection loop keeps
//! waiting on socket readiness alone.
//!
//! Plaintext is taken out of rustls as soon as it is decrypted, and the
//! records rustls makes are handed to the socket at once; rustls holds at
//! most [`SEND_LIMIT`] bytes of records the socket did not take (what the
//! connection has beyond that waits, as plaintext, in its own write
//! buffer, and counts towards its backpressure like plain output).

use std::io::{self, Read, Write};

use bytes::BytesMut;
use rustls::ServerConnection;
use tokio::net::TcpStream;

/// The most encrypted bytes rustls buffers for the socket.
pub const SEND_LIMIT: usize = 32 * 1024;

/// A TLS session over a connection's socket.
pub struct Tls {
    conn: ServerConnection,
}

/// The socket as `Read`/`Write` for rustls: never blocks (`WouldBlock`
/// clears the socket's readiness, as tokio's own reads do).
struct Try<'a>(&'a TcpStream);

impl Read for Try<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Try<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Tls {
    /// Takes over a session after the upgrade; plaintext it already holds
    /// (sent by the client right behind its request) is appended to
    /// `input`.
    pub fn new(mut conn: ServerConnection, input: &mut BytesMut) -> io::Result<Self> {
        conn.set_buffer_limit(Some(SEND_LIMIT));
        let mut tls = Tls { conn };
        tls.take_plaintext(input)?;
        Ok(tls)
    }

    /// Moves decrypted plaintext into `buf`: `Some(n)` with n > 0, or
    /// `Some(0)` once the client has sent its close_notify, `None` when
    /// there is none yet.
    fn take_plaintext(&mut self, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        let state = self.conn.process_new_packets().map_err(invalid)?;
        let n = state.plaintext_bytes_to_read();
        if n > 0 {
            let at = buf.len();
            buf.resize(at + n, 0);
            self.conn.reader().read_exact(&mut buf[at..])?;
            return Ok(Some(n));
        }
        Ok(state.peer_has_closed().then_some(0))
    }

    /// Reads records from the socket until plaintext is decrypted, and
    /// appends it to `buf`. `Ok(0)`: the client closed; `Err(WouldBlock)`:
    /// the socket holds nothing more (a partial record is kept by rustls).
    pub fn fill(&mut self, socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            if let Some(n) = self.take_plaintext(buf)? {
                return Ok(n);
            }
            if self.conn.read_tls(&mut Try(socket))? == 0 {
                return Ok(0);
            }
        }
    }

    /// Encrypts from `data` and writes records to the socket, as far as
    /// the socket takes them; returns how much of `data` was taken.
    /// `progressed` is set when bytes went into the socket.
    pub fn write(
        &mut self,
        socket: &TcpStream,
        data: &[u8],
        progressed: &mut bool,
    ) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            self.push(socket, progressed)?;
            if self.conn.wants_write() || taken == data.len() {
                return Ok(taken);
            }
            let n = self.conn.writer().write(&data[taken..])?;
            if n == 0 {
                return Ok(taken);
            }
            taken += n;
        }
    }

    /// Writes buffered records until the socket takes no more.
    fn push(&mut self, socket: &TcpStream, progressed: &mut bool) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Try(socket)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => *progressed = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether records wait for the socket.
    pub fn unsent(&self) -> bool {
        self.conn.wants_write()
    }

    /// Sends the close_notify alert, as far as the socket takes it.
    pub fn close_notify(&mut self, socket: &TcpStream) {
        self.conn.send_close_notify();
        let _ = self.push(socket, &mut false);
    }
}
