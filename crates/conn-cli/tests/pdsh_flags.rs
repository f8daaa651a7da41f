//! The letters pdsh and clush users type, given to `conn run` against the private sshd on
//! 127.0.0.1 (many aliases of one daemon), each checked for the meaning it has there: `-f`
//! (never more hosts at once), `-l`, `-t` (against a port that accepts and never speaks), `-u`,
//! `-N`, `-S`, `-L`, `-B`, `-b`, `-k`, `-P`, `--color` with `NO_COLOR`, `CLICOLOR` and
//! `CLICOLOR_FORCE`, `--diff` (against `clush --diff` itself), `-o` in both forms, `-q`, and
//! `--outdir`/`--errdir` (byte for byte, and 1 GiB from one host in bounded memory).
//!
//! Nothing here waits on luck: remote commands that must wait for the test poll a gate file the
//! test creates, with a limit, and every `conn` has a watchdog.

mod support;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use conn_testkit::{run_with_timeout, wait_until};
use support::*;

/// The log of a run whose hosts append `start HOST` and `end HOST` lines to one file.
fn read_log(path: &Path) -> Vec<(String, String)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(event, host)| (event.to_string(), host.to_string()))
        .collect()
}

/// The most hosts between their `start` and `end` at once, by the log.
fn most_at_once(log: &[(String, String)]) -> usize {
    let mut running = BTreeSet::new();
    let mut most = 0;
    for (event, host) in log {
        match event.as_str() {
            "start" => {
                running.insert(host.clone());
            }
            _ => {
                running.remove(host);
            }
        }
        most = most.max(running.len());
    }
    most
}

// ---------------------------------------------------------------------------------------------
// -f, -l, -t, -u
// ---------------------------------------------------------------------------------------------

/// `-f 2` over five hosts whose commands each log their start, wait at a gate, and log their
/// end: at every step exactly two have started and not ended, the next one starts only once
/// the test has let one end, and none starts while two run (each step also watches for a
/// third start for a while). The masters are warm, so a third host would start in
/// milliseconds.
#[test]
fn f_never_runs_more_than_n_hosts_at_once() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let hosts = names("fleet", 5, 2);
    let config = fleet_config(&server, dir.path(), &hosts);
    let warm = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["-w", "fleet[01-05]", "--", "true"],
    ));
    assert_eq!(warm.status.code(), Some(0), "{}", text(&warm.stderr));

    let gates = shared_dir("fanout");
    let log = gates.path().join("log");
    let g = gates.path().display();
    let script = format!(
        "{}echo \"start $CONN_ALIAS\" >> {g}/log; gate {g}/go-$CONN_ALIAS; \
         echo \"end $CONN_ALIAS\" >> {g}/log; echo \"done $CONN_ALIAS\"",
        gate_fn()
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["-f", "2", "-w", "fleet[01-05]", "--", "sh", "-c", &script],
    );
    let mut conn = Running::spawn(&argv, Duration::from_secs(300), |_| {});
    let stdout = conn.collect_stdout();
    let stderr = conn.collect_stderr();
    let mut released = Vec::new();
    for step in 0..hosts.len() {
        let want = (step + 2).min(hosts.len());
        let started = || read_log(&log).iter().filter(|(e, _)| e == "start").count();
        assert!(
            wait_until(WAIT, || started() >= want),
            "step {step}: {want} hosts never started: {:?}",
            read_log(&log)
        );
        // A third host would start within milliseconds on a warm master: give it the chance.
        let more = wait_until(Duration::from_millis(300), || started() > want);
        assert!(
            !more,
            "step {step}: more than 2 hosts at once: {:?}",
            read_log(&log)
        );
        let next = read_log(&log)
            .into_iter()
            .find(|(e, h)| e == "start" && !released.contains(h))
            .expect("a started host still at its gate")
            .1;
        File::create(gates.path().join(format!("go-{next}"))).unwrap();
        released.push(next);
    }
    let end = conn.wait(WAIT);
    let stderr = text(&stderr.join().unwrap());
    assert_eq!(end.code, Some(0), "{end:?}: {stderr}");
    let log = read_log(&log);
    assert_eq!(most_at_once(&log), 2, "{log:?}");
    assert_eq!(log.len(), 10, "every host started and ended once: {log:?}");
    let starts: Vec<&str> = log
        .iter()
        .filter(|(e, _)| e == "start")
        .map(|(_, h)| h.as_str())
        .collect();
    // The workers take the hosts in the set's order.
    assert_eq!(
        BTreeSet::from_iter(&starts[..2]),
        BTreeSet::from_iter(&["fleet01", "fleet02"])
    );
    assert_eq!(&starts[2..], ["fleet03", "fleet04", "fleet05"]);
    let want: Vec<String> = hosts.iter().map(|h| format!("{h}: done {h}")).collect();
    assert_eq!(sorted_lines(&stdout.join().unwrap()), want);
}

