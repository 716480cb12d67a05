//! go-cqhttp's HTTP transports on the real bridge: the HTTP API server (bots call actions) and
//! HTTP POST (the bridge posts events to the bot's webhook and runs the quick operation in its
//! reply), between a scripted v12 backend and
//! - scripted HTTP clients and a small webhook receiver written here, and
//! - real bots: nonebot2 + nonebot-adapter-onebot (HTTP POST with a secret, HTTP API with a token)
//!   and aiocqhttp (HTTP POST, quick reply in the response), from `tests/clients/`.
//!
//! Everything is on loopback with ports chosen by the OS. The real-client tests need
//! `tests/clients/.venv` (made by `tests/run.sh`); they fail, never skip, without it.
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)

mod clients;
mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha1::Sha1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use clients::*;
use onebot_bridge::config::{Config, FileConfig, HttpPost, Limits, Overrides};
use onebot_bridge::core::v11::PostFormat;
use onebot_bridge::Bridge;
use support::*;

// ---- the bridge ----

/// Starts the real bridge on `backend` with the flags `flags` sets, then lets `tweak` adjust the
/// resolved configuration (limits and retry timings have no flags).
async fn start(backend: &FakeBackend, flags: impl FnOnce(&mut Overrides), tweak: impl FnOnce(&mut Config)) -> Bridge {
    let mut o = Overrides { backend_ws: vec![backend.url()], ..Default::default() };
    flags(&mut o);
    let mut config = Config::resolve(FileConfig::default(), o).unwrap();
    tweak(&mut config);
    Bridge::start(config).await.unwrap()
}

/// Waits (polling) until the bridge knows `n` bot accounts.
async fn accounts_known(bridge: &Bridge, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while bridge.hub().accounts_now().len() < n {
        assert!(tokio::time::Instant::now() < deadline, "the bridge never learnt of {n} account(s)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Everything the bridges of this test process logged (`onebot_bridge=debug`), as text.
fn bridge_log() -> String {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let buf = LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("onebot_bridge=debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in this test binary");
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// ---- a raw HTTP/1.1 client: every byte on the wire is the test's ----

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response (headers, then `Content-Length` bytes of body).
async fn read_reply(stream: &mut TcpStream) -> Reply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap();
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Reply { status, headers, body: buf[end + 4..end + 4 + len].to_vec() };
            }
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk)).await.expect("no reply").expect("read failed");
        assert!(n > 0, "connection closed before a full reply: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends one request (`Content-Length` set from `body`) and reads the reply.
async fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    read_reply(&mut stream).await
}

async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    http(addr, "GET", target, headers, b"").await
}

async fn post_json(addr: SocketAddr, target: &str, auth: &str, body: &Value) -> Reply {
    let headers = [("Content-Type", "application/json"), ("Authorization", auth)];
    http(addr, "POST", target, &headers, body.to_string().as_bytes()).await
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A OneBot answer over HTTP: status 200, go-cqhttp's content type, never an `echo`.
fn onebot(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.headers.get("content-type").map(String::as_str), Some("application/json; charset=utf-8"));
    let answer = reply.json();
    assert!(answer.get("echo").is_none(), "HTTP answers carry no echo: {answer}");
    answer
}

/// An empty refusal with this HTTP status.
fn refused(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(reply.body.is_empty(), "refusals have an empty body: {reply:?}");
}

// ---- (a) the HTTP API ----

