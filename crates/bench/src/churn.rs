//! `wsgate bench churn`: connections that come and go, and what the target
//! keeps of them.
//!
//! R rounds of M cycles. A cycle connects to the echo route, sends one
//! message, checks its echo and ends the connection: even-numbered cycles
//! with a clean close handshake (1000), odd-numbered ones with a TCP reset
//! (`SO_LINGER` 0, then the socket is dropped). At most `--concurrency`
//! cycles run at once. After each round the bench waits (up to `--settle`)
//! for the target's open files to come back to what they were before the
//! first round, then reads its VmRSS, Pss and open files.
//!
//! The summary is the growth of RSS over the last `--tail` rounds (the end
//! of the last round minus the end of the round `--tail` rounds before
//! it) and between the first and the last round: a server that frees what
//! a connection took plateaus after its first rounds, one that leaks grows
//! by the same amount every round.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use fastwebsockets::OpCode;
use serde_json::json;
use tokio::time::Instant;

use super::client::{Dialer, Incoming};
use super::dial::{lock, per_second};
use super::procmem;
use super::progress::{self, Progress};
use super::report::{self, round2, Summary};
use super::target::{self, Target};
use super::tls::Tls;
use super::{check_count, Common};

/// Most rounds.
pub const MAX_ROUNDS: usize = 10_000;
/// Most cycles per round.
pub const MAX_CYCLES: usize = 1_000_000;
/// How long one cycle may take before it counts as failed.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the target's open files are read while settling.
const SETTLE_POLL: Duration = Duration::from_millis(20);

#[derive(clap::Args, Debug)]
#[command(after_long_help = super::LONG_HELP)]
pub struct ChurnArgs {
    /// The echo route's URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws/echo")]
    pub url: String,
    /// The target's process id: its memory and open files are read after
    /// every round.
    #[arg(long)]
    pub pid: u32,
    /// Rounds.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Connect/echo/close cycles per round; half end with a close
    /// handshake, half with a TCP reset.
    #[arg(long, default_value_t = 1000)]
    pub cycles: usize,
    /// Cycles in flight at once.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Payload size of the one message each cycle sends, in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Rounds at the end whose RSS growth is summed in the summary.
    #[arg(long, default_value_t = 10)]
    pub tail: usize,
    /// After a round, how long to wait for the target's open files to come
    /// back to their count before the first round: "5s" or plain seconds.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub settle: Duration,
    /// Fail the run when the RSS growth over the last --tail rounds is
    /// more than this many KiB.
    #[arg(long)]
    pub max_tail_growth_kib: Option<u64>,
    /// Source addresses to spread connections over (127.0.0.1, ...).
    #[arg(long, default_value_t = 1)]
    pub sources: usize,
}

/// A checked churn run.
#[derive(Debug)]
pub struct Plan {
    target: Target,
    tls: Option<Tls>,
    pid: u32,
    rounds: usize,
    cycles: usize,
    concurrency: usize,
    size: usize,
    tail: usize,
    settle: Duration,
    max_tail_growth_kib: Option<u64>,
    sources: usize,
}

impl Plan {
    pub fn new(args: ChurnArgs, common: &Common) -> anyhow::Result<Plan> {
        let target = Target::parse(&args.url, "ws")?;
        target.check_local("--url", common.allow_remote)?;
        let tls = Tls::for_target(&target, "--url", common)?;
        check_count("--rounds", args.rounds, MAX_ROUNDS)?;
        check_count("--cycles", args.cycles, MAX_CYCLES)?;
        check_count("--concurrency", args.concurrency, super::MAX_CONCURRENCY)?;
        check_count("--size", args.size, super::MAX_SIZE)?;
        check_count("--tail", args.tail, MAX_ROUNDS)?;
        check_count("--sources", args.sources, super::MAX_SOURCES)?;
        if args.settle >= common.max_time {
            bail!("--settle must be shorter than --max-time");
        }
        super::fdlimit::check(args.concurrency)?;
        // The target must be readable before anything connects.
        procmem::read(args.pid)?;
        procmem::open_fds(args.pid)?;
        Ok(Plan {
            target,
            tls,
            pid: args.pid,
            rounds: args.rounds,
            cycles: args.cycles,
            concurrency: args.concurrency,
            size: args.size,
            tail: args.tail,
            settle: args.settle,
            max_tail_growth_kib: args.max_tail_growth_kib,
            sources: args.sources,
        })
    }
}

