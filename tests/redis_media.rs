//! The media caches shared through Redis, against a real `redis-server`: two translators, each on
//! its own connection as two replicas are, upload a picture once between them and ask the backend
//! for a file's URL once; the key that signs `/files/` URLs is the same for every replica and
//! survives a restart of the bridge; and a Redis that stops answering costs media at most one
//! short wait, never a failure.
//!
//! The backend here is a recorder answering the file actions (the core's unit-test pattern):
//! what is under test is the Redis tier. `tests/replicas.rs` runs the same through two bridge
//! processes and the scripted backend.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use onebot_bridge::core::media::MediaOptions;
use onebot_bridge::core::message::Segment;
use onebot_bridge::core::{
    v11, v12, Account, BackendInfo, CallError, MappingSet, MemoryIdStore, Options, Translator, V12Caller,
};
use onebot_bridge::store::redis_media::CACHE_TIMEOUT;
use onebot_bridge::store::{RedisStore, Retention};
use support::redis::RedisServer;

/// Answers the file actions a send and a received picture need, recording each action.
#[derive(Default)]
struct Recorder {
    actions: Mutex<Vec<String>>,
}

impl Recorder {
    fn actions(&self) -> Vec<String> {
        self.actions.lock().unwrap().clone()
    }
}

impl V12Caller for Recorder {
    async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
        let n = {
            let mut actions = self.actions.lock().unwrap();
            actions.push(request.action.clone());
            actions.len()
        };
        let data = match request.action.as_str() {
            "upload_file" => json!({"file_id": format!("up-{n}")}),
            "get_file" => {
                json!({"url": format!("https://cdn.example/{}", request.params["file_id"].as_str().unwrap())})
            }
            "send_message" => json!({"message_id": format!("m-{n}"), "time": 1_700_000_000}),
            _ => return Ok(v12::Response::failed(10002, "unsupported")),
        };
        Ok(v12::Response::ok(data))
    }
}

/// A replica's translator: its own connection to `server`, the shared prefix.
async fn replica(server: &RedisServer) -> Translator<MemoryIdStore> {
    let store = RedisStore::connect_with_prefix(&server.url(), "media-test:", Retention::default()).await.unwrap();
    let options = Options { media: MediaOptions::default(), ..Default::default() };
    Translator::new(Arc::new(MappingSet::embedded().unwrap()), MemoryIdStore::default(), options)
        .with_shared_media_cache(Arc::new(store.media_cache()))
}

async fn account(t: &Translator<MemoryIdStore>) -> Account {
    t.account(&v12::SelfId { platform: "qq".into(), user_id: "10001".into() }).await.unwrap()
}

/// Sends a group message with one picture; the answer.
async fn send_picture(t: &Translator<MemoryIdStore>, caller: &Recorder, file: &str) -> v11::Response {
    let me = account(t).await;
    let backend = BackendInfo::default();
    let ctx = t.context(&me, &backend, Default::default());
    let params =
        json!({"message_type": "group", "group_id": 5, "message": [{"type": "image", "data": {"file": file}}]});
    let req = v11::Request { action: "send_msg".into(), params: params.as_object().unwrap().clone(), echo: None };
    t.handle_action(ctx, caller, req).await
}

/// The URL a received picture naming `file_id` gets.
async fn url_of(t: &Translator<MemoryIdStore>, caller: &Recorder, file_id: &str) -> Option<String> {
    let me = account(t).await;
    let backend = BackendInfo::default();
    let mut segments = vec![Segment::new("image").with("file", file_id)];
    t.media_urls(t.context(&me, &backend, Default::default()), caller, &mut segments).await;
    segments[0].str_of("url")
}

