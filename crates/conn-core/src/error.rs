//! The one error type of conn.

use std::io;
use std::time::Duration;

use crate::status::{ExitStatus, Started};

/// Result alias used throughout conn.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when running a command through conn.
///
/// Each variant names the input that failed. [`Error::started`] tells whether the command
/// started, and [`Error::is_retryable`] follows it: only a failure of the transport itself
/// (connecting, a master that died, a session the server refused) where the command provably
/// never started is retryable, so that no retry loop ever runs a command twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The argv was empty: there is nothing to execute.
    #[error("empty command: argv must name at least a program")]
    EmptyCommand,

    /// A `[user@]host` string failed validation.
    #[error("invalid [user@]host {input:?}: {reason}")]
    InvalidHost {
        /// The rejected input, verbatim.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// An argument cannot be passed to a remote shell (it contains a NUL byte).
    #[error("argument {arg:?} cannot be quoted for a remote shell: {reason}")]
    Unquotable {
        /// The argument, verbatim.
        arg: String,
        /// Why quoting failed.
        reason: String,
    },

    /// A setting given to a transport or pool is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The program to execute was not found on `PATH` (or at the given path).
    #[error("program {program:?} not found: install it or give its full path")]
    ProgramNotFound {
        /// The program as given.
        program: String,
    },

    /// Starting the process failed for another reason.
    #[error("could not start {program:?}: {source}")]
    Spawn {
        /// The program as given.
        program: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// An I/O operation on a process, pipe, socket or file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path or command concerned.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The job's deadline passed before or while the command ran; its process group was killed.
    #[error("timeout of {} expired running: {command}", fmt_duration(*.timeout))]
    Timeout {
        /// The command line (shell-quoted).
        command: String,
        /// The job's original duration.
        timeout: Duration,
    },

    /// The job was cancelled; the command's process group was killed (or never started).
    #[error("job cancelled running: {command}")]
    Cancelled {
        /// The command line (shell-quoted).
        command: String,
    },

    /// The command exited unsuccessfully and the caller asked for that to be an error.
    #[error("command exited with {status}: {command}{}", stderr_tail(stderr))]
    Exited {
        /// The command line (shell-quoted).
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it wrote to stdout (empty unless captured).
        stdout: Vec<u8>,
        /// What it wrote to stderr (empty unless captured).
        stderr: Vec<u8>,
    },

    /// The transport failed (ssh exited 255, the master died or closed the session): retryable
    /// only when `started` is [`Started::No`].
    #[error(
        "transport to {endpoint} failed ({started}) running: {command}: {reason}{}",
        stderr_tail(stderr)
    )]
    Transport {
        /// The endpoint (`user@host`).
        endpoint: String,
        /// The command line (shell-quoted).
        command: String,
        /// Whether the command started before the transport failed.
        started: Started,
        /// What failed, in the transport's words (e.g. "the ssh master (pid 4242, …) died
        /// before the output was complete"). A `Box<str>` keeps [`Error`] small.
        reason: Box<str>,
        /// What the command wrote to stdout before the failure (when captured): kept, so that
        /// a caller can see how far a command that may have run got.
        stdout: Vec<u8>,
        /// What the transport (and the command, when captured) wrote to stderr.
        stderr: Vec<u8>,
    },

    /// No connection to the endpoint could be established (e.g. the ssh master did not start):
    /// retryable.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect {
        /// The endpoint (`user@host`).
        endpoint: String,
        /// What went wrong, with the transport's own diagnostics and a hint.
        message: String,
    },

    /// The server refused to open one more session on a live connection (sshd's
    /// `MaxSessions` reached, "administratively prohibited"): the command never started, so a
    /// retry is safe.
    #[error("session refused by {endpoint} (the command did not start): {message}")]
    SessionRefused {
        /// The endpoint (`user@host`).
        endpoint: String,
        /// The server's or master's message.
        message: String,
    },

    /// The pool was shut down; no new connection is handed out.
    #[error("connection pool {pool:?} is shut down")]
    PoolShutdown {
        /// The pool's name.
        pool: String,
    },

    /// No pool of that name exists in a [`ConnectionPools`](crate::ConnectionPools).
    #[error("no connection pool named {name:?} (known: {known})")]
    UnknownPool {
        /// The requested name.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },

    /// A resource the transport needs could not be set up (e.g. a socket lease).
    #[error("{context}: {source}")]
    Setup {
        /// What was being set up.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether running the same command again is safe and may succeed: a failure of the
    /// transport where the command provably never started ([`Error::Connect`],
    /// [`Error::SessionRefused`], [`Error::Transport`] with [`Started::No`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::SessionRefused { .. } => true,
            Error::Transport { started, .. } => *started == Started::No,
            _ => false,
        }
    }

    /// Whether the command started before this error: [`Started::Yes`] for a command that
    /// exited unsuccessfully, [`Started::Unknown`] for a timeout, a cancellation or an I/O
    /// failure (conn cannot always tell whether it came before the start), what the transport
    /// knows for [`Error::Transport`], and [`Started::No`] for everything that fails before a
    /// command is started.
    pub fn started(&self) -> Started {
        match self {
            Error::Exited { .. } => Started::Yes,
            Error::Transport { started, .. } => *started,
            Error::Timeout { .. } | Error::Cancelled { .. } | Error::Io { .. } => Started::Unknown,
            _ => Started::No,
        }
    }

    /// A short, stable name of the variant (`"exited"`, `"timeout"`, …): for machine-readable
    /// output and for grouping failures.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::EmptyCommand => "empty_command",
            Error::InvalidHost { .. } => "invalid_host",
            Error::Unquotable { .. } => "unquotable",
            Error::Config(_) => "config",
            Error::ProgramNotFound { .. } => "program_not_found",
            Error::Spawn { .. } => "spawn",
            Error::Io { .. } => "io",
            Error::Timeout { .. } => "timeout",
            Error::Cancelled { .. } => "cancelled",
            Error::Exited { .. } => "exited",
            Error::Transport { .. } => "transport",
            Error::Connect { .. } => "connect",
            Error::SessionRefused { .. } => "session_refused",
            Error::PoolShutdown { .. } => "pool_shutdown",
            Error::UnknownPool { .. } => "unknown_pool",
            Error::Setup { .. } => "setup",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:?}", d)
    }
}

