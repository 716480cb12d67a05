//! One process under test (the bridge in one configuration, or the relay) with a generator of
//! its own, and the runs the load bench makes against it: events (windowed, paced or at full
//! speed, to one bot or fanned out), `send_group_msg` calls, idle connections. The Redis
//! target has a `redis-server` of its own for each process, as the disk target has a fresh
//! data directory.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::peers::{connect, event_frames, event_frames_v11, first_frame, receive, Generator, Tracker};
use crate::process::{cpu_of, free_port, scratch_dir, Child, Memory};
use crate::redis_server::RedisServer;
use crate::relay;

const CONNECT_WITHIN: Duration = Duration::from_secs(10);
/// How long a bot waits for the answer to one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What is measured.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// The bridge as it starts by default: ids in the disk store.
    Disk,
    /// The bridge with `--store redis://…`: ids on a `redis-server` of its own (started by the
    /// bench; see `support/redis.rs` for its persistence settings).
    Redis,
    /// The bridge with `--ephemeral`: ids in memory only.
    Ephemeral,
    /// The bridge with `--ephemeral` on a OneBot v11 link (the generator speaks as NapCat): the
    /// v12 path's figures plus the link's conversion at its edge.
    V11,
    /// The bare relay, frames ready together written at once.
    Relay,
    /// The bare relay, a write per frame.
    RelayPerFrame,
    /// The bare relay, the upstream's frames synced to disk before they go on: the disk
    /// store's yardstick for what the disk itself costs.
    RelaySynced,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Disk,
        Target::Redis,
        Target::Ephemeral,
        Target::V11,
        Target::Relay,
        Target::RelayPerFrame,
        Target::RelaySynced,
    ];

    /// One of the relays, the yardsticks.
    pub fn is_relay(self) -> bool {
        matches!(self, Target::Relay | Target::RelayPerFrame | Target::RelaySynced)
    }

    pub fn name(self) -> &'static str {
        match self {
            Target::Disk => "bridge (disk)",
            Target::Redis => "bridge (redis)",
            Target::Ephemeral => "bridge (--ephemeral)",
            Target::V11 => "bridge (v11 link, eph.)",
            Target::Relay => "relay (batched)",
            Target::RelayPerFrame => "relay (per frame)",
            Target::RelaySynced => "relay (synced)",
        }
    }

    /// A short name for the table's ratio columns and scratch directories.
    pub fn label(self) -> &'static str {
        match self {
            Target::Disk => "disk",
            Target::Redis => "redis",
            Target::Ephemeral => "ephemeral",
            Target::V11 => "v11",
            Target::Relay => "relay",
            Target::RelayPerFrame => "frame-relay",
            Target::RelaySynced => "synced-relay",
        }
    }
}

/// The images events carry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Images {
    /// One `file_id` for every event: the bridge resolves it once.
    Shared,
    /// A new `file_id` per event: the bridge calls `get_file` for each, while events stream in.
    Distinct,
}

/// One run of events.
pub struct EventRun {
    /// Keeps event and message ids unique among the runs one process sees.
    pub tag: &'static str,
    pub n: usize,
    /// Bots on `/`, each receiving every event.
    pub bots: usize,
    /// Events sent and not yet delivered at most; `None`: as fast as the sockets take them.
    pub window: Option<usize>,
    /// Events per second, on a steady clock; `None`: no pacing. A paced run stops sending once
    /// a second's worth of events is sent and not delivered: past that, latency is queueing.
    pub pace: Option<f64>,
    pub images: Images,
    /// No new event is sent after this long (the run then counts what it sent).
    pub budget: Duration,
    /// The run gives up when nothing is delivered for this long, or when this much has passed
    /// in all.
    pub stall_after: Duration,
    pub deadline: Duration,
}

