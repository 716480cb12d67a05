//! Media end to end on the real bridge: a scripted v11 bot (forward WS) ⇄ the bridge ⇄ the
//! scripted v12 backend with its in-memory file store, on loopback ports chosen by the OS.
//!
//! Outgoing, every v11 `file=` form (URL, `base64://`, `file://` / absolute path, large data in
//! fragments, `type: path` for a backend sharing the disk) becomes one backend upload whose
//! `file_id` is what `send_message` carries, and the stored bytes are the bot's bytes exactly;
//! the same content is uploaded once; a local file outside the allowed directories (directly,
//! by `..`, or by a symlink) is refused with `FILE_REFUSED` and nothing is sent — the same
//! refusal whether it exists or not, inside a forward node or not — and a FIFO in an allowed
//! directory is refused at once rather than waited on. Incoming, a received `file_id` gets a
//! URL — the backend's (`resolve`) or the bridge's signed `/files/` (`serve`, and the fallback
//! when the backend has none) — that downloads the backend's bytes exactly, up to a 50 MiB file
//! with its `Content-Length`. go-cqhttp's file actions
//! (`get_image`, `get_record`, `get_group_file_url`, `download_file`, `upload_group_file`,
//! `upload_private_file`) and a MessagePack backend link are covered the same way.
//!
//! Every file a test writes lives in its own directory under the system temp directory (named
//! with the process id) and is removed when the test ends, the bridge's cache directory included.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde_json::{json, Value};

use onebot_bridge::config::{Config, FileConfig, IncomingModeName, MediaSection, Overrides, UploadModeName};
use onebot_bridge::core::v11::PostFormat;
use onebot_bridge::Bridge;
use support::*;

const MIB: usize = 1 << 20;

// ---- set-up ----

/// A test's own directory tree: `allowed/` (given to the bridge as a media directory),
/// `outside/` (not allowed) and `cache/` (the bridge's cache directory). Removed on drop.
struct Dirs {
    root: PathBuf,
    allowed: PathBuf,
    outside: PathBuf,
    cache: PathBuf,
}

impl Dirs {
    fn new(name: &str) -> Dirs {
        let root = std::env::temp_dir().join(format!("ob-media-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // Canonical, so paths compare equal to what the bridge resolves.
        let root = std::fs::canonicalize(&root).unwrap();
        let (allowed, outside, cache) = (root.join("allowed"), root.join("outside"), root.join("cache"));
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        Dirs { root, allowed, outside, cache }
    }

    /// Writes a file under `allowed/` and gives its path.
    fn allowed_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.allowed.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `file://` URL of an absolute path.
fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Starts the real bridge on `backend` with a v11 forward WS on port 0, `dirs.allowed` as its
/// media directory and `dirs.cache` as its cache directory; `flags` adds the rest.
async fn start(backend: &FakeBackend, dirs: &Dirs, flags: impl FnOnce(&mut Overrides)) -> Bridge {
    start_with(backend, dirs, MediaSection::default(), flags).await
}

/// [`start`] with more of the config file's `[media]` section.
async fn start_with(
    backend: &FakeBackend,
    dirs: &Dirs,
    media: MediaSection,
    flags: impl FnOnce(&mut Overrides),
) -> Bridge {
    let mut o = Overrides {
        backend_ws: vec![backend.url()],
        ws: vec!["127.0.0.1:0".into()],
        media_dirs: vec![dirs.allowed.clone()],
        post_format: Some(PostFormat::Array),
        ..Default::default()
    };
    flags(&mut o);
    let file =
        FileConfig { media: MediaSection { cache_dir: Some(dirs.cache.clone()), ..media }, ..Default::default() };
    Bridge::start(Config::resolve(file, o).unwrap()).await.unwrap()
}

/// A bot on the universal path, after its lifecycle event (so the bridge knows the account).
async fn connect(bridge: &Bridge) -> Bot {
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    let hello = bot.next_frame().await;
    assert_eq!(hello["meta_event_type"], "lifecycle", "{hello}");
    bot
}

/// The bridge's own base URL (its first HTTP API server).
fn http_base(bridge: &Bridge) -> String {
    format!("http://{}", bridge.addrs().http[0])
}

/// Deterministic bytes that do not compress or repeat (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compares large byte strings without printing them.
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    assert!(got.len() == want.len(), "{what}: {} bytes, want {}", got.len(), want.len());
    if let Some(at) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: bytes differ first at offset {at}");
    }
}

fn b64(bytes: &[u8]) -> String {
    format!("base64://{}", BASE64.encode(bytes))
}

/// GETs a URL over loopback: status, `Content-Length`, body. Bounded by `limit`.
async fn http_get(url: &str, limit: Duration) -> (u16, Option<u64>, Vec<u8>) {
    let client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let fetch = async {
        let resp = client.get(url.parse().unwrap()).await.expect("the GET failed");
        let status = resp.status().as_u16();
        let len =
            resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let body = resp.into_body().collect().await.expect("the body did not arrive").to_bytes();
        (status, len, body.to_vec())
    };
    tokio::time::timeout(limit, fetch).await.unwrap_or_else(|_| panic!("GET {url} took longer than {limit:?}"))
}

// ---- what the backend saw ----

/// The backend's requests up to and including the next `send_message`, which is returned last.
async fn requests_through_send(backend: &mut FakeBackend) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no send_message; saw {seen:?}");
        let r = backend.next_request().await;
        let done = r["action"] == "send_message";
        seen.push(r);
        if done {
            return seen;
        }
    }
}

