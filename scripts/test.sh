#!/usr/bin/env bash
# The project test command:  bash scripts/test.sh [extra libtest args, e.g. a test-name filter]
#
# Installs what the integration tests need and cannot skip without:
#   - PostgreSQL server binaries (the tests start a throwaway cluster; see tests/it/support/pg.rs)
#   - Debian's chromium (the status page is tested in a real headless browser)
#   - the Python modules duckdb (an independent Parquet reader) and openapi-spec-validator (checks /v1/openapi.json)
# then runs the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

trap 'echo "test.sh: finished in $((SECONDS / 60))m$((SECONDS % 60))s (exit status $?)"' EXIT

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
    echo "test.sh: no pg_ctl under /usr/lib/postgresql/*/bin; running: apt-get update && apt-get install -y postgresql"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
    compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || {
        echo "test.sh: apt-get install postgresql did not provide /usr/lib/postgresql/*/bin/pg_ctl" >&2
        exit 1
    }
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "test.sh: no /usr/bin/chromium (the status page is tested in a headless browser); running: apt-get install -y chromium"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
    [ -x /usr/bin/chromium ] || {
        echo "test.sh: apt-get install chromium did not provide /usr/bin/chromium" >&2
        exit 1
    }
fi

if ! command -v python3 >/dev/null; then
    echo "test.sh: python3 is required (the export test reads Parquet with the duckdb module); install it, e.g. apt-get install -y python3 python3-pip" >&2
    exit 1
fi
# Independent checkers the tests call: duckdb (reads exported Parquet), openapi-spec-validator (checks
# /v1/openapi.json against the OpenAPI 3.1 schema).
for spec in duckdb:duckdb openapi_spec_validator:openapi-spec-validator; do
    module=${spec%%:*}
    package=${spec#*:}
    if ! python3 -c "import $module" 2>/dev/null; then
        echo "test.sh: Python module $module missing; running: python3 -m pip install --quiet $package"
        python3 -m pip install --quiet "$package" || {
            echo "test.sh: could not install $package with pip (the tests need it as an independent checker)" >&2
            exit 1
        }
        python3 -c "import $module" || {
            echo "test.sh: $package was installed but python3 still cannot import $module" >&2
            exit 1
        }
    fi
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ccmart-target}"
# Unit tests (lib), CLI and the integration binary; there are no doc tests (each would link DataFusion again).
echo "test.sh: cargo test --locked --lib --bins --tests -- --test-threads=2 $* (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
log=$(mktemp)
set +e
cargo test --locked --lib --bins --tests -- --test-threads=2 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '; [0-9]+ failed' "$log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
rm -f "$log"
trap - EXIT
echo "test.sh: finished in $((SECONDS / 60))m$((SECONDS % 60))s (exit status $status)"
echo "tests: $passed passed, $failed failed"
exit "$status"
