//! The `token` authenticator: static bearer tokens, each mapped to a user.
//!
//! The client presents its token as `Authorization: Bearer <token>` or, for
//! browsers (which cannot set headers on a WebSocket), as the `access_token`
//! query parameter. A known token authenticates the connection as its user;
//! anything else is refused with 401 before the upgrade.
//!
//! # Options
//!
//! ```toml
//! [auth.api]
//! plugin = "token"
//! # Inline tokens: "<token>" = "<user>". Prefer tokens_file, so the secrets
//! # stay out of the main config.
//! tokens = { "s3cr3t-alice" = "alice" }
//! # One `<token> <user>` pair per line, separated by whitespace. Blank
//! # lines and lines starting with `#` are ignored.
//! tokens_file = "/etc/wsgate/tokens"
//! ```
//!
//! Both keys may be used together; at least one token must be configured
//! overall, and a token may appear only once across both sources. The file is
//! read when the config is loaded, so an unreadable or malformed file is a
//! config error (naming the file and line, never the token).
//!
//! Tokens are compared in constant time, against every configured token, so
//! neither the timing nor the error tells which part of a token was right.
//! Tokens never appear in errors, `Debug` output or logs.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use wsgate_plugin_api::{
    AuthPlugin, Authenticator, BoxFuture, Identity, OptionsError, Rejection, Table, UpgradeRequest,
};

/// The factory, registered as `token`.
pub struct Plugin;

impl AuthPlugin for Plugin {
    fn name(&self) -> &'static str {
        "token"
    }

    fn build(&self, options: &Table) -> Result<Arc<dyn Authenticator>, OptionsError> {
        Ok(Arc::new(TokenAuth::from_options(options)?))
    }

    fn public_keys(&self) -> &'static [&'static str] {
        &["tokens_file"]
    }
}

/// The options of `[auth.<name>]` with `plugin = "token"`.
///
/// `tokens` is taken as a raw TOML value: a typed map would make a wrong
/// type an error that quotes the value, which may be a token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    tokens: Option<toml::Value>,
    tokens_file: Option<PathBuf>,
}

/// Where a token was configured, to report duplicates without the token.
#[derive(Clone)]
enum Source {
    Inline,
    File { line: usize },
}

/// Authenticates static bearer tokens. `Debug` shows only how many tokens
/// there are.
pub struct TokenAuth {
    /// `(token, user)`, in configuration order.
    tokens: Vec<(Box<[u8]>, Arc<str>)>,
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth")
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .finish()
    }
}

impl TokenAuth {
    fn from_options(options: &Table) -> Result<Self, OptionsError> {
        let options: Options = OptionsError::parse(options)?;
        let mut tokens: Vec<(Box<[u8]>, Arc<str>)> = Vec::new();
        // Only used while loading, where timing does not matter.
        let mut seen: HashMap<Box<[u8]>, Source> = HashMap::new();

        if let Some(value) = &options.tokens {
            let table = value.as_table().ok_or_else(|| {
                OptionsError::at(
                    "tokens",
                    "must be a table of \"<token>\" = \"<user>\" (the value is not shown)",
                )
            })?;
            for (token, user) in table {
                let user = user.as_str().ok_or_else(|| {
                    OptionsError::at("tokens", "the user of every token must be a string")
                })?;
                if token.is_empty() {
                    return Err(OptionsError::at("tokens", "a token is empty"));
                }
                if user.is_empty() {
                    return Err(OptionsError::at("tokens", "a token has an empty user name"));
                }
                let key: Box<[u8]> = token.as_bytes().into();
                // TOML keys are unique, so the inline table has no duplicates.
                seen.insert(key.clone(), Source::Inline);
                tokens.push((key, Arc::from(user)));
            }
        }

        if let Some(path) = &options.tokens_file {
            for (line, token, user) in read_tokens_file(path)? {
                let key: Box<[u8]> = token.into_bytes().into();
                if let Some(first) = seen.get(&key) {
                    let first = match first {
                        Source::Inline => "also in `tokens`".to_string(),
                        Source::File { line } => format!("also on line {line}"),
                    };
                    return Err(OptionsError::at(
                        "tokens_file",
                        format!("{}: line {line}: duplicate token ({first})", path.display()),
                    ));
                }
                seen.insert(key.clone(), Source::File { line });
                tokens.push((key, Arc::from(user)));
            }
        }

        if tokens.is_empty() {
            return Err(OptionsError::new(
                "no tokens configured: set `tokens` or `tokens_file`",
            ));
        }
        Ok(Self { tokens })
    }

