"""Shared helpers for the client-compatibility checks.

Every check script runs the same thing against two servers -- ccmart and a real
PostgreSQL holding the same rows (see mirror.py) -- and compares what the client
library hands back.  Each check prints one JSON line:

    {"client": ..., "check": ..., "ok": bool, "ccmart": repr, "postgres": repr, ...}

Exit status (see Report.finish): 1 if a check outside EXPECTED_GAPS fails, or if a
check inside EXPECTED_GAPS passes (strict xfail: remove it from the list), else 0.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import decimal
import json
import math
import os
import sys
import traceback
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

CONNECT_TIMEOUT = 10  # seconds, for every connection
REPR_LIMIT = int(os.environ.get("CCMART_CHECK_REPR_LIMIT", "3000"))
SIDES = ("ccmart", "postgres")


# --------------------------------------------------------------------------- CLI / DSNs
def parse_args(description: str, argv=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--ccmart", default=os.environ.get("CCMART_DSN"),
                   help="ccmart DSN URL (env CCMART_DSN)")
    p.add_argument("--postgres", default=os.environ.get("POSTGRES_DSN"),
                   help="PostgreSQL DSN URL (env POSTGRES_DSN)")
    p.add_argument("--only", default=None,
                   help="comma-separated check names to run (default: all)")
    a = p.parse_args(argv)
    if not a.ccmart or not a.postgres:
        p.error("--ccmart and --postgres are required (or CCMART_DSN / POSTGRES_DSN)")
    for dsn in (a.ccmart, a.postgres):
        host = urlsplit(dsn).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            p.error(f"refusing to connect to non-local host {host!r}")
    a.only = set(a.only.split(",")) if a.only else None
    return a


def with_params(dsn: str, **params) -> str:
    """Return the URL DSN with query parameters added (existing ones win)."""
    parts = urlsplit(dsn)
    q = dict(parse_qsl(parts.query))
    for k, v in params.items():
        q.setdefault(k, str(v))
    return urlunsplit(parts._replace(query=urlencode(q)))


def with_timeout(dsn: str) -> str:
    return with_params(dsn, connect_timeout=CONNECT_TIMEOUT)


def strip_params(dsn: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(query=""))


def dsn_user(dsn: str) -> str:
    return urlsplit(dsn).username or os.environ.get("PGUSER") or ""


def dsn_parts(dsn: str) -> dict:
    u = urlsplit(dsn)
    return {"host": u.hostname or "127.0.0.1", "port": u.port or 5432,
            "user": u.username, "password": u.password,
            "database": (u.path or "/").lstrip("/") or None}


# --------------------------------------------------------------------------- errors
def sqlstate_of(exc) -> str | None:
    for attr in ("pgcode", "sqlstate"):
        v = getattr(exc, attr, None)
        if isinstance(v, str) and v:
            return v
    diag = getattr(exc, "diag", None)
    v = getattr(diag, "sqlstate", None)
    if v:
        return v
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        return sqlstate_of(cause)
    return None


class Failure:
    """An exception captured while running one side of a check."""

    def __init__(self, exc: BaseException = None, text: str = None, sqlstate=None):
        if exc is not None:
            self.sqlstate = sqlstate_of(exc)
            msg = str(exc).strip()
            self.text = (f"ERROR {self.sqlstate or '-----'} "
                         f"{type(exc).__module__}.{type(exc).__name__}: {msg}")
        else:
            self.sqlstate = sqlstate
            self.text = text

    def __repr__(self):
        return self.text


# --------------------------------------------------------------------------- comparison
def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def same(a, b, path="$"):
    """Deep, type-strict comparison.  Returns None when equal, else a string
    describing the first difference.  Floats compare with rel_tol 1e-12 (the
    order of floating-point aggregation is unspecified); everything else is
    exact, and Python types must match (int vs Decimal, naive vs aware datetime,
    str vs datetime are all differences)."""
    if type(a) is not type(b):
        return f"{path}: type {type(a).__name__} {a!r} != {type(b).__name__} {b!r}"
    if isinstance(a, float):
        if math.isnan(a) and math.isnan(b):
            return None
        if a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12):
            return None
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, (_dt.datetime, _dt.time)):
        if (a.tzinfo is None) != (b.tzinfo is None):
            return f"{path}: tz-awareness differs {a!r} != {b!r}"
        return None if a == b else f"{path}: {a!r} != {b!r}"
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            return f"{path}: keys {list(a.keys())!r} != {list(b.keys())!r}"
        for k in a:
            d = same(a[k], b[k], f"{path}[{k!r}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def sort_rows(rows):
    """Order-insensitive normalisation (only used where SQL leaves order open)."""
    return sorted(rows, key=lambda r: repr(r))


def short(x) -> str:
    s = x if isinstance(x, str) else repr(x)
    if len(s) > REPR_LIMIT:
        s = s[:REPR_LIMIT] + f"... <{len(s) - REPR_LIMIT} more chars>"
    return s


ISOLATE_TIMEOUT = 60  # seconds for one side of an isolated check


def run_isolated(fn, side):
    """Run fn(side) in a forked child; return its value (pickled back) or a
    Failure (exception, crash by signal, or timeout)."""
    import pickle
    import select
    import signal

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            try:
                out = ("ok", fn(side))
            except Exception as e:  # noqa: BLE001
                f = Failure(e)
                out = ("fail", (f.text, f.sqlstate))
            try:
                data = pickle.dumps(out)
            except Exception as e:  # noqa: BLE001
                data = pickle.dumps(("fail", (f"unpicklable result: {e}", None)))
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    deadline = __import__("time").monotonic() + ISOLATE_TIMEOUT
    timed_out = False
    with os.fdopen(r, "rb") as fh:
        while True:
            left = deadline - __import__("time").monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fh], [], [], left)
            if not ready:
                continue
            b = os.read(fh.fileno(), 65536)
            if not b:
                break
            chunks.append(b)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return Failure(text=f"TIMEOUT: client did not answer within {ISOLATE_TIMEOUT}s")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return Failure(text=f"CRASH: client process killed by signal {sig} "
                            f"({signal.Signals(sig).name})")
    kind, val = pickle.loads(b"".join(chunks))
    if kind == "ok":
        return val
    return Failure(text=val[0], sqlstate=val[1])


# --------------------------------------------------------------------------- report
class Report:
    def __init__(self, client: str, expected_gaps, only=None):
        self.client = client
        self.expected_gaps = set(expected_gaps)
        self.only = only
        self.results = {}  # check -> ok

    def wanted(self, check):
        return self.only is None or check in self.only

    def record(self, check, ok, ccmart, postgres, **extra):
        ok = bool(ok)
        gap = check in self.expected_gaps
        line = {"client": self.client, "check": check, "ok": ok,
                "ccmart": short(ccmart), "postgres": short(postgres)}
        line.update({k: (v if isinstance(v, (bool, int, float)) or v is None else short(v))
                     for k, v in extra.items()})
        if gap:
            line["expected_gap"] = True
        print(json.dumps(line), flush=True)
        self.results[check] = ok

    @staticmethod
    def _run(fn, side, isolate=False):
        if isolate:
            return run_isolated(fn, side)
        try:
            return fn(side)
        except Exception as e:  # noqa: BLE001 - we report everything
            if os.environ.get("CCMART_CHECK_TRACE"):
                traceback.print_exc()
            return Failure(e)

    def compare(self, check, fn, normalize=None, isolate=False):
        """fn(side) -> value, run on both sides; ok when neither raised and the
        values are equal (type-strict, see same()).  isolate=True runs each side
        in a forked child so that a client crash (segfault) is reported as a
        failure instead of killing the script."""
        if not self.wanted(check):
            return None
        vals = {s: self._run(fn, s, isolate) for s in SIDES}
        c, p = vals["ccmart"], vals["postgres"]
        if normalize:
            c = c if isinstance(c, Failure) else normalize(c)
            p = p if isinstance(p, Failure) else normalize(p)
        if isinstance(c, Failure) or isinstance(p, Failure):
            diff = "raised"
            ok = False
        else:
            diff = same(c, p)
            ok = diff is None
        extra = {} if ok else {"diff": diff}
        self.record(check, ok, c, p, **extra)
        return vals

    def each(self, check, fn, predicate, describe=""):
        """fn(side) -> value on both sides; ok when predicate(side, value) holds on
        both (used where the answers legitimately differ, e.g. user names)."""
        if not self.wanted(check):
            return None
        vals = {s: self._run(fn, s) for s in SIDES}
        bad = []
        for s in SIDES:
            v = vals[s]
            if isinstance(v, Failure) or not predicate(s, v):
                bad.append(s)
        extra = {"expect": describe} if describe else {}
        if bad:
            extra["failed_on"] = ",".join(bad)
        self.record(check, not bad, vals["ccmart"], vals["postgres"], **extra)
        return vals

    def error_code(self, check, fn):
        """fn(side) must raise; compares the SQLSTATEs."""
        if not self.wanted(check):
            return None
        vals = {}
        for s in SIDES:
            try:
                v = fn(s)
                vals[s] = f"no error, returned {v!r}"
            except Exception as e:  # noqa: BLE001
                vals[s] = Failure(e)
        c, p = vals["ccmart"], vals["postgres"]
        ok = (isinstance(c, Failure) and isinstance(p, Failure)
              and c.sqlstate is not None and c.sqlstate == p.sqlstate)
        extra = {}
        if not ok:
            extra["diff"] = (f"sqlstate {getattr(c, 'sqlstate', None)!r} != "
                             f"{getattr(p, 'sqlstate', None)!r}")
        self.record(check, ok, c, p, **extra)
        return vals

    def finish(self):
        failed_unexpected = sorted(c for c, ok in self.results.items()
                                   if not ok and c not in self.expected_gaps)
        passed_gaps = sorted(c for c, ok in self.results.items()
                             if ok and c in self.expected_gaps)
        n = len(self.results)
        n_ok = sum(self.results.values())
        summary = {"client": self.client, "summary": True, "checks": n, "passed": n_ok,
                   "failed": n - n_ok,
                   "expected_gaps_failing": sorted(c for c, ok in self.results.items()
                                                   if not ok and c in self.expected_gaps),
                   "unexpected_failures": failed_unexpected,
                   "gaps_now_passing": passed_gaps}
        if passed_gaps:
            summary["message"] = ("these checks pass now: remove them from EXPECTED_GAPS "
                                  f"in the {self.client} check script: {passed_gaps}")
        print(json.dumps(summary), flush=True)
        sys.exit(1 if failed_unexpected or passed_gaps else 0)


# --------------------------------------------------------------------------- star-schema keys
def is_internal(t):
    return t.startswith("ccmart_")


def expected_keys(columns_by_table):
    """The star-schema keys ccmart should declare, derived from column names only
    (the PostgreSQL mirror has no constraints, so we cannot compare with it):
      * a dimension table is one whose FIRST column is named <something>_key; that
        column is its primary key (e.g. resource_.resource_key);
      * every table's primary key is its first column when that ends in _key or _id
        (facts: interaction_fact.interaction_id, ag2_queue_day.ag2_queue_key, ...);
      * a fact column named exactly like a dimension's key (resource_key), or ending
        in _<dimension key> (start_date_time_key -> date_time.date_time_key),
        is a foreign key to that dimension;
      * a column named exactly like the id that is another table's first column
        (interaction_id -> interaction_fact.interaction_id) is a foreign key to it.
    Internal ccmart_* tables are left out."""
    dims = {}
    for t, cols in columns_by_table.items():
        if cols and cols[0].endswith(("_key", "_id")) and not is_internal(t):
            dims.setdefault(cols[0], t)
    pks, fks = {}, {}
    for t, cols in columns_by_table.items():
        if is_internal(t) or not cols:
            continue
        pks[t] = [cols[0]] if cols[0].endswith(("_key", "_id")) else []
        out = []
        for c in cols[1:]:
            if not c.endswith(("_key", "_id")):
                continue
            for dk, dt in dims.items():
                if dt != t and (c == dk or (dk.endswith("_key") and c.endswith("_" + dk))):
                    out.append({"constrained_columns": [c], "referred_table": dt,
                                "referred_columns": [dk]})
                    break
        fks[t] = sorted(out, key=lambda f: f["constrained_columns"])
    return pks, fks
