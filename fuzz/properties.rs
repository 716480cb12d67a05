//! The properties the fuzz targets check, one `check_*` function per target.
//!
//! Each function takes the raw fuzz input and panics when a property is broken; "it ran" is never
//! the whole check. This file is compiled twice through `#[path]`: by every target in
//! `fuzz/fuzz_targets/` and by the root crate's `tests/fuzz_regressions.rs`, which replays the
//! committed seeds and every input a campaign found. So a regression case fails `cargo test`
//! through exactly the check that found it, with no libFuzzer and no nightly flags.
//!
//! It only uses the library's public API and crates the root crate already has (`serde_json`,
//! `rmpv`, `tokio`).
#![allow(dead_code)] // each target uses one check

use std::sync::{Arc, Mutex, OnceLock};

use onebot_bridge::backends::v12::codec;
use onebot_bridge::core::cq::{escape_text, escape_value, parse_cq, render_cq, unescape_text, unescape_value};
use onebot_bridge::core::event::{heartbeat_interval_ms, status_bots};
use onebot_bridge::core::message::Segment;
use onebot_bridge::core::v11::{self, PostFormat};
use onebot_bridge::core::v12::{self, Event, SelfId};
use onebot_bridge::core::{BackendInfo, CallError, MappingSet, MemoryIdStore, Options, Translator, V12Caller};
use serde_json::{json, Value};

/// Output may be this many times the input, plus [`SLACK`] bytes. The largest honest growth is a
/// text of `&` written both as an escaped CQ string (`&amp;`, five bytes each) and as a segment
/// array, or a MessagePack byte becoming a JSON key like `"nil":null,`.
const GROWTH: usize = 16;
/// Fixed-size parts of an answer: the v11 envelope, `sender`, a failure's wording.
const SLACK: usize = 4096;

/// v11 message ids are int32 in go-cqhttp; bots store them in 32-bit columns. (Guild messages
/// have string ids; where a number must be the only form, the caller checks.)
pub fn assert_message_id(v: &Value, what: &str) {
    if v.is_number() {
        let n = v.as_i64().unwrap_or_else(|| panic!("{what}: message_id {v} is not an integer"));
        assert!(i32::try_from(n).is_ok(), "{what}: message_id {n} is outside int32");
    }
}

pub fn assert_bounded(output: usize, input: usize, what: &str) {
    assert!(output <= GROWTH * input + SLACK, "{what}: {output} bytes out of {input} bytes in");
}

/// Runs the core's futures. The core is async (it calls the backend through `V12Caller`) but does
/// no I/O of its own, so one current-thread runtime per thread serves every input.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().build().expect("a current-thread runtime");
    }
    RUNTIME.with(|rt| rt.block_on(future))
}

fn mappings() -> Arc<MappingSet> {
    static MAPS: OnceLock<Arc<MappingSet>> = OnceLock::new();
    MAPS.get_or_init(|| Arc::new(MappingSet::embedded().expect("the embedded mappings load"))).clone()
}

/// A fresh translator per input, so one input's ids never leak into the next one's run.
fn translator() -> Translator<MemoryIdStore> {
    Translator::new(mappings(), MemoryIdStore::default(), Options::default())
}

fn backend(profile: Option<&str>) -> BackendInfo {
    BackendInfo { profile: profile.unwrap_or_default().to_owned(), ..BackendInfo::default() }
}

// ---- (1) CQ codes -------------------------------------------------------------------------------

