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

    /// Parses the text against the schema.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::parse(&self.text)
            .map_err(|e| self.error_at_span("", e.message().trim().to_string(), e.span()))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let inner = e.into_inner();
            let message = inner.message().trim().to_string();
            // A span from the deserializer points at the offending value;
            // without one, look the key path up.
            match inner.span() {
                Some(span) => self.error_at_span(&path, message, Some(span)),
                None => self.error(vec![self.issue(&path, message)]),
            }
        })
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

    pub fn error(&self, issues: Vec<Issue>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            issues,
        }
    }

    fn error_at_span(
        &self,
        path: &str,
        message: String,
        span: Option<Range<usize>>,
    ) -> ConfigError {
        let at = span.map(|s| line_column(&self.text, s.start));
        self.error(vec![Issue {
            path: path.to_string(),
            message,
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
        }])
    }
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

/// The span of the value at a key path, or of the deepest part of the path
/// that exists (so a missing key points at its table).
///
/// Paths are written as `routes[1].limits.x`, with keys unquoted, so a key
/// may itself hold `.` or `[` (`[auth."a.b"]` is the path `auth.a.b`): at
/// each table the longest key that the rest of the path continues with is
/// taken.
fn locate(text: &str, path: &str) -> Option<Range<usize>> {
    let doc = DeTable::parse(text).ok()?;
    let mut value: Option<&toml::Spanned<DeValue<'_>>> = None;
    let mut best: Option<Range<usize>> = None;
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
                .map(|(key, v)| (key.get_ref().as_ref(), v))
                .filter(|(key, _)| {
                    rest.strip_prefix(*key).is_some_and(|after| {
                        after.is_empty() || after.starts_with('.') || after.starts_with('[')
                    })
                })
                .max_by_key(|(key, _)| key.len())
        });
        let next = match (key, value.map(|v| v.get_ref())) {
            (Some((key, v)), _) => {
                rest = &rest[key.len()..];
                Some(v)
            }
            (None, Some(DeValue::Array(a))) => {
                let (index, tail) = rest.strip_prefix('[')?.split_once(']')?;
                rest = tail;
                index.parse().ok().and_then(|i: usize| a.get(i))
            }
            _ => None,
        };
        match next {
            Some(v) => {
                best = Some(v.span());
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
