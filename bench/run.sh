#!/bin/bash
# run.sh - the whole benchmark (`make bench`, docs/benchmarks.md): smtpd
# against a private Postfix under the same smtp-source loads, the disk's
# fsync ceiling, 10,000 held clients, throughput vs idle clients, and the
# resident memory of a 100 MB message. Not part of `make test`.
#
#   bench/run.sh                  3 runs of everything, medians reported
#   BENCH_RUNS=5 bench/run.sh     more runs
#   BENCH_QUICK=1 bench/run.sh    a tenth of the messages, 1 run (smoke test)
#   BENCH_ONLY="neighbour tls" bench/run.sh
#                                 only these sections (after the machine
#                                 header), in the usual order; names:
#                                 throughput neighbour journal
#                                 journal_probe ceiling sink
#                                 held_clients curve large_message tls
#                                 metrics limits logins chunking
#                                 addresses.
#                                 Postfix is started only for throughput,
#                                 neighbour and journal (tls starts its own)
#   NOISE_MB=8 bench/run.sh       smaller neighbours (bench/neighbour.sh)
#
# Results: build/bench/results.md (tables), build/bench/raw.log (every
# run), build/bench/throughput-vs-clients.png (the curve). Work files go
# to BENCH_DIR (default /var/tmp: must be a disk, not tmpfs) and are
# removed at the end. Needs root (Postfix's delivery runs as nobody).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
SMTPD=${SMTPD:-$TOP/smtpd}
OUT=${BENCH_OUT:-$TOP/build/bench}
RUNS=${BENCH_RUNS:-3}
SCALE=1
if [ -n "${BENCH_QUICK:-}" ]; then
    RUNS=1
    SCALE=10
fi

# BENCH_ONLY: the sections to run (space-separated); empty or unset, all.
SECTIONS="throughput neighbour journal journal_probe ceiling sink held_clients curve large_message tls metrics limits logins chunking addresses"
wanted() {
    [ -z "${BENCH_ONLY:-}" ] && return 0
    case " $BENCH_ONLY " in *" $1 "*) return 0 ;; esac
    return 1
}

check_only() {
    local name
    for name in ${BENCH_ONLY:-}; do
        case " $SECTIONS " in
            *" $name "*) ;;
            *) echo "run.sh: BENCH_ONLY: no section '$name' (sections: $SECTIONS)" >&2; exit 1 ;;
        esac
    done
}
check_only

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/smtpd-bench.XXXXXX")
chmod 755 "$WORK"     # Postfix runs as postfix and nobody in there
PORT=${BENCH_PORT:-$((10000 + $$ % 20000))}   # below the ephemeral ports
PF_PORT=$((PORT + 1))
MON_PORT=$((PORT + 2))
BOXES="u 1u 2u 3u 4u 5u 6u 7u 8u 9u 10u"   # smtp-source -r 10: u, 2u .. 10u
SRC="smtp-source -f bench@localhost -t u@localhost -M localhost"
SMTPD_PID=
LOADGEN_PID=
RATE=
ROOT=
NOISE_PID=
NOOP_PID=
SMTPD_ARGS=      # more smtpd arguments for smtpd_start (the journal section)
PY=/usr/bin/python3
PF_DIR=$WORK/postfix
PF_UP=

log() { echo "$*" | tee -a "$OUT/raw.log" >&2; }
res() { echo "$*" | tee -a "$OUT/results.md"; }

# ---- tools ------------------------------------------------------------

