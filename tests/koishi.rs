//! A real Koishi bot (koishi 4.18 + koishi-plugin-adapter-onebot 6.9, `protocol: 'ws-reverse'`) on
//! the bridge: scripted v12 backend ⇄ the real bridge (dialling Koishi's reverse-WS server) ⇄
//! `tests/clients/koishi_bot.js`.
//!
//! Needs Node.js and `tests/clients/node_modules` (made by `tests/run.sh` with `npm ci`); fails,
//! never skips, without them.

mod clients;
mod support;

use serde_json::{json, Value};

use clients::*;
use onebot_bridge::config::{Config, FileConfig, Overrides};
use onebot_bridge::Bridge;
use support::*;

/// Koishi, listening (it printed `LISTENING <port>`), accepting the bot account `self_id`.
async fn start_koishi(self_id: &str) -> (ClientProcess, u16) {
    let script = clients_dir().join("koishi_bot.js");
    let mut koishi = ClientProcess::spawn("koishi", &node(), &[script.to_str().unwrap()], &[("SELF_ID", self_id)]);
    let port = koishi.wait_line("LISTENING", START_WAIT).await.parse().unwrap();
    (koishi, port)
}

async fn bridge_dialling(backend: &FakeBackend, url: String) -> Bridge {
    let o = Overrides {
        backend_ws: vec![backend.url()],
        ws_reverse: vec![url],
        reconnect_interval_ms: Some(100),
        ..Default::default()
    };
    Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap()
}

#[tokio::test]
async fn koishi_over_reverse_ws_gets_a_private_message_and_its_reply_reaches_the_backend() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let (mut koishi, port) = start_koishi("10001").await;
    let bridge = bridge_dialling(&backend, format!("ws://127.0.0.1:{port}/onebot")).await;

    // Koishi accepts only `X-Client-Role: Universal` and an `X-Self-ID` equal to its selfId.
    let headers: Value = serde_json::from_str(&koishi.wait_line("HANDSHAKE", WAIT).await).unwrap();
    assert_eq!(headers["x-client-role"], "Universal");
    assert_eq!(headers["x-self-id"], "10001");
    assert_eq!(headers["user-agent"], "CQHttp/4.15.0");
    // It goes online once its get_login_info call (→ v12 get_self_info) is answered.
    assert_eq!(koishi.wait_line("CONNECTED", START_WAIT).await, "10001");
    let login = koishi.wait_frame("->", WAIT, |f| f["action"] == "get_login_info").await;
    let answer = koishi.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["echo"] == login["echo"]).await;
    assert_eq!(answer["data"]["user_id"], 10001, "{answer}");

    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "k1", "user_id": "20002", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": "hello koishi"}}]}),
    ));
    let message: Value = serde_json::from_str(&koishi.wait_line("MESSAGE", WAIT).await).unwrap();
    assert_eq!(message, json!({"content": "hello koishi", "userId": "20002", "channelId": "private:20002"}));

    // Before it: Koishi's own get_login_info on connect, nothing else.
    let mut sent = backend.next_request().await;
    while sent["action"] == "get_self_info" {
        sent = backend.next_request().await;
    }
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!(sent["self"], json!({"platform": "qq", "user_id": "10001"}));
    assert_eq!(sent["params"]["detail_type"], "private");
    assert_eq!(sent["params"]["user_id"], "20002");
    assert_eq!(sent["params"]["message"], json!([{"type": "text", "data": {"text": "echo: hello koishi"}}]));
    let call = koishi.wait_frame("->", WAIT, |f| f["action"] == "send_private_msg").await;
    let answer = koishi.wait_frame("<-", WAIT, |f| f.get("post_type").is_none() && f["echo"] == call["echo"]).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer["echo"].is_i64(), "Koishi's echo is an integer, and comes back as one: {answer}");

    drop(koishi);
    bridge.stop().await;
}

