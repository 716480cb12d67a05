//! Media through a real v11 framework: a scripted nonebot2 bot (`tests/clients/media_bot.py`,
//! nonebot-adapter-onebot's v11 adapter over forward WebSocket) sends every media form and
//! fetches every URL it receives, with a real HTTP client; sizes and hashes are compared with the
//! bytes at the scripted v12 backend's file store.
//!
//! Needs `tests/clients/.venv` (made by `tests/run.sh`); fails, never skips, without it.

mod clients;
mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use onebot_bridge::config::IncomingModeName;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use clients::*;
use support::*;

/// The media bot, connected to the bridge's v11 forward-WebSocket server at `addr`.
struct MediaBot {
    process: ClientProcess,
}

impl MediaBot {
    /// Starts the bot and waits until nonebot has accepted the bridge's `lifecycle.connect`.
    async fn start(addr: SocketAddr) -> MediaBot {
        let script = clients_dir().join("media_bot.py");
        let urls = json!([format!("ws://{addr}/")]).to_string();
        let mut process = ClientProcess::spawn(
            "media_bot",
            &python(),
            &[script.to_str().unwrap()],
            &[("ONEBOT_V11_WS_URLS", urls.as_str())],
        );
        let self_id = process.wait_line("CONNECTED", START_WAIT).await;
        assert_eq!(self_id, "10001");
        MediaBot { process }
    }

    /// The next `<word> <json>` line the bot printed, parsed.
    async fn report(&mut self, word: &str) -> Value {
        let line = self.process.wait_line(word, WAIT).await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{word} {line}: {e}"))
    }
}

