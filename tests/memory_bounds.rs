//! The bridge's memory stays bounded however long it runs and however many bots connect: the
//! bridge binary runs as its own process between the scripted backend and scripted bots, and its
//! resident set (`VmRSS` in `/proc/<pid>/status`) is read between phases.
//!
//! RSS is noisy (allocator arenas, pages freed but kept), so every assertion has a wide margin
//! and compares against what the unbounded bridge used to take (~3 KB per remembered message,
//! ~135 KB per idle WebSocket connection): a regression is an order of magnitude, not a percent.
//! Nothing is timed.
//!
//! The long runs behind the README figures are ignored by default:
//! `cargo test --release --test memory_bounds -- --ignored --nocapture`.

mod support;

use std::net::SocketAddr;

use serde_json::{json, Value};
use support::*;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// 64 MB, the event path's memory ceiling (`docs/limits.md#memory`), in KiB.
const SIXTY_FOUR_MB: u64 = 64_000_000 / 1024;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The bridge binary with one v11 forward-WebSocket server, dialing `backend`; the first bot is
/// connected (so the backend's account is online) and has read its lifecycle event.
async fn bridge(backend: &FakeBackend, args: &[&str]) -> (ChildGuard, u32, SocketAddr, Bot) {
    let port = free_port();
    let ws = format!("127.0.0.1:{port}");
    let url = backend.url();
    let mut all = vec!["--backend-ws", url.as_str(), "--ws", &ws, "--log", "warn"];
    all.extend_from_slice(args);
    let child = spawn_bridge(&all);
    let pid = child.0.id();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bot = Bot::connect_when_up(addr).await;
    (child, pid, addr, bot)
}

/// Events in flight at once (below the bridge's per-connection queue of 1024: nothing dropped).
const WINDOW: u64 = 256;

/// The backend's message ids.
#[derive(Clone, Copy)]
enum Ids {
    /// `m-000000001`, `m-000000002`, …: each lands after the last in the disk store's tables.
    Sequential,
    /// 32 hex digits, as from a backend that uses UUIDs: each lands at a random place.
    Random,
    /// Sequential message ids, each from a user never seen before, with a non-numeric id (a
    /// surrogate each).
    NewUsers,
}

impl Ids {
    fn message(self, n: u64) -> String {
        match self {
            Ids::Sequential | Ids::NewUsers => format!("m-{n:09}"),
            Ids::Random => format!("{:016x}{:016x}", mix(n), mix(!n)),
        }
    }

    fn user(self, n: u64) -> String {
        match self {
            Ids::NewUsers => format!("wxid_{n:09}"),
            Ids::Sequential | Ids::Random => "20002".into(),
        }
    }
}

/// A well-mixed 64-bit value of `n` (splitmix64's finaliser).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The backend sends group messages `from..to` (two segments each), the bot reads every one;
/// gives the first and the last as the bot read them.
async fn relay(backend: &FakeBackend, bot: &mut Bot, ids: Ids, from: u64, to: u64) -> (Value, Value) {
    relay_texts(backend, bot, ids, "", from, to).await
}

/// [`relay`], each message's text `filler` longer.
async fn relay_texts(
    backend: &FakeBackend,
    bot: &mut Bot,
    ids: Ids,
    filler: &str,
    from: u64,
    to: u64,
) -> (Value, Value) {
    let mut sent = from;
    let mut given = Vec::new();
    for received in from..to {
        while sent < to && sent - received < WINDOW {
            backend.push(v12_message(
                "group",
                "10001",
                json!({"message_id": ids.message(sent), "group_id": "30003", "user_id": ids.user(sent),
                       "message": [{"type": "text", "data": {"text": format!("hello [world] & friends, message {sent}{filler}")}},
                                   {"type": "mention", "data": {"user_id": "10001"}}]}),
            ));
            sent += 1;
        }
        let ev = bot.next_event().await;
        assert_eq!(ev["post_type"], "message", "{ev}");
        if received == from || received + 1 == to {
            given.push(ev);
        }
    }
    let last = given.pop().unwrap();
    (given.pop().unwrap_or_else(|| last.clone()), last)
}

