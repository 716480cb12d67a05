//! The admin listener of the real bridge: `/health` answers, `/ready` follows the backend link
//! (503 while it is down, 200 once it is up with an account online, 503 again when it goes), and
//! `/metrics` — read back with a Prometheus text-format parser that is not the bridge's — counts
//! the events and actions that went through.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request on its own connection: the status code and the body.
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        String::from_utf8(raw).unwrap()
    };
    let text = tokio::time::timeout(WAIT, exchange).await.expect("the admin listener did not answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_owned())
}

async fn ready(addr: SocketAddr) -> (u16, Value) {
    let (status, body) = request(addr, "GET", "/ready").await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("/ready body is not JSON ({e}): {body}")))
}

/// Polls `/ready` until it answers `want` (the bridge redials with back-off), at most 20 s.
async fn ready_becomes(addr: SocketAddr, want: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = ready(addr).await;
        if status == want {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "/ready stayed {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (status, body) = request(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text").samples
}

/// The value of the one sample named `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    match found.as_slice() {
        [one] => match &one.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            Metric::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Metric::Summary(_) => panic!("{name} is a summary"),
        },
        other => panic!("{} samples of {name} {labels:?}", other.len()),
    }
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_what_went_through() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    // The implementation is not there yet when the bridge starts.
    backend.stop().await;
    let bridge = start_bridge(&backend, |o| o.admin = Some("127.0.0.1:0".into())).await;
    let admin = bridge.addrs().admin.expect("an admin listener");

    assert_eq!(request(admin, "GET", "/health").await, (200, "ok\n".into()));
    let (status, body) = ready(admin).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["links"], json!([{"link": "0", "kind": "ws", "up": false}]));
    assert_eq!(body["accounts_online"], json!([]));
    assert_eq!(body["missing"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(request(admin, "GET", "/nowhere").await.0, 404);
    assert_eq!(request(admin, "POST", "/health").await.0, 405);
    assert_eq!(request(admin, "DELETE", "/metrics").await.0, 405);

    backend.resume().await;
    let body = ready_becomes(admin, 200).await;
    assert_eq!(body["links"], json!([{"link": "0", "kind": "ws", "up": true}]));
    assert_eq!(body["missing"], json!([]));
    let online = body["accounts_online"].as_array().cloned().unwrap_or_default();
    assert_eq!(online.len(), 1, "{body}");
    let self_id = online[0].to_string();

    let ws = bridge.ws_addrs()[0];
    let mut bot = Bot::connect(ws, "/", None).await.unwrap();
    assert_eq!(bot.next_frame().await["sub_type"], "connect");
    let mut user = Value::Null;
    for n in 0..3 {
        backend.push(v12_message(
            "private",
            "10001",
            json!({"message_id": format!("m{n}"), "user_id": "alice", "message": format!("hello {n}")}),
        ));
        let ev = bot.next_event().await;
        assert_eq!(ev["message"], format!("hello {n}"));
        user = ev["user_id"].clone();
    }
    for _ in 0..2 {
        let sent = bot.call("send_private_msg", json!({"user_id": user, "message": "hi"})).await;
        assert_eq!(sent["status"], "ok", "{sent}");
    }
    let refused = bot.call("no_such_action_here", json!({})).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    let class = format!("failed_{}", class_of(refused["retcode"].as_i64().unwrap_or_default()));

    let m = scrape(admin).await;
    let me = [("self_id", self_id.as_str())];
    assert_eq!(value(&m, "onebot_bridge_events_received_total", &me), 3.0);
    assert_eq!(value(&m, "onebot_bridge_events_delivered_total", &me), 3.0);
    for reason in ["slow_bot", "unclaimed", "untranslatable"] {
        let labels = [("self_id", self_id.as_str()), ("reason", reason)];
        assert_eq!(value(&m, "onebot_bridge_events_dropped_total", &labels), 0.0, "{reason}");
    }
    let sends = [("action", "send_private_msg"), ("outcome", "ok")];
    assert_eq!(value(&m, "onebot_bridge_actions_total", &sends), 2.0);
    let other = [("action", "other"), ("outcome", class.as_str())];
    assert_eq!(value(&m, "onebot_bridge_actions_total", &other), 1.0);
    assert!(!m.iter().any(|s| s.labels.get("action") == Some("no_such_action_here")), "unbounded action label");
    // The histogram's largest cumulative bucket (+Inf) holds every answered send.
    assert_eq!(value(&m, "onebot_bridge_action_duration_seconds", &[("action", "send_private_msg")]), 2.0);
    assert_eq!(value(&m, "onebot_bridge_backend_link_up", &[("link", "0")]), 1.0);
    assert_eq!(value(&m, "onebot_bridge_backend_link_reconnects_total", &[("link", "0")]), 0.0);
    let endpoint = format!("ws {ws}");
    assert_eq!(value(&m, "onebot_bridge_v11_connections", &[("endpoint", endpoint.as_str())]), 1.0);

    // The implementation goes away: not ready; it comes back: ready again, one reconnect.
    backend.stop().await;
    let body = ready_becomes(admin, 503).await;
    assert_eq!(body["links"], json!([{"link": "0", "kind": "ws", "up": false}]));
    backend.resume().await;
    ready_becomes(admin, 200).await;
    let m = scrape(admin).await;
    assert_eq!(value(&m, "onebot_bridge_backend_link_reconnects_total", &[("link", "0")]), 1.0);

    bot.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while value(&scrape(admin).await, "onebot_bridge_v11_connections", &[("endpoint", endpoint.as_str())]) != 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "the closed bot connection is still counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(request(admin, "GET", "/health").await.0, 200);
    bridge.stop().await;
}

/// The retcode class the metrics name a failure by: first digit, an `x` per other digit.
fn class_of(retcode: i64) -> String {
    let digits = retcode.unsigned_abs().to_string();
    format!("{}{}", &digits[..1], "x".repeat(digits.len() - 1))
}

#[tokio::test]
async fn no_admin_listener_unless_configured() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    assert_eq!(bridge.addrs().admin, None);
    bridge.stop().await;
}

#[tokio::test]
async fn the_disk_store_commits_are_timed() {
    let data = std::env::temp_dir().join(format!("ob-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| {
        o.admin = Some("127.0.0.1:0".into());
        o.data_dir = Some(data.clone());
    })
    .await;
    let admin = bridge.addrs().admin.expect("an admin listener");
    ready_becomes(admin, 200).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    assert_eq!(bot.next_frame().await["sub_type"], "connect");
    backend.push(v12_message("private", "10001", json!({"message_id": "m1", "user_id": "bob", "message": "hi"})));
    assert_eq!(bot.next_event().await["message"], "hi");
    // New ids were written (the account, the user, the message): at least one commit.
    let commits = value(&scrape(admin).await, "onebot_bridge_id_store_commit_seconds", &[]);
    assert!(commits >= 1.0, "{commits} commits timed");
    bridge.stop().await;
    let _ = std::fs::remove_dir_all(&data);
}
