//! The playground's transport: a OneBot v12 reverse WebSocket **client**
//! (`reference/onebot-v12.md` §2.4) dialling the bridge's link like any outside implementation —
//! `Authorization: Bearer <token>`, `Sec-WebSocket-Protocol: 12.playground` — then
//! `meta.connect` first and a `meta.status_update` with the bot online, every request answered
//! in JSON text, and the page's events forwarded as they happen.
//!
//! It redials with capped back-off ([`RETRY_MIN`] to [`RETRY_MAX`]) when the connection drops or
//! cannot be made, and at shutdown sends a Close frame and stops. Messages are at most
//! [`MAX_MESSAGE`] bytes (a 10 MiB file as base64 fits).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::actions::{version, IMPL, VERSION};
use super::{now, Playground};
use crate::net::{ws_config, Backoff};

pub const RETRY_MIN: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Largest WebSocket message either way.
pub const MAX_MESSAGE: usize = 32 << 20;
/// How long the Close handshake may take at shutdown.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn run(playground: Arc<Playground>, url: String, token: String, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let dialled = tokio::select! {
            dialled = dial(&url, &token) => dialled,
            _ = shutdown.changed() => return,
        };
        match dialled {
            Ok(ws) => {
                tracing::info!("playground connected to the bridge");
                backoff.reset();
                let stopping = session(&playground, ws, &mut shutdown).await;
                playground.set_connected(false);
                if stopping {
                    return;
                }
                tracing::warn!("playground's connection to the bridge dropped; redialling");
            }
            Err(error) => tracing::warn!(%error, "playground cannot reach the bridge; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn dial(url: &str, token: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request()?;
    let headers = req.headers_mut();
    let agent = format!("OneBot/12 (qq) {IMPL}/{VERSION}");
    for (name, value) in [
        ("User-Agent", agent),
        ("Sec-WebSocket-Protocol", format!("12.{IMPL}")),
        ("Authorization", format!("Bearer {token}")),
    ] {
        if name == "Authorization" && token.is_empty() {
            continue;
        }
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    let config = ws_config(MAX_MESSAGE, crate::decode::Side::Backend);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), false).await?;
    Ok(ws)
}

/// One connection, until it drops (false) or shutdown (true).
async fn session(playground: &Playground, mut ws: Ws, shutdown: &mut watch::Receiver<bool>) -> bool {
    // Subscribed before the hello, so no event between the two is lost.
    let mut events = playground.events.subscribe();
    let connect = json!({"id": format!("connect-{}", now()), "time": now(), "type": "meta", "detail_type": "connect",
        "sub_type": "", "version": version()});
    let status = json!({"id": format!("status-{}", now()), "time": now(), "type": "meta", "detail_type": "status_update",
        "sub_type": "", "status": {"good": true, "bots": [{"self": super::world::World::self_json(), "online": true}]}});
    for hello in [connect, status] {
        if ws.send(Message::text(hello.to_string())).await.is_err() {
            return false;
        }
    }
    playground.set_connected(true);
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let answer = playground.answer(text.as_str());
                    if ws.send(Message::text(answer)).await.is_err() {
                        return false;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let refuse = json!({"status": "failed", "retcode": 10001, "data": null,
                        "message": "the playground speaks JSON only, not MessagePack"});
                    if ws.send(Message::text(refuse.to_string())).await.is_err() {
                        return false;
                    }
                }
                Some(Ok(Message::Close(_))) | None => return false,
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    tracing::debug!(%error, "playground connection failed");
                    return false;
                }
            },
            event = events.recv() => match event {
                Ok(text) => {
                    if ws.send(Message::text(text.to_string())).await.is_err() {
                        return false;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "the playground's events outran the connection");
                }
                Err(broadcast::error::RecvError::Closed) => return false,
            },
            _ = shutdown.changed() => {
                let close = CloseFrame { code: CloseCode::Away, reason: "shutting down".into() };
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    let _ = ws.close(Some(close)).await;
                    while let Some(Ok(_)) = ws.next().await {}
                }).await;
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    type ServerWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    /// Accepts one connection as the bridge would, echoing the subprotocol; returns the socket
    /// and the headers that mattered.
    async fn accept(listener: &TcpListener) -> (ServerWs, String, String) {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut auth, mut proto) = (String::new(), String::new());
        #[allow(clippy::result_large_err)]
        let callback = |req: &Request, mut resp: Response| {
            let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            auth = header("authorization");
            proto = header("sec-websocket-protocol");
            resp.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(&proto).unwrap());
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, callback).await.unwrap();
        (ws, auth, proto)
    }

    async fn next_json(ws: &mut ServerWs) -> Value {
        loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(_) => panic!("closed"),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn hello_answers_redial_and_close_at_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let playground = Playground::new("http://127.0.0.1:1/playground".into());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(run(playground.clone(), url, "secret".into(), shutdown));

        let (mut ws, auth, proto) = accept(&listener).await;
        assert_eq!((auth.as_str(), proto.as_str()), ("Bearer secret", "12.playground"));
        let connect = next_json(&mut ws).await;
        assert_eq!((connect["type"].as_str(), connect["detail_type"].as_str()), (Some("meta"), Some("connect")));
        assert_eq!(connect["version"]["impl"], "playground");
        let status = next_json(&mut ws).await;
        assert_eq!(status["detail_type"], "status_update");
        assert_eq!(status["status"]["bots"][0]["online"], true);
        let ask = json!({"action": "get_self_info", "params": {}, "echo": "1"});
        ws.send(Message::text(ask.to_string())).await.unwrap();
        let answer = next_json(&mut ws).await;
        assert_eq!((answer["echo"].as_str(), answer["data"]["user_id"].as_str()), (Some("1"), Some("10000")));
        drop(ws);

        // Dropped: it dials again, says hello again, and closes properly at shutdown.
        let (mut ws, _, _) = accept(&listener).await;
        assert_eq!(next_json(&mut ws).await["detail_type"], "connect");
        stop.send(true).unwrap();
        let mut closed = false;
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Close(Some(frame)) = frame {
                closed = frame.code == CloseCode::Away;
            }
        }
        assert!(closed, "a Close frame at shutdown");
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }
}
