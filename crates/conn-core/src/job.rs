//! Jobs: what bounds a unit of work. A [`Deadline`], a [`CancelToken`] that wakes every waiter
//! at once, and the [`ChildRegistry`] of what the work started, so that cancelling also ends
//! children that nobody is waiting on right now (a stream being read, say).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, eventfd};
use rustix::process::{Pid, Signal};

use crate::error::{Error, Result};

/// An absolute, monotonic deadline together with the duration it was made from (for messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    duration: Duration,
}

impl Deadline {
    /// A deadline `duration` from now.
    pub fn after(duration: Duration) -> Self {
        let now = Instant::now();
        Deadline {
            at: now
                .checked_add(duration)
                .unwrap_or(now + Duration::from_secs(86400 * 365 * 100)),
            duration,
        }
    }

    /// The instant it expires.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The duration it was made from.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Time left, zero once expired.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// Process group id of a child started through conn (each child leads its own group).
pub type Pgid = i32;

/// Something a job started that cancellation must end: a child's process group, or an
/// in-process session whose socket, once shut down, makes the far side close the session.
#[derive(Clone, Debug)]
pub enum ChildHandle {
    /// A child process leading its own group: `killpg(pgid, signal)`.
    ProcessGroup(Pgid),
    /// A session over a socket: `shutdown(2)` on it ends the session (signals do not apply).
    Socket(Arc<OwnedFd>),
}

impl ChildHandle {
    fn terminate(&self, signal: Signal) {
        match self {
            ChildHandle::ProcessGroup(pgid) => kill_group(*pgid, signal),
            ChildHandle::Socket(fd) => {
                let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
            }
        }
    }
}

/// The children a job has running, so that [`CancelToken::cancel`] (or a caller's
/// [`ChildRegistry::terminate`], on Ctrl-C say) reaches every one of them.
///
/// A child is registered right after it starts and unregistered when its [`Registration`]
/// drops, which its owner does only once the child is reaped: a process-group id in the
/// registry always names a child of ours (a zombie at worst), never a stranger that reused it.
///
/// Children are kept by id, so that registering and unregistering are O(1) however many
/// children share one token (a fan-out over a thousand hosts shares one run-wide token).
#[derive(Debug, Default)]
pub struct ChildRegistry {
    next: AtomicU64,
    children: Mutex<HashMap<u64, ChildHandle>>,
}

impl ChildRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, ChildHandle>> {
        // A panic while holding this lock cannot leave the list inconsistent.
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `signal` (a number such as `libc::SIGTERM`) to every registered process group and
    /// shuts down every registered session socket: e.g. a polite `SIGTERM` on Ctrl-C before a
    /// cancel's `SIGKILL`. An unknown signal number sends nothing to the groups.
    pub fn terminate(&self, signal: i32) {
        let signal = Signal::from_named_raw(signal);
        for child in self.lock().values() {
            match (child, signal) {
                (ChildHandle::ProcessGroup(_), None) => {}
                (_, signal) => child.terminate(signal.unwrap_or(Signal::KILL)),
            }
        }
    }

    /// The process groups registered now (sessions over a socket have none).
    pub fn process_groups(&self) -> Vec<Pgid> {
        self.lock()
            .values()
            .filter_map(|c| match c {
                ChildHandle::ProcessGroup(pgid) => Some(*pgid),
                ChildHandle::Socket(_) => None,
            })
            .collect()
    }

