#!/usr/bin/env bash
# The etcd comparison in one command: installs Debian's etcd and protoc (scripts/install-etcd.sh),
# builds ringraft with the `etcd` feature, and runs a bench config (default 3node-1kb) against
# ringraft and a 3-member etcd cluster in the same run, same machine, same disk, same workload.
#   scripts/compare-etcd.sh [bench-configs/NAME.toml] [extra ringraft bench flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-etcd.sh
config="${1:-bench-configs/3node-1kb.toml}"
shift || true
cargo run --release --features etcd -- bench "$config" --compare etcd "$@"
