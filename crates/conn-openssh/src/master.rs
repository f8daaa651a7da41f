//! A connection's master: its start (`ssh -M -N`, [`start`]), which process it is, and whether
//! it was still alive when a session ended, the check that keeps a session cut short by a
//! dying master from passing as a success (docs/design.md#clean-end). The master is the same
//! `ssh -M` whatever the session back end; asking it whether it is alive is the back ends'
//! (`ssh -O check` or `MUX_C_ALIVE_CHECK`).
//!
//! A master forwards the command's exit status (`MUX_S_EXIT_MESSAGE`) as soon as sshd sends it,
//! which can be before it has written the last of the command's output into the session's
//! descriptors. If it dies in between, the descriptors and the control connection close early
//! and the status alone looks like success. At a normal end the master writes every byte,
//! closes the session's descriptors and only then the control connection, all while it lives;
//! at a death the kernel closes them for it. So a session ended cleanly exactly when, after the
//! control connection and the pipes reached end of file, the master process is still the same
//! live process and not exiting, and its socket still listens:
//!
//! - Linux sets `PF_EXITING` on a dying task (`exit_signals`) before it closes its files
//!   (`exit_files`), and the task becomes a zombie only after; so an end of file caused by a
//!   death is always seen after `/proc/<pid>/stat` shows the flag or a zombie (or nothing).
//! - ssh's own orderly exits on a signal (`SIGTERM`, `SIGHUP`, `SIGINT`) or a lost server
//!   connection remove the ControlPath before they exit: the socket probe sees it gone.
//! - The start time (`/proc/<pid>/stat` field 22) tells the master from a process that took
//!   its pid after it died.
//!
//! The cost is one `pread` of the master's `/proc/<pid>/stat`, opened once per master (an open
//! `/proc` file keeps naming that process: once it is gone, reads fail, whoever takes its pid
//! later), and one `connect(2)` that the listener never sees: 18–45 µs a session depending on
//! the load, against milliseconds for the session itself (`conn bench` prints both).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use conn_core::text::tail;
use conn_core::transport::{ProcessOptions, spawn_process};
use conn_core::{CappedJob, Cmd, Error, Job, Result, Stream, ensure_running};
use conn_lease::{SocketState, probe_socket};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::config::Config;

/// Starts a backgrounded master on the ControlPath `socket`: `ssh -M -N
/// -oControlPersist=<N>s`, with no session of its own (docs/design.md#slow-path). With
/// ControlPersist and a control socket that listens, ssh forks to the background right after
/// authentication (as `-f` would) and the process we spawned exits 0: that exit is the
/// ready signal, and the socket already listens by then. `-f` is not given on purpose: when
/// ssh cannot set up the socket, ControlPersist does not fork and the process stays in the
/// foreground until the start's bound ends it, where `-f` would leave a connection without a
/// socket running in the background for good. Its stdout and stderr are `/dev/null` and its
/// diagnostics go to the `-E` log file `log`: a master lives on long after this call and would
/// otherwise hold any pipe we gave it open. Bounded by the job and by the connect timeout
/// (plus time to authenticate), so a host that accepts TCP but never speaks cannot hang the
/// caller.
pub(crate) fn start(config: &Config, socket: &Path, log: &Path, job: &dyn Job) -> Result<()> {
    let _ = fs::remove_file(log); // -E appends: keep only this start's story
    let persist = format!("-oControlPersist={}s", config.control_persist.as_secs());
    let log_arg = log.to_string_lossy().into_owned();
    // No remote command and no `exit` session: one sshd fork and shell per host fewer.
    let argv = config.ssh_argv(Some(socket), &["-M", "-N", &persist, "-E", &log_arg], []);
    let cmd = Cmd::new(&argv)
        .stdout(Stream::Null)
        .stderr(Stream::Null)
        .check(false);
    // A process group of its own until ssh's daemon() gives it a session after
    // authentication: std's posix_spawn (vfork) path. A session from the start (setsid in
    // pre_exec, as pdsh does) forces a fork of this whole process, whose page-table copy and
    // teardown cost 2-3 ms of CPU per host on a cold fan-out, 8-9 % of conn's share
    // (docs/benchmarks.md, Fleet fan-out): more than the scheduler's fairer share for a
    // session won on a machine busy with other work.
    let options = ProcessOptions::default();
    let started = spawn_process(
        &argv,
        &cmd,
        &CappedJob::new(job, config.master_start_timeout),
        options,
    )
    .and_then(|child| child.wait_with_output());
    let out = match started {
        Ok(out) => out,
        // Our own bound, not the caller's: a master that could not start in time is a
        // connect failure (retryable, with ssh's story), not the job's timeout.
        Err(Error::Timeout { .. }) => {
            job_still_running(job, socket)?;
            return Err(start_failed(
                config,
                socket,
                log,
                &format!(
                    "did not start within {}s",
                    config.master_start_timeout.as_secs()
                ),
            ));
        }
        Err(e) => return Err(e),
    };
    let state = probe_socket(socket);
    if out.status.success() && state == SocketState::Live {
        tracing::debug!(socket = %socket.display(), "started ssh master");
        return Ok(());
    }
    Err(start_failed(
        config,
        socket,
        log,
        &format!("did not start ({}, socket {:?})", out.status, state),
    ))
}