/// The actions the bridge sent the backend before it answered a barrier call. Everything the
/// bridge asked while handling earlier calls is recorded before those calls were answered, so
/// this is exactly what they made it do.
async fn actions_before_barrier(bot: &mut Bot, backend: &mut FakeBackend) -> Vec<String> {
    assert_eq!(bot.call("get_login_info", json!({})).await["status"], "ok");
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the barrier never reached the backend; saw {seen:?}");
        let action = backend.next_request().await["action"].as_str().unwrap_or_default().to_owned();
        if action == "get_self_info" {
            return seen;
        }
        seen.push(action);
    }
}

/// Sends a one-segment group message and checks the exchange: the answer is ok, exactly one
/// upload happened, and `send_message` carries that upload's file_id in its only segment.
/// Gives the v12 segment sent and the upload.
async fn send_one(bot: &mut Bot, backend: &mut FakeBackend, message: Value) -> (Value, Upload) {
    let before = backend.uploads().len();
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let send = requests_through_send(backend).await.pop().unwrap();
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), before + 1, "exactly one upload: {:?}", &uploads[before..]);
    let upload = uploads[before].clone();
    let segments = send["params"]["message"].as_array().unwrap().clone();
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert_eq!(segments[0]["data"]["file_id"], upload.file_id, "send_message names the upload: {segments:?}");
    (segments[0].clone(), upload)
}

/// A v12 group message event from user 20002 in group 30003 with these segments.
fn group_message(message_id: &str, message: Value) -> Value {
    v12_message(
        "group",
        "10001",
        json!({"message_id": message_id, "user_id": "20002", "group_id": "30003", "message": message}),
    )
}

/// Pushes a group message with one media segment naming `file_id` and gives the v11 segment the
/// bot received.
async fn receive_media(bot: &mut Bot, backend: &FakeBackend, kind: &str, file_id: &str) -> Value {
    backend.push(group_message("in-1", json!([{"type": kind, "data": {"file_id": file_id}}])));
    let ev = bot.next_event().await;
    assert_eq!(ev["message_type"], "group", "{ev}");
    let segments = ev["message"].as_array().unwrap_or_else(|| panic!("array post format: {ev}"));
    assert_eq!(segments.len(), 1, "{ev}");
    segments[0].clone()
}

