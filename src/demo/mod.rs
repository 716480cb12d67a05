//! The playground backend (placeholder until implemented).
pub mod page;

use std::sync::Arc;

use tokio::sync::watch;

/// The playground's world and chat page.
#[derive(Debug, Default)]
pub struct Playground {}

impl Playground {
    /// `base` is the URL the playground's pages and files are reached at, e.g.
    /// `http://127.0.0.1:5800/playground` (files at `{base}/files/{file_id}`).
    pub fn new(_base: String) -> Arc<Playground> {
        Arc::new(Playground {})
    }
}

/// Dials the bridge's reverse WebSocket at `url` with `token` and plays a OneBot v12
/// implementation until `shutdown`.
pub async fn run(_playground: Arc<Playground>, _url: String, _token: String, _shutdown: watch::Receiver<bool>) {}
