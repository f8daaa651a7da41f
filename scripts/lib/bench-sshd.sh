# shellcheck shell=bash
# A private loopback sshd and N ssh_config aliases of it, for the fleet benchmarks
# (scripts/bench-fleet.sh, scripts/bench-scale.sh): sourced, not run. Throwaway keys in a temp
# dir, a free port, one sshd per key exchange (set on both sides: sshd_config and ssh_config),
# and the cleanup of everything a benchmark started (its sshd, every ssh master under its temp
# dir, its cgroups). Nothing is installed and no account is created here.
#
# The caller sets, before sourcing: BENCH_NAME (for messages and file headers), HOSTS, FANOUT,
# CIPHER, SSHD (sshd path), PY (python3), SETUP_HINT (what to run when something is missing);
# and sources scripts/lib/cli.sh (say, die, login_user). It sources scripts/lib/sshd.sh for
# the sshd_config and ssh_config lines and the free port every private sshd shares.

# shellcheck source=scripts/lib/sshd.sh
. "$(dirname "${BASH_SOURCE[0]}")/sshd.sh"

# The temp dir (short: conn's control sockets live under it and Unix socket paths are limited;
# traversable: sshd reads authorized_keys as the login user), the keys, the aliases h001…hN,
# and with `cpu` = 1 a cgroup v2 directory of this run for CPU accounting (CG, empty without).
bench_setup() { # cpu
    WORK="$(mktemp -d /tmp/cfb.XXXXXX)"
    chmod 0755 "$WORK"
    SSHD_PID=""
    SSHD_CG=""
    CUR_PID=""
    CLEANED=0
    CG=""
    if [ "$1" -eq 1 ]; then
        local mnt
        for mnt in /sys/fs/cgroup /sys/fs/cgroup/unified; do
            if [ "$(stat -fc %T "$mnt" 2>/dev/null)" = cgroup2fs ] && [ -w "$mnt" ]; then
                CG="$mnt/conn-$BENCH_NAME.$$"
                mkdir "$CG" 2>/dev/null || CG=""
                break
            fi
        done
        [ -n "$CG" ] || say "no CPU accounting: it needs a writable cgroup v2 hierarchy (root); pass --no-cpu to silence this"
    fi
    ssh-keygen -q -t ed25519 -N '' -C "$BENCH_NAME-host" -f "$WORK/host_key" </dev/null
    ssh-keygen -q -t ed25519 -N '' -C "$BENCH_NAME-client" -f "$WORK/id_ed25519" </dev/null
    cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
    chmod 0644 "$WORK/authorized_keys"
    WIDTH=3
    [ ${#HOSTS} -gt 3 ] && WIDTH=${#HOSTS}
    HOSTLIST="h[$(alias_of 1 | cut -c2-)-$(alias_of "$HOSTS" | cut -c2-)]"
    [ "$HOSTS" -eq 1 ] && HOSTLIST="$(alias_of 1)"
    aliases >"$WORK/hosts"
}

cg_dir() { # name: creates (once) and prints the cgroup directory of name (nothing without CG)
    [ -n "$CG" ] || return 0
    [ -d "$CG/$1" ] || mkdir "$CG/$1"
    printf '%s\n' "$CG/$1"
}
cg_usage() { # dir: CPU microseconds used by the processes of dir (0 without accounting)
    if [ -n "$1" ]; then awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat"; else echo 0; fi
}

alias_of() { printf "h%0${WIDTH}d" "$1"; }
aliases() { # all aliases, one a line
    local i
    for ((i = 1; i <= HOSTS; i++)); do printf "h%0${WIDTH}d\n" "$i"; done
}

kex_line() { # kex: the KexAlgorithms line of a config, or nothing for ssh's default
    [ "$1" = default ] || echo "KexAlgorithms $1"
}

write_ssh_config() { # path kex extra-lines
    {
        echo "# written by scripts/$BENCH_NAME.sh: $HOSTS aliases of one sshd on 127.0.0.1:$PORT"
        echo "Host $(aliases | paste -sd' ' -)"
        sshd_client_options "$LOGIN_USER"
        echo "  Ciphers $CIPHER"
        [ "$2" = default ] || echo "  $(kex_line "$2")"
        [ -z "$3" ] || printf '%s\n' "$3"
    } >"$1"
    chmod 0644 "$1"
}

# Starts the private sshd of phase `tag` with key exchange `kex` (its files under $WORK/$tag,
# its client config $WORK/$tag/ssh_config) and waits until it accepts a login; sets SSHD_PID,
# PORT, SSHD_CG (its cgroup, if any) and NEGOTIATED (the key exchange a login agreed on).
start_sshd() { # tag kex
    local tag="$1" kex="$2" attempt dir="$WORK/$1"
    mkdir -p "$dir"
    chmod 0755 "$dir"
    NEGOTIATED=""
    for attempt in 1 2 3 4 5; do
        PORT="$(sshd_free_port)"
        {
            echo "# written by scripts/$BENCH_NAME.sh"
            sshd_server_options "$LOGIN_USER" "$dir"
            echo "MaxSessions $((FANOUT > 10 ? FANOUT * 2 : 20))"
            echo "MaxStartups $((FANOUT * 4 + 100)):30:$((FANOUT * 8 + 200))"
            echo "PermitUserEnvironment no"
            kex_line "$kex"
        } >"$dir/sshd_config"
        echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/host_key.pub")" >"$WORK/known_hosts"
        write_ssh_config "$dir/ssh_config" "$kex" ""
        "$SSHD" -D -e -f "$dir/sshd_config" </dev/null >>"$dir/sshd.log" 2>&1 &
        SSHD_PID=$!
        SSHD_CG="$(cg_dir "sshd-$tag")"
        [ -z "$SSHD_CG" ] || echo "$SSHD_PID" >"$SSHD_CG/cgroup.procs"
        local deadline=$((SECONDS + 10))
        while [ $SECONDS -lt $deadline ]; do
            if ! kill -0 "$SSHD_PID" 2>/dev/null; then break; fi
            if timeout 10 ssh -v -F "$dir/ssh_config" "$(alias_of 1)" true </dev/null >/dev/null 2>"$dir/probe.err"; then
                NEGOTIATED="$(sed -n 's/.*kex: algorithm: \(.*\)$/\1/p' "$dir/probe.err" | head -1)"
                return 0
            fi
            sleep 0.1
        done
        stop_sshd
        grep -q 'Address already in use' "$dir/sshd.log" 2>/dev/null || die "the private sshd did not accept a login within 10 s. sshd log: $(tail -5 "$dir/sshd.log" 2>/dev/null | tr '\n' ' ') ssh: $(grep -v '^debug' "$dir/probe.err" 2>/dev/null | tail -3 | tr '\n' ' ')"
        say "port $PORT was taken meanwhile; trying another ($attempt)"
    done
    die "no free port for the private sshd after 5 attempts"
}

# The per-connection sshd processes of the listener (one per live connection).
sshd_connections() { pgrep -c -P "$SSHD_PID" 2>/dev/null || true; }

stop_masters() { # dir: ends every ssh master whose control socket is under dir
    local s
    local -a pids=()
    while IFS= read -r s; do
        timeout 5 ssh -F /dev/null -o ControlPath="$s" -O exit x >/dev/null 2>&1 &
        pids+=($!)
    done < <(find "$1" -type s 2>/dev/null)
    [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}" 2>/dev/null || true
}

# Waits (at most 10 s) until nothing this run started under dir is left: no process names it
# (masters exit a moment after `ssh -O exit` returns).
wait_gone() { # dir
    local deadline=$((SECONDS + 10))
    while pgrep -f -- "$1/" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { say "warning: processes under $1 still alive after 10 s"; return 0; }
        sleep 0.05
    done
}

stop_sshd() {
    [ -n "$SSHD_PID" ] || return 0
    # The per-connection sshd processes are the listener's children; ending them closes any
    # master connection that is left, so its client exits too.
    pkill -KILL -P "$SSHD_PID" 2>/dev/null || true
    kill -KILL "$SSHD_PID" 2>/dev/null || true
    wait "$SSHD_PID" 2>/dev/null || true
    SSHD_PID=""
}

bench_cleanup() {
    [ "$CLEANED" -eq 1 ] && return
    CLEANED=1
    if [ -n "$CUR_PID" ]; then
        kill -TERM "$CUR_PID" 2>/dev/null || true
        wait "$CUR_PID" 2>/dev/null || true
    fi
    stop_masters "$WORK"
    stop_sshd
    # Anything still running from this run names the unique work dir on its command line
    # (ssh masters, tool processes): end those, by pid.
    local p
    for p in $(pgrep -f -- "$WORK" 2>/dev/null || true); do
        if [ "$p" != "$$" ]; then kill -KILL "$p" 2>/dev/null || true; fi
    done
    if [ -n "$CG" ] && [ -d "$CG" ]; then
        # Whatever is left in our cgroups goes back to the root one, then they are removed.
        local d
        for d in "$CG"/*/; do
            [ -d "$d" ] || continue
            for p in $(cat "$d/cgroup.procs" 2>/dev/null); do
                echo "$p" >"$(dirname "$CG")/cgroup.procs" 2>/dev/null || true
            done
            rmdir "$d" 2>/dev/null || true
        done
        rmdir "$CG" 2>/dev/null || say "warning: could not remove cgroup $CG"
    fi
    rm -rf -- "$WORK"
}

# Cleans up on exit, Ctrl-C, TERM and HUP.
bench_traps() {
    trap bench_cleanup EXIT
    trap 'echo "$BENCH_NAME: interrupted, cleaning up" >&2; bench_cleanup; exit 130' INT
    trap 'bench_cleanup; exit 143' TERM HUP
}
