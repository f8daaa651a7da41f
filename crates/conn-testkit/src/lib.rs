//! conn's test kit: everything the test suites share, kept out of the crates they test.
//!
//! - [`sshd`]: a throwaway OpenSSH server on 127.0.0.1 ([`TestSshd`]), for the integration
//!   tests and for `conn demo`.
//! - [`procfs`]: which processes exist, their parents, groups and states, read from `/proc`.
//! - [`child`]: a test that re-runs its own test binary to run an `#[ignore]`d helper test as a
//!   separate process (crash recovery, several processes, an unread stderr).
//! - [`transports`]: stand-in transports for pool tests and benchmarks (do-nothing, flaky).
//! - [`fuzz`]: the checks behind the fuzz targets, so that their saved crash inputs also run
//!   under a plain `cargo test`.
//! - [`run_with_timeout`] and [`wait_until`]: bounded waits, so that a hang fails a test
//!   instead of stalling the run.
//!
//! Machine set-up (the OpenSSH server, `/run/sshd`, the `conntest` account) belongs to
//! `scripts/setup.sh`; this crate only checks for it and says what to run when it is missing.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod child;
pub mod fuzz;
pub mod procfs;
mod run;
pub mod sshd;
pub mod transports;

pub use run::{run_with_timeout, socket_dir, wait_until};
pub use sshd::{TestSshd, TestSshdBuilder};
