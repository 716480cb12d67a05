//! The playground (`--demo`) and the inspector, as a person and a real bot use them.
//!
//! - A person's walk in headless Chromium (Playwright, `tests/clients/playground_walk.mjs`):
//!   in the playground's chat page, Alice sends a group message that mentions the bot and
//!   carries a picture; a real nonebot2 bot (`tests/clients/playground_bot.py`, connected to the
//!   bridge's forward WebSocket with go-cqhttp settings) fetches the picture and replies with a
//!   picture of its own, which appears on the page. Alice recalls her message (the bot is told,
//!   under the id it saw), and a stranger's friend request is approved by the bot, which greets
//!   the new friend in a private chat. The inspector shows both translations. The pages are
//!   screenshotted (kept under the target directory) and checked not to be blank.
//! - The inspector never shows a configured token or secret, even when they travel inside
//!   messages (checked on its status, its page and its stream, without a browser).
//!
//! The browser test needs Debian's `chromium` (or `ONEBOT_BRIDGE_TEST_CHROMIUM`) and
//! `tests/clients/node_modules` (`playwright-core`, `pngjs`), which `.ci/run` and `tests/run.sh`
//! install; without them it fails saying what is missing.

mod clients;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clients::{clients_dir, python, ClientProcess, START_WAIT};
use futures::{SinkExt, StreamExt};
use onebot_bridge::config::{Config, FileConfig, Overrides};
use onebot_bridge::Bridge;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const ACCESS_TOKEN: &str = "bot-token-Zq81x";
const BACKEND_TOKEN: &str = "backend-token-Kp27w";
const POST_SECRET: &str = "post-secret-Hv55m";

/// The bridge as `--demo` runs it, on port 0 (the page, the bots' forward WebSocket).
async fn demo(extra: impl FnOnce(&mut Overrides)) -> Bridge {
    let mut o = Overrides {
        demo: true,
        admin: Some("127.0.0.1:0".into()),
        ws: vec!["127.0.0.1:0".into()],
        access_token: Some(ACCESS_TOKEN.into()),
        ..Default::default()
    };
    extra(&mut o);
    Bridge::start(Config::resolve(FileConfig::default(), o).unwrap()).await.unwrap()
}

/// One HTTP/1.1 exchange on its own connection; a stream is read for `read_for` at most.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>, read_for: Duration) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(read_for, stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP response to {path}: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    (status, body.to_owned())
}

/// Polls `/ready` until the playground's account is online behind the bridge.
async fn wait_ready(admin: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(admin, "GET", "/ready", None, Duration::from_secs(5)).await;
        if status == 200 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the playground never came up: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_inspector_never_shows_a_configured_token_or_secret() {
    let bridge = demo(|o| {
        o.backend_token = Some(BACKEND_TOKEN.into());
        // A bot webhook nobody listens on, for its signing secret (one try only).
        o.http_post = vec![format!("http://127.0.0.1:{}/", support::free_port())];
        o.secret = Some(POST_SECRET.into());
    })
    .await;
    let admin = bridge.addrs().admin.unwrap();
    wait_ready(admin).await;
    let secrets = [ACCESS_TOKEN, BACKEND_TOKEN, POST_SECRET];
    let all = secrets.join(" ");

    // A person types the secrets into the chat, and a bot sends them back in a message of its own.
    let said =
        json!({"chat": "group:20001", "user_id": "10001", "text": format!("leaked: {all}"), "mention_bot": false});
    let (status, body) = http(admin, "POST", "/playground/api/send", Some(&said), Duration::from_secs(10)).await;
    assert_eq!(status, 200, "{body}");
    let mut request = format!("ws://{}/", bridge.ws_addrs()[0]).into_client_request().unwrap();
    request.headers_mut().insert("Authorization", format!("Bearer {ACCESS_TOKEN}").parse().unwrap());
    let (mut bot, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let action =
        json!({"action": "send_group_msg", "params": {"group_id": 20001, "message": format!("echo {all}")}, "echo": 1});
    bot.send(Message::text(action.to_string())).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(frame)) = bot.next().await {
            if let Ok(v) = serde_json::from_slice::<Value>(&frame.into_data()) {
                if v["echo"] == 1 {
                    return v;
                }
            }
        }
        panic!("the bot's connection closed")
    })
    .await
    .expect("no answer to send_group_msg");
    assert_eq!(answer["retcode"], 0, "{answer}");

    let (_, feed) = http(admin, "GET", "/inspector/feed", None, Duration::from_secs(2)).await;
    let (_, status) = http(admin, "GET", "/inspector/status", None, Duration::from_secs(5)).await;
    let (_, page) = http(admin, "GET", "/inspector/", None, Duration::from_secs(5)).await;
    assert!(feed.contains("leaked: ") && feed.contains("echo "), "both messages should be in the feed: {feed}");
    assert!(feed.contains("***"), "the secrets should show as *** in the feed: {feed}");
    for shown in [&feed, &status, &page] {
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret} is shown by the inspector:\n{shown}");
        }
    }
    bridge.stop().await;
}

