//! The hub joins the two sides per bot account.
//!
//! Backend links report what they receive here; each v12 account (`self`) becomes an
//! [`AccountEntry`] with its own v11 self_id, its own event fan-out and the link its actions go
//! to. v11 endpoints pick an account (the one they name, else the only one the backend lists
//! online: an account seen only in a stray event does not count), subscribe to its events and
//! send it actions. The fan-out is a broadcast bounded in events and bytes ([`crate::fanout`]): a
//! v11 connection that falls behind loses the oldest events, and the loss is counted and logged
//! (never silent). While no connection is subscribed, events are kept (at most 256 and 64 MiB,
//! none older than 60 s) for the next one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{oneshot, watch};

use crate::core::event::{status_bots, EventError, V11Event};
use crate::core::ids::IdError;
use crate::fanout;
use crate::sync::{LockUnpoisoned, RwLockUnpoisoned};

use crate::backends::link::{GiveUp, LinkHandle, LinkId};
use crate::backends::{Known, Reports};
use crate::bots::event_filter::Filters;
use crate::bots::rate_limit::Limiter;
use crate::core::{v11, v12, Account, BackendInfo, CallError, ImplementationClaim, InfoSource, Translator, V12Caller};
use crate::metrics::{AccountMetrics, DropReason, Metrics};
use crate::net::unix_now;

/// The store behind ids (memory or disk, chosen at start-up).
pub use crate::store::Store;

/// Bytes of events ([`V11Event::weight`]) one account's fan-out keeps at most for connections
/// that have not read them (its count is `limits.event_queue`): past it a connection that reads
/// slowly is waited for (`--slow-bot-wait`) and then loses the oldest, counted and logged as past
/// the count. A thousand events of a few KiB are well within it; a backend's frame may be 16 MiB.
pub const EVENT_QUEUE_BYTES: usize = 64 << 20;

/// Events kept for the next v11 connection while none is connected: at most this many…
const BACKLOG_MAX: usize = 256;
/// …of at most these bytes ([`V11Event::weight`]; the newest is kept whatever it weighs): as
/// many as a connection's queue, so that what a reverse-WS connection gives back fits…
const BACKLOG_BYTES: usize = EVENT_QUEUE_BYTES;
/// …and none older than this.
const BACKLOG_AGE: Duration = Duration::from_secs(60);
/// Events kept while no connection was there, all accounts together: at most this many…
const KEPT_ALL_MAX: usize = 16_384;
/// …of at most these bytes. The accounts come from the backend's events: a backend that names a
/// new `self` in every event would otherwise keep every event for [`BACKLOG_AGE`].
const KEPT_ALL_BYTES: usize = 2 * BACKLOG_BYTES;

/// How long an event may wait for an unavailable id store before it is dropped: a Redis
/// restart or failover, a disk briefly full. Its first retry comes after `STORE_RETRY_FIRST`,
/// each later one after twice the previous pause, at most `STORE_RETRY_MAX`.
pub const STORE_WAIT: Duration = Duration::from_secs(60);
const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
const STORE_RETRY_MAX: Duration = Duration::from_secs(2);

/// An account the backend never listed (seen only in events) that is offline and has had no
/// event for this long is forgotten by [`Hub::select`]: it no longer makes a connection without
/// `self_id` ambiguous.
const UNLISTED_QUIET: Duration = Duration::from_secs(600);
/// Beyond this many unlisted accounts, forgotten ones that nothing holds are dropped from the
/// registry when another appears (a backend sending junk `self`s cannot grow it without bound).
const UNLISTED_MAX: usize = 64;
/// Unlisted accounts that are not forgotten (seen within [`UNLISTED_QUIET`], or with a
/// connection) at most: past it an event naming a new `self` the backend never listed is dropped,
/// said once a minute with a count. Each account is an entry, metrics and a backlog: a backend
/// naming a new `self` in every event must not grow them without bound.
const UNLISTED_LIMIT: usize = 1024;
/// How often, at most, the bridge says that it refuses new unlisted accounts.
const SAY_REFUSED_EVERY: Duration = Duration::from_secs(60);

/// One bot account, as both sides see it.
#[derive(Debug)]
pub struct AccountEntry {
    pub account: Account,
    link: RwLock<LinkHandle>,
    online: AtomicBool,
    /// The backend lists this account (`get_status`, `meta.status_update`); false while it has
    /// been seen only as the `self` of events, which may be a backend's glitch.
    listed: AtomicBool,
    /// When its last event came (or when it was last listed).
    last_seen: Mutex<tokio::time::Instant>,
    events: fanout::Sender<Arc<V11Event>>,
    /// Events that arrived while no v11 connection was subscribed (bounded by count and age;
    /// the oldest go first, and are counted in `undelivered`).
    backlog: Mutex<Backlog>,
    /// Events that never reached a v11 connection.
    pub undelivered: AtomicU64,
    /// This account's event counters.
    pub stats: AccountMetrics,
}

/// An event kept while no connection was there: when it came, and its weight.
type Kept = (tokio::time::Instant, Arc<V11Event>, usize);

/// What every account's backlog holds together ([`KEPT_ALL_MAX`], [`KEPT_ALL_BYTES`]).
#[derive(Debug, Default)]
struct KeptTotal {
    events: AtomicUsize,
    bytes: AtomicUsize,
}

impl KeptTotal {
    fn over(&self) -> bool {
        self.events.load(Ordering::Relaxed) > KEPT_ALL_MAX || self.bytes.load(Ordering::Relaxed) > KEPT_ALL_BYTES
    }
}

/// One account's kept events, oldest first, counted in its own bytes and in the total.
#[derive(Debug)]
struct Backlog {
    kept: VecDeque<Kept>,
    bytes: usize,
    total: Arc<KeptTotal>,
}

impl Backlog {
    fn new(total: Arc<KeptTotal>) -> Backlog {
        Backlog { kept: VecDeque::new(), bytes: 0, total }
    }

    fn added(&mut self, weight: usize) {
        self.bytes += weight;
        self.total.events.fetch_add(1, Ordering::Relaxed);
        self.total.bytes.fetch_add(weight, Ordering::Relaxed);
    }

