//! OneBot v12 data encodings: JSON, and MessagePack where `bytes` travel as `bin`.
//!
//! Inside the bridge every value is a `serde_json::Value`; a MessagePack `bin` read from the
//! backend becomes a base64 string, which is how v12 carries `bytes` in JSON.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use crate::core::message::{CompactString, Data, Reading};
use crate::core::scan::{self, ScanLimits, Shape};
use crate::core::v12::{Frame, Message};

use crate::decode::MEASURED_AFTER;
pub use crate::decode::{Budget, DecodeError};

/// Reads a JSON or MessagePack document, after the pre-scan ([`crate::core::scan`]) found it
/// within [`ScanLimits::PEER`]. Peer bytes go through [`read`], which also takes parse budget.
pub fn decode(bytes: &[u8], msgpack: bool) -> Result<Value, DecodeError> {
    if !msgpack {
        scan::scan_json(bytes, ScanLimits::PEER)?;
        return Ok(serde_json::from_slice(bytes)?);
    }
    scan::scan_msgpack(bytes, ScanLimits::PEER)?;
    parse_msgpack(bytes)
}

/// [`decode`] for a document whose encoding is not declared: `preferred` first, then the other
/// one. Peer bytes go through [`read_either`], which also takes parse budget.
pub fn decode_either(bytes: &[u8], preferred_msgpack: bool) -> Result<Value, DecodeError> {
    decode(bytes, preferred_msgpack).or_else(|first| decode(bytes, !preferred_msgpack).map_err(|_| first))
}

fn parse_msgpack(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut cursor = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut cursor, scan::MAX_DEPTH + 1)
        .map_err(|e| DecodeError::MsgPack(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(DecodeError::MsgPack(format!("{} bytes after the value", cursor.len())));
    }
    Ok(msgpack_to_json(v))
}

/// Reads a document from the backend: pre-scanned, then decoded within the backend's parse
/// budget ([`crate::decode`]).
pub async fn read(bytes: &[u8], msgpack: bool) -> Result<Value, DecodeError> {
    read_held(bytes, msgpack).await.map(|(value, _budget)| value)
}

/// [`read`], handing back the parse budget the document holds, for a caller that keeps the
/// document a while (an event waiting to be translated).
pub async fn read_held(bytes: &[u8], msgpack: bool) -> Result<(Value, Budget), DecodeError> {
    let budget = crate::decode::admit(bytes, msgpack, crate::decode::Side::Backend).await?;
    let value = if msgpack { parse_msgpack(bytes)? } else { serde_json::from_slice(bytes)? };
    Ok((value, budget))
}

/// Reads a document whose encoding is not declared: `preferred` first, then the other one. A
/// refusal (too costly to decode) is reported over the other encoding's complaint. The parse
/// budget comes back with the document, as from [`read_held`].
pub async fn read_either(bytes: &[u8], preferred_msgpack: bool) -> Result<(Value, Budget), DecodeError> {
    either(preferred_msgpack, |msgpack| read_held(bytes, msgpack)).await
}

/// A v11 backend's frame (events and answers are JSON objects). A text frame that is an object
/// is read into its members in order ([`Data`]), no key hashed, and its `message` into segments
/// (type and data, as a v12 frame's are read): reading a NapCat message event into a `Value`
/// tree spent about a fifth of its instructions hashing the keys of its maps. Anything else
/// comes back as [`read_either`] reads it (a MessagePack object as its members, `message`
/// among them). The parse budget comes back with the document, as from [`read_held`].
pub async fn read_members(payload: Payload<'_>) -> Result<(Result<Members, Value>, Budget), DecodeError> {
    if let Payload::Text(text) = payload {
        if text.trim_start().starts_with('{') {
            // What `read_either` would answer: JSON first, and a text object is no MessagePack.
            // A small one is decoded first and counted after, as `read_frame` reads a v12 frame.
            if let Some(read) = read_small(text, |text| serde_json::from_str::<Members>(text), Members::shape).await {
                return read.map(|(members, budget)| (Ok(members), budget));
            }
            let budget = crate::decode::admit(text.as_bytes(), false, crate::decode::Side::Backend).await?;
            return Ok((Ok(serde_json::from_str::<Members>(text)?), budget));
        }
    }
    let (value, budget) = read_either(payload.bytes(), payload.is_binary()).await?;
    let members = match value {
        Value::Object(map) => Ok(Members { members: Data::from(map), message: None }),
        other => Err(other),
    };
    Ok((members, budget))
}

