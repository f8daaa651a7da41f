//! The command line: clap (derive) definitions of `conn` and its subcommands, and the mapping
//! of the ssh options onto [`OpenSshBuilder`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use conn_core::DEFAULT_CAPACITY;
use conn_openssh::Location;
use std::ffi::OsString;

use conn_openssh::{DEFAULT_CIPHER, DEFAULT_EXTRA_OPTIONS, Mux, OpenSsh, OpenSshBuilder};

const EXAMPLES: &str = "\
Examples:
  conn demo                                  private sshd on 127.0.0.1, a benchmark, master reuse
  conn run -H db1 -- uptime                  output and exit status are the remote command's own
  conn run -H db1 -H db2 -H db3 -- uname -r  fan out; each line prefixed \"db1: \"
  conn run -w 'web[01-16],db[1-2]' -x web07 -b -- uname -r   host sets; -b gathers equal output
  conn hosts --fold 'web[01-16]' -x 'web[03-05]'            prints web[01-02,06-16]
  conn run --hosts-file hosts.txt --parallel 64 --timeout 30 --retries 2 -- zfs list -H
  conn run --mux native -H db1 -- zfs list    sessions in-process over the master: no ssh spawn
  conn bench -n 500 -t 8,32 backup@db1       native and process mux vs hand-spawned `ssh -S`
  conn leases --prune                        what ~/.ssh/conn holds; remove dead names

Masters stay alive after `conn` exits (ControlPersist, 600 s by default), so the next `conn`
attaches to them at once; `--exit-on-shutdown` ends them instead.";

const RUN_AFTER_HELP: &str = "\
Exit status:
  one host   the remote command's own status (128+N if it was killed by signal N)
  several    the largest status of any host; a summary of the failed hosts goes to stderr
  2          usage error, bad host name or option: nothing was started
  124        --timeout expired (the command's local ssh client was killed)
  127        the ssh program was not found
  130        interrupted by SIGINT, SIGTERM or SIGHUP (every child was killed)
  255        ssh itself failed (connection, authentication, master), as with plain ssh;
             with --mux process also a remote exit 255 (ssh cannot tell them apart), with
             --mux native only a real transport failure

Hosts (-w, -H, -x and every --hosts-file line take host-set expressions, as pdsh and clush do):
  a,b,h[1-3]            comma lists; [..] ranges, also 1-10/2; h[001-100,200] keeps the padding
  rack[1-2]-n[01-16]    several brackets make every combination (32 hosts)
  root@h[1-3]           user@ applies to each name of its item
  -x 'h[2-3]'           removes hosts (a name without user@ removes it for every user)
Hosts run in the set's order (`conn hosts EXPR` lists it); duplicates run once.

Output with several hosts (or with -b / --json):
  default    each line prefixed \"host: \" (stdout to stdout, stderr to stderr), per host when done
  -b         at the end, hosts with identical stdout, stderr and status once, under a header
             with their folded set and count (as clubak -b / dshbak -c)
  --json     one object per host per line when it ends: host, exit_code, signal, duration_s,
             stdout, stderr (or stdout_base64/stderr_base64 when not UTF-8), failure
             (kind, command_ran: ran | not_started | unknown, message) or null
The summary on stderr folds the failed hosts by reason: `conn: h[03,07]: exit code 1`.

Examples:
  conn run -H db1 -- zfs list -H -o name
  conn run -w 'node[001-128]' -x node042 --parallel 64 -b -- uname -r
  conn run -w 'rack[1-2]-n[01-16]' --json -- df -h / > df.jsonl
  conn run -H db1 -H db2 --timeout 10 -- sh -c 'uptime; df -h /'
  conn run --hosts-file hosts.txt --parallel 64 --retries 3 -- uname -r
  conn run -F ~/.ssh/lab_config -H lab1 -o Compression=yes -- cat /etc/os-release
  conn run --mux native -H db1 -- true     no `ssh -S` client per command (OpenSSH mux protocol)
  conn run --local -- ls -l /tmp           same code path, no ssh (direct exec, no shell)
  conn run --dry-run -H db1 -- rm -rf /scratch   prints the ssh command line, runs nothing";

const BENCH_AFTER_HELP: &str = "\
Rows (each runs `/bin/echo hello` on HOST, or with --builtin the remote shell's builtin
`echo hello`), sequentially and at each of -t THREADS:
  conn pool (native mux)   conn's pool, sessions spoken in-process over the master socket
  conn pool (process mux)  conn's pool, one `ssh -S` client process per command
  ssh -S (hand-spawned)    the baseline: `ssh <same options> -S <socket of a pooled master>`
                           spawned directly, so the ratio columns are conn's own overhead
  ssh (new connection)     a fresh `ssh HOST` each time: TCP + SSH handshake + authentication
