//! What the fleet-flag tests (`pdsh_flags.rs`, `rcopy.rs`) share: the `conn` binary with a
//! watchdog, many aliases of one private sshd, gate files, a `conn` the test talks to while it
//! runs (reaped with `wait4` for its peak RSS), pseudo-terminals.
//!
//! Run as root, logins go to the `conntest` account that `scripts/setup.sh` creates, hence the
//! world-writable shared directories.
// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::ffi::{CStr, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use conn_testkit::{TestSshd, procfs, run_with_timeout};
use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

/// Bound for one short `conn` invocation.
pub const CONN_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound for one step of a test (a line to arrive, a process to end, a file to appear).
pub const WAIT: Duration = Duration::from_secs(60);
/// A remote gate waits at most this many polls of 50 ms (60 s) before it gives up.
pub const GATE_POLLS: u32 = 1200;

/// The `conn` binary, with no stdin, no log level and no colour from the environment.
pub fn conn() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conn"));
    cmd.stdin(Stdio::null())
        .env_remove("CONN_LOG")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs `conn <args>` within [`CONN_TIMEOUT`] and returns its output.
pub fn run_conn<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_with_timeout(conn().args(args), CONN_TIMEOUT).expect("conn finishes in time")
}

/// Runs `conn <args>`, `configure`d (environment, stdio), within [`CONN_TIMEOUT`].
pub fn run_conn_with(args: &[OsString], configure: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = conn();
    cmd.args(args);
    configure(&mut cmd);
    run_with_timeout(&mut cmd, CONN_TIMEOUT).expect("conn finishes in time")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn os(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// The lines of `bytes`, sorted (for output whose order between hosts is not fixed).
pub fn sorted_lines(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = text(bytes).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// A directory the remote account can write to and read from (gate files, copy destinations).
pub fn shared_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// The private sshd, accepting `CONN_ALIAS` (see [`fleet_config`]) and any `extra` lines.
pub fn start_fleet_sshd(extra: &[&str]) -> TestSshd {
    let mut builder = TestSshd::builder().config_line("AcceptEnv CONN_ALIAS");
    for line in extra {
        builder = builder.config_line(*line);
    }
    builder
        .start()
        .expect("start the private sshd (run scripts/setup.sh as root once)")
}

/// `prefix` followed by 1..=n, zero-padded to `width` digits.
pub fn names(prefix: &str, n: usize, width: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i:0width$}")).collect()
}

/// An ssh_config for the private sshd with the aliases `names`, each sending
/// `CONN_ALIAS=<alias>` so that a remote command knows which alias it runs under.
pub fn fleet_config(server: &TestSshd, dir: &Path, names: &[String]) -> PathBuf {
    fleet_config_keeping(server, dir, names, |_| true)
}

/// [`fleet_config`] with only the settings lines for which `keep` holds (to leave out `User`,
/// say).
pub fn fleet_config_keeping(
    server: &TestSshd,
    dir: &Path,
    names: &[String],
    keep: impl Fn(&str) -> bool,
) -> PathBuf {
    let base = fs::read_to_string(server.ssh_config_path()).unwrap();
    // The settings of the first alias block (`Host conn-test`), without its Host line.
    let common = base
        .split("\nHost ")
        .nth(1)
        .expect("a Host block")
        .split_once('\n')
        .expect("settings after the Host line")
        .1;
    let mut cfg = String::new();
    for name in names {
        cfg.push_str(&format!("Host {name}\n  SetEnv CONN_ALIAS={name}\n"));
    }
    cfg.push_str("Host *\n");
    for line in common.lines().filter(|l| keep(l.trim())) {
        cfg.push_str(line);
        cfg.push('\n');
    }
    let path = dir.join("fleet_config");
    fs::write(&path, cfg).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// `<subcommand> -F <config> --socket-dir <sockets>`, then `extra`.
pub fn fleet_args(sub: &str, config: &Path, sockets: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut argv = os(&[sub, "-F"]);
    argv.push(config.into());
    argv.push("--socket-dir".into());
    argv.push(sockets.into());
    argv.extend(os(extra));
    argv
}

/// A shell function for remote scripts: `gate FILE` waits until FILE exists, at most
/// [`GATE_POLLS`] × 50 ms, then gives up with exit 9 (so a test that never opens the gate
/// fails instead of hanging).
pub fn gate_fn() -> String {
    format!(
        "gate() {{ n=0; until [ -e \"$1\" ]; do n=$((n + 1)); \
         if [ \"$n\" -gt {GATE_POLLS} ]; then echo \"gave up waiting for $1\" >&2; exit 9; fi; \
         sleep 0.05; done; }}; "
    )
}

/// Sends `signal` to `pid`.
pub fn send(pid: libc::pid_t, signal: Signal) -> std::io::Result<()> {
    let pid = Pid::from_raw(pid).expect("a positive pid");
    kill_process(pid, signal).map_err(std::io::Error::from)
}

/// `n` pseudo-random bytes (xorshift64*), the same for a given seed.
pub fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which of conn's streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Out,
    Err,
}

/// What [`Running::wait`] saw.
#[derive(Debug)]
pub struct Ended {
    /// The exit code, or `None` when a signal killed conn.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// `ru_maxrss` of `wait4`: conn's peak resident set (and that of the children it reaped),
    /// in KiB.
    pub max_rss_kib: u64,
}

/// A `conn` the test talks to while it runs: its pipes are the test's, a watchdog SIGKILLs it
/// when its time is up, and the test reaps it itself with `wait4` (for its peak RSS).
pub struct Running {
    pub pid: libc::pid_t,
    /// Set under the lock when reaped: nobody signals the pid after that (it may be reused).
    reaped: Arc<Mutex<bool>>,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Running {
    /// Spawns `conn <args>` with stdout and stderr piped (unless `configure` says otherwise)
    /// and stdin from /dev/null; a watchdog kills it after `limit`.
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by `wait` (or `Drop`) with wait4, which std's Child cannot do"
    )]
    pub fn spawn(
        args: &[OsString],
        limit: Duration,
        configure: impl FnOnce(&mut Command),
    ) -> Running {
        let mut cmd = conn();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn conn");
        let pid = child.id() as libc::pid_t;
        let reaped = Arc::new(Mutex::new(false));
        let watch = Arc::clone(&reaped);
        thread::spawn(move || {
            let deadline = Instant::now() + limit;
            loop {
                thread::sleep(Duration::from_millis(50));
                let done = watch.lock().unwrap_or_else(|e| e.into_inner());
                if *done {
                    return;
                }
                if Instant::now() >= deadline {
                    eprintln!("watchdog: conn (pid {pid}) still runs after {limit:?}: SIGKILL");
                    // Our own unreaped child (checked under the lock).
                    let _ = send(pid, Signal::KILL);
                    return;
                }
            }
        });
        Running {
            pid,
            reaped,
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        }
        // `child` is dropped without waiting: `wait` below reaps the pid.
    }

    /// Whether conn still runs (it is ours and unreaped, so a zombie means it has ended).
    pub fn is_running(&self) -> bool {
        procfs::is_alive(self.pid as u32)
    }

    /// Sends `signal` to conn, which must not have been reaped.
    pub fn signal(&self, signal: Signal) {
        let reaped = self.reaped.lock().unwrap();
        assert!(!*reaped, "conn was reaped already");
        send(self.pid, signal).expect("signal conn");
    }

    /// Reaps conn, waiting at most `timeout`.
    pub fn wait(&self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let mut reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
                assert!(!*reaped, "conn was reaped already");
                let mut status = 0;
                // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
                let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
                // SAFETY: wait4 on our own child, with valid pointers to locals.
                let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
                assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
                if r == self.pid {
                    *reaped = true;
                    let exited = libc::WIFEXITED(status);
                    return Ended {
                        code: exited.then(|| libc::WEXITSTATUS(status)),
                        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
                        max_rss_kib: usage.ru_maxrss as u64,
                    };
                }
            }
            assert!(
                Instant::now() < deadline,
                "conn did not end within {timeout:?}"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Reads conn's stdout and stderr line by line on two threads; every line (with its
    /// newline, if it had one) arrives on the channel as soon as conn has written it. The
    /// channel disconnects when both streams have ended.
    pub fn lines(&mut self) -> mpsc::Receiver<(Stream, Vec<u8>)> {
        let (tx, rx) = mpsc::channel();
        if let Some(out) = self.stdout.take() {
            pump(out, Stream::Out, tx.clone());
        }
        if let Some(err) = self.stderr.take() {
            pump(err, Stream::Err, tx);
        }
        rx
    }

    /// Collects conn's stdout on a thread.
    pub fn collect_stdout(&mut self) -> JoinHandle<Vec<u8>> {
        collect(self.stdout.take().expect("stdout not taken yet"))
    }

    /// Collects conn's stderr on a thread.
    pub fn collect_stderr(&mut self) -> JoinHandle<Vec<u8>> {
        collect(self.stderr.take().expect("stderr not taken yet"))
    }

    /// Samples conn's `VmHWM` (peak resident set, KiB) until it is reaped; returns the largest.
    pub fn sample_peak_rss(&self) -> JoinHandle<u64> {
        let (pid, reaped) = (self.pid, Arc::clone(&self.reaped));
        thread::spawn(move || {
            let mut peak = 0;
            while !*reaped.lock().unwrap_or_else(|e| e.into_inner()) {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kib) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak = peak.max(kib);
                }
                thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut reaped = self.reaped.lock().unwrap_or_else(|e| e.into_inner());
        if !*reaped {
            // A test that failed midway: end conn rather than leave it behind.
            let _ = send(self.pid, Signal::KILL);
            if let Some(pid) = Pid::from_raw(self.pid) {
                let _ = waitpid(Some(pid), WaitOptions::empty());
            }
            *reaped = true;
        }
    }
}

fn pump(reader: impl Read + Send + 'static, which: Stream, tx: mpsc::Sender<(Stream, Vec<u8>)>) {
    thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if tx.send((which, line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

fn collect(mut reader: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        buf
    })
}

/// Waits for the next line, failing the test after [`WAIT`].
pub fn next_line(rx: &mpsc::Receiver<(Stream, Vec<u8>)>, what: &str) -> (Stream, String) {
    let (stream, line) = rx
        .recv_timeout(WAIT)
        .unwrap_or_else(|e| panic!("no line while waiting for {what}: {e}"));
    (stream, text(&line))
}

/// A pseudo-terminal: the controller end (kept open so the terminal stays alive) and the
/// terminal end, opened without making it our controlling terminal.
pub fn pty() -> (OwnedFd, File) {
    // SAFETY: posix_openpt returns a new descriptor or -1; nothing else is touched.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
    assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let controller = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: grantpt/unlockpt/ptsname_r on our own pty descriptor; `name` is a writable
    // buffer of the length given, which ptsname_r NUL-terminates on success.
    let path = unsafe {
        assert_eq!(libc::grantpt(controller.as_raw_fd()), 0, "grantpt");
        assert_eq!(libc::unlockpt(controller.as_raw_fd()), 0, "unlockpt");
        assert_eq!(
            libc::ptsname_r(controller.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string()
    };
    let terminal = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"));
    (controller, terminal)
}

/// What is written to a pseudo-terminal, read from its controller end on a thread as it
/// comes.
pub struct TerminalReader {
    rx: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl TerminalReader {
    /// Starts reading `controller`.
    pub fn new(controller: OwnedFd) -> TerminalReader {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut file = File::from(controller);
            let mut buf = [0u8; 4096];
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        TerminalReader {
            rx,
            seen: Vec::new(),
        }
    }

    /// Everything read until `needle` arrived (it included), failing the test after [`WAIT`].
    /// Write a sentinel to the terminal after its other writers are done, and this returns all
    /// they wrote: a terminal keeps the order of what is written to it.
    pub fn until(&mut self, needle: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while !self.seen.windows(needle.len()).any(|w| w == needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.extend_from_slice(&chunk),
                Err(e) => panic!(
                    "{:?} never reached the terminal ({e}); it showed {:?}",
                    text(needle),
                    text(&self.seen)
                ),
            }
        }
        self.seen.clone()
    }
}

/// Every path under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
