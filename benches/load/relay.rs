//! The yardstick: a bare WebSocket relay (tokio-tungstenite, no parsing, no translation). For
//! every connection a bot makes it dials the upstream (the bench's v12 generator) and pipes
//! frames both ways untouched, in one of three ways ([`Flush`]): batched, each direction with
//! `forward` (frames are batched into a flush when more are ready); frame by frame, each
//! direction a loop of `next` and `send` (a write to the socket per frame: the relay as it is
//! usually written, and as the issue that set the bridge's targets measured it); or synced, the
//! upstream's frames written to a file and synced to disk before they go on (see [`synced`]).
//!
//! It runs as a child process, like the bridge: the bench binary started again with
//! [`ENV`]`=<port>,<upstream url>`. Nagle's algorithm is off on both of its sockets, as latency
//! needs (with it on, a small frame written while an earlier one is unacknowledged waits for the
//! peer's delayed ACK: about 40 ms on Linux). It stops when its stdin closes, so it never
//! outlives the bench, however the bench ends.

use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// The environment variable that turns the bench binary into the relay.
pub const ENV: &str = "ONEBOT_LOAD_RELAY";

/// How the relay writes what it reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flush {
    /// Frames that are ready together go out in one write.
    Batched,
    /// One write per frame.
    PerFrame,
    /// The upstream's frames on disk before they go on: what a relay that promised its frames
    /// would survive a crash could do at least, on the disk the bench runs on.
    Synced,
}

impl Flush {
    fn tag(self) -> &'static str {
        match self {
            Flush::Batched => "batched",
            Flush::PerFrame => "per-frame",
            Flush::Synced => "synced",
        }
    }
}

/// What [`main`] is given in [`ENV`].
pub fn spec(flush: Flush, port: u16, upstream: &str) -> String {
    format!("{},{port},{upstream}", flush.tag())
}

/// Runs the relay as `spec` (`<flush>,<port>,<upstream url>`) says, until stdin closes.
pub fn main(spec: &str) {
    let mut parts = spec.splitn(3, ',');
    let (Some(flush), Some(port), Some(upstream)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("relay spec: <flush>,<port>,<upstream url>")
    };
    let flush =
        [Flush::Batched, Flush::PerFrame, Flush::Synced].into_iter().find(|f| f.tag() == flush).expect("relay flush");
    let port: u16 = port.parse().expect("relay port");
    let upstream = upstream.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("relay runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("relay listens");
        tokio::select! {
            _ = async {
                let mut byte = [0u8; 1];
                let _ = tokio::io::stdin().read(&mut byte).await;
            } => {}
            _ = async {
                loop {
                    if let Ok((stream, _)) = listener.accept().await {
                        tokio::spawn(pipe(stream, upstream.clone(), flush));
                    }
                }
            } => {}
        }
    });
}

/// One bot connection and its upstream, until either side ends.
async fn pipe(stream: TcpStream, upstream: String, flush: Flush) {
    let _ = stream.set_nodelay(true);
    let Ok(bot) = tokio_tungstenite::accept_async(stream).await else { return };
    let Ok((up, _)) = tokio_tungstenite::connect_async_with_config(upstream.as_str(), None, true).await else { return };
    let (bot_tx, bot_rx) = bot.split();
    let (up_tx, up_rx) = up.split();
    match flush {
        Flush::Batched => {
            tokio::select! {
                _ = bot_rx.forward(up_tx) => {}
                _ = up_rx.forward(bot_tx) => {}
            }
        }
        Flush::PerFrame => {
            tokio::select! {
                _ = one_by_one(bot_rx, up_tx) => {}
                _ = one_by_one(up_rx, bot_tx) => {}
            }
        }
        Flush::Synced => {
            tokio::select! {
                _ = bot_rx.forward(up_tx) => {}
                _ = synced(up_rx, bot_tx) => {}
            }
        }
    }
}