    /// How many children are registered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no child is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keeps a child in its job's registry; dropping it unregisters the child. Its owner drops it
/// once the child is reaped (or the session closed).
#[derive(Debug)]
pub struct Registration {
    token: CancelToken,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.token.inner.children.lock().remove(&self.id);
    }
}

#[derive(Debug, Default)]
struct TokenInner {
    cancelled: AtomicBool,
    /// An eventfd made on first use, readable once cancelled: poll loops add it to their set
    /// and wake the moment a cancel happens, instead of looking at a flag on a timer.
    wake: OnceLock<OwnedFd>,
    children: ChildRegistry,
}

/// Cancellation shared by every command of a job: a flag, a descriptor that wakes pollers when
/// it is set, and the [`ChildRegistry`] whose children it kills. Cheap to clone (shared).
///
/// ```
/// use conn_core::CancelToken;
/// let token = CancelToken::new();
/// let other = token.clone();
/// other.cancel();
/// assert!(token.is_cancelled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelToken {
    inner: Arc<TokenInner>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Cancels: later commands fail at once with [`Error::Cancelled`], every waiter wakes, and
    /// every registered child gets `SIGKILL` (a session socket is shut down). Idempotent.
    pub fn cancel(&self) {
        // Under the registry lock, so that a child registered concurrently is either killed
        // here or refused by `register`, and a wake descriptor made concurrently is either
        // woken here or made readable by `wake_fd`: never missed.
        let children = self.inner.children.lock();
        self.inner.cancelled.store(true, Ordering::Release);
        for child in children.values() {
            child.terminate(Signal::KILL);
        }
        if let Some(fd) = self.inner.wake.get() {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// A descriptor that becomes readable once the token is cancelled (made on first call; an
    /// `eventfd`). `None` only if the system refuses a new descriptor: callers then look at
    /// [`CancelToken::is_cancelled`] on a short tick.
    pub fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        if self.inner.wake.get().is_none() {
            let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).ok()?;
            // Under the lock `cancel` holds (see there).
            let _children = self.inner.children.lock();
            if self.inner.wake.set(fd).is_ok() && self.is_cancelled() {
                // Cancelled before the descriptor existed: make it readable now.
                let _ = rustix::io::write(self.inner.wake.get()?, &1u64.to_ne_bytes());
            }
        }
        self.inner.wake.get().map(|fd| fd.as_fd())
    }

    /// The children this token's cancellation ends.
    pub fn children(&self) -> &ChildRegistry {
        &self.inner.children
    }

    /// Registers a running child. `None` if the token is already cancelled: the caller must
    /// then end the child itself (it was started after the cancel).
    pub fn register(&self, child: ChildHandle) -> Option<Registration> {
        let mut children = self.inner.children.lock();
        if self.is_cancelled() {
            return None;
        }
        let id = self.inner.children.next.fetch_add(1, Ordering::Relaxed);
        children.insert(id, child);
        Some(Registration {
            token: self.clone(),
            id,
        })
    }
}

/// A unit of work whose commands share a deadline and a cancellation.
///
/// Transports read the deadline before every blocking step, poll the token's wake descriptor
/// while they wait, and register every child they start with the token. [`SimpleJob`] is the
/// implementation most callers need; [`CappedJob`] narrows another job's deadline.
pub trait Job: Send + Sync {
    /// The deadline all of this job's commands must meet, if any.
    fn deadline(&self) -> Option<Deadline>;

    /// The job's cancellation (and the registry of its children).
    fn cancel_token(&self) -> &CancelToken;

    /// Whether the job was cancelled.
    fn is_cancelled(&self) -> bool {
        self.cancel_token().is_cancelled()
    }

    /// Cancels the job (see [`CancelToken::cancel`]).
    fn cancel(&self) {
        self.cancel_token().cancel()
    }
}

/// The plain [`Job`]: an optional timeout and a cancellation token.
///
/// ```
/// use std::time::Duration;
/// use conn_core::{Job, SimpleJob};
/// let job = SimpleJob::with_timeout(Duration::from_secs(30));
/// assert_eq!(job.deadline().unwrap().duration(), Duration::from_secs(30));
/// assert!(SimpleJob::new().deadline().is_none());
/// ```
#[derive(Debug, Default)]
pub struct SimpleJob {
    deadline: Option<Deadline>,
    token: CancelToken,
}

impl SimpleJob {
    /// A job without deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// A job whose commands must all finish within `timeout` from now.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self::with_deadline(Some(Deadline::after(timeout)))
    }

    /// A job with this deadline (or none).
    pub fn with_deadline(deadline: Option<Deadline>) -> Self {
        SimpleJob {
            deadline,
            token: CancelToken::new(),
        }
    }

    /// This job with a cancellation shared with others (one Ctrl-C ends them all).
    pub fn with_token(mut self, token: CancelToken) -> Self {
        self.token = token;
        self
    }
}

impl Job for SimpleJob {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn cancel_token(&self) -> &CancelToken {
        &self.token
    }
}

/// `Ok` while `job` may still run; else [`Error::Cancelled`] (checked first) or
/// [`Error::Timeout`] naming the job's duration, for the command that `command` describes
/// (built only on failure). The one place that turns a job's state into an error.
pub fn ensure_running(job: &dyn Job, command: impl FnOnce() -> String) -> Result<()> {
    if job.is_cancelled() {
        return Err(Error::Cancelled { command: command() });
    }
    match job.deadline() {
        Some(d) if d.expired() => Err(Error::Timeout {
            command: command(),
            timeout: d.duration(),
        }),
        _ => Ok(()),
    }
}

