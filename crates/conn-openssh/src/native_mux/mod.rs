//! OpenSSH's ControlMaster protocol (`PROTOCOL.mux`) spoken from this process.
//!
//! - `codec`: the frames and messages, I/O-free and bounds-checked (fuzz target:
//!   `fuzz/fuzz_targets/mux_decode.rs`).
//! - `control`: the control connection (connect, frames, `SCM_RIGHTS`, messages) and the job's
//!   bound on every wait.
//! - `alive`: `MUX_C_ALIVE_CHECK`, the master's pid. Always compiled: both back ends learn
//!   which process their master is this way (docs/design.md#clean-end).
//! - `env` (feature `native-mux`): the environment a session offers the master when the
//!   command asks (`Cmd::send_env`), as an `ssh -S` client offers its own.
//! - `terminate` (feature `native-mux`): `MUX_C_TERMINATE`, what `ssh -O exit` asks, for the
//!   native back end's shutdown.
//! - `session` (feature `native-mux`): `spawn`, one command per control connection whose
//!   descriptors go to the master with `SCM_RIGHTS`, so that a command over a live master
//!   costs no `ssh -S` client spawn.
//! - `tests/`: the client against a fake master, for the paths sshd cannot be made to take
//!   (`sessions`, `faults`, `terminate`).
//!
//! Masters are still started by `ssh -M` (see `master.rs`); sessions, the liveness checks and
//! the exit requests go native.

mod alive;
pub(crate) mod codec;
mod control;
#[cfg(feature = "native-mux")]
mod env;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz_check;
mod session;
#[cfg(feature = "native-mux")]
mod terminate;
#[cfg(test)]
mod tests;

pub(crate) use alive::alive_check;
pub(crate) use session::spawn;
#[cfg(feature = "native-mux")]
pub(crate) use terminate::terminate;
