//! v12 events → v11 events (go-cqhttp's shapes), driven by `mappings/events.toml`.
//!
//! Message events are code: go-cqhttp's `sender`, `raw_message`, `font`, `anonymous` and the
//! message in the endpoint's post format. Notices and requests follow the table, and anything the
//! table does not name is passed on under its own name with the profile prefix removed, so an
//! extension event is never dropped. An event lacking a field its row requires (a group message
//! without `group_id`, a request without its flag's fields) is refused naming the field, and the
//! runtime drops it with a warning. Meta events are per v11 connection (lifecycle, heartbeat) and
//! are built by [`lifecycle_connect`] and [`heartbeat`]; v12 meta events only tell the runtime
//! about the backend ([`heartbeat_interval_ms`], [`status_bots`]).

mod v11;

use serde_json::{json, Map, Value};

pub use v11::{MessageEvent, MessageIds, Sender, SenderShape, V11Event};

use super::action::ActionContext;
use super::cq::render_cq;
use super::ids::{IdError, IdStore, StoredMessage};
use super::mapping::Mappings;
use super::mapping::{EventRow, Kind};
use super::message::{Data, Reading};
use super::segment::{Scope, SegmentError};
use super::v12::{id_str, id_string, Event, SelfId};
use super::{Account, Translator, V12Caller};

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error("{event}: missing or unreadable field `{field}`")]
    Missing { event: String, field: String },
}

/// Starts a v11 event body in go-cqhttp's key order: post_type, `<x>_type`, time, self_id, sub_type.
/// `room` is how many more keys the caller expects to add (the map then never grows in steps).
fn header(
    post_type: &str,
    type_key: &str,
    type_value: &str,
    time: i64,
    self_id: i64,
    sub_type: &str,
    room: usize,
) -> Map<String, Value> {
    let mut m = Map::with_capacity(5 + room);
    m.insert("post_type".into(), post_type.into());
    m.insert(type_key.into(), type_value.into());
    m.insert("time".into(), time.into());
    m.insert("self_id".into(), self_id.into());
    if !sub_type.is_empty() {
        m.insert("sub_type".into(), sub_type.into());
    }
    m
}

/// The handshake every v11 WebSocket connection gets first. go-cqhttp's forward-WS handshake
/// carries `_post_method: 2`; the reverse-WS one does not.
pub fn lifecycle_connect(self_id: i64, time: i64, forward_ws: bool) -> V11Event {
    let mut body = Map::new();
    if forward_ws {
        body.insert("_post_method".into(), 2.into());
    }
    body.extend(header("meta_event", "meta_event_type", "lifecycle", time, self_id, "connect", 0));
    V11Event::new(self_id, body)
}

/// go-cqhttp's `get_status` data.
pub fn v11_status(online: bool, good: bool, stat: Value) -> Value {
    json!({
        "app_initialized": true, "app_enabled": true, "plugins_good": null, "app_good": true,
        "online": online, "good": good && online, "stat": stat,
    })
}

/// go-cqhttp's `stat` object. The bridge keeps no packet counters, so every count is 0.
pub fn empty_stat() -> Value {
    json!({
        "packet_received": 0, "packet_sent": 0, "packet_lost": 0, "message_received": 0,
        "message_sent": 0, "disconnect_times": 0, "lost_times": 0, "last_message_time": 0,
    })
}

/// A v11 heartbeat: `interval` is the time to the next one, in milliseconds.
pub fn heartbeat(self_id: i64, time: i64, interval_ms: u64, status: Value) -> V11Event {
    let mut body = header("meta_event", "meta_event_type", "heartbeat", time, self_id, "", 2);
    body.insert("status".into(), status);
    body.insert("interval".into(), interval_ms.into());
    V11Event::new(self_id, body)
}

/// The backend's heartbeat interval in milliseconds. Some implementations (walle-core) send
/// seconds: a value below 1000 is read as seconds.
pub fn heartbeat_interval_ms(ev: &Event) -> Option<u64> {
    let v = ev.fields.get("interval")?.as_f64()?;
    if v <= 0.0 {
        return None;
    }
    Some(if v < 1000.0 { (v * 1000.0) as u64 } else { v as u64 })
}

/// Accounts and their online state from a `meta.status_update` event or a `get_status` answer.
pub fn status_bots(status: &Value) -> Vec<(SelfId, bool)> {
    let Some(bots) = status.get("bots").and_then(Value::as_array) else { return Vec::new() };
    bots.iter()
        .filter_map(|b| {
            let s = b.get("self")?;
            let self_id = SelfId {
                platform: s.get("platform").and_then(id_string).unwrap_or_default(),
                user_id: s.get("user_id").and_then(id_string)?,
            };
            Some((self_id, b.get("online").and_then(Value::as_bool).unwrap_or(true)))
        })
        .collect()
}

/// The event's time, or `now` when it has none or what it has is no time (`1e300`, negative,
/// NaN-like): go-cqhttp itself stamps most events with the local time.
fn event_time(ev: &Event, now: i64) -> i64 {
    match super::v12::unix_seconds(ev.time) {
        Some(t) => t,
        None => {
            if ev.time != 0.0 {
                tracing::warn!(id = %ev.id, event = %ev.name(), time = ev.time, "event time is no time; using now");
            }
            now
        }
    }
}

