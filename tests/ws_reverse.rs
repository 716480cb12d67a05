//! The v11 reverse WebSocket (the bridge dials the bot): scripted v12 backend ⇄ the real bridge ⇄
//! a scripted bot *server* written here with tokio-tungstenite, which records every handshake's
//! headers and how many connections per `X-Self-ID` are open at once; then real bots serving
//! reverse WebSocket: nonebot2 (`tests/clients/nonebot_reverse_bot.py`) and aiocqhttp with split
//! API/Event roles (`tests/clients/aiocqhttp_split_bot.py`). Koishi is in `tests/koishi.rs`.
//!
//! The real bots need `tests/clients/.venv` (made by `tests/run.sh`); those tests fail, never
//! skip, without it.
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)

mod clients;
mod support;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use clients::{clients_dir, python, ClientProcess, START_WAIT};
use onebot_bridge::config::{AuthScheme, Config, FileConfig, Overrides};
use onebot_bridge::Bridge;
use support::*;

// ---- the scripted bot server ----

#[derive(Default)]
struct Stats {
    /// Connections open now, per `X-Self-ID`.
    open: HashMap<String, usize>,
    /// The most ever open at once, per `X-Self-ID` (and role).
    most: HashMap<String, usize>,
    /// When each handshake arrived (accepted or refused).
    attempts: Vec<Instant>,
    accepted: usize,
}

/// A bot's reverse-WebSocket server (what nonebot, Koishi or aiocqhttp run).
struct BotServer {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<BotConn>,
    stats: Arc<Mutex<Stats>>,
    /// HTTP statuses to refuse the next handshakes with.
    refuse: Arc<Mutex<VecDeque<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BotServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection the bridge made, as the bot server sees it.
struct BotConn {
    /// Handshake headers, names in lower case.
    headers: HashMap<String, String>,
    path: String,
    frames: mpsc::UnboundedReceiver<Value>,
    ctl: mpsc::UnboundedSender<Ctl>,
    /// The bridge's Close code, once the connection is over (`None`: no Close frame).
    ended: Option<oneshot::Receiver<Option<u16>>>,
    accepted_at: Instant,
}

enum Ctl {
    Send(String),
    Close(u16),
    /// Stop reading (a busy bot: the bridge's writes back up in TCP) until `Resume`, or a Close.
    Hold,
    /// Send a Close frame, then read nothing (not even the answer) until `Resume`.
    CloseHolding(u16),
    Resume,
}

impl BotServer {
    async fn start() -> BotServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        let stats: Arc<Mutex<Stats>> = Arc::default();
        let refuse: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let (stats2, refuse2) = (stats.clone(), refuse.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, stats, refuse) = (tx.clone(), stats2.clone(), refuse2.clone());
                tokio::spawn(async move {
                    let mut headers = HashMap::new();
                    let mut path = String::new();
                    #[allow(clippy::result_large_err)]
                    let cb = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                        stats.lock().unwrap().attempts.push(Instant::now());
                        for (k, v) in req.headers() {
                            headers.insert(k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned());
                        }
                        path = req.uri().to_string();
                        if let Some(status) = refuse.lock().unwrap().pop_front() {
                            let mut e = ErrorResponse::new(Some("refused".into()));
                            *e.status_mut() = StatusCode::from_u16(status).unwrap();
                            return Err(e);
                        }
                        Ok(resp)
                    };
                    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else { return };
                    let key = format!(
                        "{}/{}",
                        headers.get("x-self-id").cloned().unwrap_or_default(),
                        headers.get("x-client-role").cloned().unwrap_or_default()
                    );
                    {
                        let mut s = stats.lock().unwrap();
                        s.accepted += 1;
                        let n = s.open.entry(key.clone()).or_default();
                        *n += 1;
                        let n = *n;
                        let most = s.most.entry(key.clone()).or_default();
                        *most = (*most).max(n);
                    }
                    let (frames_tx, frames) = mpsc::unbounded_channel();
                    let (ctl, mut ctl_rx) = mpsc::unbounded_channel();
                    let (ended_tx, ended) = oneshot::channel();
                    let conn = BotConn { headers, path, frames, ctl, ended: Some(ended), accepted_at: Instant::now() };
                    let _ = tx.send(conn);
                    let (mut sink, mut stream) = ws.split();
                    let mut bridge_close = None;
                    let mut ctl_open = true;
                    let mut reading = true;
                    loop {
                        tokio::select! {
                            frame = stream.next(), if reading => match frame {
                                Some(Ok(Message::Text(t))) => {
                                    let _ = frames_tx.send(serde_json::from_str(&t).unwrap_or(Value::Null));
                                }
                                Some(Ok(Message::Close(f))) => bridge_close = Some(f.map(|f| u16::from(f.code))),
                                Some(Ok(_)) => {}
                                None | Some(Err(_)) => break,
                            },
                            c = ctl_rx.recv(), if ctl_open => match c {
                                Some(Ctl::Send(t)) => { let _ = sink.send(Message::text(t)).await; }
                                Some(Ctl::Close(code)) => {
                                    // A graceful close: keep reading until the bridge answers.
                                    let frame = CloseFrame { code: CloseCode::from(code), reason: "bye".into() };
                                    let _ = sink.send(Message::Close(Some(frame))).await;
                                    ctl_open = false;
                                    reading = true;
                                }
                                Some(Ctl::Hold) => reading = false,
                                Some(Ctl::CloseHolding(code)) => {
                                    let frame = CloseFrame { code: CloseCode::from(code), reason: "bye".into() };
                                    let _ = sink.send(Message::Close(Some(frame))).await;
                                    reading = false;
                                }
                                Some(Ctl::Resume) => reading = true,
                                None => {
                                    let _ = sink.send(Message::Close(None)).await;
                                    ctl_open = false;
                                    reading = true;
                                }
                            },
                        }
                    }
                    // Counted closed before the TCP stream is: the bridge sees the end after this.
                    *stats.lock().unwrap().open.entry(key).or_default() -= 1;
                    let _ = ended_tx.send(bridge_close.flatten());
                    drop((sink, stream));
                });
            }
        });
        BotServer { addr, conns, stats, refuse, task }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    async fn next_conn(&mut self) -> BotConn {
        tokio::time::timeout(WAIT, self.conns.recv()).await.expect("the bridge did not connect").unwrap()
    }

    /// True when the bridge makes no new connection within `d`.
    async fn no_conn_within(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, self.conns.recv()).await.is_err()
    }

    fn most_open(&self, self_id: &str, role: &str) -> usize {
        self.stats.lock().unwrap().most.get(&format!("{self_id}/{role}")).copied().unwrap_or(0)
    }

    fn open_now(&self, self_id: &str, role: &str) -> usize {
        self.stats.lock().unwrap().open.get(&format!("{self_id}/{role}")).copied().unwrap_or(0)
    }
}

