//! The `--help` texts of `conn` and its subcommands: examples and the rules a user needs.

pub(super) const EXAMPLES: &str = "\
Examples:
  conn demo                                  private sshd on 127.0.0.1, a benchmark, master reuse
  conn run -H db1 -- uptime                  output and exit status are the remote command's own
  conn run -H db1 -H db2 -H db3 -- uname -r  fan out; each line prefixed \"db1: \"
  conn run -w 'web[01-16],db[1-2]' -x web07 -b -- uname -r   host sets; -b gathers equal output
  conn hosts --fold 'web[01-16]' -x 'web[03-05]'            prints web[01-02,06-16]
  conn run --hosts-file hosts.txt --parallel 64 --timeout 30 --retries 2 -- zfs list -H
  conn run --mux native -H db1 -- zfs list    sessions in-process over the master: no ssh spawn
  conn bench -n 500 -t 8,32 backup@db1       native and process mux vs hand-spawned `ssh -S`
  conn leases --prune                        what the socket directory holds; remove dead names

Masters stay alive after `conn` exits (ControlPersist, 600 s by default), so the next `conn`
attaches to them at once; `--exit-on-shutdown` ends them instead.";

pub(super) const RUN_AFTER_HELP: &str = "\
Exit status:
  one host   the remote command's own status (128+N if it was killed by signal N)
  several    the largest status of any host (-S asks for nothing more); a summary of the
             failed hosts goes to stderr
  2          usage error, bad host name or option: nothing was started
  124        -u/--timeout expired (the host's session was ended; the remote command may go on)
  127        the ssh program was not found
  130        interrupted by SIGINT, SIGTERM or SIGHUP: every host's session ended at once
             (local ssh clients killed and reaped, native sessions closed, leases released)
  255        ssh itself failed (connection, authentication, master), as with plain ssh, or a
             master died before the host's output was complete (what was printed may be cut
             short); with --mux native a remote exit 255 is passed through as the command's,
             with --mux process too unless ssh's own words show a failure (it cannot always
             tell them apart)

Hosts (-w, -H, -x and every --hosts-file line take host-set expressions, as pdsh and clush do):
  a,b,h[1-3]            comma lists; [..] ranges, also 1-10/2; h[001-100,200] keeps the padding
  rack[1-2]-n[01-16]    several brackets make every combination (32 hosts)
  root@h[1-3]           user@ applies to each name of its item
  -x 'h[2-3]'           removes hosts (a name without user@ removes it for every user)
  'h[1-9]!h5&h[1-6]'    ! removes, & intersects, ^ keeps one side only: left to right (nodeset)
  @web  @slurm:gpu      ClusterShell node groups, from its own groups.conf (clush's -g/-X/-a:
  -g web -X db -a       -w @web, -x @db, every host; --groupsource SOURCE): resolved first,
                        an unknown group or a failing upcall is exit 2 (see docs/cli.md)
Hosts run in the set's order (`conn hosts EXPR` lists it); duplicates run once.

Output with several hosts (or with -b, -B, -L, --diff, --json):
  default    each line prefixed \"host: \" (stdout to stdout, stderr to stderr), as it arrives
  -N         no \"host: \" prefix (-L too); -b and -B print their blocks without headers
  -b         stderr streamed, prefixed; at the end the hosts with identical stdout and status
             once, under a header with their folded set and count (clush -b, dshbak -c):
             successes first, then larger groups, then by first host
  -B         the same, stderr gathered too: each block's stderr follows its stdout
  -L         nothing while the hosts run; at the end every host's lines, prefixed, host after
             host in the set's order (clush -L)
  --diff     stderr streamed; at the end each other stdout as a unified diff against the
             first block's, as clush --diff prints it: `--- REF_HOSTS (N)`, `+++ HOSTS`, `@@`
  --json     one object per host per line when it ends: host, exit_code, signal, duration_s,
             stdout, stderr (or stdout_base64/stderr_base64 when not UTF-8), failure
             (kind, command_ran: ran | not_started | unknown, message) or null
  --outdir DIR, --errdir DIR   also each host's whole stdout, stderr in DIR/HOST (any mode)
The summary on stderr folds the failed hosts by reason: `conn: h[03,07]: exit code 1`; -q
leaves it out; after -k it also names the hosts fail-fast ended or never started.
--color=auto colours a terminal unless NO_COLOR (not empty) or CLICOLOR=0; CLICOLOR_FORCE
(not 0) colours a pipe too, unless NO_COLOR.

