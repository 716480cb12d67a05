//! What bridge replicas on one Redis share about media, besides ids: the second tier of the
//! media caches ([`SharedMediaCache`]) and the key `/files/` URLs are signed with.
//!
//! The caches let a picture one replica uploaded be reused by another (a file_id is the
//! backend's, good on whichever replica sends it) and a URL one resolved be given by another
//! without asking the backend again. They are only a saving: a lookup gives up after
//! [`CACHE_TIMEOUT`], far sooner than an id command, and after a failure the cache is not asked
//! for [`PAUSE_AFTER_FAILURE`], so a Redis that is down or slow costs events at most one short
//! wait now and then, never a stall. Keys (see the table in [`super::redis`]):
//! `<p>media:up:<h>` and `<p>media:url:<h>`, set with `PX` to the time the bridge reuses them.
//!
//! The URL key is `<p>media-key`: the first replica to start puts a random one there
//! (`SET … NX`), and every replica, then and after restarts, signs with the one it finds, so a
//! served URL works on any of them for as long as the key stays in Redis.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::core::ids::IdError;
use crate::core::media::{hex, key_from_hex, BoxFuture, CacheKind, SharedCacheError, SharedMediaCache};
use crate::sync::LockUnpoisoned;

use super::redis::{bounded, RedisStore};

/// The longest one cache lookup or write may take; then it counts as a miss.
pub const CACHE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the cache is not asked after a failure, so each event does not wait out its own
/// timeout while Redis is away (ids go on failing, within their own bound, as they must).
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// The media caches' shared tier on a [`RedisStore`]'s connection.
#[derive(Debug)]
pub struct RedisMediaCache {
    store: RedisStore,
    /// Until when the cache is skipped after a failure.
    paused_until: Mutex<Option<Instant>>,
}

impl RedisStore {
    /// The media caches' shared tier, on this store's connection and under its prefix.
    pub fn media_cache(&self) -> RedisMediaCache {
        RedisMediaCache { store: self.clone(), paused_until: Mutex::new(None) }
    }

    /// The key every replica signs `/files/` URLs with: the one in `<p>media-key`, made (random)
    /// by whichever replica comes first. A key there that is not 64 hex digits is an error that
    /// says which key to delete.
    pub async fn shared_media_key(&self) -> Result<[u8; 32], IdError> {
        let (mut conn, server) = self.connection();
        let name = format!("{}media-key", self.prefix());
        let fresh = hex(&rand::random::<[u8; 32]>());
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("SET").arg(&name).arg(&fresh).arg("NX").ignore().cmd("GET").arg(&name);
        let (text,): (Option<String>,) =
            bounded(server, "sharing the media URL key", async move { pipe.query_async(&mut conn).await }).await?;
        let text = text.ok_or_else(|| IdError::Store(format!("Redis at {server} lost `{name}` as it was set")))?;
        key_from_hex(&text).ok_or_else(|| {
            IdError::Store(format!(
                "Redis at {server} holds a `{name}` that is not 64 hex digits; delete it and a new one is made (URLs served so far stop working)"
            ))
        })
    }
}

impl RedisMediaCache {
    fn key(&self, kind: CacheKind, key: &str) -> String {
        format!("{}media:{}:{key}", self.store.prefix(), kind.as_str())
    }

    /// Runs one cache command within [`CACHE_TIMEOUT`], unless the cache is paused; a failure
    /// pauses it (logged once, until it answers again).
    async fn run<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SharedCacheError> {
        if self.paused_until.lock_unpoisoned().is_some_and(|until| Instant::now() < until) {
            return Err(SharedCacheError(format!("not asked for {} s after a failure", PAUSE_AFTER_FAILURE.as_secs())));
        }
        let (_, server) = self.store.connection();
        let error = match tokio::time::timeout(CACHE_TIMEOUT, bounded(server, what, op)).await {
            Ok(Ok(value)) => {
                if self.paused_until.lock_unpoisoned().take().is_some() {
                    tracing::info!("the shared media cache answers again");
                }
                return Ok(value);
            }
            Ok(Err(IdError::Store(error))) => error,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("Redis at {server} did not answer within {} ms ({what})", CACHE_TIMEOUT.as_millis()),
        };
        let was_paused = self.paused_until.lock_unpoisoned().replace(Instant::now() + PAUSE_AFTER_FAILURE).is_some();
        if !was_paused {
            tracing::warn!(%error, "the shared media cache failed; media go on without it for a while");
        }
        Err(SharedCacheError(error))
    }
}

impl SharedMediaCache for RedisMediaCache {
    fn get<'a>(
        &'a self,
        kind: CacheKind,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(String, Duration)>, SharedCacheError>> {
        Box::pin(async move {
            let (mut conn, _) = self.store.connection();
            let name = self.key(kind, key);
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&name).cmd("PTTL").arg(&name);
            let (value, ttl_ms): (Option<String>, i64) =
                self.run("reading the media cache", async move { pipe.query_async(&mut conn).await }).await?;
            // No expiry (-1) is not what the bridge writes: such an entry is used, not kept.
            Ok(value.map(|v| (v, Duration::from_millis(ttl_ms.max(0) as u64))))
        })
    }

    fn set<'a>(
        &'a self,
        kind: CacheKind,
        key: &'a str,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), SharedCacheError>> {
        Box::pin(async move {
            let (mut conn, _) = self.store.connection();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(kind, key)).arg(value).arg("PX").arg(ttl.as_millis().max(1) as u64);
            self.run("writing the media cache", async move { cmd.query_async::<()>(&mut conn).await }).await
        })
    }

    fn remove<'a>(&'a self, kind: CacheKind, key: &'a str) -> BoxFuture<'a, Result<(), SharedCacheError>> {
        Box::pin(async move {
            let (mut conn, _) = self.store.connection();
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(kind, key));
            self.run("forgetting a media cache entry", async move { cmd.query_async::<()>(&mut conn).await }).await
        })
    }
}
