//! `conn` under faults, against the private sshd: a signal ends every kind of run at once
//! with 130 and leaves nothing behind; a low descriptor limit slows a fan-out down instead of
//! failing hosts; arguments that are not UTF-8 pass unchanged; `--idempotent` runs again what a
//! dying master cut short.

mod support;

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use conn_testkit::{TestSshd, procfs, run_with_timeout, wait_until};
use support::{conn, fleet_config, names, text};

const SETTLE: Duration = Duration::from_secs(20);

/// A fleet of aliases of one private sshd, with a socket directory of its own.
struct Fleet {
    server: TestSshd,
    config: PathBuf,
    sockets: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn new(prefix: &str, n: usize) -> Fleet {
        let server = TestSshd::start_default().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = fleet_config(&server, dir.path(), &names(prefix, n, 1));
        Fleet {
            server,
            config,
            sockets: conn_testkit::socket_dir(),
            _dir: dir,
        }
    }

    /// `conn SUB -F cfg --socket-dir dir EXTRA…`.
    fn args(&self, sub: &str, extra: &[&str]) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![sub.into(), "-F".into()];
        argv.push(self.config.clone().into());
        argv.push("--socket-dir".into());
        argv.push(self.sockets.path().into());
        argv.extend(extra.iter().map(OsString::from));
        argv
    }

    /// Live masters of this fleet: `ssh -M` processes on its sockets that run in the
    /// background (a master start still in the foreground, a child of conn, is a client here:
    /// one left behind is a leak).
    fn masters(&self) -> Vec<u32> {
        procfs::ssh_masters(&self.sockets.path().to_string_lossy())
            .into_iter()
            .filter(|&pid| {
                procfs::process(pid)
                    .and_then(|p| procfs::comm(p.ppid))
                    .is_none_or(|parent| parent != "conn")
            })
            .collect()
    }

    /// `ssh` processes of this fleet that are not masters (`ssh -S` clients, master starts).
    fn clients(&self) -> Vec<u32> {
        let dir = self.sockets.path().to_string_lossy().into_owned();
        let masters = self.masters();
        procfs::find("ssh", &dir)
            .into_iter()
            .filter(|p| !masters.contains(p))
            .collect()
    }

    /// Names whose lease is held or was left abandoned (not released).
    fn unreleased_leases(&self) -> usize {
        let out = run_with_timeout(
            conn()
                .args(["leases", "--json", "--socket-dir"])
                .arg(self.sockets.path()),
            SETTLE,
        )
        .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|ns| ns["held"].as_u64().unwrap_or(0) + ns["abandoned"].as_u64().unwrap_or(0))
            .sum::<u64>() as usize
    }

    fn end_masters(&self) {
        for pid in self.masters() {
            // SAFETY: kill(2) on a master this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.end_masters();
    }
}

