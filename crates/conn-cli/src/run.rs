//! `conn run`: the hosts, the command and the output mode from the command line, handed to the
//! fan-out engine ([`conn_fleet::Fleet`]); this module spawns no thread and makes no pool.

use std::io::{self, IsTerminal};

use conn_core::{Cmd, RetryPolicy, Stdin, Transport};
use conn_fleet::{Broadcast, Fleet, Gather, Task};
use conn_local::Local;
use conn_openssh::OpenSsh;

use crate::args::{FanoutArgs, OutputArgs, RunArgs, SshArgs, Targets};
use crate::hosts::host_list;
use crate::output::{Failure, print_error};
use crate::print::{
    Files, Live, Palette, Printer, exit_code, write_diff, write_gathered, write_sorted,
    write_summary,
};
use crate::{POOL_NAME, signals};

/// Runs `conn run`; returns the exit code.
pub fn main(args: &RunArgs) -> Result<u8, Failure> {
    args.ssh.validate().map_err(Failure::usage)?;
    if args.stdin_all && io::stdin().is_terminal() {
        return Err(Failure::usage(
            "--stdin-all sends conn's standard input to every host, but it is a terminal: \
             pipe or redirect the input (e.g. `conn run --stdin-all -w … -- cmd < file`)",
        ));
    }
    conn_fleet::limits::raise_nofile_limit();
    // Everything is validated before anything starts: a bad name or option is exit 2.
    let fleet = if args.local {
        None
    } else {
        Some(ssh_fleet(&args.targets, &args.ssh, &args.fanout, args.mux)?)
    };
    let hosts = fleet.as_ref().map_or(1, Fleet::len);
    let mode = Mode::of(&args.output, hosts);
    let files = Files::new(
        args.output.outdir.as_deref(),
        args.output.errdir.as_deref(),
        hosts,
    )
    .map_err(Failure::usage)?;
    // Read once, to its end, before any host starts: every host then reads the same bytes
    // from its own descriptor, at its own pace (`Stdin::Path` opens it anew for each), and
    // memory stays bounded (the bytes wait on disk, not in conn).
    let (_spill, stdin) = if args.stdin_all {
        let input = Broadcast::read_from(io::stdin().lock())
            .map_err(|e| Failure::other(format!("--stdin-all: cannot keep standard input: {e}")))?;
        let stdin = input.stdin();
        (Some(input), stdin)
    } else if mode.live == Live::PassThrough && !io::stdin().is_terminal() {
        // One host passed through: our stdin is its stdin (from a terminal it gets
        // /dev/null: a child in its own process group that reads the terminal is stopped).
        (None, Stdin::Inherit)
    } else {
        (None, Stdin::Null)
    };
    let cmd = Cmd::new(&args.command)
        .stdin(stdin)
        .dry_run(args.dry_run)
        .kill_remote(args.kill_remote);
    let run = Run {
        cmd,
        mode,
        files,
        fanout: &args.fanout,
        output: &args.output,
    };
    Ok(match fleet {
        Some(fleet) => run.on(fleet),
        None => run.on(configured(
            Fleet::new().host("localhost", Local::new()),
            &args.ssh,
            &args.fanout,
        )),
    })
}

/// One [`OpenSsh`] transport per host of `targets`, all built (every option and name
/// validated) before anything runs.
pub(crate) fn ssh_fleet(
    targets: &Targets,
    ssh: &SshArgs,
    fanout: &FanoutArgs,
    mux: conn_openssh::Mux,
) -> Result<Fleet<OpenSsh>, Failure> {
    let mut fleet = Fleet::new();
    for name in host_list(targets)? {
        let transport = ssh
            .builder_with(&name, fanout.user.as_deref(), fanout.connect)
            .mux(mux)
            .build()?;
        fleet.push(name, transport);
    }
    Ok(configured(fleet, ssh, fanout))
}

/// `fleet` with the fan-out settings of the command line.
fn configured<T: Transport>(fleet: Fleet<T>, ssh: &SshArgs, fanout: &FanoutArgs) -> Fleet<T> {
    fleet
        .fanout(fanout.fanout as usize)
        .capacity(ssh.capacity as usize)
        .pool_name(POOL_NAME)
        .timeout(fanout.timeout)
        .retry(retry_policy(fanout))
        .fail_fast(fanout.fail_fast)
}

/// `--retries N` and `--idempotent`: one budget for everything a host's pool tries again
/// (docs/cli.md#retries).
pub(crate) fn retry_policy(fanout: &FanoutArgs) -> RetryPolicy {
    match fanout.retries {
        Some(n) => RetryPolicy::new(n as usize),
        None => RetryPolicy::pool_default(),
    }
    .idempotent(fanout.idempotent)
}