/// How a cycle ends its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Clean,
    Reset,
}

impl Ending {
    /// Even cycles close cleanly, odd ones reset.
    fn of(cycle: usize) -> Ending {
        if cycle.is_multiple_of(2) {
            Ending::Clean
        } else {
            Ending::Reset
        }
    }
}

/// The message of cycle `i`: it differs between cycles, so that an echo
/// meant for another connection does not pass.
fn payload(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| (i.wrapping_add(j) % 251) as u8).collect()
}

/// One cycle: connect, one round trip, end.
async fn cycle(dialer: &Dialer, i: usize, size: usize) -> anyhow::Result<Ending> {
    let mut conn = dialer.connect(i).await?;
    let sent = payload(i, size);
    conn.send(OpCode::Binary, &sent).await?;
    let got = match conn.recv_until(Instant::now() + CYCLE_TIMEOUT).await? {
        Incoming::Binary(b) => b,
        Incoming::Text(_) => bail!("the echo came back as text"),
        Incoming::Closed(code) => bail!("the server closed with {code} before echoing"),
        Incoming::Deadline => bail!("no echo within {}s", CYCLE_TIMEOUT.as_secs()),
    };
    if got[..] != sent[..] {
        bail!(
            "the echo differs from what was sent ({} bytes sent, {} back)",
            sent.len(),
            got.len()
        );
    }
    let ending = Ending::of(i);
    match ending {
        Ending::Clean => conn.close().await,
        Ending::Reset => conn.reset()?,
    }
    Ok(ending)
}

