//! The networked id store: the id tables on Redis (or Valkey), shared by every bridge that
//! points at the same server (`--store redis://…` or `rediss://…`).
//!
//! Several bridges in front of one backend must agree on ids: the same v12 id must get the same
//! v11 number in each of them, and no number may go to two ids. The probing stays in the core
//! ([`crate::core::ids::IdMapper`]); each "insert unless taken" here is one Lua script, which
//! Redis runs atomically, so claims from any number of processes are serialised by the server.
//! A claim answers only once Redis has answered the script (how durable that write is then is
//! Redis's own persistence setting: `appendfsync always` loses nothing, `everysec` at most a
//! second on a crash of the server).
//!
//! The event path asks "the number this id has, else claim this candidate" for every id it sees;
//! that is one script too ([`IdStore::find_or_claim_message`], [`IdStore::find_or_claim_surrogate`]),
//! so an id costs one round trip, not a lookup and then a claim or a save; and the messages asked
//! about while earlier calls are on their way share the next call (`Batcher`), as the disk
//! store's events share a commit. A surrogate, once the
//! server has answered it, is kept in the process ([`SURROGATE_CACHE_ENTRIES`] each way) and
//! served again without a round trip: a surrogate and its v12 id never part.
//!
//! Keys, all under a prefix ([`DEFAULT_PREFIX`] unless the bridge is given another):
//!
//! | key | type | holds | expires |
//! | --- | --- | --- | --- |
//! | `<p>surrogates` | hash | surrogate (decimal) → v12 id | never |
//! | `<p>ids` | hash | v12 id → surrogate (decimal) | never |
//! | `<p>msg:<n>` | string | v11 message id `n` → its record, a [`Row`] | `max_age` |
//! | `<p>mkey:<key>` | string | message key → `n`; `<key>` is the row's key bytes (`self_id` and `message_id`, each as a LEB128 length and its bytes) | `max_age` |
//! | `<p>msgs` | sorted set | every `n` issued, scored by when (Redis's clock, ms) | trimmed |
//! | `<p>media:up:<h>`, `<p>media:url:<h>` | string | the media caches' shared tier: a file_id uploaded, a URL resolved; `<h>` is the sha256 of account and content or file ([`super::redis_media`]) | `reuse_for` |
//! | `<p>media-key` | string | the key `/files/` URLs are signed with, 64 hex digits | never |
//!
//! Retention: a message id's two keys expire `max_age` after it was issued (Redis expiry, no
//! pruning task); every claim (every batch of them) also trims `<p>msgs` of entries older than
//! that and, past `max_messages`, pops the oldest and deletes their keys, in the same script. Surrogates never
//! expire, as in the other stores: a bot keeps user ids anywhere.
//!
//! Memory (Redis 7.0, `INFO memory` before and after 20 000 of them): a message id takes about
//! 440 bytes of Redis memory besides its record (two keys with expiry and a sorted-set entry);
//! a typical chat line's record is about 130 bytes, so ~570 bytes a message. A surrogate takes
//! about 180 bytes.
//!
//! TLS (`rediss://`) is rustls, as toward backends; a server's certificate must chain to the
//! bundled Mozilla roots or, given a CA file (`--store-ca-file`), to a certificate in that file.
//!
//! One multiplexed connection carries every command (concurrent claims pipeline on it) and
//! reconnects by itself; every command is bounded by [`OP_TIMEOUT`], so a Redis that is down or
//! unreachable is an [`IdError::Store`] saying so, never a hang. The store speaks to one server
//! (standalone, or the primary behind a proxy): the scripts touch keys they compute, which
//! Redis Cluster does not allow.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tokio::sync::{mpsc, oneshot};

use crate::core::ids::{Claim, Found, IdError, IdStore, MessageKey, MessageRecord};
use crate::core::record::{Row, RowHead, ROW_V1};

use super::surrogates::SurrogateCache;
use super::Retention;

/// Where the bridge's keys live unless told otherwise.
pub const DEFAULT_PREFIX: &str = "onebot-bridge:";
/// The longest any one command (a claim, a lookup) may take, connecting included.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection attempt may take; the manager tries again with backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Commands queued on the connection before callers wait: the event path translates up to 256
/// events at once, each with a few ids.
const PIPELINE_BUFFER: usize = 1024;
/// Where a row's key bytes start: after the version byte and the 8-byte time.
const KEY_START: usize = 9;