    fn removed(&mut self, events: usize, bytes: usize) {
        self.bytes -= bytes;
        self.total.events.fetch_sub(events, Ordering::Relaxed);
        self.total.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn push_back(&mut self, kept: Kept) {
        self.added(kept.2);
        self.kept.push_back(kept);
    }

    fn push_front(&mut self, kept: Kept) {
        self.added(kept.2);
        self.kept.push_front(kept);
    }

    fn pop_front(&mut self) -> Option<Kept> {
        let kept = self.kept.pop_front()?;
        self.removed(1, kept.2);
        Some(kept)
    }

    fn front(&self) -> Option<&Kept> {
        self.kept.front()
    }

    fn len(&self) -> usize {
        self.kept.len()
    }

    /// Everything kept, oldest first; the backlog is empty after.
    fn take(&mut self) -> VecDeque<Kept> {
        let (events, bytes) = (self.kept.len(), self.bytes);
        self.removed(events, bytes);
        std::mem::take(&mut self.kept)
    }
}

impl Drop for Backlog {
    /// An account forgotten with events kept: they leave the total.
    fn drop(&mut self) {
        let (events, bytes) = (self.kept.len(), self.bytes);
        self.removed(events, bytes);
    }
}

impl AccountEntry {
    /// Drops the oldest kept events past [`BACKLOG_MAX`] or [`BACKLOG_BYTES`] (but the newest),
    /// and while all accounts together keep more than [`KEPT_ALL_MAX`] or [`KEPT_ALL_BYTES`]
    /// (the newest too when other accounts keep the rest: theirs go as they expire or are
    /// taken), and counts them.
    fn bound_backlog(&self, backlog: &mut Backlog) {
        let mut dropped = 0;
        // Past the total the newest goes too, unless this account alone holds what is kept.
        let others_hold = |backlog: &Backlog| backlog.total.events.load(Ordering::Relaxed) > backlog.len();
        while backlog.len() > BACKLOG_MAX
            || (backlog.bytes > BACKLOG_BYTES && backlog.len() > 1)
            || (backlog.total.over() && (backlog.len() > 1 || (backlog.len() == 1 && others_hold(backlog))))
        {
            backlog.pop_front();
            dropped += 1;
        }
        if dropped > 0 {
            self.lost(dropped, DropReason::Unclaimed);
        }
    }

    /// Subscribes to the account's events; the first items are the ones kept while no
    /// connection was there (so an event that arrives with a new account is not lost).
    pub fn subscribe(&self) -> (Vec<Arc<V11Event>>, fanout::Receiver<Arc<V11Event>>) {
        let mut backlog = self.backlog.lock_unpoisoned();
        let rx = self.events.subscribe();
        let mut kept = Vec::with_capacity(backlog.len());
        let mut expired = 0;
        for (at, ev, _) in backlog.take() {
            if at.elapsed() <= BACKLOG_AGE {
                kept.push(ev);
            } else {
                expired += 1;
            }
        }
        if expired > 0 {
            // Kept too long for anyone to want them now: counted, as every dropped event is.
            self.lost(expired, DropReason::Unclaimed);
        }
        (kept, rx)
    }

    /// Sends an event to every subscribed connection, or keeps it for the next one.
    pub(crate) fn publish(&self, ev: Arc<V11Event>) {
        let mut backlog = self.backlog.lock_unpoisoned();
        self.stats.delivered();
        let weight = ev.weight();
        let Err(fanout::SendError(ev)) = self.events.send(ev, weight) else { return };
        while backlog.front().is_some_and(|(at, _, _)| at.elapsed() > BACKLOG_AGE) {
            backlog.pop_front();
            self.lost(1, DropReason::Unclaimed);
        }
        backlog.push_back((tokio::time::Instant::now(), ev, weight));
        self.bound_backlog(&mut backlog);
    }

    /// Counts events that will never reach a bot.
    pub fn lost(&self, n: u64, reason: DropReason) {
        self.undelivered.fetch_add(n, Ordering::Relaxed);
        self.stats.dropped(n, reason);
    }

    pub fn link(&self) -> LinkHandle {
        self.link.read_unpoisoned().clone()
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire) && self.link().is_connected()
    }

    fn seen(&self) {
        *self.last_seen.lock_unpoisoned() = tokio::time::Instant::now();
    }

    /// How strongly the account claims a connection that names none: listed and online (2),
    /// listed (1), seen only in events (0), or not at all when it is unlisted, offline and quiet
    /// for [`UNLISTED_QUIET`] (forgotten).
    fn standing(&self) -> Option<u8> {
        let online = self.is_online();
        match (self.listed.load(Ordering::Acquire), online) {
            (true, true) => Some(2),
            (true, false) => Some(1),
            (false, true) => Some(0),
            (false, false) => {
                let quiet = self.last_seen.lock_unpoisoned().elapsed();
                (quiet < UNLISTED_QUIET).then_some(0)
            }
        }
    }
}

/// Sends an account's actions over its current link.
pub struct AccountCaller<'a>(pub &'a AccountEntry);

impl V12Caller for AccountCaller<'_> {
    async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
        self.0.link().call(request).await
    }

    async fn call_with_message(
        &self,
        request: v12::Request,
        message: Vec<crate::core::message::Segment>,
    ) -> Result<v12::Response, CallError> {
        self.0.link().call_with_message(request, Some(message)).await
    }
}

/// An event on its way from a backend link to the bots: its account, and what the link's
/// backend is (its profile's tables translate it).
#[derive(Debug)]
pub struct Admitted {
    pub entry: Arc<AccountEntry>,
    pub backend: Arc<BackendInfo>,
    pub ev: v12::Event,
}

/// Backend calls made while translating an event: the account's link, given up on request.
struct EventCaller<'a> {
    entry: &'a AccountEntry,
    give_up: &'a GiveUp,
}

impl V12Caller for EventCaller<'_> {
    async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
        let given_up = || {
            self.entry.stats.call_given_up();
            Err(CallError::Link("not waiting: events are queued ahead of the answer".into()))
        };
        // Not even asked while the signal is up: the answer would be left unread, and the
        // backend would answer it for nothing.
        if self.give_up.is_up() {
            return given_up();
        }
        let link = self.entry.link();
        tokio::select! {
            biased;
            answer = link.call(request) => answer,
            _ = self.give_up.fired() => given_up(),
        }
    }
}

struct Waiter {
    want: Option<i64>,
    events: bool,
    tx: oneshot::Sender<Subscription>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").field("want", &self.want).finish()
    }
}

/// An account chosen for a v11 connection, with its event stream when the connection takes events.
#[derive(Debug)]
pub struct Subscription {
    pub entry: Arc<AccountEntry>,
    /// Events kept while no connection was there, to be written first.
    pub kept: Vec<Arc<V11Event>>,
    pub events: Option<fanout::Receiver<Arc<V11Event>>>,
}

impl Subscription {
    fn new(entry: Arc<AccountEntry>, events: bool) -> Self {
        let (kept, rx) = if events {
            let (kept, rx) = entry.subscribe();
            (kept, Some(rx))
        } else {
            (Vec::new(), None)
        };
        Subscription { entry, kept, events: rx }
    }
}

/// Which account a v11 endpoint gets.
#[derive(Debug)]
pub enum Selection {
    Ready(Arc<AccountEntry>),
    /// Several accounts and no selector: the v11 ids to choose from.
    Ambiguous(Vec<i64>),
    /// Not (yet) known.
    Unknown,
}

#[derive(Debug, Default)]
struct Accounts {
    by_self: HashMap<v12::SelfId, Arc<AccountEntry>>,
    by_v11: HashMap<i64, Arc<AccountEntry>>,
}

