//! Two bridge replicas on one Redis (`--store redis://…`): a bot given ids by replica A moves to
//! replica B when A dies by SIGKILL, and everything it saw still works there — `get_msg`,
//! `delete_msg`, a reply, the same surrogate user and group ids, and the same message id for the
//! same backend message. Each replica is the real binary with its own backend link to the same
//! scripted v12 implementation; Redis is a real `redis-server` on a loopback port.

mod support;

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
    let mut backend = FakeBackend::start(BackendOptions::default()).await;

    // Replica A carries the bot; the backend's events reach the newest link, A's for now.
    let (mut a, a_addr) = replica(&backend, &url).await;
    let mut bot = Bot::connect_when_up(a_addr).await;
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "msg-on-a", "group_id": "room@chat", "user_id": "wxid_alice", "message": "hello from a"}),
    ));
    let ev = bot.next_event().await;
    let (user, group, message) = (ev["user_id"].clone(), ev["group_id"].clone(), ev["message_id"].clone());
    assert!(user.as_i64().unwrap() >= 1 << 52 && group.as_i64().unwrap() >= 1 << 52, "{ev}");
    drop(bot);
    backend.drain_requests();

    // A dies without a word; replica B, with a link of its own, takes over and the bot moves
    // there. (The scripted implementation serves one link at a time, so B dials once A is gone.)
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let (_b, b_addr) = replica(&backend, &url).await;
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

    // The same backend message and people get the same numbers on B.
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "msg-on-a", "group_id": "room@chat", "user_id": "wxid_alice", "message": "hello from a"}),
    ));
    let again = bot.next_event().await;
    assert_eq!((&again["message_id"], &again["user_id"], &again["group_id"]), (&message, &user, &group));
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
