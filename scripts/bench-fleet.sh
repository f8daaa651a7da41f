#!/usr/bin/env bash
# Fleet fan-out benchmark: one command (`echo ok`) on N hosts with fanout F, timed for pdsh,
# ClusterShell's clush, (Ansible if installed) and `conn run`, fresh and over warm masters.
#
# The N hosts are ssh_config aliases (h001 … hN) of one private sshd on 127.0.0.1 (throwaway
# keys in a temp dir, a free port), so every tool sees a real handshake, authentication and
# session, and all tools use the same client config and cipher. Methods run in interleaved
# rounds (each round runs every method once, in a rotating order) and medians are reported,
# with each conn figure as a ratio against the pdsh figure of the same temperature. The
# results go to stdout and to OUT_DIR/results.{md,json,tsv}; a horizontal bar chart is drawn
# with matplotlib (Debian's python3-matplotlib) into docs/fleet.svg.
#
# Usage: scripts/bench-fleet.sh [options]   (run from anywhere; --help lists the options)
#
# As root it installs what is missing (apt-get: pdsh, clustershell, python3-matplotlib) and
# creates the `conntest` login account exactly as scripts/test.sh does. Everything it starts
# (sshd, every ssh master of every method) is ended and its temp dir removed on exit,
# including Ctrl-C; every timed run is bounded by --timeout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

HOSTS=100
ROUNDS=5
FANOUT=32
RUN_TIMEOUT=120
CONN_BIN=""
SVG="$ROOT/docs/fleet.svg"
OUT_DIR="$ROOT/target/bench-fleet"
CHART=1
PNG=""
SETSID_SSH=0
CIPHER="aes256-gcm@openssh.com"
CONTROL_PERSIST=600
# How ssh's own ControlMaster (pdsh, clush) names its sockets: `host` = one master per alias
# (ControlPath …/%n), as on a real fleet and as conn does; `shared` = ControlPath …/%C, which
# on this bench collapses every alias onto ONE master (all aliases resolve to the same
# 127.0.0.1, port and user), i.e. one TCP connection carrying F sessions at once.
CM_PATH="host"
# The back end of the cold conn run: `process` is what `conn run` does by default today.
COLD_MUX="${CONN_COLD_MUX:-native}"
# How conn takes the hosts: `file` (--hosts-file, one alias a line), `w` (-w h[001-N]),
# `auto` (-w when `conn run --help` offers it, else --hosts-file).
CONN_HOSTS="${CONN_HOSTS:-auto}"
TEST_USER="${CONN_TEST_USER:-conntest}"
SSHD="${CONN_TEST_SSHD:-/usr/sbin/sshd}"
PY=/usr/bin/python3 # Debian's python: the one python3-matplotlib installs into

