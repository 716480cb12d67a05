//! A `redis-server` of the bench's own, for the Redis store's figures (`store.rs`, `load.rs`):
//! on a free loopback port, its data in a temporary directory of its own, with the persistence
//! `docs/replicas.md` recommends (`--save "" --appendonly yes --appendfsync everysec`: an
//! append-only file synced once a second, no snapshots). Killed, and its directory removed,
//! when dropped.
//!
//! Debian's `redis-server` on `PATH`; where there is none, [`RedisServer::start`] says so and
//! the benches measure the other stores only.

use crate::ports::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a bench prints when it leaves Redis out.
pub const MISSING: &str = "redis-server is not installed (Debian: apt-get install redis-server)";
/// How long a server may take to start answering.
const START_WAIT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits until it answers; `None` when `redis-server` is not installed.
    /// Any other failure to start is a panic: the bench would otherwise quietly measure less.
    pub fn start(label: &str) -> Option<RedisServer> {
        let dir = std::env::temp_dir().join(format!(
            "onebot-bridge-bench-redis-{}-{label}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("a directory for redis-server");
        let port = free_port();
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(&dir)
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", "redis.log"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
            Err(e) => panic!("redis-server did not start: {e}"),
        };
        let mut server = RedisServer { child, port, dir };
        let deadline = Instant::now() + START_WAIT;
        while !server.command(&["PING"]).is_some_and(|r| r.starts_with("+PONG")) {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server exited with {status}; see {}", server.dir.join("redis.log").display());
            }
            assert!(Instant::now() < deadline, "redis-server on port {port} did not answer within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    #[allow(dead_code)] // used by the load bench only
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `used_memory` from `INFO memory`, in bytes (0 if the server does not say).
    pub fn used_memory(&self) -> u64 {
        let info = self.command(&["INFO", "memory"]).unwrap_or_default();
        info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    /// One command in the Redis protocol; the raw reply (its first read), or `None` when the
    /// server does not answer.
    fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(request.as_bytes()).ok()?;
        let mut buf = vec![0; 64 * 1024];
        let n = s.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `redis-server` is on `PATH` (it answers `--version`).
#[allow(dead_code)] // used by the load bench only
pub fn installed() -> bool {
    Command::new("redis-server").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}
