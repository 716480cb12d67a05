//! Benchmarks of the translation core (`src/core`): the CQ codec, v12 → v11 events, v11 actions
//! through a stand-in backend, and id assignment.
//!
//! Everything in the core is `async` but does no I/O, so `block_on` drives it directly. Each
//! benchmark function gets its own `Translator` over a `MemoryIdStore`, so ids assigned by one
//! never show up as hits in another.
//!
//! Run: `cargo bench --bench core -- --warm-up-time 1 --measurement-time 3`.

use std::future::{ready, Future};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The binary's allocator (src/main.rs), so the figures are the ones the bridge gets.
#[global_allocator]
static ALLOCATOR: onebot_bridge::allocator::Allocator = onebot_bridge::allocator::Allocator;

use criterion::{criterion_group, criterion_main, Bencher, Criterion, Throughput};
use futures::executor::block_on;
use serde_json::{json, Value};

use onebot_bridge::core::action::ActionContext;
use onebot_bridge::core::cq::{parse_cq, render_cq};
use onebot_bridge::core::ids::{MessageKey, MessageRecord};
use onebot_bridge::core::message::Data;
use onebot_bridge::core::scan;
use onebot_bridge::core::v11::{self, PostFormat};
use onebot_bridge::core::v12::{self, Event, SelfId};
use onebot_bridge::core::{
    Account, BackendInfo, CallError, MappingSet, Mappings, MemoryIdStore, Options, Translator, V12Caller,
};

type Core = Translator<MemoryIdStore>;

/// v12 `self.user_id` of the bot account (numeric: it passes through as the v11 `self_id`).
const BOT: &str = "123234";
/// Stands in for a missing event time; every fixture has one, so it is never used.
const NOW: i64 = 1_700_000_000;

// ---- fixtures ---------------------------------------------------------------------------------

fn mappings() -> Arc<MappingSet> {
    static MAPS: OnceLock<Arc<MappingSet>> = OnceLock::new();
    MAPS.get_or_init(|| Arc::new(MappingSet::embedded().expect("embedded mappings load"))).clone()
}

fn translator() -> Core {
    Translator::new(mappings(), MemoryIdStore::default(), Options::default())
}

fn account(core: &Core) -> Account {
    let self_id = SelfId { platform: "qq".into(), user_id: BOT.into() };
    block_on(core.account(&self_id)).expect("numeric self id")
}

static BACKEND_INFO: BackendInfo = BackendInfo {
    implementation: String::new(),
    version: String::new(),
    onebot_version: String::new(),
    profile: String::new(),
    supported: None,
    upload: None,
};

fn ctx(account: &Account) -> ActionContext<'_> {
    ActionContext { account, backend: &BACKEND_INFO, post_format: Default::default(), maps: mappings_generic() }
}

fn mappings_generic() -> &'static Mappings {
    static MAPS: OnceLock<Arc<MappingSet>> = OnceLock::new();
    MAPS.get_or_init(mappings).generic()
}

const CQ_SHORT: &str = "hello [CQ:face,id=1] world";
const CQ_ESCAPES: &str = "今晚吃什么&#91;投票&#93;: 火锅 &amp; 烧烤&#44; 还是 [CQ:face,id=14] 随便, 你们定 [doge]";
const CQ_AT: &str = "[CQ:at,qq=10001] 明天上午十点开会, 别迟到";
const CQ_REPLY: &str = "[CQ:reply,id=-2083926107][CQ:at,qq=10001] 收到, 马上改";
const CQ_IMAGE: &str = "[CQ:image,file=0d3f7a6c1b2e4f5a8c9d0e1f2a3b4c5d.image,\
                        url=https://gchat.qpic.cn/gchatpic_new/10001/987654-2534335053-0D3F7A6C/0?term=2&amp;is_origin=0]";

/// About 16 KiB of the other fixtures and plain text, one per line.
fn cq_long() -> String {
    const PROSE: &str = "一段没有任何 CQ 码的普通文字, mixed with some ASCII so the text is not all CJK.";
    let mut out = String::new();
    for piece in [CQ_SHORT, CQ_ESCAPES, PROSE, CQ_AT, CQ_REPLY, PROSE, CQ_IMAGE].iter().cycle() {
        if out.len() >= 16 * 1024 {
            break;
        }
        out.push_str(piece);
        out.push('\n');
    }
    out
}

fn cq_inputs() -> Vec<(&'static str, String)> {
    vec![
        ("short", CQ_SHORT.into()),
        ("escapes", CQ_ESCAPES.into()),
        ("at", CQ_AT.into()),
        ("reply", CQ_REPLY.into()),
        ("image", CQ_IMAGE.into()),
        ("long_16k", cq_long()),
    ]
}

