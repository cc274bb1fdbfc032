//! `wsgate bench`: a load generator for any wsgate deployment (and for the
//! reference server `benches/raw-echo`, which serves the same URL shapes).
//!
//! Five modes, each a module:
//!
//! - [`idle`]: open many connections and hold them; measures the handshake
//!   rate and, with `--pid`, the target's memory per connection.
//! - [`echo`]: sequential round trips on every connection; measures
//!   throughput and round-trip latency, and checks every echo byte for byte.
//! - [`fanout`]: subscribers on one topic, a publisher on the HTTP API;
//!   measures delivery throughput and publish-to-delivery latency, and
//!   counts lost and duplicated deliveries per subscriber.
//! - [`churn`]: rounds of connect/echo/close cycles (half closed cleanly,
//!   half reset); the target's RSS and open files after every round.
//! - [`soak`]: many subscribers held for minutes under a steady publish
//!   rate, some of them also doing round trips; loss, delivery latency per
//!   time window and the target's RSS over the run.
//!
//! The parts they share: [`target`] (URLs, the loopback-only rule, source
//! addresses), [`tls`] (`wss://` targets: rustls, `--ca`, `--insecure`),
//! [`fdlimit`] (the open-files budget), [`client`] (the
//! WebSocket client on fastwebsockets), [`dial`] (opening N connections
//! with bounded concurrency), [`latency`] (HDR histograms), [`progress`]
//! (bars on stderr) and [`report`] (the table or the JSON object on stdout).
//!
//! Every run is bounded: `--max-time` is a hard deadline for the whole run,
//! counts and sizes have upper bounds, and only loopback targets are
//! accepted unless `--allow-remote` is given.

mod churn;
mod client;
mod dial;
mod echo;
mod fanout;
mod fdlimit;
mod idle;
mod latency;
mod payload;
mod procmem;
mod progress;
mod publisher;
mod report;
mod seen;
mod soak;
mod stream;
mod target;
mod tls;

use std::time::Duration;

use anyhow::{bail, Context};

/// Most connections (or subscribers) one bench process opens. The
/// open-files limit usually binds first (see [`fdlimit`]).
pub const MAX_CONNS: usize = 200_000;
/// Most round trips per connection in `echo`.
pub const MAX_ECHO_MSGS: u64 = 10_000_000;
/// Most round trips in one `echo` run, over all connections.
pub const MAX_ECHO_TOTAL: u64 = 100_000_000;
/// Most messages published in one `fanout` run.
pub const MAX_FANOUT_MSGS: u64 = 1_000_000;
/// Most expected deliveries (subscribers × messages) in one `fanout` run;
/// bounds the memory of the per-subscriber bitsets (25 MB at the cap).
pub const MAX_FANOUT_DELIVERIES: u64 = 200_000_000;
/// Largest payload, in bytes.
pub const MAX_SIZE: usize = 1 << 20;
/// Longest `--max-time`.
pub const MAX_TIME: Duration = Duration::from_secs(3600);
/// Most source addresses (127.0.0.1 to 127.0.0.250).
pub const MAX_SOURCES: usize = 250;
/// Most handshakes in flight at once.
pub const MAX_CONCURRENCY: usize = 10_000;
/// Most runtime worker threads.
pub const MAX_THREADS: usize = 64;

/// Shown at the end of `wsgate bench --help`.
const LONG_HELP: &str = "\
Targets must be on this machine (localhost, 127.0.0.0/8 or ::1) unless \
--allow-remote is given.

TLS: wss:// targets (and an https:// --api) need --ca FILE (PEM CA \
certificates to trust) or --insecure (any certificate); there are no system \
roots. Every handshake is a full one (no session resumption).

Open files: every connection is one file descriptor, and these machines cap \
open files at 20,000 per process. Above ~19,000 connections run several \
bench processes side by side (each with its own --conns), or raise \
`ulimit -n` where that is allowed. A count that would not fit under the \
current soft limit (RLIMIT_NOFILE) minus a margin is refused up front.";

/// The `wsgate bench` arguments.
#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub mode: Mode,
}

