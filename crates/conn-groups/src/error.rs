//! What can go wrong: a configuration that cannot be read, and an upcall that fails.

use std::path::PathBuf;
use std::time::Duration;

/// A `groups.conf`, a `groups.conf.d` part or a YAML group file that ClusterShell would refuse
/// too (conn does not guess around it): each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A line that is not INI (or, for YAML, a syntax error at that line).
    #[error("{}:{line}: {what}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Its line (1-based; 0 when the whole file is at fault).
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A value that cannot be used.
    #[error("{}: [{section}] {key}: {what}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// Its section.
        section: String,
        /// The key.
        key: String,
        /// What is wrong.
        what: String,
    },
    /// Something else about the configuration (two sources of one name, a missing directory,
    /// a default source that does not exist).
    #[error("{}: {what}", path.display())]
    Invalid {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A file or directory that exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Why an upcall gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpcallError {
    /// `sh` could not be started.
    #[error("cannot start sh: {0}")]
    Spawn(std::io::Error),
    /// The command exited with a status other than 0 (or was killed by a signal).
    #[error("exited with {status}{}", detail(stderr))]
    Failed {
        /// `status 3` or `signal 9`.
        status: String,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// It ran past the time limit, and its process group was killed.
    #[error("did not finish within {} s (its process group was killed){}", .limit.as_secs_f64(), detail(stderr))]
    TimedOut {
        /// The limit.
        limit: Duration,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// It wrote more than conn keeps of an answer.
    #[error("wrote more than {limit} bytes (its process group was killed)")]
    TooLong {
        /// The most bytes kept.
        limit: usize,
    },
    /// Its answer is not UTF-8 text.
    #[error("wrote an answer that is not UTF-8 text")]
    NotText,
    /// conn was interrupted while it ran.
    #[error("was interrupted (its process group was killed)")]
    Interrupted,
    /// Reading its output or waiting for it failed.
    #[error("could not be read: {0}")]
    Io(std::io::Error),
}

fn detail(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}
