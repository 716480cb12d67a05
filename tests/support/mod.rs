//! Test peers: a scripted v12 implementation and a scripted v11 bot, plus a helper that starts
//! the real bridge between them on port 0.
#![allow(dead_code, unused_imports)]

mod backend;
mod bot;

use std::time::Duration;

pub use backend::*;
pub use bot::*;

use onebot_bridge::config::{Config, FileConfig, Overrides};
use onebot_bridge::Bridge;

pub const WAIT: Duration = Duration::from_secs(10);

/// Starts the real bridge between `backend` and a v11 forward-WS endpoint on port 0.
pub async fn start_bridge(backend: &FakeBackend, extra: impl FnOnce(&mut Overrides)) -> Bridge {
    let mut o = Overrides { backend_ws: vec![backend.url()], ws: vec!["127.0.0.1:0".into()], ..Default::default() };
    extra(&mut o);
    let config = Config::resolve(FileConfig::default(), o).unwrap();
    Bridge::start(config).await.unwrap()
}
