//! The alive check (`MUX_C_ALIVE_CHECK`) in-process: whether a master answers, and its pid.
//! Both back ends use it to learn which process their master is (docs/design.md#clean-end);
//! the native back end also uses it as its slow-path liveness check.

use std::path::Path;

use conn_core::{Job, Result};

use super::codec::{ClientMessage, ServerMessage};
use super::control::{Bound, Control, Fail, hello_then, next_request_id};

/// Asks the master behind `socket` for its pid (`MUX_C_ALIVE_CHECK`) within `job`'s deadline
/// and cancellation: a protocol-level liveness check that costs one round trip in this
/// process, against a process spawn for `ssh -O check`. An answer also restarts the master's
/// ControlPersist countdown.
///
/// Errors: [`Error::Timeout`] when the master does not answer in time; [`Error::Cancelled`]
/// when the job is cancelled; [`Error::Connect`] when nothing listens, the master hangs up or
/// refuses; [`Error::Io`] for a protocol violation.
pub(crate) fn alive_check(socket: &Path, job: &dyn Job) -> Result<u32> {
    let bound = Bound { job };
    let request_id = next_request_id();
    let request = hello_then(ClientMessage::AliveCheck { request_id });
    alive(socket, &request, request_id, &bound).map_err(|fail| {
        let what = format!("mux alive check of ssh master {}", socket.display());
        fail.into_command_error(socket, what, "the master refused", job)
    })
}

fn alive(socket: &Path, request: &[u8], request_id: u32, bound: &Bound<'_>) -> Result<u32, Fail> {
    let mut control = Control::connect(socket, bound)?;
    control.send_all(request, bound)?;
    match control.reply(request_id, bound, "without answering")? {
        ServerMessage::Alive { pid, .. } => Ok(pid),
        other => Err(Fail::Protocol(format!(
            "unexpected reply to an alive check: {other:?}"
        ))),
    }
}
