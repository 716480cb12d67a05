//! The persistent id store: one redb file under `--data-dir`.
//!
//! Reads go straight to the database. Writes go to one writer thread that applies every
//! "insert unless taken" waiting at that moment in a single transaction and commits it durably
//! (fsync) before answering: an id a bot has been given survives a restart and `kill -9`, and
//! concurrent assignments share one fsync (group commit). Old message ids are pruned by count and
//! age in small batches between commits, so pruning never stalls traffic for long.
//!
//! A message's row is binary ([`crate::core::record`]: version byte, time, key, body). Files
//! written before that hold JSON rows (`{"record": …, "at": …}`); they are read as they are,
//! told apart by their first byte, and a JSON row becomes binary when its record is saved again.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::core::ids::{Claim, Found, IdError, IdStore, MessageKey, MessageRecord};
use crate::core::record::{self, Row, RowHead};
use crate::store::surrogates::SurrogateCache;

/// v12 id → surrogate.
const IDS: TableDefinition<&str, i64> = TableDefinition::new("ids");
/// surrogate → v12 id.
const SURROGATES: TableDefinition<i64, &str> = TableDefinition::new("surrogates");
/// `self_id \u{1f} message_id` → v11 message_id.
const MESSAGE_KEYS: TableDefinition<&str, i32> = TableDefinition::new("message_keys");
/// v11 message_id → the record and when it was stored: a binary [`Row`],
/// or in files from before it a JSON [`JsonRow`].
const MESSAGES: TableDefinition<i32, &[u8]> = TableDefinition::new("messages");
/// (stored at, ms since the epoch; v11 message_id) → (), oldest first, for pruning.
const MESSAGE_AGE: TableDefinition<(u64, i32), ()> = TableDefinition::new("message_age");

/// redb's page cache (reads and writes not yet flushed) unless configured: enough for the
/// upper levels of every table, far below redb's own default of 1 GiB. What does not fit is read
/// back from the file (the operating system's cache, not this process).
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// Writes waiting for the writer thread before callers wait (backpressure).
const WRITE_QUEUE: usize = 4096;
/// Most writes applied in one transaction.
const BATCH: usize = 512;
/// Most message ids pruned in one transaction.
const PRUNE_BATCH: usize = 5_000;

/// How long message ids are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    pub max_messages: u64,
    pub max_age: Duration,
    /// How often the limits are enforced.
    pub prune_every: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_messages: 1_000_000,
            max_age: Duration::from_secs(30 * 24 * 3600),
            prune_every: Duration::from_secs(30),
        }
    }
}

/// A row as bridges before the binary encoding wrote it (`serde_json::to_vec` of
/// `{record, at}`), read for its record (`at` is read by [`JsonRowHead`]).
#[derive(Debug, Deserialize)]
struct JsonRow {
    record: MessageRecord,
}

/// A JSON row read for its key and time only: the rest of the record is skipped, not built.
#[derive(Deserialize)]
struct JsonRowHead {
    record: JsonKey,
    at: u64,
}

#[derive(Deserialize)]
struct JsonKey {
    key: MessageKey,
}

/// A stored row's key and time (ms since the epoch), in either encoding, without decoding the
/// rest.
fn row_key(bytes: &[u8]) -> Result<(MessageKey, u64), IdError> {
    if record::is_row(bytes) {
        let head = RowHead::read(bytes)?;
        return Ok((head.key(), head.at));
    }
    let head: JsonRowHead = serde_json::from_slice(bytes).map_err(json_err)?;
    Ok((head.record.key, head.at))
}

/// A stored row's record, in either encoding.
fn row_record(bytes: &[u8]) -> Result<MessageRecord, IdError> {
    if record::is_row(bytes) {
        return RowHead::read(bytes)?.record();
    }
    serde_json::from_slice::<JsonRow>(bytes).map(|row| row.record).map_err(json_err)
}

fn json_err(e: serde_json::Error) -> IdError {
    IdError::Store(format!("a stored message record (JSON) is unreadable: {e}"))
}

