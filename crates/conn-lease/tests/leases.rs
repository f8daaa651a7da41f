//! conn-lease against the real filesystem, in temporary directories under `/tmp` (short, so
//! that socket paths stay under the Unix socket limit).
//!
//! Child processes (crash recovery, stress) are this test binary run again for the `#[ignore]`d
//! helper `child_process_entry` (`conn_testkit::child`), with an environment variable naming
//! their role.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use conn_lease::{
    EntryState, LeaseError, LeaseManager, MAX_CONTROL_PATH_LEN, MAX_ROOT_LEN, MAX_SOCKET_PATH_LEN,
    NAME_LEN, check_root, inspect, namespace_dir_name, prune,
};
use tempfile::TempDir;

const TTL: Duration = Duration::from_secs(3600);
const ROLE: &str = "CONN_LEASE_TEST_ROLE";
const ROOT: &str = "CONN_LEASE_TEST_ROOT";

// ---------------------------------------------------------------------------------------------
// helpers

fn tmp() -> TempDir {
    tempfile::Builder::new()
        .prefix("cl")
        .tempdir_in("/tmp")
        .unwrap()
}

fn manager(root: &Path, namespace: &str) -> LeaseManager {
    LeaseManager::new(root, namespace, TTL).unwrap()
}

/// A regular file stands in for a socket: the lease code only looks at existence and mtime.
fn make_socket(path: &Path) {
    File::create(path).unwrap();
}

/// Sets `path`'s mtime `by` into the past (through the path: a socket cannot be opened).
fn age(path: &Path, by: Duration) {
    let when = SystemTime::now() - by;
    let secs = when
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = rustix::fs::Timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: at,
        last_modification: at,
    };
    if let Err(e) =
        rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::empty())
    {
        panic!("utimensat {}: {e}", path.display());
    }
}

/// Puts a lock file `name` into `folder` ("free" or "used") as another process would have.
fn plant(m: &LeaseManager, folder: &str, name: &str) -> PathBuf {
    let path = m.namespace_dir().join(folder).join(name);
    File::create(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn is_locked(path: &Path) -> bool {
    match File::open(path).unwrap().try_lock() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(e)) => panic!("{e}"),
    }
}

/// CLOCK_MONOTONIC in nanoseconds: system-wide on Linux, so readings from different processes
/// are comparable.
fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn spawn_child(role: &str, envs: &[(&str, &str)], stdin: Stdio, stdout: Stdio) -> Child {
    conn_testkit::child::command("child_process_entry")
        .env(ROLE, role)
        .envs(envs.iter().copied())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Entry point of the child processes that `crashed_holder_is_salvaged_from_used` and
/// `stress_no_name_is_ever_held_twice` start.
#[test]
#[ignore = "child process of the crash and stress tests, which run it"]
fn child_process_entry() {
    conn_testkit::child::helper_start();
    match env::var(ROLE).as_deref() {
        Ok("crash") => crash_child(),
        Ok("stress") => stress_child(),
        Ok(other) => panic!("unknown child role {other}"),
        Err(_) => panic!("{ROLE} is not set"),
    }
}

// ---------------------------------------------------------------------------------------------
// acquire / release

#[test]
fn acquire_release_round_trip() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    let m = manager(&root, "src#alice@host#default");
    assert_eq!(
        m.namespace_dir(),
        root.join(namespace_dir_name("src#alice@host#default"))
    );
    assert_eq!(m.socket_dir(), m.namespace_dir().join("c"));

    let mut lease = m.acquire().unwrap();
    let name = lease.name().to_owned();
    assert_eq!(name.len(), NAME_LEN);
    assert!(name.starts_with('s'), "{name}");
    assert_eq!(lease.socket_path(), m.socket_dir().join(&name));
    assert_eq!(
        lease.used_path(),
        m.namespace_dir().join("used").join(&name)
    );
    assert_eq!(
        lease.free_path(),
        m.namespace_dir().join("free").join(&name)
    );
    assert!(lease.is_held());
    assert!(lease.used_path().is_file());
    assert!(!lease.free_path().exists());
    assert!(is_locked(lease.used_path()));
    assert_eq!(mode(lease.used_path()), 0o600);

    lease.release().unwrap();
    assert!(!lease.is_held());
    assert!(!lease.used_path().exists());
    assert!(lease.free_path().is_file());
    assert!(!is_locked(lease.free_path()));
    // Idempotent.
    lease.release().unwrap();
    assert!(lease.free_path().is_file());
}

