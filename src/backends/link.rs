//! What every backend link shares, whatever its protocol or transport: the [`LinkHandle`] callers
//! send actions through (a socket's writer and waiting calls, or an HTTP caller), the recent event
//! ids that drop a resent event ([`RecentIds`]), and the signal that tells calls made while
//! translating events to stop waiting ([`GiveUp`]).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashbrown::HashTable;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::backends::v11::edge::{Edge, Outbound};
use crate::backends::v12::codec;
use crate::backends::writer::SocketWriter;
use crate::core::message::Segment;
use crate::core::{v12, CallError};
use crate::sync::LockUnpoisoned;

/// Identifies one backend link (a configured one, or one reverse-WS connection).
pub type LinkId = usize;

/// A call's entry in `pending`, removed when the call ends however it ends.
struct Waiting<'a> {
    link: &'a LinkHandle,
    seq: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut pending) = self.link.pending() {
            pending.remove(&self.seq);
        }
    }
}

/// Calls waiting for their answers on a socket, by the number in their `echo`. The numbers are
/// the link's own (an answer's echo is only looked up), so a fast hasher serves.
type Pending = HashMap<u64, oneshot::Sender<v12::Response>, foldhash::fast::RandomState>;

/// Where a link's calls' echoes start: `ob-<number>`.
const ECHO_PREFIX: &str = "ob-";

/// The echo of call number `seq`.
fn echo_of(seq: u64) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(seq);
    let mut echo = String::with_capacity(ECHO_PREFIX.len() + digits.len());
    echo.push_str(ECHO_PREFIX);
    echo.push_str(digits);
    echo
}

/// The call number an answer's echo names, if it is one of the link's.
fn seq_of(echo: &str) -> Option<u64> {
    let digits = echo.strip_prefix(ECHO_PREFIX)?;
    // `u64::from_str` takes a leading `+`; an echo the link wrote never has one.
    if digits.starts_with('+') {
        return None;
    }
    digits.parse().ok()
}

/// The caller side of a backend link. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    pub id: LinkId,
    inner: Arc<LinkShared>,
}

#[derive(Debug)]
struct LinkShared {
    transport: Transport,
    seq: AtomicU64,
    connected: AtomicBool,
    timeout: Duration,
    /// The configured link's up/down state this link reports to.
    metrics: std::sync::OnceLock<crate::metrics::LinkMetrics>,
}

/// What a socket link's frames speak.
#[derive(Debug, Clone)]
pub enum Wire {
    /// OneBot v12; requests go out as MessagePack when `msgpack`, else JSON.
    V12 { msgpack: bool },
    /// OneBot v11 (JSON), converted at the link's edge.
    V11(Arc<Edge>),
}

/// How a link's requests reach the implementation.
#[derive(Debug)]
enum Transport {
    /// A WebSocket: each caller writes its request (JSON as a text frame, MessagePack as a
    /// binary one) through the connection's writer, and answers come back on the socket, matched
    /// by `echo`.
    Socket { writer: SocketWriter, pending: Mutex<Pending>, wire: Wire },
    /// HTTP: each request is answered in its own response. (Boxed: the caller is large beside
    /// the socket's parts.)
    Http(Box<crate::backends::v12::http_client::HttpCaller>),
}

impl LinkHandle {
    /// A socket link speaking OneBot v12; its connections attach their writing half to its
    /// `writer` in turn.
    pub fn new(id: LinkId, timeout: Duration, msgpack: bool) -> LinkHandle {
        LinkHandle::socket(id, timeout, Wire::V12 { msgpack })
    }

    /// [`LinkHandle::new`] for a socket speaking `wire`.
    pub fn socket(id: LinkId, timeout: Duration, wire: Wire) -> LinkHandle {
        let transport =
            Transport::Socket { writer: SocketWriter::default(), pending: Mutex::new(Pending::default()), wire };
        LinkHandle::build(id, timeout, transport)
    }

    /// A socket link's writer, which its connection attaches to (`None` on an HTTP link).
    pub(crate) fn writer(&self) -> Option<&SocketWriter> {
        match &self.inner.transport {
            Transport::Socket { writer, .. } => Some(writer),
            Transport::Http(_) => None,
        }
    }