/// A config without `User` lines: `-l conntest` logs in as conntest on every host given
/// without `user@` (`whoami` says so), a host given as `root@…` keeps its user (refused by
/// the daemon, exit 255), and without `-l` ssh's own default (the local user, root) is refused.
#[test]
fn l_is_the_login_user_of_every_host_without_one() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config_keeping(&server, dir.path(), &names("fleet", 3, 2), |line| {
        !line.starts_with("User ")
    });
    assert!(!fs::read_to_string(&config).unwrap().contains("User "));
    let run = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["--", "whoami"]);
        run_conn(fleet_args("run", &config, dir.path(), &args))
    };

    let out = run(&["-l", "conntest", "-w", "fleet[01-02]"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        sorted_lines(&out.stdout),
        ["fleet01: conntest", "fleet02: conntest"]
    );

    let out = run(&["-l", "conntest", "-w", "root@fleet03,fleet02"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert_eq!(text(&out.stdout), "fleet02: conntest\n");
    assert!(stderr.contains("conn: root@fleet03: "), "{stderr}");
    assert!(stderr.contains("conn: 1 of 2 hosts failed"), "{stderr}");

    let out = run(&["-w", "fleet01"]);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// A loopback port that accepts connections and never says a word (no SSH banner), held open
/// until dropped; counts what it accepted.
struct Silent {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (Arc::clone(&accepted), Arc::clone(&stop));
        thread::spawn(move || {
            let mut held = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        held.push(stream);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Silent {
            port,
            accepted,
            stop,
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `-t 2`: a host whose port accepts and never speaks fails with 255 after about 2 s (ssh's
/// ConnectTimeout also bounds the banner exchange), while the other host answers; without
/// `-t` the same host is still connecting when `-u 4` ends it (124): `-t` is what bounded it.
#[test]
fn t_bounds_the_connect_of_a_new_master() {
    let server = start_fleet_sshd(&[]);
    let silent = Silent::start();
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 1, 2));
    let cfg = fs::read_to_string(&config).unwrap();
    // First match wins: this Port comes before the one under `Host *`.
    fs::write(&config, format!("Host mute\n  Port {}\n{cfg}", silent.port)).unwrap();

    let start = Instant::now();
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["-t", "2", "-w", "mute,fleet01", "--", "echo", "ok"],
    ));
    let took = start.elapsed();
    let stderr = text(&out.stderr);
    eprintln!("-t 2 against a silent port: {took:.1?}: {stderr}");
    assert_eq!(out.status.code(), Some(255), "{stderr}");
    assert_eq!(text(&out.stdout), "fleet01: ok\n");
    assert!(
        stderr.contains("conn: mute: ") && stderr.contains("timed out"),
        "{stderr}"
    );
    assert!(stderr.contains("conn: 1 of 2 hosts failed"), "{stderr}");
    assert!(
        silent.accepted.load(Ordering::Relaxed) >= 1,
        "ssh reached the port"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "{took:?}"
    );

    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["-u", "4", "-w", "mute", "--", "echo", "ok"],
    ));
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
}

/// `-u 1`: the host still running at its deadline is ended (exit 124, the summary says the
/// timeout expired), the other one answers; fractions are allowed.
#[test]
fn u_ends_a_host_at_its_deadline_with_124() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let script = "case $CONN_ALIAS in fleet01) sleep 30 ;; esac; echo done";
    for u in ["1", "0.5"] {
        let start = Instant::now();
        let out = run_conn(fleet_args(
            "run",
            &config,
            dir.path(),
            &["-u", u, "-w", "fleet[01-02]", "--", "sh", "-c", script],
        ));
        let took = start.elapsed();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(124), "-u {u}: {stderr}");
        assert_eq!(text(&out.stdout), "fleet02: done\n");
        let want = format!(
            "conn: fleet01: timeout of {}",
            if u == "1" { "1s" } else { "500ms" }
        );
        assert!(
            stderr.contains(&want) && stderr.contains("expired"),
            "-u {u}: {stderr}"
        );
        assert!(took < Duration::from_secs(25), "-u {u}: {took:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Output: -N, -S, -L, -b, -B, -q
// ---------------------------------------------------------------------------------------------

/// `-N`: streamed lines, `-L` lines and `-b` blocks come without the host (clush drops the
/// headers of `-b` too).
#[test]
fn n_drops_the_host_prefix() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let run = |extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend([
            "-w",
            "fleet[01-02]",
            "--",
            "sh",
            "-c",
            "echo \"out $CONN_ALIAS\"; echo \"err $CONN_ALIAS\" >&2",
        ]);
        let out = run_conn(fleet_args("run", &config, dir.path(), &args));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        out
    };
    let out = run(&["-N"]);
    assert_eq!(sorted_lines(&out.stdout), ["out fleet01", "out fleet02"]);
    assert_eq!(sorted_lines(&out.stderr), ["err fleet01", "err fleet02"]);
    let out = run(&["-N", "-L"]);
    assert_eq!(text(&out.stdout), "out fleet01\nout fleet02\n");
    assert_eq!(text(&out.stderr), "err fleet01\nerr fleet02\n");
    let out = run(&["-N", "-b"]);
    assert_eq!(text(&out.stdout), "out fleet01\nout fleet02\n");
    assert_eq!(sorted_lines(&out.stderr), ["err fleet01", "err fleet02"]);
}

/// `-S` is accepted and changes nothing: the exit status is the largest of the hosts' with it
/// and without it.
#[test]
fn s_is_accepted_and_the_status_is_the_largest() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 3, 2));
    let script = "case $CONN_ALIAS in fleet01) exit 3 ;; fleet02) exit 7 ;; esac";
    for extra in [&["-S"][..], &[][..]] {
        let mut args = extra.to_vec();
        args.extend(["-w", "fleet[01-03]", "--", "sh", "-c", script]);
        let out = run_conn(fleet_args("run", &config, dir.path(), &args));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{extra:?}: {stderr}");
        assert_eq!(
            stderr,
            "conn: fleet01: exit code 3\nconn: fleet02: exit code 7\nconn: 2 of 3 hosts failed\n"
        );
    }
}

