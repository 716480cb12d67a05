//! End-to-end load run over real sockets, with a yardstick. Every figure is measured for the
//! bridge in its default configuration (ids in the disk store, in a scratch `--data-dir`), for
//! the bridge with `--store redis://…` (a `redis-server` the bench starts for it, persistence as
//! `docs/replicas.md` recommends: `--appendonly yes --appendfsync everysec`), for the bridge
//! with `--ephemeral`, for the bridge with `--ephemeral` on a OneBot v11 link (the generator
//! speaking as NapCat: the same messages in v11, converted at the link's edge), and for a bare
//! WebSocket relay that translates nothing (`load/relay.rs`) in its three forms, one batching its
//! writes, one writing each frame as it reads it, and one syncing the frames it forwards to bots
//! to a file first (what the disk alone costs a relay that keeps its promise across a crash), in
//! the same run: the same generator, bot client and messages, all alternating. Rates, CPU and
//! latencies are the median of three runs (memory, the long run and the no-stall run are one run
//! each); the table gives each bridge over the two bare relays, the disk store over the synced
//! one, and Redis over the disk store. Without `redis-server` on `PATH` the Redis target is left
//! out, and the run says so. The synced relay is measured when the disk store is.
//!
//! The bridge (the release binary) and the relay run as child processes, so their CPU time and
//! memory are read from `/proc` apart from the bench's. For the Redis target, `redis-server`'s
//! CPU time is a row of its own (the disk store's work is inside the bridge's process, Redis's
//! is not), and its `used_memory` after the long run another. The bench process holds the peers
//! (`load/peers.rs`): a v12 generator (forward-WebSocket server; the process under test dials
//! it) that pushes pre-serialised group messages (reply, text, mention, image), answers actions
//! at once, and v11 bots that count events by the `seq=` marker in their text, so v12 frames
//! (through the relay) and v11 frames (through the bridge) are counted by the same code.
//!
//! Scenarios (`load/scenarios.rs`):
//! 1. events/s: one backend link, forward WebSocket both sides, 512 events in flight; every
//!    event must arrive. The process's CPU time over this run gives CPU per event.
//!    Then the same with a new picture in every event (a backend's `file_id`s are each
//!    picture's own): the bridge asks `get_file` for each URL; the events that came without one
//!    are counted in the notes.
//! 2. latency at a steady 5 000 events/s, per event (send → receipt), p50 and p99, and the p99
//!    over the per-frame relay's.
//! 3. fan-out: 10 bots on `/`, each receiving every event; events/s per bot. The relay dials the
//!    generator once per bot, so the generator pushes each event ten times there (its cost is in
//!    the bench process, not in the measured one).
//! 4. `send_group_msg`: 8 bots on `/api`, one call at a time each; calls/s, p50 and p99, and the
//!    process's CPU time over the run per call.
//! 5. memory with 1 000 idle bot connections open, and after a long run (peak and current).
//! 6. no stall: each event's image has a new `file_id`, so the bridge calls `get_file` for each
//!    while events keep coming as fast as the sockets take them; the run gives up (and says
//!    so) rather than wait out the bridge's action timeouts.
//!
//! `cargo bench --bench load` runs the full sizes (a few minutes); under `cargo test` (no
//! `--bench`) it runs a few hundred events per scenario against the debug build and asserts
//! that everything arrived. Each run is also capped in time; the notes under the table say when
//! a cap cut one short. `LOAD_TARGETS=disk,redis` measures only those (and the relays).
//! `LOAD_ALONE=<scenario>[:<count>]` runs one scenario once per target instead (`events`,
//! `pictures`: events each with a new picture, 512 in flight, `nostall`: as many as fast as
//! the sockets take them, `latency`, `fanout`, `calls`, `idle`; several joined by `+` run on
//! one bridge), to compare
//! builds of the bridge by alternating them. `LOAD_IDS=uuid` gives the v12 generator's events
//! random message ids, `LOAD_IDS=random` random message ids and a new user each, with a string
//! id (the v11 generator's ids are integers and stay as they are). `LOAD_RATE=<events/s>` sets
//! the latency run's steady rate (5 000 otherwise). `LOAD_TEXT=<bytes>` makes every message's
//! text that much longer (Chinese and English, with `&`, `[` and `]`). `LOAD_BOT_RATE=<events/s>`
//! makes every bot read at most that many a second (a bot slower than the bursts).