#[tokio::test]
async fn http_api_reads_actions_like_go_cqhttp() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(
        &backend,
        |o| {
            o.http = vec!["127.0.0.1:0".into()];
            o.access_token = Some("s3cret".into());
        },
        |c| c.limits.max_message = 256 * 1024,
    )
    .await;
    let addr = bridge.addrs().http[0];
    accounts_known(&bridge, 1).await;
    let bearer = [("Authorization", "Bearer s3cret")];

    // GET, params in the query, a JSON-looking `message` read as JSON, the token in the query.
    let message = json!([{"type": "text", "data": {"text": "hi "}}, {"type": "face", "data": {"id": "1"}}]);
    let target = format!(
        "/send_msg?message_type=group&group_id=30003&message={}&access_token=s3cret",
        urlencode(&message.to_string())
    );
    let answer = onebot(&get(addr, &target, &[]).await);
    assert_eq!(answer["status"], "ok", "{answer}");
    let message_id = answer["data"]["message_id"].as_i64().expect("an integer message_id");
    assert!(message_id > 0 && message_id <= i32::MAX as i64);
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message");
    assert_eq!(sent["self"]["user_id"], "10001");
    assert_eq!(sent["params"]["detail_type"], "group");
    assert_eq!(sent["params"]["group_id"], "30003");
    assert_eq!(
        sent["params"]["message"],
        json!([{"type": "text", "data": {"text": "hi "}}, {"type": "qq.face", "data": {"id": "1"}}])
    );

    // The token (and nothing else of the transport) never reaches the backend as a param.
    let answer = onebot(&get(addr, "/get_stranger_info?user_id=20002&access_token=s3cret", &[]).await);
    assert_eq!((&answer["status"], &answer["data"]["user_id"]), (&json!("ok"), &json!(20002)), "{answer}");
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "get_user_info");
    assert_eq!(sent["params"], json!({"user_id": "20002"}));

    // POST, urlencoded form, a CQ string; `Bearer`.
    let form = format!("user_id=20002&message={}", urlencode("hello [CQ:face,id=2]"));
    let headers = [("Content-Type", "application/x-www-form-urlencoded"), bearer[0]];
    let answer = onebot(&http(addr, "POST", "/send_private_msg", &headers, form.as_bytes()).await);
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = backend.next_request().await;
    assert_eq!((&sent["params"]["detail_type"], &sent["params"]["user_id"]), (&json!("private"), &json!("20002")));
    assert_eq!(
        sent["params"]["message"],
        json!([{"type": "text", "data": {"text": "hello "}}, {"type": "qq.face", "data": {"id": "2"}}])
    );

    // POST JSON; its root wins over the query; `Token` scheme.
    let answer = onebot(
        &post_json(
            addr,
            "/send_group_msg?group_id=1",
            "Token s3cret",
            &json!({"group_id": 30003, "message": "from json"}),
        )
        .await,
    );
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = backend.next_request().await;
    assert_eq!(sent["params"]["group_id"], "30003");
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "from json"}}]));

    // `POST /` with {action, params}; its echo is not answered over HTTP.
    let answer = onebot(
        &post_json(addr, "/", "Bearer s3cret", &json!({"action": "get_login_info", "params": {}, "echo": "e1"})).await,
    );
    assert_eq!(
        (&answer["data"]["user_id"], &answer["data"]["nickname"]),
        (&json!(10001), &json!("bridge-bot")),
        "{answer}"
    );
    assert_eq!(backend.next_request().await["action"], "get_self_info");

    // `_async`: run at once, answered with data (go-cqhttp).
    let body = json!({"message_type": "private", "user_id": 20002, "message": "later"});
    let answer = onebot(&post_json(addr, "/send_msg_async", "Bearer s3cret", &body).await);
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer["data"]["message_id"].is_i64(), "{answer}");
    assert_eq!(backend.next_request().await["params"]["message"], json!([{"type": "text", "data": {"text": "later"}}]));

    // Failures are OneBot answers with HTTP 200: unknown actions (a trailing slash included)…
    for path in ["/no_such_action", "/get_login_info/", "/"] {
        let answer = onebot(&get(addr, path, &bearer).await);
        assert_eq!(
            (&answer["status"], &answer["retcode"], &answer["msg"], &answer["wording"]),
            (&json!("failed"), &json!(404), &json!("API_NOT_FOUND"), &json!("API不存在")),
            "{path}: {answer}"
        );
    }
    // …and bad params.
    let answer = onebot(&get(addr, "/send_private_msg?message=x", &bearer).await);
    assert_eq!((&answer["retcode"], &answer["msg"]), (&json!(100), &json!("BAD_PARAM")), "{answer}");
    assert!(backend.no_request_within(Duration::from_millis(200)).await, "refused calls must not reach the backend");

    // Refusals without a OneBot answer: empty bodies with go-cqhttp's statuses.
    let headers = [("Content-Type", "application/json"), bearer[0]];
    refused(&http(addr, "POST", "/send_msg", &headers, b"{\"message\":").await, 400);
    refused(&http(addr, "PUT", "/get_login_info", &bearer, b"").await, 404);
    refused(&http(addr, "DELETE", "/get_login_info", &bearer, b"").await, 404);
    refused(&get(addr, "/get_login_info", &[]).await, 401);
    refused(&get(addr, "/get_login_info", &[("Authorization", "Bearer nope")]).await, 403);
    refused(&get(addr, "/get_login_info", &[("Authorization", "Token nope")]).await, 403);
    refused(&get(addr, "/get_login_info?access_token=nope", &[]).await, 403);
    // The header wins over the query, as in go-cqhttp.
    refused(&get(addr, "/get_login_info?access_token=s3cret", &[("Authorization", "Bearer nope")]).await, 403);

    // Bodies above the limit: refused by their Content-Length before a byte of them is read…
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /send_msg HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    refused(&read_reply(&mut stream).await, 413);
    // …or, without one (chunked), as soon as they exceed it.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /send_msg HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer s3cret\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 300 * 1024];
    stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.unwrap();
    stream.write_all(&chunk).await.unwrap();
    stream.write_all(b"\r\n").await.unwrap();
    refused(&read_reply(&mut stream).await, 413);
    // A body just under the limit is fine.
    let text = "x".repeat(200 * 1024);
    let answer =
        onebot(&post_json(addr, "/send_private_msg", "Bearer s3cret", &json!({"user_id": 1, "message": text})).await);
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(
        backend.next_request().await["params"]["message"][0]["data"]["text"].as_str().map(str::len),
        Some(200 * 1024)
    );

    bridge.stop().await;
}

