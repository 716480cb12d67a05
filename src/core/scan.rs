//! What a document from a peer would cost to decode, found before decoding it.
//!
//! A message is bounded in bytes (`limits.max_message`), but a tree is not bounded by its bytes:
//! `[0,0,0,…]` spends two bytes per value and a `serde_json::Value` is 80 bytes (with
//! `preserve_order`), so a 16 MiB frame becomes ~700 MiB of tree; a MessagePack nil is one byte,
//! and an array32 header claims 2^32 elements in five. These scanners walk the bytes without
//! building anything (no allocation) and count the values and the nesting depth, refusing a
//! document over [`ScanLimits`] as soon as it is over, so a refused document costs one pass over
//! bytes the bridge already holds.
//!
//! They do not validate: a document they pass may still be malformed (the decoder says so). They
//! never count fewer values than the decoder would build before it fails, so what they pass can
//! be decoded within the limits. Map keys count as values (each is a string the tree holds).

/// How large a decoded tree may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Values in the document, map keys included.
    pub max_values: usize,
    /// Containers inside containers; at most [`MAX_DEPTH`].
    pub max_depth: usize,
}

/// The deepest nesting any limit may allow (serde_json's own recursion limit).
pub const MAX_DEPTH: usize = 128;

impl ScanLimits {
    /// What a peer's document may hold: 524 288 values, 64 levels. A `get_group_member_list`
    /// answer for a 5 000-member group with 20 fields per member is ~205 000 values (keys
    /// included); real events and actions hold tens to hundreds, nested a few levels.
    pub const PEER: ScanLimits = ScanLimits { max_values: 1 << 19, max_depth: 64 };
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits::PEER
    }
}

/// What a scanned document holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Values, map keys included.
    pub values: usize,
    /// Deepest nesting (a scalar alone is 0, `[1]` is 1).
    pub depth: usize,
}

impl Shape {
    /// A string, number, boolean or null.
    pub const SCALAR: Shape = Shape { values: 1, depth: 0 };

    /// A list or an object holding `members` (an object's members [`keyed`](Shape::keyed)).
    pub fn container(members: impl IntoIterator<Item = Shape>) -> Shape {
        members.into_iter().fold(Shape { values: 1, depth: 1 }, |shape, member| Shape {
            values: shape.values + member.values,
            depth: shape.depth.max(1 + member.depth),
        })
    }

    /// An object member: its value and its key.
    pub fn keyed(self) -> Shape {
        Shape { values: self.values + 1, ..self }
    }

    /// What a decoded tree holds, counted as the scanners count its text. Recursive: a tree
    /// decoded from a peer is at most [`MAX_DEPTH`] deep.
    pub fn of_value(value: &serde_json::Value) -> Shape {
        match value {
            serde_json::Value::Array(items) => Shape::container(items.iter().map(Shape::of_value)),
            serde_json::Value::Object(map) => Shape::container(map.values().map(|v| Shape::of_value(v).keyed())),
            _ => Shape::SCALAR,
        }
    }
}

impl ScanLimits {
    /// Refuses a shape over the limits, as the scanners would have refused its document.
    pub fn check(&self, shape: Shape) -> Result<(), Refused> {
        let mut count = Counter::new(*self);
        if shape.values > count.limits.max_values {
            return Err(Refused::TooManyValues { limit: count.limits.max_values });
        }
        count.depth(shape.depth)
    }
}

/// Why a document is not decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the document holds more than {limit} values")]
    TooManyValues { limit: usize },
    #[error("the document nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error(
        "a MessagePack header at byte {at} claims {claimed} elements or bytes, more than the {left} bytes that follow"
    )]
    ClaimsTooMuch { at: usize, claimed: u64, left: usize },
}

/// Counts values as they start, refusing as soon as a limit is passed.
struct Counter {
    limits: ScanLimits,
    shape: Shape,
}

impl Counter {
    fn new(limits: ScanLimits) -> Self {
        let limits = ScanLimits { max_depth: limits.max_depth.min(MAX_DEPTH), ..limits };
        Counter { limits, shape: Shape::default() }
    }

    fn value(&mut self) -> Result<(), Refused> {
        self.shape.values += 1;
        if self.shape.values > self.limits.max_values {
            return Err(Refused::TooManyValues { limit: self.limits.max_values });
        }
        Ok(())
    }

