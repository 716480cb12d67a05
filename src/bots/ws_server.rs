//! v11 forward WebSocket, bridge as **server** (go-cqhttp `servers: - ws:`).
//!
//! `/api` carries actions only; `/event` carries events only (the bridge does not read requests
//! there, as go-cqhttp); every other path is universal. `/` and `/event` get
//! `meta_event.lifecycle.connect` as their first frame, then events and heartbeats. The access
//! token is checked before the upgrade: 401 when none is presented, 403 when it is wrong.
//!
//! A connection whose first request is a `GET` or `HEAD` of `/files/…` is plain HTTP: the
//! bridge's signed file URLs are served here as on the HTTP API's port, and point here when the
//! bridge has no HTTP server.
//!
//! Which bot account a connection serves: the endpoint's `self-id`, else `?self_id=` in the URL,
//! else the only account the backend has. A connection made before any account is known waits
//! (and answers actions with a failure) until one appears.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tracing::Instrument;

use crate::bots::http_server::{serve_files, FILES_PREFIX};
use crate::bots::rate_limit::{self, Limiter};
use crate::bots::session::{self, Pick, Role, SessionConfig};
use crate::config::{Limits, WsServer};
use crate::hub::Hub;
use crate::inspector::connections::Connection;
use crate::metrics::OpenConnection;
use crate::net::{accept_loop, accept_ws, asks_for_path_under, check_upgrade, HANDSHAKE_TIMEOUT};

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 1024;

/// Everything a connection needs, shared by the endpoint's connections.
#[derive(Clone)]
struct Endpoint {
    server: WsServer,
    hub: Arc<Hub>,
    limits: Limits,
    heartbeat: Option<Duration>,
    /// Open connections, for the metrics.
    open: prometheus_client::metrics::gauge::Gauge,
    /// The address it listens on.
    bound: SocketAddr,
}

/// Accepts connections until `shutdown`, then closes them (Close frame) and waits for them to
/// finish within the grace period.
pub async fn serve(
    listener: TcpListener,
    server: WsServer,
    hub: Arc<Hub>,
    limits: Limits,
    heartbeat: Option<Duration>,
    shutdown: watch::Receiver<bool>,
) {
    let grace = limits.shutdown_grace;
    let bound = listener.local_addr().unwrap_or(server.addr);
    let open = hub.metrics.v11_endpoint(&format!("ws {bound}"));
    let endpoint = Endpoint { server, hub, limits, heartbeat, open, bound };
    let watch = shutdown.clone();
    accept_loop(listener, MAX_CONNECTIONS, grace, shutdown, "v11 forward WebSocket", move |stream, peer| {
        let span = tracing::info_span!("v11_ws", %peer, self_id = tracing::field::Empty);
        connection(stream, peer, endpoint.clone(), watch.clone()).instrument(span)
    })
    .await;
}

/// What the handshake learnt about the request.
#[derive(Debug, Default)]
struct Handshake {
    path: String,
    query_self_id: Option<i64>,
}

async fn connection(stream: TcpStream, peer: SocketAddr, ep: Endpoint, mut shutdown: watch::Receiver<bool>) {
    // The bridge's own `/files/` URLs are served here too: with no HTTP server, they point here.
    match asks_for_path_under(&stream, FILES_PREFIX, HANDSHAKE_TIMEOUT).await {
        Some(true) => return serve_files(stream, ep.hub.clone(), &mut shutdown).await,
        Some(false) => {}
        None => {
            tracing::info!("connection closed or silent before its request");
            return;
        }
    }
    let mut hs = Handshake::default();
    let expected = ep.server.token.clone();
    // The error type is tungstenite's own; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        check_upgrade(expected.as_deref(), req)?;
        let query = req.uri().query();
        hs.path = req.uri().path().to_owned();
        hs.query_self_id = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "self_id").and_then(|(_, v)| v.parse().ok())
        });
        Ok(resp)
    };
    let Some(ws) = accept_ws(stream, callback, ep.limits.max_message, crate::decode::Side::Bots).await else { return };
    let _open = OpenConnection::new(ep.open.clone());
    let role = Role::from_path(&hs.path);
    tracing::info!(?role, path = %hs.path, "v11 bot connected");
    let want = ep.server.self_id.or(hs.query_self_id);
    let listed = ep.hub.inspector.as_ref().map(|inspector| {
        Arc::new(inspector.register(Connection {
            endpoint: format!("ws {}", ep.bound),
            transport: "ws",
            role: role.name(),
            peer: peer.to_string(),
            self_id: want,
            since: crate::inspector::unix_ms(),
        }))
    });
    let cfg = SessionConfig {
        post_format: ep.server.post_format,
        heartbeat: ep.heartbeat,
        forward: true,
        limits: ep.limits.clone(),
        filter: ep.server.filter.clone(),
        // go-cqhttp kept one bucket per forward-WebSocket connection.
        limiter: ep.server.rate_limit.map(|l| Arc::new(Limiter::new(l, rate_limit::MAX_WAIT))),
        listed,
    };
    session::run(ws, role, Pick::Wait(want), ep.hub.clone(), cfg, &mut shutdown).await;
    tracing::info!(%peer, "v11 bot disconnected");
}
