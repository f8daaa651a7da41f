//! Smoke test of the throwaway-sshd harness ([`conn_testkit::TestSshd`]) with plain `ssh`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conn_testkit::procfs::is_alive as pid_alive;
use conn_testkit::{TestSshd, child};

/// Child half of `watchdog_kills_sshd_when_test_process_dies`: starts a daemon, reports it and
/// exits without dropping it.
#[test]
#[ignore = "child process of watchdog_kills_sshd_when_test_process_dies, which runs it"]
fn watchdog_child() {
    child::helper_start();
    let server = TestSshd::start_default().expect("start sshd");
    println!("SSHD_PID={} DIR={}", server.pid(), server.dir().display());
    // Leave the process without running destructors: only the watchdog can clean up now.
    // libtest's summary line never comes, so the parent reads the line above instead.
    std::process::exit(0);
}

#[test]
fn watchdog_kills_sshd_when_test_process_dies() {
    let mut cmd = child::command("watchdog_child");
    let out = conn_testkit::run_with_timeout(&mut cmd, Duration::from_secs(60))
        .expect("run child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("SSHD_PID=").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child printed no pid: {stdout}"));
    let (pid, dir) = line.split_once(" DIR=").unwrap();
    let pid: u32 = pid.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) || Path::new(dir).exists() {
        assert!(
            Instant::now() < deadline,
            "sshd {pid} or {dir} outlived the test process that started it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn plain_ssh_logs_in_once_and_drop_kills_sshd() {
    let server = TestSshd::builder()
        .max_sessions(10)
        .log_level_verbose()
        .start()
        .expect("start sshd");
    let pid = server.pid();
    assert!(pid_alive(pid));
    assert_eq!(
        server.count_in_log("Accepted publickey"),
        0,
        "{}",
        server.log()
    );

    let out = Command::new("ssh")
        .args(server.ssh_args())
        .arg(server.host_alias())
        .args(["echo", "hello"])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    assert!(
        out.status.success(),
        "ssh failed: {}: {}\nsshd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.full_log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");

    // The "Accepted publickey" line is written before the command runs, so it is there now.
    assert_eq!(
        server.count_in_log("Accepted publickey"),
        1,
        "log:\n{}",
        server.log()
    );
    assert!(
        server
            .log()
            .contains(&format!("Accepted publickey for {}", server.user())),
        "{}",
        server.log()
    );

    drop(server);
    assert!(!pid_alive(pid), "sshd {pid} still exists after drop");
}

#[test]
fn aliases_user_and_session_limit() {
    let server = TestSshd::builder()
        .max_sessions(3)
        .start()
        .expect("start sshd");
    let config = std::fs::read_to_string(server.sshd_config_path()).unwrap();
    assert!(config.contains("\nMaxSessions 3\n"), "{config}");
    assert_eq!(server.max_sessions(), 3);

    for alias in server.host_aliases() {
        let out = server
            .ssh_command_to(alias, &["id", "-un;", "echo", "$0"])
            .output()
            .expect("run ssh");
        assert!(
            out.status.success(),
            "{alias}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some(server.user()), "{alias}: {stdout}");
        // Without a ForceCommand the login shell runs the command: `sh -c`, so $0 is sh (or
        // the current user's shell when not root).
        assert!(lines.next().is_some(), "{alias}: {stdout}");
    }
    assert_eq!(server.accepted_logins(), 3, "{}", server.log());
}

#[test]
fn drop_ends_open_sessions_and_kill_connections_keeps_listener() {
    let server = TestSshd::start_default().expect("start sshd");
    let pid = server.pid();

    // A long-running session: drop must not wait for it, and must end it.
    let mut long = server
        .ssh_command(&["sleep", "60"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.connection_pids().is_empty() || server.accepted_logins() == 0 {
        assert!(Instant::now() < deadline, "no session appeared");
        std::thread::sleep(Duration::from_millis(20));
    }

    server.kill_connections();
    assert!(server.connection_pids().is_empty());
    let status = long.wait().expect("wait ssh");
    assert_eq!(status.code(), Some(255), "ssh should lose its connection");

    // The listener still takes new logins.
    let mut long = server
        .ssh_command(&["sleep", "60"])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.accepted_logins() < 2 {
        assert!(Instant::now() < deadline, "no second session appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!pid_alive(pid));
    let status = long.wait().expect("wait ssh");
    assert!(!status.success());
}

/// Child half of `a_missing_test_account_is_named_with_the_set_up_script`: tries to start a
/// daemon for the account its environment names, and prints the error.
#[test]
#[ignore = "child process of a_missing_test_account_is_named_with_the_set_up_script, which runs it"]
fn start_for_the_account_in_the_environment() {
    child::helper_start();
    let err = TestSshd::start_default().expect_err("the account does not exist");
    println!("START ERROR: {err}");
}

#[test]
fn a_missing_test_account_is_named_with_the_set_up_script() {
    if !rustix::process::geteuid().is_root() {
        println!(
            "skipped: not root, so the harness logs in as the current user and never looks for \
             a test account"
        );
        return;
    }
    // In a child process: setting CONN_TEST_USER here would reach the other tests' daemons.
    let out = child::run(
        "start_for_the_account_in_the_environment",
        Duration::from_secs(60),
        |cmd| {
            cmd.env("CONN_TEST_USER", "conn-no-such-user");
        },
    );
    assert!(
        out.contains("START ERROR: the test account `conn-no-such-user` does not exist")
            && out.contains("run `bash scripts/setup.sh` as root"),
        "{out}"
    );
}
