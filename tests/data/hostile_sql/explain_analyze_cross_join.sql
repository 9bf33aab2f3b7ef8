-- expect: bounded
-- EXPLAIN ANALYZE runs the plan: still bounded
EXPLAIN ANALYZE SELECT count(*) FROM interaction_fact a, interaction_fact b, interaction_fact c, interaction_fact d WHERE a.duration + b.duration + c.duration + d.duration >= 0
