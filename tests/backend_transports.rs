//! Every v12 transport toward the implementation, end to end: a scripted v12 implementation
//! (HTTP server + webhook pushes, HTTP with `get_latest_events` polling, forward WS, reverse WS)
//! ⇄ the real bridge ⇄ scripted v11 bots on its forward WebSocket. Loopback, OS-chosen ports.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

use onebot_bridge::config::{Config, FileConfig, Limits, Overrides};
use onebot_bridge::hub::Selection;
use onebot_bridge::Bridge;

/// Starts the bridge with a v11 forward-WS endpoint on port 0 and no v11 heartbeats.
async fn bridge(extra: impl FnOnce(&mut Overrides), limits: impl FnOnce(&mut Limits)) -> Bridge {
    let mut o = Overrides { ws: vec!["127.0.0.1:0".into()], heartbeat_interval_ms: Some(0), ..Default::default() };
    extra(&mut o);
    let mut config = Config::resolve(FileConfig::default(), o).unwrap();
    limits(&mut config.limits);
    Bridge::start(config).await.unwrap()
}

/// A bot on the bridge's forward WS, past its `lifecycle.connect` for `self_id`.
async fn bot_for(bridge: &Bridge, self_id: Option<i64>) -> Bot {
    let path = self_id.map_or("/".to_owned(), |id| format!("/?self_id={id}"));
    let mut bot = Bot::connect(bridge.ws_addrs()[0], &path, None).await.unwrap();
    let hello = bot.next_frame().await;
    assert_eq!(hello["meta_event_type"], "lifecycle", "{hello}");
    if let Some(id) = self_id {
        assert_eq!(hello["self_id"], id);
    }
    bot
}

/// Waits (polling) until `cond` holds; false when `within` passed first.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

fn private(id: &str, self_id: &str, text: &str) -> Value {
    let mut ev =
        v12_message("private", self_id, json!({"message_id": format!("m-{id}"), "user_id": "20002", "message": text}));
    ev["id"] = json!(id);
    ev
}

fn unsupported() -> Value {
    json!({"status": "failed", "retcode": 10002, "data": null, "message": "unsupported action"})
}

/// The link the account `v11_id` is bound to: its id, whether it is connected and online.
fn account_link(bridge: &Bridge, v11_id: i64) -> Option<(usize, bool, bool)> {
    match bridge.hub().select(Some(v11_id)) {
        Selection::Ready(entry) => {
            let link = entry.link();
            Some((link.id, link.is_connected(), entry.is_online()))
        }
        _ => None,
    }
}

// ---- HTTP + webhook ----

