//! Topic permission patterns (`*`, `>`, `{user}`), as written in `subscribe` and `publish`.

use wsgate_plugin_api::OptionsError;

/// One parsed `subscribe` or `publish` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// The lone `*`: every topic.
    Any,
    /// Segment by segment; `tail` is a trailing `>` (one or more segments).
    Segments {
        segments: Box<[Segment]>,
        tail: bool,
    },
}

/// One `.`-separated segment of a pattern (a trailing `>` is not one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Matches itself.
    Literal(Box<str>),
    /// `*`: exactly one segment.
    One,
    /// A segment with `{user}` in it, e.g. `{user}` or `user-{user}`.
    Template(Box<[Piece]>),
}

/// A part of a templated segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Text(Box<str>),
    /// `{user}`: the connection's user id.
    User,
}

/// The one placeholder.
const USER: &str = "{user}";

impl Pattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("a pattern must not be empty".into());
        }
        if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "pattern `{}` contains whitespace or a control character",
                pattern.escape_debug()
            ));
        }
        if pattern == "*" {
            return Ok(Pattern::Any);
        }
        let parts: Vec<&str> = pattern.split('.').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut tail = false;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match *part {
                "" => return Err(format!("pattern `{pattern}` has an empty segment")),
                "*" => segments.push(Segment::One),
                ">" if last => tail = true,
                ">" => {
                    return Err(format!(
                        "pattern `{pattern}`: `>` is only allowed as the last segment"
                    ))
                }
                part if part.contains(['*', '>']) => {
                    return Err(format!(
                        "pattern `{pattern}`: `*` and `>` must be a whole segment"
                    ))
                }
                part => segments.push(Segment::parse(pattern, part)?),
            }
        }
        Ok(Pattern::Segments {
            segments: segments.into_boxed_slice(),
            tail,
        })
    }

    /// Whether `topic` (already validated) matches for the user `user`.
    pub(crate) fn matches(&self, topic: &str, user: Option<&str>) -> bool {
        let (segments, tail) = match self {
            Pattern::Any => return true,
            Pattern::Segments { segments, tail } => (segments, *tail),
        };
        let mut parts = topic.split('.');
        for segment in segments.iter() {
            match parts.next() {
                Some(part) if segment.matches(part, user) => {}
                _ => return false,
            }
        }
        // `>` wants at least one more segment; otherwise there must be none.
        parts.next().is_some() == tail
    }
}

impl Segment {
    fn parse(pattern: &str, part: &str) -> Result<Self, String> {
        if !part.contains(['{', '}']) {
            return Ok(Segment::Literal(part.into()));
        }
        let mut pieces = Vec::new();
        let mut rest = part;
        while let Some(at) = rest.find(USER) {
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].into()));
            }
            pieces.push(Piece::User);
            rest = &rest[at + USER.len()..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.into()));
        }
        let stray = pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if t.contains(['{', '}'])));
        if stray {
            return Err(format!(
                "pattern `{pattern}`: `{{user}}` is the only placeholder; `{{` and `}}` are not allowed elsewhere"
            ));
        }
        Ok(Segment::Template(pieces.into_boxed_slice()))
    }

    fn matches(&self, part: &str, user: Option<&str>) -> bool {
        match self {
            Segment::Literal(literal) => **literal == *part,
            Segment::One => true,
            Segment::Template(pieces) => {
                let mut rest = part;
                for piece in pieces.iter() {
                    let want = match piece {
                        Piece::Text(text) => &**text,
                        // An empty user id is treated as anonymous.
                        Piece::User => match user {
                            Some(user) if !user.is_empty() => user,
                            _ => return false,
                        },
                    };
                    match rest.strip_prefix(want) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                rest.is_empty()
            }
        }
    }
}

/// Parses the patterns of option `key`; an error names the pattern by its
/// index, e.g. `subscribe[0]`.
pub(crate) fn parse_patterns(
    key: &str,
    patterns: &[String],
) -> Result<Box<[Pattern]>, OptionsError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| Pattern::parse(p).map_err(|m| OptionsError::at(format!("{key}[{i}]"), m)))
        .collect()
}
