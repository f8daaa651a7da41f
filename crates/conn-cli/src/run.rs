//! `conn run`: one pool per host, `--parallel` worker threads over the hosts, output passed
//! through (one host) or streamed line by line prefixed `host: ` (several), gathered (`-b`) or
//! as JSON lines (`--json`); exit status passed through or the largest of all.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conn_core::{
    Cmd, ConnectionPool, Deadline, Error, Job, Output, Result, RetryPolicy, SimpleJob, Started,
    Stdin, Stream, Transport, retry,
};
use conn_local::Local;
use conn_openssh::OpenSsh;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::RunArgs;
use crate::hosts::host_list;
use crate::lines::{Emit, Target, pump_lines};
use crate::output::{
    EXIT_INTERRUPTED, Failure, exit_code_of_error, exit_code_of_status, one_line, print_error,
};
use crate::report::{HostReport, failure_summary, write_gathered};
use crate::{POOL_NAME, signals};

/// First delay between retries; doubled each time (with jitter) up to [`RETRY_MAX_DELAY`].
const RETRY_MIN_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between two retries.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

/// Runs `conn run`; returns the exit code.
pub fn main(args: &RunArgs) -> Result<u8, Failure> {
    args.ssh.validate().map_err(Failure::usage)?;
    if args.stdin_all && io::stdin().is_terminal() {
        return Err(Failure::usage(
            "--stdin-all sends conn's standard input to every host, but it is a terminal: \
             pipe or redirect the input (e.g. `conn run --stdin-all -w … -- cmd < file`)",
        ));
    }
    let mut settings = Settings {
        argv: args.command.clone(),
        timeout: args.timeout,
        dry_run: args.dry_run,
        retries: args.retries,
        parallel: args.parallel as usize,
        capacity: args.ssh.capacity as usize,
        mode: if args.json {
            Mode::Json
        } else if args.gather {
            Mode::Gather
        } else {
            Mode::Prefixed
        },
        stdin_all: None,
    };
    let targets = |args: &RunArgs| -> Result<Vec<(String, OpenSsh)>, Failure> {
        let hosts = host_list(&args.targets)?;
        // Everything is validated before anything starts: a bad name or option is exit 2.
        Ok(hosts
            .into_iter()
            .map(|h| Ok((h.clone(), args.ssh.builder(&h).mux(args.mux).build()?)))
            .collect::<Result<Vec<_>>>()?)
    };
    let remote = if args.local {
        None
    } else {
        Some(targets(args)?)
    };
    // Read once, to its end, before any host starts: every host then reads the same bytes
    // from its own descriptor, at its own pace, and memory stays bounded (the bytes wait on
    // disk, not in conn).
    let _spill = if args.stdin_all {
        let spill = spill_stdin()?;
        settings.stdin_all = Some(spill.1.clone());
        Some(spill.0)
    } else {
        None
    };
    if args.local {
        return run_targets(vec![("localhost".to_string(), Local::new())], &settings);
    }
    run_targets(remote.unwrap_or_default(), &settings)
}

/// Copies our standard input to an unnamed temporary file; returns it and a path that opens
/// it anew (with an offset of its own) for each host.
fn spill_stdin() -> Result<(File, PathBuf), Failure> {
    let mut spill = tempfile::tempfile()
        .map_err(|e| Failure::other(format!("--stdin-all: cannot make a temporary file: {e}")))?;
    io::copy(&mut io::stdin().lock(), &mut spill)
        .map_err(|e| Failure::other(format!("--stdin-all: cannot read standard input: {e}")))?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", spill.as_raw_fd()));
    Ok((spill, path))
}

/// What every host runs, and how.
struct Settings {
    argv: Vec<String>,
    timeout: Option<Duration>,
    dry_run: bool,
    retries: u32,
    parallel: usize,
    capacity: usize,
    mode: Mode,
    /// `--stdin-all`: the spilled input, opened anew for each host.
    stdin_all: Option<PathBuf>,
}

