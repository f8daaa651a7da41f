//! How a command ended: [`ExitStatus`], [`Started`] (whether it ran at all) and [`Output`]. A
//! leaf: every other module may name these, and they name nothing of conn's.

use std::fmt;

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

/// Whether a command started: what decides if running it again is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Started {
    /// It provably never started (nothing ran remotely): a retry is safe.
    No,
    /// It ran (and maybe finished): running it again would run it twice.
    Yes,
    /// The transport cannot tell (the process back end's exit 255, a connection lost
    /// mid-command): treat as "may have run".
    Unknown,
}

impl Started {
    /// `"not_started"`, `"ran"` or `"unknown"`: for logs and machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            Started::No => "not_started",
            Started::Yes => "ran",
            Started::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Started::No => "the command did not start",
            Started::Yes => "the command ran",
            Started::Unknown => "the command may have run",
        })
    }
}

/// What a finished command produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Captured standard output (empty unless [`Stream::Piped`](crate::Stream::Piped)).
    pub stdout: Vec<u8>,
    /// Captured standard error (empty unless [`Stream::Piped`](crate::Stream::Piped)).
    pub stderr: Vec<u8>,
    /// [`Started::Yes`], except for a dry run ([`Started::No`]) and for a status the transport
    /// cannot tell from its own failure ([`Started::Unknown`]: the process back end's exit 255,
    /// seen only with `check(false)`).
    pub started: Started,
}

impl Output {
    /// The output of a command that was not run (dry run): success, nothing written.
    pub fn dry_run() -> Self {
        Output {
            status: ExitStatus::Code(0),
            stdout: Vec::new(),
            stderr: Vec::new(),
            started: Started::No,
        }
    }

    /// Standard output as text (lossy UTF-8).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}
