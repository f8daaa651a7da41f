//! `conn bench`: latency and throughput of `/bin/echo hello` (with `--builtin`, the remote
//! shell's builtin `echo hello`: see [`BUILTIN_ARGV`]) through conn's pool, with each mux
//! back end (native: the OpenSSH mux protocol spoken in-process; process: one `ssh -S` client
//! per command), against the same number of hand-spawned `ssh -S <socket of a pooled master>`
//! commands (the baseline: what a careful script would do without conn) and a few fresh `ssh`
//! connections. In the same run: the refresh fast path (in-process probe) against a spawned
//! `ssh -O check`, and the first command of a fresh `conn run` process against a fresh ssh;
//! then every figure against its target.
//!
//! Everything measured in the main table is a [`Subject`]: a label and a closure that runs the
//! command once. Each pool back end is one subject among others ([`pool_subjects`]), hence one
//! row per mode.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conn_core::{Cmd, Connection, ConnectionPool, SimpleJob};
use conn_openssh::{Mux, OpenSsh};
use serde_json::json;

use crate::args::{BenchArgs, SshArgs};
use crate::output::{EXIT_INTERRUPTED, Failure, one_line, print_error};
use crate::{POOL_NAME, signals};

/// The command every measurement runs by default: an external program, so each command also
/// pays the remote side's fork and exec of `/bin/echo`, as a real command would.
pub const EXEC_ARGV: [&str; 2] = ["/bin/echo", "hello"];
/// The command with `--builtin`: `echo hello`. sshd still starts the remote login shell
/// (`$SHELL -c 'echo hello'`), but its builtin `echo` prints the same `hello` with no further
/// fork or exec. Against a server on the same CPUs as the client, the remote exec of
/// `/bin/echo` is most of a native-mux session's CPU and hides the transport's difference; the
/// builtin isolates the transport's cost (client, master, sshd's session, the shell's start)
/// from the remote exec's.
pub const BUILTIN_ARGV: [&str; 2] = ["echo", "hello"];
const EXPECTED_STDOUT: &[u8] = b"hello\n";
/// Bound for one benchmarked command: a hung master fails the bench instead of hanging it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Issue 4: pool (process mux) median ≤ 1.05 × the hand-spawned `ssh -S` median.
const TARGET_PROCESS_MEDIAN_RATIO: f64 = 1.05;
/// Issue 6: native mux median ≤ 0.33 × the hand-spawned `ssh -S` median.
const TARGET_NATIVE_MEDIAN_RATIO: f64 = 0.33;
/// Issue 6: native mux commands/s ≥ 3 × the process back end's, at each thread count.
const TARGET_NATIVE_THROUGHPUT_RATIO: f64 = 3.0;
/// Issue 4: the liveness fast path ≥ 100 × faster than `ssh -O check`.
const TARGET_FAST_PATH_SPEEDUP: f64 = 100.0;
/// Issue 4: a fresh process's first command ≥ 10 × faster than a fresh `ssh host echo`.
const TARGET_FRESH_PROCESS_SPEEDUP: f64 = 10.0;

/// How a row's commands were issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// One after another on one thread.
    Sequential,
    /// From this many threads at once.
    Concurrent(usize),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Sequential => "sequential".into(),
            Mode::Concurrent(t) => format!("{t} threads"),
        }
    }
    fn threads(self) -> usize {
        match self {
            Mode::Sequential => 1,
            Mode::Concurrent(t) => t,
        }
    }
}

/// Something to measure: runs the command once from worker thread number `thread`.
pub struct Subject<'a> {
    /// Stable identifier for JSON (`conn-pool-native`, `conn-pool-process`, `ssh-S`,
    /// `ssh-fresh`).
    pub key: &'static str,
    /// Human label for the table.
    pub label: &'static str,
    /// Whether this is the baseline the ratios are computed against.
    pub baseline: bool,
    run: Box<dyn Fn(usize) -> Result<(), String> + Sync + 'a>,
    /// The pool's count of refused sessions it retried so far (pool back ends only).
    refusals: Option<Box<dyn Fn() -> u64 + Sync + 'a>>,
}

/// Latencies and wall time of one row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The subject's key.
    pub key: &'static str,
    /// The subject's label.
    pub label: &'static str,
    /// How the commands were issued.
    pub mode: Mode,
    /// Whether this row is a baseline.
    pub baseline: bool,
    /// Latency of each successful command, sorted.
    pub latencies: Vec<Duration>,
    /// Wall time of the whole row.
    pub wall: Duration,
    /// Failed commands.
    pub errors: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Sessions refused by sshd and retried by the pool during this row (pool rows only).
    pub refusals_retried: Option<u64>,
}

impl Row {
    /// The nearest-rank percentile `q` (0 < q ≤ 1) of the latencies.
    pub fn percentile(&self, q: f64) -> Duration {
        percentile(&self.latencies, q)
    }

    /// Successful commands per second of wall time.
    pub fn per_sec(&self) -> f64 {
        let secs = self.wall.as_secs_f64();
        if secs > 0.0 {
            self.latencies.len() as f64 / secs
        } else {
            0.0
        }
    }
}

/// The nearest-rank percentile `q` of `sorted` (zero when empty).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Liveness of one warm master. Each round spawns an `ssh -O check`, then runs either the
/// refresh fast path then the probe, or the probe then the fast path (alternately): so each
/// in-process check is measured both "cold", right after the spawned process (as it runs in
/// practice, after the previous command), and "warm", right after the other one.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    /// `Connection::refresh` taking the fast path (lock, age check, probe), right after a
    /// spawned `ssh -O check`; sorted.
    pub fast_path_cold: Vec<Duration>,
    /// The same, right after a probe; sorted.
    pub fast_path_warm: Vec<Duration>,
    /// `OpenSshConnection::master_is_listening` (the probe alone), right after a spawned
    /// `ssh -O check`; sorted.
    pub probe_cold: Vec<Duration>,
    /// The same, right after a refresh fast path; sorted.
    pub probe_warm: Vec<Duration>,
    /// A spawned `ssh <options> -S <socket> -O check <host>`, sorted.
    pub ssh_check: Vec<Duration>,
}