/// An event its table row says cannot become a v11 event: a required field absent, or one that
/// is no id (no message, for `message`). A `group_id: true` must not reach a bot as a group
/// message without its group.
fn check_required(maps: &Mappings, ev: &Event, name: &str) -> Result<(), EventError> {
    // A request the profile answers needs every field its flag carries back.
    if let Some(request) = maps.requests.get(&ev.detail_type).filter(|_| ev.kind == "request") {
        if let Some(field) = request.flag.iter().find(|f| ev.fields.get(f).is_none_or(Value::is_null)) {
            return Err(EventError::Missing { event: name.to_owned(), field: field.clone() });
        }
    }
    let Some(row) = maps.events.get(name) else { return Ok(()) };
    for field in &row.required {
        let usable = match (&ev.message, ev.fields.get(field)) {
            (Some(message), _) if field == "message" => message.is_usable(),
            (None, Some(v)) if field == "message" => matches!(v, Value::Array(_) | Value::Object(_) | Value::String(_)),
            (_, None) => false,
            (_, Some(v)) => id_str(v).is_some_and(|id| !id.is_empty()),
        };
        if !usable {
            return Err(EventError::Missing { event: name.to_owned(), field: field.clone() });
        }
    }
    Ok(())
}

/// Message event fields that describe the sender, under their own name or the profile's
/// prefixed one (`qq.nickname`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    UserName,
    Nickname,
    UserDisplayname,
    Sex,
    UserCard,
    Card,
    Area,
    Level,
    Role,
    Title,
    Sender,
    Anonymous,
}

const FIELD_NAMES: [&str; 12] = [
    "user_name",
    "nickname",
    "user_displayname",
    "sex",
    "user_card",
    "card",
    "area",
    "level",
    "role",
    "title",
    "sender",
    "anonymous",
];

/// The sender fields of one event, found in one pass over its fields (no prefixed names built).
struct SenderFields<'a> {
    profile: &'a super::mapping::Profile,
    plain: [Option<&'a Value>; 12],
    prefixed: [Option<&'a Value>; 12],
}

impl<'a> SenderFields<'a> {
    fn of(profile: &'a super::mapping::Profile, ev: &'a Event) -> SenderFields<'a> {
        let mut found = SenderFields { profile, plain: [None; 12], prefixed: [None; 12] };
        let index = |name: &str| FIELD_NAMES.iter().position(|n| *n == name);
        for (key, value) in &ev.fields {
            if let Some(i) = index(key) {
                found.plain[i] = Some(value);
            } else if let Some(i) = profile.strip_own(key).and_then(index) {
                found.prefixed[i] = Some(value);
            }
        }
        // Without a prefix the prefixed name is the plain one.
        if profile.prefix.is_empty() {
            found.prefixed = found.plain;
        }
        found
    }

    /// The plain name, else the prefixed one.
    fn get(&self, f: Field) -> Option<&'a Value> {
        self.plain[f as usize].or(self.prefixed[f as usize])
    }

    fn text(&self, f: Field) -> Option<&'a str> {
        self.get(f).and_then(Value::as_str)
    }

    /// The prefixed name, else the plain one.
    fn prefixed_first(&self, f: Field) -> Option<&'a Value> {
        self.prefixed[f as usize].or(self.plain[f as usize])
    }

    fn prefixed_only(&self, f: Field) -> Option<&'a Value> {
        self.prefixed[f as usize]
    }

    /// The display name: `user_name`, `nickname` or `user_displayname`, each plain or prefixed.
    fn name(&self) -> &'a str {
        [Field::UserName, Field::Nickname, Field::UserDisplayname]
            .into_iter()
            .find_map(|f| self.text(f))
            .unwrap_or_default()
    }
}

/// Fields a message event carries that are consumed by the translation itself.
const MESSAGE_FIELDS: [&str; 7] =
    ["message", "alt_message", "message_id", "user_id", "group_id", "guild_id", "channel_id"];

