//! v12 reverse WebSocket, bridge as **server**: the implementation dials the bridge.

/// Accepts implementation connections until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    token: Option<String>,
    msgpack: bool,
    action_timeout: std::time::Duration,
    hub: std::sync::Arc<crate::hub::Hub>,
    limits: crate::config::Limits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = (listener, token, msgpack, action_timeout, hub, limits);
    tracing::error!("the v12 reverse WebSocket server is not implemented yet");
    let _ = shutdown.changed().await;
}
