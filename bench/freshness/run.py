#!/usr/bin/env python3
"""Freshness benchmark: one active ccmart fed live by its embedded simulator, after a simulated history.

    bash bench/freshness/run.sh            (builds the release binary, then runs this)

Environment:
    BIN=path                 the ccmart binary (default: $CARGO_TARGET_DIR/release/ccmart)
    HISTORY_DAYS=7           simulated history built before the measurement
    CALLS_PER_HOUR=20833     calls per hour per site (2 sites: 20833 is 1 M calls a day)
    AGENTS=300               agents per site
    CYCLE_SECS=2             appliance cycle
    STEADY_SECS=600          length of the measured window
    KEEP=1                   keep the work directory

Measures, once the appliance has worked off its history (its freshness stays within a minute for 10 s), every
second for STEADY_SECS: freshness (`/v1/status` `freshness_secs`: now minus the newest interaction end visible in
SQL; the simulator writes an interaction's rows when it ends, so this is IDB write -> visible in SQL), the duration
of each new cycle (and its extract / transform / publish parts), and the appliance's resident memory. Prints p50,
p95 and max and writes bench/results/freshness-<UTC>.json. Targets (issue 19): freshness p95 <= 10 s, cycle p95 <=
CYCLE_SECS, RSS <= 1 GiB.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/ccmart-target"))
BIN = os.environ.get("BIN", os.path.join(TARGET, "release", "ccmart"))
HISTORY_DAYS = float(os.environ.get("HISTORY_DAYS", "7"))
CALLS_PER_HOUR = float(os.environ.get("CALLS_PER_HOUR", "20833"))
AGENTS = int(os.environ.get("AGENTS", "300"))
CYCLE_SECS = int(os.environ.get("CYCLE_SECS", "2"))
STEADY_SECS = int(os.environ.get("STEADY_SECS", "600"))
KEEP = os.environ.get("KEEP")


def log(msg):
    print(f"freshness-bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(base):
    try:
        with urllib.request.urlopen(f"{base}/v1/status", timeout=10) as r:
            return json.load(r)
    except Exception:
        return None


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    if not os.access(BIN, os.X_OK):
        sys.exit(f"freshness-bench: ERROR: {BIN} is not an executable (build it, or set BIN)")
    work = tempfile.mkdtemp(prefix="ccmart-freshness-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = os.path.join(work, "ccmart.toml")
    idbs = "".join(
        f'\n[[idb]]\nname = "{n}"\npair = "{p}"\nsite = "{s}"\nurl = "embedded:"\n'
        for n, p, s in [("site1-voice-a", "site1-voice", "site1"), ("site1-voice-b", "site1-voice", "site2"),
                        ("site2-voice-a", "site2-voice", "site2"), ("site2-voice-b", "site2-voice", "site1")])
    with open(cfg, "w") as f:
        f.write(f'[appliance]\nsite = "site1"\ndata_dir = "{work}/data"\nlisten = "127.0.0.1:{port}"\n'
                f'metrics_listen = ""\ncycle_secs = {CYCLE_SECS}\n\n[pgwire]\nlisten = ""\n\n'
                f'[maintenance]\ninterval_secs = 0\n' + idbs +
                f"\n[simulator]\nhistory_days = {HISTORY_DAYS}\nlive = true\n"
                f"[simulator.settings]\nagents_per_site = {AGENTS}\ncalls_per_hour = {CALLS_PER_HOUR}\n"
                "record_truth = false\n")
    subprocess.run([BIN, "check-config", "--config", cfg], check=True, stdout=subprocess.DEVNULL)
    logf = open(os.path.join(work, "ccmart.log"), "w")
    proc = subprocess.Popen([BIN, "run", "--config", cfg], stdout=logf, stderr=subprocess.STDOUT,
                            env={**os.environ, "RUST_LOG": "warn"})
    try:
        t = time.time()
        log(f"building {HISTORY_DAYS} day(s) of history at {CALLS_PER_HOUR:g} calls/h per site, {AGENTS} agents/site")
        steady_since = None
        while True:
            if proc.poll() is not None:
                sys.exit(f"freshness-bench: ERROR: ccmart exited with {proc.returncode}; see {work}/ccmart.log")
            s = status(base) or {}
            fresh = s.get("freshness_secs")
            if fresh is not None and fresh <= 60:
                steady_since = steady_since or time.time()
                if time.time() - steady_since >= 10:
                    break
            else:
                steady_since = None
            if time.time() - t > 6 * 3600:
                sys.exit("freshness-bench: ERROR: the history was not worked off within 6 h")
            time.sleep(1)
        history_secs = time.time() - t
        log(f"history worked off in {history_secs:.0f} s; measuring {STEADY_SECS} s")
        fresh, cycles, rss, seen = [], [], [], set()
        end = time.time() + STEADY_SECS
        while time.time() < end:
            s = status(base) or {}
            if s.get("freshness_secs") is not None:
                fresh.append(s["freshness_secs"])
            c = s.get("last_cycle") or {}
            if c.get("finished_at") and c["finished_at"] not in seen:
                seen.add(c["finished_at"])
                cycles.append(c)
            rss.append(rss_mib(proc.pid))
            time.sleep(1)
        durations = [c["duration_ms"] / 1000 for c in cycles]
        part = lambda k: [c.get(k, 0) / 1000 for c in cycles]
        result = {
            "benchmark": "freshness",
            "utc": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            "binary": BIN,
            "binary_rev": os.environ.get("BIN_REV"),
            "cpus": os.cpu_count(),
            "workload": {"history_days": HISTORY_DAYS, "calls_per_hour_per_site": CALLS_PER_HOUR,
                         "calls_per_day": round(2 * 24 * CALLS_PER_HOUR), "agents_per_site": AGENTS,
                         "cycle_secs": CYCLE_SECS, "steady_secs": STEADY_SECS},
            "history_seconds": round(history_secs, 1),
            "freshness_s": {"p50": percentile(fresh, 50), "p95": percentile(fresh, 95), "max": max(fresh),
                            "samples": len(fresh)} if fresh else None,
            "cycle_s": {"p50": percentile(durations, 50), "p95": percentile(durations, 95), "max": max(durations),
                        "cycles": len(durations)} if durations else None,
            "cycle_parts_p95_s": {k: percentile(part(k), 95) for k in ("extract_ms", "transform_ms", "publish_ms")}
            if cycles else None,
            "rss_mib": {"p95": round(percentile(rss, 95), 1), "max": round(max(rss), 1)} if rss else None,
        }
        print(f"=== ccmart freshness benchmark ({result['utc']}, {BIN}, {os.cpu_count()} CPU)")
        print(f"workload   : {HISTORY_DAYS:g} day(s) history, {result['workload']['calls_per_day']} calls/day over 2 sites "
              f"live, {AGENTS} agents/site, cycle {CYCLE_SECS} s, window {STEADY_SECS} s")
        if fresh:
            f = result["freshness_s"]
            print(f"freshness  : p50 {f['p50']} s, p95 {f['p95']} s, max {f['max']} s "
                  f"(target p95 <= 10 s: {'PASS' if f['p95'] <= 10 else 'FAIL'})")
        if durations:
            c, p = result["cycle_s"], result["cycle_parts_p95_s"]
            print(f"cycle      : p50 {c['p50']:.2f} s, p95 {c['p95']:.2f} s, max {c['max']:.2f} s over {c['cycles']} cycles "
                  f"(target p95 <= {CYCLE_SECS} s: {'PASS' if c['p95'] <= CYCLE_SECS else 'FAIL'}); p95 of extract "
                  f"{p['extract_ms']:.2f} s, transform {p['transform_ms']:.2f} s, publish {p['publish_ms']:.2f} s")
        if rss:
            print(f"RSS        : p95 {result['rss_mib']['p95']} MiB, max {result['rss_mib']['max']} MiB "
                  f"(target <= 1024 MiB: {'PASS' if max(rss) <= 1024 else 'FAIL'})")
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        out = os.path.join(ROOT, "bench", "results", f"freshness-{result['utc']}.json")
        with open(out, "w") as f:
            json.dump(result, f, indent=2)
        log(f"results written to {out}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if KEEP:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
