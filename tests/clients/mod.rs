//! Real v11 clients (nonebot2, and later aiocqhttp and Koishi) run as child processes by the
//! integration tests. Their packages live in `tests/clients/.venv` (Python) and
//! `tests/clients/node_modules` (Node), both installed by `tests/run.sh`.
//!
//! A client script talks to the test through single lines on its stdout (for instance
//! `CONNECTED 10001`); everything else it writes goes to stderr, which is kept and printed when
//! the test fails (or always with `ONEBOT_BRIDGE_TEST_VERBOSE=1`).
#![allow(clippy::disallowed_methods)] // test peers queue without bounds (STYLE: tests only)
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

/// How long a client may take to start and connect (the Python start-up is the slow part).
pub const START_WAIT: Duration = Duration::from_secs(30);

pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("clients")
}

/// The Python of the clients' venv: `$ONEBOT_BRIDGE_TEST_PYTHON`, else `tests/clients/.venv/bin/python`.
/// Panics (never skips) when it is missing.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ONEBOT_BRIDGE_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "ONEBOT_BRIDGE_TEST_PYTHON={} does not exist", p.display());
        return p;
    }
    let p = clients_dir().join(".venv").join("bin").join("python");
    assert!(
        p.exists(),
        "{} is missing: the real-client tests need their Python packages; run `bash tests/run.sh` \
         (it creates tests/clients/.venv and then runs the tests), or point ONEBOT_BRIDGE_TEST_PYTHON \
         at a Python that has tests/clients/requirements.txt installed",
        p.display()
    );
    p
}

/// A client child process, killed when dropped. Its stdin is a pipe that stays open as long as
/// this lives: a client script should exit at end of file there, so that it never outlives a
/// test process that was killed.
pub struct ClientProcess {
    name: String,
    child: Child,
    _stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl ClientProcess {
    /// Starts `program args…` in `tests/clients` with only `PATH` and `envs` in its environment
    /// (so that no stray variable of the caller, such as `PORT` or `HOST`, reaches the client's
    /// own configuration).
    pub fn spawn(name: &str, program: &Path, args: &[&str], envs: &[(&str, &str)]) -> ClientProcess {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(clients_dir())
            .env_clear()
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));

        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut err, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        ClientProcess { name: name.to_owned(), child, _stdin: stdin, lines, stderr }
    }

    /// What the client wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The frames the client traced on stderr (`frame -> …` sent, `frame <- …` received).
    pub fn traced_frames(&self, direction: &str) -> Vec<serde_json::Value> {
        let prefix = format!("frame {direction} ");
        self.stderr()
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (polling, up to `timeout`) until the client traced a frame in `direction` that
    /// satisfies `pred`, and returns it.
    pub async fn wait_frame(
        &self,
        direction: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(f) = self.traced_frames(direction).into_iter().find(|f| pred(f)) {
                return f;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} traced no such frame {direction} within {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the next stdout line starting with `word ` and returns the rest of it. Other
    /// lines are skipped. Panics if the client exits first or `timeout` passes.
    pub async fn wait_line(&mut self, word: &str, timeout: Duration) -> String {
        let prefix = format!("{word} ");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.strip_prefix(&prefix) {
                        return rest.to_owned();
                    }
                }
                Ok(None) => {
                    // stdout closed: the client is gone (give it a moment to finish stderr).
                    let status = self.child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("{} exited ({status:?}) before saying {word:?}", self.name);
                }
                Err(_) => panic!("{} did not say {word:?} within {timeout:?}", self.name),
            }
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("ONEBOT_BRIDGE_TEST_VERBOSE").is_some() {
            // Let the reader thread drain what the pipe still holds.
            std::thread::sleep(Duration::from_millis(100));
            eprintln!("----- {} stderr -----\n{}----- end of {} stderr -----", self.name, self.stderr(), self.name);
        }
    }
}

/// The `node` that runs the Node clients (Koishi): `$ONEBOT_BRIDGE_TEST_NODE`, else `node` on
/// `PATH`; and checks that `tests/clients/node_modules` (made by `tests/run.sh` with `npm ci`)
/// has the packages. Panics (never skips) when either is missing.
pub fn node() -> PathBuf {
    let node = match std::env::var_os("ONEBOT_BRIDGE_TEST_NODE") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("node"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| {
                panic!(
                    "`node` is not on PATH: the Koishi tests need Node.js 20 and npm (on Debian/Ubuntu: \
                     apt-get install nodejs npm), then `bash tests/run.sh` to install tests/clients/package.json"
                )
            }),
    };
    assert!(node.exists(), "ONEBOT_BRIDGE_TEST_NODE={} does not exist", node.display());
    let koishi = clients_dir().join("node_modules").join("koishi-plugin-adapter-onebot");
    assert!(
        koishi.exists(),
        "{} is missing: the Koishi tests need their npm packages; run `bash tests/run.sh` (it runs \
         `npm ci` in tests/clients and then the tests)",
        koishi.display()
    );
    node
}

/// nonebot2 (`tests/clients/nonebot_bot.py`: the OneBot v11 adapter as a forward-WebSocket client,
/// with nonebot's builtin `echo` plugin) on a bridge's forward WebSocket at `addr`.
pub struct NoneBot {
    pub process: ClientProcess,
    /// The account nonebot accepted the bridge's `lifecycle.connect` for.
    pub self_id: String,
}

impl NoneBot {
    /// Starts the bot and waits until nonebot has accepted the bridge's `lifecycle.connect`
    /// (its `on_bot_connect` hook prints `CONNECTED <self_id>`): from then on, events reach its
    /// matchers.
    pub async fn start(addr: std::net::SocketAddr, token: Option<&str>) -> NoneBot {
        let script = clients_dir().join("nonebot_bot.py");
        let urls = serde_json::json!([format!("ws://{addr}/")]).to_string();
        let mut envs = vec![("ONEBOT_V11_WS_URLS", urls.as_str())];
        if let Some(t) = token {
            envs.push(("ONEBOT_V11_ACCESS_TOKEN", t));
        }
        let mut process = ClientProcess::spawn("nonebot", &python(), &[script.to_str().unwrap()], &envs);
        let self_id = process.wait_line("CONNECTED", START_WAIT).await;
        NoneBot { process, self_id }
    }
}
