# A private OpenSSH server on 127.0.0.1 for the benchmark scripts: throwaway keys in a temp
# dir, a free port, one client config with the alias `bench`. Source it, then:
#
#   sshd_workdir                  # makes $WORK (short: control sockets live under it)
#   sshd_start LOGIN_USER         # sets PORT and SSHD_PID, writes $WORK/ssh_config
#   trap sshd_cleanup EXIT        # ends every master under $WORK and the server, rm -rf $WORK
#
# Needs $SSHD (the server binary) and $PY (python3, for a free port). Every function reports
# through `die`, which the sourcing script defines.

sshd_workdir() {
    WORK="$(mktemp -d /tmp/cbs.XXXXXX)"
    chmod 0755 "$WORK" # sshd reads authorized_keys as the login user
    mkdir -m 0700 "$WORK/s" "$WORK/cm"
    SSHD_PID=""
    SSHD_CLEANED=0
}

sshd_cleanup() {
    [ "${SSHD_CLEANED:-1}" -eq 1 ] && return
    SSHD_CLEANED=1
    local s
    for s in $(find "$WORK" -type s 2>/dev/null); do
        timeout 5 ssh -F /dev/null -o ControlPath="$s" -O exit x >/dev/null 2>&1 || true
    done
    if [ -n "$SSHD_PID" ]; then
        pkill -KILL -P "$SSHD_PID" 2>/dev/null || true
        kill -KILL "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
    fi
    rm -rf -- "$WORK"
}

sshd_free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The sshd_config lines every private sshd of the scripts shares (port $PORT, the keys and
# authorized_keys under $WORK), logging in only `login_user`; its pid file goes to `dir`.
sshd_server_options() { # login_user dir
    cat <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $WORK/host_key
PidFile $2/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
LogLevel ERROR
AllowUsers $1
PermitRootLogin no
PrintMotd no
PrintLastLog no
UseDNS no
X11Forwarding no
EOF
}

# The options of an ssh_config Host block for that sshd: its port, `login_user`, the throwaway
# key, the pre-recorded host key ($WORK/known_hosts), no agent, no prompt.
sshd_client_options() { # login_user
    cat <<EOF
  HostName 127.0.0.1
  Port $PORT
  User $1
  IdentityFile $WORK/id_ed25519
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile $WORK/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  LogLevel ERROR
EOF
}

sshd_start() {
    local login_user="$1" attempt
    ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$WORK/host_key" </dev/null
    ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$WORK/id_ed25519" </dev/null
    cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
    chmod 0644 "$WORK/authorized_keys"
    for attempt in 1 2 3 4 5; do
        PORT="$(sshd_free_port)"
        {
            echo "# written by scripts/lib/sshd.sh"
            sshd_server_options "$login_user" "$WORK"
        } >"$WORK/sshd_config"
        echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/host_key.pub")" >"$WORK/known_hosts"
        {
            echo "# written by scripts/lib/sshd.sh"
            echo "Host bench"
            sshd_client_options "$login_user"
        } >"$WORK/ssh_config"
        chmod 0644 "$WORK/ssh_config"
        "$SSHD" -D -e -f "$WORK/sshd_config" </dev/null >>"$WORK/sshd.log" 2>&1 &
        SSHD_PID=$!
        local deadline=$((SECONDS + 10))
        while [ $SECONDS -lt $deadline ] && kill -0 "$SSHD_PID" 2>/dev/null; do
            if timeout 10 ssh -F "$WORK/ssh_config" bench true </dev/null >/dev/null 2>&1; then
                return 0
            fi
            sleep 0.1
        done
        kill -KILL "$SSHD_PID" 2>/dev/null || true
        wait "$SSHD_PID" 2>/dev/null || true
        SSHD_PID=""
    done
    die "sshd did not start: $(tail -5 "$WORK/sshd.log")"
}
