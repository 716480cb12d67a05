//! The folder thread: applies journalled entries to redb in large transactions, deletes the
//! journal files redb holds for good, prunes old message ids, and keeps the filters of the ids
//! redb holds.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, ReadableTableMetadata};

use super::filter::{number_id, Keeper, Table};
use super::{
    digest, key_text, now_ms, row_key, store_err, Retention, Shared, Unfolded, IDS, MAX_UNFOLDED, MAX_UNFOLDED_BYTES,
    MESSAGES, MESSAGE_AGE, MESSAGE_KEYS, SURROGATES,
};
use crate::core::ids::IdError;
use crate::core::record::RowHead;
use crate::store::journal::{self, Entry};
use crate::sync::LockUnpoisoned;

/// Most message ids pruned in one transaction.
const PRUNE_BATCH: usize = 5_000;
/// How long journalled entries wait at most before the folder applies them to redb: a few
/// large commits a second instead of one per batch.
pub(super) const FOLD_EVERY: Duration = Duration::from_millis(50);
/// Entries the folder applies between two offers of its CPU to the runtime's threads (each
/// is a few microseconds of B-tree work).
const YIELD_EVERY: usize = 32;
/// Most entries applied to redb in one transaction: half of what may wait unfolded, so that
/// decisions go on while the folder applies the other half.
const FOLD_MAX: usize = (MAX_UNFOLDED / 2) as usize;
/// Entries enough for a large commit: the folder takes them at once instead of waiting
/// [`FOLD_EVERY`] for more. In a burst it then folds one batch after another; waiting as
/// well, it held every decision back once [`MAX_UNFOLDED`] had gathered (in well under
/// `FOLD_EVERY` on a fast machine), until the wait and the fold were over: a burst on disk ran
/// at `MAX_UNFOLDED` entries per wait and fold, about 100 000 a second.
pub(super) const FOLD_NOW: usize = FOLD_MAX / 2;
/// The same two bounds in bytes ([`Entry::bytes`]): long messages reach them first, and a
/// transaction holds what it writes in memory until it commits.
const FOLD_MAX_BYTES: u64 = MAX_UNFOLDED_BYTES / 2;
const FOLD_NOW_BYTES: u64 = FOLD_MAX_BYTES / 2;

impl Unfolded {
    /// Enough for a large commit: fold at once ([`FOLD_NOW`]).
    pub(super) fn enough_to_fold(self) -> bool {
        self.entries >= FOLD_NOW as u64 || self.bytes >= FOLD_NOW_BYTES
    }

    /// As much as one transaction takes ([`FOLD_MAX`]).
    fn a_full_fold(self) -> bool {
        self.entries >= FOLD_MAX as u64 || self.bytes >= FOLD_MAX_BYTES
    }

    fn add(&mut self, fold: &Fold) {
        self.entries += fold.entries.len() as u64;
        self.bytes += fold.bytes;
    }
}
/// Digests of v12 ids and surrogates' rows kept in memory, at most, before they go into their
/// tables in one sorted batch (about 1.5 MiB of digests; a row is a user's or group's id).
pub(super) const HELD_MAX: usize = if cfg!(test) { 64 } else { 65_536 };
/// Bytes of the surrogates' ids held with them, at most: their batch goes in once it has this
/// many too. A user's id is a few dozen bytes (65 536 of them about 2 MiB), but the backend
/// chooses its length.
pub(super) const HELD_BYTES: usize = 8 << 20;
/// Digests of pruned messages kept in memory, at most, before they leave their table in one
/// sorted batch, with the held digests or with a pruning (4 MiB of them): a store at its
/// retention prunes about as many as it takes in.
pub(super) const PRUNED_MAX: usize = if cfg!(test) { 64 } else { 262_144 };
/// How long the folder waits before retrying a commit that failed.
const FOLD_RETRY: Duration = Duration::from_secs(1);
/// Entries folded without a durable commit, at most: then one comes, whether or not it lets a
/// journal file go. A durable commit syncs everything redb kept in memory since the last one,
/// and a journal sync that comes meanwhile waits for it: with one durable commit per 16 MiB
/// journal file, the one after a burst synced its 15 MiB of rows at once (25–38 ms on the disk
/// measured) and every event decided meanwhile waited as long.
///
/// Under load that is about every fold. A non-durable commit leaves its pages in redb's write
/// buffer; once the cache is full (a store of a million messages), each page redb then reads
/// writes one of those out and drops it, and the next fold reads it back: about 1.5 reads and
/// 1.2 writes of a page per message, whatever the cache's size. A durable commit writes the
/// buffer out and keeps its pages in the read cache, so the pages every fold walks stay there.
/// On a full store, in 3 alternated pairs, every 512 entries made the folder read a third to a
/// half as many pages at less CPU than every 16 384, and the rate was higher in two of them; an
/// empty store's rate, its bytes written and its p99 at 5 000/s stayed within the noise (the
/// rows and ages a fold writes are appended, a few pages; the digests, random, go in their own
/// batches, `HELD_MAX`). `docs/performance.md` has the figures.
pub(super) const DURABLE_EVERY: usize = if cfg!(test) { 16 } else { 512 };