#[tokio::test]
async fn http_api_picks_the_account_or_says_why_not() {
    let opts = BackendOptions { accounts: vec!["10001".into(), "10002".into()], ..Default::default() };
    let mut backend = FakeBackend::start(opts).await;
    let bridge = start(&backend, |o| o.http = vec!["127.0.0.1:0".into()], |_| {}).await;
    let addr = bridge.addrs().http[0];
    accounts_known(&bridge, 2).await;

    let answer = onebot(&get(addr, "/get_login_info", &[]).await);
    assert_eq!((&answer["retcode"], &answer["msg"]), (&json!(100), &json!("BRIDGE_AMBIGUOUS_ACCOUNT")), "{answer}");
    let wording = answer["wording"].as_str().unwrap();
    assert!(wording.contains("10001") && wording.contains("10002") && wording.contains("self_id"), "{wording}");

    // `self_id` names the account, and is not passed on as the action's param.
    let answer = onebot(&get(addr, "/get_stranger_info?user_id=5&self_id=10002", &[]).await);
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = backend.next_request().await;
    assert_eq!(sent["self"]["user_id"], "10002");
    assert_eq!(sent["params"], json!({"user_id": "5"}));
    let answer = onebot(&post_json(addr, "/get_login_info", "", &json!({"self_id": 10001})).await);
    assert_eq!(answer["data"]["user_id"], 10001, "{answer}");
    assert_eq!(backend.next_request().await["self"]["user_id"], "10001");

    // An account the backend does not have.
    let answer = onebot(&get(addr, "/get_login_info?self_id=777", &[]).await);
    assert_eq!((&answer["retcode"], &answer["msg"]), (&json!(100), &json!("BACKEND_UNAVAILABLE")), "{answer}");
    assert!(answer["wording"].as_str().unwrap().contains("777"), "{answer}");

    bridge.stop().await;
}

#[tokio::test]
async fn http_api_finishes_requests_in_flight_at_shutdown() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge =
        start(&backend, |o| (o.http, o.action_timeout_ms) = (vec!["127.0.0.1:0".into()], Some(1500)), |_| {}).await;
    let addr = bridge.addrs().http[0];
    accounts_known(&bridge, 1).await;

    backend.answer_next("get_user_info", json!("silence"));
    let call = tokio::spawn(async move { get(addr, "/get_stranger_info?user_id=5", &[]).await });
    assert_eq!(backend.next_request().await["action"], "get_user_info");
    let stop = tokio::spawn(bridge.stop());
    // The request in flight still gets its (failed) OneBot answer rather than a dropped connection.
    let answer = onebot(&call.await.unwrap());
    assert_eq!(answer["status"], "failed", "{answer}");
    assert!(answer["msg"].as_str().unwrap().starts_with("BACKEND_"), "{answer}");
    tokio::time::timeout(WAIT, stop).await.expect("the bridge did not stop").unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens after shutdown");
}

