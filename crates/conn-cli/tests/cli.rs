//! End-to-end tests of the `conn` binary: real processes against a private sshd on 127.0.0.1
//! (the same harness `conn demo` uses), each test with its own daemon and socket directory.
//!
//! Run as root, logins go to the `conntest` account that `scripts/setup.sh` creates.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use conn_lease::{LeaseManager, namespace_dir_name, ttl_for_control_persist};
use conn_testkit::{TestSshd, procfs, run_with_timeout, wait_until};
use serde_json::Value;

/// Bound for one `conn` invocation: a hang fails the test instead of the run.
const CONN_TIMEOUT: Duration = Duration::from_secs(60);

fn conn() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conn"));
    cmd.stdin(Stdio::null())
        .env_remove("CONN_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs `conn <args>` (bounded) and returns its output.
fn run_conn<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_timeout(conn().args(args), CONN_TIMEOUT).expect("conn finishes in time")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn start_sshd() -> TestSshd {
    TestSshd::start_default().expect("start the private sshd")
}

/// `-F <config> --socket-dir <dir>`: what every remote `conn` call here passes.
fn remote_opts(server: &TestSshd, sockets: &Path) -> Vec<PathBuf> {
    vec![
        "-F".into(),
        server.ssh_config_path(),
        "--socket-dir".into(),
        sockets.to_path_buf(),
    ]
}

fn args(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

/// Asserts the `conn` failure shape: exit 2, exactly one line on stderr, nothing on stdout.
fn assert_usage_error(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(
        stderr.ends_with('\n') && stderr.starts_with("conn: error: "),
        "{stderr:?}"
    );
    assert!(
        stderr.contains(needle),
        "{stderr:?} should contain {needle:?}"
    );
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
}

/// Asserts the shape of a malformed host set: exit 2, nothing on stdout, and on stderr three
/// lines: `conn: error: …` (with `needle`), then the expression and a `^` under its character
/// `column`, both indented by two spaces.
fn assert_caret_error(out: &Output, needle: &str, line: &str, column: usize) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "three lines expected: {stderr:?}");
    assert!(
        lines[0].starts_with("conn: error: ") && lines[0].contains("invalid host set "),
        "{stderr:?}"
    );
    assert!(
        lines[0].contains(needle),
        "{stderr:?} should contain {needle:?}"
    );
    assert_eq!(lines[1], format!("  {line}"), "{stderr:?}");
    assert_eq!(lines[2], format!("  {}^", " ".repeat(column)), "{stderr:?}");
    // The caret sits under the character the byte offset names.
    let offset: usize = lines[0]
        .split(" at byte ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte offset in {stderr:?}"));
    assert_eq!(line[..offset].chars().count(), column, "{stderr:?}");
}