impl BotConn {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    async fn next_frame(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.frames.recv())
            .await
            .expect("nothing from the bridge")
            .expect("the connection ended")
    }

    /// The next frame that is not a heartbeat (heartbeats do not extend the wait).
    async fn next_event(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(f)) if f["meta_event_type"] == "heartbeat" => {}
                Ok(Some(f)) => return f,
                Ok(None) => panic!("the connection ended"),
                Err(_) => panic!("nothing but heartbeats from the bridge within {WAIT:?}"),
            }
        }
    }

    /// True when nothing but heartbeats arrives within `d`.
    async fn quiet_for(&mut self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Err(_) | Ok(None) => return true,
                Ok(Some(f)) if f["meta_event_type"] == "heartbeat" => {}
                Ok(Some(_)) => return false,
            }
        }
    }

    fn send(&self, v: Value) {
        self.ctl.send(Ctl::Send(v.to_string())).unwrap();
    }

    fn close(&self, code: u16) {
        let _ = self.ctl.send(Ctl::Close(code));
    }

    fn hold(&self) {
        let _ = self.ctl.send(Ctl::Hold);
    }

    fn close_holding(&self, code: u16) {
        let _ = self.ctl.send(Ctl::CloseHolding(code));
    }

    fn resume(&self) {
        let _ = self.ctl.send(Ctl::Resume);
    }

    /// Collects numbered messages into `got` until `last` arrives (or fails after [`WAIT`],
    /// heartbeats or not).
    async fn numbered_until(&mut self, got: &mut Vec<u64>, last: u64) {
        let deadline = Instant::now() + WAIT;
        while got.last() != Some(&last) {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some(f)) => got.extend(numbered(&f)),
                Ok(None) => panic!("the connection ended before event {last}; got {} events", got.len()),
                Err(_) => panic!("event {last} never came; got {} events, the last {:?}", got.len(), got.last()),
            }
        }
    }

    /// Every frame until the connection is over, and the bridge's Close code.
    async fn drain(&mut self) -> (Vec<Value>, Option<u16>) {
        let deadline = Instant::now() + WAIT;
        let mut frames = Vec::new();
        while let Some(f) =
            tokio::time::timeout_at(deadline, self.frames.recv()).await.expect("the connection did not end")
        {
            frames.push(f);
        }
        let code = tokio::time::timeout_at(deadline, self.ended.take().unwrap()).await.unwrap().unwrap();
        (frames, code)
    }
}

