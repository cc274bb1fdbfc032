//! The router's hooks and each connection's worker: the hooks queue events,
//! the worker posts them one at a time and applies the answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use wsgate_plugin_api::{
    check_topic, Accept, BoxFuture, Close, Closing, Identity, Inbound, Message, Outlet, Refusal,
    Router, SendError, Session, SubscribeError, UpgradeRequest,
};

use crate::call::{Backend, Failure};
use crate::metrics::Event;
use crate::wire::{self, Answer, Code, Who};

/// The close code and reason the `close` event carries when the connection
/// ended without a close handshake.
const LOST: (u16, &str) = (1006, "connection lost");

/// The topic every connection is subscribed to: `conn.<id>`.
pub fn conn_topic(id: &str) -> String {
    format!("conn.{id}")
}

/// The topic a connection with a user is subscribed to: `user.<user>`.
pub fn user_topic(user: &str) -> String {
    format!("user.{user}")
}

/// One route's router; shared by its connections.
pub struct Callback {
    pub backend: Arc<Backend>,
}

/// What the accept hook hands to `on_open`.
struct Prepared {
    route: Arc<str>,
    /// The answer to the `open` event, when it was posted.
    answer: Option<Answer>,
    /// Set once `open` was accepted: posts the `close` if the upgrade then
    /// never completes, so that the backend sees every `open` end.
    unopened: Option<Unopened>,
}

/// A `close` event owed for an accepted `open`, posted when dropped armed
/// (its body is made only then).
struct Unopened {
    backend: Arc<Backend>,
    conn: Option<String>,
    user: Option<Arc<str>>,
    route: Arc<str>,
    armed: bool,
}

impl Drop for Unopened {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let who = Who {
            conn: self.conn.as_deref(),
            user: self.user.as_deref(),
            route: &self.route,
        };
        let body = wire::close(&who, LOST.0, "upgrade not completed");
        let backend = Arc::clone(&self.backend);
        runtime.spawn(async move {
            if let Err(failure) = backend.post(Event::Close, body, false).await {
                tracing::debug!(error = %failure, "callback close event failed");
            }
        });
    }
}

/// One connection's state, in the hooks.
pub struct State {
    link: Arc<Link>,
    /// How the connection is closing, for the `close` event.
    closing: Option<(u16, String)>,
}

/// What the hooks and the connection's worker share.
struct Link {
    queue: Mutex<Queue>,
    /// Wakes the worker: an event was queued, or the connection ended.
    wake: Notify,
    conn: Arc<str>,
    user: Option<Arc<str>>,
    route: Arc<str>,
    outlet: Outlet,
}

impl Link {
    fn who(&self) -> Who<'_> {
        Who {
            conn: Some(&self.conn),
            user: self.user.as_deref(),
            route: &self.route,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every change is a few plain field updates: the data stays
        // consistent even if a holder panicked.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The connection's events, queued or running.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The worker is posting one.
    running: bool,
    /// `max_in_flight` as last read by a hook (a reload may change it).
    max_in_flight: usize,
    /// The router paused the client's reads.
    paused: bool,
    /// The connection is over: no more events come.
    ended: bool,
}

impl Queue {
    fn in_flight(&self) -> usize {
        self.jobs.len() + usize::from(self.running)
    }
}

/// One event to post, with the backend in force when it was queued.
struct Job {
    backend: Arc<Backend>,
    event: Event,
    body: Bytes,
}

impl Router for Callback {
    type State = State;

