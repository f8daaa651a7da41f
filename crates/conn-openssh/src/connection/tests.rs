//! Unit tests of the refresh state machine and the command line, without an sshd.

use super::refresh::{Outcome, Shared, SlowRefresh};
use super::*;
use crate::OpenSsh;
use conn_core::Transport;

fn connection(dir: &Path) -> OpenSshConnection {
    let ssh = OpenSsh::builder("u@h")
        .socket_dir(dir.join("s"))
        .build()
        .unwrap();
    ssh.connect("shared").unwrap()
}

/// A waiter's error when the slow refresh it waited for failed with `failure`.
fn waiter_error(failure: Shared) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let conn = Arc::new(connection(dir.path()));
    let control = conn.control.as_ref().unwrap();
    lock(&control.refresh).in_progress = true; // another thread is starting the master
    let waiter = {
        let conn = Arc::clone(&conn);
        std::thread::spawn(move || conn.refresh(&SimpleJob::with_timeout(Duration::from_secs(10))))
    };
    // Until the waiter waits (bounded; it cannot finish on its own while in_progress holds).
    let until = Instant::now() + Duration::from_secs(5);
    while lock(&control.refresh).waiters == 0 && Instant::now() < until {
        std::thread::yield_now();
    }
    assert!(
        !waiter.is_finished(),
        "the waiter must wait for the attempt in progress"
    );
    drop(SlowRefresh {
        control,
        outcome: Outcome::Failed(failure),
    });
    let err = waiter.join().unwrap().unwrap_err();
    assert_eq!(
        lock(&control.refresh).attempts,
        1,
        "no second doomed master start"
    );
    err
}

#[test]
fn waiters_take_the_failure_of_the_attempt_they_waited_for() {
    let err = waiter_error(Shared::Connect(
        "ssh master on x did not start: boom".to_string(),
    ));
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("boom"), "{err}");
}

#[test]
fn waiters_keep_the_kind_of_a_failure_that_no_retry_mends() {
    // A typo in an option, or no ssh at all: a retryable Connect would invite retry storms.
    let config = waiter_error(Shared::of(&Error::Config("bad -o".into())));
    assert!(
        matches!(config, Error::Config(ref m) if m.contains("bad -o")),
        "{config:?}"
    );
    assert!(!config.is_retryable());
    let missing = waiter_error(Shared::of(&Error::ProgramNotFound {
        program: "sshh".into(),
    }));
    assert!(
        matches!(missing, Error::ProgramNotFound { ref program } if program == "sshh"),
        "{missing:?}"
    );
    assert!(!missing.is_retryable());
}

#[test]
fn waiting_for_another_thread_s_refresh_honours_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let conn = connection(dir.path());
    let control = conn.control.as_ref().unwrap();
    lock(&control.refresh).in_progress = true; // as if another thread were starting a master
    let job = SimpleJob::with_timeout(Duration::from_millis(100));
    let start = Instant::now();
    let err = conn.refresh(&job).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let cancelled = SimpleJob::new();
    cancelled.cancel();
    assert!(matches!(
        conn.refresh(&cancelled),
        Err(Error::Cancelled { .. })
    ));
}

#[test]
fn command_line_is_the_session_argv_with_each_argument_quoted() {
    let dir = tempfile::tempdir().unwrap();
    // Without reuse there is no master to refresh: the line alone is checked here (the CLI
    // bench runs it against a live master).
    let ssh = OpenSsh::builder("u@h")
        .socket_dir(dir.path().join("s"))
        .reuse_connections(false)
        .build()
        .unwrap();
    let conn = ssh.connect("shared").unwrap();
    let job = SimpleJob::new();
    let argv = conn
        .command_line(&Cmd::new(["echo", "a b", "$HOME"]), &job)
        .unwrap();
    let mut expected: Vec<OsString> = ssh
        .ssh_command_prefix()
        .iter()
        .map(OsString::from)
        .collect();
    expected.extend(
        [
            "-oControlMaster=no",
            "-oControlPath=none",
            "u@h",
            "echo",
            "'a b'",
            "'$HOME'",
        ]
        .map(OsString::from),
    );
    assert_eq!(argv, expected);
    let empty: [&str; 0] = [];
    assert!(matches!(
        conn.command_line(&Cmd::new(empty), &job),
        Err(Error::EmptyCommand)
    ));
}
