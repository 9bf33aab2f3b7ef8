-- expect: refused
-- Reading a local file through a table definition
CREATE EXTERNAL TABLE passwd (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'
