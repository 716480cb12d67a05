//! Which v12 ids redb may hold: a Bloom filter over each of the two tables keyed by their digests
//! (message keys, users' and groups' ids), so that an id redb has never held is decided without
//! reading redb. Most ids a backend sends are new; where they are random (UUIDs) each read was a
//! B-tree page of its own, read under the store's lock.
//!
//! Two more hold the numbers redb has a row under, message numbers and surrogates, so that
//! claiming a number for a new message or user does not read the row that may be there: with a
//! full store (a million messages with their content, hundreds of MB) that read was a page of its
//! own for every new message, and surrogates are spread over all of their range, so one for every
//! new user; each read under the store's lock. Every row redb holds has its id's digest and number
//! in `message_digests` or `id_digests`, or still in the pairs the folder holds back
//! (`decide::Held`): a build takes the numbers from both.
//!
//! A filter answers "maybe" for every id its table holds, and "no" for most others. Ids only ever
//! enter the tables through the folder, which puts each folded id in the filters before the
//! decisions stop finding it among the pending entries; pruned ids stay in the filter (a "maybe"
//! that costs a read) until it is built again. The folder builds the filters from the tables a
//! chunk at a time between its folds and while it waits for the next (at the start, and again
//! once half as many ids have been folded into a filter as it was sized for), adding what it
//! folds meanwhile; until the first build is done, every lookup reads redb.
//!
//! `fastbloom`'s filters, seeded per process: ids are chosen by the backend, and one that makes
//! many ids collide only makes their decisions read redb.

use std::ops::Bound;
use std::sync::Arc;

use fastbloom::AtomicBloomFilter;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

type Hasher = foldhash::fast::RandomState;

/// Ids read from a table in one step of a build: a few milliseconds between two folds.
const CHUNK: usize = 4096;
/// The false positives a filter is sized for when it holds as many ids as it was built for.
const FALSE_POSITIVES: f64 = 0.01;
/// The fewest and the most ids a filter is sized for (1 % false positives: about 10 bits an id,
/// so at most 2.4 MiB a filter, and about 10 MiB for the two tables' filters while both are built
/// again). A table of more ids (the default retention keeps a million messages; users are never
/// pruned) fills its filter past what it was sized for: more of its lookups read redb, none is
/// answered wrong.
const MIN_CAPACITY: usize = 1 << 16;
/// (Smaller in the tests, so that one can fill a table past it.)
const MAX_CAPACITY: usize = if cfg!(test) { 1 << 17 } else { 2 << 20 };
/// A filter is sized for this many times the ids its table holds (with those the folder holds
/// back) when its build begins, and the next build begins once its size over this (half) has
/// been folded into it since its own build began: it then holds about what it was sized for.
/// (Four times, built again at a quarter, kept fewer ids from reading redb while a build went
/// on, and took 6–12 MiB more at the peak of a million events from new users, over 64 MB.)
const GROWTH: usize = 2;

/// Which table an id is a key of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Table {
    /// `message_digests`: a message's backend key.
    Messages,
    /// `id_digests`: a user's or group's v12 id with a surrogate.
    Ids,
    /// `messages`: a message number with a row (the id is the number, [`number_id`]).
    Numbers,
    /// `surrogates`: a user's or group's surrogate with a row (the id is the number).
    Surrogates,
}

/// The two filters, as the decisions read them.
pub(super) struct Filters {
    messages: Filter,
    ids: Filter,
    numbers: Filter,
    surrogates: Filter,
}

struct Filter {
    bloom: AtomicBloomFilter<Hasher>,
    /// How many ids it was sized for.
    capacity: usize,
}

impl Filter {
    fn new(ids: u64) -> Filter {
        let capacity = (ids.saturating_mul(GROWTH as u64) as usize).clamp(MIN_CAPACITY, MAX_CAPACITY);
        let bloom =
            AtomicBloomFilter::with_false_pos(FALSE_POSITIVES).hasher(Hasher::default()).expected_items(capacity);
        Filter { bloom, capacity }
    }
}

impl std::fmt::Debug for Filters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filters")
            .field("messages", &self.messages.capacity)
            .field("ids", &self.ids.capacity)
            .field("numbers", &self.numbers.capacity)
            .field("surrogates", &self.surrogates.capacity)
            .finish()
    }
}