/// Sends each frame as it is read, a flush each, until either side ends.
async fn one_by_one<R, W, M, E>(mut from: R, mut to: W)
where
    R: Stream<Item = Result<M, E>> + Unpin,
    W: Sink<M> + Unpin,
{
    while let Some(Ok(frame)) = from.next().await {
        if to.send(frame).await.is_err() {
            return;
        }
    }
}

/// Most frames one sync carries.
const SYNC_BATCH: usize = 512;
/// The synced relay's file, in its working directory (the bench's scratch directory for it, on
/// the file system the bridge's `--data-dir` is on).
const JOURNAL: &str = "relay-journal.bin";
/// The file is filled with zeros up front and written over in a ring, so that a sync writes the
/// frames and flushes the device, not the file's size or block map: the cheapest sync there is.
const JOURNAL_BYTES: u64 = 16 << 20;

/// Sends the upstream's frames on once they are on disk: the frames that came together (up to
/// [`SYNC_BATCH`]) are written to the relay's file and synced in one go (group commit), then
/// written to the bot in one flush. As the disk store's journal, one sync thread serves every
/// connection, and it syncs whatever every connection has given it meanwhile.
async fn synced<R, W, E>(mut from: R, mut to: W)
where
    R: Stream<Item = Result<Message, E>> + Unpin,
    W: Sink<Message> + Unpin,
{
    let mut ended = false;
    while !ended {
        let Some(Ok(first)) = from.next().await else { return };
        let mut batch = vec![first];
        while batch.len() < SYNC_BATCH {
            match from.next().now_or_never() {
                Some(Some(Ok(frame))) => batch.push(frame),
                Some(_) => {
                    ended = true;
                    break;
                }
                None => break,
            }
        }
        let mut bytes = Vec::new();
        for frame in &batch {
            bytes.extend_from_slice(&frame.clone().into_data());
        }
        if !journal().sync(bytes).await {
            return;
        }
        for frame in batch {
            if to.feed(frame).await.is_err() {
                return;
            }
        }
        if to.flush().await.is_err() {
            return;
        }
    }
}

/// The synced relay's sync thread, and how to give it frames.
struct Journal {
    tx: std::sync::mpsc::SyncSender<(Vec<u8>, tokio::sync::oneshot::Sender<()>)>,
}

impl Journal {
    /// Whether `bytes` reached the disk.
    async fn sync(&self, bytes: Vec<u8>) -> bool {
        let (done, synced) = tokio::sync::oneshot::channel();
        // A connection waits for its one batch before it gives another, so the queue holds at
        // most one per connection: `send` does not block on it.
        self.tx.send((bytes, done)).is_ok() && synced.await.is_ok()
    }
}

fn journal() -> &'static Journal {
    static JOURNAL_THREAD: std::sync::OnceLock<Journal> = std::sync::OnceLock::new();
    JOURNAL_THREAD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, tokio::sync::oneshot::Sender<()>)>(4096);
        std::thread::Builder::new()
            .name("relay-syncer".into())
            .spawn(move || {
                use std::os::unix::fs::FileExt;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(JOURNAL)
                    .expect("the synced relay's file");
                let zeros = vec![0u8; 1 << 20];
                for i in 0..JOURNAL_BYTES / zeros.len() as u64 {
                    file.write_all_at(&zeros, i * zeros.len() as u64).expect("fill the synced relay's file");
                }
                file.sync_all().expect("sync the synced relay's file");
                let mut at = 0u64;
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let mut bytes = Vec::new();
                    for (frames, _) in &mut waiting {
                        bytes.append(frames);
                    }
                    if at + bytes.len() as u64 > JOURNAL_BYTES {
                        at = 0;
                    }
                    file.write_all_at(&bytes, at).expect("write the synced relay's file");
                    file.sync_data().expect("sync the synced relay's file");
                    at += bytes.len() as u64;
                    for (_, done) in waiting {
                        let _ = done.send(());
                    }
                }
            })
            .expect("the synced relay's thread");
        Journal { tx }
    })
}
