-- expect: refused
-- File-reading table function
SELECT * FROM read_csv('/etc/passwd')