/// The last line(s) of a captured stderr, for a one-line error message.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let tail = crate::text::tail(text, 500);
    let ellipsis = if tail.len() < text.len() { "…" } else { "" };
    format!(": {ellipsis}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_failures_are_retryable() {
        let transport = |started| Error::Transport {
            endpoint: "u@h".into(),
            command: "ssh".into(),
            started,
            reason: "ssh exited 255".into(),
            stdout: vec![],
            stderr: vec![],
        };
        assert!(transport(Started::No).is_retryable());
        assert!(!transport(Started::Unknown).is_retryable());
        assert!(!transport(Started::Yes).is_retryable());
        assert_eq!(transport(Started::Unknown).started(), Started::Unknown);
        assert!(
            Error::SessionRefused {
                endpoint: "h".into(),
                message: "no".into()
            }
            .is_retryable()
        );
        let exited = Error::Exited {
            command: "false".into(),
            status: ExitStatus::Code(1),
            stdout: vec![],
            stderr: b"boom\n".to_vec(),
        };
        assert!(!exited.is_retryable());
        assert_eq!(
            exited.to_string(),
            "command exited with exit code 1: false: boom"
        );
        assert!(!Error::EmptyCommand.is_retryable());
    }

    #[test]
    fn timeout_names_the_duration() {
        let e = Error::Timeout {
            command: "sleep 30".into(),
            timeout: Duration::from_millis(300),
        };
        assert_eq!(e.to_string(), "timeout of 300ms expired running: sleep 30");
        let e = Error::Timeout {
            command: "sleep 30".into(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(e.to_string(), "timeout of 5s expired running: sleep 30");
    }
}