    /// The edge of a link to a OneBot v11 implementation (over a socket or HTTP).
    pub fn edge(&self) -> Option<&Arc<Edge>> {
        match &self.inner.transport {
            Transport::Socket { wire: Wire::V11(edge), .. } => Some(edge),
            Transport::Socket { .. } => None,
            Transport::Http(http) => http.edge(),
        }
    }

    /// A link whose calls are HTTP requests (always "connected"; failures are per call).
    pub fn http(id: LinkId, timeout: Duration, caller: crate::backends::v12::http_client::HttpCaller) -> LinkHandle {
        let handle = LinkHandle::build(id, timeout, Transport::Http(Box::new(caller)));
        handle.inner.connected.store(true, Ordering::Release);
        handle
    }

    fn build(id: LinkId, timeout: Duration, transport: Transport) -> LinkHandle {
        let inner = LinkShared {
            transport,
            seq: AtomicU64::new(1),
            connected: AtomicBool::new(false),
            timeout,
            metrics: std::sync::OnceLock::new(),
        };
        LinkHandle { id, inner: Arc::new(inner) }
    }

    /// Calls waiting for their answer on a socket (none on HTTP, where each waits on its own
    /// request).
    fn pending(&self) -> Option<std::sync::MutexGuard<'_, Pending>> {
        match &self.inner.transport {
            Transport::Socket { pending, .. } => Some(pending.lock_unpoisoned()),
            Transport::Http(_) => None,
        }
    }

    /// The HTTP caller of an HTTP link.
    pub(crate) fn http_caller(&self) -> Option<&crate::backends::v12::http_client::HttpCaller> {
        match &self.inner.transport {
            Transport::Http(caller) => Some(caller),
            Transport::Socket { .. } => None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Reports this link's ups and downs to `metrics` from now on (set once; later calls are
    /// ignored).
    pub fn observe(&self, metrics: crate::metrics::LinkMetrics) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// An HTTP link's reachability changed (its handle stays "connected": failures are per
    /// call); only reported to the metrics.
    pub fn reachable(&self, up: bool) {
        if let Some(metrics) = self.inner.metrics.get() {
            if up {
                metrics.went_up();
            } else {
                metrics.went_down();
            }
        }
    }

    /// Marks the socket up or down. Going down fails every call still waiting for an answer.
    pub fn set_connected(&self, up: bool) {
        let was = self.inner.connected.swap(up, Ordering::AcqRel);
        if let (Some(metrics), true) = (self.inner.metrics.get(), was != up) {
            if up {
                metrics.went_up();
            } else {
                metrics.went_down();
            }
        }
        if !up {
            let waiting: Vec<_> = self.pending().map(|mut p| p.drain().collect()).unwrap_or_default();
            for (_, tx) in waiting {
                drop(tx); // the caller sees the link drop
            }
        }
    }

    /// Sends one request and waits for its answer, at most the link's action timeout. On a link
    /// to a v11 implementation the request goes through its edge first (which may answer it
    /// itself), and the answer comes back through it.
    pub async fn call(&self, req: v12::Request) -> Result<v12::Response, CallError> {
        self.call_with_message(req, None).await
    }

    /// [`LinkHandle::call`] with `message` (v12 segments) as the request's `message` param. A v12
    /// link that writes JSON writes the segments as they are; every other way (an edge,
    /// MessagePack, HTTP) reads the request's params, so there they are put in as a value.
    pub async fn call_with_message(
        &self,
        mut req: v12::Request,
        message: Option<Vec<Segment>>,
    ) -> Result<v12::Response, CallError> {
        let writes_json = matches!(&self.inner.transport, Transport::Socket { wire: Wire::V12 { msgpack: false }, .. });
        let message = match message {
            Some(message) if !writes_json || self.edge().is_some() => {
                req.params.insert("message".into(), Segment::list_into_value(message));
                None
            }
            message => message,
        };
        if !self.is_connected() {
            return Err(CallError::Unavailable(format!("backend link {} is not connected", self.id)));
        }
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let echo = echo_of(seq);
        req.echo = Some(echo.clone());
        let v11 = match self.edge() {
            Some(edge) => match edge.request(&req) {
                Outbound::Answered(answer) => return Ok(answer),
                Outbound::Call(call) => Some((edge, call)),
            },
            None => None,
        };
        let timeout_ms = self.inner.timeout.as_millis() as u64;
        let answer = match &self.inner.transport {
            Transport::Http(http) => {
                let sent = async {
                    match &v11 {
                        Some((_, call)) => http.call_v11(call).await,
                        None => http.call(&req).await,
                    }
                };
                tokio::time::timeout(self.inner.timeout, sent).await.unwrap_or(Err(CallError::Timeout(timeout_ms)))
            }
            Transport::Socket { writer, pending, wire } => {
                let frame = match (&v11, wire) {
                    (Some((_, call)), _) => Message::text(call.to_json(&echo)),
                    (None, Wire::V12 { msgpack: true }) => Message::binary(codec::encode_request(&req, true)),
                    // What `encode_request` writes for JSON, as a string.
                    (None, Wire::V12 { msgpack: false }) => Message::text(req.to_json_with_message(message.as_deref())),
                    // `edge()` gives a v11 wire's edge, so its requests always went through it.
                    (None, Wire::V11(_)) => return Err(CallError::Link("a v11 link bypassed its edge".into())),
                };
                let (answer_tx, answer) = oneshot::channel();
                pending.lock_unpoisoned().insert(seq, answer_tx);
                // However this call ends (answered, failed, timed out, or dropped by a caller that
                // stopped waiting), nothing of it stays in `pending`.
                let _waiting = Waiting { link: self, seq };
                let outcome = tokio::time::timeout(self.inner.timeout, async {
                    writer.write(frame).await.map_err(|error| CallError::Link(error.to_string()))?;
                    answer.await.map_err(|_| CallError::Link("the connection dropped before the answer came".into()))
                })
                .await;
                outcome.unwrap_or(Err(CallError::Timeout(timeout_ms)))
            }
        }?;
        Ok(match v11 {
            Some((edge, call)) => edge.response(&call, answer),
            None => answer,
        })
    }

    /// Whether requests written under [`deferring_flushes`](crate::backends::writer::deferring_flushes)
    /// wait for a flush.
    pub fn owes_flush(&self) -> bool {
        self.writer().is_some_and(SocketWriter::owes_flush)
    }

    /// Flushes the requests written under
    /// [`deferring_flushes`](crate::backends::writer::deferring_flushes); a failure drops the
    /// connection, which fails their calls.
    pub async fn flush_owed(&self) {
        if let Some(writer) = self.writer() {
            let _ = writer.flush_owed().await;
        }
    }

    /// How many calls wait for an answer now.
    pub fn waiting(&self) -> usize {
        self.pending().map_or(0, |p| p.len())
    }

    /// Hands an answer to the call waiting for it. Returns false for an echo nobody waits for.
    pub fn complete(&self, resp: v12::Response) -> bool {
        let Some(seq) = resp.echo.as_ref().and_then(|e| e.as_str()).and_then(seq_of) else { return false };
        match self.pending().and_then(|mut p| p.remove(&seq)) {
            Some(tx) => tx.send(resp).is_ok(),
            None => false,
        }
    }
}

/// Event ids remembered per link to drop a resent one.
const RECENT_EVENTS: usize = 4096;
/// The longest event id remembered as it is; a longer one (the backend chooses their length, up
/// to a frame's) is remembered by its SHA-256, so the ids kept are at most about 260 KiB.
const KEPT_ID_BYTES: usize = 64;

/// What [`RecentIds`] keeps of an event id: itself, or for a long one its digest in hex after a
/// NUL (65 bytes: longer than any id kept as it is, so never taken for one).
fn kept_id(id: &str) -> std::borrow::Cow<'_, str> {
    use sha2::{Digest, Sha256};
    if id.len() <= KEPT_ID_BYTES {
        id.into()
    } else {
        format!("\0{:x}", Sha256::digest(id.as_bytes())).into()
    }
}

