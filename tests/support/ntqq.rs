//! A scripted NTQQ OneBot v11 implementation (NapCat, LLBot or Lagrange.OneBot), as the bridge's
//! v11 backend links meet them: serving its forward WebSocket ([`Ntqq::start`]), dialling the
//! bridge's reverse WebSocket ([`Ntqq::dial`], with `X-Client-Role`, `X-Self-ID` and a Bearer
//! token, as NapCat's reverse-WebSocket client does), or serving go-cqhttp's HTTP API
//! (`POST /<action>`) and posting its events to the bridge ([`Ntqq::start_http`], HTTP POST with
//! `X-Self-ID` and, with a secret, `X-Signature`).
//!
//! Modelled on each dialect's documented behaviour (`reference/ecosystem.md` A.11, A.12):
//! - the handshake: `Authorization: Bearer` or `?access_token=`, 401 without and 403 with a wrong
//!   one; a `lifecycle.connect` meta event first, then heartbeats on request;
//! - `get_version_info` with the implementation's own `app_name`;
//! - message ids made the implementation's way: NapCat's MD5 prefix with the top bit cleared
//!   (memory only: [`Ntqq::restart`] forgets them), LLBot's MD5 read as a signed int32 (negative
//!   ids happen), Lagrange's `(seq << 16) | (rand & 0xFFFF)` (the same id in two chats);
//! - `send_msg`, `delete_msg` and `get_msg` against what it remembers; actions it does not have
//!   answer `1404`; every request is recorded for the test to look at.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use md5::Digest;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use super::WAIT;

/// Which implementation the script plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    NapCat,
    LlBot,
    Lagrange,
}

impl Dialect {
    pub fn app_name(self) -> &'static str {
        match self {
            Dialect::NapCat => "NapCat.Onebot",
            Dialect::LlBot => "LLOneBot",
            Dialect::Lagrange => "Lagrange.OneBot",
        }
    }

    /// The profile the bridge should pick for it.
    pub fn profile(self) -> &'static str {
        match self {
            Dialect::NapCat => "napcat",
            Dialect::LlBot => "llbot",
            Dialect::Lagrange => "lagrange",
        }
    }

    /// The implementation's id for its `n`th message in `chat` (`g<group>` or `u<user>`):
    /// NapCat `MD5(msgId|chatType|peerUid)`, top bit cleared; LLBot
    /// `MD5(chatType-peerUid-msgSeq-msgRandom-msgTime)` read as a signed int32; Lagrange
    /// `((seq & 0xFFFF) << 16) | (msgId & 0xFFFF)`, with a sequence per chat (so two chats' n-th
    /// messages share an id when their random parts do).
    pub fn message_id(self, chat: &str, n: i64) -> i64 {
        let (chat_type, peer) = chat.split_at(1);
        let chat_type = if chat_type == "g" { 2 } else { 1 };
        let md5 = |s: String| {
            let digest = md5::Md5::digest(s.as_bytes());
            [digest[0], digest[1], digest[2], digest[3]]
        };
        let msg_id = 7_300_000_000_000_000_000u64 + n as u64;
        match self {
            Dialect::NapCat => (u32::from_be_bytes(md5(format!("{msg_id}|{chat_type}|{peer}"))) & 0x7fff_ffff) as i64,
            Dialect::LlBot => {
                i32::from_be_bytes(md5(format!("{chat_type}-{peer}-{n}-{}-{}", n * 7919, 1_700_000_000 + n))) as i64
            }
            Dialect::Lagrange => (((n & 0xffff) << 16) | (msg_id as i64 & 0xffff)) as i32 as i64,
        }
    }
}

#[derive(Default)]
struct Memory {
    /// message id → (chat, the message as get_msg answers it).
    messages: HashMap<i64, (String, Value)>,
    /// Messages sent per chat (the dialect's sequence).
    sent: HashMap<String, i64>,
}

struct Script {
    /// HTTP mode: where events are posted, and the secret they are signed with.
    post: Option<(String, Option<String>)>,
    dialect: Dialect,
    self_id: i64,
    token: Option<String>,
    memory: Mutex<Memory>,
    requests: mpsc::UnboundedSender<Value>,
    push: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    connections: AtomicUsize,
    clock: AtomicI64,
}

/// The scripted implementation.
pub struct Ntqq {
    pub addr: SocketAddr,
    script: Arc<Script>,
    requests: mpsc::UnboundedReceiver<Value>,
    task: JoinHandle<()>,
}

