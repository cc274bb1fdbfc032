//! Property tests of the `token` authenticator:
//!
//! - the comparison of a presented token with a configured one is equality
//!   of the bytes, whatever their lengths: a prefix, an extension (by a NUL
//!   byte among others) or a token one byte off is refused;
//! - a request is authenticated as the user of the configured token it
//!   presents, and refused otherwise: `invalid token` for a token that is
//!   none of the configured ones (a near miss of one among them),
//!   `missing credentials` without any; the token is taken from
//!   `Authorization: Bearer` (the scheme in any case, whitespace around the
//!   token cut) or, without that header, from the first `access_token` of
//!   the query string, percent-escaped or not; an `Authorization` header of
//!   another scheme is no credential, whatever the query string holds;
//! - a tokens file of `<token> <user>` lines among blank and comment lines,
//!   whatever the whitespace around and between the fields and the line
//!   ends, gives each token its user; a line without exactly two fields or
//!   a token given twice is refused naming the file and the line, never
//!   the token.

use std::net::IpAddr;

use proptest::prelude::*;
use proptest::sample::Index;
use wsgate_plugin_api::HeaderMap;

use super::tests::{block_on, tokens_file};
use super::*;

const MISSING: &str = "missing credentials: send `Authorization: Bearer <token>` or the \
                       `access_token` query parameter";

/// An authenticator of the inline tokens `tokens` (token, user).
fn inline(tokens: &[(String, String)]) -> TokenAuth {
    let mut table = Table::new();
    for (token, user) in tokens {
        table.insert(token.clone(), toml::Value::from(user.as_str()));
    }
    let mut options = Table::new();
    options.insert("tokens".into(), toml::Value::Table(table));
    TokenAuth::from_options(&options).expect("valid tokens")
}

fn authenticate(
    auth: &TokenAuth,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Result<Identity, Rejection> {
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert("authorization", value.parse().expect("a header value"));
    }
    let request = UpgradeRequest {
        path: "/ws",
        query,
        headers: &headers,
        client_ip: IpAddr::from([127, 0, 0, 1]),
        secure: false,
        conn_id: None,
    };
    block_on(auth.authenticate(&request))
}

/// The answer to a presented token: the user of the configured token
/// equal to it, or `invalid token`.
fn expected(tokens: &[(String, String)], presented: &str) -> Result<Identity, Rejection> {
    tokens
        .iter()
        .find(|(token, _)| token.as_bytes() == presented.as_bytes())
        .map(|(_, user)| Identity::user(user.as_str()))
        .ok_or_else(|| Rejection::Unauthorized("invalid token".into()))
}

// Generators.

/// Tokens that an `Authorization` header can carry: visible ASCII, inner
/// spaces allowed.
fn header_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~+/=-]{1,32}",
        1 => "[!-~]([ !-~]{0,20}[!-~])?",
    ]
}

/// Any token an inline table can configure.
fn any_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => header_token(),
        1 => "\\PC{1,12}",
        1 => ".{1,12}",
        1 => Just(" padded ".to_string()),
    ]
}

fn user() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,8}", "\\PC{1,6}"]
}

/// Configured tokens, unique, each with a user.
fn tokens(token: BoxedStrategy<String>) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map(token, user(), 1..6).prop_map(|m| m.into_iter().collect())
}

/// How a token is changed into one that is near it.
#[derive(Debug, Clone)]
enum Near {
    Same,
    /// Cut to this many characters (fewer than it has).
    Prefix(Index),
    Extend(String),
    /// One character replaced.
    Replace(Index, char),
    Other(String),
}

fn near() -> impl Strategy<Value = Near> {
    prop_oneof![
        3 => Just(Near::Same),
        1 => any::<Index>().prop_map(Near::Prefix),
        1 => prop_oneof![Just("\0".to_string()), "[!-~]{1,3}", Just(" x".to_string())]
            .prop_map(Near::Extend),
        2 => (any::<Index>(), prop_oneof![proptest::char::range('!', '~'), any::<char>()])
            .prop_map(|(i, c)| Near::Replace(i, c)),
        1 => "[!-~]{1,32}".prop_map(Near::Other),
    ]
}

