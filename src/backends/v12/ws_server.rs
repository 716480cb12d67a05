//! Reverse WebSocket, bridge as **server**: the implementation dials the bridge (OneBot Connect
//! "反向 WebSocket"; `reference/onebot-v12.md` §2.4, and go-cqhttp's reverse WebSocket for v11
//! implementations such as NapCat).
//!
//! A connection speaks v11 when the link is configured `protocol = "v11"`, or when the handshake
//! says so: no `12.<impl>` subprotocol, and the `X-Client-Role` and `X-Self-ID` headers every v11
//! implementation sends. A v11 connection is `Universal` (events and actions on one socket,
//! NapCat's and LLBot's mode), or one half of go-cqhttp's split pair: `API` (actions and their
//! answers) and `Event` (events only), joined into one link by `X-Self-ID`. The link is up while
//! its API connection is; a newer API connection for the same account replaces the older one.
//!
//! The access token is checked before the upgrade: **401** when none is presented, **403** when
//! it is wrong (`Authorization` with any scheme, else `?access_token=`). The path is not checked:
//! implementations are configured with whatever URL their users type. The offered
//! `Sec-WebSocket-Protocol` (`12.<impl>`) is echoed — tungstenite clients ≥ 0.22 (walle-core's
//! among them) fail the handshake otherwise — and names the implementation; without it
//! (ComWeChat, onebots) `X-Impl` does, else `meta.connect` or `get_version` later.
//!
//! Every connection is a link of its own ([`LinkHandle`] with a fresh id), run by
//! [`socket::serve`]: frames in either encoding, requests as configured, `get_status` at
//! connect (so a missing `meta.connect` is fine). The accounts follow the connection: when it
//! closes they go offline, unless another live connection reports them again — it is asked at
//! once, so a reconnecting implementation whose old connection ends late loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tracing::Instrument;

use crate::backends::link::{LinkHandle, LinkId, RecentIds, Wire};
use crate::backends::socket::{self, Carries};
use crate::backends::v11::edge::Edge;
use crate::backends::Reports;
use crate::config::Limits;
use crate::config::Protocol;
use crate::core::mapping::Mappings;
use crate::core::{ImplementationClaim, InfoSource};
use crate::net::{accept_loop, accept_ws, check_upgrade};
use crate::sync::LockUnpoisoned;

/// Implementation connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// Distinct implementation names whose recent event ids are remembered separately; names
/// beyond this share one set.
const MAX_IMPLS: usize = 64;

/// What every connection of this server shares.
struct Server<R> {
    token: Option<String>,
    msgpack: bool,
    /// The profile every connection's backend gets, if configured for this server.
    profile: Option<String>,
    action_timeout: Duration,
    reports: Arc<R>,
    limits: Limits,
    /// Recent event ids per implementation name: an implementation that resends events on its
    /// next connection gets them dropped; two different implementations never drop each other's.
    recent: Mutex<HashMap<String, Arc<RecentIds>>>,
    /// Live connections, oldest first.
    live: Mutex<Vec<(LinkId, LinkHandle)>>,
    /// The configured link's state every connection reports to.
    metrics: crate::metrics::LinkMetrics,
    /// What connections speak unless their handshake says v11.
    protocol: Protocol,
    /// How local files reach these connections' backends, when the link says.
    upload: Option<crate::core::media::UploadMode>,
    /// The tables a v11 connection's edge reads.
    maps: Arc<Mappings>,
    /// The largest file a v11 connection's edge assembles.
    max_file_size: u64,
    /// Split v11 connections by `X-Self-ID` (at most [`MAX_CONNECTIONS`] accounts).
    split: Mutex<HashMap<String, Split>>,
}

/// The API and Event connections of one v11 account, sharing one link.
struct Split {
    link: LinkHandle,
    /// Held by the live API connection, whose socket carries the link's requests: a newer one
    /// waits for the older to let go.
    api: Arc<tokio::sync::Mutex<()>>,
    /// Live connections of the pair.
    halves: usize,
    /// Tells the live API connection to make way for a newer one.
    api_stop: Option<watch::Sender<bool>>,
}

