//! `watch` streams: a watcher's [`View`] (interval, filter, window), the
//! message rates it measures from tick to tick, and the loop that writes
//! its snapshots and events while it takes updates of its view.
//!
//! Rates: at every tick the watcher keeps each connection's message counts
//! (a map rebuilt at each tick, so closed connections drop out) and the
//! rates since the tick before: (count now − count then) ÷ elapsed, or the
//! count over the connection's age when it is newer than that tick (and at
//! the first tick). Every snapshot shows the rates of the last tick, so a
//! snapshot sent for an update (a scroll, a new sort) shows the same rates
//! as the tick's, and every selected connection has its rate before the
//! rows are sorted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::broadcast;
use tokio::time::{Interval, MissedTickBehavior};

use super::lines::{line, parse, too_long, Line, LineReader};
use super::protocol::{code, Command, Event, Request, Response, WatchAck};
use super::service::{answer, default_interval, Service};
use super::table::{Ranked, Window};
use super::view::{self, per_second, Rates, Selector};
use crate::daemon::Daemon;
use crate::handle::{Conn, ConnId};

/// What a command other than `watch` gets on a watching connection.
pub const WATCHING: &str = "this connection is watching: only `watch` updates are taken here; \
                            send other commands on a second connection";

/// What one watcher shows: how often, which connections, which rows.
pub struct View {
    interval: Duration,
    selector: Selector,
    window: Window,
}

impl View {
    /// The view a `watch` command asks for; `Err` is the message of a
    /// `bad_arguments` answer (a malformed filter, or another command).
    pub fn asked(command: Command) -> Result<View, String> {
        let Command::Watch {
            interval_ms,
            filter,
            sort,
            order,
            offset,
            limit,
        } = command
        else {
            return Err("not a `watch` request".into());
        };
        Ok(View {
            interval: interval_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .unwrap_or_else(default_interval),
            selector: Selector::new(filter)?,
            window: Window {
                sort,
                order,
                offset: offset.unwrap_or(0),
                limit,
            },
        })
    }
}

/// One connection as of a watcher's last tick.
struct Measured {
    msgs_in: u64,
    msgs_out: u64,
    rates: Rates,
}

/// What a watcher measured at its last tick.
#[derive(Default)]
struct Baseline {
    at: Option<Instant>,
    conns: IdMap<Measured>,
}

impl Baseline {
    /// A tick at `now`: every connection's rates since the last one.
    fn tick(&mut self, conns: &[Arc<Conn>], now: Instant) {
        let elapsed = self.at.map(|then| (now - then).as_secs_f64());
        let mut measured = IdMap::with_capacity_and_hasher(conns.len(), Default::default());
        for c in conns {
            let traffic = c.stats.traffic();
            let (msgs_in, msgs_out) = (traffic.msgs_in, traffic.msgs_out);
            let rates = match (self.conns.get(&c.id), elapsed) {
                (Some(then), Some(secs)) => Rates {
                    msgs_in: per_second(msgs_in.saturating_sub(then.msgs_in), secs),
                    msgs_out: per_second(msgs_out.saturating_sub(then.msgs_out), secs),
                },
                _ => Rates::over_age(c, now),
            };
            let m = Measured {
                msgs_in,
                msgs_out,
                rates,
            };
            measured.insert(c.id, m);
        }
        self.at = Some(now);
        self.conns = measured;
    }

    /// The rates of the last tick; a connection newer than it is rated
    /// over its age at `now`.
    fn rates(&self, c: &Conn, now: Instant) -> Rates {
        match self.conns.get(&c.id) {
            Some(m) => m.rates,
            None => Rates::over_age(c, now),
        }
    }
}

