//! Parsing, expanding and folding 100,000 names:
//!
//! - `1d`: `n[000001-100000]`, one number per name;
//! - `2d`: `rack[001-100]-n[0001-1000]`, a full product of two numbers;
//! - `2d_holes`: the same names less every seventh one, read back name by name
//!   ([`HostSet::from_names`]), so that folding has to find many products.
//!
//! `cargo bench -p conn-hostset --bench hostset`

use std::hint::black_box;
use std::time::Duration;

use conn_hostset::HostSet;
use criterion::{BenchmarkId, Criterion};

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}

/// Builds the set under test.
type Maker = Box<dyn Fn() -> HostSet>;

fn bench(c: &mut Criterion) {
    let holes: Vec<String> = HostSet::parse("rack[001-100]-n[0001-1000]")
        .unwrap()
        .expand()
        .enumerate()
        .filter(|(i, _)| i % 7 != 0)
        .map(|(_, n)| n)
        .collect();
    let cases: [(&str, Maker); 3] = [
        (
            "1d",
            Box::new(|| HostSet::parse("n[000001-100000]").unwrap()),
        ),
        (
            "2d",
            Box::new(|| HostSet::parse("rack[001-100]-n[0001-1000]").unwrap()),
        ),
        (
            "2d_holes",
            Box::new(move || HostSet::from_names(&holes).unwrap()),
        ),
    ];
    let mut group = c.benchmark_group("hostset");
    for (name, make) in &cases {
        let set = make();
        assert!(set.len() > 85_000, "{name}: {}", set.len());
        group.bench_function(BenchmarkId::new("parse", name), |b| {
            b.iter(|| black_box(make()))
        });
        group.bench_function(BenchmarkId::new("expand", name), |b| {
            b.iter(|| black_box(set.expand().map(|n| n.len()).sum::<usize>()))
        });
        group.bench_function(BenchmarkId::new("fold", name), |b| {
            b.iter(|| black_box(set.fold()))
        });
        group.bench_function(BenchmarkId::new("parse_expand_fold", name), |b| {
            b.iter(|| {
                let s = make();
                let n = s.expand().count();
                black_box((n, s.fold()))
            })
        });
    }
    group.finish();
}