Latencies are per command (nearest-rank percentiles); cmds/s is commands over wall time;
`failed` must be 0 (any failure makes the exit status 1); `refused` counts sessions sshd
refused (MaxSessions) that the pool retried. Each mode runs in two halves, rows in A B … B A
order, so that drift favours no row. Then, in the same run:
  liveness     the refresh fast path (in-process probe of the socket) vs a spawned
               `ssh -O check` on the same master (--checks of each, interleaved)
  fresh        `conn run` spawned as a new process (--fresh-runs per back end) after the pools
               shut down (masters alive, leases free): its whole wall time vs a fresh ssh
Every ratio compares figures of the same run; none is graded against a goal.

Examples:
  conn bench db1
  conn bench -n 1000 -t 8,32 --capacity 8 --json backup@db1 > bench.json
  conn bench --mux process -t 16 db1
  conn bench --builtin db1                 no remote exec: the transports' own cost
  conn bench --stream db1                  MB/s of 1 GiB into `cat >/dev/null` instead";
const COPY_AFTER_HELP: &str = "\
Examples:
  conn copy -w web[01-16] app.conf /etc/app/        one file into a directory on 16 hosts
  conn copy -r -w db[1-2] ./schema /srv/            a directory tree

Each file is written under a temporary name next to its destination, checked for its full
size, given the source's mode, and only then renamed: a killed or failed copy never leaves a
partial file under the final name. Exit status: 0 when every host got every file, else the
largest of the hosts' codes; a summary of the failures, folded by reason, goes to stderr.";

const HOSTS_AFTER_HELP: &str = "\
Syntax (pdsh's and ClusterShell's): top-level commas separate items; [..] holds numbers,
ranges a-b and stepped ranges a-b/s; every number of a-b has at least the digits of a
(h[08-10] is h08 h09 h10); several brackets make the cartesian product; user@ applies to each
name of its item. Names are sorted by their text parts, then user, then numerically; --fold
writes the set back as short as nodeset -f does. A malformed expression exits 2 and shows a
caret under the offending character.

Examples:
  conn hosts 'h[01-03],db1'                 db1 h01 h02 h03, one per line
  conn hosts --fold h01 h02 h03 h07         h[01-03,07]
  conn hosts 'rack[1-2]-n[01-16]' -x rack2-n16 --fold
  conn hosts 'root@web[1-4]' -x 'web[2-3]'  root@web1 root@web4";

const LEASES_AFTER_HELP: &str = "\
Each namespace (one per location, endpoint and pool) holds socket names that are
  free       not leased by anyone; the next `conn` takes it (and its master, if alive)
  held       leased by a live process
  abandoned  leased by a process that died; the next `conn` salvages it
and each name's socket has a live master, a dead one (nothing listens), or none.
Read-only unless --prune, which removes the unleased names whose socket is missing or older
than the pruning TTL (max(90 min, 2 x ControlPersist + 2 s)), as a new lease would.

Examples:
  conn leases
  conn leases --socket-dir /tmp/conn-sockets --json
  conn leases --prune";

const DEMO_AFTER_HELP: &str = "\
Needs /usr/sbin/sshd, ssh and ssh-keygen, and run as root, the account `conntest` (login
shell /bin/sh) that the private sshd logs in as (as any other user it logs in as that user).
`bash scripts/setup.sh`, run as root from the conn repository, prepares all of it;
`bash scripts/demo.sh` runs it, then the demo. The demo itself changes nothing outside its
temporary directories: it says what is missing and stops.

