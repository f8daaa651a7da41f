//! A running command: [`RemoteChild`], shaped like `std::process::Child`, the same for every
//! back end; and what a back end implements to drive one ([`Session`]) and to wire its stdio
//! ([`StdioPlan`]).

use std::fmt;
use std::os::fd::BorrowedFd;

use crate::command::{Cmd, CommandName};
#[cfg(doc)]
use crate::command::{Stdin, Stream};
use crate::error::{Error, Result};
use crate::job::{CancelToken, Deadline, Job};
use crate::pump::Pump;
use crate::pump_thread::Pumping;
use crate::remote_group::{RemoteGroup, kill_remote_group};
use crate::runner::Runner;
use crate::status::{ExitStatus, Started};
use crate::stdio::{ChildStderr, ChildStdin, ChildStdout, StdioPlan};

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

    /// Whether stderr may start with the transport's own lines, and how to tell one (a complete
    /// line, its newline included): a streaming wait holds stderr back while every line so far
    /// is one, so that a command that never started writes nothing to the caller's sink. `None`
    /// (the default): stderr is the command's alone.
    fn transport_lines(&self) -> Option<fn(&[u8]) -> bool> {
        None
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

/// How the child ended, once known: what a later wait returns again.
#[derive(Debug)]
pub(crate) enum Ended {
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
    pub(crate) session: Box<dyn Session>,
    pub(crate) name: CommandName,
    pub(crate) check: bool,
    pub(crate) deadline: Option<Deadline>,
    pub(crate) token: CancelToken,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Option<ChildStdout>,
    pub(crate) stderr: Option<ChildStderr>,
    /// conn's own pipe ends; moved to `pumping` while a thread runs it.
    pub(crate) pump: Option<Pump>,
    pub(crate) pumping: Option<Pumping>,
    pub(crate) ended: Option<Ended>,
    /// A wait saw the session end by itself (not after a cancel, which may have been what
    /// ended it): then there is nothing left to end remotely.
    pub(crate) ended_by_itself: bool,
    /// The remote process group, reported by the command ([`Cmd::kill_remote`]).
    group: Option<RemoteGroup>,
    /// Whatever must live exactly as long as the command (a pool's session slot), and maybe
    /// the connection it runs on.
    hold: Option<Box<dyn Held>>,
}

/// What a child holds until its command ends; it may lend the connection the command runs on,
/// for the remote kill of [`Cmd::kill_remote`].
pub(crate) trait Held: Send + Sync {
    fn connection(&self) -> Option<&dyn Runner>;
}

/// A value held for its lifetime only.
struct Plain<V>(V);

impl<V: Send + Sync> Held for Plain<V> {
    fn connection(&self) -> Option<&dyn Runner> {
        None
    }
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
        let group = plan.group.take();
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
            ended_by_itself: false,
            group,
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
            ended_by_itself: true,
            group: None,
            hold: None,
        }
    }

    /// Keeps `value` alive until the command has ended (a pool's session slot, say).
    pub fn hold(mut self, value: impl Send + Sync + 'static) -> Self {
        self.hold = Some(Box::new(Plain(value)));
        self
    }

    /// Keeps `held` until the command has ended (see `hold_connection`, beside
    /// [`Connection`](crate::Connection)).
    pub(crate) fn with_held(mut self, held: Box<dyn Held>) -> Self {
        self.hold = Some(held);
        self
    }

    /// The remote command's process group, once its shell has reported it
    /// ([`Cmd::kill_remote`]; conn learns it while it moves the command's stderr). `None`
    /// without the option, before the report, and for a local command.
    pub fn remote_pgid(&self) -> Option<u32> {
        self.group.as_ref().and_then(RemoteGroup::pgid)
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

    /// Ends the command now (its process group gets `SIGKILL`, or its session is closed; with
    /// [`Cmd::kill_remote`], the remote process group then gets `SIGTERM`) and releases
    /// everything it holds. A later `wait` returns signal 9, whatever `check` says (as std's
    /// does after a kill).
    pub fn kill(&mut self) -> Result<()> {
        self.catch_group_report();
        self.end_early();
        self.release_all();
        Ok(())
    }

    /// Ends a session that has not ended by itself: closes it, then (with
    /// [`Cmd::kill_remote`]) ends the remote process group over the held connection, while
    /// this child still holds its slot, so the kill takes no slot of another command's.
    fn end_early(&mut self) {
        if self.ended.is_some() {
            return;
        }
        if self.group.is_some()
            && !self.ended_by_itself
            && !self.token.is_cancelled()
            && matches!(self.session.try_finish(), Ok(Some(_)))
        {
            // Over already (a child dropped unwaited): nothing remote to end. After a cancel
            // the end may have been the cancel's own doing, so that case is not trusted.
            self.ended_by_itself = true;
        }
        self.session.kill();
        self.ended = Some(Ended::Killed);
        let Some(group) = self.group.as_ref().filter(|_| !self.ended_by_itself) else {
            return;
        };
        let conn = self.hold.as_ref().and_then(|h| h.connection());
        match (group.pgid(), conn) {
            (Some(pgid), Some(conn)) => kill_remote_group(conn, pgid, &self.name),
            (None, _) => tracing::debug!(
                "{} ended before its remote shell reported its process group: the remote \
                 command is not signalled",
                self.name
            ),
            (Some(pgid), None) => tracing::warn!(
                "no connection to end remote process group {pgid} of {} on (a child from a \
                 bare Connection::spawn: see RemoteChild::hold_connection)",
                self.name
            ),
        }
    }

    /// Reads, without waiting, what conn's stderr pipe holds already, for the remote group's
    /// report when it has not been read yet (nobody was waiting).
    fn catch_group_report(&mut self) {
        if self.ended.is_some() || self.group.as_ref().is_none_or(|g| g.pgid().is_some()) {
            return;
        }
        let mut pump = match self.pumping.take() {
            Some(pumping) => pumping.stop(),
            None => self.pump.take().unwrap_or_default(),
        };
        pump.drain_now();
        self.pump = Some(pump);
    }

    pub(crate) fn release_all(&mut self) {
        self.stdin = None;
        self.stdout = None;
        self.stderr = None;
        self.pump = None;
        self.pumping = None; // stops its thread
        self.hold = None;
    }

    /// Ends the session after a failure of ours (deadline, cancel, I/O) and passes the error on.
    pub(crate) fn fail(&mut self, e: Error) -> Error {
        self.end_early();
        self.release_all();
        e
    }
}

impl Drop for RemoteChild {
    fn drop(&mut self) {
        self.catch_group_report();
        self.end_early();
    }
}
