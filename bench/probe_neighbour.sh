#!/usr/bin/env bash
# Where smtpd's time goes while a neighbour writes to the same filesystem
# (docs/benchmarks.md, "Sharing the disk"). Not a benchmark of speed: it
# runs one load twice, quiet and with the neighbour, and while each runs
# samples every thread of smtpd every 2 ms (state and kernel wait channel
# from /proc/PID/task/*/) and Dirty/Writeback from /proc/meminfo; then it
# runs the noisy load once more under strace -T to sum the time each
# thread spent in each file-system call.
#
#   make && bench/probe_neighbour.sh [SESSIONS [MESSAGES]]
#
# Needs smtp-source (Debian's postfix; bench/run.sh installs it) and
# strace. Uses /var/tmp (BENCH_DIR=... for another filesystem).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SMTPD=${SMTPD:-$HERE/../smtpd}
SESSIONS=${1:-16}
MESSAGES=${2:-3000}
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/smtpd-probe.XXXXXX")
PORT=$((20000 + $$ % 10000))
PY=/usr/bin/python3
SMTPD_PID= NOISE_PID=

cleanup() {
    touch "$WORK/noise.stop"
    [ -n "$NOISE_PID" ] && wait "$NOISE_PID" 2>/dev/null || true
    [ -n "$SMTPD_PID" ] && kill "$SMTPD_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

. "$HERE/neighbour.sh"
. "$HERE/common.sh"

smtpd_start() {
    smtpd_launch "$WORK/mail.$1" u $((PORT + 1)) -l "$WORK/smtpd.log"
}

load() {
    local t0 t1
    t0=$(date +%s.%N)
    smtp-source -s "$SESSIONS" -m "$MESSAGES" -l 1024 -f a@b.test \
        -t u@localhost "127.0.0.1:$PORT"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" -v m="$MESSAGES" \
        'BEGIN { printf "%d messages in %.2f s: %.0f msg/s\n", m, b - a, m / (b - a) }'
}

# Samples smtpd's threads until the file "stop" appears; prints, per
# thread, the share of samples in each state and the top wait channels.
sampler() {
    "$PY" - "$SMTPD_PID" "$WORK/sampler.stop" <<'EOF'
import collections, os, sys, time
pid, stop = int(sys.argv[1]), sys.argv[2]
states = collections.defaultdict(collections.Counter)
wchans = collections.defaultdict(collections.Counter)
names, mem, n = {}, [], 0
while not os.path.exists(stop):
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            stat = open("/proc/%d/task/%s/stat" % (pid, tid)).read()
            wchan = open("/proc/%d/task/%s/wchan" % (pid, tid)).read()
        except OSError:
            continue
        st = stat.rsplit(")", 1)[1].split()[0]
        names[tid] = "loop" if int(tid) == pid else "thread " + tid
        states[tid][st] += 1
        if st != "R":
            wchans[tid][wchan or "-"] += 1
    if n % 25 == 0:
        info = dict(l.split(":", 1) for l in open("/proc/meminfo"))
        mem.append((int(info["Dirty"].split()[0]), int(info["Writeback"].split()[0])))
    n += 1
    time.sleep(0.002)
for tid, c in states.items():
    total = sum(c.values())
    share = ", ".join("%s %.0f%%" % (k, 100.0 * v / total) for k, v in c.most_common())
    top = ", ".join("%s %.0f%%" % (k, 100.0 * v / total) for k, v in wchans[tid].most_common(4))
    print("  %-14s %s | waiting in: %s" % (names[tid], share, top))
if mem:
    d = sorted(m[0] for m in mem)
    w = sorted(m[1] for m in mem)
    print("  Dirty median %d MiB (max %d), Writeback median %d MiB (max %d)" % (
        d[len(d) // 2] // 1024, d[-1] // 1024, w[len(w) // 2] // 1024, w[-1] // 1024))
EOF
}

probe() {
    local label=$1
    echo "== $label: $SESSIONS sessions, $MESSAGES messages of 1 KB"
    smtpd_start "$label"
    rm -f "$WORK/sampler.stop"
    sampler > "$WORK/sampler.out" &
    local sp=$!
    load
    touch "$WORK/sampler.stop"
    wait "$sp"
    cat "$WORK/sampler.out"
    smtpd_stop
}

# Time per thread in each traced call, from strace -f -T output.
strace_summary() {
    "$PY" - "$1" "$2" <<'EOF'
import collections, re, sys
path, pid = sys.argv[1], sys.argv[2]
tot = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0.0, 0.0]))
pat = re.compile(r"^(\d+)\s+(\w+)\(.*<([\d.]+)>$")
for line in open(path):
    m = pat.match(line.strip())
    if not m:
        continue
    who = "loop" if m.group(1) == pid else "thread " + m.group(1)
    t = tot[who][m.group(2)]
    t[0] += 1
    t[1] += float(m.group(3))
    t[2] = max(t[2], float(m.group(3)))
for who, calls in sorted(tot.items()):
    for name, (count, secs, worst) in sorted(calls.items(), key=lambda kv: -kv[1][1]):
        print("  %-14s %-16s %7d calls %8.2f s total, longest %.3f s" % (
            who, name, count, secs, worst))
EOF
}

probe quiet
noise_start
probe neighbour
echo "== neighbour, under strace -f -T (slower: compare shares, not rates)"
smtpd_start traced
strace -f -T -qq -o "$WORK/strace.out" -p "$SMTPD_PID" \
    -e trace=write,pwrite64,openat,fsync,fdatasync,syncfs,sync_file_range,link,unlink,rename &
STRACE_PID=$!
sleep 1
load
kill "$STRACE_PID"
wait "$STRACE_PID" 2>/dev/null || true
strace_summary "$WORK/strace.out" "$SMTPD_PID"
smtpd_stop
noise_stop
