//! Everything one bench run measured ([`Report`]), the ratios between its figures, and the
//! machine-readable form (`--json`). The ratios compare figures of the same run only: each
//! row against the baseline measured beside it, never against a fixed goal.

use conn_openssh::Mux;
use serde_json::json;

use super::fresh_process::FreshProcess;
use super::liveness::{Check, Liveness};
use super::measure::Row;
use super::plan::Mode;
use super::stats::{median, percentile, ratio};
use super::subjects::Backend;

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

/// A row's figures over those of the baseline it compares to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    /// Median latency over the baseline's (below 1: faster).
    pub median: f64,
    /// Commands per second over the baseline's (above 1: more).
    pub per_sec: f64,
}

impl Report {
    /// The clean-end check's median as a share of each pool back end's sequential per-command
    /// median in this run: what the check adds to a command (`None` without both figures).
    pub fn clean_end_share(&self, mux: Mux) -> Option<f64> {
        let check = median(self.liveness.as_ref()?.of(Check::CleanEnd));
        let row = self
            .rows
            .iter()
            .find(|r| r.backend == Backend::Pool(mux) && r.mode == Mode::Sequential)?;
        ratio(check, row.median())
    }

    /// The baseline row a row compares to: same mode (fresh connections compare to the
    /// sequential baseline).
    fn baseline_of(&self, row: &Row) -> Option<&Row> {
        let baseline = |mode: Mode| {
            self.rows
                .iter()
                .find(|b| b.backend.is_baseline() && b.mode == mode)
        };
        baseline(row.mode).or_else(|| baseline(Mode::Sequential))
    }

    /// The row of `backend` in `mode`, if it was measured.
    pub fn row(&self, backend: Backend, mode: Mode) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.backend == backend && r.mode == mode)
    }

    /// `row`'s figures over its baseline's.
    pub fn ratios(&self, row: &Row) -> Option<Ratios> {
        let b = self.baseline_of(row)?;
        let bm = b.median().as_secs_f64();
        let br = b.per_sec();
        (bm > 0.0 && br > 0.0).then(|| Ratios {
            median: row.median().as_secs_f64() / bm,
            per_sec: row.per_sec() / br,
        })
    }

    /// Throughput of a pool row over the process back end's in the same mode.
    pub fn throughput_vs_process(&self, row: &Row) -> Option<f64> {
        if !matches!(row.backend, Backend::Pool(_)) {
            return None;
        }
        let p = self.row(Backend::Pool(Mux::Process), row.mode)?.per_sec();
        (p > 0.0).then(|| row.per_sec() / p)
    }

    /// The fresh ssh connections' median over a fresh process's median.
    pub fn fresh_speedup(&self, f: &FreshProcess) -> Option<f64> {
        let fresh = self.row(Backend::FreshSsh, Mode::Sequential)?;
        ratio(fresh.median(), median(&f.latencies))
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
}