/// The Lua helpers the message scripts share: the key bytes of a stored row (see the table in
/// the module header), read without decoding the rest.
const LUA_ROW_KEY: &str = r#"
local function leb(s, i)
  local n, mul = 0, 1
  while true do
    local b = string.byte(s, i)
    if not b then return nil end
    i = i + 1
    if b < 128 then return n + b * mul, i end
    n = n + (b - 128) * mul
    mul = mul * 128
  end
end
local function row_key(row)
  local i = 10
  for _ = 1, 2 do
    local len
    len, i = leb(row, i)
    if not len then return nil end
    i = i + len
  end
  if i - 1 > #row then return nil end
  return string.sub(row, 10, i - 1)
end
"#;

/// KEYS: surrogates hash, ids hash. ARGV: n, v12. Returns nil when inserted, else the owner.
const CLAIM_SURROGATE: &str = r#"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner then return owner end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1])
return false
"#;

/// The Lua helper the claiming scripts share: stores `row` as message `n` (its number under
/// `mkey`), both expiring after `max_age` ms, and trims `msgs` by age and by count, deleting
/// what it trims.
const LUA_INSERT: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function put(msg, mkey, msgs, n, row, max_age, now)
  redis.call('SET', msg, row, 'PX', max_age)
  redis.call('SET', mkey, n, 'PX', max_age)
  redis.call('ZADD', msgs, now, n)
end
local function trim(msgs, max_age, max_messages, prefix, now)
  redis.call('ZREMRANGEBYSCORE', msgs, '-inf', '(' .. (now - max_age))
  local excess = redis.call('ZCARD', msgs) - max_messages
  if excess > 0 then
    local gone = redis.call('ZPOPMIN', msgs, excess)
    for i = 1, #gone, 2 do
      local m = gone[i]
      local old = prefix .. 'msg:' .. m
      local old_row = redis.call('GET', old)
      redis.call('DEL', old)
      local key = old_row and row_key(old_row)
      if key then
        local old_mkey = prefix .. 'mkey:' .. key
        if redis.call('GET', old_mkey) == m then redis.call('DEL', old_mkey) end
      end
    end
  end
end
local function insert(msg, mkey, msgs, n, row, max_age, max_messages, prefix)
  local now = now_ms()
  put(msg, mkey, msgs, n, row, max_age, now)
  trim(msgs, max_age, max_messages, prefix, now)
end
"#;

/// KEYS: msg:n, mkey:key, msgs. ARGV: n, row, max_age ms, max_messages, prefix.
/// Returns nil when inserted, else the owner's key bytes ("" when its row is unreadable).
///
/// When the message already has another number that still leads to it (two bridges saw it
/// first at the same moment and tried different numbers), nothing is written and the answer
/// names the message itself: the caller then reads the number it has, so a message keeps one
/// number across every bridge.
const CLAIM_MESSAGE_BODY: &str = r#"
local owner = redis.call('GET', KEYS[1])
if owner then return row_key(owner) or '' end
local known = redis.call('GET', KEYS[2])
if known and redis.call('EXISTS', ARGV[5] .. 'msg:' .. known) == 1 then
  return row_key(ARGV[2]) or ''
