//! One pooled OpenSSH connection: a leased ControlMaster socket, its refresh, and the dispatch
//! of each command to its back end (`dispatch.rs`). The back ends, the master's start and the
//! ssh command lines sit below it (`process_mux.rs`, `native_mux/`, `master.rs`, `config.rs`):
//! a connection uses them, and none of them knows a connection.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::ffi::OsString;

use conn_core::{CappedJob, Cmd, Connection, Error, Job, RemoteChild, Result, SimpleJob};
use conn_lease::{Lease, SocketState, probe_socket};

use crate::config::Config;
use crate::master::{Fate, MasterId, job_still_running};

mod dispatch;
mod refresh;

use refresh::RefreshState;

/// Upper bound for `ssh -O check`: a hung master must not hang the caller.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for `ssh -O exit` at shutdown.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection of an [`OpenSsh`](crate::OpenSsh) pool.
///
/// With connection reuse on (the default) it owns a lease on a ControlPath name, and runs every
/// command over the master behind that socket, which [`Connection::refresh`] keeps alive: as
/// `ssh <options> -S <socket> <user@host> <quoted argv>` ([`Mux::Process`](crate::Mux)), or
/// in-process over the socket ([`Mux::Native`](crate::Mux)).
#[derive(Debug)]
pub struct OpenSshConnection {
    pub(crate) config: Arc<Config>,
    pub(crate) control: Option<Control>,
}

