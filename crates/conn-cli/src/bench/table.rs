//! The human report of `conn bench`: the main table, then the liveness and fresh-process
//! sections. Figures and ratios to the baselines of the same run; nothing is graded.

use std::io::{self, Write};
use std::time::Duration;

use conn_openssh::Mux;

use super::liveness::{Check, Liveness};
use super::plan::Mode;
use super::report::Report;
use super::stats::{median, percentile};
use super::subjects::Backend;
use crate::output::one_line;

/// Whole microseconds, thousands grouped.
fn micros(d: Duration) -> String {
    group_thousands(d.as_micros())
}

/// Microseconds with one decimal below 100 µs (the in-process probes), whole ones above.
fn micros_fine(d: Duration) -> String {
    if d < Duration::from_micros(100) {
        format!("{:.1}", d.as_secs_f64() * 1e6)
    } else {
        micros(d)
    }
}

/// `1234567` as `1 234 567`.
fn group_thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn fmt_load(load: Option<[f64; 3]>) -> String {
    load.map_or_else(
        || "unknown".into(),
        |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
    )
}

fn fmt_ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.2}"))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The human report.
pub fn write_table(out: &mut impl Write, r: &Report) -> io::Result<()> {
    write_header(out, r)?;
    write_rows(out, r)?;
    if let Some(l) = &r.liveness {
        write_liveness(out, l)?;
        write_clean_end_share(out, r)?;
    }
    if !r.fresh_processes.is_empty() {
        write_fresh_processes(out, r)?;
    }
    Ok(())
}

fn write_header(out: &mut impl Write, r: &Report) -> io::Result<()> {
    let threads = r
        .threads
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(" and ");
    writeln!(
        out,
        "conn bench: `{}` on {}: {} commands per row, {} threads in the concurrent rows, \
         {} session{} per master ({} master{} per back end)",
        r.command.join(" "),
        r.host,
        r.count,
        if threads.is_empty() {
            "no".into()
        } else {
            threads
        },
        r.capacity,
        plural(r.capacity),
        r.masters,
        plural(r.masters),
    )?;
    writeln!(
        out,
        "load average (1, 5, 15 min): {} at the start, {} at the end; {} CPU(s)",
        fmt_load(r.load[0]),
        fmt_load(r.load[1]),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )
}

fn write_rows(out: &mut impl Write, r: &Report) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:<11} {:>6} {:>6} {:>7} {:>10} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8}",
        "back end",
        "mode",
        "cmds",
        "failed",
        "refused",
        "median µs",
        "p90 µs",
        "p99 µs",
        "cmds/s",
        "median×",
        "cmds/s×",
        "×process"
    )?;
    for row in &r.rows {
        let ratios = r.ratios(row);
        writeln!(
            out,
            "{:<24} {:<11} {:>6} {:>6} {:>7} {:>10} {:>10} {:>10} {:>9.1} {:>8} {:>8} {:>8}",
            row.backend.to_string(),
            row.mode.label(),
            row.latencies.len(),
            row.errors,
            row.refusals_retried
                .map_or_else(|| "-".into(), |n| n.to_string()),
            micros(row.median()),
            micros(row.percentile(0.9)),
            micros(row.percentile(0.99)),
            row.per_sec(),
            fmt_ratio(ratios.map(|x| x.median)),
            fmt_ratio(ratios.map(|x| x.per_sec)),
            fmt_ratio(r.throughput_vs_process(row)),
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "median× and cmds/s×: ratio to `{}` in the same mode (fresh connections: to the \
         sequential one); ×process: cmds/s over the process mux's in the same mode. failed: \
         commands that failed (must be 0); refused: sessions sshd refused (MaxSessions) that \
         the pool retried.",
        Backend::HandSpawned
    )?;
    for row in r.rows.iter().filter(|row| row.errors > 0) {
        writeln!(
            out,
            "FAILED: {} ({}): {} command(s), first: {}",
            row.backend,
            row.mode.label(),
            row.errors,
            one_line(row.first_error.as_deref().unwrap_or(""))
        )?;
    }
    Ok(())
}

