#!/usr/bin/env bash
# The project test command:  bash scripts/test.sh [extra libtest args, e.g. a test-name filter]
#
# Installs what the integration tests need and cannot skip without:
#   - PostgreSQL server binaries (the tests start a throwaway cluster; see tests/it/support/pg.rs)
#   - Debian's chromium (the status page is tested in a real headless browser)
#   - the Python modules duckdb and pyarrow (independent Parquet readers) and openapi-spec-validator (checks
#     /v1/openapi.json)
#   - the client libraries users run, for tests/clients/ (each compared with a real PostgreSQL on the same rows):
#     psycopg2, psycopg 3, asyncpg, SQLAlchemy 2 + pandas (PyPI), Node pg 8 (npm), pgjdbc (Debian)
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
# Independent checkers the tests call: duckdb and pyarrow (read exported Parquet), openapi-spec-validator (checks
# /v1/openapi.json against the OpenAPI 3.1 schema).
for spec in duckdb:duckdb pyarrow:pyarrow openapi_spec_validator:openapi-spec-validator psycopg2:psycopg2-binary \
    'psycopg:psycopg[binary]>=3.1' asyncpg:asyncpg 'sqlalchemy:sqlalchemy>=2,<3' pandas:pandas; do
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

if [ ! -f /usr/share/java/postgresql.jar ]; then
    echo "test.sh: no pgjdbc (/usr/share/java/postgresql.jar); running: apt-get install -y libpostgresql-jdbc-java"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y libpostgresql-jdbc-java
    [ -f /usr/share/java/postgresql.jar ] || {
        echo "test.sh: apt-get install libpostgresql-jdbc-java did not provide /usr/share/java/postgresql.jar" >&2
        exit 1
    }
fi
command -v java >/dev/null || { echo "test.sh: java is required (pgjdbc is tested with it); install a JDK 17" >&2; exit 1; }

export CCMART_NODE_MODULES="${CCMART_NODE_MODULES:-$HOME/.cache/ccmart-clients/node/node_modules}"
if [ ! -d "$CCMART_NODE_MODULES/pg" ]; then
    command -v npm >/dev/null || { echo "test.sh: npm is required (Node pg is tested); install nodejs and npm" >&2; exit 1; }
    echo "test.sh: Node module pg missing; running: npm install --prefix $(dirname "$CCMART_NODE_MODULES") pg@8"
    npm install --silent --no-audit --no-fund --prefix "$(dirname "$CCMART_NODE_MODULES")" pg@8 || {
        echo "test.sh: npm could not install pg@8" >&2
        exit 1
    }
fi

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
