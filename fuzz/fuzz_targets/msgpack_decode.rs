//! Fuzz target `msgpack_decode`: the input goes through [`properties::check_msgpack`], which panics on any
//! broken property (see `fuzz/properties.rs`).
#![no_main]

#[path = "../properties.rs"]
mod properties;

libfuzzer_sys::fuzz_target!(|data: &[u8]| properties::check_msgpack(data));
