//! The first end-to-end path: a scripted v12 implementation (forward WS) ⇄ the real bridge ⇄ a
//! scripted v11 bot (forward WS), on loopback ports chosen by the OS.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn private_message_reaches_the_bot_and_its_reply_reaches_the_backend() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();

    let hello = bot.next_frame().await;
    assert_eq!(hello["meta_event_type"], "lifecycle");
    assert_eq!(hello["sub_type"], "connect");
    assert_eq!(hello["self_id"], 10001);
    assert_eq!(hello["_post_method"], 2);

    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "abc-1", "user_id": "wxid_alice", "user_name": "Alice",
               "message": [{"type": "text", "data": {"text": "hi [you] & me, ok"}}, {"type": "qq.face", "data": {"id": "1"}}]}),
    ));
    let ev = bot.next_event().await;
    assert_eq!(ev["post_type"], "message");
    assert_eq!(ev["message_type"], "private");
    assert_eq!(ev["sub_type"], "friend");
    assert_eq!(ev["message"], "hi &#91;you&#93; &amp; me, ok[CQ:face,id=1]");
    assert_eq!(ev["raw_message"], ev["message"]);
    assert_eq!(ev["sender"]["nickname"], "Alice");
    assert_eq!(ev["font"], 0);
    let alice = ev["user_id"].as_i64().unwrap();
    assert!(((1 << 52)..(1 << 53)).contains(&alice), "non-numeric id gets a surrogate: {alice}");
    let message_id = ev["message_id"].as_i64().unwrap();
    assert!(message_id > 0 && message_id <= i32::MAX as i64);

    let answer = bot
        .call("send_private_msg", json!({"user_id": alice, "message": format!("[CQ:reply,id={message_id}]got it&#44; thanks [CQ:at,qq=all]")}))
        .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["echo"], json!({"seq": 1}));
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message");
    assert_eq!(sent["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(sent["params"]["detail_type"], "private");
    assert_eq!(sent["params"]["user_id"], "wxid_alice");
    assert_eq!(
        sent["params"]["message"],
        json!([
            {"type": "reply", "data": {"message_id": "abc-1", "user_id": "wxid_alice"}},
            {"type": "text", "data": {"text": "got it, thanks "}},
            {"type": "mention_all", "data": {}}
        ])
    );
    let sent_id = answer["data"]["message_id"].as_i64().unwrap();
    assert!(sent_id > 0);

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn tokens_are_checked_before_the_upgrade() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| o.access_token = Some("s3cret".into())).await;
    let addr = bridge.ws_addrs()[0];
    let status = |r: Result<Bot, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    };
    assert_eq!(status(Bot::connect(addr, "/", None).await), 401);
    assert_eq!(status(Bot::connect(addr, "/", Some("Bearer nope")).await), 403);
    assert_eq!(status(Bot::connect(addr, "/?access_token=nope", None).await), 403);
    assert_eq!(status(Bot::connect(addr, "/", Some("Bearer s3cret")).await), 101);
    assert_eq!(status(Bot::connect(addr, "/", Some("Token s3cret")).await), 101);
    assert_eq!(status(Bot::connect(addr, "/api?access_token=s3cret", None).await), 101);
    bridge.stop().await;
}

#[tokio::test]
async fn api_and_event_paths_split_the_roles() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let addr = bridge.ws_addrs()[0];
    let mut events = Bot::connect(addr, "/event", None).await.unwrap();
    assert_eq!(events.next_frame().await["sub_type"], "connect");
    let mut api = Bot::connect(addr, "/api", None).await.unwrap();

    // /api answers actions and gets no lifecycle event or events.
    let answer = api.call("get_login_info", json!({})).await;
    assert_eq!(answer["data"]["user_id"], 10001);
    backend.next_request().await;
    backend.push(v12_message("private", "10001", json!({"message_id": "x1", "user_id": "1", "message": "ping"})));
    assert_eq!(events.next_event().await["message"], "ping");
    // /event ignores requests, as go-cqhttp does: nothing reaches the backend.
    events.send_raw(r#"{"action":"send_private_msg","params":{"user_id":1,"message":"x"},"echo":1}"#).await;
    assert!(backend.no_request_within(std::time::Duration::from_millis(300)).await);
    // /api got no event frame: its next frame is the answer to the next call.
    let answer = api.call("can_send_record", json!({})).await;
    assert_eq!(answer["data"]["yes"], true);
    bridge.stop().await;
}

