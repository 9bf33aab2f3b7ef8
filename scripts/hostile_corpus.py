#!/usr/bin/env python3
"""Sends ccmart's hostile-SQL corpus (tests/data/hostile_sql) to a running appliance, as a reader would.

Each statement goes over HTTP (POST /v1/query) and, with --pg, over the PostgreSQL protocol (psql). A statement
marked `-- expect: refused` must be refused (HTTP 400 with an error code; pgwire an SQLSTATE that is not XX000 or
57014); one marked `-- expect: bounded` must be refused or answered within the appliance's limits (HTTP 200 cut
off or with at most --max-rows rows, or 400/408/422; pgwire any SQLSTATE but XX000, or at most --max-rows rows).
After every statement /healthz must answer. Nothing here writes: every statement is a reader's.

Usage:
  CCMART_TOKEN=<reader token> scripts/hostile_corpus.py --url http://127.0.0.1:8080 \
      [--pg 'host=127.0.0.1 port=5433 user=bi dbname=ccmart'] [--only NAME ...] [--timeout-secs 30] \
      [--max-rows 100000] [--corpus DIR]

Exit status: 0 when every statement was refused or bounded and the appliance kept answering, 1 otherwise, 2 for
bad arguments. Only the Python standard library and psql are needed.
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

CORPUS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "hostile_sql"


def corpus(directory, only):
    cases = []
    for path in sorted(pathlib.Path(directory).glob("*.sql")):
        if only and path.stem not in only:
            continue
        text = path.read_text()
        first = text.splitlines()[0] if text else ""
        match = re.fullmatch(r"-- expect: (refused|bounded)\s*", first)
        if not match:
            sys.exit(f"{path}: the first line must be '-- expect: refused' or '-- expect: bounded'")
        cases.append((path.stem, match.group(1), text))
    missing = set(only or []) - {name for name, _, _ in cases}
    if missing:
        sys.exit(f"no such corpus statements: {', '.join(sorted(missing))}")
    return cases


def http(url, token, path, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method="POST" if body is not None else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_case(args, expect, sql):
    status, raw = http(args.url, args.token, "/v1/query", {"sql": sql}, timeout=args.timeout_secs + 60)
    try:
        answer = json.loads(raw)
    except ValueError:
        return False, f"{status}, not JSON ({len(raw)} bytes)"
    code = (answer.get("error") or {}).get("code", "") if isinstance(answer, dict) else ""
    if expect == "refused":
        return status == 400 and bool(code), f"{status} {code}"
    if status == 200:
        rows = answer.get("row_count")
        ok = answer.get("truncated") is True or (isinstance(rows, int) and rows <= args.max_rows)
        return ok, f"200 with {rows} rows{' (truncated)' if answer.get('truncated') else ''}"
    return status in (400, 408, 422) and bool(code), f"{status} {code}"


def pg_case(args, expect, sql):
    env = dict(os.environ, PGPASSWORD=args.token or "", PGCONNECT_TIMEOUT="10")
    command = [args.psql, args.pg, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-f", "-"]
    try:
        done = subprocess.run(command, input=sql, capture_output=True, text=True, env=env, timeout=args.timeout_secs + 60)
    except subprocess.TimeoutExpired:
        return False, "no answer"
    if done.returncode == 0:
        rows = len([line for line in done.stdout.splitlines() if line])
        return expect == "bounded" and rows <= args.max_rows, f"answered, {rows} rows"
    match = re.search(r"ERROR:\s+([0-9A-Z]{5}):", done.stderr) or re.search(r"FATAL:\s+([0-9A-Z]{5}):", done.stderr)
    if not match:
        return False, f"no SQLSTATE: {done.stderr.strip()[:200]}"
    state = match.group(1)
    if expect == "refused":
        return state not in ("XX000", "57014"), state
    return state != "XX000", state


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the appliance's HTTP base URL")
    parser.add_argument("--pg", help="a libpq connection string for the PostgreSQL protocol (password: the token)")
    parser.add_argument("--token", default=os.environ.get("CCMART_TOKEN"), help="reader token (default: $CCMART_TOKEN)")
    parser.add_argument("--only", nargs="*", help="corpus statements to send (file names without .sql)")
    parser.add_argument("--max-rows", type=int, default=100_000, help="the appliance's query.max_rows")
    parser.add_argument("--timeout-secs", type=int, default=30, help="the appliance's query.timeout_secs")
    parser.add_argument("--psql", default="psql", help="psql to use")
    parser.add_argument("--corpus", default=str(CORPUS), help="directory of statements (default: the repository's)")
    args = parser.parse_args()
    args.url = args.url.rstrip("/")
    failures = 0
    for name, expect, sql in corpus(args.corpus, args.only):
        protocols = [("http", http_case)] + ([("pgwire", pg_case)] if args.pg else [])
        for protocol, case in protocols:
            started = time.monotonic()
            ok, what = case(args, expect, sql)
            took = time.monotonic() - started
            if took > args.timeout_secs + 20:
                ok, what = False, f"{what}, after {took:.0f} s (more than the time limit and 20 s)"
            health, _ = http(args.url, None, "/healthz", timeout=30)
            if health != 200:
                ok, what = False, f"{what}; /healthz answered {health} afterwards"
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name} ({protocol}, expect {expect}): {what} in {took:.2f} s", flush=True)
    print(f"{failures} failed" if failures else "every statement was refused or bounded; the appliance kept answering")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (urllib.error.URLError, ConnectionError) as e:
        sys.exit(f"cannot reach the appliance: {e}")