/// Options every mode takes (before or after the mode's name).
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Print one JSON object (mode, parameters, results) on stdout instead
    /// of the table.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Hard deadline for the whole run: "120s", "2m" or plain seconds.
    #[arg(long, global = true, default_value = "120s", value_parser = parse_duration)]
    pub max_time: Duration,
    /// Accept targets that are not on this machine.
    #[arg(long, global = true)]
    pub allow_remote: bool,
    /// Runtime worker threads of the bench itself. Keep it low when the
    /// server under test shares the machine's cores.
    #[arg(long, global = true, default_value_t = 1)]
    pub threads: usize,
    /// For wss:// (and https://) targets: a PEM file of the CA
    /// certificates to trust. There are no system roots: a TLS target needs
    /// --ca or --insecure.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<std::path::PathBuf>,
    /// For wss:// (and https://) targets: accept any server certificate
    /// (the handshake's signatures are still checked).
    #[arg(long, global = true)]
    pub insecure: bool,
}

/// How connections are opened; shared by every mode.
#[derive(clap::Args, Debug, Clone)]
pub struct DialArgs {
    /// Handshakes in flight at once while opening connections.
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Source addresses to spread connections over (127.0.0.1,
    /// 127.0.0.2, ...): each gives about 28,000 ephemeral ports. Default:
    /// one per 20,000 connections.
    #[arg(long)]
    pub sources: Option<usize>,
}

/// The benchmark to run.
#[derive(clap::Subcommand, Debug)]
pub enum Mode {
    /// Open N connections and hold them: handshakes/s and, with --pid, the
    /// target's memory per connection.
    Idle(idle::IdleArgs),
    /// C connections each doing M sequential round trips: msgs/s and
    /// round-trip latency; every echo is checked byte for byte.
    Echo(echo::EchoArgs),
    /// N subscribers on one topic, messages published over the HTTP API:
    /// deliveries/s, publish-to-delivery latency, lost and duplicated
    /// messages.
    Fanout(fanout::FanoutArgs),
    /// R rounds of M connect/echo/close cycles, half closed cleanly and
    /// half reset: the target's RSS and open files after every round.
    Churn(churn::ChurnArgs),
    /// N subscribers held for a duration under a steady publish rate, some
    /// also doing round trips: loss, delivery latency per window, the
    /// target's RSS over time.
    Soak(soak::SoakArgs),
}

/// Parses "120s", "1m 30s" or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err(format!("`{s}` is not a duration")),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}")),
    }
}

/// Checks the options every mode shares.
fn check_common(common: &Common) -> anyhow::Result<()> {
    if common.max_time.is_zero() || common.max_time > MAX_TIME {
        bail!(
            "--max-time must be more than 0s and at most {}s",
            MAX_TIME.as_secs()
        );
    }
    if common.threads == 0 || common.threads > MAX_THREADS {
        bail!("--threads must be between 1 and {MAX_THREADS}");
    }
    Ok(())
}

/// Checks a count option: at least 1 and at most `max`.
fn check_count<T: PartialOrd + From<u8> + std::fmt::Display>(
    name: &str,
    value: T,
    max: T,
) -> anyhow::Result<()> {
    if value < T::from(1) {
        bail!("{name} must be at least 1");
    }
    if value > max {
        bail!("{name} {value} is over the bench's upper bound of {max}");
    }
    Ok(())
}

/// Checks `--concurrency` and `--sources`.
fn check_dial(dial: &DialArgs) -> anyhow::Result<()> {
    check_count("--concurrency", dial.concurrency, MAX_CONCURRENCY)?;
    if let Some(k) = dial.sources {
        check_count("--sources", k, MAX_SOURCES)?;
    }
    Ok(())
}

/// Runs a benchmark: checks everything that can be checked up front, then
/// runs the mode on its own runtime under the `--max-time` deadline.
pub fn run(args: Args) -> anyhow::Result<()> {
    check_common(&args.common)?;
    let common = args.common;
    let runtime = if common.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    let summary = match args.mode {
        Mode::Idle(a) => {
            let plan = idle::Plan::new(a, &common)?;
            runtime.block_on(within(&common, idle::run(plan, common.clone())))?
        }
        Mode::Echo(a) => {
            let plan = echo::Plan::new(a, &common)?;
            runtime.block_on(within(&common, echo::run(plan, common.clone())))?
        }
        Mode::Fanout(a) => {
            let plan = fanout::Plan::new(a, &common)?;
            runtime.block_on(within(&common, fanout::run(plan, common.clone())))?
        }
        Mode::Churn(a) => {
            let plan = churn::Plan::new(a, &common)?;
            runtime.block_on(within(&common, churn::run(plan, common.clone())))?
        }
        Mode::Soak(a) => {
            let plan = soak::Plan::new(a, &common)?;
            runtime.block_on(within(&common, soak::run(plan, common.clone())))?
        }
    };
    // Tasks still running (stragglers that were given up on) end here.
    runtime.shutdown_timeout(Duration::from_millis(200));
    summary.print(common.json)?;
    summary.verdict()
}