impl Accounts {
    fn unlisted(&self) -> usize {
        self.by_self.values().filter(|e| !e.listed.load(Ordering::Acquire)).count()
    }

    /// Past [`UNLISTED_MAX`] unlisted accounts, drops the forgotten ones nothing else holds (no
    /// connection, no reverse-WS client), with any events kept for them.
    fn forget_unlisted(&mut self, metrics: &Metrics) {
        if self.unlisted() <= UNLISTED_MAX {
            return;
        }
        // Held only by the two maps.
        self.by_self.retain(|_, e| e.standing().is_some() || Arc::strong_count(e) > 2);
        let before = self.by_v11.len();
        self.by_v11.retain(|id, e| {
            let keep = Arc::strong_count(e) > 1;
            if !keep {
                metrics.forget_account(*id);
            }
            keep
        });
        let forgotten = before - self.by_v11.len();
        if forgotten > 0 {
            tracing::info!(forgotten, "quiet offline accounts the backend never listed are forgotten");
        }
    }
}

#[derive(Debug)]
pub struct Hub {
    pub translator: Translator<Store>,
    accounts: RwLock<Accounts>,
    /// v11 connections waiting for an account to appear; served under this lock so that an
    /// account's first event cannot slip past a connection that is about to subscribe.
    waiters: Mutex<Vec<Waiter>>,
    /// Bumped whenever an account appears or goes on/offline (reverse WS and HTTP POST follow it).
    changed: watch::Sender<u64>,
    next_link: AtomicUsize,
    backends: RwLock<HashMap<LinkId, Arc<BackendInfo>>>,
    event_queue: usize,
    /// How long a connection a whole queue behind is waited for ([`crate::fanout::PATIENCE`]).
    slow_bot_wait: Duration,
    /// The profile every backend gets, when configured; else each implementation's own.
    forced_profile: Option<String>,
    /// Profiles configured for particular links (they win over `forced_profile`).
    link_profiles: RwLock<HashMap<LinkId, String>>,
    /// Upload modes configured for particular links (else the bridge's).
    link_uploads: RwLock<HashMap<LinkId, crate::core::media::UploadMode>>,
    /// The event filter files the servers use, for `reload_event_filter`.
    filters: Filters,
    /// What the admin listener's `/metrics` and `/ready` report.
    pub metrics: Arc<Metrics>,
    /// Recent translations for the inspector page, when it is on.
    pub inspector: Option<Arc<crate::inspector::Inspector>>,
    /// What all accounts keep for connections to come.
    kept_total: Arc<KeptTotal>,
    /// Events dropped since it was last said that new unlisted accounts are refused, and when.
    refused: Mutex<(u64, Option<Instant>)>,
}

impl Hub {
    pub fn new(translator: Translator<Store>, event_queue: usize) -> Hub {
        // Every action name a table knows, in any profile; the metrics call others `other`.
        let known_actions = translator
            .maps
            .iter()
            .flat_map(|(_, m)| m.actions.keys().chain(m.unsupported.keys()).cloned())
            .chain(["reload_event_filter".to_owned()])
            .collect();
        Hub {
            metrics: Arc::new(Metrics::new(known_actions)),
            translator,
            accounts: RwLock::default(),
            waiters: Mutex::default(),
            changed: watch::channel(0).0,
            next_link: AtomicUsize::new(1 << 16),
            backends: RwLock::default(),
            event_queue: event_queue.max(1),
            slow_bot_wait: crate::fanout::PATIENCE,
            forced_profile: None,
            link_profiles: RwLock::default(),
            link_uploads: RwLock::default(),
            filters: Filters::default(),
            inspector: None,
            kept_total: Arc::default(),
            refused: Mutex::default(),
        }
    }

    /// How long a connection a whole queue behind is waited for before it loses the oldest
    /// (zero: not at all).
    pub fn with_slow_bot_wait(mut self, wait: Duration) -> Hub {
        self.slow_bot_wait = wait;
        self
    }

    /// Records translations for the inspector.
    pub fn with_inspector(mut self, inspector: Arc<crate::inspector::Inspector>) -> Hub {
        self.inspector = Some(inspector);
        self
    }

    /// The event filters `reload_event_filter` reloads.
    pub fn with_filters(mut self, filters: Filters) -> Hub {
        self.filters = filters;
        self
    }

    /// Gives one link's backend this profile, whatever it calls itself.
    pub fn force_link_profile(&self, link: LinkId, profile: String) {
        self.link_profiles.write_unpoisoned().insert(link, profile);
        self.set_backend_info(link, BackendInfo::clone(&self.backend_info(link)));
    }

    /// Uploads local files to one link's backend this way, whatever the bridge's upload mode.
    pub fn set_link_upload(&self, link: LinkId, mode: crate::core::media::UploadMode) {
        self.link_uploads.write_unpoisoned().insert(link, mode);
        self.set_backend_info(link, BackendInfo::clone(&self.backend_info(link)));
    }

    /// Gives every backend this profile instead of choosing by implementation name.
    pub fn with_profile(mut self, profile: Option<String>) -> Hub {
        self.forced_profile = profile;
        self
    }

