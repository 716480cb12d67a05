//! The command line. Every flag has an environment twin `ONEBOT_BRIDGE_<FLAG>`; repeatable flags
//! take a comma-separated list there. This is a stable contract: see docs/configuration.md.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{AuthScheme, Config, ConfigError, FileConfig, IncomingModeName, Overrides, UploadModeName};
use crate::core::v11::PostFormat;

#[derive(Debug, Parser)]
#[command(name = "onebot-bridge", version, about = "Run OneBot v11 (go-cqhttp) bots on a OneBot v12 implementation")]
pub struct Cli {
    /// TOML configuration file (go-cqhttp vocabulary; see docs/configuration.md).
    #[arg(long, env = "ONEBOT_BRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Dial the v12 implementation's forward WebSocket (repeatable).
    #[arg(long = "backend-ws", env = "ONEBOT_BRIDGE_BACKEND_WS", value_name = "URL", value_delimiter = ',')]
    pub backend_ws: Vec<String>,

    /// POST actions to the v12 implementation's HTTP server at URL (repeatable).
    #[arg(long = "backend-http", env = "ONEBOT_BRIDGE_BACKEND_HTTP", value_name = "URL", value_delimiter = ',')]
    pub backend_http: Vec<String>,

    /// Receive the implementation's webhook on ADDR; pairs with the --backend-http of the same
    /// position (without one, that link polls `get_latest_events`).
    #[arg(long = "backend-webhook", env = "ONEBOT_BRIDGE_BACKEND_WEBHOOK", value_name = "ADDR", value_delimiter = ',')]
    pub backend_webhook: Vec<String>,

    /// Accept the implementation's reverse WebSocket on ADDR (repeatable).
    #[arg(
        long = "backend-ws-reverse",
        env = "ONEBOT_BRIDGE_BACKEND_WS_REVERSE",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub backend_ws_reverse: Vec<String>,

    /// Send action requests to the implementation as MessagePack.
    #[arg(long, env = "ONEBOT_BRIDGE_BACKEND_MSGPACK")]
    pub backend_msgpack: bool,

    /// What the backend links speak: `v12`, or `v11` for NapCat, LLBot and Lagrange.OneBot (links
    /// in the config file may say otherwise).
    #[arg(long = "backend-protocol", env = "ONEBOT_BRIDGE_BACKEND_PROTOCOL", value_name = "v11|v12")]
    pub backend_protocol: Option<crate::config::Protocol>,

    /// The secret a OneBot v11 implementation signs its HTTP POST with (`X-Signature`), for the
    /// `--backend-http` links of `--backend-protocol v11`.
    #[arg(long = "backend-secret", env = "ONEBOT_BRIDGE_BACKEND_SECRET", value_name = "S")]
    pub backend_secret: Option<String>,

    /// PEM file of extra CA certificates to trust for `wss://` / `https://` backends.
    #[arg(long = "backend-ca-file", env = "ONEBOT_BRIDGE_BACKEND_CA_FILE", value_name = "FILE")]
    pub backend_ca_file: Option<PathBuf>,

    /// Accept any certificate from a `wss://` / `https://` backend (test setups only; every
    /// connection is logged as a warning).
    #[arg(long = "backend-tls-insecure", env = "ONEBOT_BRIDGE_BACKEND_TLS_INSECURE")]
    pub backend_tls_insecure: bool,

    /// Access token sent to the v12 implementation (`Authorization: Bearer`).
    #[arg(long, env = "ONEBOT_BRIDGE_BACKEND_TOKEN", value_name = "T")]
    pub backend_token: Option<String>,

    /// Serve the v11 forward WebSocket on ADDR (repeatable), e.g. 127.0.0.1:8080.
    #[arg(long = "ws", env = "ONEBOT_BRIDGE_WS", value_name = "ADDR", value_delimiter = ',')]
    pub ws: Vec<String>,

    /// Serve go-cqhttp's HTTP API on ADDR (repeatable).
    #[arg(long = "http", env = "ONEBOT_BRIDGE_HTTP", value_name = "ADDR", value_delimiter = ',')]
    pub http: Vec<String>,

