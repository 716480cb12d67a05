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

use super::message::{value_as_text, CompactString, Data, Segment};

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
    let mut segments = Vec::with_capacity(segments_bound(bytes, max));
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

/// Room for every segment `input` can give, so the list is allocated once: each code ends at a
/// `]` and adds at most two segments (itself and the text before it), plus the text after the
/// last. Counting is one vectorised pass. Capped by `max` and by [`RESERVED_SEGMENTS`], so input
/// full of stray `]` cannot make it reserve much; a longer message grows its list from there.
fn segments_bound(input: &[u8], max: usize) -> usize {
    let closes = memchr::memchr_iter(b']', input).count();
    closes.saturating_mul(2).saturating_add(1).min(max.saturating_add(1)).min(RESERVED_SEGMENTS)
}

/// At most this many segments (56 KiB) are reserved ahead.
const RESERVED_SEGMENTS: usize = 1024;

/// Renders v11 segments as a CQ string.
pub fn render_cq(segments: &[Segment]) -> String {
    // Sized once for the text without escapes, rather than grown step by step; a long text
    // with escapes makes room for them itself ([`escape_into`]), and [`RENDER_ROOM`] covers a
    // few escapes elsewhere.
    let size: usize = segments
        .iter()
        .map(|seg| {
            let data: usize = seg.data.iter().map(|(k, v)| k.len() + v.as_str().map_or(8, str::len) + 2).sum();
            CODE_OPEN.len() + seg.kind.len() + data + 1
        })
        .sum();
    let mut out = String::with_capacity(size + RENDER_ROOM);
    for segment in segments {
        render_segment(segment, &mut out);
    }
    out
}

/// Parses the body of a code (between `[CQ:` and `]`); `None` when it is malformed.
///
/// The first few parameters are found and checked before anything is allocated, so the data is
/// allocated once at its size (and a malformed code allocates nothing); a code with more grows
/// its data as it goes.
fn parse_code(body: &str) -> Option<Segment> {
    let type_end = body.bytes().position(|b| b == b',').unwrap_or(body.len());
    let kind = body[..type_end].trim_ascii();
    if !is_valid_type(kind) {
        return None;
    }
    let mut params = Params { body, start: type_end + 1 };
    let mut head = [Param::default(); HEAD_PARAMS];
    let mut found = 0;
    for slot in &mut head {
        match params.next() {
            Some(param) => *slot = param?,
            None => break,
        }
        found += 1;
    }
    let mut segment = Segment { kind: kind.into(), data: Data::with_capacity(found) };
    // As written, distinct keys stay distinct decoded unless an entity is involved: those go
    // through the search for a repeated key, the others are appended.
    let plain = head[..found].iter().enumerate().all(|(i, p)| !p.amp && head[..i].iter().all(|q| q.key != p.key));
    for (i, param) in head[..found].iter().copied().map(Some).chain(params).enumerate() {
        let (key, value) = param?.decode();
        if plain && i < found {
            segment.data.push_new(key, Value::String(value));
        } else {
            segment.data.insert(key, Value::String(value));
        }
    }
    Some(segment)
}

/// How many parameters of a code [`parse_code`] checks before allocating.
const HEAD_PARAMS: usize = 4;

/// One `key=value` parameter of a code, as written.
#[derive(Clone, Copy, Default)]
struct Param<'a> {
    key: &'a str,   // trimmed, non-empty
    value: &'a str, // verbatim
    amp: bool,      // key or value has an `&`: only then is anything decoded
}

impl Param<'_> {
    fn decode(self) -> (CompactString, String) {
        match self.amp {
            true => (unescape_value(self.key).into(), unescape_value(self.value)),
            false => (self.key.into(), self.value.to_owned()),
        }
    }
}

/// The parameters of a code body after its type: `None` for a malformed one (no `=`, or an empty
/// key), after which the caller stops.
struct Params<'a> {
    body: &'a str,
    start: usize, // first byte of the next parameter; past the end when there is none
}

impl<'a> Iterator for Params<'a> {
    type Item = Option<Param<'a>>;