/// What a v11 connection carries (`X-Client-Role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Role {
    /// Events and actions (and every v12 connection).
    #[default]
    Universal,
    Api,
    Event,
}

impl<R> Server<R> {
    fn recent_for(&self, implementation: &str) -> Arc<RecentIds> {
        let mut map = self.recent.lock_unpoisoned();
        let key = if map.len() < MAX_IMPLS || map.contains_key(implementation) { implementation } else { "" };
        map.entry(key.to_owned()).or_default().clone()
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Vec<(LinkId, LinkHandle)>> {
        self.live.lock_unpoisoned()
    }
}

/// What a reverse-WebSocket server is configured with.
#[derive(Debug, Clone)]
pub struct Setup {
    pub backend: crate::config::BackendLink,
    pub action_timeout: Duration,
    pub limits: Limits,
    /// The configured link's state every connection reports to.
    pub metrics: crate::metrics::LinkMetrics,
    /// The tables a v11 connection's edge reads.
    pub maps: Arc<Mappings>,
    /// The largest file a v11 connection's edge assembles (`max-file-size`).
    pub max_file_size: u64,
}

/// Accepts implementation connections until `shutdown`, then closes them (Close frame 1001) and
/// waits for them within the grace period.
pub async fn serve<R: Reports>(listener: TcpListener, setup: Setup, reports: Arc<R>, shutdown: watch::Receiver<bool>) {
    let Setup { backend, action_timeout, limits, metrics, maps, max_file_size } = setup;
    let grace = limits.shutdown_grace;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, msgpack = backend.msgpack, protocol = ?backend.protocol, "serving reverse WebSocket");
    }
    let msgpack = backend.msgpack;
    let server = Arc::new(Server {
        token: backend.token,
        msgpack,
        profile: backend.profile,
        action_timeout,
        reports,
        limits,
        metrics,
        protocol: backend.protocol,
        upload: backend.upload,
        maps,
        max_file_size,
        recent: Mutex::default(),
        live: Mutex::default(),
        split: Mutex::default(),
    });
    let watch = shutdown.clone();
    accept_loop(listener, MAX_CONNECTIONS, grace, shutdown, "backend reverse WebSocket", move |stream, peer| {
        let span = tracing::info_span!(
            "backend_ws_reverse",
            %peer,
            link = tracing::field::Empty,
            implementation = tracing::field::Empty
        );
        connection(stream, server.clone(), watch.clone()).instrument(span)
    })
    .await;
}

/// What the handshake learnt.
#[derive(Debug, Default)]
struct Handshake {
    /// The subprotocol echoed back.
    protocol: Option<String>,
    implementation: String,
    onebot_version: String,
    /// The connection speaks OneBot v11.
    v11: bool,
    /// A v11 connection's `X-Self-ID`.
    self_id: String,
    role: Role,
}

/// Picks the subprotocol to echo from an offer such as `12.walle-q` (or a list of them): the
/// first `12.<impl>`, else the first offered. Returns it with the implementation name it gives.
fn pick_protocol(offer: &str) -> Option<(String, Option<String>)> {
    let offers: Vec<&str> = offer.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if let Some(p) = offers.iter().find(|p| p.starts_with("12.")) {
        let implementation = p["12.".len()..].to_owned();
        return Some((p.to_string(), Some(implementation).filter(|i| !i.is_empty())));
    }
    offers.first().map(|p| (p.to_string(), None))
}

