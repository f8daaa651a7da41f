//! The command line: clap (derive) definitions of `conn` and its subcommands, and the mapping
//! of the ssh options onto [`OpenSshBuilder`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use conn_openssh::Mux;

mod help;
mod ssh;

use help::*;
pub use ssh::SshArgs;

/// `conn`: run commands on remote hosts through pooled, multiplexed OpenSSH connections.
#[derive(Debug, Parser)]
#[command(
    name = "conn",
    version,
    about = "Run commands on remote hosts through a pool of multiplexed OpenSSH ControlMaster \
             connections",
    after_help = EXAMPLES,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `conn`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command on one or more hosts (or locally) through pooled ssh masters.
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Measure latency and throughput of pooled masters (native and process mux) against
    /// hand-spawned and fresh ssh, liveness checks, and a fresh process's first command.
    #[command(after_help = BENCH_AFTER_HELP)]
    Bench(BenchArgs),
    /// Expand a host-set expression (`h[01-16],db[1-2]`) one name per line, or fold it.
    #[command(after_help = HOSTS_AFTER_HELP)]
    Hosts(HostsArgs),
    /// Show (or prune) the leased control-socket names under a socket directory.
    #[command(after_help = LEASES_AFTER_HELP)]
    Leases(LeasesArgs),
    /// Copy files (with -r, directory trees) to every host, or with --rcopy from every host,
    /// through the pooled masters.
    #[command(after_help = COPY_AFTER_HELP)]
    Copy(CopyArgs),
    /// Start a private sshd on 127.0.0.1, benchmark it, show master reuse, tear it down.
    #[command(after_help = DEMO_AFTER_HELP)]
    Demo(DemoArgs),
    /// A drop-in `ssh` whose sessions go through the pool (for git, rsync, scp, sftp,
    /// scripts); what a pooled session cannot serve is handed to ssh itself.
    #[command(
        after_help = SSH_AFTER_HELP,
        disable_help_flag = true,
        override_usage = "conn ssh [--conn-option …] [ssh options] destination [command [argument …]]"
    )]
    Ssh(SshCmdArgs),
}

/// `conn ssh`: every word after `ssh` goes, unchanged, to ssh's own rules (`crate::ssh`).
/// `main` reads them from the process's own arguments before clap, which would drop a `--`
/// that comes first; this definition gives `conn --help` and `conn help ssh` their text.
#[derive(Debug, Args)]
pub struct SshCmdArgs {
    /// conn's long options, then ssh's options, the destination and the remote command, as
    /// for ssh (see below).
    #[arg(
        value_name = "ARGS",
        num_args = 0..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<OsString>,
}

/// The hosts of `conn run` and `conn copy`: host-set expressions (pdsh's and clush's flags).
#[derive(Debug, Args)]
pub struct Targets {
    /// Hosts: a host set such as `db1`, `root@web[01-16],db[1-2]` (repeatable; names from
    /// ssh_config work). `-w` as in pdsh and clush; `-H` is the same.
    #[arg(
        short = 'w',
        visible_short_alias = 'H',
        long = "host",
        value_name = "EXPR"
    )]
    pub hosts: Vec<String>,

    /// Read hosts from FILE: one host-set expression per line; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,

    /// Remove these hosts (a host set; repeatable). A name without `user@` removes that host
    /// for every user.
    #[arg(short = 'x', long = "exclude", value_name = "EXPR")]
    pub exclude: Vec<String>,

    /// The hosts of these ClusterShell node groups (`-g web` is `-w @web`; `-g 'rack[1-2]'`,
    /// `-g slurm:gpu`; repeatable), as clush's `-g`.
    #[arg(short = 'g', long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,

    /// Remove the hosts of these node groups (`-X db` is `-x @db`; repeatable), as clush's
    /// `-X`.
    #[arg(short = 'X', long = "exclude-group", value_name = "GROUP")]
    pub exclude_groups: Vec<String>,

    /// Every host of the default group source (its `all` upcall, or the union of its groups),
    /// as clush's `-a`.
    #[arg(short = 'a', long = "all")]
    pub all: bool,

    /// The group source that `@group` (without `source:`), `-g`, `-X` and `-a` use, instead of
    /// groups.conf's default (clush's `-s`).
    #[arg(long = "groupsource", value_name = "SOURCE")]
    pub groupsource: Option<String>,
}

