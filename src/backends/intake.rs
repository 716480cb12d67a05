//! The event intake of one socket link (forward or reverse WebSocket): events read from the link
//! are translated several at a time and delivered to the bots in the order they were read.
//!
//! Each event takes three steps:
//! - **admit**, in order: parse, drop a duplicate `id`, let meta events tell the hub about the
//!   backend, make sure the account exists;
//! - **translate**, up to [`IN_FLIGHT`] events at once (those translated and waiting for the
//!   journal included): ids (on the disk store given before they are on disk; the ids decided
//!   in one poll of the translations wake the journal's syncer once, [`sharing_syncs`]) and
//!   received media URLs (which may ask the backend: the requests of the translations in
//!   flight go out together, in one flush once nothing else is ready, [`deferring_flushes`]).
//!   A translation is polled once as it starts, and most finish there (ids at hand, nothing
//!   asked of the backend);
//! - **deliver**, in order (`Outbox`): an event is published when its ids are on disk and
//!   every event read before it has been published. Only the first event waiting for the
//!   journal is waited for: the events one sync carried go together.
//!
//! The queue in front holds [`QUEUE`] events. When it is full the link's reader waits
//! (backpressure toward the backend), and while it waits it reads nothing: an answer the backend
//! sent after those events cannot arrive. So backend calls made by translations stop waiting
//! (and none is made) while the queue is full ([`GiveUp`](crate::backends::link::GiveUp)) and their events go on without what the answer would have
//! added (a received picture gets the bridge's own URL, or none and keeps its `file`). A burst of
//! pictures therefore slows the link down to the backend's pace instead of stalling it on the
//! action timeout.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backends::link::{GiveUpSignal, LinkHandle, RecentIds};
use crate::backends::v12::codec::Budget;
use crate::backends::writer::deferring_flushes;
use crate::backends::Reports;
use crate::core::v12;
use crate::store::sharing_syncs;
use crate::sync::LockUnpoisoned;

/// Events read from one connection and waiting to be admitted; when full, the reader waits.
pub const QUEUE: usize = 1024;
/// Events translated at once, per link. An event holds its slot while it translates and then
/// waits for the journal sync its ids share with the others (a few hundred µs): enough for a
/// sync to carry every event of a burst and for a hundred picture URLs to be asked for
/// together. Each translation in flight is about 15 KiB of state; 256 of them raised the disk
/// store's peak RSS by 7 MiB and gave no more events a second.
pub const IN_FLIGHT: usize = 128;

/// Events admitted together, at most: a queue shorter than this is admitted whole (see `work`).
const CLUMP: usize = 16;

/// How often a link says, at most, that its queue is full and translations stop waiting.
const SAY_FULL_EVERY: Duration = Duration::from_secs(60);

/// The reader's end of a link's intake.
#[derive(Debug)]
pub struct Intake {
    tx: mpsc::Sender<(v12::Event, Budget)>,
    give_up: Arc<GiveUpSignal>,
    /// When the link last said that its queue was full.
    said_full: std::sync::Mutex<Option<Instant>>,
}

impl Intake {
    /// Starts the worker that admits, translates and delivers the link's events. It ends when
    /// the [`Intake`] is dropped and every event pushed before has been delivered.
    pub fn start<R: Reports>(link: LinkHandle, reports: Arc<R>, recent: Arc<RecentIds>) -> (Intake, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let give_up = Arc::new(GiveUpSignal::default());
        let worker = tokio::spawn(work(link, reports, recent, rx, give_up.clone()).in_current_span());
        (Intake { tx, give_up, said_full: std::sync::Mutex::new(None) }, worker)
    }

    /// Queues one event with the parse budget it holds until it is translated; waits while the
    /// queue is full, and meanwhile tells translations not to wait for the backend.
    pub async fn push(&self, ev: v12::Event, budget: Budget) {
        match self.tx.try_send((ev, budget)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(value)) => {
                self.say_full();
                self.give_up.set(true);
                let _ = self.tx.send(value).await;
                self.give_up.set(false);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("the link's event worker stopped; event dropped");
            }
        }
    }

    /// Says, at most once every [`SAY_FULL_EVERY`], that the queue is full: events come faster
    /// than they are translated, and backend calls of translations (pictures' URLs) stop waiting.
    fn say_full(&self) {
        let mut said = self.said_full.lock_unpoisoned();
        if said.is_some_and(|at| at.elapsed() < SAY_FULL_EVERY) {
            return;
        }
        *said = Some(Instant::now());
        tracing::info!(
            queued = QUEUE,
            "events come faster than they are translated: the link reads on as its queue drains, \
             and translations do not wait for backend answers meanwhile (pictures go without the \
             backend's URL; onebot_bridge_event_calls_given_up_total counts them)"
        );
    }
}

