//! The daemon's side of a router's [`Outlet`](wsgate_plugin_api::Outlet):
//! the connection's shared handle, used from any task.

use std::sync::Arc;

use wsgate_plugin_api::{Close, ConnLimits, Outbound, Port, SendError, SubscribeError, Upstream};

use super::session::conn_limits;
use crate::daemon::Daemon;
use crate::handle::{Conn, Offer};
use crate::ws::close;

pub struct ConnPort {
    pub conn: Arc<Conn>,
    pub daemon: Arc<Daemon>,
}

impl Port for ConnPort {
    fn send(&self, message: Outbound) -> Result<(), SendError> {
        match self.conn.offer(message) {
            Offer::Queued => Ok(()),
            Offer::Full(why) => {
                self.daemon.metrics().slow_consumer(why);
                Err(SendError::QueueFull)
            }
            Offer::Closing => Err(SendError::Closing),
        }
    }

    fn subscribe(&self, topic: &str) -> Result<bool, SubscribeError> {
        self.daemon
            .hub()
            .subscribe(&self.conn, topic, self.conn.max_subscriptions())
    }

    fn limits(&self) -> Option<ConnLimits> {
        let settings = self.daemon.settings();
        let route = settings.route(&self.conn.route)?;
        Some(conn_limits(
            &route.limits,
            settings.config.server.close_timeout,
        ))
    }

    fn close(&self, c: Close) {
        if close::may_be_received(c.code) {
            self.conn.request_close(c.code, c.reason);
        } else {
            tracing::warn!(
                conn = self.conn.id,
                code = c.code,
                "router asked for an invalid close code"
            );
            self.conn.request_close(close::INTERNAL, "internal error");
        }
    }

    fn pause_reading(&self) {
        self.conn.pause_reads();
    }

    fn resume_reading(&self) {
        self.conn.resume_reads();
    }

    fn is_closing(&self) -> bool {
        self.conn.closing()
    }

    fn set_upstream(&self, upstream: Option<Upstream>) {
        self.conn.set_upstream(upstream);
    }
}
