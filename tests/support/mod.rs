//! Test peers: a scripted v12 implementation and a scripted v11 bot, plus a helper that starts
//! the real bridge between them on port 0.
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)
#![allow(dead_code, unused_imports)]

mod backend;
mod bot;
pub mod ntqq;
pub mod pki;
mod ports;
pub mod redis;

use std::time::Duration;

pub use backend::*;
pub use bot::*;
pub use ports::free_port;

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

/// A child process (the bridge binary) killed when the test ends, however it ends.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The bridge binary started with `args` (output discarded), killed when the guard drops.
pub fn spawn_bridge<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> ChildGuard {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_onebot-bridge"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// A kibibyte figure (`VmRSS:`, `VmHWM:`) from `/proc/<pid>/status`.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