/// A JSON object's members in order, its `message` (a v11 event's segments, or an answer's
/// text) read apart when it was read from JSON text.
#[derive(Debug)]
pub struct Members {
    pub members: Data,
    pub message: Option<Message>,
}

impl Members {
    /// What the object holds, counted as the pre-scan counts its text.
    pub fn shape(&self) -> Shape {
        let message = self.message.as_ref().map(|m| m.shape().keyed());
        Shape::container(crate::core::v12::frame::members_shape(&self.members).chain(message))
    }

    /// The object again, `message` last.
    pub fn into_value(self) -> Value {
        let mut map = self.members.into_map();
        if let Some(message) = self.message {
            map.insert("message".into(), message.into_value());
        }
        Value::Object(map)
    }
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct MembersVisitor;
        impl<'de> serde::de::Visitor<'de> for MembersVisitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Members, A::Error> {
                let mut members = Reading::with_capacity(access.size_hint().unwrap_or(Data::INDEXED));
                let mut message = None;
                while let Some(key) = access.next_key::<CompactString>()? {
                    if key == "message" {
                        message = Some(access.next_value::<Message>()?);
                    } else {
                        members.insert(key, access.next_value::<Value>()?);
                    }
                }
                Ok(Members { members: members.done(), message })
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

/// A WebSocket frame's payload as it came.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// A text frame: JSON expected, its UTF-8 already checked by the WebSocket layer.
    Text(&'a str),
    /// A binary frame: MessagePack expected.
    Binary(&'a [u8]),
}

impl<'a> Payload<'a> {
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Payload::Text(text) => text.as_bytes(),
            Payload::Binary(bytes) => bytes,
        }
    }