Examples:
  bash scripts/demo.sh
  cargo run --release -p conn-cli -- demo
  cargo run --release -p conn-cli -- demo --builtin   the bench runs the shell's builtin echo";

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
    /// Copy files (with -r, directory trees) to every host through the pooled masters.
    #[command(after_help = COPY_AFTER_HELP)]
    Copy(CopyArgs),
    /// Start a private sshd on 127.0.0.1, benchmark it, show master reuse, tear it down.
    #[command(after_help = DEMO_AFTER_HELP)]
    Demo(DemoArgs),
}

/// `conn run`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("targets")
        .required(true)
        .multiple(true)
        .args(["hosts", "hosts_file", "local"])
))]
pub struct RunArgs {
    /// Hosts to run on: a host set such as `db1`, `root@web[01-16],db[1-2]` (repeatable;
    /// names from ssh_config work). `-w` as in pdsh and clush; `-H` is the same.
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

    /// Run on this machine through conn-local (direct exec, no shell, no ssh).
    #[arg(long, conflicts_with_all = ["hosts", "hosts_file", "exclude"])]
    pub local: bool,

    /// Gather: after all hosts end, print the hosts with identical stdout, stderr and status
    /// once, under a header with their folded host set and count (as `clubak -b`).
    #[arg(short = 'b', long = "gather")]
    pub gather: bool,

    /// One JSON object per host per line on stdout, printed as each host ends (see below).
    #[arg(long, conflicts_with = "gather")]
    pub json: bool,

    /// Send conn's standard input (a pipe or a file, not a terminal) to every host: read once
    /// to its end first (kept in a temporary file, not in memory), then each host reads it
    /// from its own descriptor at its own pace.
    #[arg(long)]
    pub stdin_all: bool,

    /// How many hosts to work on at once.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub parallel: u32,

    /// Deadline for each host, retries included (seconds, fractions allowed); at expiry the
    /// command's ssh client and its process group are killed.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,

    /// Print the ssh command lines (on stderr) instead of running anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Retry a host up to N times when ssh itself failed (connection, master, refused session;
    /// never a command that ran and failed), with jittered exponential backoff.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,

    /// How sessions reach the master: `native` (the default) speaks OpenSSH's mux protocol
    /// from conn itself (no spawn per command, and a remote exit 255 is told apart from an ssh
    /// failure); `process` spawns an `ssh -S` client per command, as OpenSSH users know it.
    /// The master is `ssh -M` either way.
    #[arg(long, value_name = "native|process", default_value = "native", value_parser = parse_mux)]
    pub mux: Mux,

    /// The ssh and pool options.
    #[command(flatten)]
    pub ssh: SshArgs,

    /// The command and its arguments (each argument is quoted for the remote shell).
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// `conn copy`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("targets")
        .required(true)
        .multiple(true)
        .args(["hosts", "hosts_file"])
))]
pub struct CopyArgs {
    /// Hosts to copy to: a host set, as for `conn run -w`.
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

    /// Remove these hosts (a host set; repeatable).
    #[arg(short = 'x', long = "exclude", value_name = "EXPR")]
    pub exclude: Vec<String>,

    /// Copy directories with their contents.
    #[arg(short = 'r', long)]
    pub recursive: bool,

    /// How many hosts to copy to at once.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub parallel: u32,

    /// Deadline for each host, all its files together (seconds, fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,

    /// How sessions reach the master (`native` or `process`), as for `conn run`.
    #[arg(long, value_name = "native|process", default_value = "native", value_parser = parse_mux)]
    pub mux: Mux,

    /// The ssh and pool options.
    #[command(flatten)]
    pub ssh: SshArgs,

    /// SRC… DEST: local files (or with -r directories), then the remote destination: a
    /// directory when there are several sources, with -r, or when it ends with `/`; else the
    /// file's new name.
    #[arg(value_name = "SRC… DEST", required = true, num_args = 2..)]
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
    /// Host-set expressions; the set is their union.
    #[arg(value_name = "EXPR", required = true, num_args = 1..)]
    pub exprs: Vec<String>,

    /// Remove these hosts (a host set; repeatable).
    #[arg(short = 'x', long = "exclude", value_name = "EXPR")]
    pub exclude: Vec<String>,

