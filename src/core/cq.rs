//! CQ code strings: the OneBot v11 / go-cqhttp text form of a message, parsed into and rendered
//! from v11 [`Segment`]s.
//!
//! A CQ code is `[CQ:type,key=value,key=value]`; everything outside codes is plain text. Text
//! escapes `&` → `&amp;`, `[` → `&#91;`, `]` → `&#93;`; parameter values additionally escape
//! `,` → `&#44;`. Escaping is strict (those characters are always escaped). Unescaping decodes
//! `&#44;`, `&#91;`, `&#93;` and `&amp;` in a single left-to-right pass, which is equivalent to
//! decoding `&amp;` last: `&amp;#91;` becomes the literal text `&#91;`. Any other `&…` is kept.
//!
//! # Parsing policy (lenient)
//!
//! go-cqhttp drops the rest of the string on malformed input; this parser never loses text.
//!
//! 1. A `[` that does not start `[CQ:` (case-sensitive) is plain text. A `[CQ:` with no closing
//!    `]` makes the whole remainder literal text.
//! 2. A code is *malformed* when its type is empty after trimming (`[CQ:]`, `[CQ:,a=1]`), its type
//!    contains characters outside `[A-Za-z0-9_.-]`, a parameter has no `=` (`[CQ:face,id]`, also
//!    an empty parameter between two commas), or a key is empty after trimming. A malformed code's
//!    raw text, from `[` to `]` inclusive, becomes literal text and parsing continues after it.
//! 3. The type is everything up to the first `,` or `]`; a key is everything up to the first `=`
//!    of its parameter and a value everything after it up to the next `,` or `]` (so a value may
//!    contain `=`, or even a raw `[`). Type and keys are trimmed of surrounding ASCII whitespace;
//!    values are kept verbatim.
//! 4. Duplicate keys: the last value wins.
//! 5. One trailing comma (optionally followed by whitespace) is tolerated: `[CQ:face,id=1,]`.
//! 6. `[CQ:text,text=…]` becomes an ordinary text segment (other keys of it are ignored).
//! 7. Literal text, including text from rules 1, 2 and 6, is unescaped with the text rules, which
//!    also (leniently) decode `&#44;`. Adjacent text is merged into one text segment, empty text
//!    segments are never produced, and an empty input gives no segments.
//! 8. Every data value produced by parsing is a JSON string. Keys and values are unescaped with
//!    the value rules.
//!
//! # Rendering
//!
//! A `text` segment renders as its escaped `text` (nothing when empty or absent). Any other
//! segment renders `[CQ:type` and then `,key=value` for each data entry in order, values read
//! through [`value_as_text`] (`null` entries are skipped); type, keys and values are all escaped
//! with the value rules, so no segment can inject a code. `parse_cq(&render_cq(s))` gives `s`
//! back for any segments whose types are valid and not `text` and whose keys are non-empty,
//! trimmed and free of `=`.

use std::borrow::Cow;

use serde_json::Value;

use super::message::{value_as_text, Segment};

const CODE_OPEN: &str = "[CQ:";

/// Escapes plain text: `&`, `[` and `]`.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, false, &mut out);
    out
}

/// Escapes a parameter value (or type, or key): `&`, `[`, `]` and `,`.
pub fn escape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, true, &mut out);
    out
}

/// Unescapes plain text. Also decodes `&#44;`, so it is the same as [`unescape_value`].
pub fn unescape_text(s: &str) -> String {
    unescape_value(s)
}

/// Unescapes a parameter value: `&#44;`, `&#91;`, `&#93;`, then (in effect) `&amp;`.
pub fn unescape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    unescape_into(s, &mut out);
    out
}

/// Parses a CQ string into v11 segments, following the lenient policy in the module header.
pub fn parse_cq(input: &str) -> Vec<Segment> {
    parse_cq_at_most(input, usize::MAX).unwrap_or_default()
}

