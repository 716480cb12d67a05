//! go-cqhttp's whole action surface, against every backend profile: each action name go-cqhttp
//! routes is called through the real bridge (the scripted backend introduces itself with the
//! profile's implementation name), and the answer is compared with what the compatibility matrix
//! says for that profile:
//! - a standard or extension mapping reaches the backend as that v12 action (unless the bot's
//!   params were refused first, with `BAD_PARAM`);
//! - an action the bridge answers itself is answered;
//! - an action the profile cannot do fails with `BRIDGE_UNSUPPORTED_BY_BACKEND` and no call;
//! - nothing go-cqhttp routes is an unknown action (`404`).

mod support;

use std::time::Duration;

use onebot_bridge::core::matrix::{action_support, Support, GO_CQHTTP_ACTIONS};
use onebot_bridge::core::MappingSet;
use serde_json::{json, Value};
use support::*;

/// Params that satisfy most actions: ids, a message id the bridge knows, text, a file.
fn params(message_id: &Value) -> Value {
    json!({
        "group_id": 30003, "user_id": 20002, "message_id": message_id, "id": message_id,
        "message": "hi", "messages": [], "message_type": "group", "flag": "f-1", "approve": true,
        "enable": true, "duration": 60, "card": "c", "group_name": "g", "special_title": "t", "name": "n",
        "file": "f-1", "file_id": "f-1", "folder_id": "/", "busid": 102, "url": "http://example.com/x",
        "content": "c", "notice_id": "n-1", "image": "f-1", "model": "m", "model_show": "m",
        "guild_id": "g-1", "channel_id": "c-1", "role_id": "r-1", "context": {}, "operation": {},
        "type": "all", "nickname": "n", "no_cache": false, "thread_count": 1, "sub_type": "add"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_go_cqhttp_action_is_answered_as_the_matrix_says_for_every_profile() {
    let set = MappingSet::embedded().unwrap();
    let mut failures = Vec::new();
    let mut calls = 0;
    for (profile, maps) in set.iter() {
        let implementation = maps.profile.implementations.first().cloned().unwrap_or_else(|| "fake".into());
        let opts = BackendOptions { implementation: implementation.clone(), ..Default::default() };
        let mut backend = FakeBackend::start(opts).await;
        let bridge = start_bridge(&backend, |_| {}).await;
        let mut bot = Bot::connect(bridge.ws_addrs()[0], "/", None).await.unwrap();
        bot.next_event().await;
        // A message the bridge has seen, for actions that take a message_id; its arrival also
        // means the backend's `meta.connect` (and so its profile) came first.
        backend.push(v12_message(
            "group",
            "10001",
            json!({"message_id": "m-1", "group_id": "30003", "user_id": "20002", "message": "seen"}),
        ));
        let message_id = bot.next_event().await["message_id"].clone();
        let version = bot.call("get_version_info", json!({})).await;
        assert_eq!(version["data"]["backend"]["impl"], json!(implementation), "{profile}: {version}");

        for &name in GO_CQHTTP_ACTIONS {
            calls += 1;
            let support = action_support(maps, name);
            let answer = bot.call(name, params(&message_id)).await;
            let msg = answer["msg"].as_str().unwrap_or("");
            let mut fail = |why: String| failures.push(format!("{profile}/{name} ({support:?}): {why}; got {answer}"));
            match &support {
                Support::Missing => fail("no row: go-cqhttp routes it".into()),
                // Every go-cqhttp action has a row in every profile that passes unknown ones on.
                Support::PassedThrough => fail("no row: passed through unmapped".into()),
                Support::Unsupported(_) => {
                    if msg != "BRIDGE_UNSUPPORTED_BY_BACKEND" {
                        fail("want BRIDGE_UNSUPPORTED_BY_BACKEND".into());
                    }
                    if !backend.no_request_within(Duration::from_millis(20)).await {
                        fail("an unsupported action reached the backend".into());
                    }
                }
                Support::Bridge(_) if answer["retcode"] == 404 => fail("answered as unknown".into()),
                Support::Bridge(_) => {}
                Support::Standard(v12) | Support::Extension(v12) => {
                    if answer["retcode"] == 404 {
                        fail("answered as unknown".into());
                    } else if msg != "BAD_PARAM" && msg != "MSG_NOT_FOUND" {
                        // The call reached the backend as the mapped action.
                        let req = backend.next_request_within(Duration::from_millis(500)).await;
                        match req {
                            Some(r) if r["action"] == json!(v12) => {}
                            Some(r) => fail(format!("the backend got {} instead of {v12}", r["action"])),
                            None => fail(format!("{v12} never reached the backend")),
                        }
                    }
                }
            }
            backend.drain_requests();
        }
        bridge.stop().await;
    }
    assert!(calls >= 5 * 80, "{calls} calls");
    assert!(failures.is_empty(), "{} mismatch(es):\n{}", failures.len(), failures.join("\n"));
}
