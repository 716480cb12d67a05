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

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use walle_core::action::Action;
use walle_core::config::{Heartbeat, HttpClient, HttpServer, ImplConfig, WebSocketClient, WebSocketServer};
use walle_core::event::Event;
use walle_core::obc::ImplOBC;
use walle_core::resp::{resp_error, Resp};
use walle_core::structs::{Bot as WalleBot, Selft, Status, Version};
use walle_core::{ActionHandler, EventHandler, GenStatus, OneBot, WalleResult};

use onebot_bridge::config::{Config, FileConfig, Overrides};
use onebot_bridge::hub::Selection;
use onebot_bridge::Bridge;
use support::{Bot, WAIT};

const PLATFORM: &str = "qq";
const ACCOUNT: &str = "10001";

// ---- the walle-core implementation ----

/// The implementation's business logic: a handful of canned answers, and a record of every
/// action walle-core handed to it (as the JSON it would be on the wire).
struct Handler {
    selft: Selft,
    seen: mpsc::UnboundedSender<Json>,
    sent: AtomicUsize,
    status_calls: Arc<AtomicUsize>,
}

fn ok(data: Json) -> Resp {
    Resp::ok(serde_json::from_value::<walle_core::util::Value>(data).unwrap(), "")
}

impl GenStatus for Handler {
    fn gen_status(&self) -> Status {
        Status { good: true, bots: vec![WalleBot { selft: self.selft.clone(), online: true }] }
    }

    fn contains_bot(&self, bot: &Selft) -> bool {
        *bot == self.selft
    }
}

impl ActionHandler<Event, Action, Resp> for Handler {
    type Config = ();

    async fn start<AH, EH>(&self, _ob: &Arc<OneBot<AH, EH>>, _config: ()) -> WalleResult<Vec<JoinHandle<()>>>
    where
        AH: ActionHandler<Event, Action, Resp> + Send + Sync + 'static,
        EH: EventHandler<Event, Action, Resp> + Send + Sync + 'static,
    {
        Ok(vec![])
    }

    async fn call<AH, EH>(&self, action: Action, _ob: &Arc<OneBot<AH, EH>>) -> WalleResult<Resp>
    where
        AH: ActionHandler<Event, Action, Resp> + Send + Sync + 'static,
        EH: EventHandler<Event, Action, Resp> + Send + Sync + 'static,
    {
        let _ = self.seen.send(serde_json::to_value(&action).unwrap());
        let me = json!({"platform": self.selft.platform, "user_id": self.selft.user_id});
        Ok(match action.action.as_str() {
            "send_message" => {
                let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
                ok(json!({"message_id": format!("w-{n}"), "time": 1700000000.5}))
            }
            "get_status" => {
                self.status_calls.fetch_add(1, Ordering::SeqCst);
                ok(json!({"good": true, "bots": [{"self": me, "online": true}]}))
            }
            "get_version" => ok(json!({"impl": "walle-test", "version": walle_core::VERSION, "onebot_version": "12"})),
            "get_self_info" => {
                ok(json!({"user_id": self.selft.user_id, "user_name": "walle-bot", "user_displayname": ""}))
            }
            other => resp_error::unsupported_action(other).into(),
        })
    }
}

type WalleOb = OneBot<Handler, ImplOBC<Event>>;

/// A running walle-core implementation serving forward WebSocket on a loopback port.
struct Walle {
    ob: Arc<WalleOb>,
    port: u16,
    seen: mpsc::UnboundedReceiver<Json>,
    status_calls: Arc<AtomicUsize>,
}

/// A loopback port that was free a moment ago (walle-core binds its own listener from a config).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Walle {
    /// Serving forward WebSocket. `heartbeat`: walle's interval in seconds, `None` for none.
    async fn start(token: Option<&str>, heartbeat: Option<u32>) -> Walle {
        let token = token.map(str::to_owned);
        Walle::start_with(move |port| ImplConfig {
            http: vec![],
            http_webhook: vec![],
            websocket: vec![WebSocketServer {
                host: [127, 0, 0, 1].into(),
                port,
                path: None,
                access_token: token.clone(),
            }],
            websocket_rev: vec![],
            heartbeat: Heartbeat { enabled: heartbeat.is_some(), interval: heartbeat.unwrap_or(4) },
        })
        .await
    }

    /// With the transports `config` gives for a free loopback `port` (walle binds it itself).
    async fn start_with(config: impl Fn(u16) -> ImplConfig) -> Walle {
        let mut last_error = None;
        // Another process may take the port between our probe and walle's bind: try again.
        for _ in 0..5 {
            let (tx, seen) = mpsc::unbounded_channel();
            let status_calls = Arc::new(AtomicUsize::new(0));
            let handler = Handler {
                selft: Selft { platform: PLATFORM.into(), user_id: ACCOUNT.into() },
                seen: tx,
                sent: AtomicUsize::new(0),
                status_calls: status_calls.clone(),
            };
            let version = Version {
                implt: "walle-test".into(),
                version: walle_core::VERSION.into(),
                onebot_version: "12".into(),
            };
            let ob = Arc::new(OneBot::new(handler, ImplOBC::new("walle-test".into()), version));
            let port = free_port();
            match ob.start::<Event, Action, Resp>((), config(port), true).await {
                Ok(()) => return Walle { ob, port, seen, status_calls },
                Err(e) => last_error = Some(e),
            }
        }
        panic!("walle-core would not start: {last_error:?}");
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Pushes a v12 event (given as wire JSON) to every connected application.
    async fn push(&self, event: Json) {
        let event: Event = serde_json::from_value(event).unwrap();
        self.ob.handle_event::<Event, Action, Resp>(event).await.unwrap();
    }

    /// The next action the handler got, skipping the bridge's own `get_status`/`get_version`.
    async fn next_action(&mut self) -> Json {
        loop {
            let a = tokio::time::timeout(WAIT, self.seen.recv()).await.expect("no action reached walle").unwrap();
            if !matches!(a["action"].as_str(), Some("get_status" | "get_version")) {
                return a;
            }
        }
    }

    async fn stop(self) {
        // Closes every connection at once; only the heartbeat task may sleep out its interval.
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ob.shutdown::<Event, Action, Resp>(true)).await;
    }
}

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

#[tokio::test]
async fn walle_over_http_and_webhook_in_json_and_msgpack() {
    for msgpack in [false, true] {
        let token = "walle-http-secret";
        // walle pushes to the bridge's webhook, the bridge POSTs to walle's HTTP server.
        let hook_port = free_port();
        let mut walle = Walle::start_with(|port| ImplConfig {
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
        })
        .await;
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