    /// POST events to the bot's webhook at URL (repeatable).
    #[arg(long = "http-post", env = "ONEBOT_BRIDGE_HTTP_POST", value_name = "URL", value_delimiter = ',')]
    pub http_post: Vec<String>,

    /// Sign HTTP POST bodies with HMAC-SHA1 under this secret (`X-Signature: sha1=…`).
    #[arg(long, env = "ONEBOT_BRIDGE_SECRET", value_name = "S")]
    pub secret: Option<String>,

    /// Dial the bot's reverse WebSocket at URL as a Universal client (repeatable).
    #[arg(long = "ws-reverse", env = "ONEBOT_BRIDGE_WS_REVERSE", value_name = "URL", value_delimiter = ',')]
    pub ws_reverse: Vec<String>,

    /// Dial the bot's reverse WebSocket API URL (with --ws-reverse-event: split roles).
    #[arg(long = "ws-reverse-api", env = "ONEBOT_BRIDGE_WS_REVERSE_API", value_name = "URL")]
    pub ws_reverse_api: Option<String>,

    /// Dial the bot's reverse WebSocket Event URL.
    #[arg(long = "ws-reverse-event", env = "ONEBOT_BRIDGE_WS_REVERSE_EVENT", value_name = "URL")]
    pub ws_reverse_event: Option<String>,

    /// `Authorization` scheme for reverse WebSocket: `bearer` (default) or go-cqhttp's `token`.
    #[arg(long = "ws-reverse-auth", env = "ONEBOT_BRIDGE_WS_REVERSE_AUTH", value_name = "SCHEME")]
    pub ws_reverse_auth: Option<AuthScheme>,

    /// Reverse WebSocket reconnect interval in milliseconds [default: 5000].
    #[arg(long = "reconnect-interval", env = "ONEBOT_BRIDGE_RECONNECT_INTERVAL", value_name = "MS")]
    pub reconnect_interval: Option<u64>,

    /// Access token v11 bots must present (`Bearer`/`Token` header or `?access_token=`).
    #[arg(long, env = "ONEBOT_BRIDGE_ACCESS_TOKEN", value_name = "T")]
    pub access_token: Option<String>,

    /// Message format in events: `string` (CQ codes, go-cqhttp's default) or `array`.
    #[arg(long, env = "ONEBOT_BRIDGE_POST_FORMAT", value_name = "FORMAT")]
    pub post_format: Option<PostFormat>,

    /// Whether a quick-operation reply mentions the sender when the bot does not say
    /// (`true`/`false`; go-cqhttp: false) [default: false].
    #[arg(long = "at-sender-default", env = "ONEBOT_BRIDGE_AT_SENDER_DEFAULT", value_name = "BOOL")]
    pub at_sender_default: Option<bool>,

    /// v11 heartbeat interval in milliseconds (0 turns heartbeats off) [default: 5000].
    #[arg(long, env = "ONEBOT_BRIDGE_HEARTBEAT_INTERVAL", value_name = "MS")]
    pub heartbeat_interval: Option<u64>,

    /// How long a backend action may take before the bot gets a failure, in milliseconds [default: 30000].
    #[arg(long, env = "ONEBOT_BRIDGE_ACTION_TIMEOUT", value_name = "MS")]
    pub action_timeout: Option<u64>,

    /// How long, in all, a bot that falls a whole queue behind is waited for (the backend held back)
    /// before it loses the oldest events, in milliseconds, given back at most once a minute; 0 drops
    /// at once [default: 5000].
    #[arg(long, env = "ONEBOT_BRIDGE_SLOW_BOT_WAIT", value_name = "MS")]
    pub slow_bot_wait: Option<u64>,

    /// Load the mapping tables from DIR instead of the built-in ones.
    #[arg(long, env = "ONEBOT_BRIDGE_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,

    /// Directory of the id store (surrogate ids, message ids) [default: ./data].
    #[arg(long = "data-dir", env = "ONEBOT_BRIDGE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep ids in memory only: nothing is written, ids change after a restart.
    #[arg(long, env = "ONEBOT_BRIDGE_EPHEMERAL")]
    pub ephemeral: bool,

