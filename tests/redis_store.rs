//! The Redis id store against a real `redis-server`: the `IdStore` semantics, several bridges
//! (tasks and processes) numbering the same ids at once, retention by count and by age, and a
//! server that stops and comes back.
//!
//! Every test starts a server of its own (see `support/redis.rs`), so they run in parallel.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use onebot_bridge::core::ids::{
    surrogate_candidate, Claim, Found, IdError, IdMapper, IdStore, MessageKey, MessageRecord, StoredMessage,
};
use onebot_bridge::core::message::Segment;
use onebot_bridge::store::redis::OP_TIMEOUT;
use onebot_bridge::store::{RedisStore, Retention, Store};
use support::redis::RedisServer;

fn retention() -> Retention {
    Retention::default()
}

async fn store(server: &RedisServer, prefix: &str, retention: Retention) -> RedisStore {
    RedisStore::connect_with_prefix(&server.url(), prefix, retention).await.unwrap()
}

fn rec(self_id: &str, id: &str) -> MessageRecord {
    MessageRecord {
        key: MessageKey { self_id: self_id.into(), message_id: id.into() },
        detail_type: "group".into(),
        group_id: Some("g".into()),
        user_id: Some("u".into()),
        content: None,
    }
}

fn said(self_id: &str, id: &str, text: &str) -> MessageRecord {
    let mut r = rec(self_id, id);
    r.content = Some(StoredMessage {
        time: 1_700_000_000,
        segments: vec![Segment::text(text), Segment::new("face").with("id", 14).with("f", 0.5)],
        sender_id: 20002,
        sender_name: "名前".into(),
    });
    r
}

#[tokio::test]
async fn claims_lookups_and_records_keep_the_store_semantics() {
    let server = RedisServer::start();
    let s = store(&server, "t:", retention()).await;
    let n = surrogate_candidate("wxid_abc", 0);

    // Surrogates: insert, the same again, another id on a taken number, both directions.
    assert_eq!(s.surrogate_of("wxid_abc").await.unwrap(), None);
    assert_eq!(s.claim_surrogate(n, "wxid_abc").await.unwrap(), Claim::Inserted);
    assert_eq!(s.claim_surrogate(n, "wxid_abc").await.unwrap(), Claim::Taken("wxid_abc".into()));
    assert_eq!(s.claim_surrogate(n, "squatter").await.unwrap(), Claim::Taken("wxid_abc".into()));
    assert_eq!(s.surrogate_of("wxid_abc").await.unwrap(), Some(n));
    assert_eq!(s.surrogate_of("squatter").await.unwrap(), None);
    assert_eq!(s.v12_of_surrogate(n).await.unwrap().as_deref(), Some("wxid_abc"));
    assert_eq!(s.v12_of_surrogate(n + 1).await.unwrap(), None);
    // Any bytes a backend may use, a separator or Redis's own syntax included.
    for odd in ["", "a b\r\n*3\r\n", "名前\u{1f}x", "{tag}:*?"] {
        let m = surrogate_candidate(odd, 0);
        assert_eq!(s.claim_surrogate(m, odd).await.unwrap(), Claim::Inserted, "{odd:?}");
        assert_eq!(s.surrogate_of(odd).await.unwrap(), Some(m));
        assert_eq!(s.v12_of_surrogate(m).await.unwrap().as_deref(), Some(odd));
    }

    // Messages: the record round-trips, the key finds its number, another key is told the owner.
    let hello = said("10001", "m-1", "hello [CQ:face,id=1] &amp;");
    assert_eq!(s.claim_message(7, &hello).await.unwrap(), Claim::Inserted);
    assert_eq!(s.message_of(7).await.unwrap(), Some(hello.clone()));
    assert_eq!(s.message_id_of(&hello.key).await.unwrap(), Some(7));
    assert_eq!(s.claim_message(7, &hello).await.unwrap(), Claim::Taken(hello.key.clone()));
    let other = rec("10002", "m-1");
    assert_eq!(s.claim_message(7, &other).await.unwrap(), Claim::Taken(hello.key.clone()));
    assert_eq!(s.message_id_of(&other.key).await.unwrap(), None, "scoped by account");
    assert_eq!(s.message_of(8).await.unwrap(), None);
    // A key whose strings run into each other another way is another key.
    let split = rec("1000", "1m-1");
    assert_eq!(s.message_id_of(&split.key).await.unwrap(), None);

    // save_message replaces the same key's record, and only that.
    let seen_first = rec("10001", "ref");
    assert_eq!(s.claim_message(9, &seen_first).await.unwrap(), Claim::Inserted);
    let with_text = said("10001", "ref", &"long text ".repeat(200));
    s.save_message(9, &with_text).await.unwrap();
    assert_eq!(s.message_of(9).await.unwrap(), Some(with_text.clone()));
    s.save_message(9, &said("10002", "ref", "not mine")).await.unwrap();
    assert_eq!(s.message_of(9).await.unwrap(), Some(with_text));
    s.save_message(10, &said("10001", "nowhere", "no id")).await.unwrap();
    assert_eq!(s.message_of(10).await.unwrap(), None, "saving never issues a number");
}