    fn next(&mut self) -> Option<Option<Param<'a>>> {
        // `,`, `=` and `&` are ASCII: every index found is a char boundary. Keys are short, so a
        // byte loop finds the `=`; values may be long (URLs), so a vectorised search finds the
        // `,` that ends them, noting an `&` on the way.
        let (body, bytes, start) = (self.body, self.body.as_bytes(), self.start);
        if start > bytes.len() {
            return None;
        }
        let mut amp = false;
        let mut eq = start;
        loop {
            match bytes.get(eq) {
                Some(b'=') => break,
                Some(b',') => {
                    self.start = bytes.len() + 1;
                    return Some(None); // no `=` before the next parameter
                }
                Some(b'&') => amp = true,
                Some(_) => {}
                None => {
                    self.start = eq + 1;
                    // The last parameter: blank after one trailing comma is tolerated, text is not.
                    return (!body[start..].trim_ascii().is_empty()).then_some(None);
                }
            }
            eq += 1;
        }
        let key = body[start..eq].trim_ascii();
        if key.is_empty() {
            self.start = bytes.len() + 1;
            return Some(None);
        }
        let from = eq + 1;
        let end = match find_either(b',', b'&', &bytes[from..]).map(|i| from + i) {
            None => bytes.len(),
            Some(i) if bytes[i] == b',' => i,
            Some(i) => {
                amp = true;
                memchr::memchr(b',', &bytes[i..]).map_or(bytes.len(), |j| i + j)
            }
        };
        self.start = end + 1;
        Some(Some(Param { key, value: &body[from..end], amp }))
    }
}

/// [`memchr::memchr2`], with a byte loop for short haystacks, where it costs less than setting
/// up a vector search.
fn find_either(a: u8, b: u8, haystack: &[u8]) -> Option<usize> {
    match haystack.len() {
        0..16 => haystack.iter().position(|&x| x == a || x == b),
        _ => memchr::memchr2(a, b, haystack),
    }
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

/// Bytes a CQ string is given beyond the length of what it renders, for a few escapes.
const RENDER_ROOM: usize = 32;
/// A text this long or longer that has something to escape makes room for all its escapes at
/// once, counted first.
const COUNTED_FROM: usize = 256;

/// How many bytes of `s` are `&`, `[` or `]`: counted without branches into one byte per lane,
/// 255 bytes at a time, which the compiler turns into a few vector instructions per 16 bytes
/// (a plain `filter().count()` took about eight instructions a byte).
fn text_escapes(s: &[u8]) -> usize {
    s.chunks(255)
        .map(|chunk| chunk.iter().fold(0u8, |n, &b| n + u8::from(matches!(b, b'&' | b'[' | b']'))) as usize)
        .sum()
}

/// One-pass escape; `comma` selects the value rules.
fn escape_into(s: &str, comma: bool, out: &mut String) {
    if !comma {
        // Text, often long: a vectorised search for the three characters text escapes.
        let bytes = s.as_bytes();
        let Some(first) = memchr::memchr3(b'&', b'[', b']', bytes) else {
            out.push_str(s);
            return;
        };
        if s.len() >= COUNTED_FROM {
            // Each escape adds four bytes: room for all of them now, while little is written
            // (the caller sized the string for the text as it is), rather than the whole
            // string copied into a larger one once they outgrow it.
            let room = (out.capacity() - out.len()).max(s.len());
            out.reserve_exact(room + 4 * text_escapes(&bytes[first..]));
        }
        let mut done = 0;
        for i in memchr::memchr3_iter(b'&', b'[', b']', &bytes[first..]) {
            // The byte is ASCII, so `i` and `i + 1` are char boundaries.
            let i = first + i;
            out.push_str(&s[done..i]);
            out.push_str(entity(bytes[i]));
            done = i + 1;
        }
        out.push_str(&s[done..]);
        return;
    }
    let mut done = 0;
    for (i, byte) in s.bytes().enumerate() {
        if !matches!(byte, b'&' | b'[' | b']' | b',') {
            continue;
        }
        // `byte` is ASCII, so `i` and `i + 1` are char boundaries.
        out.push_str(&s[done..i]);
        out.push_str(entity(byte));
        done = i + 1;
    }
    out.push_str(&s[done..]);
}

/// The entity CQ writes for one of the characters it escapes.
fn entity(byte: u8) -> &'static str {
    match byte {
        b'&' => "&amp;",
        b'[' => "&#91;",
        b']' => "&#93;",
        _ => "&#44;",
    }
}

