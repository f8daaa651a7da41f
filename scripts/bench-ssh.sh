#!/usr/bin/env bash
# `conn ssh` against ssh's own ControlMaster: N fresh `conn ssh host true` processes against N
# fresh `ssh -oControlMaster=auto -oControlPath=… host true` processes over a warm master, in
# the same run, interleaved (A B, B A, …), each timed from spawn to exit. Prints the medians
# and the ratio of the medians (conn ssh / ssh), for conn's native mux (its default) and, for
# comparison, its process mux (`ssh -S` per command).
#
# Both sides talk to one private sshd on 127.0.0.1 (throwaway keys in a temp dir, a free
# port), with one client config; both masters are started (and warmed) before timing, so
# every timed run is a session over a live master: the cost a tool such as git or rsync pays
# per ssh invocation.
#
# Usage: scripts/bench-ssh.sh [-n N] [--conn PATH] [--warmup W]   (--help for more)
#
# As root it logs in as the `conntest` account (scripts/setup.sh creates it). Everything it
# starts (sshd, both masters) is ended and its temp dir removed on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=20
WARMUP=3
CONN_BIN=""
SSHD="${CONN_TEST_SSHD:-/usr/sbin/sshd}"
PY=/usr/bin/python3

usage() {
    cat <<EOF
Usage: scripts/bench-ssh.sh [options]

Times N fresh \`conn ssh HOST true\` processes (native mux, then process mux) against N
fresh \`ssh -oControlMaster=auto -oControlPath=… HOST true\` over a warm master, interleaved,
against a private loopback sshd; prints the medians and the ratios of the medians.

Options:
  -n, --runs N       timed runs of each command (default $RUNS)
      --warmup W     untimed runs of each first (default $WARMUP)
      --conn PATH    the conn binary (default: cargo build --release -p conn-cli, then
                     target/release/conn)
  -h, --help         this text

Environment: CONN_TEST_USER (login account when root, default conntest), CONN_TEST_SSHD.
EOF
}
PROG=bench-ssh
# shellcheck source=scripts/lib/cli.sh
. "$ROOT/scripts/lib/cli.sh"

while [ $# -gt 0 ]; do
    case "$1" in
    -n | --runs) RUNS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --warmup) WARMUP="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --conn) CONN_BIN="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
is_uint "$RUNS" || die_usage "--runs wants a positive integer, got '$RUNS'"
is_uint "$WARMUP" || die_usage "--warmup wants a positive integer, got '$WARMUP'"
[ -z "$CONN_BIN" ] || [ -x "$CONN_BIN" ] || die_usage "--conn $CONN_BIN: not an executable file"
[ -x "$SSHD" ] || die "no sshd at $SSHD: run scripts/setup.sh"
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || die "no ssh client: run scripts/setup.sh"
[ -x "$PY" ] || die "no $PY (it times the runs)"

LOGIN_USER="$(login_user)"

if [ -z "$CONN_BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust, or pass --conn PATH"
    say "cargo build --release -p conn-cli"
    (cd "$ROOT" && cargo build --release -p conn-cli >&2) || die "cargo build --release -p conn-cli failed"
    CONN_BIN="$ROOT/target/release/conn"
fi

# shellcheck source=scripts/lib/sshd.sh
. "$ROOT/scripts/lib/sshd.sh"
sshd_workdir
trap sshd_cleanup EXIT
trap 'echo "bench-ssh: interrupted, cleaning up" >&2; sshd_cleanup; exit 130' INT
trap 'sshd_cleanup; exit 143' TERM HUP
sshd_start "$LOGIN_USER"
say "private sshd on 127.0.0.1:$PORT, logins as $LOGIN_USER; $RUNS runs of each after $WARMUP warm-up runs"

# The three commands, as argv lists (no shell in the timed runs).
"$PY" - "$RUNS" "$WARMUP" "$CONN_BIN" "$WORK" <<'EOF'
import os, statistics, subprocess, sys, time

runs, warmup, conn, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
cfg = os.path.join(work, "ssh_config")
subjects = {
    "conn ssh (native mux)": [conn, "ssh", "--socket-dir", work + "/s", "-F", cfg, "bench", "true"],
    "conn ssh (process mux)": [conn, "ssh", "--socket-dir", work + "/s", "--mux", "process",
                               "-F", cfg, "bench", "true"],
    "ssh -oControlMaster=auto": ["ssh", "-F", cfg, "-oControlMaster=auto",
                                 "-oControlPath=" + work + "/cm/%C", "-oControlPersist=600",
                                 "bench", "true"],
}
baseline = "ssh -oControlMaster=auto"

def once(argv):
    start = time.perf_counter_ns()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=60)
    elapsed = time.perf_counter_ns() - start
    if done.returncode != 0:
        sys.exit(f"bench-ssh: {' '.join(argv)} failed ({done.returncode}): "
                 f"{done.stderr.decode(errors='replace').strip()}")
    return elapsed / 1e6

# Warm-up: starts both masters (conn's native and process mux share one).
for _ in range(warmup):
    for argv in subjects.values():
        once(argv)

times = {name: [] for name in subjects}
names = list(subjects)
for i in range(runs):
    # Interleaved, and the order turned every round, so that drift favours nobody.
    order = names if i % 2 == 0 else names[::-1]
    for name in order:
        times[name].append(once(subjects[name]))

base = statistics.median(times[baseline])
print(f"{runs} fresh processes each, interleaved, over warm masters (ms, spawn to exit)")
print()
print(f"| command | min | median | max | median vs {baseline} |")
print("|---|---:|---:|---:|---:|")
for name in names:
    t = times[name]
    med = statistics.median(t)
    ratio = "1.00×" if name == baseline else f"{med / base:.2f}×"
    print(f"| {name} | {min(t):.2f} | {med:.2f} | {max(t):.2f} | {ratio} |")
EOF
