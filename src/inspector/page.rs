//! The inspector's page and streams on the admin listener (placeholder).
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::watch;

use super::Inspector;
use crate::admin::{not_found, Body};
use crate::hub::Hub;

pub async fn handle(
    _req: Request<Incoming>,
    _hub: &Arc<Hub>,
    _inspector: &Arc<Inspector>,
    _shutdown: watch::Receiver<bool>,
) -> Response<Body> {
    not_found()
}
