//! The persistent id store: one redb file under `--data-dir`, with a write-ahead log beside it
//! ([`wal`](super::wal)).
//!
//! Reads go straight to the database. Writes go to one writer thread that applies every
//! "insert unless taken" waiting at that moment in a single transaction, appends what it
//! inserted to the log and syncs the log before it commits and answers: an id a bot has been
//! given survives a restart and `kill -9`, and concurrent assignments share one sync (group
//! commit). The redb commit itself is not synced; about once a second (or when the log reaches
//! [`CHECKPOINT_BYTES`]) one durable commit makes everything since the last one durable and the
//! log is emptied. A profile of the store at a million ids showed the per-batch durable commit
//! (page write-back and `fdatasync`) as its largest cost; appending a few hundred bytes to a log
//! costs a fraction of it. Old message ids are pruned by count and age in small batches between
//! commits, so pruning never stalls traffic for long.

#[cfg(test)]
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::wal::{self, Op, Wal};
use crate::core::ids::{Claim, IdError, IdStore, MessageKey, MessageRecord};

/// v12 id → surrogate.
const IDS: TableDefinition<&str, i64> = TableDefinition::new("ids");
/// surrogate → v12 id.
const SURROGATES: TableDefinition<i64, &str> = TableDefinition::new("surrogates");
/// `self_id \u{1f} message_id` → v11 message_id.
const MESSAGE_KEYS: TableDefinition<&str, i32> = TableDefinition::new("message_keys");
/// v11 message_id → JSON [`Stored`].
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
/// Longest time between durable redb commits while the log holds anything: what a restart
/// replays is at most about this much traffic.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// A log this long is folded into a durable commit at once, whatever the time.
pub const CHECKPOINT_BYTES: u64 = 8 << 20;

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

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    record: MessageRecord,
    /// ms since the epoch.
    at: u64,
}

enum Write {
    Surrogate { n: i64, v12: String, reply: oneshot::Sender<Result<Claim<String>, IdError>> },
    Message { n: i32, record: MessageRecord, reply: oneshot::Sender<Result<Claim<MessageKey>, IdError>> },
    Save { n: i32, record: MessageRecord, reply: oneshot::Sender<Result<(), IdError>> },
}

/// The redb-backed [`IdStore`].
#[derive(Debug, Clone)]
pub struct DiskStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
    /// Where the writer thread records how long each commit took, once the bridge gives one.
    commits: CommitTimes,
}

/// The histogram commit times go to, shared with the writer thread.
pub type CommitTimes = Arc<std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>>;

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Surrogate { n, .. } => write!(f, "Surrogate({n})"),
            Write::Message { n, .. } => write!(f, "Message({n})"),
            Write::Save { n, .. } => write!(f, "Save({n})"),
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
        let wal_path = Wal::path_in(dir);
        let found = Wal::recover(&wal_path).map_err(|e| store_err(format!("{}: {e}", wal_path.display())))?;
        if found.torn_bytes > 0 {
            // The batch being written when the process died: no caller was answered for it.
            tracing::warn!(
                path = %wal_path.display(),
                bytes = found.torn_bytes,
                "the id store's log ends in an incomplete write; it is ignored"
            );
        }
        if !found.ops.is_empty() {
            replay(&db, &found.ops).map_err(store_err)?;
            tracing::info!(ids = found.ops.len(), frames = found.frames, "id store: replayed its log");
        }
        let wal = Wal::open_empty(&wal_path).map_err(|e| store_err(format!("{}: {e}", wal_path.display())))?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer_db = db.clone();
        let commits = CommitTimes::default();
        let writer_commits = commits.clone();
        std::thread::Builder::new()
            .name("id-store-writer".into())
            .spawn(move || writer(writer_db, wal, rx, retention, writer_commits))
            .map_err(store_err)?;
        Ok(DiskStore { db, writes: tx, commits })
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
        self.read(|t| Ok(t.open_table(IDS)?.get(v12)?.map(|v| v.value())))
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        let v12 = v12.to_owned();
        self.write(|reply| Write::Surrogate { n, v12, reply }).await
    }

    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        self.read(|t| Ok(t.open_table(SURROGATES)?.get(n)?.map(|v| v.value().to_owned())))
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        let k = key_text(key);
        self.read(|t| Ok(t.open_table(MESSAGE_KEYS)?.get(k.as_str())?.map(|v| v.value())))
    }

    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        let record = record.clone();
        self.write(|reply| Write::Message { n, record, reply }).await
    }

    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        let record = record.clone();
        self.write(|reply| Write::Save { n, record, reply }).await
    }

    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        let bytes = self.read(|t| Ok(t.open_table(MESSAGES)?.get(n)?.map(|v| v.value().to_vec())))?;
        match bytes {
            None => Ok(None),
            Some(b) => serde_json::from_slice::<Stored>(&b).map(|s| Some(s.record)).map_err(store_err),
        }
    }
}

