//! Hostile input costs what `docs/limits.md` says it may, and no more: the bridge binary runs as
//! its own process and is sent worst-case documents from every side (bots over the forward
//! WebSocket and the HTTP API, the backend over MessagePack WebSocket links), four at once, and
//! its peak resident set (`VmHWM` in `/proc/<pid>/status`) is read after each attack.
//!
//! A document is worst case when it is as large as a message may be and made only of the
//! cheapest values (`[0,0,…]`, a MessagePack array of nils): parsed in full, each of its bytes
//! would become tens of bytes of tree. Nothing here is timed; RSS margins are wide.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The bridge's default largest message (`limits.max_message`).
const MAX_MESSAGE: usize = 16 << 20;
/// Attacks sent at once.
const AT_ONCE: usize = 4;
/// The bridge's parse budget (`onebot_bridge::decode::PARSE_BUDGET`), KiB.
const PARSE_BUDGET_KIB: u64 = (onebot_bridge::decode::PARSE_BUDGET >> 10) as u64;
/// Allocator room on top of every ceiling.
const SLACK_KIB: u64 = 64 << 10;
/// What four messages at once may add to the bridge's peak RSS when the pre-scan refuses them:
/// the memory ceiling of `docs/limits.md` without parsing (each message held at most twice while
/// it is read: 4 × 2 × 16 MiB), plus slack.
const CEILING_KIB: u64 = (AT_ONCE as u64 * 2 * (MAX_MESSAGE as u64 >> 10)) + SLACK_KIB;
/// The same for four documents the pre-scan lets through: the parse budget on top.
const CEILING_PARSED_KIB: u64 = CEILING_KIB + PARSE_BUDGET_KIB;
/// What requests without a good token may add: their headers, nothing of their bodies.
const UNAUTHENTICATED_KIB: u64 = 64 << 10;

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Peak RSS since start, KiB.
fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// `["xxxx…","xxxx…",…]`, `len` bytes or a little less, holding `values` values in all: the
/// most a document may hold, each value as large as the bytes allow.
fn strings_json(len: usize, values: usize) -> Vec<u8> {
    let each = len / (values - 1) - 3;
    let item = format!("\"{}\"", "x".repeat(each));
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    for i in 0..values - 1 {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.as_bytes());
    }
    body.push(b']');
    body
}

/// `[0,0,…,0]`, `len` bytes.
fn zeros_json(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len);
    body.push(b'[');
    while body.len() + 3 <= len {
        body.extend_from_slice(b"0,");
    }
    body.push(b'0');
    body.push(b']');
    body
}

/// A MessagePack array32 of nils, `len` bytes.
fn nils_msgpack(len: usize) -> Vec<u8> {
    let n = (len - 5) as u32;
    let mut body = Vec::with_capacity(len);
    body.push(0xdd);
    body.extend_from_slice(&n.to_be_bytes());
    body.resize(len, 0xc0);
    body
}

/// The bridge binary with its log (stderr) in `log`, killed when the guard drops.
fn spawn_logged(args: &[String], log: &Path) -> ChildGuard {
    let file = std::fs::File::create(log).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_onebot-bridge"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    ChildGuard(child)
}

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ob-hostile-{name}-{}.log", std::process::id()))
}

/// Log lines that contain every one of `words`.
fn log_lines(log: &Path, words: &[&str]) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| words.iter().all(|w| l.contains(w))).count()
}

