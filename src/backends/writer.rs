//! The writing half of a backend's WebSocket, shared by everyone who writes to it. A caller
//! writes its own request under the lock, so a request reaches the socket with no task in
//! between; the connection's own frames (pings, the closing frame) go the same way.
//!
//! Why not a queue drained by the connection's task: each call then woke that task, often on the
//! runtime's other worker. With 8 bots calling `send_group_msg` over one link that hand-off cost
//! about 15 % of the calls per second (the load bench, alternated runs; `docs/performance.md`).
//!
//! A request written while translating events (the intake's backend calls, chiefly the URLs of
//! received pictures) is flushed later: [`deferring_flushes`] marks the intake's polling of its
//! translations, a write there only buffers its frame, and the intake sends what is buffered in
//! one flush before it waits for anything ([`SocketWriter::flush_owed`]), or as soon as
//! [`FLUSH_EVERY`] frames are buffered. A burst of pictures each with its own `file_id` made one
//! `sendto` per picture otherwise, about as many as the events themselves cost.
//!
//! A write has the link's write timeout. A caller that gives up in the middle of a write (its
//! action timeout) leaves the frame buffered; the next writer finishes it within what is left of
//! that budget, so a backend that reads nothing is caught however the writes are cut short. A
//! write that fails or runs out of time drops the connection's writing half and tells the
//! connection ([`Attached::broken`]), which then ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

/// Most frames buffered by writes under [`deferring_flushes`] before one of them flushes.
pub const FLUSH_EVERY: usize = 32;

tokio::task_local! {
    /// Set while a link's intake polls its translations: their writes only buffer.
    static DEFERRING: ();
}

/// Runs `polling` (one poll of an intake's translations) with flushes deferred: a frame written
/// there is buffered until [`SocketWriter::flush_owed`] (or the [`FLUSH_EVERY`]th frame).
pub async fn deferring_flushes<F: Future>(polling: F) -> F::Output {
    DEFERRING.scope((), polling).await
}

fn flush_deferred_here() -> bool {
    DEFERRING.try_with(|()| ()).is_ok()
}

/// A connection's writing half, whatever stream it writes to.
pub type FrameSink = Pin<Box<dyn Sink<Message, Error = tungstenite::Error> + Send>>;

/// Why a frame was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the backend connection is closed")]
    Closed,
    #[error("backend write failed: {0}")]
    Failed(String),
    #[error("backend write timed out (the backend reads nothing)")]
    TimedOut,
}

/// See the module header. One per socket link; connections attach to it in turn.
#[derive(Default)]
pub struct SocketWriter {
    slot: tokio::sync::Mutex<Slot>,
    /// Frames are buffered and not flushed yet ([`Slot::buffered`] is not zero).
    owed: AtomicBool,
}

#[derive(Default)]
struct Slot {
    sink: Option<FrameSink>,
    /// Which attachment `sink` belongs to (they are numbered from 1).
    connection: u64,
    broken: Arc<Notify>,
    timeout: Duration,
    /// When the write under way, or one a caller gave up on halfway, began; `None` once a write
    /// has completed.
    unfinished_since: Option<Instant>,
    /// Frames written under [`deferring_flushes`] and not flushed yet.
    buffered: usize,
}

/// A connection's hold on the writer, from [`SocketWriter::attach`].
#[derive(Debug)]
pub struct Attached {
    connection: u64,
    /// Notified when a write to this connection failed or timed out (its writing half is gone).
    pub broken: Arc<Notify>,
}

impl std::fmt::Debug for SocketWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketWriter").finish_non_exhaustive()
    }
}

impl SocketWriter {
    /// From now on frames go to `sink`, each write given at most `timeout`. Replaces whatever
    /// connection was attached (which keeps its own [`Attached`], now inert).
    pub async fn attach(&self, sink: FrameSink, timeout: Duration) -> Attached {
        let mut slot = self.slot.lock().await;
        let connection = slot.connection + 1;
        let broken = Arc::new(Notify::new());
        *slot =
            Slot { sink: Some(sink), connection, broken: broken.clone(), timeout, unfinished_since: None, buffered: 0 };
        self.owed.store(false, Ordering::Release);
        Attached { connection, broken }
    }

