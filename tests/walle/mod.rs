//! The walle-core implementation the tests run against: its business logic ([`Handler`]: canned
//! answers, a file store, a record of every action walle handed it), Walle-Q's own models, and
//! [`Walle`], a running instance on a loopback port. What walle does on the wire that the tests
//! rely on is in the test file's header.
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use walle_core::action::{Action, GetFile, TryFromAction, UploadFile, UploadFileFragmented};
use walle_core::config::{Heartbeat, ImplConfig, WebSocketServer};
use walle_core::event::{
    BaseEvent, DetailTypeLevel, Event, Group, Message as MessageType, SubTypeLevel, ToEvent, TypeLevel,
};
use walle_core::obc::ImplOBC;
use walle_core::resp::{resp_error, Resp, RespError};
use walle_core::segment::MsgSegment;
use walle_core::structs::{Bot as WalleBot, Selft, Status, Version};
use walle_core::util::{OneBotBytes, Value, ValueMap};
use walle_core::{ActionHandler, EventHandler, GenStatus, OneBot, WalleResult};

use crate::support::{self, free_port, WAIT};

pub(crate) const PLATFORM: &str = "qq";
pub(crate) const ACCOUNT: &str = "10001";

/// The implementation's business logic: a handful of canned answers, a file store, and a record
/// of every action walle-core handed to it (see [`record`]).
pub(crate) struct Handler {
    pub(crate) selft: Selft,
    /// The implementation's name: `get_version`'s `impl`; `walle-q` also answers Walle-Q's
    /// extension actions (see [`Handler::walle_q`]).
    pub(crate) implt: String,
    pub(crate) seen: mpsc::UnboundedSender<Json>,
    pub(crate) sent: AtomicUsize,
    pub(crate) status_calls: Arc<AtomicUsize>,
    pub(crate) store: Arc<Mutex<Store>>,
}

pub(crate) fn ok(data: Json) -> Resp {
    Resp::ok(serde_json::from_value::<Value>(data).unwrap(), "")
}

