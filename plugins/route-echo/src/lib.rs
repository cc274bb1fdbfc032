//! The `echo` router: every text and binary message goes back unchanged.
//!
//! It has no options. Fragmented messages are echoed once reassembled, as one
//! message; control frames and the close handshake are the daemon's.

use std::sync::Arc;

use wsgate_plugin_api::{
    erase, Bytes, Close, DynRouter, Message, OptionsError, Outbound, Router, RouterPlugin, Session,
    Table,
};

/// The factory, registered as `echo`.
pub struct Plugin;

impl RouterPlugin for Plugin {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn DynRouter>, OptionsError> {
        if let Some(key) = options.keys().next() {
            return Err(OptionsError::at(
                key.clone(),
                "the echo router takes no options",
            ));
        }
        Ok(erase(Echo))
    }
}

struct Echo;

impl Router for Echo {
    type State = ();

    fn on_open(&self, _session: &mut dyn Session) -> Result<(), Close> {
        Ok(())
    }

    fn on_message(
        &self,
        _state: &mut (),
        session: &mut dyn Session,
        message: Message<'_>,
    ) -> Result<(), Close> {
        let out = match message {
            Message::Text(t) => Outbound::Text(Bytes::copy_from_slice(t.as_bytes())),
            Message::Binary(b) => Outbound::Binary(Bytes::copy_from_slice(b)),
        };
        // A full queue is the daemon's to handle (it closes with 4002).
        let _ = session.send(out);
        Ok(())
    }
}
