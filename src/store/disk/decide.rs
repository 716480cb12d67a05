//! The decisions: every "insert unless taken", made by its caller under the store's one lock
//! against the entries redb does not hold yet ([`Pending`]) and redb itself, read through a kept
//! read transaction ([`View`]) and, for the two tables keyed by v12 ids, the filters in front of
//! them. A decided entry is visible to every reader at once, with its ticket.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

use super::filter::{Filters, Table};
use super::folder::Digests;
use super::{
    message_number, now_ms, owns_message, owns_surrogate, row_key, surrogate_number, KeyText, IDS, MAX_UNFOLDED,
    MAX_UNFOLDED_BYTES, MESSAGES, MESSAGE_KEYS, SURROGATES,
};
use crate::core::ids::{Claim, Found, IdError, MessageKey};
use crate::core::record::Row;
use crate::store::journal::Entry;

type Hasher = foldhash::fast::RandomState;

/// A decided message row redb may not hold yet.
#[derive(Debug)]
pub(super) struct PendingRow {
    pub(super) key_text: Arc<str>,
    pub(super) row: Arc<[u8]>,
    /// Which journal entry writes it (a later one for the same number replaces it).
    pub(super) seq: u64,
    /// Claimed (a number redb did not have), not saved over one it had.
    pub(super) new: bool,
}

/// The entries decided and not yet folded into redb, with the sequence number of the journal
/// entry each one is: readers look here before redb, and an entry is durable once the journal
/// is synced up to its number. Entries are added as they are decided and removed once the
/// folder has committed them.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) rows: HashMap<i32, PendingRow, Hasher>,
    pub(super) keys: HashMap<Arc<str>, (i32, u64), Hasher>,
    pub(super) surrogates: HashMap<i64, (Box<str>, u64), Hasher>,
    pub(super) ids: HashMap<Box<str>, (i64, u64), Hasher>,
}

/// Digests of v12 ids whose entries redb holds in every table but the one keyed by digests:
/// the folder applies those in large sorted batches (see `folder::HELD_MAX`), and meanwhile a
/// lookup finds them here. Two ids may share a digest: the first number is in `first`, any
/// other in `more` (almost always empty).
#[derive(Debug)]
pub(super) struct Held<N> {
    first: HashMap<u64, N, Hasher>,
    more: Vec<(u64, N)>,
}

impl<N> Default for Held<N> {
    fn default() -> Self {
        Held { first: HashMap::default(), more: Vec::new() }
    }
}

impl<N: Copy + PartialEq> Held<N> {
    pub(super) fn insert(&mut self, d: u64, n: N) {
        match self.first.entry(d) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(n);
            }
            std::collections::hash_map::Entry::Occupied(o) if *o.get() != n && !self.more.contains(&(d, n)) => {
                self.more.push((d, n));
            }
            std::collections::hash_map::Entry::Occupied(_) => {}
        }
    }

    /// The numbers held under digest `d`.
    pub(super) fn candidates(&self, d: u64) -> impl Iterator<Item = N> + '_ {
        self.first.get(&d).copied().into_iter().chain(self.more.iter().filter(move |&&(m, _)| m == d).map(|&(_, n)| n))
    }

    pub(super) fn remove(&mut self, d: u64, n: N) {
        if self.first.get(&d) == Some(&n) {
            self.first.remove(&d);
            if let Some(i) = self.more.iter().position(|&(m, _)| m == d) {
                let (_, next) = self.more.swap_remove(i);
                self.first.insert(d, next);
            }
        } else {
            self.more.retain(|&e| e != (d, n));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.first.len() + self.more.len()
    }

    /// Every (digest, number) held.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (u64, N)> + '_ {
        self.first.iter().map(|(&d, &n)| (d, n)).chain(self.more.iter().copied())
    }

    /// Holds none, keeping the room.
    pub(super) fn clear(&mut self) {
        self.first.clear();
        self.more.clear();
    }
}

