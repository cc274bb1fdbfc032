//! TLS on an upgraded connection, driven on the raw socket with the same
//! non-blocking reads and writes as plain TCP, so the connection loop keeps
//! waiting on socket readiness alone.
//!
//! A TLS 1.3 connection hands the session's keys to the record layer
//! ([`super::records`]) right after the 101: ciphertext is read into the
//! thread's lent buffer and decrypted there, records are sealed in the
//! thread's scratch buffer, and the connection keeps a buffer only for a
//! record that arrived in part or for records the socket did not take. An
//! idle connection holds its two keys and nothing else.
//!
//! A TLS 1.2 connection goes on with the rustls session that served the
//! handshake: plaintext is taken out as soon as it is decrypted, the
//! records rustls makes are handed to the socket at once, and rustls holds
//! at most [`SEND_LIMIT`] bytes of records the socket did not take (what
//! the connection has beyond that waits, as plaintext, in its own write
//! buffer and counts towards its backpressure like plain output).

use std::io::{self, Read, Write};

use bytes::BytesMut;
use rustls::ServerConnection;
use tokio::net::TcpStream;

use super::records::{self, Records};

/// The most encrypted bytes rustls buffers for the socket.
pub const SEND_LIMIT: usize = 32 * 1024;

/// A TLS connection's records after the upgrade: rustls's session, or,
/// for TLS 1.3, this daemon's record layer with the session's keys, which
/// holds no buffer while the connection is idle.
pub enum Tls {
    Session(Session),
    Records(RecordIo),
}

/// rustls's session, driven on the socket.
pub struct Session {
    conn: ServerConnection,
}

/// The record layer ([`Records`]) on the socket.
pub struct RecordIo {
    records: Records,
    /// The start of a record that arrived in part (unallocated otherwise).
    partial: BytesMut,
    /// Records the socket did not take (unallocated when none).
    out: BytesMut,
}

thread_local! {
    /// Ciphertext read from a socket, lent to whichever connection of this
    /// thread reads next.
    static RAW_SPARE: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
    /// Where records are sealed before a write.
    static SEALED: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// Room for one whole record in a read.
const READ_ROOM: usize = records::HEADER + records::MAX_CIPHERTEXT;

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
    /// is appended to `input`. A TLS 1.3 session whose records are all
    /// written hands its keys to the record layer.
    pub fn new(mut conn: ServerConnection, input: &mut BytesMut) -> io::Result<Self> {
        conn.set_buffer_limit(Some(SEND_LIMIT));
        let mut session = Session { conn };
        let closed = session.take_plaintext(input)? == Some(0);
        let tls13 = session.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
        if closed || !tls13 || session.conn.wants_write() {
            return Ok(Tls::Session(session));
        }
        let secrets = session.conn.dangerous_extract_secrets().map_err(invalid)?;
        let records = Records::new(secrets).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS cipher suite without a record layer",
            )
        })?;
        Ok(Tls::Records(RecordIo {
            records,
            partial: BytesMut::new(),
            out: BytesMut::new(),
        }))
    }

    /// Reads from the socket until plaintext is decrypted, and appends it
    /// to `buf`. `Ok(0)`: the client closed; `Err(WouldBlock)`: nothing
    /// more for now.
    pub fn fill(&mut self, socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Tls::Session(s) => s.fill(socket, buf),
            Tls::Records(r) => r.fill(socket, buf),
        }
    }

    /// Encrypts from `data` and writes to the socket, as far as it takes
    /// it; returns how much of `data` was taken.
    pub fn write(
        &mut self,
        socket: &TcpStream,
        data: &[u8],
        progressed: &mut bool,
    ) -> io::Result<usize> {
        match self {
            Tls::Session(s) => s.write(socket, data, progressed),
            Tls::Records(r) => r.write(socket, data, progressed),
        }
    }

    /// Whether records wait for the socket.
    pub fn unsent(&self) -> bool {
        match self {
            Tls::Session(s) => s.conn.wants_write(),
            Tls::Records(r) => !r.out.is_empty(),
        }
    }

    /// Sends the close_notify alert, as far as the socket takes it.
    pub fn close_notify(&mut self, socket: &TcpStream) {
        match self {
            Tls::Session(s) => {
                s.conn.send_close_notify();
                let _ = s.push(socket, &mut false);
            }
            Tls::Records(r) => {
                if r.records.seal_close_notify(&mut r.out).is_ok() {
                    let _ = r.push(socket, &mut false);
                }
            }
        }
    }
}

impl RecordIo {
    fn fill(&mut self, socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
        if self.records.peer_closed() {
            return Ok(0);
        }
        let mut raw = if self.partial.is_empty() {
            RAW_SPARE.take()
        } else {
            std::mem::take(&mut self.partial)
        };
        raw.reserve(READ_ROOM);
        let result = match socket.try_read_buf(&mut raw) {
            Ok(0) => Ok(0),
            Ok(_) => {
                let (taken, added) = self.records.open(&mut raw[..], buf)?;
                if taken < raw.len() {
                    self.partial = BytesMut::from(&raw[taken..]);
                }
                if added > 0 {
                    Ok(added)
                } else if self.records.peer_closed() {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
            Err(e) => {
                if !raw.is_empty() {
                    self.partial = BytesMut::from(&raw[..]);
                }
                Err(e)
            }
        };
        raw.clear();
        if raw.capacity() <= 2 * READ_ROOM {
            RAW_SPARE.set(raw);
        }
        result
    }

    fn write(
        &mut self,
        socket: &TcpStream,
        data: &[u8],
        progressed: &mut bool,
    ) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            self.push(socket, progressed)?;
            if !self.out.is_empty() || taken == data.len() {
                return Ok(taken);
            }
            let chunk = &data[taken..data.len().min(taken + SEND_LIMIT)];
            SEALED.with(|cell| -> io::Result<()> {
                let mut sealed = cell.borrow_mut();
                sealed.clear();
                self.records.seal(chunk, &mut sealed)?;
                let n = match socket.try_write(&sealed) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Err(e),
                };
                *progressed |= n > 0;
                if n < sealed.len() {
                    self.out.extend_from_slice(&sealed[n..]);
                }
                Ok(())
            })?;
            taken += chunk.len();
        }
    }

    /// Writes the records the socket did not take before.
    fn push(&mut self, socket: &TcpStream, progressed: &mut bool) -> io::Result<()> {
        while !self.out.is_empty() {
            match socket.try_write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *progressed = true;
                    bytes::Buf::advance(&mut self.out, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        // Hold no buffer while idle.
        self.out = BytesMut::new();
        Ok(())
    }
}

impl Session {
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
    fn fill(&mut self, socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
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
    fn write(
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
}
