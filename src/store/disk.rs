//! The persistent id store: one redb file under `--data-dir`, and a journal beside it.
//!
//! Writes go to one writer thread. It decides every "insert unless taken" waiting at that
//! moment (against what it decided before, the journal's entries redb does not hold yet, and
//! redb), appends the decisions to the [`journal`] and syncs it (`fdatasync`) before answering:
//! an id a bot has been given survives a restart and `kill -9`, and concurrent assignments share
//! one sync (group commit). A second thread, the folder, applies the journalled entries to redb
//! in large durable transactions (every [`FOLD_EVERY`] at most), deletes journal files redb
//! holds for good, and prunes old message ids by count and age in small batches between its
//! commits. Opening the store applies what a crash left in the journal.
//!
//! Reads look at the entries not folded yet first, then redb.
//!
//! A message's row is binary ([`crate::core::record`]: version byte, time, key, body). Files
//! written before that hold JSON rows (`{"record": …, "at": …}`); they are read as they are,
//! told apart by their first byte, and a JSON row becomes binary when its record is saved again.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::core::ids::{Claim, Found, IdError, IdStore, MessageKey, MessageRecord};
use crate::core::record::{self, Row, RowHead};
use crate::store::journal::{self, Entry, Journal};
use crate::store::surrogates::SurrogateCache;
use crate::sync::LockUnpoisoned;

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
/// Most writes decided and journalled together.
const BATCH: usize = 512;
/// Most message ids pruned in one transaction.
const PRUNE_BATCH: usize = 5_000;
/// How long journalled entries wait at most before the folder applies them to redb: a few
/// large commits a second instead of one per batch.
pub const FOLD_EVERY: Duration = Duration::from_millis(50);
/// Most entries applied to redb in one transaction.
const FOLD_MAX: usize = 16_384;
/// Most entries journalled and not yet in redb; the writer waits for the folder beyond it, so
/// what the process keeps of them (a few hundred bytes each) stays bounded.
const MAX_UNFOLDED: u64 = 32_768;
/// How long the folder waits before retrying a commit that failed.
const FOLD_RETRY: Duration = Duration::from_secs(1);

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
    /// and then a write.
    FindOrClaim {
        n: i32,
        key: MessageKey,
        key_text: String,
        row: Row,
        content: bool,
        reply: oneshot::Sender<Result<Found<i32, MessageKey>, IdError>>,
    },
}

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

type Hasher = foldhash::fast::RandomState;

/// A journalled message row redb may not hold yet.
#[derive(Debug)]
struct PendingRow {
    key_text: Arc<str>,
    row: Arc<[u8]>,
    /// Which journal entry wrote it (a later one for the same number replaces it).
    seq: u64,
    /// Claimed (a number redb did not have), not saved over one it had.
    new: bool,
}

/// The entries journalled (durable) and not yet seen folded into redb by the writer: readers
/// look here before redb. Only the writer changes it: it adds a batch after its journal sync
/// and removes entries once the folder has committed them, before its next read of redb.
#[derive(Debug, Default)]
struct Pending {
    rows: HashMap<i32, PendingRow, Hasher>,
    keys: HashMap<Arc<str>, i32, Hasher>,
    surrogates: HashMap<i64, (Box<str>, u64), Hasher>,
    ids: HashMap<Box<str>, i64, Hasher>,
}

/// What the writer and the folder tell each other and the readers.
#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// The last journal entry written (and synced).
    journalled: AtomicU64,
    /// The last journal entry redb holds durably.
    folded: AtomicU64,
}

/// The redb-backed [`IdStore`].
#[derive(Debug, Clone)]
pub struct DiskStore {
    db: Arc<Database>,
    writes: mpsc::Sender<Write>,
    shared: Arc<Shared>,
    /// Where the writer thread records how long each journal sync took, once the bridge gives one.
    commits: CommitTimes,
    /// Surrogates read or claimed here: a known one needs no read transaction.
    surrogates: SurrogateCache,
}

