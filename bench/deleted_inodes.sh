#!/usr/bin/env bash
# What files deleted just before a load cost smtpd, with the journal and
# with --no-journal (docs/benchmarks.md, "The write-ahead journal"). An
# ext4 without a journal of its own (this machine's) will not reuse an
# inode freed in the last 30 s, or in the last 330 s while the block of
# the inode table that holds it is dirty, so every file created meanwhile
# scans past them. The journal leaves those blocks dirty until its next
# checkpoint, --no-journal's syncs write them back every batch: whether
# that makes one mode pay more is what this measures.
#
#   make && bench/deleted_inodes.sh [ROUNDS [DELETED]]
#
# Each round: a minute's wait (deletions made before, by this script or
# anyone, grow old and are written back), a load into a fresh root with
# each smtpd, then the same after DELETED (default 40000) empty files
# were made and removed on the same filesystem, and once more for the
# journal with a `sync` after the removal. One line per load: msg/s and smtpd's CPU seconds. Needs
# smtp-source (Debian's postfix). Uses /var/tmp (BENCH_DIR=... for
# another filesystem).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SMTPD=${SMTPD:-$HERE/../smtpd}
ROUNDS=${1:-2}
DELETED=${2:-40000}
SESSIONS=16 MESSAGES=3000
WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/smtpd-deleted.XXXXXX")
PORT=$((20000 + $$ % 10000))
MON=$((PORT + 1))
SRC="smtp-source -f bench@localhost -t u@localhost -M localhost"
SMTPD_PID='' N=0
# shellcheck source=bench/common.sh
. "$HERE/common.sh"

cleanup() { smtpd_stop; rm -rf "$WORK"; }
trap cleanup EXIT

cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# churn: DELETED empty files made, then removed
churn() {
    mkdir "$WORK/junk"
    (cd "$WORK/junk" && seq "$DELETED" | xargs touch)
    rm -rf "$WORK/junk"
}

# load LABEL [SMTPD_ARGS...]: one load into a fresh root; prints its line
load() {
    local label=$1 root c0 t0 t1
    shift
    N=$((N + 1))
    root=$WORK/root.$N
    smtpd_launch "$root" "u" "$MON" "$@"
    c0=$(cpu "$SMTPD_PID")
    t0=$(date +%s.%N)
    $SRC -s "$SESSIONS" -m "$MESSAGES" -l 1024 "127.0.0.1:$PORT" >/dev/null
    for _ in $(seq 3000); do
        [ "$(find "$root/u/new" -type f | wc -l)" -ge "$MESSAGES" ] && break
        sleep 0.02
    done
    t1=$(date +%s.%N)
    printf '%-44s %5.0f msg/s  smtpd CPU %s s\n' "$label" \
        "$(awk -v a="$t0" -v b="$t1" -v n="$MESSAGES" 'BEGIN { print n / (b - a) }')" \
        "$(awk -v a="$c0" -v b="$(cpu "$SMTPD_PID")" 'BEGIN { printf "%.2f", b - a }')"
    smtpd_stop
}

echo "# $MESSAGES messages of 1 KB, $SESSIONS sessions; $DELETED files deleted before the marked loads"
for r in $(seq "$ROUNDS"); do
    echo "## round $r"
    sleep 60
    load "fresh, journal"
    load "fresh, --no-journal" --no-journal
    churn; load "after the deletions, journal"
    churn; load "after the deletions, --no-journal" --no-journal
    churn; sync; load "after the deletions and a sync, journal"
done
