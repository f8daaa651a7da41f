//! A throwaway OpenSSH server on 127.0.0.1, for demos and tests: `conn demo` runs one, and so
//! do conn's integration tests (through `conn-testkit`, which re-exports it).
//!
//! [`TestSshd::builder`] writes host and client keys, an `sshd_config` (with an `sftp`
//! subsystem), an `ssh_config` with the aliases `conn-test`, `conn-test2` and `conn-test3` (and
//! the key and known host for the bare `127.0.0.1`, whose port and user the command line gives),
//! and a pre-filled `known_hosts` into a
//! fresh temporary directory, starts `/usr/sbin/sshd -D -e` on a free loopback port, and waits
//! until a real `ssh … true` login succeeds. Dropping the [`TestSshd`] kills the daemon and every
//! session process it forked, and reaps the daemon; a watchdog does the same if the process that
//! started it dies first.
//!
//! ```no_run
//! let server = conn_sshd::TestSshd::start_default()?;
//! let out = server.ssh_output(&["echo", "hi"])?;
//! assert_eq!(out.stdout, b"hi\n");
//! assert_eq!(server.accepted_logins(), 1);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! As root, logins go to the dedicated account `conntest` (login shell `/bin/sh`, so no slow
//! shell start-up files run). As any other user, logins go to that same user (a non-root sshd
//! can serve nobody else). The daemon listens on 127.0.0.1 only, accepts only its own throwaway
//! key, and changes nothing outside its temporary directory: the OpenSSH programs, sshd's
//! `/run/sshd` and the `conntest` account come from conn's `scripts/setup.sh`, and
//! [`TestSshdBuilder::start`] fails with a message naming that script when one is missing.
//!
//! Environment overrides: `CONN_TEST_SSHD` (path of sshd), `CONN_TEST_SSH` (path of ssh),
//! `CONN_TEST_USER` (the account used when running as root).
//!
//! [`run_with_timeout`] and [`wait_until`], the bounded waits the daemon's start and stop use,
//! are public too: a caller that drives ssh against the daemon needs the same.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod daemon;
mod files;
mod machine;
mod procs;
mod run;

pub use run::{run_with_timeout, wait_until};

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

    /// Checks the machine, writes keys and configs, starts sshd, and waits until a real login
    /// succeeds.
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
        let sshd_program = machine::sshd_program()?;
        let ssh_program = machine::env_path("CONN_TEST_SSH").unwrap_or_else(|| "ssh".into());
        machine::check_client_programs(&ssh_program)?;
        let user = machine::test_user()?;
        if machine::is_root() {
            machine::check_privsep_dir()?;
        }

        let dir = tempfile::Builder::new().prefix("conn-sshd-").tempdir()?;
        // sshd reads AuthorizedKeysFile as the target user: the directory must be traversable.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        let host_key = dir.path().join("ssh_host_ed25519_key");
        let client_key = dir.path().join("id_ed25519");
        files::keygen(&host_key, "conn-test-host")?;
        files::keygen(&client_key, "conn-test-client")?;
        let authorized = dir.path().join("authorized_keys");
        fs::copy(files::pub_path(&client_key), &authorized)?;
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644))?;
        let host_pub = fs::read_to_string(files::pub_path(&host_key))?;
        let host_pub = host_pub.trim();

        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = files::free_port()?;
            files::write_sshd_config(dir.path(), port, &user, &opts)?;
            files::write_client_files(dir.path(), port, &user, host_pub)?;
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
            match daemon::wait_ready(
                &mut sshd,
                port,
                dir.path(),
                &ssh_program,
                opts.ready_timeout,
            ) {
                Ok(()) => {
                    let watchdog = daemon::spawn_watchdog(sshd.id(), dir.path()).ok();
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
                    daemon::stop_daemon(&mut sshd, None);
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

    /// Writes copies of the client files into `dir`: the private key (`id_ed25519`, mode
    /// `0600`), `known_hosts`, and an `ssh_config` with the same host aliases that names those
    /// copies; returns the path of that `ssh_config`.
    ///
    /// For a client that runs as another local account than the daemon's owner, which cannot
    /// read the daemon's own directory: give `dir` and the files to that account.
    pub fn write_client_files(&self, dir: &Path) -> io::Result<PathBuf> {
        let key = dir.join("id_ed25519");
        fs::copy(self.identity_path(), &key)?;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
        let host_pub =
            fs::read_to_string(files::pub_path(&self.dir().join("ssh_host_ed25519_key")))?;
        files::write_client_files(dir, self.port, &self.user, host_pub.trim())?;
        Ok(dir.join("ssh_config"))
    }

    /// The pid of the ssh master listening on `socket`, from `ssh -O check` ("Master running
    /// (pid=N)"); `None` when no master answers.
    pub fn master_pid(&self, socket: &Path) -> Option<u32> {
        let out = Command::new(&self.ssh_program)
            .args(self.ssh_args())
            .arg("-S")
            .arg(socket)
            .args(["-O", "check", self.host_alias()])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        let start = text.find("(pid=")? + 5;
        let end = start + text[start..].find(')')?;
        text[start..end].parse().ok()
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
        procs::children(self.sshd.id())
    }

    /// Kills (SIGKILL) every per-connection sshd process and its descendants, as if the network
    /// dropped every connection; the listener stays up and accepts new connections.
    pub fn kill_connections(&self) {
        let listener = self.sshd.id();
        for _ in 0..3 {
            let victims = procs::descendants(listener);
            if victims.is_empty() {
                break;
            }
            for pid in victims {
                daemon::signal(pid, rustix::process::Signal::KILL);
            }
            self.wait_no_sessions(Duration::from_secs(1));
        }
    }

    /// Waits (bounded) until the listener has no per-connection children left.
    pub fn wait_no_sessions(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.connection_pids().is_empty())
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        daemon::stop_daemon(&mut self.sshd, self.watchdog.take());
    }
}
