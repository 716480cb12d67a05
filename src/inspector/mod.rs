//! The translation inspector: recent translations, both sides of each, for the page on the admin
//! listener ([`page`]). Off unless `--inspector` (or `--demo`); when off, the hub holds no
//! inspector and records nothing (each hook is one `if let Some(…)`).
//!
//! **What is kept.** One item per translation, as JSON:
//! `{seq, time, account, kind, name, ok, error, note, took_ms, v12: [side], v11: [side]}`, a side
//! being `{dir: "event"|"request"|"response", body, ok}`:
//! - `event`: a v12 event and the v11 event it became, or why none (`note`: the bot's own
//!   message; `error`: untranslatable). Backend calls made while translating (a picture's URL)
//!   are v12 `request`/`response` sides. Meta events are shown once each, except heartbeats;
//!   they never reach bots as such.
//! - `action`: the v11 request, every v12 request and answer it made, and the v11 answer;
//!   `ok` is false when the v11 retcode is not 0, and a failed v12 answer is marked too.
//! - `quick_operation`: an HTTP POST reply's operation with the event it answers, and its calls.
//!
//! **Bounds.** The ring keeps the newest [`RING_ITEMS`] items within [`RING_BYTES`] of rendered
//! JSON, dropping the oldest first. Live items go to page streams through a broadcast of
//! [`LIVE_QUEUE`] messages; a stream that falls behind loses the oldest and is told so. An item
//! is at most [`ITEM_MAX`] bytes: its bodies are cut again ([`sanitize::TIGHT`]) and, if still
//! too large, left out. At most [`CALLS_MAX`] backend calls are shown per item. Bodies follow
//! [`sanitize::NORMAL`]: strings past 300 bytes, `base64://` payloads and `data` strings are cut
//! with a `…(N bytes)` marker; arrays, objects and nesting are bounded.
//!
//! **Redaction.** Every configured token and secret (`Inspector::new` gets them all) becomes
//! `***` wherever it occurs in anything kept or shown: strings, object keys, error texts, the
//! status. Secrets are matched longest first, before any cut, so a cut never shows part of one.

pub mod connections;
pub mod page;
pub mod sanitize;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::core::event::V11Event;
use crate::core::{v11, v12, CallError, V12Caller};
use crate::sync::LockUnpoisoned;
use connections::{Connection, Connections, Registered};
use sanitize::{Limits, Redactor, NORMAL, TIGHT};

/// Items the ring keeps at most…
pub const RING_ITEMS: usize = 200;
/// …and rendered bytes (the SSE messages as sent), whichever bound is reached first.
pub const RING_BYTES: usize = 2 * 1024 * 1024;
/// Live messages queued for page streams; a slower stream loses the oldest.
pub const LIVE_QUEUE: usize = 256;
/// Bytes of one rendered item at most.
pub const ITEM_MAX: usize = 16 * 1024;
/// Backend calls shown per item; more are counted in a marker.
pub const CALLS_MAX: usize = 16;
/// Bytes of an error text kept.
const ERROR_MAX: usize = 500;

/// What an item is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Event,
    Action,
    QuickOperation,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Action => "action",
            Kind::QuickOperation => "quick_operation",
        }
    }
}

/// Which way a body went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Event,
    Request,
    Response,
}

impl Dir {
    fn as_str(self) -> &'static str {
        match self {
            Dir::Event => "event",
            Dir::Request => "request",
            Dir::Response => "response",
        }
    }
}

/// One body of an item, already sanitized.
#[derive(Debug, Clone)]
pub struct Side {
    pub dir: Dir,
    pub body: Value,
    /// False for a failed answer.
    pub ok: bool,
}

/// One translation, as recorded by the hub.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    /// The v11 `self_id` (0 for a backend's meta events, which belong to no account).
    pub account: i64,
    pub name: String,
    pub error: Option<String>,
    /// Why nothing came out when that is not an error.
    pub note: Option<String>,
    pub took: Duration,
    pub v12: Vec<Side>,
    pub v11: Vec<Side>,
}

