//! The passenger client: one command per control connection, driven by one `poll(2)` loop.
//!
//! A session goes: connect to the ControlPath (non-blocking, bounded by the job's deadline);
//! send `MUX_MSG_HELLO` and `MUX_C_NEW_SESSION` in one write and then the three stdio
//! descriptors, one `SCM_RIGHTS` message each (pipelined: the master reads exactly one frame
//! before it receives the descriptors, so there is no need to wait for its hello first, which
//! saves a round trip); close our copies of the master's ends; then poll the control socket and
//! our pipe ends until the master has sent `MUX_S_EXIT_MESSAGE` and closed the control connection,
//! and our pipes are at end of file.
//!
//! Waiting for the control connection to close, not just for the exit message, matters twice:
//! the master closes it only once the session channel is completely closed, so stdout and stderr
//! have been flushed to our pipes (OpenSSH's own client waits the same way: "if this one closes
//! early, the multiplex master will terminate early too (possibly losing data)"); and sshd frees
//! the session slot only once that close exchange is done, so a caller that opens its next
//! session right after we return is far less likely to overshoot `MaxSessions`.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use conn_core::transport::{
    ChildFd, ChildHandle, CommandName, Registration, Seen, Session, StdioOptions, StdioPlan,
    poll_until,
};
use conn_core::{
    Cmd, Error, ExitStatus, Job, RemoteChild, Result, SimpleJob, Started, join_quoted,
};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use super::codec::{
    ClientMessage, CodecError, MAX_PACKET, MUX_VERSION, NewSession, ServerMessage, split_frame,
};

/// Longest single wait when the job's cancellation has no descriptor to poll (the system
/// refused an eventfd): cancellation is then noticed on this tick.
const CANCEL_TICK: Duration = Duration::from_millis(50);

/// Bytes read from the control socket per `read(2)`: its messages are a few dozen bytes.
const CONTROL_CHUNK: usize = 4 * 1024;

/// Request ids only need to be unique per control connection; a process-wide counter makes
/// them distinct in the master's debug log too.
static NEXT_REQUEST_ID: AtomicU32 = AtomicU32::new(1);

fn next_request_id() -> u32 {
    NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed)
}

/// Why a native session (or an alive check) stopped without a result. Each caller maps these
/// onto [`Error`] with its own context.
#[derive(Debug)]
enum Fail {
    /// The job's deadline passed.
    Timeout,
    /// The job was cancelled.
    Cancelled,
    /// Connecting to the control socket failed: nothing was sent, nothing started.
    Connect(io::Error),
    /// The control connection broke or was closed by the master before the exit message.
    Closed(String),
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

/// The job's deadline and cancellation, as seen by the waits of a session's start and of an
/// alive check.
struct Bound<'a> {
    job: &'a dyn Job,
}

