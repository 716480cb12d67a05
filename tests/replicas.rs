//! Two bridge replicas on one Redis (`--store redis://…`): a bot given ids by replica A moves to
//! replica B when A dies by SIGKILL, and everything it saw still works there — `get_msg`,
//! `delete_msg`, a reply, the same surrogate user and group ids, and the same message id for the
//! same backend message. A `/files/` URL replica A gave a bot is served by replica B, and a
//! picture A uploaded is reused by B, not uploaded again. Each replica is the real binary with
//! its own backend link to the same scripted v12 implementation; Redis is a real `redis-server`
//! on a loopback port.

mod support;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::json;
use support::redis::RedisServer;
use support::*;

async fn replica(backend: &FakeBackend, redis: &str) -> (ChildGuard, std::net::SocketAddr) {
    let port = free_port();
    let ws = format!("127.0.0.1:{port}");
    let child = spawn_bridge(&["--backend-ws", backend.url().as_str(), "--ws", &ws, "--store", redis][..]);
    (child, ws.parse().unwrap())
}

#[tokio::test]
async fn a_bot_moving_to_another_replica_after_a_sigkill_keeps_every_id() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut backend = FakeBackend::start(BackendOptions { concurrent: true, ..Default::default() }).await;

    // Both replicas run at once, each with a link of its own to the implementation, and each
    // with a bot; the implementation sends the message to both links.
    let (mut a, a_addr) = replica(&backend, &url).await;
    let (_b, b_addr) = replica(&backend, &url).await;
    let mut bot = Bot::connect_when_up(a_addr).await;
    let mut bot_on_b = Bot::connect_when_up(b_addr).await;
    wait_for_links(&backend, 2).await;
    let hello =
        json!({"message_id": "msg-on-a", "group_id": "room@chat", "user_id": "wxid_alice", "message": "hello from a"});
    assert_eq!(backend.push_all(v12_message("group", "10001", hello.clone())), 2);
    let ev = bot.next_event().await;
    let (user, group, message) = (ev["user_id"].clone(), ev["group_id"].clone(), ev["message_id"].clone());
    assert!(user.as_i64().unwrap() >= 1 << 52 && group.as_i64().unwrap() >= 1 << 52, "{ev}");
    // Translated by each replica at the same moment, the message has one number in both.
    let seen_on_b = bot_on_b.next_event().await;
    assert_eq!((&seen_on_b["message_id"], &seen_on_b["user_id"], &seen_on_b["group_id"]), (&message, &user, &group));
    drop(bot);
    backend.drain_requests();

    // A dies without a word; the bot moves to B.
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let mut bot = Bot::connect_when_up(b_addr).await;

    let got = bot.call("get_msg", json!({"message_id": message})).await;
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!(got["data"]["message"], "hello from a");
    assert_eq!((&got["data"]["group_id"], &got["data"]["sender"]["user_id"]), (&group, &user));

    // A reply to the message A delivered names the backend's own message.
    let reply = format!("[CQ:reply,id={message}]seen on b");
    assert_eq!(bot.call("send_group_msg", json!({"group_id": group, "message": reply})).await["status"], "ok");
    let sent = next_bot_request(&mut backend).await;
    assert_eq!(sent["params"]["group_id"], "room@chat", "{sent}");
    assert_eq!(sent["params"]["message"][0]["data"]["message_id"], "msg-on-a", "{sent}");

    assert_eq!(bot.call("delete_msg", json!({"message_id": message})).await["status"], "ok");
    assert_eq!(next_bot_request(&mut backend).await["params"]["message_id"], "msg-on-a");
    assert_eq!(bot.call("get_stranger_info", json!({"user_id": user})).await["status"], "ok");
    assert_eq!(next_bot_request(&mut backend).await["params"]["user_id"], "wxid_alice");

    // The same backend message and people get the same numbers on B (A's link is gone).
    assert_eq!(backend.push_all(v12_message("group", "10001", hello)), 1);
    let again = bot.next_event().await;
    assert_eq!((&again["message_id"], &again["user_id"], &again["group_id"]), (&message, &user, &group));
}

