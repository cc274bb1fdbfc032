//! The `proxy` router: dials the upstream in its accept hook, then hands
//! the connection's messages to the upstream leg and its closes both ways.

use std::sync::Arc;

use wsgate_plugin_api::{
    Accept, BoxFuture, Close, Closing, Identity, Inbound, Message, Refusal, Router, Session,
    UpgradeRequest,
};
use wsgate_ws::close;

use crate::dial::{dial, Dialled, Stream};
use crate::leg::{self, Leg, Shared};
use crate::options::Options;

pub struct Proxy {
    pub options: Options,
}

/// One connection's side of its upstream leg.
pub struct State {
    leg: Arc<Shared>,
}

impl Router for Proxy {
    type State = State;

    fn accept<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
        identity: &'a Identity,
    ) -> Option<BoxFuture<'a, Result<Accept, Refusal>>> {
        Some(Box::pin(async move {
            let dialled = dial(
                &self.options,
                request,
                identity,
                self.options.max_refusal_body,
            )
            .await?;
            let mut accept = Accept::new();
            accept.protocol = dialled.protocol.clone();
            Ok(accept.prepared(dialled))
        }))
    }

    fn on_open(&self, session: &mut dyn Session) -> Result<State, Close> {
        let Some(dialled) = session
            .take_prepared()
            .and_then(|p| p.downcast::<Dialled>().ok())
        else {
            return Err(Close::new(close::INTERNAL, "no upstream"));
        };
        let Dialled {
            stream,
            leftover,
            url,
            ..
        } = *dialled;
        let (io, shared) = match stream {
            Stream::Plain(tcp) => leg::plain(tcp, session.outlet()),
            Stream::Tls(tls) => leg::tls(tls, session.outlet()),
        };
        let shared = Arc::new(shared);
        let leg = Leg::new(
            io,
            leftover,
            Arc::clone(&shared),
            session.outlet(),
            url,
            session.limits(),
        );
        session.spawn(Box::pin(leg.run()));
        Ok(State { leg: shared })
    }

    fn on_message(
        &self,
        state: &mut State,
        _session: &mut dyn Session,
        message: Message<'_>,
    ) -> Result<(), Close> {
        // Only reached if `on_inbound` is bypassed; relayed all the same.
        match message {
            Message::Text(t) => state.leg.push(true, t.as_bytes()),
            Message::Binary(b) => state.leg.push(false, b),
        }
        Ok(())
    }

    fn on_inbound(
        &self,
        state: &mut State,
        _session: &mut dyn Session,
        message: Inbound,
    ) -> Result<(), Close> {
        state.leg.push(message.is_text(), message.bytes());
        Ok(())
    }

    fn on_closing(&self, state: &mut State, _session: &mut dyn Session, closing: &Closing) {
        if closing.by_client {
            // The client's own close goes upstream as it was.
            state.leg.close(closing.code, &closing.reason);
        } else {
            // wsgate closes the client (a limit, an eviction, a drain): the
            // upstream is told the client is going away, and why.
            state.leg.close(close::GOING_AWAY, &closing.reason);
        }
    }

    fn on_close(&self, state: State, _session: &mut dyn Session) {
        // Without a close handshake (the client vanished), or after one.
        state.leg.close(close::GOING_AWAY, "client gone");
    }
}
