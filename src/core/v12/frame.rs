//! Reading a backend's JSON frame straight into an [`Event`], without a `serde_json::Value` tree
//! for the parts every event has.
//!
//! Decoding a frame into a `Value` built one ordered map per JSON object, each key hashed with
//! SipHash: for a group message with four segments that is ten maps, and it was the largest
//! single cost of the event path (a third of the bridge's CPU under load, `perf`). Here the base
//! fields are read into their own slots, a message event's `message` list into typed
//! [`Segment`]s, and the objects left (`self`, each segment's `data`, the event's other fields)
//! into small vectors of keys in order ([`Data`]); values inside those are JSON values.
//!
//! What is read is what [`Event::from_value`] reads from the same frame: a unit test decodes
//! every shape both ways and compares. An action's answer is read into a [`Response`] as
//! [`Response::from_value`] reads it, and any other frame comes back as the JSON value it is.

use std::borrow::Cow;
use std::fmt;

use compact_str::CompactString;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{Event, EventError, Loose, Message, Part, Response, Slots};
use crate::core::message::{Data, Reading, Segment};
use crate::core::scan::Shape;

/// A frame from the backend, read as an event when it is one.
// An event is what most frames are; boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Frame {
    /// It has `type` and `detail_type` ([`super::is_event_frame`]); reading it may still fail.
    Event(Result<Event, EventError>),
    /// Not an event, with a `retcode` and no `post_type`: an action's answer.
    Answer(Response),
    /// Anything else (a v11 event on a v12 link, a document of no known shape), as JSON.
    Other(Value),
}

impl Frame {
    /// Reads a JSON frame.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Frame> {
        serde_json::from_slice(bytes)
    }

    /// Reads a JSON frame whose UTF-8 is already checked (a WebSocket text frame): its strings
    /// are not checked again.
    pub fn from_json_str(text: &str) -> serde_json::Result<Frame> {
        serde_json::from_str(text)
    }

    /// The same decision for a frame already decoded (MessagePack).
    pub fn from_value(value: Value) -> Frame {
        match value {
            Value::Object(map) if super::is_event_frame(&map) => Frame::Event(Event::from_value(Value::Object(map))),
            other => Frame::Other(other),
        }
    }

    /// What the decoded frame holds, counted as the pre-scan counts a document's text
    /// ([`Shape`]): for a frame decoded before it was measured. What reading left out (an
    /// event that could not be read, keys of `self` other than its two) is not counted: it is
    /// no longer held.
    pub fn shape(&self) -> Shape {
        let member = |v: &Value| Shape::of_value(v).keyed();
        match self {
            Frame::Event(Ok(ev)) => {
                // id, time, type, detail_type, sub_type.
                let base = [Shape::SCALAR.keyed(); 5];
                let me = ev.self_id.as_ref().map(|_| Shape::container([Shape::SCALAR.keyed(); 2]).keyed());
                let message = ev.message.as_ref().map(|m| m.shape().keyed());
                Shape::container(base.into_iter().chain(me).chain(message).chain(members_shape(&ev.fields)))
            }
            Frame::Event(Err(_)) => Shape::SCALAR,
            Frame::Answer(answer) => {
                // status, retcode, message.
                let scalars = [Shape::SCALAR.keyed(); 3];
                Shape::container(
                    scalars.into_iter().chain([member(&answer.data)]).chain(answer.echo.as_ref().map(member)),
                )
            }
            Frame::Other(value) => Shape::of_value(value),
        }
    }
}

impl Message {
    /// What the message holds, counted as [`Frame::shape`] counts.
    pub fn shape(&self) -> Shape {
        match self {
            Message::Segments(parts) => Shape::container(parts.iter().map(|part| match part {
                Part::Segment(segment) => {
                    Shape::container([Shape::SCALAR.keyed(), Shape::container(members_shape(&segment.data)).keyed()])
                }
                Part::Unreadable(value) => Shape::of_value(value),
            })),
            Message::Other(value) => Shape::of_value(value),
        }
    }
}

