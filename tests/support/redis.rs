//! A real `redis-server` for the Redis id store's tests: on a free loopback port, with its
//! data in a directory of its own (append-only file, fsync every second), killed when dropped,
//! and able to stop and start again on the same port and directory (to prove what survives a
//! restart).
//!
//! [`RedisServer::start_tls`] starts one that speaks TLS only (`--port 0 --tls-port …`), with a
//! certificate authority and a server certificate for 127.0.0.1 made by the test; its CA file is
//! [`RedisServer::ca_file`], and [`RedisServer::command`] speaks TLS to it too.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_rustls::rustls;

/// How long a server may take to start answering.
const START_WAIT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    /// A TLS-only server's client side: trusts the test's CA.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The files a TLS server is started with, in its directory.
const CA_PEM: &str = "ca.pem";
const CERT_PEM: &str = "server.pem";
const KEY_PEM: &str = "server-key.pem";

impl RedisServer {
    /// Starts a server in a new directory under the system's temp directory.
    pub fn start() -> RedisServer {
        let mut server = RedisServer { child: None, port: super::free_port(), dir: new_dir(), tls: None };
        server.restart();
        server
    }

    /// Starts a server that speaks TLS only, its certificate for 127.0.0.1 and localhost signed
    /// by a CA made now ([`RedisServer::ca_file`]). Fails saying so when this `redis-server` was
    /// built without TLS.
    pub fn start_tls() -> RedisServer {
        let dir = new_dir();
        let pki = super::pki::TestPki::new();
        std::fs::write(dir.join(CA_PEM), &pki.ca_pem).unwrap();
        std::fs::write(dir.join(CERT_PEM), &pki.server_pem).unwrap();
        std::fs::write(dir.join(KEY_PEM), &pki.server_key_pem).unwrap();
        let client = pki.client_config();
        let mut server = RedisServer { child: None, port: super::free_port(), dir, tls: Some(Arc::new(client)) };
        server.restart();
        server
    }

    /// `redis://…`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The PEM file of the CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls.is_some(), "ca_file: this server was not started with start_tls");
        self.dir.join(CA_PEM)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server gracefully (SIGTERM: the append-only file is flushed) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + START_WAIT;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same port and directory and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let mut command = Command::new("redis-server");
        let port = self.port.to_string();
        if self.tls.is_some() {
            let file = |name: &str| self.dir.join(name).into_os_string();
            command.args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"]);
            command.arg("--tls-cert-file").arg(file(CERT_PEM)).arg("--tls-key-file").arg(file(KEY_PEM));
            command.arg("--tls-ca-cert-file").arg(file(CA_PEM));
        } else {
            command.args(["--port", &port]);
        }
        // Errors before the log file is open (an option this build does not know) go to stderr.
        let stderr = std::fs::File::create(self.dir.join("stderr.log")).unwrap();
        let child = command
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(&self.dir)
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", "redis.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server is missing: apt-get install redis-server")
            }
            Err(e) => panic!("redis-server did not start: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        while !self.answers() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let said = ["stderr.log", "redis.log"]
                    .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
                    .join("");
                if self.tls.is_some() {
                    panic!(
                        "redis-server exited with {status} when started with --tls-port: this redis-server \
                         may lack TLS support (Debian's redis-server has it; a source build needs BUILD_TLS=yes). \
                         It said:\n{said}"
                    );
                }
                panic!("redis-server exited with {status}. It said:\n{said}");
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server answers PING with PONG (and has loaded its data: it answers
    /// `-LOADING` until then).
    fn answers(&self) -> bool {
        self.command(&["PING"]).is_some_and(|r| r.starts_with("+PONG"))
    }

    /// One command in the Redis protocol (over TLS to a TLS server); the raw first reply, or
    /// `None` if the server is down.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let mut buf = vec![0; 64 * 1024];
        let n = match &self.tls {
            None => {
                let mut s = s;
                s.write_all(req.as_bytes()).ok()?;
                s.read(&mut buf).ok()?
            }
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
                let conn = rustls::ClientConnection::new(config.clone(), name).ok()?;
                let mut s = rustls::StreamOwned::new(conn, s);
                s.write_all(req.as_bytes()).ok()?;
                s.flush().ok()?;
                s.read(&mut buf).ok()?
            }
        };
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// `used_memory` from `INFO memory`, in bytes.
    pub fn used_memory(&self) -> u64 {
        let info = self.command(&["INFO", "memory"]).expect("redis-server answers INFO");
        let line = info.lines().find(|l| l.starts_with("used_memory:")).expect("used_memory in INFO");
        line["used_memory:".len()..].trim().parse().expect("used_memory is a number")
    }
}

/// A new directory under the system's temp directory.
fn new_dir() -> PathBuf {
    // Numbered within the process: two tests may start a server in the same nanosecond, and two
    // servers in one directory break each other's append-only files.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "ob-redis-{}-{n}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