# Debian's postfix brings smtp-source; installed without starting its
# daemon (policy-rc.d says no) and left unconfigured.
install_tools() {
    local pkgs=""
    [ -x /usr/sbin/smtp-source ] || pkgs="postfix"
    command -v gnuplot >/dev/null || pkgs="$pkgs gnuplot-nox"
    [ -z "$pkgs" ] && return 0
    log "installing $pkgs"
    apt-get update -qq
    local had_policy=
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    [ -n "$had_policy" ] || { echo 'exit 101' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null || {
        [ -n "$had_policy" ] || rm -f /usr/sbin/policy-rc.d
        return 1
    }
    [ -n "$had_policy" ] || rm -f /usr/sbin/policy-rc.d
}

build_tools() {
    cc -std=c11 -O2 -D_GNU_SOURCE "$HERE/loadgen.c" -o "$OUT/loadgen"
    cc -O2 -D_GNU_SOURCE -pthread "$HERE/fsync_ceiling.c" -o "$OUT/fsync_ceiling"
    cc -O2 -D_GNU_SOURCE -pthread "$HERE/batch_flush.c" -o "$OUT/batch_flush"
    cc -std=c11 -O2 -D_GNU_SOURCE -pthread "$HERE/chunkload.c" -o "$OUT/chunkload"
    cc -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -I"$TOP/include" \
        "$HERE/journal_probe.c" "$TOP/maildir_sha256.c" -o "$OUT/journal_probe"
}

# ---- processes --------------------------------------------------------

cleanup() {
    [ -n "$LOADGEN_PID" ] && kill "$LOADGEN_PID" 2>/dev/null || true
    if [ -n "$NOOP_PID" ]; then
        touch "$WORK/noop.stop"
        kill "$NOOP_PID" 2>/dev/null || true
        wait "$NOOP_PID" 2>/dev/null || true
    fi
    [ -n "$NOISE_PID" ] && noise_stop
    smtpd_stop
    [ -n "$PF_UP" ] && "$HERE/postfix.sh" stop "$PF_DIR" || true
    rm -rf "$WORK"
}

. "$HERE/common.sh"

# A fresh mailbox root with every box of BOXES, then smtpd on it. Old
# roots stay until the end: deleting thousands of files just before a run
# makes ext4's inode allocator skip the recently deleted inodes one by one
# (recently_deleted(), up to a third of smtpd's CPU time in perf).
ROOT_SEQ=0
new_root() {
    ROOT_SEQ=$((ROOT_SEQ + 1))
    ROOT=$WORK/smtpd-root.$ROOT_SEQ
}

smtpd_start() {
    smtpd_launch "$1" "$BOXES" "$MON_PORT" -l "$WORK/smtpd.log" \
        -z 209715200 -T 900 $SMTPD_ARGS
}

rss_kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# ---- measuring ----------------------------------------------------------

now() { date +%s.%N; }
count_new() { find "$1" -path '*/new/*' -type f 2>/dev/null | wc -l; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "n/a") }'; }

# Sends COUNT messages and waits until COUNT*RCPTS files are in new/ under
# ROOT; sets RATE to messages per second (elapsed until the last file
# landed). Not run in a subshell, so that the PIDs stay known to cleanup.
deliver() {
    local port=$1 root=$2 sessions=$3 size=$4 rcpts=$5 count=$6
    local want=$((count * rcpts)) t0 t1 got i
    t0=$(now)
    timeout 900 $SRC -s "$sessions" -m "$count" -l "$size" -r "$rcpts" "127.0.0.1:$port" \
        >>"$OUT/raw.log" 2>&1 || { log "smtp-source failed on port $port"; return 1; }
    for i in $(seq 18000); do
        got=$(count_new "$root")
        [ "$got" -ge "$want" ] && break
        sleep 0.02
    done
    t1=$(now)
    if [ "$got" -ne "$want" ]; then
        log "port $port: $got files in new/, expected $want"
        return 1
    fi
    RATE=$(awk -v n="$count" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
}

smtpd_run() {
    new_root
    smtpd_start "$ROOT"
    deliver "$PORT" "$ROOT" "$@"
    smtpd_stop
}

# Postfix's virtual agent makes the Maildirs on first delivery: a fresh,
# empty base per run (the old one moved aside, not deleted; see new_root).
pf_run() {
    ROOT_SEQ=$((ROOT_SEQ + 1))
    mv "$PF_DIR/mail" "$PF_DIR/mail.$ROOT_SEQ"
    mkdir "$PF_DIR/mail"
    chown nobody:nogroup "$PF_DIR/mail"
    deliver "$PF_PORT" "$PF_DIR/mail" "$@"
}

# ---- 1+2: throughput, side by side -------------------------------------

throughput() {
    local sessions size rcpts count label a b s p i
    res "## Throughput: smtpd and Postfix, same load, messages/s (median of $RUNS)"
    res ""
    res "| load | sessions | messages | smtpd msg/s | Postfix msg/s | smtpd/Postfix |"
    res "|---|---:|---:|---:|---:|---:|"
    for spec in "1024 1 1KB" "102400 1 100KB" "1024 10 1KB×10rcpt"; do
        read -r size rcpts label <<<"$spec"
        for sessions in 1 16 64; do
            count=$(( (sessions == 1 ? 1000 : 5000) / (size > 1024 || rcpts > 1 ? 2 : 1) / SCALE ))
            s="" p=""
            for i in $(seq "$RUNS"); do
                smtpd_run "$sessions" "$size" "$rcpts" "$count"
                a=$RATE
                pf_run "$sessions" "$size" "$rcpts" "$count"
                b=$RATE
                log "throughput $label s=$sessions m=$count run $i: smtpd $a postfix $b"
                s="$s $a" p="$p $b"
            done
            a=$(echo "$s" | median) b=$(echo "$p" | median)
            res "| $label | $sessions | $count | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f×", a / b }') |"
            echo "$label $sessions $a $b" >>"$OUT/throughput.dat"
        done
    done
    res ""
    res "Command: \`smtp-source -s SESSIONS -m MESSAGES -l SIZE -r RCPTS -f bench@localhost -t u@localhost -M localhost 127.0.0.1:PORT\`, one connection per message, timed until the last file is in \`new/\` (files counted = messages × recipients)."
    res ""
}

