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
//! journalled entries to redb in large transactions (every `folder::FOLD_EVERY` at most), durable
//! when they let journal files go (the journal holds every entry until redb holds it for good)
//! and once `folder::DURABLE_EVERY` entries were folded without, deletes those files, and prunes
//! old message ids by count and age in batches between its commits (not synced on their own).
//! The two tables keyed by digests of v12 ids, and the surrogates' rows (keyed by a hash of the
//! id), take their entries later than the rest: the folder holds them in memory until
//! `folder::HELD_MAX` have gathered or a commit lets journal files go, then writes them sorted
//! (their keys are random, and a few at a time cost a page each once the tables outgrow the
//! page cache), a part per commit between the folds that come meanwhile; pruned messages'
//! digests leave their table with that batch. A
//! durable commit's pages are written back in pieces before redb syncs its file (`paced`), so
//! that the journal's syncs do not wait behind them all.
//! Opening the store applies what a crash left in the journal.
//!
//! Reads look at the entries not folded yet first, then the held digests and a batch of them on
//! its way, then redb (past
//! filters that rule out most ids redb never held, and most numbers it has no row under: a new
//! message's claim of a number reads no row).
//!
//! Here: opening, recovery and the [`IdStore`] calls. `decide`: the decisions and what they
//! read; `syncer` and `folder`: the two threads; `filter`: the filters of the ids redb holds;
//! `paced`: redb's file.
//!
//! A message's row is binary ([`crate::core::record`]: version byte, time, key, body). Files
//! written before that hold JSON rows (`{"record": …, "at": …}`); they are read as they are,
//! told apart by their first byte, and a JSON row becomes binary when its record is saved again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;

use crate::core::ids::{Claim, Found, IdError, IdStore, MessageKey, MessageRecord};
use crate::core::record::{self, Row, RowHead};
use crate::store::journal::{self, Journal};
use crate::store::surrogates::SurrogateCache;
use crate::sync::LockUnpoisoned;

mod decide;
mod filter;
mod folder;
pub(in crate::store) mod paced;
mod syncer;

use decide::{State, Unfolded, View};
use filter::Table;
use folder::{FoldTables, Folder};
use syncer::Syncer;

/// ([`digest`] of a v12 id, its surrogate) → (): the ids with a digest are a range, each checked
/// against [`SURROGATES`] ([`surrogate_number`]).
const IDS: TableDefinition<(u64, i64), ()> = TableDefinition::new("id_digests");
/// surrogate → v12 id.
const SURROGATES: TableDefinition<i64, &str> = TableDefinition::new("surrogates");
/// ([`digest`] of `self_id \u{1f} message_id`, its v11 message_id) → (): checked against the
/// row's key ([`message_number`]).
const MESSAGE_KEYS: TableDefinition<(u64, i32), ()> = TableDefinition::new("message_digests");
/// The two tables above as files before the digests held them, keyed by the text itself:
/// moved into those once, when such a file is opened ([`migrate`]).
const TEXT_IDS: TableDefinition<&str, i64> = TableDefinition::new("ids");
const TEXT_MESSAGE_KEYS: TableDefinition<&str, i32> = TableDefinition::new("message_keys");
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
/// Most entries decided and not yet in redb; decisions wait for the folder beyond it, so what
/// the process keeps of them stays bounded.
const MAX_UNFOLDED: u64 = 16_384;
/// Most bytes of ids and rows in those entries ([`journal::Entry::bytes`]); decisions wait for
/// the folder beyond it too. A message's row holds its content: 16 384 short messages are a few
/// MiB, but texts of 2 KiB kept 35 MiB waiting for redb at the count's bound alone, and a
/// backend's frame may be 16 MiB.
const MAX_UNFOLDED_BYTES: u64 = 4 << 20;

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
    /// What the operator has been told of those waits.
    behind_log: Mutex<BehindLog>,
    closed: AtomicBool,
    /// The syncer's thread, to wake when entries are decided or the store closes.
    syncer: std::sync::OnceLock<std::thread::Thread>,
    /// The folder's thread, to wake when decisions wait for it.
    folder: std::sync::OnceLock<std::thread::Thread>,
    /// Digests of pruned messages that redb's `message_digests` may still hold: they leave it
    /// with the next batch of held digests (see `folder::prune`). Lookups skip them meanwhile,
    /// as they skip any digest whose number's row is not the key's. Only the folder reads them,
    /// so they are not under the lock the decisions take.
    pruned_keys: Mutex<Vec<(u64, i32)>>,
}

/// How often the store says again that decisions wait for its folder, while they go on doing so.
/// A sustained burst of new random ids makes the folder the slowest stage: it catches up and falls
/// behind again every fraction of a second, and a line each time would bury the rest of the log.
const BEHIND_WARN_EVERY: Duration = Duration::from_secs(60);

/// The warnings about decisions waiting for the folder: the first time, then at most once every
/// [`BEHIND_WARN_EVERY`] with how many times it happened since; "caught up" only after a time
/// that was warned about.
#[derive(Debug, Default)]
struct BehindLog {
    warned: Option<Instant>,
    /// Times fallen behind since the last warning, that one included.
    times: u64,
    /// The current (or last) time was warned about.
    told: bool,
}

impl BehindLog {
    /// Decisions began waiting: `Some(times)` when that is to be logged now.
    fn fell_behind(&mut self, now: Instant) -> Option<u64> {
        self.times += 1;
        self.told = self.warned.is_none_or(|at| now.saturating_duration_since(at) >= BEHIND_WARN_EVERY);
        if !self.told {
            return None;
        }
        self.warned = Some(now);
        Some(std::mem::take(&mut self.times))
    }

