//! Stand-in transports, for tests and benchmarks of what sits above a transport (the pool, the
//! CLI's retries) without any process or network.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use conn_core::transport::CommandName;
use conn_core::{Cmd, Connection, Error, Job, Remote, RemoteChild, Result, Transport, UserHost};

/// A child that ended at once without running anything.
fn nothing(cmd: &Cmd) -> RemoteChild {
    RemoteChild::dry_run(
        cmd,
        CommandName {
            endpoint: String::new(),
            line: cmd.program().display(),
        },
    )
}

/// A transport whose connections do nothing: every command "succeeds" at once with the empty
/// output of a dry run. Measures or checks the pool's own bookkeeping.
#[derive(Clone, Copy, Debug, Default)]
pub struct Null;

/// A connection of [`Null`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NullConnection;

impl Remote for Null {
    fn user_host(&self) -> Option<&UserHost> {
        None
    }
    fn cache_namespace(&self) -> String {
        "-".into()
    }
}

impl Transport for Null {
    type Connection = NullConnection;
    fn connect(&self, _pool_name: &str) -> Result<NullConnection> {
        Ok(NullConnection)
    }
}

impl Connection for NullConnection {
    fn spawn(&self, cmd: &Cmd, _job: &dyn Job) -> Result<RemoteChild> {
        Ok(nothing(cmd))
    }
    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        Ok(())
    }
    fn shutdown(&self) {}
}

/// A transport whose connections cannot be made usable the first `failures` times (its refresh
/// fails with a retryable [`Error::Connect`], like a master that cannot reach its host;
/// counted over all its connections), then succeed as [`Null`]'s do: to check the retry
/// limits and back-off of callers (the pool returns a failed refresh at once).
#[derive(Clone, Debug)]
pub struct Flaky {
    failures: usize,
    attempts: Arc<AtomicUsize>,
}

impl Flaky {
    /// Fails the first `failures` commands.
    pub fn new(failures: usize) -> Self {
        Flaky {
            failures,
            attempts: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Commands attempted so far, failed or not. Clones share the count, so keep a clone of
    /// the transport given to a pool to read it.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

/// A connection of [`Flaky`].
#[derive(Debug)]
pub struct FlakyConnection {
    transport: Flaky,
}

impl Remote for Flaky {
    fn user_host(&self) -> Option<&UserHost> {
        None
    }
    fn cache_namespace(&self) -> String {
        "flaky".into()
    }
}

impl Transport for Flaky {
    type Connection = FlakyConnection;
    fn connect(&self, _pool_name: &str) -> Result<FlakyConnection> {
        Ok(FlakyConnection {
            transport: self.clone(),
        })
    }
}

impl Connection for FlakyConnection {
    fn spawn(&self, cmd: &Cmd, _job: &dyn Job) -> Result<RemoteChild> {
        Ok(nothing(cmd))
    }
    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        let t = &self.transport;
        if t.attempts.fetch_add(1, Ordering::SeqCst) < t.failures {
            return Err(Error::Connect {
                endpoint: "flaky".into(),
                message: "no route".into(),
            });
        }
        Ok(())
    }
    fn shutdown(&self) {}
}