    /// Print the set as one folded expression (`nodeset -f`) instead of one name per line.
    #[arg(short = 'f', long)]
    pub fold: bool,
}

/// `conn leases`.
#[derive(Debug, Args)]
pub struct LeasesArgs {
    /// The socket directory to inspect [default: ~/.ssh/conn, home from the password database].
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
}

/// `src` or `dst` (clap's view of [`Location`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocationArg {
    /// The source side of a transfer.
    Src,
    /// The destination side of a transfer.
    Dst,
}

impl From<LocationArg> for Location {
    fn from(l: LocationArg) -> Self {
        match l {
            LocationArg::Src => Location::Src,
            LocationArg::Dst => Location::Dst,
        }
    }
}

/// The ssh and pool options shared by `run`, `copy` and `bench` (docs/design.md#options).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "SSH and pool options")]
pub struct SshArgs {
    /// The ssh client: `ssh`, `hpnssh`, or a path to either.
    #[arg(long, value_name = "PROGRAM", default_value = "ssh")]
    pub ssh_program: String,

    /// TCP port (ssh -p) [default: from ssh_config, else 22].
    #[arg(short = 'p', long, value_name = "PORT")]
    pub port: Option<u16>,

    /// ssh_config file (ssh -F); part of the masters' identity.
    #[arg(short = 'F', long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// Cipher specification (ssh -c); empty for ssh's own choice.
    #[arg(short = 'c', long, value_name = "CIPHERS", default_value = DEFAULT_CIPHER)]
    pub cipher: String,

    /// TCP connect timeout of a new master, in seconds (-oConnectTimeout).
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: Option<u64>,

    /// More ssh diagnostics (ssh -v, up to 3 times); a master writes them to the log file
    /// beside its socket.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// An ssh option, `Key=Value` (ssh -o; repeatable). Given options win over conn's defaults
    /// (-oBatchMode=yes -oServerAliveInterval=0 -x -T).
    #[arg(short = 'o', value_name = "OPTION", action = clap::ArgAction::Append)]
    pub ssh_option: Vec<String>,

    /// How long an idle master outlives its last session, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub control_persist: u64,

    /// Sessions per master (keep it below sshd's MaxSessions, 10 by default).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CAPACITY as u32,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub capacity: u32,

    /// Where control sockets and their leases live [default: ~/.ssh/conn]. At most 31 bytes
    /// long (Unix socket paths are short).
    #[arg(long, value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,

    /// Source or destination side: part of the lease namespace.
    #[arg(long, value_enum, default_value = "src")]
    pub location: LocationArg,

    /// End the masters (ssh -O exit) when done instead of leaving them for the next `conn`.
    #[arg(long)]
    pub exit_on_shutdown: bool,
}

impl SshArgs {
    /// The extra options passed to every ssh: the user's `-o` options first (ssh takes the
    /// first value it sees for an option, so they win), then conn's defaults.
    pub fn extra_options(&self) -> Vec<String> {
        self.ssh_option
            .iter()
            .map(|o| format!("-o{o}"))
            .chain(DEFAULT_EXTRA_OPTIONS.iter().map(|s| s.to_string()))
            .collect()
    }

    /// A builder for `user_host` with every option applied (validated by `build`).
    pub fn builder(&self, user_host: &str) -> OpenSshBuilder {
        let mut b = OpenSsh::builder(user_host)
            .ssh_program(&self.ssh_program)
            .cipher(&self.cipher)
            .verbose(self.verbose)
            .extra_options(self.extra_options())
            .control_persist(Duration::from_secs(self.control_persist))
            .exit_masters_on_shutdown(self.exit_on_shutdown)
            .location(self.location.into());
        if let Some(port) = self.port {
            b = b.port(port);
        }
        if let Some(cfg) = &self.ssh_config {
            b = b.ssh_config(cfg);
        }
        if let Some(t) = self.connect_timeout {
            b = b.connect_timeout(Duration::from_secs(t));
        }
        if let Some(dir) = &self.socket_dir {
            b = b.socket_dir(dir);
        }
        b
    }

