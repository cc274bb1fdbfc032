//! The plugin API of wsgate.
//!
//! Two small traits carry all plugin behaviour:
//!
//! - [`Authenticator`]: turns a WebSocket upgrade request into an [`Identity`]
//!   or a [`Rejection`] (401 / 403), before any WebSocket state exists.
//! - [`Router`]: reacts to a connection opening, each inbound message and the
//!   close, through a [`Session`] that the daemon provides: send to this
//!   connection, subscribe and unsubscribe it to topics, publish to topics.
//!   A router may also answer the upgrade before the 101
//!   ([`Router::accept`]) and act on its connection from a task of its own
//!   through an [`Outlet`] (the `proxy` router relays an upstream that way).
//!
//! Plugins are compiled in. Each built-in lives in its own crate under
//! `plugins/` and exposes a factory ([`AuthPlugin`] or [`RouterPlugin`]); the
//! daemon maps names to factories in one place (`src/plugins.rs`). A factory
//! validates its own options (the TOML table of `[auth.<name>]` or
//! `[routes.options]`) when the config is loaded, so a bad option is refused
//! with the config error, never at connect time.
//!
//! The parts, each re-exported here:
//!
//! - `options`: [`OptionsError`], for a plugin's option table;
//! - `auth`: [`Authenticator`], [`AuthPlugin`], [`UpgradeRequest`],
//!   [`Identity`], [`Rejection`];
//! - `router`: [`Router`], [`RouterPlugin`], [`Session`], [`Message`],
//!   [`Outbound`], [`Close`], [`Closing`], [`ConnLimits`], [`SendError`],
//!   [`SubscribeError`];
//! - `accept`: what a router's hook before the 101 answers ([`Accept`],
//!   [`Refusal`]) and the inbound message with its bytes ([`Inbound`]);
//! - `outlet`: [`Outlet`], the owned handle through which a router acts on
//!   its connection from a task of its own (the daemon's side: [`Port`]);
//! - `erase`: [`erase`] and the sealed [`DynRouter`] / [`Handler`] it makes,
//!   through which the daemon holds any router;
//! - `topic`: [`check_topic`], [`MAX_TOPIC_LEN`];
//! - `query`: [`query_param`] (and [`UpgradeRequest::bearer_token`]);
//! - [`secret`]: [`SecretSource`] and [`Secret`], for secrets from an
//!   environment variable, a file or the config.
//!
//! This crate depends on nothing of the daemon; the daemon and every plugin
//! depend on it.

use std::future::Future;
use std::pin::Pin;

pub use bytes::Bytes;
pub use http::HeaderMap;
pub use serde_json::value::RawValue;
pub use toml::Table;

mod accept;
mod auth;
mod erase;
mod options;
mod outlet;
mod query;
#[cfg(test)]
mod query_props;
mod router;
pub mod secret;
mod topic;

pub use accept::{Accept, Inbound, Refusal};
pub use auth::{AuthPlugin, Authenticator, Identity, Rejection, UpgradeRequest};
pub use erase::{erase, DynRouter, Handler};
pub use options::OptionsError;
pub use outlet::{Outlet, Port, Upstream};
/// The metrics library the daemon exposes: a plugin registers its own
/// metrics with [`RouterPlugin::register_metrics`].
pub use prometheus_client;
pub use query::query_param;
pub use router::{
    Close, Closing, ConnLimits, Message, Outbound, Router, RouterPlugin, SendError, Session,
    SubscribeError,
};
pub use secret::{Secret, SecretSource};
pub use topic::{check_topic, MAX_TOPIC_LEN};

/// A boxed future, as returned by the async hooks of a `dyn` plugin.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
