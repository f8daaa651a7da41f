//! The things the main table measures: each a [`Subject`], a closure that runs the command
//! once. Each pool back end is one subject among others ([`pool_subjects`]), hence one row per
//! mode; the baseline and the fresh connections spawn the command lines the transport itself
//! builds (`OpenSshConnection::command_line`), so they cannot drift from what conn runs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::process::{Command, Stdio};

use conn_core::{Cmd, ConnectionPool, SimpleJob, Transport};
use conn_openssh::{Mux, OpenSsh};

use super::COMMAND_TIMEOUT;
use super::plan::EXPECTED_STDOUT;
use crate::POOL_NAME;
use crate::args::SshArgs;
use crate::output::{Failure, one_line};

/// Who runs a row's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ConnectionPool::run` over a pool with this mux back end, as `conn run` does.
    Pool(Mux),
    /// The baseline: a hand-spawned `ssh -S <socket of a pooled master>` per command.
    HandSpawned,
    /// A new ssh connection per command (no master).
    FreshSsh,
}

impl Backend {
    /// Stable identifier for JSON: `conn-pool-native`, `conn-pool-process`, `ssh-S`,
    /// `ssh-fresh`.
    pub fn key(self) -> String {
        match self {
            Backend::Pool(mux) => format!("conn-pool-{mux}"),
            Backend::HandSpawned => "ssh-S".into(),
            Backend::FreshSsh => "ssh-fresh".into(),
        }
    }

    /// Whether this is the baseline the ratios are computed against.
    pub fn is_baseline(self) -> bool {
        self == Backend::HandSpawned
    }
}

/// The table's label.
impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Pool(mux) => write!(f, "conn pool ({mux} mux)"),
            Backend::HandSpawned => f.write_str("ssh -S (hand-spawned)"),
            Backend::FreshSsh => f.write_str("ssh (new connection)"),
        }
    }
}

/// The closure of a subject: runs the command once from worker thread number `thread`.
type RunOnce<'a> = Box<dyn Fn(usize) -> Result<(), String> + Sync + 'a>;

/// Something to measure: runs the command once from worker thread number `thread`.
pub struct Subject<'a> {
    /// Who runs the commands.
    pub backend: Backend,
    /// Runs the command once from worker thread number `thread`.
    pub run: RunOnce<'a>,
    /// The pool's count of refused sessions it retried so far (pool back ends only).
    pub refusals: Option<Box<dyn Fn() -> u64 + Sync + 'a>>,
}

/// The pool back ends to measure: one subject per pool, running `command` through
/// `ConnectionPool::run` as `conn run` does.
pub fn pool_subjects<'a>(
    pools: &'a [(Mux, ConnectionPool<OpenSsh>)],
    command: &[String],
) -> Vec<Subject<'a>> {
    pools
        .iter()
        .map(|(mux, pool)| {
            let echo = Cmd::new(command.iter().cloned());
            Subject {
                backend: Backend::Pool(*mux),
                run: Box::new(move |_thread| {
                    let out = pool
                        .run(&echo, &SimpleJob::with_timeout(COMMAND_TIMEOUT))
                        .map_err(|e| e.to_string())?;
                    check_stdout(&out.stdout)
                }),
                refusals: Some(Box::new(move || pool.refusals_retried())),
            }
        })
        .collect()
}

/// Makes the pool start every master the concurrent rows will use (so that no row pays for a
/// master start), and returns, per master in creation order, the command line that runs
/// `command` over it (`OpenSshConnection::command_line`): `threads` sessions checked out at
/// once fill connection 0 to capacity, then connection 1, and so on.
pub fn start_masters(
    pool: &ConnectionPool<OpenSsh>,
    threads: usize,
    command: &[String],
) -> Result<Vec<Vec<OsString>>, Failure> {
    let echo = Cmd::new(command.iter().cloned());
    let guards = (0..threads.max(1))
        .map(|_| pool.get(&SimpleJob::with_timeout(COMMAND_TIMEOUT)))
        .collect::<conn_core::Result<Vec<_>>>()?;
    let mut lines: BTreeMap<usize, Vec<OsString>> = BTreeMap::new();
    for g in &guards {
        if lines.contains_key(&g.id()) {
            continue;
        }
        if g.control_path().is_none() {
            return Err(Failure::other(
                "the pool's connections have no control socket (reuse is off)",
            ));
        }
        let line = g.command_line(&echo, &SimpleJob::with_timeout(COMMAND_TIMEOUT))?;
        lines.insert(g.id(), line);
    }
    Ok(lines.into_values().collect())
}

/// The baseline: the command lines of [`start_masters`] (`ssh <the pool's options> -S <socket>
/// -oControlMaster=no -oProxyCommand=false <host> <command>`), spawned with
/// `std::process::Command`, thread `t` on the master the pool would give its `t`-th session.
/// No pool guard is held meanwhile: the rows take turns, so the baseline's sessions never share
/// a master with the pool's own.
pub fn hand_spawned<'a>(lines: Vec<Vec<OsString>>, capacity: usize) -> Subject<'a> {
    Subject {
        backend: Backend::HandSpawned,
        run: Box::new(move |thread| spawn(&lines[(thread / capacity).min(lines.len() - 1)])),
        refusals: None,
    }
}

/// A new ssh connection per command (no master): handshake and authentication every time.
/// The command line is the one a transport without connection reuse runs (`ssh <options>
/// -oControlMaster=no -oControlPath=none <host> <command>`).
pub fn fresh_connection<'a>(
    opts: &SshArgs,
    host: &str,
    command: &[String],
) -> Result<Subject<'a>, Failure> {
    let ssh = opts
        .builder(host)
        .mux(Mux::Process)
        .reuse_connections(false)
        .build()?;
    let line = ssh.connect(POOL_NAME)?.command_line(
        &Cmd::new(command.iter().cloned()),
        &SimpleJob::with_timeout(COMMAND_TIMEOUT),
    )?;
    Ok(Subject {
        backend: Backend::FreshSsh,
        run: Box::new(move |_| spawn(&line)),
        refusals: None,
    })
}

/// Runs `argv` to its end with stdin from /dev/null, and checks its output.
fn spawn(argv: &[OsString]) -> Result<(), String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", argv[0].to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "ssh exited with {}: {}",
            out.status,
            one_line(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    check_stdout(&out.stdout)
}

/// `Ok` when a measured command printed what it should.
pub fn check_stdout(stdout: &[u8]) -> Result<(), String> {
    if stdout == EXPECTED_STDOUT {
        Ok(())
    } else {
        Err(format!(
            "unexpected output {:?} (expected \"hello\\n\")",
            String::from_utf8_lossy(stdout)
        ))
    }
}