/// CQ parse/render: parsing never panics and yields well-formed segments; parse∘render∘parse is
/// parse (rendering loses nothing parsing can see); rendering escapes so that no `[`, `]` or `,`
/// inside a value can open, close or split a code; the text and value escapes invert.
pub fn check_cq(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let parsed = parse_cq(&input);
    for pair in parsed.windows(2) {
        assert!(!(pair[0].kind == "text" && pair[1].kind == "text"), "adjacent text segments in {parsed:?}");
    }
    for seg in &parsed {
        assert!(seg.data.values().all(Value::is_string), "a parsed value is not a string: {seg:?}");
        if seg.kind == "text" {
            assert!(!seg.str_of("text").unwrap_or_default().is_empty(), "an empty text segment");
        }
    }
    let rendered = render_cq(&parsed);
    assert_bounded(rendered.len(), input.len(), "render_cq");
    assert_eq!(
        parse_cq(&rendered),
        parsed,
        "parse(render(parse(x))) != parse(x) for {input:?} (rendered {rendered:?})"
    );
    // Escaping: the rendering holds exactly one `[`/`]` per code and no raw `,` outside codes.
    let codes = parsed.iter().filter(|s| s.kind != "text").count();
    assert_eq!(rendered.matches('[').count(), codes, "unescaped `[` in {rendered:?}");
    assert_eq!(rendered.matches(']').count(), codes, "unescaped `]` in {rendered:?}");
    // The input as plain text, and as one parameter value, come back unchanged.
    let text = parse_cq(&escape_text(&input));
    let expected = if input.is_empty() { vec![] } else { vec![Segment::text(input.to_string())] };
    assert_eq!(text, expected, "escape_text does not protect {input:?}");
    assert_eq!(unescape_text(&escape_text(&input)), input);
    assert_eq!(unescape_value(&escape_value(&input)), input);
    let code = Segment::new("fuzz").with("v", input.to_string());
    assert_eq!(parse_cq(&render_cq(std::slice::from_ref(&code))), vec![code], "a value does not survive");
}

// ---- (2) v12 events → v11 events ---------------------------------------------------------------

/// Answers every call with a failure: received media keep no URL, nothing else changes.
struct FailingCaller;

impl V12Caller for FailingCaller {
    async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
        Err(CallError::Unavailable(format!("no backend in the fuzz run ({})", request.action)))
    }
}

/// The input is one v12 event, an array of events translated in order (so a reply can name an
/// earlier message), or a case from `tests/cases/events` (`before` events, then `v12`, with an
/// optional `format` and `profile`). Each event that reads as a v12 event is translated through
/// [`Translator::to_v11_event`] for the account it names. Properties: no panic; the v11 JSON in
/// both post formats is bounded by the input size; ids the bot sees are integers, message ids
/// within int32 (strings only in guild events); the string format's `message` is `raw_message`,
/// which is the array rendered as CQ, and it is a fixed point of parse∘render.
pub fn check_v12_event(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let (events, profile) = match value {
        Value::Object(mut case) if case.contains_key("v12") => {
            let mut events = match case.remove("before") {
                Some(Value::Array(before)) => before,
                _ => vec![],
            };
            events.extend(case.remove("v12"));
            (events, case.get("profile").and_then(Value::as_str).map(str::to_owned))
        }
        Value::Array(events) => (events, None),
        event => (vec![event], None),
    };
    let core = translator();
    let backend = backend(profile.as_deref());
    for value in events {
        let Ok(event) = Event::from_value(value) else { continue };
        if event.kind == "meta" {
            let _ = heartbeat_interval_ms(&event);
            let _ = status_bots(&Value::Object(event.fields.clone().into_map()));
        }
        let Some(self_id) = event.self_id.clone() else { continue };
        let Ok(account) = block_on(core.account(&self_id)) else { continue };
        let ctx = core.context(&account, &backend, PostFormat::Array);
        let Ok(Some(v11)) = block_on(core.to_v11_event(ctx, &event, 1_700_000_000, &FailingCaller)) else { continue };
        check_v11_event(&v11, data.len());
    }
}