    /// These options as `conn` arguments again (for a `conn run` child of `conn bench`), so
    /// that the child builds the same transport; `--exit-on-shutdown` is left out.
    pub fn to_cli_args(&self) -> Vec<OsString> {
        let opt =
            |name: &str, value: &dyn std::fmt::Display| OsString::from(format!("--{name}={value}"));
        let mut args = vec![opt("ssh-program", &self.ssh_program)];
        if let Some(port) = self.port {
            args.push(opt("port", &port));
        }
        if let Some(cfg) = &self.ssh_config {
            let mut a = OsString::from("--ssh-config=");
            a.push(cfg);
            args.push(a);
        }
        args.push(opt("cipher", &self.cipher));
        if let Some(t) = self.connect_timeout {
            args.push(opt("connect-timeout", &t));
        }
        args.extend((0..self.verbose).map(|_| OsString::from("-v")));
        for o in &self.ssh_option {
            args.push("-o".into());
            args.push(o.into());
        }
        args.push(opt("control-persist", &self.control_persist));
        args.push(opt("capacity", &self.capacity));
        if let Some(dir) = &self.socket_dir {
            let mut a = OsString::from("--socket-dir=");
            a.push(dir);
            args.push(a);
        }
        args.push(opt(
            "location",
            &match self.location {
                LocationArg::Src => "src",
                LocationArg::Dst => "dst",
            },
        ));
        args
    }

