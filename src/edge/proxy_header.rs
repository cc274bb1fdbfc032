//! The PROXY protocol header (HAProxy's spec, v1 text and v2 binary) that
//! a TCP load balancer sends first on a connection, before the HTTP
//! request: the client's address as the balancer saw it.
//!
//! [`read`] takes exactly the header off the stream and nothing after it,
//! so that hyper then reads the request from the same stream.
//!
//! # How the header is read
//!
//! The stream is peeked to see what comes, but only bytes that are
//! provably part of the header are ever read (consumed): the bytes of a
//! signature seen so far (`PROXY ` for v1, [`V2_SIGNATURE`] for v2), then
//! for v1 everything up to and including the first LF within
//! [`V1_MAX_LEN`] bytes, and for v2 the rest of the [`V2_FIXED_LEN`] fixed
//! bytes, then exactly the length they announce. A peek that does not
//! complete the header is followed by reading what it showed, so the
//! socket's buffer is empty again and the next peek waits for new bytes
//! instead of returning the same ones at once: no peek loop can spin, and
//! every turn of a loop consumes at least one byte or ends it (at most
//! [`V1_MAX_LEN`] turns). Memory is bounded by [`V2_MAX_PAYLOAD_LEN`].
//!
//! What is consumed on an error: nothing when the first bytes seen already
//! differ from both signatures (a client speaking HTTP directly); the
//! matching part of a signature when it came in a segment of its own; the
//! bytes read so far otherwise. The connection is not to be used after an
//! error, nor after [`read`] was cancelled (by the caller's timeout).

use std::io;
use std::net::SocketAddr;

use ppp::PartialResult;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v1 header, its CRLF included (the spec's worst case:
/// `PROXY UNKNOWN` with two full IPv6 addresses and ports).
pub const V1_MAX_LEN: usize = 107;

/// What a v1 header starts with.
pub const V1_PREFIX: &[u8] = b"PROXY ";

/// What a v2 header starts with.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: the signature, the version and command,
/// the family and protocol, and the big-endian length of the rest.
pub const V2_FIXED_LEN: usize = 16;

/// The longest v2 payload (addresses and TLVs, after the fixed part)
/// accepted. The protocol allows 65535; balancers send a few hundred bytes
/// at most (216 for unix addresses, plus TLVs such as a TLS name or a
/// cloud endpoint id), and the cap bounds what a connection may make the
/// daemon buffer before it is known to be a real balancer.
pub const V2_MAX_PAYLOAD_LEN: usize = 4096;

/// The addresses a PROXY header gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proxied {
    /// The client, as the balancer saw it. `None` for a v2 `LOCAL` command
    /// (a health check from the balancer itself), for v1 `UNKNOWN` and for
    /// the v2 unspecified and unix families: the caller then keeps the TCP
    /// peer's address.
    pub source: Option<SocketAddr>,
    /// The address the client connected to on the balancer; `None` when
    /// `source` is.
    pub destination: Option<SocketAddr>,
}

impl Proxied {
    const NONE: Proxied = Proxied {
        source: None,
        destination: None,
    };
}

/// Why no PROXY header could be read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The first bytes are not a PROXY header (a client sent HTTP directly).
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    /// A PROXY header, but not a valid one.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    /// A v1 line without CRLF within [`V1_MAX_LEN`] bytes, or a v2 payload
    /// longer than [`V2_MAX_PAYLOAD_LEN`].
    #[error("PROXY protocol header too long")]
    TooLong,
    /// The peer closed the connection before the header was complete.
    #[error("connection closed before the end of the PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[source] io::Error),
}

impl ProxyHeaderError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyHeaderError::Missing => "missing",
            ProxyHeaderError::Malformed(_) => "malformed",
            ProxyHeaderError::TooLong => "too_long",
            ProxyHeaderError::Closed => "closed",
            ProxyHeaderError::Io(_) => "io",
        }
    }
}

