#!/usr/bin/env python3
"""asyncpg compatibility checks: ccmart vs PostgreSQL (see README.md)."""

import asyncio
import io
import os
import sys

import asyncpg

sys.path.insert(0, os.path.dirname(__file__))
from common import CONNECT_TIMEOUT, Report, parse_args, strip_params  # noqa: E402

CLIENT = "asyncpg"

# Checks that fail against ccmart today (strict xfail, see common.Report.finish).
EXPECTED_GAPS = {
    "recursive_cte",
}

CHECK_TIMEOUT = 30  # seconds for one side of one check


def records(rows):
    return [tuple(r.items()) for r in rows]


def main():
    args = parse_args(__doc__)
    dsns = {"ccmart": strip_params(args.ccmart), "postgres": strip_params(args.postgres)}
    rep = Report(CLIENT, EXPECTED_GAPS, args.only)
    loop = asyncio.new_event_loop()

    def sync(coro_fn):
        """Turn an async fn(side) into a sync one with a timeout."""
        def run(side):
            return loop.run_until_complete(
                asyncio.wait_for(coro_fn(side), CHECK_TIMEOUT))
        return run

    def with_conn(fn):
        async def run(side):
            c = await asyncpg.connect(dsns[side], timeout=CONNECT_TIMEOUT)
            try:
                return await fn(c)
            finally:
                await asyncio.wait_for(c.close(), CONNECT_TIMEOUT)
        return sync(run)

    def fetch(sql, *params):
        async def fn(c):
            return records(await c.fetch(sql, *params))
        return with_conn(fn)

    # --- pool -------------------------------------------------------------------------
    async def pool_cycle(side):
        pool = await asyncpg.create_pool(dsns[side], min_size=1, max_size=2,
                                         timeout=CONNECT_TIMEOUT)
        try:
            out = []
            for i in range(6):  # acquire/release repeatedly: release runs the reset query
                async with pool.acquire(timeout=CONNECT_TIMEOUT) as c:
                    out.append(records(await c.fetch(
                        "SELECT resource_type, count(*) AS n FROM resource_ "
                        "GROUP BY resource_type ORDER BY resource_type")))
            async with pool.acquire(timeout=CONNECT_TIMEOUT) as c1:
                async with pool.acquire(timeout=CONNECT_TIMEOUT) as c2:
                    out.append([await c1.fetchval("SELECT count(*) FROM media_type"),
                                await c2.fetchval("SELECT count(*) FROM resource_state")])
            return out
        finally:
            await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
    rep.compare("pool_acquire_release", sync(pool_cycle))

    async def reset_query(c):
        return c.get_reset_query()
    rep.compare("pool_reset_query_text", with_conn(reset_query))
    # each statement of PostgreSQL's reset query on its own, so a fix shows up one
    # by one (asyncpg derives the list from the server's capabilities)
    for i, stmt in enumerate(["SELECT pg_advisory_unlock_all();", "CLOSE ALL;",
                              "UNLISTEN *;", "RESET ALL;"]):
        name = ["pg_advisory_unlock_all", "close_all", "unlisten_all", "reset_all"][i]
        rep.compare(f"pool_reset_stmt_{name}", with_conn(
            lambda c, stmt=stmt: c.execute(stmt)))

    # --- settings / types ---------------------------------------------------------
    rep.compare("current_setting_timezone", fetch("SELECT current_setting('TimeZone')"))
    rep.compare("settings_timezone_attr", with_conn(
        lambda c: asyncio.sleep(0, c.get_settings().TimeZone)))
    rep.each("server_version_info", with_conn(lambda c: asyncio.sleep(0, c.get_server_version())),
             lambda s, v: v.major >= 9, "get_server_version().major >= 9")
    rep.compare("report_query", fetch(
        "SELECT r.resource_name, count(*) AS segments "
        "FROM mediation_segment_fact m JOIN resource_ r ON r.resource_key = m.resource_key "
        "GROUP BY r.resource_name ORDER BY r.resource_name"))
    rep.compare("timestamptz_values", fetch(
        "SELECT interaction_id, to_timestamp(start_ts) AS started FROM interaction_fact "
        "ORDER BY interaction_id LIMIT 20"))
    rep.compare("array_agg_int", fetch("SELECT array_agg(x) FROM (VALUES (1),(2)) v(x)"))
    rep.compare("array_literal_text", fetch("SELECT ARRAY['a','b']"))
    rep.compare("recursive_cte", fetch(
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) "
        "SELECT n FROM t ORDER BY n"))

    # keys taken from PostgreSQL's copy so both sides get the same parameter
    async def some_keys(side):
        c = await asyncpg.connect(dsns["postgres"], timeout=CONNECT_TIMEOUT)
        try:
            return [r[0] for r in await c.fetch(
                "SELECT resource_key FROM resource_ WHERE resource_type = 'Queue' "
                "ORDER BY resource_key LIMIT 3")]
        finally:
            await c.close()
    try:
        keys = sync(some_keys)("postgres")
    except Exception:  # noqa: BLE001
        keys = [1, 2, 3]
    rep.compare("param_bigint_array_any", fetch(
        "SELECT resource_key, resource_name FROM resource_ "
        "WHERE resource_key = ANY($1::bigint[]) ORDER BY resource_key", keys))
    rep.compare("param_text_and_int", fetch(
        "SELECT count(*) FROM interaction_fact WHERE media_type = $1 AND duration > $2",
        "Voice", 60))

    def copy_query(fmt):
        async def fn(c):
            buf = io.BytesIO()
            await c.copy_from_query(
                "SELECT resource_key, resource_type, resource_name, agent_first_name "
                "FROM resource_ ORDER BY resource_key", output=buf, format=fmt)
            return buf.getvalue()
        return with_conn(fn)
    rep.compare("copy_from_query_csv", copy_query("csv"))
    rep.compare("copy_from_query_text", copy_query("text"))

    async def prepared(c):
        st = await c.prepare("SELECT count(*) FROM resource_ WHERE resource_type = $1")
        return [await st.fetchval(t) for t in ("Agent", "Queue", "Extension")] + \
               [[a.name for a in st.get_attributes()]]
    rep.compare("prepared_statement", with_conn(prepared))

    async def cursor(c):
        out = []
        async with c.transaction():
            async for r in c.cursor("SELECT interaction_id FROM interaction_fact "
                                    "ORDER BY interaction_id", prefetch=50):
                out.append(r[0])
        return out
    rep.compare("cursor_iteration_in_transaction", with_conn(cursor))

    loop.close()
    rep.finish()


if __name__ == "__main__":
    main()
