//! A running command: [`RemoteChild`], shaped like `std::process::Child`, the same for every
//! back end; and what a back end implements to drive one ([`Session`]) and to wire its stdio
//! ([`StdioPlan`]).

use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use crate::command::{Cmd, ExitStatus, Output, Started};
#[cfg(doc)]
use crate::command::{Stdin, Stream};
use crate::error::{Error, Result};
use crate::job::{CancelToken, Deadline, Job};
use crate::poll::poll_until;
use crate::pump::{Dest, Pump, Sink};
use crate::pump_thread::Pumping;
use crate::stdio::{ChildStderr, ChildStdin, ChildStdout, StdioPlan};

/// How often a wait looks at a session that has no descriptor to poll for its end.
const TICK: Duration = Duration::from_millis(10);

/// How much of an uncollected stderr `wait` keeps for [`Session::classify`] and messages.
const STDERR_HEAD: usize = 64 * 1024;

/// A back end's running command, as [`RemoteChild`] drives it: a child process, or a session
/// over an ssh master's socket. Implemented by transports; callers never see it.
pub trait Session: Send {
    /// A descriptor that becomes readable when the session may have ended (a pidfd, the
    /// control socket), or `None`: then the session is looked at on a short tick.
    fn exit_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Looks at the session without blocking: `Some` once it has ended. An error is the
    /// transport's failure (its [`Error::started`] says whether the command ran).
    fn try_finish(&mut self) -> Result<Option<ExitStatus>>;

    /// Ends the session at once (kills the process group, closes the control connection) and
    /// releases it. Called at most once, and never after [`Session::release`].
    fn kill(&mut self);

    /// Releases what the ended session still holds (reaps the child). Called once, after
    /// [`Session::try_finish`] returned `Some` and the command's pipes are drained.
    fn release(&mut self) {}

    /// The caller's view of the raw status, given the first bytes of stderr that conn saw (when
    /// it saw any) and stdout (when it was captured). The default: the status as it is, the
    /// command ran. The ssh process back end overrides it for its exit 255.
    fn classify(&mut self, status: ExitStatus, _seen: &Seen<'_>) -> Result<(ExitStatus, Started)> {
        Ok((status, Started::Yes))
    }
}

/// What conn saw of a command's output, for [`Session::classify`].
#[derive(Debug)]
pub struct Seen<'a> {
    /// The first bytes of stderr, when conn read stderr (captured or watched); else `None`.
    pub stderr: Option<&'a [u8]>,
    /// The captured stdout; `None` when it went elsewhere.
    pub stdout: Option<&'a [u8]>,
}

/// Names a command in messages: the endpoint and the shell-quoted line.
#[derive(Clone, Debug)]
pub struct CommandName {
    /// `user@host`; empty for the local host.
    pub endpoint: String,
    /// The command line (shell-quoted).
    pub line: String,
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.endpoint.is_empty() {
            f.write_str(&self.line)
        } else {
            write!(f, "{}: {}", self.endpoint, self.line)
        }
    }
}

/// How the child ended, once known: what a later wait returns again.
#[derive(Debug)]
enum Ended {
    /// A dry run: nothing ran.
    DryRun,
    /// It ended with this status (the caller's view of it).
    Status(ExitStatus, Started),
    /// Killed by [`RemoteChild::kill`], or by conn on a deadline, a cancel or an I/O failure:
    /// no status of the command's own.
    Killed,
    /// Its end was a transport failure, reported by the wait that saw it.
    Failed(String),
}

/// A command started with [`PooledConnection::spawn`](crate::PooledConnection::spawn) or
/// [`ConnectionPool::spawn`](crate::ConnectionPool::spawn): shaped like
/// `std::process::Child`, the same for the local host, the ssh process back end and the native
/// mux.
///
/// The job's deadline and cancellation go on applying: the `wait` methods end the command
/// (and release everything it holds) when the deadline passes or the job is cancelled, and a
/// cancel reaches the command even while nobody waits on it (its streams then end). A child
/// from a pool holds its session slot until it is waited for, killed or dropped; dropping a
/// child that is still running kills it.
///
/// `check(true)` applies to every way of waiting: an unsuccessful exit is
/// [`Error::Exited`]. A child that was killed (by [`RemoteChild::kill`], or on a deadline or a
/// cancel, whose error the wait that saw it returned) waits again as signal 9, as std's does.
///
/// ```
/// # #[cfg(unix)] {
/// use std::io::{Read, Write};
/// use conn_core::{Cmd, Stdin, SimpleJob};
/// # fn demo<T: conn_core::Transport>(pool: &conn_core::ConnectionPool<T>) -> Result<(), Box<dyn std::error::Error>> {
/// let mut child = pool.spawn(&Cmd::new(["sha256sum"]).stdin(Stdin::Piped), &SimpleJob::new())?;
/// child.stdin().unwrap().write_all(b"hello\n")?;
/// drop(child.take_stdin()); // end of file
/// let mut sum = String::new();
/// child.stdout().unwrap().read_to_string(&mut sum)?;
/// child.wait()?;
/// # Ok(()) }
/// # }
/// ```
pub struct RemoteChild {
    session: Box<dyn Session>,
    name: CommandName,
    check: bool,
    deadline: Option<Deadline>,
    token: CancelToken,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// conn's own pipe ends; moved to `pumping` while a thread runs it.
    pump: Option<Pump>,
    pumping: Option<Pumping>,
    ended: Option<Ended>,
    /// Whatever must live exactly as long as the command (a pool's session slot).
    hold: Option<Box<dyn Send + Sync>>,
}