    /// The folder caught up: whether to say so.
    fn caught_up(&mut self) -> bool {
        std::mem::take(&mut self.told)
    }
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

tokio::task_local! {
    /// Set while [`sharing_syncs`] polls: the stores whose syncer a decision made meanwhile has
    /// not woken yet.
    static OWED: std::cell::RefCell<Vec<Arc<Shared>>>;
}

/// Polls `polled` so that the ids decided during one of its polls wake the syncer once, after
/// that poll, instead of at the first of them: what is decided together is journalled and
/// synced together. A link's intake polls the events it translates this way; a few events read
/// together then share one sync, where the first of them would otherwise have had a sync of its
/// own and the rest waited for it to end before theirs began.
pub async fn sharing_syncs<F: std::future::Future>(polled: F) -> F::Output {
    let mut polled = std::pin::pin!(polled);
    std::future::poll_fn(|cx| {
        let (poll, owed) = OWED.sync_scope(std::cell::RefCell::new(Vec::new()), || {
            let poll = polled.as_mut().poll(cx);
            (poll, OWED.with(|owed| std::mem::take(&mut *owed.borrow_mut())))
        });
        for shared in owed {
            shared.wake_syncer();
        }
        poll
    })
    .await
}

/// Inside [`sharing_syncs`]: leaves the syncer's wake to the end of the poll, and says so.
fn owe_wake(shared: &Arc<Shared>) -> bool {
    OWED.try_with(|owed| {
        let mut owed = owed.borrow_mut();
        if !owed.iter().any(|s| Arc::ptr_eq(s, shared)) {
            owed.push(shared.clone());
        }
    })
    .is_ok()
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

/// What the two tables keyed by v12 ids hold of an id (a message key's text, or a user's or a
/// group's id): the first 64 bits of its SHA-256, beside the id's number.
///
/// An entry of 12 or 16 bytes instead of the text and its number (about 60): the tables are a
/// quarter of the size, so more of them stays in the page cache and a fold reads and writes
/// fewer pages. Where ids are random (UUIDs, as many v12 backends give) each new one lands on a
/// page of its own either way. Two ids may share a digest (by chance, or made to by a backend):
/// both entries are kept, and a lookup checks each number's own id. SHA-256 rather than a fast
/// hash so that a backend cannot make many ids share one cheaply. (It is a file format: the
/// function may not change; `digests_are_the_first_64_bits_of_sha256` pins it.)
fn digest(id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let sum = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    u64::from_be_bytes(first)
}

/// Whether `text` is `key`'s [`key_text`] (without building it).
fn is_key_text(key: &MessageKey, text: &str) -> bool {
    text.len() == key.self_id.len() + 1 + key.message_id.len()
        && text.starts_with(&*key.self_id)
        && text[key.self_id.len()..].starts_with('\u{1f}')
        && text.ends_with(&*key.message_id)
}

/// A message key's text and its [`digest`], taken before the store's lock is.
struct KeyText {
    text: String,
    digest: u64,
}

impl KeyText {
    fn of(key: &MessageKey) -> KeyText {
        let text = key_text(key);
        KeyText { digest: digest(&text), text }
    }
}

/// The number of the message whose key text this is (`d` its digest): the entries of its
/// digest, each checked against its row's key.
fn message_number(
    keys: &impl redb::ReadableTable<(u64, i32), ()>,
    messages: &impl redb::ReadableTable<i32, &'static [u8]>,
    key_text: &str,
    d: u64,
) -> Result<Option<i32>, redb::Error> {
    for entry in keys.range((d, i32::MIN)..=(d, i32::MAX))? {
        let (_, n) = entry?.0.value();
        if owns_message(messages, n, key_text)? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// Whether message `n`'s row is the key text's.
fn owns_message(
    messages: &impl redb::ReadableTable<i32, &'static [u8]>,
    n: i32,
    key_text: &str,
) -> Result<bool, redb::Error> {
    let owner = messages.get(n)?.map(|row| row_key(row.value()));
    Ok(matches!(owner, Some(Ok((owner, _))) if is_key_text(&owner, key_text)))
}

/// The surrogate of a v12 id (`d` its digest): the entries of its digest, each checked against
/// the surrogate's id.
fn surrogate_number(
    ids: &impl redb::ReadableTable<(u64, i64), ()>,
    surrogates: &impl redb::ReadableTable<i64, &'static str>,
    v12: &str,
    d: u64,
) -> Result<Option<i64>, redb::Error> {
    for entry in ids.range((d, i64::MIN)..=(d, i64::MAX))? {
        let (_, n) = entry?.0.value();
        if owns_surrogate(surrogates, n, v12)? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// Whether surrogate `n` stands for `v12`.
fn owns_surrogate(
    surrogates: &impl redb::ReadableTable<i64, &'static str>,
    n: i64,
    v12: &str,
) -> Result<bool, redb::Error> {
    Ok(surrogates.get(n)?.is_some_and(|owner| owner.value() == v12))
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
        DiskStore::open_tuned(dir, retention, cache_bytes, folder::FOLD_EVERY)
    }

    /// [`open_with_cache`](Self::open_with_cache), the folder letting entries gather for
    /// `fold_every` at most.
    fn open_tuned(
        dir: &Path,
        retention: Retention,
        cache_bytes: usize,
        fold_every: Duration,
    ) -> Result<DiskStore, IdError> {
        std::fs::create_dir_all(dir).map_err(|e| store_err(format!("{}: {e}", dir.display())))?;
        let path = dir.join("bridge.redb");
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(paced::PacedFile::new)
            .map_err(|e| store_err(format!("{}: {e}", path.display())))?;
        let mut db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create_with_backend(opened)
            .map_err(|e| store_err(format!("{}: {e}", path.display())))?;
        create_tables(&db).map_err(store_err)?;
        if migrate(&db).map_err(store_err)? {
            // The text-keyed tables' pages are free now, but the file keeps its size until
            // compacted: once, here, before anything else holds the database.
            let before = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            db.compact().map_err(|e| store_err(format!("{}: compacting: {e}", path.display())))?;
            let after = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            tracing::info!(before, after, "id store file compacted after its tables moved");
        }
        let journal_dir = dir.join("journal");
        let next = recover(&db, &journal_dir)?;
        let journal =
            Journal::start(&journal_dir, next).map_err(|e| store_err(format!("{}: {e}", journal_dir.display())))?;
        DiskStore::start(db, journal, journal_dir, retention, fold_every)
    }

    /// Starts the syncer and folder threads on an opened database and journal.
    fn start(
        db: Database,
        journal: Journal,
        journal_dir: PathBuf,
        retention: Retention,
        fold_every: Duration,
    ) -> Result<DiskStore, IdError> {
        let db = Arc::new(db);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            durable: tokio::sync::watch::Sender::new(Durable::default()),
            folded: AtomicU64::new(0),
            fold_done: tokio::sync::Notify::new(),
            syncer_idle: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            behind_log: Mutex::new(BehindLog::default()),
            closed: AtomicBool::new(false),
            syncer: std::sync::OnceLock::new(),
            folder: std::sync::OnceLock::new(),
            pruned_keys: Mutex::new(Vec::new()),
        });
        let (folds_tx, folds_rx) = std_mpsc::sync_channel(FOLD_QUEUE);
        let commits = CommitTimes::default();
        let folder = Folder { db: db.clone(), shared: shared.clone(), journal_dir, retention, fold_every };
        let folder_thread = std::thread::Builder::new()
            .name("id-store-folder".into())
            .spawn(move || folder.run(folds_rx))
            .map_err(store_err)?;
        let folder = folder_thread.thread().clone();
        let _ = shared.folder.set(folder.clone());
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
        // The wait is boxed: it is rare, and every future that decides (each translation's,
        // through every layer above it) would otherwise be as large as it is.
        if self.unfolded().over() {
            Box::pin(self.wait_for_folder()).await;
        }
        self.decide_now(f)
    }

    /// Returns once the folder is no more than [`MAX_UNFOLDED`] entries and
    /// [`MAX_UNFOLDED_BYTES`] behind.
    async fn wait_for_folder(&self) {
        loop {
            // Registered before the check, so that a fold finishing in between is not missed.
            let folded = self.shared.fold_done.notified();
            let behind = self.unfolded();
            if !behind.over() {
                return;
            }
            // The folder may be letting entries gather: what it has is enough.
            if let Some(folder) = self.shared.folder.get() {
                folder.unpark();
            }
            // Once until the folder has caught up, not once per waiting caller.
            if !self.shared.behind.swap(true, Ordering::AcqRel) {
                if let Some(times) = self.shared.behind_log.lock_unpoisoned().fell_behind(Instant::now()) {
                    tracing::warn!(
                        unfolded = behind.entries,
                        unfolded_bytes = behind.bytes,
                        times,
                        "id store waits for its folder: ids are decided faster than redb takes them"
                    );
                }
            }
            folded.await;
        }
    }

    /// Decisions journalled and not yet folded into redb.
    fn unfolded(&self) -> Unfolded {
        self.shared.state.lock_unpoisoned().unfolded(self.shared.folded.load(Ordering::Acquire))
    }

    /// Decides under the lock, now (see [`DiskStore::decide`]).
    fn decide_now<T>(&self, f: impl FnOnce(&mut State, &View<'_>) -> Result<T, IdError>) -> Result<T, IdError> {
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
        if decided.1 && !owe_wake(&self.shared) {
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
        // Boxed, as the folder's wait in `decide` is.
        Box::pin(self.wait_on_disk(ticket)).await
    }

    /// The last journal entry on disk: a ticket up to it waits for nothing.
    pub fn on_disk_to(&self) -> u64 {
        self.shared.durable_seq()
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

    /// Waits until redb holds everything decided, nothing is pending and no batch of held
    /// digests is on its way (tests that then change redb behind the store's back: decisions
    /// read redb afresh from then on).
    #[cfg(test)]
    fn settle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut state = self.shared.state.lock_unpoisoned();
            if state.pending.rows.is_empty()
                && state.pending.surrogates.is_empty()
                && state.open.is_empty()
                && state.on_its_way.is_empty()
            {
                state.snapshot = None;
                return;
            }
            drop(state);
            assert!(std::time::Instant::now() < deadline, "the store did not settle");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl IdStore for DiskStore {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        if let Some(n) = self.surrogates.surrogate_of(v12) {
            return Ok(Some(n));
        }
        let (pending, filters) = {
            let state = self.shared.state.lock_unpoisoned();
            (state.pending.ids.get(v12).copied(), state.filters.clone())
        };
        let (n, ticket) = match pending {
            Some((n, seq)) => (Some(n), seq),
            None => {
                // Digested outside the lock, and only when it is needed.
                let d = digest(v12);
                // Each held digest's surrogate, and whether its row is held too and names `v12`.
                let held: Vec<(i64, Option<bool>)> = {
                    let state = self.shared.state.lock_unpoisoned();
                    state.held_ids_of(d).map(|n| (n, state.held_row_names(n, v12))).collect()
                };
                let ruled_out = filters.is_some_and(|f| !f.may_hold(Table::Ids, d));
                if let Some(&(n, _)) = held.iter().find(|(_, owned)| *owned == Some(true)) {
                    (Some(n), 0)
                } else if held.is_empty() && ruled_out {
                    (None, 0)
                } else {
                    let number = |t: &redb::ReadTransaction| {
                        let surrogates = t.open_table(SURROGATES)?;
                        for &(n, _) in held.iter().filter(|(_, owned)| owned.is_none()) {
                            if owns_surrogate(&surrogates, n, v12)? {
                                return Ok(Some(n));
                            }
                        }
                        if ruled_out {
                            return Ok(None);
                        }
                        surrogate_number(&t.open_table(IDS)?, &surrogates, v12, d)
                    };
                    (self.read(number)?, 0)
                }
            }
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
        // Digested before the lock is taken.
        let d = digest(v12);
        let (found, ticket) =
            self.decide(|state, view| state.find_or_claim_surrogate(view, first, v12, d).map_err(store_err)).await?;
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
        let pending = {
            let state = self.shared.state.lock_unpoisoned();
            let pending = state.pending.surrogates.get(&n).map(|(v12, seq)| (v12.to_string(), *seq));
            pending.or_else(|| state.held_surrogate(n).map(|v12| (v12.to_string(), 0)))
        };
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
        let (pending, filters) = {
            let state = self.shared.state.lock_unpoisoned();
            (state.pending.keys.get(k.as_str()).copied(), state.filters.clone())
        };
        let (n, ticket) = match pending {
            Some((n, seq)) => (Some(n), seq),
            None => {
                // Digested outside the lock, and only when it is needed.
                let d = digest(&k);
                let held: Vec<i32> = self.shared.state.lock_unpoisoned().held_keys_of(d).collect();
                let ruled_out = filters.is_some_and(|f| !f.may_hold(Table::Messages, d));
                if held.is_empty() && ruled_out {
                    (None, 0)
                } else {
                    let number = |t: &redb::ReadTransaction| {
                        let messages = t.open_table(MESSAGES)?;
                        for &n in &held {
                            if owns_message(&messages, n, &k)? {
                                return Ok(Some(n));
                            }
                        }
                        if ruled_out {
                            return Ok(None);
                        }
                        message_number(&t.open_table(MESSAGE_KEYS)?, &messages, &k, d)
                    };
                    (self.read(number)?, 0)
                }
            }
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
        let (n, key_text, content) = (first(), KeyText::of(&record.key), record.content.is_some());
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

/// Moves the tables a file from before the digests keys by text ([`TEXT_IDS`],
/// [`TEXT_MESSAGE_KEYS`]) into the digest-keyed ones, [`MIGRATE_BATCH`] ids a transaction, then
/// deletes them. Runs before the journal is applied (its entries are newer). A crash on the way
/// leaves the moved ids moved and the rest to move at the next start. Says whether there was
/// anything to move.
fn migrate(db: &Database) -> Result<bool, redb::Error> {
    use redb::TableHandle;
    // Nothing to move in a file from this bridge: no write transaction (a sync) at every start.
    let legacy = [TEXT_IDS.name(), TEXT_MESSAGE_KEYS.name()];
    if !db.begin_read()?.list_tables()?.any(|t| legacy.contains(&t.name())) {
        return Ok(false);
    }
    let mut moved = [0u64; 2];
    loop {
        let txn = db.begin_write()?;
        let (ids, keys) = (move_batch(&txn, TEXT_IDS, IDS)?, move_batch(&txn, TEXT_MESSAGE_KEYS, MESSAGE_KEYS)?);
        let done = ids.is_none() && keys.is_none();
        if done {
            // Emptied now, or never there.
            txn.delete_table(TEXT_IDS)?;
            txn.delete_table(TEXT_MESSAGE_KEYS)?;
        }
        txn.commit()?;
        if moved == [0, 0] && !done {
            tracing::info!("id store moves its tables keyed by v12 ids to digests, once: a few seconds a million ids");
        }
        moved[0] += ids.unwrap_or(0);
        moved[1] += keys.unwrap_or(0);
        if done {
            break;
        }
    }
    if moved != [0, 0] {
        tracing::info!(
            ids = moved[0],
            message_keys = moved[1],
            "id store tables keyed by v12 ids now keyed by digests"
        );
    }
    Ok(true)
}

/// Ids moved to a digest-keyed table in one transaction (fewer in the tests, so that one can
/// cross a batch's end).
const MIGRATE_BATCH: usize = if cfg!(test) { 100 } else { 65_536 };

/// Moves up to [`MIGRATE_BATCH`] ids of `from` (a table keyed by text) into `to` (keyed by
/// their digests). `None` when `from` is empty or absent.
fn move_batch<V: redb::Key + for<'a> redb::Value<SelfType<'a> = V> + Copy + 'static>(
    txn: &redb::WriteTransaction,
    from: TableDefinition<&str, V>,
    to: TableDefinition<(u64, V), ()>,
) -> Result<Option<u64>, redb::Error> {
    use redb::{ReadableTable, TableHandle};
    let exists = txn.list_tables()?.any(|t| t.name() == from.name());
    if !exists {
        return Ok(None);
    }
    let mut text = txn.open_table(from)?;
    let mut digests = txn.open_table(to)?;
    let mut taken = Vec::new();
    for row in text.iter()?.take(MIGRATE_BATCH) {
        let (id, value) = row?;
        taken.push((id.value().to_owned(), value.value()));
    }
    if taken.is_empty() {
        return Ok(None);
    }
    for (id, value) in &taken {
        digests.insert((digest(id), *value), ())?;
        text.remove(&id[..])?;
    }
    Ok(Some(taken.len() as u64))
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

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::core::ids::StoredMessage;
    use crate::core::message::Segment;
    use crate::store::journal::Entry;

    /// A burst that keeps the folder behind is warned about once a minute, with how many times
    /// it fell behind meanwhile; "caught up" is said only after a time that was warned about.
    #[test]
    fn falling_behind_again_and_again_is_warned_about_once_a_minute() {
        let mut log = BehindLog::default();
        let start = Instant::now();
        assert_eq!(log.fell_behind(start), Some(1));
        assert!(log.caught_up());
        for i in 1..=100 {
            assert_eq!(log.fell_behind(start + Duration::from_millis(500 * i)), None);
            assert!(!log.caught_up());
        }
        assert_eq!(log.fell_behind(start + BEHIND_WARN_EVERY), Some(101));
        assert!(log.caught_up());
        assert!(!log.caught_up());
        assert_eq!(log.fell_behind(start + BEHIND_WARN_EVERY * 3), Some(1));
    }

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
            let mut keys = txn.open_table(TEXT_MESSAGE_KEYS).unwrap();
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

    /// Ids decided in one poll under [`sharing_syncs`] leave the syncer asleep until the poll
    /// ends, then wake it once: they are journalled and synced together.
    #[test]
    fn ids_decided_in_one_poll_wake_the_syncer_once_after_it() {
        let d = dir("sharing");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        // Idle, as between two clumps of events at a steady rate.
        wait_for("the syncer to wait for entries", || store.shared.syncer_idle.load(Ordering::Acquire));
        let records: Vec<_> = (0..5).map(|i| said("bot", &format!("m{i}"), "hello")).collect();
        let ticket = block_on(sharing_syncs(async {
            // All in this one poll: nothing here waits.
            let decided = crate::store::deferring(async {
                for (n, record) in (10..).zip(&records) {
                    assert_eq!(store.claim_message(n, record).await.unwrap(), Claim::Inserted);
                }
            });
            let ((), ticket) = futures::FutureExt::now_or_never(decided).expect("decided at once");
            assert!(ticket > 0, "the claims are journalled");
            assert!(store.shared.syncer_idle.load(Ordering::Acquire), "no decision woke the syncer");
            assert!(store.shared.durable_seq() < ticket);
            ticket
        }));
        // Woken: still at work, or already done with the entries and idle again (it goes idle
        // only after making them durable, so reading `syncer_idle` alone raced with that).
        let woken = |ticket| !store.shared.syncer_idle.load(Ordering::Acquire) || store.shared.durable_seq() >= ticket;
        assert!(woken(ticket), "woken once the poll ended");
        block_on(store.wait_on_disk(ticket)).unwrap();
        // Outside it, a decision wakes the syncer itself.
        wait_for("the syncer to wait again", || store.shared.syncer_idle.load(Ordering::Acquire));
        let (_, ticket) = block_on(crate::store::deferring(store.claim_message(20, &said("bot", "alone", "hi"))));
        assert!(woken(ticket), "woken by the decision itself");
        block_on(store.wait_on_disk(ticket)).unwrap();
        assert_eq!(block_on(store.message_of(14)).unwrap(), Some(records[4].clone()));
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

    /// The digest is part of the file format: it may not change.
    #[test]
    fn digests_are_the_first_64_bits_of_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3 96177a9c b410ff61 f20015ad
        assert_eq!(digest("abc"), 0xba7816bf_8f01cfea);
        assert_ne!(digest("bot\u{1f}1"), digest("bot\u{1f}2"));
    }

    /// Ids that share a digest (here made to, as a backend might try): each lookup finds its own
    /// number, and an id never stored is not taken for another's.
    #[test]
    fn ids_that_share_a_digest_each_find_their_own_number() {
        let d = dir("collide");
        let (a, b, c) = (said("bot", "a", "x"), said("bot", "b", "y"), said("bot", "c", "z"));
        {
            let store = DiskStore::open(&d, Retention::default()).unwrap();
            assert_eq!(block_on(store.claim_message(1, &a)).unwrap(), Claim::Inserted);
            assert_eq!(block_on(store.claim_message(2, &b)).unwrap(), Claim::Inserted);
            assert_eq!(block_on(store.claim_surrogate(11, "wxid_a")).unwrap(), Claim::Inserted);
            assert_eq!(block_on(store.claim_surrogate(12, "wxid_b")).unwrap(), Claim::Inserted);
        }
        {
            let db = redb::Database::create(d.join("bridge.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                // b's and c's digests also name a's number; wxid_b's and wxid_c's name wxid_a's.
                let mut keys = txn.open_table(MESSAGE_KEYS).unwrap();
                keys.insert((digest(&key_text(&b.key)), 1), ()).unwrap();
                keys.insert((digest(&key_text(&c.key)), 1), ()).unwrap();
                let mut ids = txn.open_table(IDS).unwrap();
                ids.insert((digest("wxid_b"), 11), ()).unwrap();
                ids.insert((digest("wxid_c"), 11), ()).unwrap();
            }
            txn.commit().unwrap();
        }
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        wait_for("the filters", || store.filters_built());
        assert_eq!(block_on(store.message_id_of(&a.key)).unwrap(), Some(1));
        assert_eq!(block_on(store.message_id_of(&b.key)).unwrap(), Some(2));
        assert_eq!(block_on(store.message_id_of(&c.key)).unwrap(), None);
        assert_eq!(block_on(store.find_or_claim_message(|| 3, &c)).unwrap(), Found::Claimed(3, Claim::Inserted));
        assert_eq!(block_on(store.surrogate_of("wxid_b")).unwrap(), Some(12));
        assert_eq!(block_on(store.surrogate_of("wxid_c")).unwrap(), None);
        let found = block_on(store.find_or_claim_surrogate(|| 13, "wxid_c")).unwrap();
        assert_eq!(found, Found::Claimed(13, Claim::Inserted));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Users with surrogates from `5_000_000_000` on, as a file from before the digests held them.
    fn write_text_keyed_users(txn: &redb::WriteTransaction, users: &[String]) {
        let mut ids = txn.open_table(TEXT_IDS).unwrap();
        let mut surrogates = txn.open_table(SURROGATES).unwrap();
        for (n, user) in (5_000_000_000..).zip(users) {
            ids.insert(user.as_str(), n).unwrap();
            surrogates.insert(n, user.as_str()).unwrap();
        }
    }

    /// A file from before the digests, its two tables keyed by the ids' text: opening it moves
    /// every id into the digest-keyed tables and deletes the old ones, across several batches
    /// and after a start that a crash cut short halfway; every id is then found the ways the
    /// bridge looks for it, none is claimed twice, and the filters are built from the new tables.
    #[test]
    fn a_file_with_text_keyed_tables_is_moved_to_digests_when_opened() {
        let d = dir("text-keys");
        std::fs::create_dir_all(&d).unwrap();
        let records: Vec<MessageRecord> = (0..250).map(|i| said("bot", &format!("{i:032x}"), "hi")).collect();
        let users: Vec<String> = (0..230).map(|i| format!("wxid_{i}")).collect();
        {
            let db = redb::Database::create(d.join("bridge.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut keys = txn.open_table(TEXT_MESSAGE_KEYS).unwrap();
                let mut messages = txn.open_table(MESSAGES).unwrap();
                let mut age = txn.open_table(MESSAGE_AGE).unwrap();
                for (n, record) in (1..).zip(&records) {
                    messages.insert(n, &*row_bytes(record, now_ms())).unwrap();
                    age.insert((now_ms(), n), ()).unwrap();
                    keys.insert(key_text(&record.key).as_str(), n).unwrap();
                }
            }
            write_text_keyed_users(&txn, &users);
            txn.commit().unwrap();
            // The start a crash cut short: one batch of each moved.
            create_tables(&db).unwrap();
            let txn = db.begin_write().unwrap();
            assert_eq!(move_batch(&txn, TEXT_IDS, IDS).unwrap(), Some(MIGRATE_BATCH as u64));
            assert_eq!(move_batch(&txn, TEXT_MESSAGE_KEYS, MESSAGE_KEYS).unwrap(), Some(MIGRATE_BATCH as u64));
            txn.commit().unwrap();
        }
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let tables: Vec<String> = {
            use redb::TableHandle;
            let txn = store.db.begin_read().unwrap();
            txn.list_tables().unwrap().map(|t| t.name().to_owned()).collect()
        };
        assert!(!tables.iter().any(|t| t == "ids" || t == "message_keys"), "{tables:?}");
        let counts = store.read(|t| Ok((t.open_table(MESSAGE_KEYS)?.len()?, t.open_table(IDS)?.len()?))).unwrap();
        assert_eq!(counts, (250, 230));
        wait_for("the filters", || store.filters_built());
        for (n, record) in (1..).zip(&records) {
            assert_eq!(block_on(store.message_id_of(&record.key)).unwrap(), Some(n));
            let found = block_on(store.find_or_claim_message(|| 9_999, record)).unwrap();
            assert_eq!(found, Found::Known(n), "not claimed again");
        }
        for (n, user) in (5_000_000_000..).zip(&users) {
            let found = block_on(store.find_or_claim_surrogate(|| 1, user)).unwrap();
            assert_eq!(found, Found::Known(n), "{user}");
        }
        assert_eq!(block_on(store.message_id_of(&said("bot", "new", "x").key)).unwrap(), None);
        drop(store);
        // Opened again: nothing left to move, every id still there.
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        assert_eq!(block_on(store.surrogate_of("wxid_7")).unwrap(), Some(5_000_000_007));
        assert_eq!(block_on(store.message_id_of(&records[200].key)).unwrap(), Some(201));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Moving the text-keyed tables frees their pages; the file is compacted once after the
    /// move, so that it shrinks rather than keeping their size for good.
    #[test]
    fn a_moved_file_is_compacted() {
        let d = dir("text-keys-compacted");
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("bridge.redb");
        let users: Vec<String> = (0..20_000).map(|i| format!("{i:0>120}")).collect();
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            write_text_keyed_users(&txn, &users);
            txn.commit().unwrap();
        }
        let before = std::fs::metadata(&path).unwrap().len();
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before, "{before} bytes before the move, {after} after");
        assert_eq!(block_on(store.surrogate_of(&users[12_345])).unwrap(), Some(5_000_012_345));
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
        txn.open_table(IDS).unwrap().remove((digest("wxid_a"), 5_000_000_001)).unwrap();
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

    /// Entries of `table` redb holds.
    fn rows_in<K: redb::Key + 'static>(store: &DiskStore, table: TableDefinition<K, ()>) -> u64 {
        store.read(|t| Ok(t.open_table(table)?.len()?)).unwrap()
    }

    /// A copy of the store's files in `d`, as a crash leaves them while the store runs: the
    /// database, and the journal's files too unless `database_only`.
    fn copy_of(d: &Path, name: &str, database_only: bool) -> PathBuf {
        let copy = dir(name);
        std::fs::create_dir_all(copy.join("journal")).unwrap();
        std::fs::copy(d.join("bridge.redb"), copy.join("bridge.redb")).unwrap();
        if !database_only {
            for (_, path) in journal::files(&d.join("journal")).unwrap() {
                std::fs::copy(&path, copy.join("journal").join(path.file_name().unwrap())).unwrap();
            }
        }
        copy
    }

    fn held(store: &DiskStore) -> (usize, usize) {
        let state = store.shared.state.lock_unpoisoned();
        (state.held_keys.len(), state.held_ids.len())
    }

    /// Surrogates' rows held in memory, and those redb holds.
    fn surrogate_rows(store: &DiskStore) -> (usize, u64) {
        let held = store.shared.state.lock_unpoisoned().held_surrogates.len();
        (held, store.read(|t| Ok(t.open_table(SURROGATES)?.len()?)).unwrap())
    }

    /// The surrogates' rows held with the digests go into their table once their ids add up to
    /// `folder::HELD_BYTES`, however few they are (the backend chooses an id's length): what is
    /// held stays under it after every fold.
    #[test]
    fn surrogates_rows_held_are_bounded_in_bytes() {
        let d = dir("held-bytes");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let long = |i: i64| format!("{i}{}", "u".repeat(1 << 20));
        for i in 0..14 {
            assert_eq!(block_on(store.claim_surrogate(5_000_000_000 + i, &long(i))).unwrap(), Claim::Inserted);
            store.settle();
            let state = store.shared.state.lock_unpoisoned();
            let held: usize = state.held_surrogates.values().map(|v12| v12.len()).sum();
            assert!(held < folder::HELD_BYTES, "{held} bytes of ids held after {} claims", i + 1);
            assert!(held <= state.held_surrogate_bytes, "{held} held, {} counted", state.held_surrogate_bytes);
        }
        assert_eq!(block_on(store.v12_of_surrogate(5_000_000_003)).unwrap(), Some(long(3)));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A fold that lets no journal file go keeps the digests of the ids it folded in memory,
    /// and the surrogates' rows with them, where every lookup finds them; they go into their
    /// tables together once there are `HELD_MAX` digests, and when the store closes.
    #[test]
    fn digests_wait_in_memory_and_go_into_their_tables_together() {
        let d = dir("held");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        // The first fold after opening is durable (the file before may be let go of): its
        // digests go in at once.
        assert_eq!(block_on(store.claim_message(1000, &said("bot", "first", "x"))).unwrap(), Claim::Inserted);
        store.settle();
        assert_eq!((held(&store), rows_in(&store, MESSAGE_KEYS)), ((0, 0), 1));
        let (a, b) = (said("bot", "a", "x"), said("bot", "b", "y"));
        assert_eq!(block_on(store.claim_message(1, &a)).unwrap(), Claim::Inserted);
        assert_eq!(block_on(store.claim_surrogate(11, "wxid_a")).unwrap(), Claim::Inserted);
        store.settle();
        assert_eq!(held(&store), (1, 1));
        assert_eq!((rows_in(&store, MESSAGE_KEYS), rows_in(&store, IDS)), (1, 0), "not in redb yet");
        assert_eq!(surrogate_rows(&store), (1, 0), "nor the surrogate's row");
        // Every way of looking an id up finds it, past the surrogates' cache too.
        assert_eq!(block_on(store.message_id_of(&a.key)).unwrap(), Some(1));
        assert_eq!(block_on(store.find_or_claim_message(|| 2, &a)).unwrap(), Found::Known(1), "with its content");
        let uncached = || DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        assert_eq!(block_on(uncached().surrogate_of("wxid_a")).unwrap(), Some(11));
        assert_eq!(block_on(uncached().surrogate_of("wxid_z")).unwrap(), None);
        assert_eq!(block_on(uncached().find_or_claim_surrogate(|| 12, "wxid_a")).unwrap(), Found::Known(11));
        assert_eq!(block_on(uncached().v12_of_surrogate(11)).unwrap().as_deref(), Some("wxid_a"));
        assert_eq!(block_on(uncached().claim_surrogate(11, "wxid_b")).unwrap(), Claim::Taken("wxid_a".into()));
        assert_eq!(surrogate_rows(&store), (1, 0), "no lookup wrote it");
        assert_eq!(block_on(store.find_or_claim_message(|| 2, &b)).unwrap(), Found::Claimed(2, Claim::Inserted));

        // Past HELD_MAX the fold puts them all in.
        for i in 0..folder::HELD_MAX as i32 {
            let record = said("bot", &format!("m{i}"), "z");
            assert_eq!(block_on(store.claim_message(100 + i, &record)).unwrap(), Claim::Inserted);
        }
        store.settle();
        let (keys, _) = held(&store);
        assert!(keys < folder::HELD_MAX, "{keys} held");
        assert_eq!(rows_in(&store, MESSAGE_KEYS) + keys as u64, 3 + folder::HELD_MAX as u64);
        assert_eq!((surrogate_rows(&store), rows_in(&store, IDS)), ((0, 1), 1), "with the digests");
        assert_eq!(block_on(uncached().v12_of_surrogate(11)).unwrap().as_deref(), Some("wxid_a"));
        for i in 0..folder::HELD_MAX as i32 {
            let record = said("bot", &format!("m{i}"), "z");
            assert_eq!(block_on(store.message_id_of(&record.key)).unwrap(), Some(100 + i));
        }

        // Closing puts the rest in; the file then answers alone.
        drop(store);
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        assert_eq!(held(&store), (0, 0));
        assert_eq!(rows_in(&store, MESSAGE_KEYS), 3 + folder::HELD_MAX as u64);
        assert_eq!(rows_in(&store, IDS), 1);
        assert_eq!(block_on(store.message_id_of(&b.key)).unwrap(), Some(2));
        assert_eq!(block_on(store.surrogate_of("wxid_a")).unwrap(), Some(11));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// While a batch of held digests goes into redb a part per commit, every id decided before
    /// is found the whole time, by every way of looking it up, and none is claimed twice; the
    /// batches are seen on their way (checked before each lookup), and once the store settles
    /// none is.
    #[test]
    fn ids_are_found_while_their_digests_go_in_part_by_part() {
        let d = dir("parts");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let uncached = || DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        let user = |i: i64| format!("user-{i}");
        let message = |i: i64| said("bot", &format!("m{i}"), "x");
        let mut seen_on_the_way = 0;
        for i in 0..400i64 {
            let n = 7_000_000_000 + i * 7_919;
            assert_eq!(block_on(store.claim_surrogate(n, &user(i))).unwrap(), Claim::Inserted);
            assert_eq!(block_on(store.claim_message(1 + i as i32, &message(i))).unwrap(), Claim::Inserted);
            // This one and a spread of the ones before.
            for j in (0..=i).rev().step_by(13) {
                seen_on_the_way += store.shared.state.lock_unpoisoned().on_its_way.len();
                let n = 7_000_000_000 + j * 7_919;
                assert_eq!(block_on(uncached().surrogate_of(&user(j))).unwrap(), Some(n), "{}", user(j));
                assert_eq!(block_on(uncached().find_or_claim_surrogate(|| 1, &user(j))).unwrap(), Found::Known(n));
                assert_eq!(block_on(uncached().v12_of_surrogate(n)).unwrap(), Some(user(j)));
                assert_eq!(block_on(store.message_id_of(&message(j).key)).unwrap(), Some(1 + j as i32));
            }
        }
        assert!(seen_on_the_way > 0, "no batch was seen on its way");
        store.settle();
        assert!(store.shared.state.lock_unpoisoned().on_its_way.is_empty());
        let (keys, ids) = held(&store);
        assert_eq!(rows_in(&store, MESSAGE_KEYS) + keys as u64, 400);
        assert_eq!(rows_in(&store, IDS) + ids as u64, 400);
        assert_eq!(surrogate_rows(&store).0 as u64 + surrogate_rows(&store).1, 400);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A message pruned while its digest is held leaves nothing behind: the digest never goes
    /// into the table, and its key is found nowhere.
    #[test]
    fn a_message_pruned_while_its_digest_is_held_leaves_no_digest() {
        let d = dir("held-pruned");
        let retention =
            Retention { max_messages: 3, max_age: Duration::from_secs(3600), prune_every: Duration::from_millis(10) };
        let store = DiskStore::open(&d, retention).unwrap();
        // The first fold is durable (its digest goes in); the ones after it hold theirs.
        let first = said("bot", "first", "x");
        assert_eq!(block_on(store.claim_message(1000, &first)).unwrap(), Claim::Inserted);
        store.settle();
        let records: Vec<MessageRecord> = (0..8).map(|i| said("bot", &format!("p{i}"), "x")).collect();
        for (i, record) in records.iter().enumerate() {
            assert_eq!(block_on(store.claim_message(1 + i as i32, record)).unwrap(), Claim::Inserted);
        }
        wait_for("the pruning", || store.message_count().unwrap() <= 3);
        wait_for("the held digests to follow", || held(&store).0 <= 3);
        assert_eq!(held(&store).0, 3);
        // The first message's digest leaves the table with the next batch of held digests.
        assert_eq!(rows_in(&store, MESSAGE_KEYS), 1);
        assert_eq!(store.shared.pruned_keys.lock_unpoisoned().len(), 6);
        for record in std::iter::once(&first).chain(&records[..5]) {
            assert_eq!(block_on(store.message_id_of(&record.key)).unwrap(), None, "pruned");
        }
        for (i, record) in records.iter().enumerate().skip(5) {
            assert_eq!(block_on(store.message_id_of(&record.key)).unwrap(), Some(1 + i as i32));
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A pruned message's digest leaves its table with the next batch of held digests, or with
    /// a pruning once `PRUNED_MAX` wait: until then it waits in memory, and no lookup finds its
    /// key.
    #[test]
    fn pruned_digests_leave_their_table_with_the_next_batch() {
        use redb::ReadableTable;
        let d = dir("pruned-digests");
        // Pruned by hand below (the folder prunes when it starts, with nothing to prune yet).
        let retention =
            Retention { max_messages: 3, max_age: Duration::from_secs(3600), prune_every: Duration::from_secs(3600) };
        let store = DiskStore::open(&d, retention).unwrap();
        let records: Vec<MessageRecord> = (0..110).map(|i| said("bot", &format!("q{i}"), "x")).collect();
        let claim = |range: std::ops::Range<usize>| {
            for i in range {
                assert_eq!(block_on(store.claim_message(1 + i as i32, &records[i])).unwrap(), Claim::Inserted);
            }
            store.settle();
        };
        let prune = || while folder::prune(&store.db, retention, &store.shared).unwrap() {};
        let waiting = || store.shared.pruned_keys.lock_unpoisoned().clone();
        // The digests in the table whose number's row is not their key's.
        let stale = || {
            store
                .read(|t| {
                    let (keys, messages) = (t.open_table(MESSAGE_KEYS)?, t.open_table(MESSAGES)?);
                    let mut stale = Vec::new();
                    for entry in keys.iter()? {
                        let (d, n) = entry?.0.value();
                        let owner = messages.get(n)?.map(|row| row_key(row.value()));
                        if !matches!(owner, Some(Ok((owner, _))) if digest(&key_text(&owner)) == d) {
                            stale.push((d, n));
                        }
                    }
                    Ok(stale)
                })
                .unwrap()
        };
        // The first fold puts its digests in (it lets the file before go); 37 pruned wait.
        claim(0..40);
        prune();
        assert_eq!(waiting().len(), 37);
        assert!(!stale().is_empty());
        assert!(stale().iter().all(|p| waiting().contains(p)), "every stale digest waits to leave");
        // 70 more: past HELD_MAX held, a fold puts them in and takes the 37 out.
        claim(40..110);
        assert_eq!((waiting(), stale()), (Vec::new(), Vec::new()));
        // 107 pruned at once, past PRUNED_MAX: the pruning takes them out itself.
        prune();
        assert_eq!((waiting(), stale()), (Vec::new(), Vec::new()));
        for (i, record) in records.iter().enumerate() {
            let found = block_on(store.message_id_of(&record.key)).unwrap();
            assert_eq!(found, (i >= 107).then_some(1 + i as i32), "q{i}");
        }
        drop(store);
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

        let copy = copy_of(&d, "copy-running-copy", false);
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

    /// Pruning commits without a sync of its own: a copy of the store's files taken right after
    /// it (what a crash leaves) may hold the pruned messages again, and opens with them pruned
    /// again, the newest kept.
    #[test]
    fn a_crash_after_pruning_loses_nothing_and_prunes_again() {
        let d = dir("prune-crash");
        let retention =
            Retention { max_messages: 3, max_age: Duration::from_secs(3600), prune_every: Duration::from_millis(10) };
        let store = DiskStore::open(&d, retention).unwrap();
        let records: Vec<MessageRecord> = (0..8).map(|i| said("bot", &format!("p{i}"), "x")).collect();
        for (i, record) in records.iter().enumerate() {
            assert_eq!(block_on(store.claim_message(1 + i as i32, record)).unwrap(), Claim::Inserted);
        }
        wait_for("the pruning", || store.message_count().unwrap() <= 3);
        let copy = copy_of(&d, "prune-crash-copy", false);
        let reopened = DiskStore::open(&copy, retention).unwrap();
        wait_for("the pruning after the crash", || reopened.message_count().unwrap() <= 3);
        for (i, record) in records.iter().enumerate().skip(5) {
            assert_eq!(block_on(reopened.message_id_of(&record.key)).unwrap(), Some(1 + i as i32), "p{i}");
            assert_eq!(block_on(reopened.message_of(1 + i as i32)).unwrap().as_ref(), Some(record));
        }
        drop((store, reopened));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&copy);
    }

    /// A journal file goes only once every held digest of its entries is in redb for good: a
    /// copy of the database alone, taken as soon as the file is gone, finds each message the
    /// file held by its key.
    #[test]
    fn a_journal_file_goes_only_once_its_digests_are_in_the_database() {
        let d = dir("release");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        // The first fold lets the file before go; the digests that follow it are held.
        assert_eq!(block_on(store.claim_message(1, &said("bot", "first", "x"))).unwrap(), Claim::Inserted);
        store.settle();
        let (first_file, first_path) = journal::files(&d.join("journal")).unwrap().remove(0);
        // A second name for the first file, to read what it held once the store has deleted it:
        // the first file after a start moves on as soon as its spare is ready, so how many of
        // the rows below it takes depends on how fast the machine is.
        let kept = d.join("first-file");
        std::fs::hard_link(&first_path, &kept).unwrap();
        // Rows of 1 MiB: the journal moves on to a new file past 16 of them.
        let big: Vec<MessageRecord> = (0..20).map(|i| said("bot", &format!("big{i}"), &"x".repeat(1 << 20))).collect();
        for (i, record) in big.iter().enumerate() {
            assert_eq!(block_on(store.claim_message(10 + i as i32, record)).unwrap(), Claim::Inserted);
        }
        let gone = || journal::files(&d.join("journal")).unwrap().iter().all(|&(n, _)| n != first_file);
        wait_for("the first journal file to go", gone);
        // Copied between two of the folder's commits (its next waits for this transaction): a
        // copy taken while a commit writes could hold a state the file never had at any moment.
        let quiet = store.db.begin_write().unwrap();
        let copy = copy_of(&d, "release-copy", true);
        drop(quiet);
        let reopened = DiskStore::open(&copy, Retention::default()).unwrap();
        let in_first: Vec<i32> = journal::read(&kept)
            .unwrap()
            .0
            .iter()
            .filter_map(|entry| match entry {
                journal::Entry::Message { n, .. } if *n >= 10 => Some(*n),
                _ => None,
            })
            .collect();
        // Its spare is filled from its first MiB on, so the first big row is always there.
        assert!(in_first.contains(&10), "{in_first:?}");
        for n in in_first {
            let record = &big[(n - 10) as usize];
            assert_eq!(block_on(reopened.message_id_of(&record.key)).unwrap(), Some(n), "big{}", n - 10);
        }
        drop((store, reopened));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&copy);
    }

    /// Within one journal file, folds are made durable once [`folder::DURABLE_EVERY`] entries
    /// have been folded without a durable commit, so that no one commit has a burst's worth to
    /// sync: a copy of the database alone (the journal left out) holds what the last durable
    /// commit held.
    #[test]
    fn folds_are_made_durable_every_so_many_entries() {
        let d = dir("durable-every");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        // Each range decided in one batch, which the folder takes in one fold.
        let claim = |range: std::ops::Range<i32>| {
            let ((), ticket) = block_on(crate::store::deferring(async {
                for n in range {
                    let record = said("bot", &format!("m{n}"), "hi");
                    assert_eq!(store.claim_message(n, &record).await.unwrap(), Claim::Inserted);
                }
            }));
            block_on(store.wait_on_disk(ticket)).unwrap();
            store.settle();
        };
        let copied = |name: &str| {
            let copy = copy_of(&d, name, true);
            let reopened = DiskStore::open(&copy, Retention::default()).unwrap();
            let count = reopened.message_count().unwrap();
            drop(reopened);
            let _ = std::fs::remove_dir_all(&copy);
            count
        };
        // One entry: one fold, whatever the timing.
        claim(0..1);
        assert_eq!(copied("durable-every-1"), 1, "the first fold after opening is durable");
        let every = folder::DURABLE_EVERY as i32;
        // However the folder splits these into folds, fewer than DURABLE_EVERY in all.
        claim(1..1 + every / 2);
        assert_eq!(copied("durable-every-2"), 1, "fewer than DURABLE_EVERY since: not yet durable");
        // However these are split, fewer than DURABLE_EVERY are left after the last durable one.
        let all = 1 + 3 * every;
        claim(1 + every / 2..all);
        let held = copied("durable-every-3");
        assert!(
            held > all as u64 - folder::DURABLE_EVERY as u64,
            "then durable, in the same journal file: {held} of {all}"
        );
        assert_eq!(journal::files(&d.join("journal")).unwrap().len(), 1);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
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

    /// A burst is folded as it comes: entries enough for a large commit go to redb at once,
    /// not after the folder's wait for more (here an hour).
    #[test]
    fn a_burst_is_folded_without_waiting_for_more() {
        let d = dir("burst");
        let store =
            DiskStore::open_tuned(&d, Retention::default(), DEFAULT_CACHE_BYTES, Duration::from_secs(3600)).unwrap();
        let burst = folder::FOLD_NOW as u64;
        block_on(crate::store::deferring(async {
            for n in 0..burst {
                let (n, v12) = (5_000_000_000 + n as i64, format!("wxid_{n}"));
                assert_eq!(store.claim_surrogate(n, &v12).await.unwrap(), Claim::Inserted);
            }
        }));
        wait_for("a fold of the burst", || store.shared.folded.load(Ordering::Acquire) >= folder::FOLD_NOW as u64);
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// What the store keeps of entries not yet in redb is bounded: past [`MAX_UNFOLDED`] of them a
    /// decision waits for the folder (here held back by a write transaction of the test's), and
    /// goes on once a fold has caught up.
    #[test]
    fn past_the_bound_a_decision_waits_for_the_folder() {
        decisions_wait_for_the_folder_after("unfolded", MAX_UNFOLDED, |n| format!("wxid_{n}"));
    }

    /// The same in bytes: past [`MAX_UNFOLDED_BYTES`] of ids and rows a decision waits, however
    /// few the entries (here surrogates of 64 KiB ids; a message whose row holds a long text is
    /// the usual case).
    #[test]
    fn past_the_byte_bound_a_decision_waits_for_the_folder() {
        const LONG: u64 = 64 << 10;
        decisions_wait_for_the_folder_after("unfolded-bytes", MAX_UNFOLDED_BYTES / LONG, |n| {
            let n = n.to_string();
            "0".repeat(LONG as usize - n.len()) + &n
        });
    }

    /// Claims surrogates `0..=last` for the ids `v12` gives, with the folder held back, then
    /// sees the next claim wait until the folder is let go.
    fn decisions_wait_for_the_folder_after(name: &str, last: u64, v12: impl Fn(u64) -> String) {
        use futures::FutureExt;
        let d = dir(name);
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        let held = store.db.begin_write().unwrap();
        let surrogate = |n: u64| (5_000_000_000 + n as i64, v12(n));
        block_on(crate::store::deferring(async {
            for n in 0..=last {
                let (n, v12) = surrogate(n);
                assert_eq!(store.claim_surrogate(n, &v12).await.unwrap(), Claim::Inserted);
            }
        }));
        let (n, v12) = surrogate(last + 1);
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
        let store = DiskStore::start(db, journal, journal_dir, Retention::default(), folder::FOLD_EVERY).unwrap();
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

    /// With the filters in use, a claim of a number with no row reads nothing of redb, and a
    /// message number or surrogate with a row is still seen as taken: folded with its digest
    /// held back, and after a restart (the filters built again from the tables).
    #[test]
    fn a_number_with_a_row_stays_taken_with_the_filters_in_use() {
        let d = dir("numbers");
        let filtered = |store: &DiskStore| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while store.shared.state.lock_unpoisoned().filters.is_none() {
                assert!(Instant::now() < deadline, "the filters were not built");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let first = said("bot", "first", "hello");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        filtered(&store);
        // The first fold after opening puts its digests in at once; the next holds them back.
        assert_eq!(block_on(store.claim_message(1000, &said("bot", "opening", "x"))).unwrap(), Claim::Inserted);
        store.settle();
        assert_eq!(block_on(store.claim_message(1_234_567, &first)).unwrap(), Claim::Inserted);
        assert_eq!(block_on(store.claim_surrogate(5_000_000_123, "wxid_x")).unwrap(), Claim::Inserted);
        store.settle();
        assert_eq!(held(&store), (1, 1), "their digests are held back");
        let filters = store.shared.state.lock_unpoisoned().filters.clone().unwrap();
        assert!(filters.may_hold(Table::Numbers, filter::number_id(1_234_567)));
        let strangers = (0..1000).filter(|&n| filters.may_hold(Table::Numbers, filter::number_id(n))).count();
        assert!(strangers < 50, "{strangers} of 1 000 numbers without a row were a maybe");
        let second = said("bot", "second", "x");
        assert_eq!(block_on(store.claim_message(1_234_567, &second)).unwrap(), Claim::Taken(first.key.clone()));
        assert_eq!(block_on(store.claim_message(7, &second)).unwrap(), Claim::Inserted);
        let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        assert_eq!(block_on(fresh.claim_surrogate(5_000_000_123, "wxid_y")).unwrap(), Claim::Taken("wxid_x".into()));
        drop((store, fresh));
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        filtered(&store);
        assert_eq!(
            block_on(store.claim_message(1_234_567, &said("bot", "third", "y"))).unwrap(),
            Claim::Taken(first.key.clone())
        );
        assert_eq!(block_on(store.claim_message(7, &first)).unwrap(), Claim::Taken(second.key));
        assert_eq!(block_on(store.claim_surrogate(5_000_000_123, "wxid_z")).unwrap(), Claim::Taken("wxid_x".into()));
        drop(store);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// The folder writes the indexes by v12 id sorted by key, the rest in order: ids claimed in
    /// no order at all, many to a fold, read back from redb as they were claimed.
    #[test]
    fn ids_claimed_in_any_order_read_back_once_folded() {
        let d = dir("any-order");
        let store = DiskStore::open(&d, Retention::default()).unwrap();
        // Keys, ids and surrogates that sort in a different order from the claims.
        let key = |i: i32| format!("{:08x}", (i as u32).wrapping_mul(0x9e37_79b9));
        let surrogate = |i: i32| 5_000_000_000 + (i as i64 * 919) % 1_000;
        let records: Vec<MessageRecord> = (1..=300).map(|i| said("bot", &key(i), &format!("m{i}"))).collect();
        for (i, r) in (1..).zip(&records) {
            assert_eq!(block_on(store.claim_message(i, r)).unwrap(), Claim::Inserted);
            let id = format!("u{}", key(-i));
            assert_eq!(block_on(store.claim_surrogate(surrogate(i), &id)).unwrap(), Claim::Inserted);
        }
        store.settle();
        assert!(store.filters_built(), "lookups go through the filters");
        let fresh = DiskStore { surrogates: SurrogateCache::default(), ..store.clone() };
        for (i, r) in (1..).zip(&records) {
            assert_eq!(block_on(fresh.message_id_of(&r.key)).unwrap(), Some(i), "{}", r.key.message_id);
            assert_eq!(block_on(fresh.message_of(i)).unwrap().as_ref(), Some(r));
            let id = format!("u{}", key(-i));
            assert_eq!(block_on(fresh.surrogate_of(&id)).unwrap(), Some(surrogate(i)), "{id}");
            assert_eq!(block_on(fresh.v12_of_surrogate(surrogate(i))).unwrap(), Some(id));
        }
        let in_redb = store
            .read(|t| {
                Ok((t.open_table(MESSAGE_KEYS)?.len()?, t.open_table(IDS)?.len()?, t.open_table(SURROGATES)?.len()?))
            })
            .unwrap();
        // What is not in redb's tables yet waits in memory, found as the loop above shows.
        let (keys, ids) = held(&store);
        let (surrogates, _) = surrogate_rows(&store);
        assert_eq!((in_redb.0 + keys as u64, in_redb.1 + ids as u64, in_redb.2 + surrogates as u64), (300, 300, 300));
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
        // Rows 4 and 5 as the store wrote them (so their numbers are known to have rows) ...
        for n in [4, 5] {
            assert_eq!(
                block_on(store.claim_message(n, &said("bot", &format!("m{n}"), "hi"))).unwrap(),
                Claim::Inserted
            );
        }
        store.settle();
        let row = store.read(|t| Ok(t.open_table(MESSAGES)?.get(3)?.map(|v| v.value().to_vec()))).unwrap().unwrap();
        assert!(record::is_row(&row));
        // ... then damaged behind the store's back (nothing is pending): row 3 cut short in its
        // body, and a JSON row cut short.
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
