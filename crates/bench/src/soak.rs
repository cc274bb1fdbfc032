//! `wsgate bench soak`: many connections held for minutes under a steady
//! publish rate, every delivery accounted for, the target watched over
//! time.
//!
//! The phases:
//!
//! 1. connect N connections to the pub/sub route, all subscribed to one
//!    topic (`topics=T` in the URL's query); the first `--echoing` of them
//!    also do round trips once publishing starts: an application-level
//!    `{"type":"ping","id":n}` answered by `{"type":"pong","id":n}`, one in
//!    flight at a time, about every `--echo-every`;
//! 2. warm up as `fanout` does, until every connection has a message;
//! 3. publish `--publish-rate` messages a second over the HTTP API for
//!    `--duration`, each stamped with its number and send time; the
//!    target's RSS is read every `--sample-every` (with `--pid`);
//! 4. wait for the deliveries (at most [`GRACE`] after the last publish),
//!    read the target's RSS a last time, and only then let the
//!    connections close.
//!
//! Reports per connection the messages lost and duplicated, and per
//! `--window` of send time the delivery latency (publish to delivery) and
//! the echoing connections' round trips; the first and the last window
//! side by side; and the RSS at the start of publishing, at its end, and
//! its change in percent.

mod subscriber;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use tokio::time::Instant;

use super::client::Dialer;
use super::dial::{self, lock, per_second};
use super::latency::{human, Latency};
use super::payload;
use super::procmem;
use super::progress::{self, Progress};
use super::publisher::Publisher;
use super::report::{self, round2, Summary};
use super::target::{self, Target};
use super::tls::Tls;
use super::{check_count, check_dial, fdlimit, Common, DialArgs};
use subscriber::{Shared, Tally, NOT_STARTED};

/// How long the connections have to receive their first warm-up message.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a warm-up message is published until all have one.
const WARMUP_EVERY: Duration = Duration::from_millis(200);
/// How long deliveries are waited for after the last publish.
const GRACE: Duration = Duration::from_secs(10);
/// The close code of a slow consumer.
const SLOW_CONSUMER: u16 = 4002;
/// Most windows in one run.
const MAX_WINDOWS: u64 = 1_000;

#[derive(clap::Args, Debug)]
#[command(after_long_help = super::LONG_HELP)]
pub struct SoakArgs {
    /// The pub/sub route's URL; `topics=<topic>` is added to its query
    /// unless it has a `topics` parameter.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Connections, all subscribed to the topic.
    #[arg(long, default_value_t = 15_000)]
    pub connections: usize,
    /// How many of the connections also do round trips (application
    /// pings answered by pongs) while the messages are published.
    #[arg(long, default_value_t = 100)]
    pub echoing: usize,
    /// Time between two round trips of one echoing connection: "100ms".
    #[arg(long, default_value = "100ms", value_parser = super::parse_duration)]
    pub echo_every: Duration,
    /// Messages published per second.
    #[arg(long, default_value_t = 10.0)]
    pub publish_rate: f64,
    /// How long to publish: "5m", "30s" or plain seconds.
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Latency is reported per window of this length (by send time).
    #[arg(long, default_value = "1m", value_parser = super::parse_duration)]
    pub window: Duration,
    /// With --pid: how often the target's RSS is read.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    pub sample_every: Duration,
    /// The target's process id: its RSS over the run.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The topic.
    #[arg(long, default_value = "soak")]
    pub topic: String,
    /// Size of each delivery frame in bytes (the payload is padded to it).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// The publish API endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080/api/publish")]
    pub api: String,
    /// The API key, sent as `Authorization: Bearer <key>`.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub dial: DialArgs,
}

/// A checked soak run.
#[derive(Debug)]
pub struct Plan {
    target: Target,
    tls: Option<Tls>,
    api: Target,
    api_tls: Option<Tls>,
    key: Option<String>,
    connections: usize,
    echoing: usize,
    echo_every: Duration,
    rate: f64,
    duration: Duration,
    msgs: u64,
    window: Duration,
    windows: usize,
    sample_every: Duration,
    pid: Option<u32>,
    topic: String,
    size: usize,
    concurrency: usize,
    sources: usize,
}

