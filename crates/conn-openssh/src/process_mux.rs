//! The process back end: one `ssh -S <socket> host <command>` client per command, over the
//! connection's master, and the control commands it asks the master with (`ssh -O check`,
//! `ssh -O exit`). It takes the endpoint's [`Config`] and the connection's ControlPath, not
//! the connection itself: the connection uses the back ends, never the reverse.
//!
//! ssh's stdout and stdin are the caller's (a pipe of conn's for [`Stream::Piped`], the
//! caller's own file for [`Stream::Fd`]: the master reads and writes them directly). Its
//! stderr always goes through a pipe of conn's whose start is kept, because an ssh client that
//! exits 255 tells its own failures only there; conn copies it on to where the caller wanted
//! it. An inherited stdout is relayed the same way, so that a master never keeps the caller's
//! own descriptors after a timeout killed the client.
//!
//! What exit 255 means here (docs/design.md#exit-255): ssh's mux client says on stderr, in its
//! own words, where in the exchange with the master it failed (OpenSSH's `mux.c`), and every
//! failure before the master had the whole session request and its three descriptors means
//! the command never started: the pool may run it again. Anything else is
//! [`Started::Unknown`]: the remote command may have exited 255 itself, or ssh may have lost the
//! master mid-command. Only the native mux tells the two apart.
//!
//! Whatever the status, it counts only if the master was still alive once the client had
//! exited and the pipes had closed ([`MasterId::fate`], docs/design.md#clean-end): a master
//! that dies after forwarding the exit status but before writing all the output makes its
//! client exit with that status all the same.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use conn_core::transport::{ProcessOptions, RemoteGroup, Seen, StdioOptions, spawn_process};
use conn_core::{
    Cmd, Error, ExitStatus, Job, Output, Program, RemoteChild, Result, Started, Stream, quote,
};

use crate::config::Config;
use crate::master::{Fate, MasterId};

/// How much of an ssh client's stderr is kept to classify its failure (room for `-v -v -v`
/// debug output before the line that matters).
const STDERR_KEEP: usize = 256 * 1024;

/// The first line ssh's mux client writes when the master refused the session (mux.c).
const REFUSED_PREFIX: &str = "mux_client_request_session: session request failed:";

/// First lines by which ssh's mux client says that the master never had the whole session
/// request with its three descriptors, so that nothing was started (OpenSSH 9.2's `mux.c`,
/// with where each is printed):
///
/// - it could not connect to the control socket, or it fell back to a connection of its own
///   (a missing socket is only a debug line), which `ProxyCommand=false` ends before anything is
///   sent: the fallback's banner exchange fails (`muxclient`, `sshconnect.c`, `kex.c`);
/// - the hello exchange or the alive check failed (`muxclient`,
///   `mux_client_request_alive`, `mux_client_request_session`), before any session request;
/// - writing the session request failed (`mux_client_request_session: write packet:`): the
///   master acts only on a whole packet;
/// - passing a descriptor failed (`mm_send_fd: sendmsg(N):`, then `send fds failed`): the
///   master starts nothing before it has all three;
/// - the master went away while the client waited for its answer (`read from master
///   failed:`), resetting the connection (it had not read the whole request: on Linux a socket
///   closed with unread data resets its peer) or closing it (a master writes its answer to the
///   mux client before the exec request leaves for sshd, in OpenSSH's `client_loop` from 8.4
///   on: without an answer, no exec request was sent);
/// - it refused the request (`Master refused session request:`).
const NEVER_STARTED_PREFIXES: [&str; 13] = [
    "Control socket connect(",
    "kex_exchange_identification:",
    "Connection closed by UNKNOWN",
    "ssh_exchange_identification:",
    "banner exchange: Connection to UNKNOWN",
    "muxclient: master hello exchange failed",
    "mux_client_request_alive:",
    "mux_client_request_session: master alive request failed",
    "mux_client_request_session: write packet:",
    "mm_send_fd: sendmsg(",
    "mux_client_request_session: send fds failed",
    "mux_client_request_session: read from master failed:",
    "Master refused session request:",
];