/// Nanosecond statistics of a sorted list of latencies.
fn stats_json(v: &[std::time::Duration]) -> serde_json::Value {
    json!({
        "count": v.len(),
        "median_ns": median(v).as_nanos() as u64,
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
                "backend": row.backend.key(),
                "label": row.backend.to_string(),
                "mode": match row.mode {
                    Mode::Sequential => "sequential",
                    Mode::Concurrent(_) => "concurrent",
                },
                "threads": row.mode.threads(),
                "baseline": row.backend.is_baseline(),
                "commands": row.latencies.len(),
                "errors": row.errors,
                "first_error": row.first_error,
                "refusals_retried": row.refusals_retried,
                "median_us": row.median().as_micros() as u64,
                "p90_us": row.percentile(0.9).as_micros() as u64,
                "p99_us": row.percentile(0.99).as_micros() as u64,
                "wall_us": row.wall.as_micros() as u64,
                "commands_per_sec": row.per_sec(),
                "median_ratio": ratios.map(|x| x.median),
                "commands_per_sec_ratio": ratios.map(|x| x.per_sec),
                "commands_per_sec_ratio_to_process": r.throughput_vs_process(row),
            })
        })
        .collect();
    let liveness = r.liveness.as_ref().map(|l| {
        let mut obj = serde_json::Map::new();
        for check in Check::ALL {
            obj.insert(check.key().into(), stats_json(l.of(check)));
        }
        obj.insert("speedup".into(), json!(l.speedup()));
        obj.insert(
            "clean_end_share_of_native_command".into(),
            json!(r.clean_end_share(Mux::Native)),
        );
        obj.insert(
            "clean_end_share_of_process_command".into(),
            json!(r.clean_end_share(Mux::Process)),
        );
        serde_json::Value::Object(obj)
    });
    let fresh_processes: Vec<_> = r
        .fresh_processes
        .iter()
        .map(|f| {
            json!({
                "mux": f.mux.to_string(),
                "runs": f.latencies.len(),
                "errors": f.errors,
                "first_error": f.first_error,
                "median_us": median(&f.latencies).as_micros() as u64,
                "p90_us": percentile(&f.latencies, 0.9).as_micros() as u64,
                "p99_us": percentile(&f.latencies, 0.99).as_micros() as u64,
                "speedup_vs_fresh_ssh": r.fresh_speedup(f),
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
    })
}

/// Rows and reports made up for the unit tests of the report and the table.
#[cfg(test)]
pub(super) mod fixtures {
    use std::time::Duration;

    use super::*;
    use crate::bench::plan::EXEC_ARGV;

    pub fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    pub fn row(backend: Backend, mode: Mode, lat: &[u64], wall: u64) -> Row {
        Row {
            backend,
            mode,
            latencies: lat.iter().copied().map(ms).collect(),
            wall: ms(wall),
            errors: 0,
            first_error: None,
            refusals_retried: matches!(backend, Backend::Pool(_)).then_some(0),
        }
    }

    pub const NATIVE: Backend = Backend::Pool(Mux::Native);
    pub const PROCESS: Backend = Backend::Pool(Mux::Process);

    /// Every section, with one failed native command at 32 threads.
    pub fn full_report() -> Report {
        let mut native_32 = row(NATIVE, Mode::Concurrent(32), &[3; 20], 10);
        native_32.errors = 1;
        native_32.first_error = Some("ssh exited with 255:\nboom".into());
        let (seq, c8, c32) = (Mode::Sequential, Mode::Concurrent(8), Mode::Concurrent(32));
        Report {
            host: "h".into(),
            command: EXEC_ARGV.map(String::from).to_vec(),
            count: 2,
            threads: vec![8, 32],
            capacity: 8,
            masters: 4,
            load: [None, Some([0.75, 0.5, 0.25])],
            rows: vec![
                row(NATIVE, seq, &[3, 3], 6),
                row(PROCESS, seq, &[10, 10], 20),
                row(Backend::HandSpawned, seq, &[10, 10], 20),
                row(NATIVE, c8, &[3; 40], 10),
                row(PROCESS, c8, &[8; 10], 10),
                row(Backend::HandSpawned, c8, &[8; 10], 10),
                native_32,
                row(PROCESS, c32, &[8; 10], 10),
                row(Backend::HandSpawned, c32, &[8; 10], 10),
                row(Backend::FreshSsh, seq, &[200, 200], 400),
            ],
            liveness: Some(Liveness {
                fast_path_cold: vec![Duration::from_micros(20)],
                ssh_check: vec![ms(3)],
                clean_end: vec![Duration::from_micros(30)],
                ..Liveness::default()
            }),
            fresh_processes: vec![FreshProcess {
                mux: Mux::Process,
                latencies: vec![ms(25)],
                errors: 0,
                first_error: None,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ratios_compare_to_the_baseline_of_the_same_mode() {
        let r = full_report();
        let at = |i: usize| r.ratios(&r.rows[i]).unwrap();
        // Native, sequential: 3 ms against 10 ms; 2 commands in 6 ms against 2 in 20 ms.
        assert!(close(at(0).median, 0.3) && close(at(0).per_sec, 20.0 / 6.0));
        // The baseline is its own reference.
        assert!(close(at(2).median, 1.0) && close(at(2).per_sec, 1.0));
        // Native at 8 threads: its own mode's baseline (8 ms, 10 commands in 10 ms).
        assert!(close(at(3).median, 3.0 / 8.0) && close(at(3).per_sec, 4.0));
        // Fresh connections: the sequential baseline.
        assert!(close(at(9).median, 20.0));
        assert!(close(r.throughput_vs_process(&r.rows[3]).unwrap(), 4.0));
        assert!(close(r.throughput_vs_process(&r.rows[1]).unwrap(), 1.0));
        assert_eq!(r.throughput_vs_process(&r.rows[2]), None);
        assert!(close(r.fresh_speedup(&r.fresh_processes[0]).unwrap(), 8.0));
        assert_eq!(r.failures(), 1);
    }

    #[test]
    fn json_carries_the_figures_and_ratios_and_grades_nothing() {
        let json = to_json(&full_report());
        let rows = &json["rows"];
        assert_eq!(rows[0]["backend"], "conn-pool-native");
        assert_eq!(rows[0]["label"], "conn pool (native mux)");
        assert_eq!(rows[1]["backend"], "conn-pool-process");
        assert_eq!(rows[2]["backend"], "ssh-S");
        assert_eq!(rows[2]["baseline"], true);
        assert_eq!(rows[9]["backend"], "ssh-fresh");
        assert_eq!(rows[1]["median_us"], 10_000);
        assert_eq!(rows[3]["mode"], "concurrent");
        assert_eq!(rows[3]["threads"], 8);
        assert_eq!(rows[3]["commands_per_sec_ratio_to_process"], 4.0);
        assert_eq!(rows[6]["errors"], 1);
        assert_eq!(json["failures"], 1);
        assert_eq!(json["liveness"]["speedup"], 150.0);
        assert_eq!(json["liveness"]["ssh_check"]["median_ns"], 3_000_000);
        // The clean-end check (30 µs) against the sequential rows: native 3 ms, process 10 ms.
        let share = |key: &str| json["liveness"][key].as_f64().unwrap();
        assert!((share("clean_end_share_of_native_command") - 0.01).abs() < 1e-9);
        assert!((share("clean_end_share_of_process_command") - 0.003).abs() < 1e-9);
        assert_eq!(json["fresh_processes"][0]["speedup_vs_fresh_ssh"], 8.0);
        assert!(json.get("targets").is_none(), "{json}");
        assert!(!json.to_string().contains("\"met\""), "{json}");
    }
}
