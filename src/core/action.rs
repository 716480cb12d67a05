//! v11 actions → v12 actions, and the answers back in go-cqhttp's shapes.
//!
//! Plain renames come from `mappings/actions.toml`; actions with routing or state
//! (`send_msg`, `delete_msg`, `get_status`, …) are the named handlers below. Every failure, from
//! whichever side, becomes a v11 answer in exactly one place, [`ActionError::to_response`]:
//! `msg` says who failed (`BAD_PARAM`, `API_NOT_FOUND`, `MSG_NOT_FOUND` — the bot; `BRIDGE_*` —
//! the bridge; `BACKEND_*` — the v12 implementation) and `wording` says what happened.

use serde_json::{json, Map, Value};

use super::cq::render_cq;
use super::ids::{IdError, IdStore, StoredMessage};
use super::mapping::{Handler, Kind, Mappings, ResponseRow, SendTarget};
use super::media::MediaError;
use super::message::{value_as_text, Segment};
use super::segment::{as_reported, lenient_i64, read_v11_message, Scope, SegmentError};
use super::v12::id_string;
use super::{v11, v12, Account, BackendInfo, CallError, Translator, V12Caller};

/// v12 actions that need no `self` (meta actions).
const META_ACTIONS: [&str; 4] = ["get_status", "get_version", "get_supported_actions", "get_latest_events"];

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("unknown action")]
    NotFound,
    #[error("get_updates needs an HTTP API server with `long-polling` enabled (go-cqhttp's long polling); this endpoint has none")]
    LongPollingOff,
    #[error("{implementation_label} ({profile} profile) cannot `{action}`: {reason}", implementation_label = if implementation.is_empty() { "the backend" } else { implementation.as_str() })]
    Unsupported { action: String, profile: String, implementation: String, reason: String },
    #[error("param `{param}`: {reason}")]
    BadParam { param: String, reason: String },
    #[error("the message is empty")]
    EmptyMessage,
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("backend answered retcode {retcode}: {message}")]
    Backend { action: String, retcode: i64, message: String },
    /// The backend said ok but its answer lacks what the action needs (a send's `message_id`).
    #[error("the backend's answer to `{action}` is malformed: {reason}")]
    BadAnswer { action: String, reason: String },
}

impl ActionError {
    /// The one place a failure becomes a v11 answer.
    pub fn to_response(&self, maps: &Mappings) -> v11::Response {
        let (retcode, msg): (i64, String) = match self {
            ActionError::NotFound => return v11::Response::not_found(),
            ActionError::Unsupported { .. } => (100, "BRIDGE_UNSUPPORTED_BY_BACKEND".into()),
            ActionError::LongPollingOff => (100, "LONG_POLLING_DISABLED".into()),
            ActionError::BadParam { .. } => (100, "BAD_PARAM".into()),
            ActionError::EmptyMessage => (100, "EMPTY_MSG_ERROR".into()),
            ActionError::Media(e) => (
                100,
                match e {
                    MediaError::Refused(_) => "FILE_REFUSED",
                    MediaError::NotFound(_) => "FILE_NOT_FOUND",
                    MediaError::TooLarge { .. } => "FILE_TOO_LARGE",
                    MediaError::BadReference(_) => "BAD_PARAM",
                    MediaError::Io(_) => "BRIDGE_FILE_ERROR",
                    MediaError::Timeout(_) => "BRIDGE_TRANSFER_TIMEOUT",
                    MediaError::BadAnswer { .. } => "BACKEND_BAD_ANSWER",
                }
                .into(),
            ),
            ActionError::Segment(SegmentError::Id(e)) | ActionError::Id(e) => return id_failure(e),
            ActionError::Segment(_) => (100, "BAD_PARAM".into()),
            ActionError::Call(CallError::Timeout(_)) => (100, "BACKEND_TIMEOUT".into()),
            ActionError::Call(CallError::Unavailable(_)) => (100, "BACKEND_UNAVAILABLE".into()),
            ActionError::Call(CallError::Link(_)) => (100, "BACKEND_LINK_ERROR".into()),
            ActionError::BadAnswer { .. } => (100, "BACKEND_BAD_ANSWER".into()),
            ActionError::Backend { retcode, message, action } => {
                let target = maps.retcode(*retcode);
                let wording = if message.is_empty() {
                    format!("the backend failed `{action}` with v12 retcode {retcode}")
                } else {
                    message.clone()
                };
                return v11::Response::failed(target.retcode, format!("BACKEND_{}", target.msg), wording);
            }
        };
        v11::Response::failed(retcode, msg, self.to_string())
    }
}

fn id_failure(e: &IdError) -> v11::Response {
    let msg = match e {
        IdError::UnknownMessage(_) => "MSG_NOT_FOUND",
        IdError::UnknownSurrogate(_) => "BRIDGE_UNKNOWN_ID",
        IdError::Store(_) | IdError::Exhausted(_) => "BRIDGE_STORE_ERROR",
    };
    v11::Response::failed(100, msg, e.to_string())
}

/// The `time` of a message in a backend's answer, in unix seconds. One that is absent or no time
/// (`1e300`, negative, NaN-like) is 0, as go-cqhttp's own unknown time; junk is logged.
fn answer_time(action: &str, data: &Value) -> i64 {
    let t = v12::read_time(data.get("time"));
    v12::unix_seconds(t).unwrap_or_else(|| {
        if t != 0.0 {
            tracing::warn!(action, time = t, "the backend's answer has a time that is no time; 0 used");
        }
        0
    })
}

/// A `self_id` param names the bot account, which the transport has already chosen by then (the
/// HTTP API picks by it; a WebSocket connection serves one account): it is consumed, never passed
/// on to the backend as an extension param. Naming another account is refused.
fn consume_self_id(params: &mut Map<String, Value>, account: &Account) -> Result<(), ActionError> {
    let Some(v) = params.remove("self_id") else { return Ok(()) };
    match (&v, lenient_i64(&v)) {
        (Value::Null, _) => Ok(()),
        (Value::String(s), _) if s.trim().is_empty() => Ok(()),
        (_, Some(id)) if id == account.v11_id => Ok(()),
        _ => Err(ActionError::BadParam {
            param: "self_id".into(),
            reason: format!("{v} is not bot account {}, the one this connection serves", account.v11_id),
        }),
    }
}

