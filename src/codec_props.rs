//! Property tests of the frame decoder: random bytes, and valid client
//! streams (masked frames, fragmented messages with control frames between
//! the fragments) that are then cut into reads anywhere and sometimes
//! damaged. The checks themselves are [`crate::fuzzing::check_decoder`]'s;
//! for valid streams the events are also compared with what was sent.

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::fuzzing::check_decoder;
use crate::ws::codec::{Event, Need, ProtocolError};

/// How a frame writes its payload length.
#[derive(Debug, Clone, Copy)]
enum LenForm {
    /// The shortest form, as RFC 6455 asks.
    Minimal,
    /// Always the 8-byte form (accepted: the decoder does not insist).
    Long,
}

#[derive(Debug, Clone)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
}

#[derive(Debug, Clone)]
enum Item {
    /// A data message sent as fragments cut at `cuts` (offsets into the
    /// payload; an empty fragment is allowed), with a control frame after
    /// some of the fragments but the last.
    Message {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<Index>,
        between: Vec<Option<Control>>,
    },
    Control(Control),
}

fn control() -> impl Strategy<Value = Control> {
    let payload = || prop::collection::vec(any::<u8>(), 0..=125);
    let code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    // A reason of at most 123 bytes: up to 30 characters of up to 4 bytes.
    let reason = "\\PC{0,30}";
    prop_oneof![
        payload().prop_map(Control::Ping),
        payload().prop_map(Control::Pong),
        prop::option::of((code, reason)).prop_map(Control::Close),
    ]
}

fn payload(text: bool) -> BoxedStrategy<Vec<u8>> {
    if text {
        prop_oneof![
            9 => "\\PC{0,120}".prop_map(String::into_bytes),
            1 => (0usize..40_000).prop_map(|n| "é€x".repeat(n / 6).into_bytes()),
        ]
        .boxed()
    } else {
        prop_oneof![
            9 => prop::collection::vec(any::<u8>(), 0..300),
            // Around the 16-bit length form's end.
            1 => (65_530usize..65_545, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        ]
        .boxed()
    }
}

fn item() -> impl Strategy<Value = Item> {
    let message = any::<bool>().prop_flat_map(|text| {
        (
            payload(text),
            prop::collection::vec(any::<Index>(), 0..5),
            prop::collection::vec(prop::option::of(control()), 0..5),
        )
            .prop_map(move |(payload, cuts, between)| Item::Message {
                text,
                payload,
                cuts,
                between,
            })
    });
    prop_oneof![3 => message, 1 => control().prop_map(Item::Control)]
}

/// A masked client frame.
fn frame(out: &mut Vec<u8>, fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4], form: LenForm) {
    out.push(if fin { 0x80 | opcode } else { opcode });
    let len = payload.len();
    match form {
        LenForm::Minimal if len < 126 => out.push(0x80 | len as u8),
        LenForm::Minimal if len <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// A valid stream as bytes, and the events (then the end) a decoder with
/// the limit `max_message` must give for it.
struct Stream {
    bytes: Vec<u8>,
    expected: Vec<Event>,
    end: Result<Need, ProtocolError>,
}

fn encode_stream(items: &[Item], max_message: usize, mask: [u8; 4], form: LenForm) -> Stream {
    let mut s = Stream {
        bytes: Vec::new(),
        expected: Vec::new(),
        end: Ok(Need::Bytes(2)),
    };
    // Once the limit is crossed nothing more is decoded; the frames are
    // still sent.
    let mut over = false;
    let control_frame = |s: &mut Stream, over: bool, c: &Control| {
        let (opcode, payload, event) = match c {
            Control::Ping(p) => (9, p.clone(), Event::Ping(Bytes::from(p.clone()))),
            Control::Pong(p) => (10, p.clone(), Event::Pong(Bytes::from(p.clone()))),
            Control::Close(None) => (8, Vec::new(), Event::Close(None, String::new())),
            Control::Close(Some((code, reason))) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                (8, p, Event::Close(Some(*code), reason.clone()))
            }
        };
        frame(&mut s.bytes, true, opcode, &payload, mask, form);
        if !over {
            s.expected.push(event);
        }
    };
    for item in items {
        match item {
            Item::Control(c) => control_frame(&mut s, over, c),
            Item::Message {
                text,
                payload,
                cuts,
                between,
            } => {
                let mut cuts: Vec<usize> =
                    cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
                cuts.sort_unstable();
                let mut from = 0;
                let mut fragments = Vec::new();
                for cut in cuts {
                    fragments.push(&payload[from..cut]);
                    from = cut;
                }
                fragments.push(&payload[from..]);
                let last = fragments.len() - 1;
                let mut so_far = 0;
                for (i, fragment) in fragments.into_iter().enumerate() {
                    let opcode = match (i, text) {
                        (0, true) => 1,
                        (0, false) => 2,
                        _ => 0,
                    };
                    frame(&mut s.bytes, i == last, opcode, fragment, mask, form);
                    so_far += fragment.len();
                    if !over && so_far > max_message {
                        over = true;
                        s.end = Err(ProtocolError::TooBig { limit: max_message });
                    }
                    if i < last {
                        if let Some(Some(c)) = between.get(i) {
                            control_frame(&mut s, over, c);
                        }
                    }
                }
                if !over {
                    let data = Bytes::from(payload.clone());
                    s.expected.push(if *text {
                        Event::Text(data)
                    } else {
                        Event::Binary(data)
                    });
                }
            }
        }
    }
    s
}

fn max_message() -> impl Strategy<Value = usize> {
    prop_oneof![1usize..=64, 64usize..=100_000]
}

/// The limit for a valid stream: any, or just around its largest message
/// (one byte less, exactly, one more), where an off-by-one would show.
#[derive(Debug, Clone)]
enum Limit {
    Any(usize),
    AroundLargest(isize),
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        max_message().prop_map(Limit::Any),
        (-1isize..=1).prop_map(Limit::AroundLargest),
    ]
}

