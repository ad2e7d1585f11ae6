#![no_main]
//! cargo fuzz target `ehlo`: see fuzz/common/mod.rs, `ehlo_keyword`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::ehlo_keyword(data));
