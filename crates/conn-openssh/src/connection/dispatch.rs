//! The one private dispatch between the session back ends: each lives in its own module
//! (`process_mux`, `native_mux`) and knows nothing of a connection; this is the only place
//! that calls into them for a connection, and knows which are compiled in. Its methods are
//! `Backend`'s, defined here rather than in `backend.rs` because they take the connection:
//! the back-end choice stays below the options that name it, and the connection above both.

use conn_core::{Cmd, Job, RemoteChild, Result};

#[cfg(feature = "native-mux")]
use conn_core::Error;

use super::{Control, OpenSshConnection};
use crate::backend::Backend;

/// A connection with a control socket always has a master to ask for; kept as an error rather
/// than a panic all the same.
#[cfg(feature = "native-mux")]
fn unreachable_no_master(conn: &OpenSshConnection) -> Error {
    Error::Config(format!(
        "no ssh master for {}: the native mux needs connection reuse",
        conn.endpoint()
    ))
}

/// The pid of the master behind `control`, as cheaply as this build allows: one round trip in
/// this process with the mux protocol compiled in (feature `native-mux`), else `ssh -O check`.
pub(super) fn master_pid(
    conn: &OpenSshConnection,
    control: &Control,
    job: &dyn Job,
) -> Result<u32> {
    #[cfg(feature = "native-mux")]
    {
        let _ = conn;
        crate::native_mux::alive_check(&control.socket, job)
    }
    #[cfg(not(feature = "native-mux"))]
    {
        Backend::Process.check_master(conn, control, job)
    }
}

impl Backend {
    /// Starts `cmd` over `conn`'s master.
    pub(super) fn spawn(
        self,
        conn: &OpenSshConnection,
        cmd: &Cmd,
        job: &dyn Job,
    ) -> Result<RemoteChild> {
        // Each back end asks which master serves the session (`conn.master`) unless it is a
        // dry run: its fate at the end tells a clean end from a death
        // (docs/design.md#clean-end).
        match (self, &conn.control) {
            #[cfg(feature = "native-mux")]
            (Backend::Native, Some(control)) => {
                let master = || conn.master(job)?.ok_or_else(|| unreachable_no_master(conn));
                crate::native_mux::spawn(&control.socket, master, &conn.endpoint(), cmd, job)
            }
            // Without connection reuse there is no master to speak to: every command is an ssh
            // process of its own (the builder refuses native without reuse).
            _ => crate::process_mux::spawn(
                &conn.config,
                conn.control_path(),
                || conn.master(job),
                cmd,
                job,
            ),
        }
    }

    /// Asks the master behind `control` whether it is alive, and its pid: `ssh -O check`, or
    /// `MUX_C_ALIVE_CHECK` in-process with the native back end, within `job`. An answer also
    /// restarts the master's ControlPersist countdown.
    pub(super) fn check_master(
        self,
        conn: &OpenSshConnection,
        control: &Control,
        job: &dyn Job,
    ) -> Result<u32> {
        match self {
            #[cfg(feature = "native-mux")]
            Backend::Native => crate::native_mux::alive_check(&control.socket, job),
            Backend::Process => {
                crate::process_mux::check_master(&conn.config, &control.socket, job)
            }
        }
    }

    /// Asks the master behind `control` to exit, within `job`: `ssh -O exit`, or
    /// `MUX_C_TERMINATE` in-process with the native back end (no ssh spawned per master).
    pub(super) fn exit_master(
        self,
        conn: &OpenSshConnection,
        control: &Control,
        job: &dyn Job,
    ) -> Result<()> {
        match self {
            #[cfg(feature = "native-mux")]
            Backend::Native => crate::native_mux::terminate(&control.socket, job),
            Backend::Process => crate::process_mux::exit_master(&conn.config, &control.socket, job),
        }
    }
}
