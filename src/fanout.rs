//! One account's events to every v11 connection that takes them: a broadcast bounded in events
//! and in bytes.
//!
//! `tokio::sync::broadcast` bounds its ring in values only, and a value stays in it until every
//! receiver has read it or the ring wraps: a bot that reads slowly kept up to the ring's length
//! of events alive, however large each (a backend's frame may be 16 MiB). Here each
//! event is sent with its weight, and past either bound the oldest go first; a receiver that
//! had not read them learns how many it lost, as with tokio's `Lagged`. What every receiver has
//! read is let go of within `TRIM_EVERY` (32) sends, or when the receiver that held it back goes.
//!
//! A receiver that falls a whole queue behind is waited for before it loses anything
//! ([`Sender::room`], on a channel made with [`channel_waiting`]): a bot that reads, only more
//! slowly than a burst comes (a short pause, a starved CPU, a garbage collection), loses nothing,
//! and the sender's caller holds the burst back meanwhile. Each receiver is waited for at most its
//! patience ([`PATIENCE`] by default) in all until it has caught up again (read its queue down to
//! half), and given it back at most once a minute ([`PATIENCE_EVERY`]): a bot that stopped
//! reading holds the others back once, for that long, and then loses the oldest as before; one
//! that keeps falling behind holds them back at most that long a minute.
//!
//! The interface is tokio's (same error types), so the sessions read it as they read a tokio
//! channel. One lock guards the queue; a send or a read holds it for a few pointer moves.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use tokio::sync::broadcast::error::{RecvError, SendError, TryRecvError};
use tokio::sync::Notify;

use crate::sync::LockUnpoisoned;

/// Sends between two looks at what every receiver has read.
const TRIM_EVERY: usize = 32;

/// How long, in all, a receiver that is a whole queue behind is waited for by default before it
/// loses the oldest values it has not read; given back in full once it has read its queue down
/// to half, at most once every [`PATIENCE_EVERY`] (`--slow-bot-wait`).
pub const PATIENCE: Duration = Duration::from_secs(5);

/// How often, at most, a receiver's patience is given back: a receiver that keeps falling behind
/// holds the sender back at most its patience in this time.
pub const PATIENCE_EVERY: Duration = Duration::from_secs(60);

