//! The process back end: one `ssh -S <socket> host <command>` client per command, over the
//! connection's master.
//!
//! ssh's stdout and stdin are the caller's (a pipe of conn's for [`Stream::Piped`], the
//! caller's own file for [`Stream::Fd`]: the master reads and writes them directly). Its
//! stderr always goes through a pipe of conn's whose start is kept, because an ssh client that
//! exits 255 tells its own failures only there; conn copies it on to where the caller wanted
//! it. An inherited stdout is relayed the same way, so that a master never keeps the caller's
//! own descriptors after a timeout killed the client.
//!
//! What exit 255 means here (docs/design.md#exit-255): when the first line ssh wrote that is not
//! debug output is its own report of a failed mux session ("session request failed", a control
//! socket it could not connect to, or the fallback connection that `ProxyCommand=false` makes
//! fail at once), and nothing reached stdout, the command never started and the pool may run it
//! again. Anything else is [`Started::Unknown`]: the remote command may have exited 255 itself,
//! or ssh may have lost the master mid-command. Only the native mux tells the two apart.

use std::ffi::OsString;

use conn_core::transport::{ProcessOptions, Seen, StdioOptions, spawn_process};
use conn_core::{Cmd, Error, ExitStatus, Job, RemoteChild, Result, Started};

#[cfg(doc)]
use conn_core::Stream;

use crate::connection::OpenSshConnection;

/// How much of an ssh client's stderr is kept to classify its failure (room for `-v -v -v`
/// debug output before the line that matters).
const STDERR_KEEP: usize = 256 * 1024;

/// The first line ssh's mux client writes when the master refused the session (mux.c).
const REFUSED_PREFIX: &str = "mux_client_request_session: session request failed:";

/// First lines by which ssh says that it never reached a master: it could not connect to the
/// control socket (mux.c), or it fell back to a connection of its own, which
/// `ProxyCommand=false` ends before anything is sent (sshconnect.c, ssh.c).
const NEVER_STARTED_PREFIXES: [&str; 4] = [
    "Control socket connect(",
    "kex_exchange_identification:",
    "Connection closed by UNKNOWN",
    "ssh_exchange_identification:",
];

/// Starts `cmd` as an `ssh -S` client of `conn`'s master.
pub(crate) fn spawn(conn: &OpenSshConnection, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild> {
    let argv = conn.session_argv(cmd)?;
    let classify = Classify {
        endpoint: conn.endpoint(),
        argv: argv.clone(),
        reuses_master: conn.control.is_some(),
    };
    spawn_process(
        &argv,
        cmd,
        job,
        ProcessOptions {
            stdio: StdioOptions {
                relay_inherit: true,
                watch_stderr: Some(STDERR_KEEP),
            },
            classify: Some(Box::new(move |status, seen| classify.status(status, seen))),
            endpoint: conn.endpoint(),
            // A client lives no longer than its command: std's cheaper posix_spawn path.
            new_session: false,
        },
    )
}

/// Reads an ssh client's exit status.
pub(crate) struct Classify {
    pub(crate) endpoint: String,
    pub(crate) argv: Vec<OsString>,
    pub(crate) reuses_master: bool,
}

impl Classify {
    pub(crate) fn status(
        &self,
        status: ExitStatus,
        seen: &Seen<'_>,
    ) -> Result<(ExitStatus, Started)> {
        if status != ExitStatus::Code(255) {
            return Ok((status, Started::Yes));
        }
        let stderr = seen.stderr.unwrap_or_default();
        let text = String::from_utf8_lossy(stderr);
        // With -v, ssh's own version banner and debug lines come first.
        let first = text
            .lines()
            .find(|l| !l.starts_with("debug") && !l.starts_with("OpenSSH_"));
        // A refused session never started, so nothing remote was written. (With stdout not
        // captured, the first stderr line is all there is to go by.)
        let nothing_written = seen.stdout.is_none_or(<[u8]>::is_empty);
        if self.reuses_master
            && nothing_written
            && let Some(line) = first
        {
            if let Some(reason) = line.strip_prefix(REFUSED_PREFIX) {
                return Err(Error::SessionRefused {
                    endpoint: self.endpoint.clone(),
                    message: reason.trim().to_string(),
                });
            }
            if NEVER_STARTED_PREFIXES.iter().any(|p| line.starts_with(p)) {
                return Err(Error::Transport {
                    endpoint: self.endpoint.clone(),
                    command: conn_core::display_line(&self.argv),
                    started: Started::No,
                    stdout: Vec::new(),
                    stderr: stderr.to_vec(),
                });
            }
        }
        Ok((status, Started::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(stdout: Option<&[u8]>, stderr: &[u8]) -> Result<(ExitStatus, Started)> {
        Classify {
            endpoint: "u@h".into(),
            argv: vec!["ssh".into()],
            reuses_master: true,
        }
        .status(
            ExitStatus::Code(255),
            &Seen {
                stderr: Some(stderr),
                stdout,
            },
        )
    }

    #[test]
    fn only_ssh_s_own_refusal_line_makes_a_refused_session() {
        let refused = b"mux_client_request_session: session request failed: Session open \
                        refused by peer\r\nkex_exchange_identification: Connection closed\r\n";
        assert!(matches!(
            classify(Some(b""), refused),
            Err(Error::SessionRefused { message, .. }) if message == "Session open refused by peer"
        ));
        let mut verbose =
            b"OpenSSH_9.2p1 Debian-2+deb12u6, OpenSSL 3.0.19 27 Jan 2026\r\ndebug1: Reading configuration data\n"
                .to_vec();
        verbose.extend_from_slice(refused);
        assert!(matches!(
            classify(Some(b""), &verbose),
            Err(Error::SessionRefused { .. })
        ));
        // A remote command that ran and printed the same words is no refusal: retrying it would
        // run it again.
        let remote = b"rm: done\nmux_client_request_session: session request failed: x\n";
        assert!(matches!(
            classify(Some(b""), remote),
            Ok((ExitStatus::Code(255), Started::Unknown))
        ));
        assert!(matches!(
            classify(Some(b"out"), refused),
            Ok((_, Started::Unknown))
        ));
        assert!(matches!(
            classify(
                Some(b""),
                b"channel 0: open failed: administratively prohibited\n"
            ),
            Ok((_, Started::Unknown))
        ));
    }

    #[test]
    fn a_master_that_was_gone_before_the_session_is_not_started() {
        let gone = b"Control socket connect(/tmp/s): Connection refused\r\n\
                     kex_exchange_identification: Connection closed by remote host\r\n";
        let err = classify(None, gone).unwrap_err();
        assert_eq!(err.started(), Started::No);
        assert!(err.is_retryable());
        let fallback = b"kex_exchange_identification: Connection closed by remote host\r\n";
        assert!(classify(Some(b""), fallback).unwrap_err().is_retryable());
        assert!(
            classify(Some(b"partial"), fallback).is_ok(),
            "something reached stdout: the command may have run"
        );
    }

    #[test]
    fn other_statuses_are_the_command_s_own() {
        let c = Classify {
            endpoint: "u@h".into(),
            argv: vec![],
            reuses_master: true,
        };
        let seen = Seen {
            stderr: None,
            stdout: None,
        };
        assert_eq!(
            c.status(ExitStatus::Code(3), &seen).unwrap(),
            (ExitStatus::Code(3), Started::Yes)
        );
    }
}
