//! The refresh of a connection (docs/design.md#refresh): the fast path (a recent refresh and a
//! live socket: return at once), and the slow path, one thread per connection at a time (ask
//! the master, else start one), whose failure the threads that waited for it share.

use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use conn_core::{Error, Job, Result};
use conn_lease::{SocketState, probe_socket};

use super::{Control, OpenSshConnection, lock};
use crate::master::{self, job_still_running};

/// How often the fast path stamps the socket at most: a later process only needs to know that
/// a refresh was recent, and a stamp older than the truth only makes it more careful.
const TOUCH_EVERY: Duration = Duration::from_secs(1);
/// How often a thread waiting for another's master start looks at its own job.
const WAIT_TICK: Duration = Duration::from_millis(50);

/// The refresh state of one connection, under `Control::refresh`.
#[derive(Debug, Default)]
pub(super) struct RefreshState {
    /// When a master was last confirmed alive the slow way.
    last: Option<Instant>,
    /// A thread is checking or starting the master right now.
    pub(super) in_progress: bool,
    /// Slow refreshes finished so far, and how the last one failed (if it did): threads that
    /// waited for an attempt take its failure instead of repeating a doomed master start each.
    pub(super) attempts: u64,
    last_failure: Option<Shared>,
    /// Threads waiting for the attempt in progress.
    pub(super) waiters: usize,
}

/// How a slow refresh failed, kept for the threads that waited for it as the same kind of
/// error: a typo in an option stays a `Config`, a missing ssh a `ProgramNotFound` (neither is
/// retryable, so no caller retries a master that can never start); everything else is the
/// retryable `Connect` it was.
#[derive(Debug, Clone)]
pub(super) enum Shared {
    Config(String),
    ProgramNotFound(String),
    Connect(String),
}

impl Shared {
    pub(super) fn of(e: &Error) -> Shared {
        match e {
            Error::Config(m) => Shared::Config(m.clone()),
            Error::ProgramNotFound { program } => Shared::ProgramNotFound(program.clone()),
            Error::Connect { message, .. } => Shared::Connect(message.clone()),
            other => Shared::Connect(other.to_string()),
        }
    }

    /// The error a waiter returns, saying whose attempt it was.
    pub(super) fn error(&self, endpoint: String) -> Error {
        const WHOSE: &str = "(the attempt of another thread on this connection)";
        match self {
            Shared::Config(m) => Error::Config(format!("{m} {WHOSE}")),
            Shared::ProgramNotFound(program) => Error::ProgramNotFound {
                program: program.clone(),
            },
            Shared::Connect(m) => Error::Connect {
                endpoint,
                message: format!("{m} {WHOSE}"),
            },
        }
    }
}

/// How a slow refresh ended, for the threads that waited for it.
pub(super) enum Outcome {
    Alive,
    /// The master could not be reached or started: waiters take this failure.
    Failed(Shared),
    /// The refreshing thread's own job ran out or was cancelled: no verdict on the master, so
    /// a waiter tries itself.
    NoVerdict,
}

/// Ends a slow refresh however it ends (a panic included): clears the in-progress mark, records
/// the outcome, and wakes the waiters.
pub(super) struct SlowRefresh<'a> {
    pub(super) control: &'a Control,
    pub(super) outcome: Outcome,
}

impl Drop for SlowRefresh<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.control.refresh);
        state.in_progress = false;
        match std::mem::replace(&mut self.outcome, Outcome::NoVerdict) {
            Outcome::Alive => {
                state.attempts += 1;
                state.last = Some(Instant::now());
                state.last_failure = None;
            }
            Outcome::Failed(why) => {
                state.attempts += 1;
                state.last_failure = Some(why);
            }
            Outcome::NoVerdict => {}
        }
        drop(state);
        self.control.refreshed.notify_all();
    }
}

