#!/usr/bin/env bash
# Runs the whole test suite N times (default 3) while two CPU burners keep both cores busy, and
# prints one line per run: a suite that passes only on an idle machine hides races. Run
# `bash scripts/setup.sh` (as root) once first. Exit status: 0 when every run passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS="${1:-3}"
case "$RUNS" in '' | *[!0-9]*) echo "usage: $0 [RUNS]" >&2; exit 2 ;; esac

yes >/dev/null & burner1=$!
yes >/dev/null & burner2=$!
trap 'kill "$burner1" "$burner2" 2>/dev/null' EXIT

log_dir=$(mktemp -d)
failed=0
for i in $(seq 1 "$RUNS"); do
    start=$(date +%s)
    if cargo test --workspace --all-features >"$log_dir/run-$i.log" 2>&1; then rc=0; else rc=$?; failed=1; fi
    summary=$(grep -E '^test result' "$log_dir/run-$i.log" |
        awk '{p+=$4; f+=$6; i+=$8} END {print p" passed, "f" failed, "i" ignored"}')
    echo "run $i: exit $rc in $(($(date +%s) - start)) s, $summary, load $(cut -d' ' -f1-3 /proc/loadavg) (log: $log_dir/run-$i.log)"
done
exit "$failed"
