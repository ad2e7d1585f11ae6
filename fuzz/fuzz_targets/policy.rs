#![no_main]
//! cargo fuzz target `policy`: see fuzz/common/mod.rs, `policy`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::policy(data));
