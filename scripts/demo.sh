#!/usr/bin/env bash
# The demo command:  bash scripts/demo.sh [--listen ADDR] [--seed N] [--history-days D] [--data-dir DIR]
# Builds ccmart (sharing the test command's build directory) and runs the embedded default: a simulated two-site
# contact center with HA pairs of IDBs → extraction → merge → mart → SQL over HTTP on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ccmart-target}"
exec cargo run --locked --quiet -- demo "$@"