/// Starts `cmd` as an `ssh -S` client of the master on `socket` (when connections are reused).
/// `master()` tells which process that master is; it is asked unless `cmd` is a dry run.
pub(crate) fn spawn(
    config: &Config,
    socket: Option<&Path>,
    master: impl FnOnce() -> Result<Option<MasterId>>,
    cmd: &Cmd,
    job: &dyn Job,
) -> Result<RemoteChild> {
    let group = cmd.kills_remote().then(RemoteGroup::new);
    let argv = client_argv(config, socket, cmd, group.as_ref())?;
    let master = if cmd.is_dry_run() { None } else { master()? };
    let classify = Classify {
        endpoint: config.user_host.to_string(),
        argv: argv.clone(),
        master: master.zip(socket.map(PathBuf::from)),
    };
    spawn_process(
        &argv,
        cmd,
        job,
        ProcessOptions {
            stdio: StdioOptions {
                relay_inherit: true,
                watch_stderr: Some(STDERR_KEEP),
                remote_group: group,
            },
            classify: Some(Box::new(move |status, seen| classify.status(status, seen))),
            transport_lines: socket.is_some().then_some(is_ssh_own_line),
            endpoint: config.user_host.to_string(),
            // A client lives no longer than its command: std's cheaper posix_spawn path.
            new_session: false,
        },
    )
}

/// The client's argv for `cmd`; with `group`, the command goes as one shell line behind the
/// report of its process group (an argv quoted as ever; the line starts with `printf`, so it
/// needs no `--`).
fn client_argv(
    config: &Config,
    socket: Option<&Path>,
    cmd: &Cmd,
    group: Option<&RemoteGroup>,
) -> Result<Vec<OsString>> {
    match (group, cmd.program().remote_line()) {
        (Some(group), Some(line)) => {
            cmd.validate()?;
            session_argv(config, socket, &Cmd::shell(group.wrap(&line?)))
        }
        _ => session_argv(config, socket, cmd),
    }
}

/// The full argv of the process back end for `cmd`: ssh's options, `-S <socket>`, the host,
/// and the remote command: every argument of an argv quoted (as bytes) for the remote
/// shell, a shell line as it is (one argument: ssh sends it unchanged), or `-s` and a
/// subsystem's name. A `--` goes before a command whose first word starts with `-`, which
/// ssh would otherwise read as an option of its own.
pub(crate) fn session_argv(
    config: &Config,
    socket: Option<&Path>,
    cmd: &Cmd,
) -> Result<Vec<OsString>> {
    cmd.validate()?;
    let (remote, subsystem) = match cmd.program() {
        Program::Argv(argv) => (
            argv.iter()
                .map(|a| quote(a).map(|q| q.into_owned()))
                .collect::<Result<Vec<_>>>()?,
            false,
        ),
        Program::Shell(line) => (vec![line.clone()], false),
        Program::Subsystem(name) => (vec![name.clone()], true),
        other => {
            return Err(Error::Config(format!(
                "the OpenSSH transport cannot run {}",
                other.display()
            )));
        }
    };
    // A session client must never become a master itself, nor fall back to a connection of
    // its own when the master refuses a session or is gone: that would authenticate anew
    // behind the pool's back. ProxyCommand=false makes such a fallback fail at once with
    // exit 255, which run() turns into a retryable error. Without reuse, the caller's own
    // ssh_config must not make each command a master either (a backgrounded master would
    // hold the pipes we wait on). LogLevel=INFO (ssh's own default, which a user's
    // ssh_config may lower; `-v` and the caller's own `-oLogLevel` still win) keeps ssh's
    // one-line reports of why it never got a session on stderr: a fallback that
    // ProxyCommand=false ends is reported at INFO ("banner exchange: …"), and without it an
    // exit 255 that never started anything would read as one that may have run
    // (docs/design.md#exit-255).
    let mut extra: Vec<&str> = if socket.is_some() {
        vec![
            "-oControlMaster=no",
            "-oProxyCommand=false",
            "-oLogLevel=INFO",
        ]
    } else {
        vec!["-oControlMaster=no", "-oControlPath=none"]
    };
    if subsystem {
        extra.push("-s");
    }
    let dashes = remote
        .first()
        .is_some_and(|w| w.as_encoded_bytes().starts_with(b"-"));
    let tail = dashes
        .then(|| OsString::from("--"))
        .into_iter()
        .chain(remote);
    Ok(config.ssh_argv(socket, &extra, tail))
}

