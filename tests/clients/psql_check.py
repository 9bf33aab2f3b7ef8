#!/usr/bin/env python3
"""psql compatibility checks: ccmart vs PostgreSQL (see README.md).

Meta-commands (\\d+, \\dt+, \\df, \\dT, \\du, ...) must succeed (exit 0, no ERROR on
stderr) on ccmart; \\copy output and plain query output must equal PostgreSQL's.
psql is $PSQL (default /usr/bin/psql)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from common import Failure, Report, parse_args, with_timeout  # noqa: E402

CLIENT = "psql"

# Checks that fail against ccmart today (strict xfail, see common.Report.finish).
EXPECTED_GAPS = {
    "unaligned_query_output_timestamptz",
}

PSQL = os.environ.get("PSQL", "/usr/bin/psql")
TIMEOUT = 30


class PsqlError(Exception):
    pass


def psql(dsn, command, extra=()):
    env = dict(os.environ, PGCONNECT_TIMEOUT="10", PAGER="", PSQL_PAGER="")
    env.pop("PGOPTIONS", None)
    p = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose",
                        *extra, "-c", command, with_timeout(dsn)],
                       capture_output=True, text=True, timeout=TIMEOUT, env=env)
    if p.returncode != 0 or "ERROR" in p.stderr:
        raise PsqlError(f"exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def main():
    args = parse_args(__doc__)
    dsns = {"ccmart": args.ccmart, "postgres": args.postgres}
    rep = Report(CLIENT, EXPECTED_GAPS, args.only)

    def succeeds(check, command):
        # ok when psql exits 0 on both sides; output shown, not compared (catalogs differ)
        if not rep.wanted(check):
            return
        vals = {}
        for s in ("ccmart", "postgres"):
            try:
                vals[s] = psql(dsns[s], command)
            except Exception as e:  # noqa: BLE001
                vals[s] = Failure(e)
        bad = [s for s, v in vals.items() if isinstance(v, Failure)]
        rep.record(check, not bad, vals["ccmart"], vals["postgres"],
                   expect="psql exits 0 without ERROR", **({"failed_on": ",".join(bad)} if bad else {}))

    succeeds("meta_d_plus_interaction_fact", r"\d+ interaction_fact")
    succeeds("meta_d_interaction_fact", r"\d interaction_fact")
    succeeds("meta_dt_plus", r"\dt+")
    succeeds("meta_dv", r"\dv")
    succeeds("meta_dn", r"\dn")
    succeeds("meta_df", r"\df")
    succeeds("meta_dT", r"\dT")
    succeeds("meta_du", r"\du")
    succeeds("meta_l", r"\l")
    succeeds("meta_conninfo", r"\conninfo")

    # column names shown by \d must equal PostgreSQL's (first column of the table)
    def d_columns(side):
        out = psql(dsns[side], r"\d interaction_fact", extra=("-A", "-t"))
        return [line.split("|")[0] for line in out.splitlines() if "|" in line]
    rep.compare("meta_d_column_names", d_columns)

    copy_sql = ("SELECT resource_key, resource_type, resource_name, agent_first_name "
                "FROM resource_ ORDER BY resource_key")
    rep.compare("backslash_copy_to_stdout", lambda s: psql(dsns[s], rf"\copy ({copy_sql}) TO STDOUT"))
    rep.compare("backslash_copy_to_stdout_csv_header",
                lambda s: psql(dsns[s], rf"\copy ({copy_sql}) TO STDOUT WITH (FORMAT csv, HEADER)"))
    rep.compare("aligned_query_output", lambda s: psql(dsns[s], copy_sql + " LIMIT 10"))
    rep.compare("unaligned_query_output_timestamptz", lambda s: psql(
        dsns[s], "SELECT interaction_id, to_timestamp(start_ts) AS started FROM interaction_fact "
                 "ORDER BY interaction_id LIMIT 10", extra=("-A",)))
    rep.compare("csv_query_output", lambda s: psql(
        dsns[s], "SELECT media_type, count(*) AS n FROM interaction_fact GROUP BY media_type "
                 "ORDER BY media_type", extra=("--csv",)))
    rep.finish()


if __name__ == "__main__":
    main()