    fn accounts(&self) -> std::sync::RwLockReadGuard<'_, Accounts> {
        self.accounts.read_unpoisoned()
    }

    /// Picks the account for a v11 endpoint: the one asked for, else the only one there is. "The
    /// only one" is decided by what the backend reports: among the accounts it lists as online,
    /// else those it lists, else those seen in events. An account seen only in a stray event
    /// never makes a connection ambiguous while the backend lists another.
    pub fn select(&self, want: Option<i64>) -> Selection {
        let accounts = self.accounts();
        if let Some(id) = want {
            return accounts.by_v11.get(&id).cloned().map_or(Selection::Unknown, Selection::Ready);
        }
        let standing: Vec<(u8, &Arc<AccountEntry>)> =
            accounts.by_v11.values().filter_map(|e| Some((e.standing()?, e))).collect();
        let Some(best) = standing.iter().map(|(s, _)| *s).max() else { return Selection::Unknown };
        let top: Vec<&Arc<AccountEntry>> = standing.into_iter().filter(|(s, _)| *s == best).map(|(_, e)| e).collect();
        match top.as_slice() {
            [only] => Selection::Ready(Arc::clone(only)),
            several => {
                let mut ids: Vec<i64> = several.iter().map(|e| e.account.v11_id).collect();
                ids.sort_unstable();
                Selection::Ambiguous(ids)
            }
        }
    }

    /// Waits until [`Hub::select`] gives an account (or an ambiguity to report), subscribed to
    /// its events when `events` is true.
    pub async fn wait_for_account(&self, want: Option<i64>, events: bool) -> Result<Subscription, Vec<i64>> {
        let rx = {
            let mut waiters = self.waiters.lock_unpoisoned();
            match self.select(want) {
                Selection::Ready(entry) => return Ok(Subscription::new(entry, events)),
                Selection::Ambiguous(ids) => return Err(ids),
                Selection::Unknown => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(Waiter { want, events, tx });
                    rx
                }
            }
        };
        rx.await.map_err(|_| Vec::new())
    }

    /// Hands a new account to the connections waiting for it (already subscribed).
    fn serve_waiters(&self) {
        let mut waiters = self.waiters.lock_unpoisoned();
        let pending = std::mem::take(&mut *waiters);
        for w in pending {
            match self.select(w.want) {
                Selection::Ready(entry) => {
                    let _ = w.tx.send(Subscription::new(entry, w.events));
                }
                // Several accounts and no selector: dropping the sender reports it.
                Selection::Ambiguous(_) => {}
                Selection::Unknown => waiters.push(w),
            }
        }
    }

    /// A fresh id for a link made at run time (one per reverse-WS connection).
    pub fn next_link_id(&self) -> LinkId {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    /// Notified whenever an account appears or goes on/offline.
    pub fn accounts_changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Every account with whether it is online now.
    pub fn accounts_now(&self) -> Vec<(Arc<AccountEntry>, bool)> {
        self.accounts().by_v11.values().map(|e| (e.clone(), e.is_online())).collect()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Every link the hub knows about, with what its backend is.
    pub fn backends_now(&self) -> Vec<(LinkId, Arc<BackendInfo>)> {
        let mut all: Vec<_> = self.backends.read_unpoisoned().iter().map(|(id, info)| (*id, info.clone())).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    pub fn backend_info(&self, link: LinkId) -> Arc<BackendInfo> {
        self.backends.read_unpoisoned().get(&link).cloned().unwrap_or_default()
    }

    /// Forgets a link made at run time once it is gone (its accounts went offline already).
    pub fn forget_link(&self, link: LinkId) {
        self.backends.write_unpoisoned().remove(&link);
        self.link_profiles.write_unpoisoned().remove(&link);
        self.link_uploads.write_unpoisoned().remove(&link);
    }

    /// Records what a link's backend is, and chooses its profile: the configured one, else the
    /// one its implementation name selects (`generic` when none does). A list of supported
    /// actions already learnt is kept when the new information has none.
    pub fn set_backend_info(&self, link: LinkId, mut info: BackendInfo) {
        let for_link = self.link_profiles.read_unpoisoned().get(&link).cloned();
        info.profile = match for_link.as_ref().or(self.forced_profile.as_ref()) {
            Some(forced) => forced.clone(),
            None => self.translator.maps.for_backend(&info.implementation, &info.onebot_version).to_owned(),
        };
        info.upload = self.link_uploads.read_unpoisoned().get(&link).copied();
        let mut backends = self.backends.write_unpoisoned();
        let previous = backends.get(&link);
        if info.supported.is_none() {
            info.supported = previous.and_then(|p| p.supported.clone());
        }
        if previous.map(|p| p.profile.as_str()) != Some(info.profile.as_str()) {
            tracing::info!(link, implementation = %info.implementation, profile = %info.profile, "backend profile chosen");
        }
        backends.insert(link, Arc::new(info));
    }

    /// Takes in what `source` says about a link's implementation (the one place that merges what
    /// handshakes, headers, `get_version` and `meta.connect` tell; see [`BackendInfo::learn`]).
    pub fn learn_backend(&self, link: LinkId, claim: ImplementationClaim, source: InfoSource) {
        let known = self.backend_info(link);
        let info = known.learn(claim, source);
        if info != *known || !self.backends.read_unpoisoned().contains_key(&link) {
            self.set_backend_info(link, info);
        }
    }

    /// Records the actions a link's backend says it supports.
    pub fn set_supported_actions(&self, link: LinkId, actions: std::collections::BTreeSet<String>) {
        let mut info = BackendInfo::clone(&self.backend_info(link));
        info.supported = Some(Arc::new(actions));
        self.set_backend_info(link, info);
    }

    /// Makes sure an account exists, bound to this link, and records whether it is online and
    /// whether the backend `listed` it (a status) or it came as an event's `self`.
    pub async fn upsert_account(
        &self,
        link: &LinkHandle,
        self_id: &v12::SelfId,
        online: bool,
        listed: bool,
    ) -> Option<Arc<AccountEntry>> {
        if let Some(entry) = self.accounts().by_self.get(self_id).cloned() {
            entry.seen();
            if listed && !entry.listed.swap(true, Ordering::AcqRel) {
                tracing::info!(self_id = entry.account.v11_id, "bot account listed by the backend");
                self.notify();
            }
            // Most events come over the link the account is bound to already: a shared lock
            // tells, and nothing is swapped.
            if entry.link.read_unpoisoned().id != link.id {
                // A late event from a connection that is going away must not take the account
                // from a live one: rebind only to a connected link, or away from a dead one.
                let mut current = entry.link.write_unpoisoned();
                if current.id != link.id && !link.is_connected() && current.is_connected() {
                    return Some(entry.clone());
                }
                *current = link.clone();
            }
            let was = entry.online.swap(online, Ordering::AcqRel);
            if was != online {
                tracing::info!(self_id = entry.account.v11_id, online, "bot account status changed");
                self.notify();
            }
            return Some(entry);
        }
        if !listed && self.refuses_unlisted() {
            return None;
        }
        let account = match self.translator.account(self_id).await {
            Ok(a) => a,
            Err(error) => {
                tracing::error!(%error, user_id = %self_id.user_id, "cannot give the bot account a v11 id; its events are lost");
                return None;
            }
        };
        let entry = Arc::new(AccountEntry {
            account: account.clone(),
            link: RwLock::new(link.clone()),
            online: AtomicBool::new(online),
            listed: AtomicBool::new(listed),
            last_seen: Mutex::new(tokio::time::Instant::now()),
            events: fanout::channel_waiting(self.event_queue, EVENT_QUEUE_BYTES, self.slow_bot_wait),
            backlog: Mutex::new(Backlog::new(self.kept_total.clone())),
            undelivered: AtomicU64::new(0),
            stats: self.metrics.account(account.v11_id),
        });
        {
            let mut accounts = self.accounts.write_unpoisoned();
            let entry = accounts.by_self.entry(self_id.clone()).or_insert_with(|| entry.clone()).clone();
            accounts.by_v11.insert(account.v11_id, entry);
            if !listed {
                accounts.forget_unlisted(&self.metrics);
            }
        }
        tracing::info!(self_id = account.v11_id, platform = %self_id.platform, user_id = %self_id.user_id, online, listed, "bot account appeared");
        self.serve_waiters();
        self.notify();
        self.accounts().by_self.get(self_id).cloned()
    }

    /// True when [`UNLISTED_LIMIT`] unlisted accounts are there, none of them forgotten: the
    /// event that names a new one is dropped (said once a minute, with a count).
    fn refuses_unlisted(&self) -> bool {
        // Below the limit (always, but for a backend gone wrong) a shared lock tells.
        if self.accounts().unlisted() < UNLISTED_LIMIT {
            return false;
        }
        let mut accounts = self.accounts.write_unpoisoned();
        accounts.forget_unlisted(&self.metrics);
        if accounts.unlisted() < UNLISTED_LIMIT {
            return false;
        }
        drop(accounts);
        let mut refused = self.refused.lock_unpoisoned();
        refused.0 += 1;
        if refused.1.is_none_or(|at| at.elapsed() >= SAY_REFUSED_EVERY) {
            tracing::warn!(
                accounts = UNLISTED_LIMIT,
                dropped = refused.0,
                "events name more bot accounts than the backend lists: events of new unlisted accounts are dropped"
            );
            *refused = (0, Some(Instant::now()));
        }
        true
    }

    /// A link went down: its accounts are offline until it (or another link) brings them back.
    pub fn link_down(&self, link: LinkId) {
        let accounts = self.accounts();
        for entry in accounts.by_self.values() {
            if entry.link().id == link && entry.online.swap(false, Ordering::AcqRel) {
                tracing::info!(self_id = entry.account.v11_id, "bot account offline: backend link down");
            }
        }
        drop(accounts);
        // What it supports is asked again when it comes back (it may be another version then).
        if let Some(info) = self.backends.write_unpoisoned().get_mut(&link) {
            Arc::make_mut(info).supported = None;
        }
        self.notify();
    }

    /// Applies a `get_status` answer or a `status_update` event.
    pub async fn apply_status(&self, link: &LinkHandle, status: &Value) {
        for (self_id, online) in status_bots(status) {
            self.upsert_account(link, &self_id, online, true).await;
        }
    }

    /// Runs one v11 action for an account; the answer carries the request's echo.
    pub async fn handle_action(
        &self,
        entry: &AccountEntry,
        req: v11::Request,
        post_format: v11::PostFormat,
    ) -> v11::Response {
        let echo = req.echo.clone();
        let started = Instant::now();
        let action = req.action.clone();
        // What the inspector shows of this action, when it is on.
        let recorded = self.inspector.as_ref().map(|i| (i, i.v11_request(&req), crate::inspector::Calls::default()));
        let answer = if req.action == "reload_event_filter" {
            self.reload_event_filter(&req)
        } else {
            let backend = self.backend_info(entry.link().id);
            let ctx = self.translator.context(&entry.account, &backend, post_format);
            let caller = AccountCaller(entry);
            match &recorded {
                None => self.translator.handle_action(ctx, &caller, req).await,
                Some((inspector, _, calls)) => {
                    let recording = crate::inspector::Recording { inner: &caller, inspector, calls };
                    self.translator.handle_action(ctx, &recording, req).await
                }
            }
        };
        let took = started.elapsed();
        self.metrics.action(&action, answer.retcode, answer.status, took);
        if let Some((inspector, asked, calls)) = recorded {
            inspector.action(entry.account.v11_id, asked, calls, &answer, took);
        }
        answer.with_echo(echo)
    }

    /// Runs an action after waiting for its turn under an endpoint's rate limit (go-cqhttp's
    /// `rate-limit` middleware); a turn further away than the limiter allows is a failure.
    pub async fn handle_limited_action(
        &self,
        entry: &AccountEntry,
        req: v11::Request,
        post_format: v11::PostFormat,
        limiter: Option<&Limiter>,
    ) -> v11::Response {
        if let Some(limiter) = limiter {
            if let Err(overloaded) = limiter.acquire().await {
                tracing::warn!(action = %req.action, %overloaded, "action refused by the rate limit");
                return v11::Response::failed(100, "RATE_LIMITED", overloaded.to_string()).with_echo(req.echo);
            }
        }
        self.handle_action(entry, req, post_format).await
    }

    /// go-cqhttp's `reload_event_filter {file}`: reloads that configured filter file (every one
    /// when `file` is empty); a broken file keeps the previous filter and says why. With no
    /// filter configured there is nothing to reload (`null`, as the action always answered).
    fn reload_event_filter(&self, req: &v11::Request) -> v11::Response {
        let file = req.params.get("file").and_then(Value::as_str).unwrap_or("");
        if self.filters.is_empty() && file.trim().is_empty() {
            return v11::Response::ok(Value::Null);
        }
        match self.filters.reload(file) {
            Ok(_) => v11::Response::ok(Value::Null),
            Err(error) => v11::Response::failed(100, "BRIDGE_FILTER_NOT_RELOADED", error),
        }
    }

    /// go-cqhttp's status object for heartbeats.
    pub fn status_of(&self, entry: &AccountEntry) -> Value {
        let online = entry.is_online();
        crate::core::event::v11_status(online, online, crate::core::event::empty_stat())
    }

    /// Runs a quick operation (an HTTP POST reply body) for one of the account's events, given
    /// as the bot saw it. Each failed step is logged by the core; the first failure is returned.
    pub async fn quick_operation(
        &self,
        entry: &AccountEntry,
        context: &Value,
        op: &Value,
    ) -> Result<(), crate::core::action::ActionError> {
        let backend = self.backend_info(entry.link().id);
        let ctx = self.translator.context(&entry.account, &backend, Default::default());
        let Some(inspector) = &self.inspector else {
            return self.translator.quick_operation(ctx, &AccountCaller(entry), context, op).await;
        };
        let started = Instant::now();
        let calls = crate::inspector::Calls::default();
        let recording = crate::inspector::Recording { inner: &AccountCaller(entry), inspector, calls: &calls };
        let result = self.translator.quick_operation(ctx, &recording, context, op).await;
        let outcome = result.as_ref().map(|_| ()).map_err(ToString::to_string);
        inspector.quick_operation(entry.account.v11_id, context, op, outcome, calls, started.elapsed());
        result
    }
}

impl Hub {
    /// One attempt at translating an event, shown in the inspector when it is on. Not an
    /// `async fn`: a layer of its own would copy the translation's future once more.
    fn translate_once<'a>(
        &'a self,
        entry: &'a AccountEntry,
        backend: &'a BackendInfo,
        ev: &'a v12::Event,
        give_up: &'a GiveUp,
    ) -> impl std::future::Future<Output = (Result<Option<V11Event>, EventError>, u64)> + Send + 'a {
        // The event's ids are given without waiting for the disk store's journal, one after
        // another; the event then waits once, for all of them, before it may reach a bot: in its
        // link's intake, with the events translated before it (`Reports::ticket`).
        crate::store::deferring(self.translate_deferred(entry, backend, ev, give_up))
    }

    async fn translate_deferred(
        &self,
        entry: &AccountEntry,
        backend: &BackendInfo,
        ev: &v12::Event,
        give_up: &GiveUp,
    ) -> Result<Option<V11Event>, EventError> {
        let ctx = self.translator.context(&entry.account, backend, Default::default());
        let caller = EventCaller { entry, give_up };
        let Some(inspector) = &self.inspector else {
            return self.translator.to_v11_event(ctx, ev, unix_now(), &caller).await;
        };
        let started = Instant::now();
        let calls = crate::inspector::Calls::default();
        let recording = crate::inspector::Recording { inner: &caller, inspector, calls: &calls };
        let translated = self.translator.to_v11_event(ctx, ev, unix_now(), &recording).await;
        let outcome = match &translated {
            Ok(v11) => Ok(v11.as_ref()),
            Err(error) => Err(error.to_string()),
        };
        inspector.event(entry.account.v11_id, ev, outcome, calls, started.elapsed());
        translated
    }
}

