//! One v11 WebSocket session, whichever side dialled: the forward-WS server's connections and the
//! reverse-WS client's connections run the same loop.
//!
//! The session writes `lifecycle.connect` first (roles that carry events), then events, heartbeats
//! and action answers; it reads action requests (roles that take actions) and runs them
//! concurrently inside the session, at most `actions_in_flight` at once: beyond that the session
//! stops reading (backpressure). A request is decoded before it starts, within the bots' parse budget
//! ([`crate::decode`], `docs/limits.md`), which it keeps until it is answered; while that budget
//! is spent the session stops reading too.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::bots::event_filter::FilterSlot;
use crate::bots::rate_limit::Limiter;
use crate::config::Limits;
use crate::core::event::{heartbeat, lifecycle_connect, V11Event};
use crate::core::v11::{self, PostFormat};
use crate::fanout;
use crate::hub::{AccountEntry, Hub, Subscription};
use crate::metrics::DropReason;
use crate::net::unix_now;

/// Largest `echo` (bytes of JSON) given back with the answer to a request too costly to decode.
const MAX_REFUSED_ECHO: usize = 1024;
/// Most events written to a bot before one flush.
const WRITE_BATCH: usize = 64;

/// What a connection serves (go-cqhttp's `X-Client-Role`, or the forward-WS path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Universal,
    Api,
    Event,
}

impl Role {
    /// The forward-WS path: `/api`, `/event`, anything else universal.
    pub fn from_path(path: &str) -> Role {
        match path {
            "/api" => Role::Api,
            "/event" => Role::Event,
            _ => Role::Universal,
        }
    }

    /// The role in lower case, as the inspector lists it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Universal => "universal",
            Role::Api => "api",
            Role::Event => "event",
        }
    }

    /// The `X-Client-Role` header value.
    pub fn header(self) -> &'static str {
        match self {
            Role::Universal => "Universal",
            Role::Api => "API",
            Role::Event => "Event",
        }
    }

    fn reads_actions(self) -> bool {
        self != Role::Event
    }

    pub fn sends_events(self) -> bool {
        self != Role::Api
    }
}

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub post_format: PostFormat,
    pub heartbeat: Option<Duration>,
    /// go-cqhttp marks the forward-WS handshake with `_post_method: 2`; reverse WS does not.
    pub forward: bool,
    pub limits: Limits,
    /// go-cqhttp's event filter for this endpoint (the lifecycle handshake bypasses it).
    pub filter: Option<Arc<FilterSlot>>,
    /// go-cqhttp's rate limit on this endpoint's actions.
    pub limiter: Option<Arc<Limiter>>,
    /// The connection as the inspector lists it (when it is on), told the account once chosen.
    pub listed: Option<Arc<crate::inspector::connections::Registered>>,
}

impl SessionConfig {
    /// Whether this endpoint sends the event (its filter, if any, lets it through).
    fn sends(&self, ev: &V11Event) -> bool {
        self.filter.as_ref().is_none_or(|f| f.passes(ev, self.post_format))
    }
}

/// Which account the session serves.
pub enum Pick {
    /// Wait for the account with this v11 id (or the only one).
    Wait(Option<i64>),
    /// Already chosen (reverse WS dials per account).
    Given(Subscription),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The peer closed or the connection failed.
    Peer,
    /// The bridge is shutting down.
    Shutdown,
}

/// Runs one session until the peer goes away or the bridge shuts down.
pub async fn run<S>(
    ws: WebSocketStream<S>,
    role: Role,
    pick: Pick,
    hub: Arc<Hub>,
    cfg: SessionConfig,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    Connection { sink: Some(sink), stream, role, hub, cfg }.run(pick, shutdown).await
}

struct Connection<S> {
    sink: Option<SplitSink<WebSocketStream<S>, Message>>,
    stream: SplitStream<WebSocketStream<S>>,
    role: Role,
    hub: Arc<Hub>,
    cfg: SessionConfig,
}

