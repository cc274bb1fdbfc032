//! The handshake bound: a client that is slow to finish its upgrade
//! request (slowloris) is dropped after `handshake_timeout`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes; returns how long that took.
async fn time_to_close(stream: &mut TcpStream, started: Instant) -> Duration {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server never closed the connection"),
        }
    }
}

#[tokio::test]
async fn silent_client_is_dropped_after_handshake_timeout() {
    let d = Daemon::start("[server]\nhandshake_timeout = \"300ms\"\n").await;
    let started = Instant::now();
    let mut s = TcpStream::connect(d.addr).await.expect("connect");
    let took = time_to_close(&mut s, started).await;
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
}

#[tokio::test]
async fn dribbling_headers_do_not_extend_the_bound() {
    let d = Daemon::start("[server]\nhandshake_timeout = \"300ms\"\n").await;
    let started = Instant::now();
    let mut s = TcpStream::connect(d.addr).await.expect("connect");
    let request = b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n";
    // One byte every 50 ms would take far longer than the bound.
    for byte in request {
        if s.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(2) {
            panic!("still accepting header bytes after 2s");
        }
    }
    let took = time_to_close(&mut s, started).await;
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