// ---- (b) HTTP POST, to a webhook written here ----

/// One POST the webhook received.
#[derive(Debug)]
struct Posted {
    headers: HeaderMap,
    body: Bytes,
}

impl Posted {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn is_heartbeat(&self) -> bool {
        self.json()["meta_event_type"] == "heartbeat"
    }
}

type Answer = Arc<dyn Fn(&Value) -> (u16, String) + Send + Sync>;

/// A bot's webhook: records every POST, answers with `answer(event)`, and drops the first
/// `drop_first` connections unanswered (a transport failure for the bridge).
struct Webhook {
    addr: SocketAddr,
    posts: mpsc::UnboundedReceiver<Posted>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    async fn start(listener: TcpListener, drop_first: usize, answer: Answer) -> Webhook {
        Webhook::start_slow(listener, drop_first, answer, Duration::ZERO).await
    }

    /// [`Webhook::start`], each POST answered `delay` after it came.
    async fn start_slow(listener: TcpListener, drop_first: usize, answer: Answer, delay: Duration) -> Webhook {
        let addr = listener.local_addr().unwrap();
        let (tx, posts) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if count.fetch_add(1, Ordering::SeqCst) < drop_first {
                    drop(stream);
                    continue;
                }
                let (tx, answer) = (tx.clone(), answer.clone());
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (tx, answer) = (tx.clone(), answer.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let _ = tx.send(Posted { headers: parts.headers, body });
                        tokio::time::sleep(delay).await;
                        let (status, text) = answer(&event);
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(text)));
                        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Webhook { addr, posts, connections, task }
    }

    fn url(&self) -> String {
        format!("http://{}/onebot", self.addr)
    }

    async fn next_post(&mut self) -> Posted {
        tokio::time::timeout(WAIT, self.posts.recv()).await.expect("nothing posted").unwrap()
    }

    /// The next post that is not a heartbeat.
    async fn next_event(&mut self) -> Posted {
        loop {
            let p = self.next_post().await;
            if !p.is_heartbeat() {
                return p;
            }
        }
    }
}

fn no_content() -> Answer {
    Arc::new(|_| (204, String::new()))
}

fn hmac_sha1_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// What go-cqhttp's receivers check: headers, the signature over the exact bytes, and bytes
/// that a JavaScript bot re-serialising the parsed JSON would reproduce (Koishi's check).
fn assert_signed_post(p: &Posted, secret: &str) {
    assert_eq!(p.header("content-type"), Some("application/json"));
    assert_eq!(p.header("x-self-id"), Some("10001"));
    assert_eq!(p.header("user-agent"), Some("CQHttp/4.15.0"));
    assert_eq!(p.header("authorization"), None, "go-cqhttp sends no token with posts");
    let want = format!("sha1={}", hmac_sha1_hex(secret, &p.body));
    assert_eq!(p.header("x-signature"), Some(want.as_str()), "signature over the exact body bytes");
    let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(&p.body).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reserialised),
        String::from_utf8_lossy(&p.body),
        "the body must be what re-serialising its JSON gives"
    );
}