/// The members of an object read into [`Data`], each counted with its key, as [`Frame::shape`]
/// counts.
pub fn members_shape(data: &Data) -> impl Iterator<Item = Shape> + '_ {
    data.iter().map(|(_, v)| Shape::of_value(v).keyed())
}

/// The JSON values that are not objects, as `serde_json` reads them, for visitors that read
/// objects (or lists) their own way: each hands the value to `$other`.
macro_rules! other_values {
    ($other:expr) => {
        other_scalars!($other);
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($other(Value::String(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok($other(Value::String(v)))
        }
    };
}

/// [`other_values`] but strings, for visitors that keep strings their own way.
macro_rules! other_scalars {
    ($other:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($other(Value::Bool(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok($other(Value::from(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok($other(Value::from(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok($other(Value::from(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($other(Value::Null))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($other(Value::Null))
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            Ok($other(Value::deserialize(d)?))
        }
    };
}

/// A list kept as the JSON value it is, for visitors that read only objects their own way.
macro_rules! other_lists {
    ($other:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Ok($other(Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?))
        }
    };
}

/// An object kept as the JSON value it is, for visitors that read only lists or strings their
/// own way.
macro_rules! other_objects {
    ($other:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
            Ok($other(Value::deserialize(de::value::MapAccessDeserializer::new(access))?))
        }
    };
}

/// An object key, borrowed from the frame when it holds no escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Frame, D::Error> {
        struct FrameVisitor;
        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = Frame;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON document")
            }
            other_values!(Frame::Other);
            other_lists!(Frame::Other);
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Frame, A::Error> {
                let mut slots = Slots::default();
                let mut reading = Reading::with_capacity(8);
                while let Some(Key(key)) = access.next_key()? {
                    match &*key {
                        "id" => slots.id = Some(access.next_value()?),
                        "time" => slots.time = Some(access.next_value()?),
                        "type" => slots.kind = Some(access.next_value()?),
                        "detail_type" => slots.detail_type = Some(access.next_value()?),
                        "sub_type" => slots.sub_type = Some(access.next_value()?),
                        "self" => slots.self_ = Some(access.next_value_seed(DataSeed)?),
                        "message" => slots.message = Some(access.next_value()?),
                        _ => {
                            reading.insert(key, access.next_value()?);
                        }
                    }
                }
                let mut rest = reading.done();
                Ok(if slots.kind.is_some() && slots.detail_type.is_some() {
                    Frame::Event(Event::from_slots(slots, rest))
                } else if let Some(answer) = answer(&mut slots, &mut rest) {
                    Frame::Answer(answer)
                } else {
                    let mut rest = rest.into_map();
                    slots.put_back(&mut rest);
                    Frame::Other(Value::Object(rest))
                })
            }
        }
        d.deserialize_any(FrameVisitor)
    }
}

/// The answer a frame that is no event holds, read from the fields it was read into as
/// [`Response::from_value`] reads it from the frame's value: without an ordered map of the
/// fields, which were read only to be taken out again. None (the fields left as they were) for a
/// frame without a `retcode`, and for a v11 event (which the link tells apart).
fn answer(slots: &mut Slots, rest: &mut Data) -> Option<Response> {
    if rest.get("post_type").is_some() {
        return None;
    }
    let retcode = Response::retcode_of(rest.get("retcode")?)?;
    let message = match slots.message.take() {
        Some(Message::Other(value)) => Some(value),
        _ => None,
    };
    Some(Response::from_fields(retcode, rest.remove("status"), message, rest.remove("data"), rest.remove("echo")))
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Message, D::Error> {
        struct MessageVisitor;
        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a message")
            }
            other_values!(Message::Other);
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
                // A peer's length hint is not trusted beyond a small start.
                let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(part) = seq.next_element()? {
                    parts.push(part);
                }
                Ok(Message::Segments(parts))
            }
            other_objects!(Message::Other);
        }
        d.deserialize_any(MessageVisitor)
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Loose, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a segment's data or an event's self")
            }
            other_values!(Loose::Other);
            other_lists!(Loose::Other);
            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Loose, A::Error> {
                Ok(Loose::Object(Data::deserialize(de::value::MapAccessDeserializer::new(access))?))
            }
        }
        d.deserialize_any(DataVisitor)
    }
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Part, D::Error> {
        struct PartVisitor;
        impl<'de> Visitor<'de> for PartVisitor {
            type Value = Part;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a segment")
            }
            other_values!(Part::Unreadable);
            other_lists!(Part::Unreadable);
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Part, A::Error> {
                // Keys in the order they came, each once: a repeated key keeps its first place and
                // takes the last value, as a JSON object read by `serde_json` does. `type` and
                // `data` have slots of their own (a segment has nothing else), so reading a
                // segment allocates nothing for its keys.
                let mut keys = PartKeys::default();
                while let Some(Key(key)) = access.next_key()? {
                    match &*key {
                        "type" => {
                            let kind = access.next_value()?;
                            keys.kind = Some((place(&keys.kind, &mut keys.next), kind));
                        }
                        "data" => {
                            let data = access.next_value_seed(DataSeed)?;
                            keys.data = Some((place(&keys.data, &mut keys.next), data));
                        }
                        _ => {
                            let value = access.next_value()?;
                            let known = keys.others.len();
                            // A repeated key is replaced in place; a new one also takes a place.
                            keys.others.insert(&*key, value);
                            if keys.others.len() > known {
                                keys.others_at.push(keys.next);
                                keys.next += 1;
                            }
                        }
                    }
                }
                Ok(keys.into_part())
            }
        }
        d.deserialize_any(PartVisitor)
    }
}

/// Reads a segment's `data` or an event's `self` as a [`Loose`].
struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = Loose;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Loose, D::Error> {
        Loose::deserialize(d)
    }
}

