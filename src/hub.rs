//! The hub joins the two sides per bot account.
//!
//! Backend links report what they receive here; each v12 account (`self`) becomes an
//! [`AccountEntry`] with its own v11 self_id, its own event fan-out and the link its actions go
//! to. v11 endpoints pick an account, subscribe to its events and send it actions. The fan-out
//! is a bounded broadcast: a v11 connection that falls behind loses the oldest events, and the
//! loss is counted and logged (never silent).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::core::event::{status_bots, V11Event};
use crate::core::ids::MemoryIdStore;
use crate::core::{action::ActionContext, v11, v12, Account, BackendInfo, CallError, Translator, V12Caller};
use crate::net::unix_now;
use crate::v12::{LinkHandle, LinkId};

/// The store behind ids in this build.
pub type Store = MemoryIdStore;

/// One bot account, as both sides see it.
#[derive(Debug)]
pub struct AccountEntry {
    pub account: Account,
    link: RwLock<LinkHandle>,
    online: AtomicBool,
    events: broadcast::Sender<Arc<V11Event>>,
    /// Events that found no v11 connection to go to.
    pub undelivered: AtomicU64,
}

impl AccountEntry {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<V11Event>> {
        self.events.subscribe()
    }

    pub fn link(&self) -> LinkHandle {
        self.link.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire) && self.link().is_connected()
    }
}

/// Sends an account's actions over its current link.
pub struct AccountCaller<'a>(pub &'a AccountEntry);

impl V12Caller for AccountCaller<'_> {
    async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
        self.0.link().call(request).await
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

#[derive(Debug)]
pub struct Hub {
    pub translator: Translator<Store>,
    accounts: RwLock<Accounts>,
    changed: watch::Sender<u64>,
    backends: RwLock<HashMap<LinkId, BackendInfo>>,
    event_queue: usize,
}

impl Hub {
    pub fn new(translator: Translator<Store>, event_queue: usize) -> Hub {
        Hub {
            translator,
            accounts: RwLock::default(),
            changed: watch::channel(0).0,
            backends: RwLock::default(),
            event_queue: event_queue.max(1),
        }
    }

    fn accounts(&self) -> std::sync::RwLockReadGuard<'_, Accounts> {
        self.accounts.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Picks the account for a v11 endpoint: the one asked for, else the only one there is.
    pub fn select(&self, want: Option<i64>) -> Selection {
        let accounts = self.accounts();
        match want {
            Some(id) => accounts.by_v11.get(&id).cloned().map_or(Selection::Unknown, Selection::Ready),
            None => match accounts.by_v11.len() {
                0 => Selection::Unknown,
                1 => accounts.by_v11.values().next().cloned().map_or(Selection::Unknown, Selection::Ready),
                _ => {
                    let mut ids: Vec<i64> = accounts.by_v11.keys().copied().collect();
                    ids.sort_unstable();
                    Selection::Ambiguous(ids)
                }
            },
        }
    }

    /// Waits until [`Hub::select`] gives an account (or an ambiguity to report).
    pub async fn wait_for_account(&self, want: Option<i64>) -> Result<Arc<AccountEntry>, Vec<i64>> {
        let mut changed = self.changed.subscribe();
        loop {
            match self.select(want) {
                Selection::Ready(entry) => return Ok(entry),
                Selection::Ambiguous(ids) => return Err(ids),
                Selection::Unknown => {
                    if changed.changed().await.is_err() {
                        return Err(Vec::new());
                    }
                }
            }
        }
    }

    pub fn backend_info(&self, link: LinkId) -> BackendInfo {
        self.backends.read().unwrap_or_else(|p| p.into_inner()).get(&link).cloned().unwrap_or_default()
    }

    pub fn set_backend_info(&self, link: LinkId, info: BackendInfo) {
        self.backends.write().unwrap_or_else(|p| p.into_inner()).insert(link, info);
    }

