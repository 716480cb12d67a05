//! Message segments between v11 and v12, driven by `mappings/segments.toml`.
//!
//! Outgoing (bot → backend): standard types are renamed with their fields (`at` → `mention`,
//! `record` → `voice`, …); `at qq=all` becomes `mention_all`; every v11 type v12 lacks becomes the
//! profile's extension (`face` → `qq.face`) with its data carried over; a type that already has a
//! dot passes unchanged. Incoming (backend → bot) is the reverse, plus v12 `audio`/`file`, and any
//! other backend segment keeps its name with the profile prefix removed. Nothing is dropped.

use serde::Deserialize;
use serde_json::{Number, Value};

use super::cq::parse_cq_at_most;
use super::ids::{IdError, IdStore, MessageKey, MessageRecord};
use super::mapping::{FieldSpec, Kind, Mappings};
use super::message::{value_as_text, value_text, CompactString, Data, Reading, Segment, SegmentRef};
use super::v12::{Message, Part};
use super::{Account, Translator};

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("`message` must be a string, a segment or a list of segments")]
    BadMessage,
    #[error("segment {kind}: {reason}")]
    BadSegment { kind: String, reason: String },
    #[error("`message` has more than {MAX_SEGMENTS} segments")]
    TooManySegments,
    #[error(transparent)]
    Id(#[from] IdError),
}

/// Where a message lives: the account that sees it and the chat it is in. Message ids inside the
/// message (a `reply`) are resolved in this scope.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub account: &'a Account,
    pub detail_type: &'a str,
    pub group_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    /// The tables of the backend's profile.
    pub maps: &'a Mappings,
}

impl Scope<'_> {
    /// The record a v12 message id seen in this scope is stored under.
    pub fn record(&self, message_id: &str) -> MessageRecord {
        MessageRecord {
            key: MessageKey { self_id: self.account.self_id.user_id.as_str().into(), message_id: message_id.into() },
            detail_type: self.detail_type.into(),
            group_id: self.group_id.map(Into::into),
            user_id: self.user_id.map(Into::into),
            content: None,
        }
    }
}

/// Most segments in one message a bot sends (QQ itself takes far fewer); more is `BAD_PARAM`.
pub const MAX_SEGMENTS: usize = 10_000;

/// Reads a v11 `message` parameter: a CQ string (plain text with `auto_escape`), one segment,
/// or a list of segments whose data values may be of any JSON type; at most [`MAX_SEGMENTS`].
pub fn read_v11_message(value: &Value, auto_escape: bool) -> Result<Vec<Segment>, SegmentError> {
    match value {
        Value::String(s) if auto_escape => Ok(if s.is_empty() { vec![] } else { vec![Segment::text(s.clone())] }),
        Value::String(s) => parse_cq_at_most(s, MAX_SEGMENTS).ok_or(SegmentError::TooManySegments),
        // Read from the borrowed values: a copy of each only to read it would cost a map per
        // segment and per data, every key hashed.
        Value::Object(_) => Ok(vec![Segment::deserialize(value).map_err(|_| SegmentError::BadMessage)?]),
        Value::Array(items) if items.len() > MAX_SEGMENTS => Err(SegmentError::TooManySegments),
        Value::Array(items) => {
            items.iter().map(|v| Segment::deserialize(v).map_err(|_| SegmentError::BadMessage)).collect()
        }
        _ => Err(SegmentError::BadMessage),
    }
}

/// A segment the bot sent, as go-cqhttp reports it back (`get_msg`): every data value as text and
/// `null` values gone (options a framework leaves unset, such as nonebot's image `type: null`).
pub fn as_reported(mut seg: Segment) -> Segment {
    seg.data = std::mem::take(&mut seg.data)
        .into_iter()
        .filter_map(|(k, v)| match v {
            // Already text: kept, not copied.
            Value::String(_) => Some((k, v)),
            v => Some((k, Value::String(value_as_text(&v)?))),
        })
        .collect();
    seg
}

