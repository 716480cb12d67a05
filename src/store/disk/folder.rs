//! The folder thread: applies journalled entries to redb in large transactions, deletes the
//! journal files redb holds for good, prunes old message ids, and keeps the filters of the ids
//! redb holds.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, ReadableTableMetadata};

use super::decide::State;
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
/// Digests or rows a batch of them writes per commit, about: a part takes a few tens of
/// milliseconds on a store of a few hundred thousand ids.
const FLUSH_PART: usize = if cfg!(test) { 16 } else { 24_576 };
/// The most parts a batch's digests are written in, and its rows (pruned digests may be many).
const FLUSH_RANGES: usize = 6;
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
        // A batch of held digests on its way, a part per commit, and the room the last one took
        // (a batch is about as large as the one before: its lists are not allocated anew).
        let mut flush: Option<Flush> = None;
        let mut room = Digests::default();
        loop {
            self.keep_filters(&mut filters);
            // With a batch on its way, the folder goes on with it whether or not entries come
            // (and prunes once it is all in: a pruning takes out digests held, which the batch
            // would put in after it).
            if gathered.is_empty() && flush.is_none() {
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
                    || flush.is_some()
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
            let batches = Batches { on_its_way: &mut flush, room: &mut room };
            match self.fold(&gathered, &mut kept_from, &mut undurable, closed, &mut filters, batches) {
                Ok(()) => gathered.clear(),
                Err(error) => {
                    tracing::error!(%error, entries = count.entries, "id store could not apply its journal to the database; retrying");
                    std::thread::sleep(FOLD_RETRY);
                }
            }
        }
    }

    /// One commit: the gathered entries, and a part of the held digests' batch when one is on
    /// its way ([`Flush`]). It is durable when it writes a part of a batch, when it would let
    /// journal files go, when the store closes, and once [`DURABLE_EVERY`] entries have been
    /// folded without one: the journal holds every entry until a file goes, and a crash
    /// replays it. A durable commit writes each page the entries touched and syncs the file
    /// (the digests, whose random keys would make that a page each, are held back and go in
    /// their own sorted batches); see [`DURABLE_EVERY`] for how often.
    pub(super) fn fold(
        &self,
        gathered: &[Fold],
        kept_from: &mut u64,
        undurable: &mut usize,
        closing: bool,
        filters: &mut Keeper,
        batches: Batches<'_>,
    ) -> Result<(), IdError> {
        let Batches { on_its_way: flush, room } = batches;
        let last = gathered.last();
        if last.is_none() && flush.is_none() {
            return Ok(());
        }
        // Journal files before the last one folded may go once what is held of them is in redb
        // too: with the next batch (one on its way lets go of those before it began).
        let release = last.is_some_and(|last| closing || last.file > *kept_from);
        let entries: usize = gathered.iter().map(|f| f.entries.len()).sum();
        let own = Digests::of(gathered);
        // The pruned messages' digests waiting (only this thread changes them): they leave with
        // the next batch.
        let mut pruned = self.shared.pruned_keys.lock_unpoisoned();
        // The digests and the surrogates' rows wait in memory (`held`) until [`HELD_MAX`] of
        // them have gathered, or until a commit would let journal files go: then they go in as
        // one batch, sorted, so that each page of their tables is read and written about once
        // per batch, where a fold's few thousand took a page each once the tables outgrew the
        // page cache.
        let (started, hurry) = {
            let state = self.shared.state.lock_unpoisoned();
            // The surrogates' rows count too: with a new user in every event they are a third
            // of what is held, and the largest part.
            let held = state.held_keys.len() + state.held_ids.len() + state.held_surrogates.len() + own.len();
            let bytes = state.held_surrogate_bytes + own.bytes();
            let due = release || held >= HELD_MAX || bytes >= HELD_BYTES || pruned.len() >= PRUNED_MAX;
            // A batch on its way while the next one is due: the rest of it goes now (what is
            // held then is no more than a batch, in room a batch has had).
            let hurry = closing || held >= HELD_MAX || bytes >= HELD_BYTES;
            // A new batch begins once the one before is all in, or with it when the store
            // closes (then both go in whole, in this commit).
            let started = (due && (flush.is_none() || closing)).then(|| {
                let mut batch = std::mem::take(room);
                batch.keys.extend(state.held_keys.pairs());
                batch.ids.extend(state.held_ids.pairs());
                // Before this fold's own: the later of two rows for one surrogate wins.
                batch.surrogates.extend(state.held_surrogates.iter().map(|(&n, v12)| (n, v12.clone())));
                batch
            });
            (started, hurry)
        };
        // Sorted outside the lock, then found by the decisions on its way instead of among the
        // held, which only the folder's thread changes: they held nothing new meanwhile.
        let started = started.map(|mut batch| {
            batch.append(&own);
            let batch = Flush::new(batch, pruned.clone(), last.filter(|_| release).map(|last| last.file));
            let mut state = self.shared.state.lock_unpoisoned();
            state.on_its_way.push(batch.batch.clone());
            state.held_keys.clear();
            state.held_ids.clear();
            state.held_surrogates.clear();
            state.held_surrogate_bytes = 0;
            batch
        });
        let writes_batch = flush.is_some() || started.is_some();
        let durable = release || writes_batch || *undurable + entries >= DURABLE_EVERY;
        // The parts written: of the batch on its way, then of the one begun.
        let commit = || -> Result<(Option<usize>, Option<usize>), redb::Error> {
            let mut txn = self.db.begin_write()?;
            if !durable {
                txn.set_durability(redb::Durability::None)?;
            }
            let mut t = FoldTables::open(&txn)?;
            // A fold of a few hundred entries with random keys takes a millisecond or two of
            // CPU; woken by its timer, the thread would take that from a runtime worker in one
            // piece, and every event on that worker would wait for it.
            let mut written = 0usize;
            let mut pace = || {
                written += 1;
                offer_cpu(written);
            };
            // The tables keyed by message numbers and times take their entries in order, at
            // their ends. The two keyed by digests of v12 ids, and the one keyed by surrogates (a
            // hash of the id), take theirs with the batches.
            for entry in gathered.iter().flat_map(|f| &f.entries) {
                if let Entry::Message { .. } = entry {
                    pace();
                    t.apply_numbered(entry)?;
                }
            }
            let upto_old = match flush.as_ref() {
                Some(batch) => Some(batch.write(&mut t, hurry, &mut pace)?),
                None => None,
            };
            let upto_new = match started.as_ref() {
                Some(batch) => Some(batch.write(&mut t, closing, &mut pace)?),
                None => None,
            };
            drop(t);
            txn.commit()?;
            Ok((upto_old, upto_new))
        };
        let (upto_old, upto_new) = match commit() {
            Ok(upto) => upto,
            Err(error) => {
                // Held again, for the retry to begin anew: nothing of the batch is in redb (held
                // in its sorted order, the later of two rows for one surrogate stays).
                if let Some(batch) = &started {
                    let mut state = self.shared.state.lock_unpoisoned();
                    state.on_its_way.retain(|b| !Arc::ptr_eq(b, &batch.batch));
                    Digests::clone(&batch.batch).hold(&mut state);
                }
                return Err(store_err(error));
            }
        };
        if started.is_some() {
            *pruned = Vec::new();
        }
        drop(pruned);
        // The parts just written, of either batch.
        let mut parts: Vec<(&Flush, std::ops::Range<usize>)> = Vec::new();
        if let (Some(batch), Some(upto)) = (flush.as_ref(), upto_old) {
            parts.push((batch, batch.done..upto));
        }
        if let (Some(batch), Some(upto)) = (started.as_ref(), upto_new) {
            parts.push((batch, 0..upto));
        }
        // Into the filters before the rows leave the pending entries and the digests leave
        // `held` (below, under the lock that the decisions take).
        let numbers = gathered.iter().flat_map(|f| &f.entries).map(|entry| match entry {
            Entry::Message { n, .. } => (Table::Numbers, number_id(*n)),
            Entry::Surrogate { n, .. } => (Table::Surrogates, number_id(*n)),
        });
        filters.folded(numbers);
        for (batch, range) in &parts {
            for i in range.clone() {
                let part = batch.part(i);
                let keys = batch.batch.keys[part.keys].iter().map(|&(key, _)| (Table::Messages, key));
                filters.folded(keys.chain(batch.batch.ids[part.ids].iter().map(|&(id, _)| (Table::Ids, id))));
            }
        }
        if let Some(last) = last {
            self.shared.folded.store(last.last, Ordering::Release);
        }
        // What is all in now, and the journal files it lets go.
        let mut finished = None;
        let unfolded = {
            let mut state = self.shared.state.lock_unpoisoned();
            // In one step with letting go of the pending entries: a key is always found in one
            // of the two, or in redb. This fold's digests are held until a batch takes them in
            // (unless the one begun here did).
            if started.is_none() {
                own.hold(&mut state);
            }
            let (upto_old, upto_new) = (upto_old.unwrap_or(0), upto_new.unwrap_or(0));
            if let Some(batch) = flush.as_mut() {
                batch.done = upto_old;
            }
            if let Some(mut batch) = started {
                batch.done = upto_new;
                // A batch begins only with none on its way, or as the store closes, when both
                // went in whole.
                if let Some(before) = flush.take() {
                    debug_assert!(before.is_in(), "a batch begun before the one on its way is in");
                    finished = before.release;
                    state.on_its_way.retain(|b| !Arc::ptr_eq(b, &before.batch));
                }
                *flush = Some(batch);
            }
            if flush.as_ref().is_some_and(Flush::is_in) {
                let batch = flush.take().expect("a batch all in");
                finished = finished.max(batch.release);
                // All in redb, and read from it from now on (the snapshot goes below).
                state.on_its_way.retain(|b| !Arc::ptr_eq(b, &batch.batch));
                if let Ok(mut lists) = Arc::try_unwrap(batch.batch) {
                    lists.clear();
                    *room = lists;
                }
            }
            // What is let go of is read from redb from now on, as it is after this commit.
            state.snapshot = None;
            if let Some(last) = last {
                state.let_go_of_folded(last.last);
            }
            state.unfolded(self.shared.folded.load(Ordering::Acquire))
        };
        self.shared.fold_done.notify_waiters();
        if unfolded.caught_up()
            && self.shared.behind.swap(false, Ordering::AcqRel)
            && self.shared.behind_log.lock_unpoisoned().caught_up()
        {
            tracing::info!(unfolded = unfolded.entries, unfolded_bytes = unfolded.bytes, "id store folder caught up");
        }
        *undurable = if durable { 0 } else { *undurable + entries };
        if let Some(file) = finished {
            *kept_from = file;
            if let Err(error) = journal::remove_before(&self.journal_dir, file) {
                tracing::warn!(%error, "id store could not delete a journal file it no longer needs");
            }
        }
        Ok(())
    }
}