impl Limit {
    fn of(&self, items: &[Item]) -> usize {
        match self {
            Limit::Any(n) => *n,
            Limit::AroundLargest(delta) => {
                let largest = items
                    .iter()
                    .map(|i| match i {
                        Item::Message { payload, .. } => payload.len(),
                        Item::Control(_) => 0,
                    })
                    .max()
                    .unwrap_or(0);
                largest.saturating_add_signed(*delta).max(1)
            }
        }
    }
}

fn len_form() -> impl Strategy<Value = LenForm> {
    prop_oneof![4 => Just(LenForm::Minimal), 1 => Just(LenForm::Long)]
}

fn positions(stream_len: usize, cuts: &[Index]) -> Vec<usize> {
    cuts.iter().map(|i| i.index(stream_len + 1)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_bytes_cut_anywhere_decode_the_same_and_stay_bounded(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
        max_message in max_message(),
    ) {
        check_decoder(&bytes, max_message, &positions(bytes.len(), &cuts));
    }

    /// Random bytes rarely get past the first header; these start with
    /// one that is valid, so the rest is read as payloads and frames.
    #[test]
    fn bytes_behind_a_valid_header_decode_the_same_and_stay_bounded(
        first in 0u8..3,
        fin in any::<bool>(),
        len in 0u8..=127,
        rest in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
        max_message in max_message(),
    ) {
        let mut bytes = vec![if fin { 0x80 } else { 0 } | first, 0x80 | len];
        bytes.extend(rest);
        check_decoder(&bytes, max_message, &positions(bytes.len(), &cuts));
    }

    #[test]
    fn valid_streams_cut_anywhere_give_back_what_was_sent(
        items in prop::collection::vec(item(), 0..8),
        mask in any::<[u8; 4]>(),
        form in len_form(),
        cuts in prop::collection::vec(any::<Index>(), 0..40),
        limit in limit(),
    ) {
        let max_message = limit.of(&items);
        let stream = encode_stream(&items, max_message, mask, form);
        let got = check_decoder(&stream.bytes, max_message, &positions(stream.bytes.len(), &cuts));
        prop_assert_eq!(got.events, stream.expected);
        prop_assert_eq!(got.end, stream.end);
    }

    #[test]
    fn valid_streams_with_one_byte_changed_decode_the_same_and_stay_bounded(
        items in prop::collection::vec(item(), 1..6),
        mask in any::<[u8; 4]>(),
        at in any::<Index>(),
        xor in 1u8..=255,
        cuts in prop::collection::vec(any::<Index>(), 0..40),
        max_message in max_message(),
    ) {
        let mut bytes = encode_stream(&items, max_message, mask, LenForm::Minimal).bytes;
        if !bytes.is_empty() {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        check_decoder(&bytes, max_message, &positions(bytes.len(), &cuts));
    }

    #[test]
    fn valid_streams_cut_short_wait_for_the_rest(
        items in prop::collection::vec(item(), 1..6),
        mask in any::<[u8; 4]>(),
        keep in any::<Index>(),
        limit in limit(),
    ) {
        let max_message = limit.of(&items);
        let stream = encode_stream(&items, max_message, mask, LenForm::Minimal);
        let kept = &stream.bytes[..keep.index(stream.bytes.len() + 1)];
        let got = check_decoder(kept, max_message, &[]);
        // What was decoded is a prefix of what was sent.
        prop_assert!(got.events.len() <= stream.expected.len());
        prop_assert_eq!(&got.events[..], &stream.expected[..got.events.len()]);
        if stream.end.is_ok() {
            prop_assert!(got.end.is_ok(), "a cut valid stream is no error: {:?}", got.end);
        }
    }
}