    fn accept<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
        identity: &'a Identity,
    ) -> Option<BoxFuture<'a, Result<Accept, Refusal>>> {
        let route: Arc<str> = Arc::from(request.path);
        if !self.backend.options.events.posts(Event::Open) {
            let prepared = Prepared {
                route,
                answer: None,
                unopened: None,
            };
            return Some(Box::pin(std::future::ready(Ok(
                Accept::new().prepared(prepared)
            ))));
        }
        Some(Box::pin(async move {
            let who = Who {
                conn: request.conn_id,
                user: identity.user.as_deref(),
                route: &route,
            };
            let body = wire::open(&who);
            // Armed from the moment `open` is posted: if the client never
            // gets its 101 (the hook timed out, the upgrade failed), the
            // backend is told the connection ended.
            let mut unopened = self
                .backend
                .options
                .events
                .posts(Event::Close)
                .then(|| Unopened {
                    backend: Arc::clone(&self.backend),
                    conn: request.conn_id.map(str::to_string),
                    user: identity.user.clone(),
                    route: Arc::clone(&route),
                    armed: true,
                });
            match self.backend.post(Event::Open, body, true).await {
                Ok(answer) => Ok(Accept::new().prepared(Prepared {
                    route,
                    answer: Some(answer),
                    unopened,
                })),
                Err(failure) => {
                    // A refusal, or an `open` the backend never got or
                    // could not answer: no connection to end. Only a
                    // timeout leaves it unknown, and is told.
                    if let Some(u) = unopened.as_mut() {
                        u.armed = matches!(failure, Failure::Timeout(_));
                    }
                    Err(refusal(&route, failure))
                }
            }
        }))
    }

    fn on_open(&self, session: &mut dyn Session) -> Result<State, Close> {
        let Some(prepared) = session
            .take_prepared()
            .and_then(|p| p.downcast::<Prepared>().ok())
        else {
            return Err(Close::new(1011, "internal error"));
        };
        let Prepared {
            route,
            answer,
            unopened,
        } = *prepared;
        if let Some(mut unopened) = unopened {
            // The connection opened: its `close` comes from `on_close`.
            unopened.armed = false;
        }
        let conn: Arc<str> = Arc::from(session.id());
        let user = session.identity().user.clone();
        let mut own = vec![conn_topic(&conn)];
        if let Some(user) = &user {
            let topic = user_topic(user);
            match check_topic(&topic) {
                Ok(()) => own.push(topic),
                Err(why) => tracing::debug!(
                    conn = %conn,
                    "no user topic for this connection: {why}"
                ),
            }
        }
        for topic in &own {
            if let Err(e) = session.subscribe(topic) {
                tracing::warn!(conn = %conn, topic = %topic, "cannot subscribe the connection to its own topic: {e}");
            }
        }
        let outlet = session.outlet();
        let link = Arc::new(Link {
            queue: Mutex::new(Queue {
                max_in_flight: self.backend.options.max_in_flight,
                ..Queue::default()
            }),
            wake: Notify::new(),
            conn,
            user,
            route,
            outlet: outlet.clone(),
        });
        if let Some(answer) = answer {
            let Answer {
                send,
                subscribe,
                close,
            } = answer;
            subscribe_all(&outlet, &subscribe);
            for message in send {
                if session.send(message).is_err() {
                    break;
                }
            }
            if let Some(close) = close {
                outlet.close(close);
            }
        }
        session.spawn(Box::pin(work(Arc::clone(&link))));
        Ok(State {
            link,
            closing: None,
        })
    }

    fn on_message(
        &self,
        state: &mut State,
        session: &mut dyn Session,
        message: Message<'_>,
    ) -> Result<(), Close> {
        // Only reached if `on_inbound` is bypassed; handled all the same.
        let inbound = match message {
            Message::Text(t) => Inbound::text(Bytes::copy_from_slice(t.as_bytes())),
            Message::Binary(b) => Inbound::binary(Bytes::copy_from_slice(b)),
        };
        self.on_inbound(state, session, inbound)
    }

    fn on_inbound(
        &self,
        state: &mut State,
        session: &mut dyn Session,
        message: Inbound,
    ) -> Result<(), Close> {
        if !self.backend.options.events.posts(Event::Message) {
            let _ = session.send(wire::error(
                Code::BadRequest,
                "this route does not take messages",
            ));
            return Ok(());
        }
        let body = wire::message(&state.link.who(), message.is_text(), message.bytes());
        self.push(&state.link, Event::Message, body);
        Ok(())
    }

    fn on_closing(&self, state: &mut State, _session: &mut dyn Session, closing: &Closing) {
        state
            .closing
            .get_or_insert_with(|| (closing.code, closing.reason.clone()));
    }

    fn on_rate_limited(&self, _state: &mut State, session: &mut dyn Session) {
        let _ = session.send(wire::error(
            Code::RateLimited,
            "message dropped: rate limit exceeded",
        ));
    }

    fn on_shutdown(&self, _state: &mut State, session: &mut dyn Session, reconnect_after_ms: u64) {
        let _ = session.send(wire::shutdown(reconnect_after_ms));
    }

    fn on_close(&self, state: State, _session: &mut dyn Session) {
        let link = state.link;
        if self.backend.options.events.posts(Event::Close) {
            let (code, reason) = state
                .closing
                .unwrap_or_else(|| (LOST.0, LOST.1.to_string()));
            let body = wire::close(&link.who(), code, &reason);
            let mut queue = link.lock();
            queue.jobs.push_back(Job {
                backend: Arc::clone(&self.backend),
                event: Event::Close,
                body,
            });
            queue.ended = true;
        } else {
            link.lock().ended = true;
        }
        link.wake.notify_one();
    }
}