impl Drop for Ntqq {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Script {
    /// A fresh script and the receiving end of its request record.
    fn new(
        dialect: Dialect,
        self_id: i64,
        token: Option<&str>,
        post: Option<(String, Option<String>)>,
    ) -> (Arc<Script>, mpsc::UnboundedReceiver<Value>) {
        let (tx, requests) = mpsc::unbounded_channel();
        let script = Script {
            post,
            dialect,
            self_id,
            token: token.map(str::to_owned),
            memory: Mutex::default(),
            requests: tx,
            push: Mutex::new(None),
            connections: AtomicUsize::new(0),
            clock: AtomicI64::new(1_700_000_000),
        };
        (Arc::new(script), requests)
    }
}

impl Ntqq {
    /// Serves its forward WebSocket on a loopback port, as account `self_id`.
    pub async fn start(dialect: Dialect, self_id: i64, token: Option<&str>) -> Ntqq {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (script, requests) = Script::new(dialect, self_id, token, None);
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, script.clone()));
        Ntqq { addr, script, requests, task }
    }

    /// Dials the bridge's reverse WebSocket at `addr` as account `self_id`, in `role`
    /// (`Universal`, or go-cqhttp's `API` / `Event`).
    pub async fn dial(
        dialect: Dialect,
        self_id: i64,
        token: Option<&str>,
        addr: SocketAddr,
        role: &str,
    ) -> Result<Ntqq, tokio_tungstenite::tungstenite::Error> {
        Ntqq::dial_roles(dialect, self_id, token, addr, &[role]).await
    }

    /// Dials one connection per role (go-cqhttp's split pair is `["API", "Event"]`), all of one
    /// implementation: events go out on the connections that carry them, requests are answered
    /// on those that carry actions.
    pub async fn dial_roles(
        dialect: Dialect,
        self_id: i64,
        token: Option<&str>,
        addr: SocketAddr,
        roles: &[&str],
    ) -> Result<Ntqq, tokio_tungstenite::tungstenite::Error> {
        let (script, requests) = Script::new(dialect, self_id, None, None);
        let mut sessions = Vec::new();
        for role in roles {
            let ws = dial_one(self_id, token, addr, role).await?;
            script.connections.fetch_add(1, Ordering::SeqCst);
            sessions.push(tokio::spawn(session(ws, script.clone(), Carries::of(role))));
        }
        let task = tokio::spawn(async move {
            for s in sessions {
                let _ = s.await;
            }
        });
        Ok(Ntqq { addr, script, requests, task })
    }

    /// Opens one more connection in `role` for this implementation (a reconnect), returning
    /// its task; aborting the task drops the connection without a Close frame.
    pub async fn redial(&self, token: Option<&str>, role: &str) -> JoinHandle<()> {
        let ws = dial_one(self.script.self_id, token, self.addr, role).await.expect("redial");
        self.script.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(session(ws, self.script.clone(), Carries::of(role)))
    }

    /// Serves go-cqhttp's HTTP API on a loopback port (Bearer token checked) and posts its
    /// events to `post_to` (the bridge's receiver), signed with `secret` when given.
    pub async fn start_http(
        dialect: Dialect,
        self_id: i64,
        token: Option<&str>,
        post_to: std::net::SocketAddr,
        secret: Option<&str>,
    ) -> Ntqq {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (script, requests) =
            Script::new(dialect, self_id, token, Some((format!("http://{post_to}/"), secret.map(str::to_owned))));
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve_http(listener, script.clone()));
        Ntqq { addr, script, requests, task }
    }

    /// HTTP mode: posts an event to the bridge as the implementation's HTTP POST does; the
    /// status the bridge answered.
    pub async fn post(&self, event: Value) -> u16 {
        let (url, secret) = self.script.post.clone().expect("an HTTP-mode script");
        let body = event.to_string();
        let mut req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("x-self-id", self.script.self_id.to_string());
        if let Some(secret) = secret {
            req = req.header("x-signature", onebot_bridge::bots::http_post::signature(&secret, body.as_bytes()));
        }
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let resp = client.request(req.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await;
        resp.expect("the bridge's receiver answers").status().as_u16()
    }

    /// Sends an event the way this implementation is connected: on its WebSocket, or by its
    /// HTTP POST (which must be taken: 204).
    pub async fn emit(&self, event: Value) {
        if self.script.post.is_some() {
            assert_eq!(self.post(event).await, 204, "the bridge refused the post");
        } else {
            self.push(event);
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.script.connections.load(Ordering::SeqCst)
    }

    /// A killed and restarted implementation: connections dropped without a Close frame, its
    /// message memory gone (NapCat keeps ids in memory only), serving again on the same port.
    pub async fn restart(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        *self.script.push.lock().unwrap() = None;
        *self.script.memory.lock().unwrap() = Memory::default();
        let listener = TcpListener::bind(self.addr).await.expect("the old port is taken");
        self.task = tokio::spawn(serve(listener, self.script.clone()));
    }

    /// Sends an event (a v11 JSON object) on the live connection.
    pub fn push(&self, event: Value) {
        let push = self.script.push.lock().unwrap();
        push.as_ref().expect("no live connection").send(Message::text(event.to_string())).unwrap();
    }

    /// Waits until the bridge is connected.
    pub async fn wait_connected(&self) {
        tokio::time::timeout(WAIT, async {
            while self.script.push.lock().unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the bridge never connected");
    }

    /// A group message from `user_id`, remembered as the implementation would (its id made the
    /// dialect's way, `n` its sequence in the group). Returns the event.
    pub fn group_message(&self, group_id: i64, user_id: i64, n: i64, message: Value) -> Value {
        let chat = format!("g{group_id}");
        let id = self.script.dialect.message_id(&chat, n);
        let time = self.script.clock.fetch_add(1, Ordering::SeqCst);
        let raw = cq_of(&message);
        let ev = json!({
            "self_id": self.script.self_id, "user_id": user_id, "time": time, "message_id": id,
            "message_seq": id, "real_id": id, "message_type": "group", "sub_type": "normal",
            "sender": {"user_id": user_id, "nickname": format!("user{user_id}"), "card": "", "role": "member"},
            "raw_message": raw, "font": 14, "group_id": group_id, "post_type": "message",
            "message_format": "array", "message": message
        });
        self.remember(id, &chat, &ev);
        ev
    }

    fn remember(&self, id: i64, chat: &str, ev: &Value) {
        self.script.memory.lock().unwrap().messages.insert(id, (chat.to_owned(), ev.clone()));
    }

    /// Whether it still knows a message id.
    pub fn knows(&self, id: i64) -> bool {
        self.script.memory.lock().unwrap().messages.contains_key(&id)
    }

    /// The next request the bridge made, skipping its own discovery calls.
    pub async fn next_request(&mut self) -> Value {
        loop {
            let req = tokio::time::timeout(WAIT, self.requests.recv())
                .await
                .expect("no request from the bridge")
                .expect("the script stopped");
            if !is_discovery(&req) {
                return req;
            }
        }
    }

    /// The next request named `action`, skipping others.
    pub async fn next_action(&mut self, action: &str) -> Value {
        loop {
            let req = self.next_request().await;
            if req["action"] == action {
                return req;
            }
        }
    }

    /// Requests made so far and not yet read, discovery calls included.
    pub fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(r) = self.requests.try_recv() {
            out.push(r);
        }
        out
    }
}

/// A request the bridge makes on its own to learn the implementation.
pub fn is_discovery(req: &Value) -> bool {
    matches!(req["action"].as_str(), Some("get_login_info" | "get_version_info" | "get_status"))
}

/// go-cqhttp's CQ rendering of an array message (text escaped, values escaped), for raw_message.
fn cq_of(message: &Value) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('[', "&#91;").replace(']', "&#93;");
    let mut out = String::new();
    for seg in message.as_array().into_iter().flatten() {
        let kind = seg["type"].as_str().unwrap_or("");
        if kind == "text" {
            out.push_str(&esc(seg["data"]["text"].as_str().unwrap_or("")));
            continue;
        }
        out.push_str("[CQ:");
        out.push_str(kind);
        for (k, v) in seg["data"].as_object().into_iter().flatten() {
            let v = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
            out.push_str(&format!(",{k}={}", esc(&v).replace(',', "&#44;")));
        }
        out.push(']');
    }
    out
}

async fn serve(listener: TcpListener, script: Arc<Script>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let script = script.clone();
        tokio::spawn(async move {
            let expected = script.token.clone();
            #[allow(clippy::result_large_err)]
            let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                let Some(expected) = &expected else { return Ok(resp) };
                let header = req.headers().get("authorization").and_then(|v| v.to_str().ok());
                let query = req.uri().query().unwrap_or("");
                let presented = match header {
                    Some(h) => h.strip_prefix("Bearer ").map(str::to_owned),
                    None => url::form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == "access_token")
                        .map(|(_, v)| v.into_owned()),
                };
                let status = match presented {
                    None => StatusCode::UNAUTHORIZED,
                    Some(p) if &p == expected => return Ok(resp),
                    Some(_) => StatusCode::FORBIDDEN,
                };
                let mut refused = ErrorResponse::new(Some("token check failed".into()));
                *refused.status_mut() = status;
                Err(refused)
            };
            // NapCat's WebSocket library takes frames up to 100 MiB (large base64 media).
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(Some(128 << 20))
                .max_frame_size(Some(128 << 20));
            let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config)).await else {
                return;
            };
            script.connections.fetch_add(1, Ordering::SeqCst);
            session(ws, script, Carries::ALL).await;
        });
    }
}

