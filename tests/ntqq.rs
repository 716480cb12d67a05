//! go-cqhttp bots on NTQQ implementations (NapCat, LLBot, Lagrange.OneBot) through a v11 backend
//! link: scripted implementations (`tests/support/ntqq.rs`) ⇄ the real bridge ⇄ a real nonebot2
//! bot or the scripted v11 bot.
//!
//! The nonebot test needs `tests/clients/.venv` (made by `tests/run.sh`); it fails, never skips,
//! without it.
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)

mod clients;
mod support;

use base64::Engine as _;
use onebot_bridge::config::{Config, FileConfig, Overrides, Protocol};
use onebot_bridge::Bridge;
use serde_json::{json, Value};

use clients::*;
use support::ntqq::{Dialect, Ntqq};
use support::*;

const TOKEN: &str = "ntqq-secret";

/// The bridge dialling `ntqq`'s forward WebSocket as a v11 link, serving bots a forward WS.
async fn bridge_on(ntqq: &Ntqq) -> Bridge {
    let o = Overrides {
        backend_ws: vec![ntqq.url()],
        backend_protocol: Some(Protocol::V11),
        backend_token: Some(TOKEN.into()),
        ws: vec!["127.0.0.1:0".into()],
        ..Default::default()
    };
    let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    ntqq.wait_connected().await;
    bridge
}

/// A scripted bot on the bridge, past its lifecycle event.
async fn bot_on(bridge: &Bridge) -> Bot {
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    assert_eq!(bot.next_frame().await["sub_type"], "connect");
    bot
}

fn text(t: &str) -> Value {
    json!({"type": "text", "data": {"text": t}})
}

/// A real framework on NapCat: nonebot's `/echo` with a face and a picture comes back to NapCat
/// as a `send_msg` in NapCat's words, and nonebot only ever saw the bridge's own ids.
#[tokio::test]
async fn nonebot_on_napcat_echoes_a_private_message_with_a_picture() {
    let mut napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
    let bridge = bridge_on(&napcat).await;
    let bot = NoneBot::start(bridge.ws_addrs()[0], None).await;
    assert_eq!(bot.self_id, "10001");

    let napcat_id = Dialect::NapCat.message_id("u20002", 1);
    napcat.push(json!({
        "self_id": 10001, "user_id": 20002, "time": 1700000000, "message_id": napcat_id, "message_seq": napcat_id,
        "real_id": napcat_id, "message_type": "private", "sub_type": "friend", "post_type": "message",
        "sender": {"user_id": 20002, "nickname": "Bob", "card": ""}, "font": 14, "message_format": "array",
        "raw_message": "/echo hi[CQ:face,id=14]",
        "message": [text("/echo hi"), {"type": "face", "data": {"id": "14"}},
                    {"type": "image", "data": {"file": "ABC.jpg", "url": "https://multimedia.example/ABC.jpg", "file_size": "12"}}]
    }));

    let sent = napcat.next_action("send_msg").await;
    assert_eq!(sent["params"]["message_type"], "private");
    assert_eq!(sent["params"]["user_id"], 20002, "NapCat takes integer ids: {sent}");
    let message = sent["params"]["message"].as_array().unwrap().clone();
    assert_eq!(message[0], text("hi"));
    assert_eq!(message[1], json!({"type": "face", "data": {"id": "14"}}));
    assert_eq!(message[2]["type"], "image");
    assert_eq!(message[2]["data"]["file"], "https://multimedia.example/ABC.jpg", "the picture goes back by its URL");

    // What nonebot saw: the bridge's positive id, not NapCat's, and the picture's URL.
    let seen = bot.process.wait_frame("<-", WAIT, |f| f["post_type"] == "message").await;
    let id = seen["message_id"].as_i64().unwrap();
    assert!(id > 0 && id != napcat_id, "the bridge's own id, got {id} (NapCat's is {napcat_id})");
    assert_eq!(seen["user_id"], 20002);
    assert_eq!(seen["sender"]["nickname"], "Bob");
    let call = bot.process.wait_frame("->", WAIT, |f| f["action"] == "send_msg").await;
    let answer =
        bot.process.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["echo"] == call["echo"]).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let reply_id = answer["data"]["message_id"].as_i64().unwrap();
    assert!(reply_id > 0, "{answer}");

    drop(bot);
    bridge.stop().await;
}

