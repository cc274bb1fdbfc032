//! The command line of `wsgate ctl` and `wsgate console` (their clap
//! types), and what the options mean in protocol terms.

use std::path::PathBuf;

use clap::Subcommand;
use wsgate_admin_proto::{Filter, Order, SortKey};

/// `wsgate console`: where the daemon is and how often to look.
#[derive(clap::Args)]
pub struct ConsoleArgs {
    /// The admin socket (default: the one the config names).
    #[arg(long, conflicts_with = "config")]
    pub socket: Option<PathBuf>,
    /// The daemon's config file, to find its admin socket.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Time between snapshots, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
}

#[derive(clap::Args)]
pub struct CtlArgs {
    /// The admin socket (default: the one the config names).
    #[arg(long, global = true, conflicts_with = "config")]
    pub socket: Option<PathBuf>,
    /// The daemon's config file, to find its admin socket.
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    /// Print the daemon's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Run `stats`, `ls` or `evict` (by filter) on every node of the
    /// daemon's cluster, each node's answer in turn.
    #[arg(long, global = true)]
    pub cluster: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Selectors shared by `ls` and `evict`.
#[derive(clap::Args, Default)]
pub struct FilterArgs {
    #[arg(long)]
    route: Option<String>,
    #[arg(long)]
    user: Option<String>,
    /// An address or CIDR, e.g. 10.0.0.0/8.
    #[arg(long)]
    ip: Option<String>,
    /// Subscribed to this topic.
    #[arg(long)]
    topic: Option<String>,
    /// Idle for at least this many seconds.
    #[arg(long)]
    min_idle: Option<f64>,
    /// Connected for at least this many seconds.
    #[arg(long)]
    min_age: Option<f64>,
    /// At least this many messages in the send queue.
    #[arg(long)]
    min_queue: Option<usize>,
}

impl From<FilterArgs> for Filter {
    fn from(f: FilterArgs) -> Self {
        Filter {
            route: f.route,
            user: f.user,
            ip: f.ip,
            topic: f.topic,
            min_idle_s: f.min_idle,
            min_age_s: f.min_age,
            min_queue: f.min_queue,
        }
    }
}

#[derive(Subcommand)]
pub enum CtlCommand {
    /// Counters, limits in force and their use, the last reload.
    Stats,
    /// List connections.
    Ls {
        #[command(flatten)]
        filter: FilterArgs,
        /// Largest first (without it: by id, oldest first).
        #[arg(long, value_enum)]
        sort: Option<Sort>,
        /// Smallest first.
        #[arg(long)]
        asc: bool,
        /// Skip this many rows after sorting.
        #[arg(long)]
        offset: Option<usize>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One connection with its topics.
    Show { id: u64 },
    /// Close connections with 4000: by id, or by filter.
    Evict {
        #[arg(long)]
        id: Option<u64>,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        reason: Option<String>,
        /// Show who would be evicted; evict no one.
        #[arg(long)]
        dry_run: bool,
        /// Required to evict with no selector at all.
        #[arg(long)]
        all: bool,
    },
    /// Reload the config file (or, --dry-run, show what it would do).
    Reload {
        #[arg(long)]
        dry_run: bool,
    },
    /// Start a graceful drain.
    Drain {
        /// Overrides drain_timeout, e.g. 10s.
        #[arg(long)]
        timeout: Option<String>,
    },
    /// Publish JSON data to a topic.
    Publish { topic: String, data: String },
    /// The effective config, secrets redacted.
    Config,
    /// Stream snapshots and events until interrupted.
    Watch {
        #[arg(long)]
        interval_ms: Option<u64>,
    },
}

/// `--sort`: the protocol's [`SortKey`], spelled for the command line
/// (`msgs-in`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Sort {
    Id,
    Route,
    User,
    Ip,
    Age,
    Idle,
    MsgsIn,
    MsgsOut,
    InRate,
    OutRate,
    Queue,
    Subscriptions,
    Rtt,
}

impl From<Sort> for SortKey {
    fn from(s: Sort) -> Self {
        match s {
            Sort::Id => SortKey::Id,
            Sort::Route => SortKey::Route,
            Sort::User => SortKey::User,
            Sort::Ip => SortKey::Ip,
            Sort::Age => SortKey::Age,
            Sort::Idle => SortKey::Idle,
            Sort::MsgsIn => SortKey::MsgsIn,
            Sort::MsgsOut => SortKey::MsgsOut,
            Sort::InRate => SortKey::InRate,
            Sort::OutRate => SortKey::OutRate,
            Sort::Queue => SortKey::Queue,
            Sort::Subscriptions => SortKey::Subscriptions,
            Sort::Rtt => SortKey::Rtt,
        }
    }
}

/// `--asc`: smallest first; otherwise the protocol's default.
pub fn order(asc: bool) -> Option<Order> {
    asc.then_some(Order::Asc)
}

/// The config file to use: `-c`, else `etc/wsgate.toml` if present (for
/// `serve`, and for `ctl` to find the socket).
pub fn config_file(config: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| {
        let default = PathBuf::from(wsgate::DEFAULT_CONFIG);
        default.exists().then_some(default)
    })
}
