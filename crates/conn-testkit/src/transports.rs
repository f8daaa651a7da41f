//! Stand-in transports, for tests and benchmarks of what sits above a transport (the pool, the
//! CLI's retries) without any process or network.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use conn_core::{
    Cmd, Connection, Error, Job, Location, Output, Remote, Result, Transport, UserHost,
};

/// A transport whose connections do nothing: every command "succeeds" at once with the empty
/// output of a dry run. Measures or checks the pool's own bookkeeping.
#[derive(Clone, Copy, Debug, Default)]
pub struct Null;

/// A connection of [`Null`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NullConnection;

impl Remote for Null {
    fn location(&self) -> Location {
        Location::Src
    }
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
    fn run(&self, _cmd: &Cmd, _job: &dyn Job) -> Result<Output> {
        Ok(Output::dry_run())
    }
    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        Ok(())
    }
    fn shutdown(&self) {}
}

/// A transport whose commands fail with a retryable [`Error::Connect`] the first `failures`
/// times (counted over all its connections), then succeed as [`Null`]'s do: to check retry
/// limits and back-off.
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
    fn location(&self) -> Location {
        Location::Src
    }
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
    fn run(&self, _cmd: &Cmd, _job: &dyn Job) -> Result<Output> {
        let t = &self.transport;
        if t.attempts.fetch_add(1, Ordering::SeqCst) < t.failures {
            return Err(Error::Connect {
                endpoint: "flaky".into(),
                message: "no route".into(),
            });
        }
        Ok(Output::dry_run())
    }
    fn refresh(&self, _job: &dyn Job) -> Result<()> {
        Ok(())
    }
    fn shutdown(&self) {}
}
