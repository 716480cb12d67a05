//! v11 actions → v12 actions, and the answers back in go-cqhttp's shapes.
//!
//! Plain renames come from `mappings/actions.toml`; actions with routing or state
//! (`send_msg`, `delete_msg`, `get_status`, …) are the named handlers below. Every failure, from
//! whichever side, becomes a v11 answer in exactly one place, [`ActionError::to_response`]:
//! `msg` says who failed (`BAD_PARAM`, `API_NOT_FOUND`, `MSG_NOT_FOUND` — the bot; `BRIDGE_*` —
//! the bridge; `BACKEND_*` — the v12 implementation) and `wording` says what happened.

use serde_json::{json, Map, Value};

use super::ids::{IdError, IdStore};
use super::mapping::{Handler, Kind, Mappings, ResponseRow};
use super::message::value_as_text;
use super::segment::{lenient_i64, read_v11_message, Scope, SegmentError};
use super::v12::id_string;
use super::{v11, v12, Account, BackendInfo, CallError, Translator, V12Caller};

/// v12 actions that need no `self` (meta actions).
const META_ACTIONS: [&str; 4] = ["get_status", "get_version", "get_supported_actions", "get_latest_events"];

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("unknown action")]
    NotFound,
    #[error("param `{param}`: {reason}")]
    BadParam { param: String, reason: String },
    #[error("the message is empty")]
    EmptyMessage,
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("backend answered retcode {retcode}: {message}")]
    Backend { action: String, retcode: i64, message: String },
}

impl ActionError {
    /// The one place a failure becomes a v11 answer.
    pub fn to_response(&self, maps: &Mappings) -> v11::Response {
        let (retcode, msg): (i64, String) = match self {
            ActionError::NotFound => return v11::Response::not_found(),
            ActionError::BadParam { .. } => (100, "BAD_PARAM".into()),
            ActionError::EmptyMessage => (100, "EMPTY_MSG_ERROR".into()),
            ActionError::Segment(SegmentError::NeedsUpload { .. }) => (100, "BRIDGE_UNSUPPORTED_FILE".into()),
            ActionError::Segment(SegmentError::Id(e)) | ActionError::Id(e) => return id_failure(e),
            ActionError::Segment(_) => (100, "BAD_PARAM".into()),
            ActionError::Call(CallError::Timeout(_)) => (100, "BACKEND_TIMEOUT".into()),
            ActionError::Call(CallError::Unavailable(_)) => (100, "BACKEND_UNAVAILABLE".into()),
            ActionError::Call(CallError::Link(_)) => (100, "BACKEND_LINK_ERROR".into()),
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
}

enum Target {
    Private(i64),
    Group(i64),
    Channel(String, String),
}

fn required_i64(params: &Map<String, Value>, name: &str) -> Result<i64, ActionError> {
    let v =
        params.get(name).ok_or_else(|| ActionError::BadParam { param: name.into(), reason: "is required".into() })?;
    lenient_i64(v).ok_or_else(|| ActionError::BadParam { param: name.into(), reason: format!("{v} is not an integer") })
}

fn nonzero_i64(params: &Map<String, Value>, name: &str) -> Option<i64> {
    params.get(name).and_then(lenient_i64).filter(|n| *n != 0)
}

fn required_str(params: &Map<String, Value>, name: &str) -> Result<String, ActionError> {
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
        req: v11::Request,
    ) -> v11::Response {
        let name = req.action.strip_suffix("_async").unwrap_or(&req.action);
        let result = match self.maps.actions.get(name) {
            None => Err(ActionError::NotFound),
            Some(row) => match row.handler {
                Some(handler) => self.run_handler(handler, name, ctx, caller, &req.params).await,
                None => self.run_rename(name, ctx, caller, &req.params).await,
            },
        };
        match result {
            Ok(data) => v11::Response::ok(data),
            Err(error) => {
                tracing::debug!(action = name, %error, "action failed");
                error.to_response(&self.maps)
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
        let mut req = v12::Request::new(action, params);
        if !META_ACTIONS.contains(&action) {
            req.self_id = Some(ctx.account.self_id.clone());
        }
        let resp = caller.call(req).await?;
        if resp.is_ok() {
            Ok(resp.data)
        } else {
            Err(ActionError::Backend { action: action.to_owned(), retcode: resp.retcode, message: resp.message })
        }
    }

    async fn run_rename<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let row = &self.maps.actions[name];
        let v12_action = row.v12.as_deref().unwrap_or(name);
        let mut out = Map::new();
        for (key, value) in params {
            match row.params.get(key) {
                Some(spec) if spec.name.is_empty() => {}
                Some(spec) => {
                    out.insert(spec.name.clone(), self.param_to_v12(key, spec.kind, value).await?);
                }
                None => {
                    out.insert(self.maps.profile.prefixed(key), value.clone());
                }
            }
        }
        for (key, value) in &row.defaults {
            out.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let data = self.call(ctx, caller, v12_action, out).await?;
        self.response_to_v11(&row.response, data, params).await
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
                Value::String(self.ids.message_to_v12(n).await?.key.message_id)
            }
            Kind::Int => lenient_i64(value).ok_or_else(|| bad(format!("{value} is not an integer")))?.into(),
            Kind::Bool => lenient_bool(value).ok_or_else(|| bad(format!("{value} is not a boolean")))?.into(),
            Kind::Str => Value::String(value_as_text(value).unwrap_or_default()),
            Kind::Plain | Kind::Float | Kind::File => value.clone(),
        })
    }

