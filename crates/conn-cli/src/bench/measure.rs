//! Runs the subjects: one [`Row`] of latencies per subject and mode, measured so that a drift
//! of the machine favours no subject.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::interrupted;
use super::plan::Mode;
use super::stats::{median, percentile};
use super::subjects::{Backend, Subject};
use crate::output::Failure;
use crate::signals;

/// Latencies and wall time of one row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Who ran the commands.
    pub backend: Backend,
    /// How the commands were issued.
    pub mode: Mode,
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
    /// An empty row of `backend` in `mode`.
    fn new(backend: Backend, mode: Mode) -> Row {
        Row {
            backend,
            mode,
            latencies: Vec::new(),
            wall: Duration::ZERO,
            errors: 0,
            first_error: None,
            refusals_retried: None,
        }
    }

    /// The nearest-rank percentile `q` (0 < q ≤ 1) of the latencies.
    pub fn percentile(&self, q: f64) -> Duration {
        percentile(&self.latencies, q)
    }

    /// The median latency.
    pub fn median(&self) -> Duration {
        median(&self.latencies)
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

    /// Counts one command: its latency when it succeeded, else its failure.
    fn record(&mut self, took: Duration, result: Result<(), String>) {
        match result {
            Ok(()) => self.latencies.push(took),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// A row with no successful command ends the bench: its figures would be meaningless.
    fn ensure_some_succeeded(&self) -> Result<(), Failure> {
        if self.latencies.is_empty() {
            return Err(Failure::other(format!(
                "every command of \"{}\" failed: {}",
                self.backend,
                self.first_error.clone().unwrap_or_default()
            )));
        }
        Ok(())
    }
}

/// Measures every subject in `mode` so that a drift of the machine (caches, CPU frequency,
/// other load, the master's state) favours no subject: sequentially, the subjects take turns
/// command by command; concurrently, each runs its rows in two halves, in A B … B A order.
pub fn measure_fairly(
    subjects: &[Subject<'_>],
    mode: Mode,
    count: usize,
) -> Result<Vec<Row>, Failure> {
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
            latencies: Vec::with_capacity(count),
            refusals_retried: s.refusals.as_ref().map(|f| f()),
            ..Row::new(s.backend, Mode::Sequential)
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
            rows[k].wall += took;
            rows[k].record(took, result);
        }
    }
    for (row, subject) in rows.iter_mut().zip(subjects) {
        row.latencies.sort();
        row.refusals_retried = subject
            .refusals
            .as_ref()
            .zip(row.refusals_retried)
            .map(|(f, before)| f().saturating_sub(before));
        row.ensure_some_succeeded()?;
    }
    Ok(rows)
}

/// Runs `count` commands of `subject` in `mode`; commands are handed out to the threads one
/// at a time, so every thread stays busy until the end.
pub fn measure(subject: &Subject<'_>, mode: Mode, count: usize) -> Result<Row, Failure> {
    let next = AtomicUsize::new(0);
    let shared = Mutex::new(Row::new(subject.backend, mode));
    let refusals_before = subject.refusals.as_ref().map(|f| f());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..mode.threads() {
            let (next, shared) = (&next, &shared);
            let lock = move || shared.lock().unwrap_or_else(|e| e.into_inner());
            scope.spawn(move || {
                // Latencies stay local until the end; a failure is recorded at once, so that
                // the row's first error is the first one of any thread.
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count
                    && signals::interrupted().is_none()
                {
                    let t0 = Instant::now();
                    let result = (subject.run)(thread);
                    let took = t0.elapsed();
                    match result {
                        Ok(()) => mine.push(took),
                        failed => lock().record(took, failed),
                    }
                }
                lock().latencies.extend(mine);
            });
        }
    });
    let wall = start.elapsed();
    if signals::interrupted().is_some() {
        return Err(interrupted());
    }
    let mut row = shared.into_inner().unwrap_or_else(|e| e.into_inner());
    row.wall = wall;
    row.latencies.sort();
    row.refusals_retried = subject
        .refusals
        .as_ref()
        .zip(refusals_before)
        .map(|(f, before)| f().saturating_sub(before));
    row.ensure_some_succeeded()?;
    Ok(row)
}
