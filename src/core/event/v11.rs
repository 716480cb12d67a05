//! The v11 events the bridge hands to bots, and their JSON.
//!
//! Notices, requests and meta events are maps in go-cqhttp's key order: they are few and their
//! shape comes from the mapping tables. Message events are nearly all of the traffic, so they are
//! typed ([`MessageEvent`]) and written straight to JSON: no map is built, hashed and walked per
//! event, keys are written as literals, integers with `itoa`, and a string goes through
//! `serde_json`'s escaping only when it holds a character JSON escapes. The bytes are the same
//! either way (a test writes each message event both ways and compares). The JSON is written as a
//! `String` and kept as [`Utf8Bytes`], the text a WebSocket frame takes as it is: a long message
//! is not checked for UTF-8 again on its way to each bot.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::core::message::{Data, Segment};
use crate::core::v11::PostFormat;
use crate::core::write_json::{string as write_str, value as write_value};

/// A v11 event ready to be written to any number of endpoints.
#[derive(Debug, Clone)]
pub struct V11Event {
    pub self_id: i64,
    body: Body,
    /// Its JSON per post format (string, array), written on first use and shared by every
    /// endpoint that takes that format: ten bots cost one serialisation, not ten.
    json: [OnceLock<Utf8Bytes>; 2],
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Map(Map<String, Value>),
    Message(Box<MessageEvent>),
}

impl PartialEq for V11Event {
    fn eq(&self, other: &Self) -> bool {
        self.self_id == other.self_id && self.body == other.body
    }
}

/// A message event in go-cqhttp's shape; the fields are written in this order.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageEvent {
    /// `message_sent` (the bot's own message, reported) rather than `message`.
    pub sent: bool,
    pub message_type: String,
    pub time: i64,
    pub self_id: i64,
    /// Not written when empty.
    pub sub_type: String,
    pub ids: MessageIds,
    /// An integer, or for guild messages a string.
    pub user_id: Value,
    /// Written (`null` when `Some(Null)`) for group messages only.
    pub anonymous: Option<Value>,
    /// `message`: these as an array, or `raw_message` for string-format endpoints.
    pub segments: Vec<Segment>,
    pub raw_message: String,
    pub sender: Sender,
    /// The backend's other fields, passed on under their own names after the ones above (a
    /// name already written is not written again).
    pub extra: Data,
}

/// The ids between `sub_type` and `user_id`.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageIds {
    /// `message_id`, then `group_id` when the message is a group's.
    Numeric { message_id: i32, group_id: Option<i64> },
    /// go-cqhttp's guild shape: string ids throughout.
    Channel { guild_id: String, channel_id: String, message_id: String, self_tiny_id: String },
}

/// go-cqhttp's `sender` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Sender {
    /// The same value as the event's `user_id`.
    pub user_id: Value,
    pub nickname: String,
    pub shape: SenderShape,
    /// The backend's own `sender` object: a key of it replaces the field of that name in its
    /// place, others follow.
    pub given: Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SenderShape {
    /// `tiny_id` (the user id again).
    Channel,
    /// `sex`, `age` (0).
    Private { sex: String },
    /// `sex`, `age` (0), `card`, `area`, `level`, `role`, `title`.
    Group { sex: String, card: String, area: String, level: String, role: String, title: String },
}

/// Keys a message event may write itself.
const MESSAGE_KEYS: [&str; 16] = [
    "post_type",
    "message_type",
    "time",
    "self_id",
    "sub_type",
    "message_id",
    "group_id",
    "guild_id",
    "channel_id",
    "self_tiny_id",
    "user_id",
    "anonymous",
    "message",
    "raw_message",
    "font",
    "sender",
];

impl MessageEvent {
    /// Whether the event writes `key` itself (so an extension field of that name is not passed on).
    fn writes(&self, key: &str) -> bool {
        match key {
            "sub_type" => !self.sub_type.is_empty(),
            "group_id" => matches!(self.ids, MessageIds::Numeric { group_id: Some(_), .. }),
            "guild_id" | "channel_id" | "self_tiny_id" => matches!(self.ids, MessageIds::Channel { .. }),
            "anonymous" => self.anonymous.is_some(),
            _ => MESSAGE_KEYS.contains(&key),
        }
    }

    /// Adds an extension field unless the event already has one of that name.
    pub fn pass_on(&mut self, key: &str, value: &Value) {
        if !self.writes(key) && !self.extra.contains_key(key) {
            self.extra.insert(key.to_owned(), value.clone());
        }
    }
}

impl V11Event {
    /// An event whose body is complete (a `message` in it, if any, is written as it is).
    pub fn new(self_id: i64, body: Map<String, Value>) -> V11Event {
        V11Event { self_id, body: Body::Map(body), json: Default::default() }
    }

