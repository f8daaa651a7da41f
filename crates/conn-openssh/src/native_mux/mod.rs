//! The native mux back end: OpenSSH's ControlMaster protocol (`PROTOCOL.mux`) spoken from this
//! process, so that a command over a live master costs no `ssh -S` client spawn.
//!
//! - `codec`: the frames and messages, I/O-free and bounds-checked (fuzz target:
//!   `fuzz/fuzz_targets/mux_decode.rs`).
//! - `control`: the control connection (connect, frames, `SCM_RIGHTS`, messages) and the job's
//!   bound on every wait.
//! - `env`: the environment a session offers the master when the command asks
//!   (`Cmd::send_env`), as an `ssh -S` client offers its own.
//! - `session`: `spawn` (one command per control connection; the command's descriptors go to
//!   the master with `SCM_RIGHTS`) and `alive_check` (`MUX_C_ALIVE_CHECK`, the master's pid).
//! - `tests`: the client against a fake master, for the paths sshd cannot be made to take.
//!
//! Masters are still started by `ssh -M` (see `connection.rs`); only sessions and the slow
//! liveness check go native.

pub(crate) mod codec;
mod control;
mod env;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz_check;
mod session;
#[cfg(test)]
mod tests;

pub(crate) use session::{alive_check, spawn};
