//! Reading and parsing the config file, with precise errors.
//!
//! Every error names the file, the line and column, and the key path
//! (`routes[1].limits.max_connections`), whether it comes from TOML syntax,
//! from the schema (a wrong type, an unknown key) or from validation (a route
//! naming an auth instance that does not exist).

use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::Serialize;
use toml::de::{DeTable, DeValue};

use super::schema::Config;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// The key path, e.g. `limits.send_queue`; empty for a syntax error.
    pub path: String,
    pub message: String,
    /// 1-based; absent when the key is not in the file (a missing key).
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// Everything wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ConfigError {
    /// The file, as given; `<built-in>` for the defaults.
    pub file: String,
    pub issues: Vec<Issue>,
}

impl ConfigError {
    /// One error that has no place in the file (e.g. it cannot be read).
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            issues: vec![Issue {
                path: String::new(),
                message: message.into(),
                line: None,
                column: None,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let (Some(line), Some(column)) = (issue.line, issue.column) {
                write!(f, ":{line}:{column}")?;
            }
            if issue.path.is_empty() {
                write!(f, ": {}", issue.message)?;
            } else {
                write!(f, ": {}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

/// The text of a config file, kept for locating keys in error messages.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::whole_file(&file, format!("cannot read: {e}")))?;
        Ok(Self { file, text })
    }

    /// Parses the text against the schema. A syntax error stops there; a
    /// schema error (a wrong type, an unknown key) does not hide the ones
    /// after it: the offending key is set aside and the rest parsed again,
    /// up to [`MAX_SCHEMA_ISSUES`] errors, all in file order.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::parse(&self.text)
            .map_err(|e| self.error_at_span("", e.message().trim().to_string(), e.span()))?;
        let first = match serde_path_to_error::deserialize(deserializer) {
            Ok(config) => return Ok(config),
            Err(e) => e,
        };
        let path = shown_path(first.path());
        let inner = first.into_inner();
        let message = plain_message(inner.message());
        // A span from the deserializer points at the offending value;
        // without one, look the key path up.
        let mut issues = vec![match inner.span() {
            Some(span) => self.issue_at_span(&path, message, span),
            None => self.issue(&path, message),
        }];
        // The text parsed, so it is a table; parse it again without each
        // offending key to find the next error.
        if let Ok(mut rest) = self.text.parse::<toml::Table>() {
            let mut seen = vec![path.clone()];
            let mut last = path;
            while issues.len() < MAX_SCHEMA_ISSUES && remove_path(&mut rest, &last) {
                let again = toml::Value::Table(rest.clone());
                match serde_path_to_error::deserialize::<_, Config>(again) {
                    Ok(_) => break,
                    Err(e) => {
                        let path = shown_path(e.path());
                        if seen.contains(&path) {
                            break;
                        }
                        let message = plain_message(e.into_inner().message());
                        issues.push(if message.starts_with("unknown key") {
                            self.issue_at_key(&path, message)
                        } else {
                            self.issue(&path, message)
                        });
                        seen.push(path.clone());
                        last = path;
                    }
                }
            }
        }
        Err(self.error(issues))
    }

    /// Whether the file sets this key (a dotted path of plain keys).
    pub fn has_key(&self, path: &str) -> bool {
        let Ok(doc) = self.text.parse::<toml::Table>() else {
            return false;
        };
        let mut keys = path.split('.');
        let Some(first) = keys.next() else {
            return false;
        };
        let mut value = doc.get(first);
        for key in keys {
            value = value.and_then(|v| v.get(key));
        }
        value.is_some()
    }

    /// An issue about the key itself (not its value) at a key path.
    pub fn issue_at_key(&self, path: &str, message: impl Into<String>) -> Issue {
        match locate_spans(&self.text, path) {
            Some((key, _)) => self.issue_at_span(path, message.into(), key),
            None => self.issue(path, message),
        }
    }

    /// An issue at a key path, located in the text when the key is there.
    pub fn issue(&self, path: &str, message: impl Into<String>) -> Issue {
        let at = locate(&self.text, path).map(|span| line_column(&self.text, span.start));
        Issue {
            path: path.to_string(),
            message: message.into(),
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
        }
    }

    /// The error of these issues, in file order (issues with no place in
    /// the file last).
    pub fn error(&self, mut issues: Vec<Issue>) -> ConfigError {
        issues.sort_by_key(|i| (i.line.is_none(), i.line, i.column));
        ConfigError {
            file: self.file.clone(),
            issues,
        }
    }

    fn issue_at_span(&self, path: &str, message: String, span: Range<usize>) -> Issue {
        let (line, column) = line_column(&self.text, span.start);
        Issue {
            path: path.to_string(),
            message,
            line: Some(line),
            column: Some(column),
        }
    }

    fn error_at_span(
        &self,
        path: &str,
        message: String,
        span: Option<Range<usize>>,
    ) -> ConfigError {
        let issue = match span {
            Some(span) => self.issue_at_span(path, message, span),
            None => Issue {
                path: path.to_string(),
                message,
                line: None,
                column: None,
            },
        };
        self.error(vec![issue])
    }
}

/// Most schema errors listed for one file; past them, the file needs
/// fixing first.
pub const MAX_SCHEMA_ISSUES: usize = 20;

/// A key path as errors show it (empty for the whole file).
fn shown_path(path: &serde_path_to_error::Path) -> String {
    let path = path.to_string();
    if path == "." {
        String::new()
    } else {
        path
    }
}

/// Takes the key at `path` out of `table`; `false` if there is none, or if
/// it is an array element (taking it out would renumber the ones after it,
/// and their errors would name the wrong index).
fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    remove_in_table(table, &segments(path))
}

fn remove_in_table(table: &mut toml::Table, segs: &[Segment<'_>]) -> bool {
    match segs {
        [Segment::Key(k)] => table.remove(*k).is_some(),
        [Segment::Key(k), rest @ ..] => table.get_mut(*k).is_some_and(|v| remove_in_value(v, rest)),
        _ => false,
    }
}

fn remove_in_value(value: &mut toml::Value, segs: &[Segment<'_>]) -> bool {
    match (value, segs) {
        (toml::Value::Table(t), _) => remove_in_table(t, segs),
        (toml::Value::Array(a), [Segment::Index(i), rest @ ..]) if !rest.is_empty() => {
            a.get_mut(*i).is_some_and(|v| remove_in_value(v, rest))
        }
        _ => false,
    }
}

/// A serde message in the words of the config file: integer types are
/// "a non-negative integer" (with its largest value where it is small),
/// and an unknown key names the nearest known one.
fn plain_message(message: &str) -> String {
    let message = message.trim();
    if let Some(unknown) = unknown_key(message) {
        return unknown;
    }
    let mut out = message.to_string();
    for (rust, plain) in [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        (
            "expected u32",
            "expected a non-negative integer up to 4294967295",
        ),
        (
            "expected u16",
            "expected a non-negative integer up to 65535",
        ),
        ("expected u8", "expected a non-negative integer up to 255"),
        ("expected i64", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
    ] {
        if let Some(at) = out.find(rust) {
            // Only whole words: `expected u32` but not `expected u320`.
            let end = at + rust.len();
            if !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                out.replace_range(at..end, plain);
            }
        }
    }
    out
}

/// `unknown field `x`, expected one of `a`, `b`` (or `expected `a``) as
/// "unknown key `x`, did you mean `a`?" when one is close, else with the
/// keys listed.
fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|k| !k.is_empty())
        .collect();
    if known.is_empty() {
        return Some(format!("unknown key `{key}`: this table takes no keys"));
    }
    let nearest = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .min_by_key(|(d, _)| *d);
    // Close: a few edits, fewer than a third of the key's length.
    let close = |d: usize| d <= 3 && d * 3 <= key.chars().count().max(3);
    Some(match nearest {
        Some((d, k)) if close(d) => format!("unknown key `{key}`, did you mean `{k}`?"),
        _ => format!(
            "unknown key `{key}` (known keys: {})",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `routes[1].limits.x` into segments.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((index, tail)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Segment::Index(i));
            }
            rest = tail.strip_prefix('[').unwrap_or(tail);
        }
    }
    out
}

/// The span of the value at a key path, or of the deepest part of the path
/// that exists (so a missing key points at its table).
///
/// Paths are written as `routes[1].limits.x`, with keys unquoted, so a key
/// may itself hold `.` or `[` (`[auth."a.b"]` is the path `auth.a.b`): at
/// each table the longest key that the rest of the path continues with is
/// taken.
fn locate(text: &str, path: &str) -> Option<Range<usize>> {
    locate_spans(text, path).map(|(_, value)| value)
}

/// The spans of the key and of the value at a key path (for an array
/// element or a missing key, both are the value's, as in [`locate`]).
fn locate_spans(text: &str, path: &str) -> Option<(Range<usize>, Range<usize>)> {
    let doc = DeTable::parse(text).ok()?;
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut best: Option<(Range<usize>, Range<usize>)> = None;
    let mut rest = path;
    loop {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            break;
        }
        let table = match value.map(|v| v.get_ref()) {
            None => Some(doc.get_ref()),
            Some(DeValue::Table(t)) => Some(t),
            _ => None,
        };
        let key = table.and_then(|t| {
            t.iter()
                .map(|(key, v)| (key.get_ref().as_ref(), key.span(), v))
                .filter(|(key, _, _)| {
                    rest.strip_prefix(*key).is_some_and(|after| {
                        after.is_empty() || after.starts_with('.') || after.starts_with('[')
                    })
                })
                .max_by_key(|(key, _, _)| key.len())
        });
        let next = match (key, value.map(|v| v.get_ref())) {
            (Some((key, span, v)), _) => {
                rest = &rest[key.len()..];
                Some((Some(span), v))
            }
            (None, Some(DeValue::Array(a))) => {
                let (index, tail) = rest.strip_prefix('[')?.split_once(']')?;
                rest = tail;
                index
                    .parse()
                    .ok()
                    .and_then(|i: usize| a.get(i))
                    .map(|v| (None, v))
            }
            _ => None,
        };
        match next {
            Some((key, v)) => {
                best = Some((key.unwrap_or_else(|| v.span()), v.span()));
                value = Some(v);
            }
            None => break,
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            file: "test.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = source("[limits]\nmax_connections = = 3\n")
            .parse()
            .expect_err("must fail");
        let issue = &err.issues[0];
        assert_eq!(issue.line, Some(2));
        assert!(err.to_string().starts_with("test.toml:2:"), "{err}");
    }

    #[test]
    fn unknown_key_names_its_path_and_place() {
        let err = source("[limits]\nmax_conections = 3\n")
            .parse()
            .expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("max_conections"), "{text}");
        assert_eq!(err.issues[0].line, Some(2), "{text}");
    }

