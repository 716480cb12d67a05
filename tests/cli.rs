//! The binary as a user runs it: flags, environment twins, `--check`, exit codes, and a clean
//! stop on SIGTERM.

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
        .env("ONEBOT_BRIDGE_POST_FORMAT", "array"));
    assert_eq!(code, 0);
    assert!(out.contains("2 v11 WebSocket endpoint"), "{out}");
}

#[test]
fn bad_configurations_exit_2_with_a_clear_message_before_binding() {
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--ws", "127.0.0.1:0"], "no backend"),
        (vec!["--backend-ws", "http://x:1", "--ws", "127.0.0.1:0"], "scheme must be ws"),
        (vec!["--backend-ws", "ws://x:1", "--ws", "nowhere"], "not an address"),
        (vec!["--backend-ws", "ws://x:1", "--ws", "127.0.0.1:0", "--mappings", "/nonexistent"], "cannot read"),
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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
