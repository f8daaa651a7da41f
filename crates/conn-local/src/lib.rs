//! conn's local transport: commands run directly on this host with the same API as a remote,
//! so callers need no special case for "the local side".
//!
//! The argv is executed as given (no shell, no quoting, no ssh); a shell line
//! ([`Cmd::shell`](conn_core::Cmd::shell)) runs as `sh -c <line>`; a subsystem is refused (only
//! ssh has them). Each command is a child in its own process group under the job's deadline and cancellation, through
//! [`conn_core::transport::spawn_process`]. The child gets the caller's descriptors themselves:
//! no master stands between, so nothing can hold them past the command's end.
//!
//! ```
//! use conn_core::{Cmd, ConnectionPool, SimpleJob};
//! use conn_local::Local;
//! let pool = ConnectionPool::new(Local::new(), "shared", 8).unwrap();
//! let out = pool.run(&Cmd::new(["echo", "hello world"]), &SimpleJob::new()).unwrap();
//! assert_eq!(out.stdout, b"hello world\n");
//! pool.shutdown();
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use conn_core::transport::{ProcessOptions, spawn_process};
use std::ffi::OsString;

use conn_core::{
    Cmd, Connection, Error, Job, Program, Remote, RemoteChild, Result, Transport, UserHost,
};

/// The local endpoint: a [`Transport`] whose connections execute commands on this host.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local {
    _private: (),
}

impl Local {
    /// The local endpoint.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Remote for Local {
    fn user_host(&self) -> Option<&UserHost> {
        None
    }

    fn cache_namespace(&self) -> String {
        "-".to_string()
    }
}

impl Transport for Local {
    type Connection = LocalConnection;

    fn connect(&self, _pool_name: &str) -> Result<LocalConnection> {
        Ok(LocalConnection { _private: () })
    }
}

/// A "connection" to this host: stateless, it only starts commands.
#[derive(Debug)]
pub struct LocalConnection {
    _private: (),
}

impl Connection for LocalConnection {
    /// Executes the argv directly, or a shell line as `sh -c <line>`: the child gets the
    /// caller's descriptors themselves (no master stands between, so nothing can hold them
    /// past the command's end). A subsystem is an [`Error::Config`]: there is no ssh here.
    fn spawn(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild> {
        cmd.validate()?;
        match cmd.program() {
            Program::Argv(argv) => spawn_process(argv, cmd, job, ProcessOptions::default()),
            Program::Shell(line) => {
                let argv: [OsString; 3] = ["sh".into(), "-c".into(), line.clone()];
                spawn_process(&argv, cmd, job, ProcessOptions::default())
            }
            Program::Subsystem(name) => Err(Error::Config(format!(
                "the local transport cannot run subsystem {:?}: subsystems (sftp …) are an ssh \
                 server's, so run it over an ssh transport, or run its program directly \
                 (e.g. /usr/lib/openssh/sftp-server)",
                name.to_string_lossy()
            ))),
            _ => Err(Error::Config(format!(
                "the local transport cannot run {}",
                cmd.program().display()
            ))),
        }
    }

    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        Ok(())
    }

    fn shutdown(&self) {}
}
