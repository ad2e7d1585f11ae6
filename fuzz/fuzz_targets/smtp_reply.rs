#![no_main]
//! cargo fuzz target `smtp_reply`: see fuzz/common/mod.rs, `smtp_reply`.

#[path = "../common/mod.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::smtp_reply(data));
