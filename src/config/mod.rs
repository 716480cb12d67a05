//! What connects to what: the configuration file, the flags, and their validated merge.
//!
//! The file is TOML in go-cqhttp's own vocabulary (`servers` entries named `ws`, keys such as
//! `address`, `middlewares.access-token`, `message.post-format`, `heartbeat.interval`), plus a
//! `[backend]` section for the v12 side and per-endpoint extras (`post-format`, `self-id`).
//! Unknown keys are errors. go-cqhttp's own `config.yml` is read too ([`gocqhttp`]): its keys
//! land in the same [`FileConfig`], and the ones that do not apply are reported, not refused.
//! Everything is checked here, before any port is bound: `file` holds the file's shape as
//! written, this module what the bridge runs ([`Config`]) and how the file and the flags
//! ([`Overrides`]) resolve into it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::bots::event_filter::{FilterSlot, Filters};
use crate::bots::rate_limit::RateLimit;
use crate::core::v11::PostFormat;
use crate::core::MappingSet;

mod file;
pub mod gocqhttp;

pub use file::*;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Mappings(#[from] crate::core::mapping::MappingError),
}

/// The smallest byte size either store may be given (`memory-store-bytes`, `store-cache-bytes`).
pub const MIN_STORE_BYTES: usize = crate::core::ids::MIN_MEMORY_STORE_BYTES;

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

// ---- the validated configuration the bridge runs ----

/// How the bridge reaches a v12 implementation.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendKind {
    /// Dial its forward WebSocket.
    Ws { url: url::Url },
    /// POST actions to it; events from a webhook receiver on `webhook`, else `get_latest_events`.
    Http { url: url::Url, webhook: Option<SocketAddr> },
    /// Serve a WebSocket it dials (each connection is a link of its own).
    WsReverse { addr: SocketAddr },
}

/// A backend link.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendLink {
    pub kind: BackendKind,
    /// OneBot v12, or v11 converted at the link's edge.
    pub protocol: Protocol,
    /// A v11 implementation's HTTP POST secret (`X-Signature` on the events it posts).
    pub secret: Option<String>,
    /// How local files reach this link's backend, when the link says (else `[media] upload`).
    pub upload: Option<crate::core::media::UploadMode>,
    pub token: Option<String>,
    /// Send action requests as MessagePack (answers and events are read in either encoding).
    pub msgpack: bool,
    /// The profile this link's backend gets (`None`: the global one, else by implementation name).
    pub profile: Option<String>,
}

/// A v11 forward WebSocket endpoint the bridge serves.
#[derive(Debug, Clone, PartialEq)]
pub struct WsServer {
    pub addr: SocketAddr,
    pub token: Option<String>,
    pub post_format: PostFormat,
    pub self_id: Option<i64>,
    /// go-cqhttp's event filter for this server.
    pub filter: Option<Arc<FilterSlot>>,
    /// go-cqhttp's rate limit: one bucket per connection.
    pub rate_limit: Option<RateLimit>,
}

/// A v11 HTTP API endpoint the bridge serves.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpServer {
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// `get_msg` answers in this format.
    pub post_format: PostFormat,
    pub self_id: Option<i64>,
    /// `get_updates` long polling, with this many events queued at most.
    pub long_polling: Option<usize>,
    /// go-cqhttp's event filter (for `get_updates`, and the server's `post` targets).
    pub filter: Option<Arc<FilterSlot>>,
    /// go-cqhttp's rate limit: one bucket for the server.
    pub rate_limit: Option<RateLimit>,
}

/// A bot's webhook the bridge POSTs events to (go-cqhttp `http.post`).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPost {
    pub url: url::Url,
    pub secret: Option<String>,
    pub timeout: Duration,
    pub max_retries: u32,
    pub retries_interval: Duration,
    pub post_format: PostFormat,
    pub self_id: Option<i64>,
    /// The event filter of the `http` server this target belongs to.
    pub filter: Option<Arc<FilterSlot>>,
}

/// A bot's reverse-WebSocket server the bridge dials: one Universal URL, or API and/or Event URLs.
#[derive(Debug, Clone, PartialEq)]
pub struct WsReverse {
    pub universal: Option<url::Url>,
    pub api: Option<url::Url>,
    pub event: Option<url::Url>,
    pub reconnect_interval: Duration,
    pub token: Option<String>,
    pub auth_scheme: AuthScheme,
    pub post_format: PostFormat,
    pub self_id: Option<i64>,
    /// go-cqhttp's event filter for this entry.
    pub filter: Option<Arc<FilterSlot>>,
    /// go-cqhttp's rate limit: one bucket for the entry.
    pub rate_limit: Option<RateLimit>,
}

/// The smallest `max-message` a configuration may set: room for any action and event.
pub const MIN_MAX_MESSAGE: u64 = 64 << 10;
/// The largest `max-message`: a JSON document this large still fits the parse budget
/// (`crate::decode::PARSE_BUDGET`) with every value it may hold.
pub const MAX_MAX_MESSAGE: u64 = 64 << 20;

/// The longest `slow-bot-wait`: a minute of holding every other connection of the account back.
pub const MAX_SLOW_BOT_WAIT_MS: u64 = 60_000;

/// Bounds on everything that comes over a wire.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message or HTTP body accepted or sent, bytes.
    pub max_message: usize,
    /// Events buffered per v11 connection before it is waited for (`slow_bot_wait`) and then
    /// loses the oldest (counted).
    pub event_queue: usize,
    /// How long, in all, a v11 connection a whole queue behind is waited for before it loses the
    /// oldest (given back once it has read its queue down to half, at most once a minute; zero: not
    /// waited for).
    pub slow_bot_wait: Duration,
    /// Concurrent actions per v11 connection before the bridge stops reading more.
    pub actions_in_flight: usize,
    /// Time to write one frame before the connection is considered dead.
    pub write_timeout: Duration,
    /// Grace period for in-flight work at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 16 << 20,
            event_queue: 1024,
            slow_bot_wait: crate::fanout::PATIENCE,
            actions_in_flight: 64,
            write_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// How media move, validated.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Upload, URL and size settings for the core (its signing key is set at start-up).
    pub options: crate::core::media::MediaOptions,
    /// Canonical directories bots may name files in (the cache directory is added at start-up).
    pub allowed_dirs: Vec<PathBuf>,
    /// `None`: beside the store (`<data-dir>/cache`), or a temporary directory without one.
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
    pub public_url: Option<String>,
}

/// Where the id tables live.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// In memory only (`--ephemeral`): the most recent message ids, at most `max_messages` of
    /// them in at most about `max_bytes`.
    Memory { max_messages: usize, max_bytes: usize },
    /// A redb file under `dir`, with a page cache of `cache_bytes`.
    Disk { dir: PathBuf, retention: crate::store::Retention, cache_bytes: usize },
    /// Redis (or Valkey) at `url`, shared by every bridge that names it; with `ca_file`, a
    /// `rediss://` server's certificate must chain to a certificate in that file.
    Redis { url: String, retention: crate::store::Retention, ca_file: Option<PathBuf> },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreConfig,
    pub backends: Vec<BackendLink>,
    pub ws_servers: Vec<WsServer>,
    pub http_servers: Vec<HttpServer>,
    pub http_posts: Vec<HttpPost>,
    pub ws_reverse: Vec<WsReverse>,
    /// `None`: no v11 heartbeats.
    pub heartbeat: Option<Duration>,
    pub action_timeout: Duration,
    /// Quick-operation `at_sender` when the bot does not say.
    pub at_sender_default: bool,
    pub mappings: Arc<MappingSet>,
    /// The profile every backend gets (`None`: chosen by implementation name).
    pub profile: Option<String>,
    /// Report the bot's own messages as go-cqhttp's `message_sent` (else they are not reported).
    pub report_self_message: bool,
    /// go-cqhttp's `message.remove-reply-at`.
    pub remove_reply_at: bool,
    /// go-cqhttp's `message.extra-reply-data`.
    pub extra_reply_data: bool,
    pub limits: Limits,
    pub media: MediaConfig,
    /// go-cqhttp's `output.log-level`, when a `config.yml` gave one.
    pub log_level: Option<String>,
    /// What the file said that the bridge does not act on, and why (logged at start).
    pub ignored: Vec<gocqhttp::Ignored>,
    /// Every event filter file the servers name (for `reload_event_filter`).
    pub filters: Filters,
    /// The TLS client every `wss://` and `https://` backend link uses (built once, here).
    pub backend_tls: std::sync::Arc<rustls::ClientConfig>,
    /// The admin listener's address (`None`: no admin listener).
    pub admin: Option<SocketAddr>,
    /// The built-in playground backend (`--demo`) dials the one backend link, a reverse
    /// WebSocket on loopback that only it knows the token of.
    pub demo: bool,
    /// The translation inspector on the admin listener (on with `--demo`).
    pub inspector: bool,
    /// Threads of the async runtime that serves every link, bot and listener.
    pub worker_threads: usize,
}

