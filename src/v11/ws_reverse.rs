//! v11 reverse WebSocket, bridge as **client** (go-cqhttp `servers: - ws-reverse:`).

/// Keeps one connection per bot account per URL until `shutdown`.
pub async fn run(
    target: crate::config::WsReverse,
    hub: std::sync::Arc<crate::hub::Hub>,
    limits: crate::config::Limits,
    heartbeat: Option<std::time::Duration>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = (target, hub, limits, heartbeat);
    tracing::error!("v11 reverse WebSocket is not implemented yet");
    let _ = shutdown.changed().await;
}
