//! Quick operations: what a bot asks for in its answer to an event, as the body of its HTTP POST
//! reply or through the hidden action `.handle_quick_operation` (go-cqhttp
//! `CQHandleQuickOperation`, reference §1.3).
//!
//! A quick operation is read against its event (the *context*) into a plan of ordinary v11
//! actions ([`plan`]), and each of them runs through the same tables and handlers as a bot's own
//! call, so ids, messages and failures translate exactly as they do there:
//!
//! | event | field | v11 action it becomes |
//! |---|---|---|
//! | message, private | `reply` (+`auto_escape`) | `send_msg` to `context.user_id` |
//! | message, group | `reply` (+`auto_escape`, `at_sender`) | `send_msg` to `context.group_id` |
//! | message, group | `delete` | `delete_msg` of `context.message_id` |
//! | message, group, not anonymous | `kick` (+`reject_add_request`) | `set_group_kick` |
//! | message, group, not anonymous | `ban` (+`ban_duration`, default 1800 s) | `set_group_ban` |
//! | request, friend | `approve` (`remark` ignored, as go-cqhttp) | `set_friend_add_request` |
//! | request, group | `approve` (+`reason`) | `set_group_add_request` with `context.sub_type` |
//!
//! `at_sender` defaults to [`Options::at_sender_default`](super::Options) (false, as go-cqhttp;
//! the v11 spec says true). Its target is `context.sender.user_id`, else `context.user_id`
//! (aiocqhttp strips `sender` from the context it sends). A string reply gets `[CQ:at,qq=N] `
//! in front; a list (or a single segment, which go-cqhttp would send without the mention) gets
//! an `at` segment first.
//!
//! v12 has no kick, ban or request actions: their rows in `mappings/actions.toml` name the
//! profile's extension actions (`qq.set_group_kick`, …). A backend without them answers 10002,
//! and that step fails with `BACKEND_UNSUPPORTED_ACTION`, logged, never silently skipped.
//! `.handle_quick_operation` answers `OK(null)` whatever its steps did, as go-cqhttp.

use serde_json::{json, Map, Value};

use super::action::{lenient_bool, ActionContext, ActionError};
use super::ids::IdStore;
use super::segment::lenient_i64;
use super::{Translator, V12Caller};

/// go-cqhttp's ban length when `ban_duration` is not given: 30 minutes.
pub const DEFAULT_BAN_SECONDS: i64 = 30 * 60;

/// One step of a quick operation: the operation field it serves and the v11 action it becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `reply`, `delete`, `kick`, `ban` or `approve`.
    pub op: &'static str,
    /// The v11 action, run like a bot's own call.
    pub action: &'static str,
    pub params: Map<String, Value>,
}

