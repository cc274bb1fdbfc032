//! The order and the window of rows, shared by `list` and `watch`: the
//! value each [`SortKey`] sorts by, its direction ([`Order`]), ties by id,
//! then `offset` and `limit`.
//!
//! Each selected connection is read once for its sort key; only the rows
//! of the window are then read in full, so a counter that moves in between
//! may show a message more than it was sorted by. (Rates come from a
//! watcher's last tick and do not move.)

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use super::protocol::{ConnRow, Order, SortKey};
use super::view::{self, Rates};
use crate::handle::Conn;

/// Which rows, in which order: the `sort`, `order`, `offset` and `limit`
/// of a `list` or `watch` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// `None`: by id.
    pub sort: Option<SortKey>,
    /// `None`: descending with a sort key, ascending by id without one.
    pub order: Option<Order>,
    pub offset: usize,
    pub limit: Option<usize>,
}

/// A connection's value in the sort column, read once before sorting.
/// `Text(None)` (no user) is below any text.
enum Key<'a> {
    Int(u64),
    Num(f64),
    Text(Option<&'a str>),
    /// Addresses as addresses: every IPv4 below every IPv6, each by value.
    Ip(IpAddr),
}

impl Key<'_> {
    fn compare(&self, other: &Key<'_>) -> Ordering {
        match (self, other) {
            (Key::Int(a), Key::Int(b)) => a.cmp(b),
            (Key::Num(a), Key::Num(b)) => a.total_cmp(b),
            // `str` orders by bytes.
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            (Key::Ip(a), Key::Ip(b)) => a.cmp(b),
            // One sort has one kind of key.
            _ => Ordering::Equal,
        }
    }
}

/// A selected connection with what it sorts by and, in a `watch`, its
/// rates.
pub struct Ranked<'a> {
    pub conn: &'a Conn,
    pub rates: Option<Rates>,
    key: Key<'a>,
}

impl Window {
    /// `conn` ranked for this window at `now`. Only what the sort key needs
    /// is read (a rate key without `rates` is over the connection's age),
    /// so ranking thousands of connections for a short window stays cheap;
    /// the window's rows are read in full afterwards.
    pub fn rank<'a>(&self, conn: &'a Conn, rates: Option<Rates>, now: Instant) -> Ranked<'a> {
        let rate = || rates.unwrap_or_else(|| Rates::over_age(conn, now));
        let key = match self.sort {
            None | Some(SortKey::Id) => Key::Int(conn.id),
            Some(SortKey::Route) => Key::Text(Some(&conn.route)),
            Some(SortKey::User) => Key::Text(conn.user.as_deref()),
            Some(SortKey::Ip) => Key::Ip(conn.ip),
            Some(SortKey::Age) => Key::Num(view::age_s(conn, now)),
            Some(SortKey::Idle) => Key::Num(view::idle_s(conn, now)),
            Some(SortKey::MsgsIn) => Key::Int(conn.stats.msgs_in.load(Relaxed)),
            Some(SortKey::MsgsOut) => Key::Int(conn.stats.msgs_out.load(Relaxed)),
            Some(SortKey::InRate) => Key::Num(rate().msgs_in),
            Some(SortKey::OutRate) => Key::Num(rate().msgs_out),
            Some(SortKey::Queue) => Key::Int(conn.queue_depth() as u64),
            Some(SortKey::Subscriptions) => Key::Int(conn.subscription_count() as u64),
            // No round trip yet is below any round trip.
            Some(SortKey::Rtt) => Key::Num(view::rtt_ms(conn).unwrap_or(f64::NEG_INFINITY)),
        };
        Ranked { conn, rates, key }
    }

    fn descending(&self) -> bool {
        match (self.order, self.sort) {
            (Some(order), _) => order == Order::Desc,
            (None, sort) => sort.is_some(),
        }
    }

    /// The window of `ranked`: sorted, then `offset` rows skipped and at
    /// most `limit` kept. Only the first `offset + limit` rows are put in
    /// order (a selection picks them first), so a short window over many
    /// connections costs about one pass over them.
    pub fn apply<'a>(&self, mut ranked: Vec<Ranked<'a>>) -> Vec<Ranked<'a>> {
        let descending = self.descending();
        let order = |a: &Ranked, b: &Ranked| {
            let by_key = a.key.compare(&b.key);
            let by_key = if descending { by_key.reverse() } else { by_key };
            by_key.then(a.conn.id.cmp(&b.conn.id))
        };
        if let Some(end) = self.limit.map(|l| self.offset.saturating_add(l)) {
            if end < ranked.len() {
                ranked.select_nth_unstable_by(end, order);
                ranked.truncate(end);
            }
        }
        // Ties are broken by id, so the order is total and a stable sort
        // would give the same rows.
        ranked.sort_unstable_by(order);
        ranked.drain(..self.offset.min(ranked.len()));
        ranked
    }

    /// The rows of the window of `ranked`, read at `now`, with their rates
    /// if they have them.
    pub fn rows(&self, ranked: Vec<Ranked<'_>>, now: Instant) -> Vec<ConnRow> {
        self.apply(ranked)
            .iter()
            .map(|r| view::row_at(r.conn, now, r.rates))
            .collect()
    }
}

