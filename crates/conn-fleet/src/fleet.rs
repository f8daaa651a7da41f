//! [`Fleet`]: the hosts of a run with their transports and the run's settings, and the worker
//! pool that takes them in turn.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conn_core::{
    CancelToken, Cmd, ConnectionPool, DEFAULT_CAPACITY, Deadline, Error, Output, RetryPolicy,
    SimpleJob, Started, Transport,
};

use crate::copy::CopyPlan;
use crate::fetch::FetchPlan;
use crate::gather::Gather;
use crate::handler::Handler;
use crate::limits;
use crate::outcome::{Host, HostEnd, Outcome, Retried, RunReport, Skip};
use crate::sink::HostSink;

/// What every host of a run does.
#[derive(Clone, Debug)]
pub enum Task {
    /// Runs this command: its stdout and stderr are streamed to the handler and its status is
    /// each host's outcome (the command's `check` setting does not apply); its stdin is what
    /// the command says (give every host the same input with [`Stdin::Path`]).
    ///
    /// [`Stdin::Path`]: conn_core::Stdin::Path
    Run(Cmd),
    /// Copies files and trees to every host.
    Copy(CopyPlan),
    /// Fetches files and trees from every host.
    Fetch(FetchPlan),
}

/// One host and how to reach it.
struct Target<T> {
    name: String,
    transport: Arc<T>,
}

/// The hosts of a run and its settings: one [`ConnectionPool`] per host (made when a worker
/// takes the host, shut down when it is done), `fanout` hosts at once (fewer when descriptors
/// are short), one deadline per host, one retry policy, and one run-wide [`CancelToken`] shared
/// by every host's job, so that cancelling it (a signal handler, fail-fast, a dropped
/// [`Events`](crate::Events)) ends every host at once.
///
/// ```
/// use conn_core::{Cmd, StreamKind};
/// use conn_fleet::{Fleet, Handler, Host, Task};
/// use conn_local::Local;
///
/// struct Print;
/// impl Handler for Print {
///     fn line(&self, host: &Host, _: StreamKind, line: &[u8]) {
///         print!("{}: {}", host.name, String::from_utf8_lossy(line));
///     }
/// }
/// let fleet = Fleet::new().host("a", Local::new()).host("b", Local::new()).fanout(2);
/// let report = fleet.run(&Task::Run(Cmd::new(["echo", "hello"])), &Print);
/// assert_eq!(report.failed(), 0);
/// ```
pub struct Fleet<T: Transport> {
    targets: Vec<Target<T>>,
    fanout: usize,
    capacity: usize,
    pool_name: String,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    fail_fast: bool,
    kill_remote: bool,
    gather: Option<Gather>,
    cancel: CancelToken,
}

impl<T: Transport> Default for Fleet<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Transport> std::fmt::Debug for Fleet<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("hosts", &self.targets.len())
            .field("fanout", &self.fanout)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("fail_fast", &self.fail_fast)
            .field("kill_remote", &self.kill_remote)
            .finish_non_exhaustive()
    }
}

impl<T: Transport> Fleet<T> {
    /// No hosts yet; fanout 32, capacity [`DEFAULT_CAPACITY`], pool name `shared`, no timeout,
    /// the pool's default retries, no fail-fast, no remote kill, nothing gathered.
    pub fn new() -> Self {
        Fleet {
            targets: Vec::new(),
            fanout: 32,
            capacity: DEFAULT_CAPACITY,
            pool_name: "shared".to_string(),
            timeout: None,
            retry: RetryPolicy::pool_default(),
            fail_fast: false,
            kill_remote: false,
            gather: None,
            cancel: CancelToken::new(),
        }
    }

    /// Adds a host, named `name` in events and reports, reached through `transport`. Hosts
    /// run in the order they are added (the workers take them in turn).
    pub fn host(mut self, name: impl Into<String>, transport: T) -> Self {
        self.push(name, transport);
        self
    }

    /// Adds a host (see [`Fleet::host`]).
    pub fn push(&mut self, name: impl Into<String>, transport: T) {
        self.targets.push(Target {
            name: name.into(),
            transport: Arc::new(transport),
        });
    }

    /// How many hosts are worked on at once, at most (pdsh's and clush's `-f`); at least 1.
    pub fn fanout(mut self, n: usize) -> Self {
        self.fanout = n.max(1);
        self
    }

