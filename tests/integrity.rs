//! Nothing reported as done that was not done whole: a master killed while a command's output
//! is still in flight never turns a truncated output into a success, on either mux back end
//! (docs/design.md#clean-end), and under chaos no verdict lies about whether a command ran.
//!
//! Against a private sshd on 127.0.0.1 (`conn_testkit::TestSshd`). The deterministic tests park
//! the output inside the master: the command's stdout is a pipe that nobody reads until the
//! remote command has ended (its process is gone from `/proc`), so the master holds the
//! megabytes the pipe cannot take; then the master is killed. The chaos tests kill a random
//! master every 150 ms (or every 64 successful commands, whichever comes first) while threads run commands
//! through one pool.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conn::prelude::*;
use conn_testkit::{TestSshd, procfs, wait_until};

/// Bound for one command.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound for what happens after a kill or after a remote command ends.
const SETTLE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Process,
    #[cfg_attr(not(feature = "native-mux"), allow(dead_code))]
    Native,
}

impl Backend {
    fn mux(self) -> Mux {
        match self {
            Backend::Process => Mux::Process,
            Backend::Native => Mux::Native,
        }
    }
}

/// A pool over one back end, with its own sshd and socket directory.
struct Fixture {
    backend: Backend,
    pool: ConnectionPool<OpenSsh>,
    sshd: TestSshd,
    sockets: tempfile::TempDir,
}

impl Fixture {
    fn new(backend: Backend, capacity: usize) -> Self {
        let sshd = TestSshd::start_default().unwrap();
        let sockets = conn_testkit::socket_dir();
        let transport = OpenSsh::builder(sshd.host_alias())
            .ssh_config(sshd.ssh_config_path())
            .socket_dir(sockets.path())
            .mux(backend.mux())
            .exit_masters_on_shutdown(true)
            .build()
            .unwrap();
        let pool = ConnectionPool::new(transport, "shared", capacity).unwrap();
        Fixture {
            backend,
            pool,
            sshd,
            sockets,
        }
    }

    /// The live masters of this fixture (`ssh -M` processes on a socket under its directory),
    /// a master still starting in the foreground included: to kill, their `-S` clients and
    /// the native sessions are not masters.
    fn masters(&self) -> Vec<u32> {
        procfs::ssh_masters(&self.sockets.path().to_string_lossy())
    }

    fn warm(&self) -> u32 {
        let out = self.pool.run(&Cmd::new(["true"]), &job()).unwrap();
        assert!(out.status.success(), "{:?}: {out:?}", self.backend);
        let masters = self.masters();
        assert_eq!(masters.len(), 1, "{:?}: one master", self.backend);
        masters[0]
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.pool.shutdown();
        for pid in self.masters() {
            sigkill(pid);
        }
    }
}

fn job() -> SimpleJob {
    SimpleJob::with_timeout(JOB_TIMEOUT)
}

fn sigkill(pid: u32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pid is a master this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
}

/// A marker argument no other process of the machine carries.
fn marker(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "conn-integrity-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `sh -c 'head -c BYTES /dev/zero; exit 0' MARKER`: output from a command that can be found
/// in `/proc` by its marker while it runs ("remotely": the test sshd is on this machine; the
/// `; exit 0` keeps the shell from exec'ing `head` and losing the marker).
fn big_output(bytes: usize, marker: &str) -> Cmd {
    Cmd::new([
        "sh".to_string(),
        "-c".to_string(),
        format!("head -c {bytes} /dev/zero; exit 0"),
        marker.to_string(),
    ])
}

/// What the deterministic tests print: more than the pipe takes (64 KiB), less than the master
/// and sshd buffer for a session (its 2 MiB window), so that the remote command ends while
/// most of its output still waits in the master.
const IN_FLIGHT: usize = 1_000_000;

/// Waits until the remote command marked `marker`, known to have started, has ended.
fn wait_remote_end(marker: &str) {
    assert!(
        wait_until(SETTLE, || procfs::find("sh", marker).is_empty()),
        "the remote command {marker} ended"
    );
}

/// A pipe whose read end nobody reads until told: the master keeps what the pipe cannot take.
fn paused_pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = rustix::pipe::pipe().unwrap();
    (std::fs::File::from(r), w)
}

/// Waits (without reading) until `r` has data: the remote command has started writing.
fn wait_readable(r: &std::fs::File) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let timeout = Timespec {
        tv_sec: SETTLE.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [PollFd::new(r, PollFlags::IN)];
    assert_eq!(poll(&mut fds, Some(&timeout)).unwrap(), 1, "output came");
}