impl Liveness {
    /// Median of `ssh -O check` over the median of the cold refresh fast path.
    pub fn speedup(&self) -> Option<f64> {
        ratio(
            percentile(&self.ssh_check, 0.5),
            percentile(&self.fast_path_cold, 0.5),
        )
    }

    fn rows(&self) -> [(&'static str, &'static str, &[Duration]); 5] {
        [
            (
                "refresh_fast_path_cold",
                "refresh() fast path, cold",
                &self.fast_path_cold,
            ),
            (
                "refresh_fast_path_warm",
                "refresh() fast path, warm",
                &self.fast_path_warm,
            ),
            (
                "probe_cold",
                "probe (master_is_listening), cold",
                &self.probe_cold,
            ),
            (
                "probe_warm",
                "probe (master_is_listening), warm",
                &self.probe_warm,
            ),
            ("ssh_check", "ssh -O check (spawned)", &self.ssh_check),
        ]
    }
}

/// The first command of fresh `conn run --mux <mux>` processes, each timed from spawn to exit.
#[derive(Debug, Clone)]
pub struct FreshProcess {
    /// The back end the children used.
    pub mux: Mux,
    /// Wall time of each successful child, sorted.
    pub latencies: Vec<Duration>,
    /// Children that failed.
    pub errors: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// `a / b` when both are positive.
fn ratio(a: Duration, b: Duration) -> Option<f64> {
    let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
    (a > 0.0 && b > 0.0).then(|| a / b)
}

/// One figure against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The measured value.
    pub measured: f64,
    /// `<=` or `>=`.
    pub op: &'static str,
    /// The goal.
    pub goal: f64,
    /// Where the target comes from.
    pub source: &'static str,
}

impl Target {
    /// Whether the measured value meets the goal.
    pub fn met(&self) -> bool {
        match self.op {
            "<=" => self.measured <= self.goal,
            _ => self.measured >= self.goal,
        }
    }
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), if readable.
fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut f = text.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([f.next()??, f.next()??, f.next()??])
}

/// Everything one bench run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The host as given.
    pub host: String,
    /// The command every measurement ran.
    pub command: Vec<String>,
    /// Commands per row.
    pub count: usize,
    /// Threads of the concurrent rows, one mode each.
    pub threads: Vec<usize>,
    /// Sessions per master.
    pub capacity: usize,
    /// Masters each pool back end used (the same for all).
    pub masters: usize,
    /// Load averages when the run started and when it ended.
    pub load: [Option<[f64; 3]>; 2],
    /// The rows, in table order.
    pub rows: Vec<Row>,
    /// The liveness section (absent with `--checks 0`).
    pub liveness: Option<Liveness>,
    /// The fresh-process section, one entry per back end (empty with `--fresh-runs 0`).
    pub fresh_processes: Vec<FreshProcess>,
}

impl Report {
    /// The baseline row a row compares to: same mode (fresh connections compare to the
    /// sequential baseline).
    fn baseline_of(&self, row: &Row) -> Option<&Row> {
        self.rows
            .iter()
            .find(|b| b.baseline && b.mode == row.mode)
            .or_else(|| {
                self.rows
                    .iter()
                    .find(|b| b.baseline && b.mode == Mode::Sequential)
            })
    }

    fn row(&self, key: &str, mode: Mode) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key && r.mode == mode)
    }

    /// (median ratio, throughput ratio) of `row` to its baseline.
    pub fn ratios(&self, row: &Row) -> Option<(f64, f64)> {
        let b = self.baseline_of(row)?;
        let bm = b.percentile(0.5).as_secs_f64();
        let br = b.per_sec();
        (bm > 0.0 && br > 0.0).then(|| (row.percentile(0.5).as_secs_f64() / bm, row.per_sec() / br))
    }

    /// Throughput of a pool row over the process back end's in the same mode.
    pub fn throughput_vs_process(&self, row: &Row) -> Option<f64> {
        if !row.key.starts_with("conn-pool-") {
            return None;
        }
        let p = self.row(process_key(), row.mode)?.per_sec();
        (p > 0.0).then(|| row.per_sec() / p)
    }

    /// Failed commands over every measurement of the run.
    pub fn failures(&self) -> usize {
        self.rows.iter().map(|r| r.errors).sum::<usize>()
            + self.fresh_processes.iter().map(|f| f.errors).sum::<usize>()
    }

    /// Refused sessions the pools retried over the whole run.
    pub fn refusals_retried(&self) -> u64 {
        self.rows.iter().filter_map(|r| r.refusals_retried).sum()
    }

    /// Every figure the issues set a target for that this run measured.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let native = pool_key(native_mux());
        for (key, goal, source) in [
            (
                process_key(),
                TARGET_PROCESS_MEDIAN_RATIO,
                "issue 4: conn adds nothing measurable to ssh",
            ),
            (
                native.unwrap_or(""),
                TARGET_NATIVE_MEDIAN_RATIO,
                "issue 6: native mux per command",
            ),
        ] {
            if let Some(row) = self.row(key, Mode::Sequential)
                && let Some((m, _)) = self.ratios(row)
            {
                targets.push(Target {
                    what: format!("{} median / ssh -S median, sequential", row.label),
                    measured: m,
                    op: "<=",
                    goal,
                    source,
                });
            }
        }
        for &t in &self.threads {
            let mode = Mode::Concurrent(t);
            if let Some(row) = native.and_then(|k| self.row(k, mode)) {
                targets.push(Target {
                    what: format!("{} failed commands, {t} threads", row.label),
                    measured: row.errors as f64,
                    op: "<=",
                    goal: 0.0,
                    source: "issue 6: no command lost to MaxSessions",
                });
                if let Some(x) = self.throughput_vs_process(row) {
                    targets.push(Target {
                        what: format!("{} cmds/s / process mux cmds/s, {t} threads", row.label),
                        measured: x,
                        op: ">=",
                        goal: TARGET_NATIVE_THROUGHPUT_RATIO,
                        source: "issue 6: native mux throughput",
                    });
                }
            }
        }
        if let Some(x) = self.liveness.as_ref().and_then(Liveness::speedup) {
            targets.push(Target {
                what: "ssh -O check median / refresh() fast path median (cold)".into(),
                measured: x,
                op: ">=",
                goal: TARGET_FAST_PATH_SPEEDUP,
                source: "issue 4: liveness fast path",
            });
        }
        if let Some(fresh) = self.row("ssh-fresh", Mode::Sequential) {
            for f in &self.fresh_processes {
                if let Some(x) = ratio(fresh.percentile(0.5), percentile(&f.latencies, 0.5)) {
                    targets.push(Target {
                        what: format!("fresh ssh median / fresh `conn run --mux {}` median", f.mux),
                        measured: x,
                        op: ">=",
                        goal: TARGET_FRESH_PROCESS_SPEEDUP,
                        source: "issue 4: a new process reuses a live master",
                    });
                }
            }
        }
        targets
    }
}

