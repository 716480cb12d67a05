//! v11 HTTP POST, bridge as **client**: every event POSTed to the bot's webhook (go-cqhttp
//! `servers: - http: post:`, reference §1.3).
//!
//! One worker per bot account (only the entry's `self-id` when it has one), started when the
//! account appears and kept while the bridge runs. It POSTs the account's events one at a time,
//! in order: the body is the event's compact JSON in the entry's post format (byte-identical to
//! JavaScript's `JSON.stringify` of it, so Koishi's check over re-serialised JSON and nonebot's
//! over the raw bytes both pass; unlike go-cqhttp there is no trailing newline), with
//! `Content-Type: application/json`, `X-Self-ID: <v11 id>`, `User-Agent: CQHttp/4.15.0` and, when a
//! secret is set, `X-Signature: sha1=<hex HMAC-SHA1(secret, body)>`. No `Authorization` header,
//! as go-cqhttp. Heartbeats go the same way every `heartbeat` (go-cqhttp sends them to HTTP POST
//! too); there is no lifecycle event.
//!
//! Each attempt has `timeout`; a transport failure (connection refused or reset, timeout) is
//! retried `max-retries` times, `retries-interval` apart, then the event is given up (`warn`).
//! An HTTP error status is never retried (go-cqhttp ignores the status). A reply body that is a
//! JSON object is a **quick operation** for that event and runs before the next event is posted
//! (so replies keep the events' order); an empty body, 204 or anything else does nothing.
//!
//! Full policy: the worker's event queue is its subscription to the account (a broadcast of
//! `limits.event_queue` events and `hub::EVENT_QUEUE_BYTES`). When the webhook falls a whole
//! queue behind, the link waits for it (`--slow-bot-wait`, at most 5 s a minute); past that the oldest waiting events are dropped; each loss is counted and logged
//! (`warn`, `dropped`, `total`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use hyper::Uri;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::Value;
use sha1::Sha1;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::{HttpPost, Limits};
use crate::core::event::{heartbeat as heartbeat_event, V11Event};
use crate::fanout;
use crate::hub::{AccountEntry, Hub};
use crate::net::unix_now;

/// go-cqhttp's `User-Agent` for everything it sends to bots.
pub const USER_AGENT_VALUE: &str = "CQHttp/4.15.0";
/// Pooled connections to the webhook are dropped after this long idle: below the 5 s keep-alive
/// of common Python servers (uvicorn, hypercorn), so a connection is not reused as it closes.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Why one POST produced no reply.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("the bridge is shutting down")]
    Shutdown,
}

/// POSTs to one webhook URL.
struct Poster {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    post: HttpPost,
    max_reply: usize,
}

/// Whether the worker goes on after a delivery.
enum Next {
    Continue,
    Stop,
}

/// `sha1=<lowercase hex HMAC-SHA1(secret, body)>`, the `X-Signature` value.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let mut out = String::with_capacity(45);
    out.push_str("sha1=");
    for b in mac.finalize().into_bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether `presented` (an `X-Signature` value) is the body's signature with `secret`; compared in
