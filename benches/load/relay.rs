//! The yardstick: a bare WebSocket relay (tokio-tungstenite, no parsing, no translation). For
//! every connection a bot makes it dials the upstream (the bench's v12 generator) and pipes
//! frames both ways untouched, in one of two ways ([`Flush`]): batched, each direction with
//! `forward` (frames are batched into a flush when more are ready), or frame by frame, each
//! direction a loop of `next` and `send` (a write to the socket per frame: the relay as it is
//! usually written, and as the issue that set the bridge's targets measured it).
//!
//! It runs as a child process, like the bridge: the bench binary started again with
//! [`ENV`]`=<port>,<upstream url>`. Nagle's algorithm is off on both of its sockets, as latency
//! needs (with it on, a small frame written while an earlier one is unacknowledged waits for the
//! peer's delayed ACK: about 40 ms on Linux). It stops when its stdin closes, so it never
//! outlives the bench, however the bench ends.

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// The environment variable that turns the bench binary into the relay.
pub const ENV: &str = "ONEBOT_LOAD_RELAY";

/// How the relay writes what it reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flush {
    /// Frames that are ready together go out in one write.
    Batched,
    /// One write per frame.
    PerFrame,
}

impl Flush {
    fn tag(self) -> &'static str {
        match self {
            Flush::Batched => "batched",
            Flush::PerFrame => "per-frame",
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
    let flush = [Flush::Batched, Flush::PerFrame].into_iter().find(|f| f.tag() == flush).expect("relay flush");
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
