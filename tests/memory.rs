//! The bridge's memory stays far below the size of a file it relays: the release-or-debug binary
//! runs as its own process, a bot sends a 50 MB local file (uploaded in fragments) and fetches a
//! 50 MB received file from the bridge's `/files/` URL (streamed from the backend in fragments),
//! and the process's peak resident set (`VmHWM` in `/proc/<pid>/status`) is read afterwards.
//! The figure is printed (`cargo test --test memory -- --nocapture`) and quoted in the README.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const SIZE: usize = 50 << 20;

/// Bytes that do not compress or repeat (a simple xorshift stream).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

type Client = hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn post(client: &Client, url: &str, body: Value) -> Value {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(120), client.request(req)).await.unwrap().unwrap();
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_50_mb_each_way_keeps_the_bridge_far_below_the_file_size() {
    let dir = std::env::temp_dir().join(format!("ob-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = noise(SIZE);
    let want = Sha256::digest(&bytes);
    let path = dir.join("big.bin");
    std::fs::write(&path, &bytes).unwrap();

    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (ws_port, http_port) = (free_port(), free_port());
    let (ws, http, url) = (format!("127.0.0.1:{ws_port}"), format!("127.0.0.1:{http_port}"), backend.url());
    let media = dir.to_string_lossy();
    let child = spawn_bridge(&[
        "--backend-ws",
        &url,
        "--ws",
        &ws,
        "--http",
        &http,
        "--media-urls",
        "serve",
        "--ephemeral",
        "--media-dir",
        &media,
    ]);
    let pid = child.0.id();
    let ws_addr: std::net::SocketAddr = format!("127.0.0.1:{ws_port}").parse().unwrap();
    let mut bot = Bot::connect_when_up(ws_addr).await;
    let idle_kib = status_kib(pid, "VmRSS:");

    // Out: a 50 MB local file, read and uploaded a fragment at a time.
    let client: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let message = format!("[CQ:file,file=file://{},name=big.bin]", path.display());
    let answer = post(
        &client,
        &format!("http://127.0.0.1:{http_port}/send_group_msg"),
        json!({"group_id": 1, "message": message}),
    )
    .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let upload = backend.uploads().pop().expect("an upload");
    assert_eq!((upload.kind.as_str(), upload.len), ("fragmented", SIZE));
    assert_eq!(Sha256::digest(backend.file(&upload.file_id).unwrap().1), want, "uploaded byte for byte");

    // In: a 50 MB received file, streamed from the backend through the bridge's URL.
    let file_id = backend.add_file("big.bin", bytes);
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "m-big", "group_id": "1", "user_id": "2",
               "message": [{"type": "file", "data": {"file_id": file_id}}]}),
    ));
    let ev = bot.next_event().await;
    let url = ev["raw_message"].as_str().unwrap().split("url=").nth(1).unwrap().trim_end_matches(']').to_owned();
    assert!(url.starts_with(&format!("http://127.0.0.1:{http_port}/files/")), "{url}");
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut hash = Sha256::new();
    let mut got = 0;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(120), body.frame()).await.unwrap() {
        if let Ok(data) = frame.unwrap().into_data() {
            got += data.len();
            hash.update(&data);
        }
    }
    assert_eq!((got, hash.finalize()), (SIZE, want), "downloaded byte for byte");

    let peak_kib = status_kib(pid, "VmHWM:");
    println!(
        "bridge memory relaying {} MiB each way: idle RSS {:.1} MiB, peak RSS {:.1} MiB",
        SIZE >> 20,
        idle_kib as f64 / 1024.0,
        peak_kib as f64 / 1024.0
    );
    // Far below the file: a few fragments (1 MiB each, 4/3 of that as base64) in flight.
    let growth = (peak_kib.saturating_sub(idle_kib)) * 1024;
    assert!(growth < (SIZE / 4) as u64, "peak RSS grew by {growth} bytes for a {SIZE}-byte file");
    drop(backend.uploads());
    let _ = std::fs::remove_dir_all(&dir);
}
