#!/usr/bin/env python3
"""Where a write's time goes under load, from a traced bench run (see src/runtime/trace.rs).

    RINGRAFT_TRACE=1 ringraft bench bench-configs/3node-1kb.toml
    scripts/trace-stages.py results/.data/3node-1kb/ringraft

For many requests in flight (trace-latency.py is for one at a time). Requests cannot be
followed one by one across nodes here, so each step is timed inside one node, matching events
that happen in order:

  leader   cli_in -> cli_handle   request decoded -> taken by the Raft loop (inbox wait);
                                  every request, in order (a stats request proposes nothing,
                                  so requests are paired with the loop's take, not a proposal)
           propose -> reply       proposal -> answer queued (replication, quorum, apply)
           reply -> cli_out       answer queued -> written to the client's socket
  each     peer_in -> handled     peer message decoded -> the Raft loop takes it
           submit -> disk_done    output handed to the disk task -> durable (queue + write)
           disk_start -> blk_begin   encoding and copy before the write is issued
           blk_begin -> blk_end   the write + fdatasync as the disk task saw it, including the
                                  executor's delay in noticing the completion
           loop busy              share of wall time the Raft loop spent handling events and
                                  processing output (loop_begin .. loop_processed)

Then one index followed across nodes (every 53rd proposal), from the `ae_out` / `ae_in` /
`ack_out` / `ack_in` / `apply` events: the leader hands the AppendEntries to its peer sender,
the first follower takes it, each follower answers once it is durable, the leader takes the
first answer, applies, replies. Node clocks are the same monotonic clock (one machine).

Percentiles are in microseconds.
"""
import bisect
import collections
import glob
import os
import sys

PEER_KINDS = {
    "AppendEntries", "AppendEntriesResponse", "PreVote", "PreVoteResponse", "RequestVote",
    "RequestVoteResponse", "InstallSnapshot", "InstallSnapshotResponse", "TimeoutNow",
    "Heartbeat", "HeartbeatResponse", "ReadIndexRequest", "ReadIndexResponse",
}


def load(path):
    events = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 4 and parts[0] == "T":
                events.append((int(parts[1]), parts[2], int(parts[3])))
    return events


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else None


def row(name, values):
    if not values:
        return f"  {name:28s} (no events)"
    cells = " ".join(f"{pct(values, q):>7}" for q in (0.5, 0.9, 0.99))
    return f"  {name:28s} {cells}   n={len(values)}"


def leader_steps(events):
    cli_in, replies, proposed = collections.deque(), collections.deque(), {}
    wait, commit, answer = [], [], []
    for t, label, value in events:
        if label == "cli_in":
            cli_in.append(t)
        elif label == "cli_handle":
            if cli_in:
                wait.append(t - cli_in.popleft())
        elif label == "propose":
            proposed[value] = t
        elif label == "reply":
            replies.append(t)
            if value in proposed:
                commit.append(t - proposed.pop(value))
        elif label == "cli_out":
            for _ in range(value):
                if replies:
                    answer.append(t - replies.popleft())
    return [("cli_in -> cli_handle", wait), ("propose -> reply", commit),
            ("reply -> cli_out", answer)]


def node_steps(events):
    peer_in, handled = collections.deque(), []
    submits, done_seq, done_t = [], [], []
    encode, device = [], []
    disk_start = blk_begin = None
    busy, loop_begin = 0, None
    for t, label, value in events:
        if label == "peer_in":
            peer_in.append(t)
        elif label in PEER_KINDS and value == 0 and peer_in:
            handled.append(t - peer_in.popleft())
        elif label == "submit":
            submits.append((value, t))
        elif label == "disk_start":
            disk_start = t
        elif label == "blk_begin" and disk_start is not None:
            encode.append(t - disk_start)
            blk_begin = t
        elif label == "blk_end" and blk_begin is not None:
            device.append(t - blk_begin)
            disk_start = blk_begin = None
        elif label == "disk_done":
            done_seq.append(value)
            done_t.append(t)
        elif label == "loop_begin":
            loop_begin = t
        elif label == "loop_processed" and loop_begin is not None:
            busy += t - loop_begin
            loop_begin = None
    durable = []
    for seq, t in submits:
        i = bisect.bisect_left(done_seq, seq)
        if i < len(done_t):
            durable.append(done_t[i] - t)
    span = events[-1][0] - events[0][0] if events else 0
    steps = [("peer_in -> handled", handled), ("submit -> disk_done", durable),
             ("disk_start -> blk_begin", encode), ("blk_begin -> blk_end", device)]
    return steps, (100.0 * busy / span if span else 0.0)