/// The tables an entry goes to.
pub(super) struct FoldTables<'t> {
    ids: redb::Table<'t, (u64, i64), ()>,
    surrogates: redb::Table<'t, i64, &'static str>,
    keys: redb::Table<'t, (u64, i32), ()>,
    messages: redb::Table<'t, i32, &'static [u8]>,
    age: redb::Table<'t, (u64, i32), ()>,
}

impl<'t> FoldTables<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<FoldTables<'t>, redb::TableError> {
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
    pub(super) fn replay(&mut self, entry: &Entry) -> Result<(), redb::Error> {
        if let Entry::Message { n, key_text: text, .. } = entry {
            let held = self.messages.get(*n)?.map(|v| row_key(v.value()));
            if let Some(Ok((owner, at))) = held {
                let owner_text = key_text(&owner);
                if *owner_text != **text {
                    self.keys.remove((digest(&owner_text), *n))?;
                    self.age.remove((at, *n))?;
                }
            }
        }
        self.apply(entry)
    }

    /// Writes an entry over whatever the tables hold for it: applying it twice changes nothing.
    pub(super) fn apply(&mut self, entry: &Entry) -> Result<(), redb::Error> {
        self.apply_numbered(entry)?;
        match entry {
            Entry::Message { n, key_text, .. } => {
                self.keys.insert((digest(key_text), *n), ())?;
            }
            Entry::Surrogate { n, v12 } => {
                self.ids.insert((digest(v12), *n), ())?;
            }
        }
        Ok(())
    }