    fn depth(&mut self, depth: usize) -> Result<(), Refused> {
        if depth > self.limits.max_depth {
            return Err(Refused::TooDeep { limit: self.limits.max_depth });
        }
        self.shape.depth = self.shape.depth.max(depth);
        Ok(())
    }
}

/// Scans JSON text: every value that starts where a value may start (the document's start, after
/// `[`, `{`, `,` or `:`) counts, and so does every `[` or `{` wherever it is. Strings are skipped
/// whole, escapes included.
pub fn scan_json(bytes: &[u8], limits: ScanLimits) -> Result<Shape, Refused> {
    let mut count = Counter::new(limits);
    let mut depth = 0usize;
    let mut expect_value = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                if expect_value {
                    count.value()?;
                }
                expect_value = false;
                i = closing_quote(bytes, i + 1) + 1;
            }
            b'[' | b'{' => {
                count.value()?;
                depth += 1;
                count.depth(depth)?;
                expect_value = true;
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                expect_value = false;
                i += 1;
            }
            b',' | b':' => {
                expect_value = true;
                i += 1;
            }
            _ => {
                // A number, `true`, `false`, `null` (or garbage): one value, however long.
                if expect_value {
                    count.value()?;
                }
                expect_value = false;
                i += 1;
            }
        }
    }
    Ok(count.shape)
}

/// Where the JSON string whose contents start at `i` ends: the index of its closing quote, or
/// the end of the bytes. A backslash takes the byte after it along. The first 32 clean bytes are
/// read a word (8 bytes) at a time, a word with neither a quote nor a backslash stepped over
/// whole (keys, types and ids end there, and so does a run of escapes: one step per escape);
/// past them quotes and backslashes are searched for (vectorised `memchr2`): long texts and URLs
/// are most of a message event's bytes. Scanning a 547-byte group message took 5 700
/// instructions with the first 16 bytes walked byte by byte, 4 100 word by word.
fn closing_quote(bytes: &[u8], mut i: usize) -> usize {
    let mut clean_words = 0;
    loop {
        let rest = bytes.get(i..).unwrap_or_default();
        let found = if clean_words < 4 {
            match rest.first_chunk::<8>() {
                Some(word) => match quote_or_backslash(u64::from_le_bytes(*word)) {
                    0 => {
                        i += 8;
                        clean_words += 1;
                        continue;
                    }
                    // The lowest marked byte is the first quote or backslash in the word.
                    marks => Some(marks.trailing_zeros() as usize / 8),
                },
                None => rest.iter().position(|&b| b == b'"' || b == b'\\'),
            }
        } else {
            memchr::memchr2(b'"', b'\\', rest)
        };
        let Some(found) = found else { return bytes.len() };
        if rest[found] == b'"' {
            return i + found;
        }
        i += found + 2;
    }
}

/// Each byte of a word read little-endian, repeated.
const BYTES_OF_ONE: u64 = u64::from_le_bytes([1; 8]);

/// The high bit of every byte of `word` that is a quote or a backslash, and maybe of bytes after
/// the first such (the subtraction borrows upward); the lowest set bit is always exact.
fn quote_or_backslash(word: u64) -> u64 {
    let zero_bytes = |x: u64| x.wrapping_sub(BYTES_OF_ONE) & !x & (BYTES_OF_ONE << 7);
    zero_bytes(word ^ (BYTES_OF_ONE * b'"' as u64)) | zero_bytes(word ^ (BYTES_OF_ONE * b'\\' as u64))
}

