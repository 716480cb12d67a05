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
//!
//! File actions (`upload_file`, `upload_file_fragmented`, `get_file`, `get_file_fragmented`) are
//! answered from an in-memory file store, as the v12 spec says (bytes as base64 text, `get_file`
//! `type: url` served by a small HTTP server started on first use); see [`FakeBackend::add_file`],
//! [`FakeBackend::file`], [`FakeBackend::uploads`] and [`FakeBackend::file_url_requests`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use onebot_bridge::backends::v12::codec;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
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
    /// The implementation name in `meta.connect` and `get_version` (the bridge picks its profile by it).
    pub implementation: String,
    /// What `get_supported_actions` lists (empty: the action is unsupported, 10002).
    pub supported_actions: Vec<String>,
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
    /// `get_file` `type: url` gives a URL on the file server. Off: it answers 10004, as a backend
    /// that cannot give URLs.
    pub file_urls: bool,
    /// `upload_file_fragmented` and `get_file_fragmented` are served. Off: they answer 10002.
    pub fragmented_files: bool,
    /// Forward WebSocket: the send and receive buffers of the connections it accepts, in bytes
    /// (the kernel's defaults when `None`). A few KiB fill at once, so the bridge soon meets a
    /// backend that reads nothing while one of its own writes waits.
    pub socket_buffers: Option<u32>,
    /// WebSocket: events pushed go out before anything more is read, so while a write of one
    /// waits (the bridge not reading) the backend reads nothing either: a backend with one task
    /// per connection under a burst.
    pub writes_first: bool,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            implementation: "fake".into(),
            supported_actions: Vec::new(),
            accounts: vec!["10001".into()],
            platform: "qq".into(),
            token: None,
            announce: true,
            protocol: Some("12.fake".into()),
            concurrent: false,
            file_urls: true,
            fragmented_files: true,
            socket_buffers: None,
            writes_first: false,
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
    /// Every WebSocket connection's sender, for [`FakeBackend::push_all`] (closed ones are
    /// dropped as it finds them).
    every: Mutex<Vec<mpsc::UnboundedSender<Message>>>,
    /// The file store behind the file actions (shared with the file server).
    files: Arc<Mutex<FileStore>>,
    /// The file server for `get_file` `type: url`, started on first use.
    file_server: Mutex<Option<FileServer>>,
    /// GETs the file server answered.
    file_gets: Arc<AtomicUsize>,
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
        let mut resp = scripted.or_else(|| self.file_answer(req)).unwrap_or_else(|| default_answer(req, &self.opts, n));
        if resp == json!("silence") {
            return None;
        }
        if let Some(echo) = req.get("echo") {
            resp["echo"] = echo.clone();
        }
        Some(resp)
    }

    /// The answer to a file action from the file store; `None` for any other action.
    fn file_answer(&self, req: &Value) -> Option<Value> {
        let p = &req["params"];
        let answer = match req["action"].as_str()? {
            "upload_file" => self.upload_file(p),
            "get_file" => self.get_file(p),
            "upload_file_fragmented" | "get_file_fragmented" if !self.opts.fragmented_files => {
                Err(failed(10002, "unsupported action"))
            }
            "upload_file_fragmented" => self.upload_file_fragmented(p),
            "get_file_fragmented" => self.get_file_fragmented(p),
            _ => return None,
        };
        Some(answer.unwrap_or_else(|e| e))
    }

    fn upload_file(&self, p: &Value) -> Answer {
        let name = str_param(p, "name")?.to_owned();
        let kind = str_param(p, "type")?;
        let (bytes, url, headers, path) = match kind {
            // Not fetched: the URL's text stands for the bytes, so the entry is still downloadable.
            "url" => {
                let url = str_param(p, "url")?;
                let headers = match &p["headers"] {
                    Value::Null => Vec::new(),
                    Value::Object(m) => m
                        .iter()
                        .map(|(k, v)| {
                            v.as_str()
                                .map(|v| (k.clone(), v.to_owned()))
                                .ok_or_else(|| failed(10003, "`headers` values must be strings"))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => return Err(failed(10003, "`headers` must be a map")),
                };
                (url.as_bytes().to_vec(), Some(url.to_owned()), headers, None)
            }
            "path" => {
                let path = str_param(p, "path")?;
                let bytes = std::fs::read(path).map_err(|e| failed(32001, &format!("cannot read {path}: {e}")))?;
                (bytes, None, Vec::new(), Some(path.to_owned()))
            }
            "data" => (bytes_param(p, "data")?, None, Vec::new(), None),
            other => return Err(failed(10003, &format!("unknown upload type {other:?}"))),
        };
        // The hash of a URL's content cannot be checked, as it is not fetched.
        if kind != "url" {
            if let Some(want) = p.get("sha256").filter(|v| !v.is_null()) {
                let want = want.as_str().ok_or_else(|| failed(10003, "`sha256` must be a string"))?;
                if want != sha256_hex(&bytes) {
                    return Err(failed(10003, "sha256 mismatch"));
                }
            }
        }
        let file_id = new_id("file");
        let upload = Upload {
            file_id: file_id.clone(),
            kind: kind.to_owned(),
            name: name.clone(),
            len: bytes.len(),
            url,
            headers,
            path,
            fragments: 0,
        };
        let mut store = self.files.lock().unwrap();
        store.files.insert(file_id.clone(), StoredFile { name, bytes });
        store.uploads.push(upload);
        Ok(ok(json!({ "file_id": file_id })))
    }

    fn upload_file_fragmented(&self, p: &Value) -> Answer {
        match str_param(p, "stage")? {
            "prepare" => {
                let name = str_param(p, "name")?.to_owned();
                let total_size = u64_param(p, "total_size")?;
                if total_size > MAX_FILE {
                    return Err(failed(10003, "`total_size` too large"));
                }
                let total_size = total_size as usize;
                let tmp = new_id("tmp");
                let pending = PendingUpload { name, bytes: vec![0; total_size], fragments: 0 };
                self.files.lock().unwrap().pending.insert(tmp.clone(), pending);
                Ok(ok(json!({ "file_id": tmp })))
            }
            "transfer" => {
                let file_id = str_param(p, "file_id")?;
                let offset = u64_param(p, "offset")?;
                let data = bytes_param(p, "data")?;
                let mut store = self.files.lock().unwrap();
                let pending = store.pending.get_mut(file_id).ok_or_else(|| no_upload(file_id))?;
                let end = offset
                    .checked_add(data.len() as u64)
                    .filter(|end| *end <= pending.bytes.len() as u64)
                    .ok_or_else(|| failed(10003, "fragment goes past `total_size`"))?;
                pending.bytes[offset as usize..end as usize].copy_from_slice(&data);
                pending.fragments += 1;
                Ok(ok(Value::Null))
            }
            "finish" => {
                let file_id = str_param(p, "file_id")?;
                let want = str_param(p, "sha256")?;
                let mut store = self.files.lock().unwrap();
                let pending = store.pending.get(file_id).ok_or_else(|| no_upload(file_id))?;
                if want != sha256_hex(&pending.bytes) {
                    return Err(failed(10003, "sha256 mismatch"));
                }
                let pending = store.pending.remove(file_id).unwrap();
                let id = new_id("file");
                store.uploads.push(Upload {
                    file_id: id.clone(),
                    kind: "fragmented".into(),
                    name: pending.name.clone(),
                    len: pending.bytes.len(),
                    url: None,
                    headers: Vec::new(),
                    path: None,
                    fragments: pending.fragments,
                });
                store.files.insert(id.clone(), StoredFile { name: pending.name, bytes: pending.bytes });
                Ok(ok(json!({ "file_id": id })))
            }
            other => Err(failed(10003, &format!("unknown stage {other:?}"))),
        }
    }

    /// The name and bytes of a stored file, or the failure for an unknown id.
    fn stored(&self, p: &Value) -> Result<(String, String, Vec<u8>), Value> {
        let file_id = str_param(p, "file_id")?;
        let store = self.files.lock().unwrap();
        let file = store.files.get(file_id).ok_or_else(|| failed(10003, &format!("no such file: {file_id}")))?;
        Ok((file_id.to_owned(), file.name.clone(), file.bytes.clone()))
    }

    fn get_file(&self, p: &Value) -> Answer {
        let (file_id, name, bytes) = self.stored(p)?;
        let sha256 = sha256_hex(&bytes);
        match str_param(p, "type")? {
            "url" if !self.opts.file_urls => Err(failed(10004, "cannot give urls")),
            "url" => {
                let url = format!("http://{}/files/{file_id}", self.file_server_addr());
                Ok(ok(json!({"name": name, "url": url, "sha256": sha256})))
            }
            "path" => {
                static N: AtomicUsize = AtomicUsize::new(0);
                let safe: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
                    .collect();
                let n = N.fetch_add(1, Ordering::SeqCst);
                let path = std::env::temp_dir().join(format!("fakebackend-{}-{n}-{safe}", std::process::id()));
                std::fs::write(&path, &bytes)
                    .map_err(|e| failed(32001, &format!("cannot write {}: {e}", path.display())))?;
                let shown = path.to_string_lossy().into_owned();
                self.files.lock().unwrap().temp_paths.push(path);
                Ok(ok(json!({"name": name, "path": shown, "sha256": sha256})))
            }
            "data" => Ok(ok(json!({"name": name, "data": BASE64.encode(&bytes), "sha256": sha256}))),
            other => Err(failed(10003, &format!("unknown file type {other:?}"))),
        }
    }

    fn get_file_fragmented(&self, p: &Value) -> Answer {
        let stage = str_param(p, "stage")?;
        let (_, name, bytes) = self.stored(p)?;
        match stage {
            "prepare" => Ok(ok(json!({"name": name, "total_size": bytes.len(), "sha256": sha256_hex(&bytes)}))),
            "transfer" => {
                let offset = u64_param(p, "offset")?;
                let size = u64_param(p, "size")?;
                let end = offset
                    .checked_add(size)
                    .filter(|end| *end <= bytes.len() as u64)
                    .ok_or_else(|| failed(10003, "fragment goes past the end of the file"))?;
                Ok(ok(json!({ "data": BASE64.encode(&bytes[offset as usize..end as usize]) })))
            }
            other => Err(failed(10003, &format!("unknown stage {other:?}"))),
        }
    }

    /// Where the file server listens, starting it on first use.
    fn file_server_addr(&self) -> SocketAddr {
        let mut slot = self.file_server.lock().unwrap();
        if let Some(server) = slot.as_ref() {
            return server.addr;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let task = tokio::spawn(serve_files(listener, self.files.clone(), self.file_gets.clone()));
        *slot = Some(FileServer { addr, task });
        addr
    }

    fn hello(&self) -> [Value; 2] {
        let connect = json!({"id": "", "time": 1.0, "type": "meta", "detail_type": "connect", "sub_type": "",
            "version": {"impl": self.opts.implementation, "version": "1.0", "onebot_version": "12"}});
        let status = json!({"id": "", "time": 1.0, "type": "meta", "detail_type": "status_update", "sub_type": "",
            "status": default_answer(&json!({"action": "get_status"}), &self.opts, 0)["data"]});
        [connect, status]
    }
}

// ---- the file store ----

/// One completed upload the bridge made: an `upload_file` call, or an `upload_file_fragmented`
/// `finish`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The `file_id` answered.
    pub file_id: String,
    /// `"url"`, `"path"`, `"data"` or `"fragmented"`.
    pub kind: String,
    pub name: String,
    /// Bytes stored (`url`: the length of the URL's text, as nothing is fetched).
    pub len: usize,
    /// `type: url`: the URL given.
    pub url: Option<String>,
    /// `type: url`: the `headers` given, in order.
    pub headers: Vec<(String, String)>,
    /// `type: path`: the path given.
    pub path: Option<String>,
    /// `upload_file_fragmented`: how many `transfer` calls were made (0 for `upload_file`).
    pub fragments: usize,
}

struct StoredFile {
    name: String,
    bytes: Vec<u8>,
}

/// An `upload_file_fragmented` between `prepare` and `finish`.
struct PendingUpload {
    name: String,
    bytes: Vec<u8>,
    fragments: usize,
}

#[derive(Default)]
struct FileStore {
    files: HashMap<String, StoredFile>,
    /// By the temporary `file_id` that `prepare` answered.
    pending: HashMap<String, PendingUpload>,
    uploads: Vec<Upload>,
    /// Files written for `get_file` `type: path`, removed with the store.
    temp_paths: Vec<PathBuf>,
}

impl Drop for FileStore {
    fn drop(&mut self) {
        for path in &self.temp_paths {
            let _ = std::fs::remove_file(path);
        }
    }
}

struct FileServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// The largest `total_size` a fragmented upload may announce.
const MAX_FILE: u64 = 256 << 20;

/// A file action's answer: `Err` holds the failure response.
type Answer = Result<Value, Value>;

fn ok(data: Value) -> Value {
    json!({"status": "ok", "retcode": 0, "data": data, "message": ""})
}

fn failed(retcode: i64, message: &str) -> Value {
    json!({"status": "failed", "retcode": retcode, "data": null, "message": message})
}

fn no_upload(file_id: &str) -> Value {
    failed(10003, &format!("no such fragmented upload: {file_id}"))
}

fn str_param<'a>(p: &'a Value, key: &str) -> Result<&'a str, Value> {
    p[key].as_str().ok_or_else(|| failed(10003, &format!("`{key}` is missing or not a string")))
}

