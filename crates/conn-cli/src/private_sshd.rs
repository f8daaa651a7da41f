//! A throwaway OpenSSH server on 127.0.0.1, for integration tests and for `conn demo`.
//!
//! One file serves both: `conn demo` compiles it as a module of the `conn` binary, and tests
//! include it by path, from the workspace's `tests/*.rs` through `mod support;` (then
//! `support::sshd::TestSshd`), or directly:
//!
//! ```ignore
//! #[path = "../crates/conn-cli/src/private_sshd.rs"] // from tests/*.rs at the workspace root
//! mod sshd;
//! ```
//!
//! [`TestSshd::builder`] writes host and client keys, an `sshd_config`, an `ssh_config` with the
//! aliases `conn-test`, `conn-test2` and `conn-test3`, and a pre-filled `known_hosts` into a
//! fresh temporary directory, starts `/usr/sbin/sshd -D -e` on a free loopback port, and waits
//! until a real `ssh … true` login succeeds. Dropping the [`TestSshd`] kills the daemon and every
//! session process it forked, and reaps the daemon.
//!
//! As root, logins go to the dedicated account `conntest` (login shell `/bin/sh`, so no slow
//! shell start-up files run); `scripts/test.sh` creates it. The harness never creates accounts.
//! As any other user, logins go to that same user (a non-root sshd can serve nobody else).
//!
//! Environment overrides: `CONN_TEST_SSHD` (path of sshd), `CONN_TEST_SSH` (path of ssh),
//! `CONN_TEST_USER` (the account used when running as root).
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The account that logins use when the tests run as root.
pub const DEFAULT_TEST_USER: &str = "conntest";
/// Host aliases written into the generated ssh_config, all pointing at the same daemon.
pub const HOST_ALIASES: [&str; 3] = ["conn-test", "conn-test2", "conn-test3"];
/// Default sshd `MaxSessions` (sshd's own default).
pub const DEFAULT_MAX_SESSIONS: u32 = 10;

const DEFAULT_SSHD: &str = "/usr/sbin/sshd";
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
const PORT_ATTEMPTS: usize = 5;
const SSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures and starts a [`TestSshd`].
#[derive(Debug, Clone)]
pub struct TestSshdBuilder {
    max_sessions: u32,
    log_level: String,
    extra_config: Vec<String>,
    ready_timeout: Duration,
}

impl Default for TestSshdBuilder {
    fn default() -> Self {
        Self {
            max_sessions: DEFAULT_MAX_SESSIONS,
            log_level: "VERBOSE".to_owned(),
            extra_config: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }
}

impl TestSshdBuilder {
    /// sshd `MaxSessions`: sessions allowed per TCP connection (default 10).
    pub fn max_sessions(mut self, n: u32) -> Self {
        self.max_sessions = n;
        self
    }

    /// `LogLevel VERBOSE` (the default): logs "Accepted publickey …" once per login.
    pub fn log_level_verbose(self) -> Self {
        self.log_level("VERBOSE")
    }

    /// Any sshd `LogLevel` (`INFO`, `VERBOSE`, `DEBUG1` … `DEBUG3`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// An extra sshd_config line, e.g. `"ClientAliveInterval 1"`. A line whose keyword the
    /// harness also writes replaces the harness's line; `Match` blocks go last.
    pub fn config_line(mut self, line: impl Into<String>) -> Self {
        self.extra_config.push(line.into());
        self
    }

    /// How long `start` waits for the daemon to accept a login (default 10 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Writes keys and configs, starts sshd, and waits until a real login succeeds.
    pub fn start(self) -> io::Result<TestSshd> {
        TestSshd::start(self)
    }
}

/// A running throwaway sshd. Dropping it kills the daemon with all its session processes.
#[derive(Debug)]
pub struct TestSshd {
    // `Drop::drop` stops the processes; then the fields drop and `dir` is removed.
    sshd: Child,
    watchdog: Option<Child>,
    port: u16,
    user: String,
    max_sessions: u32,
    ssh_program: PathBuf,
    log_mark: AtomicU64,
    dir: tempfile::TempDir,
}

impl TestSshd {
    /// A builder with the defaults: `MaxSessions 10`, `LogLevel VERBOSE`.
    pub fn builder() -> TestSshdBuilder {
        TestSshdBuilder::default()
    }

    /// Starts a daemon with the defaults.
    pub fn start_default() -> io::Result<TestSshd> {
        Self::builder().start()
    }

