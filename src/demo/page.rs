//! The playground's chat page and its HTTP API, under `/playground` on the admin listener:
//!
//! - `GET /playground/`: the page ([`PAGE`], plain HTML and JS, nothing fetched from elsewhere);
//!   `GET /playground` redirects there.
//! - `GET /playground/feed`: Server-Sent Events — a `snapshot` (bot, users, groups, every chat's
//!   kept messages, notices), then `message`, `recall`, `notice`, `link` items and, when the
//!   world's shape changes (a new friend, a member join, a rename), a fresh `snapshot`.
//! - `POST /playground/api/send` `{chat, user_id, text, mention_bot, reply_to, image}` →
//!   `{message_id, bot_connected}`; `api/recall` `{chat, message_id}`; `api/friend_request`
//!   `{user_id?, name?, comment?}`; `api/member_join` `{group_id, user_id?, name?}`. Each turns
//!   into the v12 event a platform would send. Bodies at most [`MAX_BODY`] bytes (413 beyond),
//!   400 with `{"error": …}` on bad input, 405 on a wrong method.
//! - `GET /playground/files/{file_id}`: a kept file's bytes (its sniffed picture type, else
//!   `application/octet-stream`), or a redirect to the URL the bot named; 404 otherwise.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};
use tokio::sync::watch;

use super::actions::notice_item;
use super::world::{id_of, is_numeric_id, Chat, FileBody, UserSend, World, WorldError, BOT_ID, MAX_FILE_BYTES};
use super::{now, Playground};
use crate::admin::{method_not_allowed, not_found, read_body, respond, respond_json, sse, Body, HTML, TEXT};
use crate::sync::LockUnpoisoned;

/// The chat page.
pub const PAGE: &str = include_str!("page.html");
/// Largest API request body: a picture of [`MAX_FILE_BYTES`] as base64 and the rest.
pub const MAX_BODY: usize = 14 << 20;

pub async fn handle(
    req: Request<Incoming>,
    playground: &Arc<Playground>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/playground").unwrap_or_default();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match rest {
        "" if get => {
            let mut resp = respond(StatusCode::PERMANENT_REDIRECT, TEXT, "");
            resp.headers_mut().insert(LOCATION, HeaderValue::from_static("/playground/"));
            resp
        }
        "" | "/" | "/feed" => {
            if !get {
                return method_not_allowed("GET");
            }
            if rest == "/feed" {
                let (snapshot, live) = playground.subscribe();
                return sse(vec![snapshot], live, shutdown);
            }
            let mut resp = respond(StatusCode::OK, HTML, PAGE);
            resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        "/api/send" | "/api/recall" | "/api/friend_request" | "/api/member_join" => {
            if req.method() != Method::POST {
                return method_not_allowed("POST");
            }
            let body = match read_body(req, MAX_BODY).await {
                Ok(body) => body,
                Err(resp) => return resp,
            };
            let params = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(params)) => params,
                _ => return error(StatusCode::BAD_REQUEST, "the body must be a JSON object".into()),
            };
            let answered = match rest {
                "/api/send" => send(playground, &params),
                "/api/recall" => recall(playground, &params),
                "/api/friend_request" => friend_request(playground, &params),
                _ => member_join(playground, &params),
            };
            match answered {
                Ok(mut answer) => {
                    answer["bot_connected"] = playground.connected.load(std::sync::atomic::Ordering::Relaxed).into();
                    respond_json(StatusCode::OK, &answer)
                }
                Err(WorldError::TooLarge(msg)) => error(StatusCode::PAYLOAD_TOO_LARGE, msg),
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        _ => match rest.strip_prefix("/files/") {
            Some(id) if get => file(playground, id),
            Some(_) => method_not_allowed("GET"),
            None => not_found(),
        },
    }
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    respond_json(status, &json!({"error": message}))
}

fn file(playground: &Playground, id: &str) -> Response<Body> {
    let world = playground.world.lock_unpoisoned();
    let Some(file) = world.file(id) else { return not_found() };
    match &file.body {
        FileBody::Bytes(bytes) => {
            let mut resp = respond(StatusCode::OK, file.mime, bytes.clone());
            let headers = resp.headers_mut();
            headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400, immutable"));
            resp
        }
        FileBody::Url(url) => match HeaderValue::from_str(url) {
            Ok(location) => {
                let mut resp = respond(StatusCode::FOUND, TEXT, "");
                resp.headers_mut().insert(LOCATION, location);
                resp
            }
            Err(_) => not_found(),
        },
    }
}

fn bad(msg: impl Into<String>) -> WorldError {
    WorldError::BadParam(msg.into())
}

fn str_field<'a>(params: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, WorldError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(format!("`{name}` must be a string"))),
    }
}

fn id_field(params: &Map<String, Value>, name: &str) -> Result<Option<String>, WorldError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        v => match id_of(v) {
            Some(id) if is_numeric_id(&id) => Ok(Some(id)),
            _ => Err(bad(format!("`{name}` must be a numeric id such as \"10001\""))),
        },
    }
}

