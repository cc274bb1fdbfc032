//! Before the 101: what a router's [`accept`](crate::Router::accept) hook
//! answers, and the data messages it is later handed ([`Inbound`]).

use std::any::Any;

use crate::{Bytes, Message};

/// A router's yes to an upgrade, given before the client is told it is
/// upgraded.
#[derive(Default)]
pub struct Accept {
    /// The `Sec-WebSocket-Protocol` the 101 carries (one of the client's
    /// offers); `None`: the header is left out.
    pub protocol: Option<String>,
    /// What the router prepared for the connection (e.g. an upstream it
    /// dialled); handed back through
    /// [`Session::take_prepared`](crate::Session::take_prepared) in
    /// `on_open`.
    pub prepared: Option<Box<dyn Any + Send>>,
}

impl Accept {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    pub fn prepared(mut self, prepared: impl Any + Send) -> Self {
        self.prepared = Some(Box::new(prepared));
        self
    }
}

impl std::fmt::Debug for Accept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accept")
            .field("protocol", &self.protocol)
            .field("prepared", &self.prepared.is_some())
            .finish()
    }
}

/// A router's no to an upgrade: the HTTP answer the client gets instead of
/// the 101. It is counted under `reason` in `wsgate_rejections_total` and
/// logged with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// An HTTP status of 400 or more.
    pub status: u16,
    /// A short snake_case label: the `reason` of the metric and of the
    /// JSON refusal.
    pub reason: &'static str,
    /// Shown to the client; never a credential.
    pub message: String,
    /// An answer to pass through as it is (content type and body) instead
    /// of wsgate's JSON refusal, e.g. an upstream's own 403.
    pub body: Option<(String, Bytes)>,
}

impl Refusal {
    pub fn new(status: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            body: None,
        }
    }
}

/// An inbound data message, reassembled from its fragments, with its bytes
/// as the daemon read them (shared: a router may keep or forward them
/// without a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    data: Bytes,
    text: bool,
}

impl Inbound {
    /// A text message; `data` must be valid UTF-8 (the daemon's decoder
    /// checked it); [`Inbound::message`] checks again.
    pub fn text(data: Bytes) -> Self {
        Self { data, text: true }
    }

    pub fn binary(data: Bytes) -> Self {
        Self { data, text: false }
    }

    pub fn is_text(&self) -> bool {
        self.text
    }

    pub fn bytes(&self) -> &Bytes {
        &self.data
    }

    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The message as [`Router::on_message`](crate::Router::on_message)
    /// sees it; `None` for text that is not UTF-8 (which the daemon never
    /// hands over).
    pub fn message(&self) -> Option<Message<'_>> {
        if self.text {
            simdutf8::basic::from_utf8(&self.data)
                .ok()
                .map(Message::Text)
        } else {
            Some(Message::Binary(&self.data))
        }
    }
}
