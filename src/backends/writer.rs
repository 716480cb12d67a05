//! The writing half of a backend's WebSocket, shared by everyone who writes to it. A caller
//! writes its own request under the lock, so a request reaches the socket with no task in
//! between; the connection's own frames (pings, the closing frame) go the same way.
//!
//! Why not a queue drained by the connection's task: each call then woke that task, often on the
//! runtime's other worker. With 8 bots calling `send_group_msg` over one link that hand-off cost
//! about 15 % of the calls per second (the load bench, alternated runs; `docs/performance.md`).
//!
//! A write has the link's write timeout. A caller that gives up in the middle of a write (its
//! action timeout) leaves the frame buffered; the next writer finishes it within what is left of
//! that budget, so a backend that reads nothing is caught however the writes are cut short. A
//! write that fails or runs out of time drops the connection's writing half and tells the
//! connection ([`Attached::broken`]), which then ends.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

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
        *slot = Slot { sink: Some(sink), connection, broken: broken.clone(), timeout, unfinished_since: None };
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

    /// Writes one frame, after the writes ahead of it.
    pub async fn write(&self, frame: Message) -> Result<(), WriteError> {
        let mut slot = self.slot.lock().await;
        let Slot { sink, broken, timeout, unfinished_since, .. } = &mut *slot;
        let Some(writing) = sink.as_mut() else { return Err(WriteError::Closed) };
        let since = *unfinished_since.get_or_insert_with(Instant::now);
        let left = timeout.saturating_sub(since.elapsed());
        let outcome = match tokio::time::timeout(left, writing.send(frame)).await {
            Ok(Ok(())) => {
                *unfinished_since = None;
                return Ok(());
            }
            Ok(Err(error)) => WriteError::Failed(error.to_string()),
            Err(_) => WriteError::TimedOut,
        };
        tracing::warn!(error = %outcome, "dropping the backend connection");
        *sink = None;
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
