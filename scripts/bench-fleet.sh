#!/usr/bin/env bash
# Fleet fan-out benchmark: `echo ok` on N host aliases at fanout F, cold and warm, timed for pdsh
# and `conn run`, once per key exchange (ssh's default, sntrup761x25519, and the classic
# curve25519-sha256), in interleaved rounds; medians are reported as ratios against pdsh.
#
# The N hosts are ssh_config aliases (h001 … hN) of a private sshd on 127.0.0.1 (throwaway keys
# in a temp dir, a free port; one sshd per key exchange, set on both sides: sshd_config and
# ssh_config), so every tool sees a real handshake, authentication and session, with the same
# client config and cipher. Per key exchange: an untimed warming run of each warm method, then R
# rounds that run every method once in a rotating order. Cold: pdsh (one fresh ssh per host) and
# a `conn run` on a fresh socket directory (it starts N masters; they are ended, untimed, right
# after). Warm: pdsh with ssh's own ControlMaster=auto + ControlPersist, and `conn run --mux
# native` over the masters it left. With root and cgroup v2, the CPU of each run is accounted
# too: the tool's process tree (ssh clients and masters included) and the sshd's.
#
# Results go to stdout and OUT_DIR/results.{md,json,tsv}; a bar chart is drawn into
# docs/fleet.svg with matplotlib (skipped, with a note, when python3 cannot import it).
#
# Usage: scripts/bench-fleet.sh [options]   (run from anywhere; --help lists the options)
#
# It installs nothing and creates no account: `sudo bash scripts/setup.sh --bench-tools`
# prepares the machine (pdsh, clush, matplotlib, the `conntest` login account). Everything it
# starts (sshd, every ssh master of every method) is ended and its temp dir removed on exit,
# including Ctrl-C; every timed run is bounded by --timeout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

HOSTS=100
ROUNDS=3
FANOUT=32
RUN_TIMEOUT=180
KEXES="default,curve25519-sha256"
ALL=0
CONN_BIN=""
CONN_B=""
SVG="$ROOT/docs/fleet.svg"
OUT_DIR="$ROOT/target/bench-fleet"
CHART=1
PNG=""
CPU=1
SETSID_SSH=0
CIPHER="aes256-gcm@openssh.com"
CONTROL_PERSIST=600
# How ssh's own ControlMaster (pdsh, clush) names its sockets: `host` = one master per alias
# (ControlPath …/%n), as on a real fleet and as conn does; `shared` = ControlPath …/%C, which
# on this bench collapses every alias onto ONE master (all aliases resolve to the same
# 127.0.0.1, port and user), i.e. one TCP connection carrying F sessions at once.
CM_PATH="host"
TEST_USER="${CONN_TEST_USER:-conntest}"
SSHD="${CONN_TEST_SSHD:-/usr/sbin/sshd}"
PY=/usr/bin/python3 # Debian's python: the one python3-matplotlib installs into
SETUP_HINT="run \`sudo bash scripts/setup.sh --bench-tools\` once to prepare this machine"
BENCH_NAME=bench-fleet
PROG=bench-fleet
# shellcheck source=scripts/lib/cli.sh
. "$ROOT/scripts/lib/cli.sh"
# shellcheck source=scripts/lib/bench-sshd.sh
. "$ROOT/scripts/lib/bench-sshd.sh"