fn check_v11_event(ev: &onebot_bridge::core::event::V11Event, input: usize) {
    let written = ev.to_value(PostFormat::Array);
    let body = written.as_object().expect("a v11 event is an object");
    for format in [PostFormat::String, PostFormat::Array] {
        let json = ev.to_json(format);
        assert_bounded(json.len(), input, "v11 event");
        serde_json::from_str::<Value>(&json).expect("the v11 event is JSON");
        // Text, not re-read values: the two writings must agree byte for byte.
        let value = serde_json::to_string(&ev.to_value(format)).expect("the v11 event is JSON");
        assert!(json == value, "json() and to_value() disagree");
    }
    assert!(!ev.post_type().is_empty(), "no post_type in {body:?}");
    for key in ["time", "self_id"] {
        assert!(body.get(key).is_some_and(Value::is_i64), "{key} is not an integer in {body:?}");
    }
    // Message events are built field by field; notices and requests pass fields the tables do not
    // name through as the backend sent them (a `null` id stays `null`, a guild notice may keep
    // string ids), so for those only numbers are checked.
    let message_event = matches!(ev.post_type(), "message" | "message_sent");
    let guild = body.get("message_type").and_then(Value::as_str) == Some("guild");
    for key in ["user_id", "group_id"] {
        if let Some(v) = body.get(key) {
            if message_event && !guild {
                assert!(v.is_i64(), "{key} {v} is not an integer");
            } else {
                assert!(!v.is_number() || v.is_i64(), "{key} {v} is a number but not an integer");
            }
        }
    }
    if let Some(id) = body.get("message_id") {
        assert_message_id(id, "v11 event");
        assert!(!message_event || guild || id.is_i64(), "message_id {id} of a non-guild message is not an integer");
    }
    if !message_event {
        return;
    }
    assert!(body.contains_key("message"), "a message event has a message in its place");
    let segments = ev.message().expect("a message event has its segments");
    let array = ev.to_value(PostFormat::Array);
    let Some(Value::Array(items)) = array.get("message") else { panic!("message is not a segment array: {array}") };
    assert_eq!(items.len(), segments.len(), "the array format writes every segment");
    let raw = body.get("raw_message").and_then(Value::as_str).expect("raw_message beside message");
    assert_eq!(raw, render_cq(segments), "raw_message is not the message rendered");
    let reparsed = parse_cq(raw);
    assert_eq!(parse_cq(&render_cq(&reparsed)), reparsed, "raw_message is not stable");
}

// ---- (3) v11 actions → v12 requests --------------------------------------------------------------

/// Records every request and answers each with the same response.
struct RecordingCaller {
    answer: v12::Response,
    requests: Mutex<Vec<v12::Request>>,
}

impl V12Caller for RecordingCaller {
    async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.push(request);
        if requests.len() > MAX_CALLS {
            return Err(CallError::Link("too many calls".into()));
        }
        Ok(self.answer.clone())
    }
}

/// More backend calls than any one action can honestly need.
const MAX_CALLS: usize = 64;

/// v12 params that name ids; the spec makes them strings.
const ID_PARAMS: [&str; 5] = ["user_id", "group_id", "guild_id", "channel_id", "message_id"];

/// The input is a v11 request `{action, params}`, or a case from `tests/cases/actions` (`before`
/// is ignored; `v11` is the request and `v12_response`, when it reads as one, is what the backend
/// answers to every call; without it the backend answers ok with a `message_id` and a `file_id`).
/// Runs it through [`Translator::handle_action`] with a caller that records the v12 requests.
/// Properties: no panic; at most [`MAX_CALLS`] calls; the requests and the v11 answer are bounded
/// by the input size; every id param of a v12 request is a string; the answer's `status` agrees
/// with its `retcode`, a failure says why, and a `message_id` in it is within int32.
pub fn check_v11_action(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let (request, answer, profile) = match value {
        Value::Object(mut case) if case.contains_key("v11") => {
            let answer = case.remove("v12_response").and_then(v12::Response::from_value);
            let profile = case.get("profile").and_then(Value::as_str).map(str::to_owned);
            (case.remove("v11").unwrap_or_default(), answer, profile)
        }
        request => (request, None, None),
    };
    let answer = answer.unwrap_or_else(|| v12::Response::ok(json!({"message_id": "fuzz-1", "file_id": "fuzz-file"})));
    let caller = RecordingCaller { answer, requests: Mutex::new(Vec::new()) };
    let core = translator();
    let backend = backend(profile.as_deref());
    let self_id = SelfId { platform: "qq".into(), user_id: "10001".into() };
    let account = block_on(core.account(&self_id)).expect("a numeric self id");
    let ctx = core.context(&account, &backend, PostFormat::Array);
    let response = block_on(core.handle_action(ctx, &caller, v11::Request::from_value(request)));

    let requests = caller.requests.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(requests.len() <= MAX_CALLS, "{} backend calls", requests.len());
    let sent: usize = requests.iter().map(|r| serde_json::to_vec(r).map_or(0, |b| b.len())).sum();
    assert_bounded(sent, data.len(), "v12 requests");
    for request in &requests {
        for key in ID_PARAMS {
            if let Some(v) = request.params.get(key) {
                assert!(v.is_string(), "{}: v12 param {key} is {v}, not a string", request.action);
            }
        }
    }
    assert_bounded(response.to_json().len(), data.len(), "v11 response");
    assert_eq!(
        response.status == "ok",
        response.retcode == 0,
        "status {} with retcode {}",
        response.status,
        response.retcode
    );
    if response.retcode != 0 {
        assert!(response.wording.as_deref().is_some_and(|w| !w.is_empty()), "a failure without wording: {response:?}");
    }
    if let Some(id) = response.data.get("message_id") {
        assert_message_id(id, "v11 response");
    }
}