#[tokio::test]
async fn http_post_signs_events_and_runs_the_quick_reply() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let answer: Answer = Arc::new(|ev: &Value| match ev["post_type"].as_str() {
        Some("message") => (200, r#"{"reply":"hi","at_sender":true}"#.to_owned()),
        _ => (204, String::new()),
    });
    let mut webhook = Webhook::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), 0, answer).await;
    let bridge = start(
        &backend,
        |o| {
            o.http_post = vec![webhook.url()];
            o.secret = Some("hush".into());
            o.heartbeat_interval_ms = Some(200);
        },
        |_| {},
    )
    .await;
    accounts_known(&bridge, 1).await;

    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "g-1", "user_id": "20002", "group_id": "30003", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": "a/b <é> 😀 \"q\" & \u{1} [x]"}}]}),
    ));
    let posted = webhook.next_event().await;
    assert_signed_post(&posted, "hush");
    let ev = posted.json();
    assert_eq!(
        (&ev["post_type"], &ev["message_type"], &ev["self_id"]),
        (&json!("message"), &json!("group"), &json!(10001))
    );
    assert_eq!(ev["message"], "a/b <é> 😀 \"q\" &amp; \u{1} &#91;x&#93;", "string post format by default");
    assert_eq!(
        (&ev["group_id"], &ev["user_id"], &ev["sender"]["user_id"]),
        (&json!(30003), &json!(20002), &json!(20002))
    );

    // The reply body is a quick operation: a reply to the group, mentioning the sender first.
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!(sent["self"]["user_id"], "10001");
    assert_eq!((&sent["params"]["detail_type"], &sent["params"]["group_id"]), (&json!("group"), &json!("30003")));
    assert_eq!(
        sent["params"]["message"],
        json!([{"type": "mention", "data": {"user_id": "20002"}}, {"type": "text", "data": {"text": " hi"}}])
    );

    // Heartbeats are posted too (and signed), every 200 ms, with the account's status.
    for _ in 0..2 {
        let beat = loop {
            let p = webhook.next_post().await;
            if p.is_heartbeat() {
                break p;
            }
        };
        assert_signed_post(&beat, "hush");
        let hb = beat.json();
        assert_eq!(
            (&hb["post_type"], &hb["self_id"], &hb["interval"]),
            (&json!("meta_event"), &json!(10001), &json!(200))
        );
        assert_eq!(hb["status"]["online"], true, "{hb}");
    }
    // A heartbeat answered with 204 asks for nothing.
    assert!(backend.no_request_within(Duration::from_millis(300)).await);

    bridge.stop().await;
}

#[tokio::test]
async fn http_post_retries_transport_failures_but_not_http_errors() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let answer: Answer = Arc::new(|ev: &Value| match ev["raw_message"].as_str() {
        Some("fail") => (500, "oops".to_owned()),
        _ => (204, String::new()),
    });
    // The first two connections are dropped unanswered.
    let mut webhook = Webhook::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), 2, answer).await;
    let bridge = start(
        &backend,
        |o| (o.http_post, o.heartbeat_interval_ms) = (vec![webhook.url()], Some(0)),
        |c| c.http_posts[0].retries_interval = Duration::from_millis(100),
    )
    .await;
    accounts_known(&bridge, 1).await;
    let message = |id: &str, text: &str| {
        v12_message(
            "private",
            "10001",
            json!({"message_id": id, "user_id": "20002", "message": [{"type": "text", "data": {"text": text}}]}),
        )
    };

    backend.push(message("m1", "first"));
    let p = webhook.next_event().await;
    assert_eq!(p.json()["raw_message"], "first");
    assert_eq!(p.header("x-signature"), None, "no secret, no signature");
    assert_eq!(webhook.connections.load(Ordering::SeqCst), 3, "delivered on the third attempt");

    // HTTP 500 is an answer: not retried, the next event comes next.
    backend.push(message("m2", "fail"));
    assert_eq!(webhook.next_event().await.json()["raw_message"], "fail");
    backend.push(message("m3", "third"));
    assert_eq!(webhook.next_event().await.json()["raw_message"], "third");
    // A non-JSON reply body ("oops") is not a quick operation.
    assert!(backend.no_request_within(Duration::from_millis(200)).await);

    bridge.stop().await;
}

