-- expect: refused
-- A URL used as a table name
SELECT * FROM 'http://127.0.0.1:1/x.parquet'
