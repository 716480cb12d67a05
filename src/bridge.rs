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

use crate::config::Config;
use crate::core::{MemoryIdStore, Options, Translator};
use crate::hub::Hub;
use crate::v12::LinkHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A running bridge.
pub struct Bridge {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    ws_addrs: Vec<SocketAddr>,
    hub: Arc<Hub>,
    grace: std::time::Duration,
}

impl Bridge {
    pub async fn start(config: Config) -> Result<Bridge, StartError> {
        let mut listeners = Vec::new();
        for server in &config.ws_servers {
            let listener = TcpListener::bind(server.addr)
                .await
                .map_err(|source| StartError::Bind { addr: server.addr, source })?;
            listeners.push(listener);
        }
        let translator = Translator::new(config.mappings.clone(), MemoryIdStore::default(), Options::default());
        let hub = Arc::new(Hub::new(translator, config.limits.event_queue));
        let (shutdown, watch_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        for (id, backend) in config.backends.iter().enumerate() {
            let (link, outgoing) = LinkHandle::new(id, config.limits.request_queue, config.action_timeout);
            let span = tracing::info_span!("backend_ws", link = id, url = %backend.url);
            tasks.spawn(
                crate::v12::ws_client::run(
                    link,
                    outgoing,
                    backend.clone(),
                    hub.clone(),
                    config.limits.clone(),
                    watch_rx.clone(),
                )
                .instrument(span),
            );
        }
        let mut ws_addrs = Vec::new();
        for (listener, server) in listeners.into_iter().zip(&config.ws_servers) {
            let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: server.addr, source })?;
            tracing::info!(%addr, "serving v11 forward WebSocket");
            ws_addrs.push(addr);
            tasks.spawn(crate::v11::ws_server::serve(
                listener,
                server.clone(),
                hub.clone(),
                config.limits.clone(),
                config.heartbeat,
                watch_rx.clone(),
            ));
        }
        Ok(Bridge { shutdown, tasks, ws_addrs, hub, grace: config.limits.shutdown_grace })
    }

    /// The bound addresses of the v11 forward WebSocket endpoints, in configuration order.
    pub fn ws_addrs(&self) -> &[SocketAddr] {
        &self.ws_addrs
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

/// Runs the bridge until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let bridge = Bridge::start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    bridge.stop().await;
    Ok(())
}
