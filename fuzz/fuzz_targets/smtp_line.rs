#![no_main]
//! cargo fuzz target `smtp_line`: see fuzz/common/mod.rs, `smtp_line`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::smtp_line(data));
