#!/usr/bin/env bash
# ETL benchmark: ccmart batch extraction + transformation vs `psql COPY` of the same source rows.
#
#   bash bench/etl/run.sh
#
# Environment (all optional):
#   DAYS=30              days of simulated history
#   CALLS_PER_DAY=50000  inbound calls per day, total over both simulated sites
#   AGENTS=300           agents, total over both sites
#   CHUNK_ROWS=20000     extract.chunk_rows of the ccmart config
#   KEEP=1               keep the work directory (config, logs, PostgreSQL cluster, ccmart data dir)
#   CCMART_PG_BIN=DIR    directory with initdb/pg_ctl/psql (default: highest /usr/lib/postgresql/*/bin)
#   BIN=path             the ccmart binary to measure (skips the release build; for A/B runs of two builds,
#                        whose figures are comparable only with each other); BIN_REV=rev names what it is
#
# What it does (see bench/README.md): builds ccmart in release mode, starts a throwaway PostgreSQL cluster on a
# free 127.0.0.1 port, creates 4 IDBs (2 HA pairs), fills them with `ccmart simulate`, then times
#   (a) `ccmart run --exit-when-idle` (extract + stage + merge + transform + publish to Delta), and
#   (b) `psql -c "COPY (SELECT <contract columns> FROM <table>) TO STDOUT"` for every IDB and contract table,
# and prints/writes a summary (bench/results/etl-<UTC timestamp>.json).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DAYS="${DAYS:-30}"
CALLS_PER_DAY="${CALLS_PER_DAY:-50000}"
AGENTS="${AGENTS:-300}"
CHUNK_ROWS="${CHUNK_ROWS:-20000}"
KEEP="${KEEP:-}"

log() { echo "etl-bench: $*" >&2; }
die() {
    echo "etl-bench: ERROR: $*" >&2
    exit 1
}
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
apt_install() {
    log "installing $* with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" ||
        { as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"; }
}
now() { date +%s.%N; }
# elapsed START END -> seconds with 3 decimals
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# div A B -> A/B with 1 decimal (0 when B is 0)
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else printf "0" }'; }