impl Bound<'_> {
    /// Cancellation first, then the deadline (as `run_process` checks them).
    fn check(&self) -> Result<(), Fail> {
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
    fn wait_for(&self, fd: BorrowedFd<'_>, flags: PollFlags) -> Result<bool, Fail> {
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

    fn sleep(&self, d: Duration) -> Result<(), Fail> {
        let until = std::time::Instant::now() + d;
        let mut none: [PollFd<'_>; 0] = [];
        let until = self.job.deadline().map_or(until, |dl| dl.at().min(until));
        let _ = poll_until(&mut none, Some(until), None);
        self.check()
    }
}

/// What one non-blocking read of the control connection found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filled {
    Data,
    Nothing,
    Eof,
}

/// The control connection and the bytes read from it that do not form a whole frame yet.
struct Control {
    /// Shared with the job's child registry, which shuts it down on cancel.
    fd: Arc<OwnedFd>,
    inbuf: Vec<u8>,
    hello_seen: bool,
}

impl Control {
    /// Connects to `socket` without blocking: a Unix-stream connect completes at once, is
    /// refused, or (Linux, listen backlog full) fails with `EAGAIN`, which is retried with a
    /// short back-off within the deadline.
    fn connect(socket: &Path, bound: &Bound<'_>) -> Result<Control, Fail> {
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

    fn wait_writable(&self, bound: &Bound<'_>) -> Result<(), Fail> {
        bound.wait_for(self.fd.as_fd(), PollFlags::OUT).map(|_| ())
    }

    /// Writes all of `bytes` (`MSG_NOSIGNAL`: a vanished master is an error, not a SIGPIPE).
    fn send_all(&self, mut bytes: &[u8], bound: &Bound<'_>) -> Result<(), Fail> {
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
    fn send_fd(&self, fd: BorrowedFd<'_>, bound: &Bound<'_>) -> Result<(), Fail> {
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
    fn fill(&mut self) -> Result<Filled, Fail> {
        let mut chunk = [0u8; CONTROL_CHUNK];
        match rustix::io::read(&*self.fd, &mut chunk[..]) {
            Ok(0) => Ok(Filled::Eof),
            Ok(n) => {
                self.inbuf.extend_from_slice(&chunk[..n]);
                Ok(Filled::Data)
            }
            Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(Filled::Nothing),
            Err(e) => Err(Fail::Closed(format!("reading from the ssh master: {e}"))),
        }
    }

    /// The next complete message after the master's hello, which is checked and consumed
    /// here. `split_frame` refuses a length over `MAX_PACKET` before it is buffered, so
    /// `inbuf` stays bounded whatever the master sends.
    fn next_message(&mut self) -> Result<Option<ServerMessage>, Fail> {
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
fn send_failure(what: &'static str, e: Errno) -> Fail {
    match e {
        Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN => Fail::Closed(format!("{what}: {e}")),
        _ => Fail::Local(what, e.into()),
    }
}

/// Fails unless `msg` answers request `request_id` (the master echoes the id of the request it
/// answers; anything else is an out-of-sequence reply).
fn expect_reply(msg: &ServerMessage, request_id: u32) -> Result<(), Fail> {
    if msg.answers(request_id) {
        Ok(())
    } else {
        Err(Fail::Protocol(format!(
            "out-of-sequence reply from the ssh master: expected request {request_id}, got \
             {msg:?}"
        )))
    }
}

/// Starts `cmd` on `endpoint` over the ControlMaster listening on `socket`, in this process: no
/// `ssh` client is spawned, and the command's descriptors go to the master with `SCM_RIGHTS`,
/// so its streamed bytes never pass through this process (except where conn relays an
/// inherited stream, or the caller reads a pipe).
///
/// Returns once the master has confirmed the session (one round trip), so that everything
/// that keeps the command from starting is an error here, which the pool may retry:
/// [`Error::Connect`] when nothing listens on `socket`; [`Error::SessionRefused`] when sshd
/// refused the session channel ("Session open refused by peer", e.g. `MaxSessions`);
/// [`Error::Transport`] with [`Started::No`] when the master refused for another reason or
/// hung up before confirming. [`Error::Timeout`] / [`Error::Cancelled`] when the job ends
/// first (the control connection is closed), [`Error::Io`] for a protocol violation or a local
/// failure. After that the [`RemoteChild`] reports the end: the exit status the master
/// forwards (255 included: it is the remote command's own), or [`Error::Transport`] with
/// [`Started::Unknown`] when the master died first.
pub(crate) fn spawn(
    socket: &Path,
    endpoint: &str,
    cmd: &Cmd,
    job: &dyn Job,
) -> Result<RemoteChild> {
    cmd.validate()?;
    let line = join_quoted(cmd.argv())?;
    let name = CommandName {
        endpoint: endpoint.to_string(),
        line: line.to_string_lossy().into_owned(),
    };
    if cmd.is_dry_run() {
        return Ok(RemoteChild::dry_run(cmd, name));
    }
    conn_core::ensure_running(job, || name.to_string())?;
    let bound = Bound { job };
    tracing::debug!(endpoint, socket = %socket.display(), "Executing: {}", name.line);

    let request_id = next_request_id();
    let mut request = ClientMessage::Hello {
        version: MUX_VERSION,
    }
    .encode()
    .expect("a hello always encodes");
    let line_len = line.len();
    match ClientMessage::NewSession(NewSession::command(request_id, line.into_vec())).encode() {
        Ok(frame) => request.extend_from_slice(&frame),
        Err(e) => {
            return Err(Error::Io {
                context: format!(
                    "remote command of {line_len} bytes does not fit the ssh mux protocol (at \
                     most {MAX_PACKET} bytes per message): {}",
                    conn_core::text::head(&name.to_string(), 200)
                ),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            });
        }
    }
    let mut plan = StdioPlan::new(
        cmd,
        StdioOptions {
            relay_inherit: true,
            watch_stderr: None,
        },
    )?;
    let fds = plan.take_child_fds();
    let opened = open_session(socket, &request, request_id, fds, &bound);
    let (control, session_id) = opened.map_err(|fail| fail_error(fail, socket, &name, job))?;
    let Some(registration) = job
        .cancel_token()
        .register(ChildHandle::Socket(Arc::clone(&control.fd)))
    else {
        return Err(Error::Cancelled {
            command: name.to_string(),
        });
    };
    let session = NativeSession {
        control,
        socket: socket.to_path_buf(),
        name: name.clone(),
        session_id,
        exit_value: None,
        closed: false,
        no_status: false,
        _registration: registration,
    };
    Ok(RemoteChild::new(Box::new(session), plan, cmd, job, name))
}

/// Maps why a session could not open onto [`Error`].
fn fail_error(fail: Fail, socket: &Path, name: &CommandName, job: &dyn Job) -> Error {
    match fail {
        Fail::Timeout => Error::Timeout {
            command: name.to_string(),
            timeout: job.deadline().map(|d| d.duration()).unwrap_or_default(),
        },
        Fail::Cancelled => Error::Cancelled {
            command: name.to_string(),
        },
        Fail::Connect(e) => Error::Connect {
            endpoint: name.endpoint.clone(),
            message: format!(
                "no ssh master answers on control socket {}: {e}",
                socket.display()
            ),
        },
        Fail::Refused(reason) if is_session_refusal(&reason) => Error::SessionRefused {
            endpoint: name.endpoint.clone(),
            message: reason,
        },
        // The master acts only on a whole request with all three descriptors, and answered
        // no or hung up before confirming: the command did not start.
        Fail::Refused(why) | Fail::Closed(why) => Error::Transport {
            endpoint: name.endpoint.clone(),
            command: name.line.clone(),
            started: Started::No,
            stdout: Vec::new(),
            stderr: format!("ssh mux master {}: {why}", socket.display()).into_bytes(),
        },
        Fail::Protocol(why) => Error::Io {
            context: format!(
                "ssh mux protocol error on {} running {name}",
                socket.display()
            ),
            source: io::Error::new(io::ErrorKind::InvalidData, why),
        },
        Fail::Local(what, source) => Error::Io {
            context: format!("{what} for {name}"),
            source,
        },
    }
}

/// sshd refused the channel (its `MaxSessions`, or a policy): the command never started, so
/// the caller may retry. The texts are the master's (`mux_session_confirm`) and sshd's.
fn is_session_refusal(reason: &str) -> bool {
    reason.contains("refused by peer") || reason.contains("prohibited")
}

/// Connects, sends the request and the three descriptors, and waits for the master's answer:
/// the session id once the session is open.
fn open_session(
    socket: &Path,
    request: &[u8],
    request_id: u32,
    fds: [ChildFd; 3],
    bound: &Bound<'_>,
) -> Result<(Control, u32), Fail> {
    let mut control = Control::connect(socket, bound)?;
    {
        let devnull = if fds.iter().any(|e| matches!(e, ChildFd::Null)) {
            Some(
                rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| Fail::Local("opening /dev/null", e.into()))?,
            )
        } else {
            None
        };
        // Handles on our own stdio, borrowed only while the descriptors are sent.
        let (own_in, own_out, own_err) = (io::stdin(), io::stdout(), io::stderr());
        let own: [BorrowedFd<'_>; 3] = [own_in.as_fd(), own_out.as_fd(), own_err.as_fd()];
        control.send_all(request, bound)?;
        for (end, own) in fds.iter().zip(own) {
            let fd = match end {
                ChildFd::Null => devnull.as_ref().expect("opened above").as_fd(),
                ChildFd::Inherit => own,
                ChildFd::Fd(fd) => fd.as_fd(),
            };
            control.send_fd(fd, bound)?;
        }
    }
    // The master holds its own duplicates now. Dropping ours is what lets our read ends see
    // end of file once the master closes its copies.
    drop(fds);
    loop {
        if !bound.wait_for(control.fd.as_fd(), PollFlags::IN)? {
            continue;
        }
        let filled = control.fill()?;
        if let Some(msg) = control.next_message()? {
            expect_reply(&msg, request_id)?;
            return match msg {
                ServerMessage::SessionOpened { session_id, .. } => Ok((control, session_id)),
                ServerMessage::Failure { reason, .. }
                | ServerMessage::PermissionDenied { reason, .. } => Err(Fail::Refused(reason)),
                other => Err(Fail::Protocol(format!(
                    "unexpected reply to a session request: {other:?}"
                ))),
            };
        }
        if filled == Filled::Eof {
            return Err(Fail::Closed(
                "closed the control connection before the session opened".to_string(),
            ));
        }
    }
}

/// An open session on the master, as [`RemoteChild`] drives it: its end is the exit message
/// followed by the master closing the control connection.
///
/// Waiting for the close, not just for the exit message, matters twice: the master closes it
/// only once the session channel is completely closed, so stdout and stderr have been flushed to
/// the command's descriptors; and sshd frees the session slot only once that close exchange is
/// done, so a caller that opens its next session right after is far less likely to overshoot
/// `MaxSessions`.
struct NativeSession {
    control: Control,
    socket: std::path::PathBuf,
    name: CommandName,
    session_id: u32,
    exit_value: Option<u32>,
    closed: bool,
    /// The session closed without an exit status while the master still answers: a signal
    /// killed the remote command (masters forward only `exit-status`).
    no_status: bool,
    /// In the job's registry while open: a cancel shuts the control connection down.
    _registration: Registration,
}

impl NativeSession {
    /// Reads what the master has sent, without blocking.
    fn read_control(&mut self) -> Result<(), Fail> {
        while !self.closed {
            let filled = self.control.fill()?;
            while let Some(msg) = self.control.next_message()? {
                match msg {
                    ServerMessage::ExitMessage {
                        session_id,
                        exit_value,
                    } if session_id == self.session_id && self.exit_value.is_none() => {
                        self.exit_value = Some(exit_value);
                    }
                    // We never ask for a tty; nothing to restore.
                    ServerMessage::TtyAllocFail { session_id } if session_id == self.session_id => {
                    }
                    other => {
                        return Err(Fail::Protocol(format!(
                            "unexpected message from the ssh master (session {}, exit {:?}): \
                             {other:?}",
                            self.session_id, self.exit_value
                        )));
                    }
                }
            }
            match filled {
                Filled::Eof => self.closed = true,
                Filled::Nothing => break, // nothing more right now
                Filled::Data => {}
            }
        }
        Ok(())
    }
}

impl Session for NativeSession {
    fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        (!self.closed).then(|| self.control.fd.as_fd())
    }

    fn try_finish(&mut self) -> Result<Option<ExitStatus>> {
        let name = self.name.clone();
        let socket = self.socket.clone();
        self.read_control().map_err(|fail| {
            let err = fail_error(fail, &socket, &name, &SimpleJob::new());
            match err {
                // After the session opened, a failure of the master means the command may
                // have run.
                Error::Transport {
                    endpoint,
                    command,
                    stdout,
                    stderr,
                    ..
                } => Error::Transport {
                    endpoint,
                    command,
                    started: Started::Unknown,
                    stdout,
                    stderr,
                },
                other => other,
            }
        })?;
        if !self.closed {
            return Ok(None);
        }
        if let Some(value) = self.exit_value {
            // The master sends the u32 of sshd's exit-status; real values are 0..=255.
            return Ok(Some(ExitStatus::Code(value as i32)));
        }
        // Masters forward only exit-status, never exit-signal: a session that closed without
        // a status while the master still answers ran a command that a signal killed. Report
        // 255 as ssh does; it is no transport failure, so nobody retries a command that ran.
        if alive_check(&self.socket, SIGNAL_PROBE_TIMEOUT).is_ok() {
            tracing::debug!(
                socket = %self.socket.display(),
                "session ended without an exit status; the master is alive: the remote \
                 command was killed by a signal"
            );
            self.no_status = true;
            return Ok(Some(ExitStatus::Code(255)));
        }
        Err(Error::Transport {
            endpoint: self.name.endpoint.clone(),
            command: self.name.line.clone(),
            started: Started::Unknown,
            stdout: Vec::new(),
            stderr: format!(
                "ssh mux master {}: closed the session without an exit status, and the master \
                 no longer answers (it or its connection died)",
                self.socket.display()
            )
            .into_bytes(),
        })
    }

    fn kill(&mut self) {
        // The master then marks the session's channel failed and closes its descriptors.
        let _ = rustix::net::shutdown(&*self.control.fd, rustix::net::Shutdown::Both);
        self.closed = true;
    }

    fn classify(&mut self, status: ExitStatus, seen: &Seen<'_>) -> Result<(ExitStatus, Started)> {
        // The master reports a refused exec request on the session's stderr: then the command
        // never ran (seen only when stderr was captured).
        if self.no_status
            && seen.stderr.is_some_and(|e| {
                String::from_utf8_lossy(e).contains("exec request failed on channel")
            })
        {
            return Err(Error::Transport {
                endpoint: self.name.endpoint.clone(),
                command: self.name.line.clone(),
                started: Started::No,
                stdout: Vec::new(),
                stderr: seen.stderr.unwrap_or_default().to_vec(),
            });
        }
        Ok((status, Started::Yes))
    }
}

/// How long to ask a master that closed a session without an exit status whether it lives.
const SIGNAL_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks the master behind `socket` for its pid (`MUX_C_ALIVE_CHECK`), within `timeout`: a
/// protocol-level liveness check that costs one round trip in this process, against a process
/// spawn for `ssh -O check`.
///
/// Errors: [`Error::Timeout`] when the master does not answer in time; [`Error::Connect`] when
/// nothing listens, the master hangs up or refuses; [`Error::Io`] for a protocol violation.
pub(crate) fn alive_check(socket: &Path, timeout: Duration) -> Result<u32> {
    let job = SimpleJob::with_timeout(timeout);
    let bound = Bound { job: &job };
    let request_id = next_request_id();
    let mut request = ClientMessage::Hello {
        version: MUX_VERSION,
    }
    .encode()
    .expect("a hello always encodes");
    request.extend(
        ClientMessage::AliveCheck { request_id }
            .encode()
            .expect("an alive check always encodes"),
    );
    let what = format!("mux alive check of ssh master {}", socket.display());
    let connect_error = |message: String| Error::Connect {
        endpoint: socket.display().to_string(),
        message,
    };
    match alive(socket, &request, request_id, &bound) {
        Ok(pid) => Ok(pid),
        Err(Fail::Timeout) | Err(Fail::Cancelled) => Err(Error::Timeout {
            command: what,
            timeout,
        }),
        Err(Fail::Connect(e)) => Err(connect_error(format!("no ssh master listens: {e}"))),
        Err(Fail::Closed(why)) => Err(connect_error(why)),
        Err(Fail::Refused(why)) => Err(connect_error(format!("the master refused: {why}"))),
        Err(Fail::Protocol(why)) => Err(Error::Io {
            context: what,
            source: io::Error::new(io::ErrorKind::InvalidData, why),
        }),
        Err(Fail::Local(step, source)) => Err(Error::Io {
            context: format!("{step} for {what}"),
            source,
        }),
    }
}

fn alive(socket: &Path, request: &[u8], request_id: u32, bound: &Bound<'_>) -> Result<u32, Fail> {
    let mut control = Control::connect(socket, bound)?;
    control.send_all(request, bound)?;
    loop {
        if !bound.wait_for(control.fd.as_fd(), PollFlags::IN)? {
            continue;
        }
        let filled = control.fill()?;
        if let Some(msg) = control.next_message()? {
            expect_reply(&msg, request_id)?;
            return match msg {
                ServerMessage::Alive { pid, .. } => Ok(pid),
                ServerMessage::Failure { reason, .. }
                | ServerMessage::PermissionDenied { reason, .. } => Err(Fail::Refused(reason)),
                other => Err(Fail::Protocol(format!(
                    "unexpected reply to an alive check: {other:?}"
                ))),
            };
        }
        if filled == Filled::Eof {
            return Err(Fail::Closed(
                "the master closed the control connection without answering".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The client against a fake master on a Unix socket: the protocol paths sshd cannot be
    //! made to take on demand (malformed replies, refusals, a vanished master).

    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::thread::JoinHandle;
    use std::time::Instant;

    use conn_core::{Deadline, Output, Stdin};
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

    use crate::native_mux::codec::{self, MAX_PACKET};

    struct Fake {
        _dir: tempfile::TempDir,
        socket: PathBuf,
        thread: Option<JoinHandle<()>>,
    }

    impl Fake {
        /// A listener whose first connection is handed to `script` on a thread.
        fn start(script: impl FnOnce(UnixStream) + Send + 'static) -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let socket = dir.path().join("ctl");
            let listener = UnixListener::bind(&socket).unwrap();
            let thread = std::thread::spawn(move || {
                let (stream, _) = listener.accept().unwrap();
                script(stream);
            });
            Fake {
                _dir: dir,
                socket,
                thread: Some(thread),
            }
        }

        fn join(mut self) {
            self.thread.take().unwrap().join().unwrap();
        }
    }

    fn read_frame(s: &mut UnixStream) -> Option<ClientMessage> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).ok()?;
        Some(ClientMessage::decode(&body).unwrap())
    }

    fn recv_fd(s: &UnixStream) -> OwnedFd {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        rustix::net::recvmsg(
            s,
            &mut [io::IoSliceMut::new(&mut byte)],
            &mut control,
            RecvFlags::empty(),
        )
        .unwrap();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
                return fds.next().unwrap();
            }
        }
        panic!("no descriptor received");
    }

    fn send(s: &mut UnixStream, msg: ServerMessage) {
        s.write_all(&msg.encode().unwrap()).unwrap();
    }

    fn hello() -> ServerMessage {
        ServerMessage::Hello {
            version: MUX_VERSION,
            extensions: vec![],
        }
    }

    /// Reads the client's hello and session request and its three descriptors.
    fn accept_session(s: &mut UnixStream) -> (NewSession, [OwnedFd; 3]) {
        assert_eq!(
            read_frame(s),
            Some(ClientMessage::Hello {
                version: MUX_VERSION
            })
        );
        let Some(ClientMessage::NewSession(req)) = read_frame(s) else {
            panic!("expected a session request");
        };
        let fds = [recv_fd(s), recv_fd(s), recv_fd(s)];
        (req, fds)
    }

    fn job() -> SimpleJob {
        SimpleJob::with_timeout(Duration::from_secs(10))
    }

    /// A whole command, as the pool runs it: spawn, then wait for the output (unchecked, so
    /// that a status comes back as it is).
    fn run_session(socket: &Path, endpoint: &str, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
        spawn(socket, endpoint, &cmd.clone().check(false), job)?.wait_with_output()
    }

    #[test]
    fn happy_path_collects_output_feeds_stdin_and_keeps_255_an_exit_status() {
        let input: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let expected = input.clone();
        let fake = Fake::start(move |mut s| {
            send(&mut s, hello());
            let (req, [stdin, stdout, stderr]) = accept_session(&mut s);
            assert_eq!(req.command, b"printf '%s' 'a b'");
            assert!(!req.want_tty && req.escape_char == codec::NO_ESCAPE_CHAR);
            send(
                &mut s,
                ServerMessage::SessionOpened {
                    request_id: req.request_id,
                    session_id: 7,
                },
            );
            let mut got = Vec::new();
            std::fs::File::from(stdin).read_to_end(&mut got).unwrap();
            assert_eq!(got, expected);
            std::fs::File::from(stdout).write_all(b"out").unwrap();
            std::fs::File::from(stderr).write_all(b"err").unwrap();
            send(&mut s, ServerMessage::TtyAllocFail { session_id: 7 });
            send(
                &mut s,
                ServerMessage::ExitMessage {
                    session_id: 7,
                    exit_value: 255,
                },
            );
        });
        let cmd = Cmd::new(["printf", "%s", "a b"]).stdin(Stdin::Bytes(input));
        let out = run_session(&fake.socket, "u@h", &cmd, &job()).unwrap();
        assert_eq!(out.status, ExitStatus::Code(255));
        assert_eq!(out.stdout, b"out");
        assert_eq!(out.stderr, b"err");
        fake.join();
    }

    #[test]
    fn refusal_by_peer_is_retryable_session_refused() {
        let fake = Fake::start(|mut s| {
            send(&mut s, hello());
            let (req, _fds) = accept_session(&mut s);
            send(
                &mut s,
                ServerMessage::Failure {
                    request_id: req.request_id,
                    reason: "Session open refused by peer".into(),
                },
            );
        });
        let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
        assert!(matches!(err, Error::SessionRefused { .. }), "{err:?}");
        assert!(err.is_retryable());
        assert!(
            err.to_string().contains("Session open refused by peer"),
            "{err}"
        );
        fake.join();
    }

    #[test]
    fn other_failures_are_transport_errors() {
        let fake = Fake::start(|mut s| {
            send(&mut s, hello());
            let (req, _fds) = accept_session(&mut s);
            send(
                &mut s,
                ServerMessage::PermissionDenied {
                    request_id: req.request_id,
                    reason: "Permission denied".into(),
                },
            );
        });
        let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
        assert!(matches!(err, Error::Transport { .. }), "{err:?}");
        assert!(err.to_string().contains("Permission denied"), "{err}");
        fake.join();
    }

    #[test]
    fn master_gone_before_exit_status_is_a_transport_error_with_stderr() {
        let fake = Fake::start(|mut s| {
            send(&mut s, hello());
            let (req, [_i, _o, stderr]) = accept_session(&mut s);
            send(
                &mut s,
                ServerMessage::SessionOpened {
                    request_id: req.request_id,
                    session_id: 1,
                },
            );
            std::fs::File::from(stderr).write_all(b"partial\n").unwrap();
            // Dropping the stream and the descriptors: the master died.
        });
        let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
        fake.join();
        match &err {
            Error::Transport {
                endpoint,
                command,
                started,
                stderr,
                ..
            } => {
                assert_eq!(endpoint, "u@h");
                assert_eq!(command, "true");
                assert_eq!(*started, Started::Unknown);
                let text = String::from_utf8_lossy(stderr);
                assert!(text.contains("partial"), "{text}");
                assert!(text.contains("without an exit status"), "{text}");
            }
            other => panic!("expected Transport, got {other:?}"),
        }
        assert!(
            !err.is_retryable(),
            "the session had opened: the command may have run"
        );
    }

    fn protocol_error_for(reply: impl FnOnce(&mut UnixStream, u32) + Send + 'static) -> Error {
        let fake = Fake::start(move |mut s| {
            send(&mut s, hello());
            let (req, _fds) = accept_session(&mut s);
            reply(&mut s, req.request_id);
            // Keep the connection open until the client gives up on it.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
        fake.join();
        err
    }

    #[test]
    fn protocol_violations_are_io_errors_not_panics() {
        let out_of_sequence = protocol_error_for(|s, rid| {
            send(
                s,
                ServerMessage::SessionOpened {
                    request_id: rid.wrapping_add(1),
                    session_id: 1,
                },
            )
        });
        assert!(
            out_of_sequence.to_string().contains("out-of-sequence"),
            "{out_of_sequence}"
        );
        let oversized = protocol_error_for(|s, _| {
            s.write_all(&(MAX_PACKET as u32 + 1).to_be_bytes()).unwrap();
        });
        assert!(oversized.to_string().contains("exceeds"), "{oversized}");
        let wrong_session = protocol_error_for(|s, rid| {
            send(
                s,
                ServerMessage::SessionOpened {
                    request_id: rid,
                    session_id: 1,
                },
            );
            send(
                s,
                ServerMessage::ExitMessage {
                    session_id: 2,
                    exit_value: 0,
                },
            );
        });
        assert!(
            wrong_session.to_string().contains("unexpected"),
            "{wrong_session}"
        );
        let unknown = protocol_error_for(|s, _| {
            s.write_all(&[0, 0, 0, 8, 0x80, 0, 0, 0x7f, 0, 0, 0, 0])
                .unwrap();
        });
        assert!(
            unknown.to_string().contains("unknown mux message type"),
            "{unknown}"
        );
        for err in [out_of_sequence, oversized, wrong_session, unknown] {
            assert!(matches!(err, Error::Io { .. }), "{err:?}");
            assert!(!err.is_retryable(), "the command may have run: {err}");
        }
    }

    #[test]
    fn wrong_protocol_version_is_refused() {
        let fake = Fake::start(|mut s| {
            send(
                &mut s,
                ServerMessage::Hello {
                    version: 3,
                    extensions: vec![],
                },
            );
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let err = run_session(&fake.socket, "u@h", &Cmd::new(["true"]), &job()).unwrap_err();
        assert!(err.to_string().contains("version 3"), "{err}");
        fake.join();
    }

    #[test]
    fn deadline_closes_the_session_and_every_descriptor() {
        // Counting /proc/self/fd is unreliable while other tests run in parallel; the far ends
        // tell exactly instead: the stdin pipe reads end of file and the output pipes fail
        // with EPIPE only once every copy of our ends is closed.
        let fake = Fake::start(|mut s| {
            send(&mut s, hello());
            let (req, [stdin, stdout, stderr]) = accept_session(&mut s);
            send(
                &mut s,
                ServerMessage::SessionOpened {
                    request_id: req.request_id,
                    session_id: 1,
                },
            );
            // Never sends an exit: the client must give up at its deadline and hang up.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            let mut input = Vec::new();
            std::fs::File::from(stdin).read_to_end(&mut input).unwrap();
            assert_eq!(input, b"some input");
            // The client may close its pipe ends just after the control socket: allow it a
            // moment, then every write must fail.
            for end in [stdout, stderr] {
                let mut end = std::fs::File::from(end);
                let until = Instant::now() + Duration::from_secs(2);
                loop {
                    match end.write_all(b"x") {
                        Err(e) => break assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
                        Ok(()) if Instant::now() < until => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Ok(()) => panic!("our read end of an output pipe is still open"),
                    }
                }
            }
        });
        let job = SimpleJob::with_timeout(Duration::from_millis(300));
        let cmd = Cmd::new(["sleep", "30"]).stdin(Stdin::Bytes(b"some input".to_vec()));
        let start = Instant::now();
        let err = run_session(&fake.socket, "u@h", &cmd, &job).unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(&err, Error::Timeout { command, timeout } if command == "u@h: sleep 30"
                && timeout == &Duration::from_millis(300)),
            "{err:?}"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
        fake.join(); // returns only once the client closed the control connection
    }

    #[test]
    fn cancellation_is_noticed_within_a_tick() {
        let fake = Fake::start(|mut s| {
            send(&mut s, hello());
            let _session = accept_session(&mut s);
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        });
        let job = std::sync::Arc::new(job());
        let canceller = {
            let job = std::sync::Arc::clone(&job);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                job.cancel();
                Instant::now()
            })
        };
        let err = run_session(&fake.socket, "u@h", &Cmd::new(["sleep", "30"]), &*job).unwrap_err();
        let noticed = Instant::now().duration_since(canceller.join().unwrap());
        assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
        assert!(
            noticed < Duration::from_millis(500),
            "noticed after {noticed:?}"
        );
        fake.join();
    }

    #[test]
    fn nothing_is_connected_for_dry_runs_empty_argv_or_spent_jobs() {
        let nowhere = Path::new("/nonexistent/conn-mux-test.sock");
        let cmd = Cmd::new(["rm", "-rf", "/"]).dry_run(true);
        assert_eq!(
            run_session(nowhere, "h", &cmd, &job()).unwrap(),
            Output::dry_run()
        );
        let empty = Cmd::new(Vec::<String>::new());
        assert!(matches!(
            run_session(nowhere, "h", &empty, &job()),
            Err(Error::EmptyCommand)
        ));
        let nul = Cmd::new(["echo", "a\0b"]);
        assert!(matches!(
            run_session(nowhere, "h", &nul, &job()),
            Err(Error::Unquotable { .. })
        ));
        let spent = SimpleJob::with_deadline(Some(Deadline::after(Duration::ZERO)));
        assert!(matches!(
            run_session(nowhere, "h", &Cmd::new(["true"]), &spent),
            Err(Error::Timeout { .. })
        ));
        let cancelled = job();
        cancelled.cancel();
        assert!(matches!(
            run_session(nowhere, "h", &Cmd::new(["true"]), &cancelled),
            Err(Error::Cancelled { .. })
        ));
        let err = run_session(nowhere, "h", &Cmd::new(["true"]), &job()).unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(err.is_retryable());
        let huge = Cmd::new(["echo".to_string(), "x".repeat(MAX_PACKET)]);
        let err = run_session(nowhere, "h", &huge, &job()).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
    }

    #[test]
    fn alive_check_returns_the_pid() {
        let fake = Fake::start(|mut s| {
            send(&mut s, hello());
            assert_eq!(
                read_frame(&mut s),
                Some(ClientMessage::Hello {
                    version: MUX_VERSION
                })
            );
            let Some(ClientMessage::AliveCheck { request_id }) = read_frame(&mut s) else {
                panic!("expected an alive check");
            };
            send(
                &mut s,
                ServerMessage::Alive {
                    request_id,
                    pid: 4242,
                },
            );
        });
        assert_eq!(
            alive_check(&fake.socket, Duration::from_secs(5)).unwrap(),
            4242
        );
        fake.join();
        let err =
            alive_check(Path::new("/nonexistent/x.sock"), Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }
}
