#!/usr/bin/python3
"""The journal's own figures from one smtpd --metrics scrape: every
series whose name starts with smtpd_journal_, summed over its labels.
Counters and gauges are printed as they are; a summary (_sum and
_count) as its count and mean; a histogram as its count, its mean and
its p50/p90/p99 (read from the buckets as Prometheus's
histogram_quantile does: linear inside the bucket). When a counter of
records and one of syncs are both there, their ratio too (records per
sync; syncs may be a histogram's count), and with a count of checkpoints
and their total seconds, a checkpoint's mean length. Prints one line,
`name=value ...`, or nothing when the server exposes no journal series
(an smtpd without the journal).

    bench/journal_metrics.py http://127.0.0.1:PORT/metrics
    bench/journal_metrics.py --file scrape.txt

Standard library only."""
import argparse
import re
import sys
import urllib.request

SERIES = re.compile(r'^(smtpd_journal_[a-zA-Z0-9_]*)(\{[^}]*\})?\s+(\S+)')
LE = re.compile(r'le="([^"]*)"')


def parse(text):
    """(plain, buckets): plain maps a name to its value summed over its
    labels; buckets maps a histogram's base name to {le: cumulative}."""
    plain, buckets = {}, {}
    for line in text.splitlines():
        m = SERIES.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name.endswith("_bucket"):
            le = LE.search(labels)
            if le:
                bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
                b = buckets.setdefault(name[:-len("_bucket")], {})
                b[bound] = b.get(bound, 0.0) + value
            continue
        plain[name] = plain.get(name, 0.0) + value
    return plain, buckets


def quantile(q, cumulative):
    """The q-quantile of a histogram given as {upper bound: cumulative count}."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower   # in the open bucket: its lower edge
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1)
        lower, below = bound, count
    return lower


def number(v):
    return str(int(v)) if v == int(v) else "%.4g" % v


def summary(text):
    plain, buckets = parse(text)
    out, counts = [], {}
    for base, cum in sorted(buckets.items()):
        n = plain.pop(base + "_count", None)
        counts[base] = n or 0
        s = plain.pop(base + "_sum", None)
        ms = 1000 if base.endswith("_seconds") else 1
        unit = "ms" if ms == 1000 else ""
        short = base[len("smtpd_journal_"):]
        if n is not None:
            out.append("%s_count=%s" % (short, number(n)))
        if n and s is not None:
            out.append("%s_mean=%.3g%s" % (short, s / n * ms, unit))
        for q in (0.5, 0.9, 0.99):
            v = quantile(q, cum)
            if v is not None:
                out.append("%s_p%d=%.3g%s" % (short, round(q * 100), v * ms, unit))
    for base in sorted(k[:-len("_count")] for k in list(plain) if k.endswith("_count")):
        if base + "_sum" not in plain:
            continue
        n, s = plain.pop(base + "_count"), plain.pop(base + "_sum")
        ms = 1000 if base.endswith("_seconds") else 1
        short = base[len("smtpd_journal_"):]
        out.append("%s_count=%s" % (short, number(n)))
        if n:
            out.append("%s_mean=%.3g%s" % (short, s / n * ms, "ms" if ms == 1000 else ""))
    for name, v in sorted(plain.items()):
        out.append("%s=%s" % (name[len("smtpd_journal_"):], number(v)))
    records = [v for k, v in plain.items() if "record" in k and k.endswith("_total")]
    syncs = [v for k, v in plain.items() if "sync" in k and k.endswith("_total")]
    if not syncs:   # the syncs counted by their histogram
        syncs = [counts[b] for b in counts if "sync" in b]
    if len(records) == 1 and len(syncs) == 1 and syncs[0]:
        out.append("records_per_sync=%.1f" % (records[0] / syncs[0]))
    n = plain.get("smtpd_journal_checkpoints_total")
    t = plain.get("smtpd_journal_checkpoint_seconds_total")
    if n and t is not None:
        out.append("checkpoint_mean=%.3gms" % (t / n * 1000))
    return " ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", nargs="?")
    ap.add_argument("--file")
    args = ap.parse_args()
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    elif args.url:
        try:
            with urllib.request.urlopen(args.url, timeout=10) as r:
                text = r.read().decode("utf-8", "replace")
        except OSError as e:
            print("journal_metrics.py: %s: %s" % (args.url, e), file=sys.stderr)
            return 1
    else:
        ap.error("a URL or --file")
    line = summary(text)
    if line:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
