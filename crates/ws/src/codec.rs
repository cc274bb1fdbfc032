//! The WebSocket frame codec (RFC 6455), without I/O. The daemon decodes
//! its clients' frames with it and writes unmasked server frames; the
//! `proxy` router uses its client side ([`Decoder::client`],
//! [`encode_masked`]) towards an upstream.
//!
//! The decoder takes frames off the front of a read buffer only once they
//! are complete, so the connection task can stop reading at any await point
//! without losing bytes (it is cancel-safe), and it enforces what the
//! protocol and our limits demand before it buffers a payload:
//!
//! - a message of exactly `max_message_bytes` passes, one byte more is 1009,
//!   decided from the frame header, so at most the limit is ever buffered,
//!   also when the message arrives in fragments;
//! - unmasked client frames (masked server frames, on the client side),
//!   reserved bits, unknown opcodes, fragmented or
//!   oversized (> 125 bytes) control frames and broken fragment sequences
//!   are 1002;
//! - invalid UTF-8 in a text message or a close reason is 1007, found as
//!   early as the fragments allow (fail fast);
//! - close codes that may not be sent on the wire are 1002.
//!
//! The encoder writes unmasked server frames and masked client frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::close;

/// The largest payload of a control frame (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The largest frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A complete unit the connection acts on.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole data message; text is valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// A close frame: its code (None for an empty close) and reason.
    Close(Option<u16>, String),
}

/// A protocol violation, with the close code it calls for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    #[error("message larger than {limit} bytes")]
    TooBig { limit: usize },
}

impl ProtocolError {
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::Protocol(_) => close::PROTOCOL_ERROR,
            ProtocolError::InvalidUtf8 => close::INVALID_DATA,
            ProtocolError::TooBig { .. } => close::TOO_BIG,
        }
    }
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: BytesMut,
    /// Bytes of `data` already known to be valid UTF-8.
    checked: usize,
}

/// Decoder state for one connection: the fragmented message in flight, and
/// the small fragments it was sent in.
#[derive(Debug, Default)]
pub struct Decoder {
    partial: Option<Partial>,
    small: SmallFragments,
    /// The client side: frames come from a server, unmasked.
    client: bool,
}

/// Data frames of a fragmented message, other than the one that ends it,
/// that carry at most [`MAX_CONTROL_PAYLOAD`] bytes: they cost as much to
/// handle as a control frame, so the connection counts them against its
/// frame budget with pings and pongs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmallFragments {
    /// Empty: ignoring one changes nothing.
    pub empty: u32,
    /// Carrying data: it cannot be left out.
    pub data: u32,
}

impl SmallFragments {
    pub fn is_empty(&self) -> bool {
        self.empty == 0 && self.data == 0
    }
}

/// What the decoder needs from the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Need {
    /// At least this many bytes in total before the next frame is complete.
    Bytes(usize),
}

impl Decoder {
    /// The server side: decodes a client's (masked) frames.
    pub fn new() -> Self {
        Self::default()
    }

    /// The client side: decodes a server's (unmasked) frames; a masked
    /// frame is a protocol error.
    pub fn client() -> Self {
        Self {
            client: true,
            ..Self::default()
        }
    }

    /// The small fragments consumed since the last call.
    #[inline]
    pub fn take_small_fragments(&mut self) -> SmallFragments {
        std::mem::take(&mut self.small)
    }