fn chat_field(params: &Map<String, Value>) -> Result<Chat, WorldError> {
    let key = str_field(params, "chat")?.ok_or_else(|| bad("`chat` is missing"))?;
    Chat::parse(key).ok_or_else(|| bad(format!("`chat` {key:?} must be \"group:<id>\" or \"private:<id>\"")))
}

fn send(playground: &Playground, params: &Map<String, Value>) -> Result<Value, WorldError> {
    let chat = chat_field(params)?;
    let user_id = id_field(params, "user_id")?.ok_or_else(|| bad("`user_id` is missing"))?;
    let text = str_field(params, "text")?.unwrap_or_default().to_owned();
    let mention_bot = match params.get("mention_bot") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("`mention_bot` must be true or false")),
    };
    let reply_to = str_field(params, "reply_to")?.filter(|r| !r.is_empty()).map(str::to_owned);
    let image = match params.get("image") {
        None | Some(Value::Null) => None,
        Some(Value::Object(image)) => {
            let name = str_field(image, "name")?.unwrap_or("picture").to_owned();
            let data = str_field(image, "data_base64")?.ok_or_else(|| bad("`image.data_base64` is missing"))?;
            if data.len() > MAX_FILE_BYTES / 3 * 4 + 8 {
                return Err(WorldError::TooLarge(format!("the picture is larger than {MAX_FILE_BYTES} bytes")));
            }
            let bytes = STANDARD.decode(data.trim()).map_err(|_| bad("`image.data_base64` is not base64"))?;
            Some((name, Bytes::from(bytes)))
        }
        Some(_) => return Err(bad("`image` must be {name, mime, data_base64} or null")),
    };
    let send = UserSend { chat, user_id, text, mention_bot, reply_to, image };
    playground.with_world(|world, feed, events| {
        let message = world.user_send(send, now())?;
        feed.push(json!({"type": "message", "chat": message.chat.key(), "message": message.page_json()}));
        events.push(world.message_event(&message));
        Ok(json!({"message_id": message.id}))
    })
}

fn recall(playground: &Playground, params: &Map<String, Value>) -> Result<Value, WorldError> {
    let chat = chat_field(params)?;
    let message_id = str_field(params, "message_id")?.ok_or_else(|| bad("`message_id` is missing"))?.to_owned();
    playground.with_world(|world, feed, events| {
        let sender = world
            .history(&chat)
            .and_then(|h| h.iter().find(|m| m.id == message_id))
            .map(|m| m.sender.clone())
            .ok_or_else(|| WorldError::NotFound(format!("message {message_id} is not in {}", chat.key())))?;
        if sender == BOT_ID {
            return Err(WorldError::Refused("the page plays the users: the bot recalls its own messages".into()));
        }
        let gone = world.recall(&message_id, &sender)?;
        let time = now();
        events.push(world.recall_event(&gone, &sender, time));
        feed.push(json!({"type": "recall", "chat": chat.key(), "message_id": gone.id}));
        Ok(json!({"message_id": gone.id}))
    })
}

/// The first id from 10009 up that nobody has.
fn free_user_id(world: &World) -> String {
    (10009u64..)
        .map(|n| n.to_string())
        .find(|id| world.user(id).is_none() && world.group(id).is_none())
        .unwrap_or_else(|| "10099".into())
}

fn default_name(id: &str) -> String {
    match id {
        "10009" => "Dave".into(),
        "10010" => "Erin".into(),
        "10011" => "Frank".into(),
        "10012" => "Grace".into(),
        _ => format!("User {id}"),
    }
}

fn friend_request(playground: &Playground, params: &Map<String, Value>) -> Result<Value, WorldError> {
    let user_id = id_field(params, "user_id")?;
    let name = str_field(params, "name")?.map(str::to_owned);
    let comment = str_field(params, "comment")?.map(str::to_owned);
    playground.with_world(|world, feed, events| {
        let user_id = user_id.unwrap_or_else(|| free_user_id(world));
        let name = name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| world.user(&user_id).map(|u| u.name.clone()).unwrap_or_else(|| default_name(&user_id)));
        let comment = comment.unwrap_or_else(|| format!("Hi! I'm {name}."));
        let time = now();
        let event = world.friend_request(&user_id, &name, &comment, time)?;
        let flag = event["flag"].clone();
        events.push(event);
        let text = format!("{} ({user_id}) asked to be the bot's friend: “{comment}”", world.name_of(&user_id));
        feed.push(notice_item(world.notice(None, &text, time)));
        Ok(json!({"user_id": user_id, "flag": flag}))
    })
}