/// The newest items, rendered as SSE messages.
#[derive(Debug, Default)]
struct Ring {
    items: VecDeque<Bytes>,
    bytes: usize,
}

/// Recent translations and live bot connections, for the inspector page.
#[derive(Debug)]
pub struct Inspector {
    redactor: Redactor,
    /// Bounded by [`RING_ITEMS`] and [`RING_BYTES`].
    ring: Mutex<Ring>,
    /// Bounded by [`LIVE_QUEUE`].
    live: broadcast::Sender<Bytes>,
    seq: AtomicU64,
    connections: Arc<Connections>,
}

impl Default for Inspector {
    fn default() -> Inspector {
        Inspector::new(Vec::new())
    }
}

impl Inspector {
    /// An inspector that masks each of `secrets` (every configured token and secret).
    pub fn new(secrets: Vec<String>) -> Inspector {
        Inspector {
            redactor: Redactor::new(secrets),
            ring: Mutex::default(),
            live: broadcast::channel(LIVE_QUEUE).0,
            seq: AtomicU64::new(0),
            connections: Arc::default(),
        }
    }

    /// A sanitized copy of a body.
    pub fn body(&self, value: &Value) -> Value {
        self.redactor.value(value, &NORMAL)
    }

    /// A text with secrets masked and its length bounded (errors, notes).
    pub fn text(&self, text: &str) -> String {
        self.redactor.text(text, ERROR_MAX)
    }

    /// A status value with every secret masked (strings and keys; nothing cut but huge lists).
    pub fn redact(&self, value: &Value) -> Value {
        let limits = Limits { string: 4096, data: 4096, array: 10_000, object: 10_000, depth: 16 };
        self.redactor.value(value, &limits)
    }

    /// A v12 event as received (id, time, type, detail_type, sub_type, self, then its fields).
    pub fn v12_event(&self, ev: &v12::Event) -> Side {
        let mut map = Map::new();
        map.insert("id".into(), Value::String(self.redactor.text(&ev.id, NORMAL.string)));
        map.insert("time".into(), serde_json::Number::from_f64(ev.time).map_or(Value::Null, Value::Number));
        map.insert("type".into(), Value::String(ev.kind.clone()));
        map.insert("detail_type".into(), Value::String(self.redactor.text(&ev.detail_type, NORMAL.string)));
        map.insert("sub_type".into(), Value::String(self.redactor.text(&ev.sub_type, NORMAL.string)));
        if let Some(me) = &ev.self_id {
            let me = json!({"platform": me.platform, "user_id": me.user_id});
            map.insert("self".into(), self.body(&me));
        }
        let mut all = Map::with_capacity(ev.fields.len() + 1);
        if let Some(message) = &ev.message {
            all.insert("message".into(), message.to_value());
        }
        all.extend(ev.fields.iter().map(|(k, v)| (k.to_owned(), v.clone())));
        if let Value::Object(fields) = self.redactor.map(&all, &NORMAL) {
            map.extend(fields);
        }
        Side { dir: Dir::Event, body: Value::Object(map), ok: true }
    }

    /// A v11 request as the bot sent it.
    pub fn v11_request(&self, req: &v11::Request) -> Side {
        let mut map = Map::new();
        map.insert("action".into(), Value::String(self.redactor.text(&req.action, NORMAL.string)));
        map.insert("params".into(), self.redactor.map(&req.params, &NORMAL));
        if let Some(echo) = &req.echo {
            map.insert("echo".into(), self.body(echo));
        }
        Side { dir: Dir::Request, body: Value::Object(map), ok: true }
    }

