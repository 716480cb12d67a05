//! v11 reverse WebSocket, bridge as **client** (go-cqhttp `servers: - ws-reverse:`): the bridge
//! dials the bot's WebSocket server.
//!
//! **Which connections.** A target with a `universal` URL gets one Universal connection per bot
//! account; otherwise an API connection (if `api`) and an Event connection (if `event`) per
//! account. Accounts are the hub's (every account the backend links announce), or only the
//! target's `self-id`. A connection exists only while its account is online: when the backend
//! says the account went offline the bridge closes it (Close 1000) and dials again once it is
//! back. The handshake carries `X-Self-ID: <v11 id>`, `X-Client-Role: Universal|API|Event`,
//! `User-Agent: CQHttp/4.15.0` and, with a token, `Authorization: Bearer <t>` (or go-cqhttp's
//! `Token <t>`). Universal and Event connections then get `lifecycle.connect` (without
//! go-cqhttp's forward-WS `_post_method`), events and heartbeats; API connections answer actions;
//! Event connections are never read, as in go-cqhttp.
//!
//! **Reconnecting.** A failed dial, a refused handshake (logged with its HTTP status) or a dropped
//! connection is retried forever with capped exponential back-off and ±25 % jitter: the first
//! wait is the target's `reconnect-interval`, doubling up to max(30 s, reconnect-interval); it
//! starts again from the first wait after a connection that stayed up at least one
//! `reconnect-interval`. Dialling and the handshake together time out after 10 s.
//!
//! **No duplicates.** One task per (account, role, URL) owns its socket, so there is never more
//! than one live connection with the same `X-Self-ID` and role to a URL (nonebot closes a second
//! one with 1008 "Duplicate X-Self-ID"): before dialling again the task waits until the old
//! socket is fully closed (Close handshake done and the server's end of the TCP stream read).
//! Each connection subscribes to its account's events anew, so events that arrived while the bot
//! was away (the hub keeps up to 256, for 60 s) come first. Events handed to a connection that
//! ends before writing them to its socket go back to the front of the account's backlog, so the
//! next connection delivers them: an event reaches the bot once, in order — unless the socket it
//! was written to breaks under it, which no v11 transport can detect.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::bots::rate_limit::{self, Limiter};
use crate::bots::session::{self, Ended, Pick, Role, SessionConfig};
use crate::config::{Limits, WsReverse};
use crate::core::event::V11Event;
use crate::fanout;
use crate::hub::{AccountEntry, Hub, Subscription};
use crate::net::{ws_config, Backoff};
use crate::sync::LockUnpoisoned;

/// Dialling plus the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// go-cqhttp's reverse-WS `User-Agent`.
const USER_AGENT: &str = "CQHttp/4.15.0";
/// The back-off never waits longer than this (or the reconnect interval, if that is longer).
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// How long to wait for the server to finish closing an old connection before dialling again.
const CLOSE_WAIT: Duration = Duration::from_secs(3);
/// Events handed to a session and not yet written to its socket (the rest wait in the
/// account's bounded broadcast; see [`Ledger`])…
const HANDED_MAX: usize = 64;
/// …and their bytes ([`V11Event::weight`]), past which no more is handed until the session
/// writes (one event is always handed, whatever it weighs). Once handed, an event is no longer
/// counted by the account's broadcast, which lets go of what every reader took.
const HANDED_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("bad URL: {0}")]
    Url(String),
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    #[error("the bot server refused the WebSocket handshake with HTTP {status}")]
    Refused { status: u16 },
    #[error("WebSocket handshake failed: {0}")]
    Handshake(#[source] tokio_tungstenite::tungstenite::Error),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
}

