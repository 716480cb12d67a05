//! The binary form of a [`MessageRecord`], as both id stores keep it.
//!
//! Every message the bridge numbers is stored once on the event path, so the encoding is on the
//! hot path: JSON spent most of a store's work escaping strings it would only read back itself.
//! Here the key comes first, each string as a length (LEB128) and its UTF-8 bytes, so a store
//! can read the key alone (to compare it when a number is claimed, to unindex it when it is
//! pruned) without touching the segments; everything after it (the *body*) is MessagePack
//! through `rmp-serde`, which is self-describing and so carries segment data (any
//! `serde_json::Value`) as it is: strings as bytes, integers as integers, floats as 64-bit
//! floats.
//!
//! A stored *row* (the disk store) is `ROW_V1, at (u64 LE), self_id, message_id, body`. Rows
//! written before this encoding are JSON objects and so start with `{`; a version byte below
//! 0x09 can never start JSON text (RFC 8259 allows only whitespace — tab, newline, carriage
//! return, space — and a value there), so a store tells the two apart by the first byte.
//!
//! What is read back was written by this bridge, but a file can be damaged: every read is
//! bounded by the bytes it has (no length is trusted to allocate), nesting is limited, and a
//! damaged record is an [`IdError::Store`], never a panic.

use compact_str::CompactString;
use serde::Deserialize;

use crate::core::ids::{IdError, MessageKey, MessageRecord, StoredMessage};
use crate::core::message::Segment;

/// The first byte of a row in this encoding (version 1). Later versions take 0x02..=0x08.
pub const ROW_V1: u8 = 0x01;

/// Deepest nesting a body may have when read back: the body's own two levels (record, content)
/// and a segment's two (segment, data) above the 128 levels serde_json accepts in a value.
const MAX_DEPTH: usize = 128 + 8;

/// The body, as written: `[detail_type, group_id, user_id, [time, segments, sender_id, sender_name]]`
/// (as `rmp-serde` writes it, which the tests compare [`write_body`] with).
#[cfg(test)]
type BodyRef<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<(i64, &'a [Segment], i64, &'a str)>);
/// The body, as read.
type Body = (CompactString, Option<CompactString>, Option<CompactString>, Option<(i64, Vec<Segment>, i64, String)>);

fn unreadable(what: impl std::fmt::Display) -> IdError {
    IdError::Store(format!("a stored message record is unreadable: {what}"))
}

/// Appends the record without its key (and without its content unless `with_content`).
///
/// The bytes are those `rmp-serde` writes for the body's tuple (a unit test compares the two on
/// any record), written here with `rmp`'s own functions: through serde's data model a message's
/// body took about 3 k instructions, most of it the generic plumbing around a few dozen writes.
pub fn write_body(out: &mut Vec<u8>, record: &MessageRecord, with_content: bool) -> Result<(), IdError> {
    use rmp::encode as mp;
    let content = record.content.as_ref().filter(|_| with_content);
    mp::write_array_len(out, 4).map_err(too_long)?;
    mp::write_str(out, &record.detail_type).map_err(too_long)?;
    write_opt_str(out, record.group_id.as_deref())?;
    write_opt_str(out, record.user_id.as_deref())?;
    let Some(content) = content else {
        return mp::write_nil(out).map_err(too_long);
    };
    mp::write_array_len(out, 4).map_err(too_long)?;
    mp::write_sint(out, content.time).map_err(too_long)?;
    mp::write_array_len(out, len_u32(content.segments.len())?).map_err(too_long)?;
    for segment in &content.segments {
        mp::write_array_len(out, 2).map_err(too_long)?;
        mp::write_str(out, &segment.kind).map_err(too_long)?;
        mp::write_map_len(out, len_u32(segment.data.len())?).map_err(too_long)?;
        for (key, value) in &segment.data {
            mp::write_str(out, key).map_err(too_long)?;
            write_value(out, value)?;
        }
    }
    mp::write_sint(out, content.sender_id).map_err(too_long)?;
    mp::write_str(out, &content.sender_name).map_err(too_long)
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) -> Result<(), IdError> {
    match s {
        Some(s) => rmp::encode::write_str(out, s).map_err(too_long),
        None => rmp::encode::write_nil(out).map_err(too_long),
    }
}