impl Plan {
    pub fn new(args: SoakArgs, common: &Common) -> anyhow::Result<Plan> {
        target::check_topic(&args.topic)?;
        let target = Target::parse(&args.url, "ws")?.with_topic(&args.topic);
        target.check_local("--url", common.allow_remote)?;
        let tls = Tls::for_target(&target, "--url", common)?;
        let api = Target::parse(&args.api, "http")?;
        api.check_local("--api", common.allow_remote)?;
        let api_tls = Tls::for_target(&api, "--api", common)?;
        check_count("--connections", args.connections, super::MAX_CONNS)?;
        if args.echoing > args.connections {
            bail!("--echoing must be at most --connections");
        }
        if !(args.publish_rate.is_finite()
            && args.publish_rate > 0.0
            && args.publish_rate <= 10_000.0)
        {
            bail!("--publish-rate must be more than 0 and at most 10000 messages per second");
        }
        if args.duration.is_zero() || args.duration >= common.max_time {
            bail!("--duration must be more than 0s and shorter than --max-time");
        }
        for (name, d) in [
            ("--window", args.window),
            ("--sample-every", args.sample_every),
            ("--echo-every", args.echo_every),
        ] {
            if d.is_zero() {
                bail!("{name} must be more than 0s");
            }
        }
        let msgs = (args.duration.as_secs_f64() * args.publish_rate).ceil() as u64;
        check_count("--duration × --publish-rate", msgs, super::MAX_FANOUT_MSGS)?;
        let deliveries = args.connections as u64 * msgs;
        if deliveries > super::MAX_FANOUT_DELIVERIES {
            bail!(
                "--connections × messages is {deliveries} deliveries, over the bench's upper \
                 bound of {}",
                super::MAX_FANOUT_DELIVERIES
            );
        }
        let windows = (args.duration.as_secs_f64() / args.window.as_secs_f64()).ceil() as u64;
        check_count("--duration ÷ --window", windows, MAX_WINDOWS)?;
        let min = payload::min_size(&args.topic, msgs);
        if args.size < min {
            bail!(
                "--size {} is too small for the payload (sequence number, send time and the \
                 delivery envelope): at least {min} bytes",
                args.size
            );
        }
        check_count("--size", args.size, super::MAX_SIZE)?;
        check_dial(&args.dial)?;
        fdlimit::check(args.connections + 1)?;
        if let Some(pid) = args.pid {
            procmem::read(pid)?;
        }
        Ok(Plan {
            target,
            tls,
            api,
            api_tls,
            key: args.key,
            connections: args.connections,
            echoing: args.echoing,
            echo_every: args.echo_every,
            rate: args.publish_rate,
            duration: args.duration,
            msgs,
            window: args.window,
            windows: windows as usize,
            sample_every: args.sample_every,
            pid: args.pid,
            topic: args.topic,
            size: args.size,
            concurrency: args.dial.concurrency,
            sources: args
                .dial
                .sources
                .unwrap_or_else(|| target::default_sources(args.connections))
                .min(args.connections),
        })
    }
}

/// The RSS readings of a run: seconds since publishing started, KiB.
#[derive(Default)]
struct Samples(Vec<(f64, u64)>);

impl Samples {
    /// The summary; `settled_s` is the end of the first window, after which
    /// the target's queues and buffers have reached their working size.
    fn json(&self, settled_s: f64) -> serde_json::Value {
        let (Some(&(_, start)), Some(&(_, end))) = (self.0.first(), self.0.last()) else {
            return serde_json::Value::Null;
        };
        let settled = self
            .0
            .iter()
            .find(|s| s.0 + 0.5 >= settled_s)
            .map_or(end, |s| s.1);
        let min = self.0.iter().map(|s| s.1).min().unwrap_or(start);
        let max = self.0.iter().map(|s| s.1).max().unwrap_or(start);
        json!({
            "start_kib": start,
            "end_kib": end,
            "min_kib": min,
            "max_kib": max,
            "change_pct": round2(change_pct(start, end)),
            "after_first_window_kib": settled,
            "change_after_first_window_pct": round2(change_pct(settled, end)),
            "samples": self.0.iter().map(|(t, k)| json!([round2(*t), k])).collect::<Vec<_>>(),
        })
    }

