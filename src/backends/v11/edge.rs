//! A OneBot v11 implementation (NapCat, LLBot, Lagrange.OneBot) seen as a v12 one, at the link's
//! edge: its events are read into v12 events, the v12 requests the core makes are written as its
//! v11 actions, and its answers are read back as v12 answers. The core, the store and the bots'
//! side stay as they are, and every guarantee the core gives (its own message ids, quick
//! operations as explicit actions, CQ rendering, media) holds for these backends too.
//!
//! The conversion reads the same tables as the core, the other way round:
//! - segments: the v11 → v12 rows (`segments.toml`, used by the core for what bots send) read
//!   what the implementation sends, and the v12 → v11 rows write what the core sends;
//! - notices: the `events.toml` rows, from their v11 name and sub type back to the v12 name;
//! - actions: the plain `actions.toml` renames, from the v12 action back to the v11 one (a row
//!   with `reverse = false` is not used this way); `<prefix>.<name>` is the v11 action `name`.
//!
//! Message ids: the implementation's own ids are not stable (NapCat forgets them on restart,
//! Lagrange's collide across chats), so the v12 id the core stores is the implementation's id
//! qualified by its chat: `<id>/g<group>` or `<id>/u<peer>`. The core gives bots its own ids for
//! them as for any backend, and this edge takes the qualifier off again on the way out.
//!
//! Uploads: v11 has no `upload_file`. The edge answers it itself: a URL or a shared path is its
//! own file id; bytes are kept (bounded, oldest first) under a short id and sent as `base64://`
//! when a message names them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::core::cq::parse_cq;
use crate::core::mapping::{FieldSpec, Handler, Kind, Mappings};
use crate::core::message::{CompactString, Data, Reading, Segment, SegmentRef};
use crate::core::v12::{self, SelfId};
use crate::sync::LockUnpoisoned;

/// The platform every v11 implementation speaks for.
pub const PLATFORM: &str = "qq";
/// Bytes uploaded by the core and not yet sent, kept at most (the oldest are forgotten first;
/// a message naming a forgotten one fails, and the core uploads again and retries) — or one
/// file of `max-file-size` as base64, when that is more.
pub const UPLOADS_MAX_BYTES: usize = 64 << 20;
/// Uploads remembered at most, whatever their size.
const UPLOADS_MAX: usize = 1024;
/// Fragmented uploads being assembled at once (the oldest is dropped for a new one).
const ASSEMBLING_MAX: usize = 8;
/// The file-id prefix of bytes the edge keeps.
const UPLOAD_PREFIX: &str = "ob-upload:";
/// The file-id prefix of a fragmented upload being assembled.
const PART_PREFIX: &str = "ob-part:";
/// Received files whose URL is remembered by name, at most (the oldest are forgotten first)…
const RECEIVED_MAX: usize = 4096;
/// …and a name and URL longer than this together are not remembered (real ones are a few
/// hundred bytes; a backend cannot grow the map past `RECEIVED_MAX` × this).
const RECEIVED_ENTRY_MAX: usize = 4096;

/// A notice row read backwards: the v12 event a v11 notice becomes.
#[derive(Debug, Clone)]
struct NoticeIn {
    detail_type: String,
    sub_type: String,
    /// v11 field → v12 field.
    fields: HashMap<String, FieldSpec>,
}

/// An action row read backwards: the v11 action a v12 action becomes.
#[derive(Debug, Clone)]
struct ActionOut {
    v11: String,
    /// What its answer is read as: `Renamed`, `Forward` or `History`.
    answer: fn(&str) -> Answer,
    /// v12 param → v11 param.
    params: HashMap<String, FieldSpec>,
    /// v11 answer field → v12 field.
    response: HashMap<String, FieldSpec>,
}

/// The conversion for one link (it keeps the link's uploads).
#[derive(Debug)]
pub struct Edge {
    maps: Arc<Mappings>,
    /// `(notice_type, sub_type)` → row; `(notice_type, "")` holds the row for any sub type.
    notices: HashMap<(String, String), NoticeIn>,
    actions: HashMap<String, ActionOut>,
    uploads: Mutex<Uploads>,
    /// Largest file taken in a fragmented upload (`max-file-size`).
    max_file_size: u64,
    /// Files the implementation sent, by name → their URL: a bot that sends one back names it
    /// by the name it saw, which NTQQ implementations cannot resolve, so the URL goes instead.
    received: Mutex<Received>,
}

/// Received file names and their URLs, bounded by count.
#[derive(Debug, Default)]
struct Received {
    urls: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Received {
    fn insert(&mut self, name: &str, url: &str) {
        if name.len() + url.len() > RECEIVED_ENTRY_MAX {
            return;
        }
        if let Some(known) = self.urls.get_mut(name) {
            if known != url {
                url.clone_into(known);
            }
            return;
        }
        self.urls.insert(name.to_owned(), url.to_owned());
        self.order.push_back(name.to_owned());
        while self.order.len() > RECEIVED_MAX {
            if let Some(old) = self.order.pop_front() {
                self.urls.remove(&old);
            }
        }
    }
}

/// Bytes uploaded through the edge, bounded by count and size.
#[derive(Debug, Default)]
struct Uploads {
    by_id: HashMap<String, Arc<str>>,
    order: VecDeque<String>,
    bytes: usize,
    /// At most this many bytes of base64 are kept.
    cap: usize,
    /// Fragmented uploads being assembled (v11 implementations take files whole: the edge
    /// assembles them and keeps the result like a whole upload), oldest first.
    parts: VecDeque<(String, Part)>,
    next_part: u64,
}

/// A fragmented upload being assembled.
#[derive(Debug)]
struct Part {
    size: usize,
    bytes: Vec<u8>,
}

impl Uploads {
    fn insert(&mut self, id: String, base64: Arc<str>) {
        if self.by_id.contains_key(&id) {
            return;
        }
        self.bytes += base64.len();
        self.by_id.insert(id.clone(), base64);
        self.order.push_back(id);
        while self.bytes > self.cap || self.order.len() > UPLOADS_MAX {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(gone) = self.by_id.remove(&old) {
                self.bytes -= gone.len();
            }
        }
    }
}

/// What a v12 request becomes: a v11 action to send, or an answer the edge gives itself.
#[derive(Debug)]
pub enum Outbound {
    Call(V11Call),
    Answered(v12::Response),
}

/// A v11 action and how its answer is read back.
#[derive(Debug, Clone, PartialEq)]
pub struct V11Call {
    pub action: String,
    pub params: Map<String, Value>,
    pub answer: Answer,
}

impl V11Call {
    /// The WebSocket frame of the call: `{"action":…,"params":{…},"echo":…}`.
    pub fn to_json(&self, echo: &str) -> String {
        use crate::core::write_json::{object, string};
        let mut out = String::with_capacity(64);
        out.push_str("{\"action\":");
        string(&mut out, &self.action);
        out.push_str(",\"params\":");
        object(&mut out, &self.params);
        out.push_str(",\"echo\":");
        string(&mut out, echo);
        out.push('}');
        out
    }
}

/// How a v11 answer becomes a v12 one.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `send_msg`: the new `message_id`, qualified by the chat it went to.
    Sent { chat: Chat },
    /// A reversed table row: fields renamed back (each item of a list alike).
    Renamed { v12_action: String },
    /// `get_msg` for `get_message`: the message's fields as a v12 message event has them.
    Message { chat: Chat },
    /// `get_login_info` for `get_status`: the account and whether it is online.
    Status,
    /// `get_version_info` for `get_version`.
    Version,
    /// `get_image` for `get_file`: where the file is.
    File { file_id: String, want: String },
    /// `get_forward_msg`: each forwarded message's ids as v12 strings and its content as v12
    /// segments, as the core reads a v12 backend's forward (it makes them v11 again, its own way).
    Forward,
    /// Message history: each of `messages` (a v11 message event) read as a v12 message event,
    /// ids qualified as an event's are, so the core gives them the ids their events got.
    History,
    /// An extension action: the data as the implementation gave it.
    AsIs,
}

/// The chat a message id belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chat {
    Group(String),
    User(String),
    Unknown,
}

impl Chat {
    /// `<id>/g<group>` or `<id>/u<peer>`.
    pub fn qualify(&self, id: &Value) -> Option<Value> {
        // Written piece by piece, not formatted: every message event's id and reply come here.
        let (tag, chat) = match self {
            Chat::Group(g) => ("/g", g.as_str()),
            Chat::User(u) => ("/u", u.as_str()),
            Chat::Unknown => ("", ""),
        };
        let mut out = String::with_capacity(24 + tag.len() + chat.len());
        match id {
            Value::Number(n) => crate::core::write_json::number(&mut out, n),
            Value::String(s) if !s.is_empty() => out.push_str(s),
            _ => return None,
        }
        out.push_str(tag);
        out.push_str(chat);
        Some(Value::String(out))
    }
}

