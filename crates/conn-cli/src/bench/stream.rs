//! `conn bench --stream`: throughput of one large stream (1 GiB by default) from this process
//! into the remote `cat >/dev/null`, through each pool back end
//! (`ConnectionPool::spawn` with a piped stdin), against the same stream into a hand-spawned
//! `ssh -S <socket of a pooled master>` (the baseline, its command line from
//! `OpenSshConnection::command_line`) and into a fresh `ssh` (no master). Every subject gets
//! the same bytes from the same writer loop (64 KiB writes) and the same ssh options, cipher
//! included, so the ratios are conn's own cost on a stream.
//!
//! The subjects take turns, round after round, so that a change in the machine's load touches
//! them alike; each row shows the median MB/s of its rounds (and the slowest and fastest), its
//! ratio to the baseline's median of the same run, and the peak resident set of this process
//! during its streams (`VmHWM`, reset before each stream through `/proc/self/clear_refs`).

use std::ffi::OsString;
use std::io::{self, Read, Seek, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conn_core::{Cmd, ConnectionPool, SimpleJob, Stdin, Stream, Transport};
use conn_openssh::{Mux, OpenSsh};
use serde_json::json;

use super::stats;
use super::subjects::Backend;
use crate::POOL_NAME;
use crate::args::{BenchArgs, SshArgs};
use crate::output::{Failure, one_line, print_error};

/// The remote consumer: reads everything, keeps nothing.
const CONSUMER: [&str; 3] = ["sh", "-c", "cat >/dev/null"];
/// One write of the producer.
const BLOCK: usize = 64 * 1024;
/// The slowest stream the bench waits for before calling it failed (a bound, not a target).
const SLOWEST: f64 = 1e6; // bytes per second

/// One measured stream.
#[derive(Debug, Clone, Copy)]
struct Sample {
    took: Duration,
    /// Peak resident set of this process during the stream, in KiB (`None`: unknown).
    peak_kib: Option<u64>,
}

/// A row: one subject's streams.
#[derive(Debug)]
struct Row {
    backend: Backend,
    samples: Vec<Sample>,
    failures: Vec<String>,
}

impl Row {
    /// MB/s (10^6 bytes per second) of each stream, sorted.
    fn rates(&self, bytes: u64) -> Vec<f64> {
        let mut r: Vec<f64> = self
            .samples
            .iter()
            .map(|s| bytes as f64 / 1e6 / s.took.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r
    }

    /// The median of [`Row::rates`] (the lower one of an even count).
    fn median(&self, bytes: u64) -> Option<f64> {
        let r = self.rates(bytes);
        (!r.is_empty()).then(|| r[(r.len() - 1) / 2])
    }

    fn peak_kib(&self) -> Option<u64> {
        self.samples.iter().filter_map(|s| s.peak_kib).max()
    }
}

/// Who is measured and how it is started.
enum Subject<'a> {
    Pool(Mux, &'a ConnectionPool<OpenSsh>),
    /// A spawned `ssh` command line (the baseline, or a fresh connection).
    Spawned(Backend, Vec<OsString>),
}

impl Subject<'_> {
    fn backend(&self) -> Backend {
        match self {
            Subject::Pool(mux, _) => Backend::Pool(*mux),
            Subject::Spawned(backend, _) => *backend,
        }
    }

    /// Streams `bytes` into the consumer once.
    fn stream(&self, block: &[u8], bytes: u64) -> Result<Sample, String> {
        let timeout = Duration::from_secs_f64(60.0 + bytes as f64 / SLOWEST);
        reset_peak();
        let start = Instant::now();
        match self {
            Subject::Pool(_, pool) => {
                let job = SimpleJob::with_timeout(timeout);
                let cmd = Cmd::new(CONSUMER).stdin(Stdin::Piped).stdout(Stream::Null);
                let mut child = pool.spawn(&cmd, &job).map_err(|e| e.to_string())?;
                let fed = feed(child.stdin().expect("stdin is piped"), block, bytes);
                let waited = child.wait().map_err(|e| e.to_string())?;
                fed.map_err(|e| format!("writing the stream: {e}"))?;
                if !waited.success() {
                    return Err(format!("the consumer ended with {waited}"));
                }
            }
            Subject::Spawned(_, argv) => {
                let mut errors = tempfile::tempfile().map_err(|e| e.to_string())?;
                let mut child = Command::new(&argv[0])
                    .args(&argv[1..])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(errors.try_clone().map_err(|e| e.to_string())?)
                    .spawn()
                    .map_err(|e| format!("cannot run {}: {e}", argv[0].to_string_lossy()))?;
                let mut stdin = child.stdin.take().expect("stdin is piped");
                let fed = feed(&mut stdin, block, bytes);
                drop(stdin);
                let status = wait_bounded(&mut child, timeout)?;
                if !status.success() {
                    let mut text = String::new();
                    let _ = errors.seek(io::SeekFrom::Start(0));
                    let _ = errors.read_to_string(&mut text);
                    return Err(format!("ssh exited with {status}: {}", one_line(&text)));
                }
                fed.map_err(|e| format!("writing the stream: {e}"))?;
            }
        }
        Ok(Sample {
            took: start.elapsed(),
            peak_kib: peak_kib(),
        })
    }
}

/// Waits for `child` at most `timeout`, then kills it.
fn wait_bounded(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<std::process::ExitStatus, String> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no end within {timeout:?}"));
        }
        // A 1 ms tick: well below the error of a stream that takes seconds.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes `bytes` bytes of `block` repeated into `w`.
fn feed(w: &mut impl Write, block: &[u8], bytes: u64) -> io::Result<()> {
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// 64 KiB of pseudo-random bytes: nothing along the way can shrink them.
fn random_block() -> Vec<u8> {
    let mut s = 0x9E37_79B9_7F4A_7C15_u64;
    let mut block = vec![0u8; BLOCK];
    for chunk in block.chunks_exact_mut(8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        chunk.copy_from_slice(&s.to_le_bytes());
    }
    block
}

/// Resets this process's peak resident set (`VmHWM`) to its current one (Linux ≥ 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident set (`VmHWM`) in KiB.
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `conn bench --stream` over the back ends `muxes`; returns the exit code.
pub fn main(args: &BenchArgs, muxes: &[Mux]) -> Result<u8, Failure> {
    let opts: &SshArgs = &args.ssh;
    let host = args.host.as_str();
    let bytes = u64::from(args.stream_mib) << 20;
    let load_before = stats::load_average();
    let job = SimpleJob::with_timeout(super::COMMAND_TIMEOUT);

    let mut pools = Vec::new();
    for &m in muxes {
        let ssh = opts.builder(host).mux(m).build()?;
        pools.push((
            m,
            ConnectionPool::new(ssh, POOL_NAME, opts.capacity as usize)?,
        ));
    }
    let consumer = Cmd::new(CONSUMER);
    let mut subjects = Vec::new();
    let mut baseline = None;
    for (m, pool) in &pools {
        pool.run(&Cmd::new(["true"]), &job)?; // starts the master
        // The baseline runs over the pool's own master, with the line its connection builds.
        baseline = Some(pool.get(&job)?.command_line(&consumer, &job)?);
        subjects.push(Subject::Pool(*m, pool));
    }
    let Some(baseline) = baseline else {
        return Err(Failure::usage("--stream needs at least one --mux back end"));
    };
    subjects.insert(0, Subject::Spawned(Backend::HandSpawned, baseline));
    if args.fresh > 0 {
        let fresh = opts
            .builder(host)
            .mux(Mux::Process)
            .reuse_connections(false)
            .build()?
            .connect(POOL_NAME)?
            .command_line(&consumer, &job)?;
        subjects.push(Subject::Spawned(Backend::FreshSsh, fresh));
    }

    let block = random_block();
    let mut rows: Vec<Row> = subjects
        .iter()
        .map(|s| Row {
            backend: s.backend(),
            samples: Vec::new(),
            failures: Vec::new(),
        })
        .collect();
    for round in 0..args.stream_rounds {
        for (subject, row) in subjects.iter().zip(&mut rows) {
            if crate::signals::interrupted().is_some() {
                return Err(super::interrupted());
            }
            match subject.stream(&block, bytes) {
                Ok(sample) => row.samples.push(sample),
                Err(e) => {
                    tracing::warn!("{} (round {}): {e}", row.backend, round + 1);
                    row.failures.push(e);
                }
            }
        }
    }
    for (_, pool) in &pools {
        pool.shutdown();
    }
    let load_after = stats::load_average();

    let report = Report {
        host,
        cipher: &opts.cipher,
        bytes,
        rounds: args.stream_rounds,
        rows,
        load: [load_before, load_after],
    };
    let mut out = io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{}", report.to_json())
    } else {
        report.write_table(&mut out)
    };
    written
        .or_else(crate::output::ignore_broken_pipe)
        .map_err(|e| Failure::other(format!("writing the report: {e}")))?;
    let failures: usize = report.rows.iter().map(|r| r.failures.len()).sum();
    if failures > 0 {
        print_error(&format!(
            "{failures} stream(s) failed (see the report): the figures are not valid"
        ));
        return Ok(1);
    }
    Ok(0)
}

/// The figures of a run.
struct Report<'a> {
    host: &'a str,
    cipher: &'a str,
    bytes: u64,
    rounds: u32,
    rows: Vec<Row>,
    load: [Option<[f64; 3]>; 2],
}