#[tokio::test]
async fn echo_comes_back_exactly_on_success_and_failure() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/api", None).await.unwrap();
    for echo in [json!("abc"), json!(12345), json!({"seq": 7, "nested": [1, "x"]}), json!(null)] {
        for action in ["can_send_image", "no_such_action"] {
            let req = json!({"action": action, "params": {}, "echo": echo});
            bot.send_raw(&req.to_string()).await;
            let answer = bot.next_frame().await;
            assert_eq!(answer["echo"], echo, "{action}: {answer}");
        }
    }
    // Unreadable JSON: go-cqhttp's 404 answer, no echo to return.
    bot.send_raw("{oops").await;
    let answer = bot.next_frame().await;
    assert_eq!((answer["retcode"].as_i64(), answer.get("echo")), (Some(404), None));
    bridge.stop().await;
}

#[tokio::test]
async fn a_backend_that_does_not_answer_gives_a_timeout_failure() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| o.action_timeout_ms = Some(300)).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    bot.next_event().await;
    backend.answer_next("get_self_info", json!("silence"));
    let answer = bot.call("get_login_info", json!({})).await;
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["msg"], "BACKEND_TIMEOUT");
    assert!(answer["wording"].as_str().unwrap().contains("300 ms"));
    backend.next_request().await;
    // The link is still usable afterwards.
    assert_eq!(bot.call("get_login_info", json!({})).await["status"], "ok");
    bridge.stop().await;
}

#[tokio::test]
async fn backend_restarts_leave_one_link_and_no_duplicate_events() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    bot.next_event().await;
    for round in 0..5 {
        backend.kick();
        // Wait for the bridge to redial (back-off starts at about half a second).
        let deadline = tokio::time::Instant::now() + WAIT;
        while backend.connections.load(std::sync::atomic::Ordering::SeqCst) < round + 2 {
            assert!(tokio::time::Instant::now() < deadline, "the bridge did not reconnect");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ev = v12_message(
            "private",
            "10001",
            json!({"message_id": format!("r{round}"), "user_id": "2", "message": format!("round {round}")}),
        );
        backend.push(ev.clone());
        backend.push(ev); // the same event id again: delivered once
        assert_eq!(bot.next_event().await["message"], format!("round {round}"));
    }
    backend.push(v12_message("private", "10001", json!({"message_id": "last", "user_id": "2", "message": "last"})));
    assert_eq!(bot.next_event().await["message"], "last", "a duplicate slipped through");
    bridge.stop().await;
}

#[tokio::test]
async fn heartbeats_carry_status_and_the_interval_in_ms() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| o.heartbeat_interval_ms = Some(100)).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    bot.next_frame().await;
    let beat = bot.next_frame().await;
    assert_eq!(beat["meta_event_type"], "heartbeat");
    assert_eq!(beat["interval"], 100);
    assert_eq!(beat["self_id"], 10001);
    assert_eq!(beat["status"]["online"], true);
    assert_eq!(beat["status"]["good"], true);
    bridge.stop().await;
}

#[tokio::test]
async fn every_connection_gets_each_event_once_and_actions_before_an_account_fail_clearly() {
    let backend = FakeBackend::start(BackendOptions { announce: false, ..Default::default() }).await;
    // No status_update and a get_status the backend does not support: the account is learnt
    // from the first event.
    backend.answer_next("get_status", json!({"status": "failed", "retcode": 10002, "data": null, "message": ""}));
    let bridge = start_bridge(&backend, |_| {}).await;
    let mut early = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    let answer = early.call("get_login_info", json!({})).await;
    assert_eq!(answer["msg"], "BACKEND_UNAVAILABLE");
    let mut second = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    // Wait until the bridge has connected to the backend before pushing.
    let deadline = tokio::time::Instant::now() + WAIT;
    while backend.connections.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    backend.push(v12_message("private", "10001", json!({"message_id": "e1", "user_id": "2", "message": "one"})));
    for bot in [&mut early, &mut second] {
        assert_eq!(bot.next_frame().await["sub_type"], "connect", "lifecycle first, once the account is known");
        assert_eq!(bot.next_event().await["message"], "one");
    }
    backend.push(v12_message("private", "10001", json!({"message_id": "e2", "user_id": "2", "message": "two"})));
    assert_eq!(early.next_event().await["message"], "two");
    assert_eq!(second.next_event().await["message"], "two");
    bridge.stop().await;
}