/// What one round counted.
#[derive(Debug, Default)]
struct Counts {
    clean: AtomicU64,
    reset: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Runs `cycles` cycles, `concurrency` at a time; cycle numbers start at
/// `first` so that every cycle of the run has its own.
async fn round(
    dialer: &Arc<Dialer>,
    first: usize,
    cycles: usize,
    concurrency: usize,
    size: usize,
    done: &Arc<AtomicU64>,
) -> anyhow::Result<Arc<Counts>> {
    let next = Arc::new(AtomicU64::new(0));
    let counts = Arc::new(Counts::default());
    let workers: Vec<_> = (0..concurrency.min(cycles))
        .map(|_| {
            let (dialer, next, counts, done) =
                (dialer.clone(), next.clone(), counts.clone(), done.clone());
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if k >= cycles {
                        return;
                    }
                    let i = first + k;
                    match tokio::time::timeout(CYCLE_TIMEOUT, cycle(&dialer, i, size)).await {
                        Ok(Ok(Ending::Clean)) => counts.clean.fetch_add(1, Ordering::Relaxed),
                        Ok(Ok(Ending::Reset)) => counts.reset.fetch_add(1, Ordering::Relaxed),
                        Ok(Err(e)) => fail(&counts, format!("cycle {}: {e:#}", i + 1)),
                        Err(_) => fail(
                            &counts,
                            format!(
                                "cycle {}: not done within {}s",
                                i + 1,
                                CYCLE_TIMEOUT.as_secs()
                            ),
                        ),
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        if let Err(e) = w.await {
            fail(&counts, format!("a cycle task failed: {e}"));
        }
    }
    Ok(counts)
}

/// Counts a failed cycle, keeping the first error.
fn fail(counts: &Counts, e: String) -> u64 {
    if let Ok(mut first) = counts.first_error.lock() {
        first.get_or_insert(e);
    }
    counts.failed.fetch_add(1, Ordering::Relaxed)
}

/// The target after a round.
#[derive(Debug, Clone, Copy)]
struct Reading {
    rss_kib: u64,
    pss_kib: Option<u64>,
    fds: u64,
    /// How long the open files took to come back down.
    settle: Duration,
    settled: bool,
}

/// Waits (up to `settle`) for the target's open files to be back at
/// `fds_before`, then reads its memory.
async fn settle_and_read(pid: u32, fds_before: u64, settle: Duration) -> anyhow::Result<Reading> {
    let start = Instant::now();
    let mut fds = procmem::open_fds(pid)?;
    while fds > fds_before && start.elapsed() < settle {
        tokio::time::sleep(SETTLE_POLL).await;
        fds = procmem::open_fds(pid)?;
    }
    let settled = fds <= fds_before;
    let settle = start.elapsed();
    let mem = procmem::read(pid)?;
    Ok(Reading {
        rss_kib: mem.rss_kib,
        pss_kib: mem.pss_kib,
        fds,
        settle,
        settled,
    })
}

/// Growth from `from` to `to` in KiB (negative when memory was returned).
fn growth(from: u64, to: u64) -> i64 {
    i64::try_from(to).unwrap_or(i64::MAX) - i64::try_from(from).unwrap_or(i64::MAX)
}

/// The RSS growth over the last `tail` rounds: the reading after the last
/// round minus the one `tail` rounds before it (the reading before the
/// first round when there are no more rounds than that).
fn tail_growth(baseline: u64, rss: &[u64], tail: usize) -> i64 {
    let Some(&last) = rss.last() else { return 0 };
    let from = if rss.len() > tail {
        rss[rss.len() - 1 - tail]
    } else {
        baseline
    };
    growth(from, last)
}

/// A signed KiB figure for the table: `+12 KiB`, `-3 KiB`.
fn signed_kib(kib: i64) -> String {
    let sign = if kib < 0 { "-" } else { "+" };
    format!("{sign}{} KiB", report::thousands(kib.unsigned_abs()))
}

pub async fn run(plan: Plan, common: Common) -> anyhow::Result<Summary> {
    let addr = plan.target.resolve().await?;
    let dialer = Arc::new(Dialer::new(
        &plan.target,
        addr,
        target::source_addresses(addr, plan.sources),
        plan.tls.clone(),
    ));
    let show = progress::visible(common.quiet);
    let fds_before = procmem::open_fds(plan.pid)?;
    let before = procmem::read(plan.pid)?;

    let mut rounds = Vec::with_capacity(plan.rounds);
    let mut rss = Vec::with_capacity(plan.rounds);
    let mut totals = (0u64, 0u64, 0u64);
    let mut first_error: Option<String> = None;
    let bar = Progress::start(show, "cycles", (plan.rounds * plan.cycles) as u64, None);
    let done = bar.counter();
    let started = Instant::now();
    for r in 0..plan.rounds {
        let t0 = Instant::now();
        let counts = round(
            &dialer,
            r * plan.cycles,
            plan.cycles,
            plan.concurrency,
            plan.size,
            &done,
        )
        .await?;
        let elapsed = t0.elapsed();
        let reading = settle_and_read(plan.pid, fds_before, plan.settle).await?;
        let (clean, reset, failed) = (
            counts.clean.load(Ordering::Relaxed),
            counts.reset.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed),
        );
        totals = (totals.0 + clean, totals.1 + reset, totals.2 + failed);
        if first_error.is_none() {
            first_error = lock(&counts.first_error)?.clone();
        }
        rss.push(reading.rss_kib);
        rounds.push(json!({
            "round": r + 1,
            "clean": clean,
            "reset": reset,
            "failed": failed,
            "elapsed_s": round2(elapsed.as_secs_f64()),
            "cycles_per_s": round2(per_second(clean + reset, elapsed)),
            "rss_kib": reading.rss_kib,
            "pss_kib": reading.pss_kib,
            "fds": reading.fds,
            "settle_s": round2(reading.settle.as_secs_f64()),
            "settled": reading.settled,
        }));
    }
    let elapsed = started.elapsed();
    bar.finish();

    let first = rss.first().copied().unwrap_or(before.rss_kib);
    let last = rss.last().copied().unwrap_or(before.rss_kib);
    let tail = plan.tail.min(plan.rounds);
    let tail_kib = tail_growth(before.rss_kib, &rss, plan.tail);
    let fds_last = rounds
        .last()
        .and_then(|r| r["fds"].as_u64())
        .unwrap_or(fds_before);
    let unsettled = rounds.iter().filter(|r| r["settled"] == false).count();

    let params = json!({
        "url": plan.target.url,
        "pid": plan.pid,
        "rounds": plan.rounds,
        "cycles": plan.cycles,
        "concurrency": plan.concurrency,
        "size": plan.size,
        "tail": plan.tail,
        "settle_s": plan.settle.as_secs_f64(),
        "max_tail_growth_kib": plan.max_tail_growth_kib,
        "sources": dialer.sources().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
    });
    let results = json!({
        "cycles": totals.0 + totals.1 + totals.2,
        "clean": totals.0,
        "reset": totals.1,
        "failed": totals.2,
        "first_error": first_error,
        "elapsed_s": round2(elapsed.as_secs_f64()),
        "before": {"rss_kib": before.rss_kib, "pss_kib": before.pss_kib, "fds": fds_before},
        "rounds": rounds,
        "rss_first_round_kib": first,
        "rss_last_round_kib": last,
        "growth_first_to_last_kib": growth(first, last),
        "tail_rounds": tail,
        "tail_growth_kib": tail_kib,
        "fds_before": fds_before,
        "fds_last_round": fds_last,
        "unsettled_rounds": unsettled,
    });

    let mut s = Summary::new("churn", params, results);
    s.row("target", format!("{} (pid {})", plan.target.url, plan.pid))
        .row(
            "cycles",
            format!(
                "{} rounds × {} (half close 1000, half TCP reset), {} at a time",
                plan.rounds,
                report::thousands(plan.cycles as u64),
                plan.concurrency
            ),
        )
        .row(
            "before",
            format!(
                "RSS {} KiB, {fds_before} open files",
                report::thousands(before.rss_kib)
            ),
        );
    let mut prev = before.rss_kib;
    for r in &s.results["rounds"].as_array().cloned().unwrap_or_default() {
        let now = r["rss_kib"].as_u64().unwrap_or(0);
        s.row(
            &format!("round {}", r["round"]),
            format!(
                "{} clean, {} reset, {} failed in {:.2} s; RSS {} KiB ({}), {} files{}",
                r["clean"],
                r["reset"],
                r["failed"],
                r["elapsed_s"].as_f64().unwrap_or(0.0),
                report::thousands(now),
                signed_kib(growth(prev, now)),
                r["fds"],
                if r["settled"] == false {
                    " (not settled)"
                } else {
                    ""
                }
            ),
        );
        prev = now;
    }
    s.row(
        "first to last round",
        format!(
            "RSS {} KiB -> {} KiB: {}",
            report::thousands(first),
            report::thousands(last),
            signed_kib(growth(first, last))
        ),
    )
    .row(
        &format!("last {tail} rounds"),
        format!("RSS {}", signed_kib(tail_kib)),
    )
    .row(
        "open files",
        format!("{fds_before} before, {fds_last} after the last round"),
    );
    let mut problems = Vec::new();
    if totals.2 > 0 {
        let e = first_error.as_deref().unwrap_or("unknown");
        s.row("failed", format!("{} (first: {e})", totals.2));
        problems.push(format!("{} cycle(s) failed: {e}", totals.2));
    }
    if let Some(max) = plan.max_tail_growth_kib {
        if tail_kib > i64::try_from(max).unwrap_or(i64::MAX) {
            problems.push(format!(
                "RSS grew by {tail_kib} KiB over the last {tail} rounds, over \
                 --max-tail-growth-kib {max}"
            ));
        }
    }
    if !problems.is_empty() {
        s.failure = Some(problems.join("; "));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_cycles_reset() {
        let endings: Vec<_> = (0..6).map(Ending::of).collect();
        assert_eq!(endings.iter().filter(|e| **e == Ending::Reset).count(), 3);
        assert_eq!(Ending::of(0), Ending::Clean);
        assert_eq!(Ending::of(1), Ending::Reset);
    }

    #[test]
    fn payloads_differ_between_cycles() {
        assert_eq!(payload(0, 3), vec![0, 1, 2]);
        assert_ne!(payload(0, 8), payload(1, 8));
    }

    #[test]
    fn tail_growth_counts_the_last_rounds() {
        let rss = [100, 110, 112, 112, 113];
        assert_eq!(tail_growth(90, &rss, 2), 1);
        assert_eq!(tail_growth(90, &rss, 4), 13);
        // No more rounds than the tail: from before the first round.
        assert_eq!(tail_growth(90, &rss, 5), 23);
        assert_eq!(tail_growth(90, &rss, 50), 23);
        assert_eq!(tail_growth(120, &rss, 9), -7);
        assert_eq!(tail_growth(90, &[], 3), 0);
    }

    #[test]
    fn signed_figures() {
        assert_eq!(signed_kib(1_234), "+1,234 KiB");
        assert_eq!(signed_kib(-5), "-5 KiB");
        assert_eq!(signed_kib(0), "+0 KiB");
    }
}
