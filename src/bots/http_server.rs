//! v11 HTTP API, bridge as **server** (go-cqhttp `servers: - http: address`).
//!
//! Requests are read as go-cqhttp reads them (reference §1.2):
//! - `GET` or `POST /<action>`; the action is the path without its leading `/` (a trailing slash
//!   is kept, so `/send_msg/` is an unknown action); `_async` is stripped by the core and the
//!   action runs synchronously. `POST /` takes `{"action": …, "params": {…}}`; `echo` is ignored.
//!   Any other method: HTTP 404, empty body.
//! - Params come from the JSON body root (`Content-Type` containing `application/json`), else the
//!   urlencoded form (`application/x-www-form-urlencoded`), else the query; a form or query value
//!   that starts with `{` or `[` and is valid JSON is read as JSON (`message=[{"type":…}]` works
//!   in a GET). A JSON content type with a body that is not JSON: HTTP 400. Other content types:
//!   the body is ignored (go-cqhttp has no 406). An empty body is no body.
//! - Token, checked **before** the body is read (go-cqhttp reads and parses the body first): the
//!   `Authorization` value after its first space (`Bearer`, `Token`, any scheme), else
//!   `?access_token=`; none: HTTP 401, a wrong one: HTTP 403, both with an empty body. A request
//!   without a good token costs no more than its headers. go-cqhttp never takes the token from
//!   the body either (an `access_token` body or form field is dropped from the params, unused).
//! - Everything else is HTTP 200 with the OneBot answer as JSON
//!   (`Content-Type: application/json; charset=utf-8`), failures included (an unknown action is
//!   `retcode 404`). HTTP answers never carry `echo`.
//!
//! Which bot account a request is for: the server's `self-id`, else a `self_id` request param
//! naming a known account (the param is then removed, it is not the action's), else the only
//! account the backend has. Several accounts and no selector: `retcode 100`,
//! `msg BRIDGE_AMBIGUOUS_ACCOUNT`, the ids in `wording`. No account yet (or not the one asked
//! for): `BACKEND_UNAVAILABLE`.
//!
//! Bounds: a body above `limits.max_message` is refused with HTTP 413 (by its `Content-Length`
//! before reading, or as soon as it is exceeded); so is JSON too costly to decode (too many
//! values or too deep, in the body or in form and query values; `docs/limits.md`), and HTTP 503
//! answers one that found no parse budget free in time; headers must arrive within 30 s and the body
//! within 30 s (HTTP 408); an action answers within [`ACTION_DEADLINE`] whatever the backend does;
//! at most [`MAX_CONNECTIONS`] connections are served at once (more wait to be accepted). At
//! shutdown the server stops accepting, lets requests in flight finish (idle keep-alive connections
//! close at once) and aborts what is left after `limits.shutdown_grace`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use crate::bots::event_filter::FilterSlot;
use crate::bots::rate_limit::{self, Limiter};
use crate::config::{HttpServer, Limits};
use crate::core::event::V11Event;
use crate::core::scan::{scan_json, ScanLimits};
use crate::core::segment::lenient_i64;
use crate::core::v11;
use crate::hub::{AccountEntry, Hub, Selection};
use crate::media::{serve_file, ChannelBody, Served};
use crate::net::{accept_loop, check_token, presented_token, Auth};
use crate::sync::LockUnpoisoned;

/// Time a client has to send a request's headers (also bounds idle keep-alive connections).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a client has to send a request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest an action may take here, whatever it does (each backend call has its own, shorter,
/// `--action-timeout`; this bounds multi-step actions and anything else).
pub const ACTION_DEADLINE: Duration = Duration::from_secs(120);
/// Where the bridge serves backend files (`GET /files/<token>`).
pub const FILES_PREFIX: &str = "/files/";
/// Connections served at once; the next one is accepted when one ends.
pub const MAX_CONNECTIONS: usize = 1024;

/// Why a request got no OneBot answer, only an HTTP status (with an empty body, as go-cqhttp).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("method {0} is not GET or POST")]
    Method(Method),
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("cannot read the body: {0}")]
    Body(String),
    #[error("the body is not valid JSON: {0}")]
    BadJson(String),
    #[error("the JSON is too costly to decode: {0}")]
    TooComplex(String),
    #[error("the bridge is busy decoding other requests: {0}")]
    Busy(String),
    #[error("no access token presented")]
    TokenMissing,
    #[error("wrong access token")]
    TokenWrong,
}