    /// The last reading at or before `t_s`.
    fn at(&self, t_s: f64) -> Option<u64> {
        self.0.iter().rev().find(|s| s.0 <= t_s + 0.5).map(|s| s.1)
    }
}

/// The change from `from` to `to` in percent of `from`.
fn change_pct(from: u64, to: u64) -> f64 {
    if from == 0 {
        return 0.0;
    }
    (to as f64 - from as f64) * 100.0 / from as f64
}

pub async fn run(plan: Plan, common: Common) -> anyhow::Result<Summary> {
    let epoch = Instant::now();
    let deadline = epoch + common.max_time;
    let show = progress::visible(common.quiet);
    let addr = plan.target.resolve().await?;
    let api_addr = plan.api.resolve().await?;
    let dialer = Dialer::new(
        &plan.target,
        addr,
        target::source_addresses(addr, plan.sources),
        plan.tls.clone(),
    );

    // 1. Connections.
    let bar = Progress::start(show, "connecting", plan.connections as u64, None);
    let opened = dial::open_all(&dialer, plan.connections, plan.concurrency, &bar).await;
    bar.finish();
    let opened = opened?;
    let connect_s = opened.elapsed.as_secs_f64();
    let deliveries = Arc::new(AtomicU64::new(0));
    let histograms = |n: usize| -> anyhow::Result<Vec<Mutex<Latency>>> {
        (0..n).map(|_| Latency::new().map(Mutex::new)).collect()
    };
    let shared = Arc::new(Shared {
        epoch,
        run: super::fanout::run_id(),
        start_us: AtomicU64::new(NOT_STARTED),
        window_us: u64::try_from(plan.window.as_micros()).unwrap_or(u64::MAX),
        warm: AtomicUsize::new(0),
        deliveries: deliveries.clone(),
        delivery: histograms(plan.windows)?,
        echo: histograms(plan.windows)?,
        echo_every: plan.echo_every,
        finished: AtomicUsize::new(0),
        release: tokio::sync::watch::Sender::new(false),
    });
    let mut tallies = Vec::with_capacity(plan.connections);
    let mut tasks = Vec::with_capacity(plan.connections);
    for (i, conn) in opened.conns.into_iter().enumerate() {
        let tally = Arc::new(Mutex::new(Tally::new(plan.msgs)));
        tallies.push(tally.clone());
        tasks.push(tokio::spawn(subscriber::run(
            conn,
            i < plan.echoing,
            shared.clone(),
            tally,
            deadline,
        )));
    }
    let mut publisher = Publisher::connect(
        &plan.api,
        api_addr,
        plan.key.as_deref(),
        plan.api_tls.clone(),
    )
    .await?;

    // 2. Warm-up.
    let warmup_start = Instant::now();
    let mut warmups = 0u64;
    loop {
        let body = payload::publish_body(&plan.topic, &payload::warmup(shared.run, warmups));
        publisher.publish(body).await?;
        warmups += 1;
        let next = Instant::now() + WARMUP_EVERY;
        while Instant::now() < next && shared.warm.load(Ordering::Relaxed) < plan.connections {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let warm = shared.warm.load(Ordering::Relaxed);
        if warm == plan.connections {
            break;
        }
        if tasks.iter().any(|t| t.is_finished()) || warmup_start.elapsed() > WARMUP_TIMEOUT {
            let t = totals(&tallies)?;
            bail!(
                "only {warm} of {} connections received a warm-up message within {:.1}s \
                 (closes: {:?}; first error: {}); does the URL subscribe to `{}`?",
                plan.connections,
                warmup_start.elapsed().as_secs_f64(),
                t.closes,
                t.first_error.as_deref().unwrap_or("none"),
                plan.topic
            );
        }
    }
    let warmup_s = warmup_start.elapsed().as_secs_f64();

    // 3. Publish, reading the target's RSS on the way.
    let total = plan.connections as u64 * plan.msgs;
    let published = Arc::new(AtomicU64::new(0));
    let msg: progress::Message = {
        let (published, msgs) = (published.clone(), plan.msgs);
        Box::new(move || format!("published {}/{msgs}", published.load(Ordering::Relaxed)))
    };
    let bar = Progress::follow(show, "deliveries", total, deliveries.clone(), Some(msg));
    let mut samples = Samples::default();
    let mut next_sample = Instant::now();
    let mut api_delivered = 0u64;
    let mut behind_max = Duration::ZERO;
    let publish_start = Instant::now();
    shared.start_us.store(shared.now_us(), Ordering::Relaxed);
    for seq in 0..plan.msgs {
        let due = publish_start + Duration::from_secs_f64(seq as f64 / plan.rate);
        if let Some(pid) = plan.pid {
            if Instant::now() >= next_sample {
                let t = publish_start.elapsed().as_secs_f64();
                samples.0.push((t, procmem::read(pid)?.rss_kib));
                next_sample += plan.sample_every;
            }
        }
        tokio::time::sleep_until(due).await;
        behind_max = behind_max.max(Instant::now() - due);
        let data = payload::measured(shared.run, &plan.topic, seq, shared.now_us(), plan.size);
        api_delivered += publisher
            .publish(payload::publish_body(&plan.topic, &data))
            .await?;
        published.fetch_add(1, Ordering::Relaxed);
    }
    let publish_elapsed = publish_start.elapsed();

    // 4. Deliveries; the last reading once every connection has stopped
    // reading and before any of them closes.
    let give_up = (Instant::now() + GRACE).min(deadline);
    while Instant::now() < give_up && shared.finished.load(Ordering::Relaxed) < plan.connections {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(pid) = plan.pid {
        let t = publish_start.elapsed().as_secs_f64();
        samples.0.push((t, procmem::read(pid)?.rss_kib));
    }
    shared.release.send_replace(true);
    while Instant::now() < give_up && tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let unfinished = tasks.iter().filter(|t| !t.is_finished()).count();
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    bar.finish();

    let t = totals(&tallies)?;
    let delivered = deliveries.load(Ordering::Relaxed);
    let mut overall = Latency::new()?;
    let mut overall_echo = Latency::new()?;
    let mut windows = Vec::with_capacity(plan.windows);
    for w in 0..plan.windows {
        let d = lock(&shared.delivery[w])?;
        let e = lock(&shared.echo[w])?;
        overall.merge(&d);
        overall_echo.merge(&e);
        let start_s = w as f64 * plan.window.as_secs_f64();
        let end_s = (start_s + plan.window.as_secs_f64()).min(plan.duration.as_secs_f64());
        windows.push(json!({
            "window": w + 1,
            "start_s": round2(start_s),
            "end_s": round2(end_s),
            "delivery": d.summary(),
            "echo": e.summary(),
            "rss_kib": samples.at(end_s),
        }));
    }
    let p99 = |w: Option<&serde_json::Value>| {
        w.and_then(|w| w["delivery"]["p99_us"].as_u64())
            .unwrap_or(0)
    };
    let (p99_first, p99_last) = (p99(windows.first()), p99(windows.last()));
    let slow = t.closes.get(&SLOW_CONSUMER).copied().unwrap_or(0);
    let latency = overall.summary();
    let echo = overall_echo.summary();
    let rss = samples.json(plan.window.as_secs_f64());

    let params = json!({
        "url": plan.target.url,
        "subscribe_path": plan.target.path_and_query,
        "api": plan.api.url,
        "connections": plan.connections,
        "echoing": plan.echoing,
        "echo_every_s": plan.echo_every.as_secs_f64(),
        "publish_rate": plan.rate,
        "duration_s": plan.duration.as_secs_f64(),
        "window_s": plan.window.as_secs_f64(),
        "sample_every_s": plan.sample_every.as_secs_f64(),
        "pid": plan.pid,
        "topic": plan.topic,
        "size": plan.size,
        "concurrency": plan.concurrency,
        "sources": dialer.sources().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
    });
    let results = json!({
        "connect_s": round2(connect_s),
        "warmup_s": round2(warmup_s),
        "warmup_msgs": warmups,
        "published": plan.msgs,
        "publish_s": round2(publish_elapsed.as_secs_f64()),
        "publish_rate_per_s": round2(per_second(plan.msgs, publish_elapsed)),
        "publish_behind_max_ms": round2(behind_max.as_secs_f64() * 1e3),
        "api_delivered": api_delivered,
        "expected_deliveries": total,
        "deliveries": delivered,
        "lost": t.lost,
        "lost_unexplained": t.lost_unexplained,
        "duplicated": t.duplicated,
        "out_of_range": t.out_of_range,
        "slow_consumer_closes": slow,
        "closes": t.closes,
        "errors": t.errors,
        "first_error": t.first_error,
        "complete_connections": t.complete,
        "unfinished_connections": unfinished,
        "latency": latency,
        "echo": {
            "pings": t.pings,
            "pongs": t.pongs,
            "unanswered": t.pings - t.pongs.min(t.pings),
            "latency": echo,
        },
        "windows": windows,
        "p99_first_window_us": p99_first,
        "p99_last_window_us": p99_last,
        "p99_change_pct": round2(change_pct(p99_first, p99_last)),
        "rss": rss,
    });

    let mut s = Summary::new("soak", params, results);
    s.row(
        "target",
        format!("{} (publish: {})", plan.target.url, plan.api.url),
    )
    .row(
        "connections",
        format!(
            "{} on `{}`, {} of them echoing every {} (opened in {}, warm after {})",
            report::thousands(plan.connections as u64),
            plan.topic,
            plan.echoing,
            human(micros(plan.echo_every.as_secs_f64())),
            human(micros(connect_s)),
            human(micros(warmup_s))
        ),
    )
    .row(
        "published",
        format!(
            "{} in {:.1} s ({}/s asked; at most {:.1} ms behind schedule)",
            report::thousands(plan.msgs),
            publish_elapsed.as_secs_f64(),
            plan.rate,
            behind_max.as_secs_f64() * 1e3
        ),
    )
    .row(
        "deliveries",
        format!(
            "{} of {}",
            report::thousands(delivered),
            report::thousands(total)
        ),
    )
    .row(
        "lost / duplicated",
        format!("{} / {}", t.lost, t.duplicated),
    )
    .row("latency", latency.line());
    for w in &s.results["windows"].as_array().cloned().unwrap_or_default() {
        let us = |part: &str, key: &str| w[part][key].as_u64().unwrap_or(0);
        s.row(
            &format!(
                "  {:.0}-{:.0} s",
                w["start_s"].as_f64().unwrap_or(0.0),
                w["end_s"].as_f64().unwrap_or(0.0)
            ),
            format!(
                "delivery p50 {} p99 {}; echo p99 {}{}",
                human(us("delivery", "p50_us")),
                human(us("delivery", "p99_us")),
                human(us("echo", "p99_us")),
                w["rss_kib"]
                    .as_u64()
                    .map(|k| format!("; RSS {} KiB", report::thousands(k)))
                    .unwrap_or_default()
            ),
        );
    }
    s.row(
        "p99, first -> last window",
        format!(
            "{} -> {} ({:+.1} %)",
            human(p99_first),
            human(p99_last),
            change_pct(p99_first, p99_last)
        ),
    )
    .row(
        "echo",
        format!(
            "{} round trips ({} unanswered): {}",
            report::thousands(t.pongs),
            t.pings - t.pongs.min(t.pings),
            echo.line()
        ),
    );
    if let (Some(start), Some(end)) = (
        s.results["rss"]["start_kib"].as_u64(),
        s.results["rss"]["end_kib"].as_u64(),
    ) {
        s.row(
            "target RSS",
            format!(
                "{} KiB -> {} KiB ({:+.2} %; {:+.2} % from the end of the first window; \
                 min {} max {})",
                report::thousands(start),
                report::thousands(end),
                change_pct(start, end),
                s.results["rss"]["change_after_first_window_pct"]
                    .as_f64()
                    .unwrap_or(0.0),
                s.results["rss"]["min_kib"],
                s.results["rss"]["max_kib"]
            ),
        );
    }
    s.row("slow-consumer closes", slow.to_string());
    if let Some(e) = &t.first_error {
        s.row("errors", format!("{} (first: {e})", t.errors));
    }
    let mut problems = Vec::new();
    if t.lost_unexplained > 0 {
        problems.push(format!(
            "{} message(s) lost on connections the server did not close",
            t.lost_unexplained
        ));
    }
    if t.duplicated > 0 {
        problems.push(format!("{} duplicated deliveries", t.duplicated));
    }
    if t.out_of_range > 0 {
        problems.push(format!(
            "{} deliveries with an unknown sequence number",
            t.out_of_range
        ));
    }
    if t.errors > 0 {
        problems.push(format!("{} connection(s) failed", t.errors));
    }
    if plan.echoing > 0 && t.pongs == 0 {
        problems.push("no echoing connection got a pong".to_string());
    }
    if !problems.is_empty() {
        s.failure = Some(problems.join("; "));
    }
    Ok(s)
}

/// Seconds as whole microseconds.
fn micros(secs: f64) -> u64 {
    (secs * 1e6).round() as u64
}

/// Per-run totals over the connections.
#[derive(Default)]
struct Totals {
    lost: u64,
    /// Lost on connections the server did not close and that had no error.
    lost_unexplained: u64,
    duplicated: u64,
    out_of_range: u64,
    closes: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
    complete: u64,
    pings: u64,
    pongs: u64,
}

fn totals(tallies: &[Arc<Mutex<Tally>>]) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    for tally in tallies {
        let s = lock(tally)?;
        t.lost += s.seen.lost();
        t.duplicated += s.seen.duplicated();
        t.out_of_range += s.seen.out_of_range();
        t.pings += s.pings;
        t.pongs += s.pongs;
        if s.seen.complete() {
            t.complete += 1;
        }
        if let Some(code) = s.closed {
            *t.closes.entry(code).or_default() += 1;
        }
        if let Some(e) = &s.error {
            t.errors += 1;
            t.first_error.get_or_insert_with(|| e.clone());
        }
        if s.closed.is_none() && s.error.is_none() {
            t.lost_unexplained += s.seen.lost();
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::plan;

    #[test]
    fn changes_in_percent() {
        assert_eq!(change_pct(100, 102), 2.0);
        assert_eq!(change_pct(200, 150), -25.0);
        assert_eq!(change_pct(0, 5), 0.0);
    }

    #[test]
    fn samples_summarise_start_and_end() {
        let s = Samples(vec![(0.0, 1_000), (5.0, 1_030), (10.0, 1_010)]);
        let j = s.json(5.0);
        assert_eq!(j["start_kib"], 1_000);
        assert_eq!(j["after_first_window_kib"], 1_030);
        assert_eq!(
            j["change_after_first_window_pct"],
            round2(change_pct(1_030, 1_010))
        );
        assert_eq!(j["end_kib"], 1_010);
        assert_eq!(j["max_kib"], 1_030);
        assert_eq!(j["change_pct"], 1.0);
        assert_eq!(s.at(6.0), Some(1_030));
        assert_eq!(Samples::default().json(5.0), serde_json::Value::Null);
    }

    #[test]
    fn plans_are_checked() {
        plan(&[
            "soak",
            "--connections",
            "10",
            "--echoing",
            "2",
            "--duration",
            "2s",
        ])
        .expect("small soak");
        plan(&["soak", "--connections", "100", "--max-time", "600"]).expect("defaults");
        for (args, needle) in [
            (&["--connections", "5", "--echoing", "6"][..], "--echoing"),
            (&["--connections", "0"][..], "--connections"),
            (&["--publish-rate", "0"][..], "--publish-rate"),
            (&["--duration", "10m", "--max-time", "5m"][..], "--duration"),
            (&["--duration", "0"][..], "--duration"),
            (&["--window", "0"][..], "--window"),
            (&["--size", "20"][..], "--size"),
        ] {
            let mut args = [&["soak"][..], args].concat();
            for (flag, value) in [("--connections", "200"), ("--duration", "2s")] {
                if !args.contains(&flag) {
                    args.extend([flag, value]);
                }
            }
            let e = plan(&args).expect_err(needle);
            assert!(format!("{e:#}").contains(needle), "{args:?}: {e:#}");
        }
    }
}
