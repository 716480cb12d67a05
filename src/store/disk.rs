//! The persistent id store: one redb file under `--data-dir`, and a journal beside it.
//!
//! Every "insert unless taken" is decided by its caller, under one lock, against what was
//! decided before (entries redb does not hold yet) and redb. A decided entry is visible to
//! every reader at once and carries a ticket, its place in the [`journal`]. The syncer thread
//! appends what was decided meanwhile to the journal and syncs it (`fdatasync`): decisions made
//! during one sync share the next (group commit), and in a burst the next waits a sync's time
//! more, so that a burst pays for fewer syncs. No id reaches a bot before its ticket is on
//! disk, so an id a bot has been given survives a restart and `kill -9`. A caller waits for its
//! ticket before it returns, except inside [`crate::store::deferring`]: the event path
//! translates an event (several ids, one after another) without waiting, then waits once for
//! the last ticket before the event is delivered. A second thread, the folder, applies the
//! journalled entries to redb in large transactions (every [`FOLD_EVERY`] at most), durable only
//! when they let journal files go (the journal holds every entry until redb holds it for good),
//! deletes those files, and prunes old message ids by count and age in small batches between
//! its commits. Opening the store applies what a crash left in the journal.
//!
//! Reads look at the entries not folded yet first, then redb.
//!
//! A message's row is binary ([`crate::core::record`]: version byte, time, key, body). Files
//! written before that hold JSON rows (`{"record": …, "at": …}`); they are read as they are,
//! told apart by their first byte, and a JSON row becomes binary when its record is saved again.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;

use crate::core::ids::{Claim, Found, IdError, IdStore, MessageKey, MessageRecord};
use crate::core::record::{self, Row, RowHead};
use crate::store::filter::{Filters, Keeper, Table};
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
/// upper levels of every table at the default retention (a million messages: about 2 MiB of
/// branch pages), far below redb's own default of 1 GiB. What does not fit is read back from the
/// file (the operating system's cache, not this process). A page costs more than its 4 KiB in
/// the allocator: 16 MiB of cache raised the peak RSS of a million events with random message
/// ids by 15–19 MiB over this default, and made them no faster.
pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;

/// Journalled batches waiting for the folder before the syncer waits.
const FOLD_QUEUE: usize = 4096;
/// Most message ids pruned in one transaction.
const PRUNE_BATCH: usize = 5_000;
/// How long journalled entries wait at most before the folder applies them to redb: a few
/// large commits a second instead of one per batch.
pub const FOLD_EVERY: Duration = Duration::from_millis(50);
/// Entries the folder applies between two offers of its CPU to the runtime's threads (each
/// is a few microseconds of B-tree work).
const YIELD_EVERY: usize = 32;
/// Most entries applied to redb in one transaction.
const FOLD_MAX: usize = 16_384;
/// Most entries decided and not yet in redb; decisions wait for the folder beyond it, so what
/// the process keeps of them (a few hundred bytes each) stays bounded.
const MAX_UNFOLDED: u64 = 16_384;
/// Two batches in a row of at least this many entries, each come at [`BURST_RATE`] or more, are
/// a burst: the syncer lets the next one grow before syncing it.
const BURST_FROM: usize = 8;
/// Entries a second, counted over a batch and its sync.
const BURST_RATE: f64 = 40_000.0;
/// The longest a batch is let grow.
const MAX_GROW: Duration = Duration::from_micros(500);

/// One journal sync, as the syncer remembers it.
#[derive(Debug, Default, Clone, Copy)]
struct Batch {
    entries: usize,
    took: Duration,
}

impl Batch {
    /// Whether the entries came as fast as a burst's (decided while the sync before took).
    fn burst(&self) -> bool {
        self.entries >= BURST_FROM && self.entries as f64 >= BURST_RATE * self.took.as_secs_f64()
    }
}
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

type Hasher = foldhash::fast::RandomState;

/// A decided message row redb may not hold yet.
#[derive(Debug)]
struct PendingRow {
    key_text: Arc<str>,
    row: Arc<[u8]>,
    /// Which journal entry writes it (a later one for the same number replaces it).
    seq: u64,
    /// Claimed (a number redb did not have), not saved over one it had.
    new: bool,
}

/// The entries decided and not yet folded into redb, with the sequence number of the journal
/// entry each one is: readers look here before redb, and an entry is durable once the journal
/// is synced up to its number. Entries are added as they are decided and removed once the
/// folder has committed them.
#[derive(Debug, Default)]
struct Pending {
    rows: HashMap<i32, PendingRow, Hasher>,
    keys: HashMap<Arc<str>, (i32, u64), Hasher>,
    surrogates: HashMap<i64, (Box<str>, u64), Hasher>,
    ids: HashMap<Box<str>, (i64, u64), Hasher>,
}

/// Every decision, made by the caller itself under the store's one lock.
#[derive(Debug, Default)]
struct State {
    pending: Pending,
    /// Entries decided and not yet taken by the syncer, in order.
    open: Vec<Entry>,
    /// The last entry's sequence number.
    seq: u64,
    /// Entries not yet removed from [`Pending`], in order: (sequence number, message number or
    /// surrogate).
    unfolded: VecDeque<(u64, Ref)>,
    /// Why the journal can no longer be written: decisions fail from then on.
    failed: Option<String>,
    /// What decisions read of redb, kept between them until the folder next writes redb.
    snapshot: Option<Snapshot>,
    /// Which v12 ids redb may hold, once the folder has built them: an id they rule out is not
    /// looked up.
    filters: Option<Arc<Filters>>,
}

/// A read transaction of redb and the tables opened in it so far, kept for the decisions that
/// follow: beginning one and opening its tables was about a third of what a new message's
/// decision cost. The folder drops it under the lock once it has committed (a fold or a prune),
/// so a decision never reads redb as it was before an entry was let go of from [`Pending`].
struct Snapshot {
    txn: redb::ReadTransaction,
    messages: std::cell::OnceCell<redb::ReadOnlyTable<i32, &'static [u8]>>,
    keys: std::cell::OnceCell<redb::ReadOnlyTable<&'static str, i32>>,
    surrogates: std::cell::OnceCell<redb::ReadOnlyTable<i64, &'static str>>,
    ids: std::cell::OnceCell<redb::ReadOnlyTable<&'static str, i64>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

#[derive(Debug, Clone, Copy)]
enum Ref {
    Message(i32),
    Surrogate(i64),
}

/// How far the journal is on disk, as the syncer tells the callers that wait for it.
#[derive(Debug, Clone, Default)]
struct Durable {
    seq: u64,
    failed: Option<String>,
}

/// What the callers, the syncer and the folder share.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// The last journal entry synced to disk.
    durable: tokio::sync::watch::Sender<Durable>,
    /// The last journal entry redb holds.
    folded: AtomicU64,
    /// Told after each fold, for decisions waiting for the folder to catch up.
    fold_done: tokio::sync::Notify,
    /// The syncer is parked, waiting for entries (or for the store to close).
    syncer_idle: AtomicBool,
    /// Decisions have had to wait for the folder, and it has not caught up since.
    behind: AtomicBool,
    closed: AtomicBool,
    /// The syncer's thread, to wake when entries are decided or the store closes.
    syncer: std::sync::OnceLock<std::thread::Thread>,
}