/// An end of file in the middle of `read_exact` is [`ProxyHeaderError::Closed`].
impl From<io::Error> for ProxyHeaderError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ProxyHeaderError::Closed
        } else {
            ProxyHeaderError::Io(e)
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> ProxyHeaderError {
    ProxyHeaderError::Malformed(e.to_string())
}

/// Reads the PROXY header (v1 or v2) at the start of `stream`, and exactly
/// that: what follows is left on the stream. No timer inside: the caller
/// bounds it with its own timeout.
pub async fn read(stream: &mut TcpStream) -> Result<Proxied, ProxyHeaderError> {
    let mut header = Vec::with_capacity(V1_MAX_LEN);
    let mut seen = [0u8; V1_MAX_LEN];
    if signature(stream, &mut header, &mut seen).await? == Version::One {
        read_v1(stream, &mut header, &mut seen).await
    } else {
        read_v2(stream, &mut header).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    One,
    Two,
}

/// Consumes the signature of a v1 or v2 header into `header`, or says
/// that the stream does not start with one.
async fn signature(
    stream: &mut TcpStream,
    header: &mut Vec<u8>,
    seen: &mut [u8; V1_MAX_LEN],
) -> Result<Version, ProxyHeaderError> {
    loop {
        let have = header.len();
        let want = match header.first() {
            None => V1_PREFIX.len().max(V2_SIGNATURE.len()),
            Some(&b'P') => V1_PREFIX.len() - have,
            Some(_) => V2_SIGNATURE.len() - have,
        };
        let n = peek(stream, &mut seen[..want]).await?;
        let (version, expected): (Version, &[u8]) = match header.first().copied().unwrap_or(seen[0])
        {
            b'P' => (Version::One, V1_PREFIX),
            b'\r' => (Version::Two, V2_SIGNATURE),
            _ => return Err(ProxyHeaderError::Missing),
        };
        let n = n.min(expected.len() - have);
        if seen[..n] != expected[have..have + n] {
            return Err(ProxyHeaderError::Missing);
        }
        consume(stream, header, n).await?;
        if header.len() == expected.len() {
            return Ok(version);
        }
    }
}

/// The rest of a v1 line, up to and including its LF.
async fn read_v1(
    stream: &mut TcpStream,
    header: &mut Vec<u8>,
    seen: &mut [u8; V1_MAX_LEN],
) -> Result<Proxied, ProxyHeaderError> {
    loop {
        let room = V1_MAX_LEN - header.len();
        let n = peek(stream, &mut seen[..room]).await?;
        match seen[..n].iter().position(|&b| b == b'\n') {
            Some(lf) => {
                consume(stream, header, lf + 1).await?;
                return parse_v1(header);
            }
            None if n == room => return Err(ProxyHeaderError::TooLong),
            None => consume(stream, header, n).await?,
        }
    }
}

fn parse_v1(line: &[u8]) -> Result<Proxied, ProxyHeaderError> {
    use ppp::v1::{Addresses, Header};

    if !line.ends_with(b"\r\n") {
        return Err(malformed("the line ends in a LF without CR"));
    }
    let parsed = Header::try_from(line).map_err(malformed)?;
    // ppp stops at the first CR: one before the end is not a header.
    if parsed.header.len() != line.len() {
        return Err(malformed("a CR before the end of the line"));
    }
    Ok(match parsed.addresses {
        Addresses::Tcp4(a) => Proxied {
            source: Some((a.source_address, a.source_port).into()),
            destination: Some((a.destination_address, a.destination_port).into()),
        },
        Addresses::Tcp6(a) => Proxied {
            source: Some((a.source_address, a.source_port).into()),
            destination: Some((a.destination_address, a.destination_port).into()),
        },
        Addresses::Unknown => Proxied::NONE,
    })
}

/// The rest of the fixed part of a v2 header, checked before its payload
/// is waited for, then the payload.
async fn read_v2(
    stream: &mut TcpStream,
    header: &mut Vec<u8>,
) -> Result<Proxied, ProxyHeaderError> {
    consume(stream, header, V2_FIXED_LEN - header.len()).await?;
    if let Err(e) = ppp::v2::Header::try_from(header.as_slice()) {
        if !e.is_incomplete() {
            return Err(malformed(e));
        }
    }
    let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
    if len > V2_MAX_PAYLOAD_LEN {
        return Err(ProxyHeaderError::TooLong);
    }
    consume(stream, header, len).await?;
    parse_v2(header)
}

fn parse_v2(bytes: &[u8]) -> Result<Proxied, ProxyHeaderError> {
    use ppp::v2::{Addresses, Command, Header};

    let parsed = Header::try_from(bytes).map_err(malformed)?;
    // LOCAL: the receiver must use the real endpoints and discard the
    // rest of the block.
    if parsed.command == Command::Local {
        return Ok(Proxied::NONE);
    }
    for tlv in parsed.tlvs() {
        tlv.map_err(malformed)?;
    }
    Ok(match parsed.addresses {
        Addresses::IPv4(a) => Proxied {
            source: Some((a.source_address, a.source_port).into()),
            destination: Some((a.destination_address, a.destination_port).into()),
        },
        Addresses::IPv6(a) => Proxied {
            source: Some((a.source_address, a.source_port).into()),
            destination: Some((a.destination_address, a.destination_port).into()),
        },
        Addresses::Unspecified | Addresses::Unix(_) => Proxied::NONE,
    })
}

/// Peeks into `buf` (never empty): waits for at least one byte.
async fn peek(stream: &TcpStream, buf: &mut [u8]) -> Result<usize, ProxyHeaderError> {
    debug_assert!(!buf.is_empty());
    match stream.peek(buf).await? {
        0 => Err(ProxyHeaderError::Closed),
        n => Ok(n),
    }
}

/// Reads exactly `n` more header bytes onto the end of `header`.
async fn consume(
    stream: &mut TcpStream,
    header: &mut Vec<u8>,
    n: usize,
) -> Result<(), ProxyHeaderError> {
    let start = header.len();
    header.resize(start + n, 0);
    stream.read_exact(&mut header[start..]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use ppp::v2::{AddressFamily, Builder, Command, IPv4, IPv6, Protocol, Type, Unix};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    const REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: example.com\r\n\r\n";

    /// A connected loopback pair: (client, server).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let client = client.expect("connect");
        client.set_nodelay(true).expect("nodelay");
        (client, accepted.expect("accept").0)
    }

    /// Sends `bytes` in one write and closes, then reads the header.
    async fn read_sent(bytes: &[u8]) -> (Result<Proxied, ProxyHeaderError>, Vec<u8>) {
        let (mut client, mut server) = pair().await;
        client.write_all(bytes).await.expect("write");
        client.shutdown().await.expect("shutdown");
        let result = read(&mut server).await;
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("read the rest");
        (result, rest)
    }

    /// Sends `pieces` with a pause before each but the first; the last is
    /// followed by [`REQUEST`] in the same write. Checks that the header
    /// gives `expected` and that the request is left whole.
    async fn read_in_pieces(pieces: &[&[u8]], expected: Proxied) {
        let (mut client, mut server) = pair().await;
        let mut writes: Vec<Vec<u8>> = pieces.iter().map(|p| p.to_vec()).collect();
        writes
            .last_mut()
            .expect("at least one piece")
            .extend_from_slice(REQUEST);
        let writer = tokio::spawn(async move {
            for (i, w) in writes.iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                client.write_all(w).await.expect("write");
            }
            client.shutdown().await.expect("shutdown");
        });
        assert_eq!(read(&mut server).await.expect("header"), expected);
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("read the rest");
        assert_eq!(rest, REQUEST);
        writer.await.expect("writer");
    }

    fn v4(ip: [u8; 4], port: u16) -> SocketAddr {
        (Ipv4Addr::from(ip), port).into()
    }

    fn v6(ip: &str, port: u16) -> SocketAddr {
        (ip.parse::<Ipv6Addr>().expect("ipv6"), port).into()
    }

    #[tokio::test]
    async fn v1_tcp4() {
        let mut sent = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec();
        sent.extend_from_slice(REQUEST);
        let (result, rest) = read_sent(&sent).await;
        let proxied = result.expect("header");
        assert_eq!(proxied.source, Some(v4([192, 0, 2, 7], 56324)));
        assert_eq!(proxied.destination, Some(v4([198, 51, 100, 1], 443)));
        assert_eq!(rest, REQUEST);
    }

    #[tokio::test]
    async fn v1_tcp6() {
        let mut sent = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n".to_vec();
        sent.extend_from_slice(REQUEST);
        let (result, rest) = read_sent(&sent).await;
        let proxied = result.expect("header");
        assert_eq!(proxied.source, Some(v6("2001:db8::7", 56324)));
        assert_eq!(proxied.destination, Some(v6("2001:db8::1", 443)));
        assert_eq!(rest, REQUEST);
    }

    #[tokio::test]
    async fn v1_unknown() {
        let (result, rest) = read_sent(b"PROXY UNKNOWN\r\nrest").await;
        assert_eq!(result.expect("header"), Proxied::NONE);
        assert_eq!(rest, b"rest");
    }

    #[tokio::test]
    async fn v1_longest_line_is_accepted() {
        let line = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                    ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(line.len(), V1_MAX_LEN);
        let mut sent = line.as_bytes().to_vec();
        sent.extend_from_slice(REQUEST);
        let (result, rest) = read_sent(&sent).await;
        assert_eq!(result.expect("header"), Proxied::NONE);
        assert_eq!(rest, REQUEST);
    }

    #[tokio::test]
    async fn v1_byte_by_byte() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
        let pieces: Vec<&[u8]> = line.chunks(1).collect();
        let expected = Proxied {
            source: Some(v4([192, 0, 2, 7], 56324)),
            destination: Some(v4([198, 51, 100, 1], 443)),
        };
        read_in_pieces(&pieces, expected).await;
    }

    fn v2_ipv4() -> (Vec<u8>, Proxied) {
        let header = Builder::with_addresses(
            ppp::v2::Version::Two | Command::Proxy,
            Protocol::Stream,
            IPv4::new([192, 0, 2, 7], [198, 51, 100, 1], 56324, 443),
        )
        .write_tlv(Type::Authority, b"example.com")
        .expect("tlv")
        .write_tlv(Type::UniqueId, b"\x01\x02\x03")
        .expect("tlv")
        .build()
        .expect("build");
        let proxied = Proxied {
            source: Some(v4([192, 0, 2, 7], 56324)),
            destination: Some(v4([198, 51, 100, 1], 443)),
        };
        (header, proxied)
    }

    #[tokio::test]
    async fn v2_ipv4_with_tlvs() {
        let (mut sent, expected) = v2_ipv4();
        sent.extend_from_slice(REQUEST);
        let (result, rest) = read_sent(&sent).await;
        assert_eq!(result.expect("header"), expected);
        assert_eq!(rest, REQUEST);
    }

    #[tokio::test]
    async fn v2_ipv6_with_tlvs() {
        let mut sent = Builder::with_addresses(
            ppp::v2::Version::Two | Command::Proxy,
            Protocol::Stream,
            IPv6::new(
                "2001:db8::7".parse::<Ipv6Addr>().expect("ipv6"),
                "2001:db8::1".parse::<Ipv6Addr>().expect("ipv6"),
                56324,
                443,
            ),
        )
        .write_tlv(Type::NoOp, &[0; 7])
        .expect("tlv")
        .build()
        .expect("build");
        sent.extend_from_slice(REQUEST);
        let (result, rest) = read_sent(&sent).await;
        let proxied = result.expect("header");
        assert_eq!(proxied.source, Some(v6("2001:db8::7", 56324)));
        assert_eq!(proxied.destination, Some(v6("2001:db8::1", 443)));
        assert_eq!(rest, REQUEST);
    }

    #[tokio::test]
    async fn v2_local_and_unspecified_families_give_no_address() {
        let local = Builder::new(
            ppp::v2::Version::Two | Command::Local,
            AddressFamily::Unspecified | Protocol::Unspecified,
        )
        .build()
        .expect("build");
        let local_with_addresses = Builder::with_addresses(
            ppp::v2::Version::Two | Command::Local,
            Protocol::Stream,
            IPv4::new([192, 0, 2, 7], [198, 51, 100, 1], 56324, 443),
        )
        .build()
        .expect("build");
        let unix = Builder::with_addresses(
            ppp::v2::Version::Two | Command::Proxy,
            Protocol::Stream,
            Unix::new([b'a'; 108], [b'b'; 108]),
        )
        .build()
        .expect("build");
        for header in [local, local_with_addresses, unix] {
            let mut sent = header.clone();
            sent.extend_from_slice(REQUEST);
            let (result, rest) = read_sent(&sent).await;
            assert_eq!(result.expect("header"), Proxied::NONE, "{header:?}");
            assert_eq!(rest, REQUEST);
        }
    }

    #[tokio::test]
    async fn v2_in_pieces() {
        let (header, expected) = v2_ipv4();
        // Within the signature, across the length, within the addresses,
        // within the TLVs.
        let pieces = [
            &header[..5],
            &header[5..15],
            &header[15..22],
            &header[22..30],
            &header[30..],
        ];
        read_in_pieces(&pieces, expected).await;
    }

    #[tokio::test]
    async fn plain_http_is_missing_and_consumes_nothing() {
        for sent in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"POST /api/publish HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            let (result, rest) = read_sent(sent).await;
            assert!(
                matches!(result, Err(ProxyHeaderError::Missing)),
                "{result:?}"
            );
            assert_eq!(rest, sent);
        }
    }

    #[tokio::test]
    async fn v1_without_crlf_is_too_long() {
        let mut sent = b"PROXY TCP4 ".to_vec();
        sent.resize(200, b'1');
        let (result, _) = read_sent(&sent).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::TooLong)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn v1_malformed() {
        for sent in [
            &b"PROXY TCP4 bogus\r\n"[..],
            b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n",
            b"PROXY UNKNOWN\rx\r\n",
            b"PROXY TCP9 192.0.2.7 198.51.100.1 56324 443\r\n",
        ] {
            let (result, _) = read_sent(sent).await;
            assert!(
                matches!(result, Err(ProxyHeaderError::Malformed(_))),
                "{result:?}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_after_the_v2_signature_is_malformed() {
        let mut sent = V2_SIGNATURE.to_vec();
        sent.extend_from_slice(&[0xff, 0xff, 0x00, 0x0c]);
        // Decided on the fixed part: the payload is not waited for.
        let (mut client, mut server) = pair().await;
        client.write_all(&sent).await.expect("write");
        let result = tokio::time::timeout(Duration::from_secs(5), read(&mut server))
            .await
            .expect("decided without the payload");
        assert!(
            matches!(result, Err(ProxyHeaderError::Malformed(_))),
            "{result:?}"
        );
        drop(client);

        // A TLV longer than what is left of the payload.
        let mut sent = Builder::with_addresses(
            ppp::v2::Version::Two | Command::Proxy,
            Protocol::Stream,
            IPv4::new([192, 0, 2, 7], [198, 51, 100, 1], 56324, 443),
        )
        .write_payload(&[Type::Authority as u8, 0, 9, b'x'][..])
        .expect("payload")
        .build()
        .expect("build");
        sent.extend_from_slice(REQUEST);
        let (result, _) = read_sent(&sent).await;
        assert!(
            matches!(result, Err(ProxyHeaderError::Malformed(_))),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn v2_over_the_cap_is_too_long() {
        let len = u16::try_from(V2_MAX_PAYLOAD_LEN + 1).expect("u16");
        let mut sent = V2_SIGNATURE.to_vec();
        sent.extend_from_slice(&[0x21, 0x11]);
        sent.extend_from_slice(&len.to_be_bytes());
        sent.extend_from_slice(&[0; 12]);
        let (mut client, mut server) = pair().await;
        client.write_all(&sent).await.expect("write");
        let result = tokio::time::timeout(Duration::from_secs(5), read(&mut server))
            .await
            .expect("decided without the payload");
        assert!(
            matches!(result, Err(ProxyHeaderError::TooLong)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn eof_mid_header_is_closed() {
        let (header, _) = v2_ipv4();
        for sent in [
            &b""[..],
            b"PRO",
            b"PROXY TCP4 192.0.2.7",
            &header[..8],
            &header[..14],
            &header[..header.len() - 1],
        ] {
            let (result, _) = read_sent(sent).await;
            assert!(
                matches!(result, Err(ProxyHeaderError::Closed)),
                "{result:?}"
            );
        }
    }

    #[test]
    fn reasons() {
        let io = ProxyHeaderError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(io.reason(), "io");
        let eof = ProxyHeaderError::from(io::Error::from(io::ErrorKind::UnexpectedEof));
        assert_eq!(eof.reason(), "closed");
        assert_eq!(ProxyHeaderError::Missing.reason(), "missing");
        assert_eq!(
            ProxyHeaderError::Malformed(String::new()).reason(),
            "malformed"
        );
        assert_eq!(ProxyHeaderError::TooLong.reason(), "too_long");
    }

    /// CPU time of the calling thread, in clock ticks (USER_HZ, 100 a
    /// second on Linux).
    fn thread_cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        // After the command name in parentheses: state is field 3, utime
        // and stime are fields 14 and 15.
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let tick = |i: usize| fields[i - 3].parse::<u64>().expect("ticks");
        tick(14) + tick(15)
    }

    /// A peer sending half a header and going silent leaves `read` waiting
    /// without burning CPU. The test runtime is single-threaded, so this
    /// thread's CPU time is all that `read` spent.
    #[tokio::test]
    async fn a_silent_peer_does_not_make_read_spin() {
        let (header, _) = v2_ipv4();
        for half in [
            &b"PRO"[..],
            b"PROXY TCP4 192.0.2.7 ",
            &header[..6],
            &header[..20],
        ] {
            let (mut client, mut server) = pair().await;
            client.write_all(half).await.expect("write");
            // Let the bytes arrive, so that every peek could see them.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let before = thread_cpu_ticks();
            let waited = tokio::time::timeout(Duration::from_millis(500), read(&mut server)).await;
            let spent = thread_cpu_ticks() - before;
            assert!(waited.is_err(), "{half:?}: {waited:?}");
            assert!(spent < 10, "{half:?}: {spent} ticks of CPU in 500 ms");
            drop(client);
        }
    }
}
