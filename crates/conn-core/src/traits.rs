//! The traits a back end implements: [`Transport`] (how to connect) and [`Connection`] (one
//! pooled connection that starts commands), and [`Remote`] (who an endpoint is).
//!
//! Nothing here assumes a child process per command: a back end that speaks a protocol over a
//! socket in-process fits as well as one that spawns `ssh`. Process-based back ends share
//! [`spawn_process`](crate::transport::spawn_process).

use std::ops::Deref;

use crate::child::{Held, RemoteChild};
use crate::command::Cmd;
use crate::error::Result;
use crate::host::UserHost;
use crate::job::Job;
use crate::runner::Runner;
use crate::status::Output;

/// The identity of an endpoint, for callers that hold endpoints of several kinds (a list read
/// from a config file, say) and must name them or tell the local one apart.
pub trait Remote {
    /// The validated `[user@]host`, or `None` for this host.
    fn user_host(&self) -> Option<&UserHost>;

    /// A stable string that distinguishes this endpoint's connections from every other's
    /// (user@host, port, ssh_config …); `"-"` for this host.
    fn cache_namespace(&self) -> String;

    /// Whether commands run on this machine rather than a remote one.
    fn is_local(&self) -> bool {
        self.user_host().is_none()
    }
}

/// Makes the connections a [`ConnectionPool`](crate::ConnectionPool) holds.
///
/// One transport value describes one endpoint with all its options; it is shared by every
/// connection it makes, so it must be `Send + Sync`.
pub trait Transport: Send + Sync + 'static {
    /// The pooled connection type.
    type Connection: Connection;

    /// Makes a new connection for the pool named `pool_name`. It must be cheap and must not
    /// block on the network: connecting for real belongs in [`Connection::refresh`], which the
    /// pool calls before it hands the connection out, under the connection's own lock rather
    /// than the pool's.
    fn connect(&self, pool_name: &str) -> Result<Self::Connection>;
}

/// One connection of a pool: it starts commands, keeps itself alive, and shuts down.
///
/// The pool hands one connection to up to `capacity` callers at once, so every method takes
/// `&self` and implementations synchronise internally.
pub trait Connection: Send + Sync + 'static {
    /// Starts `cmd` within `job` on this connection, which the pool has just refreshed. A dry
    /// run starts nothing and returns an ended child.
    ///
    /// An error returned here says, through [`started`](crate::Error::started), whether the
    /// command may have started (a native session that timed out while the master confirmed
    /// it may have); those that are [retryable](crate::Error::is_retryable) are retried by the
    /// pool.
    fn spawn(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild>;

    /// Makes sure the connection is usable (e.g. its ssh master is alive), within `job`'s
    /// deadline: the health check the pool runs before handing the connection out. Cheap when
    /// nothing needs doing.
    fn refresh(&self, job: &dyn Job) -> Result<()>;

    /// Closes the connection for good (release its resources; maybe end the master). Called
    /// once, by the pool's shutdown; failures are logged, not returned.
    fn shutdown(&self);

    /// Runs `cmd` to its end: [`Connection::spawn`] then
    /// [`RemoteChild::wait_with_output`], the one code path of every back end.
    fn run(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
        self.spawn(cmd, job)?.wait_with_output()
    }
}

// Here, beside `Connection`, not in child.rs: the child knows only a `Runner`, so that the
// child's module and this one do not import each other.
impl RemoteChild {
    /// Keeps `conn` (a pool's guard, an `Arc` of a connection: whatever dereferences to the
    /// connection the command runs on) alive until the command has ended, like
    /// [`RemoteChild::hold`], and runs the remote kill of [`Cmd::kill_remote`] on it.
    /// [`PooledConnection::spawn`](crate::PooledConnection::spawn) does this; a child from a
    /// bare [`Connection::spawn`] has no connection to run the kill on until its caller hands
    /// it one here.
    pub fn hold_connection<G>(self, conn: G) -> Self
    where
        G: Deref + Send + Sync + 'static,
        G::Target: Connection + Sized,
    {
        self.with_held(Box::new(Lent(conn)))
    }
}

/// A guard of (or a handle on) the connection a command runs on, held by its child.
struct Lent<G>(G);

impl<G> Held for Lent<G>
where
    G: Deref + Send + Sync,
    G::Target: Connection + Sized,
{
    fn connection(&self) -> Option<&dyn Runner> {
        Some(&*self.0)
    }
}

impl<C: Connection + ?Sized> Runner for C {
    fn run_to_end(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
        self.run(cmd, job)
    }
}