/// An admitted event once translated: its account, the v11 event (none when it is not for bots
/// or could not be translated), and the disk store's journal entry it waits for.
pub struct Translated {
    entry: Arc<AccountEntry>,
    v11: Option<Arc<V11Event>>,
    ticket: u64,
}

/// Backend links report here.
impl Reports for Hub {
    type Admitted = Admitted;
    type Translated = Translated;

    /// The in-order first step for one event: meta events tell the hub about the backend and
    /// stop here; any other event makes sure its account exists and is bound to the link, and
    /// comes back to be translated.
    async fn admit(&self, link: &LinkHandle, ev: v12::Event) -> Option<Admitted> {
        if ev.kind == "meta" {
            if let Some(inspector) = &self.inspector {
                // Heartbeats would flood the feed and say nothing the status does not.
                if ev.detail_type != "heartbeat" {
                    inspector.meta_event(&ev);
                }
            }
            match ev.detail_type.as_str() {
                "connect" => {
                    let claim = ImplementationClaim::from_version(ev.fields.get("version"));
                    tracing::info!(link = link.id, implementation = %claim.implementation, version = %claim.version, "backend connected");
                    self.learn_backend(link.id, claim, InfoSource::Version);
                }
                "status_update" => {
                    if let Some(status) = ev.fields.get("status") {
                        self.apply_status(link, status).await;
                    }
                }
                _ => {}
            }
            return None;
        }
        let self_id = ev.self_id.as_ref()?;
        let entry = self.upsert_account(link, self_id, true, false).await?;
        entry.stats.received();
        Some(Admitted { entry, backend: self.backend_info(link.id), ev })
    }

