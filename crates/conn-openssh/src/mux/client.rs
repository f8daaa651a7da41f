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
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use conn_core::{
    Cmd, Error, ExitStatus, Job, Output, Result, SimpleJob, Stdin, Stream, join_quoted,
};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};
use rustix::pipe::{PipeFlags, pipe_with};

use super::codec::{
    ClientMessage, CodecError, MAX_PACKET, MUX_VERSION, NewSession, ServerMessage, split_frame,
};

/// Longest single wait in the poll loop. A native session has no child process, so the job's
/// child registry (which `Job::cancel` uses to kill children at once) cannot reach it: the loop
/// notices cancellation by looking at `Job::is_cancelled` at least this often instead.
const CANCEL_TICK: Duration = Duration::from_millis(50);

/// Bytes read from a pipe per `read(2)`.
const PIPE_CHUNK: usize = 64 * 1024;

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

/// The job's deadline and cancellation, as seen by the poll loop.
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

    /// The next wait: what is left of the deadline, capped at [`CANCEL_TICK`].
    fn slice(&self) -> Duration {
        self.job
            .deadline()
            .map_or(CANCEL_TICK, |d| d.remaining().min(CANCEL_TICK))
    }

    /// One `poll(2)` of at most [`Self::slice`], then [`Self::check`] whatever poll returned
    /// (a master that keeps the pipes busy must not outlive the deadline).
    fn poll(&self, fds: &mut [PollFd<'_>]) -> Result<(), Fail> {
        let wait = self.slice();
        // ppoll takes nanoseconds on Linux: an early wake-up never spins on a rounded-down zero.
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: wait.subsec_nanos().into(),
        };
        match poll(fds, Some(&ts)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Fail::Local("poll", e.into())),
        }
        self.check()
    }

    fn sleep(&self, d: Duration) -> Result<(), Fail> {
        std::thread::sleep(d.min(self.slice()));
        self.check()
    }
}