/// Another job seen through a tighter deadline: for a housekeeping step (such as probing an ssh
/// master) that must not use up, or hang past, a few seconds of its caller's time. The
/// cancellation is the inner job's.
pub struct CappedJob<'a> {
    inner: &'a dyn Job,
    deadline: Option<Deadline>,
}

impl<'a> CappedJob<'a> {
    /// `inner`, but due no later than `cap` from now.
    pub fn new(inner: &'a dyn Job, cap: Duration) -> Self {
        let capped = Deadline::after(cap);
        let deadline = match inner.deadline() {
            Some(d) if d.at() <= capped.at() => d,
            _ => capped,
        };
        CappedJob {
            inner,
            deadline: Some(deadline),
        }
    }
}

impl Job for CappedJob<'_> {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
    fn cancel_token(&self) -> &CancelToken {
        self.inner.cancel_token()
    }
}

/// Sends `signal` to process group `pgid`; a group that is already gone is not an error.
pub(crate) fn kill_group(pgid: Pgid, signal: Signal) {
    // Never signal "every process" or init's group.
    if pgid <= 1 {
        return;
    }
    if let Some(pid) = Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_refuses_later_registrations_and_unregisters_on_drop() {
        let token = CancelToken::new();
        let reg = token.register(ChildHandle::ProcessGroup(999_999)).unwrap();
        assert_eq!(token.children().len(), 1);
        drop(reg);
        assert!(token.children().is_empty());
        token.cancel();
        assert!(token.is_cancelled());
        assert!(token.register(ChildHandle::ProcessGroup(999_998)).is_none());
        assert!(token.children().is_empty());
    }

    #[test]
    fn the_wake_descriptor_is_readable_once_cancelled_before_or_after_it_is_made() {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let readable = |token: &CancelToken| {
            let fd = token.wake_fd().unwrap();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            poll(&mut fds, Some(&Timespec::default())).unwrap() == 1
        };
        let early = CancelToken::new();
        early.cancel();
        assert!(readable(&early), "cancelled before the fd was made");
        let late = CancelToken::new();
        assert!(!readable(&late));
        late.clone().cancel();
        assert!(readable(&late), "cancelled after the fd was made");
    }

    #[test]
    fn capped_job_takes_the_earlier_deadline() {
        let outer = SimpleJob::with_timeout(Duration::from_secs(60));
        let capped = CappedJob::new(&outer, Duration::from_secs(5));
        assert_eq!(
            capped.deadline().unwrap().duration(),
            Duration::from_secs(5)
        );
        let short = SimpleJob::with_timeout(Duration::from_millis(10));
        let capped = CappedJob::new(&short, Duration::from_secs(5));
        assert_eq!(
            capped.deadline().unwrap().duration(),
            Duration::from_millis(10)
        );
        let none = SimpleJob::new();
        assert!(
            CappedJob::new(&none, Duration::from_secs(1))
                .deadline()
                .is_some()
        );
        outer.cancel();
        assert!(CappedJob::new(&outer, Duration::from_secs(1)).is_cancelled());
    }

    #[test]
    fn ensure_running_names_the_command_only_on_failure() {
        let fresh = SimpleJob::with_timeout(Duration::from_secs(60));
        assert!(ensure_running(&fresh, || unreachable!("built only on failure")).is_ok());
        let expired = SimpleJob::with_timeout(Duration::ZERO);
        let err = ensure_running(&expired, || "sleep 1".into()).unwrap_err();
        assert!(matches!(err, Error::Timeout { ref command, .. } if command == "sleep 1"));
        expired.cancel();
        let err = ensure_running(&expired, || "sleep 1".into()).unwrap_err();
        assert!(
            matches!(err, Error::Cancelled { .. }),
            "cancellation wins: {err:?}"
        );
    }

    #[test]
    fn deadline_remaining_shrinks_to_zero() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.expired());
        assert_eq!(d.remaining(), Duration::ZERO);
        let d = Deadline::after(Duration::from_secs(60));
        assert!(!d.expired());
        assert!(d.remaining() <= Duration::from_secs(60));
    }
}
