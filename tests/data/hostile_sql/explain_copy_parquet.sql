-- expect: refused
-- EXPLAIN of a COPY over a mart file path
EXPLAIN COPY (SELECT 1 AS a) TO '/tmp/ccmart-hostile-explain.parquet' STORED AS PARQUET
