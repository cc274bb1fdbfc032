//! The wsgate admin protocol: newline-delimited JSON over a unix socket.
//!
//! These types are the protocol, defined once and used by the daemon,
//! `wsgate ctl` and the console alike; docs/admin-protocol.md describes the
//! same JSON for people. The crate knows nothing of the daemon.
//!
//! A request is one line, `{"id": 1, "cmd": "<name>", ...arguments}`; the
//! answer is one line, `{"id": 1, "ok": true, "result": ...}` or
//! `{"id": 1, "ok": false, "error": {"code": "...", "message": "..."}}`.
//! `watch` answers once, then streams event lines until the client leaves.
//!
//! The parts:
//!
//! - requests: [`Request`], [`Command`], [`Filter`], [`SortKey`], [`Order`],
//!   and [`parse_network`] for the "address or CIDR" of a filter;
//! - answers: [`Response`], [`ErrorBody`] and the error [`code`]s;
//! - results, one type per command: [`Stats`], [`ConnRow`], [`ConnDetail`],
//!   [`EvictResult`], [`EvictPreview`], [`ReloadResult`], [`DrainResult`],
//!   [`PublishResult`], [`ConfigResult`], [`WatchAck`];
//! - the `watch` stream: [`Event`];
//! - [`Client`]: a typed async client over tokio's `UnixStream`, with
//!   [`ListSpec`] and [`WatchSpec`] for what to list and watch, [`Watch`]
//!   for the event stream (and its updates) and [`ClientError`].
//!
//! ```no_run
//! use std::time::Duration;
//! use wsgate_admin_proto::{Client, ClientError, Event, Eviction, Filter, SortKey};
//!
//! async fn tidy() -> Result<(), ClientError> {
//!     let mut admin = Client::connect("/run/wsgate/admin.sock").await?;
//!     println!("{} connections", admin.stats().await?.connections.total);
//!     let idle = Filter { min_idle_s: Some(300.0), ..Filter::default() };
//!     for row in admin.list(idle.clone(), Some(SortKey::Idle), Some(20)).await? {
//!         println!("{} {} idle {:.0}s", row.id, row.route, row.idle_s);
//!     }
//!     let gone = admin.evict(Eviction::matching(idle).with_reason("idle")).await?;
//!     println!("evicted {:?}", gone.ids);
//!     let mut watch = admin.watch(Some(Duration::from_secs(5))).await?;
//!     loop {
//!         if let Event::Closed { id, code, .. } = watch.next().await? {
//!             println!("closed {id} with {code}");
//!         }
//!     }
//! }
//! ```
//!
//! A console's table: the 30 busiest connections, then the next 30, on one
//! stream that loses no event while its window changes.
//!
//! ```no_run
//! use wsgate_admin_proto::{Client, ClientError, Event, SortKey, WatchSpec};
//!
//! async fn busiest() -> Result<(), ClientError> {
//!     let page = WatchSpec { sort: Some(SortKey::InRate), limit: Some(30), ..WatchSpec::default() };
//!     let admin = Client::connect("/run/wsgate/admin.sock").await?;
//!     let mut watch = admin.watch_with(page.clone()).await?;
//!     loop {
//!         match watch.next().await? {
//!             Event::Snapshot { matched, offset, connections, .. } => {
//!                 for row in &connections {
//!                     println!("{} {:.1} msg/s in", row.id, row.in_rate.unwrap_or(0.0));
//!                 }
//!                 if offset == 0 && matched > 30 {
//!                     watch.update(WatchSpec { offset: Some(30), ..page.clone() }).await?;
//!                 }
//!             }
//!             Event::Connected { id, .. } => println!("{id} connected"),
//!             _ => {}
//!         }
//!     }
//! }
//! ```

mod client;
mod event;
mod request;
mod response;
mod results;
mod spec;

pub use client::{Client, ClientError, Eviction, Watch};
pub use event::Event;
pub use request::{parse_network, Command, Filter, NotANetwork, Order, Request, Scope, SortKey};
pub use response::{code, ErrorBody, Response};
pub use results::{
    CertificateInfo, Changes, ClusterInfo, ClusterResult, ConfigResult, ConnDetail, ConnRow,
    Connections, DrainResult, EvictPreview, EvictResult, LimitUse, ListenerInfo, NodeAnswer,
    Overage, PublishResult, ReloadInfo, ReloadResult, Stats, UpstreamLeg, WatchAck,
};
pub use spec::{ListSpec, WatchSpec};