impl Settings {
    /// The command for one host: its own reader of the `--stdin-all` input, if any.
    fn command_for_host(&self, cmd: &Cmd) -> Result<Cmd> {
        match &self.stdin_all {
            Some(path) => {
                let file = File::open(path).map_err(|e| Error::Io {
                    context: "opening the --stdin-all input again".into(),
                    source: e,
                })?;
                Ok(cmd.clone().stdin(Stdin::from(file)))
            }
            None => Ok(cmd.clone()),
        }
    }
}

/// How the output of several hosts (or of one, with `-b` or `--json`) is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Each host's lines prefixed `host: `, printed as they arrive, whole.
    Prefixed,
    /// `-b`: hosts with identical output and status printed once, at the end.
    Gather,
    /// `--json`: one object per host per line, printed when the host is done.
    Json,
}

fn run_targets<T: Transport>(targets: Vec<(String, T)>, s: &Settings) -> Result<u8, Failure> {
    let pools = targets
        .into_iter()
        .map(|(label, t)| Ok((label, ConnectionPool::new(t, POOL_NAME, s.capacity)?)))
        .collect::<Result<Vec<_>>>()?;
    if let [(label, pool)] = pools.as_slice()
        && s.mode == Mode::Prefixed
    {
        return Ok(run_single(label, pool, s));
    }
    Ok(run_many(&pools, s))
}

/// One host: the command's stdout and stderr are ours, and so is its exit status.
fn run_single<T: Transport>(label: &str, pool: &ConnectionPool<T>, s: &Settings) -> u8 {
    // A child in its own process group that reads a terminal would be stopped (SIGTTIN):
    // forward stdin only when it is not one, as `ssh -n` would otherwise be needed.
    let stdin = if io::stdin().is_terminal() {
        Stdin::Null
    } else {
        Stdin::Inherit
    };
    let cmd = Cmd::new(s.argv.clone())
        .stdin(stdin)
        .stdout(Stream::Inherit)
        .stderr(Stream::Inherit)
        .check(false)
        .dry_run(s.dry_run);
    let job = new_job(s.timeout);
    // An inherited stdout/stderr reaches an ssh master only as a pipe of the transport's,
    // which it lets go of when the command ends or times out: the master never keeps ours.
    let result = s
        .command_for_host(&cmd)
        .and_then(|cmd| run_with_retries(pool, &cmd, &job, s.retries, label));
    pool.shutdown();
    match result {
        Ok(out) => exit_code_of_status(out.status),
        Err(e) => {
            print_error(&e.to_string());
            exit_code_of_error(&e)
        }
    }
}

/// Several hosts: `--parallel` workers; each host's lines are printed, prefixed, as they come
/// (or its JSON line when it is done, or the hosts gathered after the last with `-b`); a
/// summary of the failures, folded by reason, goes to stderr; the exit code is the largest of
/// all.
fn run_many<T: Transport>(pools: &[(String, ConnectionPool<T>)], s: &Settings) -> u8 {
    let cmd = Cmd::new(s.argv.clone())
        .stdin(Stdin::Null)
        .stdout(Stream::Piped)
        .stderr(Stream::Piped)
        .check(false)
        .dry_run(s.dry_run);
    let bar = progress_bar(pools.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<HostReport>>> =
        Mutex::new((0..pools.len()).map(|_| None).collect());
    let workers = s.parallel.min(pools.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((label, pool)) = pools.get(i) else {
                        break;
                    };
                    let mut report = if signals::interrupted().is_some() {
                        HostReport::interrupted(label)
                    } else {
                        run_one_of_many(label, pool, &cmd, s, &bar)
                    };
                    pool.shutdown();
                    if report.failure().is_some() {
                        let n = failed.fetch_add(1, Ordering::Relaxed) + 1;
                        bar.set_message(format!(", {n} failed"));
                    }
                    if s.mode == Mode::Json {
                        print_json_line(&report, &bar);
                    }
                    if s.mode != Mode::Gather {
                        // Printed: only the status is needed from here on.
                        report.stdout = Vec::new();
                        report.stderr = Vec::new();
                    }
                    bar.inc(1);
                    lock(&results)[i] = Some(report);
                }
            });
        }
    });
    bar.finish_and_clear();
    let reports: Vec<HostReport> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(pools)
        // Every worker fills its slots; a slot left empty would be a worker that panicked.
        .map(|(r, (label, _))| r.unwrap_or_else(|| HostReport::interrupted(label)))
        .collect();
    if s.mode == Mode::Gather {
        let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
        // A closed stdout (`conn run -b … | head`) is not worth a failure of the run.
        let _ = write_gathered(&mut out, &mut err, &reports);
    }
    let mut code = reports.iter().map(HostReport::exit_code).max().unwrap_or(0);
    let failures = reports.iter().filter(|r| r.failure().is_some()).count();
    let mut err = io::stderr().lock();
    for line in failure_summary(&reports) {
        let _ = writeln!(err, "conn: {line}");
    }
    if failures > 0 {
        let _ = writeln!(err, "conn: {failures} of {} hosts failed", pools.len());
    }
    if signals::interrupted().is_some() {
        code = code.max(EXIT_INTERRUPTED);
    }
    code
}

