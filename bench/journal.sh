# bench/journal.sh - sourced by bench/run.sh: the write-ahead journal's
# two sections (docs/benchmarks.md, "The write-ahead journal").
#
#   journal_probe  build/bench/journal_probe (bench/journal_probe.c): a
#                  batch of 16 or 64 messages of 1 KB made durable file by
#                  file or as records in one journal, quiet and next to
#                  each neighbour
#   journal        smtpd with the journal (its default), smtpd
#                  --no-journal and the private Postfix under the same
#                  smtp-source loads (16 and 64 sessions, 1 KB and 100 KB),
#                  quiet and next to each neighbour, alternating; the
#                  journal's own figures from --metrics; then NOOP round
#                  trips on smtpd with the journal during a 64-session load
#
# Uses run.sh's helpers (res, log, median, deliver, new_root, smtpd_start,
# pf_run, noop_run, and SMTPD_ARGS, which smtpd_start adds to smtpd's
# arguments) and neighbour.sh's noise_start/noise_stop.
# shellcheck disable=SC2034  # SMTPD_ARGS is read by run.sh's smtpd_start
#
# For a focused rerun, BENCH_JOURNAL_NEIGHBOURS (default "none rewrite
# stream") and BENCH_JOURNAL_SIZES (default "1024 102400") narrow the
# side-by-side table and the NOOP rows, e.g.
#   BENCH_ONLY=journal BENCH_JOURNAL_NEIGHBOURS=stream \
#   BENCH_JOURNAL_SIZES=102400 bench/run.sh
JOURNAL_KINDS=${BENCH_JOURNAL_NEIGHBOURS:-none rewrite stream}
JOURNAL_SIZES=${BENCH_JOURNAL_SIZES:-1024 102400}

# Does this smtpd have the journal? (Its -h names --no-journal.)
# (Not a pipe into grep -q: under pipefail, smtpd killed by SIGPIPE once
# grep has its match would make the answer no.)
journal_supported() {
    local help
    help=$("$SMTPD" -h 2>&1) || true
    case $help in *--no-journal*) return 0 ;; esac
    return 1
}

journal_probe_section() {
    local dev kind n=$((200 / SCALE)) t=$((30 / SCALE)) header_done=
    dev=$(lsblk -no PKNAME "$(df --output=source "$WORK" | tail -1)" 2>/dev/null | head -1)
    [ -n "$dev" ] || dev=$(basename "$(df --output=source "$WORK" | tail -1)")
    res "## One batch of 1 KB messages made durable: file by file, or in a journal (one run each)"
    res ""
    for kind in none rewrite stream; do
        [ "$kind" = none ] || noise_start "$kind"
        # the table's header once, before the first neighbour's rows
        "$OUT/journal_probe" -n "$n" -t "$t" -d "$dev" -l "$kind" \
            ${header_done:+-q} "$WORK" | tee -a "$OUT/results.md"
        header_done=1
        [ "$kind" = none ] || noise_stop
    done
    res ""
    res "Command: \`build/bench/journal_probe -n $n -t $t -d $dev -l NEIGHBOUR DIR\`, quiet and next to each neighbour (\`bench/neighbour.sh\`). The three ways take turns batch by batch; at most $n batches or $t s per batch size. *files*: fsync each file written in tmp/, link each into new/, fsync new/ once. *journal-zero* / *journal-alloc*: the same messages as records appended to one 64 MiB journal, zero-filled or fallocated when made, then one fdatasync. Messages per second of flush time: messages / the sum of the batches' flush times. Flushes: cache flushes the device completed during the flush, all programs' together."
    res ""
}

# smtpd_cpu: smtpd's CPU seconds so far (user + system, /proc/PID/stat).
smtpd_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$SMTPD_PID/stat"
}

# journal_cell SERVER SESSIONS SIZE COUNT: one run; sets RATE; for smtpd
# CPU to its CPU seconds over the run's seconds (e.g. "0.81 of 3.2 s"),
# and for the journal JSTATS to its own figures (bench/journal_metrics.py).
JSTATS=
CPU=
journal_cell() {
    local server=$1 sessions=$2 size=$3 count=$4 metrics=$((PORT + 3))
    case $server in
        postfix) pf_run "$sessions" "$size" 1 "$count"; return ;;
        journal) SMTPD_ARGS="--metrics 127.0.0.1:$metrics" ;;
        nojournal) SMTPD_ARGS="--metrics 127.0.0.1:$metrics --no-journal" ;;
        plain) SMTPD_ARGS="--metrics 127.0.0.1:$metrics" ;;
    esac
    new_root
    smtpd_start "$ROOT"
    local c0
    c0=$(smtpd_cpu)
    deliver "$PORT" "$ROOT" "$sessions" "$size" 1 "$count"
    CPU=$(awk -v a="$c0" -v b="$(smtpd_cpu)" -v n="$count" -v r="$RATE" \
        'BEGIN { printf "%.2f of %.1f s", b - a, n / r }')
    if [ "$server" = journal ]; then
        JSTATS=$("$PY" "$HERE/journal_metrics.py" "http://127.0.0.1:$metrics/metrics") || JSTATS=
    fi
    smtpd_stop
    SMTPD_ARGS=
}