/// The control connection and the bytes read from it that do not form a whole frame yet.
struct Control {
    fd: OwnedFd,
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
                    loop {
                        let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
                        bound.poll(&mut fds)?;
                        if !fds[0].revents().is_empty() {
                            break;
                        }
                    }
                    match rustix::net::sockopt::socket_error(&fd) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) | Err(e) => return Err(Fail::Connect(e.into())),
                    }
                }
                Err(e) => return Err(Fail::Connect(e.into())),
            }
            return Ok(Control {
                fd,
                inbuf: Vec::new(),
                hello_seen: false,
            });
        }
    }

    fn wait_writable(&self, bound: &Bound<'_>) -> Result<(), Fail> {
        let mut fds = [PollFd::new(&self.fd, PollFlags::OUT)];
        bound.poll(&mut fds)
    }

    /// Writes all of `bytes` (`MSG_NOSIGNAL`: a vanished master is an error, not a SIGPIPE).
    fn send_all(&self, mut bytes: &[u8], bound: &Bound<'_>) -> Result<(), Fail> {
        while !bytes.is_empty() {
            match rustix::net::send(&self.fd, bytes, SendFlags::NOSIGNAL) {
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
                &self.fd,
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

    /// One non-blocking read. `Ok(false)` at end of file.
    fn fill(&mut self) -> Result<bool, Fail> {
        let mut chunk = [0u8; CONTROL_CHUNK];
        match rustix::io::read(&self.fd, &mut chunk[..]) {
            Ok(0) => Ok(false),
            Ok(n) => {
                self.inbuf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(Errno::AGAIN) | Err(Errno::INTR) => Ok(true),
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

/// Runs `cmd` on `endpoint` over the ControlMaster listening on `socket`, in this process:
/// no `ssh` client is spawned.
///
/// From the caller's view it behaves like [`conn_core::run_process`] running `ssh -S socket
/// endpoint <quoted argv>`: empty argv, quoting, dry run ("Would execute: …", nothing
/// connected), cancellation and an expired deadline (no connection made), "Executing: …" at
/// debug level, stdin (null, bytes, inherit) and stdout/stderr (capture, inherit, null), and
/// one poll loop bounded by the job's deadline. It returns the raw [`Output`], with no check
/// applied: the caller applies [`Cmd::checked`]. Unlike the `ssh` client, an exit status of
/// 255 here is the remote command's own.
///
/// Errors: [`Error::EmptyCommand`], [`Error::Unquotable`]; [`Error::Timeout`] /
/// [`Error::Cancelled`] (the control connection and pipes are closed, which makes the master
/// close the session channel); [`Error::Connect`] when nothing listens on `socket`;
/// [`Error::SessionRefused`] when sshd refused the session channel ("Session open refused by
/// peer", e.g. `MaxSessions`; the command did not start); [`Error::Transport`] when the master
/// refused for another reason or closed the control connection before the exit status (a dead
/// master, like `ssh`'s exit 255; a remote command killed by a signal looks the same, because
/// the master forwards only `exit-status`); [`Error::Io`] for a protocol violation or a local
/// failure.
pub(crate) fn run_session(
    socket: &Path,
    endpoint: &str,
    cmd: &Cmd,
    job: &dyn Job,
) -> Result<Output> {
    cmd.ensure_not_empty()?;
    let line = join_quoted(cmd.argv())?;
    if cmd.is_dry_run() {
        tracing::info!(endpoint, "Would execute: {line}");
        return Ok(Output::dry_run());
    }
    let named = format!("{endpoint}: {line}");
    conn_core::ensure_running(job, || named.clone())?;
    let bound = Bound { job };
    tracing::debug!(endpoint, socket = %socket.display(), "Executing: {line}");

    let request_id = next_request_id();
    let mut request = ClientMessage::Hello {
        version: MUX_VERSION,
    }
    .encode()
    .expect("a hello always encodes");
    match ClientMessage::NewSession(NewSession::command(request_id, line.clone())).encode() {
        Ok(frame) => request.extend_from_slice(&frame),
        Err(e) => {
            return Err(Error::Io {
                context: format!(
                    "remote command of {} bytes does not fit the ssh mux protocol (at most \
                     {MAX_PACKET} bytes per message): {}",
                    line.len(),
                    truncated(&named, 200)
                ),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            });
        }
    }

    let mut stderr_seen = Vec::new();
    session(socket, &request, request_id, cmd, &bound, &mut stderr_seen).map_err(|fail| {
        match fail {
            Fail::Timeout => Error::Timeout {
                command: named,
                timeout: job.deadline().map(|d| d.duration()).unwrap_or_default(),
            },
            Fail::Cancelled => Error::Cancelled { command: named },
            Fail::Connect(e) => Error::Connect {
                endpoint: endpoint.to_string(),
                message: format!(
                    "no ssh master answers on control socket {}: {e}",
                    socket.display()
                ),
            },
            Fail::Refused(reason) if is_session_refusal(&reason) => Error::SessionRefused {
                endpoint: endpoint.to_string(),
                message: reason,
            },
            Fail::Refused(why) | Fail::Closed(why) => {
                // What the remote command wrote to stderr so far, then our diagnosis, as the
                // spawned client's stderr would read.
                let mut stderr = stderr_seen;
                if !stderr.is_empty() && !stderr.ends_with(b"\n") {
                    stderr.push(b'\n');
                }
                stderr.extend_from_slice(
                    format!("ssh mux master {}: {why}", socket.display()).as_bytes(),
                );
                Error::Transport {
                    endpoint: endpoint.to_string(),
                    command: line,
                    stderr,
                }
            }
            Fail::Protocol(why) => Error::Io {
                context: format!(
                    "ssh mux protocol error on {} running {named}",
                    socket.display()
                ),
                source: io::Error::new(io::ErrorKind::InvalidData, why),
            },
            Fail::Local(what, source) => Error::Io {
                context: format!("{what} for {named}"),
                source,
            },
        }
    })
}

/// sshd refused the channel (its `MaxSessions`, or a policy): the command never started, so
/// the caller may retry. The texts are the master's (`mux_session_confirm`) and sshd's.
fn is_session_refusal(reason: &str) -> bool {
    reason.contains("refused by peer") || reason.contains("prohibited")
}

fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the master gets as one of the session's stdio descriptors.
enum RemoteEnd {
    /// `/dev/null` (one shared descriptor, opened read-write).
    Null,
    /// The calling process's own descriptor (0, 1 or 2).
    Inherit,
    /// The far end of a pipe whose near end we keep.
    Pipe(OwnedFd),
}

/// A pipe for one stream: `(master's end, our end)`. Both ends are close-on-exec (no child
/// forked elsewhere in the process inherits them); ours is non-blocking for the poll loop.
fn pipe_for(for_stdin: bool) -> Result<(RemoteEnd, OwnedFd), Fail> {
    let (read, write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Fail::Local("creating a pipe", e.into()))?;
    let (remote, local) = if for_stdin {
        (read, write)
    } else {
        (write, read)
    };
    rustix::io::ioctl_fionbio(&local, true)
        .map_err(|e| Fail::Local("making a pipe non-blocking", e.into()))?;
    Ok((RemoteEnd::Pipe(remote), local))
}

fn output_end(stream: Stream) -> Result<(RemoteEnd, Option<OwnedFd>), Fail> {
    Ok(match stream {
        Stream::Capture => {
            let (remote, local) = pipe_for(false)?;
            (remote, Some(local))
        }
        Stream::Inherit => (RemoteEnd::Inherit, None),
        Stream::Null => (RemoteEnd::Null, None),
    })
}

/// The session proper, after the checks; `stderr_out` receives what was captured from stderr
/// even when the session fails (for the error message).
fn session(
    socket: &Path,
    request: &[u8],
    request_id: u32,
    cmd: &Cmd,
    bound: &Bound<'_>,
    stderr_out: &mut Vec<u8>,
) -> Result<Output, Fail> {
    let control = Control::connect(socket, bound)?;

    // The three descriptors for the master. An empty stdin needs no pipe: /dev/null gives the
    // same immediate end of file.
    let input: &[u8] = match cmd.stdin_setting() {
        Stdin::Bytes(b) => b,
        _ => &[],
    };
    let (in_remote, mut stdin_w) = match cmd.stdin_setting() {
        Stdin::Null => (RemoteEnd::Null, None),
        Stdin::Bytes(b) if b.is_empty() => (RemoteEnd::Null, None),
        Stdin::Bytes(_) => {
            let (remote, local) = pipe_for(true)?;
            (remote, Some(local))
        }
        Stdin::Inherit => (RemoteEnd::Inherit, None),
    };
    let (out_remote, mut stdout_r) = output_end(cmd.stdout_setting())?;
    let (err_remote, mut stderr_r) = output_end(cmd.stderr_setting())?;
    {
        let ends = [&in_remote, &out_remote, &err_remote];
        let devnull = if ends.iter().any(|e| matches!(e, RemoteEnd::Null)) {
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
        for (end, own) in ends.into_iter().zip(own) {
            let fd = match end {
                RemoteEnd::Null => devnull.as_ref().expect("opened above").as_fd(),
                RemoteEnd::Inherit => own,
                RemoteEnd::Pipe(fd) => fd.as_fd(),
            };
            control.send_fd(fd, bound)?;
        }
    }
    // The master holds its own duplicates now. Dropping ours is what lets our read ends see
    // end of file once the master closes its copies.
    drop((in_remote, out_remote, err_remote));

    let mut control = Some(control);
    let mut session_id: Option<u32> = None;
    let mut exit_value: Option<u32> = None;
    let mut written = 0;
    let mut out = Vec::new();
    let mut chunk = vec![0u8; PIPE_CHUNK];
    loop {
        if written == input.len() || exit_value.is_some() {
            stdin_w = None; // end of file for the remote command, or nobody left to read
        }
        if exit_value.is_some() && control.is_none() && stdout_r.is_none() && stderr_r.is_none() {
            break;
        }
        // Slots: 0 control, 1 stdin, 2 stdout, 3 stderr.
        let mut ready = [false; 4];
        {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
            let mut slots: Vec<usize> = Vec::with_capacity(4);
            if let Some(c) = &control {
                fds.push(PollFd::new(&c.fd, PollFlags::IN));
                slots.push(0);
            }
            if let Some(w) = &stdin_w {
                fds.push(PollFd::new(w, PollFlags::OUT));
                slots.push(1);
            }
            if let Some(r) = &stdout_r {
                fds.push(PollFd::new(r, PollFlags::IN));
                slots.push(2);
            }
            if let Some(r) = &stderr_r {
                fds.push(PollFd::new(r, PollFlags::IN));
                slots.push(3);
            }
            bound.poll(&mut fds)?;
            for (fd, slot) in fds.iter().zip(slots) {
                ready[slot] = !fd.revents().is_empty();
            }
        }

        if ready[0] {
            let c = control.as_mut().expect("polled");
            let open = c.fill()?;
            while let Some(msg) = c.next_message()? {
                match msg {
                    ServerMessage::SessionOpened { session_id: id, .. } if session_id.is_none() => {
                        expect_reply(&msg, request_id)?;
                        session_id = Some(id);
                    }
                    ServerMessage::Failure { ref reason, .. }
                    | ServerMessage::PermissionDenied { ref reason, .. }
                        if session_id.is_none() =>
                    {
                        expect_reply(&msg, request_id)?;
                        return Err(Fail::Refused(reason.clone()));
                    }
                    ServerMessage::ExitMessage {
                        session_id: id,
                        exit_value: value,
                    } if session_id == Some(id) && exit_value.is_none() => {
                        exit_value = Some(value);
                    }
                    // We never ask for a tty; nothing to restore.
                    ServerMessage::TtyAllocFail { session_id: id } if session_id == Some(id) => {}
                    other => {
                        return Err(Fail::Protocol(format!(
                            "unexpected message from the ssh master (session {session_id:?}, \
                             exit {exit_value:?}): {other:?}"
                        )));
                    }
                }
            }
            if !open {
                if exit_value.is_none() {
                    // Masters forward only exit-status, never exit-signal: a session that
                    // opened and closed without a status while the master still answers ran
                    // a command that a signal killed. Report 255 as ssh does; it is no
                    // transport failure, so nobody retries a command that ran.
                    // The master reports a refused exec request on the session's stderr: then
                    // the command never ran (and a retry is safe), whatever the alive check says.
                    let exec_failed = String::from_utf8_lossy(stderr_out)
                        .contains("exec request failed on channel");
                    let probe = bound.job.deadline().map_or(SIGNAL_PROBE_TIMEOUT, |d| {
                        d.remaining().min(SIGNAL_PROBE_TIMEOUT)
                    });
                    if session_id.is_some()
                        && !exec_failed
                        && !bound.job.is_cancelled()
                        && alive_check(socket, probe).is_ok()
                    {
                        tracing::debug!(
                            socket = %socket.display(),
                            "session ended without an exit status; the master is alive: the \
                             remote command was killed by a signal"
                        );
                        exit_value = Some(255);
                    } else {
                        drain_nonblocking(&mut stderr_r, stderr_out);
                        return Err(Fail::Closed(if session_id.is_some() {
                            "closed the session without an exit status, and the master no \
                             longer answers (it or its connection died)"
                                .to_string()
                        } else {
                            "closed the control connection before the session opened".to_string()
                        }));
                    }
                }
                control = None;
            }
        }
        if ready[1] {
            let w = stdin_w.as_ref().expect("polled");
            match rustix::io::write(w, &input[written..]) {
                Ok(n) => written += n,
                Err(Errno::AGAIN) | Err(Errno::INTR) => {}
                // EPIPE and the like: the remote side closed its stdin; the rest is not wanted.
                // (A pipe write to a closed reader also raises SIGPIPE, which Rust programs
                // ignore by default; run_process relies on the same.)
                Err(_) => written = input.len(),
            }
        }
        if ready[2] && !read_some(&mut stdout_r, &mut out, &mut chunk)? {
            stdout_r = None;
        }
        if ready[3] && !read_some(&mut stderr_r, stderr_out, &mut chunk)? {
            stderr_r = None;
        }
    }
    Ok(Output {
        // The master sends the u32 of sshd's exit-status; real values are 0..=255.
        status: ExitStatus::Code(exit_value.expect("loop ends after the exit message") as i32),
        stdout: out,
        stderr: std::mem::take(stderr_out),
    })
}

/// On a failed session: appends what the stderr pipe already holds to `sink`, without
/// waiting (a bounded number of reads), for the error message.
fn drain_nonblocking(pipe: &mut Option<OwnedFd>, sink: &mut Vec<u8>) {
    let mut chunk = vec![0u8; PIPE_CHUNK];
    for _ in 0..16 {
        let before = sink.len();
        match read_some(pipe, sink, &mut chunk) {
            Ok(true) if sink.len() > before => {}
            _ => break,
        }
    }
}

/// Reads what is available from `pipe` into `sink`; false at end of file, true otherwise
/// (including "nothing right now").
fn read_some(pipe: &mut Option<OwnedFd>, sink: &mut Vec<u8>, buf: &mut [u8]) -> Result<bool, Fail> {
    let Some(fd) = pipe else { return Ok(false) };
    loop {
        match rustix::io::read(&*fd, &mut *buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                sink.extend_from_slice(&buf[..n]);
                return Ok(true);
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(true),
            Err(e) => return Err(Fail::Local("reading the session's output", e.into())),
        }
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
        {
            let mut fds = [PollFd::new(&control.fd, PollFlags::IN)];
            bound.poll(&mut fds)?;
            if fds[0].revents().is_empty() {
                continue;
            }
        }
        let open = control.fill()?;
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
        if !open {
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

    use conn_core::Deadline;
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

    use crate::mux::codec::{self, MAX_PACKET};

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

    #[test]
    fn happy_path_collects_output_feeds_stdin_and_keeps_255_an_exit_status() {
        let input: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let expected = input.clone();
        let fake = Fake::start(move |mut s| {
            send(&mut s, hello());
            let (req, [stdin, stdout, stderr]) = accept_session(&mut s);
            assert_eq!(req.command, "printf '%s' 'a b'");
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
                stderr,
            } => {
                assert_eq!(endpoint, "u@h");
                assert_eq!(command, "true");
                let text = String::from_utf8_lossy(stderr);
                assert!(text.contains("without an exit status"), "{text}");
            }
            other => panic!("expected Transport, got {other:?}"),
        }
        assert!(err.is_retryable());
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
            let (_req, [stdin, stdout, stderr]) = accept_session(&mut s);
            // Never answers: the client must give up at its deadline and hang up.
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
                && *timeout == Duration::from_millis(300)),
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
