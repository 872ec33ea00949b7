#!/usr/bin/env bash
# smtpd and Postfix side by side with TLS (docs/benchmarks.md section 8):
# bench/tlsload, STARTTLS and a full handshake for every message, one
# connection per message, 1 KB, at 1, 16 and 64 sessions; both servers
# durable. A run lasts SECONDS; its rate is the files in new/ once the
# last one has arrived (Postfix delivers after its 250), divided by the
# time from the start to that last file.
#
#   make && make build/bench/tlsload build/demo-tls/cert.pem
#   bench/tls_vs_postfix.sh [SECONDS]
#
# Needs root and Debian's postfix (bench/run.sh installs it).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/.." && pwd)
RUN_SECONDS=${1:-8}
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/smtpd-tlsbench.XXXXXX")
chmod 755 "$WORK"
CERT=$TOP/build/demo-tls/cert.pem
KEY=$TOP/build/demo-tls/key.pem
PORT=$((21000 + $$ % 9000))
PF_PORT=$((PORT + 2))
SMTPD_PID=

cleanup() {
    [ -n "$SMTPD_PID" ] && kill "$SMTPD_PID" 2>/dev/null || true
    "$HERE/postfix.sh" stop "$WORK/pf" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

count() { find "$1" -type f 2>/dev/null | wc -l; }

now() { date +%s.%N; }

# Waits until the number of files in $1 has not grown for 2 s; prints
# that number and the time of its last growth.
settle() {
    local n last=-1 t_last
    t_last=$(now)
    while :; do
        n=$(count "$1")
        if [ "$n" != "$last" ]; then
            last=$n
            t_last=$(now)
        elif awk -v a="$t_last" -v b="$(now)" 'BEGIN { exit !(b - a > 2) }'; then
            break
        fi
        sleep 0.1
    done
    echo "$last $t_last"
}

# run PORT SESSIONS NEWDIR: prints the messages/s of the files it added.
run() {
    local t0 before n t1
    before=$(count "$3")
    t0=$(now)
    "$TOP/build/bench/tlsload" -p "$1" -c "$2" -s "$RUN_SECONDS" \
        -r u@localhost >/dev/null
    read -r n t1 < <(settle "$3")
    awk -v n="$n" -v b="$before" -v a="$t0" -v z="$t1" \
        'BEGIN { printf "%.0f\n", (n - b) / (z - a) }'
}

. "$HERE/common.sh"
SMTPD=$TOP/smtpd

smtpd_start() {
    smtpd_launch "$WORK/smtpd.$1" u $((PORT + 1)) \
        --tls-cert "$CERT" --tls-key "$KEY"
}

mkdir -p "$WORK/pf"
PF_TLS_CERT=$CERT PF_TLS_KEY=$KEY "$HERE/postfix.sh" start "$WORK/pf" \
    "$PF_PORT" localhost u
echo "| sessions | smtpd msg/s | Postfix msg/s | smtpd/Postfix |"
echo "|---:|---:|---:|---:|"
for s in 1 16 64; do
    smtpd_start "$s"
    a=$(run "$PORT" "$s" "$WORK/smtpd.$s/u/new")
    smtpd_stop
    b=$(run "$PF_PORT" "$s" "$WORK/pf/mail/u/new")
    awk -v s="$s" -v a="$a" -v b="$b" \
        'BEGIN { printf "| %d | %d | %d | %.1f× |\n", s, a, b, a / b }'
done
