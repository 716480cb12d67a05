//! go-cqhttp's forward (merged) messages: `node` segments, both ways.
//!
//! A node is a message with a sender, and is translated like one. Going out (the `messages` of
//! `send_*forward_msg`, or `node` segments inside `send_msg`), a node is either
//! `{id}` — an existing message, by its v11 message_id — or `{user_id|uin, name|nickname,
//! content, time}` whose content is a CQ string or a segment list, possibly holding nodes again.
//! Its media are uploaded by [`Translator::upload_media`] under the same rules as any message's
//! (local files only inside the allowed directories), and it becomes the profile's node segment
//! in v12's words: `{message_id}` or `{user_id, user_name, message, time}` (Walle-Q's fields, the
//! one v12 implementation with nodes), ids as v12 strings; any other key travels as it is.
//!
//! Coming back, `get_forward_msg` answers go-cqhttp's `{messages: [{sender: {user_id, nickname},
//! time, content, group_id}]}`: ids as v11 integers, each content a v11 message in the asking
//! endpoint's format (a nested forward's content is again such a list). A backend that answers
//! node segments instead is read the same way.

use serde_json::{Map, Value};

use super::action::{ActionContext, ActionError};
use super::cq::render_cq;
use super::ids::IdStore;
use super::mapping::Mappings;
use super::media::{BoxFuture, Uploaded};
use super::message::{value_as_text, Data, Segment};
use super::segment::{lenient_i64, read_v11_message, Scope, SegmentError};
use super::v12::id_string;
use super::{v11, Translator, V12Caller};

/// Deepest nesting of forwards inside forwards the bridge reads, from a bot or a backend.
pub const MAX_NODE_DEPTH: usize = 8;

fn bad(reason: impl Into<String>) -> SegmentError {
    SegmentError::BadSegment { kind: "node".into(), reason: reason.into() }
}

/// A node's content as v11 segments (`None` for a node that names a message by `id`).
pub fn node_content(node: &Segment) -> Result<Option<Vec<Segment>>, SegmentError> {
    match node.data.get("content") {
        None | Some(Value::Null) => Ok(None),
        Some(content) => read_v11_message(content, false)
            .map(Some)
            .map_err(|_| bad("`content` must be a CQ string, a segment or a list of segments")),
    }
}

/// Whether an incoming v12 segment is a node, in any profile's naming.
fn is_v12_node(maps: &Mappings, seg: &Segment) -> bool {
    maps.segment_in_name(&seg.kind) == "node" || seg.kind.rsplit('.').next() == Some("node")
}

