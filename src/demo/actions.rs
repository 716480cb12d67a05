//! The playground's answers to the bridge's v12 actions (`reference/onebot-v12.md` §4): one
//! request frame in, one response out, plus what the page should see and the events the bridge
//! should get because of it. Synchronous over the [`World`], so tests feed it request JSON.
//!
//! Retcodes: 10001 for a frame that is no request, 10002 for an action the playground does not
//! have, 10003 for a bad or missing param, 10004 for a `type` it does not take, 10006 for a
//! segment without its fields, 10102 for a `self` that is not the bot, 35xxx when the world
//! refuses (unknown user, group, message or file; too large).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::world::{id_of, Chat, FileBody, World, WorldError, BOT_ID, BOT_NAME, PLATFORM};

/// The implementation's name (`12.playground`, `version.impl`): no profile claims it, so the
/// bridge speaks the generic profile with it.
pub const IMPL: &str = "playground";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every action answered; `get_supported_actions` lists them.
pub const SUPPORTED: &[&str] = &[
    "get_supported_actions",
    "get_status",
    "get_version",
    "get_self_info",
    "get_user_info",
    "get_friend_list",
    "get_group_info",
    "get_group_list",
    "get_group_member_info",
    "get_group_member_list",
    "set_group_name",
    "send_message",
    "delete_message",
    "upload_file",
    "upload_file_fragmented",
    "get_file",
    "qq.set_friend_add_request",
    "qq.set_group_add_request",
];

/// What one request caused.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The v12 response.
    pub response: Value,
    /// Items for the page's feed (`{"type": "message" | "recall" | "notice" | "snapshot", …}`).
    pub feed: Vec<Value>,
    /// v12 events for the bridge, after the response.
    pub events: Vec<Value>,
}

/// A failed action: its retcode and why.
#[derive(Debug)]
struct Fail(i64, String);

impl From<WorldError> for Fail {
    fn from(e: WorldError) -> Self {
        Fail(e.retcode(), e.to_string())
    }
}

fn bad_param(msg: impl Into<String>) -> Fail {
    Fail(10003, msg.into())
}

fn response(status: Result<Value, Fail>, echo: Option<&Value>) -> Value {
    let mut resp = match status {
        Ok(data) => json!({"status": "ok", "retcode": 0, "data": data, "message": ""}),
        Err(Fail(code, message)) => json!({"status": "failed", "retcode": code, "data": null, "message": message}),
    };
    // v12: the echo comes back iff the request had a non-empty one.
    if let Some(echo) = echo.filter(|e| !e.is_null() && e.as_str() != Some("")) {
        resp["echo"] = echo.clone();
    }
    resp
}

/// Answers one request frame (JSON text) at time `now` (seconds), given the `base` URL files
/// are served under (`{base}/files/{file_id}`; empty when there is none).
pub fn answer(world: &mut World, base: &str, frame: &str, now: f64) -> Outcome {
    let mut out = Outcome::default();
    let request: Value = match serde_json::from_str(frame) {
        Ok(Value::Object(r)) => Value::Object(r),
        Ok(_) => {
            out.response = response(Err(Fail(10001, "a request is a JSON object".into())), None);
            return out;
        }
        Err(e) => {
            out.response = response(Err(Fail(10001, format!("the frame is not JSON: {e}"))), None);
            return out;
        }
    };
    let echo = request.get("echo");
    let result = dispatch(world, base, &request, now, &mut out);
    out.response = response(result, echo);
    out
}