/// NapCat forgets its ids when it restarts; the bot's ids keep working: `get_msg` from the
/// bridge's store, a reply and `delete_msg` reach NapCat with NapCat's own id, and the profile
/// and implementation are NapCat's.
#[tokio::test]
async fn napcat_ids_outlive_its_restart() {
    let mut napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
    let bridge = bridge_on(&napcat).await;
    let mut bot = bot_on(&bridge).await;

    let ev = napcat.group_message(30003, 20002, 1, json!([text("remember me")]));
    let napcat_id = ev["message_id"].as_i64().unwrap();
    napcat.push(ev);
    let seen = bot.next_event().await;
    assert_eq!((seen["group_id"].clone(), seen["user_id"].clone()), (json!(30003), json!(20002)));
    assert_eq!(seen["message"], "remember me");
    let id = seen["message_id"].as_i64().unwrap();
    assert!(id > 0 && id != napcat_id);

    let version = bot.call("get_version_info", json!({})).await;
    assert_eq!(version["data"]["backend"]["impl"], "NapCat.Onebot", "{version}");

    napcat.restart().await;
    assert!(!napcat.knows(napcat_id), "the scripted NapCat forgot its ids");
    napcat.wait_connected().await;

    let got = bot.call("get_msg", json!({"message_id": id})).await;
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!(got["data"]["message"], "remember me");
    assert_eq!(got["data"]["sender"]["user_id"], 20002);

    let reply =
        bot.call("send_group_msg", json!({"group_id": 30003, "message": format!("[CQ:reply,id={id}]yes you")})).await;
    assert_eq!(reply["status"], "ok", "{reply}");
    let sent = napcat.next_action("send_msg").await;
    assert_eq!(sent["params"]["group_id"], 30003);
    // The reply names NapCat's id (and, as go-cqhttp's own reply segments do, the quoted sender).
    assert_eq!(
        sent["params"]["message"],
        json!([{"type": "reply", "data": {"id": napcat_id, "qq": 20002}}, text("yes you")])
    );

    // The bot's own message is deleted with NapCat's id for it; the old one, which NapCat forgot,
    // fails with NapCat's own words.
    let mine = reply["data"]["message_id"].as_i64().unwrap();
    let deleted = bot.call("delete_msg", json!({"message_id": mine})).await;
    assert_eq!(deleted["status"], "ok", "{deleted}");
    let call = napcat.next_action("delete_msg").await;
    assert_eq!(call["params"]["message_id"], Dialect::NapCat.message_id("g30003", 1001));
    let forgotten = bot.call("delete_msg", json!({"message_id": id})).await;
    assert_eq!(forgotten["status"], "failed", "{forgotten}");
    assert_eq!(napcat.next_action("delete_msg").await["params"]["message_id"], napcat_id);

    bridge.stop().await;
}

/// LLBot's ids may be negative and Lagrange's collide across chats: bots get distinct positive
/// ids all the same, each resolving to its own message.
#[tokio::test]
async fn negative_and_colliding_implementation_ids_become_distinct_positive_ids() {
    let llbot = Ntqq::start(Dialect::LlBot, 10001, Some(TOKEN)).await;
    let bridge = bridge_on(&llbot).await;
    let mut bot = bot_on(&bridge).await;
    let n = (1..200).find(|n| Dialect::LlBot.message_id("g30003", *n) < 0).expect("a negative LLBot id");
    llbot.push(llbot.group_message(30003, 20002, n, json!([text("negative")])));
    let seen = bot.next_event().await;
    assert!(seen["message_id"].as_i64().unwrap() > 0, "{seen}");
    assert_eq!(bot.call("get_msg", json!({"message_id": seen["message_id"]})).await["data"]["message"], "negative");
    bridge.stop().await;

    let lagrange = Ntqq::start(Dialect::Lagrange, 10001, Some(TOKEN)).await;
    let bridge = bridge_on(&lagrange).await;
    let mut bot = bot_on(&bridge).await;
    let (a, b) = (
        lagrange.group_message(1111, 20002, 1, json!([text("in A")])),
        lagrange.group_message(2222, 20002, 1, json!([text("in B")])),
    );
    assert_eq!(a["message_id"], b["message_id"], "Lagrange gives both the same id");
    lagrange.push(a);
    lagrange.push(b);
    let (seen_a, seen_b) = (bot.next_event().await, bot.next_event().await);
    assert_ne!(seen_a["message_id"], seen_b["message_id"]);
    for (seen, want) in [(seen_a, "in A"), (seen_b, "in B")] {
        let got = bot.call("get_msg", json!({"message_id": seen["message_id"]})).await;
        assert_eq!(got["data"]["message"], want, "{got}");
    }
    bridge.stop().await;
}

