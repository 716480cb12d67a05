//! The event intake of one socket link (forward or reverse WebSocket): events read from the link
//! are translated several at a time and delivered to the bots in the order they were read.
//!
//! Each event takes three steps:
//! - **admit**, in order: parse, drop a duplicate `id`, let meta events tell the hub about the
//!   backend, make sure the account exists;
//! - **translate**, up to [`IN_FLIGHT`] events at once: ids (on the disk store the events in
//!   flight share one durable commit) and received media URLs (which may ask the backend);
//! - **deliver**, in order: an event is published when it and every event read before it are
//!   translated.
//!
//! The queue in front holds [`QUEUE`] events. When it is full the link's reader waits
//! (backpressure toward the backend), and while it waits it reads nothing: an answer the backend
//! sent after those events cannot arrive. So backend calls made by translations stop waiting
//! while the queue is full ([`GiveUp`]) and their events go on without what the answer would have
//! added (a received picture gets the bridge's own URL, or none and keeps its `file`). A burst of
//! pictures therefore slows the link down to the backend's pace instead of stalling it on the
//! action timeout.

use std::sync::Arc;

use futures_util::stream::{FuturesOrdered, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::core::event::V11Event;
use crate::core::v12;
use crate::hub::{AccountEntry, Admitted, GiveUp, GiveUpSignal, Hub};
use crate::v12::codec::Budget;
use crate::v12::ws_client::RecentIds;
use crate::v12::LinkHandle;

/// Events read from one connection and waiting to be admitted; when full, the reader waits.
pub const QUEUE: usize = 1024;
/// Events translated at once, per link. Enough for a durable commit to carry a few hundred ids
/// and for a few hundred picture URLs to be asked for together; small next to [`QUEUE`].
pub const IN_FLIGHT: usize = 256;

/// The reader's end of a link's intake.
#[derive(Debug)]
pub struct Intake {
    tx: mpsc::Sender<(Value, Budget)>,
    give_up: Arc<GiveUpSignal>,
}

impl Intake {
    /// Starts the worker that admits, translates and delivers the link's events. It ends when
    /// the [`Intake`] is dropped and every event pushed before has been delivered.
    pub fn start(link: LinkHandle, hub: Arc<Hub>, recent: Arc<RecentIds>) -> (Intake, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let give_up = Arc::new(GiveUpSignal::default());
        let worker = tokio::spawn(work(link, hub, recent, rx, give_up.clone()).in_current_span());
        (Intake { tx, give_up }, worker)
    }

    /// Queues one event value with the parse budget it holds until it is translated; waits while
    /// the queue is full, and meanwhile tells translations not to wait for the backend.
    pub async fn push(&self, value: Value, budget: Budget) {
        match self.tx.try_send((value, budget)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(value)) => {
                self.give_up.set(true);
                let _ = self.tx.send(value).await;
                self.give_up.set(false);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("the link's event worker stopped; event dropped");
            }
        }
    }
}

async fn work(
    link: LinkHandle,
    hub: Arc<Hub>,
    recent: Arc<RecentIds>,
    mut queued: mpsc::Receiver<(Value, Budget)>,
    give_up: Arc<GiveUpSignal>,
) {
    let hub = &*hub;
    let mut translating = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = translating.next() => deliver(done),
            value = queued.recv(), if translating.len() < IN_FLIGHT => {
                let Some((value, budget)) = value else { break };
                if let Some(admitted) = admit(&link, hub, &recent, value).await {
                    translating.push_back(translate(hub, admitted, give_up.subscribe(), budget));
                }
            }
        }
    }
    while let Some(done) = translating.next().await {
        deliver(done);
    }
}

/// Parses and de-duplicates one event and hands it to the hub's in-order step.
async fn admit(link: &LinkHandle, hub: &Hub, recent: &RecentIds, value: Value) -> Option<Admitted> {
    let ev = match v12::Event::from_value(value) {
        Ok(ev) => ev,
        Err(error) => {
            tracing::warn!(%error, "malformed event from backend; ignored");
            return None;
        }
    };
    if !recent.insert(&ev.id) {
        tracing::debug!(id = %ev.id, "duplicate event dropped");
        return None;
    }
    hub.admit(link, ev).await
}

type Translated = (Arc<AccountEntry>, Option<Arc<V11Event>>);

async fn translate(hub: &Hub, admitted: Admitted, give_up: GiveUp, budget: Budget) -> Translated {
    let v11 = hub.translate(&admitted, &give_up).await;
    drop(budget);
    (admitted.entry, v11)
}

fn deliver((entry, v11): Translated) {
    if let Some(v11) = v11 {
        entry.publish(v11);
    }
}