/// A directory under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("onebot-bridge-media-clients-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir.canonicalize().unwrap())
    }

    /// Writes `bytes` to `name` in the directory and gives the file's path.
    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` random bytes behind a PNG signature (so that they look like a picture).
fn picture(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill(&mut bytes[..]);
    bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A group message from 20002 in 40004 to the account 10001.
fn group_message(message_id: &str, message: Value) -> Value {
    v12_message(
        "group",
        "10001",
        json!({"message_id": message_id, "group_id": "40004", "user_id": "20002", "user_name": "Bob", "message": message}),
    )
}

/// The backend pushes a group message with an image it stores; the bot fetches the `url` the
/// bridge gave the segment and reports what it got, which must be the stored bytes exactly.
/// Returns the URL.
async fn received_image_is_fetched_whole(backend: &FakeBackend, bot: &mut MediaBot) -> String {
    let bytes = picture(300_001);
    let file_id = backend.add_file("received.png", bytes.clone());
    backend.push(group_message(
        "in-1",
        json!([{"type": "text", "data": {"text": "look: "}},
               {"type": "image", "data": {"file_id": file_id}}]),
    ));

    let fetched = bot.report("FETCHED").await;
    assert_eq!(fetched["file"], file_id.as_str(), "the v11 `file` is the backend's file_id: {fetched}");
    assert_eq!(fetched["status"], 200, "{fetched}");
    assert_eq!(fetched["len"], bytes.len(), "{fetched}");
    assert_eq!(fetched["sha256"], sha256_hex(&bytes).as_str(), "{fetched}");
    fetched["url"].as_str().unwrap().to_owned()
}

/// The file actions the backend was asked so far (`<action> <type or stage>`), once it has been
/// quiet for a moment; anything else is a failure.
async fn backend_calls(backend: &mut FakeBackend) -> Vec<String> {
    let mut calls = Vec::new();
    loop {
        let request = match tokio::time::timeout(Duration::from_millis(300), backend.next_request()).await {
            Ok(request) => request,
            Err(_) => return calls,
        };
        let p = &request["params"];
        match request["action"].as_str() {
            Some("get_file") => calls.push(format!("get_file {}", p["type"].as_str().unwrap())),
            Some("get_file_fragmented") => calls.push(format!("get_file_fragmented {}", p["stage"].as_str().unwrap())),
            _ => panic!("unexpected request {request}"),
        }
    }
}

/// Default incoming mode (`resolve`): the image's `url` is the backend's own (`get_file` type
/// `url`), and the bot's download of it gives the stored bytes.
#[tokio::test]
async fn nonebot_fetches_a_received_image_at_the_backends_url() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let mut bot = MediaBot::start(bridge.ws_addrs()[0]).await;

    let url = received_image_is_fetched_whole(&backend, &mut bot).await;
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/files/file-"), "the backend's URL: {url}");
    assert_eq!(backend.file_url_requests(), 1, "the bot fetched from the backend's file server");
    assert_eq!(backend_calls(&mut backend).await, ["get_file url"], "the URL was resolved once, at the event");

    drop(bot);
    bridge.stop().await;
}

/// Incoming mode `serve`: the image's `url` is the bridge's own `/files/<token>` on its v11 HTTP
/// server, which streams the file from the backend (`get_file_fragmented`); the bot's download
/// gives the stored bytes and the backend's file server is never asked.
#[tokio::test]
async fn nonebot_fetches_a_received_image_at_the_bridges_served_url() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| {
        o.media_urls = Some(IncomingModeName::Serve);
        o.http = vec!["127.0.0.1:0".into()];
    })
    .await;
    let http = bridge.addrs().http[0];
    let mut bot = MediaBot::start(bridge.ws_addrs()[0]).await;

    let url = received_image_is_fetched_whole(&backend, &mut bot).await;
    assert!(url.starts_with(&format!("http://{http}/files/")), "the bridge's URL (at {http}): {url}");
    assert_eq!(backend.file_url_requests(), 0, "the bytes came through the bridge, not the backend's URL");
    assert_eq!(
        backend_calls(&mut backend).await,
        ["get_file_fragmented prepare", "get_file_fragmented transfer"],
        "the bridge streamed the file from the backend when the bot asked, and only then"
    );

    drop(bot);
    bridge.stop().await;
}

/// The v11 `file` of each image segment the bot sent in its `send_group_msg` (from its frame trace).
async fn sent_files(bot: &MediaBot, marker: &str) -> Vec<String> {
    let call =
        bot.process.wait_frame("->", WAIT, |f| f["action"] == "send_group_msg" && f.to_string().contains(marker)).await;
    assert_eq!(call["params"]["group_id"], 40004, "{call}");
    call["params"]["message"]
        .as_array()
        .unwrap_or_else(|| panic!("nonebot sends a segment array: {call}"))
        .iter()
        .map(|s| {
            assert_eq!(s["type"], "image", "{call}");
            s["data"]["file"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// On `/send`, the bot sends one message with three images, each made with nonebot's
/// `MessageSegment.image`: from bytes (the adapter sends `base64://`), from a `Path` inside the
/// allowed directory (`file:///…`), and by URL. Each becomes an `upload_file` (data, data, url)
/// carrying exactly those bytes, and the `send_message` carries the three file_ids in order.
#[tokio::test]
async fn nonebot_sends_images_as_base64_local_file_and_url() {
    let allowed = TempDir::new("allowed");
    let elsewhere = TempDir::new("source");
    let inline = picture(120_003);
    let local = picture(90_001);
    let inline_path = elsewhere.file("inline.png", &inline);
    let local_path = allowed.file("pic.png", &local);

    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| o.media_dirs = vec![allowed.0.clone()]).await;
    let mut bot = MediaBot::start(bridge.ws_addrs()[0]).await;

    let command = json!([[{"bytes_of": inline_path}, {"path": local_path}, {"file": "http://example.com/a.png"}]]);
    backend.push(group_message("cmd-1", json!([{"type": "text", "data": {"text": format!("/send {command}")}}])));

    // What nonebot put on the wire: go-cqhttp's three forms.
    let files = sent_files(&bot, "example.com").await;
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].starts_with("base64://"), "{}", &files[0][..40.min(files[0].len())]);
    assert_eq!(files[1], format!("file://{}", local_path.display()));
    assert_eq!(files[2], "http://example.com/a.png");

    // What the backend was asked: three uploads, then the message with their file_ids.
    let mut actions = Vec::new();
    let sent = loop {
        let request = backend.next_request().await;
        match request["action"].as_str() {
            Some("send_message") => break request,
            Some(other) => actions.push(other.to_owned()),
            None => panic!("{request}"),
        }
    };
    assert_eq!(actions, ["upload_file", "upload_file", "upload_file"]);
    let uploads = backend.uploads();
    let kinds: Vec<&str> = uploads.iter().map(|u| u.kind.as_str()).collect();
    assert_eq!(kinds, ["data", "data", "url"], "{uploads:?}");
    assert_eq!(backend.file(&uploads[0].file_id).unwrap().1, inline, "the base64 image's bytes");
    assert_eq!(backend.file(&uploads[1].file_id).unwrap(), ("pic.png".to_owned(), local.clone()), "the local file");
    assert_eq!(uploads[2].url.as_deref(), Some("http://example.com/a.png"));
    assert_eq!(uploads[2].name, "a.png");

    assert_eq!(sent["params"]["detail_type"], "group", "{sent}");
    assert_eq!(sent["params"]["group_id"], "40004", "{sent}");
    let ids: Vec<&str> = sent["params"]["message"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["type"], "image", "{sent}");
            // nonebot's `type: null`, `cache`, `proxy`, `timeout: null` are download hints, not data.
            assert_eq!(s["data"].as_object().unwrap().len(), 1, "only the file_id: {sent}");
            s["data"]["file_id"].as_str().unwrap()
        })
        .collect();
    let uploaded: Vec<&str> = uploads.iter().map(|u| u.file_id.as_str()).collect();
    assert_eq!(ids, uploaded, "the message names the uploads, in order");

    // And nonebot got its answer.
    let result = bot.report("RESULT").await;
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["data"]["message_id"].is_i64(), "{result}");

    drop(bot);
    bridge.stop().await;
}

