//! The rows the table shows: the columns, the sort, and the page.
//!
//! The daemon's `watch` takes the window ([`Spec::watch_spec`]): its
//! snapshot *is* the page, placed by [`daemon_page`]. Free words of the
//! filter are no protocol filter: then the daemon sends every connection
//! its selectors match and [`window`] filters, sorts and cuts the page
//! here, as it does for a daemon whose `watch` takes no window.

use std::cmp::Ordering;

use wsgate_admin_proto::{ConnRow, Order, SortKey, WatchSpec};

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

    /// The protocol's sort key for this column.
    pub fn sort_key(self) -> SortKey {
        match self {
            Column::Id => SortKey::Id,
            Column::Route => SortKey::Route,
            Column::User => SortKey::User,
            Column::Ip => SortKey::Ip,
            Column::Age => SortKey::Age,
            Column::Idle => SortKey::Idle,
            Column::InRate => SortKey::InRate,
            Column::OutRate => SortKey::OutRate,
            Column::Queue => SortKey::Queue,
            Column::Subscriptions => SortKey::Subscriptions,
            Column::Rtt => SortKey::Rtt,
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

impl Spec {
    /// Whether the daemon can select the page itself (no free words).
    pub fn daemon_pages(&self) -> bool {
        self.query.words.is_empty()
    }

    /// What to ask the daemon's `watch` for: the page, or (with free words)
    /// every connection the selectors match, sorted. The interval is the
    /// watch task's.
    pub fn watch_spec(&self) -> WatchSpec {
        let mut spec = WatchSpec {
            filter: self.query.filter.clone(),
            sort: Some(self.sort.sort_key()),
            order: Some(if self.descending {
                Order::Desc
            } else {
                Order::Asc
            }),
            ..WatchSpec::default()
        };
        if self.daemon_pages() {
            spec.offset = Some(self.offset);
            spec.limit = Some(self.limit);
        }
        spec
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

/// Places the selection on a page the daemon selected (`rows`, the rows
/// from `page_offset` of `matched`): on `keep` if the page has it, else at
/// `cursor`, clamped to the matches. Returns the page, the selection's
/// position and the offset to ask for next, so that the selection is on
/// the page (the daemon answers a changed window with a snapshot at once).
pub fn daemon_page(
    rows: &[ConnRow],
    rates: &ConnRates,
    (matched, page_offset): (usize, usize),
    spec: &Spec,
    cursor: usize,
    keep: Option<u64>,
) -> (Window, usize, usize) {
    let found = keep
        .and_then(|id| rows.iter().position(|r| r.id == id))
        .map(|i| page_offset + i);
    let cursor = found.unwrap_or(cursor).min(matched.saturating_sub(1));
    let offset = place(spec.offset, cursor, spec.limit, matched);
    let rows = rows
        .iter()
        .map(|c| Row {
            conn: c.clone(),
            rate: rates.get(c.id),
        })
        .collect();
    let page = Window {
        rows,
        matched,
        offset: page_offset,
    };
    (page, cursor, offset)
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

    #[test]
    fn the_daemon_gets_the_window_or_the_selectors() {
        let spec = Spec {
            query: Query::parse("user:alice").expect("valid"),
            sort: Column::InRate,
            descending: true,
            offset: 30,
            limit: 30,
        };
        let w = spec.watch_spec();
        assert_eq!(w.filter.user.as_deref(), Some("alice"));
        assert_eq!(
            (w.sort, w.order, w.offset, w.limit),
            (Some(SortKey::InRate), Some(Order::Desc), Some(30), Some(30))
        );
        let spec = Spec {
            query: Query::parse("user:alice echo").expect("valid"),
            ..spec
        };
        let w = spec.watch_spec();
        assert_eq!((w.offset, w.limit), (None, None));
        assert_eq!(w.filter.user.as_deref(), Some("alice"));
    }

    #[test]
    fn a_daemon_page_keeps_the_selection_or_asks_for_the_page_with_it() {
        let (_, rows) = testdata::snapshot();
        let rates = ConnRates::default();
        let spec = Spec {
            limit: 2,
            offset: 2,
            ..Spec::default()
        };
        // Rows 3 and 4 of 10 matches; connection 4 is kept.
        let page = &rows[2..];
        let (w, cursor, ask) = daemon_page(page, &rates, (10, 2), &spec, 0, Some(4));
        assert_eq!((ids(&w), w.matched, cursor, ask), (vec![3, 4], 10, 3, 2));
        // End: the last page is asked for.
        let (_, cursor, ask) = daemon_page(page, &rates, (10, 2), &spec, usize::MAX, None);
        assert_eq!((cursor, ask), (9, 8));
    }
}