    pub fn message_event(event: MessageEvent) -> V11Event {
        V11Event { self_id: event.self_id, body: Body::Message(Box::new(event)), json: Default::default() }
    }

    /// About the bytes the event holds once its JSON is written for one format: a message's text
    /// three times (its segments, `raw_message`, the JSON), other values twice. What the fan-out
    /// to bots bounds in bytes ([`crate::fanout`]); written text is counted, not the allocator's
    /// slack.
    pub fn weight(&self) -> usize {
        match &self.body {
            Body::Message(m) => {
                let given = |data: &Data| data.iter().map(|(k, v)| k.len() + value_bytes(v)).sum::<usize>();
                512 + 3 * m.raw_message.len() + 2 * (given(&m.extra) + given(&m.sender.given))
            }
            Body::Map(body) => 256 + 2 * body.iter().map(|(k, v)| k.len() + value_bytes(v)).sum::<usize>(),
        }
    }

    pub fn post_type(&self) -> &str {
        match &self.body {
            Body::Map(body) => body.get("post_type").and_then(Value::as_str).unwrap_or(""),
            Body::Message(m) if m.sent => "message_sent",
            Body::Message(_) => "message",
        }
    }

    /// A message event's segments.
    pub fn message(&self) -> Option<&[Segment]> {
        match &self.body {
            Body::Message(m) => Some(&m.segments),
            Body::Map(_) => None,
        }
    }

    pub(super) fn as_message_mut(&mut self) -> Option<&mut MessageEvent> {
        match &mut self.body {
            Body::Message(m) => Some(m),
            Body::Map(_) => None,
        }
    }

    /// Compact JSON in the endpoint's format. The bytes equal what JavaScript's `JSON.stringify`
    /// writes for the parsed value (no floats, no escaped `/`, raw UTF-8), so signatures verified
    /// either over the raw body or over a re-serialised one match. Written once per format.
    pub fn json(&self, format: PostFormat) -> Utf8Bytes {
        let slot = &self.json[matches!(format, PostFormat::Array) as usize];
        slot.get_or_init(|| self.to_json(format).into()).clone()
    }

    /// [`V11Event::json`] written anew, not kept.
    pub fn to_json(&self, format: PostFormat) -> String {
        match &self.body {
            Body::Map(body) => {
                let mut out = String::new();
                crate::core::write_json::object(&mut out, body);
                out
            }
            Body::Message(m) => {
                let mut out = String::with_capacity(512 + m.raw_message.len() * 2);
                write_message(m, format, &mut out);
                out
            }
        }
    }

    /// The event as a JSON value in the endpoint's format: the value [`V11Event::json`] writes.
    pub fn to_value(&self, format: PostFormat) -> Value {
        match &self.body {
            Body::Map(body) => Value::Object(body.clone()),
            // Read back from its JSON, so the two can never differ. Only event filters, quick
            // operations and message histories ask for the value.
            Body::Message(_) => serde_json::from_str(&self.json(format)).unwrap_or(Value::Null),
        }
    }
}

/// The bytes of a JSON value's strings and keys, and a few for each other value: an estimate of
/// what it holds, in one pass (decoded values are at most 64 deep).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(|v| 8 + value_bytes(v)).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| 8 + k.len() + value_bytes(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
    }
}

fn write_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `,"key":` (keys here are ours and need no escaping).
fn key(out: &mut String, key: &str) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

/// A message's segments as `[{"type":…,"data":{…}},…]` (the array format).
fn write_segments(out: &mut String, segments: &[Segment]) {
    out.push('[');
    for (i, seg) in segments.iter().enumerate() {
        out.push_str(if i == 0 { "{\"type\":" } else { ",{\"type\":" });
        write_str(out, &seg.kind);
        out.push_str(",\"data\":{");
        for (j, (k, v)) in (&seg.data).into_iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            write_value(out, v);
        }
        out.push_str("}}");
    }
    out.push(']');
}

