//! Starting a command as a child process: the one spawn helper every process-based back end
//! uses (the local transport, and the ssh client of the OpenSSH process back end).
//!
//! Each child leads its own process group, so a deadline or a cancelled job ends the child
//! together with everything it started. Its end is seen through a pidfd (Linux), polled
//! together with the pipes and the job's cancellation, so a deadline is exact and a cancel is
//! noticed at once; no helper thread is needed while somebody waits.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, waitid};

use crate::child::{RemoteChild, Seen, Session};
use crate::command::Cmd;
use crate::command::CommandName;
use crate::error::{Error, Result};
use crate::job::{ChildHandle, Job, Registration, ensure_running, kill_group};
use crate::status::{ExitStatus, Started};
use crate::stdio::{ChildFd, StdioOptions, StdioPlan};

/// How a process back end maps a finished child's raw status to the caller's view (the ssh
/// back end's exit 255, say). See [`Session::classify`].
pub type Classifier = Box<dyn FnMut(ExitStatus, &Seen<'_>) -> Result<(ExitStatus, Started)> + Send>;

/// Options of [`spawn_process`] beyond the command itself.
#[derive(Default)]
pub struct ProcessOptions {
    /// How the standard streams are wired.
    pub stdio: StdioOptions,
    /// How the raw status is read; `None`: as it is, the command ran.
    pub classify: Option<Classifier>,
    /// How to tell a line of the client's own on stderr (see [`Session::transport_lines`]);
    /// `None`: stderr is the command's alone.
    pub transport_lines: Option<fn(&[u8]) -> bool>,
    /// How the command is named in messages (the endpoint; the line is `argv`'s).
    pub endpoint: String,
    /// Start the child in a session of its own (`setsid`), not only a process group: for a
    /// process that has no terminal at all and that the scheduler weighs as a session of its
    /// own, as pdsh's ssh clients are. Costs a fork of this whole process where std could
    /// otherwise `posix_spawn`, which is why conn's own master starts do without it
    /// (ssh gives a backgrounded master a session of its own anyway).
    pub new_session: bool,
}

/// Starts `argv` (program first, never through a shell) with the stdio settings of `cmd`,
/// under `job`'s deadline and cancellation, and returns the running child.
///
/// Logs the shell-quoted line at debug level as "Executing: …" ("Would execute: …" and no
/// spawn for a dry run: the child has then already ended successfully).
///
/// Errors, all before anything runs: [`Error::EmptyCommand`]; [`Error::Timeout`] or
/// [`Error::Cancelled`] when the job is already over; [`Error::ProgramNotFound`] /
/// [`Error::Spawn`] when it cannot start.
pub fn spawn_process<S: AsRef<OsStr>>(
    argv: &[S],
    cmd: &Cmd,
    job: &dyn Job,
    options: ProcessOptions,
) -> Result<RemoteChild> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Error::EmptyCommand);
    };
    let name = CommandName {
        endpoint: options.endpoint,
        line: crate::display_line(argv),
    };
    if cmd.is_dry_run() {
        return Ok(RemoteChild::dry_run(cmd, name));
    }
    ensure_running(job, || name.to_string())?;
    tracing::debug!("Executing: {}", name.line);

    let mut plan = StdioPlan::new(cmd, options.stdio)?;
    let [stdin, stdout, stderr] = plan.take_child_fds();
    let new_session = options.new_session || matches!(stdin, ChildFd::Inherit);
    let mut command = Command::new(program.as_ref());
    command
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    if new_session {
        // Asked for, or needed: a child of a background process group that reads our terminal
        // would be stopped by SIGTTIN. A session of its own has no controlling terminal at
        // all, and still gives the child its own process group (pgid = pid) for killpg.
        // SAFETY: the closure only calls setsid(2), which is async-signal-safe and touches no
        // memory of the parent.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                rustix::process::setsid()?;
                Ok(())
            });
        }
    } else {
        // Cheaper than pre_exec, which would rule out std's posix_spawn fast path.
        command.process_group(0);
    }
    let program_name = || program.as_ref().to_string_lossy().into_owned();
    let mut child = command.spawn().map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::ProgramNotFound {
            program: program_name(),
        },
        _ => Error::Spawn {
            program: program_name(),
            source,
        },
    })?;
    // The Command still holds the child's ends of the pipes: drop them, so that ours see end of
    // file when the child is done.
    drop(command);
    let pgid = child.id() as i32;
    let Some(registration) = job.cancel_token().register(ChildHandle::ProcessGroup(pgid)) else {
        kill_group(pgid, Signal::KILL);
        let _ = child.wait();
        return Err(Error::Cancelled {
            command: name.to_string(),
        });
    };
    let pidfd = Pid::from_raw(pgid).and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
    let session = ProcessSession {
        child,
        pidfd,
        registration: Some(registration),
        classify: options.classify,
        transport_lines: options.transport_lines,
    };
    Ok(RemoteChild::new(Box::new(session), plan, cmd, job, name))
}

/// A child process leading its own group.
///
/// It is reaped only at the very end ([`Session::release`] or [`Session::kill`]): until then it
/// stays a zombie at worst, so its pid and process-group id cannot be reused and a `killpg` on
/// a deadline can never hit a stranger. Its registration with the job is dropped at the reap.
struct ProcessSession {
    child: Child,
    /// Readable once the child has exited (Linux ≥ 5.3); else a tick looks.
    pidfd: Option<OwnedFd>,
    registration: Option<Registration>,
    classify: Option<Classifier>,
    transport_lines: Option<fn(&[u8]) -> bool>,
}