/// `-L`: nothing while the hosts run, then every host's lines prefixed, in host order: the
/// second host printed first (the first waits until the second is done), yet comes second.
#[test]
fn sorted_output_comes_in_host_order_once_every_host_ended() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let gates = shared_dir("sorted");
    let g = gates.path().display();
    let script = format!(
        "{}case $CONN_ALIAS in \
         fleet01) gate {g}/go; echo a1; echo e1 >&2; printf a2 ;; \
         fleet02) echo b1; echo e2 >&2; touch {g}/done-fleet02 ;; esac",
        gate_fn()
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["-L", "-w", "fleet[01-02]", "--", "sh", "-c", &script],
    );
    let mut conn = Running::spawn(&argv, Duration::from_secs(120), |_| {});
    let rx = conn.lines();
    assert!(
        wait_until(WAIT, || gates.path().join("done-fleet02").exists()),
        "fleet02 never ran"
    );
    File::create(gates.path().join("go")).unwrap();
    let end = conn.wait(WAIT);
    assert_eq!(end.code, Some(0), "{end:?}");
    let lines: Vec<(Stream, String)> = rx.iter().map(|(s, l)| (s, text(&l))).collect();
    let of = |stream| -> String {
        lines
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l.as_str())
            .collect()
    };
    assert_eq!(of(Stream::Out), "fleet01: a1\nfleet01: a2\nfleet02: b1\n");
    assert_eq!(of(Stream::Err), "fleet01: e1\nfleet02: e2\n");
}

/// `-b` (clush's): stderr is streamed, prefixed, while the hosts run; stdout is gathered, and
/// hosts whose stdout and status are the same are one block, whatever their stderr said.
#[test]
fn b_streams_stderr_and_gathers_stdout() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 3, 2));
    let gates = shared_dir("gather");
    let g = gates.path().display();
    let script = format!(
        "{}echo \"warn $CONN_ALIAS\" >&2; case $CONN_ALIAS in \
         fleet01) gate {g}/go; echo same ;; fleet02) echo same ;; \
         fleet03) echo other; exit 4 ;; esac",
        gate_fn()
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &["-b", "-w", "fleet[01-03]", "--", "sh", "-c", &script],
    );
    let mut conn = Running::spawn(&argv, Duration::from_secs(120), |_| {});
    let rx = conn.lines();
    let mut early = BTreeSet::new();
    while early.len() < 3 {
        let (stream, line) = next_line(&rx, "the warnings");
        assert_eq!(stream, Stream::Err, "stdout before the end: {line:?}");
        early.insert(line);
    }
    assert_eq!(
        early,
        BTreeSet::from(
            [
                "fleet01: warn fleet01\n",
                "fleet02: warn fleet02\n",
                "fleet03: warn fleet03\n"
            ]
            .map(String::from)
        )
    );
    assert!(conn.is_running(), "fleet01 still waits at its gate");
    File::create(gates.path().join("go")).unwrap();
    let end = conn.wait(WAIT);
    assert_eq!(end.code, Some(4), "{end:?}");
    let rest: Vec<(Stream, String)> = rx.iter().map(|(s, l)| (s, text(&l))).collect();
    let of = |stream| -> String {
        rest.iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l.as_str())
            .collect()
    };
    assert_eq!(
        of(Stream::Out),
        "---------------\nfleet[01-02] (2)\n---------------\nsame\n\
         ---------------\nfleet03: exit code 4\n---------------\nother\n"
    );
    assert_eq!(
        of(Stream::Err),
        "conn: fleet03: exit code 4\nconn: 1 of 3 hosts failed\n"
    );
}

