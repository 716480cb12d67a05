//! Surrogates remembered in the process, both ways, for the stores that are not in memory
//! already (disk and Redis). A surrogate and its v12 id never part once stored: no store forgets
//! or reassigns one. So a pair the store has answered stays true and is served again without a
//! read transaction or a round trip. Bounded by entries; ids longer than `CACHED_ID_BYTES`
//! are not kept (a backend chooses their length).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::core::ids::{Claim, Found};
use crate::sync::LockUnpoisoned;

/// Entries per direction.
pub const SURROGATE_CACHE_ENTRIES: usize = 64 << 10;
/// The longest v12 id the cache keeps.
const CACHED_ID_BYTES: usize = 256;

/// A map of at most `max` entries that forgets its older half at once: two generations, new
/// entries (and hits in the old one) go to the young one; when the young one holds `max / 2`,
/// the old one is dropped and the young one becomes old. Lookups and inserts stay O(1), and a
/// pair in use survives every turnover.
struct Recent<K, V> {
    max: usize,
    young: HashMap<K, V, foldhash::fast::RandomState>,
    old: HashMap<K, V, foldhash::fast::RandomState>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Recent<K, V> {
    fn new(max: usize) -> Self {
        Recent { max: max.max(2), young: HashMap::default(), old: HashMap::default() }
    }

    fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        if let Some(v) = self.young.get(key) {
            return Some(v.clone());
        }
        let (k, v) = self.old.remove_entry(key)?;
        self.insert(k, v.clone());
        Some(v)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.max / 2 && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

struct Tables {
    by_v12: Recent<Arc<str>, i64>,
    by_n: Recent<i64, Arc<str>>,
}

/// The surrogates a store has answered, both ways; clones share the tables.
#[derive(Clone)]
pub struct SurrogateCache(Arc<Mutex<Tables>>);

impl std::fmt::Debug for SurrogateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0.lock_unpoisoned();
        f.debug_struct("SurrogateCache").field("by_v12", &t.by_v12.len()).field("by_n", &t.by_n.len()).finish()
    }
}

impl Default for SurrogateCache {
    fn default() -> Self {
        SurrogateCache::new(SURROGATE_CACHE_ENTRIES)
    }
}

impl SurrogateCache {
    /// At most `max` entries each way.
    pub fn new(max: usize) -> Self {
        SurrogateCache(Arc::new(Mutex::new(Tables { by_v12: Recent::new(max), by_n: Recent::new(max) })))
    }

    /// `v12`'s surrogate, if known here.
    pub fn surrogate_of(&self, v12: &str) -> Option<i64> {
        self.0.lock_unpoisoned().by_v12.get(v12)
    }

    /// What a claim of `n` for `v12` said: `v12`'s surrogate, or `n` another id's.
    pub fn learn_claim(&self, n: i64, claim: &Claim<String>, v12: &str) {
        match claim {
            Claim::Inserted => self.learn(n, v12),
            Claim::Taken(owner) => self.learn_owner(n, owner),
        }
    }

    /// What a find-or-claim for `v12` said.
    pub fn learn_found(&self, found: &Found<i64, String>, v12: &str) {
        match found {
            Found::Known(n) => self.learn(*n, v12),
            Found::Claimed(n, claim) => self.learn_claim(*n, claim, v12),
        }
    }

    /// Whose surrogate `n` is, if known here.
    pub fn v12_of(&self, n: i64) -> Option<String> {
        self.0.lock_unpoisoned().by_n.get(&n).map(|v12| v12.to_string())
    }

    /// `v12`'s surrogate is `n` (and so `n` is `v12`'s).
    pub fn learn(&self, n: i64, v12: &str) {
        if v12.len() <= CACHED_ID_BYTES {
            let v12: Arc<str> = v12.into();
            let mut t = self.0.lock_unpoisoned();
            t.by_v12.insert(v12.clone(), n);
            t.by_n.insert(n, v12);
        }
    }

    /// `n` belongs to `v12` (which may have its own number elsewhere).
    pub fn learn_owner(&self, n: i64, v12: &str) {
        if v12.len() <= CACHED_ID_BYTES {
            self.0.lock_unpoisoned().by_n.insert(n, v12.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keeps_at_most_its_bound_and_what_is_in_use() {
        let mut recent = Recent::new(8);
        recent.insert("kept".to_owned(), 0);
        for i in 1..100 {
            recent.insert(format!("id-{i}"), i);
            // A pair looked up now and then survives every turnover.
            assert_eq!(recent.get("kept"), Some(0), "after {i}");
            assert!(recent.len() <= 8, "{} entries after {i}", recent.len());
        }
        assert_eq!(recent.get("id-99"), Some(99));
        assert_eq!(recent.get("id-1"), None, "the oldest are forgotten");
    }

    #[test]
    fn the_surrogate_cache_keeps_no_long_ids() {
        let cache = SurrogateCache::new(16);
        cache.learn(1, "short");
        cache.learn(2, &"x".repeat(CACHED_ID_BYTES + 1));
        assert_eq!(cache.surrogate_of("short"), Some(1));
        assert_eq!(cache.v12_of(1).as_deref(), Some("short"));
        assert_eq!(cache.v12_of(2), None);
        cache.learn_owner(3, "squatter");
        assert_eq!(cache.surrogate_of("squatter"), None, "an owner's own number is not known from a taken claim");
        assert_eq!(cache.v12_of(3).as_deref(), Some("squatter"));
    }
}
