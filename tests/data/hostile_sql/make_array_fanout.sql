-- expect: bounded
-- A list of 32 one-kilobyte strings per row, on many rows
WITH t AS (SELECT repeat('x', 1000) || CAST(value AS VARCHAR) AS s FROM range(100000)) SELECT make_array(s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s) AS a FROM t