/// A wait for a receiver to make room ([`Sender::room`]).
pub type Room = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A new broadcast keeping at most `capacity` values and `max_bytes` of their weights (at least
/// the newest value, whatever it weighs), whose receivers are not waited for ([`Sender::room`]).
pub fn channel<T: Clone>(capacity: usize, max_bytes: usize) -> Sender<T> {
    channel_waiting(capacity, max_bytes, Duration::ZERO)
}

/// [`channel`], each receiver a whole queue behind waited for up to `patience` in all before it
/// loses values it has not read ([`PATIENCE`]).
pub fn channel_waiting<T: Clone>(capacity: usize, max_bytes: usize, patience: Duration) -> Sender<T> {
    let state = State {
        queue: VecDeque::new(),
        first: 0,
        bytes: 0,
        capacity: capacity.max(1),
        max_bytes,
        positions: Vec::new(),
        patience: Vec::new(),
        patience_given: Vec::new(),
        free: Vec::new(),
        receivers: 0,
        closed: false,
        sends: 0,
        room_waits: 0,
        full_patience: patience,
    };
    let shared = Shared {
        state: Mutex::new(state),
        sent: Notify::new(),
        read: Notify::new(),
        half_full: AtomicBool::new(false),
    };
    Sender { shared: Arc::new(shared) }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Told after every send, and when the sender goes.
    sent: Notify,
    /// Told after a read or a receiver's going while the sender waits for room.
    read: Notify,
    /// The queue held half of either bound or more after the last send: the next may have to
    /// wait ([`Sender::room`] looks no further when it did not, so a single value heavier than
    /// half the bytes is not waited for).
    half_full: AtomicBool,
}

struct State<T> {
    /// The values kept, oldest first, with their weights.
    queue: VecDeque<(T, usize)>,
    /// The sequence number of `queue[0]`.
    first: u64,
    /// The weights of the values kept.
    bytes: usize,
    capacity: usize,
    max_bytes: usize,
    /// Each receiver's next sequence number, by its slot (`None`: a free slot).
    positions: Vec<Option<u64>>,
    /// How much longer each receiver is waited for ([`PATIENCE`]), by its slot.
    patience: Vec<Duration>,
    /// When each receiver's patience was last given in full (at most every [`PATIENCE_EVERY`]).
    patience_given: Vec<tokio::time::Instant>,
    free: Vec<usize>,
    receivers: usize,
    /// The sender is gone: receivers read what is left, then `Closed`.
    closed: bool,
    sends: usize,
    /// Waits for room under way ([`Sender::room`]): while there is one, reads tell them.
    room_waits: usize,
    /// What each receiver's patience starts at, and is given back.
    full_patience: Duration,
}

impl<T> State<T> {
    fn end(&self) -> u64 {
        self.first + self.queue.len() as u64
    }

    fn over(&self) -> bool {
        self.queue.len() > self.capacity || (self.bytes > self.max_bytes && self.queue.len() > 1)
    }

    /// The first sequence number still kept once a value of `weight` is sent.
    fn first_after_send(&self, weight: usize) -> u64 {
        let (mut len, mut bytes) = (self.queue.len() + 1, self.bytes + weight);
        let mut first = self.first;
        for (_, w) in &self.queue {
            if !(len > self.capacity || (bytes > self.max_bytes && len > 1)) {
                break;
            }
            len -= 1;
            bytes -= w;
            first += 1;
        }
        first
    }

    /// The slots of the receivers that would lose a value they have not read if one of `weight`
    /// were sent now, and that are still waited for.
    fn in_the_way(&mut self, weight: usize) -> Vec<usize> {
        self.trim();
        let first = self.first_after_send(weight);
        if first == self.first {
            return Vec::new();
        }
        let patience = &self.patience;
        self.positions
            .iter()
            .enumerate()
            .filter(|&(slot, at)| at.is_some_and(|at| at < first) && !patience[slot].is_zero())
            .map(|(slot, _)| slot)
            .collect()
    }

    fn pop(&mut self) {
        if let Some((_, weight)) = self.queue.pop_front() {
            self.bytes -= weight;
            self.first += 1;
        }
    }

    /// Lets go of what every receiver has read.
    fn trim(&mut self) {
        let read = self.positions.iter().flatten().copied().min().unwrap_or_else(|| self.end());
        while self.first < read && !self.queue.is_empty() {
            self.pop();
        }
    }
}

/// A wait for room ending (or given up): each receiver that was in the way is charged the time
/// it stayed in the way, and reads stop telling the sender.
struct Charge<T> {
    shared: Arc<Shared<T>>,
    /// The receivers in the way as the wait began, each with how long into the wait it made room.
    blocking: Vec<(usize, Option<Duration>)>,
    started: tokio::time::Instant,
}

impl<T> Charge<T> {
    /// Notes when each receiver in the way made room, by those in the way now.
    fn made_room(&mut self, in_the_way: &[usize]) {
        let now = self.started.elapsed();
        for (slot, made) in &mut self.blocking {
            if made.is_none() && !in_the_way.contains(slot) {
                *made = Some(now);
            }
        }
    }
}

impl<T> Drop for Charge<T> {
    fn drop(&mut self) {
        let waited = self.started.elapsed();
        let mut state = self.shared.state.lock_unpoisoned();
        state.room_waits -= 1;
        for &(slot, made) in &self.blocking {
            state.patience[slot] = state.patience[slot].saturating_sub(made.unwrap_or(waited));
        }
    }
}

/// The sending half; receivers see `Closed` once it is dropped and they have read the rest.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.lock_unpoisoned();
        f.debug_struct("fanout::Sender")
            .field("kept", &state.queue.len())
            .field("bytes", &state.bytes)
            .field("receivers", &state.receivers)
            .finish()
    }
}

