//! Fuzz target `gocq_config`: the input goes through [`properties::check_gocq_config`], which
//! panics on any broken property (see `fuzz/properties.rs`).
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::check_gocq_config(data));