/// `-B`: nothing while the hosts run; stdout and stderr both gathered, hosts grouped when both
/// are the same, each group's stderr (unprefixed) right after its stdout.
#[test]
fn big_b_gathers_stdout_and_stderr() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 3, 2));
    let script = "echo same; case $CONN_ALIAS in fleet03) echo odd >&2 ;; *) echo even >&2 ;; esac";
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["-B", "-w", "fleet[01-03]", "--", "sh", "-c", script],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "---------------\nfleet[01-02] (2)\n---------------\nsame\n\
         ---------------\nfleet03\n---------------\nsame\n"
    );
    assert_eq!(text(&out.stderr), "even\nodd\n");
}

/// `-q`: no summary of the failures (the status still says it); the hosts' own stderr stays.
#[test]
fn q_prints_no_summary() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let script = "echo oops >&2; case $CONN_ALIAS in fleet01) exit 5 ;; esac";
    for (extra, summary) in [(&["-q"][..], false), (&[][..], true)] {
        let mut args = extra.to_vec();
        args.extend(["-w", "fleet[01-02]", "--", "sh", "-c", script]);
        let out = run_conn(fleet_args("run", &config, dir.path(), &args));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        let mut want = vec!["fleet01: oops".to_string(), "fleet02: oops".into()];
        if summary {
            want.insert(0, "conn: 1 of 2 hosts failed".into());
            want.insert(1, "conn: fleet01: exit code 5".into());
        }
        assert_eq!(sorted_lines(&out.stderr), want, "{extra:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// -k
// ---------------------------------------------------------------------------------------------

/// `-k -f 2` over five hosts: fleet02 fails (exit 3) while fleet01 runs; fleet01 is ended (its
/// gate never opens, yet conn ends), fleet03 to fleet05 never start (their markers never
/// appear), the summary says which host failed and which were stopped or skipped, and the exit
/// status is the failure's own.
#[test]
fn k_fails_fast() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 5, 2));
    let gates = shared_dir("failfast");
    let g = gates.path().display();
    let script = format!(
        "{}touch {g}/started-$CONN_ALIAS; case $CONN_ALIAS in \
         fleet01) gate {g}/never ;; fleet02) gate {g}/started-fleet01; exit 3 ;; esac",
        gate_fn()
    );
    let start = Instant::now();
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &[
            "-k",
            "-f",
            "2",
            "-w",
            "fleet[01-05]",
            "--",
            "sh",
            "-c",
            &script,
        ],
    ));
    let stderr = text(&out.stderr);
    assert!(
        start.elapsed() < Duration::from_secs(50),
        "conn waited for fleet01's gate: {stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(
        stderr,
        "conn: fleet01: ended: another host failed first (fail-fast)\n\
         conn: fleet02: exit code 3\n\
         conn: fleet[03-05]: not started: another host failed first (fail-fast)\n\
         conn: 5 of 5 hosts failed\n"
    );
    let mut started: Vec<String> = fs::read_dir(gates.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    started.sort();
    assert_eq!(started, ["started-fleet01", "started-fleet02"]);

    // Nothing fails: -k changes nothing.
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["-k", "-w", "fleet[01-05]", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

// ---------------------------------------------------------------------------------------------
// -P, --color
// ---------------------------------------------------------------------------------------------

/// `-P` draws the progress bar on a terminal (and without `-P` nothing is drawn there); when
/// stderr is a pipe, `-P` prints nothing at all.
#[test]
fn p_draws_a_progress_bar_only_on_a_terminal() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 3, 2));
    let argv = |progress: bool| {
        let mut args = vec!["-w", "fleet[01-03]", "--", "sleep", "1"];
        if progress {
            args.insert(0, "-P");
        }
        fleet_args("run", &config, dir.path(), &args)
    };

    let out = run_conn(argv(true));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{:?}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{:?}", text(&out.stdout));

    for progress in [true, false] {
        let (controller, terminal) = pty();
        let mut reader = TerminalReader::new(controller);
        let for_conn = terminal.try_clone().unwrap();
        let conn = Running::spawn(&argv(progress), Duration::from_secs(120), |c| {
            c.stderr(for_conn);
        });
        let end = conn.wait(WAIT);
        assert_eq!(end.code, Some(0), "{end:?}");
        (&terminal).write_all(b"--sentinel--").unwrap();
        let shown = text(&reader.until(b"--sentinel--"));
        if progress {
            assert!(shown.contains("hosts done"), "-P on a terminal: {shown:?}");
        } else {
            assert_eq!(shown, "--sentinel--", "no -P");
        }
    }
}

