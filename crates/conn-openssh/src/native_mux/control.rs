//! The control connection to a master: connecting within the job's bounds, sending frames and
//! descriptors (`SCM_RIGHTS`, as OpenSSH's `mm_send_fd`), reading the master's messages; and
//! [`Bound`], the job's deadline and cancellation on every wait.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use conn_core::transport::poll_until;
use conn_core::{Error, Job};
use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use super::codec::{ClientMessage, CodecError, MUX_VERSION, ServerMessage, split_frame};

/// Longest single wait when the job's cancellation has no descriptor to poll (the system
/// refused an eventfd): cancellation is then noticed on this tick.
pub(super) const CANCEL_TICK: Duration = Duration::from_millis(50);

/// Bytes read from the control socket per `read(2)`: its messages are a few dozen bytes.
pub(super) const CONTROL_CHUNK: usize = 4 * 1024;

/// Request ids only need to be unique per control connection; a process-wide counter makes
/// them distinct in the master's debug log too.
static NEXT_REQUEST_ID: AtomicU32 = AtomicU32::new(1);

pub(super) fn next_request_id() -> u32 {
    NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)
}

/// Why a native session (or an alive check) stopped without a result. Each caller maps these
/// onto [`Error`] with its own context.
#[derive(Debug)]
pub(super) enum Fail {
    /// The job's deadline passed.
    Timeout,
    /// The job was cancelled.
    Cancelled,
    /// Connecting to the control socket failed: nothing was sent, nothing started.
    Connect(io::Error),
    /// The control connection broke or was closed by the master before its answer.
    Closed(String),
    /// The master reset the connection (`ECONNRESET`): on Linux a Unix stream socket closed
    /// with data it had not read resets its peer, so the master never read the whole request
    /// and its descriptors, and started nothing.
    Reset(String),
    /// The master broke the protocol.
    Protocol(String),
    /// The master answered the request with `MUX_S_FAILURE` or `MUX_S_PERMISSION_DENIED`.
    Refused(String),
    /// A local operation failed (pipes, `/dev/null`, poll).
    Local(&'static str, io::Error),
}

impl From<CodecError> for Fail {
    fn from(e: CodecError) -> Self {
        Fail::Protocol(e.to_string())
    }
}

impl Fail {
    /// The error of a one-request control command (an alive check, an exit request) on
    /// `socket` that failed this way: `what` names the command in messages, `refused` says
    /// what a refusal by the master means.
    pub(super) fn into_command_error(
        self,
        socket: &Path,
        what: String,
        refused: &str,
        job: &dyn Job,
    ) -> Error {
        let connect_error = |message: String| Error::Connect {
            endpoint: socket.display().to_string(),
            message,
        };
        match self {
            Fail::Timeout => Error::Timeout {
                command: what,
                timeout: job.deadline().map(|d| d.duration()).unwrap_or_default(),
            },
            Fail::Cancelled => Error::Cancelled { command: what },
            Fail::Connect(e) => connect_error(format!("no ssh master listens: {e}")),
            Fail::Closed(why) | Fail::Reset(why) => connect_error(why),
            Fail::Refused(why) => connect_error(format!("{refused}: {why}")),
            Fail::Protocol(why) => Error::Io {
                context: what,
                source: io::Error::new(io::ErrorKind::InvalidData, why),
            },
            Fail::Local(step, source) => Error::Io {
                context: format!("{step} for {what}"),
                source,
            },
        }
    }
}

/// The bytes of a one-request control connection: the client's hello, then `request`.
pub(super) fn hello_then(request: ClientMessage) -> Vec<u8> {
    let mut bytes = ClientMessage::Hello {
        version: MUX_VERSION,
    }
    .encode()
    .expect("a hello always encodes");
    bytes.extend(request.encode().expect("a control request always encodes"));
    bytes
}

/// The job's deadline and cancellation, as seen by the waits of a session's start and of an
/// alive check.
pub(super) struct Bound<'a> {
    pub(super) job: &'a dyn Job,
}