/// One-pass unescape. Decoded characters are never rescanned, which is what decoding `&amp;`
/// last means.
fn unescape_into(s: &str, out: &mut String) {
    if s.is_empty() {
        return; // between two adjacent codes: nothing to allocate or search
    }
    // Decoding only shortens. An empty `out` is allocated at once rather than grown.
    if out.capacity() == 0 {
        *out = String::with_capacity(s.len());
    } else {
        out.reserve(s.len());
    }
    let mut rest = s;
    while let Some(i) = memchr::memchr(b'&', rest.as_bytes()) {
        // `&` is ASCII: `i` and `i + 1` are char boundaries.
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // Every entity is five ASCII bytes, so `&tail[5..]` is at a char boundary.
        let decoded = match tail.as_bytes() {
            [b'&', b'#', b'4', b'4', b';', ..] => Some(','),
            [b'&', b'#', b'9', b'1', b';', ..] => Some('['),
            [b'&', b'#', b'9', b'3', b';', ..] => Some(']'),
            [b'&', b'a', b'm', b'p', b';', ..] => Some('&'),
            _ => None,
        };
        match decoded {
            Some(ch) => {
                out.push(ch);
                rest = &tail[5..];
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
        assert_eq!(data.keys().next(), Some("k0"));
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

    // ---- the parser against a plain model of its policy --------------------------------------

    /// The parsing policy of the module header written as plainly as possible (whole-string
    /// searches, a char-by-char unescape, a segment built parameter by parameter): the model the
    /// parser's byte searches, short-cuts and pre-sized allocations must agree with.
    fn model_parse(input: &str) -> Vec<Segment> {
        let mut segments = Vec::new();
        let mut literal = String::new(); // raw text not yet decoded
        let mut text = String::new(); // decoded text not yet emitted
        let mut rest = input;
        while let Some(open) = rest.find(CODE_OPEN) {
            let Some(len) = rest[open..].find(']') else {
                break;
            };
            let close = open + len;
            match model_code(&rest[open + CODE_OPEN.len()..close]) {
                None => literal.push_str(&rest[..=close]),
                Some(code) => {
                    literal.push_str(&rest[..open]);
                    text.push_str(&model_unescape(&std::mem::take(&mut literal)));
                    if code.kind == "text" {
                        text.push_str(&code.str_of("text").unwrap_or_default());
                    } else {
                        if !text.is_empty() {
                            segments.push(Segment::text(std::mem::take(&mut text)));
                        }
                        segments.push(code);
                    }
                }
            }
            rest = &rest[close + 1..];
        }
        literal.push_str(rest);
        text.push_str(&model_unescape(&literal));
        if !text.is_empty() {
            segments.push(Segment::text(text));
        }
        segments
    }

    fn model_code(body: &str) -> Option<Segment> {
        let (kind, params) = match body.split_once(',') {
            Some((kind, params)) => (kind, Some(params)),
            None => (body, None),
        };
        let kind = kind.trim_ascii();
        let valid = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
        if kind.is_empty() || !kind.bytes().all(valid) {
            return None;
        }
        let mut segment = Segment::new(kind);
        let parts: Vec<&str> = params.map(|p| p.split(',').collect()).unwrap_or_default();
        for (i, part) in parts.iter().enumerate() {
            if i + 1 == parts.len() && part.trim_ascii().is_empty() {
                break;
            }
            let (key, value) = part.split_once('=')?;
            let key = key.trim_ascii();
            if key.is_empty() {
                return None;
            }
            segment.data.insert(model_unescape(key), Value::String(model_unescape(value)));
        }
        Some(segment)
    }

    fn model_unescape(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let entity = [("&#44;", ','), ("&#91;", '['), ("&#93;", ']'), ("&amp;", '&')]
                .into_iter()
                .find(|(entity, _)| rest.starts_with(entity));
            let (ch, len) = entity.map_or((c, c.len_utf8()), |(entity, ch)| (ch, entity.len()));
            out.push(ch);
            rest = &rest[len..];
        }
        out
    }

    /// Segments with their data in order (`Segment`'s `==` ignores the order of keys).
    fn ordered(segments: &[Segment]) -> Vec<(String, Vec<(String, Value)>)> {
        let entries = |s: &Segment| s.data.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
        segments.iter().map(|s| (s.kind.to_string(), entries(s))).collect()
    }

    fn assert_as_model(cq: &str) {
        let parsed = parse_cq(cq);
        assert_eq!(ordered(&parsed), ordered(&model_parse(cq)), "input {cq:?}");
        for max in [0, 1, 2, parsed.len()] {
            let bounded = parse_cq_at_most(cq, max);
            assert_eq!(bounded.is_some(), parsed.len() <= max, "input {cq:?} at most {max}");
        }
    }

    #[test]
    fn parser_agrees_with_the_model_on_tricky_inputs() {
        for cq in [
            // escapes at the edges of text runs, codes and values
            "&amp;[CQ:face,id=1]&#91;",
            "a&#9[CQ:face,id=1]1;b",
            "&#44[CQ:face,id=1];&amp",
            "[CQ:face,id=&#93;][CQ:face,id=&amp;#44;]&amp;amp;",
            "[CQ:share,url=http://x/?a=1&amp;b=2&c&#44;d,title=&]",
            "[CQ:a&amp;b,id=1]",
            "[CQ:face,k&amp;ey=v,&#44;=x]",
            // `&` that decode nothing
            "& &a &am &amp &#4 &#44 &#9; &#45; &lt; &&amp;&",
            "[CQ:face,id=&am,x=&#4]",
            // malformed codes, some after valid ones, some with escapes inside
            "[CQ:face,id][CQ:face,id=1]",
            "[CQ:face,id=1,,x=2]&amp;[CQ:face,=1][CQ:face, =1]",
            "[CQ:,a=1][CQ:][CQ: ][CQ:fa ce][CQ:表情,id=1]&#91;",
            "[CQ:face,&amp;][CQ:face,id=2]",
            "[CQ:face,id=1,][CQ:face,id=1, ][CQ:face,id=1,,][CQ:face,id=1, ,]",
            "[CQ:x,a=1,b=2,c=3,d=4,]",
            "[CQ:x,a=1,b=2,c=3,d=4,e=5,a=6]",
            "[CQ:x,a=1,b=2,c=3,d=4,e=5,f]",
            "[CQ:x,a=1,b=2,c=3,d=4,e=5, ]",
            "[CQ:x,a==1,b=[c,c=d=e]",
            // `[CQ:text]` merging
            "a[CQ:text,text=b&#44;c&#93;]d[CQ:text][CQ:text,text=]e",
            "[CQ:text,x=1,text=y]",
            // CJK, emoji and unterminated codes
            "你好🌍[CQ:face,id=1]世界👋🏽&amp;[CQ:at,qq=表&#44;]",
            "一段[CQ:face,id=1",
            "[CQ:face,id=1][CQ:at,qq=2",
            "[[CQ:[CQ:face,id=1]]]",
            "[CQ:[CQ:",
            "]]][CQ:",
            "",
        ] {
            assert_as_model(cq);
        }
    }

    /// A message of nothing but `]` reserves a bounded segment list, not one slot per `]`.
    #[test]
    fn stray_brackets_reserve_little() {
        let parsed = parse_cq(&"]".repeat(100_000));
        assert_eq!(parsed.len(), 1);
        assert!(parsed.capacity() <= RESERVED_SEGMENTS, "capacity {}", parsed.capacity());
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
    fn render_allocates_its_string_once_at_its_size() {
        // Grown on the way, the string would have about twice the room it needs.
        let long = "长文 [a] & b, ".repeat(1000);
        for segs in [
            vec![
                code("reply", &[("id", "1")]),
                text(&long),
                code("image", &[("url", "http://x/?a=1&b=2&c=3")]),
                text("tail"),
            ],
            vec![text(&long.replace(['&', '[', ']'], "")), text("&")],
            vec![text("plain"), code("face", &[("id", "1")])],
        ] {
            let rendered = render_cq(&segs);
            assert!(rendered.capacity() <= rendered.len() + 64, "{} for {}", rendered.capacity(), rendered.len());
        }
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

    /// Pieces of CQ syntax, entities (whole and cut short) and text, for strings the model checks.
    const TOKENS: [&str; 24] = [
        "[CQ:",
        "[",
        "]",
        ",",
        "=",
        " ",
        "&",
        "&amp;",
        "&#44;",
        "&#91;",
        "&#93;",
        "&#9",
        "&am",
        "face",
        "text",
        "id",
        "a",
        "1",
        "表",
        "🌍",
        ",text=",
        ",id=",
        "[CQ:face,id=1]",
        "[CQ:text,text=",
    ];

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
        fn parser_agrees_with_the_model(tokens in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..40)) {
            assert_as_model(&tokens.concat());
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
