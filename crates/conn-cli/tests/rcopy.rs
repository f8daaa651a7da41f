//! `conn copy --rcopy` (clush's `--rcopy`, pdsh's `rpdcp`) against the private sshd on
//! 127.0.0.1: files and trees from 20 hosts, each arriving as `DIR/NAME.HOST` and checked by
//! its checksum, over both mux back ends; `--preserve` keeping modes and modification times; a
//! missing remote file as that host's error; and a `conn` killed mid-transfer leaving nothing
//! under a final name.
//!
//! All hosts are aliases of one daemon, so to give each host files of its own the daemon runs
//! every command through a `ForceCommand` wrapper that first enters `ROOT/<alias>` (the alias
//! comes from the `CONN_ALIAS` each alias sends): a relative path names a per-host file.

mod support;

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use conn_testkit::{TestSshd, procfs, wait_until};
use rustix::process::Signal;
use sha2::{Digest, Sha256};
use support::*;

/// A modification time far in the past (2001-09-09), for `--preserve` to keep.
const OLD: u64 = 1_000_000_000;

/// The private sshd whose sessions each run in `ROOT/<alias>` (see the module's comment).
struct Hosts {
    server: TestSshd,
    root: tempfile::TempDir,
}

impl Hosts {
    fn start() -> Hosts {
        let root = shared_dir("rcopy");
        let enter = root.path().join("enter");
        fs::write(
            &enter,
            format!(
                "#!/bin/sh\n\
                 # Each alias works in its own directory: relative paths are per host.\n\
                 cd \"{0}/${{CONN_ALIAS:-none}}\" 2>/dev/null || cd \"{0}\"\n\
                 exec /bin/sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
                root.path().display()
            ),
        )
        .unwrap();
        fs::set_permissions(&enter, fs::Permissions::from_mode(0o755)).unwrap();
        let server = start_fleet_sshd(&[&format!("ForceCommand {}", enter.display())]);
        Hosts { server, root }
    }

