#!/usr/bin/env bash
# Installs what the etcd comparison needs, from Debian's own packages:
#   etcd-server        the etcd binary the bench harness launches (3.4.x on bookworm)
#   etcd-client        etcdctl, for checking a cluster by hand
#   protobuf-compiler  protoc, which the `etcd-client` crate (cargo feature `etcd`) needs to build
# Idempotent: installs only what is missing, runs `apt-get update` only when it must.
set -euo pipefail

packages=(etcd-server etcd-client protobuf-compiler)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    # An apt list that has never been fetched makes `apt-get install` fail with "unable to locate".
    if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' || true)" ] \
        || ! apt-cache show etcd-server >/dev/null 2>&1; then
        $sudo apt-get update
    fi
    echo "installing: ${missing[*]}"
    # On a host running systemd the package also enables a system etcd on 2379/2380; the bench
    # harness never uses those ports, so it can stay. (In a container without systemd, nothing starts.)
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "${missing[@]}"
fi

echo "etcd:    $(etcd --version | head -n 1)"
echo "etcdctl: $(ETCDCTL_API=3 etcdctl version | head -n 1)"
echo "protoc:  $(protoc --version)"
