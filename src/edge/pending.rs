//! `max_pending_handshakes`: TCP connections accepted and still in their
//! HTTP phase, counted by a semaphore whose permit is taken before
//! `accept`, so that at the cap the listener stops accepting and the
//! kernel's backlog holds the rest.
//!
//! A reload resizes the semaphore live: growing adds permits; shrinking
//! forgets the permits that are free now and owes the rest, which are then
//! forgotten as their connections finish instead of being returned.

use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::handle::lock;

pub struct Pending {
    semaphore: Arc<Semaphore>,
    size: Mutex<Size>,
    gauge: Gauge,
}

#[derive(Debug, Default)]
struct Size {
    capacity: usize,
    /// Permits to forget when they come back (after a shrink).
    owed: usize,
}

/// One connection's place in the HTTP phase; freed when dropped. It is
/// taken before `accept` and counted in the gauge once a connection holds
/// it ([`PendingPermit::accepted`]).
pub struct PendingPermit {
    permit: Option<OwnedSemaphorePermit>,
    pending: Arc<Pending>,
    counted: bool,
}

impl PendingPermit {
    /// A connection was accepted on this place.
    pub fn accepted(mut self) -> Self {
        self.pending.gauge.inc();
        self.counted = true;
        self
    }
}

impl Pending {
    pub fn new(capacity: usize, gauge: Gauge) -> Arc<Self> {
        Arc::new(Pending {
            semaphore: Arc::new(Semaphore::new(capacity)),
            size: Mutex::new(Size { capacity, owed: 0 }),
            gauge,
        })
    }

    /// Waits for a place; `None` only if the semaphore was closed (it is
    /// never closed).
    pub async fn acquire(self: &Arc<Self>) -> Option<PendingPermit> {
        let permit = Arc::clone(&self.semaphore).acquire_owned().await.ok()?;
        Some(PendingPermit {
            permit: Some(permit),
            pending: Arc::clone(self),
            counted: false,
        })
    }

    /// Changes the cap; connections over a lowered cap finish as they are.
    pub fn resize(&self, capacity: usize) {
        let mut size = lock(&self.size);
        if capacity > size.capacity {
            let grow = capacity - size.capacity;
            let cancelled = grow.min(size.owed);
            size.owed -= cancelled;
            self.semaphore.add_permits(grow - cancelled);
        } else {
            let shrink = size.capacity - capacity;
            let forgotten = self.semaphore.forget_permits(shrink);
            size.owed += shrink - forgotten;
        }
        size.capacity = capacity;
    }

    /// Connections in their HTTP phase now.
    pub fn in_use(&self) -> usize {
        usize::try_from(self.gauge.get()).unwrap_or(0)
    }
}

impl Drop for PendingPermit {
    fn drop(&mut self) {
        if self.counted {
            self.pending.gauge.dec();
        }
        let mut size = lock(&self.pending.size);
        if let Some(permit) = self.permit.take() {
            if size.owed > 0 {
                size.owed -= 1;
                permit.forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn available(p: &Pending) -> usize {
        p.semaphore.available_permits()
    }

    #[tokio::test]
    async fn permits_count_and_come_back() {
        let p = Pending::new(2, Gauge::default());
        let a = p.acquire().await.expect("permit").accepted();
        let waiting = p.acquire().await.expect("permit");
        assert_eq!(p.in_use(), 1, "a place waiting for accept is not in use");
        let b = waiting.accepted();
        assert_eq!(p.in_use(), 2);
        assert_eq!(available(&p), 0);
        drop(a);
        assert_eq!((p.in_use(), available(&p)), (1, 1));
        drop(b);
        assert_eq!((p.in_use(), available(&p)), (0, 2));
    }

    #[tokio::test]
    async fn shrinking_below_what_is_held_forgets_permits_as_they_return() {
        let p = Pending::new(3, Gauge::default());
        let held: Vec<_> = [p.acquire().await, p.acquire().await]
            .into_iter()
            .map(|x| x.expect("permit"))
            .collect();
        p.resize(1);
        // One free permit forgotten now, one owed.
        assert_eq!(available(&p), 0);
        let mut held = held.into_iter();
        drop(held.next());
        assert_eq!(available(&p), 0, "the first to return pays the debt");
        drop(held.next());
        assert_eq!(available(&p), 1);
        p.resize(4);
        assert_eq!(available(&p), 4);
    }

    #[tokio::test]
    async fn growing_cancels_a_debt_first() {
        let p = Pending::new(2, Gauge::default());
        let a = p.acquire().await.expect("permit");
        let b = p.acquire().await.expect("permit");
        p.resize(0);
        p.resize(1);
        drop(a);
        drop(b);
        assert_eq!(available(&p), 1);
    }
}