    /// The directory `host`'s sessions start in (made when missing).
    fn dir(&self, host: &str) -> PathBuf {
        let dir = self.root.path().join(host);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// The uid and gid of the account the daemon logs in as.
    fn login_ids(&self) -> (u32, u32) {
        let name = std::ffi::CString::new(self.server.user()).unwrap();
        // SAFETY: getpwnam with a NUL-terminated name; the fields are read at once, before any
        // other call could reuse the static buffer it returns.
        unsafe {
            let pw = libc::getpwnam(name.as_ptr());
            assert!(!pw.is_null(), "no account {}", self.server.user());
            ((*pw).pw_uid, (*pw).pw_gid)
        }
    }
}

fn sha(path: &Path) -> String {
    hex(&Sha256::digest(
        fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    ))
}

fn write(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// `copy --rcopy` argv: `-F config --socket-dir sockets`, `extra`, the sources, `--dest dest`.
fn rcopy_args(
    config: &Path,
    sockets: &Path,
    extra: &[&str],
    sources: &[&str],
    dest: &Path,
) -> Vec<OsString> {
    let mut argv = fleet_args("copy", config, sockets, &["--rcopy"]);
    argv.extend(os(extra));
    argv.extend(os(sources));
    argv.push("--dest".into());
    argv.push(dest.into());
    argv
}

/// 20 hosts each have a file and a tree of their own (different bytes per host): with both
/// back ends, `--rcopy -r data.bin tree` brings every host's file as `data.bin.HOST` and its
/// tree as `tree.HOST`, each byte right (by checksum), each host says so on stdout, and
/// nothing else (no temporary file or directory) is left in the destination.
#[test]
fn rcopy_brings_files_and_trees_from_20_hosts() {
    let hosts = Hosts::start();
    let dir = conn_testkit::socket_dir();
    let names = names("fleet", 20, 2);
    let config = fleet_config(&hosts.server, dir.path(), &names);
    let mut want = Vec::new();
    for (i, host) in names.iter().enumerate() {
        let home = hosts.dir(host);
        let seed = i as u64 + 1;
        write(
            &home.join("data.bin"),
            &pseudo_random(100_000 + 997 * i, seed),
            0o644,
        );
        fs::create_dir_all(home.join("tree/sub")).unwrap();
        write(
            &home.join("tree/run.sh"),
            format!("#!/bin/sh\necho {host}\n").as_bytes(),
            0o755,
        );
        write(
            &home.join("tree/sub/notes.txt"),
            &pseudo_random(70_000, seed << 8),
            0o644,
        );
        write(&home.join("tree/sub/empty"), b"", 0o644);
        want.push((host.clone(), home));
    }
    for mux in ["native", "process"] {
        let dest = tempfile::tempdir().unwrap();
        let out = run_conn(rcopy_args(
            &config,
            dir.path(),
            &["-r", "--mux", mux, "-w", "fleet[01-20]"],
            &["data.bin", "tree"],
            dest.path(),
        ));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mux}: {stderr}");
        assert!(stderr.is_empty(), "{mux}: {stderr}");
        let said: Vec<String> = names
            .iter()
            .map(|h| format!("{h}: fetched 2 path(s) into {}", dest.path().display()))
            .collect();
        assert_eq!(sorted_lines(&out.stdout), said, "{mux}");
        let mut expected_tree = Vec::new();
        for (host, home) in &want {
            let file = dest.path().join(format!("data.bin.{host}"));
            assert_eq!(
                sha(&file),
                sha(&home.join("data.bin")),
                "{mux}: {host}'s file"
            );
            let tree = dest.path().join(format!("tree.{host}"));
            for rel in ["run.sh", "sub/notes.txt", "sub/empty"] {
                assert_eq!(
                    sha(&tree.join(rel)),
                    sha(&home.join("tree").join(rel)),
                    "{mux}: {host}'s {rel}"
                );
            }
            let base = format!("tree.{host}");
            expected_tree.push(format!("data.bin.{host}"));
            for rel in ["", "/run.sh", "/sub", "/sub/empty", "/sub/notes.txt"] {
                expected_tree.push(format!("{base}{rel}"));
            }
        }
        expected_tree.sort();
        assert_eq!(
            tree(dest.path()),
            expected_tree,
            "{mux}: only the final names"
        );
    }
}

/// The mode (permission bits) and modification time of `path`.
fn mode_time(path: &Path) -> (u32, u64) {
    let meta = fs::metadata(path).unwrap();
    (meta.permissions().mode() & 0o7777, meta.mtime() as u64)
}

/// Sets `path`'s modification time to [`OLD`] (a directory too: it opens as a file).
fn make_old(path: &Path) {
    File::open(path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(OLD))
        .unwrap();
}

/// This process's umask (from /proc: setting it to read it would race with other tests).
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let value = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("a Umask line");
    u32::from_str_radix(value.trim(), 8).unwrap()
}