fn dispatch(world: &mut World, base: &str, request: &Value, now: f64, out: &mut Outcome) -> Result<Value, Fail> {
    let action = request.get("action").and_then(Value::as_str).ok_or_else(|| Fail(10001, "no `action`".into()))?;
    let empty = Map::new();
    let params = match request.get("params") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err(Fail(10001, "`params` is not an object".into())),
    };
    if let Some(me) = request.get("self").filter(|s| !s.is_null()) {
        let user = id_of(me.get("user_id"));
        if user.as_deref() != Some(BOT_ID) {
            return Err(Fail(10102, format!("the only bot here is {PLATFORM}/{BOT_ID}")));
        }
    }
    let user_info = |world: &World, id: &str| -> Result<Value, Fail> {
        if id == BOT_ID {
            return Ok(json!({"user_id": BOT_ID, "user_name": BOT_NAME, "user_displayname": "", "user_remark": ""}));
        }
        let u = world.user(id).ok_or_else(|| Fail(35001, format!("there is no user {id}")))?;
        Ok(json!({"user_id": u.id, "user_name": u.name, "user_displayname": "", "user_remark": ""}))
    };
    match action {
        "get_supported_actions" => Ok(json!(SUPPORTED)),
        "get_status" => Ok(json!({"good": true, "bots": [{"self": World::self_json(), "online": true}]})),
        "get_version" => Ok(version()),
        "get_self_info" => Ok(json!({"user_id": BOT_ID, "user_name": BOT_NAME, "user_displayname": ""})),
        "get_user_info" => user_info(world, &id(params, "user_id")?),
        "get_friend_list" => {
            let ids: Vec<String> = world.users().filter(|u| u.friend).map(|u| u.id.clone()).collect();
            ids.iter().map(|i| user_info(world, i)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
        "get_group_info" => {
            let g = group(world, params)?;
            Ok(json!({"group_id": g.id, "group_name": g.name}))
        }
        "get_group_list" => Ok(world.groups().map(|g| json!({"group_id": g.id, "group_name": g.name})).collect()),
        "get_group_member_info" => {
            let g = group(world, params)?;
            let user = id(params, "user_id")?;
            if !g.members.contains(&user) {
                return Err(Fail(35001, format!("{user} is not a member of group {}", g.id)));
            }
            member(world, &user)
        }
        "get_group_member_list" => {
            let members = group(world, params)?.members.clone();
            members.iter().map(|m| member(world, m)).collect::<Result<Vec<_>, _>>().map(Value::Array)
        }
        "set_group_name" => {
            let g = id(params, "group_id")?;
            world.rename_group(&g, &string(params, "group_name")?)?;
            let name = world.group(&g).map(|g| g.name.clone()).unwrap_or_default();
            let text = format!("{BOT_NAME} renamed the group to “{name}”");
            let chat = Chat::Group(g);
            out.feed.push(notice_item(world.notice(Some(&chat), &text, now)));
            out.feed.push(world.snapshot());
            Ok(Value::Null)
        }
        "send_message" => send_message(world, params, now, out),
        "delete_message" => {
            let message_id = id(params, "message_id")?;
            let gone = world.recall(&message_id, BOT_ID)?;
            out.feed.push(json!({"type": "recall", "chat": gone.chat.key(), "message_id": gone.id}));
            Ok(Value::Null)
        }
        "upload_file" => upload_file(world, params),
        "upload_file_fragmented" => upload_fragmented(world, params),
        "get_file" => get_file(world, base, params),
        "qq.set_friend_add_request" => {
            let flag = string(params, "flag")?;
            let approve = match params.get("approve") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad_param("`approve` is not a boolean")),
            };
            let user = world.answer_friend_request(&flag, approve)?;
            let (chat, verb) =
                if user.friend { (Some(Chat::Private(user.id.clone())), "accepted") } else { (None, "declined") };
            let text = format!("{BOT_NAME} {verb} {}’s friend request", user.name);
            out.feed.push(notice_item(world.notice(chat.as_ref(), &text, now)));
            if user.friend {
                out.feed.push(world.snapshot());
                out.events.push(world.friend_increase_event(&user.id, now));
            }
            Ok(Value::Null)
        }
        "qq.set_group_add_request" => {
            let flag = string(params, "flag")?;
            Err(Fail(35001, format!("no group request has flag {flag:?}: the playground makes none")))
        }
        other => Err(Fail(10002, format!("unsupported action: the playground does not implement `{other}`"))),
    }
}

