//! `OptionsError`: a mistake in a plugin's options, reported with the config error.

use crate::Table;

/// An error in a plugin's options, reported with the config error.
///
/// `path` is the key path inside the plugin's table (e.g. `tokens_file`),
/// which the daemon prefixes with the table's own path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    pub path: Option<String>,
    pub message: String,
}

impl OptionsError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: None,
            message: message.into(),
        }
    }

    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: Some(path.into()),
            message: message.into(),
        }
    }

    /// Deserialises a plugin's option table into its typed options.
    ///
    /// Use `#[serde(deny_unknown_fields)]` on `T`: an unknown key is then an
    /// error with its name in the message.
    pub fn parse<T: serde::de::DeserializeOwned>(options: &Table) -> Result<T, OptionsError> {
        serde_path_to_error::deserialize(toml::Value::Table(options.clone())).map_err(|e| {
            let path = e.path().to_string();
            OptionsError {
                path: (path != ".").then_some(path),
                message: e.into_inner().message().trim().to_string(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_errors_carry_the_key_path() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Opts {
            inner: Inner,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Inner {
            n: u32,
        }
        let table: Table = "inner = { n = \"x\" }".parse().expect("toml");
        let err = OptionsError::parse::<Opts>(&table).expect_err("wrong type");
        assert_eq!(err.path.as_deref(), Some("inner.n"));
    }
}
