//! The server side of the WebSocket opening handshake (RFC 6455 4.2).
//!
//! wsgate answers the upgrade itself and takes the socket straight from
//! hyper, so no WebSocket object (with its 8 KiB read buffer) is ever built
//! just to be taken apart again.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper::{header, Request, Response, StatusCode};
use sha1::{Digest, Sha1};

/// The GUID every accept key is derived with (RFC 6455 1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether the request asks for a WebSocket upgrade at all.
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.method() == hyper::Method::GET
        && has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
}

/// The `Sec-WebSocket-Accept` value for a client's key.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Checks the key and version and builds the 101 answer; the socket comes
/// from the returned future once the answer is sent.
pub fn accept<B>(req: &mut Request<B>) -> Result<(Response<Full<Bytes>>, OnUpgrade), String> {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| "Sec-WebSocket-Key is not base64")?;
    if decoded.len() != 16 {
        return Err("Sec-WebSocket-Key must encode 16 bytes".into());
    }
    let version = req.headers().get(header::SEC_WEBSOCKET_VERSION);
    if version.map(|v| v.as_bytes()) != Some(b"13") {
        return Err("Sec-WebSocket-Version must be 13".into());
    }
    let accept = accept_key(key.as_bytes());
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        header::HeaderValue::from_str(&accept).map_err(|e| e.to_string())?,
    );
    Ok((response, hyper::upgrade::on(req)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        // RFC 6455 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn request(key: &str, version: &str) -> Request<()> {
        Request::builder()
            .method("GET")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", key)
            .header("sec-websocket-version", version)
            .body(())
            .expect("request")
    }

    #[test]
    fn bad_keys_and_versions_are_refused() {
        assert!(is_upgrade(&request("x", "13")));
        assert!(accept(&mut request("dGhlIHNhbXBsZSBub25jZQ==", "13")).is_ok());
        assert!(accept(&mut request("not base64!", "13")).is_err());
        assert!(accept(&mut request("c2hvcnQ=", "13")).is_err());
        assert!(accept(&mut request("dGhlIHNhbXBsZSBub25jZQ==", "8")).is_err());
    }
}