fn member_join(playground: &Playground, params: &Map<String, Value>) -> Result<Value, WorldError> {
    let group_id = id_field(params, "group_id")?.ok_or_else(|| bad("`group_id` is missing"))?;
    let user_id = id_field(params, "user_id")?;
    let name = str_field(params, "name")?.unwrap_or_default().to_owned();
    playground.with_world(|world, feed, events| {
        let group =
            world.group(&group_id).ok_or_else(|| WorldError::NotFound(format!("there is no group {group_id}")))?;
        let user_id = user_id.unwrap_or_else(|| {
            let outside = world.users().find(|u| !group.members.contains(&u.id)).map(|u| u.id.clone());
            outside.unwrap_or_else(|| free_user_id(world))
        });
        let name = if name.trim().is_empty() && world.user(&user_id).is_none() { default_name(&user_id) } else { name };
        let time = now();
        events.push(world.member_join(&group_id, &user_id, &name, time)?);
        let group_name = world.group(&group_id).map(|g| g.name.clone()).unwrap_or_default();
        let text = format!("{} joined {group_name}", world.name_of(&user_id));
        feed.push(notice_item(world.notice(Some(&Chat::Group(group_id.clone())), &text, time)));
        feed.push(world.snapshot());
        Ok(json!({"group_id": group_id, "user_id": user_id}))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn item(bytes: Bytes) -> Value {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        serde_json::from_str(text.trim().strip_prefix("data: ").unwrap()).unwrap()
    }

    #[test]
    fn send_reaches_the_feed_and_the_bridge() {
        let pg = Playground::new("http://x/playground".into());
        let (_, mut feed) = pg.subscribe();
        let mut events = pg.events.subscribe();
        let png = STANDARD.encode([0x89, b'P', b'N', b'G', 0]);
        let body = json!({"chat": "group:20001", "user_id": "10001", "text": "hi", "mention_bot": true,
            "reply_to": null, "image": {"name": "a.png", "mime": "image/png", "data_base64": png}});
        let answer = send(&pg, &params(body)).unwrap();
        let shown = item(feed.try_recv().unwrap());
        assert_eq!(shown["type"], "message");
        assert_eq!(shown["message"]["id"], answer["message_id"]);
        let ev: Value = serde_json::from_str(&events.try_recv().unwrap()).unwrap();
        assert_eq!(ev["message_id"], answer["message_id"]);
        assert_eq!(ev["message"][0], json!({"type": "mention", "data": {"user_id": "10000"}}));
        assert_eq!(ev["message"][2]["type"], "image");
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let pg = Playground::new(String::new());
        let cases = [
            json!({"user_id": "10001", "text": "x"}),
            json!({"chat": "group:1", "user_id": "10001", "text": "x"}),
            json!({"chat": "group:20001", "user_id": "alice", "text": "x"}),
            json!({"chat": "group:20001", "user_id": "10001", "text": 5}),
            json!({"chat": "group:20001", "user_id": "10001", "text": ""}),
            json!({"chat": "group:20001", "user_id": "10001", "image": {"data_base64": "!!"}}),
        ];
        for case in cases {
            assert!(send(&pg, &params(case.clone())).is_err(), "{case}");
        }
        let big = "A".repeat(MAX_FILE_BYTES / 3 * 4 + 12);
        let body = json!({"chat": "group:20001", "user_id": "10001", "image": {"data_base64": big}});
        assert!(matches!(send(&pg, &params(body)), Err(WorldError::TooLarge(_))));
    }

    #[test]
    fn recall_only_users_messages() {
        let pg = Playground::new(String::new());
        let sent = send(&pg, &params(json!({"chat": "private:10002", "user_id": "10002", "text": "x"}))).unwrap();
        let bot =
            json!({"action": "send_message", "params": {"detail_type": "private", "user_id": "10002", "message": "y"}});
        let answer: Value = serde_json::from_str(&pg.answer(&bot.to_string())).unwrap();
        let bot_id = answer["data"]["message_id"].clone();
        assert!(recall(&pg, &params(json!({"chat": "private:10002", "message_id": bot_id}))).is_err());
        assert!(recall(&pg, &params(json!({"chat": "private:10001", "message_id": sent["message_id"]}))).is_err());
        let mut events = pg.events.subscribe();
        recall(&pg, &params(json!({"chat": "private:10002", "message_id": sent["message_id"]}))).unwrap();
        let ev: Value = serde_json::from_str(&events.try_recv().unwrap()).unwrap();
        assert_eq!(ev["detail_type"], "private_message_delete");
    }

    #[test]
    fn one_click_friend_request_and_member_join() {
        let pg = Playground::new(String::new());
        let a = friend_request(&pg, &Map::new()).unwrap();
        assert_eq!(a["user_id"], "10009");
        let b = friend_request(&pg, &Map::new()).unwrap();
        assert_eq!(b["user_id"], "10010", "a second click asks for someone new");
        let j = member_join(&pg, &params(json!({"group_id": "20002"}))).unwrap();
        assert_eq!(j["user_id"], "10002", "the first user outside the group");
        assert!(member_join(&pg, &params(json!({"group_id": "20002", "user_id": "10002"}))).is_err());
        assert!(member_join(&pg, &Map::new()).is_err());
    }
}