end
insert(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
return false
"#;

/// KEYS: msgs. ARGV: max_age ms, max_messages, prefix, then four for each message: the
/// candidate `n`, its row, its key bytes, `1` when the row carries content. For each message in
/// turn, what [`IdStore::find_or_claim_message`] answers: `{1, number}` when its key leads to a
/// row of its own (the content saved there when given), else `{2, owner}` when `n` is taken,
/// else `{0, ""}` with `n` claimed (a stale key, whose row expired or went to another message,
/// is claimed over). The sorted set is trimmed once, after the batch.
const FIND_OR_CLAIM_MESSAGES_BODY: &str = r#"
local max_age, max_messages, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out, inserted = {}, false
for i = 4, #ARGV, 4 do
  local n, row, key, content = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local mkey = prefix .. 'mkey:' .. key
  local answer
  local known = redis.call('GET', mkey)
  if known then
    local msg = prefix .. 'msg:' .. known
    local old = redis.call('GET', msg)
    if old and row_key(old) == key then
      if content == '1' then
        redis.call('SET', msg, string.sub(old, 1, 9) .. string.sub(row, 10), 'KEEPTTL')
      end
      answer = {1, known}
    end
  end
  if not answer then
    local msg = prefix .. 'msg:' .. n
    local owner = redis.call('GET', msg)
    if owner then
      answer = {2, row_key(owner) or ''}
    else
      put(msg, mkey, KEYS[1], n, row, max_age, now)
      inserted = true
      answer = {0, ''}
    end
  end
  out[#out + 1] = answer
end
if inserted then trim(KEYS[1], max_age, max_messages, prefix, now) end
return out
"#;

/// KEYS: msg:n. ARGV: new row, its key bytes. Replaces the row when it is the same key's,
/// keeping its time and its expiry.
const SAVE_MESSAGE_BODY: &str = r#"
local old = redis.call('GET', KEYS[1])
if old and row_key(old) == ARGV[2] then
  redis.call('SET', KEYS[1], string.sub(old, 1, 9) .. string.sub(ARGV[1], 10), 'KEEPTTL')
end
return false
"#;

/// KEYS: surrogates hash, ids hash. ARGV: n, v12. The surrogate `v12` has, else the claim of
/// `n` for it (as [`CLAIM_SURROGATE`]): `{0, ""}` when inserted, `{1, number}` when it has
/// one, `{2, owner}` when `n` is taken.
const FIND_OR_CLAIM_SURROGATE: &str = r#"
local known = redis.call('HGET', KEYS[2], ARGV[2])
if known then return {1, known} end
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner then return {2, owner} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1])
return {0, ''}
"#;

pub use super::surrogates::SURROGATE_CACHE_ENTRIES;

/// The Redis-backed [`IdStore`].
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    /// The server, for messages: scheme, host, port and database, never a password.
    server: String,
    prefix: String,
    retention: Retention,
    scripts: Arc<Scripts>,
    /// Shared by the store's clones. A std mutex: held for a map operation, never across an await.
    surrogates: SurrogateCache,
    /// Messages waiting for [`Batcher`], which ends when the last clone is dropped.
    batch: mpsc::Sender<Pending>,
}

/// The scripts (their text and hash), shared by the store's clones.
struct Scripts {
    claim_surrogate: Script,
    claim_message: Script,
    save_message: Script,
    find_or_claim_surrogate: Script,
    find_or_claim_messages: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("server", &self.server).field("prefix", &self.prefix).finish()
    }
}

/// `scheme://host:port/db` of a Redis URL, without user or password.
fn describe(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{host}{port}{}", u.scheme(), u.path())
        }
        Err(_) => "the configured Redis".into(),
    }
}

/// A row's key bytes for `key`, as [`Row::encode`] writes them after the time.
fn key_bytes(key: &MessageKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.self_id.len() + key.message_id.len() + 4);
    crate::core::record::write_key(&mut out, key);
    out
}

