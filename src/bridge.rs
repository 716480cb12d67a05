//! Starting and stopping the whole bridge.
//!
//! [`Bridge::start`] binds every listener first (so a taken port fails before anything runs),
//! then starts the backend links and the v11 endpoints. [`Bridge::stop`] is the one shutdown
//! path: stop accepting, close every socket with a Close frame, wait for the rest within the
//! grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backends::link::{LinkHandle, Wire};
use crate::backends::v11::edge::Edge;
use crate::backends::v12::http_client::HttpCaller;
use crate::config::{BackendKind, Config, Protocol, StoreConfig};
use crate::core::media::SharedMediaCache;
use crate::core::{ImplementationClaim, InfoSource, MemoryIdStore, Options, Translator};
use crate::hub::Hub;
use crate::store::{DiskStore, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot open the id store: {0}")]
    Store(#[from] crate::core::ids::IdError),
    #[error("media directory {path}: {source}")]
    Media { path: std::path::PathBuf, source: std::io::Error },
}

/// The addresses the bridge listens on, in configuration order (useful with port 0).
#[derive(Debug, Clone, Default)]
pub struct Addrs {
    /// v11 forward WebSocket servers.
    pub ws: Vec<SocketAddr>,
    /// v11 HTTP API servers.
    pub http: Vec<SocketAddr>,
    /// v12 reverse WebSocket servers (the implementation dials these).
    pub backend_ws_reverse: Vec<SocketAddr>,
    /// v12 webhook receivers.
    pub backend_webhook: Vec<SocketAddr>,
    /// The admin listener (`/health`, `/ready`, `/metrics`), when configured.
    pub admin: Option<SocketAddr>,
}

/// A running bridge.
pub struct Bridge {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    addrs: Addrs,
    hub: Arc<Hub>,
    grace: std::time::Duration,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

impl Bridge {
    pub async fn start(config: Config) -> Result<Bridge, StartError> {
        // Bind everything first: a taken port fails before any connection is made.
        let mut addrs = Addrs::default();
        let admin_listener = match config.admin {
            Some(addr) => {
                let (l, a) = bind(addr).await?;
                addrs.admin = Some(a);
                Some(l)
            }
            None => None,
        };
        let mut ws_listeners = Vec::new();
        for server in &config.ws_servers {
            let (l, a) = bind(server.addr).await?;
            addrs.ws.push(a);
            ws_listeners.push(l);
        }
        let mut http_listeners = Vec::new();
        for server in &config.http_servers {
            let (l, a) = bind(server.addr).await?;
            addrs.http.push(a);
            http_listeners.push(l);
        }
        let mut backend_listeners = Vec::new();
        for backend in &config.backends {
            backend_listeners.push(match &backend.kind {
                BackendKind::WsReverse { addr } | BackendKind::Http { webhook: Some(addr), .. } => {
                    let (l, a) = bind(*addr).await?;
                    match backend.kind {
                        BackendKind::WsReverse { .. } => addrs.backend_ws_reverse.push(a),
                        _ => addrs.backend_webhook.push(a),
                    }
                    Some(l)
                }
                _ => None,
            });
        }

        let store = match &config.store {
            StoreConfig::Memory { max_messages, max_bytes } => {
                Store::Memory(Box::new(MemoryIdStore::new(*max_messages, *max_bytes)))
            }
            StoreConfig::Disk { dir, retention, cache_bytes } => {
                tracing::info!(dir = %dir.display(), "id store on disk");
                Store::Disk(DiskStore::open_with_cache(dir, *retention, *cache_bytes)?)
            }
            StoreConfig::Redis { url, retention, ca_file } => {
                tracing::info!(url = %crate::config::redacted_url(url), "id store on Redis");
                let prefix = crate::store::redis::DEFAULT_PREFIX;
                Store::Redis(
                    crate::store::redis::RedisStore::connect_with_ca(url, ca_file.as_deref(), prefix, *retention)
                        .await?,
                )
            }
        };
        let commit_times = match &store {
            Store::Disk(disk) => Some(disk.commit_times()),
            Store::Memory(_) | Store::Redis(_) => None,
        };
        // Replicas on one Redis sign `/files/` URLs with one key, so any of them serves a URL
        // another gave (and the key outlives restarts, as the disk store's file does).
        let (shared_key, shared_cache) = match &store {
            Store::Redis(redis) => (
                Some(redis.shared_media_key().await?),
                Some(Arc::new(redis.media_cache()) as Arc<dyn SharedMediaCache>),
            ),
            Store::Memory(_) | Store::Disk(_) => (None, None),
        };
        let (media, files) = media_setup(&config, shared_key)?;
        let options = Options {
            at_sender_default: config.at_sender_default,
            media,
            report_self_message: config.report_self_message,
            remove_reply_at: config.remove_reply_at,
            extra_reply_data: config.extra_reply_data,
        };
        let mut translator = Translator::new(config.mappings.clone(), store, options).with_local_files(Box::new(files));
        if let Some(cache) = shared_cache {
            translator = translator.with_shared_media_cache(cache);
        }
        let serve_base = crate::config::files_base(config.media.public_url.as_deref(), &addrs.http, &addrs.ws);
        translator.media.set_serve_base(serve_base);
        let mut hub = Hub::new(translator, config.limits.event_queue)
            .with_slow_bot_wait(config.limits.slow_bot_wait)
            .with_profile(config.profile.clone())
            .with_filters(config.filters.clone());
        if config.inspector {
            hub = hub.with_inspector(Arc::new(crate::inspector::Inspector::new(config.secrets())));
        }
        let hub = Arc::new(hub);
        if let Some(times) = commit_times {
            let _ = times.set(hub.metrics.store_commits());
        }
        let (shutdown, watch_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let limits = &config.limits;
        let tls = &config.backend_tls;

        for (id, (backend, listener)) in config.backends.iter().zip(backend_listeners).enumerate() {
            let token = backend.token.clone();
            let kind = match backend.kind {
                BackendKind::Ws { .. } => "ws",
                BackendKind::Http { .. } => "http",
                BackendKind::WsReverse { .. } => "ws_reverse",
            };
            let link_metrics = hub.metrics.link(id, kind);
            if let (Some(profile), false) = (&backend.profile, matches!(backend.kind, BackendKind::WsReverse { .. })) {
                hub.force_link_profile(id, profile.clone());
            }
            if let (Some(mode), false) = (backend.upload, matches!(backend.kind, BackendKind::WsReverse { .. })) {
                hub.set_link_upload(id, mode);
            }
            match (&backend.kind, listener) {
                (BackendKind::Ws { url }, _) => {
                    let wire = match backend.protocol {
                        Protocol::V12 => Wire::V12 { msgpack: backend.msgpack },
                        Protocol::V11 => {
                            // Known as v11 from the start, so it gets a v11 profile before the
                            // implementation names itself.
                            let claim = ImplementationClaim { onebot_version: "11".into(), ..Default::default() };
                            hub.learn_backend(id, claim, InfoSource::Headers);
                            Wire::V11(Arc::new(Edge::new(
                                config.mappings.generic().clone(),
                                config.media.options.max_file_size,
                            )))
                        }
                    };
                    let link = LinkHandle::socket(id, config.action_timeout, wire);
                    link.observe(link_metrics);
                    let dial = crate::backends::socket::Dial { url: url.clone(), token, tls: tls.clone() };
                    let span = tracing::info_span!("backend_ws", link = id, url = %url);
                    let task = crate::backends::socket::run(link, dial, hub.clone(), limits.clone(), watch_rx.clone());
                    tasks.spawn(task.instrument(span));
                }
                (BackendKind::Http { url, .. }, webhook) => {
                    let mut caller =
                        HttpCaller::new(url.clone(), token.clone(), backend.msgpack, limits.max_message, tls.clone());
                    if backend.protocol == Protocol::V11 {
                        let claim = ImplementationClaim { onebot_version: "11".into(), ..Default::default() };
                        hub.learn_backend(id, claim, InfoSource::Headers);
                        caller = caller.speaking_v11(Arc::new(Edge::new(
                            config.mappings.generic().clone(),
                            config.media.options.max_file_size,
                        )));
                    }
                    let link = LinkHandle::http(id, config.action_timeout, caller);
                    link.observe(link_metrics);
                    let span = tracing::info_span!("backend_http", link = id, url = %url);
                    let task = crate::backends::v12::http_client::run(
                        link,
                        webhook,
                        token,
                        backend.secret.clone(),
                        hub.clone(),
                        limits.clone(),
                        watch_rx.clone(),
                    );
                    tasks.spawn(task.instrument(span));
                }
                (BackendKind::WsReverse { addr }, Some(listener)) => {
                    let span = tracing::info_span!("backend_ws_reverse", %addr);
                    let setup = crate::backends::v12::ws_server::Setup {
                        backend: backend.clone(),
                        action_timeout: config.action_timeout,
                        limits: limits.clone(),
                        metrics: link_metrics,
                        maps: config.mappings.generic().clone(),
                        max_file_size: config.media.options.max_file_size,
                    };
                    let task = crate::backends::v12::ws_server::serve(listener, setup, hub.clone(), watch_rx.clone());
                    tasks.spawn(task.instrument(span));
                }
                (BackendKind::WsReverse { .. }, None) => {}
            }
        }
        for (listener, server) in ws_listeners.into_iter().zip(&config.ws_servers) {
            tracing::info!(addr = %server.addr, "serving v11 forward WebSocket");
            let task = crate::bots::ws_server::serve(
                listener,
                server.clone(),
                hub.clone(),
                limits.clone(),
                config.heartbeat,
                watch_rx.clone(),
            );
            tasks.spawn(task);
        }
        for (listener, server) in http_listeners.into_iter().zip(&config.http_servers) {
            tracing::info!(addr = %server.addr, "serving v11 HTTP API");
            tasks.spawn(crate::bots::http_server::serve(
                listener,
                server.clone(),
                hub.clone(),
                limits.clone(),
                watch_rx.clone(),
            ));
        }
        for post in &config.http_posts {
            let span = tracing::info_span!("v11_http_post", url = %post.url);
            let task = crate::bots::http_post::run(
                post.clone(),
                hub.clone(),
                limits.clone(),
                config.heartbeat,
                watch_rx.clone(),
            );
            tasks.spawn(task.instrument(span));
        }
        for target in &config.ws_reverse {
            let task = crate::bots::ws_reverse::run(
                target.clone(),
                hub.clone(),
                limits.clone(),
                config.heartbeat,
                watch_rx.clone(),
            );
            tasks.spawn(task);
        }
        let mut pages = crate::admin::Pages::default();
        if config.demo {
            // The playground is a v12 implementation of its own: it dials the link's reverse
            // WebSocket on loopback like any implementation would, with the link's token.
            // (`Config::resolve` made that link the only one.)
            let base = match addrs.admin {
                Some(admin) => format!("{}/playground", crate::config::base_url(admin)),
                None => String::new(),
            };
            let playground = crate::demo::Playground::new(base);
            if let (Some(addr), Some(link)) = (addrs.backend_ws_reverse.first(), config.backends.first()) {
                let url = format!("ws://{addr}/");
                let token = link.token.clone().unwrap_or_default();
                let span = tracing::info_span!("playground", %url);
                tasks.spawn(crate::demo::run(playground.clone(), url, token, watch_rx.clone()).instrument(span));
            }
            pages.playground = Some(playground);
        }
        if let Some(listener) = admin_listener {
            tracing::info!(addr = ?addrs.admin, "serving admin endpoints (/health, /ready, /metrics)");
            tasks.spawn(crate::admin::serve(listener, hub.clone(), pages, limits.shutdown_grace, watch_rx.clone()));
        }
        Ok(Bridge { shutdown, tasks, addrs, hub, grace: limits.shutdown_grace })
    }

    /// Every address the bridge listens on.
    pub fn addrs(&self) -> &Addrs {
        &self.addrs
    }

    /// The bound addresses of the v11 forward WebSocket endpoints, in configuration order.
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.addrs.ws
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops accepting, closes every connection with a Close frame, waits within the grace period.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.grace * 2, drain).await.is_err() {
            tracing::warn!("tasks still running after the grace period; aborted");
            self.tasks.abort_all();
        }
    }
}

/// The core's media options with their URL-signing key (`shared_key`, the one replicas on a
/// Redis store share; else kept beside a disk store so served URLs outlive a restart), and the
/// local directories.
fn media_setup(
    config: &Config,
    shared_key: Option<[u8; 32]>,
) -> Result<(crate::core::media::MediaOptions, crate::media::LocalDirs), StartError> {
    let mut options = config.media.options.clone();
    if let Some(key) = shared_key {
        options.url_key = key;
    }
    let data_dir = match &config.store {
        StoreConfig::Disk { dir, .. } => Some(dir.clone()),
        StoreConfig::Memory { .. } | StoreConfig::Redis { .. } => None,
    };
    let cache = config.media.cache_dir.clone().unwrap_or_else(|| match &data_dir {
        Some(dir) => dir.join("cache"),
        None => std::env::temp_dir().join(format!("onebot-bridge-cache-{}", std::process::id())),
    });
    let err = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| StartError::Media { path, source }
    };
    if let Some(dir) = &data_dir {
        let key_file = dir.join("media.key");
        options.url_key = match std::fs::read_to_string(&key_file) {
            Ok(text) => crate::core::media::key_from_hex(&text).ok_or_else(|| {
                err(&key_file)(std::io::Error::new(std::io::ErrorKind::InvalidData, "not 64 hex digits"))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(err(dir))?;
                let key: [u8; 32] = rand::random();
                let text = crate::core::media::hex(&key);
                write_private(&key_file, &text).map_err(err(&key_file))?;
                key
            }
            Err(e) => return Err(err(&key_file)(e)),
        };
    }
    let files = crate::media::LocalDirs::new(config.media.allowed_dirs.clone(), &cache, config.media.cache_max_bytes)
        .map_err(err(&cache))?
        .with_time_limit(options.transfer_timeout);
    Ok((options, files))
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)?.write_all(text.as_bytes())
}

/// Runs the bridge until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let bridge = Bridge::start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    bridge.stop().await;
    Ok(())
}