/// What pdsh and clush users pass to every fan-out (`conn run` and `conn copy`), with the
/// meaning those tools give them.
#[derive(Debug, Args)]
#[command(next_help_heading = "Fan-out options (pdsh and clush letters)")]
pub struct FanoutArgs {
    /// How many hosts to work on at once (pdsh and clush `-f`); fewer when the descriptor
    /// limit (`ulimit -n`, raised to its hard limit at start) does not allow as many.
    #[arg(short = 'f', long = "parallel", visible_alias = "fanout", value_name = "N",
          default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub fanout: u32,

    /// Log in as USER on every host given without `user@` (pdsh and clush `-l`).
    #[arg(short = 'l', long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Connect timeout of a new master, in seconds (pdsh and clush `-t`; the same as
    /// `--connect-timeout`).
    #[arg(short = 't', value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect: Option<u64>,

    /// Deadline for each host, retries included (seconds, fractions allowed; pdsh and clush
    /// `-u`): at expiry the host's session is ended.
    #[arg(short = 'u', long = "timeout", value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,

    /// Fail fast: after the first host that fails, start no new host and end the running ones.
    #[arg(short = 'k', long = "fail-fast")]
    pub fail_fast: bool,

    /// Retry a host up to N times in all when its command never started (a connection or a
    /// master that failed, a refused session), with jittered exponential backoff from 100 ms
    /// to 5 s; never a command that ran, unless --idempotent. Without it: up to 3 retries of
    /// a command whose master died before the session, none of a connection that failed.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: Option<u32>,

    /// The command is safe to run twice: --retries may also retry a host whose command may
    /// have run, or ran and lost its connection before its output was complete (counted in
    /// the summary).
    #[arg(long)]
    pub idempotent: bool,

    /// Show a progress bar on stderr (only when stderr is a terminal; pdsh and clush `-P`).
    #[arg(short = 'P', long = "progress")]
    pub progress: bool,

    /// Print no summary of the failures (clush `-q`).
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,

    /// Colour the host prefixes and headers, stderr lines in red: `auto` (on a terminal, unless
    /// NO_COLOR is set or CLICOLOR=0; CLICOLOR_FORCE forces it, unless NO_COLOR), `always`,
    /// `never`.
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

/// How `conn run` shows the output of its hosts.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output options")]
pub struct OutputArgs {
    /// Gather stdout: at the end, the hosts with identical stdout and status once under a
    /// header with their folded set (clush -b, dshbak -c); stderr is streamed, prefixed.
    #[arg(short = 'b', long = "gather")]
    pub gather: bool,

    /// Gather stdout and stderr both (clush -B).
    #[arg(short = 'B', long = "gather-all", conflicts_with = "gather")]
    pub gather_all: bool,

    /// No headers: at the end, every host's lines, prefixed, in host order (clush -L).
    #[arg(short = 'L', long = "sorted", conflicts_with_all = ["gather", "gather_all"])]
    pub sorted: bool,

    /// At the end, a unified diff of each other stdout against the first block's (of the
    /// lowest exit status, the largest), as clush --diff prints it; stderr is streamed.
    #[arg(long, conflicts_with_all = ["gather", "gather_all", "sorted"])]
    pub diff: bool,

    /// One JSON object per host per line on stdout, printed as each host ends (see below).
    #[arg(long, conflicts_with_all = ["gather", "gather_all", "sorted", "diff"])]
    pub json: bool,

    /// No `host: ` prefix on streamed lines and -L lines; -b and -B print their blocks without
    /// headers (pdsh and clush -N).
    #[arg(short = 'N', long = "no-prefix")]
    pub no_prefix: bool,

    /// Accepted for pdsh users: the exit status is already the largest of the hosts' (pdsh -S).
    #[arg(short = 'S', hide = true)]
    pub largest_status: bool,

    /// Write each host's stdout, whole and byte for byte, to DIR/HOST too (clush and pssh
    /// --outdir); streamed, in bounded memory.
    #[arg(long, value_name = "DIR")]
    pub outdir: Option<PathBuf>,

    /// Write each host's stderr to DIR/HOST too (clush and pssh --errdir).
    #[arg(long, value_name = "DIR")]
    pub errdir: Option<PathBuf>,
}

/// `conn run`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("targets")
        .required(true)
        .multiple(true)
        .args(["hosts", "hosts_file", "groups", "all", "local"])
))]
pub struct RunArgs {
    /// The hosts.
    #[command(flatten)]
    pub targets: Targets,

