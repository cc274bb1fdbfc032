//! `wsgate bench idle`: open N connections, hold them, close them.
//!
//! Measures how fast the target completes handshakes (N ÷ the time from the
//! first connect to the last 101, with at most `--concurrency` in flight)
//! and, with `--pid`, what an idle connection costs it: the growth of the
//! target's VmRSS and Pss between before the first connect and the end of
//! the hold, divided by N. Connections are spread over source addresses
//! 127.0.0.1, 127.0.0.2, ... so that one machine can go past one address's
//! ephemeral ports.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use tokio::time::Instant;

use super::client::{Conn, Incoming};
use super::latency::human;
use super::procmem::{self, Sample};
use super::progress::{self, Progress};
use super::report::{self, round2, Summary};
use super::target::{self, Target};
use super::tls::Tls;
use super::{check_count, check_dial, dial, fdlimit, Common, DialArgs};

/// Between the memory reading at the end of the hold and the closes, so
/// that the reading sees every connection open.
const READ_GAP: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
#[command(after_long_help = super::LONG_HELP)]
pub struct IdleArgs {
    /// The WebSocket URL to connect to.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws/echo")]
    pub url: String,
    /// Connections to open and hold. Open files are capped at 20,000 per
    /// process on these machines: above ~19,000 run several bench
    /// processes side by side (or raise `ulimit -n` where allowed).
    #[arg(long, default_value_t = 1000)]
    pub conns: usize,
    /// The target's process id: report its memory per connection (VmRSS
    /// and Pss growth ÷ N). Use a freshly started target: its allocator
    /// keeps memory freed by an earlier run, which hides the growth.
    #[arg(long)]
    pub pid: Option<u32>,
    /// How long to hold the connections once all are open: "5s", "1m" or
    /// plain seconds.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub hold: Duration,
    #[command(flatten)]
    pub dial: DialArgs,
}

/// A checked idle run.
#[derive(Debug)]
pub struct Plan {
    target: Target,
    tls: Option<Tls>,
    conns: usize,
    pid: Option<u32>,
    hold: Duration,
    concurrency: usize,
    sources: usize,
}

impl Plan {
    pub fn new(args: IdleArgs, common: &Common) -> anyhow::Result<Plan> {
        let target = Target::parse(&args.url, "ws")?;
        target.check_local("--url", common.allow_remote)?;
        let tls = Tls::for_target(&target, "--url", common)?;
        check_count("--conns", args.conns, super::MAX_CONNS)?;
        check_dial(&args.dial)?;
        if args.hold + READ_GAP >= common.max_time {
            bail!("--hold must be shorter than --max-time");
        }
        fdlimit::check(args.conns)?;
        Ok(Plan {
            target,
            tls,
            conns: args.conns,
            pid: args.pid,
            hold: args.hold,
            concurrency: args.dial.concurrency,
            sources: args
                .dial
                .sources
                .unwrap_or_else(|| target::default_sources(args.conns))
                .min(args.conns),
        })
    }
}

/// How one held connection ended.
enum Outcome {
    /// Open until the bench closed it.
    Held,
    /// The server closed it during the hold, with this code.
    Closed(u16),
    Failed(String),
}

/// Holds one connection until `until`, answering pings, then closes it.
async fn hold(mut conn: Conn, until: Instant) -> Outcome {
    loop {
        match conn.recv_until(until).await {
            Ok(Incoming::Text(_) | Incoming::Binary(_)) => {}
            Ok(Incoming::Deadline) => {
                conn.close().await;
                return Outcome::Held;
            }
            Ok(Incoming::Closed(code)) => {
                conn.close().await;
                return Outcome::Closed(code);
            }
            Err(e) => return Outcome::Failed(format!("{e:#}")),
        }
    }
}