/// What is shown of the hosts' output, while they run and at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    live: Live,
    after: After,
}

/// What is printed once every host is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Nothing,
    /// `-b` (stdout only) and `-B` (with stderr).
    Gathered {
        with_stderr: bool,
    },
    /// `-L`.
    Sorted,
    /// `--diff`.
    Diff,
    /// `--json` (printed as each host ends).
    Json,
}

impl Mode {
    fn of(out: &OutputArgs, hosts: usize) -> Mode {
        let quiet = Live::Lines {
            stdout: false,
            stderr: false,
        };
        let (live, after) = if out.json {
            (quiet, After::Json)
        } else if out.gather {
            // clush -b: stdout gathered, stderr as it comes.
            let live = Live::Lines {
                stdout: false,
                stderr: true,
            };
            (live, After::Gathered { with_stderr: false })
        } else if out.gather_all {
            (quiet, After::Gathered { with_stderr: true })
        } else if out.sorted {
            (quiet, After::Sorted)
        } else if out.diff {
            // As clush: stderr as it comes, stdout compared at the end.
            let live = Live::Lines {
                stdout: false,
                stderr: true,
            };
            (live, After::Diff)
        } else if hosts == 1 {
            (Live::PassThrough, After::Nothing)
        } else {
            let live = Live::Lines {
                stdout: true,
                stderr: true,
            };
            (live, After::Nothing)
        };
        Mode { live, after }
    }

    fn gathers(self) -> bool {
        self.after != After::Nothing
    }
}

/// A run: the command, the output mode and the settings that the printer needs.
struct Run<'a> {
    cmd: Cmd,
    mode: Mode,
    files: Option<Files>,
    fanout: &'a FanoutArgs,
    output: &'a OutputArgs,
}

impl Run<'_> {
    fn on<T: Transport>(self, fleet: Fleet<T>) -> u8 {
        let fleet = fleet.gather(self.mode.gathers().then(Gather::default));
        signals::cancel_on_signal(fleet.cancel_token());
        let palette = Palette::for_stdout(&self.fanout.color);
        let printer = Printer::new(
            self.mode.live,
            !self.output.no_prefix,
            palette,
            fleet.len(),
            self.fanout.progress,
        )
        .files(self.files)
        .json(self.mode.after == After::Json);
        let report = fleet.run(&Task::Run(self.cmd), &printer);
        printer.finish();
        let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
        // A closed stdout (`conn run -b … | head`) is not worth a failure of the run.
        let _ = match self.mode.after {
            After::Gathered { with_stderr } => write_gathered(
                &mut out,
                &mut err,
                &report,
                palette,
                with_stderr,
                !self.output.no_prefix,
            ),
            After::Sorted => {
                write_sorted(&mut out, &mut err, &report, palette, !self.output.no_prefix)
            }
            After::Diff => write_diff(&mut out, &report, palette),
            After::Nothing | After::Json => Ok(()),
        };
        if self.mode.live == Live::PassThrough {
            // One host: its error alone, as one line.
            if let Some(failure) = report.hosts[0]
                .failure()
                .filter(|_| report.hosts[0].status().is_none())
            {
                drop(err);
                print_error(&failure);
            }
        } else if !self.fanout.quiet {
            let _ = write_summary(&mut err, &report);
        }
        exit_code(&report, signals::interrupted().is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(flags: &[&str]) -> OutputArgs {
        OutputArgs {
            gather: flags.contains(&"-b"),
            gather_all: flags.contains(&"-B"),
            sorted: flags.contains(&"-L"),
            diff: flags.contains(&"--diff"),
            json: flags.contains(&"--json"),
            no_prefix: false,
            largest_status: false,
            outdir: None,
            errdir: None,
        }
    }

    #[test]
    fn modes_follow_the_flags_and_the_number_of_hosts() {
        assert_eq!(Mode::of(&output(&[]), 1).live, Live::PassThrough);
        assert_eq!(
            Mode::of(&output(&[]), 2).live,
            Live::Lines {
                stdout: true,
                stderr: true
            }
        );
        let b = Mode::of(&output(&["-b"]), 1);
        assert_eq!(
            b.live,
            Live::Lines {
                stdout: false,
                stderr: true
            },
            "-b streams stderr"
        );
        assert_eq!(b.after, After::Gathered { with_stderr: false });
        assert_eq!(
            Mode::of(&output(&["-B"]), 3).after,
            After::Gathered { with_stderr: true }
        );
        assert_eq!(Mode::of(&output(&["-L"]), 3).after, After::Sorted);
        assert_eq!(Mode::of(&output(&["--json"]), 1).after, After::Json);
        assert!(!Mode::of(&output(&[]), 5).gathers());
    }
}
