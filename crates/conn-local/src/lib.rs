//! conn's local transport: commands run directly on this host with the same API as a remote,
//! so callers need no special case for "the local side".
//!
//! The argv is executed as given (no shell, no quoting, no ssh); each command is a child in its
//! own process group under the job's deadline and cancellation, through
//! [`conn_core::run_process`].
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

use conn_core::{
    Cmd, Connection, Job, Location, Output, Remote, Result, Transport, UserHost, display_line,
    run_process,
};

/// The local endpoint: a [`Transport`] whose connections execute commands on this host.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local {
    location: Location,
}

impl Local {
    /// The local endpoint on the source side.
    pub fn new() -> Self {
        Self::default()
    }

    /// The local endpoint on the given side.
    pub fn with_location(location: Location) -> Self {
        Local { location }
    }
}

impl Remote for Local {
    fn location(&self) -> Location {
        self.location
    }

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

/// A "connection" to this host: stateless, it only runs commands.
#[derive(Debug)]
pub struct LocalConnection {
    _private: (),
}

impl Connection for LocalConnection {
    fn run(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
        let output = run_process(cmd.argv(), cmd, job)?;
        if cmd.is_checked() && !output.status.success() {
            return cmd.checked(output, &display_line(cmd.argv()));
        }
        Ok(output)
    }

    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        Ok(())
    }

    fn shutdown(&self) {}
}
