#!/usr/bin/env bash
# The per-command cost of this tree's `conn` against another revision's, in one run: `conn
# bench` from both binaries in alternating rounds (A B, B A, …) against one private sshd, each
# binary with its own socket directory (its own warm masters). For every row that both
# measure (the pool's native and process back ends, sequential and concurrent) it prints the
# median per-command time of each binary (the median over rounds of each round's median) and
# new/old; and, since every `conn bench` run also times a hand-spawned `ssh -S` as its
# baseline, the same ratio with each round normalised by its own `ssh -S` median, which takes
# out the load that moves between rounds; and the median of each round's new/old pair (the two
# runs of a round are back to back).
#
# Usage: scripts/bench-ab.sh --rev REV | --old PATH  [--new PATH] [-r ROUNDS] [-n N] [-t T]
#        (--help for more)
#
# --rev builds REV's `conn` (release) in a temporary git worktree with its own target dir
# under target/bench-ab/. As root it logs in as the `conntest` account (scripts/setup.sh
# creates it). Everything it starts is ended and its temp dir removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=6
COUNT=300
THREADS=8
SYSCALLS=0
OLD_BIN=""
NEW_BIN=""
REV=""
SSHD="${CONN_TEST_SSHD:-/usr/sbin/sshd}"
PY=/usr/bin/python3