/// A segment's `type` as read: a string becomes the segment's kind as it is (segment names are
/// short, kept without an allocation), anything else is kept as sent.
enum PartType {
    Name(CompactString),
    Other(Value),
}

impl<'de> Deserialize<'de> for PartType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PartType, D::Error> {
        struct TypeVisitor;
        impl<'de> Visitor<'de> for TypeVisitor {
            type Value = PartType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a segment's type")
            }
            other_scalars!(PartType::Other);
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PartType, E> {
                Ok(PartType::Name(v.into()))
            }
            other_lists!(PartType::Other);
            other_objects!(PartType::Other);
        }
        d.deserialize_any(TypeVisitor)
    }
}

/// The keys of one message item, each with the place it first came in.
#[derive(Default)]
struct PartKeys {
    kind: Option<(usize, PartType)>,
    data: Option<(usize, Loose)>,
    /// The other keys, in the order they first came (found by hash past a few, so an item a peer
    /// stuffed with keys is read in linear time), and the place each came in.
    others: Data,
    others_at: Vec<usize>,
    /// The place the next new key takes.
    next: usize,
}

/// Where a key goes: its first place when it came before, else the next one.
fn place<T>(slot: &Option<(usize, T)>, next: &mut usize) -> usize {
    match slot {
        Some((at, _)) => *at,
        None => {
            *next += 1;
            *next - 1
        }
    }
}