enum Write {
    Surrogate {
        n: i64,
        v12: String,
        reply: oneshot::Sender<Result<Claim<String>, IdError>>,
    },
    /// The row is encoded by the caller (the writer is one thread for all of them); the writer
    /// sets its time.
    Message {
        n: i32,
        key_text: String,
        row: Row,
        reply: oneshot::Sender<Result<Claim<MessageKey>, IdError>>,
    },
    Save {
        n: i32,
        key: MessageKey,
        row: Row,
        reply: oneshot::Sender<Result<(), IdError>>,
    },
    /// The key's number (its row given the content, when `content`), else a claim of `n`: what
    /// every message on the event path asks, in one step of the writer instead of a read
    /// transaction and then a write.
    FindOrClaim {
        n: i32,
        key: MessageKey,
        key_text: String,
        row: Row,
        content: bool,
        reply: oneshot::Sender<Result<Found<i32, MessageKey>, IdError>>,
    },
}

/// The redb-backed [`IdStore`].
#[derive(Debug, Clone)]
pub struct DiskStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
    /// Where the writer thread records how long each commit took, once the bridge gives one.
    commits: CommitTimes,
    /// Surrogates read or claimed here: a known one needs no read transaction.
    surrogates: SurrogateCache,
}

/// The histogram commit times go to, shared with the writer thread.
pub type CommitTimes = Arc<std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>>;

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Surrogate { n, .. } => write!(f, "Surrogate({n})"),
            Write::Message { n, .. } => write!(f, "Message({n})"),
            Write::Save { n, .. } => write!(f, "Save({n})"),
            Write::FindOrClaim { n, .. } => write!(f, "FindOrClaim({n})"),
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> IdError {
    IdError::Store(e.to_string())
}

