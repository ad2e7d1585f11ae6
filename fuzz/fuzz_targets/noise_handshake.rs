#![no_main]
//! cargo fuzz target `noise_handshake`: see fuzz/common/mod.rs, `noise_handshake`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::noise_handshake(data));
