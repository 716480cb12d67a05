//! A real OneBot v12 implementation built with `walle-core` 0.8.0-a1 (implementation side,
//! `ImplOBC`) ⇄ the real bridge ⇄ a scripted v11 bot, over each of walle's transports: its
//! forward WebSocket server (the bridge dials), its HTTP server for actions plus its webhook for
//! events (the bridge serves the webhook), and its reverse WebSocket client (walle dials the
//! bridge).
//!
//! walle-core's quirks this exercises (`reference/onebot-v12.md` §2.8): `meta.connect` and
//! `meta.status_update` with an empty `id` right after the upgrade, heartbeats whose `interval`
//! is in seconds and which still carry a legacy `status`, unsupported actions answered with
//! `10002`, auth failures answered with HTTP 403, `echo` accepted only as a string or a map.
//! Over HTTP: its server takes `Content-Type` exactly `application/json` or `application/msgpack`
//! on `/` only; its webhook sends `X-Impl` and `X-OneBot-Version` but no `User-Agent`, no
//! `meta.connect` and no `status_update` (accounts come from the bridge's `get_status`), pushes
//! each event from its own task (so back-to-back events may arrive out of order), and wants 204
//! or a JSON list of actions back (anything else that is 200 makes its push task panic). Its
//! reverse-WS client offers `Sec-WebSocket-Protocol: 12.<impl>` through tokio-tungstenite 0.24,
//! which fails the handshake unless the server echoes it, and it panics on a URL without an
//! explicit port.
//!
//! Media: the handler is a file store (`upload_file` url/data, `upload_file_fragmented`,
//! `get_file`) reading params with walle's own typed actions. walle's `bytes` (`OneBotBytes`)
//! are base64 text in JSON and bin in MessagePack on the wire, but an action's params are an
//! untyped `ValueMap`: JSON's base64 arrives as a plain `Value::Str` (only the typed conversion
//! decodes it), MessagePack's bin as `Value::Bytes`; and `serde_json::to_value` of a
//! `Value::Bytes` gives an array of numbers, not base64 (its serialiser picks text by sniffing
//! the type name `&mut serde_json…`).
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)

mod clients;
mod support;
mod walle;

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use walle_core::config::{Heartbeat, HttpClient, HttpServer, ImplConfig, WebSocketClient};
use walle_core::event::{GroupMessageDelete, Notice, Request};
use walle_core::structs::Selft;
use walle_core::util::{OneBotBytes, Value};

use onebot_bridge::config::{Config, FileConfig, Overrides, Protocol};
use onebot_bridge::hub::Selection;
use onebot_bridge::Bridge;
use support::{free_port, Bot, WAIT};
use walle::*;

// ---- the bridge and the bot ----

async fn bridge_to(walle: &Walle, token: Option<&str>, extra: impl FnOnce(&mut Overrides)) -> Bridge {
    let mut o = Overrides {
        backend_ws: vec![walle.url()],
        backend_token: token.map(str::to_owned),
        ws: vec!["127.0.0.1:0".into()],
        ..Default::default()
    };
    extra(&mut o);
    Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap()
}

/// A bot connected to the bridge, past its `lifecycle.connect` for the walle account.
async fn bot_on(bridge: &Bridge) -> Bot {
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    let hello = bot.next_frame().await;
    assert_eq!(hello["meta_event_type"], "lifecycle", "{hello}");
    assert_eq!(hello["sub_type"], "connect");
    assert_eq!(hello["self_id"], 10001);
    bot
}

fn message_event(id: &str, detail: &str, fields: Json) -> Json {
    let mut ev = json!({"id": id, "time": 1700000000.25, "type": "message", "detail_type": detail, "sub_type": "",
        "self": {"platform": PLATFORM, "user_id": ACCOUNT}});
    for (k, v) in fields.as_object().unwrap() {
        ev[k] = v.clone();
    }
    ev
}

fn text(t: &str) -> Json {
    json!([{"type": "text", "data": {"text": t}}])
}

/// Waits (polling) until `cond` holds; false when `within` passed first.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

type Peek = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads a plain connection to walle up to its next heartbeat (at most 3 s), keeping the rest.
async fn next_heartbeat(peek: &mut Peek, other: &mut Vec<Json>) -> Json {
    let read = async {
        loop {
            let Some(Ok(Message::Text(t))) = peek.next().await else { panic!("walle closed the peek connection") };
            let f: Json = serde_json::from_str(&t).unwrap();
            if f["detail_type"] == "heartbeat" {
                return f;
            }
            other.push(f);
        }
    };
    tokio::time::timeout(Duration::from_secs(3), read).await.expect("no walle heartbeat within 3 s")
}

// ---- the tests ----