#[tokio::test]
async fn find_or_claim_answers_in_one_step_what_lookup_and_claim_did() {
    let server = RedisServer::start();
    let s = store(&server, "t:", retention()).await;
    let other = store(&server, "t:", retention()).await;

    // Surrogates: claimed when new, found after (in this bridge's cache and in another's, from
    // Redis), and a taken number names its owner.
    let n = surrogate_candidate("wxid_abc", 0);
    assert_eq!(s.find_or_claim_surrogate(|| n, "wxid_abc").await.unwrap(), Found::Claimed(n, Claim::Inserted));
    let unused = || -> i64 { panic!("no candidate is needed for a known id") };
    assert_eq!(s.find_or_claim_surrogate(unused, "wxid_abc").await.unwrap(), Found::Known(n));
    assert_eq!(other.find_or_claim_surrogate(|| n + 1, "wxid_abc").await.unwrap(), Found::Known(n));
    assert_eq!(
        other.find_or_claim_surrogate(|| n, "squatter").await.unwrap(),
        Found::Claimed(n, Claim::Taken("wxid_abc".into()))
    );
    assert_eq!(other.v12_of_surrogate(n).await.unwrap().as_deref(), Some("wxid_abc"));

    // Messages: claimed when new; found with its content saved (keeping the first record's
    // place); a taken number names its owner; without content, a found record is left alone.
    let reference = rec("10001", "m-1");
    assert_eq!(s.find_or_claim_message(|| 7, &reference).await.unwrap(), Found::Claimed(7, Claim::Inserted));
    let with_text = said("10001", "m-1", "hello");
    assert_eq!(other.find_or_claim_message(|| 8, &with_text).await.unwrap(), Found::Known(7));
    assert_eq!(s.message_of(7).await.unwrap(), Some(with_text.clone()));
    assert_eq!(s.message_of(8).await.unwrap(), None, "a found message claims nothing");
    assert_eq!(s.find_or_claim_message(|| 9, &reference).await.unwrap(), Found::Known(7));
    assert_eq!(s.message_of(7).await.unwrap(), Some(with_text.clone()), "the content stays");
    assert_eq!(
        s.find_or_claim_message(|| 7, &rec("10002", "m-1")).await.unwrap(),
        Found::Claimed(7, Claim::Taken(with_text.key.clone()))
    );
}

