//! The native mux client (`conn-openssh`'s `native-mux` feature) against a real ControlMaster
//! and a private sshd on 127.0.0.1.
//!
//! Each test starts its own daemon (`conn_testkit::TestSshd`) and one pooled connection with
//! `Mux::Native`, whose master the first refresh starts; later sessions go over that master
//! without a refresh, so a test can kill it and see what a session then meets. Run as root,
//! logins use the `conntest` account that `scripts/setup.sh` creates.
//!
//! The tests take one lock: the descriptor-leak checks count `/proc/self/fd`, which only works
//! while no other test of this binary opens or closes descriptors.
#![cfg(feature = "native-mux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conn::{
    Cmd, ConnectionPool, Error, ExitStatus, Job, Mux, OpenSsh, Output, PooledConnection, SimpleJob,
    Started, Stdin, Stream,
};
use conn_testkit::procfs::open_fds;
use conn_testkit::{TestSshd, run_with_timeout, wait_until};

const JOB_TIMEOUT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn job() -> SimpleJob {
    SimpleJob::with_timeout(JOB_TIMEOUT)
}

/// Files through which a remote command says it has started, and is told to end: so that a
/// test acts once a session really runs, however slow the machine, instead of after a guessed
/// sleep. In a directory anyone may write to, since the remote side logs in as another account
/// when the tests run as root.
struct Marks {
    dir: tempfile::TempDir,
}

impl Marks {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("cmk").tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        Marks { dir }
    }

    /// The file the remote command creates once it runs (a plain path: no quoting needed).
    fn started(&self) -> String {
        self.dir.path().join("started").display().to_string()
    }

    /// The file whose creation tells the remote command to end.
    fn release(&self) -> String {
        self.dir.path().join("release").display().to_string()
    }

    fn wait_started(&self) {
        assert!(
            wait_until(JOB_TIMEOUT, || Path::new(&self.started()).exists()),
            "the remote command never started"
        );
    }

    fn let_go(&self) {
        std::fs::write(self.release(), b"").unwrap();
    }
}

/// One native-mux connection of a pool over `sshd`, its master started; `ssh -O exit` on drop.
struct Master<'a> {
    sshd: &'a TestSshd,
    socket: PathBuf,
    conn: Option<PooledConnection<OpenSsh>>,
    pool: ConnectionPool<OpenSsh>,
    _dir: tempfile::TempDir,
}

impl<'a> Master<'a> {
    fn start(sshd: &'a TestSshd) -> Self {
        let dir = conn_testkit::socket_dir();
        let transport = OpenSsh::builder(sshd.host_alias())
            .ssh_config(sshd.ssh_config_path())
            .socket_dir(dir.path())
            .mux(Mux::Native)
            .build()
            .unwrap();
        let pool = ConnectionPool::new(transport, "shared", 64).unwrap();
        let conn = pool.get(&job()).unwrap(); // the refresh starts the master
        let socket = conn.control_path().unwrap().to_path_buf();
        assert!(conn.master_is_listening());
        Master {
            sshd,
            socket,
            conn: Some(conn),
            pool,
            _dir: dir,
        }
    }

    /// One command over the master as it is now: no refresh, no retry.
    fn run(&self, cmd: &Cmd, job: &dyn Job) -> conn::Result<Output> {
        self.conn
            .as_ref()
            .unwrap()
            .run(&cmd.clone().check(false), job)
    }

    /// The master's pid, from `ssh -O check` ("Master running (pid=N)").
    fn pid(&self) -> u32 {
        self.sshd.master_pid(&self.socket).expect("a live master")
    }