/// A JSON value as `serde_json`'s `Serialize` hands it to `rmp-serde`: integers as the smallest
/// integer that holds them, other numbers as 64-bit floats.
fn write_value(out: &mut Vec<u8>, value: &serde_json::Value) -> Result<(), IdError> {
    use rmp::encode as mp;
    use serde_json::Value;
    match value {
        Value::Null => mp::write_nil(out).map_err(too_long),
        Value::Bool(b) => mp::write_bool(out, *b).map_err(too_long),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => mp::write_uint(out, u).map(drop).map_err(too_long),
            (None, Some(i)) => mp::write_sint(out, i).map(drop).map_err(too_long),
            (None, None) => mp::write_f64(out, n.as_f64().unwrap_or_default()).map_err(too_long),
        },
        Value::String(s) => {
            // A string that does not fit gets room for what usually follows it too: grown to the
            // byte for a long text, the buffer would be copied whole into one twice as large
            // for the next few bytes (a 16 KiB text cost as much in copying as in encoding).
            if out.capacity() - out.len() < s.len() + STR_HEAD {
                out.reserve(STR_HEAD + s.len() + ROOM_AFTER);
            }
            mp::write_str(out, s).map_err(too_long)
        }
        Value::Array(items) => {
            mp::write_array_len(out, len_u32(items.len())?).map_err(too_long)?;
            items.iter().try_for_each(|item| write_value(out, item))
        }
        Value::Object(map) => {
            mp::write_map_len(out, len_u32(map.len())?).map_err(too_long)?;
            map.iter().try_for_each(|(k, v)| {
                mp::write_str(out, k).map_err(too_long)?;
                write_value(out, v)
            })
        }
    }
}

/// Bytes left free after a string value that did not fit: the rest of a usual record (a
/// picture's URL after a long text, say).
const ROOM_AFTER: usize = 512;
/// The longest MessagePack string header.
const STR_HEAD: usize = 5;

fn len_u32(len: usize) -> Result<u32, IdError> {
    u32::try_from(len).map_err(|_| too_long(len))
}

/// Writing to a `Vec` fails only past what MessagePack can count.
fn too_long(e: impl std::fmt::Debug) -> IdError {
    IdError::Store(format!("a message record cannot be encoded: {e:?}"))
}

/// The record whose key is `key` and whose body is `body` (as [`write_body`] wrote it).
pub fn read_body(key: MessageKey, body: &[u8]) -> Result<MessageRecord, IdError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(body);
    de.set_max_depth(MAX_DEPTH);
    let (detail_type, group_id, user_id, content) = Body::deserialize(&mut de).map_err(unreadable)?;
    Ok(MessageRecord {
        key,
        detail_type,
        group_id,
        user_id,
        content: content.map(|(time, segments, sender_id, sender_name)| StoredMessage {
            time,
            segments,
            sender_id,
            sender_name,
        }),
    })
}

/// A whole row: the version, when it was stored (ms since the epoch), the key, the body.
///
/// A row can be encoded before it is known when it will be stored (a store's single writer
/// then only copies bytes): [`Row::set_at`] changes the time in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(Vec<u8>);

impl Row {
    pub fn encode(record: &MessageRecord, at: u64) -> Result<Row, IdError> {
        let key = &record.key;
        let mut out = Vec::with_capacity(1 + 8 + 2 * 10 + key.self_id.len() + key.message_id.len() + 64);
        out.push(ROW_V1);
        out.extend_from_slice(&at.to_le_bytes());
        write_key(&mut out, key);
        write_body(&mut out, record, true)?;
        Ok(Row(out))
    }

