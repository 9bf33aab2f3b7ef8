#!/usr/bin/env python3
"""psycopg2 compatibility checks: ccmart vs PostgreSQL (see README.md)."""

import datetime as dt
import os
import re
import sys

import psycopg2

sys.path.insert(0, os.path.dirname(__file__))
from common import Report, dsn_user, parse_args, with_timeout  # noqa: E402

CLIENT = "psycopg2"

# Checks that fail against ccmart today.  Shrink as ccmart gets fixed; a listed
# check that passes makes the script fail (strict xfail).
EXPECTED_GAPS = {
    "description_type_oids",
    "set_time_zone_berlin_to_timestamp_text",
    "sum_avg_bigint_types",
}

PLUS_ONE = dt.timezone(dt.timedelta(hours=1))


def main():
    args = parse_args(__doc__)
    dsns = {"ccmart": args.ccmart, "postgres": args.postgres}
    rep = Report(CLIENT, EXPECTED_GAPS, args.only)
    conns = {}

    def connect(side, autocommit=True):
        c = psycopg2.connect(with_timeout(dsns[side]))
        c.autocommit = autocommit
        return c

    def conn(side):
        # one long-lived connection per side; re-opened if a check broke it
        c = conns.get(side)
        if c is None or c.closed:
            c = conns[side] = connect(side)
        return c

    def q(sql, params=None, fetch="all"):
        def run(side):
            with conn(side).cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if fetch == "all" else cur.fetchone()
        return run

    # --- connection -----------------------------------------------------------
    rep.each("connect", lambda s: conn(s).closed == 0 and "connected",
             lambda s, v: v == "connected")
    rep.each("server_version_int", lambda s: conn(s).server_version,
             lambda s, v: isinstance(v, int) and v >= 90000,
             "conn.server_version is an int >= 90000")
    rep.each("version_regex", q("SELECT version()", fetch="one"),
             lambda s, v: bool(re.match(r"^PostgreSQL \d+\.\d+", v[0])),
             r"version() matches ^PostgreSQL \d+\.\d+")
    rep.each("current_user_is_dsn_user", q("SELECT current_user", fetch="one"),
             lambda s, v: v[0] == dsn_user(dsns[s]),
             "current_user equals the DSN's user name")
    for key in ("server_encoding", "client_encoding", "DateStyle", "integer_datetimes",
                "standard_conforming_strings", "TimeZone"):
        rep.compare(f"parameter_status_{key}",
                    lambda s, key=key: conn(s).get_parameter_status(key))

    # --- catalog ----------------------------------------------------------------
    # Type lookups (asyncpg's introspection, pgjdbc getTypeInfo, psql \dT) join pg_type to pg_namespace.
    # the bi views: times as timestamptz beside the epoch seconds (the mirror holds the same views)
    rep.compare("bi_view_times", q(
        "SELECT interaction_id, start_ts, start_time, end_time FROM bi.interaction_fact "
        "ORDER BY interaction_id LIMIT 20"))
    rep.compare("bi_view_filter_by_time", q(
        "SELECT count(*) FROM bi.interaction_fact WHERE start_time >= %s",
        (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=1_789_950_000),)))
    rep.compare("bi_view_interval_start", q(
        "SELECT date_time_key, interval_start FROM bi.date_time ORDER BY date_time_key LIMIT 5"))
    rep.compare("catalog_type_namespace_join", q(
        "SELECT t.typname, n.nspname FROM pg_catalog.pg_type t "
        "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        "WHERE t.typname IN ('int4', 'int8', 'text', 'timestamptz') ORDER BY t.typname"))
    rep.compare("catalog_size_pretty", q(
        "SELECT pg_size_pretty(0::bigint), pg_size_pretty(10239::bigint), pg_size_pretty(10240::bigint), "
        "pg_size_pretty(1073741824::bigint), pg_size_pretty(-1024::bigint)", fetch="one"))

    # --- report queries -------------------------------------------------------
    rep.compare("report_interactions_per_media_type", q(
        "SELECT media_type, count(*) AS interactions "
        "FROM interaction_fact GROUP BY media_type ORDER BY media_type"))
    rep.compare("report_answered_per_queue", q(
        "SELECT r.resource_name AS queue, count(*) AS offered, "
        "       sum(CASE WHEN m.distributed = 1 THEN 1 ELSE 0 END) AS answered, "
        "       sum(CASE WHEN m.abandoned = 1 THEN 1 ELSE 0 END) AS abandoned "
        "FROM mediation_segment_fact m "
        "JOIN resource_ r ON r.resource_key = m.resource_key "
        "WHERE r.resource_type = 'Queue' "
        "GROUP BY r.resource_name ORDER BY r.resource_name"))
    rep.compare("report_agent_talk_time", q(
        "SELECT r.resource_name, count(*) AS handled, max(irf.talk_duration) AS longest "
        "FROM interaction_resource_fact irf "
        "JOIN resource_ r ON r.resource_key = irf.resource_key "
        "WHERE irf.resource_role = 'Received' "
        "GROUP BY r.resource_name ORDER BY r.resource_name"))
    # PostgreSQL: sum(bigint) is numeric, avg(bigint) is numeric -> Decimal
    rep.compare("sum_avg_bigint_types", q(
        "SELECT sum(duration), avg(duration) FROM interaction_fact", fetch="one"))

    # --- time -----------------------------------------------------------------
    def aware_rows(side):
        rows = q("SELECT interaction_id, to_timestamp(start_ts) AS started "
                 "FROM interaction_fact ORDER BY interaction_id LIMIT 25")(side)
        naive = [r for r in rows if r[1] is None or r[1].tzinfo is None]
        if naive:
            raise TypeError(f"naive (not timezone-aware) datetime: {naive[0]!r}")
        return rows
    rep.compare("to_timestamp_is_aware_datetime", aware_rows)

    # the midpoint of the data's time range, as a +01:00 aware datetime
    def cutoff():
        with conn("postgres").cursor() as cur:
            cur.execute("SELECT min(start_ts), max(start_ts) FROM interaction_fact")
            lo, hi = cur.fetchone()
        mid = (lo + hi) // 2 if lo is not None else 0
        return dt.datetime.fromtimestamp(mid, PLUS_ONE)
    try:
        ts = cutoff()
    except Exception:  # noqa: BLE001
        ts = dt.datetime(2026, 1, 1, tzinfo=PLUS_ONE)
    rep.compare("filter_aware_datetime_param", q(
        "SELECT count(*) FROM interaction_fact WHERE to_timestamp(start_ts) >= %s",
        (ts,), fetch="one"))
    rep.compare("filter_aware_datetime_param_range", q(
        "SELECT interaction_id FROM interaction_fact "
        "WHERE to_timestamp(start_ts) >= %s AND to_timestamp(start_ts) < %s "
        "ORDER BY interaction_id",
        (ts, ts + dt.timedelta(minutes=10))))

    def berlin(side):
        c = connect(side)
        try:
            with c.cursor() as cur:
                cur.execute("SET TIME ZONE 'Europe/Berlin'")
                cur.execute("SHOW TIME ZONE")
                tz = cur.fetchone()
                cur.execute("SELECT to_timestamp(0)::text")
                txt = cur.fetchone()
                cur.execute("SELECT to_timestamp(0)")
                val = cur.fetchone()[0]
                return {"show": tz, "text": txt, "value": val,
                        "utcoffset": val.utcoffset() if isinstance(val, dt.datetime) else None}
        finally:
            c.close()
    berlin_vals = {}

    def berlin_part(part):
        def run(side):
            if side not in berlin_vals:
                try:
                    berlin_vals[side] = berlin(side)
                except Exception as e:  # noqa: BLE001
                    berlin_vals[side] = e
            v = berlin_vals[side]
            if isinstance(v, Exception):
                raise v
            return v[part]
        return run
    rep.compare("set_time_zone_berlin_show", berlin_part("show"))
    rep.compare("set_time_zone_berlin_to_timestamp_text", berlin_part("text"))
    rep.compare("set_time_zone_berlin_to_timestamp_value", berlin_part("value"))
    rep.compare("set_time_zone_berlin_utcoffset", berlin_part("utcoffset"))

    def fresh_tz(side):
        c = connect(side)
        try:
            with c.cursor() as cur:
                cur.execute("SHOW TimeZone")
                return cur.fetchone()
        finally:
            c.close()
    rep.compare("fresh_connection_show_timezone", fresh_tz)

    rep.compare("to_char_at_time_zone_utc", q(
        "SELECT to_char(to_timestamp(0) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')",
        fetch="one"))
    rep.compare("power_operator", q("SELECT 2^10", fetch="one"))

    # --- errors ---------------------------------------------------------------
    def fails(sql):
        def run(side):
            c = connect(side)
            try:
                with c.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetchall()
            finally:
                c.close()
        return run
    rep.error_code("error_undefined_table_42P01", fails("SELECT * FROM no_such_table"))
    rep.error_code("error_undefined_column_42703",
                   fails("SELECT no_such_column FROM interaction_fact"))
    rep.error_code("error_syntax_42601", fails("SELEC 1"))
    rep.error_code("error_division_by_zero_22012", fails("SELECT 1/0"))
    rep.error_code("error_undefined_function_42883", fails("SELECT no_such_function(1)"))

    def after_error(side):
        # in a transaction (psycopg2 default), an error aborts it; rollback recovers
        c = connect(side, autocommit=False)
        try:
            with c.cursor() as cur:
                try:
                    cur.execute("SELECT * FROM no_such_table")
                except psycopg2.Error:
                    pass
                state = c.get_transaction_status()
                c.rollback()
                cur.execute("SELECT count(*) FROM media_type")
                return [state, cur.fetchone()]
        finally:
            c.close()
    rep.compare("transaction_rollback_after_error", after_error)

    # --- labels ---------------------------------------------------------------
    def labels(side):
        with conn(side).cursor() as cur:
            cur.execute("SELECT count(*), 1, sum(duration) FROM interaction_fact")
            cur.fetchall()
            return [d.name for d in cur.description]
    rep.compare("column_labels_unaliased", labels)

    def type_codes(side):
        with conn(side).cursor() as cur:
            cur.execute("SELECT interaction_id AS id, media_type AS m, duration AS d, "
                        "to_timestamp(start_ts) AS t, sum(duration) OVER () AS s, "
                        "count(*) OVER () AS n, 1.5 AS lit, true AS b "
                        "FROM interaction_fact ORDER BY interaction_id LIMIT 1")
            cur.fetchall()
            return [(d.name, d.type_code) for d in cur.description]
    rep.compare("description_type_oids", type_codes)

    for c in conns.values():
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass
    rep.finish()


if __name__ == "__main__":
    main()
