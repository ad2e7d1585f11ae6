#![no_main]
//! cargo fuzz target `base64`: see fuzz/common/mod.rs, `base64_codec`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::base64_codec(data));