    /// The user of `presented`, looked up in constant time.
    ///
    /// Every configured token is compared, whatever matched; the time taken
    /// depends only on the configured tokens' lengths and the presented
    /// token's length, never on their contents.
    fn lookup(&self, presented: &[u8]) -> Option<Arc<str>> {
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, (token, _)) in self.tokens.iter().enumerate() {
            let eq = ct_token_eq(token, presented);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            let index = usize::try_from(index).ok()?;
            self.tokens.get(index).map(|(_, user)| Arc::clone(user))
        } else {
            None
        }
    }

    fn check(&self, request: &UpgradeRequest<'_>) -> Result<Identity, Rejection> {
        let presented = request.bearer_token().ok_or_else(|| {
            Rejection::Unauthorized(
                "missing credentials: send `Authorization: Bearer <token>` or the \
                 `access_token` query parameter"
                    .to_string(),
            )
        })?;
        self.lookup(presented.as_bytes())
            .map(Identity::user)
            .ok_or_else(|| Rejection::Unauthorized("invalid token".to_string()))
    }
}

impl Authenticator for TokenAuth {
    fn authenticate<'a>(
        &'a self,
        request: &'a UpgradeRequest<'a>,
    ) -> BoxFuture<'a, Result<Identity, Rejection>> {
        Box::pin(std::future::ready(self.check(request)))
    }
}

/// Whether `configured == presented`, without an early exit on the first
/// differing byte or on differing lengths.
fn ct_token_eq(configured: &[u8], presented: &[u8]) -> Choice {
    let len_eq = (configured.len() as u64).ct_eq(&(presented.len() as u64));
    let mut bytes_eq = Choice::from(1);
    for (i, byte) in configured.iter().enumerate() {
        // Past the end of the presented token, compare with 0: the length
        // check above has already made the result false.
        let other = presented.get(i).copied().unwrap_or(0);
        bytes_eq &= byte.ct_eq(&other);
    }
    len_eq & bytes_eq
}