/// Event ids seen lately, to drop an event an implementation sends again (after a reconnect, or
/// on two transports). Shared by every path that feeds one link's events, so it locks inside;
/// the lock is never held across an `await`. Bounded: the oldest ids are forgotten first.
#[derive(Debug, Default)]
pub struct RecentIds {
    inner: Mutex<RecentInner>,
}

/// Each id is copied once, into the ring, with its hash; the index holds sequence numbers, so an
/// id costs one allocation and one hashing however it leaves.
#[derive(Default)]
struct RecentInner {
    /// The ids with their hashes, oldest first.
    ring: VecDeque<(u64, Box<str>)>,
    /// Sequence number of `ring[0]`.
    first: u64,
    /// Sequence numbers of the ids in `ring`, by the id's hash.
    index: HashTable<u64>,
    /// Event ids are chosen by the backend: std's SipHash, keyed per process.
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for RecentInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentInner").field("ids", &self.ring.len()).finish()
    }
}

impl RecentIds {
    pub fn new() -> Self {
        RecentIds::default()
    }

    /// True when the id is new (empty ids are never de-duplicated).
    pub fn insert(&self, id: &str) -> bool {
        if id.is_empty() {
            return true;
        }
        let id = kept_id(id);
        let id = &*id;
        let mut inner = self.inner.lock_unpoisoned();
        let RecentInner { ring, first, index, hasher } = &mut *inner;
        let hash = hasher.hash_one(id);
        let slot = |seq: u64| &ring[(seq - *first) as usize];
        if index.find(hash, |&seq| &*slot(seq).1 == id).is_some() {
            return false;
        }
        let seq = *first + ring.len() as u64;
        index.insert_unique(hash, seq, |&seq| slot(seq).0);
        ring.push_back((hash, id.into()));
        if ring.len() > RECENT_EVENTS {
            if let Some((old_hash, _)) = ring.pop_front() {
                let old = *first;
                if let Ok(entry) = index.find_entry(old_hash, |&seq| seq == old) {
                    entry.remove();
                }
                *first += 1;
            }
        }
        true
    }
}