fn key_text(key: &MessageKey) -> String {
    format!("{}\u{1f}{}", key.self_id, key.message_id)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl DiskStore {
    /// Opens (or creates) `<dir>/bridge.redb` with the default page cache and starts the writer thread.
    pub fn open(dir: &Path, retention: Retention) -> Result<DiskStore, IdError> {
        DiskStore::open_with_cache(dir, retention, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) `<dir>/bridge.redb` with a page cache of `cache_bytes` and starts the
    /// writer thread.
    pub fn open_with_cache(dir: &Path, retention: Retention, cache_bytes: usize) -> Result<DiskStore, IdError> {
        std::fs::create_dir_all(dir).map_err(|e| store_err(format!("{}: {e}", dir.display())))?;
        let path = dir.join("bridge.redb");
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| store_err(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(store_err)?;
        {
            txn.open_table(IDS).map_err(store_err)?;
            txn.open_table(SURROGATES).map_err(store_err)?;
            txn.open_table(MESSAGE_KEYS).map_err(store_err)?;
            txn.open_table(MESSAGES).map_err(store_err)?;
            txn.open_table(MESSAGE_AGE).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_db = db.clone();
        let commits = CommitTimes::default();
        let writer_commits = commits.clone();
        std::thread::Builder::new()
            .name("id-store-writer".into())
            .spawn(move || writer(writer_db, rx, retention, writer_commits))
            .map_err(store_err)?;
        Ok(DiskStore { db, writes: tx, commits, surrogates: SurrogateCache::default() })
    }

    /// Where commit times are recorded: set the histogram once, and every commit of a batch of
    /// writes from then on is observed in it (seconds).
    pub fn commit_times(&self) -> CommitTimes {
        self.commits.clone()
    }

    async fn write<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T, IdError>>) -> Write) -> Result<T, IdError> {
        let (tx, rx) = oneshot::channel();
        self.writes.send(make(tx)).await.map_err(|_| store_err("the store writer stopped"))?;
        rx.await.map_err(|_| store_err("the store writer stopped"))?
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>) -> Result<T, IdError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        f(&txn).map_err(store_err)
    }

    /// How many message ids are stored.
    pub fn message_count(&self) -> Result<u64, IdError> {
        self.read(|t| Ok(t.open_table(MESSAGES)?.len()?))
    }
}

impl IdStore for DiskStore {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        if let Some(n) = self.surrogates.surrogate_of(v12) {
            return Ok(Some(n));
        }
        let n = self.read(|t| Ok(t.open_table(IDS)?.get(v12)?.map(|v| v.value())))?;
        if let Some(n) = n {
            self.surrogates.learn(n, v12);
        }
        Ok(n)
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        let owned = v12.to_owned();
        let claim = self.write(|reply| Write::Surrogate { n, v12: owned, reply }).await?;
        // Answered after the commit: what the cache learns is on disk.
        match &claim {
            Claim::Inserted => self.surrogates.learn(n, v12),
            Claim::Taken(owner) => self.surrogates.learn_owner(n, owner),
        }
        Ok(claim)
    }

    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        if let Some(v12) = self.surrogates.v12_of(n) {
            return Ok(Some(v12));
        }
        let v12 = self.read(|t| Ok(t.open_table(SURROGATES)?.get(n)?.map(|v| v.value().to_owned())))?;
        if let Some(v12) = &v12 {
            self.surrogates.learn_owner(n, v12);
        }
        Ok(v12)
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        let k = key_text(key);
        self.read(|t| Ok(t.open_table(MESSAGE_KEYS)?.get(k.as_str())?.map(|v| v.value())))
    }

    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        let row = Row::encode(record, 0)?;
        let key_text = key_text(&record.key);
        self.write(|reply| Write::Message { n, key_text, row, reply }).await
    }

    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        let row = Row::encode(record, 0)?;
        let key = record.key.clone();
        self.write(|reply| Write::Save { n, key, row, reply }).await
    }

    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        let bytes = self.read(|t| Ok(t.open_table(MESSAGES)?.get(n)?.map(|v| v.value().to_vec())))?;
        bytes.map(|b| row_record(&b)).transpose()
    }

    /// A message with its content (one just received, most likely new) is one request to the
    /// writer, which looks the key up inside its transaction: no read transaction first, and a
    /// message first claimed as a reply target gets its content in the same batch. A reference
    /// without content (a reply target, a recalled message: most likely known) is read first,
    /// as a lone lookup in the writer would cost a round trip to its thread (56 µs in the store
    /// bench, against 3–7 µs).
    async fn find_or_claim_message(
        &self,
        first: impl FnOnce() -> i32 + Send,
        record: &MessageRecord,
    ) -> Result<Found<i32, MessageKey>, IdError> {
        if record.content.is_none() {
            if let Some(known) = self.message_id_of(&record.key).await? {
                return Ok(Found::Known(known));
            }
        }
        let row = Row::encode(record, 0)?;
        let (n, key, key_text, content) =
            (first(), record.key.clone(), key_text(&record.key), record.content.is_some());
        self.write(|reply| Write::FindOrClaim { n, key, key_text, row, content, reply }).await
    }
}

/// The writer thread: batches, one durable commit per batch, answers after the commit.
fn writer(db: Arc<Database>, mut rx: mpsc::Receiver<Write>, retention: Retention, commits: CommitTimes) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "id store writer cannot start; ids will not be saved");
            return;
        }
    };
    let mut last_prune = Instant::now() - retention.prune_every;
    loop {
        if last_prune.elapsed() >= retention.prune_every {
            match prune(&db, retention) {
                // More to prune: come back right after serving what is waiting.
                Ok(true) => {}
                Ok(false) => last_prune = Instant::now(),
                Err(error) => {
                    tracing::error!(%error, "pruning old message ids failed");
                    last_prune = Instant::now();
                }
            }
        }
        let first = match recv_until(&rt, &mut rx, last_prune + retention.prune_every) {
            Recv::Got(w) => w,
            Recv::Idle => continue,
            Recv::Closed => return,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        apply(&db, batch, &commits);
    }
}

