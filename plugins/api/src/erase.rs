//! Type erasure: how the daemon holds any `Router` behind one pointer.
//!
//! [`erase`] is the only way to make a [`DynRouter`], and a `DynRouter`'s
//! `open` the only way to make a [`Handler`]: both traits are sealed, so
//! that [`DynRouter::rebind`] can rely on every handler being one of its own.

use std::any::Any;
use std::sync::Arc;

use crate::{
    Accept, BoxFuture, Close, Closing, Identity, Inbound, Message, Refusal, Router, Session,
    UpgradeRequest,
};

mod sealed {
    /// Implemented only by this module's `Bound` and `Erased`.
    pub trait Sealed {}
}

/// A type-erased per-connection handler: a router together with one
/// connection's `State`, so that the daemon can hold any router's
/// connections the same way.
///
/// Only [`DynRouter::open`] makes one; it cannot be implemented outside this
/// crate (write a [`Router`] instead):
///
/// ```compile_fail
/// use wsgate_plugin_api::{Close, Closing, Handler, Inbound, Message, Session};
///
/// struct Mine;
///
/// impl Handler for Mine {
///     fn on_message(&mut self, _: &mut dyn Session, _: Message<'_>) -> Result<(), Close> {
///         Ok(())
///     }
///     fn on_inbound(&mut self, _: &mut dyn Session, _: Inbound) -> Result<(), Close> {
///         Ok(())
///     }
///     fn on_closing(&mut self, _: &mut dyn Session, _: &Closing) {}
///     fn on_rate_limited(&mut self, _: &mut dyn Session) {}
///     fn on_shutdown(&mut self, _: &mut dyn Session, _: u64) {}
///     fn on_close(self: Box<Self>, _: &mut dyn Session) {}
///     fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
///         self
///     }
/// }
/// ```
pub trait Handler: sealed::Sealed + Send {
    fn on_message(&mut self, session: &mut dyn Session, message: Message<'_>) -> Result<(), Close>;
    fn on_inbound(&mut self, session: &mut dyn Session, message: Inbound) -> Result<(), Close>;
    fn on_closing(&mut self, session: &mut dyn Session, closing: &Closing);
    fn on_rate_limited(&mut self, session: &mut dyn Session);
    fn on_shutdown(&mut self, session: &mut dyn Session, reconnect_after_ms: u64);
    fn on_close(self: Box<Self>, session: &mut dyn Session);
    /// For [`DynRouter::rebind`]: the handler as its concrete type.
    #[doc(hidden)]
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A router with its per-connection state type erased.
///
/// Only [`erase`] makes one; it cannot be implemented outside this crate:
///
/// ```compile_fail
/// use wsgate_plugin_api::{
///     Accept, BoxFuture, Close, DynRouter, Handler, Identity, Refusal, Session, UpgradeRequest,
/// };
///
/// struct Mine;
///
/// impl DynRouter for Mine {
///     fn accept<'a>(
///         &'a self,
///         _: &'a UpgradeRequest<'a>,
///         _: &'a Identity,
///     ) -> Option<BoxFuture<'a, Result<Accept, Refusal>>> {
///         None
///     }
///     fn open(&self, _: &mut dyn Session) -> Result<Box<dyn Handler>, Close> {
///         Err(Close::new(1011, "no"))
///     }
///     fn rebind(&self, _: &mut dyn Handler) -> bool {
///         false
///     }
/// }
/// ```
pub trait DynRouter: sealed::Sealed + Send + Sync + 'static {
    /// The router's [`Router::accept`] hook, before the 101.
    fn accept<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
        identity: &'a Identity,
    ) -> Option<BoxFuture<'a, Result<Accept, Refusal>>>;

    /// A connection opened: runs the router's `on_open` and returns the
    /// handler for the connection's later events.
    fn open(&self, session: &mut dyn Session) -> Result<Box<dyn Handler>, Close>;

    /// After a reload: moves a live connection's handler onto this router
    /// (new options, same per-connection state). `false` when the handler
    /// belongs to another kind of router, which cannot take it over.
    fn rebind(&self, handler: &mut dyn Handler) -> bool;
}

/// Erases a router's `State` type; a [`RouterPlugin`](crate::RouterPlugin)'s
/// `build` returns this.
///
/// ```
/// use std::sync::Arc;
/// use wsgate_plugin_api::{erase, Close, DynRouter, Message, Router, Session};
///
/// struct Quiet;
///
/// impl Router for Quiet {
///     type State = ();
///     fn on_open(&self, _: &mut dyn Session) -> Result<(), Close> {
///         Ok(())
///     }
///     fn on_message(&self, _: &mut (), _: &mut dyn Session, _: Message<'_>) -> Result<(), Close> {
///         Ok(())
///     }
/// }
///
/// let router: Arc<dyn DynRouter> = erase(Quiet);
/// ```
pub fn erase<R: Router>(router: R) -> Arc<dyn DynRouter> {
    Arc::new(Erased(Arc::new(router)))
}

/// What [`erase`] returns.
struct Erased<R: Router>(Arc<R>);

impl<R: Router> sealed::Sealed for Erased<R> {}