// ---- (4) MessagePack and JSON bodies ---------------------------------------------------------------

/// Reads the input as a MessagePack body and as a JSON body through `codec::decode`. Properties:
/// no panic; what decodes re-encodes (in the same encoding) to bytes that decode to the same value,
/// so the bridge can forward what it read; the decoded value written as JSON is bounded by the
/// input size; `decode_either` agrees with `decode` when the preferred encoding reads.
pub fn check_msgpack(data: &[u8]) {
    for msgpack in [true, false] {
        let Ok(value) = codec::decode(data, msgpack) else { continue };
        let json = serde_json::to_vec(&value).expect("a decoded value is JSON");
        assert_bounded(json.len(), data.len(), "decoded body as JSON");
        let again = codec::encode(&value, msgpack);
        let reread = codec::decode(&again, msgpack).unwrap_or_else(|e| panic!("re-encoded body does not decode: {e}"));
        // Floats come back exactly: MessagePack's are bits, and JSON's are read with
        // serde_json's `float_roundtrip` (docs/fuzzing.md).
        assert!(
            same_json(&reread, &value),
            "decode(encode(decode(x))) != decode(x) (msgpack: {msgpack}): {reread} vs {value}"
        );
        let either = codec::decode_either(data, msgpack).expect("decode_either reads what decode reads");
        assert_eq!(either, value, "decode_either disagrees with decode");
    }
    // Responses and events read from a decoded body never panic either.
    if let Ok(value) = codec::decode(data, true) {
        if let Value::Object(map) = &value {
            let _ = v12::is_event_frame(map);
        }
        let _ = v12::Response::from_value(value.clone());
        let _ = Event::from_value(value);
    }
}

/// `a == b`, with object keys in the same order too.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, x), (ky, y))| kx == ky && same_json(x, y))
        }
        _ => a == b,
    }
}

/// go-cqhttp's `config.yml` reader (`config::gocqhttp`): any text either reads or gives an error
/// (no panic); placeholder expansion never grows the text when no variable is set (a default is
/// part of its placeholder); what reads has every ignored key named with a reason.
pub fn check_gocq_config(data: &[u8]) {
    use onebot_bridge::config::gocqhttp::{expand, read};
    let text = String::from_utf8_lossy(data);
    let expanded = expand(&text, |_| None);
    assert!(expanded.len() <= text.len(), "expansion grew {} bytes to {}", text.len(), expanded.len());
    if let Ok((_file, ignored)) = read(&text, |_| None) {
        for entry in &ignored {
            assert!(!entry.why.is_empty(), "an ignored key without a reason: {entry:?}");
            assert!(!entry.keys.is_empty() && entry.keys.iter().all(|k| !k.is_empty()), "an unnamed key: {entry:?}");
        }
    }
}