/// An action as JSON, its `bytes` param (`data`) shown as how it arrived and how long it is:
/// `{"wire": "text", "len": n}` when walle holds it as a string (JSON's base64 text), `{"wire":
/// "bin", "len": n}` when as `Value::Bytes` (MessagePack's bin). Serialised as is, walle's bytes
/// would become a JSON array of numbers (see the byte-encoding test), megabytes of them.
pub(crate) fn record(action: &Action) -> Json {
    let mut shown = action.clone();
    if let Some(data) = shown.params.remove("data") {
        let summary = match &data {
            Value::Bytes(b) => json!({"wire": "bin", "len": b.0.len()}),
            Value::Str(s) => json!({"wire": "text", "len": STANDARD.decode(s).map(|b| b.len()).unwrap_or(usize::MAX)}),
            other => json!({"wire": format!("{other:?}")}),
        };
        shown.params.insert("data".into(), serde_json::from_value(summary).unwrap());
    }
    serde_json::to_value(&shown).unwrap()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What walle keeps for a file_id it handed out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kept {
    Bytes(Vec<u8>),
    /// An `upload_file` of type `url` (this walle fetches nothing; it keeps the address).
    Url(String),
}

/// A fragmented upload between `prepare` and `finish`: the buffer and the (offset, len) of each
/// transfer.
pub(crate) struct Partial {
    pub(crate) name: String,
    pub(crate) data: Vec<u8>,
    pub(crate) parts: Vec<(usize, usize)>,
}

/// walle's side of the v12 file API: `upload_file` (url, data), `upload_file_fragmented`
/// (prepare / transfer / finish, the sha256 checked) and `get_file` (data; url for url uploads).
/// The params are read with walle's own action types, so the `bytes` param goes through walle's
/// `OneBotBytes` conversion, which takes a `Value::Bytes` (MessagePack bin) or a `Value::Str`
/// holding base64 (JSON) alike.
#[derive(Default)]
pub(crate) struct Store {
    pub(crate) files: HashMap<String, (String, Kept)>,
    pub(crate) partial: HashMap<String, Partial>,
    pub(crate) issued: usize,
}

pub(crate) fn id_map(file_id: String) -> Value {
    Value::Map(ValueMap::from([("file_id".to_owned(), Value::Str(file_id))]))
}

pub(crate) fn check_sha256(bytes: &[u8], given: Option<&str>) -> Result<(), RespError> {
    match given {
        Some(want) if !want.eq_ignore_ascii_case(&sha256_hex(bytes)) => {
            Err(resp_error::bad_param(format!("sha256 {want} does not match the {} bytes received", bytes.len())))
        }
        _ => Ok(()),
    }
}

impl Store {
    pub(crate) fn issue(&mut self, what: &str) -> String {
        self.issued += 1;
        format!("walle-{what}-{}", self.issued)
    }

    pub(crate) fn file(&self, file_id: &str) -> Option<(String, Kept)> {
        self.files.get(file_id).cloned()
    }

    pub(crate) fn upload_file(&mut self, up: UploadFile) -> Result<Value, RespError> {
        let kept = match (up.ty.as_str(), up.url, up.data) {
            ("url", Some(url), _) if url.starts_with("http://") || url.starts_with("https://") => Kept::Url(url),
            ("data", _, Some(OneBotBytes(bytes))) => {
                check_sha256(&bytes, up.sha256.as_deref())?;
                Kept::Bytes(bytes)
            }
            ("url" | "data", _, _) => return Err(resp_error::bad_param(format!("type {} without its param", up.ty))),
            (other, _, _) => return Err(resp_error::unsupported_param(format!("type {other}"))),
        };
        let id = self.issue("file");
        self.files.insert(id.clone(), (up.name, kept));
        Ok(id_map(id))
    }

    pub(crate) fn upload_fragmented(&mut self, stage: UploadFileFragmented) -> Result<Value, RespError> {
        match stage {
            UploadFileFragmented::Prepare { name, total_size } => {
                let size = usize::try_from(total_size).map_err(resp_error::bad_param)?;
                let id = self.issue("partial");
                self.partial.insert(id.clone(), Partial { name, data: vec![0; size], parts: Vec::new() });
                Ok(id_map(id))
            }
            UploadFileFragmented::Transfer { file_id, offset, data } => {
                let p = self.partial.get_mut(&file_id).ok_or_else(|| resp_error::bad_param("no such upload"))?;
                let at = usize::try_from(offset).map_err(resp_error::bad_param)?;
                let end = at + data.0.len();
                if end > p.data.len() {
                    return Err(resp_error::bad_param(format!("{at}+{} is past the prepared size", data.0.len())));
                }
                p.data[at..end].copy_from_slice(&data.0);
                p.parts.push((at, data.0.len()));
                Ok(Value::Null)
            }
            UploadFileFragmented::Finish { file_id, sha256 } => {
                let mut p = self.partial.remove(&file_id).ok_or_else(|| resp_error::bad_param("no such upload"))?;
                // Every byte exactly once: the parts, in order, tile the whole file.
                p.parts.sort_unstable();
                let mut covered = 0;
                for &(at, len) in &p.parts {
                    if at != covered {
                        return Err(resp_error::bad_param(format!(
                            "bytes from {covered} to {at} overlap or are missing"
                        )));
                    }
                    covered += len;
                }
                if covered != p.data.len() {
                    return Err(resp_error::bad_param(format!("{covered} of {} bytes arrived", p.data.len())));
                }
                check_sha256(&p.data, sha256.as_deref())?;
                // The final file_id is not the prepare one: the bridge must use finish's.
                let id = self.issue("file");
                self.files.insert(id.clone(), (p.name, Kept::Bytes(p.data)));
                Ok(id_map(id))
            }
        }
    }

    pub(crate) fn get_file(&self, get: GetFile) -> Result<Value, RespError> {
        let (name, kept) = self.files.get(&get.file_id).ok_or_else(|| resp_error::bad_param("no such file"))?;
        let mut m = ValueMap::from([("name".to_owned(), Value::Str(name.clone()))]);
        match (get.ty.as_str(), kept) {
            ("data", Kept::Bytes(b)) => {
                m.insert("sha256".into(), Value::Str(sha256_hex(b)));
                m.insert("data".into(), Value::Bytes(OneBotBytes(b.clone())));
            }
            ("url", Kept::Url(u)) => {
                m.insert("url".into(), Value::Str(u.clone()));
            }
            (ty, _) => return Err(resp_error::unsupported_param(format!("type {ty} for this file"))),
        }
        Ok(Value::Map(m))
    }
}

/// Runs one of walle's typed file actions on the store.
pub(crate) fn file_action<T: TryFromAction>(action: &Action, run: impl FnOnce(T) -> Result<Value, RespError>) -> Resp {
    match T::try_from_action(action.clone()) {
        Ok(typed) => match run(typed) {
            Ok(data) => Resp::ok(data, ""),
            Err(e) => e.into(),
        },
        Err(e) => resp_error::bad_param(e).into(),
    }
}

impl GenStatus for Handler {
    fn gen_status(&self) -> Status {
        Status { good: true, bots: vec![WalleBot { selft: self.selft.clone(), online: true }] }
    }

    fn contains_bot(&self, bot: &Selft) -> bool {
        *bot == self.selft
    }
}

impl ActionHandler<Event, Action, Resp> for Handler {
    type Config = ();

    async fn start<AH, EH>(&self, _ob: &Arc<OneBot<AH, EH>>, _config: ()) -> WalleResult<Vec<JoinHandle<()>>>
    where
        AH: ActionHandler<Event, Action, Resp> + Send + Sync + 'static,
        EH: EventHandler<Event, Action, Resp> + Send + Sync + 'static,
    {
        Ok(vec![])
    }

    async fn call<AH, EH>(&self, action: Action, _ob: &Arc<OneBot<AH, EH>>) -> WalleResult<Resp>
    where
        AH: ActionHandler<Event, Action, Resp> + Send + Sync + 'static,
        EH: EventHandler<Event, Action, Resp> + Send + Sync + 'static,
    {
        let _ = self.seen.send(record(&action));
        let me = json!({"platform": self.selft.platform, "user_id": self.selft.user_id});
        let store = &self.store;
        Ok(match action.action.as_str() {
            "upload_file" => file_action(&action, |up| store.lock().unwrap().upload_file(up)),
            "upload_file_fragmented" => file_action(&action, |stage| store.lock().unwrap().upload_fragmented(stage)),
            "get_file" => file_action(&action, |get| store.lock().unwrap().get_file(get)),
            "send_message" => {
                let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
                ok(json!({"message_id": format!("w-{n}"), "time": 1700000000.5}))
            }
            "get_status" => {
                self.status_calls.fetch_add(1, Ordering::SeqCst);
                ok(json!({"good": true, "bots": [{"self": me, "online": true}]}))
            }
            "get_version" => ok(json!({"impl": self.implt, "version": walle_core::VERSION, "onebot_version": "12"})),
            "get_self_info" => {
                ok(json!({"user_id": self.selft.user_id, "user_name": "walle-bot", "user_displayname": ""}))
            }
            other => match self.walle_q(&action) {
                Some(resp) => resp,
                None => resp_error::unsupported_action(other).into(),
            },
        })
    }
}

/// Walle-Q's own models (walle-q `src/model/{action,request}.rs`, `notice.rs`), with walle-core's
/// derives as Walle-Q declares them: its actions are read with walle's typed conversion (so an id
/// that is not a string, or a `request_id` that is not an integer, fails as it would in Walle-Q);
/// its events are built as walle `BaseEvent`s and turned into walle `Event`s.
pub(crate) mod wq {
    // The actions' fields are only checked (walle's conversion fails on a missing or mistyped
    // one, which the bot then sees as a failure), never read.
    #![allow(dead_code)]

    use walle_core::prelude::{PushToValueMap, ToEvent, TryFromAction, TryFromValue};

    #[derive(Debug, TryFromValue, TryFromAction)]
    pub struct GetMessage {
        pub message_id: String,
    }

    #[derive(Debug, TryFromValue, TryFromAction)]
    pub struct KickGroupMember {
        pub group_id: String,
        pub user_id: String,
    }

    #[derive(Debug, TryFromValue, TryFromAction)]
    pub struct BanGroupMember {
        pub group_id: String,
        pub user_id: String,
        pub duration: u32,
    }

    #[derive(Debug, TryFromValue, TryFromAction)]
    pub struct UnbanGroupMember {
        pub group_id: String,
        pub user_id: String,
    }

    #[derive(Debug, TryFromValue, TryFromAction)]
    pub struct SetGroupAdmin {
        pub group_id: String,
        pub user_id: String,
    }

    #[derive(Debug, TryFromValue, TryFromAction)]
    pub struct UnsetGroupAdmin {
        pub group_id: String,
        pub user_id: String,
    }

    #[derive(Debug, TryFromValue, TryFromAction)]
    pub struct SetNewFriend {
        pub user_id: String,
        pub request_id: i64,
        pub accept: bool,
        pub self_id: Option<String>,
    }

    #[derive(Debug, Clone, PushToValueMap, ToEvent)]
    #[event(detail_type)]
    pub struct NewFriend {
        pub request_id: i64,
        pub user_id: String,
        pub user_name: String,
        pub message: String,
    }

    #[derive(Debug, Clone, PushToValueMap, ToEvent)]
    #[event(detail_type)]
    pub struct GroupMemberBan {
        pub group_id: String,
        pub user_id: String,
        pub operator_id: String,
        pub duration: i64,
    }

    #[derive(Debug, Clone, PushToValueMap, ToEvent)]
    #[event(sub_type)]
    pub struct Recall {}
}

/// A walle event of Walle-Q's kind (`ty` the type-level part, `detail`, `sub` the others).
pub(crate) fn walle_q_event<T, D, S>(id: &str, time: f64, ty: T, detail: D, sub: S) -> Event
where
    T: ToEvent<TypeLevel>,
    D: ToEvent<DetailTypeLevel>,
    S: ToEvent<SubTypeLevel>,
{
    Event::from(BaseEvent {
        id: id.to_owned(),
        time,
        implt: (),
        platform: (),
        ty,
        detail_type: detail,
        sub_type: sub,
        extra: ValueMap::new(),
    })
}

/// `null` when walle reads the action as `T`, else walle's bad-param error.
pub(crate) fn typed_ok<T: TryFromAction + std::fmt::Debug>(action: &Action) -> Resp {
    match T::try_from_action(action.clone()) {
        Ok(_) => Resp::ok(Value::Null, ""),
        Err(e) => resp_error::bad_param(e).into(),
    }
}

impl Handler {
    /// Walle-Q's unprefixed extension actions, answered only when this walle calls itself
    /// `walle-q`: the group-management ones and `set_new_friend` with `null`, `get_message` with
    /// the whole message event (as Walle-Q answers it), which this walle keeps for any id.
    pub(crate) fn walle_q(&self, action: &Action) -> Option<Resp> {
        if self.implt != "walle-q" {
            return None;
        }
        Some(match action.action.as_str() {
            "kick_group_member" => typed_ok::<wq::KickGroupMember>(action),
            "ban_group_member" => typed_ok::<wq::BanGroupMember>(action),
            "unban_group_member" => typed_ok::<wq::UnbanGroupMember>(action),
            "set_group_admin" => typed_ok::<wq::SetGroupAdmin>(action),
            "unset_group_admin" => typed_ok::<wq::UnsetGroupAdmin>(action),
            "set_new_friend" => typed_ok::<wq::SetNewFriend>(action),
            "get_message" => match wq::GetMessage::try_from_action(action.clone()) {
                Ok(get) => {
                    let message = MessageType {
                        selft: self.selft.clone(),
                        message_id: get.message_id.clone(),
                        message: vec![MsgSegment {
                            ty: "text".into(),
                            data: ValueMap::from([("text".to_owned(), Value::Str("kept by walle-q".into()))]),
                        }],
                        alt_message: "kept by walle-q".into(),
                        user_id: "20002".into(),
                    };
                    let group = Group { group_id: "30003".into() };
                    let ev = walle_q_event(&format!("walle-q-{}", get.message_id), 1700000123.0, message, group, ());
                    Resp::ok(Value::from(ev), "")
                }
                Err(e) => resp_error::bad_param(e).into(),
            },
            _ => return None,
        })
    }
}

pub(crate) type WalleOb = OneBot<Handler, ImplOBC<Event>>;

/// A running walle-core implementation serving forward WebSocket on a loopback port.
pub(crate) struct Walle {
    pub(crate) ob: Arc<WalleOb>,
    pub(crate) port: u16,
    pub(crate) seen: mpsc::UnboundedReceiver<Json>,
    pub(crate) status_calls: Arc<AtomicUsize>,
    pub(crate) store: Arc<Mutex<Store>>,
}

/// walle's forward WebSocket server on `port`. `heartbeat`: its interval in seconds, `None` for none.
pub(crate) fn ws_server(token: Option<&str>, heartbeat: Option<u32>) -> impl Fn(u16) -> ImplConfig {
    let token = token.map(str::to_owned);
    move |port| ImplConfig {
        http: vec![],
        http_webhook: vec![],
        websocket: vec![WebSocketServer { host: [127, 0, 0, 1].into(), port, path: None, access_token: token.clone() }],
        websocket_rev: vec![],
        heartbeat: Heartbeat { enabled: heartbeat.is_some(), interval: heartbeat.unwrap_or(4) },
    }
}

impl Walle {
    /// Serving forward WebSocket. `heartbeat`: walle's interval in seconds, `None` for none.
    pub(crate) async fn start(token: Option<&str>, heartbeat: Option<u32>) -> Walle {
        Walle::start_as("walle-test", ws_server(token, heartbeat)).await
    }

    /// With the transports `config` gives for a free loopback `port` (walle binds it itself).
    pub(crate) async fn start_with(config: impl Fn(u16) -> ImplConfig) -> Walle {
        Walle::start_as("walle-test", config).await
    }

    /// Introducing itself as `implt`: in `meta.connect`'s `version.impl`, `get_version`, the
    /// reverse-WS subprotocol (`12.<implt>`) and the webhook's `X-Impl`.
    pub(crate) async fn start_as(implt: &str, config: impl Fn(u16) -> ImplConfig) -> Walle {
        let mut last_error = None;
        // Another process may take the port between our probe and walle's bind: try again.
        for _ in 0..5 {
            let (tx, seen) = mpsc::unbounded_channel();
            let status_calls = Arc::new(AtomicUsize::new(0));
            let store = Arc::new(Mutex::new(Store::default()));
            let handler = Handler {
                selft: Selft { platform: PLATFORM.into(), user_id: ACCOUNT.into() },
                implt: implt.to_owned(),
                seen: tx,
                sent: AtomicUsize::new(0),
                status_calls: status_calls.clone(),
                store: store.clone(),
            };
            let version =
                Version { implt: implt.to_owned(), version: walle_core::VERSION.into(), onebot_version: "12".into() };
            let ob = Arc::new(OneBot::new(handler, ImplOBC::new(implt.to_owned()), version));
            let port = free_port();
            match ob.start::<Event, Action, Resp>((), config(port), true).await {
                Ok(()) => return Walle { ob, port, seen, status_calls, store },
                Err(e) => last_error = Some(e),
            }
        }
        panic!("walle-core would not start: {last_error:?}");
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub(crate) fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Pushes a v12 event (given as wire JSON) to every connected application.
    pub(crate) async fn push(&self, event: Json) {
        self.push_event(serde_json::from_value(event).unwrap()).await;
    }

    /// Pushes a walle event to every connected application.
    pub(crate) async fn push_event(&self, event: Event) {
        self.ob.handle_event::<Event, Action, Resp>(event).await.unwrap();
    }

    /// The next action the handler got, skipping the bridge's own `get_status`/`get_version`.
    pub(crate) async fn next_action(&mut self) -> Json {
        loop {
            let a = tokio::time::timeout(WAIT, self.seen.recv()).await.expect("no action reached walle").unwrap();
            if !support::is_discovery(&a) {
                return a;
            }
        }
    }

    /// What walle keeps under a file_id it handed out: the name and the bytes or URL.
    pub(crate) fn file(&self, file_id: &str) -> Option<(String, Kept)> {
        self.store.lock().unwrap().file(file_id)
    }

    pub(crate) async fn stop(self) {
        // Closes every connection at once; only the heartbeat task may sleep out its interval.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ob.shutdown::<Event, Action, Resp>(true)).await;
    }
}
