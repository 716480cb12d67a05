//! A backend's WebSocket, whichever side dialled and whichever protocol its frames speak (OneBot
//! v12, or v11 through the link's edge). [`run`] is the forward WebSocket, bridge as **client**:
//! it dials the implementation's WebSocket server.
//!
//! One task owns the socket: it reads events and answers, lends the writing half to the link's
//! callers (each writes its own request, [`super::writer`]), and redials with capped exponential
//! back-off and jitter when the connection drops. A call made while the link is down fails at
//! once (it is never held for the next connection), and events are de-duplicated by `id`, so a
//! reconnect never runs an action twice or delivers an event twice.
//!
//! [`serve`] runs one connection whichever side dialled; the reverse-WebSocket server
//! (`v12::ws_server`) uses it too. Frames are read in either encoding: text is JSON, binary is
//! MessagePack (events and answers alike); requests go out as the link is configured.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::backends::intake::Intake;
use crate::backends::link::{LinkHandle, RecentIds};
use crate::backends::v12::codec::{self, Payload};
use crate::backends::writer::SocketWriter;
use crate::backends::Reports;
use crate::config::Limits;
use crate::core::v12::{self, Frame};
use crate::net::{ws_config, Backoff};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(30);
/// A connection that sent nothing (no frame, no pong) for this long is taken for dead.
const SILENT_FOR: Duration = Duration::from_secs(2 * PING_EVERY.as_secs() + 15);
/// How long a closed connection's remaining events may take to translate.
const DRAIN_EVENTS: Duration = Duration::from_secs(30);
/// Where and how to dial.
#[derive(Debug, Clone)]
pub struct Dial {
    pub url: url::Url,
    pub token: Option<String>,
    /// For `wss://` URLs.
    pub tls: Arc<rustls::ClientConfig>,
}

/// Runs the link until `shutdown` turns true. The caller wraps it in a span naming the link.
pub async fn run<R: Reports>(
    link: LinkHandle,
    cfg: Dial,
    reports: Arc<R>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let recent = Arc::new(RecentIds::new());
    while !*shutdown.borrow() {
        let connected = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&cfg, &limits)) => r,
            _ = shutdown.changed() => break,
        };
        match connected {
            Ok(Ok(ws)) => {
                tracing::info!("connected to backend");
                backoff.reset();
                serve(&link, Carries::Requests, ws, &reports, &limits, &recent, &mut shutdown).await;
                link.set_connected(false);
                reports.link_down(link.id);
                if *shutdown.borrow() {
                    break;
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot connect to backend"),
            Err(_) => tracing::warn!("backend connection attempt timed out"),
        }
        let delay = backoff.next_delay();
        tracing::info!(delay_ms = delay.as_millis() as u64, "redialling backend");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => break,
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(cfg: &Dial, limits: &Limits) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = cfg.url.as_str().into_client_request()?;
    if let Some(token) = &cfg.token {
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            request.headers_mut().insert("Authorization", v);
        }
    }
    request
        .headers_mut()
        .insert("User-Agent", HeaderValue::from_static(concat!("onebot-bridge/", env!("CARGO_PKG_VERSION"))));
    let connector = tokio_tungstenite::Connector::Rustls(cfg.tls.clone());
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config(limits.max_message, crate::decode::Side::Backend)),
        true,
        Some(connector),
    )
    .await?;
    Ok(ws)
}

/// What a connection carries besides the backend's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// The link's requests and their answers.
    Requests,
    /// Events only (a v11 `X-Client-Role: Event` connection): the link's requests go out on
    /// another connection, which alone says whether the link is up.
    EventsOnly,
}

/// Runs one connection to an implementation, whichever side dialled: carries the link's
/// requests (when it does), reads events and answers. Returns when the connection ends or
/// `shutdown` turns true, with the link marked down and the events already read delivered.
///
/// Events go to the link's [`Intake`], which translates them while this loop goes on reading
/// (a translation may wait for an answer that arrives on this very socket).
pub async fn serve<R: Reports, S>(
    link: &LinkHandle,
    carries: Carries,
    ws: tokio_tungstenite::WebSocketStream<S>,
    reports: &Arc<R>,
    limits: &Limits,
    recent: &Arc<RecentIds>,
    shutdown: &mut watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (intake, worker) = Intake::start(link.clone(), reports.clone(), recent.clone());
    pump(link, carries, ws, reports, limits, &intake, shutdown).await;
    if carries == Carries::Requests {
        // Calls still waiting on this connection fail now, so the worker can finish.
        link.set_connected(false);
    }
    drop(intake);
    if tokio::time::timeout(DRAIN_EVENTS, worker).await.is_err() {
        tracing::warn!("events read from the backend were still being translated when the connection ended");
    }
}

