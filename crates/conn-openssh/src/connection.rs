//! One pooled OpenSSH connection: a leased ControlMaster socket, its refresh, and the ssh
//! client invocation for each command.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conn_core::{
    CappedJob, Cmd, Connection, Error, ExitStatus, Job, Output, Result, SimpleJob, Stream,
    display_line, quote, run_process,
};
use conn_lease::Lease;

use crate::config::Config;
#[cfg(feature = "native-mux")]
use crate::config::Mux;
use crate::probe::{SocketState, probe};

/// Upper bound for `ssh -O check`: a hung master must not hang the caller.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for `ssh -O exit` at shutdown.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection of an [`OpenSsh`](crate::OpenSsh) pool.
///
/// With connection reuse on (the default) it owns a lease on a ControlPath name, and runs every
/// command as `ssh <options> -S <socket> <user@host> <quoted argv>` over the master behind that
/// socket, which [`Connection::refresh`] keeps alive.
#[derive(Debug)]
pub struct OpenSshConnection {
    config: Arc<Config>,
    control: Option<Control>,
}

#[derive(Debug)]
struct Control {
    socket: PathBuf,
    /// The master's `-E` log file: its diagnostics, never a pipe anyone waits on.
    log: PathBuf,
    lease: Mutex<Option<Lease>>,
    /// When the master was last confirmed alive the slow way; also the per-connection refresh
    /// lock of the specification.
    last_refresh: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OpenSshConnection {
    pub(crate) fn new(config: Arc<Config>, lease: Option<Lease>) -> Self {
        let control = lease.map(|lease| Control {
            socket: lease.socket_path().to_path_buf(),
            log: lease.log_path(),
            lease: Mutex::new(Some(lease)),
            last_refresh: Mutex::new(None),
        });
        OpenSshConnection { config, control }
    }

    /// The ControlPath of this connection's master, if connections are reused.
    pub fn control_path(&self) -> Option<&Path> {
        self.control.as_ref().map(|c| c.socket.as_path())
    }

    /// Whether a master listens on this connection's control socket right now: the in-process
    /// probe of the refresh fast path (the path is a socket file and a non-blocking Unix-stream
    /// connect to it succeeds), microseconds where `ssh -O check` takes milliseconds. It never
    /// blocks, spawns nothing and changes nothing; `false` without connection reuse, and for a
    /// missing, stale or momentarily busy (full backlog) socket.
    pub fn master_is_listening(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|control| probe(&control.socket) == SocketState::Live)
    }

    /// The log file of this connection's master (ssh's `-E`), if connections are reused.
    pub fn master_log_path(&self) -> Option<&Path> {
        self.control.as_ref().map(|c| c.log.as_path())
    }

    fn endpoint(&self) -> String {
        self.config.user_host.to_string()
    }