/// `--color`: `always` colours the prefixes (cyan), stderr lines (red) and `-b` headers (bold
/// blue) on a pipe; `never` never does, not even with CLICOLOR_FORCE; `auto` colours a
/// terminal unless NO_COLOR (not empty) or CLICOLOR=0, and a pipe only with CLICOLOR_FORCE
/// (not 0), which NO_COLOR overrides (as in clush).
#[test]
fn color_follows_the_flag_and_the_environment() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let argv = |color: &str, extra: &[&str]| {
        let mut args = vec![color];
        args.extend(extra);
        args.extend([
            "-w",
            "fleet[01-02]",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ]);
        fleet_args("run", &config, dir.path(), &args)
    };
    let colour_out = ["\x1b[36mfleet01: \x1b[0mout", "\x1b[36mfleet02: \x1b[0mout"];
    let colour_err = ["\x1b[31mfleet01: err\x1b[0m", "\x1b[31mfleet02: err\x1b[0m"];
    let plain_out = ["fleet01: out", "fleet02: out"];
    let plain_err = ["fleet01: err", "fleet02: err"];
    let on_pipe = |color: &str, env: &[(&str, &str)]| {
        let out = run_conn_with(&argv(color, &[]), |c| {
            c.env_remove("NO_COLOR");
            for (k, v) in env {
                c.env(k, v);
            }
        });
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        (sorted_lines(&out.stdout), sorted_lines(&out.stderr))
    };
    let colour = (
        colour_out.map(String::from).to_vec(),
        colour_err.map(String::from).to_vec(),
    );
    let plain = (
        plain_out.map(String::from).to_vec(),
        plain_err.map(String::from).to_vec(),
    );
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Env, bool); 8] = [
        ("--color=always", &[], true),
        ("--color=always", &[("NO_COLOR", "1")], true),
        ("--color=never", &[("CLICOLOR_FORCE", "1")], false),
        ("--color=auto", &[], false),
        ("--color=auto", &[("CLICOLOR_FORCE", "1")], true),
        ("--color=auto", &[("CLICOLOR_FORCE", "0")], false),
        (
            "--color=auto",
            &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")],
            false,
        ),
        ("--color=auto", &[("CLICOLOR", "1")], false),
    ];
    for (color, env, coloured) in cases {
        let want = if coloured { &colour } else { &plain };
        assert_eq!(&on_pipe(color, env), want, "{color} {env:?} on a pipe");
    }

    let out = run_conn_with(&argv("--color=always", &["-b"]), |_| {});
    assert_eq!(
        text(&out.stdout),
        "\x1b[1;34m---------------\x1b[0m\n\x1b[1;34mfleet[01-02] (2)\x1b[0m\n\
         \x1b[1;34m---------------\x1b[0m\nout\n"
    );

    // stdout a terminal.
    let on_terminal = |env: &[(&str, &str)]| -> String {
        let (controller, terminal) = pty();
        let mut reader = TerminalReader::new(controller);
        let for_conn = terminal.try_clone().unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut conn = Running::spawn(&argv("--color=auto", &[]), Duration::from_secs(120), |c| {
            c.stdout(for_conn).env_remove("NO_COLOR");
            for (k, v) in env {
                c.env(k, v);
            }
        });
        let stderr = conn.collect_stderr();
        let end = conn.wait(WAIT);
        assert_eq!(end.code, Some(0), "{end:?}");
        drop(stderr.join());
        (&terminal).write_all(b"--sentinel--").unwrap();
        text(&reader.until(b"--sentinel--"))
    };
    let shown = on_terminal(&[]);
    assert!(
        shown.contains(colour_out[0]) && shown.contains(colour_out[1]),
        "{shown:?}"
    );
    for env in [&[("NO_COLOR", "1")][..], &[("CLICOLOR", "0")][..]] {
        let shown = on_terminal(env);
        assert!(!shown.contains('\x1b'), "{env:?}: {shown:?}");
        assert!(shown.contains(plain_out[0]), "{env:?}: {shown:?}");
    }
    let shown = on_terminal(&[("NO_COLOR", "")]);
    assert!(
        shown.contains(colour_out[0]),
        "an empty NO_COLOR: {shown:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// --diff
// ---------------------------------------------------------------------------------------------

/// The path of `program` on PATH.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// `--diff` prints what `clush --diff` prints, byte for byte, for the same hosts running the
/// same script through the same ssh_config: the reference is the first group in clush's order
/// (`--- fleet[01-03,09] (4)`: fleet09's last line has no newline and still belongs), then
/// for each other output `+++ HOSTS` and `@@ … @@` hunks with three lines of context, changes
/// at most six lines apart in one hunk, a host without output diffed as empty, a failing host
/// too; the stderr lines are streamed, and identical outputs print nothing.
#[test]
fn diff_prints_what_clush_diff_prints() {
    let clush = which("clush").unwrap_or_else(|| {
        panic!(
            "ClusterShell's `clush` is not installed: run `bash scripts/setup.sh` (as root it \
             installs the clustershell package)"
        )
    });
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let hosts = names("fleet", 9, 2);
    let config = fleet_config(&server, dir.path(), &hosts);
    let shared = shared_dir("diff");
    let script = shared.path().join("diff.sh");
    fs::write(
        &script,
        "ref() { i=1; while [ $i -le 30 ]; do echo \"line $i\"; i=$((i + 1)); done; }\n\
         case $CONN_ALIAS in\n\
         fleet04) ref | sed 's/^line 2$/line two/' ;;\n\
         fleet05) ref | sed -e 's/^line 5$/five/' -e 's/^line 12$/twelve/' ;;\n\
         fleet06) ref | sed -e 's/^line 5$/five/' -e 's/^line 13$/thirteen/' ;;\n\
         fleet07) ref | sed 1d; echo extra; echo 'a warning' >&2; exit 1 ;;\n\
         fleet08) ;;\n\
         fleet09) ref | head -c -1 ;;\n\
         *) ref ;;\n\
         esac\n",
    )
    .unwrap();
    fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let script = script.display().to_string();

    let ours = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["--diff", "-w", "fleet[01-09]", "--", "sh", &script],
    ));
    let mut theirs = std::process::Command::new(&clush);
    theirs
        .arg("-o")
        .arg(format!("-F {}", config.display()))
        .args(["-w", "fleet[01-09]", "--diff", "--", "sh", &script])
        .stdin(Stdio::null())
        .env("NO_COLOR", "1");
    let theirs = run_with_timeout(&mut theirs, CONN_TIMEOUT).expect("clush finishes in time");
    let (ours_out, theirs_out) = (text(&ours.stdout), text(&theirs.stdout));
    eprintln!("conn --diff:\n{ours_out}\nclush --diff:\n{theirs_out}");
    assert!(theirs.status.success(), "{}", text(&theirs.stderr));
    assert!(
        theirs_out.starts_with("--- fleet[01-03,09] (4)\n+++ fleet04\n@@ "),
        "clush's shape is as expected: {theirs_out}"
    );
    assert_eq!(ours_out, theirs_out, "conn --diff vs clush --diff");
    let stderr = text(&ours.stderr);
    assert_eq!(ours.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "fleet07: a warning\nconn: fleet07: exit code 1\nconn: 1 of 9 hosts failed\n"
    );

    // The same output everywhere: nothing to show.
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &["--diff", "-w", "fleet[01-03]", "--", "echo", "same"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

// ---------------------------------------------------------------------------------------------
// -o
// ---------------------------------------------------------------------------------------------

/// What the masters under `sockets` logged (`-v` sends ssh's diagnostics there).
fn master_logs(sockets: &Path) -> String {
    let mut all = String::new();
    for entry in fs::read_dir(sockets).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.push_str(&master_logs(&path));
        } else if path.extension().is_some_and(|e| e == "log") {
            all.push_str(&fs::read_to_string(&path).unwrap_or_default());
        }
    }
    all
}