/// Runs the command on one host of many (retries included) and reports how it went. In the
/// prefixed mode its lines are printed as they arrive; `-b` and `--json` keep its output.
fn run_one_of_many<T: Transport>(
    label: &str,
    pool: &ConnectionPool<T>,
    cmd: &Cmd,
    s: &Settings,
    bar: &ProgressBar,
) -> HostReport {
    let job = new_job(s.timeout);
    let start = Instant::now();
    let policy = RetryPolicy::new(s.retries as usize)
        .min_delay(RETRY_MIN_DELAY)
        .max_delay(RETRY_MAX_DELAY);
    let notify = |e: &Error, d: Duration| {
        tracing::warn!(
            "{label}: retrying in {d:.1?} after: {}",
            one_line(&e.to_string())
        );
    };
    // Only what never started is retried: nothing of it was printed.
    let result = retry(&policy, job.as_ref(), notify, || {
        stream_host(label, pool, &s.command_for_host(cmd)?, job.as_ref(), s, bar)
    });
    HostReport::new(label, result, start.elapsed())
}

/// One attempt on one host: spawn, stream (or keep) its output, wait.
fn stream_host<T: Transport>(
    label: &str,
    pool: &ConnectionPool<T>,
    cmd: &Cmd,
    job: &dyn Job,
    s: &Settings,
    bar: &ProgressBar,
) -> Result<Output> {
    let mut child = pool.spawn(cmd, job)?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let keep = s.mode != Mode::Prefixed;
    let prefix = format!("{label}: ");
    let (out, err) = (child.take_stdout(), child.take_stderr());
    // Each line whole, under its stream's lock; the progress bar steps aside for it.
    let print = |target: Target, line: &[u8]| bar.suspend(|| target.write_line(line));
    let pumped = pump_lines(
        &prefix,
        out,
        err,
        job.deadline().map(|d| d.at()),
        keep.then_some((&mut stdout, &mut stderr)),
        (!keep).then_some(&print as &Emit<'_>),
    );
    if let Err(e) = pumped {
        let _ = child.kill();
        return Err(Error::Io {
            context: format!("reading the output of {label}"),
            source: e,
        });
    }
    // At the deadline `wait` ends the command and says so.
    let status = child.wait()?;
    Ok(Output {
        status,
        stdout,
        stderr,
        started: child.started().unwrap_or(Started::Yes),
    })
}

/// Writes one host's `--json` line on stdout.
fn print_json_line(report: &HostReport, bar: &ProgressBar) {
    let line = report.to_json().to_string();
    bar.suspend(|| {
        let mut stdout = io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    });
}

fn progress_bar(hosts: usize) -> ProgressBar {
    if hosts < 2 || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} hosts done{msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::with_draw_target(Some(hosts as u64), ProgressDrawTarget::stderr())
        .with_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A job for one host: its own deadline, cancelled by SIGINT/SIGTERM/SIGHUP.
fn new_job(timeout: Option<Duration>) -> Arc<SimpleJob> {
    let job = Arc::new(SimpleJob::with_deadline(timeout.map(Deadline::after)));
    signals::register(&job);
    job
}

/// Runs `cmd` through `pool`, retrying up to `retries` times when the error is retryable
/// ([`Error::is_retryable`]: ssh failed, the command did not run to its own end) and the job
/// is neither cancelled nor past its deadline. Backoff: exponential from 200 ms, doubling,
/// jittered, at most 10 s, never sleeping past the deadline or through a cancellation.
pub fn run_with_retries<T: Transport>(
    pool: &ConnectionPool<T>,
    cmd: &Cmd,
    job: &Arc<SimpleJob>,
    retries: u32,
    label: &str,
) -> Result<Output> {
    run_with_backoff(pool, cmd, job, retries, label, RETRY_MIN_DELAY)
}

fn run_with_backoff<T: Transport>(
    pool: &ConnectionPool<T>,
    cmd: &Cmd,
    job: &Arc<SimpleJob>,
    retries: u32,
    label: &str,
    min_delay: Duration,
) -> Result<Output> {
    // The library's policy: only what provably never started is tried again.
    let policy = RetryPolicy::new(retries as usize)
        .min_delay(min_delay)
        .max_delay(RETRY_MAX_DELAY);
    let notify = |e: &Error, d: Duration| {
        tracing::warn!(
            "{label}: retrying in {d:.1?} after: {}",
            one_line(&e.to_string())
        );
    };
    retry(&policy, job.as_ref(), notify, || {
        pool.run(cmd, job.as_ref())
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conn_core::ExitStatus;
    use conn_testkit::transports::Flaky;

    #[test]
    fn retries_stop_at_non_retryable_errors_and_at_the_limit() {
        let pool = ConnectionPool::new(Local::new(), "t", 2).unwrap();
        let job = Arc::new(SimpleJob::with_timeout(Duration::from_secs(10)));
        // A local command that fails is not retryable: one attempt.
        let cmd = Cmd::new(["false"]).check(true);
        let err = run_with_retries(&pool, &cmd, &job, 3, "l").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Exited {
                    status: ExitStatus::Code(1),
                    ..
                }
            ),
            "{err}"
        );
        let out = run_with_retries(&pool, &Cmd::new(["true"]), &job, 3, "l").unwrap();
        assert!(out.status.success());
    }

    /// A pool over a transport whose first `failures` commands fail with a retryable connect
    /// error, and the transport (to count attempts).
    fn flaky(failures: usize) -> (ConnectionPool<Flaky>, Flaky) {
        let t = Flaky::new(failures);
        (ConnectionPool::new(t.clone(), "t", 1).unwrap(), t)
    }

    #[test]
    fn retryable_errors_are_retried_up_to_the_limit() {
        let job = Arc::new(SimpleJob::with_timeout(Duration::from_secs(30)));
        let cmd = Cmd::new(["x"]);
        let ms = Duration::from_millis(1);
        let (pool, flaky_transport) = flaky(2);
        assert!(run_with_backoff(&pool, &cmd, &job, 2, "f", ms).is_ok());
        assert_eq!(flaky_transport.attempts(), 3);
        let (pool, flaky_transport) = flaky(5);
        let err = run_with_backoff(&pool, &cmd, &job, 2, "f", ms).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!(flaky_transport.attempts(), 3);
        let (pool, flaky_transport) = flaky(1);
        assert!(run_with_backoff(&pool, &cmd, &job, 0, "f", ms).is_err());
        assert_eq!(flaky_transport.attempts(), 1);
    }

    #[test]
    fn no_retry_after_the_deadline() {
        let job = Arc::new(SimpleJob::with_timeout(Duration::ZERO));
        let (pool, flaky_transport) = flaky(5);
        let cmd = Cmd::new(["x"]);
        assert!(run_with_backoff(&pool, &cmd, &job, 3, "f", Duration::from_millis(1)).is_err());
        assert_eq!(flaky_transport.attempts(), 1);
    }
}