    /// Drops the connection's writing half, unless a newer connection has attached since. Waits
    /// for a write under way, which ends within the write timeout.
    pub async fn detach(&self, attached: &Attached) {
        let mut slot = self.slot.lock().await;
        if slot.connection == attached.connection {
            slot.sink = None;
        }
    }

    /// Writes one frame, after the writes ahead of it. Under [`deferring_flushes`] the frame is
    /// only buffered, unless [`FLUSH_EVERY`] frames are then.
    pub async fn write(&self, frame: Message) -> Result<(), WriteError> {
        let mut slot = self.slot.lock().await;
        let flush = !flush_deferred_here() || slot.buffered + 1 >= FLUSH_EVERY;
        let outcome = slot.within_budget(if flush { Op::Send(frame) } else { Op::Feed(frame) }).await;
        match outcome {
            Ok(()) if flush => slot.buffered = 0,
            Ok(()) => slot.buffered += 1,
            Err(_) => {}
        }
        self.owed.store(slot.buffered > 0, Ordering::Release);
        outcome
    }

    /// Whether frames written under [`deferring_flushes`] wait for a flush.
    pub fn owes_flush(&self) -> bool {
        self.owed.load(Ordering::Acquire)
    }

    /// Flushes the frames written under [`deferring_flushes`], if any.
    pub async fn flush_owed(&self) -> Result<(), WriteError> {
        if !self.owes_flush() {
            return Ok(());
        }
        let mut slot = self.slot.lock().await;
        if slot.buffered == 0 {
            return Ok(());
        }
        let outcome = slot.within_budget(Op::Flush).await;
        slot.buffered = 0;
        self.owed.store(false, Ordering::Release);
        outcome
    }
}

/// What [`Slot::within_budget`] does with the sink.
enum Op {
    /// Write the frame and flush.
    Send(Message),
    /// Buffer the frame.
    Feed(Message),
    Flush,
}

impl Slot {
    /// Runs one write on the attached sink within what is left of the write budget; a write that
    /// fails or runs out of time drops the sink and tells the connection.
    async fn within_budget(&mut self, op: Op) -> Result<(), WriteError> {
        let Slot { sink, broken, timeout, unfinished_since, buffered, .. } = self;
        let Some(writing) = sink.as_mut() else { return Err(WriteError::Closed) };
        let since = *unfinished_since.get_or_insert_with(Instant::now);
        let left = timeout.saturating_sub(since.elapsed());
        let write = async {
            match op {
                Op::Send(frame) => writing.send(frame).await,
                Op::Feed(frame) => writing.feed(frame).await,
                Op::Flush => writing.flush().await,
            }
        };
        let outcome = match tokio::time::timeout(left, write).await {
            Ok(Ok(())) => {
                *unfinished_since = None;
                return Ok(());
            }
            Ok(Err(error)) => WriteError::Failed(error.to_string()),
            Err(_) => WriteError::TimedOut,
        };
        tracing::warn!(error = %outcome, "dropping the backend connection");
        *sink = None;
        *buffered = 0;
        broken.notify_one();
        Err(outcome)
    }
}

