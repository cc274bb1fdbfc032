//! `wsgate bench echo`: C connections, each doing M sequential round trips
//! (send an S-byte message, wait for its echo, check it byte for byte).
//!
//! Measures throughput (C × M ÷ the time from the common start to the last
//! echo) and round-trip latency (send to echo, per message). One
//! connection never has two messages in flight, so latency is not inflated
//! by the bench's own queueing; throughput comes from C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use fastwebsockets::OpCode;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::client::{Conn, Dialer, Incoming};
use super::dial::{self, lock, per_second};
use super::latency::{human, Latency};
use super::progress::{self, Progress};
use super::report::{self, round2, Summary};
use super::target::{self, Target};
use super::tls::Tls;
use super::{check_count, check_dial, fdlimit, Common, DialArgs};

/// How long one echo may take before the run is failed.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
#[command(after_long_help = super::LONG_HELP)]
pub struct EchoArgs {
    /// The echo route's URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws/echo")]
    pub url: String,
    /// Connections, all doing round trips at once.
    #[arg(long, default_value_t = 50)]
    pub conns: usize,
    /// Round trips per connection, one after another.
    #[arg(long, default_value_t = 1000)]
    pub msgs: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Send text messages (ASCII) instead of binary ones.
    #[arg(long)]
    pub text: bool,
    #[command(flatten)]
    pub dial: DialArgs,
}

/// A checked echo run.
#[derive(Debug)]
pub struct Plan {
    target: Target,
    tls: Option<Tls>,
    conns: usize,
    msgs: u64,
    size: usize,
    text: bool,
    concurrency: usize,
    sources: usize,
}

impl Plan {
    pub fn new(args: EchoArgs, common: &Common) -> anyhow::Result<Plan> {
        let target = Target::parse(&args.url, "ws")?;
        target.check_local("--url", common.allow_remote)?;
        let tls = Tls::for_target(&target, "--url", common)?;
        check_count("--conns", args.conns, super::MAX_CONNS)?;
        check_count("--msgs", args.msgs, super::MAX_ECHO_MSGS)?;
        check_count("--size", args.size, super::MAX_SIZE)?;
        let total = args.conns as u64 * args.msgs;
        if total > super::MAX_ECHO_TOTAL {
            bail!(
                "--conns × --msgs is {total} round trips, over the bench's upper bound of {}",
                super::MAX_ECHO_TOTAL
            );
        }
        check_dial(&args.dial)?;
        fdlimit::check(args.conns)?;
        Ok(Plan {
            target,
            tls,
            conns: args.conns,
            msgs: args.msgs,
            size: args.size,
            text: args.text,
            concurrency: args.dial.concurrency,
            sources: args
                .dial
                .sources
                .unwrap_or_else(|| target::default_sources(args.conns))
                .min(args.conns),
        })
    }
}

/// Message `i` of connection `c`: it differs between messages, so a stale
/// or misrouted echo does not pass the check.
fn payload(c: usize, i: u64, size: usize, text: bool) -> Vec<u8> {
    let start = (c as u64).wrapping_mul(31).wrapping_add(i);
    (0..size as u64)
        .map(|j| {
            let k = start.wrapping_add(j);
            if text {
                b'a' + (k % 26) as u8
            } else {
                k as u8
            }
        })
        .collect()
}

/// What every round-trip task shares.
struct Shared {
    msgs: u64,
    size: usize,
    opcode: OpCode,
    deadline: Instant,
    start: Barrier,
    stop: AtomicBool,
    latency: Mutex<Latency>,
    done: Arc<std::sync::atomic::AtomicU64>,
}

/// M round trips on one connection; returns when the last echo came.
async fn round_trips(conn: &mut Conn, c: usize, shared: &Shared) -> anyhow::Result<Instant> {
    for i in 0..shared.msgs {
        if shared.stop.load(Ordering::Relaxed) {
            bail!("stopped: another connection failed");
        }
        let sent = payload(c, i, shared.size, shared.opcode == OpCode::Text);
        let t0 = Instant::now();
        conn.send(shared.opcode, &sent).await?;
        let until = (t0 + ECHO_TIMEOUT).min(shared.deadline);
        let (opcode, got) = match conn.recv_until(until).await? {
            Incoming::Text(b) => (OpCode::Text, b),
            Incoming::Binary(b) => (OpCode::Binary, b),
            Incoming::Closed(code) => bail!("message {i}: the server closed with {code}"),
            Incoming::Deadline => bail!(
                "message {i}: no echo within {}s (a rate limit dropping messages? \
                 set the target's messages_per_second = 0 for this bench)",
                ECHO_TIMEOUT.as_secs()
            ),
        };
        let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        if opcode != shared.opcode || got[..] != sent[..] {
            bail!(
                "message {i}: the echo differs from what was sent ({} bytes {:?} sent, \
                 {} bytes {:?} back)",
                sent.len(),
                shared.opcode,
                got.len(),
                opcode
            );
        }
        lock(&shared.latency)?.record(micros);
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Instant::now())
}