    pub fn is_binary(self) -> bool {
        matches!(self, Payload::Binary(_))
    }
}

/// A backend's frame, as [`read_either`] reads it (a text frame as JSON first, a binary one as
/// MessagePack first), with an event read straight into a [`Event`](crate::core::v12::Event) ([`Frame`]): a JSON
/// frame builds no `Value` tree for the fields every event has, and a text frame's strings are
/// not checked for UTF-8 a second time.
///
/// A small text frame (up to [`MEASURED_AFTER`] bytes: events are) is decoded first and counted
/// after, within a budget for the most its bytes can hold: scanning it first cost about a
/// twelfth of an event's instructions, more than its reading does not already pay.
pub async fn read_frame(payload: Payload<'_>) -> Result<(Frame, Budget), DecodeError> {
    if let Payload::Text(text) = payload {
        if let Some(read) = read_small(text, Frame::from_json_str, Frame::shape).await {
            return read;
        }
    }
    let bytes = payload.bytes();
    either(payload.is_binary(), |msgpack| async move {
        let budget = crate::decode::admit(bytes, msgpack, crate::decode::Side::Backend).await?;
        let frame = match payload {
            _ if msgpack => Frame::from_value(parse_msgpack(bytes)?),
            Payload::Text(text) => Frame::from_json_str(text)?,
            Payload::Binary(bytes) => Frame::from_json(bytes)?,
        };
        Ok((frame, budget))
    })
    .await
}

/// A backend's small text frame (at most [`MEASURED_AFTER`] bytes), decoded first and counted
/// after, within a budget for the most its bytes can hold ([`crate::decode::admit_unscanned`]).
/// `None` for a larger frame, and for one serde_json cannot `read`: the caller reads it as any
/// frame is read (through the pre-scan, JSON then MessagePack), to say why.
async fn read_small<T>(
    text: &str,
    read: impl FnOnce(&str) -> serde_json::Result<T>,
    shape: impl FnOnce(&T) -> Shape,
) -> Option<Result<(T, Budget), DecodeError>> {
    if text.len() > MEASURED_AFTER {
        return None;
    }
    let mut budget = match crate::decode::admit_unscanned(text.len(), crate::decode::Side::Backend).await {
        Ok(budget) => budget,
        Err(busy) => return Some(Err(busy)),
    };
    let read = read(text).ok()?;
    Some(crate::decode::measured(&mut budget, text.len(), shape(&read)).map(|()| (read, budget)))
}

/// `read` in the preferred encoding, then in the other one; a refusal is reported over the other
/// encoding's complaint.
async fn either<T, F: std::future::Future<Output = Result<T, DecodeError>>>(
    preferred_msgpack: bool,
    read: impl Fn(bool) -> F,
) -> Result<T, DecodeError> {
    let first = match read(preferred_msgpack).await {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    match read(!preferred_msgpack).await {
        Ok(v) => Ok(v),
        Err(second) if second.is_refusal() && !first.is_refusal() => Err(second),
        Err(_) => Err(first),
    }
}

/// The encoding an HTTP `Content-Type` names: `Some(false)` JSON, `Some(true)` MessagePack,
/// `None` anything else. Parameters (`; charset=utf-8`) and case are ignored, and the spellings
/// real peers use are accepted (`application/x-msgpack`, `text/json`, `…+json`).
pub fn encoding_of(content_type: &str) -> Option<bool> {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/json" => Some(false),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => Some(true),
        e if e.starts_with("application/") && e.ends_with("+json") => Some(false),
        _ => None,
    }
}

/// The `Content-Type` the bridge sends for an encoding.
pub fn content_type(msgpack: bool) -> &'static str {
    if msgpack {
        "application/msgpack"
    } else {
        "application/json"
    }
}

/// Writes a value as JSON or MessagePack.
pub fn encode<T: serde::Serialize>(value: &T, msgpack: bool) -> Vec<u8> {
    if msgpack {
        rmp_serde::to_vec_named(value).unwrap_or_default()
    } else {
        serde_json::to_vec(value).unwrap_or_default()
    }
}

/// Actions whose `data` param is v12 `bytes`.
const BYTES_PARAMS: [&str; 2] = ["upload_file", "upload_file_fragmented"];

/// Writes an action request. In MessagePack its `bytes` params travel as `bin`, as the spec says
/// (in JSON they are base64 text, which is how the core holds them).
pub fn encode_request(req: &crate::core::v12::Request, msgpack: bool) -> Vec<u8> {
    if !msgpack {
        return req.to_json().into_bytes();
    }
    let bytes_param =
        req.params.get("data").and_then(Value::as_str).filter(|_| BYTES_PARAMS.contains(&req.action.as_str()));
    let Some(b64) = bytes_param else { return encode(req, msgpack) };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64) else { return encode(req, msgpack) };
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::to_value(req) else { return encode(req, msgpack) };
    if let Some(Value::Object(params)) = obj.get_mut("params") {
        params.remove("data");
    }
    let mut value = json_to_msgpack(Value::Object(obj));
    if let rmpv::Value::Map(entries) = &mut value {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("params") {
                if let rmpv::Value::Map(params) = v {
                    params.push(("data".into(), rmpv::Value::Binary(raw)));
                }
                break;
            }
        }
    }
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, &value);
    out
}

