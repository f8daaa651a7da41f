//! `conn ssh`: a drop-in `ssh` whose sessions go through conn's pool of masters, so that git,
//! rsync, scp, sftp and scripts get the pool without a change (`GIT_SSH_COMMAND="conn ssh"`,
//! `rsync -e "conn ssh"`, `scp -S` with a one-line wrapper).
//!
//! - [`args`]: the command line, read by ssh's own getopt rules, conn's long options first;
//! - [`plan`]: what the line asks for: a command or subsystem the pool serves, with the options
//!   that make up the master's identity, or a hand-over to ssh and why;
//! - [`run`]: the served session, with the caller's descriptors and the remote exit status;
//! - [`handoff`]: `exec` of the real ssh with the same words, and conn's own messages.

mod args;
mod handoff;
mod plan;
mod run;

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use conn_core::DEFAULT_CAPACITY;
use conn_openssh::{Location, Mux};

use self::args::{ConnOptions, ParseError};
use self::plan::{Decision, Log};
use self::run::Settings;
use crate::output::{EXIT_USAGE, print_error};

/// Runs `conn ssh` with `args` (the words after `ssh`, exactly as given); returns the exit
/// status.
pub fn main(args: &[OsString], help: impl FnOnce() -> String) -> u8 {
    let line = match args::parse(args) {
        Ok(line) => line,
        Err(ParseError::Help) => {
            let _ = io::stdout().lock().write_all(help().as_bytes());
            return 0;
        }
        Err(ParseError::Conn(message)) => {
            print_error(&format!("{message} (see `conn ssh --help`)"));
            return EXIT_USAGE;
        }
        Err(ParseError::Ssh(usage)) => {
            let settings = match settings(&usage.conn) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let log = Log {
                verbose: usage.verbose,
                ..Log::default()
            };
            return handoff::exec_ssh(
                &settings.ssh_program,
                &usage.ssh_argv,
                &format!("ssh refuses this command line ({})", usage.reason),
                &log,
            );
        }
    };
    let settings = match settings(&line.conn) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match plan::decide(&line, io::stdin().is_terminal()) {
        Decision::Handover { reason, log } => {
            handoff::exec_ssh(&settings.ssh_program, &line.ssh_argv, &reason, &log)
        }
        Decision::Serve(serve) => run::serve(&serve, &settings, &line.ssh_argv),
    }
}

/// conn's own options, checked (a bad one is a usage error: one line, exit 2).
fn settings(conn: &ConnOptions) -> Result<Settings, u8> {
    let usage = |message: String| {
        print_error(&format!("{message} (see `conn ssh --help`)"));
        EXIT_USAGE
    };
    let mux = match conn.mux.as_deref() {
        None => Mux::Native,
        Some(m) => m
            .trim()
            .parse::<Mux>()
            .map_err(|e| usage(format!("--mux: {e}")))?,
    };
    let number = |name: &str, value: &Option<String>, default: u64, max: u64| match value.as_deref()
    {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(usage(format!(
                "--{name} {v:?} is not a whole number from 1 to {max}"
            ))),
        },
    };
    let capacity = number("capacity", &conn.capacity, DEFAULT_CAPACITY as u64, 1000)?;
    let persist = number(
        "control-persist",
        &conn.control_persist,
        600,
        u64::from(u32::MAX),
    )?;
    let location = match conn.location.as_deref() {
        None | Some("src") => Location::Src,
        Some("dst") => Location::Dst,
        Some(other) => {
            return Err(usage(format!(
                "--location {other:?} is neither src nor dst"
            )));
        }
    };
    let settings = Settings {
        ssh_program: conn
            .ssh_program
            .clone()
            .unwrap_or_else(|| "ssh".to_string()),
        mux,
        capacity: capacity as usize,
        socket_dir: conn.socket_dir.as_ref().map(Into::into),
        control_persist: Duration::from_secs(persist),
        location,
        exit_on_shutdown: conn.exit_on_shutdown,
    };
    settings.validate().map_err(|e| usage(e.to_string()))?;
    Ok(settings)
}
