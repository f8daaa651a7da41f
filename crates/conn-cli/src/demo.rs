//! `conn demo`: a private sshd on 127.0.0.1 ([`conn_sshd::TestSshd`]), a short `conn bench`
//! against it, two `conn run` processes (the second reuses the master the first started),
//! `conn leases`, and teardown. Every step runs this very binary as a child, and prints the
//! command line first, so the demo also shows how to use `conn`.
//!
//! The demo prepares nothing outside its temporary directories: when the OpenSSH programs,
//! `/run/sshd` or (as root) the `conntest` account are missing, the private sshd does not start
//! and its error says to run `scripts/setup.sh` as root (`scripts/demo.sh` runs it first).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use conn_sshd::{TestSshd, run_with_timeout};

use crate::args::DemoArgs;
use crate::output::{EXIT_INTERRUPTED, Failure};
use crate::signals;

/// The private sshd's `MaxSessions`: sshd's own default, so that the bench's pool capacity of 8
/// sessions per master meets the limit a real server has.
const DEMO_MAX_SESSIONS: u32 = 10;

/// How long one step may take before the demo gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs `conn demo`; returns the exit code.
pub fn main(args: &DemoArgs) -> Result<u8, Failure> {
    let conn = std::env::current_exe()
        .map_err(|e| Failure::other(format!("cannot find the conn executable: {e}")))?;

    say("starting a private sshd on 127.0.0.1 (throwaway host and client keys) …");
    let server = TestSshd::builder()
        .max_sessions(DEMO_MAX_SESSIONS)
        .start()
        .map_err(|e| Failure::other(format!("cannot start the private sshd: {e}")))?;
    say(&format!(
        "sshd (pid {}) listens on 127.0.0.1:{} (MaxSessions {}); logins go to `{}`; client \
         config {} (host aliases {})",
        server.pid(),
        server.port(),
        server.max_sessions(),
        server.user(),
        server.ssh_config_path().display(),
        server.host_aliases().join(", ")
    ));
    let result = steps(&server, &conn, args);
    // Dropping the server kills the daemon with every session, then removes its directory.
    drop(server);
    say("sshd stopped, temporary files removed");
    result
}

fn steps(server: &TestSshd, conn: &Path, args: &DemoArgs) -> Result<u8, Failure> {
    // Socket directories must be short (Unix socket paths): always under /tmp, mode 0700 as
    // conn-lease demands.
    let tmp = |prefix: &str| {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp")?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        Ok::<_, io::Error>(dir)
    };
    let tmp = |prefix: &str| {
        tmp(prefix).map_err(|e| Failure::other(format!("cannot create a directory in /tmp: {e}")))
    };
    let bench_dir = tmp("conn-demo-b")?;
    let run_dir = tmp("conn-demo-r")?;
    let config = server.ssh_config_path();
    let host = server.host_alias();
    let common = |socket_dir: &Path| -> Vec<OsString> {
        vec![
            "-F".into(),
            config.clone().into_os_string(),
            "--socket-dir".into(),
            socket_dir.as_os_str().to_owned(),
        ]
    };

    heading(
        "1. conn bench: pooled masters (native and process mux) vs hand-spawned `ssh -S` vs \
         fresh ssh connections",
    );
    let threads = args
        .threads
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut bench: Vec<OsString> = vec!["bench".into()];
    bench.extend(common(bench_dir.path()));
    bench.extend(
        [
            "--exit-on-shutdown",
            "-n",
            &args.count.to_string(),
            "-t",
            &threads,
            "--capacity",
            &conn_core::DEFAULT_CAPACITY.to_string(),
        ]
        .map(OsString::from),
    );
    if args.builtin {
        bench.push("--builtin".into());
    }
    if args.stream {
        bench
            .extend(["--stream", "--stream-mib", &args.stream_mib.to_string()].map(OsString::from));
    }
    bench.push(host.into());
    let (status, _) = run_conn(conn, &bench)?;
    if !status.success() {
        return Err(Failure::other(format!("conn bench failed ({status})")));
    }

    heading("2. conn run, twice: the second process attaches to the master the first one left");
    let remote = ["sh", "-c", "echo \"hello from $(id -un) on $(hostname)\""];
    for (i, expect) in [(1, "started a master"), (2, "reused the master")] {
        let mut run: Vec<OsString> = vec!["run".into()];
        run.extend(common(run_dir.path()));
        run.extend(["-H", host, "--"].map(OsString::from));
        run.extend(remote.map(OsString::from));
        server.mark_log();
        let (status, took) = run_conn(conn, &run)?;
        if !status.success() {
            return Err(Failure::other(format!("conn run #{i} failed ({status})")));
        }
        let logins = server.accepted_logins();
        say(&format!(
            "run #{i}: {:.1} ms wall time for the whole `conn` process, {logins} new ssh \
             login{} → {}",
            took.as_secs_f64() * 1e3,
            if logins == 1 { "" } else { "s" },
            if logins == 0 {
                "reused the master (no handshake, no authentication)"
            } else {
                expect
            }
        ));
    }

    heading("3. conn leases: the socket name the two runs took in turn");
    let mut leases: Vec<OsString> = vec!["leases".into(), "--socket-dir".into()];
    leases.push(run_dir.path().as_os_str().to_owned());
    let (status, _) = run_conn(conn, &leases)?;
    if !status.success() {
        return Err(Failure::other(format!("conn leases failed ({status})")));
    }

    heading("4. teardown");
    let stopped = exit_masters(server, run_dir.path());
    say(&format!(
        "ended {stopped} master{} (ssh -O exit); the bench ended its own (--exit-on-shutdown)",
        if stopped == 1 { "" } else { "s" }
    ));
    Ok(0)
}