async fn pump<R: Reports, S>(
    link: &LinkHandle,
    carries: Carries,
    ws: tokio_tungstenite::WebSocketStream<S>,
    reports: &Arc<R>,
    limits: &Limits,
    intake: &Intake,
    shutdown: &mut watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut stream) = ws.split();
    // The writing half goes to the link's writer, where callers write their requests; an
    // events-only connection keeps its own, for its pings. Reading never waits for a write (a
    // backend that reads nothing while one of its own writes waits would otherwise wait for this
    // loop to read while this loop waited for it to read): this connection's own frames go
    // through a small queue, written by a future of their own.
    let own;
    let writer = match (carries, link.writer()) {
        (Carries::Requests, Some(writer)) => writer,
        (Carries::Requests, None) => return tracing::error!("a socket connection on an HTTP link; closed"),
        (Carries::EventsOnly, _) => {
            own = SocketWriter::default();
            &own
        }
    };
    let attached = writer.attach(Box::pin(sink), limits.write_timeout).await;
    let (control, controls) = mpsc::channel(CONTROL_QUEUED);
    // Ends when a write failed or timed out (a caller's or its own), or once the queue is closed
    // and written.
    let broken = attached.broken.clone();
    let writing = async {
        let mut controls = controls;
        loop {
            tokio::select! {
                _ = broken.notified() => return,
                frame = controls.recv() => {
                    let Some(frame) = frame else { return };
                    if writer.write(frame).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::pin!(writing);
    if carries == Carries::Requests {
        link.set_connected(true);
        tokio::spawn(discover(link.clone(), reports.clone()));
    }
    let reader = async {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        let mut last_heard = tokio::time::Instant::now();
        // Whether this connection was told it looks like a v11 implementation on a v12 link.
        let mut hinted = false;
        // One wait for the shutdown across the loop, not a new one for every frame.
        let stopping = shutdown.changed();
        tokio::pin!(stopping);
        loop {
            tokio::select! {
                _ = &mut stopping => return Ended::Shutdown,
                _ = ping.tick() => {
                    // A peer that vanished without a FIN answers nothing, not even our pings.
                    if last_heard.elapsed() > SILENT_FOR {
                        tracing::warn!(silent_s = last_heard.elapsed().as_secs(), "backend silent, not even pongs; dropping the connection");
                        return Ended::Peer;
                    }
                    // With the writer's queue full a ping would add nothing: the writer's own
                    // timeout catches a backend that reads nothing.
                    let _ = control.try_send(Message::Ping(Default::default()));
                }
                frame = stream.next() => match frame.inspect(|_| last_heard = tokio::time::Instant::now()) {
                    Some(Ok(Message::Text(text))) => on_frame(link, intake, Payload::Text(&text), &mut hinted).await,
                    Some(Ok(Message::Binary(bytes))) => on_frame(link, intake, Payload::Binary(&bytes), &mut hinted).await,
                    Some(Ok(Message::Close(frame))) => {
                        tracing::info!(?frame, "backend closed the connection");
                        return Ended::Peer;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => { tracing::warn!(%error, "backend connection failed"); return Ended::Peer; }
                    None => return Ended::Peer,
                }
            }
        }
    };
    let ended = tokio::select! {
        // Before the queue is closed, only when a write failed or timed out (it said which).
        _ = &mut writing => None,
        ended = reader => Some(ended),
    };
    if ended == Some(Ended::Shutdown) {
        // The close frame goes out after the frames ahead of it, within the write timeout.
        let bye = CloseFrame { code: CloseCode::Away, reason: "bridge shutting down".into() };
        let _ = control.try_send(Message::Close(Some(bye)));
        drop(control);
        let _ = tokio::time::timeout(limits.write_timeout, &mut writing).await;
    }
    // The link lets go of this connection's writing half. A caller's write under way holds it for
    // at most the write timeout: the connection does not wait for that (an events-only
    // connection's own writer goes with it).
    if carries == Carries::Requests {
        let link = link.clone();
        tokio::spawn(async move {
            if let Some(writer) = link.writer() {
                writer.detach(&attached).await;
            }
        });
    }
}

/// How the reading half of a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Peer,
    Shutdown,
}

/// Frames of the connection's own (pings, the closing frame) waiting for the writer.
const CONTROL_QUEUED: usize = 4;
/// One frame from the backend (JSON text or MessagePack binary; a binary frame carrying JSON is
/// read too): an event or an action's answer, in the link's protocol. A v11 event on a v12 link
/// (a NapCat configured without `protocol = "v11"`) is said once per connection, with the fix.
async fn on_frame(link: &LinkHandle, intake: &Intake, payload: Payload<'_>, hinted: &mut bool) {
    if let Some(edge) = link.edge() {
        return on_v11_frame(link, edge, intake, payload).await;
    }
    let (frame, budget) = match codec::read_frame(payload).await {
        Ok(v) => v,
        Err(error) => return unread(&error, payload),
    };
    let value = match frame {
        // The event keeps its parse budget until it is translated: events queued in the intake
        // count against the backend's budget, not only those being decoded.
        Frame::Event(Ok(ev)) => return intake.push(ev, budget).await,
        Frame::Event(Err(error)) => return tracing::warn!(%error, "malformed event from backend; ignored"),
        Frame::Answer(answer) => return complete(link, answer),
        Frame::Other(value) => value,
    };
    if value.get("post_type").is_some() && value.get("detail_type").is_none() {
        if !std::mem::replace(hinted, true) {
            tracing::error!(
                "this backend sends OneBot v11 events (post_type) but the link speaks v12: its events are \
                 ignored; set protocol = \"v11\" on the link (--backend-protocol v11)"
            );
        } else {
            tracing::debug!("a OneBot v11 event on a v12 link; ignored");
        }
        return;
    }
    answered(link, v12::Response::from_value(value));
}

/// [`on_frame`] on a link that speaks v11 (NapCat, LLBot, Lagrange.OneBot): an event is read
/// into v12 at the link's edge, an answer as the edge reads answers.
async fn on_v11_frame(
    link: &LinkHandle,
    edge: &crate::backends::v11::edge::Edge,
    intake: &Intake,
    payload: Payload<'_>,
) {
    let (members, budget) = match codec::read_members(payload).await {
        Ok(v) => v,
        Err(error) => return unread(&error, payload),
    };
    let answer = match members {
        Ok(event) if event.members.contains_key("post_type") => {
            match edge.event_with(event.members, event.message) {
                Ok(Some(ev)) => intake.push(ev, budget).await,
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "malformed v11 event from backend; ignored"),
            }
            return;
        }
        Ok(members) => crate::backends::v11::edge::read_answer(members.into_value()),
        Err(other) => crate::backends::v11::edge::read_answer(other),
    };
    answered(link, answer);
}

/// Says why a frame from the backend was not read.
fn unread(error: &codec::DecodeError, payload: Payload<'_>) {
    let len = payload.bytes().len();
    if error.is_refusal() {
        tracing::warn!(%error, len, "frame from backend refused: too costly to decode; ignored");
    } else {
        tracing::warn!(%error, len, "malformed frame from backend; ignored");
    }
}

/// Hands an answer to its call, or says the frame was neither an event nor an answer.
fn answered(link: &LinkHandle, answer: Option<v12::Response>) {
    match answer {
        Some(answer) => complete(link, answer),
        None => tracing::warn!("frame from backend is neither an event nor an answer; ignored"),
    }
}

/// Hands an answer to the call waiting for it.
fn complete(link: &LinkHandle, answer: v12::Response) {
    if !link.complete(answer) {
        tracing::debug!("an answer nobody waits for (timed out?); ignored");
    }
}

/// One event value from any transport: parsed leniently, de-duplicated by `id`, handed to the reports.
/// False when it is not an event (logged with `warn`).
pub async fn on_event_value<R: Reports>(link: &LinkHandle, reports: &R, recent: &RecentIds, value: Value) -> bool {
    match v12::Event::from_value(value) {
        Ok(ev) => {
            on_event(link, reports, recent, ev).await;
            true
        }
        Err(error) => {
            tracing::warn!(%error, "malformed event from backend; ignored");
            false
        }
    }
}

/// One parsed event: dropped when its `id` was seen lately, else handed to the reports.
pub async fn on_event<R: Reports>(link: &LinkHandle, reports: &R, recent: &RecentIds, ev: v12::Event) {
    if recent.insert(&ev.id) {
        reports.event(link, ev).await;
    } else {
        tracing::debug!(id = %ev.id, "duplicate event dropped");
    }
}

/// Learns the accounts (and, without `meta.connect`, the implementation) of a new connection.
pub async fn discover<R: Reports>(link: LinkHandle, reports: Arc<R>) {
    if let Err(error) = refresh(&link, &*reports).await {
        tracing::info!(%error, "get_status failed; accounts come from events");
    }
}

/// Asks the implementation for its accounts (`get_status`) and, while its version is not known
/// (no `meta.connect`: HTTP, webhook, go-libonebot, ComWeChat), for `get_version`. `Ok` when the
/// implementation answered at all, even with a failure retcode.
pub async fn refresh<R: Reports>(link: &LinkHandle, reports: &R) -> Result<(), crate::core::CallError> {
    let resp = link.call(v12::Request::new("get_status", Map::new())).await?;
    if resp.is_ok() {
        reports.status(link, &resp.data).await;
    } else {
        tracing::info!(retcode = resp.retcode, "backend has no get_status; accounts come from events");
    }
    if !reports.knows(link.id).version {
        if let Ok(resp) = link.call(v12::Request::new("get_version", Map::new())).await {
            if resp.is_ok() {
                let claim = crate::core::ImplementationClaim::from_version(Some(&resp.data));
                reports.learn(link.id, claim, crate::core::InfoSource::Version);
            }
        }
    }
    if !reports.knows(link.id).supported_actions {
        learn_supported_actions(link, reports).await;
    }
    Ok(())
}

/// Asks the backend which actions it has, so `get_supported_actions` answers honestly. A backend
/// without the action (or with an unusable answer) is taken to have every mapped action.
async fn learn_supported_actions<R: Reports>(link: &LinkHandle, reports: &R) {
    match link.call(v12::Request::new("get_supported_actions", Map::new())).await {
        Ok(resp) if resp.is_ok() => {
            let Some(list) = resp.data.as_array() else { return };
            let actions = list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
            reports.supported_actions(link.id, actions);
        }
        Ok(resp) => tracing::debug!(retcode = resp.retcode, "backend does not list its actions"),
        Err(error) => tracing::debug!(%error, "get_supported_actions failed"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    use super::*;
    use crate::core::{MappingSet, Options, Translator};
    use crate::hub::Hub;
    use crate::store::Store;

    /// A connection to a backend over an in-memory pipe: the bridge's side, and the backend's,
    /// which the test holds (and reads nothing from).
    async fn connected() -> (WebSocketStream<tokio::io::DuplexStream>, WebSocketStream<tokio::io::DuplexStream>) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let ours = WebSocketStream::from_raw_socket(ours, Role::Client, None).await;
        let theirs = WebSocketStream::from_raw_socket(theirs, Role::Server, None).await;
        (ours, theirs)
    }

    fn hub() -> Arc<Hub> {
        let translator = Translator::new(
            Arc::new(MappingSet::embedded().unwrap()),
            Store::Memory(Box::default()),
            Options::default(),
        );
        Arc::new(Hub::new(translator, 16))
    }

    /// Serves the bridge's side of a connection until it ends or `for_at_most` passes (then
    /// asks it to stop); how long it ran, and whether it ended of itself.
    async fn serve_for(ws: WebSocketStream<tokio::io::DuplexStream>, for_at_most: Duration) -> (Duration, bool) {
        let link = LinkHandle::new(1, Duration::from_secs(30), false);
        let (stop, mut shutdown) = watch::channel(false);
        let (hub, limits, recent) = (hub(), Limits::default(), Arc::new(RecentIds::new()));
        let started = tokio::time::Instant::now();
        let served = serve(&link, Carries::Requests, ws, &hub, &limits, &recent, &mut shutdown);
        tokio::pin!(served);
        let ended = tokio::select! {
            () = &mut served => true,
            () = tokio::time::sleep(for_at_most) => false,
        };
        let ran = started.elapsed();
        if !ended {
            stop.send(true).unwrap();
            served.await;
        }
        (ran, ended)
    }

    /// A backend that vanished without closing (no FIN, no pongs) is let go once it has said
    /// nothing for `SILENT_FOR`, noticed at the next ping.
    #[tokio::test(start_paused = true)]
    async fn a_backend_that_says_nothing_is_let_go_after_its_silence() {
        let (ours, _silent) = connected().await;
        let (ran, ended) = serve_for(ours, 10 * SILENT_FOR).await;
        assert!(ended, "still connected after {ran:?}");
        assert!(ran > SILENT_FOR && ran <= SILENT_FOR + PING_EVERY, "let go after {ran:?}");
    }

    /// A backend that sends anything (here a heartbeat) more often than `SILENT_FOR` is kept,
    /// however long it lasts.
    #[tokio::test(start_paused = true)]
    async fn a_backend_that_keeps_talking_is_kept() {
        let (ours, mut theirs) = connected().await;
        let talking = tokio::spawn(async move {
            loop {
                tokio::time::sleep(SILENT_FOR / 2).await;
                let heartbeat =
                    r#"{"id":"h","time":1,"type":"meta","detail_type":"heartbeat","sub_type":"","interval":5000}"#;
                if theirs.send(Message::Text(heartbeat.into())).await.is_err() {
                    return;
                }
            }
        });
        let (ran, ended) = serve_for(ours, 10 * SILENT_FOR).await;
        assert!(!ended, "let go after {ran:?} though it kept talking");
        talking.abort();
    }
}