/// The async runtime's threads unless configured: one. A backend link's events are read,
/// translated and delivered by tasks that hand each event from one to the next; on one thread
/// each hand-off is a function call, across two a wake-up of the other core, and the memory an
/// event was allocated in is freed from the other core's cache. On the 2-core machine the load
/// bench runs on, one thread did more with less CPU on the event paths: `--ephemeral` events 12 %
/// less CPU at the same rate, the disk store 3–15 % more events/s at 17 % less, fan-out to 10
/// bots 24–40 % more events/s; `send_group_msg` 6 % fewer calls/s at 15 % less CPU a call (a
/// call's request and its answer no longer overlap on two cores; docs/performance.md). The id
/// store's folder and syncer, and file work, have threads of their own besides. More threads
/// serve more busy links or accounts at once.
pub const DEFAULT_WORKER_THREADS: usize = 1;
/// The most threads the runtime is given.
pub const MAX_WORKER_THREADS: usize = 256;

impl Config {
    /// Every token and secret the configuration holds, for the inspector to keep out of sight.
    pub fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        all.extend(self.backends.iter().flat_map(|b| b.token.iter().chain(b.secret.iter())).cloned());
        all.extend(self.ws_servers.iter().filter_map(|s| s.token.clone()));
        all.extend(self.http_servers.iter().filter_map(|s| s.token.clone()));
        all.extend(self.http_posts.iter().filter_map(|p| p.secret.clone()));
        all.extend(self.ws_reverse.iter().filter_map(|r| r.token.clone()));
        if let StoreConfig::Redis { url, .. } = &self.store {
            if let Some(password) = url::Url::parse(url).ok().and_then(|u| u.password().map(str::to_owned)) {
                all.push(password);
            }
        }
        all.retain(|s| !s.is_empty());
        all.sort();
        all.dedup();
        all
    }
}

/// A URL as it may be shown: without its password.
/// Where the bridge's own `/files/` URLs point: `media.public-url` when set, else the first HTTP
/// API server, else the first forward WebSocket server (both serve `/files/`); `None` when bots
/// have no port of the bridge's to fetch from.
pub fn files_base(public_url: Option<&str>, http: &[SocketAddr], ws: &[SocketAddr]) -> Option<String> {
    public_url.map(|u| u.trim_end_matches('/').to_owned()).or_else(|| http.first().or(ws.first()).map(|a| base_url(*a)))
}

/// `http://` and the address, an unspecified IP (listening on every interface) as loopback.
pub fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

pub fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// What `--demo` serves bots when nothing else is configured: go-cqhttp's default ports.
pub const DEMO_WS: &str = "127.0.0.1:8080";
pub const DEMO_HTTP: &str = "127.0.0.1:5700";
/// Where `--demo` serves its pages when `--admin` does not say.
pub const DEMO_ADMIN: &str = "127.0.0.1:5800";

/// The flag-side inputs that the file can also express (flags add to or override the file).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub backend_ws: Vec<String>,
    pub backend_http: Vec<String>,
    pub backend_webhook: Vec<String>,
    pub backend_ws_reverse: Vec<String>,
    pub backend_token: Option<String>,
    pub backend_ca_file: Option<PathBuf>,
    pub backend_tls_insecure: bool,
    pub backend_msgpack: bool,
    pub backend_protocol: Option<Protocol>,
    pub backend_secret: Option<String>,
    pub ws: Vec<String>,
    pub http: Vec<String>,
    pub http_post: Vec<String>,
    pub secret: Option<String>,
    pub ws_reverse: Vec<String>,
    pub ws_reverse_api: Option<String>,
    pub ws_reverse_event: Option<String>,
    pub ws_reverse_auth: Option<AuthScheme>,
    pub reconnect_interval_ms: Option<u64>,
    pub access_token: Option<String>,
    pub post_format: Option<PostFormat>,
    pub at_sender_default: Option<bool>,
    pub heartbeat_interval_ms: Option<u64>,
    pub action_timeout_ms: Option<u64>,
    pub slow_bot_wait_ms: Option<u64>,
    pub mappings: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// The data directory when neither the flags nor the file name one. The command line sets
    /// `./data`; without it (a library user, a test) the store stays in memory.
    pub default_data_dir: Option<PathBuf>,
    pub ephemeral: bool,
    pub retain_messages: Option<u64>,
    pub retain_days: Option<u64>,
    pub memory_store_bytes: Option<u64>,
    pub store_cache_bytes: Option<u64>,
    pub media_dirs: Vec<PathBuf>,
    pub backend_profile: Option<String>,
    pub report_self_message: Option<bool>,
    pub upload_mode: Option<UploadModeName>,
    pub media_urls: Option<IncomingModeName>,
    pub public_url: Option<String>,
    pub fragment_threshold: Option<u64>,
    pub max_file_size: Option<u64>,
    pub admin: Option<String>,
    pub max_message: Option<u64>,
    /// `--demo`: the built-in playground backend instead of a real one.
    pub demo: bool,
    /// `--inspector`: the translation inspector on the admin listener.
    pub inspector: bool,
    /// `--worker-threads N`: threads of the async runtime.
    pub worker_threads: Option<usize>,
    /// `--store URL`: Redis instead of the disk store.
    pub store: Option<String>,
    /// `--store-ca-file FILE`: the CA a `rediss://` store's certificate chains to.
    pub store_ca_file: Option<PathBuf>,
}

/// Parses `host:port` (an IP, or `localhost`) without touching the network.
pub fn parse_addr(s: &str) -> Result<SocketAddr, ConfigError> {
    let trimmed = s.trim();
    if let Ok(a) = trimmed.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(port) = trimmed.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    // A name other than localhost would need a DNS lookup before binding: refuse it clearly.
    Err(invalid(format!("{s:?} is not an address to listen on (want IP:PORT, e.g. 127.0.0.1:8080)")))
}

/// Parses a backend URL the bridge dials: `scheme` or its TLS twin (`wss`, `https`).
fn parse_backend_url(what: &str, s: &str, scheme: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(s.trim()).map_err(|e| invalid(format!("{what} {s:?}: {e}")))?;
    if u.scheme() == scheme || u.scheme() == format!("{scheme}s") {
        return Ok(u);
    }
    Err(invalid(format!("{what} {s:?}: scheme must be {scheme} or {scheme}s, not {}", u.scheme())))
}

/// Parses a URL the bridge dials toward a bot. TLS toward bots is not built in: `wss://` and
/// `https://` are refused with a hint (bots usually run beside the bridge).
fn parse_url(what: &str, s: &str, scheme: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(s.trim()).map_err(|e| invalid(format!("{what} {s:?}: {e}")))?;
    if u.scheme() == scheme {
        return Ok(u);
    }
    if u.scheme() == format!("{scheme}s") {
        return Err(invalid(format!(
            "{what} {s:?}: {scheme}s:// needs TLS, which this build does not include; use {scheme}:// (e.g. through a local TLS proxy)"
        )));
    }
    Err(invalid(format!("{what} {s:?}: scheme must be {scheme}, not {}", u.scheme())))
}

fn non_empty(token: Option<String>) -> Option<String> {
    token.filter(|t| !t.is_empty())
}

/// What one server's middlewares make it enforce.
struct Guards {
    token: Option<String>,
    filter: Option<Arc<FilterSlot>>,
    rate_limit: Option<RateLimit>,
}

fn guards(m: &Middlewares, flag_token: Option<String>, filters: &mut Filters) -> Result<Guards, ConfigError> {
    let filter = match m.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        Some(path) => Some(filters.slot(Path::new(path)).map_err(|e| invalid(format!("event filter {e}")))?),
        None => None,
    };
    let rate_limit = match &m.rate_limit {
        Some(r) if r.enabled => {
            let frequency = r.frequency.unwrap_or(1.0);
            if !(frequency.is_finite() && frequency > 0.0) {
                return Err(invalid(format!("rate-limit frequency must be a positive number, not {frequency}")));
            }
            Some(RateLimit { frequency, bucket: r.bucket.unwrap_or(1).max(1) })
        }
        _ => None,
    };
    Ok(Guards { token: flag_token.or_else(|| non_empty(m.access_token.clone())), filter, rate_limit })
}

