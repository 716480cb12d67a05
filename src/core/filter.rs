//! go-cqhttp's event filter: a JSON file of conditions on the v11 event, evaluated before an
//! event is sent to one server (bot endpoint). Same language, same answers:
//!
//! - an object is an implicit `.and` of its keys; a key starting with `.` is an operator, any
//!   other key is a path into the event (`sender.sex`, `message.0.type`), and its value is a
//!   nested `.and` on that part of the event when it is an object, else an `.eq`;
//! - `.not` (object), `.and` (object), `.or` (array of objects);
//! - `.eq` / `.neq` compare **string forms** (`123` equals `"123"`; a missing key is `""`, so
//!   `null` matches it); `.in` with an array is membership of the string form, with a string it
//!   asks whether the event's value is a substring of it; `.contains` is substring the other
//!   way; `.regex` is an unanchored regular expression.
//!
//! String forms follow gjson, which go-cqhttp used: strings as they are, numbers, booleans and
//! `null` as JSON text (`null` and missing as `""`), arrays and objects as compact JSON. Paths
//! take `.`-separated keys (`\.` for a literal dot), array indexes, and `#` for an array's length.
//!
//! Unlike go-cqhttp, which panicked inside the loader and then ran with no filter at all, a
//! broken filter is an error here: at start it stops the bridge with the reason, and on reload
//! the previous filter stays in force (see `reload_event_filter`).

use serde_json::Value;

/// A compiled filter.
#[derive(Debug)]
pub struct EventFilter {
    root: Node,
}

#[derive(Debug)]
enum Node {
    Not(Box<Node>),
    And(Vec<(Option<Vec<String>>, Node)>),
    Or(Vec<Node>),
    Eq(String),
    Neq(String),
    InList(Vec<String>),
    InString(String),
    Contains(String),
    Regex(regex::Regex),
}

/// Why a filter does not compile, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event filter{}: {reason}", if at.is_empty() { String::new() } else { format!(" at {at}") })]
pub struct FilterError {
    /// Where the offending part is, keys joined by `/` (`.or[1]/raw_message/.regex`).
    pub at: String,
    pub reason: String,
}

/// Nesting deeper than this is refused (a filter is written by hand; this only stops a
/// pathological file from exhausting the stack).
const MAX_DEPTH: usize = 64;

impl EventFilter {
    /// Compiles a filter from its JSON text.
    pub fn parse(text: &str) -> Result<EventFilter, FilterError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| FilterError { at: String::new(), reason: format!("not JSON: {e}") })?;
        EventFilter::from_value(&value)
    }

    pub fn from_value(value: &Value) -> Result<EventFilter, FilterError> {
        Ok(EventFilter { root: compile("and", value, "", 0)? })
    }

    /// Whether the event passes (is sent).
    pub fn matches(&self, event: &Value) -> bool {
        eval(&self.root, Some(event))
    }
}

fn err(at: &str, reason: impl Into<String>) -> FilterError {
    FilterError { at: at.to_owned(), reason: reason.into() }
}

fn compile(op: &str, arg: &Value, at: &str, depth: usize) -> Result<Node, FilterError> {
    if depth > MAX_DEPTH {
        return Err(err(at, format!("nested deeper than {MAX_DEPTH}")));
    }
    Ok(match op {
        "not" => {
            if !arg.is_object() {
                return Err(err(at, "the argument of .not must be an object"));
            }
            Node::Not(Box::new(compile("and", arg, at, depth + 1)?))
        }
        "and" => {
            let Value::Object(map) = arg else {
                return Err(err(at, "the argument of .and must be an object"));
            };
            let mut operands = Vec::with_capacity(map.len());
            for (key, value) in map {
                let here = if at.is_empty() { key.clone() } else { format!("{at}/{key}") };
                if let Some(op) = key.strip_prefix('.') {
                    operands.push((None, compile(op, value, &here, depth + 1)?));
                } else {
                    let path = split_path(key);
                    let inner = if value.is_object() { "and" } else { "eq" };
                    operands.push((Some(path), compile(inner, value, &here, depth + 1)?));
                }
            }
            Node::And(operands)
        }
        "or" => {
            let Value::Array(list) = arg else {
                return Err(err(at, "the argument of .or must be an array"));
            };
            let mut operands = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                operands.push(compile("and", item, &format!("{at}[{i}]"), depth + 1)?);
            }
            Node::Or(operands)
        }
        "eq" => Node::Eq(string_form(Some(arg))),
        "neq" => Node::Neq(string_form(Some(arg))),
        "in" => match arg {
            Value::Object(_) => return Err(err(at, "the argument of .in must be an array or a string")),
            Value::Array(list) => Node::InList(list.iter().map(|v| string_form(Some(v))).collect()),
            other => Node::InString(string_form(Some(other))),
        },
        "contains" => match arg {
            Value::Object(_) | Value::Array(_) => return Err(err(at, "the argument of .contains must be a string")),
            other => Node::Contains(string_form(Some(other))),
        },
        "regex" => match arg {
            Value::Object(_) | Value::Array(_) => return Err(err(at, "the argument of .regex must be a string")),
            other => {
                let pattern = string_form(Some(other));
                let re = regex::RegexBuilder::new(&pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| err(at, format!("bad regular expression: {e}")))?;
                Node::Regex(re)
            }
        },
        other => return Err(err(at, format!("the operator .{other} is not supported"))),
    })
}