impl Shared {
    fn durable_seq(&self) -> u64 {
        self.durable.borrow().seq
    }

    fn wake_syncer(&self) {
        if self.syncer_idle.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.syncer.get() {
                t.unpark();
            }
        }
    }
}

/// Stops the syncer (and with it the folder) once the last handle on the store is gone, and
/// waits for both: what was decided is journalled and folded, and the file is free, when the
/// last handle is dropped.
#[derive(Debug)]
struct Open {
    shared: Arc<Shared>,
    /// The syncer's, then the folder's.
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        // Idle or not, the syncer looks at `closed` before it parks again.
        if let Some(t) = self.shared.syncer.get() {
            t.unpark();
        }
        for thread in std::mem::take(&mut self.threads) {
            if thread.join().is_err() {
                tracing::error!("an id store thread panicked; its journal is applied at the next start");
            }
        }
    }
}

/// The redb-backed [`IdStore`].
#[derive(Debug, Clone)]
pub struct DiskStore {
    db: Arc<Database>,
    shared: Arc<Shared>,
    _open: Arc<Open>,
    /// Where the syncer records how long each journal sync took, once the bridge gives one.
    commits: CommitTimes,
    /// Surrogates read or claimed here, on disk: a known one needs no lock or read transaction.
    surrogates: SurrogateCache,
}

/// The histogram commit times go to, shared with the syncer thread.
pub type CommitTimes = Arc<std::sync::OnceLock<prometheus_client::metrics::histogram::Histogram>>;

fn store_err(e: impl std::fmt::Display) -> IdError {
    IdError::Store(e.to_string())
}

