//! Property tests of the query string ([`super::query::query_param`]) and
//! of the bearer credential ([`UpgradeRequest::bearer_token`]):
//!
//! - any query string, percent-escapes valid, cut short or of bytes that
//!   are not UTF-8 among them, keys repeated or empty and values empty, is
//!   read without a panic as the `application/x-www-form-urlencoded`
//!   parser of the WHATWG URL standard reads it, modelled here byte by
//!   byte;
//! - any set of keys and values, written with each character as itself or
//!   percent-escaped (in either case), a space as `+` or `%20`, a `%` that
//!   starts no escape as itself, empty values with or without `=` and empty
//!   pairs between the others, reads back as the first value of each key;
//! - an `Authorization` header is taken, whatever the query string holds,
//!   when it is `Bearer` in any case, a space and a token (whitespace
//!   around the token cut), and is no credential otherwise; without the
//!   header, the credential is the first `access_token` of the query; an
//!   empty token is none.

use std::net::IpAddr;

use proptest::prelude::*;

use crate::{query_param, HeaderMap, UpgradeRequest};

// The model.

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// One name or value decoded: `+` is a space, `%` and two hex digits a
/// byte, anything else itself; then invalid UTF-8 is replaced.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escape = (b[i] == b'%')
            .then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?)))
            .flatten();
        match (b[i], escape) {
            (_, Some((hi, lo))) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The pairs of a query string: split on `&`, empty pieces skipped, each
/// split on its first `=` (none: an empty value).
fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn first(query: &str, name: &str) -> Option<String> {
    pairs(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The credential an `Authorization` value carries, read byte by byte:
/// visible ASCII (and tabs) only, `bearer` in any case, one space, and a
/// token with the spaces and tabs around it cut.
fn model_bearer(value: &[u8]) -> Option<String> {
    if value.iter().any(|&b| b >= 0x7f || (b < 0x20 && b != b'\t')) {
        return None;
    }
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bearer") || value[6] != b' ' {
        return None;
    }
    let token = value[7..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == b'\t')
        .collect::<Vec<u8>>();
    let end = token
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    let token = String::from_utf8(token[..end].to_vec()).ok()?;
    (!token.is_empty()).then_some(token)
}

fn request<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> UpgradeRequest<'a> {
    UpgradeRequest {
        path: "/ws",
        query,
        headers,
        client_ip: IpAddr::from([127, 0, 0, 1]),
        secure: false,
        conn_id: None,
    }
}

// Generators.

/// Query strings heavy in what the parser must get right.
fn query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z_]{1,4}",
        3 => prop::sample::select(vec!["&", "=", "+", "%", "&&", "==", "access_token", "topics"])
            .prop_map(str::to_string),
        2 => "%[0-9a-fA-F]{2}",
        // Bytes above 0x7f: alone, they are not UTF-8.
        2 => "%[89a-fA-F][0-9a-fA-F]",
        1 => "%[0-9a-fA-F+-]{0,1}",
        1 => "%[g-zG-Z+ -][0-9a-f]",
        1 => Just("%E2%82%AC".to_string()),
        1 => Just("%e2%82".to_string()),
        1 => ".",
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// Keys: a few, so that they repeat, and random ones.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "a", "access_token", "topics", "", "a b", "a+b", "a=b", "é", "%", "&",
        ])
        .prop_map(str::to_string),
        1 => ".{0,6}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => ".{0,12}",
        1 => Just(String::new()),
        1 => prop::sample::select(vec!["a b", "a+b", "%41", "100%", "x=y", "a&b", "\u{0}\n€😀"])
            .prop_map(str::to_string),
    ]
}

/// How a query string is written: choices taken in turn.
#[derive(Debug, Clone)]
struct Choices(Vec<u8>);

impl Choices {
    fn next(&self, n: &mut usize) -> u8 {
        let c = self.0[*n % self.0.len()];
        *n += 1;
        c
    }
}

fn escape(byte: u8, upper: bool) -> String {
    if upper {
        format!("%{byte:02X}")
    } else {
        format!("%{byte:02x}")
    }
}

