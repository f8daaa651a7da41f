//! `acquire` + `release` of a lease:
//!
//! - `empty`: a namespace with no entries, so every acquire lists `free/` and `used/`, finds
//!   nothing, and makes a new name (the lock file is removed again outside the timing);
//! - `reuse`: one free name whose socket exists (the common case: a process taking over a
//!   master an earlier one left alive);
//! - `used_1000_locked`: 1,000 entries in `used/`, all locked by another process, the worst
//!   case for the scan: each acquire tries all of them before making a new name.
//!
//! `cargo bench -p conn-lease --bench lease` (set `CONN_LEASE_BENCH_DIR` to measure on another
//! file system than `/tmp`'s, e.g. `/dev/shm`).
#![forbid(unsafe_code)]

use std::fs::{self, File};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conn_lease::LeaseManager;
use criterion::Criterion;

/// Set in the helper process that holds the locks: the `used/` directory whose files to lock.
const HOLDER: &str = "CONN_LEASE_BENCH_HOLDER";
/// Where to make the namespaces.
const BENCH_DIR: &str = "CONN_LEASE_BENCH_DIR";
const TTL: Duration = Duration::from_secs(5400);
const LOCKED: usize = 1000;

fn main() {
    if let Some(dir) = std::env::var_os(HOLDER) {
        hold_all(Path::new(&dir));
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}

/// Helper process: locks every file in `dir`, says "ready", and holds the locks until its
/// stdin closes.
fn hold_all(dir: &Path) {
    let mut held = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let file = File::open(entry.unwrap().path()).unwrap();
        file.try_lock().unwrap();
        held.push(file);
    }
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", held.len()).unwrap();
    out.flush().unwrap();
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink).unwrap();
}

/// A fresh directory under `$CONN_LEASE_BENCH_DIR` (default `/tmp`; it must be short, for
/// the socket path limit): lease costs are file-system costs, so where matters.
fn tmp() -> tempfile::TempDir {
    let base = std::env::var_os(BENCH_DIR).unwrap_or_else(|| "/tmp".into());
    tempfile::Builder::new()
        .prefix("cl")
        .tempdir_in(base)
        .unwrap()
}

/// Acquire + release `iters` times, timing only that; the new name's lock file is removed
/// after each round (untimed) so that the namespace stays as it was.
fn timed_rounds(m: &LeaseManager, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let mut lease = m.acquire().unwrap();
        lease.release().unwrap();
        total += start.elapsed();
        fs::remove_file(black_box(&lease).free_path()).unwrap();
    }
    total
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("acquire_release");

    let empty_dir = tmp();
    let empty = LeaseManager::new(empty_dir.path().join("r"), "bench#empty", TTL).unwrap();
    group.bench_function("empty", |b| {
        b.iter_custom(|iters| timed_rounds(&empty, iters))
    });

    let reuse_dir = tmp();
    let reuse = LeaseManager::new(reuse_dir.path().join("r"), "bench#reuse", TTL).unwrap();
    {
        let lease = reuse.acquire().unwrap();
        File::create(lease.socket_path()).unwrap();
    }
    group.bench_function("reuse", |b| {
        b.iter(|| {
            let mut lease = reuse.acquire().unwrap();
            lease.release().unwrap();
            lease
        })
    });

    let locked_dir = tmp();
    let locked = LeaseManager::new(locked_dir.path().join("r"), "bench#locked", TTL).unwrap();
    let used: PathBuf = locked.namespace_dir().join("used");
    for i in 0..LOCKED {
        File::create(used.join(format!("s{i:011}"))).unwrap();
    }
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .env(HOLDER, &used)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), format!("ready {LOCKED}"));
    group.sample_size(30);
    group.bench_function("used_1000_locked", |b| {
        b.iter_custom(|iters| timed_rounds(&locked, iters))
    });
    group.finish();

    drop(holder.stdin.take()); // EOF: the holder exits
    holder.wait().unwrap();
}
