//! Exit codes, one-line error messages on stderr, and the `host: ` prefixing of fan-out output.

use std::fmt;
use std::io::{self, IsTerminal, Write};

use conn_core::{Error, ExitStatus};

/// Exit code for usage errors, bad host names and bad options (nothing was started).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when `--timeout` expired (as GNU `timeout`).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code when the program to run (ssh, or the local command) does not exist.
pub const EXIT_NOT_FOUND: u8 = 127;
/// Exit code after SIGINT/SIGTERM/SIGHUP cancelled the work.
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code when ssh itself failed, as plain `ssh` reports it.
pub const EXIT_TRANSPORT: u8 = 255;

/// A failure that ends a subcommand: the exit code and a message for one line of stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The process exit code.
    pub code: u8,
    /// What went wrong (printed as one line).
    pub message: String,
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// Any other failure (exit 1).
    pub fn other(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// A failure whose message was already printed (with display lines that a one-line
    /// message cannot hold, such as a caret under a bad character): `main` prints nothing more.
    pub fn reported(code: u8) -> Self {
        Failure {
            code,
            message: String::new(),
        }
    }

    /// Whether the message was already printed ([`Failure::reported`]).
    pub fn is_reported(&self) -> bool {
        self.message.is_empty()
    }
}

impl From<Error> for Failure {
    /// Bad input (host names, options) becomes a usage error; the rest keep their own code.
    fn from(e: Error) -> Self {
        Failure {
            code: match e {
                Error::InvalidHost { .. } | Error::Config(_) => EXIT_USAGE,
                ref e => exit_code_of_error(e),
            },
            message: e.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code that stands for a remote (or local) command's status: the code itself, or
/// 128 + N for a command killed by signal N, as shells report it.
pub fn exit_code_of_status(status: ExitStatus) -> u8 {
    match status {
        ExitStatus::Code(c) => u8::try_from(c).unwrap_or(1),
        ExitStatus::Signal(s) => u8::try_from(128 + s).unwrap_or(255),
    }
}

/// The exit code that stands for an error of a command run through a pool.
pub fn exit_code_of_error(e: &Error) -> u8 {
    match e {
        Error::Exited { status, .. } => exit_code_of_status(*status).max(1),
        Error::Timeout { .. } => EXIT_TIMEOUT,
        Error::Cancelled { .. } => EXIT_INTERRUPTED,
        Error::ProgramNotFound { .. } => EXIT_NOT_FOUND,
        Error::Transport { .. } | Error::Connect { .. } | Error::SessionRefused { .. } => {
            EXIT_TRANSPORT
        }
        Error::InvalidHost { .. } | Error::Config(_) => EXIT_USAGE,
        _ => 1,
    }
}

/// Folds a (possibly multi-line) message into one line: lines joined with " | ", blank lines
/// and surrounding whitespace dropped.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Whether to colour stderr: a terminal, and `NO_COLOR` unset or empty.
pub fn stderr_color() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints `conn: error: <message>` as one line on stderr ("error" in red on a terminal).
pub fn print_error(message: &str) {
    let label = if stderr_color() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    };
    let _ = writeln!(io::stderr().lock(), "conn: {label}: {}", one_line(message));
}

/// Prints `conn: error: <message>` and then `lines` verbatim, each indented by two spaces:
/// the display of an error that points at a place in its input.
pub fn print_error_with(message: &str, lines: &[&str]) {
    print_error(message);
    let mut err = io::stderr().lock();
    for line in lines {
        let _ = writeln!(err, "  {line}");
    }
}

/// A reader that went away (`conn leases | head -1`) is not an error worth a message.
pub fn ignore_broken_pipe(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_map_like_a_shell() {
        assert_eq!(exit_code_of_status(ExitStatus::Code(0)), 0);
        assert_eq!(exit_code_of_status(ExitStatus::Code(42)), 42);
        assert_eq!(exit_code_of_status(ExitStatus::Signal(9)), 137);
        let timeout = Error::Timeout {
            command: "sleep 9".into(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(exit_code_of_error(&timeout), EXIT_TIMEOUT);
        let bad = Error::InvalidHost {
            input: "a b".into(),
            reason: "x",
        };
        assert_eq!(Failure::from(bad).code, EXIT_USAGE);
    }

    #[test]
    fn messages_fold_into_one_line() {
        assert_eq!(one_line("a\n\n  b  \nc\n"), "a | b | c");
    }
}
