//! OneBot v12 values as the bridge reads and writes them: events, action requests, responses.
//!
//! Reading is tolerant of what real implementations send (`reference/onebot-v12.md` §2.8–2.9):
//! ids as numbers, a missing or empty event `id`, the pre-2022-08 `self_id`/`platform` fields in
//! place of `self`, integer `time`, `echo` of any JSON type.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::core::message::{Data, Segment};

pub mod frame;
pub use frame::Frame;

/// One bot account: `{platform, user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SelfId {
    pub platform: String,
    pub user_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("not a JSON object")]
    NotObject,
    #[error("missing or non-string field `{0}`")]
    Missing(&'static str),
    #[error("unknown event type {0:?}")]
    BadType(String),
}

/// A v12 event with its base fields lifted out and everything else kept in `fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// Seconds since the epoch (fractional allowed) as sent: 0 when absent, NaN when not a
    /// number. [`unix_seconds`] says whether it is a time at all.
    pub time: f64,
    /// `meta`, `message`, `notice` or `request`.
    pub kind: String,
    pub detail_type: String,
    pub sub_type: String,
    /// Absent on meta events.
    pub self_id: Option<SelfId>,
    /// A message event's `message`, read apart from the other fields (absent when it has none).
    /// Other events keep a `message` field (a request's greeting) in `fields`.
    pub message: Option<Message>,
    /// Every other field, in the order sent (a few keys, searched rather than hashed).
    pub fields: Data,
}

/// An event's `message` as read: a list is kept as typed segments, anything else as sent (a
/// string or a single segment, which translation tolerates, or junk it refuses).
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Segments(Vec<Part>),
    Other(Value),
}

/// One item of a message list.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Segment(Segment),
    /// An item that is no `{type, data}` segment, as sent: translation keeps it as text.
    Unreadable(Value),
}

impl Message {
    /// A message event keeps its message; another kind of event gets it back among its fields.
    fn of_kind(kind: &str, message: Option<Message>, fields: &mut Data) -> Option<Message> {
        match message {
            Some(message) if kind != "message" => {
                fields.insert("message", message.into_value());
                None
            }
            message => message,
        }
    }

    pub fn from_value(value: Value) -> Message {
        match value {
            Value::Array(items) => Message::Segments(items.into_iter().map(Part::from_value).collect()),
            other => Message::Other(other),
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Message::Segments(parts) => Value::Array(parts.into_iter().map(Part::into_value).collect()),
            Message::Other(v) => v,
        }
    }

    /// The message as JSON (a copy).
    pub fn to_value(&self) -> Value {
        self.clone().into_value()
    }

    /// Whether it can be read as a message at all: a list, one segment or text.
    pub fn is_usable(&self) -> bool {
        matches!(self, Message::Segments(_) | Message::Other(Value::Object(_) | Value::String(_)))
    }
}

impl Part {
    /// A segment when the value reads as one (the rule of
    /// [`SegmentRef::read`](crate::core::message::SegmentRef::read)), else the value
    /// as sent.
    pub fn from_value(value: Value) -> Part {
        let Value::Object(mut map) = value else { return Part::Unreadable(value) };
        let readable = matches!(map.get("data"), None | Some(Value::Null | Value::Object(_)));
        let kind = match map.get_mut("type") {
            Some(Value::String(kind)) if readable => std::mem::take(kind),
            _ => return Part::Unreadable(Value::Object(map)),
        };
        let data = match map.shift_remove("data") {
            Some(Value::Object(data)) => data.into(),
            _ => Default::default(),
        };
        Part::Segment(Segment { kind: kind.into(), data })
    }

    pub fn into_value(self) -> Value {
        match self {
            Part::Segment(seg) => seg.into_value(),
            Part::Unreadable(v) => v,
        }
    }
}

/// A JSON value whose object, when it is one, is read as [`Data`] (a few keys, searched rather
/// than hashed): a segment's `data`, an event's `self`.
#[derive(Debug)]
pub(crate) enum Loose {
    Object(Data),
    Other(Value),
}

impl Loose {
    pub(crate) fn into_value(self) -> Value {
        match self {
            Loose::Object(data) => Value::Object(data.into_map()),
            Loose::Other(v) => v,
        }
    }
}

impl From<Value> for Loose {
    fn from(v: Value) -> Loose {
        match v {
            Value::Object(map) => Loose::Object(map.into()),
            other => Loose::Other(other),
        }
    }
}

/// The fields every event has, as read, before they are checked ([`Event::from_slots`]).
#[derive(Debug, Default)]
pub(crate) struct Slots {
    pub id: Option<Value>,
    pub time: Option<Value>,
    pub kind: Option<Value>,
    pub detail_type: Option<Value>,
    pub sub_type: Option<Value>,
    pub self_: Option<Loose>,
    pub message: Option<Message>,
}