/// The key whose bytes [`key_bytes`] wrote (read through a row with an empty body).
fn key_from_bytes(bytes: &[u8]) -> Result<MessageKey, IdError> {
    let mut row = Vec::with_capacity(KEY_START + bytes.len());
    row.push(ROW_V1);
    row.extend_from_slice(&[0; 8]);
    row.extend_from_slice(bytes);
    Ok(RowHead::read(&row)?.key())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS) with
    /// keys under [`DEFAULT_PREFIX`], and checks that the server answers and runs scripts:
    /// a bridge that cannot keep ids fails at start-up, with the reason.
    pub async fn connect(url: &str, retention: Retention) -> Result<RedisStore, IdError> {
        RedisStore::connect_with_prefix(url, DEFAULT_PREFIX, retention).await
    }

    /// [`RedisStore::connect`] with keys under `prefix` (several bridges with separate ids on
    /// one server, or tests).
    pub async fn connect_with_prefix(url: &str, prefix: &str, retention: Retention) -> Result<RedisStore, IdError> {
        RedisStore::connect_with_ca(url, None, prefix, retention).await
    }

    /// [`RedisStore::connect_with_prefix`] to a `rediss://` server whose certificate is checked
    /// against the CA certificates in `ca_file` only (a private CA), instead of the bundled
    /// Mozilla roots.
    pub async fn connect_with_ca(
        url: &str,
        ca_file: Option<&Path>,
        prefix: &str,
        retention: Retention,
    ) -> Result<RedisStore, IdError> {
        let server = describe(url);
        let client = client(url, ca_file, &server)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2)
            .set_pipeline_buffer_size(PIPELINE_BUFFER);
        let conn = bounded(&server, "connecting", ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|e| untrusted_hint(e, ca_file))?;
        let scripts = Arc::new(Scripts {
            claim_surrogate: Script::new(CLAIM_SURROGATE),
            claim_message: Script::new(&format!("{LUA_ROW_KEY}{LUA_INSERT}{CLAIM_MESSAGE_BODY}")),
            save_message: Script::new(&format!("{LUA_ROW_KEY}{SAVE_MESSAGE_BODY}")),
            find_or_claim_surrogate: Script::new(FIND_OR_CLAIM_SURROGATE),
            find_or_claim_messages: Script::new(&format!("{LUA_ROW_KEY}{LUA_INSERT}{FIND_OR_CLAIM_MESSAGES_BODY}")),
        });
        let (batch, queue) = mpsc::channel(BATCH_QUEUE);
        let batcher = Batcher {
            conn: conn.clone(),
            scripts: scripts.clone(),
            server: server.clone(),
            prefix: prefix.to_owned(),
            msgs: format!("{prefix}msgs"),
            max_age_ms: retention.max_age.as_millis().max(1) as u64,
            max_messages: retention.max_messages.max(1),
        };
        tokio::spawn(batcher.run(queue));
        let store = RedisStore {
            conn,
            server,
            prefix: prefix.to_owned(),
            retention,
            scripts,
            surrogates: SurrogateCache::default(),
            batch,
        };
        // Loading the scripts proves the server is Redis enough: it answers, scripting is on,
        // and the credentials allow it. A later restart empties its script cache; invoking
        // reloads them.
        let scripts = &store.scripts;
        for script in [
            &scripts.claim_surrogate,
            &scripts.claim_message,
            &scripts.save_message,
            &scripts.find_or_claim_surrogate,
            &scripts.find_or_claim_messages,
        ] {
            let mut conn = store.conn.clone();
            store.run("loading the id scripts", async move { script.load_async(&mut conn).await }).await?;
        }
        Ok(store)
    }

    /// The prefix the keys live under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection and the server's description, for the store's other keys
    /// ([`super::redis_media`]).
    pub(super) fn connection(&self) -> (ConnectionManager, &str) {
        (self.conn.clone(), &self.server)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn msg_key(&self, n: i32) -> String {
        format!("{}msg:{n}", self.prefix)
    }

    fn mkey_key(&self, key_bytes: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 5 + key_bytes.len());
        k.extend_from_slice(self.prefix.as_bytes());
        k.extend_from_slice(b"mkey:");
        k.extend_from_slice(key_bytes);
        k
    }

    /// One command under [`OP_TIMEOUT`], its failure named with the server and the step.
    async fn run<T>(
        &self,
        what: &str,
        op: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, IdError> {
        bounded(&self.server, what, op).await
    }

    /// How many message ids are remembered now (expired ones may count until the next claim
    /// trims them).
    pub async fn message_count(&self) -> Result<u64, IdError> {
        let mut conn = self.conn.clone();
        let key = self.key("msgs");
        self.run("counting message ids", async move { redis::cmd("ZCARD").arg(key).query_async(&mut conn).await }).await
    }
}

/// The client for `url`. A `rediss://` server's certificate must chain to the bundled Mozilla
/// roots or, with `ca_file`, to a certificate in that file (which then replaces them);
/// `rediss://…/#insecure` checks nothing, for test setups only, and says so.
fn client(url: &str, ca_file: Option<&Path>, server: &str) -> Result<redis::Client, IdError> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()
        .map_err(|e| IdError::Store(format!("the Redis URL for {server} is not usable: {e}")))?;
    let insecure = matches!(info.addr(), redis::ConnectionAddr::TcpTls { insecure: true, .. });
    let client = match ca_file {
        None => redis::Client::open(info),
        Some(path) => {
            let pem = crate::tls::read_ca_file(path).map_err(|e| IdError::Store(format!("Redis at {server}: {e}")))?;
            redis::Client::build_with_tls(info, redis::TlsCertificates { client_tls: None, root_cert: Some(pem) })
        }
    }
    .map_err(|e| IdError::Store(format!("the Redis URL for {server} is not usable: {e}")))?;
    if insecure {
        tracing::warn!(%server, "Redis TLS certificate NOT verified (#insecure in the store URL: test setups only)");
    }
    Ok(client)
}

