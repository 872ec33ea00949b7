# bench/neighbour.sh - sourced by bench/run.sh and bench/probe_neighbour.sh:
# the busy neighbour on the filesystem under test. Uses $WORK; sets
# NOISE_PID while it runs.

# A neighbour that keeps ~200 MB of dirty page cache on our filesystem
# (a dd loop, never synced by itself; bounded: 600 rounds at most); stops
# at the next round once told.
noise_start() {
    rm -f "$WORK/noise.stop"
    (for _ in $(seq 600); do
        [ -e "$WORK/noise.stop" ] && break
        dd if=/dev/zero of="$WORK/noise" bs=1M count=200 status=none
    done; rm -f "$WORK/noise") &
    NOISE_PID=$!
    sleep 1
}

noise_stop() {
    touch "$WORK/noise.stop"
    wait "$NOISE_PID" 2>/dev/null || true
    NOISE_PID=
}