impl fmt::Debug for RemoteChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteChild")
            .field("command", &self.name.to_string())
            .field("ended", &self.ended)
            .finish()
    }
}

impl RemoteChild {
    /// A child driven by `session`, with the rest of `plan` (the command's own descriptors
    /// must have been taken and handed over). For transports.
    pub fn new(
        session: Box<dyn Session>,
        mut plan: StdioPlan,
        cmd: &Cmd,
        job: &dyn Job,
        name: CommandName,
    ) -> Self {
        drop(plan.take_child_fds());
        let (stdin, stdout, stderr) = plan.caller;
        RemoteChild {
            session,
            name,
            check: cmd.is_checked(),
            deadline: job.deadline(),
            token: job.cancel_token().clone(),
            stdin,
            stdout,
            stderr,
            pump: Some(plan.pump),
            pumping: None,
            ended: None,
            hold: None,
        }
    }

    /// A child that has already ended successfully without running anything: a dry run.
    pub fn dry_run(cmd: &Cmd, name: CommandName) -> Self {
        struct Done;
        impl Session for Done {
            fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
                None
            }
            fn try_finish(&mut self) -> Result<Option<ExitStatus>> {
                Ok(Some(ExitStatus::Code(0)))
            }
            fn kill(&mut self) {}
        }
        tracing::info!("Would execute: {name}");
        RemoteChild {
            session: Box::new(Done),
            name,
            check: cmd.is_checked(),
            deadline: None,
            token: CancelToken::new(),
            stdin: None,
            stdout: None,
            stderr: None,
            pump: Some(Pump::default()),
            pumping: None,
            ended: Some(Ended::DryRun),
            hold: None,
        }
    }

    /// Keeps `value` alive until the command has ended (a pool's session slot, say).
    pub fn hold(mut self, value: impl Send + Sync + 'static) -> Self {
        self.hold = Some(Box::new(value));
        self
    }

    /// The command, as named in messages.
    pub fn name(&self) -> &CommandName {
        &self.name
    }

    /// The stdin pipe ([`Stdin::Piped`]).
    pub fn stdin(&mut self) -> Option<&mut ChildStdin> {
        self.pump_in_background();
        self.stdin.as_mut()
    }

    /// The stdout pipe ([`Stream::Piped`]).
    pub fn stdout(&mut self) -> Option<&mut ChildStdout> {
        self.pump_in_background();
        self.stdout.as_mut()
    }

    /// The stderr pipe ([`Stream::Piped`]).
    pub fn stderr(&mut self) -> Option<&mut ChildStderr> {
        self.pump_in_background();
        self.stderr.as_mut()
    }

    /// Takes the stdin pipe (dropping it is end of file for the command).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.pump_in_background();
        self.stdin.take()
    }

    /// Takes the stdout pipe.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.pump_in_background();
        self.stdout.take()
    }

    /// Takes the stderr pipe.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.pump_in_background();
        self.stderr.take()
    }

    /// Once the caller works the pipes itself, conn's own pipe ends (input bytes, relays, a
    /// watched stderr) must keep moving while nobody waits: one thread moves them until they
    /// are done, or the job's deadline or cancellation stops it.
    fn pump_in_background(&mut self) {
        let Some(pump) = self.pump.take_if(|p| !p.is_empty() && !p.done()) else {
            return;
        };
        match Pumping::start(pump, self.deadline, self.token.clone()) {
            Ok(pumping) => self.pumping = Some(pumping),
            Err(failed) => {
                let (pump, e) = *failed;
                // No thread to be had: the pump stays here and moves only while `wait` runs.
                tracing::warn!("cannot start a pump thread for {}: {e}", self.name);
                self.pump = Some(pump);
            }
        }
    }

    /// Whether the command has ended; the status once it has (applying `check`).
    /// Once it has ended, the output the caller did not take is read and dropped as for
    /// [`RemoteChild::wait`].
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let known = match self.ended {
            Some(_) => None,
            None => match self.session.try_finish() {
                Ok(None) => return Ok(None),
                Ok(Some(status)) => Some(status),
                Err(e) => return Err(self.fail(e)),
            },
        };
        drop(self.stdin.take());
        self.finish(false, known).map(|o| Some(o.status))
    }

    /// Waits for the command to end (closing stdin first, as std does) and returns its status.
    /// Output on pipes the caller did not take is read and dropped (the command is never cut
    /// off by a closed pipe); use [`RemoteChild::wait_with_output`] to collect it.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        drop(self.stdin.take());
        self.finish(false, None).map(|o| o.status)
    }

    /// Waits for the command to end, collecting what it writes to the pipes the caller did not
    /// take ([`Stream::Piped`]), and feeding [`Stdin::Bytes`].
    pub fn wait_with_output(mut self) -> Result<Output> {
        drop(self.stdin.take());
        self.finish(true, None)
    }

    /// How the command started: known once it has ended ([`Started::Unknown`] for the process
    /// back end's exit 255 and for a killed command).
    pub fn started(&self) -> Option<Started> {
        match self.ended {
            Some(Ended::Status(_, started)) => Some(started),
            Some(Ended::DryRun) => Some(Started::No),
            Some(Ended::Killed | Ended::Failed(_)) => Some(Started::Unknown),
            None => None,
        }
    }

    /// Ends the command now (its process group gets `SIGKILL`, or its session is closed) and
    /// releases everything it holds. A later `wait` returns signal 9, whatever `check` says
    /// (as std's does after a kill).
    pub fn kill(&mut self) -> Result<()> {
        if self.ended.is_none() {
            self.session.kill();
            self.ended = Some(Ended::Killed);
        }
        self.release_all();
        Ok(())
    }

    fn release_all(&mut self) {
        self.stdin = None;
        self.stdout = None;
        self.stderr = None;
        self.pump = None;
        self.pumping = None; // stops its thread
        self.hold = None;
    }

    /// The one wait loop behind `wait`, `try_wait` and `wait_with_output`.
    fn finish(&mut self, capture: bool, known: Option<ExitStatus>) -> Result<Output> {
        // A second wait gives what the first one saw.
        let replay = |status, started| Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
            started,
        };
        match &self.ended {
            Some(Ended::Killed) => return Ok(replay(ExitStatus::Signal(9), Started::Unknown)),
            Some(Ended::DryRun) => {
                self.release_all();
                return Ok(replay(ExitStatus::Code(0), Started::No));
            }
            Some(Ended::Status(status, started)) => {
                let output = replay(*status, *started);
                return match self.check {
                    true => {
                        crate::command::check_output(output, &self.name.endpoint, &self.name.line)
                    }
                    false => Ok(output),
                };
            }
            Some(Ended::Failed(why)) => {
                return Err(Error::Io {
                    context: format!("waiting again for {}", self.name),
                    source: io::Error::other(format!("it already ended in an error: {why}")),
                });
            }
            None => {}
        }
        let mut pump = match self.pumping.take() {
            Some(pumping) => pumping.stop(),
            None => self.pump.take().unwrap_or_default(),
        };
        // A watched stderr that nobody took and nothing relayed yet: collect it where it is,
        // instead of relaying it into the caller's pipe only to read it back.
        let mut err_from_watch = false;
        if capture
            && self.stderr.is_some()
            && let Some(watch) = &mut pump.sinks[2]
            && watch.nothing_relayed()
        {
            watch.capture_all();
            self.stderr = None;
            err_from_watch = true;
        }
        let (mut captured_out, mut captured_err) = (false, false);
        if let Some(out) = self.stdout.take() {
            let fd = out.into_owned_fd();
            pump.sinks[0] = Some(self.io(if capture {
                captured_out = true;
                Sink::capture(fd)
            } else {
                Sink::relay(fd, Dest::Discard, 0)
            })?);
        }
        if let Some(err) = self.stderr.take() {
            let fd = err.into_owned_fd();
            pump.sinks[1] = Some(self.io(if capture {
                captured_err = true;
                Sink::capture(fd)
            } else {
                Sink::relay(fd, Dest::Discard, STDERR_HEAD)
            })?);
        }
        let status = match self.wait_loop(&mut pump, known) {
            Ok(status) => status,
            Err(e) => {
                pump.drain_now();
                let stdout = pump.sinks[0].take().map(|s| s.kept);
                let stderr = pump.sinks[1]
                    .take()
                    .or(pump.sinks[2].take())
                    .map(|s| s.kept);
                return Err(self.fail(with_output(e, stdout, stderr)));
            }
        };
        self.session.release();
        let stdout = pump.sinks[0].take().map(|s| s.kept);
        let mut stderr = pump.sinks[1].take().map(|s| s.kept);
        let watched = pump.sinks[2].take().map(|s| s.kept);
        if err_from_watch {
            captured_err = true;
            stderr = watched.clone();
        }
        let seen = Seen {
            stderr: watched.as_deref().or(stderr.as_deref()),
            stdout: if captured_out {
                stdout.as_deref()
            } else {
                None
            },
        };
        let classified = self.session.classify(status, &seen);
        self.release_all();
        let (status, started) = match classified {
            Ok(c) => c,
            Err(e) => {
                self.ended = Some(Ended::Failed(e.to_string()));
                return Err(with_output(
                    e,
                    stdout.filter(|_| captured_out),
                    stderr.filter(|_| captured_err).or(watched),
                ));
            }
        };
        self.ended = Some(Ended::Status(status, started));
        let output = Output {
            status,
            stdout: if captured_out {
                stdout.unwrap_or_default()
            } else {
                Vec::new()
            },
            stderr: if captured_err {
                stderr.unwrap_or_default()
            } else {
                Vec::new()
            },
            started,
        };
        if self.check {
            return crate::command::check_output(output, &self.name.endpoint, &self.name.line);
        }
        Ok(output)
    }

    fn io<T>(&self, r: io::Result<T>) -> Result<T> {
        r.map_err(|e| Error::Io {
            context: format!("reading the output of {}", self.name),
            source: e,
        })
    }

    /// Ends the session after a failure of ours (deadline, cancel, I/O) and passes the error on.
    fn fail(&mut self, e: Error) -> Error {
        if self.ended.is_none() {
            self.session.kill();
            self.ended = Some(Ended::Killed);
        }
        self.release_all();
        e
    }

    /// Polls the session's end, the pump, and the job's cancellation until the session has
    /// ended and the pump is done, or the deadline passes.
    fn wait_loop(&mut self, pump: &mut Pump, mut status: Option<ExitStatus>) -> Result<ExitStatus> {
        let mut buf = Pump::buffer();
        let wake = self.token.clone();
        let wake_fd = wake.wake_fd();
        // The first look needs no poll: a session may have buffered its end already.
        let mut look = true;
        loop {
            if status.is_none()
                && (look || self.session.exit_fd().is_none())
                && let Some(s) = self.session.try_finish()?
            {
                status = Some(s);
            }
            look = false;
            if status.is_some() {
                // Nobody is left to read what has not been written yet.
                pump.close_input();
            }
            if let Some(s) = status
                && pump.done()
            {
                return Ok(s);
            }
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(6);
            let mut tags = Vec::with_capacity(6);
            pump.poll_fds(&mut fds, &mut tags);
            let pumped = fds.len();
            let exit_fd = if status.is_none() {
                self.session.exit_fd()
            } else {
                None
            };
            if let Some(fd) = exit_fd {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            if let Some(fd) = wake_fd {
                fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            }
            let tick = (status.is_none() && exit_fd.is_none() || wake_fd.is_none()).then_some(TICK);
            poll_until(&mut fds, self.deadline.map(|d| d.at()), tick)
                .map_err(|e| Error::io(format!("waiting for {}", self.name), e))?;
            let exit_ready = exit_fd.is_some() && !fds[pumped].revents().is_empty();
            let ready = Pump::ready(&fds[..pumped], &tags);
            drop(fds);
            if self.token.is_cancelled() {
                return Err(Error::Cancelled {
                    command: self.name.to_string(),
                });
            }
            // Checked whatever poll returned: a command that keeps its pipes busy must not
            // outlive the deadline.
            if let Some(d) = self.deadline
                && d.expired()
            {
                return Err(Error::Timeout {
                    command: self.name.to_string(),
                    timeout: d.duration(),
                });
            }
            for tag in ready {
                pump.on_ready(tag, &mut buf)
                    .map_err(|e| Error::io(format!("moving the streams of {}", self.name), e))?;
            }
            if exit_ready && let Some(s) = self.session.try_finish()? {
                status = Some(s);
            }
        }
    }
}

/// `e` with the output seen before it, when it is a transport failure: a caller can then see how
/// far a command that may have run got. The transport's own bytes (if any) come after.
fn with_output(e: Error, seen_out: Option<Vec<u8>>, seen_err: Option<Vec<u8>>) -> Error {
    match e {
        Error::Transport {
            endpoint,
            command,
            started,
            reason,
            stdout,
            stderr,
        } => Error::Transport {
            endpoint,
            command,
            started,
            reason,
            stdout: [seen_out.unwrap_or_default(), stdout].concat(),
            stderr: [seen_err.unwrap_or_default(), stderr].concat(),
        },
        e => e,
    }
}

impl Drop for RemoteChild {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.session.kill();
            self.ended = Some(Ended::Killed);
        }
    }
}