impl<S: IdStore> Translator<S> {
    /// Translates one non-meta v12 event for the account that received it. `now` (unix seconds)
    /// stands in for a missing event time. Meta events give `None`: the runtime handles them.
    /// Received media get a fetchable `url` through `caller` (see [`Translator::media_urls`]).
    pub async fn to_v11_event<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        ev: &Event,
        now: i64,
        caller: &C,
    ) -> Result<Option<V11Event>, EventError> {
        if ev.kind == "meta" {
            return Ok(None);
        }
        let name = ev.name();
        check_required(ctx.maps, ev, &name)?;
        match ev.kind.as_str() {
            // The bot's own message (a backend reporting what the bot sent elsewhere): go-cqhttp's
            // `message_sent` with report-self-message, else not reported.
            "message" if ev.str_field("user_id").as_deref() == Some(ctx.account.self_id.user_id.as_str()) => {
                if !self.options.report_self_message {
                    tracing::debug!(id = %ev.id, "the bot's own message; not reported (report-self-message is off)");
                    return Ok(None);
                }
                let mut sent = self.message_event(ctx, ev, &name, now, caller).await?;
                if let Some(m) = sent.as_message_mut() {
                    m.sent = true;
                }
                Ok(Some(sent))
            }
            "message" => self.message_event(ctx, ev, &name, now, caller).await.map(Some),
            _ => self.notice_or_request(ctx.maps, ctx.account, ev, &name, now).await.map(Some),
        }
    }

    /// A message history's answer: each of `messages` that is a v12 message event becomes the v11
    /// message event a bot would have received (the bridge's ids, assigned and stored, so
    /// `get_msg`, replies and recalls work on it), in the asking endpoint's format; entries that
    /// are not v12 events (a backend answering in go-cqhttp's shape) are passed on as given. A
    /// `message_seq` of 0 means "the latest" and is not a message id.
    pub(super) async fn message_history<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, super::action::ActionError> {
        let latest = |v: &Value| {
            v.is_null() || v.as_i64() == Some(0) || v.as_str().is_some_and(|s| s.trim().is_empty() || s.trim() == "0")
        };
        let mut params = params.clone();
        params.retain(|key, value| !(matches!(key.as_str(), "message_seq" | "message_id") && latest(value)));
        let data = self.call_row(name, ctx, caller, &params).await?;
        let Value::Object(mut data) = data else { return Ok(data) };
        let Some(Value::Array(items)) = data.remove("messages") else { return Ok(Value::Object(data)) };
        let mut out = Vec::with_capacity(items.len());
        for mut item in items {
            let is_event =
                item.get("type").and_then(Value::as_str) == Some("message") && item.get("detail_type").is_some();
            if !is_event {
                out.push(item);
                continue;
            }
            // An entry is the asking account's history: without its own `self`, it is that account's.
            if let Some(entry) = item.as_object_mut().filter(|e| !e.contains_key("self") && !e.contains_key("self_id"))
            {
                let me = &ctx.account.self_id;
                entry.insert("self".into(), json!({"platform": me.platform, "user_id": me.user_id}));
            }
            let translated = match Event::from_value(item) {
                Ok(ev) => {
                    let name = ev.name();
                    self.message_event(ctx, &ev, &name, 0, caller).await.map_err(|e| e.to_string())
                }
                Err(error) => Err(error.to_string()),
            };
            match translated {
                Ok(ev) => out.push(ev.to_value(ctx.post_format)),
                Err(error) => {
                    tracing::warn!(%error, action = name, "a message in the history cannot be translated; left out")
                }
            }
        }
        data.insert("messages".into(), Value::Array(out));
        Ok(Value::Object(data))
    }

    async fn message_event<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        ev: &Event,
        name: &str,
        now: i64,
        caller: &C,
    ) -> Result<V11Event, EventError> {
        let (account, maps) = (ctx.account, ctx.maps);
        let profile = &maps.profile;
        let missing = |field: &str| EventError::Missing { event: name.to_owned(), field: field.to_owned() };
        let row = maps.events.get(name);
        let message_type = row.map(|r| r.v11.clone()).unwrap_or_else(|| profile.strip(&ev.detail_type).to_owned());
        let sub_type = row
            .and_then(|r| r.sub_type.get(&ev.sub_type).cloned())
            .unwrap_or_else(|| profile.strip(&ev.sub_type).to_owned());
        let message_id = ev.str_field("message_id").ok_or_else(|| missing("message_id"))?;
        let user_id = ev.str_field("user_id").ok_or_else(|| missing("user_id"))?;
        let group_id = ev.str_field("group_id");
        let scope = Scope {
            account,
            detail_type: &ev.detail_type,
            group_id: group_id.as_deref(),
            user_id: Some(&user_id),
            maps,
        };
        let mut segments = self.message_to_v11(&scope, ev.message.as_ref()).await?;
        self.media_urls(ctx, caller, &mut segments).await;
        self.reply_options(&mut segments).await;
        let raw = render_cq(&segments);
        let time = event_time(ev, now);
        let is_channel = ev.detail_type == "channel";
        let sender_fields = SenderFields::of(profile, ev);
        let anonymous = sender_fields.prefixed_only(Field::Anonymous).filter(|v| v.is_object()).cloned();
        let sub_type = if anonymous.is_some() && message_type == "group" { "anonymous".to_owned() } else { sub_type };

        let ids;
        let v11_user: Value;
        if is_channel {
            ids = MessageIds::Channel {
                guild_id: ev.str_field("guild_id").ok_or_else(|| missing("guild_id"))?.into_owned(),
                channel_id: ev.str_field("channel_id").ok_or_else(|| missing("channel_id"))?.into_owned(),
                message_id: message_id.into_owned(),
                self_tiny_id: account.self_id.user_id.clone(),
            };
            v11_user = Value::String(user_id.into_owned());
        } else {
            let mut record = scope.record(&message_id);
            record.content = Some(StoredMessage {
                time,
                segments: std::mem::take(&mut segments),
                sender_id: self.ids.to_v11(&user_id).await?,
                sender_name: sender_fields.name().to_owned(),
            });
            let stored = self.ids.message_to_v11(&record).await;
            // The store keeps its own copy: the segments go on into the event, not copied.
            if let Some(content) = record.content.take() {
                segments = content.segments;
            }
            let group_id = match &group_id {
                Some(g) => Some(self.ids.to_v11(g).await?),
                None => None,
            };
            ids = MessageIds::Numeric { message_id: stored?, group_id };
            v11_user = self.ids.to_v11(&user_id).await?.into();
        }
        let is_group = message_type == "group";
        let sender = self.sender(&sender_fields, is_group, v11_user.clone(), is_channel);
        let mut event = MessageEvent {
            sent: false,
            anonymous: is_group.then(|| anonymous.unwrap_or(Value::Null)),
            message_type,
            time,
            self_id: account.v11_id,
            sub_type,
            ids,
            user_id: v11_user,
            segments,
            raw_message: raw,
            sender,
            extra: Data::new(),
        };
        // The event's other fields are passed on; those the sender was made of are not (go-cqhttp
        // has no top-level `user_name` or `card`).
        for (key, value) in &ev.fields {
            let key = profile.strip(key);
            if !MESSAGE_FIELDS.contains(&key) && !FIELD_NAMES.contains(&key) {
                event.pass_on(key, value);
            }
        }
        Ok(V11Event::message_event(event))
    }

    /// go-cqhttp's `sender` object, filled from whatever the backend says about the sender
    /// (`user_name`, `user_card`, `<prefix>.nickname`, a `<prefix>.sender` object, …).
    fn sender(&self, fields: &SenderFields<'_>, is_group: bool, user_id: Value, is_channel: bool) -> Sender {
        let text =
            |names: &[Field], default: &str| names.iter().find_map(|n| fields.text(*n)).unwrap_or(default).to_owned();
        let shape = if is_channel {
            SenderShape::Channel
        } else if is_group {
            SenderShape::Group {
                sex: text(&[Field::Sex], "unknown"),
                card: text(&[Field::UserCard, Field::Card, Field::UserDisplayname], ""),
                area: text(&[Field::Area], ""),
                level: text(&[Field::Level], ""),
                role: text(&[Field::Role], "member"),
                title: text(&[Field::Title], ""),
            }
        } else {
            SenderShape::Private { sex: text(&[Field::Sex], "unknown") }
        };
        let mut given = Reading::default();
        if let Some(Value::Object(object)) = fields.prefixed_first(Field::Sender) {
            for (k, v) in object {
                let k = fields.profile.strip(k);
                if k != "user_id" {
                    given.insert(k, v.clone());
                }
            }
        }
        Sender { user_id, nickname: fields.name().to_owned(), shape, given: given.done() }
    }

    async fn notice_or_request(
        &self,
        maps: &Mappings,
        account: &Account,
        ev: &Event,
        name: &str,
        now: i64,
    ) -> Result<V11Event, EventError> {
        let profile = &maps.profile;
        let post_type = ev.kind.as_str();
        let type_key = format!("{post_type}_type");
        let time = event_time(ev, now);
        let user_id = ev.str_field("user_id");
        let group_id = ev.str_field("group_id");
        let detail = if group_id.is_some() {
            "group"
        } else if ev.fields.contains_key("channel_id") {
            "channel"
        } else {
            "private"
        };
        let scope =
            Scope { account, detail_type: detail, group_id: group_id.as_deref(), user_id: user_id.as_deref(), maps };

        // A request the profile knows how to answer: its v11 shape, and a flag that answers it.
        let request = if post_type == "request" { maps.requests.get(&ev.detail_type) } else { None };
        let request_row;
        let row: Option<&EventRow> = match request {
            Some(r) => {
                let sub_type = r.sub_type.iter().map(|s| (ev.sub_type.clone(), s.clone())).collect();
                request_row = EventRow {
                    v11: r.v11.clone(),
                    sub_type,
                    self_sub_type: Default::default(),
                    fields: r.fields.clone(),
                    required: Vec::new(),
                };
                Some(&request_row)
            }
            None => maps.events.get(name),
        };
        let v11_type = row.map(|r| r.v11.clone()).unwrap_or_else(|| profile.strip(&ev.detail_type).to_owned());
        let mut sub_type = row
            .and_then(|r| r.sub_type.get(&ev.sub_type).cloned())
            .unwrap_or_else(|| profile.strip(&ev.sub_type).to_owned());
        if let Some(replacement) = row.and_then(|r| r.self_sub_type.get(&ev.sub_type)) {
            if user_id.as_deref() == Some(account.self_id.user_id.as_str()) {
                sub_type = replacement.clone();
            }
        }
        let mut body = header(post_type, &type_key, &v11_type, time, account.v11_id, &sub_type, ev.fields.len() + 2);
        let generic = &maps.generic_events;
        for (key, value) in &ev.fields {
            let (name, kind) = match row.and_then(|r| r.fields.get(key)) {
                Some(spec) => (spec.name.as_str(), spec.kind),
                None => {
                    let bare = profile.strip(key);
                    let kind = if generic.id_fields.iter().any(|f| f == bare) {
                        Kind::Id
                    } else if generic.message_fields.iter().any(|f| f == bare) {
                        Kind::Message
                    } else {
                        Kind::Plain
                    };
                    (bare, kind)
                }
            };
            if body.contains_key(name) {
                continue;
            }
            let id = if matches!(kind, Kind::Id | Kind::Message | Kind::Str) { id_str(value) } else { None };
            let converted = match (kind, id) {
                (Kind::Id, Some(id)) => self.ids.to_v11(&id).await?.into(),
                (Kind::Message, Some(id)) => self.ids.message_to_v11(&scope.record(&id)).await?.into(),
                (Kind::Str, Some(id)) => Value::String(id.into_owned()),
                _ => value.clone(),
            };
            body.insert(name.to_owned(), converted);
        }
        // go-cqhttp's semantics, whatever the backend's names: a ban of 0 s is a lift, and a poke
        // names its sender.
        if body.get("notice_type").and_then(Value::as_str) == Some("group_ban")
            && body.get("duration").and_then(Value::as_i64) == Some(0)
        {
            body.insert("sub_type".into(), "lift_ban".into());
        }
        if body.get("sub_type").and_then(Value::as_str) == Some("poke") && !body.contains_key("sender_id") {
            if let Some(user) = body.get("user_id").cloned() {
                body.insert("sender_id".into(), user);
            }
        }
        if let Some(r) = request {
            let values = r.flag.iter().map(|f| ev.fields.get(f).cloned().unwrap_or(Value::Null)).collect();
            body.insert("flag".into(), super::requests::pack_flag(&ev.detail_type, values).into());
            body.entry("comment").or_insert_with(|| Value::String(String::new()));
        }
        Ok(V11Event::new(account.v11_id, body))
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::json;

    use super::*;
    use crate::core::testing::{account, translator, Recorder};
    use crate::core::v11::PostFormat;
    use crate::core::BackendInfo;

    /// The event as an array-format endpoint reads it.
    fn body(ev: &V11Event) -> Value {
        ev.to_value(PostFormat::Array)
    }

    fn sample(kind: Kind) -> Value {
        match kind {
            Kind::Id => json!("123"),
            Kind::Message => json!("m-456"),
            Kind::Str => json!("s-1"),
            _ => json!("plain"),
        }
    }

    /// A v12 backend's message history: entries without `self` are the asking account's, each
    /// comes back as a v11 message event with a bridge id that `get_msg` resolves, and an entry
    /// in go-cqhttp's shape is passed on as given.
    #[test]
    fn history_entries_become_v11_events_with_the_bridge_ids() {
        use crate::core::v11;
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo { profile: "generic".into(), ..Default::default() };
        let entry = |id: &str, text: &str| {
            json!({"id": id, "time": 1700000000, "type": "message", "detail_type": "group", "sub_type": "",
                   "message_id": id, "group_id": "30003", "user_id": "20002",
                   "message": [{"type": "text", "data": {"text": text}}]})
        };
        let given = json!({"message_id": 5, "post_type": "message"});
        let rec = Recorder::default();
        *rec.data.lock().unwrap() = json!({"messages": [entry("h-1", "one"), entry("h-2", "two"), given]});
        let ctx = t.context(&me, &backend, v11::PostFormat::Array);
        let params = json!({"group_id": 30003, "message_seq": 0});
        let Value::Object(params) = params else { unreachable!() };
        let req = v11::Request { action: "get_group_msg_history".into(), params, echo: None };
        let answer = block_on(t.handle_action(ctx, &rec, req));
        assert_eq!(answer.retcode, 0, "{answer:?}");
        let sent = &rec.requests.lock().unwrap()[0];
        assert_eq!(sent.action, "qq.get_group_msg_history");
        assert!(!sent.params.contains_key("message_seq"), "0 is the latest, not an id: {sent:?}");
        let messages = answer.data["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[2], given);
        for (entry, text) in messages[..2].iter().zip(["one", "two"]) {
            assert_eq!((entry["post_type"].as_str(), entry["group_id"].as_i64()), (Some("message"), Some(30003)));
            let id = entry["message_id"].as_i64().unwrap();
            let stored = block_on(t.ids.message_to_v12(id)).unwrap();
            assert_eq!(stored.content.unwrap().segments[0].data.get("text"), Some(&json!(text)));
        }
    }

    /// The sender's fields go into `sender` only; the event's other fields are passed on.
    #[test]
    fn sender_fields_stay_in_sender() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo { profile: "generic".into(), ..Default::default() };
        let fields = json!({"message_id": "m-1", "user_id": "20002", "group_id": "30003", "user_name": "Alice",
                            "user_card": "Al", "qq.nickname": "A", "qq.level": "7", "qq.extra": 1,
                            "message": [{"type": "text", "data": {"text": "hi"}}]});
        let Value::Object(fields) = fields else { unreachable!() };
        let ev = Event {
            id: "e".into(),
            ..Event::new("message", "group".into(), String::new(), Some(me.self_id.clone()), 5.0, fields)
        };
        let ctx = t.context(&me, &backend, Default::default());
        let out = block_on(t.to_v11_event(ctx, &ev, 0, &Recorder::default())).unwrap().unwrap();
        assert_eq!(body(&out)["sender"]["nickname"], "Alice");
        assert_eq!(body(&out)["sender"]["card"], "Al");
        for key in ["user_name", "user_card", "nickname", "level", "card"] {
            assert!(body(&out).get(key).is_none(), "{key} at top level: {:?}", body(&out));
        }
        assert_eq!(body(&out)["extra"], 1, "other fields are passed on");
    }

    /// Every notice row of events.toml: its v11 name, and every listed field under its v11 name
    /// with the kind's conversion.
    #[test]
    fn every_notice_row_of_every_profile_translates() {
        let t = translator();
        let me = account(&t);
        for (profile, maps) in t.maps.iter() {
            let rows: Vec<_> = maps.events.iter().filter(|(k, _)| k.starts_with("notice.")).collect();
            assert!(rows.len() >= 9, "{profile}");
            let backend = BackendInfo { profile: profile.clone(), ..Default::default() };
            check_notice_rows(&t, &me, &backend, rows);
        }
    }

    fn check_notice_rows(
        t: &Translator<crate::core::MemoryIdStore>,
        me: &Account,
        backend: &BackendInfo,
        rows: Vec<(&String, &EventRow)>,
    ) {
        for (name, row) in rows {
            let mut fields = Map::new();
            for (v12, spec) in &row.fields {
                fields.insert(v12.clone(), sample(spec.kind));
            }
            for (sub12, sub11) in
                row.sub_type.iter().chain([(&String::new(), &String::new())]).take(row.sub_type.len().max(1))
            {
                let ev = Event {
                    id: "x".into(),
                    ..Event::new(
                        "notice",
                        name.trim_start_matches("notice.").into(),
                        sub12.clone(),
                        Some(me.self_id.clone()),
                        5.0,
                        fields.clone(),
                    )
                };
                let out =
                    block_on(t.to_v11_event(t.context(me, backend, Default::default()), &ev, 0, &Recorder::default()))
                        .unwrap()
                        .unwrap();
                assert_eq!(body(&out)["notice_type"], row.v11, "{name}");
                assert_eq!(body(&out).get("sub_type").and_then(Value::as_str).unwrap_or(""), sub11, "{name} {sub12:?}");
                for (v12, spec) in &row.fields {
                    let got = &body(&out)[&spec.name];
                    match spec.kind {
                        Kind::Id => assert_eq!(got, &json!(123), "{name}.{v12}"),
                        Kind::Message => assert!(got.as_i64().is_some_and(|n| n > 0), "{name}.{v12}: {got}"),
                        _ => assert_eq!(got, &sample(spec.kind), "{name}.{v12}"),
                    }
                }
            }
        }
    }

    /// Every request row of every profile: the v11 request, and its flag answering through the
    /// backend's own action with the flag's fields (types kept) and the bot's answer.
    #[test]
    fn every_request_row_of_every_profile_answers_through_its_flag() {
        let t = translator();
        let me = account(&t);
        let mut seen = 0;
        for (profile, maps) in t.maps.iter() {
            let backend = BackendInfo { profile: profile.clone(), ..Default::default() };
            for (detail, row) in &maps.requests {
                seen += 1;
                let mut fields = Map::new();
                for (v12, spec) in &row.fields {
                    fields.insert(v12.clone(), sample(spec.kind));
                }
                for (i, f) in row.flag.iter().enumerate() {
                    fields.entry(f.clone()).or_insert(json!(900 + i));
                }
                let ev = Event {
                    id: "r".into(),
                    ..Event::new(
                        "request",
                        detail.clone(),
                        String::new(),
                        Some(me.self_id.clone()),
                        5.0,
                        fields.clone(),
                    )
                };
                let ctx = t.context(&me, &backend, Default::default());
                for f in &row.flag {
                    let mut without = ev.clone();
                    without.fields.remove(f);
                    let got = block_on(t.to_v11_event(ctx, &without, 0, &Recorder::default()));
                    assert!(
                        matches!(&got, Err(EventError::Missing { field, .. }) if field == f),
                        "{profile}/{detail} without flag field {f}: {got:?}"
                    );
                }
                let out = block_on(t.to_v11_event(ctx, &ev, 0, &Recorder::default())).unwrap().unwrap();
                assert_eq!(body(&out)["request_type"], row.v11, "{profile}/{detail}");
                if let Some(sub) = &row.sub_type {
                    assert_eq!(body(&out)["sub_type"], json!(sub), "{profile}/{detail}");
                }
                let flag = body(&out)["flag"].clone();
                let action = if row.v11 == "friend" { "set_friend_add_request" } else { "set_group_add_request" };
                let rec = Recorder::default();
                let params = json!({"flag": flag, "approve": false, "reason": "no"});
                let req = crate::core::v11::Request {
                    action: action.into(),
                    params: params.as_object().unwrap().clone(),
                    echo: None,
                };
                let answer = block_on(t.handle_action(ctx, &rec, req.clone()));
                let rejects = row.answer_params.contains_key("approve") || row.reject.is_some();
                if !rejects {
                    // A backend that can only accept: a rejection is refused, never turned into an acceptance.
                    assert_eq!(answer.msg.as_deref(), Some("BRIDGE_UNSUPPORTED_BY_BACKEND"), "{profile}/{detail}");
                    assert!(rec.requests.lock().unwrap().is_empty(), "{profile}/{detail}");
                    let mut accept = req;
                    accept.params.insert("approve".into(), json!(true));
                    assert!(block_on(t.handle_action(ctx, &rec, accept)).is_ok(), "{profile}/{detail}");
                } else {
                    assert!(answer.is_ok(), "{profile}/{detail}: {answer:?}");
                }
                let sent = rec.requests.lock().unwrap().pop().unwrap();
                let want = match (&row.reject, rejects && !row.answer_params.contains_key("approve")) {
                    (Some(reject), true) => reject,
                    _ => &row.answer,
                };
                assert_eq!(&sent.action, want, "{profile}/{detail}");
                for f in &row.flag {
                    assert_eq!(sent.params[f], fields[f], "{profile}/{detail}: flag field {f}");
                }
                if let Some(spec) = row.answer_params.get("approve") {
                    assert_eq!(sent.params[&spec.name], json!(false), "{profile}/{detail}: approve");
                }
            }
        }
        assert!(seen >= 3, "the profiles answer requests");
    }

    #[test]
    fn every_message_row_names_its_v11_type() {
        let t = translator();
        let me = account(&t);
        for (name, row) in t.maps.generic().events.iter().filter(|(k, _)| k.starts_with("message.")) {
            let detail = name.trim_start_matches("message.");
            let fields = json!({"message_id": "1", "user_id": "2", "group_id": "3", "guild_id": "g", "channel_id": "c",
                                "message": [{"type": "text", "data": {"text": "t"}}]});
            let ev = Event::new(
                "message",
                detail.into(),
                String::new(),
                Some(me.self_id.clone()),
                0.0,
                fields.as_object().unwrap().clone(),
            );
            let out = block_on(t.to_v11_event(
                t.context(&me, &BackendInfo::default(), Default::default()),
                &ev,
                77,
                &Recorder::default(),
            ))
            .unwrap()
            .unwrap();
            assert_eq!(body(&out)["message_type"], row.v11);
            assert_eq!(body(&out)["sub_type"], row.sub_type[""]);
            assert_eq!(body(&out)["time"], 77, "a missing time becomes now");
            assert_eq!(out.to_value(PostFormat::String)["message"], "t");
            assert_eq!(out.to_value(PostFormat::Array)["message"], json!([{"type": "text", "data": {"text": "t"}}]));
        }
    }

    /// Every row's required fields: without each one (or with it junk) the event is refused
    /// naming it; with all of them it translates.
    #[test]
    fn an_event_without_a_required_field_is_refused_naming_it() {
        let t = translator();
        let me = account(&t);
        let mut checked = 0;
        for (profile, maps) in t.maps.iter() {
            let backend = BackendInfo { profile: profile.clone(), ..Default::default() };
            let ctx = t.context(&me, &backend, Default::default());
            for (name, row) in maps.events.iter().filter(|(_, r)| !r.required.is_empty()) {
                let (kind, detail) = name.split_once('.').unwrap();
                let mut full = Map::new();
                for field in &row.required {
                    let v =
                        if field == "message" { json!([{"type": "text", "data": {"text": "t"}}]) } else { json!("77") };
                    full.insert(field.clone(), v);
                }
                let event = |fields: Map<String, Value>| Event {
                    id: "e".into(),
                    ..Event::new(kind, detail.into(), String::new(), Some(me.self_id.clone()), 5.0, fields)
                };
                let ok = block_on(t.to_v11_event(ctx, &event(full.clone()), 0, &Recorder::default()));
                assert!(matches!(ok, Ok(Some(_))), "{profile}/{name}: {ok:?}");
                for field in &row.required {
                    for junk in [None, Some(json!(true)), Some(json!(null)), Some(json!("")), Some(json!({"id": 1}))] {
                        if field == "message" && matches!(&junk, Some(Value::String(_) | Value::Object(_))) {
                            continue;
                        }
                        let mut fields = full.clone();
                        match &junk {
                            Some(v) => fields.insert(field.clone(), v.clone()),
                            None => fields.remove(field),
                        };
                        let got = block_on(t.to_v11_event(ctx, &event(fields), 0, &Recorder::default()));
                        match got {
                            Err(EventError::Missing { field: f, .. }) if &f == field => {}
                            other => {
                                let junk = junk.map_or("absent".to_owned(), |v| v.to_string());
                                panic!("{profile}/{name} {field}={junk}: {other:?}")
                            }
                        }
                    }
                }
                checked += 1;
            }
        }
        assert!(checked >= 20, "rows with required fields: {checked}");
    }

    #[test]
    fn an_event_time_that_is_no_time_becomes_now() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo::default();
        for time in [json!(1e300), json!(-7), json!("NaN"), json!("never")] {
            let ev = Event::from_value(json!({"type": "message", "detail_type": "private", "time": time,
                "self": {"platform": "qq", "user_id": "10001"}, "message_id": "1", "user_id": "2",
                "message": "hi"}))
            .unwrap();
            let ctx = t.context(&me, &backend, Default::default());
            let out = block_on(t.to_v11_event(ctx, &ev, 1234, &Recorder::default())).unwrap().unwrap();
            assert_eq!(body(&out)["time"], 1234, "{time}");
        }
    }

    #[test]
    fn remove_reply_at_and_extra_reply_data_as_go_cqhttp() {
        let group = |id: &str, user: &str, message: Value| {
            Event::from_value(json!({"type": "message", "detail_type": "group", "time": 100,
                "self": {"platform": "qq", "user_id": "10001"}, "message_id": id, "group_id": "5",
                "user_id": user, "message": message}))
            .unwrap()
        };
        let quoted = group("q1", "7", json!([{"type": "text", "data": {"text": "first [words]"}}]));
        // QQ's reply: the reply, then a mention of the quoted sender, then the text.
        let reply = group(
            "r1",
            "8",
            json!([
                {"type": "reply", "data": {"message_id": "q1", "user_id": "7"}},
                {"type": "mention", "data": {"user_id": "7"}},
                {"type": "text", "data": {"text": " yes"}}
            ]),
        );
        for (remove_reply_at, extra_reply_data, want) in [
            (false, false, "[CQ:reply,id=1,qq=7][CQ:at,qq=7] yes"),
            (true, false, "[CQ:reply,id=1,qq=7] yes"),
            (false, true, "[CQ:reply,id=1,qq=7,time=100,text=first &amp;#91;words&amp;#93;][CQ:at,qq=7] yes"),
            (true, true, "[CQ:reply,id=1,qq=7,time=100,text=first &amp;#91;words&amp;#93;] yes"),
        ] {
            let options = crate::core::Options { remove_reply_at, extra_reply_data, ..Default::default() };
            let t = Translator::new(
                std::sync::Arc::new(crate::core::MappingSet::embedded().unwrap()),
                crate::core::ids::MemoryIdStore::default(),
                options,
            );
            let me = account(&t);
            let backend = BackendInfo::default();
            let ctx = t.context(&me, &backend, Default::default());
            let first = block_on(t.to_v11_event(ctx, &quoted, 0, &Recorder::default())).unwrap().unwrap();
            let want = want.replace("id=1", &format!("id={}", body(&first)["message_id"]));
            let ctx = t.context(&me, &backend, Default::default());
            let out = block_on(t.to_v11_event(ctx, &reply, 0, &Recorder::default())).unwrap().unwrap();
            assert_eq!(body(&out)["raw_message"], want, "remove {remove_reply_at}, extra {extra_reply_data}");
        }
    }

    #[test]
    fn json_output_is_what_javascript_would_write() {
        let t = translator();
        let me = account(&t);
        let ev = Event::from_value(json!({"type": "message", "detail_type": "private", "time": 1.0,
            "self": {"platform": "qq", "user_id": "10001"}, "message_id": "1", "user_id": "2",
            "message": [{"type": "text", "data": {"text": "a/b \u{1} é 😀 \"q\" <x>&"}}]}))
        .unwrap();
        let out = block_on(t.to_v11_event(
            t.context(&me, &BackendInfo::default(), Default::default()),
            &ev,
            0,
            &Recorder::default(),
        ))
        .unwrap()
        .unwrap();
        let text = out.to_json(PostFormat::Array);
        assert!(text.contains(r#"a/b \u0001 é 😀 \"q\" <x>&"#), "{text}");
        assert!(!text.contains(": ") && !text.contains(".0"), "{text}");
    }

    #[test]
    fn meta_helpers_follow_go_cqhttp() {
        let hello = lifecycle_connect(1, 2, true);
        assert_eq!(
            hello.to_json(PostFormat::String),
            r#"{"_post_method":2,"post_type":"meta_event","meta_event_type":"lifecycle","time":2,"self_id":1,"sub_type":"connect"}"#
        );
        assert!(body(&lifecycle_connect(1, 2, false)).get("_post_method").is_none());
        let hb = Event::from_value(json!({"type": "meta", "detail_type": "heartbeat", "interval": 4})).unwrap();
        assert_eq!(heartbeat_interval_ms(&hb), Some(4000), "walle-core sends seconds");
        let hb = Event::from_value(json!({"type": "meta", "detail_type": "heartbeat", "interval": 5000})).unwrap();
        assert_eq!(heartbeat_interval_ms(&hb), Some(5000));
        let bots = status_bots(
            &json!({"good": true, "bots": [{"self": {"platform": "qq", "user_id": 1}, "online": false}, {"bad": 1}]}),
        );
        assert_eq!(bots, vec![(SelfId { platform: "qq".into(), user_id: "1".into() }, false)]);
    }

    proptest::proptest! {
        /// Whatever a backend sends, translation answers (with an event or an error) and never panics.
        #[test]
        fn no_panic_on_arbitrary_events(
            detail in "(private|group|channel|friend_increase|group_message_delete|qq\\.x|)",
            kind in "(message|notice|request|meta)",
            user in proptest::option::of(".{0,12}"),
            msg in proptest::collection::vec(("[a-z._]{0,8}", ".{0,8}", ".{0,8}"), 0..4),
        ) {
            let t = translator();
            let me = account(&t);
            let segments: Vec<Value> = msg.iter().map(|(ty, k, v)| json!({"type": ty, "data": {k: v}})).collect();
            let mut raw = json!({"type": kind, "detail_type": detail, "self": {"platform": "qq", "user_id": "10001"},
                "message_id": "1", "group_id": "g", "message": segments, "reply": {"message_id": 5}});
            if let Some(u) = user { raw["user_id"] = json!(u); }
            if let Ok(ev) = Event::from_value(raw) {
                let _ = block_on(t.to_v11_event(t.context(&me, &BackendInfo::default(), Default::default()), &ev, 0, &Recorder::default()));
            }
        }
    }

    #[test]
    fn to_value_is_what_json_writes_even_without_a_message() {
        let mut body = Map::new();
        body.insert("post_type".into(), "notice".into());
        body.insert("raw_message".into(), 20002.into());
        let ev = V11Event::new(1, body);
        for format in [PostFormat::String, PostFormat::Array] {
            let written: Value = serde_json::from_str(&ev.json(format)).unwrap();
            assert_eq!(ev.to_value(format), written);
            assert!(ev.to_value(format).get("message").is_none());
        }
    }
}
