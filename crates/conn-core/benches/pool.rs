//! Pool hot path: one `get` plus dropping the guard (which gives the slot back), on a pool that
//! already holds 1, 8 or 64 connections of capacity 8, all idle.
//!
//! `cargo bench -p conn-core --bench pool`

use std::hint::black_box;

use conn_core::{ConnectionPool, DEFAULT_CAPACITY, SimpleJob};
// Connections that do nothing: only the pool's own cost is measured.
use conn_testkit::transports::Null;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// A pool with exactly `connections` idle connections: fill every slot, then give all back.
fn prefilled(connections: usize) -> ConnectionPool<Null> {
    let pool = ConnectionPool::new(Null, "bench", DEFAULT_CAPACITY).unwrap();
    let held: Vec<_> = (0..connections * DEFAULT_CAPACITY)
        .map(|_| pool.get(&SimpleJob::new()).unwrap())
        .collect();
    drop(held);
    let snapshot = pool.snapshot();
    assert_eq!(snapshot.len(), connections);
    assert!(snapshot.iter().all(|c| c.free == DEFAULT_CAPACITY));
    pool
}

fn get_and_return(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_get_return");
    for connections in [1usize, 8, 64] {
        let pool = prefilled(connections);
        let job = SimpleJob::new();
        group.bench_with_input(
            BenchmarkId::from_parameter(connections),
            &pool,
            |b, pool| {
                b.iter(|| {
                    let guard = pool.get(&job).unwrap();
                    black_box(guard.id());
                    drop(guard);
                })
            },
        );
        assert_eq!(
            pool.snapshot().len(),
            connections,
            "the benchmark grew the pool"
        );
    }
    group.finish();
}

criterion_group!(benches, get_and_return);
criterion_main!(benches);
