//! Backend profiles through the real bridge: the profile follows the implementation's name (or
//! the configuration), and with it the extension names of actions, segments, notices and
//! requests; a request's flag answers it through the backend's own action; the bridge asks the
//! backend what it supports; the bot's own messages are `message_sent` only when asked for.

mod support;

use onebot_bridge::Bridge;
use serde_json::json;
use support::*;

async fn setup(
    opts: BackendOptions,
    extra: impl FnOnce(&mut onebot_bridge::config::Overrides),
) -> (FakeBackend, Bridge, Bot) {
    let backend = FakeBackend::start(opts).await;
    let bridge = start_bridge(&backend, extra).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    assert_eq!(bot.next_event().await["sub_type"], "connect");
    (backend, bridge, bot)
}

fn walle_q() -> BackendOptions {
    BackendOptions { implementation: "walle-q".into(), ..Default::default() }
}

/// Calls until the bridge has learnt the backend's name (it arrives with `meta.connect`, which
/// may come a moment after the bot's connection).
async fn settle(bot: &mut Bot, profile: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = bot.call("get_version_info", json!({})).await;
        if v["data"]["backend"]["impl"].as_str().is_some_and(|i| !i.is_empty()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the bridge never learnt the backend ({profile})");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unknown_backend_gets_the_generic_profile() {
    let (mut backend, bridge, mut bot) = setup(BackendOptions::default(), |_| {}).await;
    settle(&mut bot, "generic").await;
    bot.call("set_group_kick", json!({"group_id": 30003, "user_id": 20002})).await;
    assert_eq!(backend.next_request().await["action"], "qq.set_group_kick");
    bot.call("send_group_msg", json!({"group_id": 30003, "message": "[CQ:face,id=1]"})).await;
    assert_eq!(backend.next_request().await["params"]["message"][0]["type"], "qq.face");
    bridge.stop().await;
}

#[tokio::test]
async fn a_walle_q_backend_gets_its_own_action_segment_and_notice_names() {
    let (mut backend, bridge, mut bot) = setup(walle_q(), |_| {}).await;
    settle(&mut bot, "walle-q").await;
    let answer = bot.call("set_group_kick", json!({"group_id": 30003, "user_id": 20002})).await;
    let req = backend.next_request().await;
    assert_eq!((req["action"].as_str(), &req["params"]["user_id"]), (Some("kick_group_member"), &json!("20002")));
    assert_eq!(answer["msg"], "BACKEND_UNSUPPORTED_ACTION", "the scripted backend has no such action: {answer}");
    bot.call("send_group_msg", json!({"group_id": 30003, "message": "[CQ:face,id=1]"})).await;
    assert_eq!(backend.next_request().await["params"]["message"][0], json!({"type": "face", "data": {"id": 1}}));

    backend.push(v12_notice(
        "group_member_ban",
        "10001",
        "",
        json!({"group_id": "30003", "user_id": "20002", "operator_id": "10001", "duration": 600}),
    ));
    let ev = bot.next_event().await;
    assert_eq!((ev["notice_type"].as_str(), ev["sub_type"].as_str()), (Some("group_ban"), Some("ban")), "{ev}");
    assert_eq!((&ev["user_id"], &ev["duration"]), (&json!(20002), &json!(600)), "{ev}");
    bridge.stop().await;
}

#[tokio::test]
async fn an_action_the_profile_cannot_do_fails_at_once_naming_the_backend() {
    let (mut backend, bridge, mut bot) = setup(walle_q(), |_| {}).await;
    settle(&mut bot, "walle-q").await;
    let answer = bot.call("get_group_honor_info", json!({"group_id": 30003, "type": "all"})).await;
    assert_eq!(
        (answer["retcode"].as_i64(), answer["msg"].as_str()),
        (Some(100), Some("BRIDGE_UNSUPPORTED_BY_BACKEND"))
    );
    let wording = answer["wording"].as_str().unwrap();
    assert!(wording.contains("walle-q"), "{wording}");
    assert!(backend.no_request_within(std::time::Duration::from_millis(100)).await, "nothing reached the backend");
    bridge.stop().await;
}

#[tokio::test]
async fn a_walle_q_friend_request_is_answered_through_its_flag() {
    let (mut backend, bridge, mut bot) = setup(walle_q(), |_| {}).await;
    settle(&mut bot, "walle-q").await;
    backend.push(json!({"id": "r1", "time": 1.0, "type": "request", "detail_type": "new_friend", "sub_type": "",
        "self": {"platform": "qq", "user_id": "10001"}, "user_id": "20002", "request_id": 77, "message": "hi"}));
    let ev = bot.next_event().await;
    assert_eq!((ev["request_type"].as_str(), &ev["user_id"]), (Some("friend"), &json!(20002)), "{ev}");
    let flag = ev["flag"].as_str().expect("a flag").to_owned();
    backend.answer_next("set_new_friend", json!({"status": "ok", "retcode": 0, "data": null, "message": ""}));
    let answer = bot.call("set_friend_add_request", json!({"flag": flag, "approve": true})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let req = backend.next_request().await;
    assert_eq!(req["action"], "set_new_friend");
    assert_eq!(req["params"]["request_id"], 77, "the integer request id comes back as an integer");
    assert_eq!((&req["params"]["user_id"], &req["params"]["accept"]), (&json!("20002"), &json!(true)));
    bridge.stop().await;
}

#[tokio::test]
async fn the_profile_can_be_forced_by_configuration() {
    let (mut backend, bridge, mut bot) =
        setup(BackendOptions::default(), |o| o.backend_profile = Some("walle-q".into())).await;
    settle(&mut bot, "walle-q").await;
    bot.call("set_group_kick", json!({"group_id": 30003, "user_id": 20002})).await;
    assert_eq!(backend.next_request().await["action"], "kick_group_member");
    bridge.stop().await;
}

#[tokio::test]
async fn get_supported_actions_lists_only_what_the_backend_can_do() {
    let opts = BackendOptions {
        supported_actions: vec!["send_message".into(), "get_self_info".into(), "get_status".into()],
        ..Default::default()
    };
    let (_backend, bridge, mut bot) = setup(opts, |_| {}).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let list = loop {
        let list = bot.call("get_supported_actions", json!({})).await["data"].clone();
        if !list.as_array().unwrap().contains(&json!("get_stranger_info")) {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "the backend's list was never used");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let has = |a: &str| list.as_array().unwrap().contains(&json!(a));
    assert!(has("send_msg") && has("get_login_info") && has("get_msg") && has("get_version_info"), "{list}");
    assert!(!has("get_stranger_info") && !has("set_group_kick"), "{list}");
    bridge.stop().await;
}

#[tokio::test]
async fn the_bots_own_messages_are_message_sent_only_when_asked_for() {
    let own = |id: &str| {
        v12_message(
            "group",
            "10001",
            json!({"message_id": id, "group_id": "30003", "user_id": "10001", "message": "mine"}),
        )
    };
    let other = v12_message(
        "group",
        "10001",
        json!({"message_id": "o1", "group_id": "30003", "user_id": "20002", "message": "theirs"}),
    );
    let (backend, bridge, mut bot) = setup(BackendOptions::default(), |_| {}).await;
    backend.push(own("s1"));
    backend.push(other.clone());
    let ev = bot.next_event().await;
    assert_eq!((ev["post_type"].as_str(), ev["raw_message"].as_str()), (Some("message"), Some("theirs")), "{ev}");
    bridge.stop().await;

    let (backend, bridge, mut bot) = setup(BackendOptions::default(), |o| o.report_self_message = Some(true)).await;
    backend.push(own("s2"));
    let ev = bot.next_event().await;
    assert_eq!((ev["post_type"].as_str(), &ev["user_id"]), (Some("message_sent"), &json!(10001)), "{ev}");
    assert_eq!(ev["message_type"], "group");
    bridge.stop().await;
}

#[tokio::test]
async fn get_msg_asks_walle_q_for_a_message_the_bridge_only_knows_by_id() {
    let (mut backend, bridge, mut bot) = setup(walle_q(), |_| {}).await;
    settle(&mut bot, "walle-q").await;
    // A recall tells the bridge the id, not the text.
    backend.push(v12_notice(
        "group_message_delete",
        "10001",
        "recall",
        json!({"group_id": "30003", "user_id": "20002", "operator_id": "20002", "message_id": "old-1"}),
    ));
    let ev = bot.next_event().await;
    let id = ev["message_id"].clone();
    backend.answer_next(
        "get_message",
        json!({"status": "ok", "retcode": 0, "message": "", "data": {"message_id": "old-1", "user_id": "20002",
            "time": 1700000000.0, "message": [{"type": "text", "data": {"text": "from the backend"}}]}}),
    );
    let got = bot.call("get_msg", json!({"message_id": id})).await;
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!(
        (got["data"]["message"].as_str(), &got["data"]["sender"]["user_id"]),
        (Some("from the backend"), &json!(20002))
    );
    let req = backend.next_request().await;
    assert_eq!((req["action"].as_str(), req["params"]["message_id"].as_str()), (Some("get_message"), Some("old-1")));
    bridge.stop().await;
}

#[tokio::test]
async fn walle_q_gets_its_split_actions_and_a_zero_ban_is_a_lift() {
    let (mut backend, bridge, mut bot) = setup(walle_q(), |_| {}).await;
    settle(&mut bot, "walle-q").await;
    for (action, params, want) in [
        ("set_group_admin", json!({"group_id": 30003, "user_id": 20002, "enable": false}), "unset_group_admin"),
        ("set_group_admin", json!({"group_id": 30003, "user_id": 20002}), "set_group_admin"),
        ("set_group_ban", json!({"group_id": 30003, "user_id": 20002, "duration": 0}), "unban_group_member"),
        ("set_group_ban", json!({"group_id": 30003, "user_id": 20002, "duration": 60}), "ban_group_member"),
    ] {
        bot.call(action, params.clone()).await;
        assert_eq!(backend.next_request().await["action"], want, "{action} {params}");
    }
    backend.push(v12_notice(
        "group_member_ban",
        "10001",
        "",
        json!({"group_id": "30003", "user_id": "20002", "operator_id": "10001", "duration": 0}),
    ));
    let ev = bot.next_event().await;
    assert_eq!((ev["notice_type"].as_str(), ev["sub_type"].as_str()), (Some("group_ban"), Some("lift_ban")), "{ev}");
    bridge.stop().await;
}

#[tokio::test]
async fn one_link_can_have_its_own_profile() {
    use onebot_bridge::config::{Config, FileConfig, Overrides};
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let file: FileConfig =
        toml::from_str(&format!("[backend]\nws = [{{ url = \"{}\", profile = \"walle-q\" }}]\n", backend.url()))
            .unwrap();
    let overrides = Overrides { ws: vec!["127.0.0.1:0".into()], ..Default::default() };
    let bridge = Bridge::start(Config::resolve(file, overrides).unwrap()).await.unwrap();
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    bot.next_event().await;
    bot.call("set_group_kick", json!({"group_id": 30003, "user_id": 20002})).await;
    assert_eq!(backend.next_request().await["action"], "kick_group_member");
    bridge.stop().await;
    let bad: FileConfig =
        toml::from_str("[backend]\nws = [{ url = \"ws://127.0.0.1:1\", profile = \"nope\" }]\n").unwrap();
    let err = Config::resolve(bad, Overrides { ws: vec!["127.0.0.1:0".into()], ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