    /// `ssh -S <socket> <alias> <remote…>`: the spawned client the native one replaces.
    fn spawned(&self, remote: &[&str]) -> Command {
        let mut cmd = Command::new(self.sshd.ssh_program());
        cmd.args(self.sshd.ssh_args())
            .arg("-S")
            .arg(&self.socket)
            .args(["-oControlMaster=no", self.sshd.host_alias()])
            .args(remote)
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Master<'_> {
    fn drop(&mut self) {
        drop(self.conn.take());
        self.pool.shutdown();
        let mut exit = Command::new(self.sshd.ssh_program());
        exit.args(self.sshd.ssh_args())
            .arg("-S")
            .arg(&self.socket)
            .args(["-O", "exit", self.sshd.host_alias()])
            .stdin(Stdio::null());
        let _ = run_with_timeout(&mut exit, Duration::from_secs(5));
    }
}

#[test]
fn native_session_behaves_like_the_spawned_client() {
    let _serial = serial();
    let sshd = TestSshd::start_default().unwrap();
    let master = Master::start(&sshd);

    let out = master
        .run(&Cmd::new(["echo", "hello world"]), &job())
        .unwrap();
    assert_eq!(out.stdout, b"hello world\n");
    assert_eq!(out.status, ExitStatus::Code(0));

    let script = "echo out; echo err >&2; exit 3";
    let out = master.run(&Cmd::new(["sh", "-c", script]), &job()).unwrap();
    assert_eq!(
        out.status,
        ExitStatus::Code(3),
        "raw output: no check applied"
    );
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");

    // 255 is the remote command's own status here, not a transport failure.
    let cmd = Cmd::new(["sh", "-c", "echo bye >&2; exit 255"]);
    let out = master.run(&cmd, &job()).unwrap();
    assert_eq!(out.status, ExitStatus::Code(255));
    assert_eq!(out.stderr, b"bye\n");
    let err = cmd.checked(out, "h", "sh -c …").unwrap_err();
    assert!(
        matches!(err, Error::Exited { .. }) && !err.is_retryable(),
        "{err:?}"
    );

    let out = master
        .run(
            &Cmd::new(["sh", "-c", "echo out; echo err >&2"])
                .stdout(Stream::Null)
                .stderr(Stream::Null),
            &job(),
        )
        .unwrap();
    assert_eq!(out.status, ExitStatus::Code(0));
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "nothing captured from null streams"
    );

    let input: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let out = master
        .run(
            &Cmd::new(["cat"]).stdin(Stdin::Bytes(input.clone())),
            &job(),
        )
        .unwrap();
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "1 MiB of stdin came back altered");

    let ten_mib = 10 * 1024 * 1024;
    let out = master
        .run(
            &Cmd::new(["head", "-c", &ten_mib.to_string(), "/dev/zero"]),
            &job(),
        )
        .unwrap();
    assert_eq!(out.stdout.len(), ten_mib);
    assert!(out.stdout.iter().all(|&b| b == 0));

    let odd = [
        "", " ", "a b", "'", "\"", "$HOME", "`id`", "\n", ";", "*", "\\", "é",
    ];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend(odd);
    let out = master.run(&Cmd::new(argv), &job()).unwrap();
    let expected: Vec<u8> = odd.iter().flat_map(|a| a.bytes().chain([0])).collect();
    assert_eq!(out.stdout, expected, "quoting survives the remote shell");

    let out = master
        .run(&Cmd::new(["true"]).dry_run(true), &job())
        .unwrap();
    assert_eq!(out, Output::dry_run());
    assert!(matches!(
        master.run(&Cmd::new(Vec::<String>::new()), &job()),
        Err(Error::EmptyCommand)
    ));

    // The alive check names the same master as `ssh -O check`.
    let check = master.spawned(&[]).args(["-O", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&check.stderr);
    assert!(text.contains(&format!("(pid={})", master.pid())), "{text}");

    assert_eq!(sshd.accepted_logins(), 1, "only the master authenticated");
}

#[test]
fn deadline_and_cancellation_close_the_session_without_leaking() {
    let _serial = serial();
    let sshd = TestSshd::start_default().unwrap();
    let master = Master::start(&sshd);
    master.run(&Cmd::new(["true"]), &job()).unwrap(); // warm: lazily opened fds of std etc.
    let fds_before = open_fds();

    let timeout = Duration::from_millis(500);
    let start = Instant::now();
    let err = master
        .run(
            &Cmd::new(["sleep", "30"]).stdin(Stdin::Bytes(b"x".to_vec())),
            &SimpleJob::with_timeout(timeout),
        )
        .unwrap_err();
    let took = start.elapsed();
    match &err {
        Error::Timeout {
            command,
            timeout: t,
        } => {
            assert_eq!(*t, timeout);
            assert!(command.contains("sleep 30"), "{command}");
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(open_fds(), fds_before, "a descriptor leaked on timeout");

    let job = Arc::new(job());
    let canceller = {
        let job = Arc::clone(&job);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            job.cancel();
        })
    };
    let start = Instant::now();
    let err = master.run(&Cmd::new(["sleep", "30"]), &*job).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    drop(job); // its cancellation's eventfd is the job's, not a leak
    assert_eq!(
        open_fds(),
        fds_before,
        "a descriptor leaked on cancellation"
    );

    // The master is unharmed and serves the next command.
    let out = master
        .run(&Cmd::new(["echo", "still here"]), &SimpleJob::new())
        .unwrap();
    assert_eq!(out.stdout, b"still here\n");
}

