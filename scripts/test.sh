#!/usr/bin/env bash
# Runs the whole test suite, on a fresh machine too: scripts/setup.sh prepares what the
# integration tests need (OpenSSH server and client, /run/sshd, as root the `conntest` account),
# then `cargo test --workspace --all-features` (unit, integration and doc tests; no benches).
# Works without stdin and with CI=true. Extra arguments go to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "==> cargo test --workspace --all-features $*"
cargo test --workspace --all-features "$@"