usage() {
    cat <<EOF
Usage: scripts/bench-ab.sh (--rev REV | --old PATH) [options]

Runs \`conn bench --builtin\` from an old and a new conn binary in alternating rounds
against one private loopback sshd and prints each back end's per-command median for both,
and new/old (raw, and normalised by each round's own \`ssh -S\` baseline).

Options:
      --rev REV      build the old binary from git revision REV (release build)
      --old PATH     the old binary
      --new PATH     the new binary (default: cargo build --release -p conn-cli here)
  -r, --rounds R     rounds of each binary (default $ROUNDS)
  -n, --count N      commands per row and round (default $COUNT)
  -t, --threads T    threads of the concurrent rows (default $THREADS)
      --syscalls     also count the system calls of one sequential native row of each
                     binary (strace -f, one file per thread, after a warm-up) and print each call's count per
                     command for both: what the per-command path does, exactly, load or not
  -h, --help         this text

Environment: CONN_TEST_USER (login account when root, default conntest), CONN_TEST_SSHD.
EOF
}
PROG=bench-ab
# shellcheck source=scripts/lib/cli.sh
. "$ROOT/scripts/lib/cli.sh"

while [ $# -gt 0 ]; do
    case "$1" in
    --rev) REV="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --old) OLD_BIN="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --new) NEW_BIN="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -r | --rounds) ROUNDS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -n | --count) COUNT="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    -t | --threads) THREADS="${2:-}"; shift 2 || die_usage "$1 needs a value" ;;
    --syscalls) SYSCALLS=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1'" ;;
    esac
done
[ -n "$REV" ] || [ -n "$OLD_BIN" ] || die_usage "give --rev REV or --old PATH"
[ -z "$REV" ] || [ -z "$OLD_BIN" ] || die_usage "--rev and --old exclude each other"
is_uint "$ROUNDS" || die_usage "--rounds wants a positive integer, got '$ROUNDS'"
is_uint "$COUNT" || die_usage "--count wants a positive integer, got '$COUNT'"
is_uint "$THREADS" || die_usage "--threads wants a positive integer, got '$THREADS'"
for bin in "$OLD_BIN" "$NEW_BIN"; do
    [ -z "$bin" ] || [ -x "$bin" ] || die_usage "$bin: not an executable file"
done
[ -x "$SSHD" ] || die "no sshd at $SSHD: run scripts/setup.sh"
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || die "no ssh client: run scripts/setup.sh"
[ -x "$PY" ] || die "no $PY (it gathers the figures)"
[ "$SYSCALLS" -eq 0 ] || command -v strace >/dev/null || die "--syscalls needs strace (apt-get install strace)"

LOGIN_USER="$(login_user)"

if [ -n "$REV" ] || [ -z "$NEW_BIN" ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust, or pass --old and --new"
fi
if [ -n "$REV" ]; then
    commit="$(git -C "$ROOT" rev-parse --verify "$REV^{commit}" 2>/dev/null)" ||
        die_usage "--rev $REV: not a revision of $ROOT"
    tree="$ROOT/target/bench-ab/src-$commit"
    if [ ! -d "$tree" ]; then
        say "git worktree add $tree $commit"
        git -C "$ROOT" worktree add --detach "$tree" "$commit" >&2
    fi
    say "cargo build --release -p conn-cli at $commit"
    (cd "$tree" && CARGO_TARGET_DIR="$ROOT/target/bench-ab/target-$commit" \
        cargo build --release -p conn-cli >&2) || die "the build of $REV failed"
    OLD_BIN="$ROOT/target/bench-ab/target-$commit/release/conn"
fi
if [ -z "$NEW_BIN" ]; then
    say "cargo build --release -p conn-cli"
    (cd "$ROOT" && cargo build --release -p conn-cli >&2) || die "cargo build --release -p conn-cli failed"
    NEW_BIN="$ROOT/target/release/conn"
fi

# shellcheck source=scripts/lib/sshd.sh
. "$ROOT/scripts/lib/sshd.sh"
sshd_workdir
trap sshd_cleanup EXIT
trap 'echo "bench-ab: interrupted, cleaning up" >&2; sshd_cleanup; exit 130' INT
trap 'sshd_cleanup; exit 143' TERM HUP
sshd_start "$LOGIN_USER"
mkdir -m 0700 "$WORK/s-old" "$WORK/s-new"
say "private sshd on 127.0.0.1:$PORT, logins as $LOGIN_USER; $ROUNDS rounds of $COUNT commands per row"

"$PY" - "$ROUNDS" "$COUNT" "$THREADS" "$OLD_BIN" "$NEW_BIN" "$WORK" <<'EOF'
import json, statistics, subprocess, sys

rounds, count, threads = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bins = {"old": sys.argv[4], "new": sys.argv[5]}
work = sys.argv[6]
cfg = work + "/ssh_config"

def bench(which):
    argv = [bins[which], "bench", "-F", cfg, "--socket-dir", f"{work}/s-{which}",
            "-n", str(count), "-t", threads, "--fresh", "0", "--checks", "0",
            "--fresh-runs", "0", "--builtin", "--json", "bench"]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"bench-ab: {' '.join(argv)} failed ({done.returncode}): "
                 f"{done.stderr.decode(errors='replace').strip()[-2000:]}")
    return json.loads(done.stdout)

# (backend, threads) -> which -> [(median_us, ssh -S median_us of the same run and threads)]
seen = {}
for i in range(rounds):
    for which in (("old", "new") if i % 2 == 0 else ("new", "old")):
        report = bench(which)
        base = {r["threads"]: r["median_us"] for r in report["rows"] if r["baseline"]}
        for r in report["rows"]:
            if r["backend"].startswith("conn-pool") and r["errors"] == 0:
                key = (r["label"], r["threads"])
                seen.setdefault(key, {"old": [], "new": []})[which].append(
                    (r["median_us"], base.get(r["threads"])))
        print(f"round {i + 1}/{rounds}: {which} done", file=sys.stderr)

print(f"{rounds} rounds of `conn bench --builtin -n {count} -t {threads}` per binary, "
      "alternating; per-command medians in µs")
print()
print("| row | threads | old | new | new/old | new/old vs each run's ssh -S | paired new/old: median (quartiles) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for (label, t), by in sorted(seen.items()):
    if not by["old"] or not by["new"]:
        continue
    old = statistics.median(m for m, _ in by["old"])
    new = statistics.median(m for m, _ in by["new"])
    norm = lambda xs: statistics.median(m / b for m, b in xs if b)
    # Each round's new against the same round's old, run right before or after it: the load
    # that moves between rounds is shared by the two of a pair.
    pairs = [n / o for (n, _), (o, _) in zip(by["new"], by["old"])]
    q = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else [pairs[0]] * 3
    print(f"| {label} | {t} | {old:.0f} | {new:.0f} | {new / old:.3f} | "
          f"{norm(by['new']) / norm(by['old']):.3f} | "
          f"{statistics.median(pairs):.3f} ({q[0]:.3f}–{q[2]:.3f}) |")
EOF

# The system calls of the per-command path, counted: the same bench from each binary under
# strace (a warm-up first, uncounted, so the master and the pool exist), one output file per
# thread or process; files of processes that exec (the hand-spawned ssh -S of the baseline
# rows) are left out, which leaves conn's own threads. Per native command of the sequential
# row, each call that either binary makes at least once a command.
if [ "$SYSCALLS" -eq 1 ]; then
    for which in old new; do
        bin="$OLD_BIN"
        [ "$which" = new ] && bin="$NEW_BIN"
        mkdir -p -m 0700 "$WORK/sc-$which" "$WORK/trace-$which"
        args=(bench -F "$WORK/ssh_config" --socket-dir "$WORK/sc-$which" -t 1 --mux native
            --fresh 0 --checks 0 --fresh-runs 0 --builtin bench)
        "$bin" "${args[@]}" -n 20 >/dev/null 2>&1 || die "$bin bench failed (warm-up)"
        strace -f -ff -o "$WORK/trace-$which/t" "$bin" "${args[@]}" -n "$COUNT" >/dev/null 2>&1 ||
            die "$bin bench under strace failed"
    done
    "$PY" - "$WORK/trace-old" "$WORK/trace-new" "$COUNT" <<'EOF2'
import os, re, sys
call = re.compile(r"^([a-z_0-9]+)\(")
def counts(d):
    out = {}
    for name in os.listdir(d):
        lines = open(os.path.join(d, name), errors="replace").read().splitlines()
        if any(l.startswith("execve(") for l in lines):
            continue
        for l in lines:
            m = call.match(l)
            if m:
                c = out.setdefault(m.group(1), [0, 0])
                c[0] += 1
                c[1] += " = -1 " in l
    return out
old, new, n = counts(sys.argv[1]), counts(sys.argv[2]), int(sys.argv[3])
per = n  # `-t 1`: the sequential row only
print()
print(f"conn's own system calls per native command (strace -f, {per} commands per binary; failed calls in brackets):")
print()
print("| call | old | new |")
print("|---|---:|---:|")
zero = [0, 0]
for name in sorted(set(old) | set(new), key=lambda k: (-max(old.get(k, zero)[0], new.get(k, zero)[0]), k)):
    o, w = old.get(name, zero), new.get(name, zero)
    if max(o[0], w[0]) < per * 0.9:
        continue
    fmt = lambda c: f"{c[0] / per:.2f}" + (f" ({c[1] / per:.2f})" if c[1] else "")
    print(f"| {name} | {fmt(o)} | {fmt(w)} |")
EOF2
fi
