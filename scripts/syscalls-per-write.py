#!/usr/bin/env python3
"""Syscalls and flushes per committed write on each node of a local bench run.

Runs `ringraft bench CONFIG` (local nodes), and in the middle of its measured window attaches
`perf trace -s` to every node process for a few seconds. Writes committed meanwhile are the
leader's commit index before and after (`ringraft stats`), so the counts are per write, not per
group. perf trace costs the nodes some speed, so read the ratios, not the run's writes/s.

Usage: scripts/syscalls-per-write.py [CONFIG] [--seconds N] [--bin PATH]
Needs `perf` (linux-perf) and root or perf_event_paranoid <= 1 for other users' processes.
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time


def node_pids(marker):
    """PIDs of `ringraft node` processes whose command line mentions `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        text = b" ".join(args).decode(errors="replace")
        if len(args) > 1 and args[1] == b"node" and marker in text:
            pids.append((int(entry), text))
    return pids


def client_addrs(cmdline):
    """Client addresses from a node's `--members id=peer/client,...`."""
    members = re.search(r"--members (\S+)", cmdline).group(1)
    return [m.split("=", 1)[1].split("/")[1] for m in members.split(",")]


def stats(binary, addr):
    out = subprocess.run([binary, "stats", addr], capture_output=True, text=True, timeout=10)
    role = re.search(r"role (\w+)", out.stdout)
    commit = re.search(r"commit_index (\d+)", out.stdout)
    if not role or not commit:
        return None
    return role.group(1), int(commit.group(1))


def leader_commit(binary, addrs):
    for addr in addrs:
        s = stats(binary, addr)
        if s and s[0] == "Leader":
            return addr, s[1]
    return None, None


def threads_of(pid):
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    except OSError:
        return set()


def parse_summary(path, tid_to_pid):
    """perf trace -s output: per thread, `syscall calls ...` rows; summed per process."""
    per_pid = collections.defaultdict(collections.Counter)
    pid = None
    with open(path) as f:
        for line in f:
            head = re.match(r"\s*(\S.*) \((\d+)\), \d+ events", line)
            if head:
                pid = tid_to_pid.get(int(head.group(2)))
                continue
            row = re.match(r"\s+([a-z_0-9]+)\s+(\d+)\s+\d+\s", line)
            if row and pid is not None and row.group(1) != "syscall":
                per_pid[pid][row.group(1)] += int(row.group(2))
    return per_pid


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="bench-configs/3node-1kb.toml")
    parser.add_argument("--seconds", type=float, default=4.0, help="traced seconds")
    parser.add_argument("--bin", default="target/release/ringraft")
    args = parser.parse_args()
    results = tempfile.mkdtemp(prefix="ringraft-syscalls-")
    bench = subprocess.Popen(
        [args.bin, "bench", args.config, "--quiet", "--results-dir", results,
         "--warmup-s", "3", "--duration-s", str(int(args.seconds * 2 + 6))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        nodes = []
        while time.monotonic() < deadline and not nodes:
            nodes = node_pids(results)
            time.sleep(0.2)
        if not nodes:
            sys.exit("no ringraft node of the bench appeared within 60 s")
        time.sleep(5)  # into the measured window
        nodes = node_pids(results)
        addrs = client_addrs(nodes[0][1])
        tid_to_pid = {t: pid for pid, _ in nodes for t in threads_of(pid)}
        leader, before = leader_commit(args.bin, addrs)
        if leader is None:
            sys.exit("no leader found among " + ", ".join(addrs))
        trace = os.path.join(results, "perf-trace.txt")
        subprocess.run(
            ["perf", "trace", "-s", "-o", trace, "-p", ",".join(str(p) for p, _ in nodes),
             "--", "sleep", str(args.seconds)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, after = leader_commit(args.bin, addrs)
        writes = (after or before) - before
        if writes <= 0:
            sys.exit("no write committed while traced")
        per_pid = parse_summary(trace, tid_to_pid)
        print(f"{args.config}: {writes} writes committed in {args.seconds:g} s traced "
              f"(perf trace slows the nodes; counts are per committed write)")
        for pid, cmdline in nodes:
            node = re.search(r"--id (\d+)", cmdline).group(1)
            counts = per_pid.get(pid, collections.Counter())
            total = sum(counts.values())
            top = ", ".join(f"{name} {n / writes:.3f}" for name, n in counts.most_common(8))
            print(f"node {node} (pid {pid}): {total / writes:.2f} syscalls per write: {top}")
    finally:
        bench.wait(timeout=120)
    print(f"bench results and the raw trace: {results}")


if __name__ == "__main__":
    main()