/// The writer thread: batches, one log sync per batch, answers after it; a durable commit of
/// redb at least every [`CHECKPOINT_EVERY`] while the log holds anything.
fn writer(db: Arc<Database>, mut wal: Wal, mut rx: mpsc::Receiver<Write>, retention: Retention, commits: CommitTimes) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "id store writer cannot start; ids will not be saved");
            return;
        }
    };
    let mut last_prune = Instant::now() - retention.prune_every;
    // When the log was emptied, or got its oldest entry since: a durable commit is due
    // [`CHECKPOINT_EVERY`] after it while the log holds anything.
    let mut log_since = Instant::now();
    loop {
        if last_prune.elapsed() >= retention.prune_every {
            match prune(&db, retention) {
                Ok(more) => {
                    // A prune commits durably (redb's default), which covers the log too.
                    checkpointed(&mut wal, &mut log_since);
                    // More to prune: come back right after serving what is waiting.
                    if !more {
                        last_prune = Instant::now();
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "pruning old message ids failed");
                    last_prune = Instant::now();
                }
            }
        }
        if !wal.is_empty() && log_since.elapsed() >= CHECKPOINT_EVERY {
            checkpoint(&db, &mut wal, &mut log_since, &commits);
        }
        let mut deadline = last_prune + retention.prune_every;
        if !wal.is_empty() {
            deadline = deadline.min(log_since + CHECKPOINT_EVERY);
        }
        let first = match recv_until(&rt, &mut rx, deadline) {
            Recv::Got(w) => w,
            Recv::Idle => continue,
            Recv::Closed => {
                // Leave nothing to replay after a clean stop.
                if !wal.is_empty() {
                    checkpoint(&db, &mut wal, &mut log_since, &commits);
                }
                return;
            }
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        // With an empty log the batch goes to the log too: the durable commit comes a second
        // later, for everything logged by then.
        let was_empty = wal.is_empty();
        let durable = wal.len() >= CHECKPOINT_BYTES || (!was_empty && log_since.elapsed() >= CHECKPOINT_EVERY);
        apply(&db, &mut wal, batch, durable, &commits);
        if durable {
            checkpointed(&mut wal, &mut log_since);
        } else if was_empty {
            // The log's oldest entry dates from now.
            log_since = Instant::now();
        }
    }
}

/// One durable commit with nothing in it: everything committed before becomes durable.
fn checkpoint(db: &Database, wal: &mut Wal, log_since: &mut Instant, commits: &CommitTimes) {
    let started = Instant::now();
    let commit = || -> Result<(), redb::Error> { Ok(db.begin_write()?.commit()?) };
    match commit() {
        Ok(()) => {
            observe(commits, started);
            checkpointed(wal, log_since);
        }
        Err(error) => tracing::error!(%error, "id store: durable commit failed; its log is kept"),
    }
}