    /// Sessions per connection of each host's pool.
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = n;
        self
    }

    /// The name of every host's pool (part of the lease namespace of ssh transports).
    pub fn pool_name(mut self, name: impl Into<String>) -> Self {
        self.pool_name = name.into();
        self
    }

    /// A deadline for each host, all its work and retries included, from the moment a worker
    /// takes it.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// How every command of the run is retried ([`RetryPolicy`]: one budget per command).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// After the first host that does not succeed, start no new host and end the running ones:
    /// those it ends are [`Outcome::Stopped`], those it never starts
    /// [`Skip::FailFast`]. A failure that a cancel of the run caused (a signal) does not count.
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }

    /// When a host's command is ended early (the run is cancelled, the host's timeout passes,
    /// fail-fast), end its remote command too ([`Cmd::kill_remote`], set on every host's
    /// command of a [`Task::Run`]; without this, each command's own setting holds). Copies and
    /// fetches are not affected.
    pub fn kill_remote(mut self, yes: bool) -> Self {
        self.kill_remote = yes;
        self
    }

    /// Keep each host's output ([`HostEnd::gathered`]) for grouping identical results.
    pub fn gather(mut self, gather: Option<Gather>) -> Self {
        self.gather = gather;
        self
    }

    /// Shares `token` as the run's cancellation (for instance with a signal handler made
    /// before the fleet).
    pub fn cancel_with(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// The run's cancellation: cancelling it ends every host at once; hosts not started yet
    /// are reported as skipped.
    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether there is no host.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The hosts' names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.name.as_str())
    }

    /// Runs `task` on every host and returns when all are done (or skipped), telling
    /// `handler` what happens as it happens. The workers are threads of this call; one host
    /// runs on the calling thread itself.
    pub fn run(&self, task: &Task, handler: &dyn Handler) -> RunReport {
        let n = self.targets.len();
        let slots: Vec<Mutex<Option<HostEnd>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let work = || {
            while let Some(i) = Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&i| i < n) {
                let host = Host {
                    index: i,
                    name: self.targets[i].name.clone(),
                };
                let end = if self.cancel.is_cancelled() || stop.load(Ordering::Acquire) {
                    let skip = if stop.load(Ordering::Acquire) {
                        Skip::FailFast
                    } else {
                        Skip::Cancelled
                    };
                    skipped(host, skip)
                } else {
                    let end = self.run_host(host, task, handler);
                    if !self.fail_fast || end.is_success() {
                        end
                    } else if !self.cancel.is_cancelled() && !stop.swap(true, Ordering::AcqRel) {
                        // The first failure of its own (not one that a signal's cancel
                        // caused): end the others, start nobody new.
                        self.cancel.cancel();
                        end
                    } else if stop.load(Ordering::Acquire) {
                        stopped_by_fail_fast(end)
                    } else {
                        end
                    }
                };
                handler.end(&end);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
            }
        };
        let workers = limits::hosts_at_once(self.fanout).min(n);
        if workers <= 1 {
            work();
        } else {
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(work);
                }
            });
        }
        RunReport {
            hosts: slots
                .into_iter()
                .map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()))
                .enumerate()
                .map(|(i, end)| {
                    // Every slot is filled; an empty one would be a worker that panicked.
                    end.unwrap_or_else(|| {
                        skipped(
                            Host {
                                index: i,
                                name: self.targets[i].name.clone(),
                            },
                            Skip::Cancelled,
                        )
                    })
                })
                .collect(),
            cancelled: self.cancel.is_cancelled(),
        }
    }

    /// One host's work, from its pool's making to its shutdown.
    fn run_host(&self, host: Host, task: &Task, handler: &dyn Handler) -> HostEnd {
        handler.start(&host);
        let start = Instant::now();
        let job = SimpleJob::with_deadline(self.timeout.map(Deadline::after))
            .with_token(self.cancel.clone());
        let pool = match ConnectionPool::with_shared_transport(
            Arc::clone(&self.targets[host.index].transport),
            self.pool_name.clone(),
            self.capacity,
        ) {
            Ok(pool) => pool,
            Err(e) => return failed(host, e, start),
        };
        let mut sink = HostSink::new(&host, handler, self.gather);
        let result = match task {
            // The status is reported per host, whatever the command's `check` says.
            Task::Run(cmd) => {
                let mut cmd = cmd.clone().check(false).retry(self.retry);
                if self.kill_remote {
                    cmd = cmd.kill_remote(true);
                }
                pool.run_streaming(&cmd, &job, &mut sink)
            }
            Task::Copy(plan) => plan.to_host(&pool, &job, self.retry).map(|()| done()),
            Task::Fetch(plan) => plan
                .fetch_from(&pool, &host.name, &job, self.retry)
                .map(|()| done()),
        };
        let gather_error = sink.gather_error.take();
        let gathered = sink.finish();
        let retried = Retried {
            refused: pool.refusals_retried(),
            not_started: pool.restarts_retried(),
            may_have_run: pool.ran_retried(),
        };
        pool.shutdown();
        let outcome = match (result, gather_error) {
            (Ok(out), None) => Outcome::Exited(out),
            (Ok(_), Some(e)) => Outcome::Failed(Arc::new(Error::Io {
                context: format!("keeping the output of {}", host.name),
                source: e,
            })),
            (Err(e), _) => Outcome::Failed(Arc::new(name_descriptor_limit(e))),
        };
        HostEnd {
            host,
            outcome,
            duration: start.elapsed(),
            retried,
            gathered: gathered.map(Arc::new),
        }
    }
}

/// `end` as fail-fast left it: a host whose run the fail-fast cancel ended is
/// [`Outcome::Stopped`], not a failure of its own (nor an interruption); any other end stays.
fn stopped_by_fail_fast(mut end: HostEnd) -> HostEnd {
    if let Outcome::Failed(e) = &end.outcome
        && matches!(**e, Error::Cancelled { .. })
    {
        end.outcome = Outcome::Stopped(Arc::clone(e));
    }
    end
}

/// A host's end that never started.
fn skipped(host: Host, skip: Skip) -> HostEnd {
    HostEnd {
        host,
        outcome: Outcome::Skipped(skip),
        duration: Duration::ZERO,
        retried: Retried::default(),
        gathered: None,
    }
}

fn failed(host: Host, e: Error, start: Instant) -> HostEnd {
    HostEnd {
        host,
        outcome: Outcome::Failed(Arc::new(e)),
        duration: start.elapsed(),
        retried: Retried::default(),
        gathered: None,
    }
}

/// A copy's or fetch's successful end.
fn done() -> Output {
    Output {
        status: conn_core::ExitStatus::Code(0),
        stdout: Vec::new(),
        stderr: Vec::new(),
        started: Started::Yes,
    }
}

/// An error that ran out of descriptors, said so with the limit and what to do.
fn name_descriptor_limit(e: Error) -> Error {
    if !limits::is_out_of_descriptors(&e) {
        return e;
    }
    Error::Setup {
        context: format!(
            "out of file descriptors (the limit is {}: raise it with `ulimit -n`, or lower the \
             fanout)",
            limits::nofile_limit()
        ),
        source: Box::new(e),
    }
}
