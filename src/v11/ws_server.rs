//! v11 forward WebSocket, bridge as **server** (go-cqhttp `servers: - ws:`).
//!
//! `/api` carries actions only; `/event` carries events only (the bridge does not read requests
//! there, as go-cqhttp); every other path is universal. `/` and `/event` get
//! `meta_event.lifecycle.connect` as their first frame, then events and heartbeats. The access
//! token is checked before the upgrade: 401 when none is presented, 403 when it is wrong.
//!
//! Which bot account a connection serves: the endpoint's `self-id`, else `?self_id=` in the URL,
//! else the only account the backend has. A connection made before any account is known waits
//! (and answers actions with a failure) until one appears.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::config::{Limits, WsServer};
use crate::core::event::{heartbeat, lifecycle_connect};
use crate::core::v11;
use crate::hub::{Hub, Subscription};
use crate::net::{check_token, presented_token, unix_now, ws_config, Auth};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Universal,
    Api,
    Event,
}

impl Role {
    pub fn from_path(path: &str) -> Role {
        match path {
            "/api" => Role::Api,
            "/event" => Role::Event,
            _ => Role::Universal,
        }
    }

    fn reads_actions(self) -> bool {
        self != Role::Event
    }

    fn sends_events(self) -> bool {
        self != Role::Api
    }
}

/// Everything a connection needs, shared by the endpoint's connections.
#[derive(Clone)]
struct Endpoint {
    server: WsServer,
    hub: Arc<Hub>,
    limits: Limits,
    heartbeat: Option<Duration>,
}

/// Accepts connections until `shutdown`, then closes them (Close frame) and waits for them to
/// finish within the grace period.
pub async fn serve(
    listener: TcpListener,
    server: WsServer,
    hub: Arc<Hub>,
    limits: Limits,
    heartbeat: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let grace = limits.shutdown_grace;
    let endpoint = Endpoint { server, hub, limits, heartbeat };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let span = tracing::info_span!("v11_ws", %peer, self_id = tracing::field::Empty);
                    connections.spawn(connection(stream, peer, endpoint.clone(), shutdown.clone()).instrument(span));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(left = connections.len(), "v11 connections still open after the grace period; aborted");
        connections.abort_all();
    }
}

/// What the handshake learnt about the request.
#[derive(Debug, Default)]
struct Handshake {
    path: String,
    query_self_id: Option<i64>,
}

fn reject(status: StatusCode, body: &str) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(body.to_owned()));
    *resp.status_mut() = status;
    resp
}

async fn connection(stream: TcpStream, peer: SocketAddr, ep: Endpoint, mut shutdown: watch::Receiver<bool>) {
    let mut hs = Handshake::default();
    let expected = ep.server.token.clone();
    // The error type is tungstenite's own; its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok());
        let query = req.uri().query();
        let presented = presented_token(auth, query);
        match check_token(expected.as_deref(), presented.as_deref()) {
            Auth::Ok => {}
            Auth::Missing => return Err(reject(StatusCode::UNAUTHORIZED, "access token required")),
            Auth::Wrong => return Err(reject(StatusCode::FORBIDDEN, "wrong access token")),
        }
        hs.path = req.uri().path().to_owned();
        hs.query_self_id = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "self_id").and_then(|(_, v)| v.parse().ok())
        });
        Ok(resp)
    };
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config(ep.limits.max_message))),
    )
    .await;
    let ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            tracing::info!(%error, "WebSocket handshake refused or failed");
            return;
        }
        Err(_) => {
            tracing::info!("WebSocket handshake timed out");
            return;
        }
    };
    let role = Role::from_path(&hs.path);
    tracing::info!(?role, path = %hs.path, "v11 bot connected");
    let want = ep.server.self_id.or(hs.query_self_id);
    Connection::new(ws, role, ep).run(want, &mut shutdown).await;
    tracing::info!(%peer, "v11 bot disconnected");
}

type Sink = SplitSink<WebSocketStream<TcpStream>, Message>;

struct Connection {
    sink: Option<Sink>,
    stream: futures_util::stream::SplitStream<WebSocketStream<TcpStream>>,
    role: Role,
    ep: Endpoint,
}

enum Step {
    Continue,
    Stop,
}

impl Connection {
    fn new(ws: WebSocketStream<TcpStream>, role: Role, ep: Endpoint) -> Self {
        let (sink, stream) = ws.split();
        Connection { sink: Some(sink), stream, role, ep }
    }

    async fn write(&mut self, text: Vec<u8>) -> Step {
        let Some(sink) = self.sink.as_mut() else { return Step::Stop };
        let text = String::from_utf8(text).unwrap_or_default();
        match tokio::time::timeout(self.ep.limits.write_timeout, sink.send(Message::text(text))).await {
            Ok(Ok(())) => Step::Continue,
            Ok(Err(error)) => {
                tracing::info!(%error, "write to bot failed; closing");
                Step::Stop
            }
            Err(_) => {
                tracing::warn!("write to bot timed out; closing");
                Step::Stop
            }
        }
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        if let Some(mut sink) = self.sink.take() {
            let frame = CloseFrame { code, reason: reason.to_owned().into() };
            let _ = tokio::time::timeout(self.ep.limits.write_timeout, sink.send(Message::Close(Some(frame)))).await;
        }
    }

