//! `wsgate console`: the live console over the admin socket (ratatui).
//!
//! The parts: [`app`] (the state and its one `update`), [`input`] (keys to
//! actions), [`filter`] (the `/` syntax), [`window`] (sort, filter and the
//! page), [`rates`] (per-connection rates and the sparklines), [`events`]
//! (the events pane), [`dialog`] (confirmations as data, the commands),
//! [`draw`] (pure rendering), [`link`] (the watch and command
//! connections), [`terminal`] (taking and restoring the screen).
//!
//! One loop: terminal input (a blocking thread), the watch stream, command
//! outcomes, ticks and signals all arrive as a [`Msg`] on one bounded
//! channel; each goes through [`App::update`] and the screen is drawn.

mod app;
mod dialog;
mod draw;
mod events;
mod filter;
mod input;
mod link;
mod rates;
mod terminal;
#[cfg(test)]
mod testdata;
mod window;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use wsgate_admin_proto::Client;

use crate::cli::ConsoleArgs;
use app::{App, Msg};

/// Messages waiting for the loop; producers wait when it is full.
const INBOX: usize = 256;
/// Commands waiting for the command connection; more are refused.
const OUTBOX: usize = 32;
/// How often the screen is refreshed without news.
const TICK: Duration = Duration::from_secs(1);

pub fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    let path = crate::ctl::socket_path(args.socket, args.config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        // Reach the daemon before the screen is taken, so that a missing
        // socket or a refusal is one line on a terminal left as it was.
        let mut probe = Client::connect(&path)
            .await
            .map_err(|e| anyhow::anyhow!(link::describe(&e)))?;
        probe
            .stats()
            .await
            .map_err(|e| anyhow::anyhow!(link::describe(&e)))?;
        if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "not a terminal: the console needs one (for a stream of text, use `wsgate ctl watch`)"
            );
        }
        let terminal = terminal::enter().context("cannot take the terminal")?;
        let result = session(terminal, path, args.interval, probe).await;
        terminal::leave();
        result
    })
}

async fn session(
    mut terminal: ratatui::DefaultTerminal,
    path: PathBuf,
    interval: Duration,
    commands: Client,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel(INBOX);
    let (cmd_tx, cmd_rx) = mpsc::channel(OUTBOX);
    terminal::forward_input(tx.clone());
    let size = terminal.size()?;
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut app = App::new(path.display().to_string(), color, (size.width, size.height));
    let (view_tx, view) = watch::channel(app.watch_spec());
    tokio::spawn(link::watch(path.clone(), interval, view, tx.clone()));
    tokio::spawn(link::commands(path.clone(), commands, cmd_rx, tx.clone()));
    tokio::spawn(signals(tx.clone()));
    tokio::spawn(ticks(tx));
    loop {
        terminal.draw(|f| draw::render(&app, f))?;
        let Some(msg) = rx.recv().await else {
            return Ok(());
        };
        let mut cmds = app.update(msg);
        // Take what else is waiting before drawing again.
        while let Ok(msg) = rx.try_recv() {
            cmds.extend(app.update(msg));
        }
        for cmd in cmds {
            // A full outbox means the daemon is slow to answer; the screen
            // shows nothing new for that key, and the operator tries again.
            let _ = cmd_tx.try_send(cmd);
        }
        // A new window (scrolled, sorted, filtered, resized) goes to the
        // daemon's watch.
        view_tx.send_if_modified(|view| {
            let now = app.watch_spec();
            let changed = *view != now;
            *view = now;
            changed
        });
        if app.quit {
            return Ok(());
        }
    }
}

/// SIGTERM, SIGHUP and SIGINT to the console end it like `q`.
async fn signals(tx: mpsc::Sender<Msg>) {
    let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = hup.recv() => {}
        _ = int.recv() => {}
    }
    let _ = tx.send(Msg::Signal).await;
}

async fn ticks(tx: mpsc::Sender<Msg>) {
    let mut every = tokio::time::interval(TICK);
    loop {
        every.tick().await;
        if tx.send(Msg::Tick).await.is_err() {
            return;
        }
    }
}
