//! The scripted v12 implementation and v12 event builders.
//!
//! One script (accounts, canned and queued answers, a record of every request) behind every
//! OneBot Connect transport the bridge speaks:
//! - [`FakeBackend::start`]: forward-WebSocket server (the bridge dials it);
//! - [`FakeBackend::start_http`]: HTTP server (actions as `POST /`, events by `get_latest_events`
//!   long polling), with [`Webhook`] to push events to the bridge's webhook receiver;
//! - [`FakeBackend::dial`]: reverse-WebSocket client (it dials the bridge).
//!
//! Requests are read in JSON or MessagePack (text or binary frame, or `Content-Type`) and
//! answered in the same encoding, as the spec says. [`FakeBackend::restart`] drops every
//! connection without a Close frame, as a killed process would, and serves again on the same
//! address; [`FakeBackend::redial`] does the same for the reverse-WebSocket client.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use onebot_bridge::v12::codec;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::WAIT;

/// How the scripted backend introduces itself.
#[derive(Clone)]
pub struct BackendOptions {
    /// v12 `self.user_id`s of the accounts on the link.
    pub accounts: Vec<String>,
    pub platform: String,
    pub token: Option<String>,
    /// Send `meta.connect` and `meta.status_update` on connect (WebSocket transports).
    pub announce: bool,
    /// Reverse WebSocket: the `Sec-WebSocket-Protocol` offered (`None`: no header, as ComWeChat).
    pub protocol: Option<String>,
    /// Forward WebSocket: serve every connection at once, so a second dial is accepted and
    /// counted in `live`. Off: one at a time, the next waits in the listen backlog (the timing
    /// some tests were written against).
    pub concurrent: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            accounts: vec!["10001".into()],
            platform: "qq".into(),
            token: None,
            announce: true,
            protocol: Some("12.fake".into()),
            concurrent: false,
        }
    }
}

/// Which transport the scripted backend speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    WsServer,
    Http,
    WsDial,
}

/// The transport-independent part: what to answer, and the record of what was asked.
struct Script {
    opts: BackendOptions,
    requests: mpsc::UnboundedSender<Value>,
    answers: Mutex<HashMap<String, VecDeque<Value>>>,
    seq: AtomicUsize,
    /// Requests that came as MessagePack (binary frames or `application/msgpack` bodies).
    msgpack_requests: AtomicUsize,
    /// Events waiting for `get_latest_events`.
    queue: Mutex<VecDeque<Value>>,
    queued: Notify,
    polls: AtomicUsize,
    /// Connections made (WebSocket) / open now.
    connections: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    /// Where `push` writes on the newest WebSocket connection.
    push: Mutex<Option<mpsc::UnboundedSender<Message>>>,
}

