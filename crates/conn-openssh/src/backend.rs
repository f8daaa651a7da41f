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
pub(crate) fn master_pid(
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
            _ => crate::process_mux::spawn(conn, cmd, job),
        }
    }

    /// Asks the master behind `control` whether it is alive, and its pid: `ssh -O check`, or
    /// `MUX_C_ALIVE_CHECK` in-process with the native back end, within `job`. An answer also
    /// restarts the master's ControlPersist countdown.
    pub(crate) fn check_master(
        self,
        conn: &OpenSshConnection,
        control: &Control,
        job: &dyn Job,
    ) -> Result<u32> {
        match self {
            #[cfg(feature = "native-mux")]
            Backend::Native => crate::native_mux::alive_check(&control.socket, job),
            Backend::Process => {
                let _ = control;
                let argv = conn.check_command_line();
                let out = conn.run_ssh(&argv, conn_core::Stream::Piped, job)?;
                if out.status.success() {
                    // "Master running (pid=N)"; should the words ever change, ask in-process.
                    let text = String::from_utf8_lossy(&out.stderr);
                    return match text
                        .split_once("(pid=")
                        .and_then(|(_, rest)| rest.split_once(')'))
                        .and_then(|(pid, _)| pid.parse().ok())
                    {
                        Some(pid) => Ok(pid),
                        None => Err(Error::Connect {
                            endpoint: conn.endpoint(),
                            message: format!(
                                "`ssh -O check` answered without the master's pid: {}",
                                conn_core::text::tail(text.trim(), 500)
                            ),
                        }),
                    };
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

    /// Asks the master behind `control` to exit, within `job`: `ssh -O exit`, or
    /// `MUX_C_TERMINATE` in-process with the native back end (no ssh spawned per master).
    pub(crate) fn exit_master(
        self,
        conn: &OpenSshConnection,
        control: &Control,
        job: &dyn Job,
    ) -> Result<()> {
        match self {
            #[cfg(feature = "native-mux")]
            Backend::Native => crate::native_mux::terminate(&control.socket, job),
            Backend::Process => {
                let _ = control;
                let argv = conn.ssh_argv(&["-O", "exit"], []);
                let cmd = conn_core::Cmd::new(&argv).check(true);
                let out = conn.run_ssh(&argv, conn_core::Stream::Piped, job)?;
                cmd.checked(out, "", &conn_core::display_line(&argv))
                    .map(|_| ())
            }
        }
    }
}