/// Scans one MessagePack value by its headers: scalars and strings are stepped over, arrays and
/// maps open a level that closes when its elements are read. A declared length (of bytes, or of
/// elements, each at least one byte) larger than what follows is refused at once. Bytes after
/// the value are left to the decoder.
pub fn scan_msgpack(bytes: &[u8], limits: ScanLimits) -> Result<Shape, Refused> {
    let mut count = Counter::new(limits);
    // Elements still to read in each open container; level 0 is the document (one value).
    let mut open = [0u64; MAX_DEPTH + 1];
    let mut depth = 0usize;
    open[0] = 1;
    let mut i = 0usize;
    loop {
        while open[depth] == 0 {
            if depth == 0 {
                return Ok(count.shape);
            }
            depth -= 1;
        }
        open[depth] -= 1;
        count.value()?;
        let at = i;
        let Some(&marker) = bytes.get(i) else {
            // Truncated: the decoder reports it; nothing more can be built.
            return Ok(count.shape);
        };
        i += 1;
        // Reads a big-endian length of `n` bytes at `i`.
        let len = |i: &mut usize, n: usize| -> Option<u64> {
            let b = bytes.get(*i..*i + n)?;
            *i += n;
            Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
        };
        // (bytes to skip, elements to open)
        let (skip, elements): (Option<u64>, u64) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (Some(0), 0),
            0x80..=0x8f => (Some(0), 2 * (marker & 0x0f) as u64),
            0x90..=0x9f => (Some(0), (marker & 0x0f) as u64),
            0xa0..=0xbf => (Some((marker & 0x1f) as u64), 0),
            0xc4 | 0xd9 => (len(&mut i, 1), 0),
            0xc5 | 0xda => (len(&mut i, 2), 0),
            0xc6 | 0xdb => (len(&mut i, 4), 0),
            // ext 8/16/32: length, then a type byte.
            0xc7 => (len(&mut i, 1).map(|n| n + 1), 0),
            0xc8 => (len(&mut i, 2).map(|n| n + 1), 0),
            0xc9 => (len(&mut i, 4).map(|n| n + 1), 0),
            0xca => (Some(4), 0),
            0xcb => (Some(8), 0),
            0xcc | 0xd0 => (Some(1), 0),
            0xcd | 0xd1 => (Some(2), 0),
            0xce | 0xd2 => (Some(4), 0),
            0xcf | 0xd3 => (Some(8), 0),
            // fixext 1/2/4/8/16: a type byte and the data.
            0xd4 => (Some(2), 0),
            0xd5 => (Some(3), 0),
            0xd6 => (Some(5), 0),
            0xd7 => (Some(9), 0),
            0xd8 => (Some(17), 0),
            0xdc => (Some(0), len(&mut i, 2).unwrap_or(0)),
            0xdd => (Some(0), len(&mut i, 4).unwrap_or(0)),
            0xde => (Some(0), 2 * len(&mut i, 2).unwrap_or(0)),
            0xdf => (Some(0), 2 * len(&mut i, 4).unwrap_or(0)),
            // 0xc1 is never used: the decoder refuses it.
            0xc1 => return Ok(count.shape),
        };
        let left = bytes.len().saturating_sub(i);
        let container = matches!(marker, 0x80..=0x9f | 0xdc..=0xdf);
        if container {
            count.depth(depth + 1)?;
        }
        let Some(skip) = skip else { return Ok(count.shape) };
        if skip > left as u64 {
            // A declared length is a claim; a fixed-size scalar cut short is only truncated.
            if matches!(marker, 0xc4..=0xc9 | 0xd9..=0xdb) {
                return Err(Refused::ClaimsTooMuch { at, claimed: skip, left });
            }
            return Ok(count.shape);
        }
        if elements > left as u64 {
            let claimed = if matches!(marker, 0x80..=0x8f | 0xde | 0xdf) { elements / 2 } else { elements };
            return Err(Refused::ClaimsTooMuch { at, claimed, left });
        }
        i += skip as usize;
        if elements > 0 {
            depth += 1;
            open[depth] = elements;
        }
    }
}