/// `-o Key=Value` reaches ssh ahead of the config (the masters negotiate compression, as their
/// `-v` logs say, and a SetEnv given so wins over the config's), and clush's string form
/// `-o "-oCompression=yes -p PORT"` reaches the bare 127.0.0.1, whose port only that string
/// gives; a word that is not an ssh option is a usage error before anything runs.
#[test]
fn o_takes_key_value_and_clush_s_string_of_options() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let zlib = "compression: zlib@openssh.com";
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &[
            "-v",
            "-o",
            "Compression=yes",
            "-o",
            "SetEnv=CONN_ALIAS=from-o",
            "-w",
            "fleet[01-02]",
            "--",
            "sh",
            "-c",
            "echo $CONN_ALIAS",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        sorted_lines(&out.stdout),
        ["fleet01: from-o", "fleet02: from-o"]
    );
    let logs = master_logs(dir.path());
    assert_eq!(
        logs.matches(zlib).count(),
        4,
        "two masters, both ways: {logs}"
    );

    // The control: without the option, no compression.
    let plain = conn_testkit::socket_dir();
    let out = run_conn(fleet_args(
        "run",
        &config,
        plain.path(),
        &["-v", "-w", "fleet01", "--", "true"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let logs = master_logs(plain.path());
    assert!(
        logs.contains("compression: none") && !logs.contains(zlib),
        "{logs}"
    );

    let bare = conn_testkit::socket_dir();
    let port = server.port().to_string();
    let mut argv: Vec<OsString> = os(&["run", "-F"]);
    argv.push(server.ssh_config_path().into());
    argv.push("--socket-dir".into());
    argv.push(bare.path().into());
    argv.extend(os(&[
        "-v",
        "-l",
        "conntest",
        "-o",
        &format!("-oCompression=yes -p {port}"),
        "-w",
        "127.0.0.1",
        "--",
        "whoami",
    ]));
    let out = run_conn(&argv);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "conntest\n");
    assert!(master_logs(bare.path()).contains(zlib));

    let logins = server.accepted_logins();
    for bad in ["-oCompression=yes -Z", "Compression"] {
        let out = run_conn(fleet_args(
            "run",
            &config,
            dir.path(),
            &["-o", bad, "-w", "fleet01", "--", "true"],
        ));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.starts_with("conn: error: "), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    assert_eq!(server.accepted_logins(), logins, "nothing ran");
}

// ---------------------------------------------------------------------------------------------
// --outdir, --errdir
// ---------------------------------------------------------------------------------------------

/// `--outdir` and `--errdir`: each host's stdout and stderr, byte for byte (NUL, 0xff, a
/// 300,000-byte line, no newline at the end), in DIR/HOST, a host that printed nothing with
/// empty files, while the usual output (prefixed lines, or `-b` blocks) goes on as without
/// them; a directory that cannot be made is a usage error before anything runs.
#[test]
fn outdir_and_errdir_hold_each_host_s_bytes() {
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 3, 2));
    let script = "case $CONN_ALIAS in \
                  fleet01) printf 'a\\000b\\377c\\nlast'; printf 'e\\001\\n' >&2 ;; \
                  fleet02) head -c 300000 /dev/zero | tr '\\0' y; echo; echo note >&2 ;; \
                  esac";
    let mut long = vec![b'y'; 300_000];
    long.push(b'\n');
    let files = tempfile::tempdir().unwrap();
    for (round, extra) in [&[][..], &["-b"][..]].into_iter().enumerate() {
        let out_dir = files.path().join(format!("out{round}"));
        let err_dir = files.path().join(format!("deep/err{round}"));
        let mut args = vec![
            "--outdir".to_string(),
            out_dir.display().to_string(),
            "--errdir".into(),
            err_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["-w", "fleet[01-03]", "--", "sh", "-c", script].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_conn(fleet_args("run", &config, dir.path(), &args));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let read = |d: &Path, h: &str| fs::read(d.join(h)).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert_eq!(read(&out_dir, "fleet01"), b"a\0b\xffc\nlast");
        assert!(read(&out_dir, "fleet02") == long, "fleet02's long line");
        assert_eq!(read(&out_dir, "fleet03"), b"");
        assert_eq!(read(&err_dir, "fleet01"), b"e\x01\n");
        assert_eq!(read(&err_dir, "fleet02"), b"note\n");
        assert_eq!(read(&err_dir, "fleet03"), b"");
        assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 3);
        // The usual output too.
        let stdout = text(&out.stdout);
        if extra.is_empty() {
            assert!(stdout.contains("fleet01: last\n"), "{stdout:.200}");
            assert!(stdout.contains("fleet02: yyy"), "{stdout:.200}");
            assert_eq!(
                sorted_lines(&out.stderr),
                ["fleet01: e\u{1}", "fleet02: note"]
            );
        } else {
            assert!(
                stdout.starts_with("---------------\nfleet01\n"),
                "{stdout:.200}"
            );
            assert_eq!(
                sorted_lines(&out.stderr),
                ["fleet01: e\u{1}", "fleet02: note"]
            );
        }
    }

    let blocker = files.path().join("a-file");
    fs::write(&blocker, b"x").unwrap();
    let logins = server.accepted_logins();
    let out = run_conn(fleet_args(
        "run",
        &config,
        dir.path(),
        &[
            "--outdir",
            &blocker.join("sub").display().to_string(),
            "-w",
            "fleet01",
            "--",
            "true",
        ],
    ));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("a-file/sub"), "{stderr}");
    assert_eq!(server.accepted_logins(), logins, "nothing ran");
}