    /// Run on this machine through conn-local (direct exec, no shell, no ssh).
    #[arg(long, conflicts_with_all = ["hosts", "hosts_file", "exclude", "groups", "exclude_groups", "all", "groupsource"])]
    pub local: bool,

    /// How the output is shown.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Send conn's standard input (a pipe or a file, not a terminal) to every host: read once
    /// to its end first (kept in a temporary file, not in memory), then each host reads it
    /// from its own descriptor at its own pace.
    #[arg(long, help_heading = "Run options")]
    pub stdin_all: bool,

    /// Print what would run instead of running it, on stderr: with --mux native the endpoint
    /// and the remote command line, with --mux process the whole `ssh -S …` command line. No
    /// master is started.
    #[arg(long, help_heading = "Run options")]
    pub dry_run: bool,

    /// When conn ends a host's command early (a signal, --timeout, --fail-fast), end the
    /// remote command too: its process group gets SIGTERM (needs a POSIX login shell there;
    /// without this flag the remote command runs on: docs/cli.md).
    #[arg(long)]
    pub kill_remote: bool,

    /// How sessions reach the master: `native` (the default) speaks OpenSSH's mux protocol
    /// from conn itself (no spawn per command, and a remote exit 255 is told apart from an ssh
    /// failure); `process` spawns an `ssh -S` client per command, as OpenSSH users know it.
    /// The master is `ssh -M` either way.
    #[arg(long, value_name = "native|process", default_value = "native", value_parser = parse_mux,
          help_heading = "Run options")]
    pub mux: Mux,

    /// The pdsh and clush options.
    #[command(flatten)]
    pub fanout: FanoutArgs,

    /// The ssh and pool options.
    #[command(flatten)]
    pub ssh: SshArgs,

    /// The command and its arguments (each argument is quoted for the remote shell; bytes
    /// that are not UTF-8 pass unchanged).
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true,
          value_parser = clap::value_parser!(std::ffi::OsString))]
    pub command: Vec<std::ffi::OsString>,
}

/// `conn copy`.
#[derive(Debug, Args)]
#[command(
    override_usage = "conn copy [OPTIONS] (-w EXPR … | --hosts-file FILE | -g GROUP … | -a) [-r] SRC… DEST\n       \
                      conn copy [OPTIONS] (-w EXPR … | …) --rcopy [-r] [--preserve] SRC… --dest DIR"
)]
#[command(group(
    ArgGroup::new("targets")
        .required(true)
        .multiple(true)
        .args(["hosts", "hosts_file", "groups", "all"])
))]
pub struct CopyArgs {
    /// The hosts.
    #[command(flatten)]
    pub targets: Targets,

    /// Copy directories with their contents.
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// Reverse copy (clush --rcopy, pdsh's rpdcp): fetch SRC… from every host into --dest,
    /// each as DIR/NAME.HOST.
    #[arg(long, requires = "dest")]
    pub rcopy: bool,

    /// The local directory that fetched copies go into (with --rcopy).
    #[arg(long, value_name = "DIR", requires = "rcopy")]
    pub dest: Option<PathBuf>,

    /// With --rcopy: keep the modification times too, and the modes within trees (a fetched
    /// file keeps its mode anyway); pdcp's and clush's `-p`, which is the port in conn.
    #[arg(long, requires = "rcopy")]
    pub preserve: bool,

    /// How sessions reach the master (`native` or `process`), as for `conn run`.
    #[arg(long, value_name = "native|process", default_value = "native", value_parser = parse_mux)]
    pub mux: Mux,

    /// The pdsh and clush options.
    #[command(flatten)]
    pub fanout: FanoutArgs,

    /// The ssh and pool options.
    #[command(flatten)]
    pub ssh: SshArgs,

    /// SRC… DEST: local files (or with -r directories), then the remote destination: a
    /// directory when there are several sources, with -r, or when it ends with `/`; else the
    /// file's new name. With --rcopy: the paths to fetch from every host.
    #[arg(value_name = "PATH", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
}

