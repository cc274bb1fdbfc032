//! Executes admin commands against the daemon. It holds only handles: the
//! daemon state and the control loop's sender.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::protocol::{
    code, Command, DrainResult, Event, EvictPreview, EvictResult, Filter, PublishResult, Response,
};
use super::table::{self, Window};
use super::view;
use crate::config::ConfigError;
use crate::control::{self, Control};
use crate::daemon::Daemon;
use crate::hub::Source;
use crate::reload::Report;
use crate::ws::close;

pub struct Service {
    pub daemon: Arc<Daemon>,
    pub control: control::Sender,
}

/// A successful answer. The result goes on the wire as a JSON value, so its
/// keys are sorted whatever type it was built from.
pub(super) fn answer<T: serde::Serialize>(id: Option<Value>, result: &T) -> Response {
    Response::ok(id, serde_json::to_value(result).unwrap_or(Value::Null))
}

impl Service {
    /// Runs one command (all but `watch`, which the socket streams).
    pub async fn execute(&self, id: Option<Value>, command: Command) -> Response {
        let d = &self.daemon;
        match command {
            Command::Stats {} => answer(id, &view::stats(d)),
            Command::List {
                filter,
                sort,
                order,
                offset,
                limit,
            } => match view::select(d, &filter) {
                Ok(conns) => {
                    let window = Window {
                        sort,
                        order,
                        offset: offset.unwrap_or(0),
                        limit,
                    };
                    answer(id, &table::list(&conns, &window))
                }
                Err(e) => Response::err(id, code::BAD_ARGUMENTS, e),
            },
            Command::Show { conn } => match d.registry().get(conn) {
                Some(c) => answer(id, &view::detail(&c)),
                None => Response::err(id, code::NOT_FOUND, format!("no connection {conn}")),
            },
            Command::Evict {
                conn,
                filter,
                reason,
                dry_run,
                all,
            } => self.evict(id, conn, filter, reason, dry_run, all),
            Command::Reload { dry_run } => self.reload(id, dry_run).await,
            Command::Drain { timeout } => {
                let timeout = match timeout.as_deref().map(humantime::parse_duration) {
                    None => None,
                    Some(Ok(t)) => Some(t),
                    Some(Err(e)) => {
                        return Response::err(id, code::BAD_ARGUMENTS, format!("timeout: {e}"))
                    }
                };
                let sent = self
                    .control
                    .send(Control::Drain {
                        origin: "admin",
                        timeout,
                    })
                    .await;
                match sent {
                    Ok(()) => answer(id, &DrainResult { draining: true }),
                    Err(_) => Response::err(id, code::UNAVAILABLE, "the daemon is stopping"),
                }
            }
            Command::Publish { topic, data } => {
                if let Err(e) = wsgate_plugin_api::check_topic(&topic) {
                    return Response::err(id, code::BAD_ARGUMENTS, e);
                }
                let Ok(data) = serde_json::value::to_raw_value(&data) else {
                    return Response::err(id, code::BAD_ARGUMENTS, "data is not JSON");
                };
                let delivered = d.hub().publish(&topic, &data, Source::Admin).delivered;
                answer(id, &PublishResult { delivered })
            }
            Command::Config {} => {
                let settings = d.settings();
                answer(id, &settings.redacted_value())
            }
            Command::Watch { .. } => Response::err(
                id,
                code::BAD_REQUEST,
                "watch is a stream; the socket handles it",
            ),
        }
    }

    fn evict(
        &self,
        id: Option<Value>,
        conn: Option<u64>,
        filter: Filter,
        reason: Option<String>,
        dry_run: bool,
        all: bool,
    ) -> Response {
        let d = &self.daemon;
        let targets = match conn {
            Some(c) => {
                if !filter.is_empty() {
                    return Response::err(
                        id,
                        code::BAD_ARGUMENTS,
                        "give either `conn` or a filter, not both",
                    );
                }
                match d.registry().get(c) {
                    Some(c) => vec![c],
                    None => {
                        return Response::err(id, code::NOT_FOUND, format!("no connection {c}"))
                    }
                }
            }
            None if filter.is_empty() && !all => {
                return Response::err(
                    id,
                    code::REFUSED,
                    "an empty filter would evict everyone; add `\"all\": true` to mean it",
                )
            }
            None => match view::select(d, &filter) {
                Ok(t) => t,
                Err(e) => return Response::err(id, code::BAD_ARGUMENTS, e),
            },
        };
        let reason = reason.unwrap_or_else(|| "evicted by an operator".into());
        if dry_run {
            let rows = table::list(&targets, &Window::default());
            return answer(id, &EvictPreview::new(rows));
        }
        let ids: Vec<u64> = targets
            .iter()
            .filter(|c| c.request_close(close::EVICTED, reason.clone()))
            .map(|c| c.id)
            .collect();
        tracing::info!(count = ids.len(), reason = %reason, "evicted by an operator");
        d.emit(|| Event::Evicted {
            ids: ids.clone(),
            reason: reason.clone(),
        });
        answer(id, &EvictResult::new(ids))
    }

    async fn reload(&self, id: Option<Value>, dry_run: bool) -> Response {
        let (tx, rx) = oneshot::channel::<Result<Report, ConfigError>>();
        let sent = self
            .control
            .send(Control::Reload {
                origin: "admin",
                dry_run,
                reply: Some(tx),
            })
            .await;
        if sent.is_err() {
            return Response::err(id, code::UNAVAILABLE, "the daemon is stopping");
        }
        match rx.await {
            Ok(Ok(report)) => answer(id, &view::reload_result(report)),
            Ok(Err(e)) => Response::err(id, code::CONFIG_ERROR, e.to_string()),
            Err(_) => Response::err(id, code::UNAVAILABLE, "the daemon is stopping"),
        }
    }
}

/// How long a `watch` waits between snapshots when none is asked for.
pub fn default_interval() -> Duration {
    Duration::from_millis(1000)
}