impl Bound<'_> {
    /// Cancellation first, then the deadline (as `ensure_running` checks them).
    pub(super) fn check(&self) -> Result<(), Fail> {
        if self.job.is_cancelled() {
            return Err(Fail::Cancelled);
        }
        if self.job.deadline().is_some_and(|d| d.expired()) {
            return Err(Fail::Timeout);
        }
        Ok(())
    }

    /// Waits until `fd` is ready for `flags`, the deadline passes or the job is cancelled
    /// (its wake descriptor is polled too): `Ok(true)` when `fd` is ready, `Ok(false)` to look
    /// again, then [`Self::check`] whatever poll returned.
    pub(super) fn wait_for(&self, fd: BorrowedFd<'_>, flags: PollFlags) -> Result<bool, Fail> {
        let wake = self.job.cancel_token().wake_fd();
        let mut fds = vec![PollFd::from_borrowed_fd(fd, flags)];
        if let Some(w) = wake {
            fds.push(PollFd::from_borrowed_fd(w, PollFlags::IN));
        }
        poll_until(
            &mut fds,
            self.job.deadline().map(|d| d.at()),
            wake.is_none().then_some(CANCEL_TICK),
        )
        .map_err(|e| Fail::Local("poll", e))?;
        let ready = !fds[0].revents().is_empty();
        self.check()?;
        Ok(ready)
    }

    pub(super) fn sleep(&self, d: Duration) -> Result<(), Fail> {
        let until = std::time::Instant::now() + d;
        let mut none: [PollFd<'_>; 0] = [];
        let until = self.job.deadline().map_or(until, |dl| dl.at().min(until));
        let _ = poll_until(&mut none, Some(until), None);
        self.check()
    }
}

/// What one non-blocking read of the control connection found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Filled {
    Data,
    Nothing,
    Eof,
}

/// The control connection and the bytes read from it that do not form a whole frame yet.
pub(super) struct Control {
    /// Shared with the job's child registry, which shuts it down on cancel.
    pub(super) fd: Arc<OwnedFd>,
    pub(super) inbuf: Vec<u8>,
    pub(super) hello_seen: bool,
}