/// The histogram commit times go to, shared with the writer thread.
pub type CommitTimes = Arc<std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>>;

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

    /// Opens (or creates) `<dir>/bridge.redb` with a page cache of `cache_bytes`, applies what
    /// the journal (`<dir>/journal/`) holds, and starts the writer and folder threads.
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
        let journal_dir = dir.join("journal");
        let next = recover(&db, &journal_dir)?;
        let journal =
            Journal::create(&journal_dir, next).map_err(|e| store_err(format!("{}: {e}", journal_dir.display())))?;
        let db = Arc::new(db);
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let (folds_tx, folds_rx) = std_mpsc::sync_channel(WRITE_QUEUE);
        let commits = CommitTimes::default();
        let folder = Folder { db: db.clone(), shared: shared.clone(), journal_dir, retention };
        let folder = std::thread::Builder::new()
            .name("id-store-folder".into())
            .spawn(move || folder.run(folds_rx))
            .map_err(store_err)?
            .thread()
            .clone();
        let writer = Writer {
            db: db.clone(),
            journal,
            shared: shared.clone(),
            folds: folds_tx,
            folder,
            commits: commits.clone(),
            seq: 0,
            unfolded: VecDeque::new(),
        };
        std::thread::Builder::new().name("id-store-writer".into()).spawn(move || writer.run(rx)).map_err(store_err)?;
        Ok(DiskStore { db, writes: tx, shared, commits, surrogates: SurrogateCache::default() })
    }

    /// Where commit times are recorded: set the histogram once, and every journal sync of a
    /// batch of writes from then on is observed in it (seconds).
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

    /// How many message ids are stored: those in redb and those journalled for it. (While the
    /// folder commits, a message may be counted in both for a moment.)
    pub fn message_count(&self) -> Result<u64, IdError> {
        let journalled = self.shared.pending.lock_unpoisoned().rows.values().filter(|r| r.new).count() as u64;
        Ok(self.read(|t| Ok(t.open_table(MESSAGES)?.len()?))? + journalled)
    }

    /// Waits until redb holds everything journalled and the writer has let go of it (tests that
    /// then change redb behind the store's back).
    #[cfg(test)]
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shared = &self.shared;
            let folded = shared.folded.load(Ordering::Acquire) >= shared.journalled.load(Ordering::Acquire);
            let p = shared.pending.lock_unpoisoned();
            if folded && p.rows.is_empty() && p.surrogates.is_empty() {
                return;
            }
            drop(p);
            assert!(Instant::now() < deadline, "the store did not settle");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl IdStore for DiskStore {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        if let Some(n) = self.surrogates.surrogate_of(v12) {
            return Ok(Some(n));
        }
        let journalled = self.shared.pending.lock_unpoisoned().ids.get(v12).copied();
        let n = match journalled {
            Some(n) => Some(n),
            None => self.read(|t| Ok(t.open_table(IDS)?.get(v12)?.map(|v| v.value())))?,
        };
        if let Some(n) = n {
            self.surrogates.learn(n, v12);
        }
        Ok(n)
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        let owned = v12.to_owned();
        let claim = self.write(|reply| Write::Surrogate { n, v12: owned, reply }).await?;
        // Answered after the journal sync: what the cache learns is on disk.
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
        let journalled = self.shared.pending.lock_unpoisoned().surrogates.get(&n).map(|(v12, _)| v12.to_string());
        let v12 = match journalled {
            Some(v12) => Some(v12),
            None => self.read(|t| Ok(t.open_table(SURROGATES)?.get(n)?.map(|v| v.value().to_owned())))?,
        };
        if let Some(v12) = &v12 {
            self.surrogates.learn_owner(n, v12);
        }
        Ok(v12)
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        let k = key_text(key);
        if let Some(&n) = self.shared.pending.lock_unpoisoned().keys.get(k.as_str()) {
            return Ok(Some(n));
        }
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
        let journalled = self.shared.pending.lock_unpoisoned().rows.get(&n).map(|r| r.row.clone());
        if let Some(row) = journalled {
            return row_record(&row).map(Some);
        }
        let bytes = self.read(|t| Ok(t.open_table(MESSAGES)?.get(n)?.map(|v| v.value().to_vec())))?;
        bytes.map(|b| row_record(&b)).transpose()
    }

    /// A message with its content (one just received, most likely new) is one request to the
    /// writer, which looks the key up itself: no read first, and a message first claimed as a
    /// reply target gets its content in the same batch. A reference without content (a reply
    /// target, a recalled message: most likely known) is read first, as a lone lookup in the
    /// writer would cost a round trip to its thread (56 µs in the store bench, against 3–7 µs).
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