#[path = "load/peers.rs"]
mod peers;
#[path = "../tests/support/ports.rs"]
mod ports;
#[path = "load/process.rs"]
mod process;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "load/relay.rs"]
mod relay;
#[path = "load/scenarios.rs"]
mod scenarios;

use std::time::{Duration, Instant};

use process::Memory;
use scenarios::{quantile, EventOutcome, EventRun, Images, Peer, Target};

/// Events sent and not yet delivered, in the windowed runs. The bridge queues 1 024 events per
/// backend connection and per bot; a window below that measures the sustained rate with
/// nothing dropped.
const WINDOW: usize = 512;
/// The steady rate of the latency run, events/s, unless `LOAD_RATE` gives another.
const RATE: f64 = 5_000.0;

/// The latency run's rate: [`RATE`], or `LOAD_RATE`.
fn rate() -> f64 {
    static CHOSEN: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| match std::env::var("LOAD_RATE") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r > 0.0)
            .unwrap_or_else(|| panic!("LOAD_RATE={v}: say how many events a second, above 0")),
        Err(_) => RATE,
    })
}
/// Calls in flight in the `send_group_msg` run (one bot each).
const CALLERS: usize = 8;
/// Bots in the fan-out run.
const FANOUT_BOTS: usize = 10;
/// No delivery for this long in the no-stall run means an event waited for something (an
/// action timeout), not that the process is merely slow.
const STALL: Duration = Duration::from_secs(5);

/// How much each scenario does.
struct Sizes {
    full: bool,
    /// Runs per figure (the median is reported).
    rounds: usize,
    events: usize,
    latency_events: usize,
    fanout_events: usize,
    calls: usize,
    idle_bots: usize,
    long_events: usize,
    no_stall_events: usize,
    /// No new event or call after this long in one run.
    budget: Duration,
    long_budget: Duration,
    /// The no-stall run gives up after this long.
    no_stall_wait: Duration,
}

const FULL: Sizes = Sizes {
    full: true,
    rounds: 3,
    events: 50_000,
    latency_events: 15_000,
    fanout_events: 20_000,
    calls: 24_000,
    idle_bots: 1_000,
    long_events: 200_000,
    no_stall_events: 50_000,
    budget: Duration::from_secs(15),
    long_budget: Duration::from_secs(60),
    no_stall_wait: Duration::from_secs(60),
};

const SMOKE: Sizes = Sizes {
    full: false,
    rounds: 1,
    events: 300,
    latency_events: 250,
    fanout_events: 200,
    calls: 160,
    idle_bots: 50,
    long_events: 1_000,
    no_stall_events: 200,
    budget: Duration::from_secs(20),
    long_budget: Duration::from_secs(20),
    no_stall_wait: Duration::from_secs(20),
};