fn write_liveness(out: &mut impl Write, l: &Liveness) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "Liveness of a warm master: {} spawned `ssh -O check`s; after each, the refresh fast \
         path and the probe, in turns first (cold: right after the spawn) or second (warm):",
        l.ssh_check.len()
    )?;
    writeln!(
        out,
        "{:<40} {:>6} {:>10} {:>10} {:>10} {:>16}",
        "check", "runs", "median µs", "p90 µs", "p99 µs", "-O check / this"
    )?;
    for check in Check::ALL {
        let v = l.of(check);
        writeln!(
            out,
            "{:<40} {:>6} {:>10} {:>10} {:>10} {:>16}",
            check.label(),
            v.len(),
            micros_fine(median(v)),
            micros_fine(percentile(v, 0.9)),
            micros_fine(percentile(v, 0.99)),
            fmt_ratio(l.speedup_of(check)),
        )?;
    }
    Ok(())
}

/// What the clean-end check adds to a command, against the sequential rows of this run.
fn write_clean_end_share(out: &mut impl Write, r: &Report) -> io::Result<()> {
    let share = |mux| {
        r.clean_end_share(mux)
            .map_or("-".to_string(), |x| format!("{:.2} %", x * 100.0))
    };
    writeln!(
        out,
        "The clean-end check is {} of a native and {} of a process command (sequential medians).",
        share(Mux::Native),
        share(Mux::Process)
    )
}

fn write_fresh_processes(out: &mut impl Write, r: &Report) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "First command of a fresh process: `conn run --mux M -H {} -- {}` spawned anew each \
         time (after the pools shut down: masters alive, leases free), whole child wall time:",
        r.host,
        r.command.join(" ")
    )?;
    let line = |out: &mut dyn Write, what: &str, lat: &[Duration], errors: usize, x: String| {
        writeln!(
            out,
            "{:<40} {:>6} {:>6} {:>10} {:>10} {:>10} {:>16}",
            what,
            lat.len(),
            errors,
            micros(median(lat)),
            micros(percentile(lat, 0.9)),
            micros(percentile(lat, 0.99)),
            x
        )
    };
    writeln!(
        out,
        "{:<40} {:>6} {:>6} {:>10} {:>10} {:>10} {:>16}",
        "process", "runs", "failed", "median µs", "p90 µs", "p99 µs", "fresh ssh / this"
    )?;
    for f in &r.fresh_processes {
        let what = format!("conn run --mux {}", f.mux);
        line(
            out,
            &what,
            &f.latencies,
            f.errors,
            fmt_ratio(r.fresh_speedup(f)),
        )?;
        if let Some(e) = &f.first_error {
            writeln!(out, "FAILED: {what}: first: {}", one_line(e))?;
        }
    }
    if let Some(x) = r.row(Backend::FreshSsh, Mode::Sequential) {
        line(
            out,
            &x.backend.to_string(),
            &x.latencies,
            x.errors,
            "1.00".into(),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::report::fixtures::full_report;
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1234), "1 234");
        assert_eq!(group_thousands(1234567), "1 234 567");
    }

    #[test]
    fn the_table_shows_figures_ratios_and_failures_and_grades_nothing() {
        let mut table = Vec::new();
        write_table(&mut table, &full_report()).unwrap();
        let table = String::from_utf8(table).unwrap();
        let line = |start: &str| -> &str {
            table
                .lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line {start:?} in\n{table}"))
        };
        assert!(line("conn bench: `/bin/echo hello` on h:").contains("8 and 32 threads"));
        assert!(line("load average").contains("unknown at the start, 0.75 0.50 0.25 at the end"));
        let fresh: Vec<&str> = line("ssh (new connection)").split_whitespace().collect();
        // Its median× against the sequential baseline: 200 ms / 10 ms.
        assert_eq!(fresh[fresh.len() - 3..], ["20.00", "0.05", "-"], "{table}");
        let native_8 = table
            .lines()
            .find(|l| l.starts_with("conn pool (native mux)") && l.contains("8 threads"))
            .unwrap();
        assert!(native_8.ends_with("4.00"), "{table}");
        assert_eq!(
            line("FAILED:"),
            "FAILED: conn pool (native mux) (32 threads): 1 command(s), first: ssh exited with \
             255: | boom"
        );
        assert!(line("ssh -O check (spawned)").ends_with("1.00"), "{table}");
        assert!(
            line("refresh() fast path, cold").ends_with("150.00"),
            "{table}"
        );
        assert!(line("conn run --mux process").ends_with("8.00"), "{table}");
        for graded in ["Target", "MISSED", " met "] {
            assert!(!table.contains(graded), "{graded:?} in\n{table}");
        }
    }
}
