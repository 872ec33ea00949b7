#!/bin/bash
# haproxy.sh - what the load balancer costs (docs/benchmarks.md, section 7):
# the same smtp-source load, in one run, alternately
#   A. straight to one smtpd,
#   B. through HAProxy (docs/haproxy.cfg, PROXY version 1 to one instance
#      and version 2 to the other) to two smtpd sharing one mailbox root,
#   C. split by hand between the same two smtpd, without HAProxy (two
#      smtp-source, half the sessions and messages each), which tells what
#      is HAProxy's and what is the second instance's.
# Each run gets a fresh root; the time runs from the start of smtp-source
# to the last file in new/. Not part of `make test`.
#
#   bench/haproxy.sh                 3 runs of each, median reported
#   BENCH_RUNS=5 bench/haproxy.sh    more runs
#   BENCH_QUICK=1 bench/haproxy.sh   a tenth of the messages, 1 run
#
# Needs smtp-source (Debian's postfix package; bench/run.sh installs it)
# and haproxy. Results: build/bench/haproxy.md; work files in BENCH_DIR
# (default /var/tmp, a disk), removed at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
SMTPD=${SMTPD:-$TOP/smtpd}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
OUT=${BENCH_OUT:-$TOP/build/bench}
RUNS=${BENCH_RUNS:-3}
COUNT=5000
SIZE=1024
SESSIONS=${BENCH_SESSIONS:-"16 64"}
if [ -n "${BENCH_QUICK:-}" ]; then
    RUNS=1
    COUNT=500
fi
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/smtpd-haproxy.XXXXXX")
BASE=${BENCH_PORT:-$((11000 + $$ % 20000))}   # below the ephemeral ports
P1=$BASE P2=$((BASE + 1)) LB=$((BASE + 2)) M1=$((BASE + 3)) M2=$((BASE + 4))
PIDS=()
SEQ=0

mkdir -p "$OUT"
log() { echo "$*" | tee -a "$OUT/haproxy-raw.log" >&2; }
res() { echo "$*" | tee -a "$OUT/haproxy.md"; }

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT

. "$HERE/common.sh"

# waits for the smtp-source jobs, not for the servers (in PIDS)
wait_sources() {
    local pid
    for pid in $(jobs -p); do
        case " ${PIDS[*]} " in *" $pid "*) ;; *) wait "$pid" || true ;; esac
    done
}

count_new() { find "$1" -path '*/new/*' -type f 2>/dev/null | wc -l; }
now() { date +%s.%N; }

# smtpd PORT MONITOR ROOT [ARGS...]
start_smtpd() {
    local port=$1 mon=$2 root=$3
    shift 3
    "$SMTPD" -a 127.0.0.1 -s "$port" -p "$mon" -f "$root" -u u:x -L warning \
        -l "$WORK/smtpd-$port.log" "$@" &
    PIDS+=($!)
}

start_haproxy() {
    sed -e "s/@LISTEN@/127.0.0.1:$LB/" -e "s/@SMTPD1@/127.0.0.1:$P1/" \
        -e "s/@SMTPD2@/127.0.0.1:$P2/" -e "s/@DOMAIN@/bench.test/" \
        "$TOP/docs/haproxy.cfg" > "$WORK/haproxy.cfg"
    "$HAPROXY" -db -f "$WORK/haproxy.cfg" >>"$OUT/haproxy-raw.log" 2>&1 &
    PIDS+=($!)
}

source_to() {   # PORT SESSIONS MESSAGES
    timeout 900 smtp-source -s "$2" -m "$3" -l "$SIZE" \
        -f bench@localhost -t u@localhost -M localhost "127.0.0.1:$1" \
        >>"$OUT/haproxy-raw.log" 2>&1 || log "smtp-source failed on $1"
}

# load "PORT..." SESSIONS ROOT: the load split evenly over the ports; sets
# RATE, messages per second stored in new/
RATE=0
load() {
    local ports=($1) sessions=$2 root=$3 t0 t1 got port
    local n=${#ports[@]}
    t0=$(now)
    for port in "${ports[@]}"; do
        source_to "$port" $((sessions / n)) $((COUNT / n)) &
    done
    wait_sources
    while got=$(count_new "$root"); [ "$got" -lt "$COUNT" ]; do
        if [ "$(echo "$(now) - $t0 > 120" | bc)" = 1 ]; then
            log "only $got of $COUNT stored"
            break
        fi
        sleep 0.02
    done
    t1=$(now)
    RATE=$(echo "scale=0; $got / ($t1 - $t0)" | bc)
}

run_direct() {
    SEQ=$((SEQ + 1))
    local root=$WORK/root.$SEQ
    start_smtpd "$P1" "$M1" "$root"
    wait_port "$P1"
    load "$P1" "$1" "$root"
    stop_all
}

run_split() {
    SEQ=$((SEQ + 1))
    local root=$WORK/root.$SEQ
    start_smtpd "$P1" "$M1" "$root"
    start_smtpd "$P2" "$M2" "$root"
    wait_port "$P1"
    wait_port "$P2"
    load "$P1 $P2" "$1" "$root"
    stop_all
}

run_balanced() {
    SEQ=$((SEQ + 1))
    local root=$WORK/root.$SEQ
    start_smtpd "$P1" "$M1" "$root" --proxy-from 127.0.0.1
    start_smtpd "$P2" "$M2" "$root" --proxy-from 127.0.0.1
    wait_port "$P1"
    wait_port "$P2"
    start_haproxy
    wait_port "$LB"
    sleep 1     # first health checks
    load "$LB" "$1" "$root"
    stop_all
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

command -v smtp-source >/dev/null || { echo "smtp-source missing (apt-get install postfix)" >&2; exit 1; }
[ -x "$HAPROXY" ] || { echo "haproxy missing (apt-get install haproxy)" >&2; exit 1; }
[ -x "$SMTPD" ] || { echo "build smtpd first (make)" >&2; exit 1; }
: > "$OUT/haproxy.md"
log "== $(date -Is) $(nproc) CPUs, $COUNT x $SIZE B, runs $RUNS, work in $WORK"
res "## HAProxy's cost: $COUNT messages of $SIZE bytes, msg/s stored (median of $RUNS, alternating)"
res ""
res "| sessions | A. straight to one smtpd | B. HAProxy to two smtpd | C. two smtpd, load split by hand | runs (A / B / C) |"
res "|---|---|---|---|---|"
for s in $SESSIONS; do
    direct="" balanced="" split=""
    for r in $(seq "$RUNS"); do
        run_direct "$s"
        d=$RATE
        run_balanced "$s"
        b=$RATE
        run_split "$s"
        c=$RATE
        log "sessions $s run $r: straight $d, HAProxy $b, split $c"
        direct="$direct $d" balanced="$balanced $b" split="$split $c"
    done
    res "| $s | $(echo "$direct" | median) | $(echo "$balanced" | median) | $(echo "$split" | median) | ${direct# } / ${balanced# } / ${split# } |"
done
res ""
res "Command: \`smtp-source -s SESSIONS -m $COUNT -l $SIZE -f bench@localhost -t u@localhost -M localhost 127.0.0.1:PORT\`, one connection per message, timed until the last file is in \`new/\`; \`bench/haproxy.sh\`."
