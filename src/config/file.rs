//! The configuration file as written: the bridge's TOML, in go-cqhttp's vocabulary plus its own
//! `[backend]` and `[bridge]` sections, each key as read before anything is checked (unknown keys
//! are errors). [`FileConfig::load`] also reads go-cqhttp's `config.yml` into the same shape.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{gocqhttp, ConfigError};
use crate::core::v11::PostFormat;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    #[serde(default)]
    pub backend: BackendSection,
    #[serde(default)]
    pub message: MessageSection,
    #[serde(default)]
    pub heartbeat: HeartbeatSection,
    #[serde(default)]
    pub default_middlewares: Middlewares,
    #[serde(default)]
    pub servers: Vec<ServerEntry>,
    #[serde(default)]
    pub bridge: BridgeSection,
    #[serde(default)]
    pub media: MediaSection,
    #[serde(default)]
    pub store: StoreSection,
    /// go-cqhttp's `output.log-level` (only from a `config.yml`; `--log` wins).
    #[serde(skip)]
    pub log_level: Option<String>,
    /// Keys of a go-cqhttp `config.yml` the bridge does not act on, and why.
    #[serde(skip)]
    pub ignored: Vec<gocqhttp::Ignored>,
}

/// `[store]`: a store shared by several bridges (else ids live in `data-dir`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StoreSection {
    /// `redis://…` or `rediss://…`: ids and messages on Redis (or Valkey).
    #[serde(default)]
    pub url: Option<String>,
    /// PEM file of the CA certificates a `rediss://` server's certificate must chain to (a
    /// private CA); it replaces the bundled roots for the store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[media]`: how pictures, voice, video and files move (README "Media").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MediaSection {
    /// Directories whose files bots may send by path or `file://` URL.
    #[serde(default)]
    pub allowed_dirs: Vec<PathBuf>,
    /// `data` (the bytes travel; default) or `path` (the backend reads the bridge's disk).
    #[serde(default)]
    pub upload: Option<UploadModeName>,
    /// Where received media URLs come from: `resolve` (the backend; default) or `serve` (the bridge).
    #[serde(default)]
    pub urls: Option<IncomingModeName>,
    /// The base URL bots reach the bridge's `/files/` at (default: the first HTTP server's
    /// address, else the first forward WebSocket's).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Files above this many bytes are uploaded in fragments.
    #[serde(default)]
    pub fragment_threshold: Option<u64>,
    /// Bytes per fragment.
    #[serde(default)]
    pub fragment_size: Option<u64>,
    /// Largest file moved either way, bytes.
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// Longest one upload or download may take, seconds.
    #[serde(default)]
    pub transfer_timeout: Option<u64>,
    /// How long an upload's file_id is reused for the same content, seconds (0: never).
    #[serde(default)]
    pub reuse_uploads: Option<u64>,
    /// Where `get_image` / `download_file` put files (default `<data-dir>/cache`).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Bytes the cache directory may hold before the oldest files go.
    #[serde(default)]
    pub cache_max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UploadModeName {
    Data,
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IncomingModeName {
    Resolve,
    Serve,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendSection {
    /// Token for every backend link that does not set its own.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Send action requests as MessagePack (every link that does not say otherwise).
    #[serde(default)]
    pub msgpack: bool,
    /// What every link that does not say otherwise speaks (`v12`, or `v11` for NapCat and the like).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Forward WebSocket links (the bridge dials the implementation).
    #[serde(default)]
    pub ws: Vec<BackendWsEntry>,
    /// HTTP links (the bridge POSTs actions), each with its webhook receiver or polling.
    #[serde(default)]
    pub http: Vec<BackendHttpEntry>,
    /// Reverse WebSocket servers (the implementation dials the bridge).
    #[serde(default)]
    pub ws_reverse: Vec<BackendWsReverseEntry>,
    /// The backend profile (`mappings/profiles/<name>.toml`) instead of choosing by
    /// implementation name.
    #[serde(default)]
    pub profile: Option<String>,
    /// PEM file of extra CA certificates for `wss://` / `https://` backends.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate from a TLS backend (test setups only).
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendWsEntry {
    pub url: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub msgpack: Option<bool>,
    /// How local files reach this link's backend (overrides `[media] upload`): `path` when it
    /// reads this machine's disk, `data` when it is elsewhere (a container).
    #[serde(default)]
    pub upload: Option<UploadModeName>,
    /// What this link speaks (overrides `[backend] protocol`).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// This link's backend profile (overrides `[backend] profile`).
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendHttpEntry {
    pub url: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub msgpack: Option<bool>,
    /// Where the implementation's webhook posts events; without it the bridge polls
    /// `get_latest_events`.
    #[serde(default)]
    pub webhook: Option<String>,
    /// A v11 implementation's HTTP POST secret: its events must carry `X-Signature`.
    #[serde(default)]
    pub secret: Option<String>,
    /// How local files reach this link's backend (overrides `[media] upload`): `path` when it
    /// reads this machine's disk, `data` when it is elsewhere (a container).
    #[serde(default)]
    pub upload: Option<UploadModeName>,
    /// What this link speaks (overrides `[backend] protocol`).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// This link's backend profile (overrides `[backend] profile`).
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendWsReverseEntry {
    pub address: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub msgpack: Option<bool>,
    /// How local files reach this link's backend (overrides `[media] upload`): `path` when it
    /// reads this machine's disk, `data` when it is elsewhere (a container).
    #[serde(default)]
    pub upload: Option<UploadModeName>,
    /// What this link speaks (overrides `[backend] protocol`).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// This link's backend profile (overrides `[backend] profile`).
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MessageSection {
    #[serde(default)]
    pub post_format: Option<PostFormat>,
    /// Whether a quick-operation `reply` mentions the sender when the bot does not say
    /// (`at_sender` absent). go-cqhttp: false; the v11 spec: true.
    #[serde(default)]
    pub at_sender_default: Option<bool>,
    /// go-cqhttp's `report-self-message`: the bot's own messages as `message_sent` events.
    #[serde(default)]
    pub report_self_message: Option<bool>,
    /// go-cqhttp's `remove-reply-at`: drop the mention QQ adds after a reply.
    #[serde(default)]
    pub remove_reply_at: Option<bool>,
    /// go-cqhttp's `extra-reply-data`: a reply segment also carries the quoted message's data.
    #[serde(default)]
    pub extra_reply_data: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HeartbeatSection {
    /// Seconds, as go-cqhttp (`0`/absent → 5, `-1` → off).
    #[serde(default)]
    pub interval: Option<i64>,
    #[serde(default)]
    pub disabled: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Middlewares {
    #[serde(default)]
    pub access_token: Option<String>,
    /// go-cqhttp's event filter: the path of its JSON file.
    #[serde(default)]
    pub filter: Option<String>,
    /// go-cqhttp's API rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitEntry>,
}

/// go-cqhttp's `rate-limit`: a token bucket of `bucket` tokens refilled `frequency` times a second.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RateLimitEntry {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub frequency: Option<f64>,
    #[serde(default)]
    pub bucket: Option<u32>,
}

/// One `servers` entry: a single-key table naming the kind, as in go-cqhttp's config.yml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ServerEntry {
    Http(HttpServerEntry),
    Ws(WsServerEntry),
    WsReverse(WsReverseEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpServerEntry {
    #[serde(default)]
    pub disabled: bool,
    /// The HTTP API address; empty runs only the `post` targets, as go-cqhttp.
    #[serde(default)]
    pub address: String,
    /// Webhook timeout in seconds (go-cqhttp: at least 5).
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub middlewares: Option<Middlewares>,
    #[serde(default)]
    pub post: Vec<PostEntry>,
    /// Overrides `message.post-format` for this endpoint.
    #[serde(default)]
    pub post_format: Option<PostFormat>,
    /// Serve only this bot account (v11 self_id).
    #[serde(default)]
    pub self_id: Option<i64>,
    /// go-cqhttp's `long-polling`: events queued for `get_updates`.
    #[serde(default)]
    pub long_polling: Option<LongPollingEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LongPollingEntry {
    #[serde(default)]
    pub enabled: bool,
    /// Events kept for `get_updates` (oldest dropped first); go-cqhttp's default 2000.
    #[serde(default)]
    pub max_queue_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostEntry {
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Milliseconds.
    #[serde(default)]
    pub retries_interval: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WsServerEntry {
    #[serde(default)]
    pub disabled: bool,
    pub address: String,
    #[serde(default)]
    pub middlewares: Option<Middlewares>,
    /// Overrides `message.post-format` for this endpoint.
    #[serde(default)]
    pub post_format: Option<PostFormat>,
    /// Serve only this bot account (v11 self_id).
    #[serde(default)]
    pub self_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WsReverseEntry {
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub universal: Option<String>,
    #[serde(default)]
    pub api: Option<String>,
    #[serde(default)]
    pub event: Option<String>,
    /// Milliseconds; go-cqhttp's default 5000 when absent or 0.
    #[serde(default)]
    pub reconnect_interval: Option<u64>,
    #[serde(default)]
    pub middlewares: Option<Middlewares>,
    /// `Bearer` (default) or go-cqhttp's `Token`.
    #[serde(default)]
    pub auth_scheme: Option<AuthScheme>,
    /// Overrides `message.post-format` for this endpoint.
    #[serde(default)]
    pub post_format: Option<PostFormat>,
    /// Serve only this bot account (v11 self_id).
    #[serde(default)]
    pub self_id: Option<i64>,
}

/// What a backend link speaks: OneBot v12, or v11 (NapCat, LLBot, Lagrange.OneBot), converted at
/// the link's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "v12", alias = "12")]
    V12,
    #[serde(rename = "v11", alias = "11")]
    V11,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "v12" | "12" => Ok(Protocol::V12),
            "v11" | "11" => Ok(Protocol::V11),
            _ => Err(format!("backend protocol must be `v11` or `v12`, not {s:?}")),
        }
    }
}

/// The `Authorization` scheme a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum AuthScheme {
    #[default]
    #[serde(alias = "bearer")]
    Bearer,
    #[serde(alias = "token")]
    Token,
}

impl std::str::FromStr for AuthScheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "bearer" => Ok(AuthScheme::Bearer),
            "token" => Ok(AuthScheme::Token),
            _ => Err(format!("auth scheme must be `bearer` or `token`, not {s:?}")),
        }
    }
}

impl AuthScheme {
    pub fn header(self, token: &str) -> String {
        match self {
            AuthScheme::Bearer => format!("Bearer {token}"),
            AuthScheme::Token => format!("Token {token}"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BridgeSection {
    /// How long a v12 action may take before the bot gets a `BACKEND_TIMEOUT` failure (ms).
    #[serde(default)]
    pub action_timeout: Option<u64>,
    /// How long, in all, a bot a whole queue behind is waited for before it loses the oldest
    /// events (ms; 0: not waited for).
    #[serde(default)]
    pub slow_bot_wait: Option<u64>,
    /// A directory that replaces the embedded mapping tables.
    #[serde(default)]
    pub mappings: Option<PathBuf>,
    /// Where the id store lives (default `./data`).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Keep ids in memory only: nothing is written, ids are new after a restart.
    #[serde(default)]
    pub ephemeral: bool,
    /// Message ids kept at most (oldest pruned first).
    #[serde(default)]
    pub retain_messages: Option<u64>,
    /// Days a message id is kept.
    #[serde(default)]
    pub retain_days: Option<u64>,
    /// Bytes the in-memory store (`ephemeral`) may hold for message ids (oldest forgotten first).
    #[serde(default)]
    pub memory_store_bytes: Option<u64>,
    /// Bytes of the disk store's page cache.
    #[serde(default)]
    pub store_cache_bytes: Option<u64>,
    /// Largest WebSocket message or HTTP body, either side, bytes (default 16 MiB).
    #[serde(default)]
    pub max_message: Option<u64>,
    /// Where the admin listener (`/health`, `/ready`, `/metrics`) listens; none when unset.
    #[serde(default)]
    pub admin: Option<String>,
    /// Serve the translation inspector on the admin listener.
    #[serde(default)]
    pub inspector: bool,
    /// Threads of the async runtime (default 1; see [`super::DEFAULT_WORKER_THREADS`]).
    #[serde(default)]
    pub worker_threads: Option<usize>,
}

impl FileConfig {
    /// Reads the bridge's TOML file, or go-cqhttp's own `config.yml` / `.yaml` (by extension).
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let parse_error = |detail: String| ConfigError::Parse { path: path.into(), detail };
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("yml" | "yaml") => {
                let (mut file, ignored) =
                    gocqhttp::read(&text, |name| std::env::var(name).ok()).map_err(parse_error)?;
                file.ignored = ignored;
                Ok(file)
            }
            _ => toml::from_str(&text).map_err(|e| parse_error(e.to_string())),
        }
    }
}