# The load generator's own ceiling: Postfix's smtp-sink stores nothing.
sink() {
    local sessions i t0 t1 rates pid m=$((5000 / SCALE)) port=$((PORT + 3))
    res "## Load generator ceiling: smtp-source into smtp-sink (stores nothing), 1 KB, msg/s (median of $RUNS)"
    res ""
    res "| sessions | msg/s |"
    res "|---:|---:|"
    smtp-sink -u nobody -c "127.0.0.1:$port" 1000 >/dev/null 2>&1 &
    pid=$!
    wait_port "$port"
    for sessions in 1 16 64; do
        rates=""
        for i in $(seq "$RUNS"); do
            t0=$(now)
            timeout 300 $SRC -s "$sessions" -m "$m" -l 1024 "127.0.0.1:$port" >>"$OUT/raw.log" 2>&1
            t1=$(now)
            rates="$rates $(awk -v n="$m" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')"
        done
        log "sink s=$sessions:$rates"
        res "| $sessions | $(echo "$rates" | median) |"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    res ""
    res "Command: \`smtp-sink -u nobody -c 127.0.0.1:PORT 1000\` and \`smtp-source -s SESSIONS -m $m -l 1024 ...\`."
    res ""
}

# ---- the trade-off of syncfs: another writer on the same filesystem ----

. "$HERE/neighbour.sh"
. "$HERE/journal.sh"

# 1 KB at 16 and 64 sessions, smtpd and Postfix alternating, on a quiet
# disk and next to each kind of neighbour (bench/neighbour.sh); then the
# NOOP round trips on one more connection to smtpd during a 64-session
# load, quiet and next to the rewrite neighbour.
neighbour() {
    local sessions kind i a b sq pq m
    res "## Sharing the disk: quiet, and next to a busy neighbour, 1 KB, msg/s (median of $RUNS)"
    res ""
    res "| sessions | neighbour | smtpd | Postfix | smtpd/Postfix |"
    res "|---:|---|---:|---:|---:|"
    for sessions in 16 64; do
        m=$(( (sessions == 16 ? 3000 : 5000) / SCALE ))
        for kind in none rewrite stream; do
            [ "$kind" = none ] || noise_start "$kind"
            sq="" pq=""
            for i in $(seq "$RUNS"); do
                smtpd_run "$sessions" 1024 1 "$m"
                a=$RATE
                pf_run "$sessions" 1024 1 "$m"
                b=$RATE
                log "neighbour=$kind s=$sessions m=$m run $i: smtpd $a postfix $b"
                sq="$sq $a" pq="$pq $b"
            done
            [ "$kind" = none ] || noise_stop
            a=$(echo "$sq" | median) b=$(echo "$pq" | median)
            res "| $sessions | $kind | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f×", a / b }') |"
        done
    done
    res ""
    res "Neighbours, on the same filesystem, never synced by themselves: *rewrite* is \`$(noise_describe rewrite)\`; *stream* is \`$(noise_describe stream)\`. Each starts a second before the first run of its rows and stops after the last. Load as in the throughput table, $((3000 / SCALE)) messages at 16 sessions and $((5000 / SCALE)) at 64."
    res ""
    batch_ways
    noop_latency
}

