//! Signals are only forwarded: signal-hook's handler writes to a pipe, and
//! a thread turns each signal into a [`Control`] for the control loop.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::control::{Control, Sender};

/// Starts forwarding SIGHUP (reload), SIGTERM and SIGINT (drain, then stop).
pub fn forward(tx: Sender) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let control = match signal {
                    SIGHUP => Control::Reload {
                        origin: "SIGHUP",
                        dry_run: false,
                        reply: None,
                    },
                    SIGTERM => Control::Terminate { signal: "SIGTERM" },
                    SIGINT => Control::Terminate { signal: "SIGINT" },
                    _ => continue,
                };
                if tx.blocking_send(control).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}
