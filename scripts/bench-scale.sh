#!/usr/bin/env bash
# Fleet scale benchmark: `conn run` on N host aliases (default 1,000) of one private loopback
# sshd, and what the masters it leaves cost.
#
# Per round, in turns: a cold `conn run` (a fresh socket directory: it starts N masters, ended
# untimed afterwards), a warm `conn run` over the N masters of a directory warmed once, and a
# cold `conn run --exit-on-shutdown` (it starts and then ends its N masters). Each run's wall
# time, conn's own peak RSS (VmHWM of the conn process, polled every 10 ms) and, with root and
# cgroup v2, the CPU of conn's process tree and of the sshd. Then, with the warm directory's N
# masters alive: each master's RSS and PSS (/proc/<pid>/smaps_rollup), its descriptors, the
# sshd processes that serve them, and how much MemAvailable fell when they started. With
# --pdsh, a cold pdsh run per round too, for scale.
#
# Usage: scripts/bench-scale.sh [options]   (--help lists them)
#
# It installs nothing and creates no account: `sudo bash scripts/setup.sh --bench-tools` prepares
# the machine. Everything it starts is ended and its temp dir removed on exit, Ctrl-C included.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

HOSTS=1000
ROUNDS=1
FANOUT=32
RUN_TIMEOUT=900
KEX="curve25519-sha256"
PDSH=0
CPU=1
CONN_BIN=""
OUT_DIR="$ROOT/target/bench-scale"
CIPHER="aes256-gcm@openssh.com"
CONTROL_PERSIST=3600
SSHD="${CONN_TEST_SSHD:-/usr/sbin/sshd}"
PY=/usr/bin/python3
SETUP_HINT="run \`sudo bash scripts/setup.sh --bench-tools\` once to prepare this machine"
BENCH_NAME=bench-scale
PROG=bench-scale
# shellcheck source=scripts/lib/cli.sh
. "$ROOT/scripts/lib/cli.sh"

