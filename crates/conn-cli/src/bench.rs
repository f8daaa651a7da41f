//! `conn bench`: latency and throughput of `/bin/echo hello` through conn's pool, against the
//! same number of hand-spawned `ssh -S <socket of a pooled master>` commands (the baseline:
//! what a careful script would do without conn) and a few fresh `ssh` connections.
//!
//! Everything measured is a [`Subject`]: a label and a closure that runs the command once. The
//! pool's back end is one subject among others, so another back end (a native mux client, say)
//! is one more subject in [`pool_subjects`] and one more row in every table.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conn_core::{Cmd, Connection, ConnectionPool, SimpleJob};
use conn_openssh::OpenSsh;
use serde_json::json;

use crate::args::{BenchArgs, SshArgs};
use crate::output::{EXIT_INTERRUPTED, Failure, one_line};
use crate::{POOL_NAME, signals};

/// The command every row runs.
pub const BENCH_ARGV: [&str; 2] = ["/bin/echo", "hello"];
const EXPECTED_STDOUT: &[u8] = b"hello\n";
/// Bound for one benchmarked command: a hung master fails the bench instead of hanging it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Stable identifier for JSON (`conn-pool-process`, `ssh-S`, `ssh-fresh`).
    pub key: &'static str,
    /// Human label for the table.
    pub label: &'static str,
    /// Whether this is the baseline the ratios are computed against.
    pub baseline: bool,
    run: Box<dyn Fn(usize) -> Result<(), String> + Sync + 'a>,
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
    /// Failed commands, and the first failure.
    pub errors: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
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

/// Everything one bench run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The host as given.
    pub host: String,
    /// Commands per row.
    pub count: usize,
    /// Threads of the concurrent rows.
    pub threads: usize,
    /// Sessions per master.
    pub capacity: usize,
    /// Masters the concurrent rows used.
    pub masters: usize,
    /// Sessions the pool had refused and retried.
    pub refusals_retried: u64,
    /// The rows, in table order.
    pub rows: Vec<Row>,
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

    /// (median ratio, throughput ratio) of `row` to its baseline.
    pub fn ratios(&self, row: &Row) -> Option<(f64, f64)> {
        let b = self.baseline_of(row)?;
        let bm = b.percentile(0.5).as_secs_f64();
        let br = b.per_sec();
        (bm > 0.0 && br > 0.0).then(|| (row.percentile(0.5).as_secs_f64() / bm, row.per_sec() / br))
    }
}

/// Runs `conn bench`; returns the exit code.
pub fn main(args: &BenchArgs) -> Result<u8, Failure> {
    args.ssh.validate().map_err(Failure::usage)?;
    let ssh = args.ssh.builder(&args.host).build()?;
    let report = run(
        ssh,
        &args.ssh,
        &args.host,
        args.count as usize,
        args.threads as usize,
        args.fresh as usize,
        args.warmup as usize,
    )?;
    let mut out = io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{}", to_json(&report))
    } else {
        write_table(&mut out, &report)
    };
    written
        .or_else(crate::output::ignore_broken_pipe)
        .map_err(|e| Failure::other(format!("writing the report: {e}")))?;
    Ok(if report.rows.iter().any(|r| r.errors > 0) {
        1
    } else {
        0
    })
}

/// Measures every row. `ssh` is the transport built from `opts` for `host`.
pub fn run(
    ssh: OpenSsh,
    opts: &SshArgs,
    host: &str,
    count: usize,
    threads: usize,
    fresh: usize,
    warmup: usize,
) -> Result<Report, Failure> {
    let capacity = opts.capacity as usize;
    let pool = ConnectionPool::new(ssh, POOL_NAME, capacity)?;
    let result = (|| -> Result<Report, Failure> {
        let echo = Cmd::new(BENCH_ARGV);
        for _ in 0..warmup {
            pool.run(&echo, &SimpleJob::with_timeout(COMMAND_TIMEOUT))?;
        }
        let sockets = start_masters(&pool, threads)?;
        let base = base_args(opts)?;
        let mut subjects = pool_subjects(&pool);
        subjects.push(hand_spawned(&base, host, &sockets, capacity));
        let fresh_subject = fresh_connection(&base, host);

        let mut rows = Vec::new();
        for mode in [Mode::Sequential, Mode::Concurrent(threads)] {
            rows.extend(measure_fairly(&subjects, mode, count)?);
        }
        if fresh > 0 {
            rows.push(measure(&fresh_subject, Mode::Sequential, fresh)?);
        }
        Ok(Report {
            host: host.to_string(),
            count,
            threads,
            capacity,
            masters: sockets.len(),
            refusals_retried: pool.refusals_retried(),
            rows,
        })
    })();
    pool.shutdown();
    result
}

