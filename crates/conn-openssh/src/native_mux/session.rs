//! A native session: one command per control connection, its end driven by `RemoteChild`'s
//! poll loop.
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
//!
//! The exit message alone is not the end, though: a master forwards it as soon as sshd sends it,
//! possibly before the last output is written, and a master that dies in between closes
//! everything early. So the session's end is judged by the master's fate once everything has
//! closed ([`MasterId::fate`], docs/design.md#clean-end).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::Arc;

use conn_core::transport::{
    ChildFd, ChildHandle, CommandName, Registration, RemoteGroup, Seen, Session, StdioOptions,
    StdioPlan,
};
use conn_core::{Cmd, Error, ExitStatus, Job, Program, RemoteChild, Result, SimpleJob, Started};
use rustix::fs::{Mode, OFlags};

use super::codec::{ClientMessage, MAX_PACKET, MUX_VERSION, NewSession, ServerMessage};
use super::control::{Bound, Control, Fail, Filled, next_request_id};
use crate::master::{Fate, MasterId};

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
/// reset or hung up before confirming (it writes the confirmation to us before the exec
/// request leaves for sshd); [`Error::Timeout`] / [`Error::Cancelled`] when the job ends
/// first (the control connection is closed), [`Error::Io`] for a protocol violation or a local
/// failure. After that the [`RemoteChild`] reports the end: the exit status the master
/// forwards (255 included: it is the remote command's own) once the master (`master()`,
/// asked for only when something is to run) has closed the
/// session itself; [`Error::Transport`] with [`Started::Yes`] when the status came but the
/// master died before the output was complete, and with [`Started::Unknown`] when it died
/// before the status.
pub(crate) fn spawn(
    socket: &Path,
    master: impl FnOnce() -> Result<MasterId>,
    endpoint: &str,
    cmd: &Cmd,
    job: &dyn Job,
) -> Result<RemoteChild> {
    cmd.validate()?;
    // A command line (an argv quoted, or a shell line as it is; behind the report of its
    // process group with kill_remote), or a subsystem's name with the request's subsystem flag.
    let group = cmd.kills_remote().then(RemoteGroup::new);
    let (line, subsystem) = match cmd.program().remote_line() {
        Some(line) => match &group {
            Some(group) => (group.wrap(&line?), false),
            None => (line?, false),
        },
        None => match cmd.program() {
            Program::Subsystem(name) => (name.clone(), true),
            other => {
                return Err(Error::Config(format!(
                    "the native mux cannot run {}",
                    other.display()
                )));
            }
        },
    };
    let name = CommandName {
        endpoint: endpoint.to_string(),
        line: cmd.program().display(),
    };
    if cmd.is_dry_run() {
        return Ok(RemoteChild::dry_run(cmd, name));
    }
    conn_core::ensure_running(job, || name.to_string())?;
    let master = master()?;
    let bound = Bound { job };
    tracing::debug!(endpoint, socket = %socket.display(), "Executing: {}", name.line);

    let request_id = next_request_id();
    let mut request = ClientMessage::Hello {
        version: MUX_VERSION,
    }
    .encode()
    .expect("a hello always encodes");
    let line_len = line.len();
    let mut session = NewSession::command(request_id, line.into_vec());
    session.subsystem = subsystem;
    if cmd.sends_env() {
        session.env = super::env::offered();
    }
    match ClientMessage::NewSession(session).encode() {
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
            remote_group: group,
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
        control: Some(control),
        socket: socket.to_path_buf(),
        master,
        name: name.clone(),
        session_id,
        exit_value: None,
        closed: false,
        registration: Some(registration),
    };
    Ok(RemoteChild::new(Box::new(session), plan, cmd, job, name))
}

