//! The native mux back end: OpenSSH's ControlMaster protocol (`PROTOCOL.mux`) spoken from this
//! process, so that a command over a live master costs no `ssh -S` client spawn.
//!
//! - [`codec`]: the frames and messages, bounds-checked (fuzz target:
//!   `fuzz/fuzz_targets/mux_decode.rs`).
//! - `client`: `run_session` (one command per control connection, one poll loop) and
//!   `alive_check` (`MUX_C_ALIVE_CHECK`, the master's pid).
//!
//! Masters are still started and checked by `ssh -M` (see `connection.rs`); only sessions go
//! native. The module is public but hidden only so that the fuzz target and the integration
//! tests can reach it; it is no part of the crate's API.

mod client;
pub mod codec;

use std::path::Path;
use std::time::Duration;

use conn_core::{Cmd, Job, Output, Result};

pub(crate) use client::{alive_check, run_session};

/// Decodes every complete master→client frame at the start of `bytes` (see
/// [`codec::decode_server_stream`]): the fuzz target's entry point.
pub fn decode_server_message(
    bytes: &[u8],
) -> std::result::Result<(Vec<codec::ServerMessage>, usize), codec::CodecError> {
    codec::decode_server_stream(bytes)
}

/// Test hook: `run_session` for the integration tests (not an API).
pub fn run_session_for_tests(
    socket: &Path,
    endpoint: &str,
    cmd: &Cmd,
    job: &dyn Job,
) -> Result<Output> {
    run_session(socket, endpoint, cmd, job)
}

/// Test hook: `alive_check` for the integration tests (not an API).
pub fn alive_check_for_tests(socket: &Path, timeout: Duration) -> Result<u32> {
    alive_check(socket, timeout)
}