impl<S: IdStore> Translator<S> {
    /// A forward action's `messages`: every item a node, media uploaded (remembered uploads used
    /// when `reuse`), translated to v12.
    pub(super) async fn nodes_to_v12<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        param: &str,
        value: &Value,
        reuse: bool,
    ) -> Result<(Value, Uploaded), ActionError> {
        let bad_param = |reason: String| ActionError::BadParam { param: param.to_owned(), reason };
        let mut nodes =
            read_v11_message(value, false).map_err(|_| bad_param("must be a list of `node` segments".into()))?;
        if nodes.is_empty() {
            return Err(bad_param("holds no nodes".into()));
        }
        if let Some(other) = nodes.iter().find(|s| s.kind != "node") {
            return Err(bad_param(format!("every item must be a `node` segment, not `{}`", other.kind)));
        }
        let uploaded = self.upload_media(ctx, caller, &mut nodes, reuse).await?;
        let nodes = self.segments_to_v12(ctx.maps, nodes).await?;
        Ok((Segment::list_into_value(nodes), uploaded))
    }

    /// One v11 node → the profile's v12 node (its content's media already uploaded).
    pub(super) fn node_to_v12<'a>(
        &'a self,
        maps: &'a Mappings,
        node: Segment,
    ) -> BoxFuture<'a, Result<Segment, SegmentError>> {
        Box::pin(async move {
            let content = node_content(&node)?;
            let mut data = Data::with_capacity(node.data.len());
            for (key, value) in node.data {
                if value.is_null() {
                    continue;
                }
                match key.as_str() {
                    "id" => {
                        let n = lenient_i64(&value).ok_or_else(|| bad(format!("id {value} is not a message_id")))?;
                        data.insert("message_id", self.ids.message_to_v12(n).await?.key.message_id.as_str().into());
                    }
                    // go-cqhttp reads `user_id`, else `uin`; `name`, else `nickname`.
                    "user_id" | "uin" => {
                        let n = lenient_i64(&value).ok_or_else(|| bad(format!("{key} {value} is not an id")))?;
                        let id = Value::String(self.ids.to_v12(n).await?);
                        if key == "user_id" || !data.contains_key("user_id") {
                            data.insert("user_id", id);
                        }
                    }
                    "name" | "nickname" => {
                        let name = Value::String(value_as_text(&value).unwrap_or_default());
                        if key == "name" || !data.contains_key("user_name") {
                            data.insert("user_name", name);
                        }
                    }
                    "time" => {
                        data.insert(key, lenient_i64(&value).map(Value::from).unwrap_or(value));
                    }
                    "content" => {}
                    _ => {
                        data.insert(key, value);
                    }
                }
            }
            if let Some(content) = content {
                let message = self.segments_to_v12(maps, content).await?;
                data.insert("message", Segment::list_into_value(message));
            }
            if !data.contains_key("message_id") && !data.contains_key("message") {
                return Err(bad("a node needs `id` (an existing message) or `content`"));
            }
            Ok(Segment { kind: maps.segment_out_name("node").into(), data })
        })
    }

    /// `get_forward_msg`: the backend's forward, in go-cqhttp's shape.
    pub(super) async fn get_forward_msg<C: V12Caller>(
        &self,
        name: &str,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let data = self.call_row(name, ctx, caller, params).await?;
        let Value::Object(mut data) = data else { return Ok(data) };
        // go-cqhttp's `messages`; the v11 spec's `message`.
        for key in ["messages", "message"] {
            if let Some(Value::Array(items)) = data.remove(key) {
                let items = self.forward_entries_to_v11(ctx, caller, items, 0).await?;
                data.insert(key.into(), Value::Array(items));
            }
        }
        Ok(Value::Object(data))
    }

    fn forward_entries_to_v11<'a, C: V12Caller>(
        &'a self,
        ctx: ActionContext<'a>,
        caller: &'a C,
        items: Vec<Value>,
        depth: usize,
    ) -> BoxFuture<'a, Result<Vec<Value>, ActionError>> {
        Box::pin(async move {
            if depth > MAX_NODE_DEPTH {
                return Err(ActionError::Media(super::media::MediaError::BadAnswer {
                    action: "get_forward_msg".into(),
                    reason: format!("forwards nested more than {MAX_NODE_DEPTH} deep"),
                }));
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(self.forward_entry_to_v11(ctx, caller, item, depth).await?);
            }
            Ok(out)
        })
    }

    /// One forwarded message: a go-cqhttp entry (`{sender, time, content, group_id}`) with v12
    /// ids, or a v12 node segment (`{user_id, user_name, message, time}`).
    async fn forward_entry_to_v11<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        item: Value,
        depth: usize,
    ) -> Result<Value, ActionError> {
        let Value::Object(mut entry) = item else { return Ok(item) };
        if let Some(node) = Segment::read(&Value::Object(entry.clone())).filter(|s| is_v12_node(ctx.maps, s)) {
            entry = Map::new();
            let mut sender = Map::new();
            for (key, value) in node.data {
                let (into, key) = match key.as_str() {
                    "user_id" => (&mut sender, "user_id".to_owned()),
                    "user_name" | "nickname" => (&mut sender, "nickname".to_owned()),
                    "message" => (&mut entry, "content".to_owned()),
                    _ => (&mut entry, ctx.maps.profile.strip(&key).to_owned()),
                };
                into.insert(key, value);
            }
            entry.insert("sender".into(), Value::Object(sender));
        }
        if !matches!(entry.get("sender"), Some(Value::Object(_))) {
            // The sender as flat fields: go-cqhttp's `sender` object from them.
            let mut sender = Map::new();
            if let Some(id) = entry.remove("user_id") {
                sender.insert("user_id".into(), id);
            }
            if let Some(name) = entry.remove("user_name").or_else(|| entry.remove("nickname")) {
                sender.insert("nickname".into(), name);
            }
            entry.insert("sender".into(), Value::Object(sender));
        }
        let sender = entry.get("sender").and_then(|s| s.get("user_id")).and_then(id_string);
        let group = entry.get("group_id").and_then(id_string).filter(|g| !g.is_empty() && g != "0");
        if let (Some(Value::Object(s)), Some(id)) = (entry.get_mut("sender"), &sender) {
            s.insert("user_id".into(), self.ids.to_v11(id).await?.into());
        }
        if let Some(g) = &group {
            entry.insert("group_id".into(), self.ids.to_v11(g).await?.into());
        }
        let Some(content) = entry.remove("content") else { return Ok(Value::Object(entry)) };
        let nested = match &content {
            Value::Array(items) => {
                !items.is_empty()
                    && items
                        .iter()
                        .all(|i| i.get("type").is_none() || Segment::read(i).is_some_and(|s| is_v12_node(ctx.maps, &s)))
            }
            _ => false,
        };
        let content = if nested {
            let Value::Array(items) = content else { return Ok(Value::Object(entry)) };
            Value::Array(self.forward_entries_to_v11(ctx, caller, items, depth + 1).await?)
        } else {
            let scope = Scope {
                account: ctx.account,
                detail_type: if group.is_some() { "group" } else { "private" },
                group_id: group.as_deref(),
                user_id: sender.as_deref(),
                maps: ctx.maps,
            };
            let mut segments = self.segments_to_v11(&scope, Some(&content)).await?;
            self.media_urls(ctx, caller, &mut segments).await;
            match ctx.post_format {
                v11::PostFormat::String => Value::String(render_cq(&segments)),
                v11::PostFormat::Array => Segment::list_into_value(segments),
            }
        };
        entry.insert("content".into(), content);
        Ok(Value::Object(entry))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use futures::executor::block_on;
    use serde_json::json;

    use super::*;
    use crate::core::testing::{account, translator, Recorder};
    use crate::core::{BackendInfo, MemoryIdStore};

    type T = Translator<MemoryIdStore>;

    fn call(t: &T, rec: &Recorder, format: v11::PostFormat, action: &str, params: Value) -> v11::Response {
        let me = account(t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, format);
        let req = v11::Request { action: action.into(), params: params.as_object().unwrap().clone(), echo: None };
        block_on(t.handle_action(ctx, rec, req))
    }

    fn sent(rec: &Recorder, action: &str) -> Option<Value> {
        let reqs = rec.requests.lock().unwrap();
        reqs.iter().find(|r| r.action == action).map(|r| Value::Object(r.params.clone()))
    }

    /// A v11 message id for a v12 message the bridge has seen in group 5.
    fn known_message(t: &T, v12_id: &str) -> i32 {
        let me = account(t);
        let record = crate::core::ids::MessageRecord {
            key: crate::core::ids::MessageKey {
                self_id: me.self_id.user_id.as_str().into(),
                message_id: v12_id.into(),
            },
            detail_type: "group".into(),
            group_id: Some("5".into()),
            user_id: Some("77".into()),
            content: None,
        };
        block_on(t.ids.message_to_v11(&record)).unwrap()
    }

    #[test]
    fn forward_nodes_are_messages_translated_with_their_media_uploaded() {
        let t = translator();
        let rec = Recorder::default();
        *rec.data.lock().unwrap() = json!({"file_id": "f-up", "message_id": "fwd-1", "forward_id": "res-9"});
        let quoted = known_message(&t, "m-old");
        let alice = block_on(t.ids.to_v11("u-alice")).unwrap();
        let pic = base64::engine::general_purpose::STANDARD.encode(b"picture");
        let messages = json!([
            {"type": "node", "data": {"id": quoted}},
            {"type": "node", "data": {"name": "A", "uin": alice, "time": "1700000000",
                "content": format!("hi [CQ:at,qq={alice}][CQ:image,file=base64://{pic}]")}},
            {"type": "node", "data": {"nickname": "B", "user_id": 42, "content": [
                {"type": "node", "data": {"name": "C", "uin": 43, "content": [
                    {"type": "image", "data": {"file": format!("base64://{pic}")}},
                    {"type": "reply", "data": {"id": quoted}}
                ]}}
            ]}}
        ]);
        let answer = call(
            &t,
            &rec,
            v11::PostFormat::String,
            "send_group_forward_msg",
            json!({"group_id": 5, "messages": messages}),
        );
        assert!(answer.is_ok(), "{answer:?}");
        let p = sent(&rec, "qq.send_group_forward_msg").expect("the forward was sent");
        assert_eq!(p["group_id"], "5");
        let image = json!({"type": "image", "data": {"file_id": "f-up"}});
        assert_eq!(
            p["messages"],
            json!([
                {"type": "qq.node", "data": {"message_id": "m-old"}},
                {"type": "qq.node", "data": {"user_name": "A", "user_id": "u-alice", "time": 1_700_000_000,
                    "message": [{"type": "text", "data": {"text": "hi "}},
                                {"type": "mention", "data": {"user_id": "u-alice"}}, image]}},
                {"type": "qq.node", "data": {"user_name": "B", "user_id": "42", "message": [
                    {"type": "qq.node", "data": {"user_name": "C", "user_id": "43", "message": [
                        image, {"type": "reply", "data": {"message_id": "m-old", "user_id": "77"}}
                    ]}}
                ]}}
            ])
        );
        let uploads = rec.requests.lock().unwrap().iter().filter(|r| r.action == "upload_file").count();
        assert_eq!(uploads, 1, "the same picture twice is uploaded once");
        // The answer's message id is one the bot can use again; the forward's resource id passes.
        let id = answer.data["message_id"].as_i64().unwrap();
        assert_eq!(block_on(t.ids.message_to_v12(id)).unwrap().key.message_id, "fwd-1");
        assert_eq!(answer.data["forward_id"], "res-9");
    }

    /// Answers like [`Recorder`], but fails the forward send while `failures` lasts.
    #[derive(Default)]
    struct Forgetful {
        rec: Recorder,
        failures: std::sync::Mutex<usize>,
    }

    impl V12Caller for Forgetful {
        async fn call(
            &self,
            request: crate::core::v12::Request,
        ) -> Result<crate::core::v12::Response, crate::core::CallError> {
            let forward = request.action == "qq.send_group_forward_msg";
            let answer = self.rec.call(request).await;
            let mut failures = self.failures.lock().unwrap();
            if forward && *failures > 0 {
                *failures -= 1;
                return Ok(crate::core::v12::Response::failed(35001, "file expired"));
            }
            answer
        }
    }

    #[test]
    fn a_forward_whose_remembered_upload_expired_is_uploaded_again_once() {
        let t = translator();
        let caller = Forgetful::default();
        *caller.rec.data.lock().unwrap() = json!({"file_id": "f-up", "message_id": "fwd-1"});
        let params = json!({"group_id": 5, "messages": [{"type": "node", "data": {"name": "A", "uin": 1,
            "content": "[CQ:image,file=base64://cGlj]"}}]});
        let me = account(&t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, v11::PostFormat::String);
        let send = || {
            let req = v11::Request {
                action: "send_group_forward_msg".into(),
                params: params.as_object().unwrap().clone(),
                echo: None,
            };
            block_on(t.handle_action(ctx, &caller, req))
        };
        let actions = || caller.rec.requests.lock().unwrap().iter().map(|r| r.action.clone()).collect::<Vec<_>>();
        assert!(send().is_ok());
        assert!(send().is_ok());
        assert_eq!(actions(), ["upload_file", "qq.send_group_forward_msg", "qq.send_group_forward_msg"]);
        *caller.failures.lock().unwrap() = 1;
        assert!(send().is_ok());
        assert_eq!(actions()[3..], ["qq.send_group_forward_msg", "upload_file", "qq.send_group_forward_msg"]);
        *caller.failures.lock().unwrap() = 5;
        assert_eq!(send().msg.as_deref(), Some("BACKEND_LOGIC_ERROR"), "a failure that persists is the bot's");
    }

    #[test]
    fn node_segments_in_send_msg_go_the_same_way() {
        let t = translator();
        let rec = Recorder::default();
        *rec.data.lock().unwrap() = json!({"file_id": "f-up", "message_id": "m-2"});
        let message = "[CQ:node,name=A,uin=10,content=look&#91;CQ:image&#44;file=base64://cGlj&#93;]";
        let answer =
            call(&t, &rec, v11::PostFormat::String, "send_group_msg", json!({"group_id": 5, "message": message}));
        assert!(answer.is_ok(), "{answer:?}");
        let p = sent(&rec, "send_message").unwrap();
        assert_eq!(
            p["message"],
            json!([{"type": "qq.node", "data": {"user_name": "A", "user_id": "10", "message": [
                {"type": "text", "data": {"text": "look"}}, {"type": "image", "data": {"file_id": "f-up"}}
            ]}}])
        );
        // Walle-Q names its node `node`, with the same fields.
        let rec = Recorder::default();
        let me = account(&t);
        let backend = BackendInfo { profile: "walle-q".into(), ..Default::default() };
        let ctx = t.context(&me, &backend, v11::PostFormat::String);
        let params =
            json!({"group_id": 5, "message": [{"type": "node", "data": {"name": "A", "uin": 10, "content": "hi"}}]});
        let req =
            v11::Request { action: "send_group_msg".into(), params: params.as_object().unwrap().clone(), echo: None };
        assert!(block_on(t.handle_action(ctx, &rec, req)).is_ok());
        assert_eq!(
            sent(&rec, "send_message").unwrap()["message"][0],
            json!({"type": "node", "data": {"user_name": "A", "user_id": "10", "message": [{"type": "text", "data": {"text": "hi"}}]}})
        );
    }

    #[test]
    fn a_node_cannot_smuggle_a_local_file_or_a_bad_shape() {
        let t = translator();
        for (action, params, msg) in [
            (
                "send_group_forward_msg",
                json!({"group_id": 5, "messages": [{"type": "node", "data": {"name": "A", "uin": 1,
                    "content": "[CQ:image,file=file:///etc/passwd]"}}]}),
                "FILE_REFUSED",
            ),
            (
                "send_private_forward_msg",
                json!({"user_id": 5, "messages": [{"type": "node", "data": {"name": "A", "uin": 1, "content": [
                    {"type": "node", "data": {"name": "B", "uin": 2, "content": [
                        {"type": "image", "data": {"file": "/etc/passwd"}}]}}]}}]}),
                "FILE_REFUSED",
            ),
            (
                "send_msg",
                json!({"group_id": 5, "message": "[CQ:node,uin=1,content=&#91;CQ:record&#44;file=/etc/passwd&#93;]"}),
                "FILE_REFUSED",
            ),
            ("send_group_forward_msg", json!({"group_id": 5, "messages": "plain text"}), "BAD_PARAM"),
            (
                "send_group_forward_msg",
                json!({"group_id": 5, "messages": [{"type": "node", "data": {"name": "x"}}]}),
                "BAD_PARAM",
            ),
            (
                "send_group_forward_msg",
                json!({"group_id": 5, "messages": [{"type": "node", "data": {"id": 999}}]}),
                "MSG_NOT_FOUND",
            ),
        ] {
            let rec = Recorder::default();
            let answer = call(&t, &rec, v11::PostFormat::String, action, params.clone());
            assert_eq!(answer.msg.as_deref(), Some(msg), "{params}: {answer:?}");
            assert!(rec.requests.lock().unwrap().is_empty(), "{params}: nothing reaches the backend");
        }
        // Nested deeper than the bound: refused, not recursed into.
        let mut content = json!("end");
        for _ in 0..=MAX_NODE_DEPTH + 1 {
            content = json!([{"type": "node", "data": {"name": "n", "uin": 1, "content": content}}]);
        }
        let rec = Recorder::default();
        let answer = call(
            &t,
            &rec,
            v11::PostFormat::String,
            "send_group_forward_msg",
            json!({"group_id": 5, "messages": content}),
        );
        assert_eq!(answer.msg.as_deref(), Some("BAD_PARAM"), "{answer:?}");
    }

    #[test]
    fn get_forward_msg_answers_v11_ids_and_messages_in_the_endpoints_format() {
        let t = translator();
        let alice = block_on(t.ids.to_v11("u-alice")).unwrap();
        let group = block_on(t.ids.to_v11("g-1")).unwrap();
        let backend_answer = json!({"messages": [
            {"sender": {"user_id": "u-alice", "nickname": "A"}, "time": 5, "group_id": "g-1",
             "content": [{"type": "text", "data": {"text": "hi "}}, {"type": "mention", "data": {"user_id": "u-alice"}}]},
            {"type": "qq.node", "data": {"user_id": "42", "user_name": "B", "time": 6, "message": [
                {"type": "qq.node", "data": {"user_id": "u-alice", "user_name": "A", "message": [
                    {"type": "qq.face", "data": {"id": "1"}}]}}]}},
            {"user_id": "u-alice", "nickname": "A", "time": 7, "content": [{"type": "qq.face", "data": {"id": "1"}}]}
        ]});
        for (format, first, inner) in [
            (v11::PostFormat::String, json!(format!("hi [CQ:at,qq={alice}]")), json!("[CQ:face,id=1]")),
            (
                v11::PostFormat::Array,
                json!([{"type": "text", "data": {"text": "hi "}}, {"type": "at", "data": {"qq": alice.to_string()}}]),
                json!([{"type": "face", "data": {"id": "1"}}]),
            ),
        ] {
            let rec = Recorder::default();
            *rec.data.lock().unwrap() = backend_answer.clone();
            let answer = call(&t, &rec, format, "get_forward_msg", json!({"id": "res-9"}));
            assert!(answer.is_ok(), "{answer:?}");
            assert_eq!(sent(&rec, "qq.get_forward_msg").unwrap(), json!({"message_id": "res-9"}));
            assert_eq!(
                answer.data,
                json!({"messages": [
                    {"sender": {"user_id": alice, "nickname": "A"}, "time": 5, "group_id": group, "content": first},
                    {"sender": {"user_id": 42, "nickname": "B"}, "time": 6, "content": [
                        {"sender": {"user_id": alice, "nickname": "A"}, "content": inner}]},
                    {"sender": {"user_id": alice, "nickname": "A"}, "time": 7, "content": inner}
                ]}),
                "{format:?}"
            );
        }
    }

    #[test]
    fn ids_nested_in_group_file_and_essence_answers_are_v11_and_usable_again() {
        let t = translator();
        let rec = Recorder::default();
        *rec.data.lock().unwrap() = json!({
            "files": [{"group_id": "g-1", "file_id": "/abc", "busid": 102, "uploader": "u-alice", "uploader_name": "A"}],
            "folders": [{"group_id": "g-1", "folder_id": "/f", "creator": "u-bob", "total_file_count": 3}],
        });
        let group = block_on(t.ids.to_v11("g-1")).unwrap();
        let answer = call(&t, &rec, v11::PostFormat::String, "get_group_root_files", json!({"group_id": group}));
        let (alice, bob) = (block_on(t.ids.to_v11("u-alice")).unwrap(), block_on(t.ids.to_v11("u-bob")).unwrap());
        assert_eq!(
            answer.data,
            json!({
                "files": [{"group_id": group, "file_id": "/abc", "busid": 102, "uploader": alice, "uploader_name": "A"}],
                "folders": [{"group_id": group, "folder_id": "/f", "creator": bob, "total_file_count": 3}],
            })
        );
        assert_eq!(sent(&rec, "qq.get_group_root_files").unwrap()["group_id"], "g-1");

        let rec = Recorder::default();
        *rec.data.lock().unwrap() = json!([{"sender_id": "u-alice", "sender_nick": "A", "operator_id": "u-bob",
            "operator_nick": "B", "message_id": "m-essence", "sender_time": 1, "operator_time": 2}]);
        let answer = call(&t, &rec, v11::PostFormat::String, "get_essence_msg_list", json!({"group_id": group}));
        let entry = &answer.data[0];
        assert_eq!((entry["sender_id"].as_i64(), entry["operator_id"].as_i64()), (Some(alice), Some(bob)));
        assert_eq!(entry["sender_nick"], "A");
        // The bot takes the essence's id back to the backend.
        let rec = Recorder::default();
        let answer =
            call(&t, &rec, v11::PostFormat::String, "delete_essence_msg", json!({"message_id": entry["message_id"]}));
        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(sent(&rec, "qq.delete_essence_msg").unwrap()["message_id"], "m-essence");
        let record = block_on(t.ids.message_to_v12(entry["message_id"].as_i64().unwrap())).unwrap();
        assert_eq!((record.group_id.as_deref(), record.user_id.as_deref()), (Some("g-1"), Some("u-alice")));
    }
}