/// Maps why a session could not open onto [`Error`].
pub(super) fn fail_error(fail: Fail, socket: &Path, name: &CommandName, job: &dyn Job) -> Error {
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
        // no, reset the connection (it closed with part of the request unread), or hung up
        // before it confirmed the session: the command did not start. The last holds because
        // a master writes the confirmation to us before the exec request leaves for sshd: it
        // queues both in one callback at the top of its loop, and in that loop's turn flushes
        // the mux clients first (`channel_after_poll`) and the connection to sshd last
        // (`ssh_packet_write_poll`), in OpenSSH's `client_loop` from 8.4 to today. A master
        // that died without confirming never sent the exec request.
        Fail::Refused(why) | Fail::Closed(why) | Fail::Reset(why) => Error::Transport {
            endpoint: name.endpoint.clone(),
            command: name.line.clone(),
            started: Started::No,
            reason: format!("ssh mux master {}: {why}", socket.display()).into(),
            stdout: Vec::new(),
            stderr: Vec::new(),
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
pub(super) fn is_session_refusal(reason: &str) -> bool {
    reason.contains("refused by peer") || reason.contains("prohibited")
}

/// Connects, sends the request and the three descriptors, and waits for the master's answer:
/// the session id once the session is open.
pub(super) fn open_session(
    socket: &Path,
    request: &[u8],
    request_id: u32,
    fds: [ChildFd; 3],
    bound: &Bound<'_>,
) -> Result<(Control, u32), Fail> {
    let mut control = Control::connect(socket, bound)?;
    {
        let devnull = if fds.iter().any(|e| matches!(e, ChildFd::Null)) {
            Some(dev_null()?)
        } else {
            None
        };
        // Handles on our own stdio, borrowed only while the descriptors are sent.
        let (own_in, own_out, own_err) = (io::stdin(), io::stdout(), io::stderr());
        let own: [BorrowedFd<'_>; 3] = [own_in.as_fd(), own_out.as_fd(), own_err.as_fd()];
        control.send_all(request, bound)?;
        for (end, own) in fds.iter().zip(own) {
            let fd = match end {
                ChildFd::Null => devnull.expect("opened above"),
                ChildFd::Inherit => own,
                ChildFd::Fd(fd) => fd.as_fd(),
            };
            control.send_fd(fd, bound)?;
        }
    }
    // The master holds its own duplicates now. Dropping ours is what lets our read ends see
    // end of file once the master closes its copies.
    drop(fds);
    let reply = control.reply(request_id, bound, "before it confirmed the session")?;
    match reply {
        ServerMessage::SessionOpened { session_id, .. } => Ok((control, session_id)),
        other => Err(Fail::Protocol(format!(
            "unexpected reply to a session request: {other:?}"
        ))),
    }
}

/// `/dev/null`, opened once for the process: most sessions get it as their stdin, and the
/// master duplicates what it receives.
fn dev_null() -> Result<BorrowedFd<'static>, Fail> {
    static DEV_NULL: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = DEV_NULL.get() {
        return Ok(fd.as_fd());
    }
    let fd = rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Fail::Local("opening /dev/null", e.into()))?;
    Ok(DEV_NULL.get_or_init(|| fd).as_fd())
}

/// An open session on the master, as [`RemoteChild`] drives it: its end is the master closing
/// the control connection (after the exit message, unless a signal killed the command), judged
/// by whether the master itself closed it ([`MasterId::fate`]).
///
/// Waiting for the close, not just for the exit message, matters twice: the master closes it
/// only once the session channel is completely closed, so stdout and stderr have been flushed to
/// the command's descriptors; and sshd frees the session slot only once that close exchange is
/// done, so a caller that opens its next session right after is far less likely to overshoot
/// `MaxSessions`.
struct NativeSession {
    /// Until the session is released (or killed): then the descriptor is closed at once, not
    /// when the child is dropped.
    control: Option<Control>,
    socket: std::path::PathBuf,
    /// The master serving the session: its fate decides how the session ended.
    master: MasterId,
    name: CommandName,
    session_id: u32,
    exit_value: Option<u32>,
    closed: bool,
    /// In the job's registry while open: a cancel shuts the control connection down.
    registration: Option<Registration>,
}

impl NativeSession {
    /// Reads what the master has sent, without blocking.
    fn read_control(&mut self) -> Result<(), Fail> {
        while !self.closed {
            let Some(control) = &mut self.control else {
                break;
            };
            let filled = control.fill()?;
            while let Some(msg) = control.next_message()? {
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
        self.control
            .as_ref()
            .filter(|_| !self.closed)
            .map(|c| c.fd.as_fd())
    }

    fn try_finish(&mut self) -> Result<Option<ExitStatus>> {
        if let Err(fail) = self.read_control() {
            return Err(
                match fail_error(fail, &self.socket, &self.name, &SimpleJob::new()) {
                    // After the session opened, a failure of the master means the command may
                    // have run.
                    Error::Transport {
                        endpoint,
                        command,
                        reason,
                        stdout,
                        stderr,
                        ..
                    } => Error::Transport {
                        endpoint,
                        command,
                        started: Started::Unknown,
                        reason,
                        stdout,
                        stderr,
                    },
                    other => other,
                },
            );
        }
        if !self.closed {
            return Ok(None);
        }
        // The master sends the u32 of sshd's exit-status; real values are 0..=255. Without
        // one, `classify` tells a signal's death from the master's own.
        Ok(Some(ExitStatus::Code(
            self.exit_value.map_or(255, |value| value as i32),
        )))
    }

    fn kill(&mut self) {
        // The master then marks the session's channel failed and closes its descriptors.
        if let Some(control) = self.control.take() {
            let _ = rustix::net::shutdown(&*control.fd, rustix::net::Shutdown::Both);
        }
        self.registration = None;
        self.closed = true;
    }

    fn release(&mut self) {
        self.control = None;
        self.registration = None;
    }

    fn classify(&mut self, status: ExitStatus, seen: &Seen<'_>) -> Result<(ExitStatus, Started)> {
        // Everything has closed by now (the control connection and the pipes): whether the
        // master closed it or died decides what the status is worth.
        let fate = self.master.fate(&self.socket);
        let died = |started, what: &str| Error::Transport {
            endpoint: self.name.endpoint.clone(),
            command: self.name.line.clone(),
            started,
            reason: format!(
                "the ssh master (pid {}, {}) died {what}",
                self.master.pid,
                self.socket.display()
            )
            .into(),
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        match (self.exit_value, fate) {
            (Some(_), Fate::Alive) => Ok((status, Started::Yes)),
            (Some(value), Fate::Died) => Err(died(
                Started::Yes,
                &format!(
                    "before the output was complete (the command exited with {value}; what it \
                     wrote may be cut short)"
                ),
            )),
            // Masters forward only exit-status, never exit-signal: a session that the master
            // closed without a status ran a command that a signal killed, reported as 255 as
            // ssh does (no transport failure: nobody retries a command that ran); unless the
            // master reported a refused exec request on the session's stderr (seen only when
            // stderr was captured): then the command never ran.
            (None, Fate::Alive) => {
                if seen.stderr.is_some_and(|e| {
                    String::from_utf8_lossy(e).contains("exec request failed on channel")
                }) {
                    return Err(Error::Transport {
                        endpoint: self.name.endpoint.clone(),
                        command: self.name.line.clone(),
                        started: Started::No,
                        reason: "the ssh master reports that sshd refused the exec request".into(),
                        stdout: Vec::new(),
                        stderr: seen.stderr.unwrap_or_default().to_vec(),
                    });
                }
                tracing::debug!(
                    socket = %self.socket.display(),
                    "session ended without an exit status; the master is alive: the remote \
                     command was killed by a signal"
                );
                Ok((status, Started::Yes))
            }
            (None, Fate::Died) => Err(died(
                Started::Unknown,
                "before the command's exit status came (the command may have run)",
            )),
        }
    }
}