    /// Translates an admitted event. Backend calls it makes (a received picture's URL) stop
    /// waiting when `give_up` fires, and the event goes on without what they would have added.
    /// `None` when the event is not for bots (the bot's own message) or cannot be translated
    /// (logged).
    ///
    /// While the id store cannot be reached (a Redis restarting, a full disk) the event waits
    /// and is tried again, up to [`STORE_WAIT`] from its first failure: no id is handed out that
    /// was not stored, and nothing is lost to a short outage. The events behind it wait too
    /// (delivery is in order), within the link's bounded intake; past that the link stops
    /// reading, so the backend holds the rest. An event still failing after [`STORE_WAIT`] is
    /// dropped and counted (`store_unavailable`).
    async fn translate(&self, admitted: Admitted, give_up: GiveUp) -> Translated {
        let Admitted { entry, backend, ev } = admitted;
        // Since the first failure (no clock read for an event that has none).
        let mut failing_since: Option<Instant> = None;
        let mut pause = STORE_RETRY_FIRST;
        let (v11, ticket) = loop {
            let (translated, ticket) = self.translate_once(&entry, &backend, &ev, &give_up).await;
            match translated {
                Ok(v11) => {
                    if let Some(since) = failing_since {
                        tracing::info!(event = %ev.name(), id = %ev.id, waited_ms = since.elapsed().as_millis() as u64, "the id store is back; event translated");
                    }
                    break (v11.map(Arc::new), ticket);
                }
                Err(EventError::Id(IdError::Store(error)))
                    if failing_since.is_none_or(|since| since.elapsed() + pause < STORE_WAIT) =>
                {
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        tracing::warn!(%error, event = %ev.name(), id = %ev.id, "the id store is unavailable; the event waits (and the events after it)");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(STORE_RETRY_MAX);
                }
                Err(error @ EventError::Id(IdError::Store(_))) => {
                    let waited_s = failing_since.map_or(0, |since| since.elapsed().as_secs());
                    tracing::error!(%error, event = %ev.name(), id = %ev.id, waited_s, "the id store stayed unavailable; event dropped");
                    entry.lost(1, DropReason::StoreUnavailable);
                    break (None, 0);
                }
                Err(error) => {
                    tracing::warn!(%error, event = %ev.name(), id = %ev.id, "cannot translate event; dropped");
                    entry.lost(1, DropReason::Untranslatable);
                    break (None, 0);
                }
            }
        };
        Translated { entry, v11, ticket }
    }

    fn deliver(&self, done: Translated) {
        if let Some(v11) = done.v11 {
            done.entry.publish(v11);
        }
    }

    fn room(&self, done: &Translated) -> Option<crate::fanout::Room> {
        let v11 = done.v11.as_ref()?;
        let room = done.entry.events.room(|| v11.weight())?;
        let entry = done.entry.clone();
        Some(Box::pin(async move {
            let started = tokio::time::Instant::now();
            room.await;
            entry.stats.waited_for_slow_bot(started.elapsed());
        }))
    }

    fn ticket(&self, done: &Translated) -> u64 {
        done.ticket
    }

    fn on_disk_to(&self) -> u64 {
        self.translator.ids.store().on_disk_to()
    }

    async fn wait_on_disk(&self, ticket: u64) -> Result<(), String> {
        self.translator.ids.store().on_disk(ticket).await.map_err(|error| error.to_string())
    }

    /// The store stopped before the event's ids were on disk (its journal could not be
    /// written): the event never reaches a bot, which would otherwise hold ids the next start
    /// does not know.
    fn undeliverable(&self, done: Translated, why: &str) {
        if done.v11.is_some() {
            tracing::error!(error = why, "the id store stopped before the event's ids were on disk; event dropped");
            done.entry.lost(1, DropReason::StoreUnavailable);
        }
    }

    async fn status(&self, link: &LinkHandle, status: &Value) {
        self.apply_status(link, status).await;
    }

    fn learn(&self, link: LinkId, claim: ImplementationClaim, source: InfoSource) {
        self.learn_backend(link, claim, source);
    }

    fn supported_actions(&self, link: LinkId, actions: std::collections::BTreeSet<String>) {
        self.set_supported_actions(link, actions);
    }

    fn knows(&self, link: LinkId) -> Known {
        let info = self.backend_info(link);
        Known {
            implementation: !info.implementation.is_empty(),
            version: !info.version.is_empty(),
            supported_actions: info.supported.is_some(),
        }
    }

    fn force_profile(&self, link: LinkId, profile: String) {
        self.force_link_profile(link, profile);
    }

    fn upload_mode(&self, link: LinkId, mode: crate::core::media::UploadMode) {
        self.set_link_upload(link, mode);
    }

    fn new_link_id(&self) -> LinkId {
        self.next_link_id()
    }

    fn link_down(&self, link: LinkId) {
        Hub::link_down(self, link);
    }

    fn forget_link(&self, link: LinkId) {
        Hub::forget_link(self, link);
    }
}