enum Recv {
    Got(Write),
    /// Nothing came before the deadline: time to prune.
    Idle,
    Closed,
}

/// Waits for the next write, but not past `deadline` (pruning is due then). The writer thread
/// drives the channel with a small runtime of its own so that it can wait with a timeout.
fn recv_until(rt: &tokio::runtime::Runtime, rx: &mut mpsc::Receiver<Write>, deadline: Instant) -> Recv {
    let wait = deadline.saturating_duration_since(Instant::now());
    match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
        Ok(Some(w)) => Recv::Got(w),
        Ok(None) => Recv::Closed,
        Err(_) => Recv::Idle,
    }
}

enum Outcome {
    Surrogate(oneshot::Sender<Result<Claim<String>, IdError>>, Claim<String>),
    Message(oneshot::Sender<Result<Claim<MessageKey>, IdError>>, Claim<MessageKey>),
    Saved(oneshot::Sender<Result<(), IdError>>),
    Found(oneshot::Sender<Result<Found<i32, MessageKey>, IdError>>, Found<i32, MessageKey>),
}

/// The tables of one write transaction, and what it has written so far.
struct Tables<'t> {
    ids: redb::Table<'t, &'static str, i64>,
    surrogates: redb::Table<'t, i64, &'static str>,
    keys: redb::Table<'t, &'static str, i32>,
    messages: redb::Table<'t, i32, &'static [u8]>,
    age: redb::Table<'t, (u64, i32), ()>,
    /// Anything to make durable: a batch that only looked things up is not committed.
    written: bool,
    /// Message keys claimed in this transaction: found again before the commit, they are not on
    /// disk yet.
    claimed: HashSet<String, foldhash::fast::RandomState>,
}

/// Inserts the row under `n` unless the number is taken (then says by which key).
fn claim_row(t: &mut Tables<'_>, n: i32, key_text: String, mut row: Row) -> Result<Claim<MessageKey>, redb::Error> {
    // Only the owner's key is read: its segments are not decoded.
    let owner = t.messages.get(n)?.map(|v| row_key(v.value()));
    Ok(match owner {
        Some(Ok((owner, _))) => Claim::Taken(owner),
        // An unreadable row cannot be told apart from a collision: probe on.
        Some(Err(_)) => Claim::Taken(MessageKey::default()),
        None => {
            let at = now_ms();
            row.set_at(at);
            t.messages.insert(n, row.as_bytes())?;
            t.keys.insert(key_text.as_str(), n)?;
            t.age.insert((at, n), ())?;
            t.written = true;
            t.claimed.insert(key_text);
            Claim::Inserted
        }
    })
}

/// Replaces the row under `n` when it is `key`'s, keeping its time (and so its place in pruning).
fn save_row(t: &mut Tables<'_>, n: i32, key: &MessageKey, mut row: Row) -> Result<(), redb::Error> {
    let old = t.messages.get(n)?.map(|v| row_key(v.value()));
    if let Some(Ok((owner, at))) = old {
        if owner == *key {
            row.set_at(at);
            t.messages.insert(n, row.as_bytes())?;
            t.written = true;
        }
    }
    Ok(())
}

