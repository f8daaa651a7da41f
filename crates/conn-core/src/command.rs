//! What to run and what came back: [`Cmd`] with its [`Program`], its stdio settings [`Stdin`]
//! and [`Stream`], [`Output`], [`ExitStatus`] and [`Started`].

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::status::{Output, Started};

/// What the command reads on standard input.
#[derive(Clone, Debug, Default)]
pub enum Stdin {
    /// `/dev/null` (the default: a remote command never waits for input by accident).
    #[default]
    Null,
    /// These bytes, then end of file: written by [`RemoteChild::wait`] or
    /// [`RemoteChild::wait_with_output`](crate::RemoteChild::wait_with_output) while they wait.
    ///
    /// [`RemoteChild::wait`]: crate::RemoteChild::wait
    Bytes(Vec<u8>),
    /// The calling process's own standard input.
    Inherit,
    /// A pipe whose write end [`RemoteChild::stdin`](crate::RemoteChild::stdin) hands out.
    Piped,
    /// This descriptor (a file, a pipe, a socket), shared: each spawn passes a duplicate, so
    /// the caller's copy stays theirs. With an ssh mux the master reads it directly: the bytes
    /// never pass through this process. A duplicate shares the file offset: for a file that
    /// every attempt (and every host) must read from its start, use [`Stdin::Path`].
    Fd(Arc<OwnedFd>),
    /// This file, opened anew (read-only) for each spawn: every attempt, the pool's retries
    /// included, reads it from its start with an offset of its own, as each host of a fan-out
    /// does. Opened like [`Stdin::Fd`] otherwise (an ssh master reads it directly). A file that
    /// cannot be opened is an error of the spawn, before anything runs.
    Path(std::path::PathBuf),
}

/// Where the command's standard output or standard error goes.
#[derive(Clone, Debug, Default)]
pub enum Stream {
    /// A pipe: [`RemoteChild::stdout`](crate::RemoteChild::stdout) /
    /// [`stderr`](crate::RemoteChild::stderr) read it, and
    /// [`run`](crate::ConnectionPool::run) collects it into [`Output`] (the default).
    #[default]
    Piped,
    /// Passed through to the calling process's own stream. Over ssh, conn copies it through a
    /// pipe of its own, so that a master never holds the caller's descriptor past the command's
    /// end; a local child gets the descriptor itself.
    Inherit,
    /// Discarded (`/dev/null`).
    Null,
    /// This descriptor (a file, a pipe, a socket), shared as with [`Stdin::Fd`].
    Fd(Arc<OwnedFd>),
}

macro_rules! from_fd {
    ($t:ty) => {
        impl From<OwnedFd> for $t {
            fn from(fd: OwnedFd) -> Self {
                Self::Fd(Arc::new(fd))
            }
        }
        impl From<File> for $t {
            fn from(file: File) -> Self {
                Self::Fd(Arc::new(file.into()))
            }
        }
    };
}
from_fd!(Stdin);
from_fd!(Stream);