fn json_to_msgpack(v: Value) -> rmpv::Value {
    use rmpv::Value as M;
    match v {
        Value::Null => M::Nil,
        Value::Bool(b) => M::Boolean(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => M::from(i),
            (None, Some(u)) => M::from(u),
            _ => M::F64(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => M::String(s.into()),
        Value::Array(a) => M::Array(a.into_iter().map(json_to_msgpack).collect()),
        Value::Object(m) => M::Map(m.into_iter().map(|(k, v)| (M::String(k.into()), json_to_msgpack(v))).collect()),
    }
}

fn msgpack_to_json(v: rmpv::Value) -> Value {
    use rmpv::Value as M;
    match v {
        M::Nil => Value::Null,
        M::Boolean(b) => Value::Bool(b),
        M::Integer(i) => i.as_i64().map(Value::from).or_else(|| i.as_u64().map(Value::from)).unwrap_or(Value::Null),
        M::F32(f) => Number::from_f64(f as f64).map(Value::Number).unwrap_or(Value::Null),
        M::F64(f) => Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        M::String(s) => Value::String(s.into_str().unwrap_or_default()),
        M::Binary(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        M::Array(a) => Value::Array(a.into_iter().map(msgpack_to_json).collect()),
        M::Map(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                let key = match k {
                    M::String(s) => s.into_str().unwrap_or_default(),
                    other => other.to_string(),
                };
                out.insert(key, msgpack_to_json(v));
            }
            Value::Object(out)
        }
        M::Ext(_, data) => Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scan::{scan_json, ScanLimits};
    use serde_json::json;

    /// Frames holding nothing their reading leaves out, of every kind a small frame can be.
    fn small_frames() -> Vec<String> {
        let segments = json!([
            {"type": "text", "data": {"text": "hi [x]"}},
            {"type": "image", "data": {"file_id": "f1", "extra": {"w": [1, 2.5, null], "deep": [[[]]]}}},
            {"type": "mention", "data": {}},
            "not a segment",
            {"no": "type"}
        ]);
        let event = |message: serde_json::Value| {
            json!({"id": "e1", "time": 1.5, "type": "message", "detail_type": "group", "sub_type": "",
                   "self": {"platform": "qq", "user_id": "10001"}, "message": message,
                   "message_id": "m1", "group_id": "g", "user_id": "u", "alt_message": "hi", "more": {"k": [true]}})
        };
        [
            event(segments),
            event(json!("a CQ string")),
            json!({"id": "n1", "time": 2, "type": "notice", "detail_type": "friend_increase", "sub_type": "",
                   "self": {"platform": "qq", "user_id": "10001"}, "user_id": "u", "message": "hello"}),
            json!({"status": "ok", "retcode": 0, "data": {"list": [{"a": 1}, {"b": [2]}]}, "message": "", "echo": {"seq": 7}}),
            json!({"status": "failed", "retcode": 10003, "data": null, "message": "no"}),
            json!([1, {"a": "b"}]),
            json!("just a string"),
        ]
        .iter()
        .map(|v| serde_json::to_string(v).unwrap())
        .collect()
    }

    #[test]
    fn a_decoded_frame_is_counted_as_the_pre_scan_counts_its_text() {
        for text in small_frames() {
            let frame = Frame::from_json_str(&text).unwrap();
            assert_eq!(frame.shape(), scan_json(text.as_bytes(), ScanLimits::PEER).unwrap(), "{text}");
        }
    }

    #[tokio::test]
    async fn a_small_v11_frame_is_counted_as_the_pre_scan_counts_it() {
        let frames = [
            json!({"post_type": "message", "message": [{"type": "text", "data": {"text": "x"}}, 5], "sender": {"a": [1]}}),
            json!({"post_type": "message", "message": "[CQ:face,id=1]"}),
            json!({"status": "ok", "retcode": 0, "data": {"message_id": 1}, "echo": 7}),
        ];
        for frame in frames {
            let text = frame.to_string();
            let (members, budget) = read_members(Payload::Text(&text)).await.unwrap();
            let shape = scan_json(text.as_bytes(), ScanLimits::PEER).unwrap();
            assert_eq!(members.unwrap().shape(), shape, "{text}");
            assert_eq!(budget.num_permits(), crate::decode::cost(text.len(), shape, false).div_ceil(1024));
        }
        let nested = |levels: usize| {
            format!(r#"{{"post_type":"notice","deep":{}{}}}"#, "[".repeat(levels - 1), "]".repeat(levels - 1))
        };
        assert!(read_members(Payload::Text(&nested(64))).await.is_ok());
        for levels in [65, 200] {
            let refused = read_members(Payload::Text(&nested(levels))).await.unwrap_err();
            assert!(refused.to_string().contains("deeper than 64"), "{refused}");
        }
    }

    #[tokio::test]
    async fn a_small_frame_is_refused_as_deep_as_before_and_keeps_only_its_budget() {
        for text in small_frames() {
            let (_, budget) = read_frame(Payload::Text(&text)).await.unwrap();
            let shape = scan_json(text.as_bytes(), ScanLimits::PEER).unwrap();
            let want = crate::decode::cost(text.len(), shape, false).div_ceil(1024);
            assert_eq!(budget.num_permits(), want, "{text}");
        }
        // Nested in a field the event keeps: 64 levels pass, 65 are refused, as the pre-scan
        // refuses them; the frames are far below the size that is scanned first.
        let nested = |levels: usize| {
            let value = format!("{}{}", "[".repeat(levels - 1), "]".repeat(levels - 1));
            format!(
                r#"{{"id":"e","time":1,"type":"notice","detail_type":"x","sub_type":"","self":{{"platform":"qq","user_id":"1"}},"deep":{value}}}"#
            )
        };
        assert!(read_frame(Payload::Text(&nested(64))).await.is_ok());
        let refused = read_frame(Payload::Text(&nested(65))).await.unwrap_err();
        assert!(refused.is_refusal(), "{refused}");
        assert!(refused.to_string().contains("deeper than 64"), "{refused}");
        // Deeper than serde_json decodes: refused by the pre-scan, as before.
        let refused = read_frame(Payload::Text(&nested(200))).await.unwrap_err();
        assert!(refused.to_string().contains("deeper than 64"), "{refused}");
        // Not JSON at all: the same complaint as any frame's.
        assert!(!read_frame(Payload::Text("{nope")).await.unwrap_err().is_refusal());
    }

    #[test]
    fn msgpack_round_trips_and_bin_becomes_base64() {
        let v = json!({"type": "meta", "n": -5, "big": 1u64 << 40, "f": 1.5, "list": [true, null, "x"]});
        assert_eq!(decode(&encode(&v, true), true).unwrap(), v);
        let mut buf = Vec::new();
        rmpv::encode::write_value(
            &mut buf,
            &rmpv::Value::Map(vec![("data".into(), rmpv::Value::Binary(vec![1, 2, 3]))]),
        )
        .unwrap();
        assert_eq!(decode(&buf, true).unwrap(), json!({"data": "AQID"}));
        assert!(decode(b"\x92\x01", true).is_err(), "truncated");
        assert!(decode(b"\x01\x02", true).is_err(), "trailing bytes");
        assert!(decode(b"{", false).is_err());
    }

    #[test]
    fn upload_data_travels_as_bin_in_msgpack() {
        let mut params = Map::new();
        params.insert("type".into(), "data".into());
        params.insert("data".into(), "AQID".into());
        let req = crate::core::v12::Request::new("upload_file", params);
        let body = encode_request(&req, true);
        let raw = rmpv::decode::read_value(&mut body.as_slice()).unwrap();
        let params = raw.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some("params")).unwrap().1.clone();
        let data = params.as_map().unwrap().iter().find(|(k, _)| k.as_str() == Some("data")).unwrap().1.clone();
        assert_eq!(data, rmpv::Value::Binary(vec![1, 2, 3]));
        // Read back, it is the same request (bin → base64).
        assert_eq!(decode(&body, true).unwrap(), serde_json::to_value(&req).unwrap());
        assert_eq!(encode_request(&req, false), encode(&req, false));
    }

    #[tokio::test]
    async fn an_undeclared_body_is_read_in_either_encoding() {
        let v = json!({"status": "ok", "retcode": 0, "data": [1, "x"], "message": ""});
        for msgpack in [false, true] {
            let body = encode(&v, msgpack);
            assert_eq!(read_either(&body, true).await.unwrap().0, v);
            assert_eq!(read_either(&body, false).await.unwrap().0, v);
        }
        assert!(read_either(b"\xc1 not either", false).await.is_err());
    }

    /// A v11 link's frames: an object, JSON or MessagePack, comes back as its members in order
    /// with a repeated key as `serde_json` keeps it (a JSON text's `message` read apart into
    /// segments); anything else as `read_either` reads it; malformed or too costly, the same
    /// errors.
    #[tokio::test]
    async fn a_v11_frame_is_read_into_its_members_and_anything_else_as_it_was() {
        let event = r#" {"post_type":"message","time":1,"user_id":2,"message":[{"type":"text","data":{"text":"hi"}}],"time":3}"#;
        let value: Value = serde_json::from_str(event).unwrap();
        let (members, _budget) = read_members(Payload::Text(event)).await.unwrap();
        let members = members.unwrap();
        assert_eq!(members.members.keys().collect::<Vec<_>>(), ["post_type", "time", "user_id"]);
        let Some(Message::Segments(parts)) = &members.message else { panic!("{:?}", members.message) };
        assert_eq!(parts, &[crate::core::v12::Part::Segment(crate::core::message::Segment::text("hi"))]);
        assert_eq!(members.into_value(), value);
        let packed = encode(&value, true);
        let unpacked = read_members(Payload::Binary(&packed)).await.unwrap().0.unwrap();
        assert!(unpacked.message.is_none(), "MessagePack's message stays a member");
        assert_eq!(unpacked.into_value(), value);
        assert_eq!(read_members(Payload::Text("[1, 2]")).await.unwrap().0.unwrap_err(), json!([1, 2]));
        let malformed = read_members(Payload::Text(r#"{"post_type": "#)).await.unwrap_err();
        assert!(!malformed.is_refusal() && malformed.to_string().contains("JSON"), "{malformed}");
        let costly = format!(r#"{{"post_type":"message","x":[{}0]}}"#, "0,".repeat(1 << 20));
        assert!(read_members(Payload::Text(&costly)).await.unwrap_err().is_refusal());
    }

    #[tokio::test]
    async fn documents_too_costly_to_decode_are_refused_in_either_encoding() {
        let mut nils = vec![0xdd];
        nils.extend_from_slice(&(1u32 << 20).to_be_bytes());
        nils.resize(5 + (1 << 20), 0xc0);
        let zeros = format!("[{}0]", "0,".repeat(1 << 20)).into_bytes();
        let lying = [0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0];
        for (bytes, msgpack) in [(&nils[..], true), (&zeros[..], false), (&lying[..], true)] {
            assert!(decode_either(bytes, msgpack).unwrap_err().is_refusal());
            for preferred in [msgpack, !msgpack] {
                let error = read_either(bytes, preferred).await.unwrap_err();
                assert!(error.is_refusal(), "{error}");
            }
            assert!(decode(bytes, msgpack).unwrap_err().is_refusal());
        }
        let deep = [0x91u8; 200];
        assert!(decode(&deep, true).unwrap_err().is_refusal());
    }

    #[test]
    fn content_types_name_their_encoding() {
        assert_eq!(encoding_of("application/json"), Some(false));
        assert_eq!(encoding_of("Application/JSON; charset=utf-8"), Some(false));
        assert_eq!(encoding_of("application/cloudevents+json"), Some(false));
        assert_eq!(encoding_of("application/msgpack"), Some(true));
        assert_eq!(encoding_of("application/x-msgpack"), Some(true));
        assert_eq!(encoding_of("text/plain"), None);
        assert_eq!(encoding_of(""), None);
        assert_eq!(encoding_of(content_type(true)), Some(true));
        assert_eq!(encoding_of(content_type(false)), Some(false));
    }
}