/// `s` written for a query string, in pieces: `&`, `+`, `%` and `#` are
/// always escaped and `=` in a key; a space is `+` or `%20`; other visible
/// ASCII is itself or escaped, and anything else escaped byte by byte. A
/// `%` is then written as itself where what follows is not two hex digits.
fn encode(s: &str, is_key: bool, choices: &Choices, n: &mut usize) -> String {
    let mut pieces: Vec<String> = Vec::new();
    for c in s.chars() {
        let choice = choices.next(n);
        let upper = choice & 1 != 0;
        let mut utf8 = [0; 4];
        let bytes = c.encode_utf8(&mut utf8).as_bytes();
        let escaped = || bytes.iter().map(|b| escape(*b, upper)).collect::<String>();
        let piece = match c {
            ' ' if choice & 2 != 0 => "+".to_string(),
            '&' | '+' | '%' | '#' => escaped(),
            '=' if is_key => escaped(),
            '!'..='~' if choice & 4 == 0 => c.to_string(),
            _ => escaped(),
        };
        pieces.push(piece);
    }
    let mut out = String::new();
    for i in 0..pieces.len() {
        let rest: String = pieces[i + 1..].concat();
        let starts_escape = rest.len() >= 2 && rest.bytes().take(2).all(|b| hex(b).is_some());
        if pieces[i].eq_ignore_ascii_case("%25") && !starts_escape && choices.next(n) & 8 != 0 {
            out.push('%');
        } else {
            out.push_str(&pieces[i]);
        }
    }
    out
}

/// The pairs as a query string, with empty pairs between them where the
/// choices say so.
fn write_query(pairs: &[(String, String)], choices: &Choices) -> String {
    let mut n = 0;
    let mut out = String::new();
    for (key, value) in pairs {
        let extra = choices.next(&mut n) % 8;
        if !out.is_empty() || extra >= 6 {
            out.push('&');
        }
        if extra == 7 {
            out.push('&');
        }
        out.push_str(&encode(key, true, choices, &mut n));
        // `a=` or `a` for an empty value; an empty pair is no pair at all.
        if !value.is_empty() || key.is_empty() || choices.next(&mut n) & 1 != 0 {
            out.push('=');
            out.push_str(&encode(value, false, choices, &mut n));
        }
    }
    if choices.next(&mut n).is_multiple_of(4) {
        out.push('&');
    }
    out
}