/// Reads a bool the lenient go-cqhttp way (`true`, `"yes"`, `"1"`, `1`, …).
pub fn lenient_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_f64().map(|f| f != 0.0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" | "yes" | "y" | "on" => Some(true),
            "0" | "f" | "false" | "no" | "n" | "off" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// What an action needs to know besides its params.
#[derive(Debug, Clone, Copy)]
pub struct ActionContext<'a> {
    pub account: &'a Account,
    pub backend: &'a BackendInfo,
    /// The message format of the endpoint that asked (`get_msg` answers in it).
    pub post_format: v11::PostFormat,
    /// The tables of the backend's profile.
    pub maps: &'a Mappings,
}

pub(super) enum Target {
    Private(i64),
    Group(i64),
    Channel(String, String),
}

pub(super) fn required_i64(params: &Map<String, Value>, name: &str) -> Result<i64, ActionError> {
    let v =
        params.get(name).ok_or_else(|| ActionError::BadParam { param: name.into(), reason: "is required".into() })?;
    lenient_i64(v).ok_or_else(|| ActionError::BadParam { param: name.into(), reason: format!("{v} is not an integer") })
}

/// An optional routing id: absent, `null`, `""` or 0 is none; anything else must be an integer.
fn nonzero_i64(params: &Map<String, Value>, name: &str) -> Result<Option<i64>, ActionError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(v) => match lenient_i64(v) {
            Some(n) => Ok(Some(n).filter(|n| *n != 0)),
            None => Err(ActionError::BadParam { param: name.into(), reason: format!("{v} is not an integer") }),
        },
    }
}

pub(super) fn required_str(params: &Map<String, Value>, name: &str) -> Result<String, ActionError> {
    params
        .get(name)
        .and_then(value_as_text)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ActionError::BadParam { param: name.into(), reason: "is required".into() })
}

