//! The traits a back end implements: [`Remote`] (who), [`Transport`] (how to connect) and
//! [`Connection`] (one pooled connection that runs commands).
//!
//! Nothing here assumes a child process per command: a back end that speaks a protocol over a
//! socket in-process fits as well as one that spawns `ssh`. Process-based back ends share
//! [`run_process`](crate::run_process).

use std::fmt;
use std::str::FromStr;

use crate::command::{Cmd, Output};
use crate::error::{Error, Result};
use crate::host::UserHost;
use crate::job::Job;

/// Which side of a transfer an endpoint is: part of the lease namespace, so that a source and
/// a destination that happen to be the same host never share masters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Location {
    /// The source side.
    #[default]
    Src,
    /// The destination side.
    Dst,
}

impl Location {
    /// `"src"` or `"dst"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Src => "src",
            Location::Dst => "dst",
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "src" => Ok(Location::Src),
            "dst" => Ok(Location::Dst),
            _ => Err(Error::Config(format!(
                "location {s:?} is neither \"src\" nor \"dst\""
            ))),
        }
    }
}

/// The identity of an endpoint.
pub trait Remote {
    /// Source or destination.
    fn location(&self) -> Location;

    /// The validated `[user@]host`, or `None` in local mode.
    fn user_host(&self) -> Option<&UserHost>;

    /// A stable string that distinguishes this endpoint's connections from every other's
    /// (user@host, port, ssh_config …); `"-"` in local mode.
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
pub trait Transport: Remote + Send + Sync + 'static {
    /// The pooled connection type.
    type Connection: Connection;

    /// Makes a new connection for the pool named `pool_name`. It must be cheap and must not
    /// block on the network: connecting for real belongs in [`Connection::refresh`], which runs
    /// before each command, under the connection's own lock rather than the pool's.
    fn connect(&self, pool_name: &str) -> Result<Self::Connection>;
}

/// One connection of a pool: it runs commands, keeps itself alive, and shuts down.
///
/// The pool hands one connection to up to `capacity` callers at once, so every method takes
/// `&self` and implementations synchronise internally.
pub trait Connection: Send + Sync + 'static {
    /// Runs `cmd` within `job`, refreshing the connection first if needed.
    fn run(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output>;

    /// Makes sure the connection is usable (e.g. its ssh master is alive), within `job`'s
    /// deadline. Cheap when nothing needs doing.
    fn refresh(&self, job: &dyn Job) -> Result<()>;

    /// Closes the connection for good (release its resources; maybe end the master). Called
    /// once, by the pool's shutdown; failures are logged, not returned.
    fn shutdown(&self);
}
