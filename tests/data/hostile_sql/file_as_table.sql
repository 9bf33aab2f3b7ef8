-- expect: refused
-- A path used as a table name
SELECT * FROM '/etc/passwd'