impl Script {
    /// Records a request and gives its answer (echo filled in), or `None` for "stay silent".
    fn answer(&self, req: &Value, msgpack: bool) -> Option<Value> {
        let _ = self.requests.send(req.clone());
        if msgpack {
            self.msgpack_requests.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        let action = req["action"].as_str().unwrap_or("").to_owned();
        let scripted = self.answers.lock().unwrap().get_mut(&action).and_then(|q| q.pop_front());
        let mut resp = scripted.unwrap_or_else(|| default_answer(req, &self.opts, n));
        if resp == json!("silence") {
            return None;
        }
        if let Some(echo) = req.get("echo") {
            resp["echo"] = echo.clone();
        }
        Some(resp)
    }

    fn hello(&self) -> [Value; 2] {
        let connect = json!({"id": "", "time": 1.0, "type": "meta", "detail_type": "connect", "sub_type": "",
            "version": {"impl": "fake", "version": "1.0", "onebot_version": "12"}});
        let status = json!({"id": "", "time": 1.0, "type": "meta", "detail_type": "status_update", "sub_type": "",
            "status": default_answer(&json!({"action": "get_status"}), &self.opts, 0)["data"]});
        [connect, status]
    }
}

/// Counts a connection as live until dropped (also when its task is aborted).
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A scripted OneBot v12 implementation.
pub struct FakeBackend {
    /// Where it listens (forward WS, HTTP), or the bridge address it dials (reverse WS).
    pub addr: SocketAddr,
    mode: Mode,
    script: Arc<Script>,
    requests: mpsc::UnboundedReceiver<Value>,
    /// Connections made so far (WebSocket transports).
    pub connections: Arc<AtomicUsize>,
    /// Connections open now (WebSocket transports).
    pub live: Arc<AtomicUsize>,
    /// Reverse WS: the subprotocol the bridge echoed in its 101 answer.
    pub echoed_protocol: Option<String>,
    /// Reverse WS: the path (and query) dialled.
    path: String,
    task: JoinHandle<()>,
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn default_answer(req: &Value, opts: &BackendOptions, seq: usize) -> Value {
    let ok = |data: Value| json!({"status": "ok", "retcode": 0, "data": data, "message": ""});
    let me = req["self"]["user_id"].as_str().unwrap_or("10001").to_owned();
    match req["action"].as_str().unwrap_or("") {
        "send_message" => ok(json!({"message_id": format!("sent-{seq}"), "time": 1700000000.5})),
        "delete_message" | "set_group_name" | "leave_group" => ok(Value::Null),
        "get_self_info" => ok(json!({"user_id": me, "user_name": "bridge-bot", "user_displayname": ""})),
        "get_user_info" => ok(
            json!({"user_id": req["params"]["user_id"], "user_name": "someone", "user_displayname": "", "user_remark": ""}),
        ),
        "get_status" => ok(
            json!({"good": true, "bots": opts.accounts.iter().map(|a| json!({"self": {"platform": opts.platform, "user_id": a}, "online": true})).collect::<Vec<_>>()}),
        ),
        "get_version" => ok(json!({"impl": "fake", "version": "1.0", "onebot_version": "12"})),
        _ => json!({"status": "failed", "retcode": 10002, "data": null, "message": "unsupported action"}),
    }
}

/// Checks a presented token as the spec says for servers: `Authorization: Bearer`, else
/// `?access_token=`; 401 when none is given, 403 when it is wrong.
fn token_status(expected: &Option<String>, authorization: Option<&str>, query: Option<&str>) -> Option<u16> {
    let expected = expected.as_ref()?;
    let from_query = || {
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    };
    let presented = match authorization {
        Some(a) => Some(a.strip_prefix("Bearer ").unwrap_or("").to_owned()),
        None => from_query(),
    };
    match presented {
        None => Some(401),
        Some(p) if &p == expected => None,
        Some(_) => Some(403),
    }
}

impl FakeBackend {
    fn new(mode: Mode, addr: SocketAddr, opts: BackendOptions) -> FakeBackend {
        let (tx, requests) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let live = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Script {
            opts,
            requests: tx,
            answers: Mutex::default(),
            seq: AtomicUsize::new(0),
            msgpack_requests: AtomicUsize::new(0),
            queue: Mutex::default(),
            queued: Notify::new(),
            polls: AtomicUsize::new(0),
            connections: connections.clone(),
            live: live.clone(),
            push: Mutex::new(None),
        });
        FakeBackend {
            addr,
            mode,
            script,
            requests,
            connections,
            live,
            echoed_protocol: None,
            path: "/".into(),
            task: tokio::spawn(async {}),
        }
    }

    /// A forward-WebSocket server on a loopback port.
    pub async fn start(opts: BackendOptions) -> FakeBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut backend = FakeBackend::new(Mode::WsServer, listener.local_addr().unwrap(), opts);
        backend.task = tokio::spawn(serve_ws(listener, backend.script.clone()));
        backend
    }

