//! The rows the table shows: the columns, the sort, and [`window`], which
//! filters, sorts and cuts the page out of a snapshot.
//!
//! [`window`] is the one place that does this in the console. When the
//! daemon's `watch` takes `filter`, `sort`, `order`, `offset` and `limit`,
//! the same [`Spec`] is sent to it instead and the snapshot *is* the window.

use std::cmp::Ordering;

use wsgate_admin_proto::ConnRow;

use super::filter::{Members, Query};
use super::rates::{ConnRates, Rate};

/// The table's columns, in order; each is also a sort key (the protocol's
/// names: `id`, `route`, ..., `rtt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    Route,
    User,
    Ip,
    Age,
    Idle,
    InRate,
    OutRate,
    Queue,
    Subscriptions,
    Rtt,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Id,
        Column::Route,
        Column::User,
        Column::Ip,
        Column::Age,
        Column::Idle,
        Column::InRate,
        Column::OutRate,
        Column::Queue,
        Column::Subscriptions,
        Column::Rtt,
    ];

    /// The header text.
    pub fn title(self) -> &'static str {
        match self {
            Column::Id => "ID",
            Column::Route => "ROUTE",
            Column::User => "USER",
            Column::Ip => "IP",
            Column::Age => "AGE",
            Column::Idle => "IDLE",
            Column::InRate => "IN/s",
            Column::OutRate => "OUT/s",
            Column::Queue => "QUEUE",
            Column::Subscriptions => "SUBS",
            Column::Rtt => "RTT",
        }
    }

    /// The next column (`s`).
    pub fn next(self) -> Column {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        Column::ALL[(i + 1) % Column::ALL.len()]
    }

    fn compare(self, a: &(&ConnRow, Option<Rate>), b: &(&ConnRow, Option<Rate>)) -> Ordering {
        let rate = |r: &(&ConnRow, Option<Rate>), f: fn(Rate) -> f64| r.1.map_or(-1.0, f);
        let c = (a.0, b.0);
        match self {
            Column::Id => c.0.id.cmp(&c.1.id),
            Column::Route => c.0.route.cmp(&c.1.route),
            Column::User => c.0.user.cmp(&c.1.user),
            Column::Ip => ip_key(&c.0.ip).cmp(&ip_key(&c.1.ip)),
            Column::Age => c.0.age_s.total_cmp(&c.1.age_s),
            Column::Idle => c.0.idle_s.total_cmp(&c.1.idle_s),
            Column::InRate => rate(a, |r| r.msgs_in).total_cmp(&rate(b, |r| r.msgs_in)),
            Column::OutRate => rate(a, |r| r.msgs_out).total_cmp(&rate(b, |r| r.msgs_out)),
            Column::Queue => c.0.queue.cmp(&c.1.queue),
            Column::Subscriptions => c.0.subscriptions.cmp(&c.1.subscriptions),
            Column::Rtt => {
                c.0.rtt_ms
                    .unwrap_or(-1.0)
                    .total_cmp(&c.1.rtt_ms.unwrap_or(-1.0))
            }
        }
    }
}

/// Addresses sort as addresses (10.0.0.9 before 10.0.0.10).
fn ip_key(ip: &str) -> Result<std::net::IpAddr, &str> {
    ip.parse().map_err(|_| ip)
}

/// What the table asks for: the watch window.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub query: Query,
    pub sort: Column,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            query: Query::default(),
            sort: Column::Id,
            descending: false,
            offset: 0,
            limit: 20,
        }
    }
}

/// One table row: the connection and its rate (`None` until two snapshots
/// have seen it).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub conn: ConnRow,
    pub rate: Option<Rate>,
}

/// The rows of one page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub rows: Vec<Row>,
    /// How many connections match the filter.
    pub matched: usize,
    /// The position of `rows[0]` among them.
    pub offset: usize,
}

