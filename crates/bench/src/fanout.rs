//! `wsgate bench fanout`: N subscribers on one topic, M messages published
//! over the HTTP API, every delivery accounted for.
//!
//! The phases:
//!
//! 1. connect the subscribers (`topics=T` in the URL's query);
//! 2. warm up: publish warm-up messages until every subscriber has received
//!    one. This works the same against wsgate (which confirms subscriptions
//!    with `subscribed`) and against servers that confirm nothing;
//! 3. publish M measured messages, paced at `--rate` or back to back, each
//!    stamped with its number and send time;
//! 4. wait for the deliveries (at most [`GRACE`] after the last publish).
//!
//! Measures deliveries/s (measured deliveries ÷ (last delivery − first
//! publish)), the publish rate achieved, publish-to-delivery latency, and
//! per subscriber the messages lost and duplicated. Loss is expected only
//! on a subscriber the server closed (4002, slow consumer); any other loss,
//! or any duplicate, fails the run.

mod subscriber;

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
use super::progress::{self, Progress};
use super::publisher::Publisher;
use super::report::{self, round2, Summary};
use super::seen::Seen;
use super::target::{self, Target};
use super::tls::Tls;
use super::{check_count, check_dial, fdlimit, Common, DialArgs};
use subscriber::{subscribe, totals, Shared, Tally};

/// How long the subscribers have to receive their first warm-up message.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a warm-up message is published until all have one.
const WARMUP_EVERY: Duration = Duration::from_millis(100);
/// How long deliveries are waited for after the last publish.
const GRACE: Duration = Duration::from_secs(5);
/// The close code of a slow consumer.
const SLOW_CONSUMER: u16 = 4002;

#[derive(clap::Args, Debug)]
#[command(after_long_help = super::LONG_HELP)]
pub struct FanoutArgs {
    /// The subscribe URL; `topics=<topic>` is added to its query unless it
    /// has a `topics` parameter (so `ws://host/ws` works for wsgate and
    /// for the raw reference server). Given several times (the nodes of a
    /// cluster), the subscribers are split evenly over the URLs.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: Vec<String>,
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    pub subs: usize,
    /// The topic.
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Messages to publish.
    #[arg(long, default_value_t = 1000)]
    pub msgs: u64,
    /// Size of each delivery frame in bytes (the payload is padded to it).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Publish at this many messages per second (default: back to back,
    /// each after the previous answer).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The publish API endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080/api/publish")]
    pub api: String,
    /// The API key, sent as `Authorization: Bearer <key>`.
    #[arg(long)]
    pub key: Option<String>,
    #[command(flatten)]
    pub dial: DialArgs,
}

/// A checked fanout run.
#[derive(Debug)]
pub struct Plan {
    /// The subscribe URLs, each with its TLS settings.
    targets: Vec<(Target, Option<Tls>)>,
    api: Target,
    api_tls: Option<Tls>,
    key: Option<String>,
    subs: usize,
    topic: String,
    msgs: u64,
    size: usize,
    rate: Option<f64>,
    concurrency: usize,
    sources: usize,
}

impl Plan {
    pub fn new(args: FanoutArgs, common: &Common) -> anyhow::Result<Plan> {
        target::check_topic(&args.topic)?;
        let mut targets = Vec::with_capacity(args.url.len());
        for url in &args.url {
            let target = Target::parse(url, "ws")?.with_topic(&args.topic);
            target.check_local("--url", common.allow_remote)?;
            let tls = Tls::for_target(&target, "--url", common)?;
            targets.push((target, tls));
        }
        if targets.is_empty() {
            bail!("--url: at least one subscribe URL");
        }
        let api = Target::parse(&args.api, "http")?;
        api.check_local("--api", common.allow_remote)?;
        let api_tls = Tls::for_target(&api, "--api", common)?;
        check_count("--subs", args.subs, super::MAX_CONNS)?;
        check_count("--msgs", args.msgs, super::MAX_FANOUT_MSGS)?;
        let deliveries = args.subs as u64 * args.msgs;
        if deliveries > super::MAX_FANOUT_DELIVERIES {
            bail!(
                "--subs × --msgs is {deliveries} deliveries, over the bench's upper bound of {}",
                super::MAX_FANOUT_DELIVERIES
            );
        }
        let min = payload::min_size(&args.topic, args.msgs);
        if args.size < min {
            bail!(
                "--size {} is too small for the fanout payload (sequence number, send time \
                 and the delivery envelope): at least {min} bytes",
                args.size
            );
        }
        check_count("--size", args.size, super::MAX_SIZE)?;
        if let Some(r) = args.rate {
            if !(r.is_finite() && r > 0.0 && r <= 1_000_000.0) {
                bail!("--rate must be more than 0 and at most 1000000 messages per second");
            }
        }
        check_dial(&args.dial)?;
        fdlimit::check(args.subs + 1)?;
        Ok(Plan {
            targets,
            api,
            api_tls,
            key: args.key,
            subs: args.subs,
            topic: args.topic,
            msgs: args.msgs,
            size: args.size,
            rate: args.rate,
            concurrency: args.dial.concurrency,
            sources: args
                .dial
                .sources
                .unwrap_or_else(|| target::default_sources(args.subs))
                .min(args.subs),
        })
    }
}