fn main() {
    if let Ok(spec) = std::env::var(relay::ENV) {
        relay::main(&spec);
        return;
    }
    let sizes = if std::env::args().any(|a| a == "--bench") { FULL } else { SMOKE };
    peers::check_seq_marker();
    if let Some(ids) = peers::EventIds::from_env().describe() {
        println!("load: {}: {ids}", peers::IDS);
    }
    if let Some(text) = peers::Filler::from_env().describe() {
        println!("load: {}: {text}", peers::TEXT);
    }
    if let Some(rate) = peers::bot_rate() {
        println!("load: {}: every bot reads at most {rate} events a second", peers::BOT_RATE);
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let targets = targets();
    if let Ok(spec) = std::env::var(ALONE) {
        runtime.block_on(alone(&spec, &sizes, &targets));
        return;
    }
    let report = runtime.block_on(measure(&sizes, &targets));
    report.print(&sizes);
    println!("load ({}): done in {:.0} s", if sizes.full { "full" } else { "smoke" }, started.elapsed().as_secs_f64());
}

/// Runs scenarios alone, once per target, and prints a line each: `<scenario>[:<count>]`
/// with `events` (512 in flight), `latency` (a steady 5 000/s), `fanout` (events to 10 bots),
/// `calls` (`send_group_msg` from 8 bots) or `idle` (1 000 idle bots, or the count); several
/// joined by `+` run one after the other on the same bridge, as a full run's round does
/// (`events:50000+latency`). To compare two builds of the bridge, alternate them: each run
/// starts its own bridge from `target/release/onebot-bridge`.
const ALONE: &str = "LOAD_ALONE";

async fn alone(specs: &str, sizes: &Sizes, targets: &[Target]) {
    let mut notes = Vec::new();
    for &target in targets {
        let peer = Peer::start(target).await;
        for spec in specs.split('+') {
            let line = alone_once(&peer, spec, sizes, &mut notes).await;
            println!("{ALONE}={spec} {:<23} {line}", target.name());
        }
        log_note(target, peer.stop(), &mut notes);
    }
    for note in notes {
        println!("note: {note}");
    }
}

/// One scenario of [`alone`] on a running peer; says how it went.
async fn alone_once(peer: &Peer, spec: &str, sizes: &Sizes, notes: &mut Vec<String>) -> String {
    let (scenario, count) = match spec.split_once(':') {
        Some((scenario, count)) => (scenario, count.parse::<usize>().ok()),
        None => (spec, None),
    };
    let events = |tag, n, bots| EventRun {
        tag,
        n: count.unwrap_or(n),
        bots,
        window: (tag != "latency" && tag != "nostall").then_some(WINDOW),
        pace: (tag == "latency").then(rate),
        images: if tag == "pictures" || tag == "nostall" { Images::Distinct } else { Images::Shared },
        budget: sizes.long_budget,
        stall_after: Duration::from_secs(10),
        deadline: sizes.long_budget + Duration::from_secs(30),
    };
    let run = match scenario {
        "events" => events("events", sizes.events, 1),
        "pictures" => events("pictures", sizes.events, 1),
        "nostall" => events("nostall", sizes.no_stall_events, 1),
        "latency" => events("latency", sizes.latency_events, 1),
        "fanout" => events("fanout", sizes.fanout_events, FANOUT_BOTS),
        "calls" => {
            let out = peer.calls(CALLERS, count.unwrap_or(sizes.calls), sizes.long_budget).await;
            let cpu = out.cpu_per_call().as_secs_f64() * 1e6;
            return format!("{} calls, {:.0}/s, {cpu:.1} µs CPU/call", out.latencies.len(), out.per_second());
        }
        "idle" => {
            let bots = idle_bots_allowed(count.unwrap_or(sizes.idle_bots), notes);
            let m = peer.idle_memory(bots).await;
            return format!("{bots} idle bots, RSS {:.1} MiB", m.rss_kib as f64 / 1024.0);
        }
        other => panic!("{ALONE}={other}: say events, pictures, nostall, latency, fanout, calls or idle"),
    };
    let out = peer.events(&run).await;
    let cpu = out.cpu_per_event().as_secs_f64() * 1e6;
    let (p50, p99) = (ms(quantile(&out.latencies, 0.50)), ms(quantile(&out.latencies, 0.99)));
    let tail = if scenario == "latency" {
        let q = |p| ms(quantile(&out.latencies, p));
        format!(
            " (p90 {:.2}, p95 {:.2}, p99.5 {:.2}, p99.9 {:.2}, max {:.2})",
            q(0.90),
            q(0.95),
            q(0.995),
            q(0.999),
            q(1.0)
        )
    } else {
        String::new()
    };
    let pictures = match scenario {
        "pictures" | "nostall" if !peer.target.is_relay() => {
            format!(", {} get_file calls, {} without a picture URL", out.get_file, out.without_url)
        }
        _ => String::new(),
    };
    format!(
        "{}: {:.0}/s, {cpu:.1} µs CPU/event, p50 {p50:.2} ms, p99 {p99:.2} ms{tail}{pictures}",
        out.summary(),
        out.per_second()
    )
}

/// The targets measured: all of them, the Redis one only where `redis-server` is installed, or
/// those `LOAD_TARGETS` names (labels, comma-separated: `LOAD_TARGETS=disk,redis` to compare
/// the two stores in less time). Both relays are always measured: every ratio is against them.
fn targets() -> Vec<Target> {
    let redis = redis_server::installed();
    if !redis {
        println!("load: the Redis target is skipped: {}", redis_server::MISSING);
    }
    let only = std::env::var("LOAD_TARGETS").ok();
    let listed = |t: Target| only.as_deref().is_none_or(|list| list.split(',').any(|l| l.trim() == t.label()));
    // The synced relay is the disk store's yardstick alone.
    let wanted = |t: Target| match t {
        Target::RelaySynced => listed(Target::Disk) || listed(t),
        t => t.is_relay() || listed(t),
    };
    let targets: Vec<Target> =
        Target::ALL.into_iter().filter(|&t| (redis || t != Target::Redis) && wanted(t)).collect();
    if let Some(list) = &only {
        println!(
            "load: LOAD_TARGETS={list}: measuring {}",
            targets.iter().map(|t| t.label()).collect::<Vec<_>>().join(", ")
        );
    }
    targets
}

/// Every figure of one target, a value per round where there are rounds.
#[derive(Default)]
struct Figures {
    events_per_s: Vec<f64>,
    cpu_us: Vec<f64>,
    store_cpu_us: Vec<f64>,
    pictures_per_s: Vec<f64>,
    picture_cpu_us: Vec<f64>,
    latency_p50_ms: Vec<f64>,
    latency_p99_ms: Vec<f64>,
    fanout_per_s: Vec<f64>,
    calls_per_s: Vec<f64>,
    call_cpu_us: Vec<f64>,
    call_p50_ms: Vec<f64>,
    call_p99_ms: Vec<f64>,
    fresh: Memory,
    idle: Memory,
    long_per_s: f64,
    long: Memory,
    /// Redis's `used_memory` after the long run, in bytes.
    redis_memory: Option<u64>,
    no_stall: Option<EventOutcome>,
}

struct Report {
    /// The targets measured, one column each, in this order.
    targets: Vec<Target>,
    figures: Vec<Figures>,
    notes: Vec<String>,
}

async fn measure(sizes: &Sizes, targets: &[Target]) -> Report {
    let mut figures: Vec<Figures> = targets.iter().map(|_| Figures::default()).collect();
    let mut notes = Vec::new();
    if !redis_server::installed() {
        notes.push(format!("the Redis target is skipped: {}", redis_server::MISSING));
    }
    let at = |target: Target| targets.iter().position(|&t| t == target).expect("a target");

    for round in 0..sizes.rounds {
        // A different one goes first each round, in case the machine drifts.
        for target in targets.iter().cycle().skip(round).take(targets.len()).copied() {
            let peer = Peer::start(target).await;
            let f = &mut figures[at(target)];
            let windowed = |tag, n, bots| EventRun {
                tag,
                n,
                bots,
                window: Some(WINDOW),
                pace: None,
                images: Images::Shared,
                budget: sizes.budget,
                stall_after: Duration::from_secs(10),
                deadline: sizes.budget + Duration::from_secs(30),
            };

            let run = windowed("events", sizes.events, 1);
            let events = peer.events(&run).await;
            check(target, "events", &run, &events, &mut notes);
            f.events_per_s.push(events.per_second());
            f.cpu_us.push(events.cpu_per_event().as_secs_f64() * 1e6);
            if let Some(cpu) = events.store_cpu_per_event() {
                f.store_cpu_us.push(cpu.as_secs_f64() * 1e6);
            }
            if !target.is_relay() && events.get_file > 1 {
                notes.push(format!("{}: {} get_file calls for one shared image", target.name(), events.get_file));
            }

            let run = EventRun { window: None, pace: Some(rate()), ..windowed("latency", sizes.latency_events, 1) };
            let latency = peer.events(&run).await;
            check(target, "latency", &run, &latency, &mut notes);
            f.latency_p50_ms.push(ms(quantile(&latency.latencies, 0.50)));
            f.latency_p99_ms.push(ms(quantile(&latency.latencies, 0.99)));

            let run = windowed("fanout", sizes.fanout_events, FANOUT_BOTS);
            let fanout = peer.events(&run).await;
            check(target, "fan-out", &run, &fanout, &mut notes);
            f.fanout_per_s.push(fanout.per_second());

            let calls = peer.calls(CALLERS, sizes.calls, sizes.budget).await;
            assert!(!calls.latencies.is_empty(), "{}: no send_group_msg answered", target.name());
            if calls.latencies.len() < sizes.calls {
                notes.push(format!(
                    "{} send_group_msg: {} of {} calls within the {} s cap",
                    target.name(),
                    calls.latencies.len(),
                    sizes.calls,
                    sizes.budget.as_secs()
                ));
            }
            f.calls_per_s.push(calls.per_second());
            f.call_cpu_us.push(calls.cpu_per_call().as_secs_f64() * 1e6);
            f.call_p50_ms.push(ms(quantile(&calls.latencies, 0.50)));
            f.call_p99_ms.push(ms(quantile(&calls.latencies, 0.99)));

            let run = EventRun { images: Images::Distinct, ..windowed("pictures", sizes.events, 1) };
            let pictures = peer.events(&run).await;
            check(target, "pictures", &run, &pictures, &mut notes);
            f.pictures_per_s.push(pictures.per_second());
            f.picture_cpu_us.push(pictures.cpu_per_event().as_secs_f64() * 1e6);
            if !target.is_relay() && pictures.without_url > 0 {
                notes.push(format!(
                    "{}: {} of {} events with a new picture came without its URL",
                    target.name(),
                    pictures.without_url,
                    pictures.delivered
                ));
            }

            println!(
                "round {}/{} {:<23} events {:>7.0}/s, {:>5.1} µs CPU/event{}; pictures {:>7.0}/s; \
                 latency p50 {:.2} ms p99 {:.2} ms; fan-out {:>6.0}/s per bot; send_group_msg {:>6.0}/s, \
                 {:.1} µs CPU/call",
                round + 1,
                sizes.rounds,
                target.name(),
                events.per_second(),
                events.cpu_per_event().as_secs_f64() * 1e6,
                events
                    .store_cpu_per_event()
                    .map(|cpu| format!(" (+{:.1} µs in redis-server)", cpu.as_secs_f64() * 1e6))
                    .unwrap_or_default(),
                pictures.per_second(),
                ms(quantile(&latency.latencies, 0.50)),
                ms(quantile(&latency.latencies, 0.99)),
                fanout.per_second(),
                calls.per_second(),
                calls.cpu_per_call().as_secs_f64() * 1e6
            );
            log_note(target, peer.stop(), &mut notes);
        }
    }

    let idle_bots = idle_bots_allowed(sizes.idle_bots, &mut notes);
    for &target in targets {
        let peer = Peer::start(target).await;
        let f = &mut figures[at(target)];
        f.fresh = peer.memory();
        f.idle = peer.idle_memory(idle_bots).await;
        log_note(target, peer.stop(), &mut notes);
    }

    for &target in targets {
        let peer = Peer::start(target).await;
        let run = EventRun {
            tag: "long",
            n: sizes.long_events,
            bots: 1,
            window: Some(WINDOW),
            pace: None,
            images: Images::Shared,
            budget: sizes.long_budget,
            stall_after: Duration::from_secs(10),
            deadline: sizes.long_budget + Duration::from_secs(30),
        };
        let long = peer.events(&run).await;
        check(target, "long run", &run, &long, &mut notes);
        let f = &mut figures[at(target)];
        f.long_per_s = long.per_second();
        f.long = peer.memory();
        f.redis_memory = peer.redis_memory();
        log_note(target, peer.stop(), &mut notes);
    }

    for &target in targets {
        let peer = Peer::start(target).await;
        let run = EventRun {
            tag: "images",
            n: sizes.no_stall_events,
            bots: 1,
            window: None,
            pace: None,
            images: Images::Distinct,
            budget: sizes.no_stall_wait,
            stall_after: sizes.no_stall_wait,
            deadline: sizes.no_stall_wait,
        };
        let outcome = peer.events(&run).await;
        println!(
            "no stall {:<23} {}; last delivery {:.1} s after the first send, longest wait between deliveries {:.1} s; \
             {} get_file calls{}",
            target.name(),
            outcome.summary(),
            outcome.elapsed.as_secs_f64(),
            outcome.longest_gap.as_secs_f64(),
            outcome.get_file,
            if target.is_relay() { String::new() } else { format!(", {} without a picture URL", outcome.without_url) }
        );
        // The smoke run is small enough (a few hundred events, below the bridge's event queue)
        // that it completes even where a full-speed run of 50 000 stalls: it must.
        if !sizes.full {
            assert!(outcome.complete(), "{} no-stall run: {}", target.name(), outcome.summary());
        }
        figures[at(target)].no_stall = Some(outcome);
        log_note(target, peer.stop(), &mut notes);
    }

    Report { targets: targets.to_vec(), figures, notes }
}

/// Every event sent arrived, once, at every bot; a run a time cap cut short is noted.
fn check(target: Target, scenario: &str, run: &EventRun, outcome: &EventOutcome, notes: &mut Vec<String>) {
    assert!(outcome.complete(), "{} {scenario}: {}", target.name(), outcome.summary());
    if outcome.fell_behind {
        notes.push(format!(
            "{} {scenario}: fell a second behind the pace after {} events, delivering {:.0}/s; its latency is queueing",
            target.name(),
            outcome.sent,
            outcome.per_second()
        ));
    } else if outcome.sent < run.n {
        notes.push(format!(
            "{} {scenario}: {} of {} events within the {} s cap",
            target.name(),
            outcome.sent,
            run.n,
            run.budget.as_secs()
        ));
    }
}

/// What the process under test wrote on stderr (warnings and worse), briefly.
fn log_note(target: Target, log: String, notes: &mut Vec<String>) {
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if let Some(first) = lines.first() {
        notes.push(format!("{} logged {} line(s), the first: {}", target.name(), lines.len(), first.trim()));
    }
}

/// The relay needs two descriptors per idle bot in the bench (the bot's and the generator's
/// side); fewer bots if the open-files limit would not allow it.
fn idle_bots_allowed(wanted: usize, notes: &mut Vec<String>) -> usize {
    let Some(limit) = process::open_files_limit() else { return wanted };
    let allowed = (limit.saturating_sub(256) / 2) as usize;
    if allowed < wanted {
        notes.push(format!("open files limited to {limit}: {allowed} idle bots instead of {wanted}"));
        return allowed;
    }
    wanted
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// One line of the table: a value per target, and what it says.
struct Row {
    label: String,
    values: Vec<Option<f64>>,
    text: Vec<String>,
    /// Whether the ratio columns mean something for this row (not for differences).
    ratios: bool,
}

impl Row {
    fn of(
        label: impl Into<String>,
        report: &Report,
        pick: impl Fn(&Figures) -> Option<f64>,
        unit: impl Fn(f64) -> String,
    ) -> Row {
        let values: Vec<Option<f64>> = report.figures.iter().map(pick).collect();
        let text = values.iter().map(|v| v.map(&unit).unwrap_or_else(|| "-".to_owned())).collect();
        Row { label: label.into(), values, text, ratios: true }
    }

    /// Column `i` over column `base`.
    fn ratio(&self, i: usize, base: usize) -> String {
        match (self.values[i], self.values[base]) {
            (Some(v), Some(relay)) if relay > 0.0 && self.ratios => format!("{:.2}", v / relay),
            _ => "-".to_owned(),
        }
    }
}

impl Report {
    fn print(&self, sizes: &Sizes) {
        // What each adds to the per-frame relay's p99 (the measure of latency).
        let frame_relay_p99 = self
            .targets
            .iter()
            .position(|&t| t == Target::RelayPerFrame)
            .and_then(|i| median(&self.figures[i].latency_p99_ms));
        let p99_over = |x: &Figures| Some(median(&x.latency_p99_ms)? - frame_relay_p99?);
        let per_s = |v: f64| format!("{v:.0}/s");
        let in_ms = |v: f64| format!("{v:.2} ms");
        let in_mib = |v: f64| format!("{v:.1} MiB");
        let runs = if sizes.rounds > 1 { format!(", median of {}", sizes.rounds) } else { String::new() };
        let mut rows = vec![
            Row::of(format!("events/s, window {WINDOW}{runs}"), self, |x| median(&x.events_per_s), per_s),
            Row::of("CPU per event (user+sys)", self, |x| median(&x.cpu_us), |v| format!("{v:.1} µs")),
            Row::of("  and in redis-server", self, |x| median(&x.store_cpu_us), |v| format!("{v:.1} µs")),
            Row::of(
                format!("events/s, each a new picture, window {WINDOW}"),
                self,
                |x| median(&x.pictures_per_s),
                per_s,
            ),
            Row::of("  CPU per event", self, |x| median(&x.picture_cpu_us), |v| format!("{v:.1} µs")),
            Row::of(format!("latency p50 at {:.0}/s", rate()), self, |x| median(&x.latency_p50_ms), in_ms),
            Row::of(format!("latency p99 at {:.0}/s", rate()), self, |x| median(&x.latency_p99_ms), in_ms),
            Row { ratios: false, ..Row::of("  p99 over the per-frame relay's", self, |x| p99_over(x), in_ms) },
            Row::of(
                format!("fan-out to {FANOUT_BOTS} bots, events/s per bot"),
                self,
                |x| median(&x.fanout_per_s),
                per_s,
            ),
            Row::of(format!("send_group_msg/s, {CALLERS} in flight"), self, |x| median(&x.calls_per_s), per_s),
            Row::of("CPU per send_group_msg call", self, |x| median(&x.call_cpu_us), |v| format!("{v:.1} µs")),
            Row::of("send_group_msg p50", self, |x| median(&x.call_p50_ms), in_ms),
            Row::of("send_group_msg p99", self, |x| median(&x.call_p99_ms), in_ms),
            Row::of("RSS at start (VmRSS)", self, |x| Some(mib(x.fresh.rss_kib)), in_mib),
            Row::of(format!("RSS with {} idle bots", sizes.idle_bots), self, |x| Some(mib(x.idle.rss_kib)), in_mib),
            Row::of(format!("long run of {} events, events/s", sizes.long_events), self, |x| Some(x.long_per_s), per_s),
            Row::of("  after it: peak RSS (VmHWM)", self, |x| Some(mib(x.long.hwm_kib)), in_mib),
            Row::of("  after it: RSS now (VmRSS)", self, |x| Some(mib(x.long.rss_kib)), in_mib),
            Row::of(
                "  after it: Redis used_memory",
                self,
                |x| x.redis_memory.map(|b| b as f64 / (1 << 20) as f64),
                in_mib,
            ),
        ];
        // Rows only the Redis target fills are left out without it.
        rows.retain(|r| r.values.iter().any(Option::is_some));
        let no_stall: Vec<&EventOutcome> = self.figures.iter().filter_map(|x| x.no_stall.as_ref()).collect();
        if no_stall.len() == self.targets.len() {
            let mut time = Row::of(
                format!("no stall: {} distinct images, time", sizes.no_stall_events),
                self,
                |x| x.no_stall.as_ref().filter(|o| o.complete()).map(|o| o.elapsed.as_secs_f64()),
                |v| format!("{v:.1} s"),
            );
            for (i, o) in no_stall.iter().enumerate() {
                if !o.complete() {
                    let what = if o.longest_gap >= STALL { "stalled" } else { "cut" };
                    time.text[i] = format!("{what}: {} of {}", o.delivered, sizes.no_stall_events);
                }
            }
            rows.push(time);
            rows.push(Row::of(
                "  longest wait between deliveries",
                self,
                |x| x.no_stall.as_ref().map(|o| o.longest_gap.as_secs_f64()),
                |v| format!("{v:.1} s{}", if v >= STALL.as_secs_f64() { " (!)" } else { "" }),
            ));
        }

        let width = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0);
        let column = rows.iter().flat_map(|r| r.text.iter().map(|t| t.chars().count())).max().unwrap_or(0).max(23);
        // Each bridge over each bare relay (the yardsticks), the disk store over the synced
        // relay, and Redis over the disk store.
        let relays: Vec<usize> = (0..self.targets.len())
            .filter(|&i| self.targets[i].is_relay() && self.targets[i] != Target::RelaySynced)
            .collect();
        let mut ratios: Vec<(usize, usize)> = (0..self.targets.len())
            .filter(|&i| !self.targets[i].is_relay())
            .flat_map(|i| relays.iter().map(move |&r| (i, r)))
            .collect();
        let column_of = |t: Target| self.targets.iter().position(|&x| x == t);
        if let (Some(disk), Some(synced)) = (column_of(Target::Disk), column_of(Target::RelaySynced)) {
            ratios.push((disk, synced));
        }
        if let (Some(redis), Some(disk)) = (column_of(Target::Redis), column_of(Target::Disk)) {
            ratios.push((redis, disk));
        }
        let mut header = format!("{:<width$}", "scenario");
        for t in &self.targets {
            header.push_str(&format!(" | {:>column$}", t.name()));
        }
        let ratio_names: Vec<String> = ratios
            .iter()
            .map(|&(i, base)| format!("{}/{}", self.targets[i].label(), self.targets[base].label()))
            .collect();
        for name in &ratio_names {
            header.push_str(&format!(" | {name}"));
        }
        println!();
        println!("{header}");
        println!("{}", "-".repeat(header.chars().count()));
        for r in &rows {
            let mut line = format!("{:<width$}", r.label);
            for text in &r.text {
                line.push_str(&format!(" | {text:>column$}"));
            }
            for (&(i, base), name) in ratios.iter().zip(&ratio_names) {
                line.push_str(&format!(" | {:>w$}", r.ratio(i, base), w = name.len()));
            }
            println!("{line}");
        }
        for note in &self.notes {
            println!("note: {note}");
        }
    }
}
