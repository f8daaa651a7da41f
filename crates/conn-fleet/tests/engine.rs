//! The engine with stand-in hosts: the local transport (real processes, no ssh), and the test
//! kit's do-nothing and flaky transports. Ordering, fanout, gathering, fail-fast, retries and
//! cancellation, all without an sshd (the real one is in `sshd.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conn_core::{Cmd, Error, RetryPolicy, Started, StreamKind};
use conn_fleet::{Event, Fleet, Gather, Handler, Host, HostEnd, Outcome, Quiet, Skip, Task};
use conn_local::Local;

/// The tests start real processes and one counts this process's children: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn local_fleet(n: usize) -> Fleet<Local> {
    let mut fleet = Fleet::new();
    for i in 0..n {
        fleet.push(format!("h{i:02}"), Local::new());
    }
    fleet
}

fn sh(script: &str) -> Task {
    Task::Run(Cmd::new(["sh", "-c", script, "sh"]))
}

/// Counts how many hosts run at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
    lines: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Handler for Concurrency {
    fn start(&self, _: &Host) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
    }
    fn line(&self, host: &Host, _: StreamKind, line: &[u8]) {
        self.lines
            .lock()
            .unwrap()
            .push((host.name.clone(), line.to_vec()));
    }
    fn end(&self, _: &HostEnd) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[test]
fn reports_come_in_host_order_and_the_fanout_bounds_the_hosts_at_once() {
    let _serial = serial();
    let fleet = local_fleet(12).fanout(3);
    let seen = Concurrency::default();
    let report = fleet.run(&sh("sleep 0.05; echo done"), &seen);
    let names: Vec<&str> = report.hosts.iter().map(|h| h.host.name.as_str()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("h{i:02}")).collect();
    assert_eq!(names, expected);
    assert!(report.hosts.iter().all(HostEnd::is_success));
    let max = seen.max.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "at most the fanout at once: {max}");
    assert_eq!(seen.lines.lock().unwrap().len(), 12);
}

#[test]
fn identical_results_are_gathered_under_one_folded_set() {
    let _serial = serial();
    let mut fleet = Fleet::new().gather(Some(Gather::default()));
    for i in 1..=6 {
        fleet.push(format!("n{i}"), Local::new());
    }
    let report = fleet.run(&sh("echo same"), &Quiet);
    let groups = report.groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].folded, "n[1-6]");
    let g = report.hosts[0].gathered.as_ref().unwrap();
    assert_eq!(g.stdout.to_vec().unwrap(), b"same\n");
}

#[test]
fn gathered_output_spills_past_its_bound_and_comes_back_whole() {
    let _serial = serial();
    let fleet = local_fleet(2).gather(Some(Gather { memory: 1000 }));
    let report = fleet.run(&sh("head -c 300000 /dev/zero; echo end"), &Quiet);
    for h in &report.hosts {
        let g = h.gathered.as_ref().unwrap();
        assert!(g.stdout.spilled());
        assert_eq!(g.stdout.head().len(), 1000);
        let all = g.stdout.to_vec().unwrap();
        assert_eq!(all.len(), 300_004);
        assert!(all.ends_with(b"end\n"));
    }
    assert_eq!(report.groups().len(), 1, "equal digests group");
}

/// Cancels the run when a host says it is up.
struct CancelOnFirstLine(conn_core::CancelToken);

impl Handler for CancelOnFirstLine {
    fn line(&self, _: &Host, _: StreamKind, _: &[u8]) {
        self.0.cancel();
    }
}

#[test]
fn a_cancel_ends_every_host_at_once_and_skips_those_not_started() {
    let _serial = serial();
    let fleet = local_fleet(10).fanout(4);
    let handler = CancelOnFirstLine(fleet.cancel_token().clone());
    let start = Instant::now();
    let report = fleet.run(&sh("echo up; sleep 30"), &handler);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "every host ended at once: {:?}",
        start.elapsed()
    );
    assert!(report.cancelled);
    let (mut cancelled, mut skipped) = (0, 0);
    for h in &report.hosts {
        match &h.outcome {
            Outcome::Failed(e) if matches!(**e, Error::Cancelled { .. }) => cancelled += 1,
            Outcome::Skipped(Skip::Cancelled) => skipped += 1,
            other => panic!("{}: {other:?}", h.host.name),
        }
    }
    assert_eq!(cancelled + skipped, 10);
    assert!((1..=4).contains(&cancelled), "{cancelled} were running");
    // Nothing left behind: no sleep of ours survives.
    let left = conn_testkit::procfs::processes()
        .into_iter()
        .filter(|p| p.ppid == std::process::id() && p.state != 'Z')
        .count();
    assert_eq!(left, 0, "every child was reaped");
}

#[test]
fn fail_fast_starts_nobody_after_the_first_failure_and_ends_the_running() {
    let _serial = serial();
    // Every host fails: the first two start, the first failure stops the rest.
    let fleet = local_fleet(8).fanout(2).fail_fast(true);
    let start = Instant::now();
    let report = fleet.run(&sh("exit 4"), &Quiet);
    assert!(start.elapsed() < Duration::from_secs(10));
    let statuses: Vec<_> = report
        .hosts
        .iter()
        .map(|h| h.failure_kind().unwrap_or("ok"))
        .collect();
    assert!(statuses.contains(&"exited"), "{statuses:?}");
    assert!(
        statuses.contains(&"skipped"),
        "later hosts were not started: {statuses:?}"
    );
    assert!(statuses.iter().filter(|s| **s == "exited").count() <= 2);
}