#[derive(Debug)]
pub(crate) struct Control {
    pub(crate) socket: PathBuf,
    /// The master's `-E` log file: its diagnostics, never a pipe anyone waits on.
    log: PathBuf,
    lease: Mutex<Option<Lease>>,
    /// The per-connection refresh state (docs/design.md#refresh). Held only to read and update
    /// it, never across a system call of the fast path: the sessions of one master do not wait
    /// for each other's probe. A slow refresh marks itself in progress and runs unlocked, while
    /// other threads wait on `refreshed` within their own deadlines.
    refresh: Mutex<RefreshState>,
    refreshed: Condvar,
    /// When this process last stamped the socket's mtime, as milliseconds since `born` plus
    /// one (0: never): claimed with a compare-and-swap, so one thread a second touches.
    touched: AtomicU64,
    born: Instant,
    /// The master process behind the socket, once known: learnt from its answer to an alive
    /// check (the slow path's, or one asked for the first session of a connection that took
    /// the fast path on a fresh stamp), forgotten when a new master is started. Sessions judge
    /// their end by its fate (docs/design.md#clean-end).
    master: Mutex<Option<MasterId>>,
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
            refresh: Mutex::new(RefreshState::default()),
            refreshed: Condvar::new(),
            touched: AtomicU64::new(0),
            born: Instant::now(),
            master: Mutex::new(None),
        });
        OpenSshConnection { config, control }
    }

    /// The ControlPath of this connection's master, if connections are reused.
    pub fn control_path(&self) -> Option<&Path> {
        self.control.as_ref().map(|c| c.socket.as_path())
    }

    /// Whether a master holds this connection's control socket right now: the in-process probe
    /// of the refresh fast path ([`conn_lease::probe_socket`]), microseconds where
    /// `ssh -O check` takes milliseconds. It never blocks, spawns nothing, changes nothing and
    /// does not wake the master; `false` without connection reuse, and for a missing or stale
    /// socket.
    pub fn master_is_listening(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|control| probe_socket(&control.socket) == SocketState::Live)
    }

    /// Whether this connection's master is still serving: the same process (its pid, from its
    /// answer to an alive check, and its start time) alive, not exiting, and listening on the
    /// socket. It is the check that ends every session, telling a clean end from a master's
    /// death (docs/design.md#clean-end), public for diagnostics and `conn bench`. Asks the
    /// master for its pid first when it is not known yet; `false` without connection reuse.
    pub fn master_still_serving(&self, job: &dyn Job) -> Result<bool> {
        let (Some(control), Some(master)) = (&self.control, self.master(job)?) else {
            return Ok(false);
        };
        Ok(master.fate(&control.socket) == Fate::Alive)
    }

    /// The log file of this connection's master (ssh's `-E`), if connections are reused.
    pub fn master_log_path(&self) -> Option<&Path> {
        self.control.as_ref().map(|c| c.log.as_path())
    }

    /// The whole command line the process back end spawns to run `cmd` on this connection:
    /// the program and its options, `-S <socket>` with the options that keep the client from
    /// becoming or bypassing a master, the host, then each argument of `cmd` quoted (as bytes)
    /// for the remote shell, or a [`Cmd::shell`] line unquoted as one argument, or `-s` and the
    /// name of a [`Cmd::subsystem`] (without connection reuse: the options that make it a
    /// connection of its own). It refreshes the connection first, so the master behind the
    /// socket is live.
    ///
    /// For callers that build their own pipelines (`zfs send | ssh … zfs receive`), or a
    /// benchmark's hand-spawned baseline. Keep the connection (the pool's guard) until the
    /// process ends: the pool counts the session against the master's capacity meanwhile.
    ///
    /// ```no_run
    /// use conn_core::{Cmd, ConnectionPool, SimpleJob};
    /// use conn_openssh::OpenSsh;
    /// let pool = ConnectionPool::new(OpenSsh::builder("backup@db-1").build()?, "shared", 8)?;
    /// let job = SimpleJob::new();
    /// let conn = pool.get(&job)?;
    /// let argv = conn.command_line(&Cmd::new(["zfs", "receive", "tank/x"]), &job)?;
    /// // ["ssh", …, "-S", "<socket>", "-oControlMaster=no", …, "backup@db-1", "zfs", …]
    /// let status = std::process::Command::new(&argv[0]).args(&argv[1..]).status()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn command_line(&self, cmd: &Cmd, job: &dyn Job) -> Result<Vec<OsString>> {
        let argv = crate::process_mux::session_argv(&self.config, self.control_path(), cmd)?;
        self.refresh(job)?;
        Ok(argv)
    }

    /// The `ssh … -S <socket> -O check <host>` command line the process back end spawns to ask
    /// this connection's master whether it is alive (the slow path of the refresh): for tools
    /// that measure it against the in-process probe.
    pub fn check_command_line(&self) -> Vec<OsString> {
        crate::process_mux::check_argv(&self.config, self.control_path())
    }

    pub(crate) fn endpoint(&self) -> String {
        self.config.user_host.to_string()
    }

    /// Asks the master whether it is alive (`ssh -O check`, or `MUX_C_ALIVE_CHECK` in-process
    /// with the native back end): `Ok(Ok(pid))` when it answered, else why not. An answer also
    /// restarts the master's ControlPersist countdown. The caller's own timeout or
    /// cancellation is an error, not a "no".
    fn check_master(
        &self,
        control: &Control,
        job: &dyn Job,
    ) -> Result<std::result::Result<u32, String>> {
        let capped = CappedJob::new(job, CHECK_TIMEOUT);
        let silence = || format!("no answer within {}s", CHECK_TIMEOUT.as_secs());
        let answer = match self.config.backend.check_master(self, control, &capped) {
            Ok(pid) => Ok(pid),
            Err(Error::Timeout { .. }) => Err(silence()),
            Err(e @ (Error::Cancelled { .. } | Error::ProgramNotFound { .. })) => return Err(e),
            Err(e) => Err(e.to_string()),
        };
        if answer.is_err() {
            job_still_running(job, &control.socket)?;
        }
        Ok(answer)
    }

    /// The master serving this connection's socket now: known since its last check or start,
    /// or asked for in-process (`MUX_C_ALIVE_CHECK`, one round trip) when the connection took
    /// the fast path on a fresh stamp. `None` without connection reuse. A master that does not
    /// answer is a retryable `Connect`: the command never started.
    pub(crate) fn master(&self, job: &dyn Job) -> Result<Option<MasterId>> {
        let Some(control) = &self.control else {
            return Ok(None);
        };
        if let Some(id) = lock(&control.master).clone() {
            return Ok(Some(id));
        }
        let capped = CappedJob::new(job, CHECK_TIMEOUT);
        let pid = dispatch::master_pid(self, control, &capped).map_err(|e| match e {
            e @ (Error::Cancelled { .. } | Error::Connect { .. }) => e,
            Error::Timeout { .. }
                if job.is_cancelled() || job.deadline().is_some_and(|d| d.expired()) =>
            {
                Error::Timeout {
                    command: format!(
                        "asking the ssh master on {} for its pid",
                        control.socket.display()
                    ),
                    timeout: job.deadline().map(|d| d.duration()).unwrap_or_default(),
                }
            }
            e => Error::Connect {
                endpoint: self.endpoint(),
                message: format!(
                    "the ssh master on {} does not say which process it is: {e}",
                    control.socket.display()
                ),
            },
        })?;
        Ok(Some(self.remember_master(control, pid)?))
    }

    /// Records `pid` as the master of `control`.
    fn remember_master(&self, control: &Control, pid: u32) -> Result<MasterId> {
        let id = MasterId::of(pid).map_err(|e| Error::Connect {
            endpoint: self.endpoint(),
            message: format!(
                "the ssh master on {} answered as pid {pid}, which is gone: {e}",
                control.socket.display()
            ),
        })?;
        *lock(&control.master) = Some(id.clone());
        Ok(id)
    }
}

impl Connection for OpenSshConnection {
    /// Starts `cmd` over this connection's master (refreshed by the pool before), through the
    /// back end chosen with [`OpenSshBuilder::mux`](crate::OpenSshBuilder::mux).
    fn spawn(&self, cmd: &Cmd, job: &dyn Job) -> Result<RemoteChild> {
        self.config.backend.spawn(self, cmd, job)
    }

    /// The refresh (docs/design.md#refresh): the fast path when the last slow check is recent
    /// and the socket is a live listener (microseconds); otherwise, one thread at a time, the
    /// slow path. Threads that find a slow refresh in progress wait for it within their own
    /// deadline and cancellation, then look again.
    fn refresh(&self, job: &dyn Job) -> Result<()> {
        self.refresh_control(job)
    }

    /// Called once, when the pool has shut down and the last command on this connection has
    /// ended: optionally `ssh -O exit`, then the lease goes back to `free/`.
    fn shutdown(&self) {
        let Some(control) = &self.control else { return };
        if self.config.exit_masters_on_shutdown
            && probe_socket(&control.socket) == SocketState::Live
        {
            let job = SimpleJob::with_timeout(EXIT_TIMEOUT);
            match self.config.backend.exit_master(self, control, &job) {
                Ok(()) => {
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

#[cfg(test)]
mod tests;