#[tokio::test]
async fn events_wait_while_redis_restarts_and_arrive_in_order_with_stored_ids() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (_bridge, addr) = replica(&backend, &url).await;
    let mut bot = Bot::connect_when_up(addr).await;
    wait_for_links(&backend, 1).await;
    let said = |i: usize| json!({"message_id": format!("while-away-{i}"), "group_id": "room@chat", "user_id": format!("wxid_{i}"), "message": format!("line {i}")});

    // Redis goes away; events keep coming, and an action that needs an id says why it fails.
    redis.stop();
    for i in 0..3 {
        backend.push(v12_message("group", "10001", said(i)));
    }
    let failed = bot.call("get_stranger_info", json!({"user_id": 4503599627370497i64})).await;
    assert_eq!((&failed["status"], &failed["msg"]), (&json!("failed"), &json!("BRIDGE_STORE_ERROR")), "{failed}");
    assert!(failed["wording"].as_str().unwrap().contains("Redis"), "{failed}");
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), bot.next_event()).await.is_err(),
        "nothing is delivered without a stored id"
    );

    // Back: the waiting events arrive in the order sent, each with an id Redis kept.
    redis.restart();
    let mut ids = Vec::new();
    for i in 0..3 {
        let ev = bot.next_event().await;
        assert_eq!(ev["raw_message"], format!("line {i}"), "{ev}");
        ids.push(ev["message_id"].clone());
        let got = bot.call("get_msg", json!({"message_id": ev["message_id"]})).await;
        assert_eq!((&got["status"], &got["data"]["message"]), (&json!("ok"), &json!(format!("line {i}"))), "{got}");
        let who = bot.call("get_stranger_info", json!({"user_id": ev["user_id"]})).await;
        assert_eq!(who["status"], "ok", "{who}");
    }
    ids.sort_by_key(|v| v.as_i64());
    ids.dedup();
    assert_eq!(ids.len(), 3, "three messages, three numbers");
}

/// Waits until `n` bridge links are open on the implementation.
async fn wait_for_links(backend: &FakeBackend, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while backend.live.load(std::sync::atomic::Ordering::SeqCst) < n {
        assert!(tokio::time::Instant::now() < deadline, "{n} bridge links did not come up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The next request a bot caused (the replicas' own discovery calls skipped).
async fn next_bot_request(backend: &mut FakeBackend) -> serde_json::Value {
    loop {
        let request = backend.next_request().await;
        if !is_discovery(&request) && request["action"] != "get_self_info" {
            return request;
        }
    }
}

/// A replica that also serves files: `--http` on a port of its own, `--media-urls serve`, events
/// as arrays. Gives the child, its forward-WS address and its HTTP base URL.
async fn serving_replica(backend: &FakeBackend, redis: &str) -> (ChildGuard, std::net::SocketAddr, String) {
    let (ws, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let backend = backend.url();
    let args = ["--backend-ws", &backend, "--ws", &ws, "--http", &http, "--store", redis];
    let child = spawn_bridge(&[&args[..], &["--media-urls", "serve", "--post-format", "array"]].concat());
    (child, ws.parse().unwrap(), format!("http://{http}"))
}

/// GETs a URL over loopback: status and body.
async fn http_get(url: &str) -> (u16, Vec<u8>) {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let fetch = async {
        let resp = client.get(url.parse().unwrap()).await.expect("the GET failed");
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.expect("the body did not arrive").to_bytes().to_vec())
    };
    tokio::time::timeout(WAIT, fetch).await.unwrap_or_else(|_| panic!("GET {url} took longer than {WAIT:?}"))
}

#[tokio::test]
async fn a_served_file_url_and_an_upload_from_one_replica_work_on_another() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut backend = FakeBackend::start(BackendOptions { concurrent: true, ..Default::default() }).await;

    // Replica A gives its bot the bridge's own URL for a received picture, and uploads one the
    // bot sends.
    let (_a, a_ws, a_http) = serving_replica(&backend, &url).await;
    let mut bot_a = Bot::connect_when_up(a_ws).await;
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let file_id = backend.add_file("cat.png", bytes.clone());
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "pic-1", "group_id": "30003", "user_id": "20002",
               "message": [{"type": "image", "data": {"file_id": file_id}}]}),
    ));
    let ev = bot_a.next_event().await;
    let served = ev["message"][0]["data"]["url"].as_str().unwrap_or_else(|| panic!("no url: {ev}")).to_owned();
    let token = served.strip_prefix(&format!("{a_http}/files/")).unwrap_or_else(|| panic!("{served}")).to_owned();
    let picture = format!("base64://{}", base64::engine::general_purpose::STANDARD.encode(b"one picture"));
    let message = json!([{"type": "image", "data": {"file": picture}}]);
    let sent = bot_a.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
    assert_eq!(sent["status"], "ok", "{sent}");
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");

    // Replica B, started after: the same token is a file there, and the same picture is sent by
    // the file_id A's upload gave.
    let (_b, b_ws, b_http) = serving_replica(&backend, &url).await;
    let mut bot_b = Bot::connect_when_up(b_ws).await;
    let on_b = format!("{b_http}/files/{token}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        // 503 until B's backend link has announced the account; a token B cannot verify is 404.
        match http_get(&on_b).await {
            (200, body) => break body,
            (503, _) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (status, body) => panic!("{on_b}: {status} {}", String::from_utf8_lossy(&body)),
        }
    };
    assert!(body == bytes, "B served {} bytes, not the file's {}", body.len(), bytes.len());
    backend.drain_requests();
    let sent = bot_b.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
    assert_eq!(sent["status"], "ok", "{sent}");
    assert_eq!(backend.uploads().len(), 1, "B uploaded again: {:?}", backend.uploads());
    let send = loop {
        let request = next_bot_request(&mut backend).await;
        if request["action"] == "send_message" {
            break request;
        }
    };
    assert_eq!(send["params"]["message"][0]["data"]["file_id"], uploads[0].file_id, "{send}");
}