usage() {
    cat <<EOF
Usage: scripts/bench-fleet.sh [options]

Times \`echo ok\` on N ssh_config aliases of a private loopback sshd with pdsh, clush,
Ansible (only if installed) and conn run, fresh and warm; prints the medians as a Markdown
table, writes OUT_DIR/results.{md,json,tsv} and draws an SVG bar chart.

Options:
  -n, --hosts N        host aliases h001…hN (default $HOSTS)
  -r, --rounds R       interleaved rounds; medians are reported (default $ROUNDS)
  -f, --fanout F       parallel hosts for every tool (default $FANOUT)
      --conn PATH      the conn binary (default: cargo build --release -p conn-cli,
                       then target/release/conn)
      --svg PATH       where the chart goes (default docs/fleet.svg)
      --out DIR        results directory (default target/bench-fleet)
      --no-chart       no SVG (and no python3-matplotlib needed)
      --png PATH       also draw the chart as a PNG
      --timeout SECS   limit of one timed run (default $RUN_TIMEOUT)
      --setsid-ssh     start clush's, conn's (and Ansible's) ssh clients through setsid, each
                       in a new session as pdsh does its own: shows how much of a gap
                       is the kernel's autogroup scheduling on a machine that is busy
                       with other work (see docs/benchmarks.md, Fleet fan-out)
      --cm-path host|shared
                       ControlPath of pdsh/clush's ControlMaster: one master per alias
                       (%n, default) or ssh's %C, which here is one master for all aliases
  -h, --help           this text

Environment: CONN_HOSTS=auto|file|w (how conn gets the hosts, default auto: -w if
\`conn run --help\` has it, else --hosts-file), CONN_TEST_USER (login account when root,
default conntest), CONN_TEST_SSHD (sshd path), CONN_COLD_MUX=process|native (the back
end of the cold conn run, default native, conn run's own default).
EOF
}

die_usage() {
    echo "bench-fleet: $*" >&2
    echo "bench-fleet: see scripts/bench-fleet.sh --help" >&2
    exit 2
}
die() {
    echo "bench-fleet: error: $*" >&2
    exit 1
}
say() { printf '==> %s\n' "$*" >&2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ]; }

while [ $# -gt 0 ]; do
    case "$1" in
    -n | --hosts) HOSTS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -r | --rounds) ROUNDS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -f | --fanout) FANOUT="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --conn) CONN_BIN="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --svg) SVG="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --out) OUT_DIR="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --no-chart) CHART=0; shift ;;
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
case "$COLD_MUX" in native | process) ;; *) die_usage "CONN_COLD_MUX wants native or process, got '$COLD_MUX'" ;; esac
case "$CONN_HOSTS" in auto | file | w) ;; *) die_usage "CONN_HOSTS wants auto, file or w, got '$CONN_HOSTS'" ;; esac
if [ -n "$CONN_BIN" ] && [ ! -x "$CONN_BIN" ]; then
    die_usage "--conn $CONN_BIN: not an executable file"
fi
case "$SVG" in /*) ;; *) SVG="$PWD/$SVG" ;; esac
case "$OUT_DIR" in /*) ;; *) OUT_DIR="$PWD/$OUT_DIR" ;; esac
case "$PNG" in /* | "") ;; *) PNG="$PWD/$PNG" ;; esac

# ---------------------------------------------------------------- prerequisites

IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

APT_UPDATED=0
apt_install() { # packages…
    [ "$IS_ROOT" -eq 1 ] || die "missing Debian packages: $*; install them as root: apt-get install $*"
    export DEBIAN_FRONTEND=noninteractive
    say "installing $* (apt-get)"
    if ! apt-get install -y --no-install-recommends "$@" </dev/null >&2; then
        [ "$APT_UPDATED" -eq 1 ] && die "apt-get install $* failed"
        apt-get update </dev/null >&2 || die "apt-get update failed"
        APT_UPDATED=1
        apt-get install -y --no-install-recommends "$@" </dev/null >&2 || die "apt-get install $* failed"
    fi
}

missing=()
command -v pdsh >/dev/null || missing+=(pdsh)
command -v clush >/dev/null || missing+=(clustershell)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing+=(openssh-client)
[ -x "$SSHD" ] || missing+=(openssh-server)
command -v timeout >/dev/null || missing+=(coreutils)
[ -x "$PY" ] || missing+=(python3)
if [ "$CHART" -eq 1 ] && ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    missing+=(python3-matplotlib)
fi
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
pdsh -V 2>&1 | grep -q 'rcmd modules:.*ssh' || die "this pdsh has no ssh rcmd module (pdsh -V); install Debian's pdsh"

if [ "$IS_ROOT" -eq 1 ]; then
    # sshd refuses root logins here and root's shell start-up may be slow: log in as a
    # dedicated account with /bin/sh, prepared exactly as scripts/test.sh does.
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        say "the login account $TEST_USER is missing: creating it (useradd -m -s /bin/sh $TEST_USER; usermod -p '*' $TEST_USER; undo with userdel -r $TEST_USER)"
        useradd -m -s /bin/sh "$TEST_USER"
    fi
    if [ "$(getent passwd "$TEST_USER" | cut -d: -f7)" != /bin/sh ]; then
        say "setting login shell of $TEST_USER to /bin/sh"
        usermod -s /bin/sh "$TEST_USER"
    fi
    if getent shadow "$TEST_USER" | cut -d: -f2 | grep -q '^!'; then
        say "unlocking $TEST_USER for key logins (password field '*'; sshd without PAM refuses '!')"
        usermod -p '*' "$TEST_USER"
    fi
    if [ ! -d /run/sshd ]; then
        mkdir -p /run/sshd
        chmod 0755 /run/sshd
    fi
    LOGIN_USER="$TEST_USER"
else
    # A non-root sshd can only log its own user in.
    LOGIN_USER="$(id -un)"
fi

if [ -z "$CONN_BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust, or pass --conn PATH"
    say "cargo build --release -p conn-cli"
    (cd "$ROOT" && cargo build --release -p conn-cli >&2) || die "cargo build --release -p conn-cli failed"
    CONN_BIN="$ROOT/target/release/conn"
fi

CONN_HELP="$("$CONN_BIN" run --help 2>&1)" || die "$CONN_BIN run --help failed: $CONN_HELP"
if [ "$CONN_HOSTS" = auto ]; then
    if grep -qE '^ *-w[, ]' <<<"$CONN_HELP"; then CONN_HOSTS="w"; else CONN_HOSTS="file"; fi
fi
if grep -q -- '--fanout' <<<"$CONN_HELP"; then CONN_FANOUT_FLAG=--fanout; else CONN_FANOUT_FLAG=--parallel; fi
HAVE_ANSIBLE=0
command -v ansible >/dev/null && HAVE_ANSIBLE=1

# ---------------------------------------------------------------- work dir and cleanup

# Short: conn's control sockets live under it and Unix socket paths are limited.
WORK="$(mktemp -d /tmp/cfb.XXXXXX)"
# sshd reads authorized_keys as the login user: the directory must be traversable.
chmod 0755 "$WORK"
SSHD_PID=""
CUR_PID=""
CLEANED=0

stop_masters() { # dir: ends every ssh master whose control socket is under dir
    local s
    local -a pids=()
    while IFS= read -r s; do
        timeout 5 ssh -F /dev/null -o ControlPath="$s" -O exit x >/dev/null 2>&1 &
        pids+=($!)
    done < <(find "$1" -type s 2>/dev/null)
    [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}" 2>/dev/null || true
}

cleanup() {
    [ "$CLEANED" -eq 1 ] && return
    CLEANED=1
    if [ -n "$CUR_PID" ]; then
        kill -TERM "$CUR_PID" 2>/dev/null || true
        wait "$CUR_PID" 2>/dev/null || true
    fi
    stop_masters "$WORK"
    if [ -n "$SSHD_PID" ]; then
        # The per-connection sshd processes are the listener's children; ending them closes
        # any master connection that is left, so its client exits too.
        pkill -KILL -P "$SSHD_PID" 2>/dev/null || true
        kill -KILL "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
    fi
    # Anything still running from this run names the unique work dir on its command line
    # (ssh masters, tool processes): end those, by pid.
    local p
    for p in $(pgrep -f -- "$WORK" 2>/dev/null || true); do
        if [ "$p" != "$$" ]; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'echo "bench-fleet: interrupted, cleaning up" >&2; cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM HUP

# ---------------------------------------------------------------- private sshd

ssh-keygen -q -t ed25519 -N '' -C fleet-bench-host -f "$WORK/host_key" </dev/null
ssh-keygen -q -t ed25519 -N '' -C fleet-bench-client -f "$WORK/id_ed25519" </dev/null
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
chmod 0644 "$WORK/authorized_keys"

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

WIDTH=3
[ ${#HOSTS} -gt 3 ] && WIDTH=${#HOSTS}
alias_of() { printf "h%0${WIDTH}d" "$1"; }
aliases() { # all aliases, one a line
    local i
    for ((i = 1; i <= HOSTS; i++)); do printf "h%0${WIDTH}d\n" "$i"; done
}
HOSTLIST="h[$(alias_of 1 | cut -c2-)-$(alias_of "$HOSTS" | cut -c2-)]"
[ "$HOSTS" -eq 1 ] && HOSTLIST="$(alias_of 1)"

write_ssh_config() { # path, extra lines for every host (may be empty)
    {
        echo "# written by scripts/bench-fleet.sh: $HOSTS aliases of one sshd on 127.0.0.1:$PORT"
        echo "Host $(aliases | paste -sd' ' -)"
        cat <<EOF
  HostName 127.0.0.1
  Port $PORT
  User $LOGIN_USER
  IdentityFile $WORK/id_ed25519
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $WORK/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  Ciphers $CIPHER
  LogLevel ERROR
$2
EOF
    } >"$1"
    chmod 0644 "$1"
}

start_sshd() {
    local attempt
    for attempt in 1 2 3 4 5; do
        PORT="$(free_port)"
        cat >"$WORK/sshd_config" <<EOF
# written by scripts/bench-fleet.sh
ListenAddress 127.0.0.1
Port $PORT
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
MaxSessions $((FANOUT > 10 ? FANOUT * 2 : 20))
MaxStartups $((FANOUT * 4 + 100)):30:$((FANOUT * 8 + 200))
LogLevel ERROR
AllowUsers $LOGIN_USER
PermitRootLogin no
PermitUserEnvironment no
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
EOF
        echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/host_key.pub")" >"$WORK/known_hosts"
        write_ssh_config "$WORK/ssh_config" ""
        "$SSHD" -D -e -f "$WORK/sshd_config" </dev/null >>"$WORK/sshd.log" 2>&1 &
        SSHD_PID=$!
        local deadline=$((SECONDS + 10))
        while [ $SECONDS -lt $deadline ]; do
            if ! kill -0 "$SSHD_PID" 2>/dev/null; then break; fi
            if timeout 10 ssh -F "$WORK/ssh_config" "$(alias_of 1)" true </dev/null >/dev/null 2>"$WORK/probe.err"; then
                return 0
            fi
            sleep 0.1
        done
        kill -KILL "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
        SSHD_PID=""
        grep -q 'Address already in use' "$WORK/sshd.log" 2>/dev/null || break
        say "port $PORT was taken meanwhile; trying another ($attempt)"
    done
    die "the private sshd did not accept a login within 10 s. sshd log: $(tail -5 "$WORK/sshd.log" 2>/dev/null | tr '\n' ' ') ssh: $(tail -3 "$WORK/probe.err" 2>/dev/null | tr '\n' ' ')"
}
say "starting a private sshd on 127.0.0.1 (throwaway keys in $WORK, logins as $LOGIN_USER)"
start_sshd
say "sshd pid $SSHD_PID on 127.0.0.1:$PORT; $HOSTS aliases $HOSTLIST in $WORK/ssh_config"

# ssh's own multiplexing for pdsh and clush, in per-tool configs: pdsh would replace %n/%h/%u
# inside PDSH_SSH_ARGS and clush interpolates % in -o, while ssh_config takes the tokens as is.
cm_token='%n'
[ "$CM_PATH" = shared ] && cm_token='%C'
for tool in pdsh clush; do
    mkdir -m 0700 "$WORK/cm-$tool"
    write_ssh_config "$WORK/ssh_config.$tool-cm" "  ControlMaster auto
  ControlPath $WORK/cm-$tool/$cm_token
  ControlPersist $CONTROL_PERSIST"
done
aliases >"$WORK/hosts"

# With --setsid-ssh: an `ssh` (conn accepts only a program named ssh or hpnssh) that runs the
# real one in a new session. Linux's autogroup scheduling (sched_autogroup_enabled) shares the
# CPU fairly between sessions, not processes: pdsh starts every ssh with setsid(), so on a
# busy machine its F ssh clients get F shares; clush's and conn's, in the tool's own session,
# get one share between them.
SSH_PROGRAM=ssh
if [ "$SETSID_SSH" -eq 1 ]; then
    mkdir "$WORK/setsid"
    printf '#!/bin/sh\nexec setsid -w ssh "$@"\n' >"$WORK/setsid/ssh"
    chmod 0755 "$WORK/setsid/ssh"
    SSH_PROGRAM="$WORK/setsid/ssh"
fi
AUTOGROUP="$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo unknown)"

# ---------------------------------------------------------------- methods

METHODS=(pdsh_fresh clush_fresh conn_cold pdsh_cm clush_cm)
[ "$HAVE_ANSIBLE" -eq 1 ] && METHODS+=(ansible_cm)
METHODS+=(conn_process conn_native)

conn_hosts_args() {
    if [ "$CONN_HOSTS" = w ]; then echo "-w"; echo "$HOSTLIST"; else echo "--hosts-file"; echo "$WORK/hosts"; fi
}
mapfile -t CONN_HOST_ARGS < <(conn_hosts_args)
CONN_COMMON=(--ssh-config "$WORK/ssh_config" --cipher "$CIPHER" --control-persist "$CONTROL_PERSIST"
    "$CONN_FANOUT_FLAG" "$FANOUT" "${CONN_HOST_ARGS[@]}")
CLUSH_SSH=()
if [ "$SETSID_SSH" -eq 1 ]; then
    CONN_COMMON=(--ssh-program "$SSH_PROGRAM" "${CONN_COMMON[@]}")
    CLUSH_SSH=(-O "ssh_path=$SSH_PROGRAM")
fi
mkdir -m 0700 "$WORK/cw"

if [ "$HAVE_ANSIBLE" -eq 1 ]; then
    mkdir -m 0700 "$WORK/cm-ansible" "$WORK/ansible-tmp"
    { echo '[fleet]'; aliases; } >"$WORK/inventory"
fi

# The command line of a method (one argument a line); `round` picks conn's cold socket dir.
method_cmd() { # method round
    case "$1" in
    pdsh_fresh | pdsh_cm) printf '%s\n' pdsh -R ssh -f "$FANOUT" -w "$HOSTLIST" echo ok ;;
    clush_fresh | clush_cm) printf '%s\n' clush "${CLUSH_SSH[@]}" -f "$FANOUT" -w "$HOSTLIST" -o "$(clush_opts "$1")" echo ok ;;
    ansible_cm) printf '%s\n' ansible fleet -i "$WORK/inventory" -f "$FANOUT" -m raw -a 'echo ok' ;;
    conn_cold) printf '%s\n' "$CONN_BIN" run --mux "$COLD_MUX" --socket-dir "$WORK/c$2" "${CONN_COMMON[@]}" -- echo ok ;;
    conn_process) printf '%s\n' "$CONN_BIN" run --mux process --socket-dir "$WORK/cw" "${CONN_COMMON[@]}" -- echo ok ;;
    conn_native) printf '%s\n' "$CONN_BIN" run --mux native --socket-dir "$WORK/cw" "${CONN_COMMON[@]}" -- echo ok ;;
    esac
}
clush_opts() {
    case "$1" in
    clush_fresh) echo "-F $WORK/ssh_config" ;;
    clush_cm) echo "-F $WORK/ssh_config.clush-cm" ;;
    esac
}
method_env() { # method: environment assignments for `env`
    case "$1" in
    # pdsh's default is "-2 -a -x -l%u %h"; with -l%u it would override the config's User.
    pdsh_fresh) echo "PDSH_SSH_ARGS=-F $WORK/ssh_config -x %h" ;;
    pdsh_cm) echo "PDSH_SSH_ARGS=-F $WORK/ssh_config.pdsh-cm -x %h" ;;
    ansible_cm)
        echo "ANSIBLE_SSH_ARGS=-F $WORK/ssh_config -o ControlMaster=auto -o ControlPersist=$CONTROL_PERSIST"
        echo "ANSIBLE_SSH_CONTROL_PATH_DIR=$WORK/cm-ansible"
        echo "ANSIBLE_LOCAL_TEMP=$WORK/ansible-tmp"
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

# Runs one method once, bounded by --timeout; round is 1…R, or 0 for an untimed warming run.
# Appends "round method status seconds ok_hosts exit_code load1" to runs.tsv; the first time
# a method runs, its command line goes to commands.tsv.
run_method() { # method round
    local m="$1" r="$2" out="$WORK/$1.$2.out" err="$WORK/$1.$2.err" t0 t1 rc=0
    local -a cmd envs
    mapfile -t cmd < <(method_cmd "$m" "$r")
    mapfile -t envs < <(method_env "$m")
    [ "$m" = conn_cold ] && mkdir -m 0700 "$WORK/c$r"
    if ! grep -q "^$m"$'\t' "$WORK/commands.tsv" 2>/dev/null; then
        # Arguments separated by US (0x1f): the report quotes them for a shell.
        local IFS=$'\x1f'
        printf '%s\t%s\t%s\n' "$m" "${envs[*]}" "${cmd[*]}" >>"$WORK/commands.tsv"
    fi
    local load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    t0=$EPOCHREALTIME
    timeout -k 5 "$RUN_TIMEOUT" env "${envs[@]}" "${cmd[@]}" </dev/null >"$out" 2>"$err" &
    CUR_PID=$!
    wait "$CUR_PID" || rc=$?
    t1=$EPOCHREALTIME
    CUR_PID=""
    local n secs status=ok
    n=$(ok_hosts "$m" "$out" | wc -l)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    if [ "$rc" -ne 0 ] || [ "$n" -ne "$HOSTS" ]; then
        status=failed
        local why="exit code $rc"
        [ "$rc" -eq 124 ] && why="timed out after ${RUN_TIMEOUT}s"
        say "FAILED: $m (round $r): $why, ok from $n of $HOSTS hosts; stderr: $(head -c 400 "$err" | tr '\n' ' ')"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$status" "$secs" "$n" "$rc" "$load1" >>"$RUNS"
    # A cold run leaves its masters behind (that is conn's point); end them untimed so that
    # they do not load the sshd while the other methods run.
    if [ "$m" = conn_cold ]; then stop_masters "$WORK/c$r"; fi
    printf '    %-14s %8ss  %s\n' "$m" "$secs" "$status" >&2
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
say "load average at start: $LOAD_START ($(nproc) CPUs)"

say "warming runs (not timed): pdsh, clush and conn start their masters"
for m in "${METHODS[@]}"; do
    case "$m" in *_cm | conn_process | conn_native) run_method "$m" 0 ;; esac
done

for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round of $ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    # Rotate the order every round, so that no method always follows the same one.
    count=${#METHODS[@]}
    for ((k = 0; k < count; k++)); do
        run_method "${METHODS[$(((k + round - 1) % count))]}" "$round"
    done
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
BF_CLUSH_VERSION="$(clush --version 2>&1 | head -1)"
BF_KERNEL="$(uname -sr)"
BF_CPU="$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
export BF_NPROC BF_DATE BF_SSH_VERSION BF_PDSH_VERSION BF_CLUSH_VERSION BF_KERNEL BF_CPU
export BF_COMMANDS="$WORK/commands.tsv" BF_WORK="$WORK" BF_ROOT="$ROOT" BF_COLD_MUX="$COLD_MUX"
export BF_RUNS="$RUNS" BF_OUT="$OUT_DIR" BF_SVG="$SVG" BF_PNG="$PNG" BF_CHART="$CHART"
export BF_HOSTS="$HOSTS" BF_ROUNDS="$ROUNDS" BF_FANOUT="$FANOUT" BF_LOAD_START="$LOAD_START"
export BF_LOAD_END="$LOAD_END" BF_CM_PATH="$CM_PATH" BF_CONN_VERSION="$CONN_VERSION"
export BF_SETSID_SSH="$SETSID_SSH" BF_AUTOGROUP="$AUTOGROUP"
export BF_GIT_REV="$GIT_REV" BF_CIPHER="$CIPHER" BF_CONN_HOSTS="$CONN_HOSTS"
"$PY" - <<'PY'
import json, os, shlex, statistics

env = os.environ
hosts, rounds, fanout = int(env["BF_HOSTS"]), int(env["BF_ROUNDS"]), int(env["BF_FANOUT"])
setsid = env["BF_SETSID_SSH"] == "1"
cm = "one master per alias" if env["BF_CM_PATH"] == "host" else "ControlPath %C: one master for all aliases"

LABELS = {
    "pdsh_fresh": "pdsh -R ssh, fresh connections",
    "clush_fresh": "clush, fresh connections",
    "conn_cold": f"conn run, cold (starts {hosts} masters; --mux {env['BF_COLD_MUX']})",
    "pdsh_cm": "pdsh with ssh's own ControlMaster=auto + ControlPersist, warm",
    "clush_cm": "clush with ControlMaster=auto, warm",
    "ansible_cm": "Ansible `-m raw` (its own ControlPersist), warm",
    "conn_process": "conn run --mux process, warm",
    "conn_native": "conn run --mux native, warm",
}
SHORT = {
    "pdsh_fresh": "pdsh -R ssh",
    "clush_fresh": "clush",
    "conn_cold": "conn run (starts the masters)",
    "pdsh_cm": "pdsh + ssh ControlMaster",
    "clush_cm": "clush + ssh ControlMaster",
    "ansible_cm": "Ansible -m raw",
    "conn_process": "conn run --mux process",
    "conn_native": "conn run --mux native",
}
FRESH = {"pdsh_fresh", "clush_fresh", "conn_cold"}
# conn figure -> (pdsh baseline of the same temperature, target ratio)
RATIOS = {
    "conn_cold": ("pdsh_fresh", 1.05),
    "conn_process": ("pdsh_cm", 0.9),
    "conn_native": ("pdsh_cm", 0.25),
}

runs = {}
for line in open(env["BF_RUNS"]):
    r, m, status, secs, n, rc, load1 = line.rstrip("\n").split("\t")
    if int(r) == 0:
        continue  # warming run
    runs.setdefault(m, []).append({"round": int(r), "status": status, "seconds": float(secs),
                                   "ok_hosts": int(n), "exit_code": int(rc),
                                   "load1_before": float(load1)})

order = [m for m in LABELS if m in runs]
result = {}
for m in order:
    rs = runs[m]
    failed = [x for x in rs if x["status"] != "ok"]
    secs = [x["seconds"] for x in rs]
    result[m] = {
        "label": LABELS[m],
        "temperature": "fresh" if m in FRESH else "warm",
        "failed_rounds": len(failed),
        # A method that failed in any round is reported as failed, not timed.
        "median_s": None if failed else statistics.median(secs),
        "min_s": None if failed else min(secs),
        "max_s": None if failed else max(secs),
        "runs": rs,
    }
for m, (base, target) in RATIOS.items():
    if m not in result:
        continue
    a, b = result[m]["median_s"], result.get(base, {}).get("median_s")
    ratio = a / b if a is not None and b else None
    result[m]["ratio"] = {"against": base, "value": ratio, "target": target,
                          "met": None if ratio is None else ratio <= target}

def fmt(s):
    return "failed" if s is None else (f"{s:.3f} s" if s < 1 else f"{s:.2f} s")

lines = [
    f"{hosts} host aliases of one loopback sshd, fanout {fanout}, `echo ok`; median of {rounds} "
    f"interleaved rounds; {env['BF_NPROC']} CPUs; load average {env['BF_LOAD_START']} at the "
    f"start, {env['BF_LOAD_END']} at the end; {env['BF_DATE']}.",
    "",
    "| method | wall (median) | min – max | ratio | target |",
    "|---|---:|---:|---:|---|",
]
for m in order:
    x = result[m]
    rng = "-" if x["median_s"] is None else f"{x['min_s']:.3f} – {x['max_s']:.3f}"
    wall = fmt(x["median_s"])
    if x["failed_rounds"]:
        wall = f"failed ({x['failed_rounds']} of {rounds} rounds)"
    ratio = target = ""
    if "ratio" in x:
        q = x["ratio"]
        vs = "pdsh fresh" if q["against"] == "pdsh_fresh" else "pdsh+ControlMaster"
        ratio = "-" if q["value"] is None else f"{q['value']:.2f}× {vs}"
        target = f"≤ {q['target']}×" + ("" if q["met"] is None else (": met" if q["met"] else ": MISSED"))
    lines.append(f"| {x['label']} | {wall} | {rng} | {ratio} | {target} |")
lines += [
    "",
    f"ssh ControlMaster of pdsh and clush: {cm}. Cipher {env['BF_CIPHER']} for every tool. "
    f"{env['BF_SSH_VERSION']}; {env['BF_PDSH_VERSION']}; {env['BF_CLUSH_VERSION']}; "
    f"{env['BF_CONN_VERSION']} (git {env['BF_GIT_REV']}, hosts by "
    f"{'-w' if env['BF_CONN_HOSTS'] == 'w' else '--hosts-file'}); {env['BF_KERNEL']}; {env['BF_CPU']}.",
    "",
    "Sessions: pdsh starts every ssh client in a session of its own (setsid); "
    + ("clush's and conn's were started through setsid too (--setsid-ssh). "
       if setsid else "clush's ssh clients run in clush's own session; conn starts each master "
       "in a session of its own and runs sessions in-process (native) or as ssh -S clients "
       "in its own session (process). ")
    + f"Kernel autogroup scheduling (fair shares per session): "
    f"{ {'1': 'on', '0': 'off'}.get(env['BF_AUTOGROUP'], 'unknown') }.",
]
def shown(text):
    """A command line as the report shows it: the temp dir as <tmp>, paths in the repo relative."""
    return text.replace(env["BF_WORK"], "<tmp>").replace(env["BF_ROOT"] + "/", "")

commands = {}
for line in open(env["BF_COMMANDS"]):
    m, envs, cmd = line.rstrip("\n").split("\t")
    assigns = []
    for e in filter(None, envs.split("\x1f")):
        k, v = e.split("=", 1)
        assigns.append(f"{k}={shlex.quote(shown(v))}")
    commands[m] = {"env": " ".join(assigns),
                   "command": shlex.join(shown(a) for a in cmd.split("\x1f"))}
lines += ["", "Commands (`<tmp>` is the throwaway directory; conn's cold runs get a fresh "
          "socket directory each round):", ""]
for m in order:
    c = commands.get(m)
    if c:
        pre = f"{c['env']} " if c["env"] else ""
        lines.append(f"- {SHORT[m]}: `{pre}{c['command']}`")
for m in order:
    result[m]["command"] = commands.get(m)
md = "\n".join(lines) + "\n"
print(md, end="")
out = env["BF_OUT"]
with open(os.path.join(out, "results.md"), "w") as f:
    f.write(md)
meta = {k[3:].lower(): v for k, v in env.items()
        if k.startswith("BF_") and k not in ("BF_RUNS", "BF_OUT", "BF_COMMANDS", "BF_WORK", "BF_ROOT")}
for k in ("hosts", "rounds", "fanout", "nproc"):
    meta[k] = int(meta[k])
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({"meta": meta, "methods": result}, f, indent=2)
    f.write("\n")

if env["BF_CHART"] != "1":
    raise SystemExit(0)

import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt

# Plain text in the SVG (no glyph outlines), and no date or random ids: small, diffable files.
plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "conn-fleet", "font.size": 10,
                     "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"]})

groups = [("fresh connections: every run logs in to every host",
           [m for m in order if m in FRESH]),
          ("warm masters: the connections are already up",
           [m for m in order if m not in FRESH])]
ys, labels, values, colors = [], [], [], []
heads = []  # (title, y of the heading row, y of the group's last bar)
y = 0.0
for title, ms in groups:
    if not ms:
        continue
    head = y
    y += 0.8  # the heading row: no bar, so a long bar never runs into the group's title
    for m in ms:
        ys.append(y)
        labels.append(SHORT[m])
        values.append(result[m]["median_s"])
        colors.append("#1f6fb4" if m.startswith("conn") else "#9a9a9a")
        y += 1
    heads.append((title, head, y - 1))
    y += 0.5  # gap between the groups

fig, ax = plt.subplots(figsize=(8, 0.42 * len(ys) + 0.3 * len(heads) + 1.4))
finite = [v for v in values if v is not None]
xmax = max(finite) if finite else 1.0
ax.barh(ys, [v or 0 for v in values], color=colors, height=0.7)
for yy, v in zip(ys, values):
    text = "failed" if v is None else fmt(v)
    ax.text((v or 0) + xmax * 0.01, yy, text, va="center", fontsize=9)
ax.set_yticks(ys, labels)
ax.tick_params(axis="y", length=0)
ax.set_ylim(y - 0.5 + 0.1, -0.5)  # top to bottom, in the order of the table
ax.set_xlim(0, xmax * 1.12)
ax.set_xlabel("wall time, seconds (median; lower is better)")
for title, head, last in heads:
    ax.axhspan(head - 0.45, last + 0.5, color="#f4f4f4" if "fresh" in title else "#eaf1f8",
               zorder=0)
    ax.text(xmax * 0.005, head, title, va="center", fontsize=9, style="italic")
ax.set_title(f"echo ok on {hosts} hosts (aliases of one loopback sshd), fanout {fanout}\n"
             f"{env['BF_NPROC']} CPUs, median of {rounds} rounds, conn in blue"
             + (", every ssh client in its own session" if setsid else ""), fontsize=10)
for side in ("top", "right"):
    ax.spines[side].set_visible(False)
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
