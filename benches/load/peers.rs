//! The lean peers of the load run, in the bench process: the v12 generator (a forward-WebSocket
//! server the bridge, or the relay, dials), the event frames it pushes, and the bots' side (a
//! receiver that counts events by the `seq=` marker in their text, whichever OneBot version the
//! frame is in).
//!
//! The generator answers every action request at once, answers before events, so a call the
//! process under test makes while events stream in is never queued behind them in the generator.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use onebot_bridge::sync::LockUnpoisoned;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT: &str = r#"{"id":"c1","time":0,"type":"meta","detail_type":"connect","sub_type":"","version":{"impl":"bench","version":"1","onebot_version":"12"}}"#;
const STATUS_UPDATE: &str = r#"{"id":"s1","time":0,"type":"meta","detail_type":"status_update","sub_type":"","status":{"good":true,"bots":[{"self":{"platform":"qq","user_id":"10001"},"online":true}]}}"#;
const STATUS: &str = r#"{"good":true,"bots":[{"self":{"platform":"qq","user_id":"10001"},"online":true}]}"#;
const VERSION: &str = r#"{"impl":"bench","version":"1","onebot_version":"12"}"#;
/// What a OneBot v11 implementation (NapCat) says first on a new connection.
const LIFECYCLE_V11: &str =
    r#"{"time":0,"self_id":10001,"post_type":"meta_event","meta_event_type":"lifecycle","sub_type":"connect"}"#;
const LOGIN_V11: &str = r#"{"user_id":10001,"nickname":"bench"}"#;
const VERSION_V11: &str = r#"{"app_name":"NapCat.Onebot","app_version":"bench","protocol_version":"v11"}"#;
/// Events queued for one link's writer; a full queue makes the pusher wait (backpressure).
const LINK_QUEUE: usize = 1024;

/// The backend: a forward-WebSocket server speaking OneBot v12, or v11 as NapCat does. Every
/// connection is a link; links stay listed in the order they came (closed ones included), so a
/// run picks the ones made after a mark.
pub struct Generator {
    url: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    /// Speaks OneBot v11 (NapCat) instead of v12.
    v11: bool,
    links: Mutex<Vec<Link>>,
    /// `get_file` requests answered.
    get_file: AtomicUsize,
    /// Messages "sent" (ids handed out by `send_message`).
    sent: AtomicU64,
}

/// Where events for one connection go.
#[derive(Clone)]
pub struct Link {
    events: mpsc::Sender<Message>,
}

impl Link {
    /// Queues a frame; a closed link swallows it (the run then sees it missing).
    pub async fn push(&self, frame: &Utf8Bytes) {
        let _ = self.events.send(Message::Text(frame.clone())).await;
    }
}

