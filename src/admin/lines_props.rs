//! Property tests of the admin request line parser ([`super::lines::parse`]):
//!
//! - any text, and any bytes read as a line is read (invalid UTF-8
//!   replaced), is parsed or refused without a panic, and a refusal is an
//!   error answer whose code and message say what was wrong, with the
//!   request's `id` when the line was an object that had one;
//! - every request the protocol can express, written as a line, parses
//!   back to the same request, whatever the order of its keys and the
//!   whitespace between its tokens;
//! - a valid request with an unknown argument, without a required one, or
//!   with an argument of the wrong type is refused as `bad_arguments`,
//!   naming the command and the argument or the type that was wrong.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};

use super::lines::parse;
use super::protocol::{code, Command, Filter, Order, Request, Response, SortKey};

/// The codes `parse` answers with.
const PARSE_CODES: &[&str] = &[
    code::BAD_REQUEST,
    code::UNKNOWN_COMMAND,
    code::BAD_ARGUMENTS,
];

/// The arguments each command takes.
fn arguments(cmd: &str) -> &'static [&'static str] {
    match cmd {
        "list" => &["filter", "sort", "order", "offset", "limit"],
        "show" => &["conn"],
        "evict" => &["conn", "filter", "reason", "dry_run", "all"],
        "reload" => &["dry_run"],
        "drain" => &["timeout"],
        "publish" => &["topic", "data"],
        "watch" => &["interval_ms", "filter", "sort", "order", "offset", "limit"],
        _ => &[],
    }
}

/// The request `object` is refused as `bad_arguments`, as any refusal
/// is (see [`check_refusal`]); its error message.
fn refused_with_bad_arguments(object: Map<String, Value>) -> Result<String, TestCaseError> {
    let line = Value::Object(object).to_string();
    let Err(answer) = parse(&line) else {
        return Err(TestCaseError::fail(format!("{line} accepted")));
    };
    check_refusal(&line, &answer)?;
    let Some(error) = answer.error else {
        return Err(TestCaseError::fail("no error"));
    };
    prop_assert_eq!(error.code, code::BAD_ARGUMENTS);
    Ok(error.message)
}

/// Checks a refusal of `text` against what the protocol documents for it,
/// working out from the text itself which stage of the parse refused it.
fn check_refusal(text: &str, answer: &Response) -> Result<(), TestCaseError> {
    prop_assert!(!answer.ok, "an error answer with ok = true: {answer:?}");
    prop_assert!(answer.result.is_none(), "an error answer with a result");
    let Some(error) = &answer.error else {
        return Err(TestCaseError::fail(format!("no error in {answer:?}")));
    };
    prop_assert!(
        PARSE_CODES.contains(&error.code.as_str()),
        "code {:?}",
        error.code
    );
    let message = error.message.as_str();
    match serde_json::from_str::<Value>(text) {
        Err(e) => {
            prop_assert_eq!(&error.code, code::BAD_REQUEST);
            prop_assert_eq!(message, format!("not JSON: {e}"));
            // serde_json says where: "... at line 1 column 7".
            prop_assert!(
                message.contains(" at line ") && message.contains(" column "),
                "no place in {message:?}"
            );
            prop_assert_eq!(&answer.id, &None);
        }
        Ok(Value::Object(object)) => {
            prop_assert_eq!(&answer.id, &object.get("id").cloned());
            match object.get("cmd").and_then(Value::as_str) {
                None => {
                    prop_assert_eq!(&error.code, code::BAD_REQUEST);
                    prop_assert_eq!(message, "missing `cmd`");
                }
                Some(cmd) if !Command::NAMES.contains(&cmd) => {
                    prop_assert_eq!(&error.code, code::UNKNOWN_COMMAND);
                    let named = format!("unknown command `{cmd}` (one of: ");
                    prop_assert!(message.starts_with(&named), "{message:?}");
                    for name in Command::NAMES {
                        prop_assert!(message.contains(name), "{name} not in {message:?}");
                    }
                }
                Some(cmd) => {
                    prop_assert_eq!(&error.code, code::BAD_ARGUMENTS);
                    let prefix = format!("{cmd}: ");
                    prop_assert!(
                        message.starts_with(&prefix) && message.len() > prefix.len(),
                        "{message:?} does not name the command and the fault"
                    );
                }
            }
        }
        Ok(_) => {
            prop_assert_eq!(&error.code, code::BAD_REQUEST);
            prop_assert_eq!(message, "a request is a JSON object");
            prop_assert_eq!(&answer.id, &None);
        }
    }
    Ok(())
}

