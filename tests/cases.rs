//! Cases as data: every file under `tests/cases/events/` and `tests/cases/actions/` is run
//! through the real bridge between the scripted backend and a scripted bot.
//!
//! Event case: `{"name", "format"?: "string"|"array", "before"?: [v12 events], "v12": event,
//! "v11": expected}`. Action case: `{"name", "before"?: [...], "v11": {action, params},
//! "v12_request": expected request or null (the bridge answers itself), or "v12_requests": the
//! several requests expected in order (e.g. `upload_file`, then `send_message`), "v12_response"?:
//! the backend's answer to `v12_request`, "v11_response": expected answer}`.
//! Expected objects match when every key they list matches (recursively); `"<int>"` matches any
//! integer, `"<any>"` anything, and the `self_id`/`self` fields are checked by the runner.

mod support;

use std::path::Path;

use onebot_bridge::config::{Config, FileConfig, Overrides};
use onebot_bridge::core::v11::PostFormat;
use onebot_bridge::Bridge;
use serde_json::{json, Value};
use support::*;

fn matches(expected: &Value, actual: &Value, path: &str, errors: &mut Vec<String>) {
    match (expected, actual) {
        (Value::String(s), _) if s == "<any>" => {}
        (Value::String(s), Value::Number(n)) if s == "<int>" && n.is_i64() => {}
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                match a.get(k) {
                    Some(av) => matches(v, av, &format!("{path}.{k}"), errors),
                    None if v.is_null() => {}
                    None => errors.push(format!("{path}.{k}: missing (want {v})")),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                matches(ev, av, &format!("{path}[{i}]"), errors);
            }
        }
        _ if expected == actual => {}
        _ => errors.push(format!("{path}: want {expected}, got {actual}")),
    }
}

fn load(dir: &str) -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases").join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect()
}

/// Pushes the case's `before` events; returns the last one as the (first) bot saw it.
async fn run_before(backend: &FakeBackend, bots: &mut [&mut Bot], case: &Value) -> Value {
    let mut last = Value::Null;
    for ev in case["before"].as_array().into_iter().flatten() {
        backend.push(ev.clone());
        for (i, bot) in bots.iter_mut().enumerate() {
            let got = bot.next_event().await;
            if i == 0 {
                last = got;
            }
        }
    }
    last
}

/// Replaces `"$before.<field>"` strings with that field of the last `before` event.
fn substitute(v: &Value, before: &Value) -> Value {
    match v {
        Value::String(s) => match s.strip_prefix("$before.") {
            Some(field) => before[field].clone(),
            None => v.clone(),
        },
        Value::Object(m) => Value::Object(m.iter().map(|(k, x)| (k.clone(), substitute(x, before))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, before)).collect()),
        _ => v.clone(),
    }
}

#[tokio::test]
async fn event_cases() {
    let backend = FakeBackend::start(BackendOptions::default()).await;
    let overrides =
        Overrides { backend_ws: vec![backend.url()], ws: vec!["127.0.0.1:0".into(); 2], ..Default::default() };
    let mut config = Config::resolve(FileConfig::default(), overrides).unwrap();
    config.ws_servers[1].post_format = PostFormat::Array;
    let bridge = Bridge::start(config).await.unwrap();
    let mut string_bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    let mut array_bot = Bot::connect(bridge.ws_addrs()[1], "/", None).await.unwrap();
    string_bot.next_event().await;
    array_bot.next_event().await;
    let cases = load("events");
    assert!(cases.len() >= 10, "event cases went missing");
    let mut failures = Vec::new();
    for (file, case) in &cases {
        run_before(&backend, &mut [&mut string_bot, &mut array_bot], case).await;
        backend.push(case["v12"].clone());
        let as_string = string_bot.next_event().await;
        let as_array = array_bot.next_event().await;
        let got = if case["format"] == "array" { as_array } else { as_string };
        let mut errors = Vec::new();
        matches(&case["v11"], &got, "", &mut errors);
        if got["self_id"] != 10001 {
            errors.push(format!("self_id: {}", got["self_id"]));
        }
        if !errors.is_empty() {
            failures.push(format!("{file} ({}): {}\n  got {got}", case["name"], errors.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    bridge.stop().await;
}

#[tokio::test]
async fn action_cases() {
    let mut backend = FakeBackend::start(BackendOptions::default()).await;
    let bridge = start_bridge(&backend, |_| {}).await;
    let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
    bot.next_event().await;
    let cases = load("actions");
    assert!(cases.len() >= 10, "action cases went missing");
    let mut failures = Vec::new();
    for (file, case) in &cases {
        let before = run_before(&backend, &mut [&mut bot], case).await;
        if let Some(resp) = case.get("v12_response") {
            backend.answer_next(case["v12_request"]["action"].as_str().unwrap_or(""), resp.clone());
        }
        let params = substitute(&case["v11"]["params"], &before);
        let answer = bot.call(case["v11"]["action"].as_str().unwrap(), params).await;
        let mut errors = Vec::new();
        let expected: Vec<Value> = match case.get("v12_requests") {
            Some(Value::Array(list)) => list.clone(),
            _ => vec![case["v12_request"].clone()].into_iter().filter(|r| !r.is_null()).collect(),
        };
        if expected.is_empty() && !backend.no_request_within(std::time::Duration::from_millis(50)).await {
            errors.push("the bridge should have answered by itself".into());
        }
        for (i, want) in expected.iter().enumerate() {
            let meta = matches!(want["action"].as_str(), Some("get_status" | "get_version"));
            let req = if meta { backend.next_request_any().await } else { backend.next_request().await };
            matches(want, &req, &format!("request[{i}]"), &mut errors);
            let meta = is_discovery(&req);
            if !meta && req["self"] != json!({"platform": "qq", "user_id": "10001"}) {
                errors.push(format!("request[{i}].self: {}", req["self"]));
            }
        }
        matches(&case["v11_response"], &answer, "response", &mut errors);
        if !errors.is_empty() {
            failures.push(format!("{file} ({}): {}\n  got {answer}", case["name"], errors.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    bridge.stop().await;
}
