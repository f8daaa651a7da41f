//! The end of a fan-out: the failures folded by reason, the retries, and the exit status.

use std::io::{self, Write};

use conn_fleet::{HostEnd, Outcome, RunReport, Skip};

use crate::output::{EXIT_INTERRUPTED, exit_code_of_error, exit_code_of_status};

/// On `err`: one line per reason of failure with the folded hosts that failed for it
/// (`conn: h[03,07]: exit code 1`), `conn: K of N hosts failed`, and what was tried again.
pub fn write_summary(err: &mut dyn Write, report: &RunReport) -> io::Result<()> {
    for (hosts, reason) in report.failures_by_reason() {
        writeln!(err, "conn: {hosts}: {reason}")?;
    }
    let failed = report.failed();
    if failed > 0 {
        writeln!(err, "conn: {failed} of {} hosts failed", report.hosts.len())?;
    }
    let retried = report.retried();
    if retried.not_started + retried.may_have_run > 0 {
        let mut parts = Vec::new();
        if retried.not_started > 0 {
            parts.push(format!("{} that never started", retried.not_started));
        }
        if retried.may_have_run > 0 {
            parts.push(format!(
                "{} that may have run (--idempotent)",
                retried.may_have_run
            ));
        }
        writeln!(err, "conn: retried {}", parts.join(", "))?;
    }
    Ok(())
}

/// The exit code one host stands for (0 on success).
pub fn host_code(end: &HostEnd) -> u8 {
    match &end.outcome {
        Outcome::Exited(out) => exit_code_of_status(out.status),
        Outcome::Failed(e) => exit_code_of_error(e),
        Outcome::Skipped(Skip::Cancelled) => EXIT_INTERRUPTED,
        // Not failures of their own: never more than the one that failed first.
        Outcome::Skipped(Skip::FailFast) | Outcome::Stopped(_) => 1,
    }
}

/// The run's exit code: the largest of the hosts', at least 130 after a signal.
pub fn exit_code(report: &RunReport, interrupted: bool) -> u8 {
    let code = report.hosts.iter().map(host_code).max().unwrap_or(0);
    if interrupted {
        code.max(EXIT_INTERRUPTED)
    } else {
        code
    }
}
