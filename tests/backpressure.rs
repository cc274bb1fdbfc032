//! What a client costs the daemon is bounded, each bound driven past with
//! a real client: the send queue in bytes (`send_queue_bytes`, 4002, also
//! lowered by a reload on a live connection), a socket that takes no bytes
//! (`send_timeout`, 4002 and TCP dropped), and floods of pings and small
//! fragments (`frames_per_second`: dropped, or 1008), with pongs coalesced.
//!
//! The flood tests speak WebSocket over a plain TCP socket ([`Raw`]), so
//! that thousands of frames leave in one write and every frame the daemon
//! sends back is seen as it is.

mod common;
use common::*;

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;

/// A masked client frame.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A WebSocket client on a plain TCP socket.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Upgrades a new connection on `path`; `recv_buffer` sets `SO_RCVBUF`
    /// before connecting.
    async fn connect(d: &Daemon, path: &str, recv_buffer: Option<u32>) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(bytes) = recv_buffer {
            socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        }
        let mut stream = socket.connect(d.addr).await.expect("connect");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            d.addr
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
                raw.buf.drain(..end + 4);
                break head;
            }
            assert!(raw.fill().await > 0, "closed during the upgrade");
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
            .await
            .expect("bytes in time")
            .expect("read");
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next server frame: opcode and payload (`None`: the connection
    /// ended).
    async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut raw = [0u8; 8];
                        raw.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(raw) as usize, 10)
                    }
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let opcode = self.buf[0] & 0x0F;
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            if self.fill().await == 0 {
                return None;
            }
        }
    }

    /// Reads until the text message `until`; returns the pongs' payloads
    /// seen before it.
    async fn pongs_until(&mut self, until: &[u8]) -> Vec<Vec<u8>> {
        let mut pongs = Vec::new();
        loop {
            match self.next().await {
                Some((PONG, p)) => pongs.push(p),
                Some((TEXT, p)) if p == until => return pongs,
                Some((op, p)) => panic!("unexpected frame {op:#x}: {p:?}"),
                None => panic!("closed before {until:?}"),
            }
        }
    }

    /// Reads until the close frame, skipping others; its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            match self.next().await {
                Some((CLOSE, p)) => return u16::from_be_bytes([p[0], p[1]]),
                Some(_) => {}
                None => panic!("ended without a close frame"),
            }
        }
    }
}

/// `n` pings whose payloads are their index, big-endian, in one buffer.
fn pings(n: u32) -> Vec<u8> {
    (0..n)
        .flat_map(|i| frame(true, PING, &i.to_be_bytes()))
        .collect()
}

fn echo_route(limits: &str) -> String {
    format!("[[routes]]\npath = \"/ws/echo\"\nrouter = \"echo\"\n[routes.limits]\n{limits}")
}