impl Chat {
    /// The chat a qualified id names.
    pub fn of_qualified(v: &Value) -> Chat {
        let chat = v.as_str().and_then(|s| s.split_once('/')).map(|(_, chat)| chat);
        match chat {
            Some(c) if c.starts_with('g') => Chat::Group(c[1..].to_owned()),
            Some(c) if c.starts_with('u') => Chat::User(c[1..].to_owned()),
            _ => Chat::Unknown,
        }
    }
}

/// The implementation's id inside a qualified one (an integer when it is one).
pub fn unqualify(v: &Value) -> Value {
    let Some(s) = v.as_str() else { return v.clone() };
    let bare = s.split_once('/').map_or(s, |(id, _)| id);
    bare.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(bare.to_owned()))
}

/// A v12 id (a decimal string) as v11 writes it: an integer when it is one.
fn v11_id(v: &Value) -> Value {
    match v {
        Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

/// A v11 id as v12 writes it: a string.
fn v12_id(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        _ => v.clone(),
    }
}

/// A v12 event's type, detail type, sub type and fields.
type EventParts = (&'static str, String, String, Data);
/// An event's members not yet read, in order.
type Members = Vec<(CompactString, Value)>;

/// Members left over from a pass, as a map to look fields up in (the rarer events: notices,
/// requests, meta events).
fn into_map(members: Members) -> Map<String, Value> {
    members.into_iter().map(|(k, v)| (k.into_string(), v)).collect()
}

/// Why a frame from the implementation is not an event the edge can read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EdgeError {
    #[error("event has no `{0}`")]
    Missing(&'static str),
    #[error("unknown post_type `{0}`")]
    PostType(String),
}

impl Edge {
    /// The edge for one link; `max_file_size` bounds a fragmented upload (and makes room for one
    /// such file among the bytes kept).
    pub fn new(maps: Arc<Mappings>, max_file_size: u64) -> Edge {
        let mut notices = HashMap::new();
        for (name, row) in &maps.events {
            let Some(detail_type) = name.strip_prefix("notice.") else { continue };
            let fields: HashMap<String, FieldSpec> = row
                .fields
                .iter()
                .map(|(v12, spec)| (spec.name.clone(), FieldSpec { name: v12.clone(), kind: spec.kind }))
                .collect();
            // Each v11 sub type the row writes, back to the v12 sub type that writes it (itself
            // when that is one of them, else a named one over the empty one).
            let mut subs: HashMap<&str, &str> = HashMap::new();
            for (v12_sub, v11_sub) in &row.sub_type {
                let better = match subs.get(v11_sub.as_str()) {
                    None => true,
                    Some(have) => *have != v11_sub && (v12_sub == v11_sub || have.is_empty()),
                };
                if better {
                    subs.insert(v11_sub, v12_sub);
                }
            }
            let notice = |sub_type: &str| NoticeIn {
                detail_type: detail_type.to_owned(),
                sub_type: sub_type.to_owned(),
                fields: fields.clone(),
            };
            if subs.is_empty() {
                notices.insert((row.v11.clone(), String::new()), notice(""));
            }
            for (v11_sub, v12_sub) in subs {
                notices.insert((row.v11.clone(), v11_sub.to_owned()), notice(v12_sub));
            }
        }
        let mut actions = HashMap::new();
        for (v11, row) in &maps.actions {
            let Some(v12) = row.v12.as_deref() else { continue };
            // A prefixed row stands for the v11 action of its own name (`qq.set_group_kick` is
            // `set_group_kick`); another row naming it too (`.ocr_image`) is not read back.
            let own = maps.profile.strip_own(v12);
            if !row.reverse || own.is_some_and(|name| name != v11) {
                continue;
            }
            // Handlers are code, not renames; those whose v12 call is the v11 action of the same
            // name are read back, with the answer read the way that handler expects.
            let answer: fn(&str) -> Answer = match (row.handler, own) {
                (None, _) => |v12| Answer::Renamed { v12_action: v12.to_owned() },
                (Some(Handler::GetForwardMsg), Some(_)) => |_| Answer::Forward,
                (Some(Handler::MessageHistory), Some(_)) => |_| Answer::History,
                (Some(_), _) => continue,
            };
            // Two v11 params for one v12 param (`id` and `message_id`): the one of its own name
            // is what the implementation is sent.
            let mut params: HashMap<String, FieldSpec> = HashMap::new();
            for (v11p, spec) in row.params.iter().filter(|(_, spec)| !spec.name.is_empty()) {
                let own = params.get(&spec.name).is_some_and(|have| have.name == spec.name);
                if !own {
                    params.insert(spec.name.clone(), FieldSpec { name: v11p.clone(), kind: spec.kind });
                }
            }
            let response = row
                .response
                .fields
                .iter()
                .map(|(v12f, spec)| (spec.name.clone(), FieldSpec { name: v12f.clone(), kind: spec.kind }))
                .collect();
            actions.insert(v12.to_owned(), ActionOut { v11: v11.clone(), answer, params, response });
        }
        let cap = UPLOADS_MAX_BYTES.max(usize::try_from(max_file_size.div_ceil(3) * 4).unwrap_or(usize::MAX));
        let uploads = Mutex::new(Uploads { cap, ..Default::default() });
        Edge { maps, notices, actions, uploads, max_file_size, received: Mutex::default() }
    }

    /// `name` under the profile's prefix (`qq.name`).
    fn prefixed(&self, name: &str) -> String {
        let prefix = &self.maps.profile.prefix;
        if prefix.is_empty() {
            return name.to_owned();
        }
        let mut out = String::with_capacity(prefix.len() + 1 + name.len());
        out.push_str(prefix);
        out.push('.');
        out.push_str(name);
        out
    }

    // ---- events ----

    /// Reads one v11 event as v12. `Ok(None)` for what v12 has no event for (a heartbeat's
    /// timing).
    pub fn event(&self, v11: Data) -> Result<Option<v12::Event>, EdgeError> {
        self.event_with(v11, None)
    }

    /// [`event`](Self::event), its `message` already read apart into segments (a JSON text
    /// frame's, [`crate::backends::v12::codec::read_members`]) when `message` is given.
    pub fn event_with(&self, v11: Data, mut message: Option<v12::Message>) -> Result<Option<v12::Event>, EdgeError> {
        // One pass over the event: what every event has is taken out, the rest kept in order
        // (no key is hashed to be looked up or removed).
        let (mut post_type, mut self_id, mut time, mut sub_type) = (None, None, Value::Null, String::new());
        let mut rest: Members = Vec::with_capacity(v11.len());
        for (key, value) in v11 {
            match key.as_str() {
                "post_type" => post_type = Some(value),
                "self_id" => self_id = Some(value),
                "time" => time = value,
                "sub_type" => sub_type = text_of(value),
                _ => rest.push((key, value)),
            }
        }
        let Some(Value::String(post_type)) = post_type else { return Err(EdgeError::Missing("post_type")) };
        let me = self_id
            .map(|v| id_text(&v))
            .filter(|id| !id.is_empty())
            .map(|user_id| SelfId { platform: PLATFORM.to_owned(), user_id });
        if !matches!(post_type.as_str(), "message" | "message_sent") {
            // Another event's `message` (a notice's, an implementation's own) is a field as sent.
            if let Some(message) = message.take() {
                rest.push(("message".into(), message.into_value()));
            }
        }
        let (kind, detail_type, sub_type, fields) = match post_type.as_str() {
            "message" | "message_sent" => {
                let (detail, fields, segments) = self.message_event(rest, message.take(), &post_type)?;
                message = Some(v12::Message::Segments(segments.into_iter().map(v12::Part::Segment).collect()));
                ("message", detail, self.message_sub_type(&sub_type), fields)
            }
            "notice" => self.notice(into_map(rest), &sub_type)?,
            "request" => {
                let mut v11 = into_map(rest);
                let request_type = take_string(&mut v11, "request_type").ok_or(EdgeError::Missing("request_type"))?;
                ("request", self.prefixed(&request_type), sub_type, self.generic_fields(v11, &Chat::Unknown).into())
            }
            "meta_event" => return Ok(self.meta(&mut into_map(rest), &sub_type, me)),
            other => return Err(EdgeError::PostType(other.to_owned())),
        };
        let me = me.ok_or(EdgeError::Missing("self_id"))?;
        let mut ev = v12::Event::new(kind, detail_type, sub_type, Some(me), time.as_f64().unwrap_or(0.0), fields);
        // No event's fields here hold a `message`: a message event's segments come apart.
        ev.message = message;
        Ok(Some(ev))
    }

    /// A message sub type back in v12's words (`friend` and `normal` are v12's empty one).
    fn message_sub_type(&self, v11: &str) -> String {
        match v11 {
            "" | "friend" | "normal" => String::new(),
            other => self.prefixed(other),
        }
    }

    /// A message event's v12 detail type, its fields, and its message (read apart, as
    /// [`v12::Event::message`] keeps it). `read` is the message when it was read apart already.
    fn message_event(
        &self,
        v11: Members,
        read: Option<v12::Message>,
        post_type: &str,
    ) -> Result<(String, Data, Vec<Segment>), EdgeError> {
        let (mut message_type, mut user_id, mut message_id, mut group_id) = (None, None, None, None);
        let (mut message, mut raw, mut sender, mut anonymous, mut target_id) = (Value::Null, None, None, None, None);
        let mut guild = Vec::new();
        let mut extra = Vec::new();
        for (key, value) in v11 {
            match key.as_str() {
                "message_type" => message_type = Some(text_of(value)),
                "user_id" => user_id = Some(value),
                "message_id" => message_id = Some(value),
                "group_id" => group_id = Some(value),
                "guild_id" | "channel_id" => guild.push((key, value)),
                "message" => message = value,
                "raw_message" => raw = Some(value),
                "sender" => sender = Some(value),
                "anonymous" => anonymous = Some(value),
                "font" | "message_format" => {}
                _ => {
                    if key.as_str() == "target_id" {
                        target_id = Some(id_text(&value));
                    }
                    extra.push((key, value));
                }
            }
        }
        let message_type = message_type.ok_or(EdgeError::Missing("message_type"))?;
        let user_id = user_id.ok_or(EdgeError::Missing("user_id"))?;
        let message_id = message_id.ok_or(EdgeError::Missing("message_id"))?;
        let mut fields = Reading::with_capacity(extra.len() + 8);
        let (detail, chat) = match message_type.as_str() {
            "group" => {
                let group = group_id.ok_or(EdgeError::Missing("group_id"))?;
                let chat = Chat::Group(id_text(&group));
                fields.insert("group_id", v12_id(&group));
                ("group".to_owned(), chat)
            }
            "guild" => {
                for (key, value) in guild {
                    fields.insert(key, v12_id(&value));
                }
                ("channel".to_owned(), Chat::Unknown)
            }
            _ => {
                // The bot's own private message names the other side as `target_id`.
                let peer = match (post_type, target_id) {
                    ("message_sent", Some(t)) => t,
                    _ => id_text(&user_id),
                };
                ("private".to_owned(), Chat::User(peer))
            }
        };
        fields.insert("message_id", chat.qualify(&message_id).ok_or(EdgeError::Missing("message_id"))?);
        fields.insert("user_id", v12_id(&user_id));
        let segments = self.message_in(read.unwrap_or_else(|| v12::Message::from_value(message)), &chat);
        if let Some(raw) = raw {
            fields.insert("alt_message", raw);
        }
        if let Some(Value::Object(mut sender)) = sender {
            if let Some(name) = sender.get("nickname").cloned() {
                fields.insert("user_name", name);
            }
            sender.remove("user_id");
            fields.insert(self.prefixed("sender"), Value::Object(sender));
        }
        if let Some(anonymous) = anonymous.filter(|a| a.is_object()) {
            fields.insert(self.prefixed("anonymous"), anonymous);
        }
        for (key, value) in extra {
            fields.insert(self.prefixed(&key), value);
        }
        Ok((detail, fields.done(), segments))
    }

    fn notice(&self, mut v11: Map<String, Value>, sub_type: &str) -> Result<EventParts, EdgeError> {
        let notice_type = take_string(&mut v11, "notice_type").ok_or(EdgeError::Missing("notice_type"))?;
        let chat = match (v11.get("group_id"), v11.get("user_id")) {
            (Some(g), _) => Chat::Group(id_text(g)),
            (None, Some(u)) => Chat::User(id_text(u)),
            _ => Chat::Unknown,
        };
        let row = self
            .notices
            .get(&(notice_type.clone(), sub_type.to_owned()))
            .or_else(|| self.notices.get(&(notice_type.clone(), String::new())));
        let Some(row) = row else {
            // Not in the tables (pokes, uploads, cards, an implementation's own): its name under
            // the prefix, ids by name.
            let sub = if sub_type.is_empty() { String::new() } else { sub_type.to_owned() };
            return Ok(("notice", self.prefixed(&notice_type), sub, self.generic_fields(v11, &chat).into()));
        };
        let mut fields = Data::with_capacity(v11.len());
        for (key, value) in v11 {
            match row.fields.get(&key) {
                Some(spec) => {
                    fields.insert(spec.name.clone(), self.value_in(spec.kind, &value, &chat));
                }
                None => {
                    let (name, value) = self.generic_field(key, value, &chat);
                    fields.insert(name, value);
                }
            }
        }
        Ok(("notice", row.detail_type.clone(), row.sub_type.clone(), fields))
    }

    /// The fields of an event the tables do not name: ids as v12 strings (the generic id
    /// fields), message ids qualified, the rest under the prefix.
    fn generic_fields(&self, v11: Map<String, Value>, chat: &Chat) -> Map<String, Value> {
        v11.into_iter().map(|(k, v)| self.generic_field(k, v, chat)).collect()
    }

    fn generic_field(&self, key: String, value: Value, chat: &Chat) -> (String, Value) {
        let generic = &self.maps.generic_events;
        if generic.id_fields.contains(&key) {
            (key, v12_id(&value))
        } else if generic.message_fields.contains(&key) {
            let value = chat.qualify(&value).unwrap_or(value);
            (key, value)
        } else {
            (self.prefixed(&key), value)
        }
    }

    /// Heartbeats and lifecycle events: the account's state, as v12's `status_update`.
    fn meta(&self, v11: &mut Map<String, Value>, sub_type: &str, me: Option<SelfId>) -> Option<v12::Event> {
        let meta_type = take_string(v11, "meta_event_type")?;
        let me = me?;
        let online = match meta_type.as_str() {
            "heartbeat" => {
                let status = v11.get("status");
                status.and_then(|s| s.get("online")).and_then(Value::as_bool).unwrap_or(true)
            }
            "lifecycle" => sub_type != "disable",
            _ => return None,
        };
        let mut fields = Map::new();
        fields.insert(
            "status".into(),
            json!({"good": true, "bots": [{"self": {"platform": me.platform, "user_id": me.user_id}, "online": online}]}),
        );
        Some(v12::Event::new("meta", "status_update".into(), String::new(), None, 0.0, fields))
    }

    // ---- segments ----

    /// A v11 message (array or CQ string) as v12 segments. Each segment's data is rebuilt only
    /// when a key is renamed or a value converted (text and extension segments are kept as they
    /// are).
    pub fn segments_in(&self, message: Value, chat: &Chat) -> Vec<Value> {
        self.message_in(v12::Message::from_value(message), chat).into_iter().map(Segment::into_value).collect()
    }

    /// [`segments_in`](Self::segments_in), as segments: each read once into its type and data
    /// (no key hashed) and converted there; an item that is no `{type, data}` object is dropped.
    /// A message event's segments stay so ([`v12::Event::message`]).
    fn message_in(&self, message: v12::Message, chat: &Chat) -> Vec<Segment> {
        let items = match message {
            v12::Message::Other(Value::String(s)) => parse_cq(&s),
            v12::Message::Segments(parts) => parts
                .into_iter()
                .filter_map(|part| match part {
                    v12::Part::Segment(seg) => Some(seg),
                    v12::Part::Unreadable(_) => None,
                })
                .collect(),
            v12::Message::Other(_) => Vec::new(),
        };
        items.into_iter().map(|seg| self.segment_in(seg, chat)).collect()
    }

    /// Converts one segment: its type and data keys as v12 names them, ids and values as v12
    /// writes them. A picture's URL is remembered by its file name.
    fn segment_in(&self, mut seg: Segment, chat: &Chat) -> Segment {
        let Segment { kind, data } = &mut seg;
        if kind == "at" && data.get("qq").and_then(crate::core::message::value_as_text).as_deref() == Some("all") {
            return Segment::new("mention_all");
        }
        let Some(row) = self.maps.segments_out.get(kind.as_str()) else {
            // An extension segment: its name under the prefix, its data as it is.
            *kind = self.prefixed(kind).into();
            return seg;
        };
        if *kind != row.target {
            *kind = row.target.as_str().into();
        }
        let unchanged =
            |key: &str| row.fields.get(key).is_some_and(|spec| spec.name == key && spec.kind == Kind::Plain);
        if data.keys().all(unchanged) {
            return seg;
        }
        let url = data.get("url").and_then(Value::as_str).map(str::to_owned);
        let old = std::mem::take(data);
        let mut read = Reading::with_capacity(old.len());
        for (key, value) in old {
            match row.fields.get(key.as_str()) {
                Some(spec) => {
                    if let (Kind::File, Some(name), Some(url)) = (spec.kind, value.as_str(), url.as_deref()) {
                        self.received.lock_unpoisoned().insert(name, url);
                    }
                    let value = if spec.kind == Kind::Plain { value } else { self.value_in(spec.kind, &value, chat) };
                    read.insert(spec.name.as_str(), value);
                }
                None => {
                    read.insert(self.prefixed(&key), value);
                }
            }
        }
        *data = read.done();
        seg
    }

    /// A v11 value of `kind` as v12 writes it.
    fn value_in(&self, kind: Kind, value: &Value, chat: &Chat) -> Value {
        match kind {
            Kind::Id => v12_id(value),
            Kind::Message => chat.qualify(value).unwrap_or_else(|| value.clone()),
            Kind::Float => match value {
                Value::String(s) => {
                    s.trim().parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::Null, Value::Number)
                }
                other => other.clone(),
            },
            Kind::Str => match value {
                Value::Number(n) => Value::String(n.to_string()),
                other => other.clone(),
            },
            _ => value.clone(),
        }
    }

    /// v12 segments (from the core) as a v11 array; a file id the edge holds bytes for becomes
    /// `base64://`. `Err` names a file id whose bytes were forgotten.
    pub fn segments_out(&self, message: &Value) -> Result<Vec<Value>, String> {
        let Some(items) = message.as_array() else { return Ok(Vec::new()) };
        items.iter().filter_map(SegmentRef::read).map(|seg| self.segment_out(&seg)).collect()
    }

    fn segment_out(&self, seg: &SegmentRef<'_>) -> Result<Value, String> {
        let maps = &self.maps;
        if seg.kind == "mention_all" {
            let mut data = Map::with_capacity(1);
            data.insert("qq".into(), "all".into());
            return Ok(segment_value("at".to_owned(), data));
        }
        let mut data = Map::with_capacity(seg.len());
        let kind = match maps.segments_in.get(seg.kind) {
            Some(row) => {
                for (key, value) in seg.entries() {
                    match row.fields.get(key) {
                        Some(spec) => {
                            data.insert(spec.name.clone(), self.value_out(spec.kind, value)?);
                        }
                        None => {
                            data.insert(maps.profile.strip(key).to_owned(), value.clone());
                        }
                    }
                }
                row.target.clone()
            }
            None => {
                for (key, value) in seg.entries() {
                    data.insert(maps.profile.strip(key).to_owned(), value.clone());
                }
                maps.profile.strip(seg.kind).to_owned()
            }
        };
        Ok(segment_value(kind, data))
    }

    /// A v12 value of `kind` as v11 writes it.
    fn value_out(&self, kind: Kind, value: &Value) -> Result<Value, String> {
        Ok(match kind {
            Kind::Id => v11_id(value),
            Kind::Message => unqualify(value),
            Kind::Float => match value {
                Value::Number(n) => Value::String(n.to_string()),
                other => other.clone(),
            },
            Kind::File => match value.as_str() {
                Some(id) => Value::String(self.file_out(id)?),
                None => value.clone(),
            },
            _ => value.clone(),
        })
    }

    /// What a v11 `file` says for a v12 file id: the bytes the edge holds, or the id itself (a
    /// URL, a path, or the implementation's own name for a file it sent).
    fn file_out(&self, file_id: &str) -> Result<String, String> {
        if !file_id.starts_with(UPLOAD_PREFIX) {
            let received = self.received.lock_unpoisoned();
            return Ok(received.urls.get(file_id).cloned().unwrap_or_else(|| file_id.to_owned()));
        }
        let uploads = self.uploads.lock_unpoisoned();
        match uploads.by_id.get(file_id) {
            Some(b64) => Ok(format!("base64://{b64}")),
            None => Err(file_id.to_owned()),
        }
    }

    // ---- actions ----

    /// What the core's request becomes for the implementation.
    pub fn request(&self, req: &v12::Request) -> Outbound {
        let p = &req.params;
        let call = |action: &str, params: Map<String, Value>, answer: Answer| {
            Outbound::Call(V11Call { action: action.to_owned(), params, answer })
        };
        match req.action.as_str() {
            "send_message" => self.send_message(p),
            "delete_message" => {
                let mut params = Map::new();
                params.insert("message_id".into(), unqualify(p.get("message_id").unwrap_or(&Value::Null)));
                call("delete_msg", params, Answer::AsIs)
            }
            "get_message" => {
                let id = p.get("message_id").unwrap_or(&Value::Null);
                let mut params = Map::new();
                params.insert("message_id".into(), unqualify(id));
                call("get_msg", params, Answer::Message { chat: Chat::of_qualified(id) })
            }
            "get_status" => call("get_login_info", Map::new(), Answer::Status),
            "get_version" => call("get_version_info", Map::new(), Answer::Version),
            "get_supported_actions" => {
                Outbound::Answered(failed(10002, "OneBot v11 implementations do not list their actions"))
            }
            "upload_file" => Outbound::Answered(self.upload(p)),
            "upload_file_fragmented" => Outbound::Answered(self.upload_part(p)),
            "get_file" => {
                let file_id = p.get("file_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let want = p.get("type").and_then(Value::as_str).unwrap_or("url").to_owned();
                if want == "url" && (file_id.starts_with("http://") || file_id.starts_with("https://")) {
                    return Outbound::Answered(ok(json!({"name": file_id, "url": file_id})));
                }
                let mut params = Map::new();
                params.insert("file".into(), Value::String(file_id.clone()));
                call("get_image", params, Answer::File { file_id, want })
            }
            action => match self.actions.get(action) {
                Some(row) => {
                    let mut params = Map::with_capacity(p.len());
                    for (key, value) in p {
                        match row.params.get(key) {
                            Some(spec) => {
                                let value = self.value_out(spec.kind, value).unwrap_or_else(|_| value.clone());
                                params.insert(spec.name.clone(), value);
                            }
                            None => {
                                let (key, value) = self.generic_param(key, value);
                                params.insert(key.to_owned(), value);
                            }
                        }
                    }
                    call(&row.v11, params, (row.answer)(action))
                }
                // `<prefix>.<name>` and anything else: the v11 action of that name, ids the core
                // made strings back to numbers, message ids unqualified.
                None => {
                    let mut params = Map::with_capacity(p.len());
                    for (key, value) in p {
                        let (key, value) = self.generic_param(key, value);
                        params.insert(key.to_owned(), value);
                    }
                    let v11 = self.maps.profile.strip(action);
                    // A profile's history row (NTQQ's `get_friend_msg_history`) is run by the
                    // core's history handler, which reads the entries as v12 events.
                    let answer = match v11 {
                        "get_forward_msg" => Answer::Forward,
                        _ if v11.ends_with("_msg_history") => Answer::History,
                        _ => Answer::AsIs,
                    };
                    call(v11, params, answer)
                }
            },
        }
    }

    /// A param no row names: unprefixed, ids the core made strings back to numbers, message ids
    /// unqualified.
    fn generic_param<'k>(&self, key: &'k str, value: &Value) -> (&'k str, Value) {
        let generic = &self.maps.generic_events;
        let key = self.maps.profile.strip(key);
        let value = if generic.id_fields.iter().any(|f| f == key) {
            v11_id(value)
        } else if generic.message_fields.iter().any(|f| f == key) {
            unqualify(value)
        } else {
            value.clone()
        };
        (key, value)
    }

    fn send_message(&self, p: &Map<String, Value>) -> Outbound {
        let detail = p.get("detail_type").and_then(Value::as_str).unwrap_or("");
        let message = match self.segments_out(p.get("message").unwrap_or(&Value::Null)) {
            Ok(m) => m,
            Err(file_id) => {
                return Outbound::Answered(failed(
                    32001,
                    format!("file {file_id} is no longer held by the bridge; upload it again"),
                ))
            }
        };
        let mut params = Map::with_capacity(4);
        let (action, chat) = match detail {
            "group" => {
                let group = p.get("group_id").cloned().unwrap_or(Value::Null);
                params.insert("message_type".into(), "group".into());
                params.insert("group_id".into(), v11_id(&group));
                ("send_msg", Chat::Group(id_text(&group)))
            }
            "channel" => {
                for key in ["guild_id", "channel_id"] {
                    params.insert(key.into(), p.get(key).cloned().unwrap_or(Value::Null));
                }
                ("send_guild_channel_msg", Chat::Unknown)
            }
            _ => {
                let user = p.get("user_id").cloned().unwrap_or(Value::Null);
                params.insert("message_type".into(), "private".into());
                params.insert("user_id".into(), v11_id(&user));
                ("send_msg", Chat::User(id_text(&user)))
            }
        };
        params.insert("message".into(), Value::Array(message));
        Outbound::Call(V11Call { action: action.to_owned(), params, answer: Answer::Sent { chat } })
    }

    /// `upload_file`, answered here: a URL or a path is its own file id; bytes are kept.
    fn upload(&self, p: &Map<String, Value>) -> v12::Response {
        let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
        match text("type") {
            "url" if !text("url").is_empty() => ok(json!({"file_id": text("url")})),
            "path" if !text("path").is_empty() => ok(json!({"file_id": format!("file://{}", text("path"))})),
            "data" => {
                let data = text("data");
                if base64::engine::general_purpose::STANDARD.decode(data).is_err() {
                    return failed(10003, "upload_file data is not base64");
                }
                ok(json!({"file_id": self.keep(Arc::from(data))}))
            }
            other => failed(10003, format!("upload_file type `{other}` without its value")),
        }
    }

    /// Keeps uploaded bytes (base64) under an id named by their content: the same bytes, however
    /// uploaded, get the same id.
    fn keep(&self, base64: Arc<str>) -> String {
        let id = format!("{UPLOAD_PREFIX}{:x}", Sha256::digest(base64.as_bytes()));
        self.uploads.lock_unpoisoned().insert(id.clone(), base64);
        id
    }

    /// One stage of a fragmented upload: `prepare` makes room for `total_size` bytes, `transfer`
    /// writes `data` at `offset`, `finish` checks the `sha256` and keeps the file like a whole
    /// upload (sent as `base64://` when a message names it).
    fn upload_part(&self, p: &Map<String, Value>) -> v12::Response {
        let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
        let number = |k: &str| p.get(k).and_then(Value::as_u64);
        // Decoding, hashing and encoding happen outside the lock: sends on this link read the
        // kept uploads meanwhile.
        match text("stage") {
            "prepare" => {
                let Some(size) = number("total_size") else { return failed(10003, "prepare needs total_size") };
                if size > self.max_file_size {
                    return failed(
                        10003,
                        format!("{size} bytes is more than max-file-size ({} bytes)", self.max_file_size),
                    );
                }
                let mut uploads = self.uploads.lock_unpoisoned();
                uploads.next_part += 1;
                let id = format!("{PART_PREFIX}{}", uploads.next_part);
                uploads.parts.push_back((id.clone(), Part { size: size as usize, bytes: Vec::new() }));
                // Room for this one: the oldest unfinished ones go (their uploads fail at finish).
                while uploads.parts.len() > ASSEMBLING_MAX
                    || (uploads.parts.len() > 1
                        && uploads.parts.iter().map(|(_, p)| p.size).sum::<usize>() > uploads.cap)
                {
                    uploads.parts.pop_front();
                }
                ok(json!({"file_id": id}))
            }
            "transfer" => {
                let Ok(chunk) = base64::engine::general_purpose::STANDARD.decode(text("data")) else {
                    return failed(10003, "transfer data is not base64");
                };
                let offset = number("offset").unwrap_or(0) as usize;
                let mut uploads = self.uploads.lock_unpoisoned();
                let Some((_, part)) = uploads.parts.iter_mut().find(|(have, _)| have == text("file_id")) else {
                    return failed(10003, format!("no fragmented upload `{}` in progress", text("file_id")));
                };
                let Some(end) = offset.checked_add(chunk.len()).filter(|end| *end <= part.size) else {
                    return failed(
                        10003,
                        format!("{} bytes at {offset} run past the file's {}", chunk.len(), part.size),
                    );
                };
                if part.bytes.len() < end {
                    part.bytes.resize(end, 0);
                }
                part.bytes[offset..end].copy_from_slice(&chunk);
                ok(Value::Null)
            }
            "finish" => {
                let part = {
                    let mut uploads = self.uploads.lock_unpoisoned();
                    let at = uploads.parts.iter().position(|(have, _)| have == text("file_id"));
                    at.and_then(|at| uploads.parts.remove(at))
                };
                let Some((_, part)) = part else {
                    return failed(10003, format!("no fragmented upload `{}` in progress", text("file_id")));
                };
                if part.bytes.len() != part.size {
                    return failed(10003, format!("{} of {} bytes arrived", part.bytes.len(), part.size));
                }
                let want = text("sha256");
                if !want.is_empty() && !want.eq_ignore_ascii_case(&format!("{:x}", Sha256::digest(&part.bytes))) {
                    return failed(10003, "the assembled file does not match its sha256");
                }
                let data = base64::engine::general_purpose::STANDARD.encode(&part.bytes);
                drop(part);
                ok(json!({"file_id": self.keep(Arc::from(data))}))
            }
            other => failed(10003, format!("upload_file_fragmented stage `{other}`")),
        }
    }

    /// Reads the implementation's answer to `call` as the v12 answer the core expects. The
    /// retcode is the implementation's (v11 and v12 share 0 for success and the 1xxxx range is
    /// v12's own; the core maps any other code as a backend failure).
    pub fn response(&self, call: &V11Call, mut answer: v12::Response) -> v12::Response {
        if !answer.is_ok() {
            return answer;
        }
        let data = std::mem::take(&mut answer.data);
        answer.data = match &call.answer {
            Answer::Sent { chat } => {
                let id = data.get("message_id").and_then(|id| chat.qualify(id)).unwrap_or(Value::Null);
                json!({"message_id": id, "time": crate::net::unix_now()})
            }
            Answer::Renamed { v12_action } => match self.actions.get(v12_action) {
                Some(row) => self.renamed(row, data),
                None => data,
            },
            Answer::Message { chat } => {
                let user = data.get("user_id").or_else(|| data.get("sender").and_then(|s| s.get("user_id")));
                let name = data.get("sender").and_then(|s| s.get("nickname")).cloned();
                let mut out = Map::new();
                let message = data.get("message").cloned().unwrap_or(Value::Null);
                out.insert("message".into(), Value::Array(self.segments_in(message, chat)));
                out.insert("user_id".into(), user.map(v12_id).unwrap_or(Value::Null));
                if let Some(name) = name {
                    out.insert("user_name".into(), name);
                }
                for key in ["time", "raw_message"] {
                    if let Some(v) = data.get(key) {
                        out.insert(if key == "raw_message" { "alt_message".into() } else { key.into() }, v.clone());
                    }
                }
                Value::Object(out)
            }
            Answer::Status => {
                let user = data.get("user_id").map(v12_id).unwrap_or(Value::Null);
                json!({"good": true, "bots": [{"self": {"platform": PLATFORM, "user_id": user}, "online": true}]})
            }
            Answer::Version => {
                let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                json!({"impl": text("app_name"), "version": text("app_version"), "onebot_version": "11"})
            }
            Answer::File { file_id, want } => {
                let name = data.get("file_name").and_then(Value::as_str).unwrap_or(file_id).to_owned();
                let mut out = Map::new();
                out.insert("name".into(), name.into());
                if let Some(url) = data.get("url").and_then(Value::as_str).filter(|u| !u.is_empty()) {
                    out.insert("url".into(), url.into());
                }
                if let Some(path) = data.get("file").and_then(Value::as_str).filter(|p| !p.is_empty()) {
                    out.insert("path".into(), path.into());
                }
                if want == "data" {
                    return failed(10002, "OneBot v11 implementations give a file's URL or path, not its bytes");
                }
                Value::Object(out)
            }
            Answer::Forward => self.forward_in(data),
            Answer::History => self.history_in(data),
            Answer::AsIs => data,
        };
        answer
    }

    /// A forward's messages (`messages`, or the v11 spec's `message`): each entry's sender and
    /// group ids as strings, its `content` / `message` as v12 segments.
    fn forward_in(&self, data: Value) -> Value {
        let Value::Object(mut data) = data else { return data };
        for key in ["messages", "message"] {
            let Some(Value::Array(entries)) = data.get_mut(key) else { continue };
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                for id in ["user_id", "group_id"] {
                    if let Some(v) = entry.get_mut(id) {
                        *v = v12_id(v);
                    }
                }
                if let Some(Value::Object(sender)) = entry.get_mut("sender") {
                    if let Some(v) = sender.get_mut("user_id") {
                        *v = v12_id(v);
                    }
                }
                for body in ["content", "message"] {
                    if let Some(v) = entry.get_mut(body) {
                        *v = Value::Array(self.segments_in(std::mem::take(v), &Chat::Unknown));
                    }
                }
            }
        }
        Value::Object(data)
    }

    /// A message history: its `messages` as v12 message events; an entry that is not a v11
    /// message event is left out (with a `warn!`): its ids could not be the bridge's.
    fn history_in(&self, data: Value) -> Value {
        let Value::Object(mut data) = data else { return data };
        let Some(Value::Array(entries)) = data.remove("messages") else { return Value::Object(data) };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let read = match entry {
                Value::Object(m) if m.get("post_type").and_then(Value::as_str) == Some("message") => {
                    self.event(m.into())
                }
                other => Err(EdgeError::PostType(other.get("post_type").map(Value::to_string).unwrap_or_default())),
            };
            match read {
                Ok(Some(ev)) => out.push(ev.into_value()),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "an entry of a message history is not a message event; left out"),
            }
        }
        data.insert("messages".into(), Value::Array(out));
        Value::Object(data)
    }

    fn renamed(&self, row: &ActionOut, data: Value) -> Value {
        let one = |item: Value| match item {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| match row.response.get(&k) {
                        Some(spec) => (spec.name.clone(), self.value_in(spec.kind, &v, &Chat::Unknown)),
                        None => (k, v),
                    })
                    .collect(),
            ),
            other => other,
        };
        match data {
            Value::Array(items) => Value::Array(items.into_iter().map(one).collect()),
            other => one(other),
        }
    }
}

