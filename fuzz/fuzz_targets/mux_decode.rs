//! Arbitrary bytes from a (hostile or broken) ssh mux master through the native mux decoder.
//! The check (what must hold, and why) is `conn_testkit::fuzz::mux_decode`, shared with the
//! regression test that replays `fuzz/regressions/mux_decode/` under `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| conn_testkit::fuzz::mux_decode(data));