# What one committer batch of 16 files costs each way, quiet and next to
# the rewrite neighbour (bench/batch_flush.c): the disk under the server.
batch_ways() {
    local dev kind
    dev=$(lsblk -no PKNAME "$(df --output=source "$WORK" | tail -1)" 2>/dev/null | head -1)
    [ -n "$dev" ] || dev=$(basename "$(df --output=source "$WORK" | tail -1)")
    res "## One batch of 16 files of 1 KB to 4 mailboxes, each way of making it durable"
    res ""
    for kind in none rewrite; do
        [ "$kind" = none ] || noise_start "$kind"
        res "Neighbour: $kind"
        res ""
        res '```'
        "$OUT/batch_flush" "$WORK" $((2000 / SCALE)) 16 4 "$dev" | tee -a "$OUT/results.md"
        res '```'
        res ""
        [ "$kind" = none ] || noise_stop
    done
    res "Command: \`build/bench/batch_flush DIR $((2000 / SCALE)) 16 4 $dev\` (flushes: requests completed by /sys/block/$dev, all programs' together)."
    res ""
}

# One connection to smtpd sending NOOPs (bench/noop_latency.py) for as
# long as a 64-session load lasts: does the event loop stall? Sets
# NOOP_LINE to its summary line and NOOP_HIST to its histogram line.
# noop_run KIND MESSAGES [TAG]: every latency to noop-TAG.ms (TAG: KIND).
NOOP_LINE=
NOOP_HIST=
noop_run() {
    local kind=$1 m=$2 tag=${3:-$1} st=0
    new_root
    smtpd_start "$ROOT"
    [ "$kind" = none ] || noise_start "$kind"
    rm -f "$WORK/noop.stop" "$WORK/noop.ready"
    "$PY" "$HERE/noop_latency.py" --host 127.0.0.1 --port "$PORT" \
        --seconds 900 --stop-file "$WORK/noop.stop" --interval 0.001 \
        --ready-file "$WORK/noop.ready" \
        --out "$OUT/noop-$tag.ms" >"$WORK/noop.out" 2>&1 &
    NOOP_PID=$!
    # The load starts once the client is past EHLO (at most 10 s).
    for _ in $(seq 200); do
        [ -e "$WORK/noop.ready" ] && break
        kill -0 "$NOOP_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ -e "$WORK/noop.ready" ] || { log "noop_latency.py not ready: $(cat "$WORK/noop.out")"; return 1; }
    deliver "$PORT" "$ROOT" 64 1024 1 "$m"
    touch "$WORK/noop.stop"
    wait "$NOOP_PID" || st=$?
    NOOP_PID=
    [ "$kind" = none ] || noise_stop
    smtpd_stop
    cat "$WORK/noop.out" >>"$OUT/raw.log"
    log "noop neighbour=$kind: smtpd $RATE msg/s, $(head -1 "$WORK/noop.out")"
    [ "$st" -eq 0 ] || { log "noop_latency.py exited $st"; return 1; }
    NOOP_LINE=$(grep '^noops=' "$WORK/noop.out")
    NOOP_HIST=$(sed -n 's/^histogram_ms //p' "$WORK/noop.out")
}

noop_latency() {
    local kind m=$((5000 / SCALE)) line rows="" hists="" f
    res "## Event loop stalls: NOOP round trips during a 64-session 1 KB load on smtpd (one run each)"
    res ""
    res "| neighbour | smtpd msg/s | NOOPs | failed | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
    res "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for kind in none rewrite; do
        noop_run "$kind" "$m"
        line="| $kind | $RATE"
        for f in noops failures p50 p90 p99 p99.9 max; do
            line="$line | $(echo "$NOOP_LINE" | tr ' ' '\n' | awk -F= -v k="$f" '$1 == k { print $2 }')"
        done
        rows="$rows$line |"$'\n'
        hists="$hists| $kind | $(echo "$NOOP_HIST" | tr ' ' '\n' | cut -d: -f2 | paste -sd'|' | sed 's/|/ | /g') |"$'\n'
    done
    printf '%s' "$rows" | tee -a "$OUT/results.md"
    res ""
    res "NOOPs per latency bucket:"
    res ""
    res "| neighbour | <1 ms | <2 | <5 | <10 | <20 | <50 | <100 | <200 | ≥200 |"
    res "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s' "$hists" | tee -a "$OUT/results.md"
    res ""
    res "Command: \`smtp-source -s 64 -m $m -l 1024 ...\` to smtpd and, on one more connection from just before the load (once past EHLO) until the last file is in \`new/\`, \`bench/noop_latency.py --port PORT --interval 0.001\` (EHLO, then NOOPs one at a time, 1 ms apart so that the client does not take a CPU from the load; any stall longer than that is seen). A NOOP unanswered for 10 s counts as failed. Every latency: \`build/bench/noop-none.ms\`, \`noop-rewrite.ms\`."
    res ""
}