#[test]
fn help_has_examples_and_version_is_printed() {
    let out = run_conn(["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("conn run -H"),
        "{help}"
    );
    for sub in ["run", "hosts", "bench", "leases", "demo"] {
        let out = run_conn([sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        assert!(
            text(&out.stdout).contains("Example"),
            "{sub} --help has examples"
        );
    }
    let out = run_conn(["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("conn {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_host_names_and_options_fail_with_one_line_and_exit_2_before_anything_runs() {
    let dir = conn_testkit::socket_dir();
    // An "ssh" that leaves a mark if anything ever runs it.
    let marker = dir.path().join("ssh-ran");
    let fake_ssh = dir.path().join("fake-ssh");
    fs::write(
        &fake_ssh,
        format!("#!/bin/sh\ntouch '{}'\nexit 255\n", marker.display()),
    )
    .unwrap();
    fs::set_permissions(&fake_ssh, fs::Permissions::from_mode(0o755)).unwrap();
    let sockets = dir.path().join("s");
    let hosts_file = dir.path().join("hosts");
    fs::write(&hosts_file, "good-host\n# comment\nbad host\n").unwrap();
    let common = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "run".into(),
            "--ssh-program".into(),
            fake_ssh.display().to_string(),
            "--socket-dir".into(),
            sockets.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // Malformed host sets: the error line, then the expression and a caret under the offending
    // character (its column in the expression).
    let set_cases: Vec<(Vec<String>, &str, &str, usize)> = vec![
        (common(&["-H", "a b", "--", "true"]), "\"a b\"", "a b", 1),
        (
            common(&["-H", "ok", "--host=-oProxyCommand=x", "--", "true"]),
            "-oProxyCommand=x",
            "-oProxyCommand=x",
            0,
        ),
        (
            common(&["-H", "x;reboot", "--", "true"]),
            "\"x;reboot\"",
            "x;reboot",
            1,
        ),
        (common(&["-H", "..", "--", "true"]), "\"..\"", "..", 0),
        (
            common(&[
                "--hosts-file",
                &hosts_file.display().to_string(),
                "--",
                "true",
            ]),
            "hosts:3: invalid host set \"bad host\"",
            "bad host",
            3,
        ),
        (
            common(&["-w", "web[01-16", "--", "true"]),
            "'[' is never closed",
            "web[01-16",
            3,
        ),
        (
            common(&["-w", "h[1-3],db[7-x]", "--", "true"]),
            "expected the end of the range",
            "h[1-3],db[7-x]",
            12,
        ),
        (
            common(&["-w", "h[1-3]", "-x", "h[3-1]", "--", "true"]),
            "-x: invalid host set \"h[3-1]\"",
            "h[3-1]",
            2,
        ),
        (
            common(&["-w", "n[1-99999999999]", "--", "true"]),
            "more than 1000000 names",
            "n[1-99999999999]",
            1,
        ),
        (common(&["-w", "é,$x", "--", "true"]), "'$'", "é,$x", 2),
    ];
    for (argv, needle, line, column) in set_cases {
        let out = run_conn(&argv);
        assert_caret_error(&out, needle, line, column);
        assert!(!marker.exists(), "ssh ran for {argv:?}");
        assert!(
            !sockets.exists(),
            "the socket directory was created for {argv:?}"
        );
    }
    // -x that removes every host is a usage error too.
    let out = run_conn(common(&["-w", "h[1-3]", "-x", "h[1-3]", "--", "true"]));
    assert_usage_error(&out, "no host left");
    assert!(!marker.exists() && !sockets.exists());

    let cases: Vec<(Vec<String>, &str)> = vec![
        (common(&["-H", "ok", "--bogus", "--", "true"]), "--bogus"),
        (
            common(&["-H", "ok", "-b", "--json", "--", "true"]),
            "--json",
        ),
        (common(&["--local", "-x", "h1", "--", "true"]), "--exclude"),
        (
            common(&["-H", "ok", "--parallel", "0", "--", "true"]),
            "--parallel",
        ),
        (
            common(&["-H", "ok", "--timeout", "soon", "--", "true"]),
            "soon",
        ),
        (
            common(&["-H", "ok", "-o", "Compression", "--", "true"]),
            "Key=Value",
        ),
        // clush's form: a string of ssh options, each of them one ssh knows.
        (
            common(&["-H", "ok", "-o", "-oCompression=yes -Z", "--", "true"]),
            "-Z is not an ssh option",
        ),
        (common(&["-H", "ok", "--"]), "CMD"),
        (
            common(&["-H", "ok", "-F", "/nonexistent/ssh_config", "--", "true"]),
            "/nonexistent/ssh_config",
        ),
        (vec!["frobnicate".into()], "frobnicate"),
        (vec!["bench".into()], "HOST"),
        (
            vec!["bench".into(), "-n".into(), "0".into(), "h".into()],
            "--count",
        ),
    ];
    for (argv, needle) in cases {
        let out = run_conn(&argv);
        assert_usage_error(&out, needle);
        assert!(!marker.exists(), "ssh ran for {argv:?}");
        assert!(
            !sockets.exists(),
            "the socket directory was created for {argv:?}"
        );
    }
}

#[test]
fn local_run_passes_output_and_status_through() {
    let out = run_conn([
        "run",
        "--local",
        "--",
        "sh",
        "-c",
        "printf 'out\\n'; printf 'err\\n' >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
}

#[test]
fn single_host_output_and_exit_status_pass_through_unchanged() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let mut argv = args(&["run"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&[
        "-H",
        "conn-test",
        "--",
        "sh",
        "-c",
        "printf '%s|' \"$@\"; printf 'to stderr\\n' >&2; exit 42",
        "sh",
        "a b",
        "$HOME",
        "'quoted'",
        ";",
    ]));
    let out = run_conn(&argv);
    assert_eq!(out.status.code(), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a b|$HOME|'quoted'|;|");
    assert_eq!(text(&out.stderr), "to stderr\n");
    assert_eq!(
        server.accepted_logins(),
        1,
        "the first run starts one master"
    );

    // A second process attaches to the master the first one left: no new login.
    server.mark_log();
    let mut argv = args(&["run"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&["-H", "conn-test", "--", "echo", "again"]));
    let out = run_conn(&argv);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "again\n");
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        server.accepted_logins(),
        0,
        "the second run reuses the master"
    );

    // stdin that is not a terminal reaches the remote command.
    let mut argv = args(&["run"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&["-H", "conn-test", "--", "tr", "a-z", "A-Z"]));
    let mut cmd = conn();
    cmd.args(&argv)
        .stdin(fs::File::open(write_tmp(dir.path(), "in", "piped\n")).unwrap());
    let out = run_with_timeout(&mut cmd, CONN_TIMEOUT).unwrap();
    assert_eq!(
        text(&out.stdout),
        "PIPED\n",
        "stderr: {}",
        text(&out.stderr)
    );
}

fn write_tmp(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    path
}

#[test]
fn fan_out_prefixes_every_line_and_returns_the_largest_status() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    // Each host claims a distinct number through an atomic mkdir and exits with number - 1,
    // so the three statuses are 0, 1 and 2 in some order.
    let claims = tempfile::Builder::new().prefix("claims").tempdir().unwrap();
    fs::set_permissions(claims.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "for i in 1 2 3; do if mkdir '{}'/$i 2>/dev/null; then echo claimed $i; echo second line; \
         echo warning $i >&2; exit $((i - 1)); fi; done; exit 99",
        claims.path().display()
    );
    let hosts = write_tmp(
        dir.path(),
        "hosts",
        "# the other two aliases\nconn-test2\nconn-test3 # third\nconn-test\n",
    );
    let mut argv = args(&["run"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&["-H", "conn-test", "--hosts-file"]));
    argv.push(hosts);
    argv.extend(args(&["--parallel", "3", "--", "sh", "-c", &script]));
    let out = run_conn(&argv);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {stdout}\nstderr: {stderr}"
    );

    let aliases = ["conn-test", "conn-test2", "conn-test3"];
    let mut claimed = BTreeSet::new();
    let mut failed = BTreeSet::new();
    for alias in aliases {
        let prefix = format!("{alias}: ");
        let mine: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .collect();
        assert_eq!(mine.len(), 2, "{alias} has two stdout lines in {stdout:?}");
        assert_eq!(mine[1], "second line");
        let n: u32 = mine[0].strip_prefix("claimed ").unwrap().parse().unwrap();
        claimed.insert(n);
        assert!(
            stderr.contains(&format!("{alias}: warning {n}\n")),
            "{alias}'s stderr line is prefixed: {stderr:?}"
        );
        if n > 1 {
            assert!(
                stderr.contains(&format!("conn: {alias}: exit code {}\n", n - 1)),
                "summary names {alias}: {stderr:?}"
            );
            failed.insert(alias);
        }
    }
    assert_eq!(claimed, BTreeSet::from([1, 2, 3]));
    assert_eq!(failed.len(), 2);
    assert!(stderr.contains("conn: 2 of 3 hosts failed\n"), "{stderr:?}");
    // Every stdout line belongs to a host: nothing unprefixed, no duplicate host.
    assert_eq!(stdout.lines().count(), 6, "{stdout:?}");
    assert!(
        stdout
            .lines()
            .all(|l| aliases.iter().any(|a| l.starts_with(&format!("{a}: "))))
    );
    // One master per alias (each alias is its own endpoint and pool).
    assert_eq!(server.accepted_logins(), 3);
}

#[test]
fn timeout_kills_the_command_and_says_which_timeout() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let marker = "31.4159";
    let mut argv = args(&["run"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&[
        "-H",
        "conn-test",
        "--timeout",
        "1.5",
        "--",
        "sleep",
        marker,
    ]));
    let start = Instant::now();
    let out = run_conn(&argv);
    let took = start.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "stderr: {stderr}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains("timeout of 1.5s expired") && stderr.contains("sleep"),
        "{stderr:?}"
    );
    // conn reaped its ssh client before exiting: none is left.
    assert!(
        procfs::find("ssh", marker).is_empty(),
        "an ssh client survived"
    );

    // Locally the command itself is the child: it is gone too.
    let out = run_conn([
        "run",
        "--local",
        "--timeout",
        "0.3",
        "--",
        "sleep",
        "27.1828",
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(
        procfs::find("sleep", "27.1828").is_empty(),
        "the local sleep survived"
    );
}

#[test]
fn interrupting_conn_kills_its_children_and_exits_130() {
    let marker = "26.5358";
    let mut child = conn()
        .args(["run", "--local", "--", "sleep", marker])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !procfs::find("sleep", marker)
            .is_empty()),
        "the sleep never started"
    );
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            status = child.try_wait().unwrap();
            status.is_some()
        }),
        "conn did not exit after SIGINT"
    );
    assert_eq!(status.unwrap().code(), Some(130));
    assert!(
        procfs::find("sleep", marker).is_empty(),
        "the sleep survived"
    );
}

