//! The daemon's life: waiting until it takes logins, a watchdog for when the test process dies,
//! and stopping it with every session it forked.

use rustix::process::{Pid, Signal};
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::HOST_ALIASES;
use crate::{procs, run_with_timeout, wait_until};

/// Polls until the daemon accepts a real login, or fails with its log. A daemon that lost the
/// race for its port fails with [`io::ErrorKind::AddrInUse`], so that the caller tries another.
pub(super) fn wait_ready(
    sshd: &mut Child,
    port: u16,
    dir: &Path,
    ssh_program: &Path,
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let read_log = || {
        String::from_utf8_lossy(&fs::read(dir.join("sshd.log")).unwrap_or_default()).into_owned()
    };
    let mut last_probe = String::from("none ran");
    loop {
        if let Some(status) = sshd.try_wait()? {
            let log = read_log();
            let kind = if log.contains("Address already in use") {
                io::ErrorKind::AddrInUse
            } else {
                io::ErrorKind::Other
            };
            return Err(io::Error::new(
                kind,
                format!("sshd exited during start-up ({status}); its log:\n{log}"),
            ));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "sshd on port {port} accepted no login within {timeout:?}; last ssh probe: \
                     {last_probe}\nsshd log:\n{}",
                    read_log()
                ),
            ));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut probe = Command::new(ssh_program);
            probe
                .arg("-F")
                .arg(dir.join("ssh_config"))
                .arg(HOST_ALIASES[0])
                .arg("true")
                .stdin(Stdio::null());
            match run_with_timeout(&mut probe, remaining.max(Duration::from_millis(500))) {
                Ok(out) if out.status.success() => return Ok(()),
                Ok(out) => {
                    last_probe = format!(
                        "{}: {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Err(e) => last_probe = e.to_string(),
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the watchdog, lets every session end (then kills what is left), kills and reaps the
/// listener.
pub(super) fn stop_daemon(sshd: &mut Child, watchdog: Option<Child>) {
    if let Some(mut w) = watchdog {
        let _ = w.kill();
        let _ = w.wait();
    }
    if let Ok(Some(_)) = sshd.try_wait() {
        return;
    }
    let listener = sshd.id();
    // Let each per-connection monitor shut its session down; the listener reaps it.
    let conns = procs::children(listener);
    if !conns.is_empty() {
        for &pid in &conns {
            signal(pid, Signal::TERM);
        }
        wait_until(Duration::from_secs(1), || {
            procs::descendants(listener).is_empty()
        });
    }
    // Freeze the listener so that it forks no more, then kill whatever is left below it.
    signal(listener, Signal::STOP);
    for _ in 0..3 {
        let rest = procs::descendants(listener);
        if rest.is_empty() {
            break;
        }
        for pid in rest {
            signal(pid, Signal::KILL);
        }
    }
    let _ = sshd.kill();
    let _ = sshd.wait();
}

/// A `sh` that kills the daemon (and its per-connection processes) and removes the directory
/// when the test process dies without dropping the [`TestSshd`](super::TestSshd) (a `static`,
/// `process::exit`, a crash): its stdin pipe closes then. On a normal drop the watchdog is
/// killed first.
pub(super) fn spawn_watchdog(sshd_pid: u32, dir: &Path) -> io::Result<Child> {
    Command::new("/bin/sh")
        .arg("-c")
        .arg("read -r _; pkill -KILL -P \"$1\"; kill -KILL \"$1\"; rm -rf -- \"$2\"")
        .arg("conn-sshd-watchdog")
        .arg(sshd_pid.to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

pub(super) fn signal(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}