    /// Keep ids and messages on Redis (or Valkey) at URL (`redis://…`, `rediss://…`), shared by
    /// every bridge that names it, instead of the disk store.
    #[arg(long, env = "ONEBOT_BRIDGE_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// PEM file of the CA certificates a `rediss://` store's certificate must chain to (a
    /// private CA); it replaces the bundled roots for the store.
    #[arg(long = "store-ca-file", env = "ONEBOT_BRIDGE_STORE_CA_FILE", value_name = "FILE")]
    pub store_ca_file: Option<PathBuf>,

    /// Message ids kept at most; the oldest are pruned first [default: 1000000].
    #[arg(long = "retain-messages", env = "ONEBOT_BRIDGE_RETAIN_MESSAGES", value_name = "N")]
    pub retain_messages: Option<u64>,

    /// Days a message id is kept [default: 30].
    #[arg(long = "retain-days", env = "ONEBOT_BRIDGE_RETAIN_DAYS", value_name = "DAYS")]
    pub retain_days: Option<u64>,

    /// With --ephemeral: bytes the remembered messages may take, oldest forgotten first
    /// (at least 1048576; user and group surrogates may take a quarter of it more)
    /// [default: 33554432].
    #[arg(long = "memory-store-bytes", env = "ONEBOT_BRIDGE_MEMORY_STORE_BYTES", value_name = "BYTES")]
    pub memory_store_bytes: Option<u64>,

    /// Bytes of the disk store's page cache (at least 1048576) [default: 4194304].
    #[arg(long = "store-cache-bytes", env = "ONEBOT_BRIDGE_STORE_CACHE_BYTES", value_name = "BYTES")]
    pub store_cache_bytes: Option<u64>,

    /// Backend profile (`generic`, `walle-q`, `comwechat`, `onedisc`, `onebots`, or a file of
    /// your own under --mappings) instead of choosing by the implementation's name.
    #[arg(long = "backend-profile", env = "ONEBOT_BRIDGE_BACKEND_PROFILE", value_name = "NAME")]
    pub backend_profile: Option<String>,

    /// Report the bot's own messages as `message_sent` events (go-cqhttp's report-self-message).
    #[arg(long = "report-self-message", env = "ONEBOT_BRIDGE_REPORT_SELF_MESSAGE", value_name = "BOOL")]
    pub report_self_message: Option<bool>,

    /// Let bots send files from DIR by path or `file://` URL (repeatable). Nothing else is read.
    #[arg(long = "media-dir", env = "ONEBOT_BRIDGE_MEDIA_DIR", value_name = "DIR", value_delimiter = ',')]
    pub media_dirs: Vec<PathBuf>,

    /// How local files reach the backend: `data` (the bytes travel) or `path` (it shares the disk) [default: data].
    #[arg(long = "upload-mode", env = "ONEBOT_BRIDGE_UPLOAD_MODE", value_name = "MODE")]
    pub upload_mode: Option<UploadModeName>,

    /// Received media URLs: `resolve` (the backend's, via get_file) or `serve` (the bridge's /files/) [default: resolve].
    #[arg(long = "media-urls", env = "ONEBOT_BRIDGE_MEDIA_URLS", value_name = "MODE")]
    pub media_urls: Option<IncomingModeName>,

    /// Base URL bots reach the bridge's /files/ at [default: the first --http address, else the first --ws].
    #[arg(long = "public-url", env = "ONEBOT_BRIDGE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// Files above this many bytes are uploaded in fragments [default: 1048576].
    #[arg(long = "fragment-threshold", env = "ONEBOT_BRIDGE_FRAGMENT_THRESHOLD", value_name = "BYTES")]
    pub fragment_threshold: Option<u64>,

    /// Largest file moved either way, in bytes [default: 104857600].
    #[arg(long = "max-file-size", env = "ONEBOT_BRIDGE_MAX_FILE_SIZE", value_name = "BYTES")]
    pub max_file_size: Option<u64>,

    /// Largest WebSocket message or HTTP body, toward bots and backend alike, in bytes
    /// [default: 16777216; 65536..=67108864]. Inline base64 media count a third over their size.
    #[arg(long = "max-message", env = "ONEBOT_BRIDGE_MAX_MESSAGE", value_name = "BYTES")]
    pub max_message: Option<u64>,

