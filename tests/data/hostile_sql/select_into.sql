-- expect: refused
-- SELECT INTO creates a table every session would see
SELECT * INTO scratch_copy FROM interaction_fact
