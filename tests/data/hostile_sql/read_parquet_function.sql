-- expect: refused
-- File-reading table function
SELECT * FROM read_parquet('/etc/passwd')
