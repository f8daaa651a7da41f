//! The one `poll(2)` helper of every wait loop: a deadline instead of a timeout, an optional
//! tick, and `EINTR` taken as "look again".

use std::time::{Duration, Instant};

use rustix::event::{PollFd, Timespec, poll};
use rustix::io::Errno;

/// Polls `fds` until one is ready, `until` passes, or `tick` elapses (whichever comes first;
/// neither: wait for readiness). Returns the number of ready descriptors, 0 on a time-out or an
/// interrupted call: callers look at their state again either way.
pub fn poll_until(
    fds: &mut [PollFd<'_>],
    until: Option<Instant>,
    tick: Option<Duration>,
) -> std::io::Result<usize> {
    let wait = match (
        until.map(|t| t.saturating_duration_since(Instant::now())),
        tick,
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let ts = wait.map(|w| Timespec {
        tv_sec: w.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: w.subsec_nanos().into(),
    });
    // rustix uses ppoll on Linux: nanoseconds, so an early wake-up never spins on a
    // rounded-down zero timeout.
    match poll(fds, ts.as_ref()) {
        Ok(n) => Ok(n),
        Err(Errno::INTR) => Ok(0),
        Err(e) => Err(e.into()),
    }
}