#[tokio::test]
async fn the_id_mapper_over_redis_agrees_across_bridges() {
    let server = RedisServer::start();
    let a = IdMapper::new(Store::Redis(store(&server, "t:", retention()).await));
    let b = IdMapper::new(Store::Redis(store(&server, "t:", retention()).await));

    let user = a.to_v11("wxid_abc").await.unwrap();
    assert_eq!(user, surrogate_candidate("wxid_abc", 0));
    assert_eq!(b.to_v11("wxid_abc").await.unwrap(), user, "the other bridge sees the same number");
    assert_eq!(b.to_v12(user).await.unwrap(), "wxid_abc");
    assert_eq!(a.to_v11("10001").await.unwrap(), 10001, "numeric ids need no store");
    // A squatted first candidate is probed past, the same way in both bridges.
    let wanted = surrogate_candidate("victim", 0);
    assert_eq!(a.store().claim_surrogate(wanted, "squatter").await.unwrap(), Claim::Inserted);
    let victim = b.to_v11("victim").await.unwrap();
    assert_eq!(victim, surrogate_candidate("victim", 1));
    assert_eq!(a.to_v11("victim").await.unwrap(), victim);
    assert!(matches!(a.to_v12(wanted + 1).await, Err(IdError::UnknownSurrogate(_))));

    // Message ids: positive int32, numeric ones kept, known to the other bridge, content later.
    let m = a.message_to_v11(&rec("bot", "abc-def")).await.unwrap();
    assert!(m > 0);
    assert_eq!(b.message_to_v11(&rec("bot", "abc-def")).await.unwrap(), m);
    assert_eq!(a.message_to_v11(&rec("bot", "12345")).await.unwrap(), 12345);
    let clash = b.message_to_v11(&rec("bot2", "12345")).await.unwrap();
    assert!(clash > 0 && clash != 12345, "another account's 12345 is probed past");
    b.message_to_v11(&said("bot", "abc-def", "now with text")).await.unwrap();
    assert_eq!(a.message_to_v12(m as i64).await.unwrap(), said("bot", "abc-def", "now with text"));
    assert!(matches!(a.message_to_v12(-5).await, Err(IdError::UnknownMessage(-5))));
}

/// A bridge whose next lookup of a message misses although the message has a number: what it
/// sees when another bridge claims the message between its lookup and its claim.
struct RacedLookup {
    inner: RedisStore,
    miss_next: std::sync::atomic::AtomicBool,
}

impl IdStore for RacedLookup {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        self.inner.surrogate_of(v12).await
    }
    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        self.inner.claim_surrogate(n, v12).await
    }
    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        self.inner.v12_of_surrogate(n).await
    }
    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        if self.miss_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Ok(None);
        }
        self.inner.message_id_of(key).await
    }
    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        self.inner.claim_message(n, record).await
    }
    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        self.inner.message_of(n).await
    }
    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        self.inner.save_message(n, record).await
    }
}

#[tokio::test]
async fn content_survives_another_bridge_claiming_the_message_first_without_it() {
    let server = RedisServer::start();
    let a = IdMapper::new(Store::Redis(store(&server, "t:", retention()).await));
    let b = IdMapper::new(RacedLookup { inner: store(&server, "t:", retention()).await, miss_next: false.into() });
    for id in ["12345", "abc-def"] {
        // Bridge a sees the message as a reply target; b received it, and looked it up before a's claim.
        let n = a.message_to_v11(&rec("bot", id)).await.unwrap();
        b.store().miss_next.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(b.message_to_v11(&said("bot", id, "the text")).await.unwrap(), n, "{id}");
        assert_eq!(a.message_to_v12(n as i64).await.unwrap(), said("bot", id, "the text"), "{id}");
    }
}

/// Set in the child process of [`eight_assigners_in_two_processes_give_each_id_one_number`].
const CHILD_URL: &str = "OB_REDIS_TEST_ASSIGNER_URL";
const CHILD_START: &str = "OB_REDIS_TEST_ASSIGNER_START_MS";
const USERS: usize = 10_000;
const MESSAGES: usize = 2_000;
/// Assigners in each of the two processes.
const ASSIGNERS: usize = 4;
const PREFIX: &str = "race:";

