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