/// A connection refused for the server's certificate, with what to do about it.
fn untrusted_hint(error: IdError, ca_file: Option<&Path>) -> IdError {
    match error {
        IdError::Store(message) if message.contains("certificate") => IdError::Store(match ca_file {
            None => format!(
                "{message} (certificate verification failed: give the CA that signed the server's certificate with --store-ca-file or [store] ca-file)"
            ),
            Some(path) => {
                format!("{message} (certificate verification failed: no certificate in {} vouches for the server)", path.display())
            }
        }),
        other => other,
    }
}

pub(super) async fn bounded<T>(
    server: &str,
    what: &str,
    op: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, IdError> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(IdError::Store(format!("Redis at {server} failed {what}: {e}"))),
        Err(_) => {
            Err(IdError::Store(format!("Redis at {server} did not answer within {} s ({what})", OP_TIMEOUT.as_secs())))
        }
    }
}

/// What a find-or-claim script answered: `{0, ""}`, `{1, number}` or `{2, owner}`.
fn found<N: std::str::FromStr, K>(
    server: &str,
    n: N,
    (status, data): (i64, Vec<u8>),
    owner: impl FnOnce(Vec<u8>) -> K,
) -> Result<Found<N, K>, IdError> {
    match status {
        0 => Ok(Found::Claimed(n, Claim::Inserted)),
        1 => std::str::from_utf8(&data)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Found::Known)
            .ok_or_else(|| IdError::Store(format!("Redis at {server} holds a number that is not one: {data:?}"))),
        2 => Ok(Found::Claimed(n, Claim::Taken(owner(data)))),
        other => Err(IdError::Store(format!("Redis at {server} answered a claim with {other}, not 0, 1 or 2"))),
    }
}

/// Messages waiting for a script call at most; past that, callers wait (within their bound).
const BATCH_QUEUE: usize = 1024;
/// Messages one script call carries at most.
const BATCH_MAX: usize = 64;
/// Script calls in flight at once. A message asked for while they are waits for the next call
/// with the others that came meanwhile, as events on the disk store share a commit: under load
/// the calls grow (fewer, larger scripts: less work per message for Redis and the client), and
/// alone a message goes at once.
const BATCHES_IN_FLIGHT: usize = 4;

/// A message waiting for [`Batcher`]: the candidate, the row, its key bytes, whether the row
/// carries content, and where the script's answer for it goes.
struct Pending {
    n: i32,
    row: Vec<u8>,
    key: Vec<u8>,
    content: bool,
    answer: oneshot::Sender<Result<(i64, Vec<u8>), IdError>>,
}

/// Sends the messages [`IdStore::find_or_claim_message`] asks about, several to a script call.
struct Batcher {
    conn: ConnectionManager,
    scripts: Arc<Scripts>,
    server: String,
    prefix: String,
    msgs: String,
    max_age_ms: u64,
    max_messages: u64,
}

