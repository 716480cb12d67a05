//! Fuzz target `v11_action`: the input goes through [`properties::check_v11_action`], which panics on any
//! broken property (see `fuzz/properties.rs`).
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::check_v11_action(data));