// ---- outgoing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outgoing_form_becomes_one_upload_and_is_sent_by_its_file_id() {
    let dirs = Dirs::new("forms");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;

    // A URL: the backend fetches it (type url), nothing is downloaded by the bridge.
    let (seg, up) =
        send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": "https://example.com/a.png"}}]))
            .await;
    assert_eq!(seg["type"], "image");
    assert_eq!((up.kind.as_str(), up.url.as_deref()), ("url", Some("https://example.com/a.png")));
    assert_eq!(up.name, "a.png");

    // Small inline data: one upload_file type data with the same bytes.
    let small = [b"\x89PNG\r\n\x1a\n".as_slice(), &noise(3000, 1)].concat();
    let (seg, up) = send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": b64(&small)}}])).await;
    assert_eq!(seg["type"], "image");
    assert_eq!((up.kind.as_str(), up.fragments), ("data", 0));
    assert!(up.name.ends_with(".png"), "a name with the sniffed extension: {}", up.name);
    assert_same_bytes(&backend.file(&up.file_id).unwrap().1, &small, "small base64 image");

    // 5 MiB of inline data, above the 1 MiB default threshold: upload_file_fragmented.
    let big = noise(5 * MIB, 2);
    let (seg, up) = send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": b64(&big)}}])).await;
    assert_eq!(seg["type"], "image");
    assert_eq!(up.kind, "fragmented");
    assert!(up.fragments >= 5, "5 MiB in 1 MiB fragments: {} transfers", up.fragments);
    assert_eq!(up.len, big.len());
    assert_same_bytes(&backend.file(&up.file_id).unwrap().1, &big, "fragmented image");

    // A local file in an allowed directory, by file:// URL.
    let pic = noise(4000, 3);
    let path = dirs.allowed_file("pic.png", &pic);
    let (seg, up) =
        send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": file_url(&path)}}])).await;
    assert_eq!(seg["type"], "image");
    assert_eq!((up.kind.as_str(), up.name.as_str()), ("data", "pic.png"));
    assert_same_bytes(&backend.file(&up.file_id).unwrap().1, &pic, "file:// image");

    // A voice message as a CQ string: v11 record → v12 voice.
    let voice = [b"#!AMR\n".as_slice(), &noise(2000, 4)].concat();
    let (seg, up) = send_one(&mut bot, &mut backend, json!(format!("[CQ:record,file={}]", b64(&voice)))).await;
    assert_eq!(seg["type"], "voice", "{seg}");
    assert_eq!(up.kind, "data");
    assert!(up.name.ends_with(".amr"), "{}", up.name);
    assert_same_bytes(&backend.file(&up.file_id).unwrap().1, &voice, "record");

    // A video by bare absolute path.
    let clip = noise(10_000, 5);
    let path = dirs.allowed_file("clip.mp4", &clip);
    let (seg, up) = send_one(&mut bot, &mut backend, json!(format!("[CQ:video,file={}]", path.display()))).await;
    assert_eq!(seg["type"], "video", "{seg}");
    assert_eq!((up.kind.as_str(), up.name.as_str()), ("data", "clip.mp4"));
    assert_same_bytes(&backend.file(&up.file_id).unwrap().1, &clip, "video");

    bot.close().await;
    bridge.stop().await;
}

/// An action a bot asked for is carried out even when the bot goes away before its answer, as
/// go-cqhttp does: the picture's upload answers after the bot left, and the message is still sent
/// with it, not cut off halfway.
#[tokio::test]
async fn a_message_is_sent_after_its_bot_went_away_during_the_upload() {
    let dirs = Dirs::new("gone");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let uploaded = json!({"status": "ok", "retcode": 0, "message": "", "data": {"file_id": "uploaded-late"}});
    let mut late = uploaded.clone();
    late[DELAY_MS] = json!(300);
    backend.answer_next("upload_file", late);
    let image = json!([{"type": "image", "data": {"file": b64(b"a picture")}}]);
    let call = json!({"action": "send_group_msg", "params": {"group_id": 30003, "message": image}, "echo": "e"});
    bot.send_raw(&call.to_string()).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while backend.next_request().await["action"] != "upload_file" {
        assert!(tokio::time::Instant::now() < deadline, "no upload_file");
    }
    bot.close().await;
    let sent = requests_through_send(&mut backend).await.pop().unwrap();
    assert_eq!(sent["params"]["message"][0]["data"]["file_id"], "uploaded-late", "{sent}");
    bridge.stop().await;
}

#[tokio::test]
async fn local_files_outside_the_allowed_directories_are_refused_and_nothing_is_sent() {
    let dirs = Dirs::new("refused");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let secret = dirs.outside.join("x.png");
    std::fs::write(&secret, b"not for bots").unwrap();
    std::os::unix::fs::symlink(&secret, dirs.allowed.join("link.png")).unwrap();

    for reference in [
        file_url(&secret),
        secret.display().to_string(),
        format!("file://{}/../outside/x.png", dirs.allowed.display()),
        file_url(&dirs.allowed.join("link.png")),
    ] {
        let message =
            json!([{"type": "text", "data": {"text": "look: "}}, {"type": "image", "data": {"file": reference}}]);
        let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
        assert_eq!(answer["status"], "failed", "{reference}: {answer}");
        assert_eq!(answer["retcode"], 100, "{reference}: {answer}");
        assert_eq!(answer["msg"], "FILE_REFUSED", "{reference}: {answer}");
        assert!(!answer["wording"].as_str().unwrap_or_default().is_empty(), "{reference}: {answer}");
        let actions = actions_before_barrier(&mut bot, &mut backend).await;
        assert!(actions.is_empty(), "{reference}: the backend got {actions:?}");
    }
    assert!(backend.uploads().is_empty());

    bot.close().await;
    bridge.stop().await;
}

