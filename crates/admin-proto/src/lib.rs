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
//! - requests: [`Request`], [`Command`], [`Filter`], [`SortKey`], and
//!   [`parse_network`] for the "address or CIDR" of a filter;
//! - answers: [`Response`], [`ErrorBody`] and the error [`code`]s;
//! - results, one type per command: [`Stats`], [`ConnRow`], [`ConnDetail`],
//!   [`EvictResult`], [`EvictPreview`], [`ReloadResult`], [`DrainResult`],
//!   [`PublishResult`], [`ConfigResult`], [`WatchAck`];
//! - the `watch` stream: [`Event`];
//! - [`Client`]: a typed async client over tokio's `UnixStream`, with
//!   [`Watch`] for the event stream and [`ClientError`].

mod client;
mod event;
mod request;
mod response;
mod results;

pub use client::{Client, ClientError, Eviction, Watch};
pub use event::Event;
pub use request::{parse_network, Command, Filter, NotANetwork, Request, SortKey};
pub use response::{code, ErrorBody, Response};
pub use results::{
    Changes, ConfigResult, ConnDetail, ConnRow, Connections, DrainResult, EvictPreview,
    EvictResult, LimitUse, Overage, PublishResult, ReloadInfo, ReloadResult, Stats, WatchAck,
};