enum Step {
    Continue,
    Stop,
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Writes one JSON text (an event's shared text or an answer).
    async fn write(&mut self, json: impl Into<Utf8Bytes>) -> Step {
        let Some(sink) = self.sink.as_mut() else { return Step::Stop };
        written(tokio::time::timeout(self.cfg.limits.write_timeout, sink.send(Message::Text(json.into()))).await)
    }

    /// Writes an event and whatever others are already waiting (at most [`WRITE_BATCH`]), then
    /// flushes once: a burst costs one write to the socket per batch, not one per event.
    async fn write_events(
        &mut self,
        entry: &AccountEntry,
        first: Arc<V11Event>,
        events: &mut Option<fanout::Receiver<Arc<V11Event>>>,
    ) -> Step {
        let cfg = &self.cfg;
        let Some(sink) = self.sink.as_mut() else { return Step::Stop };
        let format = cfg.post_format;
        let frame = |ev: &V11Event| Message::Text(ev.json(format));
        let result = tokio::time::timeout(cfg.limits.write_timeout, async {
            let mut fed = false;
            if cfg.sends(&first) {
                sink.feed(frame(&first)).await?;
                fed = true;
            }
            for _ in 1..WRITE_BATCH {
                match events.as_mut().map(|rx| rx.try_recv()) {
                    Some(Ok(ev)) if cfg.sends(&ev) => {
                        sink.feed(frame(&ev)).await?;
                        fed = true;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(fanout::TryRecvError::Lagged(n))) => {
                        entry.lost(n, DropReason::SlowBot);
                        tracing::warn!(dropped = n, "bot reads too slowly, and was waited for as long as --slow-bot-wait allows; oldest events dropped");
                    }
                    _ => break,
                }
            }
            if fed {
                sink.flush().await
            } else {
                Ok(())
            }
        })
        .await;
        written(result)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        if let Some(mut sink) = self.sink.take() {
            let frame = CloseFrame { code, reason: reason.to_owned().into() };
            let _ = tokio::time::timeout(self.cfg.limits.write_timeout, sink.send(Message::Close(Some(frame)))).await;
        }
    }

    async fn run(mut self, pick: Pick, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let picked = match pick {
            Pick::Given(sub) => Ok(sub),
            Pick::Wait(want) => self.wait_for_account(want, shutdown).await,
        };
        let Subscription { entry, kept, mut events } = match picked {
            Ok(sub) => sub,
            Err(ended) => return ended,
        };
        tracing::Span::current().record("self_id", entry.account.v11_id);
        if let Some(listed) = &self.cfg.listed {
            listed.set_self_id(entry.account.v11_id);
        }
        if self.role.sends_events() {
            let hello = lifecycle_connect(entry.account.v11_id, unix_now(), self.cfg.forward);
            if let Step::Stop = self.write(hello.json(self.cfg.post_format)).await {
                return Ended::Peer;
            }
        }
        let kept: Vec<_> = kept.into_iter().filter(|ev| self.cfg.sends(ev)).collect();
        for ev in kept {
            if let Step::Stop = self.write(ev.json(self.cfg.post_format)).await {
                return Ended::Peer;
            }
        }
        let beat_every = self.cfg.heartbeat.filter(|_| self.role.sends_events());
        let mut beat = tokio::time::interval(beat_every.unwrap_or(Duration::from_secs(3600)));
        beat.reset();
        // Actions run inside this session, concurrently, and their answers are written as they
        // come: no task and no queue between a request and its answer. Those still running when
        // the session ends are finished all the same.
        let most = self.cfg.limits.actions_in_flight;
        let mut actions = InFlight::default();
        let actions = &mut actions.0;
        // One wait for the shutdown across the loop: a new one each pass would register with
        // (and leave) the channel's waiters for every frame and answer.
        let stopping = shutdown.changed();
        tokio::pin!(stopping);
        loop {
            let step = tokio::select! {
                _ = &mut stopping => {
                    self.close(CloseCode::Away, "bridge shutting down").await;
                    return Ended::Shutdown;
                }
                Some(answer) = actions.next(), if !actions.is_empty() => self.write(answer).await,
                ev = recv_event(&mut events) => match ev {
                    Ok(ev) => self.write_events(&entry, ev, &mut events).await,
                    Err(fanout::RecvError::Lagged(n)) => {
                        entry.lost(n, DropReason::SlowBot);
                        tracing::warn!(dropped = n, "bot reads too slowly, and was waited for as long as --slow-bot-wait allows; oldest events dropped");
                        Step::Continue
                    }
                    Err(fanout::RecvError::Closed) => Step::Stop,
                },
                _ = beat.tick(), if beat_every.is_some() => {
                    let interval = beat_every.unwrap_or_default().as_millis() as u64;
                    let hb = heartbeat(entry.account.v11_id, unix_now(), interval, self.hub.status_of(&entry));
                    if self.cfg.sends(&hb) { self.write(hb.json(self.cfg.post_format)).await } else { Step::Continue }
                }
                // Read the next frame only while there is room for another action (backpressure).
                frame = self.stream.next(), if !self.role.reads_actions() || actions.len() < most => {
                    match frame {
                        Some(Ok(Message::Text(text))) if self.role.reads_actions() => {
                            // Decoded here: while the bots' parse budget is spent, this connection
                            // stops reading (backpressure), so at most one frame per connection
                            // waits for it. The request keeps its budget until it is answered.
                            let request = read_request(text.as_str()).await;
                            drop(text);
                            actions.push(action(self.hub.clone(), entry.clone(), request, &self.cfg));
                            Step::Continue
                        }
                        frame => self.on_other_frame(frame),
                    }
                }
            };
            if let Step::Stop = step {
                self.close(CloseCode::Normal, "").await;
                return Ended::Peer;
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
    /// from. Fails with how the session ended when it ends (or cannot be given an account).
    async fn wait_for_account(
        &mut self,
        want: Option<i64>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Subscription, Ended> {
        let hub = self.hub.clone();
        let waiting = hub.wait_for_account(want, self.role.sends_events());
        tokio::pin!(waiting);
        loop {
            tokio::select! {
                found = &mut waiting => match found {
                    Ok(sub) => return Ok(sub),
                    Err(ids) => {
                        let reason = format!("several bot accounts {ids:?}: connect with ?self_id=<one of them>");
                        tracing::warn!(%reason, "refusing connection");
                        self.close(CloseCode::Policy, &reason).await;
                        return Err(Ended::Peer);
                    }
                },
                _ = shutdown.changed() => {
                    self.close(CloseCode::Away, "bridge shutting down").await;
                    return Err(Ended::Shutdown);
                }
                frame = self.stream.next() => match frame {
                    Some(Ok(Message::Text(text))) if self.role.reads_actions() => {
                        let answer = match read_request(text.as_str()).await {
                            Ok((req, _budget)) => v11::Response::failed(100, "BACKEND_UNAVAILABLE", "no bot account is online on the backend yet")
                                .with_echo(req.echo),
                            Err(refused) => refused,
                        };
                        if let Step::Stop = self.write(answer.to_json()).await {
                            return Err(Ended::Peer);
                        }
                    }
                    other => {
                        if let Step::Stop = self.on_other_frame(other) {
                            return Err(Ended::Peer);
                        }
                    }
                },
            }
        }
    }
}

/// What a session runs for one request: the answer, as JSON. Boxed, so that a session holds a
/// pointer per action in flight: its own future (one per open connection, idle or not) would
/// otherwise have room for one action's, several KB.
type Action = std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>>;

/// A session's actions in flight. When the session ends (the bot went away, a write failed) they
/// go on in a task of their own and their answers are dropped: an action a bot asked for is
/// carried out, as go-cqhttp does, not cut off halfway (a message sent and never remembered, a
/// file uploaded and never sent).
#[derive(Default)]
struct InFlight(FuturesUnordered<Action>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut rest = std::mem::take(&mut self.0);
        // Outside a runtime (it is being dropped) there is nothing left to finish them on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { while rest.next().await.is_some() {} }.in_current_span());
        }
    }
}

fn action(
    hub: Arc<Hub>,
    entry: Arc<AccountEntry>,
    request: Result<(v11::Request, Option<crate::decode::Budget>), v11::Response>,
    cfg: &SessionConfig,
) -> Action {
    let (format, limiter) = (cfg.post_format, cfg.limiter.clone());
    Box::pin(async move {
        let answer = match request {
            Ok((req, budget)) => {
                let answer = hub.handle_limited_action(&entry, req, format, limiter.as_deref()).await;
                drop(budget);
                answer
            }
            Err(refused) => refused,
        };
        answer.to_json()
    })
}

/// An action request from a bot, decoded within the parse budget ([`crate::decode`]). Text that
/// is not JSON is the empty action (answered `404`, as go-cqhttp); a request too costly to decode
/// is refused (logged, and answered with a failure that says why, with its `echo` when that can
/// be found).
async fn read_request(text: &str) -> Result<(v11::Request, Option<crate::decode::Budget>), v11::Response> {
    let bytes = text.as_bytes();
    match crate::decode::json_text::<v11::Request>(text).await {
        Ok((request, budget)) => Ok((request, Some(budget))),
        Err(error) if error.is_refusal() => {
            tracing::warn!(%error, len = bytes.len(), "request from bot refused: too costly to decode");
            // The bot matches answers by echo: give it back when it is small enough to read.
            let echo = crate::core::scan::json_member(bytes, "echo")
                .filter(|raw| raw.len() <= MAX_REFUSED_ECHO)
                .and_then(|raw| serde_json::from_slice(raw).ok());
            Err(v11::Response::refused(error).with_echo(echo))
        }
        Err(_) => Ok((v11::Request::default(), None)),
    }
}

/// Whether a write (within the write timeout) left the connection usable.
fn written(result: Result<Result<(), tokio_tungstenite::tungstenite::Error>, tokio::time::error::Elapsed>) -> Step {
    match result {
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

async fn recv_event(events: &mut Option<fanout::Receiver<Arc<V11Event>>>) -> Result<Arc<V11Event>, fanout::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