impl PartialEq for Stdin {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Stdin::Bytes(a), Stdin::Bytes(b)) => a == b,
            (Stdin::Fd(a), Stdin::Fd(b)) => Arc::ptr_eq(a, b),
            (Stdin::Path(a), Stdin::Path(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl PartialEq for Stream {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Stream::Fd(a), Stream::Fd(b)) => Arc::ptr_eq(a, b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// What a [`Cmd`] runs: an argv, one shell command line, or an ssh subsystem. One of the three,
/// so that a command line is never taken for an argv (or the other way round) by mistake.
/// More kinds may come, so a `match` needs a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Program {
    /// A program and its arguments. Locally executed directly (no shell); remotely, every
    /// element is quoted for the remote shell and the words are joined with spaces.
    Argv(Vec<OsString>),
    /// One command line for a shell, sent as it is: remotely the login shell parses it (what
    /// `ssh host 'a | b'` sends); locally it runs as `sh -c <line>`.
    Shell(OsString),
    /// An ssh subsystem by name (`sftp`), requested instead of a command. Only ssh transports
    /// have subsystems: the local transport refuses one with [`Error::Config`].
    Subsystem(OsString),
}

impl Program {
    /// The program as one line for logs and messages: an argv quoted as the remote shell would
    /// read it ([`display_line`](crate::display_line)), a shell line as it is,
    /// `subsystem <name>` for a subsystem (lossy UTF-8).
    pub fn display(&self) -> String {
        match self {
            Program::Argv(argv) => crate::display_line(argv),
            Program::Shell(line) => line.to_string_lossy().into_owned(),
            Program::Subsystem(name) => format!("subsystem {}", name.to_string_lossy()),
        }
    }

    /// The argv, if this is one.
    pub fn argv(&self) -> Option<&[OsString]> {
        match self {
            Program::Argv(argv) => Some(argv),
            _ => None,
        }
    }

    /// The remote command line of an argv or a shell line: every argument quoted and joined
    /// with spaces, or the line as it is; `None` for a subsystem, which has no command line.
    pub fn remote_line(&self) -> Option<Result<OsString>> {
        match self {
            Program::Argv(argv) => Some(crate::join_quoted(argv)),
            Program::Shell(line) => Some(Ok(line.clone())),
            Program::Subsystem(_) => None,
        }
    }
}

/// A command to run, locally or on a remote host, with its I/O and error policy.
///
/// [`Cmd::new`] takes an argv, never passed through a local shell: on a remote host every
/// element is quoted for the remote POSIX shell, so `Cmd::new(["ls", "my file"])` lists one
/// file on either side. Arguments are bytes (`OsStr`): a file or dataset name that is not UTF-8
/// reaches the other side unchanged. [`Cmd::shell`] takes one command line that is sent as it
/// is (a pipeline), and [`Cmd::subsystem`] names an ssh subsystem ([`Program`]).
///
/// ```
/// use conn_core::{Cmd, Program, Stream};
/// let cmd = Cmd::new(["zfs", "list", "-H"]).stderr(Stream::Inherit).check(true);
/// assert!(matches!(cmd.program(), Program::Argv(argv) if argv[0] == "zfs"));
/// let pipeline = Cmd::shell("zfs send -i @a p/fs@b | mbuffer -q");
/// assert_eq!(pipeline.program().display(), "zfs send -i @a p/fs@b | mbuffer -q");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Cmd {
    program: Program,
    stdin: Stdin,
    stdout: Stream,
    stderr: Stream,
    check: bool,
    dry_run: bool,
    retry: RetryPolicy,
    send_env: bool,
    kill_remote: bool,
}

impl Cmd {
    /// A command with this argv: stdin null, stdout and stderr piped, a non-zero exit reported
    /// as [`Error::Exited`], not a dry run.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self::with_program(Program::Argv(
            argv.into_iter().map(|a| a.as_ref().to_owned()).collect(),
        ))
    }

    /// A command from one shell command line, sent as it is: the remote login shell parses it
    /// (pipes, redirections, `$VARIABLES` and all), as `ssh host '<line>'` would; the local
    /// transport runs `sh -c <line>`. Nothing is quoted: the caller builds the line (with
    /// [`quote`](crate::quote) for the words that need it). Same defaults as [`Cmd::new`].
    pub fn shell(line: impl AsRef<OsStr>) -> Self {
        Self::with_program(Program::Shell(line.as_ref().to_owned()))
    }

    /// An ssh subsystem by name (`sftp`) instead of a command, as `ssh -s host sftp` asks for
    /// one: its stdin and stdout speak the subsystem's protocol. Same defaults as
    /// [`Cmd::new`]; the local transport refuses it ([`Error::Config`]).
    pub fn subsystem(name: impl AsRef<OsStr>) -> Self {
        Self::with_program(Program::Subsystem(name.as_ref().to_owned()))
    }

    fn with_program(program: Program) -> Self {
        Cmd {
            program,
            stdin: Stdin::Null,
            stdout: Stream::Piped,
            stderr: Stream::Piped,
            check: true,
            dry_run: false,
            retry: RetryPolicy::pool_default(),
            send_env: false,
            kill_remote: false,
        }
    }

    /// Appends an argument: to an argv as one more element (quoted remotely); to a shell line
    /// after a space, as it is (the shell parses it, as ssh joins its arguments). A subsystem
    /// takes no arguments: one appended to it makes [`Cmd::validate`] fail.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        match &mut self.program {
            Program::Argv(argv) => argv.push(arg.as_ref().to_owned()),
            Program::Shell(line) | Program::Subsystem(line) => {
                line.push(" ");
                line.push(arg.as_ref());
            }
        }
        self
    }

    /// Sets standard input.
    pub fn stdin(mut self, stdin: impl Into<Stdin>) -> Self {
        self.stdin = stdin.into();
        self
    }

    /// Sets where standard output goes.
    pub fn stdout(mut self, stream: impl Into<Stream>) -> Self {
        self.stdout = stream.into();
        self
    }

    /// Sets where standard error goes.
    pub fn stderr(mut self, stream: impl Into<Stream>) -> Self {
        self.stderr = stream.into();
        self
    }

    /// Whether an unsuccessful exit is an error ([`Error::Exited`]); default true.
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    /// When true, the command is logged as "Would execute: …" and not run; the result is a
    /// successful empty [`Output`].
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// How the pool's `run` and `spawn` retry this command
    /// ([`RetryPolicy::pool_default`] unless set): one budget for everything they retry.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The caller says running this command again is safe (it is idempotent): the pool may then
    /// retry it also when it may have run, or ran and lost its transport before its output was
    /// complete, within its retry budget ([`RetryPolicy::idempotent`]).
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.retry = self.retry.idempotent(yes);
        self
    }

    /// How the pool retries this command.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Offers this process's environment to the session as an `ssh` client does: the ssh
    /// master passes on the variables its `SendEnv` names (from ssh_config or `-o SendEnv=…`)
    /// and the server keeps those its `AcceptEnv` names. Default false. The process back end's
    /// `ssh -S` client always does this (it has the environment); the native back end does it
    /// only when asked; a local command inherits the environment anyway.
    pub fn send_env(mut self, send: bool) -> Self {
        self.send_env = send;
        self
    }

    /// Whether the environment is offered to the session ([`Cmd::send_env`]).
    pub fn sends_env(&self) -> bool {
        self.send_env
    }

    /// When conn ends the command before it has ended by itself (the job is cancelled, its
    /// deadline passes, [`RemoteChild::kill`](crate::RemoteChild::kill), or a running child is
    /// dropped), also end the remote command: its process group gets `SIGTERM`. Default false:
    /// without it, closing an ssh session leaves a command without a tty running (sshd signals
    /// nothing).
    ///
    /// Over ssh the remote shell reports its process group first (one `printf` to stderr,
    /// which conn takes out of the output), and on the early end conn runs
    /// `kill -s TERM -- -<group>` on the same connection, within half a second, logging a
    /// failure rather than returning it. That needs a POSIX login shell on the remote host
    /// (sh, bash, dash, zsh, ksh), a connection to run on (children of a pool have one; see
    /// [`RemoteChild::hold_connection`](crate::RemoteChild::hold_connection)) and a master
    /// still alive; a process that leaves the group or ignores `SIGTERM` survives it
    /// (docs/design.md#cancel). A local command needs none of this: its own process group
    /// always gets `SIGKILL`. A subsystem has no shell to report its group: asking for both is
    /// an [`Error::Config`].
    pub fn kill_remote(mut self, yes: bool) -> Self {
        self.kill_remote = yes;
        self
    }

    /// Whether the remote command is ended too when conn ends it early ([`Cmd::kill_remote`]).
    pub fn kills_remote(&self) -> bool {
        self.kill_remote
    }

    /// What the command runs: its argv, its shell line or its subsystem.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The standard input setting.
    pub fn stdin_setting(&self) -> &Stdin {
        &self.stdin
    }

    /// The standard output setting.
    pub fn stdout_setting(&self) -> &Stream {
        &self.stdout
    }

    /// The standard error setting.
    pub fn stderr_setting(&self) -> &Stream {
        &self.stderr
    }

    /// Whether an unsuccessful exit is an error.
    pub fn is_checked(&self) -> bool {
        self.check
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Fails before anything runs for a program no back end can pass on: an empty argv or
    /// shell line ([`Error::EmptyCommand`]); an argument or line holding a NUL byte
    /// ([`Error::Unquotable`], naming it: neither `execve(2)` nor a remote shell can carry one);
    /// a subsystem name that is empty or holds whitespace or a NUL ([`Error::Config`]: a
    /// subsystem takes no arguments), or a subsystem with [`Cmd::kill_remote`] (no shell to
    /// report its process group).
    pub fn validate(&self) -> Result<()> {
        let nul = |arg: &OsStr, what: &str| Error::Unquotable {
            arg: arg.to_string_lossy().into_owned(),
            reason: format!("it contains a NUL byte, which no {what} can hold"),
        };
        match &self.program {
            Program::Argv(argv) => {
                if argv.is_empty() {
                    return Err(Error::EmptyCommand);
                }
                if let Some(bad) = argv.iter().find(|a| a.as_bytes().contains(&0)) {
                    return Err(nul(bad, "command argument"));
                }
            }
            Program::Shell(line) => {
                if line.is_empty() {
                    return Err(Error::EmptyCommand);
                }
                if line.as_bytes().contains(&0) {
                    return Err(nul(line, "command line"));
                }
            }
            Program::Subsystem(name) => {
                let bytes = name.as_bytes();
                if bytes.is_empty() || bytes.iter().any(|b| b.is_ascii_whitespace() || *b == 0) {
                    return Err(Error::Config(format!(
                        "subsystem name {:?} is empty or holds whitespace: give one name, such \
                         as \"sftp\" (a subsystem takes no arguments)",
                        name.to_string_lossy()
                    )));
                }
                if self.kill_remote {
                    return Err(Error::Config(format!(
                        "subsystem {:?} with kill_remote: a subsystem runs without a shell to \
                         report its process group, so conn cannot end it remotely; drop \
                         kill_remote, or run the program as a command",
                        name.to_string_lossy()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Applies the check policy to a finished command: with `check` on, an unsuccessful exit
    /// becomes [`Error::Exited`] carrying the status and captured output, and a status the
    /// transport cannot tell from its own failure ([`Started::Unknown`]) becomes
    /// [`Error::Transport`]. `command_line` is the line named in the error.
    pub fn checked(&self, output: Output, endpoint: &str, command_line: &str) -> Result<Output> {
        if !self.check {
            return Ok(output);
        }
        check_output(output, endpoint, command_line)
    }
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

/// The check policy itself: `Ok` for success, else the error that fits the output.
pub(crate) fn check_output(output: Output, endpoint: &str, command_line: &str) -> Result<Output> {
    {
        if output.status.success() {
            return Ok(output);
        }
        if output.started == Started::Unknown {
            return Err(Error::Transport {
                endpoint: endpoint.to_string(),
                command: command_line.to_string(),
                started: Started::Unknown,
                reason: format!(
                    "it ended with {}, which the transport cannot tell from its own failure",
                    output.status
                )
                .into(),
                stdout: output.stdout,
                stderr: output.stderr,
            });
        }
        Err(Error::Exited {
            command: CommandName {
                endpoint: endpoint.to_string(),
                line: command_line.to_string(),
            }
            .to_string(),
            status: output.status,
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ExitStatus;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn non_utf8_arguments_are_kept_and_nul_is_refused_by_name() {
        let name = OsString::from_vec(b"tank/caf\xe9".to_vec());
        let cmd = Cmd::new([OsStr::new("zfs"), &name]);
        assert_eq!(cmd.program().argv().unwrap()[1], name);
        cmd.validate().unwrap();
        let err = Cmd::new(["echo", "a\0b"]).validate().unwrap_err();
        assert!(matches!(err, Error::Unquotable { ref arg, .. } if arg == "a\0b"));
        assert!(matches!(
            Cmd::new(Vec::<&str>::new()).validate(),
            Err(Error::EmptyCommand)
        ));
    }

    #[test]
    fn a_shell_line_is_sent_as_it_is_and_a_subsystem_takes_no_arguments() {
        let cmd = Cmd::shell("printf '%s|' one")
            .arg("'two three'")
            .arg("$HOME");
        assert_eq!(
            cmd.program(),
            &Program::Shell("printf '%s|' one 'two three' $HOME".into())
        );
        assert_eq!(
            cmd.program().remote_line().unwrap().unwrap(),
            "printf '%s|' one 'two three' $HOME"
        );
        cmd.validate().unwrap();
        let argv = Cmd::new(["echo", "a b"]).arg("$HOME");
        assert_eq!(
            argv.program().remote_line().unwrap().unwrap(),
            "echo 'a b' '$HOME'"
        );
        assert!(matches!(
            Cmd::shell("").validate(),
            Err(Error::EmptyCommand)
        ));
        assert!(matches!(
            Cmd::shell("echo a\0b").validate(),
            Err(Error::Unquotable { .. })
        ));
        let sftp = Cmd::subsystem("sftp");
        sftp.validate().unwrap();
        assert!(sftp.program().remote_line().is_none());
        assert_eq!(sftp.program().display(), "subsystem sftp");
        let err = Cmd::subsystem("sftp")
            .kill_remote(true)
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(ref m) if m.contains("\"sftp\" with kill_remote")),
            "{err}"
        );
        Cmd::shell("sleep 1 &")
            .kill_remote(true)
            .validate()
            .unwrap();
        for bad in [Cmd::subsystem(""), Cmd::subsystem("sftp").arg("-e")] {
            let err = bad.validate().unwrap_err();
            assert!(
                matches!(err, Error::Config(ref m) if m.contains("takes no arguments")),
                "{err}"
            );
        }
    }

    #[test]
    fn check_separates_a_failed_command_from_an_unsure_status() {
        let cmd = Cmd::new(["x"]);
        let out = |started| Output {
            status: ExitStatus::Code(255),
            stdout: b"partial".to_vec(),
            stderr: vec![],
            started,
        };
        let err = cmd.checked(out(Started::Yes), "h", "x").unwrap_err();
        assert!(matches!(err, Error::Exited { .. }));
        let err = cmd.checked(out(Started::Unknown), "h", "x").unwrap_err();
        assert!(
            matches!(err, Error::Transport { started: Started::Unknown, ref stdout, .. } if stdout == b"partial")
        );
        assert!(
            !err.is_retryable(),
            "a command that may have run is never retried"
        );
        let kept = cmd
            .check(false)
            .checked(out(Started::Unknown), "h", "x")
            .unwrap();
        assert_eq!(kept.stdout, b"partial");
    }
}