impl RequestError {
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::Method(_) => StatusCode::NOT_FOUND,
            RequestError::TooLarge { .. } | RequestError::TooComplex(_) => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            RequestError::Body(_) | RequestError::BadJson(_) => StatusCode::BAD_REQUEST,
            RequestError::TokenMissing => StatusCode::UNAUTHORIZED,
            RequestError::TokenWrong => StatusCode::FORBIDDEN,
        }
    }
}

/// What every connection of one server shares.
struct Endpoint {
    server: HttpServer,
    hub: Arc<Hub>,
    limits: Limits,
    /// Events waiting for `get_updates`, when long polling is configured.
    updates: Option<Arc<Updates>>,
    /// go-cqhttp's rate limit: one bucket for the whole server.
    limiter: Option<Limiter>,
    /// Open connections, for the metrics.
    open: prometheus_client::metrics::gauge::Gauge,
}

/// go-cqhttp's long-polling queue: the server's account's events that pass its filter, the
/// oldest dropped (and counted) when `max` are waiting, or more than the fan-out's bytes
/// ([`crate::hub::EVENT_QUEUE_BYTES`], by [`V11Event::weight`]: a bot that never polls would
/// otherwise keep `max` events of any size).
struct Updates {
    queue: std::sync::Mutex<Waiting>,
    arrived: tokio::sync::Notify,
    max: usize,
    filter: Option<(Arc<FilterSlot>, v11::PostFormat)>,
}

/// The events waiting, with their weights, and the sum of those.
#[derive(Default)]
struct Waiting {
    events: std::collections::VecDeque<(Arc<V11Event>, usize)>,
    bytes: usize,
    /// Events dropped since the operator was last told, and when that was: a bot that never
    /// polls would otherwise make a warning of every event.
    dropped: u64,
    said: Option<std::time::Instant>,
}

/// How often a full `get_updates` queue is said again while it stays full.
const SAY_DROPPED_EVERY: Duration = Duration::from_secs(60);

impl Updates {
    fn new(max: usize, filter: Option<(Arc<FilterSlot>, v11::PostFormat)>) -> Updates {
        Updates { queue: Default::default(), arrived: tokio::sync::Notify::new(), max, filter }
    }

    fn push(&self, ev: Arc<V11Event>) {
        if self.filter.as_ref().is_some_and(|(f, format)| !f.passes(&ev, *format)) {
            return;
        }
        let weight = ev.weight();
        let mut q = self.queue.lock_unpoisoned();
        q.events.push_back((ev, weight));
        q.bytes += weight;
        while q.events.len() > self.max || (q.bytes > crate::hub::EVENT_QUEUE_BYTES && q.events.len() > 1) {
            if let Some((_, weight)) = q.events.pop_front() {
                q.bytes -= weight;
                q.dropped += 1;
            }
        }
        if q.dropped > 0 && q.said.is_none_or(|at| at.elapsed() >= SAY_DROPPED_EVERY) {
            tracing::warn!(
                max = self.max,
                dropped = q.dropped,
                "get_updates queue full (is the bot polling?); the oldest events were dropped"
            );
            (q.dropped, q.said) = (0, Some(std::time::Instant::now()));
        }
        drop(q);
        self.arrived.notify_waiters();
    }