/// The batch [`Folder::fold`] goes on with, and the room for the next.
pub(super) struct Batches<'f> {
    on_its_way: &'f mut Option<Flush>,
    room: &'f mut Digests,
}

/// Digests of message keys and of v12 ids, and surrogates' rows, on their way to their tables.
#[derive(Debug, Default, Clone)]
pub(super) struct Digests {
    keys: Vec<(u64, i32)>,
    ids: Vec<(u64, i64)>,
    /// Shared with `held`: a batch copies no id.
    surrogates: Vec<(i64, Arc<str>)>,
}

impl Digests {
    /// Those of the gathered entries.
    fn of(gathered: &[Fold]) -> Digests {
        let mut own = Digests::default();
        for entry in gathered.iter().flat_map(|f| &f.entries) {
            match entry {
                Entry::Message { n, key_text, .. } => own.keys.push((digest(key_text), *n)),
                Entry::Surrogate { n, v12 } => {
                    own.surrogates.push((*n, Arc::from(&**v12)));
                    own.ids.push((digest(v12), *n));
                }
            }
        }
        own
    }

    fn len(&self) -> usize {
        self.keys.len() + self.ids.len() + self.surrogates.len()
    }

    /// The surrogates' ids, in bytes.
    fn bytes(&self) -> usize {
        self.surrogates.iter().map(|(_, v12)| v12.len()).sum()
    }

