#![no_main]
//! cargo fuzz target `smtp_command`: see fuzz/common/mod.rs, `smtp_command`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::smtp_command(data));