# ---- 3: the disk's ceiling ----------------------------------------------

ceiling() {
    local i one="" two="" grp=""
    for i in $(seq "$RUNS"); do
        "$OUT/fsync_ceiling" "$WORK" $((2000 / SCALE)) 1024 >"$WORK/ceiling.out"
        cat "$WORK/ceiling.out" >>"$OUT/raw.log"
        one="$one $(awk '/^\(a\)/ { print $(NF-5) }' "$WORK/ceiling.out")"
        two="$two $(awk '/^\(b\)/ { print $(NF-5) }' "$WORK/ceiling.out")"
        grp="$grp $(awk '/^\(c\)/ { print $(NF-5) }' "$WORK/ceiling.out")"
    done
    res "## Disk ceiling, same filesystem (median of $RUNS)"
    res ""
    res "| method | files/s |"
    res "|---|---:|"
    res "| create+write 1 KB+fsync+rename+fsync(dir), 1 thread | $(echo "$one" | median) |"
    res "| the same, 2 threads, 2 Maildirs | $(echo "$two" | median) |"
    res "| batches of 64: write, syncfs, rename, syncfs | $(echo "$grp" | median) |"
    res ""
    res "Command: \`build/bench/fsync_ceiling $WORK $((2000 / SCALE)) 1024\`"
    res ""
    echo "$(echo "$one" | median) $(echo "$two" | median)" >"$OUT/ceiling.dat"
}

# ---- 4: held clients ------------------------------------------------------

# Starts loadgen holding N clients; waits for READY. Output in $WORK/lg.out.
loadgen_start() {
    local i
    "$OUT/loadgen" -p "$PORT" -n "$1" -t 900 ${2:-} >"$WORK/lg.out" 2>&1 &
    LOADGEN_PID=$!
    for i in $(seq 1200); do
        grep -q READY "$WORK/lg.out" && break
        kill -0 "$LOADGEN_PID" 2>/dev/null || break
        sleep 0.05
    done
    grep -q "greeted=$1 failed=0" "$WORK/lg.out" || { log "loadgen: $(cat "$WORK/lg.out")"; return 1; }
}

loadgen_stop() {
    kill "$LOADGEN_PID" 2>/dev/null || true
    wait "$LOADGEN_PID" 2>/dev/null || true
    LOADGEN_PID=
}

held_clients() {
    local n=$((10000 / SCALE)) i before after ms per msl="" perl="" conl=""
    for i in $(seq "$RUNS"); do
        new_root
        smtpd_start "$ROOT"
        sleep 0.2
        before=$(rss_kib "$SMTPD_PID" VmRSS)
        loadgen_start "$n" -P
        after=$(rss_kib "$SMTPD_PID" VmRSS)
        ms=$(sed -n 's/^probe_ms=\([0-9.]*\).*/\1/p' "$WORK/lg.out")
        per=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')
        log "held $n run $i: $(tr '\n' ' ' <"$WORK/lg.out") rss $before -> $after KiB"
        loadgen_stop
        smtpd_stop
        msl="$msl $ms" perl="$perl $per"
        conl="$conl $(sed -n 's/.*connect_s=\([0-9.]*\).*/\1/p' "$WORK/lg.out")"
    done
    res "## $n clients held (median of $RUNS)"
    res ""
    res "| all greeted | time to connect+greet all (s) | one more client: EHLO..QUIT (ms) | smtpd RSS per held client (KiB) |"
    res "|---|---:|---:|---:|"
    res "| yes | $(echo "$conl" | median) | $(echo "$msl" | median) | $(echo "$perl" | median) |"
    res ""
    res "Command: \`build/bench/loadgen -p PORT -n $n -P\` against a fresh \`smtpd -c 20000\`; RSS is VmRSS from /proc/PID/status before and after."
    res ""
}