/// The bridge with `--ephemeral --memory-store-bytes 1048576` relays `filled` events (enough to
/// reach the bound), then `filled..to`; RSS may grow by at most `slack_kib` over the second part.
/// Gives the backend, the bot, and the first and last events the bot read.
async fn past_the_bound(
    ids: Ids,
    filled: u64,
    to: u64,
    slack_kib: u64,
) -> (FakeBackend, ChildGuard, Bot, Value, Value) {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (child, pid, _, mut bot) =
        bridge(&backend, &["--ephemeral", "--memory-store-bytes", "1048576", "--heartbeat-interval", "0"]).await;
    let (first, _) = relay(&backend, &mut bot, ids, 0, filled).await;
    let full = rss_kib(pid);
    let (_, last) = relay(&backend, &mut bot, ids, filled, to).await;
    let after = rss_kib(pid);
    println!(
        "ephemeral store bounded at 1 MiB: RSS {:.1} MiB after {filled} events, {:.1} MiB after {to}",
        mib(full),
        mib(after)
    );
    assert!(after.saturating_sub(full) < slack_kib, "RSS grew {} KiB after the bound was reached", after - full);
    (backend, child, bot, first, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ephemeral_store_stops_growing_at_its_byte_bound() {
    // A few thousand messages fill 1 MiB; then the store forgets as fast as it learns. 18 000
    // more messages kept whole would be ~50 MiB more; forgotten ones cost nothing.
    let (_backend, _child, mut bot, first, last) = past_the_bound(Ids::Sequential, 6_000, 24_000, 8 << 10).await;

    let forgotten = bot.call("get_msg", json!({"message_id": first["message_id"]})).await;
    assert_eq!(forgotten["status"], "failed", "{forgotten}");
    assert!(forgotten["wording"].as_str().unwrap().contains("unknown to this bridge"), "{forgotten}");
    let kept = bot.call("get_msg", json!({"message_id": last["message_id"]})).await;
    assert_eq!(kept["status"], "ok", "{kept}");
    assert_eq!(kept["data"]["message"], "hello &#91;world&#93; &amp; friends, message 23999[CQ:at,qq=10001]");
}

/// A backend that sends a new user with every event: the surrogates stop growing at their own
/// bound (a quarter of `memory-store-bytes`), a user seen lately is still known both ways, and
/// one forgotten is refused clearly, then given the same number when seen again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ephemeral_stores_surrogates_stop_growing_at_their_bound() {
    // 256 KiB is under two thousand of these users (and a few thousand messages fill 1 MiB).
    // 30 000 more users kept made RSS 3.4 MiB larger; forgotten ones cost nothing.
    let (mut backend, _child, mut bot, first, last) = past_the_bound(Ids::NewUsers, 10_000, 40_000, 2 << 10).await;

    backend.drain_requests();
    let sent = bot.call("send_private_msg", json!({"user_id": last["user_id"], "message": "hi"})).await;
    assert_eq!(sent["status"], "ok", "{sent}");
    let request = backend.next_request().await;
    assert_eq!(request["params"]["user_id"], "wxid_000039999", "{request}");

    let forgotten = bot.call("send_private_msg", json!({"user_id": first["user_id"], "message": "hi"})).await;
    assert_eq!(forgotten["status"], "failed", "{forgotten}");
    assert!(forgotten["wording"].as_str().unwrap().contains("unknown to this bridge"), "{forgotten}");
    backend.push(v12_message(
        "private",
        "10001",
        json!({"message_id": "back", "user_id": "wxid_000000000", "message": [{"type": "text", "data": {"text": "back"}}]}),
    ));
    let back = bot.next_event().await;
    assert_eq!(back["user_id"], first["user_id"], "the same number again: {back}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_bot_connections_take_a_few_kib_each() {
    const BOTS: u64 = 1000;
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (_child, pid, addr, _first) = bridge(&backend, &["--ephemeral"]).await;
    let before = rss_kib(pid);
    let mut bots = Vec::new();
    for _ in 0..BOTS {
        let mut bot = Bot::connect(addr, "/", None).await.expect("connect");
        assert_eq!(bot.next_frame().await["sub_type"], "connect");
        bots.push(bot);
    }
    let after = rss_kib(pid);
    let each = after.saturating_sub(before) as f64 / BOTS as f64;
    println!(
        "{BOTS} idle bot connections: RSS {:.1} MiB before, {:.1} MiB after ({each:.1} KiB each)",
        mib(before),
        mib(after)
    );
    // tungstenite's default buffers made this ~135 KiB each.
    assert!(each < 32.0, "{each:.1} KiB per idle connection");
    assert!(after < SIXTY_FOUR_MB, "RSS {} KiB with {BOTS} idle connections", after);
}

/// A backend and the bridge in front of it with a 1 MiB in-memory store and no heartbeats, its
/// first bot connected: what the bridge holds is then mostly the events in question.
async fn small_ephemeral_bridge() -> (FakeBackend, ChildGuard, u32, SocketAddr, Bot) {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (child, pid, addr, bot) =
        bridge(&backend, &["--ephemeral", "--memory-store-bytes", "1048576", "--heartbeat-interval", "0"]).await;
    (backend, child, pid, addr, bot)
}

/// A bot that stops reading holds back at most `EVENT_QUEUE_BYTES` of its account's events (64
/// MiB by their weight, `src/hub.rs`), not `event_queue` (1 024) of them whatever their size.
/// 120 messages of 1 MiB of text each (about 3 MiB each as the bridge holds them: segments,
/// `raw_message`, the JSON) would be 360 MiB held for it; a bot that reads on gets every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_stops_reading_holds_back_a_bounded_number_of_bytes() {
    const EVENTS: usize = 120;
    let (backend, _child, pid, addr, mut fast) = small_ephemeral_bridge().await;
    let mut slow = Bot::connect(addr, "/", None).await.unwrap();
    let text = "x".repeat(1 << 20);
    for n in 0..EVENTS {
        backend.push(v12_message(
            "group",
            "10001",
            json!({"message_id": format!("big-{n}"), "group_id": "30003", "user_id": "20002",
                   "message": [{"type": "text", "data": {"text": format!("{n}:{text}")}}]}),
        ));
        let ev = fast.next_event().await;
        assert!(ev["raw_message"].as_str().unwrap().starts_with(&format!("{n}:")), "event {n} out of order");
    }
    let peak = status_kib(pid, "VmHWM:");
    println!("a bot not reading {EVENTS} events of 1 MiB: peak RSS {:.1} MiB", mib(peak));
    assert!(peak < 200 << 10, "RSS peaked at {:.1} MiB", mib(peak));
    // The bot that stopped reading gets what reached its socket, then the newest the bridge kept.
    let mut read = Vec::new();
    while read.last() != Some(&(EVENTS - 1)) {
        let ev = slow.next_event().await;
        if ev["post_type"] != "message" {
            continue;
        }
        let raw = ev["raw_message"].as_str().unwrap();
        read.push(raw[..raw.find(':').unwrap()].parse::<usize>().unwrap());
    }
    assert!(read.len() < EVENTS, "the slow bot lost none: {read:?}");
    assert!(read.windows(2).all(|w| w[0] < w[1]), "in order: {read:?}");
}

/// A backend that names a new bot account in every event, with no bot connected for any of
/// them: what the accounts keep for connections to come is bounded all together (128 MiB by
/// weight, `src/hub.rs`), not 256 events per account. 800 messages of 256 KiB from as many
/// accounts weigh 600 MiB; every one of them was kept for a minute before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_kept_for_many_accounts_without_a_bot_are_bounded_together() {
    const EVENTS: usize = 800;
    let (backend, _child, pid, _addr, mut bot) = small_ephemeral_bridge().await;
    let text = "x".repeat(256 << 10);
    for n in 0..EVENTS {
        backend.push(v12_message(
            "group",
            &format!("{}", 50_000 + n),
            json!({"message_id": format!("m-{n}"), "group_id": "30003", "user_id": "20002",
                   "message": [{"type": "text", "data": {"text": format!("{n}:{text}")}}]}),
        ));
    }
    // The connected bot's account last: its event comes once every other one is kept or dropped.
    backend.push(v12_message(
        "group",
        "10001",
        json!({"message_id": "last", "group_id": "30003", "user_id": "20002",
               "message": [{"type": "text", "data": {"text": "last"}}]}),
    ));
    loop {
        let ev = bot.next_event().await;
        if ev["raw_message"] == "last" {
            break;
        }
    }
    let peak = status_kib(pid, "VmHWM:");
    println!("{EVENTS} events of 256 KiB for as many accounts, no bot: peak RSS {:.1} MiB", mib(peak));
    assert!(peak < 200 << 10, "RSS peaked at {:.1} MiB", mib(peak));
}