/// What one run of events saw.
pub struct EventOutcome {
    pub sent: usize,
    pub delivered: usize,
    pub strays: usize,
    /// From the first send to the last delivery.
    pub elapsed: Duration,
    /// CPU time (user + sys) the process under test spent meanwhile.
    pub cpu: Duration,
    /// CPU time the store's server (`redis-server`) spent meanwhile, for the Redis target.
    pub store_cpu: Option<Duration>,
    /// Send to delivery, sorted, the first tenth of the run (warm-up) left out.
    pub latencies: Vec<Duration>,
    /// The longest time without a delivery (from the first send on).
    pub longest_gap: Duration,
    /// `get_file` calls the generator answered meanwhile.
    pub get_file: usize,
    /// Events received whose picture came without a URL.
    pub without_url: usize,
    /// Why the run stopped waiting, if it did.
    pub gave_up: Option<String>,
    /// A paced run fell a second behind its pace and stopped sending.
    pub fell_behind: bool,
}

impl EventOutcome {
    pub fn per_second(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Every event sent was delivered to every bot, once.
    pub fn complete(&self) -> bool {
        self.gave_up.is_none() && self.delivered == self.sent && self.strays == 0
    }

    pub fn cpu_per_event(&self) -> Duration {
        self.cpu.div_f64(self.delivered.max(1) as f64)
    }

    pub fn store_cpu_per_event(&self) -> Option<Duration> {
        self.store_cpu.map(|cpu| cpu.div_f64(self.delivered.max(1) as f64))
    }

    pub fn summary(&self) -> String {
        format!(
            "{} of {} sent delivered{}{}",
            self.delivered,
            self.sent,
            if self.strays > 0 { format!(", {} strays", self.strays) } else { String::new() },
            self.gave_up.as_ref().map(|g| format!(" ({g})")).unwrap_or_default()
        )
    }
}

/// What one run of calls saw.
pub struct CallOutcome {
    pub elapsed: Duration,
    /// Each call's latency, sorted.
    pub latencies: Vec<Duration>,
    /// CPU time (user + system) the process under test spent over the run.
    pub cpu: Duration,
}

impl CallOutcome {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn cpu_per_call(&self) -> Duration {
        self.cpu.div_f64(self.latencies.len().max(1) as f64)
    }
}

/// The `p` quantile of sorted values.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A running process under test and the generator it dials.
pub struct Peer {
    pub target: Target,
    generator: Generator,
    addr: SocketAddr,
    child: Child,
    /// The Redis target's server; dropped (killed) after the bridge.
    redis: Option<RedisServer>,
}

impl Peer {
    /// Starts the process under test; back once a bot on `/` is served end to end.
    pub async fn start(target: Target) -> Peer {
        let generator = Generator::start(target == Target::V11).await;
        let port = free_port();
        let dir = scratch_dir(target.label());
        let redis = (target == Target::Redis).then(|| {
            RedisServer::start(target.label())
                .expect("redis-server is installed (checked before the Redis target is measured)")
        });
        let cmd = match target {
            Target::Relay | Target::RelayPerFrame | Target::RelaySynced => {
                let flush = match target {
                    Target::Relay => relay::Flush::Batched,
                    Target::RelayPerFrame => relay::Flush::PerFrame,
                    _ => relay::Flush::Synced,
                };
                let mut cmd = Command::new(std::env::current_exe().expect("the bench binary"));
                cmd.env(relay::ENV, relay::spec(flush, port, generator.url())).stdin(Stdio::piped());
                cmd
            }
            Target::Disk | Target::Redis | Target::Ephemeral | Target::V11 => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_onebot-bridge"));
                cmd.args(["--backend-ws", generator.url(), "--ws", &format!("127.0.0.1:{port}")])
                    .arg("--data-dir")
                    .arg(dir.join("data"))
                    .args(["--heartbeat-interval", "0", "--log", "warn"]);
                match &redis {
                    Some(server) => {
                        cmd.args(["--store", &server.url()]);
                    }
                    None if target != Target::Disk => {
                        cmd.arg("--ephemeral");
                    }
                    None => {}
                }
                if target == Target::V11 {
                    cmd.args(["--backend-protocol", "v11"]);
                }
                cmd
            }
        };
        let mut child = Child::spawn(cmd, dir);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ready = async {
            let mut ws = connect(addr, "/", CONNECT_WITHIN).await?;
            first_frame(&mut ws).await
        };
        if let Err(error) = ready.await {
            panic!("{} did not come up: {error}; exit: {:?}; stderr:\n{}", target.name(), child.exited(), child.log());
        }
        Peer { target, generator, addr, child, redis }
    }