impl Callback {
    /// Queues an event for the worker; at `max_in_flight` events queued or
    /// running, the client's reads pause.
    fn push(&self, link: &Link, event: Event, body: Bytes) {
        let max = self.backend.options.max_in_flight;
        let mut queue = link.lock();
        queue.max_in_flight = max;
        queue.jobs.push_back(Job {
            backend: Arc::clone(&self.backend),
            event,
            body,
        });
        if !queue.paused && queue.in_flight() >= max {
            queue.paused = true;
            link.outlet.pause_reading();
        }
        drop(queue);
        link.wake.notify_one();
    }
}

/// A failed `open` as the client's answer instead of the 101.
fn refusal(route: &str, failure: Failure) -> Refusal {
    match failure {
        Failure::Refused(status) => Refusal::new(
            status.as_u16(),
            "callback_refused",
            format!("the backend refused the connection ({status})"),
        ),
        Failure::Timeout(_) => {
            tracing::info!(
                route,
                "callback backend did not answer the open event in time"
            );
            Refusal::new(
                504,
                "callback_timeout",
                "the backend did not answer in time",
            )
        }
        Failure::Status5xx(_) | Failure::Unreachable(_) | Failure::Malformed(_) => {
            tracing::info!(route, error = %failure, "callback backend failed the open event");
            let reason = match failure {
                Failure::Unreachable(_) => "callback_unreachable",
                Failure::Malformed(_) => "callback_malformed",
                _ => "callback_error",
            };
            Refusal::new(502, reason, "the backend failed")
        }
    }
}

/// Subscribes the connection to an answer's topics, in order, at once; a
/// topic over `max_subscriptions` and the ones after it are not
/// subscribed, and the client is told.
fn subscribe_all(outlet: &Outlet, topics: &[String]) {
    for (i, topic) in topics.iter().enumerate() {
        if let Err(e @ SubscribeError::TooMany { .. }) = outlet.subscribe(topic) {
            let message = format!(
                "cannot subscribe to `{topic}`{}: {e}",
                if i + 1 < topics.len() {
                    " and later topics"
                } else {
                    ""
                }
            );
            let _ = outlet.send(wire::error(Code::TooManySubscriptions, &message));
            return;
        }
    }
}

/// The connection's worker: posts its events one at a time, in order, and
/// applies each answer before the next event is posted. It ends once the
/// connection has ended and every queued event (the `close` one last) was
/// posted.
async fn work(link: Arc<Link>) {
    loop {
        let next = {
            let mut queue = link.lock();
            match queue.jobs.pop_front() {
                Some(job) => {
                    queue.running = true;
                    Some((job, queue.ended))
                }
                None if queue.ended => return,
                None => None,
            }
        };
        let Some((job, ended)) = next else {
            link.wake.notified().await;
            continue;
        };
        // After the end, answers have no connection to act on.
        let parse = job.event == Event::Message && !ended;
        let result = job.backend.post(job.event, job.body, parse).await;
        if job.event == Event::Message {
            apply(&link, result);
        } else if let Err(failure) = result {
            tracing::debug!(conn = %link.conn, error = %failure, "callback close event failed");
        }
        let mut queue = link.lock();
        queue.running = false;
        if queue.paused && queue.in_flight() < queue.max_in_flight {
            queue.paused = false;
            link.outlet.resume_reading();
        }
    }
}

/// Applies the answer to a `message` event, or tells the client why there
/// is none.
fn apply(link: &Link, result: Result<Answer, Failure>) {
    let outlet = &link.outlet;
    let answer = match result {
        Ok(answer) => answer,
        Err(failure) => {
            tracing::debug!(conn = %link.conn, error = %failure, "callback message event failed");
            let code = match failure {
                Failure::Timeout(_) => Code::BackendTimeout,
                Failure::Status5xx(_) => Code::BackendError,
                Failure::Unreachable(_) => Code::BackendUnreachable,
                Failure::Refused(_) => Code::BackendRefused,
                Failure::Malformed(_) => Code::BackendMalformed,
            };
            let _ = outlet.send(wire::error(code, &client_text(&failure)));
            return;
        }
    };
    let Answer {
        send,
        subscribe,
        close,
    } = answer;
    subscribe_all(outlet, &subscribe);
    for message in send {
        match outlet.send(message) {
            Ok(()) => {}
            // Full: the daemon closes the connection (4002). Closing: it
            // is going anyway.
            Err(SendError::QueueFull | SendError::Closing) => break,
        }
    }
    if let Some(close) = close {
        outlet.close(close);
    }
}

/// What the client is told of a failure: no backend address or details.
fn client_text(failure: &Failure) -> String {
    match failure {
        Failure::Timeout(t) => format!("the backend did not answer within {t:?}"),
        Failure::Status5xx(s) | Failure::Refused(s) => format!("the backend answered {s}"),
        Failure::Unreachable(_) => "the backend cannot be reached".to_string(),
        Failure::Malformed(_) => "the backend's answer is malformed".to_string(),
    }
}