fn u64_param(p: &Value, key: &str) -> Result<u64, Value> {
    p[key].as_u64().ok_or_else(|| failed(10003, &format!("`{key}` is missing or not a non-negative integer")))
}

/// A bytes field: base64 text (what MessagePack bin becomes in the bridge's codec).
fn bytes_param(p: &Value, key: &str) -> Result<Vec<u8>, Value> {
    BASE64.decode(str_param(p, key)?).map_err(|e| failed(10003, &format!("`{key}` is not base64: {e}")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A `file_id` unique in this process.
fn new_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(1);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::SeqCst))
}

/// Serves `GET /files/<file_id>` with the stored bytes (404 for unknown ids).
async fn serve_files(listener: TcpListener, files: Arc<Mutex<FileStore>>, gets: Arc<AtomicUsize>) {
    let mut conns = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let (files, gets) = (files.clone(), gets.clone());
        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let reply = file_reply(&files, &gets, &req);
            async move { Ok::<_, std::convert::Infallible>(reply) }
        });
        conns.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
        while conns.try_join_next().is_some() {}
    }
}

fn file_reply<B>(files: &Mutex<FileStore>, gets: &AtomicUsize, req: &hyper::Request<B>) -> HttpReply {
    match *req.method() {
        hyper::Method::GET => {
            gets.fetch_add(1, Ordering::SeqCst);
        }
        hyper::Method::HEAD => {}
        _ => return http_reply(405, Vec::new(), ""),
    }
    let id = req.uri().path().strip_prefix("/files/").unwrap_or("");
    let bytes = files.lock().unwrap().files.get(id).map(|f| f.bytes.clone());
    match bytes {
        Some(bytes) => http_reply(200, bytes, "application/octet-stream"),
        None => http_reply(404, Vec::new(), ""),
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
        if let Ok(mut server) = self.script.file_server.lock() {
            if let Some(server) = server.take() {
                server.task.abort();
            }
        }
    }
}