impl PartKeys {
    /// A segment when the item is `{type: text, data: object or null}` (or no `data`), the rule of
    /// [`crate::core::message::SegmentRef::read`], whatever else it has; otherwise the object as
    /// sent, keys in order.
    fn into_part(mut self) -> Part {
        let data_ok = self.data.as_ref().is_none_or(|(_, v)| matches!(v, Loose::Object(_) | Loose::Other(Value::Null)));
        if let (true, Some((_, PartType::Name(kind)))) = (data_ok, &mut self.kind) {
            let kind = std::mem::take(kind);
            let data = match self.data {
                Some((_, Loose::Object(data))) => data,
                _ => Data::new(),
            };
            return Part::Segment(Segment { kind, data });
        }
        let mut entries: Vec<(usize, String, Value)> =
            self.others_at.into_iter().zip(self.others).map(|(at, (k, v))| (at, k.into_string(), v)).collect();
        if let Some((at, kind)) = self.kind {
            let kind = match kind {
                PartType::Name(name) => Value::String(name.into()),
                PartType::Other(value) => value,
            };
            entries.push((at, "type".to_owned(), kind));
        }
        if let Some((at, data)) = self.data {
            entries.push((at, "data".to_owned(), data.into_value()));
        }
        entries.sort_unstable_by_key(|(at, _, _)| *at);
        Part::Unreadable(Value::Object(entries.into_iter().map(|(_, k, v)| (k, v)).collect()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Reads a frame both ways (bytes and checked text), which must agree.
    fn read(v: &Value) -> Frame {
        let text = serde_json::to_string(v).unwrap();
        let from_bytes = Frame::from_json(text.as_bytes()).unwrap();
        let from_text = Frame::from_json_str(&text).unwrap();
        // Compared as printed: a time that is no number reads as NaN, unequal to itself.
        assert_eq!(format!("{from_bytes:?}"), format!("{from_text:?}"));
        from_bytes
    }

    /// Every shape an event frame may take is read as [`Event::from_value`] reads it.
    #[test]
    fn a_frame_reads_as_its_value_does() {
        let frames = [
            json!({"id": "e1", "time": 1632847927.599013, "type": "message", "detail_type": "group", "sub_type": "",
                   "self": {"platform": "qq", "user_id": "10001"}, "message_id": "m1", "group_id": "3",
                   "user_id": "2", "alt_message": "hi",
                   "message": [{"type": "text", "data": {"text": "hi", "x": [1, {"a": null}]}},
                               {"type": "mention", "data": {"user_id": 5}},
                               {"type": "image", "data": null},
                               {"type": "face"},
                               {"data": {"text": "no type"}, "type": 7},
                               {"type": "text", "data": "not an object", "extra": true},
                               {"type": "a", "type": "b", "data": {"k": 1}, "data": {"k": 2}},
                               {"extra": 1, "type": 7, "more": [2], "data": "x", "extra": 3, "type": 8},
                               {"data": {"k": 1}, "n": null, "type": "c", "data": null, "n": {"m": 1}},
                               {"type": {"nested": "x"}, "data": {"k": 1}},
                               "plain", 5, null, [1, 2], true, 2.5]}),
            json!({"time": 1632847927, "type": "notice", "detail_type": "friend_increase",
                   "self_id": 123, "platform": "qq", "user_id": 456}),
            json!({"type": "message", "detail_type": "private", "self": {"platform": "qq", "user_id": 1},
                   "message": "just text"}),
            json!({"type": "message", "detail_type": "private", "self": {"platform": "qq", "user_id": "1"},
                   "message": {"type": "text", "data": {"text": "one"}}}),
            json!({"type": "message", "detail_type": "private", "self": {"platform": "qq", "user_id": "1"},
                   "message": []}),
            json!({"type": "meta", "detail_type": "heartbeat", "interval": 4, "self": "junk"}),
            json!({"type": "message", "detail_type": "private"}),
            json!({"type": "bogus", "detail_type": "x"}),
            json!({"type": 5, "detail_type": "x", "id": 7, "sub_type": 1}),
            json!({"type": "notice", "detail_type": "x", "self": {"user_id": "1"}, "time": "soon"}),
            json!({"message": "let me in", "type": "request", "detail_type": "new_friend", "user_id": "2",
                   "self": {"platform": "qq", "user_id": "1"}}),
            json!({"message": [{"type": "text", "data": {"text": "a list"}}], "type": "notice",
                   "detail_type": "x", "self": {"platform": "qq", "user_id": "1"}}),
        ];
        for frame in frames {
            let Frame::Event(typed) = read(&frame) else { panic!("not read as an event: {frame}") };
            let from_value = Event::from_value(frame.clone());
            match (&typed, &from_value) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.clone().into_value(), b.clone().into_value(), "{frame}");
                    assert_eq!(a.message, b.message, "{frame}");
                }
                _ => assert_eq!(typed, from_value, "{frame}"),
            }
        }
    }