# Delivered messages/s from 16 sessions while N idle clients are held.
curve() {
    local n i r rates m=$((5000 / SCALE))
    res "## Throughput vs idle clients held (16 sessions, 1 KB, median of $RUNS)"
    res ""
    res "| idle clients | smtpd msg/s |"
    res "|---:|---:|"
    : >"$OUT/curve.dat"
    for n in 0 10 100 1000 5000 10000; do
        [ "$n" -le $((10000 / SCALE)) ] || continue
        rates=""
        for i in $(seq "$RUNS"); do
            new_root
            smtpd_start "$ROOT"
            [ "$n" -eq 0 ] || loadgen_start "$n"
            deliver "$PORT" "$ROOT" 16 1024 1 "$m"
            r=$RATE
            [ "$n" -eq 0 ] || loadgen_stop
            smtpd_stop
            log "curve idle=$n run $i: $r"
            rates="$rates $r"
        done
        res "| $n | $(echo "$rates" | median) |"
        echo "$n $(echo "$rates" | median)" >>"$OUT/curve.dat"
    done
    res ""
    res "Command: \`build/bench/loadgen -p PORT -n N\` holding, then \`smtp-source -s 16 -m $m -l 1024 ...\`."
    res ""
    if command -v gnuplot >/dev/null; then
        gnuplot -e "datafile='$OUT/curve.dat'; outfile='$OUT/throughput-vs-clients.png'" \
            "$HERE/plot.gp" || log "gnuplot failed"
    fi
}

# ---- 5: a 100 MB message ---------------------------------------------------

large_message() {
    local i before hwm peak rss growths="" size=$((104857600 / SCALE))
    for i in $(seq "$RUNS"); do
        new_root
        smtpd_start "$ROOT"
        deliver "$PORT" "$ROOT" 1 1024 1 1   # warm-up
        before=$(rss_kib "$SMTPD_PID" VmRSS)
        peak=$before
        $SRC -s 1 -m 1 -l "$size" "127.0.0.1:$PORT" >>"$OUT/raw.log" 2>&1 &
        local src=$!
        while kill -0 "$src" 2>/dev/null; do
            rss=$(rss_kib "$SMTPD_PID" VmRSS)
            [ "$rss" -gt "$peak" ] && peak=$rss
            sleep 0.01
        done
        wait "$src" || { log "100 MB message failed"; return 1; }
        hwm=$(rss_kib "$SMTPD_PID" VmHWM)
        [ "$hwm" -gt "$peak" ] && peak=$hwm
        [ "$(count_new "$ROOT")" -eq 2 ] || { log "100 MB message not in new/"; return 1; }
        smtpd_stop
        log "large run $i: rss before $before KiB, peak (VmHWM) $peak KiB"
        growths="$growths $((peak - before))"
    done
    res "## One $((size / 1048576)) MB message, smtpd resident memory (median of $RUNS)"
    res ""
    res "| RSS growth, peak (VmHWM) minus RSS before (KiB) |"
    res "|---:|"
    res "| $(echo "$growths" | median) |"
    res ""
    res "Command: \`smtp-source -s 1 -m 1 -l $size ...\` after a 1 KB warm-up message; VmRSS sampled every 10 ms and VmHWM read at the end."
    res ""
}

machine() {
    res "# smtpd benchmark results"
    res ""
    res "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure; syncfs also flushes other writers' data)."
    res ""
    res "Machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r), filesystem $(df -T "$WORK" | awk 'NR == 2 { print $2 " on " $1 }'), $(postconf -dh mail_version 2>/dev/null | sed 's/^/Postfix /'), $(date -u +%Y-%m-%d)."
    res ""
}