impl OpenSshConnection {
    /// [`Connection::refresh`](conn_core::Connection::refresh) of an OpenSSH connection: the
    /// fast path when the last slow check is recent and the socket is a live listener
    /// (microseconds, with no lock held across the probe); otherwise, one thread at a time, the
    /// slow path. Threads that find a slow refresh in progress wait for it within their own
    /// deadline and cancellation, then look again.
    pub(super) fn refresh_control(&self, job: &dyn Job) -> Result<()> {
        let Some(control) = &self.control else {
            return Ok(()); // no reuse: every command connects by itself
        };
        let fresh_for = self
            .config
            .control_persist
            .saturating_sub(self.config.refresh_margin);
        let mut state = lock(&control.refresh);
        // The attempt count when this thread began to wait for another's slow refresh.
        let mut waited_from: Option<u64> = None;
        // The attempt count when this thread's own probe found no live master: the fast path
        // is tried again only once another attempt has ended.
        let mut probed_dead: Option<u64> = None;
        loop {
            if !state.in_progress {
                if state.last.is_none() {
                    // A connection new to this process: trust the stamp that the last refresh
                    // of any process left on the socket, as this process would its own.
                    state.last = recent_stamp(&control.socket, fresh_for);
                }
                if state.last.is_some_and(|t| t.elapsed() < fresh_for)
                    && probed_dead != Some(state.attempts)
                {
                    // The probe and the stamp run unlocked: a master's sessions must not queue
                    // behind each other's system calls. What the lock guarded (a recent enough
                    // refresh, none in progress) was read above; a master that dies after the
                    // probe is caught as it always was, by the session itself.
                    let seen = state.attempts;
                    drop(state);
                    if probe_socket(&control.socket) == SocketState::Live {
                        control.touch_if_due();
                        return Ok(());
                    }
                    probed_dead = Some(seen);
                    state = lock(&control.refresh);
                    continue;
                }
                if let Some(start) = waited_from
                    && state.attempts > start
                    && let Some(failure) = &state.last_failure
                {
                    return Err(failure.error(self.endpoint()));
                }
                state.in_progress = true;
                break;
            }
            waited_from.get_or_insert(state.attempts);
            job_still_running(job, &control.socket)?;
            let wait = job
                .deadline()
                .map_or(WAIT_TICK, |d| d.remaining().min(WAIT_TICK));
            state.waiters += 1;
            state = control
                .refreshed
                .wait_timeout(state, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            state.waiters -= 1;
        }
        drop(state);
        let mut slow = SlowRefresh {
            control,
            outcome: Outcome::Failed(Shared::Connect(
                "the refresh of another thread panicked".to_string(),
            )),
        };
        let result = self.slow_refresh(control, job);
        slow.outcome = match &result {
            Ok(()) => Outcome::Alive,
            Err(Error::Timeout { .. } | Error::Cancelled { .. }) => Outcome::NoVerdict,
            Err(e) => Outcome::Failed(Shared::of(e)),
        };
        result
    }

    /// The slow path of the refresh (docs/design.md#slow-path), run by one thread at a time:
    /// ask the master, else clear a stale socket and start a new master; then touch the socket.
    fn slow_refresh(&self, control: &Control, job: &dyn Job) -> Result<()> {
        let alive = match probe_socket(&control.socket) {
            SocketState::Missing => false, // nothing to ask
            SocketState::Stale => {
                remove_stale_socket(&control.socket)?;
                false
            }
            SocketState::NotASocket => {
                return Err(Error::Config(format!(
                    "ControlPath {} exists but is not a socket: remove it",
                    control.socket.display()
                )));
            }
            SocketState::Unknown(errno) => {
                return Err(Error::Connect {
                    endpoint: self.endpoint(),
                    message: format!(
                        "cannot probe control socket {}: {}",
                        control.socket.display(),
                        std::io::Error::from_raw_os_error(errno)
                    ),
                });
            }
            SocketState::Live | SocketState::Busy => match self.check_master(control, job)? {
                Ok(pid) => {
                    self.remember_master(control, pid)?;
                    true
                }
                Err(why) => {
                    // It did not answer: remove the socket only if nobody holds it now.
                    match probe_socket(&control.socket) {
                        SocketState::Stale => remove_stale_socket(&control.socket)?,
                        SocketState::Missing => {}
                        _ => {
                            return Err(Error::Connect {
                                endpoint: self.endpoint(),
                                message: format!(
                                    "ssh master on {} holds its socket but does not answer: {why}",
                                    control.socket.display(),
                                ),
                            });
                        }
                    }
                    false
                }
            },
        };
        if !alive {
            *lock(&control.master) = None;
            master::start(&self.config, &control.socket, &control.log, job)?;
            // Which process it is: one round trip in-process (sessions judge their end by it).
            self.master(job)?;
        }
        touch(control);
        control.touched.store(control.now_ms(), Ordering::Relaxed);
        Ok(())
    }
}

impl Control {
    /// Milliseconds since this connection was made, plus one (never 0).
    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// The fast path's stamp, at most once every [`TOUCH_EVERY`] for this connection: the
    /// thread that wins the compare-and-swap touches, the others go on at once.
    fn touch_if_due(&self) {
        let now = self.now_ms();
        let last = self.touched.load(Ordering::Relaxed);
        let every = TOUCH_EVERY.as_millis() as u64;
        if (last == 0 || now.saturating_sub(last) >= every)
            && self
                .touched
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            touch(self);
        }
    }
}

/// Stamps the socket with this refresh (its mtime): what lets a later process take the fast
/// path at once (see [`recent_stamp`]).
fn touch(control: &Control) {
    if let Some(lease) = lock(&control.lease).as_ref()
        && let Err(e) = lease.touch_socket()
    {
        tracing::warn!(socket = %control.socket.display(), "cannot touch control socket: {e}");
    }
}

/// The moment of the last refresh stamped on `socket` (its mtime), if less than `fresh_for`
/// ago: a master confirmed alive then, or about to serve a session (either restarts its
/// ControlPersist countdown), is trusted until `fresh_for` after it, the same rule as a
/// process's own last check. A clock step or a future mtime is not trusted.
fn recent_stamp(socket: &Path, fresh_for: Duration) -> Option<Instant> {
    let modified = fs::symlink_metadata(socket).ok()?.modified().ok()?;
    let age = std::time::SystemTime::now().duration_since(modified).ok()?;
    if age >= fresh_for {
        return None;
    }
    Instant::now().checked_sub(age)
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