pub async fn run(plan: Plan, common: Common) -> anyhow::Result<Summary> {
    let epoch = Instant::now();
    let deadline = epoch + common.max_time;
    let show = progress::visible(common.quiet);
    let api_addr = plan.api.resolve().await?;
    let mut dialers = Vec::with_capacity(plan.targets.len());
    for (target, tls) in &plan.targets {
        let addr = target.resolve().await?;
        dialers.push(Dialer::new(
            target,
            addr,
            target::source_addresses(addr, plan.sources),
            tls.clone(),
        ));
    }

    // 1. Subscribers, split evenly over the URLs.
    let bar = Progress::start(show, "connecting", plan.subs as u64, None);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(plan.subs);
    let n = dialers.len();
    for (i, dialer) in dialers.iter().enumerate() {
        let share = plan.subs / n + usize::from(i < plan.subs % n);
        let opened = dial::open_all(dialer, share, plan.concurrency, &bar).await;
        conns.extend(opened?.conns);
    }
    bar.finish();
    let connect_s = started.elapsed().as_secs_f64();
    let total = plan.subs as u64 * plan.msgs;
    let deliveries = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        epoch,
        run: run_id(),
        warm: AtomicUsize::new(0),
        deliveries: deliveries.clone(),
        last_delivery_us: AtomicU64::new(0),
        latency: Mutex::new(Latency::new()?),
    });
    let mut tallies = Vec::with_capacity(plan.subs);
    let mut tasks = Vec::with_capacity(plan.subs);
    for conn in conns {
        let tally = Arc::new(Mutex::new(Tally {
            seen: Seen::new(plan.msgs),
            closed: None,
            error: None,
        }));
        tallies.push(tally.clone());
        tasks.push(tokio::spawn(subscribe(
            conn,
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
        while Instant::now() < next && shared.warm.load(Ordering::Relaxed) < plan.subs {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let warm = shared.warm.load(Ordering::Relaxed);
        if warm == plan.subs {
            break;
        }
        if tasks.iter().any(|t| t.is_finished()) || warmup_start.elapsed() > WARMUP_TIMEOUT {
            let t = totals(&tallies)?;
            bail!(
                "only {warm} of {} subscribers received a warm-up message within {:.1}s \
                 (closes: {:?}; first error: {}); does the URL subscribe to `{}`?",
                plan.subs,
                warmup_start.elapsed().as_secs_f64(),
                t.closes,
                t.first_error.as_deref().unwrap_or("none"),
                plan.topic
            );
        }
    }
    let warmup_s = warmup_start.elapsed().as_secs_f64();

    // 3. Publish.
    let published = Arc::new(AtomicU64::new(0));
    let msg: progress::Message = {
        let (published, msgs) = (published.clone(), plan.msgs);
        Box::new(move || format!("published {}/{msgs}", published.load(Ordering::Relaxed)))
    };
    let bar = Progress::follow(show, "deliveries", total, deliveries.clone(), Some(msg));
    let mut api_delivered = 0u64;
    let publish_start = Instant::now();
    let first_publish_us = shared.now_us();
    for seq in 0..plan.msgs {
        if let Some(rate) = plan.rate {
            tokio::time::sleep_until(publish_start + Duration::from_secs_f64(seq as f64 / rate))
                .await;
        }
        let data = payload::measured(shared.run, &plan.topic, seq, shared.now_us(), plan.size);
        api_delivered += publisher
            .publish(payload::publish_body(&plan.topic, &data))
            .await?;
        published.fetch_add(1, Ordering::Relaxed);
    }
    let publish_elapsed = publish_start.elapsed();

    // 4. Deliveries.
    let give_up = (Instant::now() + GRACE).min(deadline);
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
    let deliveries = deliveries.load(Ordering::Relaxed);
    let last_us = shared.last_delivery_us.load(Ordering::Relaxed);
    let delivery_window = Duration::from_micros(last_us.saturating_sub(first_publish_us));
    let deliveries_per_s = per_second(deliveries, delivery_window);
    let publish_rate = per_second(plan.msgs, publish_elapsed);
    let latency = lock(&shared.latency)?.summary();
    let slow = t.closes.get(&SLOW_CONSUMER).copied().unwrap_or(0);
    let frame_bytes = payload::frame_len(
        &plan.topic,
        payload::measured(shared.run, &plan.topic, 0, first_publish_us, plan.size).len(),
    );

    let urls: Vec<&str> = plan.targets.iter().map(|(t, _)| t.url.as_str()).collect();
    let params = json!({
        "url": urls,
        "subscribe_path": plan.targets[0].0.path_and_query,
        "api": plan.api.url,
        "subs": plan.subs,
        "topic": plan.topic,
        "msgs": plan.msgs,
        "size": plan.size,
        "rate": plan.rate,
        "concurrency": plan.concurrency,
        "sources": dialers[0].sources().iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
    });
    let results = json!({
        "connect_s": round2(connect_s),
        "warmup_s": round2(warmup_s),
        "warmup_msgs": warmups,
        "frame_bytes": frame_bytes,
        "published": plan.msgs,
        "publish_s": round2(publish_elapsed.as_secs_f64()),
        "publish_rate_per_s": round2(publish_rate),
        "api_delivered": api_delivered,
        "expected_deliveries": total,
        "deliveries": deliveries,
        "deliveries_per_s": round2(deliveries_per_s),
        "delivery_window_s": round2(delivery_window.as_secs_f64()),
        "latency": latency,
        "lost": t.lost,
        "lost_unexplained": t.lost_unexplained,
        "duplicated": t.duplicated,
        "out_of_range": t.out_of_range,
        "slow_consumer_closes": slow,
        "closes": t.closes,
        "errors": t.errors,
        "first_error": t.first_error,
        "complete_subscribers": t.complete,
        "unfinished_subscribers": unfinished,
    });
    let mut s = Summary::new("fanout", params, results);
    s.row(
        "target",
        format!("{} (publish: {})", urls.join(", "), plan.api.url),
    )
    .row(
        "subscribers",
        format!(
            "{} on `{}` (opened in {}, warm after {})",
            report::thousands(plan.subs as u64),
            plan.topic,
            human(micros(connect_s)),
            human(micros(warmup_s))
        ),
    )
    .row(
        "published",
        format!(
            "{} × {frame_bytes} B in {:.2} s: {}{}",
            report::thousands(plan.msgs),
            publish_elapsed.as_secs_f64(),
            report::rate(publish_rate),
            plan.rate
                .map(|r| format!(" (asked {r}/s)"))
                .unwrap_or_default()
        ),
    )
    .row(
        "deliveries",
        format!(
            "{} of {} in {:.2} s: {}",
            report::thousands(deliveries),
            report::thousands(total),
            delivery_window.as_secs_f64(),
            report::rate(deliveries_per_s)
        ),
    )
    .row("API delivered", report::thousands(api_delivered))
    .row("latency", latency.line())
    .row("mean latency", human(latency.mean_us.round() as u64))
    .row(
        "lost / duplicated",
        format!("{} / {}", t.lost, t.duplicated),
    )
    .row("slow-consumer closes", slow.to_string());
    for (code, n) in t.closes.iter().filter(|(c, _)| **c != SLOW_CONSUMER) {
        s.row(&format!("  closed {code}"), n.to_string());
    }
    if let Some(e) = &t.first_error {
        s.row("errors", format!("{} (first: {e})", t.errors));
    }
    if unfinished > 0 {
        s.row(
            "unfinished",
            format!(
                "{unfinished} subscriber(s) still waiting after {}s",
                GRACE.as_secs()
            ),
        );
    }
    let mut problems = Vec::new();
    if t.lost_unexplained > 0 {
        problems.push(format!(
            "{} message(s) lost on subscribers the server did not close",
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
        problems.push(format!("{} subscriber(s) failed", t.errors));
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

/// A run id: differs between runs, so that concurrent runs on one topic do
/// not count each other's messages.
pub(crate) fn run_id() -> u32 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
    (h >> 32) as u32 ^ h as u32
}