    /// Whether a fragmented message is half received.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Payload bytes of the fragmented message in flight that the decoder
    /// holds (at most the message limit).
    pub fn buffered(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.data.len())
    }

    /// Takes the next complete event off the front of `buf`.
    ///
    /// `Ok(Err(Need))` means the buffer holds no complete frame yet and says
    /// how large it must grow (the caller reserves that much). Frames that
    /// only continue a fragmented message are consumed and the loop goes on.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_message: usize,
    ) -> Result<Result<Event, Need>, ProtocolError> {
        loop {
            if buf.len() < 2 {
                return Ok(Err(Need::Bytes(2)));
            }
            let b0 = buf[0];
            let b1 = buf[1];
            let fin = b0 & 0x80 != 0;
            if b0 & 0x70 != 0 {
                return Err(ProtocolError::Protocol("reserved bits set"));
            }
            let opcode =
                OpCode::from_bits(b0 & 0x0F).ok_or(ProtocolError::Protocol("unknown opcode"))?;
            let masked = b1 & 0x80 != 0;
            if !masked && !self.client {
                return Err(ProtocolError::Protocol("client frames must be masked"));
            }
            if masked && self.client {
                return Err(ProtocolError::Protocol("server frames must not be masked"));
            }
            let (len_bytes, short_len) = match b1 & 0x7F {
                126 => (2, None),
                127 => (8, None),
                n => (0, Some(n as u64)),
            };
            let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
            if buf.len() < header_len {
                return Ok(Err(Need::Bytes(header_len)));
            }
            let payload_len = match short_len {
                Some(n) => n,
                None if len_bytes == 2 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
                None => {
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&buf[2..10]);
                    let n = u64::from_be_bytes(raw);
                    if n >> 63 != 0 {
                        return Err(ProtocolError::Protocol("frame length has the top bit set"));
                    }
                    n
                }
            };

            if opcode.is_control() {
                if !fin {
                    return Err(ProtocolError::Protocol("fragmented control frame"));
                }
                if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(ProtocolError::Protocol("control frame over 125 bytes"));
                }
            } else {
                match (opcode, &self.partial) {
                    (OpCode::Continuation, None) => {
                        return Err(ProtocolError::Protocol("continuation without a message"))
                    }
                    (OpCode::Text | OpCode::Binary, Some(_)) => {
                        return Err(ProtocolError::Protocol(
                            "new message before the last one finished",
                        ))
                    }
                    _ => {}
                }
                // The size limit is applied to the whole message, from the
                // header: nothing over the limit is ever buffered.
                let so_far = self.partial.as_ref().map_or(0, |p| p.data.len()) as u64;
                if so_far + payload_len > max_message as u64 {
                    return Err(ProtocolError::TooBig { limit: max_message });
                }
            }

            // Fits in usize: bounded by max_message or 125 above.
            let payload_len = payload_len as usize;
            let total = header_len + payload_len;
            if buf.len() < total {
                return Ok(Err(Need::Bytes(total)));
            }

            let mask = masked.then(|| {
                [
                    buf[header_len - 4],
                    buf[header_len - 3],
                    buf[header_len - 2],
                    buf[header_len - 1],
                ]
            });
            buf.advance(header_len);
            let mut payload = buf.split_to(payload_len);
            if let Some(mask) = mask {
                fastwebsockets::unmask(&mut payload, mask);
            }
            // The frame that ends a message is the message's own (it counts
            // against the message rate); the ones before it are counted.
            if !fin && payload_len <= MAX_CONTROL_PAYLOAD && !opcode.is_control() {
                if payload_len == 0 {
                    self.small.empty = self.small.empty.saturating_add(1);
                } else {
                    self.small.data = self.small.data.saturating_add(1);
                }
            }

            match opcode {
                OpCode::Ping => return Ok(Ok(Event::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Ok(Event::Pong(payload.freeze()))),
                OpCode::Close => return parse_close(&payload).map(Ok),
                OpCode::Text | OpCode::Binary if fin => {
                    let text = opcode == OpCode::Text;
                    if text && simdutf8::basic::from_utf8(&payload).is_err() {
                        return Err(ProtocolError::InvalidUtf8);
                    }
                    let data = payload.freeze();
                    return Ok(Ok(if text {
                        Event::Text(data)
                    } else {
                        Event::Binary(data)
                    }));
                }
                OpCode::Text | OpCode::Binary => {
                    let mut partial = Partial {
                        text: opcode == OpCode::Text,
                        data: payload,
                        checked: 0,
                    };
                    check_utf8_prefix(&mut partial)?;
                    self.partial = Some(partial);
                }
                OpCode::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(ProtocolError::Protocol("continuation without a message"));
                    };
                    partial.data.unsplit(payload);
                    check_utf8_prefix(partial)?;
                    if fin {
                        let Some(done) = self.partial.take() else {
                            return Err(ProtocolError::Protocol("continuation without a message"));
                        };
                        if done.text && done.checked != done.data.len() {
                            // The message ends inside a UTF-8 sequence.
                            return Err(ProtocolError::InvalidUtf8);
                        }
                        let data = done.data.freeze();
                        return Ok(Ok(if done.text {
                            Event::Text(data)
                        } else {
                            Event::Binary(data)
                        }));
                    }
                }
            }
        }
    }
}