fn user(i: usize) -> String {
    format!("wxid_{i:05}")
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// What one process's assigners got: (assigner, "u" or "m", index, v11 number), plus the
/// process's first and last moment of work (ms since the epoch).
struct Assigned {
    rows: Vec<(String, String, usize, i64)>,
    span: (u64, u64),
}

/// [`ASSIGNERS`] bridges (each its own connection and mapper) numbering every user and
/// message, each in its own order, 16 calls at a time, from `start_ms` on.
async fn run_assigners(url: &str, start_ms: u64, who: &str) -> Assigned {
    let mut mappers = Vec::new();
    for _ in 0..ASSIGNERS {
        let s = RedisStore::connect_with_prefix(url, PREFIX, Retention::default()).await.unwrap();
        mappers.push(Arc::new(IdMapper::new(s)));
    }
    tokio::time::sleep(Duration::from_millis(start_ms.saturating_sub(unix_ms()))).await;
    let began = unix_ms();
    let mut tasks = Vec::new();
    for (k, ids) in mappers.into_iter().enumerate() {
        let name = format!("{who}{k}");
        tasks.push(tokio::spawn(async move {
            // Each assigner walks the ids with its own stride, so they meet in every order.
            let stride = [1, 7, 13, 9_999, 3, 11, 17, 9_997][k % 8];
            let order = (0..USERS).map(move |i| (i * stride) % USERS);
            let mut rows: Vec<_> = stream::iter(order)
                .map(|i| {
                    let ids = ids.clone();
                    async move { (String::from("u"), i, ids.to_v11(&user(i)).await.unwrap()) }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            let order = (0..MESSAGES).map(move |i| (i * stride) % MESSAGES);
            let messages: Vec<_> = stream::iter(order)
                .map(|i| {
                    let ids = ids.clone();
                    async move {
                        let n = ids.message_to_v11(&rec("bot", &format!("m-{i}"))).await.unwrap();
                        (String::from("m"), i, n as i64)
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            rows.extend(messages);
            rows.into_iter().map(|(kind, i, n)| (name.clone(), kind, i, n)).collect::<Vec<_>>()
        }));
    }
    let mut rows = Vec::new();
    for t in tasks {
        rows.extend(t.await.unwrap());
    }
    Assigned { rows, span: (began, unix_ms()) }
}

/// The child half of the two-process test: runs its assigners and prints what they got as
/// JSON lines. Does nothing unless the parent test started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by eight_assigners_in_two_processes_give_each_id_one_number"]
async fn assigner_child_process() {
    let Ok(url) = std::env::var(CHILD_URL) else { return };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let got = run_assigners(&url, start, "child").await;
    // libtest has written "test … " with no newline before the test's own output.
    let mut out = String::from("\n");
    for (who, kind, i, n) in got.rows {
        out.push_str(&serde_json::json!({"who": who, "kind": kind, "i": i, "n": n}).to_string());
        out.push('\n');
    }
    out.push_str(&serde_json::json!({"span": [got.span.0, got.span.1]}).to_string());
    out.push('\n');
    print!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_assigners_in_two_processes_give_each_id_one_number() {
    let server = RedisServer::start();
    // Every tenth user's first candidate is taken already: those are probed past, in every
    // assigner alike.
    let setup = store(&server, PREFIX, retention()).await;
    for i in (0..USERS).step_by(10) {
        let squat = setup.claim_surrogate(surrogate_candidate(&user(i), 0), &format!("squatter-{i}")).await.unwrap();
        assert_eq!(squat, Claim::Inserted);
    }

    let start = unix_ms() + 1_500;
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "assigner_child_process", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD_URL, server.url())
        .env(CHILD_START, start.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let child = support::ChildGuard(child);
    let mine = run_assigners(&server.url(), start, "parent").await;
    let output = tokio::task::spawn_blocking(move || {
        let mut guard = child;
        let mut text = String::new();
        std::io::Read::read_to_string(guard.0.stdout.as_mut().unwrap(), &mut text).unwrap();
        assert!(guard.0.wait().unwrap().success(), "the child process failed");
        text
    })
    .await
    .unwrap();

    let mut rows = mine.rows;
    let mut child_span = None;
    for line in output.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(span) = v.get("span") {
            child_span = Some((span[0].as_u64().unwrap(), span[1].as_u64().unwrap()));
            continue;
        }
        rows.push((
            v["who"].as_str().unwrap().to_owned(),
            v["kind"].as_str().unwrap().to_owned(),
            v["i"].as_u64().unwrap() as usize,
            v["n"].as_i64().unwrap(),
        ));
    }
    let child_span = child_span.expect("the child reported its work");
    assert!(
        child_span.0 < mine.span.1 && mine.span.0 < child_span.1,
        "the two processes worked at the same time: parent {:?}, child {child_span:?}",
        mine.span
    );
    let assigners: HashSet<_> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(assigners.len(), 2 * ASSIGNERS);
    assert_eq!(rows.len(), 2 * ASSIGNERS * (USERS + MESSAGES));

    // Users: one number per id in every assigner, no number for two ids, the probe honoured.
    let mut number_of: HashMap<usize, i64> = HashMap::new();
    let mut owner_of: HashMap<i64, usize> = HashMap::new();
    for (who, _, i, n) in rows.iter().filter(|r| r.1 == "u") {
        let first = *number_of.entry(*i).or_insert(*n);
        assert_eq!(first, *n, "{} got two numbers ({who})", user(*i));
        let owner = *owner_of.entry(*n).or_insert(*i);
        assert_eq!(owner, *i, "{n} went to {} and {}", user(owner), user(*i));
    }
    assert_eq!(number_of.len(), USERS);
    for (i, n) in &number_of {
        let attempt = if i % 10 == 0 { 1 } else { 0 };
        assert_eq!(*n, surrogate_candidate(&user(*i), attempt), "{}", user(*i));
    }
    for i in (0..USERS).step_by(97) {
        assert_eq!(setup.v12_of_surrogate(number_of[&i]).await.unwrap(), Some(user(i)));
    }

    // Messages: one number each across both processes, no number for two messages, and every
    // number handed out leads to its message.
    let mut message_of: HashMap<i64, usize> = HashMap::new();
    let mut numbers_per_message: HashMap<usize, HashSet<i64>> = HashMap::new();
    for (_, _, i, n) in rows.iter().filter(|r| r.1 == "m") {
        assert!(*n > 0 && *n <= i32::MAX as i64);
        let owner = *message_of.entry(*n).or_insert(*i);
        assert_eq!(owner, *i, "message id {n} went to m-{owner} and m-{i}");
        numbers_per_message.entry(*i).or_default().insert(*n);
    }
    assert_eq!(numbers_per_message.len(), MESSAGES);
    for (n, i) in message_of.iter().step_by(7) {
        let got = setup.message_of(*n as i32).await.unwrap().expect("a number handed out is known");
        assert_eq!(got.key.message_id, format!("m-{i}"));
    }
    let twice: Vec<_> = numbers_per_message.iter().filter(|(_, s)| s.len() > 1).take(5).collect();
    assert!(twice.is_empty(), "messages with more than one number: {twice:?}");
}

#[tokio::test]
async fn message_ids_are_trimmed_by_count_and_expire_by_age() {
    let server = RedisServer::start();
    // By count: the newest ten stay, the others and both of their keys are gone.
    let by_count = Retention { max_messages: 10, max_age: Duration::from_secs(3600), ..Retention::default() };
    let ids = IdMapper::new(store(&server, "count:", by_count).await);
    let mut issued = Vec::new();
    for i in 0..30 {
        issued.push(ids.message_to_v11(&said("bot", &format!("m{i}"), "x")).await.unwrap());
    }
    assert_eq!(ids.store().message_count().await.unwrap(), 10);
    for (i, n) in issued.iter().enumerate() {
        let known = ids.store().message_of(*n).await.unwrap();
        let key = MessageKey { self_id: "bot".into(), message_id: format!("m{i}").into() };
        let number = ids.store().message_id_of(&key).await.unwrap();
        if i < 20 {
            assert_eq!((known, number), (None, None), "m{i} is forgotten both ways");
        } else {
            assert_eq!(known.map(|r| r.key), Some(key));
            assert_eq!(number, Some(*n));
        }
    }
    let keys = server.command(&["KEYS", "count:m*"]).unwrap();
    assert!(keys.starts_with("*21\r\n"), "ten msg, ten mkey and the set: {keys:?}");
    // A forgotten key is numbered again when seen again.
    let again = ids.message_to_v11(&rec("bot", "m0")).await.unwrap();
    assert!(ids.message_to_v12(again as i64).await.is_ok());

    // By age: gone after max_age, surrogates not.
    let by_age = Retention { max_messages: 1_000, max_age: Duration::from_secs(2), ..Retention::default() };
    let ids = IdMapper::new(store(&server, "age:", by_age).await);
    let user = ids.to_v11("wxid_keep").await.unwrap();
    let n = ids.message_to_v11(&said("bot", "short-lived", "x")).await.unwrap();
    let pttl = server.command(&["PTTL", &format!("age:msg:{n}")]).unwrap();
    let pttl: i64 = pttl.trim_start_matches(':').trim().parse().unwrap();
    assert!(pttl > 1_000 && pttl <= 2_000, "expires in {pttl} ms");
    assert!(ids.message_to_v12(n as i64).await.is_ok());
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert!(matches!(ids.message_to_v12(n as i64).await, Err(IdError::UnknownMessage(_))));
    let key = MessageKey { self_id: "bot".into(), message_id: "short-lived".into() };
    assert_eq!(ids.store().message_id_of(&key).await.unwrap(), None);
    assert_eq!(ids.to_v12(user).await.unwrap(), "wxid_keep", "surrogates never expire");
    // The next claim trims the expired entry from the set too.
    ids.message_to_v11(&rec("bot", "next")).await.unwrap();
    assert_eq!(ids.store().message_count().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_is_a_quick_clear_error_and_ids_survive_its_restart() {
    let mut server = RedisServer::start();
    let ids = Arc::new(IdMapper::new(store(&server, "t:", retention()).await));
    let mut users = Vec::new();
    let mut messages = Vec::new();
    for i in 0..200 {
        users.push(ids.to_v11(&format!("wxid_{i}")).await.unwrap());
        messages.push(ids.message_to_v11(&said("bot", &format!("m{i}"), &format!("text {i}"))).await.unwrap());
    }

    server.stop();
    // Claims and lookups in flight at once: every one fails, with the reason, within the bound.
    let started = Instant::now();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let ids = ids.clone();
            tokio::spawn(async move {
                match i % 3 {
                    0 => ids.to_v11(&format!("new_{i}")).await.map(|_| ()),
                    1 => ids.to_v12(surrogate_candidate(&format!("unseen_{i}"), 0)).await.map(|_| ()),
                    _ => ids.message_to_v11(&rec("bot", &format!("new-{i}"))).await.map(|_| ()),
                }
            })
        })
        .collect();
    for c in calls {
        let Err(IdError::Store(message)) = c.await.unwrap() else { panic!("a call succeeded with Redis down") };
        assert!(message.contains("Redis at redis://127.0.0.1:"), "{message}");
    }
    assert!(started.elapsed() < OP_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
    // Surrogates the server answered before are kept in the process: they need no Redis.
    assert_eq!(ids.to_v12(users[1]).await.unwrap(), "wxid_1");
    assert_eq!(ids.to_v11("wxid_1").await.unwrap(), users[1]);

    server.restart();
    // The store reconnects by itself; the ids from before are there (append-only file).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ids.message_to_v12(messages[0] as i64).await {
            Ok(record) => {
                assert_eq!(record, said("bot", "m0", "text 0"));
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "not back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A bridge started now (nothing cached) finds the surrogates on the server.
    let fresh = IdMapper::new(store(&server, "t:", retention()).await);
    for (i, (u, m)) in users.iter().zip(&messages).enumerate() {
        assert_eq!(fresh.to_v12(*u).await.unwrap(), format!("wxid_{i}"));
        assert_eq!(fresh.to_v11(&format!("wxid_{i}")).await.unwrap(), *u);
        assert_eq!(ids.to_v11(&format!("wxid_{i}")).await.unwrap(), *u);
        assert_eq!(ids.message_to_v12(*m as i64).await.unwrap(), said("bot", &format!("m{i}"), &format!("text {i}")));
    }
    // New claims work and take no number already given.
    let old_messages: HashSet<i32> = messages.iter().copied().collect();
    for i in 0..200 {
        let u = ids.to_v11(&format!("after_{i}")).await.unwrap();
        assert!(!users.contains(&u));
        let m = ids.message_to_v11(&rec("bot", &format!("after-{i}"))).await.unwrap();
        assert!(!old_messages.contains(&m));
        assert_eq!(ids.message_to_v12(m as i64).await.unwrap().key.message_id, format!("after-{i}"));
    }
}

#[tokio::test]
async fn an_unreachable_or_silent_server_fails_connect_within_the_bound() {
    // Nothing listening: refused at once.
    let port = support::free_port();
    let started = Instant::now();
    let err = RedisStore::connect(&format!("redis://user:secret@127.0.0.1:{port}/"), retention()).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")) && !message.contains("secret"), "{message}");
    assert!(started.elapsed() < OP_TIMEOUT + Duration::from_secs(1));

    // Accepts but never answers: the bound, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let err = RedisStore::connect(&format!("redis://{addr}/"), retention()).await.unwrap_err();
    assert!(started.elapsed() < OP_TIMEOUT + Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    drop(silent);

    // Not a Redis URL at all.
    let err = RedisStore::connect("http://127.0.0.1:1/", retention()).await.unwrap_err();
    assert!(err.to_string().contains("not usable"), "{err}");
}

/// Figures for the documentation, not a check: claims per second through one Redis store and
/// through the disk store with 256 concurrent tasks, and Redis memory per stored message.
/// `cargo test --release --test redis_store -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run by hand"]
async fn measure_claims_per_second_and_memory_per_message() {
    const N: usize = 20_000;
    async fn run<S: IdStore>(ids: Arc<IdMapper<S>>, tag: &str) -> (f64, f64) {
        let started = Instant::now();
        stream::iter(0..N)
            .map(|i| {
                let ids = ids.clone();
                let v12 = format!("{tag}_user_{i}");
                async move { ids.to_v11(&v12).await.unwrap() }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
        let users = N as f64 / started.elapsed().as_secs_f64();
        let started = Instant::now();
        stream::iter(0..N)
            .map(|i| {
                let ids = ids.clone();
                let r = said("10001", &format!("{tag}-msg-{i}"), "a typical line of chat, some forty bytes");
                async move { ids.message_to_v11(&r).await.unwrap() }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
        (users, N as f64 / started.elapsed().as_secs_f64())
    }

    let server = RedisServer::start();
    let redis = Arc::new(IdMapper::new(store(&server, "bench:", retention()).await));
    let before = server.used_memory();
    let (users, messages) = run(redis.clone(), "r").await;
    println!("redis: {users:.0} new surrogates/s, {messages:.0} new message ids/s (256 at a time)");
    println!(
        "redis memory: {:.0} bytes per surrogate and message together",
        server.used_memory().saturating_sub(before) as f64 / N as f64
    );
    // Messages alone, under a prefix of their own.
    let before = server.used_memory();
    let more = Arc::new(IdMapper::new(store(&server, "bench2:", retention()).await));
    let text = "a typical line of chat, some forty bytes";
    stream::iter(0..N)
        .map(|i| {
            let ids = more.clone();
            let r = said("10001", &format!("mem-msg-{i}"), text);
            async move { ids.message_to_v11(&r).await.unwrap() }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    let per_message = server.used_memory().saturating_sub(before) as f64 / N as f64;
    let row = onebot_bridge::core::record::Row::encode(&said("10001", "mem-msg-10000", text), 0).unwrap();
    println!(
        "redis memory: {per_message:.0} bytes per message id with content (its record: {} bytes)",
        row.as_bytes().len()
    );

    let dir = std::env::temp_dir().join(format!("ob-redis-bench-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let disk = Arc::new(IdMapper::new(onebot_bridge::store::DiskStore::open(&dir, retention()).unwrap()));
    let (users, messages) = run(disk, "d").await;
    println!("disk:  {users:.0} new surrogates/s, {messages:.0} new message ids/s (256 at a time)");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Figures for the documentation, not a check: the event path's ids (each message replying to
/// the one before, 256 events in flight) through one script per id against a lookup and then a
/// claim or a save, alternating on one server; `redis-server`'s CPU and requests per event.
/// `cargo test --test redis_store -- --ignored --nocapture one_script` (the server's CPU per event
/// does not depend on how the client was built; the rate does).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run by hand"]
async fn measure_one_script_per_id_against_lookup_then_claim() {
    const N: usize = 20_000;
    fn info(server: &RedisServer, field: &str, section: &str) -> f64 {
        let text = server.command(&["INFO", section]).expect("redis-server answers INFO");
        text.lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|v| v.split(',').next().unwrap_or("0").trim_start_matches("calls=").parse().unwrap_or(0.0))
            .unwrap_or(0.0)
    }
    fn cpu(server: &RedisServer) -> f64 {
        info(server, "used_cpu_user:", "cpu") + info(server, "used_cpu_sys:", "cpu")
    }
    fn requests(server: &RedisServer) -> f64 {
        info(server, "cmdstat_evalsha:", "commandstats") + info(server, "cmdstat_get:", "commandstats")
    }
    async fn run<S: IdStore>(server: &RedisServer, ids: Arc<IdMapper<S>>, tag: &str) {
        let (cpu0, req0, started) = (cpu(server), requests(server), Instant::now());
        stream::iter(0..N)
            .map(|i| {
                let ids = ids.clone();
                let reply = rec("10001", &format!("{tag}-{}", i.saturating_sub(1)));
                let own = said("10001", &format!("{tag}-{i}"), "a typical line of chat, some forty bytes");
                async move {
                    ids.message_to_v11(&reply).await.unwrap();
                    ids.message_to_v11(&own).await.unwrap()
                }
            })
            .buffered(256)
            .collect::<Vec<_>>()
            .await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{tag:>6}: {:>6.0} events/s, redis-server {:>5.1} µs CPU per event, {:.2} requests per event (GET and EVALSHA, scripts' own GETs included)",
            N as f64 / secs,
            (cpu(server) - cpu0) * 1e6 / N as f64,
            (requests(server) - req0) / N as f64
        );
    }

    let server = RedisServer::start();
    for round in 0..3 {
        let split = Arc::new(IdMapper::new(RacedLookup {
            inner: store(&server, &format!("split{round}:"), retention()).await,
            miss_next: false.into(),
        }));
        let one = Arc::new(IdMapper::new(store(&server, &format!("one{round}:"), retention()).await));
        run(&server, split, &format!("split{round}")).await;
        run(&server, one, &format!("one{round}")).await;
    }
}

/// How many times the server has run `command` (from `INFO commandstats`).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let text = server.command(&["INFO", "commandstats"]).expect("redis-server answers INFO");
    let field = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|l| l.strip_prefix(&field))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn messages_asked_for_at_once_share_script_calls_and_each_gets_its_own_answer() {
    const N: usize = 500;
    let server = RedisServer::start();
    let ids = IdMapper::new(store(&server, "batched:", retention()).await);
    let before = calls(&server, "evalsha");
    let ids = &ids;
    let first = futures::future::join_all(
        (0..N)
            .map(|i| async move { ids.message_to_v11(&said("10001", &format!("b-{i}"), &format!("line {i}"))).await }),
    )
    .await;
    let scripts = calls(&server, "evalsha") - before;
    let first: Vec<i32> = first.into_iter().map(Result::unwrap).collect();
    assert_eq!(first.iter().collect::<HashSet<_>>().len(), N, "one number each");
    assert!(scripts < N as u64 / 4, "{N} messages asked for at once took {scripts} script calls");
    for (i, n) in first.iter().enumerate() {
        assert_eq!(
            ids.message_to_v12(*n as i64).await.unwrap(),
            said("10001", &format!("b-{i}"), &format!("line {i}"))
        );
    }

    // Asked again at once, as reply targets (no content) and with new content alternately: each
    // finds its own number, and the new content is kept.
    let again = futures::future::join_all((0..N).map(|i| {
        let record =
            if i % 2 == 0 { rec("10001", &format!("b-{i}")) } else { said("10001", &format!("b-{i}"), "edited") };
        async move { ids.message_to_v11(&record).await.unwrap() }
    }))
    .await;
    assert_eq!(again, first);
    for (i, n) in first.iter().enumerate() {
        let text = if i % 2 == 0 { format!("line {i}") } else { "edited".to_owned() };
        assert_eq!(ids.message_to_v12(*n as i64).await.unwrap(), said("10001", &format!("b-{i}"), &text));
    }
}