impl<S: IdStore> Translator<S> {
    /// Runs one v11 action for an account. The answer carries no `echo`: the transport that read
    /// the request puts it back.
    pub async fn handle_action<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        mut req: v11::Request,
    ) -> v11::Response {
        let name = req.action.strip_suffix("_async").unwrap_or(&req.action);
        let result = match (consume_self_id(&mut req.params, ctx.account), ctx.maps.actions.get(name)) {
            (Err(error), _) => Err(error),
            (Ok(()), None) => match ctx.maps.unsupported.get(name) {
                Some(reason) => Err(ActionError::Unsupported {
                    action: name.to_owned(),
                    profile: ctx.maps.profile.name.clone(),
                    implementation: ctx.backend.implementation.clone(),
                    reason: reason.clone(),
                }),
                None if ctx.maps.pass_unknown_actions => self.pass_through(name, ctx, caller, &req.params).await,
                None => Err(ActionError::NotFound),
            },
            (Ok(()), Some(row)) => match row.handler {
                Some(handler) => self.run_handler(handler, row.target, name, ctx, caller, &req.params).await,
                None => self.run_rename(name, ctx, caller, &req.params).await,
            },
        };
        match result {
            Ok(data) => v11::Response::ok(data),
            Err(error) => {
                tracing::debug!(action = name, %error, "action failed");
                error.to_response(ctx.maps)
            }
        }
    }

    /// Calls the backend and returns the `data` of a successful answer.
    pub async fn call<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        action: &str,
        params: Map<String, Value>,
    ) -> Result<Value, ActionError> {
        Self::data_of(action, caller.call(Self::request(ctx, action, params)).await?)
    }

    /// The request for `action`, on behalf of the account unless it is a meta action.
    fn request(ctx: ActionContext<'_>, action: &str, params: Map<String, Value>) -> v12::Request {
        let mut req = v12::Request::new(action, params);
        if !META_ACTIONS.contains(&action) {
            req.self_id = Some(ctx.account.self_id.clone());
        }
        req
    }

    /// The `data` of a successful answer; a failed one as the error it is.
    fn data_of(action: &str, resp: v12::Response) -> Result<Value, ActionError> {
        if resp.is_ok() {
            Ok(resp.data)
        } else {
            Err(ActionError::Backend { action: action.to_owned(), retcode: resp.retcode, message: resp.message })
        }
    }

    /// An action no table names, for a backend that takes such actions: `<prefix>.<action>` with
    /// the params under the prefix (as any param a row does not list), the answer as given.
    async fn pass_through<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let profile = &ctx.maps.profile;
        let out = params.iter().map(|(k, v)| (profile.prefixed(k), v.clone())).collect();
        let data = self.call(ctx, caller, &profile.prefixed(name), out).await?;
        self.response_to_v11(ctx, &Default::default(), data, params).await
    }

    pub(super) async fn run_rename<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let data = self.call_row(name, ctx, caller, params).await?;
        self.response_to_v11(ctx, &ctx.maps.actions[name].response, data, params).await
    }

    /// Calls the v12 action of an action's row with the params it lists translated; the
    /// backend's `data` as it is.
    pub(super) async fn call_row<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let row = &ctx.maps.actions[name];
        let off = row.when_off.as_ref().filter(|w| {
            params.get(&w.param).is_some_and(|v| lenient_bool(v) == Some(false) || lenient_i64(v) == Some(0))
        });
        let v12_action = match off {
            Some(w) => w.v12.as_str(),
            None => row.v12.as_deref().unwrap_or(name),
        };
        let mut reused = Vec::new();
        let out = self.row_params(ctx, caller, row, params, true, &mut reused).await?;
        match self.call(ctx, caller, v12_action, out).await {
            // A remembered upload in a node the backend no longer knows: upload afresh, once.
            Err(ActionError::Backend { .. }) if !reused.is_empty() => {
                tracing::info!(action = name, "call failed with reused file_ids; uploading again");
                self.media.forget_uploads(&reused).await;
                let out = self.row_params(ctx, caller, row, params, false, &mut Vec::new()).await?;
                self.call(ctx, caller, v12_action, out).await
            }
            other => other,
        }
    }

    /// A row's v12 params: listed ones renamed and converted, the rest under the profile's prefix,
    /// then the row's defaults. `reused` collects remembered uploads a node list used.
    async fn row_params<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        row: &super::mapping::ActionRow,
        params: &Map<String, Value>,
        reuse: bool,
        reused: &mut Vec<String>,
    ) -> Result<Map<String, Value>, ActionError> {
        let mut out = Map::new();
        for (key, value) in params {
            match row.params.get(key) {
                Some(spec) if spec.name.is_empty() => {}
                Some(spec) if spec.kind == Kind::Nodes => {
                    let (nodes, uploaded) = self.nodes_to_v12(ctx, caller, key, value, reuse).await?;
                    reused.extend(uploaded.reused);
                    out.insert(spec.name.clone(), nodes);
                }
                Some(spec) => {
                    out.insert(spec.name.clone(), self.param_to_v12(key, spec.kind, value).await?);
                }
                None => {
                    out.insert(ctx.maps.profile.prefixed(key), value.clone());
                }
            }
        }
        for (key, value) in &row.defaults {
            out.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Ok(out)
    }

    async fn param_to_v12(&self, key: &str, kind: Kind, value: &Value) -> Result<Value, ActionError> {
        let bad = |reason: String| ActionError::BadParam { param: key.to_owned(), reason };
        Ok(match kind {
            Kind::Id => {
                let n = lenient_i64(value).ok_or_else(|| bad(format!("{value} is not an integer id")))?;
                Value::String(self.ids.to_v12(n).await?)
            }
            Kind::Message => {
                let n = lenient_i64(value).ok_or_else(|| bad(format!("{value} is not a message_id")))?;
                Value::String(self.ids.message_to_v12(n).await?.key.message_id.into_string())
            }
            Kind::Int => lenient_i64(value).ok_or_else(|| bad(format!("{value} is not an integer")))?.into(),
            Kind::Bool => lenient_bool(value).ok_or_else(|| bad(format!("{value} is not a boolean")))?.into(),
            Kind::Str => Value::String(value_as_text(value).unwrap_or_default()),
            Kind::Plain | Kind::Float | Kind::File | Kind::Nodes => value.clone(),
        })
    }

    async fn response_to_v11(
        &self,
        ctx: ActionContext<'_>,
        row: &ResponseRow,
        data: Value,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        if row.null {
            return Ok(Value::Null);
        }
        if row.list {
            let Value::Array(items) = data else { return Ok(Value::Array(Vec::new())) };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(self.object_to_v11(ctx, row, item, params).await?);
            }
            return Ok(Value::Array(out));
        }
        self.object_to_v11(ctx, row, data, params).await
    }

    async fn object_to_v11(
        &self,
        ctx: ActionContext<'_>,
        row: &ResponseRow,
        data: Value,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let maps = ctx.maps;
        let Value::Object(mut obj) = data else { return Ok(data) };
        for path in &row.ids {
            self.nested_ids_to_v11(&mut obj, path).await?;
        }
        // A message named in the answer is stored in the chat the params name, sent by the
        // entry's sender (or the bot, for what it sent itself).
        let sender = obj.get("sender_id").and_then(id_string);
        let mut out = Map::new();
        let mut extras = Vec::new();
        for (key, value) in obj {
            match row.fields.get(&key) {
                Some(spec) => {
                    let v = match (spec.kind, id_string(&value)) {
                        (Kind::Id, Some(id)) => self.ids.to_v11(&id).await?.into(),
                        (Kind::Message, Some(id)) => {
                            self.answer_message_id(ctx, params, sender.as_deref(), &id).await?
                        }
                        _ => value,
                    };
                    out.insert(spec.name.clone(), v);
                }
                None if row.exact => {}
                None => extras.push((maps.profile.strip(&key).to_owned(), value)),
            }
        }
        for (key, value) in extras {
            out.entry(key).or_insert(value);
        }
        for key in &row.from_params {
            if let Some(v) = params.get(key) {
                out.insert(key.clone(), lenient_i64(v).map(Value::from).unwrap_or_else(|| v.clone()));
            }
        }
        for (key, value) in &row.defaults {
            out.entry(key.clone()).or_insert_with(|| value.clone());
        }
        Ok(Value::Object(out))
    }

    /// A `handler` row's logic; `target` is the row's, for the handlers that send.
    pub(super) async fn run_handler<C: V12Caller>(
        &self,
        handler: Handler,
        target: Option<SendTarget>,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        match handler {
            Handler::SendMessage => self.send_message(name, target, ctx, caller, params).await,
            Handler::DeleteMessage => self.delete_message(ctx, caller, params).await,
            Handler::GetStatus => self.get_status(ctx, caller).await,
            Handler::GetVersionInfo => Ok(version_info(ctx.backend)),
            Handler::CanSend => Ok(json!({ "yes": true })),
            Handler::GetSupportedActions => Ok(supported_actions(ctx).into()),
            Handler::QuickOperation => self.handle_quick_operation(ctx, caller, params).await,
            Handler::GetMsg => self.get_msg(ctx, caller, params).await,
            Handler::GetFile => self.get_image(ctx, caller, params).await,
            Handler::DownloadFile => self.download_file(ctx, caller, params).await,
            Handler::UploadFile => self.upload_chat_file(target, ctx, caller, params).await,
            Handler::GetFileUrl => self.get_file_url(ctx, caller, params).await,
            Handler::AnswerRequest => self.answer_request(name, ctx, caller, params).await,
            Handler::GetForwardMsg => self.get_forward_msg(name, ctx, caller, params).await,
            Handler::MessageHistory => self.message_history(name, ctx, caller, params).await,
            Handler::GetUpdates => Err(ActionError::LongPollingOff),
            Handler::Acknowledge => {
                tracing::debug!(action = name, "nothing to do on this bridge");
                Ok(Value::Null)
            }
        }
    }

    /// Where a send goes: the chat its row names (`target` in actions.toml), else go-cqhttp's
    /// routing for `send_msg`: to a group when `message_type` is `group`, to a user when it is
    /// `private` or `user_id` is set, else to `group_id`.
    pub(super) fn send_target(target: Option<SendTarget>, params: &Map<String, Value>) -> Result<Target, ActionError> {
        let channel = || Ok(Target::Channel(required_str(params, "guild_id")?, required_str(params, "channel_id")?));
        match target {
            Some(SendTarget::Private) => Ok(Target::Private(required_i64(params, "user_id")?)),
            Some(SendTarget::Group) => Ok(Target::Group(required_i64(params, "group_id")?)),
            Some(SendTarget::Channel) => channel(),
            None => match params.get("message_type").and_then(Value::as_str) {
                Some("group") => Ok(Target::Group(required_i64(params, "group_id")?)),
                Some("private") => Ok(Target::Private(required_i64(params, "user_id")?)),
                Some("guild") => channel(),
                _ => match (nonzero_i64(params, "user_id")?, nonzero_i64(params, "group_id")?) {
                    (Some(user), _) => Ok(Target::Private(user)),
                    (None, Some(group)) => Ok(Target::Group(group)),
                    (None, None) => Err(ActionError::BadParam {
                        param: "message_type".into(),
                        reason: "say `private` or `group`, or give user_id or group_id".into(),
                    }),
                },
            },
        }
    }

    async fn send_message<C: V12Caller>(
        &self,
        name: &str,
        target: Option<SendTarget>,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let target = Self::send_target(target, params)?;
        let message = params
            .get("message")
            .ok_or_else(|| ActionError::BadParam { param: "message".into(), reason: "is required".into() })?;
        let auto_escape = params.get("auto_escape").and_then(lenient_bool).unwrap_or(false);
        let original = read_v11_message(message, auto_escape)?;
        if original.is_empty() {
            return Err(ActionError::EmptyMessage);
        }
        // The original is kept only for a retry, which only a message with media can need.
        let has_media =
            original.iter().any(|s| super::media::MEDIA_TYPES.contains(&s.kind.as_str()) || s.kind == "node");
        let (mut sent, original) = if has_media { (original.clone(), original) } else { (original, Vec::new()) };
        let uploaded = self.upload_media(ctx, caller, &mut sent, true).await?;
        let (data, detail_type, group) = match self.send_segments(ctx, caller, &target, sent.clone()).await {
            // A remembered upload the backend no longer knows: forget it and upload afresh, once.
            Err(ActionError::Backend { .. }) if !uploaded.reused.is_empty() => {
                tracing::info!(action = name, "send failed with reused file_ids; uploading again");
                self.media.forget_uploads(&uploaded.reused).await;
                sent = original;
                self.upload_media(ctx, caller, &mut sent, false).await?;
                self.send_segments(ctx, caller, &target, sent.clone()).await?
            }
            other => other?,
        };
        self.remember_sent(ctx, name, data, detail_type, group, sent).await
    }

    /// Sends v11 segments (media already uploaded) to a target; the backend's answer, the
    /// target's v12 detail_type and group.
    pub(super) async fn send_segments<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        target: &Target,
        v11_segments: Vec<Segment>,
    ) -> Result<(Value, &'static str, Option<String>), ActionError> {
        let segments = self.segments_to_v12(ctx.maps, v11_segments).await?;
        if segments.is_empty() {
            return Err(ActionError::EmptyMessage);
        }
        let mut v12 = Map::new();
        let (detail_type, group) = match &target {
            Target::Private(user) => {
                v12.insert("detail_type".into(), "private".into());
                v12.insert("user_id".into(), self.ids.to_v12(*user).await?.into());
                ("private", None)
            }
            Target::Group(group) => {
                let group = self.ids.to_v12(*group).await?;
                v12.insert("detail_type".into(), "group".into());
                v12.insert("group_id".into(), group.clone().into());
                ("group", Some(group))
            }
            Target::Channel(guild, channel) => {
                v12.insert("detail_type".into(), "channel".into());
                v12.insert("guild_id".into(), guild.clone().into());
                v12.insert("channel_id".into(), channel.clone().into());
                ("channel", None)
            }
        };
        // The segments go apart: a caller that writes the request's JSON itself writes them as
        // they are ([`V12Caller::call_with_message`]).
        let sent = caller.call_with_message(Self::request(ctx, "send_message", v12), segments).await?;
        let data = Self::data_of("send_message", sent)?;
        Ok((data, detail_type, group))
    }

    /// Answers a send with the v11 message_id, and stores what was sent (for `get_msg`).
    async fn remember_sent(
        &self,
        ctx: ActionContext<'_>,
        name: &str,
        data: Value,
        detail_type: &str,
        group: Option<String>,
        sent: Vec<Segment>,
    ) -> Result<Value, ActionError> {
        let Some(message_id) = data.get("message_id").and_then(id_string).filter(|id| !id.is_empty()) else {
            // v12 requires the id. Without one the bot could not reply to, recall or look up what
            // it sent, and a made-up 0 would read as success: say the backend's answer was broken.
            let reason = match data.get("message_id") {
                None => format!("no `message_id` in {data}; the message may have been sent"),
                Some(v) => format!("`message_id` {v} is no id; the message may have been sent"),
            };
            tracing::warn!(action = name, answer = %data, "the backend's send_message answer has no usable message_id");
            return Err(ActionError::BadAnswer { action: "send_message".into(), reason });
        };
        if detail_type == "channel" {
            return Ok(json!({ "message_id": message_id }));
        }
        // The bot is the sender of what it sent.
        let scope = Scope {
            maps: ctx.maps,
            account: ctx.account,
            detail_type,
            group_id: group.as_deref(),
            user_id: Some(&ctx.account.self_id.user_id),
        };
        let mut record = scope.record(&message_id);
        let time = answer_time(name, &data);
        // Kept as go-cqhttp reports a message back, not as the bot wrote it (no null options).
        let segments = sent.into_iter().map(as_reported).collect();
        record.content =
            Some(StoredMessage { time, segments, sender_id: ctx.account.v11_id, sender_name: String::new() });
        let id = self.ids.message_to_v11(&record).await?;
        Ok(json!({ "message_id": id }))
    }

    /// go-cqhttp's `get_msg`, answered from what the bridge remembers of the message (received
    /// events and the bot's own sends), in the asking endpoint's format.
    async fn get_msg<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let n = required_i64(params, "message_id")?;
        let record = self.ids.message_to_v12(n).await?;
        let mut content = match (record.content.clone(), &ctx.maps.get_message) {
            (Some(content), _) => content,
            // The bridge knows the id but not the text: a backend that can look messages up is asked.
            (None, Some(action)) => self.message_from_backend(ctx, caller, action, &record).await?,
            (None, None) => return Err(ActionError::Id(IdError::UnknownMessage(n))),
        };
        // go-cqhttp gives every media segment a `url`; the bot's own sends were stored without.
        self.media_urls(ctx, caller, &mut content.segments).await;
        let message = match ctx.post_format {
            v11::PostFormat::String => Value::String(render_cq(&content.segments)),
            v11::PostFormat::Array => Segment::list_into_value(content.segments),
        };
        let group = record.detail_type == "group";
        let mut data = Map::new();
        data.insert("message_id".into(), n.into());
        data.insert("real_id".into(), n.into());
        data.insert("message_seq".into(), n.into());
        data.insert("message_type".into(), if group { "group" } else { "private" }.into());
        data.insert("group".into(), group.into());
        if let (true, Some(g)) = (group, &record.group_id) {
            data.insert("group_id".into(), self.ids.to_v11(g).await?.into());
        }
        data.insert("sender".into(), json!({ "user_id": content.sender_id, "nickname": content.sender_name }));
        data.insert("time".into(), content.time.into());
        data.insert("message".into(), message);
        Ok(Value::Object(data))
    }

    /// A message as the backend's get-message extension gives it (a message event's fields).
    async fn message_from_backend<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        action: &str,
        record: &super::ids::MessageRecord,
    ) -> Result<StoredMessage, ActionError> {
        let mut p = Map::new();
        p.insert("message_id".into(), record.key.message_id.as_str().into());
        let data = self.call(ctx, caller, action, p).await?;
        if !matches!(data.get("message"), Some(Value::Array(_) | Value::String(_) | Value::Object(_))) {
            // Not a message the bot asked for, but an empty one it would take for the real thing.
            tracing::warn!(action, answer = %data, "the backend's message lookup answer has no message");
            return Err(ActionError::BadAnswer {
                action: action.to_owned(),
                reason: format!("no `message` in {data}"),
            });
        }
        let sender =
            data.get("user_id").and_then(id_string).or_else(|| record.user_id.as_ref().map(ToString::to_string));
        let scope = Scope {
            account: ctx.account,
            detail_type: &record.detail_type,
            group_id: record.group_id.as_deref(),
            user_id: sender.as_deref(),
            maps: ctx.maps,
        };
        let segments = self.segments_to_v11(&scope, data.get("message")).await?;
        let sender_id = match &sender {
            Some(s) => self.ids.to_v11(s).await?,
            None => 0,
        };
        let name = ["user_name", "nickname"].iter().find_map(|k| data.get(*k).and_then(Value::as_str));
        Ok(StoredMessage {
            time: answer_time(action, &data),
            segments,
            sender_id,
            sender_name: name.unwrap_or_default().to_owned(),
        })
    }

    async fn delete_message<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let raw = params
            .get("message_id")
            .ok_or_else(|| ActionError::BadParam { param: "message_id".into(), reason: "is required".into() })?;
        let v12_id = match lenient_i64(raw) {
            Some(n) => self.ids.message_to_v12(n).await?.key.message_id,
            // go-cqhttp's guild message ids are strings; they pass through.
            None if raw.is_string() => required_str(params, "message_id")?.into(),
            None => {
                return Err(ActionError::BadParam {
                    param: "message_id".into(),
                    reason: format!("{raw} is not a message_id"),
                })
            }
        };
        let mut p = Map::new();
        p.insert("message_id".into(), v12_id.as_str().into());
        self.call(ctx, caller, "delete_message", p).await?;
        Ok(Value::Null)
    }

    async fn get_status<C: V12Caller>(&self, ctx: ActionContext<'_>, caller: &C) -> Result<Value, ActionError> {
        let (online, good) = match self.call(ctx, caller, "get_status", Map::new()).await {
            Ok(status) => {
                let online = super::event::status_bots(&status)
                    .into_iter()
                    .find(|(s, _)| s.user_id == ctx.account.self_id.user_id)
                    .map(|(_, online)| online)
                    .unwrap_or(false);
                (online, status.get("good").and_then(Value::as_bool).unwrap_or(true))
            }
            // go-cqhttp's get_status never fails: an unreachable backend is "offline".
            Err(error) => {
                tracing::debug!(%error, "get_status: backend unreachable");
                (false, false)
            }
        };
        Ok(super::event::v11_status(online, good, super::event::empty_stat()))
    }
}

