-- expect: refused
-- EXPLAIN ANALYZE of a COPY TO: the inner statement writes a file
EXPLAIN ANALYZE COPY (SELECT * FROM interaction_fact) TO '/tmp/ccmart-hostile-explain.csv'