/// A sink that hands each frame to a channel of `room` frames, and waits while it is full.
#[cfg(test)]
pub(crate) fn channel_sink(room: usize) -> (FrameSink, tokio::sync::mpsc::Receiver<Message>) {
    let (tx, rx) = tokio::sync::mpsc::channel(room);
    let sink = futures_util::sink::unfold(tx, |tx, frame: Message| async move {
        tx.send(frame).await.map_err(|_| tungstenite::Error::ConnectionClosed)?;
        Ok::<_, tungstenite::Error>(tx)
    });
    (Box::pin(sink), rx)
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use super::*;

    #[tokio::test]
    async fn frames_go_to_the_attached_connection_in_order() {
        let writer = SocketWriter::default();
        assert_eq!(writer.write(Message::text("early")).await, Err(WriteError::Closed));
        let (sink, mut written) = channel_sink(8);
        let first = writer.attach(sink, Duration::from_secs(5)).await;
        for text in ["a", "b"] {
            writer.write(Message::text(text)).await.unwrap();
        }
        assert_eq!(written.recv().await, Some(Message::text("a")));
        assert_eq!(written.recv().await, Some(Message::text("b")));

        // A newer connection takes over; the older one letting go leaves it attached.
        let (sink, mut newer) = channel_sink(8);
        let second = writer.attach(sink, Duration::from_secs(5)).await;
        writer.detach(&first).await;
        writer.write(Message::text("c")).await.unwrap();
        assert_eq!(newer.recv().await, Some(Message::text("c")));
        writer.detach(&second).await;
        assert_eq!(writer.write(Message::text("d")).await, Err(WriteError::Closed));
    }

    /// A backend that reads nothing is caught by the write timeout even when every caller gives
    /// up sooner than that: each one leaves less of the budget to the next.
    #[tokio::test(start_paused = true)]
    async fn writes_cut_short_still_run_out_of_time_together() {
        let writer = SocketWriter::default();
        let (sink, _unread) = channel_sink(1);
        let attached = writer.attach(sink, Duration::from_secs(10)).await;
        writer.write(Message::text("fills the room")).await.unwrap();
        for _ in 0..3 {
            let cut = tokio::time::timeout(Duration::from_secs(3), writer.write(Message::text("waits"))).await;
            assert!(cut.is_err(), "still waiting for room after 3 s");
        }
        let started = Instant::now();
        assert_eq!(writer.write(Message::text("last")).await, Err(WriteError::TimedOut));
        assert_eq!(started.elapsed(), Duration::from_secs(1), "what was left of the 10 s");
        tokio::time::timeout(Duration::from_millis(1), attached.broken.notified())
            .await
            .expect("the connection is told");
        assert_eq!(writer.write(Message::text("after")).await, Err(WriteError::Closed));
    }

    /// Under `deferring_flushes` frames wait in the sink's buffer until `flush_owed`, or until
    /// `FLUSH_EVERY` of them are there; a write anywhere else flushes at once.
    #[tokio::test]
    async fn deferred_writes_wait_for_one_flush() {
        /// Holds what it is given until it is flushed, as a socket's write buffer does.
        struct Held(Vec<Message>, Arc<std::sync::Mutex<Vec<Message>>>);
        impl Sink<Message> for Held {
            type Error = tungstenite::Error;
            fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn start_send(self: Pin<&mut Self>, frame: Message) -> Result<(), Self::Error> {
                self.get_mut().0.push(frame);
                Ok(())
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                let Held(held, sent) = self.get_mut();
                sent.lock().unwrap().append(held);
                Poll::Ready(Ok(()))
            }
            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                self.poll_flush(cx)
            }
        }
        let writer = SocketWriter::default();
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        writer.attach(Box::pin(Held(Vec::new(), sent.clone())), Duration::from_secs(5)).await;
        let arrived = || sent.lock().unwrap().drain(..).map(|frame| frame.into_text().unwrap()).collect::<Vec<_>>();

        for text in ["a", "b", "c"] {
            deferring_flushes(writer.write(Message::text(text))).await.unwrap();
        }
        assert!(arrived().is_empty(), "buffered, not sent");
        assert!(writer.owes_flush());
        writer.flush_owed().await.unwrap();
        assert_eq!(arrived(), ["a", "b", "c"]);
        assert!(!writer.owes_flush());

        for i in 0..FLUSH_EVERY {
            deferring_flushes(writer.write(Message::text(i.to_string()))).await.unwrap();
        }
        assert_eq!(arrived().len(), FLUSH_EVERY, "the last of them flushed them all");
        assert!(!writer.owes_flush());

        deferring_flushes(writer.write(Message::text("d"))).await.unwrap();
        writer.write(Message::text("e")).await.unwrap();
        assert_eq!(arrived(), ["d", "e"], "a write outside flushes what was buffered too");
        assert!(!writer.owes_flush());
    }

    #[tokio::test]
    async fn a_failed_write_drops_the_connection() {
        let writer = SocketWriter::default();
        let (sink, written) = channel_sink(1);
        let attached = writer.attach(sink, Duration::from_secs(5)).await;
        drop(written);
        assert!(matches!(writer.write(Message::text("x")).await, Err(WriteError::Failed(_))));
        tokio::time::timeout(Duration::from_secs(1), attached.broken.notified()).await.expect("told");
        assert_eq!(writer.write(Message::text("y")).await, Err(WriteError::Closed));
    }
}