/// Reads `(line number, token, user)` from a tokens file.
fn read_tokens_file(path: &Path) -> Result<Vec<(usize, String, String)>, OptionsError> {
    // The I/O error names the failure (missing, not UTF-8, ...), never the
    // content.
    let content = std::fs::read_to_string(path).map_err(|e| {
        OptionsError::at(
            "tokens_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let mut pairs = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let number = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next(), fields.next()) {
            (Some(token), Some(user), None) => {
                pairs.push((number, token.to_string(), user.to_string()));
            }
            _ => {
                return Err(OptionsError::at(
                    "tokens_file",
                    format!(
                        "{}: line {number}: expected `<token> <user>`",
                        path.display()
                    ),
                ))
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod token_props;

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::Write;
    use std::net::IpAddr;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use wsgate_plugin_api::HeaderMap;

    use super::*;

    const ALICE: &str = "alice-token-0123456789";
    const BOB: &str = "bob-token-abcdefghijkl";

    fn table(text: &str) -> Table {
        text.parse().expect("test TOML")
    }

    pub(super) fn tokens_file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content.as_bytes()).expect("write temp file");
        file.flush().expect("flush temp file");
        file
    }

    fn file_options(file: &tempfile::NamedTempFile, extra: &str) -> Table {
        let mut options = table(extra);
        options.insert(
            "tokens_file".to_string(),
            file.path().to_str().expect("UTF-8 temp path").into(),
        );
        options
    }

    fn build(options: &Table) -> Result<Arc<dyn Authenticator>, OptionsError> {
        Plugin.build(options)
    }

    fn build_err(options: &Table) -> OptionsError {
        match build(options) {
            Ok(_) => panic!("options were accepted"),
            Err(e) => e,
        }
    }

    /// The authenticator's futures are ready at once; poll one to its end.
    pub(super) fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("authenticate did not complete at once"),
        }
    }

    fn auth_header(
        auth: &dyn Authenticator,
        authorization: Option<&str>,
    ) -> Result<Identity, Rejection> {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert("authorization", value.parse().expect("header value"));
        }
        let request = UpgradeRequest {
            path: "/ws",
            query: None,
            headers: &headers,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            secure: false,
            conn_id: None,
        };
        block_on(auth.authenticate(&request))
    }

    fn auth_bearer(auth: &dyn Authenticator, token: &str) -> Result<Identity, Rejection> {
        auth_header(auth, Some(&format!("Bearer {token}")))
    }

    fn assert_no_secret(text: &str) {
        for secret in [ALICE, BOB] {
            assert!(!text.contains(secret), "secret leaked in: {text}");
        }
    }

    #[test]
    fn inline_tokens_map_to_users() {
        let auth = build(&table(&format!(
            "tokens = {{ \"{ALICE}\" = \"alice\", \"{BOB}\" = \"bob\" }}"
        )))
        .expect("valid options");
        let alice = auth_bearer(&*auth, ALICE).expect("alice accepted");
        assert_eq!(alice, Identity::user("alice"));
        let bob = auth_bearer(&*auth, BOB).expect("bob accepted");
        assert_eq!(bob.user.as_deref(), Some("bob"));
        assert!(bob.claims.is_empty());
    }

    #[test]
    fn query_parameter_is_accepted() {
        let auth = build(&table(&format!("tokens = {{ \"{ALICE}\" = \"alice\" }}")))
            .expect("valid options");
        let headers = HeaderMap::new();
        let query = format!("x=1&access_token={ALICE}");
        let request = UpgradeRequest {
            path: "/ws",
            query: Some(&query),
            headers: &headers,
            client_ip: IpAddr::from([127, 0, 0, 1]),
            secure: false,
            conn_id: None,
        };
        let identity = block_on(auth.authenticate(&request)).expect("accepted");
        assert_eq!(identity.user.as_deref(), Some("alice"));
    }

    #[test]
    fn unknown_prefix_suffix_and_missing_tokens_are_refused() {
        let auth = build(&table(&format!("tokens = {{ \"{ALICE}\" = \"alice\" }}")))
            .expect("valid options");
        let invalid = Rejection::Unauthorized("invalid token".to_string());
        assert_eq!(auth_bearer(&*auth, "nope"), Err(invalid.clone()));
        // A prefix, an extension and a one-byte change of a real token.
        assert_eq!(
            auth_bearer(&*auth, &ALICE[..ALICE.len() - 1]),
            Err(invalid.clone())
        );
        assert_eq!(
            auth_bearer(&*auth, &format!("{ALICE}x")),
            Err(invalid.clone())
        );
        let mut changed = ALICE.to_string();
        changed.replace_range(0..1, "A");
        assert_eq!(auth_bearer(&*auth, &changed), Err(invalid));

        match auth_header(&*auth, None) {
            Err(Rejection::Unauthorized(message)) => {
                assert!(message.starts_with("missing credentials"), "{message}")
            }
            other => panic!("expected 401, got {other:?}"),
        }
        // Another scheme is no credential at all.
        assert!(matches!(
            auth_header(&*auth, Some(&format!("Basic {ALICE}"))),
            Err(Rejection::Unauthorized(m)) if m.starts_with("missing credentials")
        ));
    }

    #[test]
    fn tokens_file_is_read_with_comments_and_blank_lines() {
        let file = tokens_file(&format!(
            "# wsgate tokens\n\n  {ALICE}\talice  \n   # indented comment\n{BOB}    bob\n"
        ));
        let auth = build(&file_options(&file, "")).expect("valid file");
        assert_eq!(
            auth_bearer(&*auth, ALICE).expect("alice").user.as_deref(),
            Some("alice")
        );
        assert_eq!(
            auth_bearer(&*auth, BOB).expect("bob").user.as_deref(),
            Some("bob")
        );
    }

    #[test]
    fn inline_and_file_tokens_combine() {
        let file = tokens_file(&format!("{BOB} bob\n"));
        let auth = build(&file_options(
            &file,
            &format!("tokens = {{ \"{ALICE}\" = \"alice\" }}"),
        ))
        .expect("valid options");
        assert!(auth_bearer(&*auth, ALICE).is_ok());
        assert!(auth_bearer(&*auth, BOB).is_ok());
    }

    #[test]
    fn malformed_line_names_file_and_line_but_not_token() {
        for bad in [
            format!("{ALICE} alice\n\n{BOB}\n"),
            format!("{ALICE} alice\n\n{BOB} bob extra\n"),
        ] {
            let file = tokens_file(&bad);
            let err = build_err(&file_options(&file, ""));
            assert_eq!(err.path.as_deref(), Some("tokens_file"));
            let path = file.path().display().to_string();
            assert!(err.message.contains(&path), "{}", err.message);
            assert!(err.message.contains("line 3"), "{}", err.message);
            assert_no_secret(&err.message);
            assert_no_secret(&format!("{err:?}"));
        }
    }

    #[test]
    fn duplicate_tokens_are_refused_without_the_token() {
        let file = tokens_file(&format!("{ALICE} alice\n{ALICE} mallory\n"));
        let err = build_err(&file_options(&file, ""));
        assert!(err.message.contains("line 2"), "{}", err.message);
        assert!(err.message.contains("duplicate"), "{}", err.message);
        assert_no_secret(&format!("{err:?}"));

        let file = tokens_file(&format!("{BOB} bob\n{ALICE} mallory\n"));
        let err = build_err(&file_options(
            &file,
            &format!("tokens = {{ \"{ALICE}\" = \"alice\" }}"),
        ));
        assert!(err.message.contains("line 2"), "{}", err.message);
        assert!(err.message.contains("`tokens`"), "{}", err.message);
        assert_no_secret(&format!("{err:?}"));
    }

    #[test]
    fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent");
        let mut options = Table::new();
        options.insert(
            "tokens_file".to_string(),
            path.to_str().expect("UTF-8 path").into(),
        );
        let err = build_err(&options);
        assert_eq!(err.path.as_deref(), Some("tokens_file"));
        assert!(err.message.contains("cannot read"), "{}", err.message);
    }

    #[test]
    fn no_tokens_at_all_is_an_error() {
        assert!(build_err(&Table::new()).message.contains("no tokens"));
        assert!(build_err(&table("tokens = {}"))
            .message
            .contains("no tokens"));
        let file = tokens_file("# only a comment\n\n");
        assert!(build_err(&file_options(&file, ""))
            .message
            .contains("no tokens"));
    }

    #[test]
    fn bad_option_values_are_errors_without_secrets() {
        let err = build_err(&table("tokens_fil = \"/x\""));
        assert!(err.message.contains("tokens_fil"), "{}", err.message);

        // A token given where the table belongs is not echoed.
        let err = build_err(&table(&format!("tokens = \"{ALICE}\"")));
        assert_eq!(err.path.as_deref(), Some("tokens"));
        assert_no_secret(&format!("{err:?}"));

        let err = build_err(&table(&format!("tokens = {{ \"{ALICE}\" = 5 }}")));
        assert_no_secret(&format!("{err:?}"));
        let err = build_err(&table(&format!("tokens = {{ \"{ALICE}\" = \"\" }}")));
        assert_no_secret(&format!("{err:?}"));
        let err = build_err(&table("tokens = { \"\" = \"alice\" }"));
        assert_eq!(err.path.as_deref(), Some("tokens"));
    }

    #[test]
    fn debug_does_not_show_tokens() {
        let file = tokens_file(&format!("{BOB} bob\n"));
        let auth = TokenAuth::from_options(&file_options(
            &file,
            &format!("tokens = {{ \"{ALICE}\" = \"alice\" }}"),
        ))
        .expect("valid options");
        let debug = format!("{auth:?}");
        assert!(debug.contains("2 redacted"), "{debug}");
        assert_no_secret(&debug);
    }

    #[test]
    fn constant_time_compare_is_exact() {
        assert!(bool::from(ct_token_eq(b"abc", b"abc")));
        assert!(!bool::from(ct_token_eq(b"abc", b"abd")));
        assert!(!bool::from(ct_token_eq(b"abc", b"ab")));
        assert!(!bool::from(ct_token_eq(b"abc", b"abc\0")));
        assert!(!bool::from(ct_token_eq(b"ab", b"abc")));
        assert!(!bool::from(ct_token_eq(b"", b"a")));
    }

    #[test]
    fn lookup_finds_a_token_at_any_position() {
        // The lookup must pick the matching entry even when it is last.
        let mut inline = String::from("tokens = {");
        for i in 0..20 {
            inline.push_str(&format!("\"tok-{i:02}\" = \"user{i}\", "));
        }
        inline.push('}');
        let auth = build(&table(&inline)).expect("valid options");
        for i in [0, 7, 19] {
            let identity = auth_bearer(&*auth, &format!("tok-{i:02}")).expect("accepted");
            assert_eq!(identity.user.as_deref(), Some(format!("user{i}").as_str()));
        }
        assert!(auth_bearer(&*auth, "tok-20").is_err());
    }
}
