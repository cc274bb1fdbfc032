//! The plugin API of wsgate.
//!
//! Two small traits carry all plugin behaviour:
//!
//! - [`Authenticator`]: turns a WebSocket upgrade request into an [`Identity`]
//!   or a [`Rejection`] (401 / 403), before any WebSocket state exists.
//! - [`Router`]: reacts to a connection opening, each inbound message and the
//!   close, through a [`Session`] that the daemon provides: send to this
//!   connection, subscribe and unsubscribe it to topics, publish to topics.
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
//!   [`Outbound`], [`Close`], [`SendError`], [`SubscribeError`];
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

mod auth;
mod erase;
mod options;
mod query;
#[cfg(test)]
mod query_props;
mod router;
pub mod secret;
mod topic;

pub use auth::{AuthPlugin, Authenticator, Identity, Rejection, UpgradeRequest};
pub use erase::{erase, DynRouter, Handler};
pub use options::OptionsError;
pub use query::query_param;
pub use router::{
    Close, Message, Outbound, Router, RouterPlugin, SendError, Session, SubscribeError,
};
pub use secret::{Secret, SecretSource};
pub use topic::{check_topic, MAX_TOPIC_LEN};

/// A boxed future, as returned by the async hooks of a `dyn` plugin.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
