//! End-to-end load run over real sockets: the bridge between the scripted v12 backend (forward
//! WebSocket) and v11 bots (forward WebSocket), all on loopback in one process.
//!
//! - events: the backend pushes group messages, a bot receives them translated; a window of 512
//!   events is in flight (the bridge's per-connection queue holds 1024), so this is the sustained
//!   rate, nothing dropped;
//! - actions: 8 bots call `send_group_msg` one after another each (8 in flight), every call going
//!   through translation, the backend and back; throughput and latency percentiles.
//!
//! `cargo bench --bench load` runs 50 000 of each; under `cargo test` (no `--bench`) it runs a
//! few hundred to prove it works. The figures are in the README.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const WINDOW: usize = 512;
const BOTS: usize = 8;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 50_000 } else { 600 };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(n, full));
}

fn message(i: usize) -> serde_json::Value {
    v12_message(
        "group",
        "10001",
        json!({"message_id": format!("load-{i}"), "group_id": "30003", "user_id": "20002",
               "message": [{"type": "text", "data": {"text": "hello [world] & friends"}},
                           {"type": "mention", "data": {"user_id": "10001"}}]}),
    )
}

async fn run(n: usize, full: bool) {
    let backend = FakeBackend::start(BackendOptions { concurrent: true, ..Default::default() }).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let addr = bridge.ws_addrs()[0];

    // Events, backend → bot.
    let mut bot = Bot::connect(addr, "/", None).await.expect("connect");
    bot.next_event().await;
    let started = Instant::now();
    let mut sent = 0;
    let mut received = 0;
    while received < n {
        while sent < n && sent - received < WINDOW {
            backend.push(message(sent));
            sent += 1;
        }
        let ev = bot.next_event().await;
        assert_eq!(ev["post_type"], "message");
        received += 1;
    }
    let events_per_s = n as f64 / started.elapsed().as_secs_f64();

    // Actions, bots → backend → bots.
    let mut bots = Vec::new();
    for _ in 0..BOTS {
        let mut b = Bot::connect(addr, "/api", None).await.expect("connect");
        let _ = tokio::time::timeout(Duration::from_millis(200), b.next_frame()).await;
        bots.push(b);
    }
    let per_bot = n / BOTS;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut b in bots {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_bot);
            for i in 0..per_bot {
                let t = Instant::now();
                let answer = b
                    .call("send_group_msg", json!({"group_id": 30003, "message": format!("[CQ:face,id=1] reply {i}")}))
                    .await;
                assert_eq!(answer["status"], "ok", "{answer}");
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("bot task"));
    }
    let actions_per_s = latencies.len() as f64 / started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "load ({}): events {:.0}/s; send_group_msg {:.0}/s with {BOTS} in flight, latency p50 {:?} p99 {:?}",
        if full { "full" } else { "smoke" },
        events_per_s,
        actions_per_s,
        pct(0.50),
        pct(0.99)
    );
    bridge.stop().await;
}