/// Parses `text` and checks the answer: a request is a JSON object whose
/// `cmd` is a command and whose `id` is the object's; a refusal is checked
/// by [`check_refusal`].
fn check_line(text: &str) -> Result<(), TestCaseError> {
    match parse(text) {
        Ok(request) => {
            let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) else {
                return Err(TestCaseError::fail("a request that is no JSON object"));
            };
            let cmd = object.get("cmd").and_then(Value::as_str);
            prop_assert!(cmd.is_some_and(|c| Command::NAMES.contains(&c)));
            // `"id": null` reads as no id.
            let id = object.get("id").filter(|id| !id.is_null()).cloned();
            prop_assert_eq!(&request.id, &id);
            Ok(())
        }
        Err(answer) => check_refusal(text, &answer),
    }
}

/// What a request is, for comparing two: its JSON form.
fn as_json(request: &Request) -> Value {
    serde_json::to_value(request).expect("a request serialises")
}

// Generators of the grammar.

/// Numbers that come back exactly: at most 15 significant digits and a
/// small exponent (serde_json, as the daemon builds it, reads other
/// floats to within a few units in the last place, see
/// `a_float_comes_back_within_a_few_ulps`).
fn number() -> BoxedStrategy<f64> {
    prop_oneof![
        any::<i32>().prop_map(f64::from),
        (-999_999_999_999_999i64..=999_999_999_999_999, 0i32..=15)
            .prop_map(|(n, k)| n as f64 / 10f64.powi(k)),
        Just(0.0),
        Just(-0.0),
        Just(1e300),
        Just(5e-324),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        number().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        ".{0,16}",
        Just(String::new()),
        Just("/ws".to_string()),
        Just("10.0.0.0/8".to_string()),
        Just("news.{user}".to_string()),
        Just("\"\\\u{0}\u{7f}\u{2028}".to_string()),
    ]
    .boxed()
}

fn filter() -> BoxedStrategy<Filter> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(number()),
        prop::option::of(number()),
        prop::option::of(any::<usize>()),
    )
        .prop_map(
            |(route, user, ip, topic, min_idle_s, min_age_s, min_queue)| Filter {
                route,
                user,
                ip,
                topic,
                min_idle_s,
                min_age_s,
                min_queue,
            },
        )
        .boxed()
}

fn sort_key() -> impl Strategy<Value = SortKey> {
    prop::sample::select(SortKey::ALL.to_vec())
}

fn order() -> impl Strategy<Value = Order> {
    prop_oneof![Just(Order::Asc), Just(Order::Desc)]
}

fn list() -> BoxedStrategy<Command> {
    (
        filter(),
        prop::option::of(sort_key()),
        prop::option::of(order()),
        prop::option::of(any::<usize>()),
        prop::option::of(any::<usize>()),
    )
        .prop_map(|(filter, sort, order, offset, limit)| Command::List {
            filter,
            sort,
            order,
            offset,
            limit,
        })
        .boxed()
}

fn show() -> BoxedStrategy<Command> {
    any::<u64>().prop_map(|conn| Command::Show { conn }).boxed()
}

fn evict() -> BoxedStrategy<Command> {
    (
        prop::option::of(any::<u64>()),
        filter(),
        prop::option::of(text()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(conn, filter, reason, dry_run, all)| Command::Evict {
            conn,
            filter,
            reason,
            dry_run,
            all,
        })
        .boxed()
}

fn publish() -> BoxedStrategy<Command> {
    (text(), json_value())
        .prop_map(|(topic, data)| Command::Publish { topic, data })
        .boxed()
}

fn watch() -> BoxedStrategy<Command> {
    (
        prop::option::of(any::<u64>()),
        filter(),
        prop::option::of(sort_key()),
        prop::option::of(order()),
        prop::option::of(any::<usize>()),
        prop::option::of(any::<usize>()),
    )
        .prop_map(
            |(interval_ms, filter, sort, order, offset, limit)| Command::Watch {
                interval_ms,
                filter,
                sort,
                order,
                offset,
                limit,
            },
        )
        .boxed()
}

fn command() -> BoxedStrategy<Command> {
    prop_oneof![
        Just(Command::Stats {}),
        list(),
        show(),
        evict(),
        any::<bool>().prop_map(|dry_run| Command::Reload { dry_run }),
        prop::option::of(text()).prop_map(|timeout| Command::Drain { timeout }),
        publish(),
        Just(Command::Config {}),
        watch(),
    ]
    .boxed()
}

/// The commands that take a filter.
fn command_with_filter() -> BoxedStrategy<Command> {
    prop_oneof![list(), evict(), watch()].boxed()
}

/// The commands with a required argument.
fn command_with_required() -> BoxedStrategy<Command> {
    prop_oneof![show(), publish()].boxed()
}

fn request() -> BoxedStrategy<Request> {
    request_of(command())
}

/// A request with `command`: with an id (never `null`, which on the wire
/// is the same as no id) or without.
fn request_of(command: BoxedStrategy<Command>) -> BoxedStrategy<Request> {
    let id = json_value().prop_filter("null is no id", |id| !id.is_null());
    (prop::option::of(id), command)
        .prop_map(|(id, command)| Request {
            id,
            scope: Default::default(),
            command,
        })
        .boxed()
}

/// JSON whitespace, as a client may put it between tokens.
fn space() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,3}"
}