#[tokio::test]
async fn shutdown_closes_bot_connections_with_a_close_frame() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let addr = bridge.ws_addrs()[0];
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
    use futures_util::StreamExt;
    ws.next().await.unwrap().unwrap(); // lifecycle
    let stopping = tokio::spawn(bridge.stop());
    let mut saw_close = false;
    while let Ok(Some(frame)) = tokio::time::timeout(WAIT, ws.next()).await {
        if let Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame))) = frame {
            assert_eq!(u16::from(frame.code), 1001);
            saw_close = true;
            break;
        }
    }
    assert!(saw_close);
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

/// aiocqhttp and others send the account as a `self_id` param on every call: the connection has
/// picked the account already, so it is consumed (as the HTTP API does), never sent on as
/// `qq.self_id`; another account's id is refused.
#[tokio::test]
async fn a_self_id_param_on_a_websocket_action_is_consumed() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    bot.next_frame().await;

    let answer = bot.call("send_private_msg", json!({"self_id": 10001, "user_id": 20002, "message": "hi"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message");
    let mut keys: Vec<&String> = sent["params"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["detail_type", "message", "user_id"], "{sent}");

    let answer = bot.call("send_private_msg", json!({"self_id": 30003, "user_id": 20002, "message": "hi"})).await;
    assert_eq!((answer["status"].as_str(), answer["msg"].as_str()), (Some("failed"), Some("BAD_PARAM")), "{answer}");
    assert!(backend.no_request_within(std::time::Duration::from_millis(100)).await, "another account's call went out");

    bot.close().await;
    bridge.stop().await;
}

/// One event whose `self` the backend never listed (a backend glitch) must not lock out every
/// bot that connects without `?self_id`: the accounts the backend reports online decide.
#[tokio::test]
async fn a_stray_event_for_an_unlisted_account_does_not_refuse_new_connections() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let addr = bridge.ws_addrs()[0];
    let mut first = Bot::connect(addr, "/", None).await.unwrap();
    assert_eq!(first.next_frame().await["self_id"], 10001, "the backend lists 10001 online");

    // A bot waiting for the stray account sees its event arrive, so the bridge has taken it in.
    let mut stray_bot = Bot::connect(addr, "/?self_id=20002", None).await.unwrap();
    let stray = json!({"message_id": "s-1", "user_id": "30003", "message": [{"type": "text", "data": {"text": "?"}}]});
    backend.push(v12_message("private", "20002", stray));
    assert_eq!(stray_bot.next_frame().await["self_id"], 20002);
    assert!(stray_bot.next_event().await["message_id"].is_i64());

    let mut later = Bot::connect(addr, "/", None).await.unwrap();
    let hello = later.next_frame().await;
    assert_eq!(
        (hello["meta_event_type"].as_str(), hello["self_id"].as_i64()),
        (Some("lifecycle"), Some(10001)),
        "{hello}"
    );
    let answer = later.call("get_login_info", json!({})).await;
    assert_eq!(answer["data"]["user_id"], 10001, "{answer}");

    for bot in [first, stray_bot, later] {
        bot.close().await;
    }
    bridge.stop().await;
}

/// `--max-message` moves the frame bound: a 20 MiB request ends the connection under the
/// default 16 MiB (1009, message too big, or a reset while it is still being written) and is
/// answered under 32 MiB.
#[tokio::test]
async fn max_message_moves_the_frame_bound() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let frame = json!({"action": "can_send_image", "params": {"pad": "x".repeat(20 << 20)}, "echo": "big"}).to_string();
    for max_message in [None, Some(32 << 20)] {
        let bridge = start_bridge(&backend, |o| o.max_message = max_message).await;
        let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
        assert_eq!(bot.next_frame().await["sub_type"], "connect");
        let sent = bot.try_send_raw(&frame).await;
        match max_message {
            // Closed with 1009, or reset while the frame was still going out: never answered.
            None => assert!(sent.is_err() || matches!(bot.close_code().await, Some(1009) | None)),
            Some(_) => {
                sent.unwrap();
                let answer = bot.next_frame().await;
                assert_eq!((&answer["status"], &answer["echo"]), (&json!("ok"), &json!("big")), "{answer}");
            }
        }
        bridge.stop().await;
    }
}