/// The `ssh … -S <socket> -O check <host>` command line that asks the master on `socket`
/// whether it is alive.
pub(crate) fn check_argv(config: &Config, socket: Option<&Path>) -> Vec<OsString> {
    config.ssh_argv(socket, &["-O", "check"], [])
}

/// Asks the master on `socket` whether it is alive, and its pid, with `ssh -O check` within
/// `job`. An answer also restarts the master's ControlPersist countdown.
pub(crate) fn check_master(config: &Config, socket: &Path, job: &dyn Job) -> Result<u32> {
    let argv = check_argv(config, Some(socket));
    let out = run_ssh(&argv, Stream::Piped, job)?;
    if out.status.success() {
        // "Master running (pid=N)"; should the words ever change, ask in-process.
        let text = String::from_utf8_lossy(&out.stderr);
        return match text
            .split_once("(pid=")
            .and_then(|(_, rest)| rest.split_once(')'))
            .and_then(|(pid, _)| pid.parse().ok())
        {
            Some(pid) => Ok(pid),
            None => Err(Error::Connect {
                endpoint: config.user_host.to_string(),
                message: format!(
                    "`ssh -O check` answered without the master's pid: {}",
                    conn_core::text::tail(text.trim(), 500)
                ),
            }),
        };
    }
    Err(Error::Connect {
        endpoint: config.user_host.to_string(),
        message: format!(
            "`ssh -O check` failed ({}): {}",
            out.status,
            conn_core::text::tail(String::from_utf8_lossy(&out.stderr).trim(), 500)
        ),
    })
}

/// Asks the master on `socket` to exit with `ssh -O exit`, within `job`.
pub(crate) fn exit_master(config: &Config, socket: &Path, job: &dyn Job) -> Result<()> {
    let argv = config.ssh_argv(Some(socket), &["-O", "exit"], []);
    let cmd = Cmd::new(&argv).check(true);
    let out = run_ssh(&argv, Stream::Piped, job)?;
    cmd.checked(out, "", &conn_core::display_line(&argv))
        .map(|_| ())
}

/// Runs an ssh control command (`-O check`, `-O exit`) to its end; stdout is discarded, stderr
/// goes where `stderr` says.
fn run_ssh(argv: &[OsString], stderr: Stream, job: &dyn Job) -> Result<Output> {
    let cmd = Cmd::new(argv)
        .stdout(Stream::Null)
        .stderr(stderr)
        .check(false);
    spawn_process(argv, &cmd, job, ProcessOptions::default())?.wait_with_output()
}

/// Whether `line` (of the client's stderr) may be ssh's own report of a session that never
/// started, or its debug output and version banner (`-v`) before one: a streaming wait holds
/// such lines back until the exit status tells.
fn is_ssh_own_line(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    let line = text.trim_end_matches(['\r', '\n']);
    line.starts_with("debug")
        || line.starts_with("OpenSSH_")
        || line.starts_with(REFUSED_PREFIX)
        || NEVER_STARTED_PREFIXES.iter().any(|p| line.starts_with(p))
}

/// Reads an ssh client's exit status.
pub(crate) struct Classify {
    pub(crate) endpoint: String,
    pub(crate) argv: Vec<OsString>,
    /// The master and its socket, when the client goes through one.
    pub(crate) master: Option<(MasterId, PathBuf)>,
}