impl ProcessSession {
    fn reap(&mut self) -> io::Result<std::process::ExitStatus> {
        let status = loop {
            match self.child.wait() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        self.registration = None;
        status
    }
}

impl Session for ProcessSession {
    fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    fn try_finish(&mut self) -> Result<Option<ExitStatus>> {
        // Whether it has exited, and how, without reaping it (so its pid stays reserved until
        // `release`).
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        let id = Pid::from_raw(self.child.id() as i32).map_or(WaitId::All, WaitId::Pid);
        match waitid(id, options) {
            Ok(Some(status)) => Ok(Some(
                match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => ExitStatus::Code(code),
                    (None, Some(sig)) => ExitStatus::Signal(sig),
                    (None, None) => ExitStatus::Code(0),
                },
            )),
            Ok(None) => Ok(None),
            Err(e) => Err(Error::io(
                format!("waiting for process {}", self.child.id()),
                e.into(),
            )),
        }
    }

    fn kill(&mut self) {
        kill_group(self.child.id() as i32, Signal::KILL);
        let _ = self.reap();
    }

    fn release(&mut self) {
        let _ = self.reap();
    }

    fn classify(&mut self, status: ExitStatus, seen: &Seen<'_>) -> Result<(ExitStatus, Started)> {
        match &mut self.classify {
            Some(classify) => classify(status, seen),
            None => Ok((status, Started::Yes)),
        }
    }

    fn transport_lines(&self) -> Option<fn(&[u8]) -> bool> {
        self.transport_lines
    }
}

impl Drop for ProcessSession {
    fn drop(&mut self) {
        if self.registration.is_some() {
            // Never leave a child behind, whatever path dropped us.
            kill_group(self.child.id() as i32, Signal::KILL);
            let _ = self.reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimpleJob;
    use std::time::Duration;

    /// The session id of the `sh` that `spawn_process` starts, read from its own `/proc` entry,
    /// and its pid.
    fn session_and_pid(new_session: bool) -> (String, String) {
        let argv = [
            "sh",
            "-c",
            "read -r stat < /proc/$$/stat; echo \"$$ $stat\"",
        ];
        let cmd = Cmd::new(argv);
        let options = ProcessOptions {
            new_session,
            ..ProcessOptions::default()
        };
        let job = SimpleJob::with_timeout(Duration::from_secs(10));
        let out = spawn_process(&argv, &cmd, &job, options)
            .unwrap()
            .wait_with_output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let pid = text.split(' ').next().unwrap().to_string();
        // After the command name: state ppid pgrp session …
        let fields: Vec<&str> = text[text.rfind(')').unwrap() + 2..].split(' ').collect();
        (fields[3].to_string(), pid)
    }

    #[test]
    fn a_child_leads_a_session_of_its_own_only_when_asked() {
        let (session, pid) = session_and_pid(true);
        assert_eq!(session, pid);
        let (session, pid) = session_and_pid(false);
        assert_ne!(session, pid, "a process group of its own, in our session");
    }

    fn watched() -> ProcessOptions {
        ProcessOptions {
            stdio: StdioOptions {
                relay_inherit: true,
                watch_stderr: Some(1024),
                ..StdioOptions::default()
            },
            ..ProcessOptions::default()
        }
    }

    #[test]
    fn waiting_after_working_the_pipes_never_waits_on_an_unread_watched_stderr() {
        // 200 KiB on a watched stderr that the caller never reads, while it reads stdout: the
        // background pump relays it into the caller's stderr pipe, which fills up; `wait`
        // must take the pump back and drain that pipe itself instead of waiting for the pump.
        let argv = ["sh", "-c", "head -c 204800 /dev/zero >&2; echo hi"];
        let job = SimpleJob::with_timeout(Duration::from_secs(20));
        let mut child = spawn_process(&argv, &Cmd::new(argv), &job, watched()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.take_stdout().unwrap(), &mut out).unwrap();
        assert_eq!(out, "hi\n");
        assert_eq!(child.wait().unwrap(), ExitStatus::Code(0));
    }

    #[test]
    fn a_collected_watched_stderr_comes_back_whole() {
        let argv = ["sh", "-c", "head -c 300000 /dev/zero >&2"];
        let job = SimpleJob::with_timeout(Duration::from_secs(20));
        let out = spawn_process(&argv, &Cmd::new(argv), &job, watched())
            .unwrap()
            .wait_with_output()
            .unwrap();
        assert_eq!(
            out.stderr.len(),
            300_000,
            "more than the watch keeps, all of it"
        );
    }

    #[test]
    fn a_second_wait_gives_what_the_first_saw() {
        let argv = ["sh", "-c", "exit 3"];
        let job = SimpleJob::with_timeout(Duration::from_secs(20));
        let cmd = Cmd::new(argv).check(false);
        let mut child = spawn_process(&argv, &cmd, &job, ProcessOptions::default()).unwrap();
        let first = child.wait().unwrap();
        assert_eq!(first, ExitStatus::Code(3));
        assert_eq!(
            child.wait().unwrap(),
            first,
            "not a second waitid on a reaped child"
        );
        assert_eq!(child.try_wait().unwrap(), Some(first));
        assert_eq!(child.started(), Some(Started::Yes));
    }
}