// ---- helpers ----

async fn bridge_with(backend: &FakeBackend, extra: impl FnOnce(&mut Overrides)) -> Bridge {
    let mut o = Overrides { backend_ws: vec![backend.url()], ..Default::default() };
    extra(&mut o);
    Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap()
}

fn private_text(self_id: &str, text: &str) -> Value {
    v12_message(
        "private",
        self_id,
        json!({"message_id": uuid_like(), "user_id": "20002", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": text}}]}),
    )
}

fn status_update(accounts: &[(&str, bool)]) -> Value {
    let bots: Vec<Value> = accounts
        .iter()
        .map(|(id, online)| json!({"self": {"platform": "qq", "user_id": id}, "online": online}))
        .collect();
    json!({"id": uuid_like(), "time": 1.0, "type": "meta", "detail_type": "status_update", "sub_type": "",
           "status": {"good": true, "bots": bots}})
}

/// The number in a `n=<k>` private message (maybe followed by a space and padding), if the
/// frame is one.
fn numbered(frame: &Value) -> Option<u64> {
    if frame["post_type"] != "message" {
        return None;
    }
    let rest = frame["raw_message"].as_str()?.strip_prefix("n=")?;
    rest.split(' ').next()?.parse().ok()
}

// ---- tests ----

#[tokio::test]
async fn universal_handshake_headers_lifecycle_events_and_actions_like_go_cqhttp() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![server.url("/onebot/v11/ws")];
        o.access_token = Some("s3cret".into());
    })
    .await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.path, "/onebot/v11/ws");
    assert_eq!(conn.header("x-self-id"), Some("10001"));
    assert_eq!(conn.header("x-client-role"), Some("Universal"));
    assert_eq!(conn.header("user-agent"), Some("CQHttp/4.15.0"));
    assert_eq!(conn.header("authorization"), Some("Bearer s3cret"));

    let hello = conn.next_frame().await;
    assert_eq!(
        hello,
        json!({"meta_event_type": "lifecycle", "post_type": "meta_event", "self_id": 10001,
               "sub_type": "connect", "time": hello["time"]}),
        "reverse WS lifecycle has no _post_method"
    );
    assert!(hello["time"].is_i64());

    backend.push(private_text("10001", "hello [bot]"));
    let ev = conn.next_event().await;
    assert_eq!(ev["post_type"], "message");
    assert_eq!(ev["message"], "hello &#91;bot&#93;");
    assert_eq!(ev["self_id"], 10001);

    conn.send(json!({"action": "send_private_msg", "params": {"user_id": 20002, "message": "hi"}, "echo": {"seq": 7}}));
    let answer = conn.next_event().await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["echo"], json!({"seq": 7}));
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message");
    assert_eq!(sent["params"]["user_id"], "20002");
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "hi"}}]));

    assert!(server.no_conn_within(Duration::from_millis(200)).await, "a second connection was made");
    assert_eq!(server.most_open("10001", "Universal"), 1);
    bridge.stop().await;
}

/// A `self_id` param on a reverse-WS action (aiocqhttp sends one on every call) is consumed as
/// the HTTP API consumes it, never passed on to the backend as `qq.self_id`.
#[tokio::test]
async fn a_self_id_param_on_a_reverse_ws_action_is_consumed() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| o.ws_reverse = vec![server.url("/")]).await;
    let mut conn = server.next_conn().await;
    conn.next_frame().await;
    let params = json!({"self_id": "10001", "user_id": 20002, "no_cache": true});
    conn.send(json!({"action": "get_stranger_info", "params": params, "echo": 1}));
    let answer = conn.next_event().await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "get_user_info");
    assert_eq!(sent["params"], json!({"user_id": "20002", "qq.no_cache": true}), "{sent}");
    bridge.stop().await;
}