impl Filters {
    fn of(&self, table: Table) -> &Filter {
        match table {
            Table::Messages => &self.messages,
            Table::Ids => &self.ids,
            Table::Numbers => &self.numbers,
            Table::Surrogates => &self.surrogates,
        }
    }

    /// False only when `id` (a digest, or a number for [`Table::Numbers`] and
    /// [`Table::Surrogates`]) is not a key of `table` (nor was, since the filter was built).
    pub(super) fn may_hold(&self, table: Table, id: u64) -> bool {
        self.of(table).bloom.contains(&id)
    }

    fn insert(&self, table: Table, id: u64) {
        self.of(table).bloom.insert(&id);
    }
}

/// A build under way: the tables scanned in key order, a chunk at a time.
struct Build {
    filters: Arc<Filters>,
    /// The table being scanned, `None` once both are (each digest table gives the numbers too).
    scanning: Option<Table>,
    /// The last entry scanned in it: a digest and its id's number.
    after: Option<(u64, i64)>,
    /// Ids put in each filter so far.
    put: [usize; 4],
    /// Of those, the ones folded since the build began: they count toward the next build.
    folded: [usize; 4],
}

/// The folder's side: the filters the decisions read, and the next ones while they are built.
#[derive(Default)]
pub(super) struct Keeper {
    /// The filters in use, with how many ids have been folded into each since its build began.
    current: Option<(Arc<Filters>, [usize; 4])>,
    building: Option<Build>,
}

/// Every filter, each at its [`slot`].
const TABLES: [Table; 4] = [Table::Messages, Table::Ids, Table::Numbers, Table::Surrogates];

fn slot(table: Table) -> usize {
    match table {
        Table::Messages => 0,
        Table::Ids => 1,
        Table::Numbers => 2,
        Table::Surrogates => 3,
    }
}

impl Keeper {
    /// Puts ids the folder has just committed in the filters (those in use and those being
    /// built). Called before they leave the pending entries.
    pub(super) fn folded(&mut self, ids: impl IntoIterator<Item = (Table, u64)>) {
        for (table, id) in ids {
            if let Some((filters, folded)) = &mut self.current {
                filters.insert(table, id);
                folded[slot(table)] += 1;
            }
            if let Some(build) = &mut self.building {
                build.filters.insert(table, id);
                build.put[slot(table)] += 1;
                build.folded[slot(table)] += 1;
            }
        }
    }

    /// Drops the build under way (a read failed); the next step begins another.
    pub(super) fn abandon(&mut self) {
        self.building = None;
    }

    /// Whether a build is under way (the folder then comes back soon, not at its next fold).
    pub(super) fn building(&self) -> bool {
        self.building.is_some()
    }

