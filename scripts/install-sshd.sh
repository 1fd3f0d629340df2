#!/usr/bin/env bash
# Installs the OpenSSH server that tests/multihost_bench.rs starts (on loopback, with keys it
# generates; nothing is enabled system-wide). Debian's package `openssh-server`.
set -euo pipefail
if [[ -x /usr/sbin/sshd ]] && command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; then
    exit 0
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends openssh-server openssh-client
