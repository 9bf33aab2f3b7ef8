-- expect: refused
-- Recursive CTE doubling a string every step
WITH RECURSIVE t(s, n) AS (SELECT 'x', 1 UNION ALL SELECT s || s, n + 1 FROM t WHERE n < 60) SELECT max(length(s)) FROM t
