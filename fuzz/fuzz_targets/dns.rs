#![no_main]
//! cargo fuzz target `dns`: see fuzz/common/mod.rs, `dns`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::dns(data));