    /// `ssh <options> [-S <socket>] <extra> <user@host> <tail…>`
    fn ssh_argv(&self, extra: &[&str], tail: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut argv = self.config.base_args.clone();
        if let Some(c) = &self.control {
            argv.push("-S".into());
            argv.push(c.socket.to_string_lossy().into_owned());
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.push(self.config.user_host.to_string());
        argv.extend(tail);
        argv
    }

    /// The argv that runs `cmd` remotely, every element quoted for the remote shell.
    fn session_argv(&self, cmd: &Cmd) -> Result<Vec<String>> {
        let quoted = cmd
            .argv()
            .iter()
            .map(|a| quote(a).map(|q| q.into_owned()))
            .collect::<Result<Vec<_>>>()?;
        // A session client must never become a master itself, nor fall back to a connection of
        // its own when the master refuses a session or is gone: that would authenticate anew
        // behind the pool's back. ProxyCommand=false makes such a fallback fail at once with
        // exit 255, which run() turns into a retryable error.
        let extra: &[&str] = if self.control.is_some() {
            &["-oControlMaster=no", "-oProxyCommand=false"]
        } else {
            &[]
        };
        Ok(self.ssh_argv(extra, quoted))
    }

    /// ssh exits 255 when it (not the remote command) failed.
    fn transport_error(&self, argv: &[String], output: Output) -> Error {
        let text = String::from_utf8_lossy(&output.stderr);
        if text.contains("Session open refused by peer")
            || text.contains("administratively prohibited")
        {
            return Error::SessionRefused {
                endpoint: self.endpoint(),
                message: text
                    .lines()
                    .find(|l| l.contains("refused") || l.contains("prohibited"))
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            };
        }
        Error::Transport {
            endpoint: self.endpoint(),
            command: display_line(argv),
            stderr: output.stderr,
        }
    }

    /// Asks the master whether it is alive (`ssh -O check`, or `MUX_C_ALIVE_CHECK` in-process
    /// with the native back end): true when it answered. An answer also restarts the master's
    /// ControlPersist countdown.
    fn check_master(&self, control: &Control, job: &dyn Job) -> Result<bool> {
        #[cfg(feature = "native-mux")]
        if self.config.mux == Mux::Native {
            let timeout = job
                .deadline()
                .map_or(CHECK_TIMEOUT, |d| d.remaining().min(CHECK_TIMEOUT));
            return Ok(crate::mux::alive_check(&control.socket, timeout).is_ok());
        }
        let _ = control;
        let argv = self.ssh_argv(&["-O", "check"], []);
        let cmd = Cmd::new(argv.clone()).stdout(Stream::Null).check(false);
        match run_process(&argv, &cmd, &CappedJob::new(job, CHECK_TIMEOUT)) {
            Ok(out) => Ok(out.status.success()),
            Err(Error::Timeout { .. }) if !job.deadline().is_some_and(|d| d.expired()) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts a backgrounded master on this connection's socket. Its stdout and stderr are
    /// `/dev/null` and its diagnostics go to the `-E` log file: a master lives on long after
    /// this call and would otherwise hold any pipe we gave it open.
    fn start_master(&self, control: &Control, job: &dyn Job) -> Result<()> {
        let _ = fs::remove_file(&control.log); // -E appends: keep only this start's story
        let persist = format!(
            "-oControlPersist={}s",
            self.config.control_persist.as_secs()
        );
        let log = control.log.to_string_lossy().into_owned();
        let argv = self.ssh_argv(&["-M", &persist, "-E", &log], ["exit".to_string()]);
        let cmd = Cmd::new(argv.clone())
            .stdout(Stream::Null)
            .stderr(Stream::Null)
            .check(false);
        let out = run_process(&argv, &cmd, job)?;
        let state = probe(&control.socket);
        if out.status.success() && state == SocketState::Live {
            tracing::debug!(socket = %control.socket.display(), "started ssh master");
            return Ok(());
        }
        let diagnostics = fs::read_to_string(&control.log).unwrap_or_default();
        let diagnostics = diagnostics.trim();
        Err(Error::Connect {
            endpoint: self.endpoint(),
            message: format!(
                "ssh master on {} did not start ({}, socket {:?}){}{}; for details add -v -v -v \
                 (its output lands in {})",
                control.socket.display(),
                out.status,
                state,
                if diagnostics.is_empty() { "" } else { ": " },
                tail(diagnostics, 2000),
                control.log.display(),
            ),
        })
    }
}

/// The last `max` bytes of `text`, on a char boundary.
fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

impl Connection for OpenSshConnection {
    fn run(&self, cmd: &Cmd, job: &dyn Job) -> Result<Output> {
        cmd.ensure_not_empty()?;
        let output = match (self.config.mux, &self.control) {
            #[cfg(feature = "native-mux")]
            (Mux::Native, Some(control)) => {
                if !cmd.is_dry_run() {
                    self.refresh(job)?;
                }
                // Exit 255 here is the remote command's own: transport failures are errors.
                crate::mux::run_session(&control.socket, self.config.user_host.as_str(), cmd, job)?
            }
            _ => {
                let argv = self.session_argv(cmd)?;
                if !cmd.is_dry_run() {
                    self.refresh(job)?;
                }
                let output = run_process(&argv, cmd, job)?;
                if output.status == ExitStatus::Code(255) {
                    return Err(self.transport_error(&argv, output));
                }
                output
            }
        };
        if cmd.is_checked() && !output.status.success() {
            return cmd.checked(
                output,
                &format!("{}: {}", self.config.user_host, display_line(cmd.argv())),
            );
        }
        Ok(output)
    }

    /// The refresh of the specification (§6), under this connection's own lock:
    /// fast path when the last slow check is recent and the socket is a live listener
    /// (microseconds); otherwise `ssh -O check`, and failing that a new master.
    fn refresh(&self, job: &dyn Job) -> Result<()> {
        let Some(control) = &self.control else {
            return Ok(()); // no reuse: every command connects by itself
        };
        let mut last = lock(&control.last_refresh);
        let fresh_for = self
            .config
            .control_persist
            .saturating_sub(self.config.refresh_margin);
        if last.is_some_and(|t| t.elapsed() < fresh_for)
            && probe(&control.socket) == SocketState::Live
        {
            return Ok(());
        }
        let alive = match probe(&control.socket) {
            SocketState::Missing => false,
            SocketState::NotASocket => {
                return Err(Error::Config(format!(
                    "ControlPath {} exists but is not a socket: remove it",
                    control.socket.display()
                )));
            }
            SocketState::Stale => {
                remove_stale_socket(&control.socket)?;
                false
            }
            SocketState::Live | SocketState::Busy => {
                self.check_master(control, job)? || {
                    // It did not answer: remove the socket only if nobody listens on it now.
                    match probe(&control.socket) {
                        SocketState::Stale => remove_stale_socket(&control.socket)?,
                        SocketState::Missing => {}
                        _ => {
                            return Err(Error::Connect {
                                endpoint: self.endpoint(),
                                message: format!(
                                    "ssh master on {} is listening but does not answer `ssh -O \
                                     check` within {}s",
                                    control.socket.display(),
                                    CHECK_TIMEOUT.as_secs()
                                ),
                            });
                        }
                    }
                    false
                }
            }
        };
        if !alive {
            self.start_master(control, job)?;
        }
        *last = Some(Instant::now());
        if let Some(lease) = lock(&control.lease).as_ref()
            && let Err(e) = lease.touch_socket()
        {
            tracing::warn!(socket = %control.socket.display(), "cannot touch control socket: {e}");
        }
        Ok(())
    }

    fn shutdown(&self) {
        let Some(control) = &self.control else { return };
        if self.config.exit_masters_on_shutdown && probe(&control.socket) == SocketState::Live {
            let argv = self.ssh_argv(&["-O", "exit"], []);
            let cmd = Cmd::new(argv.clone()).stdout(Stream::Null).check(true);
            match run_process(&argv, &cmd, &SimpleJob::with_timeout(EXIT_TIMEOUT))
                .and_then(|out| cmd.checked(out, &display_line(&argv)))
            {
                Ok(_) => {
                    let _ = fs::remove_file(&control.log);
                }
                Err(e) => tracing::warn!(
                    "cannot stop ssh master on {}: {e}",
                    control.socket.display()
                ),
            }
        }
        if let Some(mut lease) = lock(&control.lease).take()
            && let Err(e) = lease.release()
        {
            tracing::warn!("cannot release lease of {}: {e}", control.socket.display());
        }
    }
}

fn remove_stale_socket(socket: &Path) -> Result<()> {
    tracing::debug!(socket = %socket.display(), "removing stale control socket");
    match fs::remove_file(socket) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            context: format!("removing stale control socket {}", socket.display()),
            source: e,
        }),
    }
}