    /// Up to `limit` events (0: all), waiting until one is there or `wait` has passed.
    async fn take(&self, limit: usize, wait: Duration) -> Vec<Arc<V11Event>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            {
                let mut q = self.queue.lock_unpoisoned();
                if !q.events.is_empty() || tokio::time::Instant::now() >= deadline {
                    let n = if limit == 0 { q.events.len() } else { limit.min(q.events.len()) };
                    let taken: Vec<(Arc<V11Event>, usize)> = q.events.drain(..n).collect();
                    q.bytes -= taken.iter().map(|(_, weight)| weight).sum::<usize>();
                    return taken.into_iter().map(|(ev, _)| ev).collect();
                }
            }
            let _ = tokio::time::timeout_at(deadline, arrived).await;
        }
    }

    /// Follows the server's account and queues its events, until shutdown.
    async fn follow(self: Arc<Self>, hub: Arc<Hub>, want: Option<i64>, mut shutdown: watch::Receiver<bool>) {
        use crate::fanout::RecvError;
        while !*shutdown.borrow() {
            let sub = tokio::select! {
                sub = hub.wait_for_account(want, true) => sub,
                _ = shutdown.changed() => return,
            };
            let Ok(sub) = sub else {
                tracing::warn!("long polling: several bot accounts and no self-id on this server; waiting");
                let mut changed = hub.accounts_changed();
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            };
            for ev in sub.kept {
                self.push(ev);
            }
            let Some(mut events) = sub.events else { return };
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ev) => self.push(ev),
                        Err(RecvError::Lagged(n)) => {
                            sub.entry.lost(n, crate::metrics::DropReason::SlowBot);
                            tracing::warn!(lost = n, "long polling fell behind; events lost");
                        }
                        Err(RecvError::Closed) => break,
                    },
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Serves the HTTP API until `shutdown`, then lets requests in flight finish within the grace
/// period.
pub async fn serve(
    listener: TcpListener,
    server: HttpServer,
    hub: Arc<Hub>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let grace = limits.shutdown_grace;
    let filter = server.filter.clone().map(|f| (f, server.post_format));
    let updates = server.long_polling.map(|max| Arc::new(Updates::new(max, filter)));
    let limiter = server.rate_limit.map(|l| Limiter::new(l, rate_limit::MAX_WAIT));
    if let Some(updates) = &updates {
        tokio::spawn(updates.clone().follow(hub.clone(), server.self_id, shutdown.clone()).in_current_span());
    }
    let bound = listener.local_addr().unwrap_or(server.addr);
    let open = hub.metrics.v11_endpoint(&format!("http {bound}"));
    // Listed while it serves: HTTP API requests are too short-lived to list one by one.
    let _listed = hub.inspector.as_ref().map(|inspector| {
        inspector.register(crate::inspector::connections::Connection {
            endpoint: format!("http {bound}"),
            transport: "http",
            role: "api",
            peer: String::new(),
            self_id: server.self_id,
            since: crate::inspector::unix_ms(),
        })
    });
    let endpoint = Arc::new(Endpoint { server, hub, limits, updates, limiter, open });
    let watch = shutdown.clone();
    accept_loop(listener, MAX_CONNECTIONS, grace, shutdown, "v11 HTTP API", move |stream, peer| {
        let span = tracing::info_span!("v11_http", %peer);
        connection(stream, endpoint.clone(), watch.clone()).instrument(span)
    })
    .await;
}

async fn connection(stream: TcpStream, endpoint: Arc<Endpoint>, mut shutdown: watch::Receiver<bool>) {
    let _open = crate::metrics::OpenConnection::new(endpoint.open.clone());
    let service = service_fn(move |req| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(handle(req, &endpoint).await) }.in_current_span()
    });
    serve_http1(stream, service, &mut shutdown).await;
}