/// Applies what the journal holds (a crash left it there, or the last run stopped before its
/// folder caught up) to redb in one durable commit, deletes the files, and says which number
/// the next file takes.
fn recover(db: &Database, dir: &Path) -> Result<u64, IdError> {
    let io_err = |e: std::io::Error| store_err(format!("{}: {e}", dir.display()));
    let files = journal::files(dir).map_err(io_err)?;
    let Some(&(last, _)) = files.last() else { return Ok(1) };
    let txn = db.begin_write().map_err(store_err)?;
    let mut applied = 0usize;
    {
        let mut t = FoldTables::open(&txn).map_err(store_err)?;
        for (_, path) in &files {
            let (entries, stopped) = journal::read(path).map_err(io_err)?;
            if let Some(why) = stopped {
                tracing::warn!(file = %path.display(), %why, "id store journal read up to an entry a crash cut short");
            }
            for entry in &entries {
                t.replay(entry).map_err(store_err)?;
            }
            applied += entries.len();
        }
    }
    txn.commit().map_err(store_err)?;
    journal::remove_before(dir, last + 1).map_err(io_err)?;
    tracing::info!(entries = applied, files = files.len(), "id store journal applied");
    Ok(last + 1)
}

/// The tables an entry goes to.
struct FoldTables<'t> {
    ids: redb::Table<'t, &'static str, i64>,
    surrogates: redb::Table<'t, i64, &'static str>,
    keys: redb::Table<'t, &'static str, i32>,
    messages: redb::Table<'t, i32, &'static [u8]>,
    age: redb::Table<'t, (u64, i32), ()>,
}

impl<'t> FoldTables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<FoldTables<'t>, redb::TableError> {
        Ok(FoldTables {
            ids: txn.open_table(IDS)?,
            surrogates: txn.open_table(SURROGATES)?,
            keys: txn.open_table(MESSAGE_KEYS)?,
            messages: txn.open_table(MESSAGES)?,
            age: txn.open_table(MESSAGE_AGE)?,
        })
    }

    /// Replays an entry from a journal file that may be older than what redb holds (the last
    /// file is kept until the next one is folded): a message number another key holds by now
    /// first loses that key's index and place in pruning, so that no key is left pointing at a
    /// row that is not its own. (The folder needs no such check: the writer gave the number
    /// only when it was free, or saves over the same key.)
    fn replay(&mut self, entry: &Entry) -> Result<(), redb::Error> {
        if let Entry::Message { n, key_text: text, .. } = entry {
            let held = self.messages.get(*n)?.map(|v| row_key(v.value()));
            if let Some(Ok((owner, at))) = held {
                let owner_text = key_text(&owner);
                if *owner_text != **text {
                    self.keys.remove(owner_text.as_str())?;
                    self.age.remove((at, *n))?;
                }
            }
        }
        self.apply(entry)
    }

    /// Writes an entry over whatever the tables hold for it: applying it twice changes nothing.
    fn apply(&mut self, entry: &Entry) -> Result<(), redb::Error> {
        match entry {
            Entry::Message { n, key_text, row } => {
                // A journalled row is binary; were it not, it is still stored, dated now.
                let at = RowHead::read(row).map(|h| h.at).unwrap_or_else(|_| now_ms());
                self.messages.insert(*n, &**row)?;
                self.keys.insert(&**key_text, *n)?;
                self.age.insert((at, *n), ())?;
            }
            Entry::Surrogate { n, v12 } => {
                self.surrogates.insert(*n, &**v12)?;
                self.ids.insert(&**v12, *n)?;
            }
        }
        Ok(())
    }
}

/// Entries journalled together, on their way to the folder.
struct Fold {
    /// The journal file they are in.
    file: u64,
    /// The sequence number of the last of them.
    last: u64,
    entries: Vec<Entry>,
}

/// The writer thread: decides a batch, journals it, answers.
struct Writer {
    db: Arc<Database>,
    journal: Journal,
    shared: Arc<Shared>,
    folds: std_mpsc::SyncSender<Fold>,
    /// The folder's thread, woken when the writer stops.
    folder: std::thread::Thread,
    commits: CommitTimes,
    /// The last entry's sequence number.
    seq: u64,
    /// Entries journalled and not yet removed from [`Pending`], in order: (sequence number,
    /// message number or surrogate).
    unfolded: VecDeque<(u64, Ref)>,
}