/// The pool back ends to measure. Today one: conn's pool of ssh ControlMasters, one `ssh -S`
/// client process per command. A native mux back end adds its own pool here.
fn pool_subjects<'a>(pool: &'a ConnectionPool<OpenSsh>) -> Vec<Subject<'a>> {
    let echo = Cmd::new(BENCH_ARGV);
    vec![Subject {
        key: "conn-pool-process",
        label: "conn pool (process mux)",
        baseline: false,
        run: Box::new(move |_thread| {
            let out = pool
                .run(&echo, &SimpleJob::with_timeout(COMMAND_TIMEOUT))
                .map_err(|e| e.to_string())?;
            check_stdout(&out.stdout)
        }),
    }]
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
/// -oProxyCommand=false <host> /bin/echo hello`, spawned with `std::process::Command`, thread
/// `t` on the socket of the master the pool would give its `t`-th session.
fn hand_spawned<'a>(
    base: &[String],
    host: &str,
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
            argv.extend(BENCH_ARGV.iter().map(|s| s.to_string()));
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
    }
}

/// A new ssh connection per command (no master): handshake and authentication every time.
fn fresh_connection<'a>(base: &[String], host: &str) -> Subject<'a> {
    let mut argv = base.to_vec();
    argv.extend(["-oControlMaster=no".into(), "-oControlPath=none".into()]);
    argv.push(host.to_string());
    argv.extend(BENCH_ARGV.iter().map(|s| s.to_string()));
    Subject {
        key: "ssh-fresh",
        label: "ssh (new connection)",
        baseline: false,
        run: Box::new(move |_| spawn(&argv)),
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

/// The ssh command line the OpenSSH transport uses before `-S`, rebuilt from the same options
/// in the same order (conn-openssh keeps its own copy private).
pub fn base_args(opts: &SshArgs) -> Result<Vec<String>, Failure> {
    let mut argv = vec![opts.ssh_program.clone()];
    argv.extend(opts.extra_options());
    if !opts.cipher.is_empty() {
        argv.push("-c".into());
        argv.push(opts.cipher.clone());
    }
    if let Some(t) = opts.connect_timeout {
        argv.push(format!("-oConnectTimeout={}s", t.max(1)));
    }
    for _ in 0..opts.verbose {
        argv.push("-v".into());
    }
    if let Some(port) = opts.port {
        argv.push("-p".into());
        argv.push(port.to_string());
    }
    if let Some(cfg) = &opts.ssh_config {
        let abs = std::path::absolute(cfg)
            .map_err(|e| Failure::usage(format!("ssh_config path {}: {e}", cfg.display())))?;
        argv.push("-F".into());
        argv.push(abs.to_string_lossy().into_owned());
    }
    Ok(argv)
}

/// Measures every subject in `mode`, in two halves run in A B … B A order, so that a drift of
/// the machine (caches, CPU frequency, the master's state) favours no subject.
fn measure_fairly(subjects: &[Subject<'_>], mode: Mode, count: usize) -> Result<Vec<Row>, Failure> {
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
            if row.first_error.is_none() {
                row.first_error = second.first_error;
            }
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
    if let Some(sig) = signals::interrupted() {
        return Err(Failure {
            code: EXIT_INTERRUPTED,
            message: format!("interrupted by signal {sig}"),
        });
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

/// The human table.
pub fn write_table(out: &mut impl Write, r: &Report) -> io::Result<()> {
    writeln!(
        out,
        "conn bench: `{}` on {}: {} commands per row, {} threads in the concurrent rows, \
         {} session{} per master ({} master{})",
        BENCH_ARGV.join(" "),
        r.host,
        r.count,
        r.threads,
        r.capacity,
        if r.capacity == 1 { "" } else { "s" },
        r.masters,
        if r.masters == 1 { "" } else { "s" },
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:<11} {:>6} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "back end",
        "mode",
        "cmds",
        "median µs",
        "p90 µs",
        "p99 µs",
        "cmds/s",
        "median ×",
        "cmds/s ×"
    )?;
    for row in &r.rows {
        let (mr, rr) = match r.ratios(row) {
            Some((m, t)) => (format!("{m:.2}"), format!("{t:.2}")),
            None => ("-".into(), "-".into()),
        };
        writeln!(
            out,
            "{:<24} {:<11} {:>6} {:>10} {:>10} {:>10} {:>9.1} {:>9} {:>9}",
            row.label,
            row.mode.label(),
            row.latencies.len(),
            micros(row.percentile(0.5)),
            micros(row.percentile(0.9)),
            micros(row.percentile(0.99)),
            row.per_sec(),
            mr,
            rr
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "× columns: ratio to `ssh -S (hand-spawned)` in the same mode (fresh connections: to the \
         sequential one); median × below 1 and cmds/s × above 1 are better."
    )?;
    if r.refusals_retried > 0 {
        writeln!(
            out,
            "the pool retried {} session(s) refused by sshd (MaxSessions)",
            r.refusals_retried
        )?;
    }
    for row in r.rows.iter().filter(|row| row.errors > 0) {
        writeln!(
            out,
            "{} ({}): {} command(s) failed, first: {}",
            row.label,
            row.mode.label(),
            row.errors,
            one_line(row.first_error.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
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
                "median_us": row.percentile(0.5).as_micros() as u64,
                "p90_us": row.percentile(0.9).as_micros() as u64,
                "p99_us": row.percentile(0.99).as_micros() as u64,
                "wall_us": row.wall.as_micros() as u64,
                "commands_per_sec": row.per_sec(),
                "median_ratio": ratios.map(|x| x.0),
                "commands_per_sec_ratio": ratios.map(|x| x.1),
            })
        })
        .collect();
    json!({
        "host": r.host,
        "command": BENCH_ARGV,
        "count": r.count,
        "threads": r.threads,
        "capacity": r.capacity,
        "masters": r.masters,
        "refusals_retried": r.refusals_retried,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
        }
    }

    #[test]
    fn ratios_compare_to_the_baseline_of_the_same_mode() {
        let report = Report {
            host: "h".into(),
            count: 2,
            threads: 4,
            capacity: 8,
            masters: 1,
            refusals_retried: 0,
            rows: vec![
                row("pool", Mode::Sequential, false, &[5, 5], 10),
                row("ssh-S", Mode::Sequential, true, &[10, 10], 20),
                row("pool", Mode::Concurrent(4), false, &[8, 8], 4),
                row("ssh-S", Mode::Concurrent(4), true, &[8, 8], 8),
                row("fresh", Mode::Sequential, false, &[100, 100], 200),
            ],
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
    fn baseline_command_line_matches_the_transport_options() {
        let cli = crate::args::Cli::parse_from([
            "conn",
            "bench",
            "-p",
            "2222",
            "-v",
            "-o",
            "Compression=yes",
            "--connect-timeout",
            "3",
            "h",
        ]);
        let crate::args::Command::Bench(b) = cli.command else {
            panic!("not bench")
        };
        let argv = base_args(&b.ssh).unwrap();
        assert_eq!(
            argv,
            [
                "ssh",
                "-oCompression=yes",
                "-oBatchMode=yes",
                "-oServerAliveInterval=0",
                "-x",
                "-T",
                "-c",
                "^aes256-gcm@openssh.com",
                "-oConnectTimeout=3s",
                "-v",
                "-p",
                "2222"
            ]
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
