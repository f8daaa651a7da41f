//! The engine over real ssh masters (a private sshd on 127.0.0.1 and its host aliases): lines
//! streamed per host, copies to every host and fetches from every host, checked byte for byte.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

use conn_core::{Cmd, StreamKind};
use conn_fleet::{CopyPlan, FetchPlan, Fleet, Handler, Host, Quiet, Task};
use conn_openssh::{Mux, OpenSsh};
use conn_testkit::TestSshd;

fn fleet(server: &TestSshd, sockets: &Path, mux: Mux) -> Fleet<OpenSsh> {
    let mut fleet = Fleet::new().fanout(3);
    for alias in server.host_aliases() {
        let ssh = OpenSsh::builder(alias)
            .ssh_config(server.ssh_config_path())
            .socket_dir(sockets)
            .mux(mux)
            .exit_masters_on_shutdown(true)
            .build()
            .unwrap();
        fleet.push(*alias, ssh);
    }
    fleet
}

#[derive(Default)]
struct Lines(Mutex<Vec<(String, StreamKind, Vec<u8>)>>);

impl Handler for Lines {
    fn line(&self, host: &Host, stream: StreamKind, line: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push((host.name.clone(), stream, line.to_vec()));
    }
}

#[test]
fn lines_of_every_host_come_whole_over_both_back_ends() {
    let server = TestSshd::start_default().unwrap();
    for mux in [Mux::Native, Mux::Process] {
        let sockets = conn_testkit::socket_dir();
        let fleet = fleet(&server, sockets.path(), mux);
        let lines = Lines::default();
        let script =
            "i=0; while [ $i -lt 500 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done";
        let report = fleet.run(&Task::Run(Cmd::new(["sh", "-c", script])), &lines);
        assert_eq!(report.failed(), 0, "{mux:?}: {report:?}");
        let lines = lines.0.into_inner().unwrap();
        for alias in server.host_aliases() {
            for (stream, word) in [(StreamKind::Stdout, "out"), (StreamKind::Stderr, "err")] {
                let got: Vec<String> = lines
                    .iter()
                    .filter(|(h, s, _)| h == alias && *s == stream)
                    .map(|(_, _, l)| String::from_utf8(l.clone()).unwrap())
                    .collect();
                let want: Vec<String> = (0..500).map(|i| format!("{word} {i}\n")).collect();
                assert_eq!(got, want, "{mux:?} {alias} {stream:?}");
            }
        }
    }
}

#[test]
fn copies_to_and_fetches_from_every_host_arrive_whole() {
    let server = TestSshd::start_default().unwrap();
    let sockets = conn_testkit::socket_dir();
    // A tree the remote account can write into and read from.
    let work = tempfile::Builder::new()
        .prefix("cfl")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(src.join("big"), &big).unwrap();
    fs::write(src.join("sub/small"), b"small\n").unwrap();
    fs::set_permissions(src.join("sub/small"), fs::Permissions::from_mode(0o640)).unwrap();
    for dir in [&src, &src.join("sub")] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(src.join("big"), fs::Permissions::from_mode(0o644)).unwrap();
    let remote = work.path().join("remote");
    fs::create_dir(&remote).unwrap();
    fs::set_permissions(&remote, fs::Permissions::from_mode(0o777)).unwrap();

    // To every host (all aliases land in the same directory here, one after another).
    let fleet = fleet(&server, sockets.path(), Mux::Native).fanout(1);
    let plan = CopyPlan::new(std::slice::from_ref(&src), remote.as_os_str(), true).unwrap();
    let report = fleet.run(&Task::Copy(plan), &Quiet);
    assert_eq!(report.failed(), 0, "{report:?}");
    assert_eq!(fs::read(remote.join("src/big")).unwrap(), big);
    assert_eq!(fs::read(remote.join("src/sub/small")).unwrap(), b"small\n");
    let mode = fs::metadata(remote.join("src/sub/small"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);

    // From every host: the file and the tree, each as NAME.HOST.
    let dest = work.path().join("dest");
    fs::create_dir(&dest).unwrap();
    let sources: Vec<OsString> = vec![
        remote.join("src/big").into_os_string(),
        remote.join("src").into_os_string(),
    ];
    let plan = FetchPlan::new(sources, dest.clone(), true, true).unwrap();
    let fleet = fleet.fanout(3);
    let report = fleet.run(&Task::Fetch(plan), &Quiet);
    assert_eq!(report.failed(), 0, "{report:?}");
    for alias in server.host_aliases() {
        assert_eq!(fs::read(dest.join(format!("big.{alias}"))).unwrap(), big);
        let tree = dest.join(format!("src.{alias}"));
        assert_eq!(fs::read(tree.join("sub/small")).unwrap(), b"small\n");
        let mode = fs::metadata(tree.join("sub/small"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640, "--preserve keeps modes");
    }
    // Nothing but the final names: no temporary left behind.
    let names: Vec<String> = fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    // A missing file is that host's error.
    let plan =
        FetchPlan::new(vec![remote.join("none").into()], dest.clone(), false, false).unwrap();
    let report = fleet.run(&Task::Fetch(plan), &Quiet);
    assert_eq!(report.failed(), 3);
    let reasons = report.failures_by_reason();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].1.contains("No such file"), "{reasons:?}");
}

/// Counts every host's stderr lines that say `started`.
#[derive(Default)]
struct Started(std::sync::atomic::AtomicUsize);

impl Handler for Started {
    fn line(&self, _: &Host, stream: StreamKind, line: &[u8]) {
        if stream == StreamKind::Stderr && line == b"started\n" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn kill_remote_ends_every_host_s_command_when_the_run_is_cancelled() {
    use conn_testkit::{procfs, wait_until};
    use std::time::Duration;
    let server = TestSshd::start_default().unwrap();
    let hosts = server.host_aliases().len();
    for mux in [Mux::Native, Mux::Process] {
        let sockets = conn_testkit::socket_dir();
        let nap = format!("987.{}{}", std::process::id(), mux as u8);
        let fleet = fleet(&server, sockets.path(), mux).kill_remote(true);
        let token = fleet.cancel_token().clone();
        let started = Started::default();
        // `started` on stderr comes after the shell's report of its group on the same stream:
        // once every host has said it, conn knows every group.
        let cmd = Cmd::shell(format!("echo started >&2; exec sleep {nap}"));
        let (report, sleeps) = std::thread::scope(|scope| {
            let run = scope.spawn(|| fleet.run(&Task::Run(cmd), &started));
            let ready = wait_until(Duration::from_secs(20), || {
                started.0.load(std::sync::atomic::Ordering::SeqCst) == hosts
                    && procfs::find("sleep", &nap).len() == hosts
            });
            let sleeps = procfs::find("sleep", &nap);
            token.cancel();
            assert!(ready, "{mux:?}: not every host started: {sleeps:?}");
            (run.join().unwrap(), sleeps)
        });
        assert!(report.cancelled, "{mux:?}");
        let gone = wait_until(Duration::from_secs(10), || {
            sleeps.iter().all(|&p| !procfs::is_alive(p))
        });
        for pid in &sleeps {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        assert!(gone, "{mux:?}: remote sleeps left after the cancel");
    }
}
