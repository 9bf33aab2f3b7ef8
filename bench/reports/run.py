#!/usr/bin/env python3
"""Saved-report benchmark: every report of queries/ through ccmart, DuckDB and PostgreSQL on the same data.

    bash bench/reports/run.sh          (builds the release binary, then runs this)

Environment (all optional):
    BIN=path              the ccmart binary (default: $CARGO_TARGET_DIR/release/ccmart)
    DAYS=30               days of simulated history
    CALLS_PER_DAY=50000   inbound calls per day, both sites together
    AGENTS=150            agents per site
    REPS=3                runs per report and system (the median is reported)
    CCMART_PG_BIN=dir     PostgreSQL server binaries (default: highest /usr/lib/postgresql/*/bin)
    KEEP=1                keep the work directory

What it does (see bench/README.md, "Reports"): one ccmart builds its mart from the embedded simulator and vacuums
it down to the newest version, so its Delta tables hold exactly the current Parquet files. Then, per saved report
with its default parameters, the median of REPS runs of:
    ccmart      GET /v1/reports/{name}?format=json on the running appliance (HTTP and JSON encoding included)
    DuckDB      the same SQL on views over the same Parquet files (read_parquet, hive partitions), fetched in Python
    PostgreSQL  the same SQL (DOUBLE spelled NUMERIC) on the same tables loaded with COPY, timed by psql \\timing
Row counts must agree. Ratios are printed per report and as geometric means.
"""
import glob
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/ccmart-target"))
BIN = os.environ.get("BIN", os.path.join(TARGET, "release", "ccmart"))
DAYS = float(os.environ.get("DAYS", "30"))
CALLS_PER_DAY = float(os.environ.get("CALLS_PER_DAY", "50000"))
AGENTS = int(os.environ.get("AGENTS", "150"))
REPS = int(os.environ.get("REPS", "3"))
KEEP = os.environ.get("KEEP")


def log(msg):
    print(f"reports-bench: {msg}", file=sys.stderr, flush=True)


