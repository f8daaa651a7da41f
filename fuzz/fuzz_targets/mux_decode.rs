//! Arbitrary bytes from a (hostile or broken) ssh mux master through the native mux decoder.
//! The check (what must hold, and why) is conn-openssh's `native_mux::fuzz_check::mux_decode`,
//! next to the private codec; conn-openssh's unit tests replay `fuzz/regressions/mux_decode/`
//! through it under `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| conn_openssh::fuzz_mux_decode(data));
