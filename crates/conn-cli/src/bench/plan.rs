//! What to measure: the arguments of `conn bench` after validation, and the command every
//! measurement runs.

use conn_openssh::Mux;

use crate::args::BenchArgs;

/// The command every measurement runs by default: an external program, so each command also
/// pays the remote side's fork and exec of `/bin/echo`, as a real command would.
pub const EXEC_ARGV: [&str; 2] = ["/bin/echo", "hello"];

/// The command with `--builtin`: `echo hello`. sshd still starts the remote login shell
/// (`$SHELL -c 'echo hello'`), but its builtin `echo` prints the same `hello` with no further
/// fork or exec. Against a server on the same CPUs as the client, the remote exec of
/// `/bin/echo` is most of a native-mux session's CPU and hides the transport's difference; the
/// builtin isolates the transport's cost (client, master, sshd's session, the shell's start)
/// from the remote exec's.
pub const BUILTIN_ARGV: [&str; 2] = ["echo", "hello"];

/// What both commands print.
pub const EXPECTED_STDOUT: &[u8] = b"hello\n";

/// How a row's commands were issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// One after another on one thread.
    Sequential,
    /// From this many threads at once.
    Concurrent(usize),
}

impl Mode {
    /// The table's name of the mode.
    pub fn label(self) -> String {
        match self {
            Mode::Sequential => "sequential".into(),
            Mode::Concurrent(t) => format!("{t} threads"),
        }
    }

    /// The threads that issue the commands.
    pub fn threads(self) -> usize {
        match self {
            Mode::Sequential => 1,
            Mode::Concurrent(t) => t,
        }
    }
}

/// What to measure: the arguments of `conn bench` after validation.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Commands per row.
    pub count: usize,
    /// Thread counts of the concurrent rows, ascending, no duplicates.
    pub threads: Vec<usize>,
    /// The pool back ends, in table order (native first).
    pub muxes: Vec<Mux>,
    /// Fresh ssh connections.
    pub fresh: usize,
    /// Unmeasured commands per pool first.
    pub warmup: usize,
    /// Liveness checks of each kind.
    pub checks: usize,
    /// Fresh `conn run` processes per back end.
    pub fresh_runs: usize,
    /// The command every measurement runs: [`EXEC_ARGV`], or [`BUILTIN_ARGV`] with `--builtin`.
    pub command: Vec<String>,
}

impl Plan {
    /// The plan of `args`: thread counts sorted and deduplicated, back ends deduplicated with
    /// the native one first.
    pub fn of(args: &BenchArgs) -> Plan {
        let mut threads: Vec<usize> = args.threads.iter().map(|&t| t as usize).collect();
        threads.sort_unstable();
        threads.dedup();
        let muxes = [Mux::Native, Mux::Process]
            .into_iter()
            .filter(|m| args.mux.contains(m))
            .collect();
        Plan {
            count: args.count as usize,
            threads,
            muxes,
            fresh: args.fresh as usize,
            warmup: args.warmup as usize,
            checks: args.checks as usize,
            fresh_runs: args.fresh_runs as usize,
            command: if args.builtin {
                BUILTIN_ARGV
            } else {
                EXEC_ARGV
            }
            .map(String::from)
            .to_vec(),
        }
    }

    /// Every mode in table order: sequential, then each thread count, ascending.
    pub fn modes(&self) -> impl Iterator<Item = Mode> + '_ {
        std::iter::once(Mode::Sequential).chain(self.threads.iter().map(|&t| Mode::Concurrent(t)))
    }
}