[[ "$DAYS" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "DAYS must be a number, got '$DAYS'"
[[ "$CALLS_PER_DAY" =~ ^[0-9]+$ ]] || die "CALLS_PER_DAY must be an integer, got '$CALLS_PER_DAY'"
[[ "$AGENTS" =~ ^[0-9]+$ && "$AGENTS" -ge 2 ]] || die "AGENTS must be an integer >= 2, got '$AGENTS'"
[[ "$CHUNK_ROWS" =~ ^[0-9]+$ ]] || die "CHUNK_ROWS must be an integer, got '$CHUNK_ROWS'"

# ---------------------------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------------------------
[ -x /usr/bin/time ] || apt_install time
[ -x /usr/bin/time ] || die "/usr/bin/time is still missing after apt-get install time"

find_pg_bin() {
    if [ -n "${CCMART_PG_BIN:-}" ]; then
        echo "$CCMART_PG_BIN"
        return
    fi
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    echo "$d"
}
PG_BIN="$(find_pg_bin)"
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
    [ -n "${CCMART_PG_BIN:-}" ] && die "CCMART_PG_BIN=$CCMART_PG_BIN holds no pg_ctl"
    apt_install postgresql
    PG_BIN="$(find_pg_bin)"
fi
for t in initdb pg_ctl psql; do
    [ -x "$PG_BIN/$t" ] || die "$PG_BIN/$t not found (install the PostgreSQL server: apt-get install -y postgresql)"
done
PSQL="$PG_BIN/psql"
AS_ROOT=0
if [ "$(id -u)" -eq 0 ]; then
    AS_ROOT=1
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run the server as (apt-get install -y postgresql creates it)"
fi
# PostgreSQL refuses to run as root: server tools run as `postgres` then.
pg_server() {
    if [ "$AS_ROOT" -eq 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
export NO_COLOR=1 # plain tracing output in the saved logs
# Keep PG* variables of the caller from redirecting our connections.
while IFS='=' read -r name _; do
    case "$name" in PG*) unset "$name" ;; esac
done < <(env)

# ---------------------------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------------------------
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ccmart-target}"
if [ -n "${BIN:-}" ]; then
    CCMART="$BIN"
    [ -x "$CCMART" ] || die "BIN=$BIN is not an executable"
    log "measuring $CCMART (BIN set: no build)"
else
    CCMART="$CARGO_TARGET_DIR/release/ccmart"
    log "cargo build --release --locked (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
    log "  the first release build compiles DataFusion, Delta and Arrow: it takes a while (15-40 min on 2 cores)"
    cargo build --release --locked
    [ -x "$CCMART" ] || die "release binary $CCMART not found after the build"
fi
GIT_REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
# "-dirty": uncommitted changes to what the binary is built from (bench/ edits do not count).
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null || true)" ]; then
    GIT_REV="$GIT_REV-dirty"
fi
# A binary given with BIN was built from whatever it was built from: say so (BIN_REV names it).
if [ -n "${BIN:-}" ]; then
    GIT_REV="${BIN_REV:-unknown} (BIN=$BIN)"
fi

# ---------------------------------------------------------------------------------------------------------------
# Work dir and throwaway PostgreSQL cluster
# ---------------------------------------------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/ccmart-etl-bench.XXXXXX)"
chmod 755 "$WORK" # the postgres user must reach $WORK/pg
PG_DIR="$WORK/pg"
mkdir -p "$PG_DIR"
if [ "$AS_ROOT" -eq 1 ]; then chown -R postgres: "$PG_DIR"; fi
PG_STARTED=0

cleanup() {
    local rc=$?
    if [ "$PG_STARTED" -eq 1 ]; then
        (cd / && pg_server "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1) ||
            (cd / && pg_server "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1) || true
    fi
    if [ -n "$KEEP" ]; then
        log "KEEP set: work directory kept at $WORK (PostgreSQL stopped; start it again on port ${PORT:-?} with" \
            "(cd / && runuser -u postgres -- $PG_BIN/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w start)," \
            "then: $CCMART run --config $WORK/ccmart.toml --exit-when-idle)"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

log "initdb in $PG_DIR/data"
(cd "$PG_DIR" && pg_server "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --no-locale --no-sync \
    >"$WORK/initdb.log" 2>&1) || {
    cat "$WORK/initdb.log" >&2
    die "initdb failed"
}
PORT=""
for attempt in 1 2 3; do
    PORT="$(free_port)"
    # Settings go into postgresql.conf (the last occurrence wins), so a KEEP'd cluster restarts with plain pg_ctl.
    # fsync/synchronous_commit/full_page_writes off: this is the SOURCE side, only `ccmart simulate` writes to it;
    # it speeds up filling the IDBs and does not change what reads cost.
    cat >>"$PG_DIR/data/postgresql.conf" <<EOF
# bench/etl/run.sh
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if (cd "$PG_DIR" && pg_server "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 120 start >/dev/null); then
        PG_STARTED=1
        break
    fi
    if ! grep -qE 'could not bind|already in use' "$PG_DIR/log" 2>/dev/null || [ "$attempt" -eq 3 ]; then
        cat "$PG_DIR/log" >&2 || true
        die "pg_ctl start failed"
    fi
    : >"$PG_DIR/log"
done
log "PostgreSQL $("$PSQL" -X -A -t -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -c 'SHOW server_version') on 127.0.0.1:$PORT"

psql_db() { # DB SQL...
    local db="$1"
    shift
    "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d "$db" "$@"
}

# 4 IDBs = 2 HA pairs; simulated site s feeds the s-th pair in pair-name order.
IDB_NAMES=(site1-voice-a site1-voice-b site2-voice-a site2-voice-b)
IDB_PAIRS=(site1-voice site1-voice site2-voice site2-voice)
IDB_SITES=(site1 site2 site2 site1)
IDB_DBS=(idb_site1_a idb_site1_b idb_site2_a idb_site2_b)
for db in "${IDB_DBS[@]}"; do
    psql_db postgres -c "CREATE DATABASE $db"
done

# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------
AGENTS_PER_SITE=$((AGENTS / 2))
CALLS_PER_HOUR="$(awk -v c="$CALLS_PER_DAY" 'BEGIN { printf "%.4f", c / 2 / 24 }')"
CONFIG="$WORK/ccmart.toml"
{
    cat <<EOF
# Generated by bench/etl/run.sh
[appliance]
site = "site1"
data_dir = "$WORK/ccmart-data"
listen = "127.0.0.1:0"   # --exit-when-idle starts no HTTP server

[extract]
chunk_rows = $CHUNK_ROWS

[simulator]
history_days = $DAYS
live = false

[simulator.settings]
sites = 2
agents_per_site = $AGENTS_PER_SITE
calls_per_hour = $CALLS_PER_HOUR   # per site: CALLS_PER_DAY / 2 / 24
record_truth = false
EOF
    for i in "${!IDB_NAMES[@]}"; do
        cat <<EOF

[[idb]]
name = "${IDB_NAMES[$i]}"
pair = "${IDB_PAIRS[$i]}"
site = "${IDB_SITES[$i]}"
url = "postgres://postgres@127.0.0.1:$PORT/${IDB_DBS[$i]}"
EOF
    done
} >"$CONFIG"
"$CCMART" check-config --config "$CONFIG" >"$WORK/check-config.out" || die "ccmart check-config rejected $CONFIG"

# ---------------------------------------------------------------------------------------------------------------
# Fill the IDBs (timed, not part of the ratio)
# ---------------------------------------------------------------------------------------------------------------
log "ccmart simulate: $DAYS day(s), $CALLS_PER_DAY calls/day over 2 sites ($CALLS_PER_HOUR calls/hour/site), $AGENTS agents"
t0="$(now)"
"$CCMART" simulate --config "$CONFIG" --days "$DAYS" 2> >(tee "$WORK/simulate.log" >&2) ||
    die "ccmart simulate failed (log: $WORK/simulate.log; run with KEEP=1 to keep it)"
t1="$(now)"
SIM_SECS="$(elapsed "$t0" "$t1")"
log "simulate took ${SIM_SECS}s"

# Bulk-loaded tables: VACUUM ANALYZE so that neither reader pays for setting hint bits (a real IDB is vacuumed).
t0="$(now)"
for db in "${IDB_DBS[@]}"; do
    psql_db "$db" -c "VACUUM ANALYZE"
done
VACUUM_SECS="$(elapsed "$t0" "$(now)")"

# ---------------------------------------------------------------------------------------------------------------
# Source rows: the tables and columns of `ccmart contract`
# ---------------------------------------------------------------------------------------------------------------
mapfile -t CONTRACT < <("$CCMART" contract)
[ "${#CONTRACT[@]}" -gt 0 ] || die "ccmart contract printed nothing"
declare -A TABLE_ROWS=()
SOURCE_ROWS=0
UPDATED_ROWS=0
for line in "${CONTRACT[@]}"; do
    table="${line%% *}"
    TABLE_ROWS[$table]=0
    for db in "${IDB_DBS[@]}"; do
        read -r n u < <(psql_db "$db" -F ' ' -c "SELECT count(*), count(GSYS_USEQ) FROM $table")
        TABLE_ROWS[$table]=$((TABLE_ROWS[$table] + n))
        SOURCE_ROWS=$((SOURCE_ROWS + n))
        UPDATED_ROWS=$((UPDATED_ROWS + u))
    done
done
# Both IDBs of a pair hold the same calls: count G_CALL in one IDB of each pair.
CALLS="$(for db in idb_site1_a idb_site2_a; do psql_db "$db" -c "SELECT count(*) FROM G_CALL"; done |
    awk '{ s += $1 } END { printf "%d", s }')"
SOURCE_BYTES="$(for db in "${IDB_DBS[@]}"; do psql_db "$db" -c "SELECT pg_database_size(current_database())"; done |
    awk '{ s += $1 } END { printf "%d", s }')"
log "source: $SOURCE_ROWS rows in ${#CONTRACT[@]} tables x 4 IDBs ($UPDATED_ROWS with GSYS_USEQ set), $CALLS calls," \
    "$(awk -v b="$SOURCE_BYTES" 'BEGIN { printf "%.0f", b / 1048576 }') MiB on disk"

# ---------------------------------------------------------------------------------------------------------------
# Comparison system: psql COPY of the same columns of the same rows, sequentially
# ---------------------------------------------------------------------------------------------------------------
log "psql COPY (SELECT <contract columns> FROM <table>) TO STDOUT, 4 IDBs x ${#CONTRACT[@]} tables"
declare -A TABLE_COPY_SECS=()
t_copy0="$(now)"
for line in "${CONTRACT[@]}"; do
    table="${line%% *}"
    cols="${line#* }"
    ts="$(now)"
    for db in "${IDB_DBS[@]}"; do
        psql_db "$db" -c "COPY (SELECT $cols FROM $table) TO STDOUT" >/dev/null
    done
    TABLE_COPY_SECS[$table]="$(elapsed "$ts" "$(now)")"
done
COPY_SECS="$(elapsed "$t_copy0" "$(now)")"
log "COPY took ${COPY_SECS}s"
# How much of that is starting psql and connecting (the same number of `psql -c "SELECT 1"`), reported separately.
t0="$(now)"
for line in "${CONTRACT[@]}"; do
    for db in "${IDB_DBS[@]}"; do
        psql_db "$db" -c "SELECT 1" >/dev/null
    done
done
PSQL_OVERHEAD_SECS="$(elapsed "$t0" "$(now)")"

# ---------------------------------------------------------------------------------------------------------------
# ccmart: extract + stage + merge + transform + publish, batch mode
# ---------------------------------------------------------------------------------------------------------------
log "ccmart run --exit-when-idle (stderr: cycle lines)"
t0="$(now)"
set +e
/usr/bin/time -v -o "$WORK/ccmart.time" "$CCMART" run --config "$CONFIG" --exit-when-idle \
    >"$WORK/ccmart.out" 2> >(tee "$WORK/ccmart.err" >&2)
RUN_RC=$?
set -e
t1="$(now)"
sleep 0.2 # let tee flush
if [ "$RUN_RC" -ne 0 ]; then
    log "ccmart run exited with status $RUN_RC; last lines of stderr:"
    tail -n 30 "$WORK/ccmart.err" >&2 || true
    die "ccmart run failed"
fi
CCMART_SECS="$(elapsed "$t0" "$t1")"
CCMART_JSON="$(grep -E '^\{.*"rows_staged"' "$WORK/ccmart.out" | tail -n 1 || true)"
[ -n "$CCMART_JSON" ] || die "ccmart run printed no JSON line (stdout: $(cat "$WORK/ccmart.out"))"
RSS_KB="$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/ccmart.time")"
RSS_MIB="$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')"
CPU_USER="$(awk -F': ' '/User time \(seconds\)/ { print $2 }' "$WORK/ccmart.time")"
CPU_SYS="$(awk -F': ' '/System time \(seconds\)/ { print $2 }' "$WORK/ccmart.time")"
CPU_PCT="$(awk -F': ' '/Percent of CPU this job got/ { print $2 }' "$WORK/ccmart.time")"
json_field() { sed -nE "s/.*\"$1\": *([0-9.]+).*/\1/p" <<<"$CCMART_JSON"; }
ROWS_STAGED="$(json_field rows_staged)"
CYCLES="$(json_field cycles)"
QUARANTINED="$(json_field quarantined)"
MART_VERSION="$(json_field mart_version)"
# Phases summed over the cycle lines ("... (extract N ms, transform N ms, publish N ms; ...)"), if printed.
read -r PH_EXTRACT PH_TRANSFORM PH_PUBLISH < <(awk '
    /^  cycle [0-9]+:/ {
        for (i = 1; i <= NF; i++) {
            if ($i ~ /^\(?extract$/) e += $(i + 1)
            if ($i == "transform" && $(i + 2) ~ /^ms/) t += $(i + 1)
            if ($i == "publish" && $(i + 2) ~ /^ms/) p += $(i + 1)
        }
    }
    END { printf "%d %d %d\n", e, t, p }' "$WORK/ccmart.err")
STAGING_BYTES="$(du -sb "$WORK/ccmart-data" 2>/dev/null | awk '{ print $1 }')"

# ---------------------------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------------------------
CCMART_RPS="$(div "$SOURCE_ROWS" "$CCMART_SECS")"
COPY_RPS="$(div "$SOURCE_ROWS" "$COPY_SECS")"
RATIO="$(awk -v a="$COPY_SECS" -v b="$CCMART_SECS" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "0" }')"
RATIO_NET="$(awk -v a="$COPY_SECS" -v o="$PSQL_OVERHEAD_SECS" -v b="$CCMART_SECS" \
    'BEGIN { if (b > 0) printf "%.3f", (a - o) / b; else printf "0" }')"
RATIO_OK="$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.5) ? "true" : "false" }')"
RSS_OK="$(awk -v m="$RSS_MIB" 'BEGIN { print (m <= 1024) ? "true" : "false" }')"
pass() { if [ "$1" = true ]; then echo PASS; else echo FAIL; fi; }

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
cat <<EOF

=== ccmart ETL benchmark ($STAMP, ccmart $GIT_REV, $(nproc) CPU, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM)
workload        : DAYS=$DAYS CALLS_PER_DAY=$CALLS_PER_DAY AGENTS=$AGENTS CHUNK_ROWS=$CHUNK_ROWS
calls simulated : $CALLS
simulate        : ${SIM_SECS}s (not part of the ratio; VACUUM ANALYZE ${VACUUM_SECS}s)
source rows     : $SOURCE_ROWS (${#CONTRACT[@]} contract tables x 4 IDBs; $UPDATED_ROWS of them updated, GSYS_USEQ set)
ccmart run      : ${CCMART_SECS}s wall, user ${CPU_USER}s sys ${CPU_SYS}s (${CPU_PCT} CPU), $CYCLES cycles, rows_staged $ROWS_STAGED, quarantined $QUARANTINED, mart version $MART_VERSION
ccmart phases   : extract ${PH_EXTRACT} ms, transform ${PH_TRANSFORM} ms, publish ${PH_PUBLISH} ms (summed over cycles)
psql COPY       : ${COPY_SECS}s wall (of which ~${PSQL_OVERHEAD_SECS}s is starting $((${#CONTRACT[@]} * 4)) psql processes and connecting)
ccmart rows/s   : $CCMART_RPS
COPY rows/s     : $COPY_RPS
ratio ccmart/COPY : $RATIO   (target >= 0.5: $(pass "$RATIO_OK"); net of psql start-up: $RATIO_NET)
ccmart peak RSS : ${RSS_MIB} MiB   (target <= 1024: $(pass "$RSS_OK"))
per table (source rows, COPY seconds over 4 IDBs):
EOF
for line in "${CONTRACT[@]}"; do
    table="${line%% *}"
    printf '  %-28s %10s rows %8ss\n' "$table" "${TABLE_ROWS[$table]}" "${TABLE_COPY_SECS[$table]}"
done

mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/etl-$STAMP.json"
{
    printf '{\n'
    printf '  "benchmark": "etl",\n  "utc": "%s",\n  "git_rev": "%s",\n' "$STAMP" "$GIT_REV"
    printf '  "machine": {"nproc": %s, "mem_kib": %s, "kernel": "%s", "postgres": "%s"},\n' \
        "$(nproc)" "$(awk '/MemTotal/ { print $2 }' /proc/meminfo)" "$(uname -r)" \
        "$(psql_db postgres -c 'SHOW server_version' | tr -d '"')"
    printf '  "params": {"days": %s, "calls_per_day": %s, "agents": %s, "chunk_rows": %s},\n' \
        "$DAYS" "$CALLS_PER_DAY" "$AGENTS" "$CHUNK_ROWS"
    printf '  "calls_simulated": %s,\n  "simulate_seconds": %s,\n  "vacuum_seconds": %s,\n' \
        "$CALLS" "$SIM_SECS" "$VACUUM_SECS"
    printf '  "source_rows": %s,\n  "source_rows_updated": %s,\n  "source_db_bytes": %s,\n' \
        "$SOURCE_ROWS" "$UPDATED_ROWS" "$SOURCE_BYTES"
    printf '  "ccmart": {"wall_seconds": %s, "rows_per_second": %s, "peak_rss_kib": %s, "peak_rss_mib": %s, ' \
        "$CCMART_SECS" "$CCMART_RPS" "$RSS_KB" "$RSS_MIB"
    printf '"user_seconds": %s, "sys_seconds": %s, "data_dir_bytes": %s, ' \
        "$CPU_USER" "$CPU_SYS" "${STAGING_BYTES:-0}"
    printf '"phases_ms": {"extract": %s, "transform": %s, "publish": %s}, "output": %s},\n' \
        "$PH_EXTRACT" "$PH_TRANSFORM" "$PH_PUBLISH" "$CCMART_JSON"
    printf '  "copy": {"wall_seconds": %s, "rows_per_second": %s, "psql_startup_seconds": %s},\n' \
        "$COPY_SECS" "$COPY_RPS" "$PSQL_OVERHEAD_SECS"
    printf '  "ratio_ccmart_over_copy": %s,\n  "ratio_net_of_psql_startup": %s,\n' "$RATIO" "$RATIO_NET"
    printf '  "targets": {"ratio_min": 0.5, "ratio_ok": %s, "rss_max_mib": 1024, "rss_ok": %s},\n' "$RATIO_OK" "$RSS_OK"
    printf '  "tables": {'
    sep=""
    for line in "${CONTRACT[@]}"; do
        table="${line%% *}"
        printf '%s\n    "%s": {"rows": %s, "copy_seconds": %s}' "$sep" "$table" "${TABLE_ROWS[$table]}" \
            "${TABLE_COPY_SECS[$table]}"
        sep=","
    done
    printf '\n  }\n}\n'
} >"$OUT"
log "results written to ${OUT#"$ROOT"/}"
