//! Descriptors: a run needs several per host at once (the session's pipes, its control
//! socket or client process, the lease, a master's start), so the number of hosts worked on at
//! once is bounded by what the process may still open, not only by the fanout: with a low
//! `ulimit -n` every host still runs, more slowly, instead of most failing with `EMFILE`.

use std::io;

use rustix::process::{Resource, getrlimit, setrlimit};

/// Descriptors one host may hold at once: the lease's lock file, the control socket or the
/// `ssh -S` client's pidfd, stdout and stderr pipes and a watched stderr (both ends while they
/// are set up), stdin, and a master start's own; with room to spare.
pub const FDS_PER_HOST: u64 = 16;

/// Descriptors kept free for everything else (the caller's own files, spill files, logs).
pub const FDS_RESERVED: u64 = 16;

/// Raises the soft limit on open descriptors to the hard limit, as ClusterShell does at start
/// (a run over hundreds of hosts needs thousands); returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        limit.current = Some(hard);
        if setrlimit(Resource::Nofile, limit).is_err() {
            tracing::debug!("cannot raise the descriptor limit to {hard}");
        }
    }
    nofile_limit()
}

/// The soft limit on open descriptors (`ulimit -n`); a very large number when unlimited.
pub fn nofile_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// How many descriptors this process has open now (`/proc/self/fd`).
pub fn open_descriptors() -> io::Result<u64> {
    // The directory's own descriptor is counted too: one more than before the call.
    Ok(std::fs::read_dir("/proc/self/fd")?
        .count()
        .saturating_sub(1) as u64)
}

/// How many hosts may be worked on at once with the descriptors left: at least one.
pub fn hosts_at_once(fanout: usize) -> usize {
    let left = nofile_limit()
        .saturating_sub(open_descriptors().unwrap_or(0))
        .saturating_sub(FDS_RESERVED);
    let by_fds = usize::try_from(left / FDS_PER_HOST).unwrap_or(usize::MAX);
    fanout.min(by_fds).max(1)
}

/// Whether `e` (or what it wraps) is running out of descriptors (`EMFILE`, `ENFILE`).
pub fn is_out_of_descriptors(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(io.raw_os_error(), Some(libc_emfile) if libc_emfile == EMFILE || libc_emfile == ENFILE)
        {
            return true;
        }
        cur = err.source();
    }
    false
}

const EMFILE: i32 = rustix::io::Errno::MFILE.raw_os_error();
const ENFILE: i32 = rustix::io::Errno::NFILE.raw_os_error();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_host_runs_and_never_more_than_the_fanout() {
        assert!(hosts_at_once(1) == 1);
        assert!(hosts_at_once(4) <= 4);
        assert!(hosts_at_once(0) == 1);
    }

    #[test]
    fn emfile_is_recognised_through_sources() {
        let e = io::Error::from_raw_os_error(EMFILE);
        assert!(is_out_of_descriptors(&e));
        let other = io::Error::from_raw_os_error(rustix::io::Errno::NOENT.raw_os_error());
        assert!(!is_out_of_descriptors(&other));
    }
}