fn apply(db: &Database, batch: Vec<Write>, commits: &CommitTimes) {
    let mut outcomes = Vec::with_capacity(batch.len());
    let result = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        let written = {
            let mut t = Tables {
                ids: txn.open_table(IDS)?,
                surrogates: txn.open_table(SURROGATES)?,
                keys: txn.open_table(MESSAGE_KEYS)?,
                messages: txn.open_table(MESSAGES)?,
                age: txn.open_table(MESSAGE_AGE)?,
                written: false,
                claimed: HashSet::default(),
            };
            for w in batch {
                match w {
                    Write::Surrogate { n, v12, reply } => {
                        let owner = t.surrogates.get(n)?.map(|v| v.value().to_owned());
                        let claim = match owner {
                            Some(owner) => Claim::Taken(owner),
                            None => {
                                t.surrogates.insert(n, v12.as_str())?;
                                t.ids.insert(v12.as_str(), n)?;
                                t.written = true;
                                Claim::Inserted
                            }
                        };
                        outcomes.push(Outcome::Surrogate(reply, claim));
                    }
                    Write::Message { n, key_text, row, reply } => {
                        let claim = claim_row(&mut t, n, key_text, row)?;
                        outcomes.push(Outcome::Message(reply, claim));
                    }
                    Write::Save { n, key, row, reply } => {
                        save_row(&mut t, n, &key, row)?;
                        outcomes.push(Outcome::Saved(reply));
                    }
                    Write::FindOrClaim { n, key, key_text, row, content, reply } => {
                        let known = t.keys.get(key_text.as_str())?.map(|v| v.value());
                        match known {
                            // On disk before this batch, and nothing to write: answered now.
                            Some(known) if !content && !t.claimed.contains(&key_text) => {
                                let _ = reply.send(Ok(Found::Known(known)));
                            }
                            Some(known) => {
                                if content {
                                    save_row(&mut t, known, &key, row)?;
                                }
                                outcomes.push(Outcome::Found(reply, Found::Known(known)));
                            }
                            None => {
                                let claim = claim_row(&mut t, n, key_text, row)?;
                                outcomes.push(Outcome::Found(reply, Found::Claimed(n, claim)));
                            }
                        }
                    }
                }
            }
            t.written
        };
        // A batch that only looked things up has nothing to make durable.
        if !written {
            txn.abort()?;
            return Ok(());
        }
        let started = Instant::now();
        txn.commit()?;
        if let Some(histogram) = commits.get() {
            histogram.observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            for o in outcomes {
                match o {
                    Outcome::Surrogate(reply, claim) => {
                        let _ = reply.send(Ok(claim));
                    }
                    Outcome::Message(reply, claim) => {
                        let _ = reply.send(Ok(claim));
                    }
                    Outcome::Saved(reply) => {
                        let _ = reply.send(Ok(()));
                    }
                    Outcome::Found(reply, found) => {
                        let _ = reply.send(Ok(found));
                    }
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, "id store commit failed");
            // Answers not yet sent are dropped: their callers see the store failing.
        }
    }
}

