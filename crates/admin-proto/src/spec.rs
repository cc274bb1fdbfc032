//! What the typed client asks `list` and `watch` for: which connections
//! (a [`Filter`]), in which order, and which window of the sorted rows.
//! `Default` asks for what the protocol gives when an argument is left
//! out: every connection, by id.

use std::time::Duration;

use crate::request::{Command, Filter, Order, SortKey};

/// The arguments of `list`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListSpec {
    pub filter: Filter,
    /// `None`: by id, ascending.
    pub sort: Option<SortKey>,
    /// `None`: [`Order::Desc`] with a sort key.
    pub order: Option<Order>,
    /// Rows skipped after sorting, before `limit`.
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

impl ListSpec {
    /// The `list` command.
    pub fn command(self) -> Command {
        Command::List {
            filter: self.filter,
            sort: self.sort,
            order: self.order,
            offset: self.offset,
            limit: self.limit,
        }
    }
}

/// The arguments of `watch`: how often a snapshot comes, and the window of
/// connections it shows. Sent again with [`crate::Watch::update`], it
/// replaces the whole view, `interval` included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchSpec {
    /// `None`: the daemon's default (one second). Whole milliseconds.
    pub interval: Option<Duration>,
    pub filter: Filter,
    /// `None`: by id, ascending.
    pub sort: Option<SortKey>,
    /// `None`: [`Order::Desc`] with a sort key.
    pub order: Option<Order>,
    /// Rows skipped after sorting, before `limit`.
    pub offset: Option<usize>,
    /// `None`: every selected connection.
    pub limit: Option<usize>,
}

impl WatchSpec {
    pub(crate) fn command(self) -> Command {
        Command::Watch {
            interval_ms: self
                .interval
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            filter: self.filter,
            sort: self.sort,
            order: self.order,
            offset: self.offset,
            limit: self.limit,
        }
    }
}
