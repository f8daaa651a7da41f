//! Jobs: a deadline, cancellation, and the registry of child processes a unit of work started.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

/// A unit of work whose commands share a deadline, can be cancelled together, and whose child
/// processes can be terminated together.
///
/// Transports call [`Job::register_child`] right after spawning and [`Job::unregister_child`]
/// after reaping; every child leads its own process group, so terminating the group also ends
/// whatever the child started. [`SimpleJob`] is the implementation most callers need.
pub trait Job: Send + Sync {
    /// The deadline all of this job's commands must meet, if any.
    fn deadline(&self) -> Option<Deadline>;

    /// Whether [`Job::cancel`] was called.
    fn is_cancelled(&self) -> bool;

    /// Records a running child's process group. Returns `false` if the job is already
    /// cancelled: the caller must then kill and reap the child itself.
    fn register_child(&self, pgid: Pgid) -> bool;

    /// Forgets a child that has been reaped.
    fn unregister_child(&self, pgid: Pgid);

    /// Sends `signal` to the process group of every registered child.
    fn terminate_subprocesses(&self, signal: i32);

    /// Cancels the job: later commands fail at once with [`Error::Cancelled`](crate::Error)
    /// and every running child's process group gets `SIGKILL`.
    fn cancel(&self);
}

/// The plain [`Job`]: an optional timeout, cancellation, and a child registry.
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
    cancelled: AtomicBool,
    /// Guarded together with `cancelled` changes so that a child registered concurrently with
    /// `cancel()` is either killed by `cancel()` or refused here: never missed.
    children: Mutex<HashSet<Pgid>>,
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
            ..Self::default()
        }
    }

    /// Process groups of the children running now.
    pub fn children(&self) -> Vec<Pgid> {
        self.lock().iter().copied().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Pgid>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Job for SimpleJob {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn register_child(&self, pgid: Pgid) -> bool {
        let mut children = self.lock();
        if self.is_cancelled() {
            return false;
        }
        children.insert(pgid);
        true
    }

    fn unregister_child(&self, pgid: Pgid) {
        self.lock().remove(&pgid);
    }

    fn terminate_subprocesses(&self, signal: i32) {
        for &pgid in self.lock().iter() {
            kill_group(pgid, signal);
        }
    }

    fn cancel(&self) {
        let children = self.lock();
        self.cancelled.store(true, Ordering::Release);
        for &pgid in children.iter() {
            kill_group(pgid, libc::SIGKILL);
        }
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
/// master) that must not use up, or hang past, a few seconds of its caller's time. Children and
/// cancellation are the inner job's.
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
    fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
    fn register_child(&self, pgid: Pgid) -> bool {
        self.inner.register_child(pgid)
    }
    fn unregister_child(&self, pgid: Pgid) {
        self.inner.unregister_child(pgid)
    }
    fn terminate_subprocesses(&self, signal: i32) {
        self.inner.terminate_subprocesses(signal)
    }
    fn cancel(&self) {
        self.inner.cancel()
    }
}

/// Sends `signal` to process group `pgid`; a group that is already gone is not an error.
pub(crate) fn kill_group(pgid: Pgid, signal: i32) {
    if pgid <= 1 {
        return; // never signal "every process" or init's group
    }
    // SAFETY: killpg has no memory-safety preconditions.
    unsafe {
        libc::killpg(pgid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_refuses_later_registrations() {
        let job = SimpleJob::new();
        assert!(job.register_child(999_999));
        job.unregister_child(999_999);
        job.cancel();
        assert!(job.is_cancelled());
        assert!(!job.register_child(999_998));
        assert!(job.children().is_empty());
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
