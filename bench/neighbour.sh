# bench/neighbour.sh - sourced by bench/run.sh and bench/probe_neighbour.sh:
# the busy neighbour on the filesystem under test. Uses $WORK; sets
# NOISE_PID while it runs.
#
# Two kinds, chosen by noise_start's argument:
#
#   rewrite  (default) dd rewrites one 200 MB file, over and over: keeps
#            ~200 MB of dirty page cache on our filesystem, never synced
#            by itself; at most 600 rounds.
#   stream   dd writes a new 2 GB file (bs=1M count=2048), which is then
#            deleted, over and over: a long sequential writer, like a
#            backup or a log shipper; at most 100 rounds.
#
# NOISE_MB=N scales both down for smoke tests: the rewrite neighbour
# writes N MB a round, the stream neighbour N*2048/200 MB (the same
# ratio as at full size). Unset: 200 and 2048.
#
# Either stops at its next round once noise_stop is called; noise_stop
# also kills a dd that is still writing, so stopping takes well under a
# second even in the middle of a 2 GB file.

# noise_mb KIND: megabytes one round of KIND writes.
noise_mb() {
    local base=${NOISE_MB:-200} mb
    case $1 in
        rewrite) mb=$base ;;
        stream) mb=$((base * 2048 / 200)) ;;
        *) echo "neighbour.sh: unknown neighbour '$1' (rewrite or stream)" >&2; return 1 ;;
    esac
    [ "$mb" -ge 1 ] || mb=1
    echo "$mb"
}

# noise_describe KIND: the neighbour's command line, for result tables.
noise_describe() {
    local mb
    mb=$(noise_mb "$1") || return 1
    case $1 in
        rewrite) echo "dd if=/dev/zero of=FILE bs=1M count=$mb, in a loop" ;;
        stream) echo "dd if=/dev/zero of=FILE bs=1M count=$mb, then rm FILE, in a loop" ;;
    esac
}

noise_start() {
    local kind=${1:-rewrite} mb rounds
    mb=$(noise_mb "$kind") || return 1
    case $kind in
        rewrite) rounds=600 ;;
        stream) rounds=100 ;;
    esac
    rm -f "$WORK/noise.stop" "$WORK/noise.dd"
    # dd runs in the background of this subshell so that its PID can be
    # written down (noise.dd) for noise_stop to kill.
    (for _ in $(seq "$rounds"); do
        [ -e "$WORK/noise.stop" ] && break
        dd if=/dev/zero of="$WORK/noise" bs=1M count="$mb" status=none &
        echo $! >"$WORK/noise.dd"
        wait $! || true
        rm -f "$WORK/noise.dd"
        if [ "$kind" = stream ]; then rm -f "$WORK/noise"; fi
    done; rm -f "$WORK/noise" "$WORK/noise.dd") &
    NOISE_PID=$!
    sleep 1
}

noise_stop() {
    local pid
    [ -n "${NOISE_PID:-}" ] || return 0
    touch "$WORK/noise.stop"
    # The loop may be between its check of noise.stop and starting a dd:
    # keep killing whatever dd is current until the loop has ended
    # (bounded: 200 × 50 ms).
    for _ in $(seq 200); do
        kill -0 "$NOISE_PID" 2>/dev/null || break
        pid=$(cat "$WORK/noise.dd" 2>/dev/null) || pid=
        if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
        sleep 0.05
    done
    wait "$NOISE_PID" 2>/dev/null || true
    NOISE_PID=
}