/// The retryable error of a master that did not start, with its `-E` log.
fn start_failed(config: &Config, socket: &Path, log: &Path, what: &str) -> Error {
    let diagnostics = fs::read_to_string(log).unwrap_or_default();
    let diagnostics = diagnostics.trim();
    Error::Connect {
        endpoint: config.user_host.to_string(),
        message: format!(
            "ssh master on {} {what}{}{}; for details add -v -v -v (its output lands in {})",
            socket.display(),
            if diagnostics.is_empty() { "" } else { ": " },
            tail(diagnostics, 2000),
            log.display(),
        ),
    }
}

/// `Ok` unless the job itself ran out or was cancelled, which must not pass for "no answer"
/// from the master on `socket`.
pub(crate) fn job_still_running(job: &dyn Job, socket: &Path) -> Result<()> {
    ensure_running(job, || {
        format!("checking the ssh master on {}", socket.display())
    })
}

/// `PF_EXITING` of the kernel's task flags: set when a task starts to exit, before its files
/// are closed (include/linux/sched.h).
const PF_EXITING: u64 = 0x0000_0004;

/// A master process: its pid (from the master's own answer to an alive check), its start time,
/// and its `/proc/<pid>/stat` held open, which keeps naming that very process: reads fail with
/// `ESRCH` once it is reaped, even if another process has taken its pid since. Cheap to clone
/// (the file is shared).
#[derive(Clone, Debug)]
pub(crate) struct MasterId {
    pub(crate) pid: u32,
    start_ticks: u64,
    stat: Arc<File>,
}

impl PartialEq for MasterId {
    fn eq(&self, other: &Self) -> bool {
        self.pid == other.pid && self.start_ticks == other.start_ticks
    }
}

/// How a master was found at the end of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The same process, alive, not exiting, still listening: it closed the session itself.
    Alive,
    /// It died, is dying, or no longer listens: the session may have been cut short.
    Died,
}

/// What one read of `/proc/<pid>/stat` says.
struct Stat {
    state: u8,
    flags: u64,
    start_ticks: u64,
}

impl MasterId {
    /// The process `pid` as it is now. Fails when no such process exists (it died already).
    pub(crate) fn of(pid: u32) -> io::Result<MasterId> {
        let file = File::open(format!("/proc/{pid}/stat"))?;
        let stat = read_stat(&file, pid)?;
        Ok(MasterId {
            pid,
            start_ticks: stat.start_ticks,
            stat: Arc::new(file),
        })
    }

