//! The yardstick: a bare WebSocket relay (tokio-tungstenite, no parsing, no translation). For
//! every connection a bot makes it dials the upstream (the bench's v12 generator) and pipes
//! frames both ways untouched, each direction with `forward` (frames are batched into a flush
//! when more are ready).
//!
//! It runs as a child process, like the bridge: the bench binary started again with
//! [`ENV`]`=<port>,<upstream url>`. Nagle's algorithm is off on both of its sockets, as latency
//! needs (with it on, a small frame written while an earlier one is unacknowledged waits for the
//! peer's delayed ACK: about 40 ms on Linux). It stops when its stdin closes, so it never
//! outlives the bench, however the bench ends.

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// The environment variable that turns the bench binary into the relay.
pub const ENV: &str = "ONEBOT_LOAD_RELAY";

/// Runs the relay as `spec` (`<port>,<upstream url>`) says, until stdin closes.
pub fn main(spec: &str) {
    let (port, upstream) = spec.split_once(',').expect("relay spec: <port>,<upstream url>");
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
                        tokio::spawn(pipe(stream, upstream.clone()));
                    }
                }
            } => {}
        }
    });
}

/// One bot connection and its upstream, until either side ends.
async fn pipe(stream: TcpStream, upstream: String) {
    let _ = stream.set_nodelay(true);
    let Ok(bot) = tokio_tungstenite::accept_async(stream).await else { return };
    let Ok((up, _)) = tokio_tungstenite::connect_async_with_config(upstream.as_str(), None, true).await else { return };
    let (bot_tx, bot_rx) = bot.split();
    let (up_tx, up_rx) = up.split();
    tokio::select! {
        _ = bot_rx.forward(up_tx) => {}
        _ = up_rx.forward(bot_tx) => {}
    }
}