/// Runs a mode under the hard `--max-time` deadline.
async fn within<F>(common: &Common, mode: F) -> anyhow::Result<report::Summary>
where
    F: std::future::Future<Output = anyhow::Result<report::Summary>>,
{
    match tokio::time::timeout(common.max_time, mode).await {
        Ok(result) => result,
        Err(_) => bail!(
            "the run did not finish within --max-time ({})",
            humantime::format_duration(common.max_time)
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    /// Parses `wsgate bench ARGS...`.
    pub(crate) fn parse(args: &[&str]) -> Args {
        match try_parse(args) {
            Ok(args) => args,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    /// Parses `wsgate bench ARGS...`, clap's error if it refuses them.
    pub(crate) fn try_parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|cli| cli.args)
    }

    /// Parses and checks, as `run` does before it connects anywhere.
    pub(crate) fn plan(args: &[&str]) -> anyhow::Result<()> {
        let args = parse(args);
        check_common(&args.common)?;
        match args.mode {
            Mode::Idle(a) => idle::Plan::new(a, &args.common).map(drop),
            Mode::Echo(a) => echo::Plan::new(a, &args.common).map(drop),
            Mode::Fanout(a) => fanout::Plan::new(a, &args.common).map(drop),
            Mode::Churn(a) => churn::Plan::new(a, &args.common).map(drop),
            Mode::Soak(a) => soak::Plan::new(a, &args.common).map(drop),
        }
    }

    fn refused(args: &[&str]) -> String {
        match plan(args) {
            Ok(()) => panic!("{args:?} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn common_options_go_before_or_after_the_mode() {
        let a = parse(&["--json", "echo", "--max-time", "5", "-q"]);
        assert!(a.common.json && a.common.quiet);
        assert_eq!(a.common.max_time, Duration::from_secs(5));
        let a = parse(&["idle", "--max-time", "1m 30s"]);
        assert_eq!(a.common.max_time, Duration::from_secs(90));
        assert_eq!(
            parse(&["idle"]).common.max_time,
            Duration::from_secs(120),
            "default"
        );
    }

    #[test]
    fn zero_counts_are_refused() {
        assert!(refused(&["idle", "--conns", "0"]).contains("--conns"));
        assert!(refused(&["echo", "--conns", "0"]).contains("--conns"));
        assert!(refused(&["echo", "--msgs", "0"]).contains("--msgs"));
        assert!(refused(&["echo", "--size", "0"]).contains("--size"));
        assert!(refused(&["fanout", "--subs", "0"]).contains("--subs"));
        assert!(refused(&["fanout", "--msgs", "0"]).contains("--msgs"));
        assert!(refused(&["idle", "--concurrency", "0"]).contains("--concurrency"));
        assert!(refused(&["idle", "--sources", "0"]).contains("--sources"));
        assert!(refused(&["echo", "--max-time", "0"]).contains("--max-time"));
        assert!(refused(&["echo", "--threads", "0"]).contains("--threads"));
    }

    #[test]
    fn counts_over_the_bounds_are_refused() {
        assert!(refused(&["echo", "--msgs", "10000001"]).contains("upper bound"));
        assert!(refused(&["echo", "--conns", "1000", "--msgs", "1000000"]).contains("round trips"));
        assert!(refused(&["echo", "--size", "1048577"]).contains("--size"));
        assert!(refused(&["fanout", "--msgs", "1000001"]).contains("upper bound"));
        assert!(refused(&["idle", "--conns", "200001"]).contains("upper bound"));
        assert!(refused(&["echo", "--max-time", "2h"]).contains("--max-time"));
    }

    #[test]
    fn reasonable_runs_are_accepted() {
        plan(&["idle", "--conns", "10"]).expect("idle");
        plan(&["echo", "--conns", "2", "--msgs", "3", "--size", "1"]).expect("echo");
        plan(&["fanout", "--subs", "2", "--msgs", "3", "--size", "256"]).expect("fanout");
    }
}
