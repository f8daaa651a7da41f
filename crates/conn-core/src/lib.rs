//! Core of conn: what every transport shares and nothing that knows about ssh.
//!
//! - [`Transport`], [`Connection`], [`Remote`]: the traits a back end implements.
//! - [`ConnectionPool`], [`ConnectionPools`]: the heap-ordered pool of connections (`pool.rs`).
//! - [`Job`], [`SimpleJob`], [`Deadline`]: deadlines, cancellation, child-process tracking.
//! - [`Cmd`], [`Output`], [`run_process`]: what to run and the shared spawn helper.
//! - [`UserHost`]: a `[user@]host` that cannot hold an invalid value.
//! - [`quote`], [`quote_if_remote`], [`dquote`]: quoting for the remote shell.
//! - [`Error`]: the one error type, with [`Error::is_retryable`].
#![warn(missing_docs)]

mod command;
mod error;
mod host;
mod job;
mod pool;
mod process;
mod quote;
mod transport;

pub use command::{Cmd, ExitStatus, Output, Stdin, Stream};
pub use error::{Error, Result};
pub use host::UserHost;
pub use job::{CappedJob, Deadline, Job, Pgid, SimpleJob, ensure_running};
pub use pool::{
    ConnectionPool, ConnectionPools, ConnectionState, DEFAULT_CAPACITY, PooledConnection,
};
pub use process::{run_process, run_process_watching_stderr};
pub use quote::{display_line, dquote, join_quoted, quote, quote_if_remote};
pub use transport::{Connection, Location, Remote, Transport};
