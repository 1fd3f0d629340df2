#!/usr/bin/env bash
# Installs what the etcd comparison and its tests need, from Debian's own packages:
#   etcd-server        the etcd binary the bench harness launches (3.4.x on bookworm)
#   etcd-client        etcdctl, for checking a cluster by hand
#   protobuf-compiler  protoc, which the `etcd-client` crate (cargo feature `etcd`) needs to build
# Idempotent: installs only what is missing, with one `apt-get update` first (a fresh container's
# package lists are empty or stale, and `apt-get install` then fails with "unable to locate").
# Exits non-zero, saying what is missing, if anything could not be installed.
set -euo pipefail

packages=(etcd-server etcd-client protobuf-compiler)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "install-etcd: need root or sudo to install: ${missing[*]}" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update
    echo "installing: ${missing[*]}"
    # On a host running systemd the package also enables a system etcd on 2379/2380; the bench
    # harness never uses those ports, so it can stay. (In a container without systemd, nothing starts.)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${missing[@]}"
fi

for tool in etcd etcdctl protoc; do
    if ! command -v "$tool" >/dev/null; then
        echo "install-etcd: $tool is still missing after the install" >&2
        exit 1
    fi
done
echo "etcd:    $(etcd --version | head -n 1)"
echo "etcdctl: $(ETCDCTL_API=3 etcdctl version | head -n 1)"
echo "protoc:  $(protoc --version)"
