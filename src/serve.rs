//! `wsgate serve` and `wsgate check`: load and validate the config before
//! binding, then start every part of the daemon and run the control loop
//! until it has drained.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use wsgate::config::{ConfigError, Settings};
use wsgate::daemon::Daemon;
use wsgate::server::sockets::{self, Inherited, Origin};
use wsgate::{admin, control, signals, systemd};

use crate::cli;

/// The target of the start-up log lines: the binary's (`wsgate: listening
/// on ...`, `wsgate: stopped`, as docs/config.md shows them).
const LOG: &str = "wsgate";

/// Control commands waiting for the control loop (signals, file changes,
/// admin requests); senders wait when it is full.
const CONTROL_QUEUE: usize = 64;

/// `wsgate check`: validates the file and prints the effective config
/// (secrets redacted), with warnings on stderr.
pub fn check(path: &Path) -> Result<(), ConfigError> {
    let settings = Settings::load(path)?;
    for w in &settings.warnings {
        eprintln!("warning: {w}");
    }
    print!("{}", settings.redacted_toml());
    Ok(())
}

/// `wsgate serve`: runs the daemon until it has drained or was stopped.
pub fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WSGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let path = cli::config_file(config);
    let settings = match &path {
        Some(p) => Settings::load(p),
        None => Settings::builtin(),
    }
    .map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    for w in &settings.warnings {
        tracing::warn!(target: LOG, "{w}");
    }
    // Before the runtime's threads exist: it clears LISTEN_* from the
    // environment.
    let inherited = Inherited::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(settings, path, inherited))
}

/// Binds, then starts the daemon's parts in order: signals, the config
/// watcher, the admin socket, the server; then reports ready and runs the
/// control loop.
async fn run(
    settings: Settings,
    path: Option<PathBuf>,
    inherited: Inherited,
) -> anyhow::Result<()> {
    let server = &settings.config.server;
    let (watch_config, debounce) = (server.watch_config, server.reload_debounce);
    let tls_files = settings.tls_files();
    let bound = sockets::bind_all(&settings, inherited)?;
    tracing::info!(target: LOG, file = %settings.file, routes = settings.routes.len(), "config loaded");
    let listening: Vec<String> = settings
        .listeners
        .iter()
        .zip(&bound)
        .map(|(l, b)| {
            let mut line = format!(
                "listening on {} listener={} serve={}",
                b.local, l.name, l.services
            );
            if let Some(tls) = &l.tls {
                let names: Vec<&str> = tls.certs.certificates().iter().map(|c| c.name()).collect();
                line.push_str(&format!(" tls={}", names.join(",")));
            }
            if l.config.proxy_protocol {
                line.push_str(" proxy_protocol=on");
            }
            if b.origin == Origin::Systemd {
                line.push_str(" socket=systemd");
            }
            line
        })
        .collect();

    let daemon = Daemon::new(settings, path.clone());
    let (control, commands) = tokio::sync::mpsc::channel(CONTROL_QUEUE);
    wsgate::cluster::join(&daemon, &control)
        .await
        .context("cannot join the cluster")?;
    signals::forward(control.clone()).context("cannot install signal handlers")?;
    let _watcher = match (&path, watch_config) {
        (Some(p), true) => Some(
            wsgate::watch::watch(p, &tls_files, debounce, control.clone())
                .with_context(|| format!("cannot watch {}", p.display()))?,
        ),
        _ => None,
    };
    // Its file goes away when `_socket_file` drops.
    let _socket_file = admin::start(&daemon, &control).await?;

    let listeners = bound.into_iter().map(|b| b.listener).collect();
    let server = tokio::spawn(wsgate::server::serve(listeners, Arc::clone(&daemon)));
    for line in &listening {
        tracing::info!(target: LOG, "{line}");
    }
    systemd::ready();
    systemd::status(&daemon);
    systemd::spawn_watchdog(Arc::clone(&daemon));

    control::run(Arc::clone(&daemon), commands).await;
    let _ = server.await;
    wsgate::cluster::leave(&daemon).await;
    tracing::info!(target: LOG, "stopped");
    Ok(())
}
