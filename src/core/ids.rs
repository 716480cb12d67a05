//! Integer ids for v11 bots, string ids for v12 backends, and the store that remembers the pairs.
//!
//! Rules (see README, "Ids"):
//! - A v12 user/group id that is a canonical decimal integer with |n| < 2^52 is that integer: QQ
//!   backends need no state at all.
//! - Any other id (`wxid_abc`, a 20-digit snowflake, `007`) gets a *surrogate* in [2^52, 2^53): the
//!   first free number in a deterministic probe sequence derived from SHA-256 of the string, so the
//!   same string gets the same number on every install unless two strings collide.
//! - A v12 `message_id` (scoped by the bot account that saw it) gets a positive int32 in
//!   1..=2^31-1: the number itself when the v12 id is such a number and free, else the probe sequence.
//!
//! The probing algorithm lives here; an [`IdStore`] only keeps the tables and answers
//! "insert unless taken" atomically, so an in-memory map, an embedded database or a networked
//! store shared by several bridges can all sit behind it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::sync::LockUnpoisoned;
use compact_str::CompactString;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Smallest surrogate: ids below this (in absolute value) pass through unchanged.
pub const SURROGATE_MIN: i64 = 1 << 52;
/// One past the largest surrogate (2^53, the largest integer a JavaScript bot holds exactly).
pub const SURROGATE_END: i64 = 1 << 53;
/// How many candidates are tried before an id is declared unassignable.
const MAX_PROBES: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("id store failed: {0}")]
    Store(String),
    #[error("no free number for {0:?} after {MAX_PROBES} probes")]
    Exhausted(String),
    #[error("v11 id {0} is unknown to this bridge: never issued, or forgotten by the in-memory store (the id is given again, the same, when the user or group is next seen)")]
    UnknownSurrogate(i64),
    #[error("message_id {0} is unknown to this bridge")]
    UnknownMessage(i64),
}

/// Which bot account saw a message, and the backend's id for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct MessageKey {
    /// v12 `self.user_id` of the account.
    pub self_id: CompactString,
    /// v12 `message_id`.
    pub message_id: CompactString,
}

/// What the bridge remembers about a message id it issued.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageRecord {
    pub key: MessageKey,
    /// `private`, `group` or `channel` (v12 `detail_type`).
    pub detail_type: CompactString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<CompactString>,
    /// The sender (v12 id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<CompactString>,
    /// The message itself, when the bridge saw it (an event, or a bot's send): `get_msg` answers
    /// from this. Ids seen only as a reference (a reply, a recall) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<StoredMessage>,
}

/// A message as `get_msg` returns it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Unix seconds.
    pub time: i64,
    /// v11 segments (data values text).
    pub segments: Vec<crate::core::message::Segment>,
    /// The sender's v11 id and nickname.
    pub sender_id: i64,
    #[serde(default)]
    pub sender_name: String,
}

/// Outcome of an "insert unless taken" on one number.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim<K> {
    /// The number now belongs to the key.
    Inserted,
    /// The number already belongs to this key (e.g. written by another bridge in the meantime)
    /// or to another one.
    Taken(K),
}

/// Outcome of a "find, or else claim" ([`IdStore::find_or_claim_surrogate`],
/// [`IdStore::find_or_claim_message`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Found<N, K> {
    /// The id has a number already.
    Known(N),
    /// It had none: the number tried (the first candidate) and what claiming it gave.
    Claimed(N, Claim<K>),
}

/// The tables behind id translation. Implementations must make `claim_*` atomic per number.
pub trait IdStore: Send + Sync + 'static {
    fn surrogate_of(&self, v12: &str) -> impl Future<Output = Result<Option<i64>, IdError>> + Send;
    fn claim_surrogate(&self, n: i64, v12: &str) -> impl Future<Output = Result<Claim<String>, IdError>> + Send;
    fn v12_of_surrogate(&self, n: i64) -> impl Future<Output = Result<Option<String>, IdError>> + Send;
    fn message_id_of(&self, key: &MessageKey) -> impl Future<Output = Result<Option<i32>, IdError>> + Send;
    fn claim_message(
        &self,
        n: i32,
        record: &MessageRecord,
    ) -> impl Future<Output = Result<Claim<MessageKey>, IdError>> + Send;
    fn message_of(&self, n: i32) -> impl Future<Output = Result<Option<MessageRecord>, IdError>> + Send;
    /// Replaces the record of an id already issued to the same key (to attach a message seen
    /// after its id was first given out, e.g. as a reply target).
    fn save_message(&self, n: i32, record: &MessageRecord) -> impl Future<Output = Result<(), IdError>> + Send;

    /// The surrogate `v12` has, or else the outcome of claiming the first candidate (`first` is
    /// called only when it is needed): what every id seen on the event path asks. By default a
    /// lookup, then a claim; a networked store answers both in one round trip.
    fn find_or_claim_surrogate(
        &self,
        first: impl FnOnce() -> i64 + Send,
        v12: &str,
    ) -> impl Future<Output = Result<Found<i64, String>, IdError>> + Send {
        async move {
            if let Some(n) = self.surrogate_of(v12).await? {
                return Ok(Found::Known(n));
            }
            let n = first();
            Ok(Found::Claimed(n, self.claim_surrogate(n, v12).await?))
        }
    }

    /// The number the record's message has (its content saved with it, when the record carries
    /// some), or else the outcome of claiming the first candidate for it. By default a lookup,
    /// then a save or a claim; a networked store answers in one round trip.
    fn find_or_claim_message(
        &self,
        first: impl FnOnce() -> i32 + Send,
        record: &MessageRecord,
    ) -> impl Future<Output = Result<Found<i32, MessageKey>, IdError>> + Send {
        async move {
            if let Some(n) = self.message_id_of(&record.key).await? {
                if record.content.is_some() {
                    self.save_message(n, record).await?;
                }
                return Ok(Found::Known(n));
            }
            let n = first();
            Ok(Found::Claimed(n, self.claim_message(n, record).await?))
        }
    }
}