/// A failed send of one local file: the answer, after checking nothing reached the backend.
async fn refused_send(bot: &mut Bot, backend: &mut FakeBackend, reference: &str) -> Value {
    let message = json!([{"type": "image", "data": {"file": reference}}]);
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
    assert_eq!(
        (answer["status"].as_str(), answer["retcode"].as_i64()),
        (Some("failed"), Some(100)),
        "{reference}: {answer}"
    );
    let actions = actions_before_barrier(bot, backend).await;
    assert!(actions.is_empty(), "{reference}: the backend got {actions:?}");
    answer
}

#[tokio::test]
async fn outside_the_allowed_directories_a_missing_file_is_refused_like_an_existing_one() {
    let dirs = Dirs::new("oracle");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let secret = dirs.outside.join("x.png");
    std::fs::write(&secret, b"not for bots").unwrap();
    let locked = dirs.outside.join("locked.png");
    std::fs::write(&locked, b"not for anyone").unwrap();
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    std::os::unix::fs::symlink(dirs.outside.join("gone.png"), dirs.allowed.join("dangling.png")).unwrap();

    let mut wordings = Vec::new();
    for path in [
        secret.clone(),
        locked,
        dirs.outside.join("missing.png"),
        dirs.outside.join("missing-dir/missing.png"),
        dirs.allowed.join("../outside/missing.png"),
        dirs.allowed.join("dangling.png"),
    ] {
        let reference = file_url(&path);
        let answer = refused_send(&mut bot, &mut backend, &reference).await;
        assert_eq!(answer["msg"], "FILE_REFUSED", "{reference}: {answer}");
        let shown = path.display().to_string();
        wordings.push(answer["wording"].as_str().unwrap_or_default().replace(&shown, "<path>"));
    }
    assert!(wordings.iter().all(|w| w == &wordings[0]), "one refusal for all: {wordings:#?}");
    // Inside an allowed directory a missing file says so.
    let answer = refused_send(&mut bot, &mut backend, &file_url(&dirs.allowed.join("missing.png"))).await;
    assert_eq!(answer["msg"], "FILE_NOT_FOUND", "{answer}");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn a_fifo_in_an_allowed_directory_is_refused_without_waiting_for_a_writer() {
    let dirs = Dirs::new("fifo");
    let fifo = dirs.allowed.join("fifo.png");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    // A transfer timeout far beyond how long the bot waits for its answer: only refusing the
    // FIFO before reading from it answers in time.
    let media = MediaSection { transfer_timeout: Some(3600), ..Default::default() };
    let bridge = start_with(&backend, &dirs, media, |_| {}).await;
    let mut bot = connect(&bridge).await;

    for reference in [file_url(&fifo), fifo.display().to_string()] {
        let answer = refused_send(&mut bot, &mut backend, &reference).await;
        assert_eq!(answer["msg"], "FILE_REFUSED", "{reference}: {answer}");
        let wording = answer["wording"].as_str().unwrap_or_default();
        assert!(wording.contains("not a regular file"), "{reference}: {answer}");
    }
    // Nobody ever wrote to the FIFO, and the bridge still answers the next send.
    let pic = noise(3000, 31);
    let path = dirs.allowed_file("pic.png", &pic);
    let (_, upload) =
        send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": file_url(&path)}}])).await;
    assert_same_bytes(&backend.file(&upload.file_id).unwrap().1, &pic, "the picture after the FIFO");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn a_forward_nodes_media_follow_the_same_rules_as_any_message() {
    let dirs = Dirs::new("forward");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let secret = dirs.outside.join("x.png");
    std::fs::write(&secret, b"not for bots").unwrap();
    let node = |content: Value| json!({"type": "node", "data": {"name": "Ann", "uin": 30003, "content": content}});

    // Outside the allowed directories, in a node, a nested node, or a node inside send_msg.
    let image = |path: &Path| json!([{"type": "image", "data": {"file": file_url(path)}}]);
    for (action, params) in [
        ("send_group_forward_msg", json!({"group_id": 30003, "messages": [node(image(&secret))]})),
        ("send_private_forward_msg", json!({"user_id": 20002, "messages": [node(json!([node(image(&secret))]))]})),
        (
            "send_forward_msg",
            json!({"group_id": 30003, "messages": [node(json!(format!("[CQ:image,file={}]", file_url(&secret))))]}),
        ),
        ("send_group_msg", json!({"group_id": 30003, "message": [node(image(&secret))]})),
    ] {
        let answer = bot.call(action, params.clone()).await;
        assert_eq!(answer["msg"], "FILE_REFUSED", "{action}: {answer}");
        let actions = actions_before_barrier(&mut bot, &mut backend).await;
        assert!(actions.is_empty(), "{action}: the backend got {actions:?}");
    }

    // Inside: uploaded, and the node carries the upload's file_id.
    let pic = noise(3000, 7);
    let path = dirs.allowed_file("pic.png", &pic);
    backend.answer_next(
        "qq.send_group_forward_msg",
        json!({"status": "ok", "retcode": 0, "data": {"message_id": "fw-1", "forward_id": "res-1"}, "message": ""}),
    );
    let answer = bot.call("send_group_forward_msg", json!({"group_id": 30003, "messages": [node(image(&path))]})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert!(answer["data"]["message_id"].is_i64(), "{answer}");
    let deadline = tokio::time::Instant::now() + WAIT;
    let forward = loop {
        assert!(tokio::time::Instant::now() < deadline, "no forward reached the backend");
        let r = backend.next_request().await;
        if r["action"] == "qq.send_group_forward_msg" {
            break r;
        }
    };
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let sent = &forward["params"]["messages"][0]["data"];
    assert_eq!(sent["user_id"], "30003", "{forward}");
    assert_eq!(sent["message"][0]["data"]["file_id"], uploads[0].file_id, "{forward}");
    assert_same_bytes(&backend.file(&uploads[0].file_id).unwrap().1, &pic, "the node's picture");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn the_same_picture_sent_twice_is_uploaded_once() {
    let dirs = Dirs::new("reuse");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let message = json!([{"type": "image", "data": {"file": b64(&noise(5000, 6))}}]);

    let mut sent_ids = Vec::new();
    for _ in 0..2 {
        let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
        assert_eq!(answer["status"], "ok", "{answer}");
        let send = requests_through_send(&mut backend).await.pop().unwrap();
        sent_ids.push(send["params"]["message"][0]["data"]["file_id"].clone());
    }
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(sent_ids, [json!(uploads[0].file_id), json!(uploads[0].file_id)]);

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn a_backend_sharing_the_disk_gets_the_canonical_path() {
    let dirs = Dirs::new("pathmode");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |o| o.upload_mode = Some(UploadModeName::Path)).await;
    let mut bot = connect(&bridge).await;
    let pic = noise(3000, 7);
    let path = dirs.allowed_file("pic.png", &pic);
    std::fs::create_dir_all(dirs.allowed.join("sub")).unwrap();

    // Named through a detour: the backend gets the resolved path.
    let detour = format!("file://{}/sub/../pic.png", dirs.allowed.display());
    let (_, up) = send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": detour}}])).await;
    assert_eq!(up.kind, "path");
    assert_eq!(up.path.as_deref(), Some(path.to_str().unwrap()));
    assert_same_bytes(&backend.file(&up.file_id).unwrap().1, &pic, "the file the backend read");

    // Inline data has no path: it still travels as data.
    let (_, up) = send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": b64(b"inline")}}])).await;
    assert_eq!(up.kind, "data");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_without_fragmented_upload_gets_a_large_file_in_one_piece() {
    let dirs = Dirs::new("nofrag");
    let mut backend = FakeBackend::start(BackendOptions { fragmented_files: false, ..Default::default() }).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(2 * MIB, 8);
    let path = dirs.allowed_file("big.bin", &bytes);

    let message = json!([{"type": "image", "data": {"file": file_url(&path)}}]);
    let answer = bot.call("send_group_msg", json!({"group_id": 30003, "message": message})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let requests = requests_through_send(&mut backend).await;
    let actions: Vec<&str> = requests.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "upload_file").count(), 1, "{actions:?}");
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!((uploads[0].kind.as_str(), uploads[0].fragments), ("data", 0));
    assert_same_bytes(&backend.file(&uploads[0].file_id).unwrap().1, &bytes, "one-piece upload");
    assert_eq!(requests.last().unwrap()["params"]["message"][0]["data"]["file_id"], uploads[0].file_id);

    bot.close().await;
    bridge.stop().await;
}

// ---- incoming ----

#[tokio::test]
async fn a_received_picture_gets_the_backends_url_which_downloads_byte_for_byte() {
    let dirs = Dirs::new("resolve");
    let backend = FakeBackend::start(BackendOptions::default()).await;
    // An HTTP server too: in resolve mode the backend's URL is still preferred.
    let bridge = start(&backend, &dirs, |o| o.http = vec!["127.0.0.1:0".into()]).await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(100_000, 9);
    let id = backend.add_file("cat.png", bytes.clone());

    let seg = receive_media(&mut bot, &backend, "image", &id).await;
    assert_eq!(seg["type"], "image", "{seg}");
    assert_eq!(seg["data"]["file"], id.as_str(), "{seg}");
    let url = seg["data"]["url"].as_str().unwrap_or_else(|| panic!("no url: {seg}")).to_owned();
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/files/"), "{url}");
    assert!(!url.starts_with(&http_base(&bridge)), "the backend's own URL, not the bridge's: {url}");

    assert_eq!(backend.file_url_requests(), 0);
    let (status, _, body) = http_get(&url, WAIT).await;
    assert_eq!(status, 200);
    assert_same_bytes(&body, &bytes, "downloaded from the backend's URL");
    assert_eq!(backend.file_url_requests(), 1, "the bot fetched from the backend's file server");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn in_serve_mode_a_received_picture_gets_the_bridges_signed_url() {
    let dirs = Dirs::new("serve");
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |o| {
        o.http = vec!["127.0.0.1:0".into()];
        o.media_urls = Some(IncomingModeName::Serve);
    })
    .await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(200_000, 10);
    let id = backend.add_file("cat.png", bytes.clone());

    let seg = receive_media(&mut bot, &backend, "image", &id).await;
    assert_eq!(seg["data"]["file"], id.as_str(), "{seg}");
    let url = seg["data"]["url"].as_str().unwrap_or_else(|| panic!("no url: {seg}")).to_owned();
    assert!(url.starts_with(&format!("{}/files/", http_base(&bridge))), "{url}");

    let (status, len, body) = http_get(&url, WAIT).await;
    assert_eq!(status, 200);
    assert_eq!(len, Some(bytes.len() as u64));
    assert_same_bytes(&body, &bytes, "served by the bridge");
    assert_eq!(backend.file_url_requests(), 0, "the backend's file server was not used");

    // One character changed anywhere in the token: not a file.
    let last = url.chars().last().unwrap();
    let tampered = format!("{}{}", &url[..url.len() - 1], if last == 'A' { 'B' } else { 'A' });
    assert_eq!(http_get(&tampered, WAIT).await.0, 404, "{tampered}");
    let token_start = url.rfind('/').unwrap() + 1;
    let first = url[token_start..].chars().next().unwrap();
    let tampered =
        format!("{}{}{}", &url[..token_start], if first == 'M' { 'N' } else { 'M' }, &url[token_start + 1..]);
    assert_eq!(http_get(&tampered, WAIT).await.0, 404, "{tampered}");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn a_backend_that_cannot_give_urls_falls_back_to_the_bridges_url() {
    let dirs = Dirs::new("fallback");
    let backend = FakeBackend::start(BackendOptions { file_urls: false, ..Default::default() }).await;
    let bridge = start(&backend, &dirs, |o| o.http = vec!["127.0.0.1:0".into()]).await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(150_000, 11);
    let id = backend.add_file("dog.jpg", bytes.clone());

    let seg = receive_media(&mut bot, &backend, "image", &id).await;
    assert_eq!(seg["data"]["file"], id.as_str(), "{seg}");
    let url = seg["data"]["url"].as_str().unwrap_or_else(|| panic!("no url: {seg}")).to_owned();
    assert!(url.starts_with(&format!("{}/files/", http_base(&bridge))), "{url}");
    let (status, len, body) = http_get(&url, WAIT).await;
    assert_eq!((status, len), (200, Some(bytes.len() as u64)));
    assert_same_bytes(&body, &bytes, "served by the bridge as the fallback");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn with_no_http_server_the_bridges_url_is_served_on_the_websocket_port() {
    let dirs = Dirs::new("wsport");
    let backend = FakeBackend::start(BackendOptions { file_urls: false, ..Default::default() }).await;
    let bridge = start(&backend, &dirs, |o| o.access_token = Some("s3cret".into())).await;
    assert!(bridge.addrs().http.is_empty());
    let ws = bridge.ws_addrs()[0];
    let mut bot = Bot::connect(ws, "/", Some("Bearer s3cret")).await.unwrap();
    assert_eq!(bot.next_frame().await["meta_event_type"], "lifecycle");
    let bytes = noise(120_000, 12);
    let id = backend.add_file("bird.png", bytes.clone());

    let seg = receive_media(&mut bot, &backend, "image", &id).await;
    let url = seg["data"]["url"].as_str().unwrap_or_else(|| panic!("no url: {seg}")).to_owned();
    assert!(url.starts_with(&format!("http://{ws}/files/")), "{url}");
    // Signed, so no access token is asked for.
    let (status, len, body) = http_get(&url, WAIT).await;
    assert_eq!((status, len), (200, Some(bytes.len() as u64)));
    assert_same_bytes(&body, &bytes, "served on the WebSocket port");
    let tampered = format!("{}{}", &url[..url.len() - 1], if url.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(http_get(&tampered, WAIT).await.0, 404, "{tampered}");

    // A request line that arrives in pieces is still told apart from a WebSocket handshake.
    let answer = raw_get(ws, &url[url.find("/files/").unwrap()..], Some(2)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..answer.len().min(200)]));
    assert!(answer.ends_with(&bytes), "the body is the file");

    // The port still speaks WebSocket for everything else, token checked.
    match Bot::connect(ws, "/", None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("a handshake without the token: {:?}", other.map(|_| "accepted")),
    }
    let info = bot.call("get_login_info", json!({})).await;
    assert_eq!(info["retcode"], 0, "{info}");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_file_is_served_whole_with_its_content_length() {
    let dirs = Dirs::new("big-serve");
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |o| {
        o.http = vec!["127.0.0.1:0".into()];
        o.media_urls = Some(IncomingModeName::Serve);
    })
    .await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(50 * MIB, 12);
    let id = backend.add_file("movie.mp4", bytes.clone());

    let seg = receive_media(&mut bot, &backend, "video", &id).await;
    assert_eq!(seg["type"], "video", "{seg}");
    let url = seg["data"]["url"].as_str().unwrap_or_else(|| panic!("no url: {seg}")).to_owned();
    assert!(url.starts_with(&format!("{}/files/", http_base(&bridge))), "{url}");
    // A correctness test, not a speed test: the bound is generous.
    let (status, len, body) = http_get(&url, WAIT * 4).await;
    assert_eq!(status, 200);
    assert_eq!(len, Some(bytes.len() as u64));
    assert_same_bytes(&body, &bytes, "the 50 MiB file");

    bot.close().await;
    bridge.stop().await;
}

// ---- go-cqhttp's file actions ----

#[tokio::test]
async fn get_image_and_get_record_hand_back_a_local_copy_and_a_url() {
    let dirs = Dirs::new("getimage");
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;

    for (action, name, bytes) in
        [("get_image", "cat.png", noise(70_000, 13)), ("get_record", "voice.amr", noise(30_000, 14))]
    {
        let id = backend.add_file(name, bytes.clone());
        let answer = bot.call(action, json!({"file": id})).await;
        assert_eq!(answer["status"], "ok", "{action}: {answer}");
        let data = &answer["data"];
        let local = PathBuf::from(data["file"].as_str().unwrap_or_else(|| panic!("{action}: {answer}")));
        assert!(local.is_absolute() && local.exists(), "{action}: {}", local.display());
        assert!(local.starts_with(&dirs.cache), "{action}: in the cache directory: {}", local.display());
        assert_same_bytes(&std::fs::read(&local).unwrap(), &bytes, action);
        assert_eq!(data["filename"], name, "{action}: {answer}");
        assert_eq!(data["size"], bytes.len(), "{action}: {answer}");
        let url = data["url"].as_str().unwrap_or_default();
        assert!(url.starts_with("http://"), "{action}: {answer}");
        let (status, _, body) = http_get(url, WAIT).await;
        assert_eq!(status, 200, "{action}");
        assert_same_bytes(&body, &bytes, action);
    }

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn get_group_file_url_gives_a_url_that_downloads() {
    let dirs = Dirs::new("fileurl");
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(60_000, 15);
    let id = backend.add_file("report.pdf", bytes.clone());

    let answer = bot.call("get_group_file_url", json!({"group_id": 30003, "file_id": id})).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let url = answer["data"]["url"].as_str().unwrap_or_else(|| panic!("{answer}"));
    let (status, _, body) = http_get(url, WAIT).await;
    assert_eq!(status, 200);
    assert_same_bytes(&body, &bytes, "group file");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn download_file_has_the_backend_fetch_with_the_bots_headers_and_caches_the_result() {
    let dirs = Dirs::new("download");
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;

    let answer = bot
        .call(
            "download_file",
            json!({"url": "http://example.com/x.bin", "headers": "User-Agent=x\r\nReferer=y", "thread_count": 1}),
        )
        .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let up = &uploads[0];
    assert_eq!((up.kind.as_str(), up.url.as_deref()), ("url", Some("http://example.com/x.bin")));
    assert_eq!(up.headers, [("User-Agent".to_owned(), "x".to_owned()), ("Referer".to_owned(), "y".to_owned())]);
    assert_eq!(up.name, "x.bin");
    let local = PathBuf::from(answer["data"]["file"].as_str().unwrap_or_else(|| panic!("{answer}")));
    assert!(local.starts_with(&dirs.cache), "{}", local.display());
    let stored = backend.file(&up.file_id).unwrap().1;
    assert_same_bytes(&std::fs::read(&local).unwrap(), &stored, "the cached download");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn upload_group_file_uploads_then_sends_a_file_segment() {
    let dirs = Dirs::new("groupfile");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(20_000, 16);
    let path = dirs.allowed_file("q3-draft.pdf", &bytes);

    let answer = bot
        .call("upload_group_file", json!({"group_id": 30003, "file": path.to_str().unwrap(), "name": "report.pdf"}))
        .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["data"], Value::Null, "{answer}");
    let requests = requests_through_send(&mut backend).await;
    let uploads = backend.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!((uploads[0].kind.as_str(), uploads[0].name.as_str()), ("data", "report.pdf"));
    assert_same_bytes(&backend.file(&uploads[0].file_id).unwrap().1, &bytes, "group file");
    let send = &requests.last().unwrap()["params"];
    assert_eq!(send["detail_type"], "group", "{send}");
    assert_eq!(send["group_id"], "30003", "{send}");
    let segments = send["message"].as_array().unwrap();
    assert_eq!(segments.len(), 1, "{send}");
    assert_eq!(segments[0]["type"], "file", "{send}");
    assert_eq!(segments[0]["data"]["file_id"], uploads[0].file_id, "{send}");

    bot.close().await;
    bridge.stop().await;
}

#[tokio::test]
async fn upload_private_file_outside_the_allowed_directories_is_refused() {
    let dirs = Dirs::new("privatefile");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |_| {}).await;
    let mut bot = connect(&bridge).await;
    let secret = dirs.outside.join("keys.txt");
    std::fs::write(&secret, b"secret").unwrap();

    let answer = bot
        .call("upload_private_file", json!({"user_id": 20002, "file": secret.to_str().unwrap(), "name": "keys.txt"}))
        .await;
    assert_eq!((answer["status"].as_str(), answer["retcode"].as_i64()), (Some("failed"), Some(100)), "{answer}");
    assert_eq!(answer["msg"], "FILE_REFUSED", "{answer}");
    assert!(!answer["wording"].as_str().unwrap_or_default().is_empty(), "{answer}");
    let actions = actions_before_barrier(&mut bot, &mut backend).await;
    assert!(actions.is_empty(), "the backend got {actions:?}");
    assert!(backend.uploads().is_empty());

    bot.close().await;
    bridge.stop().await;
}

// ---- MessagePack ----

#[tokio::test]
async fn a_msgpack_backend_link_carries_uploads() {
    let dirs = Dirs::new("msgpack");
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start(&backend, &dirs, |o| o.backend_msgpack = true).await;
    let mut bot = connect(&bridge).await;
    let bytes = noise(4000, 17);

    let before = backend.msgpack_requests();
    let (seg, up) = send_one(&mut bot, &mut backend, json!([{"type": "image", "data": {"file": b64(&bytes)}}])).await;
    assert_eq!(seg["type"], "image");
    assert_eq!(up.kind, "data");
    assert_same_bytes(&backend.file(&up.file_id).unwrap().1, &bytes, "msgpack upload");
    assert!(
        backend.msgpack_requests() >= before + 2,
        "upload_file and send_message came as MessagePack: {} → {}",
        before,
        backend.msgpack_requests()
    );

    bot.close().await;
    bridge.stop().await;
}