/// Rows for `list` (and `evict` dry runs): the window, without rates.
pub fn list(conns: &[Arc<Conn>], window: &Window) -> Vec<ConnRow> {
    let now = Instant::now();
    let ranked = conns.iter().map(|c| window.rank(c, None, now)).collect();
    window.rows(ranked, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(id: u64, route: &str, user: Option<&str>, ip: &str, msgs_in: u64) -> Arc<Conn> {
        let ip: IpAddr = ip.parse().expect("an address");
        let c = Conn::new(id, route.into(), user.map(Into::into), ip, 16, 1 << 20, 100);
        c.stats.msgs_in.store(msgs_in, Relaxed);
        Arc::new(c)
    }

    fn five() -> Vec<Arc<Conn>> {
        vec![
            conn(3, "/ws", Some("bob"), "10.0.0.9", 5),
            conn(1, "/ws/echo", None, "10.0.0.10", 7),
            conn(5, "/ws", Some("alice"), "192.0.2.1", 5),
            conn(2, "/auth", Some("carol"), "10.0.0.9", 0),
            conn(4, "/ws", None, "::1", 9),
        ]
    }

    fn ids(conns: &[Arc<Conn>], window: Window) -> Vec<u64> {
        list(conns, &window).iter().map(|r| r.id).collect()
    }

    fn sorted(sort: SortKey, order: Option<Order>) -> Window {
        Window {
            sort: Some(sort),
            order,
            ..Window::default()
        }
    }

    #[test]
    fn without_a_sort_rows_are_by_id() {
        let conns = five();
        assert_eq!(ids(&conns, Window::default()), vec![1, 2, 3, 4, 5]);
        let down = Window {
            order: Some(Order::Desc),
            ..Window::default()
        };
        assert_eq!(ids(&conns, down), vec![5, 4, 3, 2, 1]);
    }

    #[test]
    fn keys_sort_largest_first_with_ties_by_id() {
        let conns = five();
        assert_eq!(
            ids(&conns, sorted(SortKey::MsgsIn, None)),
            vec![4, 1, 3, 5, 2]
        );
        assert_eq!(
            ids(&conns, sorted(SortKey::MsgsIn, Some(Order::Asc))),
            vec![2, 3, 5, 1, 4]
        );
        assert_eq!(ids(&conns, sorted(SortKey::Id, None)), vec![5, 4, 3, 2, 1]);
        // Equal keys (every queue is empty): by id, whichever the order.
        assert_eq!(
            ids(&conns, sorted(SortKey::Queue, None)),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(
            ids(&conns, sorted(SortKey::Queue, Some(Order::Asc))),
            vec![1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn text_sorts_by_bytes_and_no_user_is_lowest() {
        let conns = five();
        assert_eq!(
            ids(&conns, sorted(SortKey::Route, Some(Order::Asc))),
            vec![2, 3, 4, 5, 1]
        );
        assert_eq!(
            ids(&conns, sorted(SortKey::User, Some(Order::Asc))),
            vec![1, 4, 5, 3, 2]
        );
        assert_eq!(
            ids(&conns, sorted(SortKey::User, None)),
            vec![2, 3, 5, 1, 4]
        );
        // 10.0.0.9 < 10.0.0.10 < 192.0.2.1 < ::1, as addresses.
        assert_eq!(
            ids(&conns, sorted(SortKey::Ip, Some(Order::Asc))),
            vec![2, 3, 1, 5, 4]
        );
    }

    #[test]
    fn no_round_trip_is_below_any_round_trip() {
        let conns = five();
        conns[0].stats.rtt_us.store(900, Relaxed);
        conns[2].stats.rtt_us.store(100, Relaxed);
        assert_eq!(ids(&conns, sorted(SortKey::Rtt, None)), vec![3, 5, 1, 2, 4]);
        assert_eq!(
            ids(&conns, sorted(SortKey::Rtt, Some(Order::Asc))),
            vec![1, 2, 4, 5, 3]
        );
    }

    #[test]
    fn offset_and_limit_cut_the_sorted_rows() {
        let conns = five();
        let page = |offset, limit| Window {
            sort: Some(SortKey::MsgsIn),
            offset,
            limit,
            ..Window::default()
        };
        assert_eq!(ids(&conns, page(0, Some(2))), vec![4, 1]);
        assert_eq!(ids(&conns, page(2, Some(2))), vec![3, 5]);
        assert_eq!(ids(&conns, page(4, Some(2))), vec![2]);
        assert_eq!(ids(&conns, page(3, None)), vec![5, 2]);
        assert_eq!(ids(&conns, page(9, Some(2))), Vec::<u64>::new());
        assert_eq!(ids(&conns, page(0, Some(0))), Vec::<u64>::new());
        assert_eq!(ids(&conns, page(usize::MAX, Some(5))), Vec::<u64>::new());
    }

    #[test]
    fn every_window_is_a_slice_of_the_full_sort() {
        // Many ties and few distinct values, so the selection's pivots
        // land on equal keys.
        let conns: Vec<Arc<Conn>> = (1..=200)
            .map(|id| conn(id, "/ws", None, "127.0.0.1", (id * 7919) % 13))
            .collect();
        for sort in [SortKey::MsgsIn, SortKey::Id, SortKey::Route] {
            for order in [Order::Asc, Order::Desc] {
                let full = ids(&conns, sorted(sort, Some(order)));
                for (offset, limit) in [(0, 1), (0, 40), (13, 7), (190, 40), (199, 1)] {
                    let window = Window {
                        offset,
                        limit: Some(limit),
                        ..sorted(sort, Some(order))
                    };
                    let end = (offset + limit).min(full.len());
                    assert_eq!(
                        ids(&conns, window),
                        full[offset.min(end)..end],
                        "{sort:?} {order:?} {offset}+{limit}"
                    );
                }
            }
        }
    }
}