/// [`parse_cq`], giving up (`None`) as soon as the message has more than `max` segments: what a
/// bot sends is bounded in segments, not only in bytes (a 16 MiB string of `[CQ:face,id=1]` is a
/// million segments, each a few allocations).
pub fn parse_cq_at_most(input: &str, max: usize) -> Option<Vec<Segment>> {
    let bytes = input.as_bytes();
    let mut segments = Vec::new();
    let mut text = String::new(); // decoded text not yet emitted
    let mut literal_start = 0; // start of the raw run not yet decoded into `text`
    let mut pos = 0;
    // Byte searches (`memchr`, vectorised) for `[` and `]`: both are ASCII, so every index found
    // is a char boundary.
    while let Some(found) = memchr::memchr(b'[', &bytes[pos..]) {
        let open = pos + found;
        if !bytes[open..].starts_with(CODE_OPEN.as_bytes()) {
            pos = open + 1;
            continue;
        }
        let Some(len) = memchr::memchr(b']', &bytes[open..]) else {
            break; // unterminated: the remainder stays literal
        };
        let close = open + len;
        pos = close + 1;
        let Some(code) = parse_code(&input[open + CODE_OPEN.len()..close]) else {
            continue; // malformed: its raw text stays in the literal run
        };
        unescape_into(&input[literal_start..open], &mut text);
        literal_start = pos;
        if code.kind == "text" {
            if let Some(Value::String(t)) = code.data.get("text") {
                text.push_str(t);
            }
        } else {
            flush_text(&mut text, &mut segments);
            segments.push(code);
            if segments.len() > max {
                return None;
            }
        }
    }
    unescape_into(&input[literal_start..], &mut text);
    flush_text(&mut text, &mut segments);
    (segments.len() <= max).then_some(segments)
}

/// Renders v11 segments as a CQ string.
pub fn render_cq(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        render_segment(segment, &mut out);
    }
    out
}

/// Parses the body of a code (between `[CQ:` and `]`); `None` when it is malformed. Bodies are
/// short: plain byte loops find the commas (a vectorised search costs more to set up than it
/// saves here).
fn parse_code(body: &str) -> Option<Segment> {
    let comma = |s: &str| s.bytes().position(|b| b == b',');
    let (kind, mut rest) = match comma(body) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let kind = kind.trim_ascii();
    if !is_valid_type(kind) {
        return None;
    }
    let mut segment = Segment::new(kind);
    while let Some(params) = rest {
        // `,` and `=` are ASCII: every index found is a char boundary.
        let (part, next) = match comma(params) {
            Some(i) => (&params[..i], Some(&params[i + 1..])),
            None => (params, None),
        };
        rest = next;
        if rest.is_none() && part.trim_ascii().is_empty() {
            break; // trailing comma
        }
        let eq = part.bytes().position(|b| b == b'=')?;
        let key = part[..eq].trim_ascii();
        if key.is_empty() {
            return None;
        }
        let value = Value::String(unescape_value(&part[eq + 1..]));
        segment.data.insert(unescape_value(key), value);
    }
    Some(segment)
}

fn is_valid_type(kind: &str) -> bool {
    !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn flush_text(text: &mut String, segments: &mut Vec<Segment>) {
    if !text.is_empty() {
        segments.push(Segment::text(std::mem::take(text)));
    }
}

fn render_segment(segment: &Segment, out: &mut String) {
    if segment.kind == "text" {
        if let Some(text) = segment.data.get("text").and_then(value_text) {
            escape_into(&text, false, out);
        }
        return;
    }
    out.push_str(CODE_OPEN);
    escape_into(&segment.kind, true, out);
    for (key, value) in &segment.data {
        let Some(value) = value_text(value) else {
            continue;
        };
        out.push(',');
        escape_into(key, true, out);
        out.push('=');
        escape_into(&value, true, out);
    }
    out.push(']');
}

/// [`value_as_text`] without copying strings.
fn value_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        other => value_as_text(other).map(Cow::Owned),
    }
}