#[test]
fn release_with_missing_lock_file_is_harmless() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    let mut lease = m.acquire().unwrap();
    fs::remove_file(lease.used_path()).unwrap();
    lease.release().unwrap();
    lease.release().unwrap();
    assert!(!lease.free_path().exists());
}

#[test]
fn second_acquire_while_first_is_held_gets_another_name() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    let m = manager(&root, "ns");
    let other = manager(&root, "ns"); // e.g. another pool in the same process
    let a = m.acquire().unwrap();
    make_socket(a.socket_path());
    let b = m.acquire().unwrap();
    let c = other.acquire().unwrap();
    let names: BTreeSet<_> = [a.name(), b.name(), c.name()].into_iter().collect();
    assert_eq!(names.len(), 3);
    assert_eq!(names_in(&m.namespace_dir().join("used")).len(), 3);
}

#[test]
fn free_is_preferred_over_used_then_used_is_salvaged() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    plant(&m, "used", "sUUUUUUUUUUU"); // unlocked: its holder died
    make_socket(&m.socket_dir().join("sUUUUUUUUUUU"));
    plant(&m, "free", "sFFFFFFFFFFF");
    make_socket(&m.socket_dir().join("sFFFFFFFFFFF"));

    let first = m.acquire().unwrap();
    assert_eq!(first.name(), "sFFFFFFFFFFF");
    let second = m.acquire().unwrap();
    assert_eq!(second.name(), "sUUUUUUUUUUU");
    assert!(second.used_path().exists());
    let third = m.acquire().unwrap();
    assert_ne!(third.name(), first.name());
    assert_ne!(third.name(), second.name());
}

#[test]
fn lease_dropped_without_release_is_reacquirable() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    let lease = m.acquire().unwrap();
    make_socket(lease.socket_path());
    let (name, used, free) = (
        lease.name().to_owned(),
        lease.used_path().to_owned(),
        lease.free_path().to_owned(),
    );
    drop(lease);
    assert!(!used.exists());
    assert!(free.exists());
    assert!(!is_locked(&free), "drop must close the fd and so unlock");
    let again = m.acquire().unwrap();
    assert_eq!(again.name(), name);
}

#[test]
fn touch_socket_sets_mtime_and_tolerates_a_missing_socket() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    let lease = m.acquire().unwrap();
    lease.touch_socket().unwrap(); // missing: fine
    assert!(!lease.socket_path().exists());

    make_socket(lease.socket_path());
    age(lease.socket_path(), Duration::from_secs(7200));
    lease.touch_socket().unwrap();
    let modified = fs::metadata(lease.socket_path())
        .unwrap()
        .modified()
        .unwrap();
    let behind = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    assert!(behind < Duration::from_secs(60), "{behind:?}");

    // A symlink is touched itself, never followed.
    let target = tmp.path().join("target");
    File::create(&target).unwrap();
    age(&target, Duration::from_secs(7200));
    fs::remove_file(lease.socket_path()).unwrap();
    symlink(&target, lease.socket_path()).unwrap();
    lease.touch_socket().unwrap();
    let target_age = SystemTime::now()
        .duration_since(fs::metadata(&target).unwrap().modified().unwrap())
        .unwrap();
    assert!(target_age > Duration::from_secs(7000), "{target_age:?}");
}

#[test]
fn acquire_recreates_a_namespace_removed_meanwhile() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    fs::remove_dir_all(m.namespace_dir()).unwrap();
    let lease = m.acquire().unwrap();
    assert!(lease.used_path().exists());
    assert_eq!(mode(m.namespace_dir()), 0o700);
}

// ---------------------------------------------------------------------------------------------
// pruning

