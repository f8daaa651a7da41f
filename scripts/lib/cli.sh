# What every script of scripts/ says and checks the same way. Source it after setting PROG
# (the script's name in messages, e.g. bench-ab):
#
#   die_usage MESSAGE   a usage error: the message, a pointer to --help, exit 2
#   die MESSAGE         a failure: the message, exit 1
#   say MESSAGE         progress, on stderr
#   is_uint VALUE       whether VALUE is a positive integer
#   login_user          the account the private sshd logs in as: as root CONN_TEST_USER
#                       (default conntest, the /bin/sh account scripts/setup.sh makes: sshd
#                       refuses root logins here and root's shell start-up may be slow), after
#                       checking it and /run/sshd; else oneself (a non-root sshd logs in only
#                       its own user). SETUP_HINT, if set, ends its messages.

die_usage() {
    echo "$PROG: $*" >&2
    echo "$PROG: see scripts/$PROG.sh --help" >&2
    exit 2
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

say() { printf '==> %s\n' "$*" >&2; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ]; }

login_user() {
    local user="${CONN_TEST_USER:-conntest}" hint="${SETUP_HINT:-run scripts/setup.sh}"
    if [ "$(id -u)" -eq 0 ]; then
        id "$user" >/dev/null 2>&1 || die "no login account $user; $hint"
        [ "$(getent passwd "$user" | cut -d: -f7)" = /bin/sh ] ||
            die "the login shell of $user is not /bin/sh; $hint"
        if getent shadow "$user" | cut -d: -f2 | grep -q '^!'; then
            die "$user is locked (sshd without PAM refuses its key logins); $hint"
        fi
        [ -d /run/sshd ] || die "no /run/sshd (sshd's privilege-separation directory); $hint"
        echo "$user"
    else
        id -un # a non-root sshd logs in only its own user
    fi
}