/// A message key as redb's key table holds it: the account, U+001F, the v12 message id. (Built
/// by hand: `format!` took about 700 instructions, twice for each event.)
fn key_text(key: &MessageKey) -> String {
    let mut text = String::with_capacity(key.self_id.len() + 1 + key.message_id.len());
    text.push_str(&key.self_id);
    text.push('\u{1f}');
    text.push_str(&key.message_id);
    text
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl DiskStore {
    /// Opens (or creates) `<dir>/bridge.redb` with the default page cache and starts its threads.
    pub fn open(dir: &Path, retention: Retention) -> Result<DiskStore, IdError> {
        DiskStore::open_with_cache(dir, retention, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) `<dir>/bridge.redb` with a page cache of `cache_bytes`, applies what
    /// the journal (`<dir>/journal/`) holds, and starts the syncer and folder threads.
    pub fn open_with_cache(dir: &Path, retention: Retention, cache_bytes: usize) -> Result<DiskStore, IdError> {
        std::fs::create_dir_all(dir).map_err(|e| store_err(format!("{}: {e}", dir.display())))?;
        let path = dir.join("bridge.redb");
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| store_err(format!("{}: {e}", path.display())))?;
        create_tables(&db).map_err(store_err)?;
        let journal_dir = dir.join("journal");
        let next = recover(&db, &journal_dir)?;
        let journal =
            Journal::create(&journal_dir, next).map_err(|e| store_err(format!("{}: {e}", journal_dir.display())))?;
        DiskStore::start(db, journal, journal_dir, retention)
    }

    /// Starts the syncer and folder threads on an opened database and journal.
    fn start(db: Database, journal: Journal, journal_dir: PathBuf, retention: Retention) -> Result<DiskStore, IdError> {
        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            durable: tokio::sync::watch::Sender::new(Durable::default()),
            folded: AtomicU64::new(0),
            fold_done: tokio::sync::Notify::new(),
            syncer_idle: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            syncer: std::sync::OnceLock::new(),
        });
        let (folds_tx, folds_rx) = std_mpsc::sync_channel(FOLD_QUEUE);
        let commits = CommitTimes::default();
        let folder = Folder { db: db.clone(), shared: shared.clone(), journal_dir, retention };
        let folder_thread = std::thread::Builder::new()
            .name("id-store-folder".into())
            .spawn(move || folder.run(folds_rx))
            .map_err(store_err)?;
        let folder = folder_thread.thread().clone();
        let syncer = Syncer { journal, shared: shared.clone(), folds: folds_tx, folder, commits: commits.clone() };
        let syncer_thread = std::thread::Builder::new()
            .name("id-store-syncer".into())
            .spawn(move || syncer.run())
            .map_err(store_err)?;
        let _ = shared.syncer.set(syncer_thread.thread().clone());
        let open = Arc::new(Open { shared: shared.clone(), threads: vec![syncer_thread, folder_thread] });
        Ok(DiskStore { db, shared, _open: open, commits, surrogates: SurrogateCache::default() })
    }

    /// Where commit times are recorded: set the histogram once, and every journal sync of a
    /// batch of writes from then on is observed in it (seconds).
    pub fn commit_times(&self) -> CommitTimes {
        self.commits.clone()
    }

    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>) -> Result<T, IdError> {
        let txn = self.db.begin_read().map_err(store_err)?;
        f(&txn).map_err(store_err)
    }

    /// Decides under the lock: `f` sees what is pending, and redb through `view` (a read
    /// transaction begun after the lock was taken, so that what was let go of is in it).
    /// Holds the caller back while the folder is far behind.
    async fn decide<T>(&self, f: impl FnOnce(&mut State, &View<'_>) -> Result<T, IdError>) -> Result<T, IdError> {
        loop {
            // Registered before the check, so that a fold finishing in between is not missed.
            let folded = self.shared.fold_done.notified();
            let behind =
                self.shared.state.lock_unpoisoned().seq.saturating_sub(self.shared.folded.load(Ordering::Acquire));
            if behind <= MAX_UNFOLDED {
                break;
            }
            // Once until the folder has caught up, not once per waiting caller.
            if !self.shared.behind.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    unfolded = behind,
                    "id store waits for its folder: ids are decided faster than redb takes them"
                );
            }
            folded.await;
        }
        let decided = {
            let mut state = self.shared.state.lock_unpoisoned();
            if let Some(why) = &state.failed {
                return Err(store_err(why));
            }
            let view = View { db: &self.db, snapshot: state.snapshot.take().map(Into::into).unwrap_or_default() };
            let before = state.seq;
            let decided = f(&mut state, &view);
            state.snapshot = view.snapshot.into_inner();
            (decided, state.seq > before)
        };
        if decided.1 {
            self.shared.wake_syncer();
        }
        decided.0
    }

    /// Returns once the journal holds entry `ticket` on disk; inside [`deferring`] it returns
    /// at once and the ticket is left for the caller of that to wait on.
    async fn on_disk(&self, ticket: u64) -> Result<(), IdError> {
        if ticket == 0 || ticket <= self.shared.durable_seq() || super::defer(ticket) {
            return Ok(());
        }
        self.wait_on_disk(ticket).await
    }

    /// Waits until the journal holds entry `ticket` on disk.
    pub async fn wait_on_disk(&self, ticket: u64) -> Result<(), IdError> {
        let mut rx = self.shared.durable.subscribe();
        let durable = rx
            .wait_for(|d| d.seq >= ticket || d.failed.is_some())
            .await
            .map_err(|_| store_err("the id store stopped"))?;
        if durable.seq >= ticket {
            return Ok(());
        }
        Err(store_err(durable.failed.as_deref().unwrap_or("the id store stopped")))
    }

    /// Whether the folder has built the filters the decisions read.
    #[cfg(test)]
    fn filters_built(&self) -> bool {
        self.shared.state.lock_unpoisoned().filters.is_some()
    }

    /// How many message ids are stored: those in redb and those decided for it. (While the
    /// folder commits, a message may be counted in both for a moment.)
    pub fn message_count(&self) -> Result<u64, IdError> {
        let decided = self.shared.state.lock_unpoisoned().pending.rows.values().filter(|r| r.new).count() as u64;
        Ok(self.read(|t| Ok(t.open_table(MESSAGES)?.len()?))? + decided)
    }

    /// Waits until redb holds everything decided and nothing is pending (tests that then
    /// change redb behind the store's back: decisions read redb afresh from then on).
    #[cfg(test)]
    fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut state = self.shared.state.lock_unpoisoned();
            if state.pending.rows.is_empty() && state.pending.surrogates.is_empty() && state.open.is_empty() {
                state.snapshot = None;
                return;
            }
            drop(state);
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
        let (pending, maybe) = {
            let state = self.shared.state.lock_unpoisoned();
            (state.pending.ids.get(v12).copied(), state.may_hold(Table::Ids, v12))
        };
        let (n, ticket) = match pending {
            Some((n, seq)) => (Some(n), seq),
            None if !maybe => (None, 0),
            None => (self.read(|t| Ok(t.open_table(IDS)?.get(v12)?.map(|v| v.value())))?, 0),
        };
        self.on_disk(ticket).await?;
        if let Some(n) = n.filter(|_| ticket <= self.shared.durable_seq()) {
            self.surrogates.learn(n, v12);
        }
        Ok(n)
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        let (claim, ticket) = self.decide(|state, view| state.claim_surrogate(view, n, v12).map_err(store_err)).await?;
        self.on_disk(ticket).await?;
        // What the cache learns is on disk.
        if ticket <= self.shared.durable_seq() {
            self.surrogates.learn_claim(n, &claim, v12);
        }
        Ok(claim)
    }

    /// An id the cache does not know (most likely one never seen) is one decision: looked up
    /// through the decisions' kept read transaction and claimed in the same step, where a
    /// lookup of its own began a read transaction for each new id.
    async fn find_or_claim_surrogate(
        &self,
        first: impl FnOnce() -> i64 + Send,
        v12: &str,
    ) -> Result<Found<i64, String>, IdError> {
        if let Some(n) = self.surrogates.surrogate_of(v12) {
            return Ok(Found::Known(n));
        }
        let (found, ticket) =
            self.decide(|state, view| state.find_or_claim_surrogate(view, first, v12).map_err(store_err)).await?;
        self.on_disk(ticket).await?;
        // What the cache learns is on disk.
        if ticket <= self.shared.durable_seq() {
            self.surrogates.learn_found(&found, v12);
        }
        Ok(found)
    }

    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        if let Some(v12) = self.surrogates.v12_of(n) {
            return Ok(Some(v12));
        }
        let pending =
            self.shared.state.lock_unpoisoned().pending.surrogates.get(&n).map(|(v12, seq)| (v12.to_string(), *seq));
        let (v12, ticket) = match pending {
            Some((v12, seq)) => (Some(v12), seq),
            None => (self.read(|t| Ok(t.open_table(SURROGATES)?.get(n)?.map(|v| v.value().to_owned())))?, 0),
        };
        self.on_disk(ticket).await?;
        if let Some(v12) = v12.as_deref().filter(|_| ticket <= self.shared.durable_seq()) {
            self.surrogates.learn_owner(n, v12);
        }
        Ok(v12)
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        let k = key_text(key);
        let (pending, maybe) = {
            let state = self.shared.state.lock_unpoisoned();
            (state.pending.keys.get(k.as_str()).copied(), state.may_hold(Table::Messages, &k))
        };
        let (n, ticket) = match pending {
            Some((n, seq)) => (Some(n), seq),
            None if !maybe => (None, 0),
            None => (self.read(|t| Ok(t.open_table(MESSAGE_KEYS)?.get(k.as_str())?.map(|v| v.value())))?, 0),
        };
        self.on_disk(ticket).await?;
        Ok(n)
    }

    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        let row = Row::encode(record, 0)?;
        let key_text = key_text(&record.key);
        let (claim, ticket) = self.decide(|state, view| state.claim(view, n, key_text, row).map_err(store_err)).await?;
        self.on_disk(ticket).await?;
        Ok(claim)
    }

    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        let row = Row::encode(record, 0)?;
        let ticket = self
            .decide(|state, view| state.save(view, n, &record.key, key_text(&record.key), row).map_err(store_err))
            .await?;
        self.on_disk(ticket).await
    }

    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        let pending = self.shared.state.lock_unpoisoned().pending.rows.get(&n).map(|r| (r.row.clone(), r.seq));
        if let Some((row, seq)) = pending {
            self.on_disk(seq).await?;
            return row_record(&row).map(Some);
        }
        let bytes = self.read(|t| Ok(t.open_table(MESSAGES)?.get(n)?.map(|v| v.value().to_vec())))?;
        bytes.map(|b| row_record(&b)).transpose()
    }

    /// A message with its content (one just received, most likely new) is one decision that
    /// looks the key up itself: no read first, and a message first claimed as a reply target
    /// gets its content in the same step. A reference without content (a reply target, a
    /// recalled message: most likely known) is read first, without the lock.
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
        let (n, key_text, content) = (first(), key_text(&record.key), record.content.is_some());
        let (found, ticket) = self
            .decide(|state, view| state.find_or_claim(view, n, &record.key, key_text, row, content).map_err(store_err))
            .await?;
        self.on_disk(ticket).await?;
        Ok(found)
    }
}

