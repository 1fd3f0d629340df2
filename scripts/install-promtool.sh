#!/usr/bin/env bash
# Installs Prometheus' `promtool` (Debian's `prometheus` package), with which
# tests/node_metrics.rs checks a node's /metrics output as Prometheus itself would parse it.
# Without it that test checks with ringraft's own parser only and says so.
# Idempotent: installs only when promtool is missing.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
if ! apt-cache show prometheus >/dev/null 2>&1; then
    $sudo apt-get update
fi
# --no-install-recommends: promtool is all the tests use; in a container without systemd the
# package's Prometheus server is not started.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends prometheus