    /// A v11 answer; not ok when its retcode is not 0.
    pub fn v11_response(&self, answer: &v11::Response) -> Side {
        let mut map = Map::new();
        map.insert("status".into(), Value::String(answer.status.into()));
        map.insert("retcode".into(), answer.retcode.into());
        map.insert("data".into(), self.body(&answer.data));
        map.insert("message".into(), Value::String(self.text(&answer.message)));
        if let Some(wording) = &answer.wording {
            map.insert("wording".into(), Value::String(self.text(wording)));
        }
        Side { dir: Dir::Response, body: Value::Object(map), ok: answer.retcode == 0 }
    }

    fn v12_request(&self, req: &v12::Request) -> Side {
        let mut map = Map::new();
        map.insert("action".into(), Value::String(self.redactor.text(&req.action, NORMAL.string)));
        map.insert("params".into(), self.redactor.map(&req.params, &NORMAL));
        if let Some(me) = &req.self_id {
            map.insert("self".into(), self.body(&json!({"platform": me.platform, "user_id": me.user_id})));
        }
        Side { dir: Dir::Request, body: Value::Object(map), ok: true }
    }

    fn v12_response(&self, answer: &Result<v12::Response, CallError>) -> Side {
        match answer {
            Ok(r) => {
                let body = json!({
                    "status": self.text(&r.status),
                    "retcode": r.retcode,
                    "data": self.body(&r.data),
                    "message": self.text(&r.message),
                });
                Side { dir: Dir::Response, body, ok: r.retcode == 0 }
            }
            Err(error) => {
                let body = json!({"error": self.text(&error.to_string())});
                Side { dir: Dir::Response, body, ok: false }
            }
        }
    }

    /// Keeps one translation and sends it to every open page.
    pub fn record(&self, entry: Entry) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let time = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let error = entry.error.as_deref().map(|e| self.text(e));
        // A failed backend call inside a translation that still succeeded is marked on its side.
        let ok = error.is_none() && entry.v11.iter().all(|s| s.ok);
        let head = json!({
            "seq": seq,
            "time": time,
            "account": entry.account,
            "kind": entry.kind.as_str(),
            "name": self.redactor.text(&entry.name, 120),
            "ok": ok,
            "error": error,
            "note": entry.note.as_deref().map(|n| self.text(n)),
            "took_ms": entry.took.as_secs_f64() * 1000.0,
        });
        let rendered = self.render(head, &entry.v12, &entry.v11);
        let message = crate::admin::sse_message(&rendered);
        let mut ring = self.ring.lock_unpoisoned();
        ring.bytes += message.len();
        ring.items.push_back(message.clone());
        while ring.items.len() > RING_ITEMS || ring.bytes > RING_BYTES {
            match ring.items.pop_front() {
                Some(old) => ring.bytes -= old.len(),
                None => break,
            }
        }
        // Sent under the ring's lock, so a page subscribing meanwhile gets it exactly once.
        let _ = self.live.send(message);
    }

    /// The item's JSON within [`ITEM_MAX`]: bodies cut again, or left out.
    fn render(&self, head: Value, v12: &[Side], v11: &[Side]) -> String {
        // Bodies are sanitized again whatever made them: nothing reaches a page unredacted.
        let sides = |sides: &[Side], limits: &Limits| -> Value {
            let mut out: Vec<Value> = sides
                .iter()
                .take(CALLS_MAX * 2 + 2)
                .map(|s| {
                    let body = self.redactor.value(&s.body, limits);
                    json!({"dir": s.dir.as_str(), "ok": s.ok, "body": body})
                })
                .collect();
            if sides.len() > CALLS_MAX * 2 + 2 {
                let more = sides.len() - (CALLS_MAX * 2 + 2);
                out.push(json!({"dir": "response", "ok": true, "body": format!("…({more} more bodies)")}));
            }
            Value::Array(out)
        };
        let with = |v12: Value, v11: Value| {
            let mut item = head.clone();
            item["v12"] = v12;
            item["v11"] = v11;
            item.to_string()
        };
        let text = with(sides(v12, &NORMAL), sides(v11, &NORMAL));
        if text.len() <= ITEM_MAX {
            return text;
        }
        let text = with(sides(v12, &TIGHT), sides(v11, &TIGHT));
        if text.len() <= ITEM_MAX {
            return text;
        }
        let left_out = |sides: &[Side]| -> Value {
            sides
                .iter()
                .map(|s| json!({"dir": s.dir.as_str(), "ok": s.ok, "body": "…(left out: the item is over 16 KiB)"}))
                .take(CALLS_MAX * 2 + 2)
                .collect()
        };
        with(left_out(v12), left_out(v11))
    }

    /// The kept items (oldest first) and a receiver of the ones to come; none is missed or
    /// received twice between the two.
    pub fn subscribe(&self) -> (Vec<Bytes>, broadcast::Receiver<Bytes>) {
        let ring = self.ring.lock_unpoisoned();
        (ring.items.iter().cloned().collect(), self.live.subscribe())
    }

    /// Items and bytes the ring holds now.
    pub fn kept(&self) -> (usize, usize) {
        let ring = self.ring.lock_unpoisoned();
        (ring.items.len(), ring.bytes)
    }

    /// Lists a bot connection or endpoint until the guard drops. Addresses and URLs are shown
    /// with secrets masked.
    pub fn register(&self, mut conn: Connection) -> Registered {
        conn.endpoint = self.redactor.whole(&conn.endpoint).into_owned();
        conn.peer = self.redactor.whole(&conn.peer).into_owned();
        Registered::new(self.connections.clone(), conn)
    }

    /// The listed connections and how many did not fit.
    pub fn connections(&self) -> (Vec<Connection>, u64) {
        self.connections.now()
    }
}