/// A typical v12 message event from `user_id`: text with characters CQ escapes, a mention, a
/// face extension and an image. `group_id` makes it a group message.
fn message_event(user_id: &str, group_id: Option<&str>) -> Event {
    Event::from_value(message_event_value(user_id, group_id)).expect("valid v12 message event")
}

/// [`message_event`] as the JSON value a v12 link decodes.
fn message_event_value(user_id: &str, group_id: Option<&str>) -> Value {
    let mut ev = json!({
        "id": "b6e65187-5ac0-489c-b431-53078e9d2bbb",
        "time": 1632847927.599013,
        "type": "message",
        "detail_type": "private",
        "sub_type": "",
        "self": {"platform": "qq", "user_id": BOT},
        "message_id": "6283",
        "message": [
            {"type": "text", "data": {"text": "早上好 "}},
            {"type": "mention", "data": {"user_id": "10002"}},
            {"type": "text", "data": {"text": " 会议改到 3 点 [重要], 记得带电脑 & 充电器"}},
            {"type": "qq.face", "data": {"id": "14"}},
            {"type": "image", "data": {"file_id": "e30f9684-3d54-4f65-b2da-db291a477f16"}},
        ],
        "alt_message": "早上好 @10002 会议改到 3 点 [重要], 记得带电脑 & 充电器[表情][图片]",
        "user_id": user_id,
        "user_name": "Alice",
    });
    if let Some(group_id) = group_id {
        ev["detail_type"] = "group".into();
        ev["group_id"] = group_id.into();
        ev["user_card"] = "产品-Alice".into();
    }
    ev
}

fn group_recall_event() -> Event {
    Event::from_value(json!({
        "id": "c2f1a9d0-7e0b-4b8e-9f44-0f1d6f9a2a11",
        "time": 1632847930.0,
        "type": "notice",
        "detail_type": "group_message_delete",
        "sub_type": "recall",
        "self": {"platform": "qq", "user_id": BOT},
        "group_id": "987654",
        "message_id": "6283",
        "user_id": "10001",
        "operator_id": "10001",
    }))
    .expect("valid v12 notice")
}

fn v11_request(action: &str, params: Value) -> v11::Request {
    v11::Request::from_value(json!({"action": action, "params": params}))
}

/// The backend: answers at once. `send_message` gets a fresh numeric `message_id` every call
/// (`{"message_id": "<n>"}`), so each send assigns a new v11 message id, as in real traffic.
#[derive(Default)]
struct Backend {
    sent: AtomicU64,
}

impl V12Caller for Backend {
    fn call(&self, request: v12::Request) -> impl Future<Output = Result<v12::Response, CallError>> + Send {
        let response = match request.action.as_str() {
            "send_message" => {
                let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
                v12::Response::ok(json!({"message_id": n.to_string(), "time": 1632847927.6}))
            }
            "get_user_info" => v12::Response::ok(json!({
                "user_id": request.params.get("user_id").cloned().unwrap_or_default(),
                "user_name": "Alice",
                "user_displayname": "",
                "user_remark": "产品-Alice",
            })),
            other => v12::Response::failed(10002, format!("unsupported action {other}")),
        };
        ready(Ok(response))
    }
}

/// Times `routine` on inputs made before the clock starts, against a translator made fresh for
/// each batch of `iters`. For routines that consume their input (actions take the request by
/// value) or add to the id store: the store then holds at most one batch's ids, far below
/// `MemoryIdStore::default()`'s bound of 1M messages, so eviction is never measured. Unlike
/// `iter_batched`, which keeps every output of a batch alive until the clock stops (the timed
/// routine then keeps faulting in fresh heap pages), inputs and outputs are dropped as they go;
/// those drops are timed, as they happen in the bridge too.
fn bench_owned_inputs<I, O>(
    b: &mut Bencher<'_>,
    mut input: impl FnMut(u64) -> I,
    mut routine: impl FnMut(&Core, &Account, I) -> O,
) {
    b.iter_custom(|iters| {
        let core = translator();
        let account = account(&core);
        let inputs: Vec<I> = (0..iters).map(&mut input).collect();
        let start = Instant::now();
        for i in inputs {
            black_box(routine(&core, &account, black_box(i)));
        }
        let elapsed: Duration = start.elapsed();
        drop(core); // the store's teardown is not timed
        elapsed
    });
}

// ---- benchmarks -------------------------------------------------------------------------------

fn cq(c: &mut Criterion) {
    let inputs = cq_inputs();
    let mut parse = c.benchmark_group("cq/parse");
    for (name, input) in &inputs {
        parse.throughput(Throughput::Bytes(input.len() as u64));
        parse.bench_with_input(*name, input.as_str(), |b, s| b.iter(|| parse_cq(black_box(s))));
    }
    parse.finish();

    let mut render = c.benchmark_group("cq/render");
    for (name, input) in &inputs {
        let segments = parse_cq(input);
        render.throughput(Throughput::Bytes(render_cq(&segments).len() as u64));
        render.bench_with_input(*name, segments.as_slice(), |b, s| b.iter(|| render_cq(black_box(s))));
    }
    render.finish();
}