/// Creates the tables a new file lacks.
fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        txn.open_table(IDS)?;
        txn.open_table(SURROGATES)?;
        txn.open_table(MESSAGE_KEYS)?;
        txn.open_table(MESSAGES)?;
        txn.open_table(MESSAGE_AGE)?;
    }
    txn.commit()?;
    Ok(())
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
    /// row that is not its own. (The folder needs no such check: a decision gave the number
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
        self.apply_numbered(entry)?;
        match entry {
            Entry::Message { n, key_text, .. } => {
                self.keys.insert(&**key_text, *n)?;
            }
            Entry::Surrogate { n, v12 } => {
                self.ids.insert(&**v12, *n)?;
            }
        }
        Ok(())
    }

    /// [`apply`](Self::apply) without the index by v12 id: the row, its age and the surrogate.
    fn apply_numbered(&mut self, entry: &Entry) -> Result<(), redb::Error> {
        match entry {
            Entry::Message { n, row, .. } => {
                // A journalled row is binary; were it not, it is still stored, dated now.
                let at = RowHead::read(row).map(|h| h.at).unwrap_or_else(|_| now_ms());
                self.messages.insert(*n, &**row)?;
                self.age.insert((at, *n), ())?;
            }
            Entry::Surrogate { n, v12 } => {
                self.surrogates.insert(*n, &**v12)?;
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

/// The syncer thread: takes what the callers decided, journals it, and says how far the
/// journal is on disk.
struct Syncer {
    journal: Journal,
    shared: Arc<Shared>,
    folds: std_mpsc::SyncSender<Fold>,
    /// The folder's thread, woken when the syncer stops.
    folder: std::thread::Thread,
    commits: CommitTimes,
}

impl Syncer {
    fn run(mut self) {
        // The last two batches: their sizes and how long their syncs took.
        let (mut last, mut before_last) = (Batch::default(), Batch::default());
        loop {
            let (entries, seq) = {
                let mut state = self.shared.state.lock_unpoisoned();
                if state.open.is_empty() {
                    if self.shared.closed.load(Ordering::Acquire) {
                        break;
                    }
                    // Decisions made from now on wake the thread.
                    self.shared.syncer_idle.store(true, Ordering::Release);
                    drop(state);
                    std::thread::park();
                    continue;
                }
                // Under a sustained burst a sync costs the process about as much CPU as the
                // entries it carries: let the batch grow for about as long as a sync takes, so
                // a burst pays for half as many. Not at a steady rate, where a batch is an entry
                // or two, nor after a slow sync there, whose large batch came slowly: either
                // would only add to the latency.
                if last.burst() && before_last.burst() && state.open.len() < last.entries {
                    drop(state);
                    std::thread::park_timeout(last.took.min(MAX_GROW));
                    state = self.shared.state.lock_unpoisoned();
                }
                (std::mem::take(&mut state.open), state.seq)
            };
            let started = Instant::now();
            let Some(file) = self.append(&entries) else { break };
            let took = started.elapsed();
            (before_last, last) = (last, Batch { entries: entries.len(), took });
            if let Some(histogram) = self.commits.get() {
                histogram.observe(took.as_secs_f64());
            }
            self.shared.durable.send_modify(|d| d.seq = seq);
            // The folder is gone only when its thread died: the entries stay in the journal and
            // are applied when the store opens next.
            if self.folds.send(Fold { file, last: seq, entries }).is_err() {
                tracing::error!("id store folder stopped; journalled ids reach the database at the next start");
            }
        }
        let Syncer { folds, folder, .. } = self;
        drop(folds);
        folder.unpark();
    }

    /// Journals the entries and syncs them; says to which file. A failed write is tried again
    /// once (the journal goes on in a new file); when that fails too, the store stops taking
    /// decisions and everyone waiting is told.
    fn append(&mut self, entries: &[Entry]) -> Option<u64> {
        let mut file = self.journal.number();
        let mut written = self.journal.append(entries);
        if let Err(error) = &written {
            tracing::error!(%error, "id store journal write failed; writing again in a new file");
            file = self.journal.number();
            written = self.journal.append(entries);
        }
        let error = match written {
            Ok(()) => return Some(file),
            Err(error) => error,
        };
        let why =
            format!("the id store journal cannot be written ({error}); restart the bridge once the disk is fixed");
        tracing::error!(error = %why, "id store stops");
        self.shared.state.lock_unpoisoned().failed = Some(why.clone());
        self.shared.durable.send_modify(|d| d.failed = Some(why));
        None
    }
}

/// What a decision reads of redb: the kept [`Snapshot`], or one begun when first needed (under
/// the lock, so after anything let go of from [`Pending`] is in redb).
struct View<'a> {
    db: &'a Database,
    snapshot: std::cell::OnceCell<Snapshot>,
}

/// A stored row's key and time, or why they could not be read.
type RowOwner = Result<(MessageKey, u64), IdError>;

impl View<'_> {
    fn snapshot(&self) -> Result<&Snapshot, redb::Error> {
        if let Some(snapshot) = self.snapshot.get() {
            return Ok(snapshot);
        }
        let txn = self.db.begin_read()?;
        let fresh = Snapshot {
            txn,
            messages: Default::default(),
            keys: Default::default(),
            surrogates: Default::default(),
            ids: Default::default(),
        };
        Ok(self.snapshot.get_or_init(|| fresh))
    }

    /// `table` of the snapshot, opened the first time it is needed.
    fn table<'s, K: redb::Key + 'static, V: redb::Value + 'static>(
        &'s self,
        pick: impl FnOnce(&'s Snapshot) -> &'s std::cell::OnceCell<redb::ReadOnlyTable<K, V>>,
        table: TableDefinition<K, V>,
    ) -> Result<&'s redb::ReadOnlyTable<K, V>, redb::Error> {
        let snapshot = self.snapshot()?;
        let cell = pick(snapshot);
        if let Some(open) = cell.get() {
            return Ok(open);
        }
        let open = snapshot.txn.open_table(table)?;
        Ok(cell.get_or_init(|| open))
    }

    fn row_owner(&self, n: i32) -> Result<Option<RowOwner>, redb::Error> {
        // Only the owner's key is read: its segments are not decoded.
        Ok(self.table(|s| &s.messages, MESSAGES)?.get(n)?.map(|v| row_key(v.value())))
    }

    fn number_of(&self, key_text: &str) -> Result<Option<i32>, redb::Error> {
        Ok(self.table(|s| &s.keys, MESSAGE_KEYS)?.get(key_text)?.map(|v| v.value()))
    }

    fn surrogate_owner(&self, n: i64) -> Result<Option<String>, redb::Error> {
        Ok(self.table(|s| &s.surrogates, SURROGATES)?.get(n)?.map(|v| v.value().to_owned()))
    }

    fn surrogate_number(&self, v12: &str) -> Result<Option<i64>, redb::Error> {
        Ok(self.table(|s| &s.ids, IDS)?.get(v12)?.map(|v| v.value()))
    }
}

