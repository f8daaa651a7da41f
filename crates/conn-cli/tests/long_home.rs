//! `conn run` with the default socket directory, run as a real account whose home directory is
//! 60 bytes long: `conntest-long`, which `scripts/setup.sh` creates. Under that home,
//! `~/.ssh/conn` would make 129-byte ControlPaths, over the 90-byte limit, so conn must fall
//! back to `/tmp/conn-<uid>`, start a master there, and reuse it from the next process.
//!
//! Only root can run a process as another account; as anyone else the test says so and passes.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use conn_lease::namespace_dir_name;
use conn_openssh::OpenSsh;
use conn_testkit::{TestSshd, run_with_timeout};
use serde_json::Value;

/// The account, and the length of its home directory, that `scripts/setup.sh` sets up.
const ACCOUNT: &str = "conntest-long";
const HOME_LEN: usize = 60;
const SETUP_HINT: &str = "run `bash scripts/setup.sh` as root, which creates it";

/// Bound for one `conn` invocation.
const CONN_TIMEOUT: Duration = Duration::from_secs(60);

/// A local account: uid, gid, home.
struct Account {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

/// `name`'s entry in /etc/passwd (read directly: getpwnam's static buffer is not thread-safe).
fn account(name: &str) -> Option<Account> {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[0] == name).then(|| Account {
            uid: f[2].parse().expect("numeric uid"),
            gid: f[3].parse().expect("numeric gid"),
            home: PathBuf::from(f[5]),
        })
    })
}

/// `program <args>` as `who`, with the environment a login would give it (and no
/// `XDG_RUNTIME_DIR`: conn must not need one), bounded in time.
fn run_as(who: &Account, program: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .uid(who.uid)
        .gid(who.gid)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &who.home)
        .env("USER", ACCOUNT)
        .env("LOGNAME", ACCOUNT)
        .env("NO_COLOR", "1")
        .current_dir("/")
        .stdin(Stdio::null());
    run_with_timeout(&mut cmd, CONN_TIMEOUT).expect("conn finishes in time")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_default_socket_directory_works_for_a_60_byte_home_and_the_master_is_reused() {
    if !rustix::process::geteuid().is_root() {
        println!("skipped: only root can run conn as the account {ACCOUNT}");
        return;
    }
    let who = account(ACCOUNT)
        .unwrap_or_else(|| panic!("the test account `{ACCOUNT}` does not exist: {SETUP_HINT}"));
    assert_eq!(
        who.home.as_os_str().len(),
        HOME_LEN,
        "the home of `{ACCOUNT}`, {}, is not {HOME_LEN} bytes long: {SETUP_HINT}",
        who.home.display()
    );
    assert!(
        fs::metadata(&who.home).is_ok_and(|m| m.is_dir() && m.uid() == who.uid),
        "the home {} of `{ACCOUNT}` is missing or not its own: {SETUP_HINT}",
        who.home.display()
    );
    // The private sshd logs in as `conntest`; only the local side is the long-home account.
    let server = TestSshd::start_default().expect("start the private sshd");

    // The account cannot read the daemon's directory, nor perhaps the build tree: give it its
    // own copies of the client files and of the binary, in a directory of its own.
    let client = tempfile::Builder::new()
        .prefix("conn-long-home-")
        .tempdir_in("/tmp")
        .unwrap();
    let config = server.write_client_files(client.path()).unwrap();
    let conn = client.path().join("conn");
    fs::copy(env!("CARGO_BIN_EXE_conn"), &conn).unwrap();
    fs::set_permissions(&conn, fs::Permissions::from_mode(0o755)).unwrap();
    for entry in fs::read_dir(client.path()).unwrap() {
        chown(entry.unwrap().path(), Some(who.uid), Some(who.gid)).unwrap();
    }
    chown(client.path(), Some(who.uid), Some(who.gid)).unwrap();
    let config_s = config.to_str().unwrap();

    let expected_dir = PathBuf::from(format!("/tmp/conn-{}", who.uid));
    let namespace = OpenSsh::builder(server.host_alias())
        .ssh_config(&config)
        .socket_dir("/nonexistent")
        .build()
        .unwrap()
        .lease_namespace("shared");
    let ns_dir = expected_dir.join(namespace_dir_name(&namespace));

    let run = || {
        run_as(
            &who,
            &conn,
            &[
                "run",
                "-F",
                config_s,
                "-H",
                server.host_alias(),
                "--",
                "id",
                "-un",
            ],
        )
    };
    let out = run();
    assert!(
        out.status.success(),
        "conn run as {ACCOUNT} with the default socket directory failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), format!("{}\n", server.user()));
    assert_eq!(
        server.accepted_logins(),
        1,
        "the first run started a master"
    );

    // The master's socket is in the fallback directory, private to the account, and nothing
    // went under the long home.
    let meta = fs::symlink_metadata(&expected_dir).unwrap();
    assert!(meta.is_dir() && meta.uid() == who.uid && meta.mode() & 0o7777 == 0o700);
    assert!(!who.home.join(".ssh/conn").exists());
    let sockets: Vec<PathBuf> = fs::read_dir(ns_dir.join("c"))
        .unwrap_or_else(|e| panic!("no socket directory {}: {e}", ns_dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none())
        .collect();
    assert_eq!(sockets.len(), 1, "one socket: {sockets:?}");
    let socket = &sockets[0];
    assert!(socket.as_os_str().len() <= conn_lease::MAX_CONTROL_PATH_LEN);
    let master = server
        .master_pid(socket)
        .unwrap_or_else(|| panic!("no master answers on {}", socket.display()));

    // `conn leases` with its defaults looks in the same place.
    let out = run_as(&who, &conn, &["leases", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["socket_dir"], expected_dir.to_str().unwrap());
    let ours = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["namespace"] == namespace_dir_name(&namespace).as_str())
        .unwrap_or_else(|| panic!("no report of our namespace in {report}"));
    assert_eq!(
        (ours["free"].as_u64(), ours["live"].as_u64()),
        (Some(1), Some(1))
    );

    // A second process takes over the master: no new login, the same master pid.
    server.mark_log();
    let out = run();
    assert!(out.status.success(), "second run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", server.user()));
    assert_eq!(
        server.accepted_logins(),
        0,
        "the second run reused the master"
    );
    assert_eq!(server.master_pid(socket), Some(master));

    // End the master and remove this run's namespace; other runs' namespaces stay.
    let mut exit = Command::new(server.ssh_program());
    exit.args(server.ssh_args())
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", server.host_alias()])
        .stdin(Stdio::null());
    let out = run_with_timeout(&mut exit, Duration::from_secs(10)).unwrap();
    assert!(out.status.success(), "ssh -O exit: {}", text(&out.stderr));
    fs::remove_dir_all(&ns_dir).unwrap();
}
