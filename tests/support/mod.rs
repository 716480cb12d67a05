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

/// `GET path` over a plain TCP connection to `addr` (`Connection: close`): the whole answer,
/// head and body, within [`WAIT`]. With `split`, the request's first `split` bytes go alone and
/// the rest 50 ms later (a request line that arrives in pieces).
pub async fn raw_get(addr: std::net::SocketAddr, path: &str, split: Option<usize>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (first, rest) = request.as_bytes().split_at(split.unwrap_or(request.len()).min(request.len()));
    let get = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(first).await.unwrap();
        if !rest.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tcp.write_all(rest).await.unwrap();
        }
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        answer
    };
    tokio::time::timeout(WAIT, get).await.unwrap_or_else(|_| panic!("no answer to GET {path} within {WAIT:?}"))
}

/// Starts the real bridge between `backend` and a v11 forward-WS endpoint on port 0.
pub async fn start_bridge(backend: &FakeBackend, extra: impl FnOnce(&mut Overrides)) -> Bridge {
    let mut o = Overrides { backend_ws: vec![backend.url()], ws: vec!["127.0.0.1:0".into()], ..Default::default() };
    extra(&mut o);
    let config = Config::resolve(FileConfig::default(), o).unwrap();
    Bridge::start(config).await.unwrap()
}

/// The value of one series the bridge's metrics show (`series` as the text has it, labels
/// included), if it shows it.
fn metric_sample(bridge: &Bridge, series: &str) -> Option<String> {
    let metrics = bridge.hub().metrics.encode();
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

/// Events the bridge counted as lost for a slow bot of account `self_id`
/// (`onebot_bridge_events_dropped_total{reason="slow_bot"}`; none counted yet: 0).
pub fn dropped_for_slow_bots(bridge: &Bridge, self_id: i64) -> u64 {
    let series = format!(r#"onebot_bridge_events_dropped_total{{self_id="{self_id}",reason="slow_bot"}}"#);
    metric_sample(bridge, &series).map_or(0, |n| n.parse().unwrap())
}

/// Seconds account `self_id`'s events waited for a slow bot to make room
/// (`onebot_bridge_slow_bot_wait_seconds_total`).
pub fn slow_bot_wait_seconds(bridge: &Bridge, self_id: i64) -> f64 {
    let series = format!(r#"onebot_bridge_slow_bot_wait_seconds_total{{self_id="{self_id}"}}"#);
    metric_sample(bridge, &series).unwrap_or_else(|| panic!("no {series} in the metrics")).parse().unwrap()
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
