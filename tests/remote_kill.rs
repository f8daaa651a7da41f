//! `Cmd::kill_remote` against a real, private sshd on 127.0.0.1, over both back ends: a cancel,
//! a deadline, `kill()` or dropping a running child ends the whole remote process group (a
//! pipeline), while without the option the remote command runs on; a session that ended by
//! itself is left alone; the remote shell's report never reaches the caller's stderr, however
//! it is read, and the command line keeps its meaning.
//!
//! "Remote" is this machine, so the remote processes are found in `/proc` by a unique
//! argument, polled within bounds (never a blind sleep).

use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use conn::prelude::*;
use conn::transport::{Connection as _, Transport as _};
use conn::{ExitStatus, Mux, OutputSink, StreamKind};
use conn_testkit::{TestSshd, procfs, socket_dir, wait_until};

/// Bound for anything that should happen at once (a process to appear or go).
const SETTLE: Duration = Duration::from_secs(10);
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
const MUXES: [Mux; 2] = [Mux::Native, Mux::Process];

fn pool(sshd: &TestSshd, dir: &Path, mux: Mux) -> ConnectionPool<OpenSsh> {
    let transport = OpenSsh::builder(sshd.host_alias())
        .ssh_config(sshd.ssh_config_path())
        .socket_dir(dir)
        .mux(mux)
        .exit_masters_on_shutdown(true)
        .build()
        .unwrap();
    ConnectionPool::new(transport, "shared", 8).unwrap()
}

/// The `sleep` arguments of one test, which no other process has: how a test finds its remote
/// commands. Dropping it ends every remote group of the test that is still there, so a failed
/// assertion leaves nothing behind.
struct Naps {
    prefix: String,
    n: AtomicU32,
}

