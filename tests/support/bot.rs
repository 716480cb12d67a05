//! The scripted v11 bot (forward-WS client).

use std::collections::VecDeque;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

/// A scripted v11 bot on the bridge's forward WebSocket.
pub struct Bot {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    backlog: VecDeque<Value>,
    seq: u64,
}

impl Bot {
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        auth: Option<&str>,
    ) -> Result<Bot, tokio_tungstenite::tungstenite::Error> {
        let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
        if let Some(a) = auth {
            req.headers_mut().insert("Authorization", HeaderValue::from_str(a).unwrap());
        }
        let (ws, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Bot { ws, backlog: VecDeque::new(), seq: 0 })
    }

    /// Connects to `/` on a bridge that is still starting (a child process), retrying until it
    /// listens (at most [`WAIT`]), and reads its lifecycle `connect`.
    pub async fn connect_when_up(addr: SocketAddr) -> Bot {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut bot = loop {
            match Bot::connect(addr, "/", None).await {
                Ok(bot) => break bot,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await
                }
                Err(e) => panic!("the bridge never listened: {e}"),
            }
        };
        assert_eq!(bot.next_frame().await["sub_type"], "connect");
        bot
    }

    async fn read(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next()).await.expect("nothing from the bridge");
            match frame {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Close(c))) => panic!("closed by the bridge: {c:?}"),
                None => panic!("connection ended"),
                Some(Err(e)) => panic!("connection failed: {e}"),
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next frame (event or answer), heartbeats included.
    pub async fn next_frame(&mut self) -> Value {
        match self.backlog.pop_front() {
            Some(v) => v,
            None => self.read().await,
        }
    }

    /// The next event that is not a heartbeat (heartbeats do not extend the wait).
    pub async fn next_event(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no event from the bridge, only heartbeats");
            let f = self.next_frame().await;
            if f.get("post_type").is_some() && f["meta_event_type"] != "heartbeat" {
                return f;
            }
        }
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// Sends a frame the bridge may refuse mid-way (it can reset the connection while the frame
    /// is still being written).
    pub async fn try_send_raw(&mut self, text: &str) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.ws.send(Message::text(text.to_owned())).await
    }

    /// Calls an action and waits for the answer with the same echo; events read meanwhile are kept.
    pub async fn call(&mut self, action: &str, params: Value) -> Value {
        self.seq += 1;
        let echo = json!({"seq": self.seq});
        let req = json!({"action": action, "params": params, "echo": echo});
        self.send_raw(&req.to_string()).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no answer to {action}");
            let f = self.read().await;
            if f.get("post_type").is_none() && f["echo"] == echo {
                return f;
            }
            self.backlog.push_back(f);
        }
    }

    /// Reads until the bridge closes the connection; the close code it gave, if any.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await.expect("the bridge did not close") {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