    /// Empty, with the room it had.
    fn clear(&mut self) {
        self.keys.clear();
        self.ids.clear();
        self.surrogates.clear();
    }

    fn append(&mut self, other: &Digests) {
        self.keys.extend_from_slice(&other.keys);
        self.ids.extend_from_slice(&other.ids);
        self.surrogates.extend(other.surrogates.iter().cloned());
    }

    /// The message numbers under key digest `d` (the lists sorted, as a batch's are).
    pub(super) fn keys_of(&self, d: u64) -> impl Iterator<Item = i32> + '_ {
        sorted_under(&self.keys, d)
    }

    /// The surrogates under id digest `d` (the lists sorted).
    pub(super) fn ids_of(&self, d: u64) -> impl Iterator<Item = i64> + '_ {
        sorted_under(&self.ids, d)
    }

    /// Surrogate `n`'s row, the later of two (the lists sorted, stably).
    pub(super) fn surrogate(&self, n: i64) -> Option<&Arc<str>> {
        let end = self.surrogates.partition_point(|&(m, _)| m <= n);
        self.surrogates[..end].last().filter(|(m, _)| *m == n).map(|(_, v12)| v12)
    }

    /// Holds them, where the decisions find them until a batch takes them in.
    fn hold(self, state: &mut State) {
        for (key, n) in self.keys {
            state.held_keys.insert(key, n);
        }
        for (id, n) in self.ids {
            state.held_ids.insert(id, n);
        }
        for (n, v12) in self.surrogates {
            state.held_surrogate_bytes += v12.len();
            if let Some(before) = state.held_surrogates.insert(n, v12) {
                state.held_surrogate_bytes -= before.len();
            }
        }
    }
}