#[tokio::test]
async fn token_scheme_is_bearer_by_default_token_on_request_and_absent_without_a_token() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    for (token, scheme, expected) in [
        (Some("s3cret"), Some(AuthScheme::Token), Some("Token s3cret")),
        (Some("s3cret"), Some(AuthScheme::Bearer), Some("Bearer s3cret")),
        (None, None, None),
    ] {
        let mut server = BotServer::start().await;
        let bridge = bridge_with(&backend, |o| {
            o.ws_reverse = vec![server.url("/")];
            o.access_token = token.map(Into::into);
            o.ws_reverse_auth = scheme;
        })
        .await;
        let conn = server.next_conn().await;
        assert_eq!(conn.header("authorization"), expected, "token {token:?} scheme {scheme:?}");
        bridge.stop().await;
    }
}

#[tokio::test]
async fn split_roles_events_only_on_event_and_actions_answered_only_on_api() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse_api = Some(server.url("/ws/api/"));
        o.ws_reverse_event = Some(server.url("/ws/event/"));
        o.heartbeat_interval_ms = Some(0);
    })
    .await;
    let (a, b) = (server.next_conn().await, server.next_conn().await);
    let (mut api, mut event) = if a.header("x-client-role") == Some("API") { (a, b) } else { (b, a) };
    assert_eq!((api.path.as_str(), api.header("x-client-role")), ("/ws/api/", Some("API")));
    assert_eq!((event.path.as_str(), event.header("x-client-role")), ("/ws/event/", Some("Event")));
    assert_eq!(api.header("x-self-id"), Some("10001"));
    assert_eq!(event.header("x-self-id"), Some("10001"));

    let hello = event.next_frame().await;
    assert_eq!((hello["meta_event_type"].as_str(), hello["sub_type"].as_str()), (Some("lifecycle"), Some("connect")));
    backend.push(private_text("10001", "only on event"));
    let ev = event.next_event().await;
    assert_eq!(ev["message"], "only on event");

    // The API connection got neither the lifecycle event nor the message; it answers actions.
    api.send(json!({"action": "send_private_msg", "params": {"user_id": 20002, "message": "via api"}, "echo": "a1"}));
    let answer = api.next_frame().await;
    assert_eq!((answer["status"].as_str(), answer["echo"].as_str()), (Some("ok"), Some("a1")), "{answer}");
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message");
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "via api"}}]));

    // The Event connection is never read, as in go-cqhttp.
    event.send(json!({"action": "send_private_msg", "params": {"user_id": 20002, "message": "x"}, "echo": "e1"}));
    assert!(event.quiet_for(Duration::from_millis(300)).await, "the Event connection answered an action");
    assert!(api.quiet_for(Duration::from_millis(50)).await, "the API connection got an event");
    assert!(backend.no_request_within(Duration::from_millis(50)).await);
    bridge.stop().await;
}

#[tokio::test]
async fn refused_handshakes_are_retried_with_growing_delays() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    server.refuse.lock().unwrap().extend([401, 403]);
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![server.url("/")];
        o.reconnect_interval_ms = Some(100);
    })
    .await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.next_frame().await["sub_type"], "connect");
    let attempts = server.stats.lock().unwrap().attempts.clone();
    assert_eq!(attempts.len(), 3, "two refusals, then the connection");
    let (first, second) = (attempts[1] - attempts[0], attempts[2] - attempts[1]);
    // 100 ms ±25 %, then 200 ms ±25 %: the wait doubled after the second refusal.
    assert!(first >= Duration::from_millis(75), "{first:?}");
    assert!(second >= Duration::from_millis(150), "{second:?} (after {first:?})");
    bridge.stop().await;
}