impl<R: Router> DynRouter for Erased<R> {
    fn accept<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
        identity: &'a Identity,
    ) -> Option<BoxFuture<'a, Result<Accept, Refusal>>> {
        self.0.accept(request, identity)
    }

    fn open(&self, session: &mut dyn Session) -> Result<Box<dyn Handler>, Close> {
        let state = self.0.on_open(session)?;
        Ok(Box::new(Bound {
            router: Arc::clone(&self.0),
            state,
        }))
    }

    fn rebind(&self, handler: &mut dyn Handler) -> bool {
        match handler.as_any_mut().downcast_mut::<Bound<R>>() {
            Some(bound) => {
                bound.router = Arc::clone(&self.0);
                true
            }
            None => false,
        }
    }
}

/// What [`DynRouter::open`] returns: the router and one connection's state.
struct Bound<R: Router> {
    router: Arc<R>,
    state: R::State,
}

impl<R: Router> sealed::Sealed for Bound<R> {}

impl<R: Router> Handler for Bound<R> {
    fn on_message(&mut self, session: &mut dyn Session, message: Message<'_>) -> Result<(), Close> {
        self.router.on_message(&mut self.state, session, message)
    }

    fn on_inbound(&mut self, session: &mut dyn Session, message: Inbound) -> Result<(), Close> {
        self.router.on_inbound(&mut self.state, session, message)
    }

    fn on_closing(&mut self, session: &mut dyn Session, closing: &Closing) {
        self.router.on_closing(&mut self.state, session, closing)
    }

    fn on_rate_limited(&mut self, session: &mut dyn Session) {
        self.router.on_rate_limited(&mut self.state, session)
    }

    fn on_shutdown(&mut self, session: &mut dyn Session, reconnect_after_ms: u64) {
        self.router
            .on_shutdown(&mut self.state, session, reconnect_after_ms)
    }

    fn on_close(self: Box<Self>, session: &mut dyn Session) {
        let Bound { router, state } = *self;
        router.on_close(state, session)
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConnLimits, Outbound, Outlet, RawValue, SendError, SubscribeError};
    use std::time::Duration;

    /// A session that records what is sent.
    #[derive(Default)]
    struct Recorder {
        identity: Identity,
        sent: Vec<Outbound>,
    }

    impl Session for Recorder {
        fn id(&self) -> &str {
            "1"
        }
        fn identity(&self) -> &Identity {
            &self.identity
        }
        fn query(&self) -> Option<&str> {
            None
        }
        fn send(&mut self, message: Outbound) -> Result<(), SendError> {
            self.sent.push(message);
            Ok(())
        }
        fn subscribe(&mut self, _topic: &str) -> Result<bool, SubscribeError> {
            Ok(true)
        }
        fn unsubscribe(&mut self, _topic: &str) -> bool {
            false
        }
        fn subscriptions(&self) -> Vec<String> {
            Vec::new()
        }
        fn publish(&mut self, _topic: &str, _data: &RawValue) -> usize {
            0
        }
        fn outlet(&self) -> Outlet {
            Outlet::detached()
        }
        fn spawn(&self, _task: crate::BoxFuture<'static, ()>) {}
        fn limits(&self) -> ConnLimits {
            ConnLimits {
                max_message_bytes: 1024,
                ping_interval: Duration::ZERO,
                pong_timeout: Duration::ZERO,
                close_timeout: Duration::ZERO,
            }
        }
    }

    /// Answers every message with its prefix and how many messages this
    /// connection has sent.
    struct Count {
        prefix: &'static str,
    }

    impl Router for Count {
        type State = u32;

        fn on_open(&self, _session: &mut dyn Session) -> Result<u32, Close> {
            Ok(0)
        }

        fn on_message(
            &self,
            count: &mut u32,
            session: &mut dyn Session,
            _message: Message<'_>,
        ) -> Result<(), Close> {
            *count += 1;
            let _ = session.send(Outbound::text(format!("{}{count}", self.prefix)));
            Ok(())
        }
    }

    /// Another kind of router, with the same `State` type.
    struct Other;

    impl Router for Other {
        type State = u32;

        fn on_open(&self, _session: &mut dyn Session) -> Result<u32, Close> {
            Ok(0)
        }

        fn on_message(
            &self,
            _count: &mut u32,
            _session: &mut dyn Session,
            _message: Message<'_>,
        ) -> Result<(), Close> {
            Err(Close::new(1011, "other"))
        }
    }

    fn message(handler: &mut dyn Handler, session: &mut Recorder) {
        handler
            .on_message(session, Message::Text("x"))
            .expect("message handled");
    }

    #[test]
    fn rebind_keeps_the_state_and_takes_the_new_router() {
        let old = erase(Count { prefix: "old " });
        let new = erase(Count { prefix: "new " });
        let mut session = Recorder::default();
        let mut handler = old.open(&mut session).expect("open");
        message(handler.as_mut(), &mut session);

        assert!(new.rebind(handler.as_mut()));
        message(handler.as_mut(), &mut session);
        assert_eq!(
            session.sent,
            vec![Outbound::text("old 1"), Outbound::text("new 2")]
        );
    }

    #[test]
    fn rebind_refuses_another_kind_of_router() {
        let count = erase(Count { prefix: "" });
        let other = erase(Other);
        let mut session = Recorder::default();
        let mut handler = count.open(&mut session).expect("open");

        assert!(!other.rebind(handler.as_mut()));
        // The handler is untouched: it still belongs to its own router.
        message(handler.as_mut(), &mut session);
        assert_eq!(session.sent, vec![Outbound::text("1")]);
        handler.on_close(&mut session);
    }
}