From pdsh and clush (their letters, with their meaning, unless said otherwise):
  -w HOSTS  -x HOSTS     the same host sets (pdsh -w ^FILE: --hosts-file FILE)
  -g G  -X G  -a         ClusterShell node groups, as clush (pdsh's are genders: not read)
  -f N                   hosts at once (--parallel N)
  -l USER                login user of every host given without user@
  -t SECS                connect timeout of a new master
  -u SECS                deadline per host (--timeout SECS), exit 124
  -N  -S  -q             no prefix; the largest status (always); no summary (clush -q: pdsh
                         -q lists its settings, use --dry-run)
  -b  -B  -L  --diff     clush's gathering (pdsh -b is its batch mode, pdsh -L lists modules)
  pdsh ... | dshbak -c   -b
  -P  --color=WHEN       clush's progress bar (a terminal only) and colours
  -k                     fail fast (pdsh 2.34 and clush 1.9 have no such letter)
  -o \"-oKey=Value -p N\"  clush's ssh options, and ssh's own -o Key=Value
  --outdir  --errdir     clush's and pssh's files per host
  -R ssh                 always: sessions go through pooled ssh masters (--mux); --local runs
                         on this machine
  clush -c, pdcp         conn copy [-r] SRC… DEST
  clush --rcopy, rpdcp   conn copy --rcopy [-r] [--preserve] SRC… --dest DIR
  clush -s SOURCE        --groupsource SOURCE;  clush --hostfile FILE: --hosts-file FILE
  clush's stdin          to every host with --stdin-all (else /dev/null; one host gets a
                         piped stdin as it is)
Letters that mean something else in conn: -c is ssh's cipher (clush -c copies: conn copy),
-p is ssh's port (pdcp and clush -p preserve: conn copy --rcopy --preserve), -v is ssh's
verbosity (clush -v is its verbose mode), -F is an ssh_config (pdsh -F a genders file), -s is
not taken. The command is argv, each word quoted for the remote shell: pdsh's one string
`'ls | wc -l'` is `-- sh -c 'ls | wc -l'`.

Examples:
  conn run -H db1 -- zfs list -H -o name
  conn run -w 'node[001-128]' -x node042 -f 64 -b -- uname -r       pdsh … | dshbak -c
  conn run -g web -l admin -u 30 -k -- systemctl is-active app
  conn run -w @db --diff -- cat /etc/app.conf                      clush -w @db --diff
  conn run -w 'web[01-16]' -o \"-p 2222\" --outdir out/ -- df -h     out/web01 … out/web16
  conn run -w 'rack[1-2]-n[01-16]' --json -- df -h / > df.jsonl
  conn run -w 'n[01-32]' --kill-remote -u 600 -- ./job.sh   a timeout or Ctrl-C also ends
                                           the remote commands (SIGTERM to their group)
  conn run --hosts-file hosts.txt --parallel 64 --retries 3 -- uname -r
  conn run -F ~/.ssh/lab_config -H lab1 -o Compression=yes -- cat /etc/os-release
  conn run --mux process -H db1 -- true    an `ssh -S` client per command, as OpenSSH users know
  conn run --local -- ls -l /tmp           same code path, no ssh (direct exec, no shell)
  conn run --dry-run -H db1 -- rm -rf /scratch   prints what would run, runs nothing";

pub(super) const BENCH_AFTER_HELP: &str = "\
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
pub(super) const COPY_AFTER_HELP: &str = "\
Examples:
  conn copy -w web[01-16] app.conf /etc/app/        one file into a directory on 16 hosts
  conn copy -r -w db[1-2] ./schema /srv/            a directory tree
  conn copy --rcopy -w 'web[01-16]' /var/log/syslog --dest logs/
                                                    logs/syslog.web01 … logs/syslog.web16
  conn copy --rcopy -r --preserve -g db /etc/app --dest saved/   saved/app.db1 …, modes, times

Each file is written under a temporary name next to its destination, checked for its full
size, given the source's mode, and only then renamed: a killed or failed copy never leaves a
partial file under the final name. Exit status: 0 when every host got every file, else the
largest of the hosts' codes; a summary of the failures, folded by reason, goes to stderr.

--rcopy (clush --rcopy, pdsh's rpdcp) fetches every SRC from every host into --dest DIR (an
existing directory) as DIR/NAME.HOST, over the same pooled masters: a file into a temporary
`.NAME.HOST.conn-…` beside it, checked against the size the host reported, then renamed; a
tree (-r) as a tar stream unpacked by the local tar into a temporary directory, then renamed.
A SRC that a host does not have (or cannot read) is that host's error (exit 1 for it), never
the run's. The files keep their mode; --preserve (pdcp's and clush's -p: conn's -p is the
port) also keeps modification times, and modes within trees.";