fn bad(kind: &str, reason: impl Into<String>) -> SegmentError {
    SegmentError::BadSegment { kind: kind.to_owned(), reason: reason.into() }
}

/// The largest magnitude a JSON float holds every integer up to (2^53).
const EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// Reads an integer the lenient v11 way: a JSON integer in i64, a float that is exactly an
/// integer (`123.0`, at most 2^53 in magnitude, where floats still hold every integer), or
/// decimal integer text (go-cqhttp takes ids as strings). Anything else is no integer: never
/// the nearest i64 (`1e300`, `2^63` and `1e30` would otherwise all become i64::MAX).
pub fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT_FLOAT_INT)?;
            Some(f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An item of a v12 message list that is no segment: kept as text (its JSON), with a warning.
fn unreadable(v: &Value) -> Segment {
    tracing::warn!(segment = %v, "unreadable v12 segment (not {{type, data}}) kept as text");
    Segment::text(v.to_string())
}

impl<S: IdStore> Translator<S> {
    /// A v12 message from the backend → v11 segments (all data values text, as go-cqhttp sends).
    /// Events must carry a list of segments; a string or one segment is tolerated. An item of the
    /// list that is no segment is kept as text (its JSON), with a warning, not dropped.
    pub async fn segments_to_v11(
        &self,
        scope: &Scope<'_>,
        message: Option<&Value>,
    ) -> Result<Vec<Segment>, SegmentError> {
        match message {
            Some(Value::String(s)) if !s.is_empty() => Ok(vec![Segment::text(s.clone())]),
            Some(v @ Value::Object(_)) => match SegmentRef::read(v) {
                Some(seg) => Ok(vec![self.segment_to_v11(scope, seg).await?]),
                None => Ok(Vec::new()),
            },
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for v in items {
                    out.push(match SegmentRef::read(v) {
                        Some(seg) => self.segment_to_v11(scope, seg).await?,
                        None => unreadable(v),
                    });
                }
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// An event's message ([`Message`]) → v11 segments, as [`Translator::segments_to_v11`].
    pub async fn message_to_v11(
        &self,
        scope: &Scope<'_>,
        message: Option<&Message>,
    ) -> Result<Vec<Segment>, SegmentError> {
        match message {
            Some(Message::Segments(parts)) => {
                let mut out = Vec::with_capacity(parts.len());
                for part in parts {
                    out.push(match part {
                        Part::Segment(seg) => self.segment_to_v11(scope, SegmentRef::of(seg)).await?,
                        Part::Unreadable(v) => unreadable(v),
                    });
                }
                Ok(out)
            }
            Some(Message::Other(v)) => self.segments_to_v11(scope, Some(v)).await,
            None => Ok(Vec::new()),
        }
    }

    /// go-cqhttp's `message.remove-reply-at` (drop the mention of the quoted sender that QQ puts
    /// right after a reply) and `message.extra-reply-data` (the reply also carries the quoted
    /// message's sender `qq`, `time` and `text`, when the bridge saw that message), on a
    /// received message's v11 segments. Both off: nothing to do.
    pub(crate) async fn reply_options(&self, segments: &mut Vec<Segment>) {
        let (remove_at, extra) = (self.options.remove_reply_at, self.options.extra_reply_data);
        if !remove_at && !extra {
            return;
        }
        let Some(at) = segments.iter().position(|s| s.kind == "reply") else { return };
        let quoted = match segments[at].str_of("id").and_then(|id| id.trim().parse::<i64>().ok()) {
            Some(id) => self.ids.message_to_v12(id).await.ok().and_then(|record| record.content),
            None => None,
        };
        let sender = segments[at].str_of("qq").or_else(|| quoted.as_ref().map(|q| q.sender_id.to_string()));
        if extra {
            let reply = &mut segments[at];
            if let Some(sender) = &sender {
                reply.data.insert_if_absent("qq", || Value::String(sender.clone()));
            }
            if let Some(quoted) = &quoted {
                reply.data.insert("time", Value::String(quoted.time.to_string()));
                reply.data.insert("text", Value::String(crate::core::cq::render_cq(&quoted.segments)));
            }
        }
        if let (true, Some(sender)) = (remove_at, sender) {
            if segments
                .get(at + 1)
                .is_some_and(|s| s.kind == "at" && s.str_of("qq").as_deref() == Some(sender.as_str()))
            {
                segments.remove(at + 1);
            }
        }
    }

    async fn segment_to_v11(&self, scope: &Scope<'_>, seg: SegmentRef<'_>) -> Result<Segment, SegmentError> {
        let maps = scope.maps;
        let profile = &maps.profile;
        if seg.kind == "text" {
            return Ok(Segment::text(seg.str_of("text").unwrap_or_default()));
        }
        if seg.kind == "mention_all" {
            return Ok(Segment::new("at").with("qq", "all"));
        }
        let (target, fields) = match maps.segments_in.get(seg.kind) {
            Some(map) => (CompactString::from(map.target.as_str()), Some(&map.fields)),
            None => {
                // An extension type whose data this profile names differently reads back by its table.
                let target = CompactString::from(maps.segment_in_name(seg.kind));
                let fields = maps.segment_fields_in.get(target.as_str());
                (target, fields)
            }
        };
        // A quoted message was sent by the reply's `user_id`, not by the sender of this message.
        let quoted_sender = if seg.kind == "reply" { seg.str_of("user_id") } else { None };
        let reply_scope = Scope { user_id: quoted_sender.as_deref(), ..*scope };
        let scope = if seg.kind == "reply" { &reply_scope } else { scope };
        let mut data = Reading::with_capacity(seg.len());
        for (key, value) in seg.entries() {
            match fields.and_then(|f| f.get(key)) {
                Some(spec) => {
                    if let Some(text) = self.value_to_v11(scope, spec.kind, value).await? {
                        data.insert(spec.name.as_str(), Value::String(text));
                    }
                }
                None => {
                    if let Some(text) = value_as_text(value) {
                        data.insert(profile.strip(key), Value::String(text));
                    }
                }
            }
        }
        Ok(Segment { kind: target, data: data.done() })
    }

    async fn value_to_v11(&self, scope: &Scope<'_>, kind: Kind, value: &Value) -> Result<Option<String>, SegmentError> {
        let Some(text) = value_text(value) else { return Ok(None) };
        Ok(Some(match kind {
            Kind::Id => self.ids.to_v11(&text).await?.to_string(),
            Kind::Message => self.ids.message_to_v11(&scope.record(&text)).await?.to_string(),
            _ => text.into_owned(),
        }))
    }

    /// v11 segments from a bot → v12 segments for the backend.
    pub async fn segments_to_v12(&self, maps: &Mappings, segs: Vec<Segment>) -> Result<Vec<Segment>, SegmentError> {
        let mut out = Vec::with_capacity(segs.len());
        for seg in segs {
            out.push(self.segment_to_v12(maps, seg).await?);
        }
        Ok(out)
    }

    async fn segment_to_v12(&self, maps: &Mappings, seg: Segment) -> Result<Segment, SegmentError> {
        let profile = &maps.profile;
        if seg.kind == "text" {
            return Ok(Segment::text(seg.str_of("text").unwrap_or_default()));
        }
        if seg.kind == "at" && seg.str_of("qq").as_deref().map(str::trim) == Some("all") {
            return Ok(Segment::new("mention_all"));
        }
        if seg.kind == "node" {
            // A forward node is a message in itself (src/core/forward.rs).
            return self.node_to_v12(maps, seg).await;
        }
        let Some(map) = maps.segments_out.get(seg.kind.as_str()) else {
            // Extension types: the profile's name for a known v11 type, an already-dotted name as
            // it is, and any other type under the prefix too (the backend then accepts or refuses it).
            let target =
                if seg.kind.contains('.') { seg.kind.clone() } else { maps.segment_out_name(&seg.kind).into() };
            let Some(fields) = maps.segment_fields.get(seg.kind.as_str()) else {
                return Ok(Segment { kind: target, data: seg.data });
            };
            let mut data = Data::with_capacity(seg.data.len());
            for (key, value) in &seg.data {
                match fields.get(key) {
                    Some(spec) => {
                        if let Some(v) = self.value_to_v12(&seg.kind, spec, value).await? {
                            data.insert(spec.name.as_str(), v);
                        }
                    }
                    None => {
                        data.insert(key, value.clone());
                    }
                }
            }
            return Ok(Segment { kind: target, data });
        };
        let mut data = Data::with_capacity(seg.data.len());
        for (key, value) in &seg.data {
            match map.fields.get(key) {
                Some(spec) if !spec.name.is_empty() => {
                    if let Some(v) = self.value_to_v12(&seg.kind, spec, value).await? {
                        data.insert(spec.name.as_str(), v);
                    }
                }
                Some(_) => {}
                None if value.is_null() => {}
                None => {
                    data.insert(profile.prefixed(key), value.clone());
                }
            }
        }
        // What a segment must have and what it gets when it leaves a key out: segments.toml.
        if let Some((v11, _)) = map.required.iter().find(|(_, v12)| !data.contains_key(v12)) {
            return Err(bad(&seg.kind, format!("`{v11}` is required")));
        }
        for (_, v12, value) in &map.defaults {
            data.insert_if_absent(v12, || value.clone());
        }
        if seg.kind == "reply" && !data.contains_key("user_id") {
            // The quoted message's sender, when the bridge saw it, travels with the reply.
            if let Some(n) = seg.data.get("id").and_then(lenient_i64) {
                if let Some(sender) = self.ids.message_to_v12(n).await?.user_id {
                    data.insert("user_id", Value::String(sender.into_string()));
                }
            }
        }
        Ok(Segment { kind: map.target.as_str().into(), data })
    }

    async fn value_to_v12(
        &self,
        seg_kind: &str,
        spec: &FieldSpec,
        value: &Value,
    ) -> Result<Option<Value>, SegmentError> {
        if value.is_null() {
            return Ok(None);
        }
        Ok(Some(match spec.kind {
            Kind::Id => {
                let n = lenient_i64(value).ok_or_else(|| bad(seg_kind, format!("{value} is not an id")))?;
                Value::String(self.ids.to_v12(n).await?)
            }
            Kind::Message => {
                let n = lenient_i64(value).ok_or_else(|| bad(seg_kind, format!("{value} is not a message_id")))?;
                Value::String(self.ids.message_to_v12(n).await?.key.message_id.into_string())
            }
            Kind::Int => {
                let n = lenient_i64(value).ok_or_else(|| bad(seg_kind, format!("{value} is not an integer")))?;
                Value::from(n)
            }
            Kind::Bool => Value::Bool(
                super::action::lenient_bool(value).ok_or_else(|| bad(seg_kind, format!("{value} is not a boolean")))?,
            ),
            Kind::Float => {
                let text = value_as_text(value).unwrap_or_default();
                let f: f64 = text.trim().parse().map_err(|_| bad(seg_kind, format!("{text:?} is not a number")))?;
                Value::Number(Number::from_f64(f).ok_or_else(|| bad(seg_kind, "not a finite number"))?)
            }
            _ => Value::String(value_as_text(value).unwrap_or_default()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::json;

    use super::*;
    use crate::core::testing::{account, translator};

    /// Segments as a backend sends them: a JSON list.
    fn to_v12_message(segments: Vec<Segment>) -> Value {
        Segment::list_into_value(segments)
    }

    fn sample_v11(kind: Kind) -> Value {
        match kind {
            Kind::Id => json!("123"),
            Kind::Float => json!("1.5"),
            Kind::File => json!("file-1"),
            _ => json!("v"),
        }
    }

    /// Every standard row of segments.toml, v11 → v12 → v11.
    #[test]
    fn every_standard_segment_row_round_trips() {
        let t = translator();
        let me = account(&t);
        let scope = Scope {
            account: &me,
            detail_type: "group",
            group_id: Some("9"),
            user_id: Some("8"),
            maps: t.maps.generic(),
        };
        // A message the bot can quote.
        let quoted = block_on(t.ids.message_to_v11(&scope.record("q-1"))).unwrap();
        for (v11, map) in &t.maps.generic().segments_out {
            let mut seg = Segment::new(v11.clone());
            for (key, spec) in &map.fields {
                let v = if spec.kind == Kind::Message { json!(quoted.to_string()) } else { sample_v11(spec.kind) };
                seg.data.insert(key.clone(), v);
            }
            let out = block_on(t.segments_to_v12(t.maps.generic(), vec![seg.clone()])).unwrap().remove(0);
            assert_eq!(out.kind, map.target, "{v11}");
            for (key, spec) in &map.fields {
                let got = &out.data[&spec.name];
                match spec.kind {
                    Kind::Id => assert_eq!(got, &json!("123"), "{v11}.{key}"),
                    Kind::Message => assert_eq!(got, &json!("q-1"), "{v11}.{key}"),
                    Kind::Float => assert_eq!(got, &json!(1.5), "{v11}.{key}"),
                    _ => assert_eq!(got, &sample_v11(spec.kind), "{v11}.{key}"),
                }
            }
            let back = block_on(t.segments_to_v11(&scope, Some(&to_v12_message(vec![out])))).unwrap().remove(0);
            assert_eq!(back, seg, "{v11} round trip");
        }
    }

    #[test]
    fn every_extension_type_goes_out_prefixed_and_comes_back_bare() {
        let t = translator();
        let me = account(&t);
        let scope =
            Scope { account: &me, detail_type: "private", group_id: None, user_id: Some("8"), maps: t.maps.generic() };
        // A forward `node` is a message in itself (src/core/forward.rs).
        for v11 in t.maps.generic().extension_segments.iter().filter(|t| *t != "node") {
            let seg = Segment::new(v11.clone()).with("k", "v,[x]");
            let out = block_on(t.segments_to_v12(t.maps.generic(), vec![seg.clone()])).unwrap().remove(0);
            assert_eq!(out.kind, format!("qq.{v11}"));
            let back = block_on(t.segments_to_v11(&scope, Some(&to_v12_message(vec![out])))).unwrap().remove(0);
            assert_eq!(back, seg);
        }
        // Walle-Q names its extensions without a prefix; they read the same.
        let bare = block_on(t.segments_to_v11(&scope, Some(&to_v12_message(vec![Segment::new("face").with("id", 5)]))))
            .unwrap();
        assert_eq!(bare[0], Segment::new("face").with("id", "5"));
    }

    /// Every profile: each extension segment goes out under that backend's name and comes back.
    #[test]
    fn every_profile_names_every_extension_segment_both_ways() {
        let t = translator();
        let me = account(&t);
        for (profile, maps) in t.maps.iter() {
            let scope = Scope { account: &me, detail_type: "private", group_id: None, user_id: Some("8"), maps };
            for v11 in maps.extension_segments.iter().filter(|t| *t != "node") {
                let seg = Segment::new(v11.clone()).with("k", "v");
                let out = block_on(t.segments_to_v12(maps, vec![seg.clone()])).unwrap().remove(0);
                assert_eq!(out.kind, maps.segment_out_name(v11), "{profile}/{v11}");
                let back = block_on(t.segments_to_v11(&scope, Some(&to_v12_message(vec![out])))).unwrap().remove(0);
                assert_eq!(back, seg, "{profile}/{v11}");
            }
        }
        let walle = t.maps.get("walle-q");
        assert_eq!(walle.segment_out_name("face"), "face");
        // A profile's data names and kinds: Walle-Q's face id is an integer, and reads back as text.
        let face = Segment::new("face").with("id", "14");
        let out = block_on(t.segments_to_v12(walle, vec![face.clone()])).unwrap().remove(0);
        assert_eq!(out, Segment::new("face").with("id", 14));
        let scope = Scope { account: &me, detail_type: "private", group_id: None, user_id: Some("8"), maps: walle };
        assert_eq!(block_on(t.segments_to_v11(&scope, Some(&to_v12_message(vec![out])))).unwrap()[0], face);
        assert_eq!(t.maps.get("comwechat").segment_out_name("face"), "wx.face");
    }

    #[test]
    fn special_cases_are_explicit() {
        let t = translator();
        let me = account(&t);
        let scope = Scope {
            account: &me,
            detail_type: "group",
            group_id: Some("9"),
            user_id: Some("8"),
            maps: t.maps.generic(),
        };
        let out = block_on(t.segments_to_v12(t.maps.generic(), vec![Segment::new("at").with("qq", "all")])).unwrap();
        assert_eq!(out, vec![Segment::new("mention_all")]);
        let back = block_on(t.segments_to_v11(&scope, Some(&to_v12_message(out)))).unwrap();
        assert_eq!(back, vec![Segment::new("at").with("qq", "all")]);
        // Extra v11 keys on a standard segment travel as extension fields, and come back.
        let img = Segment::new("image").with("file", "f").with("type", "flash");
        let out = block_on(t.segments_to_v12(t.maps.generic(), vec![img.clone()])).unwrap();
        assert_eq!(out[0], Segment::new("image").with("file_id", "f").with("qq.type", "flash"));
        assert_eq!(block_on(t.segments_to_v11(&scope, Some(&to_v12_message(out)))).unwrap()[0], img);
        // Nothing is dropped: required fields missing is an error, not a silent loss, and it names
        // the v11 key (segments.toml `required`).
        for (bad, key) in [
            (Segment::new("at"), "qq"),
            (Segment::new("reply"), "id"),
            (Segment::new("image"), "file"),
            (Segment::new("record"), "file"),
            (Segment::new("location").with("lat", "31.2"), "lon"),
        ] {
            let error = block_on(t.segments_to_v12(t.maps.generic(), vec![bad.clone()])).unwrap_err().to_string();
            assert!(error.contains(&format!("`{key}` is required")), "{bad:?}: {error}");
        }
        assert!(block_on(t.segments_to_v12(t.maps.generic(), vec![Segment::new("location").with("lat", "x")])).is_err());
        // A location's texts default to empty (segments.toml `defaults`).
        let place = Segment::new("location").with("lat", "31.25").with("lon", "121.5").with("title", "here");
        let out = block_on(t.segments_to_v12(t.maps.generic(), vec![place])).unwrap();
        assert_eq!((out[0].data["title"].clone(), out[0].data["content"].clone()), (json!("here"), json!("")));
    }

    #[test]
    fn message_params_are_read_in_every_v11_form() {
        assert_eq!(read_v11_message(&json!("a[CQ:face,id=1]"), false).unwrap().len(), 2);
        assert_eq!(read_v11_message(&json!("a[CQ:face,id=1]"), true).unwrap(), vec![Segment::text("a[CQ:face,id=1]")]);
        assert_eq!(read_v11_message(&json!({"type": "face", "data": {"id": 1}}), false).unwrap()[0].kind, "face");
        assert_eq!(read_v11_message(&json!([{"type": "text", "data": null}]), false).unwrap()[0], Segment::new("text"));
        assert!(read_v11_message(&json!(5), false).is_err());
        assert!(read_v11_message(&json!([{"data": {}}]), false).is_err());
        let t = translator();
        let me = account(&t);
        let scope =
            Scope { account: &me, detail_type: "private", group_id: None, user_id: Some("8"), maps: t.maps.generic() };
        let read = |v: Value| block_on(t.segments_to_v11(&scope, Some(&v))).unwrap();
        assert_eq!(read(json!("plain")), vec![Segment::text("plain")]);
        assert_eq!(read(json!([5])), vec![Segment::text("5")], "kept as text, not dropped");
        assert_eq!(read(json!({"type": "text", "data": {"text": 7}})), vec![Segment::text("7")]);
        assert_eq!(read(json!([{"type": "mention_all", "data": null}])), vec![Segment::new("at").with("qq", "all")]);
        assert_eq!(read(json!("")), vec![]);
    }
}