impl Naps {
    fn new() -> Naps {
        static TEST: AtomicU32 = AtomicU32::new(0);
        let test = TEST.fetch_add(1, Ordering::Relaxed);
        Naps {
            prefix: format!("987.{}{test:02}", std::process::id()),
            n: AtomicU32::new(0),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}{:03}",
            self.prefix,
            self.n.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Drop for Naps {
    fn drop(&mut self) {
        for pid in procfs::find("sleep", &self.prefix) {
            if let Some(p) = procfs::process(pid) {
                // SAFETY: kill(2) on the group of a remote command this test started.
                unsafe { libc::kill(-(p.pgrp as libc::pid_t), libc::SIGKILL) };
            }
        }
    }
}

fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The remote process group of the `sleep <nap>` it runs (bounded wait), and its live members.
fn remote_group(nap: &str) -> (u32, Vec<u32>) {
    let mut found = None;
    assert!(
        wait_until(SETTLE, || {
            found = procfs::find("sleep", nap)
                .first()
                .and_then(|&pid| procfs::process(pid));
            found.is_some()
        }),
        "the remote sleep {nap} never started"
    );
    let pgid = found.unwrap().pgrp;
    let members = procfs::live_group_members(pgid)
        .iter()
        .map(|p| p.pid)
        .collect();
    (pgid, members)
}

/// Waits (bounded) until every member of a pipeline `sh -c 'sleep | cat'` is in the group.
fn whole_pipeline(nap: &str) -> (u32, Vec<u32>) {
    let mut group = remote_group(nap);
    assert!(
        wait_until(SETTLE, || {
            group = remote_group(nap);
            let mut names: Vec<String> = group.1.iter().map(|&p| comm(p)).collect();
            names.sort();
            names == ["cat", "sh", "sleep"]
        }),
        "not the pipeline's three processes in group {}: {:?}",
        group.0,
        group.1.iter().map(|&p| comm(p)).collect::<Vec<_>>()
    );
    group
}

fn all_gone(pids: &[u32]) -> bool {
    pids.iter().all(|&p| !procfs::is_alive(p))
}

/// Ends what a test left running on purpose.
fn clean_up(pids: &[u32]) {
    for &pid in pids {
        // SAFETY: kill(2) on a remote command this test started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

fn pipeline(nap: &str) -> Cmd {
    Cmd::shell(format!("sleep {nap} | cat"))
}

/// Waits (bounded) for the child's remote shell to report its group, moving the pipes in the
/// background (taking stdout starts that).
fn reported(child: &mut conn::RemoteChild) -> u32 {
    drop(child.take_stdout());
    assert!(
        wait_until(SETTLE, || child.remote_pgid().is_some()),
        "the remote shell never reported its process group"
    );
    child.remote_pgid().unwrap()
}

#[test]
fn a_cancel_ends_the_whole_remote_pipeline_and_without_the_option_it_runs_on() {
    let naps = Naps::new();
    let sshd = TestSshd::start_default().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let pool = pool(&sshd, dir.path(), mux);
        let nap = naps.next();
        let job = SimpleJob::with_timeout(JOB_TIMEOUT);
        let mut child = pool.spawn(&pipeline(&nap).kill_remote(true), &job).unwrap();
        let pgid = reported(&mut child);
        let (group, members) = whole_pipeline(&nap);
        assert_eq!(pgid, group, "{mux:?}: the reported group is the pipeline's");
        job.cancel();
        let err = child.wait().unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{mux:?}: {err:?}");
        assert!(
            wait_until(SETTLE, || all_gone(&members)),
            "{mux:?}: remote processes left after the cancel: {members:?}"
        );

        // The control: the same without the option runs on after the cancel.
        let nap = naps.next();
        let job = SimpleJob::with_timeout(JOB_TIMEOUT);
        let mut child = pool.spawn(&pipeline(&nap), &job).unwrap();
        assert_eq!(child.remote_pgid(), None);
        let (_, members) = whole_pipeline(&nap);
        job.cancel();
        assert!(matches!(child.wait(), Err(Error::Cancelled { .. })));
        // As long as the option's own case had to end them, and more.
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            members.iter().all(|&p| procfs::is_alive(p)),
            "{mux:?}: without kill_remote the remote command runs on"
        );
        clean_up(&members);
        pool.shutdown();
    }
}

#[test]
fn a_deadline_ends_the_remote_pipeline() {
    let naps = Naps::new();
    let sshd = TestSshd::start_default().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let pool = pool(&sshd, dir.path(), mux);
        let nap = naps.next();
        let watched = nap.clone();
        // Found while the command runs: its deadline ends it long after it has started.
        let watcher = std::thread::spawn(move || whole_pipeline(&watched));
        let job = SimpleJob::with_timeout(Duration::from_secs(3));
        let err = pool
            .run(&pipeline(&nap).kill_remote(true), &job)
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{mux:?}: {err:?}");
        let (_, members) = watcher.join().unwrap();
        assert!(
            wait_until(SETTLE, || all_gone(&members)),
            "{mux:?}: remote processes left after the deadline: {members:?}"
        );
        pool.shutdown();
    }
}

#[test]
fn kill_and_dropping_a_running_child_end_the_remote_command_too() {
    let naps = Naps::new();
    let sshd = TestSshd::start_default().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let pool = pool(&sshd, dir.path(), mux);
        for how in ["kill", "drop"] {
            let nap = naps.next();
            let job = SimpleJob::with_timeout(JOB_TIMEOUT);
            let mut child = pool.spawn(&pipeline(&nap).kill_remote(true), &job).unwrap();
            reported(&mut child);
            let (_, members) = whole_pipeline(&nap);
            if how == "kill" {
                child.kill().unwrap();
                assert_eq!(child.wait().unwrap(), ExitStatus::Signal(9));
            } else {
                drop(child);
            }
            assert!(
                wait_until(SETTLE, || all_gone(&members)),
                "{mux:?} {how}: remote processes left: {members:?}"
            );
        }
        pool.shutdown();
    }
}

#[test]
fn a_session_that_ended_by_itself_is_left_alone() {
    let naps = Naps::new();
    let sshd = TestSshd::start_default().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let pool = pool(&sshd, dir.path(), mux);
        let nap = naps.next();
        // A background job that lets go of the session's pipes: the session ends, the job
        // stays in the remote group.
        let line = format!("sleep {nap} </dev/null >/dev/null 2>&1 & echo started");
        let out = pool
            .run(
                &Cmd::shell(line).kill_remote(true),
                &SimpleJob::with_timeout(JOB_TIMEOUT),
            )
            .unwrap();
        assert_eq!(out.stdout, b"started\n");
        assert_eq!(out.stderr, b"", "{mux:?}: the report was taken out");
        let (_, members) = remote_group(&nap);
        pool.shutdown();
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            members.iter().all(|&p| procfs::is_alive(p)),
            "{mux:?}: a command that ended by itself got a kill"
        );
        clean_up(&members);
    }
}