/// Reads `r` to its end; how many bytes came.
fn drain(mut r: impl Read) -> usize {
    let mut n = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += k,
        }
    }
}

/// The master dies after the remote command has ended (its status forwarded or on its way)
/// while most of its output still waits in the master: `run` must fail, never succeed.
fn run_with_output_in_the_master_is_no_success_when_it_dies(backend: Backend) {
    let fx = Fixture::new(backend, 8);
    let master = fx.warm();
    let mark = marker("run");
    let (reader, writer) = paused_pipe();
    let cmd = big_output(IN_FLIGHT, &mark).stdout(Stream::from(writer));
    let pool = fx.pool.clone();
    let running = std::thread::spawn(move || pool.run(&cmd, &job()));
    wait_readable(&reader);
    wait_remote_end(&mark);
    sigkill(master);
    let delivered = drain(reader);
    let result = running.join().unwrap();
    eprintln!("{backend:?}: {delivered} of {IN_FLIGHT} bytes delivered: {result:?}");
    assert!(
        delivered < IN_FLIGHT,
        "{backend:?}: the master held part of the output"
    );
    let err = result.expect_err("a truncated output must not pass as a success");
    assert!(
        matches!(err, Error::Transport { .. }),
        "{backend:?}: a transport failure: {err}"
    );
    assert_ne!(err.started(), Started::No, "{backend:?}: it ran: {err}");
    assert!(!err.is_retryable(), "{backend:?}: {err}");
    assert!(err.to_string().contains("died"), "{backend:?}: {err}");
}

/// The same for a spawned child whose stdout the caller reads as a stream, pausing in the
/// middle.
fn a_streamed_child_with_output_in_the_master_is_no_success_when_it_dies(backend: Backend) {
    let fx = Fixture::new(backend, 8);
    let master = fx.warm();
    let mark = marker("stream");
    let mut child = fx
        .pool
        .spawn(&big_output(IN_FLIGHT, &mark), &job())
        .unwrap();
    let mut out = child.take_stdout().unwrap();
    let mut first = vec![0u8; 64 * 1024];
    out.read_exact(&mut first).unwrap();
    wait_remote_end(&mark);
    sigkill(master);
    let delivered = first.len() + drain(out);
    let result = child.wait();
    eprintln!("{backend:?}: {delivered} of {IN_FLIGHT} bytes read: {result:?}");
    assert!(
        delivered < IN_FLIGHT,
        "{backend:?}: the master held part of the output"
    );
    let err = result.expect_err("a truncated stream must not end in success");
    assert_ne!(err.started(), Started::No, "{backend:?}: it ran: {err}");
    assert!(!err.is_retryable(), "{backend:?}: {err}");
    assert!(err.to_string().contains("died"), "{backend:?}: {err}");
}

/// The control case: the same paused reader with no kill delivers everything, successfully.
fn a_paused_reader_without_a_kill_gets_everything(backend: Backend) {
    let fx = Fixture::new(backend, 8);
    fx.warm();
    let mark = marker("whole");
    let (reader, writer) = paused_pipe();
    let cmd = big_output(IN_FLIGHT, &mark).stdout(Stream::from(writer));
    let pool = fx.pool.clone();
    let running = std::thread::spawn(move || pool.run(&cmd, &job()));
    wait_readable(&reader);
    wait_remote_end(&mark);
    assert_eq!(drain(reader), IN_FLIGHT, "{backend:?}");
    let out = running.join().unwrap().unwrap();
    assert!(out.status.success(), "{backend:?}: {out:?}");
}

/// Kills a random master of `fx` every 150 ms, or sooner once `every` more commands have
/// succeeded (`done`; failures do not count, or the chaos would feed on itself), until `stop`,
/// counting in `killed`; returns how many it killed. Paced by the work as well as by the clock:
/// masters that restart quickly would otherwise see too little chaos to mean anything.
fn killer(
    fx: &Fixture,
    stop: &AtomicBool,
    done: &AtomicUsize,
    every: usize,
    killed: &AtomicUsize,
) -> usize {
    const TICK: Duration = Duration::from_millis(150);
    let mut kills = 0;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let (mut last, mut last_done) = (Instant::now(), 0);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
        let now_done = done.load(Ordering::Relaxed);
        if last.elapsed() < TICK && now_done < last_done + every {
            continue;
        }
        (last, last_done) = (Instant::now(), now_done);
        let masters = fx.masters();
        if masters.is_empty() {
            continue;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        sigkill(masters[(seed % masters.len() as u64) as usize]);
        kills += 1;
        killed.store(kills, Ordering::Relaxed);
    }
    kills
}

