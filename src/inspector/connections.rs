//! The v11 side as the status shows it: every open bot connection (forward and reverse
//! WebSocket sessions, HTTP POST targets) and every HTTP API endpoint, each registered by the
//! code that serves it and held by a [`Registered`] guard, so a closed connection leaves the
//! list when its guard drops. At most [`MAX_TRACKED`] are listed; more are counted, not kept.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::sync::LockUnpoisoned;

/// Connections listed at once (the forward WebSocket server alone serves 1024): a slot is
/// freed when its connection closes.
pub const MAX_TRACKED: usize = 4096;

/// One open connection or served endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    /// Where it is served or dialled: `ws 127.0.0.1:6700`, a webhook URL without its query.
    pub endpoint: String,
    /// `ws`, `ws_reverse`, `http` (API server) or `http_post`.
    pub transport: &'static str,
    /// `universal`, `api` or `event`.
    pub role: &'static str,
    /// The bot's address when it connected to us, else what we dial.
    pub peer: String,
    /// The account it serves, once known.
    pub self_id: Option<i64>,
    /// Unix milliseconds when it opened.
    pub since: u64,
}

/// The registry.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<BTreeMap<u64, Connection>>,
    next: AtomicU64,
    /// Registrations refused because [`MAX_TRACKED`] were listed.
    untracked: AtomicU64,
}

impl Connections {
    /// Lists `conn` until the returned slot is freed; `None` when the list is full.
    fn add(&self, conn: Connection) -> Option<u64> {
        let mut open = self.open.lock_unpoisoned();
        if open.len() >= MAX_TRACKED {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        open.insert(id, conn);
        Some(id)
    }

    fn remove(&self, id: u64) {
        self.open.lock_unpoisoned().remove(&id);
    }

    fn set_self_id(&self, id: u64, self_id: i64) {
        if let Some(conn) = self.open.lock_unpoisoned().get_mut(&id) {
            conn.self_id = Some(self_id);
        }
    }

    /// Every listed connection, oldest first, and how many were not listed for lack of room.
    pub fn now(&self) -> (Vec<Connection>, u64) {
        let open = self.open.lock_unpoisoned().values().cloned().collect();
        (open, self.untracked.load(Ordering::Relaxed))
    }
}

/// A listed connection; dropping it takes the connection off the list.
#[derive(Debug)]
pub struct Registered {
    connections: Arc<Connections>,
    slot: Option<u64>,
}

impl Registered {
    pub(super) fn new(connections: Arc<Connections>, conn: Connection) -> Registered {
        let slot = connections.add(conn);
        Registered { connections, slot }
    }

    /// The connection now serves this account (a forward WebSocket learns it after connecting).
    pub fn set_self_id(&self, self_id: i64) {
        if let Some(slot) = self.slot {
            self.connections.set_self_id(slot, self_id);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            self.connections.remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        Connection {
            endpoint: "ws 127.0.0.1:6700".into(),
            transport: "ws",
            role: "universal",
            peer: "127.0.0.1:50000".into(),
            self_id: None,
            since: 1,
        }
    }

    #[test]
    fn a_dropped_guard_frees_its_slot_and_the_list_is_bounded() {
        let all = Arc::new(Connections::default());
        let first = Registered::new(all.clone(), conn());
        first.set_self_id(42);
        assert_eq!(all.now().0[0].self_id, Some(42));
        drop(first);
        assert!(all.now().0.is_empty());
        let held: Vec<_> = (0..MAX_TRACKED + 3).map(|_| Registered::new(all.clone(), conn())).collect();
        assert_eq!(all.now().0.len(), MAX_TRACKED);
        assert_eq!(all.now().1, 3);
        drop(held);
        assert!(all.now().0.is_empty());
    }
}
