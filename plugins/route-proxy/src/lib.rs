//! The `proxy` router: wsgate in front of an app's existing WebSocket
//! endpoint.
//!
//! For each client, the upstream (`upstream = "ws://..."` or `wss://`) is
//! dialled before the 101 ([`dial`]): an upstream that cannot be reached is
//! 502 for the client, one that does not answer within `connect_timeout` is
//! 504, and its own 4xx answer to the upgrade is passed to the client. The
//! client's subprotocol offer goes upstream and the upstream's choice comes
//! back in the client's 101; no extension is negotiated on either leg.
//!
//! Once open, messages are relayed one by one, each way, by the upstream
//! leg's own task ([`leg`]); every wsgate limit applies to the client's
//! leg as on any route. Closes travel with their code and reason:
//!
//! - the client closes: the upstream gets the same code;
//! - the upstream closes: the client gets its code (none becomes 1000);
//! - wsgate closes the client (eviction 4000, a per-user replacement 4001,
//!   a slow consumer 4002, a drain 1001, ...): the upstream gets 1001;
//! - the upstream is lost, breaks the protocol or misses a pong: the client
//!   gets 1014 (bad gateway).
//!
//! Options: see [`options`] and docs/config.md.

mod dial;
mod leg;
mod metrics;
mod options;
mod router;

use std::sync::Arc;

use wsgate_plugin_api::prometheus_client::registry::Registry;
use wsgate_plugin_api::{erase, DynRouter, OptionsError, RouterPlugin, Table};

/// The factory, registered as `proxy`.
pub struct Plugin;

impl RouterPlugin for Plugin {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn DynRouter>, OptionsError> {
        let options = options::Options::from_table(options)?;
        Ok(erase(router::Proxy { options }))
    }

    fn register_metrics(&self, registry: &mut Registry) {
        metrics::METRICS.register(registry);
    }
}