    /// One step: starts a build when there are no filters yet or once half as many ids as one
    /// was sized for have been folded into it since its build began ([`GROWTH`]: about as many as
    /// its table held; with a table pruned as it grows, by then about half its ids are gone), or
    /// scans a chunk of the build under way. Returns the new filters once built, for the
    /// decisions to read. (What a build scanned does not count: a table larger than the largest
    /// filter would otherwise be built again and again.) `held` gives the numbers whose rows redb
    /// holds while their digests are held back, as the filter they go in takes them; it is called
    /// when a build begins.
    pub(super) fn step(
        &mut self,
        db: &Database,
        messages: TableDefinition<(u64, i32), ()>,
        ids: TableDefinition<(u64, i64), ()>,
        held: impl FnOnce() -> Vec<(Table, u64)>,
    ) -> Result<Option<Arc<Filters>>, redb::Error> {
        let Some(build) = &mut self.building else {
            let full = match &self.current {
                None => true,
                Some((filters, folded)) => {
                    TABLES.iter().any(|&table| folded[slot(table)] > filters.of(table).capacity / GROWTH)
                }
            };
            if full {
                let txn = db.begin_read()?;
                let (message_count, id_count) = (txn.open_table(messages)?.len()?, txn.open_table(ids)?.len()?);
                // Folded before this build began, their digests not in the tables yet: the scan
                // would miss them, and ids folded from now on are put in as they are folded.
                // They count in the sizes, as the store holds them too.
                let held = held();
                let mut put = [0; 4];
                for (table, _) in &held {
                    put[slot(*table)] += 1;
                }
                let (held_messages, held_ids) = (put[slot(Table::Numbers)] as u64, put[slot(Table::Surrogates)] as u64);
                let sized = Filters {
                    messages: Filter::new(message_count + held_messages),
                    ids: Filter::new(id_count + held_ids),
                    numbers: Filter::new(message_count + held_messages),
                    surrogates: Filter::new(id_count + held_ids),
                };
                for (table, id) in held {
                    sized.insert(table, id);
                }
                self.building = Some(Build {
                    filters: Arc::new(sized),
                    scanning: Some(Table::Messages),
                    after: None,
                    put,
                    folded: [0; 4],
                });
            }
            return Ok(None);
        };
        let Some(table) = build.scanning else { return Ok(None) };
        let txn = db.begin_read()?;
        let mut scanned = 0;
        let after = build.after;
        let mut last = None;
        {
            let mut put = |id: u64, n: i64| {
                build.filters.insert(table, id);
                scanned += 1;
                // As the folds do: a chunk is a few milliseconds of CPU, not taken in one piece
                // from a runtime worker.
                if scanned % 256 == 0 {
                    std::thread::yield_now();
                }
                if scanned == CHUNK {
                    last = Some((id, n));
                }
            };
            match table {
                Table::Messages => {
                    // A message number, as it came from this table.
                    let from = after
                        .and_then(|(d, n)| Some(Bound::Excluded((d, i32::try_from(n).ok()?))))
                        .unwrap_or(Bound::Unbounded);
                    for row in txn.open_table(messages)?.range::<(u64, i32)>((from, Bound::Unbounded))?.take(CHUNK) {
                        let (id, n) = row?.0.value();
                        build.filters.insert(Table::Numbers, number_id(n));
                        put(id, n.into());
                    }
                }
                // Never scanned on their own: the digest tables give the numbers with the digests.
                Table::Numbers | Table::Surrogates => {}
                Table::Ids => {
                    for row in txn
                        .open_table(ids)?
                        .range::<(u64, i64)>((after.map_or(Bound::Unbounded, Bound::Excluded), Bound::Unbounded))?
                        .take(CHUNK)
                    {
                        let (id, n) = row?.0.value();
                        build.filters.insert(Table::Surrogates, number_id(n));
                        put(id, n);
                    }
                }
            }
        }
        build.put[slot(table)] += scanned;
        match table {
            Table::Messages => build.put[slot(Table::Numbers)] += scanned,
            Table::Ids => build.put[slot(Table::Surrogates)] += scanned,
            Table::Numbers | Table::Surrogates => {}
        }
        match last {
            Some(id) => build.after = Some(id),
            None => {
                build.after = None;
                build.scanning = match table {
                    Table::Messages => Some(Table::Ids),
                    Table::Ids | Table::Numbers | Table::Surrogates => None,
                };
            }
        }
        if build.scanning.is_some() {
            return Ok(None);
        }
        let Some(done) = self.building.take() else { return Ok(None) };
        let [message_keys, ids, numbers, surrogates] = done.put;
        tracing::debug!(message_keys, ids, numbers, surrogates, "id filters built");
        self.current = Some((done.filters.clone(), done.folded));
        Ok(Some(done.filters))
    }
}

