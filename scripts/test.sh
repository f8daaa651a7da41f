#!/usr/bin/env bash
# Runs the whole test suite, on a fresh machine too: installs and prepares what the
# integration tests need (OpenSSH server, /run/sshd, the `conntest` account), then
# `cargo test --workspace --all-features` (unit, integration and doc tests; no benches).
# Works without stdin and with CI=true. Extra arguments go to `cargo test`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TEST_USER="${CONN_TEST_USER:-conntest}"

say() { printf '==> %s\n' "$*"; }

if [ "$(id -u)" -eq 0 ]; then
    if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
        say "installing openssh-server and openssh-client (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update </dev/null
        apt-get install -y --no-install-recommends openssh-server openssh-client </dev/null
    fi
    if [ ! -d /run/sshd ]; then
        say "creating /run/sshd (sshd privilege-separation directory)"
        mkdir -p /run/sshd
        chmod 0755 /run/sshd
    fi
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        say "creating test account $TEST_USER (login shell /bin/sh)"
        useradd -m -s /bin/sh "$TEST_USER"
    fi
    if [ "$(getent passwd "$TEST_USER" | cut -d: -f7)" != /bin/sh ]; then
        say "setting login shell of $TEST_USER to /bin/sh"
        usermod -s /bin/sh "$TEST_USER"
    fi
    # sshd without PAM refuses even key logins to an account whose password field is `!…`.
    if getent shadow "$TEST_USER" | cut -d: -f2 | grep -q '^!'; then
        say "unlocking $TEST_USER for key logins (password field '*')"
        usermod -p '*' "$TEST_USER"
    fi
else
    if [ ! -x /usr/sbin/sshd ]; then
        echo "error: /usr/sbin/sshd is missing; run this script as root once to install it" >&2
        exit 1
    fi
    say "not root: the sshd tests log in as $(id -un)"
fi

say "cargo test --workspace --all-features $*"
cargo test --workspace --all-features "$@"