impl Inspector {
    /// Records a v12 event and what became of it: the v11 event, nothing (`Ok(None)`: the bot's
    /// own message), or why it could not be translated.
    pub fn event(
        &self,
        account: i64,
        ev: &v12::Event,
        outcome: Result<Option<&V11Event>, String>,
        calls: Calls,
        took: Duration,
    ) {
        let mut v12 = vec![self.v12_event(ev)];
        v12.extend(calls.into_sides());
        let (v11, error, note) = match outcome {
            Ok(Some(delivered)) => {
                // Read back from the JSON bots get (array format: segments show as they are).
                let json = delivered.to_json(v11::PostFormat::Array);
                let value = serde_json::from_str::<Value>(&json).unwrap_or(Value::Null);
                (vec![Side { dir: Dir::Event, body: self.body(&value), ok: true }], None, None)
            }
            Ok(None) => {
                (Vec::new(), None, Some("not for bots: the bot's own message (report-self-message is off)".to_owned()))
            }
            Err(error) => (Vec::new(), Some(format!("cannot translate; dropped: {error}")), None),
        };
        self.record(Entry { kind: Kind::Event, account, name: ev.name(), error, note, took, v12, v11 });
    }

    /// Records a backend's meta event (never passed to bots as such; heartbeats are not recorded).
    pub fn meta_event(&self, ev: &v12::Event) {
        let note = "meta event: the bridge reads it; bots get their own lifecycle events and heartbeats";
        self.record(Entry {
            kind: Kind::Event,
            account: 0,
            name: ev.name(),
            error: None,
            note: Some(note.to_owned()),
            took: Duration::ZERO,
            v12: vec![self.v12_event(ev)],
            v11: Vec::new(),
        });
    }

    /// Records a v11 action: the request (from [`Inspector::v11_request`]), the backend calls it
    /// made and its answer; a retcode other than 0 is the item's error.
    pub fn action(&self, account: i64, asked: Side, calls: Calls, answer: &v11::Response, took: Duration) {
        let name = asked.body.get("action").and_then(Value::as_str).unwrap_or_default().to_owned();
        let error = (answer.retcode != 0).then(|| {
            let why = answer.wording.as_deref().filter(|w| !w.is_empty()).unwrap_or(&answer.message);
            format!("retcode {}: {why}", answer.retcode)
        });
        let v11 = vec![asked, self.v11_response(answer)];
        self.record(Entry { kind: Kind::Action, account, name, error, note: None, took, v12: calls.into_sides(), v11 });
    }