async fn connection<R: Reports>(stream: TcpStream, server: Arc<Server<R>>, shutdown: watch::Receiver<bool>) {
    let mut hs = Handshake::default();
    let expected = server.token.clone();
    let protocol = server.protocol;
    // The error type is tungstenite's own; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        check_upgrade(expected.as_deref(), req)?;
        if let Some((protocol, implementation)) = header("sec-websocket-protocol").and_then(pick_protocol) {
            if let Ok(v) = HeaderValue::from_str(&protocol) {
                resp.headers_mut().insert("sec-websocket-protocol", v);
            }
            if let Some(i) = implementation {
                hs.implementation = i;
                hs.onebot_version = "12".into();
            }
            hs.protocol = Some(protocol);
        }
        // Drafts before 2022-08-15 (and onebots today) name themselves in the webhook headers.
        if hs.implementation.is_empty() {
            hs.implementation = header("x-impl").unwrap_or_default().trim().to_owned();
            hs.onebot_version = header("x-onebot-version").unwrap_or_default().trim().to_owned();
        }
        let role = header("x-client-role").map(str::trim).unwrap_or_default();
        hs.self_id = header("x-self-id").unwrap_or_default().trim().to_owned();
        let says_v12 = hs.onebot_version == "12";
        hs.v11 = protocol == Protocol::V11 || (!says_v12 && !role.is_empty() && !hs.self_id.is_empty());
        if hs.v11 && !role.is_empty() {
            let refuse = |why: String| {
                let mut refused = ErrorResponse::new(Some(why + "\n"));
                *refused.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
                refused
            };
            hs.role = match role.to_ascii_lowercase().as_str() {
                "universal" => Role::Universal,
                "api" => Role::Api,
                "event" => Role::Event,
                _ => return Err(refuse(format!("X-Client-Role {role}: expected Universal, API or Event"))),
            };
            if hs.role != Role::Universal && hs.self_id.is_empty() {
                return Err(refuse(format!(
                    "X-Client-Role {role} needs X-Self-ID, which pairs the API and Event connections"
                )));
            }
        }
        tracing::debug!(user_agent = header("user-agent").unwrap_or(""), path = %req.uri().path(), "implementation dialled in");
        Ok(resp)
    };
    let Some(ws) = accept_ws(stream, callback, server.limits.max_message, crate::decode::Side::Backend).await else {
        return;
    };

    match hs.role {
        Role::Universal => universal(ws, hs, server, shutdown).await,
        Role::Api | Role::Event => split(ws, hs, server, shutdown).await,
    }
}

/// A new link for a connection (or a split pair): what the handshake and the configuration say
/// about its implementation goes to the reports.
fn new_link<R: Reports>(server: &Server<R>, hs: &Handshake) -> LinkHandle {
    let reports = &server.reports;
    let wire = if hs.v11 {
        Wire::V11(Arc::new(Edge::new(server.maps.clone(), server.max_file_size)))
    } else {
        Wire::V12 { msgpack: server.msgpack }
    };
    let link = LinkHandle::socket(reports.new_link_id(), server.action_timeout, wire);
    link.observe(server.metrics.clone());
    if hs.v11 {
        // Known as v11 from the start, so it gets a v11 profile before the implementation names itself.
        let claim = ImplementationClaim { onebot_version: "11".into(), ..Default::default() };
        reports.learn(link.id, claim, InfoSource::Headers);
    }
    if !hs.implementation.is_empty() {
        let claim = ImplementationClaim {
            implementation: hs.implementation.clone(),
            onebot_version: hs.onebot_version.clone(),
            ..Default::default()
        };
        reports.learn(link.id, claim, InfoSource::Headers);
    }
    if let Some(profile) = &server.profile {
        reports.force_profile(link.id, profile.clone());
    }
    if let Some(mode) = server.upload {
        reports.upload_mode(link.id, mode);
    }
    server.live().push((link.id, link.clone()));
    link
}

/// A link's last connection ended: its accounts go offline and the link is forgotten. An
/// account this link took over from a newer connection (a late event) must not stay offline:
/// the newest live connection reports its accounts again.
fn link_gone<R: Reports>(server: &Server<R>, link: &LinkHandle, shutdown: &watch::Receiver<bool>) {
    let reports = &server.reports;
    link.set_connected(false);
    reports.link_down(link.id);
    reports.forget_link(link.id);
    let newest = {
        let mut live = server.live();
        live.retain(|(id, _)| *id != link.id);
        live.last().map(|(_, l)| l.clone())
    };
    if let Some(newest) = newest {
        if !*shutdown.borrow() {
            tokio::spawn(socket::discover(newest, reports.clone()).in_current_span());
        }
    }
}

fn log_connected(hs: &Handshake, link: &LinkHandle) {
    let span = tracing::Span::current();
    span.record("link", link.id);
    span.record("implementation", hs.implementation.as_str());
    tracing::info!(
        protocol = hs.protocol.as_deref().unwrap_or(""),
        onebot = if hs.v11 { "v11" } else { "v12" },
        role = ?hs.role,
        self_id = %hs.self_id,
        "implementation connected"
    );
}