/// A `file:///` outside the allowed directory is refused before anything reaches the backend:
/// nonebot raises `ActionFailed` with retcode 100 and msg `FILE_REFUSED`, while a message sent
/// next (an allowed file) still goes through.
#[tokio::test]
async fn nonebot_sees_file_refused_for_a_local_file_outside_the_allowed_dirs() {
    let allowed = TempDir::new("allowed-only");
    let outside = TempDir::new("outside");
    let secret = outside.file("secret.png", &picture(1_000));
    let fine = picture(2_000);
    let fine_path = allowed.file("fine.png", &fine);

    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |o| o.media_dirs = vec![allowed.0.clone()]).await;
    let mut bot = MediaBot::start(bridge.ws_addrs()[0]).await;

    let command = json!([[{"path": secret}], [{"path": fine_path}]]);
    backend.push(group_message("cmd-2", json!([{"type": "text", "data": {"text": format!("/send {command}")}}])));

    let refused = bot.report("RESULT").await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["info"]["status"], "failed", "{refused}");
    assert_eq!(refused["info"]["retcode"], 100, "{refused}");
    assert_eq!(refused["info"]["msg"], "FILE_REFUSED", "{refused}");
    assert_eq!(sent_files(&bot, "secret.png").await, [format!("file://{}", secret.display())]);

    // The refused file was never read out to the backend; the next message was sent normally.
    let upload = backend.next_request().await;
    assert_eq!(upload["action"], "upload_file", "nothing else before the allowed file's upload: {upload}");
    assert_eq!(upload["params"]["name"], "fine.png", "{upload}");
    let sent = backend.next_request().await;
    assert_eq!(sent["action"], "send_message", "{sent}");
    let ok = bot.report("RESULT").await;
    assert_eq!(ok["ok"], true, "{ok}");
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(backend.file(&uploads[0].file_id).unwrap().1, fine);
    assert!(!uploads.iter().any(|u| u.name == "secret.png"));

    drop(bot);
    bridge.stop().await;
}
