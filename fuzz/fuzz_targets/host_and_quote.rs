//! Arbitrary strings through `[user@]host` validation and the shell-quoting helpers. The check
//! (what must hold, and why) is `conn_testkit::fuzz::host_and_quote`, shared with the
//! regression test that replays `fuzz/regressions/host_and_quote/` under `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| conn_testkit::fuzz::host_and_quote(data));
