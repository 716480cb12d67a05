//! The id stores at 1 000 000 stored message ids, in one process and one run: the persistent
//! store (redb) and the Redis store (`--store redis://…`), each measured on the same operations:
//! looking up a stored message id and a surrogate both ways, and new message ids one at a time
//! and 64 at once (each answered only after its commit: redb's durable commit, Redis's answer
//! to the script). Then the in-memory store (`--ephemeral`) at its default bounds, where every
//! new id forgets the oldest. The process's resident memory is printed after each part, and
//! Redis's own memory after it is filled.
//!
//! Redis is a `redis-server` the bench starts itself (`support/redis.rs`) on a loopback port,
//! with a fresh temporary directory and the persistence `docs/replicas.md` recommends:
//! `--save "" --appendonly yes --appendfsync everysec` (the append-only file synced once a
//! second, so a claim does not wait for a sync). It is filled anew each run over its socket,
//! through the store's own claims (40 to 55 s for a million), and killed at the end.
//! Without `redis-server` on `PATH` the Redis part is skipped, and the bench says so.
//!
//! Run: `cargo bench --bench store -- --warm-up-time 1 --measurement-time 5`.
//! The first run fills `target/bench-store/bridge.redb` with 1 M message ids (about a minute);
//! later runs reuse it.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::executor::block_on;
use onebot_bridge::core::ids::{IdMapper, IdStore, MessageKey, MessageRecord, StoredMessage};
use onebot_bridge::core::message::Segment;
use onebot_bridge::core::MemoryIdStore;
use onebot_bridge::store::{DiskStore, RedisStore, Retention, Store};

#[path = "../tests/support/ports.rs"]
mod ports;
#[path = "support/redis.rs"]
mod redis_server;

use redis_server::RedisServer;

/// Message ids in the store while measuring. `cargo test --all-targets` runs this file once as a
/// smoke test (without `--bench`): then a small throw-away store is used instead.
fn stored() -> u64 {
    if measuring() {
        1_000_000
    } else {
        2_000
    }
}

/// Surrogates (non-numeric user ids) in each store while measuring.
fn stored_surrogates() -> u64 {
    if measuring() {
        10_000
    } else {
        200
    }
}

fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn record(i: u64) -> MessageRecord {
    MessageRecord {
        key: MessageKey { self_id: "10001".into(), message_id: format!("m-{i:08}").into() },
        detail_type: "group".into(),
        group_id: Some(format!("{}", 40000 + i % 500).into()),
        user_id: Some(format!("{}", 20000 + i % 5000).into()),
        content: None,
    }
}