#[tokio::test]
async fn reconnect_storm_leaves_one_connection_and_every_event_exactly_once_in_order() {
    let backend = Arc::new(FakeBackend::start(BackendOptions::default()).await);
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![server.url("/ws")];
        o.reconnect_interval_ms = Some(40);
    })
    .await;

    // The first connection means the backend link is up and has announced the account.
    let mut first = Some(server.next_conn().await);

    // The backend keeps pushing numbered messages through the whole storm, in bursts (a busy
    // group), so that events are in flight inside the bridge whenever the bot server drops it.
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let pusher = {
        let (backend, stop, pushed) = (backend.clone(), stop.clone(), pushed.clone());
        tokio::spawn(async move {
            // 500 events/s: the longest gap between two connections (~250 ms) stays well inside the
            // hub's backlog of 256.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                for _ in 0..5 {
                    let n = pushed.load(Ordering::SeqCst) + 1;
                    backend.push(private_text("10001", &format!("n={n}")));
                    pushed.store(n, Ordering::SeqCst);
                }
            }
        })
    };

    let mut got = Vec::new();
    for round in 0..20 {
        let mut conn = match first.take() {
            Some(conn) => conn,
            None => server.next_conn().await,
        };
        match round % 3 {
            // Dropped right after the handshake.
            0 => conn.close(1001),
            // Dropped after the lifecycle event.
            1 => {
                assert_eq!(conn.next_frame().await["sub_type"], "connect");
                conn.close(1000);
            }
            // Dropped after a few events (and long enough to count as a connection that stayed up).
            _ => {
                let want = got.len() + 3;
                while got.len() < want || conn.accepted_at.elapsed() < Duration::from_millis(60) {
                    let next = got.last().copied().unwrap_or(0) + 1;
                    conn.numbered_until(&mut got, next).await;
                }
                conn.close(4000);
            }
        }
        let (rest, _) = conn.drain().await;
        got.extend(rest.iter().filter_map(numbered));
    }
    stop.store(true, Ordering::SeqCst);
    pusher.await.unwrap();
    let total = pushed.load(Ordering::SeqCst);
    assert!(total > 100, "only {total} events pushed");

    let mut last = server.next_conn().await;
    last.numbered_until(&mut got, total).await;
    let want: Vec<u64> = (1..=total).collect();
    if got != want {
        let dups: Vec<_> = got.windows(2).filter(|w| w[1] <= w[0]).collect();
        let missing: Vec<_> = want.iter().filter(|n| !got.contains(n)).take(20).collect();
        panic!(
            "{} events delivered for {total}: out of order or repeated at {dups:?}, missing {missing:?}…",
            got.len()
        );
    }
    assert_eq!(server.most_open("10001", "Universal"), 1, "two connections with the same X-Self-ID at once");
    assert_eq!(server.open_now("10001", "Universal"), 1);
    assert!(server.no_conn_within(Duration::from_millis(200)).await, "a connection beyond the live one");
    assert_eq!(server.stats.lock().unwrap().accepted, 21);
    assert!(last.quiet_for(Duration::from_millis(50)).await, "events after the last one");
    bridge.stop().await;
}

#[tokio::test]
async fn two_accounts_on_one_link_get_one_connection_each_with_only_their_events() {
    let backend =
        FakeBackend::start(BackendOptions { accounts: vec!["10001".into(), "10002".into()], ..Default::default() })
            .await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| o.ws_reverse = vec![server.url("/")]).await;
    let (a, b) = (server.next_conn().await, server.next_conn().await);
    let (mut one, mut two) = if a.header("x-self-id") == Some("10001") { (a, b) } else { (b, a) };
    assert_eq!(one.header("x-self-id"), Some("10001"));
    assert_eq!(two.header("x-self-id"), Some("10002"));
    assert_eq!(one.next_frame().await["self_id"], 10001);
    assert_eq!(two.next_frame().await["self_id"], 10002);

    backend.push(private_text("10002", "for two"));
    backend.push(private_text("10001", "for one"));
    let ev = two.next_event().await;
    assert_eq!((ev["message"].as_str(), ev["self_id"].as_i64()), (Some("for two"), Some(10002)));
    let ev = one.next_event().await;
    assert_eq!((ev["message"].as_str(), ev["self_id"].as_i64()), (Some("for one"), Some(10001)));
    assert!(one.quiet_for(Duration::from_millis(100)).await);
    assert!(two.quiet_for(Duration::from_millis(10)).await);
    assert!(server.no_conn_within(Duration::from_millis(10)).await);
    bridge.stop().await;
}

#[tokio::test]
async fn self_id_in_the_config_limits_the_target_to_that_account() {
    let backend =
        FakeBackend::start(BackendOptions { accounts: vec!["10001".into(), "10002".into()], ..Default::default() })
            .await;
    let mut server = BotServer::start().await;
    let file: FileConfig = toml::from_str(&format!(
        "[[servers]]\nws-reverse = {{ universal = \"{}\", self-id = 10002 }}",
        server.url("/")
    ))
    .unwrap();
    let o = Overrides { backend_ws: vec![backend.url()], ..Default::default() };
    let bridge = Bridge::start(Config::resolve(file, o).unwrap()).await.unwrap();
    let conn = server.next_conn().await;
    assert_eq!(conn.header("x-self-id"), Some("10002"));
    assert!(server.no_conn_within(Duration::from_millis(300)).await, "10001 got a connection too");
    bridge.stop().await;
}