impl<T: Clone> Sender<T> {
    /// Sends to every receiver; the value back when there is none (nothing is kept then).
    pub fn send(&self, value: T, weight: usize) -> Result<(), SendError<T>> {
        {
            let mut state = self.shared.state.lock_unpoisoned();
            if state.receivers == 0 {
                return Err(SendError(value));
            }
            state.queue.push_back((value, weight));
            state.bytes += weight;
            state.sends += 1;
            if state.over() || state.sends % TRIM_EVERY == 0 {
                state.trim();
            }
            while state.over() {
                state.pop();
            }
            let half = state.queue.len() * 2 >= state.capacity || state.bytes * 2 >= state.max_bytes;
            self.shared.half_full.store(half, Ordering::Relaxed);
        }
        self.shared.sent.notify_waiters();
        Ok(())
    }

    /// A wait to go through before sending a value of `weight` (asked for only when the queue is
    /// half full), when sending it now would let go of values a receiver has not read (and that
    /// receiver is still waited for, [`PATIENCE`]): it ends when every such receiver has made
    /// room, or when the first of them has been waited for as long as it may be. `None`: send at
    /// once. Each receiver that was in the way is charged the time it stayed in the way.
    pub fn room(&self, weight: impl FnOnce() -> usize) -> Option<Room>
    where
        T: Send + 'static,
    {
        if !self.shared.half_full.load(Ordering::Relaxed) {
            return None;
        }
        let weight = weight();
        let (blocking, most) = {
            let mut state = self.shared.state.lock_unpoisoned();
            let blocking = state.in_the_way(weight);
            let most = blocking.iter().map(|&slot| state.patience[slot]).min()?;
            state.room_waits += 1;
            (blocking, most)
        };
        let blocking = blocking.into_iter().map(|slot| (slot, None)).collect();
        let mut charge = Charge { shared: self.shared.clone(), blocking, started: tokio::time::Instant::now() };
        Some(Box::pin(async move {
            let shared = charge.shared.clone();
            let made = async {
                loop {
                    let read = shared.read.notified();
                    tokio::pin!(read);
                    // Registered before looking, so that a read in between is not missed.
                    read.as_mut().enable();
                    let in_the_way = shared.state.lock_unpoisoned().in_the_way(weight);
                    charge.made_room(&in_the_way);
                    if in_the_way.is_empty() {
                        return;
                    }
                    read.await;
                }
            };
            let _ = tokio::time::timeout(most, made).await;
            drop(charge);
        }))
    }

    /// A receiver of the values sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        let mut state = self.shared.state.lock_unpoisoned();
        let next = state.end();
        let slot = match state.free.pop() {
            Some(slot) => {
                state.positions[slot] = Some(next);
                state.patience[slot] = state.full_patience;
                state.patience_given[slot] = tokio::time::Instant::now();
                slot
            }
            None => {
                state.positions.push(Some(next));
                let full = state.full_patience;
                state.patience.push(full);
                state.patience_given.push(tokio::time::Instant::now());
                state.positions.len() - 1
            }
        };
        state.receivers += 1;
        Receiver { shared: self.shared.clone(), slot, next }
    }

    /// Values the slowest receiver has not read yet (that are still kept).
    pub fn len(&self) -> usize {
        let state = self.shared.state.lock_unpoisoned();
        let read = state.positions.iter().flatten().copied().min().unwrap_or_else(|| state.end());
        (state.end() - read.max(state.first)) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn receiver_count(&self) -> usize {
        self.shared.state.lock_unpoisoned().receivers
    }

    /// Values kept and their weights.
    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let state = self.shared.state.lock_unpoisoned();
        (state.queue.len(), state.bytes)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.state.lock_unpoisoned().closed = true;
        self.shared.sent.notify_waiters();
    }
}

/// A receiving half: reads every value sent after it subscribed, unless the oldest were let go
/// of before it read them (then it is told how many).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    slot: usize,
    next: u64,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("fanout::Receiver").field("next", &self.next).finish()
    }
}

