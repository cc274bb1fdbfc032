//! The admin socket's lines: requests from a client, at most
//! `admin_max_request_bytes` each, read so that a `select!` may drop a read
//! at any point without losing a byte (a `watch` stream reads its client's
//! updates between the lines it writes); parsing a request line, with the
//! error to answer; and an answer as a line.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::protocol::{code, Command, Request, Response};

/// What the client sent next.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// One line, without its newline (invalid UTF-8 replaced).
    Text(String),
    /// A line longer than the limit: where the next one starts is unknown.
    TooLong,
    /// The client closed its side, or the read failed.
    End,
}

/// Splits a client's input into lines.
pub struct LineReader<R> {
    input: BufReader<R>,
    /// The line so far; kept across cancelled reads.
    line: Vec<u8>,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of at most `max` bytes, not counting the newline.
    pub fn new(input: R, max: usize) -> Self {
        Self {
            input: BufReader::new(input),
            line: Vec::new(),
            max,
        }
    }

    /// The longest line taken, in bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The next line. Cancel-safe: the only wait is for more input, and
    /// what was read before it is kept in `self.line`.
    pub async fn next(&mut self) -> Line {
        loop {
            let Ok(available) = self.input.fill_buf().await else {
                return Line::End;
            };
            if available.is_empty() {
                // The last line may lack its newline.
                return if self.line.is_empty() {
                    Line::End
                } else {
                    self.take()
                };
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let chunk = newline.unwrap_or(available.len());
            if self.line.len() + chunk > self.max {
                return Line::TooLong;
            }
            self.line.extend_from_slice(&available[..chunk]);
            self.input.consume(chunk + usize::from(newline.is_some()));
            if newline.is_some() {
                return self.take();
            }
        }
    }

    fn take(&mut self) -> Line {
        let text = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        Line::Text(text)
    }
}

/// An answer as a line.
pub fn line(response: &Response) -> String {
    let mut s = serde_json::to_string(response).unwrap_or_default();
    s.push('\n');
    s
}

/// The answer to a line longer than `admin_max_request_bytes`, after which
/// the connection is closed (where the next request starts is unknown).
pub fn too_long(max: usize) -> Response {
    Response::err(
        None,
        code::BAD_REQUEST,
        format!("request longer than admin_max_request_bytes ({max})"),
    )
}

/// Parses a request line; an error is the answer to send.
pub fn parse(text: &str) -> Result<Request, Response> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Response::err(None, code::BAD_REQUEST, format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Response::err(
            None,
            code::BAD_REQUEST,
            "a request is a JSON object",
        ));
    };
    let id = object.get("id").cloned();
    let Some(cmd) = object.get("cmd").and_then(|c| c.as_str()) else {
        return Err(Response::err(id, code::BAD_REQUEST, "missing `cmd`"));
    };
    if !Command::NAMES.contains(&cmd) {
        return Err(Response::err(
            id,
            code::UNKNOWN_COMMAND,
            format!(
                "unknown command `{cmd}` (one of: {})",
                Command::NAMES.join(", ")
            ),
        ));
    }
    serde_json::from_value::<Request>(value.clone())
        .map_err(|e| Response::err(id, code::BAD_ARGUMENTS, format!("{cmd}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    fn text(s: &str) -> Line {
        Line::Text(s.to_string())
    }

    #[tokio::test]
    async fn lines_up_to_the_limit_and_a_last_one_without_newline() {
        let input: &[u8] = b"{\"cmd\":\"stats\"}\n\n12345\nlast";
        let mut lines = LineReader::new(input, 15);
        assert_eq!(lines.next().await, text("{\"cmd\":\"stats\"}"));
        assert_eq!(lines.next().await, text(""));
        assert_eq!(lines.next().await, text("12345"));
        assert_eq!(lines.next().await, text("last"));
        assert_eq!(lines.next().await, Line::End);
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_too_long() {
        let input: &[u8] = b"123456\n";
        assert_eq!(LineReader::new(input, 5).next().await, Line::TooLong);
        let input: &[u8] = b"123456";
        assert_eq!(LineReader::new(input, 5).next().await, Line::TooLong);
        let input: &[u8] = b"12345\n";
        assert_eq!(LineReader::new(input, 5).next().await, text("12345"));
    }

    #[tokio::test]
    async fn a_read_dropped_halfway_loses_nothing() {
        let (mut client, daemon) = tokio::io::duplex(64);
        let mut lines = LineReader::new(daemon, 100);
        client.write_all(b"{\"cmd\":").await.expect("write");
        let waited = tokio::time::timeout(Duration::from_millis(20), lines.next()).await;
        assert!(waited.is_err(), "no line yet");
        client
            .write_all(b"\"stats\"}\nnext\n")
            .await
            .expect("write");
        assert_eq!(lines.next().await, text("{\"cmd\":\"stats\"}"));
        assert_eq!(lines.next().await, text("next"));
        drop(client);
        assert_eq!(lines.next().await, Line::End);
    }
}