    /// Records a quick operation (an HTTP POST reply) on the event it answers.
    pub fn quick_operation(
        &self,
        account: i64,
        context: &Value,
        operation: &Value,
        result: Result<(), String>,
        calls: Calls,
        took: Duration,
    ) {
        let name = match operation.as_object() {
            Some(op) if !op.is_empty() => op.keys().take(8).cloned().collect::<Vec<_>>().join("+"),
            _ => "quick_operation".to_owned(),
        };
        let asked = json!({"context": self.body(context), "operation": self.body(operation)});
        let (answer, error) = match result {
            Ok(()) => (json!({"done": true}), None),
            Err(error) => (json!({"done": false, "error": self.text(&error)}), Some(error)),
        };
        let ok = error.is_none();
        let v11 =
            vec![Side { dir: Dir::Request, body: asked, ok: true }, Side { dir: Dir::Response, body: answer, ok }];
        self.record(Entry {
            kind: Kind::QuickOperation,
            account,
            name,
            error,
            note: None,
            took,
            v12: calls.into_sides(),
            v11,
        });
    }
}

/// Now in unix milliseconds, for [`Connection::since`].
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The backend calls one translation made, in the order they were made (at most [`CALLS_MAX`]).
#[derive(Debug, Default)]
pub struct Calls {
    sides: Mutex<Vec<Side>>,
    more: AtomicU64,
}

impl Calls {
    /// The sides recorded, with a marker for calls left out.
    pub fn into_sides(self) -> Vec<Side> {
        let mut sides = self.sides.into_inner().unwrap_or_else(|p| p.into_inner());
        let more = self.more.into_inner();
        if more > 0 {
            sides.push(Side { dir: Dir::Request, body: Value::String(format!("…({more} more calls)")), ok: true });
        }
        sides
    }
}

/// A caller that records each request and its answer (wraps the real one while the inspector is on).
pub struct Recording<'a, C> {
    pub inner: &'a C,
    pub inspector: &'a Inspector,
    pub calls: &'a Calls,
}

