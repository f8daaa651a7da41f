//! The first command of a fresh `conn run` process: what a script that calls `conn` once per
//! command pays, start-up and lease included.

use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conn_openssh::Mux;

use super::plan::Plan;
use super::subjects::check_stdout;
use super::{COMMAND_TIMEOUT, interrupted};
use crate::args::SshArgs;
use crate::output::{Failure, one_line};
use crate::signals;

/// The first command of fresh `conn run --mux <mux>` processes, each timed from spawn to exit.
#[derive(Debug, Clone)]
pub struct FreshProcess {
    /// The back end the children used.
    pub mux: Mux,
    /// Wall time of each successful child, sorted.
    pub latencies: Vec<Duration>,
    /// Children that failed.
    pub errors: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// Spawns `conn run --mux <mux> -H host -- <the plan's command>` (this very binary, with the
/// same options and socket directory) `plan.fresh_runs` times per back end, the back ends
/// taking turns, and times each child from spawn to exit. The pools have shut down: the
/// masters are alive and their leases free, so each child leases one and runs its first
/// command over it.
pub fn fresh_processes(
    opts: &SshArgs,
    host: &str,
    plan: &Plan,
) -> Result<Vec<FreshProcess>, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::other(format!("cannot find the conn executable: {e}")))?;
    let mut results: Vec<FreshProcess> = plan
        .muxes
        .iter()
        .map(|&mux| FreshProcess {
            mux,
            latencies: Vec::new(),
            errors: 0,
            first_error: None,
        })
        .collect();
    for _ in 0..plan.fresh_runs {
        for result in results.iter_mut() {
            if signals::interrupted().is_some() {
                return Err(interrupted());
            }
            let mut args: Vec<OsString> = vec!["run".into()];
            args.extend(opts.to_cli_args());
            args.push(format!("--mux={}", result.mux).into());
            args.push(format!("--timeout={}", COMMAND_TIMEOUT.as_secs()).into());
            args.extend(["-H", host, "--"].map(OsString::from));
            args.extend(plan.command.iter().map(OsString::from));
            let t0 = Instant::now();
            let out = Command::new(&exe)
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Failure::other(format!("cannot run {}: {e}", exe.display())))?;
            let took = t0.elapsed();
            let checked = if out.status.success() {
                check_stdout(&out.stdout)
            } else {
                Err(format!(
                    "conn run exited with {}: {}",
                    out.status,
                    one_line(&String::from_utf8_lossy(&out.stderr))
                ))
            };
            match checked {
                Ok(()) => result.latencies.push(took),
                Err(e) => {
                    result.errors += 1;
                    result.first_error.get_or_insert(e);
                }
            }
        }
    }
    for r in &mut results {
        r.latencies.sort();
    }
    Ok(results)
}
