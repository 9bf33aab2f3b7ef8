-- expect: refused
-- Writing a file
COPY (SELECT 1) TO '/tmp/ccmart-hostile.csv'