/// Every decision, made by the caller itself under the store's one lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) pending: Pending,
    /// Entries decided and not yet taken by the syncer, in order.
    pub(super) open: Vec<Entry>,
    /// The last entry's sequence number.
    pub(super) seq: u64,
    /// Entries not yet removed from [`Pending`], in order: (sequence number, message number or
    /// surrogate, [`Entry::bytes`]).
    pub(super) unfolded: VecDeque<(u64, Ref, u64)>,
    /// The bytes of those entries: a message's row holds its content, which may be long.
    pub(super) unfolded_bytes: u64,
    /// Why the journal can no longer be written: decisions fail from then on.
    pub(super) failed: Option<String>,
    /// What decisions read of redb, kept between them until the folder next writes redb.
    pub(super) snapshot: Option<Snapshot>,
    /// Which v12 ids, message numbers and surrogates redb may hold, once the folder has built
    /// them: an id or number they rule out is not looked up.
    pub(super) filters: Option<Arc<Filters>>,
    /// Message keys' digests redb's `message_digests` does not hold yet, with their numbers.
    pub(super) held_keys: Held<i32>,
    /// Users' and groups' ids' digests redb's `id_digests` does not hold yet, with their
    /// surrogates.
    pub(super) held_ids: Held<i64>,
    /// The same surrogates' rows, which redb's `surrogates` does not hold yet either: keyed by a
    /// hash of the id, they are as random as the digests and go with them, in one sorted batch.
    pub(super) held_surrogates: HashMap<i64, Arc<str>, Hasher>,
    /// The bytes of those ids (the backend chooses their length).
    pub(super) held_surrogate_bytes: usize,
    /// Batches of what was held, on their way into redb a part per commit (`folder::Flush`):
    /// until the last part is in, lookups find their entries here. One at a time, two when the
    /// store closes while one is on its way.
    pub(super) on_its_way: Vec<Arc<Digests>>,
}

/// A read transaction of redb and the tables opened in it so far, kept for the decisions that
/// follow: beginning one and opening its tables was about a third of what a new message's
/// decision cost. The folder drops it under the lock once it has committed (a fold or a prune),
/// so a decision never reads redb as it was before an entry was let go of from [`Pending`].
pub(super) struct Snapshot {
    txn: redb::ReadTransaction,
    messages: std::cell::OnceCell<redb::ReadOnlyTable<i32, &'static [u8]>>,
    keys: std::cell::OnceCell<redb::ReadOnlyTable<(u64, i32), ()>>,
    surrogates: std::cell::OnceCell<redb::ReadOnlyTable<i64, &'static str>>,
    ids: std::cell::OnceCell<redb::ReadOnlyTable<(u64, i64), ()>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

/// How far the folder is behind the decisions.
#[derive(Debug, Clone, Copy)]
pub(super) struct Unfolded {
    pub(super) entries: u64,
    /// Their [`Entry::bytes`].
    pub(super) bytes: u64,
}

impl Unfolded {
    /// Past either bound: decisions wait for the folder.
    pub(super) fn over(self) -> bool {
        self.entries > MAX_UNFOLDED || self.bytes > MAX_UNFOLDED_BYTES
    }

    /// Within half of both bounds: the folder has caught up.
    pub(super) fn caught_up(self) -> bool {
        self.entries <= MAX_UNFOLDED / 2 && self.bytes <= MAX_UNFOLDED_BYTES / 2
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Ref {
    Message(i32),
    Surrogate(i64),
}

/// What a decision reads of redb: the kept [`Snapshot`], or one begun when first needed (under
/// the lock, so after anything let go of from [`Pending`] is in redb).
pub(super) struct View<'a> {
    pub(super) db: &'a Database,
    pub(super) snapshot: std::cell::OnceCell<Snapshot>,
}

/// A stored row's key and time, or why they could not be read.
type RowOwner = Result<(MessageKey, u64), IdError>;

impl View<'_> {
    pub(super) fn snapshot(&self) -> Result<&Snapshot, redb::Error> {
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
    pub(super) fn table<'s, K: redb::Key + 'static, V: redb::Value + 'static>(
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

    pub(super) fn row_owner(&self, n: i32) -> Result<Option<RowOwner>, redb::Error> {
        // Only the owner's key is read: its segments are not decoded.
        Ok(self.table(|s| &s.messages, MESSAGES)?.get(n)?.map(|v| row_key(v.value())))
    }

    pub(super) fn number_of(&self, key_text: &str, d: u64) -> Result<Option<i32>, redb::Error> {
        message_number(self.table(|s| &s.keys, MESSAGE_KEYS)?, self.table(|s| &s.messages, MESSAGES)?, key_text, d)
    }

    pub(super) fn surrogate_owner(&self, n: i64) -> Result<Option<String>, redb::Error> {
        Ok(self.table(|s| &s.surrogates, SURROGATES)?.get(n)?.map(|v| v.value().to_owned()))
    }

    pub(super) fn surrogate_number(&self, v12: &str, d: u64) -> Result<Option<i64>, redb::Error> {
        surrogate_number(self.table(|s| &s.ids, IDS)?, self.table(|s| &s.surrogates, SURROGATES)?, v12, d)
    }
}

/// The decisions. Each answers with a ticket: the journal entry it relies on (0: redb's).
impl State {
    /// Whether surrogate `n` stands for `v12`, when its row is held ([`State::held_surrogates`]);
    /// `None` when it is not (redb has it, if anything does).
    pub(super) fn held_row_names(&self, n: i64, v12: &str) -> Option<bool> {
        self.held_surrogate(n).map(|owner| **owner == *v12)
    }

