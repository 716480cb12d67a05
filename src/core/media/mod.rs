//! Media between the two worlds: v11 `file=` references ⇄ v12 `file_id`s.
//!
//! Outgoing, a bot names a picture by URL, local path or inline base64; v12 wants a `file_id`
//! from `upload_file`. [`Translator::upload_media`] walks a v11 message before it is
//! translated and replaces every such reference with the file_id the backend gave:
//! - `http(s)://…` → `upload_file` type `url` (the backend fetches it);
//! - `file:///…` or an absolute path → read through [`LocalFiles`] (only inside the allowed
//!   directories) and sent as `data` — in one `upload_file` up to the fragment threshold, above
//!   it by `upload_file_fragmented` prepare / transfer / finish with the sha256 — or, when the
//!   backend shares the disk ([`UploadMode::Path`]), as `type: path`;
//! - `base64://…` → `data`, the same way;
//! - anything else is taken to be a file_id the backend gave (a received image's `file`).
//!
//! Uploads are remembered by content hash (or URL) per account for a while, so the same picture
//! sent twice is uploaded once; a send that fails after using a remembered file_id forgets it and
//! is retried once with fresh uploads.
//!
//! Remembered uploads and URLs live in two tiers: this bridge's memory first, then, when the
//! bridge shares a store with other replicas, a [`SharedMediaCache`] they all read and write, so a
//! picture one replica uploaded is not uploaded again by another. The shared tier is an
//! optimisation only: when it fails or is slow, it counts as a miss and media go on without it.
//!
//! Incoming, a media segment's `file_id` becomes the v11 `file`, and
//! [`Translator::media_urls`] adds a `url` the bot can fetch: the backend's own (`get_file` type
//! `url`, mode [`IncomingMode::Resolve`]) or the bridge's (`GET /files/<token>` on its HTTP or
//! forward WebSocket port, mode [`IncomingMode::Serve`]), each falling back to the other.
//! Serving streams the file from the backend with [`Translator::open_download`] /
//! [`Translator::next_chunk`].
//!
//! Nothing here touches a disk or a socket: local files go through the [`LocalFiles`] trait the
//! runtime implements, backend calls through [`V12Caller`].
//!
//! Here: the options, the traits, and the state a translator keeps ([`Media`]: remembered
//! uploads and URLs, the signed tokens of served URLs); `source` reads a reference, `upload` and
//! `urls` are the two directions, `download` fetches a backend file.
//!
//! [`Translator::upload_media`]: crate::core::Translator::upload_media
//! [`Translator::media_urls`]: crate::core::Translator::media_urls
//! [`Translator::open_download`]: crate::core::Translator::open_download
//! [`Translator::next_chunk`]: crate::core::Translator::next_chunk
//! [`V12Caller`]: crate::core::V12Caller

mod download;
mod source;
mod upload;
mod urls;

pub use download::Download;
pub use source::{parse_source, MediaSource};
pub use upload::Uploaded;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::action::ActionContext;
use super::message::value_as_text;
use crate::sync::{LockUnpoisoned, RwLockUnpoisoned};

/// A boxed future, for the object-safe [`LocalFiles`] trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// v11 segment types whose `file` names a resource (go-cqhttp's `cardimage` is sent as an image).
pub const MEDIA_TYPES: [&str; 5] = ["image", "record", "video", "file", "cardimage"];

/// Largest value written to the shared tier. A file_id or a URL is far smaller; a longer one is
/// kept in this bridge's memory only, so one odd backend answer cannot fill the shared store.
pub const SHARED_VALUE_MAX: usize = 4096;

/// Why a media reference could not become a file_id (or a file could not be fetched).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MediaError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{what} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{0}")]
    BadReference(String),
    #[error("{0}")]
    Io(String),
    #[error("the transfer took longer than {0} s")]
    Timeout(u64),
    #[error("the backend's answer to `{action}` is unusable: {reason}")]
    BadAnswer { action: String, reason: String },
}

/// How local files and inline data reach the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// The bytes travel in the upload (`type: data`, fragmented when large).
    #[default]
    Data,
    /// The backend reads the bridge's disk (`type: path`); inline base64 still goes as data.
    Path,
}

/// Where the `url` of a received media segment comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncomingMode {
    /// Ask the backend (`get_file` type `url`) when the event arrives; the bridge's own URL when
    /// the backend cannot give one.
    #[default]
    Resolve,
    /// The bridge's own URL (`GET /files/<token>`, fetched from the backend on first request);
    /// the backend's when the bridge has no address bots can fetch from.
    Serve,
}

/// Media switches and bounds.
#[derive(Debug, Clone)]
pub struct MediaOptions {
    pub upload: UploadMode,
    pub incoming: IncomingMode,
    /// Files larger than this go by `upload_file_fragmented`.
    pub fragment_threshold: u64,
    /// Bytes per `transfer` (upload) or per fetched chunk (download).
    pub fragment_size: usize,
    /// Largest file uploaded, downloaded or served.
    pub max_file_size: u64,
    /// Longest a whole upload or download may take.
    pub transfer_timeout: Duration,
    /// How long an uploaded file_id is reused for the same content.
    pub reuse_for: Duration,
    /// Remembered uploads and resolved URLs per kind (the oldest are forgotten first).
    pub cache_entries: usize,
    /// The key serve URLs are signed with.
    pub url_key: [u8; 32],
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            upload: UploadMode::Data,
            incoming: IncomingMode::Resolve,
            fragment_threshold: 1 << 20,
            fragment_size: 1 << 20,
            max_file_size: 100 << 20,
            transfer_timeout: Duration::from_secs(300),
            reuse_for: Duration::from_secs(3600),
            cache_entries: 4096,
            url_key: rand::random(),
        }
    }
}