#[test]
fn killed_master_mid_command_says_the_command_may_have_run() {
    let _serial = serial();
    let sshd = TestSshd::start_default().unwrap();
    let master = Master::start(&sshd);
    let pid = master.pid();
    let marks = Marks::new();
    let script = format!("touch {}; exec sleep 30", marks.started());
    let session = std::thread::scope(|scope| {
        let running = scope.spawn(|| master.run(&Cmd::new(["sh", "-c", &script]), &job()));
        marks.wait_started();
        // SAFETY: kill(2) on the master's pid, which this test started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        let start = Instant::now();
        let result = running.join().unwrap();
        (result, start.elapsed())
    });
    let (result, took) = session;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                started: Started::Unknown,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !err.is_retryable(),
        "the command may have run: never retried"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // Nothing listens any more once the master is dead (the session can end while the kernel
    // is still closing the dying master's descriptors, its listener among them): a connect
    // error, retryable, and no hang.
    assert!(
        wait_until(JOB_TIMEOUT, || !conn_testkit::procfs::is_alive(pid)),
        "the killed master never died"
    );
    let err = master.run(&Cmd::new(["true"]), &job()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[test]
fn max_sessions_refusal_is_a_retryable_session_refused() {
    let _serial = serial();
    let sshd = TestSshd::builder().max_sessions(1).start().unwrap();
    let master = Master::start(&sshd);
    let marks = Marks::new();
    // The first session holds the only slot until it is told to end.
    let script = format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
        marks.started(),
        marks.release()
    );
    std::thread::scope(|scope| {
        let busy = scope.spawn(|| master.run(&Cmd::new(["sh", "-c", &script]), &job()));
        marks.wait_started();
        let second = master.run(&Cmd::new(["echo", "second"]), &job());
        marks.let_go();
        let err = second.unwrap_err();
        match &err {
            Error::SessionRefused { message, .. } => {
                assert!(message.contains("refused by peer"), "{message}")
            }
            other => panic!("expected SessionRefused, got {other:?}"),
        }
        assert!(err.is_retryable());
        assert_eq!(busy.join().unwrap().unwrap().status, ExitStatus::Code(0));
    });
    // The slot is free again once the first session's close is complete, which the native
    // client waits for before it returns.
    let out = master.run(&Cmd::new(["echo", "second"]), &job()).unwrap();
    assert_eq!(out.stdout, b"second\n");
}

/// Rough per-command latency, native session versus a spawned `ssh -S`, over one warm master.
/// `cargo test --features native-mux --test native_mux -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check: run by hand"]
fn latency_native_vs_spawned() {
    let _serial = serial();
    const RUNS: usize = 50;
    let sshd = TestSshd::start_default().unwrap();
    let master = Master::start(&sshd);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut native = Vec::new();
    let mut spawned = Vec::new();
    for i in 0..RUNS + 5 {
        let start = Instant::now();
        let out = master.run(&Cmd::new(["echo", "hi"]), &job()).unwrap();
        let t_native = start.elapsed();
        assert_eq!(out.stdout, b"hi\n");
        let start = Instant::now();
        let out = master.spawned(&["echo", "hi"]).output().unwrap();
        let t_spawned = start.elapsed();
        assert_eq!(out.stdout, b"hi\n");
        if i >= 5 {
            native.push(t_native);
            spawned.push(t_spawned);
        }
    }
    let (n, s) = (median(native), median(spawned));
    eprintln!(
        "echo over a warm master, median of {RUNS}: native {n:?}, spawned ssh -S {s:?} \
         (ratio {:.2})",
        n.as_secs_f64() / s.as_secs_f64()
    );
}

/// How often sshd refuses back-to-back native sessions: 8 threads over one master against
/// `MaxSessions 10`, each running commands one after another. Reports refusals, no assertion
/// on their number (the pool's retry is what must make them harmless).
/// `cargo test --features native-mux --test native_mux -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, not a check: run by hand"]
fn refusals_at_eight_threads_per_master() {
    let _serial = serial();
    const THREADS: usize = 8;
    const COMMANDS: usize = 100;
    let sshd = TestSshd::start_default().unwrap();
    let master = Master::start(&sshd);
    let start = Instant::now();
    let (ok, refused) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let master = &master;
                scope.spawn(move || {
                    let (mut ok, mut refused) = (0, 0);
                    for i in 0..COMMANDS {
                        let word = format!("{t}-{i}");
                        match master.run(&Cmd::new(["echo", word.as_str()]), &job()) {
                            Ok(out) => {
                                assert_eq!(out.stdout, format!("{word}\n").as_bytes());
                                ok += 1;
                            }
                            Err(Error::SessionRefused { .. }) => refused += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                    (ok, refused)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    eprintln!(
        "{THREADS} threads x {COMMANDS} commands: {ok} ok, {refused} refused, {:.0} commands/s",
        ok as f64 / start.elapsed().as_secs_f64()
    );
}