journal_side_by_side() {
    local servers kind size sessions count label i srv a b c figs="" note=""
    if journal_supported; then
        servers="journal nojournal postfix"
    else
        servers="plain postfix"
        note="This smtpd has no journal (its -h names no --no-journal): its figures are in the --no-journal column, the per-file syncing it does anyway."
    fi
    res "## The journal, side by side: smtpd with it, smtpd --no-journal, Postfix, msg/s (median of $RUNS, alternating)"
    res ""
    res "| neighbour | load | sessions | messages | smtpd journal | smtpd --no-journal | Postfix | journal/Postfix | --no-journal/Postfix |"
    res "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for kind in $JOURNAL_KINDS; do
        [ "$kind" = none ] || noise_start "$kind"
        for size in $JOURNAL_SIZES; do
            label=$([ "$size" = 1024 ] && echo "1 KB" || echo "100 KB")
            for sessions in 16 64; do
                count=$(( (size > 1024 ? 2500 : (sessions == 16 ? 3000 : 5000)) / SCALE ))
                local r_journal="" r_nojournal="" r_plain="" r_postfix=""
                for i in $(seq "$RUNS"); do
                    journal_order "$servers"
                    for srv in $ORDER; do
                        JSTATS='' CPU=''
                        journal_cell "$srv" "$sessions" "$size" "$count"
                        eval "r_$srv=\"\$r_$srv $RATE\""
                        log "journal neighbour=$kind $label s=$sessions m=$count run $i: $srv $RATE${CPU:+ cpu $CPU}${JSTATS:+ ($JSTATS)}"
                        [ "$srv" = postfix ] || figs="$figs| $kind | $label | $sessions | $i | $srv | $RATE | $CPU | ${JSTATS:-} |"$'\n'
                    done
                done
                [ -n "$r_plain" ] && r_nojournal=$r_plain
                a=$(echo "$r_journal" | median) b=$(echo "$r_nojournal" | median)
                c=$(echo "$r_postfix" | median)
                res "| $kind | $label | $sessions | $count | $a | $b | $c | $(ratio "$a" "$c") | $(ratio "$b" "$c") |"
            done
        done
        [ "$kind" = none ] || noise_stop
    done
    res ""
    [ -z "$note" ] || { res "$note"; res ""; }
    res "Load: \`smtp-source -s SESSIONS -m MESSAGES -l SIZE -r 1 ...\`, one connection per message, timed until the last file is in \`new/\`; a fresh smtpd (\`--metrics\` on, for the figures below) and root per run. Neighbours: *rewrite* is \`$(noise_describe rewrite)\`; *stream* is \`$(noise_describe stream)\`; each runs through all the rows of its name."
    res ""
    journal_figures "$figs"
    journal_noop
}

# journal_order "A B C": sets ORDER to the servers in this turn's order,
# the first two swapped every other turn (not in a subshell: it counts). Postfix deletes a queue file per
# message, and ext4 without a journal then scans past those inodes when
# the next server creates files (docs/benchmarks.md, section 14): each
# smtpd comes right after Postfix in half of the turns.
JOURNAL_TURN=0
ORDER=
journal_order() {
    local first second rest
    read -r first second rest <<<"$1"
    JOURNAL_TURN=$((JOURNAL_TURN + 1))
    if [ $((JOURNAL_TURN % 2)) -eq 0 ]; then
        ORDER="$second $first $rest"
    else
        ORDER="$first $second $rest"
    fi
}

# a/b as "N.N×", or n/a when either is missing.
ratio() {
    case "$1$2" in *n/a*|"") echo "n/a"; return ;; esac
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.1f×", a / b }'
}

journal_figures() {
    res "### Each smtpd run: its CPU, and the journal's own figures (\`--metrics\`, scraped at the end of the run)"
    res ""
    res "| neighbour | load | sessions | run | smtpd | msg/s | smtpd CPU s of the run's s | journal figures |"
    res "|---|---|---:|---:|---|---:|---|---|"
    printf '%s' "$1" | tee -a "$OUT/results.md"
    res ""
    res "CPU: smtpd's user + system time during the run (\`/proc/PID/stat\`), against the run's length; the machine has $(nproc) CPUs, shared with the load generator and the neighbour. Journal figures: every \`smtpd_journal_*\` series, summed over its labels (\`bench/journal_metrics.py\`); summaries as count and mean, histograms as count, mean and p50/p90/p99 read from the buckets (linear inside a bucket), in ms for seconds; empty when the server exposes none."
    res ""
}

# NOOP round trips on smtpd with the journal during a 64-session load,
# quiet and next to each neighbour, RUNS times each (one row a run).
journal_noop() {
    local kind i m=$((5000 / SCALE)) f line
    res "### NOOP round trips during a 64-session 1 KB load, smtpd with the journal (one row a run)"
    res ""
    res "| neighbour | run | smtpd msg/s | NOOPs | failed | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
    res "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for kind in $JOURNAL_KINDS; do
        for i in $(seq "$RUNS"); do
            noop_run "$kind" "$m" "journal-$kind-$i"
            line="| $kind | $i | $RATE"
            for f in noops failures p50 p90 p99 p99.9 max; do
                line="$line | $(echo "$NOOP_LINE" | tr ' ' '\n' | awk -F= -v k="$f" '$1 == k { print $2 }')"
            done
            res "$line |"
        done
    done
    res ""
    journal_supported || { res "This smtpd has no journal: these rows are its per-file syncing."; res ""; }
    res "Command: as in the NOOP table of the neighbour section (\`bench/noop_latency.py --interval 0.001\` on one more connection while \`smtp-source -s 64 -m $m -l 1024\` runs), smtpd with its defaults. Every latency: \`build/bench/noop-journal-NEIGHBOUR-RUN.ms\`."
    res ""
}
