//! Real-process tests of command execution through the local transport: deadlines and
//! cancellation kill the whole process group (checked in /proc), large outputs on both streams
//! do not deadlock, stdin arrives, exit statuses and errors carry what the caller needs, and a
//! dry run or an expired deadline spawns nothing.
//!
//! Every wait is bounded: commands run under a job deadline, and polling loops give up after a
//! fixed time and fail the test.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use conn_core::transport::Pgid;
use conn_core::{
    Cmd, Connection, ConnectionPool, Error, ExitStatus, Job, Output, SimpleJob, Started, Stdin,
    Stream, Transport,
};
use conn_local::Local;
use conn_testkit::{procfs, wait_until};

const MIB: usize = 1024 * 1024;
/// A generous bound for commands that should take milliseconds: reaching it fails the test
/// (as a timeout) instead of hanging it.
const SAFETY: Duration = Duration::from_secs(60);

fn pool() -> ConnectionPool<Local> {
    ConnectionPool::new(Local::new(), "test", 8).unwrap()
}

fn sh(script: &str) -> Cmd {
    Cmd::new(["sh", "-c", script])
}

/// A path in the temp dir unique to this process and call; removed if it exists.
fn scratch_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("conn-local-test-{}-{tag}-{n}", std::process::id()));
    let _ = fs::remove_file(&path);
    path
}

/// Every process in process group `pgid`, as (pid, state letter), from /proc.
fn group_members(pgid: Pgid) -> Vec<(u32, char)> {
    procfs::group_members(pgid as u32)
        .into_iter()
        .map(|p| (p.pid, p.state))
        .collect()
}

/// Members of group `pgid` that are neither zombies nor dead.
fn live_members(pgid: Pgid) -> Vec<(u32, char)> {
    procfs::live_group_members(pgid as u32)
        .into_iter()
        .map(|p| (p.pid, p.state))
        .collect()
}

/// Waits (≤ 1 s) until `job` has registered a child whose group has at least `at_least` live
/// members, and returns that group. Panics if it does not happen.
fn running_group(job: &SimpleJob, at_least: usize) -> Pgid {
    let mut pgid = None;
    let found = wait_until(Duration::from_secs(1), || {
        pgid = job
            .cancel_token()
            .children()
            .process_groups()
            .first()
            .copied();
        pgid.is_some_and(|g| live_members(g).len() >= at_least)
    });
    let pgid = pgid.expect("the job registered no child within 1 s");
    assert!(
        found,
        "group {pgid} never had {at_least} live members: {:?}",
        group_members(pgid)
    );
    pgid
}

/// Asserts that within 1 s nothing of group `pgid` is alive (zombies awaiting their reaper are
/// allowed: they run nothing and hold no pipe).
fn assert_group_gone(pgid: Pgid) {
    assert!(
        wait_until(Duration::from_secs(1), || live_members(pgid).is_empty()),
        "process group {pgid} still has live members: {:?}",
        live_members(pgid)
    );
}

