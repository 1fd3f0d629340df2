#!/usr/bin/env bash
# How fast a snapshot streams to a new member across an emulated wide-area link.
#
# Starts the three nodes of bench-configs/cross-region-3 (us-east, us-west, eu-central), fills
# their state machine to at least STATE_MIB MiB over loopback (the emulation off, so that
# filling takes seconds), then turns the emulated network of cross-region-3 on (RTT 60/80/140
# ms, 2 ms normal jitter, 1000 Mbit/s per link; SIGHUP re-reads each node's emulation file) and
# adds a fourth node as a learner, placed in the region farthest from the leader's (the longest
# round trip the snapshot can cross). The learner is started with `--join` and only its own
# addresses (it learns the members from the leader; `--learner-members all` gives it every
# node's, for binaries from before that). The leader's log is compacted, so the learner is
# caught up by a snapshot.
#
# Reports the time from `member add` to the learner's restored snapshot, the rate that makes,
# and the share of the emulated link's bandwidth; the learner's own log line (first chunk to
# restore) when the binary prints one.
#
# Usage: scripts/snapshot-stream.sh [--binary PATH] [--state-mib N] [--learner-members own|all]
#                                   [--keep]
# Ports 22510-22529. Needs about 4 GiB of memory and 3 GiB of disk under $TMPDIR.
set -euo pipefail

binary="$(dirname "$0")/../target/release/ringraft"
state_mib=256
keep=0
learner_members=own
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --state-mib) state_mib="$2"; shift 2 ;;
    --learner-members) learner_members="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--binary PATH] [--state-mib N] [--learner-members own|all] [--keep]" >&2
       exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "no ringraft binary at $binary (cargo build --release)" >&2; exit 1; }

bandwidth_mbit=1000
value_bytes=65536
# Keys enough for 1.6 x the state asked for, written about 1.5 times over: ~78% of them hold a
# value at the end, about 1.25 x STATE_MIB.
key_space=$(( state_mib * 1024 * 1024 * 16 / 10 / value_bytes ))
work="$(mktemp -d "${TMPDIR:-/tmp}/snapshot-stream.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$keep" = 0 ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

peer() { echo "127.0.0.1:$((22510 + $1))"; }
client() { echo "127.0.0.1:$((22520 + $1))"; }
members="1=$(peer 1)/$(client 1),2=$(peer 2)/$(client 2),3=$(peer 3)/$(client 3)"
cluster="1=$(client 1),2=$(client 2),3=$(client 3)"
# cross-region-3's regions (us-east, us-west, eu-central) for nodes 1-3; the learner's is set
# once the leader is known.
region=(x 0 1 2 -1)
region_names=(us-east us-west eu-central)
rtt=("0.5 60 80" "60 0.5 140" "80 140 0.5")

# Node $1's emulation file: empty (loopback), or cross-region-3's links to every other node.
write_emulation() {
  local id=$1 on=$2 f="$work/n$1.emulation.toml"
  : > "$f.tmp"
  if [ "$on" = 1 ]; then
    echo "seed = $id" >> "$f.tmp"
    for to in 1 2 3 4; do
      [ "$to" = "$id" ] && continue
      local row=(${rtt[${region[$id]}]})
      local ms=${row[${region[$to]}]}
      cat >> "$f.tmp" <<EOF
[[links]]
to = $to
delay_ms = $(awk "BEGIN { print $ms / 2 }")
jitter_ms = 2.0
jitter = "normal"
bandwidth_mbit = $bandwidth_mbit
EOF
    done
  fi
  mv "$f.tmp" "$f"
}

start_node() {
  local id=$1; shift
  mkdir -p "$work/n$id"
  "$binary" node --id "$id" --data-dir "$work/n$id" --emulation "$work/n$id.emulation.toml" \
    --peer-listen "$(peer "$id")" --client-listen "$(client "$id")" \
    --rtt-ms 140 --batch-entries-max 1024 --inflight-msgs-max 16 \
    --inflight-bytes-max $(( 2 * bandwidth_mbit * 1000000 / 8 * 140 / 1000 )) \
    --snapshot-threshold-entries 1000 --snapshot-log-factor 0 \
    "$@" > "$work/n$id.log" 2>&1 &
  pids+=($!)
}

# One figure of `ringraft stats` (lines of "name value" pairs).
stat_of() {
  "$binary" stats "$(client "$1")" 2>/dev/null | tr -s ' \n' '\n\n' \
    | awk -v k="$2" 'prev == k { print; exit } { prev = $0 }'
}

