//! Core of conn: what every transport shares and nothing that knows about ssh.
//!
//! - [`ConnectionPool`], [`ConnectionPools`]: the heap-ordered pool of connections (`pool.rs`).
//! - [`Cmd`], [`Stdin`], [`Stream`], [`Output`]: what to run, its streams, what came back.
//! - [`RemoteChild`]: a running command, shaped like `std::process::Child` (`child.rs`).
//! - [`Job`], [`SimpleJob`], [`Deadline`], [`CancelToken`]: deadlines and cancellation.
//! - [`Error`], [`Started`]: the one error type, and whether a command started, which decides
//!   [`Error::is_retryable`]; [`retry`] retries on that rule.
//! - [`UserHost`]: a `[user@]host` that cannot hold an invalid value.
//! - [`quote`], [`join_quoted`], [`dquote`]: quoting for the remote shell, on bytes.
//! - [`transport`]: what a back end implements ([`Transport`], [`Connection`], [`Session`](transport::Session)) and
//!   the helpers it builds on ([`transport::spawn_process`]).
#![warn(missing_docs)]
// One unsafe block: setsid(2) in a pre_exec hook (process.rs), allowed there.
#![deny(unsafe_code)]

mod child;
mod command;
mod error;
mod host;
mod job;
mod poll;
mod pool;
mod process;
mod pump;
mod pump_thread;
mod quote;
mod remote_group;
mod retry;
mod runner;
mod status;
mod stdio;
pub mod text;
mod traits;
mod wait;

pub use child::RemoteChild;
pub use command::{Cmd, Program, Stdin, Stream};
pub use error::{Error, Result};
pub use host::UserHost;
pub use job::{CancelToken, CappedJob, ChildRegistry, Deadline, Job, SimpleJob, ensure_running};
pub use pool::{
    ConnectionPool, ConnectionPools, ConnectionState, DEFAULT_CAPACITY, PooledConnection,
};
pub use quote::{display_line, dquote, join_quoted, quote};
pub use retry::{RetryPolicy, retry};
pub use status::{ExitStatus, Output, Started};
pub use stdio::{ChildStderr, ChildStdin, ChildStdout};
pub use traits::{Connection, Remote, Transport};
pub use wait::{OutputSink, StreamKind};

/// For transport authors: the traits a back end implements and the helpers it builds on.
/// Callers of conn need none of this.
pub mod transport {
    pub use crate::child::{Seen, Session};
    pub use crate::command::CommandName;
    pub use crate::job::{ChildHandle, Pgid, Registration};
    pub use crate::poll::poll_until;
    pub use crate::process::{Classifier, ProcessOptions, spawn_process};
    pub use crate::remote_group::RemoteGroup;
    pub use crate::stdio::{ChildFd, StdioOptions, StdioPlan, pipe};
    pub use crate::traits::{Connection, Remote, Transport};
}