impl Config {
    /// Merges the file (if any) with the flags and checks everything.
    pub fn resolve(mut file: FileConfig, flags: Overrides) -> Result<Config, ConfigError> {
        let ignored = std::mem::take(&mut file.ignored);
        let mappings_dir = flags.mappings.clone().or(file.bridge.mappings.clone());
        let mappings = match mappings_dir {
            Some(dir) => MappingSet::from_dir(&dir)?,
            None => MappingSet::embedded()?,
        };

        let action_timeout =
            Duration::from_millis(flags.action_timeout_ms.or(file.bridge.action_timeout).unwrap_or(30_000));
        if action_timeout.is_zero() {
            return Err(invalid("the action timeout must be above 0 ms"));
        }
        let store = resolve_store(&file.bridge, &file.store, &flags)?;
        let mut backends = resolve_backends(&file.backend, &flags)?;
        if flags.demo {
            if !backends.is_empty() {
                return Err(invalid(
                    "--demo brings its own backend: drop --backend-* and the config file's [backend] links, or drop --demo",
                ));
            }
            // A token of its own unless --backend-token gives one: only the playground dials it.
            let token = non_empty(flags.backend_token.clone())
                .unwrap_or_else(|| crate::core::media::hex(&rand::random::<[u8; 16]>()));
            backends.push(BackendLink {
                kind: BackendKind::WsReverse { addr: SocketAddr::from(([127, 0, 0, 1], 0)) },
                protocol: Protocol::V12,
                secret: None,
                upload: None,
                token: Some(token),
                msgpack: false,
                profile: None,
            });
        }
        let tls_options = crate::tls::TlsOptions {
            ca_file: flags.backend_ca_file.clone().or(file.backend.ca_file.clone()),
            insecure_skip_verify: flags.backend_tls_insecure || file.backend.tls_insecure_skip_verify,
        };
        // Built now, so a CA file that is missing or holds no certificate is a configuration
        // error rather than a failure at the first dial.
        let backend_tls = crate::tls::client_config(&tls_options).map_err(invalid)?;
        let global_format = flags.post_format.or(file.message.post_format).unwrap_or_default();
        // A server's own middlewares replace the defaults (as YAML anchors do in go-cqhttp);
        // `--access-token` overrides both tokens.
        let mut filters = Filters::default();
        let defaults = file.default_middlewares.clone();
        let flag_token = non_empty(flags.access_token.clone());
        let mut guards_of = |m: Option<&Middlewares>| guards(m.unwrap_or(&defaults), flag_token.clone(), &mut filters);

        let mut ws_servers = Vec::new();
        let mut http_servers = Vec::new();
        let mut http_posts = Vec::new();
        let mut ws_reverse = Vec::new();
        for entry in file.servers {
            match entry {
                ServerEntry::Ws(ws) if !ws.disabled => {
                    let g = guards_of(ws.middlewares.as_ref())?;
                    ws_servers.push(WsServer {
                        addr: parse_addr(&ws.address)?,
                        token: g.token,
                        post_format: ws.post_format.unwrap_or(global_format),
                        self_id: ws.self_id,
                        filter: g.filter,
                        rate_limit: g.rate_limit,
                    })
                }
                ServerEntry::Http(h) if !h.disabled => {
                    let g = guards_of(h.middlewares.as_ref())?;
                    if !h.address.trim().is_empty() {
                        let long_polling = match &h.long_polling {
                            Some(lp) if lp.enabled => Some(lp.max_queue_size.unwrap_or(2000).clamp(1, 100_000)),
                            _ => None,
                        };
                        http_servers.push(HttpServer {
                            addr: parse_addr(&h.address)?,
                            token: g.token.clone(),
                            post_format: h.post_format.unwrap_or(global_format),
                            self_id: h.self_id,
                            long_polling,
                            filter: g.filter.clone(),
                            rate_limit: g.rate_limit,
                        });
                    }
                    let timeout = Duration::from_secs(h.timeout.unwrap_or(5).max(5));
                    for p in h.post {
                        http_posts.push(HttpPost {
                            url: parse_url("http post URL", &p.url, "http")?,
                            secret: non_empty(p.secret).or_else(|| non_empty(flags.secret.clone())),
                            timeout,
                            max_retries: p.max_retries.unwrap_or(3).min(10),
                            retries_interval: Duration::from_millis(p.retries_interval.unwrap_or(1500)),
                            post_format: h.post_format.unwrap_or(global_format),
                            self_id: h.self_id,
                            filter: g.filter.clone(),
                        });
                    }
                }
                ServerEntry::WsReverse(r) if !r.disabled => {
                    let url = |v: Option<String>| -> Result<Option<url::Url>, ConfigError> {
                        match non_empty(v) {
                            Some(u) => parse_url("reverse WebSocket URL", &u, "ws").map(Some),
                            None => Ok(None),
                        }
                    };
                    let universal = url(r.universal)?;
                    // As go-cqhttp: a universal URL makes the API/Event ones unused.
                    let (api, event) = if universal.is_some() { (None, None) } else { (url(r.api)?, url(r.event)?) };
                    if universal.is_none() && api.is_none() && event.is_none() {
                        return Err(invalid("a ws-reverse entry needs `universal`, or `api` and/or `event`"));
                    }
                    let g = guards_of(r.middlewares.as_ref())?;
                    ws_reverse.push(WsReverse {
                        universal,
                        api,
                        event,
                        reconnect_interval: reconnect_interval(r.reconnect_interval.or(flags.reconnect_interval_ms)),
                        token: g.token,
                        auth_scheme: flags.ws_reverse_auth.or(r.auth_scheme).unwrap_or_default(),
                        post_format: r.post_format.unwrap_or(global_format),
                        self_id: r.self_id,
                        filter: g.filter,
                        rate_limit: g.rate_limit,
                    });
                }
                _ => {}
            }
        }
        // Endpoints given by flags take the default middlewares.
        let g = guards_of(None)?;
        let nothing_for_bots = ws_servers.is_empty()
            && http_servers.is_empty()
            && http_posts.is_empty()
            && ws_reverse.is_empty()
            && flags.ws.is_empty()
            && flags.http.is_empty()
            && flags.http_post.is_empty()
            && flags.ws_reverse.is_empty()
            && flags.ws_reverse_api.is_none()
            && flags.ws_reverse_event.is_none();
        let (flag_ws, flag_http) = if flags.demo && nothing_for_bots {
            (vec![DEMO_WS.to_owned()], vec![DEMO_HTTP.to_owned()])
        } else {
            (flags.ws.clone(), flags.http.clone())
        };
        for addr in &flag_ws {
            ws_servers.push(WsServer {
                addr: parse_addr(addr)?,
                token: g.token.clone(),
                post_format: global_format,
                self_id: None,
                filter: g.filter.clone(),
                rate_limit: g.rate_limit,
            });
        }
        for addr in &flag_http {
            http_servers.push(HttpServer {
                addr: parse_addr(addr)?,
                token: g.token.clone(),
                post_format: global_format,
                self_id: None,
                long_polling: None,
                filter: g.filter.clone(),
                rate_limit: g.rate_limit,
            });
        }
        for url in &flags.http_post {
            http_posts.push(HttpPost {
                url: parse_url("--http-post", url, "http")?,
                secret: non_empty(flags.secret.clone()),
                timeout: Duration::from_secs(5),
                max_retries: 3,
                retries_interval: Duration::from_millis(1500),
                post_format: global_format,
                self_id: None,
                filter: g.filter.clone(),
            });
        }
        let reverse_flag = |universal, api, event| -> WsReverse {
            WsReverse {
                universal,
                api,
                event,
                reconnect_interval: reconnect_interval(flags.reconnect_interval_ms),
                token: g.token.clone(),
                auth_scheme: flags.ws_reverse_auth.unwrap_or_default(),
                post_format: global_format,
                self_id: None,
                filter: g.filter.clone(),
                rate_limit: g.rate_limit,
            }
        };
        for url in &flags.ws_reverse {
            ws_reverse.push(reverse_flag(Some(parse_url("--ws-reverse", url, "ws")?), None, None));
        }
        if flags.ws_reverse_api.is_some() || flags.ws_reverse_event.is_some() {
            let api = flags.ws_reverse_api.as_deref().map(|u| parse_url("--ws-reverse-api", u, "ws")).transpose()?;
            let event =
                flags.ws_reverse_event.as_deref().map(|u| parse_url("--ws-reverse-event", u, "ws")).transpose()?;
            ws_reverse.push(reverse_flag(None, api, event));
        }

        let heartbeat = match (flags.heartbeat_interval_ms, file.heartbeat) {
            (Some(0), _) => None,
            (Some(ms), _) => Some(Duration::from_millis(ms)),
            (None, h) if h.disabled || h.interval.is_some_and(|i| i < 0) => None,
            (None, h) => Some(Duration::from_secs(h.interval.filter(|i| *i > 0).unwrap_or(5) as u64)),
        };

        if backends.is_empty() {
            return Err(invalid(
                "no backend: give --backend-ws URL, --backend-http URL or --backend-ws-reverse ADDR (or a [backend] entry in the config file)",
            ));
        }
        if ws_servers.is_empty() && http_servers.is_empty() && http_posts.is_empty() && ws_reverse.is_empty() {
            return Err(invalid(
                "no v11 endpoint: give --ws ADDR, --http ADDR, --http-post URL or --ws-reverse URL (or a [[servers]] entry in the config file)",
            ));
        }
        let admin = match flags.admin.as_deref().or(file.bridge.admin.as_deref()) {
            Some(a) if !a.trim().is_empty() => Some(parse_addr(a)?),
            _ if flags.demo => Some(parse_addr(DEMO_ADMIN)?),
            _ => None,
        };
        let worker_threads = flags.worker_threads.or(file.bridge.worker_threads).unwrap_or(DEFAULT_WORKER_THREADS);
        if !(1..=MAX_WORKER_THREADS).contains(&worker_threads) {
            return Err(invalid(format!("worker-threads {worker_threads}: give 1 to {MAX_WORKER_THREADS}")));
        }
        let inspector = flags.demo || flags.inspector || file.bridge.inspector;
        if inspector && admin.is_none() {
            return Err(invalid("the inspector is served on the admin listener: give --admin ADDR too"));
        }
        let mut seen = std::collections::HashSet::new();
        let listening = admin.into_iter().chain(
            ws_servers.iter().map(|s| s.addr).chain(http_servers.iter().map(|s| s.addr)).chain(
                backends.iter().filter_map(|b| match &b.kind {
                    BackendKind::WsReverse { addr } => Some(*addr),
                    BackendKind::Http { webhook, .. } => *webhook,
                    BackendKind::Ws { .. } => None,
                }),
            ),
        );
        for addr in listening {
            if addr.port() != 0 && !seen.insert(addr) {
                return Err(invalid(format!("{addr} is configured twice")));
            }
        }
        let mut limits = Limits::default();
        if let Some(bytes) = flags.max_message.or(file.bridge.max_message) {
            if !(MIN_MAX_MESSAGE..=MAX_MAX_MESSAGE).contains(&bytes) {
                return Err(invalid(format!(
                    "max-message must be {MIN_MAX_MESSAGE}..={MAX_MAX_MESSAGE} bytes (64 KiB to 64 MiB), not {bytes}"
                )));
            }
            limits.max_message = bytes as usize;
        }
        if let Some(ms) = flags.slow_bot_wait_ms.or(file.bridge.slow_bot_wait) {
            if ms > MAX_SLOW_BOT_WAIT_MS {
                return Err(invalid(format!("slow-bot-wait must be 0..={MAX_SLOW_BOT_WAIT_MS} ms, not {ms}")));
            }
            limits.slow_bot_wait = Duration::from_millis(ms);
        }
        let media = resolve_media(&file.media, &flags, &limits)?;
        let profile = flags.backend_profile.clone().or(file.backend.profile.clone()).filter(|p| !p.is_empty());
        for p in profile.iter().chain(backends.iter().filter_map(|b| b.profile.as_ref())) {
            if !mappings.contains(p) {
                let known: Vec<&String> = mappings.iter().map(|(n, _)| n).collect();
                return Err(invalid(format!("backend profile {p:?} does not exist (there are {known:?})")));
            }
        }
        Ok(Config {
            store,
            backends,
            ws_servers,
            http_servers,
            http_posts,
            ws_reverse,
            heartbeat,
            action_timeout,
            at_sender_default: flags.at_sender_default.or(file.message.at_sender_default).unwrap_or(false),
            profile,
            report_self_message: flags.report_self_message.or(file.message.report_self_message).unwrap_or(false),
            remove_reply_at: file.message.remove_reply_at.unwrap_or(false),
            extra_reply_data: file.message.extra_reply_data.unwrap_or(false),
            mappings: Arc::new(mappings),
            limits,
            media,
            log_level: file.log_level,
            ignored,
            filters,
            backend_tls,
            admin,
            demo: flags.demo,
            inspector,
            worker_threads,
        })
    }
}

