//! Where the id tables live: in memory, on disk under `--data-dir` ([`disk`]), or on a Redis
//! server that several bridges share ([`redis`]).
//!
//! Each implements the core's [`IdStore`]; the bridge picks one at start-up. Replicas on Redis
//! also share the media caches and the `/files/` URL key through it ([`redis_media`]).

pub mod disk;
pub mod journal;
pub mod redis;
pub mod redis_media;
pub mod surrogates;

use crate::core::ids::{Claim, Found, IdError, IdStore, MessageKey, MessageRecord};
use crate::core::MemoryIdStore;

pub use self::redis::RedisStore;
pub use disk::{sharing_syncs, DiskStore, Retention};

tokio::task_local! {
    /// The last journal entry the ids given out within [`deferring`] rely on.
    static DEFERRED: std::cell::Cell<u64>;
}

/// Runs `translate` without waiting for the disk store's journal: the ids it is given may not be
/// on disk yet. Returns its output and the ticket to pass to [`Store::on_disk`] before any of
/// it reaches a bot. An event's ids are then one wait, not one per id.
///
/// Not an `async fn`: one would hold `translate` twice (as its argument, and again once awaited),
/// and an event's translation is the largest future the bridge makes, moved into its queue for
/// every event. Mapped in place, it is held once.
pub fn deferring<F: std::future::Future>(translate: F) -> impl std::future::Future<Output = (F::Output, u64)> {
    use futures_util::FutureExt;
    // The mapping runs inside the scope: the ticket is read before the scope ends.
    DEFERRED.scope(std::cell::Cell::new(0), translate.map(|out| (out, DEFERRED.with(std::cell::Cell::get))))
}

/// Inside [`deferring`]: keeps the ticket for its caller and says so.
fn defer(ticket: u64) -> bool {
    DEFERRED.try_with(|t| t.set(t.get().max(ticket))).is_ok()
}

/// The store a running bridge uses.
#[derive(Debug)]
pub enum Store {
    Memory(Box<MemoryIdStore>),
    Disk(DiskStore),
    Redis(RedisStore),
}

impl Store {
    /// Waits until what a [`deferring`] run was given is on disk (the stores that do not
    /// defer have nothing to wait for).
    pub async fn on_disk(&self, ticket: u64) -> Result<(), IdError> {
        match self {
            Store::Disk(s) if ticket > 0 => s.wait_on_disk(ticket).await,
            _ => Ok(()),
        }
    }

    /// How far what [`deferring`] runs were given is on disk: a ticket up to this waits for
    /// nothing (for the stores that do not defer, any ticket).
    pub fn on_disk_to(&self) -> u64 {
        match self {
            Store::Disk(s) => s.on_disk_to(),
            _ => u64::MAX,
        }
    }
}

