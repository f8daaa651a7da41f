//! What `Cmd::kill_remote` costs and how fast it works, against the private sshd on 127.0.0.1,
//! for each ssh back end:
//!
//! - from a cancel to the remote pipeline `sleep | cat` gone (every process of its group dead),
//!   and to the wait returning (the kill included): the median, fastest and slowest of N runs;
//! - the cost per command: `true` with and without the option, interleaved (A B, B A, …) in
//!   the same run, each timed from spawn to output; the medians and their ratio.
//!
//! `cargo bench --bench remote_kill [-- RUNS COMMANDS]` (defaults 20 and 200). A plain
//! program (`harness = false`): the figures go to stdout, nothing is asserted about them.

use std::time::{Duration, Instant};

use conn::prelude::*;
use conn::{Mux, RemoteChild};
use conn_testkit::{TestSshd, procfs, socket_dir, wait_until};

const SETTLE: Duration = Duration::from_secs(10);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The live members of the group the child's remote shell reported (the pipeline's three).
fn members(child: &mut RemoteChild) -> Vec<u32> {
    drop(child.take_stdout()); // moves stderr in the background
    assert!(wait_until(SETTLE, || child.remote_pgid().is_some()));
    let pgid = child.remote_pgid().unwrap();
    let mut members = Vec::new();
    assert!(wait_until(SETTLE, || {
        members = procfs::live_group_members(pgid)
            .iter()
            .map(|p| p.pid)
            .collect();
        members.len() == 3
    }));
    members
}

fn cancel_to_gone(pool: &ConnectionPool<OpenSsh>, runs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (mut waited, mut gone) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let job = SimpleJob::with_timeout(Duration::from_secs(30));
        let cmd = Cmd::shell(format!("sleep 986.{i:03} | cat")).kill_remote(true);
        let mut child = pool.spawn(&cmd, &job).unwrap();
        let members = members(&mut child);
        let start = Instant::now();
        job.cancel();
        assert!(matches!(child.wait(), Err(Error::Cancelled { .. })));
        waited.push(start.elapsed());
        // Polled every 100 µs: one read of /proc/<pid>/stat per member.
        let dead = wait_until(SETTLE, || members.iter().all(|&p| !procfs::is_alive(p)));
        assert!(dead, "remote processes left: {members:?}");
        gone.push(start.elapsed());
    }
    (waited, gone)
}

fn per_command(pool: &ConnectionPool<OpenSsh>, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let plain = Cmd::new(["true"]);
    let killing = plain.clone().kill_remote(true);
    let job = SimpleJob::new();
    let time = |cmd: &Cmd| {
        let start = Instant::now();
        pool.run(cmd, &job).unwrap();
        start.elapsed()
    };
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for i in 0..n {
        if i % 2 == 0 {
            without.push(time(&plain));
            with.push(time(&killing));
        } else {
            with.push(time(&killing));
            without.push(time(&plain));
        }
    }
    (without, with)
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse::<usize>().expect("RUNS and COMMANDS are numbers"));
    let runs = args.next().unwrap_or(20);
    let commands = args.next().unwrap_or(200);
    let sshd = TestSshd::start_default().unwrap();
    for mux in [Mux::Native, Mux::Process] {
        let dir = socket_dir();
        let transport = OpenSsh::builder(sshd.host_alias())
            .ssh_config(sshd.ssh_config_path())
            .socket_dir(dir.path())
            .mux(mux)
            .exit_masters_on_shutdown(true)
            .build()
            .unwrap();
        let pool = ConnectionPool::new(transport, "shared", 8).unwrap();
        // Warm: the master is up before anything is timed.
        for _ in 0..10 {
            pool.run(&Cmd::new(["true"]), &SimpleJob::new()).unwrap();
        }
        let (waited, gone) = cancel_to_gone(&pool, runs);
        let (fastest, slowest) = (*gone.iter().min().unwrap(), *gone.iter().max().unwrap());
        println!(
            "{mux:?}: cancel -> remote group gone, {runs} runs: median {} (fastest {}, slowest \
             {}); cancel -> wait returned: median {}",
            ms(median(gone)),
            ms(fastest),
            ms(slowest),
            ms(median(waited)),
        );
        let (without, with) = per_command(&pool, commands);
        let (without, with) = (median(without), median(with));
        println!(
            "{mux:?}: `true`, {commands} runs each, interleaved: with kill_remote {} vs without \
             {}: {:.3}x ({:+.0} us)",
            ms(with),
            ms(without),
            with.as_secs_f64() / without.as_secs_f64(),
            (with.as_secs_f64() - without.as_secs_f64()) * 1e6,
        );
        pool.shutdown();
    }
}
