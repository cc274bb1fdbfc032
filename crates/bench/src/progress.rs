//! Progress bars on stderr while connecting and running, drawn from atomic
//! counters ten times a second (the hot paths only bump a counter). Hidden
//! with `--quiet` or when stderr is not a terminal, so that logs and
//! `--json` pipelines stay clean.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// A bar counting things.
const COUNT_TEMPLATE: &str =
    "{prefix:>11} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg}";
/// A bar counting time.
const TIMER_TEMPLATE: &str = "{prefix:>11} [{elapsed_precise}] {wide_bar} {msg}";

/// Extra text after the bar, computed at each redraw.
pub type Message = Box<dyn Fn() -> String + Send + Sync>;

/// One bar counting up to a total.
pub struct Progress {
    bar: ProgressBar,
    counter: Arc<AtomicU64>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

/// Whether bars are drawn: not with `--quiet`, and only on a terminal.
pub fn visible(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

impl Progress {
    /// Starts a bar on a new counter (must be called inside the runtime).
    pub fn start(visible: bool, label: &str, total: u64, message: Option<Message>) -> Progress {
        Self::follow(visible, label, total, Arc::new(AtomicU64::new(0)), message)
    }

    /// Starts a bar showing an existing counter.
    pub fn follow(
        visible: bool,
        label: &str,
        total: u64,
        counter: Arc<AtomicU64>,
        message: Option<Message>,
    ) -> Progress {
        Self::with_template(visible, label, total, counter, message, COUNT_TEMPLATE)
    }

    /// Starts a bar for a wait of `total`; its counter is in milliseconds.
    pub fn timer(visible: bool, label: &str, total: Duration) -> Progress {
        let counter = Arc::new(AtomicU64::new(0));
        let ms = counter.clone();
        let total_s = total.as_secs_f64();
        let message: Message = Box::new(move || {
            let done = ms.load(Ordering::Relaxed) as f64 / 1e3;
            format!("{done:.1}/{total_s:.1} s")
        });
        let total_ms = u64::try_from(total.as_millis()).unwrap_or(u64::MAX);
        Self::with_template(
            visible,
            label,
            total_ms,
            counter,
            Some(message),
            TIMER_TEMPLATE,
        )
    }

    fn with_template(
        visible: bool,
        label: &str,
        total: u64,
        counter: Arc<AtomicU64>,
        message: Option<Message>,
        template: &str,
    ) -> Progress {
        if !visible {
            return Progress {
                bar: ProgressBar::hidden(),
                counter,
                ticker: None,
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_string());
        let ticker = {
            let (bar, counter) = (bar.clone(), counter.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tick.tick().await;
                    bar.set_position(counter.load(Ordering::Relaxed));
                    if let Some(m) = &message {
                        bar.set_message(m());
                    }
                }
            })
        };
        Progress {
            bar,
            counter,
            ticker: Some(ticker),
        }
    }

    /// The counter the bar shows; tasks add to it.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.counter.clone()
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        self.bar.set_position(self.counter.load(Ordering::Relaxed));
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}
