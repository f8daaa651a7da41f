//! `MUX_C_TERMINATE` in-process: what `ssh -O exit` asks, without spawning it. The native back
//! end's shutdown sends it when masters are to be ended (`exit_masters_on_shutdown`), which
//! saves an ssh process per master: on a fleet, one per host at the end of a run.

use std::path::Path;

use conn_core::{Job, Result};

use super::codec::{ClientMessage, ServerMessage};
use super::control::{Bound, Control, Fail, hello_then, next_request_id};

/// Asks the master behind `socket` to exit, within `job`'s deadline and cancellation. `Ok` once
/// it said yes (`MUX_S_OK`), or hung up after the request: a master may exit before it answers,
/// which OpenSSH's own client takes as success too.
///
/// Errors: [`Error::Timeout`] / [`Error::Cancelled`] when the job ends first; [`Error::Connect`]
/// when nothing listens or the master refuses (`MUX_S_PERMISSION_DENIED`, `MUX_S_FAILURE`);
/// [`Error::Io`] for a protocol violation or a local failure.
pub(crate) fn terminate(socket: &Path, job: &dyn Job) -> Result<()> {
    let bound = Bound { job };
    let request_id = next_request_id();
    let request = hello_then(ClientMessage::Terminate { request_id });
    Control::connect(socket, &bound)
        .and_then(|mut control| {
            control.send_all(&request, &bound)?;
            match control.reply(request_id, &bound, "after the exit request") {
                Ok(ServerMessage::Ok { .. }) => Ok(()),
                Ok(other) => Err(Fail::Protocol(format!(
                    "unexpected reply to an exit request: {other:?}"
                ))),
                Err(Fail::Closed(_) | Fail::Reset(_)) => Ok(()), // it went away: done
                Err(e) => Err(e),
            }
        })
        .map_err(|fail| {
            let what = format!("asking the ssh master {} to exit", socket.display());
            fail.into_command_error(socket, what, "the master refused to exit", job)
        })
}
