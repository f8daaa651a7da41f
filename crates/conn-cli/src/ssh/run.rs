//! A served `conn ssh` line: one pool for the endpoint, one session over its master with the
//! caller's own descriptors 0, 1 and 2, and the remote command's exit status as conn's.
//!
//! The descriptors go to the session as they are (`Stdin::Fd`, `Stream::Fd`): with the native
//! mux the master reads and writes them itself, so the streamed bytes never pass through conn
//! (docs/design.md#stdio). Exit status: the remote command's; 255 for every failure of conn's
//! or ssh's own, as ssh has it. A master that cannot start leaves ssh's own words in its log,
//! which are printed as they are; from a terminal conn hands over to ssh instead, which may ask
//! for what the master could not (a password, a new host key).

use std::ffi::OsString;
use std::io::{self, IsTerminal};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use conn_core::{Cmd, ConnectionPool, Error, SimpleJob, Stdin, Stream};
use conn_openssh::{DEFAULT_CIPHER, DEFAULT_EXTRA_OPTIONS, Location, Mux, OpenSsh};

use super::handoff::{exec_ssh, say, write_raw};
use super::plan::{Remote, Serve};
use crate::output::{EXIT_TRANSPORT, exit_code_of_status};
use crate::{POOL_NAME, signals};

/// conn's own settings of `conn ssh`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The ssh client for masters, `ssh -S` clients and hand-overs.
    pub ssh_program: String,
    /// How sessions reach the master.
    pub mux: Mux,
    /// Sessions per master.
    pub capacity: usize,
    /// Where the sockets and leases live (conn's default when `None`).
    pub socket_dir: Option<PathBuf>,
    /// How long an idle master outlives its last session.
    pub control_persist: Duration,
    /// Source or destination side.
    pub location: Location,
    /// `ssh -O exit` the master when done.
    pub exit_on_shutdown: bool,
}

impl Settings {
    /// A transport builder for `serve`'s endpoint with conn's and the line's options.
    fn builder(&self, serve: &Serve) -> conn_openssh::OpenSshBuilder {
        let mut b = OpenSsh::builder(&serve.user_host)
            .ssh_program(&self.ssh_program)
            .mux(self.mux)
            .cipher(serve.cipher.as_deref().unwrap_or(DEFAULT_CIPHER))
            .verbose(serve.verbose)
            // The line's options come first: ssh takes the first value it sees of an option.
            .extra_options(
                serve
                    .identity
                    .iter()
                    .cloned()
                    .chain(DEFAULT_EXTRA_OPTIONS.iter().map(|s| s.to_string())),
            )
            .control_persist(self.control_persist)
            .exit_masters_on_shutdown(self.exit_on_shutdown)
            .location(self.location);
        if let Some(port) = serve.port {
            b = b.port(port);
        }
        if let Some(cfg) = &serve.ssh_config {
            b = b.ssh_config(cfg);
        }
        if let Some(dir) = &self.socket_dir {
            b = b.socket_dir(dir);
        }
        b
    }

    /// Checks conn's own options before anything else (a bad one is conn's usage error).
    pub fn validate(&self) -> Result<(), Error> {
        let mut b = OpenSsh::builder("conn-ssh-check")
            .ssh_program(&self.ssh_program)
            .mux(self.mux)
            .control_persist(self.control_persist);
        if let Some(dir) = &self.socket_dir {
            b = b.socket_dir(dir);
        }
        b.build().map(drop)
    }
}

/// Runs a served line; `ssh_argv` is the line as ssh would get it, for a hand-over. Returns
/// the exit status.
pub fn serve(serve: &Serve, settings: &Settings, ssh_argv: &[OsString]) -> u8 {
    let log = &serve.log;
    let transport = match settings.builder(serve).build() {
        Ok(t) => t,
        // An option value or file conn cannot take (a missing -F file, say): ssh says best
        // what is wrong with it, or runs it.
        Err(e) => {
            return exec_ssh(
                &settings.ssh_program,
                ssh_argv,
                &format!("conn cannot use these options: {e}"),
                log,
            );
        }
    };
    let pool = match ConnectionPool::new(transport, POOL_NAME, settings.capacity) {
        Ok(pool) => pool,
        Err(e) => return fail(serve, &e),
    };
    let cmd = match &serve.remote {
        Remote::Command(line) => Cmd::shell(line),
        Remote::Subsystem(name) => Cmd::subsystem(name),
    };
    let cmd = cmd
        .stdin(if serve.stdin_null {
            Stdin::Null
        } else {
            own_fd(io::stdin().as_fd()).map_or(Stdin::Null, Stdin::from)
        })
        .stdout(own_fd(io::stdout().as_fd()).map_or(Stream::Null, Stream::from))
        .stderr(own_fd(io::stderr().as_fd()).map_or(Stream::Null, Stream::from))
        // As ssh: the master passes on what its SendEnv names (git's GIT_PROTOCOL, LANG …).
        .send_env(true)
        .check(false);
    let job = Arc::new(SimpleJob::new());
    signals::register(&job);
    // The master's log, to show ssh's own words if this run has to start a master and cannot.
    let master_log = pool
        .get_unrefreshed()
        .ok()
        .and_then(|c| c.master_log_path().map(PathBuf::from));
    let log_before = master_log.as_deref().and_then(file_identity);
    let result = pool.run(&cmd, job.as_ref());
    let code = match result {
        Ok(out) => exit_code_of_status(out.status),
        Err(e @ Error::Connect { .. }) => {
            // A master start replaces the log: one that changed is this run's story.
            let fresh_log = master_log
                .filter(|p| file_identity(p).is_some_and(|now| Some(now) != log_before))
                .and_then(|p| std::fs::read(p).ok())
                .filter(|text| !text.is_empty());
            if fresh_log.is_some() && io::stdin().is_terminal() && !serve.batch_mode {
                pool.shutdown();
                // Nothing ran (the master never started): ssh may ask for what the master
                // could not.
                return exec_ssh(
                    &settings.ssh_program,
                    ssh_argv,
                    &format!("the master could not start without asking: {e}"),
                    log,
                );
            }
            match fresh_log {
                Some(text) if !log.quiet => {
                    write_raw(log, &text);
                    EXIT_TRANSPORT
                }
                _ => fail(serve, &e),
            }
        }
        Err(e) => fail(serve, &e),
    };
    pool.shutdown();
    code
}

/// What tells one version of a file from the next: its inode, size and modification time.
fn file_identity(path: &std::path::Path) -> Option<(u64, u64, SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()?))
}

/// A duplicate of one of our standard descriptors for the session; `None` when it is closed.
fn own_fd(fd: std::os::fd::BorrowedFd<'_>) -> Option<std::os::fd::OwnedFd> {
    fd.try_clone_to_owned().ok()
}

/// Says what failed (one line, unless `-q`) and gives ssh's status for every failure of its
/// own: 255. A cancel (SIGINT, SIGTERM, SIGHUP) is as silent as ssh.
fn fail(serve: &Serve, e: &Error) -> u8 {
    let quiet = serve.log.quiet || matches!(e, Error::Cancelled { .. }) && !serve.log.verbose;
    if !quiet {
        say(&serve.log, &format!("conn: error: {e}"));
    }
    EXIT_TRANSPORT
}