/// `bearer` with each letter's case from `cases`.
fn bearer_in(cases: &[bool]) -> String {
    "bearer"
        .chars()
        .zip(cases.iter().cycle())
        .map(|(c, upper)| if *upper { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// An `Authorization` value in parts: before the scheme, the scheme, between
/// it and the token, the token, after it.
#[derive(Debug, Clone)]
struct Header {
    lead: String,
    scheme: String,
    gap: String,
    token: String,
    trail: String,
}

fn header() -> impl Strategy<Value = Header> {
    (
        prop::sample::select(vec!["", "", "", " ", "\t"]),
        prop_oneof![
            3 => prop::collection::vec(any::<bool>(), 6).prop_map(|c| bearer_in(&c)),
            1 => prop::sample::select(vec!["Basic", "Token", "Bearerx", "Bear", "", "Bearer:", "Bearer,"])
                .prop_map(str::to_string),
        ],
        prop_oneof![
            3 => Just(" ".to_string()),
            1 => "[ \t]{0,3}",
        ],
        prop_oneof![
            3 => "[!-~]{1,20}",
            1 => "[!-~]([ !-~]{0,18}[!-~])?",
            1 => Just(String::new()),
        ],
        "[ \t]{0,2}",
    )
        .prop_map(|(lead, scheme, gap, token, trail)| Header {
            lead: lead.to_string(),
            scheme,
            gap,
            token,
            trail,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_query_string_reads_as_the_form_urlencoded_parser_reads_it(
        query in query(),
        other in ".{0,4}",
    ) {
        let mut names: Vec<String> = pairs(&query).into_iter().map(|(k, _)| k).collect();
        names.extend(["".to_string(), "access_token".to_string(), other]);
        for name in &names {
            prop_assert_eq!(query_param(&query, name), first(&query, name), "{:?} in {:?}", name, query);
            let headers = HeaderMap::new();
            prop_assert_eq!(request(&headers, Some(&query)).query_param(name), first(&query, name));
            prop_assert_eq!(request(&headers, None).query_param(name), None);
        }
    }

    #[test]
    fn any_text_as_a_query_string_reads_as_the_model_reads_it(
        query in "\\PC{0,32}",
        name in "\\PC{0,3}",
    ) {
        prop_assert_eq!(query_param(&query, &name), first(&query, &name));
        if let Some((key, _)) = pairs(&query).first() {
            prop_assert_eq!(query_param(&query, key), first(&query, key));
        }
    }

    #[test]
    fn encoded_pairs_read_back_as_the_first_value_of_each_key(
        pairs in prop::collection::vec((key(), value()), 0..6),
        choices in prop::collection::vec(any::<u8>(), 1..32),
        absent in "[A-Z]{1,4}",
    ) {
        let query = write_query(&pairs, &Choices(choices));
        for (key, _) in &pairs {
            let value = pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
            prop_assert_eq!(query_param(&query, key), value, "{:?} in {:?}", key, query);
        }
        // Random keys may happen to be `absent` too.
        if !pairs.iter().any(|(k, _)| *k == absent) {
            prop_assert_eq!(query_param(&query, &absent), None, "{:?}", query);
        }
    }

    #[test]
    fn the_header_is_a_bearer_token_or_no_credential(
        header in header(),
        second in prop::option::of("Bearer [a-z]{1,8}"),
        query in prop::option::of(prop_oneof![
            "access_token=[a-z]{1,8}",
            query(),
        ]),
    ) {
        let value = format!("{}{}{}{}{}", header.lead, header.scheme, header.gap, header.token, header.trail);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().expect("visible ASCII"));
        if let Some(second) = &second {
            headers.append("authorization", second.parse().expect("visible ASCII"));
        }
        let accepted = header.lead.is_empty()
            && header.scheme.eq_ignore_ascii_case("bearer")
            && header.gap.starts_with(' ')
            && !header.token.is_empty();
        let expected = accepted.then(|| header.token.clone());
        prop_assert_eq!(
            request(&headers, query.as_deref()).bearer_token(),
            expected,
            "{:?}",
            value
        );
    }

    #[test]
    fn any_header_bytes_are_a_bearer_token_or_no_credential(
        prefix in prop::sample::select(vec![
            "Bearer ", "bearer ", "BEARER ", "bEaReR  ", "Bearer\t", "Bearer", " Bearer ", "Basic ", "",
        ]),
        rest in prop_oneof![
            prop::collection::vec(0x20u8..0x7f, 0..24),
            prop::collection::vec(any::<u8>(), 0..24),
        ],
    ) {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend(rest);
        let Ok(value) = http::HeaderValue::from_bytes(&bytes) else {
            // Not a header value: no request can have it.
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value);
        let got = request(&headers, Some("access_token=from-the-query")).bearer_token();
        prop_assert_eq!(got, model_bearer(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn without_the_header_the_token_is_the_first_access_token(
        query in prop_oneof![
            query(),
            (query(), value(), query()).prop_map(|(a, t, b)| {
                let t = write_query(&[("access_token".into(), t)], &Choices(vec![0, 3, 5, 6]));
                format!("{a}&{t}&{b}")
            }),
        ],
    ) {
        let headers = HeaderMap::new();
        let expected = first(&query, "access_token").filter(|t| !t.is_empty());
        prop_assert_eq!(request(&headers, Some(&query)).bearer_token(), expected, "{:?}", query);
        prop_assert_eq!(request(&headers, None).bearer_token(), None);
    }
}

#[test]
fn the_model_reads_the_documented_examples() {
    assert_eq!(first("a=%zz%4", "a").as_deref(), Some("%zz%4"));
    assert_eq!(first("a=x+y%21", "a").as_deref(), Some("x y!"));
    assert_eq!(first("a=%+1", "a").as_deref(), Some("% 1"));
    assert_eq!(first("a=%2B1", "a").as_deref(), Some("+1"));
    assert_eq!(first("a%20b=1&a+b=2", "a b").as_deref(), Some("1"));
    assert_eq!(first("flag&x=1", "flag").as_deref(), Some(""));
    assert_eq!(first("a=%FF", "a").as_deref(), Some("\u{FFFD}"));
    assert_eq!(model_bearer(b"Bearer abc"), Some("abc".into()));
    assert_eq!(model_bearer(b"bearer  abc \t"), Some("abc".into()));
    assert_eq!(model_bearer(b"Bearer\tabc"), None);
    assert_eq!(model_bearer(b"Basic abc"), None);
    assert_eq!(model_bearer(b"Bearer  "), None);
    let choices = Choices(vec![0]);
    let written = write_query(&[("a b".into(), "x&y=%".into())], &choices);
    assert_eq!(written, "a%20b=x%26y=%25&");
    let choices = Choices(vec![0xff]);
    let written = write_query(&[("é".into(), "1 %".into())], &choices);
    assert_eq!(written, "&&%C3%A9=%31+%");
}
