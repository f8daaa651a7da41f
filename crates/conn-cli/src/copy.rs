//! `conn copy`: files and trees to every host, or with `--rcopy` from every host, planned from
//! the command line and handed to the fan-out engine ([`conn_fleet::CopyPlan`],
//! [`conn_fleet::FetchPlan`]); this module spawns no thread and makes no pool.

use std::io;

use conn_fleet::{CopyPlan, FetchPlan, Task};

use crate::args::CopyArgs;
use crate::output::Failure;
use crate::print::{Live, Palette, Printer, Say, exit_code, write_summary};
use crate::run::ssh_fleet;
use crate::signals;

/// Runs `conn copy`; returns the exit code.
pub fn main(args: &CopyArgs) -> Result<u8, Failure> {
    args.ssh.validate().map_err(Failure::usage)?;
    conn_fleet::limits::raise_nofile_limit();
    // Everything is checked before anything starts: sources, hosts, options (exit 2).
    let (task, done): (Task, Say) = if args.rcopy {
        let dest = args
            .dest
            .clone()
            .expect("clap requires --dest with --rcopy");
        let sources = args
            .paths
            .iter()
            .map(|p| p.clone().into_os_string())
            .collect();
        let plan =
            FetchPlan::new(sources, dest, args.recursive, args.preserve).map_err(Failure::usage)?;
        let n = plan.sources.len();
        let dir = plan.dest.display().to_string();
        (
            Task::Fetch(plan),
            Box::new(move |host| format!("{}: fetched {n} path(s) into {dir}", host.name)),
        )
    } else {
        let Some((dest, sources)) = args.paths.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(Failure::usage(
                "conn copy needs SRC… DEST (or --rcopy SRC… --dest DIR)",
            ));
        };
        let plan =
            CopyPlan::new(sources, dest.as_os_str(), args.recursive).map_err(Failure::usage)?;
        let (files, bytes) = (plan.files(), plan.bytes());
        (
            Task::Copy(plan),
            Box::new(move |host| format!("{}: copied {files} file(s), {bytes} bytes", host.name)),
        )
    };
    let fleet = ssh_fleet(&args.targets, &args.ssh, &args.fanout, args.mux)?;
    signals::cancel_on_signal(fleet.cancel_token());
    let palette = Palette::for_stdout(&args.fanout.color);
    let quiet = Live::Lines {
        stdout: false,
        stderr: false,
    };
    let printer =
        Printer::new(quiet, true, palette, fleet.len(), args.fanout.progress).on_success(done);
    let report = fleet.run(&task, &printer);
    printer.finish();
    if !args.fanout.quiet {
        let _ = write_summary(&mut io::stderr().lock(), &report);
    }
    Ok(exit_code(&report, signals::interrupted().is_some()))
}