def monotone(pairs):
    """(value, time) pairs -> the times at which the value first reached each new maximum."""
    values, times, top = [], [], -1
    for value, t in pairs:
        if value > top:
            top = value
            values.append(value)
            times.append(t)
    return values, times


def first_reaching(series, index):
    values, times = series
    k = bisect.bisect_left(values, index)
    return times[k] if k < len(values) else None


def follow_indexes(by_node, leader):
    def series(events, label):
        return monotone([(v, t) for t, l, v in events if l == label])

    lead = by_node[leader]
    followers = [n for n in by_node if n != leader]
    proposed = {v: t for t, l, v in lead if l == "propose"}
    replied = {v: t for t, l, v in lead if l == "reply"}
    ae_out, ack_in, apply = (series(lead, x) for x in ("ae_out", "ack_in", "apply"))
    ae_in = [series(by_node[n], "ae_in") for n in followers]
    ack_out = [series(by_node[n], "ack_out") for n in followers]
    steps = collections.OrderedDict((name, []) for name in (
        "propose -> ae_out", "ae_out -> ae_in (first)", "ae_in -> ack_out (faster)",
        "ae_in -> ack_out (slower)", "first ack_out -> ack_in", "ack_in -> apply",
        "apply -> reply", "propose -> reply"))
    for index in sorted(proposed)[::53]:
        if index not in replied:
            continue
        sent = first_reaching(ae_out, index)
        ins = [first_reaching(s, index) for s in ae_in]
        outs = [first_reaching(s, index) for s in ack_out]
        acked = first_reaching(ack_in, index)
        applied = first_reaching(apply, index)
        if None in (sent, acked, applied) or None in ins or None in outs:
            continue
        durable = [o - i for o, i in zip(outs, ins)]
        steps["propose -> ae_out"].append(sent - proposed[index])
        steps["ae_out -> ae_in (first)"].append(min(ins) - sent)
        steps["ae_in -> ack_out (faster)"].append(min(durable))
        steps["ae_in -> ack_out (slower)"].append(max(durable))
        steps["first ack_out -> ack_in"].append(acked - min(outs))
        steps["ack_in -> apply"].append(applied - acked)
        steps["apply -> reply"].append(replied[index] - applied)
        steps["propose -> reply"].append(replied[index] - proposed[index])
    return list(steps.items())


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    paths = sorted(glob.glob(os.path.join(sys.argv[1], "node*.log")))
    if not paths:
        sys.exit(f"no node*.log in {sys.argv[1]}: run the bench with RINGRAFT_TRACE=1")
    print(f"  {'step':28s} {'p50':>7} {'p90':>7} {'p99':>7}   (us)")
    by_node, leader = {}, None
    for path in paths:
        events = load(path)
        name = os.path.basename(path)[: -len(".log")]
        by_node[name] = events
        is_leader = any(label == "propose" for _, label, _ in events)
        leader = name if is_leader else leader
        steps, busy = node_steps(events)
        print(f"{name} ({'leader' if is_leader else 'follower'}), Raft loop busy {busy:.0f}%")
        for step, values in (leader_steps(events) if is_leader else []) + steps:
            print(row(step, values))
    if leader is not None and len(by_node) > 1:
        print("one index across nodes")
        for step, values in follow_indexes(by_node, leader):
            print(row(step, values))


if __name__ == "__main__":
    main()
