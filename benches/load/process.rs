//! The process under test, as a child of the bench: killed when dropped (so a panicking run
//! leaves nothing behind), in a scratch directory of its own, and measured from the outside
//! through `/proc` (CPU time, resident memory).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// A running child process; killed and waited for when dropped, its directory removed.
pub struct Child {
    inner: std::process::Child,
    dir: PathBuf,
}

/// Resident memory of a process, in KiB: now (`VmRSS`) and at its peak (`VmHWM`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Child {
    /// Starts `cmd` in `dir` (created here, removed on drop) with its stderr in `dir/stderr.log`
    /// and no stdin except what the command set itself.
    pub fn spawn(mut cmd: Command, dir: PathBuf) -> Child {
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let log = File::create(dir.join("stderr.log")).expect("log file");
        // Settings meant for a real deployment must not leak into the one under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ONEBOT_BRIDGE_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(&dir).stdout(Stdio::null()).stderr(log);
        let inner = cmd.spawn().expect("start the process under test");
        Child { inner, dir }
    }

    /// How it ended, if it did.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.inner.try_wait().ok().flatten()
    }

    /// User plus system CPU time of the whole process (every thread) so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(self.inner.id())
    }

    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.inner.id())).unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        Memory { rss_kib: kib("VmRSS:"), hwm_kib: kib("VmHWM:") }
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// User plus system CPU time of process `pid` (every thread) so far; zero if `/proc` does not say.
pub fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // Fields 14 (utime) and 15 (stime), counted from 3 (state) just after the parenthesis.
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    Duration::from_secs_f64(ticks as f64 / ticks_per_second())
}

/// A directory under the system's temporary directory, unique to this bench process and call.
pub fn scratch_dir(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("onebot-bridge-load-{}-{n}-{label}", std::process::id()))
}

pub use crate::ports::free_port;

/// This process's soft limit on open files (children inherit it), if `/proc` says.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` CPU times (`getconf CLK_TCK`; 100 on
/// every common Linux when it cannot be asked).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &f64| t > 0.0)
            .unwrap_or(100.0)
    })
}