/// A message number or a surrogate as the numbers' filters take it.
pub(super) fn number_id(n: impl Into<i64>) -> u64 {
    n.into() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: TableDefinition<(u64, i32), ()> = TableDefinition::new("keys");
    const IDS: TableDefinition<(u64, i64), ()> = TableDefinition::new("ids");

    /// As the store keys its tables.
    fn d(id: &str) -> u64 {
        super::super::digest(id)
    }

    fn db(name: &str) -> Database {
        let dir = std::env::temp_dir().join(format!("onebot-bridge-filter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = Database::create(dir.join("f.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(KEYS).unwrap();
        txn.open_table(IDS).unwrap();
        txn.commit().unwrap();
        db
    }

    fn store(db: &Database, keys: impl IntoIterator<Item = String>, ids: impl IntoIterator<Item = String>) {
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(KEYS).unwrap();
            for k in keys {
                t.insert((d(&k), 1), ()).unwrap();
            }
            let mut t = txn.open_table(IDS).unwrap();
            for k in ids {
                t.insert((d(&k), 1), ()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    /// Steps until a build is done; ids folded in between go in as the folder would put them.
    fn build(keeper: &mut Keeper, db: &Database, between: impl FnMut(&mut Keeper, usize)) -> Arc<Filters> {
        build_holding(keeper, db, &[], between)
    }

    /// [`build`], with `held` the numbers whose digests the folder holds back when it begins.
    fn build_holding(
        keeper: &mut Keeper,
        db: &Database,
        held: &[(Table, u64)],
        mut between: impl FnMut(&mut Keeper, usize),
    ) -> Arc<Filters> {
        for step in 0.. {
            if let Some(filters) = keeper.step(db, KEYS, IDS, || held.to_vec()).unwrap() {
                return filters;
            }
            between(keeper, step);
        }
        unreachable!()
    }

    /// Every id a table held when the build began, and every one folded while it went on, is a
    /// "maybe"; of ids never stored, nearly all are a "no".
    #[test]
    fn a_build_holds_every_stored_and_folded_id() {
        let db = db("build");
        let stored = |i: usize| format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
        store(&db, (0..3 * CHUNK + 7).map(stored), (0..CHUNK + 1).map(|i| format!("u{i}")));
        let mut keeper = Keeper::default();
        let mut folded = Vec::new();
        let filters = build(&mut keeper, &db, |keeper, step| {
            // A fold between two chunks: into redb (before the scan passed it or after), and into
            // the filters.
            let (key, id) = (format!("f{step}"), format!("g{step}"));
            store(&db, [key.clone()], [id.clone()]);
            keeper.folded([(Table::Messages, d(&key)), (Table::Ids, d(&id))]);
            folded.push((key, id));
        });
        assert!(folded.len() >= 5, "the build took a step per chunk");
        for i in 0..3 * CHUNK + 7 {
            assert!(filters.may_hold(Table::Messages, d(&stored(i))), "stored key {i}");
        }
        for i in 0..CHUNK + 1 {
            assert!(filters.may_hold(Table::Ids, d(&format!("u{i}"))), "stored id {i}");
        }
        for (key, id) in &folded {
            assert!(filters.may_hold(Table::Messages, d(key)) && filters.may_hold(Table::Ids, d(id)));
        }
        let strangers = (0..10_000).filter(|i| filters.may_hold(Table::Messages, d(&format!("never-{i}")))).count();
        assert!(strangers < 300, "{strangers} of 10 000 ids never stored were a maybe");
        assert!(!keeper.building());
    }

    /// The numbers' filters hold every message number and surrogate redb has a row under: those
    /// the digest tables give with their digests, those whose digests the folder still holds back
    /// when the build begins, and those folded while it goes on. Numbers with no row are nearly
    /// all a "no", so a claim of a new number reads nothing.
    #[test]
    fn the_numbers_filters_hold_every_number_with_a_row() {
        let db = db("numbers");
        let number = |i: usize| (i as u32).wrapping_mul(0x9e37_79b9) as i32 & i32::MAX;
        let surrogate = |i: usize| 4_000_000_000 + (i as i64).wrapping_mul(0x9e37_79b9) % 1_000_000_000_000;
        {
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(KEYS).unwrap();
                for i in 0..2 * CHUNK + 3 {
                    t.insert((d(&format!("k{i}")), number(i)), ()).unwrap();
                }
                let mut t = txn.open_table(IDS).unwrap();
                for i in 0..CHUNK + 5 {
                    t.insert((d(&format!("u{i}")), surrogate(i)), ()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let held_numbers: Vec<i32> = (1_000_000..1_000_100).map(number).collect();
        let held_surrogates: Vec<i64> = (1_000_000..1_000_100).map(surrogate).collect();
        let held: Vec<(Table, u64)> = held_numbers
            .iter()
            .map(|&n| (Table::Numbers, number_id(n)))
            .chain(held_surrogates.iter().map(|&n| (Table::Surrogates, number_id(n))))
            .collect();
        let mut keeper = Keeper::default();
        let mut folded = Vec::new();
        let filters = build_holding(&mut keeper, &db, &held, |keeper, step| {
            let (n, s) = (number(2_000_000 + step), surrogate(2_000_000 + step));
            keeper.folded([(Table::Numbers, number_id(n)), (Table::Surrogates, number_id(s))]);
            folded.push((n, s));
        });
        assert!(!folded.is_empty());
        let numbers = (0..2 * CHUNK + 3).map(number).chain(held_numbers).chain(folded.iter().map(|f| f.0));
        for n in numbers {
            assert!(filters.may_hold(Table::Numbers, number_id(n)), "number {n} has a row");
        }
        let surrogates = (0..CHUNK + 5).map(surrogate).chain(held_surrogates).chain(folded.iter().map(|f| f.1));
        for n in surrogates {
            assert!(filters.may_hold(Table::Surrogates, number_id(n)), "surrogate {n} has a row");
        }
        for table in [Table::Numbers, Table::Surrogates] {
            let strangers = (3_000_000..3_010_000)
                .map(|i| if table == Table::Numbers { number_id(number(i)) } else { number_id(surrogate(i)) })
                .filter(|&id| filters.may_hold(table, id))
                .count();
            assert!(strangers < 300, "{table:?}: {strangers} of 10 000 numbers without a row were a maybe");
        }
        // Folded into the filters in use, too: they stay right until the next build.
        keeper.folded([(Table::Numbers, number_id(7)), (Table::Surrogates, number_id(5_000_000_007i64))]);
        assert!(filters.may_hold(Table::Numbers, number_id(7)));
        assert!(filters.may_hold(Table::Surrogates, number_id(5_000_000_007i64)));
    }

    /// Once half as many ids as a filter was sized for have been folded into it since its build
    /// began (those folded while it was built count), the next step begins a new build, sized for
    /// what the tables hold then; what a build scanned never starts another.
    #[test]
    fn a_full_filter_is_built_again() {
        let db = db("again");
        let mut keeper = Keeper::default();
        let first = build(&mut keeper, &db, |_, _| {});
        assert_eq!(first.messages.capacity, MIN_CAPACITY);
        let half = MIN_CAPACITY / GROWTH;
        let many: Vec<String> = (0..half + 1).map(|i| format!("k{i}")).collect();
        store(&db, many.iter().cloned(), []);
        keeper.folded(many.iter().take(half).map(|k| (Table::Messages, d(k))));
        assert!(keeper.step(&db, KEYS, IDS, Vec::new).unwrap().is_none());
        assert!(!keeper.building(), "half full: not yet");
        keeper.folded(many.iter().skip(half).map(|k| (Table::Messages, d(k))));
        assert!(keeper.step(&db, KEYS, IDS, Vec::new).unwrap().is_none());
        assert!(keeper.building(), "more than half: a new build begins");
        // Folded while it is built: in the new filters, and counted toward the next build.
        let during: Vec<String> = (0..half + 1).map(|i| format!("d{i}")).collect();
        let second = build(&mut keeper, &db, |keeper, step| {
            if step == 0 {
                store(&db, during.iter().cloned(), []);
                keeper.folded(during.iter().take(half).map(|k| (Table::Messages, d(k))));
            }
        });
        assert_eq!(second.messages.capacity, GROWTH * (half + 1), "sized for the table when the build began");
        assert!(second.may_hold(Table::Messages, d("k0")) && second.may_hold(Table::Messages, d("d0")));
        assert!(keeper.step(&db, KEYS, IDS, Vec::new).unwrap().is_none());
        assert!(!keeper.building(), "half folded since the build began: not yet");
        keeper.folded(during.iter().skip(half).chain(["e".to_owned()].iter()).map(|k| (Table::Messages, d(k))));
        assert!(keeper.step(&db, KEYS, IDS, Vec::new).unwrap().is_none());
        assert!(keeper.building(), "past half, counting what was folded during the build");
        build(&mut keeper, &db, |_, _| {});
        // A table of more ids than the largest filter is built once, not again at every step.
        let more: Vec<String> = (0..MAX_CAPACITY).map(|i| format!("m{i}")).collect();
        store(&db, more.iter().cloned(), []);
        keeper.folded(more.iter().map(|k| (Table::Messages, d(k))));
        let third = build(&mut keeper, &db, |_, _| {});
        assert_eq!(third.messages.capacity, MAX_CAPACITY);
        assert!(third.may_hold(Table::Messages, d("m0")) && third.may_hold(Table::Messages, d("k1")));
        for _ in 0..3 {
            assert!(keeper.step(&db, KEYS, IDS, Vec::new).unwrap().is_none());
            assert!(!keeper.building(), "nothing folded since: no new build");
        }
    }
}