impl AccountEntry {
    /// Ends a subscription that did not deliver everything (a reverse-WS connection that closed):
    /// `undelivered` (oldest first) and whatever is still queued in `events` go back to the front
    /// of the backlog, for the next subscriber. Done under the backlog lock, so an event published
    /// meanwhile lands either in `events` (and comes back) or in the backlog. If another
    /// connection is still subscribed it has had these events already: they are only counted.
    pub fn give_back(&self, mut undelivered: Vec<Arc<V11Event>>, events: Option<fanout::Receiver<Arc<V11Event>>>) {
        let mut backlog = self.backlog.lock_unpoisoned();
        if let Some(mut rx) = events {
            loop {
                match rx.try_recv() {
                    Ok(ev) => undelivered.push(ev),
                    Err(fanout::TryRecvError::Lagged(n)) => self.lost(n, DropReason::SlowBot),
                    Err(_) => break,
                }
            }
        }
        if undelivered.is_empty() {
            return;
        }
        if self.events.receiver_count() > 0 {
            self.lost(undelivered.len() as u64, DropReason::Unclaimed);
            return;
        }
        let now = tokio::time::Instant::now();
        for ev in undelivered.into_iter().rev() {
            let weight = ev.weight();
            backlog.push_front((now, ev, weight));
        }
        self.bound_backlog(&mut backlog);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::{MappingSet, Options, Translator};

    fn hub() -> Hub {
        let t = Translator::new(
            Arc::new(MappingSet::embedded().unwrap()),
            Store::Memory(Box::default()),
            Options::default(),
        );
        Hub::new(t, 16)
    }

    fn link(id: LinkId, up: bool) -> LinkHandle {
        let l = LinkHandle::new(id, Duration::from_secs(1), false);
        l.set_connected(up);
        l
    }

    fn me(user_id: &str) -> v12::SelfId {
        v12::SelfId { platform: "qq".into(), user_id: user_id.into() }
    }

    fn chosen(hub: &Hub) -> Result<i64, Option<Vec<i64>>> {
        match hub.select(None) {
            Selection::Ready(e) => Ok(e.account.v11_id),
            Selection::Ambiguous(ids) => Err(Some(ids)),
            Selection::Unknown => Err(None),
        }
    }

    /// Every event's translation is a future moved into its link's queue (and copied whole each
    /// time, however little of it is in use): it must stay small. Rare, large ways (a file URL
    /// asked of the backend, a Redis round trip) are boxed where they are taken; a change that
    /// makes this fail has put one back inline. It was 14.6 KB before.
    #[tokio::test]
    async fn an_events_translation_is_a_small_future() {
        let hub = hub();
        let up = link(1, true);
        let entry = hub.upsert_account(&up, &me("10001"), true, true).await.unwrap();
        let ev = v12::Event::from_value(serde_json::json!({
            "id": "e1", "time": 1, "type": "message", "detail_type": "group", "sub_type": "",
            "self": {"platform": "qq", "user_id": "10001"}, "message_id": "m1", "message": [],
            "alt_message": "", "user_id": "20002", "group_id": "30003",
        }))
        .unwrap();
        let admitted = Admitted { entry, backend: hub.backend_info(1), ev };
        let translation = hub.translate(admitted, GiveUp::never());
        let size = std::mem::size_of_val(&translation);
        assert!(size <= 6 * 1024, "an event's translation is a future of {size} bytes");
        let v11 = translation.await.v11;
        assert!(v11.is_some(), "and it translates");
    }

    /// One stray event for an account the backend never listed must not make every connection
    /// without self_id ambiguous: the backend's own list decides.
    #[tokio::test]
    async fn an_account_seen_only_in_an_event_does_not_make_connections_ambiguous() {
        let hub = hub();
        let up = link(1, true);
        hub.upsert_account(&up, &me("10001"), true, true).await.unwrap();
        hub.upsert_account(&up, &me("20002"), true, false).await.unwrap();
        assert_eq!(chosen(&hub), Ok(10001), "the listed online account wins");
        assert!(matches!(hub.select(Some(20002)), Selection::Ready(_)), "the stray one is still reachable by id");
        // Listed but offline still beats seen-only-in-events.
        hub.upsert_account(&up, &me("10001"), false, true).await.unwrap();
        assert_eq!(chosen(&hub), Ok(10001));
        // Two accounts the backend lists online are a real choice.
        hub.upsert_account(&up, &me("30003"), true, true).await.unwrap();
        assert_eq!(chosen(&hub), Ok(30003), "the only listed online one");
        hub.upsert_account(&up, &me("10001"), true, true).await.unwrap();
        assert_eq!(chosen(&hub), Err(Some(vec![10001, 30003])));
    }

    /// Without any status from the backend, accounts seen in events decide as before, and one
    /// that went offline and quiet stops counting.
    #[tokio::test(start_paused = true)]
    async fn an_unlisted_account_offline_and_quiet_is_forgotten() {
        let hub = hub();
        let (live, dead) = (link(1, true), link(2, true));
        hub.upsert_account(&live, &me("10001"), true, false).await.unwrap();
        hub.upsert_account(&dead, &me("20002"), true, false).await.unwrap();
        assert_eq!(chosen(&hub), Err(Some(vec![10001, 20002])), "no list: both count");
        dead.set_connected(false);
        hub.link_down(dead.id);
        assert_eq!(chosen(&hub), Err(Some(vec![10001, 20002])), "offline but not yet quiet");
        tokio::time::advance(UNLISTED_QUIET).await;
        assert_eq!(chosen(&hub), Ok(10001), "offline and quiet: forgotten");
        // Many junk accounts: the forgotten ones nobody holds leave the registry.
        for n in 0..UNLISTED_MAX + 1 {
            hub.upsert_account(&dead, &me(&format!("{}", 50000 + n)), false, false).await.unwrap();
        }
        tokio::time::advance(UNLISTED_QUIET).await;
        hub.upsert_account(&live, &me("90009"), true, false).await.unwrap();
        let left = hub.accounts().by_v11.len();
        assert_eq!(left, 2, "only the live accounts are left");
        assert_eq!(hub.accounts().by_self.len(), 2);
    }

    /// Events kept while no bot is connected go to the next connection; those kept too long are
    /// counted as dropped, not lost without a trace.
    #[tokio::test(start_paused = true)]
    async fn kept_events_go_to_the_next_connection_or_are_counted_when_too_old() {
        let hub = hub();
        let entry = hub.upsert_account(&link(1, true), &me("10001"), true, true).await.unwrap();
        let event = |n: i64| Arc::new(V11Event::new(10001, serde_json::json!({"n": n}).as_object().unwrap().clone()));
        entry.publish(event(1));
        tokio::time::advance(BACKLOG_AGE + Duration::from_secs(1)).await;
        entry.publish(event(2));
        entry.publish(event(3));
        // Publishing drops the expired one from the front.
        assert_eq!(entry.undelivered.load(Ordering::Relaxed), 1);
        tokio::time::advance(BACKLOG_AGE - Duration::from_secs(1)).await;
        entry.publish(event(4));
        tokio::time::advance(Duration::from_secs(2)).await;
        // Subscribing drops 2 and 3 (now too old) and counts them; 4 is handed over.
        let (kept, _rx) = entry.subscribe();
        assert_eq!(kept.iter().map(|e| e.to_value(Default::default())["n"].as_i64().unwrap()).collect::<Vec<_>>(), [4]);
        assert_eq!(entry.undelivered.load(Ordering::Relaxed), 3);
    }

    /// Kept events are bounded in bytes as well as in count: large ones push the oldest out
    /// (counted), and one larger than the whole bound is still kept, alone.
    #[tokio::test]
    async fn kept_events_are_bounded_in_bytes() {
        let hub = hub();
        let entry = hub.upsert_account(&link(1, true), &me("10001"), true, true).await.unwrap();
        let event = |n: i64, len: usize| {
            let body = serde_json::json!({"n": n, "text": "x".repeat(len)});
            Arc::new(V11Event::new(10001, body.as_object().unwrap().clone()))
        };
        // Each weighs about an eighth of the bound (its text twice).
        for n in 0..20 {
            entry.publish(event(n, BACKLOG_BYTES / 16));
        }
        let numbers = |kept: &[Arc<V11Event>]| {
            kept.iter().map(|e| e.to_value(Default::default())["n"].as_i64().unwrap()).collect::<Vec<_>>()
        };
        {
            let backlog = entry.backlog.lock_unpoisoned();
            let bytes: usize = backlog.kept.iter().map(|k| k.2).sum();
            assert_eq!(bytes, backlog.bytes);
            assert!(bytes <= BACKLOG_BYTES, "{bytes} bytes kept");
            assert!(backlog.len() < 9, "{} events kept", backlog.len());
        }
        let dropped = entry.undelivered.load(Ordering::Relaxed);
        entry.publish(event(20, BACKLOG_BYTES));
        let (kept, rx) = entry.subscribe();
        assert_eq!(numbers(&kept), [20], "the newest alone");
        assert_eq!(entry.undelivered.load(Ordering::Relaxed), 20, "every other one counted ({dropped} before)");
        drop(rx);
    }

    /// What all accounts keep is bounded together, in bytes and in count: a backend that names a
    /// new account in every event does not get each of them kept for a minute. What goes is
    /// counted, and what a connection takes leaves the total.
    #[tokio::test]
    async fn kept_events_of_all_accounts_are_bounded_together() {
        let hub = hub();
        let up = link(1, true);
        let event = |n: usize, len: usize| {
            let body = serde_json::json!({"n": n, "text": "x".repeat(len)});
            Arc::new(V11Event::new(10001, body.as_object().unwrap().clone()))
        };
        let total =
            |hub: &Hub| (hub.kept_total.events.load(Ordering::Relaxed), hub.kept_total.bytes.load(Ordering::Relaxed));
        // Bytes: 100 accounts with an event of 1 MiB each (2 MiB by weight), 200 MiB in all.
        let mut entries = Vec::new();
        for n in 0..100 {
            let entry = hub.upsert_account(&up, &me(&format!("{}", 10_000 + n)), true, true).await.unwrap();
            entry.publish(event(n, 1 << 20));
            assert!(total(&hub).1 <= KEPT_ALL_BYTES, "{:?} kept after {n}", total(&hub));
            entries.push(entry);
        }
        let kept: usize = entries.iter().map(|e| e.backlog.lock_unpoisoned().len()).sum();
        let lost: u64 = entries.iter().map(|e| e.undelivered.load(Ordering::Relaxed)).sum();
        assert!(kept < 70, "{kept} events of 2 MiB kept");
        assert_eq!((kept, lost), (total(&hub).0, 100 - kept as u64), "every event kept or counted");
        // A connection takes what its account kept: the total lets go of it.
        let (taken, _rx) = entries[0].subscribe();
        assert_eq!(taken.len(), 1, "the first account kept its event");
        assert_eq!(total(&hub).0, kept - 1);
        for entry in &entries {
            drop(entry.subscribe());
        }
        assert_eq!(total(&hub), (0, 0));
        // Count: 100 more accounts with 200 small events each, each within its own 256.
        for n in 0..100 {
            let entry = hub.upsert_account(&up, &me(&format!("{}", 20_000 + n)), true, true).await.unwrap();
            for m in 0..200 {
                entry.publish(event(m, 10));
            }
            assert!(total(&hub).0 <= KEPT_ALL_MAX, "{:?} kept", total(&hub));
        }
        assert!(total(&hub).0 > KEPT_ALL_MAX - 200, "{:?}: the total is used, not just each account's", total(&hub));
    }

    /// Past [`UNLISTED_LIMIT`] accounts the backend never listed and that are not forgotten, an
    /// event naming yet another is dropped; listed accounts still come, and once the others are
    /// quiet and offline a new one does too.
    #[tokio::test(start_paused = true)]
    async fn past_the_limit_a_new_unlisted_account_is_refused() {
        let hub = hub();
        let junk = link(1, true);
        for n in 0..UNLISTED_LIMIT {
            hub.upsert_account(&junk, &me(&format!("{}", 100_000 + n)), true, false).await.unwrap();
        }
        assert!(hub.upsert_account(&junk, &me("99"), true, false).await.is_none(), "one too many");
        assert_eq!(hub.accounts().by_self.len(), UNLISTED_LIMIT);
        assert!(hub.upsert_account(&junk, &me("100000"), true, false).await.is_some(), "a known one still comes");
        assert!(hub.upsert_account(&link(2, true), &me("10001"), true, true).await.is_some(), "a listed one comes");
        junk.set_connected(false);
        hub.link_down(junk.id);
        tokio::time::advance(UNLISTED_QUIET).await;
        assert!(hub.upsert_account(&link(3, true), &me("99"), true, false).await.is_some(), "the quiet ones forgotten");
        assert_eq!(hub.accounts().by_self.len(), 2);
    }

    #[tokio::test]
    async fn a_late_event_from_a_dead_link_does_not_take_the_account_from_a_live_one() {
        let hub = hub();
        let me = v12::SelfId { platform: "qq".into(), user_id: "10001".into() };
        let (old, new) = (link(1, true), link(2, true));
        hub.upsert_account(&old, &me, true, true).await.unwrap();
        let entry = hub.upsert_account(&new, &me, true, true).await.unwrap();
        assert_eq!(entry.link().id, 2, "a reconnect moves the account to the new link");
        old.set_connected(false);
        hub.upsert_account(&old, &me, true, false).await.unwrap();
        assert_eq!(entry.link().id, 2, "the dead link's late event is ignored for routing");
        hub.link_down(old.id);
        assert!(entry.is_online(), "the account stays online on its live link");
        new.set_connected(false);
        hub.link_down(new.id);
        assert!(!entry.is_online());
    }
}
