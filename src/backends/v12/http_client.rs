//! v12 HTTP, bridge as **client**: every action is a `POST /` to the implementation's HTTP server
//! (JSON, or MessagePack when configured), answered in the response body
//! (`reference/onebot-v12.md` §2.1). Events come from the webhook receiver paired with the link
//! (bridge as **server**, §2.2), or, without one, from `get_latest_events` long polling.
//!
//! HTTP has no connection to watch and no `meta.connect`, so the link learns its accounts and the
//! implementation with `get_status` / `get_version` when the implementation is first reachable,
//! again after every outage, and every [`REFRESH_EVERY`] (webhook pushes of `status_update` are
//! applied too, but not every implementation sends them). Reachability is what the polls — or,
//! with a webhook, those `get_status` probes — say: two failures in a row put the link's accounts
//! offline; the next success brings them back. Actions are never refused up front: each is its
//! own request and fails on its own (`BACKEND_UNAVAILABLE` at once when nothing listens).
//!
//! Webhook receiver: `POST` on any path (implementations are configured with whatever URL their
//! users type); the token as everywhere (`Authorization` with any scheme, else `?access_token=`;
//! **401** none, **403** wrong); JSON or MessagePack by `Content-Type` (**415** otherwise; a body
//! without one is read as JSON); at most `max_message` bytes (**413**); one event per body, fed
//! through the same de-duplication as polling; **204** when taken, **400** when it is not an
//! event, **413** when it is too costly to decode (`docs/limits.md`). The bridge never returns
//! actions in the webhook response.
//!
//! A OneBot v11 implementation (NapCat & co., `protocol = "v11"`) is called through the link's
//! edge instead: `POST /<action>` with the params as JSON (go-cqhttp's HTTP API), the answer read
//! as v11. Its events arrive by its HTTP POST on the webhook receiver, authenticated by
//! `X-Signature` (HMAC-SHA1 of the body with the link's `secret`: **401** none, **403** wrong)
//! rather than by the token, and read through the edge. v11 has no `get_latest_events`: such a
//! link needs the receiver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backends::link::{LinkHandle, RecentIds};
use crate::backends::socket;
use crate::backends::v11::edge::{read_answer, Edge, V11Call};
use crate::backends::v12::codec;
use crate::backends::Reports;
use crate::config::Limits;
use crate::core::{v12, CallError, ImplementationClaim, InfoSource};
use crate::net::{accept_loop, check_token, presented_token, Auth, Backoff};

/// `get_latest_events` long-poll wait, in seconds as the spec says (go-libonebot reads it as
/// milliseconds and answers at once: [`EMPTY_POLL_PAUSE`] keeps that from spinning).
const POLL_WAIT_S: u64 = 20;
/// Events asked for per poll.
const POLL_LIMIT: u64 = 100;
/// The HTTP call timeout of a poll: above the long-poll wait, whatever unit the implementation
/// reads it in.
const POLL_CALL_TIMEOUT: Duration = Duration::from_secs(POLL_WAIT_S + 10);
/// An empty answer that came back sooner than this means the implementation does not hold polls…
const SHORT_POLL: Duration = Duration::from_secs(1);
/// …so the next poll waits this long.
const EMPTY_POLL_PAUSE: Duration = Duration::from_millis(500);
/// Accounts and reachability are checked with `get_status` this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(20);
/// Failures in a row (polls, or status probes with a webhook) that put the link's accounts offline.
const DOWN_AFTER: u32 = 2;
/// Webhook requests served at once; further connections wait in the listen backlog.
const MAX_WEBHOOK_CONNECTIONS: usize = 64;

/// Sends actions to one implementation's HTTP server: a v12 one (`POST /` of the request), or a
/// v11 one through its edge (`POST /<action>` of the params, go-cqhttp's HTTP API).
#[derive(Debug, Clone)]
pub struct HttpCaller {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: url::Url,
    token: Option<String>,
    msgpack: bool,
    max_body: usize,
    edge: Option<Arc<Edge>>,
}

impl HttpCaller {
    pub fn new(
        url: url::Url,
        token: Option<String>,
        msgpack: bool,
        max_body: usize,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        HttpCaller { client, url, token, msgpack, max_body, edge: None }
    }

    /// The caller of a OneBot v11 implementation's HTTP API, converting at `edge`.
    pub fn speaking_v11(mut self, edge: Arc<Edge>) -> Self {
        self.msgpack = false;
        self.edge = Some(edge);
        self
    }