impl Slots {
    /// Takes the fields every event has out of an object, keeping the others in order.
    fn take(map: &mut Map<String, Value>) -> Slots {
        Slots {
            id: map.shift_remove("id"),
            time: map.shift_remove("time"),
            kind: map.shift_remove("type"),
            detail_type: map.shift_remove("detail_type"),
            sub_type: map.shift_remove("sub_type"),
            self_: map.shift_remove("self").map(Loose::from),
            message: map.shift_remove("message").map(Message::from_value),
        }
    }

    /// Puts what was taken back into the object (a frame that is no event after all).
    pub(crate) fn put_back(self, map: &mut Map<String, Value>) {
        let fields = [
            ("id", self.id),
            ("time", self.time),
            ("type", self.kind),
            ("detail_type", self.detail_type),
            ("sub_type", self.sub_type),
            ("self", self.self_.map(Loose::into_value)),
            ("message", self.message.map(Message::into_value)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        }
    }
}

/// The latest instant read as a time: 9999-12-31T23:59:59Z.
pub const MAX_TIME: i64 = 253_402_300_799;

/// A `time` value as sent (number or decimal text): 0 when absent, NaN when unreadable.
pub fn read_time(v: Option<&Value>) -> f64 {
    match v {
        None | Some(Value::Null) => 0.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(f64::NAN),
        Some(_) => f64::NAN,
    }
}

/// Whole unix seconds, if `t` is a time: finite, after the epoch and no later than
/// [`MAX_TIME`]. `1e300`, negative and NaN-like values are not (never saturated to i64::MAX).
pub fn unix_seconds(t: f64) -> Option<i64> {
    (t.is_finite() && t >= 1.0 && t <= MAX_TIME as f64).then_some(t as i64)
}

/// Reads an id-like value (string or number) as a string.
pub fn id_string(v: &Value) -> Option<String> {
    id_str(v).map(Cow::into_owned)
}

/// [`id_string`], borrowed where the value is a string already (most ids are).
pub fn id_str(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

impl Event {
    /// Reads an event, accepting the legacy shapes real implementations still send.
    pub fn from_value(value: Value) -> Result<Event, EventError> {
        let Value::Object(mut map) = value else {
            return Err(EventError::NotObject);
        };
        let slots = Slots::take(&mut map);
        Event::from_slots(slots, map.into())
    }

    /// Checks and reads the fields every event has; `map` holds the others.
    pub(crate) fn from_slots(slots: Slots, mut map: Data) -> Result<Event, EventError> {
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let kind = text(slots.kind).ok_or(EventError::Missing("type"))?;
        if !matches!(kind.as_str(), "meta" | "message" | "notice" | "request") {
            return Err(EventError::BadType(kind));
        }
        let detail_type = text(slots.detail_type).ok_or(EventError::Missing("detail_type"))?;
        let sub_type = text(slots.sub_type).unwrap_or_default();
        let id = text(slots.id).unwrap_or_default();
        let time = read_time(slots.time.as_ref());
        let self_id = match slots.self_ {
            Some(Loose::Object(s)) => Some(SelfId {
                platform: s.get("platform").and_then(id_string).unwrap_or_default(),
                user_id: s.get("user_id").and_then(id_string).ok_or(EventError::Missing("self.user_id"))?,
            }),
            _ => {
                // Drafts before 2022-08-14 carried these at top level.
                let legacy = map.get("self_id").and_then(id_string);
                legacy.map(|user_id| {
                    map.remove("self_id");
                    let platform = map.remove("platform").and_then(|p| id_string(&p)).unwrap_or_default();
                    SelfId { platform, user_id }
                })
            }
        };
        if self_id.is_none() && kind != "meta" {
            return Err(EventError::Missing("self"));
        }
        let message = Message::of_kind(&kind, slots.message, &mut map);
        Ok(Event { id, time, kind, detail_type, sub_type, self_id, message, fields: map })
    }

    /// An event put together by the bridge (a v11 backend's event, a test): `message`, when
    /// `fields` has one, is taken out and read as [`Event::message`].
    pub fn new(
        kind: &str,
        detail_type: String,
        sub_type: String,
        self_id: Option<SelfId>,
        time: f64,
        fields: impl Into<Data>,
    ) -> Event {
        let mut fields = fields.into();
        let message = fields.remove("message").map(Message::from_value);
        let message = Message::of_kind(kind, message, &mut fields);
        Event { id: String::new(), time, kind: kind.to_owned(), detail_type, sub_type, self_id, message, fields }
    }

    /// The event as a v12 JSON object again (the inverse of [`Event::from_value`]).
    pub fn into_value(self) -> Value {
        let mut map = Map::with_capacity(self.fields.len() + 6);
        map.insert("id".into(), self.id.into());
        map.insert("time".into(), serde_json::Number::from_f64(self.time).map(Value::Number).unwrap_or(Value::Null));
        map.insert("type".into(), self.kind.into());
        map.insert("detail_type".into(), self.detail_type.into());
        map.insert("sub_type".into(), self.sub_type.into());
        if let Some(me) = self.self_id {
            map.insert("self".into(), serde_json::json!({"platform": me.platform, "user_id": me.user_id}));
        }
        if let Some(message) = self.message {
            map.insert("message".into(), message.into_value());
        }
        map.extend(self.fields.into_iter().map(|(k, v)| (k.into_string(), v)));
        Value::Object(map)
    }

    /// `type.detail_type`, the key the mapping tables use. Built by hand: every event's
    /// translation names it, and `format!` took ~700 instructions of an event's ~60 000.
    pub fn name(&self) -> String {
        let mut name = String::with_capacity(self.kind.len() + 1 + self.detail_type.len());
        name.push_str(&self.kind);
        name.push('.');
        name.push_str(&self.detail_type);
        name
    }

    /// An id-like field as text (see [`id_str`]).
    pub fn str_field(&self, key: &str) -> Option<Cow<'_, str>> {
        self.fields.get(key).and_then(id_str)
    }
}

/// A v12 action request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub action: String,
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<String>,
    #[serde(rename = "self", default, skip_serializing_if = "Option::is_none")]
    pub self_id: Option<SelfId>,
}