    /// [`apply`](Self::apply) without the index by v12 id: the row, its age and the surrogate.
    pub(super) fn apply_numbered(&mut self, entry: &Entry) -> Result<(), redb::Error> {
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
pub(super) struct Fold {
    /// The journal file they are in.
    pub(super) file: u64,
    /// The sequence number of the last of them.
    pub(super) last: u64,
    pub(super) entries: Vec<Entry>,
    /// Their [`Entry::bytes`].
    pub(super) bytes: u64,
}

/// The folder thread: applies journalled entries to redb, deletes the journal files it holds,
/// prunes.
pub(super) struct Folder {
    pub(super) db: Arc<Database>,
    pub(super) shared: Arc<Shared>,
    pub(super) journal_dir: PathBuf,
    pub(super) retention: Retention,
    /// How long entries wait at most for more to gather ([`FOLD_EVERY`]).
    pub(super) fold_every: Duration,
}

impl Folder {
    pub(super) fn run(self, rx: std_mpsc::Receiver<Fold>) {
        let every = self.retention.prune_every;
        let mut last_prune = Instant::now() - every;
        let mut gathered: Vec<Fold> = Vec::new();
        let mut closed = false;
        let mut filters = Keeper::default();
        // The oldest journal file kept: its entries may be in redb only as a commit not yet
        // durable.
        let mut kept_from = 0u64;
        // Entries in redb only as commits not yet durable.
        let mut undurable = 0usize;
        loop {
            self.keep_filters(&mut filters);
            if gathered.is_empty() {
                if closed {
                    return;
                }
                if last_prune.elapsed() >= every {
                    let pruned = prune(&self.db, self.retention, &self.shared);
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
            // Few entries: let more gather for a while, then take them all (one large commit
            // instead of many small ones, and no wake-up per batch the syncer sends). Enough
            // for a large commit: fold them now, while decisions go on (a fold takes at most
            // half of what may wait unfolded). The syncer wakes the folder early once that many
            // wait, and when it stops (to fold what is left); decisions do when they wait for it.
            let mut count = Unfolded { entries: 0, bytes: 0 };
            gathered.iter().for_each(|f| count.add(f));
            let gathering = Instant::now();
            loop {
                while !count.a_full_fold() && !closed {
                    match rx.try_recv() {
                        Ok(fold) => {
                            count.add(&fold);
                            gathered.push(fold);
                        }
                        Err(std_mpsc::TryRecvError::Empty) => break,
                        Err(std_mpsc::TryRecvError::Disconnected) => closed = true,
                    }
                }
                let waited = gathering.elapsed();
                if count.enough_to_fold()
                    || closed
                    || waited >= self.fold_every
                    || self.shared.behind.load(Ordering::Acquire)
                {
                    break;
                }
                if filters.building() {
                    // A build under way takes the wait, a chunk at a time: the filters in use
                    // fill up past their size while it lasts, and one chunk per fold was too slow
                    // for a burst.
                    self.keep_filters(&mut filters);
                    continue;
                }
                std::thread::park_timeout(self.fold_every - waited);
            }
            match self.fold(&gathered, &mut kept_from, &mut undurable, closed, &mut filters) {
                Ok(()) => gathered.clear(),
                Err(error) => {
                    tracing::error!(%error, entries = count.entries, "id store could not apply its journal to the database; retrying");
                    std::thread::sleep(FOLD_RETRY);
                }
            }
        }
    }

    /// One commit of the gathered entries. It is durable when it lets journal files go (their
    /// entries must then be in redb for good), when the store closes, and once
    /// [`DURABLE_EVERY`] entries have been folded without one: the journal holds every entry
    /// until a file goes, and a crash replays it. A durable commit writes each page the entries
    /// touched and syncs the file (the digests, whose random keys would make that a page each,
    /// are held back and go in their own sorted batches); see [`DURABLE_EVERY`] for how often.
    pub(super) fn fold(
        &self,
        gathered: &[Fold],
        kept_from: &mut u64,
        undurable: &mut usize,
        closing: bool,
        filters: &mut Keeper,
    ) -> Result<(), IdError> {
        let Some(last) = gathered.last() else { return Ok(()) };
        let mut txn = self.db.begin_write().map_err(store_err)?;
        let release = closing || last.file > *kept_from;
        let entries: usize = gathered.iter().map(|f| f.entries.len()).sum();
        let durable = release || *undurable + entries >= DURABLE_EVERY;
        if !durable {
            txn.set_durability(redb::Durability::None).map_err(store_err)?;
        }
        // The pruned messages' digests waiting (only this thread changes them): they leave with
        // a flush, once it is committed.
        let mut pruned = self.shared.pruned_keys.lock_unpoisoned();
        let digests = {
            let mut t = FoldTables::open(&txn).map_err(store_err)?;
            // The tables keyed by message numbers and times take their entries in order, at their
            // ends. The two keyed by digests of v12 ids, and the one keyed by surrogates (a hash
            // of the id), take theirs later, in batches sorted by key (below): their keys are
            // random, and entries that share a page then follow one another, so that the page is
            // read and copied once per batch instead of once per entry.
            let mut keys: Vec<(u64, i32)> = Vec::new();
            let mut ids: Vec<(u64, i64)> = Vec::new();
            // Shared with `held`: a batch copies no id.
            let mut surrogates: Vec<(i64, Arc<str>)> = Vec::new();
            // A fold of a few hundred entries with random keys takes a millisecond or two of
            // CPU; woken by its timer, the thread would take that from a runtime worker in one
            // piece, and every event on that worker would wait for it.
            let mut written = 0usize;
            let mut pace = || {
                written += 1;
                offer_cpu(written);
            };
            for entry in gathered.iter().flat_map(|f| &f.entries) {
                match entry {
                    Entry::Message { n, key_text, .. } => {
                        pace();
                        t.apply_numbered(entry).map_err(store_err)?;
                        keys.push((digest(key_text), *n));
                    }
                    Entry::Surrogate { n, v12 } => {
                        surrogates.push((*n, Arc::from(&**v12)));
                        ids.push((digest(v12), *n));
                    }
                }
            }
            // The digests and the surrogates' rows wait in memory (`held`) until [`HELD_MAX`] of
            // them have gathered, or until a durable commit lets journal files go: then they
            // go in all at once, sorted, so that each page of their tables is read and written
            // about once per batch, where a fold's few thousand took a page each once the
            // tables outgrew the page cache.
            // This fold's surrogates' ids, in bytes.
            let own_bytes: usize = surrogates.iter().map(|(_, v12)| v12.len()).sum();
            let flush = {
                let state = self.shared.state.lock_unpoisoned();
                // The surrogates' rows count too: with a new user in every event they are a
                // third of what is held, and the largest part.
                let held = state.held_keys.len() + state.held_ids.len() + state.held_surrogates.len();
                let folded = keys.len() + ids.len() + surrogates.len();
                let flush = release
                    || held + folded >= HELD_MAX
                    || state.held_surrogate_bytes + own_bytes >= HELD_BYTES
                    || pruned.len() >= PRUNED_MAX;
                if flush {
                    keys.extend(state.held_keys.pairs());
                    ids.extend(state.held_ids.pairs());
                    // Before this fold's own: the later of two rows for one surrogate wins.
                    let held = state.held_surrogates.iter().map(|(&n, v12)| (n, v12.clone()));
                    surrogates.splice(0..0, held);
                }
                flush
            };
            if flush {
                keys.sort_unstable();
                ids.sort_unstable();
                // Stable: of two rows for one surrogate, the later stays last and wins.
                surrogates.sort_by_key(|&(n, _)| n);
                pruned.sort_unstable();
                for (n, v12) in &surrogates {
                    pace();
                    t.surrogates.insert(*n, &**v12).map_err(store_err)?;
                }
                // Before the new ones: a number pruned and given to the same key again keeps
                // its digest.
                for &(key, n) in pruned.iter() {
                    pace();
                    t.keys.remove((key, n)).map_err(store_err)?;
                }
                for &(key, n) in &keys {
                    pace();
                    t.keys.insert((key, n), ()).map_err(store_err)?;
                }
                for &(id, n) in &ids {
                    pace();
                    t.ids.insert((id, n), ()).map_err(store_err)?;
                }
            }
            (keys, ids, surrogates, flush, own_bytes)
        };
        txn.commit().map_err(store_err)?;
        let (keys, ids, surrogates, flushed, own_bytes) = digests;
        if flushed {
            *pruned = Vec::new();
        }
        drop(pruned);
        // Into the filters before the rows leave the pending entries and the digests leave
        // `held` (below, under the lock that the decisions take).
        let numbers = gathered.iter().flat_map(|f| &f.entries).map(|entry| match entry {
            Entry::Message { n, .. } => (Table::Numbers, number_id(*n)),
            Entry::Surrogate { n, .. } => (Table::Surrogates, number_id(*n)),
        });
        filters.folded(numbers);
        if flushed {
            filters.folded(
                keys.iter().map(|&(key, _)| (Table::Messages, key)).chain(ids.iter().map(|&(id, _)| (Table::Ids, id))),
            );
        }
        self.shared.folded.store(last.last, Ordering::Release);
        let unfolded = {
            let mut state = self.shared.state.lock_unpoisoned();
            // In one step with letting go of the pending entries: a key is always found in one
            // of the two, or in redb.
            if flushed {
                state.held_keys.clear();
                state.held_ids.clear();
                state.held_surrogates.clear();
                state.held_surrogate_bytes = 0;
            } else {
                for &(key, n) in &keys {
                    state.held_keys.insert(key, n);
                }
                for &(id, n) in &ids {
                    state.held_ids.insert(id, n);
                }
                // A row for a surrogate already held is counted twice until the batch goes: it
                // goes sooner, never later.
                state.held_surrogate_bytes += own_bytes;
                state.held_surrogates.extend(surrogates);
            }
            state.let_go_of_folded(last.last);
            state.unfolded(last.last)
        };
        self.shared.fold_done.notify_waiters();
        if unfolded.caught_up()
            && self.shared.behind.swap(false, Ordering::AcqRel)
            && self.shared.behind_log.lock_unpoisoned().caught_up()
        {
            tracing::info!(unfolded = unfolded.entries, unfolded_bytes = unfolded.bytes, "id store folder caught up");
        }
        *undurable = if durable { 0 } else { *undurable + entries };
        if release {
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
        let held = || {
            let state = self.shared.state.lock_unpoisoned();
            let messages = state.held_keys.pairs().map(|(_, n)| (Table::Numbers, number_id(n)));
            messages.chain(state.held_ids.pairs().map(|(_, n)| (Table::Surrogates, number_id(n)))).collect()
        };
        match filters.step(&self.db, MESSAGE_KEYS, IDS, held) {
            Ok(Some(built)) => self.shared.state.lock_unpoisoned().filters = Some(built),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "building the id store's filters failed; lookups read the database meanwhile");
                filters.abandon();
            }
        }
    }
}

/// Gives up the CPU once every [`YIELD_EVERY`] pieces of B-tree work (`done` counts them from 1):
/// the folder's commits then take no runtime worker's core in one piece.
fn offer_cpu(done: usize) {
    if done % YIELD_EVERY == 0 {
        std::thread::yield_now();
    }
}

/// Deletes the oldest message ids beyond the count and age limits, at most one batch.
/// Returns true when more remain to prune.
pub(super) fn prune(db: &Database, retention: Retention, shared: &Shared) -> Result<bool, redb::Error> {
    let mut txn = db.begin_write()?;
    // The oldest rows and their ages go, in order, at the start of their tables; their digests
    // leave theirs later (below). Not synced on its own: the folder's next durable commit
    // carries it. A crash before then loses nothing (the rows come back, and are pruned
    // again); one after it and before the digests left leaves those digests behind, found by
    // no lookup (none has a row that is its key's). A batch that deleted its digests and
    // synced wrote most pages of the digests' table each time: on a store at its million
    // messages taking 5 000 a second, a batch a few milliseconds after another, each commit
    // 25–40 ms, and every journal sync meanwhile waited for it.
    txn.set_durability(redb::Durability::None)?;
    let more;
    let deleted;
    let mut digests = Vec::new();
    // The digests pruned before and still waiting (only the folder's thread changes them).
    let mut waiting = shared.pruned_keys.lock_unpoisoned();
    {
        let mut age = txn.open_table(MESSAGE_AGE)?;
        let mut messages = txn.open_table(MESSAGES)?;
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
        for (i, (at, n)) in victims.iter().enumerate() {
            offer_cpu(i + 1);
            age.remove((*at, *n))?;
            let key = messages.remove(*n)?.map(|v| row_key(v.value()));
            if let Some(Ok((key, _))) = key {
                digests.push((digest(&key_text(&key)), *n));
            }
        }
        if !victims.is_empty() {
            tracing::debug!(pruned = victims.len(), "old message ids pruned");
        }
        // The digests leave their table with the next batch of held digests: on a store at
        // its retention the deletions touch most pages of the table, which that batch writes
        // anyway. Past `PRUNED_MAX` waiting (no entries come to fold, and messages age out),
        // they leave it here, sorted, as a fold's go in: a page is then copied once.
        deleted = waiting.len() + digests.len() >= PRUNED_MAX;
        if deleted {
            // One sorted run of both, in a copy: the waiting ones change only once the commit
            // holds (a failed one leaves them as they were), and `digests` leave `held` below.
            let mut all: Vec<(u64, i32)> = waiting.iter().chain(&digests).copied().collect();
            all.sort_unstable();
            let mut keys = txn.open_table(MESSAGE_KEYS)?;
            for (i, &(d, n)) in all.iter().enumerate() {
                offer_cpu(i + 1);
                keys.remove((d, n))?;
            }
        }
    }
    txn.commit()?;
    if deleted {
        *waiting = Vec::new();
    } else {
        waiting.extend_from_slice(&digests);
    }
    // A digest still held goes nowhere now (nor does the key: redb has no row for it).
    let mut state = shared.state.lock_unpoisoned();
    for &(d, n) in &digests {
        state.held_keys.remove(d, n);
    }
    Ok(more)
}
