//! Harnesses for the parsers that read untrusted or hand-written input,
//! shared by the cargo-fuzz targets (`fuzz/`), the test that replays their
//! corpus (`tests/fuzz_corpus.rs`) and the property tests. Each takes
//! arbitrary input and panics only when a property of the parser fails.
//!
//! - [`decode`]: the frame decoder ([`crate::ws::codec::Decoder`]).
//! - [`config`]: the config loader ([`crate::config::Settings::from_text`]).

use bytes::BytesMut;

use crate::config::load::Source;
use crate::config::Settings;
use crate::ws::codec::{Decoder, Event, Need, ProtocolError, MAX_CONTROL_PAYLOAD, MAX_HEADER};

/// What the decoder made of a byte stream: the events in order, then why
/// it stopped (it wants more bytes, or the stream broke the protocol).
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub end: Result<Need, ProtocolError>,
}

/// The fuzz target `decode`: the first two bytes choose the message limit
/// (1 to 65,536), the third how the rest is cut into reads; the rest is
/// the stream. See [`check_decoder`] for what must hold.
pub fn decode(data: &[u8]) -> Decoded {
    let (head, stream) = data.split_at(data.len().min(3));
    let max_message = 1 + usize::from(u16::from_le_bytes([
        head.first().copied().unwrap_or(0),
        head.get(1).copied().unwrap_or(0),
    ]));
    let seed = head.get(2).copied().unwrap_or(0);
    check_decoder(stream, max_message, &cuts(stream.len(), seed))
}

/// Read boundaries for a stream of `len` bytes, from a seed: 0 is one byte
/// per read, 255 no cut at all, anything else reads of pseudo-random
/// sizes.
pub fn cuts(len: usize, seed: u8) -> Vec<usize> {
    match seed {
        0 => (1..len).collect(),
        255 => Vec::new(),
        _ => {
            let mut state = u32::from(seed) | 0x100;
            let mut at = 0;
            let mut out = Vec::new();
            loop {
                // xorshift32
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                at += 1 + (state % 64) as usize;
                if at >= len {
                    return out;
                }
                out.push(at);
            }
        }
    }
}

/// Decodes `stream` whole and again as reads cut at `cuts` (offsets into
/// the stream, in any order), and asserts what must hold of the decoder:
///
/// - both give the same events and stop the same way, wherever the cuts;
/// - no event is larger than the protocol and the limit allow, and a text
///   message is valid UTF-8;
/// - what the decoder asks the buffer to hold for its next frame, with
///   the message it has in flight, is at most the message limit plus one
///   frame header; while a fragmented message is in flight a control frame
///   (at most 125 bytes, which RFC 6455 lets arrive between fragments) may
///   add its own payload on top;
/// - it only asks for more bytes than the buffer has.
pub fn check_decoder(stream: &[u8], max_message: usize, cuts: &[usize]) -> Decoded {
    let whole = run_decoder(std::iter::once(stream), max_message);
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &cut in &cuts {
        pieces.push(&stream[from..cut]);
        from = cut;
    }
    pieces.push(&stream[from..]);
    let chunked = run_decoder(pieces.into_iter(), max_message);
    assert_eq!(
        whole, chunked,
        "fed whole and in reads cut at {cuts:?}, the decoder differs"
    );
    whole
}

fn run_decoder<'a>(reads: impl Iterator<Item = &'a [u8]>, max_message: usize) -> Decoded {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut end = Ok(Need::Bytes(2));
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf, max_message) {
                Ok(Ok(event)) => {
                    check_event(&event, max_message);
                    events.push(event);
                }
                Ok(Err(Need::Bytes(n))) => {
                    assert!(
                        n > buf.len(),
                        "asks for {n} bytes but holds {} already",
                        buf.len()
                    );
                    let held = decoder.buffered();
                    assert!(held <= max_message, "holds {held} bytes of a message");
                    let bound = MAX_HEADER + max_message.max(held + MAX_CONTROL_PAYLOAD);
                    assert!(
                        held + n <= bound,
                        "asks for {n} bytes with {held} in flight (limit {max_message})"
                    );
                    end = Ok(Need::Bytes(n));
                    break;
                }
                Err(e) => {
                    return Decoded {
                        events,
                        end: Err(e),
                    }
                }
            }
        }
    }
    Decoded { events, end }
}

fn check_event(event: &Event, max_message: usize) {
    match event {
        Event::Text(data) => {
            assert!(data.len() <= max_message, "text of {} bytes", data.len());
            assert!(std::str::from_utf8(data).is_ok(), "text is not UTF-8");
        }
        Event::Binary(data) => {
            assert!(data.len() <= max_message, "binary of {} bytes", data.len());
        }
        Event::Ping(data) | Event::Pong(data) => {
            assert!(data.len() <= MAX_CONTROL_PAYLOAD, "control frame too long");
        }
        Event::Close(code, reason) => {
            assert!(code.is_some() || reason.is_empty());
            assert!(
                reason.len() + 2 <= MAX_CONTROL_PAYLOAD,
                "close reason too long"
            );
        }
    }
}

/// The fuzz target `config`: the bytes as a config file (invalid UTF-8
/// replaced, as a file that is read cannot hold it). See [`check_config`].
pub fn config(data: &[u8]) -> Result<(), String> {
    check_config(&String::from_utf8_lossy(data))
}

/// Parses and validates `text` as the config file `fuzz.toml`, and asserts
/// that an error names a line and column for every issue, and that a valid
/// config written back as TOML reads as a valid config again. `Err` is the
/// rendered error of a refused config.
pub fn check_config(text: &str) -> Result<(), String> {
    match Settings::from_text("fuzz.toml", text) {
        Ok(settings) => {
            let written = toml::to_string(&settings.config)
                .unwrap_or_else(|e| panic!("a valid config does not serialise: {e}"));
            let source = Source {
                file: "written.toml".into(),
                text: written,
            };
            if let Err(e) = source.parse() {
                panic!(
                    "a valid config written back does not parse: {e}\n{}",
                    source.text
                );
            }
            Ok(())
        }
        Err(e) => {
            for issue in &e.issues {
                assert!(
                    issue.line.is_some() && issue.column.is_some(),
                    "an issue without a place: {issue:?}\nin:\n{text}"
                );
            }
            Err(e.to_string())
        }
    }
}
