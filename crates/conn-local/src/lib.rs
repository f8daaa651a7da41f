//! conn's local transport: commands run directly on this host with the same API as a remote,
//! so callers need no special case for "the local side".
//!
//! The argv is executed as given (no shell, no quoting, no ssh); each command is a child in its
//! own process group under the job's deadline and cancellation, through
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
use conn_core::{Cmd, Connection, Job, Remote, RemoteChild, Result, Transport, UserHost};

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
    /// Executes the argv directly: the child gets the caller's descriptors themselves (no
    /// master stands between, so nothing can hold them past the command's end).
    fn spawn(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild> {
        cmd.validate()?;
        spawn_process(cmd.argv(), cmd, job, ProcessOptions::default())
    }

    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        Ok(())
    }

    fn shutdown(&self) {}
}
