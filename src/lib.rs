//! conn: run commands on remote hosts through a thread-safe pool of multiplexed OpenSSH
//! connections, or on the local host with the same API, and stream data through them.
//!
//! | feature   | default | what it adds |
//! |-----------|---------|--------------|
//! | `openssh` | yes     | [`OpenSsh`]: ssh/hpnssh ControlMaster connections with leased sockets |
//! | `local`   | yes     | [`Local`]: direct exec on this host, no shell, no ssh |
//! | `native-mux` | yes  | [`Mux::Native`]: sessions over the master's socket in-process, no `ssh -S` spawn (`Mux::Process` stays the builder's default) |
//! | `fleet`   | yes     | [`fleet`]: the fan-out engine (one command, copy or fetch over many hosts) and [`HostSet`] |
//!
//! Everything for the common case comes with one import:
//!
//! ```
//! use conn::prelude::*;
//! # #[cfg(feature = "local")] {
//! let pool = ConnectionPool::new(Local::new(), "shared", DEFAULT_CAPACITY)?;
//! let job = SimpleJob::with_timeout(std::time::Duration::from_secs(10));
//! let out = pool.run(&Cmd::new(["uname", "-s"]), &job)?;
//! assert!(!out.stdout.is_empty());
//! pool.shutdown();
//! # }
//! # Ok::<(), conn::Error>(())
//! ```
//!
//! Transport authors find the traits and helpers in [`transport`].
#![warn(missing_docs)]
#![forbid(unsafe_code)]

// The README's code blocks, compiled by `cargo test --doc` so that they cannot rot (they
// name hosts that do not exist here, so they are `no_run`).
#[cfg(all(
    doctest,
    feature = "openssh",
    feature = "native-mux",
    feature = "fleet"
))]
#[doc = include_str!("../README.md")]
mod readme {}

#[cfg(all(feature = "local", feature = "openssh"))]
mod endpoint;
#[cfg(feature = "fleet")]
pub mod fleet;

pub use conn_core::{
    CancelToken, CappedJob, ChildStderr, ChildStdin, ChildStdout, Cmd, ConnectionPool,
    ConnectionPools, ConnectionState, DEFAULT_CAPACITY, Deadline, Error, ExitStatus, Job, Output,
    OutputSink, PooledConnection, Program, RemoteChild, Result, RetryPolicy, SimpleJob, Started,
    Stdin, Stream, StreamKind, UserHost, dquote, join_quoted, quote, retry,
};

/// For transport authors: the traits a back end implements and the helpers it builds on.
pub mod transport {
    pub use conn_core::transport::*;
    pub use conn_core::{ChildRegistry, ensure_running, text};
}

#[cfg(all(feature = "local", feature = "openssh"))]
pub use endpoint::{Endpoint, EndpointConnection};

#[cfg(feature = "local")]
pub use conn_local::{Local, LocalConnection};

#[cfg(feature = "openssh")]
pub use conn_openssh::{Location, Mux, OpenSsh, OpenSshBuilder, OpenSshConnection};

#[cfg(feature = "fleet")]
pub use conn_hostset::HostSet;

/// The types almost every caller needs.
pub mod prelude {
    #[cfg(all(feature = "local", feature = "openssh"))]
    pub use crate::Endpoint;
    pub use conn_core::{
        Cmd, ConnectionPool, ConnectionPools, DEFAULT_CAPACITY, Error, Job, Output, RemoteChild,
        Result, SimpleJob, Started, Stdin, Stream,
    };
    #[cfg(feature = "local")]
    pub use conn_local::Local;
    #[cfg(feature = "openssh")]
    pub use conn_openssh::{Mux, OpenSsh};
}
