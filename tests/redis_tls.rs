//! `--store rediss://…` against a real `redis-server` that speaks TLS only, on loopback, with a
//! certificate authority and a server certificate the test makes (`support/redis.rs`): the
//! bridge binary trusts the server through `--store-ca-file` (or its environment twin) and keeps
//! ids there; without the CA file it refuses to start, saying that certificate verification
//! failed; `#insecure` connects and warns; configuration mistakes stop `--check`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use onebot_bridge::store::redis::{RedisStore, OP_TIMEOUT};
use onebot_bridge::store::Retention;
use serde_json::json;
use support::redis::RedisServer;
use support::*;

fn bridge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onebot-bridge"));
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

/// The bridge binary with `args` in front of `backend`, serving bots on a free port; its stderr
/// goes to a file (read with [`Running::log`]).
struct Running {
    child: ChildGuard,
    ws: std::net::SocketAddr,
    log: PathBuf,
}

impl Running {
    fn start(backend: &FakeBackend, command: &mut Command, name: &str) -> Running {
        let ws: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::env::temp_dir().join(format!("ob-redis-tls-{name}-{}.log", std::process::id()));
        let child = command
            .args(["--backend-ws", &backend.url(), "--ws", &ws.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Running { child: ChildGuard(child), ws, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit status, waiting at most `bound`.
    fn exit_within(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test]
async fn a_rediss_store_with_its_ca_file_keeps_ids_that_another_bridge_reads_back() {
    let redis = RedisServer::start_tls();
    let url = redis.url();
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let ca = redis.ca_file();
    let mut backend = FakeBackend::start(BackendOptions::default()).await;

    // Bridge A: the CA file by flag.
    let mut a = Running::start(&backend, bridge().args(["--store", &url, "--store-ca-file"]).arg(&ca), "a");
    let mut bot = Bot::connect_when_up(a.ws).await;
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "over-tls", "group_id": "room@chat", "user_id": "wxid_alice", "message": "hello over TLS"}),
    ));
    let ev = bot.next_event().await;
    let (user, group, message) = (ev["user_id"].clone(), ev["group_id"].clone(), ev["message_id"].clone());
    assert!(user.as_i64().unwrap() >= 1 << 52, "a surrogate user id: {ev}");
    assert!(message.as_i64().is_some(), "{ev}");

    // The numbers are on the TLS server (read over TLS with the same CA), under the bridge's keys.
    let stored = redis.command(&["HGET", "onebot-bridge:ids", "wxid_alice"]).expect("the TLS server answers");
    assert!(stored.contains(&user.to_string()), "{stored} vs {user}");
    let stored = redis.command(&["EXISTS", &format!("onebot-bridge:msg:{message}")]).unwrap();
    assert!(stored.starts_with(":1"), "{stored}");
    drop(bot);
    a.child.0.kill().unwrap();
    a.child.0.wait().unwrap();
    backend.drain_requests();

    // Bridge B, a fresh process that only has Redis to go by: the CA file by environment twin.
    let b = Running::start(&backend, bridge().env("ONEBOT_BRIDGE_STORE_CA_FILE", &ca).args(["--store", &url]), "b");
    let mut bot = Bot::connect_when_up(b.ws).await;
    let got = bot.call("get_msg", json!({"message_id": message})).await;
    assert_eq!(got["status"], "ok", "{got}\n{}", b.log());
    assert_eq!(got["data"]["message"], "hello over TLS");
    assert_eq!((&got["data"]["group_id"], &got["data"]["sender"]["user_id"]), (&group, &user));
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "over-tls", "group_id": "room@chat", "user_id": "wxid_alice", "message": "hello over TLS"}),
    ));
    let again = bot.next_event().await;
    assert_eq!((&again["message_id"], &again["user_id"], &again["group_id"]), (&message, &user, &group));
    assert!(!b.log().contains("NOT verified"), "{}", b.log());
}