fn picture(seed: u8) -> String {
    format!("base64://{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [seed; 64]))
}

#[tokio::test]
async fn two_replicas_upload_a_picture_once_and_ask_for_a_url_once() {
    let server = RedisServer::start();
    let (a, b) = (replica(&server).await, replica(&server).await);
    let caller = Recorder::default();

    for file in [picture(1), "https://example.com/cat.png".to_owned()] {
        assert!(send_picture(&a, &caller, &file).await.is_ok());
        assert!(send_picture(&b, &caller, &file).await.is_ok());
    }
    assert_eq!(
        caller.actions(),
        ["upload_file", "send_message", "send_message", "upload_file", "send_message", "send_message"],
        "each picture is uploaded by one replica only"
    );

    assert_eq!(url_of(&a, &caller, "file-9").await.as_deref(), Some("https://cdn.example/file-9"));
    assert_eq!(url_of(&b, &caller, "file-9").await.as_deref(), Some("https://cdn.example/file-9"));
    assert_eq!(caller.actions().iter().filter(|a| *a == "get_file").count(), 1, "{:?}", caller.actions());

    // What Redis holds: two uploads and a URL, each expiring when the bridge stops reusing it.
    let keys = server.command(&["KEYS", "media-test:media:*"]).unwrap();
    assert_eq!(keys.matches("media-test:media:up:").count(), 2, "{keys}");
    assert_eq!(keys.matches("media-test:media:url:").count(), 1, "{keys}");
    let key = keys.lines().find(|l| l.starts_with("media-test:media:url:")).unwrap();
    let ttl: u64 = server.command(&["TTL", key]).unwrap().trim_start_matches(':').trim().parse().unwrap();
    assert!((3500..=3600).contains(&ttl), "{key} expires in {ttl} s");
}

#[tokio::test]
async fn every_replica_signs_served_urls_with_one_key_that_outlives_it() {
    let server = RedisServer::start();
    let url = server.url();
    let store = |prefix: &'static str| {
        let url = url.clone();
        async move { RedisStore::connect_with_prefix(&url, prefix, Retention::default()).await.unwrap() }
    };
    let first = store("k:").await.shared_media_key().await.unwrap();
    let second = store("k:").await.shared_media_key().await.unwrap();
    assert_eq!(first, second, "replicas on one prefix share the key");
    assert_ne!(store("other:").await.shared_media_key().await.unwrap(), first, "another prefix, another key");

    // Something else in its place stops start-up with the key to delete.
    assert!(server.command(&["SET", "bad:media-key", "not hex"]).unwrap().starts_with("+OK"));
    let error = store("bad:").await.shared_media_key().await.unwrap_err().to_string();
    assert!(error.contains("bad:media-key") && error.contains("64 hex digits"), "{error}");
}

#[tokio::test]
async fn a_redis_that_stops_answering_costs_media_one_short_wait() {
    let server = RedisServer::start();
    let t = replica(&server).await;
    let caller = Recorder::default();
    assert!(send_picture(&t, &caller, &picture(1)).await.is_ok());

    // Frozen, not gone: its socket stays open and nothing answers.
    let pid = redis_pid(&server);
    let signal = |sig: &str| assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
    signal("-STOP");
    let started = Instant::now();
    for seed in [2, 3, 4, 1] {
        let answer = send_picture(&t, &caller, &picture(seed)).await;
        assert!(answer.is_ok(), "{answer:?}");
    }
    let took = started.elapsed();
    signal("-CONT");
    assert!(took < CACHE_TIMEOUT * 3, "four sends took {took:?} while Redis was frozen");
    let uploads = caller.actions().iter().filter(|a| *a == "upload_file").count();
    assert_eq!(uploads, 4, "three new pictures uploaded, the first remembered here: {:?}", caller.actions());
}

/// The server's process id, from `INFO server`.
fn redis_pid(server: &RedisServer) -> String {
    let info = server.command(&["INFO", "server"]).unwrap();
    let line = info.lines().find(|l| l.starts_with("process_id:")).expect("process_id in INFO");
    line["process_id:".len()..].trim().to_owned()
}

#[tokio::test]
async fn stopped_redis_is_a_miss_within_the_bound() {
    let mut server = RedisServer::start();
    let t = replica(&server).await;
    let caller = Recorder::default();
    server.stop();
    let started = Instant::now();
    assert!(send_picture(&t, &caller, &picture(7)).await.is_ok());
    assert!(url_of(&t, &caller, "f").await.is_some());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}