    /// Whether this master was still serving after the session's descriptors and control
    /// connection closed, with `socket` its ControlPath. Call it only after those ends of file
    /// were seen (see the module's text for why that makes it exact).
    pub(crate) fn fate(&self, socket: &Path) -> Fate {
        let alive = match read_stat(&self.stat, self.pid) {
            Ok(stat) => {
                stat.start_ticks == self.start_ticks
                    && !matches!(stat.state, b'Z' | b'X' | b'x')
                    && stat.flags & PF_EXITING == 0
            }
            Err(_) => false,
        };
        // The listener last: an orderly exit removes the ControlPath before the process ends.
        if alive && listening(socket) {
            Fate::Alive
        } else {
            Fate::Died
        }
    }
}

/// Whether a live socket is bound at `socket`: a `SOCK_SEQPACKET` connect to the master's
/// stream socket fails with `EPROTOTYPE` while it is bound, `ECONNREFUSED` once it is closed,
/// and never queues a connection (the master is not woken). Anything else is asked of
/// [`probe_socket`], which tells the other cases apart.
fn listening(socket: &Path) -> bool {
    let connect = || -> Result<(), Errno> {
        let addr = SocketAddrUnix::new(socket)?;
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::connect(&fd, &addr)
    };
    match connect() {
        Err(Errno::PROTOTYPE) => true,
        Err(Errno::CONNREFUSED | Errno::NOENT) => false,
        _ => probe_socket(socket) == SocketState::Live,
    }
}

/// Reads the state, flags and start time of `pid` from its open `/proc/<pid>/stat`.
fn read_stat(file: &File, pid: u32) -> io::Result<Stat> {
    // The whole line fits: 52 numeric fields and a command name of at most 64 bytes.
    let mut buf = [0u8; 1024];
    let n = file.read_at(&mut buf, 0)?;
    parse_stat(&buf[..n]).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected contents of /proc/{pid}/stat"),
        )
    })
}

/// `pid (comm) state ppid … flags (9th) … starttime (22nd) …`; the command name may hold
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(text.get(close + 2..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state): flags is field 9, starttime field 22.
    Some(Stat {
        state: *fields.first()?.as_bytes().first()?,
        flags: fields.get(6)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::process::{Command, Stdio};

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = b"4242 (ssh: /tmp/a (x) [mux]) S 1 4242 4242 0 -1 4194368 10 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615\n";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.state, b'S');
        assert_eq!(stat.flags, 4194368);
        assert_eq!(stat.start_ticks, 987654);
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn a_live_listening_process_is_alive_and_a_dead_one_died() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let _listener = UnixListener::bind(&socket).unwrap();
        let me = MasterId::of(std::process::id()).unwrap();
        assert_eq!(me.fate(&socket), Fate::Alive);
        assert_eq!(
            me.fate(&dir.path().join("none")),
            Fate::Died,
            "not listening"
        );
        let wrong_start = MasterId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert_eq!(wrong_start.fate(&socket), Fate::Died, "a pid reused");

        let mut child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let id = MasterId::of(child.id()).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(id.fate(&socket), Fate::Died, "reaped");
        assert!(MasterId::of(child.id()).is_err());
    }

    #[test]
    fn a_zombie_died() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let _listener = UnixListener::bind(&socket).unwrap();
        let mut child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let id = MasterId::of(child.id()).unwrap();
        assert_eq!(id.fate(&socket), Fate::Alive);
        child.kill().unwrap(); // SIGKILL, not reaped: a zombie once the kernel is done
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let file = File::open(format!("/proc/{}/stat", child.id())).unwrap();
        while read_stat(&file, child.id()).is_ok_and(|s| s.state != b'Z') {
            assert!(
                std::time::Instant::now() < deadline,
                "never became a zombie"
            );
            std::thread::yield_now();
        }
        assert_eq!(id.fate(&socket), Fate::Died);
        child.wait().unwrap();
    }
}
