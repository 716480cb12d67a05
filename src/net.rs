//! Small pieces every transport shares: reconnect back-off, token checks, clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::decode::Side;

/// Capped exponential back-off with ±25 % jitter, for every client that redials.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff { min, max, current: min }
    }

    /// The next wait; doubles up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = rand::rng().random_range(0.75..1.25);
        base.mul_f64(jitter)
    }

    /// After a connection that worked.
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

/// The token a client presented, go-cqhttp style: the `Authorization` value after its first
/// space (`Bearer x`, `Token x`, any scheme; a value without a space is taken whole), else the
/// `access_token` query parameter.
pub fn presented_token(authorization: Option<&str>, query: Option<&str>) -> Option<String> {
    if let Some(h) = authorization {
        let h = h.trim();
        return Some(match h.split_once(' ') {
            Some((_, rest)) => rest.trim().to_owned(),
            None => h.to_owned(),
        });
    }
    let query = query?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "access_token").map(|(_, v)| v.into_owned())
}

/// Outcome of an access-token check: go-cqhttp answers 401 when no token is presented and 403
/// when a wrong one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Ok,
    Missing,
    Wrong,
}

pub fn check_token(expected: Option<&str>, presented: Option<&str>) -> Auth {
    match (expected, presented) {
        (None, _) => Auth::Ok,
        (Some(_), None) => Auth::Missing,
        (Some(e), Some(p)) if constant_time_eq(e.as_bytes(), p.as_bytes()) => Auth::Ok,
        (Some(_), Some(_)) => Auth::Wrong,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bytes tungstenite reads from a socket at a time, on a bot's connection ([`Side::Bots`]) and
/// on a backend's ([`Side::Backend`]). The buffer is allocated for every connection up front:
/// tungstenite's default of 128 KiB made each idle bot connection cost ~135 KiB of resident
/// memory. A larger frame still arrives whole (the buffer grows to the frame's length while it is
/// read), only in more reads.
///
/// Each read also zero-fills the room it reads into first, up to this size, even when the socket
/// has nothing to give (tungstenite 0.30, `FrameCodec::read_in`), so the whole buffer of every
/// connection is resident once it has been read from. A bot's requests are a few hundred bytes:
/// 2 KiB holds them several times over, and 1 000 idle bots cost 6 MiB less than with 8 KiB
/// (the load bench's `idle`: 29.1 → 23.1 MiB). A backend sends events in bursts, read together:
/// 8 KiB takes a dozen message events per read.
pub const BOT_READ_BUFFER: usize = 2 << 10;
/// See [`BOT_READ_BUFFER`].
pub const BACKEND_READ_BUFFER: usize = 8 << 10;
/// A frame is written out once this many bytes wait; every send of the bridge also flushes, so
/// this never delays one. The buffer is not allocated up front: it grows to what waits.
pub const WS_WRITE_BUFFER: usize = 8 << 10;

/// WebSocket limits: no message or frame above `max_message` bytes, a bounded write buffer, and
/// small per-connection buffers (a thousand idle bots must not cost more than the bridge itself).
pub fn ws_config(max_message: usize, side: Side) -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    let read_buffer = match side {
        Side::Bots => BOT_READ_BUFFER,
        Side::Backend => BACKEND_READ_BUFFER,
    };
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
        // tungstenite wants the write-buffer cap above the write buffer; one whole message fits.
        .max_write_buffer_size(max_message.saturating_mul(2).max(WS_WRITE_BUFFER * 2))
}

/// The token check every WebSocket server of the bridge runs before the upgrade: 401 when no
/// token is presented, 403 when a wrong one is.
#[allow(clippy::result_large_err)] // tungstenite's own error type
pub fn check_upgrade(
    expected: Option<&str>,
    req: &tokio_tungstenite::tungstenite::handshake::server::Request,
) -> Result<(), tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
    use tokio_tungstenite::tungstenite::http::StatusCode;
    let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let presented = presented_token(authorization, req.uri().query());
    let (status, body) = match check_token(expected, presented.as_deref()) {
        Auth::Ok => return Ok(()),
        Auth::Missing => (StatusCode::UNAUTHORIZED, "access token required"),
        Auth::Wrong => (StatusCode::FORBIDDEN, "wrong access token"),
    };
    let mut resp = tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(Some(body.to_owned()));
    *resp.status_mut() = status;
    Err(resp)
}

/// How long a server waits for a new connection's request (the WebSocket handshake, or the request
/// line [`asks_for_path_under`] looks at).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the request that opens `stream` is a `GET` or `HEAD` of a path under `prefix`, looked
/// at without reading it (`peek`), so that the connection can still go on to a WebSocket
/// handshake. `None`: the peer closed, or sent too little to tell `within` (a server gives it
/// [`HANDSHAKE_TIMEOUT`]).
pub async fn asks_for_path_under(stream: &tokio::net::TcpStream, prefix: &str, within: Duration) -> Option<bool> {
    let heads = [format!("GET {prefix}"), format!("HEAD {prefix}")];
    let mut buf = vec![0u8; heads.iter().map(String::len).max().unwrap_or(0)];
    let look = async {
        let mut pause = Duration::from_millis(2);
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            let seen = &buf[..n];
            if heads.iter().any(|h| seen.starts_with(h.as_bytes())) {
                return Some(true);
            }
            if !heads.iter().any(|h| h.as_bytes().starts_with(seen)) {
                return Some(false);
            }
            // The request line is arriving in pieces (the bytes already there stay readable,
            // so waiting for readiness would return at once): look again, less and less often,
            // so that a peer that stops halfway costs a few wake-ups, not one every few ms.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    };
    tokio::time::timeout(within, look).await.ok().flatten()
}

/// Completes a server-side WebSocket handshake within 10 s, with the bridge's size limits for
/// that side. A refused or failed handshake is logged and gives `None`.
pub async fn accept_ws<C>(
    stream: tokio::net::TcpStream,
    callback: C,
    max_message: usize,
    side: Side,
) -> Option<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>>
where
    C: tokio_tungstenite::tungstenite::handshake::server::Callback + Unpin,
{
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config(max_message, side)));
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => Some(ws),
        Ok(Err(error)) => {
            tracing::info!(%error, "WebSocket handshake refused or failed");
            None
        }
        Err(_) => {
            tracing::info!("WebSocket handshake timed out");
            None
        }
    }
}