/// A snapshot of `view`; `tick` measures the rates anew first.
fn snapshot(daemon: &Daemon, view: &View, baseline: &mut Baseline, tick: bool) -> Event {
    let now = Instant::now();
    let conns = daemon.registry().all();
    if tick {
        baseline.tick(&conns, now);
    }
    let selected: Vec<Ranked<'_>> = conns
        .iter()
        .filter(|c| view.selector.matches(c, now))
        .map(|c| view.window.rank(c, Some(baseline.rates(c, now)), now))
        .collect();
    let matched = selected.len();
    Event::Snapshot {
        stats: Box::new(view::stats_of(daemon, &conns)),
        matched,
        offset: view.window.offset,
        connections: view.window.rows(selected, now),
    }
}

/// Connection ids, which the daemon hands out one after another, need no
/// flood-resistant hash: SipHash took a third of a tick at 10,000
/// connections, Fx's multiplication a small part of it.
type IdMap<V> = HashMap<ConnId, V, rustc_hash::FxBuildHasher>;

fn ticker(interval: Duration, first: Instant) -> Interval {
    let mut tick = tokio::time::interval_at(first.into(), interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// What the loop writes next.
enum Next {
    Snapshot {
        tick: bool,
    },
    Event(Event),
    /// An update of the view was taken: its answer, then a snapshot.
    Updated(Response),
    /// A line that is no update: its error answer.
    Refused(Response),
}

/// Streams snapshots and events until the client or the daemon goes away,
/// and takes updates of the view from the client meanwhile.
///
/// It writes to the socket itself, one line at a time: a client that stops
/// reading holds up only this loop, with at most one line in hand, while
/// events pile up in the bounded broadcast buffer and the oldest are lost
/// (the client is told how many when it reads again). Nothing is read from
/// the client while a line is being written.
pub async fn run(
    service: &Service,
    mut view: View,
    mut lines: LineReader<OwnedReadHalf>,
    mut out: OwnedWriteHalf,
) {
    let daemon = &service.daemon;
    let mut events = daemon.events();
    let mut tick = ticker(view.interval, Instant::now());
    let mut baseline = Baseline::default();
    // A client may close its side and go on reading the stream.
    let mut reading = true;
    loop {
        let next = tokio::select! {
            _ = daemon.stopped() => return,
            _ = tick.tick() => Next::Snapshot { tick: true },
            e = events.recv() => match e {
                Ok(e) => Next::Event(e),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Next::Event(Event::Lagged { missed })
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            l = lines.next(), if reading => match l {
                Line::Text(text) if text.trim().is_empty() => continue,
                Line::Text(text) => match heard(text.trim()) {
                    Ok((id, update)) => {
                        if update.interval != view.interval {
                            let interval = update.interval;
                            tick = ticker(interval, Instant::now() + interval);
                        }
                        view = update;
                        Next::Updated(answer(id, &WatchAck { watching: true }))
                    }
                    Err(refusal) => Next::Refused(refusal),
                },
                Line::TooLong => {
                    let r = too_long(lines.max());
                    let _ = send(daemon, &mut out, line(&r)).await;
                    return;
                }
                Line::End => {
                    reading = false;
                    continue;
                }
            },
        };
        let sent = match next {
            Next::Snapshot { tick } => {
                let event = snapshot(daemon, &view, &mut baseline, tick);
                send(daemon, &mut out, event_line(&event)).await
            }
            Next::Event(event) => send(daemon, &mut out, event_line(&event)).await,
            Next::Updated(ack) => {
                send(daemon, &mut out, line(&ack)).await && {
                    let event = snapshot(daemon, &view, &mut baseline, false);
                    send(daemon, &mut out, event_line(&event)).await
                }
            }
            Next::Refused(refusal) => send(daemon, &mut out, line(&refusal)).await,
        };
        if !sent {
            return;
        }
    }
}

/// What a line sent to a watching connection asks: a new view (with the
/// request's id), or else the error to answer.
fn heard(text: &str) -> Result<(Option<serde_json::Value>, View), Response> {
    match parse(text)? {
        Request {
            id,
            command: command @ Command::Watch { .. },
            ..
        } => match View::asked(command) {
            Ok(view) => Ok((id, view)),
            Err(e) => Err(Response::err(id, code::BAD_ARGUMENTS, e)),
        },
        Request { id, .. } => Err(Response::err(id, code::BAD_REQUEST, WATCHING)),
    }
}

fn event_line(event: &Event) -> String {
    let mut text = serde_json::to_string(event).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes one line; `false` once the client is gone or the daemon stops.
async fn send(daemon: &Daemon, out: &mut OwnedWriteHalf, text: String) -> bool {
    tokio::select! {
        r = out.write_all(text.as_bytes()) => r.is_ok(),
        _ = daemon.stopped() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::atomic::Ordering::Relaxed;

    fn conn(id: u64) -> Arc<Conn> {
        let ip: IpAddr = "127.0.0.1".parse().expect("an address");
        Arc::new(Conn::new(id, "/ws".into(), None, ip, 16, 1 << 20, 100))
    }

    fn rates(b: &Baseline, c: &Conn) -> (f64, f64) {
        let r = b.rates(c, Instant::now());
        (r.msgs_in, r.msgs_out)
    }

    #[test]
    fn rates_are_counts_since_the_last_tick_over_the_time_between() {
        let (old, idle) = (conn(1), conn(2));
        old.stats.msgs_in.store(100, Relaxed);
        let mut b = Baseline::default();
        let t0 = Instant::now() + Duration::from_secs(10);
        b.tick(&[Arc::clone(&old), Arc::clone(&idle)], t0);
        // The first tick: over each connection's age (about ten seconds).
        let (first, _) = rates(&b, &old);
        assert!((9.0..=10.0).contains(&first), "{first}");
        old.stats.msgs_in.fetch_add(30, Relaxed);
        old.stats.msgs_out.fetch_add(15, Relaxed);
        let new = conn(3);
        new.stats.msgs_out.store(4, Relaxed);
        b.tick(
            &[Arc::clone(&old), Arc::clone(&idle), Arc::clone(&new)],
            t0 + Duration::from_secs(2),
        );
        assert_eq!(rates(&b, &old), (15.0, 7.5));
        assert_eq!(rates(&b, &idle), (0.0, 0.0));
        // New since the last tick: over its own age (about twelve seconds).
        let (_, out) = rates(&b, &new);
        assert!((4.0 / 12.5..=4.0 / 11.5).contains(&out), "{out}");
        // Closed connections drop out of the map.
        b.tick(&[Arc::clone(&new)], t0 + Duration::from_secs(3));
        assert_eq!(b.conns.len(), 1);
        assert_eq!(rates(&b, &new), (0.0, 0.0));
    }

    #[test]
    fn lines_on_a_watching_connection() {
        let Ok((id, view)) = heard(r#"{"id":9,"cmd":"watch","limit":2,"interval_ms":0}"#) else {
            panic!("an update")
        };
        assert_eq!(id, Some(serde_json::json!(9)));
        assert_eq!(
            (view.window.limit, view.interval),
            (Some(2), default_interval())
        );
        let code_of = |t: &str| {
            heard(t)
                .err()
                .and_then(|r| r.error)
                .map(|e| (e.code, e.message))
        };
        assert_eq!(
            code_of(r#"{"id":1,"cmd":"stats"}"#),
            Some((code::BAD_REQUEST.to_string(), WATCHING.to_string()))
        );
        let (c, _) = code_of(r#"{"cmd":"watch","filter":{"ip":"ten"}}"#).expect("refused");
        assert_eq!(c, code::BAD_ARGUMENTS);
        let (c, _) = code_of("{nope").expect("refused");
        assert_eq!(c, code::BAD_REQUEST);
        let (c, _) = code_of(r#"{"cmd":"watch","limt":1}"#).expect("refused");
        assert_eq!(c, code::BAD_ARGUMENTS);
    }
}