/// The README's figures: RSS after many events, in the default (disk) and `--ephemeral` stores,
/// read after each tenth of the run. Returns the readings and the peak (`VmHWM`), in KiB.
async fn rss_after_events(args: &[&str], ids: Ids, total: u64) -> (Vec<u64>, u64) {
    rss_after_texts(args, ids, "", total).await
}

/// [`rss_after_events`], each message's text `filler` longer.
async fn rss_after_texts(args: &[&str], ids: Ids, filler: &str, total: u64) -> (Vec<u64>, u64) {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let (_child, pid, _, mut bot) = bridge(&backend, args).await;
    let mut done = 0;
    let mut readings = Vec::new();
    for checkpoint in (1..=10).map(|tenth| total * tenth / 10) {
        relay_texts(&backend, &mut bot, ids, filler, done, checkpoint).await;
        done = checkpoint;
        let rss = rss_kib(pid);
        readings.push(rss);
        println!("{args:?}: RSS {:.1} MiB after {done} events", mib(rss));
    }
    let peak = status_kib(pid, "VmHWM:");
    println!("{args:?}: peak RSS {:.1} MiB", mib(peak));
    (readings, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long run for the README's figures"]
async fn rss_after_a_million_events_with_the_disk_store() {
    rss_after_a_million_events_on_disk(Ids::Sequential).await;
}

/// Random message ids make the disk store's folder the slowest stage, so the ids not yet in
/// redb stay at their bound, and every fold touches pages all over the key table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long run for the README's figures"]
async fn rss_after_a_million_events_with_random_ids_on_disk() {
    rss_after_a_million_events_on_disk(Ids::Random).await;
}

/// A new user with every event: a surrogate each, whose rows and digests wait in memory for
/// their sorted batch (`store/disk/folder.rs`), on top of the messages' own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long run for the README's figures"]
async fn rss_after_a_million_events_from_new_users_on_disk() {
    rss_after_a_million_events_on_disk(Ids::NewUsers).await;
}

async fn rss_after_a_million_events_on_disk(ids: Ids) {
    let peak = peak_on_disk(ids, "", 1_000_000).await;
    assert!(peak < SIXTY_FOUR_MB, "RSS peaked at {peak} KiB over a million events");
}

/// Long messages (4 KiB of text each, a long chat message): what waits for redb is bounded in
/// bytes as well as in entries (`store/disk/mod.rs`, `MAX_UNFOLDED_BYTES`). At the entries'
/// bound alone, 16 384 such rows were about 70 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long run for the README's figures"]
async fn rss_after_long_messages_on_disk() {
    let mut filler = String::new();
    for c in " 今天的会议改到下午三点 [meeting moved] & see you".chars().cycle() {
        if filler.len() >= 4096 {
            break;
        }
        filler.push(c);
    }
    let peak = peak_on_disk(Ids::Sequential, &filler, 300_000).await;
    assert!(peak < SIXTY_FOUR_MB, "RSS peaked at {peak} KiB over 300 000 long messages");
}

/// The peak RSS of the bridge on its disk store over `total` events, in KiB.
async fn peak_on_disk(ids: Ids, filler: &str, total: u64) -> u64 {
    // Memory does not depend on the disk; a RAM-backed directory keeps fsync from setting the pace.
    let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    let dir = base.join(format!("ob-memory-bounds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = ["--data-dir", dir.to_str().unwrap(), "--heartbeat-interval", "0"];
    let (_, peak) = rss_after_texts(&args, ids, filler, total).await;
    let _ = std::fs::remove_dir_all(&dir);
    peak
}

/// The default `--ephemeral` store (32 MiB) is full after about 190 000 of these messages. Its
/// hash tables then double once more (forgotten entries leave tombstones, which a table more than
/// half full clears by growing) and the allocator settles on the churn; from about 500 000 events
/// RSS stays where it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long run for the README's figures"]
async fn rss_is_flat_over_a_million_events_with_the_ephemeral_store() {
    let (rss, _) = rss_after_events(&["--ephemeral", "--heartbeat-interval", "0"], Ids::Sequential, 1_000_000).await;
    let (settled, last) = (rss[5], rss[9]);
    // The binary's base (~16 MiB), the 32 MiB bound, the tables' spare capacity (up to half the
    // bound, `tests/memory_store_heap.rs`) and the allocator's slack.
    assert!(last < 80 << 10, "RSS {last} KiB after a million events");
    // 400 000 messages after the store settled, every one of them remembered and forgotten again.
    assert!(last.saturating_sub(settled) < 4 << 10, "RSS grew from {settled} to {last} KiB with the store full");
}