/// A durable commit succeeded: the log may be emptied.
fn checkpointed(wal: &mut Wal, log_since: &mut Instant) {
    *log_since = Instant::now();
    if let Err(error) = wal.clear() {
        // Harmless for correctness (replaying puts again changes nothing), but the log grows.
        tracing::error!(%error, path = %wal.path().display(), "id store: emptying the log failed");
    }
}

fn observe(commits: &CommitTimes, started: Instant) {
    if let Some(histogram) = commits.get() {
        histogram.observe(started.elapsed().as_secs_f64());
    }
}

/// Applies a log's ops to redb in one durable commit (at start-up, before the writer runs).
fn replay(db: &Database, ops: &[Op]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut ids = txn.open_table(IDS)?;
        let mut surrogates = txn.open_table(SURROGATES)?;
        let mut keys = txn.open_table(MESSAGE_KEYS)?;
        let mut messages = txn.open_table(MESSAGES)?;
        let mut age = txn.open_table(MESSAGE_AGE)?;
        for op in ops {
            match op {
                Op::Surrogate { n, v12 } => {
                    surrogates.insert(*n, v12.as_str())?;
                    ids.insert(v12.as_str(), *n)?;
                }
                Op::Message { n, at, key, stored } => {
                    messages.insert(*n, stored.as_slice())?;
                    keys.insert(key.as_str(), *n)?;
                    age.insert((*at, *n), ())?;
                }
                Op::Save { n, stored } => {
                    messages.insert(*n, stored.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
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
}

/// Applies one batch. Unless `durable`, what it inserted is appended to the log and the log
/// synced before redb commits (without syncing): a reader can see an id only once it is on disk.
fn apply(db: &Database, wal: &mut Wal, batch: Vec<Write>, durable: bool, commits: &CommitTimes) {
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut log = Vec::new();
    let result = (|| -> Result<(), redb::Error> {
        let mut txn = db.begin_write()?;
        if !durable {
            txn.set_durability(Durability::None)?;
        }
        {
            let mut ids = txn.open_table(IDS)?;
            let mut surrogates = txn.open_table(SURROGATES)?;
            let mut keys = txn.open_table(MESSAGE_KEYS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut age = txn.open_table(MESSAGE_AGE)?;
            for w in batch {
                match w {
                    Write::Surrogate { n, v12, reply } => {
                        let owner = surrogates.get(n)?.map(|v| v.value().to_owned());
                        let claim = match owner {
                            Some(owner) => Claim::Taken(owner),
                            None => {
                                surrogates.insert(n, v12.as_str())?;
                                ids.insert(v12.as_str(), n)?;
                                wal::encode(&Op::Surrogate { n, v12 }, &mut log);
                                Claim::Inserted
                            }
                        };
                        outcomes.push(Outcome::Surrogate(reply, claim));
                    }
                    Write::Message { n, record, reply } => {
                        let owner = messages.get(n)?.map(|v| v.value().to_vec());
                        let claim = match owner {
                            Some(bytes) => match serde_json::from_slice::<Stored>(&bytes) {
                                Ok(s) => Claim::Taken(s.record.key),
                                // An unreadable row cannot be told apart from a collision: probe on.
                                Err(_) => {
                                    Claim::Taken(MessageKey { self_id: String::new(), message_id: String::new() })
                                }
                            },
                            None => {
                                let at = now_ms();
                                let key = key_text(&record.key);
                                let stored = serde_json::to_vec(&Stored { record, at }).unwrap_or_default();
                                messages.insert(n, stored.as_slice())?;
                                keys.insert(key.as_str(), n)?;
                                age.insert((at, n), ())?;
                                wal::encode(&Op::Message { n, at, key, stored }, &mut log);
                                Claim::Inserted
                            }
                        };
                        outcomes.push(Outcome::Message(reply, claim));
                    }
                    Write::Save { n, record, reply } => {
                        let old = messages.get(n)?.map(|v| v.value().to_vec());
                        if let Some(Ok(old)) = old.map(|b| serde_json::from_slice::<Stored>(&b)) {
                            if old.record.key == record.key {
                                let stored = serde_json::to_vec(&Stored { record, at: old.at }).unwrap_or_default();
                                messages.insert(n, stored.as_slice())?;
                                wal::encode(&Op::Save { n, stored }, &mut log);
                            }
                        }
                        outcomes.push(Outcome::Saved(reply));
                    }
                }
            }
        }
        let started = Instant::now();
        if !durable && !log.is_empty() {
            // On error the transaction is dropped uncommitted: nothing is visible, no one answered.
            wal.append_durably(&log)?;
        }
        txn.commit()?;
        observe(commits, started);
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
            if let Some(bytes) = messages.remove(*n)?.map(|v| v.value().to_vec()) {
                if let Ok(s) = serde_json::from_slice::<Stored>(&bytes) {
                    keys.remove(key_text(&s.record.key).as_str())?;
                }
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
    use super::*;

    fn record(id: &str) -> MessageRecord {
        MessageRecord {
            key: MessageKey { self_id: "10001".into(), message_id: id.into() },
            detail_type: "group".into(),
            group_id: Some("g".into()),
            user_id: Some("u".into()),
            content: None,
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ob-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// What a process that died between syncing its log and the next durable commit leaves: the
    /// log holds the ids; opening the store puts them back, and empties the log.
    #[tokio::test]
    async fn ids_only_in_the_log_are_replayed_at_open() {
        let dir = scratch("replay");
        drop(DiskStore::open(&dir, Retention::default()).unwrap());
        let rec = record("m-1");
        let stored = serde_json::to_vec(&Stored { record: rec.clone(), at: now_ms() }).unwrap();
        let mut payload = Vec::new();
        wal::encode(&Op::Surrogate { n: 4_000_000_000_001, v12: "wxid_x".into() }, &mut payload);
        wal::encode(&Op::Message { n: 77, at: now_ms(), key: key_text(&rec.key), stored }, &mut payload);
        // Let the first writer thread finish its clean stop before the log is written.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut log = Wal::open_empty(&Wal::path_in(&dir)).unwrap();
        log.append_durably(&payload).unwrap();
        // Half a frame after it: the write the crash cut short.
        std::fs::OpenOptions::new().append(true).open(log.path()).unwrap().write_all(&[40, 0, 0]).unwrap();
        drop(log);

        let store = DiskStore::open(&dir, Retention::default()).unwrap();
        assert_eq!(store.surrogate_of("wxid_x").await.unwrap(), Some(4_000_000_000_001));
        assert_eq!(store.v12_of_surrogate(4_000_000_000_001).await.unwrap().as_deref(), Some("wxid_x"));
        assert_eq!(store.message_id_of(&rec.key).await.unwrap(), Some(77));
        assert_eq!(store.message_of(77).await.unwrap(), Some(rec));
        assert_eq!(std::fs::metadata(Wal::path_in(&dir)).unwrap().len(), 0, "the log is emptied once applied");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Between durable commits the new ids are in the log; after the interval they are in a
    /// durable commit and the log is empty again.
    #[tokio::test]
    async fn the_log_holds_new_ids_until_the_next_durable_commit() {
        let dir = scratch("checkpoint");
        let store = DiskStore::open(&dir, Retention::default()).unwrap();
        assert_eq!(store.claim_message(5, &record("m-5")).await.unwrap(), Claim::Inserted);
        let logged = Wal::recover(&Wal::path_in(&dir)).unwrap();
        assert!(
            logged.ops.iter().any(|op| matches!(op, Op::Message { n: 5, .. })),
            "the answer came after the log held the id: {logged:?}"
        );
        let deadline = Instant::now() + CHECKPOINT_EVERY * 5;
        while std::fs::metadata(Wal::path_in(&dir)).unwrap().len() > 0 {
            assert!(Instant::now() < deadline, "no durable commit emptied the log");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.message_id_of(&record("m-5").key).await.unwrap(), Some(5));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
