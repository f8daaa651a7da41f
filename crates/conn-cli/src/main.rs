//! `conn`: runs commands on remote hosts through conn's thread-safe pool of multiplexed OpenSSH
//! ControlMaster connections.
//!
//! - `conn run`: one host (output and exit status passed through) or many (`host: ` prefixes,
//!   `-b` gathered, `--json` lines; the largest status), hosts as pdsh/ClusterShell host sets
//!   (`-w h[01-16]`, `-x`) and ClusterShell node groups (`-w @web`, `-g`, `-X`, `-a`),
//!   `--parallel` workers, `--timeout`, `--retries`, `--dry-run`,
//!   `--local`, `--mux native|process`.
//! - `conn hosts`: a host set expanded one name per line, folded (`--fold`), regrouped with
//!   node groups (`-r`); or the node groups listed (`-l`).
//! - `conn bench`: pooled masters (native and process mux) against hand-spawned `ssh -S` and
//!   fresh `ssh`; liveness checks; a fresh process's first command; figures and their ratios.
//! - `conn leases`: the leased control-socket names of a socket directory; `--prune`.
//! - `conn demo`: a private sshd on 127.0.0.1, a short bench, master reuse, teardown.
//! - `conn ssh`: a drop-in `ssh` over the pool (git, rsync, scp, sftp); what a pooled session
//!   cannot serve is handed to ssh itself.
//!
//! Errors are one line on stderr (a malformed host set adds the expression and a caret under
//! the bad character); usage errors (bad options, bad host names) exit with 2 before any
//! process starts. See `conn --help` and `conn <command> --help`.
#![warn(missing_docs)]
// Unsafe only where libc's signal calls have no safe wrapper (signals.rs, allowed there).
#![deny(unsafe_code)]

mod args;
mod bench;
mod copy;
mod demo;
mod hosts;
mod hosts_cmd;
mod leases;
mod output;
mod print;
mod run;
mod signals;
mod ssh;

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use tracing::level_filters::LevelFilter;

use crate::args::{Cli, Command};
use crate::output::{EXIT_USAGE, print_error};

/// The pool every subcommand uses: part of the lease namespace, so that `conn run`, `conn
/// bench` and library programs using the same pool name share (in turn) the same masters.
pub const POOL_NAME: &str = "shared";

/// The environment variable that sets conn's own log level (`error` … `trace`).
pub const LOG_ENV: &str = "CONN_LOG";

fn main() -> ExitCode {
    // `conn ssh` reads its words by ssh's rules, exactly as given: clap would drop a `--` that
    // comes first, which ssh counts.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.get(1).is_some_and(|a| a == "ssh") {
        signals::install();
        init_tracing(false);
        return ExitCode::from(ssh::main(&raw[2..], ssh_help));
    }
    let cli = match Cli::try_parse_from(raw) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    signals::install();
    let dry_run = matches!(&cli.command, Command::Run(r) if r.dry_run);
    init_tracing(dry_run);
    let result = match &cli.command {
        Command::Run(a) => run::main(a),
        Command::Hosts(a) => hosts_cmd::main(a),
        Command::Copy(a) => copy::main(a),
        Command::Bench(a) => bench::main(a),
        Command::Leases(a) => leases::main(a),
        Command::Demo(a) => demo::main(a),
        // `main` takes `conn ssh` before clap (above); this arm keeps the dispatch whole.
        Command::Ssh(a) => return ExitCode::from(ssh::main(&a.args, ssh_help)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if !failure.is_reported() {
                print_error(&failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

/// `conn ssh --help`, as clap renders it (the subcommand reads its own words, `--help` among
/// them).
fn ssh_help() -> String {
    let mut cli = Cli::command();
    cli.build();
    cli.find_subcommand_mut("ssh")
        .map(|c| c.render_help().to_string())
        .unwrap_or_default()
}

/// Help and version go to stdout with exit 0 as clap prints them; every real usage error
/// becomes one line on stderr and exit 2.
fn clap_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 })
        }
        _ => {
            // The first paragraph of clap's message, folded into one line.
            let rendered = e.render().to_string();
            let message = rendered
                .lines()
                .map(str::trim)
                .skip_while(|l| l.is_empty())
                .take_while(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let message = message.trim_start_matches("error:").trim();
            let message = if message.is_empty() {
                "invalid command line"
            } else {
                message
            };
            print_error(&format!("{message} (see `conn --help`)"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// conn's own diagnostics (the libraries' tracing events) on stderr: warnings by default,
/// "Would execute: …" lines too with `--dry-run`, anything else through `CONN_LOG`.
fn init_tracing(dry_run: bool) {
    let default = if dry_run {
        LevelFilter::INFO
    } else {
        LevelFilter::WARN
    };
    let level = std::env::var(LOG_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(default);
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_ansi(io::stderr().is_terminal() && output::stderr_color())
        .try_init();
}
