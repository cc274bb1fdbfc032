//! Property tests of the config loader: random text, and the shipped
//! config and the documentation's examples with bytes, lines and values
//! changed. Nothing panics, every error names a line and column, and a
//! valid config written back reads again
//! ([`crate::fuzzing::check_config`]).

use proptest::prelude::*;
use proptest::sample::Index;

use crate::fuzzing::check_config;

/// The files the mutations start from: `etc/wsgate.toml` and every TOML
/// example in the docs.
fn seeds() -> Vec<String> {
    let mut out = vec![include_str!("../../etc/wsgate.toml").to_string()];
    for doc in [
        include_str!("../../docs/config.md"),
        include_str!("../../docs/plugins.md"),
        include_str!("../../docs/admin-protocol.md"),
    ] {
        let mut rest = doc;
        while let Some(start) = rest.find("```toml\n") {
            let body = &rest[start + 8..];
            let Some(end) = body.find("```") else { break };
            out.push(body[..end].to_string());
            rest = &body[end..];
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte (the result is read as UTF-8, invalid bytes replaced).
    Byte(Index, u8),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    /// Replace what follows the first `=` of a line.
    SetValue(Index, String),
    InsertLine(Index, String),
    Truncate(Index),
}

/// Values of every type and of the edges the schema has to refuse.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_string()),
        Just("-0".to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("nan".to_string()),
        Just("inf".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        (
            0u64..u64::MAX,
            prop::sample::select(vec!["ns", "ms", "s", "m", "h", "d", "y"])
        )
            .prop_map(|(n, unit)| format!("\"{n}{unit}\"")),
        "\"[0-9a-z .:/\\[\\]*>{}%-]{0,24}\"",
        Just("\"\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[\"*\", \"chat.{user}.>\"]".to_string()),
        Just("{ plugin = \"token\" }".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        Just("\"0777\"".to_string()),
        Just("\"[::1]:0\"".to_string()),
        Just("\"0.0.0.0:99999\"".to_string()),
        Just("'''\nmulti\n'''".to_string()),
    ]
}

/// Lines of the kinds a config has.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,24}".prop_flat_map(|k| value().prop_map(move |v| format!("{k} = {v}"))),
        prop::sample::select(vec![
            "[server]",
            "[api]",
            "[limits]",
            "[[routes]]",
            "[routes.limits]",
            "[routes.options]",
            "[auth.t]",
            "[auth.none]",
            "[auth.\"a.b\"]",
            "[auth.\"x[0]\"]",
            "path = \"/ws\"",
            "router = \"pubsub\"",
            "router = \"echo\"",
            "auth = \"t\"",
            "plugin = \"token\"",
            "plugin = \"jwt\"",
            "tokens = { \"t1\" = \"alice\" }",
            "server.listen = \"127.0.0.1:0\"",
            "limits = { max_connections = 0 }",
            "routes = []",
        ])
        .prop_map(str::to_string),
        "\\PC{0,40}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Byte(i, x)),
        2 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        4 => (any::<Index>(), value()).prop_map(|(i, v)| Mutation::SetValue(i, v)),
        3 => (any::<Index>(), line()).prop_map(|(i, l)| Mutation::InsertLine(i, l)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut text = text.to_string();
    for m in mutations {
        let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
        match m {
            Mutation::Byte(at, xor) => {
                let mut bytes = text.into_bytes();
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] ^= xor;
                }
                text = String::from_utf8_lossy(&bytes).into_owned();
                continue;
            }
            Mutation::Truncate(at) => {
                let mut end = at.index(text.len() + 1);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                continue;
            }
            Mutation::DeleteLine(at) => {
                lines.remove(at.index(lines.len()));
            }
            Mutation::DuplicateLine(at) => {
                let i = at.index(lines.len());
                lines.insert(i, lines[i].clone());
            }
            Mutation::SwapLines(a, b) => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            Mutation::SetValue(at, value) => {
                // The n-th line that has a value, counting from `at`.
                let n = lines.len();
                let start = at.index(n);
                if let Some(i) = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| lines[i].contains('=') && !lines[i].trim_start().starts_with('#'))
                {
                    if let Some((key, _)) = lines[i].split_once('=') {
                        lines[i] = format!("{key}= {value}");
                    }
                }
            }
            Mutation::InsertLine(at, line) => {
                let i = at.index(lines.len() + 1);
                lines.insert(i, line.clone());
            }
        }
        text = lines.join("\n");
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_text_never_panics_and_errors_have_a_place(text in "\\PC{0,200}") {
        let _ = check_config(&text);
    }

    #[test]
    fn random_lines_never_panic_and_errors_have_a_place(
        lines in prop::collection::vec(line(), 0..12),
    ) {
        let _ = check_config(&lines.join("\n"));
    }

    #[test]
    fn mutated_configs_never_panic_and_errors_have_a_place(
        seed in any::<Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let seeds = seeds();
        let text = apply(&seeds[seed.index(seeds.len())], &mutations);
        let _ = check_config(&text);
    }
}

#[test]
fn the_seeds_are_the_shipped_config_and_the_doc_examples() {
    let seeds = seeds();
    assert!(seeds.len() > 10, "{} seeds", seeds.len());
    // The shipped file is valid as it is (it must be, for the mutations of
    // it to reach past the parser).
    check_config(&seeds[0]).expect("etc/wsgate.toml is valid");
}