/// The native back end, when it is compiled in.
fn native_mux() -> Option<Mux> {
    "native".parse().ok()
}

fn process_key() -> &'static str {
    "conn-pool-process"
}

/// JSON key and table label of a pool back end.
fn pool_key(mux: Option<Mux>) -> Option<&'static str> {
    mux.map(|m| pool_key_label(m).0)
}

fn pool_key_label(mux: Mux) -> (&'static str, &'static str) {
    if mux == Mux::Process {
        ("conn-pool-process", "conn pool (process mux)")
    } else {
        ("conn-pool-native", "conn pool (native mux)")
    }
}

/// What to measure: the arguments of `conn bench` after validation.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Commands per row.
    pub count: usize,
    /// Thread counts of the concurrent rows, ascending, no duplicates.
    pub threads: Vec<usize>,
    /// The pool back ends, in table order (native first).
    pub muxes: Vec<Mux>,
    /// Fresh ssh connections.
    pub fresh: usize,
    /// Unmeasured commands per pool first.
    pub warmup: usize,
    /// Liveness checks of each kind.
    pub checks: usize,
    /// Fresh `conn run` processes per back end.
    pub fresh_runs: usize,
    /// The command every measurement runs: [`EXEC_ARGV`], or [`BUILTIN_ARGV`] with `--builtin`.
    pub command: Vec<String>,
}

impl Plan {
    /// The plan of `args`: thread counts sorted and deduplicated, back ends deduplicated with
    /// the native one first.
    pub fn of(args: &BenchArgs) -> Plan {
        let mut threads: Vec<usize> = args.threads.iter().map(|&t| t as usize).collect();
        threads.sort_unstable();
        threads.dedup();
        let mut muxes = Vec::new();
        for m in native_mux().into_iter().chain([Mux::Process]) {
            if args.mux.contains(&m) {
                muxes.push(m);
            }
        }
        Plan {
            count: args.count as usize,
            threads,
            muxes,
            fresh: args.fresh as usize,
            warmup: args.warmup as usize,
            checks: args.checks as usize,
            fresh_runs: args.fresh_runs as usize,
            command: if args.builtin {
                BUILTIN_ARGV
            } else {
                EXEC_ARGV
            }
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Runs `conn bench`; returns the exit code.
pub fn main(args: &BenchArgs) -> Result<u8, Failure> {
    args.ssh.validate().map_err(Failure::usage)?;
    let plan = Plan::of(args);
    // Validate every transport before anything starts.
    for &m in &plan.muxes {
        args.ssh.builder(&args.host).mux(m).build()?;
    }
    let report = run(&args.ssh, &args.host, &plan)?;
    let mut out = io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{}", to_json(&report))
    } else {
        write_table(&mut out, &report)
    };
    written
        .or_else(crate::output::ignore_broken_pipe)
        .map_err(|e| Failure::other(format!("writing the report: {e}")))?;
    let failures = report.failures();
    if failures > 0 {
        print_error(&format!(
            "{failures} benchmarked command(s) failed (see the report): the figures are not valid"
        ));
        return Ok(1);
    }
    Ok(0)
}

/// Measures everything in `plan` against `host` with the options `opts`.
///
/// The pools never end their masters themselves: the fresh-process section needs them alive
/// after the pools shut down. With `--exit-on-shutdown` they are ended at the very end.
pub fn run(opts: &SshArgs, host: &str, plan: &Plan) -> Result<Report, Failure> {
    let load_before = load_average();
    let capacity = opts.capacity as usize;
    let mut pools = Vec::new();
    for &m in &plan.muxes {
        let ssh = opts
            .builder(host)
            .mux(m)
            .exit_masters_on_shutdown(false)
            .build()?;
        pools.push((m, ConnectionPool::new(ssh, POOL_NAME, capacity)?));
    }
    let measured = measure_pools(&pools, opts, host, plan);
    for (_, pool) in &pools {
        pool.shutdown();
    }
    let masters_started = measured.as_ref().map_or(0, |r| r.masters * pools.len());
    let result = measured.and_then(|mut report| {
        if plan.fresh_runs > 0 {
            report.fresh_processes = fresh_processes(opts, host, plan)?;
        }
        report.load[1] = load_average();
        Ok(report)
    });
    if opts.exit_on_shutdown {
        end_masters(opts, host, masters_started.max(pools.len()));
    }
    let mut report = result?;
    report.load[0] = load_before;
    Ok(report)
}

/// Warms the pools up, starts their masters, and measures every row and the liveness section.
fn measure_pools(
    pools: &[(Mux, ConnectionPool<OpenSsh>)],
    opts: &SshArgs,
    host: &str,
    plan: &Plan,
) -> Result<Report, Failure> {
    let capacity = opts.capacity as usize;
    let echo = Cmd::new(plan.command.iter().cloned());
    let max_threads = plan.threads.iter().copied().max().unwrap_or(1);
    let mut sockets = Vec::new();
    for (_, pool) in pools {
        for _ in 0..plan.warmup {
            pool.run(&echo, &SimpleJob::with_timeout(COMMAND_TIMEOUT))?;
        }
        sockets = start_masters(pool, max_threads)?;
    }
    // The baseline uses the masters of the last pool (the process one when it is measured),
    // and exactly the ssh options that pool's transport uses.
    let base = match pools.last() {
        Some((_, pool)) => pool.transport().ssh_command_prefix().to_vec(),
        None => return Err(Failure::other("no pool back end to measure")),
    };
    let mut subjects = pool_subjects(pools, &plan.command);
    subjects.push(hand_spawned(&base, host, &plan.command, &sockets, capacity));
    let mut rows = Vec::new();
    let modes =
        std::iter::once(Mode::Sequential).chain(plan.threads.iter().map(|&t| Mode::Concurrent(t)));
    for mode in modes {
        rows.extend(measure_fairly(&subjects, mode, plan.count)?);
    }
    if plan.fresh > 0 {
        rows.push(measure(
            &fresh_connection(&base, host, &plan.command),
            Mode::Sequential,
            plan.fresh,
        )?);
    }
    let liveness = match pools.last() {
        Some((_, pool)) if plan.checks > 0 => Some(liveness(pool, &base, host, plan.checks)?),
        _ => None,
    };
    Ok(Report {
        host: host.to_string(),
        command: plan.command.clone(),
        count: plan.count,
        threads: plan.threads.clone(),
        capacity,
        masters: sockets.len(),
        load: [None, None],
        rows,
        liveness,
        fresh_processes: Vec::new(),
    })
}

/// The pool back ends to measure: one subject per pool, running `command` through
/// `ConnectionPool::run` as `conn run` does.
fn pool_subjects<'a>(
    pools: &'a [(Mux, ConnectionPool<OpenSsh>)],
    command: &[String],
) -> Vec<Subject<'a>> {
    pools
        .iter()
        .map(|(mux, pool)| {
            let echo = Cmd::new(command.iter().cloned());
            let (key, label) = pool_key_label(*mux);
            Subject {
                key,
                label,
                baseline: false,
                run: Box::new(move |_thread| {
                    let out = pool
                        .run(&echo, &SimpleJob::with_timeout(COMMAND_TIMEOUT))
                        .map_err(|e| e.to_string())?;
                    check_stdout(&out.stdout)
                }),
                refusals: Some(Box::new(move || pool.refusals_retried())),
            }
        })
        .collect()
}

