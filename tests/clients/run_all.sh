#!/usr/bin/env bash
# Run the mirror and every client-compatibility check script.
#   tests/clients/run_all.sh --ccmart DSN --postgres DSN [--no-mirror]
# Exit status is non-zero if the mirror or any check script failed.
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
CCMART="${CCMART_DSN:-}"; POSTGRES="${POSTGRES_DSN:-}"; MIRROR=1
while [ $# -gt 0 ]; do
  case "$1" in
    --ccmart) CCMART="$2"; shift 2;;
    --postgres) POSTGRES="$2"; shift 2;;
    --no-mirror) MIRROR=0; shift;;
    *) echo "usage: $0 --ccmart DSN --postgres DSN [--no-mirror]" >&2; exit 2;;
  esac
done
[ -n "$CCMART" ] && [ -n "$POSTGRES" ] || { echo "--ccmart and --postgres are required" >&2; exit 2; }

PYTHON="${PYTHON:-python3}"
NODE="${NODE:-node}"
JAVA="${JAVA:-java}"
JDBC_JAR="${JDBC_JAR:-/usr/share/java/postgresql.jar}"
export CCMART_NODE_MODULES="${CCMART_NODE_MODULES:-/root/.cache/ccmart-clients/node/node_modules}"
SCRIPT_TIMEOUT="${SCRIPT_TIMEOUT:-600}"

declare -a NAMES=() RCS=()
run() {  # name, command...
  local name="$1"; shift
  echo "=== $name" >&2
  timeout "$SCRIPT_TIMEOUT" "$@"
  local rc=$?
  NAMES+=("$name"); RCS+=("$rc")
  echo "=== $name: exit $rc" >&2
}

if [ "$MIRROR" = 1 ]; then
  run mirror "$PYTHON" "$HERE/mirror.py" --ccmart "$CCMART" --postgres "$POSTGRES"
  if [ "${RCS[0]}" != 0 ]; then echo "mirror failed; not running the checks" >&2; exit 1; fi
fi
run psycopg2   "$PYTHON" "$HERE/psycopg2_check.py"   --ccmart "$CCMART" --postgres "$POSTGRES"
run psycopg3   "$PYTHON" "$HERE/psycopg3_check.py"   --ccmart "$CCMART" --postgres "$POSTGRES"
run asyncpg    "$PYTHON" "$HERE/asyncpg_check.py"    --ccmart "$CCMART" --postgres "$POSTGRES"
run sqlalchemy "$PYTHON" "$HERE/sqlalchemy_check.py" --ccmart "$CCMART" --postgres "$POSTGRES"
run psql       "$PYTHON" "$HERE/psql_check.py"       --ccmart "$CCMART" --postgres "$POSTGRES"
run node-pg    env TZ=America/New_York "$NODE" "$HERE/node_pg_check.js" --ccmart "$CCMART" --postgres "$POSTGRES"
run pgjdbc     "$JAVA" -Duser.timezone=Europe/Berlin -cp "$JDBC_JAR" "$HERE/JdbcCheck.java" --ccmart "$CCMART" --postgres "$POSTGRES"

status=0
echo "--- summary" >&2
for i in "${!NAMES[@]}"; do
  r="${RCS[$i]}"; verdict=ok
  [ "$r" != 0 ] && { verdict=FAILED; status=1; }
  printf '%-12s exit %-3s %s\n' "${NAMES[$i]}" "$r" "$verdict" >&2
done
exit $status
