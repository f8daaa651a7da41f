//! Whether something listens on a Unix socket file, told in microseconds without ever waiting:
//! the liveness probe of ssh masters (where `ssh -O check` costs milliseconds), and the guard
//! that keeps pruning from removing a live master's socket.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// What a probe of a control socket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketState {
    /// No file at the path.
    Missing,
    /// A file that is not a socket. A refresh never removes it (it reports an error); pruning
    /// removes one from a lease directory only once it is older than the TTL.
    NotASocket,
    /// A socket file nobody listens on (a master that died without cleaning up): safe to remove.
    Stale,
    /// Something listens but would make us wait (its backlog is full): treat as not usable now,
    /// but never remove it.
    Busy,
    /// A listener accepted the connection.
    Live,
    /// The connect failed for another reason (out of file descriptors, permission, …): nothing
    /// is known, so nothing may be removed.
    Unknown(i32),
}

/// Probes `path` without ever blocking.
///
/// On Linux the probe is a `SOCK_SEQPACKET` connect to the stream socket: the kernel resolves
/// the path, finds a bound socket of another type and answers `EPROTOTYPE`, or finds none and
/// answers `ECONNREFUSED`, without ever queueing a connection. So the master is not woken (it
/// would preempt the caller on a busy machine) and its listen backlog is never filled by
/// probes (a burst of stream probes filled it in more than half of 1,000 back-to-back tries).
/// Elsewhere, and should that connect fail otherwise, a non-blocking Unix-stream connect: it
/// completes, is refused, or reports a full backlog at once.
pub fn probe_socket(path: &Path) -> SocketState {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return SocketState::Missing,
    };
    if !meta.file_type().is_socket() {
        return SocketState::NotASocket;
    }
    #[cfg(target_os = "linux")]
    match connect_nonblocking(path, SocketType::SEQPACKET) {
        // A socket of another type is bound there: its process is alive.
        Err(Errno::PROTOTYPE) => return SocketState::Live,
        Err(Errno::CONNREFUSED) => return SocketState::Stale,
        Err(Errno::NOENT) => return SocketState::Missing,
        Ok(_fd) => return SocketState::Live, // a seqpacket listener: not ssh's, but alive
        Err(_) => {}                         // ask the stream way below
    }
    match connect_nonblocking(path, SocketType::STREAM) {
        Ok(_fd) => SocketState::Live, // dropped at once: the master sees an empty client go
        Err(Errno::AGAIN | Errno::INPROGRESS) => SocketState::Busy,
        // Only a refusal proves that nobody listens.
        Err(Errno::CONNREFUSED) => SocketState::Stale,
        Err(Errno::NOENT) => SocketState::Missing,
        Err(errno) => SocketState::Unknown(errno.raw_os_error()),
    }
}

/// A non-blocking, close-on-exec Unix socket of type `kind`, connected to `path`.
fn connect_nonblocking(path: &Path, kind: SocketType) -> Result<OwnedFd, Errno> {
    // `sun_path` must hold the path and its NUL (the kernel would take one byte more).
    if path.as_os_str().len() > crate::MAX_SOCKET_PATH_LEN {
        return Err(Errno::NAMETOOLONG);
    }
    let addr = SocketAddrUnix::new(path)?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        kind,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::connect(&fd, &addr)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::os::unix::net::UnixListener;

    #[test]
    fn tells_live_stale_missing_and_foreign_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        assert_eq!(probe_socket(&sock), SocketState::Missing);
        let listener = UnixListener::bind(&sock).unwrap();
        assert_eq!(probe_socket(&sock), SocketState::Live);
        drop(listener); // the file stays, nobody listens
        assert_eq!(probe_socket(&sock), SocketState::Stale);
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(probe_socket(&file), SocketState::NotASocket);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn probing_a_live_socket_queues_no_connection() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let listener = UnixListener::bind(&sock).unwrap();
        for _ in 0..1000 {
            assert_eq!(probe_socket(&sock), SocketState::Live);
        }
        listener.set_nonblocking(true).unwrap();
        let err = listener.accept().unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::WouldBlock,
            "the listener was never woken, its backlog never filled"
        );
    }
}