#[tokio::test]
async fn koishi_for_another_account_refuses_the_connection_and_the_bridge_keeps_retrying() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (mut koishi, port) = start_koishi("99999").await;
    let bridge = bridge_dialling(&backend, format!("ws://127.0.0.1:{port}/onebot")).await;
    // Koishi closes the connection (1008 "invalid x-self-id"); the bridge dials again, later.
    let first: Value = serde_json::from_str(&koishi.wait_line("HANDSHAKE", WAIT).await).unwrap();
    assert_eq!(first["x-self-id"], "10001");
    let again: Value = serde_json::from_str(&koishi.wait_line("HANDSHAKE", WAIT).await).unwrap();
    assert_eq!(again["x-self-id"], "10001");
    assert!(!koishi.stderr().contains("frame -> "), "Koishi talked to a connection it refused");
    drop(koishi);
    bridge.stop().await;
}

/// Koishi's `http` protocol: it calls the bridge's HTTP API with go-cqhttp's legacy
/// `Authorization: Token …` and verifies the bridge's HTTP POST signature over
/// `JSON.stringify(JSON.parse(body))` — so the body must be exactly what JavaScript would write.
#[tokio::test]
async fn koishi_over_http_verifies_the_signature_and_answers_through_the_http_api() {
    use onebot_bridge::config::{HttpPost, Limits};
    use onebot_bridge::core::v11::PostFormat;
    use std::time::Duration;

    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let o = Overrides {
        backend_ws: vec![backend.url()],
        http: vec!["127.0.0.1:0".into()],
        access_token: Some("koishi-token".into()),
        ..Default::default()
    };
    let bridge = Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap();
    let endpoint = format!("http://{}", bridge.addrs().http[0]);

    let script = clients_dir().join("koishi_bot.js");
    let mut koishi = ClientProcess::spawn(
        "koishi",
        &node(),
        &[script.to_str().unwrap()],
        &[
            ("SELF_ID", "10001"),
            ("PROTOCOL", "http"),
            ("ENDPOINT", &endpoint),
            ("TOKEN", "koishi-token"),
            ("SECRET", "koishi-secret"),
        ],
    );
    let port: u16 = koishi.wait_line("LISTENING", START_WAIT).await.parse().unwrap();
    // Koishi goes online after its get_login_info over the HTTP API (Token auth) succeeds.
    assert_eq!(koishi.wait_line("CONNECTED", START_WAIT).await, "10001");

    // The bridge's HTTP POST to Koishi, started once Koishi's port is known (each needs the
    // other's port; the bridge's own wiring of --http-post is covered in tests/http.rs).
    let post = HttpPost {
        url: format!("http://127.0.0.1:{port}/onebot").parse().unwrap(),
        secret: Some("koishi-secret".into()),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        retries_interval: Duration::from_millis(200),
        post_format: PostFormat::String,
        self_id: None,
        filter: None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let posting =
        tokio::spawn(onebot_bridge::bots::http_post::run(post, bridge.hub().clone(), Limits::default(), None, stopped));

    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "kh1", "user_id": "20002", "user_name": "Bob",
               "message": [{"type": "text", "data": {"text": "hi \"koishi\" / 你好 & <b>"}}]}),
    ));
    // Koishi only turns a POST into a session when the signature matches.
    let message: Value = serde_json::from_str(&koishi.wait_line("MESSAGE", WAIT).await).unwrap();
    // (Koishi's content is its own element markup, with `&` and `<` escaped.)
    assert_eq!(message["content"], "hi \"koishi\" / 你好 &amp; &lt;b&gt;");
    // Koishi's own get_login_info calls (→ get_self_info) may come first.
    let sent = loop {
        let r = backend.next_request().await;
        if r["action"] != "get_self_info" {
            break r;
        }
    };
    assert_eq!(sent["action"], "send_message", "{sent}");
    assert_eq!(sent["params"]["user_id"], "20002");
    let text = sent["params"]["message"][0]["data"]["text"].as_str().unwrap_or_default().to_owned();
    assert!(text.starts_with("echo: hi \"koishi\" / 你好"), "{sent}");

    let _ = stop.send(true);
    let _ = posting.await;
    drop(koishi);
    bridge.stop().await;
}