    /// The edge of a v11 implementation's caller (the link converts through it).
    pub fn edge(&self) -> Option<&Arc<Edge>> {
        self.edge.as_ref()
    }

    /// One v12 request, one answer. The caller bounds the time.
    pub async fn call(&self, req: &v12::Request) -> Result<v12::Response, CallError> {
        self.post(self.url.as_str(), codec::encode_request(req, self.msgpack)).await
    }

    /// One v11 action (what the link's edge made of a request) as go-cqhttp's HTTP API takes
    /// it, `POST /<action>` with the params; the answer as the implementation gave it.
    pub async fn call_v11(&self, call: &V11Call) -> Result<v12::Response, CallError> {
        let url = format!("{}/{}", self.url.as_str().trim_end_matches('/'), call.action);
        self.post(&url, serde_json::to_vec(&call.params).unwrap_or_default()).await
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> Result<v12::Response, CallError> {
        let mut builder = hyper::Request::post(url)
            .header(CONTENT_TYPE, if self.msgpack { "application/msgpack" } else { "application/json" })
            .header(USER_AGENT, concat!("onebot-bridge/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = builder.body(Full::new(Bytes::from(body))).map_err(|e| CallError::Link(e.to_string()))?;
        let resp = self.client.request(request).await.map_err(|e| {
            // Nothing listening (or no route) is "unavailable"; a connection that broke is the link.
            if e.is_connect() {
                CallError::Unavailable(format!("cannot reach {}: {}", self.url, error_chain(&e)))
            } else {
                CallError::Link(error_chain(&e))
            }
        })?;
        let status = resp.status();
        // Spec: the answer has the request's encoding. Trust a Content-Type that names one,
        // else try the request's encoding, then the other.
        let declared = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(codec::encoding_of);
        let bytes = Limited::new(resp.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|e| CallError::Link(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let hint = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => " (access token missing or wrong)",
                StatusCode::UNSUPPORTED_MEDIA_TYPE if self.msgpack => " (the backend does not take MessagePack)",
                _ => "",
            };
            return Err(CallError::Link(format!("HTTP {status} from the backend{hint}")));
        }
        let value = match declared {
            Some(msgpack) => codec::read(&bytes, msgpack).await,
            None => codec::read_either(&bytes, self.msgpack).await.map(|(value, _budget)| value),
        }
        .map_err(|e| CallError::Link(format!("the backend's answer: {e}")))?;
        let answer = if self.edge.is_some() { read_answer(value) } else { v12::Response::from_value(value) };
        answer.ok_or_else(|| CallError::Link("the answer is not a OneBot response".into()))
    }
}

/// An error with its sources, for hyper's terse top-level messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Runs an HTTP link: events from the webhook receiver on `webhook`, else by polling
/// `get_latest_events`; accounts and reachability as the module header says. Returns when
/// `shutdown` turns true, after the webhook's open requests finished (within the grace period).
pub async fn run<R: Reports>(
    link: LinkHandle,
    webhook: Option<TcpListener>,
    token: Option<String>,
    secret: Option<String>,
    reports: Arc<R>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let Some(caller) = link.http_caller().cloned() else {
        tracing::error!("an HTTP link was started without an HTTP caller; it carries nothing");
        return;
    };
    // One de-duplication for everything that feeds this link's events.
    let recent = Arc::new(RecentIds::new());
    let mut tasks = JoinSet::new();
    let polling = webhook.is_none();
    if let Some(listener) = webhook {
        if caller.edge().is_some() && secret.is_none() {
            tracing::warn!(
                "the v11 implementation's HTTP POST is not authenticated: anyone who reaches the webhook address can \
                 post events; set the link's secret (and the same secret in the implementation)"
            );
        }
        let receiver = Webhook {
            link: link.clone(),
            reports: reports.clone(),
            recent: recent.clone(),
            token,
            secret,
            edge: caller.edge().cloned(),
            max_body: limits.max_message,
        };
        tasks.spawn(
            serve_webhook(listener, Arc::new(receiver), limits.shutdown_grace, shutdown.clone()).in_current_span(),
        );
    }
    if polling {
        tasks.spawn(poll_events(link, caller, reports, recent, shutdown).in_current_span());
    } else {
        tasks.spawn(probe_backend(link, reports, shutdown).in_current_span());
    }
    while tasks.join_next().await.is_some() {}
}

/// Reachability of an HTTP link, from the outcome of its polls (or probes).
#[derive(Debug, Default)]
struct Reachability {
    up: bool,
    failures: u32,
}

impl Reachability {
    /// After an answer; true when the implementation was not known reachable before.
    fn answered(&mut self) -> bool {
        self.failures = 0;
        !std::mem::replace(&mut self.up, true)
    }

    /// After a failure; true when that makes the link down.
    fn failed(&mut self) -> bool {
        self.failures += 1;
        if self.up && self.failures >= DOWN_AFTER {
            self.up = false;
            return true;
        }
        false
    }
}

/// Polls `get_latest_events` for as long as the link runs, feeding the events in order; learns
/// the accounts whenever the implementation becomes reachable and every [`REFRESH_EVERY`].
async fn poll_events<R: Reports>(
    link: LinkHandle,
    caller: HttpCaller,
    reports: Arc<R>,
    recent: Arc<RecentIds>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut reach = Reachability::default();
    let mut refreshed: Option<Instant> = None;
    let mut refusal_logged = false;
    while !*shutdown.borrow() {
        // Accounts first (a long poll may hold for many seconds), then every REFRESH_EVERY.
        if !reach.up || refreshed.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
            let probe = tokio::select! {
                r = socket::refresh(&link, &*reports) => r,
                _ = shutdown.changed() => return,
            };
            match probe {
                Ok(()) => {
                    refreshed = Some(Instant::now());
                    if reach.answered() {
                        tracing::info!("backend reachable");
                        link.reachable(true);
                    }
                }
                Err(error) => {
                    note_failure(&mut reach, &link, &*reports, &error);
                    if !pause(backoff.next_delay(), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let started = Instant::now();
        let poll = tokio::select! {
            r = poll_once(&caller, &link) => r,
            _ = shutdown.changed() => return,
        };
        let wait = match poll {
            Ok(Ok(events)) if events.is_empty() => {
                backoff.reset();
                (started.elapsed() < SHORT_POLL).then_some(EMPTY_POLL_PAUSE)
            }
            Ok(Ok(events)) => {
                backoff.reset();
                for value in events {
                    socket::on_event_value(&link, &*reports, &recent, value).await;
                }
                None
            }
            Ok(Err(resp)) => {
                // Reachable, but it will not hand out events this way.
                if !std::mem::replace(&mut refusal_logged, true) {
                    tracing::warn!(retcode = resp.retcode, message = %resp.message, "backend refuses get_latest_events; no events will arrive (configure its webhook and the bridge's --backend-webhook)");
                }
                Some(backoff.next_delay())
            }
            Err(error) => {
                note_failure(&mut reach, &link, &*reports, &error);
                Some(backoff.next_delay())
            }
        };
        if let Some(wait) = wait {
            if !pause(wait, &mut shutdown).await {
                return;
            }
        }
    }
}

/// Sleeps unless shutdown comes first (then false).
async fn pause(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shutdown.changed() => false,
    }
}

/// With a webhook bringing the events: asks `get_status` every [`REFRESH_EVERY`] (sooner, with
/// back-off, while the implementation does not answer), which keeps the accounts and their
/// online state current and tells when the implementation is gone.
async fn probe_backend<R: Reports>(link: LinkHandle, reports: Arc<R>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut reach = Reachability::default();
    while !*shutdown.borrow() {
        let probe = tokio::select! {
            r = socket::refresh(&link, &*reports) => r,
            _ = shutdown.changed() => return,
        };
        let wait = match probe {
            Ok(()) => {
                backoff.reset();
                if reach.answered() {
                    tracing::info!("backend reachable");
                    link.reachable(true);
                }
                REFRESH_EVERY
            }
            Err(error) => {
                note_failure(&mut reach, &link, &*reports, &error);
                backoff.next_delay()
            }
        };
        if !pause(wait, &mut shutdown).await {
            return;
        }
    }
}

fn note_failure<R: Reports>(reach: &mut Reachability, link: &LinkHandle, reports: &R, error: &CallError) {
    if reach.failed() {
        tracing::warn!(%error, "backend unreachable; its accounts are offline until it answers again");
        link.reachable(false);
        reports.link_down(link.id);
    } else if reach.failures == 1 {
        tracing::warn!(%error, "backend call failed");
    } else {
        tracing::debug!(%error, failures = reach.failures, "backend still unreachable");
    }
}

/// One `get_latest_events` long poll: the events in order, or the implementation's refusal.
async fn poll_once(caller: &HttpCaller, link: &LinkHandle) -> Result<Result<Vec<Value>, v12::Response>, CallError> {
    let mut params = Map::new();
    params.insert("limit".into(), json!(POLL_LIMIT));
    params.insert("timeout".into(), json!(POLL_WAIT_S));
    let mut req = v12::Request::new("get_latest_events", params);
    req.echo = Some(format!("poll-{}", link.id));
    let resp = match tokio::time::timeout(POLL_CALL_TIMEOUT, caller.call(&req)).await {
        Ok(r) => r?,
        Err(_) => return Err(CallError::Timeout(POLL_CALL_TIMEOUT.as_millis() as u64)),
    };
    if !resp.is_ok() {
        return Ok(Err(resp));
    }
    match resp.data {
        Value::Array(events) => Ok(Ok(events)),
        Value::Null => Ok(Ok(Vec::new())),
        other => {
            tracing::warn!(kind = json_kind(&other), "get_latest_events answered something other than a list; ignored");
            Ok(Ok(Vec::new()))
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---- the webhook receiver ----

/// What every webhook request needs.
struct Webhook<R> {
    link: LinkHandle,
    reports: Arc<R>,
    recent: Arc<RecentIds>,
    token: Option<String>,
    /// A v11 implementation's HTTP POST: signed with this secret (`X-Signature`), not the token.
    secret: Option<String>,
    /// The edge a v11 implementation's events are read through.
    edge: Option<Arc<Edge>>,
    max_body: usize,
}

type Reply = hyper::Response<Full<Bytes>>;

fn reply(status: StatusCode, text: &'static str) -> Reply {
    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    if !text.is_empty() {
        resp.headers_mut().insert(CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    }
    resp
}

/// Serves the webhook until `shutdown`, then lets open requests finish within `grace`.
async fn serve_webhook<R: Reports>(
    listener: TcpListener,
    webhook: Arc<Webhook<R>>,
    grace: Duration,
    shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the v12 webhook receiver");
    }
    let watch = shutdown.clone();
    accept_loop(listener, MAX_WEBHOOK_CONNECTIONS, grace, shutdown, "v12 webhook", move |stream, peer| {
        let span = tracing::info_span!("v12_webhook", %peer);
        webhook_connection(stream, peer, webhook.clone(), watch.clone()).instrument(span)
    })
    .await;
}

async fn webhook_connection<R: Reports>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    webhook: Arc<Webhook<R>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = hyper::service::service_fn(move |req| {
        let webhook = webhook.clone();
        async move { Ok::<_, std::convert::Infallible>(on_webhook(&webhook, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            // Finish the request in flight, take no more.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "webhook connection ended with an error");
    }
}

/// One webhook request: one event.
async fn on_webhook<R: Reports>(webhook: &Webhook<R>, req: hyper::Request<Incoming>) -> Reply {
    if req.method() != Method::POST {
        let mut resp = reply(StatusCode::METHOD_NOT_ALLOWED, "POST events here\n");
        resp.headers_mut().insert(ALLOW, hyper::header::HeaderValue::from_static("POST"));
        return resp;
    }
    let header = |name| req.headers().get(name).and_then(|v: &hyper::header::HeaderValue| v.to_str().ok());
    // A v11 implementation signs its HTTP POST with the secret instead (checked once the body is read).
    let presented = presented_token(header(AUTHORIZATION.as_str()), req.uri().query());
    let token = if webhook.edge.is_some() { None } else { webhook.token.as_deref() };
    match check_token(token, presented.as_deref()) {
        Auth::Ok => {}
        Auth::Missing => return reply(StatusCode::UNAUTHORIZED, "access token required\n"),
        Auth::Wrong => return reply(StatusCode::FORBIDDEN, "wrong access token\n"),
    }
    let signature = header("x-signature").map(str::to_owned);
    // Unsigned: refused before the body is read (a wrong signature needs the body to tell).
    if webhook.secret.is_some() && signature.is_none() {
        return reply(StatusCode::UNAUTHORIZED, "X-Signature required\n");
    }
    let msgpack = match header(CONTENT_TYPE.as_str()) {
        None => false,
        Some(ct) => match codec::encoding_of(ct) {
            Some(msgpack) => msgpack,
            None => {
                tracing::warn!(content_type = ct, "webhook body in an encoding the bridge does not read; refused");
                return reply(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json or application/msgpack\n");
            }
        },
    };
    let announced = header(CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > webhook.max_body as u64) {
        tracing::warn!(len = announced, limit = webhook.max_body, "webhook body too large; refused");
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
    }
    let implementation = header("x-impl").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let onebot_version = header("x-onebot-version").map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());

    let body = match Limited::new(req.into_body(), webhook.max_body).collect().await {
        Ok(body) => body.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            tracing::warn!(limit = webhook.max_body, "webhook body too large; refused");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n");
        }
        Err(error) => {
            tracing::info!(%error, "webhook body could not be read");
            return reply(StatusCode::BAD_REQUEST, "body could not be read\n");
        }
    };
    if let (Some(secret), Some(presented)) = (&webhook.secret, signature.as_deref()) {
        if !crate::bots::http_post::signature_matches(secret, &body, presented) {
            tracing::warn!("HTTP POST from the implementation with a wrong X-Signature; refused");
            return reply(StatusCode::FORBIDDEN, "wrong X-Signature\n");
        }
    }
    if webhook.edge.is_none() {
        remember_backend(webhook, implementation, onebot_version);
    }
    let value = match codec::read(&body, msgpack).await {
        Ok(v) => v,
        Err(error) if error.is_refusal() => {
            tracing::warn!(%error, len = body.len(), "webhook body from backend refused: too costly to decode");
            return reply(StatusCode::PAYLOAD_TOO_LARGE, "too many values or too deeply nested to decode\n");
        }
        Err(error) => {
            tracing::warn!(%error, len = body.len(), "malformed webhook body; refused");
            return reply(StatusCode::BAD_REQUEST, "not a JSON or MessagePack value\n");
        }
    };
    if let Some(edge) = &webhook.edge {
        let read = match value {
            Value::Object(frame) => edge.event(frame.into()).map_err(|e| e.to_string()),
            other => Err(format!("a JSON {} is not an event", json_kind(&other))),
        };
        return match read {
            Ok(Some(ev)) => {
                socket::on_event(&webhook.link, &*webhook.reports, &webhook.recent, ev).await;
                reply(StatusCode::NO_CONTENT, "")
            }
            Ok(None) => reply(StatusCode::NO_CONTENT, ""),
            Err(error) => {
                tracing::warn!(%error, "HTTP POST body is not a OneBot v11 event; refused");
                reply(StatusCode::BAD_REQUEST, "not a OneBot v11 event\n")
            }
        };
    }
    match v12::Event::from_value(value) {
        Ok(ev) => {
            socket::on_event(&webhook.link, &*webhook.reports, &webhook.recent, ev).await;
            reply(StatusCode::NO_CONTENT, "")
        }
        Err(error) => {
            tracing::warn!(%error, "webhook body is not a OneBot event; refused");
            reply(StatusCode::BAD_REQUEST, "not a OneBot event\n")
        }
    }
}

/// Records `X-Impl` / `X-OneBot-Version` while the link knows nothing better.
fn remember_backend<R: Reports>(webhook: &Webhook<R>, implementation: Option<String>, onebot_version: Option<String>) {
    if let Some(v) = onebot_version.as_deref().filter(|v| *v != "12") {
        tracing::debug!(onebot_version = v, "webhook says it is not OneBot 12; read as 12 anyway");
    }
    let reports = &webhook.reports;
    if reports.knows(webhook.link.id).implementation {
        return;
    }
    if let Some(implementation) = implementation {
        tracing::info!(%implementation, "backend named itself in X-Impl");
        let claim = ImplementationClaim {
            implementation,
            onebot_version: onebot_version.unwrap_or_default(),
            ..Default::default()
        };
        reports.learn(webhook.link.id, claim, InfoSource::Headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_failures_in_a_row_put_a_reachable_link_down_and_one_answer_brings_it_back() {
        let mut r = Reachability::default();
        assert!(!r.failed() && !r.failed(), "never reachable: nothing to put down");
        assert!(r.answered(), "first answer: up");
        assert!(!r.answered());
        assert!(!r.failed(), "one failure is not an outage");
        assert!(!r.answered());
        assert!(!r.failed());
        assert!(r.failed(), "the second in a row is");
        assert!(!r.failed(), "down once, not again");
        assert!(r.answered(), "back up");
    }
}
