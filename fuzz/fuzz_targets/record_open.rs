#![no_main]
//! cargo fuzz target `record_open`: see fuzz/common/mod.rs, `record_open`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::record_open(data));
