#!/usr/bin/env python3
"""psycopg 3 compatibility checks: ccmart vs PostgreSQL (see README.md)."""

import os
import sys

import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from common import Report, parse_args, with_timeout  # noqa: E402

CLIENT = "psycopg3"

# Checks that fail against ccmart today (strict xfail, see common.Report.finish).
EXPECTED_GAPS = {
    "server_side_cursor_scrollable",
}

ORDERED = ("SELECT interaction_id, media_type, duration, start_ts "
           "FROM interaction_fact ORDER BY interaction_id")
COPY_SELECT = ("SELECT resource_key, resource_type, resource_name, resource_cfg_dbid, "
               "agent_first_name FROM resource_ ORDER BY resource_key")


def main():
    args = parse_args(__doc__)
    dsns = {"ccmart": args.ccmart, "postgres": args.postgres}
    rep = Report(CLIENT, EXPECTED_GAPS, args.only)

    def connect(side, **kw):
        return psycopg.connect(with_timeout(dsns[side]), **kw)

    def with_conn(fn, **kw):
        def run(side):
            with connect(side, **kw) as c:
                return fn(c)
        return run

    # --- plain queries / parameters ------------------------------------------
    rep.compare("connect_and_select", with_conn(
        lambda c: c.execute("SELECT media_type_key, media_type FROM media_type "
                            "ORDER BY media_type_key").fetchall()))
    rep.compare("param_server_side_binding", with_conn(
        lambda c: c.execute("SELECT resource_key, resource_name FROM resource_ "
                            "WHERE resource_type = %s AND resource_cfg_dbid >= %s "
                            "ORDER BY resource_key", ("Agent", 0)).fetchall()))
    rep.compare("param_client_side_binding", with_conn(
        lambda c: psycopg.ClientCursor(c).execute(
            "SELECT resource_key, resource_name FROM resource_ "
            "WHERE resource_type = %s ORDER BY resource_key", ("Queue",)).fetchall()))

    def prepared(c):
        out = []
        for t in ("Agent", "Queue", "Agent", "Extension", "Agent", "Queue"):
            out.append(c.execute("SELECT count(*) FROM resource_ WHERE resource_type = %s",
                                 (t,), prepare=True).fetchone())
        return out
    rep.compare("prepared_statement_prepare_true", with_conn(prepared))

    def binary_results(c):
        cur = c.cursor(binary=True)
        cur.execute("SELECT interaction_id, media_type, duration, to_timestamp(start_ts) "
                    "FROM interaction_fact ORDER BY interaction_id LIMIT 10")
        return cur.fetchall()
    rep.compare("binary_result_format", with_conn(binary_results))

    # --- server-side cursors ---------------------------------------------------
    def named_cursor(c):
        with c.cursor(name="c1") as cur:
            cur.itersize = 7
            cur.execute(ORDERED)
            return list(cur)
    rep.compare("server_side_cursor_itersize", with_conn(named_cursor), isolate=True)

    def named_cursor_param(c):
        with c.cursor(name="c2") as cur:
            cur.itersize = 5
            cur.execute("SELECT interaction_id, duration FROM interaction_fact "
                        "WHERE duration >= %s ORDER BY interaction_id", (300,))
            first = cur.fetchmany(3)
            rest = cur.fetchall()
            return first + rest
    rep.compare("server_side_cursor_param", with_conn(named_cursor_param), isolate=True)

    def named_cursor_scroll(c):
        with c.cursor(name="c3", scrollable=True) as cur:
            cur.execute("SELECT resource_key FROM resource_ ORDER BY resource_key")
            cur.fetchmany(4)
            cur.scroll(0, mode="absolute")
            return cur.fetchmany(2)
    rep.compare("server_side_cursor_scrollable", with_conn(named_cursor_scroll), isolate=True)

    # --- COPY TO STDOUT -------------------------------------------------------------
    def copy_text(c):
        with c.cursor() as cur:
            with cur.copy(f"COPY ({COPY_SELECT}) TO STDOUT") as cp:
                return list(cp.rows())
    rep.compare("copy_to_stdout_text_rows", with_conn(copy_text))

    def copy_raw(sql):
        def fn(c):
            with c.cursor() as cur:
                buf = bytearray()
                with cur.copy(sql) as cp:
                    for block in cp:
                        buf += block
                return bytes(buf)
        return fn
    rep.compare("copy_to_stdout_text_bytes", with_conn(copy_raw(f"COPY ({COPY_SELECT}) TO STDOUT")))
    rep.compare("copy_to_stdout_csv", with_conn(
        copy_raw(f"COPY ({COPY_SELECT}) TO STDOUT WITH (FORMAT csv)")))
    rep.compare("copy_to_stdout_csv_header", with_conn(
        copy_raw(f"COPY ({COPY_SELECT}) TO STDOUT WITH (FORMAT csv, HEADER)")))

    def copy_binary(c):
        with c.cursor() as cur:
            with cur.copy(f"COPY ({COPY_SELECT}) TO STDOUT WITH (FORMAT binary)") as cp:
                cp.set_types(["bigint", "text", "text", "bigint", "text"])
                return list(cp.rows())
    rep.compare("copy_to_stdout_binary_set_types", with_conn(copy_binary))

    def copy_timestamptz(c):
        with c.cursor() as cur:
            with cur.copy("COPY (SELECT interaction_id, to_timestamp(start_ts) FROM "
                          "interaction_fact ORDER BY interaction_id LIMIT 10) "
                          "TO STDOUT WITH (FORMAT binary)") as cp:
                cp.set_types(["bigint", "timestamptz"])
                return list(cp.rows())
    rep.compare("copy_to_stdout_binary_timestamptz", with_conn(copy_timestamptz))

    # --- transactions -----------------------------------------------------------
    def nested(c):
        out = []
        with c.transaction():
            out.append(c.execute("SELECT count(*) FROM resource_").fetchone())
            with c.transaction():  # SAVEPOINT
                out.append(c.execute("SELECT count(*) FROM media_type").fetchone())
                with c.transaction():  # another SAVEPOINT
                    out.append(c.execute("SELECT count(*) FROM resource_state").fetchone())
            out.append(str(c.info.transaction_status))
        out.append(str(c.info.transaction_status))
        return out
    rep.compare("nested_transaction_savepoints", with_conn(nested, autocommit=True))

    def nested_rollback(c):
        out = []
        with c.transaction():
            with c.transaction() as inner:
                out.append(c.execute("SELECT count(*) FROM media_type").fetchone())
                raise psycopg.Rollback(inner)  # ROLLBACK TO SAVEPOINT
            out.append(c.execute("SELECT count(*) FROM resource_state").fetchone())
        return out
    rep.compare("nested_transaction_rollback_to_savepoint", with_conn(nested_rollback))

    def error_in_savepoint(c):
        out = []
        with c.transaction():
            try:
                with c.transaction():
                    c.execute("SELECT * FROM no_such_table")
            except psycopg.Error as e:
                out.append(type(e).__name__)
            out.append(c.execute("SELECT count(*) FROM media_type").fetchone())
        return out
    rep.compare("error_inside_savepoint_recovers", with_conn(error_in_savepoint))

    def implicit_tx(c):  # psycopg default: not autocommit, BEGIN before first query
        out = [c.execute("SELECT count(*) FROM media_type").fetchone(),
               str(c.info.transaction_status)]
        c.commit()
        out.append(str(c.info.transaction_status))
        return out
    rep.compare("implicit_transaction_commit", with_conn(implicit_tx))

    rep.compare("info_parameter_status", with_conn(
        lambda c: {k: c.info.parameter_status(k) for k in
                   ("server_encoding", "client_encoding", "integer_datetimes",
                    "standard_conforming_strings")}))
    rep.each("info_server_version", with_conn(lambda c: c.info.server_version),
             lambda s, v: isinstance(v, int) and v >= 90000, "int >= 90000")

    rep.finish()


if __name__ == "__main__":
    main()