    #[test]
    fn wrong_type_in_a_route_names_the_route() {
        let err = source(
            "[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n\n[[routes]]\npath = \"/b\"\nrouter = \"echo\"\n[routes.limits]\nsend_queue = \"many\"\n",
        )
        .parse()
        .expect_err("must fail");
        let issue = &err.issues[0];
        assert_eq!(issue.path, "routes[1].limits.send_queue", "{err}");
        assert_eq!(issue.line, Some(9), "{err}");
    }

    #[test]
    fn bad_duration_is_reported_at_its_key() {
        let err = source("[limits]\nidle_timeout = \"soon\"\n")
            .parse()
            .expect_err("must fail");
        assert_eq!(err.issues[0].path, "limits.idle_timeout", "{err}");
        assert_eq!(err.issues[0].line, Some(2), "{err}");
    }

    #[test]
    fn locate_finds_nested_keys_and_falls_back_to_the_table() {
        let text = "[server]\nlisten = \"x\"\n\n[[routes]]\npath = \"/a\"\nrouter = \"r\"\n";
        let s = source(text);
        assert_eq!(s.issue("routes[0].router", "m").line, Some(6));
        assert_eq!(s.issue("server.listen", "m").line, Some(2));
        // A key that is not written points at its table's header.
        assert_eq!(s.issue("routes[0].auth", "m").line, Some(4));
    }

