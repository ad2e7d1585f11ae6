#![no_main]
//! cargo fuzz target `known_peers`: see fuzz/common/mod.rs, `known_peers`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::known_peers(data));