fn is_set(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

/// go-cqhttp reads these flags with gjson's `Bool()`: absent or unreadable is false.
fn flag(operation: &Value, key: &str) -> bool {
    operation.get(key).and_then(lenient_bool).unwrap_or(false)
}

/// A field of the event the step needs; its absence fails that step only.
fn context_field(context: &Value, key: &str) -> Result<Value, ActionError> {
    context.get(key).filter(|v| !v.is_null()).cloned().ok_or_else(|| ActionError::BadParam {
        param: format!("context.{key}"),
        reason: "the event has none, and this quick operation needs it".into(),
    })
}

fn params(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Who `at_sender` mentions: `sender.user_id`, else the event's `user_id`.
fn at_target(context: &Value) -> Option<i64> {
    let sender = context.get("sender").and_then(|s| s.get("user_id")).and_then(lenient_i64).filter(|n| *n != 0);
    sender.or_else(|| context.get("user_id").and_then(lenient_i64).filter(|n| *n != 0))
}

/// The reply with the sender mentioned first, and the `auto_escape` to send it with.
fn with_mention(reply: &Value, auto_escape: bool, target: i64) -> (Value, bool) {
    let at = json!({"type": "at", "data": {"qq": target}});
    match reply {
        // Escaped text cannot carry a CQ code: send the mention as a segment before it.
        Value::String(text) if auto_escape => {
            (json!([at, {"type": "text", "data": {"text": format!(" {text}")}}]), false)
        }
        Value::String(text) => (Value::String(format!("[CQ:at,qq={target}] {text}")), false),
        Value::Array(items) => {
            let mut segments = Vec::with_capacity(items.len() + 1);
            segments.push(at);
            segments.extend(items.iter().cloned());
            (Value::Array(segments), false)
        }
        Value::Object(_) => (json!([at, reply]), false),
        // Not a message: send_msg will say so.
        other => (other.clone(), auto_escape),
    }
}

/// A step that cannot run: the operation field it served, and why.
#[derive(Debug)]
pub struct Unplanned {
    pub op: &'static str,
    pub error: ActionError,
}

type Pairs = Vec<(&'static str, Value)>;

/// Reads a quick operation against its event into the v11 actions it asks for, in go-cqhttp's
/// order. A step whose event lacks a field it needs is an error in its place; the other steps
/// still run.
pub fn plan(context: &Value, operation: &Value, at_sender_default: bool) -> Vec<Result<Step, Unplanned>> {
    let mut steps = Vec::new();
    let mut push = |op: &'static str, action: &'static str, pairs: Result<Pairs, ActionError>| {
        steps.push(match pairs {
            Ok(pairs) => Ok(Step { op, action, params: params(pairs) }),
            Err(error) => Err(Unplanned { op, error }),
        });
    };
    match context.get("post_type").and_then(Value::as_str) {
        Some("message") => {
            let message_type = context.get("message_type").and_then(Value::as_str).unwrap_or("");
            let group = message_type == "group";
            let anonymous = is_set(context.get("anonymous"));
            if let Some(reply) = operation.get("reply").filter(|r| !r.is_null()) {
                let auto_escape = flag(operation, "auto_escape");
                let at_sender = operation.get("at_sender").and_then(lenient_bool).unwrap_or(at_sender_default);
                let (message, auto_escape) = match at_target(context) {
                    Some(target) if group && at_sender && !anonymous => with_mention(reply, auto_escape, target),
                    _ => (reply.clone(), auto_escape),
                };
                // go-cqhttp answers only private and group messages (not guild ones).
                let target = match message_type {
                    "group" => Some(("group", "group_id")),
                    "private" => Some(("private", "user_id")),
                    _ => None,
                };
                if let Some((kind, id_key)) = target {
                    let pairs = context_field(context, id_key).map(|id| {
                        vec![
                            ("message_type", Value::from(kind)),
                            (id_key, id),
                            ("message", message),
                            ("auto_escape", Value::from(auto_escape)),
                        ]
                    });
                    push("reply", "send_msg", pairs);
                }
            }
            if group && flag(operation, "delete") {
                push("delete", "delete_msg", context_field(context, "message_id").map(|id| vec![("message_id", id)]));
            }
            let member = |last: (&'static str, Value)| -> Result<Pairs, ActionError> {
                Ok(vec![
                    ("group_id", context_field(context, "group_id")?),
                    ("user_id", context_field(context, "user_id")?),
                    last,
                ])
            };
            if group && !anonymous && flag(operation, "kick") {
                let reject = flag(operation, "reject_add_request");
                push("kick", "set_group_kick", member(("reject_add_request", reject.into())));
            }
            if group && !anonymous && flag(operation, "ban") {
                let duration = match operation.get("ban_duration").filter(|v| !v.is_null()) {
                    Some(v) => lenient_i64(v).unwrap_or(0).max(0),
                    None => DEFAULT_BAN_SECONDS,
                };
                push("ban", "set_group_ban", member(("duration", duration.into())));
            }
        }
        Some("request") if is_set(operation.get("approve")) => {
            let approve = Value::from(flag(operation, "approve"));
            let flag_then = |rest: Pairs| context_field(context, "flag").map(|f| [vec![("flag", f)], rest].concat());
            match context.get("request_type").and_then(Value::as_str) {
                // go-cqhttp ignores `remark`.
                Some("friend") => push("approve", "set_friend_add_request", flag_then(vec![("approve", approve)])),
                Some("group") => {
                    let reason = operation.get("reason").and_then(Value::as_str).unwrap_or("");
                    let sub_type = context.get("sub_type").cloned().unwrap_or_else(|| Value::from(""));
                    let rest = vec![("sub_type", sub_type), ("reason", reason.into()), ("approve", approve)];
                    push("approve", "set_group_add_request", flag_then(rest));
                }
                _ => {}
            }
        }
        // Notices, meta events and `message_sent`: go-cqhttp does nothing for them.
        _ => {}
    }
    steps
}

impl<S: IdStore> Translator<S> {
    /// Runs a quick operation for the event `context`. Every step runs even when an earlier one
    /// failed; each failure is logged, and the first one is returned.
    pub async fn quick_operation<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        context: &Value,
        operation: &Value,
    ) -> Result<(), ActionError> {
        if !operation.is_object() {
            return Err(ActionError::BadParam { param: "operation".into(), reason: "must be a JSON object".into() });
        }
        let mut first_error = None;
        for step in plan(context, operation, self.options.at_sender_default) {
            let (op, action, result) = match step {
                Ok(step) => (step.op, step.action, self.run_v11(step.action, ctx, caller, &step.params).await),
                Err(Unplanned { op, error }) => (op, "", Err(error)),
            };
            let Err(error) = result else { continue };
            match &error {
                ActionError::Backend { action: v12_action, retcode: 10002, .. } => tracing::warn!(
                    op,
                    action,
                    v12_action = %v12_action,
                    %error,
                    "quick operation not done: the backend does not support this action"
                ),
                _ => tracing::warn!(op, action, %error, "quick operation failed"),
            }
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// `.handle_quick_operation`: params `context` and `operation`. Answers `null` like
    /// go-cqhttp, whether or not the steps succeeded (failures are logged).
    pub(super) async fn handle_quick_operation<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let context = params.get("context").unwrap_or(&Value::Null);
        let operation = params.get("operation").unwrap_or(&Value::Null);
        if let Err(error) = self.quick_operation(ctx, caller, context, operation).await {
            tracing::debug!(%error, "handle_quick_operation: answered ok regardless, as go-cqhttp");
        }
        Ok(Value::Null)
    }

    /// One v11 action through its row in `actions.toml`, as a bot's own call would go.
    async fn run_v11<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        match ctx.maps.actions.get(name).map(|row| (row.handler, row.target)) {
            None => Err(ActionError::NotFound),
            // Boxed: a handler may itself be a quick operation (the future would contain itself).
            Some((Some(handler), target)) => {
                Box::pin(self.run_handler(handler, target, name, ctx, caller, params)).await
            }
            Some((None, _)) => self.run_rename(name, ctx, caller, params).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use serde_json::json;

    use super::*;
    use crate::core::segment::Scope;
    use crate::core::testing::{account, translator, Recorder};
    use crate::core::{v11, v12, Account, BackendInfo, CallError, MemoryIdStore};

    /// Answers extension actions (`qq.*`) with 10002, as a backend without them would.
    #[derive(Default)]
    struct NoExtensions(Recorder);

    impl V12Caller for NoExtensions {
        async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
            if request.action.contains('.') {
                self.0.requests.lock().unwrap().push(request);
                return Ok(v12::Response::failed(10002, "unsupported action"));
            }
            self.0.call(request).await
        }
    }

    struct Fixture {
        t: Translator<MemoryIdStore>,
        me: Account,
        backend: BackendInfo,
    }

    impl Fixture {
        fn new() -> Self {
            let t = translator();
            let me = account(&t);
            Fixture { t, me, backend: BackendInfo::default() }
        }

        fn ctx(&self) -> ActionContext<'_> {
            self.t.context(&self.me, &self.backend, Default::default())
        }

        /// Runs the operation and returns what the backend was asked, in order.
        fn run(&self, context: &Value, operation: Value) -> (Result<(), ActionError>, Vec<v12::Request>) {
            let rec = Recorder::default();
            let result = block_on(self.t.quick_operation(self.ctx(), &rec, context, &operation));
            let sent = rec.requests.lock().unwrap().clone();
            (result, sent)
        }

        /// A v11 message_id the bridge issued for a group message.
        fn group_message_id(&self, v12_id: &str) -> i64 {
            let scope = Scope {
                account: &self.me,
                detail_type: "group",
                group_id: Some("30003"),
                user_id: Some("20002"),
                maps: self.t.maps.generic(),
            };
            block_on(self.t.ids.message_to_v11(&scope.record(v12_id))).unwrap() as i64
        }
    }

    fn group_event(extra: Value) -> Value {
        let mut ev = json!({"post_type": "message", "message_type": "group", "sub_type": "normal", "time": 1,
            "self_id": 10001, "message_id": 5, "group_id": 30003, "user_id": 20002, "anonymous": null,
            "message": "hello", "raw_message": "hello", "font": 0,
            "sender": {"user_id": 20002, "nickname": "Bob", "card": "", "role": "member"}});
        for (k, v) in extra.as_object().unwrap() {
            ev[k] = v.clone();
        }
        ev
    }

    fn private_event() -> Value {
        json!({"post_type": "message", "message_type": "private", "sub_type": "friend", "time": 1, "self_id": 10001,
            "message_id": 6, "user_id": 20002, "message": "hi", "raw_message": "hi", "font": 0,
            "sender": {"user_id": 20002, "nickname": "Bob"}})
    }

    #[test]
    fn a_private_reply_goes_to_the_sender() {
        let f = Fixture::new();
        let (result, sent) = f.run(&private_event(), json!({"reply": "pong [CQ:face,id=1]"}));
        result.unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].action, "send_message");
        assert_eq!(sent[0].self_id.as_ref().unwrap().user_id, "10001");
        assert_eq!(sent[0].params["detail_type"], "private");
        assert_eq!(sent[0].params["user_id"], "20002");
        assert_eq!(
            sent[0].params["message"],
            json!([{"type": "text", "data": {"text": "pong "}}, {"type": "qq.face", "data": {"id": "1"}}])
        );
        // at_sender means nothing in a private chat.
        let (_, sent) = f.run(&private_event(), json!({"reply": "pong", "at_sender": true}));
        assert_eq!(sent[0].params["message"], json!([{"type": "text", "data": {"text": "pong"}}]));
    }

    #[test]
    fn auto_escape_sends_cq_codes_as_text() {
        let f = Fixture::new();
        let (_, sent) = f.run(&private_event(), json!({"reply": "[CQ:face,id=1]", "auto_escape": "yes"}));
        assert_eq!(sent[0].params["message"], json!([{"type": "text", "data": {"text": "[CQ:face,id=1]"}}]));
    }

    #[test]
    fn a_group_reply_goes_to_the_group_without_a_mention_by_default() {
        let f = Fixture::new();
        let (result, sent) = f.run(&group_event(json!({})), json!({"reply": "hi"}));
        result.unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].params["detail_type"], "group");
        assert_eq!(sent[0].params["group_id"], "30003");
        assert_eq!(sent[0].params["message"], json!([{"type": "text", "data": {"text": "hi"}}]));
    }

    #[test]
    fn at_sender_mentions_the_sender_first_in_every_reply_form() {
        let f = Fixture::new();
        let mention = json!({"type": "mention", "data": {"user_id": "20002"}});
        let cases = [
            (json!("hi"), json!([mention, {"type": "text", "data": {"text": " hi"}}])),
            (
                json!([{"type": "text", "data": {"text": "hi"}}]),
                json!([mention, {"type": "text", "data": {"text": "hi"}}]),
            ),
            (
                json!({"type": "text", "data": {"text": "hi"}}),
                json!([mention, {"type": "text", "data": {"text": "hi"}}]),
            ),
        ];
        for (reply, want) in cases {
            let (result, sent) = f.run(&group_event(json!({})), json!({"reply": reply, "at_sender": true}));
            result.unwrap();
            assert_eq!(sent[0].params["message"], want, "reply {reply}");
        }
        // Escaped text still gets a real mention, not the literal CQ code.
        let (_, sent) = f.run(&group_event(json!({})), json!({"reply": "[x]", "at_sender": true, "auto_escape": true}));
        assert_eq!(sent[0].params["message"], json!([mention, {"type": "text", "data": {"text": " [x]"}}]));
    }

    #[test]
    fn at_sender_falls_back_to_user_id_when_sender_is_stripped() {
        let f = Fixture::new();
        // aiocqhttp removes `sender`, `message` and `raw_message` from the context it sends.
        let mut context = group_event(json!({"user_id": 20003}));
        context.as_object_mut().unwrap().remove("sender");
        let (_, sent) = f.run(&context, json!({"reply": "hi", "at_sender": true}));
        assert_eq!(sent[0].params["message"][0], json!({"type": "mention", "data": {"user_id": "20003"}}));
    }

    #[test]
    fn anonymous_senders_get_no_mention_kick_or_ban() {
        let f = Fixture::new();
        let context = group_event(json!({"sub_type": "anonymous", "anonymous": {"id": 1, "name": "x", "flag": "f"}}));
        let (result, sent) = f.run(&context, json!({"reply": "hi", "at_sender": true, "kick": true, "ban": true}));
        result.unwrap();
        assert_eq!(sent.len(), 1, "only the reply: {sent:?}");
        assert_eq!(sent[0].params["message"], json!([{"type": "text", "data": {"text": "hi"}}]));
    }

    #[test]
    fn the_at_sender_default_is_an_option() {
        let mut f = Fixture::new();
        f.t.options.at_sender_default = true;
        let (_, sent) = f.run(&group_event(json!({})), json!({"reply": "hi"}));
        assert_eq!(sent[0].params["message"][0]["type"], "mention");
        let (_, sent) = f.run(&group_event(json!({})), json!({"reply": "hi", "at_sender": false}));
        assert_eq!(sent[0].params["message"][0]["type"], "text");
    }

    #[test]
    fn delete_recalls_the_event_message_by_its_v12_id() {
        let f = Fixture::new();
        let id = f.group_message_id("m-77");
        let (result, sent) = f.run(&group_event(json!({"message_id": id})), json!({"delete": true}));
        result.unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].action, "delete_message");
        assert_eq!(sent[0].params["message_id"], "m-77");
        // An id the bridge never issued is the bot's mistake, reported as such.
        let (result, sent) = f.run(&group_event(json!({"message_id": 999_999})), json!({"delete": true}));
        assert!(sent.is_empty());
        assert_eq!(result.unwrap_err().to_response(f.t.maps.generic()).msg.as_deref(), Some("MSG_NOT_FOUND"));
    }

    #[test]
    fn kick_and_ban_use_the_extension_actions() {
        let f = Fixture::new();
        let (result, sent) = f.run(&group_event(json!({})), json!({"kick": true, "reject_add_request": true}));
        result.unwrap();
        assert_eq!(sent[0].action, "qq.set_group_kick");
        assert_eq!(sent[0].params["group_id"], "30003");
        assert_eq!(sent[0].params["user_id"], "20002");
        assert_eq!(sent[0].params["reject_add_request"], true);

        let (_, sent) = f.run(&group_event(json!({})), json!({"ban": true}));
        assert_eq!(sent[0].action, "qq.set_group_ban");
        assert_eq!((&sent[0].params["user_id"], &sent[0].params["duration"]), (&json!("20002"), &json!(1800)));
        let (_, sent) = f.run(&group_event(json!({})), json!({"ban": true, "ban_duration": "60"}));
        assert_eq!(sent[0].params["duration"], 60);
        // Not in a private chat.
        let (_, sent) = f.run(&private_event(), json!({"kick": true, "ban": true, "delete": true}));
        assert!(sent.is_empty(), "{sent:?}");
    }

    #[test]
    fn every_group_field_runs_in_go_cqhttp_order() {
        let f = Fixture::new();
        let id = f.group_message_id("m-1");
        let op = json!({"reply": "bye", "delete": true, "kick": true, "ban": true});
        let (result, sent) = f.run(&group_event(json!({"message_id": id})), op);
        result.unwrap();
        let actions: Vec<_> = sent.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["send_message", "delete_message", "qq.set_group_kick", "qq.set_group_ban"]);
    }

    #[test]
    fn requests_are_approved_or_rejected() {
        let f = Fixture::new();
        let friend = json!({"post_type": "request", "request_type": "friend", "time": 1, "self_id": 10001,
            "user_id": 20002, "comment": "hello", "flag": "fr-1"});
        let (result, sent) = f.run(&friend, json!({"approve": true, "remark": "ignored as go-cqhttp"}));
        result.unwrap();
        assert_eq!(sent[0].action, "qq.set_friend_add_request");
        assert_eq!(sent[0].params, json!({"flag": "fr-1", "approve": true}).as_object().unwrap().clone());

        let group = json!({"post_type": "request", "request_type": "group", "sub_type": "add", "time": 1,
            "self_id": 10001, "group_id": 30003, "user_id": 20002, "comment": "", "flag": "gr-1"});
        let (_, sent) = f.run(&group, json!({"approve": false, "reason": "no"}));
        assert_eq!(sent[0].action, "qq.set_group_add_request");
        assert_eq!(
            sent[0].params,
            json!({"flag": "gr-1", "sub_type": "add", "reason": "no", "approve": false}).as_object().unwrap().clone()
        );
        // No `approve`: nothing to do.
        let (_, sent) = f.run(&group, json!({"reason": "no"}));
        assert!(sent.is_empty());
    }

    #[test]
    fn notices_and_meta_events_do_nothing() {
        let f = Fixture::new();
        for context in [
            json!({"post_type": "notice", "notice_type": "group_increase", "group_id": 1, "user_id": 2}),
            json!({"post_type": "meta_event", "meta_event_type": "heartbeat"}),
            json!({"post_type": "message_sent", "message_type": "group", "group_id": 1}),
        ] {
            let (result, sent) = f.run(&context, json!({"reply": "x", "approve": true, "kick": true}));
            result.unwrap();
            assert!(sent.is_empty(), "{context}");
        }
    }

    #[test]
    fn a_backend_without_the_extension_fails_the_step_clearly() {
        let f = Fixture::new();
        let caller = NoExtensions::default();
        let op = json!({"reply": "out", "kick": true});
        let result = block_on(f.t.quick_operation(f.ctx(), &caller, &group_event(json!({})), &op));
        let error = result.unwrap_err();
        assert!(matches!(&error, ActionError::Backend { action, retcode: 10002, .. } if action == "qq.set_group_kick"));
        assert_eq!(error.to_response(f.t.maps.generic()).msg.as_deref(), Some("BACKEND_UNSUPPORTED_ACTION"));
        // The reply still went out, and the kick was really asked for.
        let actions: Vec<_> = caller.0.requests.lock().unwrap().iter().map(|r| r.action.clone()).collect();
        assert_eq!(actions, ["send_message", "qq.set_group_kick"]);
    }

    #[test]
    fn a_step_whose_event_lacks_a_field_fails_alone() {
        let f = Fixture::new();
        let id = f.group_message_id("m-2");
        let mut context = group_event(json!({"message_id": id}));
        context.as_object_mut().unwrap().remove("group_id");
        let (result, sent) = f.run(&context, json!({"reply": "x", "delete": true}));
        let error = result.unwrap_err();
        assert!(error.to_string().contains("context.group_id"), "{error}");
        // `delete` needs only the message id: it still went out.
        let actions: Vec<_> = sent.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["delete_message"]);
    }

    #[test]
    fn the_hidden_action_answers_null_even_when_a_step_fails() {
        let f = Fixture::new();
        let caller = NoExtensions::default();
        let req = v11::Request {
            action: ".handle_quick_operation_async".into(),
            params:
                json!({"self_id": 10001, "context": group_event(json!({})), "operation": {"reply": "a", "ban": true}})
                    .as_object()
                    .unwrap()
                    .clone(),
            echo: None,
        };
        let answer = block_on(f.t.handle_action(f.ctx(), &caller, req));
        assert_eq!((answer.status, answer.retcode, &answer.data), ("ok", 0, &Value::Null));
        let actions: Vec<_> = caller.0.requests.lock().unwrap().iter().map(|r| r.action.clone()).collect();
        assert_eq!(actions, ["send_message", "qq.set_group_ban"]);
        // Without a context or an operation there is nothing to do, and still no failure.
        let req = v11::Request { action: ".handle_quick_operation".into(), ..Default::default() };
        assert!(block_on(f.t.handle_action(f.ctx(), &caller, req)).is_ok());
    }
}