async fn work<R: Reports>(
    link: LinkHandle,
    reports: Arc<R>,
    recent: Arc<RecentIds>,
    mut queued: mpsc::Receiver<(v12::Event, Budget)>,
    give_up: Arc<GiveUpSignal>,
) {
    let reports = &*reports;
    let mut translating = FuturesOrdered::new();
    let mut outbox = Outbox::new(reports);
    // Ready when the translations' backend requests are buffered and not yet sent: polled last,
    // so they go in one flush once nothing else is ready. Only polling the translations (this
    // task, just before) buffers them, so it needs no waker of its own.
    let owed = || std::future::poll_fn(|_| if link.owes_flush() { Poll::Ready(()) } else { Poll::Pending });
    // The flush under way. It runs beside the rest: a backend that reads nothing until it has
    // written its events must still see them read, translated and delivered meanwhile.
    let mut flushing: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
    loop {
        tokio::select! {
            biased;
            synced = outbox.synced(), if outbox.waits() => outbox.release(synced),
            Some(done) = sharing_syncs(deferring_flushes(translating.next())) => outbox.put(done),
            () = async {
                match flushing.as_mut() {
                    Some(flush) => flush.await,
                    None => std::future::pending().await,
                }
            }, if flushing.is_some() => flushing = None,
            value = queued.recv(), if translating.len() + outbox.len() < IN_FLIGHT => {
                let Some(first) = value else { break };
                // A few events read together (a steady rate's events come in such clumps) are
                // admitted together: their translations then start in one poll, and their ids
                // share one journal sync (`sharing_syncs`) instead of the first having a sync of
                // its own and the rest waiting for it to end before theirs begins. A longer queue
                // is a backlog: taken one event at a time, as the translations before them
                // finish. (Runs of a backlog, taken with `try_recv`, count nothing against the
                // task's budget: it then ran for thousands of events a poll while the bots'
                // sessions it woke, behind it on this thread, could not write them, and their
                // queues overflowed. Counted one by one, runs cost more CPU than this.)
                let room = IN_FLIGHT - 1 - translating.len() - outbox.len();
                let rest = if queued.len() < CLUMP { queued.len().min(room) } else { 0 };
                let clump = std::iter::once(first).chain(std::iter::from_fn(|| queued.try_recv().ok()).take(rest));
                // Each translation is polled once as it starts, in the scopes the queue's polls
                // have: most finish there (their ids decided, nothing asked of the backend), and
                // one with nothing before it goes straight to the outbox.
                sharing_syncs(deferring_flushes(async {
                    for (ev, budget) in clump {
                        let Some(admitted) = admit(&link, reports, &recent, ev).await else { continue };
                        let mut translation = Box::pin(reports.translate(admitted, give_up.subscribe()));
                        let started = std::future::poll_fn(|cx| Poll::Ready(translation.as_mut().poll(cx))).await;
                        match started {
                            Poll::Ready(done) if translating.is_empty() => outbox.put(done),
                            Poll::Ready(done) => translating.push_back(Either::Right(std::future::ready(done))),
                            // Mapped rather than wrapped in an `async` block, which would hold the
                            // budget's future beside the translation.
                            Poll::Pending => translating.push_back(Either::Left(translation.map(move |done| {
                                drop(budget);
                                done
                            }))),
                        }
                    }
                }))
                .await;
            }
            () = owed(), if flushing.is_none() => flushing = Some(Box::pin(link.flush_owed())),
        }
    }
    if let Some(flush) = flushing {
        flush.await;
    }
    link.flush_owed().await;
    while let Some(done) = translating.next().await {
        outbox.put(done);
    }
    while outbox.waits() {
        let synced = outbox.synced().await;
        outbox.release(synced);
    }
}