#[tokio::test]
async fn an_account_going_offline_closes_with_1000_and_coming_back_reconnects() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![server.url("/")];
        o.reconnect_interval_ms = Some(50);
    })
    .await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.next_frame().await["sub_type"], "connect");

    backend.push(status_update(&[("10001", false)]));
    let (_, code) = conn.drain().await;
    assert_eq!(code, Some(1000), "closed with a normal Close frame");
    assert!(server.no_conn_within(Duration::from_millis(300)).await, "redialled while the account is offline");

    backend.push(status_update(&[("10001", true)]));
    let mut again = server.next_conn().await;
    assert_eq!(again.header("x-self-id"), Some("10001"));
    assert_eq!(again.next_frame().await["sub_type"], "connect");
    backend.push(private_text("10001", "welcome back"));
    assert_eq!(again.next_event().await["message"], "welcome back");
    assert_eq!(server.most_open("10001", "Universal"), 1);
    bridge.stop().await;
}

#[tokio::test]
async fn events_that_arrive_while_the_bot_is_away_come_first_on_the_next_connection() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![server.url("/")];
        o.reconnect_interval_ms = Some(300);
    })
    .await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.next_frame().await["sub_type"], "connect");
    conn.close(1001);
    conn.drain().await;
    // The bridge waits ~300 ms before redialling: these arrive while no bot is there.
    backend.push(private_text("10001", "n=1"));
    backend.push(private_text("10001", "n=2"));
    let mut again = server.next_conn().await;
    assert!(again.accepted_at - conn.accepted_at >= Duration::from_millis(225));
    assert_eq!(again.next_frame().await["sub_type"], "connect");
    assert_eq!(numbered(&again.next_event().await), Some(1));
    assert_eq!(numbered(&again.next_event().await), Some(2));
    backend.push(private_text("10001", "n=3"));
    assert_eq!(numbered(&again.next_event().await), Some(3));
    bridge.stop().await;
}

#[tokio::test]
async fn shutdown_closes_the_connection_with_1001() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| o.ws_reverse = vec![server.url("/")]).await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.next_frame().await["sub_type"], "connect");
    let started = Instant::now();
    bridge.stop().await;
    let (_, code) = conn.drain().await;
    assert_eq!(code, Some(1001));
    assert!(started.elapsed() < Duration::from_secs(5), "stop took {:?}", started.elapsed());
    assert!(server.no_conn_within(Duration::from_millis(200)).await, "redialled after shutdown");
}

#[tokio::test]
async fn events_in_flight_when_a_busy_bot_server_closes_come_on_the_next_connection() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![server.url("/")];
        o.reconnect_interval_ms = Some(50);
    })
    .await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.next_frame().await["sub_type"], "connect");
    // The bot is busy (reads nothing) while a burst of large messages arrives, far more than
    // the TCP buffers hold; then it closes. Whatever the bridge had not written by then must
    // come on the next connection, and nothing twice.
    conn.hold();
    let total = 200;
    let padding = "x".repeat(64 << 10);
    for n in 1..=total {
        backend.push(private_text("10001", &format!("n={n} {padding}")));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.close(1001);
    let (frames, _) = conn.drain().await;
    let mut got: Vec<u64> = frames.iter().filter_map(numbered).collect();
    let mut again = server.next_conn().await;
    // Every connection starts with its handshake, even when the first one took every event
    // before it closed (nothing is then left for this one).
    assert_eq!(again.next_frame().await["sub_type"], "connect");
    again.numbered_until(&mut got, total).await;
    assert_eq!(got, (1..=total).collect::<Vec<_>>(), "each event once, in order");
    assert!(again.quiet_for(Duration::from_millis(50)).await);
    bridge.stop().await;
}