fn events(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Elements(1));
    // `surrogate`: a non-numeric user id, assigned on the first (untimed) call and a store hit
    // afterwards. The message id is assigned on the first call too, so every timed call
    // translates the same event with all its ids already known.
    let cases = [
        ("private_message/numeric", message_event("10001", None)),
        ("private_message/surrogate", message_event("wxid_alice", None)),
        ("group_message/numeric", message_event("10001", Some("987654"))),
        ("group_message/surrogate", message_event("wxid_alice", Some("987654"))),
        ("notice_group_recall", group_recall_event()),
    ];
    for (name, ev) in &cases {
        let core = translator();
        let account = account(&core);
        let translate =
            || block_on(core.to_v11_event(ctx(&account), black_box(ev), NOW, &Backend::default())).expect("translates");
        assert!(translate().is_some(), "{name}: not a meta event");
        group.bench_function(*name, |b| b.iter(translate));
    }

    // The whole event path of the core for a message never seen before: a fresh message id is
    // assigned and stored with the message (for `get_msg`), then the v11 JSON is written.
    let fresh = |i: u64| {
        let mut ev = message_event("10001", Some("987654"));
        ev.fields.insert("message_id", format!("b6e65187-5ac0-489c-{i:012x}").into());
        ev
    };
    group.bench_function("group_message/new_id_to_json", |b| {
        let backend = Backend::default();
        bench_owned_inputs(b, fresh, |core, account, ev| {
            let v11 = block_on(core.to_v11_event(ctx(account), &ev, NOW, &backend)).expect("translates");
            v11.expect("not a meta event").to_json(PostFormat::String)
        })
    });

    let core = translator();
    let account = account(&core);
    let v11 =
        block_on(core.to_v11_event(ctx(&account), &message_event("10001", Some("987654")), NOW, &Backend::default()))
            .expect("translates")
            .expect("not a meta event");
    for (name, format) in [("to_json_string", PostFormat::String), ("to_json_array", PostFormat::Array)] {
        group.throughput(Throughput::Bytes(v11.to_json(format).len() as u64));
        group.bench_function(name, |b| b.iter(|| black_box(&v11).to_json(format)));
    }
    group.finish();
}

fn actions(c: &mut Criterion) {
    let mut group = c.benchmark_group("action");
    group.throughput(Throughput::Elements(1));
    // (name, request, a field the answer's `data` must have)
    let cases = [
        // The full path: CQ parse → v12 segments → call → a new v11 message id → v11 answer.
        (
            "send_group_msg",
            v11_request(
                "send_group_msg",
                json!({"group_id": 987654, "message": "[CQ:at,qq=10001] 收到&#44; 十点见 [CQ:face,id=14]"}),
            ),
            "message_id",
        ),
        // The same message as a list of segments, as most frameworks send it.
        (
            "send_group_msg_segments",
            v11_request(
                "send_group_msg",
                json!({"group_id": 987654, "message": [
                    {"type": "at", "data": {"qq": "10001"}},
                    {"type": "text", "data": {"text": " 收到, 十点见 "}},
                    {"type": "face", "data": {"id": "14"}},
                ]}),
            ),
            "message_id",
        ),
        // A plain table rename; the ids are numeric, so the store is not touched.
        (
            "get_stranger_info",
            v11_request("get_stranger_info", json!({"user_id": 10001, "no_cache": false})),
            "nickname",
        ),
    ];
    let backend = Backend::default();
    let run =
        |core: &Core, account: &Account, req: v11::Request| block_on(core.handle_action(ctx(account), &backend, req));
    for (name, request, field) in &cases {
        let check = translator();
        let answer = run(&check, &account(&check), request.clone());
        assert!(answer.is_ok() && answer.data.get(field).is_some(), "{name}: {answer:?}");
        group.bench_function(*name, |b| bench_owned_inputs(b, |_| request.clone(), run));
    }
    group.finish();
}