    /// Checks what the builder does not: an `-o` value must be an option, not a flag.
    pub fn validate(&self) -> Result<(), String> {
        match self
            .ssh_option
            .iter()
            .find(|o| o.trim().is_empty() || o.starts_with('-'))
        {
            Some(o) => Err(format!(
                "ssh option {o:?} is not of the form Key=Value (as in `-o Compression=yes`)"
            )),
            None => Ok(()),
        }
    }
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
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_the_options_with_or_without_dashes() {
        for argv in [
            &["conn", "run", "-H", "h", "--", "ls", "-l"][..],
            &["conn", "run", "-H", "h", "ls", "-l"][..],
        ] {
            let Command::Run(r) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("not run");
            };
            assert_eq!(r.command, ["ls", "-l"]);
            assert_eq!(r.hosts, ["h"]);
        }
    }

    #[test]
    fn host_sets_come_from_w_and_h_alike_with_exclusions_and_output_modes() {
        let Command::Run(r) = Cli::try_parse_from([
            "conn", "run", "-w", "h[1-3]", "-H", "db1", "-x", "h2", "-b", "--", "true",
        ])
        .unwrap()
        .command
        else {
            panic!("not run");
        };
        assert_eq!(r.hosts, ["h[1-3]", "db1"]);
        assert_eq!(r.exclude, ["h2"]);
        assert!(r.gather && !r.json);
        assert!(Cli::try_parse_from(["conn", "run", "-w", "h", "--json", "-b", "true"]).is_err());
        assert!(Cli::try_parse_from(["conn", "run", "--local", "-x", "h", "true"]).is_err());
        // -x alone names no target.
        assert!(Cli::try_parse_from(["conn", "run", "-x", "h", "true"]).is_err());
        let Command::Hosts(h) =
            Cli::try_parse_from(["conn", "hosts", "a[1-2]", "b", "-x", "a1", "--fold"])
                .unwrap()
                .command
        else {
            panic!("not hosts");
        };
        assert_eq!(
            (h.exprs.as_slice(), h.exclude.as_slice()),
            (
                &["a[1-2]".to_string(), "b".into()][..],
                &["a1".to_string()][..]
            )
        );
        assert!(h.fold);
        assert!(Cli::try_parse_from(["conn", "hosts"]).is_err());
    }

    #[test]
    fn run_needs_a_target_and_a_command() {
        assert!(Cli::try_parse_from(["conn", "run", "--", "true"]).is_err());
        assert!(Cli::try_parse_from(["conn", "run", "-H", "h"]).is_err());
        assert!(Cli::try_parse_from(["conn", "run", "--local", "-H", "h", "true"]).is_err());
        assert!(Cli::try_parse_from(["conn", "run", "--local", "true"]).is_ok());
    }

    #[test]
    fn user_options_come_before_the_defaults() {
        let Command::Run(r) =
            Cli::try_parse_from(["conn", "run", "-H", "h", "-o", "BatchMode=no", "true"])
                .unwrap()
                .command
        else {
            panic!("not run");
        };
        let extra = r.ssh.extra_options();
        assert_eq!(extra[0], "-oBatchMode=no");
        assert_eq!(&extra[1..], DEFAULT_EXTRA_OPTIONS);
        assert!(r.ssh.validate().is_ok());
    }

    #[test]
    fn mux_parses_with_the_transport_s_own_names() {
        let run = |extra: &[&str]| {
            let mut argv = vec!["conn", "run", "-H", "h"];
            argv.extend(extra);
            argv.push("true");
            match Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Command::Run(r)) => Ok(r.mux),
                Ok(_) => panic!("not run"),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(run(&[]), Ok(Mux::Native), "native by default");
        assert_eq!(run(&["--mux", "process"]), Ok(Mux::Process));
        assert_eq!(run(&["--mux", "native"]), Ok(Mux::Native));
        assert!(run(&["--mux", "nativ"]).unwrap_err().contains("neither"));
    }

    #[test]
    fn bench_takes_lists_of_thread_counts_and_back_ends() {
        let bench = |extra: &[&str]| {
            let mut argv = vec!["conn", "bench"];
            argv.extend(extra);
            argv.push("h");
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Bench(b) => b,
                _ => panic!("not bench"),
            }
        };
        let b = bench(&[]);
        assert_eq!(b.threads, [8, 32]);
        assert_eq!(b.mux, [Mux::Native, Mux::Process]);
        assert_eq!(b.ssh.capacity, 8);
        let b = bench(&["-t", "32,8", "-t", "16", "--mux", "process"]);
        assert_eq!(b.threads, [32, 8, 16]);
        assert_eq!(b.mux, [Mux::Process]);
        assert!(Cli::try_parse_from(["conn", "bench", "-t", "8,0", "h"]).is_err());
        let Command::Demo(d) = Cli::try_parse_from(["conn", "demo", "-t", "8,32"])
            .unwrap()
            .command
        else {
            panic!("not demo")
        };
        assert_eq!(d.threads, [8, 32]);
        assert!(!d.builtin && !b.builtin);
        assert!(bench(&["--builtin"]).builtin);
    }

    #[test]
    fn ssh_options_survive_the_round_trip_through_a_child_s_command_line() {
        let Command::Bench(b) = Cli::try_parse_from([
            "conn",
            "bench",
            "--ssh-program",
            "/usr/bin/ssh",
            "-p",
            "2222",
            "-F",
            "rel/config",
            "-c",
            "",
            "--connect-timeout",
            "3",
            "-vv",
            "-o",
            "Compression=yes",
            "-o",
            "User=x y",
            "--control-persist",
            "90",
            "--capacity",
            "4",
            "--socket-dir",
            "/tmp/s d",
            "--location",
            "dst",
            "--exit-on-shutdown",
            "h",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        let mut argv: Vec<OsString> = vec!["conn".into(), "run".into()];
        argv.extend(b.ssh.to_cli_args());
        argv.extend(["-H", "h", "true"].map(OsString::from));
        let Command::Run(r) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not run")
        };
        let expected = SshArgs {
            exit_on_shutdown: false,
            ..b.ssh.clone()
        };
        assert_eq!(r.ssh, expected);
        // And the defaults stay defaults.
        let Command::Bench(b) = Cli::try_parse_from(["conn", "bench", "h"]).unwrap().command else {
            panic!("not bench")
        };
        let mut argv: Vec<OsString> = vec!["conn".into(), "run".into()];
        argv.extend(b.ssh.to_cli_args());
        argv.extend(["-H", "h", "true"].map(OsString::from));
        let Command::Run(r) = Cli::try_parse_from(argv).unwrap().command else {
            panic!("not run")
        };
        assert_eq!(r.ssh, b.ssh);
    }

    #[test]
    fn seconds_parse_with_fractions_and_refuse_nonsense() {
        assert_eq!(parse_secs("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_secs("30"), Ok(Duration::from_secs(30)));
        for bad in ["0", "-1", "x", "nan", "inf"] {
            assert!(parse_secs(bad).is_err(), "{bad}");
        }
    }
}