/// Redis's futures are boxed: they are the largest (a round trip to the server), and every
/// translation's future would otherwise be as large as they are, whichever store it uses.
impl IdStore for Store {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        match self {
            Store::Memory(s) => s.surrogate_of(v12).await,
            Store::Disk(s) => s.surrogate_of(v12).await,
            Store::Redis(s) => Box::pin(s.surrogate_of(v12)).await,
        }
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        match self {
            Store::Memory(s) => s.claim_surrogate(n, v12).await,
            Store::Disk(s) => s.claim_surrogate(n, v12).await,
            Store::Redis(s) => Box::pin(s.claim_surrogate(n, v12)).await,
        }
    }

    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        match self {
            Store::Memory(s) => s.v12_of_surrogate(n).await,
            Store::Disk(s) => s.v12_of_surrogate(n).await,
            Store::Redis(s) => Box::pin(s.v12_of_surrogate(n)).await,
        }
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        match self {
            Store::Memory(s) => s.message_id_of(key).await,
            Store::Disk(s) => s.message_id_of(key).await,
            Store::Redis(s) => Box::pin(s.message_id_of(key)).await,
        }
    }

    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        match self {
            Store::Memory(s) => s.claim_message(n, record).await,
            Store::Disk(s) => s.claim_message(n, record).await,
            Store::Redis(s) => Box::pin(s.claim_message(n, record)).await,
        }
    }

    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        match self {
            Store::Memory(s) => s.message_of(n).await,
            Store::Disk(s) => s.message_of(n).await,
            Store::Redis(s) => Box::pin(s.message_of(n)).await,
        }
    }

    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        match self {
            Store::Memory(s) => s.save_message(n, record).await,
            Store::Disk(s) => s.save_message(n, record).await,
            Store::Redis(s) => Box::pin(s.save_message(n, record)).await,
        }
    }

    async fn find_or_claim_surrogate(
        &self,
        first: impl FnOnce() -> i64 + Send,
        v12: &str,
    ) -> Result<Found<i64, String>, IdError> {
        match self {
            Store::Memory(s) => s.find_or_claim_surrogate(first, v12).await,
            Store::Disk(s) => s.find_or_claim_surrogate(first, v12).await,
            Store::Redis(s) => Box::pin(s.find_or_claim_surrogate(first, v12)).await,
        }
    }

    async fn find_or_claim_message(
        &self,
        first: impl FnOnce() -> i32 + Send,
        record: &MessageRecord,
    ) -> Result<Found<i32, MessageKey>, IdError> {
        match self {
            Store::Memory(s) => s.find_or_claim_message(first, record).await,
            Store::Disk(s) => s.find_or_claim_message(first, record).await,
            Store::Redis(s) => Box::pin(s.find_or_claim_message(first, record)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::IdMapper;

    fn rec(id: &str) -> MessageRecord {
        MessageRecord {
            key: MessageKey { self_id: "bot".into(), message_id: id.into() },
            detail_type: "group".into(),
            group_id: Some("g".into()),
            user_id: Some("u".into()),
            content: None,
        }
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ob-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn ids_survive_reopening_the_database() {
        let dir = temp_dir("reopen");
        let (surrogate, message) = {
            let ids = IdMapper::new(Store::Disk(DiskStore::open(&dir, Retention::default()).unwrap()));
            (ids.to_v11("wxid_abc").await.unwrap(), ids.message_to_v11(&rec("m-1")).await.unwrap())
        };
        // The first store, dropped, has journalled and folded what it gave, and let go of the file.
        let ids = IdMapper::new(Store::Disk(DiskStore::open(&dir, Retention::default()).unwrap()));
        assert_eq!(ids.to_v12(surrogate).await.unwrap(), "wxid_abc");
        assert_eq!(ids.to_v11("wxid_abc").await.unwrap(), surrogate);
        assert_eq!(ids.message_to_v12(message as i64).await.unwrap(), rec("m-1"));
        assert_eq!(ids.message_to_v11(&rec("m-1")).await.unwrap(), message);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn concurrent_assignments_agree_and_share_commits() {
        let dir = temp_dir("concurrent");
        let store = DiskStore::open(&dir, Retention::default()).unwrap();
        let ids = std::sync::Arc::new(IdMapper::new(Store::Disk(store)));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let ids = ids.clone();
            tasks.push(tokio::spawn(async move {
                let a = ids.to_v11(&format!("user-{}", i % 50)).await.unwrap();
                let m = ids.message_to_v11(&rec(&format!("msg-{i}"))).await.unwrap();
                (i, a, m)
            }));
        }
        let mut by_user = std::collections::HashMap::new();
        let mut messages = std::collections::HashSet::new();
        for t in tasks {
            let (i, a, m) = t.await.unwrap();
            assert_eq!(*by_user.entry(i % 50).or_insert(a), a, "one id per user");
            assert!(messages.insert(m), "distinct message ids");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn retention_prunes_the_oldest_message_ids() {
        let dir = temp_dir("retention");
        let retention =
            Retention { max_messages: 10, max_age: Duration::from_secs(3600), prune_every: Duration::from_millis(20) };
        let ids = IdMapper::new(Store::Disk(DiskStore::open(&dir, retention).unwrap()));
        let first = ids.message_to_v11(&rec("first")).await.unwrap();
        for i in 0..30 {
            ids.message_to_v11(&rec(&format!("m{i}"))).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let n = match ids.store() {
                Store::Disk(d) => d.message_count().unwrap(),
                Store::Memory(_) | Store::Redis(_) => unreachable!(),
            };
            if n <= 10 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not pruned: {n}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ids.message_to_v12(first as i64).await.is_err(), "the oldest is gone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