/// `get_version`, also the `version` of `meta.connect`.
pub fn version() -> Value {
    json!({"impl": IMPL, "version": VERSION, "onebot_version": "12"})
}

/// The page's feed item for a notice.
pub fn notice_item(notice: Value) -> Value {
    json!({"type": "notice", "notice": notice})
}

fn id(params: &Map<String, Value>, name: &str) -> Result<String, Fail> {
    match id_of(params.get(name)) {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(bad_param(format!("`{name}` is missing or not an id"))),
    }
}

fn string(params: &Map<String, Value>, name: &str) -> Result<String, Fail> {
    params
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| bad_param(format!("`{name}` is missing or not a string")))
}

fn group<'w>(world: &'w World, params: &Map<String, Value>) -> Result<&'w super::world::Group, Fail> {
    let g = id(params, "group_id")?;
    world.group(&g).ok_or_else(|| Fail(35001, format!("there is no group {g}")))
}

fn member(world: &World, id: &str) -> Result<Value, Fail> {
    Ok(json!({"user_id": id, "user_name": world.name_of(id), "user_displayname": ""}))
}

fn send_message(world: &mut World, params: &Map<String, Value>, now: f64, out: &mut Outcome) -> Result<Value, Fail> {
    let chat = match params.get("detail_type").and_then(Value::as_str) {
        Some("private") => Chat::Private(id(params, "user_id")?),
        Some("group") => Chat::Group(id(params, "group_id")?),
        Some(other) => {
            return Err(Fail(10004, format!("detail_type {other:?}: the playground has private and group chats only")))
        }
        None => return Err(bad_param("`detail_type` is missing")),
    };
    // v12: a list of segments; a single segment or a plain string are accepted too.
    let segments = match params.get("message") {
        Some(Value::Array(list)) => list.clone(),
        Some(Value::Object(seg)) => vec![Value::Object(seg.clone())],
        Some(Value::String(text)) => vec![json!({"type": "text", "data": {"text": text}})],
        _ => return Err(bad_param("`message` is missing or not a message")),
    };
    let message = world.post(chat, BOT_ID, segments, now)?;
    out.feed.push(json!({"type": "message", "chat": message.chat.key(), "message": message.page_json()}));
    Ok(json!({"message_id": message.id, "time": message.time}))
}

fn bytes_param(params: &Map<String, Value>, name: &str) -> Result<Vec<u8>, Fail> {
    match params.get(name) {
        Some(Value::String(s)) => STANDARD.decode(s.trim()).map_err(|_| bad_param(format!("`{name}` is not base64"))),
        _ => Err(bad_param(format!("`{name}` is missing or not base64 bytes"))),
    }
}

fn check_sha256(params: &Map<String, Value>, data: &[u8]) -> Result<(), Fail> {
    use sha2::Digest as _;
    if let Some(want) = params.get("sha256").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        let got = super::world::hex(&sha2::Sha256::digest(data));
        if !want.eq_ignore_ascii_case(&got) {
            return Err(bad_param(format!("the data's sha256 is {got}, not {want}")));
        }
    }
    Ok(())
}

fn upload_file(world: &mut World, params: &Map<String, Value>) -> Result<Value, Fail> {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("file");
    let id = match params.get("type").and_then(Value::as_str) {
        Some("data") => {
            let data = bytes_param(params, "data")?;
            check_sha256(params, &data)?;
            world.store_bytes(name, Bytes::from(data))?
        }
        Some("url") => world.store_url(name, &string(params, "url")?)?,
        Some("path") => {
            return Err(Fail(10004, "type `path`: the playground shares no disk with the bridge; send `data`".into()))
        }
        Some(other) => return Err(Fail(10004, format!("type {other:?}: the playground takes `data` and `url`"))),
        None => return Err(bad_param("`type` is missing")),
    };
    Ok(json!({"file_id": id}))
}