/// Filters and sorts (ties by id) a snapshot, places the selection and
/// cuts the page around it: the selection is the connection `keep` if it
/// still matches, else the row at `cursor` (its neighbour, when `keep` has
/// closed), clamped to the matches; the page starts at `spec.offset`, moved
/// just enough to show the selection. Returns the page and the selection's
/// position. Only the page's rows are copied.
pub fn window(
    all: &[ConnRow],
    rates: &ConnRates,
    members: &Members,
    spec: &Spec,
    cursor: usize,
    keep: Option<u64>,
) -> (Window, usize) {
    let mut rows: Vec<(&ConnRow, Option<Rate>)> = all
        .iter()
        .filter(|c| spec.query.matches(c, members))
        .map(|c| (c, rates.get(c.id)))
        .collect();
    rows.sort_by(|a, b| {
        let o = spec.sort.compare(a, b).then(a.0.id.cmp(&b.0.id));
        if spec.descending {
            o.reverse()
        } else {
            o
        }
    });
    let matched = rows.len();
    let found = keep.and_then(|id| rows.iter().position(|r| r.0.id == id));
    let cursor = found.unwrap_or(cursor).min(matched.saturating_sub(1));
    let offset = place(spec.offset, cursor, spec.limit, matched);
    let rows = rows
        .iter()
        .skip(offset)
        .take(spec.limit)
        .map(|(c, rate)| Row {
            conn: (*c).clone(),
            rate: *rate,
        })
        .collect();
    let page = Window {
        rows,
        matched,
        offset,
    };
    (page, cursor)
}

/// Where the page starts: where it was, moved just enough to show the
/// cursor, and never leaving the last page short.
fn place(offset: usize, cursor: usize, limit: usize, matched: usize) -> usize {
    let limit = limit.max(1);
    let offset = offset.min(cursor).min(matched.saturating_sub(limit));
    if cursor >= offset + limit {
        cursor + 1 - limit
    } else {
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::testdata;

    fn ids(w: &Window) -> Vec<u64> {
        w.rows.iter().map(|r| r.conn.id).collect()
    }

    #[test]
    fn sorts_by_any_column_either_way() {
        let (_, rows) = testdata::snapshot();
        let (rates, members) = (ConnRates::default(), Members::new());
        let mut spec = Spec::default();
        let page = |spec: &Spec| ids(&window(&rows, &rates, &members, spec, 0, None).0);
        assert_eq!(page(&spec), [1, 2, 3, 4]);
        spec.sort = Column::User;
        assert_eq!(page(&spec), [4, 1, 2, 3]);
        spec.descending = true;
        assert_eq!(page(&spec), [3, 2, 1, 4]);
        spec.sort = Column::Ip;
        spec.descending = false;
        assert_eq!(page(&spec), [1, 2, 3, 4]);
        let mut c = Column::Id;
        for _ in 0..Column::ALL.len() {
            c = c.next();
        }
        assert_eq!(c, Column::Id);
    }

    #[test]
    fn filters_and_cuts_the_page() {
        let (_, rows) = testdata::snapshot();
        let (rates, members) = (ConnRates::default(), Members::new());
        let spec = Spec {
            query: Query::parse("user:alice").expect("valid"),
            limit: 1,
            offset: 1,
            ..Spec::default()
        };
        let (w, cursor) = window(&rows, &rates, &members, &spec, 1, None);
        assert_eq!((ids(&w), w.matched, w.offset, cursor), (vec![2], 2, 1, 1));
        // The page moves to show the kept connection.
        let spec = Spec {
            limit: 2,
            ..Spec::default()
        };
        let (w, cursor) = window(&rows, &rates, &members, &spec, 0, Some(4));
        assert_eq!((ids(&w), w.offset, cursor), (vec![3, 4], 2, 3));
        // A page past the end moves back to show a full last page.
        let far = Spec {
            offset: 3,
            ..spec.clone()
        };
        let (w, _) = window(&rows, &rates, &members, &far, 3, None);
        assert_eq!((ids(&w), w.offset), (vec![3, 4], 2));
        // A cursor past the end is the last row.
        let (w, cursor) = window(&rows, &rates, &members, &spec, 99, Some(42));
        assert_eq!((ids(&w), cursor), (vec![3, 4], 3));
    }
}
