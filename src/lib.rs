//! conn: run commands on remote hosts through a thread-safe pool of multiplexed OpenSSH
//! connections, or on the local host with the same API.
//!
//! | feature   | default | what it adds |
//! |-----------|---------|--------------|
//! | `openssh` | yes     | [`OpenSsh`]: ssh/hpnssh ControlMaster connections with leased sockets |
//! | `local`   | yes     | [`Local`]: direct exec on this host, no shell, no ssh |
//! | `native-mux` | no   | `Mux::Native`: sessions over the master's socket in-process, no `ssh -S` spawn |
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
#![warn(missing_docs)]

pub use conn_core::*;

#[cfg(feature = "local")]
pub use conn_local::{Local, LocalConnection};

#[cfg(feature = "openssh")]
pub use conn_openssh::{Mux, OpenSsh, OpenSshBuilder, OpenSshConnection};

/// The types almost every caller needs.
pub mod prelude {
    pub use conn_core::{
        Cmd, ConnectionPool, ConnectionPools, DEFAULT_CAPACITY, Error, Job, Output, Result,
        SimpleJob, Stdin, Stream,
    };
    #[cfg(feature = "local")]
    pub use conn_local::Local;
    #[cfg(feature = "openssh")]
    pub use conn_openssh::OpenSsh;
}
