//! The admin listener (`--admin ADDR`): plain HTTP, bridge as **server**, for operators and
//! their tools, never for bots. Off unless configured: it tells anyone who reaches it which
//! accounts and backends the bridge has.
//!
//! - `GET /health`: 200 `ok` while the process runs.
//! - `GET /ready`: 200 when at least one backend link is up and at least one bot account is
//!   online, else 503; both with a JSON body saying what is there and what is missing.
//! - `GET /metrics`: the Prometheus text exposition of [`crate::metrics`].
//! - `/inspector/…`: the translation inspector ([`crate::inspector`]), when it is on.
//! - `/playground/…`: the playground's chat page ([`crate::demo`]), with `--demo` only.
//! - `GET /`: the playground, else the inspector, else 404.
//! - Any other path: 404; a method a path does not take: 405.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more wait to be accepted), headers
//! within [`HEADER_TIMEOUT`]; request bodies are read only by the playground, within its limit.
//! Streams ([`sse`]) end at shutdown; at shutdown it stops accepting and closes its connections
//! within the grace period.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use crate::hub::Hub;
use crate::net::accept_loop;

/// Connections served at once: a scraper, a probe, and the pages' browsers (each open page holds
/// one for its stream).
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has to send a request's headers (also bounds idle keep-alive connections).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Comment lines sent on an idle stream so that proxies and browsers keep it open.
const STREAM_KEEPALIVE: Duration = Duration::from_secs(15);

/// Every response body of the admin listener: whole, or a stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// What the admin listener serves besides health and metrics.
#[derive(Clone, Default)]
pub struct Pages {
    /// The playground's chat page and its actions (`--demo`).
    pub playground: Option<Arc<crate::demo::Playground>>,
}

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    pages: Pages,
    grace: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let watch = shutdown.clone();
    accept_loop(listener, MAX_CONNECTIONS, grace, shutdown, "admin", move |stream, peer| {
        let span = tracing::info_span!("admin", %peer);
        connection(stream, hub.clone(), pages.clone(), watch.clone()).instrument(span)
    })
    .await;
}

async fn connection(stream: TcpStream, hub: Arc<Hub>, pages: Pages, mut shutdown: watch::Receiver<bool>) {
    let stop = shutdown.clone();
    let service = service_fn(move |req| {
        let (hub, pages, stop) = (hub.clone(), pages.clone(), stop.clone());
        async move { Ok::<_, Infallible>(handle(req, &hub, &pages, stop).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "admin connection ended with an error");
    }
}

/// A whole response.
pub fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub const TEXT: &str = "text/plain; charset=utf-8";
pub const JSON: &str = "application/json; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";

/// A JSON answer.
pub fn respond_json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = respond(status, JSON, value.to_string());
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// 405 naming the methods the path takes.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, format!("only {allow}\n"));
    resp.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

pub fn not_found() -> Response<Body> {
    respond(StatusCode::NOT_FOUND, TEXT, "not found\n")
}

/// Reads a request body of at most `limit` bytes; a larger one is answered 413, a broken one 400.
pub async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(respond(StatusCode::PAYLOAD_TOO_LARGE, TEXT, format!("the body is larger than {limit} bytes\n")))
        }
        Err(error) => Err(respond(StatusCode::BAD_REQUEST, TEXT, format!("cannot read the body: {error}\n"))),
    }
}

/// A Server-Sent Events stream: `initial` first, then every item `live` carries, each already
/// formatted as one SSE message (`data: …\n\n`). A reader that falls behind the channel loses
/// the oldest items and is told so (an `event: lagged` message with the count). A comment every
/// few seconds keeps an idle stream open; the stream ends at shutdown.
pub fn sse(initial: Vec<Bytes>, live: broadcast::Receiver<Bytes>, shutdown: watch::Receiver<bool>) -> Response<Body> {
    struct State {
        initial: std::vec::IntoIter<Bytes>,
        live: broadcast::Receiver<Bytes>,
        shutdown: watch::Receiver<bool>,
    }
    let state = State { initial: initial.into_iter(), live, shutdown };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        if let Some(item) = s.initial.next() {
            return Some((Ok(Frame::data(item)), s));
        }
        if *s.shutdown.borrow() {
            return None;
        }
        let item = tokio::select! {
            item = s.live.recv() => match item {
                Ok(item) => item,
                Err(broadcast::error::RecvError::Lagged(n)) => Bytes::from(format!("event: lagged\ndata: {n}\n\n")),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep(STREAM_KEEPALIVE) => Bytes::from_static(b": keep-alive\n\n"),
            _ = s.shutdown.changed() => return None,
        };
        Some((Ok::<_, Infallible>(Frame::data(item)), s))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// One SSE message carrying `data` (a JSON text: it holds no raw newline).
pub fn sse_message(data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 8);
    out.push_str("data: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

async fn handle(
    req: Request<Incoming>,
    hub: &Arc<Hub>,
    pages: &Pages,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/inspector" || path.starts_with("/inspector/") {
        return match &hub.inspector {
            Some(inspector) => crate::inspector::page::handle(req, hub, inspector, shutdown).await,
            None => not_found(),
        };
    }
    if path == "/playground" || path.starts_with("/playground/") {
        return match &pages.playground {
            Some(playground) => crate::demo::page::handle(req, playground, shutdown).await,
            None => not_found(),
        };
    }
    if !matches!(path.as_str(), "/" | "/health" | "/ready" | "/metrics") {
        return not_found();
    }
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    match path.as_str() {
        "/" => {
            let to = if pages.playground.is_some() {
                "/playground/"
            } else if hub.inspector.is_some() {
                "/inspector/"
            } else {
                return not_found();
            };
            let mut resp = respond(StatusCode::SEE_OTHER, TEXT, "");
            resp.headers_mut().insert(LOCATION, HeaderValue::from_static(to));
            resp
        }
        "/health" => respond(StatusCode::OK, TEXT, "ok\n"),
        "/ready" => {
            let (ready, body) = readiness(hub);
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            respond(status, JSON, body.to_string())
        }
        _ => respond(StatusCode::OK, crate::metrics::CONTENT_TYPE, hub.metrics.encode()),
    }
}

/// Whether the bridge can carry a bot's traffic now, and the report `/ready` answers with.
pub fn readiness(hub: &Hub) -> (bool, serde_json::Value) {
    let links: Vec<_> = hub
        .metrics
        .links()
        .into_iter()
        .map(|l| json!({"link": l.link, "kind": l.kind, "up": l.metrics.is_up()}))
        .collect();
    let any_link = links.iter().any(|l| l["up"] == true);
    let mut online: Vec<i64> =
        hub.accounts_now().into_iter().filter(|(_, online)| *online).map(|(e, _)| e.account.v11_id).collect();
    online.sort_unstable();
    let mut missing = Vec::new();
    if !any_link {
        missing.push("a backend link that is up");
    }
    if online.is_empty() {
        missing.push("a bot account that is online");
    }
    let ready = missing.is_empty();
    (ready, json!({"ready": ready, "links": links, "accounts_online": online, "missing": missing}))
}