/// Files and a tree owned by the login account, with unusual modes (group-writable ones too)
/// and an old modification time: `--preserve` brings both for the file and every entry of the
/// tree; without it the file keeps its mode and gets the time of arrival, and the tree's
/// entries get their modes less the local umask, and the time of arrival.
#[test]
fn preserve_keeps_modes_and_modification_times() {
    let hosts = Hosts::start();
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&hosts.server, dir.path(), &names("fleet", 2, 2));
    let (uid, gid) = hosts.login_ids();
    let mut entries = Vec::new();
    for host in ["fleet01", "fleet02"] {
        let home = hosts.dir(host);
        write(&home.join("conf"), format!("{host}\n").as_bytes(), 0o660);
        fs::create_dir_all(home.join("t/private")).unwrap();
        write(&home.join("t/tool"), b"#!/bin/sh\n", 0o770);
        write(&home.join("t/private/key"), b"secret\n", 0o620);
        fs::set_permissions(home.join("t/private"), fs::Permissions::from_mode(0o710)).unwrap();
        fs::set_permissions(home.join("t"), fs::Permissions::from_mode(0o775)).unwrap();
        for rel in ["conf", "t", "t/tool", "t/private", "t/private/key"] {
            std::os::unix::fs::chown(home.join(rel), Some(uid), Some(gid)).unwrap();
        }
        // Children first: touching an entry changes its directory's time.
        for rel in ["conf", "t/tool", "t/private/key", "t/private", "t"] {
            make_old(&home.join(rel));
        }
        entries.push(home);
    }
    let umask = umask();
    assert_ne!(
        umask & 0o020,
        0,
        "the test needs a umask without group write (022, 002…)"
    );
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for preserve in [true, false] {
        let dest = tempfile::tempdir().unwrap();
        let mut extra = vec!["-r", "-w", "fleet[01-02]"];
        if preserve {
            extra.push("--preserve");
        }
        let out = run_conn(rcopy_args(
            &config,
            dir.path(),
            &extra,
            &["conf", "t"],
            dest.path(),
        ));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        for (host, home) in ["fleet01", "fleet02"].iter().zip(&entries) {
            let file = dest.path().join(format!("conf.{host}"));
            assert_eq!(fs::read(&file).unwrap(), format!("{host}\n").as_bytes());
            let (mode, time) = mode_time(&file);
            assert_eq!(mode, 0o660, "the file's mode, preserve={preserve}");
            if preserve {
                assert_eq!(time, OLD, "{host}'s file time");
            } else {
                assert!(time >= before, "{host}'s file: the time of arrival, {time}");
            }
            let t = dest.path().join(format!("t.{host}"));
            for (rel, source_mode) in [
                ("", 0o775),
                ("tool", 0o770),
                ("private", 0o710),
                ("private/key", 0o620),
            ] {
                let got = mode_time(&t.join(rel));
                let source = mode_time(&home.join("t").join(rel));
                assert_eq!(source, (source_mode, OLD), "the source {rel}");
                if preserve {
                    assert_eq!(got, source, "{host}'s t/{rel} with --preserve");
                } else {
                    assert_eq!(
                        got.0,
                        source_mode & !umask,
                        "{host}'s t/{rel}: its mode less the umask"
                    );
                    assert!(got.1 >= before, "{host}'s t/{rel}: the time of arrival");
                }
            }
        }
    }
}

