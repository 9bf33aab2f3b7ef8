#!/usr/bin/env python3
"""Replication benchmark: an active and a standby ccmart as two real processes on 127.0.0.1.

    bash bench/replication/run.sh            (builds the release binary, then runs this)

Environment (all optional):
    BIN=path                 the ccmart binary (default: $CARGO_TARGET_DIR/release/ccmart)
    HISTORY_DAYS=2           simulated history the active builds before the measurements
    CALLS_PER_HOUR=1000      live load: inbound calls per hour and site (two sites)
    AGENTS=60                agents per site
    CYCLE_SECS=2             appliance.cycle_secs of both sites
    STEADY_SECS=120          length of the steady-state window (lag sampling, bytes shipped)
    KEEP=1                   keep the work directory

Measured in one run (see bench/README.md, "Replication"):
    1. bytes shipped per cycle vs bytes of new Parquet, over the steady window (target <= 1.1x)
    2. replication lag p50/p95/max, sampled every second from the standby's /v1/status (target p95 <= 10 s)
    3. bootstrap throughput of a third site vs `cp -r` of the same mart directory on the same disk (target >= 0.8x)
    4. promotion time: `ccmart promote` to the end of the promoted site's first extraction cycle (target <= 30 s)
"""
import json
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
HISTORY_DAYS = float(os.environ.get("HISTORY_DAYS", "2"))
CALLS_PER_HOUR = float(os.environ.get("CALLS_PER_HOUR", "1000"))
AGENTS = int(os.environ.get("AGENTS", "60"))
CYCLE_SECS = int(os.environ.get("CYCLE_SECS", "2"))
STEADY_SECS = int(os.environ.get("STEADY_SECS", "120"))
KEEP = os.environ.get("KEEP")


def log(msg):
    print(f"replication-bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def status(base):
    try:
        return get(f"{base}/v1/status")
    except Exception:
        return None


def wait(what, pred, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise SystemExit(f"replication-bench: ERROR: timed out after {limit} s waiting for {what}")


def config(path, data_dir, port, role, peer, simulate):
    """`simulate`: the active feeds its embedded IDBs (history, then live calls). The others get an empty
    simulator (embedded IDBs need one): as standbys they extract nothing anyway."""
    idbs = "".join(
        f'\n[[idb]]\nname = "{n}"\npair = "{p}"\nsite = "{s}"\nurl = "embedded:"\n'
        for n, p, s in [
            ("site1-voice-a", "site1-voice", "site1"),
            ("site1-voice-b", "site1-voice", "site2"),
            ("site2-voice-a", "site2-voice", "site2"),
            ("site2-voice-b", "site2-voice", "site1"),
        ]
    )
    history, live = (HISTORY_DAYS, "true") if simulate else (0, "false")
    sim = (
        f"\n[simulator]\nhistory_days = {history}\nlive = {live}\n"
        f"[simulator.settings]\nagents_per_site = {AGENTS}\ncalls_per_hour = {CALLS_PER_HOUR}\n"
        "record_truth = false\n"
    )
    site = "site1" if role == "active" else "site2"
    text = (
        f'[appliance]\nsite = "{site}"\ndata_dir = "{data_dir}"\nlisten = "127.0.0.1:{port}"\n'
        f'metrics_listen = ""\ncycle_secs = {CYCLE_SECS}\n\n[pgwire]\nlisten = ""\n\n'
        f'[maintenance]\ninterval_secs = 0\n\n[replication]\ninitial_role = "{role}"\n'
        + (f'peer_url = "{peer}"\n' if peer else "")
        + idbs
        + sim
    )
    with open(path, "w") as f:
        f.write(text)
    subprocess.run([BIN, "check-config", "--config", path], check=True, stdout=subprocess.DEVNULL)


def spawn(cfg, logfile):
    return subprocess.Popen(
        [BIN, "run", "--config", cfg],
        stdout=subprocess.DEVNULL,
        stderr=open(logfile, "a"),
        env={**os.environ, "RUST_LOG": "warn"},
    )


def files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            if not n.endswith(".partial"):
                p = os.path.join(d, n)
                out[os.path.relpath(p, root)] = os.path.getsize(p)
    return out


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100 * (len(s) - 1)))))]