/// A v12 id that passes through as an integer, if it is one.
///
/// Checked and read in one pass over the bytes: every user, group and sender id of every event
/// comes through here.
pub fn passthrough_id(v12: &str) -> Option<i64> {
    let (negative, digits) = match v12.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        all => (false, all),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        // A leading zero, and "-0".
        [b'0', ..] => return None,
        _ if digits.len() > 16 => return None,
        _ => {}
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        // At most 16 digits: below 10^16, far from overflowing.
        n = n * 10 + i64::from(b - b'0');
    }
    let n = if negative { -n } else { n };
    (n.abs() < SURROGATE_MIN).then_some(n)
}

/// Is this v11 integer in the surrogate range (so it must be looked up)?
pub fn is_surrogate(n: i64) -> bool {
    (SURROGATE_MIN..SURROGATE_END).contains(&n)
}

fn probe_hash(namespace: &str, key: &str, attempt: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(namespace.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.update(attempt.to_le_bytes());
    let out = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    u64::from_le_bytes(first)
}

/// The `attempt`-th surrogate candidate for a v12 id (deterministic across installs).
pub fn surrogate_candidate(v12: &str, attempt: u32) -> i64 {
    SURROGATE_MIN + (probe_hash("id", v12, attempt) % (SURROGATE_MIN as u64)) as i64
}

/// Translates ids in both directions over a store.
#[derive(Debug, Default)]
pub struct IdMapper<S> {
    store: S,
    /// Where new message ids are taken from, one after another (see [`IdMapper::message_to_v11`]).
    next_message: AtomicU32,
}

impl<S: IdStore> IdMapper<S> {
    pub fn new(store: S) -> Self {
        IdMapper { store, next_message: AtomicU32::new(rand::random()) }
    }

    /// The `attempt`-th v11 message_id to try for a message: its own number when it is a
    /// positive int32 (a QQ backend's ids stay what they are), else the next number of a
    /// sequence that starts at a random point each run. Consecutive ids keep the store's
    /// message table appending (one B-tree leaf takes a commit's worth of new messages) where
    /// hashed ids touched a leaf each; a number already taken (from an earlier run) is probed
    /// past.
    fn message_candidate(&self, key: &MessageKey, attempt: u32) -> i32 {
        if attempt == 0 {
            if let Ok(n) = key.message_id.parse::<i32>() {
                if n > 0 && key.message_id == n.to_string() {
                    return n;
                }
            }
        }
        let raw = self.next_message.fetch_add(1, Ordering::Relaxed);
        1 + (raw % i32::MAX as u32) as i32
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// v12 user/group id → v11 integer (assigning a surrogate on first sight).
    pub async fn to_v11(&self, v12: &str) -> Result<i64, IdError> {
        if let Some(n) = passthrough_id(v12) {
            return Ok(n);
        }
        let mut outcome = self.store.find_or_claim_surrogate(|| surrogate_candidate(v12, 0), v12).await?;
        for attempt in 1..=MAX_PROBES {
            match outcome {
                Found::Known(n) | Found::Claimed(n, Claim::Inserted) => return Ok(n),
                Found::Claimed(n, Claim::Taken(owner)) if owner == v12 => return Ok(n),
                Found::Claimed(_, Claim::Taken(_)) if attempt == MAX_PROBES => break,
                Found::Claimed(_, Claim::Taken(_)) => {
                    let n = surrogate_candidate(v12, attempt);
                    outcome = Found::Claimed(n, self.store.claim_surrogate(n, v12).await?);
                }
            }
        }
        Err(IdError::Exhausted(v12.to_owned()))
    }

    /// v11 integer → v12 id. Surrogates must have been issued; other integers are their decimal form.
    pub async fn to_v12(&self, n: i64) -> Result<String, IdError> {
        if !is_surrogate(n) {
            return Ok(n.to_string());
        }
        self.store.v12_of_surrogate(n).await?.ok_or(IdError::UnknownSurrogate(n))
    }

    /// v12 message → positive int32 v11 `message_id`, remembering where the message lives (and
    /// what it says, when the record carries its content).
    pub async fn message_to_v11(&self, record: &MessageRecord) -> Result<i32, IdError> {
        let mut outcome = self.store.find_or_claim_message(|| self.message_candidate(&record.key, 0), record).await?;
        for attempt in 1..=MAX_PROBES {
            match outcome {
                Found::Known(n) | Found::Claimed(n, Claim::Inserted) => return Ok(n),
                // The number is this message's already, or another bridge sharing the store (or
                // another task) gave the message a number meanwhile: the message keeps the number
                // it has. That one may have been claimed without content (as a reply target), so
                // the content is saved on it, as a found one has it saved, or `get_msg` would never
                // see it.
                Found::Claimed(n, Claim::Taken(owner)) if owner == record.key => {
                    let n = self.store.message_id_of(&record.key).await?.unwrap_or(n);
                    if record.content.is_some() {
                        self.store.save_message(n, record).await?;
                    }
                    return Ok(n);
                }
                Found::Claimed(_, Claim::Taken(_)) if attempt == MAX_PROBES => break,
                Found::Claimed(_, Claim::Taken(_)) => {
                    let n = self.message_candidate(&record.key, attempt);
                    outcome = Found::Claimed(n, self.store.claim_message(n, record).await?);
                }
            }
        }
        Err(IdError::Exhausted(record.key.message_id.to_string()))
    }

    /// v11 `message_id` → what the bridge knows about it.
    pub async fn message_to_v12(&self, n: i64) -> Result<MessageRecord, IdError> {
        let Ok(small) = i32::try_from(n) else {
            return Err(IdError::UnknownMessage(n));
        };
        self.store.message_of(small).await?.ok_or(IdError::UnknownMessage(n))
    }
}

/// Default byte bound of [`MemoryIdStore`]'s message ids (see [`MemoryIdStore::message_bytes`]).
pub const DEFAULT_MEMORY_STORE_BYTES: usize = 32 << 20;
/// The smallest byte bound a configuration may set.
pub const MIN_MEMORY_STORE_BYTES: usize = 1 << 20;
/// A message whose entry alone would take more than this share of the byte bound is remembered
/// without its content: its id still works, `get_msg` asks the backend (if it can) for the text.
const CONTENT_SHARE: usize = 16;
/// The surrogates' own bound is this share of the bytes bound (on top of it).
const SURROGATE_SHARE: usize = 4;

/// The in-memory store (`--ephemeral`): ids live as long as the process.
///
/// Message ids are bounded twice, by count and by bytes (an estimate of the heap they hold, see
/// [`MemoryIdStore::message_bytes`]); when either bound is reached the oldest is forgotten first,
/// and a bot asking for it gets a clear "unknown message_id".
///
/// Surrogates (non-numeric user and group ids) have a bound of their own, a quarter of the bytes
/// one: a backend that sends a new user with every event must not grow the process without end.
/// A surrogate is the first free number of a probe sequence of its string, so one forgotten and
/// seen again gets the same number (unless, in 2^52, another string took it meanwhile); what is
/// lost meanwhile is the way back, a bot's action naming a user not seen since. So the least
/// recently used go first: an entry looked up either way since the eviction last came round gets
/// another turn (the CLOCK algorithm).
pub struct MemoryIdStore {
    inner: Mutex<MemoryTables>,
    max_messages: usize,
    max_bytes: usize,
}

struct MemoryTables {
    surrogates: Surrogates,
    messages: Messages,
}

/// The in-memory store's surrogates, at most a number of bytes of them (see [`MemoryIdStore`]).
#[derive(Default)]
struct Surrogates {
    /// v12 id → surrogate. The strings are chosen by the backend's users: std's SipHash, keyed
    /// per process, keeps colliding ids from slowing the table down.
    by_v12: HashMap<Box<str>, i64>,
    /// surrogate → v12 id. Surrogates are SHA-256 probes, so a fast hasher is enough.
    by_surrogate: HashMap<i64, Kept, foldhash::fast::RandomState>,
    /// Every surrogate, in the order the eviction comes round to them.
    order: VecDeque<i64>,
    bytes: usize,
}

struct Kept {
    v12: Box<str>,
    /// Looked up since the eviction last came round to it.
    used: bool,
}

/// What a surrogate costs besides its two copies of the id: a slot in each map and in the order,
/// and the allocator's overhead on the copies.
const SURROGATE_BYTES: usize = 96;

impl Surrogates {
    fn cost(v12: &str) -> usize {
        SURROGATE_BYTES + 2 * v12.len()
    }

    fn number_of(&mut self, v12: &str) -> Option<i64> {
        let n = *self.by_v12.get(v12)?;
        if let Some(kept) = self.by_surrogate.get_mut(&n) {
            kept.used = true;
        }
        Some(n)
    }

    fn owner_of(&mut self, n: i64) -> Option<&str> {
        let kept = self.by_surrogate.get_mut(&n)?;
        kept.used = true;
        Some(&kept.v12)
    }

    /// Remembers a new surrogate, then forgets others until the bytes are within `max_bytes`
    /// (never the new one).
    fn insert(&mut self, n: i64, v12: &str, max_bytes: usize) {
        self.by_surrogate.insert(n, Kept { v12: v12.into(), used: false });
        self.by_v12.insert(v12.into(), n);
        self.order.push_back(n);
        self.bytes += Surrogates::cost(v12);
        while self.bytes > max_bytes && self.order.len() > 1 {
            let Some(oldest) = self.order.pop_front() else { break };
            match self.by_surrogate.get_mut(&oldest) {
                Some(kept) if kept.used => {
                    kept.used = false;
                    self.order.push_back(oldest);
                }
                Some(_) => {
                    if let Some(kept) = self.by_surrogate.remove(&oldest) {
                        self.by_v12.remove(&kept.v12);
                        self.bytes -= Surrogates::cost(&kept.v12);
                    }
                }
                None => {}
            }
        }
    }
}

/// Message ids in the order they were stored: a ring of packed entries addressed by sequence
/// number, and two indexes pointing into it (by v11 number, by v12 key). The record is copied
/// once, into one allocation; the key index holds no copy of the key strings.
struct Messages {
    /// `None` where an entry was saved again later (it moved to the back); skipped by eviction.
    ring: VecDeque<Option<Packed>>,
    /// Sequence number of `ring[0]`.
    first: u64,
    /// v11 number → sequence number. The numbers are the backend's own or SHA-256 probes.
    by_id: HashMap<i32, u64, foldhash::fast::RandomState>,
    /// Sequence numbers, hashed by the key of the entry they point at.
    by_key: HashTable<u64>,
    /// Message keys are chosen by the backend: SipHash keyed per process.
    key_hasher: std::hash::RandomState,
    live: usize,
    bytes: usize,
}

/// One remembered message: `self_id`, `message_id`, then the rest of the record in the stores'
/// binary form ([`crate::core::record`]), in one allocation.
struct Packed {
    buf: Box<[u8]>,
    self_len: u32,
    id_len: u32,
    n: i32,
    /// The key's [`KeyHash`], set when the entry is stored (it fits the slot's padding).
    hash: u32,
}

/// Bytes one ring slot takes, whether it holds an entry or not.
const SLOT_BYTES: usize = std::mem::size_of::<Option<Packed>>();
/// What an entry costs besides its text and its ring slot: a slot in each index (hashbrown keeps
/// one control byte per slot and fills at most 7/8 of them) and the allocator's own overhead on
/// the text's allocation (glibc: 8 bytes of header, 16-byte rounding).
const INDEX_BYTES: usize = (std::mem::size_of::<(i32, u64)>() + 1 + std::mem::size_of::<u64>() + 1) * 8 / 7 + 16;
// The key's hash sits where the slot had padding: a slot stays 32 bytes.
const _: () = assert!(SLOT_BYTES == 32);
// The README quotes "about 80 bytes" per entry besides its text.
const _: () = assert!(INDEX_BYTES + SLOT_BYTES <= 80);

impl Packed {
    fn new(n: i32, record: &MessageRecord, with_content: bool) -> Packed {
        let key = &record.key;
        let key_len = key.self_id.len() + key.message_id.len();
        let mut bytes = Vec::with_capacity(key_len + 256);
        bytes.extend_from_slice(key.self_id.as_bytes());
        bytes.extend_from_slice(key.message_id.as_bytes());
        // Every part encodes (string keys, JSON values); were one ever not to, the key alone is
        // kept and reading the record back reports it unreadable.
        if crate::core::record::write_body(&mut bytes, record, with_content).is_err() {
            bytes.truncate(key_len);
        }
        Packed {
            buf: bytes.into_boxed_slice(),
            self_len: key.self_id.len() as u32,
            id_len: key.message_id.len() as u32,
            n,
            hash: 0,
        }
    }

    /// The estimate [`MemoryIdStore::message_bytes`] adds up (the ring slot is counted apart).
    fn bytes(&self) -> usize {
        self.buf.len() + INDEX_BYTES
    }

    /// The key's two strings, as bytes (they were copied from `&str`s).
    fn self_id(&self) -> &[u8] {
        &self.buf[..self.self_len as usize]
    }

    fn message_id(&self) -> &[u8] {
        &self.buf[self.self_len as usize..(self.self_len + self.id_len) as usize]
    }

    fn is(&self, key: &MessageKey) -> bool {
        self.self_id() == key.self_id.as_bytes() && self.message_id() == key.message_id.as_bytes()
    }

    fn key(&self) -> MessageKey {
        MessageKey {
            self_id: CompactString::from_utf8_lossy(self.self_id()),
            message_id: CompactString::from_utf8_lossy(self.message_id()),
        }
    }

    fn record(&self) -> Result<MessageRecord, IdError> {
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(CompactString::from)
                .map_err(|e| IdError::Store(format!("a remembered message is unreadable: {e}")))
        };
        let key = MessageKey { self_id: text(self.self_id())?, message_id: text(self.message_id())? };
        crate::core::record::read_body(key, &self.buf[(self.self_len + self.id_len) as usize..])
    }
}

/// A message key's hash: 32 bits of its keyed SipHash. Each entry keeps its key's, so forgetting
/// an entry or growing the index hashes no key again; the index spreads it over 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyHash(u32);

impl KeyHash {
    fn of(hasher: &std::hash::RandomState, self_id: &[u8], message_id: &[u8]) -> KeyHash {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = hasher.build_hasher();
        self_id.hash(&mut h);
        message_id.hash(&mut h);
        KeyHash(h.finish() as u32)
    }

    /// The hash the index files it by: hashbrown reads a slot's control byte from the top bits and
    /// its bucket from the low ones, and multiplying by an odd constant fills both.
    fn index(self) -> u64 {
        u64::from(self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn of_entry(p: &Packed) -> KeyHash {
        KeyHash(p.hash)
    }
}

impl Messages {
    fn new() -> Messages {
        Messages {
            ring: VecDeque::new(),
            first: 0,
            by_id: HashMap::default(),
            by_key: HashTable::new(),
            key_hasher: std::hash::RandomState::new(),
            live: 0,
            bytes: 0,
        }
    }

    fn at(&self, seq: u64) -> Option<&Packed> {
        self.ring.get(usize::try_from(seq.checked_sub(self.first)?).ok()?)?.as_ref()
    }

    fn by_id(&self, n: i32) -> Option<&Packed> {
        self.at(*self.by_id.get(&n)?)
    }

    /// The hash `key` is indexed by; a key's hash is the same for the life of the table, so one
    /// taken under an earlier lock serves a later one.
    fn hash_of(&self, key: &MessageKey) -> KeyHash {
        KeyHash::of(&self.key_hasher, key.self_id.as_bytes(), key.message_id.as_bytes())
    }

    /// The sequence number of `key`, whose hash is `hash` ([`Messages::hash_of`]).
    fn seq_of(&self, key: &MessageKey, hash: KeyHash) -> Option<u64> {
        self.by_key.find(hash.index(), |&seq| self.at(seq).is_some_and(|p| p.is(key))).copied()
    }

    /// The number of `key`, whose hash is `hash`.
    fn number_of(&self, key: &MessageKey, hash: KeyHash) -> Option<i32> {
        self.seq_of(key, hash).and_then(|seq| self.at(seq)).map(|p| p.n)
    }

    /// Stores an entry whose number is free, forgetting the oldest until both bounds hold. `hash`
    /// is its key's ([`Messages::hash_of`]).
    fn push(&mut self, mut packed: Packed, hash: KeyHash, max_messages: usize, max_bytes: usize) {
        debug_assert_eq!(hash, KeyHash::of(&self.key_hasher, packed.self_id(), packed.message_id()));
        packed.hash = hash.0;
        let cost = packed.bytes() + SLOT_BYTES;
        while self.live > 0 && (self.live >= max_messages || self.bytes + cost > max_bytes) {
            self.pop_front();
        }
        let seq = self.first + self.ring.len() as u64;
        let Messages { ring, first, by_key, .. } = self;
        by_key.insert_unique(hash.index(), seq, |&s| {
            // Re-filing while the table grows: every indexed sequence number has its entry.
            KeyHash::of_entry(ring[(s - *first) as usize].as_ref().expect("an indexed entry")).index()
        });
        self.by_id.insert(packed.n, seq);
        self.bytes += cost;
        self.live += 1;
        self.ring.push_back(Some(packed));
    }

    /// Forgets the oldest slot (and its entry, unless it moved on).
    fn pop_front(&mut self) {
        let Some(slot) = self.ring.pop_front() else { return };
        let seq = self.first;
        self.first += 1;
        self.bytes -= SLOT_BYTES;
        if let Some(p) = slot {
            self.unindex(&p, seq);
        }
    }

    /// Removes an entry from both indexes and the counts (its slot stays counted).
    fn unindex(&mut self, p: &Packed, seq: u64) {
        if self.by_id.get(&p.n) == Some(&seq) {
            self.by_id.remove(&p.n);
        }
        if let Ok(entry) = self.by_key.find_entry(KeyHash::of_entry(p).index(), |&s| s == seq) {
            entry.remove();
        }
        self.bytes -= p.bytes();
        self.live -= 1;
    }

    /// Takes the entry at `seq` out, leaving an empty slot behind.
    fn take(&mut self, seq: u64) -> Option<Packed> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        let p = self.ring.get_mut(i)?.take()?;
        self.unindex(&p, seq);
        Some(p)
    }
}

impl Default for MemoryIdStore {
    fn default() -> Self {
        MemoryIdStore::new(1_000_000, DEFAULT_MEMORY_STORE_BYTES)
    }
}

impl std::fmt::Debug for MemoryIdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryIdStore")
            .field("messages", &self.message_count())
            .field("message_bytes", &self.message_bytes())
            .field("max_messages", &self.max_messages)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl MemoryIdStore {
    /// A store keeping at most `max_messages` message ids in at most about `max_bytes`.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        MemoryIdStore {
            inner: Mutex::new(MemoryTables { surrogates: Surrogates::default(), messages: Messages::new() }),
            max_messages: max_messages.max(1),
            max_bytes,
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, MemoryTables> {
        // A panic while holding the lock cannot leave the maps half-written in a way that matters
        // more than losing all ids, so a poisoned lock is simply taken over.
        self.inner.lock_unpoisoned()
    }

    /// Message ids remembered now.
    pub fn message_count(&self) -> usize {
        self.tables().messages.live
    }

    /// The estimate the byte bound applies to: per message, its packed bytes (`self_id`,
    /// `message_id`, and the rest of the record in binary — segments included), one ring
    /// slot, its two index slots and the allocator's overhead on the text. The tables grow by
    /// doubling, so their spare capacity (up to the same again for slots) is not counted.
    pub fn message_bytes(&self) -> usize {
        self.tables().messages.bytes
    }

    /// Surrogates remembered now.
    pub fn surrogate_count(&self) -> usize {
        self.tables().surrogates.by_surrogate.len()
    }

    /// The estimate the surrogates' bound (a quarter of the bytes bound) applies to.
    pub fn surrogate_bytes(&self) -> usize {
        self.tables().surrogates.bytes
    }

    /// The number of `key`, if known, and the key's hash for a later step under another lock.
    fn look_up(&self, key: &MessageKey) -> (Option<i32>, KeyHash) {
        let t = self.tables();
        let hash = t.messages.hash_of(key);
        (t.messages.number_of(key, hash), hash)
    }

    /// Packs a record, without its content when the entry would take too large a share of the bound.
    fn pack(&self, n: i32, record: &MessageRecord) -> Packed {
        let packed = Packed::new(n, record, true);
        if record.content.is_some() && packed.bytes() + SLOT_BYTES > self.max_bytes / CONTENT_SHARE {
            tracing::debug!(bytes = packed.bytes(), "message too large to remember its content");
            return Packed::new(n, record, false);
        }
        packed
    }
}

impl IdStore for MemoryIdStore {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        Ok(self.tables().surrogates.number_of(v12))
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        let mut t = self.tables();
        if let Some(owner) = t.surrogates.owner_of(n) {
            return Ok(Claim::Taken(owner.to_string()));
        }
        t.surrogates.insert(n, v12, self.max_bytes / SURROGATE_SHARE);
        Ok(Claim::Inserted)
    }

    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        Ok(self.tables().surrogates.owner_of(n).map(str::to_owned))
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        Ok(self.look_up(key).0)
    }

    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        // Packed before taking the lock: the lock is held only for table updates.
        let packed = self.pack(n, record);
        let mut t = self.tables();
        if let Some(owner) = t.messages.by_id(n) {
            return Ok(Claim::Taken(owner.key()));
        }
        let hash = t.messages.hash_of(&record.key);
        t.messages.push(packed, hash, self.max_messages, self.max_bytes);
        Ok(Claim::Inserted)
    }

    /// The default's lookup, then a claim that looks again under the lock: a message asked for
    /// by two tasks at once (as a reply target and for itself) keeps the first number given.
    async fn find_or_claim_message(
        &self,
        first: impl FnOnce() -> i32 + Send,
        record: &MessageRecord,
    ) -> Result<Found<i32, MessageKey>, IdError> {
        let (known, hash) = self.look_up(&record.key);
        let known = match known {
            Some(known) => known,
            None => {
                let n = first();
                let packed = self.pack(n, record);
                let mut t = self.tables();
                match t.messages.number_of(&record.key, hash) {
                    Some(known) => known,
                    None => {
                        if let Some(owner) = t.messages.by_id(n) {
                            return Ok(Found::Claimed(n, Claim::Taken(owner.key())));
                        }
                        t.messages.push(packed, hash, self.max_messages, self.max_bytes);
                        return Ok(Found::Claimed(n, Claim::Inserted));
                    }
                }
            }
        };
        if record.content.is_some() {
            self.save_message(known, record).await?;
        }
        Ok(Found::Known(known))
    }

    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        self.tables().messages.by_id(n).map(Packed::record).transpose()
    }

    /// The entry moves to the back: a message whose content just arrived is as new as any.
    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        let packed = self.pack(n, record);
        let mut t = self.tables();
        let Some(&seq) = t.messages.by_id.get(&n) else { return Ok(()) };
        if !t.messages.at(seq).is_some_and(|p| p.is(&record.key)) {
            return Ok(());
        }
        t.messages.take(seq);
        let hash = t.messages.hash_of(&record.key);
        t.messages.push(packed, hash, self.max_messages, self.max_bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn rec(self_id: &str, id: &str) -> MessageRecord {
        MessageRecord {
            key: MessageKey { self_id: self_id.into(), message_id: id.into() },
            detail_type: "group".into(),
            group_id: Some("g".into()),
            ..Default::default()
        }
    }

    #[test]
    fn canonical_small_integers_pass_through() {
        assert_eq!(passthrough_id("123456"), Some(123456));
        assert_eq!(passthrough_id("0"), Some(0));
        assert_eq!(passthrough_id("-42"), Some(-42));
        assert_eq!(passthrough_id(&(SURROGATE_MIN - 1).to_string()), Some(SURROGATE_MIN - 1));
        for not in ["", "-", "-0", "007", "+5", "1e3", " 1", "wxid_abc", "4503599627370496", "99999999999999999999"] {
            assert_eq!(passthrough_id(not), None, "{not:?}");
        }
    }

    #[test]
    fn surrogates_are_deterministic_in_range_and_reversible() {
        let ids = IdMapper::new(MemoryIdStore::default());
        let a = block_on(ids.to_v11("wxid_abc")).unwrap();
        assert!(is_surrogate(a));
        assert_eq!(a, surrogate_candidate("wxid_abc", 0), "same number on every install");
        assert_eq!(block_on(ids.to_v11("wxid_abc")).unwrap(), a);
        assert_eq!(block_on(ids.to_v12(a)).unwrap(), "wxid_abc");
        assert_eq!(block_on(ids.to_v12(10001)).unwrap(), "10001");
        assert!(matches!(block_on(ids.to_v12(SURROGATE_MIN + 7)), Err(IdError::UnknownSurrogate(_))));
        // Large numeric ids do not fit a JavaScript number: they get surrogates too.
        let snowflake = block_on(ids.to_v11("1234567890123456789")).unwrap();
        assert!(is_surrogate(snowflake));
        assert_eq!(block_on(ids.to_v12(snowflake)).unwrap(), "1234567890123456789");
    }

    #[test]
    fn a_taken_surrogate_is_probed_past() {
        let ids = IdMapper::new(MemoryIdStore::default());
        let wanted = surrogate_candidate("victim", 0);
        assert_eq!(block_on(ids.store().claim_surrogate(wanted, "squatter")).unwrap(), Claim::Inserted);
        let got = block_on(ids.to_v11("victim")).unwrap();
        assert_eq!(got, surrogate_candidate("victim", 1));
        assert_eq!(block_on(ids.to_v12(got)).unwrap(), "victim");
        assert_eq!(block_on(ids.to_v12(wanted)).unwrap(), "squatter");
    }

    #[test]
    fn message_ids_are_positive_int32_and_scoped_by_account() {
        let ids = IdMapper::new(MemoryIdStore::default());
        let a = block_on(ids.message_to_v11(&rec("bot1", "abc-def"))).unwrap();
        let b = block_on(ids.message_to_v11(&rec("bot2", "abc-def"))).unwrap();
        assert!(a > 0 && b > 0);
        assert_ne!(a, b);
        assert_eq!(block_on(ids.message_to_v12(a as i64)).unwrap().key.self_id, "bot1");
        // Numeric v12 ids keep their number when it is free.
        assert_eq!(block_on(ids.message_to_v11(&rec("bot1", "12345"))).unwrap(), 12345);
        let again = block_on(ids.message_to_v11(&rec("bot2", "12345"))).unwrap();
        assert_ne!(again, 12345, "collision resolved by probing");
        assert!(matches!(block_on(ids.message_to_v12(-5)), Err(IdError::UnknownMessage(-5))));
        assert!(matches!(block_on(ids.message_to_v12(1 << 40)), Err(IdError::UnknownMessage(_))));
    }

    #[test]
    fn memory_store_forgets_oldest_messages_first() {
        let ids = IdMapper::new(MemoryIdStore::new(2, DEFAULT_MEMORY_STORE_BYTES));
        let first = block_on(ids.message_to_v11(&rec("b", "m1"))).unwrap();
        block_on(ids.message_to_v11(&rec("b", "m2"))).unwrap();
        let third = block_on(ids.message_to_v11(&rec("b", "m3"))).unwrap();
        assert!(block_on(ids.message_to_v12(first as i64)).is_err());
        assert_eq!(block_on(ids.message_to_v12(third as i64)).unwrap().key.message_id, "m3");
        assert_eq!(ids.store().message_count(), 2);
    }

    /// Forgetting an entry finds it in the key index by the hash the entry kept: after many
    /// entries come and go (and the index grows), the index holds exactly the live ones, and each
    /// of them is found by its key.
    #[test]
    fn the_key_index_holds_exactly_the_remembered_messages() {
        let ids = IdMapper::new(MemoryIdStore::new(300, DEFAULT_MEMORY_STORE_BYTES));
        let mut numbers = Vec::new();
        for i in 0..2_000 {
            numbers.push(block_on(ids.message_to_v11(&rec("b", &format!("m{i}")))).unwrap());
            // Some come back with content: their entry moves to the back.
            if i % 7 == 0 {
                block_on(ids.message_to_v11(&said("b", &format!("m{}", i / 2), "again"))).unwrap();
            }
        }
        let t = ids.store().tables();
        assert_eq!(t.messages.by_key.len(), t.messages.live);
        assert_eq!(t.messages.by_id.len(), t.messages.live);
        drop(t);
        for (i, n) in numbers.iter().enumerate().skip(1_800) {
            assert_eq!(block_on(ids.message_to_v11(&rec("b", &format!("m{i}")))).unwrap(), *n);
        }
    }

    /// A received message as the event path records it.
    fn said(self_id: &str, id: &str, text: &str) -> MessageRecord {
        let mut r = rec(self_id, id);
        r.user_id = Some("u1".into());
        r.content = Some(StoredMessage {
            time: 1_700_000_000,
            segments: vec![
                crate::core::message::Segment::text(text),
                crate::core::message::Segment::new("at").with("qq", "10001"),
            ],
            sender_id: 20002,
            sender_name: "名前".into(),
        });
        r
    }

    /// What one entry is counted as: its key, its encoded body, and fixed slot and index costs.
    fn expected_bytes(r: &MessageRecord) -> usize {
        let mut body = Vec::new();
        crate::core::record::write_body(&mut body, r, true).unwrap();
        r.key.self_id.len() + r.key.message_id.len() + body.len() + INDEX_BYTES + SLOT_BYTES
    }

    #[test]
    fn the_byte_estimate_is_the_packed_record_plus_fixed_costs() {
        let ids = IdMapper::new(MemoryIdStore::new(1, DEFAULT_MEMORY_STORE_BYTES));
        assert_eq!(ids.store().message_bytes(), 0);
        let small = said("10001", "m-1", "hi");
        block_on(ids.message_to_v11(&small)).unwrap();
        assert_eq!(ids.store().message_bytes(), expected_bytes(&small));
        // A longer text costs exactly its extra bytes; the first entry is forgotten (count bound 1).
        let long = said("10001", "m-2", &"x".repeat(1000));
        block_on(ids.message_to_v11(&long)).unwrap();
        assert_eq!(ids.store().message_bytes(), expected_bytes(&long));
        // 998 more bytes of text, and 2 more for its length (MessagePack: a string past 255
        // bytes has a 3-byte header, a short one a 1-byte header).
        assert_eq!(expected_bytes(&long) - expected_bytes(&small), 998 + 2);
    }

    #[test]
    fn messages_stay_within_the_byte_bound_and_the_oldest_go_first() {
        let bound = MIN_MEMORY_STORE_BYTES;
        let ids = IdMapper::new(MemoryIdStore::new(1_000_000, bound));
        let mut issued = Vec::new();
        for i in 0..20_000 {
            let r = said("10001", &format!("msg-{i}"), &"word ".repeat(1 + i % 40));
            issued.push(block_on(ids.message_to_v11(&r)).unwrap());
            assert!(ids.store().message_bytes() <= bound, "{} bytes after {i}", ids.store().message_bytes());
        }
        let kept = ids.store().message_count();
        assert!(kept > 1_000 && kept < 20_000, "{kept} kept");
        assert!(ids.store().message_bytes() > bound - bound / 16, "the bound is used, not just respected");
        // Exactly the newest `kept` are known, with what they said.
        let (gone, known) = issued.split_at(issued.len() - kept);
        assert!(gone.iter().all(|n| block_on(ids.message_to_v12(*n as i64)).is_err()));
        for (i, n) in known.iter().enumerate().step_by(97) {
            let i = gone.len() + i;
            let got = block_on(ids.message_to_v12(*n as i64)).unwrap();
            assert_eq!(got, said("10001", &format!("msg-{i}"), &"word ".repeat(1 + i % 40)));
        }
        let again = block_on(ids.message_to_v11(&rec("10001", "msg-0"))).unwrap();
        assert!(block_on(ids.message_to_v12(again as i64)).is_ok(), "a forgotten key gets an id again");
    }

    #[test]
    fn a_message_too_large_for_the_bound_keeps_its_id_but_not_its_content() {
        let ids = IdMapper::new(MemoryIdStore::new(100, MIN_MEMORY_STORE_BYTES));
        let small = block_on(ids.message_to_v11(&said("b", "small", "hi"))).unwrap();
        let huge = said("b", "huge", &"x".repeat(MIN_MEMORY_STORE_BYTES / 8));
        let n = block_on(ids.message_to_v11(&huge)).unwrap();
        let got = block_on(ids.message_to_v12(n as i64)).unwrap();
        assert_eq!((got.key, got.user_id, got.content), (huge.key, huge.user_id, None));
        assert!(block_on(ids.message_to_v12(small as i64)).unwrap().content.is_some(), "nothing else forgotten");
        assert!(ids.store().message_bytes() < MIN_MEMORY_STORE_BYTES / 16);
    }

    #[test]
    fn content_seen_later_moves_the_message_to_the_back() {
        let ids = IdMapper::new(MemoryIdStore::new(3, DEFAULT_MEMORY_STORE_BYTES));
        // Seen first as a reference (no content), then b and c arrive, then a's content.
        let a = block_on(ids.message_to_v11(&rec("bot", "a"))).unwrap();
        let b = block_on(ids.message_to_v11(&said("bot", "b", "b"))).unwrap();
        block_on(ids.message_to_v11(&said("bot", "c", "c"))).unwrap();
        assert_eq!(block_on(ids.message_to_v11(&said("bot", "a", "now with text"))).unwrap(), a);
        let bytes = ids.store().message_bytes();
        block_on(ids.message_to_v11(&said("bot", "d", "d"))).unwrap();
        assert!(block_on(ids.message_to_v12(b as i64)).is_err(), "b is now the oldest");
        let got = block_on(ids.message_to_v12(a as i64)).unwrap();
        assert_eq!(got, said("bot", "a", "now with text"));
        assert_eq!(ids.store().message_count(), 3);
        assert!(ids.store().message_bytes() <= bytes + 2 * SLOT_BYTES);
        // Another account's message with the same number is not overwritten by a save.
        block_on(ids.store().save_message(a, &said("other", "a", "not mine"))).unwrap();
        assert_eq!(block_on(ids.message_to_v12(a as i64)).unwrap().key.self_id, "bot");
    }

    /// A store whose next lookup of a message misses although the message has a number: what a
    /// bridge sees when another bridge (or task) claims the message between its lookup and its
    /// claim.
    struct RacedLookup {
        inner: MemoryIdStore,
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
            if self.miss_next.swap(false, Ordering::SeqCst) {
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

    #[test]
    fn content_is_kept_when_another_claim_won_the_race_without_it() {
        let store = RacedLookup { inner: MemoryIdStore::default(), miss_next: false.into() };
        let ids = IdMapper::new(store);
        // Another bridge saw message 12345 first as a reply target: a number, no content.
        assert_eq!(block_on(ids.message_to_v11(&rec("bot", "12345"))).unwrap(), 12345);
        // This one received the message itself, and its lookup ran before that claim.
        ids.store().miss_next.store(true, Ordering::SeqCst);
        assert_eq!(block_on(ids.message_to_v11(&said("bot", "12345", "the text"))).unwrap(), 12345);
        assert_eq!(block_on(ids.message_to_v12(12345)).unwrap(), said("bot", "12345", "the text"));
    }

    /// Another task claims the message (as a reply target) after this one's lookup missed it
    /// and before its claim: the message keeps that number, with this content.
    #[test]
    fn a_claim_between_the_lookup_and_the_lock_keeps_its_number() {
        use futures::FutureExt;
        let store = MemoryIdStore::default();
        let (full, bare) = (said("bot", "m1", "the text"), rec("bot", "m1"));
        let found = block_on(store.find_or_claim_message(
            || {
                assert_eq!(store.claim_message(7, &bare).now_or_never().unwrap().unwrap(), Claim::Inserted);
                8
            },
            &full,
        ))
        .unwrap();
        assert_eq!(found, Found::Known(7));
        assert_eq!(block_on(store.message_of(7)).unwrap(), Some(full.clone()));
        assert_eq!(block_on(store.message_of(8)).unwrap(), None, "no second number");
        assert_eq!(block_on(store.message_id_of(&full.key)).unwrap(), Some(7));
    }

    #[test]
    fn surrogates_outlive_every_message_bound() {
        let ids = IdMapper::new(MemoryIdStore::new(1, MIN_MEMORY_STORE_BYTES));
        let users: Vec<i64> = (0..500).map(|i| block_on(ids.to_v11(&format!("wxid_{i}"))).unwrap()).collect();
        for i in 0..5_000 {
            block_on(ids.message_to_v11(&said("b", &format!("m{i}"), "text"))).unwrap();
        }
        for (i, n) in users.iter().enumerate() {
            assert_eq!(block_on(ids.to_v12(*n)).unwrap(), format!("wxid_{i}"));
        }
        assert_eq!(ids.store().surrogate_count(), 500);
    }

    /// A backend that sends a new user with every event: the surrogates stop growing at their
    /// bound, the oldest go first, and one forgotten gets the same number when seen again.
    #[test]
    fn surrogates_stay_within_their_bound_and_come_back_the_same() {
        let ids = IdMapper::new(MemoryIdStore::new(1, MIN_MEMORY_STORE_BYTES));
        let bound = MIN_MEMORY_STORE_BYTES / SURROGATE_SHARE;
        let user = |i: usize| format!("wxid_{i:06}");
        let given: Vec<i64> = (0..10_000).map(|i| block_on(ids.to_v11(&user(i))).unwrap()).collect();
        let (count, bytes) = (ids.store().surrogate_count(), ids.store().surrogate_bytes());
        assert!(bytes <= bound, "{bytes} bytes of surrogates over a bound of {bound}");
        assert!(count > 1_000 && count < 10_000, "{count} kept");
        assert_eq!(block_on(ids.to_v12(given[9_999])).unwrap(), user(9_999), "the newest is kept");
        assert!(matches!(block_on(ids.to_v12(given[0])), Err(IdError::UnknownSurrogate(n)) if n == given[0]));
        assert_eq!(block_on(ids.to_v11(&user(0))).unwrap(), given[0], "seen again: the same number");
        assert_eq!(block_on(ids.to_v12(given[0])).unwrap(), user(0));
    }

    /// The least recently used go first: a user looked up now and then (either way) stays while
    /// thousands of others come and go.
    #[test]
    fn surrogates_in_use_outlive_those_that_are_not() {
        let ids = IdMapper::new(MemoryIdStore::new(1, MIN_MEMORY_STORE_BYTES));
        let admin = block_on(ids.to_v11("wxid_admin")).unwrap();
        let regular = block_on(ids.to_v11("wxid_regular")).unwrap();
        for i in 0..20_000 {
            block_on(ids.to_v11(&format!("wxid_passer_by_{i}"))).unwrap();
            if i % 500 == 0 {
                assert_eq!(block_on(ids.to_v12(admin)).unwrap(), "wxid_admin", "after {i}");
                assert_eq!(block_on(ids.to_v11("wxid_regular")).unwrap(), regular);
            }
        }
        assert_eq!(block_on(ids.to_v12(admin)).unwrap(), "wxid_admin");
        assert_eq!(block_on(ids.to_v12(regular)).unwrap(), "wxid_regular");
        assert!(ids.store().surrogate_bytes() <= MIN_MEMORY_STORE_BYTES / SURROGATE_SHARE);
    }

    /// What [`passthrough_id`] decides, written the plain way.
    fn passthrough_reference(v12: &str) -> Option<i64> {
        let digits = v12.strip_prefix('-').unwrap_or(v12);
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && v12 != "-0"
            && digits.len() <= 16;
        let n: i64 = v12.parse().ok().filter(|_| canonical)?;
        (n.abs() < SURROGATE_MIN).then_some(n)
    }

    proptest::proptest! {
        #[test]
        fn passthrough_decides_as_the_plain_definition(s in "-?-?[0-9]{0,18}[a0-9]?|.{0,20}") {
            proptest::prop_assert_eq!(passthrough_id(&s), passthrough_reference(&s), "{:?}", s);
        }

        #[test]
        fn any_string_id_round_trips(s in ".{0,40}") {
            let ids = IdMapper::new(MemoryIdStore::default());
            let n = block_on(ids.to_v11(&s)).unwrap();
            proptest::prop_assert!(n.abs() < SURROGATE_END);
            proptest::prop_assert_eq!(block_on(ids.to_v12(n)).unwrap(), s);
        }

        #[test]
        fn any_record_round_trips_through_the_memory_store(
            self_id in ".{0,12}",
            message_id in ".{0,40}",
            detail_type in "[a-z]{0,8}",
            group_id in proptest::option::of(".{0,12}"),
            user_id in proptest::option::of(".{0,12}"),
            text in proptest::option::of(".{0,60}"),
            time in proptest::num::i64::ANY,
        ) {
            let record = MessageRecord {
                key: MessageKey { self_id: self_id.into(), message_id: message_id.into() },
                detail_type: detail_type.into(),
                group_id: group_id.map(Into::into),
                user_id: user_id.map(Into::into),
                content: text.map(|t| StoredMessage {
                    time,
                    segments: vec![crate::core::message::Segment::text(t).with("n", 1.5).with("z", serde_json::json!([null, -3, {"k": "v"}]))],
                    sender_id: time / 3,
                    sender_name: "s".into(),
                }),
            };
            let ids = IdMapper::new(MemoryIdStore::default());
            let n = block_on(ids.message_to_v11(&record)).unwrap();
            proptest::prop_assert_eq!(block_on(ids.message_to_v12(n as i64)).unwrap(), record.clone());
            proptest::prop_assert_eq!(block_on(ids.message_to_v11(&record)).unwrap(), n);
        }
    }
}
