//! Close codes: the protocol's and wsgate's own (docs/protocol.md).

/// The exchange is done.
pub const NORMAL: u16 = 1000;
/// The server is draining or shutting down, or the route was removed.
pub const GOING_AWAY: u16 = 1001;
/// The client broke the WebSocket protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message or close reason was not valid UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// A policy was broken: the rate limit with `on_rate_limit = "close"`.
pub const POLICY: u16 = 1008;
/// A message was larger than `max_message_bytes`.
pub const TOO_BIG: u16 = 1009;
/// Something went wrong inside wsgate.
pub const INTERNAL: u16 = 1011;
/// An operator evicted the connection.
pub const EVICTED: u16 = 4000;
/// The user's newest connection replaced this one (per-user cap with
/// `evict_oldest`).
pub const REPLACED: u16 = 4001;
/// The send queue was full: the client does not read fast enough.
pub const SLOW_CONSUMER: u16 = 4002;
/// No inbound data message for `idle_timeout`.
pub const IDLE_TIMEOUT: u16 = 4003;
/// No pong within `pong_timeout` of a ping.
pub const HEARTBEAT_TIMEOUT: u16 = 4004;
/// The connection reached `max_lifetime`.
pub const MAX_LIFETIME: u16 = 4005;
/// A reload tightened a cap this connection is over
/// (`enforce_on_reload = true`).
pub const LIMIT_TIGHTENED: u16 = 4006;
/// Not a wire code: the connection ended without a close frame (the peer
/// vanished). Used for the `closes` counter.
pub const ABNORMAL: u16 = 1006;

/// Whether a peer may send `code` in a close frame (RFC 6455 7.4).
pub fn may_be_received(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_unassigned_codes_are_refused() {
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!may_be_received(bad), "{bad}");
        }
        for good in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(may_be_received(good), "{good}");
        }
    }
}
