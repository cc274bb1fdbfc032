//! Connect rates: a token bucket per client IP and one for the whole
//! daemon, checked on every upgrade request before any WebSocket state.
//!
//! The per-IP table is bounded by `connect_tracked_ips`. Whenever it has
//! doubled since the last sweep (or passed the bound) it is swept of the
//! addresses whose bucket is full again (they are indistinguishable from
//! addresses never seen); if it is still over the bound, every address is
//! forgotten at once (they start again with a full bucket, and the
//! daemon-wide bucket still holds them all). Sweeps come with growth, so
//! their cost is spread over the inserts that made them necessary.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use governor::clock::{Clock, MonotonicClock};
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::schema::ServerConfig;

type Keyed = RateLimiter<IpAddr, HashMapStateStore<IpAddr>, MonotonicClock>;
type Direct = RateLimiter<NotKeyed, InMemoryState, MonotonicClock>;

/// Which bucket refused, and when it has a token again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Ip(Duration),
    Global(Duration),
}

/// What a rebuild compares: the keys the buckets are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    per_ip: (u32, u32),
    global: (u32, u32),
    tracked_ips: usize,
}

impl Shape {
    pub fn of(s: &ServerConfig) -> Self {
        Shape {
            per_ip: (s.connects_per_second_per_ip, s.connect_burst_per_ip),
            global: (s.connects_per_second, s.connect_burst),
            tracked_ips: s.connect_tracked_ips,
        }
    }
}

fn quota((rate, burst): (u32, u32)) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    // Validation asks for a burst with a rate; 1 is the smallest bucket.
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// The buckets built from one [`Shape`].
pub struct ConnectRates {
    pub shape: Shape,
    per_ip: Option<PerIp>,
    global: Option<Direct>,
}

struct PerIp {
    quota: Quota,
    limiter: ArcSwap<Keyed>,
    max_ips: usize,
    /// Addresses left by the last sweep; the next comes at twice as many.
    after_sweep: AtomicUsize,
}

/// What checking one request did to the per-IP table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Housekeeping {
    /// Addresses forgotten at once because the table was full of live
    /// buckets (0: none).
    pub reset: usize,
}

impl ConnectRates {
    pub fn new(shape: Shape) -> Self {
        ConnectRates {
            shape,
            per_ip: quota(shape.per_ip).map(|quota| PerIp {
                quota,
                limiter: ArcSwap::from_pointee(Keyed::hashmap_with_clock(quota, MonotonicClock)),
                max_ips: shape.tracked_ips,
                after_sweep: AtomicUsize::new(0),
            }),
            global: quota(shape.global).map(|q| Direct::direct_with_clock(q, MonotonicClock)),
        }
    }

    /// Takes a token from `ip`'s bucket, then from the daemon-wide one.
    pub fn check(&self, ip: IpAddr) -> (Result<(), Over>, Housekeeping) {
        let clock = MonotonicClock;
        let mut housekeeping = Housekeeping::default();
        if let Some(per_ip) = &self.per_ip {
            let limiter = per_ip.limiter.load();
            let checked = limiter.check_key(&ip);
            housekeeping = per_ip.keep_bounded(&limiter);
            if let Err(not_until) = checked {
                let wait = not_until.wait_time_from(clock.now());
                return (Err(Over::Ip(wait)), housekeeping);
            }
        }
        if let Some(global) = &self.global {
            if let Err(not_until) = global.check() {
                let wait = not_until.wait_time_from(clock.now());
                return (Err(Over::Global(wait)), housekeeping);
            }
        }
        (Ok(()), housekeeping)
    }

    /// Addresses in the per-IP table now.
    pub fn tracked_ips(&self) -> usize {
        self.per_ip.as_ref().map_or(0, |p| p.limiter.load().len())
    }
}

impl PerIp {
    fn keep_bounded(&self, limiter: &Keyed) -> Housekeeping {
        let len = limiter.len();
        let after = self.after_sweep.load(Ordering::Relaxed);
        if len <= self.max_ips && len < after.max(1).saturating_mul(2) {
            return Housekeeping::default();
        }
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let left = limiter.len();
        if left <= self.max_ips {
            self.after_sweep.store(left, Ordering::Relaxed);
            return Housekeeping::default();
        }
        self.limiter.store(Arc::new(Keyed::hashmap_with_clock(
            self.quota,
            MonotonicClock,
        )));
        self.after_sweep.store(0, Ordering::Relaxed);
        Housekeeping { reset: left }
    }
}

/// Whole seconds until `wait` has passed, at least 1 (what `Retry-After`
/// can say).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(per_ip: (u32, u32), global: (u32, u32), tracked_ips: usize) -> Shape {
        Shape {
            per_ip,
            global,
            tracked_ips,
        }
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn an_address_past_its_burst_is_over_and_others_are_not() {
        let rates = ConnectRates::new(shape((1, 3), (0, 0), 100));
        for _ in 0..3 {
            assert_eq!(rates.check(ip(1)).0, Ok(()));
        }
        let (over, _) = rates.check(ip(1));
        match over {
            Err(Over::Ip(wait)) => assert!(wait <= Duration::from_secs(1), "{wait:?}"),
            other => panic!("expected the per-IP bucket to refuse: {other:?}"),
        }
        assert_eq!(rates.check(ip(2)).0, Ok(()));
    }

    #[test]
    fn the_daemon_wide_bucket_holds_every_address() {
        let rates = ConnectRates::new(shape((0, 0), (1, 2), 100));
        assert_eq!(rates.check(ip(1)).0, Ok(()));
        assert_eq!(rates.check(ip(2)).0, Ok(()));
        assert!(matches!(rates.check(ip(3)).0, Err(Over::Global(_))));
    }

    #[test]
    fn off_buckets_refuse_nothing() {
        let rates = ConnectRates::new(shape((0, 0), (0, 0), 100));
        for n in 0..1000 {
            assert_eq!(rates.check(ip(n)).0, Ok(()));
        }
        assert_eq!(rates.tracked_ips(), 0);
    }

    #[test]
    fn the_table_never_holds_more_than_its_bound() {
        // A slow refill: nothing is swept as full, so the bound empties
        // the table.
        let rates = ConnectRates::new(shape((1, 5), (0, 0), 64));
        let mut resets = 0;
        for n in 0..1000 {
            let (_, h) = rates.check(ip(n));
            if h.reset > 0 {
                resets += 1;
            }
            assert!(rates.tracked_ips() <= 64, "{}", rates.tracked_ips());
        }
        assert!(resets > 0);
    }

    #[test]
    fn full_buckets_are_swept_as_the_table_grows() {
        // A burst of 1 at a high rate: every bucket is full again at once,
        // so sweeps keep the table small without a reset.
        let rates = ConnectRates::new(shape((1_000_000, 1), (0, 0), 64));
        for n in 0..1000 {
            let (_, h) = rates.check(ip(n));
            std::thread::sleep(Duration::from_micros(2));
            assert_eq!(h.reset, 0);
        }
        assert!(rates.tracked_ips() <= 64);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }
}