impl Request {
    pub fn new(action: impl Into<String>, params: Map<String, Value>) -> Self {
        Request { action: action.into(), params, echo: None, self_id: None }
    }

    /// Its JSON, as `serde_json` writes it, with long texts copied rather than escaped byte by
    /// byte ([`crate::core::write_json`]).
    pub fn to_json(&self) -> String {
        self.to_json_with_message(None)
    }

    /// [`Request::to_json`] of the request with `message` as its last param: what it writes
    /// once the segments are put into `params` as a value, without that value.
    pub fn to_json_with_message(&self, message: Option<&[crate::core::message::Segment]>) -> String {
        use crate::core::write_json::{object, segments, string};
        let mut out = String::with_capacity(64);
        out.push_str("{\"action\":");
        string(&mut out, &self.action);
        out.push_str(",\"params\":");
        object(&mut out, &self.params);
        if let Some(message) = message {
            out.pop(); // the params' closing brace
            if !self.params.is_empty() {
                out.push(',');
            }
            out.push_str("\"message\":");
            segments(&mut out, message);
            out.push('}');
        }
        if let Some(echo) = &self.echo {
            out.push_str(",\"echo\":");
            string(&mut out, echo);
        }
        if let Some(SelfId { platform, user_id }) = &self.self_id {
            out.push_str(",\"self\":{\"platform\":");
            string(&mut out, platform);
            out.push_str(",\"user_id\":");
            string(&mut out, user_id);
            out.push('}');
        }
        out.push('}');
        out
    }
}

/// A v12 action response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    pub status: String,
    pub retcode: i64,
    pub data: Value,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo: Option<Value>,
}

impl Response {
    pub fn ok(data: Value) -> Self {
        Response { status: "ok".into(), retcode: 0, data, message: String::new(), echo: None }
    }

    pub fn failed(retcode: i64, message: impl Into<String>) -> Self {
        Response { status: "failed".into(), retcode, data: Value::Null, message: message.into(), echo: None }
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok" && self.retcode == 0
    }

    /// Reads a response leniently: a missing `status` is derived from `retcode`.
    pub fn from_value(value: Value) -> Option<Response> {
        let Value::Object(mut map) = value else { return None };
        let retcode = Response::retcode_of(map.get("retcode")?)?;
        Some(Response::from_fields(
            retcode,
            map.remove("status"),
            map.remove("message"),
            map.remove("data"),
            map.remove("echo"),
        ))
    }

    /// A `retcode` as a number, or a string of one.
    pub(crate) fn retcode_of(value: &Value) -> Option<i64> {
        value.as_i64().or_else(|| value.as_str()?.parse().ok())
    }