/// A wait for the journal to be on disk up to a ticket: why not, when it never will be.
type DiskWait<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Translated events on their way to the bots, in the order they were read: each goes once the
/// disk store's journal holds its ids ([`Reports::ticket`]), every event before it has gone, and
/// a bot a whole queue behind has made room for it ([`Reports::room`]). The first of those
/// waiting is the only one waited for: a journal sync lets every event it carried go at once,
/// with one wake-up of the link's task, not one per event. While the first waits for room the
/// rest wait behind it, the link's queue fills, and its reader waits: a slow bot holds the
/// backend back, within its patience, instead of losing events.
struct Outbox<'a, R: Reports> {
    reports: &'a R,
    /// Oldest first, with their tickets.
    waiting: VecDeque<(u64, R::Translated)>,
    /// How far the journal was on disk when last looked at.
    on_disk: u64,
    /// The wait for the first one's ticket.
    wait: Option<DiskWait<'a>>,
    /// The first one's wait for room, its ids on disk.
    room: Option<crate::fanout::Room>,
}

impl<'a, R: Reports> Outbox<'a, R> {
    fn new(reports: &'a R) -> Self {
        Outbox { reports, waiting: VecDeque::new(), on_disk: 0, wait: None, room: None }
    }

    /// Events waiting for the journal.
    fn len(&self) -> usize {
        self.waiting.len()
    }