/// Liveness of the pool's first master, `n` times each way, interleaved: the in-process probe
/// alone, a whole `refresh()` on its fast path, and a spawned `ssh -O check`.
fn liveness(
    pool: &ConnectionPool<OpenSsh>,
    base: &[String],
    host: &str,
    n: usize,
) -> Result<Liveness, Failure> {
    let conn = pool.get()?;
    let job = SimpleJob::with_timeout(COMMAND_TIMEOUT);
    conn.refresh(&job)?; // the fast path is taken from here on (ControlPersist − margin)
    let socket = conn
        .control_path()
        .ok_or_else(|| Failure::other("the pool's connections have no control socket"))?;
    let mut argv = base.to_vec();
    argv.push("-S".into());
    argv.push(socket.to_string_lossy().into_owned());
    argv.extend(["-O".into(), "check".into(), host.to_string()]);
    let mut l = Liveness::default();
    let probe = |into: &mut Vec<Duration>| -> Result<(), Failure> {
        let t0 = Instant::now();
        let listening = conn.master_is_listening();
        into.push(t0.elapsed());
        if listening {
            Ok(())
        } else {
            Err(Failure::other(format!(
                "the master on {} stopped listening",
                socket.display()
            )))
        }
    };
    let fast_path = |into: &mut Vec<Duration>| -> Result<(), Failure> {
        let t0 = Instant::now();
        conn.refresh(&job)?;
        into.push(t0.elapsed());
        Ok(())
    };
    for round in 0..n {
        if signals::interrupted().is_some() {
            return Err(interrupted());
        }
        let t0 = Instant::now();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| Failure::other(format!("cannot run {}: {e}", argv[0])))?;
        l.ssh_check.push(t0.elapsed());
        if !out.status.success() {
            return Err(Failure::other(format!(
                "ssh -O check on {} failed ({}): {}",
                socket.display(),
                out.status,
                one_line(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        if round % 2 == 0 {
            fast_path(&mut l.fast_path_cold)?;
            probe(&mut l.probe_warm)?;
        } else {
            probe(&mut l.probe_cold)?;
            fast_path(&mut l.fast_path_warm)?;
        }
    }
    for v in [
        &mut l.fast_path_cold,
        &mut l.fast_path_warm,
        &mut l.probe_cold,
        &mut l.probe_warm,
        &mut l.ssh_check,
    ] {
        v.sort();
    }
    Ok(l)
}

/// Spawns `conn run --mux <mux> -H host -- <the plan's command>` (this very binary, with the
/// same options and socket directory) `plan.fresh_runs` times per back end, the back ends
/// taking turns, and times each child from spawn to exit. The pools have shut down: the
/// masters are alive and their leases free, so each child leases one and runs its first
/// command over it.
fn fresh_processes(opts: &SshArgs, host: &str, plan: &Plan) -> Result<Vec<FreshProcess>, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::other(format!("cannot find the conn executable: {e}")))?;
    let mut results: Vec<FreshProcess> = plan
        .muxes
        .iter()
        .map(|&mux| FreshProcess {
            mux,
            latencies: Vec::new(),
            errors: 0,
            first_error: None,
        })
        .collect();
    for _ in 0..plan.fresh_runs {
        for result in results.iter_mut() {
            if signals::interrupted().is_some() {
                return Err(interrupted());
            }
            let mut args: Vec<OsString> = vec!["run".into()];
            args.extend(opts.to_cli_args());
            args.push(format!("--mux={}", result.mux).into());
            args.push(format!("--timeout={}", COMMAND_TIMEOUT.as_secs()).into());
            args.extend(["-H", host, "--"].map(OsString::from));
            args.extend(plan.command.iter().map(OsString::from));
            let t0 = Instant::now();
            let out = Command::new(&exe)
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Failure::other(format!("cannot run {}: {e}", exe.display())))?;
            let took = t0.elapsed();
            let checked = if out.status.success() {
                check_stdout(&out.stdout)
            } else {
                Err(format!(
                    "conn run exited with {}: {}",
                    out.status,
                    one_line(&String::from_utf8_lossy(&out.stderr))
                ))
            };
            match checked {
                Ok(()) => result.latencies.push(took),
                Err(e) => {
                    result.errors += 1;
                    result.first_error.get_or_insert(e);
                }
            }
        }
    }
    for r in &mut results {
        r.latencies.sort();
    }
    Ok(results)
}

/// Ends (`ssh -O exit`) up to `n` masters of the bench's lease namespace whose leases are free:
/// the masters this run started, for `--exit-on-shutdown`. Failures are only logged.
fn end_masters(opts: &SshArgs, host: &str, n: usize) {
    let pool = match opts
        .builder(host)
        .exit_masters_on_shutdown(true)
        .build()
        .and_then(|ssh| ConnectionPool::new(ssh, POOL_NAME, 1))
    {
        Ok(pool) => pool,
        Err(e) => {
            tracing::warn!("cannot end the masters: {e}");
            return;
        }
    };
    // Capacity 1: each guard is a connection of its own, hence a lease of its own.
    let mut guards = Vec::new();
    for _ in 0..n {
        match pool.get() {
            Ok(g) if g.master_is_listening() => guards.push(g),
            Ok(_) => break, // no free name with a live master left
            Err(e) => {
                tracing::warn!("cannot lease a master to end it: {e}");
                break;
            }
        }
    }
    drop(guards);
    pool.shutdown();
}

fn interrupted() -> Failure {
    Failure {
        code: EXIT_INTERRUPTED,
        message: format!(
            "interrupted by signal {}",
            signals::interrupted().unwrap_or_default()
        ),
    }
}

/// Makes the pool start every master the concurrent rows will use (so that no row pays for a
/// master start), and returns their sockets in creation order: `threads` sessions checked out
/// at once fill connection 0 to capacity, then connection 1, and so on.
fn start_masters(pool: &ConnectionPool<OpenSsh>, threads: usize) -> Result<Vec<PathBuf>, Failure> {
    let guards = (0..threads.max(1))
        .map(|_| pool.get())
        .collect::<conn_core::Result<Vec<_>>>()?;
    let mut sockets: BTreeMap<usize, PathBuf> = BTreeMap::new();
    for g in &guards {
        if sockets.contains_key(&g.id()) {
            continue;
        }
        g.refresh(&SimpleJob::with_timeout(COMMAND_TIMEOUT))?;
        let socket = g.control_path().ok_or_else(|| {
            Failure::other("the pool's connections have no control socket (reuse is off)")
        })?;
        sockets.insert(g.id(), socket.to_path_buf());
    }
    Ok(sockets.into_values().collect())
}

/// The baseline: `ssh <the pool's options> -S <socket> -oControlMaster=no
/// -oProxyCommand=false <host> <command>`, spawned with `std::process::Command`, thread `t` on
/// the socket of the master the pool would give its `t`-th session.
fn hand_spawned<'a>(
    base: &[String],
    host: &str,
    command: &[String],
    sockets: &[PathBuf],
    capacity: usize,
) -> Subject<'a> {
    let argvs: Vec<Vec<String>> = sockets
        .iter()
        .map(|socket| {
            let mut argv = base.to_vec();
            argv.push("-S".into());
            argv.push(socket.to_string_lossy().into_owned());
            argv.extend(["-oControlMaster=no".into(), "-oProxyCommand=false".into()]);
            argv.push(host.to_string());
            argv.extend(command.iter().cloned());
            argv
        })
        .collect();
    Subject {
        key: "ssh-S",
        label: "ssh -S (hand-spawned)",
        baseline: true,
        run: Box::new(move |thread| {
            let argv = &argvs[(thread / capacity).min(argvs.len() - 1)];
            spawn(argv)
        }),
        refusals: None,
    }
}