impl<C: V12Caller> V12Caller for Recording<'_, C> {
    async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
        let shown = self.calls.sides.lock_unpoisoned().len() < CALLS_MAX * 2;
        if !shown {
            self.calls.more.fetch_add(1, Ordering::Relaxed);
            return self.inner.call(request).await;
        }
        let asked = self.inspector.v12_request(&request);
        let answer = self.inner.call(request).await;
        let answered = self.inspector.v12_response(&answer);
        let mut sides = self.calls.sides.lock_unpoisoned();
        sides.push(asked);
        sides.push(answered);
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, body: Value) -> Entry {
        Entry {
            kind: Kind::Action,
            account: 10001,
            name: name.into(),
            error: None,
            note: None,
            took: Duration::from_millis(3),
            v12: vec![Side { dir: Dir::Request, body: body.clone(), ok: true }],
            v11: vec![Side { dir: Dir::Request, body, ok: true }],
        }
    }

    fn items(inspector: &Inspector) -> Vec<Value> {
        inspector
            .subscribe()
            .0
            .iter()
            .filter_map(|m| std::str::from_utf8(m).ok())
            .filter_map(|m| serde_json::from_str(m.trim_start_matches("data: ").trim_end()).ok())
            .collect()
    }

    #[test]
    fn the_ring_keeps_the_newest_items_by_count() {
        let inspector = Inspector::default();
        for n in 0..RING_ITEMS + 50 {
            inspector.record(entry(&format!("a{n}"), json!({"n": n})));
        }
        let kept = items(&inspector);
        assert_eq!(kept.len(), RING_ITEMS);
        assert_eq!(kept[0]["name"], "a50", "the oldest went first");
        assert_eq!(kept[RING_ITEMS - 1]["seq"], (RING_ITEMS + 50) as u64);
    }

    #[test]
    fn the_ring_keeps_within_its_byte_budget_and_items_within_theirs() {
        let inspector = Inspector::default();
        // Wide bodies: each item is near its cap.
        let wide: Map<String, Value> = (0..25).map(|i| (format!("k{i}"), Value::String("x".repeat(290)))).collect();
        for n in 0..RING_ITEMS {
            inspector.record(entry(&format!("a{n}"), Value::Object(wide.clone())));
        }
        let (count, bytes) = inspector.kept();
        assert!(bytes <= RING_BYTES, "{bytes}");
        assert!(count < RING_ITEMS, "the byte budget bound first: {count}");
        for m in inspector.subscribe().0 {
            assert!(m.len() <= ITEM_MAX + 16, "{}", m.len());
        }
        let last = items(&inspector).pop().unwrap_or_default();
        assert_eq!(last["name"], format!("a{}", RING_ITEMS - 1));
        assert!(last["v12"][0]["body"].is_object(), "cut again, not left out");
    }

    #[test]
    fn secrets_never_reach_an_item_even_in_errors_and_names() {
        let inspector = Inspector::new(vec!["s3cret-token".into()]);
        let mut e = entry("send_s3cret-token", json!({"s3cret-token": "Bearer s3cret-token!"}));
        e.error = Some("backend said: bad token s3cret-token".into());
        e.v12.push(inspector.v12_response(&Err(CallError::Link("token s3cret-token refused".into()))));
        inspector.record(e);
        let (kept, _) = inspector.subscribe();
        let text = String::from_utf8_lossy(&kept[0]).into_owned();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("bad token ***") && text.contains("Bearer ***!"), "{text}");
        let item = &items(&inspector)[0];
        assert_eq!(item["ok"], false);
    }

    #[test]
    fn a_failed_answer_marks_the_item() {
        let inspector = Inspector::default();
        let mut e = entry("send_msg", json!({}));
        e.v11.push(inspector.v11_response(&v11::Response::failed(100, "BAD", "no")));
        inspector.record(e);
        assert_eq!(items(&inspector)[0]["ok"], false);
    }

    #[tokio::test]
    async fn a_slow_page_stream_lags_and_the_ring_is_unaffected() {
        let inspector = Inspector::default();
        let (initial, mut rx) = inspector.subscribe();
        assert!(initial.is_empty());
        for n in 0..LIVE_QUEUE + 44 {
            inspector.record(entry(&format!("a{n}"), json!(n)));
        }
        match rx.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 44),
            other => panic!("expected a lag, got {other:?}"),
        }
        let next = rx.recv().await.unwrap_or_default();
        assert!(String::from_utf8_lossy(&next).contains("\"a44\""));
        assert_eq!(inspector.kept().0, RING_ITEMS);
    }

    #[tokio::test]
    async fn recording_keeps_each_call_and_its_answer() {
        struct Echo;
        impl V12Caller for Echo {
            async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
                if request.action == "fail" {
                    return Err(CallError::Timeout(5));
                }
                Ok(v12::Response {
                    status: "ok".into(),
                    retcode: 0,
                    data: json!({"file": format!("base64://{}", "A".repeat(4000))}),
                    message: String::new(),
                    echo: None,
                })
            }
        }
        let inspector = Inspector::default();
        let calls = Calls::default();
        let rec = Recording { inner: &Echo, inspector: &inspector, calls: &calls };
        let req = |action: &str| v12::Request { action: action.into(), params: Map::new(), echo: None, self_id: None };
        assert!(rec.call(req("get_file")).await.is_ok());
        assert!(rec.call(req("fail")).await.is_err());
        let sides = calls.into_sides();
        assert_eq!(sides.len(), 4);
        assert_eq!(sides[1].body["data"]["file"], "base64://…(4009 bytes)");
        assert!(!sides[3].ok);
    }
}