def main():
    if not os.path.exists(BIN):
        raise SystemExit(f"replication-bench: ERROR: {BIN} does not exist; run bench/replication/run.sh (builds it)")
    work = tempfile.mkdtemp(prefix="ccmart-repl-bench-")
    procs = []
    try:
        return run(work, procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if KEEP:
            log(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(work, procs):
    pa, pb = free_port(), free_port()
    base_a, base_b = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}"
    dirs = {k: os.path.join(work, k) for k in ("active", "standby", "bootstrap", "cp")}
    cfg_a, cfg_b, cfg_c = (os.path.join(work, f"{k}.toml") for k in ("active", "standby", "bootstrap"))
    config(cfg_a, dirs["active"], pa, "active", base_b, simulate=True)
    config(cfg_b, dirs["standby"], pb, "standby", base_a, simulate=False)
    config(cfg_c, dirs["bootstrap"], free_port(), "standby", base_a, simulate=False)

    log(f"active: {HISTORY_DAYS} day(s) of history, then {CALLS_PER_HOUR:g} calls/h per site live")
    t = time.time()
    procs.append(spawn(cfg_a, os.path.join(work, "active.log")))
    wait("the active's first mart version", lambda: (status(base_a) or {}).get("mart_version"), 3600)
    log(f"active built its mart in {time.time() - t:.1f} s")

    log("standby: initial copy")
    t = time.time()
    procs.append(spawn(cfg_b, os.path.join(work, "standby.log")))

    def caught_up():
        s = status(base_b)
        r = (s or {}).get("replication") or {}
        return s if r.get("last_sync") and r.get("versions_behind") == 0 else None

    wait("the standby's initial copy", caught_up, 3600)
    log(f"standby caught up in {time.time() - t:.1f} s")

    # 1 + 2: steady state under live load. The active may still be working off its history (publishing large
    # backlog versions every minute): start once the standby has stayed close behind for 10 s.
    steady_since = [None]

    def settled():
        lag = ((status(base_b) or {}).get("replication") or {}).get("lag_seconds")
        if lag is None or lag > 2 * CYCLE_SECS + 1:
            steady_since[0] = None
            return False
        steady_since[0] = steady_since[0] or time.time()
        return time.time() - steady_since[0] >= 10

    wait("the standby to stay close behind the active", settled, 1800)
    log(f"steady state for {STEADY_SECS} s")
    before_files = files(os.path.join(dirs["active"], "mart"))
    standby_before = files(os.path.join(dirs["standby"], "mart"))
    shipped_before = status(base_b)["replication"]["bytes_received"]
    versions_before = status(base_a)["mart_version"]
    lags = []
    end = time.time() + STEADY_SECS
    while time.time() < end:
        s = status(base_b)
        lag = ((s or {}).get("replication") or {}).get("lag_seconds")
        if lag is not None:
            lags.append(lag)
        time.sleep(1)
    # Let the standby take the last version of the window.
    target = status(base_a)["mart_version"]
    wait("the standby to reach the window's last version", lambda: (status(base_b) or {}).get("mart_version", 0) >= target, 120)
    shipped = status(base_b)["replication"]["bytes_received"] - shipped_before
    after_files = files(os.path.join(dirs["active"], "mart"))
    new = {p: n for p, n in after_files.items() if p not in before_files}
    # Staging checkpoints the standby received in the window (written at the active before or during it).
    standby_after = files(os.path.join(dirs["standby"], "mart"))
    checkpoint = sum(n for p, n in standby_after.items() if p.startswith("_ccmart_checkpoint") and p not in standby_before)
    new_parquet = sum(n for p, n in new.items() if p.endswith(".parquet") and not p.startswith("_ccmart_checkpoint"))
    new_log = sum(n for p, n in new.items() if not p.endswith(".parquet") and not p.startswith("_ccmart_checkpoint"))
    versions = target - versions_before
    ratio_bytes = (shipped - checkpoint) / new_parquet if new_parquet else float("nan")

    # 3: bootstrap of a third site vs cp -r of the same directory on the same disk.
    log("bootstrap of a third site vs cp -r")
    mart_bytes = sum(files(os.path.join(dirs["active"], "mart")).values())
    t = time.time()
    out = subprocess.run([BIN, "bootstrap", "--from", base_a, "--config", cfg_c], capture_output=True, text=True)
    bootstrap_secs = time.time() - t
    if out.returncode != 0:
        raise SystemExit(f"replication-bench: ERROR: bootstrap failed: {out.stderr}")
    m = re.search(r" bytes=(\d+)", out.stderr)
    bootstrap_bytes = int(m.group(1)) if m else sum(files(os.path.join(dirs["bootstrap"], "mart")).values())
    t = time.time()
    subprocess.run(["cp", "-r", os.path.join(dirs["active"], "mart"), dirs["cp"]], check=True)
    subprocess.run(["sync"], check=True)
    cp_secs = time.time() - t
    cp_bytes = sum(files(dirs["cp"]).values())
    bootstrap_mbps = bootstrap_bytes / bootstrap_secs / 1e6
    cp_mbps = cp_bytes / cp_secs / 1e6
    ratio_bootstrap = bootstrap_mbps / cp_mbps if cp_mbps else float("nan")

    # 4: promotion of the standby to the end of its first extraction cycle.
    log("promotion")
    t0 = time.time()
    subprocess.run([BIN, "promote", "--url", base_b], check=True, capture_output=True)

    def first_cycle():
        s = status(base_b) or {}
        c = s.get("last_cycle") or {}
        return s.get("role") == "active" and c.get("finished_at", 0) >= int(t0) and c.get("error") is None

    wait("the promoted site's first extraction cycle", first_cycle, 300)
    promote_secs = time.time() - t0

    result = {
        "when": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "binary": BIN,
        "cpus": os.cpu_count(),
        "workload": {"history_days": HISTORY_DAYS, "calls_per_hour_per_site": CALLS_PER_HOUR, "agents_per_site": AGENTS,
                     "cycle_secs": CYCLE_SECS, "steady_secs": STEADY_SECS},
        "steady": {"versions": versions, "bytes_shipped": shipped, "new_parquet_bytes": new_parquet,
                   "new_log_bytes": new_log, "checkpoint_bytes": checkpoint, "ratio_shipped_to_parquet": round(ratio_bytes, 3),
                   "lag_samples": len(lags), "lag_p50_s": percentile(lags, 50) if lags else None,
                   "lag_p95_s": percentile(lags, 95) if lags else None, "lag_max_s": max(lags) if lags else None},
        "bootstrap": {"mart_bytes": mart_bytes, "bytes": bootstrap_bytes, "seconds": round(bootstrap_secs, 3),
                      "mb_per_s": round(bootstrap_mbps, 1), "cp_bytes": cp_bytes, "cp_seconds": round(cp_secs, 3),
                      "cp_mb_per_s": round(cp_mbps, 1), "ratio_to_cp": round(ratio_bootstrap, 3)},
        "promotion_seconds": round(promote_secs, 2),
    }
    s = result["steady"]
    b = result["bootstrap"]
    print(f"=== ccmart replication benchmark ({result['when']}, ccmart {result['commit']}, {result['cpus']} CPU, {os.path.basename(os.path.dirname(BIN))} build)")
    print(f"workload        : {HISTORY_DAYS:g} day(s) history, {CALLS_PER_HOUR:g} calls/h per site live, {AGENTS} agents/site, cycle {CYCLE_SECS} s")
    print(f"steady window   : {STEADY_SECS} s, {s['versions']} mart versions published")
    print(f"bytes shipped   : {s['bytes_shipped']} of which staging checkpoints {s['checkpoint_bytes']}; the rest vs new Parquet {s['new_parquet_bytes']} (+ {s['new_log_bytes']} Delta log) -> ratio {s['ratio_shipped_to_parquet']} (target <= 1.1)")
    print(f"replication lag : p50 {s['lag_p50_s']} s, p95 {s['lag_p95_s']} s, max {s['lag_max_s']} s over {s['lag_samples']} samples (target p95 <= 10 s)")
    print(f"bootstrap       : {b['bytes']} bytes in {b['seconds']} s = {b['mb_per_s']} MB/s; cp -r {b['cp_bytes']} bytes in {b['cp_seconds']} s = {b['cp_mb_per_s']} MB/s -> ratio {b['ratio_to_cp']} (target >= 0.8)")
    print(f"promotion       : {result['promotion_seconds']} s from `ccmart promote` to the end of the first extraction cycle (target <= 30 s)")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "results", f"replication-{result['when']}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"written         : {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