fn ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("ids");
    group.throughput(Throughput::Elements(1));

    let core = translator();
    let known = block_on(core.ids.to_v11("wxid_alice")).expect("assigns");
    assert_eq!(block_on(core.ids.to_v11("wxid_alice")).expect("hits"), known);
    group.bench_function("surrogate_hit", |b| b.iter(|| block_on(core.ids.to_v11(black_box("wxid_alice")))));

    group.bench_function("surrogate_new", |b| {
        bench_owned_inputs(b, |i| format!("wxid_{i:012}"), |core, _, id| block_on(core.ids.to_v11(&id)))
    });

    // Backend message ids that are not numbers, so the id comes from the hash probe.
    let record = |i: u64| MessageRecord {
        key: MessageKey { self_id: BOT.into(), message_id: format!("a1b2c3d4-{i:012x}").into() },
        detail_type: "group".into(),
        group_id: Some("987654".into()),
        user_id: Some("10001".into()),
        content: None,
    };
    group.bench_function("message_new", |b| {
        bench_owned_inputs(b, record, |core, _, rec| block_on(core.ids.message_to_v11(&rec)))
    });
    group.finish();
}

/// The same group message as [`message_event`], as NapCat sends it over a v11 link.
fn napcat_group_message() -> serde_json::Map<String, Value> {
    let ev = json!({
        "self_id": 123234, "user_id": 10001, "time": 1632847927, "message_id": 1_938_465_012,
        "message_seq": 1_938_465_012, "real_id": 1_938_465_012, "message_type": "group", "sub_type": "normal",
        "sender": {"user_id": 10001, "nickname": "Alice", "card": "产品-Alice", "role": "member"},
        "raw_message": "早上好 [CQ:at,qq=10002] 会议改到 3 点 &#91;重要&#93;, 记得带电脑 &amp; 充电器[CQ:face,id=14][CQ:image,file=E30F9684.jpg]",
        "font": 14, "group_id": 987654, "post_type": "message", "message_format": "array",
        "message": [
            {"type": "text", "data": {"text": "早上好 "}},
            {"type": "at", "data": {"qq": "10002"}},
            {"type": "text", "data": {"text": " 会议改到 3 点 [重要], 记得带电脑 & 充电器"}},
            {"type": "face", "data": {"id": "14"}},
            {"type": "image", "data": {"file": "E30F9684.jpg", "url": "https://multimedia.nt.qq.com.cn/download?id=E30F9684"}},
        ],
    });
    let Value::Object(map) = ev else { unreachable!() };
    map
}

/// What a v11 link adds: reading NapCat's event as v12 at the edge, beside reading a v12 event
/// (what a v12 link does in its place), and the v12 path of a new message for scale.
fn v11_link(c: &mut Criterion) {
    use onebot_bridge::backends::v11::edge::Edge;
    let mut group = c.benchmark_group("v11_link");
    group.throughput(Throughput::Elements(1));
    let edge = Edge::new(mappings().generic().clone(), 100 << 20);
    let napcat: Data = napcat_group_message().into();
    assert!(edge.event(napcat.clone()).expect("reads").is_some());
    group.bench_function("edge_reads_group_message", |b| {
        bench_owned_inputs(b, |_| napcat.clone(), |_, _, m| edge.event(m))
    });
    let v12_value = message_event_value("10001", Some("987654"));
    group.bench_function("v12_link_reads_group_message", |b| {
        bench_owned_inputs(b, |_| v12_value.clone(), |_, _, v| Event::from_value(v))
    });
    // A v12 link's text frame: read straight into an event, beside decoding it into a JSON value
    // first (what the link did before).
    let frame = serde_json::to_string(&v12_value).expect("serialises");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("v12_frame_to_event", |b| {
        b.iter(|| match v12::Frame::from_json_str(black_box(&frame)).expect("reads") {
            v12::Frame::Event(ev) => ev.expect("an event"),
            v12::Frame::Answer(_) | v12::Frame::Other(_) => panic!("not an event"),
        })
    });
    // The pre-scan every backend frame passes before it is read (values and depth counted).
    group.bench_function("v12_frame_prescan", |b| {
        b.iter(|| scan::scan_json(black_box(frame.as_bytes()), scan::ScanLimits::PEER).expect("within limits"))
    });
    group.bench_function("v12_frame_to_value_to_event", |b| {
        b.iter(|| {
            let value: Value = serde_json::from_slice(black_box(frame.as_bytes())).expect("reads");
            Event::from_value(value).expect("an event")
        })
    });
    group.throughput(Throughput::Elements(1));
    // The core's translation of what the edge read, a new message id assigned each time.
    let fresh = |i: u64| {
        let mut m: Data = napcat_group_message().into();
        m.insert("message_id", (i as i64 & 0x7fff_ffff).into());
        m
    };
    group.bench_function("group_message/new_id_to_json", |b| {
        let backend = Backend::default();
        bench_owned_inputs(b, fresh, |core, account, m| {
            let ev = edge.event(m).expect("reads").expect("not meta");
            let v11 = block_on(core.to_v11_event(ctx(account), &ev, NOW, &backend)).expect("translates");
            v11.expect("not a meta event").to_json(PostFormat::String)
        })
    });
    group.finish();
}

criterion_group!(benches, cq, events, actions, ids, v11_link);
criterion_main!(benches);