fn upload_fragmented(world: &mut World, params: &Map<String, Value>) -> Result<Value, Fail> {
    let offset_of = |name: &str| {
        params.get(name).and_then(Value::as_u64).ok_or_else(|| bad_param(format!("`{name}` is missing or not a size")))
    };
    match params.get("stage").and_then(Value::as_str) {
        Some("prepare") => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("file");
            Ok(json!({"file_id": world.fragment_prepare(name, offset_of("total_size")?)?}))
        }
        Some("transfer") => {
            let data = bytes_param(params, "data")?;
            world.fragment_transfer(&string(params, "file_id")?, offset_of("offset")?, &data)?;
            Ok(Value::Null)
        }
        Some("finish") => {
            let sha = params.get("sha256").and_then(Value::as_str);
            Ok(json!({"file_id": world.fragment_finish(&string(params, "file_id")?, sha)?}))
        }
        _ => Err(bad_param("`stage` must be prepare, transfer or finish")),
    }
}

fn get_file(world: &World, base: &str, params: &Map<String, Value>) -> Result<Value, Fail> {
    let file_id = string(params, "file_id")?;
    let file = world.file(&file_id).ok_or_else(|| Fail(35001, format!("there is no file {file_id}")))?;
    match (params.get("type").and_then(Value::as_str), &file.body) {
        (Some("url"), FileBody::Url(url)) => Ok(json!({"name": file.name, "url": url})),
        (Some("url"), FileBody::Bytes(_)) if !base.is_empty() => {
            Ok(json!({"name": file.name, "url": format!("{base}/files/{}", file.id)}))
        }
        (Some("url"), FileBody::Bytes(_)) => {
            Err(Fail(10004, "type `url`: the playground's pages are not served".into()))
        }
        (Some("data"), FileBody::Bytes(bytes)) => {
            use sha2::Digest as _;
            let sha = super::world::hex(&sha2::Sha256::digest(bytes));
            Ok(json!({"name": file.name, "data": STANDARD.encode(bytes), "sha256": sha}))
        }
        (Some("data"), FileBody::Url(url)) => {
            Err(Fail(10004, format!("type `data`: the playground only knows this file's URL, {url}")))
        }
        (Some(other), _) => Err(Fail(10004, format!("type {other:?}: the playground gives `url` and `data`"))),
        (None, _) => Err(bad_param("`type` is missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://127.0.0.1:5800/playground";

    fn ask(world: &mut World, request: Value) -> Outcome {
        answer(world, BASE, &request.to_string(), 7.0)
    }

    fn ok(world: &mut World, action: &str, params: Value) -> Value {
        let out = ask(world, json!({"action": action, "params": params, "echo": "e1"}));
        assert_eq!(out.response["status"], "ok", "{action}: {}", out.response);
        assert_eq!(out.response["retcode"], 0);
        assert_eq!(out.response["message"], "");
        assert_eq!(out.response["echo"], "e1");
        out.response["data"].clone()
    }

    fn failed(world: &mut World, action: &str, params: Value) -> (i64, String) {
        let out = ask(world, json!({"action": action, "params": params}));
        assert_eq!(out.response["status"], "failed", "{action}: {}", out.response);
        assert!(out.response.get("echo").is_none());
        assert!(out.response["data"].is_null());
        (out.response["retcode"].as_i64().unwrap(), out.response["message"].as_str().unwrap().to_owned())
    }

    #[test]
    fn meta_actions() {
        let mut w = World::new();
        assert_eq!(
            ok(&mut w, "get_version", json!({})),
            json!({"impl": "playground", "version": VERSION, "onebot_version": "12"})
        );
        let status = ok(&mut w, "get_status", json!({}));
        assert_eq!(status["bots"][0], json!({"self": {"platform": "qq", "user_id": "10000"}, "online": true}));
        let actions = ok(&mut w, "get_supported_actions", json!({}));
        assert!(actions.as_array().unwrap().contains(&json!("send_message")));
        assert_eq!(ok(&mut w, "get_self_info", json!({}))["user_name"], "Playground Bot");
    }

    #[test]
    fn bad_frames_and_unknown_actions() {
        let mut w = World::new();
        assert_eq!(answer(&mut w, BASE, "not json", 0.0).response["retcode"], 10001);
        assert_eq!(answer(&mut w, BASE, "[1]", 0.0).response["retcode"], 10001);
        let (code, msg) = failed(&mut w, "qq.poke", json!({}));
        assert_eq!(code, 10002);
        assert!(msg.contains("qq.poke"));
        let out =
            ask(&mut w, json!({"action": "get_status", "params": {}, "self": {"platform": "qq", "user_id": "1"}}));
        assert_eq!(out.response["retcode"], 10102);
        assert_eq!(failed(&mut w, "get_user_info", json!({})).0, 10003);
        assert_eq!(failed(&mut w, "get_user_info", json!({"user_id": "99"})).0, 35001);
        assert_eq!(failed(&mut w, "send_message", json!({"detail_type": "group", "group_id": "20001"})).0, 10003);
        let empty_text =
            json!({"detail_type": "group", "group_id": "20001", "message": [{"type": "text", "data": {}}]});
        assert_eq!(failed(&mut w, "send_message", empty_text).0, 10006);
        let unknown_file = json!({"detail_type": "group", "group_id": "20001", "message": [{"type": "image", "data": {"file_id": "nope"}}]});
        assert_eq!(failed(&mut w, "send_message", unknown_file).0, 10003);
    }

    #[test]
    fn users_and_groups() {
        let mut w = World::new();
        assert_eq!(ok(&mut w, "get_user_info", json!({"user_id": "10002"}))["user_name"], "Bob");
        assert_eq!(ok(&mut w, "get_friend_list", json!({})).as_array().unwrap().len(), 3);
        assert_eq!(
            ok(&mut w, "get_group_info", json!({"group_id": "20002"})),
            json!({"group_id": "20002", "group_name": "Bot lab"})
        );
        assert_eq!(ok(&mut w, "get_group_list", json!({})).as_array().unwrap().len(), 2);
        assert_eq!(ok(&mut w, "get_group_member_list", json!({"group_id": "20002"})).as_array().unwrap().len(), 2);
        assert_eq!(
            ok(&mut w, "get_group_member_info", json!({"group_id": 20001, "user_id": 10003}))["user_name"],
            "Carol"
        );
        assert_eq!(failed(&mut w, "get_group_member_info", json!({"group_id": "20002", "user_id": "10003"})).0, 35001);
        ok(&mut w, "set_group_name", json!({"group_id": "20002", "group_name": "Lab"}));
        assert_eq!(w.group("20002").unwrap().name, "Lab");
    }

    #[test]
    fn send_then_delete_reaches_the_page() {
        let mut w = World::new();
        let req = json!({"action": "send_message", "echo": "7", "params": {"detail_type": "group", "group_id": "20001",
            "message": [{"type": "mention", "data": {"user_id": "10001"}}, {"type": "text", "data": {"text": " hi"}}]}});
        let out = ask(&mut w, req);
        let id = out.response["data"]["message_id"].as_str().unwrap().to_owned();
        assert_eq!(out.response["data"]["time"], 7.0);
        assert_eq!(out.response["echo"], "7");
        assert_eq!(out.feed[0]["type"], "message");
        assert_eq!(out.feed[0]["chat"], "group:20001");
        assert_eq!(out.feed[0]["message"]["sender"], "10000");
        assert_eq!(out.feed[0]["message"]["alt"], "@Alice hi");
        let private = json!({"detail_type": "private", "user_id": "10002", "message": "plain"});
        ok(&mut w, "send_message", private);
        assert_eq!(
            failed(&mut w, "send_message", json!({"detail_type": "private", "user_id": "555", "message": "x"})).0,
            35001
        );
        assert_eq!(failed(&mut w, "send_message", json!({"detail_type": "channel", "message": "x"})).0, 10004);
        let out = ask(&mut w, json!({"action": "delete_message", "params": {"message_id": id}}));
        assert_eq!(out.response["status"], "ok");
        assert_eq!(out.feed, vec![json!({"type": "recall", "chat": "group:20001", "message_id": id})]);
        assert_eq!(failed(&mut w, "delete_message", json!({"message_id": id})).0, 35001);
    }

    #[test]
    fn files_by_data_url_and_fragments() {
        let mut w = World::new();
        let png = [0x89, b'P', b'N', b'G', 1, 2, 3];
        let data = STANDARD.encode(png);
        let id = ok(&mut w, "upload_file", json!({"type": "data", "name": "a.png", "data": data}))["file_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let url = ok(&mut w, "get_file", json!({"file_id": id, "type": "url"}));
        assert_eq!(url["url"], format!("{BASE}/files/{id}"));
        assert_eq!(ok(&mut w, "get_file", json!({"file_id": id, "type": "data"}))["data"], data);
        assert_eq!(failed(&mut w, "get_file", json!({"file_id": id, "type": "path"})).0, 10004);
        assert_eq!(failed(&mut w, "upload_file", json!({"type": "path", "name": "x", "path": "/etc/passwd"})).0, 10004);
        assert_eq!(
            failed(&mut w, "upload_file", json!({"type": "data", "name": "x", "data": data, "sha256": "00"})).0,
            10003
        );
        let by_url =
            ok(&mut w, "upload_file", json!({"type": "url", "name": "b.jpg", "url": "https://example.com/b.jpg"}));
        let url = ok(&mut w, "get_file", json!({"file_id": by_url["file_id"], "type": "url"}));
        assert_eq!(url["url"], "https://example.com/b.jpg");
        let tmp = ok(&mut w, "upload_file_fragmented", json!({"stage": "prepare", "name": "c.png", "total_size": 7}));
        let tmp = tmp["file_id"].clone();
        ok(
            &mut w,
            "upload_file_fragmented",
            json!({"stage": "transfer", "file_id": tmp, "offset": 0, "data": STANDARD.encode(&png[..4])}),
        );
        ok(
            &mut w,
            "upload_file_fragmented",
            json!({"stage": "transfer", "file_id": tmp, "offset": 4, "data": STANDARD.encode(&png[4..])}),
        );
        use sha2::Digest as _;
        let sha = super::super::world::hex(&sha2::Sha256::digest(png));
        let done = ok(&mut w, "upload_file_fragmented", json!({"stage": "finish", "file_id": tmp, "sha256": sha}));
        let sent = json!({"detail_type": "private", "user_id": "10001", "message": [{"type": "image", "data": {"file_id": done["file_id"]}}]});
        ok(&mut w, "send_message", sent);
    }

    #[test]
    fn friend_request_answered_through_the_qq_action() {
        let mut w = World::new();
        let ev = w.friend_request("10009", "Dave", "hello", 1.0).unwrap();
        let out = ask(
            &mut w,
            json!({"action": "qq.set_friend_add_request", "params": {"flag": ev["flag"], "approve": true}}),
        );
        assert_eq!(out.response["status"], "ok");
        assert_eq!(out.feed[0]["notice"]["text"], "Playground Bot accepted Dave’s friend request");
        assert_eq!(out.feed[0]["notice"]["chat"], "private:10009");
        assert_eq!(out.feed[1]["type"], "snapshot");
        assert_eq!(out.events[0]["detail_type"], "friend_increase");
        assert_eq!(failed(&mut w, "qq.set_friend_add_request", json!({"flag": ev["flag"]})).0, 35001);
        assert_eq!(failed(&mut w, "qq.set_friend_add_request", json!({})).0, 10003);
    }
}
