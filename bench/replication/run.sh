#!/usr/bin/env bash
# Replication benchmark: an active and a standby ccmart on 127.0.0.1 (see bench/README.md, "Replication").
#
#   bash bench/replication/run.sh
#
# Builds the release binary (the first release build takes about 40 minutes on 2 cores), then runs
# bench/replication/run.py with the environment it documents (HISTORY_DAYS, CALLS_PER_HOUR, AGENTS, CYCLE_SECS,
# STEADY_SECS, KEEP; BIN=path skips the build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ccmart-target}"
if [ -z "${BIN:-}" ]; then
    echo "replication-bench: cargo build --release --locked" >&2
    cargo build --release --locked
fi
command -v python3 >/dev/null || { echo "replication-bench: ERROR: python3 is required" >&2; exit 1; }
exec python3 bench/replication/run.py
