//! What runs a command to its end: the one thing a child needs of the connection it runs on
//! (for the remote kill of [`Cmd::kill_remote`]). A trait of its own, below both the child and
//! [`Connection`](crate::Connection), so that neither module imports the other.

use crate::command::Cmd;
use crate::error::Result;
use crate::job::Job;
use crate::status::Output;

/// Runs `cmd` to its end under `job`; every [`Connection`](crate::Connection) is one.
pub(crate) trait Runner: Send + Sync {
    fn run_to_end(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output>;
}