usage() {
    cat <<EOF
Usage: scripts/bench-scale.sh [options]

Runs \`echo ok\` through conn run on N ssh_config aliases of a private loopback sshd, cold,
warm and cold with --exit-on-shutdown, and measures what each live master costs.

Options:
  -n, --hosts N        host aliases h0001…hN (default $HOSTS)
  -r, --rounds R       rounds; medians are reported (default $ROUNDS)
  -f, --fanout F       conn's fanout (default $FANOUT)
      --kex KEX        KexAlgorithms on both sides, or \`default\` (default $KEX)
      --pdsh           also a cold pdsh run per round
      --conn PATH      the conn binary (default: cargo build --release -p conn-cli)
      --out DIR        results directory (default target/bench-scale)
      --no-cpu         no CPU accounting (it needs root and cgroup v2)
      --timeout SECS   limit of one run (default $RUN_TIMEOUT)
  -h, --help           this text

The machine needs about 7 MB of memory and 3 processes per host (a master and two sshd
processes) while the warm masters live. Environment: CONN_TEST_USER, CONN_TEST_SSHD.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    -n | --hosts) HOSTS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -r | --rounds) ROUNDS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -f | --fanout) FANOUT="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --kex) KEX="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --pdsh) PDSH=1; shift ;;
    --conn) CONN_BIN="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --out) OUT_DIR="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --no-cpu) CPU=0; shift ;;
    --timeout) RUN_TIMEOUT="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
if ! is_uint "$HOSTS" || [ "$HOSTS" -gt 9999 ]; then die_usage "--hosts wants 1..9999, got '$HOSTS'"; fi
is_uint "$ROUNDS" || die_usage "--rounds wants a positive integer, got '$ROUNDS'"
is_uint "$FANOUT" || die_usage "--fanout wants a positive integer, got '$FANOUT'"
is_uint "$RUN_TIMEOUT" || die_usage "--timeout wants whole seconds >= 1, got '$RUN_TIMEOUT'"
[[ "$KEX" =~ ^[A-Za-z0-9@.+_,-]+$ ]] || die_usage "--kex: '$KEX' is not a key exchange name"
if [ -n "$CONN_BIN" ] && [ ! -x "$CONN_BIN" ]; then die_usage "--conn $CONN_BIN: not an executable file"; fi
case "$OUT_DIR" in /*) ;; *) OUT_DIR="$PWD/$OUT_DIR" ;; esac

# shellcheck source=scripts/lib/bench-sshd.sh
. "$ROOT/scripts/lib/bench-sshd.sh"

missing=()
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing+=("ssh and ssh-keygen (openssh-client)")
[ -x "$SSHD" ] || missing+=("sshd at $SSHD (openssh-server)")
command -v timeout >/dev/null || missing+=("timeout (coreutils)")
[ -x "$PY" ] || missing+=("$PY (python3)")
[ "$PDSH" -eq 0 ] || command -v pdsh >/dev/null || missing+=("pdsh")
[ ${#missing[@]} -eq 0 ] || die "missing: $(IFS=';'; echo "${missing[*]}"); $SETUP_HINT"
LOGIN_USER="$(login_user)"
if [ -z "$CONN_BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust, or pass --conn PATH"
    say "cargo build --release -p conn-cli"
    (cd "$ROOT" && cargo build --release -p conn-cli >&2) || die "cargo build --release -p conn-cli failed"
    CONN_BIN="$ROOT/target/release/conn"
fi
# Three processes per host (a master, sshd's monitor and session processes) while the warm
# masters live: refuse early what the process limit cannot hold.
need=$((HOSTS * 3 + 200))
limit="$(ulimit -u)"
if [ "$limit" != unlimited ] && [ "$limit" -lt "$need" ]; then
    die "ulimit -u is $limit; $HOSTS hosts need about $need processes"
fi
[ "$(cat /proc/sys/kernel/pid_max)" -ge "$need" ] || die "kernel.pid_max is below the $need processes $HOSTS hosts need"

bench_setup "$CPU"
bench_traps

say "starting a private sshd (KexAlgorithms $KEX, logins as $LOGIN_USER)"
start_sshd s "$KEX"
D="$WORK/s"
say "sshd pid $SSHD_PID on 127.0.0.1:$PORT; negotiated kex ${NEGOTIATED:-unknown}; $HOSTS aliases $HOSTLIST"
mkdir -m 0700 "$D/warm"
RUNS="$WORK/runs.tsv"
: >"$RUNS"

mem_available_kib() { awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo; }

# Runs one timed command: wall seconds, the peak RSS (KiB) of the process itself, CPU of its
# cgroup and of the sshd's; appends "method round status seconds ok peak_kib tool_us sshd_us".
run_one() { # method round cgroup-name cmd…
    local m="$1" r="$2" cg
    shift 2
    cg="$(cg_dir "$1")"
    shift
    local out="$WORK/$m.$r.out" tool0 sshd0 tool1 sshd1 line
    tool0=$(cg_usage "$cg")
    sshd0=$(cg_usage "$SSHD_CG")
    line="$("$PY" - "$cg" "$RUN_TIMEOUT" "$out" "$@" <<'PY'
import os, subprocess, sys, threading, time
cg, limit, out, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
def enter():
    if cg:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
peak = [0]
def poll(pid, done):
    path = f"/proc/{pid}/status"
    while not done.is_set():
        try:
            for l in open(path):
                if l.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(l.split()[1]))
        except OSError:
            return
        done.wait(0.01)
with open(out, "wb") as o:
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=o, stderr=subprocess.PIPE, preexec_fn=enter)
    done = threading.Event()
    t = threading.Thread(target=poll, args=(p.pid, done), daemon=True)
    t.start()
    try:
        _, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    t1 = time.monotonic()
    done.set()
sys.stderr.write(err.decode(errors="replace")[-400:])
print(f"{p.returncode}\t{t1 - t0:.4f}\t{peak[0]}")
PY
)"
    tool1=$(cg_usage "$cg")
    sshd1=$(cg_usage "$SSHD_CG")
    local rc secs peak n status=ok
    IFS=$'\t' read -r rc secs peak <<<"$line"
    n=$(grep -c ': ok$' "$out" || true)
    if [ "$rc" -ne 0 ] || [ "$n" -ne "$HOSTS" ]; then
        status=failed
        say "FAILED: $m (round $r): exit code $rc, ok from $n of $HOSTS hosts"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$r" "$status" "$secs" "$n" "$peak" \
        "$((tool1 - tool0))" "$((sshd1 - sshd0))" >>"$RUNS"
    printf '    %-16s %9ss  peak RSS %6s KiB  %s\n' "$m" "$secs" "$peak" "$status" >&2
}

conn_args() { # socket-dir
    printf '%s\n' run --mux native --socket-dir "$1" --ssh-config "$D/ssh_config" --cipher "$CIPHER" \
        --control-persist "$CONTROL_PERSIST" --fanout "$FANOUT" -w "$HOSTLIST"
}

run_method() { # method round
    local m="$1" r="$2" dir
    local -a args
    case "$m" in
    conn_cold | conn_cold_exit)
        # Short: the ControlPath must fit a Unix socket address.
        dir="$D/${m:5:1}$r"
        [ "$m" = conn_cold ] || dir="$D/x$r"
        mkdir -m 0700 "$dir"
        mapfile -t args < <(conn_args "$dir")
        [ "$m" = conn_cold ] || args+=(--exit-on-shutdown)
        run_one "$m" "$r" "$m" "$CONN_BIN" "${args[@]}" -- echo ok
        if [ "$m" = conn_cold_exit ]; then
            local left
            left=$(pgrep -c -f -- "$dir/" || true)
            printf '%s\t%s\n' "$r" "$left" >>"$WORK/exit-left.tsv"
        fi
        stop_masters "$dir"
        wait_gone "$dir"
        ;;
    conn_warm)
        mapfile -t args < <(conn_args "$D/warm")
        run_one "$m" "$r" "$m" "$CONN_BIN" "${args[@]}" -- echo ok
        ;;
    pdsh_cold)
        run_one "$m" "$r" "$m" env "PDSH_SSH_ARGS=-F $D/ssh_config -x %h" pdsh -R ssh -f "$FANOUT" -w "$HOSTLIST" echo ok
        ;;
    esac
    # The sshd is quiet again before the next run: only the warm masters' connections are left.
    local deadline=$((SECONDS + 30))
    while [ "$(sshd_connections)" -gt "$BASE_CONNECTIONS" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
}

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
say "load average at start: $LOAD_START ($(nproc) CPUs)"
BASE_CONNECTIONS=0
MEM_BEFORE=$(mem_available_kib)
say "warming: $HOSTS masters in the warm directory (not timed)"
mapfile -t WARM_ARGS < <(conn_args "$D/warm")
"$CONN_BIN" "${WARM_ARGS[@]}" -- true </dev/null >/dev/null 2>"$WORK/warm.err" ||
    die "the warming run failed: $(tail -5 "$WORK/warm.err" | tr '\n' ' ')"
sleep 1 # the masters' pages settle (the sshd's session processes of the warming run exit)
MEM_AFTER=$(mem_available_kib)
BASE_CONNECTIONS="$(sshd_connections)"

# What the warm masters cost, each: RSS, PSS and descriptors of every master; the sshd
# processes that serve them (the listener's children and their children).
"$PY" - "$D/warm" "$SSHD_PID" >"$WORK/memory.tsv" <<'PY'
import os, sys
warm, sshd = sys.argv[1] + "/", int(sys.argv[2])
def rollup(pid):
    rss = pss = 0
    for l in open(f"/proc/{pid}/smaps_rollup"):
        if l.startswith("Rss:"):
            rss = int(l.split()[1])
        elif l.startswith("Pss:"):
            pss = int(l.split()[1])
    return rss, pss
masters, children = [], {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        continue
    children.setdefault(ppid, []).append(int(pid))
    if os.path.basename(cmd[0]) == b"ssh" and b"-M" in cmd and any(a.startswith(warm.encode()) for a in cmd):
        masters.append(int(pid))
for pid in masters:
    rss, pss = rollup(pid)
    print(f"master\t{pid}\t{rss}\t{pss}\t{len(os.listdir(f'/proc/{pid}/fd'))}")
stack = list(children.get(sshd, []))
while stack:
    pid = stack.pop()
    stack.extend(children.get(pid, []))
    try:
        rss, pss = rollup(pid)
        print(f"sshd\t{pid}\t{rss}\t{pss}\t{len(os.listdir(f'/proc/{pid}/fd'))}")
    except OSError:
        pass
PY
say "$(grep -c '^master' "$WORK/memory.tsv") warm masters, $(grep -c '^sshd' "$WORK/memory.tsv") sshd processes serving them"

METHODS=(conn_cold conn_warm conn_cold_exit)
[ "$PDSH" -eq 0 ] || METHODS+=(pdsh_cold)
: >"$WORK/exit-left.tsv"
for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round of $ROUNDS (load $(cut -d' ' -f1-3 /proc/loadavg))"
    count=${#METHODS[@]}
    for ((k = 0; k < count; k++)); do
        run_method "${METHODS[$(((k + round - 1) % count))]}" "$round"
    done
done
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$OUT_DIR"
cp "$RUNS" "$OUT_DIR/results.tsv"
cp "$WORK/memory.tsv" "$OUT_DIR/memory.tsv"
export BS_RUNS="$RUNS" BS_MEMORY="$WORK/memory.tsv" BS_LEFT="$WORK/exit-left.tsv" BS_OUT="$OUT_DIR"
export BS_HOSTS="$HOSTS" BS_ROUNDS="$ROUNDS" BS_FANOUT="$FANOUT" BS_KEX="$KEX" BS_NEG="${NEGOTIATED:-unknown}"
export BS_MEM_BEFORE="$MEM_BEFORE" BS_MEM_AFTER="$MEM_AFTER" BS_LOAD_START="$LOAD_START" BS_LOAD_END="$LOAD_END"
export BS_DATE="$(date -u +%Y-%m-%dT%H:%MZ)" BS_NPROC="$(nproc)" BS_CPU="$([ -n "$CG" ] && echo 1 || echo 0)"
export BS_MEMTOTAL="$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)"
export BS_GIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" BS_SSH="$(ssh -V 2>&1)"
"$PY" - <<'PY'
import json, os, statistics as st
e = os.environ
hosts = int(e["BS_HOSTS"])
cpu = e["BS_CPU"] == "1"
runs = {}
for l in open(e["BS_RUNS"]):
    m, r, status, secs, n, peak, tool, sshd = l.rstrip("\n").split("\t")
    runs.setdefault(m, []).append(dict(status=status, seconds=float(secs), ok=int(n), peak_kib=int(peak),
                                       tool_s=int(tool) / 1e6, sshd_s=int(sshd) / 1e6))
mem = {"master": [], "sshd": []}
for l in open(e["BS_MEMORY"]):
    kind, pid, rss, pss, fds = l.split("\t")
    mem[kind].append((int(rss), int(pss), int(fds)))
left = [int(l.split("\t")[1]) for l in open(e["BS_LEFT"]) if l.strip()]
LABEL = {"conn_cold": f"conn run, cold (starts {hosts} masters)",
         "conn_warm": f"conn run, warm (over {hosts} live masters)",
         "conn_cold_exit": f"conn run --exit-on-shutdown, cold (starts and ends {hosts} masters)",
         "pdsh_cold": "pdsh -R ssh, fresh connections"}
out = [f"`echo ok` on {hosts} aliases of one loopback sshd, fanout {e['BS_FANOUT']}, KexAlgorithms "
       f"{e['BS_KEX']} (negotiated {e['BS_NEG']}); median of {e['BS_ROUNDS']} round(s); {e['BS_NPROC']} CPUs, "
       f"{int(e['BS_MEMTOTAL']) // 1024} MiB; load average {e['BS_LOAD_START']} at the start, {e['BS_LOAD_END']} "
       f"at the end; {e['BS_DATE']}, git {e['BS_GIT']}, {e['BS_SSH']}.", "",
       "| run | wall (median) | min – max | conn's peak RSS | CPU per host: tool / sshd |",
       "|---|---:|---:|---:|---:|"]
result = {}
for m in LABEL:
    if m not in runs:
        continue
    rs = runs[m]
    ok = all(x["status"] == "ok" for x in rs)
    w = [x["seconds"] for x in rs]
    peak = st.median(x["peak_kib"] for x in rs) / 1024
    cpu_cell = (f"{st.median(x['tool_s'] for x in rs) * 1e3 / hosts:.1f} / {st.median(x['sshd_s'] for x in rs) * 1e3 / hosts:.1f} ms"
                if cpu else "-")
    wall = f"{st.median(w):.2f} s" if ok else "failed"
    peak_cell = f"{peak:.1f} MiB" if m.startswith("conn") else "-"
    out.append(f"| {LABEL[m]} | {wall} | {min(w):.2f} – {max(w):.2f} | {peak_cell} | {cpu_cell} |")
    result[m] = {"runs": rs, "median_s": st.median(w) if ok else None}
def stats(rows, i):
    v = [r[i] for r in rows]
    return (st.median(v), sum(v)) if v else (0, 0)
mr, mp, mf = (stats(mem["master"], i) for i in range(3))
sr, sp, sf = (stats(mem["sshd"], i) for i in range(3))
nm, ns = len(mem["master"]), len(mem["sshd"])
drop = (int(e["BS_MEM_BEFORE"]) - int(e["BS_MEM_AFTER"])) / 1024
out += ["",
        f"The warm directory's {nm} live masters: RSS {mr[0] / 1024:.2f} MiB each (median), PSS "
        f"{mp[0] / 1024:.2f} MiB each, {mp[1] / 1024:.0f} MiB PSS in all; {mf[0]:.0f} descriptors each. "
        f"The sshd serves them with {ns} processes ({ns / max(nm, 1):.1f} per master): PSS "
        f"{sp[1] / 1024:.0f} MiB in all ({sp[1] / 1024 / max(nm, 1):.2f} MiB per master). MemAvailable fell "
        f"by {drop:.0f} MiB while they started ({drop / max(nm, 1):.2f} MiB per master and its sshd side, "
        f"kernel memory included)."]
if left:
    out.append(f"Processes left under a --exit-on-shutdown run's socket directory when it returned: {max(left)} (every master ended).")
md = "\n".join(out) + "\n"
print(md, end="")
os.makedirs(e["BS_OUT"], exist_ok=True)
open(os.path.join(e["BS_OUT"], "results.md"), "w").write(md)
json.dump({"runs": result, "masters": {"count": nm, "rss_kib_median": mr[0], "pss_kib_median": mp[0],
           "pss_kib_total": mp[1], "fds_median": mf[0]},
           "sshd": {"processes": ns, "pss_kib_total": sp[1]}, "mem_available_drop_mib": drop},
          open(os.path.join(e["BS_OUT"], "results.json"), "w"), indent=2)
PY
if grep -q $'\tfailed\t' "$RUNS"; then
    echo "bench-scale: some runs failed (see FAILED above and $OUT_DIR/results.tsv)" >&2
    exit 1
fi