#[tokio::test]
async fn a_walle_message_reaches_the_bot_and_the_bots_reply_reaches_walle() {
    let mut walle = Walle::start(None, None).await;
    let bridge = bridge_to(&walle, None, |_| {}).await;
    let mut bot = bot_on(&bridge).await;

    walle
        .push(message_event(
            "walle-ev-1",
            "private",
            json!({"message_id": "wm-1", "user_id": "20002", "message": text("a [b] & c, d"), "alt_message": "a [b] & c, d"}),
        ))
        .await;
    let ev = bot.next_event().await;
    assert_eq!(ev["post_type"], "message", "{ev}");
    assert_eq!(ev["message_type"], "private");
    assert_eq!(ev["self_id"], 10001);
    assert_eq!(ev["user_id"], 20002);
    assert_eq!(ev["message"], "a &#91;b&#93; &amp; c, d");
    assert_eq!(ev["raw_message"], ev["message"]);
    let incoming = ev["message_id"].as_i64().unwrap();
    assert!(incoming > 0 && incoming <= i32::MAX as i64, "{incoming}");

    let answer = bot
        .call("send_group_msg", json!({"group_id": 30003, "message": "hi [CQ:at,qq=123] x&#91;1&#93;&amp;2,3"}))
        .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["retcode"], 0);
    assert_eq!(answer["echo"], json!({"seq": 1}));
    let sent_id = answer["data"]["message_id"].as_i64().expect("an integer message_id");
    assert!(sent_id > 0 && sent_id <= i32::MAX as i64, "{sent_id}");
    assert_ne!(sent_id, incoming);

    let action = walle.next_action().await;
    assert_eq!(action["action"], "send_message", "{action}");
    assert_eq!(action["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(action["params"]["detail_type"], "group");
    assert_eq!(action["params"]["group_id"], "30003");
    assert_eq!(
        action["params"]["message"],
        json!([
            {"type": "text", "data": {"text": "hi "}},
            {"type": "mention", "data": {"user_id": "123"}},
            {"type": "text", "data": {"text": " x[1]&2,3"}}
        ])
    );

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

#[tokio::test]
async fn an_action_walle_does_not_support_fails_with_a_backend_reason_and_the_echo_intact() {
    let mut walle = Walle::start(None, None).await;
    let bridge = bridge_to(&walle, None, |_| {}).await;
    let mut bot = bot_on(&bridge).await;

    let echo = json!({"id": "x-1", "n": [1, 2.5, null, "&,[]"], "deep": {"ok": true}});
    let req = json!({"action": "get_group_member_list", "params": {"group_id": 30003}, "echo": echo});
    bot.send_raw(&req.to_string()).await;
    let answer = loop {
        let f = bot.next_frame().await;
        if f.get("post_type").is_none() {
            break f;
        }
    };
    assert_eq!(answer["status"], "failed", "{answer}");
    assert_eq!(answer["retcode"], 100);
    assert_eq!(answer["msg"], "BACKEND_UNSUPPORTED_ACTION");
    let wording = answer["wording"].as_str().expect("a wording");
    assert!(wording.contains("get_group_member_list"), "walle's own message is passed on: {wording}");
    assert_eq!(answer["data"], Json::Null);
    assert_eq!(answer["echo"], echo);

    let action = walle.next_action().await;
    assert_eq!(action["action"], "get_group_member_list", "{action}");
    assert_eq!(action["params"], json!({"group_id": "30003"}));
    assert_eq!(action["self"], json!({"platform": "qq", "user_id": "10001"}));

    // The failure leaves the link usable.
    let login = bot.call("get_login_info", json!({})).await;
    assert_eq!(login["status"], "ok", "{login}");
    assert_eq!(login["data"]["user_id"], 10001);
    assert_eq!(login["data"]["nickname"], "walle-bot");

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

#[tokio::test]
async fn walle_heartbeats_and_empty_event_ids_leave_the_link_alone() {
    // walle's shortest heartbeat: 1 s (0 would make it spin; see the report).
    let mut walle = Walle::start(None, Some(1)).await;
    // No v11 heartbeats of the bridge's own, so any meta frame the bot sees would be walle's leaking.
    let bridge = bridge_to(&walle, None, |o| o.heartbeat_interval_ms = Some(0)).await;
    let mut bot = bot_on(&bridge).await;

    // A second application on walle's server, to see what walle sends on the wire.
    let (mut peek, _) = tokio_tungstenite::connect_async(walle.url()).await.unwrap();
    let mut frames = Vec::new();
    let heartbeat = next_heartbeat(&mut peek, &mut frames).await;
    assert_eq!(frames[0]["detail_type"], "connect", "{frames:?}");
    assert_eq!(frames[0]["id"], "", "walle's meta.connect has an empty id");
    assert_eq!(frames[1]["detail_type"], "status_update");
    assert_eq!(frames[1]["id"], "");
    assert_eq!(heartbeat["interval"], 1, "walle's heartbeat interval is in seconds: {heartbeat}");
    assert!(heartbeat["status"].is_object(), "walle's heartbeat carries a legacy status: {heartbeat}");

    // The bridge got that heartbeat too (same broadcast). Events after it, with empty ids, all arrive.
    for (n, t) in ["first", "second"].into_iter().enumerate() {
        walle
            .push(message_event(
                "",
                "group",
                json!({"message_id": format!("wg-{n}"), "group_id": "30003", "user_id": "20002",
                       "message": text(t), "alt_message": t}),
            ))
            .await;
    }
    for t in ["first", "second"] {
        let f = bot.next_frame().await;
        assert_eq!(f["post_type"], "message", "only the messages reach the bot, no meta: {f}");
        assert_eq!(f["message_type"], "group");
        assert_eq!(f["group_id"], 30003);
        assert_eq!(f["message"], t);
    }

    // Past another walle heartbeat, the link is the same one (one get_status at connect) and works.
    next_heartbeat(&mut peek, &mut Vec::new()).await;
    let login = bot.call("get_login_info", json!({})).await;
    assert_eq!(login["status"], "ok", "{login}");
    assert_eq!(login["data"]["user_id"], 10001);
    assert_eq!(walle.status_calls.load(Ordering::SeqCst), 1, "the bridge redialled walle");
    assert_eq!(walle.next_action().await["action"], "get_self_info");

    drop(peek);
    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

#[tokio::test]
async fn walle_accepts_the_bridges_bearer_token_and_refuses_a_wrong_one() {
    let mut walle = Walle::start(Some("walle-secret"), None).await;

    // Without a token walle refuses the upgrade (with 403, where the spec says 401).
    let refused = tokio_tungstenite::connect_async(walle.url()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("walle let a client in without the token: {:?}", other.map(|_| ())),
    }

    // A bridge with the wrong token never learns the account.
    let wrong = bridge_to(&walle, Some("not-it"), |_| {}).await;
    let learnt =
        eventually(Duration::from_millis(1500), || !matches!(wrong.hub().select(None), Selection::Unknown)).await;
    assert!(!learnt, "the bridge got in with the wrong token");
    wrong.stop().await;

    // The right token, sent as `Authorization: Bearer …`, works end to end.
    let mut req = walle.url().into_client_request().unwrap();
    req.headers_mut().insert("Authorization", HeaderValue::from_static("Bearer walle-secret"));
    let (peek, _) = tokio_tungstenite::connect_async(req).await.expect("walle refused the right token");
    drop(peek);

    let bridge = bridge_to(&walle, Some("walle-secret"), |_| {}).await;
    let mut bot = bot_on(&bridge).await;
    let answer = bot.call("send_private_msg", json!({"user_id": 20002, "message": "hello"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let action = walle.next_action().await;
    assert_eq!(action["action"], "send_message");
    assert_eq!(action["params"]["detail_type"], "private");
    assert_eq!(action["params"]["user_id"], "20002");
    assert_eq!(action["params"]["message"], text("hello"));

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

/// The account's link as the hub sees it: its id and whether it is online.
fn walle_link(bridge: &Bridge) -> Option<(usize, bool)> {
    match bridge.hub().select(Some(10001)) {
        Selection::Ready(entry) => Some((entry.link().id, entry.is_online())),
        _ => None,
    }
}

/// walle serving actions over HTTP (with `token`) and pushing events to the webhook of a bridge
/// started here, whose requests are MessagePack when `msgpack`.
async fn walle_over_http(token: &str, msgpack: bool, extra: impl FnOnce(&mut Overrides)) -> (Walle, Bridge) {
    walle_over_http_as("walle-test", token, msgpack, extra).await
}

/// [`walle_over_http`] with walle calling itself `implt`.
async fn walle_over_http_as(
    implt: &str,
    token: &str,
    msgpack: bool,
    extra: impl FnOnce(&mut Overrides),
) -> (Walle, Bridge) {
    let hook_port = free_port();
    let walle = Walle::start_as(implt, |port| ImplConfig {
        http: vec![HttpServer { host: [127, 0, 0, 1].into(), port, path: None, access_token: Some(token.into()) }],
        http_webhook: vec![HttpClient {
            implt: None,
            platform: None,
            url: format!("http://127.0.0.1:{hook_port}/onebot/v12/"),
            access_token: Some(token.into()),
            timeout: 4,
        }],
        websocket: vec![],
        websocket_rev: vec![],
        heartbeat: Heartbeat { enabled: false, interval: 4 },
    })
    .await;
    let http_url = walle.http_url();
    let bridge = bridge_to(&walle, Some(token), |o| {
        o.backend_ws = vec![];
        o.backend_http = vec![http_url];
        o.backend_webhook = vec![format!("127.0.0.1:{hook_port}")];
        o.backend_msgpack = msgpack;
        extra(o);
    })
    .await;
    (walle, bridge)
}

#[tokio::test]
async fn walle_over_http_and_webhook_in_json_and_msgpack() {
    for msgpack in [false, true] {
        let token = "walle-http-secret";
        // walle pushes to the bridge's webhook, the bridge POSTs to walle's HTTP server.
        let (mut walle, bridge) = walle_over_http(token, msgpack, |_| {}).await;
        // No meta.connect over HTTP: the account comes from get_status.
        let mut bot = bot_on(&bridge).await;
        assert!(walle.status_calls.load(Ordering::SeqCst) >= 1);

        for n in 0..3 {
            let t = format!("webhook {n}");
            walle
                .push(message_event(
                    &format!("walle-hook-{msgpack}-{n}"),
                    "private",
                    json!({"message_id": format!("wh-{n}"), "user_id": "20002", "message": text(&t), "alt_message": t}),
                ))
                .await;
            let ev = bot.next_event().await;
            assert_eq!(ev["message"], t, "{ev}");
            assert_eq!(ev["user_id"], 20002);
        }
        assert_eq!(bridge.hub().backend_info(0).implementation, "walle-test");

        let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": "over http"})).await;
        assert_eq!(answer["status"], "ok", "msgpack {msgpack}: {answer}");
        let sent_id = answer["data"]["message_id"].as_i64().unwrap();
        assert!(sent_id > 0);
        let action = walle.next_action().await;
        assert_eq!(action["action"], "send_message");
        assert_eq!(action["self"], json!({"platform": "qq", "user_id": "10001"}));
        assert_eq!(action["params"]["group_id"], "30003");
        assert_eq!(action["params"]["message"], text("over http"));

        let refused = bot.call("get_group_member_list", json!({"group_id": 30003})).await;
        assert_eq!(refused["msg"], "BACKEND_UNSUPPORTED_ACTION", "{refused}");

        bot.close().await;
        bridge.stop().await;
        walle.stop().await;
    }
}

#[tokio::test]
async fn walle_dials_the_bridges_reverse_ws_with_msgpack_actions() {
    let token = "walle-rev-secret";
    let bridge = {
        let mut o = Overrides {
            backend_ws_reverse: vec!["127.0.0.1:0".into()],
            backend_token: Some(token.into()),
            backend_msgpack: true,
            ws: vec!["127.0.0.1:0".into()],
            ..Default::default()
        };
        o.heartbeat_interval_ms = Some(0);
        Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap()
    };
    let rev = bridge.addrs().backend_ws_reverse[0];
    // walle's URL needs an explicit port (it unwraps `uri.port()`).
    let mut walle = Walle::start_with(|_| ImplConfig {
        http: vec![],
        http_webhook: vec![],
        websocket: vec![],
        websocket_rev: vec![WebSocketClient {
            url: format!("ws://127.0.0.1:{}/onebot/v12/ws", rev.port()),
            access_token: Some(token.into()),
            reconnect_interval: 1,
        }],
        heartbeat: Heartbeat { enabled: true, interval: 1 },
    })
    .await;
    // The handshake worked (walle's client needs its subprotocol echoed) and named walle.
    let mut bot = bot_on(&bridge).await;
    let (link, online) = walle_link(&bridge).expect("walle's account");
    assert!(online);
    assert!(link >= 1 << 16, "a reverse-WS connection is a link of its own: {link}");
    assert_eq!(bridge.hub().backend_info(link).implementation, "walle-test");

    for n in 0..2 {
        let t = format!("dialled {n}");
        walle
            .push(message_event(
                &format!("walle-rev-{n}"),
                "group",
                json!({"message_id": format!("wr-{n}"), "group_id": "30003", "user_id": "20002", "message": text(&t), "alt_message": t}),
            ))
            .await;
        let ev = bot.next_event().await;
        assert_eq!(ev["message"], t, "{ev}");
        assert_eq!(ev["group_id"], 30003);
    }

    // Requests go out as MessagePack binary frames; walle answers in kind.
    let answer = bot.call("send_private_msg", json!({"user_id": 20002, "message": "packed for walle"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let action = walle.next_action().await;
    assert_eq!(action["action"], "send_message");
    assert_eq!(action["params"]["message"], text("packed for walle"));
    let login = bot.call("get_login_info", json!({})).await;
    assert_eq!(login["data"]["nickname"], "walle-bot", "{login}");
    // One connection all along: walle's first heartbeat (sent at start) did not disturb it.
    assert_eq!(walle_link(&bridge), Some((link, true)));

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

// ---- media: walle as the file store ----

/// `len` bytes that start like a PNG and differ with `seed`.
fn picture(len: usize, seed: u32) -> Vec<u8> {
    let mut b: Vec<u8> =
        (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect();
    b[..8].copy_from_slice(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]);
    b
}

/// The `url` of the first image in a v11 message string.
fn cq_image_url(message: &str) -> String {
    let seg = &message[message.find("[CQ:image,").unwrap_or_else(|| panic!("no image in {message}"))..];
    let seg = &seg[..seg.find(']').unwrap()];
    let url = seg.split(',').find_map(|kv| kv.strip_prefix("url=")).unwrap_or_else(|| panic!("no url in {seg}"));
    url.replace("&#44;", ",").replace("&#91;", "[").replace("&#93;", "]").replace("&amp;", "&")
}

/// A plain GET of `url` (`support::raw_get`): the status and the body.
async fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let raw = support::raw_get(host.parse().unwrap(), path, None).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    (status, raw[split + 4..].to_vec())
}

/// The file_ids of a v12 message's image segments.
fn image_file_ids(message: &Json) -> Vec<String> {
    let segs = message.as_array().unwrap_or_else(|| panic!("{message}"));
    segs.iter().filter(|s| s["type"] == "image").map(|s| s["data"]["file_id"].as_str().unwrap().to_owned()).collect()
}

/// walle pushes a group message with the image `file_id`; the bot's copy names it by a URL on
/// the bridge, which fetches it from walle with `get_file` (type data) when asked. Walle sees:
/// `get_file` type url (refused: the file is data), then `get_file_fragmented` (unsupported),
/// then `get_file` type data.
async fn fetch_through_the_bridge(walle: &mut Walle, bot: &mut Bot, file_id: &str, event_id: &str) -> Vec<u8> {
    let image = json!([{"type": "image", "data": {"file_id": file_id}}]);
    walle
        .push(message_event(
            event_id,
            "group",
            json!({"message_id": event_id, "group_id": "30003", "user_id": "20002", "message": image, "alt_message": "[image]"}),
        ))
        .await;
    let ev = bot.next_event().await;
    let message = ev["message"].as_str().unwrap();
    assert!(message.contains(&format!("file={file_id}")), "{ev}");
    let asked = walle.next_action().await;
    assert_eq!(
        (asked["action"].as_str(), asked["params"]["type"].as_str()),
        (Some("get_file"), Some("url")),
        "{asked}"
    );
    let url = cq_image_url(message);
    assert!(url.contains("/files/"), "the bridge's own URL, walle gave none: {url}");

    let (status, body) = http_get(&url).await;
    assert_eq!(status, 200);
    let tried = walle.next_action().await;
    assert_eq!(tried["action"], "get_file_fragmented", "{tried}");
    let got = walle.next_action().await;
    assert_eq!(got["action"], "get_file", "{got}");
    assert_eq!(got["params"], json!({"file_id": file_id, "type": "data"}));
    body
}

#[test]
fn walle_bytes_are_base64_text_in_json_bin_in_msgpack_and_numbers_in_a_json_value() {
    let bytes = Value::Bytes(OneBotBytes(vec![0, 1, 2, 255]));
    // On the wire: JSON text (its serialiser sniffs `&mut serde_json…` by type name), MessagePack bin.
    assert_eq!(serde_json::to_string(&bytes).unwrap(), "\"AAEC/w==\"");
    assert_eq!(rmp_serde::to_vec(&bytes).unwrap(), [0xc4, 4, 0, 1, 2, 255]);
    // Into a `serde_json::Value` the sniffing fails: an array of numbers, not base64.
    assert_eq!(serde_json::to_value(&bytes).unwrap(), json!([0, 1, 2, 255]));
    // Read back, JSON's text stays a string (walle cannot tell it from text), bin becomes bytes;
    // `OneBotBytes` (what walle's typed actions use) takes either.
    let from_json: Value = serde_json::from_str("\"AAEC/w==\"").unwrap();
    assert_eq!(from_json, Value::Str("AAEC/w==".into()));
    let from_msgpack: Value = rmp_serde::from_slice(&[0xc4, 4, 0, 1, 2, 255]).unwrap();
    assert_eq!(from_msgpack, bytes);
    for v in [from_json, from_msgpack] {
        assert_eq!(OneBotBytes::try_from(v).unwrap(), OneBotBytes(vec![0, 1, 2, 255]));
    }
}

#[tokio::test]
async fn pictures_a_bot_sends_are_stored_in_walle_and_sent_by_the_file_ids_walle_gave() {
    let mut walle = Walle::start(None, None).await;
    // The bridge's HTTP server, for the URL a received picture gets.
    let bridge = bridge_to(&walle, None, |o| o.http = vec!["127.0.0.1:0".into()]).await;
    let mut bot = bot_on(&bridge).await;

    let small = picture(3000, 1);
    let big = picture(3_000_000, 2);
    let message = format!(
        "look [CQ:image,file=base64://{}][CQ:image,file=https://example.com/pics/cat.jpg,cache=0][CQ:image,file=base64://{}]",
        STANDARD.encode(&small),
        STANDARD.encode(&big)
    );
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent_id = answer["data"]["message_id"].as_i64().expect("an integer message_id");
    assert!(sent_id > 0 && sent_id <= i32::MAX as i64, "{sent_id}");

    // The small picture: one upload_file, its bytes as JSON base64 text.
    let up = walle.next_action().await;
    assert_eq!(up["action"], "upload_file", "{up}");
    assert_eq!(up["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(up["params"]["type"], "data");
    assert_eq!(up["params"]["data"], json!({"wire": "text", "len": small.len()}));
    assert_eq!(up["params"]["sha256"], sha256_hex(&small));
    let name = up["params"]["name"].as_str().unwrap();
    assert!(name.ends_with(".png"), "named by its hash and sniffed type: {name}");

    // The URL: walle is asked to fetch it.
    let by_url = walle.next_action().await;
    assert_eq!(by_url["action"], "upload_file", "{by_url}");
    assert_eq!(by_url["params"], json!({"type": "url", "url": "https://example.com/pics/cat.jpg", "name": "cat.jpg"}));

    // The big one: prepare, transfers that tile it, finish with its sha256.
    let prepare = walle.next_action().await;
    assert_eq!(prepare["action"], "upload_file_fragmented", "{prepare}");
    assert_eq!(prepare["params"]["stage"], "prepare");
    assert_eq!(prepare["params"]["total_size"], big.len());
    let mut offset = 0;
    let finish = loop {
        let a = walle.next_action().await;
        assert_eq!(a["action"], "upload_file_fragmented", "{a}");
        if a["params"]["stage"] != "transfer" {
            break a;
        }
        assert_eq!(a["params"]["offset"], offset, "in order, no gaps: {a}");
        assert_eq!(a["params"]["data"]["wire"], "text");
        let len = a["params"]["data"]["len"].as_u64().unwrap();
        assert!(len > 0 && len <= 1 << 20, "{a}");
        offset += len;
    };
    assert_eq!(offset, big.len() as u64);
    assert_eq!(finish["params"]["stage"], "finish");
    assert_eq!(finish["params"]["sha256"], sha256_hex(&big));
    let partial = finish["params"]["file_id"].as_str().unwrap().to_owned();
    assert!(partial.starts_with("walle-partial-"), "finish names prepare's upload: {finish}");

    // The message names walle's file_ids, the finished one for the big picture.
    let send = walle.next_action().await;
    assert_eq!(send["action"], "send_message", "{send}");
    assert_eq!(send["params"]["group_id"], "30003");
    let segments = &send["params"]["message"];
    assert_eq!(segments[0], json!({"type": "text", "data": {"text": "look "}}));
    let ids = image_file_ids(segments);
    assert_eq!(ids.len(), 3, "{segments}");
    for s in segments.as_array().unwrap().iter().filter(|s| s["type"] == "image") {
        assert_eq!(s["data"].as_object().unwrap().len(), 1, "only the file_id, no v11 hints: {s}");
    }
    assert_eq!(walle.file(&ids[0]), Some((name.to_owned(), Kept::Bytes(small.clone()))));
    assert_eq!(walle.file(&ids[1]).unwrap().1, Kept::Url("https://example.com/pics/cat.jpg".into()));
    assert_ne!(ids[2], partial, "the file_id finish gave, not prepare's");
    let (_, kept) = walle.file(&ids[2]).expect("the finished upload");
    assert!(kept == Kept::Bytes(big), "the fragments reassemble to exactly the 3 MB");
    assert!(walle.store.lock().unwrap().partial.is_empty(), "no upload left open");

    // And back: walle's get_file gives the bytes (base64 in its JSON answer).
    let fetched = fetch_through_the_bridge(&mut walle, &mut bot, &ids[0], "walle-media-1").await;
    assert!(fetched == small, "{} bytes came back", fetched.len());

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

#[tokio::test]
async fn a_picture_reaches_walle_as_msgpack_bin_over_http() {
    let (mut walle, bridge) =
        walle_over_http("walle-media-secret", true, |o| o.http = vec!["127.0.0.1:0".into()]).await;
    let mut bot = bot_on(&bridge).await;

    let small = picture(3000, 3);
    let message = format!("[CQ:image,file=base64://{}]", STANDARD.encode(&small));
    let answer = bot.call("send_private_msg", json!({"user_id": 20002, "message": message})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer["data"]["message_id"].as_i64().unwrap() > 0);

    let up = walle.next_action().await;
    assert_eq!(up["action"], "upload_file", "{up}");
    assert_eq!(up["params"]["type"], "data");
    assert_eq!(up["params"]["data"], json!({"wire": "bin", "len": small.len()}), "bytes as MessagePack bin");
    assert_eq!(up["params"]["sha256"], sha256_hex(&small));
    let send = walle.next_action().await;
    assert_eq!(send["action"], "send_message", "{send}");
    assert_eq!(send["params"]["user_id"], "20002");
    let ids = image_file_ids(&send["params"]["message"]);
    assert_eq!(ids.len(), 1);
    assert_eq!(walle.file(&ids[0]).unwrap().1, Kept::Bytes(small.clone()));

    // get_file's bytes come back as bin in walle's MessagePack answer.
    let fetched = fetch_through_the_bridge(&mut walle, &mut bot, &ids[0], "walle-media-2").await;
    assert!(fetched == small, "{} bytes came back", fetched.len());

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

#[tokio::test]
async fn a_local_file_outside_the_allowed_directories_is_refused_and_nothing_reaches_walle() {
    let root = std::env::temp_dir().join(format!("ob-walle-media-{}", std::process::id()));
    let allowed = root.join("allowed");
    let outside = root.join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let inside = picture(2000, 4);
    std::fs::write(allowed.join("ok.png"), &inside).unwrap();
    std::fs::write(outside.join("secret.png"), picture(2000, 5)).unwrap();
    let mut refused = vec![outside.join("secret.png"), allowed.join("..").join("outside").join("secret.png")];
    #[cfg(unix)]
    {
        let link = allowed.join("link.png");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(outside.join("secret.png"), &link).unwrap();
        refused.push(link);
    }

    let mut walle = Walle::start(None, None).await;
    let bridge = bridge_to(&walle, None, |o| o.media_dirs = vec![allowed.clone()]).await;
    let mut bot = bot_on(&bridge).await;

    for path in &refused {
        let message = format!("[CQ:image,file=file://{}]", path.display());
        let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
        assert_eq!(answer["status"], "failed", "{}: {answer}", path.display());
        assert_eq!(answer["retcode"], 100);
        assert_eq!(answer["msg"], "FILE_REFUSED");
        assert_eq!(answer["data"], Json::Null);
    }
    // Inside the allowed directory the same form works; it is the first thing walle hears of.
    let message = format!("[CQ:image,file=file://{}]", allowed.join("ok.png").display());
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let up = walle.next_action().await;
    assert_eq!(up["action"], "upload_file", "nothing was sent for the refused files: {up}");
    assert_eq!(up["params"]["name"], "ok.png");
    assert_eq!(up["params"]["data"], json!({"wire": "text", "len": inside.len()}));
    let send = walle.next_action().await;
    assert_eq!(send["action"], "send_message");
    let ids = image_file_ids(&send["params"]["message"]);
    assert_eq!(walle.file(&ids[0]), Some(("ok.png".to_owned(), Kept::Bytes(inside))));
    assert_eq!(walle.store.lock().unwrap().files.len(), 1, "only the allowed file was uploaded");

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
    let _ = std::fs::remove_dir_all(&root);
}

// ---- walle as Walle-Q ----

/// Waits until the bridge has chosen `profile` for the walle account's link (the name arrives
/// with `meta.connect`, `X-Impl` or `get_version`, possibly after the bot's lifecycle event).
async fn profile_settles(bridge: &Bridge, profile: &str) {
    let chosen = || walle_link(bridge).map(|(link, _)| bridge.hub().backend_info(link));
    let settled = eventually(WAIT, || chosen().is_some_and(|info| info.profile == profile)).await;
    assert!(settled, "the bridge never chose the {profile} profile: {:?}", chosen());
}

/// walle-core calling itself `walle-q` (forward WebSocket: the name comes in `meta.connect`'s
/// `version.impl` and `get_version`) gets Walle-Q's own unprefixed actions with string ids, and
/// the bot their `ok`; `get_msg` for a message the bridge knows only by id asks walle's
/// `get_message`; an action the walle-q profile marks unsupported never reaches walle.
#[tokio::test]
async fn walle_calling_itself_walle_q_gets_walle_qs_actions_and_not_what_it_cannot_do() {
    let mut walle = Walle::start_as("walle-q", ws_server(None, None)).await;
    let bridge = bridge_to(&walle, None, |_| {}).await;
    let mut bot = bot_on(&bridge).await;
    profile_settles(&bridge, "walle-q").await;
    let (link, _) = walle_link(&bridge).unwrap();
    assert_eq!(bridge.hub().backend_info(link).implementation, "walle-q");

    let ids = json!({"group_id": "30003", "user_id": "20002"});
    for (action, params, want, want_params) in [
        // go-cqhttp's reject_add_request has no Walle-Q twin: it is dropped.
        (
            "set_group_kick",
            json!({"group_id": 30003, "user_id": 20002, "reject_add_request": true}),
            "kick_group_member",
            ids.clone(),
        ),
        (
            "set_group_ban",
            json!({"group_id": 30003, "user_id": 20002, "duration": 600}),
            "ban_group_member",
            json!({"group_id": "30003", "user_id": "20002", "duration": 600}),
        ),
        // The 0 travels along; Walle-Q's unban_group_member does not read it (walle ignores it).
        (
            "set_group_ban",
            json!({"group_id": 30003, "user_id": 20002, "duration": 0}),
            "unban_group_member",
            json!({"group_id": "30003", "user_id": "20002", "duration": 0}),
        ),
        (
            "set_group_admin",
            json!({"group_id": 30003, "user_id": 20002, "enable": true}),
            "set_group_admin",
            ids.clone(),
        ),
        (
            "set_group_admin",
            json!({"group_id": 30003, "user_id": 20002, "enable": false}),
            "unset_group_admin",
            ids.clone(),
        ),
    ] {
        let answer = bot.call(action, params.clone()).await;
        assert_eq!(
            (answer["status"].as_str(), &answer["retcode"]),
            (Some("ok"), &json!(0)),
            "{action} {params}: {answer}"
        );
        assert_eq!(answer["data"], Json::Null, "{action}: {answer}");
        let got = walle.next_action().await;
        assert_eq!(got["action"], want, "{action} {params}: {got}");
        assert_eq!(got["self"], json!({"platform": "qq", "user_id": "10001"}));
        // Ids as strings, as Walle-Q's typed actions read them (the `ok` above says they did).
        assert_eq!(got["params"], want_params, "{action} {params}");
    }

    // A recall tells the bridge a message's id, not its content: get_msg asks walle-q.
    let me = Selft { platform: PLATFORM.into(), user_id: ACCOUNT.into() };
    let delete = GroupMessageDelete {
        group_id: "30003".into(),
        message_id: "wq-old-1".into(),
        user_id: "20002".into(),
        operator_id: "20002".into(),
    };
    walle.push_event(walle_q_event("walle-q-recall", 1700000200.0, Notice { selft: me }, delete, wq::Recall {})).await;
    let recall = bot.next_event().await;
    assert_eq!(recall["notice_type"], "group_recall", "{recall}");
    let got = bot.call("get_msg", json!({"message_id": recall["message_id"]})).await;
    assert_eq!(got["status"], "ok", "{got}");
    assert_eq!(got["data"]["message"], "kept by walle-q", "{got}");
    assert_eq!(got["data"]["sender"]["user_id"], 20002, "{got}");
    assert_eq!(got["data"]["time"], 1700000123, "{got}");
    let asked = walle.next_action().await;
    assert_eq!(asked["action"], "get_message", "{asked}");
    assert_eq!(asked["params"]["message_id"], "wq-old-1", "walle's own id: {asked}");

    // The profile refuses this before walle hears of it.
    let refused = bot.call("get_group_honor_info", json!({"group_id": 30003, "type": "all"})).await;
    assert_eq!((refused["status"].as_str(), &refused["retcode"]), (Some("failed"), &json!(100)), "{refused}");
    assert_eq!(refused["msg"], "BRIDGE_UNSUPPORTED_BY_BACKEND", "{refused}");
    let wording = refused["wording"].as_str().expect("a wording");
    assert!(wording.contains("walle-q"), "{wording}");
    // The next thing walle hears is the next call: the refused one never reached it.
    let login = bot.call("get_login_info", json!({})).await;
    assert_eq!(login["data"]["nickname"], "walle-bot", "{login}");
    assert_eq!(walle.next_action().await["action"], "get_self_info");

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

/// walle-core calling itself `walle-q` over HTTP + webhook (the name comes in `X-Impl` and
/// `get_version`) pushes Walle-Q's `new_friend` request and `group_member_ban` notice through
/// its own event API: the bot gets go-cqhttp's friend request, whose flag answers it through
/// `set_new_friend` with the integer request id, and go-cqhttp's `group_ban`.
#[tokio::test]
async fn walle_qs_friend_request_is_answered_through_set_new_friend_and_its_ban_notice_is_a_group_ban() {
    let (mut walle, bridge) = walle_over_http_as("walle-q", "walle-q-secret", false, |_| {}).await;
    let mut bot = bot_on(&bridge).await;
    profile_settles(&bridge, "walle-q").await;

    let me = Selft { platform: PLATFORM.into(), user_id: ACCOUNT.into() };
    let new_friend = wq::NewFriend {
        request_id: 4_000_000_077,
        user_id: "20002".into(),
        user_name: "asker".into(),
        message: "let me in, [walle] & co".into(),
    };
    walle.push_event(walle_q_event("walle-q-req-1", 1700000300.0, Request { selft: me.clone() }, new_friend, ())).await;
    let ev = bot.next_event().await;
    assert_eq!((ev["post_type"].as_str(), ev["request_type"].as_str()), (Some("request"), Some("friend")), "{ev}");
    assert_eq!((&ev["self_id"], &ev["user_id"]), (&json!(10001), &json!(20002)), "{ev}");
    assert_eq!(ev["comment"], "let me in, [walle] & co", "{ev}");
    let flag = ev["flag"].as_str().filter(|f| !f.is_empty()).expect("a flag").to_owned();

    let answer = bot.call("set_friend_add_request", json!({"flag": flag, "approve": true})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let got = walle.next_action().await;
    assert_eq!(got["action"], "set_new_friend", "{got}");
    assert_eq!(got["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(
        got["params"],
        json!({"request_id": 4_000_000_077_i64, "user_id": "20002", "accept": true}),
        "the request id still an integer (past i32), the user id a string"
    );

    let ban = wq::GroupMemberBan {
        group_id: "30003".into(),
        user_id: "20002".into(),
        operator_id: "20004".into(),
        duration: 600,
    };
    walle.push_event(walle_q_event("walle-q-ban-1", 1700000400.0, Notice { selft: me }, ban, ())).await;
    let ev = bot.next_event().await;
    assert_eq!((ev["notice_type"].as_str(), ev["sub_type"].as_str()), (Some("group_ban"), Some("ban")), "{ev}");
    assert_eq!(
        (&ev["group_id"], &ev["user_id"], &ev["operator_id"], &ev["duration"]),
        (&json!(30003), &json!(20002), &json!(20004), &json!(600)),
        "{ev}"
    );
    assert_eq!(ev["time"], 1700000400, "{ev}");

    bot.close().await;
    bridge.stop().await;
    walle.stop().await;
}

// ---- a chain: one bridge as the v11 backend of another ----

/// The next action walle got with this name, skipping the others.
async fn next_named(walle: &mut Walle, action: &str) -> Json {
    loop {
        let a = walle.next_action().await;
        if a["action"] == action {
            return a;
        }
    }
}

/// A chain through a v11 implementation no test script wrote: walle-core (v12) ⇄ bridge A, whose
/// go-cqhttp face is the v11 backend of bridge B (`protocol = "v11"`, A's token) ⇄ nonebot2 and a
/// scripted bot on B. A message with a picture goes walle → A → B → nonebot, nonebot's echo comes
/// back to walle with the picture; B answers `get_msg` from its own store and runs a quick
/// operation as explicit actions that reach walle with walle's own ids.
#[tokio::test]
async fn a_bridge_serves_as_the_v11_backend_of_another_bridge_end_to_end() {
    let mut walle = Walle::start(None, None).await;
    let a = bridge_to(&walle, None, |o| {
        o.access_token = Some("a-token".into());
        o.http = vec!["127.0.0.1:0".into()];
    })
    .await;
    let o = Overrides {
        backend_ws: vec![format!("ws://{}/", a.ws_addrs()[0])],
        backend_protocol: Some(Protocol::V11),
        backend_token: Some("a-token".into()),
        ws: vec!["127.0.0.1:0".into()],
        ..Default::default()
    };
    let b = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    let mut bot = bot_on(&b).await;
    let nonebot = clients::NoneBot::start(b.ws_addrs()[0], None).await;
    assert_eq!(nonebot.self_id, ACCOUNT);

    let pic = picture(4000, 7);
    walle.store.lock().unwrap().files.insert("walle-pic-1".into(), ("cat.png".into(), Kept::Bytes(pic.clone())));
    let message =
        json!([{"type": "text", "data": {"text": "/echo hi "}}, {"type": "image", "data": {"file_id": "walle-pic-1"}}]);
    walle
        .push(message_event(
            "chain-ev-1",
            "private",
            json!({"message_id": "wm-chain-1", "user_id": "20002", "message": message, "alt_message": "/echo hi [image]"}),
        ))
        .await;

    // The scripted bot on B sees B's own id and a picture URL (A's) it can fetch.
    let ev = bot.next_event().await;
    assert_eq!((ev["user_id"].clone(), ev["message_type"].clone()), (json!(20002), json!("private")), "{ev}");
    let b_id = ev["message_id"].as_i64().unwrap();
    assert!(b_id > 0, "{ev}");
    let url = cq_image_url(ev["message"].as_str().unwrap());
    assert!(url.contains("/files/"), "A's own URL: {url}");
    let (status, body) = http_get(&url).await;
    assert_eq!(status, 200);
    assert!(body == pic, "the picture, through both bridges: {} bytes", body.len());

    // nonebot's echo reaches walle as a send_message with the text and the picture, uploaded to
    // walle by its URL.
    let sent = next_named(&mut walle, "send_message").await;
    assert_eq!(sent["params"]["detail_type"], "private", "{sent}");
    assert_eq!(sent["params"]["user_id"], "20002");
    let echoed = &sent["params"]["message"];
    assert_eq!(echoed[0], json!({"type": "text", "data": {"text": "hi "}}), "{echoed}");
    let ids = image_file_ids(echoed);
    assert_eq!(ids.len(), 1, "{echoed}");
    assert!(
        matches!(walle.file(&ids[0]), Some((_, Kept::Url(u))) if u.contains("/files/")),
        "{:?}",
        walle.file(&ids[0])
    );

    // get_msg on B: its own store.
    let got = bot.call("get_msg", json!({"message_id": b_id})).await;
    assert_eq!(got["status"], "ok", "{got}");
    assert!(got["data"]["message"].as_str().unwrap().starts_with("/echo hi "), "{got}");

    // A quick operation on a group message at B: the reply, then the delete, reach walle, the
    // delete with walle's own message id.
    let group = json!({"message_id": "wm-chain-2", "group_id": "30003", "user_id": "20002", "message": text("spam"), "alt_message": "spam"});
    walle.push(message_event("chain-ev-2", "group", group)).await;
    let ev = bot.next_event().await;
    assert_eq!(ev["group_id"], 30003, "{ev}");
    let op = json!({"reply": "bye", "at_sender": false, "delete": true});
    let answer = bot.call(".handle_quick_operation", json!({"context": ev, "operation": op})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let reply = next_named(&mut walle, "send_message").await;
    assert_eq!(reply["params"]["group_id"], "30003", "{reply}");
    assert_eq!(reply["params"]["message"], json!([{"type": "text", "data": {"text": "bye"}}]), "{reply}");
    let delete = next_named(&mut walle, "delete_message").await;
    assert_eq!(delete["params"]["message_id"], "wm-chain-2", "{delete}");

    drop(nonebot);
    bot.close().await;
    b.stop().await;
    a.stop().await;
    walle.stop().await;
}