    /// Surrogate `n`'s row, when it is held or on its way (the latest, where there are several).
    pub(super) fn held_surrogate(&self, n: i64) -> Option<&Arc<str>> {
        self.held_surrogates.get(&n).or_else(|| self.on_its_way.iter().rev().find_map(|batch| batch.surrogate(n)))
    }

    /// The message numbers held or on their way under key digest `d`.
    pub(super) fn held_keys_of(&self, d: u64) -> impl Iterator<Item = i32> + '_ {
        self.held_keys.candidates(d).chain(self.on_its_way.iter().flat_map(move |batch| batch.keys_of(d)))
    }

    /// The surrogates held or on their way under id digest `d`.
    pub(super) fn held_ids_of(&self, d: u64) -> impl Iterator<Item = i64> + '_ {
        self.held_ids.candidates(d).chain(self.on_its_way.iter().flat_map(move |batch| batch.ids_of(d)))
    }

    /// False when redb surely does not hold an id of this [`digest`] in `table`.
    pub(super) fn may_hold(&self, table: Table, id: u64) -> bool {
        self.filters.as_ref().is_none_or(|f| f.may_hold(table, id))
    }

    /// Who holds message number `n`, since when, and the entry that says so.
    pub(super) fn owner_of(&self, view: &View<'_>, n: i32) -> Result<Option<(RowOwner, u64)>, redb::Error> {
        if let Some(r) = self.pending.rows.get(&n) {
            return Ok(Some((row_key(&r.row), r.seq)));
        }
        if !self.may_hold(Table::Numbers, super::filter::number_id(n)) {
            return Ok(None);
        }
        Ok(view.row_owner(n)?.map(|owner| (owner, 0)))
    }

    /// The number a key holds, and the entry that gave it.
    pub(super) fn number_of(&self, view: &View<'_>, key: &KeyText) -> Result<Option<(i32, u64)>, redb::Error> {
        if let Some(&found) = self.pending.keys.get(key.text.as_str()) {
            return Ok(Some(found));
        }
        for n in self.held_keys_of(key.digest) {
            if owns_message(view.table(|s| &s.messages, MESSAGES)?, n, &key.text)? {
                return Ok(Some((n, 0)));
            }
        }
        if !self.may_hold(Table::Messages, key.digest) {
            return Ok(None);
        }
        Ok(view.number_of(&key.text, key.digest)?.map(|n| (n, 0)))
    }

    /// What is decided and not folded, given the last entry redb holds.
    pub(super) fn unfolded(&self, folded: u64) -> Unfolded {
        Unfolded { entries: self.seq.saturating_sub(folded), bytes: self.unfolded_bytes }
    }