/// Validates the not yet checked tail of a text message in flight. A
/// sequence cut by the fragment boundary is fine until the message ends.
fn check_utf8_prefix(p: &mut Partial) -> Result<(), ProtocolError> {
    if !p.text {
        return Ok(());
    }
    let tail = &p.data[p.checked..];
    match simdutf8::compat::from_utf8(tail) {
        Ok(_) => p.checked = p.data.len(),
        Err(e) if e.error_len().is_none() => p.checked += e.valid_up_to(),
        Err(_) => return Err(ProtocolError::InvalidUtf8),
    }
    Ok(())
}

fn parse_close(payload: &[u8]) -> Result<Event, ProtocolError> {
    match payload.len() {
        0 => Ok(Event::Close(None, String::new())),
        1 => Err(ProtocolError::Protocol("close frame with a 1-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !close::may_be_received(code) {
                return Err(ProtocolError::Protocol("invalid close code"));
            }
            let reason = simdutf8::basic::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Event::Close(Some(code), reason.to_string()))
        }
    }
}

/// Appends one unmasked, unfragmented server frame.
pub fn encode(out: &mut impl BufMut, opcode: OpCode, payload: &[u8]) {
    header(out, opcode, payload.len(), 0);
    out.put_slice(payload);
}

/// Appends one unfragmented client frame, masked with `mask` (RFC 6455
/// 5.3: a fresh, unpredictable key for every frame).
pub fn encode_masked(out: &mut BytesMut, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    header(out, opcode, payload.len(), 0x80);
    out.put_slice(&mask);
    let start = out.len();
    out.put_slice(payload);
    fastwebsockets::unmask(&mut out[start..], mask);
}

