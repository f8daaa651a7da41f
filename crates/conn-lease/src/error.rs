//! The error type of conn-lease.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while setting up the lease folders or taking a lease.
///
/// Each message names the path concerned, says what is wrong with it and what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// A directory of the layout (root, namespace or sub-directory) is a symlink. It is never
    /// followed: whoever controls the link would control where ssh puts its sockets.
    #[error(
        "{} must not be a symlink: remove the link, or choose a socket directory without one",
        path.display()
    )]
    Symlink {
        /// The offending path.
        path: PathBuf,
    },

    /// A path of the layout exists but is not a directory.
    #[error(
        "{} is not a directory: remove it, or choose another socket directory",
        path.display()
    )]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },

    /// A directory of the layout belongs to another user than the effective uid.
    #[error(
        "{} is owned by uid {uid}, not {expected}: only the user who runs conn may own its socket \
         directory; choose another socket directory (or chown it to uid {expected})",
        path.display()
    )]
    WrongOwner {
        /// The offending directory.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The effective uid of this process.
        expected: u32,
    },

    /// A directory of the layout has another mode than exactly `0700`.
    #[error(
        "{} has mode {mode:04o}, not 0700: run `chmod 700 {}` (other users must not reach the \
         ssh control sockets inside)",
        path.display(),
        path.display()
    )]
    WrongMode {
        /// The offending directory.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },

    /// The socket paths of this namespace would be too long for a Unix socket once ssh appends
    /// its temporary suffix (see [`MAX_CONTROL_PATH_LEN`](crate::MAX_CONTROL_PATH_LEN)).
    #[error(
        "ControlPath {} is {len} bytes, over the {limit}-byte limit (the {}-byte Unix socket \
         limit less the {}-byte suffix ssh appends while binding a master): choose a shorter \
         socket directory, at most {max_root_len} bytes",
        path.display(),
        crate::MAX_SOCKET_PATH_LEN,
        crate::SSH_BIND_SUFFIX_LEN
    )]
    SocketPathTooLong {
        /// A socket path of the namespace (all have the same length).
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The largest allowed length, [`MAX_CONTROL_PATH_LEN`](crate::MAX_CONTROL_PATH_LEN).
        limit: usize,
        /// The longest socket directory (root) that would fit, in bytes.
        max_root_len: usize,
    },

    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path concerned.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl LeaseError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
