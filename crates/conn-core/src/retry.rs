//! Retrying what provably never started: one policy for library callers and `conn run
//! --retries` alike, with `backon`'s exponential backoff underneath.

use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use rustix::event::{PollFd, PollFlags};

use crate::error::{Error, Result};
use crate::job::{CancelToken, Deadline, Job};
use crate::poll::poll_until;

/// How often and how patiently [`retry`] tries again.
///
/// ```
/// use std::time::Duration;
/// let policy = conn_core::RetryPolicy::new(3).min_delay(Duration::from_millis(10));
/// assert_eq!(policy.max_retries(), 3);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    max_retries: usize,
    min_delay: Duration,
    max_delay: Duration,
}

impl RetryPolicy {
    /// At most `max_retries` retries, after 100 ms, doubling (with jitter) up to 5 s.
    pub fn new(max_retries: usize) -> Self {
        RetryPolicy {
            max_retries,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }

    /// The first delay.
    pub fn min_delay(mut self, d: Duration) -> Self {
        self.min_delay = d;
        self
    }

    /// The longest delay.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// How many retries at most.
    pub fn max_retries(&self) -> usize {
        self.max_retries
    }
}

/// Calls `attempt` until it succeeds, fails with an error that is not
/// [retryable](Error::is_retryable) (a command that ran, or may have, is never run again),
/// the policy's retries are spent, or `job` is cancelled or past its deadline. Sleeps between
/// attempts wake at once on the job's cancellation and never pass its deadline. `notify` sees
/// each error that is retried and the delay before the next attempt.
///
/// ```
/// use conn_core::{Error, RetryPolicy, SimpleJob, retry};
/// let mut calls = 0;
/// let result: conn_core::Result<u32> = retry(&RetryPolicy::new(5), &SimpleJob::new(), |_, _| {}, || {
///     calls += 1;
///     Err(Error::Exited { command: "false".into(), status: conn_core::ExitStatus::Code(1),
///                         stdout: vec![], stderr: vec![] })
/// });
/// assert!(result.is_err());
/// assert_eq!(calls, 1, "a command that ran is never retried");
/// ```
pub fn retry<T>(
    policy: &RetryPolicy,
    job: &dyn Job,
    mut notify: impl FnMut(&Error, Duration),
    attempt: impl FnMut() -> Result<T>,
) -> Result<T> {
    if policy.max_retries == 0 {
        let mut attempt = attempt;
        return attempt();
    }
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(policy.max_retries);
    // backon keeps the sleeper past this call's borrows: give it owned copies.
    let (deadline, token) = (job.deadline(), job.cancel_token().clone());
    attempt
        .retry(backoff)
        .sleep(move |d: Duration| sleep_within(deadline, &token, d))
        .when(|e: &Error| {
            e.is_retryable() && !job.is_cancelled() && !job.deadline().is_some_and(|d| d.expired())
        })
        .notify(|e: &Error, d: Duration| notify(e, d))
        .call()
}

/// Sleeps `d`, but no further than the job's deadline, and not past its cancellation.
pub(crate) fn sleep_within(deadline: Option<Deadline>, token: &CancelToken, d: Duration) {
    let until = std::time::Instant::now() + d;
    let until = match deadline {
        Some(deadline) => until.min(deadline.at()),
        None => until,
    };
    match token.wake_fd() {
        Some(fd) => {
            let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
            while std::time::Instant::now() < until && !token.is_cancelled() {
                let _ = poll_until(&mut fds, Some(until), None);
            }
        }
        None => std::thread::sleep(until.saturating_duration_since(std::time::Instant::now())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SimpleJob, Started};

    fn not_started() -> Error {
        Error::Transport {
            endpoint: "h".into(),
            command: "x".into(),
            started: Started::No,
            reason: "no master".into(),
            stdout: vec![],
            stderr: vec![],
        }
    }

    #[test]
    fn retries_only_what_never_started() {
        let policy = RetryPolicy::new(3).min_delay(Duration::from_millis(1));
        let mut calls = 0;
        let r: Result<()> = retry(
            &policy,
            &SimpleJob::new(),
            |_, _| {},
            || {
                calls += 1;
                Err(not_started())
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 4, "one attempt and three retries");
        let mut calls = 0;
        let r = retry(
            &policy,
            &SimpleJob::new(),
            |_, _| {},
            || {
                calls += 1;
                if calls < 3 {
                    Err(not_started())
                } else {
                    Ok(calls)
                }
            },
        );
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn a_sleep_ends_at_cancellation() {
        let token = crate::CancelToken::new();
        let canceller = {
            let token = token.clone();
            std::thread::spawn(move || token.cancel())
        };
        let t = std::time::Instant::now();
        sleep_within(None, &token, Duration::from_secs(30));
        canceller.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn a_cancelled_job_stops_retrying() {
        let job = SimpleJob::new();
        job.cancel();
        let mut calls = 0;
        let _ = retry(
            &RetryPolicy::new(5),
            &job,
            |_, _| {},
            || -> Result<()> {
                calls += 1;
                Err(not_started())
            },
        );
        assert_eq!(calls, 1);
    }
}
