//! The one private dispatch between the session back ends: each lives in its own module
//! (`process_mux`, `native_mux`), and this is the only place that knows which are compiled in.

use conn_core::{Error, Job, RemoteChild, Result};

use crate::config::Mux;
use crate::connection::{Control, OpenSshConnection};

/// A back end chosen and checked by the builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Process,
    #[cfg(feature = "native-mux")]
    Native,
}

impl Backend {
    /// The back end for `mux`, or the error that says how to get it.
    pub(crate) fn for_mux(mux: Mux) -> Result<Backend> {
        match mux {
            Mux::Process => Ok(Backend::Process),
            #[cfg(feature = "native-mux")]
            Mux::Native => Ok(Backend::Native),
            #[cfg(not(feature = "native-mux"))]
            Mux::Native => Err(Error::Config(
                "Mux::Native is not compiled in: enable the `native-mux` feature of conn (or \
                 conn-openssh), or use Mux::Process"
                    .to_string(),
            )),
        }
    }

    /// Starts `cmd` over `conn`'s master.
    pub(crate) fn spawn(
        self,
        conn: &OpenSshConnection,
        cmd: &conn_core::Cmd,
        job: &dyn Job,
    ) -> Result<RemoteChild> {
        match (self, &conn.control) {
            #[cfg(feature = "native-mux")]
            (Backend::Native, Some(control)) => {
                crate::native_mux::spawn(&control.socket, &conn.endpoint(), cmd, job)
            }
            // Without connection reuse there is no master to speak to: every command is an ssh
            // process of its own (the builder refuses native without reuse).
            _ => crate::process_mux::spawn(conn, cmd, job),
        }
    }

    /// Asks the master behind `control` whether it is alive: `ssh -O check`, or
    /// `MUX_C_ALIVE_CHECK` in-process with the native back end. An answer also restarts the
    /// master's ControlPersist countdown.
    pub(crate) fn check_master(
        self,
        conn: &OpenSshConnection,
        control: &Control,
        job: &dyn Job,
    ) -> Result<()> {
        match self {
            #[cfg(feature = "native-mux")]
            Backend::Native => {
                let timeout = job
                    .deadline()
                    .map_or(std::time::Duration::from_secs(5), |d| d.remaining());
                crate::native_mux::alive_check(&control.socket, timeout).map(|_| ())
            }
            Backend::Process => {
                let _ = control;
                let argv = conn.check_command_line();
                let out = conn.run_ssh(&argv, conn_core::Stream::Piped, job)?;
                if out.status.success() {
                    return Ok(());
                }
                Err(Error::Connect {
                    endpoint: conn.endpoint(),
                    message: format!(
                        "`ssh -O check` failed ({}): {}",
                        out.status,
                        conn_core::text::tail(String::from_utf8_lossy(&out.stderr).trim(), 500)
                    ),
                })
            }
        }
    }
}