/// Three hosts, the second without the file: that host fails (its summary line names the file
/// and the reason), the others bring theirs, exit 1; a directory without `-r`, and a tree the
/// host cannot read whole (tar exits 2 there), are likewise that host's error, exit 1 (never
/// 2, which is a usage error); nothing partial is left.
#[test]
fn a_missing_remote_file_is_that_host_s_error() {
    let hosts = Hosts::start();
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&hosts.server, dir.path(), &names("fleet", 3, 2));
    for host in ["fleet01", "fleet02", "fleet03"] {
        let home = hosts.dir(host);
        if host != "fleet02" {
            write(
                &home.join("report.txt"),
                format!("from {host}\n").as_bytes(),
                0o644,
            );
        } else {
            fs::create_dir_all(home.join("report.txt.d")).unwrap();
        }
        // Only root may read `locked/key`; the daemon logs in as another account.
        fs::create_dir_all(home.join("locked")).unwrap();
        write(&home.join("locked/key"), b"k", 0o600);
    }
    let dest = tempfile::tempdir().unwrap();
    let out = run_conn(rcopy_args(
        &config,
        dir.path(),
        &["-w", "fleet[01-03]"],
        &["report.txt"],
        dest.path(),
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let said = |h: &str| format!("{h}: fetched 1 path(s) into {}", dest.path().display());
    assert_eq!(
        sorted_lines(&out.stdout),
        [said("fleet01"), said("fleet03")]
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert_eq!(
        lines[0],
        "conn: fleet02: fetching fleet02:report.txt: No such file or directory"
    );
    assert_eq!(lines[1], "conn: 1 of 3 hosts failed");
    assert_eq!(
        tree(dest.path()),
        ["report.txt.fleet01", "report.txt.fleet03"]
    );
    for host in ["fleet01", "fleet03"] {
        assert_eq!(
            fs::read_to_string(dest.path().join(format!("report.txt.{host}"))).unwrap(),
            format!("from {host}\n")
        );
    }

    let dest = tempfile::tempdir().unwrap();
    let out = run_conn(rcopy_args(
        &config,
        dir.path(),
        &["-w", "fleet[02-03]"],
        &["report.txt.d"],
        dest.path(),
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("conn: fleet02: ") && stderr.contains("give -r"),
        "{stderr}"
    );
    assert!(tree(dest.path()).is_empty(), "{:?}", tree(dest.path()));

    let out = run_conn(rcopy_args(
        &config,
        dir.path(),
        &["-r", "-w", "fleet01"],
        &["locked"],
        dest.path(),
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("conn: fleet01: fetching fleet01:locked: tar: ")
            && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(tree(dest.path()).is_empty(), "{:?}", tree(dest.path()));
}

/// Kills conn (SIGKILL) while it fetches a big file from one host with `--mux mux`. To be sure
/// the kill lands mid-transfer, every ssh process of the socket directory (the master, and
/// with `--mux process` the `ssh -S` client) is stopped (SIGSTOP) once the local temporary
/// file has some bytes, conn is killed, and they are continued; the test then waits until
/// the remote `cat` has ended. Returns what the destination holds (its temporaries removed
/// afterwards) and how far the transfer had got.
fn kill_an_rcopy(mux: &str) -> (Vec<String>, u64, u64) {
    const SIZE: u64 = 512 << 20;
    let hosts = Hosts::start();
    let dir = conn_testkit::socket_dir();
    let sockets = dir.path().display().to_string();
    let config = fleet_config(&hosts.server, dir.path(), &names("fleet", 1, 2));
    // A name no other process has in its command line: the remote `cat` is found by it.
    let name = format!(
        "big-{}.bin",
        hosts.root.path().file_name().unwrap().to_string_lossy()
    );
    File::create(hosts.dir("fleet01").join(&name))
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    // Warm the master first, so that its pid is known before the fetch starts.
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["--mux", mux, "-w", "fleet01", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let masters = procfs::find("ssh", &sockets);
    assert_eq!(masters.len(), 1, "one master for the socket directory");

    let dest = tempfile::tempdir().unwrap();
    let argv = rcopy_args(
        &config,
        dir.path(),
        &["--mux", mux, "-w", "fleet01"],
        &[&name],
        dest.path(),
    );
    let conn = Running::spawn(&argv, Duration::from_secs(300), |c| {
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    });
    let prefix = format!(".{name}.fleet01.conn-");
    let temp_size = || -> Option<u64> {
        fs::read_dir(dest.path())
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .and_then(|e| e.metadata().ok())
            .map(|m| m.len())
    };
    assert!(
        wait_until(WAIT, || temp_size().is_some_and(|n| n > 0)),
        "the transfer never started into a temporary file: {:?}",
        tree(dest.path())
    );
    let mut stopped = masters.clone();
    stopped.extend(
        procfs::find("ssh", &sockets)
            .into_iter()
            .filter(|p| !masters.contains(p)),
    );
    for &pid in &stopped {
        // The test's own ssh processes (found by their socket directory).
        send(pid as libc::pid_t, Signal::STOP).expect("stop an ssh process");
    }
    let sent = temp_size().unwrap_or(0);
    assert!(
        sent < SIZE / 2,
        "the fetch got too far ({sent} bytes) before its ssh processes stopped: cannot test the \
         kill"
    );
    conn.signal(Signal::KILL);
    let end = conn.wait(WAIT);
    assert_eq!(end.signal, Some(libc::SIGKILL), "{end:?}");
    for &pid in &stopped {
        send(pid as libc::pid_t, Signal::CONT).expect("continue an ssh process");
    }
    assert!(
        wait_until(Duration::from_secs(120), || procfs::find("cat", &name)
            .is_empty()),
        "the remote cat did not end after conn was killed"
    );
    let left = tree(dest.path());
    let final_size = temp_size().unwrap_or(0);
    for entry in &left {
        if entry.starts_with(&prefix) {
            fs::remove_file(dest.path().join(entry)).unwrap();
        }
    }
    (left, sent, final_size)
}

/// With either back end, a fetch killed midway leaves no file under its final name
/// (`big-….bin.fleet01`), whatever the ssh processes do after conn's death: the rename is
/// conn's, and conn is gone. Only the dot-prefixed temporary remains (the test removes it).
#[test]
fn a_killed_rcopy_leaves_nothing_under_the_final_name() {
    for mux in ["native", "process"] {
        let (left, sent, temp) = kill_an_rcopy(mux);
        eprintln!(
            "{mux}: killed after {sent} bytes had arrived; the temporary then held {temp}; left: {left:?}"
        );
        assert_eq!(left.len(), 1, "{mux}: {left:?}");
        assert!(
            left[0].starts_with(".big-") && left[0].contains(".bin.fleet01.conn-"),
            "{mux}: {left:?}"
        );
    }
}