impl Batcher {
    async fn run(self, mut queue: mpsc::Receiver<Pending>) {
        let mut in_flight = FuturesUnordered::new();
        loop {
            tokio::select! {
                next = queue.recv(), if in_flight.len() < BATCHES_IN_FLIGHT => {
                    let Some(first) = next else { break };
                    let mut batch = vec![first];
                    while batch.len() < BATCH_MAX {
                        match queue.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    in_flight.push(self.call(batch));
                }
                Some(()) = in_flight.next() => {}
            }
        }
        while in_flight.next().await.is_some() {}
    }

    /// One script call for `batch`; each message gets its answer, or the call's error.
    async fn call(&self, batch: Vec<Pending>) {
        let mut call = self.scripts.find_or_claim_messages.prepare_invoke();
        call.key(&self.msgs).arg(self.max_age_ms).arg(self.max_messages).arg(&self.prefix);
        for p in &batch {
            call.arg(p.n).arg(&p.row[..]).arg(&p.key[..]).arg(if p.content { "1" } else { "0" });
        }
        let mut conn = self.conn.clone();
        let answers: Result<Vec<(i64, Vec<u8>)>, IdError> =
            bounded(&self.server, "finding or claiming message ids", async move { call.invoke_async(&mut conn).await })
                .await;
        let failure = match answers {
            Ok(answers) if answers.len() == batch.len() => {
                for (pending, answer) in batch.into_iter().zip(answers) {
                    let _ = pending.answer.send(Ok(answer));
                }
                return;
            }
            Ok(answers) => format!(
                "Redis at {} answered {} messages with {} answers (finding or claiming message ids)",
                self.server,
                batch.len(),
                answers.len()
            ),
            Err(IdError::Store(message)) => message,
            Err(other) => other.to_string(),
        };
        for pending in batch {
            let _ = pending.answer.send(Err(IdError::Store(failure.clone())));
        }
    }
}

impl IdStore for RedisStore {
    async fn surrogate_of(&self, v12: &str) -> Result<Option<i64>, IdError> {
        if let Some(n) = self.surrogates.surrogate_of(v12) {
            return Ok(Some(n));
        }
        let mut conn = self.conn.clone();
        let ids = self.key("ids");
        let n: Option<i64> =
            self.run("looking up a surrogate", async move {
                redis::cmd("HGET").arg(ids).arg(v12).query_async(&mut conn).await
            })
            .await?;
        if let Some(n) = n {
            self.surrogates.learn(n, v12);
        }
        Ok(n)
    }

    async fn claim_surrogate(&self, n: i64, v12: &str) -> Result<Claim<String>, IdError> {
        let mut conn = self.conn.clone();
        let mut call = self.scripts.claim_surrogate.prepare_invoke();
        call.key(self.key("surrogates")).key(self.key("ids")).arg(n).arg(v12);
        let owner: Option<String> =
            self.run("claiming a surrogate", async move { call.invoke_async(&mut conn).await }).await?;
        let claim = owner.map_or(Claim::Inserted, Claim::Taken);
        self.surrogates.learn_claim(n, &claim, v12);
        Ok(claim)
    }

    async fn v12_of_surrogate(&self, n: i64) -> Result<Option<String>, IdError> {
        if let Some(v12) = self.surrogates.v12_of(n) {
            return Ok(Some(v12));
        }
        let mut conn = self.conn.clone();
        let surrogates = self.key("surrogates");
        let v12: Option<String> = self
            .run("looking up a v12 id", async move {
                redis::cmd("HGET").arg(surrogates).arg(n).query_async(&mut conn).await
            })
            .await?;
        if let Some(v12) = &v12 {
            self.surrogates.learn_owner(n, v12);
        }
        Ok(v12)
    }

    /// A cached surrogate needs no round trip; otherwise one script finds or claims.
    async fn find_or_claim_surrogate(
        &self,
        first: impl FnOnce() -> i64 + Send,
        v12: &str,
    ) -> Result<Found<i64, String>, IdError> {
        if let Some(n) = self.surrogates.surrogate_of(v12) {
            return Ok(Found::Known(n));
        }
        let n = first();
        let mut conn = self.conn.clone();
        let mut call = self.scripts.find_or_claim_surrogate.prepare_invoke();
        call.key(self.key("surrogates")).key(self.key("ids")).arg(n).arg(v12);
        let answer =
            self.run("finding or claiming a surrogate", async move { call.invoke_async(&mut conn).await }).await?;
        let found = found(&self.server, n, answer, |owner| String::from_utf8_lossy(&owner).into_owned())?;
        self.surrogates.learn_found(&found, v12);
        Ok(found)
    }