/// The text of a top-level object member's value (`echo` in `{"action": …, "echo": <this>}`),
/// found without decoding the document, so a refused request can still be answered with its
/// `echo`. `None` when the document is not an object or has no such member; the key must be
/// written without escapes, and the first member of that name is the one found.
pub fn json_member<'a>(bytes: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut key_matched = false;
    let mut value_start = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'{' if depth == 0 => {
                depth = 1;
                expect_key = true;
                i += 1;
            }
            _ if depth == 0 => return None,
            b'"' => {
                let start = i + 1;
                i = closing_quote(bytes, start);
                if depth == 1 && expect_key {
                    key_matched = &bytes[start..i] == key.as_bytes();
                    expect_key = false;
                }
                i += 1;
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                if depth == 1 {
                    return value_start.map(|s| bytes[s..i].trim_ascii());
                }
                depth -= 1;
                i += 1;
            }
            b':' if depth == 1 => {
                if key_matched && value_start.is_none() {
                    value_start = Some(i + 1);
                }
                i += 1;
            }
            b',' if depth == 1 => {
                if let Some(s) = value_start {
                    return Some(bytes[s..i].trim_ascii());
                }
                expect_key = true;
                key_matched = false;
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    const WIDE: ScanLimits = ScanLimits { max_values: usize::MAX, max_depth: MAX_DEPTH };

    /// Values and depth of a tree, as the scanners should count them (checked against a few
    /// hand-counted trees below; the property tests then hold the scanners to it).
    fn shape_of(v: &Value) -> Shape {
        Shape::of_value(v)
    }

    #[test]
    fn a_tree_is_counted_as_its_text_reads() {
        assert_eq!(shape_of(&json!(1)), Shape { values: 1, depth: 0 });
        assert_eq!(shape_of(&json!([])), Shape { values: 1, depth: 1 });
        assert_eq!(shape_of(&json!({})), Shape { values: 1, depth: 1 });
        // The list, two numbers, the object, its key and the key's empty list.
        assert_eq!(shape_of(&json!([1, 2, {"k": []}])), Shape { values: 6, depth: 3 });
        assert_eq!(shape_of(&json!({"a": {"b": {"c": null}}, "d": "e"})), Shape { values: 9, depth: 3 });
    }

    #[test]
    fn a_shape_over_the_limits_is_refused_as_its_text_would_be() {
        let limits = ScanLimits { max_values: 10, max_depth: 3 };
        assert_eq!(limits.check(Shape { values: 10, depth: 3 }), Ok(()));
        assert_eq!(limits.check(Shape { values: 11, depth: 1 }), Err(Refused::TooManyValues { limit: 10 }));
        assert_eq!(limits.check(Shape { values: 5, depth: 4 }), Err(Refused::TooDeep { limit: 3 }));
        let deep = ScanLimits { max_values: 10, max_depth: 1000 };
        assert_eq!(deep.check(Shape { values: 1, depth: MAX_DEPTH + 1 }), Err(Refused::TooDeep { limit: MAX_DEPTH }));
    }

    fn samples() -> Vec<Value> {
        vec![
            json!(null),
            json!("a \"quoted\" \\ [string] {with} , : inside"),
            json!([]),
            json!({}),
            json!([1, -2.5e3, true, false, null, "x"]),
            json!({"action": "send_msg", "params": {"message": [{"type": "text", "data": {"text": "hi, [1]"}}]}, "echo": {"seq": 3}}),
            json!([[[[["deep"]]]], {"k": {"k": {"k": []}}}]),
            json!({"bin": "\u{0}\u{1f}é😀", "n": 18446744073709551615u64}),
        ]
    }

    #[test]
    fn json_values_and_depth_are_counted_as_the_tree_has_them() {
        for v in samples() {
            for text in [serde_json::to_string(&v).unwrap(), serde_json::to_string_pretty(&v).unwrap()] {
                assert_eq!(scan_json(text.as_bytes(), WIDE), Ok(shape_of(&v)), "{text}");
            }
        }
    }

    #[test]
    fn msgpack_values_and_depth_are_counted_as_the_tree_has_them() {
        for v in samples() {
            let bytes = rmp_serde::to_vec_named(&v).unwrap();
            assert_eq!(scan_msgpack(&bytes, WIDE), Ok(shape_of(&v)), "{v}");
        }
        // bin, ext and fixext are one value each.
        let mut buf = Vec::new();
        let v = rmpv::Value::Array(vec![
            rmpv::Value::Binary(vec![1; 300]),
            rmpv::Value::Ext(5, vec![0; 4]),
            rmpv::Value::Ext(5, vec![0; 3]),
            rmpv::Value::F32(1.5),
            rmpv::Value::from(-70000i64),
            rmpv::Value::String("s".repeat(70000).into()),
        ]);
        rmpv::encode::write_value(&mut buf, &v).unwrap();
        assert_eq!(scan_msgpack(&buf, WIDE), Ok(Shape { values: 7, depth: 1 }));
    }

    #[test]
    fn cheap_values_in_bulk_are_refused_early() {
        let limits = ScanLimits { max_values: 1000, max_depth: 8 };
        let zeros = format!("[{}0]", "0,".repeat(5000));
        assert_eq!(scan_json(zeros.as_bytes(), limits), Err(Refused::TooManyValues { limit: 1000 }));
        let mut nils = vec![0xdc, 0x13, 0x88];
        nils.resize(3 + 5000, 0xc0);
        assert_eq!(scan_msgpack(&nils, limits), Err(Refused::TooManyValues { limit: 1000 }));
        let just = format!("[{}0]", "0,".repeat(998));
        assert_eq!(scan_json(just.as_bytes(), limits), Ok(Shape { values: 1000, depth: 1 }));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let limits = ScanLimits { max_values: 1 << 20, max_depth: 8 };
        assert_eq!(scan_json(&[b'['; 9], limits), Err(Refused::TooDeep { limit: 8 }));
        assert!(scan_json(&[b'['; 8], limits).is_ok());
        assert_eq!(scan_msgpack(&[0x91; 9], limits), Err(Refused::TooDeep { limit: 8 }));
        let beyond = ScanLimits { max_values: 1 << 20, max_depth: 10_000 };
        assert_eq!(scan_json(&[b'{'; 200], beyond), Err(Refused::TooDeep { limit: MAX_DEPTH }), "capped");
    }

    #[test]
    fn msgpack_headers_that_claim_more_than_follows_are_refused() {
        let array32 = [0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0];
        assert_eq!(
            scan_msgpack(&array32, ScanLimits::PEER),
            Err(Refused::ClaimsTooMuch { at: 0, claimed: u32::MAX as u64, left: 1 })
        );
        let map32 = [0x81, 0xa1, b'k', 0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0];
        assert!(matches!(scan_msgpack(&map32, ScanLimits::PEER), Err(Refused::ClaimsTooMuch { at: 3, .. })));
        let str32 = [0xdb, 0x7f, 0xff, 0xff, 0xff, b'x'];
        assert!(matches!(scan_msgpack(&str32, ScanLimits::PEER), Err(Refused::ClaimsTooMuch { .. })));
    }

    #[test]
    fn a_top_level_member_is_found_without_decoding() {
        let doc = br#"{"action":"send_msg","params":{"echo":"inner","m":[{"echo":1}]},"echo" : {"seq": [3, "a,}"]} }"#;
        assert_eq!(json_member(doc, "echo"), Some(&br#"{"seq": [3, "a,}"]}"#[..]));
        assert_eq!(json_member(doc, "action"), Some(&br#""send_msg""#[..]));
        assert_eq!(json_member(br#"{"a":1,"echo":"x\"y","b":2}"#, "echo"), Some(&br#""x\"y""#[..]));
        assert_eq!(json_member(br#"{"a":"echo","b":2}"#, "echo"), None, "a value is not a key");
        assert_eq!(json_member(br#"[{"echo":1}]"#, "echo"), None);
        assert_eq!(json_member(br#"{"echo":"#, "echo"), None);
        assert_eq!(json_member(b"", "echo"), None);
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_document_is_counted_as_its_tree(v in any_json()) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assert_eq!(scan_json(text.as_bytes(), WIDE), Ok(shape_of(&v)));
            let packed = rmp_serde::to_vec_named(&v).unwrap();
            prop_assert_eq!(scan_msgpack(&packed, WIDE), Ok(shape_of(&v)));
        }

        #[test]
        fn a_string_ends_where_a_byte_by_byte_walk_ends_it(
            bytes in prop::collection::vec(prop_oneof![
                // Mostly plain bytes, so that clean words, runs past 32 bytes and escapes at
                // every offset of a word all occur.
                24 => Just(b'a'),
                2 => Just(b'"'),
                2 => Just(b'\\'),
                1 => Just(b'['),
                1 => Just(0xe4u8),
                1 => any::<u8>(),
            ], 0..160),
            start in 0usize..170,
        ) {
            let start = start.min(bytes.len());
            let mut i = start;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            prop_assert_eq!(closing_quote(&bytes, start), i.min(bytes.len()));
        }

        #[test]
        fn any_bytes_are_scanned_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let json = scan_json(&bytes, ScanLimits::PEER);
            // What serde_json accepts, the scanner counted exactly.
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                prop_assert_eq!(json, Ok(shape_of(&v)));
            }
            let _ = scan_msgpack(&bytes, ScanLimits::PEER);
            let _ = json_member(&bytes, "echo");
        }
    }

    #[test]
    fn garbage_never_panics() {
        // Every byte string up to two bytes, and some longer ones.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let _ = scan_json(&[a, b], ScanLimits::PEER);
                let _ = scan_msgpack(&[a, b], ScanLimits::PEER);
                let _ = scan_msgpack(&[0xdd, a, b], ScanLimits::PEER);
                let _ = json_member(&[b'{', a, b'"', b], "echo");
            }
        }
        assert!(scan_json(b"\"unterminated \\", ScanLimits::PEER).is_ok());
        assert!(scan_json(b"]]]}}", ScanLimits::PEER).is_ok());
        assert_eq!(scan_msgpack(b"", ScanLimits::PEER), Ok(Shape { values: 1, depth: 0 }));
    }
}
