-- expect: bounded
-- concat() of many 1 MB strings
WITH t AS (SELECT repeat('x', 1000000) AS s) SELECT length(concat(s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s)) FROM t