/// Whether a chaos worker goes on after its `i` commands: until it has run `at_least` and the
/// killer has killed `kills` masters (a fast machine runs the commands before enough kills), but
/// never past `until`, so that the run stays bounded (the test then fails on the kill count).
fn go_on(i: usize, at_least: usize, killed: &AtomicUsize, kills: usize, until: Instant) -> bool {
    (i < at_least || killed.load(Ordering::Relaxed) < kills) && Instant::now() < until
}

/// How long a chaos run may go on for its kills.
const CHAOS_AT_MOST: Duration = Duration::from_secs(120);

/// What a chaos run saw.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    /// Successes whose output was not the command's whole output.
    wrong: Vec<String>,
    errors: HashMap<&'static str, usize>,
}

/// 16 threads, each running `per_thread` commands that print 300 KB and then a token, while a
/// master is killed every 150 ms or 64 commands: every success must be the whole output.
fn large_outputs_under_chaos_are_whole_or_errors(backend: Backend) {
    let fx = Fixture::new(backend, 4);
    fx.warm();
    let (threads, per_thread, min_kills) = (16, 20, 3);
    let stop = AtomicBool::new(false);
    let (done, killed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let until = Instant::now() + CHAOS_AT_MOST;
    let tally = Mutex::new(Tally::default());
    let kills = std::thread::scope(|scope| {
        let killing = scope.spawn(|| killer(&fx, &stop, &done, 64, &killed));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (fx, tally, done, killed) = (&fx, &tally, &done, &killed);
                scope.spawn(move || {
                    let mut i = 0;
                    while go_on(i, per_thread, killed, min_kills, until) {
                        i += 1;
                        let token = format!("token-{t}-{i}");
                        let cmd = Cmd::new([
                            "sh".to_string(),
                            "-c".to_string(),
                            format!("head -c 300000 /dev/zero; echo {token}"),
                        ]);
                        let result = fx.pool.run(&cmd, &job());
                        if result.is_ok() {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut tally = tally.lock().unwrap();
                        match result {
                            Ok(out) => {
                                let whole = out.stdout.len() == 300_000 + token.len() + 1
                                    && out.stdout.ends_with(format!("{token}\n").as_bytes())
                                    && out.stdout[..300_000].iter().all(|&b| b == 0);
                                if whole && out.status.success() {
                                    tally.ok += 1;
                                } else {
                                    tally.wrong.push(format!(
                                        "{token}: {} with {} bytes",
                                        out.status,
                                        out.stdout.len()
                                    ));
                                }
                            }
                            Err(e) => *tally.errors.entry(e.kind()).or_default() += 1,
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        killing.join().unwrap()
    });
    let tally = tally.into_inner().unwrap();
    eprintln!("{backend:?}: {kills} masters killed; {tally:?}");
    assert!(
        kills >= min_kills,
        "{backend:?}: the chaos happened ({kills} kills)"
    );
    assert!(
        tally.wrong.is_empty(),
        "{backend:?}: wrong results: {:?}",
        tally.wrong
    );
    assert!(
        tally.ok > 0,
        "{backend:?}: some commands went through: {tally:?}"
    );
}

/// How one command of the run-log chaos ended.
#[derive(Debug)]
enum Verdict {
    Ok,
    Failed(Started, String),
}

/// At least 1,280 commands (and 10 kills) that each append their token to a log on the remote
/// side and then print it, while a master is killed every 150 ms or 64 commands; then every verdict is held against the log: a success
/// ran exactly once, "never started" never ran, "ran" ran, and of the "may have run" verdicts at
/// most 10 % never ran.
fn no_verdict_lies_under_chaos(backend: Backend) {
    let fx = Fixture::new(backend, 8);
    fx.warm();
    let logs = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(logs.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let log: PathBuf = logs.path().join("ran");
    let (threads, per_thread, min_kills) = (32, 40, 10);
    let stop = AtomicBool::new(false);
    let (done, killed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let until = Instant::now() + CHAOS_AT_MOST;
    let verdicts = Mutex::new(Vec::new());
    let kills = std::thread::scope(|scope| {
        let killing = scope.spawn(|| killer(&fx, &stop, &done, 64, &killed));
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (fx, verdicts, log, done, killed) = (&fx, &verdicts, &log, &done, &killed);
                scope.spawn(move || {
                    let mut i = 0;
                    while go_on(i, per_thread, killed, min_kills, until) {
                        i += 1;
                        let token = format!("t{t}-{i}");
                        let cmd = Cmd::new([
                            "sh".to_string(),
                            "-c".to_string(),
                            format!("echo {token} >> {}; echo {token}", log.display()),
                        ]);
                        let verdict = match fx.pool.run(&cmd, &job()) {
                            Ok(out) if out.stdout == format!("{token}\n").as_bytes() => Verdict::Ok,
                            Ok(out) => Verdict::Failed(
                                Started::Yes,
                                format!("WRONG OUTPUT {:?}", out.stdout_lossy()),
                            ),
                            Err(e) => Verdict::Failed(e.started(), e.to_string()),
                        };
                        if matches!(verdict, Verdict::Ok) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        verdicts.lock().unwrap().push((token, verdict));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        killing.join().unwrap()
    });
    // A command that may have run may still be on its way: sshd may hold its request, or its
    // shell may not have written the log yet, on a machine this busy. Wait until every sshd
    // connection process of a killed master has ended (each live master keeps one) and no
    // shell of this run is left, then read the log.
    let log_name = log.to_string_lossy().into_owned();
    assert!(
        wait_until(SETTLE * 3, || fx.sshd.connection_pids().len()
            <= fx.masters().len()
            && procfs::find("sh", &log_name).is_empty()),
        "{backend:?}: the remote side settled"
    );
    let ran = ran_counts(&log);
    let verdicts = verdicts.into_inner().unwrap();
    let (mut lies, mut unknown, mut unknown_never_ran) = (Vec::new(), 0, 0);
    let mut texts: HashMap<String, (usize, usize)> = HashMap::new();
    for (token, verdict) in &verdicts {
        let times = ran.get(token.as_str()).copied().unwrap_or(0);
        match verdict {
            Verdict::Ok if times == 1 => {}
            Verdict::Ok => lies.push(format!("{token}: success, ran {times} times")),
            Verdict::Failed(started, why) => {
                let entry = texts.entry(error_shape(why)).or_default();
                if times > 0 {
                    entry.0 += 1
                } else {
                    entry.1 += 1
                }
                match started {
                    _ if times > 1 => lies.push(format!("{token}: ran {times} times: {why}")),
                    Started::No if times > 0 => {
                        lies.push(format!("{token}: \"never started\" but ran: {why}"))
                    }
                    Started::Yes if times == 0 => {
                        lies.push(format!("{token}: \"ran\" but never ran: {why}"))
                    }
                    Started::Unknown => {
                        unknown += 1;
                        if times == 0 {
                            unknown_never_ran += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let mut shapes: Vec<_> = texts.into_iter().collect();
    shapes.sort_by_key(|(_, (r, n))| std::cmp::Reverse(r + n));
    eprintln!(
        "{backend:?}: {kills} kills, {} commands, {} ok, {unknown} unknown ({unknown_never_ran} \
         never ran), {} pool restarts retried; errors (ran, never ran):",
        verdicts.len(),
        verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Ok))
            .count(),
        fx.pool.restarts_retried()
    );
    for (shape, (r, n)) in &shapes {
        eprintln!("  {r:4} {n:4}  {shape}");
    }
    assert!(
        kills >= min_kills,
        "{backend:?}: the chaos happened ({kills} kills)"
    );
    assert!(lies.is_empty(), "{backend:?}: verdicts that lie: {lies:#?}");
    assert!(
        unknown_never_ran * 10 <= unknown.max(10),
        "{backend:?}: {unknown_never_ran} of {unknown} \"may have run\" verdicts never ran"
    );
}

/// How often each token appears in the run log.
fn ran_counts(log: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut counts = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_default() += 1;
    }
    counts
}

/// An error's text with what differs from command to command (tokens, paths, pids) taken out.
fn error_shape(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            if w.contains('/') || w.chars().any(|c| c.is_ascii_digit()) {
                "_"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

macro_rules! tests {
    ($($name:ident),* $(,)?) => {
        mod process {
            $(#[test] fn $name() { super::$name(super::Backend::Process) })*
        }
        #[cfg(feature = "native-mux")]
        mod native {
            $(#[test] fn $name() { super::$name(super::Backend::Native) })*
        }
    };
}

tests!(
    run_with_output_in_the_master_is_no_success_when_it_dies,
    a_streamed_child_with_output_in_the_master_is_no_success_when_it_dies,
    a_paused_reader_without_a_kill_gets_everything,
    large_outputs_under_chaos_are_whole_or_errors,
    no_verdict_lies_under_chaos,
);