    /// Stops the process (and its Redis); what it wrote on stderr.
    pub fn stop(self) -> String {
        self.child.log()
    }

    /// The Redis target's `used_memory`, in bytes.
    pub fn redis_memory(&self) -> Option<u64> {
        self.redis.as_ref().map(RedisServer::used_memory)
    }

    pub fn memory(&self) -> Memory {
        self.child.memory()
    }

    /// Bots on `/`, each served end to end (its first frame read).
    async fn bots(&self, n: usize) -> Vec<crate::peers::Ws> {
        let mut bots = Vec::with_capacity(n);
        for _ in 0..n {
            let mut ws = connect(self.addr, "/", CONNECT_WITHIN).await.expect("a bot connects");
            first_frame(&mut ws).await.expect("a bot is served");
            bots.push(ws);
        }
        bots
    }

    pub async fn events(&self, run: &EventRun) -> EventOutcome {
        let tag = run.tag;
        let file_id = |i| match run.images {
            Images::Shared => "img-shared".to_owned(),
            Images::Distinct => format!("img-{tag}-{i}"),
        };
        let frames = if self.target == Target::V11 {
            event_frames_v11(tag, run.n, file_id)
        } else {
            event_frames(tag, run.n, file_id)
        };
        let mark = self.generator.mark();
        let bots = self.bots(run.bots).await;
        // The relay dials the generator once per bot; the bridge once in all, and fans out.
        let links = match self.target {
            Target::Relay | Target::RelayPerFrame | Target::RelaySynced => {
                self.generator.links_after(mark, run.bots).await
            }
            Target::Disk | Target::Redis | Target::Ephemeral | Target::V11 => vec![self.generator.latest().await],
        };
        let tracker = Arc::new(Tracker::new(run.n, run.bots, run.window.unwrap_or(0)));
        let mut readers = JoinSet::new();
        for ws in bots {
            readers.spawn(receive(ws, tracker.clone()));
        }
        let sent = Arc::new(AtomicUsize::new(0));
        let fell_behind = Arc::new(AtomicBool::new(false));
        let get_file_before = self.generator.get_file_calls();
        let cpu_before = self.child.cpu();
        let store_cpu_before = self.redis.as_ref().map(|r| cpu_of(r.pid()));
        let start = Instant::now();
        let driver = {
            let (tracker, sent, fell_behind) = (tracker.clone(), sent.clone(), fell_behind.clone());
            let (window, pace, budget) = (run.window, run.pace, run.budget);
            tokio::spawn(async move {
                for (i, frame) in frames.iter().enumerate() {
                    if start.elapsed() >= budget {
                        break;
                    }
                    if let Some(rate) = pace {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if Instant::now() < due {
                            tokio::time::sleep_until(due.into()).await;
                        }
                        if (i - tracker.delivered()) as f64 > rate {
                            fell_behind.store(true, Ordering::Relaxed);
                            break;
                        }
                    }
                    if window.is_some() {
                        match tracker.window.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => break,
                        }
                    }
                    tracker.sent(i);
                    for link in &links {
                        link.push(frame).await;
                    }
                    sent.store(i + 1, Ordering::Release);
                }
            })
        };
        let mut progress = (0, Instant::now());
        let gave_up = loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let delivered = tracker.delivered();
            if driver.is_finished() && delivered >= sent.load(Ordering::Acquire) {
                break None;
            }
            if delivered != progress.0 {
                progress = (delivered, Instant::now());
            } else if progress.1.elapsed() >= run.stall_after {
                break Some(format!("nothing delivered for {} s", run.stall_after.as_secs()));
            }
            if start.elapsed() >= run.deadline {
                break Some(format!("gave up after {} s", run.deadline.as_secs()));
            }
        };
        driver.abort();
        let cpu = self.child.cpu().saturating_sub(cpu_before);
        let store_cpu =
            self.redis.as_ref().zip(store_cpu_before).map(|(r, before)| cpu_of(r.pid()).saturating_sub(before));
        readers.abort_all();

        let sent = sent.load(Ordering::Acquire);
        let mut delivered_at: Vec<Duration> = (0..sent).filter_map(|i| tracker.delivered_after(i, start)).collect();
        delivered_at.sort();
        let elapsed = delivered_at.last().copied().unwrap_or_else(|| start.elapsed());
        let longest_gap = delivered_at
            .iter()
            .scan(Duration::ZERO, |previous, &at| Some(at.saturating_sub(std::mem::replace(previous, at))))
            .max()
            .unwrap_or(elapsed);
        let mut latencies: Vec<Duration> = (sent / 10..sent).filter_map(|i| tracker.latency(i)).collect();
        latencies.sort();
        EventOutcome {
            sent,
            delivered: tracker.delivered(),
            strays: tracker.strays(),
            elapsed,
            cpu,
            store_cpu,
            latencies,
            longest_gap,
            get_file: self.generator.get_file_calls() - get_file_before,
            without_url: tracker.without_url(),
            gave_up,
            fell_behind: fell_behind.load(Ordering::Relaxed),
        }
    }

    /// `callers` bots on `/api`, each calling `send_group_msg` one call at a time, `total` calls
    /// in all (fewer if `budget` runs out).
    pub async fn calls(&self, callers: usize, total: usize, budget: Duration) -> CallOutcome {
        let mut bots = Vec::with_capacity(callers);
        for _ in 0..callers {
            bots.push(connect(self.addr, "/api", CONNECT_WITHIN).await.expect("a bot connects"));
        }
        let per_caller = total / callers;
        let filler = crate::peers::Filler::from_env();
        let cpu_before = self.child.cpu();
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for (c, mut ws) in bots.into_iter().enumerate() {
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(per_caller);
                for k in 0..per_caller {
                    if start.elapsed() >= budget {
                        break;
                    }
                    let echo = format!(r#""echo":"e{c}-{k}""#);
                    let request = format!(
                        r#"{{"action":"send_group_msg","params":{{"group_id":30003,"message":"[CQ:face,id=1] reply {k}{}"}},{echo}}}"#,
                        filler.cq
                    );
                    let called = Instant::now();
                    ws.send(Message::text(request)).await.expect("a call is sent");
                    // Frames without the echo (the generator's meta events, through the relay) are skipped.
                    let answer = tokio::time::timeout(CALL_TIMEOUT, async {
                        loop {
                            match ws.next().await {
                                Some(Ok(Message::Text(t))) if t.contains(echo.as_str()) => return Some(t),
                                Some(Ok(_)) => {}
                                _ => return None,
                            }
                        }
                    })
                    .await;
                    let Ok(Some(answer)) = answer else { panic!("no answer to send_group_msg e{c}-{k}") };
                    assert!(answer.contains(r#""status":"ok""#), "send_group_msg failed: {answer}");
                    latencies.push(called.elapsed());
                }
                latencies
            });
        }
        let mut latencies = Vec::with_capacity(total);
        while let Some(done) = tasks.join_next().await {
            latencies.extend(done.expect("a calling bot"));
        }
        let elapsed = start.elapsed();
        let cpu = self.child.cpu().saturating_sub(cpu_before);
        latencies.sort();
        CallOutcome { elapsed, latencies, cpu }
    }

    /// Opens `n` bot connections on `/` (each served: its first frame read) and keeps them
    /// idle; the process's memory with them open.
    pub async fn idle_memory(&self, n: usize) -> Memory {
        let addr = self.addr;
        let bots: Vec<Result<_, String>> = stream::iter(0..n)
            .map(|_| async move {
                let mut ws = connect(addr, "/", CONNECT_WITHIN).await?;
                first_frame(&mut ws).await?;
                Ok(ws)
            })
            .buffer_unordered(32)
            .collect()
            .await;
        let open: Vec<_> = bots.into_iter().collect::<Result<_, _>>().expect("every idle bot is served");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let memory = self.child.memory();
        drop(open);
        memory
    }
}
