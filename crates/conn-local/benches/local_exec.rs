//! Local exec of `/bin/true` through conn-local (`ConnectionPool<Local>::run`) versus the bare
//! `std::process::Command::output()`, in one criterion group.
//!
//! The two are interleaved: each iteration of either benchmark runs both commands and times
//! only its own, so both medians are taken under the same machine conditions (page cache,
//! CPU frequency, other load) instead of one after the other.
//!
//! `cargo bench -p conn-local --bench local_exec`

use std::process::Command;
use std::time::{Duration, Instant};

use conn_core::{Cmd, ConnectionPool, SimpleJob};
use conn_local::Local;
use criterion::{Criterion, criterion_group, criterion_main};

const PROGRAM: &str = "/bin/true";

fn exec_bin_true(c: &mut Criterion) {
    let pool = ConnectionPool::new(Local::new(), "bench", 8).unwrap();
    let cmd = Cmd::new([PROGRAM]);
    let job = SimpleJob::new();
    let via_conn = || {
        let out = pool.run(&cmd, &job).unwrap();
        assert!(out.status.success());
    };
    let via_std = || {
        let out = Command::new(PROGRAM).output().unwrap();
        assert!(out.status.success());
    };

    let mut group = c.benchmark_group("exec_bin_true");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("conn_local", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                via_conn();
                timed += start.elapsed();
                via_std();
            }
            timed
        })
    });
    group.bench_function("std_output", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                via_std();
                timed += start.elapsed();
                via_conn();
            }
            timed
        })
    });
    group.finish();
    pool.shutdown();
}

criterion_group!(benches, exec_bin_true);
criterion_main!(benches);