/// `object` as one line of JSON with its keys in the order `order` gives
/// (a permutation of their indices) and `spaces` around the tokens.
fn write_object(object: &Map<String, Value>, order: &[usize], spaces: &[String]) -> String {
    let entries: Vec<(&String, &Value)> = object.iter().collect();
    let mut spaces = spaces.iter().cycle();
    let mut space = || spaces.next().map(String::as_str).unwrap_or("");
    let mut out = format!("{}{{", space());
    for (n, &i) in order.iter().enumerate() {
        let (key, value) = entries[i];
        if n > 0 {
            out.push(',');
        }
        out.push_str(space());
        out.push_str(&serde_json::to_string(key).expect("a key serialises"));
        out.push_str(space());
        out.push(':');
        out.push_str(space());
        out.push_str(&serde_json::to_string(value).expect("a value serialises"));
        out.push_str(space());
    }
    out.push('}');
    out.push_str(space());
    out
}

/// The request's JSON object.
fn object_of(request: &Request) -> Map<String, Value> {
    match as_json(request) {
        Value::Object(object) => object,
        other => panic!("a request serialises as {other}"),
    }
}

/// The arguments of `request` as written that take one JSON type (`data`
/// and `id` take any).
fn typed_arguments(request: &Request) -> Vec<String> {
    object_of(request)
        .keys()
        .filter(|k| !["id", "cmd", "data"].contains(&k.as_str()))
        .cloned()
        .collect()
}

