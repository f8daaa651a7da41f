//! Crash-safe, hardened `flock(2)` leases of ssh ControlPath socket names.
//!
//! A process that finds an ssh master left alive by an earlier process (`ControlPersist`) can
//! skip the TCP and SSH handshake and authentication. A *lease* on the master's socket name
//! makes sure that no two live processes ever share one master (which would push it past
//! sshd's `MaxSessions`). This crate knows nothing about ssh: it hands out names.
//!
//! - [`LeaseManager`]: one namespace under a root directory, laid out as
//!   `<root>/<ns>/{c,free,used}`; [`LeaseManager::acquire`] never blocks.
//! - [`Lease`]: the locked lock file and the socket path; [`Lease::release`] or drop gives it
//!   back, and a process that dies releases its locks by itself (no janitor, no daemon).
//! - [`inspect`], [`prune`]: look at or clean up a whole socket directory.
//! - [`ttl_for_control_persist`], [`MAX_SOCKET_PATH_LEN`], [`MAX_CONTROL_PATH_LEN`],
//!   [`MAX_ROOT_LEN`]: the numbers a caller needs; [`check_root`]: whether an existing
//!   directory would pass as a root.
//! - [`namespace_hash`]: how namespaces (and parts of them) are hashed into short,
//!   filename-safe names.
//!
//! The lock is the truth; the `free/` and `used/` folders are only a fast index. The state
//! machine, the crash cases and the security checks are described in `docs/leases.md`.
//!
//! ```no_run
//! use std::time::Duration;
//! use conn_lease::{LeaseManager, ttl_for_control_persist};
//!
//! let ttl = ttl_for_control_persist(Duration::from_secs(600));
//! let leases = LeaseManager::new("/home/me/.ssh/conn", "src#me@host#default", ttl)?;
//! let mut lease = leases.acquire()?;
//! // ssh -S <lease.socket_path()> -M -N -oControlPersist=600s host ...
//! lease.touch_socket()?;
//! lease.release()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod inspect;
mod layout;
mod lease;
mod probe;

use std::time::Duration;

pub use error::LeaseError;
pub use inspect::{EntryReport, EntryState, NamespaceReport, inspect, prune};
pub use layout::{NAME_LEN, NAMESPACE_DIR_LEN, check_root, namespace_dir_name, namespace_hash};
pub use lease::{Lease, LeaseManager};
pub use probe::{SocketState, probe_socket};

/// The longest path a Unix socket can be bound to: `sizeof(sun_path) - 1` (the path is stored
/// NUL-terminated), 108 − 1 on Linux and 104 − 1 on the BSDs and macOS.
#[cfg(target_os = "linux")]
pub const MAX_SOCKET_PATH_LEN: usize = 107;
/// The longest path a Unix socket can be bound to: `sizeof(sun_path) - 1` (the path is stored
/// NUL-terminated), 108 − 1 on Linux and 104 − 1 on the BSDs and macOS.
#[cfg(not(target_os = "linux"))]
pub const MAX_SOCKET_PATH_LEN: usize = 103;

/// The bytes ssh appends to the ControlPath while it binds a master socket.
///
/// OpenSSH's `muxserver_listen` (mux.c) first binds and listens on
/// `<ControlPath>.<16 random alphanumerics>` and only then `link(2)`s that to the ControlPath,
/// so that no client ever connects to a bound but not yet listening socket (older releases
/// used `"%s.%016llx"`; both add a dot and 16 characters). That temporary path must fit the
/// Unix socket limit too, or `ssh -M` fails with "unix_listener: path … too long for Unix
/// domain socket".
pub const SSH_BIND_SUFFIX_LEN: usize = 17;

/// The longest ControlPath this crate accepts: [`MAX_SOCKET_PATH_LEN`] −
/// [`SSH_BIND_SUFFIX_LEN`] (90 bytes on Linux, 86 elsewhere).
///
/// Socket paths are `<root>/<43-byte namespace>/c/<12-byte name>`, so the root (socket
/// directory) may be at most [`MAX_ROOT_LEN`] bytes long; [`LeaseManager::new`] checks this
/// before anything is created.
pub const MAX_CONTROL_PATH_LEN: usize = MAX_SOCKET_PATH_LEN - SSH_BIND_SUFFIX_LEN;

/// The longest socket directory (the `root` of [`LeaseManager::new`]) whose socket paths
/// `<root>/<ns>/c/<name>` fit [`MAX_CONTROL_PATH_LEN`]: 90 − 59 = 31 bytes on Linux (27
/// elsewhere).
pub const MAX_ROOT_LEN: usize =
    MAX_CONTROL_PATH_LEN - ("/".len() + NAMESPACE_DIR_LEN + "/c/".len() + NAME_LEN);

/// The pruning TTL for masters started with the given `ControlPersist`:
/// `max(90 min, 2 × control_persist + 2 s)`.
///
/// An idle master exits `ControlPersist` after its last client, and a live connection touches
/// its socket ([`Lease::touch_socket`]) at every slow refresh and at most once a second on the
/// fast path, so a socket untouched for twice that
/// long belongs to a dead master; the 90-minute floor keeps short persist times from pruning
/// eagerly.
pub fn ttl_for_control_persist(control_persist: Duration) -> Duration {
    let scaled = control_persist
        .saturating_mul(2)
        .saturating_add(Duration::from_secs(2));
    scaled.max(Duration::from_secs(90 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_at_least_90_minutes_else_twice_persist_plus_2s() {
        let min = Duration::from_secs(5400);
        assert_eq!(ttl_for_control_persist(Duration::ZERO), min);
        assert_eq!(ttl_for_control_persist(Duration::from_secs(600)), min);
        assert_eq!(ttl_for_control_persist(Duration::from_secs(2699)), min);
        assert_eq!(
            ttl_for_control_persist(Duration::from_secs(2700)),
            Duration::from_secs(5402)
        );
        assert_eq!(
            ttl_for_control_persist(Duration::from_secs(3600)),
            Duration::from_secs(7202)
        );
        assert_eq!(ttl_for_control_persist(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn limits() {
        assert_eq!(
            MAX_CONTROL_PATH_LEN + SSH_BIND_SUFFIX_LEN,
            MAX_SOCKET_PATH_LEN
        );
        #[cfg(target_os = "linux")]
        assert_eq!((MAX_CONTROL_PATH_LEN, MAX_ROOT_LEN), (90, 31));
    }

    #[test]
    fn lease_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Lease>();
        check::<LeaseManager>();
    }
}