/// A connection that carries events and actions: a link of its own.
async fn universal<R: Reports>(
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    hs: Handshake,
    server: Arc<Server<R>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let link = new_link(&server, &hs);
    log_connected(&hs, &link);
    let recent = server.recent_for(&hs.implementation);
    socket::serve(&link, Carries::Requests, ws, &server.reports, &server.limits, &recent, &mut shutdown).await;
    tracing::info!("implementation disconnected");
    link_gone(&server, &link, &shutdown);
}

/// One half of a split v11 pair: joins (or starts) the account's link. The API half writes the
/// link's requests; the Event half only reads.
async fn split<R: Reports>(
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    hs: Handshake,
    server: Arc<Server<R>>,
    shutdown: watch::Receiver<bool>,
) {
    let joined = {
        let mut pairs = server.split.lock_unpoisoned();
        let full = pairs.len() >= MAX_CONNECTIONS;
        match pairs.get_mut(&hs.self_id) {
            Some(pair) => {
                pair.halves += 1;
                Some((pair.link.clone(), pair.api.clone()))
            }
            None if full => None,
            None => {
                let link = new_link(&server, &hs);
                let api = Arc::new(tokio::sync::Mutex::new(()));
                let pair = Split { link: link.clone(), api: api.clone(), halves: 1, api_stop: None };
                pairs.insert(hs.self_id.clone(), pair);
                Some((link, api))
            }
        }
    };
    let Some((link, api)) = joined else {
        tracing::warn!(max = MAX_CONNECTIONS, "too many accounts on split connections; connection dropped");
        return;
    };
    log_connected(&hs, &link);
    let recent = server.recent_for(&hs.implementation);
    if hs.role == Role::Api {
        // This connection's own stop: the server's shutdown, or a newer API connection.
        let (stop_tx, _) = watch::channel(false);
        let older = {
            let mut pairs = server.split.lock_unpoisoned();
            pairs.get_mut(&hs.self_id).and_then(|pair| pair.api_stop.replace(stop_tx.clone()))
        };
        if let Some(older) = older {
            tracing::info!("a newer API connection replaces the live one");
            let _ = older.send(true);
        }
        let mut server_down = shutdown.clone();
        let mut replaced = stop_tx.subscribe();
        let (mine_tx, mut mine) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                Ok(_) = server_down.wait_for(|down| *down) => {}
                Ok(_) = replaced.wait_for(|stop| *stop) => {}
                _ = mine_tx.closed() => return,
            }
            let _ = mine_tx.send(true);
        });
        // The older connection lets go once it has stopped.
        let held = api.lock().await;
        if !*mine.borrow() {
            socket::serve(&link, Carries::Requests, ws, &server.reports, &server.limits, &recent, &mut mine).await;
        }
        // Accounts cannot act until an API connection is back (done before a newer one, waiting
        // to take over, brings them online again).
        server.reports.link_down(link.id);
        drop(held);
        tracing::info!("implementation's API connection closed");
    } else {
        let mut shutdown = shutdown.clone();
        socket::serve(&link, Carries::EventsOnly, ws, &server.reports, &server.limits, &recent, &mut shutdown).await;
        tracing::info!("implementation's Event connection closed");
    }
    let last = {
        let mut pairs = server.split.lock_unpoisoned();
        let last = pairs.get_mut(&hs.self_id).is_some_and(|pair| {
            pair.halves -= 1;
            pair.halves == 0
        });
        if last {
            pairs.remove(&hs.self_id);
        }
        last
    };
    if last {
        link_gone(&server, &link, &shutdown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_subprotocol_names_the_implementation() {
        assert_eq!(pick_protocol("12.walle-q"), Some(("12.walle-q".into(), Some("walle-q".into()))));
        assert_eq!(pick_protocol("chat, 12.onedisc"), Some(("12.onedisc".into(), Some("onedisc".into()))));
        assert_eq!(pick_protocol("chat"), Some(("chat".into(), None)));
        assert_eq!(pick_protocol("12."), Some(("12.".into(), None)));
        assert_eq!(pick_protocol(" , "), None);
    }
}