    fn waits(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Takes the next translated event (in the order read): delivered now when nothing waits
    /// before it and its ids are on disk, else kept.
    fn put(&mut self, done: R::Translated) {
        let ticket = self.reports.ticket(&done);
        if self.waiting.is_empty() && (ticket <= self.on_disk || self.looked_again() >= ticket) {
            match self.reports.room(&done) {
                None => return self.reports.deliver(done),
                Some(room) => self.room = Some(room),
            }
        }
        self.waiting.push_back((ticket, done));
    }

    fn looked_again(&mut self) -> u64 {
        self.on_disk = self.on_disk.max(self.reports.on_disk_to());
        self.on_disk
    }

    /// Resolves when the journal holds the first waiting event's ids (or never will), or when
    /// the room it waits for is made (or waited for long enough).
    async fn synced(&mut self) -> Result<(), String> {
        if let Some(room) = self.room.as_mut() {
            room.await;
            self.room = None;
            return Ok(());
        }
        let reports = self.reports;
        let ticket = self.waiting.front().map_or(0, |(ticket, _)| *ticket);
        self.wait.get_or_insert_with(|| Box::pin(reports.wait_on_disk(ticket))).await
    }

    /// After [`synced`](Self::synced): delivers every event now on disk with nothing waiting
    /// before it, until one has to wait for room. When the store stopped instead, each event
    /// whose ids are not on disk is dropped (and counted); those whose ids are still go.
    fn release(&mut self, synced: Result<(), String>) {
        self.wait = None;
        let on_disk = self.looked_again();
        while let Some((ticket, done)) = self.waiting.front() {
            if *ticket > on_disk && synced.is_ok() {
                return;
            }
            if synced.is_ok() {
                if let Some(room) = self.reports.room(done) {
                    self.room = Some(room);
                    return;
                }
            }
            let Some((ticket, done)) = self.waiting.pop_front() else { return };
            match &synced {
                Err(why) if ticket > on_disk => self.reports.undeliverable(done, why),
                _ => self.reports.deliver(done),
            }
        }
    }
}

/// De-duplicates one event and hands it to the in-order first step.
async fn admit<R: Reports>(link: &LinkHandle, reports: &R, recent: &RecentIds, ev: v12::Event) -> Option<R::Admitted> {
    if !recent.insert(&ev.id) {
        tracing::debug!(id = %ev.id, "duplicate event dropped");
        return None;
    }
    reports.admit(link, ev).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::*;
    use crate::backends::link::{GiveUp, LinkId};
    use crate::backends::Known;
    use crate::core::{ImplementationClaim, InfoSource};

    /// Takes an event's `wait_ms` to translate it, gives it its `ticket`, and records the order
    /// of delivery. The journal is on disk up to what `disk` says, or failed.
    #[derive(Default)]
    struct Recorder {
        delivered: Mutex<Vec<String>>,
        dropped: Mutex<Vec<String>>,
        disk: tokio::sync::watch::Sender<(u64, bool)>,
        /// Events whose id starts with `full` wait for room until this is true.
        room: tokio::sync::watch::Sender<bool>,
    }

    impl Reports for Recorder {
        type Admitted = v12::Event;
        type Translated = (String, u64);

        fn ticket(&self, done: &(String, u64)) -> u64 {
            done.1
        }

        fn on_disk_to(&self) -> u64 {
            self.disk.borrow().0
        }

        async fn wait_on_disk(&self, ticket: u64) -> Result<(), String> {
            let mut disk = self.disk.subscribe();
            let (_, failed) = *disk.wait_for(|&(on_disk, failed)| on_disk >= ticket || failed).await.unwrap();
            if failed {
                return Err("the journal failed".into());
            }
            Ok(())
        }

        fn undeliverable(&self, (id, _): (String, u64), _why: &str) {
            self.dropped.lock().unwrap().push(id);
        }

        async fn admit(&self, _link: &LinkHandle, ev: v12::Event) -> Option<v12::Event> {
            (ev.kind != "meta").then_some(ev)
        }

        async fn translate(&self, ev: v12::Event, _give_up: GiveUp) -> (String, u64) {
            // No wait at all: translated in its first poll.
            let wait = ev.fields.get("wait_ms").and_then(Value::as_u64).unwrap_or(0);
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let ticket = ev.fields.get("ticket").and_then(Value::as_u64).unwrap_or(0);
            (ev.id, ticket)
        }

        fn deliver(&self, (id, _): (String, u64)) {
            self.delivered.lock().unwrap().push(id);
        }

        fn room(&self, (id, _): &(String, u64)) -> Option<crate::fanout::Room> {
            if !id.starts_with("full") || *self.room.borrow() {
                return None;
            }
            let mut room = self.room.subscribe();
            Some(Box::pin(async move {
                let _ = room.wait_for(|made| *made).await;
            }))
        }

        async fn status(&self, _link: &LinkHandle, _status: &Value) {}
        fn learn(&self, _link: LinkId, _claim: ImplementationClaim, _source: InfoSource) {}
        fn supported_actions(&self, _link: LinkId, _actions: BTreeSet<String>) {}
        fn knows(&self, _link: LinkId) -> Known {
            Known::default()
        }
        fn force_profile(&self, _link: LinkId, _profile: String) {}
        fn upload_mode(&self, _link: LinkId, _mode: crate::core::media::UploadMode) {}
        fn new_link_id(&self) -> LinkId {
            0
        }
        fn link_down(&self, _link: LinkId) {}
        fn forget_link(&self, _link: LinkId) {}
    }

    fn event(id: &str, kind: &str, wait_ms: u64) -> Value {
        json!({"id": id, "time": 1, "type": kind, "detail_type": "group", "sub_type": "", "self": {"platform": "qq", "user_id": "1"}, "wait_ms": wait_ms})
    }

    async fn push(intake: &Intake, mut event: Value, ticket: u64) {
        event["ticket"] = ticket.into();
        let bytes = event.to_string();
        let (value, budget) = crate::decode::json(bytes.as_bytes()).await.unwrap();
        intake.push(v12::Event::from_value(value).unwrap(), budget).await;
    }

    /// An intake whose events go to a [`Recorder`].
    fn recorded() -> (Arc<Recorder>, Intake, JoinHandle<()>) {
        let recorder = Arc::new(Recorder::default());
        let link = LinkHandle::new(1, Duration::from_secs(1), false);
        let (intake, worker) = Intake::start(link, recorder.clone(), Arc::new(RecentIds::new()));
        (recorder, intake, worker)
    }

    /// Lets the worker run until it waits (time is paused: no timer fires meanwhile).
    async fn settle() {
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
    }

    fn taken(list: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *list.lock().unwrap())
    }