/// The decisions. Each answers with a ticket: the journal entry it relies on (0: redb's).
impl State {
    /// False when redb surely does not hold `id` as a key of `table`.
    fn may_hold(&self, table: Table, id: &str) -> bool {
        self.filters.as_ref().is_none_or(|f| f.may_hold(table, id))
    }

    /// Who holds message number `n`, since when, and the entry that says so.
    fn owner_of(&self, view: &View<'_>, n: i32) -> Result<Option<(RowOwner, u64)>, redb::Error> {
        if let Some(r) = self.pending.rows.get(&n) {
            return Ok(Some((row_key(&r.row), r.seq)));
        }
        Ok(view.row_owner(n)?.map(|owner| (owner, 0)))
    }

    /// The number a key holds, and the entry that gave it.
    fn number_of(&self, view: &View<'_>, key_text: &str) -> Result<Option<(i32, u64)>, redb::Error> {
        if let Some(&found) = self.pending.keys.get(key_text) {
            return Ok(Some(found));
        }
        if !self.may_hold(Table::Messages, key_text) {
            return Ok(None);
        }
        Ok(view.number_of(key_text)?.map(|n| (n, 0)))
    }

    /// Makes an entry visible to every reader and hands it to the syncer.
    fn push(&mut self, entry: Entry, claimed: bool) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        match &entry {
            Entry::Message { n, key_text, row } => {
                let new = claimed || self.pending.rows.get(n).is_some_and(|r| r.new);
                self.pending.keys.insert(key_text.clone(), (*n, seq));
                self.pending.rows.insert(*n, PendingRow { key_text: key_text.clone(), row: row.clone(), seq, new });
                self.unfolded.push_back((seq, Ref::Message(*n)));
            }
            Entry::Surrogate { n, v12 } => {
                self.pending.ids.insert(v12.clone(), (*n, seq));
                self.pending.surrogates.insert(*n, (v12.clone(), seq));
                self.unfolded.push_back((seq, Ref::Surrogate(*n)));
            }
        }
        self.open.push(entry);
        seq
    }

    fn claim_surrogate(&mut self, view: &View<'_>, n: i64, v12: &str) -> Result<(Claim<String>, u64), redb::Error> {
        if let Some((owner, seq)) = self.pending.surrogates.get(&n) {
            return Ok((Claim::Taken(owner.to_string()), *seq));
        }
        if let Some(owner) = view.surrogate_owner(n)? {
            return Ok((Claim::Taken(owner), 0));
        }
        Ok((Claim::Inserted, self.push(Entry::Surrogate { n, v12: v12.into() }, true)))
    }

    /// `v12`'s surrogate, else a claim of `first()` for it.
    fn find_or_claim_surrogate(
        &mut self,
        view: &View<'_>,
        first: impl FnOnce() -> i64,
        v12: &str,
    ) -> Result<(Found<i64, String>, u64), redb::Error> {
        if let Some(&(n, seq)) = self.pending.ids.get(v12) {
            return Ok((Found::Known(n), seq));
        }
        if self.may_hold(Table::Ids, v12) {
            if let Some(n) = view.surrogate_number(v12)? {
                return Ok((Found::Known(n), 0));
            }
        }
        let n = first();
        let (claim, seq) = self.claim_surrogate(view, n, v12)?;
        Ok((Found::Claimed(n, claim), seq))
    }

    /// Claims `n` for the row unless the number is taken (then says by which key).
    fn claim(
        &mut self,
        view: &View<'_>,
        n: i32,
        key_text: String,
        mut row: Row,
    ) -> Result<(Claim<MessageKey>, u64), redb::Error> {
        Ok(match self.owner_of(view, n)? {
            Some((Ok((owner, _)), seq)) => (Claim::Taken(owner), seq),
            // An unreadable row cannot be told apart from a collision: probe on.
            Some((Err(_), seq)) => (Claim::Taken(MessageKey::default()), seq),
            None => {
                row.set_at(now_ms());
                // One copy of the key for its entry and the pending tables.
                let entry = Entry::Message { n, key_text: key_text.into(), row: row.into_bytes().into() };
                (Claim::Inserted, self.push(entry, true))
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
    ) -> Result<u64, redb::Error> {
        if let Some((Ok((owner, at)), _)) = self.owner_of(view, n)? {
            if owner == *key {
                row.set_at(at);
                let entry = Entry::Message { n, key_text: key_text.into(), row: row.into_bytes().into() };
                return Ok(self.push(entry, false));
            }
        }
        Ok(0)
    }

    /// The key's number (its row given the content, when `content`), else a claim of `n`.
    fn find_or_claim(
        &mut self,
        view: &View<'_>,
        n: i32,
        key: &MessageKey,
        key_text: String,
        row: Row,
        content: bool,
    ) -> Result<(Found<i32, MessageKey>, u64), redb::Error> {
        match self.number_of(view, &key_text)? {
            Some((known, seq)) => {
                let saved = if content { self.save(view, known, key, key_text, row)? } else { 0 };
                Ok((Found::Known(known), seq.max(saved)))
            }
            None => {
                let (claim, seq) = self.claim(view, n, key_text, row)?;
                Ok((Found::Claimed(n, claim), seq))
            }
        }
    }

    /// Removes from [`Pending`] what the folder has committed to redb up to `folded` (unless a
    /// later entry replaced it).
    fn let_go_of_folded(&mut self, folded: u64) {
        // What is let go of is read from redb from now on, as it is after the fold.
        self.snapshot = None;
        let p = &mut self.pending;
        while let Some(&(seq, what)) = self.unfolded.front() {
            if seq > folded {
                break;
            }
            self.unfolded.pop_front();
            match what {
                Ref::Message(n) => {
                    if p.rows.get(&n).is_some_and(|r| r.seq == seq) {
                        if let Some(r) = p.rows.remove(&n) {
                            if p.keys.get(&r.key_text).is_some_and(|&(k, _)| k == n) {
                                p.keys.remove(&r.key_text);
                            }
                        }
                    }
                }
                Ref::Surrogate(n) => {
                    if p.surrogates.get(&n).is_some_and(|(_, s)| *s == seq) {
                        if let Some((v12, _)) = p.surrogates.remove(&n) {
                            if p.ids.get(&v12).is_some_and(|&(k, _)| k == n) {
                                p.ids.remove(&v12);
                            }
                        }
                    }
                }
            }
        }
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
        let mut filters = Keeper::default();
        // The oldest journal file kept: its entries may be in redb only as a commit not yet
        // durable.
        let mut kept_from = 0u64;
        loop {
            self.keep_filters(&mut filters);
            if gathered.is_empty() {
                if closed {
                    return;
                }
                if last_prune.elapsed() >= every {
                    let pruned = prune(&self.db, self.retention);
                    // Decisions read what is left from now on.
                    self.shared.state.lock_unpoisoned().snapshot = None;
                    match pruned {
                        // More to prune: come back right after folding what is waiting.
                        Ok(true) => {}
                        Ok(false) => last_prune = Instant::now(),
                        Err(error) => {
                            tracing::error!(%error, "pruning old message ids failed");
                            last_prune = Instant::now();
                        }
                    }
                }
                let mut wait = (last_prune + every).saturating_duration_since(Instant::now());
                if filters.building() {
                    // Idle: build on, a chunk at a time, unless a fold comes.
                    wait = Duration::ZERO;
                }
                match rx.recv_timeout(wait) {
                    Ok(fold) => gathered.push(fold),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            // Let entries gather for a while, then take them all: one large commit instead of
            // many small ones, and no wake-up per batch the syncer sends.
            // (The syncer wakes the folder early when it stops, to fold what is left.)
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
            match self.fold(&gathered, &mut kept_from, closed, &mut filters) {
                Ok(()) => gathered.clear(),
                Err(error) => {
                    tracing::error!(%error, entries = count, "id store could not apply its journal to the database; retrying");
                    std::thread::sleep(FOLD_RETRY);
                }
            }
        }
    }

    /// One commit of the gathered entries. It is durable only when it lets journal files go
    /// (their entries must then be in redb for good) or when the store closes: the journal
    /// holds every entry until then, and a crash replays it. A durable commit writes each page
    /// the entries touched and syncs the file; where a message's or a user's v12 id is random
    /// (a UUID), that is a page for each, and a sync of the journal that came during it waited
    /// for it: a stall of a few milliseconds twenty times a second. Left to redb's write buffer
    /// between durable commits, a page touched again is written once.
    fn fold(&self, gathered: &[Fold], kept_from: &mut u64, closing: bool, filters: &mut Keeper) -> Result<(), IdError> {
        let Some(last) = gathered.last() else { return Ok(()) };
        let mut txn = self.db.begin_write().map_err(store_err)?;
        let durable = closing || last.file > *kept_from;
        if !durable {
            txn.set_durability(redb::Durability::None).map_err(store_err)?;
        }
        {
            let mut t = FoldTables::open(&txn).map_err(store_err)?;
            // The tables keyed by numbers and times take their entries in order, at their ends.
            // The two keyed by v12 ids take theirs sorted by key: where those ids are random
            // (UUIDs), entries that share a page then follow one another, and the page is read
            // and copied once per fold instead of once per entry. The sort is stable, so the
            // later of two entries for one key still wins.
            let mut keys: Vec<(&str, i32)> = Vec::new();
            let mut ids: Vec<(&str, i64)> = Vec::new();
            // A fold of a few hundred entries with random keys takes a millisecond or two of
            // CPU; woken by its timer, the thread would take that from a runtime worker in one
            // piece, and every event on that worker would wait for it.
            let mut written = 0usize;
            let mut pace = || {
                written += 1;
                if written % YIELD_EVERY == 0 {
                    std::thread::yield_now();
                }
            };
            for entry in gathered.iter().flat_map(|f| &f.entries) {
                pace();
                t.apply_numbered(entry).map_err(store_err)?;
                match entry {
                    Entry::Message { n, key_text, .. } => keys.push((key_text, *n)),
                    Entry::Surrogate { n, v12 } => ids.push((v12, *n)),
                }
            }
            keys.sort_by(|a, b| a.0.cmp(b.0));
            ids.sort_by(|a, b| a.0.cmp(b.0));
            for (key, n) in keys {
                pace();
                t.keys.insert(key, n).map_err(store_err)?;
            }
            for (id, n) in ids {
                pace();
                t.ids.insert(id, n).map_err(store_err)?;
            }
        }
        txn.commit().map_err(store_err)?;
        // Into the filters before the ids leave the pending entries (below, under the lock that
        // the decisions take).
        filters.folded(gathered.iter().flat_map(|f| &f.entries).map(|entry| match entry {
            Entry::Message { key_text, .. } => (Table::Messages, &**key_text),
            Entry::Surrogate { v12, .. } => (Table::Ids, &**v12),
        }));
        self.shared.folded.store(last.last, Ordering::Release);
        let unfolded = {
            let mut state = self.shared.state.lock_unpoisoned();
            state.let_go_of_folded(last.last);
            state.seq.saturating_sub(last.last)
        };
        self.shared.fold_done.notify_waiters();
        if unfolded <= MAX_UNFOLDED / 2 && self.shared.behind.swap(false, Ordering::AcqRel) {
            tracing::info!(unfolded, "id store folder caught up");
        }
        if durable {
            *kept_from = last.file;
            if let Err(error) = journal::remove_before(&self.journal_dir, last.file) {
                tracing::warn!(%error, "id store could not delete a journal file it no longer needs");
            }
        }
        Ok(())
    }
}

impl Folder {
    /// A step of the filters' upkeep (see [`Keeper::step`]); new filters go to the decisions.
    fn keep_filters(&self, filters: &mut Keeper) {
        match filters.step(&self.db, MESSAGE_KEYS, IDS) {
            Ok(Some(built)) => self.shared.state.lock_unpoisoned().filters = Some(built),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "building the id store's filters failed; lookups read the database meanwhile");
                filters.abandon();
            }
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

    /// A record's row as a decision journals it.
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

    /// Decisions keep one read transaction between them. An entry the folder lets go of is read
    /// from redb afterwards, never from a transaction begun before the fold: there it is
    /// missing, and the message would be given a second number.
    #[test]
    fn a_message_folded_since_the_last_decision_keeps_its_number() {
        let d = dir("snapshot");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        for round in 0..3 {
            let m = said("bot", &format!("m{round}"), "hello");
            let first = 100 + round;
            assert_eq!(
                block_on(store.find_or_claim_message(|| first, &m)).unwrap(),
                Found::Claimed(first, Claim::Inserted)
            );
            // Waits for the fold without touching the kept transaction (as `settle` does).
            let deadline = Instant::now() + Duration::from_secs(10);
            while !store.shared.state.lock_unpoisoned().pending.rows.is_empty() {
                assert!(Instant::now() < deadline, "the store did not fold");
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(
                block_on(store.find_or_claim_message(|| 200, &m)).unwrap(),
                Found::Known(first),
                "round {round}"
            );
            assert_eq!(block_on(store.claim_message(first, &said("bot", "other", "x"))).unwrap(), Claim::Taken(m.key));
        }
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

    /// An id the cache does not know is looked up and claimed in one decision: found pending,
    /// found in the file, claimed, or its first candidate found taken by another id.
    #[test]
    fn find_or_claim_surrogate_finds_pending_and_stored_ids_and_claims_new_ones() {
        let d = dir("find-or-claim-surrogate");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let uncached = || DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        let unused = || -> i64 { panic!("no candidate is needed for a known id") };
        let claimed = block_on(store.find_or_claim_surrogate(|| 5_000_000_001, "wxid_a")).unwrap();
        assert_eq!(claimed, Found::Claimed(5_000_000_001, Claim::Inserted));
        let second = block_on(uncached().find_or_claim_surrogate(|| 5_000_000_002, "wxid_b")).unwrap();
        assert_eq!(second, Found::Claimed(5_000_000_002, Claim::Inserted));
        // Most likely still pending (folds come every 50 ms); found either way.
        assert_eq!(
            block_on(uncached().find_or_claim_surrogate(unused, "wxid_b")).unwrap(),
            Found::Known(5_000_000_002)
        );
        store.settle();
        let other = uncached();
        assert_eq!(block_on(other.find_or_claim_surrogate(unused, "wxid_a")).unwrap(), Found::Known(5_000_000_001));
        assert_eq!(other.surrogates.surrogate_of("wxid_a"), Some(5_000_000_001), "learnt once on disk");
        assert_eq!(
            block_on(other.find_or_claim_surrogate(|| 5_000_000_001, "wxid_c")).unwrap(),
            Found::Claimed(5_000_000_001, Claim::Taken("wxid_a".into())),
            "a candidate another id holds in the file"
        );
        drop((store, other));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Folds commit to redb without syncing it, except the one that lets journal files go: a
    /// copy of the store's directory taken while it runs (what a crash leaves) opens with every
    /// id it gave, and the journal does not pile up.
    #[test]
    fn a_copy_taken_while_the_store_runs_opens_with_every_id_given() {
        let d = dir("copy-running");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let first = said("bot", "first", "one");
        assert_eq!(block_on(store.claim_message(1, &first)).unwrap(), Claim::Inserted);
        store.settle();
        // Rows of 1 MiB: the journal moves on to a new file past 16 of them.
        let big: Vec<MessageRecord> = (0..20).map(|i| said("bot", &format!("big{i}"), &"x".repeat(1 << 20))).collect();
        for (i, record) in big.iter().enumerate() {
            assert_eq!(block_on(store.claim_message(10 + i as i32, record)).unwrap(), Claim::Inserted);
        }
        store.settle();
        let last = said("bot", "last", "three");
        assert_eq!(block_on(store.claim_message(100, &last)).unwrap(), Claim::Inserted);
        assert_eq!(block_on(store.claim_surrogate(5_000_000_003, "wxid_last")).unwrap(), Claim::Inserted);
        store.settle();
        let files = journal::files(&d.join("journal")).unwrap();
        assert!(files.len() <= 2, "folded files are let go of: {files:?}");

        let copy = dir("copy-running-copy");
        std::fs::create_dir_all(copy.join("journal")).unwrap();
        std::fs::copy(d.join("bridge.redb"), copy.join("bridge.redb")).unwrap();
        for (_, path) in &files {
            std::fs::copy(path, copy.join("journal").join(path.file_name().unwrap())).unwrap();
        }
        let reopened = DiskStore::open(&copy, Retention::default()).unwrap();
        assert_eq!(block_on(reopened.message_of(1)).unwrap(), Some(first));
        for (i, record) in big.iter().enumerate() {
            assert_eq!(block_on(reopened.message_id_of(&record.key)).unwrap(), Some(10 + i as i32), "big{i}");
        }
        assert_eq!(block_on(reopened.message_of(100)).unwrap(), Some(last));
        assert_eq!(block_on(reopened.v12_of_surrogate(5_000_000_003)).unwrap().as_deref(), Some("wxid_last"));
        drop((store, reopened));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&copy);
    }

    /// Inside `deferring`, ids are given before the journal is synced; the ticket covers every
    /// one of them: once it is on disk, so is each entry. Outside it, a claim returns only once
    /// its entry is on disk.
    #[test]
    fn ids_given_without_waiting_are_on_disk_once_their_ticket_is() {
        let d = dir("deferred");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let records: Vec<_> = (0..20).map(|i| said("bot", &format!("m{i}"), "hi")).collect();
        let (claims, ticket) = block_on(crate::store::deferring(async {
            let mut claims = Vec::new();
            for (i, r) in records.iter().enumerate() {
                claims.push(store.claim_message(100 + i as i32, r).await.unwrap());
            }
            assert_eq!(store.claim_surrogate(5_000_000_007, "wxid_d").await.unwrap(), Claim::Inserted);
            claims
        }));
        assert!(claims.iter().all(|c| *c == Claim::Inserted), "{claims:?}");
        assert_eq!(ticket, 21, "the last of the 21 entries");
        block_on(store.wait_on_disk(ticket)).unwrap();
        assert!(store.shared.durable_seq() >= ticket);
        let mut on_disk = Vec::new();
        for (_, path) in journal::files(&d.join("journal")).unwrap() {
            on_disk.extend(journal::read(&path).unwrap().0);
        }
        for i in 0..20 {
            assert!(
                on_disk.iter().any(|e| matches!(e, Entry::Message { n, .. } if *n == 100 + i)),
                "message {i} journalled"
            );
        }
        assert!(on_disk.iter().any(|e| matches!(e, Entry::Surrogate { n: 5_000_000_007, .. })));
        assert_eq!(block_on(store.message_id_of(&records[3].key)).unwrap(), Some(103));
        // Not deferred: on disk when answered.
        assert_eq!(block_on(store.claim_message(300, &said("bot", "late", "x"))).unwrap(), Claim::Inserted);
        assert!(store.shared.durable_seq() >= store.shared.state.lock_unpoisoned().seq);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// What the store keeps of entries not yet in redb is bounded: past [`MAX_UNFOLDED`] of them a
    /// decision waits for the folder (here held back by a write transaction of the test's), and
    /// goes on once a fold has caught up.
    #[test]
    fn past_the_bound_a_decision_waits_for_the_folder() {
        use futures::FutureExt;
        let d = dir("unfolded");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let held = store.db.begin_write().unwrap();
        let surrogate = |n: u64| (5_000_000_000 + n as i64, format!("wxid_{n}"));
        block_on(crate::store::deferring(async {
            for n in 0..=MAX_UNFOLDED {
                let (n, v12) = surrogate(n);
                assert_eq!(store.claim_surrogate(n, &v12).await.unwrap(), Claim::Inserted);
            }
        }));
        let (n, v12) = surrogate(MAX_UNFOLDED + 1);
        let mut next = Box::pin(store.claim_surrogate(n, &v12));
        for _ in 0..5 {
            assert!((&mut next).now_or_never().is_none(), "decided past the bound with the folder held back");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(held);
        let mut claim = None;
        wait_for("the decision, once the folder was let go", || {
            claim = (&mut next).now_or_never();
            claim.is_some()
        });
        assert_eq!(claim.unwrap().unwrap(), Claim::Inserted);
        drop(next);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The syncer lets a batch grow only in a burst: not at a steady rate (an entry or two per
    /// sync), nor after one slow sync there (many entries, come slowly), whose events are late
    /// already.
    #[test]
    fn only_a_bursts_batches_are_let_grow() {
        let batch = |entries, micros| Batch { entries, took: Duration::from_micros(micros) };
        assert!(!batch(1, 150).burst(), "a steady rate");
        assert!(!batch(10, 2_000).burst(), "one slow sync at a steady rate");
        assert!(!batch(5, 50).burst(), "too few entries to be worth waiting for");
        assert!(batch(12, 150).burst(), "80 000 entries a second");
    }

    /// A journal that cannot be written (here: every write fails, as on a full disk) stops the
    /// store: a caller waiting for its entry is told, an event's ticket is never on disk, and
    /// later decisions fail at once instead of giving ids that would be lost.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_journal_that_cannot_be_written_stops_the_store_and_says_why() {
        let d = dir("full");
        let journal_dir = d.join("journal");
        std::fs::create_dir_all(&journal_dir).unwrap();
        for number in 1..=2 {
            std::os::unix::fs::symlink("/dev/full", journal_dir.join(format!("{number:020}.log"))).unwrap();
        }
        let db = redb::Builder::new().create(d.join("bridge.redb")).unwrap();
        create_tables(&db).unwrap();
        let journal = Journal::create(&journal_dir, 1).unwrap();
        let store = DiskStore::start(db, journal, journal_dir, Retention::default()).unwrap();
        let Err(IdError::Store(why)) = block_on(store.claim_message(3, &said("bot", "a", "x"))) else {
            panic!("a claim that never reached the disk was answered")
        };
        assert!(why.contains("journal cannot be written"), "{why}");
        let (claim, ticket) = block_on(crate::store::deferring(store.claim_message(4, &said("bot", "b", "y"))));
        // Refused at once, or given and then never on disk.
        if claim.is_ok() {
            assert!(block_on(store.wait_on_disk(ticket)).is_err());
        }
        assert!(block_on(store.claim_surrogate(5_000_000_009, "wxid_full")).is_err());
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// What a crash leaves: journalled entries redb never got, the last one cut short. Opening
    /// the store applies the whole ones, and the journal starts afresh after the old files.
    #[test]
    fn a_journal_left_by_a_crash_is_applied_when_the_store_opens() {
        let d = dir("crash");
        // Dropped, it has let go of the file.
        drop(DiskStore::open(&d, Retention::default()).unwrap());
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
    /// once the folder has put it into redb and let go of it.
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

    /// The folder writes the indexes by v12 id sorted by key, the rest in order: ids claimed in
    /// no order at all, many to a fold, read back from redb as they were claimed.
    #[test]
    fn ids_claimed_in_any_order_read_back_once_folded() {
        let d = dir("any-order");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        // Keys and ids that sort in a different order from their numbers.
        let key = |i: i32| format!("{:08x}", (i as u32).wrapping_mul(0x9e37_79b9));
        let records: Vec<MessageRecord> = (1..=300).map(|i| said("bot", &key(i), &format!("m{i}"))).collect();
        for (i, r) in (1..).zip(&records) {
            assert_eq!(block_on(store.claim_message(i, r)).unwrap(), Claim::Inserted);
            let id = format!("u{}", key(-i));
            assert_eq!(block_on(store.claim_surrogate(5_000_000_000 + i as i64, &id)).unwrap(), Claim::Inserted);
        }
        store.settle();
        assert!(store.filters_built(), "lookups go through the filters");
        let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        for (i, r) in (1..).zip(&records) {
            assert_eq!(block_on(fresh.message_id_of(&r.key)).unwrap(), Some(i), "{}", r.key.message_id);
            assert_eq!(block_on(fresh.message_of(i)).unwrap().as_ref(), Some(r));
            let id = format!("u{}", key(-i));
            assert_eq!(block_on(fresh.surrogate_of(&id)).unwrap(), Some(5_000_000_000 + i as i64), "{id}");
        }
        let in_redb = store.read(|t| Ok((t.open_table(MESSAGE_KEYS)?.len()?, t.open_table(IDS)?.len()?))).unwrap();
        assert_eq!(in_redb, (300, 300));
        drop((store, fresh));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// After a restart the filters are built from what redb holds: every id given before is
    /// found again with its number, in every way a lookup goes, and a new one is claimed.
    #[test]
    fn ids_given_before_a_restart_are_found_once_the_filters_are_built() {
        let d = dir("filters");
        let key = |i: i32| format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
        let user = |i: i32| format!("wxid_{}", key(-i));
        let records: Vec<MessageRecord> = (1..=9_000).map(|i| said("bot", &key(i), "x")).collect();
        {
            let store = DiskStore::open(&d, Retention::default()).unwrap();
            for (i, r) in (1..).zip(&records) {
                assert_eq!(block_on(store.claim_message(i, r)).unwrap(), Claim::Inserted);
                if i <= 5_000 {
                    assert_eq!(block_on(store.claim_surrogate(i as i64, &user(i))).unwrap(), Claim::Inserted);
                }
            }
        }
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        wait_for("the filters' build", || store.filters_built());
        for (i, r) in (1..).zip(&records) {
            assert_eq!(block_on(store.message_id_of(&r.key)).unwrap(), Some(i));
            let found = block_on(store.find_or_claim_message(|| 100_000 + i, r)).unwrap();
            assert_eq!(found, Found::Known(i), "{}", r.key.message_id);
        }
        for i in 1..=5_000 {
            let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
            assert_eq!(block_on(fresh.surrogate_of(&user(i))).unwrap(), Some(i as i64));
            let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
            assert_eq!(
                block_on(fresh.find_or_claim_surrogate(|| 9_999_999, &user(i))).unwrap(),
                Found::Known(i as i64)
            );
        }
        let new = said("bot", "never-given", "x");
        assert_eq!(block_on(store.message_id_of(&new.key)).unwrap(), None);
        assert_eq!(
            block_on(store.find_or_claim_message(|| 9_500, &new)).unwrap(),
            Found::Claimed(9_500, Claim::Inserted)
        );
        assert_eq!(block_on(store.surrogate_of("wxid_never")).unwrap(), None);
        drop(store);
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
        // store's back (nothing is pending).
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