fn apply(token: &str, near: &Near) -> String {
    let chars: Vec<char> = token.chars().collect();
    match near {
        Near::Same => token.to_string(),
        Near::Prefix(at) => chars[..at.index(chars.len())].iter().collect(),
        Near::Extend(more) => format!("{token}{more}"),
        Near::Replace(at, c) => {
            let mut chars = chars;
            let i = at.index(chars.len());
            chars[i] = *c;
            chars.into_iter().collect()
        }
        Near::Other(other) => other.clone(),
    }
}

/// `s` percent-escaped: each character as itself or escaped where `escape`
/// says so (the characters a query string cannot hold as themselves are
/// always escaped).
fn escape_query(s: &str, escape: &[bool]) -> String {
    let mut out = String::new();
    for (c, escape) in s.chars().zip(escape.iter().cycle()) {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '~' | '-' if !escape => out.push(c),
            ' ' if !escape => out.push('+'),
            _ => {
                let mut utf8 = [0; 4];
                for b in c.encode_utf8(&mut utf8).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// How a token is presented.
#[derive(Debug, Clone)]
enum Presented {
    /// `<bearer in some case><spaces><token><spaces>`.
    Header {
        scheme: String,
        gap: String,
        trail: String,
    },
    /// `?...&access_token=<escaped>&...`, escapes where the list says.
    Query {
        escape: Vec<bool>,
        before: bool,
    },
    /// The header, and another token in the query: the header wins.
    Both {
        other: String,
    },
    /// A header of another scheme, and the token in the query.
    OtherScheme {
        scheme: String,
    },
    Nothing,
}

fn presented() -> impl Strategy<Value = Presented> {
    let bearer = prop::collection::vec(any::<bool>(), 6).prop_map(|upper| {
        "bearer"
            .chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect::<String>()
    });
    prop_oneof![
        3 => (bearer, "  ?\t?", "[ \t]{0,2}")
            .prop_map(|(scheme, gap, trail)| Presented::Header { scheme, gap: format!(" {gap}"), trail }),
        3 => (prop::collection::vec(any::<bool>(), 1..8), any::<bool>())
            .prop_map(|(escape, before)| Presented::Query { escape, before }),
        1 => "[a-z]{1,8}".prop_map(|other| Presented::Both { other }),
        1 => prop::sample::select(vec!["Basic", "Token", "Bearer:", "Bearerx"])
            .prop_map(|s| Presented::OtherScheme { scheme: s.to_string() }),
        1 => Just(Presented::Nothing),
    ]
}

/// A line of a tokens file.
#[derive(Debug, Clone)]
enum Line {
    Pair(usize),
    Blank(String),
    Comment(String),
}

/// Whitespace as a tokens file may have it around and between its fields.
fn space() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(" ".to_string()),
        2 => "[ \t]{1,4}",
        1 => Just("\u{3000}".to_string()),
        1 => Just("\u{a0}\u{2003}".to_string()),
    ]
}

/// Tokens a file can hold: no whitespace, not starting with `#`.
fn file_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9._~+/=-]{12,32}",
        1 => "[!-\"$-~][!-~]{11,20}",
        1 => "[^#\\s\\p{Cc}][^\\s\\p{Cc}]{11,15}",
    ]
}

fn file_user() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,8}", "[^\\s\\p{Cc}]{1,6}"]
}

