//! The examples against the private sshd: they build with `cargo test` (examples are built with
//! the tests), and run here as a user would run them.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use conn_testkit::{TestSshd, run_with_timeout};

/// An example's binary: `cargo test` builds examples beside the test binaries' `deps/`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap();
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test`, which builds the examples",
        path.display()
    );
    path
}

#[test]
fn the_fleet_example_prints_each_host_s_lines_and_fails_with_a_failing_host() {
    let server = TestSshd::start_default().unwrap();
    let sockets = conn_testkit::socket_dir();
    let run = |hosts: &str, command: &[&str]| {
        run_with_timeout(
            Command::new(example("fleet"))
                .arg(server.ssh_config_path())
                .arg(hosts)
                .args(command)
                .env("CONN_SOCKET_DIR", sockets.path())
                .stdin(Stdio::null()),
            Duration::from_secs(120),
        )
        .unwrap()
    };
    let out = run(
        "conn-test,conn-test[2-3]",
        &["sh", "-c", "echo one; echo two >&2"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut stdout: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    stdout.sort();
    assert_eq!(
        stdout,
        ["conn-test2: one", "conn-test3: one", "conn-test: one"]
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    for host in ["conn-test", "conn-test2", "conn-test3"] {
        assert!(stderr.contains(&format!("{host}: two\n")), "{stderr}");
    }
    let out = run("conn-test", &["false"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("conn-test: exit code 1"));
}
