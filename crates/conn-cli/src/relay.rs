//! Keeps our real stdout and stderr away from ssh masters.
//!
//! An ssh mux client (`ssh -S socket host cmd`) hands its stdin, stdout and stderr to the
//! master over the control socket, and the master writes the remote output to them directly.
//! When conn kills the client (a `--timeout`, a Ctrl-C), the remote command goes on and the
//! master keeps those descriptors until it ends: a terminal would get late output after conn
//! exited, and a pipeline (`conn run … 2>&1 | tee log`) would not see end-of-file until then.
//!
//! [`Relay::start`] therefore replaces this process's descriptors 1 and 2 with pipes, and two
//! threads copy from the pipes to the real streams. Children (and so masters) only ever get
//! the pipes. [`Relay::finish`] puts the real streams back and waits, boundedly, for what is
//! still in flight; at exit the pipes' read ends close and a master still holding the write
//! ends gets `EPIPE`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Descriptors 1 and 2 replaced by pipes, and the threads that copy them out.
pub struct Relay {
    /// Copies of the real stdout and stderr, to put back on 1 and 2.
    saved: Vec<(RawFd, OwnedFd)>,
    /// One message per copying thread when it has seen end-of-file.
    done: mpsc::Receiver<()>,
    threads: usize,
}

impl Relay {
    /// Replaces stdout and stderr with relayed pipes. On failure nothing is changed.
    pub fn start() -> io::Result<Relay> {
        let _ = io::stdout().flush();
        let mut prepared = Vec::new();
        for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            let saved = dup_cloexec(fd)?;
            let (read, write) = pipe_cloexec()?;
            prepared.push((fd, saved, read, write));
        }
        let (tx, done) = mpsc::channel();
        let mut relay = Relay {
            saved: Vec::new(),
            done,
            threads: 0,
        };
        for (fd, saved, read, write) in prepared {
            let out = File::from(dup_cloexec(saved.as_raw_fd())?);
            // SAFETY: dup2 onto 1 or 2, from a descriptor we own; the new fd 1/2 is not
            // close-on-exec, so children inherit the pipe.
            if unsafe { libc::dup2(write.as_raw_fd(), fd) } < 0 {
                let e = io::Error::last_os_error();
                drop(relay); // puts back whatever was already replaced
                return Err(e);
            }
            drop(write);
            relay.saved.push((fd, saved));
            let tx = tx.clone();
            thread::Builder::new()
                .name(format!("conn-relay-{fd}"))
                .spawn(move || {
                    copy(File::from(read), out);
                    let _ = tx.send(());
                })?;
            relay.threads += 1;
        }
        Ok(relay)
    }

    /// Puts the real stdout and stderr back, then waits up to `wait` until every writer of
    /// the pipes is gone and all they wrote has been copied.
    pub fn finish(mut self, wait: Duration) {
        self.restore();
        let deadline = Instant::now() + wait;
        for _ in 0..self.threads {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
    }

    fn restore(&mut self) {
        let _ = io::stdout().flush();
        for (fd, saved) in self.saved.drain(..) {
            // SAFETY: dup2 of a descriptor we own back onto 1 or 2.
            unsafe {
                libc::dup2(saved.as_raw_fd(), fd);
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Copies until end-of-file; once the output fails (a closed pipe), keeps draining so that
/// writers are never blocked.
fn copy(mut from: File, mut to: File) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut output_ok = true;
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if output_ok && to.write_all(&buf[..n]).is_err() {
                    output_ok = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new descriptor we then own.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fresh descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
