//! Logging refusals that come in storms: the first refusal of a reason is
//! logged in full, the ones after it are counted, and while they last one
//! line per `refusal_log_interval` says how many there were. A storm of a
//! million refused connects costs a few lines, not a million.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::handle::lock;

/// One reason's window.
#[derive(Debug, Default)]
pub struct StormLog {
    window: Arc<Mutex<Window>>,
}

#[derive(Debug, Default)]
struct Window {
    open: bool,
    counted: u64,
    last_ip: Option<IpAddr>,
}

/// What to do with one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Log it in full.
    Log,
    /// Counted, for the next summary.
    Counted,
}

impl StormLog {
    /// Takes one refusal into account. The first of a window is to be
    /// logged, and opens the window; `summary(count, last_ip, interval)` is
    /// then called every `interval` (on the runtime) while refusals keep
    /// coming, and once more after the last. `interval` 0: every refusal is
    /// logged.
    pub fn note<F>(&self, ip: IpAddr, interval: Duration, summary: F) -> Note
    where
        F: Fn(u64, Option<IpAddr>, Duration) + Send + 'static,
    {
        if interval.is_zero() {
            return Note::Log;
        }
        let mut w = lock(&self.window);
        if w.open {
            w.counted += 1;
            w.last_ip = Some(ip);
            return Note::Counted;
        }
        w.open = true;
        w.counted = 0;
        w.last_ip = None;
        drop(w);
        let window = Arc::clone(&self.window);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let mut w = lock(&window);
                if w.counted == 0 {
                    w.open = false;
                    return;
                }
                let (count, last_ip) = (w.counted, w.last_ip.take());
                w.counted = 0;
                drop(w);
                summary(count, last_ip, interval);
            }
        });
        Note::Log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_storm_is_one_line_then_counts() {
        let log = StormLog::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let interval = Duration::from_millis(50);
        let summary = |seen: &Arc<Mutex<Vec<u64>>>| {
            let seen = Arc::clone(seen);
            move |n, _: Option<IpAddr>, _| lock(&seen).push(n)
        };
        assert_eq!(log.note(ip, interval, summary(&seen)), Note::Log);
        for _ in 0..99 {
            assert_eq!(log.note(ip, interval, summary(&seen)), Note::Counted);
        }
        // The summary comes, then the window closes for lack of refusals.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lock(&log.window).open {
            assert!(std::time::Instant::now() < deadline, "window never closed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lock(&seen).iter().sum::<u64>(), 99);
        assert_eq!(log.note(ip, interval, summary(&seen)), Note::Log);
    }

    #[test]
    fn interval_zero_logs_everything() {
        let log = StormLog::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(log.note(ip, Duration::ZERO, |_, _, _| {}), Note::Log);
        }
    }
}