/// Local files a bot names, as the runtime opens them (only inside the allowed directories).
pub trait LocalFiles: Send + Sync + fmt::Debug {
    /// Opens a file for reading, or says why not (outside the allowed directories, missing, …).
    fn open<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Box<dyn LocalFile>, MediaError>>;
    /// Starts a file in the bridge's cache directory (what `get_image` and `download_file` hand
    /// back as a local path). `key` names the content, so the same file lands in the same place.
    fn create<'a>(&'a self, key: &'a str, name: &'a str) -> BoxFuture<'a, Result<Box<dyn LocalSink>, MediaError>>;
}

/// A cache file being written.
pub trait LocalSink: Send {
    fn write(&mut self, chunk: Vec<u8>) -> BoxFuture<'_, Result<(), MediaError>>;
    /// Completes the file and gives its path; dropped unfinished, nothing is left behind.
    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, MediaError>>;
}

/// An open local file.
pub trait LocalFile: Send {
    /// The resolved path (symlinks followed) — what a `type: path` upload names.
    fn path(&self) -> &str;
    fn size(&self) -> u64;
    /// Reads up to `len` bytes at `offset`.
    fn read_at(&mut self, offset: u64, len: usize) -> BoxFuture<'_, Result<Vec<u8>, MediaError>>;
}

/// Which remembered thing a shared entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// Content (hash or URL) → the file_id an upload gave, reused for `reuse_for`.
    Upload,
    /// Backend file → the URL `get_file` gave (empty: it gave none).
    Url,
}

impl CacheKind {
    /// A short name for keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Upload => "up",
            CacheKind::Url => "url",
        }
    }
}

/// Why the shared tier gave no answer; [`Media`] logs it and carries on as on a miss.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct SharedCacheError(pub String);

/// The second tier of the media caches, shared by bridge replicas (on the store they share).
///
/// Keys are opaque, bounded (64 hex digits) and already name the account, so an implementation
/// only has to keep kinds apart. Every call must answer within a short bound (well under a
/// second): it sits on the path of events and sends, and its failure only costs an upload or a
/// `get_file` call.
pub trait SharedMediaCache: Send + Sync + fmt::Debug {
    /// The value under `key` and how long it has left, if any.
    fn get<'a>(
        &'a self,
        kind: CacheKind,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, Duration)>, SharedCacheError>>;
    /// Stores `value` under `key` for `ttl`, replacing what was there.
    fn set<'a>(
        &'a self,
        kind: CacheKind,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), SharedCacheError>>;
    /// Forgets `key`.
    fn remove<'a>(&'a self, kind: CacheKind, key: &'a str) -> BoxFuture<'a, Result<(), SharedCacheError>>;
}

/// The shared tier's key for a local key: its sha256, so that a long URL or an odd byte in a
/// file_id never becomes a long or odd key in a store others read.
fn shared_key(local: &str) -> String {
    hex(&Sha256::digest(local.as_bytes()))
}

/// Lowercase hex, as v12 spells a sha256.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 32-byte key from its 64 hex digits (surrounding whitespace ignored), as [`hex`] writes it.
pub fn key_from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let mut key = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// Bytes of keys and values one [`Recent`] keeps at most. Thousands of file_ids and URLs of a few
/// hundred bytes fit; but peers choose them (a bot's URL, a backend's file_id and URL), and each
/// may be as long as a frame.
const RECENT_BYTES: usize = 4 << 20;
/// The largest entry a [`Recent`] keeps; a longer one is asked for anew each time.
const RECENT_ENTRY_BYTES: usize = 16 << 10;

/// The heap bytes a remembered value holds.
trait Weigh {
    fn heap_bytes(&self) -> usize;
}

impl Weigh for String {
    fn heap_bytes(&self) -> usize {
        self.len()
    }
}

impl Weigh for () {
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// A bounded map that forgets the oldest entries first and entries older than its age limit;
/// bounded in entries and in bytes ([`RECENT_BYTES`]).
#[derive(Debug)]
struct Recent<V> {
    map: HashMap<String, (V, Instant)>,
    order: VecDeque<String>,
    capacity: usize,
    /// Bytes of the entries kept: each key twice (the map's and the order's), and its value.
    bytes: usize,
}

/// What an entry costs in [`Recent::bytes`].
fn weight<V: Weigh>(key: &str, value: &V) -> usize {
    2 * key.len() + value.heap_bytes()
}

impl<V: Clone + Weigh> Recent<V> {
    fn new(capacity: usize) -> Self {
        Recent { map: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), bytes: 0 }
    }

    fn get(&self, key: &str, max_age: Duration) -> Option<V> {
        self.map.get(key).filter(|(_, at)| at.elapsed() < max_age).map(|(v, _)| v.clone())
    }

    fn insert(&mut self, key: String, value: V) {
        self.insert_at(key, value, Instant::now());
    }