    /// An HTTP server on a loopback port: `POST` actions (any path), `get_latest_events` from
    /// what [`FakeBackend::push`] queued.
    pub async fn start_http(opts: BackendOptions) -> FakeBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut backend = FakeBackend::new(Mode::Http, listener.local_addr().unwrap(), opts);
        backend.task = tokio::spawn(serve_http(listener, backend.script.clone()));
        backend
    }

    /// Dials the bridge's reverse-WebSocket server at `path` (e.g. `/` or `/?access_token=x`),
    /// offering `opts.protocol` and sending `opts.token` as `Authorization: Bearer`.
    pub async fn dial(
        addr: SocketAddr,
        path: &str,
        opts: BackendOptions,
    ) -> Result<FakeBackend, tokio_tungstenite::tungstenite::Error> {
        let mut backend = FakeBackend::new(Mode::WsDial, addr, opts);
        backend.path = path.to_owned();
        backend.connect().await?;
        Ok(backend)
    }

    async fn connect(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let opts = &self.script.opts;
        let mut req = format!("ws://{}{}", self.addr, self.path).into_client_request().unwrap();
        let headers = req.headers_mut();
        headers.insert("User-Agent", HeaderValue::from_static("OneBot/12 (fake) FakeBackend/1.0"));
        if let Some(p) = &opts.protocol {
            headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).unwrap());
        }
        if let Some(t) = &opts.token {
            headers.insert("Authorization", HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
        }
        let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
        self.echoed_protocol =
            resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.script.connections.fetch_add(1, Ordering::SeqCst);
        self.script.live.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(self.script.live.clone());
        // Install the push slot before returning, so `push` right after `dial` reaches this connection.
        let (tx, rx) = mpsc::unbounded_channel::<Message>();
        *self.script.push.lock().unwrap() = Some(tx);
        self.task = tokio::spawn(ws_session(ws, self.script.clone(), rx, guard));
        Ok(())
    }

    /// Reverse WS: drops the connection without a Close frame (a killed implementation) and
    /// dials again at once (as walle-core does).
    pub async fn redial(&mut self) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        assert_eq!(self.mode, Mode::WsDial);
        self.task.abort();
        let _ = (&mut self.task).await;
        self.connect().await
    }

    /// Servers: drops every connection without a Close frame and stops listening.
    pub async fn stop(&mut self) {
        assert_ne!(self.mode, Mode::WsDial);
        self.task.abort();
        let _ = (&mut self.task).await;
        *self.script.push.lock().unwrap() = None;
    }

    /// Servers: listens again on the same address (after [`FakeBackend::stop`]).
    pub async fn resume(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("the old port is taken");
        self.task = match self.mode {
            Mode::WsServer => tokio::spawn(serve_ws(listener, self.script.clone())),
            Mode::Http => tokio::spawn(serve_http(listener, self.script.clone())),
            Mode::WsDial => unreachable!(),
        };
    }

    /// Servers: a killed and restarted implementation.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    pub fn url(&self) -> String {
        match self.mode {
            Mode::Http => format!("http://{}/", self.addr),
            _ => format!("ws://{}/", self.addr),
        }
    }

    /// Sends a raw event: to the newest WebSocket connection as a text frame, or (HTTP) into the
    /// `get_latest_events` queue.
    pub fn push(&self, event: Value) {
        if self.mode == Mode::Http {
            self.script.queue.lock().unwrap().push_back(event);
            self.script.queued.notify_waiters();
            return;
        }
        self.push_raw(Message::text(event.to_string()));
    }

    /// Sends an event as a MessagePack binary frame.
    pub fn push_msgpack(&self, event: Value) {
        self.push_raw(Message::binary(codec::encode(&event, true)));
    }

    pub fn push_raw(&self, m: Message) {
        let guard = self.script.push.lock().unwrap();
        guard.as_ref().expect("the bridge is not connected").send(m).unwrap();
    }

    /// Drops the current connection with a Close frame (as a restarting implementation would).
    pub fn kick(&self) {
        self.push_raw(Message::Close(None));
    }

    /// Answers the next call of `action` with this full response (or `json!("silence")` for none).
    pub fn answer_next(&self, action: &str, response: Value) {
        self.script.answers.lock().unwrap().entry(action.into()).or_default().push_back(response);
    }

    /// Requests that came as MessagePack so far.
    pub fn msgpack_requests(&self) -> usize {
        self.script.msgpack_requests.load(Ordering::SeqCst)
    }

    /// `get_latest_events` calls so far (HTTP).
    pub fn polls(&self) -> usize {
        self.script.polls.load(Ordering::SeqCst)
    }

    /// The next action request the bridge sent, skipping the ones it makes on its own at connect.
    pub async fn next_request(&mut self) -> Value {
        loop {
            let r =
                tokio::time::timeout(WAIT, self.requests.recv()).await.expect("no request from the bridge").unwrap();
            if !matches!(r["action"].as_str(), Some("get_status" | "get_version")) {
                return r;
            }
        }
    }

    /// The next action request, whatever it is.
    pub async fn next_request_any(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.requests.recv()).await.expect("no request from the bridge").unwrap()
    }

    /// True when the bridge sent no request within `d`.
    pub async fn no_request_within(&mut self, d: Duration) -> bool {
        loop {
            match tokio::time::timeout(d, self.requests.recv()).await {
                Err(_) => return true,
                Ok(Some(r)) if matches!(r["action"].as_str(), Some("get_status" | "get_version")) => continue,
                Ok(_) => return false,
            }
        }
    }
}