#[test]
fn stale_candidates_are_pruned_when_met() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    let stale = TTL + Duration::from_secs(60);
    // free/, no socket
    plant(&m, "free", "sAAAAAAAAAAA");
    // free/, socket older than the TTL
    plant(&m, "free", "sBBBBBBBBBBB");
    make_socket(&m.socket_dir().join("sBBBBBBBBBBB"));
    age(&m.socket_dir().join("sBBBBBBBBBBB"), stale);
    // ... with its master's log file beside it, which goes with it
    let log = m.socket_dir().join("sBBBBBBBBBBB.log");
    File::create(&log).unwrap();
    // used/ (abandoned), socket older than the TTL
    plant(&m, "used", "sCCCCCCCCCCC");
    make_socket(&m.socket_dir().join("sCCCCCCCCCCC"));
    age(&m.socket_dir().join("sCCCCCCCCCCC"), stale);
    // used/ (abandoned), no socket
    plant(&m, "used", "sDDDDDDDDDDD");
    // free/, the socket is a symlink (to a fresh file): never handed to ssh
    plant(&m, "free", "sEEEEEEEEEEE");
    let target = tmp.path().join("target");
    File::create(&target).unwrap();
    symlink(&target, m.socket_dir().join("sEEEEEEEEEEE")).unwrap();

    let lease = m.acquire().unwrap();
    assert!(!lease.name().starts_with("sAAA"));
    for dir in ["free", "used", "c"] {
        let left = names_in(&m.namespace_dir().join(dir));
        let expected: BTreeSet<String> = if dir == "used" {
            [lease.name().to_owned()].into()
        } else {
            BTreeSet::new()
        };
        assert_eq!(left, expected, "{dir}/");
    }
    assert!(
        target.exists(),
        "a symlinked socket's target is never touched"
    );
    assert!(
        !log.exists(),
        "a pruned socket's log file is removed with it"
    );
    assert_eq!(
        lease.log_path(),
        m.socket_dir().join(format!("{}.log", lease.name()))
    );
}

#[test]
fn fresh_socket_keeps_its_entry() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    plant(&m, "free", "sFFFFFFFFFFF");
    let socket = m.socket_dir().join("sFFFFFFFFFFF");
    make_socket(&socket);
    age(&socket, TTL - Duration::from_secs(60));
    let lease = m.acquire().unwrap();
    assert_eq!(lease.name(), "sFFFFFFFFFFF");
    assert!(socket.exists());
}

#[test]
fn an_old_socket_that_something_listens_on_is_never_pruned() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    plant(&m, "free", "sLLLLLLLLLLL");
    let socket = m.socket_dir().join("sLLLLLLLLLLL");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    age(&socket, TTL + Duration::from_secs(3600));
    assert_eq!(
        m.prune().unwrap(),
        0,
        "a live master outlived our TTL: keep it"
    );
    let lease = m.acquire().unwrap();
    assert_eq!(lease.name(), "sLLLLLLLLLLL");
    assert!(socket.exists());
    drop(lease);
    drop(listener);
    // Now nobody listens and the old socket is stale, once every copy of the listener is
    // closed: a process that another test of this binary is spawning holds one from its fork
    // to its exec (the descriptor is close-on-exec), which under load can outlast the drop.
    assert!(
        conn_testkit::wait_until(Duration::from_secs(10), || {
            conn_lease::probe_socket(&socket) == conn_lease::SocketState::Stale
        }),
        "the socket still listens after its listener was dropped"
    );
    assert_eq!(m.prune().unwrap(), 1);
    assert!(!socket.exists());
}

#[test]
fn held_names_are_never_pruned() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    let held = m.acquire().unwrap(); // no socket at all
    let other = m.acquire().unwrap();
    assert_ne!(held.name(), other.name());
    assert!(held.used_path().exists());
    assert_eq!(m.prune().unwrap(), 0);
    assert!(held.used_path().exists());
}

#[test]
fn prune_removes_exactly_what_acquire_would() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    let m = manager(&root, "ns");
    let stale = TTL + Duration::from_secs(60);
    let held = m.acquire().unwrap();
    make_socket(held.socket_path());
    age(held.socket_path(), stale); // held: must survive even with a stale socket
    plant(&m, "free", "sAAAAAAAAAAA");
    plant(&m, "free", "sBBBBBBBBBBB");
    make_socket(&m.socket_dir().join("sBBBBBBBBBBB"));
    age(&m.socket_dir().join("sBBBBBBBBBBB"), stale);
    plant(&m, "used", "sCCCCCCCCCCC");
    make_socket(&m.socket_dir().join("sCCCCCCCCCCC"));
    age(&m.socket_dir().join("sCCCCCCCCCCC"), stale);
    plant(&m, "free", "sFFFFFFFFFFF");
    make_socket(&m.socket_dir().join("sFFFFFFFFFFF"));
    plant(&m, "used", "sUUUUUUUUUUU");
    make_socket(&m.socket_dir().join("sUUUUUUUUUUU"));

    assert_eq!(prune(&root, TTL).unwrap(), 3, "sAAA…, sBBB…, sCCC…");
    assert_eq!(
        names_in(&m.namespace_dir().join("used")),
        [held.name(), "sUUUUUUUUUUU"].map(String::from).into()
    );
    assert_eq!(
        names_in(&m.namespace_dir().join("free")),
        ["sFFFFFFFFFFF"].map(String::from).into()
    );
    assert_eq!(
        names_in(m.socket_dir()),
        [held.name(), "sFFFFFFFFFFF", "sUUUUUUUUUUU"]
            .map(String::from)
            .into()
    );
    assert_eq!(m.prune().unwrap(), 0);
    assert!(is_locked(held.used_path()));
    assert_eq!(prune(&tmp.path().join("missing"), TTL).unwrap(), 0);
}