    #[test]
    fn schema_errors_are_all_listed_in_file_order_in_plain_words() {
        let err = source(concat!(
            "[server]\n",
            "admin_output_queue = -1\n",
            "\n",
            "[limits]\n",
            "max_conections = 3\n",
            "send_queue = \"many\"\n",
            "messages_per_second = 5000000000\n",
            "[[routes]]\npath = \"/a\"\nrouter = \"echo\"\n",
            "[routes.limits]\nmax_connection = 1\n",
        ))
        .parse()
        .expect_err("must fail");
        let lines: Vec<String> = err.to_string().lines().map(str::to_string).collect();
        assert_eq!(
            lines,
            [
                "test.toml:2:22: server.admin_output_queue: invalid value: integer `-1`, expected a non-negative integer",
                "test.toml:5:1: limits.max_conections: unknown key `max_conections`, did you mean `max_connections`?",
                "test.toml:6:14: limits.send_queue: invalid type: string \"many\", expected a non-negative integer",
                "test.toml:7:23: limits.messages_per_second: invalid value: integer `5000000000`, expected a non-negative integer up to 4294967295",
                "test.toml:12:1: routes[0].limits.max_connection: unknown key `max_connection`, did you mean `max_connections`?",
            ],
            "{err}"
        );
    }

    #[test]
    fn a_far_unknown_key_lists_the_known_ones() {
        let err = source("[api]\nsecret = 1\n")
            .parse()
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "test.toml:2:1: api.secret: unknown key `secret` (known keys: `keys`, `keys_file`, `keys_env`)"
        );
        assert_eq!(
            unknown_key("unknown field `pth`, expected one of `path`, `router`, `auth`"),
            Some("unknown key `pth`, did you mean `path`?".to_string())
        );
        assert_eq!(
            plain_message("invalid type: string \"x\", expected u320"),
            "invalid type: string \"x\", expected u320"
        );
    }

    #[test]
    fn locate_finds_keys_that_hold_dots_and_brackets() {
        let text = "[auth.\"a.b\"]\nplugin = \"nope\"\n\n[auth.\"x[0]\"]\nplugin = \"token\"\ntokens = 3\n";
        let s = source(text);
        assert_eq!(s.issue("auth.a.b.plugin", "m").line, Some(2));
        assert_eq!(s.issue("auth.x[0].tokens", "m").line, Some(6));
        // The longest key wins over a shorter one it starts with.
        let s = source("[auth.a]\nplugin = 1\n[auth.\"a.b\"]\nplugin = 2\n");
        assert_eq!(s.issue("auth.a.b.plugin", "m").line, Some(4));
        assert_eq!(s.issue("auth.a.plugin", "m").line, Some(2));
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let config = source("").parse().expect("valid");
        assert_eq!(config.routes.len(), 2);
    }
}