// ---- forward WebSocket server and the session every WebSocket transport runs ----

async fn serve_ws(listener: TcpListener, script: Arc<Script>) {
    // Dropping the set (when this task is aborted) drops every connection.
    let mut sessions: JoinSet<()> = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let token = script.opts.token.clone();
        #[allow(clippy::result_large_err)]
        let cb = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
            match token_status(&token, auth, req.uri().query()) {
                None => Ok(resp),
                Some(code) => {
                    let mut e = ErrorResponse::new(None);
                    *e.status_mut() = StatusCode::from_u16(code).unwrap();
                    Err(e)
                }
            }
        };
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else { continue };
        script.connections.fetch_add(1, Ordering::SeqCst);
        script.live.fetch_add(1, Ordering::SeqCst);
        let guard = LiveGuard(script.live.clone());
        let (tx, rx) = mpsc::unbounded_channel::<Message>();
        *script.push.lock().unwrap() = Some(tx);
        if script.opts.concurrent {
            sessions.spawn(ws_session(ws, script.clone(), rx, guard));
            while sessions.try_join_next().is_some() {}
        } else {
            ws_session(ws, script.clone(), rx, guard).await;
        }
    }
}

/// One WebSocket connection, whichever side dialled: hello events, pushes, answers in the
/// request's encoding.
async fn ws_session<S>(
    ws: WebSocketStream<S>,
    script: Arc<Script>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    _live: LiveGuard,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    if script.opts.announce {
        for ev in script.hello() {
            if sink.send(Message::text(ev.to_string())).await.is_err() {
                return;
            }
        }
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(m) => { if sink.send(m).await.is_err() { break; } }
                None => break,
            },
            frame = stream.next() => {
                let (req, msgpack) = match frame {
                    Some(Ok(Message::Text(t))) => (serde_json::from_str::<Value>(&t).unwrap_or(Value::Null), false),
                    Some(Ok(Message::Binary(b))) => (codec::decode(&b, true).unwrap_or(Value::Null), true),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Some(resp) = script.answer(&req, msgpack) else { continue };
                let frame = if msgpack {
                    Message::binary(codec::encode(&resp, true))
                } else {
                    Message::text(resp.to_string())
                };
                if sink.send(frame).await.is_err() { break; }
            }
        }
    }
}

// ---- HTTP server ----

type HttpReply = hyper::Response<Full<Bytes>>;

fn http_reply(status: u16, body: Vec<u8>, content_type: &str) -> HttpReply {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    if !content_type.is_empty() {
        resp.headers_mut().insert("content-type", HeaderValue::from_str(content_type).unwrap());
    }
    resp
}

async fn serve_http(listener: TcpListener, script: Arc<Script>) {
    let mut conns = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let script = script.clone();
        let service = hyper::service::service_fn(move |req| {
            let script = script.clone();
            async move { Ok::<_, std::convert::Infallible>(on_http(&script, req).await) }
        });
        conns.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while conns.try_join_next().is_some() {}
    }
}