/// A new ssh connection per command (no master): handshake and authentication every time.
fn fresh_connection<'a>(base: &[String], host: &str, command: &[String]) -> Subject<'a> {
    let mut argv = base.to_vec();
    argv.extend(["-oControlMaster=no".into(), "-oControlPath=none".into()]);
    argv.push(host.to_string());
    argv.extend(command.iter().cloned());
    Subject {
        key: "ssh-fresh",
        label: "ssh (new connection)",
        baseline: false,
        run: Box::new(move |_| spawn(&argv)),
        refusals: None,
    }
}

fn spawn(argv: &[String]) -> Result<(), String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(format!(
            "ssh exited with {}: {}",
            out.status,
            one_line(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    check_stdout(&out.stdout)
}

fn check_stdout(stdout: &[u8]) -> Result<(), String> {
    if stdout == EXPECTED_STDOUT {
        Ok(())
    } else {
        Err(format!(
            "unexpected output {:?} (expected \"hello\\n\")",
            String::from_utf8_lossy(stdout)
        ))
    }
}

/// Measures every subject in `mode` so that a drift of the machine (caches, CPU frequency,
/// other load, the master's state) favours no subject: sequentially, the subjects take turns
/// command by command; concurrently, each runs its rows in two halves, in A B … B A order.
fn measure_fairly(subjects: &[Subject<'_>], mode: Mode, count: usize) -> Result<Vec<Row>, Failure> {
    if mode == Mode::Sequential {
        return measure_round_robin(subjects, count);
    }
    let first = count.div_ceil(2);
    let mut rows = subjects
        .iter()
        .map(|s| measure(s, mode, first))
        .collect::<Result<Vec<_>, _>>()?;
    if count > first {
        for (row, subject) in rows.iter_mut().zip(subjects).rev() {
            let second = measure(subject, mode, count - first)?;
            row.latencies.extend(second.latencies);
            row.latencies.sort();
            row.wall += second.wall;
            row.errors += second.errors;
            row.refusals_retried = row
                .refusals_retried
                .zip(second.refusals_retried)
                .map(|(a, b)| a + b);
            if row.first_error.is_none() {
                row.first_error = second.first_error;
            }
        }
    }
    Ok(rows)
}

/// Runs `count` commands of each subject on this thread, one subject after the other in turn
/// (the first of each round rotates). A row's wall time is the sum of its own commands' times.
fn measure_round_robin(subjects: &[Subject<'_>], count: usize) -> Result<Vec<Row>, Failure> {
    let mut rows: Vec<Row> = subjects
        .iter()
        .map(|s| Row {
            key: s.key,
            label: s.label,
            mode: Mode::Sequential,
            baseline: s.baseline,
            latencies: Vec::with_capacity(count),
            wall: Duration::ZERO,
            errors: 0,
            first_error: None,
            refusals_retried: s.refusals.as_ref().map(|f| f()),
        })
        .collect();
    let n = subjects.len();
    for round in 0..count {
        for k in (0..n).map(|i| (i + round) % n) {
            if signals::interrupted().is_some() {
                return Err(interrupted());
            }
            let t0 = Instant::now();
            let result = (subjects[k].run)(0);
            let took = t0.elapsed();
            let row = &mut rows[k];
            row.wall += took;
            match result {
                Ok(()) => row.latencies.push(took),
                Err(e) => {
                    row.errors += 1;
                    row.first_error.get_or_insert(e);
                }
            }
        }
    }
    for (row, subject) in rows.iter_mut().zip(subjects) {
        row.latencies.sort();
        row.refusals_retried = subject
            .refusals
            .as_ref()
            .zip(row.refusals_retried)
            .map(|(f, before)| f().saturating_sub(before));
        if row.latencies.is_empty() {
            return Err(Failure::other(format!(
                "every command of \"{}\" failed: {}",
                row.label,
                row.first_error.clone().unwrap_or_default()
            )));
        }
    }
    Ok(rows)
}

/// Runs `count` commands of `subject` in `mode`; commands are handed out to the threads one
/// at a time, so every thread stays busy until the end.
fn measure(subject: &Subject<'_>, mode: Mode, count: usize) -> Result<Row, Failure> {
    let next = AtomicUsize::new(0);
    let errors: Mutex<(usize, Option<String>)> = Mutex::new((0, None));
    let all: Mutex<Vec<Duration>> = Mutex::new(Vec::with_capacity(count));
    let refusals_before = subject.refusals.as_ref().map(|f| f());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..mode.threads() {
            let (next, errors, all) = (&next, &errors, &all);
            scope.spawn(move || {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count
                    && signals::interrupted().is_none()
                {
                    let t0 = Instant::now();
                    let result = (subject.run)(thread);
                    let took = t0.elapsed();
                    match result {
                        Ok(()) => mine.push(took),
                        Err(e) => {
                            let mut errors = errors.lock().unwrap_or_else(|e| e.into_inner());
                            errors.0 += 1;
                            errors.1.get_or_insert(e);
                        }
                    }
                }
                all.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
            });
        }
    });
    let wall = start.elapsed();
    let refusals_retried = subject
        .refusals
        .as_ref()
        .zip(refusals_before)
        .map(|(f, before)| f().saturating_sub(before));
    if signals::interrupted().is_some() {
        return Err(interrupted());
    }
    let mut latencies = all.into_inner().unwrap_or_else(|e| e.into_inner());
    latencies.sort();
    let (errors, first_error) = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    if latencies.is_empty() {
        return Err(Failure::other(format!(
            "every command of \"{}\" failed: {}",
            subject.label,
            first_error.unwrap_or_default()
        )));
    }
    Ok(Row {
        key: subject.key,
        label: subject.label,
        mode,
        baseline: subject.baseline,
        latencies,
        wall,
        errors,
        first_error,
        refusals_retried,
    })
}

fn micros(d: Duration) -> String {
    group_thousands(d.as_micros())
}

fn group_thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn fmt_load(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "unknown".into(),
        |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

fn fmt_ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.2}"))
}

/// The human table.
pub fn write_table(out: &mut impl Write, r: &Report) -> io::Result<()> {
    let threads = r
        .threads
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    writeln!(
        out,
        "conn bench: `{}` on {}: {} commands per row, {} threads in the concurrent rows, \
         {} session{} per master ({} master{} per back end)",
        r.command.join(" "),
        r.host,
        r.count,
        if threads.is_empty() {
            "no".into()
        } else {
            threads
        },
        r.capacity,
        if r.capacity == 1 { "" } else { "s" },
        r.masters,
        if r.masters == 1 { "" } else { "s" },
    )?;
    writeln!(
        out,
        "load average (1, 5, 15 min): {} at the start, {} at the end; {} CPU(s)",
        fmt_load(r.load[0]),
        fmt_load(r.load[1]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:<11} {:>6} {:>6} {:>7} {:>10} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8}",
        "back end",
        "mode",
        "cmds",
        "failed",
        "refused",
        "median µs",
        "p90 µs",
        "p99 µs",
        "cmds/s",
        "median×",
        "cmds/s×",
        "×process"
    )?;
    for row in &r.rows {
        let ratios = r.ratios(row);
        writeln!(
            out,
            "{:<24} {:<11} {:>6} {:>6} {:>7} {:>10} {:>10} {:>10} {:>9.1} {:>8} {:>8} {:>8}",
            row.label,
            row.mode.label(),
            row.latencies.len(),
            row.errors,
            row.refusals_retried
                .map_or_else(|| "-".into(), |n| n.to_string()),
            micros(row.percentile(0.5)),
            micros(row.percentile(0.9)),
            micros(row.percentile(0.99)),
            row.per_sec(),
            fmt_ratio(ratios.map(|x| x.0)),
            fmt_ratio(ratios.map(|x| x.1)),
            fmt_ratio(r.throughput_vs_process(row)),
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "median× and cmds/s×: ratio to `ssh -S (hand-spawned)` in the same mode (fresh \
         connections: to the sequential one); ×process: cmds/s over the process mux's in the \
         same mode. failed: commands that failed (must be 0); refused: sessions sshd refused \
         (MaxSessions) that the pool retried."
    )?;
    for row in r.rows.iter().filter(|row| row.errors > 0) {
        writeln!(
            out,
            "FAILED: {} ({}): {} command(s), first: {}",
            row.label,
            row.mode.label(),
            row.errors,
            one_line(row.first_error.as_deref().unwrap_or(""))
        )?;
    }

    if let Some(l) = &r.liveness {
        writeln!(out)?;
        writeln!(
            out,
            "Liveness of a warm master: {} spawned `ssh -O check`s; after each, the refresh fast \
             path and the probe, in turns first (cold: right after the spawn) or second (warm):",
            l.ssh_check.len()
        )?;
        writeln!(
            out,
            "{:<40} {:>6} {:>10} {:>10} {:>10} {:>16}",
            "check", "runs", "median µs", "p90 µs", "p99 µs", "-O check / this"
        )?;
        let check_median = percentile(&l.ssh_check, 0.5);
        for (_, label, v) in l.rows() {
            writeln!(
                out,
                "{:<40} {:>6} {:>10} {:>10} {:>10} {:>16}",
                label,
                v.len(),
                micros_fine(percentile(v, 0.5)),
                micros_fine(percentile(v, 0.9)),
                micros_fine(percentile(v, 0.99)),
                fmt_ratio(ratio(check_median, percentile(v, 0.5))),
            )?;
        }
    }

    if !r.fresh_processes.is_empty() {
        let fresh = r.row("ssh-fresh", Mode::Sequential);
        writeln!(out)?;
        writeln!(
            out,
            "First command of a fresh process: `conn run --mux M -H {} -- {}` spawned anew each \
             time (after the pools shut down: masters alive, leases free), whole child wall time:",
            r.host,
            r.command.join(" ")
        )?;
        writeln!(
            out,
            "{:<40} {:>6} {:>6} {:>10} {:>10} {:>10} {:>16}",
            "process", "runs", "failed", "median µs", "p90 µs", "p99 µs", "fresh ssh / this"
        )?;
        for f in &r.fresh_processes {
            writeln!(
                out,
                "{:<40} {:>6} {:>6} {:>10} {:>10} {:>10} {:>16}",
                format!("conn run --mux {}", f.mux),
                f.latencies.len(),
                f.errors,
                micros(percentile(&f.latencies, 0.5)),
                micros(percentile(&f.latencies, 0.9)),
                micros(percentile(&f.latencies, 0.99)),
                fmt_ratio(
                    fresh.and_then(|x| ratio(x.percentile(0.5), percentile(&f.latencies, 0.5)))
                ),
            )?;
            if let Some(e) = &f.first_error {
                writeln!(
                    out,
                    "FAILED: conn run --mux {}: first: {}",
                    f.mux,
                    one_line(e)
                )?;
            }
        }
        if let Some(x) = fresh {
            writeln!(
                out,
                "{:<40} {:>6} {:>6} {:>10} {:>10} {:>10} {:>16}",
                x.label,
                x.latencies.len(),
                x.errors,
                micros(x.percentile(0.5)),
                micros(x.percentile(0.9)),
                micros(x.percentile(0.99)),
                "1.00"
            )?;
        }
    }

    let targets = r.targets();
    if !targets.is_empty() {
        writeln!(out)?;
        writeln!(out, "Targets (`{}`):", r.command.join(" "))?;
        for t in &targets {
            writeln!(
                out,
                "  {:<6} {:<62} {:>8} {} {:<6} ({})",
                if t.met() { "met" } else { "MISSED" },
                t.what,
                if t.measured.abs() < 10.0 {
                    format!("{:.3}", t.measured)
                } else {
                    format!("{:.1}", t.measured)
                },
                if t.op == "<=" { "≤" } else { "≥" },
                t.goal,
                t.source
            )?;
        }
    }
    Ok(())
}

/// Microseconds with one decimal below 100 µs (the in-process probes), whole ones above.
fn micros_fine(d: Duration) -> String {
    if d < Duration::from_micros(100) {
        format!("{:.1}", d.as_secs_f64() * 1e6)
    } else {
        micros(d)
    }
}

fn stats_json(v: &[Duration]) -> serde_json::Value {
    json!({
        "count": v.len(),
        "median_ns": percentile(v, 0.5).as_nanos() as u64,
        "p90_ns": percentile(v, 0.9).as_nanos() as u64,
        "p99_ns": percentile(v, 0.99).as_nanos() as u64,
    })
}

/// The machine-readable report.
pub fn to_json(r: &Report) -> serde_json::Value {
    let rows: Vec<_> = r
        .rows
        .iter()
        .map(|row| {
            let ratios = r.ratios(row);
            json!({
                "backend": row.key,
                "label": row.label,
                "mode": match row.mode { Mode::Sequential => "sequential", Mode::Concurrent(_) => "concurrent" },
                "threads": row.mode.threads(),
                "baseline": row.baseline,
                "commands": row.latencies.len(),
                "errors": row.errors,
                "first_error": row.first_error,
                "refusals_retried": row.refusals_retried,
                "median_us": row.percentile(0.5).as_micros() as u64,
                "p90_us": row.percentile(0.9).as_micros() as u64,
                "p99_us": row.percentile(0.99).as_micros() as u64,
                "wall_us": row.wall.as_micros() as u64,
                "commands_per_sec": row.per_sec(),
                "median_ratio": ratios.map(|x| x.0),
                "commands_per_sec_ratio": ratios.map(|x| x.1),
                "commands_per_sec_ratio_to_process": r.throughput_vs_process(row),
            })
        })
        .collect();
    let liveness = r.liveness.as_ref().map(|l| {
        let mut obj = serde_json::Map::new();
        for (key, _, v) in l.rows() {
            obj.insert(key.into(), stats_json(v));
        }
        obj.insert("speedup".into(), json!(l.speedup()));
        serde_json::Value::Object(obj)
    });
    let fresh_median = r
        .row("ssh-fresh", Mode::Sequential)
        .map(|x| x.percentile(0.5));
    let fresh_processes: Vec<_> = r
        .fresh_processes
        .iter()
        .map(|f| {
            let median = percentile(&f.latencies, 0.5);
            json!({
                "mux": f.mux.to_string(),
                "runs": f.latencies.len(),
                "errors": f.errors,
                "first_error": f.first_error,
                "median_us": median.as_micros() as u64,
                "p90_us": percentile(&f.latencies, 0.9).as_micros() as u64,
                "p99_us": percentile(&f.latencies, 0.99).as_micros() as u64,
                "speedup_vs_fresh_ssh": fresh_median.and_then(|m| ratio(m, median)),
            })
        })
        .collect();
    let targets: Vec<_> = r
        .targets()
        .iter()
        .map(|t| {
            json!({
                "what": t.what,
                "measured": t.measured,
                "op": t.op,
                "goal": t.goal,
                "met": t.met(),
                "source": t.source,
            })
        })
        .collect();
    json!({
        "host": r.host,
        "command": r.command,
        "count": r.count,
        "threads": r.threads,
        "capacity": r.capacity,
        "masters": r.masters,
        "load_average": {"start": r.load[0], "end": r.load[1]},
        "failures": r.failures(),
        "refusals_retried": r.refusals_retried(),
        "rows": rows,
        "liveness": liveness,
        "fresh_processes": fresh_processes,
        "targets": targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(percentile(&v, 0.5), ms(50));
        assert_eq!(percentile(&v, 0.9), ms(90));
        assert_eq!(percentile(&v, 0.99), ms(99));
        assert_eq!(percentile(&[ms(7)], 0.99), ms(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        let v = [ms(1), ms(2), ms(3)];
        assert_eq!(percentile(&v, 0.5), ms(2));
    }

    fn row(key: &'static str, mode: Mode, baseline: bool, lat: &[u64], wall: u64) -> Row {
        Row {
            key,
            label: key,
            mode,
            baseline,
            latencies: lat.iter().copied().map(ms).collect(),
            wall: ms(wall),
            errors: 0,
            first_error: None,
            refusals_retried: None,
        }
    }

    #[test]
    fn ratios_compare_to_the_baseline_of_the_same_mode() {
        let report = Report {
            host: "h".into(),
            command: EXEC_ARGV.map(String::from).to_vec(),
            count: 2,
            threads: vec![4],
            capacity: 8,
            masters: 1,
            load: [Some([1.0, 2.0, 3.0]), None],
            rows: vec![
                row("conn-pool-process", Mode::Sequential, false, &[5, 5], 10),
                row("ssh-S", Mode::Sequential, true, &[10, 10], 20),
                row("conn-pool-process", Mode::Concurrent(4), false, &[8, 8], 4),
                row("ssh-S", Mode::Concurrent(4), true, &[8, 8], 8),
                row("ssh-fresh", Mode::Sequential, false, &[100, 100], 200),
            ],
            liveness: None,
            fresh_processes: Vec::new(),
        };
        let (m, t) = report.ratios(&report.rows[0]).unwrap();
        assert!((m - 0.5).abs() < 1e-9 && (t - 2.0).abs() < 1e-9);
        let (m, t) = report.ratios(&report.rows[2]).unwrap();
        assert!((m - 1.0).abs() < 1e-9 && (t - 2.0).abs() < 1e-9);
        let (m, _) = report.ratios(&report.rows[4]).unwrap();
        assert!((m - 10.0).abs() < 1e-9);
        let mut table = Vec::new();
        write_table(&mut table, &report).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("4 threads") && table.contains("10.00"),
            "{table}"
        );
        let json = to_json(&report);
        assert_eq!(json["rows"][0]["median_us"], 5000);
        assert_eq!(json["rows"][2]["mode"], "concurrent");
    }

    #[test]
    fn targets_compare_each_figure_with_its_goal() {
        let mut native_32 = row(
            "conn-pool-native",
            Mode::Concurrent(32),
            false,
            &[3; 20],
            10,
        );
        native_32.errors = 1;
        let report = Report {
            host: "h".into(),
            command: EXEC_ARGV.map(String::from).to_vec(),
            count: 2,
            threads: vec![8, 32],
            capacity: 8,
            masters: 4,
            load: [None, None],
            rows: vec![
                row("conn-pool-native", Mode::Sequential, false, &[3, 3], 6),
                row("conn-pool-process", Mode::Sequential, false, &[10, 10], 20),
                row("ssh-S", Mode::Sequential, true, &[10, 10], 20),
                row("conn-pool-native", Mode::Concurrent(8), false, &[3; 40], 10),
                row(
                    "conn-pool-process",
                    Mode::Concurrent(8),
                    false,
                    &[8; 10],
                    10,
                ),
                row("ssh-S", Mode::Concurrent(8), true, &[8; 10], 10),
                native_32,
                row(
                    "conn-pool-process",
                    Mode::Concurrent(32),
                    false,
                    &[8; 10],
                    10,
                ),
                row("ssh-S", Mode::Concurrent(32), true, &[8; 10], 10),
                row("ssh-fresh", Mode::Sequential, false, &[200, 200], 400),
            ],
            liveness: Some(Liveness {
                fast_path_cold: vec![Duration::from_micros(20)],
                ssh_check: vec![ms(3)],
                ..Liveness::default()
            }),
            fresh_processes: vec![FreshProcess {
                mux: Mux::Process,
                latencies: vec![ms(25)],
                errors: 0,
                first_error: None,
            }],
        };
        let got: Vec<(String, bool)> = report
            .targets()
            .iter()
            .map(|t| (t.what.clone(), t.met()))
            .collect();
        let expected = [
            ("conn-pool-process median / ssh -S median, sequential", true),
            ("conn-pool-native median / ssh -S median, sequential", true),
            ("conn-pool-native failed commands, 8 threads", true),
            (
                "conn-pool-native cmds/s / process mux cmds/s, 8 threads",
                true,
            ),
            ("conn-pool-native failed commands, 32 threads", false),
            (
                "conn-pool-native cmds/s / process mux cmds/s, 32 threads",
                false,
            ),
            (
                "ssh -O check median / refresh() fast path median (cold)",
                true,
            ),
            (
                "fresh ssh median / fresh `conn run --mux process` median",
                false,
            ),
        ];
        let expected: Vec<(String, bool)> =
            expected.iter().map(|(w, m)| (w.to_string(), *m)).collect();
        assert_eq!(got, expected);
        assert_eq!(report.failures(), 1);
        let json = to_json(&report);
        assert_eq!(json["targets"][5]["met"], false);
        assert_eq!(json["liveness"]["speedup"], 150.0);
        assert_eq!(json["fresh_processes"][0]["speedup_vs_fresh_ssh"], 8.0);
        let mut table = Vec::new();
        write_table(&mut table, &report).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(
            table.contains("MISSED") && table.contains("FAILED"),
            "{table}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1234), "1 234");
        assert_eq!(group_thousands(1234567), "1 234 567");
    }
}
