#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a short time (default 20 s each; `bash scripts/fuzz.sh 300`
# for longer), seeded with its saved inputs in fuzz/regressions/<target>/. Needs a nightly
# toolchain and cargo-fuzz (`bash scripts/setup.sh --fuzz-tools` installs cargo-fuzz); without
# them it says so and exits 0, so that CI without nightly still passes its other checks.
# A crash fails the run; libFuzzer saves the input under fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

SECONDS_EACH="${1:-20}"

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "==> fuzz: skipped: no nightly toolchain (cargo-fuzz needs one: rustup toolchain install nightly)"
    exit 0
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "==> fuzz: skipped: cargo-fuzz is not installed (bash scripts/setup.sh --fuzz-tools)"
    exit 0
fi

for target in $(cargo +nightly fuzz list); do
    echo "==> fuzz: $target for ${SECONDS_EACH} s"
    mkdir -p "corpus/$target"
    seeds=("corpus/$target")
    [ -d "regressions/$target" ] && seeds+=("regressions/$target")
    # libFuzzer's progress lines (`#1234 NEW …`, `NEW_FUNC`) and dictionary only fill the log: left out.
    set +e
    cargo +nightly fuzz run "$target" "${seeds[@]}" -- -max_total_time="$SECONDS_EACH" 2>&1 |
        grep -Ev '^(#[0-9]+[[:space:]]|"|[[:space:]]+NEW_FUNC)'
    status="${PIPESTATUS[0]}"
    set -e
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $target failed (exit $status). Keep the crash input as a regression case:" >&2
        echo "  cp fuzz/artifacts/$target/<crash-file> fuzz/regressions/$target/<what-it-shows>" >&2
        echo "then fix the code (or the check in crates/conn-testkit/src/fuzz.rs) until" >&2
        echo "  cargo test -p conn-testkit --all-features --test fuzz_regressions  passes." >&2
        exit 1
    fi
done