/// Serves one HTTP/1 connection with `service` until the client ends it; at `shutdown` the
/// request in flight (if any) finishes and the connection closes.
async fn serve_http1<S>(stream: TcpStream, service: S, shutdown: &mut watch::Receiver<bool>)
where
    S: hyper::service::HttpService<Incoming, ResBody = HttpBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = if *shutdown.borrow() {
        conn.as_mut().graceful_shutdown();
        conn.await
    } else {
        tokio::select! {
            ended = conn.as_mut() => ended,
            _ = shutdown.changed() => {
                // Finish the request in flight (if any), then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "HTTP connection ended with an error");
    }
}

/// A connection to another listener (the forward WebSocket's) whose first request is for a
/// `/files/` URL: it is served as the HTTP API's port serves those, and only those (any other
/// path is 404), so that a bridge with no HTTP server still serves the URLs it gives out.
pub async fn serve_files(stream: TcpStream, hub: Arc<Hub>, shutdown: &mut watch::Receiver<bool>) {
    let service = service_fn(move |req: Request<Incoming>| {
        let hub = hub.clone();
        async move { Ok::<_, Infallible>(files_route(&req, &hub).await.unwrap_or_else(|| whole(StatusCode::NOT_FOUND, ""))) }
            .in_current_span()
    });
    serve_http1(stream, service, shutdown).await;
}

/// A response body: a whole answer, or a file streamed from the backend.
type HttpBody = Either<Full<Bytes>, ChannelBody>;

fn whole(status: StatusCode, body: impl Into<Bytes>) -> Response<HttpBody> {
    let mut resp = Response::new(Either::Left(Full::new(body.into())));
    *resp.status_mut() = status;
    resp
}

async fn handle(req: Request<Incoming>, endpoint: &Endpoint) -> Response<HttpBody> {
    if let Some(resp) = files_route(&req, &endpoint.hub).await {
        return resp;
    }
    match answer(req, endpoint).await {
        Ok(answer) => {
            let mut resp = whole(StatusCode::OK, answer.to_json());
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
            resp
        }
        Err(error) => {
            let status = error.status();
            match error {
                RequestError::TokenMissing | RequestError::TokenWrong => tracing::info!(%error, "request refused"),
                RequestError::TooComplex(_) | RequestError::Busy(_) => {
                    tracing::warn!(%error, %status, "request from bot refused: too costly to decode")
                }
                _ => tracing::debug!(%error, %status, "request refused"),
            }
            whole(status, Bytes::new())
        }
    }
}

/// The bridge's own file URLs (README "Media"), signed, so they need no access token; `None`
/// when the request is not for one.
async fn files_route(req: &Request<Incoming>, hub: &Arc<Hub>) -> Option<Response<HttpBody>> {
    let token = req.uri().path().strip_prefix(FILES_PREFIX)?;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Some(whole(StatusCode::METHOD_NOT_ALLOWED, ""));
    }
    Some(match serve_file(hub.clone(), token).await {
        Served::File(resp) => resp.map(Either::Right),
        Served::Status(status, text) => whole(status, text),
    })
}

/// The OneBot answer to one request, or the HTTP status that refuses it.
async fn answer(req: Request<Incoming>, endpoint: &Endpoint) -> Result<v11::Response, RequestError> {
    let (parts, body) = req.into_parts();
    if parts.method != Method::GET && parts.method != Method::POST {
        return Err(RequestError::Method(parts.method));
    }
    // The token first: a request without a good one costs no more than its headers.
    let query = parts.uri.query();
    let authorization = parts.headers.get(AUTHORIZATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match check_token(endpoint.server.token.as_deref(), presented_token(authorization.as_deref(), query).as_deref()) {
        Auth::Ok => {}
        Auth::Missing => return Err(RequestError::TokenMissing),
        Auth::Wrong => return Err(RequestError::TokenWrong),
    }

    let content_type = parts.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let limit = endpoint.limits.max_message;
    let declared =
        parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(RequestError::TooLarge { limit });
    }
    let bytes = read_body(body, declared, limit).await?;
    // The decoded JSON keeps its parse budget until the request is answered.
    let mut _json_budget = None;
    let json_body = if content_type.contains("application/json") && !bytes.is_empty() {
        let (json, budget) = crate::decode::json(&bytes).await.map_err(|e| match e {
            crate::decode::DecodeError::Busy(busy) => RequestError::Busy(busy.to_string()),
            e if e.is_refusal() => RequestError::TooComplex(e.to_string()),
            e => RequestError::BadJson(e.to_string()),
        })?;
        _json_budget = Some(budget);
        Some(json)
    } else {
        None
    };
    let form = if content_type.contains("application/x-www-form-urlencoded") {
        Some(pairs_to_params(url::form_urlencoded::parse(&bytes))?)
    } else {
        None
    };
    drop(bytes);

    // Lookup order JSON body root > form > query: later sources overwrite earlier ones.
    let mut merged = pairs_to_params(url::form_urlencoded::parse(query.unwrap_or("").as_bytes()))?;
    merged.extend(form.unwrap_or_default());
    if let Some(Value::Object(root)) = json_body {
        merged.extend(root);
    }
    merged.remove("access_token");

    let path = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy();
    let (action, mut params) = if path == "/" {
        // go-cqhttp's `POST /` with `{action, params}`.
        let action = merged.get("action").and_then(Value::as_str).unwrap_or("").to_owned();
        let mut params = match merged.remove("params") {
            Some(Value::Object(params)) => params,
            _ => Map::new(),
        };
        if let Some(self_id) = merged.remove("self_id") {
            params.entry("self_id").or_insert(self_id);
        }
        (action, params)
    } else {
        (path.strip_prefix('/').unwrap_or(&path).to_owned(), merged)
    };

    if let (true, Some(updates)) = (action == "get_updates", &endpoint.updates) {
        return Ok(get_updates(updates, &params, endpoint.server.post_format).await);
    }
    let entry = match choose_account(endpoint, &mut params) {
        Ok(entry) => entry,
        Err(error) => {
            tracing::debug!(%action, %error, "no bot account for the request");
            return Ok(error.to_response());
        }
    };
    tracing::debug!(%action, self_id = entry.account.v11_id, "HTTP API call");
    let request = v11::Request { action: action.clone(), params, echo: None };
    let answer = match tokio::time::timeout(
        ACTION_DEADLINE,
        endpoint.hub.handle_limited_action(&entry, request, endpoint.server.post_format, endpoint.limiter.as_ref()),
    )
    .await
    {
        Ok(answer) => answer,
        Err(_) => {
            tracing::warn!(%action, "action not finished within {ACTION_DEADLINE:?}; answered with a failure");
            v11::Response::failed(
                100,
                "BACKEND_TIMEOUT",
                format!("the action did not finish within {} s", ACTION_DEADLINE.as_secs()),
            )
        }
    };
    Ok(answer.with_echo(None))
}