/// What one of the implementation's connections carries (its `X-Client-Role`).
#[derive(Debug, Clone, Copy)]
struct Carries {
    events: bool,
    actions: bool,
}

impl Carries {
    const ALL: Carries = Carries { events: true, actions: true };

    fn of(role: &str) -> Carries {
        match role {
            "API" => Carries { events: false, actions: true },
            "Event" => Carries { events: true, actions: false },
            _ => Carries::ALL,
        }
    }
}

async fn dial_one(
    self_id: i64,
    token: Option<&str>,
    addr: SocketAddr,
    role: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut req = format!("ws://{addr}/onebot/v11/ws").into_client_request().unwrap();
    let headers = req.headers_mut();
    headers.insert("X-Client-Role", HeaderValue::from_str(role).unwrap());
    headers.insert("X-Self-ID", HeaderValue::from_str(&self_id.to_string()).unwrap());
    headers.insert("User-Agent", HeaderValue::from_static("OneBot/11"));
    if let Some(t) = token {
        headers.insert("Authorization", HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
    }
    Ok(tokio_tungstenite::connect_async(req).await?.0)
}

async fn session<S>(ws: tokio_tungstenite::WebSocketStream<S>, script: Arc<Script>, carries: Carries)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    if carries.events {
        let hello = json!({"time": 1_700_000_000, "self_id": script.self_id, "post_type": "meta_event",
                           "meta_event_type": "lifecycle", "sub_type": "connect"});
        let _ = sink.send(Message::text(hello.to_string())).await;
        *script.push.lock().unwrap() = Some(tx);
    }
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { return };
                if sink.send(out).await.is_err() { return; }
            }
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) if carries.actions => {
                    let Ok(req) = serde_json::from_str::<Value>(&text) else { continue };
                    let _ = script.requests.send(req.clone());
                    let mut answer = answer(&script, &req);
                    answer["echo"] = req["echo"].clone();
                    if sink.send(Message::text(answer.to_string())).await.is_err() { return; }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

async fn serve_http(listener: TcpListener, script: Arc<Script>) {
    use http_body_util::BodyExt;
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let script = script.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let script = script.clone();
            async move {
                let reply = |status: u16, body: String| {
                    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(resp)
                };
                if let Some(expected) = &script.token {
                    let presented = req.headers().get("authorization").and_then(|v| v.to_str().ok());
                    match presented.and_then(|p| p.strip_prefix("Bearer ")) {
                        None => return reply(401, String::new()),
                        Some(p) if p != expected => return reply(403, String::new()),
                        Some(_) => {}
                    }
                }
                let action = req.uri().path().trim_start_matches('/').to_owned();
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let params: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
                let request = json!({"action": action, "params": params});
                let _ = script.requests.send(request.clone());
                reply(200, answer(&script, &request).to_string())
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(script: &Script, req: &Value) -> Value {
    let ok = |data: Value| json!({"status": "ok", "retcode": 0, "data": data, "message": "", "wording": ""});
    let failed = |retcode: i64, wording: &str| json!({"status": "failed", "retcode": retcode, "data": null, "message": wording, "wording": wording});
    let p = &req["params"];
    let dialect = script.dialect;
    match req["action"].as_str().unwrap_or("") {
        "get_login_info" => ok(json!({"user_id": script.self_id, "nickname": "ntqq-bot"})),
        "get_status" => ok(json!({"online": true, "good": true, "stat": {}})),
        "get_version_info" => {
            ok(json!({"app_name": dialect.app_name(), "protocol_version": "v11", "app_version": "4.8.0"}))
        }
        "send_msg" | "send_group_msg" | "send_private_msg" => {
            let group = p["group_id"].as_i64();
            let chat = match group {
                Some(g) => format!("g{g}"),
                None => format!("u{}", p["user_id"].as_i64().unwrap_or(0)),
            };
            if !p["message"].is_array() {
                return failed(1400, "message must be an array");
            }
            let mut memory = script.memory.lock().unwrap();
            let n = {
                let n = memory.sent.entry(chat.clone()).or_insert(1000);
                *n += 1;
                *n
            };
            let id = dialect.message_id(&chat, n);
            let stored = json!({"message_id": id, "real_id": id, "time": 1_700_000_100, "message_type": if group.is_some() {"group"} else {"private"},
                                "group_id": group, "sender": {"user_id": script.self_id, "nickname": "ntqq-bot"},
                                "message": p["message"], "raw_message": cq_of(&p["message"])});
            memory.messages.insert(id, (chat, stored));
            ok(json!({"message_id": id}))
        }
        "delete_msg" => match p["message_id"].as_i64() {
            Some(id) if script.memory.lock().unwrap().messages.remove(&id).is_some() => ok(Value::Null),
            _ => failed(1404, "消息不存在"),
        },
        "get_msg" => {
            match p["message_id"].as_i64().and_then(|id| script.memory.lock().unwrap().messages.get(&id).cloned()) {
                Some((_, message)) => ok(message),
                None => failed(1404, "消息不存在"),
            }
        }
        // NTQQ implementations read `message_seq` as a message id (Lagrange.OneBot names it
        // `message_id`); absent: the latest. The `count` messages up to it, oldest first.
        action @ ("get_group_msg_history" | "get_friend_msg_history") => {
            let chat = match action {
                "get_group_msg_history" => format!("g{}", p["group_id"].as_i64().unwrap_or(0)),
                _ => format!("u{}", p["user_id"].as_i64().unwrap_or(0)),
            };
            let from = if dialect == Dialect::Lagrange { &p["message_id"] } else { &p["message_seq"] };
            let memory = script.memory.lock().unwrap();
            let mut entries: Vec<&Value> =
                memory.messages.values().filter(|(c, _)| *c == chat).map(|(_, m)| m).collect();
            entries.sort_by_key(|m| m["time"].as_i64());
            if let Some(from) = from.as_i64() {
                let Some((_, start)) = memory.messages.get(&from) else { return failed(1404, "消息不存在") };
                entries.retain(|m| m["time"].as_i64() <= start["time"].as_i64());
            }
            let count = p["count"].as_u64().unwrap_or(20) as usize;
            let skip = entries.len().saturating_sub(count);
            let messages: Vec<Value> = entries
                .into_iter()
                .skip(skip)
                .map(|m| {
                    let mut m = m.clone();
                    let group = m["message_type"] == "group";
                    m["post_type"] = "message".into();
                    m["self_id"] = script.self_id.into();
                    m["user_id"] = m["sender"]["user_id"].clone();
                    m["sub_type"] = if group { "normal" } else { "friend" }.into();
                    m
                })
                .collect();
            ok(json!({"messages": messages}))
        }
        "set_group_kick"
        | "set_group_ban"
        | "set_msg_emoji_like"
        | "set_friend_add_request"
        | "set_group_add_request" => ok(Value::Null),
        "get_image" => {
            let file = p["file"].as_str().unwrap_or("");
            ok(
                json!({"file": format!("/data/cache/{file}"), "url": format!("https://multimedia.example/{file}"), "file_name": file, "file_size": "12"}),
            )
        }
        "nc_get_packet_status" if dialect == Dialect::NapCat => ok(Value::Null),
        "get_forward_msg" => ok(json!({"messages": [
            {"sender": {"user_id": 20002, "nickname": "Bob"}, "time": 1_700_000_000, "group_id": 30003,
             "content": [{"type": "text", "data": {"text": "forwarded "}}, {"type": "at", "data": {"qq": "10001"}}]}
        ]})),
        _ => failed(1404, "不支持的Api"),
    }
}
