#!/bin/bash
# metrics_scrape.sh - what a Prometheus scrape costs the mail (docs/
# benchmarks.md, section "Metrics"): the same smtp-source load into one
# smtpd started with --metrics, alternately without any scrape and with
# bench/scrape.py fetching /metrics every 100 ms (150 times Prometheus's
# usual 15 s) for the whole run. Each run gets a fresh root; the time
# runs from the start of smtp-source to the last file in new/. Not part
# of `make test`; no test asserts a timing.
#
#   bench/metrics_scrape.sh                  3 runs of each, 64 sessions
#   BENCH_RUNS=5 bench/metrics_scrape.sh     more runs
#   BENCH_QUICK=1 bench/metrics_scrape.sh    1 run of 1,000 messages
#   BENCH_SESSIONS="16 64" ...               other session counts
#
# Needs smtp-source (Debian's postfix; bench/run.sh installs it).
# Results: build/bench/metrics.md; work files in BENCH_DIR (default
# /var/tmp), removed at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
SMTPD=${SMTPD:-$TOP/smtpd}
OUT=${BENCH_OUT:-$TOP/build/bench}
RUNS=${BENCH_RUNS:-3}
COUNT=${BENCH_COUNT:-5000}
SESSIONS=${BENCH_SESSIONS:-64}
if [ -n "${BENCH_QUICK:-}" ]; then
    RUNS=1
    COUNT=1000
fi
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/smtpd-metrics.XXXXXX")
BASE=${BENCH_PORT:-$((12000 + $$ % 20000))}   # below the ephemeral ports
PORT=$BASE MON=$((BASE + 1)) METRICS=$((BASE + 2))
SCRAPER=

mkdir -p "$OUT"
log() { echo "$*" | tee -a "$OUT/metrics-raw.log" >&2; }
res() { echo "$*" | tee -a "$OUT/metrics.md"; }

. "$HERE/common.sh"

scraper_stop() {
    [ -n "$SCRAPER" ] || return 0
    kill -TERM "$SCRAPER" 2>/dev/null || true
    wait "$SCRAPER" 2>/dev/null || true
    SCRAPER=
}
cleanup() { scraper_stop; smtpd_stop; rm -rf "$WORK"; }
trap cleanup EXIT

count_new() { find "$1" -path '*/new/*' -type f 2>/dev/null | wc -l; }
now() { date +%s.%N; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "n/a") }'; }

# one_run SESSIONS yes|no: prints messages per second (run in $(...):
# the servers it starts are stopped before it returns)
one_run() {
    local sessions=$1 scrape=$2 root t0 t1 got i
    root=$(mktemp -d "$WORK/root.XXXXXX")     # $(one_run) is a subshell
    smtpd_launch "$root" u "$MON" --metrics "127.0.0.1:$METRICS" \
        -l "$WORK/smtpd.log" >&2
    if [ "$scrape" = yes ]; then
        /usr/bin/python3 "$HERE/scrape.py" --port "$METRICS" --interval 0.1 \
            >>"$OUT/metrics-raw.log" 2>&1 &
        SCRAPER=$!
    fi
    t0=$(now)
    timeout 900 smtp-source -s "$sessions" -m "$COUNT" -l 1024 \
        -f bench@localhost -t u@localhost -M localhost "127.0.0.1:$PORT" \
        >>"$OUT/metrics-raw.log" 2>&1
    for i in $(seq 18000); do
        got=$(count_new "$root")
        [ "$got" -ge "$COUNT" ] && break
        sleep 0.02
    done
    t1=$(now)
    scraper_stop
    smtpd_stop
    [ "$got" -eq "$COUNT" ] || { log "$got files in new/, expected $COUNT"; return 1; }
    awk -v n="$COUNT" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", n / (b - a) }'
}

# cpu_ticks PID: user + system clock ticks the process used so far
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The loop's CPU per scrape: an idle server scraped back to back for 10 s.
scrape_cost() {
    local root c0 c1 n hz
    root=$(mktemp -d "$WORK/root.XXXXXX")
    smtpd_launch "$root" u "$MON" --metrics "127.0.0.1:$METRICS" \
        -l "$WORK/smtpd.log" >&2
    c0=$(cpu_ticks "$SMTPD_PID")
    n=$(/usr/bin/python3 "$HERE/scrape.py" --port "$METRICS" --interval 0 \
        --seconds 10 | tee -a "$OUT/metrics-raw.log" | sed 's/^scrapes=\([0-9]*\).*/\1/')
    c1=$(cpu_ticks "$SMTPD_PID")
    smtpd_stop
    hz=$(getconf CLK_TCK)
    res "Back to back on an idle server: $n scrapes in 10 s, $(awk -v t=$((c1 - c0)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.0f", t / hz / n * 1e6 }') µs of smtpd's CPU each (user + system, /proc/PID/stat)."
}

command -v smtp-source >/dev/null || { echo "needs smtp-source (apt-get install postfix)" >&2; exit 1; }
: >"$OUT/metrics.md"
res "## Metrics: the mail with and without a scrape every 100 ms, 1 KB, msg/s (median of $RUNS, alternating)"
res ""
res "| sessions | no scrape | scrape every 100 ms | ratio |"
res "|---:|---:|---:|---:|"
for s in $SESSIONS; do
    off="" on=""
    for i in $(seq "$RUNS"); do
        a=$(one_run "$s" no)
        b=$(one_run "$s" yes)
        log "sessions=$s run $i: no scrape $a, scraping $b"
        off="$off $a" on="$on $b"
    done
    a=$(echo "$off" | median) b=$(echo "$on" | median)
    res "| $s | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }') |"
done
res ""
scrape_cost
res ""
res "Command: \`smtp-source -s SESSIONS -m $COUNT -l 1024 -f bench@localhost -t u@localhost -M localhost 127.0.0.1:PORT\` to \`smtpd --metrics 127.0.0.1:PORT2\`, and with \`bench/scrape.py --port PORT2 --interval 0.1\` running for the whole load; timed until the last file is in \`new/\`. Scrape latencies: \`build/bench/metrics-raw.log\`."