    /// One script, shared with the messages other tasks are asking about meanwhile
    /// (`Batcher`): the number found (and the content saved), or the first candidate claimed.
    async fn find_or_claim_message(
        &self,
        first: impl FnOnce() -> i32 + Send,
        record: &MessageRecord,
    ) -> Result<Found<i32, MessageKey>, IdError> {
        let n = first();
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            n,
            row: Row::encode(record, now_ms())?.into_bytes(),
            key: key_bytes(&record.key),
            content: record.content.is_some(),
            answer,
        };
        let asked = async {
            self.batch.send(pending).await.ok()?;
            answered.await.ok()
        };
        let answer = match tokio::time::timeout(OP_TIMEOUT, asked).await {
            Ok(Some(answer)) => answer?,
            Ok(None) => return Err(IdError::Store(format!("Redis at {}: the claim queue has stopped", self.server))),
            Err(_) => {
                return Err(IdError::Store(format!(
                    "Redis at {} did not answer within {} s (finding or claiming a message id)",
                    self.server,
                    OP_TIMEOUT.as_secs()
                )))
            }
        };
        // An unreadable row cannot be told apart from a collision: probe on.
        found(&self.server, n, answer, |owner| key_from_bytes(&owner).unwrap_or_default())
    }

    async fn message_id_of(&self, key: &MessageKey) -> Result<Option<i32>, IdError> {
        let mut conn = self.conn.clone();
        let mkey = self.mkey_key(&key_bytes(key));
        self.run("looking up a message id", async move { redis::cmd("GET").arg(mkey).query_async(&mut conn).await })
            .await
    }

    async fn claim_message(&self, n: i32, record: &MessageRecord) -> Result<Claim<MessageKey>, IdError> {
        let row = Row::encode(record, now_ms())?;
        let key = key_bytes(&record.key);
        let mut conn = self.conn.clone();
        let mut call = self.scripts.claim_message.prepare_invoke();
        call.key(self.msg_key(n))
            .key(self.mkey_key(&key))
            .key(self.key("msgs"))
            .arg(n)
            .arg(row.as_bytes())
            .arg(self.retention.max_age.as_millis().max(1) as u64)
            .arg(self.retention.max_messages.max(1))
            .arg(&self.prefix);
        let owner: Option<Vec<u8>> =
            self.run("claiming a message id", async move { call.invoke_async(&mut conn).await }).await?;
        match owner {
            None => Ok(Claim::Inserted),
            // An unreadable row cannot be told apart from a collision: probe on.
            Some(bytes) => Ok(Claim::Taken(key_from_bytes(&bytes).unwrap_or_default())),
        }
    }

    async fn message_of(&self, n: i32) -> Result<Option<MessageRecord>, IdError> {
        let mut conn = self.conn.clone();
        let msg = self.msg_key(n);
        let row: Option<Vec<u8>> = self
            .run("reading a message", async move { redis::cmd("GET").arg(msg).query_async(&mut conn).await })
            .await?;
        row.map(|r| RowHead::read(&r)?.record()).transpose()
    }

    async fn save_message(&self, n: i32, record: &MessageRecord) -> Result<(), IdError> {
        let row = Row::encode(record, 0)?;
        let mut conn = self.conn.clone();
        let mut call = self.scripts.save_message.prepare_invoke();
        call.key(self.msg_key(n)).arg(row.as_bytes()).arg(key_bytes(&record.key));
        self.run("saving a message", async move { call.invoke_async::<()>(&mut conn).await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_are_the_rows_key_bytes() {
        for (self_id, message_id) in [("", ""), ("10001", "m-1"), ("名前", &"x".repeat(300)[..]), ("a\u{1f}b", "c")] {
            let record = MessageRecord {
                key: MessageKey { self_id: self_id.into(), message_id: message_id.into() },
                ..Default::default()
            };
            let row = Row::encode(&record, 7).unwrap();
            let kb = key_bytes(&record.key);
            assert_eq!(&row.as_bytes()[KEY_START..KEY_START + kb.len()], &kb[..]);
            assert_eq!(key_from_bytes(&kb).unwrap(), record.key);
        }
        // The encoding is unambiguous where a separator would not be.
        let a = MessageKey { self_id: "a\u{1f}b".into(), message_id: "c".into() };
        let b = MessageKey { self_id: "a".into(), message_id: "b\u{1f}c".into() };
        assert_ne!(key_bytes(&a), key_bytes(&b));
    }

    #[test]
    fn server_descriptions_hide_credentials() {
        assert_eq!(describe("redis://user:secret@db.example:6380/2"), "redis://db.example:6380/2");
        assert_eq!(describe("rediss://:pw@cache"), "rediss://cache");
        assert!(!describe("not a url :secret").contains("secret"));
    }
}