#[tokio::test]
async fn no_redial_until_the_bot_server_has_finished_closing_the_old_connection() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let mut server = BotServer::start().await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![server.url("/")];
        o.reconnect_interval_ms = Some(1);
    })
    .await;
    let mut conn = server.next_conn().await;
    assert_eq!(conn.next_frame().await["sub_type"], "connect");
    // The bot server closes, then is slow to finish (nonebot forgets an X-Self-ID only once
    // the old connection is gone); with a 1 ms reconnect interval the bridge would be back at once.
    conn.close_holding(1000);
    assert!(server.no_conn_within(Duration::from_millis(300)).await, "redialled before the old connection was closed");
    conn.resume();
    conn.drain().await;
    let mut again = server.next_conn().await;
    assert_eq!(again.next_frame().await["sub_type"], "connect");
    assert_eq!(server.most_open("10001", "Universal"), 1, "two connections with the same X-Self-ID at once");
    bridge.stop().await;
}

// ---- real bots ----

/// A real bot's reverse-WS server, started and listening (it printed `LISTENING <port>`).
async fn start_client(name: &str, script: &str, envs: &[(&str, &str)]) -> (ClientProcess, u16) {
    let script = clients_dir().join(script);
    let mut process = ClientProcess::spawn(name, &python(), &[script.to_str().unwrap()], envs);
    let port = process.wait_line("LISTENING", START_WAIT).await.parse().unwrap();
    (process, port)
}

/// The handshake headers the client printed (`HANDSHAKE {json}`), lower-case names.
async fn handshake(client: &mut ClientProcess) -> Value {
    serde_json::from_str(&client.wait_line("HANDSHAKE", WAIT).await).unwrap()
}

#[tokio::test]
async fn nonebot_serving_reverse_ws_answers_echo_through_the_bridge() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let (mut nonebot, port) =
        start_client("nonebot", "nonebot_reverse_bot.py", &[("ONEBOT_V11_ACCESS_TOKEN", "s3cret")]).await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![format!("ws://127.0.0.1:{port}/onebot/v11/ws")];
        o.access_token = Some("s3cret".into());
    })
    .await;
    let headers = handshake(&mut nonebot).await;
    assert_eq!(headers["x-self-id"], "10001");
    assert_eq!(headers["x-client-role"], "Universal");
    assert_eq!(headers["user-agent"], "CQHttp/4.15.0");
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(nonebot.wait_line("CONNECTED", START_WAIT).await, "10001");

    backend.push(private_text("10001", "/echo hi there"));
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!(sent["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(sent["params"]["detail_type"], "private");
    assert_eq!(sent["params"]["user_id"], "20002");
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "hi there"}}]));

    // What nonebot saw first: the lifecycle event without go-cqhttp's forward-WS `_post_method`.
    let hello = nonebot.wait_frame("<-", WAIT, |f| f["post_type"] == "meta_event").await;
    assert_eq!((hello["meta_event_type"].as_str(), hello["sub_type"].as_str()), (Some("lifecycle"), Some("connect")));
    assert!(hello.get("_post_method").is_none(), "{hello}");
    let call = nonebot.wait_frame("->", WAIT, |f| f["action"] == "send_msg").await;
    let echo = call["echo"].clone();
    let answer = nonebot.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["echo"] == echo).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    drop(nonebot);
    bridge.stop().await;
}

#[tokio::test]
async fn nonebot_sees_each_reconnect_as_one_bot_and_never_a_duplicate_x_self_id() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let (mut nonebot, port) =
        start_client("nonebot", "nonebot_reverse_bot.py", &[("ONEBOT_V11_ACCESS_TOKEN", "s3cret")]).await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse = vec![format!("ws://127.0.0.1:{port}/onebot/v11/ws")];
        o.access_token = Some("s3cret".into());
        o.ws_reverse_auth = Some(AuthScheme::Token);
    })
    .await;
    assert_eq!(handshake(&mut nonebot).await["authorization"], "Token s3cret");
    assert_eq!(nonebot.wait_line("CONNECTED", START_WAIT).await, "10001");
    // The account drops and comes back three times; the bridge redials at once each time, and
    // nonebot (which closes a second connection for a known X-Self-ID with 1008) accepts each.
    for _ in 0..3 {
        backend.push(status_update(&[("10001", false)]));
        assert_eq!(nonebot.wait_line("DISCONNECTED", WAIT).await, "10001");
        backend.push(status_update(&[("10001", true)]));
        assert_eq!(nonebot.wait_line("CONNECTED", WAIT).await, "10001");
    }
    backend.push(private_text("10001", "/echo still here"));
    let sent = backend.next_request().await;
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "still here"}}]));
    let log = nonebot.stderr();
    assert!(!log.contains("Duplicate") && !log.contains("already a bot"), "nonebot saw a duplicate connection");
    drop(nonebot);
    bridge.stop().await;
}