async fn on_http(script: &Script, req: hyper::Request<hyper::body::Incoming>) -> HttpReply {
    if req.method() != hyper::Method::POST {
        return http_reply(405, Vec::new(), "");
    }
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    if let Some(code) = token_status(&script.opts.token, auth, req.uri().query()) {
        return http_reply(code, Vec::new(), "");
    }
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let msgpack = match content_type.as_str() {
        "application/json" => false,
        "application/msgpack" => true,
        _ => return http_reply(415, Vec::new(), ""),
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let Ok(request) = codec::decode(&body, msgpack) else {
        let bad = json!({"status": "failed", "retcode": 10001, "data": null, "message": "bad request"});
        return http_reply(200, codec::encode(&bad, msgpack), &content_type);
    };
    let resp = if request["action"] == "get_latest_events" {
        script.polls.fetch_add(1, Ordering::SeqCst);
        let limit = request["params"]["limit"].as_u64().filter(|l| *l > 0).unwrap_or(u64::MAX) as usize;
        // Seconds, as the spec says; held at most 20 s.
        let wait = Duration::from_secs(request["params"]["timeout"].as_u64().unwrap_or(0).min(20));
        let deadline = tokio::time::Instant::now() + wait;
        let events = loop {
            let notified = script.queued.notified();
            {
                let mut queue = script.queue.lock().unwrap();
                if !queue.is_empty() || tokio::time::Instant::now() >= deadline {
                    let n = queue.len().min(limit);
                    break queue.drain(..n).collect::<Vec<_>>();
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        };
        let mut resp = json!({"status": "ok", "retcode": 0, "data": events, "message": ""});
        if let Some(echo) = request.get("echo") {
            resp["echo"] = echo.clone();
        }
        resp
    } else {
        match script.answer(&request, msgpack) {
            Some(resp) => resp,
            None => std::future::pending().await,
        }
    };
    http_reply(200, codec::encode(&resp, msgpack), &content_type)
}

// ---- webhook pushes ----

/// Pushes events to the bridge's webhook receiver as an implementation would.
pub struct Webhook {
    pub url: String,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    /// Headers sent with every push (`X-Impl`, `Authorization`, …).
    pub headers: Vec<(String, String)>,
}

impl Webhook {
    /// A pusher with the spec's headers: `Content-Type` (per push), `X-OneBot-Version: 12`,
    /// `X-Impl: <implementation>`, and `Authorization: Bearer <token>` when given.
    pub fn new(addr: SocketAddr, implementation: &str, token: Option<&str>) -> Webhook {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let mut headers = vec![
            ("User-Agent".to_owned(), "OneBot/12 (fake) FakeBackend/1.0".to_owned()),
            ("X-OneBot-Version".to_owned(), "12".to_owned()),
            ("X-Impl".to_owned(), implementation.to_owned()),
        ];
        if let Some(t) = token {
            headers.push(("Authorization".to_owned(), format!("Bearer {t}")));
        }
        Webhook { url: format!("http://{addr}/onebot/v12/"), client, headers }
    }

    /// POSTs a raw body; the status code the bridge answered.
    pub async fn post(&self, method: &str, url: &str, content_type: Option<&str>, body: Vec<u8>) -> u16 {
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp = tokio::time::timeout(WAIT, self.client.request(req))
            .await
            .expect("the webhook did not answer")
            .expect("the webhook request failed");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        status
    }

    /// Pushes one event as JSON.
    pub async fn push(&self, event: &Value) -> u16 {
        self.post("POST", &self.url, Some("application/json"), event.to_string().into_bytes()).await
    }

    /// Pushes one event as MessagePack.
    pub async fn push_msgpack(&self, event: &Value) -> u16 {
        self.post("POST", &self.url, Some("application/msgpack"), codec::encode(event, true)).await
    }
}

/// A v12 message event.
pub fn v12_message(detail: &str, self_id: &str, fields: Value) -> Value {
    let mut ev = json!({"id": uuid_like(), "time": 1700000000.25, "type": "message", "detail_type": detail, "sub_type": "",
        "self": {"platform": "qq", "user_id": self_id}, "alt_message": ""});
    for (k, v) in fields.as_object().unwrap() {
        ev[k] = v.clone();
    }
    ev
}

pub fn v12_notice(detail: &str, self_id: &str, sub_type: &str, fields: Value) -> Value {
    let mut ev = json!({"id": uuid_like(), "time": 1700000001.0, "type": "notice", "detail_type": detail, "sub_type": sub_type,
        "self": {"platform": "qq", "user_id": self_id}});
    for (k, v) in fields.as_object().unwrap() {
        ev[k] = v.clone();
    }
    ev
}

pub fn uuid_like() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("ev-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}