#[test]
fn inspect_reports_states_without_changing_anything() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    assert!(inspect(&root).unwrap().is_empty());
    let m = manager(&root, "ns");
    let _other = manager(&root, "other");
    plant(&m, "free", "sFFFFFFFFFFF");
    make_socket(&m.socket_dir().join("sFFFFFFFFFFF"));
    plant(&m, "used", "sUUUUUUUUUUU");
    make_socket(&m.socket_dir().join("sOOOOOOOOOOO")); // no lock file
    let held = m.acquire().unwrap(); // takes sFFF…
    assert_eq!(held.name(), "sFFFFFFFFFFF");
    plant(&m, "free", "sGGGGGGGGGGG");

    let before: Vec<_> = ["free", "used", "c"]
        .map(|d| names_in(&m.namespace_dir().join(d)))
        .into();
    let reports = inspect(&root).unwrap();
    assert_eq!(reports.len(), 2);
    let report = reports.iter().find(|r| r.dir == m.namespace_dir()).unwrap();
    let states: Vec<_> = report
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.state, e.socket_modified.is_some()))
        .collect();
    assert_eq!(
        states,
        [
            ("sFFFFFFFFFFF", EntryState::Held, true),
            ("sGGGGGGGGGGG", EntryState::Free, false),
            ("sUUUUUUUUUUU", EntryState::Abandoned, false),
        ]
    );
    assert_eq!(report.orphan_sockets, ["sOOOOOOOOOOO"]);
    let after: Vec<_> = ["free", "used", "c"]
        .map(|d| names_in(&m.namespace_dir().join(d)))
        .into();
    assert_eq!(before, after);
    assert!(is_locked(held.used_path()), "still ours after the probe");
    assert!(!is_locked(&m.namespace_dir().join("used/sUUUUUUUUUUU")));
}

// ---------------------------------------------------------------------------------------------
// security

fn expect_err(root: &Path, namespace: &str) -> LeaseError {
    match LeaseManager::new(root, namespace, TTL) {
        Ok(m) => panic!("expected an error, got {m:?}"),
        Err(e) => e,
    }
}