/// A final frame's header, with the mask bit given (`0x80` or 0).
fn header(out: &mut impl BufMut, opcode: OpCode, len: usize, mask_bit: u8) {
    out.put_u8(0x80 | opcode as u8);
    if len < 126 {
        out.put_u8(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(mask_bit | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(mask_bit | 127);
        out.put_u64(len as u64);
    }
}

/// Appends a close frame; the reason is cut to fit a control frame (at a
/// character boundary).
pub fn encode_close(out: &mut impl BufMut, code: Option<u16>, reason: &str) {
    let (payload, len) = close_payload(code, reason);
    encode(out, OpCode::Close, &payload[..len]);
}

/// [`encode_close`] for the client side: masked with `mask`.
pub fn encode_close_masked(out: &mut BytesMut, code: Option<u16>, reason: &str, mask: [u8; 4]) {
    let (payload, len) = close_payload(code, reason);
    encode_masked(out, OpCode::Close, &payload[..len], mask);
}

/// A close frame's payload: the code and as much of the reason as fits,
/// cut at a character boundary.
fn close_payload(code: Option<u16>, reason: &str) -> ([u8; MAX_CONTROL_PAYLOAD], usize) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    let Some(code) = code else {
        return (payload, 0);
    };
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    (payload, 2 + end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Event>, ProtocolError> {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Ok(event) = d.decode(&mut buf, max)? {
            out.push(event);
        }
        Ok(out)
    }

    #[test]
    fn message_of_exactly_the_limit_passes_one_more_byte_is_1009() {
        let ok = client_frame(true, 1, &[b'a'; 100]);
        assert_eq!(decode_all(&ok, 100).expect("fits").len(), 1);
        let big = client_frame(true, 1, &[b'a'; 101]);
        let err = decode_all(&big, 100).expect_err("too big");
        assert_eq!(err.close_code(), 1009);
    }

    #[test]
    fn fragments_count_against_the_limit_as_a_whole() {
        let mut bytes = client_frame(false, 2, &[1; 60]);
        bytes.extend(client_frame(true, 0, &[2; 40]));
        let events = decode_all(&bytes, 100).expect("exactly the limit");
        assert_eq!(
            events,
            vec![Event::Binary(Bytes::from(
                [[1u8; 60].as_slice(), &[2u8; 40]].concat()
            ))]
        );

        let mut bytes = client_frame(false, 2, &[1; 60]);
        bytes.extend(client_frame(true, 0, &[2; 41]));
        // Refused from the second header alone: its payload is not needed.
        let header_only = &bytes[..client_frame(false, 2, &[1; 60]).len() + 6];
        assert_eq!(
            decode_all(header_only, 100),
            Err(ProtocolError::TooBig { limit: 100 })
        );
    }

    #[test]
    fn small_fragments_are_counted_whole_messages_and_large_fragments_are_not() {
        let mut d = Decoder::new();
        let mut bytes = client_frame(true, 1, b"whole");
        bytes.extend(client_frame(false, 2, &[1; 200]));
        bytes.extend(client_frame(false, 0, &[]));
        bytes.extend(client_frame(false, 0, &[]));
        bytes.extend(client_frame(false, 0, &[2; 125]));
        bytes.extend(client_frame(false, 0, &[3; 126]));
        bytes.extend(client_frame(true, 0, &[]));
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(
            d.decode(&mut buf, 1024),
            Ok(Ok(Event::Text(Bytes::from_static(b"whole"))))
        );
        assert!(d.take_small_fragments().is_empty());
        assert!(matches!(d.decode(&mut buf, 1024), Ok(Ok(Event::Binary(b))) if b.len() == 451));
        assert_eq!(
            d.take_small_fragments(),
            SmallFragments { empty: 2, data: 1 },
            "two empty ones and one of 125 bytes; not the last one"
        );
        assert!(d.take_small_fragments().is_empty(), "taken once");
    }

    #[test]
    fn incomplete_frames_wait_and_lose_nothing() {
        let frame = client_frame(true, 1, b"hello");
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        for (i, byte) in frame.iter().enumerate() {
            buf.put_u8(*byte);
            let r = d.decode(&mut buf, 1024).expect("valid");
            if i + 1 < frame.len() {
                assert!(r.is_err(), "complete too early at byte {i}");
            } else {
                assert_eq!(r, Ok(Event::Text(Bytes::from_static(b"hello"))));
            }
        }
    }

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut bytes = client_frame(false, 1, b"he");
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(true, 0, b"llo"));
        let events = decode_all(&bytes, 1024).expect("valid");
        assert_eq!(
            events,
            vec![
                Event::Ping(Bytes::from_static(b"p")),
                Event::Text(Bytes::from_static(b"hello"))
            ]
        );
    }

    #[test]
    fn protocol_violations_are_1002() {
        let unmasked = [0x81, 0x01, b'a'];
        let cases: Vec<Vec<u8>> = vec![
            unmasked.to_vec(),
            client_frame(true, 0x1 | 0x40, b"a"), // RSV1
            client_frame(true, 0x3, b"a"),        // reserved opcode
            client_frame(false, 0x9, b"a"),       // fragmented ping
            client_frame(true, 0x9, &[0; 126]),   // long ping
            client_frame(true, 0x0, b"a"),        // stray continuation
            client_frame(true, 0x8, &[0x03]),     // 1-byte close
            client_frame(true, 0x8, &1005u16.to_be_bytes()),
            client_frame(true, 0x8, &999u16.to_be_bytes()),
        ];
        for case in cases {
            let err = decode_all(&case, 1024).expect_err("violation");
            assert_eq!(err.close_code(), 1002, "{case:?}: {err}");
        }
        let mut two_starts = client_frame(false, 1, b"a");
        two_starts.extend(client_frame(true, 1, b"b"));
        assert_eq!(
            decode_all(&two_starts, 1024)
                .expect_err("violation")
                .close_code(),
            1002
        );
    }

    #[test]
    fn invalid_utf8_is_1007_and_fails_fast() {
        assert_eq!(
            decode_all(&client_frame(true, 1, &[0xff]), 1024)
                .expect_err("bad")
                .close_code(),
            1007
        );
        // A bad byte in the first fragment is found before the message ends.
        let first = client_frame(false, 1, &[b'a', 0xff]);
        assert_eq!(
            decode_all(&first, 1024).expect_err("bad").close_code(),
            1007
        );
        // A sequence split across fragments is fine.
        let euro = "€".as_bytes();
        let mut split = client_frame(false, 1, &euro[..1]);
        split.extend(client_frame(true, 0, &euro[1..]));
        assert_eq!(
            decode_all(&split, 1024).expect("valid"),
            vec![Event::Text(Bytes::from_static(euro))]
        );
        // ...but not when the message ends inside it.
        let mut cut = client_frame(false, 1, &euro[..1]);
        cut.extend(client_frame(true, 0, &euro[1..2]));
        assert_eq!(decode_all(&cut, 1024).expect_err("bad").close_code(), 1007);
        // Close reasons are checked too.
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.push(0xff);
        assert_eq!(
            decode_all(&client_frame(true, 8, &close), 1024)
                .expect_err("bad")
                .close_code(),
            1007
        );
    }

    #[test]
    fn close_frames_parse() {
        let mut payload = 4000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let events = decode_all(&client_frame(true, 8, &payload), 1024).expect("valid");
        assert_eq!(events, vec![Event::Close(Some(4000), "bye".into())]);
        let events = decode_all(&client_frame(true, 8, &[]), 1024).expect("valid");
        assert_eq!(events, vec![Event::Close(None, String::new())]);
    }

    #[test]
    fn encoder_writes_all_length_forms() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let mut out = BytesMut::new();
            encode(&mut out, OpCode::Binary, &vec![7; len]);
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x82);
        }
    }

    #[test]
    fn the_client_side_masks_what_it_sends_and_takes_only_unmasked_frames() {
        // What a client encodes, a server decodes (all length forms).
        let mut wire = BytesMut::new();
        for len in [0, 125, 126, 65_535, 65_536] {
            encode_masked(&mut wire, OpCode::Binary, &vec![7; len], [1, 2, 3, 4]);
        }
        encode_close_masked(&mut wire, Some(4000), "bye", [9, 8, 7, 6]);
        let mut server = Decoder::new();
        for len in [0, 125, 126, 65_535, 65_536] {
            let event = server.decode(&mut wire, 1 << 20).expect("valid");
            assert_eq!(event, Ok(Event::Binary(Bytes::from(vec![7; len]))));
        }
        let close = server.decode(&mut wire, 1 << 20).expect("valid");
        assert_eq!(close, Ok(Event::Close(Some(4000), "bye".into())));

        // What a server encodes, a client decodes; a masked frame from a
        // server is refused.
        let mut wire = BytesMut::new();
        encode(&mut wire, OpCode::Text, b"hello");
        let mut client = Decoder::client();
        let event = client.decode(&mut wire, 100).expect("valid");
        assert_eq!(event, Ok(Event::Text(Bytes::from_static(b"hello"))));
        let mut masked = BytesMut::from(&client_frame(true, 1, b"x")[..]);
        let err = client.decode(&mut masked, 100).expect_err("masked");
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let mut out = BytesMut::new();
        encode_close(&mut out, Some(4000), &"é".repeat(100));
        let payload_len = out[1] as usize;
        assert!(payload_len <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