/// The numbers under digest `d` in a list sorted by digest.
fn sorted_under<N: Copy>(list: &[(u64, N)], d: u64) -> impl Iterator<Item = N> + '_ {
    let start = list.partition_point(|&(m, _)| m < d);
    list[start..].iter().take_while(move |&&(m, _)| m == d).map(|&(_, n)| n)
}

/// Held digests and rows (and pruned messages' digests to take out) in one sorted batch,
/// written a part per commit, with the folds that come meanwhile: written in one commit, a
/// batch of 65 536 on a store of a few hundred thousand ids took 65–200 ms, and decisions
/// waited for the folder all along. The surrogates' rows go first (a row is then in redb no
/// later than its id's digest, which lookups in redb check against it), then the digests, in
/// parts of about [`FLUSH_PART`]: the rows by ranges of their sorted list, the digests by
/// ranges of their space, so that each page of their tables is still copied about once per
/// batch (a message key's digest and its pruned twin fall in the same part, taken out before
/// it goes in again). Its entries leave `held` as it begins, and the decisions find them in
/// the batch itself until it is all in: kept in `held` as well, a batch's entries and those
/// held meanwhile outgrew the maps' room, and a million events from a new user each peaked
/// 4–10 MiB higher.
#[derive(Debug)]
pub(super) struct Flush {
    /// Sorted, and shared with the decisions' [`State::on_its_way`] until all of it is in.
    batch: Arc<Digests>,
    pruned: Vec<(u64, i32)>,
    /// The rows' parts (the first ones).
    rows: usize,
    /// The digests' parts.
    ranges: usize,
    /// The parts written so far.
    done: usize,
    /// Journal files before this one go once the batch is all in.
    release: Option<u64>,
}

/// Where a part's share of each list is.
struct Part {
    keys: std::ops::Range<usize>,
    pruned: std::ops::Range<usize>,
    ids: std::ops::Range<usize>,
    surrogates: std::ops::Range<usize>,
}

