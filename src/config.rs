//! What connects to what: the configuration file, the flags, and their validated merge.
//!
//! The file is TOML in go-cqhttp's own vocabulary (`servers` entries named `ws`, keys such as
//! `address`, `middlewares.access-token`, `message.post-format`, `heartbeat.interval`), plus a
//! `[backend]` section for the v12 side and per-endpoint extras (`post-format`, `self-id`).
//! Unknown keys are errors. Everything is checked here, before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::core::v11::PostFormat;
use crate::core::Mappings;

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

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

// ---- the file, as written ----

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendSection {
    /// Token for every backend link that does not set its own.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Forward WebSocket links (the bridge dials the implementation).
    #[serde(default)]
    pub ws: Vec<BackendWsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BackendWsEntry {
    pub url: String,
    #[serde(default)]
    pub access_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MessageSection {
    #[serde(default)]
    pub post_format: Option<PostFormat>,
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
}

/// One `servers` entry: a single-key table naming the kind, as in go-cqhttp's config.yml.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum ServerEntry {
    Ws(WsServerEntry),
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
    /// Serve only this bot account (v11 self_id) on this endpoint.
    #[serde(default)]
    pub self_id: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BridgeSection {
    /// How long a v12 action may take before the bot gets a `BACKEND_TIMEOUT` failure (ms).
    #[serde(default)]
    pub action_timeout: Option<u64>,
    /// A directory that replaces the embedded mapping tables.
    #[serde(default)]
    pub mappings: Option<PathBuf>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), detail: e.to_string() })
    }
}

// ---- the validated configuration the bridge runs ----

/// A v12 link.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendLink {
    pub url: url::Url,
    pub token: Option<String>,
}

/// A v11 forward WebSocket endpoint the bridge serves.
#[derive(Debug, Clone, PartialEq)]
pub struct WsServer {
    pub addr: SocketAddr,
    pub token: Option<String>,
    pub post_format: PostFormat,
    pub self_id: Option<i64>,
}

/// Bounds on everything that comes over a wire.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message accepted or sent, bytes.
    pub max_message: usize,
    /// Events buffered per v11 connection before the oldest are dropped (and counted).
    pub event_queue: usize,
    /// Requests buffered toward one backend link before callers wait.
    pub request_queue: usize,
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
            request_queue: 256,
            actions_in_flight: 64,
            write_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub backends: Vec<BackendLink>,
    pub ws_servers: Vec<WsServer>,
    /// `None`: no v11 heartbeats.
    pub heartbeat: Option<Duration>,
    pub action_timeout: Duration,
    pub mappings: Arc<Mappings>,
    pub limits: Limits,
}

/// The flag-side inputs that the file can also express (flags add to or override the file).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub backend_ws: Vec<String>,
    pub backend_token: Option<String>,
    pub ws: Vec<String>,
    pub access_token: Option<String>,
    pub post_format: Option<PostFormat>,
    pub heartbeat_interval_ms: Option<u64>,
    pub action_timeout_ms: Option<u64>,
    pub mappings: Option<PathBuf>,
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

fn parse_ws_url(s: &str) -> Result<url::Url, ConfigError> {
    let u = url::Url::parse(s.trim()).map_err(|e| invalid(format!("backend URL {s:?}: {e}")))?;
    match u.scheme() {
        "ws" | "wss" => Ok(u),
        other => Err(invalid(format!("backend URL {s:?}: scheme must be ws or wss, not {other}"))),
    }
}

fn non_empty(token: Option<String>) -> Option<String> {
    token.filter(|t| !t.is_empty())
}

impl Config {
    /// Merges the file (if any) with the flags and checks everything.
    pub fn resolve(file: FileConfig, flags: Overrides) -> Result<Config, ConfigError> {
        let mappings_dir = flags.mappings.or(file.bridge.mappings);
        let mappings = match mappings_dir {
            Some(dir) => Mappings::from_dir(&dir)?,
            None => Mappings::embedded()?,
        };

        let default_backend_token = non_empty(flags.backend_token.clone().or(file.backend.access_token));
        let mut backends = Vec::new();
        for entry in file.backend.ws {
            let token = non_empty(entry.access_token).or_else(|| default_backend_token.clone());
            backends.push(BackendLink { url: parse_ws_url(&entry.url)?, token });
        }
        for url in &flags.backend_ws {
            backends.push(BackendLink { url: parse_ws_url(url)?, token: default_backend_token.clone() });
        }

        let global_format = flags.post_format.or(file.message.post_format).unwrap_or_default();
        let default_token = non_empty(file.default_middlewares.access_token.clone());
        let mut ws_servers = Vec::new();
        for entry in file.servers {
            match entry {
                ServerEntry::Ws(ws) if !ws.disabled => {
                    let token = match ws.middlewares {
                        Some(m) => non_empty(m.access_token),
                        None => default_token.clone(),
                    };
                    ws_servers.push(WsServer {
                        addr: parse_addr(&ws.address)?,
                        token: non_empty(flags.access_token.clone()).or(token),
                        post_format: ws.post_format.unwrap_or(global_format),
                        self_id: ws.self_id,
                    });
                }
                ServerEntry::Ws(_) => {}
            }
        }
        for addr in &flags.ws {
            ws_servers.push(WsServer {
                addr: parse_addr(addr)?,
                token: non_empty(flags.access_token.clone()).or_else(|| default_token.clone()),
                post_format: global_format,
                self_id: None,
            });
        }

        let heartbeat = match (flags.heartbeat_interval_ms, file.heartbeat) {
            (Some(0), _) => None,
            (Some(ms), _) => Some(Duration::from_millis(ms)),
            (None, h) if h.disabled || h.interval.is_some_and(|i| i < 0) => None,
            (None, h) => Some(Duration::from_secs(h.interval.filter(|i| *i > 0).unwrap_or(5) as u64)),
        };
        let action_timeout =
            Duration::from_millis(flags.action_timeout_ms.or(file.bridge.action_timeout).unwrap_or(30_000));
        if action_timeout.is_zero() {
            return Err(invalid("the action timeout must be above 0 ms"));
        }

        if backends.is_empty() {
            return Err(invalid("no backend: give --backend-ws URL (or [[backend.ws]] in the config file)"));
        }
        if ws_servers.is_empty() {
            return Err(invalid(
                "no v11 endpoint: give --ws ADDR (or a `ws` entry under [[servers]] in the config file)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &ws_servers {
            if s.addr.port() != 0 && !seen.insert(s.addr) {
                return Err(invalid(format!("{} is configured twice", s.addr)));
            }
        }
        Ok(Config {
            backends,
            ws_servers,
            heartbeat,
            action_timeout,
            mappings: Arc::new(mappings),
            limits: Limits::default(),
        })
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
    fn flags_alone_make_a_config_with_go_cqhttp_defaults() {
        let c = Config::resolve(FileConfig::default(), flags()).unwrap();
        assert_eq!(c.ws_servers[0].post_format, PostFormat::String);
        assert_eq!(c.heartbeat, Some(Duration::from_secs(5)));
        assert_eq!(c.backends[0].url.as_str(), "ws://127.0.0.1:8844/");
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
        assert!(err("", Overrides { ws: vec!["example.com:80".into()], ..flags() }).contains("not an address"));
        assert!(
            err("", Overrides { ws: vec!["127.0.0.1:9".into(), "127.0.0.1:9".into()], ..flags() }).contains("twice")
        );
        assert!(err("[message]\npost-format = \"xml\"", flags()).contains("xml"));
    }
}