/// Deletes the oldest message ids beyond the count and age limits, at most one batch.
/// Returns true when more remain to prune.
fn prune(db: &Database, retention: Retention) -> Result<bool, redb::Error> {
    let txn = db.begin_write()?;
    let more;
    {
        let mut age = txn.open_table(MESSAGE_AGE)?;
        let mut messages = txn.open_table(MESSAGES)?;
        let mut keys = txn.open_table(MESSAGE_KEYS)?;
        let total = age.len()?;
        let over_count = total.saturating_sub(retention.max_messages);
        let cutoff = now_ms().saturating_sub(retention.max_age.as_millis() as u64);
        let mut victims = Vec::new();
        for entry in age.iter()? {
            let (k, _) = entry?;
            let (at, n) = k.value();
            if (victims.len() as u64) < over_count || at < cutoff {
                victims.push((at, n));
                if victims.len() >= PRUNE_BATCH {
                    break;
                }
            } else {
                break;
            }
        }
        more = victims.len() >= PRUNE_BATCH;
        for (at, n) in &victims {
            age.remove((*at, *n))?;
            let key = messages.remove(*n)?.map(|v| row_key(v.value()));
            if let Some(Ok((key, _))) = key {
                keys.remove(key_text(&key).as_str())?;
            }
        }
        if !victims.is_empty() {
            tracing::debug!(pruned = victims.len(), "old message ids pruned");
        }
    }
    txn.commit()?;
    Ok(more)
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::core::ids::StoredMessage;
    use crate::core::message::Segment;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ob-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn said(self_id: &str, id: &str, text: &str) -> MessageRecord {
        MessageRecord {
            key: MessageKey { self_id: self_id.into(), message_id: id.into() },
            detail_type: "group".into(),
            group_id: Some("g".into()),
            user_id: Some("u".into()),
            content: Some(StoredMessage {
                time: 1_700_000_000,
                segments: vec![Segment::text(text), Segment::new("face").with("id", 14).with("f", 0.5)],
                sender_id: 20002,
                sender_name: "名前".into(),
            }),
        }
    }

    /// The row type of bridges before the binary encoding, as it was.
    #[derive(serde::Serialize)]
    struct Stored {
        record: MessageRecord,
        at: u64,
    }

    /// Writes rows the way bridges before the binary encoding did: `serde_json::to_vec`.
    fn write_json_rows(dir: &Path, rows: &[(i32, &MessageRecord, u64)]) {
        std::fs::create_dir_all(dir).unwrap();
        let db = redb::Database::create(dir.join("bridge.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut keys = txn.open_table(MESSAGE_KEYS).unwrap();
            let mut messages = txn.open_table(MESSAGES).unwrap();
            let mut age = txn.open_table(MESSAGE_AGE).unwrap();
            for &(n, record, at) in rows {
                let json = serde_json::to_vec(&Stored { record: record.clone(), at }).unwrap();
                assert_eq!(json[0], b'{');
                messages.insert(n, json.as_slice()).unwrap();
                keys.insert(key_text(&record.key).as_str(), n).unwrap();
                age.insert((at, n), ()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what} did not happen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_file_with_json_rows_is_read_claimed_saved_and_pruned() {
        let d = dir("json");
        let (old, older, oldest) =
            (said("bot", "a\"b\\c", "quoted \"text\"\n"), said("bot", "x", "x"), said("bot", "y", "y"));
        let now = now_ms();
        write_json_rows(&d, &[(7, &old, now), (8, &older, now - 2), (9, &oldest, now - 3)]);
        // Two rows kept: the oldest one goes when the store opens.
        let retention = Retention { max_messages: 2, ..Default::default() };
        let store = DiskStore::open(&d, retention).unwrap();
        wait_for("pruning", || store.message_count().unwrap() == 2);
        assert_eq!(block_on(store.message_of(9)).unwrap(), None);
        assert_eq!(block_on(store.message_id_of(&oldest.key)).unwrap(), None, "its key went with it");
        // get_msg reads the old row whole.
        assert_eq!(block_on(store.message_of(7)).unwrap(), Some(old.clone()));
        assert_eq!(block_on(store.message_id_of(&old.key)).unwrap(), Some(7));
        // Claiming its number compares with its key.
        let other = said("bot", "other", "z");
        assert_eq!(block_on(store.claim_message(7, &other)).unwrap(), Claim::Taken(old.key.clone()));
        // Saving it again writes it in the binary form, at its old time.
        let mut again = old.clone();
        again.content.as_mut().unwrap().segments.push(Segment::text("more"));
        block_on(store.save_message(7, &again)).unwrap();
        let row = store.read(|t| Ok(t.open_table(MESSAGES)?.get(7)?.map(|v| v.value().to_vec()))).unwrap().unwrap();
        assert_eq!(RowHead::read(&row).unwrap().at, now);
        assert_eq!(block_on(store.message_of(7)).unwrap(), Some(again));
        // New rows are binary, and both kinds live side by side.
        assert_eq!(block_on(store.claim_message(10, &other)).unwrap(), Claim::Inserted);
        assert_eq!(block_on(store.message_of(10)).unwrap(), Some(other));
        assert_eq!(block_on(store.message_of(8)).unwrap(), Some(older));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A message first seen as a reply target (no content) and then itself, in one batch or in
    /// two: one number, and the content lands on it.
    #[test]
    fn find_or_claim_finds_a_key_claimed_without_content_and_saves_the_content() {
        let d = dir("find-or-claim");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let full = said("bot", "m1", "hello");
        let bare = MessageRecord { content: None, ..full.clone() };
        let (target, own) = block_on(async {
            futures::join!(store.find_or_claim_message(|| 5, &bare), store.find_or_claim_message(|| 6, &full))
        });
        assert_eq!(target.unwrap(), Found::Claimed(5, Claim::Inserted));
        assert_eq!(own.unwrap(), Found::Known(5), "the second request saw the first one's claim");
        assert_eq!(block_on(store.message_of(5)).unwrap(), Some(full.clone()), "with its content");
        assert_eq!(block_on(store.message_of(6)).unwrap(), None, "the candidate not used stays free");
        // Asked again, without content: the number, the content kept.
        assert_eq!(block_on(store.find_or_claim_message(|| 7, &bare)).unwrap(), Found::Known(5));
        assert_eq!(block_on(store.message_of(5)).unwrap(), Some(full.clone()));
        // A candidate someone else holds is reported taken, by whom.
        let other = said("bot", "m2", "other");
        assert_eq!(
            block_on(store.find_or_claim_message(|| 5, &other)).unwrap(),
            Found::Claimed(5, Claim::Taken(full.key.clone()))
        );
        assert_eq!(block_on(store.message_id_of(&other.key)).unwrap(), None);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A surrogate read or claimed once is answered from the process: no read transaction. The
    /// rows are removed behind the store's back to tell the two apart; a handle with a cache of
    /// its own reads the file.
    #[test]
    fn known_surrogates_are_answered_without_reading_the_file() {
        let d = dir("surrogates");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        assert_eq!(block_on(store.claim_surrogate(5_000_000_001, "wxid_a")).unwrap(), Claim::Inserted);
        let other = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        assert_eq!(block_on(other.surrogate_of("wxid_a")).unwrap(), Some(5_000_000_001), "read from the file");
        let txn = store.db.begin_write().unwrap();
        txn.open_table(IDS).unwrap().remove("wxid_a").unwrap();
        txn.open_table(SURROGATES).unwrap().remove(5_000_000_001).unwrap();
        txn.commit().unwrap();
        assert_eq!(block_on(store.surrogate_of("wxid_a")).unwrap(), Some(5_000_000_001));
        assert_eq!(block_on(store.v12_of_surrogate(5_000_000_001)).unwrap().as_deref(), Some("wxid_a"));
        assert_eq!(
            block_on(other.surrogate_of("wxid_a")).unwrap(),
            Some(5_000_000_001),
            "it learnt it when it read it"
        );
        let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        assert_eq!(block_on(fresh.surrogate_of("wxid_a")).unwrap(), None, "a cache of its own reads the file");
        drop((store, other, fresh));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_row_is_a_store_error_and_its_number_is_probed_past() {
        let d = dir("damaged");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let r = said("bot", "m", "hello");
        assert_eq!(block_on(store.claim_message(3, &r)).unwrap(), Claim::Inserted);
        let row = store.read(|t| Ok(t.open_table(MESSAGES)?.get(3)?.map(|v| v.value().to_vec()))).unwrap().unwrap();
        assert!(record::is_row(&row));
        // The same row cut short in its body, and a JSON row cut short: written behind the
        // store's back (the writer thread is idle between requests).
        for (n, bytes) in [(4, &row[..row.len() - 2]), (5, &br#"{"record":{"key""#[..])] {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(MESSAGES).unwrap().insert(n, bytes).unwrap();
            txn.commit().unwrap();
            let Err(IdError::Store(message)) = block_on(store.message_of(n)) else { panic!("row {n} read") };
            assert!(message.contains("unreadable"), "{message}");
        }
        // Row 4's key is still readable, so a claim sees its owner; row 5's is not: probe on.
        assert_eq!(block_on(store.claim_message(4, &said("bot", "n", "x"))).unwrap(), Claim::Taken(r.key.clone()));
        assert_eq!(block_on(store.claim_message(5, &r)).unwrap(), Claim::Taken(MessageKey::default()));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }
}
