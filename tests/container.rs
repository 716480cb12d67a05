//! The binary run the way `deploy/Dockerfile` runs it: an empty working directory, configuration
//! by `ONEBOT_BRIDGE_*` environment variables only, the id store in its own directory, and the
//! image's HEALTHCHECK (`onebot-bridge --probe`) answering. The image itself is not built here
//! (these machines cannot pull base images); this is what it would do.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::*;

fn bridge(work: &std::path::Path, env: &[(&str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onebot-bridge"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(work);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[tokio::test]
async fn environment_only_configuration_an_empty_workdir_and_the_healthcheck() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let root = std::env::temp_dir().join(format!("ob-container-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (work, data) = (root.join("work"), root.join("data"));
    std::fs::create_dir_all(&work).unwrap();
    let (ws_port, admin_port) = (free_port(), free_port());
    let env = vec![
        ("ONEBOT_BRIDGE_DATA_DIR", data.display().to_string()),
        ("ONEBOT_BRIDGE_ADMIN", format!("127.0.0.1:{admin_port}")),
        ("ONEBOT_BRIDGE_LOG_FORMAT", "json".to_owned()),
        ("ONEBOT_BRIDGE_BACKEND_WS", backend.url()),
        ("ONEBOT_BRIDGE_WS", format!("127.0.0.1:{ws_port}")),
    ];
    let probe = |env: &[(&str, String)]| bridge(&work, env).arg("--probe").stderr(Stdio::null()).status().unwrap();

    // Before the bridge runs, the probe fails.
    assert!(!probe(&env).success());
    let child = bridge(&work, &env).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut child = ChildGuard(child);
    let deadline = std::time::Instant::now() + WAIT;
    while !probe(&env).success() {
        assert!(std::time::Instant::now() < deadline, "the healthcheck never passed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A bot connects and gets events; ids went to the data directory, nothing to the workdir.
    let mut bot = Bot::connect_when_up(format!("127.0.0.1:{ws_port}").parse().unwrap()).await;
    backend.push(v12_message("private", "10001", json!({"message_id": "c1", "user_id": "6", "message": "in a box"})));
    assert_eq!(bot.next_event().await["message"], "in a box");
    assert!(data.join("bridge.redb").is_file(), "the id store lives in ONEBOT_BRIDGE_DATA_DIR");
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0, "nothing is written to the working directory");

    // Without an admin listener the probe says what it needs.
    let no_admin: Vec<_> = env.iter().filter(|(k, _)| *k != "ONEBOT_BRIDGE_ADMIN").cloned().collect();
    assert_eq!(probe(&no_admin).code(), Some(2));

    let _ = child.0.kill();
    let _ = child.0.wait();
    assert!(!probe(&env).success(), "the healthcheck fails once the bridge is gone");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn the_deploy_files_name_only_variables_the_binary_reads() {
    let help = Command::new(env!("CARGO_BIN_EXE_onebot-bridge")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let re = regex::Regex::new(r"ONEBOT_BRIDGE_[A-Z_]+").unwrap();
    let mut seen = 0;
    for file in ["Dockerfile", "docker-compose.yml", "onebot-bridge.service"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for var in re.find_iter(&text) {
            seen += 1;
            assert!(
                help.contains(&format!("env: {}", var.as_str())),
                "{file} names {}, which no flag reads",
                var.as_str()
            );
        }
    }
    assert!(seen >= 5, "the deploy files configure the bridge by environment");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"CMD ["onebot-bridge", "--probe"]"#) && dockerfile.contains("USER bridge"));
}