/// A request the bridge makes on its own to learn the backend (`get_status`, `get_version`,
/// `get_supported_actions`), as opposed to one a bot caused.
/// A member of a scripted answer ([`FakeBackend::answer_next`]): send it this many milliseconds later.
pub const DELAY_MS: &str = "delay_ms";

pub fn is_discovery(request: &Value) -> bool {
    matches!(request["action"].as_str(), Some("get_status" | "get_version" | "get_supported_actions"))
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
        "get_version" => ok(json!({"impl": opts.implementation, "version": "1.0", "onebot_version": "12"})),
        "get_supported_actions" if !opts.supported_actions.is_empty() => ok(json!(opts.supported_actions)),
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
            every: Mutex::default(),
            files: Arc::default(),
            file_server: Mutex::new(None),
            file_gets: Arc::new(AtomicUsize::new(0)),
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
        let listener = match opts.socket_buffers {
            None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
            // Accepted connections take the listening socket's buffer sizes.
            Some(bytes) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_send_buffer_size(bytes).unwrap();
                socket.set_recv_buffer_size(bytes).unwrap();
                socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
                socket.listen(64).unwrap()
            }
        };
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
        let tx_later = tx.clone();
        self.script.every.lock().unwrap().push(tx.clone());
        *self.script.push.lock().unwrap() = Some(tx);
        self.task = tokio::spawn(ws_session(ws, self.script.clone(), (tx_later, rx), guard));
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

    /// Sends an event to every open WebSocket connection (with `concurrent`, several bridges
    /// linked to one implementation all see it); how many it reached.
    pub fn push_all(&self, event: Value) -> usize {
        let text = event.to_string();
        let mut every = self.script.every.lock().unwrap();
        every.retain(|tx| tx.send(Message::text(text.clone())).is_ok());
        every.len()
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
    /// A response with a [`DELAY_MS`] member goes out that much later (over WebSocket), without it,
    /// while the connection goes on.
    pub fn answer_next(&self, action: &str, response: Value) {
        self.script.answers.lock().unwrap().entry(action.into()).or_default().push_back(response);
    }

    /// Requests that came as MessagePack so far.
    pub fn msgpack_requests(&self) -> usize {
        self.script.msgpack_requests.load(Ordering::SeqCst)
    }

    /// Puts a file in the store (as if something had uploaded it) and gives its `file_id`.
    pub fn add_file(&self, name: &str, bytes: Vec<u8>) -> String {
        let file_id = new_id("file");
        let file = StoredFile { name: name.to_owned(), bytes };
        self.script.files.lock().unwrap().files.insert(file_id.clone(), file);
        file_id
    }

    /// A stored file's name and bytes.
    pub fn file(&self, file_id: &str) -> Option<(String, Vec<u8>)> {
        self.script.files.lock().unwrap().files.get(file_id).map(|f| (f.name.clone(), f.bytes.clone()))
    }

    /// The uploads completed so far, in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.script.files.lock().unwrap().uploads.clone()
    }

    /// GETs the file server (`get_file` `type: url`) answered so far.
    pub fn file_url_requests(&self) -> usize {
        self.script.file_gets.load(Ordering::SeqCst)
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
            if !is_discovery(&r) {
                return r;
            }
        }
    }

    /// The next request that is not the bridge's own discovery (`get_status`, `get_version`,
    /// `get_supported_actions`), if one comes within `d`.
    pub async fn next_request_within(&mut self, d: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let r = tokio::time::timeout_at(deadline, self.requests.recv()).await.ok()??;
            if !is_discovery(&r) {
                return Some(r);
            }
        }
    }

    /// Forgets every request recorded so far.
    pub fn drain_requests(&mut self) {
        while self.requests.try_recv().is_ok() {}
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
                Ok(Some(r)) if is_discovery(&r) => continue,
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
        let tx_later = tx.clone();
        script.every.lock().unwrap().push(tx.clone());
        *script.push.lock().unwrap() = Some(tx);
        if script.opts.concurrent {
            sessions.spawn(ws_session(ws, script.clone(), (tx_later, rx), guard));
            while sessions.try_join_next().is_some() {}
        } else {
            ws_session(ws, script.clone(), (tx_later, rx), guard).await;
        }
    }
}

/// One WebSocket connection, whichever side dialled: hello events, pushes, answers in the
/// request's encoding.
async fn ws_session<S>(
    ws: WebSocketStream<S>,
    script: Arc<Script>,
    (later, mut rx): (mpsc::UnboundedSender<Message>, mpsc::UnboundedReceiver<Message>),
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
        if script.opts.writes_first {
            if let Ok(m) = rx.try_recv() {
                if sink.send(m).await.is_err() {
                    break;
                }
                continue;
            }
        }
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
                let Some(mut resp) = script.answer(&req, msgpack) else { continue };
                let delay = resp.as_object_mut().and_then(|r| r.remove(DELAY_MS)).and_then(|ms| ms.as_u64());
                let frame = if msgpack {
                    Message::binary(codec::encode(&resp, true))
                } else {
                    Message::text(resp.to_string())
                };
                if let Some(ms) = delay {
                    let later = later.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let _ = later.send(frame);
                    });
                    continue;
                }
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
