//! The binary as a user runs it: flags, environment twins, `--check`, exit codes, and a clean
//! stop on SIGTERM.
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::*;

fn bridge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onebot-bridge"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_validates_and_exits() {
    let (code, out, _) = run(bridge().args(["--check", "--backend-ws", "ws://127.0.0.1:1/", "--ws", "127.0.0.1:0"]));
    assert_eq!(code, 0);
    assert!(out.contains("configuration OK"), "{out}");
    // Every flag has an environment twin; repeatable ones take a comma-separated list.
    let (code, out, _) = run(bridge()
        .arg("--check")
        .env("ONEBOT_BRIDGE_BACKEND_WS", "ws://127.0.0.1:1/")
        .env("ONEBOT_BRIDGE_WS", "127.0.0.1:0,127.0.0.1:0")
        .env("ONEBOT_BRIDGE_POST_FORMAT", "array")
        .env("ONEBOT_BRIDGE_WORKER_THREADS", "3"));
    assert_eq!(code, 0);
    assert_eq!(out.matches("v11 forward WebSocket on 127.0.0.1:0 (array messages)").count(), 2, "{out}");
    assert!(out.contains("runtime: 3 worker threads"), "{out}");
    // It says what it will serve and dial, never the secrets.
    let (code, out, _) = run(bridge().args([
        "--check",
        "--backend-http",
        "http://127.0.0.1:1/",
        "--http",
        "127.0.0.1:0",
        "--access-token",
        "s3cret",
        "--http-post",
        "http://127.0.0.1:2/",
        "--secret",
        "hm4c",
        "--ws-reverse",
        "ws://127.0.0.1:3/onebot",
    ]));
    assert_eq!(code, 0, "{out}");
    for want in [
        "backend: v12 HTTP http://127.0.0.1:1/ (JSON), events by get_latest_events polling",
        "bots: v11 HTTP API on 127.0.0.1:0, access token required",
        "bots: v11 HTTP POST to http://127.0.0.1:2/, signed",
        "bots: v11 reverse WebSocket to universal ws://127.0.0.1:3/onebot",
        "ids: on disk in data/bridge.redb",
        "files: the bridge's own picture URLs are http://127.0.0.1:0/files/…",
        "runtime: 1 worker thread",
    ] {
        assert!(out.contains(want), "missing {want:?} in {out}");
    }
    assert!(!out.contains("s3cret") && !out.contains("hm4c"), "{out}");
}

#[test]
fn a_log_filter_that_does_not_parse_is_a_configuration_error() {
    let (code, _, err) = run(bridge().args([
        "--check",
        "--backend-ws",
        "ws://x:1",
        "--ws",
        "127.0.0.1:0",
        "--log",
        "onebot_bridge=loud",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--log") && err.contains("onebot_bridge=loud"), "{err}");
}

#[test]
fn json_logs_are_one_object_per_line_and_start_with_what_runs() {
    use std::io::{BufRead, BufReader};
    let mut child = Child(
        bridge()
            .args(["--backend-ws", "ws://127.0.0.1:1/", "--ws", "127.0.0.1:0", "--ephemeral", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    // The start-up lines, then at least one line about the unreachable backend.
    while lines.len() < 5 {
        match rx.recv_timeout(WAIT) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    assert!(lines.len() >= 4, "{lines:?}");
    let parsed: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(parsed[0]["fields"]["message"], "onebot-bridge starting");
    assert_eq!(parsed[0]["fields"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(parsed
        .iter()
        .any(|v| v["fields"]["message"] == "backend: dial v12 forward WebSocket ws://127.0.0.1:1/ (JSON)"));
    assert!(parsed.iter().all(|v| v["level"].is_string() && v["timestamp"].is_string()));
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "no colour codes when stderr is not a terminal");
}

#[test]
fn bad_configurations_exit_2_with_a_clear_message_before_binding() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--ws", "127.0.0.1:0"], "no backend"),
        (vec!["--backend-ws", "http://x:1", "--ws", "127.0.0.1:0"], "scheme must be ws"),
        (vec!["--backend-ws", "ws://x:1", "--ws", "nowhere"], "not an address"),
        (vec!["--backend-ws", "ws://x:1", "--ws", "127.0.0.1:0", "--mappings", "/nonexistent"], "cannot read"),
        (vec!["--backend-ws", "ws://x:1", "--ws", "127.0.0.1:0", "--worker-threads", "0"], "worker-threads 0"),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(bridge().args(&args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let (code, _, err) = run(bridge().args(["--post-format", "xml", "--check"]));
    assert_eq!(code, 2, "{err}");
    let dir = std::env::temp_dir().join(format!("ob-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bridge.toml");
    std::fs::write(&file, "[[servers]]\nws = { address = \"127.0.0.1:0\", adress = \"typo\" }\n").unwrap();
    let (code, _, err) = run(bridge().args(["--check", "--backend-ws", "ws://x:1", "--config"]).arg(&file));
    assert_eq!(code, 2);
    assert!(err.contains("adress") && err.contains("bridge.toml"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_bridges_and_stops_cleanly_on_sigterm() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let port = free_port();
    let mut child = Child(
        bridge()
            .args([
                "--backend-ws",
                &backend.url(),
                "--ws",
                &format!("127.0.0.1:{port}"),
                "--access-token",
                "tok",
                "--ephemeral",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut bot = loop {
        match Bot::connect(addr, "/?access_token=tok", None).await {
            Ok(bot) => break bot,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("the bridge never listened: {e}"),
        }
    };
    assert_eq!(bot.next_frame().await["sub_type"], "connect");
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "b1", "group_id": "5", "user_id": "6", "message": "via the binary"}),
    ));
    assert_eq!(bot.next_event().await["message"], "via the binary");

    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "the bridge did not stop within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert_eq!(bot.close_code().await, Some(1001), "bots are told the bridge is going away");
}
