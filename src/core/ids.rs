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
use std::sync::Mutex;

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
    #[error("v11 id {0} was never issued by this bridge")]
    UnknownSurrogate(i64),
    #[error("message_id {0} is unknown to this bridge")]
    UnknownMessage(i64),
}

/// Which bot account saw a message, and the backend's id for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct MessageKey {
    /// v12 `self.user_id` of the account.
    pub self_id: String,
    /// v12 `message_id`.
    pub message_id: String,
}

/// What the bridge remembers about a message id it issued.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageRecord {
    pub key: MessageKey,
    /// `private`, `group` or `channel` (v12 `detail_type`).
    pub detail_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The sender (v12 id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
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
}

/// A v12 id that passes through as an integer, if it is one.
pub fn passthrough_id(v12: &str) -> Option<i64> {
    let digits = v12.strip_prefix('-').unwrap_or(v12);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && v12 != "-0"
        && digits.len() <= 16;
    if !canonical {
        return None;
    }
    let n: i64 = v12.parse().ok()?;
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

/// The `attempt`-th v11 message_id candidate for a message key.
pub fn message_candidate(key: &MessageKey, attempt: u32) -> i32 {
    if attempt == 0 {
        if let Ok(n) = key.message_id.parse::<i32>() {
            if n > 0 && key.message_id == n.to_string() {
                return n;
            }
        }
    }
    let scoped = format!("{}\u{1f}{}", key.self_id, key.message_id);
    1 + (probe_hash("msg", &scoped, attempt) % (i32::MAX as u64)) as i32
}

/// Translates ids in both directions over a store.
#[derive(Debug, Default)]
pub struct IdMapper<S> {
    store: S,
}

impl<S: IdStore> IdMapper<S> {
    pub fn new(store: S) -> Self {
        IdMapper { store }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// v12 user/group id → v11 integer (assigning a surrogate on first sight).
    pub async fn to_v11(&self, v12: &str) -> Result<i64, IdError> {
        if let Some(n) = passthrough_id(v12) {
            return Ok(n);
        }
        if let Some(n) = self.store.surrogate_of(v12).await? {
            return Ok(n);
        }
        for attempt in 0..MAX_PROBES {
            let n = surrogate_candidate(v12, attempt);
            match self.store.claim_surrogate(n, v12).await? {
                Claim::Inserted => return Ok(n),
                Claim::Taken(owner) if owner == v12 => return Ok(n),
                Claim::Taken(_) => continue,
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
        if let Some(n) = self.store.message_id_of(&record.key).await? {
            if record.content.is_some() {
                self.store.save_message(n, record).await?;
            }
            return Ok(n);
        }
        for attempt in 0..MAX_PROBES {
            let n = message_candidate(&record.key, attempt);
            match self.store.claim_message(n, record).await? {
                Claim::Inserted => return Ok(n),
                Claim::Taken(owner) if owner == record.key => return Ok(n),
                Claim::Taken(_) => continue,
            }
        }
        Err(IdError::Exhausted(record.key.message_id.clone()))
    }

    /// v11 `message_id` → what the bridge knows about it.
    pub async fn message_to_v12(&self, n: i64) -> Result<MessageRecord, IdError> {
        let Ok(small) = i32::try_from(n) else {
            return Err(IdError::UnknownMessage(n));
        };
        self.store.message_of(small).await?.ok_or(IdError::UnknownMessage(n))
    }
}

/// The in-memory store: ids live as long as the process. Message entries are bounded; the oldest
/// is forgotten first (a bot asking for it then gets a clear "unknown message_id").
#[derive(Debug)]
pub struct MemoryIdStore {
    inner: Mutex<MemoryTables>,
    max_messages: usize,
}

#[derive(Debug, Default)]
struct MemoryTables {
    by_v12: HashMap<String, i64>,
    by_surrogate: HashMap<i64, String>,
    message_by_key: HashMap<MessageKey, i32>,
    message_by_id: HashMap<i32, MessageRecord>,
    message_order: VecDeque<i32>,
}

impl Default for MemoryIdStore {
    fn default() -> Self {
        MemoryIdStore::new(1_000_000)
    }
}

impl MemoryIdStore {
    pub fn new(max_messages: usize) -> Self {
        MemoryIdStore { inner: Mutex::new(MemoryTables::default()), max_messages: max_messages.max(1) }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, MemoryTables> {
        // A panic while holding the lock cannot leave the maps half-written in a way that matters
        // more than losing all ids, so a poisoned lock is simply taken over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl IdStore for MemoryIdStore {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        Ok(self.tables().by_v12.get(v12).copied())
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        let mut t = self.tables();
        if let Some(owner) = t.by_surrogate.get(&n) {
            return Ok(Claim::Taken(owner.clone()));
        }
        t.by_surrogate.insert(n, v12.to_owned());
        t.by_v12.insert(v12.to_owned(), n);
        Ok(Claim::Inserted)
    }

    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        Ok(self.tables().by_surrogate.get(&n).cloned())
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        Ok(self.tables().message_by_key.get(key).copied())
    }

    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        let mut t = self.tables();
        if let Some(owner) = t.message_by_id.get(&n) {
            return Ok(Claim::Taken(owner.key.clone()));
        }
        while t.message_order.len() >= self.max_messages {
            let Some(old) = t.message_order.pop_front() else { break };
            if let Some(rec) = t.message_by_id.remove(&old) {
                t.message_by_key.remove(&rec.key);
            }
        }
        t.message_by_key.insert(record.key.clone(), n);
        t.message_by_id.insert(n, record.clone());
        t.message_order.push_back(n);
        Ok(Claim::Inserted)
    }

    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        Ok(self.tables().message_by_id.get(&n).cloned())
    }

    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        let mut t = self.tables();
        if let Some(existing) = t.message_by_id.get_mut(&n) {
            if existing.key == record.key {
                *existing = record.clone();
            }
        }
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
        let ids = IdMapper::new(MemoryIdStore::new(2));
        let first = block_on(ids.message_to_v11(&rec("b", "m1"))).unwrap();
        block_on(ids.message_to_v11(&rec("b", "m2"))).unwrap();
        let third = block_on(ids.message_to_v11(&rec("b", "m3"))).unwrap();
        assert!(block_on(ids.message_to_v12(first as i64)).is_err());
        assert_eq!(block_on(ids.message_to_v12(third as i64)).unwrap().key.message_id, "m3");
    }

    proptest::proptest! {
        #[test]
        fn any_string_id_round_trips(s in ".{0,40}") {
            let ids = IdMapper::new(MemoryIdStore::default());
            let n = block_on(ids.to_v11(&s)).unwrap();
            proptest::prop_assert!(n.abs() < SURROGATE_END);
            proptest::prop_assert_eq!(block_on(ids.to_v12(n)).unwrap(), s);
        }
    }
}
