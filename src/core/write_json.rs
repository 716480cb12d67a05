//! JSON written straight into a `String`, byte for byte what `serde_json` writes (compact, keys in
//! their order), for the frames that carry whole messages: v11 events and answers, v12 requests
//! and a v11 link's calls.
//!
//! `serde_json` looks every byte of every string up in its escape table as it copies it, about
//! nine instructions a byte: a 4 000-byte text cost a `send_group_msg` call some 38 000
//! instructions that way. Here a string is first checked in one pass the compiler vectorises and,
//! when nothing in it needs escaping (chat text hardly ever holds a quote, a backslash or a
//! control character), copied as it is; otherwise it goes through `serde_json`. Writing a
//! `String` also spares the check for UTF-8 a WebSocket text frame made of bytes would need.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::core::message::Segment;

/// Writes `s` as a JSON string.
pub fn string(out: &mut String, s: &str) {
    let plain = s.bytes().fold(true, |plain, b| plain & (b >= 0x20 && b != b'"' && b != b'\\'));
    if plain {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Escaping a string cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Writes `n`. `Number`'s text is its JSON (itoa, ryu), as `serde_json` writes it; an integer
/// is written with itoa, without the formatting machinery (~150 instructions each).
pub fn number(out: &mut String, n: &serde_json::Number) {
    match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => out.push_str(itoa::Buffer::new().format(i)),
        (None, Some(u)) => out.push_str(itoa::Buffer::new().format(u)),
        (None, None) => {
            let _ = write!(out, "{n}");
        }
    }
}

/// Writes `v`. Its depth is what it was read with: documents from peers are refused past
/// [`crate::core::scan::MAX_DEPTH`] before they are read.
pub fn value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => number(out, n),
        Value::String(s) => string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => object(out, map),
    }
}

/// Writes `map` as a JSON object, its keys in their order.
pub fn object(out: &mut String, map: &Map<String, Value>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, k);
        out.push(':');
        value(out, v);
    }
    out.push('}');
}

/// Writes message segments as the JSON list [`Segment::list_into_value`] makes of them, without
/// making that list (a map per segment and per `data`, a `String` per key, every key hashed).
pub fn segments(out: &mut String, segments: &[Segment]) {
    out.push('[');
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"type\":");
        string(out, &segment.kind);
        out.push_str(",\"data\":{");
        for (j, (k, v)) in segment.data.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            string(out, k);
            out.push(':');
            value(out, v);
        }
        out.push_str("}}");
    }
    out.push(']');
}

/// `v` as JSON text.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    value(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let values = [
            json!(null),
            json!(true),
            json!([false, 0, -1, u64::MAX, i64::MIN, 1.5, 0.1, 1e300, -2.5e-8, 100.0]),
            json!({}),
            json!([]),
            json!({"b": 1, "a": [{"z": null}, "x"], "": ""}),
            json!("plain 今天 [x] & y"),
            json!("quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} del \u{7f} é 😀"),
            json!({"key \"quoted\"\n": "v", "message": [{"type": "text", "data": {"text": "a\r\nb"}}]}),
        ];
        for v in values {
            assert_eq!(to_string(&v), serde_json::to_string(&v).unwrap(), "{v:?}");
        }
    }

    /// Segments of every shape a message has: empty data, nested values, keys and texts that
    /// need escaping, a long text.
    fn sample_segments() -> Vec<Segment> {
        vec![
            Segment::text("plain 今天 [x]"),
            Segment::text("quote \" backslash \\ newline \n nul \u{0} 😀"),
            Segment::new("face").with("id", 1),
            Segment::new("image").with("file_id", "abc").with("url", Value::Null).with("sub", json!({"w": [1, 2.5]})),
            Segment::new("x-\"odd\"").with("key\n", true),
            Segment::new("empty"),
            Segment::text("long text ".repeat(500)),
        ]
    }

    #[test]
    fn segments_are_written_as_their_value_is() {
        let all = sample_segments();
        for n in 0..=all.len() {
            let some = &all[..n];
            let mut out = String::new();
            segments(&mut out, some);
            let value = Segment::list_into_value(some.to_vec());
            assert_eq!(out, serde_json::to_string(&value).unwrap(), "{some:?}");
        }
    }

    #[test]
    fn a_long_text_is_copied_whole_and_escaped_only_where_needed() {
        let long = "会议改到三点 [moved] & ok ".repeat(200);
        assert_eq!(to_string(&json!(long)), serde_json::to_string(&long).unwrap());
        let escaped = format!("{long}\"{long}");
        assert_eq!(to_string(&json!(escaped)), serde_json::to_string(&escaped).unwrap());
    }
}
