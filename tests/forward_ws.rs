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
    assert!(alice >= 1 << 52 && alice < 1 << 53, "non-numeric id gets a surrogate: {alice}");
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