impl Control {
    /// Connects to `socket` without blocking: a Unix-stream connect completes at once, is
    /// refused, or (Linux, listen backlog full) fails with `EAGAIN`, which is retried with a
    /// short back-off within the deadline.
    pub(super) fn connect(socket: &Path, bound: &Bound<'_>) -> Result<Control, Fail> {
        let addr = SocketAddrUnix::new(socket).map_err(|e| Fail::Connect(e.into()))?;
        let mut backoff = Duration::from_micros(100);
        loop {
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                None,
            )
            .map_err(|e| Fail::Local("creating a Unix socket", e.into()))?;
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => {}
                Err(Errno::AGAIN) => {
                    bound.sleep(backoff)?;
                    backoff = (backoff * 2).min(Duration::from_millis(10));
                    continue;
                }
                Err(Errno::INPROGRESS) | Err(Errno::INTR) => {
                    // Not seen with Unix sockets on Linux, but allowed by POSIX: wait until
                    // writable, then read the outcome.
                    while !bound.wait_for(fd.as_fd(), PollFlags::OUT)? {}
                    match rustix::net::sockopt::socket_error(&fd) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) | Err(e) => return Err(Fail::Connect(e.into())),
                    }
                }
                Err(e) => return Err(Fail::Connect(e.into())),
            }
            return Ok(Control {
                fd: Arc::new(fd),
                inbuf: Vec::new(),
                hello_seen: false,
            });
        }
    }

    pub(super) fn wait_writable(&self, bound: &Bound<'_>) -> Result<(), Fail> {
        bound.wait_for(self.fd.as_fd(), PollFlags::OUT).map(|_| ())
    }

    /// Writes all of `bytes` (`MSG_NOSIGNAL`: a vanished master is an error, not a SIGPIPE).
    pub(super) fn send_all(&self, mut bytes: &[u8], bound: &Bound<'_>) -> Result<(), Fail> {
        while !bytes.is_empty() {
            match rustix::net::send(&*self.fd, bytes, SendFlags::NOSIGNAL) {
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::AGAIN) => self.wait_writable(bound)?,
                Err(Errno::INTR) => {}
                Err(e) => return Err(send_failure("sending to the ssh master", e)),
            }
        }
        Ok(())
    }

    /// Passes one descriptor the way OpenSSH's `mm_send_fd` does: one `sendmsg` carrying a
    /// single data byte and one `SCM_RIGHTS` descriptor. The master duplicates it on receipt,
    /// so the caller may close its copy right after.
    pub(super) fn send_fd(&self, fd: BorrowedFd<'_>, bound: &Bound<'_>) -> Result<(), Fail> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let fds = [fd];
        loop {
            let mut control = SendAncillaryBuffer::new(&mut space);
            if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
                return Err(Fail::Local(
                    "preparing SCM_RIGHTS",
                    io::Error::other("control buffer too small"),
                ));
            }
            let data = [0u8];
            match rustix::net::sendmsg(
                &*self.fd,
                &[IoSlice::new(&data)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::AGAIN) => self.wait_writable(bound)?,
                Err(Errno::INTR) => {}
                Err(e) => {
                    return Err(send_failure(
                        "passing a file descriptor to the ssh master",
                        e,
                    ));
                }
            }
        }
    }

    /// One non-blocking read.
    pub(super) fn fill(&mut self) -> Result<Filled, Fail> {
        let mut chunk = [0u8; CONTROL_CHUNK];
        match rustix::io::read(&*self.fd, &mut chunk[..]) {
            Ok(0) => Ok(Filled::Eof),
            Ok(n) => {
                self.inbuf.extend_from_slice(&chunk[..n]);
                Ok(Filled::Data)
            }
            Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(Filled::Nothing),
            Err(Errno::CONNRESET) => Err(Fail::Reset(format!(
                "reading from the ssh master: {}",
                Errno::CONNRESET
            ))),
            Err(e) => Err(Fail::Closed(format!("reading from the ssh master: {e}"))),
        }
    }

    /// Waits (within `bound`) for the master's answer to request `request_id`: the message,
    /// or [`Fail::Refused`] for `MUX_S_FAILURE` / `MUX_S_PERMISSION_DENIED`, or [`Fail::Closed`]
    /// (`when`, e.g. "before the session opened") when the master hangs up first.
    pub(super) fn reply(
        &mut self,
        request_id: u32,
        bound: &Bound<'_>,
        when: &str,
    ) -> Result<ServerMessage, Fail> {
        loop {
            if !bound.wait_for(self.fd.as_fd(), PollFlags::IN)? {
                continue;
            }
            let filled = self.fill()?;
            if let Some(msg) = self.next_message()? {
                expect_reply(&msg, request_id)?;
                return match msg {
                    ServerMessage::Failure { reason, .. }
                    | ServerMessage::PermissionDenied { reason, .. } => Err(Fail::Refused(reason)),
                    other => Ok(other),
                };
            }
            if filled == Filled::Eof {
                return Err(Fail::Closed(format!(
                    "the master closed the control connection {when}"
                )));
            }
        }
    }

    /// The next complete message after the master's hello, which is checked and consumed
    /// here. `split_frame` refuses a length over `MAX_PACKET` before it is buffered, so
    /// `inbuf` stays bounded whatever the master sends.
    pub(super) fn next_message(&mut self) -> Result<Option<ServerMessage>, Fail> {
        loop {
            let Some((body, used)) = split_frame(&self.inbuf)? else {
                return Ok(None);
            };
            let msg = ServerMessage::decode(body)?;
            self.inbuf.drain(..used);
            if self.hello_seen {
                return Ok(Some(msg));
            }
            match msg {
                ServerMessage::Hello { version, .. } if version == MUX_VERSION => {
                    self.hello_seen = true;
                }
                ServerMessage::Hello { version, .. } => {
                    return Err(Fail::Protocol(format!(
                        "the ssh master speaks mux protocol version {version}; this client \
                         speaks {MUX_VERSION}"
                    )));
                }
                other => {
                    return Err(Fail::Protocol(format!(
                        "expected the master's hello, got {other:?}"
                    )));
                }
            }
        }
    }
}

/// A failed send: the master hung up (a transport failure; nothing started, since the master
/// acts only on a whole request with all three descriptors), or a local problem such as one of
/// our own stdio descriptors being closed (`EBADF`).
pub(super) fn send_failure(what: &'static str, e: Errno) -> Fail {
    match e {
        Errno::CONNRESET => Fail::Reset(format!("{what}: {e}")),
        Errno::PIPE | Errno::NOTCONN => Fail::Closed(format!("{what}: {e}")),
        _ => Fail::Local(what, e.into()),
    }
}

/// Fails unless `msg` answers request `request_id` (the master echoes the id of the request it
/// answers; anything else is an out-of-sequence reply).
pub(super) fn expect_reply(msg: &ServerMessage, request_id: u32) -> Result<(), Fail> {
    if msg.answers(request_id) {
        Ok(())
    } else {
        Err(Fail::Protocol(format!(
            "out-of-sequence reply from the ssh master: expected request {request_id}, got \
             {msg:?}"
        )))
    }
}
