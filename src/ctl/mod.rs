//! `wsgate ctl`: a one-shot client of the admin socket, for people (tables)
//! and scripts (`--json`), built on the typed client of
//! `wsgate-admin-proto`.

pub(crate) mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use wsgate::config::{load::Source, settings::admin_socket_path, Config};
use wsgate_admin_proto::{Client, ClientError, Command, Eviction, ListSpec};

use crate::cli::{self, CtlArgs, CtlCommand};

/// Sends the command, prints the answer; `watch` runs until the daemon
/// closes the connection.
pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let path = socket_path(args.socket, args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = Output { json: args.json };
    if args.cluster {
        return runtime.block_on(execute_cluster(&path, args.command, out));
    }
    runtime.block_on(execute(&path, args.command, out))
}

/// The admin socket to use: `--socket`, else the one named by the config
/// (`-c`, else `etc/wsgate.toml` if present, else the built-in default).
/// `wsgate console` finds it the same way.
pub(crate) fn socket_path(
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s);
    }
    let parsed = match cli::config_file(config) {
        Some(path) => Source::read(&path)
            .and_then(|s| s.parse())
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Config::default(),
    };
    admin_socket_path(&parsed)
        .ok_or_else(|| anyhow::anyhow!("the admin socket is turned off in this config"))
}

async fn execute(path: &Path, command: CtlCommand, out: Output) -> anyhow::Result<()> {
    let mut client = Client::connect(path).await?;
    match command {
        CtlCommand::Stats => out.show(&client.stats().await?, render::stats_text),
        CtlCommand::Ls {
            filter,
            sort,
            asc,
            offset,
            limit,
        } => {
            let rows = client.list_with(ListSpec {
                filter: filter.into(),
                sort: sort.map(Into::into),
                order: cli::order(asc),
                offset,
                limit,
            });
            out.show(&rows.await?, |r| render::connections_table(r));
        }
        CtlCommand::Show { id } => out.show(&client.show(id).await?, render::detail_text),
        CtlCommand::Evict {
            id,
            filter,
            reason,
            dry_run,
            all,
        } => {
            let which = Eviction {
                conn: id,
                filter: filter.into(),
                reason,
                all,
            };
            if dry_run {
                out.show(&client.evict_preview(which).await?, render::preview_text);
            } else {
                out.show(&client.evict(which).await?, render::evicted_text);
            }
        }
        CtlCommand::Reload { dry_run } => {
            out.show(&client.reload(dry_run).await?, render::reload_text);
        }
        CtlCommand::Drain { timeout } => {
            let drain = client.drain(timeout.as_deref()).await?;
            out.show(&drain, |_| "draining\n".into());
        }
        CtlCommand::Publish { topic, data } => {
            let data = serde_json::from_str(&data)
                .context("DATA must be JSON (quote a string: '\"text\"')")?;
            let published = client.publish(&topic, data).await?;
            out.show(&published, |p| format!("delivered to {}\n", p.delivered));
        }
        CtlCommand::Config => out.show(&client.config().await?, render::config_text),
        CtlCommand::Watch { interval_ms } => {
            let mut watch = client.watch(interval_ms.map(Duration::from_millis)).await?;
            loop {
                if out.json {
                    // The daemon's lines, verbatim.
                    println!("{}", watch.next_line().await?);
                    continue;
                }
                match watch.next().await {
                    Ok(event) => println!("{}", render::event_text(&event)),
                    // An event this ctl does not know: skip it.
                    Err(ClientError::Protocol(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

/// `--cluster`: the command on every node, each node's answer rendered as
/// the command's own.
async fn execute_cluster(path: &Path, command: CtlCommand, out: Output) -> anyhow::Result<()> {
    let mut client = Client::connect(path).await?;
    let (command, each): (_, fn(&serde_json::Value) -> Option<String>) = match command {
        CtlCommand::Stats => (Command::Stats {}, |v| {
            Some(render::stats_text(&serde_json::from_value(v.clone()).ok()?))
        }),
        CtlCommand::Ls {
            filter,
            sort,
            asc,
            offset,
            limit,
        } => (
            ListSpec {
                filter: filter.into(),
                sort: sort.map(Into::into),
                order: cli::order(asc),
                offset,
                limit,
            }
            .command(),
            |v| {
                let rows: Vec<wsgate_admin_proto::ConnRow> =
                    serde_json::from_value(v.clone()).ok()?;
                Some(render::connections_table(&rows))
            },
        ),
        CtlCommand::Evict { id: Some(_), .. } => {
            anyhow::bail!("--cluster evict takes a filter, not a connection id (ids are per node)")
        }
        CtlCommand::Evict {
            id: None,
            filter,
            reason,
            dry_run,
            all,
        } => {
            let which = Eviction {
                conn: None,
                filter: filter.into(),
                reason,
                all,
            };
            let each: fn(&serde_json::Value) -> Option<String> = if dry_run {
                |v| {
                    Some(render::preview_text(
                        &serde_json::from_value(v.clone()).ok()?,
                    ))
                }
            } else {
                |v| {
                    Some(render::evicted_text(
                        &serde_json::from_value(v.clone()).ok()?,
                    ))
                }
            };
            (which.command(dry_run), each)
        }
        _ => anyhow::bail!("--cluster applies to stats, ls and evict"),
    };
    let result = client.cluster(command).await?;
    out.show(&result, |r| render::cluster_text(r, each));
    Ok(())
}

/// Where a result goes: stdout, as text or (`--json`) as pretty JSON.
struct Output {
    json: bool,
}

impl Output {
    fn show<T: Serialize>(&self, result: &T, text: impl FnOnce(&T) -> String) {
        let text = if self.json {
            render::pretty(result)
        } else {
            text(result)
        };
        // A closed stdout (`| head`) is not an error worth a panic.
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
}