usage() {
    cat <<EOF
Usage: scripts/bench-fleet.sh [options]

Times \`echo ok\` on N ssh_config aliases of a private loopback sshd with pdsh and conn run,
cold and warm, once per key exchange; prints the medians as Markdown tables, writes
OUT_DIR/results.{md,json,tsv} and draws an SVG bar chart.

Options:
  -n, --hosts N        host aliases h001…hN (default $HOSTS)
  -r, --rounds R       interleaved rounds per key exchange; medians are reported (default $ROUNDS)
  -f, --fanout F       parallel hosts for every tool (default $FANOUT)
      --kex LIST       key exchanges, comma-separated (default $KEXES): \`default\` is
                       ssh's own choice; anything else is set as KexAlgorithms in both the
                       sshd_config and the ssh_config of that phase
      --all            also clush (fresh and ControlMaster), conn run --mux process (warm),
                       conn run --exit-on-shutdown (cold) and Ansible -m raw if installed
      --conn PATH      the conn binary (default: cargo build --release -p conn-cli,
                       then target/release/conn)
      --conn-b PATH    a second conn binary (another revision's build), measured cold in
                       the same interleaved rounds: two revisions compared in one run
      --svg PATH       where the chart goes (default docs/fleet.svg)
      --out DIR        results directory (default target/bench-fleet)
      --no-chart       no SVG (and no matplotlib needed)
      --png PATH       also draw the chart as a PNG
      --no-cpu         do not account CPU per run (needs root and cgroup v2 otherwise)
      --timeout SECS   limit of one timed run (default $RUN_TIMEOUT)
      --setsid-ssh     start clush's (and Ansible's) ssh clients through setsid, each in a new
                       session as pdsh does its own (see docs/benchmarks.md, Fleet fan-out)
      --cm-path host|shared
                       ControlPath of pdsh/clush's ControlMaster: one master per alias
                       (%n, default) or ssh's %C, which here is one master for all aliases
  -h, --help           this text

Prerequisites (checked, never installed here): pdsh with its ssh module, ssh, ssh-keygen,
sshd, python3 (matplotlib for the chart), clush with --all; as root the login account
\`$TEST_USER\` (CONN_TEST_USER) and /run/sshd. \`sudo bash scripts/setup.sh --bench-tools\`
prepares all of them. Environment: CONN_TEST_USER, CONN_TEST_SSHD (sshd path).
EOF
}


while [ $# -gt 0 ]; do
    case "$1" in
    -n | --hosts) HOSTS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -r | --rounds) ROUNDS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -f | --fanout) FANOUT="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --kex) KEXES="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --all) ALL=1; shift ;;
    --conn) CONN_BIN="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --conn-b) CONN_B="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --svg) SVG="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --out) OUT_DIR="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --no-chart) CHART=0; shift ;;
    --no-cpu) CPU=0; shift ;;
    --setsid-ssh) SETSID_SSH=1; shift ;;
    --png) PNG="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --timeout) RUN_TIMEOUT="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --cm-path) CM_PATH="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
if ! is_uint "$HOSTS" || [ "$HOSTS" -gt 9999 ]; then die_usage "--hosts wants 1..9999, got '$HOSTS'"; fi
is_uint "$ROUNDS" || die_usage "--rounds wants a positive integer, got '$ROUNDS'"
is_uint "$FANOUT" || die_usage "--fanout wants a positive integer, got '$FANOUT'"
is_uint "$RUN_TIMEOUT" || die_usage "--timeout wants whole seconds >= 1, got '$RUN_TIMEOUT'"
case "$CM_PATH" in host | shared) ;; *) die_usage "--cm-path wants host or shared, got '$CM_PATH'" ;; esac
IFS=',' read -r -a KEX_LIST <<<"$KEXES"
[ ${#KEX_LIST[@]} -ge 1 ] || die_usage "--kex wants at least one key exchange"
for k in "${KEX_LIST[@]}"; do
    [[ "$k" =~ ^[A-Za-z0-9@.+_-]+$ ]] || die_usage "--kex: '$k' is not a key exchange name (letters, digits, @ . + _ -)"
done
if [ -n "$CONN_B" ] && [ ! -x "$CONN_B" ]; then
    die_usage "--conn-b $CONN_B: not an executable file"
fi
if [ -n "$CONN_BIN" ] && [ ! -x "$CONN_BIN" ]; then
    die_usage "--conn $CONN_BIN: not an executable file"
fi
case "$SVG" in /*) ;; *) SVG="$PWD/$SVG" ;; esac
case "$OUT_DIR" in /*) ;; *) OUT_DIR="$PWD/$OUT_DIR" ;; esac
case "$PNG" in /* | "") ;; *) PNG="$PWD/$PNG" ;; esac

# ---------------------------------------------------------------- prerequisites (checked only)

missing=()
command -v pdsh >/dev/null || missing+=("pdsh")
[ "$ALL" -eq 0 ] || command -v clush >/dev/null || missing+=("clush (ClusterShell)")
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing+=("ssh and ssh-keygen (openssh-client)")
[ -x "$SSHD" ] || missing+=("sshd at $SSHD (openssh-server)")
command -v timeout >/dev/null || missing+=("timeout (coreutils)")
[ -x "$PY" ] || missing+=("$PY (python3)")
[ ${#missing[@]} -eq 0 ] || die "missing: $(IFS=';'; echo "${missing[*]}"); $SETUP_HINT"
pdsh -V 2>&1 | grep -q 'rcmd modules:.*ssh' || die "this pdsh has no ssh rcmd module (pdsh -V); install Debian's pdsh: $SETUP_HINT"
if [ "$CHART" -eq 1 ] && ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    say "no chart: $PY cannot import matplotlib ($SETUP_HINT, or pip install matplotlib); $SVG is left as it is"
    CHART=0
fi
LOGIN_USER="$(login_user)"

if [ -z "$CONN_BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust, or pass --conn PATH"
    say "cargo build --release -p conn-cli"
    (cd "$ROOT" && cargo build --release -p conn-cli >&2) || die "cargo build --release -p conn-cli failed"
    CONN_BIN="$ROOT/target/release/conn"
fi
CONN_HELP="$("$CONN_BIN" run --help 2>&1)" || die "$CONN_BIN run --help failed: $CONN_HELP"
grep -qE '^ *-w[, ]' <<<"$CONN_HELP" || die "$CONN_BIN run has no -w: too old for this script"
HAVE_ANSIBLE=0
[ "$ALL" -eq 1 ] && command -v ansible >/dev/null && HAVE_ANSIBLE=1

# ---------------------------------------------------------------- work dir, sshd, cleanup

bench_setup "$CPU"
bench_traps

# Starts phase `tag`'s sshd (key exchange `kex`) and writes its client configs: plain, and with
# ssh's own ControlMaster for pdsh and clush (pdsh would replace %n/%h/%u inside PDSH_SSH_ARGS
# and clush interpolates % in -o, while ssh_config takes the tokens as is).
start_phase() { # tag kex
    local tag="$1" kex="$2" dir="$WORK/$1" cm_token='%n' tool
    start_sshd "$tag" "$kex"
    [ "$CM_PATH" = shared ] && cm_token='%C'
    for tool in pdsh clush; do
        mkdir -m 0700 "$dir/cm-$tool"
        write_ssh_config "$dir/ssh_config.$tool-cm" "$kex" "  ControlMaster auto
  ControlPath $dir/cm-$tool/$cm_token
  ControlPersist $CONTROL_PERSIST"
    done
    mkdir -m 0700 "$dir/cw"
    if [ "$HAVE_ANSIBLE" -eq 1 ]; then
        mkdir -m 0700 "$dir/cm-ansible" "$dir/ansible-tmp"
        { echo '[fleet]'; aliases; } >"$dir/inventory"
    fi
}

# With --setsid-ssh: an `ssh` that runs the real one in a new session (pdsh starts every ssh
# with setsid(); clush's clients stay in clush's session, where Linux's
# autogroup scheduling gives them one CPU share between them on a busy machine).
SSH_PROGRAM=ssh
if [ "$SETSID_SSH" -eq 1 ]; then
    mkdir "$WORK/setsid"
    printf '#!/bin/sh\nexec setsid -w ssh "$@"\n' >"$WORK/setsid/ssh"
    chmod 0755 "$WORK/setsid/ssh"
    SSH_PROGRAM="$WORK/setsid/ssh"
fi
AUTOGROUP="$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------- methods

METHODS=(pdsh_fresh conn_cold)
[ -z "$CONN_B" ] || METHODS+=(conn_cold_b)
[ "$ALL" -eq 1 ] && METHODS+=(clush_fresh conn_cold_exit)
METHODS+=(pdsh_cm conn_native)
[ "$ALL" -eq 1 ] && METHODS+=(clush_cm conn_process)
[ "$HAVE_ANSIBLE" -eq 1 ] && METHODS+=(ansible_cm)

is_warm() { case "$1" in *_cm | conn_native | conn_process) return 0 ;; *) return 1 ;; esac; }

# The command line of a method (one argument a line) in phase `tag`; `round` picks conn's cold
# socket directory.
method_cmd() { # method tag round
    local d="$WORK/$2"
    local -a common=(--ssh-config "$d/ssh_config" --cipher "$CIPHER" --control-persist "$CONTROL_PERSIST"
        --fanout "$FANOUT" -w "$HOSTLIST")
    case "$1" in
    pdsh_fresh | pdsh_cm) printf '%s\n' pdsh -R ssh -f "$FANOUT" -w "$HOSTLIST" echo ok ;;
    clush_fresh) printf '%s\n' clush -O "ssh_path=$SSH_PROGRAM" -f "$FANOUT" -w "$HOSTLIST" -o "-F $d/ssh_config" echo ok ;;
    clush_cm) printf '%s\n' clush -O "ssh_path=$SSH_PROGRAM" -f "$FANOUT" -w "$HOSTLIST" -o "-F $d/ssh_config.clush-cm" echo ok ;;
    ansible_cm) printf '%s\n' ansible fleet -i "$d/inventory" -f "$FANOUT" -m raw -a 'echo ok' ;;
    conn_cold) printf '%s\n' "$CONN_BIN" run --mux native --socket-dir "$d/c$3" "${common[@]}" -- echo ok ;;
    conn_cold_b) printf '%s\n' "$CONN_B" run --mux native --socket-dir "$d/b$3" "${common[@]}" -- echo ok ;;
    conn_cold_exit) printf '%s\n' "$CONN_BIN" run --mux native --exit-on-shutdown --socket-dir "$d/x$3" "${common[@]}" -- echo ok ;;
    conn_process) printf '%s\n' "$CONN_BIN" run --mux process --socket-dir "$d/cw" "${common[@]}" -- echo ok ;;
    conn_native) printf '%s\n' "$CONN_BIN" run --mux native --socket-dir "$d/cw" "${common[@]}" -- echo ok ;;
    esac
}
method_env() { # method tag: environment assignments for `env`
    local d="$WORK/$2"
    case "$1" in
    # pdsh's default is "-2 -a -x -l%u %h"; with -l%u it would override the config's User.
    pdsh_fresh) echo "PDSH_SSH_ARGS=-F $d/ssh_config -x %h" ;;
    pdsh_cm) echo "PDSH_SSH_ARGS=-F $d/ssh_config.pdsh-cm -x %h" ;;
    ansible_cm)
        echo "ANSIBLE_SSH_ARGS=-F $d/ssh_config -o ControlMaster=auto -o ControlPersist=$CONTROL_PERSIST"
        echo "ANSIBLE_SSH_CONTROL_PATH_DIR=$d/cm-ansible"
        echo "ANSIBLE_LOCAL_TEMP=$d/ansible-tmp"
        echo "ANSIBLE_HOST_KEY_CHECKING=False"
        echo "ANSIBLE_NOCOLOR=1"
        echo "ANSIBLE_SSH_EXECUTABLE=$SSH_PROGRAM"
        ;;
    esac
}

# The hosts that printed `ok`, one a line: `host: ok` (pdsh, clush, conn) or Ansible's
# `host | CHANGED | rc=0 >>` followed by `ok`.
ok_hosts() { # method outfile
    if [ "$1" = ansible_cm ]; then
        # raw runs ssh with a pty: lines may end in CR.
        awk '{ sub(/\r$/, "") } / \| (CHANGED|SUCCESS) \| rc=0 >>$/ { h = $1; next } h != "" && $0 == "ok" { print h } { h = "" }' "$2" | sort -u
    else
        sed -n 's/^\(h[0-9]\+\): ok$/\1/p' "$2" | sort -u
    fi
}

RUNS="$WORK/runs.tsv"
: >"$RUNS"
: >"$WORK/commands.tsv"
: >"$WORK/kexes.tsv"

# Runs one method once in phase `tag`, bounded by --timeout; round is 1…R, or 0 for an untimed
# warming run. Appends "tag round method status seconds ok_hosts exit_code load1 tool_us
# sshd_us" to runs.tsv; the first time a method runs, its command line goes to commands.tsv.
run_method() { # tag method round
    local tag="$1" m="$2" r="$3" out="$WORK/$1/$2.$3.out" err="$WORK/$1/$2.$3.err" t0 t1 rc=0
    local -a cmd envs
    mapfile -t cmd < <(method_cmd "$m" "$tag" "$r")
    mapfile -t envs < <(method_env "$m" "$tag")
    case "$m" in
    conn_cold) mkdir -m 0700 "$WORK/$tag/c$r" ;;
    conn_cold_b) mkdir -m 0700 "$WORK/$tag/b$r" ;;
    conn_cold_exit) mkdir -m 0700 "$WORK/$tag/x$r" ;;
    esac
    if ! grep -q "^$tag"$'\t'"$m"$'\t' "$WORK/commands.tsv"; then
        # Arguments separated by US (0x1f): the report quotes them for a shell.
        local IFS=$'\x1f'
        printf '%s\t%s\t%s\t%s\n' "$tag" "$m" "${envs[*]}" "${cmd[*]}" >>"$WORK/commands.tsv"
    fi
    # The sshd is quiet before a timed run starts: every connection a cold run left is closed
    # (the warm masters' stay: BASE_CONNECTIONS).
    local deadline=$((SECONDS + 10))
    while [ "$r" -gt 0 ] && [ "$(sshd_connections)" -gt "$BASE_CONNECTIONS" ] && [ $SECONDS -lt $deadline ]; do
        sleep 0.05
    done
    local cg tool0 tool1 sshd0 sshd1 load1
    cg="$(cg_dir "$tag-$m")"
    load1=$(cut -d' ' -f1 /proc/loadavg)
    tool0=$(cg_usage "$cg")
    sshd0=$(cg_usage "$SSHD_CG")
    t0=$EPOCHREALTIME
    (
        [ -z "$cg" ] || echo "$BASHPID" >"$cg/cgroup.procs"
        exec timeout -k 5 "$RUN_TIMEOUT" env "${envs[@]}" "${cmd[@]}" </dev/null >"$out" 2>"$err"
    ) &
    CUR_PID=$!
    wait "$CUR_PID" || rc=$?
    t1=$EPOCHREALTIME
    tool1=$(cg_usage "$cg")
    sshd1=$(cg_usage "$SSHD_CG")
    CUR_PID=""
    local n secs status=ok
    n=$(ok_hosts "$m" "$out" | wc -l)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    if [ "$rc" -ne 0 ] || [ "$n" -ne "$HOSTS" ]; then
        status=failed
        local why="exit code $rc"
        [ "$rc" -eq 124 ] && why="timed out after ${RUN_TIMEOUT}s"
        say "FAILED: $m ($tag, round $r): $why, ok from $n of $HOSTS hosts; stderr: $(head -c 400 "$err" | tr '\n' ' ')"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tag" "$r" "$m" "$status" "$secs" "$n" "$rc" "$load1" \
        "$((tool1 - tool0))" "$((sshd1 - sshd0))" >>"$RUNS"
    # A cold run leaves its masters behind (that is conn's point); end them untimed, and wait
    # until they are gone, so that they do not load the machine while the next method runs.
    case "$m" in
    conn_cold) stop_masters "$WORK/$tag/c$r"; wait_gone "$WORK/$tag/c$r" ;;
    conn_cold_b) stop_masters "$WORK/$tag/b$r"; wait_gone "$WORK/$tag/b$r" ;;
    conn_cold_exit) stop_masters "$WORK/$tag/x$r"; wait_gone "$WORK/$tag/x$r" ;;
    esac
    printf '    %-8s %-14s %8ss  %s\n' "$tag" "$m" "$secs" "$status" >&2
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
say "load average at start: $LOAD_START ($(nproc) CPUs); $HOSTS aliases $HOSTLIST, fanout $FANOUT, $ROUNDS rounds, key exchanges: ${KEX_LIST[*]}"

for ((ki = 0; ki < ${#KEX_LIST[@]}; ki++)); do
    kex="${KEX_LIST[$ki]}"
    tag="k$((ki + 1))"
    say "key exchange $kex: starting a private sshd (throwaway keys in $WORK/$tag, logins as $LOGIN_USER)"
    start_phase "$tag" "$kex"
    say "sshd pid $SSHD_PID on 127.0.0.1:$PORT; negotiated kex: ${NEGOTIATED:-unknown}"
    printf '%s\t%s\t%s\n' "$tag" "$kex" "$NEGOTIATED" >>"$WORK/kexes.tsv"
    BASE_CONNECTIONS=0
    say "warming runs (not timed): pdsh and conn start their masters"
    for m in "${METHODS[@]}"; do
        if is_warm "$m"; then run_method "$tag" "$m" 0; fi
    done
    BASE_CONNECTIONS="$(sshd_connections)"
    for ((round = 1; round <= ROUNDS; round++)); do
        say "$kex: round $round of $ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
        # Rotate the order every round, so that no method always follows the same one.
        count=${#METHODS[@]}
        for ((k = 0; k < count; k++)); do
            run_method "$tag" "${METHODS[$(((k + round - 1) % count))]}" "$round"
        done
    done
    # This phase's masters and sshd end before the next phase: each holds N connections.
    stop_masters "$WORK/$tag"
    stop_sshd
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
say "load average at end: $LOAD_END"

# ---------------------------------------------------------------- report

mkdir -p "$OUT_DIR"
cp "$RUNS" "$OUT_DIR/results.tsv"
CONN_VERSION="$("$CONN_BIN" --version 2>/dev/null | head -1 || echo conn)"
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"

BF_NPROC="$(nproc)"
BF_DATE="$(date -u +%Y-%m-%dT%H:%MZ)"
BF_SSH_VERSION="$(ssh -V 2>&1)"
BF_PDSH_VERSION="$(pdsh -V 2>&1 | head -1)"
BF_CLUSH_VERSION="$( (clush --version 2>&1 || echo 'clush not installed') | head -1)"
BF_KERNEL="$(uname -sr)"
BF_CPU="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
export BF_NPROC BF_DATE BF_SSH_VERSION BF_PDSH_VERSION BF_CLUSH_VERSION BF_KERNEL BF_CPU
export BF_COMMANDS="$WORK/commands.tsv" BF_KEXES="$WORK/kexes.tsv" BF_WORK="$WORK" BF_ROOT="$ROOT"
export BF_RUNS="$RUNS" BF_OUT="$OUT_DIR" BF_SVG="$SVG" BF_PNG="$PNG" BF_CHART="$CHART"
export BF_HOSTS="$HOSTS" BF_ROUNDS="$ROUNDS" BF_FANOUT="$FANOUT" BF_LOAD_START="$LOAD_START"
export BF_LOAD_END="$LOAD_END" BF_CM_PATH="$CM_PATH" BF_CONN_VERSION="$CONN_VERSION"
export BF_SETSID_SSH="$SETSID_SSH" BF_AUTOGROUP="$AUTOGROUP" BF_CPU_ACCOUNTED="$([ -n "$CG" ] && echo 1 || echo 0)"
export BF_GIT_REV="$GIT_REV" BF_CIPHER="$CIPHER" BF_CONN_B="$CONN_B"
"$PY" - <<'PY'
import json, os, shlex, statistics

env = os.environ
hosts, rounds, fanout = int(env["BF_HOSTS"]), int(env["BF_ROUNDS"]), int(env["BF_FANOUT"])
cpu = env["BF_CPU_ACCOUNTED"] == "1"
cm = "one master per alias" if env["BF_CM_PATH"] == "host" else "ControlPath %C: one master for all aliases"

LABELS = {
    "pdsh_fresh": "pdsh -R ssh, fresh connections",
    "clush_fresh": "clush, fresh connections",
    "conn_cold": f"conn run, cold (starts {hosts} masters)",
    "conn_cold_b": f"conn run of --conn-b ({env['BF_CONN_B']}), cold",
    "conn_cold_exit": f"conn run --exit-on-shutdown, cold (starts and ends {hosts} masters)",
    "pdsh_cm": "pdsh with ssh's ControlMaster=auto + ControlPersist, warm",
    "clush_cm": "clush with ControlMaster=auto, warm",
    "ansible_cm": "Ansible `-m raw` (its own ControlPersist), warm",
    "conn_process": "conn run --mux process, warm",
    "conn_native": "conn run (--mux native), warm",
}
SHORT = {
    "pdsh_fresh": "pdsh -R ssh",
    "clush_fresh": "clush",
    "conn_cold": "conn run (starts the masters)",
    "conn_cold_b": "conn run of --conn-b",
    "conn_cold_exit": "conn run --exit-on-shutdown",
    "pdsh_cm": "pdsh + ssh ControlMaster",
    "clush_cm": "clush + ssh ControlMaster",
    "ansible_cm": "Ansible -m raw",
    "conn_process": "conn run --mux process",
    "conn_native": "conn run (native mux)",
}
FRESH = {"pdsh_fresh", "clush_fresh", "conn_cold", "conn_cold_b", "conn_cold_exit"}
# conn figure -> (pdsh baseline of the same temperature, target ratio or None, only with a
# classic key exchange)
RATIOS = {
    "conn_cold": ("pdsh_fresh", 0.95, True),
    "conn_cold_b": ("pdsh_fresh", None, False),
    "conn_cold_exit": ("pdsh_fresh", None, False),
    "conn_process": ("pdsh_cm", None, False),
    "conn_native": ("pdsh_cm", 0.25, False),
}

kexes = []  # (tag, requested, negotiated)
for line in open(env["BF_KEXES"]):
    tag, req, neg = line.rstrip("\n").split("\t")
    kexes.append((tag, req, neg or "unknown"))

runs = {}
for line in open(env["BF_RUNS"]):
    tag, r, m, status, secs, n, rc, load1, tool_us, sshd_us = line.rstrip("\n").split("\t")
    if int(r) == 0:
        continue  # warming run
    runs.setdefault(tag, {}).setdefault(m, []).append({
        "round": int(r), "status": status, "seconds": float(secs), "ok_hosts": int(n),
        "exit_code": int(rc), "load1_before": float(load1),
        "tool_cpu_s": int(tool_us) / 1e6 if cpu else None,
        "sshd_cpu_s": int(sshd_us) / 1e6 if cpu else None})

def shown(text):
    """A command line as the report shows it: the temp dir as <tmp>, paths in the repo relative."""
    return text.replace(env["BF_WORK"], "<tmp>").replace(env["BF_ROOT"] + "/", "")

commands = {}
for line in open(env["BF_COMMANDS"]):
    tag, m, envs, cmd = line.rstrip("\n").split("\t")
    assigns = []
    for e in filter(None, envs.split("\x1f")):
        k, v = e.split("=", 1)
        assigns.append(f"{k}={shlex.quote(shown(v))}")
    commands[(tag, m)] = {"env": " ".join(assigns),
                          "command": shlex.join(shown(a) for a in cmd.split("\x1f"))}

def fmt(s):
    return "failed" if s is None else (f"{s:.3f} s" if s < 1 else f"{s:.2f} s")

def classic(neg):
    return not neg.startswith("sntrup") and not neg.startswith("mlkem")

result = {}
lines = [
    f"{hosts} host aliases of one loopback sshd, fanout {fanout}, `echo ok`; median of {rounds} "
    f"interleaved rounds per key exchange; {env['BF_NPROC']} CPUs; load average "
    f"{env['BF_LOAD_START']} at the start, {env['BF_LOAD_END']} at the end; {env['BF_DATE']}.",
]
for tag, req, neg in kexes:
    rs_by_m = runs.get(tag, {})
    order = [m for m in LABELS if m in rs_by_m]
    res = {}
    for m in order:
        rs = rs_by_m[m]
        failed = [x for x in rs if x["status"] != "ok"]
        secs = [x["seconds"] for x in rs]
        ok = not failed
        res[m] = {
            "label": LABELS[m],
            "temperature": "fresh" if m in FRESH else "warm",
            "failed_rounds": len(failed),
            # A method that failed in any round is reported as failed, not timed.
            "median_s": statistics.median(secs) if ok else None,
            "min_s": min(secs) if ok else None,
            "max_s": max(secs) if ok else None,
            "tool_cpu_ms_per_host": statistics.median(x["tool_cpu_s"] for x in rs) * 1e3 / hosts if ok and cpu else None,
            "sshd_cpu_ms_per_host": statistics.median(x["sshd_cpu_s"] for x in rs) * 1e3 / hosts if ok and cpu else None,
            "runs": rs,
            "command": commands.get((tag, m)),
        }
    for m, (base, target, classic_only) in RATIOS.items():
        if m not in res:
            continue
        a, b = res[m]["median_s"], res.get(base, {}).get("median_s")
        ratio = a / b if a is not None and b else None
        if classic_only and not classic(neg):
            target = None
        res[m]["ratio"] = {"against": base, "value": ratio, "target": target,
                           "met": None if ratio is None or target is None else ratio <= target}
    result[tag] = {"kex_requested": req, "kex_negotiated": neg, "methods": res}
    kexname = "ssh's default" if req == "default" else f"KexAlgorithms {req} (both sides)"
    lines += ["", f"**Key exchange: {kexname}**, negotiated `{neg}`:", ""]
    head = "| method | wall (median) | min – max | ratio | target |"
    rule = "|---|---:|---:|---:|---|"
    if cpu:
        head += " CPU per host: tool / sshd |"
        rule += "---:|"
    lines += [head, rule]
    for m in order:
        x = res[m]
        rng = "-" if x["median_s"] is None else f"{x['min_s']:.3f} – {x['max_s']:.3f}"
        wall = fmt(x["median_s"])
        if x["failed_rounds"]:
            wall = f"failed ({x['failed_rounds']} of {rounds} rounds)"
        ratio = target = ""
        if "ratio" in x:
            q = x["ratio"]
            vs = "pdsh" if q["against"] == "pdsh_fresh" else "pdsh+ControlMaster"
            ratio = "-" if q["value"] is None else f"{q['value']:.2f}× {vs}"
            if q["target"] is not None:
                target = f"≤ {q['target']}×" + ("" if q["met"] is None else (": met" if q["met"] else ": MISSED"))
        row = f"| {x['label']} | {wall} | {rng} | {ratio} | {target} |"
        if cpu:
            t, s = x["tool_cpu_ms_per_host"], x["sshd_cpu_ms_per_host"]
            row += " - |" if t is None else f" {t:.1f} / {s:.1f} ms |"
        lines.append(row)

lines += [
    "",
    f"ssh ControlMaster of pdsh: {cm}. Cipher {env['BF_CIPHER']} for every tool. "
    f"{env['BF_SSH_VERSION']}; {env['BF_PDSH_VERSION']}; {env['BF_CLUSH_VERSION']}; "
    f"{env['BF_CONN_VERSION']} (git {env['BF_GIT_REV']}); {env['BF_KERNEL']}; {env['BF_CPU']}. "
    f"Kernel autogroup scheduling (fair shares per session): "
    f"{ {'1': 'on', '0': 'off'}.get(env['BF_AUTOGROUP'], 'unknown') }."
    + (" CPU per host: the median run's CPU time of the tool's whole process tree (its ssh "
       "clients and masters included) and of the sshd (every connection and session), divided "
       "by the hosts; a cold conn run's masters are ended after the timed window, their "
       "teardown is not counted." if cpu else ""),
    "",
    "Commands (`<tmp>` is the throwaway directory, `k1`, `k2` … one per key exchange; conn's "
    "cold runs get a fresh socket directory each round):",
    "",
]
for tag, req, neg in kexes:
    for m in LABELS:
        c = commands.get((tag, m))
        if c:
            pre = f"{c['env']} " if c["env"] else ""
            lines.append(f"- {SHORT[m]} ({req}): `{pre}{c['command']}`")
md = "\n".join(lines) + "\n"
print(md, end="")
out = env["BF_OUT"]
with open(os.path.join(out, "results.md"), "w") as f:
    f.write(md)
meta = {k[3:].lower(): v for k, v in env.items()
        if k.startswith("BF_") and k not in ("BF_RUNS", "BF_OUT", "BF_COMMANDS", "BF_KEXES", "BF_WORK", "BF_ROOT")}
for k in ("hosts", "rounds", "fanout", "nproc"):
    meta[k] = int(meta[k])
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"meta": meta, "phases": result}, f, indent=2)
    f.write("\n")

if env["BF_CHART"] != "1":
    raise SystemExit(0)

import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt

# Plain text in the SVG (no glyph outlines), and no date or random ids: small, diffable files.
plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "conn-fleet", "font.size": 10,
                     "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"]})

panels = [(tag, req, neg) for tag, req, neg in kexes if result[tag]["methods"]]
heights = [len(result[t]["methods"]) * 0.42 + 1.3 for t, _, _ in panels]
fig, axes = plt.subplots(len(panels), 1, figsize=(8, sum(heights) + 0.6),
                         gridspec_kw={"height_ratios": heights}, squeeze=False)
for ax, (tag, req, neg) in zip(axes[:, 0], panels):
    res = result[tag]["methods"]
    order = [m for m in LABELS if m in res]
    groups = [("cold: every run logs in to every host", [m for m in order if m in FRESH]),
              ("warm: the connections are already up", [m for m in order if m not in FRESH])]
    ys, labels, values, colors, heads = [], [], [], [], []
    y = 0.0
    for title, ms in groups:
        if not ms:
            continue
        head = y
        y += 0.8  # the heading row: no bar, so a long bar never runs into the group's title
        for m in ms:
            ys.append(y)
            labels.append(SHORT[m])
            values.append(res[m]["median_s"])
            colors.append("#1f6fb4" if m.startswith("conn") else "#9a9a9a")
            y += 1
        heads.append((title, head, y - 1))
        y += 0.5
    finite = [v for v in values if v is not None]
    xmax = max(finite) if finite else 1.0
    ax.barh(ys, [v or 0 for v in values], color=colors, height=0.7)
    for yy, v in zip(ys, values):
        ax.text((v or 0) + xmax * 0.01, yy, "failed" if v is None else fmt(v), va="center", fontsize=9)
    ax.set_yticks(ys, labels)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(y - 0.5 + 0.1, -0.5)
    ax.set_xlim(0, xmax * 1.15)
    for title, head, last in heads:
        ax.axhspan(head - 0.45, last + 0.5, color="#f4f4f4" if title.startswith("cold") else "#eaf1f8", zorder=0)
        ax.text(xmax * 0.005, head, title, va="center", fontsize=9, style="italic")
    kexname = "ssh's default key exchange" if req == "default" else f"KexAlgorithms {req}"
    ax.set_title(f"{kexname} ({neg})", fontsize=10)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
axes[-1, 0].set_xlabel("wall time, seconds (median; lower is better)")
fig.suptitle(f"echo ok on {hosts} hosts (aliases of one loopback sshd), fanout {fanout}; "
             f"{env['BF_NPROC']} CPUs, median of {rounds} rounds, conn in blue", fontsize=10)
fig.tight_layout()
fig.savefig(env["BF_SVG"], format="svg", metadata={"Date": None})
if env.get("BF_PNG"):
    fig.savefig(env["BF_PNG"], format="png", dpi=110)
print(f"\nchart: {env['BF_SVG']}; results: {out}/results.md, results.json, results.tsv")
PY

if grep -q $'\tfailed\t' "$RUNS"; then
    echo "bench-fleet: some runs failed (see FAILED above and $OUT_DIR/results.tsv): their methods are reported as failed" >&2
    exit 1
fi