    pub fn set_at(&mut self, at: u64) {
        if let Some(bytes) = self.0.get_mut(1..9) {
            bytes.copy_from_slice(&at.to_le_bytes());
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Whether a row is in this encoding (else it is an older one).
pub fn is_row(bytes: &[u8]) -> bool {
    bytes.first() == Some(&ROW_V1)
}

/// A row read up to its body: the key borrowed, the body not decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowHead<'a> {
    /// When the row was stored, ms since the epoch.
    pub at: u64,
    pub self_id: &'a str,
    pub message_id: &'a str,
    body: &'a [u8],
}

impl<'a> RowHead<'a> {
    /// Reads a row's version, time and key, leaving its body as bytes.
    pub fn read(bytes: &'a [u8]) -> Result<RowHead<'a>, IdError> {
        let Some((&version, rest)) = bytes.split_first() else { return Err(unreadable("empty row")) };
        if version != ROW_V1 {
            return Err(unreadable(format_args!("unknown row version {version:#04x}")));
        }
        let (at, rest) = rest.split_first_chunk::<8>().ok_or_else(|| unreadable("row cut short"))?;
        let (self_id, rest) = read_str(rest)?;
        let (message_id, body) = read_str(rest)?;
        Ok(RowHead { at: u64::from_le_bytes(*at), self_id, message_id, body })
    }

    pub fn key(&self) -> MessageKey {
        MessageKey { self_id: self.self_id.into(), message_id: self.message_id.into() }
    }

    pub fn is(&self, key: &MessageKey) -> bool {
        self.self_id == key.self_id && self.message_id == key.message_id
    }

    /// Decodes the body too.
    pub fn record(&self) -> Result<MessageRecord, IdError> {
        read_body(self.key(), self.body)
    }
}

/// A message key as a row holds it after the time: `self_id`, then `message_id`, each as a
/// LEB128 length and its bytes (also how the Redis store names a message).
pub fn write_key(out: &mut Vec<u8>, key: &MessageKey) {
    write_str(out, &key.self_id);
    write_str(out, &key.message_id);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len() as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(s.as_bytes());
}

/// One length-prefixed string and what follows it.
fn read_str(bytes: &[u8]) -> Result<(&str, &[u8]), IdError> {
    let mut len: u64 = 0;
    let mut used = 0;
    loop {
        let &b = bytes.get(used).ok_or_else(|| unreadable("row cut short"))?;
        if used == 9 && b > 1 {
            return Err(unreadable("a length overflows"));
        }
        len |= u64::from(b & 0x7f) << (7 * used);
        used += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let rest = &bytes[used..];
    let len = usize::try_from(len).ok().filter(|&l| l <= rest.len()).ok_or_else(|| unreadable("row cut short"))?;
    let (s, rest) = rest.split_at(len);
    let s = std::str::from_utf8(s).map_err(unreadable)?;
    Ok((s, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn record(content: Option<StoredMessage>) -> MessageRecord {
        MessageRecord {
            key: MessageKey { self_id: "10001".into(), message_id: "m-\u{1f}\"1".into() },
            detail_type: "group".into(),
            group_id: Some("g".into()),
            user_id: None,
            content,
        }
    }

    fn said(segments: Vec<Segment>) -> MessageRecord {
        record(Some(StoredMessage { time: -1, segments, sender_id: 1 << 53, sender_name: "名前".into() }))
    }

    #[test]
    fn a_row_round_trips_and_its_key_reads_alone() {
        let r = said(vec![
            Segment::text("a \"quoted\"\n\\ line"),
            Segment::new("x").with("f", 0.1).with("neg", -7).with("big", u64::MAX).with("n", Value::Null),
            Segment::new("nested").with("v", json!({"a": [1, {"b": null}], "": ""})),
        ]);
        let row = Row::encode(&r, 0).unwrap();
        let mut row = row;
        row.set_at(1_700_000_000_123);
        let row = row.as_bytes().to_vec();
        assert!(is_row(&row));
        let head = RowHead::read(&row).unwrap();
        assert_eq!((head.at, head.self_id, head.message_id), (1_700_000_000_123, "10001", "m-\u{1f}\"1"));
        assert!(head.is(&r.key));
        assert_eq!(head.record().unwrap(), r);
        // The key alone does not look at the body: a row whose body is damaged still has a key.
        let mut cut = row.clone();
        cut.truncate(row.len() - 3);
        assert_eq!(RowHead::read(&cut).unwrap().key(), r.key);
        assert!(matches!(RowHead::read(&cut).unwrap().record(), Err(IdError::Store(_))));
    }

    #[test]
    fn a_json_row_is_never_taken_for_this_encoding() {
        let old = serde_json::to_vec(&json!({"record": record(None), "at": 5})).unwrap();
        assert_eq!(old[0], b'{');
        assert!(!is_row(&old));
        // Nor is any JSON text at all: it starts with whitespace or a value.
        for first in [b' ', b'\t', b'\n', b'\r', b'{', b'[', b'"', b'-', b'0', b't', b'f', b'n'] {
            assert!(!is_row(&[first]));
        }
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let row = Row::encode(&said(vec![Segment::text("hello"), Segment::new("at").with("qq", "1")]), 9)
            .unwrap()
            .as_bytes()
            .to_vec();
        for len in 0..row.len() {
            let cut = &row[..len];
            let got = RowHead::read(cut).and_then(|h| h.record());
            assert!(matches!(got, Err(IdError::Store(_))), "cut at {len}: {got:?}");
        }
        for i in 0..row.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = row.clone();
                bad[i] ^= flip;
                // Any answer but a panic.
                let _ = RowHead::read(&bad).and_then(|h| h.record());
            }
        }
        let Err(IdError::Store(message)) = RowHead::read(&[0x02, 0, 0]) else { panic!("a version 2 row read") };
        assert!(message.contains("unknown row version 0x02"), "{message}");
        // A length that claims more than the row holds, and one that overflows.
        let mut long = vec![ROW_V1, 0, 0, 0, 0, 0, 0, 0, 0];
        long.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(RowHead::read(&long).is_err());
        let mut overflow = vec![ROW_V1, 0, 0, 0, 0, 0, 0, 0, 0];
        overflow.extend([0xff; 10]);
        assert!(RowHead::read(&overflow).is_err());
    }

    /// A row whose one segment holds `depth` arrays one inside the other, written by hand.
    fn nested_row(depth: usize) -> Vec<u8> {
        let mut row = vec![ROW_V1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // [detail_type "", nil, nil, [time 0, [["t", {"k": …}]], sender_id 0, sender_name ""]]
        row.extend([0x94, 0xa0, 0xc0, 0xc0, 0x94, 0x00, 0x91, 0x92, 0xa1, b't', 0x81, 0xa1, b'k']);
        row.extend(std::iter::repeat_n(0x91, depth));
        row.extend([0xc0, 0x00, 0xa0]);
        row
    }

    #[test]
    fn nesting_is_bounded_as_json_bounds_it() {
        // As deep as a JSON value the bridge accepts (serde_json stops at 128) reads back ...
        let got = RowHead::read(&nested_row(127)).and_then(|h| h.record());
        assert_eq!(got.map(|r| r.content.unwrap().segments.len()).ok(), Some(1));
        // ... deeper does not: a damaged length byte cannot make a read recurse far.
        for depth in [200, 100_000] {
            assert!(matches!(RowHead::read(&nested_row(depth)).unwrap().record(), Err(IdError::Store(_))));
        }
    }

    #[test]
    fn a_body_is_smaller_than_its_json() {
        let r = said(vec![Segment::text("hello [world] & friends"), Segment::new("at").with("qq", "10001")]);
        let mut body = Vec::new();
        write_body(&mut body, &r, true).unwrap();
        let c = r.content.as_ref().unwrap();
        let content = Some((c.time, &c.segments, c.sender_id, &c.sender_name));
        let json = serde_json::to_vec(&(&r.detail_type, &r.group_id, &r.user_id, content)).unwrap();
        assert!(body.len() * 4 < json.len() * 3, "{} bytes, JSON {}", body.len(), json.len());
        // Without content the body says so, and reads back without it.
        let mut bare = Vec::new();
        write_body(&mut bare, &r, false).unwrap();
        assert_eq!(read_body(r.key.clone(), &bare).unwrap(), MessageRecord { content: None, ..r });
    }

    #[test]
    fn a_long_text_is_copied_once_into_its_record() {
        let text = "长消息 [text] & more, ".repeat(700);
        let r = said(vec![
            Segment::text(&text),
            Segment::new("at").with("qq", "10001"),
            Segment::new("face").with("id", 14),
        ]);
        // Grown to the byte for the text, the buffer would double for the bytes after it.
        let row = Row::encode(&r, 1).unwrap();
        assert!(row.0.capacity() <= row.0.len() + STR_HEAD + ROOM_AFTER, "{} for {}", row.0.capacity(), row.0.len());
        let mut body = Vec::with_capacity(16);
        write_body(&mut body, &r, true).unwrap();
        assert!(body.capacity() <= body.len() + STR_HEAD + ROOM_AFTER, "{} for {}", body.capacity(), body.len());
    }

    /// Any JSON value serde_json holds: strings with escapes and any char, integers of both
    /// signs and beyond i64, finite floats, nested arrays and objects, null.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            ".{0,20}".prop_map(Value::String),
            Just(Value::String("\"\\\u{0}\n\u{1f}\u{7f}\u{10ffff}".into())),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((".{0,6}", inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn segment() -> impl Strategy<Value = Segment> {
        (".{0,8}", prop::collection::vec((".{0,8}", value()), 0..4))
            .prop_map(|(kind, data)| Segment { kind: kind.into(), data: data.into_iter().collect() })
    }

    proptest! {
        #[test]
        fn any_record_round_trips(
            self_id in ".{0,12}",
            message_id in ".{0,200}",
            detail_type in ".{0,8}",
            group_id in proptest::option::of(".{0,12}"),
            user_id in proptest::option::of(".{0,12}"),
            content in proptest::option::of((any::<i64>(), prop::collection::vec(segment(), 0..6), any::<i64>(), ".{0,12}")),
            at in any::<u64>(),
        ) {
            let r = MessageRecord {
                key: MessageKey { self_id: self_id.into(), message_id: message_id.into() },
                detail_type: detail_type.into(),
                group_id: group_id.map(Into::into),
                user_id: user_id.map(Into::into),
                content: content.map(|(time, segments, sender_id, sender_name)| StoredMessage { time, segments, sender_id, sender_name }),
            };
            // The direct encoder writes what rmp-serde writes for the same record.
            let mut direct = Vec::new();
            write_body(&mut direct, &r, true).unwrap();
            let content = r.content.as_ref().map(|c| (c.time, c.segments.as_slice(), c.sender_id, c.sender_name.as_str()));
            let body: BodyRef<'_> = (&r.detail_type, r.group_id.as_deref(), r.user_id.as_deref(), content);
            prop_assert_eq!(direct, rmp_serde::to_vec(&body).unwrap());
            let row = Row::encode(&r, at).unwrap();
            let head = RowHead::read(row.as_bytes()).unwrap();
            prop_assert_eq!(head.at, at);
            prop_assert_eq!(head.key(), r.key.clone());
            prop_assert_eq!(head.record().unwrap(), r);
        }
    }
}