    /// Makes sure an account exists, bound to this link, and records whether it is online.
    pub async fn upsert_account(
        &self,
        link: &LinkHandle,
        self_id: &v12::SelfId,
        online: bool,
    ) -> Option<Arc<AccountEntry>> {
        if let Some(entry) = self.accounts().by_self.get(self_id).cloned() {
            *entry.link.write().unwrap_or_else(|p| p.into_inner()) = link.clone();
            let was = entry.online.swap(online, Ordering::AcqRel);
            if was != online {
                tracing::info!(self_id = entry.account.v11_id, online, "bot account status changed");
                self.changed.send_modify(|n| *n += 1);
            }
            return Some(entry);
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
            events: broadcast::channel(self.event_queue).0,
            undelivered: AtomicU64::new(0),
        });
        {
            let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
            let entry = accounts.by_self.entry(self_id.clone()).or_insert_with(|| entry.clone()).clone();
            accounts.by_v11.insert(account.v11_id, entry);
        }
        tracing::info!(self_id = account.v11_id, platform = %self_id.platform, user_id = %self_id.user_id, online, "bot account appeared");
        self.changed.send_modify(|n| *n += 1);
        self.accounts().by_self.get(self_id).cloned()
    }

    /// A link went down: its accounts are offline until it (or another link) brings them back.
    pub fn link_down(&self, link: LinkId) {
        let accounts = self.accounts();
        for entry in accounts.by_self.values() {
            if entry.link().id == link && entry.online.swap(false, Ordering::AcqRel) {
                tracing::info!(self_id = entry.account.v11_id, "bot account offline: backend link down");
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Applies a `get_status` answer or a `status_update` event.
    pub async fn apply_status(&self, link: &LinkHandle, status: &Value) {
        for (self_id, online) in status_bots(status) {
            self.upsert_account(link, &self_id, online).await;
        }
    }

    /// One event from a backend link.
    pub async fn on_backend_event(&self, link: &LinkHandle, ev: v12::Event) {
        if ev.kind == "meta" {
            match ev.detail_type.as_str() {
                "connect" => {
                    let version = ev.fields.get("version");
                    let text = |k: &str| version.and_then(|v| v.get(k)).and_then(v12::id_string).unwrap_or_default();
                    let info = BackendInfo {
                        implementation: text("impl"),
                        version: text("version"),
                        onebot_version: text("onebot_version"),
                    };
                    tracing::info!(link = link.id, implementation = %info.implementation, version = %info.version, "backend connected");
                    self.set_backend_info(link.id, info);
                }
                "status_update" => {
                    if let Some(status) = ev.fields.get("status") {
                        self.apply_status(link, status).await;
                    }
                }
                _ => {}
            }
            return;
        }
        let Some(self_id) = ev.self_id.clone() else { return };
        let Some(entry) = self.upsert_account(link, &self_id, true).await else { return };
        match self.translator.to_v11_event(&entry.account, &ev, unix_now()).await {
            Ok(Some(v11)) => {
                if entry.events.send(Arc::new(v11)).is_err() {
                    entry.undelivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(self_id = entry.account.v11_id, event = %ev.name(), "no v11 connection for this event");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, event = %ev.name(), id = %ev.id, "cannot translate event; dropped");
            }
        }
    }

    /// Runs one v11 action for an account; the answer carries the request's echo.
    pub async fn handle_action(&self, entry: &AccountEntry, req: v11::Request) -> v11::Response {
        let echo = req.echo.clone();
        let backend = self.backend_info(entry.link().id);
        let ctx = ActionContext { account: &entry.account, backend: &backend };
        self.translator.handle_action(ctx, &AccountCaller(entry), req).await.with_echo(echo)
    }

    /// go-cqhttp's status object for heartbeats.
    pub fn status_of(&self, entry: &AccountEntry) -> Value {
        let online = entry.is_online();
        crate::core::event::v11_status(
            online,
            online,
            serde_json::json!({
                "packet_received": 0, "packet_sent": 0, "packet_lost": 0, "message_received": 0,
                "message_sent": 0, "disconnect_times": 0, "lost_times": 0, "last_message_time": 0,
            }),
        )
    }
}