/// A webhook slower than a burst (each POST answered 10 ms after it came, 200 events pushed at
/// once, a queue of 16) gets every event, in order: the link waits for it once its queue is
/// full, up to `--slow-bot-wait` (5 s; the burst takes about 2 s). Before, it got the first
/// events and the last 16, and lost the rest, as it still does with `--slow-bot-wait 0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_post_a_webhook_slower_than_a_burst_loses_nothing() {
    const N: usize = 200;
    for wait in [None, Some(Duration::ZERO)] {
        let backend = FakeBackend::start(BackendOptions::default()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut webhook = Webhook::start_slow(listener, 0, no_content(), Duration::from_millis(10)).await;
        let bridge = start(
            &backend,
            |o| (o.http_post, o.heartbeat_interval_ms) = (vec![webhook.url()], Some(0)),
            |c| {
                c.limits.event_queue = 16;
                c.limits.slow_bot_wait = wait.unwrap_or(c.limits.slow_bot_wait);
            },
        )
        .await;
        accounts_known(&bridge, 1).await;
        for n in 0..N {
            backend.push(v12_message(
                "private",
                "10001",
                json!({"message_id": format!("slow-{n}"), "user_id": "20002", "message": format!("n={n}")}),
            ));
        }
        let mut got = Vec::new();
        while got.last() != Some(&(N - 1)) {
            let raw = webhook.next_event().await.json()["raw_message"].as_str().unwrap().to_owned();
            got.push(raw.strip_prefix("n=").unwrap().parse::<usize>().unwrap());
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
        let lost = dropped_for_slow_bots(&bridge, 10001);
        assert_eq!(lost as usize, N - got.len(), "every loss counted");
        match wait {
            None => assert_eq!(got.len(), N, "waited for: every event"),
            Some(_) => assert!(got.len() < N / 2, "not waited for: the oldest go at once ({} arrived)", got.len()),
        }
        bridge.stop().await;
    }
}

#[tokio::test]
async fn http_post_retries_until_the_bot_is_up() {
    bridge_log();
    let backend = FakeBackend::start(BackendOptions::default()).await;
    // A port with nothing on it yet: connections are refused.
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let bridge = start(
        &backend,
        |o| (o.http_post, o.heartbeat_interval_ms) = (vec![format!("http://{addr}/")], Some(0)),
        |c| (c.http_posts[0].max_retries, c.http_posts[0].retries_interval) = (20, Duration::from_millis(100)),
    )
    .await;
    accounts_known(&bridge, 1).await;
    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "m1", "user_id": "20002", "message": [{"type": "text", "data": {"text": "patience"}}]}),
    ));
    // The bridge says (in its log) that a POST to that URL failed and will be retried…
    let refused = format!("url=http://{addr}/");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !bridge_log().lines().any(|l| l.contains(&refused) && l.contains("retrying") && l.contains("refused")) {
        assert!(tokio::time::Instant::now() < deadline, "no refused POST to {addr} was logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …and once the bot is up, the event arrives.
    let mut webhook = Webhook::start(TcpListener::bind(addr).await.unwrap(), 0, no_content()).await;
    assert_eq!(webhook.next_event().await.json()["raw_message"], "patience");
    bridge.stop().await;
}

// ---- (c) real bots ----

#[tokio::test]
async fn nonebot_over_http_post_and_the_http_api() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(
        &backend,
        |o| {
            o.http = vec!["127.0.0.1:0".into()];
            o.access_token = Some("tok".into());
            o.heartbeat_interval_ms = Some(0);
        },
        |_| {},
    )
    .await;
    let api = bridge.addrs().http[0];
    let roots = json!({"10001": format!("http://{api}/")}).to_string();
    let script = clients_dir().join("nonebot_http_bot.py");
    let envs =
        [("ONEBOT_V11_API_ROOTS", roots.as_str()), ("ONEBOT_V11_ACCESS_TOKEN", "tok"), ("ONEBOT_V11_SECRET", "hush")];
    let mut bot = ClientProcess::spawn("nonebot", &python(), &[script.to_str().unwrap()], &envs);
    let port = bot.wait_line("LISTENING", START_WAIT).await;

    // The bridge's HTTP POST transport, aimed at nonebot's receiver (its port is only known now).
    let post = HttpPost {
        url: format!("http://127.0.0.1:{port}/onebot/v11/").parse().unwrap(),
        secret: Some("hush".into()),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        retries_interval: Duration::from_millis(200),
        post_format: PostFormat::String,
        self_id: None,
        filter: None,
    };
    let (stop_posting, stopped) = watch::channel(false);
    let posting =
        tokio::spawn(onebot_bridge::bots::http_post::run(post, bridge.hub().clone(), Limits::default(), None, stopped));

    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "m1", "user_id": "20002", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": "/echo hi"}}]}),
    ));
    // nonebot accepted the signed post (a bad signature is answered 403 and the event dropped)…
    assert_eq!(bot.wait_line("CONNECTED", START_WAIT).await, "10001");
    // …and its echo came back through the HTTP API.
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!((&sent["params"]["detail_type"], &sent["params"]["user_id"]), (&json!("private"), &json!("20002")));
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "hi"}}]));

    // What nonebot saw: the event as posted, its API call, and the answer it got.
    let posted = bot.wait_frame("<-", WAIT, |f| f["body"]["post_type"] == "message").await;
    assert_eq!(posted["body"]["message"], "/echo hi");
    assert_eq!(posted["headers"]["x-self-id"], "10001");
    let call = bot.wait_frame("->", WAIT, |f| f["url"].as_str().is_some_and(|u| u.ends_with("/send_msg"))).await;
    assert_eq!(call["headers"]["Authorization"], "Bearer tok", "{call}");
    assert_eq!(call["body"]["user_id"], 20002);
    let answer = bot.wait_frame("<-", WAIT, |f| f.get("retcode").is_some()).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer["data"]["message_id"].is_i64(), "{answer}");

    let _ = stop_posting.send(true);
    tokio::time::timeout(WAIT, posting).await.expect("HTTP POST did not stop").unwrap();
    drop(bot);
    bridge.stop().await;
}

