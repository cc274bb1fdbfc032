//! Rates from successive snapshots: per connection (msgs in/s, out/s; the
//! daemon's own `in_rate`/`out_rate` where a row has them) and for the
//! daemon (the sparklines' ring buffers), over the daemon's own clock
//! (`uptime_s`), so a late snapshot does not inflate a rate.

use std::collections::{HashMap, VecDeque};

use wsgate_admin_proto::{ConnRow, Stats};

/// How many snapshots the sparklines remember (three minutes at 1 s).
pub const HISTORY: usize = 180;

/// Messages per second in and out of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    pub msgs_in: f64,
    pub msgs_out: f64,
}

/// Per-connection rates: each row's counters against the previous
/// snapshot's.
#[derive(Debug, Default)]
pub struct ConnRates {
    prev: HashMap<u64, (u64, u64)>,
    prev_uptime: Option<f64>,
    rates: HashMap<u64, Rate>,
}

impl ConnRates {
    /// Takes a snapshot. A connection seen for the first time gets its
    /// counters over its age if it is younger than the interval, else no
    /// rate until the next snapshot.
    pub fn update(&mut self, uptime_s: f64, rows: &[ConnRow]) {
        // A daemon that restarted has a smaller uptime: start again.
        let dt = self
            .prev_uptime
            .map(|t| uptime_s - t)
            .filter(|dt| *dt > 0.0);
        if dt.is_none() {
            self.prev.clear();
        }
        let mut rates = HashMap::with_capacity(rows.len());
        for row in rows {
            // The daemon's own rate, where it measures one.
            let daemon = row.in_rate.zip(row.out_rate).map(|(i, o)| Rate {
                msgs_in: i,
                msgs_out: o,
            });
            let rate = match (self.prev.get(&row.id), dt) {
                _ if daemon.is_some() => daemon,
                (Some(&(i, o)), Some(dt)) => Some(Rate {
                    msgs_in: row.msgs_in.saturating_sub(i) as f64 / dt,
                    msgs_out: row.msgs_out.saturating_sub(o) as f64 / dt,
                }),
                (None, Some(dt)) if row.age_s > 0.0 && row.age_s <= dt => Some(Rate {
                    msgs_in: row.msgs_in as f64 / row.age_s,
                    msgs_out: row.msgs_out as f64 / row.age_s,
                }),
                _ => None,
            };
            if let Some(rate) = rate {
                rates.insert(row.id, rate);
            }
        }
        self.prev = rows
            .iter()
            .map(|r| (r.id, (r.msgs_in, r.msgs_out)))
            .collect();
        self.prev_uptime = Some(uptime_s);
        self.rates = rates;
    }

    pub fn get(&self, id: u64) -> Option<Rate> {
        self.rates.get(&id).copied()
    }
}

/// The sparklines: one sample per snapshot, the newest last.
#[derive(Debug, Default)]
pub struct History {
    pub connections: VecDeque<u64>,
    pub msgs_in: VecDeque<u64>,
    pub msgs_out: VecDeque<u64>,
    pub rejections: VecDeque<u64>,
    pub closes: VecDeque<u64>,
    prev: Option<Totals>,
}

/// The counters the rates come from.
#[derive(Debug, Clone, Copy)]
struct Totals {
    uptime_s: f64,
    msgs_in: u64,
    msgs_out: u64,
    rejections: u64,
    closes: u64,
}

impl Totals {
    fn of(stats: &Stats) -> Totals {
        Totals {
            uptime_s: stats.uptime_s,
            msgs_in: stats.messages_in,
            msgs_out: stats.messages_out,
            rejections: stats.rejections.values().sum(),
            closes: stats.closes.values().sum(),
        }
    }
}

impl History {
    /// Adds a snapshot's stats: connections as they are, the rest per
    /// second since the previous one (nothing for the first one, or after
    /// a daemon restart).
    pub fn update(&mut self, stats: &Stats) {
        let now = Totals::of(stats);
        push(&mut self.connections, stats.connections.total as u64);
        if let Some(prev) = self.prev.filter(|p| now.uptime_s > p.uptime_s) {
            let dt = now.uptime_s - prev.uptime_s;
            let per_s = |a: u64, b: u64| (a.saturating_sub(b) as f64 / dt).round() as u64;
            push(&mut self.msgs_in, per_s(now.msgs_in, prev.msgs_in));
            push(&mut self.msgs_out, per_s(now.msgs_out, prev.msgs_out));
            push(&mut self.rejections, per_s(now.rejections, prev.rejections));
            push(&mut self.closes, per_s(now.closes, prev.closes));
        }
        self.prev = Some(now);
    }
}

fn push(ring: &mut VecDeque<u64>, v: u64) {
    if ring.len() == HISTORY {
        ring.pop_front();
    }
    ring.push_back(v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::testdata;

    #[test]
    fn connection_rates_are_deltas_over_the_daemons_clock() {
        let (stats, mut rows) = testdata::snapshot();
        let mut rates = ConnRates::default();
        // The test snapshot's rows are younger than nothing: no rate yet.
        rates.update(stats.uptime_s, &rows);
        assert_eq!(rates.get(4), None);
        for r in &mut rows {
            r.msgs_in += 20;
            r.msgs_out += 10;
            r.age_s += 2.0;
        }
        rates.update(stats.uptime_s + 2.0, &rows);
        assert_eq!(
            rates.get(4),
            Some(Rate {
                msgs_in: 10.0,
                msgs_out: 5.0
            })
        );
        // A new connection, younger than the interval: over its age.
        let mut young = rows[0].clone();
        young.id = 99;
        young.age_s = 0.5;
        young.msgs_in = 2;
        young.msgs_out = 1;
        rows.push(young);
        rates.update(stats.uptime_s + 4.0, &rows);
        assert_eq!(rates.get(99).map(|r| r.msgs_in), Some(4.0));
        assert_eq!(rates.get(4).map(|r| r.msgs_in), Some(0.0));
        // The daemon restarted: counters went down, no negative rates.
        rates.update(1.0, &rows);
        assert_eq!(rates.get(4), None);
    }

    #[test]
    fn history_is_per_second_and_bounded() {
        let (mut stats, _) = testdata::snapshot();
        let mut h = History::default();
        h.update(&stats);
        assert_eq!(h.connections, [4]);
        assert!(h.msgs_in.is_empty());
        stats.uptime_s += 2.0;
        stats.messages_in += 100;
        stats.rejections.insert("per_ip".into(), 6);
        stats.closes.insert("1000".into(), 2);
        h.update(&stats);
        assert_eq!(h.msgs_in, [50]);
        assert_eq!(h.rejections, [3]);
        assert_eq!(h.closes, [1]);
        for _ in 0..HISTORY + 10 {
            stats.uptime_s += 1.0;
            h.update(&stats);
        }
        assert_eq!(h.connections.len(), HISTORY);
        assert_eq!(h.msgs_in.back(), Some(&0));
    }
}
