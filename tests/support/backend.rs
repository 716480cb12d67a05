//! The scripted v12 implementation (forward-WS server) and v12 event builders.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use super::WAIT;

/// How the scripted backend introduces itself.
#[derive(Clone)]
pub struct BackendOptions {
    /// v12 `self.user_id`s of the accounts on the link.
    pub accounts: Vec<String>,
    pub platform: String,
    pub token: Option<String>,
    /// Send `meta.connect` and `meta.status_update` on connect.
    pub announce: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions { accounts: vec!["10001".into()], platform: "qq".into(), token: None, announce: true }
    }
}

/// A scripted OneBot v12 implementation serving forward WebSocket.
pub struct FakeBackend {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Value>,
    push: Arc<Mutex<Option<mpsc::UnboundedSender<Message>>>>,
    answers: Arc<Mutex<HashMap<String, VecDeque<Value>>>>,
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
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

impl FakeBackend {
    pub async fn start(opts: BackendOptions) -> FakeBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (req_tx, requests) = mpsc::unbounded_channel();
        let push = Arc::new(Mutex::new(None));
        let answers: Arc<Mutex<HashMap<String, VecDeque<Value>>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (push2, answers2, conns2) = (push.clone(), answers.clone(), connections.clone());
        let task = tokio::spawn(async move {
            let seq = Arc::new(AtomicUsize::new(0));
            while let Ok((stream, _)) = listener.accept().await {
                let token = opts.token.clone();
                #[allow(clippy::result_large_err)]
                let cb = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    let ok = match &token {
                        None => true,
                        Some(t) => {
                            req.headers().get("authorization").and_then(|v| v.to_str().ok())
                                == Some(&format!("Bearer {t}"))
                        }
                    };
                    if ok {
                        Ok(resp)
                    } else {
                        let mut e = ErrorResponse::new(None);
                        *e.status_mut() = StatusCode::UNAUTHORIZED;
                        Err(e)
                    }
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, cb).await else { continue };
                conns2.fetch_add(1, Ordering::SeqCst);
                let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
                *push2.lock().unwrap() = Some(tx);
                let (mut sink, mut stream) = ws.split();
                if opts.announce {
                    let connect = json!({"id": "", "time": 1.0, "type": "meta", "detail_type": "connect", "sub_type": "",
                        "version": {"impl": "fake", "version": "1.0", "onebot_version": "12"}});
                    let status = json!({"id": "", "time": 1.0, "type": "meta", "detail_type": "status_update", "sub_type": "",
                        "status": default_answer(&json!({"action": "get_status"}), &opts, 0)["data"]});
                    let _ = sink.send(Message::text(connect.to_string())).await;
                    let _ = sink.send(Message::text(status.to_string())).await;
                }
                loop {
                    tokio::select! {
                        out = rx.recv() => match out {
                            Some(m) => { if sink.send(m).await.is_err() { break; } }
                            None => break,
                        },
                        frame = stream.next() => match frame {
                            Some(Ok(Message::Text(t))) => {
                                let req: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                                let _ = req_tx.send(req.clone());
                                let n = seq.fetch_add(1, Ordering::SeqCst);
                                let action = req["action"].as_str().unwrap_or("").to_owned();
                                let scripted = answers2.lock().unwrap().get_mut(&action).and_then(|q| q.pop_front());
                                let mut resp = scripted.unwrap_or_else(|| default_answer(&req, &opts, n));
                                if resp == json!("silence") { continue; }
                                resp["echo"] = req["echo"].clone();
                                if sink.send(Message::text(resp.to_string())).await.is_err() { break; }
                            }
                            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                            Some(Ok(_)) => {}
                        }
                    }
                }
            }
        });
        FakeBackend { addr, requests, push, answers, connections, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Sends a raw event to the connected bridge.
    pub fn push(&self, event: Value) {
        self.push_raw(Message::text(event.to_string()));
    }

    pub fn push_raw(&self, m: Message) {
        let guard = self.push.lock().unwrap();
        guard.as_ref().expect("the bridge is not connected").send(m).unwrap();
    }

    /// Drops the current connection (as a restarting implementation would).
    pub fn kick(&self) {
        self.push_raw(Message::Close(None));
    }

    /// Answers the next call of `action` with this full response (or `json!("silence")` for none).
    pub fn answer_next(&self, action: &str, response: Value) {
        self.answers.lock().unwrap().entry(action.into()).or_default().push_back(response);
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
