//! The inspector's page and streams on the admin listener; read-only (every path takes `GET`
//! only, and nothing on the page changes the bridge).
//!
//! - `GET /inspector/`: the page (HTML, CSS and script in one file embedded in the binary; no
//!   build step, nothing fetched from elsewhere). `/inspector` redirects there.
//! - `GET /inspector/status`: JSON `{links, accounts, connections, counters, inspector}`, with
//!   every configured secret masked.
//! - `GET /inspector/feed`: Server-Sent Events, one `data:` message per item (its JSON, see
//!   [`super`]): the kept items oldest first, then live ones. A reader that falls behind gets
//!   `event: lagged` with the number it missed.
//! - Other paths under `/inspector/`: 404; other methods: 405.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::Inspector;
use crate::admin::{method_not_allowed, not_found, respond, respond_json, sse, Body, HTML, TEXT};
use crate::hub::Hub;

/// The page: markup, style and script together.
const PAGE: &str = include_str!("page.html");

pub async fn handle(
    req: Request<Incoming>,
    hub: &Arc<Hub>,
    inspector: &Arc<Inspector>,
    shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    let path = req.uri().path();
    if !matches!(path, "/inspector" | "/inspector/" | "/inspector/status" | "/inspector/feed") {
        return not_found();
    }
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    match path {
        "/inspector" => {
            let mut resp = respond(StatusCode::SEE_OTHER, TEXT, "");
            resp.headers_mut().insert(LOCATION, HeaderValue::from_static("/inspector/"));
            resp
        }
        "/inspector/" => {
            let mut resp = respond(StatusCode::OK, HTML, PAGE);
            resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        "/inspector/status" => respond_json(StatusCode::OK, &inspector.redact(&status(hub, inspector))),
        _ => {
            let (kept, live) = inspector.subscribe();
            // Something to write at once, so the response starts (and the page shows the feed
            // connected) before the first item; it also sets the browser's reconnect delay.
            let mut initial = Vec::with_capacity(kept.len() + 1);
            initial.push(Bytes::from_static(b"retry: 3000\n\n"));
            initial.extend(kept);
            sse(initial, live, shutdown)
        }
    }
}

/// What the status panel shows (before redaction).
pub fn status(hub: &Hub, inspector: &Inspector) -> Value {
    let accounts_now = hub.accounts_now();
    // Which links carry an account and are connected (links made at run time, such as each
    // reverse-WebSocket connection, have no configured state).
    let mut carried: HashMap<usize, bool> = HashMap::new();
    for (entry, _) in &accounts_now {
        let link = entry.link();
        *carried.entry(link.id).or_default() |= link.is_connected();
    }
    let backend = |id: usize| {
        let info = hub.backend_info(id);
        let profile = if info.profile.is_empty() { "generic" } else { info.profile.as_str() };
        json!({
            "implementation": info.implementation,
            "version": info.version,
            "onebot_version": info.onebot_version,
            "profile": profile,
        })
    };
    let configured = hub.metrics.links();
    let mut links = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for link in &configured {
        let id: Option<usize> = link.link.parse().ok();
        let mut row = id.map(backend).unwrap_or_else(|| json!({}));
        row["link"] = json!(link.link);
        row["transport"] = json!(link.kind);
        row["up"] = json!(link.metrics.is_up());
        row["state"] = json!(if link.metrics.is_up() { "up" } else { "down" });
        row["reconnects"] = json!(link.metrics.reconnects());
        links.push(row);
        listed.extend(id);
    }
    for (id, _) in hub.backends_now() {
        if listed.contains(&id) {
            continue;
        }
        let up = carried.get(&id).copied().unwrap_or(false);
        let mut row = backend(id);
        row["link"] = json!(id.to_string());
        row["transport"] = json!("ws_reverse (dialled in)");
        row["up"] = json!(up);
        row["state"] = json!(if up { "up" } else { "down" });
        row["reconnects"] = Value::Null;
        links.push(row);
    }

    let (mut received, mut delivered, mut dropped) = (0, 0, 0);
    let mut accounts: Vec<(i64, Value)> = accounts_now
        .iter()
        .map(|(entry, online)| {
            let (r, d, x) = entry.stats.counts();
            received += r;
            delivered += d;
            dropped += x;
            let account = &entry.account;
            let row = json!({
                "v11_id": account.v11_id,
                "platform": account.self_id.platform,
                "user_id": account.self_id.user_id,
                "online": online,
                "link": entry.link().id.to_string(),
                "events_received": r,
                "events_delivered": d,
                "events_dropped": x,
            });
            (account.v11_id, row)
        })
        .collect();
    accounts.sort_by_key(|(id, _)| *id);

    let (connections, untracked) = inspector.connections();
    let (actions, failed) = hub.metrics.action_totals();
    let (items, bytes) = inspector.kept();
    json!({
        "links": links,
        "accounts": accounts.into_iter().map(|(_, row)| row).collect::<Vec<_>>(),
        "connections": connections,
        "connections_untracked": untracked,
        "counters": {
            "events_received": received,
            "events_delivered": delivered,
            "events_dropped": dropped,
            "actions": actions,
            "actions_failed": failed,
        },
        "inspector": {
            "items": items,
            "bytes": bytes,
            "max_items": super::RING_ITEMS,
            "max_bytes": super::RING_BYTES,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{MappingSet, Options, Translator};
    use crate::hub::Store;
    use crate::inspector::connections::Connection;

    /// A token in a registered URL never reaches the status, and the counters are there.
    #[test]
    fn the_status_lists_connections_with_secrets_masked() {
        let Ok(maps) = MappingSet::embedded() else { panic!("the embedded tables load") };
        let translator = Translator::new(Arc::new(maps), Store::Memory(Box::default()), Options::default());
        let inspector = Arc::new(Inspector::new(vec!["s3cret-token".into()]));
        let hub = Hub::new(translator, 16).with_inspector(inspector.clone());
        let _open = inspector.register(Connection {
            endpoint: "http://bot.example/hook?access_token=s3cret-token".into(),
            transport: "http_post",
            role: "event",
            peer: "bot.example".into(),
            self_id: Some(10001),
            since: 1,
        });
        let status = inspector.redact(&status(&hub, &inspector));
        let text = status.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(status["connections"][0]["endpoint"], "http://bot.example/hook?access_token=***");
        assert_eq!(status["counters"]["actions"], 0);
        assert!(status["links"].is_array() && status["accounts"].is_array());
    }
}