#[tokio::test]
async fn without_the_ca_file_the_bridge_exits_at_start_saying_certificate_verification_failed() {
    let redis = RedisServer::start_tls();
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let mut running = Running::start(&backend, bridge().args(["--store", &redis.url()]), "untrusted");
    let bound = OP_TIMEOUT + Duration::from_secs(5);
    let status = running.exit_within(bound).unwrap_or_else(|| panic!("still running after {bound:?}"));
    let log = running.log();
    assert!(!status.success(), "{status}: {log}");
    assert!(log.contains("cannot open the id store"), "{log}");
    assert!(log.contains(&format!("Redis at rediss://127.0.0.1:{}/", redis.port())), "{log}");
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert!(log.contains("certificate verification failed"), "{log}");
    assert!(log.contains("--store-ca-file"), "what to do about it: {log}");
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_server_is_refused_within_the_bound() {
    let redis = RedisServer::start_tls();
    let dir = std::env::temp_dir().join(format!("ob-redis-tls-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other = dir.join("other-ca.pem");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    std::fs::write(&other, params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()).unwrap();

    let (url, gone, ca) = (redis.url(), dir.join("gone.pem"), redis.ca_file());
    let started = Instant::now();
    let refused = RedisStore::connect_with_ca(&url, Some(&other), "t:", Retention::default()).await;
    let message = refused.unwrap_err().to_string();
    assert!(started.elapsed() < OP_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(message.contains("certificate verification failed"), "{message}");
    assert!(message.contains("other-ca.pem"), "names the file that did not vouch: {message}");

    // The library refuses an unusable CA file too, naming it.
    let missing = RedisStore::connect_with_ca(&url, Some(&gone), "t:", Retention::default()).await;
    let message = missing.unwrap_err().to_string();
    assert!(message.contains("CA file") && message.contains("gone.pem"), "{message}");

    // And the right one works through the library as through the binary.
    let store = RedisStore::connect_with_ca(&url, Some(&ca), "t:", Retention::default()).await.unwrap();
    assert_eq!(store.message_count().await.unwrap(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn insecure_in_the_url_connects_without_a_ca_and_says_so() {
    let redis = RedisServer::start_tls();
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let url = format!("{}#insecure", redis.url());
    let running = Running::start(&backend, bridge().args(["--store", &url]), "insecure");
    let mut bot = Bot::connect_when_up(running.ws).await;
    backend.push(v12_message("private", "10001", json!({"message_id": "i1", "user_id": "wxid_bob", "message": "hi"})));
    let ev = bot.next_event().await;
    assert_eq!(ev["message"], "hi");
    let stored = redis.command(&["HGET", "onebot-bridge:ids", "wxid_bob"]).unwrap();
    assert!(stored.contains(&ev["user_id"].to_string()), "{stored}");
    let log = running.log();
    assert!(log.contains("WARN") && log.contains("Redis TLS certificate NOT verified"), "{log}");
    assert!(log.contains("TLS certificate NOT verified (#insecure: test setups only)"), "the summary says it: {log}");
    backend.drain_requests();
}

/// Mistakes in the store's TLS settings end `--check` with exit code 2 and what to change,
/// before anything is bound or dialled.
#[test]
fn check_refuses_a_store_ca_file_that_cannot_work() {
    let dir = std::env::temp_dir().join(format!("ob-redis-tls-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let check = |args: &[&str], ca: &Path| {
        let out = bridge()
            .args(["--check", "--backend-ws", "ws://127.0.0.1:1/", "--ws", "127.0.0.1:0"])
            .args(args)
            .env("ONEBOT_BRIDGE_STORE_CA_FILE", ca)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let cases: [(&[&str], &Path, &str); 5] = [
        (&["--store", "redis://127.0.0.1:6379/"], &not_pem, "use a rediss:// URL"),
        (&["--store", "rediss://127.0.0.1:6380/"], &dir.join("missing.pem"), "missing.pem"),
        (&["--store", "rediss://127.0.0.1:6380/"], &not_pem, "not.pem: no PEM certificate"),
        (&["--store", "rediss://127.0.0.1:6380/#insecure"], &not_pem, "drop one of them"),
        (&[], &not_pem, "needs a rediss:// store URL"),
    ];
    for (args, ca, want) in cases {
        let (code, err) = check(args, ca);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("invalid configuration") && err.contains(want), "{args:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
