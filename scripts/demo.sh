#!/usr/bin/env bash
# The main job, on a fresh machine too: scripts/setup.sh prepares what the private sshd needs
# (OpenSSH server and client, /run/sshd, as root the `conntest` account), then `conn demo`
# (release build): a private sshd on 127.0.0.1, a short benchmark, master reuse across
# processes, teardown. Arguments go to `conn demo` (e.g. `-n 200 -t 8,32`, `--builtin`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh

echo "==> cargo run --release -p conn-cli -- demo $*"
cargo run --release -p conn-cli -- demo "$@"
