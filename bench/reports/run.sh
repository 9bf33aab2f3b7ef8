#!/usr/bin/env bash
# Saved-report benchmark: ccmart vs DuckDB vs PostgreSQL on the same data (see bench/README.md, "Reports").
#
#   bash bench/reports/run.sh
#
# Builds the release binary (the first release build takes about 40 minutes on 2 cores), installs what the
# comparison needs (the Python module duckdb; the PostgreSQL server when missing), then runs
# bench/reports/run.py with the environment it documents (DAYS, CALLS_PER_DAY, AGENTS, REPS, KEEP; BIN=path skips
# the build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ccmart-target}"
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && [ -z "${CCMART_PG_BIN:-}" ]; then
    as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
fi
command -v python3 >/dev/null || { echo "reports-bench: ERROR: python3 is required" >&2; exit 1; }
python3 -c "import duckdb" 2>/dev/null || python3 -m pip install --quiet duckdb
if [ -z "${BIN:-}" ]; then
    echo "reports-bench: cargo build --release --locked" >&2
    cargo build --release --locked
fi
exec python3 bench/reports/run.py
