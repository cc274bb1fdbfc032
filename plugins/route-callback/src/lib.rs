//! The `callback` router: each client event becomes a plain HTTP POST to a
//! backend, and the backend's answer acts on the connection, so that an
//! app can serve WebSocket clients without speaking WebSocket itself.
//!
//! - `open` is posted before the 101, from the router's accept hook: a 2xx
//!   accepts the connection (its answer is applied once it is open), a 4xx
//!   refuses it with that status, a timeout is 504, a 5xx, an unreachable
//!   backend or a malformed answer is 502.
//! - each `message` is posted in order, one request at a time per
//!   connection, by the connection's own worker task; at `max_in_flight`
//!   events queued or running, the client's reads pause until the queue
//!   has room again. A failure is told to the client
//!   (`{"type":"error","code":"backend_timeout",...}`) and the next event
//!   goes on.
//! - `close` is posted after the connection ended, best effort.
//!
//! Every connection is subscribed to `conn.<id>` (and `user.<user>`), so
//! the backend can reach it later through `POST /api/publish`.
//!
//! The wire formats are in [`wire`], the options in [`options`]; both are
//! described for users in docs/config.md.

mod call;
mod metrics;
mod options;
mod router;
mod wire;

use std::sync::Arc;

use wsgate_plugin_api::prometheus_client::registry::Registry;
use wsgate_plugin_api::{erase, DynRouter, OptionsError, RouterPlugin, Table};

/// The factory, registered as `callback`.
pub struct Plugin;

impl RouterPlugin for Plugin {
    fn name(&self) -> &'static str {
        "callback"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn DynRouter>, OptionsError> {
        let options = options::Options::from_table(options)?;
        Ok(erase(router::Callback {
            backend: Arc::new(call::Backend::new(options)),
        }))
    }

    fn register_metrics(&self, registry: &mut Registry) {
        metrics::METRICS.register(registry);
    }
}