/// constant time by the HMAC itself.
pub fn signature_matches(secret: &str, body: &[u8], presented: &str) -> bool {
    let Some(hex) = presented.trim().strip_prefix("sha1=") else { return false };
    if hex.len() != 40 || !hex.is_ascii() {
        return false;
    }
    let digest: Option<Vec<u8>> = (0..20).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
    let (Some(digest), Ok(mut mac)) = (digest, <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

/// Posts every account's events to one bot URL until `shutdown`.
pub async fn run(
    post: HttpPost,
    hub: Arc<Hub>,
    limits: Limits,
    heartbeat: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let uri = match post.url.as_str().parse::<Uri>() {
        Ok(uri) => uri,
        Err(error) => {
            tracing::error!(%error, "the HTTP POST URL is not usable; no events are posted to it");
            let _ = shutdown.changed().await;
            return;
        }
    };
    let client =
        Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).pool_idle_timeout(POOL_IDLE).build_http();
    let poster = Arc::new(Poster { client, uri, post, max_reply: limits.max_message });
    tracing::info!("posting events to the bot's webhook");

    let mut changed = hub.accounts_changed();
    let mut workers = JoinSet::new();
    let mut started = HashSet::new();
    loop {
        changed.borrow_and_update();
        for (entry, _online) in hub.accounts_now() {
            let id = entry.account.v11_id;
            if poster.post.self_id.is_some_and(|want| want != id) || !started.insert(id) {
                continue;
            }
            tracing::info!(self_id = id, "bot account: posting its events");
            let span = tracing::info_span!("account", self_id = id);
            let task = worker(entry, hub.clone(), poster.clone(), heartbeat, shutdown.clone());
            workers.spawn(task.instrument(span));
        }
        tokio::select! {
            notified = changed.changed() => {
                if notified.is_err() {
                    // The hub is gone: nothing more can appear.
                    let _ = shutdown.changed().await;
                    break;
                }
            }
            Some(_) = workers.join_next(), if !workers.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    let grace = limits.shutdown_grace;
    if tokio::time::timeout(grace, async { while workers.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(left = workers.len(), "posts still in flight after the grace period; aborted");
        workers.abort_all();
    }
}

/// Posts one account's events (and heartbeats) in order until the bridge stops.
async fn worker(
    entry: Arc<AccountEntry>,
    hub: Arc<Hub>,
    poster: Arc<Poster>,
    heartbeat: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _listed = hub.inspector.as_ref().map(|inspector| {
        // Without its query or credentials: a token may be there.
        let mut url = poster.post.url.clone();
        url.set_query(None);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        inspector.register(crate::inspector::connections::Connection {
            endpoint: url.to_string(),
            transport: "http_post",
            role: "event",
            peer: url.host_str().unwrap_or_default().to_owned(),
            self_id: Some(entry.account.v11_id),
            since: crate::inspector::unix_ms(),
        })
    });
    let (kept, mut events) = entry.subscribe();
    for ev in kept {
        if let Next::Stop = poster.deliver(&hub, &entry, &ev, &mut shutdown).await {
            return;
        }
    }
    let mut beat = tokio::time::interval(heartbeat.unwrap_or(Duration::from_secs(3600)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.reset();
    let mut dropped_total: u64 = 0;
    loop {
        let ev = tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            ev = events.recv() => match ev {
                Ok(ev) => ev,
                Err(fanout::RecvError::Lagged(n)) => {
                    dropped_total += n;
                    entry.lost(n, crate::metrics::DropReason::SlowBot);
                    tracing::warn!(dropped = n, total = dropped_total, "the bot's webhook is slower than the events, and was waited for as long as --slow-bot-wait allows; oldest events dropped");
                    continue;
                }
                Err(fanout::RecvError::Closed) => return,
            },
            _ = beat.tick(), if heartbeat.is_some() => {
                let interval = heartbeat.unwrap_or_default().as_millis() as u64;
                let status = hub.status_of(&entry);
                Arc::new(heartbeat_event(entry.account.v11_id, unix_now(), interval, status))
            }
        };
        if let Next::Stop = poster.deliver(&hub, &entry, &ev, &mut shutdown).await {
            return;
        }
    }
}

impl Poster {
    /// POSTs one event (with retries) and runs the quick operation its reply asks for.
    async fn deliver(
        &self,
        hub: &Hub,
        entry: &AccountEntry,
        ev: &V11Event,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Next {
        if self.post.filter.as_ref().is_some_and(|f| !f.passes(ev, self.post.post_format)) {
            return Next::Continue;
        }
        let body: Bytes = ev.json(self.post.post_format).into();
        let reply = match self.post_with_retries(entry.account.v11_id, body, shutdown).await {
            Ok(reply) => reply,
            Err(PostError::Shutdown) => return Next::Stop,
            Err(error) => {
                tracing::warn!(%error, post_type = ev.post_type(), retries = self.post.max_retries, "event not delivered to the bot's webhook; given up");
                return Next::Continue;
            }
        };
        let Some(operation) = quick_operation_of(&reply).await else { return Next::Continue };
        let context = ev.to_value(self.post.post_format);
        tracing::debug!(post_type = ev.post_type(), "the bot's reply is a quick operation");
        if let Err(error) = hub.quick_operation(entry, &context, &operation).await {
            // Each failed step was logged with its cause.
            tracing::debug!(%error, "quick operation not fully done");
        }
        Next::Continue
    }

    /// The reply body of a POST that got an HTTP answer; transport failures are retried.
    async fn post_with_retries(
        &self,
        self_id: i64,
        body: Bytes,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Bytes, PostError> {
        let mut attempt: u32 = 0;
        loop {
            let error = match tokio::time::timeout(self.post.timeout, self.post_once(self_id, body.clone())).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(error)) => error,
                Err(_) => PostError::Timeout(self.post.timeout),
            };
            if attempt >= self.post.max_retries {
                return Err(error);
            }
            attempt += 1;
            tracing::warn!(%error, attempt, of = self.post.max_retries, "POST to the bot's webhook failed; retrying");
            if *shutdown.borrow() {
                return Err(PostError::Shutdown);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.post.retries_interval) => {}
                _ = shutdown.changed() => return Err(PostError::Shutdown),
            }
        }
    }

    /// One attempt: the request, then the reply body (at most `max_reply` bytes). A reply that
    /// arrives but cannot be read is an empty reply (the event was delivered: no retry).
    async fn post_once(&self, self_id: i64, body: Bytes) -> Result<Bytes, PostError> {
        let mut builder = hyper::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("X-Self-ID", self_id.to_string())
            .header(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(secret) = &self.post.secret {
            builder = builder.header("X-Signature", signature(secret, &body));
        }
        let request = builder.body(Full::new(body)).map_err(|e| PostError::Transport(e.to_string()))?;
        let resp = self.client.request(request).await.map_err(|e| PostError::Transport(transport_error(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            tracing::warn!(%status, "the bot's webhook answered with an HTTP error (not retried)");
        }
        match Limited::new(resp.into_body(), self.max_reply).collect().await {
            Ok(reply) => Ok(reply.to_bytes()),
            Err(error) => {
                tracing::warn!(%error, "cannot read the webhook's reply; no quick operation");
                Ok(Bytes::new())
            }
        }
    }
}

/// The client error with its cause (hyper-util's own message is only "client error (Connect)").
fn transport_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presented_signature_is_checked_against_the_body() {
        let good = signature("s3cret", b"{}");
        assert!(signature_matches("s3cret", b"{}", &good));
        assert!(signature_matches("s3cret", b"{}", &good.to_uppercase().replace("SHA1=", "sha1=")));
        assert!(!signature_matches("s3cret", b"{ }", &good));
        assert!(!signature_matches("other", b"{}", &good));
        assert!(!signature_matches("s3cret", b"{}", good.trim_start_matches("sha1=")));
        assert!(!signature_matches("s3cret", b"{}", "sha1=zz"));
        assert!(!signature_matches("s3cret", b"{}", "sha1=ééééééééééééééééééééé"));
    }

    #[test]
    fn the_signature_is_lowercase_hex_hmac_sha1() {
        // RFC 2202 test case 2.
        assert_eq!(signature("Jefe", b"what do ya want for nothing?"), "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }
}

/// Reads a webhook reply as a quick operation, leniently: a UTF-8 byte-order mark and surrounding
/// white space are ignored, an empty body or a non-object means "nothing to do", and a body that
/// looks like an object but is not valid JSON is reported (never silently ignored), as is one too
/// costly to decode (`docs/limits.md`).
async fn quick_operation_of(reply: &[u8]) -> Option<Value> {
    let text = reply.strip_prefix(b"\xef\xbb\xbf").unwrap_or(reply);
    let text = text.trim_ascii();
    if text.is_empty() {
        return None;
    }
    // The operation is small once decoded (what it runs copies what it needs).
    match crate::decode::json::<Value>(text).await.map(|(op, _budget)| op) {
        Ok(op @ Value::Object(_)) => Some(op),
        Ok(_) => None,
        Err(error) if error.is_refusal() => {
            tracing::warn!(%error, len = text.len(), "the bot's reply refused: too costly to decode; no quick operation");
            None
        }
        Err(error) => {
            if text.starts_with(b"{") {
                tracing::warn!(%error, "the bot's reply looks like a quick operation but is not valid JSON; ignored");
            }
            None
        }
    }
}

#[cfg(test)]
mod reply_tests {
    use super::quick_operation_of;
    use serde_json::json;

    #[tokio::test]
    async fn replies_are_read_leniently() {
        assert_eq!(quick_operation_of(b"\xef\xbb\xbf {\"reply\":\"hi\"}\r\n").await, Some(json!({"reply": "hi"})));
        assert_eq!(quick_operation_of(b"").await, None);
        assert_eq!(quick_operation_of(b"  ").await, None);
        assert_eq!(quick_operation_of(b"OK").await, None);
        assert_eq!(quick_operation_of(b"[1]").await, None);
        assert_eq!(quick_operation_of(b"{reply: 'x'}").await, None);
        let costly = format!("{{\"reply\":[{}0]}}", "0,".repeat(1 << 19));
        assert_eq!(quick_operation_of(costly.as_bytes()).await, None);
    }
}