/// The system Chromium the walk drives, and the Node packages it needs; panics (never skips)
/// saying what is missing.
fn browser() -> (PathBuf, PathBuf) {
    let chromium =
        PathBuf::from(std::env::var_os("ONEBOT_BRIDGE_TEST_CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    assert!(
        chromium.exists(),
        "{} is missing: the browser tests need Chromium (on Debian: apt-get install chromium; .ci/run \
         installs it), or ONEBOT_BRIDGE_TEST_CHROMIUM pointing at one",
        chromium.display()
    );
    let node = clients::node();
    let playwright = clients_dir().join("node_modules").join("playwright-core");
    assert!(
        playwright.exists(),
        "{} is missing: the browser tests need their npm packages; run `bash tests/run.sh` (it runs `npm ci` in tests/clients)",
        playwright.display()
    );
    (chromium, node)
}

#[tokio::test]
async fn a_person_chats_with_a_real_bot_in_the_playground_and_watches_the_inspector() {
    let (chromium, node) = browser();
    let bridge = demo(|_| {}).await;
    let admin = bridge.addrs().admin.unwrap();
    wait_ready(admin).await;

    let urls = json!([format!("ws://{}/", bridge.ws_addrs()[0])]).to_string();
    let script = clients_dir().join("playground_bot.py");
    let mut bot = ClientProcess::spawn(
        "playground bot",
        &python(),
        &[script.to_str().unwrap()],
        &[("ONEBOT_V11_WS_URLS", &urls), ("ONEBOT_V11_ACCESS_TOKEN", ACCESS_TOKEN)],
    );
    let self_id = bot.wait_line("CONNECTED", START_WAIT).await;
    assert_eq!(self_id, "10000");

    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("playground");
    std::fs::create_dir_all(&out).unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    let walk = clients_dir().join("playground_walk.mjs");
    let mut person = ClientProcess::spawn(
        "playground walk",
        &node,
        &[walk.to_str().unwrap(), &format!("http://{admin}"), out.to_str().unwrap()],
        &[("ONEBOT_BRIDGE_TEST_CHROMIUM", chromium.to_str().unwrap()), ("HOME", &home)],
    );
    let walked = person.wait_line("WALK", Duration::from_secs(150)).await;
    let walked: Value = serde_json::from_str(&walked).unwrap();
    eprintln!("playground walk: {walked}\nscreenshots: {}", out.display());

    // The bot really fetched the person's picture through the URL the bridge gave it. (Its
    // lines come in this order: each wait skips what comes before the line it waits for.)
    let saw: Value = serde_json::from_str(&bot.wait_line("SAW", Duration::from_secs(5)).await).unwrap();
    let fetched: Value = serde_json::from_str(&bot.wait_line("FETCHED", Duration::from_secs(5)).await).unwrap();
    assert_eq!(fetched["status"], 200, "{fetched}");
    assert!(fetched["len"].as_u64().unwrap() > 100, "{fetched}");
    let replied: Value = serde_json::from_str(&bot.wait_line("REPLIED", Duration::from_secs(5)).await).unwrap();
    assert!(replied["message_id"].as_i64().is_some_and(|id| id > 0), "{replied}");
    // The recall names the message by the id the bot saw it under.
    let recalled: Value = serde_json::from_str(&bot.wait_line("RECALLED", Duration::from_secs(5)).await).unwrap();
    assert_eq!(recalled["message_id"], saw["message_id"]);
    let greeted: Value = serde_json::from_str(&bot.wait_line("GREETED", Duration::from_secs(5)).await).unwrap();
    assert_eq!(walked["new_friend"], format!("private:{}", greeted["user_id"]), "{walked}");
    for shot in ["playground.png", "playground-friend.png", "inspector.png"] {
        let len = std::fs::metadata(out.join(shot)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{shot} is {len} bytes");
    }
    assert_eq!(walked["reply_image"]["width"], 160, "{walked}");
    bridge.stop().await;
}