/// go-cqhttp's `get_updates` (`limit`: 0 is all; `timeout`: seconds to wait for the first event,
/// 0 is as long as an action may take).
async fn get_updates(updates: &Updates, params: &Map<String, Value>, format: v11::PostFormat) -> v11::Response {
    let limit = params.get("limit").and_then(lenient_i64).unwrap_or(0).max(0) as usize;
    let longest = ACTION_DEADLINE - Duration::from_secs(5);
    let wait = match params.get("timeout").and_then(lenient_i64).unwrap_or(0) {
        n if n <= 0 => longest,
        n => Duration::from_secs(n as u64).min(longest),
    };
    let events = updates.take(limit, wait).await;
    v11::Response::ok(Value::Array(events.iter().map(|ev| ev.to_value(format)).collect()))
}

/// Reads the body within [`BODY_TIMEOUT`] and `limit` bytes, into one buffer (sized by the
/// `Content-Length` when there is one): a body is held once, never as chunks plus their copy.
async fn read_body(body: Incoming, declared: Option<u64>, limit: usize) -> Result<Bytes, RequestError> {
    let read = async {
        let mut body = Limited::new(body, limit);
        let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                buf.extend_from_slice(&data);
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(buf.freeze())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(RequestError::BodyTimeout(BODY_TIMEOUT)),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => Err(RequestError::TooLarge { limit }),
        Ok(Err(error)) => Err(RequestError::Body(error.to_string())),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Query or form pairs as params: the first value of a repeated key wins (Go's `Values.Get`),
/// and a value that looks like JSON (`{…}` or `[…]`) and is valid JSON is that JSON. The values
/// decoded as JSON are pre-scanned together, within the limits of one document.
fn pairs_to_params<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
) -> Result<Map<String, Value>, RequestError> {
    let mut params = Map::new();
    let mut values_left = ScanLimits::PEER.max_values;
    for (key, value) in pairs {
        if params.contains_key(key.as_ref()) {
            continue;
        }
        let trimmed = value.trim_start();
        let json = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            let limits = ScanLimits { max_values: values_left, ..ScanLimits::PEER };
            let shape = scan_json(value.as_bytes(), limits).map_err(|e| RequestError::TooComplex(e.to_string()))?;
            values_left -= shape.values;
            serde_json::from_str::<Value>(&value).ok()
        } else {
            None
        };
        params.insert(key.into_owned(), json.unwrap_or_else(|| Value::String(value.into_owned())));
    }
    Ok(params)
}

/// Why a request has no bot account to go to.
#[derive(Debug, thiserror::Error)]
pub enum NoAccount {
    #[error("the backend has several bot accounts {0:?}: add self_id=<one of them> to the request, or set self-id on this HTTP server")]
    Ambiguous(Vec<i64>),
    #[error("bot account {0} is not known to the backend (yet)")]
    NotKnown(i64),
    #[error("no bot account is online on the backend yet")]
    NoneYet,
}

impl NoAccount {
    /// The OneBot failure the bot gets (HTTP 200, as every OneBot answer).
    pub fn to_response(&self) -> v11::Response {
        let msg = match self {
            NoAccount::Ambiguous(_) => "BRIDGE_AMBIGUOUS_ACCOUNT",
            NoAccount::NotKnown(_) | NoAccount::NoneYet => "BACKEND_UNAVAILABLE",
        };
        v11::Response::failed(100, msg, self.to_string())
    }
}

/// The account a request is for (see the module header). A `self_id` param is taken out of the
/// params whether or not it decides.
fn choose_account(endpoint: &Endpoint, params: &mut Map<String, Value>) -> Result<Arc<AccountEntry>, NoAccount> {
    let asked = params.get("self_id").and_then(lenient_i64);
    if asked.is_some() {
        params.remove("self_id");
    }
    let want = endpoint.server.self_id.or(asked);
    match endpoint.hub.select(want) {
        Selection::Ready(entry) => Ok(entry),
        Selection::Ambiguous(ids) => Err(NoAccount::Ambiguous(ids)),
        Selection::Unknown => Err(want.map_or(NoAccount::NoneYet, NoAccount::NotKnown)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Events waiting for `get_updates` are bounded in bytes as well as in count: a bot that
    /// never polls while large events arrive keeps the newest within the bound, and what is
    /// taken leaves the count of bytes.
    #[tokio::test]
    async fn events_waiting_for_get_updates_are_bounded_in_bytes() {
        let updates = Updates::new(2000, None);
        let event = |n: usize| {
            let body = json!({"post_type": "notice", "n": n, "text": "x".repeat(crate::hub::EVENT_QUEUE_BYTES / 16)});
            Arc::new(V11Event::new(10001, body.as_object().unwrap().clone()))
        };
        for n in 0..20 {
            updates.push(event(n));
            let q = updates.queue.lock_unpoisoned();
            assert!(q.bytes <= crate::hub::EVENT_QUEUE_BYTES, "{} bytes waiting", q.bytes);
            assert_eq!(q.bytes, q.events.iter().map(|(_, w)| w).sum::<usize>());
        }
        let taken = updates.take(0, Duration::ZERO).await;
        assert!(taken.len() < 9, "{} events of an eighth of the bound each", taken.len());
        assert_eq!(taken.last().unwrap().to_value(Default::default())["n"], 19, "the newest kept");
        assert_eq!(updates.queue.lock_unpoisoned().bytes, 0);
    }

    #[test]
    fn query_and_form_values_that_look_like_json_are_json() {
        let params = pairs_to_params(url::form_urlencoded::parse(
            b"a=1&message=%5B%7B%22type%22%3A%22text%22%2C%22data%22%3A%7B%22text%22%3A%22hi%22%7D%7D%5D&o=%7Bx&a=2&e=",
        ))
        .unwrap();
        assert_eq!(params["a"], "1", "the first of a repeated key wins, numbers stay text");
        assert_eq!(params["message"], json!([{"type": "text", "data": {"text": "hi"}}]));
        assert_eq!(params["o"], "{x", "not valid JSON: kept as text");
        assert_eq!(params["e"], "");
    }

    #[test]
    fn query_and_form_json_too_costly_to_decode_is_refused() {
        let half = format!("[{}0]", "0,".repeat(ScanLimits::PEER.max_values / 2));
        let one = format!("a={half}");
        assert!(pairs_to_params(url::form_urlencoded::parse(one.as_bytes())).is_ok());
        let two = format!("a={half}&b={half}&c=[1]");
        let refused = pairs_to_params(url::form_urlencoded::parse(two.as_bytes())).unwrap_err();
        assert_eq!(refused.status(), 413, "the values of one request count together: {refused}");
    }

    #[test]
    fn refusals_have_go_cqhttp_statuses() {
        assert_eq!(RequestError::Method(Method::PUT).status(), 404);
        assert_eq!(RequestError::TooLarge { limit: 1 }.status(), 413);
        assert_eq!(RequestError::BadJson("x".into()).status(), 400);
        assert_eq!(RequestError::TooComplex("x".into()).status(), 413);
        assert_eq!(RequestError::TokenMissing.status(), 401);
        assert_eq!(RequestError::TokenWrong.status(), 403);
    }
}
