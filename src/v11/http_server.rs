//! v11 HTTP API, bridge as **server** (go-cqhttp `servers: - http: address`).

/// Serves the HTTP API until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: crate::config::HttpServer,
    hub: std::sync::Arc<crate::hub::Hub>,
    limits: crate::config::Limits,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let _ = (listener, server, hub, limits);
    tracing::error!("the v11 HTTP API is not implemented yet");
    let _ = shutdown.changed().await;
}