    async fn run(mut self, want: Option<i64>, shutdown: &mut watch::Receiver<bool>) {
        let Some(Subscription { entry, kept, mut events }) = self.wait_for_account(want, shutdown).await else {
            return;
        };
        tracing::Span::current().record("self_id", entry.account.v11_id);
        if self.role.sends_events() {
            let hello = lifecycle_connect(entry.account.v11_id, unix_now(), true);
            if let Step::Stop = self.write(hello.to_json(self.ep.server.post_format)).await {
                return;
            }
        }
        for ev in kept {
            if let Step::Stop = self.write(ev.to_json(self.ep.server.post_format)).await {
                return;
            }
        }
        let beat_every = self.ep.heartbeat.filter(|_| self.role.sends_events());
        let mut beat = tokio::time::interval(beat_every.unwrap_or(Duration::from_secs(3600)));
        beat.reset();
        let in_flight = Arc::new(Semaphore::new(self.ep.limits.actions_in_flight));
        let (answers_tx, mut answers) = mpsc::channel::<Vec<u8>>(self.ep.limits.actions_in_flight);
        loop {
            let step = tokio::select! {
                _ = shutdown.changed() => {
                    self.close(CloseCode::Away, "bridge shutting down").await;
                    return;
                }
                Some(answer) = answers.recv() => self.write(answer).await,
                ev = recv_event(&mut events) => match ev {
                    Ok(ev) => self.write(ev.to_json(self.ep.server.post_format)).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(dropped = n, "bot reads too slowly; oldest events dropped");
                        Step::Continue
                    }
                    Err(broadcast::error::RecvError::Closed) => Step::Stop,
                },
                _ = beat.tick(), if beat_every.is_some() => {
                    let interval = beat_every.unwrap_or_default().as_millis() as u64;
                    let hb = heartbeat(entry.account.v11_id, unix_now(), interval, self.ep.hub.status_of(&entry));
                    self.write(hb.to_json(self.ep.server.post_format)).await
                }
                // Read the next frame only while there is room for another action (backpressure).
                frame = self.stream.next(), if !self.role.reads_actions() || in_flight.available_permits() > 0 => {
                    match frame {
                        Some(Ok(Message::Text(text))) if self.role.reads_actions() => {
                            let Ok(permit) = in_flight.clone().try_acquire_owned() else { return };
                            let req = v11::Request::from_slice(text.as_bytes());
                            let (hub, entry, tx) = (self.ep.hub.clone(), entry.clone(), answers_tx.clone());
                            tokio::spawn(async move {
                                let answer = hub.handle_action(&entry, req).await;
                                drop(permit);
                                let _ = tx.send(answer.to_json()).await;
                            }.in_current_span());
                            Step::Continue
                        }
                        frame => self.on_other_frame(frame),
                    }
                }
            };
            if let Step::Stop = step {
                self.close(CloseCode::Normal, "").await;
                return;
            }
        }
    }

    /// Frames that are not action requests: binary (ignored, as go-cqhttp), control frames, the
    /// end of the connection, and requests on `/event` (never read, as go-cqhttp).
    fn on_other_frame(&self, frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> Step {
        match frame {
            Some(Ok(Message::Close(_))) | None => Step::Stop,
            Some(Err(error)) => {
                tracing::info!(%error, "bot connection failed");
                Step::Stop
            }
            Some(Ok(Message::Binary(_))) => {
                tracing::debug!("binary frame from bot ignored");
                Step::Continue
            }
            Some(Ok(_)) => Step::Continue,
        }
    }

    /// Until an account is chosen, actions get a clear failure and events have nowhere to come
    /// from. Returns `None` when the connection ended (or cannot be given an account).
    async fn wait_for_account(
        &mut self,
        want: Option<i64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Subscription> {
        let hub = self.ep.hub.clone();
        let waiting = hub.wait_for_account(want, self.role.sends_events());
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                found = &mut waiting => match found {
                    Ok(entry) => return Some(entry),
                    Err(ids) => {
                        let reason = format!("several bot accounts {ids:?}: connect with ?self_id=<one of them>");
                        tracing::warn!(%reason, "refusing connection");
                        self.close(CloseCode::Policy, &reason).await;
                        return None;
                    }
                },
                _ = shutdown.changed() => {
                    self.close(CloseCode::Away, "bridge shutting down").await;
                    return None;
                }
                frame = self.stream.next() => match frame {
                    Some(Ok(Message::Text(text))) if self.role.reads_actions() => {
                        let req = v11::Request::from_slice(text.as_bytes());
                        let answer = v11::Response::failed(100, "BACKEND_UNAVAILABLE", "no bot account is online on the backend yet")
                            .with_echo(req.echo);
                        if let Step::Stop = self.write(answer.to_json()).await {
                            return None;
                        }
                    }
                    other => {
                        if let Step::Stop = self.on_other_frame(other) {
                            return None;
                        }
                    }
                },
            }
        }
    }
}

async fn recv_event(
    events: &mut Option<broadcast::Receiver<Arc<crate::core::event::V11Event>>>,
) -> Result<Arc<crate::core::event::V11Event>, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