/// Tells backend calls made while translating events to stop waiting: it is up while the link's
/// reader has stopped reading (its event queue is full), so their answers may sit unread behind
/// the events that filled it. Waiting then could only end in the action timeout.
#[derive(Debug, Clone)]
pub struct GiveUp(Option<watch::Receiver<bool>>);

impl GiveUp {
    /// One that never fires (a path whose answers cannot be stuck behind its events).
    pub fn never() -> GiveUp {
        GiveUp(None)
    }

    /// Whether the signal is up now.
    pub fn is_up(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves while (or as soon as) the signal is up, or when the link is gone.
    pub async fn fired(&self) {
        match &self.0 {
            Some(rx) => {
                let _ = rx.clone().wait_for(|up| *up).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// The raising side of [`GiveUp`], one per link intake.
#[derive(Debug)]
pub struct GiveUpSignal(watch::Sender<bool>);

impl Default for GiveUpSignal {
    fn default() -> Self {
        GiveUpSignal(watch::channel(false).0)
    }
}

impl GiveUpSignal {
    pub fn subscribe(&self) -> GiveUp {
        GiveUp(Some(self.0.subscribe()))
    }

    pub fn set(&self, up: bool) {
        self.0.send_if_modified(|now| std::mem::replace(now, up) != up);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;

    /// A connected JSON link whose connection's frames come out of the receiver.
    async fn attached_link() -> (LinkHandle, tokio::sync::mpsc::Receiver<Message>) {
        let link = LinkHandle::new(1, Duration::from_secs(30), false);
        let (sink, written) = crate::backends::writer::channel_sink(4);
        link.writer().expect("a socket link").attach(sink, Duration::from_secs(5)).await;
        link.set_connected(true);
        (link, written)
    }

    #[test]
    fn recent_ids_drop_repeats_and_forget_the_oldest() {
        let recent = RecentIds::new();
        assert!(recent.insert("a") && recent.insert("b"));
        assert!(!recent.insert("a") && !recent.insert("b"), "a repeat is dropped");
        assert!(recent.insert("") && recent.insert(""), "empty ids are never de-duplicated");
        for i in 0..RECENT_EVENTS {
            assert!(recent.insert(&format!("e{i}")));
        }
        // "a" and "b" were the oldest: forgotten, so new again; the newest are still known.
        assert!(recent.insert("a") && recent.insert("b"));
        assert!(!recent.insert(&format!("e{}", RECENT_EVENTS - 1)));
        assert!(!recent.insert("e2"), "e0 and e1 were forgotten for a and b, e2 was not");
        assert!(recent.insert("e0"));
        assert_eq!(recent.inner.lock_unpoisoned().ring.len(), RECENT_EVENTS);
    }

    /// Long event ids (the backend chooses their length) are remembered by their digest: a
    /// repeat is still dropped, two that differ in their last byte are both kept, and what is
    /// kept of each is short.
    #[test]
    fn long_event_ids_are_remembered_by_their_digest() {
        let recent = RecentIds::new();
        let long = |last: char| format!("{}{last}", "e".repeat(1 << 20));
        assert!(recent.insert(&long('a')) && recent.insert(&long('b')));
        assert!(!recent.insert(&long('a')) && !recent.insert(&long('b')), "a repeat is dropped");
        let short = "e".repeat(KEPT_ID_BYTES);
        assert!(recent.insert(&short) && !recent.insert(&short));
        let inner = recent.inner.lock_unpoisoned();
        assert!(
            inner.ring.iter().all(|(_, kept)| kept.len() <= 65),
            "{:?}",
            inner.ring.iter().map(|(_, k)| k.len()).collect::<Vec<_>>()
        );
        assert_eq!(&*inner.ring[2].1, short, "a short id is kept as it is");
    }

    /// An answer reaches the call whose echo it carries, and only that one; echoes the link
    /// never wrote reach nobody.
    #[tokio::test]
    async fn an_answer_reaches_the_call_its_echo_names() {
        assert_eq!(echo_of(0), "ob-0");
        assert_eq!(seq_of(&echo_of(u64::MAX)), Some(u64::MAX));
        for stray in ["ob-", "ob-+1", "ob--1", "ob-1x", "x-1", "OB-1", "ob-18446744073709551616", ""] {
            assert_eq!(seq_of(stray), None, "{stray:?}");
        }
        let (link, mut written) = attached_link().await;
        let call = tokio::spawn({
            let link = link.clone();
            async move { link.call(v12::Request::new("get_self_info", Map::new())).await }
        });
        let Message::Text(text) = written.recv().await.unwrap() else { panic!("a JSON link writes text") };
        let request: Value = serde_json::from_str(&text).unwrap();
        let echo = request["echo"].as_str().unwrap().to_owned();
        let answer = |echo: &str| v12::Response {
            echo: Some(Value::String(echo.to_owned())),
            ..v12::Response::ok(serde_json::json!({"user_id": "1"}))
        };
        assert!(!link.complete(answer("ob-999")), "nobody waits for that one");
        assert!(!link.complete(v12::Response { echo: None, ..answer("") }), "no echo");
        assert!(link.complete(answer(&echo)));
        assert_eq!(call.await.unwrap().unwrap().data["user_id"], "1");
        assert!(!link.complete(answer(&echo)), "answered once");
        assert_eq!(link.waiting(), 0);
    }

    /// The signal is seen at once by every subscriber, up and down; one that never fires is
    /// never up.
    #[tokio::test]
    async fn the_give_up_signal_is_seen_up_and_down() {
        let signal = GiveUpSignal::default();
        let (early, never) = (signal.subscribe(), GiveUp::never());
        assert!(!early.is_up());
        signal.set(true);
        let late = signal.subscribe();
        assert!(early.is_up() && late.is_up() && !never.is_up());
        tokio::time::timeout(Duration::from_secs(1), late.fired()).await.expect("fired while up");
        signal.set(false);
        assert!(!early.is_up() && !late.is_up());
    }

    /// A translation that stops waiting (its queue filled up) drops its call: the answer may
    /// never come, so nothing of the call may stay behind.
    #[tokio::test]
    async fn a_call_dropped_before_its_answer_leaves_nothing_waiting() {
        let (link, mut written) = attached_link().await;
        let mut call = Box::pin(link.call(v12::Request::new("get_file", Map::new())));
        tokio::select! {
            _ = &mut call => panic!("answered without an answer"),
            request = written.recv() => assert!(request.is_some()),
        }
        assert_eq!(link.waiting(), 1);
        drop(call);
        assert_eq!(link.waiting(), 0);
    }
}
