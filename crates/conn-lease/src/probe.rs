//! Whether something listens on a Unix socket file, told in microseconds without ever waiting:
//! the liveness probe of ssh masters (where `ssh -O check` costs milliseconds), and the guard
//! that keeps pruning from removing a live master's socket.

use std::io;
use std::mem;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

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
    match connect_nonblocking(path, libc::SOCK_SEQPACKET) {
        // A socket of another type is bound there: its process is alive.
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => return SocketState::Live,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => return SocketState::Stale,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return SocketState::Missing,
        Ok(_fd) => return SocketState::Live, // a seqpacket listener: not ssh's, but alive
        Err(_) => {}                         // ask the stream way below
    }
    match connect_nonblocking(path, libc::SOCK_STREAM) {
        Ok(_fd) => SocketState::Live, // dropped at once: the master sees an empty client go
        Err(e) => match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) => SocketState::Busy,
            // Only a refusal proves that nobody listens.
            Some(libc::ECONNREFUSED) => SocketState::Stale,
            Some(libc::ENOENT) => SocketState::Missing,
            Some(errno) => SocketState::Unknown(errno),
            None => SocketState::Unknown(0),
        },
    }
}

fn connect_nonblocking(path: &Path, kind: libc::c_int) -> io::Result<OwnedFd> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain syscalls; the fd is owned by the OwnedFd right after creation.
    unsafe {
        let fd = libc::socket(
            libc::AF_UNIX,
            kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = OwnedFd::from_raw_fd(fd);
        let len = (mem::size_of::<libc::sa_family_t>() + bytes.len()) as libc::socklen_t;
        if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
