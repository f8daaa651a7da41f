//! conn's test kit: everything the test suites share, kept out of the crates they test.
//!
//! - [`TestSshd`]: a throwaway OpenSSH server on 127.0.0.1, from the publishable `conn-sshd`
//!   crate (which `conn demo` also uses), re-exported here with its bounded waits
//!   [`run_with_timeout`] and [`wait_until`], so that the tests need one import.
//! - [`procfs`]: which processes exist, their parents, groups and states, read from `/proc`.
//! - [`child`]: a test that re-runs its own test binary to run an `#[ignore]`d helper test as a
//!   separate process (crash recovery, several processes, an unread stderr).
//! - [`transports`]: stand-in transports for pool tests and benchmarks (do-nothing, flaky).
//! - [`fuzz`]: the checks behind the fuzz targets, so that their saved crash inputs also run
//!   under a plain `cargo test`.
//! - [`socket_dir`]: a short private directory for control sockets.
//!
//! Machine set-up (the OpenSSH server, `/run/sshd`, the test accounts) belongs to
//! `scripts/setup.sh`; this crate only checks for it and says what to run when it is missing.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod child;
pub mod fuzz;
pub mod procfs;
mod socket_dir;
pub mod transports;

pub use conn_sshd::{TestSshd, TestSshdBuilder, run_with_timeout, wait_until};
pub use socket_dir::socket_dir;