def die(msg):
    raise SystemExit(f"reports-bench: ERROR: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=600):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post(url, timeout=60):
    req = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status


def query(base, sql):
    req = urllib.request.Request(f"{base}/v1/query", data=json.dumps({"sql": sql}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def wait(what, pred, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            v = pred()
        except Exception:
            v = None
        if v:
            return v
        time.sleep(0.5)
    die(f"timed out after {limit} s waiting for {what}")


def pg_bin():
    d = os.environ.get("CCMART_PG_BIN")
    if not d:
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in re.findall(r"\d+", p)])
        d = dirs[-1] if dirs else ""
    if not d or not os.path.exists(os.path.join(d, "pg_ctl")):
        die("PostgreSQL server binaries not found: apt-get install -y postgresql, or set CCMART_PG_BIN")
    return d


def params_of(sql):
    """Default values of the report's parameters (`-- param: name:type=default`)."""
    return dict(re.findall(r"^-- param: (\w+):\w+=(.*?)\s+\S", sql, re.M))


def median_secs(f):
    times = []
    result = None
    for _ in range(REPS):
        t = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main():
    if not os.path.exists(BIN):
        die(f"{BIN} does not exist; run bench/reports/run.sh (builds it)")
    try:
        import duckdb  # noqa: F401
    except ImportError:
        die("the Python module duckdb is missing: python3 -m pip install duckdb")
    work = tempfile.mkdtemp(prefix="ccmart-reports-bench-")
    os.chmod(work, 0o755)
    cleanup = []
    try:
        run(work, cleanup)
    finally:
        for c in reversed(cleanup):
            c()
        if KEEP:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(work, cleanup):
    import duckdb

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = os.path.join(work, "ccmart")
    cfg = os.path.join(work, "ccmart.toml")
    idbs = "".join(
        f'\n[[idb]]\nname = "{n}"\npair = "{p}"\nsite = "{s}"\nurl = "embedded:"\n'
        for n, p, s in [("site1-voice-a", "site1-voice", "site1"), ("site1-voice-b", "site1-voice", "site2"),
                        ("site2-voice-a", "site2-voice", "site2"), ("site2-voice-b", "site2-voice", "site1")]
    )
    with open(cfg, "w") as f:
        f.write(
            f'[appliance]\ndata_dir = "{data}"\nlisten = "127.0.0.1:{port}"\nmetrics_listen = ""\n\n'
            '[pgwire]\nlisten = ""\n\n[maintenance]\ninterval_secs = 0\nversion_retention_secs = 0\n\n'
            "[query]\ntimeout_secs = 600\nmax_rows = 10000000\nmax_result_mb = 4096\nmemory_limit_mb = 4096\n"
            + idbs
            + f"\n[simulator]\nhistory_days = {DAYS}\nlive = false\n[simulator.settings]\n"
            f"agents_per_site = {AGENTS}\ncalls_per_hour = {CALLS_PER_DAY / 48}\nrecord_truth = false\n"
        )
    subprocess.run([BIN, "check-config", "--config", cfg], check=True, stdout=subprocess.DEVNULL)

    log(f"building the mart: {DAYS:g} day(s) x {CALLS_PER_DAY:g} calls/day, {AGENTS} agents per site")
    t = time.time()
    proc = subprocess.Popen([BIN, "run", "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "ccmart.log"), "w"), env={**os.environ, "RUST_LOG": "warn"})
    cleanup.append(lambda: (proc.kill(), proc.wait()))

    def idle():
        # A long history is simulated a day at a time, with the appliance idle in between: the mart is complete
        # once `ccmart run` has said so, and then nothing is left to stage or transform.
        with open(os.path.join(work, "ccmart.log")) as f:
            if "  mart version " not in f.read():
                return False
        s = get(f"{base}/v1/status", 10)
        c = s.get("last_cycle") or {}
        return s.get("mart_version") and c.get("rows_staged") == 0 and c.get("groups_transformed") == 0

    wait("the mart (see ccmart.log in the work directory)", idle, 6 * 3600)
    build_secs = time.time() - t
    calls = query(base, "SELECT count(*) FROM interaction_fact")["rows"][0][0]
    log(f"mart built in {build_secs:.0f} s: {calls} interactions; vacuuming down to the newest version")
    runs_before = query(base, "SELECT count(*) FROM ccmart_maintenance_runs")["rows"][0][0]
    post(f"{base}/v1/admin/maintenance")
    wait("maintenance", lambda: query(base, "SELECT count(*) FROM ccmart_maintenance_runs")["rows"][0][0] > runs_before, 600)
    mart = os.path.join(data, "mart")
    parquet_bytes = sum(os.path.getsize(p) for p in glob.glob(f"{mart}/**/*.parquet", recursive=True))

    # DuckDB: views over the same files.
    duck = duckdb.connect()
    # Integer / integer is an integer in SQL, DataFusion and PostgreSQL; DuckDB's default is a double.
    duck.execute("SET integer_division = true")
    for table in sorted(os.listdir(mart)):
        files = glob.glob(f"{mart}/{table}/**/*.parquet", recursive=True)
        if not files or table.startswith("_"):
            continue
        partitioned = any("day=" in f for f in files)
        src = f"{mart}/{table}/day=*/*.parquet" if partitioned else f"{mart}/{table}/*.parquet"
        duck.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{src}', hive_partitioning = {str(partitioned).lower()}"
            + (", hive_types_autocast = false" if partitioned else "")
            + ")"
        )

    # PostgreSQL: the same tables, loaded with COPY.
    pgb = pg_bin()
    as_root = os.geteuid() == 0
    server = (lambda cmd: ["runuser", "-u", "postgres", "--"] + cmd) if as_root else (lambda cmd: cmd)
    pgdir = os.path.join(work, "pg")
    os.makedirs(pgdir)
    if as_root:
        shutil.chown(pgdir, "postgres")
    subprocess.run(server([f"{pgb}/initdb", "-D", f"{pgdir}/data", "-A", "trust", "-U", "postgres", "-E", "UTF8",
                           "--no-locale", "--no-sync"]), check=True, capture_output=True, cwd="/")
    pg_port = free_port()
    with open(f"{pgdir}/data/postgresql.conf", "a") as f:
        f.write(f"port = {pg_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{pgdir}'\n"
                "shared_buffers = 1GB\nwork_mem = 256MB\nmax_parallel_workers_per_gather = 2\n")
    subprocess.run(server([f"{pgb}/pg_ctl", "-D", f"{pgdir}/data", "-l", f"{pgdir}/log", "-w", "start"]), check=True,
                   capture_output=True, cwd="/")
    cleanup.append(lambda: subprocess.run(server([f"{pgb}/pg_ctl", "-D", f"{pgdir}/data", "-m", "immediate", "stop"]),
                                          capture_output=True, cwd="/"))
    psql = [f"{pgb}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(pg_port), "-U",
            "postgres", "-d", "postgres"]
    t = time.time()
    for (table,) in duck.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
        cols = duck.execute(f"DESCRIBE {table}").fetchall()
        pg_type = {"BIGINT": "bigint", "INTEGER": "bigint", "DOUBLE": "double precision"}
        ddl = ", ".join(f'"{c[0]}" {pg_type.get(c[1], "text")}' for c in cols)
        csv = os.path.join(work, f"{table}.csv")
        duck.execute(f"COPY (SELECT * FROM {table}) TO '{csv}' (HEADER, DELIMITER ',')")
        subprocess.run(psql + ["-c", f"CREATE TABLE {table} ({ddl})", "-c",
                               f"\\copy {table} FROM '{csv}' WITH (FORMAT csv, HEADER true)"], check=True)
        os.remove(csv)
    subprocess.run(psql + ["-c", "VACUUM ANALYZE"], check=True)
    load_secs = time.time() - t

    reports = get(f"{base}/v1/reports")["reports"]
    rows = []
    for r in reports:
        name = r["name"]
        sql = open(os.path.join(ROOT, "queries", f"{name}.sql")).read()
        params = params_of(sql)
        ccmart_secs, answer = median_secs(lambda: get(f"{base}/v1/reports/{name}?format=json"))
        n = answer["row_count"]
        duck_secs, duck_rows = median_secs(lambda: duck.execute(sql, params).fetchall())
        pg_sql = re.sub(r"\bAS DOUBLE\)", "AS NUMERIC)", sql)
        pg_sql = re.sub(r"\$(\w+)", lambda m: f":'{m.group(1)}'", pg_sql)
        pg_args = psql + [a for k, v in params.items() for a in ("-v", f"{k}={v}")]

        def pg_run():
            # Through stdin: psql interpolates the parameters (:'name') only there, not in -c.
            script = "\\timing on\n" + pg_sql.strip().rstrip(";") + ";\n"
            out = subprocess.run(pg_args + ["-A", "-t", "-f", "-"], input=script, check=True, capture_output=True,
                                 text=True).stdout
            ms = float(re.findall(r"Time: ([\d.]+) ms", out)[-1])
            return ms / 1000, len([l for l in out.splitlines() if l and not l.startswith("Time:")])

        pg = [pg_run() for _ in range(REPS)]
        pg_secs, pg_rows = statistics.median(p[0] for p in pg), pg[0][1]
        if not (n == len(duck_rows) == pg_rows):
            log(f"WARNING {name}: row counts differ: ccmart {n}, DuckDB {len(duck_rows)}, PostgreSQL {pg_rows}")
        rows.append({"report": name, "rows": n, "ccmart_s": round(ccmart_secs, 4), "duckdb_s": round(duck_secs, 4),
                     "postgres_s": round(pg_secs, 4), "vs_duckdb": round(ccmart_secs / duck_secs, 2),
                     "pg_speedup": round(pg_secs / ccmart_secs, 2), "rows_agree": n == len(duck_rows) == pg_rows})

    geo = lambda xs: math.exp(sum(math.log(x) for x in xs) / len(xs))
    result = {
        "when": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "binary": BIN, "cpus": os.cpu_count(),
        "workload": {"days": DAYS, "calls_per_day": CALLS_PER_DAY, "agents_per_site": AGENTS, "reps": REPS},
        "interactions": calls, "mart_parquet_bytes": parquet_bytes, "build_secs": round(build_secs, 1),
        "postgres_load_secs": round(load_secs, 1), "reports": rows,
        "geomean_ccmart_vs_duckdb": round(geo([r["vs_duckdb"] for r in rows]), 2),
        "geomean_speedup_vs_postgres": round(geo([r["pg_speedup"] for r in rows]), 2),
    }
    print(f"=== ccmart reports benchmark ({result['when']}, ccmart {result['commit']}, {result['cpus']} CPU, "
          f"{os.path.basename(os.path.dirname(BIN))} build)")
    print(f"workload : {DAYS:g} day(s) x {CALLS_PER_DAY:g} calls/day, {AGENTS} agents/site -> {calls} interactions, "
          f"{parquet_bytes / 1e6:.1f} MB Parquet (mart built in {build_secs:.0f} s; PostgreSQL COPY load {load_secs:.0f} s)")
    print(f"{'report':28} {'rows':>7} {'ccmart s':>9} {'DuckDB s':>9} {'PG s':>9} {'ccmart/DuckDB':>14} {'PG/ccmart':>10}")
    for r in rows:
        print(f"{r['report']:28} {r['rows']:>7} {r['ccmart_s']:>9.4f} {r['duckdb_s']:>9.4f} {r['postgres_s']:>9.4f} "
              f"{r['vs_duckdb']:>14.2f} {r['pg_speedup']:>10.2f}{'' if r['rows_agree'] else '  (row counts differ)'}")
    print(f"geometric mean: ccmart/DuckDB {result['geomean_ccmart_vs_duckdb']} (target <= 1.0), "
          f"PostgreSQL/ccmart {result['geomean_speedup_vs_postgres']} (target >= 10)")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "results", f"reports-{result['when']}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written  : {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
