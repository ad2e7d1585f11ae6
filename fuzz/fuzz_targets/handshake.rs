#![no_main]
//! cargo fuzz target `handshake`: see fuzz/common/mod.rs, `handshake`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::handshake(data));
