#!/usr/bin/env python3
"""Copy every public table of ccmart into an (empty) PostgreSQL database.

    mirror.py --ccmart DSN --postgres DSN [--tables t1,t2,...]

Column types come from the wire type OIDs psycopg2 reports in cursor.description
(not from information_schema, whose type names ccmart fills with Arrow names).
The star schema's keys are then declared on the PostgreSQL side as common.expected_keys
derives them from the column names alone (primary keys, and foreign keys as NOT VALID,
since ccmart declares but does not enforce them), so catalog answers (pgjdbc
getPrimaryKeys/getImportedKeys/getIndexInfo, SQLAlchemy reflection) can be compared with
PostgreSQL's own; a primary key PostgreSQL refuses (duplicate or NULL keys) fails the
mirror.  Existing tables of the same name in the target are dropped first, so the script
can be re-run.  One line per table
with its row count; exits 1 (loudly) on any unknown type or count mismatch.
"""

import argparse
import sys

import psycopg2
import psycopg2.extras

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import expected_keys, with_timeout  # noqa: E402

# wire type OID -> PostgreSQL column type
OID_TYPES = {
    16: "boolean",
    17: "bytea",
    20: "bigint",
    21: "smallint",
    23: "integer",
    25: "text",
    1043: "text",     # varchar
    1042: "text",     # bpchar
    700: "real",
    701: "double precision",
    1700: "numeric",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    1186: "interval",
}


def qident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_views(src, dst):
    """ccmart's bi views, created in PostgreSQL from the definitions ccmart reports."""
    with src.cursor() as scur:
        scur.execute("SELECT table_name, definition FROM information_schema.views "
                     "WHERE table_schema = 'bi' ORDER BY table_name")
        views = scur.fetchall()
    with dst.cursor() as dcur:
        dcur.execute("DROP SCHEMA IF EXISTS bi CASCADE")
        dcur.execute("CREATE SCHEMA bi")
        for name, definition in views:
            dcur.execute(f"CREATE VIEW bi.{qident(name)} AS {definition}")
    dst.commit()
    print(f"mirror: {len(views)} bi views created", flush=True)


def declare_keys(dst, tables, kinds):
    """Primary and foreign keys of the copied base tables, as common.expected_keys derives them."""
    base = [t for t in tables if kinds.get(t) != "VIEW"]
    with dst.cursor() as dcur:
        dcur.execute("SELECT table_name, column_name FROM information_schema.columns "
                     "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
        columns = {}
        for t, c in dcur.fetchall():
            columns.setdefault(t, []).append(c)
    pks, fks = expected_keys({t: columns.get(t, []) for t in base})
    with dst.cursor() as dcur:
        for t in base:
            # ccmart's partition column is never NULL (it names the file's folder)
            if "day" in columns.get(t, []):
                dcur.execute(f"ALTER TABLE public.{qident(t)} ALTER COLUMN day SET NOT NULL")
            for c in pks.get(t, []):
                dcur.execute(f"ALTER TABLE public.{qident(t)} ADD CONSTRAINT {qident(t + '_pkey')} "
                             f"PRIMARY KEY ({qident(c)})")
        for t in base:
            for f in fks.get(t, []):
                (c,), (rc,) = f["constrained_columns"], f["referred_columns"]
                dcur.execute(f"ALTER TABLE public.{qident(t)} ADD CONSTRAINT {qident(t + '_' + c + '_fkey')} "
                             f"FOREIGN KEY ({qident(c)}) REFERENCES public.{qident(f['referred_table'])} "
                             f"({qident(rc)}) NOT VALID")
    dst.commit()
    print(f"mirror: {sum(len(v) for v in pks.values())} primary keys, "
          f"{sum(len(v) for v in fks.values())} foreign keys declared", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ccmart", required=True)
    ap.add_argument("--postgres", required=True)
    ap.add_argument("--tables", default=None, help="comma-separated subset")
    a = ap.parse_args()

    src = psycopg2.connect(with_timeout(a.ccmart))
    src.autocommit = True
    dst = psycopg2.connect(with_timeout(a.postgres))

    scur = src.cursor()
    scur.execute("SELECT table_name, table_type FROM information_schema.tables "
                 "WHERE table_schema = 'public' ORDER BY table_name")
    kinds = dict(scur.fetchall())
    if a.tables:
        tables = [t.strip() for t in a.tables.split(",") if t.strip()]
    else:
        tables = sorted(kinds)
    if not tables:
        sys.exit("mirror: ccmart lists no public tables")

    with dst.cursor() as dcur:  # the views depend on the tables dropped below
        dcur.execute("DROP SCHEMA IF EXISTS bi CASCADE")
    dst.commit()
    failures = []
    for t in tables:
        scur.execute(f"SELECT * FROM {qident(t)}")
        rows = scur.fetchall()
        cols = []
        for d in scur.description:
            ty = OID_TYPES.get(d.type_code)
            if ty is None:
                sys.exit(f"mirror: {t}.{d.name}: unmapped wire type OID {d.type_code}")
            cols.append((d.name, ty))
        # ccmart's views (ccmart_*) become a table in schema mirror_data plus a
        # view of the same name in public, so catalog listings match ccmart's
        is_view = kinds.get(t) == "VIEW"
        target = f"mirror_data.{qident(t)}" if is_view else f"public.{qident(t)}"
        with dst.cursor() as dcur:
            dcur.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n "
                         "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                         "AND c.relname = %s", (t,))
            old = dcur.fetchone()
            if old and old[0] == "v":
                dcur.execute(f"DROP VIEW public.{qident(t)}")
            elif old:
                dcur.execute(f"DROP TABLE public.{qident(t)}")
            if is_view:
                dcur.execute("CREATE SCHEMA IF NOT EXISTS mirror_data")
                dcur.execute(f"DROP TABLE IF EXISTS {target}")
            dcur.execute(f"CREATE TABLE {target} ("
                         + ", ".join(f"{qident(n)} {ty}" for n, ty in cols) + ")")
            if rows:
                psycopg2.extras.execute_values(
                    dcur, f"INSERT INTO {target} VALUES %s", rows, page_size=1000)
            if is_view:
                dcur.execute(f"CREATE VIEW public.{qident(t)} AS SELECT * FROM {target}")
            dcur.execute(f"SELECT count(*) FROM public.{qident(t)}")
            n = dcur.fetchone()[0]
        dst.commit()
        status = "ok" if n == len(rows) else "MISMATCH"
        print(f"{t}{' (view)' if is_view else ''}: {len(rows)} rows read from ccmart, {n} rows in postgres "
              f"[{status}] ({', '.join(f'{c} {ty}' for c, ty in cols)})", flush=True)
        if n != len(rows):
            failures.append(t)

    declare_keys(dst, tables, kinds)
    copy_views(src, dst)
    with dst.cursor() as dcur:
        dcur.execute("ANALYZE")
    dst.commit()
    src.close()
    dst.close()
    if failures:
        sys.exit(f"mirror: row count mismatch for {failures}")
    print(f"mirror: {len(tables)} tables copied", flush=True)


if __name__ == "__main__":
    main()
