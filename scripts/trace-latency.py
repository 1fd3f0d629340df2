#!/usr/bin/env python3
"""Per-step latency of the commit path from a traced bench run (see src/runtime/trace.rs).

    RINGRAFT_TRACE=1 ringraft bench bench-configs/single-client-latency.toml
    scripts/trace-latency.py results/.data/single-client-latency/ringraft

Meant for one request in flight: each client request on the leader (from `cli_in` to
`cli_out`) is one window, and every event of every node inside it is listed by its offset from
the window's start, as percentiles over all windows. Then the durations of the disk steps per
node: hand-off to the disk thread, write + fdatasync, and the way back. A group written on the
executor's own ring (`blk_begin 1`) shows its encoding and copy as the hand-off and its O_DSYNC
write as write + fdatasync; its way back is the executor resuming the disk task.
"""
import collections
import glob
import os
import sys


def load(directory):
    events = []
    for path in sorted(glob.glob(os.path.join(directory, "node*.log"))):
        node = os.path.basename(path)[: -len(".log")]
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 4 and parts[0] == "T":
                    events.append((int(parts[1]), node, parts[2], parts[3]))
    events.sort()
    return events


def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))]


def windows(events):
    counts = collections.Counter(node for _, node, label, _ in events if label == "cli_in")
    leader = counts.most_common(1)[0][0]
    result, current = [], None
    for at, node, label, value in events:
        if node == leader and label == "cli_in":
            current = (at, [])
        elif current is not None:
            current[1].append((at - current[0], node, label))
            if node == leader and label == "cli_out":
                result.append(current[1])
                current = None
    return leader, result


def main():
    events = load(sys.argv[1] if len(sys.argv) > 1 else ".")
    leader, requests = windows(events)
    totals = sorted(w[-1][0] for w in requests)
    print(f"leader {leader}, {len(requests)} requests: p50 {pct(totals, .5)} us, "
          f"p90 {pct(totals, .9)} us, p99 {pct(totals, .99)} us")
    offsets = collections.defaultdict(list)
    for window in requests:
        seen = collections.Counter()
        for offset, node, label in window:
            key = (node, label, seen[(node, label)])
            seen[(node, label)] += 1
            offsets[key].append(offset)
    rows = [(sorted(v), k) for k, v in offsets.items() if len(v) >= 0.3 * len(requests)]
    rows.sort(key=lambda row: pct(row[0], .5))
    print(f"{'node':6} {'event':28} {'n':>6} {'p50':>7} {'p90':>7} {'p99':>7}  (us from cli_in)")
    for values, (node, label, nth) in rows:
        print(f"{node:6} {label + ' #' + str(nth):28} {len(values):6} {pct(values, .5):7} "
              f"{pct(values, .9):7} {pct(values, .99):7}")
    steps = {"disk_start": ("blk_begin", "hand-off"), "blk_begin": ("blk_end", "write+sync"),
             "blk_end": ("disk_done", "way back")}
    started, durations = {}, collections.defaultdict(list)
    for at, node, label, _ in events:
        if (node, label) in started:
            begin_label, begin_at = started.pop((node, label))
            durations[(node, steps[begin_label][1])].append(at - begin_at)
        if label in steps:
            started[(node, steps[label][0])] = (label, at)
    for (node, step), values in sorted(durations.items()):
        values.sort()
        print(f"{node:6} {step:12} n={len(values):6} p10 {pct(values, .1):6} p50 {pct(values, .5):6} "
              f"p90 {pct(values, .9):6} p99 {pct(values, .99):6} us")


if __name__ == "__main__":
    main()