    /// Inserts an entry as stored at `at` (one learnt from the shared tier ages from when it was
    /// first stored, not from when this bridge heard of it).
    fn insert_at(&mut self, key: String, value: V, at: Instant) {
        let added = weight(&key, &value);
        if added > RECENT_ENTRY_BYTES {
            self.remove(&key);
            return;
        }
        match self.map.insert(key.clone(), (value, at)) {
            Some((old, _)) => self.bytes -= weight(&key, &old),
            None => self.order.push_back(key),
        }
        self.bytes += added;
        while self.map.len() > self.capacity || self.bytes > RECENT_BYTES {
            match self.order.pop_front() {
                Some(old) => {
                    if let Some((value, _)) = self.map.remove(&old) {
                        self.bytes -= weight(&old, &value);
                    }
                }
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((value, _)) = self.map.remove(key) {
            self.bytes -= weight(key, &value);
            self.order.retain(|k| k != key);
        }
    }
}

/// The media state a translator keeps: options, the local-file reader, remembered uploads and
/// URLs, and the bridge's own base URL once its servers are bound.
#[derive(Debug)]
pub struct Media {
    pub options: MediaOptions,
    files: Option<Box<dyn LocalFiles>>,
    uploads: Mutex<Recent<String>>,
    /// Backend URLs per (account, file_id); an empty one means the backend gave none.
    urls: Mutex<Recent<String>>,
    /// Accounts whose backend said it cannot give URLs at all.
    no_urls: Mutex<Recent<()>>,
    /// `get_file` calls in progress, per (account, file_id): a burst of events sharing one new
    /// picture asks the backend once, and the others wait for that answer. An entry lives while
    /// its call does, so there are at most as many as translations in flight.
    url_flights: Mutex<HashMap<String, Arc<UrlFlight>>>,
    serve_base: RwLock<Option<String>>,
    /// The tier other replicas share, behind the local one (none: this bridge's memory only).
    shared: Option<Arc<dyn SharedMediaCache>>,
}

/// One `get_file` call others may wait for: the first to take the lock calls and leaves the
/// outcome (a URL or none) for those after it.
type UrlFlight = futures_util::lock::Mutex<Option<Option<String>>>;

impl Media {
    pub fn new(options: MediaOptions, files: Option<Box<dyn LocalFiles>>) -> Media {
        let n = options.cache_entries;
        Media {
            options,
            files,
            uploads: Mutex::new(Recent::new(n)),
            urls: Mutex::new(Recent::new(n)),
            no_urls: Mutex::new(Recent::new(256)),
            url_flights: Mutex::new(HashMap::new()),
            serve_base: RwLock::new(None),
            shared: None,
        }
    }

    /// Lets bots name local files (read through `files`).
    pub(crate) fn set_local_files(&mut self, files: Box<dyn LocalFiles>) {
        self.files = Some(files);
    }

    /// Puts `cache` behind the local caches: asked on a local miss, told of every new entry.
    pub fn set_shared_cache(&mut self, cache: Arc<dyn SharedMediaCache>) {
        self.shared = Some(cache);
    }

    /// Sets the base (`http://host:port`) bots reach the bridge's `/files/` at.
    pub fn set_serve_base(&self, base: Option<String>) {
        *self.serve_base.write_unpoisoned() = base.map(|b| b.trim_end_matches('/').to_owned());
    }

    pub fn files(&self) -> Option<&dyn LocalFiles> {
        self.files.as_deref()
    }

    pub fn serve_base(&self) -> Option<String> {
        self.serve_base.read_unpoisoned().clone()
    }

    fn mac(&self, payload: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.options.url_key).expect("any key length");
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// The unguessable token naming (account, file_id) in a serve URL.
    pub fn token(&self, v11_self: i64, file_id: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!("{v11_self}:{file_id}"));
        let mac = self.mac(&payload);
        format!("{payload}.{mac}")
    }

    /// Reads a token back: the account's v11 id and the file_id, if the signature holds.
    pub fn verify_token(&self, token: &str) -> Option<(i64, String)> {
        let (payload, mac) = token.split_once('.')?;
        let want = self.mac(payload);
        // Constant-time comparison of the signature.
        if want.len() != mac.len() || want.bytes().zip(mac.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let (who, file_id) = text.split_once(':')?;
        Some((who.parse().ok()?, file_id.to_owned()))
    }

    /// The bridge's URL for a backend file, if it has an address bots can fetch from.
    pub fn serve_url(&self, v11_self: i64, file_id: &str) -> Option<String> {
        Some(format!("{}/files/{}", self.serve_base()?, self.token(v11_self, file_id)))
    }

    fn lock_uploads(&self) -> std::sync::MutexGuard<'_, Recent<String>> {
        self.uploads.lock_unpoisoned()
    }

    fn lock_urls(&self) -> std::sync::MutexGuard<'_, Recent<String>> {
        self.urls.lock_unpoisoned()
    }

    fn lock_flights(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<UrlFlight>>> {
        self.url_flights.lock_unpoisoned()
    }

    fn local(&self, kind: CacheKind) -> std::sync::MutexGuard<'_, Recent<String>> {
        match kind {
            CacheKind::Upload => self.lock_uploads(),
            CacheKind::Url => self.lock_urls(),
        }
    }

    /// What this bridge remembers under `key`, if it is younger than `reuse_for`.
    fn remembered_here(&self, kind: CacheKind, key: &str) -> Option<String> {
        self.local(kind).get(key, self.options.reuse_for)
    }

    /// What the shared tier remembers under `key`; a hit is kept here too, aged as it is there.
    /// A failing or slow shared tier is a miss.
    async fn remembered_shared(&self, kind: CacheKind, key: &str) -> Option<String> {
        let shared = self.shared.as_ref()?;
        match shared.get(kind, &shared_key(key)).await {
            Ok(Some((value, left))) if value.len() <= SHARED_VALUE_MAX => {
                let age = self.options.reuse_for.saturating_sub(left);
                let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                self.local(kind).insert_at(key.to_owned(), value.clone(), at);
                Some(value)
            }
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(%error, kind = kind.as_str(), "shared media cache unavailable; a miss");
                None
            }
        }
    }

    /// What either tier remembers under `key`, this bridge's memory first.
    async fn remembered(&self, kind: CacheKind, key: &str) -> Option<String> {
        match self.remembered_here(kind, key) {
            Some(value) => Some(value),
            None => self.remembered_shared(kind, key).await,
        }
    }

    /// Remembers `value` in both tiers, for `reuse_for` (a value too long for the shared tier
    /// stays here only).
    async fn remember(&self, kind: CacheKind, key: String, value: String) {
        self.local(kind).insert(key.clone(), value.clone());
        let Some(shared) = self.shared.as_ref().filter(|_| value.len() <= SHARED_VALUE_MAX) else { return };
        if let Err(error) = shared.set(kind, &shared_key(&key), &value, self.options.reuse_for).await {
            tracing::debug!(%error, kind = kind.as_str(), "shared media cache unavailable; kept here only");
        }
    }

    /// Forgets remembered uploads (their file_ids turned out not to work), in both tiers.
    pub async fn forget_uploads(&self, keys: &[String]) {
        {
            let mut cache = self.lock_uploads();
            for k in keys {
                cache.remove(k);
            }
        }
        let Some(shared) = self.shared.as_ref() else { return };
        for k in keys {
            if let Err(error) = shared.remove(CacheKind::Upload, &shared_key(k)).await {
                tracing::debug!(%error, "shared media cache unavailable; a stale upload stays there until it expires");
            }
        }
    }
}