pub(super) const HOSTS_AFTER_HELP: &str = "\
Syntax (pdsh's and ClusterShell's): top-level commas separate items; [..] holds numbers,
ranges a-b and stepped ranges a-b/s; every number of a-b has at least the digits of a
(h[08-10] is h08 h09 h10); several brackets make the cartesian product; user@ applies to each
name of its item; ! & ^ remove, intersect, keep one side (left to right); @group, @src:group,
@* are ClusterShell node groups (groups.conf as clush reads it). Names are sorted by their
text parts, then user, then numbers (digits, then value: h9 h10 h01, as nodeset); --fold
writes the set as nodeset -f does, -r with the groups it holds whole (nodeset -r), -l lists
the groups (nodeset -l, -ll, -lll). A malformed expression, an unknown group or a failing
upcall exits 2 and shows a caret under the offending character.

Examples:
  conn hosts 'h[01-03],db1'                 db1 h01 h02 h03, one per line
  conn hosts --fold h01 h02 h03 h07         h[01-03,07]
  conn hosts 'rack[1-2]-n[01-16]' -x rack2-n16 --fold
  conn hosts 'root@web[1-4]' -x 'web[2-3]'  root@web1 root@web4
  conn hosts -f @web -x web03               a node group, folded
  conn hosts -r 'web[01-16],db1'            @web,db1
  conn hosts -ll -s slurm                   the groups of source slurm, with their hosts";

pub(super) const LEASES_AFTER_HELP: &str = "\
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

pub(super) const DEMO_AFTER_HELP: &str = "\
Needs /usr/sbin/sshd, ssh and ssh-keygen, and run as root, the account `conntest` (login
shell /bin/sh) that the private sshd logs in as (as any other user it logs in as that user).
`bash scripts/setup.sh`, run as root from the conn repository, prepares all of it;
`bash scripts/demo.sh` runs it, then the demo. The demo itself changes nothing outside its
temporary directories: it says what is missing and stops.

Examples:
  bash scripts/demo.sh
  cargo run --release -p conn-cli -- demo
  cargo run --release -p conn-cli -- demo --builtin   the bench runs the shell's builtin echo";

pub(super) const SSH_AFTER_HELP: &str = "\
ssh's own command line, read as ssh reads it (clustered flags, -p2222 or -p 2222, options
before and after the destination, ssh://[user@]host[:port]); the remote command is the words
joined with single spaces, sent as they are. stdin, stdout and stderr are conn's own (with the
native mux the master reads and writes them itself). Exit status: the remote command's; 255
when ssh or conn failed.

conn's options (long ones, before the destination):
  --mux native|process   how sessions reach the master [default: native]
  --socket-dir DIR       control sockets and leases [default: ~/.ssh/conn, or /tmp/conn-UID]
  --capacity N           sessions per master [default: 8]
  --control-persist SECS how long an idle master lives on [default: 600]
  --ssh-program PROGRAM  the ssh client (also the one handed over to) [default: ssh]
  --location src|dst     part of the lease namespace [default: src]
  --exit-on-shutdown     end the master when done
CONN_LOG sets conn's log level.

Served by the pool: a command (or -s subsystem) with any options that shape the master
(-p -l -F -i -J -c -C -4 -6 -o Key=Value …, part of the master's identity) or only this
session (-q -v -n -T -x -a -e -E, -o RequestTTY=no, BatchMode, LogLevel, ControlPath …).
Handed to ssh (exec, same words): -t/-tt, RequestTTY=yes|force, -L -R -D -W -w -N -f -M -O -G
-V -Q -y, agent or X11 forwarding, no command, a line ssh refuses; and, from a terminal, a
master that cannot start without asking (a password, a host key). -v says so.

Examples:
  GIT_SSH_COMMAND='conn ssh' git clone db1:/srv/repo.git
  rsync -a -e 'conn ssh' src/ db1:/backup/src/
  scp -S conn-ssh f db1:/tmp/     conn-ssh: a script of two lines, #!/bin/sh and exec conn ssh \"$@\"
  zfs send -i @a tank/fs@b | conn ssh backup@db1 'zfs receive -u tank/fs'
  conn ssh --mux process -p 2222 ssh://admin@10.0.0.5 uptime";
