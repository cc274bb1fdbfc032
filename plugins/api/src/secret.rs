//! Secrets in plugin options: read from exactly one of an environment variable, a file or the config.
//!
//! A plugin that needs a secret takes three options named after one key,
//! here `secret`:
//!
//! ```toml
//! secret_env = "WSGATE_JWT_SECRET"     # an environment variable
//! # secret_file = "/etc/wsgate/jwt.key"  # a file; trailing newlines are cut
//! # secret = "..."                       # inline: discouraged
//! ```
//!
//! and reads them with [`SecretSource::load`] in its factory's `build`, so
//! that a missing or empty secret is a config error:
//!
//! ```
//! use std::path::PathBuf;
//! use serde::Deserialize;
//! use wsgate_plugin_api::secret::{Secret, SecretSource};
//! use wsgate_plugin_api::{OptionsError, Table};
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Options {
//!     secret_env: Option<String>,
//!     secret_file: Option<PathBuf>,
//!     // A raw value: a typed field would quote a wrongly typed secret in
//!     // the error.
//!     secret: Option<toml::Value>,
//! }
//!
//! fn secret(options: &Table) -> Result<Secret, OptionsError> {
//!     let options: Options = OptionsError::parse(options)?;
//!     SecretSource {
//!         env: options.secret_env,
//!         file: options.secret_file,
//!         inline: options.secret,
//!     }
//!     .load("secret")
//! }
//!
//! let err = secret(&Table::new()).unwrap_err();
//! assert_eq!(
//!     err.message,
//!     "a secret is required: set one of secret_env, secret_file or secret"
//! );
//! let key = secret(&"secret = \"s3cr3t\"".parse().unwrap()).unwrap();
//! assert_eq!(key.expose(), b"s3cr3t");
//! assert_eq!(format!("{key:?}"), "Secret(<redacted>)");
//! ```
//!
//! Errors name the option, the variable or the file, never the secret.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::OptionsError;

/// A secret's bytes. `Debug` does not show them; [`Secret::expose`] does.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret itself. Never log it or put it in an error.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret is configured: the values of the `<key>_env`,
/// `<key>_file` and `<key>` options, of which exactly one must be set.
///
/// `inline` is a raw TOML value so that a wrong type is reported without
/// quoting it. `Debug` shows the variable and the file, not the inline value.
#[derive(Clone, Default)]
pub struct SecretSource {
    /// `<key>_env`: the name of an environment variable holding the secret.
    pub env: Option<String>,
    /// `<key>_file`: a file holding the secret; trailing `\n` and `\r` are
    /// cut.
    pub file: Option<PathBuf>,
    /// `<key>`: the secret itself, which must be a string.
    pub inline: Option<toml::Value>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSource")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SecretSource {
    /// For a secret that may be left out: `None` when no source is set,
    /// else [`SecretSource::load`].
    pub fn load_optional(&self, key: &str) -> Result<Option<Secret>, OptionsError> {
        if self.env.is_none() && self.file.is_none() && self.inline.is_none() {
            return Ok(None);
        }
        self.load(key).map(Some)
    }

    /// Reads the secret from the one source that is set. `key` names the
    /// options in errors: `secret` stands for `secret_env`, `secret_file`
    /// and `secret`. An empty secret is an error.
    pub fn load(&self, key: &str) -> Result<Secret, OptionsError> {
        let env_key = format!("{key}_env");
        let file_key = format!("{key}_file");
        let set = [
            self.env.is_some(),
            self.file.is_some(),
            self.inline.is_some(),
        ];
        match set.iter().filter(|set| **set).count() {
            0 => {
                return Err(OptionsError::new(format!(
                    "a secret is required: set one of {env_key}, {file_key} or {key}"
                )))
            }
            1 => {}
            _ => {
                return Err(OptionsError::new(format!(
                    "{env_key}, {file_key} and {key} are exclusive: set only one"
                )))
            }
        }

        if let Some(var) = &self.env {
            return from_env(&env_key, var);
        }
        if let Some(path) = &self.file {
            return from_file(&file_key, path);
        }
        match self.inline.as_ref().map(toml::Value::as_str) {
            Some(Some(secret)) if !secret.is_empty() => Ok(Secret(secret.as_bytes().to_vec())),
            Some(Some(_)) => Err(OptionsError::at(key, "must not be empty")),
            // A wrong type: say so without showing the value.
            _ => Err(OptionsError::at(key, "must be a string")),
        }
    }
}

fn from_env(key: &str, var: &str) -> Result<Secret, OptionsError> {
    if var.is_empty() || var.contains(['=', '\0']) {
        return Err(OptionsError::at(
            key,
            "must be the name of an environment variable",
        ));
    }
    // `VarError::NotUnicode`'s text contains the value: never show it.
    match std::env::var(var) {
        Ok(secret) if secret.is_empty() => Err(OptionsError::at(
            key,
            format!("environment variable {var} is empty"),
        )),
        Ok(secret) => Ok(Secret(secret.into_bytes())),
        Err(std::env::VarError::NotPresent) => Err(OptionsError::at(
            key,
            format!("environment variable {var} is not set"),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(OptionsError::at(
            key,
            format!("environment variable {var} is not valid UTF-8"),
        )),
    }
}

fn from_file(key: &str, path: &Path) -> Result<Secret, OptionsError> {
    // An I/O error's text names neither the file's contents nor its path.
    let mut secret = std::fs::read(path)
        .map_err(|e| OptionsError::at(key, format!("cannot read {}: {e}", path.display())))?;
    while matches!(secret.last(), Some(b'\n' | b'\r')) {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(OptionsError::at(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2-but-longer-0123456789";

    /// A variable name no other test (or process) uses.
    fn env_name(tag: &str) -> String {
        format!("WSGATE_PLUGIN_API_SECRET_TEST_{tag}_{}", std::process::id())
    }

    fn env(var: &str) -> SecretSource {
        SecretSource {
            env: Some(var.to_string()),
            ..SecretSource::default()
        }
    }

    fn file(path: &Path) -> SecretSource {
        SecretSource {
            file: Some(path.to_path_buf()),
            ..SecretSource::default()
        }
    }

    fn inline(value: toml::Value) -> SecretSource {
        SecretSource {
            inline: Some(value),
            ..SecretSource::default()
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    fn load_err(source: &SecretSource, key: &str) -> OptionsError {
        let err = source.load(key).expect_err("the secret was loaded");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
        err
    }

    #[test]
    fn none_set_is_an_error_naming_all_three_keys() {
        let err = load_err(&SecretSource::default(), "api_key");
        assert_eq!(err.path, None);
        assert_eq!(
            err.message,
            "a secret is required: set one of api_key_env, api_key_file or api_key"
        );
    }

    #[test]
    fn two_set_is_an_error_without_the_secret() {
        let source = SecretSource {
            env: Some(env_name("TWO")),
            inline: Some(SECRET.into()),
            ..SecretSource::default()
        };
        let err = load_err(&source, "secret");
        assert_eq!(
            err.message,
            "secret_env, secret_file and secret are exclusive: set only one"
        );
        let source = SecretSource {
            file: Some("/nonexistent".into()),
            inline: Some(SECRET.into()),
            ..SecretSource::default()
        };
        assert!(load_err(&source, "secret").message.contains("exclusive"));
    }

    #[test]
    fn from_the_environment() {
        let var = env_name("OK");
        std::env::set_var(&var, SECRET);
        let secret = env(&var).load("secret").expect("loaded");
        std::env::remove_var(&var);
        assert_eq!(secret.expose(), SECRET.as_bytes());
    }

    #[test]
    fn missing_or_empty_variable_is_named() {
        let var = env_name("MISSING");
        std::env::remove_var(&var);
        let err = load_err(&env(&var), "token");
        assert_eq!(err.path.as_deref(), Some("token_env"));
        assert_eq!(
            err.message,
            format!("environment variable {var} is not set")
        );

        let var = env_name("EMPTY");
        std::env::set_var(&var, "");
        let err = load_err(&env(&var), "token");
        std::env::remove_var(&var);
        assert_eq!(err.path.as_deref(), Some("token_env"));
        assert_eq!(err.message, format!("environment variable {var} is empty"));

        for bad in ["", "A=B", "A\0B"] {
            let err = load_err(&env(bad), "token");
            assert_eq!(err.path.as_deref(), Some("token_env"));
            assert_eq!(err.message, "must be the name of an environment variable");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_variable_that_is_not_utf8_is_not_shown() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let var = env_name("NOT_UTF8");
        let mut value = SECRET.as_bytes().to_vec();
        value.push(0xff);
        std::env::set_var(&var, OsStr::from_bytes(&value));
        let err = load_err(&env(&var), "secret");
        std::env::remove_var(&var);
        assert_eq!(
            err.message,
            format!("environment variable {var} is not valid UTF-8")
        );
    }

    #[test]
    fn from_a_file_with_trailing_newlines_cut() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path(), "key", &format!("{SECRET}\r\n\n"));
        let secret = file(&path).load("secret").expect("loaded");
        assert_eq!(secret.expose(), SECRET.as_bytes());

        // Only the end is trimmed: inner newlines and spaces are the secret's.
        let path = write(dir.path(), "inner", " a\nb ");
        assert_eq!(
            file(&path).load("secret").expect("loaded").expose(),
            b" a\nb "
        );
    }

    #[test]
    fn missing_or_empty_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let absent = dir.path().join("absent");
        let err = load_err(&file(&absent), "secret");
        assert_eq!(err.path.as_deref(), Some("secret_file"));
        assert!(
            err.message
                .starts_with(&format!("cannot read {}: ", absent.display())),
            "{}",
            err.message
        );

        let empty = write(dir.path(), "empty", "\r\n");
        let err = load_err(&file(&empty), "secret");
        assert_eq!(err.path.as_deref(), Some("secret_file"));
        assert_eq!(err.message, format!("{} is empty", empty.display()));
    }

    #[test]
    fn inline_must_be_a_non_empty_string_and_is_never_quoted() {
        let secret = inline(SECRET.into()).load("secret").expect("loaded");
        assert_eq!(secret.expose(), SECRET.as_bytes());

        let err = load_err(&inline("".into()), "secret");
        assert_eq!(err.path.as_deref(), Some("secret"));
        assert_eq!(err.message, "must not be empty");

        let wrong = [
            toml::Value::Integer(918_273_645),
            toml::Value::Array(vec![SECRET.into()]),
            toml::Value::Table(format!("k = \"{SECRET}\"").parse().expect("TOML")),
        ];
        for value in wrong {
            let err = load_err(&inline(value), "secret");
            assert_eq!(err.path.as_deref(), Some("secret"));
            assert_eq!(err.message, "must be a string");
            assert!(!format!("{err:?}").contains("918273645"), "{err:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = inline(SECRET.into()).load("secret").expect("loaded");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        let source = SecretSource {
            env: Some("VAR".into()),
            inline: Some(SECRET.into()),
            ..SecretSource::default()
        };
        let debug = format!("{source:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(
            debug.contains("VAR") && debug.contains("<redacted>"),
            "{debug}"
        );
    }
}