impl<T: Clone> Receiver<T> {
    /// The next value, if one is there.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        take(&self.shared, self.slot, &mut self.next)
    }

    /// The next value, waiting for one; `Lagged` when values it had not read were let go of.
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        let Receiver { shared, slot, next } = self;
        loop {
            let sent = shared.sent.notified();
            tokio::pin!(sent);
            // Registered before looking, so that a send in between is not missed.
            sent.as_mut().enable();
            match take(shared, *slot, next) {
                Ok(value) => return Ok(value),
                Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => sent.await,
            }
        }
    }
}

/// The value numbered `next` for the receiver in `slot`, moving it on.
fn take<T: Clone>(shared: &Shared<T>, slot: usize, next: &mut u64) -> Result<T, TryRecvError> {
    let mut state = shared.state.lock_unpoisoned();
    if *next < state.first {
        let lost = state.first - *next;
        *next = state.first;
        state.positions[slot] = Some(*next);
        return Err(TryRecvError::Lagged(lost));
    }
    let index = (*next - state.first) as usize;
    match state.queue.get(index) {
        Some((value, _)) => {
            let value = value.clone();
            *next += 1;
            state.positions[slot] = Some(*next);
            // Caught up (half its queue read): waited for in full again, at most once a minute.
            if state.patience[slot] < state.full_patience
                && state.end() - *next <= (state.capacity / 2) as u64
                && state.patience_given[slot].elapsed() >= PATIENCE_EVERY
            {
                state.patience[slot] = state.full_patience;
                state.patience_given[slot] = tokio::time::Instant::now();
            }
            if state.room_waits > 0 {
                drop(state);
                shared.read.notify_waiters();
            }
            Ok(value)
        }
        None if state.closed => Err(TryRecvError::Closed),
        None => Err(TryRecvError::Empty),
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock_unpoisoned();
        state.positions[self.slot] = None;
        state.free.push(self.slot);
        state.receivers -= 1;
        // What only this receiver had not read goes now, not at the next send.
        state.trim();
        let wanted = state.room_waits > 0;
        drop(state);
        if wanted {
            self.shared.read.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receiver_reads_every_value_in_order() {
        let tx = channel::<u32>(8, 1 << 20);
        assert!(matches!(tx.send(0, 1), Err(SendError(0))), "no receiver: back");
        let (mut a, mut b) = (tx.subscribe(), tx.subscribe());
        for v in 1..=5 {
            tx.send(v, 1).unwrap();
        }
        for rx in [&mut a, &mut b] {
            let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
            assert_eq!(got, [1, 2, 3, 4, 5]);
            assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        }
        assert_eq!(tx.receiver_count(), 2);
        tx.send(9, 1).unwrap();
        assert_eq!(tx.len(), 1, "neither has read it");
        assert_eq!(a.try_recv().unwrap(), 9);
        assert_eq!(tx.len(), 1, "one has not read it");
        drop(b);
        assert!(tx.is_empty());
        assert_eq!(tx.receiver_count(), 1);
        // Read by everyone: let go of.
        assert_eq!(tx.kept(), (0, 0));
        let c = tx.subscribe();
        tx.send(6, 1).unwrap();
        drop(tx);
        assert_eq!(a.try_recv().unwrap(), 6);
        assert!(matches!(a.try_recv(), Err(TryRecvError::Closed)));
        drop(c);
    }

    /// A slow receiver loses the oldest past either bound, and is told how many; a fast one
    /// loses nothing. The bytes kept never pass the bound (but for the newest value alone).
    #[test]
    fn past_either_bound_the_oldest_go_and_a_slow_receiver_is_told() {
        let tx = channel::<u32>(100, 1000);
        let (mut slow, mut fast) = (tx.subscribe(), tx.subscribe());
        for v in 0..50 {
            tx.send(v, 100).unwrap();
            assert_eq!(fast.try_recv().unwrap(), v);
            assert!(tx.kept().1 <= 1000, "{:?}", tx.kept());
        }
        assert_eq!(tx.kept(), (10, 1000), "ten of 100 bytes");
        assert!(tx.room(|| 100).is_none(), "a channel that waits for no one");
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(40))));
        assert_eq!(slow.try_recv().unwrap(), 40);
        // One value over the whole bound is still sent, alone.
        tx.send(99, 5000).unwrap();
        assert_eq!(tx.kept(), (1, 5000));
        assert!(matches!(slow.try_recv(), Err(TryRecvError::Lagged(9))));
        assert_eq!(slow.try_recv().unwrap(), 99);
        assert_eq!(fast.try_recv().unwrap(), 99);
        let tx = channel::<u32>(3, 1 << 20);
        let mut rx = tx.subscribe();
        for v in 0..5 {
            tx.send(v, 1).unwrap();
        }
        assert!(matches!(rx.try_recv(), Err(TryRecvError::Lagged(2))), "by count");
        assert_eq!(rx.try_recv().unwrap(), 2);
    }

    /// What every receiver has read is not kept for long, and a receiver that goes lets go of
    /// what only it held back.
    #[test]
    fn what_everyone_read_is_let_go_of() {
        let tx = channel::<u32>(10_000, usize::MAX);
        let mut rx = tx.subscribe();
        for v in 0..1000 {
            tx.send(v, 1).unwrap();
            assert_eq!(rx.try_recv().unwrap(), v);
            assert!(tx.kept().0 <= TRIM_EVERY, "{:?}", tx.kept());
        }
        let stuck = tx.subscribe();
        for v in 0..100 {
            tx.send(v, 1).unwrap();
            rx.try_recv().unwrap();
        }
        assert!(tx.kept().0 >= 100);
        drop(stuck);
        assert_eq!(tx.kept(), (0, 0));
    }

    /// Sends `values` with a weight of 1, as a caller that goes through [`Sender::room`] first.
    async fn send_making_room(tx: &Sender<u32>, values: std::ops::Range<u32>) {
        for v in values {
            if let Some(room) = tx.room(|| 1) {
                room.await;
            }
            tx.send(v, 1).unwrap();
        }
    }

    /// A receiver a whole queue behind is waited for: the send waits until it reads, and it
    /// loses nothing. A receiver that keeps up is never in the way; once it stops reading
    /// (`fast`, after the first four), the time it is waited for is its own, not charged to the
    /// slow one beside it, which still loses nothing.
    #[tokio::test(start_paused = true)]
    async fn a_receiver_a_queue_behind_is_waited_for_and_loses_nothing() {
        let tx = channel_waiting::<u32>(4, 1 << 20, PATIENCE);
        let (mut slow, mut fast) = (tx.subscribe(), tx.subscribe());
        for v in 0..4 {
            assert!(tx.room(|| 1).is_none(), "room for {v}");
            tx.send(v, 1).unwrap();
            assert_eq!(fast.try_recv().unwrap(), v);
        }
        let room = tx.room(|| 1).expect("slow has read none of four: a fifth would push one out");
        let waiting = tokio::spawn(room);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "slow has not read");
        assert_eq!(slow.try_recv().unwrap(), 0);
        tokio::time::timeout(Duration::from_millis(1), waiting).await.expect("a read makes room").unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(v) = slow.recv().await {
                got.push(v);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            got
        });
        // 36 more at 50 ms each: the sender waits about 2 s of the 4 its patience has left.
        send_making_room(&tx, 4..40).await;
        drop(tx);
        assert_eq!(reader.await.unwrap(), (1..40).collect::<Vec<_>>(), "a slow reader loses nothing");
    }

    /// A receiver that stops reading is waited for [`PATIENCE`] in all, then loses the oldest
    /// as before; once it has read its queue down to half, and not before a minute since its
    /// patience was last given, it is waited for in full again.
    #[tokio::test(start_paused = true)]
    async fn a_receiver_that_stops_reading_is_waited_for_its_patience_then_loses_the_oldest() {
        let tx = channel_waiting::<u32>(4, 1 << 20, PATIENCE);
        let mut stuck = tx.subscribe();
        send_making_room(&tx, 0..4).await;
        let started = tokio::time::Instant::now();
        send_making_room(&tx, 4..6).await;
        assert_eq!(started.elapsed(), PATIENCE, "waited for once, for its patience");
        assert!(tx.room(|| 1).is_none(), "not waited for again");
        send_making_room(&tx, 6..8).await;
        assert!(matches!(stuck.try_recv(), Err(TryRecvError::Lagged(4))));
        assert_eq!(stuck.try_recv().unwrap(), 4);
        assert!(tx.room(|| 1).is_none(), "three behind of four, its patience not back");
        assert_eq!(stuck.try_recv().unwrap(), 5);
        assert_eq!(stuck.try_recv().unwrap(), 6);
        send_making_room(&tx, 8..11).await;
        assert!(tx.room(|| 1).is_none(), "read down to half, but its patience was given a moment ago");
        tokio::time::advance(PATIENCE_EVERY).await;
        assert_eq!(stuck.try_recv().unwrap(), 7);
        assert_eq!(stuck.try_recv().unwrap(), 8);
        send_making_room(&tx, 11..13).await;
        assert!(tx.room(|| 1).is_some(), "read down to half a minute on: waited for again");
        // A receiver that goes away ends the wait for it.
        let room = tokio::spawn(tx.room(|| 1).unwrap());
        tokio::task::yield_now().await;
        drop(stuck);
        tokio::time::timeout(Duration::from_millis(1), room).await.expect("gone: nothing in the way").unwrap();
    }

    /// Two waits for room at once (two links delivering to one account): one that ends (here:
    /// given up) leaves the other still told of reads.
    #[tokio::test(start_paused = true)]
    async fn a_wait_for_room_is_told_of_reads_when_another_has_ended() {
        let tx = channel_waiting::<u32>(2, 1 << 20, PATIENCE);
        let mut rx = tx.subscribe();
        send_making_room(&tx, 0..2).await;
        let (first, second) = (tokio::spawn(tx.room(|| 1).unwrap()), tokio::spawn(tx.room(|| 1).unwrap()));
        tokio::task::yield_now().await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(rx.try_recv().unwrap(), 0);
        tokio::time::timeout(Duration::from_millis(1), second).await.expect("told of the read").unwrap();
    }

    /// The bound in bytes makes a receiver wait-worthy as the count does: a heavy value that
    /// would push out values it has not read waits for it.
    #[tokio::test(start_paused = true)]
    async fn a_heavy_value_waits_for_the_room_it_takes_in_bytes() {
        let tx = channel_waiting::<u32>(100, 1000, PATIENCE);
        let mut rx = tx.subscribe();
        for v in 0..5 {
            tx.send(v, 100).unwrap();
        }
        assert!(tx.room(|| 400).is_none(), "900 of 1000 bytes: it fits");
        tx.send(5, 400).unwrap();
        let room = tokio::spawn(tx.room(|| 250).expect("1150 bytes: the two oldest would go"));
        assert_eq!(rx.try_recv().unwrap(), 0);
        tokio::task::yield_now().await;
        assert!(!room.is_finished(), "one read is room for 100 of the 150 bytes");
        assert_eq!(rx.try_recv().unwrap(), 1);
        tokio::time::timeout(Duration::from_millis(1), room).await.expect("room for all of it").unwrap();
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_and_by_the_end() {
        let tx = channel::<u32>(8, 1 << 20);
        let mut rx = tx.subscribe();
        let reader = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.send(7, 1).unwrap();
        drop(tx);
        let (first, second) = tokio::time::timeout(std::time::Duration::from_secs(5), reader).await.unwrap().unwrap();
        assert_eq!(first.unwrap(), 7);
        assert!(matches!(second, Err(RecvError::Closed)));
    }
}