fn resolve_media(file: &MediaSection, flags: &Overrides, limits: &Limits) -> Result<MediaConfig, ConfigError> {
    use crate::core::media::{IncomingMode, MediaOptions, UploadMode};
    let mut allowed_dirs = Vec::new();
    for dir in file.allowed_dirs.iter().chain(&flags.media_dirs) {
        let canonical = std::fs::canonicalize(dir)
            .map_err(|e| invalid(format!("media allowed directory {}: {e}", dir.display())))?;
        if !canonical.is_dir() {
            return Err(invalid(format!("media allowed directory {} is not a directory", dir.display())));
        }
        allowed_dirs.push(canonical);
    }
    let defaults = MediaOptions::default();
    // A fragment travels base64-encoded inside one JSON request; unset, it is the default or
    // the largest that fits a smaller max-message.
    let largest_fragment = (limits.max_message as u64 - 4096) / 4 * 3;
    let fragment_size = file.fragment_size.unwrap_or((defaults.fragment_size as u64).min(largest_fragment));
    if fragment_size == 0 || fragment_size > largest_fragment {
        return Err(invalid(format!("media fragment-size must be 1..={largest_fragment} bytes")));
    }
    let max_file_size = flags.max_file_size.or(file.max_file_size).unwrap_or(defaults.max_file_size);
    if max_file_size == 0 {
        return Err(invalid("media max-file-size must be above 0"));
    }
    let public_url = flags.public_url.clone().or(file.public_url.clone()).filter(|u| !u.trim().is_empty());
    if let Some(u) = &public_url {
        let parsed = url::Url::parse(u).map_err(|e| invalid(format!("media public-url {u:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(format!("media public-url {u:?}: must be an http:// or https:// URL")));
        }
    }
    let options = MediaOptions {
        upload: match flags.upload_mode.or(file.upload) {
            Some(UploadModeName::Path) => UploadMode::Path,
            _ => UploadMode::Data,
        },
        incoming: match flags.media_urls.or(file.urls) {
            Some(IncomingModeName::Serve) => IncomingMode::Serve,
            _ => IncomingMode::Resolve,
        },
        fragment_threshold: flags.fragment_threshold.or(file.fragment_threshold).unwrap_or(defaults.fragment_threshold),
        fragment_size: fragment_size as usize,
        max_file_size,
        transfer_timeout: file.transfer_timeout.map(Duration::from_secs).unwrap_or(defaults.transfer_timeout),
        reuse_for: file.reuse_uploads.map(Duration::from_secs).unwrap_or(defaults.reuse_for),
        ..defaults
    };
    if options.transfer_timeout.is_zero() {
        return Err(invalid("media transfer-timeout must be above 0 s"));
    }
    Ok(MediaConfig {
        options,
        allowed_dirs,
        cache_dir: file.cache_dir.clone(),
        cache_max_bytes: file.cache_max_bytes.unwrap_or(1 << 30),
        public_url,
    })
}

fn resolve_store(file: &BridgeSection, shared: &StoreSection, flags: &Overrides) -> Result<StoreConfig, ConfigError> {
    let max_messages = flags.retain_messages.or(file.retain_messages).unwrap_or(1_000_000);
    if max_messages == 0 {
        return Err(invalid("retain-messages must be at least 1"));
    }
    let bytes = |name: &str, value: Option<u64>, default: usize| -> Result<usize, ConfigError> {
        let Some(value) = value else { return Ok(default) };
        if value < MIN_STORE_BYTES as u64 {
            return Err(invalid(format!("{name} must be at least {MIN_STORE_BYTES} (1 MiB)")));
        }
        Ok(usize::try_from(value).unwrap_or(usize::MAX))
    };
    let max_bytes = bytes(
        "memory-store-bytes",
        flags.memory_store_bytes.or(file.memory_store_bytes),
        crate::core::ids::DEFAULT_MEMORY_STORE_BYTES,
    )?;
    let cache_bytes = bytes(
        "store-cache-bytes",
        flags.store_cache_bytes.or(file.store_cache_bytes),
        crate::store::disk::DEFAULT_CACHE_BYTES,
    )?;
    let in_memory =
        StoreConfig::Memory { max_messages: usize::try_from(max_messages).unwrap_or(usize::MAX), max_bytes };
    let days = flags.retain_days.or(file.retain_days).unwrap_or(30);
    if days == 0 {
        return Err(invalid("retain-days must be at least 1"));
    }
    let retention = crate::store::Retention {
        max_messages,
        max_age: Duration::from_secs(days.saturating_mul(24 * 3600)),
        ..Default::default()
    };
    let url = flags.store.as_deref().or(shared.url.as_deref()).map(str::trim).filter(|u| !u.is_empty());
    let ca_file = flags.store_ca_file.clone().or(shared.ca_file.clone());
    if let Some(url) = url {
        let parsed = url::Url::parse(url).map_err(|e| invalid(format!("store {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(invalid(format!(
                "store {url:?}: give a redis:// or rediss:// URL (ids are on disk by default, in memory with --ephemeral)"
            )));
        }
        if flags.ephemeral || file.ephemeral {
            return Err(invalid("--ephemeral and a shared store (--store) exclude each other"));
        }
        check_store_tls(&parsed, ca_file.as_deref())?;
        return Ok(StoreConfig::Redis { url: url.to_owned(), retention, ca_file });
    }
    if let Some(path) = ca_file {
        return Err(invalid(format!(
            "a store CA file ({}, from --store-ca-file or [store] ca-file) needs a rediss:// store URL (--store or [store] url)",
            path.display()
        )));
    }
    // The playground's chats live in memory: ids kept on disk would outlive the messages.
    let demo_in_memory = flags.demo && flags.data_dir.is_none() && file.data_dir.is_none();
    if flags.ephemeral || file.ephemeral || demo_in_memory {
        return Ok(in_memory);
    }
    let dir = flags.data_dir.clone().or(file.data_dir.clone()).or(flags.default_data_dir.clone());
    let Some(dir) = dir else { return Ok(in_memory) };
    Ok(StoreConfig::Disk { dir, retention, cache_bytes })
}

/// A Redis URL's TLS settings: a CA file only for `rediss://`, and read now (a file that is
/// missing or holds no certificate fails here, not at start-up); `#insecure` (no certificate
/// check) is the one fragment the client knows, and a CA file beside it would be ignored.
fn check_store_tls(url: &url::Url, ca_file: Option<&Path>) -> Result<(), ConfigError> {
    let shown = redacted_url(url.as_str());
    let insecure = match url.fragment() {
        None => false,
        Some("insecure") if url.scheme() == "rediss" => true,
        Some(other) => {
            return Err(invalid(format!(
                "store {shown}: #{other} is not a store URL option (only rediss://…#insecure, for test setups)"
            )))
        }
    };
    let Some(path) = ca_file else { return Ok(()) };
    if url.scheme() != "rediss" {
        return Err(invalid(format!(
            "store {shown}: a CA file ({}) is for TLS: use a rediss:// URL, or drop --store-ca-file / [store] ca-file",
            path.display()
        )));
    }
    if insecure {
        return Err(invalid(format!(
            "store {shown}: #insecure checks no certificate, so the CA file {} would not be used: drop one of them",
            path.display()
        )));
    }
    crate::tls::read_ca_file(path).map(drop).map_err(|e| invalid(format!("store {shown}: {e}")))
}

/// go-cqhttp's reverse-WS `reconnect-interval`: milliseconds, 0 or absent means 5000.
fn reconnect_interval(ms: Option<u64>) -> Duration {
    Duration::from_millis(ms.filter(|ms| *ms > 0).unwrap_or(5000))
}

fn resolve_backends(file: &BackendSection, flags: &Overrides) -> Result<Vec<BackendLink>, ConfigError> {
    let default_token = non_empty(flags.backend_token.clone().or(file.access_token.clone()));
    let msgpack_default = flags.backend_msgpack || file.msgpack;
    let protocol_default = flags.backend_protocol.or(file.protocol).unwrap_or_default();
    let link = |kind, token: &Option<String>, msgpack: Option<bool>, protocol: Option<Protocol>| BackendLink {
        kind,
        protocol: protocol.unwrap_or(protocol_default),
        secret: None,
        upload: None,
        token: non_empty(token.clone()).or_else(|| default_token.clone()),
        msgpack: msgpack.unwrap_or(msgpack_default),
        profile: None,
    };
    let mut backends = Vec::new();
    let with_profile = |mut l: BackendLink, profile: &Option<String>, upload: Option<UploadModeName>| {
        l.profile = profile.clone().filter(|p| !p.is_empty());
        l.upload = upload.map(|u| match u {
            UploadModeName::Data => crate::core::media::UploadMode::Data,
            UploadModeName::Path => crate::core::media::UploadMode::Path,
        });
        l
    };
    for e in &file.ws {
        let kind = BackendKind::Ws { url: parse_backend_url("backend URL", &e.url, "ws")? };
        backends.push(with_profile(link(kind, &e.access_token, e.msgpack, e.protocol), &e.profile, e.upload));
    }
    for e in &file.http {
        let webhook = e.webhook.as_deref().map(parse_addr).transpose()?;
        let kind = BackendKind::Http { url: parse_backend_url("backend HTTP URL", &e.url, "http")?, webhook };
        let mut l = with_profile(link(kind, &e.access_token, e.msgpack, e.protocol), &e.profile, e.upload);
        l.secret = non_empty(e.secret.clone());
        backends.push(l);
    }
    for e in &file.ws_reverse {
        let kind = BackendKind::WsReverse { addr: parse_addr(&e.address)? };
        backends.push(with_profile(link(kind, &e.access_token, e.msgpack, e.protocol), &e.profile, e.upload));
    }
    for url in &flags.backend_ws {
        backends.push(link(BackendKind::Ws { url: parse_backend_url("--backend-ws", url, "ws")? }, &None, None, None));
    }
    if flags.backend_webhook.len() > flags.backend_http.len() {
        return Err(invalid("each --backend-webhook pairs with the --backend-http of the same position; there are more webhooks than HTTP links"));
    }
    for (i, url) in flags.backend_http.iter().enumerate() {
        let webhook = flags.backend_webhook.get(i).map(|a| parse_addr(a)).transpose()?;
        let mut l = link(
            BackendKind::Http { url: parse_backend_url("--backend-http", url, "http")?, webhook },
            &None,
            None,
            None,
        );
        l.secret = non_empty(flags.backend_secret.clone());
        backends.push(l);
    }
    for addr in &flags.backend_ws_reverse {
        backends.push(link(BackendKind::WsReverse { addr: parse_addr(addr)? }, &None, None, None));
    }
    for l in &backends {
        if l.protocol != Protocol::V11 {
            if l.secret.is_some() {
                return Err(invalid(
                    "a backend secret signs a OneBot v11 implementation's HTTP POST; a v12 webhook is checked by the access token",
                ));
            }
            continue;
        }
        if l.msgpack {
            return Err(invalid("a backend link with protocol v11 speaks JSON: OneBot v11 has no MessagePack"));
        }
        if matches!(l.kind, BackendKind::Http { webhook: None, .. }) {
            return Err(invalid(
                "a v11 HTTP backend link needs a webhook address for the implementation's HTTP POST (v11 has no get_latest_events)",
            ));
        }
    }
    Ok(backends)
}

/// What a resolved configuration will serve and dial, one line each, for `--check` and the
/// start-up log. Tokens and secrets are never shown, only whether one is set.
impl Config {
    pub fn summary(&self) -> Vec<String> {
        fn guarded(token: &Option<String>) -> &'static str {
            if token.is_some() {
                ", access token required"
            } else {
                ""
            }
        }
        fn format_name(format: PostFormat) -> &'static str {
            match format {
                PostFormat::String => "string",
                PostFormat::Array => "array",
            }
        }
        fn account(self_id: Option<i64>) -> String {
            self_id.map(|id| format!(", account {id}")).unwrap_or_default()
        }
        let mut lines = Vec::new();
        for link in &self.backends {
            let encoding = if link.msgpack { "MessagePack" } else { "JSON" };
            lines.push(match &link.kind {
                BackendKind::WsReverse { .. } if self.demo => {
                    "backend: the playground, a built-in v12 implementation (it dials a reverse WebSocket on loopback)"
                        .to_owned()
                }
                BackendKind::Ws { url } if link.protocol == Protocol::V11 => {
                    format!("backend: dial v11 forward WebSocket {url} (NapCat, LLBot, Lagrange.OneBot and the like)")
                }
                BackendKind::Ws { url } => format!("backend: dial v12 forward WebSocket {url} ({encoding})"),
                BackendKind::Http { url, webhook: Some(addr) } if link.protocol == Protocol::V11 => {
                    let signed = if link.secret.is_some() { ", X-Signature required" } else { "" };
                    format!("backend: v11 HTTP API {url}, its HTTP POST received on {addr}{signed}")
                }
                BackendKind::Http { url, webhook: Some(addr) } => {
                    format!("backend: v12 HTTP {url} ({encoding}), webhook received on {addr}")
                }
                BackendKind::Http { url, webhook: None } => {
                    format!("backend: v12 HTTP {url} ({encoding}), events by get_latest_events polling")
                }
                BackendKind::WsReverse { addr } if link.protocol == Protocol::V11 => {
                    format!("backend: accept v11 reverse WebSocket on {addr} (Universal)")
                }
                BackendKind::WsReverse { addr } => {
                    format!("backend: accept v12 reverse WebSocket on {addr} (v11 too when the handshake says so)")
                }
            });
        }
        for s in &self.ws_servers {
            lines.push(format!(
                "bots: v11 forward WebSocket on {} ({} messages{}{})",
                s.addr,
                format_name(s.post_format),
                guarded(&s.token),
                account(s.self_id)
            ));
        }
        for s in &self.http_servers {
            let polling = s.long_polling.map(|n| format!(", long polling (queue {n})")).unwrap_or_default();
            lines.push(format!("bots: v11 HTTP API on {}{polling}{}{}", s.addr, guarded(&s.token), account(s.self_id)));
        }
        for p in &self.http_posts {
            let signed = if p.secret.is_some() { ", signed" } else { "" };
            lines.push(format!("bots: v11 HTTP POST to {}{signed}{}", p.url, account(p.self_id)));
        }
        for r in &self.ws_reverse {
            let urls: Vec<String> = [("universal", &r.universal), ("api", &r.api), ("event", &r.event)]
                .into_iter()
                .filter_map(|(role, url)| url.as_ref().map(|u| format!("{role} {u}")))
                .collect();
            lines.push(format!("bots: v11 reverse WebSocket to {}{}", urls.join(", "), account(r.self_id)));
        }
        lines.push(match &self.store {
            StoreConfig::Memory { max_bytes, .. } => {
                let why = if self.demo { "--demo without --data-dir" } else { "--ephemeral" };
                format!("ids: in memory only ({why}), up to {} MiB of messages", max_bytes >> 20)
            }
            StoreConfig::Disk { dir, .. } => format!("ids: on disk in {}", dir.join("bridge.redb").display()),
            StoreConfig::Redis { url, ca_file, .. } => {
                let insecure = url::Url::parse(url).is_ok_and(|u| u.fragment() == Some("insecure"));
                let tls = match (ca_file, insecure) {
                    (Some(path), _) => format!(", TLS trusting only the CA file {}", path.display()),
                    (None, true) => ", TLS certificate NOT verified (#insecure: test setups only)".to_owned(),
                    (None, false) => String::new(),
                };
                format!("ids: on Redis at {}{tls}", redacted_url(url))
            }
        });
        let http: Vec<SocketAddr> = self.http_servers.iter().map(|s| s.addr).collect();
        let ws: Vec<SocketAddr> = self.ws_servers.iter().map(|s| s.addr).collect();
        let served = files_base(self.media.public_url.as_deref(), &http, &ws);
        // A v12 backend's received files come as `file_id`s the bridge gives URLs to; v11
        // backends (NapCat & co.) put a URL in every picture themselves.
        if self.backends.iter().any(|b| b.protocol == Protocol::V12) {
            lines.push(match served {
                Some(base) => format!("files: the bridge's own picture URLs are {base}/files/…"),
                None => "files: no port for bots to fetch the bridge's own picture URLs from (--http or --public-url)"
                    .to_owned(),
            });
        }
        let threads = self.worker_threads;
        lines.push(format!("runtime: {threads} worker thread{}", if threads == 1 { "" } else { "s" }));
        if let Some(addr) = self.admin {
            lines.push(format!("admin: /health, /ready and /metrics on {addr}"));
            if self.inspector {
                lines.push(format!("inspector: http://{addr}/inspector/"));
            }
            if self.demo {
                lines.push(format!("playground: open http://{addr}/playground/ to chat with the bot"));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Overrides {
        Overrides {
            backend_ws: vec!["ws://127.0.0.1:8844".into()],
            ws: vec!["127.0.0.1:8080".into()],
            ..Default::default()
        }
    }

    #[test]
    fn max_message_comes_from_the_flag_or_the_file_within_its_range() {
        assert_eq!(Config::resolve(FileConfig::default(), flags()).unwrap().limits.max_message, 16 << 20);
        let file: FileConfig = toml::from_str("[bridge]\nmax-message = 33554432").unwrap();
        assert_eq!(Config::resolve(file, flags()).unwrap().limits.max_message, 32 << 20);
        let file: FileConfig = toml::from_str("[bridge]\nmax-message = 33554432").unwrap();
        let flag = Overrides { max_message: Some(1 << 20), ..flags() };
        assert_eq!(Config::resolve(file, flag).unwrap().limits.max_message, 1 << 20, "the flag wins");
        for bad in [1024, (64 << 20) + 1] {
            let err = Config::resolve(FileConfig::default(), Overrides { max_message: Some(bad), ..flags() });
            assert!(err.unwrap_err().to_string().contains("max-message"), "{bad}");
        }
    }

    #[test]
    fn the_slow_bot_wait_comes_from_the_flag_or_the_file_within_its_range() {
        let wait = |file: &str, flag: Option<u64>| {
            let file: FileConfig = toml::from_str(file).unwrap();
            Config::resolve(file, Overrides { slow_bot_wait_ms: flag, ..flags() }).map(|c| c.limits.slow_bot_wait)
        };
        assert_eq!(wait("", None).unwrap(), crate::fanout::PATIENCE);
        assert_eq!(wait("[bridge]\nslow-bot-wait = 0", None).unwrap(), Duration::ZERO, "0: drop at once");
        assert_eq!(
            wait("[bridge]\nslow-bot-wait = 0", Some(1500)).unwrap(),
            Duration::from_millis(1500),
            "the flag wins"
        );
        let err = wait("", Some(MAX_SLOW_BOT_WAIT_MS + 1)).unwrap_err().to_string();
        assert!(err.contains("slow-bot-wait"), "{err}");
    }

    #[test]
    fn the_admin_listener_is_off_unless_a_flag_or_the_file_names_it() {
        let c = Config::resolve(FileConfig::default(), flags()).unwrap();
        assert_eq!(c.admin, None);
        assert!(!c.summary().iter().any(|l| l.starts_with("admin")));
        let file: FileConfig = toml::from_str("[bridge]\nadmin = \"127.0.0.1:9100\"").unwrap();
        let c = Config::resolve(file, flags()).unwrap();
        assert_eq!(c.admin, Some("127.0.0.1:9100".parse().unwrap()));
        assert!(c.summary().contains(&"admin: /health, /ready and /metrics on 127.0.0.1:9100".to_owned()));
        // The flag wins over the file; go-cqhttp's YAML carries the same `bridge` section.
        let (file, _) = gocqhttp::read("bridge:\n  admin: 127.0.0.1:9100\n", |_| None).unwrap();
        let c = Config::resolve(file, Overrides { admin: Some("127.0.0.1:9200".into()), ..flags() }).unwrap();
        assert_eq!(c.admin, Some("127.0.0.1:9200".parse().unwrap()));
        // Never a port bots use, and an address to listen on.
        let clash = Overrides { admin: Some("127.0.0.1:8080".into()), ..flags() };
        assert!(Config::resolve(FileConfig::default(), clash).unwrap_err().to_string().contains("configured twice"));
        let named = Overrides { admin: Some("example.org:9100".into()), ..flags() };
        assert!(Config::resolve(FileConfig::default(), named).is_err());
    }

    #[test]
    fn demo_brings_its_backend_go_cqhttp_ports_the_pages_and_memory_ids() {
        let demo = || Overrides { demo: true, default_data_dir: Some(PathBuf::from("data")), ..Default::default() };
        let c = Config::resolve(FileConfig::default(), demo()).unwrap();
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.backends[0].kind, BackendKind::WsReverse { addr: "127.0.0.1:0".parse().unwrap() });
        let token = c.backends[0].token.clone().unwrap();
        assert_eq!(token.len(), 32, "a random token only the playground knows");
        assert_ne!(Config::resolve(FileConfig::default(), demo()).unwrap().backends[0].token, Some(token));
        assert_eq!(c.ws_servers[0].addr, DEMO_WS.parse().unwrap());
        assert_eq!(c.http_servers[0].addr, DEMO_HTTP.parse().unwrap());
        assert_eq!(c.admin, Some(DEMO_ADMIN.parse().unwrap()));
        assert!(c.demo && c.inspector);
        assert!(matches!(c.store, StoreConfig::Memory { .. }), "{:?}", c.store);
        assert!(c.summary().iter().any(|l| l.contains("/playground/")), "{:?}", c.summary());
        // What the user gives wins: endpoints, the admin address, a data directory, the token.
        let c = Config::resolve(
            FileConfig::default(),
            Overrides {
                ws: vec!["127.0.0.1:9001".into()],
                admin: Some("127.0.0.1:9002".into()),
                data_dir: Some(PathBuf::from("d")),
                backend_token: Some("t".into()),
                ..demo()
            },
        )
        .unwrap();
        assert_eq!(c.ws_servers.len(), 1);
        assert!(c.http_servers.is_empty());
        assert_eq!(c.admin, Some("127.0.0.1:9002".parse().unwrap()));
        assert!(matches!(c.store, StoreConfig::Disk { .. }));
        assert_eq!(c.backends[0].token.as_deref(), Some("t"));
        // A real backend and the playground are one too many.
        let both = Overrides { backend_ws: vec!["ws://127.0.0.1:8844".into()], ..demo() };
        let refused = Config::resolve(FileConfig::default(), both).unwrap_err().to_string();
        assert!(refused.contains("--demo brings its own backend"), "{refused}");
    }

    #[test]
    fn a_redis_store_is_named_by_url_in_a_flag_or_the_file() {
        let c = Config::resolve(
            FileConfig::default(),
            Overrides { store: Some("redis://127.0.0.1:6379/0".into()), ..flags() },
        )
        .unwrap();
        let StoreConfig::Redis { url, retention, ca_file: None } = &c.store else { panic!("{:?}", c.store) };
        assert_eq!(url, "redis://127.0.0.1:6379/0");
        assert_eq!(retention.max_messages, 1_000_000);
        let file: FileConfig = toml::from_str("[store]\nurl = \"rediss://:pw-Xy7@cache.example:6380\"").unwrap();
        let c = Config::resolve(file, flags()).unwrap();
        assert!(matches!(c.store, StoreConfig::Redis { .. }));
        // Its password is a secret: never printed, masked by the inspector.
        assert!(
            c.summary().iter().any(|l| l.contains("ids: on Redis at rediss://:***@cache.example:6380")),
            "{:?}",
            c.summary()
        );
        assert!(c.secrets().contains(&"pw-Xy7".to_owned()));
        for (bad, why) in [("http://x", "redis:// or rediss://"), ("not a url", "store")] {
            let refused = Config::resolve(FileConfig::default(), Overrides { store: Some(bad.into()), ..flags() });
            assert!(refused.unwrap_err().to_string().contains(why), "{bad}");
        }
        let both = Overrides { store: Some("redis://127.0.0.1".into()), ephemeral: true, ..flags() };
        assert!(Config::resolve(FileConfig::default(), both).unwrap_err().to_string().contains("exclude each other"));
    }

    /// `[store] ca-file` / `--store-ca-file`: read when the configuration is, for `rediss://`
    /// only, never beside `#insecure`; each mistake names what to change, never the password.
    #[test]
    fn a_store_ca_file_is_checked_with_the_configuration() {
        let dir = std::env::temp_dir().join(format!("ob-store-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "no certificate here\n").unwrap();
        let store = |url: &str, ca_file: Option<&Path>| Overrides {
            store: Some(url.into()),
            store_ca_file: ca_file.map(Path::to_path_buf),
            ..flags()
        };
        let refused = |o: Overrides| Config::resolve(FileConfig::default(), o).unwrap_err().to_string();

        // The file, or the flag over it.
        let file: FileConfig =
            toml::from_str(&format!("[store]\nurl = \"rediss://:pw-Xy7@127.0.0.1:6380/\"\nca-file = {:?}", ca))
                .unwrap();
        let c = Config::resolve(file, flags()).unwrap();
        let StoreConfig::Redis { ca_file: Some(used), .. } = &c.store else { panic!("{:?}", c.store) };
        assert_eq!(used, &ca);
        let line =
            format!("ids: on Redis at rediss://:***@127.0.0.1:6380/, TLS trusting only the CA file {}", ca.display());
        assert!(c.summary().contains(&line), "{:?}", c.summary());
        let file: FileConfig = toml::from_str("[store]\nca-file = \"/nonexistent/file.pem\"").unwrap();
        let c = Config::resolve(file, store("rediss://127.0.0.1:6380/", Some(&ca))).unwrap();
        assert!(matches!(&c.store, StoreConfig::Redis { ca_file: Some(p), .. } if p == &ca), "{:?}", c.store);

        // A plain URL, no store at all, a file that is missing or holds no certificate.
        let plain = refused(store("redis://:pw-Xy7@127.0.0.1:6379/", Some(&ca)));
        assert!(plain.contains("use a rediss:// URL") && !plain.contains("pw-Xy7"), "{plain}");
        let alone = refused(Overrides { store_ca_file: Some(ca.clone()), ..flags() });
        assert!(alone.contains("needs a rediss:// store URL"), "{alone}");
        let missing = refused(store("rediss://127.0.0.1/", Some(&dir.join("missing.pem"))));
        assert!(missing.contains("CA file") && missing.contains("missing.pem"), "{missing}");
        let empty = refused(store("rediss://127.0.0.1/", Some(&not_pem)));
        assert!(empty.contains("not.pem: no PEM certificate"), "{empty}");

        // #insecure: alone it is allowed and shown; beside a CA file, or any other fragment, not.
        let c = Config::resolve(FileConfig::default(), store("rediss://127.0.0.1:6380/#insecure", None)).unwrap();
        assert!(c.summary().iter().any(|l| l.contains("certificate NOT verified")), "{:?}", c.summary());
        let both = refused(store("rediss://127.0.0.1:6380/#insecure", Some(&ca)));
        assert!(both.contains("#insecure") && both.contains("drop one"), "{both}");
        for odd in ["rediss://127.0.0.1/#verify", "redis://127.0.0.1/#insecure"] {
            assert!(refused(store(odd, None)).contains("not a store URL option"), "{odd}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `--check` says where the bridge's own picture URLs point, from the same rule the bridge
    /// follows (`files_base`), and says so when bots have no port to fetch them from.
    #[test]
    fn the_summary_says_where_served_files_are_fetched() {
        let files_line = |o: Overrides| {
            let config = Config::resolve(FileConfig::default(), o).unwrap();
            config.summary().into_iter().filter(|l| l.starts_with("files:")).collect::<Vec<_>>()
        };
        let at = |base: &str| vec![format!("files: the bridge's own picture URLs are {base}/files/…")];
        assert_eq!(files_line(flags()), at("http://127.0.0.1:8080"), "the forward WebSocket's port");
        let with_http = Overrides { http: vec!["0.0.0.0:5700".into()], ..flags() };
        assert_eq!(files_line(with_http), at("http://127.0.0.1:5700"), "the HTTP server first, as loopback");
        let public = Overrides { public_url: Some("https://bridge.example/".into()), ..flags() };
        assert_eq!(files_line(public), at("https://bridge.example"));
        let reverse_only = Overrides { ws: vec![], ws_reverse: vec!["ws://127.0.0.1:9/onebot".into()], ..flags() };
        let none = files_line(reverse_only);
        assert!(none.len() == 1 && none[0].contains("no port"), "{none:?}");
        let v11_backend = Overrides { backend_protocol: Some(Protocol::V11), ..flags() };
        assert!(files_line(v11_backend).is_empty(), "a v11 backend gives its own URLs");
    }

    #[test]
    fn the_runtime_has_one_thread_unless_told_and_a_bound() {
        let default = Config::resolve(FileConfig::default(), flags()).unwrap();
        assert_eq!(default.worker_threads, DEFAULT_WORKER_THREADS);
        assert!(default.summary().contains(&"runtime: 1 worker thread".to_owned()), "{:?}", default.summary());
        let three = || {
            let mut file = FileConfig::default();
            file.bridge.worker_threads = Some(3);
            file
        };
        assert_eq!(Config::resolve(three(), flags()).unwrap().worker_threads, 3);
        let flagged = Config::resolve(three(), Overrides { worker_threads: Some(2), ..flags() }).unwrap();
        assert_eq!(flagged.worker_threads, 2, "the flag wins");
        assert!(flagged.summary().contains(&"runtime: 2 worker threads".to_owned()));
        for refused in [0, MAX_WORKER_THREADS + 1] {
            let error = Config::resolve(FileConfig::default(), Overrides { worker_threads: Some(refused), ..flags() })
                .unwrap_err()
                .to_string();
            assert!(error.contains("worker-threads"), "{error}");
        }
    }

    #[test]
    fn the_inspector_needs_the_admin_listener_and_knows_every_secret() {
        let refused = Config::resolve(FileConfig::default(), Overrides { inspector: true, ..flags() });
        assert!(refused.unwrap_err().to_string().contains("give --admin"));
        let c = Config::resolve(
            FileConfig::default(),
            Overrides {
                inspector: true,
                admin: Some("127.0.0.1:9100".into()),
                access_token: Some("a".into()),
                backend_token: Some("b".into()),
                http_post: vec!["http://127.0.0.1:9/".into()],
                secret: Some("c".into()),
                ..flags()
            },
        )
        .unwrap();
        assert!(c.inspector && !c.demo);
        assert_eq!(c.secrets(), ["a", "b", "c"]);
        let file: FileConfig = toml::from_str("[bridge]\nadmin = \"127.0.0.1:9100\"\ninspector = true").unwrap();
        assert!(Config::resolve(file, flags()).unwrap().inspector);
    }

    #[test]
    fn flags_alone_make_a_config_with_go_cqhttp_defaults() {
        let c = Config::resolve(FileConfig::default(), flags()).unwrap();
        assert_eq!(c.ws_servers[0].post_format, PostFormat::String);
        assert_eq!(c.heartbeat, Some(Duration::from_secs(5)));
        assert_eq!(c.backends[0].kind, BackendKind::Ws { url: "ws://127.0.0.1:8844/".parse().unwrap() });
    }

    #[test]
    fn the_file_speaks_go_cqhttp() {
        let file: FileConfig = toml::from_str(
            r#"
            [backend]
            access-token = "b"
            ws = [{ url = "ws://127.0.0.1:1/" }]
            [message]
            post-format = "array"
            at-sender-default = true
            [heartbeat]
            interval = -1
            [default-middlewares]
            access-token = "t"
            [[servers]]
            ws = { address = "0.0.0.0:6700" }
            [[servers]]
            ws = { address = "127.0.0.1:6701", post-format = "string", middlewares = { access-token = "own" } }
            [[servers]]
            ws = { address = "127.0.0.1:6702", disabled = true }
            "#,
        )
        .unwrap();
        let c = Config::resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.backends[0].token.as_deref(), Some("b"));
        assert_eq!(c.heartbeat, None);
        assert!(c.at_sender_default);
        assert_eq!(c.ws_servers.len(), 2);
        assert_eq!((c.ws_servers[0].token.as_deref(), c.ws_servers[0].post_format), (Some("t"), PostFormat::Array));
        assert_eq!((c.ws_servers[1].token.as_deref(), c.ws_servers[1].post_format), (Some("own"), PostFormat::String));
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let err = |file: &str, o: Overrides| {
            let f: Result<FileConfig, _> = toml::from_str(file);
            match f {
                Err(e) => e.to_string(),
                Ok(f) => Config::resolve(f, o).unwrap_err().to_string(),
            }
        };
        assert!(err("", Overrides::default()).contains("no backend"));
        assert!(err("", Overrides { backend_ws: vec!["ws://x:1".into()], ..Default::default() })
            .contains("no v11 endpoint"));
        assert!(err("bogus = 1", flags()).contains("bogus"));
        assert!(err("[[servers]]\nhttp2 = { address = \"1.2.3.4:5\" }", flags()).contains("http2"));
        assert!(err("", Overrides { backend_ws: vec!["http://x:1".into()], ..flags() }).contains("scheme must be ws"));
        assert!(err("", Overrides { ws_reverse: vec!["wss://x:1".into()], ..flags() }).contains("needs TLS"));
        let missing_ca = Overrides { backend_ca_file: Some("/nonexistent/ca.pem".into()), ..flags() };
        assert!(err("", missing_ca).contains("CA file /nonexistent/ca.pem"));
        assert!(err("", Overrides { backend_webhook: vec!["127.0.0.1:1".into()], ..flags() }).contains("pairs with"));
        assert!(err("[[servers]]\nws-reverse = { reconnect-interval = 1 }", flags()).contains("needs `universal`"));
        assert!(err("", Overrides { ws: vec!["example.com:80".into()], ..flags() }).contains("not an address"));
        assert!(
            err("", Overrides { ws: vec!["127.0.0.1:9".into(), "127.0.0.1:9".into()], ..flags() }).contains("twice")
        );
        assert!(err("[message]\npost-format = \"xml\"", flags()).contains("xml"));
        assert!(err("", Overrides { memory_store_bytes: Some(1000), ..flags() }).contains("memory-store-bytes"));
        assert!(err("[bridge]\nstore-cache-bytes = 4096", flags()).contains("store-cache-bytes must be at least"));
        let v11 = Overrides { backend_protocol: Some(Protocol::V11), ..flags() };
        assert!(err("", Overrides { backend_msgpack: true, ..v11.clone() }).contains("no MessagePack"));
        assert!(err("[backend]\nprotocol = \"v13\"", flags()).contains("v13"));
        let http = "[[backend.http]]\nurl = \"http://127.0.0.1:5700\"\nprotocol = \"v11\"";
        assert!(err(http, Overrides { backend_ws: vec![], ..flags() }).contains("needs a webhook"));
        let signed_v12 =
            "[[backend.http]]\nurl = \"http://127.0.0.1:5700\"\nwebhook = \"127.0.0.1:5701\"\nsecret = \"s\"";
        assert!(err(signed_v12, Overrides { backend_ws: vec![], ..flags() }).contains("HTTP POST"));
    }

    /// A link speaks what it says, else what `[backend]` or the flag says, else v12.
    #[test]
    fn each_backend_link_speaks_its_own_protocol_or_the_default() {
        let file: FileConfig = toml::from_str(
            "[backend]\nprotocol = \"v11\"\n[[backend.ws]]\nurl = \"ws://127.0.0.1:3001\"\n\
             [[backend.ws]]\nurl = \"ws://127.0.0.1:8844\"\nprotocol = \"v12\"",
        )
        .unwrap();
        let c = Config::resolve(file, Overrides { backend_ws: vec![], ..flags() }).unwrap();
        assert_eq!(c.backends.iter().map(|b| b.protocol).collect::<Vec<_>>(), [Protocol::V11, Protocol::V12]);
        assert!(c.summary()[0].contains("dial v11 forward WebSocket ws://127.0.0.1:3001/"), "{:?}", c.summary());
        let c = Config::resolve(FileConfig::default(), flags()).unwrap();
        assert_eq!(c.backends[0].protocol, Protocol::V12);
        assert_eq!("11".parse::<Protocol>(), Ok(Protocol::V11));
        assert!("v13".parse::<Protocol>().is_err());
    }

    #[test]
    fn both_stores_are_bounded_by_default_and_the_file_or_flags_change_it() {
        let ephemeral = Overrides { ephemeral: true, ..flags() };
        let c = Config::resolve(FileConfig::default(), ephemeral.clone()).unwrap();
        assert_eq!(c.store, StoreConfig::Memory { max_messages: 1_000_000, max_bytes: 32 << 20 });
        let file: FileConfig =
            toml::from_str("[bridge]\nmemory-store-bytes = 2097152\nstore-cache-bytes = 8388608").unwrap();
        let c = Config::resolve(file, ephemeral).unwrap();
        assert_eq!(c.store, StoreConfig::Memory { max_messages: 1_000_000, max_bytes: 2 << 20 });
        let on_disk = Overrides { data_dir: Some("d".into()), store_cache_bytes: Some(8 << 20), ..flags() };
        match Config::resolve(FileConfig::default(), on_disk).unwrap().store {
            StoreConfig::Disk { cache_bytes, .. } => assert_eq!(cache_bytes, 8 << 20),
            other => panic!("{other:?}"),
        }
        let on_disk = Overrides { data_dir: Some("d".into()), ..flags() };
        match Config::resolve(FileConfig::default(), on_disk).unwrap().store {
            StoreConfig::Disk { cache_bytes, .. } => assert_eq!(cache_bytes, 4 << 20),
            other => panic!("{other:?}"),
        }
    }
}