#[tokio::test]
async fn aiocqhttp_with_split_roles_gets_events_on_event_and_calls_over_api() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let (mut aiocqhttp, port) =
        start_client("aiocqhttp", "aiocqhttp_split_bot.py", &[("ACCESS_TOKEN", "s3cret")]).await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse_api = Some(format!("ws://127.0.0.1:{port}/ws/api/"));
        o.ws_reverse_event = Some(format!("ws://127.0.0.1:{port}/ws/event/"));
        o.access_token = Some("s3cret".into());
    })
    .await;
    let mut roles =
        vec![aiocqhttp.wait_line("CONNECTED", START_WAIT).await, aiocqhttp.wait_line("CONNECTED", START_WAIT).await];
    roles.sort();
    assert_eq!(roles, ["API 10001", "Event 10001"]);

    backend.push(private_text("10001", "hello & welcome"));
    let message: Value = serde_json::from_str(&aiocqhttp.wait_line("MESSAGE", WAIT).await).unwrap();
    assert_eq!(message["user_id"], 20002);
    assert_eq!(message["message"], "hello &amp; welcome");
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!(sent["params"]["user_id"], "20002");
    // aiocqhttp echoes the raw (escaped) CQ string as the message, so the bridge decodes it.
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "echo: hello & welcome"}}]));
    let data: Value = serde_json::from_str(&aiocqhttp.wait_line("SENT", WAIT).await).unwrap();
    assert!(data["message_id"].is_i64(), "{data}");

    // The event came on the Event connection, the call and its answer on the API connection.
    aiocqhttp.wait_frame("<- Event", WAIT, |f| f["post_type"] == "message").await;
    let call = aiocqhttp.wait_frame("-> API", WAIT, |f| f["action"] == "send_private_msg").await;
    assert!(call["echo"].is_object(), "aiocqhttp's echo is an object: {call}");
    let answer = aiocqhttp.wait_frame("<- API", WAIT, |f| f["echo"] == call["echo"]).await;
    assert_eq!(answer["status"], "ok");
    assert!(aiocqhttp.traced_frames("<- API").iter().all(|f| f.get("post_type").is_none()), "events on API");
    assert!(aiocqhttp.traced_frames("-> Event").is_empty(), "aiocqhttp called over the Event connection");
    drop(aiocqhttp);
    bridge.stop().await;
}

/// aiocqhttp answers a group message with a quick operation (`reply` + `at_sender`): over reverse
/// WS it becomes `.handle_quick_operation_async` on the API connection, with `sender` stripped
/// from the context, so the bridge must take the mention target from `context.user_id`.
#[tokio::test]
async fn aiocqhttp_quick_reply_with_at_sender_over_reverse_ws() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let (mut aiocqhttp, port) = start_client("aiocqhttp", "aiocqhttp_split_bot.py", &[]).await;
    let bridge = bridge_with(&backend, |o| {
        o.ws_reverse_api = Some(format!("ws://127.0.0.1:{port}/ws/api/"));
        o.ws_reverse_event = Some(format!("ws://127.0.0.1:{port}/ws/event/"));
    })
    .await;
    aiocqhttp.wait_line("CONNECTED", START_WAIT).await;
    aiocqhttp.wait_line("CONNECTED", START_WAIT).await;

    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "gq1", "group_id": "40004", "user_id": "20002", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": "ping"}}]}),
    ));
    aiocqhttp.wait_line("GROUP", WAIT).await;
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!((&sent["params"]["detail_type"], &sent["params"]["group_id"]), (&json!("group"), &json!("40004")));
    let message = sent["params"]["message"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        message.first(),
        Some(&json!({"type": "mention", "data": {"user_id": "20002"}})),
        "mention first: {sent}"
    );
    let text: String = message.iter().filter_map(|s| s["data"]["text"].as_str()).collect();
    assert_eq!(text.trim(), "quick: ping");

    let call = aiocqhttp.wait_frame("-> API", WAIT, |f| f["action"] == ".handle_quick_operation_async").await;
    assert!(call["params"]["context"].get("sender").is_none(), "aiocqhttp strips sender: {call}");
    let answer = aiocqhttp.wait_frame("<- API", WAIT, |f| f["echo"] == call["echo"]).await;
    assert_eq!((answer["status"].as_str(), &answer["data"]), (Some("ok"), &Value::Null));
    drop(aiocqhttp);
    bridge.stop().await;
}