fn load_file(file: &tempfile::NamedTempFile) -> Result<TokenAuth, OptionsError> {
    let mut options = Table::new();
    options.insert(
        "tokens_file".into(),
        file.path().to_str().expect("a UTF-8 temp path").into(),
    );
    TokenAuth::from_options(&options)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn tokens_compare_equal_exactly_when_their_bytes_are(
        a in prop::collection::vec(any::<u8>(), 0..40),
        b in prop::collection::vec(any::<u8>(), 0..40),
        cut in any::<Index>(),
        more in prop::collection::vec(any::<u8>(), 1..4),
        at in any::<Index>(),
        xor in 1u8..=255,
    ) {
        let eq = |x: &[u8], y: &[u8]| bool::from(ct_token_eq(x, y));
        prop_assert_eq!(eq(&a, &b), a == b);
        prop_assert!(eq(&a, &a));
        let prefix = &a[..cut.index(a.len() + 1)];
        prop_assert_eq!(eq(&a, prefix), prefix.len() == a.len());
        prop_assert_eq!(eq(prefix, &a), prefix.len() == a.len());
        let mut longer = a.clone();
        longer.extend(&more);
        prop_assert!(!eq(&a, &longer) && !eq(&longer, &a));
        let mut zeros = a.clone();
        zeros.resize(a.len() + more.len(), 0);
        prop_assert!(!eq(&a, &zeros) && !eq(&zeros, &a));
        if !a.is_empty() {
            let mut changed = a.clone();
            changed[at.index(a.len())] ^= xor;
            prop_assert!(!eq(&a, &changed) && !eq(&changed, &a));
        }
    }

    #[test]
    fn a_request_is_its_tokens_user_or_refused(
        tokens in tokens(header_token().boxed()),
        which in any::<Index>(),
        near in near(),
        how in presented(),
        before in "[a-z]{1,6}=[a-z0-9]{0,6}",
    ) {
        let auth = inline(&tokens);
        let (token, _) = &tokens[which.index(tokens.len())];
        let candidate = apply(token, &near);
        // What the header can carry: visible ASCII, no whitespace around.
        let presentable = !candidate.is_empty()
            && candidate.bytes().all(|b| (b' '..=b'~').contains(&b))
            && !candidate.starts_with(' ')
            && !candidate.ends_with(' ');
        let (authorization, query, answer) = match &how {
            Presented::Header { scheme, gap, trail } => {
                prop_assume!(presentable);
                let header = format!("{scheme}{gap}{candidate}{trail}");
                (Some(header), None, expected(&tokens, &candidate))
            }
            Presented::Query { escape, before: first } => {
                let escaped = escape_query(&candidate, escape);
                let query = if *first {
                    format!("{before}&access_token={escaped}&access_token=x")
                } else {
                    format!("access_token={escaped}&{before}")
                };
                let answer = if candidate.is_empty() {
                    Err(Rejection::Unauthorized(MISSING.into()))
                } else {
                    expected(&tokens, &candidate)
                };
                (None, Some(query), answer)
            }
            Presented::Both { other } => {
                prop_assume!(presentable);
                let header = format!("Bearer {candidate}");
                let query = format!("access_token={other}");
                (Some(header), Some(query), expected(&tokens, &candidate))
            }
            Presented::OtherScheme { scheme } => {
                let header = format!("{scheme} {}", escape_query(&candidate, &[true]));
                let query = format!("access_token={}", escape_query(&candidate, &[true]));
                (Some(header), Some(query), Err(Rejection::Unauthorized(MISSING.into())))
            }
            Presented::Nothing => (None, Some(before.clone()), Err(Rejection::Unauthorized(MISSING.into()))),
        };
        let got = authenticate(&auth, authorization.as_deref(), query.as_deref());
        prop_assert_eq!(got, answer, "{:?} {:?} {:?}", candidate, authorization, query);
    }

    /// Tokens of any characters (spaces, non-ASCII) reach the
    /// authenticator through the query string.
    #[test]
    fn any_token_is_accepted_through_the_query_string(
        tokens in tokens(any_token().boxed()),
        which in any::<Index>(),
        near in near(),
        escape in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let auth = inline(&tokens);
        let (token, _) = &tokens[which.index(tokens.len())];
        let candidate = apply(token, &near);
        let query = format!("access_token={}", escape_query(&candidate, &escape));
        let answer = if candidate.is_empty() {
            Err(Rejection::Unauthorized(MISSING.into()))
        } else {
            expected(&tokens, &candidate)
        };
        prop_assert_eq!(authenticate(&auth, None, Some(&query)), answer, "{:?}", query);
    }

    #[test]
    fn a_tokens_file_gives_each_token_its_user(
        pairs in prop::collection::btree_map(file_token(), file_user(), 1..6),
        extra in prop::collection::vec(
            prop_oneof![
                "[ \t]{0,3}".prop_map(Line::Blank),
                "[ \t]{0,2}#\\PC{0,12}".prop_map(Line::Comment),
            ],
            0..4,
        ),
        at in prop::collection::vec(any::<Index>(), 4),
        spaces in prop::collection::vec(space(), 3),
        crlf in any::<bool>(),
        near in near(),
        which in any::<Index>(),
    ) {
        let pairs: Vec<(String, String)> = pairs.into_iter().collect();
        let mut lines: Vec<Line> = (0..pairs.len()).map(Line::Pair).collect();
        for (line, at) in extra.into_iter().zip(&at) {
            let i = at.index(lines.len() + 1);
            lines.insert(i, line);
        }
        let end = if crlf { "\r\n" } else { "\n" };
        let mut content = String::new();
        for line in &lines {
            match line {
                Line::Pair(i) => {
                    let (token, user) = &pairs[*i];
                    let lead = if *i % 2 == 0 { "" } else { spaces[0].as_str() };
                    content.push_str(&format!("{lead}{token}{}{user}{}", spaces[1], spaces[2]));
                }
                Line::Blank(s) | Line::Comment(s) => content.push_str(s),
            }
            content.push_str(end);
        }
        let file = tokens_file(&content);
        let auth = match load_file(&file) {
            Ok(auth) => auth,
            Err(e) => return Err(TestCaseError::fail(format!("{content:?} refused: {e}"))),
        };
        for (token, user) in &pairs {
            let got = authenticate(&auth, None, Some(&format!("access_token={}", escape_query(token, &[true]))));
            prop_assert_eq!(got, Ok(Identity::user(user.as_str())), "{:?}", content);
        }
        let (token, _) = &pairs[which.index(pairs.len())];
        let candidate = apply(token, &near);
        prop_assume!(!candidate.is_empty());
        let query = format!("access_token={}", escape_query(&candidate, &[true]));
        prop_assert_eq!(authenticate(&auth, None, Some(&query)), expected(&pairs, &candidate));
    }

    #[test]
    fn a_bad_tokens_file_line_is_named_without_the_token(
        pairs in prop::collection::btree_map(file_token(), file_user(), 1..5),
        bad in prop_oneof![
            file_token().prop_map(|t| vec![t]),
            (file_token(), file_user(), file_user()).prop_map(|(t, u, x)| vec![t, u, x]),
        ],
        at in any::<Index>(),
        duplicate in any::<bool>(),
        space in space(),
    ) {
        let pairs: Vec<(String, String)> = pairs.into_iter().collect();
        let mut lines: Vec<String> = pairs.iter().map(|(t, u)| format!("{t}{space}{u}")).collect();
        let i = at.index(lines.len() + 1);
        let (line, secret, message) = if duplicate {
            // The first token again, after its first line.
            let i = i.max(1);
            let (token, _) = &pairs[0];
            lines.insert(i, format!("{token} mallory"));
            (i, token.clone(), "duplicate token (also on line 1)".to_string())
        } else {
            lines.insert(i, bad.join(&space));
            (i, bad[0].clone(), "expected `<token> <user>`".to_string())
        };
        let file = tokens_file(&lines.join("\n"));
        let Err(err) = load_file(&file) else {
            return Err(TestCaseError::fail(format!("{lines:?} accepted")));
        };
        prop_assert_eq!(err.path.as_deref(), Some("tokens_file"));
        prop_assert_eq!(
            &err.message,
            &format!("{}: line {}: {message}", file.path().display(), line + 1)
        );
        prop_assert!(!format!("{err:?}").contains(&secret), "{:?}", err);
    }
}

#[test]
fn the_escapes_are_those_of_a_query_string() {
    assert_eq!(escape_query("a b~é", &[false]), "a+b~%C3%A9");
    assert_eq!(escape_query("a+", &[true]), "%61%2B");
}