/// Runs `conn <args>` with our stdout and stderr, printing the command line first; returns its
/// status and wall time. A signal to the demo ends the child too.
fn run_conn(conn: &Path, args: &[OsString]) -> Result<(ExitStatus, Duration), Failure> {
    println!("$ conn {}", conn_core::display_line(args));
    let _ = io::stdout().flush();
    let start = Instant::now();
    let mut child = Command::new(conn)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| Failure::other(format!("cannot run {}: {e}", conn.display())))?;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Failure::other(format!("waiting for conn: {e}")))?
        {
            return Ok((status, start.elapsed()));
        }
        if signals::interrupted().is_some() || start.elapsed() > STEP_TIMEOUT {
            // Our own child, not yet reaped: its pid cannot name another process.
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = child.wait();
            return Err(match signals::interrupted() {
                Some(sig) => Failure {
                    code: EXIT_INTERRUPTED,
                    message: format!("interrupted by signal {sig}"),
                },
                None => Failure::other(format!("a demo step took longer than {STEP_TIMEOUT:?}")),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `ssh -O exit` to every master whose socket is under `socket_dir`; returns how many ended.
fn exit_masters(server: &TestSshd, socket_dir: &Path) -> usize {
    let Ok(reports) = conn_lease::inspect(socket_dir) else {
        return 0;
    };
    let mut stopped = 0;
    for report in reports {
        for entry in report
            .entries
            .iter()
            .filter(|e| e.socket_modified.is_some())
        {
            let socket = report.dir.join("c").join(&entry.name);
            let mut cmd = Command::new(server.ssh_program());
            cmd.args(server.ssh_args())
                .arg("-S")
                .arg(&socket)
                .args(["-O", "exit", server.host_alias()])
                .stdin(Stdio::null());
            if run_with_timeout(&mut cmd, Duration::from_secs(10)).is_ok_and(|o| o.status.success())
            {
                stopped += 1;
            }
        }
    }
    stopped
}

fn say(text: &str) {
    println!("conn demo: {text}");
    let _ = io::stdout().flush();
}

fn heading(text: &str) {
    println!();
    println!("== {text}");
    let _ = io::stdout().flush();
}