#[derive(Default)]
struct Collect(Vec<u8>, Vec<u8>);

impl OutputSink for Collect {
    fn output(&mut self, stream: StreamKind, bytes: &[u8]) {
        match stream {
            StreamKind::Stdout => self.0.extend_from_slice(bytes),
            StreamKind::Stderr => self.1.extend_from_slice(bytes),
        }
    }
}

#[test]
fn the_report_never_reaches_the_caller_and_the_line_keeps_its_meaning() {
    let sshd = TestSshd::start_default().unwrap();
    let files = tempfile::tempdir().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let pool = pool(&sshd, dir.path(), mux);
        let job = || SimpleJob::with_timeout(JOB_TIMEOUT);
        // Stderr first, a last line without a newline, and one that looks like a report.
        let line = "echo first >&2; echo out; echo conn-pgid:0:1 >&2; printf 'no newline' >&2";
        let want_err: &[u8] = b"first\nconn-pgid:0:1\nno newline";
        let cmd = Cmd::shell(line).kill_remote(true);

        let out = pool.run(&cmd, &job()).unwrap();
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice()),
            (&b"out\n"[..], want_err),
            "{mux:?} captured"
        );

        let mut sink = Collect::default();
        pool.run_streaming(&cmd, &job(), &mut sink).unwrap();
        assert_eq!(
            (sink.0.as_slice(), sink.1.as_slice()),
            (&b"out\n"[..], want_err)
        );

        let path = files.path().join(format!("{mux:?}.err"));
        let file = fs::File::create(&path).unwrap();
        pool.run(&cmd.clone().stderr(file), &job()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), want_err, "{mux:?} to a file");

        pool.run(&cmd.clone().stderr(Stream::Null), &job()).unwrap();

        let mut child = pool.spawn(&cmd, &job()).unwrap();
        let mut err = Vec::new();
        child.take_stderr().unwrap().read_to_end(&mut err).unwrap();
        child.wait().unwrap();
        assert_eq!(err, want_err, "{mux:?} read by the caller");

        // The line is the caller's, whole: a leading `cd … &&`, a comment, a trailing `&`,
        // the exit status; an argv quoted as ever.
        for (line, want) in [
            ("cd /tmp && pwd", "/tmp\n"),
            ("echo a # a comment", "a\n"),
            ("echo bg &", "bg\n"),
        ] {
            let out = pool
                .run(&Cmd::shell(line).kill_remote(true), &job())
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{mux:?} {line}");
            assert_eq!(out.stderr, b"", "{mux:?} {line}");
        }
        let out = pool
            .run(
                &Cmd::new(["printf", "%s|", "a b", "$HOME"]).kill_remote(true),
                &job(),
            )
            .unwrap();
        assert_eq!(out.stdout, b"a b|$HOME|");
        let out = pool
            .run(&Cmd::shell("exit 3").kill_remote(true).check(false), &job())
            .unwrap();
        assert_eq!(out.status, ExitStatus::Code(3), "{mux:?}");
        pool.shutdown();
    }
}

#[test]
fn a_bare_connection_kills_remotely_once_the_child_holds_it() {
    let naps = Naps::new();
    let sshd = TestSshd::start_default().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let transport = OpenSsh::builder(sshd.host_alias())
            .ssh_config(sshd.ssh_config_path())
            .socket_dir(dir.path())
            .mux(mux)
            .exit_masters_on_shutdown(true)
            .build()
            .unwrap();
        let conn = Arc::new(transport.connect("bare").unwrap());
        conn.refresh(&SimpleJob::with_timeout(JOB_TIMEOUT)).unwrap();
        for held in [true, false] {
            let nap = naps.next();
            let job = SimpleJob::with_timeout(JOB_TIMEOUT);
            let mut child = conn.spawn(&pipeline(&nap).kill_remote(true), &job).unwrap();
            if held {
                child = child.hold_connection(Arc::clone(&conn));
            }
            reported(&mut child);
            let (_, members) = whole_pipeline(&nap);
            job.cancel();
            assert!(matches!(child.wait(), Err(Error::Cancelled { .. })));
            if held {
                assert!(
                    wait_until(SETTLE, || all_gone(&members)),
                    "{mux:?}: remote processes left: {members:?}"
                );
            } else {
                // Nothing to run the kill on: it runs on, as documented.
                std::thread::sleep(Duration::from_millis(500));
                assert!(members.iter().all(|&p| procfs::is_alive(p)), "{mux:?}");
                clean_up(&members);
            }
        }
        conn.shutdown();
    }
}