#[test]
fn deadline_kills_the_whole_process_group() {
    let pool = pool();
    // The deadline counts from the job's creation: so does `elapsed` (timed from later, it
    // would read a little short of the deadline on a busy machine).
    let start = Instant::now();
    let job = SimpleJob::with_timeout(Duration::from_millis(300));
    let cmd = sh("sleep 30 & sleep 30");
    let (result, elapsed, pgid) = thread::scope(|s| {
        // sh and the two sleeps (or, if sh execs the last one, the two sleeps): both sleeps
        // must be seen alive before the deadline for the test to mean anything.
        let watcher = s.spawn(|| running_group(&job, 2));
        let result = pool.run(&cmd, &job);
        (result, start.elapsed(), watcher.join().unwrap())
    });
    match &result {
        Err(Error::Timeout { command, timeout }) => {
            assert_eq!(*timeout, Duration::from_millis(300));
            assert_eq!(command, "sh -c 'sleep 30 & sleep 30'");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    let msg = result.unwrap_err().to_string();
    assert!(msg.contains("300ms"), "{msg}");
    assert!(
        elapsed >= Duration::from_millis(300),
        "returned early: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert_group_gone(pgid);
    assert!(
        job.cancel_token().children().is_empty(),
        "child still registered"
    );
}

#[test]
fn cancel_from_another_thread_kills_the_whole_process_group() {
    let pool = pool();
    // The deadline only bounds the test should cancel not work; it must not be what fires.
    let job = SimpleJob::with_timeout(SAFETY);
    let cmd = sh("sleep 30 & sleep 30");
    let (result, since_cancel, pgid) = thread::scope(|s| {
        let canceller = s.spawn(|| {
            let pgid = running_group(&job, 2);
            let at = Instant::now();
            job.cancel();
            (pgid, at)
        });
        let result = pool.run(&cmd, &job);
        let end = Instant::now();
        let (pgid, at) = canceller.join().unwrap();
        (result, end.duration_since(at), pgid)
    });
    match &result {
        Err(Error::Cancelled { command }) => assert_eq!(command, "sh -c 'sleep 30 & sleep 30'"),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(!result.unwrap_err().is_retryable());
    assert!(
        since_cancel < Duration::from_secs(1),
        "took {since_cancel:?}"
    );
    assert_group_gone(pgid);
    // A cancelled job starts nothing more.
    let marker = scratch_path("after-cancel");
    let touch = Cmd::new(["touch", marker.to_str().unwrap()]);
    assert!(matches!(
        pool.run(&touch, &job),
        Err(Error::Cancelled { .. })
    ));
    assert!(!marker.exists());
}

#[test]
fn terminate_subprocesses_signals_the_group() {
    let pool = pool();
    let job = SimpleJob::with_timeout(SAFETY);
    let cmd = sh("sleep 30 & sleep 30; echo not reached");
    let (result, pgid) = thread::scope(|s| {
        let terminator = s.spawn(|| {
            let pgid = running_group(&job, 2);
            job.cancel_token().children().terminate(libc::SIGTERM);
            pgid
        });
        (pool.run(&cmd, &job), terminator.join().unwrap())
    });
    // Not cancelled: the child died of SIGTERM, which the check policy reports.
    match result {
        Err(Error::Exited { status, stdout, .. }) => {
            assert_eq!(status, ExitStatus::Signal(libc::SIGTERM));
            assert!(stdout.is_empty());
        }
        other => panic!("expected Exited by SIGTERM, got {other:?}"),
    }
    assert_group_gone(pgid);
}

#[test]
fn deadline_holds_against_a_child_that_keeps_its_pipe_busy() {
    let pool = pool();
    let job = SimpleJob::with_timeout(Duration::from_millis(100));
    let cmd = Cmd::new(["cat", "/dev/zero"]);
    let done = AtomicBool::new(false);
    let (result, elapsed) = thread::scope(|s| {
        // Should the deadline be ignored, stop the endless output after 3 s (the test fails).
        s.spawn(|| {
            wait_until(Duration::from_secs(3), || done.load(Ordering::SeqCst));
            job.cancel();
        });
        let start = Instant::now();
        let result = pool.run(&cmd, &job);
        done.store(true, Ordering::SeqCst);
        (result, start.elapsed())
    });
    assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[test]
fn ten_mib_on_stdout_and_stderr_at_once() {
    let job = SimpleJob::with_timeout(SAFETY);
    let cmd = sh(
        "head -c 10485760 /dev/zero | tr '\\0' o & head -c 10485760 /dev/zero | tr '\\0' e >&2; wait",
    );
    let out = pool().run(&cmd, &job).unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    assert_eq!(out.stdout.len(), 10 * MIB);
    assert_eq!(out.stderr.len(), 10 * MIB);
    assert!(out.stdout.iter().all(|&b| b == b'o'), "stdout mixed up");
    assert!(out.stderr.iter().all(|&b| b == b'e'), "stderr mixed up");
}

#[test]
fn stdin_bytes_arrive() {
    let input: Vec<u8> = (0..MIB).map(|i| (i * 7 % 251) as u8).collect();
    let job = SimpleJob::with_timeout(SAFETY);
    let cmd = Cmd::new(["cat"]).stdin(Stdin::Bytes(input.clone()));
    let out = pool().run(&cmd, &job).unwrap();
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "stdin came back altered");

    // Counted on the other side too, with stdout and stderr both busy.
    let cmd = sh("wc -c; echo done >&2").stdin(Stdin::Bytes(input));
    let out = pool().run(&cmd, &job).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), MIB.to_string());
    assert_eq!(out.stderr, b"done\n");
}

#[test]
fn stdin_the_child_never_reads_is_no_error() {
    // 4 MiB do not fit in a pipe: the write fails with EPIPE once the child has exited.
    let job = SimpleJob::with_timeout(SAFETY);
    let cmd = sh("exit 3")
        .stdin(Stdin::Bytes(vec![b'x'; 4 * MIB]))
        .check(false);
    let out = pool().run(&cmd, &job).unwrap();
    assert_eq!(out.status, ExitStatus::Code(3));
}

#[test]
fn stdin_null_reads_as_empty() {
    let out = pool()
        .run(&Cmd::new(["wc", "-c"]), &SimpleJob::with_timeout(SAFETY))
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[test]
fn nonzero_exit_with_check_carries_status_and_output() {
    let job = SimpleJob::with_timeout(SAFETY);
    let err = pool()
        .run(&sh("echo out; echo 'it broke' >&2; exit 3"), &job)
        .unwrap_err();
    let msg = err.to_string();
    assert!(!err.is_retryable());
    match err {
        Error::Exited {
            command,
            status,
            stdout,
            stderr,
        } => {
            assert_eq!(status, ExitStatus::Code(3));
            assert_eq!(stdout, b"out\n");
            assert_eq!(stderr, b"it broke\n");
            assert_eq!(command, r#"sh -c "echo out; echo 'it broke' >&2; exit 3""#);
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(msg.contains("exit code 3"), "{msg}");
    assert!(msg.contains("it broke"), "{msg}");
}

#[test]
fn nonzero_exit_without_check_is_ok_with_the_status() {
    let job = SimpleJob::with_timeout(SAFETY);
    let out = pool()
        .run(&sh("echo out; echo err >&2; exit 7").check(false), &job)
        .unwrap();
    assert_eq!(
        out,
        Output {
            status: ExitStatus::Code(7),
            stdout: b"out\n".to_vec(),
            stderr: b"err\n".to_vec(),
            started: Started::Yes,
        }
    );
    let out = pool().run(&sh("kill -9 $$").check(false), &job).unwrap();
    assert_eq!(out.status, ExitStatus::Signal(9));
    assert_eq!(out.status.code(), None);
}

#[test]
fn streams_not_captured_come_back_empty() {
    let job = SimpleJob::with_timeout(SAFETY);
    let cmd = sh("echo out; echo err >&2")
        .stdout(Stream::Null)
        .stderr(Stream::Null);
    let out = pool().run(&cmd, &job).unwrap();
    assert_eq!(
        (out.status, out.started),
        (ExitStatus::Code(0), Started::Yes)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn argv_is_not_passed_through_a_shell() {
    let job = SimpleJob::with_timeout(SAFETY);
    let out = pool()
        .run(&Cmd::new(["echo", "$HOME", "a  b", "*", "'q'"]), &job)
        .unwrap();
    assert_eq!(out.stdout, b"$HOME a  b * 'q'\n");
}

#[test]
fn a_shell_line_runs_under_sh_c_and_a_subsystem_is_refused() {
    let job = SimpleJob::with_timeout(SAFETY);
    let out = pool()
        .run(
            &Cmd::shell("printf '%s|' one 'two three' | tr a-z A-Z; exit 3").check(false),
            &job,
        )
        .unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.status),
        (&b"ONE|TWO THREE|"[..], ExitStatus::Code(3))
    );
    let err = pool().run(&Cmd::subsystem("sftp"), &job).unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("subsystem \"sftp\"")),
        "{err}"
    );
    assert!(job.cancel_token().children().is_empty());
}

#[test]
fn dry_run_spawns_nothing() {
    let marker = scratch_path("dry-run");
    let cmd = Cmd::new([
        "sh",
        "-c",
        "echo x > \"$1\"",
        "sh",
        marker.to_str().unwrap(),
    ]);
    let job = SimpleJob::with_timeout(SAFETY);
    let out = pool().run(&cmd.clone().dry_run(true), &job).unwrap();
    assert_eq!(out, Output::dry_run());
    assert!(!marker.exists(), "dry run executed the command");
    assert!(job.cancel_token().children().is_empty());
    // The same command for real does create the file: the check above can fail.
    pool().run(&cmd, &job).unwrap();
    assert!(marker.exists());
    fs::remove_file(&marker).unwrap();
}

#[test]
fn empty_argv_is_an_error() {
    let job = SimpleJob::new();
    let err = pool()
        .run(&Cmd::new(Vec::<String>::new()), &job)
        .unwrap_err();
    assert!(matches!(err, Error::EmptyCommand), "{err:?}");
    // Even in a dry run, and through the helper directly.
    let err = pool()
        .run(&Cmd::new(Vec::<String>::new()).dry_run(true), &job)
        .unwrap_err();
    assert!(matches!(err, Error::EmptyCommand), "{err:?}");
    let err = conn_core::transport::spawn_process::<&str>(
        &[],
        &Cmd::new(["x"]),
        &job,
        Default::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::EmptyCommand), "{err:?}");
}

#[test]
fn missing_program_is_named() {
    let job = SimpleJob::new();
    for program in ["conn-test-no-such-program-7f3a", "/nonexistent-dir/prog"] {
        let err = pool().run(&Cmd::new([program, "arg"]), &job).unwrap_err();
        let msg = err.to_string();
        match err {
            Error::ProgramNotFound { program: p } => assert_eq!(p, program),
            other => panic!("expected ProgramNotFound, got {other:?}"),
        }
        assert!(msg.contains(program), "{msg}");
    }
}

#[test]
fn expired_deadline_spawns_nothing() {
    let marker = scratch_path("expired");
    let cmd = Cmd::new(["touch", marker.to_str().unwrap()]);
    let job = SimpleJob::with_timeout(Duration::ZERO);
    let start = Instant::now();
    let err = pool().run(&cmd, &job).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(1));
    match err {
        Error::Timeout { timeout, command } => {
            assert_eq!(timeout, Duration::ZERO);
            assert!(command.starts_with("touch "), "{command}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(!marker.exists(), "a command ran after its deadline");
    // Control: with time left the same command runs.
    pool().run(&cmd, &SimpleJob::with_timeout(SAFETY)).unwrap();
    assert!(marker.exists());
    fs::remove_file(&marker).unwrap();
}

#[test]
fn cancelled_job_spawns_nothing() {
    let marker = scratch_path("cancelled");
    let job = SimpleJob::new();
    job.cancel();
    let err = pool()
        .run(&Cmd::new(["touch", marker.to_str().unwrap()]), &job)
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    assert!(!marker.exists());
}

#[test]
fn the_connection_works_without_a_pool() {
    let local = Local::new();
    let conn = local.connect("direct").unwrap();
    let job = SimpleJob::with_timeout(SAFETY);
    conn.refresh(&job).unwrap();
    let out = conn.run(&Cmd::new(["echo", "hi"]), &job).unwrap();
    assert_eq!(out.stdout, b"hi\n");
    conn.shutdown();
}

#[test]
fn many_threads_share_one_pool() {
    let pool = pool();
    let job = SimpleJob::with_timeout(SAFETY);
    thread::scope(|s| {
        for t in 0..8 {
            let (pool, job) = (&pool, &job);
            s.spawn(move || {
                for i in 0..5 {
                    let word = format!("{t}-{i}");
                    let out = pool.run(&Cmd::new(["echo", word.as_str()]), job).unwrap();
                    assert_eq!(out.stdout, format!("{word}\n").into_bytes());
                }
            });
        }
    });
    let snapshot = pool.snapshot();
    assert!(
        snapshot.len() <= 1,
        "8 threads need one connection of 8: {snapshot:?}"
    );
    assert!(snapshot.iter().all(|c| c.free == 8));
}