fn dir() -> PathBuf {
    if measuring() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-store")
    } else {
        let d = std::env::temp_dir().join(format!("ob-bench-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}

/// A non-numeric user id, as a WeChat-like backend gives: the store gives it a surrogate.
fn user(i: u64) -> String {
    format!("wxid_{i:010x}")
}

fn retention() -> Retention {
    Retention { max_messages: stored() * 2, ..Default::default() }
}

/// What the operations are measured on: the mapper over a filled store, a sample of its stored
/// message ids and of its surrogates.
struct Filled {
    ids: Arc<IdMapper<Store>>,
    messages: Vec<i32>,
    surrogates: Vec<i64>,
}

/// Brings the store behind `ids` from `have` to [`stored()`] message ids and [`stored_surrogates()`]
/// surrogates (up to 4 096 claims in flight at once: redb shares its commits among them, Redis
/// pipelines them on its connection); then samples what it holds.
fn fill(rt: &tokio::runtime::Runtime, ids: Arc<IdMapper<Store>>, have: u64, what: &str) -> Filled {
    if have < stored() {
        eprintln!("filling the {what}: {have} → {} message ids", stored());
        let started = Instant::now();
        rt.block_on(async {
            let mut next = have;
            while next < stored() {
                let end = (next + 4096).min(stored());
                let mut tasks = Vec::new();
                for i in next..end {
                    let ids = ids.clone();
                    tasks.push(tokio::spawn(async move { ids.message_to_v11(&record(i)).await.expect("assign") }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
                next = end;
            }
        });
        eprintln!("filled in {:.1} s", started.elapsed().as_secs_f64());
    }
    // Surrogates: assigned on the first run, looked up on later ones.
    let surrogates = rt.block_on(async {
        let tasks: Vec<_> = (0..stored_surrogates())
            .map(|i| {
                let ids = ids.clone();
                tokio::spawn(async move { ids.to_v11(&user(i)).await.expect("surrogate") })
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    // A sample of stored ids to look up.
    let messages = rt.block_on(async {
        let mut out = Vec::new();
        for i in (0..stored()).step_by(997).take(1000) {
            out.push(ids.message_to_v11(&record(i)).await.expect("stored"));
        }
        out
    });
    Filled { ids, messages, surrogates }
}

/// Opens the disk store, filling it to 1 M message ids on first use.
fn disk_filled(rt: &tokio::runtime::Runtime) -> Filled {
    let store = DiskStore::open(&dir(), retention()).expect("open the bench store");
    let have = store.message_count().expect("count");
    fill(rt, Arc::new(IdMapper::new(Store::Disk(store))), have, "bench store")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let filled = disk_filled(&rt);
    eprintln!("the disk store open with {} message ids: {}", stored(), rss());
    measure(c, "store_1m", &rt, &filled);
    eprintln!("after the disk store's benchmarks: {}", rss());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The same operations on every persistent store, as group `name`.
fn measure(c: &mut Criterion, name: &str, rt: &tokio::runtime::Runtime, filled: &Filled) {
    let Filled { ids, messages: sample, surrogates } = filled;
    let mut fresh = stored() * 10 + rand_offset();

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.bench_function("message_lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % sample.len();
            black_box(rt.block_on(ids.message_to_v12(sample[i] as i64)).expect("found"));
        })
    });
    g.bench_function("message_id_of_known_key", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % stored();
            black_box(rt.block_on(ids.message_to_v11(&record(i))).expect("found"));
        })
    });
    g.bench_function("surrogate_lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % surrogates.len();
            black_box(rt.block_on(ids.to_v12(surrogates[i])).expect("found"));
        })
    });
    g.bench_function("surrogate_of_known_id", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % stored_surrogates();
            black_box(rt.block_on(ids.to_v11(&user(i))).expect("found"));
        })
    });
    g.bench_function("message_new_one_at_a_time", |b| {
        b.iter(|| {
            fresh += 1;
            black_box(rt.block_on(ids.message_to_v11(&record(fresh))).expect("assigned"));
        })
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("message_new_64_concurrent", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = fresh;
                fresh += 64;
                let ids = ids.clone();
                let t = Instant::now();
                rt.block_on(async move {
                    let tasks: Vec<_> = (start..start + 64)
                        .map(|i| {
                            let ids = ids.clone();
                            tokio::spawn(async move { ids.message_to_v11(&record(i)).await.expect("assigned") })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("task");
                    }
                });
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

// ---- the Redis store (`--store redis://…`) -----------------------------------------------------

fn redis(c: &mut Criterion) {
    let Some(server) = RedisServer::start("store") else {
        eprintln!("store bench: the Redis part is skipped: {}", redis_server::MISSING);
        return;
    };
    let rt = runtime();
    let store = rt
        .block_on(RedisStore::connect_with_prefix(&server.url(), "bench:", retention()))
        .expect("connect to the bench's redis-server");
    let empty = server.used_memory();
    let filled = fill(&rt, Arc::new(IdMapper::new(Store::Redis(store))), 0, "Redis store");
    let used = server.used_memory().saturating_sub(empty);
    eprintln!(
        "Redis holds {} message ids and {} surrogates in {:.1} MiB of its memory (about {} bytes each)",
        stored(),
        stored_surrogates(),
        used as f64 / (1 << 20) as f64,
        used / (stored() + stored_surrogates())
    );
    measure(c, "redis_1m", &rt, &filled);
    // The mapper's connection goes before the server does.
    drop(filled);
    drop(rt);
    drop(server);
}

/// This process's resident memory now and at its peak, from `/proc/self/status`.
fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        let kib: u64 = status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        format!("{:.1} MiB", kib as f64 / 1024.0)
    };
    format!("RSS {}, peak {}", field("VmRSS:"), field("VmHWM:"))
}

// ---- the in-memory store (`--ephemeral`) ------------------------------------------------------

/// Messages put in the memory store before measuring (its bounds then forget one per new id).
fn memory_filled() -> u64 {
    if measuring() {
        200_000
    } else {
        2_000
    }
}

/// A received group message as the event path records it: two segments, a sender.
fn received(i: u64) -> MessageRecord {
    let mut r = record(i);
    r.key.message_id = format!("a1b2c3d4-{i:012x}").into();
    r.content = Some(StoredMessage {
        time: 1_700_000_000 + i as i64,
        segments: vec![
            Segment::text(format!("hello [world] & friends, message {i}")),
            Segment::new("at").with("qq", "10001"),
        ],
        sender_id: 20000 + (i % 5000) as i64,
        sender_name: "someone".into(),
    });
    r
}

fn memory_store() -> MemoryIdStore {
    MemoryIdStore::default()
}

fn memory(c: &mut Criterion) {
    let ids = IdMapper::new(memory_store());
    for i in 0..memory_filled() {
        block_on(ids.message_to_v11(&received(i))).expect("assign");
    }
    let mut next = memory_filled();
    let mut g = c.benchmark_group("memory_store");
    g.throughput(Throughput::Elements(1));
    // Each new id also forgets the oldest one (the store is at its bound).
    g.bench_function("message_new_with_content", |b| {
        b.iter_custom(|iters| {
            let inputs: Vec<MessageRecord> = (next..next + iters).map(received).collect();
            next += iters;
            let t = Instant::now();
            for r in inputs {
                black_box(block_on(ids.message_to_v11(black_box(&r))).expect("assigned"));
            }
            t.elapsed()
        })
    });
    // The newest messages (every one of them still remembered), read back whole.
    let span = memory_filled().min(10_000);
    let key = |i: u64| MessageKey { self_id: "10001".into(), message_id: format!("a1b2c3d4-{i:012x}").into() };
    let sample: Vec<i32> = (next - span..next)
        .step_by(7)
        .map(|i| block_on(ids.store().message_id_of(&key(i))).expect("store").expect("remembered"))
        .collect();
    g.bench_function("message_lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % sample.len();
            black_box(block_on(ids.message_to_v12(sample[i] as i64)).expect("remembered"));
        })
    });
    g.bench_function("message_id_of_known_key", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 7919) % span;
            black_box(block_on(ids.store().message_id_of(&key(next - 1 - i))).expect("store"));
        })
    });
    g.finish();
    eprintln!(
        "memory store: {} messages in {} estimated bytes; {}",
        ids.store().message_count(),
        ids.store().message_bytes(),
        rss()
    );
}

/// Keeps repeated runs from re-using the previous run's "new" ids.
fn rand_offset() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() % 1_000_000 * 1000)
        .unwrap_or(0)
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = bench, redis, memory
}
criterion_main!(benches);