/// A v11 answer frame read as a v12 answer (its `wording` or `msg` as the `message`).
pub fn read_answer(value: Value) -> Option<v12::Response> {
    let Value::Object(mut frame) = value else { return None };
    let text = |frame: &Map<String, Value>, k: &str| {
        frame.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
    };
    if text(&frame, "message").is_none() {
        if let Some(said) = text(&frame, "wording").or_else(|| text(&frame, "msg")) {
            frame.insert("message".into(), Value::String(said));
        }
    }
    v12::Response::from_value(Value::Object(frame))
}

/// `{type, data}`, built in place (the `json!` macro would serialise `data` again).
fn segment_value(kind: String, data: Map<String, Value>) -> Value {
    let mut seg = Map::with_capacity(2);
    seg.insert("type".into(), Value::String(kind));
    seg.insert("data".into(), Value::Object(data));
    Value::Object(seg)
}

/// A string value (a number as its text); anything else is empty.
fn text_of(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn take_string(m: &mut Map<String, Value>, key: &str) -> Option<String> {
    match m.remove(key) {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// An id as text (a v11 integer or a string).
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn ok(data: Value) -> v12::Response {
    v12::Response { status: "ok".into(), retcode: 0, data, message: String::new(), echo: None }
}

fn failed(retcode: i64, message: impl Into<String>) -> v12::Response {
    v12::Response { status: "failed".into(), retcode, data: Value::Null, message: message.into(), echo: None }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::core::mapping::MappingSet;

    #[test]
    fn a_call_is_written_as_a_json_map_would_be() {
        let params = json!({"group_id": 30003, "message": "会议 [x] & \"y\"\n".repeat(30)});
        let Value::Object(params) = params else { unreachable!() };
        let call = V11Call { action: "send_group_msg".into(), params, answer: Answer::Status };
        let reference = json!({"action": call.action, "params": call.params, "echo": "obb-1"});
        assert_eq!(call.to_json("obb-1"), serde_json::to_string(&reference).unwrap());
    }

    fn edge() -> Edge {
        Edge::new(MappingSet::embedded().unwrap().generic().clone(), 100 << 20)
    }

    /// A qualified id is the id as JSON writes it, then its chat; and it reads back.
    #[test]
    fn ids_are_qualified_with_their_chat_and_read_back() {
        let ids =
            [json!(-2147483648), json!(0), json!(1_234_567_890_123_i64), json!(u64::MAX), json!(1.5), json!("m-1")];
        let chats = [Chat::Group("30003".into()), Chat::User("20002".into()), Chat::Unknown];
        for id in &ids {
            for chat in &chats {
                let written = id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string());
                let want = match chat {
                    Chat::Group(g) => format!("{written}/g{g}"),
                    Chat::User(u) => format!("{written}/u{u}"),
                    Chat::Unknown => written.clone(),
                };
                let qualified = chat.qualify(id).unwrap();
                assert_eq!(qualified, json!(want), "{id} in {chat:?}");
                if !matches!(chat, Chat::Unknown) {
                    assert_eq!(Chat::of_qualified(&qualified), *chat, "{qualified}");
                }
            }
        }
        for nothing in [json!(""), json!(null), json!([1]), json!({})] {
            assert_eq!(Chat::Group("1".into()).qualify(&nothing), None, "{nothing}");
        }
    }

    /// The event read from its value, and checked to read the same from its JSON text (the
    /// socket's way: `message` read apart into segments).
    fn event(v: Value) -> v12::Event {
        let text = v.to_string();
        let Value::Object(m) = v else { panic!("not an object") };
        let ev = edge().event(m.into()).unwrap().unwrap();
        let frame: crate::backends::v12::codec::Members = serde_json::from_str(&text).unwrap();
        assert_eq!(edge().event_with(frame.members, frame.message).unwrap().unwrap(), ev, "read from the text");
        ev
    }

    fn call(edge: &Edge, action: &str, params: Value) -> V11Call {
        let Value::Object(params) = params else { panic!("not an object") };
        match edge.request(&v12::Request::new(action, params)) {
            Outbound::Call(call) => call,
            Outbound::Answered(a) => panic!("answered by the edge: {a:?}"),
        }
    }

    fn answered(edge: &Edge, action: &str, params: Value) -> v12::Response {
        let Value::Object(params) = params else { panic!("not an object") };
        match edge.request(&v12::Request::new(action, params)) {
            Outbound::Answered(a) => a,
            Outbound::Call(call) => panic!("sent to the implementation: {call:?}"),
        }
    }

    fn ok_answer(data: Value) -> v12::Response {
        read_answer(json!({"status": "ok", "retcode": 0, "data": data, "echo": "e"})).unwrap()
    }

    /// NapCat's group message (array format): ids become strings, the message id and the reply's
    /// are qualified by the group, a picture keeps its name as file id and its URL, and what v12
    /// has no word for goes under the prefix.
    #[test]
    fn a_napcat_group_message_reads_as_v12() {
        let ev = event(json!({
            "self_id": 10001, "user_id": 20002, "time": 1700000000, "message_id": -2147000001,
            "message_seq": 77, "real_id": 77, "message_type": "group", "sub_type": "normal",
            "sender": {"user_id": 20002, "nickname": "Bob", "card": "bobby", "role": "admin"},
            "raw_message": "[CQ:reply,id=123]hi", "font": 14, "group_id": 30003, "post_type": "message",
            "message_format": "array",
            "message": [
                {"type": "reply", "data": {"id": "123"}},
                {"type": "at", "data": {"qq": "10001", "name": "bot"}},
                {"type": "at", "data": {"qq": "all"}},
                {"type": "text", "data": {"text": "hi"}},
                {"type": "image", "data": {"file": "ABC.jpg", "url": "https://multimedia.nt.qq.com.cn/x", "file_size": "12"}},
                {"type": "face", "data": {"id": "14"}}
            ]
        }));
        assert_eq!((ev.kind.as_str(), ev.detail_type.as_str(), ev.sub_type.as_str()), ("message", "group", ""));
        assert_eq!(ev.self_id, Some(SelfId { platform: "qq".into(), user_id: "10001".into() }));
        assert_eq!(ev.time, 1700000000.0);
        let f = &ev.fields;
        assert_eq!(f["message_id"], "-2147000001/g30003");
        assert_eq!((f["user_id"].clone(), f["group_id"].clone()), (json!("20002"), json!("30003")));
        assert_eq!(f["alt_message"], "[CQ:reply,id=123]hi");
        assert_eq!(f["user_name"], "Bob");
        assert_eq!(f["qq.sender"], json!({"nickname": "Bob", "card": "bobby", "role": "admin"}));
        assert_eq!(f["qq.message_seq"], 77);
        assert!(!f.contains_key("font") && !f.contains_key("qq.font"));
        assert_eq!(
            ev.message.clone().map(v12::Message::into_value),
            Some(json!([
                {"type": "reply", "data": {"message_id": "123/g30003"}},
                {"type": "mention", "data": {"user_id": "10001", "qq.name": "bot"}},
                {"type": "mention_all", "data": {}},
                {"type": "text", "data": {"text": "hi"}},
                {"type": "image", "data": {"file_id": "ABC.jpg", "qq.url": "https://multimedia.nt.qq.com.cn/x", "qq.file_size": "12"}},
                {"type": "qq.face", "data": {"id": "14"}}
            ]))
        );
    }

    /// A CQ string (an implementation set to the string format) reads as its segments; a private
    /// message's id is qualified by the peer, the bot's own by whom it went to.
    #[test]
    fn a_private_cq_string_message_reads_as_segments() {
        let ev = event(json!({
            "post_type": "message", "message_type": "private", "sub_type": "friend", "self_id": 10001,
            "user_id": 20002, "message_id": 5, "message": "[CQ:face,id=1]a&#44;b&amp;", "time": 1
        }));
        assert_eq!(ev.detail_type, "private");
        assert_eq!(ev.fields["message_id"], "5/u20002");
        assert_eq!(
            ev.message.map(v12::Message::into_value),
            Some(json!([{"type": "qq.face", "data": {"id": "1"}}, {"type": "text", "data": {"text": "a,b&"}}]))
        );
        let mine = event(json!({
            "post_type": "message_sent", "message_type": "private", "self_id": 10001, "user_id": 10001,
            "target_id": 20002, "message_id": 6, "message": [], "time": 1
        }));
        assert_eq!(mine.fields["message_id"], "6/u20002", "the chat is the other side's");
        assert_eq!(mine.fields["user_id"], "10001");
    }

    /// Notices come back to their v12 rows by name and sub type; the ones no row names keep their
    /// name under the prefix with ids as strings; requests keep the implementation's flag.
    #[test]
    fn notices_and_requests_read_back_through_the_event_table() {
        let base = |extra: Value| {
            let mut v = json!({"post_type": "notice", "self_id": 10001, "time": 1});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            event(v)
        };
        let join = base(
            json!({"notice_type": "group_increase", "sub_type": "approve", "group_id": 3, "user_id": 4, "operator_id": 0}),
        );
        assert_eq!((join.detail_type.as_str(), join.sub_type.as_str()), ("group_member_increase", "join"));
        assert_eq!(join.fields["user_id"], "4");
        let lift = base(
            json!({"notice_type": "group_ban", "sub_type": "lift_ban", "group_id": 3, "user_id": 4, "operator_id": 5, "duration": 0}),
        );
        assert_eq!(lift.detail_type, "group_member_unban");
        let ban = base(
            json!({"notice_type": "group_ban", "sub_type": "ban", "group_id": 3, "user_id": 4, "operator_id": 5, "duration": 60}),
        );
        assert_eq!((ban.detail_type.as_str(), ban.fields["duration"].clone()), ("group_member_ban", json!(60)));
        let recall = base(
            json!({"notice_type": "group_recall", "group_id": 3, "user_id": 4, "operator_id": 4, "message_id": 99}),
        );
        assert_eq!(recall.detail_type, "group_message_delete");
        assert_eq!(recall.fields["message_id"], "99/g3");
        let friend_recall = base(json!({"notice_type": "friend_recall", "user_id": 4, "message_id": 98}));
        assert_eq!(friend_recall.fields["message_id"], "98/u4");
        let poke = base(
            json!({"notice_type": "notify", "sub_type": "poke", "group_id": 3, "user_id": 4, "target_id": 10001, "raw_info": [1]}),
        );
        assert_eq!((poke.detail_type.as_str(), poke.sub_type.as_str()), ("qq.notify", "poke"));
        assert_eq!(
            (poke.fields["target_id"].clone(), poke.fields["qq.raw_info"].clone()),
            (json!("10001"), json!([1]))
        );

        let request = event(json!({"post_type": "request", "request_type": "friend", "self_id": 10001, "time": 1,
                                   "user_id": 4, "comment": "hi", "flag": "1700000000123"}));
        assert_eq!((request.kind.as_str(), request.detail_type.as_str()), ("request", "qq.friend"));
        assert_eq!(
            (request.fields["user_id"].clone(), request.fields["qq.flag"].clone()),
            (json!("4"), json!("1700000000123"))
        );
    }

    #[test]
    fn heartbeats_and_lifecycle_tell_the_account_state() {
        let status = |v: Value| {
            let Value::Object(m) = v else { unreachable!() };
            edge().event(m.into()).unwrap().map(|ev| ev.fields["status"]["bots"][0]["online"].clone())
        };
        let hb = json!({"post_type": "meta_event", "meta_event_type": "heartbeat", "self_id": 1, "time": 1,
                        "status": {"online": false, "good": true}, "interval": 30000});
        assert_eq!(status(hb), Some(json!(false)));
        let up = json!({"post_type": "meta_event", "meta_event_type": "lifecycle", "sub_type": "connect", "self_id": 1, "time": 1});
        assert_eq!(status(up), Some(json!(true)));
        let down = json!({"post_type": "meta_event", "meta_event_type": "lifecycle", "sub_type": "disable", "self_id": 1, "time": 1});
        assert_eq!(status(down), Some(json!(false)));
        let odd = json!({"post_type": "meta_event", "meta_event_type": "other", "self_id": 1, "time": 1});
        assert_eq!(status(odd), None);
        let Value::Object(bad) = json!({"post_type": "nonsense", "self_id": 1}) else { unreachable!() };
        assert_eq!(edge().event(bad.into()).unwrap_err(), EdgeError::PostType("nonsense".into()));
    }

    /// What the core sends goes out in the implementation's words: numbers for ids, its own
    /// message ids, bytes the edge holds as base64; the answer's id comes back qualified.
    #[test]
    fn a_send_goes_out_as_send_msg_and_its_id_comes_back_qualified() {
        let edge = edge();
        let upload = answered(&edge, "upload_file", json!({"type": "data", "name": "a.png", "data": "AAEC"}));
        let file_id = upload.data["file_id"].as_str().unwrap().to_owned();
        assert!(file_id.starts_with(UPLOAD_PREFIX));
        let sent = call(
            &edge,
            "send_message",
            json!({"detail_type": "group", "group_id": "30003", "message": [
                {"type": "reply", "data": {"message_id": "-5/g30003"}},
                {"type": "mention", "data": {"user_id": "20002"}},
                {"type": "mention_all", "data": {}},
                {"type": "text", "data": {"text": "hi"}},
                {"type": "image", "data": {"file_id": file_id}},
                {"type": "image", "data": {"file_id": "https://example.com/a.png"}},
                {"type": "qq.face", "data": {"id": "14"}}
            ]}),
        );
        assert_eq!(sent.action, "send_msg");
        assert_eq!(
            Value::Object(sent.params.clone()),
            json!({"message_type": "group", "group_id": 30003, "message": [
                {"type": "reply", "data": {"id": -5}},
                {"type": "at", "data": {"qq": 20002}},
                {"type": "at", "data": {"qq": "all"}},
                {"type": "text", "data": {"text": "hi"}},
                {"type": "image", "data": {"file": "base64://AAEC"}},
                {"type": "image", "data": {"file": "https://example.com/a.png"}},
                {"type": "face", "data": {"id": "14"}}
            ]})
        );
        let answer = edge.response(&sent, ok_answer(json!({"message_id": 777})));
        assert_eq!(answer.data["message_id"], "777/g30003");

        let private = call(&edge, "send_message", json!({"detail_type": "private", "user_id": "20002", "message": []}));
        let answer = edge.response(&private, ok_answer(json!({"message_id": -1})));
        assert_eq!(answer.data["message_id"], "-1/u20002");
    }

    #[test]
    fn bytes_forgotten_by_the_edge_fail_the_send_so_the_core_uploads_again() {
        // max-file-size small enough that the 64 MiB bound is the one that holds.
        let edge = Edge::new(MappingSet::embedded().unwrap().generic().clone(), 1 << 20);
        let big = "A".repeat(UPLOADS_MAX_BYTES / 2 + 4);
        let first = answered(&edge, "upload_file", json!({"type": "data", "data": big}));
        let other = format!("{big}BBBB");
        answered(&edge, "upload_file", json!({"type": "data", "data": other}));
        answered(&edge, "upload_file", json!({"type": "data", "data": "CCCC"}));
        let msg = json!({"detail_type": "private", "user_id": "1", "message": [{"type": "image", "data": {"file_id": first.data["file_id"]}}]});
        let Value::Object(params) = msg else { unreachable!() };
        let Outbound::Answered(refused) = edge.request(&v12::Request::new("send_message", params)) else {
            panic!("a forgotten upload was sent")
        };
        assert_eq!(refused.retcode, 32001);
        assert!(edge.uploads.lock().unwrap().bytes <= UPLOADS_MAX_BYTES);
        let url = answered(&edge, "upload_file", json!({"type": "url", "url": "https://e/x.png"}));
        assert_eq!(url.data["file_id"], "https://e/x.png");
        let path = answered(&edge, "upload_file", json!({"type": "path", "path": "/srv/a.png"}));
        assert_eq!(path.data["file_id"], "file:///srv/a.png");
        assert_eq!(answered(&edge, "upload_file", json!({"type": "data", "data": "%%"})).retcode, 10003);
        assert_eq!(answered(&edge, "upload_file_fragmented", json!({})).retcode, 10003);
    }

    /// A fragmented upload is assembled at the edge and sent whole, as base64; its bounds hold.
    #[test]
    fn a_fragmented_upload_is_assembled_and_sent_whole() {
        let edge = edge();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let file = b"0123456789abcdefghij".to_vec();
        let sha = format!("{:x}", Sha256::digest(&file));
        let id = answered(&edge, "upload_file_fragmented", json!({"stage": "prepare", "name": "f", "total_size": 20}));
        let id = id.data["file_id"].clone();
        for (offset, chunk) in [(10, &file[10..]), (0, &file[..10])] {
            let t = json!({"stage": "transfer", "file_id": id, "offset": offset, "data": b64(chunk)});
            assert_eq!(answered(&edge, "upload_file_fragmented", t).retcode, 0);
        }
        let past = json!({"stage": "transfer", "file_id": id, "offset": 15, "data": b64(&file[..10])});
        assert_eq!(answered(&edge, "upload_file_fragmented", past).retcode, 10003);
        let wrong = json!({"stage": "finish", "file_id": id, "sha256": "00"});
        assert_eq!(answered(&edge, "upload_file_fragmented", wrong).retcode, 10003, "a wrong sha256 ends it");
        let id = answered(&edge, "upload_file_fragmented", json!({"stage": "prepare", "name": "f", "total_size": 20}));
        let id = id.data["file_id"].clone();
        let t = json!({"stage": "transfer", "file_id": id, "offset": 0, "data": b64(&file)});
        assert_eq!(answered(&edge, "upload_file_fragmented", t).retcode, 0);
        let done = answered(&edge, "upload_file_fragmented", json!({"stage": "finish", "file_id": id, "sha256": sha}));
        let file_id = done.data["file_id"].as_str().unwrap().to_owned();
        let whole = answered(&edge, "upload_file", json!({"type": "data", "data": b64(&file)}));
        assert_eq!(whole.data["file_id"], file_id.as_str(), "the same bytes, the same id, however uploaded");
        let msg = json!({"detail_type": "private", "user_id": "1", "message": [{"type": "image", "data": {"file_id": file_id}}]});
        let sent = call(&edge, "send_message", msg);
        assert_eq!(sent.params["message"][0]["data"]["file"], format!("base64://{}", b64(&file)));

        let too_big = json!({"stage": "prepare", "name": "f", "total_size": (100u64 << 20) + 1});
        assert_eq!(answered(&edge, "upload_file_fragmented", too_big).retcode, 10003);
        let first = answered(&edge, "upload_file_fragmented", json!({"stage": "prepare", "total_size": 1}));
        for _ in 0..ASSEMBLING_MAX {
            answered(&edge, "upload_file_fragmented", json!({"stage": "prepare", "total_size": 1}));
        }
        let stale = json!({"stage": "finish", "file_id": first.data["file_id"]});
        assert_eq!(answered(&edge, "upload_file_fragmented", stale).retcode, 10003, "the oldest was dropped");
    }

    /// Table rows read backwards: the v12 action becomes the v11 one, params and answer fields
    /// renamed back; `<prefix>.<name>` is the v11 action `name`; anything else passes through.
    #[test]
    fn actions_read_back_through_the_action_table() {
        let edge = edge();
        let me = call(&edge, "get_self_info", json!({}));
        assert_eq!(me.action, "get_login_info");
        let answer = edge.response(&me, ok_answer(json!({"user_id": 10001, "nickname": "bot"})));
        assert_eq!(answer.data, json!({"user_id": "10001", "user_name": "bot"}));

        let members = call(&edge, "get_group_member_list", json!({"group_id": "3"}));
        assert_eq!((members.action.as_str(), members.params["group_id"].clone()), ("get_group_member_list", json!(3)));
        let answer =
            edge.response(&members, ok_answer(json!([{"user_id": 4, "nickname": "n", "card": "c", "role": "owner"}])));
        assert_eq!(answer.data, json!([{"user_id": "4", "user_name": "n", "user_displayname": "c", "role": "owner"}]));

        assert_eq!(call(&edge, "leave_group", json!({"group_id": "3"})).action, "set_group_leave");
        let kick =
            call(&edge, "qq.set_group_kick", json!({"group_id": "3", "user_id": "4", "reject_add_request": false}));
        assert_eq!(
            (kick.action.as_str(), Value::Object(kick.params)),
            ("set_group_kick", json!({"group_id": 3, "user_id": 4, "reject_add_request": false}))
        );
        let emoji = call(&edge, "qq.set_msg_emoji_like", json!({"message_id": "12/g3", "emoji_id": "76"}));
        assert_eq!(
            (emoji.action.as_str(), Value::Object(emoji.params)),
            ("set_msg_emoji_like", json!({"message_id": 12, "emoji_id": "76"}))
        );
        let delete = call(&edge, "delete_message", json!({"message_id": "-9/u4"}));
        assert_eq!((delete.action.as_str(), delete.params["message_id"].clone()), ("delete_msg", json!(-9)));
        assert_eq!(call(&edge, "get_status", json!({})).action, "get_login_info");
        let version = call(&edge, "get_version", json!({}));
        let answer = edge.response(
            &version,
            ok_answer(json!({"app_name": "NapCat.Onebot", "app_version": "4.8.0", "protocol_version": "v11"})),
        );
        assert_eq!(answer.data, json!({"impl": "NapCat.Onebot", "version": "4.8.0", "onebot_version": "11"}));
        assert_eq!(answered(&edge, "get_supported_actions", json!({})).retcode, 10002);
        let failure =
            read_answer(json!({"status": "failed", "retcode": 1404, "wording": "no such message", "echo": "e"}))
                .unwrap();
        let kept = edge.response(&delete, failure);
        assert_eq!((kept.retcode, kept.message.as_str()), (1404, "no such message"));
    }

    /// A picture a bot sends back by the name it received goes to the implementation by its URL.
    #[test]
    fn a_received_picture_sent_back_by_name_goes_by_its_url() {
        let edge = edge();
        let chat = Chat::Group("3".into());
        let image = json!([{"type": "image", "data": {"file": "ABC.jpg", "url": "https://e/ABC"}}]);
        assert_eq!(edge.segments_in(image, &chat)[0]["data"]["file_id"], "ABC.jpg");
        let out = edge.segments_out(&json!([{"type": "image", "data": {"file_id": "ABC.jpg"}}])).unwrap();
        assert_eq!(out, vec![json!({"type": "image", "data": {"file": "https://e/ABC"}})]);
        let unknown = edge.segments_out(&json!([{"type": "image", "data": {"file_id": "other.jpg"}}])).unwrap();
        assert_eq!(unknown[0]["data"]["file"], "other.jpg");
        // What is remembered is bounded: an absurdly long URL is not kept, and the count is capped.
        let long = json!([{"type": "image", "data": {"file": "LONG.jpg", "url": "x".repeat(RECEIVED_ENTRY_MAX)}}]);
        edge.segments_in(long, &chat);
        assert!(!edge.received.lock().unwrap().urls.contains_key("LONG.jpg"));
        for i in 0..RECEIVED_MAX + 10 {
            let image = json!([{"type": "image", "data": {"file": format!("{i}.jpg"), "url": "https://e/x"}}]);
            edge.segments_in(image, &chat);
        }
        assert_eq!(edge.received.lock().unwrap().urls.len(), RECEIVED_MAX);
    }

    /// A forward's messages come back with v12 ids and segments, for the core to make v11 again.
    #[test]
    fn a_forward_reads_back_as_v12_entries() {
        let edge = edge();
        let fetch = call(&edge, "qq.get_forward_msg", json!({"message_id": "res-1"}));
        assert_eq!((fetch.action.as_str(), fetch.params["message_id"].clone()), ("get_forward_msg", json!("res-1")));
        let answer = edge.response(
            &fetch,
            ok_answer(json!({"messages": [
                {"sender": {"user_id": 4, "nickname": "n"}, "time": 5, "group_id": 3, "message_id": 77,
                 "content": [{"type": "at", "data": {"qq": "5"}}, {"type": "face", "data": {"id": "1"}}]},
                {"user_id": 6, "message": "[CQ:face,id=2]hi"}
            ]})),
        );
        assert_eq!(
            answer.data,
            json!({"messages": [
                {"sender": {"user_id": "4", "nickname": "n"}, "time": 5, "group_id": "3", "message_id": 77,
                 "content": [{"type": "mention", "data": {"user_id": "5"}}, {"type": "qq.face", "data": {"id": "1"}}]},
                {"user_id": "6", "message": [{"type": "qq.face", "data": {"id": "2"}}, {"type": "text", "data": {"text": "hi"}}]}
            ]})
        );
    }

    /// A message the bridge knows only by id is looked up with the implementation's own id.
    #[test]
    fn get_message_asks_get_msg_with_the_implementation_id() {
        let edge = edge();
        let lookup = call(&edge, "get_message", json!({"message_id": "41/g3"}));
        assert_eq!((lookup.action.as_str(), lookup.params["message_id"].clone()), ("get_msg", json!(41)));
        let answer = edge.response(
            &lookup,
            ok_answer(json!({"message_id": 41, "real_id": 41, "time": 5, "message_type": "group", "group_id": 3,
                             "sender": {"user_id": 4, "nickname": "n"}, "raw_message": "[CQ:reply,id=40]x",
                             "message": [{"type": "reply", "data": {"id": "40"}}, {"type": "text", "data": {"text": "x"}}]})),
        );
        assert_eq!(
            answer.data,
            json!({"message": [{"type": "reply", "data": {"message_id": "40/g3"}}, {"type": "text", "data": {"text": "x"}}],
                   "user_id": "4", "user_name": "n", "time": 5, "alt_message": "[CQ:reply,id=40]x"})
        );
        assert_eq!(Chat::of_qualified(&json!("7/u9")), Chat::User("9".into()));
        assert_eq!(Chat::of_qualified(&json!("7")), Chat::Unknown);
    }

    #[test]
    fn a_received_file_url_is_answered_at_the_edge_and_a_name_is_asked_for() {
        let edge = edge();
        let url = answered(&edge, "get_file", json!({"file_id": "https://e/x.png", "type": "url"}));
        assert_eq!(url.data["url"], "https://e/x.png");
        let by_name = call(&edge, "get_file", json!({"file_id": "ABC.jpg", "type": "url"}));
        assert_eq!((by_name.action.as_str(), by_name.params["file"].clone()), ("get_image", json!("ABC.jpg")));
        let answer = edge.response(
            &by_name,
            ok_answer(json!({"file": "/tmp/ABC.jpg", "url": "https://e/ABC", "file_name": "ABC.jpg"})),
        );
        assert_eq!(answer.data, json!({"name": "ABC.jpg", "url": "https://e/ABC", "path": "/tmp/ABC.jpg"}));
    }
}