/// One-pass escape; `comma` selects the value rules.
fn escape_into(s: &str, comma: bool, out: &mut String) {
    let mut done = 0;
    for (i, byte) in s.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'[' => "&#91;",
            b']' => "&#93;",
            b',' if comma => "&#44;",
            _ => continue,
        };
        // `byte` is ASCII, so `i` and `i + 1` are char boundaries.
        out.push_str(&s[done..i]);
        out.push_str(entity);
        done = i + 1;
    }
    out.push_str(&s[done..]);
}

const ENTITIES: [(&str, char); 4] = [("&#44;", ','), ("&#91;", '['), ("&#93;", ']'), ("&amp;", '&')];

/// One-pass unescape. Decoded characters are never rescanned, which is what decoding `&amp;`
/// last means.
fn unescape_into(s: &str, out: &mut String) {
    out.reserve(s.len()); // decoding only shortens
    let mut rest = s;
    while let Some(i) = memchr::memchr(b'&', rest.as_bytes()) {
        // `&` is ASCII: `i` and `i + 1` are char boundaries.
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match ENTITIES.iter().find(|(entity, _)| tail.starts_with(entity)) {
            Some((entity, ch)) => {
                out.push(*ch);
                rest = &tail[entity.len()..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn text(s: &str) -> Segment {
        Segment::text(s)
    }

    fn code(kind: &str, pairs: &[(&str, &str)]) -> Segment {
        pairs.iter().fold(Segment::new(kind), |seg, (k, v)| seg.with(k, *v))
    }

    fn assert_literal(cq: &str, expected: &str) {
        assert_eq!(parse_cq(cq), vec![text(expected)], "input {cq:?}");
    }

    // ---- escaping -------------------------------------------------------------------------

    #[test]
    fn a_bounded_parse_gives_up_past_its_segment_count() {
        let codes = "[CQ:face,id=1]".repeat(3);
        assert_eq!(parse_cq_at_most(&codes, 3).map(|s| s.len()), Some(3));
        assert_eq!(parse_cq_at_most(&codes, 2), None);
        // Text between codes is a segment too; text merged across `[CQ:text]` is one.
        assert_eq!(parse_cq_at_most("a[CQ:face,id=1]b", 2), None);
        assert_eq!(parse_cq_at_most("a[CQ:text,text=b]c", 1).map(|s| s.len()), Some(1));
        assert_eq!(parse_cq_at_most(&codes, usize::MAX), Some(parse_cq(&codes)));
    }

    #[test]
    fn escape_text_table() {
        for (raw, escaped) in [
            ("", ""),
            ("plain 文本", "plain 文本"),
            ("a,b=c", "a,b=c"),
            ("&", "&amp;"),
            ("[", "&#91;"),
            ("]", "&#93;"),
            ("&#91;", "&amp;#91;"),
            ("- [x] …&data…", "- &#91;x&#93; …&amp;data…"),
        ] {
            assert_eq!(escape_text(raw), escaped, "escape_text({raw:?})");
            assert_eq!(unescape_text(escaped), raw, "unescape_text({escaped:?})");
        }
    }

    #[test]
    fn escape_value_table() {
        for (raw, escaped) in [
            ("", ""),
            ("a=b", "a=b"),
            (",", "&#44;"),
            ("a,[b]&c", "a&#44;&#91;b&#93;&amp;c"),
            ("&#44;", "&amp;#44;"),
            ("震惊,小伙", "震惊&#44;小伙"),
        ] {
            assert_eq!(escape_value(raw), escaped, "escape_value({raw:?})");
            assert_eq!(unescape_value(escaped), raw, "unescape_value({escaped:?})");
        }
    }

    #[test]
    fn unescape_decodes_amp_last_and_keeps_unknown_entities() {
        for (escaped, raw) in [
            ("&amp;#91;", "&#91;"),
            ("&amp;#44;", "&#44;"),
            ("&amp;amp;", "&amp;"),
            ("&#91;&#93;&#44;&amp;", "[],&"),
            ("&", "&"),
            ("a & b", "a & b"),
            ("&am", "&am"),
            ("&#45;&lt;", "&#45;&lt;"),
            ("&&amp;", "&&"),
        ] {
            assert_eq!(unescape_value(escaped), raw, "unescape_value({escaped:?})");
            assert_eq!(unescape_text(escaped), raw, "unescape_text({escaped:?})");
        }
    }

    #[test]
    fn spec_share_vectors() {
        let segs = parse_cq("[CQ:share,title=震惊&#44;小伙睡觉前居然...,url=http://baidu.com/?a=1&amp;b=2]");
        assert_eq!(
            segs,
            vec![code("share", &[("title", "震惊,小伙睡觉前居然..."), ("url", "http://baidu.com/?a=1&b=2")])]
        );
        let segs = parse_cq("[CQ:share,title=标题中有=等号,url=http://baidu.com]");
        assert_eq!(segs[0].str_of("title").as_deref(), Some("标题中有=等号"));
        let segs = parse_cq("[CQ:share,title=a=b,url=http://x]");
        assert_eq!(segs, vec![code("share", &[("title", "a=b"), ("url", "http://x")])]);
    }

    // ---- parse policy -----------------------------------------------------------------------

    #[test]
    fn empty_input_gives_no_segments() {
        assert!(parse_cq("").is_empty());
        assert!(parse_cq("[CQ:text,text=]").is_empty());
    }

    #[test]
    fn bracket_without_cq_prefix_is_text() {
        assert_literal("[x] [CQ [cq:face,id=1] a]", "[x] [CQ [cq:face,id=1] a]");
    }

    #[test]
    fn unterminated_code_keeps_remainder_as_text() {
        assert_literal("hi [CQ:face,id=1 &amp; more", "hi [CQ:face,id=1 & more");
        assert_eq!(
            parse_cq("a[CQ:face,id=1]b[CQ:at,qq=1"),
            vec![text("a"), code("face", &[("id", "1")]), text("b[CQ:at,qq=1")]
        );
    }

    #[test]
    fn empty_type_is_literal() {
        assert_literal("[CQ:]", "[CQ:]");
        assert_literal("[CQ:,a=1]", "[CQ:,a=1]");
        assert_literal("[CQ:  ,a=1]", "[CQ:  ,a=1]");
        assert_eq!(parse_cq("x[CQ:]y[CQ:face,id=1]"), vec![text("x[CQ:]y"), code("face", &[("id", "1")])]);
    }

    #[test]
    fn bad_type_chars_are_literal() {
        assert_literal("[CQ:fa ce,id=1]", "[CQ:fa ce,id=1]");
        assert_literal("[CQ:表情,id=1]", "[CQ:表情,id=1]");
        assert_literal("[CQ:a/b]", "[CQ:a/b]");
        assert_eq!(parse_cq("[CQ:my.ext-type_2,a=1]"), vec![code("my.ext-type_2", &[("a", "1")])]);
    }

    /// A peer's code with a great many parameters: every distinct key is kept once, in order, a
    /// repeated key keeps its first place with the last value (the data map's hash index keeps
    /// this linear; a vector searched per key would be quadratic here).
    #[test]
    fn a_code_with_many_parameters_keeps_each_key_once() {
        let n = 40_000;
        let mut cq = String::from("[CQ:x");
        for i in 0..n {
            cq.push_str(&format!(",k{i}=a"));
        }
        for i in 0..n {
            cq.push_str(&format!(",k{i}=b{i}"));
        }
        cq.push(']');
        let segs = parse_cq(&cq);
        assert_eq!(segs.len(), 1);
        let data = &segs[0].data;
        assert_eq!(data.len(), n);
        assert_eq!(data.keys().next().map(String::as_str), Some("k0"));
        assert_eq!(data.get("k39999"), Some(&json!("b39999")));
    }

    #[test]
    fn parameter_without_equals_or_key_is_literal() {
        assert_literal("[CQ:face,id]", "[CQ:face,id]");
        assert_literal("[CQ:face,id=1,,x=2]", "[CQ:face,id=1,,x=2]");
        assert_literal("[CQ:face,=1]", "[CQ:face,=1]");
        assert_literal("[CQ:face, =1]", "[CQ:face, =1]");
        // literal text is unescaped with the text rules, and parsing continues after it
        assert_eq!(parse_cq("[CQ:face,&amp;][CQ:face,id=2]"), vec![text("[CQ:face,&]"), code("face", &[("id", "2")])]);
    }

    #[test]
    fn type_and_keys_are_trimmed_values_verbatim() {
        assert_eq!(parse_cq("[CQ: face , id =  1 ]"), vec![code("face", &[("id", "  1 ")])]);
        assert_eq!(parse_cq("[CQ:face, id=1]"), vec![code("face", &[("id", "1")])]);
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let segs = parse_cq("[CQ:face,id=1,id=2]");
        assert_eq!(segs, vec![code("face", &[("id", "2")])]);
    }

    #[test]
    fn trailing_comma_is_tolerated() {
        assert_eq!(parse_cq("[CQ:face,id=1,]"), parse_cq("[CQ:face,id=1]"));
        assert_eq!(parse_cq("[CQ:face,id=1, ]"), parse_cq("[CQ:face,id=1]"));
        assert_eq!(parse_cq("[CQ:shake,]"), vec![Segment::new("shake")]);
    }

    #[test]
    fn cq_text_becomes_text_segment() {
        assert_eq!(parse_cq("[CQ:text,text=hello]"), vec![text("hello")]);
        assert_literal("a[CQ:text,text=b&#44;c&#93;]d", "ab,c]d");
    }

    #[test]
    fn comma_entity_in_text_is_decoded() {
        assert_literal("a&#44;b", "a,b");
    }

    #[test]
    fn adjacent_text_pieces_merge() {
        assert_literal("x[CQ:]y[CQ:text,text=z][CQ:text]w[CQ:bad", "x[CQ:]yzw[CQ:bad");
        let segs = parse_cq("[CQ:face,id=1][CQ:text,text=][CQ:face,id=2]");
        assert_eq!(segs.len(), 2);
    }

    #[test]
    fn cjk_and_emoji_text() {
        let cq = "你好🌍[CQ:face,id=1]世界👋🏽&amp;";
        let segs = parse_cq(cq);
        assert_eq!(segs, vec![text("你好🌍"), code("face", &[("id", "1")]), text("世界👋🏽&")]);
        assert_eq!(render_cq(&segs), cq);
    }

    #[test]
    fn parsed_values_are_strings() {
        let segs = parse_cq("[CQ:at,qq=123,flag=true]");
        assert_eq!(segs[0].data.get("qq"), Some(&json!("123")));
        assert_eq!(segs[0].data.get("flag"), Some(&json!("true")));
    }

    // ---- render -----------------------------------------------------------------------------

    #[test]
    fn render_mixed_text_and_codes() {
        let segs = [text("hi [1]"), code("face", &[("id", "1")]), text(""), text("a,b&c"), Segment::new("shake")];
        assert_eq!(render_cq(&segs), "hi &#91;1&#93;[CQ:face,id=1]a,b&amp;c[CQ:shake]");
    }

    #[test]
    fn render_escapes_values() {
        let seg = code("share", &[("url", "http://x/?a=1&b=2"), ("title", "a,b[c]")]);
        assert_eq!(render_cq(&[seg]), "[CQ:share,url=http://x/?a=1&amp;b=2,title=a&#44;b&#91;c&#93;]");
    }

    #[test]
    fn render_non_string_values() {
        let seg = Segment::new("at")
            .with("qq", 123)
            .with("flag", true)
            .with("gone", Value::Null)
            .with("ratio", 1.5)
            .with("obj", json!({"a": [1, 2]}));
        assert_eq!(render_cq(&[seg]), "[CQ:at,qq=123,flag=true,ratio=1.5,obj={\"a\":&#91;1&#44;2&#93;}]");
        assert_eq!(render_cq(&[Segment::new("text").with("text", 7)]), "7");
        assert_eq!(render_cq(&[Segment::new("text")]), "");
    }

    #[test]
    fn render_cannot_inject_codes_through_type() {
        let rendered = render_cq(&[Segment::new("x][CQ:face")]);
        assert_eq!(rendered, "[CQ:x&#93;&#91;CQ:face]");
        assert_eq!(parse_cq(&rendered), vec![text("[CQ:x][CQ:face]")]);
    }

    // ---- data-driven cases ------------------------------------------------------------------

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        cq: String,
        segments: Vec<Segment>,
        #[serde(default)]
        roundtrip: bool,
    }

    #[test]
    fn fixture_cases() {
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("../../tests/fixtures/cq/cases.json")).expect("cases.json is valid");
        assert!(cases.len() >= 20);
        for case in &cases {
            let parsed = parse_cq(&case.cq);
            assert_eq!(parsed, case.segments, "case {:?}", case.name);
            if case.roundtrip {
                assert_eq!(render_cq(&parsed), case.cq, "roundtrip {:?}", case.name);
            }
        }
    }

    // ---- properties -------------------------------------------------------------------------

    /// Merges adjacent text segments and drops empty ones: what parsing a rendering yields.
    fn normalise(segments: Vec<Segment>) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for seg in segments {
            if seg.kind != "text" {
                out.push(seg);
                continue;
            }
            let piece = seg.str_of("text").unwrap_or_default();
            if piece.is_empty() {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.kind == "text" => {
                    let merged = last.str_of("text").unwrap_or_default() + &piece;
                    *last = Segment::text(merged);
                }
                _ => out.push(Segment::text(piece)),
            }
        }
        out
    }

    fn cq_heavy() -> impl Strategy<Value = String> {
        let alphabet: Vec<char> = "[],=&#;CQ:0149 atex表".chars().collect();
        prop::collection::vec(prop::sample::select(alphabet), 0..80).prop_map(|chars| chars.into_iter().collect())
    }

    fn segment() -> impl Strategy<Value = Segment> {
        let code = (
            "[a-z]{1,8}".prop_filter("not text", |k| k != "text"),
            prop::collection::vec(("[a-z_]{1,6}", any::<String>()), 0..4),
        )
            .prop_map(|(kind, pairs)| pairs.into_iter().fold(Segment::new(kind), |seg, (k, v)| seg.with(&k, v)));
        prop_oneof![any::<String>().prop_map(Segment::text), code]
    }

    fn assert_well_formed(segments: &[Segment]) {
        for pair in segments.windows(2) {
            assert!(!(pair[0].kind == "text" && pair[1].kind == "text"));
        }
        for seg in segments {
            assert!(seg.data.values().all(Value::is_string));
            if seg.kind == "text" {
                assert!(!seg.str_of("text").unwrap_or_default().is_empty());
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_strings(s in any::<String>()) {
            assert_well_formed(&parse_cq(&s));
        }

        #[test]
        fn parse_never_panics_on_cq_heavy_strings(s in cq_heavy()) {
            let parsed = parse_cq(&s);
            assert_well_formed(&parsed);
            // parsing is a fixed point of render∘parse
            prop_assert_eq!(parse_cq(&render_cq(&parsed)), parsed);
        }

        #[test]
        fn render_then_parse_round_trips(segs in prop::collection::vec(segment(), 0..6)) {
            prop_assert_eq!(parse_cq(&render_cq(&segs)), normalise(segs));
        }

        #[test]
        fn escaped_text_parses_as_itself(s in any::<String>()) {
            let expected = if s.is_empty() { vec![] } else { vec![Segment::text(s.clone())] };
            prop_assert_eq!(parse_cq(&escape_text(&s)), expected);
        }

        #[test]
        fn value_escape_round_trips(s in any::<String>()) {
            prop_assert_eq!(unescape_value(&escape_value(&s)), s);
        }
    }
}
