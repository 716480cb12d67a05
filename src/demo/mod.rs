//! The playground (`--demo`): a built-in OneBot v12 implementation with one bot account, a few
//! friends and groups, and a chat page where a person plays the chat platform.
//!
//! - [`world`]: who is there, what was said, the files sent — synchronous and unit-tested.
//! - [`actions`]: the v12 answers to what the bridge asks.
//! - [`link`]: the implementation's transport — it dials the bridge's reverse WebSocket on
//!   loopback with the link's token, exactly as an outside implementation would, so the bot on
//!   the other side of the bridge cannot tell.
//! - [`page`]: the chat page and its HTTP API on the admin listener (`/playground/…`).
//!
//! The [`Playground`] ties them: one world behind a lock, a feed of what the page should show,
//! and a channel of the events the page's people cause, which the live connection forwards.

pub mod actions;
pub mod link;
pub mod page;
pub mod world;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use crate::admin::sse_message;
use crate::sync::LockUnpoisoned;
use world::World;

/// Feed items the page's streams hold before a slow reader lags (then it reloads the snapshot).
pub const FEED_CAPACITY: usize = 256;
/// Events for the bridge held before the connection forwards them. Events caused while no
/// connection is up are not kept: the bot was offline, as on a real platform.
pub const EVENT_CAPACITY: usize = 256;

/// The playground's world and chat page.
pub struct Playground {
    /// Where the page and files are served, e.g. `http://127.0.0.1:5800/playground`; empty when
    /// there is no admin listener.
    base: String,
    world: Mutex<World>,
    /// Feed items for the page, each one SSE message.
    feed: broadcast::Sender<Bytes>,
    /// v12 events (JSON text) for the bridge.
    events: broadcast::Sender<Arc<str>>,
    /// Whether the link to the bridge is up.
    connected: AtomicBool,
}

impl std::fmt::Debug for Playground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playground").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Playground {
    /// `base` is the URL the playground's pages and files are reached at, e.g.
    /// `http://127.0.0.1:5800/playground` (files at `{base}/files/{file_id}`).
    pub fn new(base: String) -> Arc<Playground> {
        Arc::new(Playground {
            base: base.trim_end_matches('/').to_owned(),
            world: Mutex::new(World::new()),
            feed: broadcast::channel(FEED_CAPACITY).0,
            events: broadcast::channel(EVENT_CAPACITY).0,
            connected: AtomicBool::new(false),
        })
    }

    /// Runs `f` on the world; what it returns for the page is published, in the world's order
    /// (under the lock), and its events go to the bridge.
    fn with_world<T>(&self, f: impl FnOnce(&mut World, &mut Vec<Value>, &mut Vec<Value>) -> T) -> T {
        let mut world = self.world.lock_unpoisoned();
        let (mut feed, mut events) = (Vec::new(), Vec::new());
        let result = f(&mut world, &mut feed, &mut events);
        for item in feed {
            // No page open is fine.
            let _ = self.feed.send(sse_message(&item.to_string()));
        }
        for ev in events {
            let _ = self.events.send(Arc::from(ev.to_string()));
        }
        result
    }

    /// Answers one v12 request frame from the bridge; the response's JSON text.
    pub fn answer(&self, frame: &str) -> String {
        self.with_world(|world, feed, events| {
            let out = actions::answer(world, &self.base, frame, now());
            feed.extend(out.feed);
            events.extend(out.events);
            out.response.to_string()
        })
    }

    /// A snapshot for a new page stream and the live feed after it, with nothing lost between.
    pub fn subscribe(&self) -> (Bytes, broadcast::Receiver<Bytes>) {
        let world = self.world.lock_unpoisoned();
        let live = self.feed.subscribe();
        let mut snapshot = world.snapshot();
        snapshot["bot_connected"] = self.connected.load(Ordering::Relaxed).into();
        (sse_message(&snapshot.to_string()), live)
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        let item = serde_json::json!({"type": "link", "bot_connected": up});
        let _ = self.feed.send(sse_message(&item.to_string()));
    }
}

/// Now, in v12's seconds (fractional).
pub fn now() -> f64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

/// Dials the bridge's reverse WebSocket at `url` with `token` and plays a OneBot v12
/// implementation until `shutdown`.
pub async fn run(playground: Arc<Playground>, url: String, token: String, shutdown: watch::Receiver<bool>) {
    link::run(playground, url, token, shutdown).await
}
