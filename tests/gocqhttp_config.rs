//! go-cqhttp's own `config.yml` as a migrating user has it: the file its last release wrote on
//! first start (HTTP, forward WS and reverse WS chosen), kept in `tests/fixtures/go-cqhttp/`.
//! Only the listening ports and the reverse-WS URL are changed here, to loopback ones free now.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FIXTURE: &str = include_str!("fixtures/go-cqhttp/config.yml");

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ob-gocq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn check(config: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_onebot-bridge"))
        .arg("--check")
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_reads_the_file_and_says_what_it_serves_and_ignores() {
    let dir = temp_dir("check");
    let path = dir.join("config.yml");
    std::fs::write(&path, FIXTURE).unwrap();
    let (code, out, err) = check(&path, &["--backend-ws", "ws://127.0.0.1:8844/"]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "bots: v11 forward WebSocket on 0.0.0.0:8080 (string messages)",
        "bots: v11 HTTP API on 0.0.0.0:5700",
        "bots: v11 reverse WebSocket to universal ws://your_websocket_universal.server/",
        "account.uin, account.password",
        "the backend logs in to QQ now",
        "database.leveldb.enable",
        "bridge.redb",
        "message.fix-url",
        "servers[2].ws-reverse.api, servers[2].ws-reverse.event",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Honoured keys are not reported.
    for honoured in
        ["heartbeat.interval", "message.post-format", "output.log-level", "default-middlewares.access-token"]
    {
        assert!(!out.contains(honoured), "{honoured} is honoured, not ignored:\n{out}");
    }

    // Without a backend, the file alone is not enough: exit 2 naming what is missing.
    let (code, _, err) = check(&path, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backend"), "{err}");

    // A broken file is a configuration error naming the file.
    let broken = dir.join("broken.yml");
    std::fs::write(&broken, "servers:\n  - ws: {address: [\n").unwrap();
    let (code, _, err) = check(&broken, &["--backend-ws", "ws://127.0.0.1:8844/"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.yml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn placeholders_and_a_backend_section_in_the_same_file() {
    let dir = temp_dir("env");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        "backend:\n  ws:\n    - url: ${OB_TEST_BACKEND:ws://127.0.0.1:9/}\ndefault-middlewares:\n  access-token: ${OB_TEST_TOKEN}\nservers:\n  - ws:\n      address: ${OB_TEST_WS:127.0.0.1:6}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_onebot-bridge"))
        .args(["--check", "--config"])
        .arg(&path)
        .env("OB_TEST_TOKEN", "from-env")
        .env("OB_TEST_WS", "127.0.0.1:7")
        .env_remove("OB_TEST_BACKEND")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("dial v12 forward WebSocket ws://127.0.0.1:9/"), "{stdout}");
    assert!(stdout.contains("forward WebSocket on 127.0.0.1:7 (string messages, access token required)"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 GET on loopback, the whole answer as text.
async fn http_get(port: u16, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_generated_file_starts_the_bridge_and_bots_connect_as_before() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (ws_port, http_port, closed) = (free_port(), free_port(), free_port());
    let dir = temp_dir("run");
    let path = dir.join("config.yml");
    std::fs::write(
        &path,
        FIXTURE
            .replace("0.0.0.0:8080", &format!("127.0.0.1:{ws_port}"))
            .replace("0.0.0.0:5700", &format!("127.0.0.1:{http_port}"))
            .replace("ws://your_websocket_universal.server", &format!("ws://127.0.0.1:{closed}/")),
    )
    .unwrap();
    let _bridge = spawn_bridge(&[
        "--config".as_ref(),
        path.as_os_str(),
        "--backend-ws".as_ref(),
        backend.url().as_ref(),
        "--ephemeral".as_ref(),
    ]);

    let addr: std::net::SocketAddr = format!("127.0.0.1:{ws_port}").parse().unwrap();
    let mut bot = Bot::connect_when_up(addr).await;
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "m1", "group_id": "5", "user_id": "6", "message": "hello from config.yml"}),
    ));
    let event = bot.next_event().await;
    assert_eq!(event["message"], "hello from config.yml", "message.post-format: string");
    assert_eq!(event["group_id"], 5);

    let answer = http_get(http_port, "/get_login_info").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"retcode\":0"), "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One HTTP/1.1 request with a JSON body on loopback; the answer's JSON body.
async fn http_post_json(port: u16, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await.expect("an answer").unwrap();
    let text = String::from_utf8_lossy(&answer);
    let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn the_event_filter_and_the_rate_limit_work_as_in_go_cqhttp() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (ws_port, http_port) = (free_port(), free_port());
    let dir = temp_dir("filter");
    let filter = dir.join("filter.json");
    // Group 5's messages and private messages pass; nothing else (heartbeats included).
    std::fs::write(&filter, r#"{".or": [{"group_id": 5}, {"message_type": "private"}]}"#).unwrap();
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "heartbeat:\n  interval: 1\nservers:\n  - ws:\n      address: 127.0.0.1:{ws_port}\n      middlewares:\n        filter: '{}'\n  - http:\n      address: 127.0.0.1:{http_port}\n      middlewares:\n        rate-limit: {{enabled: true, frequency: 10, bucket: 1}}\n",
            filter.display()
        ),
    )
    .unwrap();
    let _bridge = spawn_bridge(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--backend-ws".as_ref(),
        backend.url().as_ref(),
        "--ephemeral".as_ref(),
    ]);
    let mut bot = Bot::connect_when_up(format!("127.0.0.1:{ws_port}").parse().unwrap()).await;
    let group = |id: &str, group: &str, text: &str| {
        v12_message("group", "10001", json!({"message_id": id, "group_id": group, "user_id": "6", "message": text}))
    };
    backend.push(group("a", "4", "filtered out"));
    backend.push(group("b", "5", "kept 1"));
    backend.push(v12_message("private", "10001", json!({"message_id": "c", "user_id": "6", "message": "kept 2"})));
    backend.push(group("d", "4", "filtered out"));
    backend.push(group("e", "5", "kept 3"));
    // No heartbeat passes this filter, so the next frames are exactly the kept messages.
    for want in ["kept 1", "kept 2", "kept 3"] {
        let frame = bot.next_frame().await;
        assert_eq!(frame["message"], want, "{frame}");
    }

    // reload_event_filter swaps the filter; a broken file keeps the previous one.
    std::fs::write(&filter, r#"{"group_id": 4}"#).unwrap();
    let answer = bot.call("reload_event_filter", json!({"file": filter.to_str().unwrap()})).await;
    assert_eq!(answer["retcode"], 0, "{answer}");
    std::fs::write(&filter, r#"{"group_id": {".regex": "("}}"#).unwrap();
    let answer = bot.call("reload_event_filter", json!({"file": ""})).await;
    assert_eq!(answer["msg"], "BRIDGE_FILTER_NOT_RELOADED", "{answer}");
    assert!(answer["wording"].as_str().unwrap().contains("previous filter stays"), "{answer}");
    let answer = bot.call("reload_event_filter", json!({"file": "/etc/passwd"})).await;
    assert_eq!(answer["status"], "failed", "only configured filter files are read: {answer}");
    backend.push(group("f", "5", "now filtered out"));
    backend.push(group("g", "4", "now kept"));
    let frame = bot.next_frame().await;
    assert_eq!(frame["message"], "now kept", "{frame}");

    // Six calls at once on a bucket of 1 refilled 10 times a second: the last waits 0.5 s.
    let start = std::time::Instant::now();
    let empty = json!({});
    let calls: Vec<_> = (0..6).map(|_| http_post_json(http_port, "/get_status", &empty)).collect();
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer["retcode"], 0, "{answer}");
    }
    assert!(start.elapsed() >= std::time::Duration::from_millis(450), "calls were not paced: {:?}", start.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}
