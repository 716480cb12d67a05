//! The playground's chat page (placeholder).
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::watch;

use super::Playground;
use crate::admin::{not_found, Body};

pub async fn handle(_req: Request<Incoming>, _playground: &Arc<Playground>, _shutdown: watch::Receiver<bool>) -> Response<Body> {
    not_found()
}