fn eval(node: &Node, payload: Option<&Value>) -> bool {
    match node {
        Node::Not(inner) => !eval(inner, payload),
        Node::And(operands) => operands.iter().all(|(path, op)| match path {
            None => eval(op, payload),
            Some(path) => eval(op, lookup(payload, path).as_ref().map(Looked::value)),
        }),
        Node::Or(operands) => operands.iter().any(|op| eval(op, payload)),
        Node::Eq(want) => string_form(payload) == *want,
        Node::Neq(want) => string_form(payload) != *want,
        Node::InList(list) => list.contains(&string_form(payload)),
        Node::InString(haystack) => haystack.contains(string_form(payload).as_str()),
        Node::Contains(needle) => string_form(payload).contains(needle.as_str()),
        Node::Regex(re) => re.is_match(&string_form(payload)),
    }
}

/// A path into the event: keys split on `.`, with `\.` a literal dot.
fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '.' => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// What a path found: a part of the event, or a number computed from it (`#`).
enum Looked<'a> {
    Borrowed(&'a Value),
    Owned(Value),
}

impl Looked<'_> {
    fn value(&self) -> &Value {
        match self {
            Looked::Borrowed(v) => v,
            Looked::Owned(v) => v,
        }
    }
}

fn lookup<'a>(payload: Option<&'a Value>, path: &[String]) -> Option<Looked<'a>> {
    let mut current = payload?;
    for (i, key) in path.iter().enumerate() {
        current = match current {
            Value::Object(map) => map.get(key.as_str())?,
            Value::Array(list) if key == "#" && i + 1 == path.len() => {
                return Some(Looked::Owned(Value::from(list.len())));
            }
            Value::Array(list) => list.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(Looked::Borrowed(current))
}

/// gjson's `String()` of a value: missing and `null` are `""`.
fn string_form(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(group_id: i64, user_id: i64, raw: &str) -> Value {
        json!({
            "post_type": "message", "message_type": "group", "sub_type": "normal",
            "group_id": group_id, "user_id": user_id, "raw_message": raw, "message": raw,
            "sender": {"user_id": user_id, "nickname": "n", "sex": "female", "role": "member"},
            "self_id": 10001, "time": 1, "message_id": 7, "font": 0
        })
    }

    fn private(user_id: i64, raw: &str) -> Value {
        json!({
            "post_type": "message", "message_type": "private", "sub_type": "friend",
            "user_id": user_id, "raw_message": raw,
            "message": [{"type": "text", "data": {"text": raw}}],
            "sender": {"user_id": user_id, "nickname": "n"}, "self_id": 10001
        })
    }

    fn heartbeat() -> Value {
        json!({"post_type": "meta_event", "meta_event_type": "heartbeat", "self_id": 10001, "interval": 5000})
    }

    /// (filter, event, passes)
    fn table() -> Vec<(Value, Value, bool)> {
        vec![
            // go-cqhttp's documented example: every private message; group 123456's messages that
            // contain 啦啦啦; group 12345's messages that are only digits.
            (documented(), private(1, "hi"), true),
            (documented(), group(123456, 1, "一起啦啦啦吧"), true),
            (documented(), group(123456, 1, "hello"), false),
            (documented(), group(12345, 1, "2024"), true),
            (documented(), group(12345, 1, "20x24"), false),
            (documented(), group(999, 1, "啦啦啦"), false),
            (documented(), heartbeat(), false),
            // String forms: a number equals its text, both ways.
            (json!({"group_id": "123"}), group(123, 1, ""), true),
            (json!({"group_id": 123}), group(123, 1, ""), true),
            (json!({"group_id": {".neq": 123}}), group(123, 1, ""), false),
            // A missing key is "", so null and "" match it.
            (json!({"group_id": null}), private(1, "x"), true),
            (json!({"group_id": ""}), private(1, "x"), true),
            (json!({"group_id": null}), group(1, 1, "x"), false),
            // Nested keys, array indexes and lengths.
            (json!({"sender.sex": "female"}), group(1, 1, ""), true),
            (json!({"sender": {"sex": "male"}}), group(1, 1, ""), false),
            (json!({"message.0.type": "text"}), private(1, "x"), true),
            (json!({"message.#": 1}), private(1, "x"), true),
            (json!({"message.0.type": "text"}), group(1, 1, "x"), false),
            // .in with an array: membership; with a string: the value is a substring of it.
            (json!({"user_id": {".in": [1, 2, 3]}}), private(2, ""), true),
            (json!({"user_id": {".in": [1, 2, 3]}}), private(4, ""), false),
            (json!({"message_type": {".in": "private group"}}), private(4, ""), true),
            (json!({"message_type": {".in": "group"}}), private(4, ""), false),
            // .contains and .regex on strings, unanchored.
            (json!({"raw_message": {".contains": "bot"}}), private(1, "hey bot!"), true),
            (json!({"raw_message": {".regex": "b.t"}}), private(1, "a bat"), true),
            (json!({"raw_message": {".regex": "^b.t$"}}), private(1, "a bat"), false),
            // .not, .and, .or.
            (json!({".not": {"user_id": 1}}), private(1, ""), false),
            (json!({".not": {"user_id": 1}}), private(2, ""), true),
            (json!({".and": {"post_type": "message", "user_id": 2}}), private(2, ""), true),
            (json!({".or": [{"user_id": 1}, {"user_id": 2}]}), private(3, ""), false),
            (json!({".or": []}), private(3, ""), false),
            // An empty filter lets everything through.
            (json!({}), heartbeat(), true),
            // Only heartbeats dropped: the common "no heartbeat" filter.
            (json!({"meta_event_type": {".neq": "heartbeat"}}), heartbeat(), false),
            (json!({"meta_event_type": {".neq": "heartbeat"}}), private(1, ""), true),
            // An object compared as compact JSON text.
            (json!({"message": {".contains": "\"type\":\"text\""}}), private(1, "x"), true),
            // A literal dot in a key.
            (json!({"a\\.b": 1}), json!({"a.b": 1}), true),
        ]
    }

    fn documented() -> Value {
        json!({
            ".or": [
                {"message_type": "private"},
                {"message_type": "group", "group_id": {".in": [123456]}, "raw_message": {".contains": "啦啦啦"}},
                {"group_id": 12345, "raw_message": {".regex": "^\\d+$"}}
            ]
        })
    }

    #[test]
    fn the_filter_language_decides_as_go_cqhttp() {
        for (filter, event, want) in table() {
            let compiled = EventFilter::from_value(&filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
            assert_eq!(compiled.matches(&event), want, "filter {filter} on {event}");
        }
    }

    #[test]
    fn broken_filters_say_what_and_where() {
        let cases = [
            ("{", "not JSON"),
            ("[]", "argument of .and must be an object"),
            (r#"{".not": [1]}"#, "at .not"),
            (r#"{".or": {"a": 1}}"#, "argument of .or must be an array"),
            (r#"{"a": {".in": {"x": 1}}}"#, "at a/.in"),
            (r#"{"a": {".contains": [1]}}"#, ".contains must be a string"),
            (r#"{"a": {".regex": "("}}"#, "bad regular expression"),
            (r#"{"a": {".like": "x"}}"#, "the operator .like is not supported"),
            (r#"{".or": [{"a": 1}, {".nope": 1}]}"#, "at .or[1]/.nope"),
        ];
        for (text, want) in cases {
            let error = EventFilter::parse(text).unwrap_err().to_string();
            assert!(error.contains(want), "{text}: {error}");
        }
        let deep = format!("{}{}", r#"{".not":"#.repeat(100), "}".repeat(100)).replace(":}", ":{}}");
        assert!(EventFilter::parse(&deep).is_err());
    }
}