/// One of the first two hosts takes a ticket and sleeps, the other fails: fail-fast ends the
/// sleeper (`Stopped`, not a failure of its own) and starts nobody else (`Skipped(FailFast)`).
#[test]
fn fail_fast_stops_the_running_and_skips_the_rest() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let ticket = dir.path().join("ticket");
    let fleet = local_fleet(6).fanout(2).fail_fast(true);
    let start = Instant::now();
    let report = fleet.run(
        &Task::Run(Cmd::new([
            "sh",
            "-c",
            "if mkdir \"$1\" 2>/dev/null; then sleep 30; else sleep 0.2; exit 4; fi",
            "sh",
            ticket.to_str().unwrap(),
        ])),
        &Quiet,
    );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "the sleeper was ended"
    );
    let kinds: Vec<&str> = report
        .hosts
        .iter()
        .map(|h| h.failure_kind().unwrap_or("ok"))
        .collect();
    let mut first_two = kinds[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, ["exited", "stopped"], "{kinds:?}");
    assert_eq!(kinds[2..], ["skipped"; 4], "{kinds:?}");
    let stopped = report
        .hosts
        .iter()
        .find(|h| matches!(h.outcome, Outcome::Stopped(_)))
        .unwrap();
    assert_eq!(
        stopped.failure().as_deref(),
        Some("ended: another host failed first (fail-fast)")
    );
}

/// With fail-fast on, a cancel from outside (a signal's) is still an interruption: the hosts it
/// ends are cancelled, not stopped by fail-fast, and those not started are skipped as
/// cancelled.
#[test]
fn a_cancel_is_no_fail_fast_failure() {
    let _serial = serial();
    let fleet = local_fleet(6).fanout(2).fail_fast(true);
    let handler = CancelOnFirstLine(fleet.cancel_token().clone());
    let report = fleet.run(&sh("echo up; sleep 30"), &handler);
    for h in &report.hosts {
        assert!(
            matches!(&h.outcome, Outcome::Failed(e) if matches!(**e, Error::Cancelled { .. }))
                || matches!(h.outcome, Outcome::Skipped(Skip::Cancelled)),
            "{}: {:?}",
            h.host.name,
            h.outcome
        );
    }
}

#[test]
fn hosts_that_never_started_are_retried_within_the_budget() {
    let _serial = serial();
    use conn_testkit::transports::Flaky;
    // Each host's transport fails its first 2 commands as never started.
    let mut fleet = Fleet::new().retry(RetryPolicy::new(2).min_delay(Duration::from_millis(1)));
    let transports: Vec<Flaky> = (0..3).map(|_| Flaky::new(2)).collect();
    for (i, t) in transports.iter().enumerate() {
        fleet.push(format!("f{i}"), t.clone());
    }
    let report = fleet.run(&Task::Run(Cmd::new(["x"])), &Quiet);
    assert!(report.hosts.iter().all(HostEnd::is_success), "{report:?}");
    assert_eq!(report.retried().not_started, 6);
    for t in &transports {
        assert_eq!(t.attempts(), 3);
    }
    // With a budget of 1, the second failure is the host's end.
    let mut fleet = Fleet::new().retry(RetryPolicy::new(1).min_delay(Duration::from_millis(1)));
    fleet.push("f", Flaky::new(2));
    let report = fleet.run(&Task::Run(Cmd::new(["x"])), &Quiet);
    assert_eq!(report.hosts[0].started(), Started::No);
    assert_eq!(report.failed(), 1);
}

#[test]
fn dropping_the_events_cancels_the_run() {
    let _serial = serial();
    let fleet = Arc::new(local_fleet(6).fanout(3));
    let start = Instant::now();
    let mut events = Arc::clone(&fleet).events(sh("echo up; sleep 30"));
    // Wait for the first line, then walk away.
    loop {
        match events.next() {
            Some(Event::Line { .. }) => break,
            Some(_) => {}
            None => panic!("the run ended before any line"),
        }
    }
    drop(events);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(fleet.cancel_token().is_cancelled());
}

#[test]
fn lines_are_whole_and_each_host_keeps_its_order() {
    let _serial = serial();
    let fleet = local_fleet(4).fanout(4);
    let seen = Concurrency::default();
    let report = fleet.run(
        &sh("i=0; while [ $i -lt 200 ]; do echo \"line $i\"; i=$((i+1)); done"),
        &seen,
    );
    assert_eq!(report.failed(), 0);
    let lines = seen.lines.into_inner().unwrap();
    for host in ["h00", "h01", "h02", "h03"] {
        let mine: Vec<String> = lines
            .iter()
            .filter(|(h, _)| h == host)
            .map(|(_, l)| String::from_utf8(l.clone()).unwrap())
            .collect();
        let expected: Vec<String> = (0..200).map(|i| format!("line {i}\n")).collect();
        assert_eq!(mine, expected, "{host}");
    }
}
