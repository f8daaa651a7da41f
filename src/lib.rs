//! conn: run commands on remote hosts through a thread-safe pool of multiplexed OpenSSH
//! connections, or on the local host with the same API.
pub use conn_core::*;
#[cfg(feature = "local")]
pub use conn_local as local;