    async fn response_to_v11(
        &self,
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
                out.push(self.object_to_v11(row, item, params).await?);
            }
            return Ok(Value::Array(out));
        }
        self.object_to_v11(row, data, params).await
    }

    async fn object_to_v11(
        &self,
        row: &ResponseRow,
        data: Value,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let Value::Object(obj) = data else { return Ok(data) };
        let mut out = Map::new();
        let mut extras = Vec::new();
        for (key, value) in obj {
            match row.fields.get(&key) {
                Some(spec) => {
                    let v = match (spec.kind, id_string(&value)) {
                        (Kind::Id, Some(id)) => self.ids.to_v11(&id).await?.into(),
                        _ => value,
                    };
                    out.insert(spec.name.clone(), v);
                }
                None => extras.push((self.maps.profile.strip(&key).to_owned(), value)),
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

    async fn run_handler<C: V12Caller>(
        &self,
        handler: Handler,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        match handler {
            Handler::SendMessage => self.send_message(name, ctx, caller, params).await,
            Handler::DeleteMessage => self.delete_message(ctx, caller, params).await,
            Handler::GetStatus => self.get_status(ctx, caller).await,
            Handler::GetVersionInfo => Ok(version_info(ctx.backend)),
            Handler::CanSend => Ok(json!({ "yes": true })),
            Handler::GetSupportedActions => Ok(self.maps.actions.keys().cloned().collect::<Vec<_>>().into()),
        }
    }

    /// go-cqhttp's routing: `send_msg` goes to a group when `message_type` is `group`, else to a
    /// user when `message_type` is `private` or `user_id` is set, else to `group_id`.
    fn send_target(name: &str, params: &Map<String, Value>) -> Result<Target, ActionError> {
        let channel = || Ok(Target::Channel(required_str(params, "guild_id")?, required_str(params, "channel_id")?));
        match name {
            "send_private_msg" => Ok(Target::Private(required_i64(params, "user_id")?)),
            "send_group_msg" => Ok(Target::Group(required_i64(params, "group_id")?)),
            "send_guild_channel_msg" => channel(),
            _ => match params.get("message_type").and_then(Value::as_str) {
                Some("group") => Ok(Target::Group(required_i64(params, "group_id")?)),
                Some("private") => Ok(Target::Private(required_i64(params, "user_id")?)),
                Some("guild") => channel(),
                _ => match (nonzero_i64(params, "user_id"), nonzero_i64(params, "group_id")) {
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
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let target = Self::send_target(name, params)?;
        let message = params
            .get("message")
            .ok_or_else(|| ActionError::BadParam { param: "message".into(), reason: "is required".into() })?;
        let auto_escape = params.get("auto_escape").and_then(lenient_bool).unwrap_or(false);
        let segments = self.segments_to_v12(read_v11_message(message, auto_escape)?).await?;
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
        v12.insert("message".into(), serde_json::to_value(&segments).unwrap_or_default());
        let data = self.call(ctx, caller, "send_message", v12).await?;
        let message_id = data.get("message_id").and_then(id_string).unwrap_or_default();
        if detail_type == "channel" {
            return Ok(json!({ "message_id": message_id }));
        }
        // The bot is the sender of what it sent.
        let scope = Scope {
            account: ctx.account,
            detail_type,
            group_id: group.as_deref(),
            user_id: Some(&ctx.account.self_id.user_id),
        };
        let id = self.ids.message_to_v11(&scope.record(&message_id)).await?;
        Ok(json!({ "message_id": id }))
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
            None => required_str(params, "message_id")?,
        };
        let mut p = Map::new();
        p.insert("message_id".into(), v12_id.into());
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
        let stat = json!({
            "packet_received": 0, "packet_sent": 0, "packet_lost": 0, "message_received": 0,
            "message_sent": 0, "disconnect_times": 0, "lost_times": 0, "last_message_time": 0,
        });
        Ok(super::event::v11_status(online, good, stat))
    }
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
