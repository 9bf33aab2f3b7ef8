-- expect: refused
-- A query followed by a destructive statement
SELECT 1; DROP TABLE interaction_fact
