#!/usr/bin/env bash
# Prepares this machine for conn's demo and test suite; the one place that installs packages or
# creates accounts (conn itself and its tests only check, and point here). Idempotent: what is
# already in place is left alone, so every run after the first changes nothing.
#
#   bash scripts/setup.sh                 what the demo and the tests need (clustershell too: the
#                                         host-set and node-group tests compare conn with nodeset)
#   bash scripts/setup.sh --bench-tools   also pdsh (with clush, the fleet benchmark's peers) and
#                                         matplotlib for its chart (python3-matplotlib)
#   bash scripts/setup.sh --fuzz-tools    also cargo-fuzz (when a nightly toolchain is installed)
#
# As root (Debian/Ubuntu): installs openssh-server, openssh-client, openssh-sftp-server, git and
# rsync when missing (apt-get; the `conn ssh` tests run git, rsync, scp and sftp through conn),
# creates /run/sshd (sshd's privilege-separation directory; /run is emptied at boot), and the
# account `conntest` (or $CONN_TEST_USER) that the private sshd logs in as: login shell /bin/sh
# (no slow start-up files), password field `*` (no password; sshd without PAM refuses key logins
# to a `!`-locked account). `userdel -r conntest` removes it. Also the account `conntest-long`,
# whose home directory is 60 bytes long (/home/conntest-long-home-directory-for-the-socket-path-
# tests): a test runs `conn` as that account to show that the default socket directory works for
# a long home. `userdel -r conntest-long` removes it.
# As any other user: installs nothing system-wide, says what is missing and exits 1 if the demo
# or the tests cannot run (a non-root private sshd logs in as that same user, so no account is
# needed then). Works without a terminal (CI).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TEST_USER="${CONN_TEST_USER:-conntest}"
# The account crates/conn-cli/tests/long_home.rs runs conn as; its home must be 60 bytes.
LONG_HOME_USER=conntest-long
LONG_HOME=/home/conntest-long-home-directory-for-the-socket-path-tests
BENCH_TOOLS=0
FUZZ_TOOLS=0
for arg in "$@"; do
    case "$arg" in
        --bench-tools) BENCH_TOOLS=1 ;;
        --fuzz-tools) FUZZ_TOOLS=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "setup.sh: unknown option '$arg' (known: --bench-tools, --fuzz-tools, --help)" >&2
            exit 2
            ;;
    esac
done

say() { printf '==> setup: %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# Debian packages to install, each only when the program it provides is missing.
packages=()
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
if ! have ssh || ! have ssh-keygen || ! have scp || ! have sftp; then packages+=(openssh-client); fi
[ -x /usr/lib/openssh/sftp-server ] || packages+=(openssh-sftp-server)
have git || packages+=(git)
have rsync || packages+=(rsync)
# ClusterShell's nodeset (and clush, the fleet benchmark's peer): conn's folding and node groups
# are tested against it.
if ! have nodeset || ! have clush; then packages+=(clustershell); fi
if [ "$BENCH_TOOLS" = 1 ]; then
    have pdsh || packages+=(pdsh)
    # scripts/bench-fleet.sh draws docs/fleet.svg with Debian's python3 and its matplotlib.
    /usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || packages+=(python3-matplotlib)
fi

if is_root; then
    if [ "${#packages[@]}" -gt 0 ]; then
        say "installing ${packages[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update </dev/null
        apt-get install -y --no-install-recommends "${packages[@]}" </dev/null
    fi
    if [ ! -d /run/sshd ]; then
        say "creating /run/sshd (sshd's privilege-separation directory)"
        mkdir -p /run/sshd
        chmod 0755 /run/sshd
    fi
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        say "creating the test account $TEST_USER (login shell /bin/sh; userdel -r $TEST_USER removes it)"
        useradd -m -s /bin/sh "$TEST_USER"
    fi
    if [ "$(getent passwd "$TEST_USER" | cut -d: -f7)" != /bin/sh ]; then
        say "setting the login shell of $TEST_USER to /bin/sh"
        usermod -s /bin/sh "$TEST_USER"
    fi
    if getent shadow "$TEST_USER" | cut -d: -f2 | grep -q '^!'; then
        say "unlocking $TEST_USER for key logins (password field '*')"
        usermod -p '*' "$TEST_USER"
    fi
    if ! id "$LONG_HOME_USER" >/dev/null 2>&1; then
        say "creating the account $LONG_HOME_USER, home $LONG_HOME (${#LONG_HOME} bytes; userdel -r $LONG_HOME_USER removes it)"
        useradd -m -d "$LONG_HOME" -s /bin/sh "$LONG_HOME_USER"
    elif [ "$(getent passwd "$LONG_HOME_USER" | cut -d: -f6)" != "$LONG_HOME" ]; then
        say "moving the home of $LONG_HOME_USER to $LONG_HOME"
        usermod -m -d "$LONG_HOME" "$LONG_HOME_USER"
    fi
else
    missing=0
    for p in "${packages[@]}"; do
        case "$p" in
            openssh-server | openssh-client)
                echo "setup.sh: $p is missing: the private sshd of the demo and the tests needs it" >&2
                missing=1
                ;;
            openssh-sftp-server | git | rsync)
                echo "setup.sh: $p is missing: the conn ssh tests (crates/conn-cli/tests/ssh.rs) need it" >&2
                missing=1
                ;;
            clustershell)
                echo "setup.sh: $p is missing: the host-set and node-group tests compare conn with its nodeset" >&2
                missing=1
                ;;
            *) echo "setup.sh: $p is missing (only the fleet benchmark needs it)" >&2 ;;
        esac
    done
    if [ "${#packages[@]}" -gt 0 ]; then
        echo "setup.sh: run \`sudo bash scripts/setup.sh${*:+ $*}\` once to install ${packages[*]}" >&2
    fi
    [ "$missing" = 0 ] || exit 1
    say "not root: the private sshd will log in as $(id -un); nothing to prepare"
fi

if [ "$FUZZ_TOOLS" = 1 ]; then
    if have cargo-fuzz; then
        :
    elif ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        say "not installing cargo-fuzz: no nightly toolchain (\`rustup toolchain install nightly\`), which it needs"
    else
        say "installing cargo-fuzz (cargo install --locked; about 2 minutes, once)"
        # Optional tooling: a failed install (no network, say) is reported, not fatal; the fuzz
        # step then says it is skipped.
        cargo install cargo-fuzz --locked </dev/null ||
            say "could not install cargo-fuzz (see above); scripts/fuzz.sh will skip the targets"
    fi
fi

have cargo || say "note: cargo is not in PATH; the demo and the tests need Rust (https://rustup.rs)"
say "ready"
