//! The `wsgate` command: wiring only. It parses the command line, hands each
//! subcommand to its module and maps errors to exit codes. `cli`, `ctl`,
//! `console` and `serve` are modules of the binary, not of the library: they are the
//! process's edge (clap, stdout, the log subscriber, a runtime, `anyhow`).

mod cli;
mod console;
mod ctl;
mod serve;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::{ConsoleArgs, CtlArgs};

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
    /// The live console: connections, events, evict, reload, drain.
    Console(ConsoleArgs),
    /// Load-test a wsgate deployment (loopback only unless --allow-remote).
    #[cfg(feature = "bench")]
    Bench(Box<wsgate_bench::Args>),
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
        Command::Ctl(args) => match ctl::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate ctl: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Console(args) => match console::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate console: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => match serve::serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("wsgate: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `wsgate check`: the problems are printed as they are, without a prefix.
fn check(path: &Path) -> ExitCode {
    match serve::check(path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
