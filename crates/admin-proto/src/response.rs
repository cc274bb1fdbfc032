//! Answer lines: a result or an error with its code.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One answer line. The result is a JSON value, so that its keys go on the
/// wire in one order (sorted) whatever type the daemon built it from. Each
/// command's result has its own type ([`crate::Stats`], [`crate::EvictResult`],
/// ...), which [`crate::Client`] reads it into.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Why a request failed: one of the [`code`]s and a text for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// Error codes.
pub mod code {
    /// The line is not JSON or not a request object.
    pub const BAD_REQUEST: &str = "bad_request";
    /// `cmd` names no command.
    pub const UNKNOWN_COMMAND: &str = "unknown_command";
    /// The arguments are wrong (unknown key, wrong type, bad value).
    pub const BAD_ARGUMENTS: &str = "bad_arguments";
    /// No connection with that id.
    pub const NOT_FOUND: &str = "not_found";
    /// `evict` with an empty filter and without `all: true`.
    pub const REFUSED: &str = "refused";
    /// The config file is invalid; nothing changed.
    pub const CONFIG_ERROR: &str = "config_error";
    /// The peer's uid/gid is not allowed.
    pub const PERMISSION_DENIED: &str = "permission_denied";
    /// The daemon cannot do it now (e.g. shutting down).
    pub const UNAVAILABLE: &str = "unavailable";
}

impl Response {
    pub fn ok(id: Option<Value>, result: Value) -> Self {
        Self {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn err(id: Option<Value>, code: &str, message: impl Into<String>) -> Self {
        Self {
            id,
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.into(),
                message: message.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_are_as_documented() {
        let ok = Response::ok(Some(json!(4)), json!({"delivered": 3}));
        assert_eq!(
            serde_json::to_string(&ok).expect("serialise"),
            r#"{"id":4,"ok":true,"result":{"delivered":3}}"#
        );
        let err = Response::err(None, code::BAD_REQUEST, "a request is a JSON object");
        assert_eq!(
            serde_json::to_string(&err).expect("serialise"),
            r#"{"ok":false,"error":{"code":"bad_request","message":"a request is a JSON object"}}"#
        );
        let back: Response = serde_json::from_str(
            r#"{"id":7,"ok":false,"error":{"code":"not_found","message":"no connection 99"}}"#,
        )
        .expect("parse");
        assert_eq!(back.id, Some(json!(7)));
        assert_eq!(
            back.error,
            Some(ErrorBody {
                code: code::NOT_FOUND.into(),
                message: "no connection 99".into()
            })
        );
    }
}