    /// The rest of [`Response::from_value`], given the fields the frame has.
    pub(crate) fn from_fields(
        retcode: i64,
        status: Option<Value>,
        message: Option<Value>,
        data: Option<Value>,
        echo: Option<Value>,
    ) -> Response {
        let status = match status {
            Some(Value::String(s)) => s,
            _ if retcode == 0 => "ok".into(),
            _ => "failed".into(),
        };
        let message = match message {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        Response { status, retcode, data: data.unwrap_or(Value::Null), message, echo }
    }
}

/// Is this frame from the backend an event (as opposed to an action response)?
pub fn is_event_frame(map: &Map<String, Value>) -> bool {
    map.contains_key("type") && map.contains_key("detail_type")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_with_its_message_apart_is_written_as_with_the_message_in_its_params() {
        use crate::core::message::Segment;
        let message = vec![Segment::new("mention").with("user_id", "2"), Segment::text(" hi \"there\"")];
        let self_id = Some(SelfId { platform: "qq".into(), user_id: "1".into() });
        let cases = [
            (Map::new(), None, None),
            (json!({"detail_type": "group", "group_id": "30003"}).as_object().unwrap().clone(), Some("e-1"), self_id),
        ];
        for (params, echo, self_id) in cases {
            let mut apart = Request::new("send_message", params);
            apart.echo = echo.map(str::to_owned);
            apart.self_id = self_id;
            let mut whole = apart.clone();
            whole.params.insert("message".into(), Segment::list_into_value(message.clone()));
            let written = apart.to_json_with_message(Some(&message));
            assert_eq!(written, whole.to_json());
            assert_eq!(written, serde_json::to_string(&whole).unwrap());
            assert_eq!(apart.to_json_with_message(None), apart.to_json());
        }
    }

    #[test]
    fn a_request_is_written_as_serde_json_writes_it() {
        let long = "会议 [moved] & \"quoted\" \\ \n ".repeat(50);
        let params = json!({"detail_type": "group", "group_id": "30003",
            "message": [{"type": "text", "data": {"text": long}}, {"type": "qq.face", "data": {"id": 1}}]});
        let Value::Object(params) = params else { unreachable!() };
        let mut req = Request::new("send_message", params);
        assert_eq!(req.to_json(), serde_json::to_string(&req).unwrap());
        req.echo = Some("obb-7".into());
        req.self_id = Some(SelfId { platform: "qq".into(), user_id: "10\"01".into() });
        assert_eq!(req.to_json(), serde_json::to_string(&req).unwrap());
    }

    #[test]
    fn reads_a_standard_event() {
        let ev = Event::from_value(json!({
            "id": "b6e65187", "time": 1632847927.599013, "type": "message", "detail_type": "private",
            "sub_type": "", "self": {"platform": "qq", "user_id": "123"}, "message_id": "6283",
            "message": [], "alt_message": "", "user_id": "456"
        }))
        .unwrap();
        assert_eq!(ev.name(), "message.private");
        assert_eq!(ev.self_id.as_ref().unwrap().user_id, "123");
        assert_eq!(ev.str_field("user_id").as_deref(), Some("456"));
        assert!(!ev.fields.contains_key("type"));
    }

    #[test]
    fn tolerates_legacy_drafts_and_numeric_ids() {
        let ev = Event::from_value(json!({
            "time": 1632847927, "type": "notice", "detail_type": "friend_increase",
            "self_id": 123, "platform": "qq", "user_id": 456
        }))
        .unwrap();
        assert_eq!(ev.id, "");
        assert_eq!(ev.self_id, Some(SelfId { platform: "qq".into(), user_id: "123".into() }));
        assert_eq!(ev.str_field("user_id").as_deref(), Some("456"));
        assert_eq!(ev.time, 1632847927.0);
    }

    #[test]
    fn meta_events_need_no_self_but_others_do() {
        assert!(Event::from_value(json!({"type":"meta","detail_type":"heartbeat","interval":4})).is_ok());
        assert_eq!(
            Event::from_value(json!({"type":"message","detail_type":"private"})),
            Err(EventError::Missing("self"))
        );
        assert_eq!(
            Event::from_value(json!({"type":"bogus","detail_type":"x"})),
            Err(EventError::BadType("bogus".into()))
        );
        assert_eq!(Event::from_value(json!([1])), Err(EventError::NotObject));
    }

    #[test]
    fn only_real_times_are_times() {
        let time = |v: Value| unix_seconds(read_time(Some(&v)));
        assert_eq!(time(json!(1632847927.599013)), Some(1632847927));
        assert_eq!(time(json!("1632847927")), Some(1632847927));
        assert_eq!(time(json!(MAX_TIME)), Some(MAX_TIME));
        for junk in [json!(1e300), json!(-5), json!(0), json!("NaN"), json!("inf"), json!(true), json!({})] {
            assert_eq!(time(junk.clone()), None, "{junk}");
        }
        assert_eq!(read_time(None), 0.0, "absent is 0, not junk");
        assert!(read_time(Some(&json!("soon"))).is_nan(), "unreadable is told apart from absent");
    }

    #[test]
    fn reads_responses_leniently() {
        let r =
            Response::from_value(json!({"retcode": 10002, "message": "nope", "data": null, "echo": {"a": 1}})).unwrap();
        assert_eq!(r.status, "failed");
        assert_eq!(r.echo, Some(json!({"a": 1})));
        assert!(Response::from_value(json!({"status": "ok"})).is_none());
    }
}
