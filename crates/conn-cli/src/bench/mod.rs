//! `conn bench`: latency and throughput of `/bin/echo hello` (with `--builtin`, the remote
//! shell's builtin `echo hello`: see [`plan::BUILTIN_ARGV`]) through conn's pool, with each mux
//! back end (native: the OpenSSH mux protocol spoken in-process; process: one `ssh -S` client
//! per command), against the same number of hand-spawned `ssh -S <socket of a pooled master>`
//! commands (the baseline: what a careful script would do without conn) and a few fresh `ssh`
//! connections. In the same run: the refresh fast path (in-process probe) against a spawned
//! `ssh -O check`, and the first command of a fresh `conn run` process against a fresh ssh.
//! The report gives figures and their ratios to the baselines measured in the same run; it
//! grades nothing.
//!
//! - [`plan`]: what to measure (the validated arguments, the command, the modes);
//! - [`subjects`]: who runs the command (each pool back end, the baseline, fresh ssh);
//! - [`measure`]: the rows of the main table, measured fairly;
//! - [`liveness`], [`fresh_process`]: the two other sections;
//! - [`report`], [`table`], [`stats`]: the figures, their ratios, and how they are shown;
//! - [`stream`]: `--stream`, the throughput of one large stream instead.

mod fresh_process;
mod liveness;
mod measure;
mod plan;
mod report;
mod stats;
mod stream;
mod subjects;
mod table;

use std::io::{self, Write};
use std::time::Duration;

use conn_core::{Cmd, ConnectionPool, SimpleJob};
use conn_openssh::{Mux, OpenSsh};

use self::plan::Plan;
use self::report::Report;
use crate::args::{BenchArgs, SshArgs};
use crate::output::{EXIT_INTERRUPTED, Failure, print_error};
use crate::{POOL_NAME, signals};

/// Bound for one benchmarked command: a hung master fails the bench instead of hanging it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `conn bench`; returns the exit code.
pub fn main(args: &BenchArgs) -> Result<u8, Failure> {
    args.ssh.validate().map_err(Failure::usage)?;
    let plan = Plan::of(args);
    // Validate every transport before anything starts.
    for &m in &plan.muxes {
        args.ssh.builder(&args.host).mux(m).build()?;
    }
    if args.stream {
        return stream::main(args, &plan.muxes);
    }
    let report = run(&args.ssh, &args.host, &plan)?;
    let mut out = io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{}", report::to_json(&report))
    } else {
        table::write_table(&mut out, &report)
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
fn run(opts: &SshArgs, host: &str, plan: &Plan) -> Result<Report, Failure> {
    let load_before = stats::load_average();
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
            report.fresh_processes = fresh_process::fresh_processes(opts, host, plan)?;
        }
        report.load[1] = stats::load_average();
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
    let mut lines = Vec::new();
    for (_, pool) in pools {
        for _ in 0..plan.warmup {
            pool.run(&echo, &SimpleJob::with_timeout(COMMAND_TIMEOUT))?;
        }
        lines = subjects::start_masters(pool, max_threads, &plan.command)?;
    }
    // The baseline uses the masters of the last pool (the process one when it is measured),
    // with the command lines that pool's own connections build.
    let Some((_, last)) = pools.last() else {
        return Err(Failure::other("no pool back end to measure"));
    };
    let masters = lines.len();
    let mut subjects = subjects::pool_subjects(pools, &plan.command);
    subjects.push(subjects::hand_spawned(lines, capacity));
    let mut rows = Vec::new();
    for mode in plan.modes() {
        rows.extend(measure::measure_fairly(&subjects, mode, plan.count)?);
    }
    if plan.fresh > 0 {
        let fresh = subjects::fresh_connection(opts, host, &plan.command)?;
        rows.push(measure::measure(
            &fresh,
            plan::Mode::Sequential,
            plan.fresh,
        )?);
    }
    let liveness = match plan.checks {
        0 => None,
        n => Some(liveness::measure_liveness(last, n)?),
    };
    Ok(Report {
        host: host.to_string(),
        command: plan.command.clone(),
        count: plan.count,
        threads: plan.threads.clone(),
        capacity,
        masters,
        load: [None, None],
        rows,
        liveness,
        fresh_processes: Vec::new(),
    })
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
        match pool.get_unrefreshed() {
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

/// The failure of a run a signal ended.
fn interrupted() -> Failure {
    Failure {
        code: EXIT_INTERRUPTED,
        message: format!(
            "interrupted by signal {}",
            signals::interrupted().unwrap_or_default()
        ),
    }
}