    fn start(opts: TestSshdBuilder) -> io::Result<TestSshd> {
        let sshd_program = env_path("CONN_TEST_SSHD").unwrap_or_else(|| DEFAULT_SSHD.into());
        if !sshd_program.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: install openssh-server (run `bash scripts/test.sh` as root, \
                     which installs it) or set CONN_TEST_SSHD",
                    sshd_program.display()
                ),
            ));
        }
        let ssh_program = env_path("CONN_TEST_SSH").unwrap_or_else(|| "ssh".into());
        let user = test_user()?;
        if is_root() {
            ensure_privsep_dir()?;
        }

        let dir = tempfile::Builder::new().prefix("conn-sshd-").tempdir()?;
        // sshd reads AuthorizedKeysFile as the target user: the directory must be traversable.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let host_key = dir.path().join("ssh_host_ed25519_key");
        let client_key = dir.path().join("id_ed25519");
        keygen(&host_key, "conn-test-host")?;
        keygen(&client_key, "conn-test-client")?;
        let authorized = dir.path().join("authorized_keys");
        fs::copy(pub_path(&client_key), &authorized)?;
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644))?;
        let host_pub = fs::read_to_string(pub_path(&host_key))?;
        let host_pub = host_pub.trim();

        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            write_sshd_config(dir.path(), port, &user, &opts)?;
            write_client_files(dir.path(), port, &user, host_pub)?;
            let log = File::create(dir.path().join("sshd.log"))?;
            let mut sshd = Command::new(&sshd_program)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(dir.path().join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .spawn()?;
            match wait_ready(
                &mut sshd,
                port,
                dir.path(),
                &ssh_program,
                opts.ready_timeout,
            ) {
                Ok(()) => {
                    let watchdog = spawn_watchdog(sshd.id(), dir.path()).ok();
                    let server = TestSshd {
                        sshd,
                        watchdog,
                        port,
                        user,
                        max_sessions: opts.max_sessions,
                        ssh_program,
                        log_mark: AtomicU64::new(0),
                        dir,
                    };
                    // The probe login's session may still be closing: let it finish so that
                    // `log()` holds nothing of it.
                    server.wait_no_sessions(Duration::from_secs(2));
                    server.mark_log();
                    return Ok(server);
                }
                Err(e) => {
                    stop_daemon(&mut sshd, None);
                    if e.kind() != io::ErrorKind::AddrInUse {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("sshd did not start")))
    }

    /// The loopback port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The account that logins go to.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// `user@127.0.0.1` (use with `-p port` and the identity, or better through the config).
    pub fn user_host(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// The sshd `MaxSessions` value.
    pub fn max_sessions(&self) -> u32 {
        self.max_sessions
    }

    /// The pid of the listening sshd.
    pub fn pid(&self) -> u32 {
        self.sshd.id()
    }

    /// The temporary directory that holds keys, configs and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated ssh client config (pass with `-F`).
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    /// The generated sshd config.
    pub fn sshd_config_path(&self) -> PathBuf {
        self.dir().join("sshd_config")
    }

    /// The client's private key (the config already names it).
    pub fn identity_path(&self) -> PathBuf {
        self.dir().join("id_ed25519")
    }

    /// The pre-filled known_hosts file (the config already names it).
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// sshd's log file (its stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("sshd.log")
    }

    /// The main host alias, `conn-test`.
    pub fn host_alias(&self) -> &'static str {
        HOST_ALIASES[0]
    }

    /// All host aliases of this daemon: `conn-test`, `conn-test2`, `conn-test3`.
    pub fn host_aliases(&self) -> &'static [&'static str] {
        &HOST_ALIASES
    }

    /// The ssh program the harness runs (`ssh` unless `CONN_TEST_SSH` is set).
    pub fn ssh_program(&self) -> &Path {
        &self.ssh_program
    }

    /// `["-F", <ssh_config>]`: the arguments plain ssh needs to reach this daemon by alias.
    pub fn ssh_args(&self) -> Vec<OsString> {
        vec!["-F".into(), self.ssh_config_path().into_os_string()]
    }

    /// `ssh -F <config> conn-test <remote…>` with stdin from /dev/null.
    pub fn ssh_command(&self, remote: &[&str]) -> Command {
        self.ssh_command_to(self.host_alias(), remote)
    }

    /// `ssh -F <config> <alias> <remote…>` with stdin from /dev/null.
    pub fn ssh_command_to(&self, alias: &str, remote: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ssh_program);
        cmd.args(self.ssh_args())
            .arg(alias)
            .args(remote)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ssh -F <config> conn-test <remote…>` (bounded to 30 s) and captures its output.
    pub fn ssh_output(&self, remote: &[&str]) -> io::Result<Output> {
        run_with_timeout(&mut self.ssh_command(remote), SSH_TIMEOUT)
    }

    /// The log written since the daemon became ready (or since the last [`Self::mark_log`]):
    /// the start-up probe login is not in it.
    pub fn log(&self) -> String {
        let bytes = fs::read(self.log_path()).unwrap_or_default();
        let mark = usize::try_from(self.log_mark.load(Ordering::SeqCst)).unwrap_or(usize::MAX);
        String::from_utf8_lossy(bytes.get(mark..).unwrap_or_default()).into_owned()
    }

    /// The whole log, start-up included.
    pub fn full_log(&self) -> String {
        let bytes = fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// How often `needle` occurs in [`Self::log`], e.g. `"Accepted publickey"` (one per login).
    pub fn count_in_log(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// Number of logins since the mark.
    pub fn accepted_logins(&self) -> usize {
        self.count_in_log("Accepted publickey")
    }

    /// Makes [`Self::log`] start from the current end of the log.
    pub fn mark_log(&self) {
        let len = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        self.log_mark.store(len, Ordering::SeqCst);
    }

    /// Pids of the per-connection sshd processes (one per open TCP connection).
    pub fn connection_pids(&self) -> Vec<u32> {
        children_map().remove(&self.sshd.id()).unwrap_or_default()
    }

    /// Kills (SIGKILL) every per-connection sshd process and its descendants, as if the network
    /// dropped every connection; the listener stays up and accepts new connections.
    pub fn kill_connections(&self) {
        let listener = self.sshd.id();
        for _ in 0..3 {
            let victims: Vec<u32> = descendants(listener);
            if victims.is_empty() {
                break;
            }
            for pid in victims {
                signal(pid, libc::SIGKILL);
            }
            self.wait_no_sessions(Duration::from_secs(1));
        }
    }

    /// Waits (bounded) until the listener has no per-connection children left.
    pub fn wait_no_sessions(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.connection_pids().is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        stop_daemon(&mut self.sshd, self.watchdog.take());
    }
}

/// Polls until the daemon accepts a real login, or fails with its log.
fn wait_ready(
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
fn stop_daemon(sshd: &mut Child, watchdog: Option<Child>) {
    if let Some(mut w) = watchdog {
        let _ = w.kill();
        let _ = w.wait();
    }
    if let Ok(Some(_)) = sshd.try_wait() {
        return;
    }
    let listener = sshd.id();
    // Let each per-connection monitor shut its session down; the listener reaps it.
    let conns = children_map().remove(&listener).unwrap_or_default();
    if !conns.is_empty() {
        for &pid in &conns {
            signal(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && !descendants(listener).is_empty() {
            thread::sleep(Duration::from_millis(10));
        }
    }
    // Freeze the listener so that it forks no more, then kill whatever is left below it.
    signal(listener, libc::SIGSTOP);
    for _ in 0..3 {
        let rest = descendants(listener);
        if rest.is_empty() {
            break;
        }
        for pid in rest {
            signal(pid, libc::SIGKILL);
        }
    }
    let _ = sshd.kill();
    let _ = sshd.wait();
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The account logins go to; when root, checks that it exists and is usable.
fn test_user() -> io::Result<String> {
    if !is_root() {
        // SAFETY: getpwuid returns null or a pointer to static storage; we copy out at once.
        let name = unsafe {
            let pw = libc::getpwuid(libc::geteuid());
            if pw.is_null() {
                return Err(io::Error::other(
                    "the current uid has no passwd entry; sshd cannot log in to it",
                ));
            }
            CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned()
        };
        return Ok(name);
    }
    let name = std::env::var("CONN_TEST_USER")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_TEST_USER.to_owned());
    let cname = CString::new(name.clone()).map_err(io::Error::other)?;
    // SAFETY: as above.
    let shell = unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        if pw.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "test account `{name}` does not exist. Run `bash scripts/test.sh` once as \
                     root: it creates it (useradd -m -s /bin/sh {name}; usermod -p '*' {name})"
                ),
            ));
        }
        CStr::from_ptr((*pw).pw_shell)
            .to_string_lossy()
            .into_owned()
    };
    if shell != "/bin/sh" {
        return Err(io::Error::other(format!(
            "test account `{name}` has login shell `{shell}`, expected /bin/sh \
             (usermod -s /bin/sh {name}, or run `bash scripts/test.sh`)"
        )));
    }
    // sshd without PAM refuses a key login to an account whose password field starts with `!`.
    if let Ok(shadow) = fs::read_to_string("/etc/shadow") {
        let locked = shadow.lines().any(|l| {
            let mut f = l.split(':');
            f.next() == Some(name.as_str()) && f.next().is_some_and(|p| p.starts_with('!'))
        });
        if locked {
            return Err(io::Error::other(format!(
                "test account `{name}` is locked (password field starts with `!`), so sshd \
                 refuses even key logins: run `usermod -p '*' {name}` or `bash scripts/test.sh`"
            )));
        }
    }
    Ok(name)
}

/// sshd's privilege-separation directory; /run is often a fresh tmpfs.
fn ensure_privsep_dir() -> io::Result<()> {
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn pub_path(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn keygen(path: &Path, comment: &str) -> io::Result<()> {
    let out = run_with_timeout(
        Command::new("ssh-keygen")
            .args(["-t", "ed25519", "-N", "", "-q", "-C", comment, "-f"])
            .arg(path)
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    )?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ssh-keygen -f {} failed ({}): {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A port that was free a moment ago (the OS picks it; sshd may still lose a race for it).
fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn keyword(line: &str) -> String {
    line.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn write_sshd_config(dir: &Path, port: u16, user: &str, opts: &TestSshdBuilder) -> io::Result<()> {
    let d = dir.display();
    let defaults = [
        "ListenAddress 127.0.0.1".to_owned(),
        format!("Port {port}"),
        format!("HostKey {d}/ssh_host_ed25519_key"),
        format!("PidFile {d}/sshd.pid"),
        format!("AuthorizedKeysFile {d}/authorized_keys"),
        "PasswordAuthentication no".to_owned(),
        "KbdInteractiveAuthentication no".to_owned(),
        "PubkeyAuthentication yes".to_owned(),
        "UsePAM no".to_owned(),
        "StrictModes no".to_owned(),
        format!("MaxSessions {}", opts.max_sessions),
        "MaxStartups 100:30:200".to_owned(),
        format!("LogLevel {}", opts.log_level),
        format!("AllowUsers {user}"),
        "ForceCommand none".to_owned(),
        "PermitRootLogin no".to_owned(),
        "PermitUserEnvironment no".to_owned(),
        "PrintMotd no".to_owned(),
        "PrintLastLog no".to_owned(),
        "UseDNS no".to_owned(),
        "X11Forwarding no".to_owned(),
        "Subsystem sftp internal-sftp".to_owned(),
    ];
    let (matches, extras): (Vec<&String>, Vec<&String>) = opts
        .extra_config
        .iter()
        .partition(|l| keyword(l) == "match");
    let overridden: Vec<String> = extras.iter().map(|l| keyword(l)).collect();
    let mut text = String::from("# written by conn-cli/src/private_sshd.rs\n");
    for line in defaults
        .iter()
        .filter(|l| !overridden.contains(&keyword(l)))
        .chain(extras)
        .chain(matches)
    {
        text.push_str(line);
        text.push('\n');
    }
    fs::write(dir.join("sshd_config"), text)
}

fn write_client_files(dir: &Path, port: u16, user: &str, host_pub: &str) -> io::Result<()> {
    let d = dir.display();
    let mut cfg = String::from("# written by conn-cli/src/private_sshd.rs\n");
    for alias in HOST_ALIASES {
        cfg.push_str(&format!(
            "Host {alias}\n\
             \x20 HostName 127.0.0.1\n\
             \x20 Port {port}\n\
             \x20 User {user}\n\
             \x20 IdentityFile {d}/id_ed25519\n\
             \x20 IdentitiesOnly yes\n\
             \x20 IdentityAgent none\n\
             \x20 UserKnownHostsFile {d}/known_hosts\n\
             \x20 GlobalKnownHostsFile /dev/null\n\
             \x20 StrictHostKeyChecking yes\n\
             \x20 UpdateHostKeys no\n\
             \x20 BatchMode yes\n\
             \x20 LogLevel ERROR\n"
        ));
    }
    let path = dir.join("ssh_config");
    fs::write(&path, cfg)?;
    // ssh rejects a config file that others may write.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    let mut kh = File::create(dir.join("known_hosts"))?;
    writeln!(kh, "[127.0.0.1]:{port} {host_pub}")?;
    Ok(())
}

/// A `sh` that kills the daemon (and its per-connection processes) and removes the directory
/// when the test process dies without dropping the [`TestSshd`] (a `static`, `process::exit`,
/// a crash): its stdin pipe closes then. On a normal drop the watchdog is killed first.
fn spawn_watchdog(sshd_pid: u32, dir: &Path) -> io::Result<Child> {
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

/// Runs `cmd` with captured stdout and stderr; kills it when `timeout` passes.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let err_reader = thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{cmd:?} did not finish within {timeout:?}"),
            ));
        }
        thread::sleep(Duration::from_millis(5));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// parent pid -> child pids, from /proc.
fn children_map() -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        if state == Some("Z") {
            continue;
        }
        if let Some(ppid) = fields.next().and_then(|s| s.parse::<u32>().ok()) {
            map.entry(ppid).or_default().push(pid);
        }
    }
    map
}

/// Every live descendant of `root` (not `root` itself).
fn descendants(root: u32) -> Vec<u32> {
    let map = children_map();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(kids) = map.get(&p) {
            for &k in kids {
                out.push(k);
                stack.push(k);
            }
        }
    }
    out
}
