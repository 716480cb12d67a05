//! A real nonebot2 bot (nonebot-adapter-onebot's v11 adapter, forward-WebSocket client) on the
//! bridge: scripted v12 backend ⇄ the real bridge ⇄ `tests/clients/nonebot_bot.py`.
//!
//! Needs `tests/clients/.venv` (made by `tests/run.sh`); fails, never skips, without it.

mod clients;
mod support;

use serde_json::{json, Value};

use clients::*;
use support::*;

/// The `send_message` the backend receives for nonebot's reply. Anything else the bridge sends
/// first (other than its own `get_status`/`get_version`) is a failure.
async fn reply_at_backend(backend: &mut FakeBackend) -> Value {
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    sent
}

#[tokio::test]
async fn nonebot_echo_command_round_trips_through_the_bridge() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let bot = NoneBot::start(bridge.ws_addrs()[0], None).await;
    assert_eq!(bot.self_id, "10001");

    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "m1", "user_id": "20002", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": "/echo hi, [there] &#44; & you"}},
                           {"type": "qq.face", "data": {"id": "1"}}]}),
    ));

    let sent = reply_at_backend(&mut backend).await;
    assert_eq!(sent["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(sent["params"]["detail_type"], "private");
    assert_eq!(sent["params"]["user_id"], "20002");
    assert_eq!(
        sent["params"]["message"],
        json!([
            {"type": "text", "data": {"text": "hi, [there] &#44; & you"}},
            {"type": "qq.face", "data": {"id": "1"}}
        ])
    );

    // What nonebot itself saw and sent (traced by the script): the CQ string with v11 escapes,
    // and a `send_msg` to the numeric user whose answer carried an int message_id.
    let message = bot.process.wait_frame("<-", WAIT, |f| f["post_type"] == "message").await;
    assert_eq!(message["message"], "/echo hi, &#91;there&#93; &amp;#44; &amp; you[CQ:face,id=1]");
    assert_eq!(message["user_id"], 20002);
    let call = bot.process.wait_frame("->", WAIT, |f| f["action"] == "send_msg").await;
    assert_eq!(call["params"]["user_id"], 20002);
    assert_eq!(call["params"]["message_type"], "private");
    let echo = call["echo"].clone();
    let answer = bot.process.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["echo"] == echo).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer["data"]["message_id"].is_i64(), "{answer}");

    drop(bot);
    bridge.stop().await;
}

#[tokio::test]
async fn nonebot_reply_to_a_non_numeric_user_reaches_the_original_id() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| o.access_token = Some("s3cret".into())).await;
    let bot = NoneBot::start(bridge.ws_addrs()[0], Some("s3cret")).await;
    assert_eq!(bot.self_id, "10001");

    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "m2", "user_id": "wxid_alice", "user_name": "Alice",
               "message": [{"type": "text", "data": {"text": "/echo hello alice"}}]}),
    ));

    let sent = reply_at_backend(&mut backend).await;
    assert_eq!(sent["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(sent["params"]["detail_type"], "private");
    assert_eq!(sent["params"]["user_id"], "wxid_alice");
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "hello alice"}}]));

    // nonebot only ever saw the surrogate integer, and addressed its reply to it.
    let message = bot.process.wait_frame("<-", WAIT, |f| f["post_type"] == "message").await;
    let alice = message["user_id"].as_i64().expect("user_id must be an integer for nonebot");
    assert!((1 << 52..1 << 53).contains(&alice), "surrogate id expected, got {alice}");
    let call = bot.process.wait_frame("->", WAIT, |f| f["action"] == "send_msg").await;
    assert_eq!(call["params"]["user_id"], alice);

    drop(bot);
    bridge.stop().await;
}

/// nonebot calls `get_msg` for every reply segment and treats a reply to the bot's own message
/// as addressed to it (`to_me`): in a group, its `/echo` only fires then. The bridge must answer
/// `get_msg` for a message the bot itself sent.
#[tokio::test]
async fn nonebot_treats_a_reply_to_its_own_message_as_addressed_to_it() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let bot = NoneBot::start(bridge.ws_addrs()[0], None).await;

    // The bot says something (in private, where /echo needs no mention)…
    backend.answer_next(
        "send_message",
        json!({"status": "ok", "retcode": 0, "data": {"message_id": "bot-msg-1", "time": 1700000100.0}, "message": ""}),
    );
    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "p1", "user_id": "20002", "message": [{"type": "text", "data": {"text": "/echo first words"}}]}),
    ));
    let first = reply_at_backend(&mut backend).await;
    assert_eq!(first["params"]["message"], json!([{"type": "text", "data": {"text": "first words"}}]));
    let bots_message =
        bot.process.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["data"]["message_id"].is_i64()).await
            ["data"]["message_id"]
            .clone();

    // …and someone in a group replies to exactly that message without mentioning the bot.
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "g1", "group_id": "40004", "user_id": "20002",
               "message": [{"type": "reply", "data": {"message_id": "bot-msg-1", "user_id": "10001"}},
                           {"type": "text", "data": {"text": "/echo and again"}}]}),
    ));
    let call = bot.process.wait_frame("->", WAIT, |f| f["action"] == "get_msg").await;
    assert_eq!(call["params"]["message_id"], bots_message, "nonebot asks about the bot's own message");
    let echo = call["echo"].clone();
    let answer = bot.process.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["echo"] == echo).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["data"]["sender"]["user_id"], 10001);
    assert_eq!(answer["data"]["message"], "first words");

    let second = reply_at_backend(&mut backend).await;
    assert_eq!(second["params"]["detail_type"], "group", "the reply made the message to_me: {second}");
    assert_eq!(second["params"]["group_id"], "40004");
    assert_eq!(
        second["params"]["message"].as_array().and_then(|m| m.last()).cloned(),
        Some(json!({"type": "text", "data": {"text": "and again"}}))
    );
    drop(bot);
    bridge.stop().await;
}