/// go-cqhttp's quick operation on a group message, whatever NapCat's own quick operations do:
/// a reply without a forced quote, then delete, kick and ban as explicit actions with NapCat's ids.
#[tokio::test]
async fn quick_operations_become_explicit_actions_on_napcat() {
    let mut napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
    let bridge = bridge_on(&napcat).await;
    let mut bot = bot_on(&bridge).await;
    let ev = napcat.group_message(30003, 20002, 1, json!([text("spam")]));
    let napcat_id = ev["message_id"].clone();
    napcat.push(ev);
    let seen = bot.next_event().await;

    let op = json!({"reply": "no spam", "at_sender": false, "delete": true, "kick": true, "ban": true});
    let answer = bot.call(".handle_quick_operation", json!({"context": seen, "operation": op})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = napcat.next_request().await;
    assert_eq!(sent["action"], "send_msg");
    assert_eq!(sent["params"]["message"], json!([text("no spam")]), "no quote forced on the reply");
    assert_eq!(napcat.next_request().await["params"]["message_id"], napcat_id, "delete_msg with NapCat's id");
    let kick = napcat.next_request().await;
    assert_eq!((kick["action"].clone(), kick["params"]["user_id"].clone()), (json!("set_group_kick"), json!(20002)));
    let ban = napcat.next_request().await;
    assert_eq!((ban["action"].clone(), ban["params"]["group_id"].clone()), (json!("set_group_ban"), json!(30003)));
    bridge.stop().await;
}

/// NapCat's extension actions: one the profile knows gets its message id translated; one no table
/// names passes through as sent; NapCat's refusal comes back with its own words.
#[tokio::test]
async fn napcat_extension_actions_pass_through_with_ids_translated() {
    let mut napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
    let bridge = bridge_on(&napcat).await;
    let mut bot = bot_on(&bridge).await;
    let ev = napcat.group_message(30003, 20002, 1, json!([text("like me")]));
    let napcat_id = ev["message_id"].clone();
    napcat.push(ev);
    let id = bot.next_event().await["message_id"].clone();

    let like = bot.call("set_msg_emoji_like", json!({"message_id": id, "emoji_id": "76"})).await;
    assert_eq!(like["status"], "ok", "{like}");
    let call = napcat.next_action("set_msg_emoji_like").await;
    assert_eq!(call["params"], json!({"message_id": napcat_id, "emoji_id": "76"}));

    let packet = bot.call("nc_get_packet_status", json!({})).await;
    assert_eq!(packet["status"], "ok", "{packet}");
    assert_eq!(napcat.next_action("nc_get_packet_status").await["params"], json!({}));

    // A forward's messages, in go-cqhttp's shape with the bridge's own CQ rendering.
    let forward = bot.call("get_forward_msg", json!({"id": "res-1"})).await;
    assert_eq!(forward["status"], "ok", "{forward}");
    let entry = &forward["data"]["messages"][0];
    assert_eq!(entry["sender"]["user_id"], 20002, "{forward}");
    assert_eq!(entry["content"], "forwarded [CQ:at,qq=10001]", "{forward}");
    assert_eq!(napcat.next_action("get_forward_msg").await["params"]["message_id"], "res-1");

    let unknown = bot.call("no_such_napcat_action", json!({"x": 1})).await;
    assert_eq!(unknown["status"], "failed", "{unknown}");
    assert!(unknown["wording"].as_str().unwrap_or_default().contains("不支持的Api"), "{unknown}");
    assert_eq!(napcat.next_action("no_such_napcat_action").await["params"], json!({"x": 1}));
    bridge.stop().await;
}

/// A bridge serving a reverse WebSocket for implementations (no protocol configured: the
/// handshake tells), and where it listens.
async fn reverse_bridge() -> (Bridge, std::net::SocketAddr) {
    let port = free_port();
    let o = Overrides {
        backend_ws_reverse: vec![format!("127.0.0.1:{port}")],
        backend_token: Some(TOKEN.into()),
        ws: vec!["127.0.0.1:0".into()],
        ..Default::default()
    };
    let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    (bridge, format!("127.0.0.1:{port}").parse().unwrap())
}

/// NapCat dialling the bridge's reverse WebSocket (Universal, Bearer token, `X-Self-ID`): taken
/// for v11 by its handshake alone, and a message goes both ways; an unknown `X-Client-Role` is
/// refused with 400, a wrong token with 403.
#[tokio::test]
async fn napcat_dials_the_reverse_websocket_and_is_taken_for_v11_by_its_handshake() {
    let (bridge, addr) = reverse_bridge().await;

    let refused = Ntqq::dial(Dialect::NapCat, 10001, Some(TOKEN), addr, "Bogus").await.err().expect("role refused");
    assert!(refused.to_string().contains("400"), "{refused}");
    let wrong = Ntqq::dial(Dialect::NapCat, 10001, Some("nope"), addr, "Universal").await.err().expect("token refused");
    assert!(wrong.to_string().contains("403"), "{wrong}");

    let mut napcat = Ntqq::dial(Dialect::NapCat, 10001, Some(TOKEN), addr, "Universal").await.unwrap();
    let mut bot = bot_on(&bridge).await;
    let ev = napcat.group_message(30003, 20002, 1, json!([text("over reverse ws")]));
    napcat.push(ev);
    let seen = bot.next_event().await;
    assert_eq!(seen["message"], "over reverse ws");
    assert_eq!(seen["group_id"], 30003);
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": "back"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = napcat.next_action("send_msg").await;
    assert_eq!(sent["params"]["message"], json!([text("back")]));
    let version = bot.call("get_version_info", json!({})).await;
    assert_eq!(version["data"]["backend"]["impl"], "NapCat.Onebot", "{version}");
    bridge.stop().await;
}

/// go-cqhttp's split reverse WebSocket (Lagrange.OneBot with `UseUniversalClient: false`): an
/// `API` and an `Event` connection with one `X-Self-ID` are one link. Events come on one,
/// actions go out on the other; a reconnected API connection replaces a stale one, and with the
/// API connection gone actions fail clearly while events still arrive.
#[tokio::test]
async fn lagrange_split_api_and_event_connections_are_one_link() {
    let (bridge, addr) = reverse_bridge().await;
    let mut lagrange = Ntqq::dial_roles(Dialect::Lagrange, 10001, Some(TOKEN), addr, &["API", "Event"]).await.unwrap();
    assert_eq!(lagrange.connections(), 2);
    let mut bot = bot_on(&bridge).await;
    let ev = lagrange.group_message(30003, 20002, 1, json!([text("split in")]));
    lagrange.push(ev);
    let seen = bot.next_event().await;
    assert_eq!(seen["message"], "split in");
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": "split out"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = lagrange.next_action("send_msg").await;
    assert_eq!(sent["params"]["message"], json!([text("split out")]));
    let id = answer["data"]["message_id"].as_i64().unwrap();
    let got = bot.call("get_msg", json!({"message_id": id})).await;
    assert_eq!(got["data"]["message"], "split out", "{got}");
    let version = bot.call("get_version_info", json!({})).await;
    assert_eq!(version["data"]["backend"]["impl"], "Lagrange.OneBot", "{version}");

    // A second API connection (the implementation reconnected before the bridge saw the first
    // one die) takes over; the account keeps working through it.
    let api = lagrange.redial(Some(TOKEN), "API").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": "after takeover"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(lagrange.next_action("send_msg").await["params"]["message"], json!([text("after takeover")]));
    // The API connection gone: actions fail clearly, events still arrive.
    api.abort();
    let _ = api.await;
    let mut failed = Value::Null;
    for _ in 0..100 {
        failed = bot.call("send_group_msg", json!({"group_id": 30003, "message": "nobody"})).await;
        if failed["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["wording"].as_str().is_some_and(|w| !w.is_empty()), "{failed}");
    let ev = lagrange.group_message(30003, 20002, 2, json!([text("events still flow")]));
    lagrange.push(ev);
    let seen = bot.next_event().await;
    assert_eq!(seen["message"], "events still flow");
    bridge.stop().await;
}

/// Message history on NapCat and Lagrange.OneBot: the bot asks with the bridge's id of a message,
/// the implementation is asked with its own (NapCat's `message_seq`, Lagrange's `message_id`),
/// and every entry comes back with the id the bot saw for it, the bot's own sends included, so
/// `get_msg` and replies work on what the history returned.
#[tokio::test]
async fn message_history_comes_back_with_the_bridge_ids() {
    for dialect in [Dialect::NapCat, Dialect::Lagrange] {
        let mut ntqq = Ntqq::start(dialect, 10001, Some(TOKEN)).await;
        let bridge = bridge_on(&ntqq).await;
        let mut bot = bot_on(&bridge).await;
        let mut seen = Vec::new();
        for n in 1..=3 {
            ntqq.push(ntqq.group_message(30003, 20002, n, json!([text(&format!("m{n}"))])));
            seen.push(bot.next_event().await["message_id"].as_i64().unwrap());
        }
        let sent = bot.call("send_group_msg", json!({"group_id": 30003, "message": "mine"})).await;
        let mine = sent["data"]["message_id"].as_i64().unwrap();
        ntqq.next_action("send_msg").await;

        let all = bot.call("get_group_msg_history", json!({"group_id": 30003, "message_seq": 0})).await;
        assert_eq!(all["status"], "ok", "{dialect:?}: {all}");
        let ids: Vec<i64> =
            all["data"]["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [seen[0], seen[1], seen[2], mine], "{dialect:?}: {all}");
        let first = &all["data"]["messages"][0];
        assert_eq!((first["group_id"].as_i64(), first["user_id"].as_i64()), (Some(30003), Some(20002)), "{first}");
        assert_eq!(first["message"], "m1", "{dialect:?}: the endpoint's string format: {first}");

        let latest = ntqq.next_action("get_group_msg_history").await;
        assert!(latest["params"].get("message_seq").is_none(), "0 means the latest, not an id: {latest}");
        let upto =
            bot.call("get_group_msg_history", json!({"group_id": 30003, "message_seq": seen[1], "count": 5})).await;
        let asked = ntqq.next_action("get_group_msg_history").await;
        let key = if dialect == Dialect::Lagrange { "message_id" } else { "message_seq" };
        assert_eq!(asked["params"][key], ntqq_id(dialect, 30003, 2), "{dialect:?}: {asked}");
        let ids: Vec<i64> =
            upto["data"]["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [seen[0], seen[1]], "{dialect:?}: {upto}");

        let got = bot.call("get_msg", json!({"message_id": ids[0]})).await;
        assert_eq!(got["data"]["message"], "m1", "{dialect:?}: {got}");
        let unknown = bot.call("get_group_msg_history", json!({"group_id": 30003, "message_seq": 999_999})).await;
        assert_eq!(unknown["status"], "failed", "{unknown}");
        bridge.stop().await;
    }
}

/// The implementation's id for the `n`th message its script made in a group.
fn ntqq_id(dialect: Dialect, group: i64, n: i64) -> i64 {
    dialect.message_id(&format!("g{group}"), n)
}

/// Both sides restart: NapCat (its ids forgotten) and the bridge by SIGKILL. Every id a bot was
/// given still resolves to its message, a message NapCat sends again keeps its id, and nothing
/// from before is delivered again.
#[tokio::test]
async fn ids_survive_a_sigkill_of_the_bridge_and_a_restart_of_napcat() {
    let data = std::env::temp_dir().join(format!("ob-ntqq-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let mut napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
    let start = |napcat_url: String, data: std::path::PathBuf| async move {
        let port = free_port();
        let ws = format!("127.0.0.1:{port}");
        let data = data.to_string_lossy().into_owned();
        let args = [
            "--backend-ws",
            &napcat_url,
            "--backend-protocol",
            "v11",
            "--backend-token",
            TOKEN,
            "--ws",
            &ws,
            "--data-dir",
            &data,
        ];
        let child = spawn_bridge(&args[..]);
        let bot = Bot::connect_when_up(ws.parse().unwrap()).await;
        (child, bot)
    };

    let (mut bridge, mut bot) = start(napcat.url(), data.clone()).await;
    napcat.wait_connected().await;
    let mut given = Vec::new();
    for n in 1..=30 {
        let ev = napcat.group_message(30003, 20000 + n, n, json!([text(&format!("message {n}"))]));
        let napcat_id = ev["message_id"].clone();
        napcat.push(ev);
        let seen = bot.next_event().await;
        assert_eq!(seen["message"], format!("message {n}"));
        given.push((seen["message_id"].as_i64().unwrap(), napcat_id, n));
    }
    let mut ids: Vec<i64> = given.iter().map(|g| g.0).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 30, "distinct ids");

    bridge.0.kill().unwrap();
    bridge.0.wait().unwrap();
    drop(bot);
    napcat.restart().await;

    let (_bridge, mut bot) = start(napcat.url(), data.clone()).await;
    napcat.wait_connected().await;
    for (id, _, n) in &given {
        let got = bot.call("get_msg", json!({"message_id": id})).await;
        assert_eq!(got["data"]["message"], format!("message {n}"), "{got}");
        assert_eq!(got["data"]["sender"]["user_id"], 20000 + n);
    }
    // NapCat sends its 7th message again (same id, same chat): the same bridge id, and it is the
    // only event the bot gets — nothing from before the kill comes again.
    let again = napcat.group_message(30003, 20007, 7, json!([text("message 7")]));
    napcat.push(again);
    let seen = bot.next_event().await;
    assert_eq!(seen["message_id"], given[6].0, "{seen}");
    // delete_msg reaches NapCat with its own id.
    let deleted = bot.call("delete_msg", json!({"message_id": given[6].0})).await;
    assert_eq!(deleted["status"], "ok", "{deleted}");
    assert_eq!(napcat.next_action("delete_msg").await["params"]["message_id"], given[6].1);
    let _ = std::fs::remove_dir_all(&data);
}

/// NapCat over HTTP: the bridge calls its HTTP API (`POST /<action>`, Bearer token) and takes its
/// HTTP POST events, signed with the secret (401 unsigned, 403 wrongly signed, 204 taken).
#[tokio::test]
async fn napcat_over_http_api_and_signed_http_post() {
    let webhook = free_port();
    let post_to: std::net::SocketAddr = format!("127.0.0.1:{webhook}").parse().unwrap();
    let mut napcat = Ntqq::start_http(Dialect::NapCat, 10001, Some(TOKEN), post_to, Some("post-secret")).await;
    let o = Overrides {
        backend_http: vec![napcat.http_url()],
        backend_webhook: vec![post_to.to_string()],
        backend_protocol: Some(Protocol::V11),
        backend_token: Some(TOKEN.into()),
        backend_secret: Some("post-secret".into()),
        ws: vec!["127.0.0.1:0".into()],
        ..Default::default()
    };
    let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    let mut bot = bot_on(&bridge).await;

    let ev = napcat.group_message(30003, 20002, 1, json!([text("over http")]));
    assert_eq!(napcat.post(ev.clone()).await, 204);
    let seen = bot.next_event().await;
    assert_eq!((seen["message"].clone(), seen["group_id"].clone()), (json!("over http"), json!(30003)));

    // Unsigned or wrongly signed posts are refused and deliver nothing.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let post = |signature: Option<&str>| {
        let mut req = hyper::Request::post(format!("http://{post_to}/")).header("content-type", "application/json");
        if let Some(s) = signature {
            req = req.header("x-signature", s);
        }
        client.request(req.body(http_body_util::Full::new(bytes::Bytes::from(ev.to_string()))).unwrap())
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some("sha1=0000000000000000000000000000000000000000")).await.unwrap().status(), 403);

    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": "back over http"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = napcat.next_action("send_msg").await;
    assert_eq!(sent["params"]["group_id"], 30003);
    assert_eq!(sent["params"]["message"], json!([text("back over http")]));
    let version = bot.call("get_version_info", json!({})).await;
    assert_eq!(version["data"]["backend"]["impl"], "NapCat.Onebot", "{version}");
    bridge.stop().await;
}

/// Koishi (its reverse-WebSocket server; the bridge dials it) on NapCat's forward WebSocket:
/// Koishi's `get_login_info` is answered by NapCat's account, and its echo of a private message
/// reaches NapCat as `send_msg`, with Koishi's integer echo kept.
#[tokio::test]
async fn koishi_on_napcat_echoes_a_private_message() {
    let mut napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
    let script = clients_dir().join("koishi_bot.js");
    let mut koishi = ClientProcess::spawn("koishi", &node(), &[script.to_str().unwrap()], &[("SELF_ID", "10001")]);
    let port: u16 = koishi.wait_line("LISTENING", START_WAIT).await.parse().unwrap();
    let o = Overrides {
        backend_ws: vec![napcat.url()],
        backend_protocol: Some(Protocol::V11),
        backend_token: Some(TOKEN.into()),
        ws_reverse: vec![format!("ws://127.0.0.1:{port}/onebot")],
        reconnect_interval_ms: Some(100),
        ..Default::default()
    };
    let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    assert_eq!(koishi.wait_line("CONNECTED", START_WAIT).await, "10001");

    let id = Dialect::NapCat.message_id("u20002", 1);
    napcat.push(json!({
        "self_id": 10001, "user_id": 20002, "time": 1700000000, "message_id": id, "message_type": "private",
        "sub_type": "friend", "post_type": "message", "sender": {"user_id": 20002, "nickname": "Bob"},
        "raw_message": "hello koishi", "font": 14, "message": [text("hello koishi")]
    }));
    let message: Value = serde_json::from_str(&koishi.wait_line("MESSAGE", WAIT).await).unwrap();
    assert_eq!(message, json!({"content": "hello koishi", "userId": "20002", "channelId": "private:20002"}));
    let sent = napcat.next_action("send_msg").await;
    assert_eq!(
        (sent["params"]["user_id"].clone(), sent["params"]["message_type"].clone()),
        (json!(20002), json!("private"))
    );
    assert_eq!(sent["params"]["message"], json!([text("echo: hello koishi")]));
    let call = koishi.wait_frame("->", WAIT, |f| f["action"] == "send_private_msg").await;
    let answer = koishi.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["echo"] == call["echo"]).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer["echo"].is_i64(), "Koishi's integer echo comes back as one: {answer}");
    drop(koishi);
    bridge.stop().await;
}

/// aiocqhttp with split API/Event reverse connections on LLBot: its quick reply with `at_sender`
/// to a group message reaches LLBot as one `send_msg` mentioning the sender, no quote.
#[tokio::test]
async fn aiocqhttp_quick_reply_on_llbot() {
    let mut llbot = Ntqq::start(Dialect::LlBot, 10001, Some(TOKEN)).await;
    let script = clients_dir().join("aiocqhttp_split_bot.py");
    let mut aiocqhttp = ClientProcess::spawn("aiocqhttp", &python(), &[script.to_str().unwrap()], &[]);
    let port: u16 = aiocqhttp.wait_line("LISTENING", START_WAIT).await.parse().unwrap();
    let o = Overrides {
        backend_ws: vec![llbot.url()],
        backend_protocol: Some(Protocol::V11),
        backend_token: Some(TOKEN.into()),
        ws_reverse_api: Some(format!("ws://127.0.0.1:{port}/ws/api/")),
        ws_reverse_event: Some(format!("ws://127.0.0.1:{port}/ws/event/")),
        ..Default::default()
    };
    let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    aiocqhttp.wait_line("CONNECTED", START_WAIT).await;
    aiocqhttp.wait_line("CONNECTED", START_WAIT).await;

    llbot.push(llbot.group_message(40004, 20002, 1, json!([text("ping")])));
    aiocqhttp.wait_line("GROUP", WAIT).await;
    let sent = llbot.next_action("send_msg").await;
    assert_eq!(sent["params"]["group_id"], 40004, "{sent}");
    let message = sent["params"]["message"].as_array().cloned().unwrap_or_default();
    assert_eq!(message.first(), Some(&json!({"type": "at", "data": {"qq": 20002}})), "mention first: {sent}");
    assert!(message.iter().all(|s| s["type"] != "reply"), "no quote forced: {sent}");
    let said: String = message.iter().filter_map(|s| s["data"]["text"].as_str()).collect();
    assert_eq!(said.trim(), "quick: ping");
    drop(aiocqhttp);
    bridge.stop().await;
}

/// A local file a bot names goes to a NapCat elsewhere (a container) as base64, and to one that
/// shares the bridge's disk as its path when that link says `upload = "path"`.
#[tokio::test]
async fn local_files_go_as_base64_or_as_a_path_per_link() {
    let dir = std::env::temp_dir().join(format!("ob-ntqq-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let picture = dir.join("pic.png");
    std::fs::write(&picture, [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]).unwrap();
    let file_url = format!("file://{}", picture.display());
    for upload in ["", "upload = \"path\""] {
        let mut napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
        let toml = format!(
            "[backend]\nprotocol = \"v11\"\naccess-token = \"{TOKEN}\"\n[[backend.ws]]\nurl = \"{}\"\n{upload}\n\
             [media]\nallowed-dirs = [\"{}\"]\n",
            napcat.url(),
            dir.display()
        );
        let file: FileConfig = toml::from_str(&toml).unwrap();
        let o = Overrides { ws: vec!["127.0.0.1:0".into()], ..Default::default() };
        let bridge = Bridge::start(Config::resolve(file, o).unwrap()).await.unwrap();
        napcat.wait_connected().await;
        let mut bot = bot_on(&bridge).await;
        let message = format!("[CQ:image,file={file_url}]");
        let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
        assert_eq!(answer["status"], "ok", "{answer}");
        let sent = napcat.next_action("send_msg").await;
        let file = sent["params"]["message"][0]["data"]["file"].as_str().unwrap_or_default().to_owned();
        if upload.is_empty() {
            assert_eq!(file, "base64://iVBORw0KGgoBAgM=", "the bytes, for a NapCat elsewhere: {sent}");
            // Larger than one upload_file takes (16 MiB): the core uploads it in fragments, the
            // edge assembles them, and NapCat gets the whole file as base64.
            let big = dir.join("big.mp4");
            let bytes: Vec<u8> = (0..20u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
            std::fs::write(&big, &bytes).unwrap();
            let message = format!("[CQ:video,file=file://{}]", big.display());
            let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
            assert_eq!(answer["status"], "ok", "{answer}");
            let sent = napcat.next_action("send_msg").await;
            let file = sent["params"]["message"][0]["data"]["file"].as_str().unwrap_or_default();
            let got =
                base64::engine::general_purpose::STANDARD.decode(file.strip_prefix("base64://").unwrap()).unwrap();
            assert!(got == bytes, "the 20 MiB file arrived whole ({} bytes)", got.len());
        } else {
            assert_eq!(file, file_url, "the path, for a NapCat on this disk: {sent}");
        }
        bridge.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every kind of bot at once on one Lagrange.OneBot connection (its split reverse WebSocket):
/// nonebot2 on the forward WebSocket, nonebot2 on HTTP POST + the HTTP API, aiocqhttp on split
/// reverse WebSockets, Koishi on a universal reverse WebSocket. One private message reaches all
/// four with the same id, and each one's answer reaches Lagrange once, in Lagrange's words.
#[tokio::test]
async fn four_kinds_of_bot_share_one_lagrange_connection() {
    let (backend_port, api_port) = (free_port(), free_port());
    let roots = json!({"10001": format!("http://127.0.0.1:{api_port}/")}).to_string();
    let script = clients_dir().join("nonebot_http_bot.py");
    let envs = [("ONEBOT_V11_API_ROOTS", roots.as_str()), ("ONEBOT_V11_SECRET", "hush")];
    let mut nonebot_http = ClientProcess::spawn("nonebot-http", &python(), &[script.to_str().unwrap()], &envs);
    let post_port = nonebot_http.wait_line("LISTENING", START_WAIT).await;
    let script = clients_dir().join("aiocqhttp_split_bot.py");
    let mut aiocqhttp = ClientProcess::spawn("aiocqhttp", &python(), &[script.to_str().unwrap()], &[]);
    let split_port = aiocqhttp.wait_line("LISTENING", START_WAIT).await;
    let script = clients_dir().join("koishi_bot.js");
    let mut koishi = ClientProcess::spawn("koishi", &node(), &[script.to_str().unwrap()], &[("SELF_ID", "10001")]);
    let koishi_port = koishi.wait_line("LISTENING", START_WAIT).await;

    let o = Overrides {
        backend_ws_reverse: vec![format!("127.0.0.1:{backend_port}")],
        backend_token: Some(TOKEN.into()),
        ws: vec!["127.0.0.1:0".into()],
        http: vec![format!("127.0.0.1:{api_port}")],
        http_post: vec![format!("http://127.0.0.1:{post_port}/onebot/v11/")],
        secret: Some("hush".into()),
        ws_reverse: vec![format!("ws://127.0.0.1:{koishi_port}/onebot")],
        ws_reverse_api: Some(format!("ws://127.0.0.1:{split_port}/ws/api/")),
        ws_reverse_event: Some(format!("ws://127.0.0.1:{split_port}/ws/event/")),
        reconnect_interval_ms: Some(100),
        ..Default::default()
    };
    let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{backend_port}").parse().unwrap();
    let mut lagrange = Ntqq::dial_roles(Dialect::Lagrange, 10001, Some(TOKEN), addr, &["API", "Event"]).await.unwrap();
    assert_eq!(koishi.wait_line("CONNECTED", START_WAIT).await, "10001");
    aiocqhttp.wait_line("CONNECTED", START_WAIT).await;
    aiocqhttp.wait_line("CONNECTED", START_WAIT).await;
    let nonebot = NoneBot::start(bridge.ws_addrs()[0], None).await;
    assert_eq!(nonebot.self_id, "10001");

    let id = Dialect::Lagrange.message_id("u20002", 1);
    lagrange.push(json!({
        "self_id": 10001, "user_id": 20002, "time": 1700000000, "message_id": id, "message_type": "private",
        "sub_type": "friend", "post_type": "message", "sender": {"user_id": 20002, "nickname": "Bob"},
        "raw_message": "/echo hi", "font": 14, "message": [text("/echo hi")]
    }));
    let mut replies = Vec::new();
    for _ in 0..4 {
        let sent = lagrange.next_action("send_msg").await;
        assert_eq!((&sent["params"]["user_id"], &sent["params"]["message_type"]), (&json!(20002), &json!("private")));
        let said: String =
            sent["params"]["message"].as_array().unwrap().iter().filter_map(|s| s["data"]["text"].as_str()).collect();
        replies.push(said);
    }
    replies.sort();
    assert_eq!(replies, ["echo: /echo hi", "echo: /echo hi", "hi", "hi"], "nonebot ×2, aiocqhttp, Koishi");
    assert!(lagrange.drain().iter().all(|r| r["action"] != "send_msg"), "each bot answered once");

    // The same bridge id reached every bot.
    let fwd = nonebot.process.wait_frame("<-", WAIT, |f| f["post_type"] == "message").await;
    let posted = nonebot_http.wait_frame("<-", WAIT, |f| f["body"]["post_type"] == "message").await;
    let koishi_saw = koishi.wait_frame("<-", WAIT, |f| f["post_type"] == "message").await;
    let bridge_id = fwd["message_id"].as_i64().unwrap();
    assert_ne!(bridge_id, id, "the bridge's id, not Lagrange's");
    assert_eq!(posted["body"]["message_id"], bridge_id);
    assert_eq!(koishi_saw["message_id"], bridge_id);
    drop((nonebot, nonebot_http, aiocqhttp, koishi));
    bridge.stop().await;
}

/// How a scripted implementation meets the bridge.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// The bridge dials its forward WebSocket.
    Forward,
    /// It dials the bridge's reverse WebSocket, one Universal connection.
    Reverse,
    /// It dials the bridge's reverse WebSocket, an API and an Event connection.
    ReverseSplit,
    /// The bridge calls its HTTP API; it posts events, signed.
    Http,
}

/// A bridge with `dialect` connected over `transport`, serving bots a forward WebSocket.
async fn connected(dialect: Dialect, transport: Transport) -> (Bridge, Ntqq) {
    let mut o = Overrides {
        backend_token: Some(TOKEN.into()),
        backend_protocol: Some(Protocol::V11),
        ws: vec!["127.0.0.1:0".into()],
        ..Default::default()
    };
    match transport {
        Transport::Forward => {
            let ntqq = Ntqq::start(dialect, 10001, Some(TOKEN)).await;
            o.backend_ws = vec![ntqq.url()];
            let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
            ntqq.wait_connected().await;
            (bridge, ntqq)
        }
        Transport::Reverse | Transport::ReverseSplit => {
            let port = free_port();
            o.backend_ws_reverse = vec![format!("127.0.0.1:{port}")];
            let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
            let roles: &[&str] =
                if matches!(transport, Transport::Reverse) { &["Universal"] } else { &["API", "Event"] };
            let addr = format!("127.0.0.1:{port}").parse().unwrap();
            let ntqq = Ntqq::dial_roles(dialect, 10001, Some(TOKEN), addr, roles).await.unwrap();
            (bridge, ntqq)
        }
        Transport::Http => {
            let webhook: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let ntqq = Ntqq::start_http(dialect, 10001, Some(TOKEN), webhook, Some("post-secret")).await;
            o.backend_http = vec![ntqq.http_url()];
            o.backend_webhook = vec![webhook.to_string()];
            o.backend_secret = Some("post-secret".into());
            let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
            (bridge, ntqq)
        }
    }
}

/// Every dialect on every transport it offers: a message, a reply to it (the implementation's
/// reply id read as the bridge's), the bot's reply, `get_msg` and `delete_msg` (the bridge's id
/// out, the implementation's id in), and the implementation named by its own profile.
#[tokio::test]
async fn every_dialect_on_every_transport_it_offers() {
    use Transport::*;
    let combinations = [
        (Dialect::NapCat, Forward),
        (Dialect::NapCat, Reverse),
        (Dialect::NapCat, Http),
        (Dialect::LlBot, Forward),
        (Dialect::LlBot, Reverse),
        (Dialect::LlBot, Http),
        (Dialect::Lagrange, Forward),
        (Dialect::Lagrange, Reverse),
        (Dialect::Lagrange, ReverseSplit),
        (Dialect::Lagrange, Http),
    ];
    for (dialect, transport) in combinations {
        let case = format!("{dialect:?} over {transport:?}");
        let (bridge, mut ntqq) = connected(dialect, transport).await;
        let mut bot = bot_on(&bridge).await;
        let first = ntqq.group_message(30003, 20002, 1, json!([text("first")]));
        let first_id = first["message_id"].clone();
        ntqq.emit(first).await;
        let seen = bot.next_event().await;
        assert_eq!(seen["message"], "first", "{case}: {seen}");
        let id = seen["message_id"].as_i64().unwrap();
        assert!(id > 0, "{case}: {seen}");

        let reply = json!([{"type": "reply", "data": {"id": first_id.to_string()}}, text("second")]);
        ntqq.emit(ntqq.group_message(30003, 20003, 2, reply)).await;
        let seen = bot.next_event().await;
        assert_eq!(seen["message"], format!("[CQ:reply,id={id}]second"), "{case}: {seen}");

        let answer =
            bot.call("send_group_msg", json!({"group_id": 30003, "message": format!("[CQ:reply,id={id}]ok")})).await;
        assert_eq!(answer["status"], "ok", "{case}: {answer}");
        let sent = ntqq.next_action("send_msg").await;
        assert_eq!(
            sent["params"]["message"][0]["data"]["id"].to_string().trim_matches('"'),
            first_id.to_string(),
            "{case}: {sent}"
        );

        let got = bot.call("get_msg", json!({"message_id": id})).await;
        assert_eq!(got["data"]["message"], "first", "{case}: {got}");
        let deleted = bot.call("delete_msg", json!({"message_id": id})).await;
        assert_eq!(deleted["status"], "ok", "{case}: {deleted}");
        assert_eq!(ntqq.next_action("delete_msg").await["params"]["message_id"], first_id, "{case}");
        let version = bot.call("get_version_info", json!({})).await;
        assert_eq!(version["data"]["backend"]["impl"], dialect.app_name(), "{case}: {version}");
        bridge.stop().await;
    }
}

/// NapCat put behind a link left at v12 (no `--backend-protocol v11`): the bridge says what is
/// wrong and what to change, once per connection, however many events come.
#[tokio::test]
async fn a_v11_implementation_on_a_v12_link_is_named_with_the_fix() {
    use std::io::BufRead;
    let napcat = Ntqq::start(Dialect::NapCat, 10001, Some(TOKEN)).await;
    let url = napcat.url();
    let args = ["--backend-ws", url.as_str(), "--backend-token", TOKEN, "--ws", "127.0.0.1:0", "--ephemeral"];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onebot-bridge"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut child = ChildGuard(child);
    napcat.wait_connected().await;
    for n in 1..=5 {
        napcat.push(napcat.group_message(30003, 20002, n, json!([text("lost on a v12 link")])));
    }
    // Read until a second after the first hint (the five events are read by then), or give up.
    let mut hints = 0;
    let mut deadline = std::time::Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        if let Ok(line) = rx.recv_timeout(left) {
            if line.contains("--backend-protocol v11") {
                assert!(line.contains("ERROR"), "{line}");
                hints += 1;
                deadline = deadline.min(std::time::Instant::now() + std::time::Duration::from_secs(1));
            }
        }
    }
    let _ = child.0.kill();
    assert_eq!(hints, 1, "said once for six v11 events");
}

/// Lagrange.OneBot on split reverse connections goes away without a Close frame and dials again
/// (a restart): the bot's ids from before still resolve, a reply to one reaches Lagrange with its
/// own id, and nothing from before is delivered again.
#[tokio::test]
async fn ids_outlive_a_lagrange_that_redials_its_split_connections() {
    let (bridge, addr) = reverse_bridge().await;
    let roles = ["API", "Event"];
    let lagrange = Ntqq::dial_roles(Dialect::Lagrange, 10001, Some(TOKEN), addr, &roles).await.unwrap();
    let mut bot = bot_on(&bridge).await;
    let ev = lagrange.group_message(30003, 20002, 1, json!([text("before the restart")]));
    let lagrange_id = ev["message_id"].clone();
    lagrange.push(ev);
    let id = bot.next_event().await["message_id"].as_i64().unwrap();
    drop(lagrange);

    let mut lagrange = Ntqq::dial_roles(Dialect::Lagrange, 10001, Some(TOKEN), addr, &roles).await.unwrap();
    let mut answer = Value::Null;
    for _ in 0..100 {
        answer =
            bot.call("send_group_msg", json!({"group_id": 30003, "message": format!("[CQ:reply,id={id}]again")})).await;
        if answer["status"] == "ok" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = lagrange.next_action("send_msg").await;
    assert_eq!(
        sent["params"]["message"][0]["data"]["id"].to_string().trim_matches('"'),
        lagrange_id.to_string(),
        "{sent}"
    );
    let got = bot.call("get_msg", json!({"message_id": id})).await;
    assert_eq!(got["data"]["message"], "before the restart", "{got}");
    lagrange.push(lagrange.group_message(30003, 20002, 2, json!([text("after")])));
    assert_eq!(bot.next_event().await["message"], "after", "the next event, nothing from before");
    bridge.stop().await;
}
