-- expect: refused
-- SELECT INTO hidden in a set operation branch
SELECT 1 AS a UNION ALL (SELECT 2 INTO scratch_copy)
