//! Memory pressure: resident memory sampled on a timer against
//! `max_memory`, with a low-water mark so that the state does not flap.
//!
//! What is measured is the process's resident set (`VmRSS` in
//! `/proc/self/status`), as Envoy's and Soketi's overload checks do: the
//! memory the daemon itself holds. The cgroup's `memory.current` would also
//! count the page cache of the whole group, which the kernel reclaims on its
//! own and which says nothing about how many connections fit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::memory::MemoryBounds;

/// The resident set of this process in bytes, from `/proc/self/status`.
pub fn resident_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    parse_vm_rss(&status).ok_or_else(|| "no VmRSS line in /proc/self/status".to_string())
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// A change of the pressure state, to be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Entered {
        rss: u64,
        bounds: MemoryBounds,
    },
    Left {
        rss: u64,
        bounds: MemoryBounds,
    },
    /// `max_memory` was turned off (or could not be measured) while under
    /// pressure.
    Released,
}

/// Whether the daemon is above `max_memory` (and not yet back under its
/// low-water mark).
#[derive(Debug, Default)]
pub struct Pressure {
    on: AtomicBool,
}

impl Pressure {
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Takes one sample into account.
    pub fn update(&self, rss: u64, bounds: MemoryBounds) -> Option<Transition> {
        let on = self.is_on();
        if !on && rss > bounds.high {
            self.on.store(true, Ordering::Relaxed);
            Some(Transition::Entered { rss, bounds })
        } else if on && rss < bounds.low {
            self.on.store(false, Ordering::Relaxed);
            Some(Transition::Left { rss, bounds })
        } else {
            None
        }
    }

    /// No bound any more.
    pub fn release(&self) -> Option<Transition> {
        self.on
            .swap(false, Ordering::Relaxed)
            .then_some(Transition::Released)
    }
}

/// What the sampler runs on: the bounds and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Watch {
    pub bounds: Option<MemoryBounds>,
    pub interval: Duration,
}

pub fn log(t: Transition) {
    match t {
        Transition::Entered { rss, bounds } => tracing::warn!(
            rss,
            max_memory = bounds.high,
            low_water = bounds.low,
            "memory pressure: resident memory is above max_memory; new upgrades get 503 and \
             /readyz answers 503 until it is below the low-water mark"
        ),
        Transition::Left { rss, bounds } => tracing::info!(
            rss,
            max_memory = bounds.high,
            low_water = bounds.low,
            "memory pressure over: resident memory is below the low-water mark; upgrades are \
             accepted again"
        ),
        Transition::Released => {
            tracing::info!("memory pressure over: max_memory is off; upgrades are accepted again")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_the_status_file() {
        let status = "Name:\twsgate\nVmHWM:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(resident_bytes().expect("this process has a resident set") > 0);
    }

    #[test]
    fn pressure_starts_above_high_and_ends_below_low() {
        let p = Pressure::default();
        let b = MemoryBounds {
            high: 1000,
            low: 900,
        };
        assert_eq!(p.update(1000, b), None);
        assert!(matches!(
            p.update(1001, b),
            Some(Transition::Entered { .. })
        ));
        assert!(p.is_on());
        assert_eq!(p.update(950, b), None, "between the marks the state holds");
        assert!(p.is_on());
        assert!(matches!(p.update(899, b), Some(Transition::Left { .. })));
        assert!(!p.is_on());
        assert!(matches!(
            p.update(2000, b),
            Some(Transition::Entered { .. })
        ));
        assert_eq!(p.release(), Some(Transition::Released));
        assert_eq!(p.release(), None);
    }
}