impl Classify {
    pub(crate) fn status(
        &self,
        status: ExitStatus,
        seen: &Seen<'_>,
    ) -> Result<(ExitStatus, Started)> {
        let Some((master, socket)) = &self.master else {
            // A connection of its own: the client writes the output itself before it exits.
            let started = match status {
                ExitStatus::Code(255) | ExitStatus::Signal(_) => Started::Unknown,
                ExitStatus::Code(_) => Started::Yes,
            };
            return Ok((status, started));
        };
        if status == ExitStatus::Code(255) {
            self.never_started(seen)?;
        }
        // The client's own 255, or its death by a signal somebody else sent (conn's own kills
        // end as a timeout or a cancel before this): nothing says whether the command ran.
        let ambiguous = matches!(status, ExitStatus::Code(255) | ExitStatus::Signal(_));
        // The client exited after the control connection closed, and the pipes have closed:
        // the master's fate now tells a clean end from a death.
        match master.fate(socket) {
            Fate::Alive if ambiguous => Ok((status, Started::Unknown)),
            Fate::Alive => Ok((status, Started::Yes)),
            Fate::Died => Err(Error::Transport {
                endpoint: self.endpoint.clone(),
                command: conn_core::display_line(&self.argv),
                started: if ambiguous {
                    Started::Unknown
                } else {
                    Started::Yes
                },
                reason: format!(
                    "the ssh master (pid {}, {}) died before the output was complete (its \
                     client exited with {status}; what the command wrote may be cut short)",
                    master.pid,
                    socket.display()
                )
                .into(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            }),
        }
    }

    /// The error of an exit 255 that ssh's own first line shows never started anything.
    fn never_started(&self, seen: &Seen<'_>) -> Result<()> {
        let stderr = seen.stderr.unwrap_or_default();
        let text = String::from_utf8_lossy(stderr);
        // With -v, ssh's own version banner and debug lines come first.
        let Some(line) = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .find(|l| !l.starts_with("debug") && !l.starts_with("OpenSSH_"))
        else {
            return Ok(());
        };
        // A refused session never started, so nothing remote was written. (With stdout not
        // captured, the first stderr line is all there is to go by.)
        if !seen.stdout.is_none_or(<[u8]>::is_empty) {
            return Ok(());
        }
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
                reason: format!("ssh never got a session from the master: {line}").into(),
                stdout: Vec::new(),
                stderr: Vec::new(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A stand-in master: this very process, listening on a socket in a temporary directory.
    struct Master {
        _dir: tempfile::TempDir,
        _listener: UnixListener,
        socket: PathBuf,
    }

    fn master() -> Master {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let listener = UnixListener::bind(&socket).unwrap();
        Master {
            _dir: dir,
            _listener: listener,
            socket,
        }
    }

    fn classifier(m: &Master) -> Classify {
        Classify {
            endpoint: "u@h".into(),
            argv: vec!["ssh".into()],
            master: Some((MasterId::of(std::process::id()).unwrap(), m.socket.clone())),
        }
    }

    fn classify(stdout: Option<&[u8]>, stderr: &[u8]) -> Result<(ExitStatus, Started)> {
        classifier(&master()).status(
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
    fn every_failure_before_the_master_had_the_request_never_started() {
        // The lines OpenSSH 9.2's mux client prints before the master has the whole request
        // and its descriptors (each followed, where ssh falls back, by the kex lines).
        for first in [
            "mux_client_request_alive: write packet: Broken pipe",
            "muxclient: master hello exchange failed",
            "mux_client_request_session: master alive request failed",
            "mux_client_request_session: write packet: Broken pipe",
            "mm_send_fd: sendmsg(0): Broken pipe",
            "mux_client_request_session: read from master failed:",
            "Master refused session request: Permission denied",
            "banner exchange: Connection to UNKNOWN port 65535: Broken pipe",
        ] {
            let stderr = format!("{first}\r\nkex_exchange_identification: Connection closed\r\n");
            let err = classify(Some(b""), stderr.as_bytes()).unwrap_err();
            assert_eq!(err.started(), Started::No, "{first}: {err}");
            assert!(err.is_retryable(), "{first}");
            assert!(err.to_string().contains(first), "{err}");
        }
        // A silent 255 (the session had opened, then the master went): it may have run.
        assert!(matches!(
            classify(Some(b""), b""),
            Ok((ExitStatus::Code(255), Started::Unknown))
        ));
    }

    /// An endpoint `u@h` with connection reuse, and a ControlPath for it (the argv is all these
    /// tests look at: nothing listens there).
    fn endpoint(dir: &Path) -> (crate::OpenSsh, PathBuf) {
        let ssh = crate::OpenSsh::builder("u@h")
            .socket_dir(dir.join("s"))
            .build()
            .unwrap();
        (ssh, dir.join("s").join("control"))
    }

    #[test]
    fn a_shell_line_is_one_unquoted_argument_and_a_subsystem_is_dash_s() {
        let dir = tempfile::tempdir().unwrap();
        let (ssh, socket) = endpoint(dir.path());
        let tail = |cmd: &Cmd| -> Vec<OsString> {
            let argv = session_argv(ssh.config(), Some(&socket), cmd).unwrap();
            let prefix = ssh.ssh_command_prefix().len();
            assert_eq!(
                argv[prefix..prefix + 2],
                ["-S".into(), socket.clone().into_os_string()]
            );
            argv[prefix + 2..].to_vec()
        };
        let session = [
            "-oControlMaster=no",
            "-oProxyCommand=false",
            "-oLogLevel=INFO",
        ];
        let line = "printf '%s|' one 'two three' | tr a-z A-Z > \"$HOME/x\"";
        let mut expected: Vec<OsString> = session.iter().map(OsString::from).collect();
        expected.extend(["u@h", line].map(OsString::from));
        assert_eq!(tail(&Cmd::shell(line)), expected);
        let mut expected: Vec<OsString> = session.iter().map(OsString::from).collect();
        expected.extend(["-s", "u@h", "sftp"].map(OsString::from));
        assert_eq!(tail(&Cmd::subsystem("sftp")), expected);
        // A first word that starts with '-' would be one of ssh's own options: `--` ends them.
        let mut expected: Vec<OsString> = session.iter().map(OsString::from).collect();
        expected.extend(["u@h", "--", "-weird", "x"].map(OsString::from));
        assert_eq!(tail(&Cmd::new(["-weird", "x"])), expected);
        let mut expected: Vec<OsString> = session.iter().map(OsString::from).collect();
        expected.extend(["u@h", "--", "-n; true"].map(OsString::from));
        assert_eq!(tail(&Cmd::shell("-n; true")), expected);
        assert!(matches!(
            session_argv(ssh.config(), Some(&socket), &Cmd::shell("")),
            Err(Error::EmptyCommand)
        ));
    }

    #[test]
    fn with_kill_remote_the_command_goes_as_one_line_behind_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let (ssh, socket) = endpoint(dir.path());
        let config = ssh.config();
        let socket = Some(socket.as_path());
        let group = RemoteGroup::new();
        let cmd = Cmd::new(["-weird", "a b"]).kill_remote(true);
        let argv = client_argv(config, socket, &cmd, Some(&group)).unwrap();
        let line = conn_core::join_quoted(&["-weird", "a b"]).unwrap();
        assert_eq!(argv.last().unwrap(), &group.wrap(&line));
        assert_eq!(
            argv[argv.len() - 2],
            "u@h",
            "no `--`: the line starts with printf"
        );
        let plain = client_argv(config, socket, &Cmd::new(["-weird", "a b"]), None).unwrap();
        assert_eq!(
            plain[plain.len() - 4..],
            ["u@h", "--", "-weird", "'a b'"].map(OsString::from)[..]
        );
        assert!(matches!(
            client_argv(
                config,
                socket,
                &Cmd::new(["a\0b"]).kill_remote(true),
                Some(&group)
            ),
            Err(Error::Unquotable { .. })
        ));
        assert!(matches!(
            client_argv(
                config,
                socket,
                &Cmd::subsystem("sftp").kill_remote(true),
                Some(&group)
            ),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn other_statuses_are_the_command_s_own() {
        let m = master();
        let c = classifier(&m);
        let seen = Seen {
            stderr: None,
            stdout: None,
        };
        assert_eq!(
            c.status(ExitStatus::Code(3), &seen).unwrap(),
            (ExitStatus::Code(3), Started::Yes)
        );
    }

    #[test]
    fn a_status_from_a_master_that_died_is_no_success() {
        let m = master();
        let mut c = classifier(&m);
        let seen = Seen {
            stderr: None,
            stdout: None,
        };
        // No longer listening: the master went away.
        c.master = Some((
            MasterId::of(std::process::id()).unwrap(),
            m.socket.with_extension("gone"),
        ));
        let err = c.status(ExitStatus::Code(0), &seen).unwrap_err();
        assert_eq!(err.started(), Started::Yes);
        assert!(!err.is_retryable());
        assert!(
            err.to_string()
                .contains("died before the output was complete"),
            "{err}"
        );
        let err = c.status(ExitStatus::Code(255), &seen).unwrap_err();
        assert_eq!(err.started(), Started::Unknown);
    }
}