#[tokio::test]
async fn a_client_that_reads_gets_a_pong_for_each_ping_in_order() {
    let d = Daemon::start(&echo_route("frames_per_second = 0\n")).await;
    let mut c = Raw::connect(&d, "/ws/echo", None).await;
    let mut burst = pings(10);
    burst.extend(frame(true, TEXT, b"end"));
    c.write(&burst).await;
    let pongs = c.pongs_until(b"end").await;
    let expected: Vec<Vec<u8>> = (0..10u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(pongs, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_are_coalesced_for_a_client_that_does_not_read_and_the_last_answers_the_last_ping() {
    let d = Daemon::start(&echo_route(
        "frames_per_second = 0\nping_interval = \"0s\"\nsend_timeout = \"0s\"\n",
    ))
    .await;
    let c = Raw::connect(&d, "/ws/echo", Some(16 * 1024)).await;
    // Pings with the largest payload a control frame takes (125 bytes: the
    // index, then padding), never read while they are sent: the pongs fill
    // the kernel buffers, after which the socket leaves output unsent and
    // the pings read after that are coalesced.
    let pong_len = 127;
    let n = u32::try_from(4 * kernel_buffers() / pong_len).expect("count");
    let flood: Vec<u8> = (0..n)
        .flat_map(|i| {
            let mut payload = i.to_be_bytes().to_vec();
            payload.resize(125, b'.');
            frame(true, PING, &payload)
        })
        .chain(frame(true, TEXT, b"end"))
        .collect();
    let Raw { stream, buf } = c;
    let (read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move { write.write_all(&flood).await.map(|_| write) });
    let write = tokio::time::timeout(PATIENCE, writer)
        .await
        .expect("the daemon read every ping while its output was blocked")
        .expect("writer")
        .expect("write");
    let mut c = Raw {
        stream: read.reunite(write).expect("reunite"),
        buf,
    };
    let pongs = c.pongs_until(b"end").await;
    assert!(!pongs.is_empty(), "no pong at all");
    assert!(
        (pongs.len() as u64) < u64::from(n) / 2,
        "{} pongs for {n} pings",
        pongs.len()
    );
    let ids: Vec<u32> = pongs
        .iter()
        .map(|p| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        .collect();
    assert_eq!(
        ids.last(),
        Some(&(n - 1)),
        "the last pong answers the last ping"
    );
    // Each pong answers a later ping than the one before.
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        d.metric("wsgate_rate_limited_frames_total{action=\"dropped\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_ping_flood_over_the_frame_budget_gets_no_pongs_with_drop() {
    let d = Daemon::start(&echo_route(
        "frames_per_second = 200\nframe_burst = 400\non_rate_limit = \"drop\"\n",
    ))
    .await;
    let mut c = Raw::connect(&d, "/ws/echo", None).await;
    let started = Instant::now();
    let mut flood = pings(10_000);
    flood.extend(frame(true, TEXT, b"end"));
    c.write(&flood).await;
    let pongs = c.pongs_until(b"end").await;
    let secs = started.elapsed().as_secs_f64();
    assert!(pongs.len() < 1000, "{} pongs for 10,000 pings", pongs.len());
    // At most the burst and what refilled meanwhile passed; the rest was
    // dropped and counted.
    let passed = 400.0 + 200.0 * secs;
    let dropped = d
        .metric("wsgate_rate_limited_frames_total{action=\"dropped\"}")
        .await;
    assert!(
        dropped >= 10_000.0 - passed && dropped <= 10_000.0 - 400.0,
        "dropped {dropped} in {secs:.2}s"
    );
    d.wait_log(&["frame budget exceeded"]).await;
    // The connection stays, and answers pings again once the bucket refills.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut one = frame(true, PING, b"again");
    one.extend(frame(true, TEXT, b"end2"));
    c.write(&one).await;
    assert_eq!(c.pongs_until(b"end2").await, vec![b"again".to_vec()]);
}

#[tokio::test]
async fn a_ping_flood_over_the_frame_budget_closes_with_1008_with_close() {
    let d = Daemon::start(&echo_route(
        "frames_per_second = 200\nframe_burst = 400\non_rate_limit = \"close\"\n",
    ))
    .await;
    let mut c = Raw::connect(&d, "/ws/echo", None).await;
    c.write(&pings(10_000)).await;
    assert_eq!(c.close_code().await, 1008);
    d.wait_metric("wsgate_rate_limited_frames_total{action=\"closed\"}", 1.0)
        .await;
    d.wait_metric("wsgate_closes_total{code=\"1008\"}", 1.0)
        .await;
}

#[tokio::test]
async fn empty_fragments_over_the_budget_are_dropped_but_data_fragments_close_with_1008() {
    let d = Daemon::start(&echo_route(
        "frames_per_second = 200\nframe_burst = 400\non_rate_limit = \"drop\"\n",
    ))
    .await;

    // 2,000 empty fragments: leaving them out changes nothing, so the
    // message arrives whole and the connection stays.
    let mut c = Raw::connect(&d, "/ws/echo", None).await;
    let mut msg = frame(false, TEXT, b"he");
    for _ in 0..2000 {
        msg.extend(frame(false, CONTINUATION, b""));
    }
    msg.extend(frame(true, CONTINUATION, b"llo"));
    c.write(&msg).await;
    assert!(c.pongs_until(b"hello").await.is_empty());
    let dropped = d
        .metric("wsgate_rate_limited_frames_total{action=\"dropped\"}")
        .await;
    assert!(dropped >= 1000.0, "dropped {dropped}");

    // 2,000 one-byte fragments cannot be left out without corrupting the
    // message: 1008 even with `drop`.
    let mut c = Raw::connect(&d, "/ws/echo", None).await;
    let mut msg = frame(false, BINARY, b"x");
    for _ in 0..2000 {
        msg.extend(frame(false, CONTINUATION, b"x"));
    }
    msg.extend(frame(true, CONTINUATION, b"x"));
    c.write(&msg).await;
    assert_eq!(c.close_code().await, 1008);
    d.wait_metric("wsgate_rate_limited_frames_total{action=\"closed\"}", 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_after_send_timeout() {
    let d = Daemon::start(&format!(
        "[server]\nclose_timeout = \"500ms\"\n{}",
        echo_route(
            "send_timeout = \"300ms\"\nping_interval = \"0s\"\nmessages_per_second = 0\n\
             send_queue_bytes = 16777216\nsend_queue = 100000\n",
        )
    ))
    .await;
    let c = Raw::connect(&d, "/ws/echo", Some(16 * 1024)).await;
    let Raw { stream, .. } = c;
    let (mut read, mut write) = stream.into_split();
    // Echoes of 60 KiB messages, never read: the kernel buffers fill, the
    // daemon stops reading, and then the socket takes no more bytes.
    let writer = tokio::spawn(async move {
        let message = frame(true, BINARY, &[7u8; 60 * 1024]);
        for _ in 0..2000 {
            if write.write_all(&message).await.is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    d.wait_metric(
        "wsgate_slow_consumer_closes_total{reason=\"no_write_progress\"}",
        1.0,
    )
    .await;
    d.wait_metric("wsgate_closes_total{code=\"4002\"}", 1.0)
        .await;
    d.wait_log(&["code=4002", "no write progress"]).await;
    assert_eq!(
        d.metric("wsgate_slow_consumer_closes_total{reason=\"queue_bytes\"}")
            .await,
        0.0
    );
    // The daemon dropped the TCP connection: reading what the kernel holds
    // ends (EOF or a reset) instead of waiting for more.
    let mut sink = vec![0u8; 64 * 1024];
    let drained = tokio::time::timeout(PATIENCE, async {
        loop {
            match read.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the connection is still up");
    assert!(started.elapsed() < PATIENCE);
    writer.abort();
}

/// The padding of each publication.
const PAD: usize = 32 * 1024;

async fn publish(d: &Daemon, seq: usize) -> u64 {
    let auth = [
        ("Authorization", "Bearer k"),
        ("Content-Type", "application/json"),
    ];
    let body = json!({"topic": "t", "data": {"seq": seq, "pad": "x".repeat(PAD)}}).to_string();
    let resp = d.http("POST", "/api/publish", &auth, &body).await;
    assert_eq!(resp.status, 200, "publish {seq}: {}", resp.body);
    resp.json()["delivered"].as_u64().expect("delivered")
}

/// Bytes of publications the kernel may hold between the daemon and a
/// client that does not read: the daemon's send buffer grows up to
/// `tcp_wmem`'s maximum.
fn kernel_buffers() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(16 << 20)
        + 256 * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_lowering_send_queue_bytes_cuts_off_a_live_subscriber_that_does_not_read() {
    // The queue bound in messages never bites here; in bytes it starts far
    // above what the kernel buffers and the publications below add up to.
    let high = 4 * kernel_buffers() + (64 << 20);
    let config = |bytes: usize| {
        format!(
            "[server]\nreload_debounce = \"200ms\"\nclose_timeout = \"1s\"\n[api]\nkeys = [\"k\"]\n\
             [limits]\nsend_queue = 100000\nsend_queue_bytes = {bytes}\nping_interval = \"0s\"\n"
        )
    };
    let d = Daemon::start(&config(high)).await;
    let mut slow = d.connect_with_recv_buffer("/ws", 64 * 1024).await;
    send_json(&mut slow, json!({"type": "subscribe", "topics": ["t"]})).await;
    recv_type(&mut slow, "subscribed").await;

    // A few publications under the high bound: all taken.
    for seq in 0..8 {
        assert_eq!(publish(&d, seq).await, 1);
    }
    d.write_config(&config(256 * 1024));
    d.wait_reloads("ok", 1.0).await;

    // Under the lowered bound the connection is cut off once the kernel
    // buffers are full and 256 KiB more wait, well before the high bound
    // could have been reached.
    let max = 8 + 2 * kernel_buffers() / PAD;
    let mut seq = 8;
    while publish(&d, seq).await == 1 {
        seq += 1;
        assert!(seq < max, "still taking publications after {seq}");
    }
    d.wait_metric(
        "wsgate_slow_consumer_closes_total{reason=\"queue_bytes\"}",
        1.0,
    )
    .await;
    assert_eq!(
        d.metric("wsgate_slow_consumer_closes_total{reason=\"queue_full\"}")
            .await,
        0.0
    );
    let (code, reason) = expect_close(&mut slow).await;
    assert_eq!(code, 4002);
    assert_eq!(reason, "slow consumer: send queue over send_queue_bytes");
    // The admin total counts every reason.
    let stats = d.admin(json!({"id": "s", "cmd": "stats"})).await;
    assert_eq!(stats["slow_consumer_closes"], 1, "{stats}");
}

#[tokio::test]
async fn check_refuses_send_queue_bytes_below_max_message_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wsgate.toml");
    std::fs::write(
        &path,
        "[limits]\nmax_message_bytes = 2097152\n[[routes]]\npath = \"/e\"\nrouter = \"echo\"\n\
         [routes.limits]\nsend_queue_bytes = 4194304\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .output()
        .expect("run check");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    // The global limits are refused (1 MiB < 2 MiB); the route that raises
    // its own bound is fine.
    assert!(
        text.contains("limits.send_queue_bytes: must be at least max_message_bytes (2097152)"),
        "{text}"
    );
    assert!(!text.contains("routes[0]"), "{text}");
}