/// Keeps the target's connections (one per bot account and role) until `shutdown`, then closes
/// them (Close 1001) within the grace period.
pub async fn run(
    target: WsReverse,
    hub: Arc<Hub>,
    limits: Limits,
    heartbeat: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let routes: Vec<(Role, url::Url)> = match &target.universal {
        Some(url) => vec![(Role::Universal, url.clone())],
        None => [(Role::Api, &target.api), (Role::Event, &target.event)]
            .into_iter()
            .filter_map(|(role, url)| url.clone().map(|u| (role, u)))
            .collect(),
    };
    // go-cqhttp kept one bucket per reverse-WebSocket entry.
    let limiter = target.rate_limit.map(|l| Arc::new(Limiter::new(l, rate_limit::MAX_WAIT)));
    let target = Arc::new(target);
    let mut changed = hub.accounts_changed();
    let mut clients = JoinSet::new();
    let mut served = std::collections::HashSet::new();
    loop {
        for (entry, _) in hub.accounts_now() {
            let id = entry.account.v11_id;
            if target.self_id.is_some_and(|want| want != id) || !served.insert(id) {
                continue;
            }
            for (role, url) in &routes {
                let client = ReverseWsClient {
                    entry: entry.clone(),
                    role: *role,
                    url: url.clone(),
                    target: target.clone(),
                    hub: hub.clone(),
                    limits: limits.clone(),
                    heartbeat,
                    limiter: limiter.clone(),
                };
                let span = tracing::info_span!("v11_ws_reverse", url = %url, role = role.header(), self_id = id);
                clients.spawn(client.run(shutdown.clone()).instrument(span));
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { break },
            _ = shutdown.wait_for(|stop| *stop) => break,
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    let grace = limits.shutdown_grace;
    if tokio::time::timeout(grace, async { while clients.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(
            left = clients.len(),
            "reverse WebSocket connections still open after the grace period; aborted"
        );
        clients.abort_all();
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The bot server closed it, or it broke.
    Peer,
    /// The account went offline; the bridge closed it (1000).
    Offline,
    /// The bridge is shutting down; it closed it (1001).
    Shutdown,
}

/// One (account, role, URL): dials, serves one session at a time, redials.
struct ReverseWsClient {
    entry: Arc<AccountEntry>,
    role: Role,
    url: url::Url,
    target: Arc<WsReverse>,
    hub: Arc<Hub>,
    limits: Limits,
    heartbeat: Option<Duration>,
    limiter: Option<Arc<Limiter>>,
}

impl ReverseWsClient {
    /// The endpoint label of the connection gauge: the URL without credentials or query (a
    /// token may be there).
    fn endpoint_label(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        format!("ws_reverse {url}")
    }
}

impl ReverseWsClient {
    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let first = self.target.reconnect_interval;
        let mut backoff = Backoff::new(first, BACKOFF_CAP.max(first));
        let mut changed = self.hub.accounts_changed();
        loop {
            if !self.wait_online(&mut changed, &mut shutdown).await {
                return;
            }
            let ledger = Arc::new(Ledger::default());
            let dialled = tokio::select! {
                r = self.dial(ledger.clone()) => r,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            match dialled {
                Ok((ws, socket_back)) => {
                    tracing::info!("connected to the bot");
                    let since = Instant::now();
                    let outcome = self.serve(ws, &ledger, &mut changed, &mut shutdown).await;
                    let up = since.elapsed();
                    // Never two live connections to one URL: let the old one finish closing.
                    if let Ok(socket) = socket_back.await {
                        close_fully(socket).await;
                    }
                    tracing::info!(?outcome, up_ms = up.as_millis() as u64, "connection to the bot ended");
                    match outcome {
                        Outcome::Shutdown => return,
                        // Dial again as soon as the account is back.
                        Outcome::Offline => continue,
                        Outcome::Peer if up >= first => backoff.reset(),
                        Outcome::Peer => {}
                    }
                }
                Err(error @ DialError::Refused { status: 401 | 403 }) => {
                    tracing::error!(%error, "wrong or missing access token for the bot server")
                }
                Err(error @ DialError::Refused { .. }) => tracing::warn!(%error, "cannot connect to the bot"),
                Err(error) => tracing::info!(%error, "cannot connect to the bot"),
            }
            let delay = backoff.next_delay();
            tracing::debug!(delay_ms = delay.as_millis() as u64, "redialling later");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Waits until the account is online; false when the bridge shuts down first.
    async fn wait_online(&self, changed: &mut watch::Receiver<u64>, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *shutdown.borrow() {
                return false;
            }
            if self.entry.is_online() {
                return true;
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return false },
                _ = shutdown.wait_for(|stop| *stop) => return false,
            }
        }
    }

    /// Dials and shakes hands; the socket comes back through the receiver once the WebSocket is
    /// dropped, so that its close can be waited for.
    async fn dial(
        &self,
        ledger: Arc<Ledger>,
    ) -> Result<(WebSocketStream<Tap>, oneshot::Receiver<TcpStream>), DialError> {
        let mut request =
            self.url.as_str().into_client_request().map_err(|e| DialError::Url(format!("{}: {e}", self.url)))?;
        let headers = request.headers_mut();
        headers.insert("x-self-id", HeaderValue::from(self.entry.account.v11_id));
        headers.insert("x-client-role", HeaderValue::from_static(self.role.header()));
        headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
        if let Some(token) = &self.target.token {
            let value = HeaderValue::from_str(&self.target.auth_scheme.header(token))
                .map_err(|_| DialError::Url("the access token is not a valid header value".into()))?;
            headers.insert("authorization", value);
        }
        let port = self.url.port_or_known_default().unwrap_or(80);
        let handshake = async {
            let tcp = match self.url.host() {
                Some(url::Host::Domain(host)) => TcpStream::connect((host, port)).await,
                Some(url::Host::Ipv4(ip)) => TcpStream::connect((ip, port)).await,
                Some(url::Host::Ipv6(ip)) => TcpStream::connect((ip, port)).await,
                None => return Err(DialError::Url(format!("{}: no host", self.url))),
            }
            .map_err(DialError::Connect)?;
            let _ = tcp.set_nodelay(true);
            let (back_tx, back_rx) = oneshot::channel();
            let tap = Tap { io: Some(tcp), ledger, back: Some(back_tx) };
            let config = Some(ws_config(self.limits.max_message, crate::decode::Side::Bots));
            match tokio_tungstenite::client_async_with_config(request, tap, config).await {
                Ok((ws, _)) => Ok((ws, back_rx)),
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    Err(DialError::Refused { status: resp.status().as_u16() })
                }
                Err(e) => Err(DialError::Handshake(e)),
            }
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await.unwrap_or(Err(DialError::Timeout(HANDSHAKE_TIMEOUT)))
    }

    /// Runs one session: the account's events reach it through the ledger (which learns which of
    /// them made it to the socket); when the account goes offline its event stream ends, which
    /// makes the session close with 1000.
    async fn serve(
        &self,
        ws: WebSocketStream<Tap>,
        ledger: &Ledger,
        changed: &mut watch::Receiver<u64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let mut feed = Feed::default();
        if self.role.sends_events() {
            let (kept, events) = self.entry.subscribe();
            feed = Feed { kept: kept.into(), events: Some(events) };
        }
        let sub = Subscription { entry: self.entry.clone(), kept: Vec::new(), events: Some(ledger.open()) };
        let label = self.endpoint_label();
        let _open = crate::metrics::OpenConnection::new(self.hub.metrics.v11_endpoint(&label));
        let listed = self.hub.inspector.as_ref().map(|inspector| {
            let peer = match (self.url.host_str(), self.url.port_or_known_default()) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                _ => String::new(),
            };
            Arc::new(inspector.register(crate::inspector::connections::Connection {
                endpoint: label.trim_start_matches("ws_reverse ").to_owned(),
                transport: "ws_reverse",
                role: self.role.name(),
                peer,
                self_id: Some(self.entry.account.v11_id),
                since: crate::inspector::unix_ms(),
            }))
        });
        let cfg = SessionConfig {
            post_format: self.target.post_format,
            heartbeat: self.heartbeat,
            forward: false,
            limits: self.limits.clone(),
            filter: self.target.filter.clone(),
            limiter: self.limiter.clone(),
            listed,
        };
        let stopping = shutdown.clone();
        let session = session::run(ws, self.role, Pick::Given(sub), self.hub.clone(), cfg, shutdown);
        tokio::pin!(session);
        let (ended, offline) = tokio::select! {
            ended = &mut session => (ended, false),
            () = self.relay(&mut feed, ledger, changed, &stopping) => (session.await, true),
        };
        // What the session took but never wrote, and what it never took, is the next
        // connection's (or whichever connection subscribes next).
        let mut undelivered = ledger.close();
        undelivered.extend(feed.kept.drain(..));
        self.entry.give_back(undelivered, feed.events.take());
        match ended {
            Ended::Shutdown => Outcome::Shutdown,
            Ended::Peer if offline => Outcome::Offline,
            Ended::Peer => Outcome::Peer,
        }
    }

    /// Moves events from the account to the session while the account is online, at most
    /// [`HANDED_MAX`] events and [`HANDED_BYTES`] ahead of what the session wrote. Returns once
    /// the account is offline and the session has written what it was given; its event stream is
    /// then ended. At shutdown (when backend links go down too) it leaves the closing to the
    /// session (1001).
    async fn relay(
        &self,
        feed: &mut Feed,
        ledger: &Ledger,
        changed: &mut watch::Receiver<u64>,
        stopping: &watch::Receiver<bool>,
    ) {
        loop {
            if *stopping.borrow() {
                return std::future::pending().await;
            }
            if !self.entry.is_online() {
                break;
            }
            if ledger.has_room() {
                tokio::select! {
                    biased;
                    r = changed.changed() => if r.is_err() { std::future::pending::<()>().await },
                    ev = feed.next(&self.entry) => {
                        if let Err(ev) = ledger.hand(ev) {
                            // The session has ended; the event stays for the next connection.
                            feed.kept.push_front(ev);
                            std::future::pending::<()>().await;
                        }
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    r = changed.changed() => if r.is_err() { std::future::pending::<()>().await },
                    _ = ledger.written.notified() => {}
                }
            }
        }
        while !ledger.all_written() {
            ledger.written.notified().await;
        }
        ledger.end_stream();
    }
}

/// Reads from the server until it closes its end (it has processed our Close frame and, for
/// nonebot, forgotten the old `X-Self-ID`), at most [`CLOSE_WAIT`].
async fn close_fully(mut socket: TcpStream) {
    let _ = socket.shutdown().await;
    let mut buf = [0u8; 1024];
    let drain = async {
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
}

/// The account's events for one connection: first the ones kept while no connection was there,
/// then the live stream (none for API connections).
#[derive(Default)]
struct Feed {
    kept: VecDeque<Arc<V11Event>>,
    events: Option<fanout::Receiver<Arc<V11Event>>>,
}

impl Feed {
    /// The next event; never returns when there is none to come.
    async fn next(&mut self, entry: &AccountEntry) -> Arc<V11Event> {
        if let Some(ev) = self.kept.pop_front() {
            return ev;
        }
        let Some(rx) = self.events.as_mut() else { return std::future::pending().await };
        loop {
            match rx.recv().await {
                Ok(ev) => return ev,
                Err(fanout::RecvError::Lagged(n)) => {
                    entry.lost(n, crate::metrics::DropReason::SlowBot);
                    tracing::warn!(dropped = n, "bot reads too slowly, and was waited for as long as --slow-bot-wait allows; oldest events dropped");
                }
                Err(fanout::RecvError::Closed) => return std::future::pending().await,
            }
        }
    }
}

/// Which events handed to a session reached its socket.
///
/// The session takes an event from its channel and writes it before doing anything else, so at
/// every write to the socket all the events it has taken so far are on the wire (or going out in
/// this very write): the socket wrapper ([`Tap`]) tells the ledger, which forgets them. Events
/// still listed when the session ends were never written and go back to the account's backlog.
#[derive(Default)]
struct Ledger {
    state: Mutex<LedgerState>,
    /// Signalled on every write to the socket.
    written: Notify,
}

#[derive(Default)]
struct LedgerState {
    tx: Option<fanout::Sender<Arc<V11Event>>>,
    /// Handed to the session and not yet known to be written, oldest first, with their weights.
    handed: VecDeque<(Arc<V11Event>, usize)>,
    /// The sum of `handed`'s weights.
    handed_bytes: usize,
}

impl Ledger {
    fn state(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock_unpoisoned()
    }

    /// The session's event channel. It never lags: at most [`HANDED_MAX`] events are in it.
    fn open(&self) -> fanout::Receiver<Arc<V11Event>> {
        // Bounded by its count: `has_room` keeps it within.
        let tx = fanout::channel(HANDED_MAX, usize::MAX);
        let rx = tx.subscribe();
        self.state().tx = Some(tx);
        rx
    }

    fn has_room(&self) -> bool {
        let state = self.state();
        state.handed.is_empty() || (state.handed.len() < HANDED_MAX && state.handed_bytes < HANDED_BYTES)
    }

    fn all_written(&self) -> bool {
        self.state().handed.is_empty()
    }

    /// Gives an event to the session; back if the session is gone.
    fn hand(&self, ev: Arc<V11Event>) -> Result<(), Arc<V11Event>> {
        let mut state = self.state();
        let Some(tx) = &state.tx else { return Err(ev) };
        match tx.send(ev.clone(), 0) {
            Ok(()) => {
                let weight = ev.weight();
                state.handed_bytes += weight;
                state.handed.push_back((ev, weight));
                Ok(())
            }
            Err(fanout::SendError(ev)) => Err(ev),
        }
    }

    /// The session wrote to its socket: every event it has taken is out.
    fn on_write(&self) {
        let mut state = self.state();
        if let Some(tx) = &state.tx {
            // Called from the session's own task, so nothing is taken meanwhile.
            let taken = state.handed.len().saturating_sub(tx.len());
            let written: usize = state.handed.drain(..taken).map(|(_, weight)| weight).sum();
            state.handed_bytes -= written;
        }
        drop(state);
        self.written.notify_one();
    }

    /// Ends the session's event stream (after what is in it).
    fn end_stream(&self) {
        self.state().tx = None;
    }

    /// The session has ended: the events it never wrote, oldest first.
    fn close(&self) -> Vec<Arc<V11Event>> {
        let mut state = self.state();
        state.tx = None;
        state.handed_bytes = 0;
        state.handed.drain(..).map(|(ev, _)| ev).collect()
    }
}

/// The TCP stream under a reverse-WS connection: reports writes to the [`Ledger`], and returns
/// the stream when the WebSocket drops it, so that its close can be awaited.
struct Tap {
    io: Option<TcpStream>,
    ledger: Arc<Ledger>,
    back: Option<oneshot::Sender<TcpStream>>,
}

impl Tap {
    fn io(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.io.as_mut().map(Pin::new).ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            let _ = back.send(io);
        }
    }
}

impl AsyncRead for Tap {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Tap {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match this.io() {
            Ok(io) => io.poll_write(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.ledger.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = match this.io() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.ledger.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn notice(n: usize, text_bytes: usize) -> Arc<V11Event> {
        let body = json!({"post_type": "notice", "n": n, "text": "x".repeat(text_bytes)});
        Arc::new(V11Event::new(10001, body.as_object().unwrap().clone()))
    }

    /// What a session was handed and has not written is bounded in bytes as well as in count:
    /// large events stop the handing early, one event is handed whatever it weighs, and a write
    /// makes room again (its events leave the count of bytes).
    #[test]
    fn events_handed_and_not_written_are_bounded_in_bytes() {
        let ledger = Ledger::default();
        let mut rx = ledger.open();
        let mut handed = 0;
        while ledger.has_room() {
            ledger.hand(notice(handed, 1 << 20)).unwrap();
            handed += 1;
        }
        assert!(handed < 8, "{handed} events of 1 MiB handed before the session wrote");
        assert!(ledger.state().handed_bytes >= HANDED_BYTES);
        // The session takes them all and writes: room again, nothing counted.
        for n in 0..handed {
            assert_eq!(rx.try_recv().unwrap().to_value(Default::default())["n"], n);
        }
        ledger.on_write();
        assert!(ledger.all_written() && ledger.has_room());
        assert_eq!(ledger.state().handed_bytes, 0);
        // One event over the bound on its own is still handed; the next waits for a write.
        ledger.hand(notice(100, HANDED_BYTES)).unwrap();
        assert!(!ledger.has_room());
        // Small events go by count, as before.
        let _ = rx.try_recv();
        ledger.on_write();
        let mut small = 0;
        while ledger.has_room() {
            ledger.hand(notice(small, 10)).unwrap();
            small += 1;
        }
        assert_eq!(small, HANDED_MAX);
        // What was never written goes back whole, and the count of bytes with it.
        assert_eq!(ledger.close().len(), HANDED_MAX);
        assert_eq!(ledger.state().handed_bytes, 0);
    }
}