main() {
    [ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (Postfix delivery)" >&2; exit 1; }
    [ -x "$SMTPD" ] || { echo "run.sh: build smtpd first (make)" >&2; exit 1; }
    mkdir -p "$OUT"
    : >"$OUT/raw.log"
    : >"$OUT/results.md"
    : >"$OUT/throughput.dat"
    trap cleanup EXIT
    ulimit -n "$(ulimit -Hn)"
    install_tools
    build_tools
    machine
    if wanted throughput || wanted neighbour || wanted journal; then
        "$HERE/postfix.sh" start "$PF_DIR" "$PF_PORT" localhost $BOXES
        PF_UP=1
        if wanted throughput; then throughput; fi
        if wanted neighbour; then neighbour; fi
        if wanted journal; then journal_side_by_side; fi
        "$HERE/postfix.sh" stop "$PF_DIR"
        PF_UP=
    fi
    if wanted journal_probe; then journal_probe_section; fi
    if wanted ceiling; then ceiling; fi
    if wanted sink; then sink; fi
    if wanted held_clients; then held_clients; fi
    if wanted curve; then curve; fi
    if wanted large_message; then large_message; fi
    if wanted tls; then tls_side_by_side; fi
    if wanted metrics; then metrics_scrape; fi
    if wanted limits; then client_limits; fi
    if wanted logins; then logins_under_attack; fi
    if wanted chunking; then chunking; fi
    if wanted addresses; then addresses; fi
    res "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
    log "results in $OUT/results.md"
}

# ---- CHUNKING: the same load over DATA and over BDAT (benchmarks.md 13) --

chunking() {
    local size mode i line secs=$((10 / SCALE > 2 ? 10 / SCALE : 2))
    res "## DATA and BDAT side by side, 16 sessions, msg/s answered 250 (median of $RUNS, alternating)"
    res ""
    res "| size | DATA | BDAT |"
    res "|---:|---:|---:|"
    for size in 1024 102400; do
        local data="" bdat=""
        for i in $(seq "$RUNS"); do
            for mode in data bdat; do
                new_root
                smtpd_start "$ROOT"
                line=$("$OUT/chunkload" -p "$PORT" -c 16 -s "$secs" -l "$size" \
                       $([ "$mode" = bdat ] && echo -b)) || { log "chunkload: $line"; return 1; }
                smtpd_stop
                log "chunking $size $line"
                if [ "$mode" = data ]; then
                    data="$data ${line##*rate=}"
                else
                    bdat="$bdat ${line##*rate=}"
                fi
            done
        done
        res "| $((size / 1024)) KB | $(echo "$data" | median) | $(echo "$bdat" | median) |"
    done
    res ""
    res "Command: \`build/bench/chunkload -p PORT -c 16 -s $secs -l SIZE [-b]\`: one connection per message, EHLO, MAIL, RCPT, then DATA with the body and \`.\` or one \`BDAT n LAST\` (-b), QUIT; a fresh smtpd and root per run."
    res ""
}

# RCPT with 10,000 aliases and quotas on 1,000 mailboxes, next to plain.
addresses() {
    res "## RCPT with --aliases and --quota, next to plain"
    res ""
    SMTPD="$SMTPD" CHUNKLOAD="$OUT/chunkload" BENCH_DIR="$WORK" \
        /usr/bin/python3 "$HERE/addresses.py" "$RUNS" \
        $((10 / SCALE > 2 ? 10 / SCALE : 2)) 20 | tee -a "$OUT/results.md"
    res ""
}

# ---- TLS: smtpd and Postfix side by side (docs/benchmarks.md 8) -------

tls_side_by_side() {
    if [ ! -x "$HERE/../build/bench/tlsload" ] \
       || [ ! -f "$HERE/../build/demo-tls/cert.pem" ]; then
        res "## TLS side by side: skipped (needs make build/bench/tlsload build/demo-tls/cert.pem, which make bench does)"
        return 0
    fi
    res "## TLS, side by side with Postfix (STARTTLS, full handshake per message, 1 KB, msg/s)"
    res ""
    "$HERE/tls_vs_postfix.sh" $((8 / SCALE > 2 ? 8 / SCALE : 2)) | tee -a "$OUT/results.md"
    res ""
}

# ---- operations: scrapes, limits, logins (benchmarks.md 9, 11, 12) ----

metrics_scrape() {
    res "## A Prometheus scrape every 100 ms during a 64-session run"
    res ""
    SMTPD="$SMTPD" BENCH_OUT="$OUT" BENCH_RUNS="$RUNS" \
        "$HERE/metrics_scrape.sh" | tee -a "$OUT/results.md"
    res ""
}

client_limits() {
    res "## A client over --client-limit while $((10000 / SCALE)) others are held"
    res ""
    SMTPD="$SMTPD" /usr/bin/python3 "$HERE/client_limits.py" \
        $((10000 / SCALE)) 200 | tee -a "$OUT/results.md"
    res ""
}

logins_under_attack() {
    res "## A correct login while 200 connections guess"
    res ""
    /usr/bin/python3 "$HERE/login_attack.py" "$SMTPD" 200 20 | tee -a "$OUT/results.md"
    /usr/bin/python3 "$HERE/login_attack.py" --names many "$SMTPD" 200 20 \
        | tee -a "$OUT/results.md"
    res ""
}

main "$@"