pub async fn run(plan: Plan, common: Common) -> anyhow::Result<Summary> {
    let addr = plan.target.resolve().await?;
    let dialer = super::client::Dialer::new(
        &plan.target,
        addr,
        target::source_addresses(addr, plan.sources),
        plan.tls.clone(),
    );
    let before = plan.pid.map(procmem::read).transpose()?;
    let show = progress::visible(common.quiet);

    let bar = Progress::start(show, "connecting", plan.conns as u64, None);
    let opened = dial::open_all(&dialer, plan.conns, plan.concurrency, &bar).await;
    bar.finish();
    let opened = opened?;
    let (open_elapsed, rate) = (opened.elapsed, opened.rate());
    let handshakes = opened.handshakes.summary();

    // Hold: every connection in its own task, reading (and answering
    // pings) until the closes start.
    let hold_end = Instant::now() + plan.hold;
    let holders: Vec<_> = opened
        .conns
        .into_iter()
        .map(|c| tokio::spawn(hold(c, hold_end + READ_GAP)))
        .collect();
    let bar = Progress::timer(show, "holding", plan.hold);
    let held_ms = bar.counter();
    let hold_start = Instant::now();
    while Instant::now() < hold_end {
        tokio::time::sleep(Duration::from_millis(100).min(hold_end - Instant::now())).await;
        held_ms.store(
            hold_start.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    bar.finish();
    let after = plan.pid.map(procmem::read).transpose()?;

    let mut held = 0u64;
    let mut closes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = Vec::new();
    for h in holders {
        match h.await {
            Ok(Outcome::Held) => held += 1,
            Ok(Outcome::Closed(code)) => *closes.entry(code).or_default() += 1,
            Ok(Outcome::Failed(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }

    let memory = memory_json(before, after, plan.conns);
    let params = json!({
        "url": plan.target.url,
        "conns": plan.conns,
        "concurrency": plan.concurrency,
        "sources": dialer.sources().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        "hold_s": plan.hold.as_secs_f64(),
        "pid": plan.pid,
    });
    let results = json!({
        "opened": plan.conns,
        "open_s": round2(open_elapsed.as_secs_f64()),
        "handshakes_per_s": round2(rate),
        "handshake_latency": handshakes,
        "held": held,
        "closed_by_server": closes,
        "errors": errors.len(),
        "first_error": errors.first(),
        "memory": memory,
    });
    let mut s = Summary::new("idle", params, results);
    s.row("target", plan.target.url.clone())
        .row(
            "connections",
            format!(
                "{} over {} source address(es), {} at a time",
                report::thousands(plan.conns as u64),
                dialer.sources().len().max(1),
                plan.concurrency
            ),
        )
        .row("opened in", human(open_elapsed.as_micros() as u64))
        .row("handshakes", report::rate(rate))
        .row("handshake latency", handshakes.line())
        .row(
            "held",
            format!(
                "{} for {} ({} closed by the server)",
                report::thousands(held),
                human(plan.hold.as_micros() as u64),
                closes.values().sum::<u64>()
            ),
        );
    for (code, n) in &closes {
        s.row(&format!("  closed {code}"), n.to_string());
    }
    if let (Some(b), Some(a)) = (before, after) {
        s.row(
            "target RSS",
            format!(
                "{} KiB -> {} KiB: {:.2} KiB per connection",
                report::thousands(b.rss_kib),
                report::thousands(a.rss_kib),
                procmem::per_conn(b.rss_kib, a.rss_kib, plan.conns)
            ),
        );
        if let (Some(bp), Some(ap)) = (b.pss_kib, a.pss_kib) {
            s.row(
                "target Pss",
                format!(
                    "{} KiB -> {} KiB: {:.2} KiB per connection",
                    report::thousands(bp),
                    report::thousands(ap),
                    procmem::per_conn(bp, ap, plan.conns)
                ),
            );
        }
    }
    if let Some(e) = errors.first() {
        s.row("errors", format!("{} (first: {e})", errors.len()));
        s.failure = Some(format!(
            "{} connection(s) failed while held: {e}",
            errors.len()
        ));
    }
    Ok(s)
}

/// The memory readings and per-connection growth, for the JSON.
fn memory_json(before: Option<Sample>, after: Option<Sample>, conns: usize) -> serde_json::Value {
    let (Some(b), Some(a)) = (before, after) else {
        return serde_json::Value::Null;
    };
    let pss = match (b.pss_kib, a.pss_kib) {
        (Some(bp), Some(ap)) => Some(round2(procmem::per_conn(bp, ap, conns))),
        _ => None,
    };
    json!({
        "rss_before_kib": b.rss_kib,
        "rss_after_kib": a.rss_kib,
        "rss_per_conn_kib": round2(procmem::per_conn(b.rss_kib, a.rss_kib, conns)),
        "pss_before_kib": b.pss_kib,
        "pss_after_kib": a.pss_kib,
        "pss_per_conn_kib": pss,
    })
}