impl Generator {
    /// `v11`: speak OneBot v11 as NapCat does (its lifecycle event, `get_login_info`,
    /// `get_version_info`, `send_msg`), for the bridge's v11 links.
    pub async fn start(v11: bool) -> Generator {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("generator listens");
        let url = format!("ws://{}/", listener.local_addr().expect("generator address"));
        let shared = Arc::new(Shared { v11, ..Shared::default() });
        let for_accept = shared.clone();
        // Runs until the generator is dropped.
        let accept = tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_link(stream, for_accept.clone()));
                }
            }
        });
        Generator { url, shared, accept }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Links made so far.
    pub fn mark(&self) -> usize {
        self.shared.links.lock_unpoisoned().len()
    }

    /// The `k` links made after `mark`, waiting up to 10 s for them.
    pub async fn links_after(&self, mark: usize, k: usize) -> Vec<Link> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let links = self.shared.links.lock_unpoisoned();
                if links.len() >= mark + k {
                    return links[mark..mark + k].to_vec();
                }
            }
            assert!(Instant::now() < deadline, "the process under test did not dial the generator {k} time(s)");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The newest link.
    pub async fn latest(&self) -> Link {
        self.links_after(0, 1).await;
        self.shared.links.lock_unpoisoned().last().cloned().expect("a link")
    }

    pub fn get_file_calls(&self) -> usize {
        self.shared.get_file.load(Ordering::Relaxed)
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One connection: announce the implementation and its account, then write answers and events
/// (answers first) while a reader task answers requests.
async fn serve_link(stream: TcpStream, shared: Arc<Shared>) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (mut sink, mut stream) = ws.split();
    let (events_tx, mut events) = mpsc::channel(LINK_QUEUE);
    let (answers_tx, mut answers) = mpsc::channel::<Message>(64);
    // Listed before the announcement, so whoever sees the announcement finds the link.
    shared.links.lock_unpoisoned().push(Link { events: events_tx });
    let hellos: &[&str] = if shared.v11 { &[LIFECYCLE_V11] } else { &[CONNECT, STATUS_UPDATE] };
    for hello in hellos {
        if sink.feed(Message::text(*hello)).await.is_err() {
            return;
        }
    }
    let reader = tokio::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(text) = frame {
                if let Some(answer) = answer(&shared, &text) {
                    if answers_tx.send(Message::text(answer)).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    // Ends when the reader ends (the peer went away) or the generator is dropped.
    while sink.flush().await.is_ok() {
        let next = tokio::select! {
            biased;
            a = answers.recv() => a,
            e = events.recv() => e,
        };
        let Some(frame) = next else { break };
        if sink.feed(frame).await.is_err() {
            break;
        }
        // Whatever else is ready goes out in the same flush.
        for _ in 0..256 {
            let Ok(frame) = answers.try_recv().or_else(|_| events.try_recv()) else { break };
            if sink.feed(frame).await.is_err() {
                break;
            }
        }
    }
    reader.abort();
}

/// The answer to an action request (echo copied), or `None` for a frame that is not one.
fn answer(shared: &Shared, text: &str) -> Option<String> {
    let req: Value = serde_json::from_str(text).ok()?;
    let action = req.get("action")?.as_str()?;
    let echo = req.get("echo").map_or_else(|| "null".to_owned(), Value::to_string);
    let data = match action {
        "get_status" => Some(STATUS.to_owned()),
        "get_version" => Some(VERSION.to_owned()),
        "get_file" => {
            shared.get_file.fetch_add(1, Ordering::Relaxed);
            let file_id = req["params"]["file_id"].as_str().unwrap_or("");
            let url = Value::from(format!("http://127.0.0.1:1/f/{file_id}"));
            Some(format!(r#"{{"name":"x.png","url":{url}}}"#))
        }
        // The relay passes the bot's v11 call through as it is: answered the same way.
        "send_message" | "send_group_msg" => {
            let id = shared.sent.fetch_add(1, Ordering::Relaxed);
            Some(format!(r#"{{"message_id":"sent-{id}","time":{}}}"#, unix_now()))
        }
        // A v11 implementation's own words (the bridge's v11 links).
        "get_login_info" => Some(LOGIN_V11.to_owned()),
        "get_version_info" => Some(VERSION_V11.to_owned()),
        "send_msg" => {
            let id = shared.sent.fetch_add(1, Ordering::Relaxed);
            Some(format!(r#"{{"message_id":{}}}"#, id % (i32::MAX as u64)))
        }
        _ => None,
    };
    Some(match data {
        Some(data) => format!(r#"{{"status":"ok","retcode":0,"data":{data},"message":"","echo":{echo}}}"#),
        None => {
            format!(r#"{{"status":"failed","retcode":10002,"data":null,"message":"unsupported action","echo":{echo}}}"#)
        }
    })
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// `LOAD_IDS=uuid`: the v12 generator's message ids are 32 random hex digits (as from a backend
/// that uses UUIDs), from one user. `LOAD_IDS=random`: the same, and each event comes from a user
/// not seen before, with a string id (a platform whose user ids are not numbers): every event
/// then gets a new surrogate too. Random ids land at random places in the disk store's tables.
/// Otherwise (`sequential`) `m-<tag>-<i>` and one user, `20002`.
pub const IDS: &str = "LOAD_IDS";

/// The ids of event `i`: its message id and its sender's id.
pub struct EventIds {
    random_messages: bool,
    random_users: bool,
}

impl EventIds {
    pub fn from_env() -> EventIds {
        let (random_messages, random_users) = match std::env::var(IDS).as_deref() {
            Ok("random") => (true, true),
            Ok("uuid") => (true, false),
            Ok("") | Ok("sequential") | Err(_) => (false, false),
            Ok(other) => panic!("{IDS}={other}: say sequential, uuid or random"),
        };
        EventIds { random_messages, random_users }
    }

    /// What the run says about its ids, when they are not the sequential ones.
    pub fn describe(&self) -> Option<&'static str> {
        match (self.random_messages, self.random_users) {
            (true, true) => Some("random message ids, and a new user with a string id in every event"),
            (true, false) => Some("random message ids (32 hex digits), one user"),
            _ => None,
        }
    }

    fn message(&self, tag: &str, i: usize) -> String {
        if self.random_messages {
            format!("{:016x}{:016x}", mix(tag, i as u64), mix(tag, !(i as u64)))
        } else {
            format!("m-{tag}-{i}")
        }
    }

    fn user(&self, tag: &str, i: usize) -> String {
        if self.random_users {
            format!("u{:016x}", mix(tag, (i as u64) << 1 | 1))
        } else {
            "20002".into()
        }
    }
}

/// `LOAD_TEXT=<bytes>`: every message's text (the events' and the bots' calls') is that much
/// longer, in Chinese and English with the characters CQ codes escape (`&`, `[`, `]`), as
/// chats are; unset, the texts stay short (about 30 bytes).
pub const TEXT: &str = "LOAD_TEXT";

/// The text added to every message as [`TEXT`] asks: as it is, and escaped for a CQ string.
pub struct Filler {
    pub plain: String,
    pub cq: String,
}

impl Filler {
    pub fn from_env() -> &'static Filler {
        static CHOSEN: std::sync::OnceLock<Filler> = std::sync::OnceLock::new();
        CHOSEN.get_or_init(|| {
            let bytes = match std::env::var(TEXT) {
                Ok(v) => v.trim().parse::<usize>().unwrap_or_else(|_| panic!("{TEXT}={v}: say how many bytes")),
                Err(_) => 0,
            };
            let mut plain = String::with_capacity(bytes + 32);
            for c in " 今天的会议改到下午三点 [meeting moved] & see you".chars().cycle() {
                if plain.len() + c.len_utf8() > bytes {
                    break;
                }
                plain.push(c);
            }
            let cq = plain.replace('&', "&amp;").replace('[', "&#91;").replace(']', "&#93;");
            Filler { plain, cq }
        })
    }

    /// What the run says about its texts, when they are longer than the usual.
    pub fn describe(&self) -> Option<String> {
        (!self.plain.is_empty()).then(|| format!("every message's text {} bytes longer", self.plain.len()))
    }
}

/// A well-mixed 64-bit value of the tag and a number (splitmix64's finaliser).
fn mix(tag: &str, n: u64) -> u64 {
    let seed = tag.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut z = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` v12 group messages (text, mention, image, reply), serialised once so pushing is cheap.
/// Event `i` carries `seq=i;` in its text. `tag` keeps event and message ids unique across the
/// runs one process sees (it drops an event id it saw lately). `file_id` names each image.
/// [`IDS`] chooses the message and user ids.
pub fn event_frames(tag: &str, n: usize, file_id: impl Fn(usize) -> String) -> Vec<Utf8Bytes> {
    let now = unix_now();
    let ids = EventIds::from_env();
    let filler = Filler::from_env();
    (0..n)
        .map(|i| {
            let previous = i.saturating_sub(1);
            let file_id = file_id(i);
            format!(
                concat!(
                    r#"{{"id":"ev-{tag}-{i}","time":{now:.3},"type":"message","detail_type":"group","sub_type":"","#,
                    r#""self":{{"platform":"qq","user_id":"10001"}},"message_id":"{message_id}","group_id":"30003","#,
                    r#""user_id":"{user_id}","message":["#,
                    r#"{{"type":"reply","data":{{"message_id":"{replied}","user_id":"{replied_user}"}}}},"#,
                    r#"{{"type":"text","data":{{"text":"seq={i}; hello [world] & friends{filler}"}}}},"#,
                    r#"{{"type":"mention","data":{{"user_id":"10001"}}}},"#,
                    r#"{{"type":"image","data":{{"file_id":"{file_id}"}}}}],"#,
                    r#""alt_message":"hello [world] & friends[mention][image]"}}"#
                ),
                tag = tag,
                i = i,
                now = now,
                message_id = ids.message(tag, i),
                user_id = ids.user(tag, i),
                replied = ids.message(tag, previous),
                replied_user = ids.user(tag, previous),
                file_id = file_id,
                filler = filler.plain,
            )
            .into()
        })
        .collect()
}

/// The same `n` group messages as [`event_frames`], as a OneBot v11 implementation (NapCat)
/// sends them: integer ids, `sender`, `raw_message`, array format, the picture's `url` given.
pub fn event_frames_v11(tag: &str, n: usize, file_id: impl Fn(usize) -> String) -> Vec<Utf8Bytes> {
    let now = unix_now() as u64;
    // Message ids distinct across the runs one process sees.
    let base = tag.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 1_000 * 1_000_000;
    let filler = Filler::from_env();
    (0..n)
        .map(|i| {
            let id = base + i as u64;
            let previous = base + i.saturating_sub(1) as u64;
            let file_id = file_id(i);
            format!(
                concat!(
                    r#"{{"self_id":10001,"user_id":20002,"time":{now},"message_id":{id},"message_seq":{id},"#,
                    r#""real_id":{id},"message_type":"group","sub_type":"normal","#,
                    r#""sender":{{"user_id":20002,"nickname":"Alice","card":"","role":"member"}},"#,
                    r#""raw_message":"[CQ:reply,id={previous}]seq={i}; hello &#91;world&#93; &amp; friends{filler_cq}[CQ:at,qq=10001][CQ:image,file={file_id}]","#,
                    r#""font":14,"group_id":30003,"post_type":"message","message_format":"array","message":["#,
                    r#"{{"type":"reply","data":{{"id":"{previous}"}}}},"#,
                    r#"{{"type":"text","data":{{"text":"seq={i}; hello [world] & friends{filler}"}}}},"#,
                    r#"{{"type":"at","data":{{"qq":"10001"}}}},"#,
                    r#"{{"type":"image","data":{{"file":"{file_id}","url":"http://127.0.0.1:1/f/{file_id}"}}}}]}}"#
                ),
                now = now,
                id = id,
                i = i,
                previous = previous,
                file_id = file_id,
                filler = filler.plain,
                filler_cq = filler.cq,
            )
            .into()
        })
        .collect()
}

/// What the bots received in one run, event by event: how many bots got each, and when the last
/// of them did. Event `i` counts as delivered when `copies` bots have it.
pub struct Tracker {
    base: Instant,
    copies: u32,
    counts: Box<[AtomicU32]>,
    sent_ns: Box<[AtomicU64]>,
    delivered_ns: Box<[AtomicU64]>,
    delivered: AtomicUsize,
    /// Frames with a `seq` out of range, or a copy more than there are bots.
    strays: AtomicUsize,
    /// Event frames that name a picture and give no URL for it.
    without_url: AtomicUsize,
    /// Events sent and not yet delivered, when the run keeps a window.
    pub window: Semaphore,
}

impl Tracker {
    pub fn new(n: usize, copies: usize, window: usize) -> Tracker {
        let zeros = |_| AtomicU64::new(0);
        Tracker {
            base: Instant::now(),
            copies: copies as u32,
            counts: (0..n).map(|_| AtomicU32::new(0)).collect(),
            sent_ns: (0..n).map(zeros).collect(),
            delivered_ns: (0..n).map(zeros).collect(),
            delivered: AtomicUsize::new(0),
            strays: AtomicUsize::new(0),
            without_url: AtomicUsize::new(0),
            window: Semaphore::new(window),
        }
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    pub fn sent(&self, seq: usize) {
        self.sent_ns[seq].store(self.now_ns(), Ordering::Relaxed);
    }

    fn arrived(&self, seq: usize) {
        let Some(count) = self.counts.get(seq) else {
            self.strays.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let got = count.fetch_add(1, Ordering::Relaxed) + 1;
        if got == self.copies {
            self.delivered_ns[seq].store(self.now_ns(), Ordering::Relaxed);
            self.delivered.fetch_add(1, Ordering::Release);
            self.window.add_permits(1);
        } else if got > self.copies {
            self.strays.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn delivered(&self) -> usize {
        self.delivered.load(Ordering::Acquire)
    }

    pub fn strays(&self) -> usize {
        self.strays.load(Ordering::Relaxed)
    }

    /// Event frames received that name a picture without a URL (every v12 frame the relays pass).
    pub fn without_url(&self) -> usize {
        self.without_url.load(Ordering::Relaxed)
    }

    /// Time from `since` to the moment event `seq` was delivered, if it was.
    pub fn delivered_after(&self, seq: usize, since: Instant) -> Option<Duration> {
        let at = self.delivered_ns[seq].load(Ordering::Relaxed);
        let since_ns = since.saturating_duration_since(self.base).as_nanos() as u64;
        (self.counts[seq].load(Ordering::Relaxed) >= self.copies)
            .then(|| Duration::from_nanos(at.saturating_sub(since_ns)))
    }

    /// Send to delivery, for a delivered event.
    pub fn latency(&self, seq: usize) -> Option<Duration> {
        let sent = self.sent_ns[seq].load(Ordering::Relaxed);
        self.delivered_after(seq, self.base).map(|at| at.saturating_sub(Duration::from_nanos(sent)))
    }
}

/// `LOAD_BOT_RATE=<events/s>`: every bot of the run reads at most that many frames a second (a
/// bot slower than the bursts it is sent); unset, as fast as it can.
pub const BOT_RATE: &str = "LOAD_BOT_RATE";

/// The rate [`BOT_RATE`] sets, if any.
pub fn bot_rate() -> Option<f64> {
    static CHOSEN: std::sync::OnceLock<Option<f64>> = std::sync::OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let v = std::env::var(BOT_RATE).ok()?;
        let rate = v.trim().parse::<f64>().ok().filter(|r| *r > 0.0);
        Some(rate.unwrap_or_else(|| panic!("{BOT_RATE}={v}: say how many events a second")))
    })
}

/// Reads frames until the connection ends, counting every event by its `seq=` marker (and those
/// whose picture has no URL); frames without one (lifecycle, meta events) are skipped. With
/// [`BOT_RATE`], it sleeps after every 64 frames until they have taken their time at that rate
/// since the first.
pub async fn receive(mut ws: Ws, tracker: Arc<Tracker>) {
    let rate = bot_rate();
    let (mut started, mut read) = (None, 0u64);
    while let Some(Ok(frame)) = ws.next().await {
        let started = *started.get_or_insert_with(tokio::time::Instant::now);
        if let Message::Text(text) = frame {
            if let Some(seq) = find_seq(text.as_str()) {
                tracker.arrived(seq);
                if text.contains("image") && !text.contains("url") {
                    tracker.without_url.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        read += 1;
        if let (Some(rate), 0) = (rate, read % 64) {
            tokio::time::sleep_until(started + Duration::from_secs_f64(read as f64 / rate)).await;
        }
    }
}

/// The number after the first `seq=` in a frame (a v12 event's text, or a v11 event's message
/// and raw_message alike), without parsing the JSON.
fn find_seq(frame: &str) -> Option<usize> {
    let at = frame.find("seq=")? + 4;
    let digits = frame[at..].bytes().take_while(u8::is_ascii_digit).count();
    frame[at..at + digits].parse().ok()
}

/// A bot's connection to `addr` (bridge or relay), retried while nothing listens there yet.
pub async fn connect(addr: SocketAddr, path: &str, within: Duration) -> Result<Ws, String> {
    let url = format!("ws://{addr}{path}");
    let deadline = Instant::now() + within;
    loop {
        match tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await {
            Ok((ws, _)) => return Ok(ws),
            Err(error) if Instant::now() >= deadline => return Err(format!("cannot connect to {url}: {error}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits for the first text frame: the lifecycle event from the bridge, the generator's
/// `meta.connect` through the relay. Either means the connection is served end to end.
pub async fn first_frame(ws: &mut Ws) -> Result<(), String> {
    let wait = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(_))) => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(format!("connection failed: {error}")),
                None => return Err("connection ended".to_owned()),
            }
        }
    });
    wait.await.unwrap_or_else(|_| Err("no first frame within 10 s".to_owned()))
}

/// The `seq=` marker is found in both the generator's v12 frames and the bridge's v11 ones.
pub fn check_seq_marker() {
    let frame = event_frames("t", 8, |_| "img".into()).pop().expect("a frame");
    assert_eq!(find_seq(frame.as_str()), Some(7));
    let v11 =
        r#"{"post_type":"message","message":"[CQ:reply,id=5]seq=42; hello &#91;world&#93;","raw_message":"seq=42;"}"#;
    assert_eq!(find_seq(v11), Some(42));
    assert_eq!(find_seq(r#"{"meta_event_type":"lifecycle"}"#), None);
    // Random ids: distinct, and the same for the same event (a reply names its target's).
    let random = EventIds { random_messages: true, random_users: true };
    let messages: std::collections::HashSet<String> = (0..1000).map(|i| random.message("t", i)).collect();
    let users: std::collections::HashSet<String> = (0..1000).map(|i| random.user("t", i)).collect();
    assert_eq!((messages.len(), users.len()), (1000, 1000));
    assert_eq!(random.message("t", 7), random.message("t", 7));
    assert_ne!(random.message("t", 7), random.message("u", 7));
    assert!(messages.iter().all(|m| m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit())));
}
