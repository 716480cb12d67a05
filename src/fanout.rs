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
//! The interface is tokio's (same error types), so the sessions read it as they read a tokio
//! channel. One lock guards the queue; a send or a read holds it for a few pointer moves.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub use tokio::sync::broadcast::error::{RecvError, SendError, TryRecvError};
use tokio::sync::Notify;

use crate::sync::LockUnpoisoned;

/// Sends between two looks at what every receiver has read.
const TRIM_EVERY: usize = 32;

/// A new broadcast keeping at most `capacity` values and `max_bytes` of their weights (at least
/// the newest value, whatever it weighs).
pub fn channel<T: Clone>(capacity: usize, max_bytes: usize) -> Sender<T> {
    let state = State {
        queue: VecDeque::new(),
        first: 0,
        bytes: 0,
        capacity: capacity.max(1),
        max_bytes,
        positions: Vec::new(),
        free: Vec::new(),
        receivers: 0,
        closed: false,
        sends: 0,
    };
    Sender { shared: Arc::new(Shared { state: Mutex::new(state), sent: Notify::new() }) }
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Told after every send, and when the sender goes.
    sent: Notify,
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
    free: Vec<usize>,
    receivers: usize,
    /// The sender is gone: receivers read what is left, then `Closed`.
    closed: bool,
    sends: usize,
}

impl<T> State<T> {
    fn end(&self) -> u64 {
        self.first + self.queue.len() as u64
    }

    fn over(&self) -> bool {
        self.queue.len() > self.capacity || (self.bytes > self.max_bytes && self.queue.len() > 1)
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
        }
        self.shared.sent.notify_waiters();
        Ok(())
    }

    /// A receiver of the values sent from now on.
    pub fn subscribe(&self) -> Receiver<T> {
        let mut state = self.shared.state.lock_unpoisoned();
        let next = state.end();
        let slot = match state.free.pop() {
            Some(slot) => {
                state.positions[slot] = Some(next);
                slot
            }
            None => {
                state.positions.push(Some(next));
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
