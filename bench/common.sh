# bench/common.sh - sourced by the benchmark scripts: waiting for a port,
# and one smtpd on loopback with its mailboxes. Uses $SMTPD and $PORT;
# sets SMTPD_PID while smtpd runs.

# wait_port PORT: until something listens on 127.0.0.1:PORT (at most
# 10 s); 1, said on stderr, if nothing does.
wait_port() {
    local i
    for i in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# smtpd_launch ROOT "BOX..." MONITOR_PORT [SMTPD_ARGS...]: makes each
# mailbox under ROOT, starts $SMTPD on $PORT with the arguments added, and
# waits until it listens.
smtpd_launch() {
    local root=$1 boxes=$2 monitor=$3 b
    shift 3
    for b in $boxes; do
        mkdir -p "$root/$b/tmp" "$root/$b/new" "$root/$b/cur"
    done
    "$SMTPD" -s "$PORT" -p "$monitor" -a 127.0.0.1 -m 127.0.0.1 \
        -f "$root" -L warning -c 20000 "$@" &
    SMTPD_PID=$!
    wait_port "$PORT"
}

smtpd_stop() {
    [ -n "${SMTPD_PID:-}" ] || return 0
    kill "$SMTPD_PID" 2>/dev/null || true
    wait "$SMTPD_PID" 2>/dev/null || true
    SMTPD_PID=
}