#[tokio::test]
async fn aiocqhttp_quick_reply_mentions_the_sender() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let script = clients_dir().join("aiocqhttp_bot.py");
    let mut bot =
        ClientProcess::spawn("aiocqhttp", &python(), &[script.to_str().unwrap()], &[("AIOCQHTTP_SECRET", "hush")]);
    let port = bot.wait_line("LISTENING", START_WAIT).await;
    let bridge = start(
        &backend,
        |o| {
            o.http_post = vec![format!("http://127.0.0.1:{port}/")];
            o.secret = Some("hush".into());
        },
        |_| {},
    )
    .await;
    accounts_known(&bridge, 1).await;

    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "g1", "user_id": "20002", "group_id": "30003", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": "ping"}}]}),
    ));
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!((&sent["params"]["detail_type"], &sent["params"]["group_id"]), (&json!("group"), &json!("30003")));
    let message = sent["params"]["message"].as_array().unwrap();
    assert_eq!(message[0], json!({"type": "mention", "data": {"user_id": "20002"}}), "{message:?}");
    assert_eq!(message[1]["type"], "text");
    assert_eq!(message[1]["data"]["text"].as_str().map(str::trim), Some("echo: ping"));
    assert_eq!(message.len(), 2);

    // aiocqhttp checked the signature (it answers 403 otherwise) and saw the event as posted.
    let seen = bot.wait_frame("<-", WAIT, |f| f["post_type"] == "message").await;
    assert_eq!((&seen["message"], &seen["group_id"], &seen["user_id"]), (&json!("ping"), &json!(30003), &json!(20002)));

    drop(bot);
    bridge.stop().await;
}

/// go-cqhttp's long polling: with `long-polling` on an HTTP server, `get_updates` hands out the
/// events queued since the last call (waiting for one when there are none); anywhere else it is a
/// clear failure.
#[tokio::test]
async fn get_updates_long_polls_where_configured() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let file: FileConfig = toml::from_str(
        "[[servers]]\nhttp = { address = \"127.0.0.1:0\", post-format = \"array\", long-polling = { enabled = true, max-queue-size = 2 } }\n",
    )
    .unwrap();
    let overrides = Overrides { backend_ws: vec![backend.url()], ws: vec!["127.0.0.1:0".into()], ..Default::default() };
    let bridge = Bridge::start(Config::resolve(file, overrides).unwrap()).await.unwrap();
    let addr = bridge.addrs().http[0];
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    bot.next_event().await;
    for (id, text) in [("u1", "one"), ("u2", "two"), ("u3", "three")] {
        backend.push(v12_message("private", "10001", json!({"message_id": id, "user_id": "20002", "message": text})));
        bot.next_event().await;
    }
    // A queue of 2 kept the newest two.
    let got = post_json(addr, "/get_updates", "", &json!({"limit": 0, "timeout": 1})).await.json();
    let texts: Vec<_> = got["data"].as_array().unwrap().iter().map(|e| e["raw_message"].clone()).collect();
    assert_eq!(texts, [json!("two"), json!("three")], "{got}");
    assert_eq!(got["data"][0]["message"][0]["type"], "text", "the server's array format");
    // Nothing queued: the call waits for the next event.
    let waiting =
        tokio::spawn(async move { post_json(addr, "/get_updates", "", &json!({"timeout": 10})).await.json() });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    backend.push(v12_message("private", "10001", json!({"message_id": "u4", "user_id": "20002", "message": "four"})));
    let got = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(got["data"][0]["raw_message"], "four", "{got}");
    // The WebSocket endpoint has no long polling.
    let answer = bot.call("get_updates", json!({})).await;
    assert_eq!((answer["retcode"].as_i64(), answer["msg"].as_str()), (Some(100), Some("LONG_POLLING_DISABLED")));
    bridge.stop().await;
}
