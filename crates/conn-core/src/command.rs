//! What to run and what came back: [`Cmd`], [`Output`], [`ExitStatus`].

use std::fmt;

use crate::error::{Error, Result};

/// What the command reads on standard input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Stdin {
    /// `/dev/null` (the default: a remote command never waits for input by accident).
    #[default]
    Null,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// The calling process's own standard input.
    Inherit,
}

/// Where the command's standard output or standard error goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stream {
    /// Collected into [`Output`] (the default).
    #[default]
    Capture,
    /// Passed through to the calling process's own stream.
    Inherit,
    /// Discarded (`/dev/null`).
    Null,
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// The exit code, if it exited rather than being killed.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(s: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            // Stopped/continued statuses are never returned by wait() without WUNTRACED.
            (None, None) => ExitStatus::Code(s.into_raw()),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// What a finished command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Captured standard output (empty unless [`Stream::Capture`]).
    pub stdout: Vec<u8>,
    /// Captured standard error (empty unless [`Stream::Capture`]).
    pub stderr: Vec<u8>,
}

impl Output {
    /// The output of a command that was not run (dry run): success, nothing written.
    pub fn dry_run() -> Self {
        Output {
            status: ExitStatus::Code(0),
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// Standard output as text (lossy UTF-8).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A command to run, locally or on a remote host, with its I/O and error policy.
///
/// The argv is never passed through a local shell. On a remote host every element is quoted
/// for the remote POSIX shell, so `Cmd::new(["ls", "my file"])` lists one file on either side.
///
/// ```
/// use conn_core::{Cmd, Stream};
/// let cmd = Cmd::new(["zfs", "list", "-H"]).stderr(Stream::Inherit).check(true);
/// assert_eq!(cmd.argv()[0], "zfs");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    argv: Vec<String>,
    stdin: Stdin,
    stdout: Stream,
    stderr: Stream,
    check: bool,
    dry_run: bool,
}

impl Cmd {
    /// A command with this argv: stdin null, stdout and stderr captured, a non-zero exit
    /// reported as [`Error::Exited`], not a dry run.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: Stdin::Null,
            stdout: Stream::Capture,
            stderr: Stream::Capture,
            check: true,
            dry_run: false,
        }
    }

    /// Sets standard input.
    pub fn stdin(mut self, stdin: Stdin) -> Self {
        self.stdin = stdin;
        self
    }

    /// Sets where standard output goes.
    pub fn stdout(mut self, stream: Stream) -> Self {
        self.stdout = stream;
        self
    }

    /// Sets where standard error goes.
    pub fn stderr(mut self, stream: Stream) -> Self {
        self.stderr = stream;
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

    /// The argv as given.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The standard input setting.
    pub fn stdin_setting(&self) -> &Stdin {
        &self.stdin
    }

    /// The standard output setting.
    pub fn stdout_setting(&self) -> Stream {
        self.stdout
    }

    /// The standard error setting.
    pub fn stderr_setting(&self) -> Stream {
        self.stderr
    }

    /// Whether an unsuccessful exit is an error.
    pub fn is_checked(&self) -> bool {
        self.check
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// Fails with [`Error::EmptyCommand`] for an empty argv.
    pub fn ensure_not_empty(&self) -> Result<()> {
        if self.argv.is_empty() {
            Err(Error::EmptyCommand)
        } else {
            Ok(())
        }
    }

    /// Applies the check policy to a finished command: with `check` on, an unsuccessful exit
    /// becomes [`Error::Exited`] carrying the status and captured output. `command_line` is the
    /// shell-quoted line named in the error.
    pub fn checked(&self, output: Output, command_line: &str) -> Result<Output> {
        if self.check && !output.status.success() {
            return Err(Error::Exited {
                command: command_line.to_string(),
                status: output.status,
                stdout: output.stdout,
                stderr: output.stderr,
            });
        }
        Ok(output)
    }
}