impl Report<'_> {
    fn baseline(&self) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.backend.is_baseline())
            .and_then(|r| r.median(self.bytes))
    }

    fn write_table(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{} MiB into `{}` on {}, cipher {}, {} round(s) per row (median, slowest–fastest)",
            self.bytes >> 20,
            CONSUMER[2],
            self.host,
            if self.cipher.is_empty() {
                "ssh's choice"
            } else {
                self.cipher
            },
            self.rounds
        )?;
        writeln!(
            out,
            "{:<26} {:>9} {:>17} {:>12} {:>14}",
            "", "MB/s", "range", "× baseline", "peak RSS MiB"
        )?;
        let base = self.baseline();
        for row in &self.rows {
            let rates = row.rates(self.bytes);
            let median = row.median(self.bytes);
            let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
            let range = match (rates.first(), rates.last()) {
                (Some(lo), Some(hi)) => format!("{lo:.0}–{hi:.0}"),
                _ => "-".into(),
            };
            let ratio = match (median, base) {
                (Some(m), Some(b)) if b > 0.0 => format!("{:.3}", m / b),
                _ => "-".into(),
            };
            let peak = row
                .peak_kib()
                .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0));
            writeln!(
                out,
                "{:<26} {:>9} {:>17} {:>12} {:>14}",
                row.backend.to_string(),
                fmt(median),
                range,
                ratio,
                peak
            )?;
            for f in &row.failures {
                writeln!(out, "  failed: {f}")?;
            }
        }
        let load = |l: Option<[f64; 3]>| {
            l.map_or("unknown".into(), |[a, b, c]| {
                format!("{a:.2} {b:.2} {c:.2}")
            })
        };
        writeln!(
            out,
            "load average before: {}, after: {}",
            load(self.load[0]),
            load(self.load[1])
        )
    }

    fn to_json(&self) -> serde_json::Value {
        let base = self.baseline();
        let rows: Vec<_> = self
            .rows
            .iter()
            .map(|row| {
                let median = row.median(self.bytes);
                json!({
                    "backend": row.backend.key(),
                    "mb_per_s": row.rates(self.bytes),
                    "median_mb_per_s": median,
                    "ratio_to_baseline": median.zip(base).map(|(m, b)| m / b),
                    "peak_rss_kib": row.peak_kib(),
                    "failures": row.failures,
                })
            })
            .collect();
        json!({
            "stream": {
                "host": self.host,
                "consumer": CONSUMER[2],
                "bytes": self.bytes,
                "cipher": self.cipher,
                "rounds": self.rounds,
                "rows": rows,
                "load_before": self.load[0],
                "load_after": self.load[1],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: Backend, secs: &[f64]) -> Row {
        Row {
            backend,
            samples: secs
                .iter()
                .map(|&s| Sample {
                    took: Duration::from_secs_f64(s),
                    peak_kib: Some(8 * 1024),
                })
                .collect(),
            failures: Vec::new(),
        }
    }

    #[test]
    fn rates_medians_and_ratios_to_the_baseline_of_the_same_run() {
        let bytes = 100_000_000; // 100 MB: 1 s is 100 MB/s
        let base = row(Backend::HandSpawned, &[1.0, 2.0, 0.5]);
        assert_eq!(base.rates(bytes), [50.0, 100.0, 200.0]);
        assert_eq!(base.median(bytes), Some(100.0));
        // An even count takes the lower middle: never flattering.
        assert_eq!(
            row(Backend::HandSpawned, &[1.0, 0.5]).median(bytes),
            Some(100.0)
        );
        assert_eq!(row(Backend::FreshSsh, &[]).median(bytes), None);

        let report = Report {
            host: "h",
            cipher: "aes128-ctr",
            bytes,
            rounds: 3,
            rows: vec![base, row(Backend::Pool(Mux::Native), &[2.0, 2.0, 2.0])],
            load: [None, None],
        };
        assert_eq!(report.baseline(), Some(100.0));
        let json = report.to_json();
        assert_eq!(json["stream"]["rows"][1]["ratio_to_baseline"], 0.5);
        assert_eq!(json["stream"]["rows"][1]["backend"], "conn-pool-native");
        let mut table = Vec::new();
        report.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("conn pool (native mux)"), "{table}");
        assert!(table.contains("0.500"), "{table}");
        assert!(table.contains("8.0"), "peak RSS in MiB: {table}");
    }

    #[test]
    fn the_producer_writes_exactly_the_size_asked() {
        let block = random_block();
        let mut sink = Vec::new();
        feed(&mut sink, &block, 3 * BLOCK as u64 + 5).unwrap();
        assert_eq!(sink.len(), 3 * BLOCK + 5);
        assert_eq!(&sink[BLOCK..2 * BLOCK], &block[..]);
    }
}