    /// An event goes once the journal holds its ids and every event before it has gone: a
    /// sync lets go every event it carried, whatever order their tickets are in. When the
    /// journal fails, the events whose ids are not on disk are dropped, and the rest still go.
    #[tokio::test(start_paused = true)]
    async fn events_wait_for_their_ids_on_disk_and_go_in_order() {
        let (recorder, intake, worker) = recorded();
        for (id, ticket) in [("a", 2), ("b", 1), ("c", 4), ("d", 3), ("e", 0)] {
            push(&intake, event(id, "message", 0), ticket).await;
        }
        settle().await;
        assert_eq!(taken(&recorder.delivered), Vec::<String>::new(), "nothing is on disk yet");
        recorder.disk.send_replace((2, false));
        settle().await;
        assert_eq!(taken(&recorder.delivered), ["a", "b"], "a sync to 2 lets a and b go, not c");
        recorder.disk.send_replace((3, false));
        settle().await;
        assert_eq!(taken(&recorder.delivered), Vec::<String>::new(), "d is on disk, but c before it is not");
        // Already on disk when translated, with nothing waiting before: at once.
        recorder.disk.send_replace((4, false));
        settle().await;
        assert_eq!(taken(&recorder.delivered), ["c", "d", "e"]);
        push(&intake, event("f", "message", 0), 4).await;
        settle().await;
        assert_eq!(taken(&recorder.delivered), ["f"]);
        for (id, ticket) in [("g", 6), ("h", 4), ("i", 7)] {
            push(&intake, event(id, "message", 0), ticket).await;
        }
        settle().await;
        recorder.disk.send_replace((4, true));
        drop(intake);
        worker.await.unwrap();
        assert_eq!(taken(&recorder.delivered), ["h"], "on disk already: it goes");
        assert_eq!(taken(&recorder.dropped), ["g", "i"], "never on disk: dropped");
    }

    /// An event that waits for room (a bot a whole queue behind) holds back every event read
    /// after it, those already translated and on disk included; once room is made they all go,
    /// in order.
    #[tokio::test(start_paused = true)]
    async fn events_behind_one_waiting_for_room_wait_their_turn() {
        let (recorder, intake, worker) = recorded();
        for (id, ticket) in [("a", 0), ("full-b", 1), ("c", 0), ("full-d", 2), ("e", 0)] {
            push(&intake, event(id, "message", 0), ticket).await;
        }
        settle().await;
        assert_eq!(taken(&recorder.delivered), ["a"], "b is not on disk yet");
        recorder.disk.send_replace((2, false));
        settle().await;
        assert_eq!(taken(&recorder.delivered), Vec::<String>::new(), "b waits for room, and the rest behind it");
        recorder.room.send_replace(true);
        settle().await;
        assert_eq!(taken(&recorder.delivered), ["full-b", "c", "full-d", "e"]);
        // With nothing before it and its ids on disk, an event waits for room as it arrives.
        recorder.room.send_replace(false);
        for id in ["full-f", "g"] {
            push(&intake, event(id, "message", 0), 0).await;
        }
        settle().await;
        assert_eq!(taken(&recorder.delivered), Vec::<String>::new());
        recorder.room.send_replace(true);
        settle().await;
        assert_eq!(taken(&recorder.delivered), ["full-f", "g"]);
        drop(intake);
        worker.await.unwrap();
    }

    /// Later events may finish translating first; they are still delivered in the order read,
    /// a resent id is dropped, and what stops at admission (meta) leaves no gap. An event
    /// translated as it starts goes out at once when nothing is before it (`z`), and waits its
    /// turn when something is (`c`).
    #[tokio::test(start_paused = true)]
    async fn events_translated_out_of_order_are_delivered_in_the_order_read() {
        let (recorder, intake, worker) = recorded();
        for (id, kind, wait) in [
            ("z", "message", 0),
            ("a", "message", 30),
            ("b", "message", 10),
            ("m", "meta", 0),
            ("a", "message", 0),
            ("c", "notice", 0),
        ] {
            let bytes = event(id, kind, wait).to_string();
            let (value, budget) = crate::decode::json(bytes.as_bytes()).await.unwrap();
            intake.push(v12::Event::from_value(value).unwrap(), budget).await;
        }
        drop(intake);
        worker.await.unwrap();
        assert_eq!(taken(&recorder.delivered), ["z", "a", "b", "c"]);
    }
}