#[test]
fn a_full_connection_cancelled_at_once_ends_every_remote_command() {
    // Eight sessions on one connection (sshd's MaxSessions is 10): every killed session counts
    // until its command has ended, so most of the eight kills are refused at first and tried
    // again.
    let naps = Naps::new();
    let sshd = TestSshd::start_default().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let pool = pool(&sshd, dir.path(), mux);
        let job = SimpleJob::with_timeout(JOB_TIMEOUT);
        let mut children = Vec::new();
        let mut members = Vec::new();
        for _ in 0..8 {
            let nap = naps.next();
            let mut child = pool.spawn(&pipeline(&nap).kill_remote(true), &job).unwrap();
            reported(&mut child);
            members.extend(whole_pipeline(&nap).1);
            children.push(child);
        }
        assert_eq!(pool.snapshot().len(), 1, "{mux:?}: one connection");
        job.cancel();
        std::thread::scope(|scope| {
            for mut child in children {
                scope.spawn(move || assert!(matches!(child.wait(), Err(Error::Cancelled { .. }))));
            }
        });
        assert!(
            wait_until(SETTLE, || all_gone(&members)),
            "{mux:?}: remote processes left: {:?}",
            members
                .iter()
                .filter(|&&p| procfs::is_alive(p))
                .collect::<Vec<_>>()
        );
        pool.shutdown();
    }
}

/// The child of `an_inherited_stderr_is_the_command_s_own`: a library caller whose command's
/// streams are its own (`Stream::Inherit`).
#[test]
#[ignore = "child process of an_inherited_stderr_is_the_command_s_own, which runs it"]
fn inherited_stderr_in_a_child_process() {
    conn_testkit::child::helper_start();
    let var = |k: &str| std::env::var(k).unwrap();
    let transport = OpenSsh::builder(&var("CONN_TEST_ALIAS"))
        .ssh_config(var("CONN_TEST_SSH_CONFIG"))
        .socket_dir(var("CONN_TEST_SOCKET_DIR"))
        .mux(var("CONN_TEST_MUX").parse().unwrap())
        .build()
        .unwrap();
    let pool = ConnectionPool::new(transport, "shared", 8).unwrap();
    let cmd = Cmd::shell("echo first >&2; echo out; printf last >&2")
        .kill_remote(true)
        .stdout(Stream::Inherit)
        .stderr(Stream::Inherit);
    pool.run(&cmd, &SimpleJob::with_timeout(JOB_TIMEOUT))
        .unwrap();
    pool.shutdown();
}

#[test]
fn an_inherited_stderr_is_the_command_s_own() {
    let sshd = TestSshd::start_default().unwrap();
    for mux in MUXES {
        let dir = socket_dir();
        let mut cmd = conn_testkit::child::command("inherited_stderr_in_a_child_process");
        cmd.env("CONN_TEST_MUX", mux.to_string())
            .env("CONN_TEST_ALIAS", sshd.host_alias())
            .env("CONN_TEST_SSH_CONFIG", sshd.ssh_config_path())
            .env("CONN_TEST_SOCKET_DIR", dir.path());
        let out = conn_testkit::run_with_timeout(&mut cmd, JOB_TIMEOUT).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{mux:?}: {stdout}");
        assert!(conn_testkit::child::ran_one_test(&stdout), "{stdout}");
        assert!(stdout.contains("out\n"), "{mux:?}: {stdout}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "first\nlast",
            "{mux:?}: the child's own stderr, the report taken out"
        );
    }
}
