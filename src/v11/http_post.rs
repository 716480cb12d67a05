//! v11 HTTP POST, bridge as **client**: events POSTed to the bot's webhook (go-cqhttp `http.post`).

/// Posts every account's events to one bot URL until `shutdown`.
pub async fn run(
    post: crate::config::HttpPost,
    hub: std::sync::Arc<crate::hub::Hub>,
    limits: crate::config::Limits,
    heartbeat: Option<std::time::Duration>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = (post, hub, limits, heartbeat);
    tracing::error!("v11 HTTP POST is not implemented yet");
    let _ = shutdown.changed().await;
}