/// `get_supported_actions`, honestly: what the bridge answers itself, and every mapped action
/// whose backend call the backend lists (all of them when it gave no list).
fn supported_actions(ctx: ActionContext<'_>) -> Vec<String> {
    ctx.maps
        .actions
        .iter()
        .filter(|(_, row)| match (&row.v12, &ctx.backend.supported) {
            (Some(v12), Some(list)) => list.contains(v12),
            _ => true,
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// `get_version_info`, answered by the bridge itself in go-cqhttp's shape.
pub fn version_info(backend: &BackendInfo) -> Value {
    json!({
        "app_name": "onebot-bridge",
        "app_version": env!("CARGO_PKG_VERSION"),
        "app_full_name": format!("onebot-bridge v{} (OneBot v11 over {} {})", env!("CARGO_PKG_VERSION"), backend.implementation, backend.version),
        "protocol_version": "v11",
        "protocol_name": 0,
        "coolq_edition": "pro",
        "coolq_directory": "",
        "go_cqhttp": true,
        "plugin_version": "4.15.0",
        "plugin_build_number": 99,
        "plugin_build_configuration": "release",
        "runtime_version": "rust",
        "runtime_os": std::env::consts::OS,
        "version": env!("CARGO_PKG_VERSION"),
        "backend": {
            "impl": backend.implementation,
            "version": backend.version,
            "onebot_version": backend.onebot_version,
        },
    })
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::json;

    use super::*;
    use crate::core::testing::{account, translator, Recorder};

    /// Every plain rename in actions.toml: the v12 action, every listed param under its v12
    /// name (ids as strings), and every listed response field under its v11 name.
    #[test]
    fn every_rename_row_of_every_profile_translates_both_ways() {
        let t = translator();
        let me = account(&t);
        for (profile, maps) in t.maps.iter() {
            let backend = BackendInfo { profile: profile.clone(), ..Default::default() };
            let ctx = t.context(&me, &backend, Default::default());
            let renames: Vec<_> = maps.actions.iter().filter(|(_, r)| r.v12.is_some()).collect();
            assert!(renames.len() >= 10, "{profile}");
            check_renames(&t, ctx, renames);
        }
    }

    fn check_renames(
        t: &Translator<crate::core::MemoryIdStore>,
        ctx: ActionContext<'_>,
        renames: Vec<(&String, &crate::core::mapping::ActionRow)>,
    ) {
        let profile = &ctx.maps.profile.name;
        for (name, row) in renames {
            let who = format!("{profile}/{name}");
            let rec = Recorder::default();
            let mut v12_obj = Map::new();
            for (v12, spec) in &row.response.fields {
                v12_obj.insert(v12.clone(), if spec.kind == Kind::Id { json!("77") } else { json!("v") });
            }
            *rec.data.lock().unwrap() =
                if row.response.list { json!([v12_obj.clone()]) } else { Value::Object(v12_obj.clone()) };
            // A sample v11 value per kind, and what it must become in v12 (a message the bridge knows).
            let record = crate::core::ids::MessageRecord {
                key: crate::core::ids::MessageKey {
                    self_id: ctx.account.self_id.user_id.as_str().into(),
                    message_id: "m-1".into(),
                },
                detail_type: "group".into(),
                group_id: None,
                user_id: None,
                content: None,
            };
            let known = block_on(t.ids.message_to_v11(&record)).unwrap();
            let sample = |kind: Kind| match kind {
                Kind::Id => (json!(123), json!("123")),
                Kind::Message => (json!(known), json!("m-1")),
                Kind::Int => (json!("60"), json!(60)),
                Kind::Bool => (json!("true"), json!(true)),
                Kind::Nodes => (
                    json!([{"type": "node", "data": {"id": known}}]),
                    json!([{"type": ctx.maps.segment_out_name("node"), "data": {"message_id": "m-1"}}]),
                ),
                _ => (json!("p"), json!("p")),
            };
            let mut params = Map::new();
            for (v11, spec) in &row.params {
                params.insert(v11.clone(), sample(spec.kind).0);
            }
            let req = v11::Request { action: name.clone(), params, echo: None };
            let answer = block_on(t.handle_action(ctx, &rec, req));
            assert!(answer.is_ok(), "{who}: {answer:?}");
            let sent = rec.requests.lock().unwrap().pop().unwrap();
            assert_eq!(Some(sent.action.as_str()), row.v12.as_deref());
            for (v11, spec) in &row.params {
                match (spec.name.as_str(), spec.kind) {
                    ("", _) => assert!(!sent.params.contains_key(v11.as_str()), "{who}: {v11} must be dropped"),
                    (v12, kind) => assert_eq!(sent.params[v12], sample(kind).1, "{who}.{v11}"),
                }
            }
            if row.response.null {
                assert_eq!(answer.data, Value::Null);
                continue;
            }
            let obj = if row.response.list { answer.data[0].clone() } else { answer.data.clone() };
            for (v12, spec) in &row.response.fields {
                if spec.kind == Kind::Message {
                    // A v11 message id the bot can use again.
                    let n = obj[&spec.name].as_i64().unwrap_or_else(|| panic!("{who}: {v12} is no message id"));
                    assert_eq!(block_on(t.ids.message_to_v12(n)).unwrap().key.message_id, "v", "{who}: {v12}");
                    continue;
                }
                let want = if spec.kind == Kind::Id { json!(77) } else { json!("v") };
                assert_eq!(obj[&spec.name], want, "{who}: {v12} → {}", spec.name);
            }
            for (k, v) in &row.response.defaults {
                assert!(
                    obj.get(k).is_some_and(|got| got == v || row.response.fields.values().any(|s| &s.name == k)),
                    "{who}: default {k}={v}"
                );
            }
        }
    }

    #[test]
    fn handlers_answer_without_the_backend_when_they_can() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo {
            implementation: "walle-q".into(),
            version: "0.1".into(),
            onebot_version: "12".into(),
            ..Default::default()
        };
        let ctx = t.context(&me, &backend, Default::default());
        let rec = Recorder::default();
        let call = |action: &str| {
            block_on(t.handle_action(ctx, &rec, v11::Request { action: action.into(), ..Default::default() }))
        };
        assert_eq!(call("can_send_image").data, json!({"yes": true}));
        assert_eq!(call("can_send_record_async").data, json!({"yes": true}));
        let version = call("get_version_info").data;
        assert_eq!(
            (version["app_name"].as_str(), version["backend"]["impl"].as_str()),
            (Some("onebot-bridge"), Some("walle-q"))
        );
        let actions = call("get_supported_actions").data;
        assert!(actions.as_array().unwrap().contains(&json!("send_msg")));
        assert_eq!(call("send_like").retcode, 404, "not in the tables: go-cqhttp's unknown action");
        assert!(rec.requests.lock().unwrap().is_empty());
    }

    #[test]
    fn every_failure_names_its_side() {
        let maps = Mappings::embedded().unwrap();
        let cases: Vec<(ActionError, &str)> = vec![
            (ActionError::NotFound, "API_NOT_FOUND"),
            (ActionError::LongPollingOff, "LONG_POLLING_DISABLED"),
            (
                ActionError::Unsupported {
                    action: "a".into(),
                    profile: "p".into(),
                    implementation: "i".into(),
                    reason: "r".into(),
                },
                "BRIDGE_UNSUPPORTED_BY_BACKEND",
            ),
            (ActionError::BadParam { param: "x".into(), reason: "y".into() }, "BAD_PARAM"),
            (ActionError::EmptyMessage, "EMPTY_MSG_ERROR"),
            (ActionError::Id(IdError::UnknownMessage(1)), "MSG_NOT_FOUND"),
            (ActionError::Id(IdError::UnknownSurrogate(1)), "BRIDGE_UNKNOWN_ID"),
            (ActionError::Id(IdError::Store("disk".into())), "BRIDGE_STORE_ERROR"),
            (ActionError::Call(CallError::Timeout(5)), "BACKEND_TIMEOUT"),
            (ActionError::Call(CallError::Unavailable("x".into())), "BACKEND_UNAVAILABLE"),
            (ActionError::Call(CallError::Link("x".into())), "BACKEND_LINK_ERROR"),
            (ActionError::BadAnswer { action: "a".into(), reason: "r".into() }, "BACKEND_BAD_ANSWER"),
            (ActionError::Backend { action: "a".into(), retcode: 10003, message: "no".into() }, "BACKEND_BAD_PARAM"),
            (ActionError::Backend { action: "a".into(), retcode: 90001, message: String::new() }, "BACKEND_ERROR"),
        ];
        for (error, msg) in cases {
            let r = error.to_response(&maps);
            assert_eq!((r.status, r.msg.as_deref()), ("failed", Some(msg)));
            assert!(!r.wording.unwrap_or_default().is_empty(), "{msg} needs a wording");
            assert_eq!(r.data, Value::Null);
        }
    }

    #[test]
    fn lenient_values_read_like_go_cqhttp() {
        assert_eq!(lenient_bool(&json!("yes")), Some(true));
        assert_eq!(lenient_bool(&json!("0")), Some(false));
        assert_eq!(lenient_bool(&json!(2)), Some(true));
        assert_eq!(lenient_bool(&json!("maybe")), None);
        assert_eq!(lenient_i64(&json!(" 42 ")), Some(42));
        assert_eq!(lenient_i64(&json!(42.0)), Some(42));
        assert_eq!(lenient_i64(&json!(42.5)), None);
    }

    /// Ids that are not exactly an integer in i64 are refused naming the param, never clamped
    /// to i64::MAX and sent on.
    #[test]
    fn out_of_range_ids_are_bad_params_not_clamped() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, Default::default());
        let two_pow_63: Value = serde_json::from_str("9223372036854775808").unwrap();
        let ten_pow_30: Value = serde_json::from_str("1000000000000000000000000000000").unwrap();
        let bad = [
            json!(1e300),
            ten_pow_30,
            two_pow_63,
            json!(u64::MAX),
            json!(1.5),
            json!(true),
            json!("1e3"),
            json!(-1e300),
        ];
        for (action, param) in [
            ("send_group_msg", "group_id"),
            ("send_msg", "group_id"),
            ("send_msg", "user_id"),
            ("get_stranger_info", "user_id"),
        ] {
            for v in &bad {
                let rec = Recorder::default();
                let params = json!({param: v, "message": "hi"});
                let req =
                    v11::Request { action: action.into(), params: params.as_object().unwrap().clone(), echo: None };
                let answer = block_on(t.handle_action(ctx, &rec, req));
                assert_eq!(answer.msg.as_deref(), Some("BAD_PARAM"), "{action} {param}={v}: {answer:?}");
                assert!(answer.wording.as_deref().unwrap_or("").contains(param), "{action} {param}={v}: {answer:?}");
                assert!(rec.requests.lock().unwrap().is_empty(), "{action} {param}={v} reached the backend");
            }
        }
        // What go-cqhttp's bots do send: integers, exact integer floats, decimal text.
        for v in [json!(123), json!(123.0), json!("123"), json!(" 123 "), json!(-123.0)] {
            let rec = Recorder::default();
            *rec.data.lock().unwrap() = json!({"message_id": "m", "time": 1});
            let params = json!({"group_id": v, "message": "hi"});
            let req = v11::Request {
                action: "send_group_msg".into(),
                params: params.as_object().unwrap().clone(),
                echo: None,
            };
            assert!(block_on(t.handle_action(ctx, &rec, req)).is_ok(), "{v}");
            let sent = rec.requests.lock().unwrap().pop().unwrap();
            let want = if v.as_f64().is_some_and(|f| f < 0.0) { "-123" } else { "123" };
            assert_eq!(sent.params["group_id"], json!(want), "{v}");
        }
        assert_eq!(lenient_i64(&json!(9007199254740992.0)), Some(1 << 53), "2^53 is still exact");
        assert_eq!(lenient_i64(&json!(18014398509481984.0)), None, "2^54 as a float may be a rounded id");
        assert_eq!(lenient_i64(&json!("9223372036854775808")), None);
        assert_eq!(lenient_i64(&json!(i64::MIN)), Some(i64::MIN));
    }

    #[test]
    fn get_login_info_is_exactly_go_cqhttps_shape() {
        let t = translator();
        let me = account(&t);
        for (profile, _) in t.maps.iter() {
            let backend = BackendInfo { profile: profile.clone(), ..Default::default() };
            let rec = Recorder::default();
            *rec.data.lock().unwrap() =
                json!({"user_id": "10001", "user_name": "bot", "user_displayname": "", "qq.level": 3});
            let req = v11::Request { action: "get_login_info".into(), ..Default::default() };
            let answer = block_on(t.handle_action(t.context(&me, &backend, Default::default()), &rec, req));
            assert_eq!(answer.data, json!({"user_id": 10001, "nickname": "bot"}), "{profile}");
        }
    }

    /// A `self_id` param (as aiocqhttp sends on every call) picks nothing on a connection that
    /// serves one account: it never reaches the backend as `qq.self_id`.
    #[test]
    fn a_self_id_param_is_consumed_not_passed_on() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, Default::default());
        for self_id in [json!(10001), json!("10001"), json!(null)] {
            let rec = Recorder::default();
            let params = json!({"self_id": self_id, "user_id": 5, "no_cache": true});
            let req = v11::Request {
                action: "get_stranger_info".into(),
                params: params.as_object().unwrap().clone(),
                echo: None,
            };
            assert!(block_on(t.handle_action(ctx, &rec, req)).is_ok(), "{self_id}");
            let sent = rec.requests.lock().unwrap().pop().unwrap();
            assert_eq!(sent.params.keys().collect::<Vec<_>>(), ["qq.no_cache", "user_id"], "{self_id}");
        }
        let rec = Recorder::default();
        let params = json!({"self_id": 20002, "user_id": 5});
        let req = v11::Request {
            action: "get_stranger_info".into(),
            params: params.as_object().unwrap().clone(),
            echo: None,
        };
        let answer = block_on(t.handle_action(ctx, &rec, req));
        assert_eq!(answer.msg.as_deref(), Some("BAD_PARAM"), "another account: {answer:?}");
        assert!(rec.requests.lock().unwrap().is_empty());
    }

    /// get_msg of the bot's own image: go-cqhttp's `{file, url}`, never the framework's null options.
    #[test]
    fn get_msg_of_a_sent_image_has_file_and_url_and_no_nulls() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo::default();
        let rec = Recorder::default();
        *rec.data.lock().unwrap() = json!({"message_id": "m-1", "time": 5, "url": "http://127.0.0.1/f/abc"});
        // As nonebot-adapter-onebot writes MessageSegment.image(file).
        let image = json!({"type": "image", "data": {"file": "abc", "type": null, "cache": true, "proxy": true, "timeout": null}});
        let send = v11::Request {
            action: "send_group_msg".into(),
            params: json!({"group_id": 9, "message": [{"type": "text", "data": {"text": "look"}}, image]})
                .as_object()
                .unwrap()
                .clone(),
            echo: None,
        };
        let ctx = t.context(&me, &backend, Default::default());
        let sent = block_on(t.handle_action(ctx, &rec, send));
        assert!(sent.is_ok(), "{sent:?}");
        let get = v11::Request {
            action: "get_msg".into(),
            params: json!({"message_id": sent.data["message_id"]}).as_object().unwrap().clone(),
            echo: None,
        };
        let array = t.context(&me, &backend, v11::PostFormat::Array);
        let got = block_on(t.handle_action(array, &rec, get.clone()));
        assert_eq!(
            got.data["message"],
            json!([{"type": "text", "data": {"text": "look"}},
                   {"type": "image", "data": {"file": "abc", "url": "http://127.0.0.1/f/abc"}}]),
            "{got:?}"
        );
        let string = block_on(t.handle_action(ctx, &rec, get));
        assert_eq!(string.data["message"], json!("look[CQ:image,file=abc,url=http://127.0.0.1/f/abc]"));
    }

    /// A message looked up through the backend's extension whose answer has no message fails as
    /// the backend's, instead of answering an empty message from sender 0.
    #[test]
    fn a_message_lookup_answer_without_a_message_is_a_backend_failure() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo { profile: "walle-q".into(), ..Default::default() };
        let ctx = t.context(&me, &backend, Default::default());
        let scope = Scope { account: &me, detail_type: "group", group_id: Some("9"), user_id: None, maps: ctx.maps };
        let n = block_on(t.ids.message_to_v11(&scope.record("old-1"))).unwrap();
        let get = v11::Request {
            action: "get_msg".into(),
            params: json!({"message_id": n}).as_object().unwrap().clone(),
            echo: None,
        };
        for data in [json!({"user_id": "5", "time": 1}), json!({"message": null}), json!({"message": 7})] {
            let rec = Recorder::default();
            *rec.data.lock().unwrap() = data.clone();
            let answer = block_on(t.handle_action(ctx, &rec, get.clone()));
            assert_eq!(answer.msg.as_deref(), Some("BACKEND_BAD_ANSWER"), "{data}: {answer:?}");
            assert_eq!(rec.requests.lock().unwrap()[0].action, "get_message");
        }
        let rec = Recorder::default();
        *rec.data.lock().unwrap() = json!({"message": [{"type": "text", "data": {"text": "old"}}], "user_id": "5"});
        let answer = block_on(t.handle_action(ctx, &rec, get));
        assert_eq!(answer.data["message"], json!("old"), "{answer:?}");
    }

    /// A send the backend answers "ok" without a usable `message_id` is the backend's failure,
    /// not a success with message_id 0.
    #[test]
    fn a_send_answer_without_a_message_id_is_a_backend_failure() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, Default::default());
        for data in [
            json!({"message_id": {"id": 1}, "time": 1}),
            json!({"message_id": true}),
            json!({"message_id": ""}),
            json!({"message_id": null}),
            json!({"time": 1}),
            json!("sent"),
        ] {
            for (action, params) in [
                ("send_private_msg", json!({"user_id": 5, "message": "hi"})),
                ("send_guild_channel_msg", json!({"guild_id": "g", "channel_id": "c", "message": "hi"})),
            ] {
                let rec = Recorder::default();
                *rec.data.lock().unwrap() = data.clone();
                let req =
                    v11::Request { action: action.into(), params: params.as_object().unwrap().clone(), echo: None };
                let answer = block_on(t.handle_action(ctx, &rec, req));
                assert_eq!((answer.status, answer.retcode), ("failed", 100), "{action} {data}: {answer:?}");
                assert_eq!(answer.msg.as_deref(), Some("BACKEND_BAD_ANSWER"), "{action} {data}");
                assert!(answer.wording.unwrap_or_default().contains("message_id"), "{action} {data}");
                assert_eq!(rec.requests.lock().unwrap().len(), 1, "the send itself went out");
            }
        }
    }

    #[test]
    fn a_delete_msg_id_that_is_no_integer_is_refused_not_passed_on() {
        let t = translator();
        let me = account(&t);
        let backend = BackendInfo::default();
        let rec = Recorder::default();
        let req = v11::Request {
            action: "delete_msg".into(),
            params: json!({"message_id": 1e300}).as_object().unwrap().clone(),
            echo: None,
        };
        let answer = block_on(t.handle_action(t.context(&me, &backend, Default::default()), &rec, req));
        assert_eq!(answer.msg.as_deref(), Some("BAD_PARAM"), "{answer:?}");
        assert!(rec.requests.lock().unwrap().is_empty());
    }

    proptest::proptest! {
        /// Whatever a bot sends, it gets an answer and the bridge does not panic.
        #[test]
        fn no_panic_on_arbitrary_actions(
            action in "(send_msg|send_private_msg|send_group_msg|delete_msg|get_group_info|get_stranger_info|x)(_async)?",
            message in ".{0,40}",
            user in proptest::option::of(proptest::prop_oneof![
                proptest::strategy::Just(json!(1)),
                proptest::strategy::Strategy::prop_map(".{0,6}", Value::from),
            ]),
            mtype in proptest::option::of("(group|private|guild|)"),
        ) {
            let t = translator();
            let me = account(&t);
            let backend = BackendInfo::default();
            let rec = Recorder::default();
            let mut params = json!({"message": message, "group_id": 5, "message_id": message});
            if let Some(u) = user { params["user_id"] = u; }
            if let Some(m) = mtype { params["message_type"] = json!(m); }
            let req = v11::Request { action, params: params.as_object().unwrap().clone(), echo: Some(json!(1)) };
            let answer = block_on(t.handle_action(t.context(&me, &backend, Default::default()), &rec, req));
            proptest::prop_assert!(answer.status == "ok" || answer.msg.is_some());
        }
    }
}