#[test]
fn dry_run_runs_nothing() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let target = dir.path().join("would-be-created");
    let target_s = target.display().to_string();
    let mut argv = args(&["run"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&[
        "-H",
        "conn-test",
        "-H",
        "conn-test2",
        "--dry-run",
        "--",
        "touch",
        &target_s,
    ]));
    let out = run_conn(&argv);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("Would execute:").count(), 2, "{stderr}");
    assert!(
        stderr.contains("conn-test2") && stderr.contains("touch"),
        "{stderr}"
    );
    assert!(!target.exists());
    assert_eq!(server.accepted_logins(), 0, "nothing logged in");
    assert!(server.wait_no_sessions(Duration::from_millis(100)));

    let out = run_conn(["run", "--local", "--dry-run", "--", "touch", &target_s]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("Would execute: touch"));
    assert!(!target.exists());
}

#[test]
fn exit_on_shutdown_ends_the_master() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let leases = |dir: &Path| -> Value {
        let out = run_conn([
            "leases",
            "--json",
            "--socket-dir",
            &dir.display().to_string(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let mut argv = args(&["run"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&["-H", "conn-test", "--", "true"]));
    assert!(run_conn(&argv).status.success());
    assert_eq!(leases(dir.path())["namespaces"][0]["live"], 1);
    argv.insert(1, "--exit-on-shutdown".into());
    assert!(run_conn(&argv).status.success());
    // `ssh -O exit` returns once the master has the request; it closes its socket just after.
    let live = || leases(dir.path())["namespaces"][0]["live"].clone();
    assert!(
        wait_until(Duration::from_secs(5), || live() == 0),
        "the master is still alive: {}",
        leases(dir.path())
    );
}

/// A valid socket name that no lease manager would ever make up (fixed, not random).
const FIXED_NAME: &str = "sAAAAAAAAAAA";
const ORPHAN_NAME: &str = "sBBBBBBBBBBB";

#[test]
fn leases_counts_match_a_known_state() {
    let root = conn_testkit::socket_dir();
    let ttl = ttl_for_control_persist(Duration::from_secs(600));
    let ns = "src#conn-test##shared";
    let manager = LeaseManager::new(root.path(), ns, ttl).unwrap();
    // held, with a live master (a listener on its socket)
    let held = manager.acquire().unwrap();
    let _master = UnixListener::bind(held.socket_path()).unwrap();
    // free, with a dead master (a socket nobody listens on)
    let mut dead = manager.acquire().unwrap();
    drop(UnixListener::bind(dead.socket_path()).unwrap());
    // free without a socket
    let mut bare = manager.acquire().unwrap();
    dead.release().unwrap();
    bare.release().unwrap();
    // abandoned: a used/ lock file nobody holds (its holder "crashed"), without a socket
    let used = manager.namespace_dir().join("used").join(FIXED_NAME);
    fs::write(&used, b"").unwrap();
    fs::set_permissions(&used, fs::Permissions::from_mode(0o600)).unwrap();
    // an orphan socket without any lock file
    drop(UnixListener::bind(manager.socket_dir().join(ORPHAN_NAME)).unwrap());
    // a second namespace with one free name and no socket
    let other = LeaseManager::new(root.path(), "dst#conn-test##shared", ttl).unwrap();
    other.acquire().unwrap().release().unwrap();

    let listing = |dir: &Path| -> BTreeSet<PathBuf> { walk(dir).into_iter().collect() };
    let before = listing(root.path());
    let root_s = root.path().display().to_string();
    let out = run_conn(["leases", "--json", "--socket-dir", &root_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(listing(root.path()), before, "inspection is read-only");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let namespaces = report["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 2);
    let find = |ns: &str| -> &Value {
        let name = namespace_dir_name(ns);
        namespaces
            .iter()
            .find(|n| n["namespace"] == name.as_str())
            .unwrap()
    };
    let main = find(ns);
    for (key, expected) in [
        ("free", 2),
        ("held", 1),
        ("abandoned", 1),
        ("live", 1),
        ("dead", 1),
    ] {
        assert_eq!(main[key], expected, "{key} in {main}");
    }
    assert_eq!(main["orphan_sockets"], serde_json::json!([ORPHAN_NAME]));
    let held_entry = main["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == held.name())
        .unwrap();
    assert_eq!(held_entry["state"], "held");
    assert_eq!(held_entry["master"], "live");
    let second = find("dst#conn-test##shared");
    assert_eq!(
        (second["free"].as_u64(), second["held"].as_u64()),
        (Some(1), Some(0))
    );

    // The table says the same.
    let out = run_conn(["leases", "--socket-dir", &root_s]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with(&namespace_dir_name(ns)))
        .unwrap_or_else(|| panic!("no row for the namespace in {table}"));
    let numbers: Vec<&str> = row.split_whitespace().skip(1).collect();
    assert_eq!(numbers, ["2", "1", "1", "1", "1", "1"], "{table}");

    // --prune removes exactly the unheld names without a socket: the bare free name, the
    // abandoned one, and the other namespace's free name.
    let out = run_conn(["leases", "--json", "--prune", "--socket-dir", &root_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["pruned"], 3);
    let main = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == namespace_dir_name(ns).as_str())
        .unwrap()
        .clone();
    for (key, expected) in [
        ("free", 1),
        ("held", 1),
        ("abandoned", 0),
        ("live", 1),
        ("dead", 1),
    ] {
        assert_eq!(main[key], expected, "{key} after prune in {main}");
    }
    assert!(held.is_held());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

#[test]
fn bench_measures_both_back_ends_against_the_baseline() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let mut argv = args(&["bench"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&[
        "-n",
        "6",
        "-t",
        "3,2",
        "--capacity",
        "2",
        "--fresh",
        "2",
        "--warmup",
        "1",
        "--checks",
        "4",
        "--fresh-runs",
        "2",
        "--json",
        "--exit-on-shutdown",
        "conn-test",
    ]));
    let out = run_conn(&argv);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["command"], serde_json::json!(["/bin/echo", "hello"]));
    assert_eq!(report["threads"], serde_json::json!([2, 3]));
    assert_eq!(report["failures"], 0, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let shape: Vec<(String, String, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["backend"].as_str().unwrap().to_string(),
                r["mode"].as_str().unwrap().to_string(),
                r["threads"].as_u64().unwrap(),
                r["commands"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String, u64, u64)> = Vec::new();
    for (mode, threads) in [("sequential", 1), ("concurrent", 2), ("concurrent", 3)] {
        for backend in ["conn-pool-native", "conn-pool-process", "ssh-S"] {
            expected.push((backend.into(), mode.into(), threads, 6));
        }
    }
    expected.push(("ssh-fresh".into(), "sequential".into(), 1, 2));
    assert_eq!(shape, expected);
    for r in rows {
        assert_eq!(r["errors"], 0, "{r}");
        assert!(r["median_us"].as_u64().unwrap() > 0, "{r}");
        assert!(r["p99_us"].as_u64() >= r["median_us"].as_u64(), "{r}");
        assert!(r["median_ratio"].as_f64().unwrap() > 0.0, "{r}");
        let pool = r["backend"].as_str().unwrap().starts_with("conn-pool-");
        assert_eq!(r["refusals_retried"].is_u64(), pool, "{r}");
        assert_eq!(r["commands_per_sec_ratio_to_process"].is_f64(), pool, "{r}");
    }
    assert_eq!(
        rows[2]["median_ratio"], 1.0,
        "the baseline is its own reference"
    );
    assert_eq!(rows[1]["commands_per_sec_ratio_to_process"], 1.0);
    let liveness = &report["liveness"];
    for key in [
        "refresh_fast_path_cold",
        "refresh_fast_path_warm",
        "probe_cold",
        "probe_warm",
    ] {
        assert_eq!(liveness[key]["count"], 2, "{liveness}");
    }
    assert_eq!(liveness["ssh_check"]["count"], 4, "{liveness}");
    assert!(liveness["speedup"].as_f64().unwrap() > 1.0, "{liveness}");
    let fresh = report["fresh_processes"].as_array().unwrap();
    let muxes: Vec<&str> = fresh.iter().map(|f| f["mux"].as_str().unwrap()).collect();
    assert_eq!(muxes, ["native", "process"]);
    for f in fresh {
        assert_eq!(
            (f["runs"].as_u64(), f["errors"].as_u64()),
            (Some(2), Some(0)),
            "{f}"
        );
        assert!(f["speedup_vs_fresh_ssh"].as_f64().unwrap() > 0.0, "{f}");
    }
    // Figures and ratios only: the report grades nothing against internal goals.
    assert!(report.get("targets").is_none(), "{report}");
    // Each back end has its own pool, hence its own masters: 3 threads at capacity 2 need two
    // each. The baseline shares the process pool's masters, the fresh `conn run` processes
    // lease the masters the pools left, so the only other logins are the fresh connections.
    assert_eq!(report["masters"], 2);
    assert_eq!(server.accepted_logins(), 2 * 2 + 2);
    // --exit-on-shutdown: the bench ended every master it started.
    let leases = run_conn([
        "leases",
        "--json",
        "--socket-dir",
        &dir.path().display().to_string(),
    ]);
    let leases: Value = serde_json::from_slice(&leases.stdout).unwrap();
    let live = || -> u64 {
        let out = run_conn([
            "leases",
            "--json",
            "--socket-dir",
            &dir.path().display().to_string(),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["live"].as_u64().unwrap())
            .sum()
    };
    assert!(
        wait_until(Duration::from_secs(5), || live() == 0),
        "masters still alive: {leases}"
    );
}

#[test]
fn bench_builtin_runs_the_remote_shell_s_echo_everywhere() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let mut argv = args(&["bench"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&[
        "-n",
        "2",
        "-t",
        "2",
        "--fresh",
        "1",
        "--warmup",
        "0",
        "--checks",
        "0",
        "--fresh-runs",
        "1",
        "--builtin",
        "--json",
        "--exit-on-shutdown",
        "conn-test",
    ]));
    let out = run_conn(&argv);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["command"], serde_json::json!(["echo", "hello"]));
    // Every row and fresh process ran it and got `hello` back.
    assert_eq!(report["failures"], 0, "{report}");
    assert_eq!(report["rows"].as_array().unwrap().len(), 3 * 2 + 1);
    assert_eq!(report["fresh_processes"].as_array().unwrap().len(), 2);
}

#[test]
fn bench_table_shows_every_section_with_figures_and_ratios_only() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let mut argv = args(&["bench"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&[
        "-n",
        "2",
        "-t",
        "2",
        "--fresh",
        "1",
        "--warmup",
        "0",
        "--checks",
        "2",
        "--fresh-runs",
        "1",
        "--exit-on-shutdown",
        "conn-test",
    ]));
    let out = run_conn(&argv);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let starts = |prefix: &str| table.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        starts("conn bench: `/bin/echo hello` on conn-test:"),
        1,
        "{table}"
    );
    for row in [
        "conn pool (native mux)",
        "conn pool (process mux)",
        "ssh -S (hand-spawned)",
    ] {
        assert_eq!(starts(row), 2, "{row}: sequential and 2 threads\n{table}");
    }
    assert_eq!(
        starts("ssh (new connection)"),
        2,
        "a row and a fresh-process line\n{table}"
    );
    for line in [
        "ssh -O check (spawned)",
        "refresh() fast path, cold",
        "conn run --mux native",
        "conn run --mux process",
    ] {
        assert_eq!(starts(line), 1, "{line}\n{table}");
    }
    // Figures and ratios only: nothing is graded against internal goals.
    for graded in ["Target", "MISSED", " met ", "FAILED"] {
        assert!(!table.contains(graded), "{graded:?} in\n{table}");
    }
}

#[test]
fn run_with_native_mux_passes_output_and_exit_status_through() {
    let server = start_sshd();
    let dir = conn_testkit::socket_dir();
    let run = |remote: &[&str]| {
        let mut argv = args(&["run", "--mux", "native"]);
        argv.extend(remote_opts(&server, dir.path()));
        argv.extend(args(&["-H", "conn-test", "--"]));
        argv.extend(args(remote));
        run_conn(&argv)
    };
    let out = run(&[
        "sh",
        "-c",
        "printf '%s|' \"$@\"; printf 'to stderr\\n' >&2; exit 42",
        "sh",
        "a b",
        "$HOME",
        "'quoted'",
        ";",
    ]);
    assert_eq!(out.status.code(), Some(42), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "a b|$HOME|'quoted'|;|");
    assert_eq!(text(&out.stderr), "to stderr\n");
    assert_eq!(
        server.accepted_logins(),
        1,
        "the first run starts one master"
    );

    // A remote exit 255 is the command's own with native mux: passed through, no error line.
    server.mark_log();
    let out = run(&["sh", "-c", "echo out; echo err >&2; exit 255"]);
    assert_eq!(
        out.status.code(),
        Some(255),
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n", "no transport error is reported");
    assert_eq!(
        server.accepted_logins(),
        0,
        "the second run reuses the master"
    );

    // stdin that is not a terminal reaches the remote command over the passed descriptors.
    let mut argv = args(&["run", "--mux", "native"]);
    argv.extend(remote_opts(&server, dir.path()));
    argv.extend(args(&["-H", "conn-test", "--", "tr", "a-z", "A-Z"]));
    let mut cmd = conn();
    cmd.args(&argv)
        .stdin(fs::File::open(write_tmp(dir.path(), "in", "piped\n")).unwrap());
    let out = run_with_timeout(&mut cmd, CONN_TIMEOUT).unwrap();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "PIPED\n");

    // An unknown back end is a usage error.
    let out = run_conn(["run", "--mux", "carrier-pigeon", "-H", "conn-test", "true"]);
    assert_usage_error(&out, "carrier-pigeon");
}

#[test]
fn hosts_expands_and_folds_host_sets() {
    let hosts = |argv: &[&str]| {
        let mut all = vec!["hosts"];
        all.extend(argv);
        let out = run_conn(&all);
        assert!(out.status.success(), "{argv:?}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert_eq!(hosts(&["h[01-03],db1"]), "db1\nh01\nh02\nh03\n");
    assert_eq!(hosts(&["h[8-10]", "h9", "a"]), "a\nh8\nh9\nh10\n");
    assert_eq!(
        hosts(&["root@rack[1-2]-n[1-2]"]),
        "root@rack1-n1\nroot@rack1-n2\nroot@rack2-n1\nroot@rack2-n2\n"
    );
    assert_eq!(
        hosts(&["--fold", "h01", "h02", "h03", "h07"]),
        "h[01-03,07]\n"
    );
    assert_eq!(
        hosts(&["-f", "rack[1-2]-n[01-16]", "-x", "rack2-n16"]),
        "rack[1-2]-n[01-15],rack1-n16\n"
    );
    assert_eq!(
        hosts(&[
            "root@web[1-4],web[1-4]",
            "-x",
            "web[2-3]",
            "-x",
            "root@web4"
        ]),
        "web1\nweb4\nroot@web1\n"
    );
    // 100,000 names out and back in.
    let many = hosts(&["n[000001-100000]"]);
    assert_eq!(many.lines().count(), 100_000);
    assert_eq!(many.lines().nth(41), Some("n000042"));
    assert_eq!(hosts(&["--fold", "n[000001-100000]"]), "n[000001-100000]\n");
    // Everything excluded: nothing to print, and no error for a query.
    assert_eq!(hosts(&["h[1-2]", "-x", "h[1-2]"]), "");
    assert_eq!(hosts(&["--fold", "h[1-2]", "-x", "h[1-2]"]), "");

    let out = run_conn(["hosts", "h[1-3],x y"]);
    assert_caret_error(&out, "whitespace inside a host name", "h[1-3],x y", 8);
    let out = run_conn(["hosts", "h1", "-x", "h[1-010]"]);
    assert_caret_error(&out, "padding mismatch", "h[1-010]", 4);
    let out = run_conn(["hosts"]);
    assert_usage_error(&out, "EXPR");
}

/// An ssh_config for the private sshd with the aliases `names` (and `conn-test`'s settings),
/// each sending `CONN_ALIAS=<alias>` so that a remote command knows which alias it runs under
/// (the daemon must accept it: `AcceptEnv CONN_ALIAS`); and `dead_names`, aliases of a
/// loopback port where nothing listens.
fn fleet_config(server: &TestSshd, dir: &Path, names: &[String], dead_names: &[&str]) -> PathBuf {
    let base = fs::read_to_string(server.ssh_config_path()).unwrap();
    // The settings of the first alias block (`Host conn-test`), without its Host line.
    let common: String = base
        .split("\nHost ")
        .nth(1)
        .expect("a Host block")
        .split_once('\n')
        .expect("settings after the Host line")
        .1
        .to_string();
    let mut cfg = String::new();
    for name in names {
        cfg.push_str(&format!("Host {name}\n  SetEnv CONN_ALIAS={name}\n"));
    }
    let free_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for name in dead_names {
        cfg.push_str(&format!(
            "Host {name}\n  Port {free_port}\n  ConnectTimeout 10\n"
        ));
    }
    cfg.push_str("Host *\n");
    cfg.push_str(&common);
    let path = dir.join("fleet_config");
    fs::write(&path, cfg).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn fleet_names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("fleet{i:02}")).collect()
}

fn start_fleet_sshd() -> TestSshd {
    TestSshd::builder()
        .config_line("AcceptEnv CONN_ALIAS")
        .start()
        .expect("start the private sshd (run scripts/test.sh as root once)")
}

/// `run -F <fleet config> --socket-dir <dir> --parallel 3` and then `extra`.
fn fleet_run(config: &Path, sockets: &Path, extra: &[&str]) -> Output {
    let mut argv = args(&["run", "--parallel", "3", "-F"]);
    argv.push(config.to_path_buf());
    argv.push("--socket-dir".into());
    argv.push(sockets.to_path_buf());
    argv.extend(args(extra));
    run_conn(&argv)
}

#[test]
fn host_sets_select_the_hosts_that_run() {
    let server = start_fleet_sshd();
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &fleet_names(6), &[]);
    let hosts_file = write_tmp(dir.path(), "hosts", "fleet[04-05] # two more\n# fleet06\n");
    let mut argv = vec!["-w", "fleet[01-02]", "-H", "fleet03", "--hosts-file"];
    let hosts_file = hosts_file.display().to_string();
    argv.push(&hosts_file);
    argv.extend([
        "-x",
        "fleet02",
        "--",
        "sh",
        "-c",
        "echo \"I am $CONN_ALIAS\"",
    ]);
    let out = fleet_run(&config, dir.path(), &argv);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "fleet01: I am fleet01",
            "fleet03: I am fleet03",
            "fleet04: I am fleet04",
            "fleet05: I am fleet05",
        ]
    );
    assert_eq!(
        server.accepted_logins(),
        4,
        "one master per host, none for -x"
    );
}

#[test]
fn gather_prints_identical_hosts_once_under_a_folded_header() {
    let server = start_fleet_sshd();
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &fleet_names(6), &[]);
    let script = "case $CONN_ALIAS in \
                  fleet05) echo odd one; echo warned >&2 ;; \
                  fleet06) echo same; printf 'last line without newline'; exit 3 ;; \
                  *) echo same; printf 'last line without newline' ;; esac";
    let out = fleet_run(
        &config,
        dir.path(),
        &["-w", "fleet[01-06]", "-B", "--", "sh", "-c", script],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        stdout,
        "---------------\n\
         fleet[01-04] (4)\n\
         ---------------\n\
         same\n\
         last line without newline\n\
         ---------------\n\
         fleet05\n\
         ---------------\n\
         odd one\n\
         ---------------\n\
         fleet06: exit code 3\n\
         ---------------\n\
         same\n\
         last line without newline\n"
    );
    // stderr: the gathered error output, then the summary.
    assert_eq!(
        stderr,
        "warned\nconn: fleet06: exit code 3\nconn: 1 of 6 hosts failed\n"
    );

    // -b (clush's): stdout gathered the same way, stderr streamed as it comes, prefixed.
    let gathered_stdout = stdout;
    let out = fleet_run(
        &config,
        dir.path(),
        &["-w", "fleet[01-06]", "-b", "--", "sh", "-c", script],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), gathered_stdout);
    assert_eq!(
        text(&out.stderr),
        "fleet05: warned\nconn: fleet06: exit code 3\nconn: 1 of 6 hosts failed\n"
    );

    // One host with -b is gathered too (not passed through).
    let out = fleet_run(
        &config,
        dir.path(),
        &["-w", "fleet01", "-b", "--", "echo", "hi"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "---------------\nfleet01\n---------------\nhi\n"
    );
}

#[test]
fn json_prints_one_object_per_host_per_line() {
    let server = start_fleet_sshd();
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &fleet_names(4), &["dead"]);
    // Every host writes bytes that are not UTF-8 to stderr; fleet02 fails.
    let script = "echo \"out $CONN_ALIAS\"; printf '\\377\\376' >&2; test $CONN_ALIAS != fleet02";
    let out = fleet_run(
        &config,
        dir.path(),
        &[
            "-w",
            "fleet[01-04],dead",
            "-x",
            "fleet03",
            "--json",
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(255),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let mut seen = BTreeSet::new();
    for line in stdout.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let host = v["host"].as_str().unwrap().to_string();
        let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(v["duration_s"].as_f64().is_some_and(|d| d >= 0.0), "{line}");
        assert!(v["signal"].is_null(), "{line}");
        match host.as_str() {
            "dead" => {
                assert!(v["exit_code"].is_null(), "{line}");
                assert_eq!(v["failure"]["kind"], "connect", "{line}");
                assert_eq!(v["failure"]["command_ran"], "not_started", "{line}");
                assert!(v["failure"]["message"].as_str().unwrap().contains("dead"));
                assert_eq!(v["stdout"], "", "{line}");
            }
            alias => {
                assert_eq!(
                    keys,
                    BTreeSet::from([
                        "host",
                        "exit_code",
                        "signal",
                        "duration_s",
                        "stdout",
                        "stderr",
                        "stderr_base64",
                        "failure",
                    ]),
                    "{line}"
                );
                assert_eq!(v["stdout"], format!("out {alias}\n"), "{line}");
                // Not UTF-8: null as text, the exact bytes in base64.
                assert!(v["stderr"].is_null(), "{line}");
                assert_eq!(v["stderr_base64"], "//4=", "{line}");
                if alias == "fleet02" {
                    assert_eq!(v["exit_code"], 1, "{line}");
                    assert_eq!(v["failure"]["kind"], "exited", "{line}");
                    assert_eq!(v["failure"]["command_ran"], "ran", "{line}");
                    assert_eq!(v["failure"]["message"], "exit code 1", "{line}");
                } else {
                    assert_eq!(v["exit_code"], 0, "{line}");
                    assert!(v["failure"].is_null(), "{line}");
                }
            }
        }
        assert!(seen.insert(host), "one line per host: {stdout}");
    }
    assert_eq!(
        seen,
        BTreeSet::from(["dead", "fleet01", "fleet02", "fleet04"].map(String::from))
    );
    assert!(stderr.contains("conn: fleet02: exit code 1\n"), "{stderr}");
    assert!(stderr.contains("conn: 2 of 4 hosts failed\n"), "{stderr}");
}

#[test]
fn the_summary_folds_failed_hosts_by_reason() {
    let server = start_fleet_sshd();
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &fleet_names(7), &["dead1", "dead2"]);
    let script = "case $CONN_ALIAS in \
                  fleet03|fleet04|fleet07) exit 1 ;; fleet05) exit 2 ;; *) exit 0 ;; esac";
    let out = fleet_run(
        &config,
        dir.path(),
        &["-w", "fleet[01-07],dead[1-2]", "--", "sh", "-c", script],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    let summary: Vec<&str> = stderr.lines().filter(|l| l.starts_with("conn: ")).collect();
    assert_eq!(summary.len(), 4, "{stderr}");
    // Both dead aliases fail the same way: one line, their names and per-host paths taken out.
    assert!(
        summary[0].starts_with("conn: dead[1-2]: cannot connect to <host>: ")
            && summary[0].contains("Connection refused")
            && !summary[0].contains("dead1"),
        "{stderr}"
    );
    assert_eq!(
        &summary[1..],
        [
            "conn: fleet[03-04,07]: exit code 1",
            "conn: fleet05: exit code 2",
            "conn: 6 of 9 hosts failed",
        ],
        "{stderr}"
    );
}

#[test]
fn dry_run_over_a_large_host_set_reports_every_host_in_json() {
    let dir = conn_testkit::socket_dir();
    let sockets = dir.path().join("s");
    fs::create_dir(&sockets).unwrap();
    fs::set_permissions(&sockets, fs::Permissions::from_mode(0o700)).unwrap();
    let out = run_conn([
        "run",
        "--socket-dir",
        &sockets.display().to_string(),
        "-w",
        "node[0001-1000]",
        "-x",
        "node[0101-0200]",
        "--dry-run",
        "--json",
        "--",
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hosts: BTreeSet<String> = text(&out.stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["exit_code"], 0, "{l}");
            v["host"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(hosts.len(), 900);
    assert!(hosts.contains("node0001") && hosts.contains("node1000"));
    assert!(!hosts.contains("node0150"));
    assert_eq!(text(&out.stderr).matches("Would execute:").count(), 900);
}