    /// An item with more keys than a data map searches without its hash index, some repeated
    /// (as raw text: a `Value` would have merged them), around `type` and `data`: unreadable (its
    /// `data` is no object), keys in the order they first came, each with its last value, as
    /// reading the same text into a `Value` gives.
    #[test]
    fn a_wide_item_with_repeated_keys_reads_as_its_value_does() {
        let mut item: Vec<String> = (0..40).map(|i| format!(r#""k{}":{i}"#, i % 30)).collect();
        item.insert(5, r#""type":"text""#.into());
        item.insert(20, r#""data":[1]"#.into());
        item.push(r#""k3":"last","type":"image""#.into());
        let text = format!(
            r#"{{"type":"message","detail_type":"private","self":{{"platform":"qq","user_id":"1"}},"message":[{{{}}}]}}"#,
            item.join(",")
        );
        let Frame::Event(Ok(typed)) = Frame::from_json_str(&text).unwrap() else { panic!("not read as an event") };
        let from_value = Event::from_value(serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(typed.message, from_value.message);
        let Some(Message::Segments(parts)) = &typed.message else { panic!("no segments") };
        let Part::Unreadable(Value::Object(object)) = &parts[0] else { panic!("read as a segment") };
        let keys: Vec<&str> = object.keys().map(String::as_str).take(7).collect();
        assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4", "type", "k5"]);
        assert_eq!((object.len(), &object["k3"], &object["type"]), (32, &json!("last"), &json!("image")));
    }

    /// An answer reads as [`Response::from_value`] reads its value, whatever its fields hold.
    #[test]
    fn answers_read_as_their_values_do() {
        for doc in [
            json!({"status": "ok", "retcode": 0, "data": {"message_id": "5", "time": 1}, "message": "", "echo": 3}),
            json!({"status": "failed", "retcode": 10002, "data": null, "message": [1], "echo": "x", "id": 1}),
            json!({"retcode": "0", "data": [1], "echo": {"seq": 1}, "type": "x", "self": {"user_id": "1"}}),
            json!({"retcode": 35, "status": 1, "message": "no", "time": 3}),
            json!({"retcode": 1, "message": [{"type": "text", "data": {"text": "a list"}}], "detail_type": "x"}),
        ] {
            let Frame::Answer(answer) = read(&doc) else { panic!("not read as an answer: {doc}") };
            assert_eq!(Some(answer), Response::from_value(doc.clone()), "{doc}");
        }
    }

    #[test]
    fn other_documents_come_back_as_they_were() {
        for doc in [
            json!({"status": "ok", "retcode": "soon", "data": {"message_id": "5"}, "echo": 3}),
            json!({"post_type": "message", "retcode": 0, "message": [{"type": "text", "data": {"text": "v11"}}]}),
            json!({"post_type": "message", "time": 5, "message": [{"type": "text", "data": {"text": "v11"}}]}),
            json!({"type": "message"}),
            json!([1, 2]),
            json!("text"),
            json!(null),
        ] {
            let Frame::Other(back) = read(&doc) else { panic!("read as an event: {doc}") };
            assert_eq!(back, doc);
        }
    }

    #[test]
    fn a_segment_list_is_read_typed() {
        let Frame::Event(Ok(ev)) = read(&json!({"type": "message", "detail_type": "private",
            "self": {"platform": "qq", "user_id": "1"},
            "message": [{"type": "text", "data": {"text": "a\"b"}}, {"oops": 1}]}))
        else {
            panic!()
        };
        assert_eq!(
            ev.message,
            Some(Message::Segments(vec![Part::Segment(Segment::text("a\"b")), Part::Unreadable(json!({"oops": 1}))]))
        );
        assert!(!ev.fields.contains_key("message"));
        let Frame::Event(Ok(request)) = read(&json!({"type": "request", "detail_type": "new_friend",
            "self": {"platform": "qq", "user_id": "1"}, "message": "let me in"}))
        else {
            panic!()
        };
        assert_eq!((request.message, &request.fields["message"]), (None, &json!("let me in")), "a request's greeting");
    }

    #[test]
    fn malformed_json_is_an_error() {
        assert!(Frame::from_json(b"{\"type\": \"message\", ").is_err());
        assert!(Frame::from_json(b"{\"message\": [{\"type\": ]}").is_err());
    }
}