/// The accept loop every server of the bridge runs: accepts until `shutdown`, at most `max`
/// connections at once (beyond that it stops accepting until one ends: backpressure), each run by
/// `handle` as its own task; then waits for them within `grace` and aborts the rest.
pub async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    max: usize,
    grace: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
    mut handle: F,
) where
    F: FnMut(tokio::net::TcpStream, std::net::SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept(), if connections.len() < max => match accepted {
                Ok((stream, peer)) => {
                    // Events and answers are small frames written as they come: without this,
                    // Nagle's algorithm holds each behind the peer's delayed ACK (tens of ms).
                    let _ = stream.set_nodelay(true);
                    connections.spawn(handle(stream, peer));
                }
                Err(error) => {
                    tracing::warn!(%error, what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(left = connections.len(), what, "connections still open after the grace period; aborted");
        connections.abort_all();
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`asks_for_path_under`] says of a connection that sends `pieces`, one write each,
    /// 20 ms apart (then keeps the connection open, or closes it when `close`).
    async fn asks_for_files(pieces: &[&str], close: bool) -> Option<bool> {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pieces: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        let client = tokio::spawn(async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            for piece in pieces {
                tcp.write_all(piece.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !close {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        let (stream, _) = listener.accept().await.unwrap();
        let said = asks_for_path_under(&stream, "/files/", Duration::from_millis(500)).await;
        client.abort();
        said
    }

    #[tokio::test]
    async fn a_request_for_files_is_told_apart_from_a_handshake_without_reading_it() {
        assert_eq!(asks_for_files(&["GET /files/abc HTTP/1.1\r\n\r\n"], false).await, Some(true));
        assert_eq!(asks_for_files(&["HEAD /files/abc HTTP/1.1\r\n\r\n"], false).await, Some(true));
        assert_eq!(asks_for_files(&["GET / HTTP/1.1\r\nUpgrade: websocket\r\n"], false).await, Some(false));
        assert_eq!(asks_for_files(&["GET /api HTTP/1.1\r\n"], false).await, Some(false));
        assert_eq!(asks_for_files(&["POST /files/abc HTTP/1.1\r\n"], false).await, Some(false));
        // In pieces, however it is cut.
        assert_eq!(asks_for_files(&["G", "ET /fi", "les/abc HTTP/1.1\r\n"], false).await, Some(true));
        assert_eq!(asks_for_files(&["GET /f", "oo HTTP/1.1\r\n"], false).await, Some(false));
        // Too little to tell in time (what is left unread can still be peeked at after the peer
        // closed), or nothing at all: nothing to serve.
        assert_eq!(asks_for_files(&["GET /fi"], true).await, None);
        assert_eq!(asks_for_files(&["GET /fi"], false).await, None);
        assert_eq!(asks_for_files(&[], true).await, None);
    }

    #[test]
    fn tokens_are_read_like_go_cqhttp() {
        assert_eq!(presented_token(Some("Bearer abc"), None).as_deref(), Some("abc"));
        assert_eq!(presented_token(Some("Token abc"), Some("access_token=zzz")).as_deref(), Some("abc"));
        assert_eq!(presented_token(Some("abc"), None).as_deref(), Some("abc"));
        assert_eq!(presented_token(None, Some("a=1&access_token=x%20y")).as_deref(), Some("x y"));
        assert_eq!(presented_token(None, Some("a=1")), None);
        assert_eq!(check_token(Some("t"), None), Auth::Missing);
        assert_eq!(check_token(Some("t"), Some("u")), Auth::Wrong);
        assert_eq!(check_token(Some("t"), Some("t")), Auth::Ok);
        assert_eq!(check_token(None, None), Auth::Ok);
    }

    #[test]
    fn small_message_limits_make_a_valid_ws_config() {
        for (side, read) in [(Side::Bots, BOT_READ_BUFFER), (Side::Backend, BACKEND_READ_BUFFER)] {
            for max in [1, 4096, 64 << 10, 16 << 20] {
                let c = ws_config(max, side);
                assert!(c.max_write_buffer_size > c.write_buffer_size, "{max}");
                assert!(c.max_write_buffer_size >= max, "a whole message fits: {max}");
                assert_eq!(c.max_message_size, Some(max));
                assert_eq!(c.read_buffer_size, read, "{side:?}");
            }
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert!((75..=125).contains(&delays[0]), "{delays:?}");
        assert!((600..=1000).contains(&delays[5]), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