    /// Makes an entry visible to every reader and hands it to the syncer.
    pub(super) fn push(&mut self, entry: Entry, claimed: bool) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        let bytes = entry.bytes();
        self.unfolded_bytes += bytes;
        match &entry {
            Entry::Message { n, key_text, row } => {
                let new = claimed || self.pending.rows.get(n).is_some_and(|r| r.new);
                self.pending.keys.insert(key_text.clone(), (*n, seq));
                self.pending.rows.insert(*n, PendingRow { key_text: key_text.clone(), row: row.clone(), seq, new });
                self.unfolded.push_back((seq, Ref::Message(*n), bytes));
            }
            Entry::Surrogate { n, v12 } => {
                self.pending.ids.insert(v12.clone(), (*n, seq));
                self.pending.surrogates.insert(*n, (v12.clone(), seq));
                self.unfolded.push_back((seq, Ref::Surrogate(*n), bytes));
            }
        }
        self.open.push(entry);
        seq
    }

    pub(super) fn claim_surrogate(
        &mut self,
        view: &View<'_>,
        n: i64,
        v12: &str,
    ) -> Result<(Claim<String>, u64), redb::Error> {
        if let Some((owner, seq)) = self.pending.surrogates.get(&n) {
            return Ok((Claim::Taken(owner.to_string()), *seq));
        }
        if let Some(owner) = self.held_surrogate(n) {
            return Ok((Claim::Taken(owner.to_string()), 0));
        }
        if self.may_hold(Table::Surrogates, super::filter::number_id(n)) {
            if let Some(owner) = view.surrogate_owner(n)? {
                return Ok((Claim::Taken(owner), 0));
            }
        }
        Ok((Claim::Inserted, self.push(Entry::Surrogate { n, v12: v12.into() }, true)))
    }

    /// `v12`'s surrogate (`d` its digest), else a claim of `first()` for it.
    pub(super) fn find_or_claim_surrogate(
        &mut self,
        view: &View<'_>,
        first: impl FnOnce() -> i64,
        v12: &str,
        d: u64,
    ) -> Result<(Found<i64, String>, u64), redb::Error> {
        if let Some(&(n, seq)) = self.pending.ids.get(v12) {
            return Ok((Found::Known(n), seq));
        }
        for n in self.held_ids_of(d) {
            let owned = match self.held_row_names(n, v12) {
                Some(owned) => owned,
                None => owns_surrogate(view.table(|s| &s.surrogates, SURROGATES)?, n, v12)?,
            };
            if owned {
                return Ok((Found::Known(n), 0));
            }
        }
        if self.may_hold(Table::Ids, d) {
            if let Some(n) = view.surrogate_number(v12, d)? {
                return Ok((Found::Known(n), 0));
            }
        }
        let n = first();
        let (claim, seq) = self.claim_surrogate(view, n, v12)?;
        Ok((Found::Claimed(n, claim), seq))
    }

    /// Claims `n` for the row unless the number is taken (then says by which key).
    pub(super) fn claim(
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
    pub(super) fn save(
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
    pub(super) fn find_or_claim(
        &mut self,
        view: &View<'_>,
        n: i32,
        key: &MessageKey,
        key_text: KeyText,
        row: Row,
        content: bool,
    ) -> Result<(Found<i32, MessageKey>, u64), redb::Error> {
        match self.number_of(view, &key_text)? {
            Some((known, seq)) => {
                let saved = if content { self.save(view, known, key, key_text.text, row)? } else { 0 };
                Ok((Found::Known(known), seq.max(saved)))
            }
            None => {
                let (claim, seq) = self.claim(view, n, key_text.text, row)?;
                Ok((Found::Claimed(n, claim), seq))
            }
        }
    }

    /// Removes from [`Pending`] what the folder has committed to redb up to `folded` (unless a
    /// later entry replaced it).
    pub(super) fn let_go_of_folded(&mut self, folded: u64) {
        // What is let go of is read from redb from now on, as it is after the fold.
        self.snapshot = None;
        let p = &mut self.pending;
        while let Some(&(seq, what, bytes)) = self.unfolded.front() {
            if seq > folded {
                break;
            }
            self.unfolded.pop_front();
            self.unfolded_bytes -= bytes;
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

#[cfg(test)]
mod tests {
    use super::Held;

    /// Numbers that share a digest are each held and found; removing the first leaves the
    /// others found under it, and a number held twice counts once.
    #[test]
    fn held_digests_keep_every_number_that_shares_one() {
        let mut held = Held::<i32>::default();
        for (d, n) in [(7, 1), (7, 2), (9, 3), (7, 4), (7, 2)] {
            held.insert(d, n);
        }
        assert_eq!(held.len(), 4);
        assert_eq!(held.candidates(7).collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(held.candidates(8).count(), 0);
        held.remove(7, 1);
        let mut left: Vec<i32> = held.candidates(7).collect();
        left.sort_unstable();
        assert_eq!(left, [2, 4]);
        held.remove(7, 4);
        held.remove(9, 5);
        assert_eq!(held.candidates(7).collect::<Vec<_>>(), [2]);
        assert_eq!(held.candidates(9).collect::<Vec<_>>(), [3]);
        let mut pairs: Vec<(u64, i32)> = held.pairs().collect();
        pairs.sort_unstable();
        assert_eq!(pairs, [(7, 2), (9, 3)]);
        held.clear();
        assert_eq!(held.len(), 0);
    }
}