#[derive(Debug, Clone, Copy)]
enum Ref {
    Message(i32),
    Surrogate(i64),
}

enum Recv {
    Got(Write),
    /// Nothing came in time: entries the folder has committed may be let go.
    Idle,
    Closed,
}

enum Outcome {
    Surrogate(oneshot::Sender<Result<Claim<String>, IdError>>, Claim<String>),
    Message(oneshot::Sender<Result<Claim<MessageKey>, IdError>>, Claim<MessageKey>),
    Saved(oneshot::Sender<Result<(), IdError>>),
    Found(oneshot::Sender<Result<Found<i32, MessageKey>, IdError>>, Found<i32, MessageKey>),
}

impl Outcome {
    /// Sends the answer; a caller that stopped waiting misses nothing it needs.
    fn answer(self) {
        match self {
            Outcome::Surrogate(reply, claim) => drop(reply.send(Ok(claim))),
            Outcome::Message(reply, claim) => drop(reply.send(Ok(claim))),
            Outcome::Saved(reply) => drop(reply.send(Ok(()))),
            Outcome::Found(reply, found) => drop(reply.send(Ok(found))),
        }
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Write>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(error) => {
                tracing::error!(%error, "id store writer cannot start; ids will not be saved");
                return;
            }
        };
        loop {
            self.let_go_of_folded();
            self.wait_for_the_folder();
            // With entries still held, come back to let go of them once folded.
            let wait = if self.unfolded.is_empty() { None } else { Some(FOLD_EVERY) };
            let first = match recv(&rt, &mut rx, wait) {
                Recv::Got(w) => w,
                Recv::Idle => continue,
                Recv::Closed => {
                    let Writer { folds, folder, .. } = self;
                    drop(folds);
                    folder.unpark();
                    return;
                }
            };
            let mut batch = vec![first];
            drain(&mut rx, &mut batch);
            self.apply(batch);
        }
    }

    /// Removes from [`Pending`] what the folder has committed to redb (unless a later entry
    /// replaced it). Done before each batch's read of redb, so that what the batch reads is in
    /// one place or the other.
    fn let_go_of_folded(&mut self) {
        let folded = self.shared.folded.load(Ordering::Acquire);
        if self.unfolded.front().is_none_or(|&(seq, _)| seq > folded) {
            return;
        }
        let mut p = self.shared.pending.lock_unpoisoned();
        while let Some(&(seq, what)) = self.unfolded.front() {
            if seq > folded {
                break;
            }
            self.unfolded.pop_front();
            match what {
                Ref::Message(n) => {
                    if p.rows.get(&n).is_some_and(|r| r.seq == seq) {
                        if let Some(r) = p.rows.remove(&n) {
                            if p.keys.get(&r.key_text) == Some(&n) {
                                p.keys.remove(&r.key_text);
                            }
                        }
                    }
                }
                Ref::Surrogate(n) => {
                    if p.surrogates.get(&n).is_some_and(|(_, s)| *s == seq) {
                        if let Some((v12, _)) = p.surrogates.remove(&n) {
                            if p.ids.get(&v12) == Some(&n) {
                                p.ids.remove(&v12);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Holds the next batch back while the folder is too far behind.
    fn wait_for_the_folder(&mut self) {
        let mut warned = false;
        while self.seq.saturating_sub(self.shared.folded.load(Ordering::Acquire)) > MAX_UNFOLDED {
            if !warned {
                tracing::warn!(
                    unfolded = self.seq - self.shared.folded.load(Ordering::Acquire),
                    "id store writer waits for its folder"
                );
                warned = true;
            }
            std::thread::sleep(Duration::from_millis(1));
            self.let_go_of_folded();
        }
    }

    fn apply(&mut self, batch: Vec<Write>) {
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut b = Batch::default();
        let decided = (|| -> Result<(), redb::Error> {
            let txn = self.db.begin_read()?;
            let view = View {
                pending: &self.shared.pending,
                keys: txn.open_table(MESSAGE_KEYS)?,
                messages: txn.open_table(MESSAGES)?,
                surrogates: txn.open_table(SURROGATES)?,
            };
            for w in batch {
                match w {
                    Write::Surrogate { n, v12, reply } => {
                        let claim = match b.surrogate_owner(&view, n)? {
                            Some(owner) => Claim::Taken(owner),
                            None => {
                                b.surrogates.insert(n, b.entries.len());
                                b.entries.push(Entry::Surrogate { n, v12: v12.into() });
                                Claim::Inserted
                            }
                        };
                        outcomes.push(Outcome::Surrogate(reply, claim));
                    }
                    Write::Message { n, key_text, row, reply } => {
                        let claim = b.claim(&view, n, key_text, row)?;
                        outcomes.push(Outcome::Message(reply, claim));
                    }
                    Write::Save { n, key, row, reply } => {
                        b.save(&view, n, &key, key_text(&key), row)?;
                        outcomes.push(Outcome::Saved(reply));
                    }
                    Write::FindOrClaim { n, key, key_text, row, content, reply } => {
                        match b.number_of(&view, &key_text)? {
                            // Durable before this batch, and nothing to write: answered now.
                            Some((known, false)) if !content => {
                                let _ = reply.send(Ok(Found::Known(known)));
                            }
                            Some((known, _)) => {
                                if content {
                                    b.save(&view, known, &key, key_text, row)?;
                                }
                                outcomes.push(Outcome::Found(reply, Found::Known(known)));
                            }
                            None => {
                                let claim = b.claim(&view, n, key_text, row)?;
                                outcomes.push(Outcome::Found(reply, Found::Claimed(n, claim)));
                            }
                        }
                    }
                }
            }
            Ok(())
        })();
        if let Err(error) = decided {
            tracing::error!(%error, "id store lookup failed");
            // Answers not sent are dropped: their callers see the store failing.
            return;
        }
        if !b.entries.is_empty() {
            let started = Instant::now();
            // The file the batch goes to (the journal may start the next one after it).
            let file = self.journal.number();
            if let Err(error) = self.journal.append(&b.entries) {
                tracing::error!(%error, "id store journal write failed");
                return;
            }
            if let Some(histogram) = self.commits.get() {
                histogram.observe(started.elapsed().as_secs_f64());
            }
            self.publish(b, file);
        }
        for outcome in outcomes {
            outcome.answer();
        }
    }

    /// Makes a journalled batch visible to readers and hands it to the folder.
    fn publish(&mut self, b: Batch, file: u64) {
        let first = self.seq + 1;
        {
            let mut p = self.shared.pending.lock_unpoisoned();
            for (i, entry) in b.entries.iter().enumerate() {
                let seq = first + i as u64;
                match entry {
                    Entry::Message { n, key_text, row } => {
                        p.keys.insert(key_text.clone(), *n);
                        let new = b.claimed.contains(&(i as u32));
                        let new = new || p.rows.get(n).is_some_and(|r| r.new);
                        p.rows.insert(*n, PendingRow { key_text: key_text.clone(), row: row.clone(), seq, new });
                        self.unfolded.push_back((seq, Ref::Message(*n)));
                    }
                    Entry::Surrogate { n, v12 } => {
                        p.ids.insert(v12.clone(), *n);
                        p.surrogates.insert(*n, (v12.clone(), seq));
                        self.unfolded.push_back((seq, Ref::Surrogate(*n)));
                    }
                }
            }
        }
        self.seq += b.entries.len() as u64;
        self.shared.journalled.store(self.seq, Ordering::Release);
        let fold = Fold { file, last: self.seq, entries: b.entries };
        // The folder is gone only when its thread died: the entries stay in the journal and are
        // applied when the store opens next.
        if self.folds.send(fold).is_err() {
            tracing::error!("id store folder stopped; journalled ids reach the database at the next start");
        }
    }
}

/// Takes what is waiting, up to a batch.
fn drain(rx: &mut mpsc::Receiver<Write>, batch: &mut Vec<Write>) {
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(w) => batch.push(w),
            Err(_) => break,
        }
    }
}

/// Waits for the next write, no longer than `wait` when given.
fn recv(rt: &tokio::runtime::Runtime, rx: &mut mpsc::Receiver<Write>, wait: Option<Duration>) -> Recv {
    let got = match wait {
        Some(wait) => match rt.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
            Ok(got) => got,
            Err(_) => return Recv::Idle,
        },
        None => rt.block_on(rx.recv()),
    };
    match got {
        Some(w) => Recv::Got(w),
        None => Recv::Closed,
    }
}

/// What the writer reads decisions against, after what its batch decided: the entries pending
/// for redb, then redb as of the batch's start.
struct View<'a> {
    pending: &'a Mutex<Pending>,
    keys: redb::ReadOnlyTable<&'static str, i32>,
    messages: redb::ReadOnlyTable<i32, &'static [u8]>,
    surrogates: redb::ReadOnlyTable<i64, &'static str>,
}

/// A stored row's key and time, or why they could not be read.
type RowOwner = Result<(MessageKey, u64), IdError>;

/// One batch's decisions: its entries, and where to find them again within the batch.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    /// Message number → its latest entry.
    rows: HashMap<i32, usize, Hasher>,
    /// Key text → message number, for the keys claimed here.
    keys: HashMap<Arc<str>, i32, Hasher>,
    /// Surrogate → its entry.
    surrogates: HashMap<i64, usize, Hasher>,
    /// Entries that claimed a number (the rest saved over one).
    claimed: std::collections::HashSet<u32, Hasher>,
}

impl Batch {
    /// Who holds message number `n`, and since when.
    fn owner_of(&self, view: &View<'_>, n: i32) -> Result<Option<RowOwner>, redb::Error> {
        if let Some(&i) = self.rows.get(&n) {
            if let Entry::Message { row, .. } = &self.entries[i] {
                return Ok(Some(row_key(row)));
            }
        }
        let pending = view.pending.lock_unpoisoned().rows.get(&n).map(|r| r.row.clone());
        if let Some(row) = pending {
            return Ok(Some(row_key(&row)));
        }
        // Only the owner's key is read: its segments are not decoded.
        Ok(view.messages.get(n)?.map(|v| row_key(v.value())))
    }

    /// The number a key holds, and whether this batch gave it (so it is not durable yet).
    fn number_of(&self, view: &View<'_>, key_text: &str) -> Result<Option<(i32, bool)>, redb::Error> {
        if let Some(&n) = self.keys.get(key_text) {
            return Ok(Some((n, true)));
        }
        if let Some(&n) = view.pending.lock_unpoisoned().keys.get(key_text) {
            return Ok(Some((n, false)));
        }
        Ok(view.keys.get(key_text)?.map(|v| (v.value(), false)))
    }

    fn surrogate_owner(&self, view: &View<'_>, n: i64) -> Result<Option<String>, redb::Error> {
        if let Some(&i) = self.surrogates.get(&n) {
            if let Entry::Surrogate { v12, .. } = &self.entries[i] {
                return Ok(Some(v12.to_string()));
            }
        }
        if let Some((v12, _)) = view.pending.lock_unpoisoned().surrogates.get(&n) {
            return Ok(Some(v12.to_string()));
        }
        Ok(view.surrogates.get(n)?.map(|v| v.value().to_owned()))
    }

    fn push_row(&mut self, n: i32, key_text: Arc<str>, row: Row) -> usize {
        let i = self.entries.len();
        self.rows.insert(n, i);
        self.entries.push(Entry::Message { n, key_text, row: row.into_bytes().into() });
        i
    }

    /// Claims `n` for the row unless the number is taken (then says by which key).
    fn claim(
        &mut self,
        view: &View<'_>,
        n: i32,
        key_text: String,
        mut row: Row,
    ) -> Result<Claim<MessageKey>, redb::Error> {
        Ok(match self.owner_of(view, n)? {
            Some(Ok((owner, _))) => Claim::Taken(owner),
            // An unreadable row cannot be told apart from a collision: probe on.
            Some(Err(_)) => Claim::Taken(MessageKey::default()),
            None => {
                row.set_at(now_ms());
                // One copy of the key for the batch, its entry, and then the pending tables.
                let key_text: Arc<str> = key_text.into();
                self.keys.insert(key_text.clone(), n);
                let i = self.push_row(n, key_text, row);
                self.claimed.insert(i as u32);
                Claim::Inserted
            }
        })
    }

    /// Replaces the row under `n` when it is `key`'s, keeping its time (and so its place in
    /// pruning).
    fn save(
        &mut self,
        view: &View<'_>,
        n: i32,
        key: &MessageKey,
        key_text: String,
        mut row: Row,
    ) -> Result<(), redb::Error> {
        if let Some(Ok((owner, at))) = self.owner_of(view, n)? {
            if owner == *key {
                row.set_at(at);
                let claimed_here = self.rows.get(&n).is_some_and(|i| self.claimed.contains(&(*i as u32)));
                let i = self.push_row(n, key_text.into(), row);
                if claimed_here {
                    self.claimed.insert(i as u32);
                }
            }
        }
        Ok(())
    }
}

/// The folder thread: applies journalled entries to redb, deletes the journal files it holds,
/// prunes.
struct Folder {
    db: Arc<Database>,
    shared: Arc<Shared>,
    journal_dir: PathBuf,
    retention: Retention,
}

impl Folder {
    fn run(self, rx: std_mpsc::Receiver<Fold>) {
        let every = self.retention.prune_every;
        let mut last_prune = Instant::now() - every;
        let mut gathered: Vec<Fold> = Vec::new();
        let mut closed = false;
        loop {
            if gathered.is_empty() {
                if closed {
                    return;
                }
                if last_prune.elapsed() >= every {
                    match prune(&self.db, self.retention) {
                        // More to prune: come back right after folding what is waiting.
                        Ok(true) => {}
                        Ok(false) => last_prune = Instant::now(),
                        Err(error) => {
                            tracing::error!(%error, "pruning old message ids failed");
                            last_prune = Instant::now();
                        }
                    }
                }
                let wait = (last_prune + every).saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait) {
                    Ok(fold) => gathered.push(fold),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            // Let entries gather for a while, then take them all: one large commit instead of
            // many small ones, and no wake-up per batch the writer sends.
            // (The writer wakes the folder early when it stops, to fold what is left.)
            std::thread::park_timeout(FOLD_EVERY);
            let mut count: usize = gathered.iter().map(|f| f.entries.len()).sum();
            while count < FOLD_MAX && !closed {
                match rx.try_recv() {
                    Ok(fold) => {
                        count += fold.entries.len();
                        gathered.push(fold);
                    }
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => closed = true,
                }
            }
            match self.fold(&gathered) {
                Ok(()) => gathered.clear(),
                Err(error) => {
                    tracing::error!(%error, entries = count, "id store could not apply its journal to the database; retrying");
                    std::thread::sleep(FOLD_RETRY);
                }
            }
        }
    }

    /// One durable commit of the gathered entries; then the journal files before the last
    /// one's are no longer needed.
    fn fold(&self, gathered: &[Fold]) -> Result<(), IdError> {
        let Some(last) = gathered.last() else { return Ok(()) };
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            let mut t = FoldTables::open(&txn).map_err(store_err)?;
            for entry in gathered.iter().flat_map(|f| &f.entries) {
                t.apply(entry).map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        self.shared.folded.store(last.last, Ordering::Release);
        if let Err(error) = journal::remove_before(&self.journal_dir, last.file) {
            tracing::warn!(%error, "id store could not delete a journal file it no longer needs");
        }
        Ok(())
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

    /// A record's row as the writer journals it.
    fn row_bytes(record: &MessageRecord, at: u64) -> Arc<[u8]> {
        Row::encode(record, at).unwrap().into_bytes().into()
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
        store.settle();
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
        store.settle();
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

    /// What a crash leaves: journalled entries redb never got, the last one cut short. Opening
    /// the store applies the whole ones, and the journal starts afresh after the old files.
    #[test]
    fn a_journal_left_by_a_crash_is_applied_when_the_store_opens() {
        let d = dir("crash");
        drop(DiskStore::open(&d, Retention::default()).unwrap());
        // Let the threads of the first handle let go of the file.
        std::thread::sleep(Duration::from_millis(100));
        let (first, second) = (said("bot", "m1", "one"), said("bot", "m2", "two"));
        let row = |r: &MessageRecord| row_bytes(r, now_ms());
        let entries = [
            Entry::Message { n: 11, key_text: key_text(&first.key).into(), row: row(&first) },
            Entry::Surrogate { n: 5_000_000_007, v12: "wxid_crash".into() },
            Entry::Message { n: 12, key_text: key_text(&second.key).into(), row: row(&second) },
        ];
        let journal_dir = d.join("journal");
        let mut journal = Journal::create(&journal_dir, 41).unwrap();
        journal.append(&entries[..2]).unwrap();
        journal.append(&entries[2..]).unwrap();
        let path = journal::files(&journal_dir).unwrap().pop().unwrap().1;
        let mut bytes = std::fs::read(&path).unwrap();
        let end = journal.end() as usize;
        bytes[end - 3..end].fill(0);
        std::fs::write(&path, &bytes).unwrap();

        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let numbers: Vec<u64> = journal::files(&journal_dir).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, vec![42], "the old file applied and gone, a new one after it");
        assert_eq!(block_on(store.message_of(11)).unwrap(), Some(first.clone()));
        assert_eq!(block_on(store.message_id_of(&first.key)).unwrap(), Some(11));
        assert_eq!(block_on(store.v12_of_surrogate(5_000_000_007)).unwrap().as_deref(), Some("wxid_crash"));
        assert_eq!(block_on(store.message_of(12)).unwrap(), None, "the entry cut short was never answered");
        // Taken numbers stay taken.
        assert_eq!(block_on(store.claim_message(11, &second)).unwrap(), Claim::Taken(first.key.clone()));
        assert_eq!(block_on(store.claim_message(12, &second)).unwrap(), Claim::Inserted);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A number pruned and claimed again while the journal file still held its first claim:
    /// replayed in order, the second owner keeps it and the first key points nowhere.
    #[test]
    fn a_replayed_number_claimed_twice_is_the_second_keys_alone() {
        let d = dir("replay-twice");
        let (first, second) = (said("bot", "old", "one"), said("bot", "new", "two"));
        let now = now_ms();
        let mut journal = Journal::create(&d.join("journal"), 1).unwrap();
        journal
            .append(&[
                Entry::Message { n: 11, key_text: key_text(&first.key).into(), row: row_bytes(&first, now - 10) },
                Entry::Message { n: 11, key_text: key_text(&second.key).into(), row: row_bytes(&second, now) },
            ])
            .unwrap();
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        assert_eq!(block_on(store.message_of(11)).unwrap(), Some(second.clone()));
        assert_eq!(block_on(store.message_id_of(&second.key)).unwrap(), Some(11));
        assert_eq!(block_on(store.message_id_of(&first.key)).unwrap(), None);
        let ages = store.read(|t| Ok(t.open_table(MESSAGE_AGE)?.len()?)).unwrap();
        assert_eq!(ages, 1, "one place in pruning, the second's");
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A claim is readable as soon as it is answered (from the journal's entries), and the same
    /// once the folder has put it into redb and the writer has let go of it.
    #[test]
    fn a_claim_reads_the_same_before_and_after_it_is_folded() {
        let d = dir("folded");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let r = said("bot", "m", "hello");
        assert_eq!(block_on(store.claim_message(3, &r)).unwrap(), Claim::Inserted);
        assert_eq!(block_on(store.claim_surrogate(5_000_000_003, "wxid_f")).unwrap(), Claim::Inserted);
        let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        let read = |s: &DiskStore| {
            (
                block_on(s.message_of(3)).unwrap(),
                block_on(s.message_id_of(&r.key)).unwrap(),
                block_on(s.surrogate_of("wxid_f")).unwrap(),
            )
        };
        let expected = (Some(r.clone()), Some(3), Some(5_000_000_003));
        assert_eq!(read(&fresh), expected, "journalled");
        // (Counted twice for a moment if the folder commits just now.)
        assert!((1..=2).contains(&store.message_count().unwrap()));
        store.settle();
        let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        assert_eq!(read(&fresh), expected, "in redb");
        assert_eq!(store.message_count().unwrap(), 1);
        let on_disk = store.read(|t| Ok(t.open_table(MESSAGES)?.get(3)?.is_some())).unwrap();
        assert!(on_disk);
        drop((store, fresh));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_row_is_a_store_error_and_its_number_is_probed_past() {
        let d = dir("damaged");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let r = said("bot", "m", "hello");
        assert_eq!(block_on(store.claim_message(3, &r)).unwrap(), Claim::Inserted);
        store.settle();
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
