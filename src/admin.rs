//! The admin listener (`--admin ADDR`): plain HTTP, bridge as **server**, for operators and
//! their tools, never for bots. Off unless configured: it tells anyone who reaches it which
//! accounts and backends the bridge has.
//!
//! - `GET /health`: 200 `ok` while the process runs.
//! - `GET /ready`: 200 when at least one backend link is up and at least one bot account is
//!   online, else 503; both with a JSON body saying what is there and what is missing.
//! - `GET /metrics`: the Prometheus text exposition of [`crate::metrics`].
//! - Any other path: 404; any other method on these paths: 405.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more wait to be accepted), headers
//! within [`HEADER_TIMEOUT`]; request bodies are never read. At shutdown it stops accepting and
//! closes its connections within the grace period.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Instrument;

use crate::hub::Hub;
use crate::net::accept_loop;

/// Connections served at once: a scraper and a probe or two.
pub const MAX_CONNECTIONS: usize = 8;
/// Time a client has to send a request's headers (also bounds idle keep-alive connections).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the admin endpoints until `shutdown`.
pub async fn serve(listener: TcpListener, hub: Arc<Hub>, grace: Duration, shutdown: watch::Receiver<bool>) {
    let watch = shutdown.clone();
    accept_loop(listener, MAX_CONNECTIONS, grace, shutdown, "admin", move |stream, peer| {
        let span = tracing::info_span!("admin", %peer);
        connection(stream, hub.clone(), watch.clone()).instrument(span)
    })
    .await;
}

async fn connection(stream: TcpStream, hub: Arc<Hub>, mut shutdown: watch::Receiver<bool>) {
    let service = service_fn(move |req| {
        let hub = hub.clone();
        async move { Ok::<_, Infallible>(handle(&req, &hub)) }
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

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn handle(req: &Request<Incoming>, hub: &Hub) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = req.uri().path();
    if !matches!(path, "/health" | "/ready" | "/metrics") {
        return respond(StatusCode::NOT_FOUND, TEXT, "not found\n");
    }
    if req.method() != Method::GET {
        let mut resp = respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
        resp.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    match path {
        "/health" => respond(StatusCode::OK, TEXT, "ok\n"),
        "/ready" => {
            let (ready, body) = readiness(hub);
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            respond(status, "application/json; charset=utf-8", body.to_string())
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