fn private_dir(path: &Path) {
    fs::create_dir(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn symlinked_directories_are_rejected() {
    let tmp = tmp();
    let elsewhere = tmp.path().join("e");
    private_dir(&elsewhere);

    // The root.
    let link = tmp.path().join("l");
    symlink(&elsewhere, &link).unwrap();
    let err = expect_err(&link, "ns");
    assert!(
        matches!(&err, LeaseError::Symlink { path } if *path == link),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{} must not be a symlink: remove the link, or choose a socket directory without one",
            link.display()
        )
    );

    // The namespace directory.
    let root = tmp.path().join("r");
    private_dir(&root);
    let ns = root.join(namespace_dir_name("ns"));
    symlink(&elsewhere, &ns).unwrap();
    let err = expect_err(&root, "ns");
    assert!(
        matches!(&err, LeaseError::Symlink { path } if *path == ns),
        "{err:?}"
    );

    // Each sub-directory.
    for sub in ["c", "free", "used"] {
        let root = tmp.path().join(format!("r{sub}"));
        let m = manager(&root, "ns");
        let path = m.namespace_dir().join(sub);
        fs::remove_dir(&path).unwrap();
        symlink(&elsewhere, &path).unwrap();
        let err = expect_err(&root, "ns");
        assert!(
            matches!(&err, LeaseError::Symlink { path: p } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains("must not be a symlink"));
    }
    assert!(
        names_in(&elsewhere).is_empty(),
        "nothing was created through a link"
    );
}

#[test]
fn wrong_modes_are_rejected_and_left_alone() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let err = expect_err(&root, "ns");
    assert!(
        matches!(err, LeaseError::WrongMode { mode: 0o755, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{} has mode 0755, not 0700: run `chmod 700 {}` (other users must not reach the ssh \
             control sockets inside)",
            root.display(),
            root.display()
        )
    );
    assert_eq!(mode(&root), 0o755, "an existing directory is never changed");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();

    let m = manager(&root, "ns");
    for (dir, bad) in [
        (m.namespace_dir().to_owned(), 0o750),
        (m.namespace_dir().join("used"), 0o701),
        (m.socket_dir().to_owned(), 0o1700),
    ] {
        fs::set_permissions(&dir, fs::Permissions::from_mode(bad)).unwrap();
        let err = expect_err(&root, "ns");
        assert!(
            matches!(&err, LeaseError::WrongMode { path, mode } if *path == dir && *mode == bad),
            "{err:?}"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    }
    manager(&root, "ns");
}

#[test]
fn wrong_owner_and_non_directories_are_rejected() {
    let tmp = tmp();
    let file = tmp.path().join("f");
    File::create(&file).unwrap();
    let err = expect_err(&file, "ns");
    assert!(
        matches!(&err, LeaseError::NotADirectory { path } if *path == file),
        "{err:?}"
    );

    if !rustix::process::geteuid().is_root() {
        println!(
            "skipped (the rest of this test): the wrong-owner check needs root, to chown a \
             directory to another user"
        );
        return;
    }
    let root = tmp.path().join("r");
    private_dir(&root);
    std::os::unix::fs::chown(&root, Some(1000), None).unwrap();
    let err = expect_err(&root, "ns");
    assert!(
        matches!(
            err,
            LeaseError::WrongOwner {
                uid: 1000,
                expected: 0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{} is owned by uid 1000, not 0:", root.display())),
        "{err}"
    );
}

#[test]
fn check_root_judges_an_existing_root_as_new_would_and_creates_nothing() {
    let tmp = tmp();
    let missing = tmp.path().join("missing");
    assert!(!check_root(&missing).unwrap());
    assert!(!missing.exists(), "nothing created");

    let root = tmp.path().join("r");
    private_dir(&root);
    assert!(check_root(&root).unwrap());

    let link = tmp.path().join("l");
    symlink(&root, &link).unwrap();
    let err = check_root(&link).unwrap_err();
    assert!(
        matches!(&err, LeaseError::Symlink { path } if *path == link),
        "{err:?}"
    );
    let file = tmp.path().join("f");
    File::create(&file).unwrap();
    let err = check_root(&file).unwrap_err();
    assert!(matches!(err, LeaseError::NotADirectory { .. }), "{err:?}");
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    let err = check_root(&root).unwrap_err();
    assert!(
        matches!(err, LeaseError::WrongMode { mode: 0o755, .. }),
        "{err:?}"
    );
    assert_eq!(mode(&root), 0o755, "nothing changed");

    // Someone else's directory: as root, one chowned away; as anyone else, root's own `/`
    // (the owner is checked before the mode).
    let (theirs, owner) = if rustix::process::geteuid().is_root() {
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&root, Some(65534), None).unwrap();
        (root.clone(), 65534)
    } else {
        (PathBuf::from("/"), 0)
    };
    let err = check_root(&theirs).unwrap_err();
    assert!(
        matches!(&err, LeaseError::WrongOwner { path, uid, .. } if *path == theirs && *uid == owner),
        "{err:?}"
    );
}

#[test]
fn created_directories_are_0700() {
    let tmp = tmp();
    let root = tmp.path().join("a/r"); // the missing parent is created too
    let m = manager(&root, "ns");
    for dir in [
        tmp.path().join("a"),
        root.clone(),
        m.namespace_dir().to_owned(),
        m.socket_dir().to_owned(),
        m.namespace_dir().join("free"),
        m.namespace_dir().join("used"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
}

#[test]
fn symlinked_and_special_lock_files_are_skipped_never_followed() {
    let tmp = tmp();
    let m = manager(&tmp.path().join("r"), "ns");
    let target = tmp.path().join("target");
    fs::write(&target, b"precious").unwrap();
    for (folder, name) in [("free", "sLinkFreeLnk"), ("used", "sLinkUsedLnk")] {
        symlink(&target, m.namespace_dir().join(folder).join(name)).unwrap();
        make_socket(&m.socket_dir().join(name)); // would make it a good candidate
    }
    // A FIFO in free/ must not block acquire.
    let fifo = m.namespace_dir().join("free/sFifoFifoFif");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    make_socket(&m.socket_dir().join("sFifoFifoFif"));

    let lease = m.acquire().unwrap();
    assert!(!["sLinkFreeLnk", "sLinkUsedLnk", "sFifoFifoFif"].contains(&lease.name()));
    assert!(!is_locked(&target), "the link's target was never locked");
    assert_eq!(fs::read(&target).unwrap(), b"precious");
    for path in ["free/sLinkFreeLnk", "used/sLinkUsedLnk"] {
        let meta = fs::symlink_metadata(m.namespace_dir().join(path)).unwrap();
        assert!(meta.file_type().is_symlink(), "{path} left in place");
    }
    assert!(!m.namespace_dir().join("used/sLinkFreeLnk").exists());
    assert!(fifo.exists());
}

#[test]
fn socket_path_length_is_checked_before_anything_is_created() {
    let tmp = tmp();
    let base = tmp.path().as_os_str().len() + 1; // "<tmp>/"
    // socket path = root + "/" + 43 + "/c/" + 12 = root + 59 bytes.
    let max_root = MAX_CONTROL_PATH_LEN - 59;
    assert_eq!(MAX_ROOT_LEN, max_root);
    assert!(
        base < max_root,
        "temp dir {} too long for this test",
        tmp.path().display()
    );

    let fits = tmp.path().join("x".repeat(max_root - base));
    assert_eq!(fits.as_os_str().len(), max_root);
    let m = manager(&fits, "ns");
    let lease = m.acquire().unwrap();
    assert_eq!(lease.socket_path().as_os_str().len(), MAX_CONTROL_PATH_LEN);
    // ssh binds `<ControlPath>.<16 chars>` first: that must fit, and one byte more must not,
    // which shows that MAX_SOCKET_PATH_LEN is this platform's limit.
    let bind_path = format!("{}.0123456789abcdef", lease.socket_path().display());
    assert_eq!(bind_path.len(), MAX_SOCKET_PATH_LEN);
    drop(UnixListener::bind(&bind_path).unwrap());
    assert!(UnixListener::bind(format!("{bind_path}X")).is_err());

    let too_long = tmp.path().join("y".repeat(max_root - base + 1));
    let err = expect_err(&too_long, "ns");
    let sample = too_long
        .join(namespace_dir_name("ns"))
        .join("c")
        .join("s".repeat(NAME_LEN));
    assert!(
        matches!(&err, LeaseError::SocketPathTooLong { path, len, limit, max_root_len }
            if *path == sample && *len == MAX_CONTROL_PATH_LEN + 1
                && *limit == MAX_CONTROL_PATH_LEN && *max_root_len == max_root),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "ControlPath {} is {} bytes, over the {}-byte limit (the {}-byte Unix socket limit",
            sample.display(),
            MAX_CONTROL_PATH_LEN + 1,
            MAX_CONTROL_PATH_LEN,
            MAX_SOCKET_PATH_LEN
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(&format!(
            ": choose a shorter socket directory, at most {max_root} bytes"
        )),
        "{msg}"
    );
    assert!(!too_long.exists(), "nothing created for a rejected root");
}

// ---------------------------------------------------------------------------------------------
// namespaces

#[test]
fn namespaces_never_share_names_or_folders() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    let src = manager(&root, "src#alice@host#default");
    let dst = manager(&root, "dst#alice@host#default");
    assert_ne!(src.namespace_dir(), dst.namespace_dir());
    assert_eq!(src.namespace_dir().parent(), Some(root.as_path()));
    assert_eq!(dst.namespace_dir().parent(), Some(root.as_path()));

    let mut src_names = BTreeSet::new();
    let mut dst_names = BTreeSet::new();
    for _ in 0..4 {
        let mut a = src.acquire().unwrap();
        make_socket(a.socket_path());
        let mut b = dst.acquire().unwrap();
        make_socket(b.socket_path());
        assert!(a.used_path().starts_with(src.namespace_dir()));
        assert!(b.used_path().starts_with(dst.namespace_dir()));
        assert!(b.socket_path().starts_with(dst.socket_dir()));
        src_names.insert(a.name().to_owned());
        dst_names.insert(b.name().to_owned());
        a.release().unwrap();
        // src's free name is not visible to dst.
        let c = dst.acquire().unwrap();
        assert_ne!(c.name(), a.name());
        dst_names.insert(c.name().to_owned());
        drop(c);
        b.release().unwrap();
    }
    assert!(src_names.is_disjoint(&dst_names));
    for (m, mine, theirs) in [
        (&src, &src_names, &dst_names),
        (&dst, &dst_names, &src_names),
    ] {
        for dir in ["c", "free", "used"] {
            let present = names_in(&m.namespace_dir().join(dir));
            assert!(present.is_subset(mine), "{dir}: {present:?}");
            assert!(present.is_disjoint(theirs));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// crash recovery

fn crash_child() {
    let m = manager(Path::new(&env::var(ROOT).unwrap()), "crash");
    let lease = m.acquire().unwrap();
    // A real socket, as an ssh master would leave behind.
    let _listener = UnixListener::bind(lease.socket_path()).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "LEASE {}", lease.name()).unwrap();
    out.flush().unwrap();
    // Wait to be killed. Should the parent die first, our stdin reaches EOF and we exit.
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink).unwrap();
}

#[test]
fn crashed_holder_is_salvaged_from_used() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    let mut child = spawn_child(
        "crash",
        &[(ROOT, root.to_str().unwrap())],
        Stdio::piped(),
        Stdio::piped(),
    );
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let name = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("LEASE ").map(str::to_owned))
        .expect("the child exited without reporting a lease");

    let m = manager(&root, "crash");
    let used = m.namespace_dir().join("used").join(&name);
    // While the child lives its name is held: we get another one, and keep it.
    let mine = m.acquire().unwrap();
    assert_ne!(mine.name(), name);
    assert!(is_locked(&used));

    child.kill().unwrap(); // SIGKILL: no destructor, no release
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(rustix::process::Signal::KILL.as_raw())
    );

    // The crash left the lock file in used/, unlocked, and the socket in c/.
    assert!(used.exists());
    assert!(!is_locked(&used));
    let report = inspect(&root).unwrap();
    let entry = report[0].entries.iter().find(|e| e.name == name).unwrap();
    assert_eq!(entry.state, EntryState::Abandoned);

    let salvaged = m.acquire().unwrap();
    assert_eq!(
        salvaged.name(),
        name,
        "the crashed child's name is salvaged"
    );
    assert_eq!(salvaged.used_path(), used);
    assert!(salvaged.socket_path().exists(), "salvage keeps the socket");
    assert!(is_locked(&used));
}

// ---------------------------------------------------------------------------------------------
// stress

const PROCESSES: usize = 8;
const THREADS: usize = 4;
const RUN: Duration = Duration::from_secs(2);

/// One lease, as its holder recorded it. `[start, end]` lies inside the time the lock was
/// held (taken after `acquire` returned, before `release` was called); `[outer_start,
/// outer_end]` contains it (taken before calling `acquire`, after `release` returned).
struct Record {
    name: String,
    pid: u32,
    tid: usize,
    outer_start: u64,
    start: u64,
    end: u64,
    outer_end: u64,
    exclusive: bool,
}

fn stress_child() {
    let root = PathBuf::from(env::var(ROOT).unwrap());
    let records = PathBuf::from(env::var("CONN_LEASE_TEST_RECORDS").unwrap());
    let markers = PathBuf::from(env::var("CONN_LEASE_TEST_MARKERS").unwrap());
    let deadline: u64 = env::var("CONN_LEASE_TEST_DEADLINE")
        .unwrap()
        .parse()
        .unwrap();
    let m = manager(&root, "stress");
    let pid = std::process::id();
    thread::scope(|s| {
        for tid in 0..THREADS {
            let (m, records, markers) = (&m, &records, &markers);
            s.spawn(move || {
                let mut rng = (u64::from(pid) << 32) ^ (tid as u64 + 1) ^ mono_ns();
                let mut out = String::new();
                loop {
                    let outer_start = mono_ns();
                    if outer_start >= deadline {
                        break;
                    }
                    let mut lease = m.acquire().unwrap();
                    let start = mono_ns();
                    // Independent check 1: an exclusive marker per name while it is held.
                    let marker = markers.join(format!("{}.held", lease.name()));
                    let exclusive = match OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&marker)
                    {
                        Ok(_) => true,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                        Err(e) => panic!("{}: {e}", marker.display()),
                    };
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    if rng.is_multiple_of(8) {
                        // The "master" died: the next one to meet the name prunes it.
                        let _ = fs::remove_file(lease.socket_path());
                    } else if lease.socket_path().exists() {
                        lease.touch_socket().unwrap();
                    } else {
                        make_socket(lease.socket_path());
                    }
                    thread::sleep(Duration::from_micros(rng % 300));
                    if exclusive {
                        fs::remove_file(&marker).unwrap();
                    }
                    let end = mono_ns();
                    let name = lease.name().to_owned();
                    if rng % 16 == 1 {
                        drop(lease);
                    } else {
                        lease.release().unwrap();
                    }
                    let outer_end = mono_ns();
                    out.push_str(&format!(
                        "{name} {pid} {tid} {outer_start} {start} {end} {outer_end} {}\n",
                        u8::from(exclusive)
                    ));
                }
                fs::write(records.join(format!("{pid}-{tid}")), out).unwrap();
            });
        }
    });
}

#[test]
fn stress_no_name_is_ever_held_twice() {
    let tmp = tmp();
    let root = tmp.path().join("r");
    let records = tmp.path().join("records");
    let markers = tmp.path().join("markers");
    fs::create_dir(&records).unwrap();
    fs::create_dir(&markers).unwrap();
    let started = Instant::now();
    let deadline = (mono_ns() + RUN.as_nanos() as u64).to_string();
    let envs = [
        (ROOT, root.to_str().unwrap()),
        ("CONN_LEASE_TEST_RECORDS", records.to_str().unwrap()),
        ("CONN_LEASE_TEST_MARKERS", markers.to_str().unwrap()),
        ("CONN_LEASE_TEST_DEADLINE", deadline.as_str()),
    ];
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|_| spawn_child("stress", &envs, Stdio::null(), Stdio::null()))
        .collect();
    // Bounded wait: the children stop at the deadline; a hung one is killed.
    for child in &mut children {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > RUN + Duration::from_secs(30) {
                child.kill().unwrap();
                panic!("stress child {} hung", child.id());
            }
            thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "stress child failed: {status}");
    }
    let elapsed = started.elapsed();

    let mut all = Vec::new();
    for entry in fs::read_dir(&records).unwrap() {
        for line in fs::read_to_string(entry.unwrap().path()).unwrap().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            all.push(Record {
                name: f[0].to_owned(),
                pid: f[1].parse().unwrap(),
                tid: f[2].parse().unwrap(),
                outer_start: f[3].parse().unwrap(),
                start: f[4].parse().unwrap(),
                end: f[5].parse().unwrap(),
                outer_end: f[6].parse().unwrap(),
                exclusive: f[7] == "1",
            });
        }
    }
    let holders: BTreeSet<(u32, usize)> = all.iter().map(|r| (r.pid, r.tid)).collect();
    assert_eq!(
        holders.len(),
        PROCESSES * THREADS,
        "every holder got leases"
    );

    // Check 1: no marker was ever found present.
    let clashes: Vec<_> = all
        .iter()
        .filter(|r| !r.exclusive)
        .map(|r| &r.name)
        .collect();
    assert!(
        clashes.is_empty(),
        "{} times a name was held twice (marker found present), e.g. {:?}",
        clashes.len(),
        &clashes[..clashes.len().min(5)]
    );

    // Check 2: per name, the holding intervals (system-wide monotonic clock) never overlap.
    let mut by_name: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in &all {
        assert!(r.outer_start <= r.start && r.start <= r.end && r.end <= r.outer_end);
        by_name.entry(&r.name).or_default().push(r);
    }
    for (name, intervals) in &mut by_name {
        intervals.sort_by_key(|r| r.start);
        for w in intervals.windows(2) {
            assert!(
                w[1].start >= w[0].end,
                "{name} held by {}/{} [{}, {}] and {}/{} [{}, {}]",
                w[0].pid,
                w[0].tid,
                w[0].start,
                w[0].end,
                w[1].pid,
                w[1].tid,
                w[1].start,
                w[1].end
            );
        }
    }

    // The peak number of simultaneous holders lies between the peak over the inner intervals
    // (surely holding) and the peak over the outer ones (holding, or inside acquire/release).
    let inner = peak(all.iter().map(|r| (r.start, r.end)));
    let outer = peak(all.iter().map(|r| (r.outer_start, r.outer_end)));

    let ns = root.join(namespace_dir_name("stress"));
    let used = names_in(&ns.join("used"));
    let free = names_in(&ns.join("free"));
    assert!(used.is_empty(), "all released, yet used/ holds {used:?}");
    let entries = used.len() + free.len();
    println!(
        "stress: {PROCESSES} processes x {THREADS} threads, {:.2} s: {} acquisitions, {} distinct \
         names, peak simultaneous holders {inner} (inside the lock) to {outer} (from acquire to \
         release), {entries} entries left in free/ + used/",
        elapsed.as_secs_f64(),
        all.len(),
        by_name.len(),
    );
    // Entries exceeding even the outer peak would mean names leak (are made while a free one
    // exists); that is a sure failure whatever the timing.
    assert!(
        entries <= outer,
        "{entries} entries left, more than the peak of {outer} holders"
    );
}

/// The largest number of intervals that overlap at one instant (ends sort before starts at
/// equal times).
fn peak(intervals: impl Iterator<Item = (u64, u64)>) -> usize {
    let mut events: Vec<(u64, i32)> = intervals.flat_map(|(s, e)| [(s, 1), (e, -1)]).collect();
    events.sort_unstable();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        peak = peak.max(now);
    }
    peak as usize
}
