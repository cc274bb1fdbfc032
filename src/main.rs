//! The `wsgate` command: wiring only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wsgate::config::Settings;
use wsgate::daemon::Daemon;
use wsgate::{admin, control, signals, systemd};

/// Control commands waiting for the control loop (signals, file changes,
/// admin requests); senders wait when it is full.
const CONTROL_QUEUE: usize = 64;

#[derive(Parser)]
#[command(
    name = "wsgate",
    version,
    about = "A WebSocket daemon with hard resource limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// The config file (default: etc/wsgate.toml if present, else the
        /// built-in defaults).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective config (secrets
    /// redacted), or every error with file:line:column.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Talk to a running daemon over its admin socket.
    Ctl(Box<CtlArgs>),
    /// Load-test a wsgate deployment (loopback only unless --allow-remote).
    #[cfg(feature = "bench")]
    Bench(Box<wsgate_bench::Args>),
}

#[derive(clap::Args)]
struct CtlArgs {
    /// The admin socket (default: the one the config names).
    #[arg(long, global = true, conflicts_with = "config")]
    socket: Option<PathBuf>,
    /// The daemon's config file, to find its admin socket.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Print the daemon's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

/// Selectors shared by `ls` and `evict`.
#[derive(clap::Args, Default)]
struct FilterArgs {
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

impl FilterArgs {
    fn into_filter(self) -> admin::protocol::Filter {
        admin::protocol::Filter {
            route: self.route,
            user: self.user,
            ip: self.ip,
            topic: self.topic,
            min_idle_s: self.min_idle,
            min_age_s: self.min_age,
            min_queue: self.min_queue,
        }
    }
}

#[derive(Subcommand)]
enum CtlCommand {
    /// Counters, limits in force and their use, the last reload.
    Stats,
    /// List connections.
    Ls {
        #[command(flatten)]
        filter: FilterArgs,
        /// Largest first.
        #[arg(long, value_enum)]
        sort: Option<admin::protocol::SortKey>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        #[cfg(feature = "bench")]
        Command::Bench(args) => match wsgate_bench::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate bench: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Ctl(args) => match ctl(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate ctl: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    use admin::ctl::{self as c, Client};
    use admin::protocol::Command as Cmd;
    let path = c::socket_path(args.socket, args.config.as_deref())?;
    let json = args.json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut client = Client::connect(&path).await?;
        let command = match args.command {
            CtlCommand::Stats => Cmd::Stats {},
            CtlCommand::Ls {
                filter,
                sort,
                limit,
            } => Cmd::List {
                filter: filter.into_filter(),
                sort,
                limit,
            },
            CtlCommand::Show { id } => Cmd::Show { conn: id },
            CtlCommand::Evict {
                id,
                filter,
                reason,
                dry_run,
                all,
            } => Cmd::Evict {
                conn: id,
                filter: filter.into_filter(),
                reason,
                dry_run,
                all,
            },
            CtlCommand::Reload { dry_run } => Cmd::Reload { dry_run },
            CtlCommand::Drain { timeout } => Cmd::Drain { timeout },
            CtlCommand::Publish { topic, data } => {
                let data: serde_json::Value = serde_json::from_str(&data)
                    .context("DATA must be JSON (quote a string: '\"text\"')")?;
                Cmd::Publish { topic, data }
            }
            CtlCommand::Config => Cmd::Config {},
            CtlCommand::Watch { interval_ms } => Cmd::Watch { interval_ms },
        };
        let watching = matches!(command, Cmd::Watch { .. });
        let result = client.call(command.clone()).await?;
        if watching {
            loop {
                let line = client.next_line().await?;
                if json {
                    println!("{line}");
                } else if let Ok(event) = serde_json::from_str::<admin::protocol::Event>(&line) {
                    println!("{}", c::event_text(&event));
                }
            }
        }
        c::print(json, &result, |v| render(&command, v));
        Ok(())
    })
}

/// Renders a command's result for people.
fn render(command: &admin::protocol::Command, v: &serde_json::Value) -> Option<String> {
    use admin::ctl as c;
    use admin::protocol::Command as Cmd;
    match command {
        Cmd::Stats {} => serde_json::from_value(v.clone())
            .ok()
            .map(|s| c::stats_text(&s)),
        Cmd::List { .. } => serde_json::from_value::<Vec<admin::protocol::ConnRow>>(v.clone())
            .ok()
            .map(|rows| c::connections_table(&rows)),
        Cmd::Show { .. } => serde_json::from_value(v.clone())
            .ok()
            .map(|d| c::detail_text(&d)),
        Cmd::Evict { dry_run: true, .. } => {
            let rows: Vec<admin::protocol::ConnRow> =
                serde_json::from_value(v.get("connections")?.clone()).ok()?;
            Some(format!(
                "would evict {} connection(s)\n{}",
                rows.len(),
                c::connections_table(&rows)
            ))
        }
        Cmd::Evict { .. } => Some(format!("evicted {} connection(s)\n", v.get("evicted")?)),
        Cmd::Publish { .. } => Some(format!("delivered to {}\n", v.get("delivered")?)),
        Cmd::Drain { .. } => Some("draining\n".into()),
        Cmd::Config {} => toml::to_string_pretty(v).ok(),
        Cmd::Reload { dry_run } => Some(reload_text(*dry_run, v)),
        Cmd::Watch { .. } => None,
    }
}

fn reload_text(dry_run: bool, v: &serde_json::Value) -> String {
    let list = |key: &str| -> Vec<String> {
        v.pointer(key)
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = String::from(if dry_run {
        "dry run: nothing changed\n"
    } else {
        "reloaded\n"
    });
    let applied = list("/changes/applied");
    let restart = list("/changes/restart_required");
    if applied.is_empty() && restart.is_empty() {
        out.push_str("no changes\n");
    }
    for a in applied {
        out.push_str(&format!("  applies live: {a}\n"));
    }
    for r in restart {
        out.push_str(&format!("  needs a restart: {r}\n"));
    }
    let over = v
        .get("over_cap")
        .and_then(|x| x.as_array())
        .map_or(&[][..], Vec::as_slice);
    let closing = over.iter().filter(|o| o["closes"] == true).count();
    let staying = over.len() - closing;
    let removed = v
        .get("on_removed_routes")
        .and_then(|x| x.as_u64())
        .unwrap_or(0);
    let verb = if dry_run { "would close" } else { "closing" };
    if closing > 0 {
        out.push_str(&format!(
            "  {verb} {closing} connection(s) over a tightened cap (4006)\n"
        ));
    }
    if staying > 0 {
        let stay = if dry_run { "would stay" } else { "staying" };
        out.push_str(&format!(
            "  {staying} connection(s) over a tightened cap {stay} open (enforce_on_reload is off)\n"
        ));
    }
    if removed > 0 {
        out.push_str(&format!(
            "  {verb} {removed} connection(s) on removed routes (1001)\n"
        ));
    }
    out
}

fn check(path: &Path) -> ExitCode {
    match Settings::load(path) {
        Ok(settings) => {
            for w in &settings.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", settings.redacted_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The config file to use: `-c`, else `etc/wsgate.toml` if present.
fn config_path(config: Option<PathBuf>) -> Option<PathBuf> {
    config.or_else(|| {
        let default = PathBuf::from(wsgate::DEFAULT_CONFIG);
        default.exists().then_some(default)
    })
}

fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WSGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let path = config_path(config);
    let settings = match &path {
        Some(p) => Settings::load(p),
        None => Settings::builtin(),
    }
    .map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(settings, path))
}

async fn run(settings: Settings, path: Option<PathBuf>) -> anyhow::Result<()> {
    let server = &settings.config.server;
    let listen = server.listen;
    let (watch_config, debounce) = (server.watch_config, server.reload_debounce);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(file = %settings.file, routes = settings.routes.len(), "config loaded");

    let daemon = Daemon::new(settings, path.clone());
    let (control, commands) = tokio::sync::mpsc::channel(CONTROL_QUEUE);
    signals::forward(control.clone()).context("cannot install signal handlers")?;
    let _watcher = match (&path, watch_config) {
        (Some(p), true) => Some(
            wsgate::watch::watch(p, debounce, control.clone())
                .with_context(|| format!("cannot watch {}", p.display()))?,
        ),
        _ => None,
    };

    // The admin socket; its file goes away when `_socket_file` drops.
    let _socket_file = match daemon.settings().admin_socket() {
        None => None,
        Some(path) => {
            let mode = daemon.settings().admin_socket_mode();
            let (admin, file) = admin::socket::bind(&path, mode).await.with_context(|| {
                format!(
                    "cannot create the admin socket {} (set [server] admin_socket)",
                    path.display()
                )
            })?;
            let access = admin::socket::Access {
                own_uid: file.uid,
                allowed_gid: daemon.settings().config.server.admin_allowed_gid,
            };
            let service = Arc::new(admin::service::Service {
                daemon: Arc::clone(&daemon),
                control: control.clone(),
            });
            tokio::spawn(admin::socket::serve(admin, access, service));
            tracing::info!(path = %path.display(), "admin socket ready");
            Some(file)
        }
    };

    let server = tokio::spawn(wsgate::server::serve(listener, Arc::clone(&daemon)));
    tracing::info!("listening on {local}");
    systemd::ready();
    systemd::status(&daemon);
    systemd::spawn_watchdog(Arc::clone(&daemon));

    control::run(Arc::clone(&daemon), commands).await;
    let _ = server.await;
    tracing::info!("stopped");
    Ok(())
}