pub async fn run(plan: Plan, common: Common) -> anyhow::Result<Summary> {
    let deadline = Instant::now() + common.max_time;
    let addr = plan.target.resolve().await?;
    let dialer = Dialer::new(
        &plan.target,
        addr,
        target::source_addresses(addr, plan.sources),
        plan.tls.clone(),
    );
    let show = progress::visible(common.quiet);

    let bar = Progress::start(show, "connecting", plan.conns as u64, None);
    let opened = dial::open_all(&dialer, plan.conns, plan.concurrency, &bar).await;
    bar.finish();
    let opened = opened?;
    let connect_s = opened.elapsed.as_secs_f64();
    let opened_us = opened.elapsed.as_micros() as u64;

    let total = plan.conns as u64 * plan.msgs;
    let bar = Progress::start(show, "round trips", total, None);
    let shared = Arc::new(Shared {
        msgs: plan.msgs,
        size: plan.size,
        opcode: if plan.text {
            OpCode::Text
        } else {
            OpCode::Binary
        },
        deadline,
        start: Barrier::new(plan.conns + 1),
        stop: AtomicBool::new(false),
        latency: Mutex::new(Latency::new()?),
        done: bar.counter(),
    });
    let tasks: Vec<_> = opened
        .conns
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let shared = shared.clone();
            tokio::spawn(async move {
                shared.start.wait().await;
                let result = round_trips(&mut conn, c, &shared).await;
                if result.is_err() {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                conn.close().await;
                result.with_context(|| format!("connection {}", c + 1))
            })
        })
        .collect();
    shared.start.wait().await;
    let started = Instant::now();
    let mut last = started;
    let mut first_error = None;
    for t in tasks {
        match t.await.context("a round-trip task failed").and_then(|r| r) {
            Ok(finished) => last = last.max(finished),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    bar.finish();
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = last - started;
    let latency = lock(&shared.latency)?.summary();
    let msgs_per_s = per_second(total, elapsed);
    let mib_per_s = msgs_per_s * plan.size as f64 / f64::from(1 << 20);

    let params = json!({
        "url": plan.target.url,
        "conns": plan.conns,
        "msgs": plan.msgs,
        "size": plan.size,
        "payload": if plan.text { "text" } else { "binary" },
        "concurrency": plan.concurrency,
        "sources": dialer.sources().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
    });
    let results = json!({
        "connect_s": round2(connect_s),
        "round_trips": total,
        "elapsed_s": round2(elapsed.as_secs_f64()),
        "msgs_per_s": round2(msgs_per_s),
        "mib_per_s": round2(mib_per_s),
        "latency": latency,
        "mismatches": 0,
    });
    let mut s = Summary::new("echo", params, results);
    s.row("target", plan.target.url.clone())
        .row(
            "connections",
            format!("{} (opened in {})", plan.conns, human(opened_us)),
        )
        .row(
            "round trips",
            format!(
                "{} × {} of {} B {}, all echoes identical",
                plan.conns,
                report::thousands(plan.msgs),
                plan.size,
                if plan.text { "text" } else { "binary" }
            ),
        )
        .row("elapsed", human(elapsed.as_micros() as u64))
        .row(
            "throughput",
            format!(
                "{} ({mib_per_s:.2} MiB/s each way)",
                report::rate(msgs_per_s)
            ),
        )
        .row("latency", latency.line())
        .row(
            "mean latency",
            super::latency::human(latency.mean_us.round() as u64),
        );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_between_messages_and_connections() {
        assert_eq!(payload(0, 0, 5, false), vec![0, 1, 2, 3, 4]);
        assert_ne!(payload(0, 0, 8, false), payload(0, 1, 8, false));
        assert_ne!(payload(0, 0, 8, false), payload(1, 0, 8, false));
        let text = payload(3, 9, 100, true);
        assert_eq!(text.len(), 100);
        assert!(text.iter().all(u8::is_ascii_lowercase));
    }
}