#[tokio::test]
async fn webhook_events_reach_the_bot_with_204_and_actions_go_over_http() {
    let mut backend = FakeBackend::start_http(BackendOptions::default()).await;
    // No get_version: the implementation's name must come from the webhook's X-Impl.
    backend.answer_next("get_version", unsupported());
    let bridge = bridge(
        |o| {
            o.backend_http = vec![backend.url()];
            o.backend_webhook = vec!["127.0.0.1:0".into()];
        },
        |_| {},
    )
    .await;
    // Accounts come from get_status at start: there is no meta.connect over HTTP.
    let mut bot = bot_for(&bridge, Some(10001)).await;
    let hook = Webhook::new(bridge.addrs().backend_webhook[0], "fake-hook", None);

    let first = private("wh-1", "10001", "over the webhook");
    assert_eq!(hook.push(&first).await, 204);
    let ev = bot.next_event().await;
    assert_eq!((ev["message"].as_str(), ev["self_id"].as_i64()), (Some("over the webhook"), Some(10001)), "{ev}");
    assert_eq!(bridge.hub().backend_info(0).implementation, "fake-hook", "X-Impl is recorded");
    assert_eq!(bridge.hub().backend_info(0).onebot_version, "12");

    // The same event again is taken (204) but not delivered twice; a status_update is applied.
    assert_eq!(hook.push(&first).await, 204);
    let status = json!({"id": "st-1", "time": 1.0, "type": "meta", "detail_type": "status_update", "sub_type": "",
        "status": {"good": true, "bots": [{"self": {"platform": "qq", "user_id": "10001"}, "online": true}]}});
    assert_eq!(hook.push(&status).await, 204);
    assert_eq!(hook.push(&private("wh-2", "10001", "second")).await, 204);
    assert_eq!(bot.next_event().await["message"], "second", "a duplicate slipped through");

    // The bot's action is a POST to the implementation, with the account's `self`.
    let answer = bot.call("send_private_msg", json!({"user_id": 20002, "message": "back over HTTP"})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message");
    assert_eq!(sent["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "back over HTTP"}}]));
    assert_eq!(backend.msgpack_requests(), 0);
    bridge.stop().await;
}

#[tokio::test]
async fn the_webhook_checks_token_method_encoding_and_size() {
    let token = "hook-secret";
    let backend = FakeBackend::start_http(BackendOptions { token: Some(token.into()), ..Default::default() }).await;
    let bridge = bridge(
        |o| {
            o.backend_http = vec![backend.url()];
            o.backend_webhook = vec!["127.0.0.1:0".into()];
            o.backend_token = Some(token.into());
        },
        |l| l.max_message = 64 << 10,
    )
    .await;
    let mut bot = bot_for(&bridge, None).await;
    let addr = bridge.addrs().backend_webhook[0];
    let good = Webhook::new(addr, "fake", Some(token));
    let anonymous = Webhook::new(addr, "fake", None);
    let wrong = Webhook::new(addr, "fake", Some("nope"));
    let ev = |id: &str| private(id, "10001", id).to_string().into_bytes();
    let json = Some("application/json");

    assert_eq!(anonymous.post("POST", &good.url, json, ev("t-0")).await, 401, "no token");
    assert_eq!(wrong.post("POST", &good.url, json, ev("t-1")).await, 403, "wrong token");
    let in_query = format!("http://{addr}/any/path?access_token={token}");
    assert_eq!(anonymous.post("POST", &in_query, json, ev("q-1")).await, 204, "token in the query");
    let mut other_scheme = Webhook::new(addr, "fake", None);
    other_scheme.headers.push(("Authorization".into(), format!("Token {token}")));
    assert_eq!(other_scheme.post("POST", &good.url, json, ev("s-1")).await, 204, "any auth scheme");
    assert_eq!(good.post("GET", &good.url, None, Vec::new()).await, 405);
    assert_eq!(good.post("POST", &good.url, Some("text/plain"), ev("x-1")).await, 415);
    assert_eq!(good.post("POST", &good.url, json, b"{not json".to_vec()).await, 400);
    assert_eq!(good.post("POST", &good.url, json, br#"{"hello": "world"}"#.to_vec()).await, 400, "not an event");
    assert_eq!(good.post("POST", &good.url, Some("application/msgpack"), b"\xc1".to_vec()).await, 400);
    let mut big = private("big-1", "10001", &"x".repeat(70 << 10));
    assert_eq!(good.push(&big).await, 413);
    big["message"] = json!("small enough");
    assert_eq!(good.push_msgpack(&big).await, 204, "MessagePack body");
    assert_eq!(good.post("POST", &good.url, Some("application/json; charset=utf-8"), ev("c-1")).await, 204);

    // Exactly the accepted events reached the bot, in order.
    for want in ["q-1", "s-1", "small enough", "c-1"] {
        assert_eq!(bot.next_event().await["message"], want);
    }
    bridge.stop().await;
}

// ---- HTTP + get_latest_events ----

#[tokio::test]
async fn polling_delivers_events_in_order_and_once() {
    let backend = FakeBackend::start_http(BackendOptions::default()).await;
    let bridge = bridge(|o| o.backend_http = vec![backend.url()], |_| {}).await;
    let mut bot = bot_for(&bridge, Some(10001)).await;

    // More than one poll's worth (limit 100), with every tenth event repeated later.
    let events: Vec<Value> = (0..150).map(|n| private(&format!("p-{n}"), "10001", &format!("n{n}"))).collect();
    for (n, ev) in events.iter().enumerate() {
        backend.push(ev.clone());
        if n % 10 == 9 {
            backend.push(events[n - 5].clone());
        }
    }
    for n in 0..150 {
        let ev = bot.next_event().await;
        assert_eq!(ev["message"], format!("n{n}"), "out of order or duplicated");
    }
    backend.push(events[0].clone());
    backend.push(private("p-last", "10001", "last"));
    assert_eq!(bot.next_event().await["message"], "last", "a duplicate slipped through");
    assert!(backend.polls() >= 2, "one poll cannot have carried 150 events");
    bridge.stop().await;
}

#[tokio::test]
async fn a_polled_backend_that_goes_down_fails_fast_and_comes_back() {
    let mut backend = FakeBackend::start_http(BackendOptions::default()).await;
    let bridge = bridge(|o| o.backend_http = vec![backend.url()], |_| {}).await;
    let mut bot = bot_for(&bridge, Some(10001)).await;
    backend.push(private("d-1", "10001", "before"));
    assert_eq!(bot.next_event().await["message"], "before");

    backend.stop().await;
    let started = Instant::now();
    let answer = bot.call("get_login_info", json!({})).await;
    assert_eq!(answer["status"], "failed", "{answer}");
    let msg = answer["msg"].as_str().unwrap();
    assert!(matches!(msg, "BACKEND_UNAVAILABLE" | "BACKEND_LINK_ERROR"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // Failed polls put the account offline.
    let offline = eventually(Duration::from_secs(5), || account_link(&bridge, 10001).is_some_and(|l| !l.2)).await;
    assert!(offline, "the account stayed online while the backend was down");

    backend.resume().await;
    let answer = bot.call("get_login_info", json!({})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["data"]["user_id"], 10001);
    backend.push(private("d-2", "10001", "after"));
    assert_eq!(bot.next_event().await["message"], "after");
    let online = eventually(Duration::from_secs(5), || account_link(&bridge, 10001).is_some_and(|l| l.2)).await;
    assert!(online, "the account did not come back online");
    bridge.stop().await;
}

// ---- reverse WebSocket ----

#[tokio::test]
async fn reverse_ws_checks_the_token_and_echoes_the_subprotocol() {
    let bridge = bridge(
        |o| {
            o.backend_ws_reverse = vec!["127.0.0.1:0".into()];
            o.backend_token = Some("rev-secret".into());
        },
        |_| {},
    )
    .await;
    let addr = bridge.addrs().backend_ws_reverse[0];
    let status = |r: Result<FakeBackend, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => 101,
    };
    let opts = |token: Option<&str>| BackendOptions { token: token.map(str::to_owned), ..Default::default() };
    assert_eq!(status(FakeBackend::dial(addr, "/", opts(None)).await), 401);
    assert_eq!(status(FakeBackend::dial(addr, "/", opts(Some("nope"))).await), 403);
    assert_eq!(status(FakeBackend::dial(addr, "/onebot/v12/?access_token=nope", opts(None)).await), 403);

    // A walle-like implementation: the subprotocol names it, no meta.connect, no get_version.
    let named = BackendOptions {
        token: Some("rev-secret".into()),
        protocol: Some("12.fake-rev".into()),
        announce: false,
        ..Default::default()
    };
    let mut backend = FakeBackend::dial(addr, "/onebot/v12/ws", named.clone()).await.unwrap();
    backend.answer_next("get_version", unsupported());
    assert_eq!(backend.echoed_protocol.as_deref(), Some("12.fake-rev"), "the offered subprotocol is echoed");
    let mut bot = bot_for(&bridge, Some(10001)).await;
    let (link, connected, online) = account_link(&bridge, 10001).unwrap();
    assert!(connected && online);
    assert!(link >= 1 << 16, "a reverse-WS connection gets a link id of its own: {link}");
    assert_eq!(bridge.hub().backend_info(link).implementation, "fake-rev");
    backend.push(private("r-1", "10001", "from a dialler"));
    assert_eq!(bot.next_event().await["message"], "from a dialler");
    assert_eq!(bot.call("get_login_info", json!({})).await["data"]["user_id"], 10001);
    assert_eq!(backend.next_request().await["action"], "get_self_info");

    // A ComWeChat-like one: no subprotocol offered, none echoed; the token in the query.
    let bare = BackendOptions { protocol: None, accounts: vec!["10002".into()], announce: false, ..Default::default() };
    let mut second = FakeBackend::dial(addr, "/?access_token=rev-secret", bare).await.unwrap();
    assert_eq!(second.echoed_protocol, None);
    let mut bot2 = bot_for(&bridge, Some(10002)).await;
    let (link2, _, _) = account_link(&bridge, 10002).unwrap();
    assert_ne!(link2, link, "each connection is its own link");
    second.push(private("r-2", "10002", "from the second"));
    assert_eq!(bot2.next_event().await["message"], "from the second");
    assert_eq!(bot2.call("get_login_info", json!({})).await["data"]["user_id"], 10002);
    assert_eq!(second.next_request().await["self"]["user_id"], "10002");

    // When a connection closes, its accounts go offline; the other link is untouched.
    drop(second);
    assert!(eventually(Duration::from_secs(5), || account_link(&bridge, 10002).is_some_and(|l| !l.1 && !l.2)).await);
    assert!(account_link(&bridge, 10001).is_some_and(|l| l.1 && l.2));
    let answer = bot2.call("get_login_info", json!({})).await;
    assert_eq!(answer["msg"], "BACKEND_UNAVAILABLE", "{answer}");
    bridge.stop().await;
}

// ---- MessagePack ----

#[tokio::test]
async fn msgpack_goes_both_ways_on_every_transport() {
    for transport in ["forward-ws", "reverse-ws", "http-poll"] {
        let (bridge, mut backend) = match transport {
            "forward-ws" => {
                let backend = FakeBackend::start(BackendOptions::default()).await;
                let url = backend.url();
                let bridge = bridge(
                    |o| {
                        o.backend_msgpack = true;
                        o.backend_ws = vec![url];
                    },
                    |_| {},
                )
                .await;
                (bridge, backend)
            }
            "http-poll" => {
                let backend = FakeBackend::start_http(BackendOptions::default()).await;
                let url = backend.url();
                let bridge = bridge(
                    |o| {
                        o.backend_msgpack = true;
                        o.backend_http = vec![url];
                    },
                    |_| {},
                )
                .await;
                (bridge, backend)
            }
            _ => {
                let bridge = bridge(
                    |o| {
                        o.backend_msgpack = true;
                        o.backend_ws_reverse = vec!["127.0.0.1:0".into()];
                    },
                    |_| {},
                )
                .await;
                let addr = bridge.addrs().backend_ws_reverse[0];
                let backend = FakeBackend::dial(addr, "/", BackendOptions::default()).await.unwrap();
                (bridge, backend)
            }
        };
        let mut bot = bot_for(&bridge, Some(10001)).await;

        let answer = bot.call("send_private_msg", json!({"user_id": 20002, "message": "packed"})).await;
        assert_eq!(answer["status"], "ok", "{transport}: {answer}");
        let sent = backend.next_request().await;
        assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "packed"}}]), "{transport}");
        assert!(backend.msgpack_requests() >= 2, "{transport}: requests went out as MessagePack");

        // Events: binary frames on WebSocket, the MessagePack poll answer over HTTP; JSON still read.
        if transport == "http-poll" {
            backend.push(private(&format!("{transport}-1"), "10001", "event one"));
            backend.push(private(&format!("{transport}-2"), "10001", "event two"));
        } else {
            backend.push_msgpack(private(&format!("{transport}-1"), "10001", "event one"));
            backend.push(private(&format!("{transport}-2"), "10001", "event two"));
        }
        assert_eq!(bot.next_event().await["message"], "event one", "{transport}");
        assert_eq!(bot.next_event().await["message"], "event two", "{transport}");
        bridge.stop().await;
    }
}

// ---- several accounts on one link ----

#[tokio::test]
async fn two_accounts_on_one_link_reach_two_bots_and_never_cross() {
    let opts = BackendOptions { accounts: vec!["10001".into(), "10002".into()], ..Default::default() };
    let mut backend = FakeBackend::start(opts).await;
    let url = backend.url();
    let bridge = bridge(|o| o.backend_ws = vec![url], |_| {}).await;
    let mut alice = bot_for(&bridge, Some(10001)).await;
    let mut bob = bot_for(&bridge, Some(10002)).await;

    for n in 0..20 {
        let (me, text) = if n % 3 == 0 { ("10002", format!("bob {n}")) } else { ("10001", format!("alice {n}")) };
        backend.push(private(&format!("x-{n}"), me, &text));
    }
    for n in 0..20 {
        let (bot, want) = if n % 3 == 0 { (&mut bob, format!("bob {n}")) } else { (&mut alice, format!("alice {n}")) };
        let ev = bot.next_event().await;
        assert_eq!(ev["message"], want, "an event went to the wrong bot or out of order");
        assert_eq!(ev["self_id"], if n % 3 == 0 { 10002 } else { 10001 });
    }
    // Nothing else is waiting for either bot: the next event each sees is its own marker.
    backend.push(private("end-b", "10002", "bob end"));
    backend.push(private("end-a", "10001", "alice end"));
    assert_eq!(alice.next_event().await["message"], "alice end");
    assert_eq!(bob.next_event().await["message"], "bob end");

    // Every action carries the account of the bot that made it.
    for round in 0..3 {
        for (bot, me) in [(&mut alice, "10001"), (&mut bob, "10002")] {
            let answer =
                bot.call("send_private_msg", json!({"user_id": 20002, "message": format!("{me} {round}")})).await;
            assert_eq!(answer["status"], "ok", "{answer}");
            let sent = backend.next_request().await;
            assert_eq!(sent["self"], json!({"platform": "qq", "user_id": me}));
            assert_eq!(sent["params"]["message"][0]["data"]["text"], format!("{me} {round}"));
            let login = bot.call("get_login_info", json!({})).await;
            assert_eq!(login["data"]["user_id"], me.parse::<i64>().unwrap());
            assert_eq!(backend.next_request().await["self"]["user_id"], me);
        }
    }
    bridge.stop().await;
}

// ---- reconnect storms ----

const RESTARTS: usize = 20;

#[tokio::test]
async fn a_forward_ws_backend_restarting_20_times_leaves_one_link_and_every_event_once() {
    // Every connection served at once: a second dial by the bridge would show in `live`.
    let mut backend = FakeBackend::start(BackendOptions { concurrent: true, ..Default::default() }).await;
    let url = backend.url();
    let bridge = bridge(|o| o.backend_ws = vec![url], |_| {}).await;
    let mut bot = bot_for(&bridge, Some(10001)).await;
    backend.push(private("storm-0", "10001", "event 0"));
    assert_eq!(bot.next_event().await["message"], "event 0");

    for round in 1..=RESTARTS {
        backend.restart().await;
        let connected = eventually(WAIT, || backend.connections.load(SEQ) == round + 1).await;
        assert!(connected, "round {round}: the bridge did not redial");
        // The implementation resends the previous event (dropped by id) and sends a new one.
        backend.push(private(&format!("storm-{}", round - 1), "10001", &format!("event {}", round - 1)));
        backend.push(private(&format!("storm-{round}"), "10001", &format!("event {round}")));
        let ev = bot.next_event().await;
        assert_eq!(ev["message"], format!("event {round}"), "round {round}: lost or duplicated");
    }
    backend.push(private("storm-last", "10001", "last"));
    assert_eq!(bot.next_event().await["message"], "last", "a duplicate slipped through");
    assert_eq!(backend.connections.load(SEQ), RESTARTS + 1, "the bridge dialled more than once per restart");
    assert_eq!(backend.live.load(SEQ), 1, "exactly one connection is open");
    assert_eq!(bot.call("get_login_info", json!({})).await["status"], "ok");
    bridge.stop().await;
}

#[tokio::test]
async fn a_reverse_ws_backend_redialling_20_times_leaves_one_link_and_every_event_once() {
    let bridge = bridge(|o| o.backend_ws_reverse = vec!["127.0.0.1:0".into()], |_| {}).await;
    let addr = bridge.addrs().backend_ws_reverse[0];
    let mut backend = FakeBackend::dial(addr, "/", BackendOptions::default()).await.unwrap();
    let mut bot = bot_for(&bridge, Some(10001)).await;
    backend.push(private("rstorm-0", "10001", "event 0"));
    assert_eq!(bot.next_event().await["message"], "event 0");
    let first_link = account_link(&bridge, 10001).unwrap().0;

    for round in 1..=RESTARTS {
        // Killed and back at once (walle-core redials immediately), before the bridge noticed.
        backend.redial().await.unwrap();
        backend.push(private(&format!("rstorm-{}", round - 1), "10001", &format!("event {}", round - 1)));
        backend.push(private(&format!("rstorm-{round}"), "10001", &format!("event {round}")));
        let ev = bot.next_event().await;
        assert_eq!(ev["message"], format!("event {round}"), "round {round}: lost or duplicated");
    }
    backend.push(private("rstorm-last", "10001", "last"));
    assert_eq!(bot.next_event().await["message"], "last", "a duplicate slipped through");

    // One link: the account is bound to the newest connection, which is up, and it serves actions.
    let settled = eventually(WAIT, || {
        account_link(&bridge, 10001)
            .is_some_and(|(id, connected, online)| id >= first_link + RESTARTS && connected && online)
    })
    .await;
    assert!(settled, "the account is not on the newest connection: {:?}", account_link(&bridge, 10001));
    assert_eq!(backend.live.load(SEQ), 1);
    let login = bot.call("get_login_info", json!({})).await;
    assert_eq!(login["status"], "ok", "{login}");
    assert_eq!(backend.next_request().await["action"], "get_self_info");
    bridge.stop().await;
}

const SEQ: std::sync::atomic::Ordering = std::sync::atomic::Ordering::SeqCst;
