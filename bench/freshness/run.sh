#!/usr/bin/env bash
# Freshness benchmark: one active ccmart under live simulated load after a history (see bench/README.md).
#
#   bash bench/freshness/run.sh
#
# Builds the release binary (the first release build takes about 40 minutes on 2 cores), then runs
# bench/freshness/run.py with the environment it documents (HISTORY_DAYS, CALLS_PER_HOUR, AGENTS, CYCLE_SECS,
# STEADY_SECS, KEEP; BIN=path skips the build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ccmart-target}"
if [ -z "${BIN:-}" ]; then
    echo "freshness-bench: cargo build --release --locked" >&2
    cargo build --release --locked
fi
command -v python3 >/dev/null || { echo "freshness-bench: ERROR: python3 is required" >&2; exit 1; }
exec python3 bench/freshness/run.py
