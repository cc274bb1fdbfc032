//! Topic names: the rule every published or subscribed topic must follow.

/// The longest topic name, in bytes (a protocol rule, not a tunable limit).
pub const MAX_TOPIC_LEN: usize = 256;

/// Checks a concrete topic name (as published or subscribed): non-empty,
/// at most [`MAX_TOPIC_LEN`] bytes, `.`-separated non-empty segments, and no
/// `*`, `>`, whitespace or control characters (those belong to patterns).
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("a topic must not be empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!("a topic must be at most {MAX_TOPIC_LEN} bytes"));
    }
    if topic.split('.').any(str::is_empty) {
        return Err("a topic must not have an empty segment".into());
    }
    if topic
        .chars()
        .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
    {
        return Err("a topic must not contain `*`, `>`, whitespace or control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_checked() {
        assert!(check_topic("a.b-c_d").is_ok());
        for bad in [
            "",
            "a..b",
            "a.*",
            "a b",
            "x>",
            &"a".repeat(MAX_TOPIC_LEN + 1),
        ] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }
}
