//! Ids survive the bridge being killed: the binary runs with `--data-dir`, a bot is given ids,
//! the bridge dies by SIGKILL, and after a restart the same numbers still mean the same things
//! (`get_msg`, `delete_msg`, group and user ids).

mod support;

use serde_json::json;
use support::*;

async fn start(backend: &FakeBackend, data: &std::path::Path) -> (ChildGuard, Bot) {
    let port = free_port();
    let ws = format!("127.0.0.1:{port}");
    let data = data.to_string_lossy();
    let child = spawn_bridge(&["--backend-ws", backend.url().as_str(), "--ws", &ws, "--data-dir", &data][..]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bot = Bot::connect_when_up(addr).await;
    (child, bot)
}

#[tokio::test]
async fn ids_given_to_a_bot_survive_sigkill() {
    let data = std::env::temp_dir().join(format!("ob-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut backend = FakeBackend::start(BackendOptions::default()).await;

    let (mut bridge, mut bot) = start(&backend, &data).await;
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "msg-before-kill", "group_id": "room@chat", "user_id": "wxid_alice", "message": "hello"}),
    ));
    let ev = bot.next_event().await;
    let (user, group, message) = (ev["user_id"].clone(), ev["group_id"].clone(), ev["message_id"].clone());
    assert!(user.as_i64().unwrap() >= 1 << 52 && group.as_i64().unwrap() >= 1 << 52);

    // No graceful anything: the process is gone the moment the bot has its ids.
    bridge.0.kill().unwrap();
    bridge.0.wait().unwrap();
    drop(bot);

    let (_bridge, mut bot) = start(&backend, &data).await;
    // get_msg still knows what the message said…
    let got = bot.call("get_msg", json!({"message_id": message})).await;
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!((got["data"]["message"].as_str(), &got["data"]["sender"]["user_id"]), (Some("hello"), &user));
    assert_eq!(got["data"]["group_id"], group);
    // …and delete_msg still reaches the backend's message.
    assert_eq!(bot.call("delete_msg", json!({"message_id": message})).await["status"], "ok");
    assert_eq!(backend.next_request().await["params"]["message_id"], "msg-before-kill");
    assert_eq!(bot.call("send_group_msg", json!({"group_id": group, "message": "still here"})).await["status"], "ok");
    assert_eq!(backend.next_request().await["params"]["group_id"], "room@chat");
    assert_eq!(bot.call("get_stranger_info", json!({"user_id": user})).await["status"], "ok");
    assert_eq!(backend.next_request().await["params"]["user_id"], "wxid_alice");

    // The same strings get the same numbers again.
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "msg-after", "group_id": "room@chat", "user_id": "wxid_alice", "message": "again"}),
    ));
    let ev = bot.next_event().await;
    assert_eq!((ev["user_id"].clone(), ev["group_id"].clone()), (user, group));
    let _ = std::fs::remove_dir_all(&data);
}

/// `kill -9` in the middle of a burst: every message id a bot received before the kill still
/// finds its own message after the restart (ids are durable before they are delivered, however
/// the batching and the write-ahead log group them), and the events the bridge was still
/// translating are not delivered twice with different ids. Every other event comes from a user
/// never seen before, whose number must stand for the same user after the restart too.
#[tokio::test]
async fn every_id_delivered_before_a_sigkill_mid_burst_resolves_after_the_restart() {
    const BURST: usize = 600;
    let user = |i: usize| if i % 2 == 0 { format!("wxid_{}", i % 13) } else { format!("wxid_new_{i}") };
    let data = std::env::temp_dir().join(format!("ob-restart-burst-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut backend = FakeBackend::start(BackendOptions::default()).await;

    let (mut bridge, mut bot) = start(&backend, &data).await;
    for i in 0..BURST {
        backend.push(v12_message(
            "group",
            "10001",
            json!({"message_id": format!("burst-{i}"), "group_id": format!("room-{}", i % 7),
                   "user_id": user(i), "message": format!("seq={i}")}),
        ));
    }
    // Take part of the burst, then kill the bridge while the rest is in flight.
    let mut delivered = Vec::new();
    while delivered.len() < BURST / 3 {
        let ev = bot.next_event().await;
        delivered.push((
            ev["message_id"].clone(),
            ev["raw_message"].clone(),
            ev["group_id"].clone(),
            ev["user_id"].clone(),
        ));
    }
    bridge.0.kill().unwrap();
    bridge.0.wait().unwrap();
    drop(bot);

    let (_bridge, mut bot) = start(&backend, &data).await;
    let mut seen = std::collections::HashSet::new();
    for (message_id, text, group, user) in &delivered {
        assert!(seen.insert(message_id.as_i64().unwrap()), "one id per message: {message_id}");
        let got = bot.call("get_msg", json!({"message_id": message_id})).await;
        assert_eq!(got["status"], "ok", "{message_id} after the restart: {got}");
        assert_eq!(&got["data"]["message"], text, "{message_id} is still its own message");
        assert_eq!((&got["data"]["group_id"], &got["data"]["sender"]["user_id"]), (group, user));
    }
    // The last user delivered before the kill (a new one) is still that user's number.
    let (_, text, _, last_user) = delivered.last().unwrap();
    let i: usize = text.as_str().unwrap().trim_start_matches("seq=").parse().unwrap();
    assert_eq!(bot.call("get_stranger_info", json!({"user_id": last_user})).await["status"], "ok");
    assert_eq!(backend.next_request().await["params"]["user_id"], user(i));
    // Each backend message gets the same id again after the restart: found by its key, whether
    // its key's entry was in redb's tables, still in memory waiting for a batch, or only in the
    // journal when the bridge was killed.
    for (_, text, ..) in &delivered {
        let i: usize = text.as_str().unwrap().trim_start_matches("seq=").parse().unwrap();
        backend.push(v12_message(
            "group",
            "10001",
            json!({"message_id": format!("burst-{i}"), "group_id": format!("room-{}", i % 7),
                   "user_id": user(i), "message": format!("seq={i}")}),
        ));
    }
    for (message_id, text, group, user) in &delivered {
        let ev = bot.next_event().await;
        assert_eq!((&ev["raw_message"], &ev["group_id"], &ev["user_id"]), (text, group, user));
        assert_eq!(&ev["message_id"], message_id, "{text} has its id from before the restart");
    }
    let _ = std::fs::remove_dir_all(&data);
}