/// One of two hosts prints 1,073,741,800 bytes (10,737,418 lines of 100 `x`, the last without
/// newline) with `--outdir`: its file holds every byte (checked against the pattern), the
/// streamed output goes on (to /dev/null here), and conn's peak resident set (VmHWM sampled
/// while it runs, and wait4's maxrss) stays under 64 MiB.
#[test]
fn outdir_takes_1_gib_from_one_host_in_bounded_memory() {
    const LINES: u64 = 10_737_418;
    const LIMIT_KIB: u64 = 64 * 1024;
    let server = start_fleet_sshd(&[]);
    let dir = conn_testkit::socket_dir();
    let config = fleet_config(&server, dir.path(), &names("fleet", 2, 2));
    let files = tempfile::tempdir().unwrap();
    let out_dir = files.path().join("out");
    let script = format!(
        "case $CONN_ALIAS in fleet01) head -c {} /dev/zero | tr '\\0' x | fold -w 100 ;; \
         *) echo small ;; esac",
        LINES * 100
    );
    let argv = fleet_args(
        "run",
        &config,
        dir.path(),
        &[
            "--outdir",
            &out_dir.display().to_string(),
            "-w",
            "fleet[01-02]",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let start = Instant::now();
    let mut conn = Running::spawn(&argv, Duration::from_secs(900), |c| {
        c.stdout(Stdio::null());
    });
    let sampler = conn.sample_peak_rss();
    let stderr = conn.collect_stderr();
    let end = conn.wait(Duration::from_secs(900));
    let sampled = sampler.join().unwrap();
    let stderr = text(&stderr.join().unwrap());
    eprintln!(
        "1 GiB into --outdir in {:.1?}: peak RSS {sampled} KiB sampled (VmHWM), {} KiB from \
         wait4",
        start.elapsed(),
        end.max_rss_kib
    );
    assert_eq!(end.code, Some(0), "{end:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(fs::read(out_dir.join("fleet02")).unwrap(), b"small\n");

    let mut file = File::open(out_dir.join("fleet01")).unwrap();
    let line = format!("{}\n", "x".repeat(100)).into_bytes();
    let mut buf = vec![0u8; 1 << 20];
    let pattern = line.repeat(buf.len() / line.len() + 2);
    let mut total: u64 = 0;
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let at = (total % line.len() as u64) as usize;
        if buf[..n] != pattern[at..at + n] {
            let bad = (0..n).find(|&i| buf[i] != pattern[at + i]).unwrap();
            panic!("byte {} of the file is wrong", total + bad as u64);
        }
        total += n as u64;
    }
    assert_eq!(total, LINES * line.len() as u64 - 1, "every byte, no more");
    assert!(sampled > 0, "VmHWM was sampled at least once");
    let peak = sampled.max(end.max_rss_kib);
    assert!(
        peak < LIMIT_KIB,
        "conn's peak RSS {peak} KiB ≥ {LIMIT_KIB} KiB"
    );
}

// ---------------------------------------------------------------------------------------------
// The help that translates them
// ---------------------------------------------------------------------------------------------

/// `conn run --help` carries the pdsh and clush letters, what differs, and how a pdsh command
/// string translates; the letters it lists are all taken at once (a dry run: nothing is
/// contacted); `conn copy --help` explains --rcopy.
#[test]
fn the_help_translates_pdsh_and_clush_command_lines() {
    let out = run_conn(["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    let section = help
        .split_once("From pdsh and clush")
        .expect("a section for pdsh and clush users")
        .1;
    for needle in [
        "-w HOSTS",
        "-g G",
        "-f N",
        "-l USER",
        "-t SECS",
        "-u SECS",
        "-N  -S  -q",
        "-b  -B  -L  --diff",
        "dshbak -c",
        "-P  --color=WHEN",
        "-k ",
        "-o \"-oKey=Value -p N\"",
        "--outdir  --errdir",
        "conn copy --rcopy",
        "--stdin-all",
        "-c is ssh's cipher",
        "-p is ssh's port",
        "-v is ssh's",
        "sh -c 'ls | wc -l'",
    ] {
        assert!(
            section.contains(needle),
            "{needle:?} missing from:\n{section}"
        );
    }
    let dir = conn_testkit::socket_dir();
    let out = run_conn([
        "run",
        "--socket-dir",
        &dir.path().display().to_string(),
        "--dry-run",
        "-f",
        "2",
        "-l",
        "admin",
        "-t",
        "3",
        "-u",
        "1.5",
        "-N",
        "-S",
        "-q",
        "-k",
        "-P",
        "--color=never",
        "-o",
        "-oCompression=yes -p 2222",
        "-o",
        "BatchMode=yes",
        "--outdir",
        &dir.path().join("out").display().to_string(),
        "-w",
        "h[1-2]",
        "--",
        "true",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("Would execute").count(), 2, "{stderr}");
    let sockets = dir.path().display().to_string();
    for (flags, ok) in [
        (&["-b", "-B"][..], false),
        (&["-L", "--diff"][..], false),
        (&["-b", "-N"][..], true),
    ] {
        let mut args = vec!["run", "--socket-dir", &sockets, "--dry-run", "-w", "h1"];
        args.extend(flags);
        args.extend(["--", "true"]);
        let out = run_conn(&args);
        assert_eq!(out.status.success(), ok, "{flags:?}: {}", text(&out.stderr));
    }

    let out = run_conn(["copy", "--help"]);
    let help = text(&out.stdout);
    assert!(
        help.contains("--rcopy (clush --rcopy, pdsh's rpdcp)") && help.contains("DIR/NAME.HOST"),
        "{help}"
    );
}