/// `conn bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The host to measure, `host` or `user@host`.
    #[arg(value_name = "[USER@]HOST")]
    pub host: String,

    /// Commands per row.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub count: u32,

    /// Threads of the concurrent rows; a comma-separated list measures each (`-t 8,32`).
    #[arg(short = 't', long, value_name = "T[,T…]", value_delimiter = ',', default_value = "8,32",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub threads: Vec<u32>,

    /// The pool back ends to measure, comma-separated (`native`, `process`).
    #[arg(long, value_name = "MUX[,MUX]", value_delimiter = ',', default_value = "native,process",
          value_parser = parse_mux)]
    pub mux: Vec<Mux>,

    /// Fresh ssh connections to measure (0 skips that row).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub fresh: u32,

    /// Liveness: this many spawned `ssh -O check`s, each followed by the refresh fast path and
    /// the in-process probe (0 skips the section).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub checks: u32,

    /// Fresh `conn run` processes per back end, each timed from spawn to exit (0 skips the
    /// section).
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub fresh_runs: u32,

    /// Unmeasured commands through the pool first (starts the masters).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub warmup: u32,

    /// Run the remote shell's builtin `echo hello` instead of `/bin/echo hello` (same output,
    /// no exec on the remote side), in every row and fresh process: isolates the transport's
    /// cost from the remote exec's, which dominates when the server shares the client's CPUs.
    #[arg(long)]
    pub builtin: bool,

    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Measure a stream instead of commands: MB/s of --stream-mib into the remote
    /// `cat >/dev/null` through each back end, a hand-spawned `ssh -S` and (unless --fresh 0) a
    /// fresh ssh, with this process's peak RSS; the other sections are skipped.
    #[arg(long)]
    pub stream: bool,

    /// Size of each stream of --stream, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub stream_mib: u32,

    /// Streams per subject of --stream, taken in turns.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub stream_rounds: u32,

    /// The ssh and pool options.
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// `conn hosts`.
#[derive(Debug, Args)]
pub struct HostsArgs {
    /// Host-set expressions (`@group` too); the set is their union.
    #[arg(value_name = "EXPR", required_unless_present_any = ["all", "list"], num_args = 1..)]
    pub exprs: Vec<String>,

    /// Remove these hosts (a host set; repeatable).
    #[arg(short = 'x', long = "exclude", value_name = "EXPR")]
    pub exclude: Vec<String>,

    /// Add every host of the group source (`nodeset -a`).
    #[arg(short = 'a', long = "all")]
    pub all: bool,

    /// Print the set as one folded expression (`nodeset -f`) instead of one name per line.
    #[arg(short = 'f', long, conflicts_with_all = ["regroup", "list"])]
    pub fold: bool,

    /// Print the set folded with the node groups that it holds whole (`nodeset -r`):
    /// `@web,db1`.
    #[arg(short = 'r', long, conflicts_with = "list")]
    pub regroup: bool,

    /// List the group source's groups (`nodeset -l`); with EXPR, those holding any of its
    /// hosts. `-ll` adds their hosts, `-lll` their count.
    #[arg(short = 'l', long = "list", action = clap::ArgAction::Count)]
    pub list: u8,

    /// The group source to use instead of groups.conf's default (`nodeset -s`); group names
    /// are then printed `@SOURCE:group`.
    #[arg(short = 's', long = "groupsource", value_name = "SOURCE")]
    pub groupsource: Option<String>,
}

/// `conn leases`.
#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// The socket directory to inspect [default: ~/.ssh/conn, home from the password database,
    /// or /tmp/conn-UID when that is too long for socket paths].
    #[arg(long, value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,

    /// Remove the unleased names whose socket is missing or older than the pruning TTL.
    #[arg(long)]
    pub prune: bool,

    /// The ControlPersist the masters were started with (sets the pruning TTL).
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub control_persist: u64,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `conn demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Commands per benchmark row.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,

    /// Threads of the concurrent benchmark rows; a comma-separated list measures each.
    #[arg(short = 't', long, value_name = "T[,T…]", value_delimiter = ',', default_value = "8,32",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Vec<u32>,

    /// Benchmark the remote shell's builtin `echo hello` instead of `/bin/echo hello`
    /// (`conn bench --builtin`): the transport's cost without the remote exec's.
    #[arg(long)]
    pub builtin: bool,

    /// Benchmark streams instead of commands (`conn bench --stream`): MB/s of STREAM_MIB into
    /// the remote `cat >/dev/null` per back end against a hand-spawned `ssh -S`, and conn's
    /// peak memory.
    #[arg(long)]
    pub stream: bool,

    /// Size of each stream of --stream, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024, requires = "stream",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub stream_mib: u32,
}

/// Parses a mux back end with [`Mux`]'s own `FromStr` (`native` or `process`).
fn parse_mux(s: &str) -> Result<Mux, String> {
    s.trim().parse::<Mux>().map_err(|e| e.to_string())
}

/// Parses a positive number of seconds, fractions allowed (`30`, `0.5`).
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("{s:?} must be a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests;