fn send(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Waits (bounded) for `child` to exit; its status code and how long that took.
fn wait_exit(child: &mut Child, from: Instant) -> (Option<i32>, Duration) {
    let mut status = None;
    assert!(
        wait_until(SETTLE, || {
            status = child.try_wait().unwrap();
            status.is_some()
        }),
        "conn did not exit after the signal"
    );
    (status.unwrap().code(), from.elapsed())
}

/// What a signalled run did.
#[derive(Debug)]
struct Case {
    what: String,
    code: Option<i32>,
    took: Duration,
}

#[test]
fn every_kind_of_run_ends_at_once_on_a_signal_with_130_and_leaves_nothing() {
    let fleet = Fleet::new("s", 3);
    let input = fleet._dir.path().join("input");
    fs::write(&input, vec![b'x'; 1 << 20]).unwrap();
    // A big sparse file: the copy is still on its way when the signal comes.
    let big = fleet._dir.path().join("big");
    fs::File::create(&big).unwrap().set_len(8 << 30).unwrap();
    let dest = tempfile::Builder::new()
        .prefix("cf")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dest.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let dest_arg = format!("{}/", dest.path().display());
    let mut cases = Vec::new();
    let mut n = 0;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        for mux in ["native", "process"] {
            for scenario in ["one", "many", "-b", "--json", "--stdin-all", "copy"] {
                n += 1;
                // A sleep of its own length: found by it, whatever else runs.
                let nap = format!("20.{n:03}");
                let script = format!("echo started; exec sleep {nap}");
                let mut extra: Vec<&str> = vec!["--mux", mux];
                let hosts = if scenario == "one" { "s1" } else { "s[1-3]" };
                let sub = if scenario == "copy" { "copy" } else { "run" };
                extra.extend(["-w", hosts]);
                match scenario {
                    "-b" | "--json" | "--stdin-all" => extra.push(scenario),
                    _ => {}
                }
                let big_arg = big.to_string_lossy().into_owned();
                if sub == "copy" {
                    extra.extend([big_arg.as_str(), dest_arg.as_str()]);
                } else {
                    extra.extend(["--", "sh", "-c", &script]);
                }
                let mut cmd = conn();
                cmd.args(fleet.args(sub, &extra))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if scenario == "--stdin-all" {
                    cmd.stdin(fs::File::open(&input).unwrap());
                }
                let mut child = cmd.spawn().unwrap();
                // Until the remote side works: the sleeps run, or the copy's receivers.
                let busy = |want: usize| {
                    if sub == "copy" {
                        procfs::find("sh", "conn-copy").len() >= want
                    } else {
                        procfs::find("sleep", &nap).len() >= want && !fleet.masters().is_empty()
                    }
                };
                let want = if scenario == "one" { 1 } else { 3 };
                assert!(
                    wait_until(SETTLE, || busy(want)),
                    "{scenario} over {mux}: the remote side never started"
                );
                let from = Instant::now();
                send(&child, signal);
                let (code, took) = wait_exit(&mut child, from);
                cases.push(Case {
                    what: format!("{sub} {scenario} --mux {mux}, signal {signal}"),
                    code,
                    took,
                });
                // Nothing of conn's left: its ssh clients (process mux) are gone, every lease
                // was given back.
                assert!(
                    wait_until(SETTLE, || fleet.clients().is_empty()),
                    "{scenario} over {mux}: ssh clients left: {:?}",
                    fleet.clients()
                );
                assert_eq!(
                    fleet.unreleased_leases(),
                    0,
                    "{scenario} over {mux}: a lease was not released"
                );
                // The remote commands go on (ssh cannot signal them without a tty): end them
                // before the next case.
                for pid in procfs::find("sleep", &nap) {
                    // SAFETY: kill(2) on a remote command this test started.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                let _ = fs::remove_dir_all(dest.path().join("big"));
            }
        }
    }
    let slowest = cases.iter().map(|c| c.took).max().unwrap();
    eprintln!(
        "{} cases; slowest exit after the signal: {slowest:?}",
        cases.len()
    );
    for case in &cases {
        eprintln!("  {:?} after {:?}: {}", case.code, case.took, case.what);
    }
    let wrong: Vec<&Case> = cases.iter().filter(|c| c.code != Some(130)).collect();
    assert!(wrong.is_empty(), "not 130: {wrong:#?}");
    // The requirement is one second; the bound here leaves room for a loaded test machine
    // (the measured figures are printed above and recorded in docs/testing.md).
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
}

#[test]
fn a_hundred_hosts_under_ulimit_n_64_all_answer() {
    let fleet = Fleet::new("d", 100);
    let mut argv: Vec<OsString> = vec!["--nofile=64:64".into(), env!("CARGO_BIN_EXE_conn").into()];
    argv.extend(fleet.args(
        "run",
        &["-w", "d[1-100]", "--exit-on-shutdown", "--", "echo", "ok"],
    ));
    let out = run_with_timeout(
        Command::new("prlimit").args(&argv).stdin(Stdio::null()),
        Duration::from_secs(600),
    )
    .unwrap();
    let stdout = text(&out.stdout);
    let answered = stdout.lines().filter(|l| l.ends_with(": ok")).count();
    assert_eq!(
        answered,
        100,
        "exit {:?}; stderr: {}",
        out.status.code(),
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(fleet.server.accepted_logins(), 100, "one master per host");
}

#[test]
fn arguments_that_are_not_utf8_pass_unchanged() {
    let fleet = Fleet::new("u", 1);
    let mut argv = fleet.args("run", &["-w", "u1", "--", "printf", "%s"]);
    argv.push(OsString::from_vec(b"a\xffb".to_vec()));
    let out = run_with_timeout(conn().args(&argv), SETTLE).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout, b"a\xffb");
}

#[test]
fn idempotent_runs_again_what_a_dying_master_cut_short() {
    let fleet = Fleet::new("i", 2);
    // Warm masters first, so that the one to kill is known.
    let warm = run_with_timeout(
        conn().args(fleet.args("run", &["-w", "i[1-2]", "--", "true"])),
        SETTLE,
    )
    .unwrap();
    assert_eq!(warm.status.code(), Some(0), "{}", text(&warm.stderr));
    let mark = format!("conn-idem-{}", std::process::id());
    // Each run of the command leaves a file once all its output is written: the remote command
    // lives only milliseconds (its 1.3 MB fit in the channel's window), too short to be caught
    // in a process listing.
    let done = tempfile::Builder::new()
        .prefix("idem")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(done.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let script = format!(
        "seq 1 200000; mktemp -p {} >/dev/null; exit 0 # {mark}",
        done.path().display()
    );
    let outdir = tempfile::tempdir().unwrap();
    let outdir_arg = outdir.path().to_str().unwrap().to_string();
    let mut child = conn()
        .args(fleet.args(
            "run",
            &[
                "-w",
                "i1,i2",
                "--outdir",
                &outdir_arg,
                "--idempotent",
                "--retries",
                "1",
                "--",
                "sh",
                "-c",
                &script,
            ],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads conn's stdout yet: the hosts' output piles up in their masters. Once both
    // remote commands are done, kill every master.
    assert!(
        wait_until(SETTLE, || fs::read_dir(done.path()).unwrap().count() >= 2),
        "both remote commands wrote all their output"
    );
    assert!(wait_until(SETTLE, || procfs::find("sh", &mark).is_empty()));
    fleet.end_masters();
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("that may have run (--idempotent)"),
        "the summary counts the retries: {stderr}"
    );
    let stdout = text(&stdout);
    let expected: Vec<u8> = (1..=200000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    for host in ["i1", "i2"] {
        assert!(
            stdout.contains(&format!("{host}: 200000\n")),
            "{host}'s output came whole in the end"
        );
        // The host's file holds the last attempt only, once.
        let file = fs::read(outdir.path().join(host)).unwrap();
        assert_eq!(file, expected, "{host}'s --outdir file");
    }
}

#[test]
fn kill_remote_ends_every_host_s_remote_command_on_a_signal_and_without_it_they_run_on() {
    let fleet = Fleet::new("k", 3);
    let mut cases = Vec::new();
    for mux in ["native", "process"] {
        for kill in [true, false] {
            let nap = format!("987.{}{}", std::process::id(), cases.len());
            let mut extra = vec!["--mux", mux, "-w", "k[1-3]"];
            if kill {
                extra.push("--kill-remote");
            }
            extra.extend(["--", "sleep", &nap]);
            let mut child = conn()
                .args(fleet.args("run", &extra))
                .env("CONN_LOG", "debug")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Every host's remote shell has reported its group once conn logs it three times
            // (only then can a signal be expected to reach the remote side).
            let (tx, rx) = std::sync::mpsc::channel();
            let stderr = child.stderr.take().unwrap();
            let reader = std::thread::spawn(move || {
                let mut seen = String::new();
                for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                    let line = line.unwrap_or_default();
                    if line.contains("the remote shell reported process group") {
                        let _ = tx.send(());
                    }
                    if !line.contains("DEBUG") {
                        seen.push_str(&line);
                        seen.push('\n');
                    }
                }
                seen
            });
            if kill {
                for _ in 0..3 {
                    rx.recv_timeout(SETTLE)
                        .expect("a host's group was never reported");
                }
            }
            assert!(
                wait_until(SETTLE, || procfs::find("sleep", &nap).len() == 3),
                "{mux}: the remote sleeps never started"
            );
            let sleeps = procfs::find("sleep", &nap);
            let from = Instant::now();
            send(&child, libc::SIGTERM);
            let (code, took) = wait_exit(&mut child, from);
            let left = || sleeps.iter().filter(|&&p| procfs::is_alive(p)).count();
            let as_expected = if kill {
                wait_until(Duration::from_secs(2), || left() == 0)
            } else {
                // Still there once conn has gone, and a while later.
                let now = left();
                std::thread::sleep(Duration::from_millis(500));
                now == 3 && left() == 3
            };
            let messages = reader.join().unwrap();
            cases.push((mux, kill, code, took));
            for pid in &sleeps {
                // SAFETY: kill(2) on a remote command this test started.
                unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
            }
            assert_eq!(code, Some(130), "{mux} kill={kill}: {messages}");
            assert!(
                as_expected,
                "{mux}: with --kill-remote={kill}, {} of 3 remote sleeps left",
                left()
            );
            assert!(
                !messages.contains("cannot end remote process group"),
                "{messages}"
            );
        }
    }
    for (mux, kill, code, took) in &cases {
        eprintln!("  --mux {mux} kill_remote={kill}: {code:?} after {took:?}");
    }
    let slowest = cases.iter().map(|c| c.3).max().unwrap();
    // The requirement is one second; the bound leaves room for a loaded test machine.
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");
}

#[test]
fn kill_remote_leaves_a_host_s_stderr_as_the_command_wrote_it() {
    let fleet = Fleet::new("e", 2);
    for mux in ["native", "process"] {
        for hosts in ["e1", "e[1-2]"] {
            let script = "echo first >&2; echo out";
            let out = run_with_timeout(
                conn().args(fleet.args(
                    "run",
                    &[
                        "--mux",
                        mux,
                        "--kill-remote",
                        "-w",
                        hosts,
                        "--",
                        "sh",
                        "-c",
                        script,
                    ],
                )),
                SETTLE,
            )
            .unwrap();
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            assert_eq!(out.status.code(), Some(0), "{stderr}");
            if hosts == "e1" {
                // One host: its streams passed through as they are.
                assert_eq!(
                    (stdout.as_str(), stderr.as_str()),
                    ("out\n", "first\n"),
                    "{mux}"
                );
            } else {
                let mut lines: Vec<&str> = stderr.lines().collect();
                lines.sort();
                assert_eq!(lines, ["e1: first", "e2: first"], "{mux}");
            }
        }
    }
}
