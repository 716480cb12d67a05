//! v12 HTTP, bridge as **client**: every action is a `POST /` to the implementation's HTTP server
//! (JSON, or MessagePack when configured), answered in the response body. Events come from the
//! webhook receiver paired with the link, or, without one, from `get_latest_events` long polling.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::core::{v12, CallError};
use crate::v12::codec;

/// Sends actions to one implementation's HTTP server.
#[derive(Debug, Clone)]
pub struct HttpCaller {
    client: Client<HttpConnector, Full<Bytes>>,
    url: url::Url,
    token: Option<String>,
    msgpack: bool,
    max_body: usize,
}

impl HttpCaller {
    pub fn new(url: url::Url, token: Option<String>, msgpack: bool, max_body: usize) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        HttpCaller { client, url, token, msgpack, max_body }
    }

    /// One request, one answer. The caller bounds the time.
    pub async fn call(&self, req: &v12::Request) -> Result<v12::Response, CallError> {
        let body = codec::encode(req, self.msgpack);
        let mut builder = hyper::Request::post(self.url.as_str())
            .header(CONTENT_TYPE, if self.msgpack { "application/msgpack" } else { "application/json" })
            .header(USER_AGENT, concat!("onebot-bridge/", env!("CARGO_PKG_VERSION")));
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = builder.body(Full::new(Bytes::from(body))).map_err(|e| CallError::Link(e.to_string()))?;
        let resp = self.client.request(request).await.map_err(|e| CallError::Unavailable(e.to_string()))?;
        let status = resp.status();
        let msgpack = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/msgpack"));
        let bytes = Limited::new(resp.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|e| CallError::Link(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(CallError::Link(format!("HTTP {status} from the backend")));
        }
        let value = codec::decode(&bytes, msgpack).map_err(|e| CallError::Link(e.to_string()))?;
        v12::Response::from_value(value).ok_or_else(|| CallError::Link("the answer is not a OneBot response".into()))
    }
}

/// Runs an HTTP link: events from the webhook receiver on `webhook`, else by polling
/// `get_latest_events`. Returns when `shutdown` turns true.
pub async fn run(
    link: crate::v12::LinkHandle,
    webhook: Option<tokio::net::TcpListener>,
    token: Option<String>,
    hub: std::sync::Arc<crate::hub::Hub>,
    limits: crate::config::Limits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = (link, webhook, token, hub, limits);
    tracing::error!("the v12 HTTP link is not implemented yet");
    let _ = shutdown.changed().await;
}