impl Flush {
    fn new(mut batch: Digests, mut pruned: Vec<(u64, i32)>, release: Option<u64>) -> Flush {
        batch.keys.sort_unstable();
        batch.ids.sort_unstable();
        // Stable: of two rows for one surrogate, the later stays last and wins.
        batch.surrogates.sort_by_key(|&(n, _)| n);
        pruned.sort_unstable();
        let digests = batch.keys.len() + batch.ids.len() + pruned.len();
        let rows = batch.surrogates.len().div_ceil(FLUSH_PART).min(FLUSH_RANGES);
        let ranges = digests.div_ceil(FLUSH_PART).clamp(1, FLUSH_RANGES);
        Flush { batch: Arc::new(batch), pruned, rows, ranges, done: 0, release }
    }

    fn parts(&self) -> usize {
        self.rows + self.ranges
    }

    /// Whether every part is written.
    fn is_in(&self) -> bool {
        self.done >= self.parts()
    }

    fn part(&self, i: usize) -> Part {
        if i < self.rows {
            let (len, none) = (self.batch.surrogates.len(), 0..0);
            let surrogates = i * len / self.rows..(i + 1) * len / self.rows;
            return Part { keys: none.clone(), pruned: none.clone(), ids: none, surrogates };
        }
        let j = (i - self.rows) as u128;
        let ranges = self.ranges as u128;
        let from = ((j << 64) / ranges) as u64;
        let to = (j + 1 < ranges).then(|| (((j + 1) << 64) / ranges) as u64);
        fn within<N>(list: &[(u64, N)], from: u64, to: Option<u64>) -> std::ops::Range<usize> {
            let start = list.partition_point(|&(d, _)| d < from);
            start..to.map_or(list.len(), |to| list.partition_point(|&(d, _)| d < to))
        }
        Part {
            keys: within(&self.batch.keys, from, to),
            pruned: within(&self.pruned, from, to),
            ids: within(&self.batch.ids, from, to),
            surrogates: 0..0,
        }
    }

    /// Writes the next part, or every part left (`all`); says how many are written then.
    fn write(&self, t: &mut FoldTables<'_>, all: bool, pace: &mut impl FnMut()) -> Result<usize, redb::Error> {
        let upto = if all { self.parts() } else { (self.done + 1).min(self.parts()) };
        for i in self.done..upto {
            let part = self.part(i);
            for (n, v12) in &self.batch.surrogates[part.surrogates] {
                pace();
                t.surrogates.insert(*n, &**v12)?;
            }
            // Before the new ones: a number pruned and given to the same key again keeps its
            // digest.
            for &(key, n) in &self.pruned[part.pruned] {
                pace();
                t.keys.remove((key, n))?;
            }
            for &(key, n) in &self.batch.keys[part.keys] {
                pace();
                t.keys.insert((key, n), ())?;
            }
            for &(id, n) in &self.batch.ids[part.ids] {
                pace();
                t.ids.insert((id, n), ())?;
            }
        }
        Ok(upto)
    }
}

