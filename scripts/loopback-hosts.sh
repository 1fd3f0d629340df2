#!/usr/bin/env bash
# Stands in for real hosts on one machine: starts one sshd per loopback address (127.0.0.21-24;
# on Linux all of 127/8 reaches `lo`), each with generated keys, and writes an inventory for
# `ringraft bench CONFIG --hosts DIR/hosts.toml`: three node hosts (which also run etcd for
# --compare etcd) and one load host. Everything lives under DIR; `--stop DIR` stops the sshds.
#
#   bash scripts/loopback-hosts.sh /tmp/hosts          # start, print the inventory's path
#   bash scripts/loopback-hosts.sh --stop /tmp/hosts   # stop
#
# Needs root and openssh-server (scripts/install-sshd.sh). The "hosts" share this machine's
# CPUs and disk, so a run measures what the SSH-driven harness costs against a local run, not
# what separate machines would do.
set -euo pipefail
ADDRS=(127.0.0.21 127.0.0.22 127.0.0.23 127.0.0.24)
PORT=${SSH_PORT:-2222}

if [ "${1:-}" = "--stop" ]; then
    dir=${2:?usage: $0 --stop DIR}
    for pid in "$dir"/sshd-*.pid; do
        [ -e "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
    exit 0
fi
dir=${1:?usage: $0 DIR | --stop DIR}
dir=$(realpath -m "$dir")
mkdir -p "$dir" /run/sshd
[ -e "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$dir/host_key"
[ -e "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
: > "$dir/hosts.toml"
for i in "${!ADDRS[@]}"; do
    addr=${ADDRS[$i]}
    n=$((i + 1))
    cat > "$dir/sshd-$addr.conf" <<CONF
ListenAddress $addr:$PORT
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile $dir/sshd-$addr.pid
LogLevel ERROR
MaxStartups 100
CONF
    if ! [ -e "$dir/sshd-$addr.pid" ] || ! kill -0 "$(cat "$dir/sshd-$addr.pid")" 2>/dev/null; then
        /usr/sbin/sshd -f "$dir/sshd-$addr.conf" -E "$dir/sshd-$addr.log"
    fi
    if [ "$n" -le 3 ]; then roles='["node"]'; name="node$n"; else roles='["load"]'; name="client1"; fi
    cat >> "$dir/hosts.toml" <<HOST
[[hosts]]
name = "$name"
address = "$addr"
ssh = "root@$addr"
ssh_port = $PORT
identity_file = "$dir/client_key"
ssh_options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"]
workdir = "$dir/$name"
roles = $roles

HOST
done
for addr in "${ADDRS[@]}"; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/$addr/$PORT") 2>/dev/null && break
        sleep 0.1
    done
done
echo "$dir/hosts.toml"