for id in 1 2 3; do
  write_emulation "$id" 0
  start_node "$id" --members "$members"
done

leader=""
for _ in $(seq 100); do
  for id in 1 2 3; do
    [ "$(stat_of "$id" role)" = "Leader" ] && leader=$id
  done
  [ -n "$leader" ] && break
  sleep 0.2
done
[ -n "$leader" ] || { echo "no leader after 20 s; logs in $work" >&2; keep=1; exit 1; }
echo "leader: node $leader; filling the state to >= $state_mib MiB (values of $value_bytes B over $key_space keys)"

snapshot_bytes() { stat -c %s "$work/n$leader/snapshot" 2>/dev/null || echo 0; }
writes=$(( key_space * 3 / 2 ))
for round in $(seq 8); do
  "$binary" load --cluster "$cluster" --connections 4 --inflight 4 --value-bytes "$value_bytes" \
    --key-space "$key_space" --warmup-s 0 --duration-s 10 --seed "$round" --quiet \
    > "$work/load-$round.txt" 2>&1 || true
  size=$(snapshot_bytes)
  echo "  after load round $round: leader's snapshot file $(( size >> 20 )) MiB"
  [ "$size" -ge $(( state_mib << 20 )) ] && break
done
[ "$(snapshot_bytes)" -ge $(( state_mib << 20 )) ] \
  || { echo "state stayed below $state_mib MiB; logs in $work" >&2; keep=1; exit 1; }

# The learner sits in the region farthest from the leader's.
leader_row=(${rtt[${region[$leader]}]})
far=0
for r in 0 1 2; do
  awk "BEGIN { exit !(${leader_row[$r]} > ${leader_row[$far]}) }" && far=$r
done
region[4]=$far
echo "emulation on: cross-region-3's links (RTT 60/80/140 ms, jitter 2 ms, $bandwidth_mbit Mbit/s);" \
  "the learner in ${region_names[$far]}, ${leader_row[$far]} ms from the leader"
for id in 1 2 3 4; do write_emulation "$id" 1; done
for id in 1 2 3; do kill -HUP "${pids[$((id - 1))]}"; done

# The learner knows only its own addresses; the leader tells it the rest when it adds it.
if [ "$learner_members" = all ]; then
  start_node 4 --join --members "$members,4=$(peer 4)/$(client 4)"
else
  start_node 4 --join --members "4=$(peer 4)/$(client 4)"
fi
sleep 1
size=$(snapshot_bytes)
echo "adding node 4 as a learner; leader's snapshot file $(( size >> 20 )) MiB"
start_ns=$(date +%s%N)
"$binary" member add "$(client "$leader")" 4 "$(peer 4)/$(client 4)" --learner
for _ in $(seq 6000); do
  installed=$(stat_of 4 snapshots || true)
  [ -n "$installed" ] && [ "$installed" -ge 1 ] && break
  sleep 0.05
done
end_ns=$(date +%s%N)
[ -n "$installed" ] && [ "$installed" -ge 1 ] \
  || { echo "the learner installed no snapshot within 300 s; logs in $work" >&2; keep=1; exit 1; }

line=$(grep -h "installed the snapshot" "$work/n4.log" | tail -1 || true)
[ -n "$line" ] && size=$(echo "$line" | sed -E 's/.*: ([0-9]+) bytes streamed.*/\1/')
awk -v ns=$(( end_ns - start_ns )) -v bytes="$size" -v mbit="$bandwidth_mbit" 'BEGIN {
  s = ns / 1e9; rate = bytes * 8 / 1e6 / s;
  printf "member add -> learner restored the snapshot: %.2f s for %.0f MiB: %.0f Mbit/s, %.0f%% of the emulated %d Mbit/s link (includes adding the member, probing its log and restoring)\n",
    s, bytes / 1048576, rate, 100 * rate / mbit, mbit }'
if [ -n "$line" ]; then
  echo "learner: ${line#ringraft: }"
  echo "$line" | sed -E 's/.*, ([0-9]+) Mbit\/s\)$/\1/' | awk -v mbit="$bandwidth_mbit" \
    '{ printf "streamed (first chunk to restore): %.0f%% of the emulated %d Mbit/s link\n", 100 * $1 / mbit, mbit }'
fi
echo "learner's view: role $(stat_of 4 role), applied $(stat_of 4 applied_index); leader's commit $(stat_of "$leader" commit_index)"
