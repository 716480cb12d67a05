//! The fuzz targets' properties as ordinary tests: every input a fuzz campaign found
//! (`tests/fuzz/<target>/`) and the committed seed corpus (`fuzz/corpus/<target>/`) go through
//! the same checks the targets run (`fuzz/properties.rs`, included here by path), so a fixed
//! crash stays fixed without libFuzzer or nightly flags. See `docs/fuzzing.md`.

#[path = "../fuzz/properties.rs"]
mod properties;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Seeds read per target: enough to cover every fixture, few enough to stay well under a second.
const MAX_SEEDS: usize = 200;

fn files(dir: &Path, limit: usize) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("a readable directory entry").path()).collect();
    files.retain(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')));
    files.sort();
    files.truncate(limit);
    files
}

/// Runs `check` over the target's regression cases and seeds; fails naming every input that
/// breaks a property.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let regressions = files(&root.join("tests/fuzz").join(target), usize::MAX);
    let seeds = files(&root.join("fuzz/corpus").join(target), MAX_SEEDS);
    assert!(!seeds.is_empty(), "no seed corpus for {target}");
    let mut failures = Vec::new();
    for path in regressions.iter().chain(&seeds) {
        let data = std::fs::read(path).expect("a readable case");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: {why}", path.strip_prefix(root).unwrap_or(path).display()));
        }
    }
    assert!(failures.is_empty(), "{target}: {} input(s) break a property:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn cq_round_trip() {
    replay("cq_round_trip", properties::check_cq);
}

#[test]
fn v12_event() {
    replay("v12_event", properties::check_v12_event);
}

#[test]
fn v11_action() {
    replay("v11_action", properties::check_v11_action);
}

#[test]
fn msgpack_decode() {
    replay("msgpack_decode", properties::check_msgpack);
}

/// The properties are not vacuous: inputs that break them are caught.
#[test]
fn properties_catch_broken_inputs() {
    // A message_id outside int32 in an answer (what a bot with 32-bit ids would choke on).
    let huge = serde_json::json!(1_i64 << 40);
    assert!(catch_unwind(|| properties::assert_message_id(&huge, "test")).is_err());
    assert!(catch_unwind(|| properties::assert_message_id(&serde_json::json!(1.5), "test")).is_err());
    properties::assert_message_id(&serde_json::json!(-2_083_926_107), "test");
    // Output far larger than its input.
    assert!(catch_unwind(|| properties::assert_bounded(1 << 20, 10, "test")).is_err());
}

#[test]
fn gocq_config() {
    replay("gocq_config", properties::check_gocq_config);
}