/// Waits (polling, at most [`WAIT`]) until the log has `n` lines with `words`.
async fn logged(log: &Path, words: &[&str], n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while log_lines(log, words) < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fewer than {n} log lines with {words:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP request on its own connection: the head, then the body written alongside reading
/// the answer (a server may answer before it has read the body, and then stop reading it).
/// Gives the status and the body of the answer.
async fn http_request(addr: SocketAddr, head: String, body: Vec<u8>) -> (u16, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in body.chunks(256 << 10) {
            wr.write_all(chunk).await?;
        }
        wr.flush().await?;
        // Keep the write half open until the answer is read.
        tokio::time::sleep(WAIT).await;
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let status = tokio::time::timeout(WAIT * 2, async {
        loop {
            let n = rd.read(&mut buf).await.unwrap_or(0);
            answer.extend_from_slice(&buf[..n]);
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if answer.len() >= end + 4 + len || n == 0 {
                    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    answer.drain(..end + 4);
                    return status;
                }
            }
            assert!(n > 0, "the connection closed without an answer");
        }
    })
    .await
    .expect("no answer from the bridge");
    writer.abort();
    (status, answer)
}

fn post_head(addr: SocketAddr, target: &str, auth: Option<&str>, len: usize) -> String {
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// Waits until the bridge's HTTP API answers `get_status` with `token`.
async fn http_up(addr: SocketAddr, token: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if TcpStream::connect(addr).await.is_ok() {
            let head = post_head(addr, "/get_status", Some(&format!("Bearer {token}")), 2);
            if http_request(addr, head, b"{}".to_vec()).await.0 == 200 {
                return;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the bridge never served HTTP");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bot on the forward WebSocket (token in the query), once the bridge listens.
async fn bot_when_up(addr: SocketAddr, token: &str) -> Bot {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut bot = loop {
        match Bot::connect(addr, &format!("/?access_token={token}"), None).await {
            Ok(bot) => break bot,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("the bridge never listened: {e}"),
        }
    };
    assert_eq!(bot.next_frame().await["sub_type"], "connect");
    bot
}

/// The next frame that is not an event (heartbeats and events read meanwhile are skipped).
async fn next_answer(bot: &mut Bot) -> Value {
    loop {
        let f = bot.next_frame().await;
        if f.get("post_type").is_none() {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_good_token_cost_no_more_than_their_headers() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let args: Vec<String> = ["--backend-ws", &backend.url(), "--http", &addr.to_string(), "--access-token", "s3cret"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--ephemeral", "--log", "warn", "--heartbeat-interval", "0"].map(String::from))
        .collect();
    let child = spawn_logged(&args, &log_path("token"));
    let pid = child.0.id();
    http_up(addr, "s3cret").await;
    let idle = peak_kib(pid);

    let body = zeros_json(MAX_MESSAGE - 16);
    let mut attacks = Vec::new();
    for i in 0..2 * AT_ONCE {
        let auth = (i % 2 == 1).then_some("Bearer wrong");
        let head = post_head(addr, "/send_private_msg", auth, body.len());
        attacks.push(tokio::spawn(http_request(addr, head, body.clone())));
    }
    let mut statuses = Vec::new();
    for attack in attacks {
        statuses.push(attack.await.unwrap().0);
    }
    statuses.sort();
    assert_eq!(statuses, [401, 401, 401, 401, 403, 403, 403, 403]);
    let peak = peak_kib(pid);
    println!(
        "{} bodies of {} MiB without a good token: peak RSS {:.1} MiB (idle {:.1} MiB)",
        2 * AT_ONCE,
        MAX_MESSAGE >> 20,
        mib(peak),
        mib(idle)
    );
    assert!(peak.saturating_sub(idle) < UNAUTHENTICATED_KIB, "peak RSS rose {} KiB", peak - idle);
    // Still serving.
    http_up(addr, "s3cret").await;
}

/// The bridge binary with every door a hostile peer may knock on: the forward WebSocket and the
/// HTTP API for bots (token `s3cret`), a forward-WebSocket link to the scripted backend (which has
/// the bot account) and a MessagePack reverse-WebSocket server for more implementations.
struct Bridge {
    _child: ChildGuard,
    pid: u32,
    log: PathBuf,
    http: SocketAddr,
    reverse: SocketAddr,
    backend: FakeBackend,
    /// Connected, lifecycle read.
    bots: Vec<Bot>,
    /// Peak RSS once everything is connected, KiB.
    idle: u64,
}

impl Bridge {
    async fn start(name: &str) -> Bridge {
        let backend = FakeBackend::start(BackendOptions::default()).await;
        let addr = || -> SocketAddr { format!("127.0.0.1:{}", free_port()).parse().unwrap() };
        let (ws, http, reverse) = (addr(), addr(), addr());
        let log = log_path(name);
        let args: Vec<String> = [
            "--backend-ws",
            &backend.url(),
            "--backend-ws-reverse",
            &reverse.to_string(),
            "--backend-msgpack",
            "--ws",
            &ws.to_string(),
            "--http",
            &http.to_string(),
            "--access-token",
            "s3cret",
            "--ephemeral",
            "--heartbeat-interval",
            "0",
            "--log",
            "warn",
        ]
        .map(String::from)
        .to_vec();
        let child = spawn_logged(&args, &log);
        let pid = child.0.id();
        let mut bots = Vec::new();
        for _ in 0..AT_ONCE {
            bots.push(bot_when_up(ws, "s3cret").await);
        }
        http_up(http, "s3cret").await;
        let idle = peak_kib(pid);
        Bridge { _child: child, pid, log, http, reverse, backend, bots, idle }
    }

    /// Checks the attack's peak RSS against `ceiling` (KiB above idle), then that the bridge still
    /// serves: an action from a bot, an event from the backend, an HTTP API call.
    async fn survived(mut self, attack: &str, ceiling: u64) {
        let peak = peak_kib(self.pid);
        println!("{attack}: peak RSS {:.1} MiB ({:.1} MiB idle)", mib(peak), mib(self.idle));
        assert!(
            peak.saturating_sub(self.idle) < ceiling,
            "{attack}: peak RSS rose {} KiB above idle, more than {ceiling}",
            peak - self.idle
        );
        let mut bot = self.bots.pop().unwrap();
        let answer = bot.call("get_login_info", json!({})).await;
        assert_eq!(answer["status"], "ok", "{answer}");
        self.backend.push(v12_message(
            "private",
            "10001",
            json!({"message_id": "after-1", "user_id": "20002", "message": [{"type": "text", "data": {"text": "still here"}}]}),
        ));
        assert_eq!(bot.next_event().await["raw_message"], "still here");
        let head = post_head(self.http, "/get_login_info", Some("Bearer s3cret"), 2);
        let (status, body) = http_request(self.http, head, b"{}".to_vec()).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["status"], "ok");
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_frames_of_cheap_values_are_refused_unread_with_their_echo() {
    let mut bridge = Bridge::start("ws").await;
    let zeros = String::from_utf8(zeros_json(MAX_MESSAGE - 100)).unwrap();
    let mut sending = Vec::new();
    for (i, mut bot) in bridge.bots.drain(..).enumerate() {
        let frame = format!(r#"{{"action":"send_private_msg","params":{{"message":{zeros}}},"echo":"attack-{i}"}}"#);
        sending.push(tokio::spawn(async move {
            bot.send_raw(&frame).await;
            let answer = next_answer(&mut bot).await;
            (bot, answer, i)
        }));
    }
    for s in sending {
        let (bot, answer, i) = s.await.unwrap();
        assert_eq!(
            (&answer["status"], &answer["msg"], &answer["echo"]),
            (&json!("failed"), &json!("REQUEST_TOO_COMPLEX"), &json!(format!("attack-{i}"))),
            "{answer}"
        );
        assert!(answer["wording"].as_str().is_some_and(|w| w.contains("values")), "a refusal says why: {answer}");
        bridge.bots.push(bot);
    }
    logged(&bridge.log, &["request from bot refused"], AT_ONCE).await;
    bridge.survived("4 × 16 MiB [0,0,…] over the forward WebSocket", CEILING_KIB).await;
}

/// One cheap JSON value that is a million segments: a 16 MiB CQ string of `[CQ:face,id=1]`. Each
/// is refused after its 10 001st segment, so what it costs is the string, not a million
/// segments' allocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cq_string_of_a_million_codes_is_refused_at_the_segment_bound() {
    let mut bridge = Bridge::start("segments").await;
    let code = "[CQ:face,id=1]";
    let codes = code.repeat((MAX_MESSAGE - 200) / code.len());
    let mut sending = Vec::new();
    for (i, mut bot) in bridge.bots.drain(..).enumerate() {
        let frame = json!({"action": "send_private_msg", "params": {"user_id": 20002, "message": codes}, "echo": i})
            .to_string();
        sending.push(tokio::spawn(async move {
            bot.send_raw(&frame).await;
            let answer = next_answer(&mut bot).await;
            (bot, answer)
        }));
    }
    for s in sending {
        let (bot, answer) = s.await.unwrap();
        assert_eq!((&answer["status"], &answer["msg"]), (&json!("failed"), &json!("BAD_PARAM")), "{answer}");
        let wording = answer["wording"].as_str().unwrap_or_default();
        assert!(wording.contains("more than 10000 segments"), "{answer}");
        bridge.bots.push(bot);
    }
    bridge.survived("4 × 16 MiB CQ strings of a million codes each", CEILING_KIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_of_cheap_values_are_refused_unread() {
    let bridge = Bridge::start("http").await;
    let body = zeros_json(MAX_MESSAGE - 16);
    let mut attacks = Vec::new();
    for _ in 0..AT_ONCE {
        let head = post_head(bridge.http, "/send_private_msg", Some("Bearer s3cret"), body.len());
        attacks.push(tokio::spawn(http_request(bridge.http, head, body.clone())));
    }
    for attack in attacks {
        assert_eq!(attack.await.unwrap().0, 413, "refused as too costly to decode");
    }
    logged(&bridge.log, &["request from bot refused"], AT_ONCE).await;
    bridge.survived("4 × 16 MiB [0,0,…] to the HTTP API", CEILING_KIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_within_the_limits_are_decoded_within_the_parse_budget() {
    let bridge = Bridge::start("parsed").await;
    // As many values as a document may hold, each as large as the bytes allow: decoded, then
    // answered (the action is unknown).
    let body = strings_json(MAX_MESSAGE - 16, onebot_bridge::core::scan::ScanLimits::PEER.max_values);
    let mut attacks = Vec::new();
    for _ in 0..AT_ONCE {
        let head = post_head(bridge.http, "/no_such_action", Some("Bearer s3cret"), body.len());
        attacks.push(tokio::spawn(http_request(bridge.http, head, body.clone())));
    }
    for attack in attacks {
        let (status, answer) = attack.await.unwrap();
        assert_eq!(status, 200, "decoded and answered");
        assert_eq!(serde_json::from_slice::<Value>(&answer).unwrap()["retcode"], 404);
    }
    bridge.survived("4 × 16 MiB of 524 287 strings to the HTTP API (decoded)", CEILING_PARSED_KIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_msgpack_nils_and_lying_headers_are_refused_unread() {
    let bridge = Bridge::start("msgpack").await;
    // Four implementations on the MessagePack reverse WebSocket, a 16 MiB array of nils each,
    // then array32 and map32 headers that claim 2^32 - 1 elements in a few bytes.
    let quiet = BackendOptions { accounts: Vec::new(), announce: false, ..Default::default() };
    let mut implementations = Vec::new();
    for _ in 0..AT_ONCE {
        implementations.push(FakeBackend::dial(bridge.reverse, "/", quiet.clone()).await.unwrap());
    }
    let nils = nils_msgpack(MAX_MESSAGE - 16);
    for implementation in &implementations {
        implementation.push_raw(Message::binary(nils.clone()));
    }
    implementations[0].push_raw(Message::binary(vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]));
    implementations[1].push_raw(Message::binary(vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'k', 0xc0]));
    logged(&bridge.log, &["frame from backend refused", "values"], AT_ONCE).await;
    logged(&bridge.log, &["frame from backend refused", "claims 4294967295"], 2).await;
    bridge.survived("4 × 16 MiB MessagePack nils + lying array32/map32 from the backend", CEILING_KIB).await;
}