impl Folder {
    /// A step of the filters' upkeep (see [`Keeper::step`]); new filters go to the decisions.
    fn keep_filters(&self, filters: &mut Keeper) {
        let held = || {
            let state = self.shared.state.lock_unpoisoned();
            let on_its_way = state.on_its_way.iter();
            let keys = state.held_keys.pairs().chain(on_its_way.clone().flat_map(|b| b.keys.iter().copied()));
            let ids = state.held_ids.pairs().chain(on_its_way.flat_map(|b| b.ids.iter().copied()));
            let messages = keys.map(|(_, n)| (Table::Numbers, number_id(n)));
            messages.chain(ids.map(|(_, n)| (Table::Surrogates, number_id(n)))).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-mixed 64-bit value of a number (splitmix64's finaliser), as digests are.
    fn mixed(n: u64) -> u64 {
        let mut z = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A batch's parts take every digest and row once: the rows first, by count, then the digests by
    /// ranges of their space, a pruned digest in the same part as the same digest going in
    /// again; the parts are about [`FLUSH_PART`] each, and no more than [`FLUSH_RANGES`].
    #[test]
    fn a_batch_goes_in_parts_that_take_everything_once() {
        let batch = Digests {
            keys: (0..40).map(|i| (mixed(i), i as i32)).collect(),
            ids: (100..120).map(|i| (mixed(i), i as i64)).collect(),
            surrogates: (0..20).map(|i| (mixed(1_000 + i) as i64, Arc::from(format!("u{i}")))).collect(),
        };
        // Five pruned numbers given to the same keys again, and three others.
        let pruned: Vec<(u64, i32)> =
            batch.keys[..5].iter().copied().chain((200..203u64).map(|i| (mixed(i), i as i32))).collect();
        let flush = Flush::new(batch, pruned.clone(), Some(7));
        let rows = 20usize.div_ceil(FLUSH_PART);
        assert_eq!(flush.parts(), rows + (40 + 20 + 8usize).div_ceil(FLUSH_PART));
        // The rows first, in order, each once.
        let firsts: Vec<_> = (0..rows).map(|i| flush.part(i).surrogates).collect();
        assert_eq!((firsts[0].start, firsts[rows - 1].end), (0, 20), "the rows are the first parts");
        assert!(firsts.windows(2).all(|w| w[0].end == w[1].start && !w[0].is_empty()));
        let (mut keys, mut ids, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for i in rows..flush.parts() {
            let part = flush.part(i);
            assert!(part.surrogates.is_empty());
            let size = part.keys.len() + part.ids.len() + part.pruned.len();
            assert!(size > 0 && size < 2 * FLUSH_PART, "part {i}: {size}");
            let these = &flush.batch.keys[part.keys];
            for p in &flush.pruned[part.pruned.clone()] {
                if pruned[..5].contains(p) {
                    assert!(these.contains(p), "{p:?} goes in again in another part");
                }
            }
            keys.extend_from_slice(these);
            ids.extend_from_slice(&flush.batch.ids[part.ids]);
            gone.extend_from_slice(&flush.pruned[part.pruned]);
        }
        // In order, each once.
        assert_eq!((keys, ids, gone), (flush.batch.keys.clone(), flush.batch.ids.clone(), flush.pruned.clone()));
        assert!(flush.batch.keys.windows(2).all(|w| w[0] < w[1]));

        // However many pruned digests wait, the parts are bounded in number.
        let many: Vec<(u64, i32)> = (0..(FLUSH_PART * FLUSH_RANGES * 3) as u64).map(|i| (mixed(i), i as i32)).collect();
        let flush = Flush::new(Digests::default(), many, None);
        assert_eq!(flush.parts(), FLUSH_RANGES, "no rows: no part of their own");
        let all: usize = (0..flush.parts()).map(|i| flush.part(i).pruned.len()).sum();
        assert_eq!(all, FLUSH_PART * FLUSH_RANGES * 3);
    }

    /// A batch on its way answers lookups by digest and by surrogate once sorted: every number
    /// under a digest two ids share, and of two rows for one surrogate the later one.
    #[test]
    fn a_batch_on_its_way_is_found_by_digest_and_by_surrogate() {
        let batch = Digests {
            keys: vec![(mixed(3), 30), (mixed(1), 10), (mixed(3), 31), (mixed(2), 20)],
            ids: vec![(mixed(5), 50), (mixed(4), 40), (mixed(5), 51)],
            surrogates: vec![(7, Arc::from("first")), (2, Arc::from("two")), (7, Arc::from("later"))],
        };
        let flush = Flush::new(batch, Vec::new(), None);
        let b = &flush.batch;
        assert_eq!(b.keys_of(mixed(3)).collect::<Vec<_>>(), [30, 31]);
        assert_eq!(b.keys_of(mixed(2)).collect::<Vec<_>>(), [20]);
        assert_eq!(b.keys_of(mixed(9)).count(), 0);
        assert_eq!(b.ids_of(mixed(5)).collect::<Vec<_>>(), [50, 51]);
        assert_eq!(b.ids_of(mixed(3)).count(), 0);
        assert_eq!(b.surrogate(7).map(|v| &**v), Some("later"));
        assert_eq!(b.surrogate(2).map(|v| &**v), Some("two"));
        assert_eq!(b.surrogate(3), None);
        assert_eq!(b.surrogate(8), None);
    }
}
