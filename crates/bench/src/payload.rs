//! The fanout messages: what the publisher sends and how a subscriber
//! reads a delivery.
//!
//! A measured message's `data` is `{"run":R,"seq":i,"t":T,"pad":"xxx..."}`:
//! `run` tells this run's messages from any other traffic on the topic,
//! `seq` is the message number (for loss and duplicate accounting), `t` the
//! send time in microseconds since the bench started (the subscribers share
//! the clock, so delivery latency is now − t), and `pad` brings the
//! delivery frame `{"type":"message","topic":"T","data":{...}}` to the
//! requested size. Warm-up messages carry `{"run":R,"warmup":k}` instead.

use std::borrow::Cow;

use serde::Deserialize;

/// A wsgate delivery frame up to the topic name.
const FRAME_HEAD: &str = r#"{"type":"message","topic":"#;
/// A delivery frame between the topic and the data.
const FRAME_MIDDLE: &str = r#","data":"#;
/// The widest send time accounted for when sizing: 10 digits of
/// microseconds, over two hours (a run lasts one at most).
const WIDEST_T: u64 = 9_999_999_999;

/// The length of a delivery frame for `topic` whose data is `data_len`
/// bytes long.
pub fn frame_len(topic: &str, data_len: usize) -> usize {
    FRAME_HEAD.len() + topic.len() + 2 + FRAME_MIDDLE.len() + data_len + 1
}

/// A measured message's `data`, padded so that its delivery frame is
/// `size` bytes long (or as short as it can be, if `size` is smaller).
pub fn measured(run: u32, topic: &str, seq: u64, t_us: u64, size: usize) -> String {
    let bare = format!(r#"{{"run":{run},"seq":{seq},"t":{t_us},"pad":""}}"#);
    let pad = size.saturating_sub(frame_len(topic, bare.len()));
    let mut data = String::with_capacity(bare.len() + pad);
    data.push_str(&bare[..bare.len() - 2]);
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

/// A warm-up message's `data`.
pub fn warmup(run: u32, k: u64) -> String {
    format!(r#"{{"run":{run},"warmup":{k}}}"#)
}

/// The smallest `--size` that fits every message of a run of `msgs`.
pub fn min_size(topic: &str, msgs: u64) -> usize {
    let widest = measured(u32::MAX, topic, msgs.saturating_sub(1), WIDEST_T, 0);
    frame_len(topic, widest.len())
}

/// The body of `POST /api/publish`.
pub fn publish_body(topic: &str, data: &str) -> String {
    format!(r#"{{"topic":"{topic}","data":{data}}}"#)
}

/// A delivery of this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Warmup,
    Measured { seq: u64, t_us: u64 },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    run: Option<u32>,
    seq: Option<u64>,
    t: Option<u64>,
    warmup: Option<u64>,
}

/// Reads a frame: `None` for anything that is not a `message` of run
/// `run` with the bench fields (welcome, subscribed, other publishers).
pub fn parse(frame: &[u8], run: u32) -> Option<Delivery> {
    let env: Envelope = serde_json::from_slice(frame).ok()?;
    if env.kind.as_deref() != Some("message") {
        return None;
    }
    let data = env.data?;
    if data.run != Some(run) {
        return None;
    }
    match (data.seq, data.t, data.warmup) {
        (Some(seq), Some(t_us), _) => Some(Delivery::Measured { seq, t_us }),
        (_, _, Some(_)) => Some(Delivery::Warmup),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame wsgate builds for a publish.
    fn delivered(topic: &str, data: &str) -> String {
        format!(r#"{{"type":"message","topic":"{topic}","data":{data}}}"#)
    }

    #[test]
    fn measured_frames_have_the_requested_size() {
        for size in [120, 256, 1000, 4096] {
            let data = measured(7, "bench", 42, 123_456, size);
            assert_eq!(delivered("bench", &data).len(), size, "{data}");
            assert_eq!(frame_len("bench", data.len()), size);
            serde_json::from_str::<serde_json::Value>(&data).expect("JSON");
        }
        // Too small: as short as possible, still valid.
        let data = measured(7, "bench", 42, 123_456, 10);
        assert!(data.ends_with(r#""pad":""}"#), "{data}");
    }

    #[test]
    fn min_size_fits_the_widest_message() {
        let min = min_size("bench", 1_000_000);
        let widest = measured(u32::MAX, "bench", 999_999, WIDEST_T, min);
        assert_eq!(delivered("bench", &widest).len(), min);
        assert!(min < 256, "{min}");
        assert!(min_size("a.much.longer.topic.name", 10) > min_size("b", 10));
    }

    #[test]
    fn parses_deliveries_of_this_run_only() {
        let frame = delivered("bench", &measured(7, "bench", 3, 99, 200));
        assert_eq!(
            parse(frame.as_bytes(), 7),
            Some(Delivery::Measured { seq: 3, t_us: 99 })
        );
        assert_eq!(parse(frame.as_bytes(), 8), None, "another run");
        let warm = delivered("bench", &warmup(7, 0));
        assert_eq!(parse(warm.as_bytes(), 7), Some(Delivery::Warmup));
        for other in [
            r#"{"type":"welcome","id":"1","user":null}"#,
            r#"{"type":"subscribed","topics":["bench"]}"#,
            r#"{"type":"message","topic":"bench","data":{"seq":1,"t":2}}"#,
            r#"{"type":"message","topic":"bench","data":{"run":7}}"#,
            r#"{"type":"message","topic":"bench","data":"text"}"#,
            r#"{"type":"published","data":{"run":7,"seq":1,"t":2}}"#,
            r#"{"data":{"run":7,"seq":1,"t":2}}"#,
            "not json",
        ] {
            assert_eq!(parse(other.as_bytes(), 7), None, "{other}");
        }
    }

    #[test]
    fn publish_bodies_are_json() {
        let body = publish_body("bench", &warmup(1, 2));
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["topic"], "bench");
        assert_eq!(v["data"]["warmup"], 2);
    }
}