/// A value of another JSON type than `value`'s.
fn other_type(value: &Value) -> Value {
    match value {
        Value::String(_) => Value::from(7),
        _ => Value::from("seven"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_parsed_or_refused_with_a_reason(text in ".{0,64}") {
        check_line(&text)?;
    }

    #[test]
    fn any_bytes_read_as_a_line_are_parsed_or_refused_with_a_reason(
        bytes in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        check_line(&String::from_utf8_lossy(&bytes))?;
    }

    /// Random text is rarely JSON: these are JSON values, objects with a
    /// `cmd` among them, that get past the first stages.
    #[test]
    fn any_json_is_parsed_or_refused_with_a_reason(
        value in json_value(),
        cmd in prop_oneof![
            prop::sample::select(Command::NAMES.to_vec()).prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
            json_value(),
        ],
        id in prop::option::of(json_value()),
        fields in prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..4),
    ) {
        check_line(&value.to_string())?;
        let mut object: Map<String, Value> = fields.into_iter().collect();
        object.insert("cmd".into(), cmd);
        if let Some(id) = id {
            object.insert("id".into(), id);
        }
        check_line(&Value::Object(object).to_string())?;
    }

    #[test]
    fn every_request_round_trips(request in request()) {
        let line = serde_json::to_string(&request).expect("a request serialises");
        prop_assert!(!line.contains('\n'), "a request line holds a newline: {line}");
        match parse(&line) {
            Ok(back) => prop_assert_eq!(as_json(&back), as_json(&request), "line {}", line),
            Err(answer) => {
                return Err(TestCaseError::fail(format!("{line} refused: {answer:?}")));
            }
        }
    }

    /// Any finite float reads back as itself or a close neighbour:
    /// serde_json without its `float_roundtrip` feature reads about a
    /// third of random floats a unit or two in the last place off (at most
    /// 2 in 20 million; this allows 4), so an `id` or filter threshold of
    /// such a number is taken, and echoed, slightly changed.
    #[test]
    fn a_float_comes_back_within_a_few_ulps(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let line = format!("{{\"id\":{},\"cmd\":\"stats\"}}", Value::from(f));
        let request = parse(&line).map_err(|a| TestCaseError::fail(format!("{line}: {a:?}")))?;
        let back = request.id.as_ref().and_then(Value::as_f64);
        let Some(back) = back else {
            return Err(TestCaseError::fail(format!("{line}: id {:?}", request.id)));
        };
        let ulps = (i128::from(back.to_bits() as i64) - i128::from(f.to_bits() as i64)).abs();
        prop_assert!(ulps <= 4, "{line} read as {back:e} ({ulps} ulps off)");
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter(
        request in request(),
        order in any::<prop::sample::Selector>(),
        spaces in prop::collection::vec(space(), 1..16),
    ) {
        let object = object_of(&request);
        let mut keys: Vec<usize> = (0..object.len()).collect();
        let mut shuffled = Vec::with_capacity(keys.len());
        while !keys.is_empty() {
            let i = order.select(0..keys.len());
            shuffled.push(keys.remove(i));
        }
        let line = write_object(&object, &shuffled, &spaces);
        match parse(&line) {
            Ok(back) => prop_assert_eq!(as_json(&back), as_json(&request), "line {:?}", line),
            Err(answer) => {
                return Err(TestCaseError::fail(format!("{line:?} refused: {answer:?}")));
            }
        }
    }

    #[test]
    fn an_unknown_argument_is_named(
        request in request(),
        name in "[a-z_]{1,12}",
        value in json_value(),
    ) {
        let mut object = object_of(&request);
        let cmd = object["cmd"].as_str().expect("cmd is a string").to_string();
        prop_assume!(name != "id" && name != "cmd" && !arguments(&cmd).contains(&name.as_str()));
        object.insert(name.clone(), value);
        let message = refused_with_bad_arguments(object)?;
        let named = format!("{cmd}: unknown field `{name}`");
        prop_assert!(message.starts_with(&named), "{:?}", message);
    }

    #[test]
    fn an_unknown_filter_field_is_named(
        request in request_of(command_with_filter()),
        name in "[a-z_]{1,12}",
        value in json_value(),
    ) {
        prop_assume!(!["route", "user", "ip", "topic", "min_idle_s", "min_age_s", "min_queue"]
            .contains(&name.as_str()));
        let mut object = object_of(&request);
        let cmd = object["cmd"].as_str().expect("cmd is a string").to_string();
        let mut filter = match object.remove("filter") {
            Some(Value::Object(filter)) => filter,
            _ => Map::new(),
        };
        filter.insert(name.clone(), value);
        object.insert("filter".into(), Value::Object(filter));
        let message = refused_with_bad_arguments(object)?;
        let named = format!("{cmd}: unknown field `{name}`");
        prop_assert!(message.starts_with(&named), "{:?}", message);
    }

    #[test]
    fn a_missing_required_argument_is_named(
        request in request_of(command_with_required()),
        which in any::<Index>(),
    ) {
        let mut object = object_of(&request);
        let cmd = object["cmd"].as_str().expect("cmd is a string").to_string();
        let required: &[&str] = match cmd.as_str() {
            "show" => &["conn"],
            _ => &["topic", "data"],
        };
        let name = required[which.index(required.len())];
        object.remove(name);
        let message = refused_with_bad_arguments(object)?;
        prop_assert_eq!(message, format!("{cmd}: missing field `{name}`"));
    }

    /// A value of the wrong type is refused with the command, the type that
    /// was expected and the value that was given. (The message does not
    /// name the argument.)
    #[test]
    fn an_argument_of_the_wrong_type_is_refused(
        request in request().prop_filter("a typed argument", |r| !typed_arguments(r).is_empty()),
        which in any::<Index>(),
    ) {
        let typed = typed_arguments(&request);
        let mut object = object_of(&request);
        let cmd = object["cmd"].as_str().expect("cmd is a string").to_string();
        let name = &typed[which.index(typed.len())];
        let wrong = other_type(&object[name]);
        object.insert(name.clone(), wrong);
        let message = refused_with_bad_arguments(object)?;
        let invalid = format!("{cmd}: invalid type: ");
        prop_assert!(
            message.starts_with(&invalid) && message.contains(", expected "),
            "{:?}",
            message
        );
    }
}