    /// Serve `/health`, `/ready` and `/metrics` on this address (off by default; bind it to
    /// loopback or a private network: it shows the bridge's accounts and backends).
    #[arg(long, env = "ONEBOT_BRIDGE_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,

    /// Serve the translation inspector on the admin listener (`/inspector/`): backend links,
    /// accounts, bot connections and a live feed of each translation, both sides. Needs --admin.
    #[arg(long, env = "ONEBOT_BRIDGE_INSPECTOR")]
    pub inspector: bool,

    /// Threads of the async runtime (default 1: a link's event path costs least on one thread;
    /// give more for several busy backend links or accounts).
    #[arg(long = "worker-threads", env = "ONEBOT_BRIDGE_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,

    /// Try the bridge without a backend: a built-in OneBot v12 implementation (one bot account,
    /// friends, groups) and a chat page on the admin listener where you play the users. Bots
    /// connect as to go-cqhttp (default: forward WS on 127.0.0.1:8080, HTTP API on
    /// 127.0.0.1:5700; the page on 127.0.0.1:5800). Ids are kept in memory unless --data-dir.
    #[arg(long, env = "ONEBOT_BRIDGE_DEMO")]
    pub demo: bool,

    /// Validate the configuration and exit.
    #[arg(long, env = "ONEBOT_BRIDGE_CHECK")]
    pub check: bool,

    /// Ask a running bridge's admin listener (`--admin`) for `/health` and exit 0 when it
    /// answers 200, else 1: a container's HEALTHCHECK without curl in the image.
    #[arg(long)]
    pub probe: bool,

    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `onebot_bridge=debug`; a filter
    /// that does not parse is a configuration error [default: a config.yml's
    /// `output.log-level`, else info].
    #[arg(long, env = "ONEBOT_BRIDGE_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Log lines as human-readable `text` or one JSON object per line (`json`).
    #[arg(long = "log-format", env = "ONEBOT_BRIDGE_LOG_FORMAT", value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            backend_ws: self.backend_ws.clone(),
            backend_http: self.backend_http.clone(),
            backend_webhook: self.backend_webhook.clone(),
            backend_ws_reverse: self.backend_ws_reverse.clone(),
            backend_token: self.backend_token.clone(),
            backend_ca_file: self.backend_ca_file.clone(),
            backend_tls_insecure: self.backend_tls_insecure,
            backend_msgpack: self.backend_msgpack,
            backend_protocol: self.backend_protocol,
            backend_secret: self.backend_secret.clone(),
            ws: self.ws.clone(),
            http: self.http.clone(),
            http_post: self.http_post.clone(),
            secret: self.secret.clone(),
            ws_reverse: self.ws_reverse.clone(),
            ws_reverse_api: self.ws_reverse_api.clone(),
            ws_reverse_event: self.ws_reverse_event.clone(),
            ws_reverse_auth: self.ws_reverse_auth,
            reconnect_interval_ms: self.reconnect_interval,
            access_token: self.access_token.clone(),
            post_format: self.post_format,
            at_sender_default: self.at_sender_default,
            heartbeat_interval_ms: self.heartbeat_interval,
            action_timeout_ms: self.action_timeout,
            slow_bot_wait_ms: self.slow_bot_wait,
            mappings: self.mappings.clone(),
            data_dir: self.data_dir.clone(),
            default_data_dir: Some(PathBuf::from("data")),
            ephemeral: self.ephemeral,
            retain_messages: self.retain_messages,
            retain_days: self.retain_days,
            memory_store_bytes: self.memory_store_bytes,
            store_cache_bytes: self.store_cache_bytes,
            media_dirs: self.media_dirs.clone(),
            backend_profile: self.backend_profile.clone(),
            report_self_message: self.report_self_message,
            upload_mode: self.upload_mode,
            media_urls: self.media_urls,
            public_url: self.public_url.clone(),
            fragment_threshold: self.fragment_threshold,
            max_file_size: self.max_file_size,
            admin: self.admin.clone(),
            max_message: self.max_message,
            demo: self.demo,
            inspector: self.inspector,
            worker_threads: self.worker_threads,
            store: self.store.clone(),
            store_ca_file: self.store_ca_file.clone(),
        }
    }

    /// Reads the file (if any), merges the flags and validates everything.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(file, self.overrides())
    }
}