/// The account part of a cache key: platform and user id, since a file_id is only good on the
/// backend account that gave it (and the shared tier may hold several platforms' accounts).
fn account_key(ctx: ActionContext<'_>) -> String {
    let me = &ctx.account.self_id;
    format!("{}\n{}", me.platform, me.user_id)
}

/// A backend file's key in the URL cache: [`account_key`], a line break, the file id. Built by
/// hand, as it is for every picture of every event (two `format!`s took about 1 500
/// instructions).
fn file_key(ctx: ActionContext<'_>, file_id: &str) -> String {
    let me = &ctx.account.self_id;
    let mut key = String::with_capacity(me.platform.len() + me.user_id.len() + file_id.len() + 2);
    for part in [me.platform.as_str(), "\n", me.user_id.as_str(), "\n", file_id] {
        key.push_str(part);
    }
    key
}

/// A short label for a reference in messages (base64 data is not repeated back).
fn reference_label(reference: &str) -> String {
    if reference.starts_with("base64://") {
        "the base64 data".into()
    } else {
        value_as_text(&Value::String(reference.chars().take(200).collect())).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::engine::general_purpose::STANDARD;
    use futures::executor::block_on;
    use serde_json::json;

    use super::*;
    use crate::core::action::ActionError;
    use crate::core::message::Segment;
    use crate::core::testing::account;
    use crate::core::{v12, BackendInfo, CallError, MappingSet, MemoryIdStore, Options, Translator, V12Caller};

    /// A v12 file store answering the file actions, recording every request.
    #[derive(Default)]
    struct Files {
        files: Mutex<HashMap<String, Vec<u8>>>,
        requests: Mutex<Vec<v12::Request>>,
        no_fragments: bool,
        /// `send_message` fails this many times.
        failing_sends: Mutex<usize>,
    }

    impl Files {
        fn actions(&self) -> Vec<String> {
            let reqs = self.requests.lock().unwrap();
            reqs.iter()
                .map(|r| match r.params.get("stage").and_then(Value::as_str) {
                    Some(stage) => format!("{}:{stage}", r.action),
                    None => r.action.clone(),
                })
                .collect()
        }
    }

    impl V12Caller for Files {
        async fn call(&self, req: v12::Request) -> Result<v12::Response, CallError> {
            let n = {
                let mut reqs = self.requests.lock().unwrap();
                reqs.push(req.clone());
                reqs.len()
            };
            let p = &req.params;
            let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let mut files = self.files.lock().unwrap();
            let new_id = |_: &HashMap<String, Vec<u8>>| format!("f{n}");
            let ok = |data: Value| Ok(v12::Response::ok(data));
            let fragmented = req.action.ends_with("_fragmented");
            if fragmented && self.no_fragments {
                return Ok(v12::Response::failed(10002, "unsupported"));
            }
            match (req.action.as_str(), s("stage").as_str()) {
                ("upload_file", _) => {
                    let bytes = match s("type").as_str() {
                        "data" => STANDARD.decode(s("data")).unwrap(),
                        t => format!("{t}:{}", s(t)).into_bytes(),
                    };
                    let id = new_id(&files);
                    files.insert(id.clone(), bytes);
                    ok(json!({ "file_id": id }))
                }
                ("upload_file_fragmented", "prepare") => {
                    let id = format!("tmp{}", files.len());
                    files.insert(id.clone(), vec![0; p["total_size"].as_u64().unwrap() as usize]);
                    ok(json!({ "file_id": id }))
                }
                ("upload_file_fragmented", "transfer") => {
                    let data = STANDARD.decode(s("data")).unwrap();
                    let at = p["offset"].as_u64().unwrap() as usize;
                    files.get_mut(&s("file_id")).unwrap()[at..at + data.len()].copy_from_slice(&data);
                    ok(Value::Null)
                }
                ("upload_file_fragmented", "finish") => {
                    let bytes = files.remove(&s("file_id")).unwrap();
                    if hex(&Sha256::digest(&bytes)) != s("sha256") {
                        return Ok(v12::Response::failed(10003, "sha256 mismatch"));
                    }
                    let id = new_id(&files);
                    files.insert(id.clone(), bytes);
                    ok(json!({ "file_id": id }))
                }
                ("get_file", _) => match (files.get(&s("file_id")), s("type").as_str()) {
                    (Some(b), "data") => ok(json!({ "name": "n.png", "data": STANDARD.encode(b) })),
                    (Some(_), _) => Ok(v12::Response::failed(10004, "no urls here")),
                    (None, _) => Ok(v12::Response::failed(10003, "no such file")),
                },
                ("get_file_fragmented", "prepare") => match files.get(&s("file_id")) {
                    Some(b) => ok(json!({ "name": "n.png", "total_size": b.len(), "sha256": hex(&Sha256::digest(b)) })),
                    None => Ok(v12::Response::failed(10003, "no such file")),
                },
                ("get_file_fragmented", "transfer") => {
                    let b = &files[&s("file_id")];
                    let at = p["offset"].as_u64().unwrap() as usize;
                    let end = (at + p["size"].as_u64().unwrap() as usize).min(b.len());
                    ok(json!({ "data": STANDARD.encode(&b[at..end]) }))
                }
                ("send_message", _) => {
                    let mut failing = self.failing_sends.lock().unwrap();
                    if *failing > 0 {
                        *failing -= 1;
                        return Ok(v12::Response::failed(35001, "file expired"));
                    }
                    ok(json!({ "message_id": "m1" }))
                }
                _ => Ok(v12::Response::failed(10002, "unsupported")),
            }
        }
    }

    /// Local files from memory (the runtime's own reader is tested in src/media.rs).
    #[derive(Debug)]
    struct MemFiles(HashMap<String, Vec<u8>>);

    struct MemFile(String, Vec<u8>);

    impl LocalFile for MemFile {
        fn path(&self) -> &str {
            &self.0
        }
        fn size(&self) -> u64 {
            self.1.len() as u64
        }
        fn read_at(&mut self, offset: u64, len: usize) -> BoxFuture<'_, Result<Vec<u8>, MediaError>> {
            let start = (offset as usize).min(self.1.len());
            let chunk = self.1[start..(start + len).min(self.1.len())].to_vec();
            Box::pin(async move { Ok(chunk) })
        }
    }

    impl LocalFiles for MemFiles {
        fn open<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Box<dyn LocalFile>, MediaError>> {
            Box::pin(async move {
                match self.0.get(path) {
                    Some(b) => Ok(Box::new(MemFile(path.to_owned(), b.clone())) as Box<dyn LocalFile>),
                    None => Err(MediaError::Refused(format!("{path} is outside"))),
                }
            })
        }
        fn create<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Box<dyn LocalSink>, MediaError>> {
            Box::pin(async { Err(MediaError::Io("read-only".into())) })
        }
    }

    fn translator_with(media: MediaOptions) -> Translator<MemoryIdStore> {
        let options = Options { media, ..Default::default() };
        let files = MemFiles([("/pics/a.png".to_owned(), vec![7u8; 3000])].into_iter().collect());
        Translator::new(Arc::new(MappingSet::embedded().unwrap()), MemoryIdStore::default(), options)
            .with_local_files(Box::new(files))
    }

    /// The URL cache's keys stay as they were: a Redis cache is shared with bridges of other
    /// versions.
    #[test]
    fn a_file_key_is_the_account_key_and_the_file_id() {
        let t =
            Translator::new(Arc::new(MappingSet::embedded().unwrap()), MemoryIdStore::default(), Options::default());
        let me = account(&t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, Default::default());
        assert_eq!(file_key(ctx, "f/1"), format!("{}\n{}", account_key(ctx), "f/1"));
        assert_eq!(file_key(ctx, ""), "qq\n10001\n");
    }

    fn small_fragments() -> MediaOptions {
        MediaOptions { fragment_threshold: 1000, fragment_size: 400, ..Default::default() }
    }

    fn send(t: &Translator<MemoryIdStore>, caller: &Files, message: Value) -> crate::core::v11::Response {
        let me = account(t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, Default::default());
        let params = json!({ "message_type": "group", "group_id": 5, "message": message });
        let req = crate::core::v11::Request {
            action: "send_msg".into(),
            params: params.as_object().unwrap().clone(),
            echo: None,
        };
        block_on(t.handle_action(ctx, caller, req))
    }

    fn sent_file_ids(caller: &Files) -> Vec<String> {
        let reqs = caller.requests.lock().unwrap();
        let sent = reqs.iter().rev().find(|r| r.action == "send_message").unwrap();
        sent.params["message"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["data"]["file_id"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn every_outgoing_form_is_uploaded_and_sent_by_file_id() {
        let t = translator_with(small_fragments());
        let caller = Files::default();
        let small = STANDARD.encode(b"tiny picture");
        let big: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let message = format!(
            "[CQ:image,file=base64://{small}][CQ:image,file=https://example.com/a.png,cache=0][CQ:record,file=base64://{}][CQ:video,file=file:///pics/a.png][CQ:image,file=f-existing]",
            STANDARD.encode(&big)
        );
        let answer = send(&t, &caller, json!(message));
        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(
            caller.actions(),
            [
                "upload_file",
                "upload_file",
                "upload_file_fragmented:prepare",
                "upload_file_fragmented:transfer",
                "upload_file_fragmented:transfer",
                "upload_file_fragmented:transfer",
                "upload_file_fragmented:transfer",
                "upload_file_fragmented:transfer",
                "upload_file_fragmented:transfer",
                "upload_file_fragmented:transfer",
                "upload_file_fragmented:finish",
                "upload_file_fragmented:prepare",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain((0..8).map(|_| "upload_file_fragmented:transfer".to_string()))
            .chain(["upload_file_fragmented:finish".to_string(), "send_message".to_string()])
            .collect::<Vec<_>>()
        );
        let reqs = caller.requests.lock().unwrap().clone();
        assert_eq!(reqs[0].params["type"], "data");
        assert_eq!(reqs[0].params["sha256"], json!(hex(&Sha256::digest(b"tiny picture"))));
        assert_eq!(
            (reqs[1].params["type"].as_str(), reqs[1].params["url"].as_str()),
            (Some("url"), Some("https://example.com/a.png"))
        );
        assert_eq!(reqs[1].params["name"], "a.png");
        assert_eq!(reqs[11].params["name"], "a.png", "a local file keeps its name");
        let ids = sent_file_ids(&caller);
        assert_eq!(ids.len(), 5);
        let files = caller.files.lock().unwrap();
        assert_eq!(files[&ids[0]], b"tiny picture");
        assert_eq!(files[&ids[2]], big, "fragments reassemble byte for byte");
        assert_eq!(files[&ids[3]], vec![7u8; 3000]);
        assert_eq!(ids[4], "f-existing", "a file_id passes as it is");
        let sent = reqs.last().unwrap().params["message"].clone();
        assert!(sent.to_string().find("cache").is_none(), "download hints are consumed: {sent}");
    }

    #[test]
    fn the_same_content_is_uploaded_once_and_a_stale_file_id_is_replaced() {
        let t = translator_with(MediaOptions::default());
        let caller = Files::default();
        let img = json!([{"type": "image", "data": {"file": format!("base64://{}", STANDARD.encode(b"same"))}}]);
        assert!(send(&t, &caller, img.clone()).is_ok());
        assert!(send(&t, &caller, img.clone()).is_ok());
        assert_eq!(caller.actions(), ["upload_file", "send_message", "send_message"]);
        // The backend forgot the file: the send fails, the bridge uploads again and retries once.
        *caller.failing_sends.lock().unwrap() = 1;
        assert!(send(&t, &caller, img.clone()).is_ok());
        assert_eq!(caller.actions()[3..], ["send_message", "upload_file", "send_message"]);
        // A failure that persists is the bot's answer.
        *caller.failing_sends.lock().unwrap() = 5;
        let answer = send(&t, &caller, img);
        assert_eq!(answer.msg.as_deref(), Some("BACKEND_LOGIC_ERROR"), "{answer:?}");
    }

    #[test]
    fn failures_say_why_and_nothing_is_sent_without_the_picture() {
        let t = translator_with(MediaOptions { max_file_size: 2000, ..small_fragments() });
        for (message, msg) in [
            ("[CQ:image,file=file:///etc/passwd]", "FILE_REFUSED"),
            ("[CQ:image,file=/pics/a.png]", "FILE_TOO_LARGE"),
            ("[CQ:image,file=base64://%%%]", "BAD_PARAM"),
            ("[CQ:image,file=base16384://x]", "BAD_PARAM"),
        ] {
            let caller = Files::default();
            let answer = send(&t, &caller, json!(message));
            assert_eq!(answer.msg.as_deref(), Some(msg), "{message}: {answer:?}");
            assert!(!answer.wording.unwrap_or_default().is_empty());
            assert!(!caller.actions().contains(&"send_message".to_string()), "{message}");
        }
        // The backend refuses the upload: the send does not happen either.
        let t = translator_with(MediaOptions::default());
        let caller = Files { no_fragments: true, ..Default::default() };
        let plain =
            Translator::new(Arc::new(MappingSet::embedded().unwrap()), MemoryIdStore::default(), Options::default());
        let answer = send(&plain, &caller, json!("[CQ:image,file=file:///pics/a.png]"));
        assert_eq!(answer.msg.as_deref(), Some("FILE_REFUSED"), "no allowed directories at all");
        *caller.failing_sends.lock().unwrap() = 0;
        let answer = send(&t, &caller, json!("[CQ:image,file=file:///pics/a.png]"));
        assert!(answer.is_ok(), "a small file goes in one piece when fragments are unsupported: {answer:?}");
    }

    #[test]
    fn a_backend_sharing_the_disk_gets_the_path() {
        let t = translator_with(MediaOptions { upload: UploadMode::Path, ..Default::default() });
        let caller = Files::default();
        assert!(send(&t, &caller, json!("[CQ:image,file=/pics/a.png]")).is_ok());
        let reqs = caller.requests.lock().unwrap();
        assert_eq!(
            (reqs[0].params["type"].as_str(), reqs[0].params["path"].as_str()),
            (Some("path"), Some("/pics/a.png"))
        );
        assert_eq!(reqs[0].params["sha256"], json!(hex(&Sha256::digest(vec![7u8; 3000]))));
    }

    #[test]
    fn a_backend_without_urls_is_asked_once_and_the_bridge_serves_instead() {
        let t = translator_with(MediaOptions::default());
        t.media.set_serve_base(Some("http://127.0.0.1:5700".into()));
        let caller = Files::default();
        for id in ["a", "b", "c"] {
            caller.files.lock().unwrap().insert(id.into(), b"x".to_vec());
        }
        let me = account(&t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, Default::default());
        for id in ["a", "b", "c"] {
            let mut segs = vec![Segment::new("image").with("file", id)];
            block_on(t.media_urls(ctx, &caller, &mut segs));
            let url = segs[0].str_of("url").unwrap();
            assert!(url.starts_with("http://127.0.0.1:5700/files/"), "{url}");
        }
        assert_eq!(caller.actions(), ["get_file"], "asked once, then not for a while");
    }

    /// Answers `get_file` with a URL, but only after being polled a few times, so that other
    /// translations reach the same file while the first call is still out.
    #[derive(Default)]
    struct SlowUrls {
        calls: Mutex<Vec<String>>,
    }

    struct Yield(u32);

    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            if self.0 == 0 {
                return std::task::Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }

    impl V12Caller for SlowUrls {
        async fn call(&self, req: v12::Request) -> Result<v12::Response, CallError> {
            let file_id = req.params["file_id"].as_str().unwrap_or_default().to_owned();
            self.calls.lock().unwrap().push(file_id.clone());
            Yield(20).await;
            Ok(v12::Response::ok(json!({ "url": format!("https://cdn.example/{file_id}") })))
        }
    }

    #[test]
    fn a_burst_sharing_one_new_picture_asks_the_backend_once() {
        let t = translator_with(MediaOptions { incoming: IncomingMode::Resolve, ..Default::default() });
        let caller = SlowUrls::default();
        let me = account(&t);
        let backend = BackendInfo::default();
        let ctx = t.context(&me, &backend, Default::default());
        let ids = ["same"; 16].into_iter().chain(["other-1", "other-2"]);
        let mut messages: Vec<Vec<Segment>> = ids.map(|id| vec![Segment::new("image").with("file", id)]).collect();
        block_on(futures::future::join_all(messages.iter_mut().map(|segs| t.media_urls(ctx, &caller, segs))));
        for segs in &messages {
            let file = segs[0].str_of("file").unwrap();
            assert_eq!(segs[0].str_of("url"), Some(format!("https://cdn.example/{file}")));
        }
        let mut calls = caller.calls.lock().unwrap().clone();
        calls.sort();
        assert_eq!(calls, ["other-1", "other-2", "same"], "one get_file per file");
        assert!(t.media.lock_flights().is_empty(), "finished calls leave nothing behind");
    }

    /// A shared tier in memory, as replicas on one store see it. `down` makes every call fail,
    /// as a store that is away does.
    #[derive(Debug, Default)]
    struct SharedMemory {
        entries: Mutex<HashMap<String, (String, Duration)>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl SharedMemory {
        fn check(&self) -> Result<(), SharedCacheError> {
            match self.down.load(std::sync::atomic::Ordering::Relaxed) {
                true => Err(SharedCacheError("the store is down".into())),
                false => Ok(()),
            }
        }

        fn values(&self) -> Vec<String> {
            let mut v: Vec<String> = self.entries.lock().unwrap().values().map(|(v, _)| v.clone()).collect();
            v.sort();
            v
        }
    }

    impl SharedMediaCache for SharedMemory {
        fn get<'a>(
            &'a self,
            kind: CacheKind,
            key: &'a str,
        ) -> BoxFuture<'a, Result<Option<(String, Duration)>, SharedCacheError>> {
            let got = self.check().map(|_| self.entries.lock().unwrap().get(&format!("{kind:?}:{key}")).cloned());
            Box::pin(async move { got })
        }
        fn set<'a>(
            &'a self,
            kind: CacheKind,
            key: &'a str,
            value: &'a str,
            ttl: Duration,
        ) -> BoxFuture<'a, Result<(), SharedCacheError>> {
            let done = self.check().map(|_| {
                self.entries.lock().unwrap().insert(format!("{kind:?}:{key}"), (value.to_owned(), ttl));
            });
            Box::pin(async move { done })
        }
        fn remove<'a>(&'a self, kind: CacheKind, key: &'a str) -> BoxFuture<'a, Result<(), SharedCacheError>> {
            let done = self.check().map(|_| {
                self.entries.lock().unwrap().remove(&format!("{kind:?}:{key}"));
            });
            Box::pin(async move { done })
        }
    }

    fn replica(shared: &Arc<SharedMemory>) -> Translator<MemoryIdStore> {
        translator_with(MediaOptions::default()).with_shared_media_cache(shared.clone())
    }

    #[test]
    fn replicas_sharing_a_cache_upload_a_picture_once_and_replace_a_stale_one_for_all() {
        let shared = Arc::new(SharedMemory::default());
        let (a, b) = (replica(&shared), replica(&shared));
        let caller = Files::default();
        let img = json!([{"type": "image", "data": {"file": format!("base64://{}", STANDARD.encode(b"shared"))}}]);
        let url = json!([{"type": "image", "data": {"file": "https://example.com/s.png"}}]);
        for message in [&img, &url] {
            assert!(send(&a, &caller, message.clone()).is_ok());
            assert!(send(&b, &caller, message.clone()).is_ok());
        }
        assert_eq!(
            caller.actions(),
            ["upload_file", "send_message", "send_message", "upload_file", "send_message", "send_message"],
            "each picture uploaded by one replica only"
        );
        assert_eq!(shared.values(), ["f1", "f4"]);

        // The backend forgot the file: B uploads afresh, and a third replica reuses the new one.
        *caller.failing_sends.lock().unwrap() = 1;
        assert!(send(&b, &caller, img.clone()).is_ok());
        assert_eq!(caller.actions()[6..], ["send_message", "upload_file", "send_message"]);
        let fresh = sent_file_ids(&caller);
        assert!(send(&replica(&shared), &caller, img).is_ok());
        assert_eq!(caller.actions().len(), 10, "no upload: {:?}", caller.actions());
        assert_eq!(sent_file_ids(&caller), fresh);
    }

    #[test]
    fn replicas_sharing_a_cache_ask_the_backend_for_a_url_once() {
        let shared = Arc::new(SharedMemory::default());
        let (a, b) = (replica(&shared), replica(&shared));
        let caller = SlowUrls::default();
        let long = "x".repeat(SHARED_VALUE_MAX);
        for id in ["pic", &long] {
            for t in [&a, &b] {
                let me = account(t);
                let backend = BackendInfo::default();
                let mut segs = vec![Segment::new("image").with("file", id)];
                block_on(t.media_urls(t.context(&me, &backend, Default::default()), &caller, &mut segs));
                assert_eq!(segs[0].str_of("url"), Some(format!("https://cdn.example/{id}")));
            }
        }
        let calls = caller.calls.lock().unwrap().clone();
        assert_eq!(calls, ["pic", &long, &long], "a URL too long to share is asked for by each replica");
        assert_eq!(shared.values(), ["https://cdn.example/pic"]);
    }

    #[test]
    fn a_failing_shared_cache_is_a_miss_and_media_go_on() {
        let shared = Arc::new(SharedMemory::default());
        shared.down.store(true, std::sync::atomic::Ordering::Relaxed);
        let (a, b) = (replica(&shared), replica(&shared));
        let caller = Files::default();
        let img = json!([{"type": "image", "data": {"file": format!("base64://{}", STANDARD.encode(b"alone"))}}]);
        for t in [&a, &a, &b] {
            assert!(send(t, &caller, img.clone()).is_ok());
        }
        assert_eq!(
            caller.actions(),
            ["upload_file", "send_message", "send_message", "upload_file", "send_message"],
            "each replica still remembers its own uploads"
        );
    }

    #[test]
    fn downloads_come_in_fragments_or_whole() {
        for no_fragments in [false, true] {
            let t = translator_with(small_fragments());
            let caller = Files { no_fragments, ..Default::default() };
            let bytes: Vec<u8> = (0..1234u32).map(|i| (i * 7 % 256) as u8).collect();
            caller.files.lock().unwrap().insert("x".into(), bytes.clone());
            let me = account(&t);
            let backend = BackendInfo::default();
            let ctx = t.context(&me, &backend, Default::default());
            let mut d = block_on(t.open_download(ctx, &caller, "x")).unwrap();
            assert_eq!(d.size, Some(1234));
            let mut got = Vec::new();
            let mut chunks = 0;
            while let Some(c) = block_on(t.next_chunk(ctx, &caller, &mut d)).unwrap() {
                got.extend(c);
                chunks += 1;
            }
            assert_eq!(got, bytes);
            assert_eq!(chunks, if no_fragments { 1 } else { 4 });
            let too_big = translator_with(MediaOptions { max_file_size: 1000, ..small_fragments() });
            let e = block_on(too_big.open_download(ctx, &caller, "x")).unwrap_err();
            assert!(matches!(e, ActionError::Media(MediaError::TooLarge { .. })), "{e:?}");
        }
    }

    #[test]
    fn references_are_read_in_every_v11_form() {
        let limit = 1 << 20;
        assert_eq!(parse_source("https://a/b.png", limit), Ok(MediaSource::Url("https://a/b.png".into())));
        assert_eq!(parse_source("HTTP://a", limit), Ok(MediaSource::Url("HTTP://a".into())));
        assert_eq!(parse_source("file:///tmp/a%20b.png", limit), Ok(MediaSource::Local("/tmp/a b.png".into())));
        assert_eq!(parse_source("file://localhost/x", limit), Ok(MediaSource::Local("/x".into())));
        assert_eq!(parse_source("file:///C:/pics/a.png", limit), Ok(MediaSource::Local("C:/pics/a.png".into())));
        assert_eq!(parse_source("/abs/a.png", limit), Ok(MediaSource::Local("/abs/a.png".into())));
        assert_eq!(parse_source("base64://aGk=", limit), Ok(MediaSource::Data(b"hi".to_vec())));
        assert_eq!(parse_source("base64://aG\nk=", limit), Ok(MediaSource::Data(b"hi".to_vec())));
        assert_eq!(parse_source("base64://aGk", limit), Ok(MediaSource::Data(b"hi".to_vec())));
        assert_eq!(parse_source("abc.image", limit), Ok(MediaSource::FileId("abc.image".into())));
        assert!(matches!(parse_source("base64://!!!", limit), Err(MediaError::BadReference(_))));
        assert!(matches!(parse_source("base16384://x", limit), Err(MediaError::BadReference(_))));
        assert!(matches!(parse_source("file://relative", limit), Err(MediaError::BadReference(_))));
        let big = format!("base64://{}", STANDARD.encode(vec![0u8; 2000]));
        assert!(matches!(parse_source(&big, 1000), Err(MediaError::TooLarge { .. })));
    }

    #[test]
    fn serve_tokens_name_the_account_and_file_and_cannot_be_forged() {
        let media = Media::new(MediaOptions::default(), None);
        let token = media.token(10001, "img:1/x");
        assert_eq!(media.verify_token(&token), Some((10001, "img:1/x".into())));
        let (payload, _) = token.split_once('.').unwrap();
        let forged = format!("{}.{}", URL_SAFE_NO_PAD.encode("10002:img:1/x"), token.split_once('.').unwrap().1);
        assert_eq!(media.verify_token(&forged), None);
        assert_eq!(media.verify_token(&format!("{payload}.AAAA")), None);
        assert_eq!(media.verify_token("nonsense"), None);
        let other = Media::new(MediaOptions::default(), None);
        assert_eq!(other.verify_token(&token), None, "another key");
        assert_eq!(media.serve_url(1, "f"), None, "no HTTP address yet");
        media.set_serve_base(Some("http://127.0.0.1:5700/".into()));
        assert!(media.serve_url(1, "f").unwrap().starts_with("http://127.0.0.1:5700/files/"));
    }

    #[test]
    fn remembered_entries_are_bounded_and_age() {
        let mut r = Recent::new(2);
        r.insert("a".into(), "1".to_string());
        r.insert("b".into(), "2".into());
        r.insert("c".into(), "3".into());
        assert_eq!(r.get("a", Duration::from_secs(60)), None, "oldest forgotten");
        assert_eq!(r.get("c", Duration::from_secs(60)).as_deref(), Some("3"));
        assert_eq!(r.get("c", Duration::ZERO), None, "too old");
        r.remove("c");
        assert_eq!(r.get("c", Duration::from_secs(60)), None);
        assert_eq!(r.bytes, weight("b", &"2".to_string()));
    }

    /// Peers choose the keys and values (a bot's URL, a backend's URL): long ones are bounded in
    /// bytes, the oldest forgotten first, and one longer than an entry may be is not kept.
    #[test]
    fn remembered_entries_are_bounded_in_bytes() {
        let mut r = Recent::new(100_000);
        let url = |i: usize| format!("https://example.com/{i}/{}", "x".repeat(8 << 10));
        for i in 0..2_000 {
            r.insert(format!("key{i}"), url(i));
            assert!(r.bytes <= RECENT_BYTES, "{} bytes kept", r.bytes);
        }
        assert_eq!(r.bytes, r.map.iter().map(|(k, (v, _))| weight(k, v)).sum::<usize>());
        assert!(r.map.len() < 600, "{} entries of 8 KiB kept", r.map.len());
        assert_eq!(r.get("key1999", Duration::from_secs(60)), Some(url(1999)), "the newest kept");
        assert_eq!(r.get("key0", Duration::from_secs(60)), None, "the oldest forgotten");
        let long = "y".repeat(RECENT_ENTRY_BYTES);
        r.insert("key1999".into(), long);
        assert_eq!(r.get("key1999", Duration::from_secs(60)), None, "too long to keep, and the old value gone");
        assert_eq!(r.bytes, r.map.iter().map(|(k, (v, _))| weight(k, v)).sum::<usize>());
    }
}