/// Writes the entries of `extra` (keys escaped: they come from the backend).
fn write_entries(out: &mut String, entries: &Data, skip: impl Fn(&str) -> bool) {
    for (k, v) in entries {
        if skip(k) {
            continue;
        }
        out.push(',');
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
}

fn write_message(m: &MessageEvent, format: PostFormat, out: &mut String) {
    out.push_str(if m.sent { r#"{"post_type":"message_sent""# } else { r#"{"post_type":"message""# });
    key(out, "message_type");
    write_str(out, &m.message_type);
    key(out, "time");
    write_int(out, m.time);
    key(out, "self_id");
    write_int(out, m.self_id);
    if !m.sub_type.is_empty() {
        key(out, "sub_type");
        write_str(out, &m.sub_type);
    }
    match &m.ids {
        MessageIds::Numeric { message_id, group_id } => {
            key(out, "message_id");
            write_int(out, *message_id);
            if let Some(group_id) = group_id {
                key(out, "group_id");
                write_int(out, *group_id);
            }
        }
        MessageIds::Channel { guild_id, channel_id, message_id, self_tiny_id } => {
            for (name, value) in [
                ("guild_id", guild_id),
                ("channel_id", channel_id),
                ("message_id", message_id),
                ("self_tiny_id", self_tiny_id),
            ] {
                key(out, name);
                write_str(out, value);
            }
        }
    }
    key(out, "user_id");
    write_value(out, &m.user_id);
    if let Some(anonymous) = &m.anonymous {
        key(out, "anonymous");
        write_value(out, anonymous);
    }
    key(out, "message");
    match format {
        PostFormat::String => write_str(out, &m.raw_message),
        PostFormat::Array => write_segments(out, &m.segments),
    }
    key(out, "raw_message");
    write_str(out, &m.raw_message);
    key(out, "font");
    out.push('0');
    key(out, "sender");
    write_sender(&m.sender, out);
    write_entries(out, &m.extra, |_| false);
    out.push('}');
}

fn write_sender(s: &Sender, out: &mut String) {
    let mut first = true;
    let mut field = |out: &mut String, name: &'static str, own: &dyn Fn(&mut String)| {
        out.push_str(if first { "{\"" } else { ",\"" });
        first = false;
        out.push_str(name);
        out.push_str("\":");
        match s.given.get(name) {
            Some(given) => write_value(out, given),
            None => own(out),
        }
    };
    field(out, "user_id", &|out| write_value(out, &s.user_id));
    field(out, "nickname", &|out| write_str(out, &s.nickname));
    match &s.shape {
        SenderShape::Channel => field(out, "tiny_id", &|out| write_value(out, &s.user_id)),
        SenderShape::Private { sex } | SenderShape::Group { sex, .. } => {
            field(out, "sex", &|out| write_str(out, sex));
            field(out, "age", &|out| out.push('0'));
        }
    }
    if let SenderShape::Group { card, area, level, role, title, .. } = &s.shape {
        for (name, value) in [("card", card), ("area", area), ("level", level), ("role", role), ("title", title)] {
            field(out, name, &|out| write_str(out, value));
        }
    }
    write_entries(out, &s.given, |k| s.writes(k));
    out.push('}');
}

impl Sender {
    /// The fields of its shape (a given key of one of these names replaces it in place).
    fn writes(&self, key: &str) -> bool {
        match key {
            "user_id" | "nickname" => true,
            "tiny_id" => matches!(self.shape, SenderShape::Channel),
            "sex" | "age" => !matches!(self.shape, SenderShape::Channel),
            "card" | "area" | "level" | "role" | "title" => matches!(self.shape, SenderShape::Group { .. }),
            _ => false,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use serde::ser::{Serialize, SerializeMap, Serializer};

    use super::*;

    /// The same event through `serde`'s map serialisation: what the fast writer must match.
    pub(super) struct Reference<'a>(pub &'a MessageEvent, pub PostFormat);

    impl Serialize for Reference<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let Reference(m, format) = self;
            let mut map = s.serialize_map(None)?;
            map.serialize_entry("post_type", if m.sent { "message_sent" } else { "message" })?;
            map.serialize_entry("message_type", &m.message_type)?;
            map.serialize_entry("time", &m.time)?;
            map.serialize_entry("self_id", &m.self_id)?;
            if !m.sub_type.is_empty() {
                map.serialize_entry("sub_type", &m.sub_type)?;
            }
            match &m.ids {
                MessageIds::Numeric { message_id, group_id } => {
                    map.serialize_entry("message_id", message_id)?;
                    if let Some(g) = group_id {
                        map.serialize_entry("group_id", g)?;
                    }
                }
                MessageIds::Channel { guild_id, channel_id, message_id, self_tiny_id } => {
                    map.serialize_entry("guild_id", guild_id)?;
                    map.serialize_entry("channel_id", channel_id)?;
                    map.serialize_entry("message_id", message_id)?;
                    map.serialize_entry("self_tiny_id", self_tiny_id)?;
                }
            }
            map.serialize_entry("user_id", &m.user_id)?;
            if let Some(a) = &m.anonymous {
                map.serialize_entry("anonymous", a)?;
            }
            match format {
                PostFormat::String => map.serialize_entry("message", &m.raw_message)?,
                PostFormat::Array => map.serialize_entry("message", &m.segments)?,
            }
            map.serialize_entry("raw_message", &m.raw_message)?;
            map.serialize_entry("font", &0)?;
            let s = &m.sender;
            let mut sender = Map::new();
            sender.insert("user_id".into(), s.user_id.clone());
            sender.insert("nickname".into(), s.nickname.clone().into());
            match &s.shape {
                SenderShape::Channel => {
                    sender.insert("tiny_id".into(), s.user_id.clone());
                }
                SenderShape::Private { sex } | SenderShape::Group { sex, .. } => {
                    sender.insert("sex".into(), sex.clone().into());
                    sender.insert("age".into(), 0.into());
                }
            }
            if let SenderShape::Group { card, area, level, role, title, .. } = &s.shape {
                for (k, v) in [("card", card), ("area", area), ("level", level), ("role", role), ("title", title)] {
                    sender.insert(k.into(), v.clone().into());
                }
            }
            for (k, v) in &s.given {
                sender.insert(k.to_owned(), v.clone());
            }
            map.serialize_entry("sender", &sender)?;
            for (k, v) in &m.extra {
                map.serialize_entry(k, v)?;
            }
            map.end()
        }
    }
}

#[cfg(test)]
mod writer {
    use serde_json::json;

    use super::tests::Reference;
    use super::*;

    fn event(text: &str, given: Data, extra: Data, shape: SenderShape, ids: MessageIds) -> MessageEvent {
        let segments =
            vec![Segment::text(text), Segment::new("at").with("qq", 10001), Segment::new("face").with("id", text)];
        MessageEvent {
            sent: text.len() % 2 == 0,
            message_type: format!("group{text}"),
            time: 1_700_000_000,
            self_id: 10001,
            sub_type: text.into(),
            ids,
            user_id: json!(20002),
            anonymous: (text.len() % 3 == 0).then(|| json!({"id": 1, "name": text, "flag": null})),
            segments,
            raw_message: text.into(),
            sender: Sender { user_id: json!(-5), nickname: text.into(), shape, given },
            extra,
        }
    }

    fn assert_same(m: &MessageEvent) {
        for format in [PostFormat::String, PostFormat::Array] {
            let mut fast = String::new();
            write_message(m, format, &mut fast);
            let reference = serde_json::to_string(&Reference(m, format)).unwrap();
            assert_eq!(fast, reference);
        }
    }

    #[test]
    fn every_shape_is_written_as_serde_would() {
        let shapes = [
            SenderShape::Channel,
            SenderShape::Private { sex: "male".into() },
            SenderShape::Group {
                sex: "unknown".into(),
                card: "c\"a\"rd".into(),
                area: String::new(),
                level: "7".into(),
                role: "owner".into(),
                title: "\u{1}".into(),
            },
        ];
        let ids = [
            MessageIds::Numeric { message_id: -7, group_id: None },
            MessageIds::Numeric { message_id: i32::MAX, group_id: Some(i64::MIN) },
            MessageIds::Channel {
                guild_id: "g\\1".into(),
                channel_id: "c".into(),
                message_id: "m/1".into(),
                self_tiny_id: "t".into(),
            },
        ];
        let given: Data =
            [("card", json!("given")), ("age", json!(30)), ("tiny_id", json!(1.5)), ("x\ny", json!(null))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        let extra: Data = [("qq.x", json!([1, "2", {"3": 4.25}])), ("\"", json!(u64::MAX))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for text in ["", "plain", "é 😀 a/b", "\"q\" \\ \u{7f} \u{1f}\n\t", "&#91;[CQ:x]"] {
            for shape in &shapes {
                for ids in &ids {
                    for (given, extra) in [(Data::new(), Data::new()), (given.clone(), extra.clone())] {
                        assert_same(&event(text, given, extra, shape.clone(), ids.clone()));
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Any text in any field is written as `serde_json` writes it.
        #[test]
        fn any_text_is_written_as_serde_would(text in "\\PC{0,12}|[\\x00-\\x7f]{0,12}", key in ".{0,6}") {
            let given: Data = [(key.clone(), json!(text))].into_iter().collect();
            let extra: Data = [(key, json!({"k": text}))].into_iter().collect();
            let shape = SenderShape::Private { sex: text.clone() };
            assert_same(&event(&text, given, extra, shape, MessageIds::Numeric { message_id: 1, group_id: Some(2) }));
        }
    }

    #[test]
    fn a_message_event_reads_back_as_its_json() {
        let m = event(
            "hi \"there\"",
            Data::new(),
            Data::new(),
            SenderShape::Private { sex: "female".into() },
            MessageIds::Numeric { message_id: 3, group_id: Some(4) },
        );
        let ev = V11Event::message_event(m);
        assert_eq!(ev.post_type(), "message_sent");
        for format in [PostFormat::String, PostFormat::Array] {
            let written: Value = serde_json::from_str(&ev.json(format)).unwrap();
            assert_eq!(ev.to_value(format), written);
        }
        let array = ev.to_value(PostFormat::Array);
        assert_eq!(array["group_id"], 4);
        assert_eq!(array["message"][0]["data"]["text"], "hi \"there\"");
    }
}
